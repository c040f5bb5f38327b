//! distill-train with `--arch`: a small CNN on a 300-row MNIST slice trains, saves an ONNX file
//! that ONNX Runtime and distill-eval run, resumes bit for bit, stops early, and bad
//! combinations exit 2 with nothing written.
#![allow(clippy::unwrap_used)]

mod common;

use common::{MNIST, train_bin};
use distill_data::{ClassFilter, Selection, Split};
use distill_nn::{Model, onnx};
use std::path::Path;

/// A CNN with every kind of state a checkpoint must carry: weights, batch norm's running
/// statistics, dropout.
const ARCH: &str =
    "conv:4:5:p2,bn,relu,maxpool:2,conv:8:3,relu,maxpool:2,flatten,fc:32,relu,dropout:0.3,fc";

fn load(path: &Path) -> Model {
    Model::load(path).unwrap().0
}

/// The trained values and the batch-norm statistics of `m`, as owned arrays.
fn state(m: &Model) -> Vec<Vec<f32>> {
    let mut v: Vec<Vec<f32>> = m
        .params()
        .into_iter()
        .flat_map(|(w, b)| [w.iter().copied().collect(), b.to_vec()])
        .collect();
    v.extend(m.buffers().into_iter().map(|b| b.to_vec()));
    v
}

#[test]
fn a_cnn_trains_saves_and_runs_in_onnx_runtime_and_distill_eval() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = train_bin(
        dir.path(),
        &[
            "--data",
            MNIST,
            "--limit",
            "300",
            "--arch",
            ARCH,
            "--epochs",
            "2",
            "--batch",
            "25",
            "--lr",
            "0.05",
            "--jitter",
            "1",
            "--max-norm",
            "3",
            "--out",
            "cnn.onnx",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("checked with ONNX Runtime"), "{stdout}");
    let path = dir.path().join("cnn.onnx");
    let meta = onnx::metadata(&path).unwrap();
    assert_eq!(meta["distill.arch"], ARCH);
    assert_eq!(meta["distill.input_shape"], "1,28,28");
    assert!(meta["distill.training"].contains("\"arch\":[\"conv:4:5:p2\""));
    let Model::Net(net) = load(&path) else {
        panic!("the file holds an MLP")
    };
    assert_eq!(net.max_norm, Some(3.0));
    // Two epochs learn: the second's training loss is below the first's.
    let csv = std::fs::read_to_string(dir.path().join("cnn.metrics.csv")).unwrap();
    let loss: Vec<f64> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(4).unwrap().parse().unwrap())
        .collect();
    assert!(loss.len() == 2 && loss[1] < loss[0], "{csv}");
    // distill-eval runs the saved CNN through ONNX Runtime on the test split and counts the
    // errors the engine counts.
    let test = Selection {
        data: MNIST.into(),
        split: Split::Test,
        limit: None,
        classes: ClassFilter::default(),
    }
    .load()
    .unwrap();
    let logits = Model::Net(net).forward(test.features.view()).unwrap();
    let engine_errors =
        distill_core::math::error_count(logits.view(), test.labels.as_ref().unwrap());
    let code = distill_eval::cli::main_from([
        "distill-eval",
        "--data",
        MNIST,
        "--model",
        path.to_str().unwrap(),
        "--latency-runs",
        "0",
        "--out",
        dir.path().join("m.json").to_str().unwrap(),
    ]);
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("m.json")).unwrap()).unwrap();
    let entry = &m["entries"][0];
    assert_eq!(
        entry["errors"].as_u64().unwrap() as usize,
        engine_errors,
        "{m}"
    );
    assert!(
        engine_errors < 9000,
        "{engine_errors} test errors: not learning"
    );
}

