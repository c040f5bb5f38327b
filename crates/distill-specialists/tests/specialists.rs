//! `distill-specialists` on a small synthetic hierarchy: calibration of the dustbin correction,
//! the start from the generalist, concurrency, `--only`, and bad inputs.

#![allow(clippy::unwrap_used)]

use clap::Parser;
use distill_cluster::matrix::Method;
use distill_cluster::specialists::{SPECIALISTS_VERSION, SpecialistSet, Subset, write_specialists};
use distill_core::math::{Combine, softmax};
use distill_data::{DataSource, Split};
use distill_specialists::Manifest;
use std::path::{Path, PathBuf};
use std::process::Command;

/// 20 classes in 4 groups of 5: a subset (one group) is a quarter of the rows.
const DATA: &str = "synthetic:classes=20,groups=4,dim=16,seed=3,train=3000,test=2000";
/// The same classes with groups that overlap (group centres about as far apart as classes), so
/// whether a row belongs to a subset is often uncertain and the oversampling shows in the
/// specialist's probabilities.
const OVERLAPPING: &str =
    "synthetic:classes=20,groups=4,dim=16,seed=3,train=10000,test=4000,separation=2";

const MNIST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/mnist");

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_distill-specialists")
}

/// Trains a 16-48-48-20 generalist on `DATA` (a few seconds at most).
fn generalist(dir: &Path) -> PathBuf {
    generalist_on(dir, DATA)
}

fn generalist_on(dir: &Path, data: &str) -> PathBuf {
    let out = dir.join("generalist.onnx");
    let args = distill_train::cli::Args::try_parse_from([
        "distill-train",
        "--data",
        data,
        "--hidden",
        "48,48",
        "--epochs",
        "20",
        "--lr",
        "0.05",
        "--test-split",
        "none",
        "--out",
        out.to_str().unwrap(),
    ])
    .unwrap();
    distill_train::run(
        &args.into_config().unwrap(),
        &distill_progress::Progress::hidden(),
    )
    .unwrap();
    out
}

/// The true groups of `DATA` as specialists.yaml.
fn subsets(dir: &Path) -> (PathBuf, Vec<Vec<u32>>) {
    true_groups(dir, DATA)
}

/// The true groups of the synthetic data set `data` as specialists.yaml.
fn true_groups(dir: &Path, data: &str) -> (PathBuf, Vec<Vec<u32>>) {
    let DataSource::Synthetic(spec) = DataSource::parse(data).unwrap() else {
        unreachable!()
    };
    let groups = spec.groups_of();
    let classes: Vec<Vec<u32>> = (0..spec.groups)
        .map(|g| {
            (0..spec.classes as u32)
                .filter(|&c| groups[c as usize] == g)
                .collect()
        })
        .collect();
    let set = set_of(&classes, spec.classes);
    let path = dir.join("specialists.yaml");
    write_specialists(&path, &set).unwrap();
    (path, classes)
}

fn set_of(classes: &[Vec<u32>], total: usize) -> SpecialistSet {
    SpecialistSet {
        version: SPECIALISTS_VERSION,
        store: "soft.parquet".into(),
        dataset: DATA.into(),
        method: Method::SecondMoment,
        temperature: 1.0,
        combine: Combine::Arithmetic,
        specialists: classes.len(),
        seed: 0,
        classes: total,
        rows: 3000,
        overlap: 1,
        captured: 0.9,
        generalist_only: Vec::new(),
        subsets: classes
            .iter()
            .enumerate()
            .map(|(id, c)| Subset {
                id,
                classes: c.clone(),
                names: None,
                size: c.len(),
                captured: 0.2,
                joined: Vec::new(),
            })
            .collect(),
        ari_vs_true_groups: None,
    }
}

/// The generalist's logits `zg` combined (top-1) with specialists given as (subset, logits).
fn combine_with(
    zg: &ndarray::Array2<f32>,
    specialists: &[(Vec<u32>, ndarray::Array2<f32>)],
) -> distill_specialists::Combined {
    let given: Vec<_> = specialists
        .iter()
        .map(|(classes, z)| distill_specialists::SpecialistLogits {
            classes,
            logits: z.view(),
        })
        .collect();
    distill_specialists::combine(
        zg.view(),
        &given,
        &distill_specialists::CombineOptions::default(),
    )
    .unwrap()
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(exe()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn base<'a>(generalist: &'a Path, subsets: &'a Path, out: &'a Path) -> Vec<&'a str> {
    vec![
        "--data",
        DATA,
        "--generalist",
        generalist.to_str().unwrap(),
        "--subsets",
        subsets.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--threads",
        "1",
    ]
}

