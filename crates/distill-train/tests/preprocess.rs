//! distill-train's `--normalize` and `--flip` on a 300-row MNIST slice: the saved model takes raw
//! rows (ONNX Runtime on raw rows equals the engine on rows normalised by hand here), records its
//! preprocessing, and flips are seeded, reproducible and resumable; bad settings exit 2 naming
//! the flag with nothing written.
#![allow(clippy::unwrap_used)]

mod common;

use common::{MNIST, train_bin};
use distill_data::{ClassFilter, Selection, Split};
use distill_nn::{Model, onnx};
use distill_runtime::{ModelSpec, OnnxModel, Provider};
use std::path::Path;

const CNN: &str = "conv:4:3:p1,relu,maxpool:2,flatten,fc";

fn slice(extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["--data", MNIST, "--limit", "300", "--epochs", "2"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn run(dir: &Path, args: &[String]) -> (i32, String, String) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    train_bin(dir, &args)
}

/// The trained values of the model at `path`.
fn weights(path: &Path) -> Vec<Vec<f32>> {
    let m = Model::load(path).unwrap().0;
    m.params()
        .into_iter()
        .flat_map(|(w, b)| [w.iter().copied().collect(), b.to_vec()])
        .collect()
}

#[test]
fn a_normalised_model_takes_raw_rows_and_records_its_preprocessing() {
    let dir = tempfile::tempdir().unwrap();
    // MNIST's pixel mean and standard deviation (of the IDX values scaled to [0, 1]).
    let (mean, std) = (0.1307f32, 0.3081f32);
    let raw = Selection {
        data: MNIST.into(),
        split: Split::Test,
        limit: Some(200),
        classes: ClassFilter::default(),
    }
    .load()
    .unwrap()
    .features;
    // Normalised by hand, independently of distill_data::Preprocess.
    let normalised = raw.mapv(|x| (x - mean) / std);
    for (name, net) in [("mlp", ["--hidden", "32"]), ("cnn", ["--arch", CNN])] {
        let out = format!("{name}.onnx");
        let args = slice(&[
            net[0],
            net[1],
            "--normalize",
            "mean=0.1307,std=0.3081",
            "--out",
            &out,
        ]);
        let (code, stdout, stderr) = run(dir.path(), &args);
        assert_eq!(code, 0, "{name}: {stderr}");
        assert!(
            stdout.contains("checked with ONNX Runtime on 30 raw rows"),
            "{name}: {stdout}"
        );
        let path = dir.path().join(&out);
        let (model, meta) = Model::load(&path).unwrap();
        let recorded: serde_json::Value =
            serde_json::from_str(&meta[onnx::net::PREPROCESS_KEY]).unwrap();
        assert_eq!(
            recorded["mean"][0].as_f64().unwrap() as f32,
            mean,
            "{meta:?}"
        );
        assert_eq!(recorded["std"][0].as_f64().unwrap() as f32, std, "{meta:?}");
        assert!(
            meta["distill.training"].contains(r#""normalize":{"scale":1.0,"mean":[0.1307]"#),
            "{}",
            meta["distill.training"]
        );
        distill_runtime::init().unwrap();
        let mut session = OnnxModel::load(&ModelSpec::new(&path), Provider::Cpu, 1).unwrap();
        let theirs = session.run(raw.view()).unwrap();
        let ours = model.forward(normalised.view()).unwrap();
        let diff = ours
            .iter()
            .zip(theirs.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            diff < 1e-4,
            "{name}: ONNX Runtime on raw rows differs by {diff}"
        );
        // The engine on raw rows is another model: the preprocessing is not a no-op.
        let unnormalised = model.forward(raw.view()).unwrap();
        assert!(
            (&unnormalised - &theirs).iter().any(|d| d.abs() > 1e-2),
            "{name}"
        );
    }
    // The plain MLP reader refuses a file whose first nodes it would not compute.
    let e = onnx::load(&dir.path().join("mlp.onnx"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("pre/Mul") && e.contains("preprocessing"), "{e}");
}

#[test]
fn bad_normalize_and_flip_settings_exit_2_naming_the_flag_with_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    for (extra, needles) in [
        (
            vec!["--hidden", "8", "--normalize", "std=0"],
            vec!["--normalize std=0", "not positive"],
        ),
        (
            vec!["--hidden", "8", "--normalize", "mean=0.1:0.2:0.3"],
            vec!["--normalize", "mean has 3 values", "1 channel"],
        ),
        (
            vec!["--hidden", "8", "--normalize", "mu=2"],
            vec!["--normalize mu=2", "unknown field 'mu'"],
        ),
    ] {
        let mut args = slice(&extra);
        args.extend(["--out".to_string(), "m.onnx".to_string()]);
        let (code, _, stderr) = run(dir.path(), &args);
        assert_eq!(code, 2, "{extra:?}: {stderr}");
        for n in needles {
            assert!(stderr.contains(n), "{extra:?}: {n} not in {stderr}");
        }
    }
    // Flat rows (a synthetic data set has no image shape) have no left and right.
    let (code, _, stderr) = train_bin(
        dir.path(),
        &[
            "--data",
            "synthetic:classes=4,groups=2,dim=8,seed=1,train=40,test=8",
            "--hidden",
            "8",
            "--flip",
            "--out",
            "m.onnx",
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--flip") && stderr.contains("not images"),
        "{stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn flipped_runs_are_reproducible_and_resume_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let common = [
        "--arch",
        CNN,
        "--batch",
        "50",
        "--flip",
        "--jitter",
        "1",
        "--normalize",
        "mean=0.1307,std=0.3081",
        "--test-split",
        "none",
    ];
    let with = |more: &[&str]| slice(&[&common[..], more].concat());
    assert_eq!(run(dir.path(), &with(&["--out", "a.onnx"])).0, 0);
    assert_eq!(run(dir.path(), &with(&["--out", "b.onnx"])).0, 0);
    assert_eq!(
        weights(&dir.path().join("a.onnx")),
        weights(&dir.path().join("b.onnx")),
        "two seeded runs differ"
    );
    // 270 training rows, 6 batches an epoch: stop in the second epoch, then resume.
    let (code, stdout, _) = run(dir.path(), &with(&["--out", "c.onnx", "--max-steps", "8"]));
    assert_eq!(code, 130, "{stdout}");
    let (code, _, stderr) = run(dir.path(), &with(&["--out", "c.onnx", "--resume"]));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        weights(&dir.path().join("a.onnx")),
        weights(&dir.path().join("c.onnx")),
        "the resumed run's weights differ"
    );
    // The flips change what is learnt: the same run without --flip ends elsewhere.
    let unflipped: Vec<&str> = common.iter().copied().filter(|&a| a != "--flip").collect();
    let args = slice(&[&unflipped[..], &["--out", "d.onnx"]].concat());
    assert_eq!(run(dir.path(), &args).0, 0);
    assert_ne!(
        weights(&dir.path().join("a.onnx")),
        weights(&dir.path().join("d.onnx"))
    );
    // A checkpoint made without --flip is not resumed with it.
    let (code, _, stderr) = run(dir.path(), &with(&["--out", "d.onnx", "--resume"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("other settings"), "{stderr}");
}
