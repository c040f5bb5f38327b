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

/// The `<svg>` of figure `id` in `html`.
fn svg<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<svg id=\"{id}\""))
        .or_else(|| html.find(&format!("id=\"{id}\"")))
        .unwrap_or_else(|| panic!("no figure {id}"));
    let end = start + html[start..].find("</svg>").expect("the figure ends");
    &html[start..end]
}

/// The text of every `<text>` element of `svg`.
fn texts(svg: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = svg;
    while let Some(i) = rest.find("<text") {
        rest = &rest[i..];
        let open = rest.find('>').unwrap();
        let close = rest.find("</text>").unwrap();
        out.push(rest[open + 1..close].trim().to_string());
        rest = &rest[close..];
    }
    out
}

const MANIFEST: &str = "version: 2
tool_version: 0.1.0
generalist: { path: student.onnx, sha256: 00 }
classes: 10
subsets: specialists.yaml
specialists:
  - id: 0
    path: specialist-0.onnx
    sha256: 11
    classes: [3, 5, 8]
    subset_share: 0.3
    sampled_share: 0.5
    dustbin_correction: 0.1
    epochs: 4
    validation_errors: 31
    validation_rows: 2000
    used: true
    validation_effect: { rows: 5000, errors_with: 241, errors_without: 247, nll_with: 0.171, nll_without: 0.180 }
  - id: 1
    path: specialist-1.onnx
    sha256: 22
    classes: [4, 9]
    subset_share: 0.2
    sampled_share: 0.5
    dustbin_correction: 0.1
    epochs: 4
    validation_errors: 12
    validation_rows: 2000
    used: false
    validation_effect: { rows: 5000, errors_with: 243, errors_without: 241, nll_with: 0.172, nll_without: 0.171 }
";

/// The specialists chart shows each group's errors with and without the specialists on
/// whole-number ticks that never repeat; the combination's speed is not in the model throughput
/// column; the manifest's table says which specialists are used and their validation effect.
#[test]
fn the_specialists_section_shows_errors_per_group_and_which_specialists_are_used() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("manifest.yaml");
    std::fs::write(&manifest, MANIFEST).unwrap();
    let out = dir.path().join("report.html");
    run(&Config {
        metrics: Some(fixture("metrics-specialists.json")),
        manifest: Some(manifest),
        out: out.clone(),
        ..Config::default()
    })
    .unwrap();
    let html = std::fs::read_to_string(&out).unwrap();
    let chart = svg(&html, "fig-specialists");
    let labels = texts(chart);
    // Groups of the fixture: rows 1200/600/200, generalist correct 1120/540/175, combined
    // 1121/550/178.
    for errors in [
        "80 err.", "79 err.", "60 err.", "50 err.", "25 err.", "22 err.",
    ] {
        assert!(labels.iter().any(|t| t == errors), "{errors}: {labels:?}");
    }
    assert!(!labels.iter().any(|t| t.contains("n/a")), "{labels:?}");
    let ticks: Vec<&String> = labels
        .iter()
        .filter(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert!(ticks.len() >= 3, "{labels:?}");
    let mut unique = ticks.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ticks.len(), "repeated ticks: {ticks:?}");
    assert!(
        !labels
            .iter()
            .any(|t| t.contains('.') && t.parse::<f64>().is_ok()),
        "{labels:?}"
    );
    assert!(labels.iter().any(|t| t == "errors"), "{labels:?}");

    // The system's row leaves the model throughput column empty; the rate is the
    // combination step's, said so under Specialists.
    assert!(!html.contains("data-field=\"rows_per_second\""));
    assert!(html.contains("the combination step alone (after both models ran) handles 51,23"));

    let table_start = html.find("<table id=\"specialists-manifest\"").unwrap();
    let table = &html[table_start..table_start + html[table_start..].find("</table>").unwrap()];
    assert!(html.contains("Inference uses 1 of the 2 specialists"));
    assert!(table.contains("<th class=\"text\">used</th>"));
    assert!(table.contains("data-field=\"used\">yes</td>"));
    assert!(table.contains("data-field=\"used\">no</td>"));
    assert!(table.contains("241 errors with, 247 without (-6) on 5,000 rows"));
    assert!(table.contains("243 errors with, 241 without (+2) on 5,000 rows"));
}

/// Teachers are typed teacher in the results table; the per-class chart has an x-axis title;
/// the learning-curve caption does not claim dropout and jitter; reliability bars carry their
/// row counts and are as wide as their share of the fullest bin.
#[test]
fn labels_axes_and_bins_say_what_they_show() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = metrics_with(dir.path(), |m| {
        m["entries"][0]["type"] = "teacher".into();
    });
    let teacher = {
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&metrics).unwrap()).unwrap();
        m["entries"][0]["name"].as_str().unwrap().to_string()
    };
    let out = dir.path().join("report.html");
    run(&Config {
        metrics: Some(metrics.clone()),
        train_logs: ["teacher-1", "student"]
            .iter()
            .map(|n| fixture(&format!("{n}.metrics.csv")))
            .collect(),
        out: out.clone(),
        ..Config::default()
    })
    .unwrap();
    let html = std::fs::read_to_string(&out).unwrap();
    let row = &html[html.find("<table id=\"results\"").unwrap()..];
    let row = &row[row.find(&format!("</span>{teacher}</td>")).unwrap()..];
    assert!(
        row.starts_with(&format!(
            "</span>{teacher}</td><td class=\"text\">teacher</td>"
        )),
        "{}",
        &row[..200]
    );

    let per_class = texts(svg(&html, "fig-per-class"));
    assert!(per_class.iter().any(|t| t == "true class"), "{per_class:?}");
    assert!(!html.contains("(with dropout and jitter, as trained)"));

    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&metrics).unwrap()).unwrap();
    let bins = m["entries"][0]["reliability"].as_array().unwrap();
    let at = html.find("fig-reliability-").unwrap();
    let id = html[at..].split('"').next().unwrap().to_string();
    let labels = texts(svg(&html, &id));
    for b in bins.iter().filter(|b| b["rows"].as_u64().unwrap() > 0) {
        let rows = distill_progress::grouped(b["rows"].as_u64().unwrap());
        assert!(labels.contains(&rows), "bin with {rows} rows: {labels:?}");
    }
    let (lo, hi) = distill_report::plot::reliability::bar_span(0.0, 0.1, 1, 1000);
    assert!((hi - lo - 0.002).abs() < 1e-9);
    let (lo, hi) = distill_report::plot::reliability::bar_span(0.0, 0.1, 500, 1000);
    assert!((hi - lo - 0.046).abs() < 1e-9);
}

/// The gain chart drawn for results without the groups' correct-row counts has ticks that never
/// read the same, however small the gains.
#[test]
fn gain_ticks_never_repeat() {
    use distill_report::plot::{gain_by_covering, tick_decimals};
    assert_eq!(tick_decimals(0.6), 2);
    assert_eq!(tick_decimals(6.0), 1);
    assert_eq!(tick_decimals(60.0), 0);
    let svg = gain_by_covering(
        "g",
        "gain",
        &[
            (0, 1200, Some(0.0008)),
            (1, 600, Some(-0.0002)),
            (2, 200, None),
        ],
        (700, 400),
    )
    .unwrap();
    let ticks: Vec<String> = texts(&svg)
        .into_iter()
        .filter(|t| t.parse::<f64>().is_ok())
        .collect();
    assert!(ticks.len() >= 3, "{ticks:?}");
    let mut unique = ticks.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ticks.len(), "repeated ticks: {ticks:?}");
}
