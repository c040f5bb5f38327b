//! What both integration tests share: the MNIST rows, running the binary in a directory, reading
//! and running the models it writes, and the bad-input check.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use distill_core::onnx_proto::ModelProto;
use distill_data::{Selection, Split};
use distill_runtime::{ModelSpec, OnnxModel, Provider};
use ndarray::Array2;
use prost::Message;

pub const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

pub fn mnist_path() -> String {
    format!("{REPO}/data/mnist")
}

pub fn mnist(split: Split, limit: usize) -> distill_data::Dataset {
    Selection {
        data: mnist_path(),
        split,
        limit: Some(limit),
        classes: Default::default(),
    }
    .load()
    .unwrap()
}

pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `distill-quantize --data <MNIST> <args>` in `dir`.
pub fn quantize(dir: &Path, args: &[&str]) -> Outcome {
    let out = Command::new(env!("CARGO_BIN_EXE_distill-quantize"))
        .current_dir(dir)
        .arg("--data")
        .arg(mnist_path())
        .args(args)
        .output()
        .unwrap();
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

pub fn run(path: &Path, rows: ndarray::ArrayView2<f32>) -> Array2<f32> {
    OnnxModel::load(&ModelSpec::new(path), Provider::Cpu, 1)
        .unwrap()
        .run(rows)
        .unwrap()
}

pub fn read_model(path: &Path) -> ModelProto {
    ModelProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap()
}

pub fn ops(model: &ModelProto) -> Vec<String> {
    let graph = model.graph.as_ref().unwrap();
    graph.node.iter().map(|n| n.op_type.clone()).collect()
}

pub fn count(ops: &[String], op: &str) -> usize {
    ops.iter().filter(|o| *o == op).count()
}

/// Each `(args, expected)` case, run through `run` in `dir`, exits 2 with `expected` in its
/// stderr and leaves `dir`'s files as they were.
pub fn assert_each_exits_2(
    dir: &Path,
    cases: Vec<(Vec<&str>, &str)>,
    run: impl Fn(&Path, &[&str]) -> Outcome,
) {
    let before = files(dir);
    for (args, expected) in cases {
        let o = run(dir, &args);
        assert_eq!(o.code, 2, "{args:?}: {}", o.stderr);
        assert!(o.stderr.contains(expected), "{args:?}: {}", o.stderr);
        assert_eq!(files(dir), before, "{args:?} wrote something");
    }
}
