//! Mutation fuzzing on stable Rust: real inputs (the MNIST IDX files, a soft-target store, an
//! MLP's ONNX file, the shipped pipelines, a specialists manifest and subsets file) are damaged
//! at seeded random places — bytes flipped, runs deleted, duplicated or overwritten with
//! interesting values, the file cut short — and given to the reader. The reader must return (an error, or a value) and never panic; an error
//! must be a user error (exit code 2 at the command line).
//!
//! `make test` runs each of the targets (IDX, store, ONNX, pipelines, the specialists manifest
//! and specialists.yaml, and distill-report's readers of metrics.json, training records,
//! specialists.yaml and the pipeline's lock) for `DISTILL_FUZZ_SECONDS` (default 2); `make fuzz`
//! for 600.
//! A failure prints the seed and iteration, which replay exactly.
#![allow(clippy::unwrap_used)]

use distill_core::rng::Rng;
use std::path::Path;
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn budget() -> Duration {
    let secs = std::env::var("DISTILL_FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(2.0);
    Duration::from_secs_f64(secs)
}

const INTERESTING: [u8; 8] = [0x00, 0xff, 0x7f, 0x80, 0x01, 0x08, 0x0a, b'-'];

/// One seeded mutation of `input`: 1–4 edits.
fn mutate(input: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = out.len().max(1);
        match rng.below(7) {
            0 => {
                let i = rng.below(len);
                if let Some(b) = out.get_mut(i) {
                    *b ^= 1 << rng.below(8);
                }
            }
            1 => {
                let i = rng.below(len);
                if let Some(b) = out.get_mut(i) {
                    *b = INTERESTING[rng.below(INTERESTING.len())];
                }
            }
            2 => out.truncate(rng.below(len)),
            3 => {
                let i = rng.below(len);
                let n = 1 + rng.below(64);
                out.drain(i.min(out.len())..(i + n).min(out.len()));
            }
            4 => {
                let i = rng.below(len).min(out.len());
                let n = (1 + rng.below(64)).min(out.len() - i);
                let chunk: Vec<u8> = out[i..i + n].to_vec();
                let at = rng.below(len).min(out.len());
                out.splice(at..at, chunk);
            }
            5 => {
                // A 4-byte big- or little-endian integer overwritten with an extreme value.
                let i = rng.below(len);
                let v: u32 = [0, 1, u32::MAX, 0x7fff_ffff, 60_000, 28][rng.below(6)];
                let bytes = if rng.below(2) == 0 {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                };
                for (k, b) in bytes.iter().enumerate() {
                    if let Some(x) = out.get_mut(i + k) {
                        *x = *b;
                    }
                }
            }
            _ => {
                let i = rng.below(len).min(out.len());
                out.insert(i, INTERESTING[rng.below(INTERESTING.len())]);
            }
        }
    }
    out
}

/// Runs `check` on mutations of `input` until the time budget is spent; returns the count.
fn fuzz(
    name: &str,
    seed: u64,
    input: &[u8],
    budget: Duration,
    check: impl Fn(&[u8]) -> Result<(), String>,
) -> usize {
    let started = Instant::now();
    let mut n = 0usize;
    while started.elapsed() < budget || n < 20 {
        let mut rng = Rng::derive(seed, n as u64);
        let bytes = mutate(input, &mut rng);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&bytes)));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("{name}: seed {seed}, iteration {n}: {e}"),
            Err(_) => panic!("{name}: seed {seed}, iteration {n}: the reader panicked"),
        }
        n += 1;
    }
    eprintln!("{name}: {n} mutated inputs, no panic");
    n
}

fn user_error(e: &distill_core::CoreError) -> Result<(), String> {
    if e.is_user_error() {
        Ok(())
    } else {
        Err(format!("not a user error (would exit 1): {e}"))
    }
}

