//! `distill-eval` on data given as one file: the rows are labelled as all rows of that file (it
//! has no test split), and files that are not Parquet are refused with the formats `--data` reads.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use distill_data::{ClassFilter, Selection, Split};
use serde_json::Value;

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn fixture(name: &str) -> PathBuf {
    Path::new(REPO).join("tests/fixtures/teachers").join(name)
}

fn eval(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_distill-eval"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_single_data_file_is_labelled_all_rows_not_test() {
    let dir = tempfile::tempdir().unwrap();
    let rows = Selection {
        data: format!("{REPO}/data/mnist"),
        split: Split::Test,
        limit: Some(200),
        classes: ClassFilter::default(),
    }
    .load()
    .unwrap();
    distill_data::parquet::write_dataset(&dir.path().join("features.parquet"), &rows).unwrap();
    let skl = fixture("skl_logreg.onnx");
    let (code, stdout, stderr) = eval(
        dir.path(),
        &[
            "--data",
            "features.parquet",
            "--model",
            skl.to_str().unwrap(),
            "--latency-runs",
            "0",
            "--out",
            "metrics.json",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("all rows of features.parquet (one file: it has no separate test split)"),
        "{stdout}"
    );
    assert!(!stdout.contains("split=test"), "{stdout}");
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("metrics.json")).unwrap())
            .unwrap();
    assert_eq!(m["split"], "all");
    assert_eq!(m["transform"], "split=all");
    assert!(
        m["rows_from"]
            .as_str()
            .unwrap()
            .starts_with("all rows of features.parquet"),
        "{m}"
    );
    assert_eq!(m["rows"], 200);

    let (code, stdout, stderr) = eval(
        dir.path(),
        &[
            "--data",
            &format!("{REPO}/data/mnist"),
            "--model",
            skl.to_str().unwrap(),
            "--limit",
            "50",
            "--latency-runs",
            "0",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("the test split of"), "{stdout}");
}

#[test]
fn damaged_numpy_files_and_csv_files_are_named_with_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend_from_slice(&[0u8; 64]);
    std::fs::write(dir.path().join("x.npy"), &npy).unwrap();
    std::fs::write(dir.path().join("x.npz"), b"PK\x03\x04rest of a zip").unwrap();
    std::fs::write(dir.path().join("x.csv"), b"label,f0,f1\n3,0.1,0.2\n").unwrap();
    let skl = fixture("skl_logreg.onnx");
    for (file, needles) in [
        ("x.npy", &["cannot read its header"][..]),
        ("x.npz", &["not a readable .npz (zip) archive"][..]),
        (
            "x.csv",
            &[
                ".csv text file is not read",
                "--data reads",
                "train.parquet/test.parquet",
            ][..],
        ),
    ] {
        let (code, stdout, stderr) = eval(
            dir.path(),
            &[
                "--data",
                file,
                "--model",
                skl.to_str().unwrap(),
                "--latency-runs",
                "0",
            ],
        );
        assert_eq!(code, 2, "{file}: {stderr}");
        assert!(stdout.is_empty(), "{file}: {stdout}");
        for needle in [file].iter().chain(needles) {
            assert!(stderr.contains(needle), "{file}: {needle}: {stderr}");
        }
        assert!(!stderr.contains("footer"), "{file}: {stderr}");
    }
}
