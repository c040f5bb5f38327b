//! `make bench` figures for the top-k store: its size against the full store, how far the soft
//! targets it gives back are from the full store's, and what that does to a distilled student.
//!
//! 1. Synthetic teachers with 1,000 and 10,000 classes (the generator is described at
//!    [`synthetic_logits`]): both layouts written with the store writer and read back with the store
//!    reader; file sizes; KL(full ‖ top-k) of the ensemble's tempered target (the arithmetic mean of
//!    the teachers' softmax at T, what `distill-train` trains on) at T = 1 and T = 20, mean and 99th
//!    percentile over the rows. Then the choice of logit for the missing classes, measured: the
//!    reader's equal share of the missing mass, the K-th kept logit, and an oracle that gives the
//!    missing classes the constant logit matching their true tempered mass at that T (it needs the
//!    full row, so no store can use it: it bounds what any single stored number could do).
//! 2. MNIST: the repository's fixture CNN (logits) and scikit-learn logistic regression
//!    (probabilities) as the ensemble, `distill-teach` over 20,000 training rows into a full, a top-3
//!    and a top-5 store, the same sizes and KL figures, then a student (784-300-300-10, Adam, T = 20)
//!    distilled from each with the same seeds, and its errors on the 10,000 test images.
//!
//! Knobs: `TOPK_BENCH_ROWS_1K` / `TOPK_BENCH_ROWS_10K` (synthetic rows, default 4000 / 1000),
//! `TOPK_BENCH_MNIST_ROWS` (training rows scored and distilled on, default 20000),
//! `TOPK_BENCH_EPOCHS` (default 6), `TOPK_BENCH_SEEDS` (student seeds, default 2),
//! `TOPK_BENCH_SKIP_SYNTHETIC=1`, `TOPK_BENCH_SKIP_MNIST=1`.

// A measurement harness, like the tests: a failed step stops it with its message.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;
use distill_core::rng::Rng;
use distill_store::topk::{self, TailFill};
use distill_store::{SoftTargets, StoreMeta, StoreWriter, TeacherMeta, read_store};
use ndarray::Array2;

const TEMPERATURES: [f64; 2] = [1.0, 20.0];
const TEACHERS: usize = 2;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// How confident the synthetic teachers are: the true class's lead `A ~ N(lead, 3²)` and its 9
/// siblings' `B ~ N(siblings, 1.5²)` over a background of spread 1.5 (see [`synthetic_logits`]).
#[derive(Clone, Copy)]
struct Regime {
    name: &'static str,
    lead: f32,
    siblings: f32,
}

/// `confident`: a teacher scoring its own training rows (the usual transfer set), nearly sure of
/// most of them; `uncertain`: the same teacher on rows it finds hard (a lead of 10 over a
/// background of 10,000 classes leaves several percent of the mass to the background).
const REGIMES: [Regime; 2] = [
    Regime {
        name: "confident",
        lead: 18.0,
        siblings: 8.0,
    },
    Regime {
        name: "uncertain",
        lead: 10.0,
        siblings: 6.0,
    },
];

/// Synthetic logits of `TEACHERS` teachers over `rows` rows and `classes` classes, shaped like a
/// trained classifier's: classes fall into superclasses of 10 (similar classes); each row has a
/// true class y. A teacher's logit for class c is
/// `b_c + 1.5·g_c + 0.5·e_tc + [c = y]·A + [c a sibling of y]·B`, with a class bias
/// `b_c ~ N(0, 0.5²)` fixed for the data set, a row background `g_c ~ N(0, 1)` shared by the
/// teachers, teacher noise `e_tc ~ N(0, 1)`, and per row the true class's lead
/// `A ~ N(regime.lead, 3²)` and the 9 siblings' `B ~ N(regime.siblings, 1.5²)`.
fn synthetic_logits(rows: usize, classes: usize, regime: Regime, seed: u64) -> Vec<Array2<f32>> {
    let mut rng = Rng::new(seed);
    let bias: Vec<f32> = (0..classes).map(|_| 0.5 * rng.normal()).collect();
    let mut out = vec![Array2::<f32>::zeros((rows, classes)); TEACHERS];
    let mut background = vec![0.0f32; classes];
    for r in 0..rows {
        let y = rng.below(classes);
        let a = regime.lead + 3.0 * rng.normal();
        let b = regime.siblings + 1.5 * rng.normal();
        for (g, &bc) in background.iter_mut().zip(&bias) {
            *g = bc + 1.5 * rng.normal();
        }
        let group = y / 10;
        for t in out.iter_mut() {
            for c in 0..classes {
                let mut z = background[c] + 0.5 * rng.normal();
                if c == y {
                    z += a;
                } else if c / 10 == group {
                    z += b;
                }
                t[[r, c]] = z;
            }
        }
    }
    out
}

