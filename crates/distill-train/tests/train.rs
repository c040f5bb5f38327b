//! distill-train end to end on small MNIST slices: the real binary for exit codes and outputs,
//! the library for the numbers.
#![allow(clippy::unwrap_used)]

mod common;

use common::{MNIST, train_bin};
use distill_core::math::argmax_rows;
use distill_data::{ClassFilter, Selection, Split};
use distill_nn::onnx;
use distill_store::{StoreMeta, StoreWriter, TeacherMeta};
use distill_train::cli::Args;
use std::path::{Path, PathBuf};

fn config(args: &[&str]) -> distill_train::Config {
    use clap::Parser;
    let mut all = vec!["distill-train", "--data", MNIST];
    all.extend_from_slice(args);
    Args::parse_from(all).into_config().unwrap()
}

/// A store holding `model`'s logits for the first `limit` training rows.
fn store_from(model: &Path, limit: usize, out: &Path) {
    let data = Selection {
        data: MNIST.into(),
        split: Split::Train,
        limit: Some(limit),
        classes: ClassFilter::default(),
    }
    .load()
    .unwrap();
    let teacher = onnx::load(model).unwrap().mlp;
    let logits = teacher.forward(data.features.view()).unwrap();
    let teacher = TeacherMeta::logits(
        "teacher",
        model.display().to_string(),
        distill_core::sha256_file(model).unwrap(),
    );
    let meta = StoreMeta::new(10, vec![teacher], MNIST, "train", format!("limit={limit}"));
    let mut w = StoreWriter::create(out, &meta).unwrap();
    w.write(&data.index, data.labels.as_deref(), &[logits.view()])
        .unwrap();
    w.finish().unwrap();
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn teacher(dir: &Path) -> PathBuf {
    let out = dir.join("teacher.onnx");
    let c = config(&[
        "--limit",
        "3000",
        "--hidden",
        "128",
        "--epochs",
        "6",
        "--lr",
        "0.1",
        "--out",
        out.to_str().unwrap(),
        "--test-split",
        "none",
    ]);
    distill_train::run(&c, &distill_progress::Progress::hidden()).unwrap();
    out
}

#[test]
fn hard_labels_on_a_2000_row_slice_are_far_below_chance() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = train_bin(
        dir.path(),
        &[
            "--data", MNIST, "--limit", "2000", "--hidden", "64", "--epochs", "6", "--lr", "0.1",
            "--out", "m.onnx",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("test errors:"))
        .unwrap();
    let errors: usize = line.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(
        errors < 2000,
        "{errors} test errors of 10000 (chance is 9000): {stdout}"
    );
    assert_eq!(
        files_in(dir.path()),
        vec!["m.best.onnx", "m.ckpt", "m.metrics.csv", "m.onnx"]
    );
    let csv = std::fs::read_to_string(dir.path().join("m.metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 7, "{csv}");
    assert!(csv.starts_with("epoch,learning_rate,soft_loss,hard_loss,loss,train_error,val_error"));
    // Epochs are numbered from 1, as on the console; hard-label training computes no soft term
    // (an empty cell, not 0), and its loss is the hard cross-entropy.
    let epochs: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(epochs, ["1", "2", "3", "4", "5", "6"]);
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f[2], "", "{line}");
        assert_eq!(f[3], f[4], "{line}");
    }
    assert!(
        stderr.contains("epoch 6/6  train loss ") && stderr.contains(" (hard CE)  train error "),
        "{stderr}"
    );
    assert!(!stderr.contains("soft T²·KL"), "{stderr}");
    assert!(stdout.contains("last epoch 6: train loss "), "{stdout}");
    let meta = onnx::load(&dir.path().join("m.onnx")).unwrap().metadata;
    assert!(meta["distill.training"].contains("\"hidden\":[64]"));
}

#[test]
fn distillation_brings_the_student_close_to_its_teacher() {
    let dir = tempfile::tempdir().unwrap();
    let t = teacher(dir.path());
    let store = dir.path().join("soft.parquet");
    store_from(&t, 3000, &store);
    let student = dir.path().join("student.onnx");
    // No labels at all: alpha 1.
    let c = config(&[
        "--limit",
        "3000",
        "--hidden",
        "64",
        "--epochs",
        "8",
        "--lr",
        "0.1",
        "--temperature",
        "4",
        "--alpha",
        "1",
        "--soft-targets",
        store.to_str().unwrap(),
        "--out",
        student.to_str().unwrap(),
        "--test-split",
        "none",
    ]);
    let report = distill_train::run(&c, &distill_progress::Progress::hidden()).unwrap();
    assert!(report.mode.contains("T=4"));
    // The soft term is reported as T²·KL(p‖q): it starts well above 0 and falls toward 0 (as
    // T²·cross-entropy it would level off at T² times the teachers' entropy); with alpha 1 it is
    // the whole loss.
    let csv = std::fs::read_to_string(student.with_extension("metrics.csv")).unwrap();
    let soft: Vec<f64> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(2).unwrap().parse().unwrap())
        .collect();
    let last = report.last.as_ref().unwrap();
    assert_eq!(last.epoch, 8);
    assert_eq!(last.soft_loss, Some(last.loss));
    assert_eq!(last.hard_loss, None);
    assert_eq!(soft.len(), 8);
    assert!(
        soft[7] < 0.5 * soft[0] && soft[7] > 0.0,
        "soft loss per epoch: {soft:?}"
    );
    let test = Selection {
        data: MNIST.into(),
        split: Split::Test,
        limit: Some(2000),
        classes: ClassFilter::default(),
    }
    .load()
    .unwrap();
    let tp = argmax_rows(
        onnx::load(&t)
            .unwrap()
            .mlp
            .forward(test.features.view())
            .unwrap()
            .view(),
    );
    let sp = argmax_rows(
        onnx::load(&student)
            .unwrap()
            .mlp
            .forward(test.features.view())
            .unwrap()
            .view(),
    );
    let agree = tp.iter().zip(&sp).filter(|(a, b)| a == b).count() as f64 / tp.len() as f64;
    assert!(
        agree > 0.93,
        "student agrees with its teacher on {:.1}% of test rows",
        100.0 * agree
    );
}

