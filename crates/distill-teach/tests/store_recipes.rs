//! The pandas, Polars and DuckDB recipes of `docs/store.md`, run as written against stores made by
//! `distill-teach` (one file, and a folder of two parts, in the full and the top-3 layout) on an
//! MNIST slice, compared with NumPy within 1e-6 by `scripts/check_store_recipes.py` (on a top-k
//! store, the top-k recipe; each layout's other recipes must stop with their message). Needs a Python with numpy, pyarrow, pandas,
//! polars and duckdb: `DISTILL_RECIPES_PYTHON`, else the repository's `.venv-recipes` (made by
//! `make check-store-recipes`), else `python3`. Without one the test says so on stderr (past the
//! test harness's capture) and passes, unless `DISTILL_RECIPES_PYTHON` was set: then it fails.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A Python that has the five packages, or why there is none.
fn python() -> Result<PathBuf, String> {
    let candidates: Vec<PathBuf> = match std::env::var_os("DISTILL_RECIPES_PYTHON") {
        Some(p) => vec![PathBuf::from(p)],
        None => vec![repo().join(".venv-recipes/bin/python"), "python3".into()],
    };
    let mut tried = Vec::new();
    for py in candidates {
        let out = Command::new(&py)
            .args(["-c", "import numpy, pyarrow, pandas, polars, duckdb"])
            .output();
        match out {
            Ok(o) if o.status.success() => return Ok(py),
            Ok(o) => tried.push(format!(
                "{}: {}",
                py.display(),
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("failed")
            )),
            Err(e) => tried.push(format!("{}: {e}", py.display())),
        }
    }
    Err(tried.join("; "))
}

#[test]
fn the_store_recipes_in_docs_compute_numpys_softmax() {
    let py = match python() {
        Ok(p) => p,
        Err(why) if std::env::var_os("DISTILL_RECIPES_PYTHON").is_some() => {
            panic!("DISTILL_RECIPES_PYTHON names no usable Python: {why}")
        }
        Err(why) => {
            // Straight to the process's stderr, so it shows even when the harness captures output.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED the_store_recipes_in_docs_compute_numpys_softmax: no Python with numpy, \
                 pyarrow, pandas, polars and duckdb ({why}); `make check-store-recipes` makes one"
            );
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fixtures = repo().join("tests/fixtures/teachers");
    let mnist = repo().join("data/mnist");
    // A CNN's logits and a scikit-learn model's probabilities (stored as ln p).
    let base: Vec<String> = [
        "--data",
        mnist.to_str().unwrap(),
        "--limit",
        "300",
        "--model",
        fixtures.join("torchscript_cnn.onnx").to_str().unwrap(),
        "--mean",
        "0.1307",
        "--std",
        "0.3081",
        "--model",
        fixtures.join("skl_logreg.onnx").to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let teach = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_distill-teach"))
            .args(&base)
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let file = d.join("store.parquet");
    let parts = d.join("parts");
    teach(&["--out", file.to_str().unwrap()]);
    teach(&["--shard", "1/2", "--out", parts.to_str().unwrap()]);
    teach(&["--shard", "2/2", "--out", parts.to_str().unwrap()]);
    let top_file = d.join("top3.parquet");
    let top_parts = d.join("top3-parts");
    teach(&["--top-k", "3", "--out", top_file.to_str().unwrap()]);
    for shard in ["1/2", "2/2"] {
        teach(&[
            "--top-k",
            "3",
            "--shard",
            shard,
            "--out",
            top_parts.to_str().unwrap(),
        ]);
    }
    for store in [&file, &parts, &top_file, &top_parts] {
        let out = Command::new(&py)
            .arg(repo().join("scripts/check_store_recipes.py"))
            .arg(store)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}\n{stdout}\n{}",
            store.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        // Full layout: three recipes at two temperatures, and the top-k recipe refusing it; top-k
        // layout: the top-k recipe at two temperatures, and the three others refusing it.
        let want = if store.to_str().unwrap().contains("top3") {
            5
        } else {
            7
        };
        assert_eq!(stdout.matches(": ok").count(), want, "{stdout}");
    }
}