/// 40 classes in 4 groups, classes of a group far enough apart that a network with room for them
/// tells them apart, and a generalist with one hidden layer of 8 units, too few for 40 classes:
/// the paper's premise, a generalist limited by its capacity.
const CAPACITY: &str = "synthetic:classes=40,groups=4,dim=32,seed=3,train=8000,test=4000,spread=4";

/// Against a generalist trained to convergence (early stopping on the validation slice, asserted
/// from its epoch record), specialists of the same size, chosen on the validation rows, make at
/// least 5% fewer test errors, and the system is no worse than the generalist on the validation
/// rows. The test errors are counted here from the saved ONNX files, combined directly.
#[test]
fn specialists_beat_a_converged_generalist_limited_by_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("generalist.onnx");
    let patience = 10;
    let args = distill_train::cli::Args::try_parse_from([
        "distill-train",
        "--data",
        CAPACITY,
        "--hidden",
        "8",
        "--epochs",
        "300",
        "--patience",
        &patience.to_string(),
        "--schedule",
        "exp:0.97",
        "--test-split",
        "none",
        "--threads",
        "1",
        "--out",
        g.to_str().unwrap(),
    ])
    .unwrap();
    let report = distill_train::run(
        &args.into_config().unwrap(),
        &distill_progress::Progress::hidden(),
    )
    .unwrap();
    // Converged: the run stopped itself, `patience` epochs after its best validation epoch.
    let csv = std::fs::read_to_string(dir.path().join("generalist.metrics.csv")).unwrap();
    let val: Vec<f64> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(6).unwrap().parse().unwrap())
        .collect();
    assert!(val.len() < 300, "trained every epoch: not converged");
    let best = (0..val.len()).fold(0, |b, e| if val[e] < val[b] { e } else { b });
    assert_eq!(val.len() - 1 - best, patience, "{val:?}");
    assert!(report.notes.iter().any(|n| n.contains("stopped early")));

    let (s, groups) = true_groups(dir.path(), CAPACITY);
    let out = dir.path().join("spec");
    let mut args = base(&g, &s, &out);
    args[1] = CAPACITY;
    args.extend(["--epochs", "30", "--patience", "5"]);
    let (code, stdout, stderr) = run(&args);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let manifest = Manifest::load(&out.join("manifest.yaml")).unwrap();
    // Chosen on the validation rows: the system of the used specialists is no worse there.
    for e in &manifest.specialists {
        let v = e.validation_effect.as_ref().unwrap();
        if e.used {
            assert!(v.errors_with <= v.errors_without, "{e:?}");
        }
    }

    let test = DataSource::parse(CAPACITY)
        .unwrap()
        .load(Split::Test)
        .unwrap();
    let labels = test.labels.clone().unwrap();
    let x = test.features.view();
    let zg = distill_nn::onnx::load(&g).unwrap().mlp.forward(x).unwrap();
    let used: Vec<(Vec<u32>, ndarray::Array2<f32>)> = manifest
        .specialists
        .iter()
        .filter(|e| e.used)
        .map(|e| {
            assert_eq!(e.classes, groups[e.id]);
            let m = distill_nn::onnx::load(&out.join(&e.path)).unwrap().mlp;
            (e.classes.clone(), m.forward(x).unwrap())
        })
        .collect();
    assert!(!used.is_empty(), "{stdout}");
    let combined = combine_with(&zg, &used);
    let errors = |score: &dyn Fn(usize, usize) -> f64| {
        (0..labels.len())
            .filter(|&r| {
                let best = (0..40).fold(0, |b, c| if score(r, c) > score(r, b) { c } else { b });
                best != labels[r] as usize
            })
            .count()
    };
    let generalist = errors(&|r, c| zg[[r, c]] as f64);
    let system = errors(&|r, c| combined.log_probs[[r, c]]);
    println!("test errors: generalist {generalist}, with specialists {system}");
    assert!(
        (system as f64) <= 0.95 * generalist as f64,
        "generalist {generalist}, with specialists {system}\n{stdout}"
    );
}