#[test]
fn a_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let common = [
        "--data",
        MNIST,
        "--limit",
        "1200",
        "--hidden",
        "32",
        "--epochs",
        "3",
        "--batch",
        "100",
        "--input-dropout",
        "0.1",
        "--hidden-dropout",
        "0.3",
        "--jitter",
        "1",
        "--max-norm",
        "2",
        "--optimizer",
        "adam",
        "--test-split",
        "none",
    ];
    let whole = [&common[..], &["--out", "a.onnx"]].concat();
    assert_eq!(train_bin(dir.path(), &whole).0, 0);
    // 1200 rows, 120 validation, 11 batches per epoch: stop in the middle of the second epoch.
    let part = [&common[..], &["--out", "b.onnx", "--max-steps", "15"]].concat();
    let (code, stdout, _) = train_bin(dir.path(), &part);
    assert_eq!(code, 130, "{stdout}");
    assert!(stdout.contains("--resume"));
    assert!(
        !dir.path().join("b.onnx").exists(),
        "an interrupted run must not leave a model"
    );
    let rest = [&common[..], &["--out", "b.onnx", "--resume"]].concat();
    let (code, _, stderr) = train_bin(dir.path(), &rest);
    assert_eq!(code, 0, "{stderr}");
    let a = onnx::load(&dir.path().join("a.onnx")).unwrap().mlp;
    let b = onnx::load(&dir.path().join("b.onnx")).unwrap().mlp;
    assert_eq!(
        a.layers, b.layers,
        "resumed weights differ from the uninterrupted run"
    );
    let ma = std::fs::read_to_string(dir.path().join("a.metrics.csv")).unwrap();
    let mb = std::fs::read_to_string(dir.path().join("b.metrics.csv")).unwrap();
    let losses = |s: &str| {
        s.lines()
            .map(|l| l.split(',').take(6).collect::<Vec<_>>().join(","))
            .collect::<Vec<_>>()
    };
    assert_eq!(losses(&ma), losses(&mb));
    // Another setting refuses the checkpoint.
    let other = [&common[..], &["--out", "b.onnx", "--resume", "--seed", "9"]].concat();
    let (code, _, stderr) = train_bin(dir.path(), &other);
    assert_eq!(code, 2);
    assert!(stderr.contains("other settings"), "{stderr}");
}