/// The mean over rows and teachers of the probability (at T = 1) outside the top k.
fn rest_mass(full: &[Array2<f32>], k: usize) -> f64 {
    let mut sum = 0.0;
    let mut n = 0usize;
    for a in full {
        for row in a.rows() {
            let z = row.to_slice().unwrap();
            let top = topk::select(z, k);
            let m = z
                .iter()
                .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
            let lse = m + z
                .iter()
                .map(|&v| (f64::from(v) - m).exp())
                .sum::<f64>()
                .ln();
            sum += (f64::from(top.log_rest) - lse).exp();
            n += 1;
        }
    }
    sum / n as f64
}

/// The ensemble's target at `t` for one row: the mean of the teachers' softmax, in f64.
fn ensemble_row(rows: &[&[f32]], t: f64, out: &mut [f64]) {
    out.fill(0.0);
    let w = 1.0 / rows.len() as f64;
    for z in rows {
        let m = z
            .iter()
            .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
        let s: f64 = z.iter().map(|&v| ((f64::from(v) - m) / t).exp()).sum();
        for (o, &v) in out.iter_mut().zip(z.iter()) {
            *o += w * ((f64::from(v) - m) / t).exp() / s;
        }
    }
}

fn kl(p: &[f64], q: &[f64]) -> f64 {
    p.iter()
        .zip(q)
        .filter(|(p, _)| **p > 0.0)
        .map(|(&p, &q)| p * (p / q.max(f64::MIN_POSITIVE)).ln())
        .sum::<f64>()
        .max(0.0)
}

/// Mean and 99th percentile of per-row KL(full ‖ approx) of the ensemble target at `t`.
fn kl_stats(full: &[Array2<f32>], approx: &[Array2<f32>], t: f64) -> (f64, f64) {
    let (rows, classes) = full[0].dim();
    let mut p = vec![0.0; classes];
    let mut q = vec![0.0; classes];
    let mut kls: Vec<f64> = (0..rows)
        .map(|r| {
            let f: Vec<&[f32]> = full.iter().map(|a| a.row(r).to_slice().unwrap()).collect();
            let a: Vec<&[f32]> = approx
                .iter()
                .map(|a| a.row(r).to_slice().unwrap())
                .collect();
            ensemble_row(&f, t, &mut p);
            ensemble_row(&a, t, &mut q);
            kl(&p, &q)
        })
        .collect();
    let mean = kls.iter().sum::<f64>() / rows as f64;
    kls.sort_by(f64::total_cmp);
    let p99 = kls[((rows as f64 * 0.99).ceil() as usize).clamp(1, rows) - 1];
    (mean, p99)
}

/// Each teacher's logits with only the top k kept and the missing classes filled by `fill`
/// (`None`: the oracle constant for temperature `t`).
fn expanded(full: &[Array2<f32>], k: usize, fill: Option<TailFill>, t: f64) -> Vec<Array2<f32>> {
    full.iter()
        .map(|a| {
            let (rows, classes) = a.dim();
            let mut out = Array2::<f32>::zeros((rows, classes));
            for r in 0..rows {
                let z = a.row(r).to_slice().unwrap().to_vec();
                let top = topk::select(&z, k);
                let fill = fill.unwrap_or_else(|| {
                    let mut kept = vec![false; classes];
                    for &c in &top.ids {
                        kept[c as usize] = true;
                    }
                    let missing: Vec<f64> = (0..classes)
                        .filter(|&c| !kept[c])
                        .map(|c| f64::from(z[c]))
                        .collect();
                    let m = missing.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
                    let mean_exp = missing.iter().map(|v| ((v - m) / t).exp()).sum::<f64>()
                        / missing.len() as f64;
                    TailFill::Constant((m + t * mean_exp.ln()) as f32)
                });
                topk::expand_into(
                    fill,
                    &top.logits,
                    &top.ids,
                    top.log_rest,
                    out.row_mut(r).into_slice().unwrap(),
                );
            }
            out
        })
        .collect()
}

fn file_size(path: &Path) -> u64 {
    if path.is_dir() {
        std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    } else {
        std::fs::metadata(path).unwrap().len()
    }
}

fn write_store(path: &Path, meta: &StoreMeta, logits: &[Array2<f32>]) {
    let rows = logits[0].nrows();
    let index: Vec<u64> = (0..rows as u64).collect();
    let mut w = StoreWriter::create(path, meta).unwrap();
    // In row groups' worth of rows, as distill-teach writes batches.
    for start in (0..rows).step_by(512) {
        let end = (start + 512).min(rows);
        let views: Vec<_> = logits
            .iter()
            .map(|a| a.slice(ndarray::s![start..end, ..]))
            .collect();
        w.write(&index[start..end], None, &views).unwrap();
    }
    w.finish().unwrap();
}

