//! The data layer on real and damaged files: MNIST as committed, copies of it cut short, corrupted
//! or mismatched, and the generic Parquet layout.
#![allow(clippy::unwrap_used)]

use distill_data::{ClassFilter, DataSource, Dataset, Selection, Split, parquet};
use std::path::Path;

const MNIST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/mnist");

fn copy_mnist(to: &Path) {
    for f in [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ] {
        std::fs::copy(Path::new(MNIST).join(f), to.join(f)).unwrap();
    }
}

fn load(data: &str, split: Split) -> distill_core::Result<Dataset> {
    Selection {
        data: data.into(),
        split,
        limit: None,
        classes: ClassFilter::default(),
    }
    .load()
}

#[test]
fn mnist_loads_with_the_published_counts_and_checksums() {
    let train = load(MNIST, Split::Train).unwrap();
    let test = load(MNIST, Split::Test).unwrap();
    assert_eq!(train.features.dim(), (60_000, 784));
    assert_eq!(test.features.dim(), (10_000, 784));
    assert_eq!(train.image, Some((28, 28)));
    // The published class counts of the MNIST test set.
    let labels = test.labels.as_ref().unwrap();
    let counts: Vec<usize> = (0..10)
        .map(|c| labels.iter().filter(|&&l| l == c).count())
        .collect();
    assert_eq!(
        counts,
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    assert!(train.features.iter().all(|&v| (0.0..=1.0).contains(&v)));
    // The first training image is a 5.
    assert_eq!(train.labels.as_ref().unwrap()[0], 5);
}

#[test]
fn a_damaged_file_fails_its_checksum() {
    let dir = tempfile::tempdir().unwrap();
    copy_mnist(dir.path());
    std::fs::copy(
        Path::new(MNIST).join("SHA256SUMS"),
        dir.path().join("SHA256SUMS"),
    )
    .unwrap();
    let labels = dir.path().join("t10k-labels-idx1-ubyte.gz");
    let mut bytes = std::fs::read(&labels).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 0xFF;
    std::fs::write(&labels, bytes).unwrap();
    let e = load(dir.path().to_str().unwrap(), Split::Test)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("SHA-256 mismatch") && e.contains("t10k-labels-idx1-ubyte.gz"),
        "{e}"
    );
}

#[test]
fn truncated_and_mismatched_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    copy_mnist(dir.path());
    let d = dir.path().to_str().unwrap();
    // A gzip file cut in half.
    let images = dir.path().join("t10k-images-idx3-ubyte.gz");
    let bytes = std::fs::read(&images).unwrap();
    std::fs::write(&images, &bytes[..bytes.len() / 2]).unwrap();
    let e = load(d, Split::Test).unwrap_err().to_string();
    assert!(
        e.contains("t10k-images-idx3-ubyte.gz") && e.contains("truncated"),
        "{e}"
    );
    // An uncompressed IDX file whose data is shorter than its header says.
    std::fs::remove_file(&images).unwrap();
    let mut idx = vec![0u8, 0, 8, 3];
    for d in [10_000u32, 28, 28] {
        idx.extend_from_slice(&d.to_be_bytes());
    }
    idx.extend(std::iter::repeat_n(0u8, 1000));
    std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), &idx).unwrap();
    let e = load(d, Split::Test).unwrap_err().to_string();
    assert!(
        e.contains("need 7840000 data bytes, found 1000") && e.contains("truncated"),
        "{e}"
    );
    // Images and labels from different splits.
    std::fs::remove_file(dir.path().join("t10k-images-idx3-ubyte")).unwrap();
    std::fs::copy(
        dir.path().join("train-images-idx3-ubyte.gz"),
        dir.path().join("t10k-images-idx3-ubyte.gz"),
    )
    .unwrap();
    let e = load(d, Split::Test).unwrap_err().to_string();
    assert!(
        e.contains("60000 images") && e.contains("10000 labels"),
        "{e}"
    );
    // A folder without the files.
    let empty = tempfile::tempdir().unwrap();
    let e = DataSource::parse(empty.path().to_str().unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("neither the MNIST IDX files"), "{e}");
}

#[test]
fn the_generic_parquet_layout_round_trips_and_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let mnist = Selection {
        data: MNIST.into(),
        split: Split::Test,
        limit: Some(300),
        classes: ClassFilter::default(),
    }
    .load()
    .unwrap();
    let path = dir.path().join("test.parquet");
    parquet::write_dataset(&path, &mnist).unwrap();
    std::fs::copy(&path, dir.path().join("train.parquet")).unwrap();
    let back = load(dir.path().to_str().unwrap(), Split::Test).unwrap();
    assert_eq!(back.features, mnist.features);
    assert_eq!(back.labels, mnist.labels);
    assert_eq!(back.classes, 10);
    assert_eq!(back.image, Some((28, 28)));
    // The same file given directly, with a class filter and a limit.
    let kept = Selection {
        data: path.to_str().unwrap().into(),
        split: Split::Train,
        limit: Some(100),
        classes: ClassFilter {
            only: Some(vec![7, 8]),
            exclude: vec![],
        },
    }
    .load()
    .unwrap();
    assert!(
        kept.labels
            .as_ref()
            .unwrap()
            .iter()
            .all(|&l| l == 7 || l == 8)
    );
    assert!(kept.index.iter().all(|&i| i < 100));
    // A file cut short.
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.parquet");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = load(cut.to_str().unwrap(), Split::Train)
        .unwrap_err()
        .to_string();
    assert!(e.contains("cut.parquet"), "{e}");
}