/// `--patience N` stops once N epochs pass without fewer validation errors and saves the epoch
/// with the fewest as the model; an interrupted and resumed run stops at the same epoch with
/// the same weights; bad values exit 2.
#[test]
fn early_stopping_saves_the_best_validation_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let common = [
        "--data",
        MNIST,
        "--limit",
        "1200",
        "--hidden",
        "32",
        "--epochs",
        "60",
        "--batch",
        "100",
        "--lr",
        "0.2",
        "--patience",
        "3",
        "--test-split",
        "none",
    ];
    let whole = [&common[..], &["--out", "a.onnx"]].concat();
    let (code, stdout, stderr) = train_bin(dir.path(), &whole);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("stopped early"), "{stdout}");
    let csv = std::fs::read_to_string(dir.path().join("a.metrics.csv")).unwrap();
    let val: Vec<f64> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(6).unwrap().parse().unwrap())
        .collect();
    assert!(val.len() < 60, "never stopped: {val:?}");
    let best = (0..val.len()).fold(0, |b, e| if val[e] < val[b] { e } else { b });
    assert_eq!(val.len() - 1 - best, 3, "{val:?}");
    let model = onnx::load(&dir.path().join("a.onnx")).unwrap().mlp;
    let best_file = onnx::load(&dir.path().join("a.best.onnx")).unwrap().mlp;
    assert_eq!(model.layers, best_file.layers);
    // The saved model makes the best epoch's validation errors (the first 120 rows held out).
    let data = Selection {
        data: MNIST.into(),
        split: Split::Train,
        limit: Some(1200),
        classes: ClassFilter::default(),
    }
    .load()
    .unwrap();
    let (_, held_out) = data.split_validation(120).unwrap();
    let logits = model.forward(held_out.features.view()).unwrap();
    let errors = argmax_rows(logits.view())
        .iter()
        .zip(held_out.labels.as_ref().unwrap())
        .filter(|&(&p, &y)| p != y as usize)
        .count();
    assert_eq!(errors, (val[best] * 120.0).round() as usize);

    // Interrupted in the third epoch and resumed: the same stop, the same weights.
    let part = [&common[..], &["--out", "b.onnx", "--max-steps", "25"]].concat();
    assert_eq!(train_bin(dir.path(), &part).0, 130);
    let rest = [&common[..], &["--out", "b.onnx", "--resume"]].concat();
    let (code, _, stderr) = train_bin(dir.path(), &rest);
    assert_eq!(code, 0, "{stderr}");
    let resumed = onnx::load(&dir.path().join("b.onnx")).unwrap().mlp;
    assert_eq!(resumed.layers, model.layers);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("b.metrics.csv"))
            .unwrap()
            .lines()
            .count(),
        csv.lines().count()
    );

    for bad in [
        &["--patience", "0"][..],
        &["--patience", "2", "--validation", "0"],
    ] {
        let args = [
            &[
                "--data", MNIST, "--limit", "300", "--epochs", "1", "--out", "c.onnx",
            ][..],
            bad,
        ]
        .concat();
        let (code, _, stderr) = train_bin(dir.path(), &args);
        assert_eq!(code, 2, "{bad:?}: {stderr}");
        assert!(stderr.contains("--patience"), "{stderr}");
        assert!(!dir.path().join("c.onnx").exists());
    }
}

/// A single Parquet file has no test split: its every split is the rows trained on, so no test
/// errors are reported from it, and the run says why.
#[test]
fn a_single_data_file_reports_no_test_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = Selection {
        data: MNIST.into(),
        split: Split::Train,
        limit: Some(600),
        classes: ClassFilter::default(),
    }
    .load()
    .unwrap();
    let file = dir.path().join("features.parquet");
    distill_data::parquet::write_dataset(&file, &data).unwrap();
    let (code, stdout, stderr) = train_bin(
        dir.path(),
        &[
            "--data",
            file.to_str().unwrap(),
            "--hidden",
            "16",
            "--epochs",
            "1",
            "--out",
            "m.onnx",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.contains("test errors:"), "{stdout}");
    let all = format!("{stdout}{stderr}");
    assert!(
        all.contains("no test errors") && all.contains("single file"),
        "{all}"
    );
    // A folder with its own test split still reports them.
    let (code, stdout, _) = train_bin(
        dir.path(),
        &[
            "--data", MNIST, "--limit", "600", "--hidden", "16", "--epochs", "1", "--out", "n.onnx",
        ],
    );
    assert_eq!(code, 0);
    assert!(stdout.contains("test errors:"), "{stdout}");
}