struct Line {
    data: String,
    rest: f64,
    classes: usize,
    k: Option<usize>,
    bytes: u64,
    full_bytes: u64,
    kl: Vec<(f64, f64)>,
}

fn print_table(lines: &[Line]) {
    println!(
        "{:<19} {:>7} {:>5} {:>12} {:>8} {:>9} {:>12} {:>12} {:>12} {:>12}",
        "data",
        "classes",
        "K",
        "store bytes",
        "of full",
        "rest mass",
        "KL T=1 mean",
        "KL T=1 p99",
        "KL T=20 mean",
        "KL T=20 p99"
    );
    for l in lines {
        let k = l.k.map_or("full".to_string(), |k| k.to_string());
        let mut s = format!(
            "{:<19} {:>7} {:>5} {:>12} {:>7.2}% {:>9.2e}",
            l.data,
            l.classes,
            k,
            l.bytes,
            100.0 * l.bytes as f64 / l.full_bytes as f64,
            l.rest
        );
        for (mean, p99) in &l.kl {
            s += &format!(" {mean:>12.3e} {p99:>12.3e}");
        }
        println!("{s}");
    }
}

fn synthetic(dir: &Path, lines: &mut Vec<Line>, fills: &mut Vec<String>) {
    let cases = [
        (
            1000usize,
            env_usize("TOPK_BENCH_ROWS_1K", 4000),
            vec![5, 10, 20, 50],
        ),
        (
            10_000,
            env_usize("TOPK_BENCH_ROWS_10K", 1000),
            vec![10, 50, 100, 200],
        ),
    ];
    for regime in REGIMES {
        for (classes, rows, ks) in cases.clone() {
            let started = Instant::now();
            let data = format!("synthetic {}", regime.name);
            let logits = synthetic_logits(rows, classes, regime, 7);
            let teachers: Vec<TeacherMeta> = (0..TEACHERS)
                .map(|t| TeacherMeta::logits(format!("t{t}"), format!("t{t}.onnx"), "00"))
                .collect();
            let meta = StoreMeta::new(
                classes,
                teachers,
                "synthetic",
                "train",
                format!("rows={rows}"),
            );
            let full_path = dir.join(format!("full-{classes}.parquet"));
            write_store(&full_path, &meta, &logits);
            let full_bytes = file_size(&full_path);
            let full = read_store(&full_path).unwrap();
            assert_eq!(
                full.logits, logits,
                "the full store gives back what was written"
            );
            lines.push(Line {
                data: data.clone(),
                rest: 0.0,
                classes,
                k: None,
                bytes: full_bytes,
                full_bytes,
                kl: vec![(0.0, 0.0); TEMPERATURES.len()],
            });
            for &k in &ks {
                let path = dir.join(format!("top{k}-{classes}.parquet"));
                write_store(&path, &meta.clone().with_top_k(k), &logits);
                let back = read_store(&path).unwrap();
                // The reader's expansion is the equal-share fill, bit for bit.
                let equal = expanded(&logits, k, Some(TailFill::EqualMass), 1.0);
                assert_eq!(back.logits, equal, "reader expansion differs at K = {k}");
                let kl = TEMPERATURES
                    .iter()
                    .map(|&t| kl_stats(&logits, &back.logits, t))
                    .collect();
                lines.push(Line {
                    data: data.clone(),
                    rest: rest_mass(&logits, k),
                    classes,
                    k: Some(k),
                    bytes: file_size(&path),
                    full_bytes,
                    kl,
                });
                for &t in &TEMPERATURES {
                    let mut row = format!("{:<9} {classes:>7} {k:>4} {t:>4}", regime.name);
                    for fill in [Some(TailFill::EqualMass), Some(TailFill::KthLogit), None] {
                        let approx = if fill == Some(TailFill::EqualMass) {
                            back.logits.clone()
                        } else {
                            expanded(&logits, k, fill, t)
                        };
                        let (mean, p99) = kl_stats(&logits, &approx, t);
                        row += &format!(" {mean:>10.3e} {p99:>10.3e}");
                    }
                    fills.push(row);
                }
            }
            eprintln!(
                "{data} {classes} classes x {rows} rows: {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
}

fn teach(out: &Path, rows: usize, top_k: Option<usize>) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let fixtures = repo.join("tests/fixtures/teachers");
    let mut args: Vec<String> = [
        "distill-teach",
        "--data",
        &repo.join("data/mnist").display().to_string(),
        "--limit",
        &rows.to_string(),
        "--model",
        &fixtures.join("torchscript_cnn.onnx").display().to_string(),
        "--mean",
        "0.1307",
        "--std",
        "0.3081",
        "--model",
        &fixtures.join("skl_logreg.onnx").display().to_string(),
        "--out",
        &out.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(k) = top_k {
        args.extend(["--top-k".to_string(), k.to_string()]);
    }
    let config = distill_teach::cli::Args::parse_from_args(args)
        .unwrap()
        .into_config()
        .unwrap();
    distill_teach::run(&config, &distill_progress::Progress::hidden()).unwrap();
    out.to_path_buf()
}

fn student(store: &Path, rows: usize, epochs: usize, seed: usize, out: &Path) -> (usize, usize) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let args: Vec<String> = [
        "distill-train",
        "--data",
        &repo.join("data/mnist").display().to_string(),
        "--limit",
        &rows.to_string(),
        "--soft-targets",
        &store.display().to_string(),
        "--temperature",
        "20",
        "--hidden",
        "300,300",
        "--optimizer",
        "adam",
        "--epochs",
        &epochs.to_string(),
        "--validation",
        "0",
        "--seed",
        &seed.to_string(),
        "--out",
        &out.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let config = distill_train::cli::Args::try_parse_from(args)
        .unwrap()
        .into_config()
        .unwrap();
    let report = distill_train::run(&config, &distill_progress::Progress::hidden()).unwrap();
    let t = report.test_errors.expect("the test split is scored");
    (t.errors, t.rows)
}

fn mnist(dir: &Path, lines: &mut Vec<Line>, students: &mut Vec<String>) {
    let rows = env_usize("TOPK_BENCH_MNIST_ROWS", 20_000);
    let epochs = env_usize("TOPK_BENCH_EPOCHS", 6);
    let seeds = env_usize("TOPK_BENCH_SEEDS", 2);
    let full_path = teach(&dir.join("mnist-full.parquet"), rows, None);
    let full_bytes = file_size(&full_path);
    let full: SoftTargets = read_store(&full_path).unwrap();
    let mut stores = vec![(None, full_path.clone())];
    lines.push(Line {
        data: "MNIST".into(),
        rest: 0.0,
        classes: 10,
        k: None,
        bytes: full_bytes,
        full_bytes,
        kl: vec![(0.0, 0.0); TEMPERATURES.len()],
    });
    for k in [3usize, 5] {
        let path = teach(&dir.join(format!("mnist-top{k}.parquet")), rows, Some(k));
        let back = read_store(&path).unwrap();
        lines.push(Line {
            data: "MNIST".into(),
            rest: rest_mass(&full.logits, k),
            classes: 10,
            k: Some(k),
            bytes: file_size(&path),
            full_bytes,
            kl: TEMPERATURES
                .iter()
                .map(|&t| kl_stats(&full.logits, &back.logits, t))
                .collect(),
        });
        stores.push((Some(k), path));
    }
    for (k, path) in &stores {
        let name = k.map_or("full".to_string(), |k| format!("top-{k}"));
        let mut errors = Vec::new();
        for seed in 1..=seeds {
            let (e, n) = student(
                path,
                rows,
                epochs,
                seed,
                &dir.join(format!("s-{name}-{seed}.onnx")),
            );
            errors.push(e);
            eprintln!("student from {name}, seed {seed}: {e} of {n} test errors");
        }
        let mean = errors.iter().sum::<usize>() as f64 / errors.len() as f64;
        students.push(format!(
            "{name:<6} {:>16} {mean:>8.1}",
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    if std::env::var("TOPK_BENCH_SKIP_SYNTHETIC").is_err() {
        let mut lines = Vec::new();
        let mut fills = Vec::new();
        synthetic(dir.path(), &mut lines, &mut fills);
        println!(
            "\nstore size and KL(full || top-k) of the tempered ensemble target (reader's fill)"
        );
        print_table(&lines);
        println!("\nfill of the missing classes: mean and p99 KL(full || top-k) per fill");
        println!(
            "{:<9} {:>7} {:>4} {:>4} {:>21} {:>21} {:>21}",
            "teachers",
            "classes",
            "K",
            "T",
            "equal share (reader)",
            "K-th logit",
            "oracle constant"
        );
        for f in &fills {
            println!("{f}");
        }
    }
    if std::env::var("TOPK_BENCH_SKIP_MNIST").is_err() {
        let mut lines = Vec::new();
        let mut students = Vec::new();
        mnist(dir.path(), &mut lines, &mut students);
        println!("\nMNIST: store size and KL(full || top-k) of the tempered ensemble target");
        print_table(&lines);
        println!(
            "\nMNIST students (784-300-300-10, Adam, T = 20) distilled from each store: test errors of 10,000"
        );
        println!("{:<6} {:>16} {:>8}", "store", "per seed", "mean");
        for s in &students {
            println!("{s}");
        }
    }
}