#[test]
fn idx_reader_survives_mutations() {
    let labels = std::fs::read(format!("{ROOT}/data/mnist/t10k-labels-idx1-ubyte.gz")).unwrap();
    let path = Path::new("t10k-labels-idx1-ubyte");
    let raw = distill_data::idx::maybe_gunzip(path, labels.clone()).unwrap();
    // The raw IDX bytes (header and payload), and the gzip file around them.
    fuzz(
        "idx",
        1,
        &raw[..2000],
        budget() / 2,
        |bytes| match distill_data::idx::parse_u8(path, bytes.to_vec(), 1) {
            Ok(_) => Ok(()),
            Err(e) => user_error(&e),
        },
    );
    fuzz(
        "idx.gz",
        2,
        &labels,
        budget() / 2,
        |bytes| match distill_data::idx::maybe_gunzip(path, bytes.to_vec())
            .and_then(|b| distill_data::idx::parse_u8(path, b, 1))
        {
            Ok(_) => Ok(()),
            Err(e) => user_error(&e),
        },
    );
}

/// A store written by the store writer, mutated and read back through a file.
#[test]
fn store_reader_survives_mutations() {
    use distill_store::{OutputKind, SCHEMA_VERSION, StoreMeta, StoreWriter, TeacherMeta};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.parquet");
    let meta = StoreMeta {
        schema_version: SCHEMA_VERSION,
        classes: 3,
        teachers: vec![TeacherMeta {
            name: "a".into(),
            path: "a.onnx".into(),
            sha256: "00".into(),
            kind: OutputKind::Logits,
            prob_floor: None,
        }],
        dataset: "toy".into(),
        split: "train".into(),
        transform: "none".into(),
        tool_version: distill_core::TOOL_VERSION.into(),
        shard: None,
        layout: Default::default(),
        top_k: None,
    };
    let mut w = StoreWriter::create(&path, &meta).unwrap();
    let logits = ndarray::Array2::from_shape_fn((40, 3), |(i, j)| (i * 3 + j) as f32 / 7.0);
    let index: Vec<u64> = (0..40).collect();
    let labels: Vec<u32> = (0..40).map(|i| i % 3).collect();
    w.write(&index, Some(&labels), &[logits.view()]).unwrap();
    w.finish().unwrap();
    let good = std::fs::read(&path).unwrap();
    let target = dir.path().join("m.parquet");
    fuzz("store", 3, &good, budget(), |bytes| {
        std::fs::write(&target, bytes).unwrap();
        match distill_store::read_store(&target) {
            Ok(_) => Ok(()),
            Err(e) => user_error(&e),
        }
    });
    // The same rows in the top-k layout (K = 2 of 3): ids, the rest's log and the expansion.
    let top = dir.path().join("top.parquet");
    let mut w = StoreWriter::create(&top, &meta.clone().with_top_k(2)).unwrap();
    w.write(&index, Some(&labels), &[logits.view()]).unwrap();
    w.finish().unwrap();
    let good = std::fs::read(&top).unwrap();
    fuzz("store-top-k", 5, &good, budget(), |bytes| {
        std::fs::write(&target, bytes).unwrap();
        match distill_store::read_store(&target) {
            Ok(_) => Ok(()),
            Err(e) => user_error(&e),
        }
    });
}

