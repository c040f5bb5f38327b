//! The `distill-eval` binary on real ONNX files and small slices of MNIST, each run in a fresh temporary folder.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use distill_core::math::argmax_rows;
use distill_data::{ClassFilter, Selection, Split};
use distill_nn::{Mlp, MlpConfig};
use serde_json::Value;

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn fixture(name: &str) -> PathBuf {
    Path::new(REPO).join("tests/fixtures/teachers").join(name)
}

fn mnist() -> String {
    format!("{REPO}/data/mnist")
}

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `distill-eval --data <repo>/data/mnist ARGS` in `dir`.
fn eval(dir: &Path, args: &[&str]) -> Outcome {
    let out = Command::new(env!("CARGO_BIN_EXE_distill-eval"))
        .current_dir(dir)
        .arg("--data")
        .arg(mnist())
        .args(args)
        .output()
        .unwrap();
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn entry<'a>(metrics: &'a Value, name: &str) -> &'a Value {
    metrics["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no entry {name} in {metrics}"))
}

fn as_usize(v: &Value) -> usize {
    v.as_u64().unwrap() as usize
}

/// Errors on the first 1000 test rows implied by `accuracy_first_1000` in the fixtures' expected.json.
fn expected_errors(name: &str) -> usize {
    let expected = read_json(&fixture("expected.json"));
    let f = expected["fixtures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap();
    let accuracy = f["accuracy_first_1000"].as_f64().unwrap();
    ((1.0 - accuracy) * 1000.0).round() as usize
}

/// The invariants every entry satisfies, whatever the model.
fn check_consistent(e: &Value, rows: usize) {
    let errors = as_usize(&e["errors"]);
    let per_class: Vec<usize> = e["per_class_errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(as_usize)
        .collect();
    assert_eq!(per_class.iter().sum::<usize>(), errors, "{e}");
    let confusion = e["confusion"].as_array().unwrap();
    let total: usize = confusion
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(as_usize)
        .sum();
    assert_eq!(total, rows);
    let diagonal: usize = (0..confusion.len())
        .map(|i| as_usize(&confusion[i][i]))
        .sum();
    assert_eq!(rows - diagonal, errors);
    let top1 = e["top_k"][0]["accuracy"].as_f64().unwrap();
    assert!((top1 - (1.0 - errors as f64 / rows as f64)).abs() < 1e-12);
    let ks: Vec<u64> = e["top_k"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["k"].as_u64().unwrap())
        .collect();
    assert_eq!(ks, vec![1, 2, 5]);
    let nll = e["nll"].as_f64().unwrap();
    let ece = e["ece"].as_f64().unwrap();
    assert!(nll > 0.0 && nll.is_finite());
    assert!((0.0..=1.0).contains(&ece));
}

#[test]
fn foreign_models_match_their_recorded_accuracy_and_ensemble() {
    let dir = tempfile::tempdir().unwrap();
    let cnn = dir.path().join("torchscript_cnn.onnx");
    std::fs::copy(fixture("torchscript_cnn.onnx"), &cnn).unwrap();
    std::fs::write(
        dir.path().join("torchscript_cnn.onnx.yaml"),
        "mean: 0.1307\nstd: 0.3081\n",
    )
    .unwrap();
    let skl = fixture("skl_logreg.onnx");
    let out = eval(
        dir.path(),
        &[
            "--model",
            skl.to_str().unwrap(),
            "--model",
            "torchscript_cnn.onnx",
            "--ensemble",
            "--split",
            "test",
            "--limit",
            "1000",
            "--latency-runs",
            "5",
            "--threads",
            "1",
            "--out",
            "metrics.json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    // stderr is not a terminal here: progress comes as plain lines, the last one when done.
    assert!(
        out.stderr.contains("evaluate: 2,000/2,000 rows in "),
        "{}",
        out.stderr
    );
    let m = read_json(&dir.path().join("metrics.json"));
    assert_eq!(m["schema_version"], 1);
    assert_eq!(m["rows"], 1000);
    assert_eq!(m["split"], "test");
    assert_eq!(m["transform"], "split=test, limit=1000");
    assert_eq!(m["agreement_reference"], "ensemble (arithmetic)");

    let s = entry(&m, "skl_logreg");
    assert_eq!(s["output_kind"], "probabilities");
    assert_eq!(as_usize(&s["errors"]), expected_errors("skl_logreg"));
    assert_eq!(s["parameters"], 7850);
    let c = entry(&m, "torchscript_cnn");
    assert_eq!(c["output_kind"], "logits");
    assert_eq!(as_usize(&c["errors"]), expected_errors("torchscript_cnn"));
    assert_eq!(c["parameters"], 5874);
    assert_eq!(
        c["file_bytes"],
        std::fs::metadata(&cnn).unwrap().len(),
        "file size"
    );
    for e in [s, c] {
        check_consistent(e, 1000);
        assert!(e["latency_ms_batch1"].as_f64().unwrap() > 0.0);
        assert!(e["rows_per_s_batch256"].as_f64().unwrap() > 0.0);
    }
    for name in ["ensemble (arithmetic)", "ensemble (geometric)"] {
        let e = entry(&m, name);
        check_consistent(e, 1000);
        assert_eq!(e["type"], "ensemble");
        assert_eq!(e["parameters"], 7850 + 5874);
        let latency = e["latency_ms_batch1"].as_f64().unwrap();
        let sum =
            s["latency_ms_batch1"].as_f64().unwrap() + c["latency_ms_batch1"].as_f64().unwrap();
        assert!((latency - sum).abs() < 1e-9);
    }
    assert_eq!(entry(&m, "ensemble (arithmetic)")["agreement"], 1.0);
    let agree = c["agreement"].as_f64().unwrap();
    assert!(agree > 0.8 && agree <= 1.0, "{agree}");
    for name in ["skl_logreg", "torchscript_cnn", "ensemble (geometric)"] {
        assert!(out.stdout.contains(name), "{}", out.stdout);
    }
    assert!(out.stdout.contains("1000 rows"), "{}", out.stdout);
}

/// An MLP saved as ONNX: distill-eval's errors equal those of `Mlp::forward` on the same rows, and a large bias
/// on one class makes every row predict it.
#[test]
fn exported_mlp_errors_match_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let mlp = Mlp::new(
        MlpConfig {
            sizes: vec![784, 32, 10],
            input_dropout: 0.0,
            hidden_dropout: 0.0,
            max_norm: None,
        },
        7,
    )
    .unwrap();
    let model = dir.path().join("student.onnx");
    distill_nn::onnx::save(&mlp, &model, &[]).unwrap();

    let data = Selection {
        data: mnist(),
        split: Split::Test,
        limit: Some(300),
        classes: ClassFilter::default(),
    }
    .load()
    .unwrap();
    let labels = data.labels.clone().unwrap();
    let logits = mlp.forward(data.features.view()).unwrap();
    let engine_errors = argmax_rows(logits.view())
        .iter()
        .zip(&labels)
        .filter(|&(&p, &y)| p != y as usize)
        .count();

    let out = eval(
        dir.path(),
        &[
            "--model",
            "student.onnx",
            "--limit",
            "300",
            "--latency-runs",
            "0",
            "--out",
            "metrics.json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let m = read_json(&dir.path().join("metrics.json"));
    let e = entry(&m, "student");
    assert_eq!(as_usize(&e["errors"]), engine_errors);
    assert_eq!(e["parameters"], mlp.parameters() as u64);
    assert_eq!(e["latency_ms_batch1"], Value::Null);
    assert_eq!(e["errors_unadjusted"], Value::Null);
    assert_eq!(e["agreement"], 1.0);
    assert_eq!(m["agreement_reference"], "student");
    check_consistent(e, 300);

    let threes = labels.iter().filter(|&&l| l == 3).count();
    let out = eval(
        dir.path(),
        &[
            "--model",
            "student.onnx",
            "--limit",
            "300",
            "--latency-runs",
            "0",
            "--bias-adjust",
            "3=+1000",
            "--out",
            "adjusted.json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let m = read_json(&dir.path().join("adjusted.json"));
    let e = entry(&m, "student");
    assert_eq!(as_usize(&e["errors"]), 300 - threes);
    assert_eq!(as_usize(&e["errors_unadjusted"]), engine_errors);
    assert_eq!(m["bias_adjust"][0]["class"], 3);
    assert!(
        out.stdout.contains("bias adjustment 3=+1000"),
        "{}",
        out.stdout
    );
}

#[test]
fn bad_inputs_exit_2_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let skl = fixture("skl_logreg.onnx");
    let skl = skl.to_str().unwrap();
    let wide = fixture("wide_input.onnx");
    let classes12 = fixture("classes12.onnx");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--model", wide.to_str().unwrap()], "785"),
        (
            vec!["--model", classes12.to_str().unwrap()],
            "12 output classes",
        ),
        (
            vec!["--model", "missing.onnx"],
            "missing.onnx does not exist",
        ),
        (
            vec!["--model", skl, "--bias-adjust", "3=+x"],
            "--bias-adjust",
        ),
        (vec!["--model", skl, "--bias-adjust", "12=1"], "class 12"),
        (
            vec!["--model", skl, "--only-classes", "5"],
            "no rows are left",
        ),
        (vec!["--model", skl, "--ensemble"], "at least two models"),
        (vec!["--model", skl, "--split", "valid"], "valid"),
        (
            vec!["--model", skl, "--out", "no/such/folder/metrics.json"],
            "does not exist",
        ),
    ];
    for (args, needle) in cases {
        let mut all = args.clone();
        all.extend(["--limit", "5", "--latency-runs", "0"]);
        if !all.contains(&"--out") {
            all.extend(["--out", "metrics.json"]);
        }
        let out = eval(dir.path(), &all);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(needle), "{args:?}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "{args:?} left a file"
        );
    }
}

/// distill-train reports the test errors of the model it saves; distill-eval, reading that ONNX file
/// through ONNX Runtime, must count the same errors (with and without a bias adjustment).
#[test]
fn a_trained_students_errors_match_what_distill_train_reported() {
    use clap::Parser;
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("student.onnx");
    let data = mnist();
    let args = [
        "distill-train",
        "--data",
        &data,
        "--limit",
        "1500",
        "--hidden",
        "48",
        "--epochs",
        "3",
        "--lr",
        "0.1",
        "--exclude-classes",
        "3",
        "--bias-adjust",
        "3=+2.5",
        "--out",
        model.to_str().unwrap(),
    ];
    let config = distill_train::cli::Args::parse_from(args)
        .into_config()
        .unwrap();
    let report = distill_train::run(&config, &distill_progress::Progress::hidden()).unwrap();
    let trained = report.test_errors.unwrap();
    let out = eval(
        dir.path(),
        &[
            "--model",
            "student.onnx",
            "--latency-runs",
            "0",
            "--out",
            "m.json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let m = read_json(&dir.path().join("m.json"));
    let e = entry(&m, "student");
    assert_eq!(as_usize(&e["errors"]), trained.errors);
    assert_eq!(as_usize(&e["per_class_errors"][3]), trained.per_class[3]);
    assert_eq!(trained.rows, 10_000);
    // Undoing the saved adjustment at evaluation time gives the errors before adjustment.
    let out = eval(
        dir.path(),
        &[
            "--model",
            "student.onnx",
            "--latency-runs",
            "0",
            "--bias-adjust",
            "3=-2.5",
            "--out",
            "u.json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let u = read_json(&dir.path().join("u.json"));
    assert_eq!(
        as_usize(&entry(&u, "student")["errors"]),
        trained.errors_before_bias
    );
}