/// After the correction, a specialist's mean predicted dustbin probability on held-out data is
/// the share of held-out rows outside its subset (0.75 here); before it, the half/half training
/// stream pulls it towards 1/2.
#[test]
fn the_dustbin_correction_calibrates_the_specialist_for_the_true_class_shares() {
    let dir = tempfile::tempdir().unwrap();
    let g = generalist_on(dir.path(), OVERLAPPING);
    let (s, groups) = subsets(dir.path());
    let out = dir.path().join("spec");
    let mut args = base(&g, &s, &out);
    args[1] = OVERLAPPING;
    args.extend([
        "--only",
        "0",
        "--epochs",
        "30",
        "--patience",
        "30",
        "--lr",
        "0.01",
    ]);
    let (code, stdout, stderr) = run(&args);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    println!("{stdout}\n{stderr}");
    let manifest_path = out.join("manifest.yaml");
    let m = Manifest::load(&manifest_path).unwrap();
    m.verify_files(&manifest_path).unwrap();
    assert_eq!(m.specialists.len(), 1);
    let e = &m.specialists[0];
    assert_eq!(e.classes, groups[0]);
    let true_share = 1.0 - e.subset_share;
    assert!((e.subset_share - 0.25).abs() < 0.02, "{}", e.subset_share);
    assert!((e.sampled_share - 0.5).abs() < 1e-9);
    assert!((e.dustbin_correction - 3f64.ln()).abs() < 0.1);

    let spec = distill_nn::onnx::load(&out.join(&e.path)).unwrap();
    let meta = &spec.metadata["distill.specialist"];
    assert!(meta.contains("\"dustbin\":5"), "{meta}");
    let test = DataSource::parse(OVERLAPPING)
        .unwrap()
        .load(Split::Test)
        .unwrap();
    let labels = test.labels.as_ref().unwrap();
    let held_out_share =
        labels.iter().filter(|l| !groups[0].contains(l)).count() as f64 / labels.len() as f64;
    assert!((held_out_share - true_share).abs() < 0.01);
    let logits = spec.mlp.forward(test.features.view()).unwrap();
    let mean_dustbin = |z: &ndarray::Array2<f32>| {
        let p = softmax(z.view(), 1.0);
        p.column(5).iter().map(|&v| v as f64).sum::<f64>() / p.nrows() as f64
    };
    let after = mean_dustbin(&logits);
    let mut before = logits.clone();
    before
        .column_mut(5)
        .mapv_inplace(|v| v - e.dustbin_correction as f32);
    let before = mean_dustbin(&before);
    println!(
        "mean dustbin probability: before {before:.4}, after {after:.4}, true {held_out_share:.4}"
    );
    assert!(
        (after - held_out_share).abs() < 0.02,
        "after the correction: mean dustbin probability {after:.4}, true share {held_out_share:.4}"
    );
    let (err_before, err_after) = (
        (before - held_out_share).abs(),
        (after - held_out_share).abs(),
    );
    assert!(
        err_before > 0.04 && err_before > 3.0 * err_after,
        "before the correction: {before:.4} against {held_out_share:.4} (after: {after:.4})"
    );
}

/// With a learning rate too small to move a weight (1e-30; 0 is refused) the saved specialists
/// are their starting point, the generalist
/// folded onto each subset and the dustbin: the generalist's weights exactly, its subset logits,
/// the log-sum-exp of its other logits as the dustbin; combined with the generalist, they leave
/// every row's distribution and argmax the generalist's.
#[test]
fn untrained_specialists_reproduce_the_generalist_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let g = generalist(dir.path());
    let (s, groups) = subsets(dir.path());
    let out = dir.path().join("spec");
    let mut args = base(&g, &s, &out);
    args.extend(["--epochs", "1", "--lr", "1e-30"]);
    let (code, stdout, stderr) = run(&args);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for id in 0..groups.len() {
        let spec = distill_nn::onnx::load(&out.join(format!("specialist-{id}.onnx")))
            .unwrap()
            .mlp;
        assert_eq!(spec.config.sizes, vec![16, 48, 48, 20]);
    }
    let test = DataSource::parse(DATA).unwrap().load(Split::Test).unwrap();
    assert_exact_start(&g, &out, &groups, test.features.view());
}

