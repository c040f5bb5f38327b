//! `make bench` figures for reading and writing Parquet: the soft-target store (full and top-k
//! layouts) and a feature data set, at the sizes the stages meet. It is what a change to the
//! Parquet/Arrow build (codecs, optimisation levels) has to be measured with: the release profile
//! builds some of those crates at lower optimisation to keep the cold build short, and this bench
//! shows what that costs when a stage reads or writes.
//!
//! Each case is written and read back `IO_BENCH_REPEATS` times (default 3); the medians are
//! printed, as seconds and as MB/s of the f32 payload. The logits are seeded normal draws (they
//! compress about as badly as real logits do).

// A measurement harness, like the tests: a failed step stops it with its message.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Instant;

use distill_core::rng::Rng;
use distill_core::stats::median;
use distill_data::Dataset;
use distill_store::{StoreMeta, StoreWriter, TeacherMeta, read_store};
use ndarray::Array2;

fn logits(rows: usize, classes: usize, seed: u64) -> Array2<f32> {
    let mut rng = Rng::new(seed);
    Array2::from_shape_simple_fn((rows, classes), || 4.0 * rng.normal())
}

/// Writes `teachers` in batches of 512 rows, as distill-teach does; returns the seconds.
fn write_store(path: &Path, meta: &StoreMeta, teachers: &[Array2<f32>]) -> f64 {
    let started = Instant::now();
    let rows = teachers[0].nrows();
    let index: Vec<u64> = (0..rows as u64).collect();
    let labels: Vec<u32> = (0..rows).map(|r| (r % 10) as u32).collect();
    let mut w = StoreWriter::create(path, meta).unwrap();
    for start in (0..rows).step_by(512) {
        let end = (start + 512).min(rows);
        let views: Vec<_> = teachers
            .iter()
            .map(|a| a.slice(ndarray::s![start..end, ..]))
            .collect();
        w.write(&index[start..end], Some(&labels[start..end]), &views)
            .unwrap();
    }
    w.finish().unwrap();
    started.elapsed().as_secs_f64()
}

fn report(name: &str, payload_bytes: usize, file: &Path, mut write: Vec<f64>, mut read: Vec<f64>) {
    let (w, r) = (median(&mut write), median(&mut read));
    let mb = payload_bytes as f64 / 1e6;
    println!(
        "{name:<44} {mb:>8.1} {:>9.1} {w:>8.3} {:>8.0} {r:>8.3} {:>8.0}",
        std::fs::metadata(file).unwrap().len() as f64 / 1e6,
        mb / w,
        mb / r
    );
}

fn main() {
    let repeats: usize = std::env::var("IO_BENCH_REPEATS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let dir = tempfile::tempdir().unwrap();
    println!(
        "Parquet I/O on {} ({} threads available); medians of {repeats}",
        distill_core::stats::cpu_model(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "{:<44} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8}",
        "case", "f32 MB", "file MB", "write s", "MB/s", "read s", "MB/s"
    );
    let cases: [(&str, usize, usize, usize, Option<usize>); 4] = [
        (
            "store: 60,000 rows x 10 classes x 3 teachers",
            60_000,
            10,
            3,
            None,
        ),
        (
            "store: 20,000 rows x 1,000 classes x 2",
            20_000,
            1000,
            2,
            None,
        ),
        ("store: the same, top-50 layout", 20_000, 1000, 2, Some(50)),
        (
            "store: 2,000 rows x 10,000 classes x 2",
            2_000,
            10_000,
            2,
            None,
        ),
    ];
    for (name, rows, classes, teachers, top_k) in cases {
        let data: Vec<Array2<f32>> = (0..teachers)
            .map(|t| logits(rows, classes, t as u64 + 1))
            .collect();
        let metas: Vec<TeacherMeta> = (0..teachers)
            .map(|t| TeacherMeta::logits(format!("t{t}"), format!("t{t}.onnx"), "00"))
            .collect();
        let mut meta = StoreMeta::new(classes, metas, "synthetic", "train", "bench");
        if let Some(k) = top_k {
            meta = meta.with_top_k(k);
        }
        let path = dir
            .path()
            .join(format!("{rows}-{classes}-{top_k:?}.parquet"));
        let (mut write, mut read) = (Vec::new(), Vec::new());
        for _ in 0..repeats {
            write.push(write_store(&path, &meta, &data));
            let started = Instant::now();
            let back = read_store(&path).unwrap();
            read.push(started.elapsed().as_secs_f64());
            assert_eq!(back.logits.len(), teachers);
        }
        report(name, rows * classes * teachers * 4, &path, write, read);
    }

    let rows = 60_000;
    let mut rng = Rng::new(9);
    // MNIST-like: about 19% of the pixels lit.
    let features = Array2::from_shape_simple_fn((rows, 784), || {
        if rng.uniform() < 0.19 {
            rng.uniform()
        } else {
            0.0
        }
    });
    let ds = Dataset {
        name: "bench".into(),
        features,
        labels: Some((0..rows).map(|r| (r % 10) as u32).collect()),
        index: (0..rows as u64).collect(),
        classes: 10,
        image: Some(distill_data::ImageShape::gray(28, 28)),
    };
    let path = dir.path().join("features.parquet");
    let (mut write, mut read) = (Vec::new(), Vec::new());
    for _ in 0..repeats {
        let started = Instant::now();
        distill_data::parquet::write_dataset(&path, &ds).unwrap();
        write.push(started.elapsed().as_secs_f64());
        let started = Instant::now();
        let back = distill_data::parquet::read_dataset(&path).unwrap();
        read.push(started.elapsed().as_secs_f64());
        assert_eq!(back.len(), rows);
    }
    report(
        "data set: 60,000 rows x 784 features",
        rows * 784 * 4,
        &path,
        write,
        read,
    );
}
