//! The `distill-cluster` binary end to end, each test in a fresh temporary folder.
#![allow(clippy::unwrap_used)]

mod common;

use distill_cluster::{SpecialistSet, ari, read_specialists};
use distill_data::Split;
use distill_data::synthetic::SyntheticSpec;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Runs the binary in `dir` with `args`; returns (exit code, stdout, stderr).
fn cluster(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_distill-cluster"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const SYNTHETIC: &str = "classes=40,groups=8,dim=32,seed=3";

/// A store of three small teachers trained on the synthetic hierarchy, made once per run of this
/// test binary (into Cargo's scratch folder for integration tests; the store is written atomically
/// and its content is fixed by the seeds).
fn synthetic_store() -> &'static (PathBuf, SyntheticSpec) {
    static STORE: OnceLock<(PathBuf, SyntheticSpec)> = OnceLock::new();
    STORE.get_or_init(|| {
        let spec = SyntheticSpec::parse(SYNTHETIC).unwrap();
        let train = spec.load(Split::Train).unwrap();
        let teachers: Vec<_> = (0..3)
            .map(|s| common::train_teacher(&train, 64, 4, s))
            .collect();
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("distill-cluster-synthetic.parquet");
        let logits = common::write_store(&path, &spec.describe(), &train, &teachers, true);
        let (acc, within) =
            common::ensemble_errors(&logits, train.labels.as_ref().unwrap(), &spec.groups_of());
        eprintln!("ensemble accuracy {acc:.3}, errors within a group {within:.3}");
        (path, spec)
    })
}

fn ari_against_truth(set: &SpecialistSet, truth: &[usize]) -> f64 {
    let found: Vec<usize> = set
        .primary_assignment()
        .iter()
        .enumerate()
        .map(|(c, a)| a.unwrap_or(1000 + c))
        .collect();
    ari(&found, truth)
}