/// The CNN twin of [`untrained_specialists_reproduce_the_generalist_exactly`]: specialists of a
/// small CNN generalist (with dropout) on an MNIST slice are CNNs of its architecture, start from
/// its exact weights, and reproduce it. (No batch norm here: its running statistics move in any
/// training step, whatever the learning rate, so such a specialist is never "untrained".)
#[test]
fn untrained_specialists_of_a_cnn_reproduce_it_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("generalist.onnx");
    let arch = "conv:4:5:p2,relu,maxpool:2,flatten,fc:24,relu,dropout:0.3,fc";
    let args = distill_train::cli::Args::try_parse_from([
        "distill-train",
        "--data",
        MNIST,
        "--limit",
        "400",
        "--arch",
        arch,
        "--epochs",
        "2",
        "--test-split",
        "none",
        "--out",
        g.to_str().unwrap(),
    ])
    .unwrap();
    distill_train::run(
        &args.into_config().unwrap(),
        &distill_progress::Progress::hidden(),
    )
    .unwrap();
    let groups = vec![vec![0, 6], vec![3, 5, 8], vec![4, 7, 9]];
    let s = dir.path().join("specialists.yaml");
    write_specialists(&s, &set_of(&groups, 10)).unwrap();
    let out = dir.path().join("spec");
    let (code, stdout, stderr) = run(&[
        "--data",
        MNIST,
        "--limit",
        "400",
        "--generalist",
        g.to_str().unwrap(),
        "--subsets",
        s.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--threads",
        "1",
        "--epochs",
        "1",
        "--lr",
        "1e-30",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for id in 0..groups.len() {
        let meta = distill_nn::onnx::metadata(&out.join(format!("specialist-{id}.onnx"))).unwrap();
        assert_eq!(meta["distill.arch"], arch);
    }
    let test = DataSource::parse(MNIST)
        .unwrap()
        .load(Split::Test)
        .unwrap()
        .select(&(0..500).collect::<Vec<_>>());
    assert_exact_start(&g, &out, &groups, test.features.view());
}

/// A generalist trained with `--normalize` passes its preprocessing on: every specialist file
/// records and computes it, so on raw rows in ONNX Runtime an untrained specialist's subset logits
/// are the generalist's.
#[test]
fn specialists_of_a_normalised_generalist_take_raw_rows_as_it_does() {
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("generalist.onnx");
    let args = distill_train::cli::Args::try_parse_from([
        "distill-train",
        "--data",
        MNIST,
        "--limit",
        "400",
        "--hidden",
        "24",
        "--normalize",
        "mean=0.1307,std=0.3081",
        "--epochs",
        "2",
        "--test-split",
        "none",
        "--out",
        g.to_str().unwrap(),
    ])
    .unwrap();
    distill_train::run(
        &args.into_config().unwrap(),
        &distill_progress::Progress::hidden(),
    )
    .unwrap();
    let groups = vec![vec![3, 5, 8], vec![4, 7, 9]];
    let s = dir.path().join("specialists.yaml");
    write_specialists(&s, &set_of(&groups, 10)).unwrap();
    let out = dir.path().join("spec");
    let (code, stdout, stderr) = run(&[
        "--data",
        MNIST,
        "--limit",
        "400",
        "--generalist",
        g.to_str().unwrap(),
        "--subsets",
        s.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--threads",
        "1",
        "--epochs",
        "1",
        "--lr",
        "1e-30",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("generalist's preprocessing"), "{stdout}");
    let key = distill_nn::onnx::net::PREPROCESS_KEY;
    let recorded = distill_nn::onnx::metadata(&g).unwrap()[key].clone();
    let raw = DataSource::parse(MNIST)
        .unwrap()
        .load(Split::Test)
        .unwrap()
        .select(&(0..300).collect::<Vec<_>>())
        .features;
    distill_runtime::init().unwrap();
    let ort = |path: &Path| {
        distill_runtime::OnnxModel::load(
            &distill_runtime::ModelSpec::new(path),
            distill_runtime::Provider::Cpu,
            1,
        )
        .unwrap()
        .run(raw.view())
        .unwrap()
    };
    let zg = ort(&g);
    for (id, group) in groups.iter().enumerate() {
        let path = out.join(format!("specialist-{id}.onnx"));
        assert_eq!(distill_nn::onnx::metadata(&path).unwrap()[key], recorded);
        let zs = ort(&path);
        for (k, &c) in group.iter().enumerate() {
            let diff = (&zs.column(k) - &zg.column(c as usize))
                .iter()
                .fold(0.0f32, |m, d| m.max(d.abs()));
            assert!(diff < 1e-5, "specialist {id} class {c}: {diff}");
        }
    }
}

/// The specialists in `out` (one per group of `groups`) hold the generalist `g`'s weights and
/// buffers exactly; on the rows `x` their subset logits are its logits, and combined with it they
/// leave every row's distribution (to 1e-6) and argmax its own.
fn assert_exact_start(g: &Path, out: &Path, groups: &[Vec<u32>], x: ndarray::ArrayView2<f32>) {
    let (generalist, _) = distill_nn::Model::load(g).unwrap();
    let zg = generalist.forward(x).unwrap();
    let mut logits = Vec::new();
    for (id, group) in groups.iter().enumerate() {
        let (spec, _) =
            distill_nn::Model::load(&out.join(format!("specialist-{id}.onnx"))).unwrap();
        assert_eq!(spec.kind(), generalist.kind());
        assert_eq!(spec.classes(), group.len() + 1);
        assert_eq!(
            spec.params(),
            generalist.params(),
            "specialist {id}: not the generalist's weights"
        );
        assert_eq!(spec.buffers(), generalist.buffers());
        let zs = spec.forward(x).unwrap();
        for (k, &c) in group.iter().enumerate() {
            assert_eq!(zs.column(k), zg.column(c as usize));
        }
        logits.push((group.clone(), zs));
    }
    let combined = combine_with(&zg, &logits);
    let p = softmax(zg.view(), 1.0);
    let mut worst = 0.0f64;
    for r in 0..zg.nrows() {
        assert!(!combined.active(r).is_empty());
        let q = combined.log_probs.row(r).mapv(f64::exp);
        for c in 0..zg.ncols() {
            worst = worst.max((q[c] - p[[r, c]] as f64).abs());
        }
        let argmax = |v: &dyn Fn(usize) -> f64| {
            (0..zg.ncols()).fold(0, |b, c| if v(c) > v(b) { c } else { b })
        };
        assert_eq!(argmax(&|c| q[c]), argmax(&|c| zg[[r, c]] as f64), "row {r}");
    }
    assert!(worst < 1e-6, "largest |q - p| {worst}");
}

/// `--jobs 2` trains the same specialists as one after another, bit for bit; `--only` adds to the
/// folder's manifest.
#[test]
fn concurrent_and_single_runs_agree_and_only_adds_to_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let g = generalist(dir.path());
    let (s, _) = subsets(dir.path());
    let one = dir.path().join("one");
    let two = dir.path().join("two");
    for (out, jobs) in [(&one, "1"), (&two, "2")] {
        let mut args = base(&g, &s, out);
        args.extend(["--epochs", "2", "--jobs", jobs]);
        let (code, stdout, stderr) = run(&args);
        assert_eq!(code, 0, "{stdout}\n{stderr}");
        assert!(stdout.contains("validation errors"), "{stdout}");
    }
    let m1 = Manifest::load(&one.join("manifest.yaml")).unwrap();
    let m2 = Manifest::load(&two.join("manifest.yaml")).unwrap();
    assert_eq!(m1.specialists.len(), 4);
    // Bit for bit: the same weights, and the files record no --jobs or --out.
    assert_eq!(m1.specialists, m2.specialists);
    assert_eq!(m1.generalist.path, "../generalist.onnx");
    assert_eq!(m1.subsets, "../specialists.yaml");

    // A full run removes the files of specialists its earlier manifest listed and the new one
    // does not; a file no manifest of this stage listed stays.
    std::fs::write(two.join("specialist-9.onnx"), b"stale").unwrap();
    let mut earlier = m2.clone();
    let mut nine = earlier.specialists[0].clone();
    nine.id = 9;
    nine.path = "specialist-9.onnx".into();
    earlier.specialists.push(nine);
    earlier.save(&two.join("manifest.yaml")).unwrap();
    std::fs::write(two.join("specialist-8.onnx"), b"the user's").unwrap();
    let mut args = base(&g, &s, &two);
    args.extend(["--epochs", "2", "--jobs", "2"]);
    assert_eq!(run(&args).0, 0);
    assert!(!two.join("specialist-9.onnx").exists());
    assert!(two.join("specialist-3.onnx").exists());
    assert_eq!(
        std::fs::read(two.join("specialist-8.onnx")).unwrap(),
        b"the user's"
    );

    let only = dir.path().join("only");
    for id in ["3", "1"] {
        let mut args = base(&g, &s, &only);
        args.extend(["--epochs", "2", "--only", id]);
        let (code, stdout, stderr) = run(&args);
        assert_eq!(code, 0, "{stdout}\n{stderr}");
    }
    let m3 = Manifest::load(&only.join("manifest.yaml")).unwrap();
    let ids: Vec<usize> = m3.specialists.iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![1, 3]);
    // The same weights; the validation effect of an --only run is measured among the specialists
    // it trains (here with the generalist alone), so it differs from the full run's.
    let without_effect = |e: &distill_specialists::SpecialistEntry| {
        let mut e = e.clone();
        e.validation_effect = None;
        e
    };
    assert_eq!(
        without_effect(&m3.specialists[0]),
        without_effect(&m1.specialists[1])
    );
    let effect = m3.specialists[0].validation_effect.as_ref().unwrap();
    assert_eq!(effect.rows, 300);
    m3.verify_files(&only.join("manifest.yaml")).unwrap();
}

