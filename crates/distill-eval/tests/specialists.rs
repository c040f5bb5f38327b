//! `distill-eval --specialists`: tiny generalist and specialist MLPs saved as ONNX by the engine, a
//! manifest written by hand, and the numbers in metrics.json checked against the engine's own
//! forward pass combined directly with `distill_specialists::combine`; bad manifests exit 2.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use distill_core::math::{argmax_rows, softmax};
use distill_data::{ClassFilter, Selection, Split};
use distill_nn::{Mlp, MlpConfig};
use distill_specialists::manifest::FileRef;
use distill_specialists::{
    CombineOptions, MANIFEST_VERSION, Manifest, SpecialistEntry, SpecialistLogits, combine,
};
use serde_json::Value;

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
const ROWS: usize = 300;

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

fn eval(dir: &Path, args: &[&str]) -> Outcome {
    let out = Command::new(env!("CARGO_BIN_EXE_distill-eval"))
        .current_dir(dir)
        .arg("--data")
        .arg(format!("{REPO}/data/mnist"))
        .args(["--limit", &ROWS.to_string(), "--latency-runs", "0"])
        .args(args)
        .output()
        .unwrap();
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn mlp(outputs: usize, seed: u64) -> Mlp {
    Mlp::new(
        MlpConfig {
            sizes: vec![784, 24, outputs],
            input_dropout: 0.0,
            hidden_dropout: 0.0,
            max_norm: None,
        },
        seed,
    )
    .unwrap()
}

/// A generalist, three specialists (two overlapping on class 9) and their manifest in `dir`.
struct Setup {
    generalist: Mlp,
    subsets: Vec<Vec<u32>>,
    specialists: Vec<Mlp>,
    manifest: Manifest,
}

fn setup(dir: &Path) -> Setup {
    let generalist = mlp(10, 3);
    distill_nn::onnx::save(&generalist, &dir.join("generalist.onnx"), &[]).unwrap();
    let subsets: Vec<Vec<u32>> = vec![vec![3, 5, 8], vec![4, 9], vec![7, 9]];
    let mut specialists = Vec::new();
    let mut entries = Vec::new();
    for (id, s) in subsets.iter().enumerate() {
        let m = mlp(s.len() + 1, 11 + id as u64);
        let name = format!("specialist-{id}.onnx");
        distill_nn::onnx::save(&m, &dir.join(&name), &[]).unwrap();
        entries.push(SpecialistEntry {
            id,
            path: name.clone(),
            sha256: distill_core::sha256_file(&dir.join(&name)).unwrap(),
            classes: s.clone(),
            subset_share: 0.3,
            sampled_share: 0.5,
            dustbin_correction: 0.0,
            epochs: 1,
            rows_trained: 0,
            validation_errors: 0,
            validation_rows: 1,
            used: true,
            validation_effect: None,
        });
        specialists.push(m);
    }
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        tool_version: distill_core::TOOL_VERSION.into(),
        generalist: FileRef {
            path: "generalist.onnx".into(),
            sha256: distill_core::sha256_file(&dir.join("generalist.onnx")).unwrap(),
        },
        classes: 10,
        subsets: "specialists.yaml".into(),
        store: None,
        specialists: entries,
    };
    manifest.save(&dir.join("manifest.yaml")).unwrap();
    Setup {
        generalist,
        subsets,
        specialists,
        manifest,
    }
}

/// A predictions file read back: index, label, and each list column as one vector per row.
struct Predictions {
    index: Vec<u64>,
    label: Vec<i32>,
    columns: std::collections::HashMap<String, Vec<Vec<i32>>>,
    probs: std::collections::HashMap<String, Vec<Vec<f32>>>,
}

fn read_predictions(path: &Path) -> Predictions {
    use arrow_array::{Array, FixedSizeListArray, Float32Array, Int32Array, UInt64Array};
    let file = std::fs::File::open(path).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut p = Predictions {
        index: Vec::new(),
        label: Vec::new(),
        columns: Default::default(),
        probs: Default::default(),
    };
    for batch in reader {
        let batch = batch.unwrap();
        let schema = batch.schema();
        for (field, col) in schema.fields().iter().zip(batch.columns()) {
            let any = col.as_any();
            match field.name().as_str() {
                "index" => p
                    .index
                    .extend(any.downcast_ref::<UInt64Array>().unwrap().values()),
                "label" => p
                    .label
                    .extend(any.downcast_ref::<Int32Array>().unwrap().values()),
                name => {
                    let list = any.downcast_ref::<FixedSizeListArray>().unwrap();
                    for r in 0..list.len() {
                        let v = list.value(r);
                        if let Some(ints) = v.as_any().downcast_ref::<Int32Array>() {
                            p.columns
                                .entry(name.to_string())
                                .or_default()
                                .push(ints.values().to_vec());
                        } else {
                            let f = v.as_any().downcast_ref::<Float32Array>().unwrap();
                            p.probs
                                .entry(name.to_string())
                                .or_default()
                                .push(f.values().to_vec());
                        }
                    }
                }
            }
        }
    }
    p
}