#[test]
fn recovers_the_synthetic_groups() {
    let (store, spec) = synthetic_store();
    let truth = spec.groups_of();
    let dir = tempfile::tempdir().unwrap();
    for (name, extra) in [
        ("covariance", vec![]),
        ("online", vec!["--online"]),
        ("confusion", vec!["--method", "confusion"]),
    ] {
        let out = dir.path().join(format!("{name}.yaml"));
        let mut args = vec![
            "--soft-targets",
            store.to_str().unwrap(),
            "--count",
            "8",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        let (code, stdout, stderr) = cluster(dir.path(), &args);
        assert_eq!(code, 0, "{name}: {stderr}");
        eprintln!("{name}:\n{stdout}");
        let set = read_specialists(&out).unwrap();
        let a = ari_against_truth(&set, &truth);
        assert!(a >= 0.9, "{name}: ARI {a}");
        assert_eq!(
            set.ari_vs_true_groups.map(|r| (r - a).abs() < 1e-12),
            Some(true)
        );
        assert!(dir.path().join(format!("{name}.png")).is_file());
    }
}

/// Runs with `args` after `--out <dir>/s.yaml`; expects exit code 2, `message` on stderr and
/// neither output file.
fn refuses(dir: &Path, args: &[&str], message: &str) {
    let out = dir.join("s.yaml");
    let mut all = vec!["--out", out.to_str().unwrap()];
    all.extend(args);
    let (code, _, stderr) = cluster(dir, &all);
    assert_eq!(code, 2, "{args:?}: {stderr}");
    assert!(stderr.contains(message), "{args:?}: {stderr}");
    assert!(
        !out.exists() && !dir.join("s.png").exists(),
        "{args:?} left an output"
    );
}

#[test]
fn bad_inputs_exit_2_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = |name: &str| d.join(name).to_str().unwrap().to_string();
    common::random_store(&d.join("one.parquet"), 1, 20, true);
    common::random_store(&d.join("ten.parquet"), 10, 200, true);
    common::random_store(&d.join("unlabelled.parquet"), 10, 200, false);
    common::nan_store(&d.join("nan.parquet"));
    let (one, ten, unlabelled, nan, missing) = (
        store("one.parquet"),
        store("ten.parquet"),
        store("unlabelled.parquet"),
        store("nan.parquet"),
        store("missing.parquet"),
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--soft-targets", &one, "--count", "1"],
            "at least 2 classes",
        ),
        (
            vec!["--soft-targets", &ten, "--count", "11"],
            "more than the 10 classes",
        ),
        (vec!["--soft-targets", &ten, "--count", "0"], "--count 0"),
        (
            vec![
                "--soft-targets",
                &unlabelled,
                "--count",
                "3",
                "--method",
                "confusion",
            ],
            "--method confusion needs a label",
        ),
        (
            vec!["--soft-targets", &nan, "--count", "2"],
            "non-finite value (NaN)",
        ),
        (
            vec![
                "--soft-targets",
                &ten,
                "--count",
                "3",
                "--min-size",
                "4",
                "--max-size",
                "3",
            ],
            "--min-size 4 is larger than --max-size 3",
        ),
        (
            vec![
                "--soft-targets",
                &ten,
                "--count",
                "3",
                "--max-size",
                "2",
                "--method",
                "confusion",
            ],
            "do not fit in 3 subsets",
        ),
        (
            vec![
                "--soft-targets",
                &ten,
                "--count",
                "3",
                "--min-size",
                "4",
                "--method",
                "confusion",
            ],
            "need 12 classes",
        ),
        (
            vec!["--soft-targets", &missing, "--count", "2"],
            "missing.parquet",
        ),
        (
            vec!["--soft-targets", &ten, "--count", "2", "--method", "kmeans"],
            "unknown method",
        ),
        (
            vec![
                "--soft-targets",
                &ten,
                "--count",
                "2",
                "--heatmap",
                "no/such/dir/h.png",
            ],
            "does not exist",
        ),
    ];
    for (args, message) in cases {
        refuses(d, &args, message);
    }
    let (code, _, stderr) = cluster(d, &["--soft-targets", &ten]);
    assert_eq!(code, 2, "{stderr}");
    let (code, stdout, _) = cluster(d, &["--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("--soft-targets"));
}

/// Runs on the synthetic store with `args` after the store and `--out <dir>/s.yaml`.
fn run_synthetic(dir: &Path, args: &[&str]) -> SpecialistSet {
    let (store, _) = synthetic_store();
    let out = dir.join("s.yaml");
    let mut all = vec![
        "--soft-targets",
        store.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    all.extend(args);
    let (code, _, stderr) = cluster(dir, &all);
    assert_eq!(code, 0, "{args:?}: {stderr}");
    read_specialists(&out).unwrap()
}

#[test]
fn size_bounds_overlap_and_heatmap_path() {
    let truth = &synthetic_store().1.groups_of();
    let dir = tempfile::tempdir().unwrap();
    // Groups of 5 into subsets of exactly 4: the bounds, not K-means, decide the sizes.
    let set = run_synthetic(
        dir.path(),
        &["--count", "10", "--min-size", "4", "--max-size", "4"],
    );
    assert!(
        set.subsets
            .iter()
            .all(|s| s.size == 4 && s.joined.is_empty())
    );
    // Overlap: with the default factor no class is near another group; with a huge one every class
    // joins its nearest other subset (two memberships at most), and the own subsets stay the groups.
    let set = run_synthetic(dir.path(), &["--count", "8", "--overlap", "2"]);
    assert!(set.subsets.iter().all(|s| s.joined.is_empty()));
    let heatmap = dir.path().join("map.png");
    let set = run_synthetic(
        dir.path(),
        &[
            "--count",
            "8",
            "--overlap",
            "2",
            "--overlap-factor",
            "100",
            "--heatmap",
            heatmap.to_str().unwrap(),
        ],
    );
    let joined: usize = set.subsets.iter().map(|s| s.joined.len()).sum();
    assert_eq!(joined, 40);
    let primary = set.primary_assignment();
    for a in 0..40 {
        let memberships = set
            .subsets
            .iter()
            .filter(|s| s.classes.contains(&(a as u32)))
            .count();
        assert_eq!(memberships, 2);
        for b in 0..40 {
            assert_eq!(
                truth[a] == truth[b],
                primary[a] == primary[b],
                "classes {a} and {b}"
            );
        }
    }
    let png = std::fs::read(&heatmap).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    assert!(
        dir.path().join("s.png").is_file(),
        "earlier runs put the heatmap beside --out"
    );
}

/// `--limit` and the class filters choose the store's rows as they choose a data set's rows in the
/// other stages; `--method covariance`, the old name, still works with a note.
#[test]
fn row_flags_choose_the_rows_clustered() {
    let (store, _) = synthetic_store();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.yaml");
    let (code, _, stderr) = cluster(
        dir.path(),
        &[
            "--soft-targets",
            store.to_str().unwrap(),
            "--count",
            "4",
            "--out",
            out.to_str().unwrap(),
            "--limit",
            "1000",
            "--exclude-classes",
            "0,1",
            "--method",
            "covariance",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("--method covariance is now --method second-moment"),
        "{stderr}"
    );
    let set = read_specialists(&out).unwrap();
    // 1,000 rows less those of 2 of the 40 classes (about 50).
    assert!(set.rows < 1000 && set.rows > 850, "{} rows", set.rows);
    assert_eq!(set.method.to_string(), "second-moment");
}