/// Bad inputs stop the run with exit code 2, a message naming the file and the problem, and no
/// output folder.
#[test]
fn bad_inputs_exit_2_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let g = generalist(dir.path());
    let (good, _) = subsets(dir.path());
    let out = dir.path().join("spec");

    // A subset naming class 12 of a 10-class file (and generalist).
    let ten = dir.path().join("ten.yaml");
    let mut set = set_of(&[vec![1, 2], vec![3, 12]], 10);
    set.classes = 10;
    std::fs::write(&ten, serde_norway::to_string(&set).unwrap()).unwrap();
    // An empty subset.
    let empty = dir.path().join("empty.yaml");
    let mut set = set_of(&[vec![1, 2], vec![]], 20);
    set.subsets[1].size = 0;
    std::fs::write(&empty, serde_norway::to_string(&set).unwrap()).unwrap();
    // A generalist with another input width.
    let wide = dir.path().join("wide.onnx");
    let args = distill_train::cli::Args::try_parse_from([
        "distill-train",
        "--data",
        "synthetic:classes=20,groups=4,dim=24,seed=3,train=400,test=40",
        "--hidden",
        "8",
        "--epochs",
        "1",
        "--test-split",
        "none",
        "--out",
        wide.to_str().unwrap(),
    ])
    .unwrap();
    distill_train::run(
        &args.into_config().unwrap(),
        &distill_progress::Progress::hidden(),
    )
    .unwrap();

    let cases: Vec<(PathBuf, PathBuf, Vec<&str>, Vec<&str>)> = vec![
        (
            g.clone(),
            ten.clone(),
            vec![],
            vec!["ten.yaml", "class 12", "10 classes"],
        ),
        (
            g.clone(),
            empty.clone(),
            vec![],
            vec!["empty.yaml", "subsets[1]", "no classes"],
        ),
        (
            wide.clone(),
            good.clone(),
            vec![],
            vec!["wide.onnx", "24 features", "16"],
        ),
        (
            g.clone(),
            good.clone(),
            vec!["--only", "7"],
            vec!["--only 7", "subsets 0 to 3"],
        ),
        (
            g.clone(),
            good.clone(),
            vec!["--alpha", "0.5"],
            vec!["--soft-targets"],
        ),
        (
            dir.path().join("missing.onnx"),
            good.clone(),
            vec![],
            vec!["missing.onnx"],
        ),
    ];
    for (gen_path, subsets, extra, words) in cases {
        let mut args = base(&gen_path, &subsets, &out);
        args.extend(extra.iter().copied());
        let (code, stdout, stderr) = run(&args);
        assert_eq!(code, 2, "{args:?}\n{stdout}\n{stderr}");
        for w in words {
            assert!(stderr.contains(w), "`{w}` not in: {stderr}");
        }
        assert!(!out.exists(), "{args:?} left {}", out.display());
    }
    // A file where the folder should be.
    std::fs::write(&out, b"x").unwrap();
    let (code, _, stderr) = run(&base(&g, &good, &out));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("folder"), "{stderr}");
    assert_eq!(std::fs::read(&out).unwrap(), b"x");
}