fn as_usize(v: &Value) -> usize {
    v.as_u64().unwrap() as usize
}

#[test]
fn metrics_match_a_direct_combination() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path());
    let data = Selection {
        data: format!("{REPO}/data/mnist"),
        split: Split::Test,
        limit: Some(ROWS),
        classes: ClassFilter::default(),
    }
    .load()
    .unwrap();
    let labels = data.labels.clone().unwrap();
    let g = s.generalist.forward(data.features.view()).unwrap();
    let outputs: Vec<_> = s
        .specialists
        .iter()
        .map(|m| m.forward(data.features.view()).unwrap())
        .collect();

    for top_n in [1usize, 2] {
        let inputs: Vec<SpecialistLogits> = s
            .subsets
            .iter()
            .zip(&outputs)
            .map(|(classes, l)| SpecialistLogits {
                classes,
                logits: l.view(),
            })
            .collect();
        let direct = combine(
            g.view(),
            &inputs,
            &CombineOptions {
                top_n,
                ..CombineOptions::default()
            },
        )
        .unwrap();
        let generalist_pred = argmax_rows(g.view());
        let combined_pred: Vec<usize> = direct
            .log_probs
            .rows()
            .into_iter()
            .map(|r| (0..r.len()).fold(0, |b, c| if r[c] > r[b] { c } else { b }))
            .collect();
        let errors = |pred: &[usize]| {
            pred.iter()
                .zip(&labels)
                .filter(|&(&p, &y)| p != y as usize)
                .count()
        };
        // Table 4 by hand: active specialists whose subset holds the label.
        let mut table = [[0usize; 3]; 4];
        for (r, &y) in labels.iter().enumerate() {
            let k = direct
                .active(r)
                .iter()
                .filter(|&&m| s.subsets[m as usize].contains(&y))
                .count();
            table[k][0] += 1;
            table[k][1] += usize::from(generalist_pred[r] == y as usize);
            table[k][2] += usize::from(combined_pred[r] == y as usize);
        }

        let mut args = vec![
            "--model",
            "generalist.onnx",
            "--specialists",
            "manifest.yaml",
        ];
        let top = top_n.to_string();
        if top_n != 1 {
            args.extend(["--top-n", &top]);
        }
        args.extend([
            "--out",
            "metrics.json",
            "--predictions",
            "predictions.parquet",
        ]);
        let out = eval(dir.path(), &args);
        assert_eq!(out.code, 0, "{}", out.stderr);
        // Row by row: the generalist's and the combination's most probable classes and their
        // probabilities, against the engine's forward pass and the direct combination.
        let p = read_predictions(&dir.path().join("predictions.parquet"));
        let soft = softmax(g.view(), 1.0);
        for r in 0..ROWS {
            assert_eq!(p.index[r], r as u64);
            assert_eq!(p.label[r], labels[r] as i32);
            let gc = &p.columns["generalist.classes"][r];
            assert_eq!(gc.len(), 5);
            assert_eq!(gc[0] as usize, generalist_pred[r]);
            for (&c, &q) in gc.iter().zip(&p.probs["generalist.probs"][r]) {
                assert!(
                    (q - soft[[r, c as usize]]).abs() < 1e-5,
                    "row {r} class {c}"
                );
            }
            let cc = &p.columns["combined.classes"][r];
            assert_eq!(cc[0] as usize, combined_pred[r], "row {r}");
            for (&c, &q) in cc.iter().zip(&p.probs["combined.probs"][r]) {
                let want = direct.log_probs[[r, c as usize]].exp() as f32;
                assert!((q - want).abs() < 1e-6, "row {r} class {c}: {q} vs {want}");
            }
        }
        let m: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("metrics.json")).unwrap(),
        )
        .unwrap();
        let sp = &m["specialists"];
        assert_eq!(as_usize(&sp["top_n"]), top_n);
        assert_eq!(as_usize(&sp["rows"]), ROWS);
        assert_eq!(as_usize(&sp["specialists"]), 3);
        assert_eq!(sp["generalist"], "generalist");
        let ge = errors(&generalist_pred);
        let ce = errors(&combined_pred);
        assert_eq!(as_usize(&sp["generalist_errors"]), ge);
        assert_eq!(as_usize(&m["entries"][0]["errors"]), ge);
        assert_eq!(as_usize(&sp["combined_errors"]), ce);
        assert_eq!(as_usize(&sp["combined"]["errors"]), ce);
        let reduction = sp["relative_error_reduction"].as_f64().unwrap();
        assert!((reduction - (ge as f64 - ce as f64) / ge as f64).abs() < 1e-12);
        let with_active = (0..ROWS).filter(|&r| !direct.active(r).is_empty()).count();
        assert_eq!(as_usize(&sp["rows_with_active"]), with_active);
        assert!(sp["rows_per_second"].as_f64().unwrap() > 0.0);
        assert_eq!(as_usize(&sp["not_converged"]), 0);
        assert!(sp["max_gradient_norm"].as_f64().unwrap() < 1e-8);
        let rows = sp["by_covering"].as_array().unwrap();
        let top_k = table.iter().rposition(|t| t[0] > 0).unwrap();
        assert_eq!(rows.len(), top_k + 1, "{sp}");
        for (k, row) in rows.iter().enumerate() {
            assert_eq!(as_usize(&row["covering"]), k);
            assert_eq!(as_usize(&row["count"]), table[k][0], "covering {k}");
            assert_eq!(as_usize(&row["generalist_correct"]), table[k][1]);
            assert_eq!(as_usize(&row["combined_correct"]), table[k][2]);
            match row["relative_gain"].as_f64() {
                Some(gain) => assert!(
                    (gain - (table[k][2] as f64 - table[k][1] as f64) / table[k][1] as f64).abs()
                        < 1e-12
                ),
                None => assert_eq!(table[k][1], 0),
            }
        }
        assert_eq!(
            rows.iter().map(|r| as_usize(&r["count"])).sum::<usize>(),
            ROWS
        );
        if top_n == 2 {
            assert!(
                top_k >= 1,
                "top-2 activates specialists covering the label: {sp}"
            );
        }
        assert!(
            out.stdout.contains("specialists (manifest.yaml, top-"),
            "{}",
            out.stdout
        );
        assert!(out.stdout.contains("covering"), "{}", out.stdout);
    }

    // A specialist the manifest marks unused (it did not improve the validation combination)
    // is not run.
    let mut unused = s.manifest.clone();
    unused.specialists[1].used = false;
    unused.save(&dir.path().join("unused.yaml")).unwrap();
    let out = eval(
        dir.path(),
        &["--specialists", "unused.yaml", "--out", "unused.json"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("unused.json")).unwrap())
            .unwrap();
    assert_eq!(as_usize(&m["specialists"]["specialists"]), 2);

    // Without --model, the manifest's generalist is evaluated.
    let out = eval(dir.path(), &["--specialists", "manifest.yaml"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("generalist"), "{}", out.stdout);
    // Without --specialists the key is null.
    let out = eval(
        dir.path(),
        &["--model", "generalist.onnx", "--out", "plain.json"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("plain.json")).unwrap())
            .unwrap();
    assert_eq!(m["specialists"], Value::Null);
}