#[test]
fn bias_adjustment_moves_the_omitted_class_errors() {
    let dir = tempfile::tempdir().unwrap();
    let t = teacher(dir.path());
    let store = dir.path().join("soft.parquet");
    store_from(&t, 3000, &store);
    let student = dir.path().join("omit3.onnx");
    let c = config(&[
        "--limit",
        "3000",
        "--hidden",
        "64",
        "--epochs",
        "8",
        "--lr",
        "0.05",
        "--temperature",
        "8",
        "--soft-targets",
        store.to_str().unwrap(),
        "--exclude-classes",
        "3",
        "--bias-adjust",
        "auto",
        "--out",
        student.to_str().unwrap(),
    ]);
    let report = distill_train::run(&c, &distill_progress::Progress::hidden()).unwrap();
    let shift = report.bias[0];
    assert_eq!(shift.class, 3);
    assert!(
        shift.delta > 0.0,
        "class 3 was never seen, its bias should rise: {shift:?}"
    );
    let test = report.test_errors.unwrap();
    let before = Selection {
        data: MNIST.into(),
        split: Split::Test,
        limit: None,
        classes: ClassFilter::default(),
    }
    .load()
    .unwrap();
    let labels = before.labels.as_ref().unwrap();
    let threes = labels.iter().filter(|&&l| l == 3).count();
    assert!(
        test.per_class[3] < threes / 2,
        "{} of {threes} threes still wrong after adjustment",
        test.per_class[3]
    );
    assert!(test.errors < test.errors_before_bias, "{test:?}");
    // The adjustment is in the saved ONNX: its errors on threes match the report.
    let m = onnx::load(&student).unwrap();
    let pred = argmax_rows(m.mlp.forward(before.features.view()).unwrap().view());
    let wrong3 = pred
        .iter()
        .zip(labels)
        .filter(|(p, y)| **y == 3 && **p != 3)
        .count();
    assert_eq!(wrong3, test.per_class[3]);
    assert!(m.metadata["distill.bias_adjust"].contains("\"class\":3"));
}

#[test]
fn bad_inputs_fail_with_exit_code_2_and_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t = teacher(d);
    let small = d.join("small.parquet");
    store_from(&t, 500, &small);
    let before = files_in(d);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--limit", "1000", "--soft-targets", "small.parquet"],
            "no row for example",
        ),
        (
            vec!["--limit", "600", "--exclude-classes", "12"],
            "class 12 does not exist",
        ),
        (
            vec!["--limit", "600", "--out", "missing/dir/m.onnx"],
            "does not exist",
        ),
        (
            vec!["--limit", "600", "--out", "teacher.onnx/m.onnx"],
            "is a file, not a folder",
        ),
        (
            vec!["--limit", "600", "--soft-targets", "nope.parquet"],
            "nope.parquet",
        ),
        (vec!["--limit", "600", "--alpha", "0.5"], "--soft-targets"),
        (
            vec!["--limit", "600", "--bias-adjust", "3:1"],
            "CLASS=DELTA",
        ),
        (vec!["--limit", "600", "--hidden", "a,b"], "--hidden"),
        (vec!["--limit", "600", "--bogus"], "--bogus"),
    ];
    for (args, expect) in cases {
        let mut all = vec!["--data", MNIST, "--epochs", "1"];
        all.extend(args.iter());
        if !args.contains(&"--out") {
            all.extend(["--out", "m.onnx"]);
        }
        let (code, _, stderr) = train_bin(d, &all);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(
            stderr.contains(expect),
            "{args:?}: expected '{expect}' in: {stderr}"
        );
        assert_eq!(files_in(d), before, "{args:?} left files behind");
    }
}

#[test]
fn a_store_with_nan_is_refused() {
    use arrow_array::{
        ArrayRef, FixedSizeListArray, Float32Array, Int32Array, RecordBatch, UInt64Array,
    };
    use arrow_schema::{DataType, Field, Schema};
    use parquet::file::metadata::KeyValue;
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nan.parquet");
    let meta = StoreMeta::new(
        10,
        vec![TeacherMeta::logits("t", "", "")],
        MNIST,
        "train",
        "",
    );
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let schema = Arc::new(Schema::new(vec![
        Field::new("index", DataType::UInt64, false),
        Field::new("label", DataType::Int32, true),
        Field::new("t", DataType::FixedSizeList(item.clone(), 10), false),
    ]));
    let mut values = vec![0.5f32; 600 * 10];
    values[77] = f32::NAN;
    let cols: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from((0..600u64).collect::<Vec<_>>())),
        Arc::new(Int32Array::new_null(600)),
        Arc::new(
            FixedSizeListArray::try_new(item, 10, Arc::new(Float32Array::from(values)), None)
                .unwrap(),
        ),
    ];
    let props = parquet::file::properties::WriterProperties::builder()
        .set_key_value_metadata(Some(vec![KeyValue::new(
            distill_store::META_KEY.into(),
            serde_json::to_string(&meta).unwrap(),
        )]))
        .build();
    let file = std::fs::File::create(&path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(props)).unwrap();
    w.write(&RecordBatch::try_new(schema, cols).unwrap())
        .unwrap();
    w.close().unwrap();
    let (code, _, stderr) = train_bin(
        dir.path(),
        &[
            "--data",
            MNIST,
            "--limit",
            "600",
            "--soft-targets",
            "nan.parquet",
            "--epochs",
            "1",
            "--out",
            "m.onnx",
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("non-finite") && stderr.contains("row 7"),
        "{stderr}"
    );
    assert!(!dir.path().join("m.onnx").exists());
}