/// End to end on a small synthetic hierarchy (40 classes in 8 groups, a deliberately small
/// generalist): generalist, specialists for the true groups, the KL combination on the test split.
/// The combined system makes fewer test errors than the generalist alone.
#[test]
fn generalist_and_specialists_beat_the_generalist_alone() {
    const HIER: &str = "synthetic:classes=40,groups=8,dim=32,seed=5,train=12000,test=4000";
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("generalist.onnx");
    let args = distill_train::cli::Args::try_parse_from([
        "distill-train",
        "--data",
        HIER,
        "--hidden",
        "32",
        "--epochs",
        "4",
        "--lr",
        "0.05",
        "--test-split",
        "none",
        "--out",
        g.to_str().unwrap(),
    ])
    .unwrap();
    distill_train::run(
        &args.into_config().unwrap(),
        &distill_progress::Progress::hidden(),
    )
    .unwrap();
    let DataSource::Synthetic(spec) = DataSource::parse(HIER).unwrap() else {
        unreachable!()
    };
    let groups = spec.groups_of();
    let classes: Vec<Vec<u32>> = (0..8)
        .map(|k| (0..40u32).filter(|&c| groups[c as usize] == k).collect())
        .collect();
    let mut set = set_of(&classes, 40);
    set.dataset = HIER.into();
    let s = dir.path().join("specialists.yaml");
    write_specialists(&s, &set).unwrap();
    let out = dir.path().join("spec");
    let mut args = base(&g, &s, &out);
    args[1] = HIER;
    args.extend([
        "--epochs",
        "12",
        "--patience",
        "3",
        "--lr",
        "0.05",
        "--jobs",
        "2",
    ]);
    let (code, stdout, stderr) = run(&args);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    println!("{stdout}");

    let manifest_path = out.join("manifest.yaml");
    let m = Manifest::load(&manifest_path).unwrap();
    m.verify_files(&manifest_path).unwrap();
    let test = DataSource::parse(HIER).unwrap().load(Split::Test).unwrap();
    let labels = test.labels.as_ref().unwrap();
    let generalist = distill_nn::onnx::load(&m.generalist_path(&manifest_path))
        .unwrap()
        .mlp;
    let zg = generalist.forward(test.features.view()).unwrap();
    let zs: Vec<ndarray::Array2<f32>> = m
        .specialist_paths(&manifest_path)
        .iter()
        .map(|p| {
            distill_nn::onnx::load(p)
                .unwrap()
                .mlp
                .forward(test.features.view())
                .unwrap()
        })
        .collect();
    let logits: Vec<distill_specialists::SpecialistLogits> = m
        .specialists
        .iter()
        .zip(&zs)
        .map(|(e, z)| distill_specialists::SpecialistLogits {
            classes: &e.classes,
            logits: z.view(),
        })
        .collect();
    let combined = distill_specialists::combine(
        zg.view(),
        &logits,
        &distill_specialists::CombineOptions::default(),
    )
    .unwrap();
    let errors = |pred: Vec<usize>| {
        pred.iter()
            .zip(labels)
            .filter(|(p, y)| **p != **y as usize)
            .count()
    };
    let alone = errors(distill_core::math::argmax_rows(zg.view()));
    let together = errors(
        combined
            .log_probs
            .rows()
            .into_iter()
            .map(|r| (0..r.len()).fold(0, |b, j| if r[j] > r[b] { j } else { b }))
            .collect(),
    );
    println!("test errors: generalist {alone}, generalist + specialists {together}");
    assert!(
        (together as f64) < 0.95 * alone as f64,
        "generalist {alone} errors, combined {together}"
    );
}
