//! What the page says about where its figures come from and how its charts are drawn: figures on
//! all rows of one file are not called a test split, and the charts' axes and labels match the
//! numbers they show.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use distill_report::{Config, run};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/smoke")
        .join(name)
}

/// `metrics.json` of the smoke fixture with `edit` applied, written to `dir`.
fn metrics_with(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("metrics.json")).unwrap()).unwrap();
    edit(&mut m);
    let path = dir.join("metrics.json");
    std::fs::write(&path, serde_json::to_string(&m).unwrap()).unwrap();
    path
}

fn page(dir: &Path, metrics: PathBuf) -> String {
    let out = dir.join("report.html");
    run(&Config {
        metrics: Some(metrics),
        out: out.clone(),
        ..Config::default()
    })
    .unwrap();
    std::fs::read_to_string(&out).unwrap()
}

#[test]
fn figures_on_all_rows_of_one_file_are_not_called_a_test_split() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = metrics_with(dir.path(), |m| {
        m["split"] = "all".into();
        m["rows_from"] = "all rows of f.parquet (one file: it has no separate test split)".into();
    });
    let html = page(dir.path(), metrics);
    assert!(html.contains("id=\"all-rows\""), "no warning");
    assert!(html.contains("Not a test split"));
    assert!(html.contains("all rows of f.parquet"));
    assert!(!html.contains("the all split"));
    assert!(!html.contains("the test split"));

    let metrics = metrics_with(dir.path(), |_| {});
    let html = page(dir.path(), metrics);
    assert!(!html.contains("id=\"all-rows\""));
    assert!(html.contains("the test split"));
}
