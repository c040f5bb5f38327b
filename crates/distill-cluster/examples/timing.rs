//! Run times of the clustering for many classes: a synthetic hierarchy (default
//! `synthetic:classes=1000,groups=50,dim=8,seed=1`) with a store of two teachers whose logits are
//! made up from the true classes and groups (`8·[own class] + 5·[same group] + N(0, 1)`), so the
//! recovered groups can be scored as well.
//!
//! `cargo run --release -p distill-cluster --example timing -- [SYNTHETIC_SPEC] [K] [OUT_DIR]`
#![allow(clippy::unwrap_used)]

use distill_cluster::{Config, run};
use distill_core::rng::Rng;
use distill_data::synthetic::SyntheticSpec;
use distill_store::{StoreMeta, StoreWriter, TeacherMeta};
use ndarray::Array2;
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let spec_arg = args
        .next()
        .unwrap_or_else(|| "synthetic:classes=1000,groups=50,dim=8,seed=1".into());
    let k: usize = args.next().map_or(50, |v| v.parse().unwrap());
    let out = PathBuf::from(args.next().unwrap_or_else(|| "work/cluster-timing".into()));
    std::fs::create_dir_all(&out).unwrap();
    let spec = SyntheticSpec::parse(spec_arg.strip_prefix("synthetic:").unwrap()).unwrap();
    let groups = spec.groups_of();
    let (classes, rows) = (spec.classes, spec.test);
    let mut rng = Rng::new(7);
    let labels: Vec<u32> = (0..rows).map(|r| (r % classes) as u32).collect();
    let teachers: Vec<Array2<f32>> = (0..2)
        .map(|_| {
            Array2::from_shape_fn((rows, classes), |(r, c)| {
                let l = labels[r] as usize;
                let own = if c == l { 8.0 } else { 0.0 };
                let group = if groups[c] == groups[l] { 5.0 } else { 0.0 };
                own + group + rng.normal()
            })
        })
        .collect();
    let teachers_meta = (0..2)
        .map(|i| TeacherMeta::logits(format!("t{i}"), "made-up", "-"))
        .collect();
    let meta = StoreMeta::new(
        classes,
        teachers_meta,
        spec.describe(),
        "test",
        "split=test",
    );
    let store = out.join("soft.parquet");
    let mut w = StoreWriter::create(&store, &meta).unwrap();
    let index: Vec<u64> = (0..rows as u64).collect();
    w.write(
        &index,
        Some(&labels),
        &[teachers[0].view(), teachers[1].view()],
    )
    .unwrap();
    w.finish().unwrap();
    for online in [false, true] {
        let mut config = Config::new(store.clone(), k, out.join(format!("online-{online}.yaml")));
        config.online = online;
        let started = Instant::now();
        let report = run(&config, &distill_progress::Progress::hidden()).unwrap();
        let summary = report.to_string();
        let tail: Vec<&str> = summary.lines().rev().take(2).collect();
        println!(
            "{classes} classes, {rows} rows, K = {k}, online = {online}: {:.2} s; {}",
            started.elapsed().as_secs_f64(),
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        );
    }
}
