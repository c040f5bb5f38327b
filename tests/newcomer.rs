//! What a new user meets with the stages chained by hand: one normalisation system (per-model
//! flags in teach and eval, YAML in pipelines, the sidecar, and the settings a store records),
//! missing inputs that name their flag and the stage that writes them.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

const MNIST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist");

fn teacher_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/teachers")
        .join(name)
}

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `distill ARGS` in `dir`.
fn distill(dir: &Path, args: &[&str]) -> Outcome {
    let out = Command::new(env!("CARGO_BIN_EXE_distill"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ok(dir: &Path, args: &[&str]) -> Outcome {
    let out = distill(dir, args);
    assert_eq!(
        out.code, 0,
        "distill {args:?}:\n{}\n{}",
        out.stdout, out.stderr
    );
    out
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn errors_of(metrics: &serde_json::Value, name: &str) -> u64 {
    metrics["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no entry {name}: {metrics}"))["errors"]
        .as_u64()
        .unwrap()
}

/// The CNN fixture wants `(x - 0.1307) / 0.3081`: teach records the settings it ran it with in the
/// store, and eval's `--teachers-of` evaluates it with them (the same errors as eval's own
/// `--mean/--std` flags, and a pipeline eval stage's `mean:`/`std:` under the teacher), while the
/// model without them makes more errors.
#[test]
fn teach_records_the_settings_and_eval_reads_them_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(teacher_fixture("torchscript_cnn.onnx"), d.join("cnn.onnx")).unwrap();
    let common = ["--data", MNIST, "--split", "test", "--limit", "500"];
    let mut teach = vec![
        "teach",
        "--model",
        "cnn.onnx",
        "--mean",
        "0.1307",
        "--std",
        "0.3081",
        "--out",
        "s.parquet",
    ];
    teach.extend(common);
    ok(d, &teach);
    let recorded = distill_store::read_teacher_settings(&d.join("s.parquet")).unwrap();
    assert_eq!(recorded.len(), 1);
    let (meta, settings) = &recorded[0];
    assert_eq!(meta.name, "cnn");
    let settings = settings.as_ref().expect("settings recorded");
    assert!(
        (settings["mean"].as_f64().unwrap() - 0.1307).abs() < 1e-6,
        "{settings}"
    );
    assert!(
        (settings["std"].as_f64().unwrap() - 0.3081).abs() < 1e-6,
        "{settings}"
    );
    assert_eq!(settings["scale"], 1.0);
    assert_eq!(settings["layout"], "image");
    assert_eq!(settings["image_shape"], serde_json::json!([1, 28, 28]));
    assert_eq!(settings["kind"], "logits");
    assert_eq!(settings["input"], "input");
    assert_eq!(settings["output"], "output");

    let eval = |extra: &[&str], out: &str| {
        let mut args = vec!["eval", "--latency-runs", "0", "--out", out];
        args.extend(common);
        args.extend(extra);
        ok(d, &args);
        json(&d.join(out))
    };
    let from_store = eval(&["--teachers-of", "s.parquet"], "store.json");
    let from_flags = eval(
        &[
            "--teacher",
            "cnn.onnx",
            "--mean",
            "0.1307",
            "--std",
            "0.3081",
        ],
        "flags.json",
    );
    let raw = eval(&["--teacher", "cnn.onnx"], "raw.json");
    let normalised = errors_of(&from_store, "cnn");
    assert_eq!(normalised, errors_of(&from_flags, "cnn"));
    assert_ne!(normalised, errors_of(&raw, "cnn"));
    assert_eq!(from_store["entries"][0]["type"], "teacher");

    // A pipeline eval stage takes the same settings under a teacher.
    std::fs::write(
        d.join("p.yaml"),
        format!(
            "stages:\n  eval:\n    kind: eval\n    args:\n      data: {MNIST}\n      split: test\n      limit: 500\n      latency-runs: 0\n      teacher:\n        - path: cnn.onnx\n          mean: 0.1307\n          std: 0.3081\n      out: pipe.json\n"
        ),
    )
    .unwrap();
    ok(d, &["run", "p.yaml"]);
    assert_eq!(errors_of(&json(&d.join("pipe.json")), "cnn"), normalised);

    // A changed model file is not evaluated as the store's teacher.
    std::fs::copy(teacher_fixture("dynamo_cnn.onnx"), d.join("cnn.onnx")).unwrap();
    let out = distill(
        d,
        &[
            "eval",
            "--teachers-of",
            "s.parquet",
            "--data",
            MNIST,
            "--limit",
            "10",
        ],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("--teachers-of s.parquet"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("SHA-256"), "{}", out.stderr);
}

/// `--dry-run --from eval` marks the eval stage whose store nothing selected writes as blocked,
/// naming the flag and the stage that writes it; the real run fails naming the flag and the
/// command that writes the file, and lists no metrics for the stage that never ran.
#[test]
fn a_stage_whose_inputs_nothing_selected_writes_is_marked_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(teacher_fixture("skl_logreg.onnx"), d.join("skl.onnx")).unwrap();
    std::fs::write(
        d.join("p.yaml"),
        format!(
            "stages:\n  teach:\n    kind: teach\n    args:\n      model: skl.onnx\n      data: {MNIST}\n      limit: 50\n      out: o/s.parquet\n  eval:\n    kind: eval\n    args:\n      teachers-of: o/s.parquet\n      data: {MNIST}\n      limit: 50\n      latency-runs: 0\n      out: o/metrics.json\n"
        ),
    )
    .unwrap();
    let plan = ok(d, &["run", "p.yaml", "--dry-run", "--from", "eval"]);
    let line = plan
        .stdout
        .lines()
        .find(|l| l.starts_with("eval "))
        .unwrap_or_else(|| panic!("{}", plan.stdout));
    assert!(line.contains("blocked"), "{line}");
    assert!(
        line.contains(
            "input o/s.parquet (--teachers-of) missing: stage teach writes it and is not selected; start with --from teach"
        ),
        "{line}"
    );
    assert!(
        plan.stdout.contains("0 would run, 1 blocked"),
        "{}",
        plan.stdout
    );

    let run = distill(d, &["run", "p.yaml", "--from", "eval"]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(!run.stdout.contains("metrics of eval"), "{}", run.stdout);
    assert!(
        run.stderr
            .contains("input o/s.parquet (--teachers-of) missing: stage teach writes it"),
        "{}",
        run.stderr
    );

    // Once the teach stage is selected too, nothing is blocked.
    let plan = ok(d, &["run", "p.yaml", "--dry-run"]);
    assert!(!plan.stdout.contains("blocked"), "{}", plan.stdout);
}

/// Each stage's missing input names its flag and, where a stage makes the file, the command
/// that writes it.
#[test]
fn missing_inputs_name_the_flag_and_the_stage_that_writes_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(teacher_fixture("skl_logreg.onnx"), d.join("skl.onnx")).unwrap();
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["eval", "--model", "student.onnx", "--limit", "5"],
            &[
                "--model",
                "student.onnx does not exist",
                "distill-train --out",
            ],
        ),
        (
            &["eval", "--teacher", "t.onnx", "--limit", "5"],
            &["--teacher", "t.onnx does not exist"],
        ),
        (
            &[
                "eval",
                "--model",
                "skl.onnx",
                "--specialists",
                "sp/manifest.yaml",
            ],
            &["--manifest sp/manifest.yaml", "distill-specialists --out"],
        ),
        (
            &[
                "eval",
                "--model",
                "skl.onnx",
                "--manifest",
                "sp/manifest.yaml",
            ],
            &["--manifest sp/manifest.yaml", "distill-specialists --out"],
        ),
        (
            &["report", "--subsets", "c.yaml"],
            &["--subsets c.yaml", "distill-cluster --out"],
        ),
        (
            &["report", "--specialists", "c.yaml"],
            &[
                "--subsets c.yaml",
                "distill-cluster --out",
                "note: --specialists is now --subsets",
            ],
        ),
        (
            &["eval", "--teachers-of", "soft.parquet"],
            &["--teachers-of soft.parquet", "distill-teach"],
        ),
        (
            &["eval", "--model", "skl.onnx", "--data", "nowhere"],
            &["--data nowhere", "working folder"],
        ),
        (
            &["teach", "--model", "t.onnx", "--out", "s.parquet"],
            &["--model", "t.onnx does not exist", "distill-train --out"],
        ),
        (
            &[
                "teach",
                "--model",
                "skl.onnx",
                "--data",
                "nowhere",
                "--out",
                "s.parquet",
            ],
            &["--data nowhere"],
        ),
        (
            &["report", "--metrics", "m.json"],
            &["--metrics m.json", "distill-eval --out"],
        ),
        (
            &["report", "--manifest", "sp/manifest.yaml"],
            &["--manifest sp/manifest.yaml", "distill-specialists --out"],
        ),
        (
            &["report", "--store", "soft.parquet"],
            &["--store soft.parquet", "distill-teach --out"],
        ),
        (
            &["report", "--train-log", "student.metrics.csv"],
            &[
                "--train-log student.metrics.csv",
                "distill-train --out student.onnx",
            ],
        ),
    ];
    for (args, needles) in cases {
        let out = distill(d, args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        for n in *needles {
            assert!(out.stderr.contains(n), "{args:?}: {n}: {}", out.stderr);
        }
        assert!(!out.stderr.contains("os error"), "{args:?}: {}", out.stderr);
    }
}

/// Help texts carry no history notes and distill-cluster's count is `--count`; eval's `--threads`
/// defaults to all cores as in every stage and is bounded; distill-report takes the progress flags
/// of the other stages.
#[test]
fn help_texts_and_shared_flags_agree_across_stages() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let stages = [
        "train",
        "teach",
        "cluster",
        "specialists",
        "eval",
        "quantize",
        "report",
    ];
    for stage in stages {
        let help = ok(d, &[stage, "--help"]).stdout;
        for history in [
            "release",
            "Until",
            "since this",
            "old spelling",
            "old name",
            "formerly",
            "used to",
        ] {
            assert!(!help.contains(history), "{stage}: {history}:\n{help}");
        }
    }
    // distill-cluster's number of subsets has a name of its own; a relative --data is looked
    // up from the working folder.
    let cluster_help = ok(d, &["cluster", "--help"]).stdout;
    assert!(cluster_help.contains("--count <K>"), "{cluster_help}");
    assert!(!cluster_help.contains("--specialists"), "{cluster_help}");
    let train_help = ok(d, &["train", "--help"]).stdout;
    assert!(
        train_help.contains("looked up from the working folder"),
        "{train_help}"
    );
    let eval_help = ok(d, &["eval", "--help"]).stdout;
    assert!(eval_help.contains("[default: all cores]"), "{eval_help}");
    assert!(eval_help.contains("--manifest <MANIFEST>"), "{eval_help}");
    let report_help = ok(d, &["report", "--help"]).stdout;
    for flag in ["-q, --quiet", "--progress", "--subsets <PATH>"] {
        assert!(report_help.contains(flag), "{flag}: {report_help}");
    }

    let skl = teacher_fixture("skl_logreg.onnx");
    let skl = skl.to_str().unwrap();
    let common = ["--data", MNIST, "--limit", "20", "--latency-runs", "0"];
    let mut args = vec!["eval", "--model", skl, "--out", "m.json"];
    args.extend(common);
    ok(d, &args);
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(json(&d.join("m.json"))["threads"], cores);
    let mut args = vec!["eval", "--model", skl, "--threads", "100000"];
    args.extend(common);
    let out = distill(d, &args);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("--threads 100000"), "{}", out.stderr);

    let metrics = d.join("m.json");
    let out = ok(
        d,
        &[
            "report",
            "-q",
            "--metrics",
            metrics.to_str().unwrap(),
            "--out",
            "r.html",
        ],
    );
    assert!(out.stdout.contains("report: r.html"), "{}", out.stdout);
    assert!(out.stderr.is_empty(), "{}", out.stderr);
}
