//! A float student and its static int8 variant (written by distill-quantize) evaluated together:
//! the variant's agreement with the float model and the largest |Δlogit| in `metrics.json`, the
//! table and the predictions file, checked against both models run directly in ONNX Runtime;
//! the variant evaluated alone still works and says its float model is missing.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use clap::Parser;
use distill_core::math::argmax_rows;
use distill_data::{ClassFilter, Selection, Split};
use distill_runtime::{ModelSpec, OnnxModel, Provider};
use serde_json::Value;

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
const ROWS: usize = 500;

fn mnist() -> String {
    format!("{REPO}/data/mnist")
}

/// Runs `distill-eval --data <repo>/data/mnist ARGS` in `dir`: exit code, stdout, stderr.
fn eval(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_distill-eval"))
        .current_dir(dir)
        .arg("--data")
        .arg(mnist())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A 784-48-10 student trained for 3 epochs on 1,500 rows, and its static int8 variant.
fn student_and_int8(dir: &Path) {
    let model = dir.join("student.onnx");
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
        "--out",
        model.to_str().unwrap(),
    ];
    let config = distill_train::cli::Args::parse_from(args)
        .into_config()
        .unwrap();
    distill_train::run(&config, &distill_progress::Progress::hidden()).unwrap();
    let int8 = dir.join("student.int8.onnx");
    let args = [
        "distill-quantize",
        "--data",
        &data,
        "--model",
        model.to_str().unwrap(),
        "--method",
        "static",
        "--calibration-rows",
        "512",
        "--out",
        int8.to_str().unwrap(),
    ];
    let config = distill_quantize::cli::Args::parse_from(args)
        .into_config()
        .unwrap();
    distill_quantize::run(&config, &distill_progress::Progress::hidden()).unwrap();
}

fn entry<'a>(metrics: &'a Value, name: &str) -> &'a Value {
    metrics["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no entry {name} in {metrics}"))
}

/// The boolean and float columns of a predictions file, by name.
fn comparison_columns(
    path: &Path,
) -> (
    std::collections::HashMap<String, Vec<bool>>,
    std::collections::HashMap<String, Vec<f32>>,
) {
    use arrow_array::{BooleanArray, Float32Array};
    let file = std::fs::File::open(path).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let (mut bools, mut floats) = (
        std::collections::HashMap::<String, Vec<bool>>::new(),
        std::collections::HashMap::<String, Vec<f32>>::new(),
    );
    for batch in reader {
        let batch = batch.unwrap();
        for (field, col) in batch.schema().fields().iter().zip(batch.columns()) {
            let any = col.as_any();
            if let Some(b) = any.downcast_ref::<BooleanArray>() {
                bools
                    .entry(field.name().clone())
                    .or_default()
                    .extend(b.iter().map(Option::unwrap));
            } else if let Some(f) = any.downcast_ref::<Float32Array>() {
                floats
                    .entry(field.name().clone())
                    .or_default()
                    .extend(f.values());
            }
        }
    }
    (bools, floats)
}

#[test]
fn a_static_int8_variant_reports_its_agreement_with_the_float_model() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    student_and_int8(d);
    // The variant comes first and has another name: the link is the float file's SHA-256.
    let (code, stdout, stderr) = eval(
        d,
        &[
            "--model",
            "student.int8.onnx",
            "--model",
            "student.onnx",
            "--name",
            "float",
            "--limit",
            "500",
            "--latency-runs",
            "0",
            "--out",
            "metrics.json",
            "--predictions",
            "predictions.parquet",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("metrics.json")).unwrap()).unwrap();
    let v = &entry(&m, "student.int8")["variant_of"];
    assert_eq!(v["method"], "static-int8");
    assert_eq!(
        v["source_sha256"],
        distill_core::sha256_file(&d.join("student.onnx")).unwrap()
    );
    assert_eq!(v["source"], "float");
    assert_eq!(v["max_abs_diff_of"], "logits");
    assert_eq!(entry(&m, "float")["variant_of"], Value::Null);

    // The reference: both files run directly in ONNX Runtime on the same rows.
    let rows = Selection {
        data: mnist(),
        split: Split::Test,
        limit: Some(ROWS),
        classes: ClassFilter::default(),
    }
    .load()
    .unwrap();
    let run = |p: &str| {
        OnnxModel::load(&ModelSpec::new(d.join(p)), Provider::Cpu, 1)
            .unwrap()
            .run(rows.features.view())
            .unwrap()
    };
    let (q, f) = (run("student.int8.onnx"), run("student.onnx"));
    let (aq, af) = (argmax_rows(q.view()), argmax_rows(f.view()));
    let same: Vec<bool> = aq.iter().zip(&af).map(|(a, b)| a == b).collect();
    let agreement = same.iter().filter(|&&s| s).count() as f64 / ROWS as f64;
    let diff = q
        .iter()
        .zip(f.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max) as f64;
    assert!(agreement >= 0.99, "agreement {agreement}");
    assert!(
        (v["agreement"].as_f64().unwrap() - agreement).abs() < 1e-12,
        "{v}"
    );
    let reported = v["max_abs_diff"].as_f64().unwrap();
    assert!(reported.is_finite() && reported > 0.0, "{v}");
    assert!(
        (reported - diff).abs() <= 1e-5 * diff.max(1.0),
        "{reported} vs {diff}"
    );

    let row = stdout
        .lines()
        .find(|l| l.starts_with("student.int8 "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        stdout.lines().next().unwrap().contains("float agree %"),
        "{stdout}"
    );
    assert!(row.contains(&format!("{:.2}", 100.0 * agreement)), "{row}");
    assert!(row.contains(&format!("{reported:.4} logit")), "{row}");
    assert!(
        stdout.contains("student.int8 is the static-int8 variant of float"),
        "{stdout}"
    );

    let (bools, floats) = comparison_columns(&d.join("predictions.parquet"));
    assert_eq!(bools["student.int8.same_class_as_float"], same);
    let per_row = &floats["student.int8.max_abs_diff_from_float"];
    assert_eq!(per_row.len(), ROWS);
    for (r, &got) in per_row.iter().enumerate() {
        let want = (0..q.ncols())
            .map(|c| (q[[r, c]] - f[[r, c]]).abs())
            .fold(0.0f32, f32::max);
        assert!(
            (got - want).abs() <= 1e-5 * want.max(1.0),
            "row {r}: {got} vs {want}"
        );
    }
    assert!(!bools.contains_key("float.same_class_as_float"));

    // Alone, the variant is evaluated as any model, with one note that its float model is missing.
    let (code, stdout, stderr) = eval(
        d,
        &[
            "--model",
            "student.int8.onnx",
            "--limit",
            "50",
            "--latency-runs",
            "0",
            "--out",
            "alone.json",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stderr
            .matches("quantised from a model not evaluated in this run")
            .count(),
        1,
        "{stderr}"
    );
    assert!(!stdout.contains("float agree %"), "{stdout}");
    let alone: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("alone.json")).unwrap()).unwrap();
    let v = &entry(&alone, "student.int8")["variant_of"];
    assert_eq!(v["method"], "static-int8");
    assert_eq!(v["source"], Value::Null);
    assert_eq!(v["agreement"], Value::Null);
}
