//! distill-eval refuses, before any work and leaving every file as it was: an output that is the
//! specialists' manifest or a file it names, a model that is a device, and speed or thread
//! settings beyond their documented bounds.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn fixture(name: &str) -> PathBuf {
    Path::new(REPO).join("tests/fixtures/teachers").join(name)
}

fn eval(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_distill-eval"))
        .current_dir(dir)
        .arg("--data")
        .arg(format!("{REPO}/data/mnist"))
        .args(["--limit", "10"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const MANIFEST: &str = "version: 2
tool_version: 0.1.0
generalist: { path: ../skl.onnx, sha256: 00 }
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
";

#[test]
fn outputs_may_not_be_the_manifest_or_the_files_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(fixture("skl_logreg.onnx"), d.join("skl.onnx")).unwrap();
    std::fs::create_dir(d.join("sp")).unwrap();
    std::fs::write(d.join("sp/manifest.yaml"), MANIFEST).unwrap();
    std::fs::write(d.join("sp/specialist-0.onnx"), b"a specialist").unwrap();
    std::fs::write(d.join("sp/specialist-0.onnx.yaml"), b"mean: 0\n").unwrap();
    for (flag, out, input) in [
        ("--out", "sp/manifest.yaml", "--manifest"),
        ("--predictions", "sp/manifest.yaml", "--manifest"),
        ("--out", "sp/specialist-0.onnx", "--manifest's specialist"),
        ("--out", "sp/specialist-0.onnx.yaml", "sidecar"),
        ("--out", "skl.onnx.yaml", "sidecar"),
    ] {
        let (code, stderr) = eval(
            d,
            &[
                "--model",
                "skl.onnx",
                "--manifest",
                "sp/manifest.yaml",
                "--latency-runs",
                "0",
                flag,
                out,
            ],
        );
        assert_eq!(code, 2, "{flag} {out}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains(input),
            "{flag} {out}: {stderr}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(d.join("sp/manifest.yaml")).unwrap(),
        MANIFEST
    );
    assert_eq!(
        std::fs::read(d.join("sp/specialist-0.onnx")).unwrap(),
        b"a specialist"
    );
    assert!(!d.join("skl.onnx.yaml").exists());
}

#[test]
fn devices_and_unbounded_settings_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let skl = fixture("skl_logreg.onnx");
    let skl = skl.to_str().unwrap();
    let (code, stderr) = eval(d, &["--model", "/dev/zero", "--latency-runs", "0"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("/dev/zero"), "{stderr}");
    assert!(!stderr.contains("does not exist"), "{stderr}");
    assert!(stderr.contains("not a regular file"), "{stderr}");

    let (code, stderr) = eval(d, &["--model", skl, "--latency-runs", "4000000000"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--latency-runs 4000000000"), "{stderr}");
    let (code, stderr) = eval(
        d,
        &["--model", skl, "--threads", "100000", "--latency-runs", "0"],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--threads 100000"), "{stderr}");
}