#[test]
fn bad_manifests_exit_2_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path());
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let write = |name: &str, m: &Manifest| m.save(&dir.path().join(name)).unwrap();

    let mut hash = s.manifest.clone();
    hash.specialists[1].sha256 = "0".repeat(64);
    write("hash.yaml", &hash);

    let mut class12 = s.manifest.clone();
    class12.specialists[0].classes = vec![3, 12];
    write("class12.yaml", &class12);

    let mut wide = s.manifest.clone();
    distill_nn::onnx::save(&mlp(4, 5), &dir.path().join("wide.onnx"), &[]).unwrap();
    wide.specialists[1].path = "wide.onnx".into();
    wide.specialists[1].sha256 = distill_core::sha256_file(&dir.path().join("wide.onnx")).unwrap();
    write("wide.yaml", &wide);

    let mut classes12 = s.manifest.clone();
    classes12.classes = 12;
    write("classes12.yaml", &classes12);

    distill_nn::onnx::save(&mlp(10, 99), &dir.path().join("other.onnx"), &[]).unwrap();

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--model", "generalist.onnx", "--specialists", "hash.yaml"],
            "specialist-1.onnx has SHA-256",
        ),
        (
            vec![
                "--model",
                "generalist.onnx",
                "--specialists",
                "class12.yaml",
            ],
            "names class 12, but the generalist has 10 classes",
        ),
        (
            vec!["--model", "generalist.onnx", "--specialists", "wide.yaml"],
            "has 4 outputs, but its subset has 2 classes",
        ),
        (
            vec![
                "--model",
                "generalist.onnx",
                "--specialists",
                "classes12.yaml",
            ],
            "the generalist has 12 classes, but the data",
        ),
        (
            vec!["--model", "other.onnx", "--specialists", "manifest.yaml"],
            "no --model has its SHA-256",
        ),
        (
            vec![
                "--model",
                "generalist.onnx",
                "--specialists",
                "missing.yaml",
            ],
            "missing.yaml",
        ),
        (
            vec!["--model", "generalist.onnx", "--top-n", "2"],
            "--top-n only applies with --manifest",
        ),
        (
            vec![
                "--model",
                "generalist.onnx",
                "--specialists",
                "manifest.yaml",
                "--top-n",
                "0",
            ],
            "--top-n 0 is out of range",
        ),
    ];
    for (args, needle) in cases {
        let mut all = args.clone();
        all.extend(["--out", "out/metrics.json"]);
        let out = eval(dir.path(), &all);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(needle), "{args:?}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
        assert_eq!(
            std::fs::read_dir(&out_dir).unwrap().count(),
            0,
            "{args:?} left a file"
        );
    }
}