/// An MLP's ONNX file, mutated and loaded by the engine's reader and the schema subset.
#[test]
fn onnx_reader_survives_mutations() {
    use distill_nn::mlp::{Mlp, MlpConfig};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.onnx");
    let config: MlpConfig = serde_json::from_str(r#"{"sizes": [6, 5, 3]}"#).unwrap();
    let mlp = Mlp::new(config, 1).unwrap();
    distill_nn::onnx::save(&mlp, &path, &[("k".into(), "v".into())]).unwrap();
    let good = std::fs::read(&path).unwrap();
    let target = dir.path().join("x.onnx");
    fuzz("onnx", 4, &good, budget(), |bytes| {
        std::fs::write(&target, bytes).unwrap();
        match distill_nn::onnx::load(&target) {
            Ok(_) => Ok(()),
            Err(distill_nn::NnError::Core(e)) => user_error(&e),
            // Shape and ONNX errors are the file's fault: stages exit 2 for them.
            Err(_) => Ok(()),
        }
    });
}

/// Every shipped pipeline, mutated as text and parsed and resolved (nothing runs).
#[test]
fn pipeline_parser_survives_mutations() {
    let dir = std::fs::read_dir(format!("{ROOT}/pipelines")).unwrap();
    let mut files: Vec<_> = dir
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for (k, file) in files.iter().enumerate() {
        let text = std::fs::read(file).unwrap();
        fuzz(
            &format!("pipeline {}", file.display()),
            100 + k as u64,
            &text,
            budget() / files.len() as u32,
            |bytes| {
                let Ok(text) = String::from_utf8(bytes.to_vec()) else {
                    return Ok(());
                };
                match distill::pipeline::Document::parse(file, text) {
                    Ok(_) => Ok(()),
                    Err(e) if e.exit_code() == 2 => Ok(()),
                    Err(e) => Err(format!("exit code {} for: {e}", e.exit_code())),
                }
            },
        );
    }
}

/// A specialists manifest (version 2, one specialist), mutated as bytes and read by
/// `Manifest::load`, the reader of distill-specialists and distill-eval, and by distill-report's
/// `read_manifest` around it.
#[test]
fn specialists_manifest_reader_survives_mutations() {
    let good = "version: 2\ntool_version: 0.1.0\n\
                generalist: { path: ../student.onnx, sha256: 4f0c }\n\
                classes: 10\nsubsets: ../specialists.yaml\nstore: ../soft.parquet\n\
                specialists:\n  - id: 0\n    path: specialist-0.onnx\n    sha256: 9a1e\n    \
                classes: [4, 9]\n    subset_share: 0.2\n    sampled_share: 0.5\n    \
                dustbin_correction: 1.386\n    epochs: 6\n    rows_trained: 19200\n    \
                validation_errors: 31\n    validation_rows: 2000\n    used: true\n    \
                validation_effect: { rows: 5000, errors_with: 241, errors_without: 247, \
                nll_with: 0.171, nll_without: 0.18 }\n";
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("manifest.yaml");
    std::fs::write(&target, good).unwrap();
    distill_specialists::Manifest::load(&target).unwrap();
    fuzz(
        "specialists manifest",
        6,
        good.as_bytes(),
        budget(),
        |bytes| {
            std::fs::write(&target, bytes).unwrap();
            match distill_specialists::Manifest::load(&target) {
                Ok(_) => {}
                Err(distill_specialists::ManifestError::Io { source, .. }) => {
                    return Err(format!("not a user error (would exit 1): {source}"));
                }
                Err(_) => {}
            }
            report_error(distill_report::inputs::read_manifest(&target).map(|_| ()))
        },
    );
}

/// A `specialists.yaml` as distill-cluster writes it, mutated as bytes and read by
/// distill-specialists' `read_subsets` (for a 10-class generalist).
#[test]
fn specialists_subsets_reader_survives_mutations() {
    let good = "version: 1\nstore: store.parquet\ndataset: data/mnist\nmethod: second-moment\n\
                temperature: 1.0\ncombine: arithmetic\nspecialists: 2\nseed: 1\nclasses: 10\n\
                rows: 200\noverlap: 1\ncaptured: 0.83\ngeneralist_only: []\nsubsets:\n\
                - id: 0\n  classes: [0, 1, 2, 3, 5, 6, 7, 8, 9]\n  \
                names: ['0', '1', '2', '3', '5', '6', '7', '8', '9']\n  size: 9\n  captured: 0.83\n\
                - id: 1\n  classes: [4]\n  names: ['4']\n  size: 1\n  captured: 0.0\n";
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("specialists.yaml");
    std::fs::write(&target, good).unwrap();
    distill_specialists::train::read_subsets(&target, 10).unwrap();
    fuzz(
        "specialists subsets",
        7,
        good.as_bytes(),
        budget(),
        |bytes| {
            std::fs::write(&target, bytes).unwrap();
            match distill_specialists::train::read_subsets(&target, 10) {
                Ok(_) => Ok(()),
                Err(e) if e.is_user_error() => Ok(()),
                Err(e) => Err(format!("not a user error (would exit 1): {e}")),
            }
        },
    );
}

fn report_error(outcome: Result<(), distill_report::ReportError>) -> Result<(), String> {
    match outcome {
        Ok(()) => Ok(()),
        Err(e) if e.is_user_error() => Ok(()),
        Err(e) => Err(format!("not a user error (would exit 1): {e}")),
    }
}

const REPORT_FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/crates/distill-report/tests/fixtures/smoke"
);

