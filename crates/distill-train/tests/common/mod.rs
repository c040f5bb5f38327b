//! What every distill-train test file needs: the MNIST files and the real binary.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

pub const MNIST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/mnist");

/// Runs the binary in `dir` with `args`; returns (exit code, stdout, stderr).
pub fn train_bin(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_distill-train"))
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
