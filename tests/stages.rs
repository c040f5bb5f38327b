//! The stage binaries chained by hand, as a user would run them: teachers trained by
//! `distill train`, scored by `distill teach`, clustered by `distill cluster`.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

/// Runs `distill ARGS` in `dir`, asserting success; returns stdout.
fn distill(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_distill"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "distill {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// On the synthetic hierarchy (40 classes in 8 groups), the subsets recovered from an ensemble
/// trained by distill-train and run by distill-teach match the true groups (ARI >= 0.9).
#[test]
fn clusters_of_trained_teachers_recover_the_synthetic_groups() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = "synthetic:classes=40,groups=8,dim=32,seed=3";
    for seed in ["1", "2"] {
        let out = format!("teacher-{seed}.onnx");
        distill(
            d,
            &[
                "train",
                "--data",
                data,
                "--hidden",
                "64",
                "--epochs",
                "8",
                "--seed",
                seed,
                "--test-split",
                "none",
                "--out",
                &out,
            ],
        );
    }
    distill(
        d,
        &[
            "teach",
            "--model",
            "teacher-1.onnx",
            "--model",
            "teacher-2.onnx",
            "--data",
            data,
            "--out",
            "soft.parquet",
        ],
    );
    distill(
        d,
        &[
            "cluster",
            "--soft-targets",
            "soft.parquet",
            "--count",
            "8",
            "--out",
            "specialists.yaml",
        ],
    );
    let yaml = std::fs::read_to_string(d.join("specialists.yaml")).unwrap();
    let value: serde_norway::Value = serde_norway::from_str(&yaml).unwrap();
    let ari = value["ari_vs_true_groups"]
        .as_f64()
        .unwrap_or_else(|| panic!("no ARI in:\n{yaml}"));
    assert!(
        ari >= 0.9,
        "adjusted Rand index {ari} against the true groups:\n{yaml}"
    );
    assert!(d.join("specialists.png").is_file());
}

/// The best checkpoint carries the same bias adjustment as the final model, in its weights and
/// its metadata.
#[test]
fn the_best_model_gets_the_bias_adjustment_too() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mnist = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist");
    distill(
        d,
        &[
            "train",
            "--data",
            mnist,
            "--limit",
            "2000",
            "--hidden",
            "32",
            "--epochs",
            "2",
            "--validation",
            "300",
            "--exclude-classes",
            "3",
            "--bias-adjust",
            "3=+2",
            "--test-split",
            "none",
            "--out",
            "m.onnx",
        ],
    );
    for file in ["m.onnx", "m.best.onnx"] {
        let loaded = distill_nn::onnx::load(&d.join(file)).unwrap();
        let bias = &loaded.metadata["distill.bias_adjust"];
        let shifts: serde_json::Value = serde_json::from_str(bias).unwrap();
        assert_eq!(shifts[0]["class"], 3, "{file}: {bias}");
        assert_eq!(shifts[0]["delta"], 2.0, "{file}: {bias}");
    }
}

/// A run stopped mid-epoch keeps the epoch's time so far in its checkpoint, so that the resumed
/// epoch reports its seconds and samples/s over the whole epoch.
#[test]
fn a_checkpoint_taken_mid_epoch_keeps_the_epoch_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mnist = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist");
    let out = Command::new(env!("CARGO_BIN_EXE_distill"))
        .current_dir(d)
        .args([
            "train",
            "--data",
            mnist,
            "--limit",
            "3000",
            "--hidden",
            "64",
            "--epochs",
            "2",
            "--validation",
            "0",
            "--test-split",
            "none",
            "--max-steps",
            "10",
            "--out",
            "m.onnx",
        ])
        .output()
        .unwrap();
    assert!(!d.join("m.onnx").exists(), "{out:?}");
    // The checkpoint: a magic line, a little-endian u64 length, then the JSON header.
    let bytes = std::fs::read(d.join("m.ckpt")).unwrap();
    let start = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
    let len = u64::from_le_bytes(bytes[start..start + 8].try_into().unwrap()) as usize;
    let header: serde_json::Value =
        serde_json::from_slice(&bytes[start + 8..start + 8 + len]).unwrap();
    let partial = &header["progress"]["partial"];
    assert_eq!(partial["rows"], 10 * 128, "{partial}");
    assert!(
        partial["seconds"].as_f64().unwrap() > 0.0,
        "the checkpoint lost the epoch's seconds: {partial}"
    );
}