/// distill-eval's `metrics.json` (the report's smoke fixture), mutated as bytes and read by
/// distill-report's `read_metrics`.
#[test]
fn report_metrics_reader_survives_mutations() {
    let good = std::fs::read(format!("{REPORT_FIXTURES}/metrics.json")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("metrics.json");
    std::fs::write(&target, &good).unwrap();
    distill_report::inputs::read_metrics(&target).unwrap();
    fuzz("report metrics.json", 8, &good, budget(), |bytes| {
        std::fs::write(&target, bytes).unwrap();
        report_error(distill_report::inputs::read_metrics(&target).map(|_| ()))
    });
}

/// A training record (`MODEL.metrics.csv` as distill-train writes it), mutated as bytes and read
/// by distill-report's `read_train_log`.
#[test]
fn report_train_log_reader_survives_mutations() {
    let good = std::fs::read(format!("{REPORT_FIXTURES}/student.metrics.csv")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("student.metrics.csv");
    std::fs::write(&target, &good).unwrap();
    distill_report::inputs::read_train_log(&target).unwrap();
    fuzz("report train log", 9, &good, budget(), |bytes| {
        std::fs::write(&target, bytes).unwrap();
        report_error(distill_report::inputs::read_train_log(&target).map(|_| ()))
    });
}

/// distill-cluster's `specialists.yaml`, mutated as bytes and read by distill-report's
/// `read_specialists` (the report's own reader, not distill-specialists').
#[test]
fn report_subsets_reader_survives_mutations() {
    let good = std::fs::read(format!("{REPORT_FIXTURES}/specialists.yaml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("specialists.yaml");
    std::fs::write(&target, &good).unwrap();
    distill_report::inputs::read_specialists(&target).unwrap();
    fuzz("report specialists.yaml", 10, &good, budget(), |bytes| {
        std::fs::write(&target, bytes).unwrap();
        report_error(distill_report::inputs::read_specialists(&target).map(|_| ()))
    });
}

/// A pipeline's lock, mutated as bytes and read by `distill run`'s `Lock::read` (which turns
/// an unreadable lock into a note) and by distill-report through `--pipeline`.
#[test]
fn pipeline_lock_readers_survive_mutations() {
    let good = "schema: 1\nstages:\n  teach:\n    kind: teach\n    state: complete\n    \
                args: 3f1a\n    command: distill-teach --model t.onnx --out o/s.parquet\n    \
                deps:\n      t.onnx: 9c2e\n    outs:\n      o/s.parquet: 77ab\n    \
                seconds: 1.25\n    report: wrote 100 rows\n    version: 0.1.0\n  \
                train@a:\n    kind: train\n    state: started\n    args: 0b1c\n    \
                command: distill-train --out o/a.onnx\n";
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("p.yaml");
    std::fs::write(
        &pipeline,
        "stages:\n  teach:\n    kind: teach\n    args: {model: t.onnx, out: o/s.parquet}\n  \
         train:\n    kind: train\n    foreach: [a]\n    args:\n      out: o/${item}.onnx\n",
    )
    .unwrap();
    let lock = distill::pipeline::lock_path(&pipeline);
    std::fs::write(&lock, good).unwrap();
    let (read, note) = distill::pipeline::Lock::read(&lock);
    assert!(note.is_none() && read.stages.len() == 2, "{note:?}");
    let config = distill_report::Config {
        pipeline: Some(pipeline.clone()),
        out: dir.path().join("report.html"),
        ..Default::default()
    };
    assert_eq!(
        distill_report::read_inputs(&config).unwrap().stages.len(),
        2
    );
    fuzz("pipeline lock", 11, good.as_bytes(), budget(), |bytes| {
        std::fs::write(&lock, bytes).unwrap();
        let _ = distill::pipeline::Lock::read(&lock);
        report_error(distill_report::read_inputs(&config).map(|_| ()))
    });
}
