//! Training K specialists one after another (`--jobs 1`) against two at a time (`--jobs 2`).
//!
//! Each specialist runs on one core (`--threads 1`, and `MATMUL_NUM_THREADS=1` for the GEMMs,
//! which must be set before a process's first GEMM, hence the child processes): the question is
//! whether independent specialists spread over the cores without getting in each other's way.
//! The bar: the `--jobs 2` run takes at most the sequential time divided by 1.8. Needs a
//! quiet machine with 2 free cores; the figure is printed, not asserted.
//!
//! `cargo bench -p distill-specialists --bench specialists` (about a minute on a quiet machine).

use clap::Parser;
use distill_cluster::matrix::Method;
use distill_cluster::specialists::{SPECIALISTS_VERSION, SpecialistSet, Subset, write_specialists};
use distill_core::math::Combine;
use distill_data::DataSource;
use std::process::Command;
use std::time::Instant;

const DATA: &str = "synthetic:classes=100,groups=10,dim=64,seed=1,train=20000,test=2000";
const K: usize = 6;

fn main() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let generalist = dir.path().join("generalist.onnx");
    let args = distill_train::cli::Args::try_parse_from([
        "distill-train",
        "--data",
        DATA,
        "--hidden",
        "512,512",
        "--epochs",
        "3",
        "--test-split",
        "none",
        "--out",
        generalist.to_str().expect("utf-8 path"),
    ])
    .expect("flags");
    distill_train::run(
        &args.into_config().expect("config"),
        &distill_progress::Progress::hidden(),
    )
    .expect("generalist");
    let DataSource::Synthetic(spec) = DataSource::parse(DATA).expect("data") else {
        unreachable!()
    };
    let groups = spec.groups_of();
    let subsets: Vec<Subset> = (0..K)
        .map(|g| {
            let classes: Vec<u32> = (0..100u32).filter(|&c| groups[c as usize] == g).collect();
            Subset {
                id: g,
                size: classes.len(),
                classes,
                names: None,
                captured: 0.0,
                joined: Vec::new(),
            }
        })
        .collect();
    let set = SpecialistSet {
        version: SPECIALISTS_VERSION,
        store: String::new(),
        dataset: DATA.into(),
        method: Method::SecondMoment,
        temperature: 1.0,
        combine: Combine::Arithmetic,
        specialists: K,
        seed: 0,
        classes: 100,
        rows: 0,
        overlap: 1,
        captured: 0.0,
        generalist_only: Vec::new(),
        subsets,
        ari_vs_true_groups: None,
    };
    let yaml = dir.path().join("specialists.yaml");
    write_specialists(&yaml, &set).expect("subsets");
    let time = |jobs: &str| {
        let out = dir.path().join(format!("jobs-{jobs}"));
        let started = Instant::now();
        let status = Command::new(env!("CARGO_BIN_EXE_distill-specialists"))
            .env("MATMUL_NUM_THREADS", "1")
            .args(["--data", DATA, "--generalist"])
            .arg(&generalist)
            .arg("--subsets")
            .arg(&yaml)
            .arg("--out")
            .arg(&out)
            .args([
                "--epochs",
                "4",
                "--patience",
                "10",
                "--threads",
                "1",
                "--jobs",
                jobs,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("distill-specialists runs");
        assert!(status.success(), "distill-specialists --jobs {jobs} failed");
        started.elapsed().as_secs_f64()
    };
    let sequential = time("1");
    let parallel = time("2");
    println!(
        "{K} specialists (64-512-512-(10+1), 12 epochs of ~3,600 rows each, one core each): \
         --jobs 1 {sequential:.2} s, --jobs 2 {parallel:.2} s, speed-up {:.2} (bar: 1.8)",
        sequential / parallel
    );
}
