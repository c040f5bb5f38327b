//! MNIST sanity run: trains two small MLPs on a slice of the MNIST train split with the distill-nn
//! engine, writes their logits on the test split as a soft-target store, and clusters the ten
//! digits with both methods into 3 and 4 subsets.
//!
//! `cargo run --release -p distill-cluster --example mnist_cluster -- [DATA] [TRAIN_ROWS] [OUT_DIR]`
//! (defaults: data/mnist, 10000, work/mnist-cluster).
#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use distill_cluster::{Config, Method, run};
use distill_data::{DataSource, Split};
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let data = args.next().unwrap_or_else(|| "data/mnist".into());
    let rows: usize = args.next().map_or(10_000, |r| r.parse().unwrap());
    let out = PathBuf::from(args.next().unwrap_or_else(|| "work/mnist-cluster".into()));
    std::fs::create_dir_all(&out).unwrap();
    let source = DataSource::parse(&data).unwrap();
    let train = source.load(Split::Train).unwrap().limit(rows);
    let test = source.load(Split::Test).unwrap();
    let started = Instant::now();
    let teachers: Vec<_> = (0..2)
        .map(|s| common::train_teacher(&train, 128, 3, s))
        .collect();
    eprintln!(
        "trained 2 teachers in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let store = out.join("soft.parquet");
    let logits = common::write_store(&store, &source.describe(), &test, &teachers, true);
    let groups: Vec<usize> = (0..10).collect();
    let (acc, _) = common::ensemble_errors(&logits, test.labels.as_ref().unwrap(), &groups);
    eprintln!("ensemble test accuracy {acc:.4}");
    for method in [Method::SecondMoment, Method::Confusion] {
        for k in [3, 4] {
            let mut config = Config::new(store.clone(), k, out.join(format!("{method}-{k}.yaml")));
            config.method = method;
            let report = run(&config, &distill_progress::Progress::hidden()).unwrap();
            println!("--- {method}, K = {k}\n{report}\n");
        }
    }
}