#[test]
fn an_interrupted_cnn_resumes_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let common = [
        "--data",
        MNIST,
        "--limit",
        "300",
        "--arch",
        ARCH,
        "--epochs",
        "2",
        "--batch",
        "50",
        "--jitter",
        "1",
        "--optimizer",
        "adam",
        "--lr",
        "0.003",
        "--test-split",
        "none",
    ];
    let whole = [&common[..], &["--out", "a.onnx"]].concat();
    assert_eq!(train_bin(dir.path(), &whole).0, 0);
    // 270 training rows, 6 batches an epoch: stop in the second epoch.
    let part = [&common[..], &["--out", "b.onnx", "--max-steps", "8"]].concat();
    let (code, stdout, _) = train_bin(dir.path(), &part);
    assert_eq!(code, 130, "{stdout}");
    assert!(!dir.path().join("b.onnx").exists());
    let rest = [&common[..], &["--out", "b.onnx", "--resume"]].concat();
    let (code, _, stderr) = train_bin(dir.path(), &rest);
    assert_eq!(code, 0, "{stderr}");
    let (a, b) = (
        load(&dir.path().join("a.onnx")),
        load(&dir.path().join("b.onnx")),
    );
    assert_eq!(state(&a), state(&b), "resumed weights or statistics differ");
    assert!(!a.buffers().is_empty());
    // A checkpoint of another architecture is refused.
    let other = [
        "--data",
        MNIST,
        "--limit",
        "300",
        "--arch",
        "conv:2:5,relu,maxpool:2,flatten,fc",
        "--epochs",
        "2",
        "--out",
        "b.onnx",
        "--resume",
    ];
    let (code, _, stderr) = train_bin(dir.path(), &other);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("b.ckpt") && stderr.contains("layer shapes"),
        "{stderr}"
    );
}

#[test]
fn a_cnn_stops_early_and_keeps_its_best_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = train_bin(
        dir.path(),
        &[
            "--data",
            MNIST,
            "--limit",
            "300",
            "--arch",
            "conv:2:5,relu,maxpool:4,flatten,fc",
            "--epochs",
            "40",
            "--batch",
            "30",
            "--lr",
            "0.2",
            "--patience",
            "2",
            "--test-split",
            "none",
            "--out",
            "a.onnx",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("stopped early"), "{stdout}");
    let csv = std::fs::read_to_string(dir.path().join("a.metrics.csv")).unwrap();
    let val: Vec<f64> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(6).unwrap().parse().unwrap())
        .collect();
    let best = (0..val.len()).fold(0, |b, e| if val[e] < val[b] { e } else { b });
    assert_eq!(val.len() - 1 - best, 2, "{val:?}");
    let model = load(&dir.path().join("a.onnx"));
    assert_eq!(state(&model), state(&load(&dir.path().join("a.best.onnx"))));
}

#[test]
fn bad_arch_combinations_exit_2_with_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    // Rows that are not images: a flat Parquet file of MNIST's pixels.
    let mut data = Selection {
        data: MNIST.into(),
        split: Split::Train,
        limit: Some(100),
        classes: ClassFilter::default(),
    }
    .load()
    .unwrap();
    data.image = None;
    let flat = dir.path().join("flat.parquet");
    distill_data::parquet::write_dataset(&flat, &data).unwrap();
    let flat = flat.to_str().unwrap();
    let cases: [(&[&str], &[&str]); 5] = [
        (
            &["--data", flat, "--arch", "conv:4:5,relu,flatten,fc"],
            &["--arch", "flat.parquet", "image"],
        ),
        (
            &["--data", MNIST, "--arch", "conv:4:5,relu,fc"],
            &["--arch", "flatten"],
        ),
        (
            &["--data", MNIST, "--arch", "conv:4:x,fc"],
            &["--arch", "conv:4:x"],
        ),
        (
            &["--data", MNIST, "--arch", "flatten,fc", "--hidden", "10"],
            &["--arch", "--hidden"],
        ),
        (
            &[
                "--data",
                MNIST,
                "--arch",
                "flatten,fc",
                "--hidden-dropout",
                "0.5",
            ],
            &["--hidden-dropout", "dropout:0.5"],
        ),
    ];
    for (args, words) in cases {
        let all = [
            args,
            &["--limit", "100", "--epochs", "1", "--out", "m.onnx"],
        ]
        .concat();
        let (code, _, stderr) = train_bin(dir.path(), &all);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        for w in words {
            assert!(stderr.contains(w), "{args:?}: no '{w}' in {stderr}");
        }
        assert!(!dir.path().join("m.onnx").exists());
        assert!(!dir.path().join("m.ckpt").exists());
    }
}
