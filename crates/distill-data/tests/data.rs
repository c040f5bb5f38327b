//! The data layer on real and damaged files: MNIST as committed, copies of it cut short, corrupted
//! or mismatched, and the generic Parquet layout.
#![allow(clippy::unwrap_used)]

use distill_data::{ClassFilter, DataSource, Dataset, ImageShape, Selection, Split, parquet};
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
    assert_eq!(train.image, Some(ImageShape::gray(28, 28)));
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
    assert_eq!(back.image, Some(ImageShape::gray(28, 28)));
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

fn toy(rows: usize, image: Option<ImageShape>, width: usize) -> Dataset {
    Dataset {
        name: "toy".into(),
        features: ndarray::Array2::from_shape_fn((rows, width), |(r, i)| {
            ((r * width + i) % 7) as f32 / 7.0
        }),
        labels: Some((0..rows as u32).map(|r| r % 3).collect()),
        index: (0..rows as u64).collect(),
        classes: 3,
        image,
    }
}

/// Writes `ds` with `image_shape` metadata `shape` (whatever its spelling).
fn write_with_shape(path: &Path, ds: &Dataset, shape: &str) {
    parquet::write_dataset(
        path,
        &Dataset {
            image: None,
            ..ds.clone()
        },
    )
    .unwrap();
    let reader = ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(path).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap();
    let batch = reader.into_iter().next().unwrap().unwrap();
    let kv = vec![
        ::parquet::file::metadata::KeyValue::new("classes".to_string(), "3".to_string()),
        ::parquet::file::metadata::KeyValue::new("image_shape".to_string(), shape.to_string()),
    ];
    parquet::write_batch(path, &batch, kv).unwrap();
}

#[test]
fn parquet_image_shape_is_c_h_w_or_h_w_and_one_channel_is_written_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("colour.parquet");
    let colour = toy(4, Some(ImageShape::new(3, 2, 2)), 12);
    parquet::write_dataset(&path, &colour).unwrap();
    assert_eq!(parquet::key_values(&path).unwrap()["image_shape"], "3,2,2");
    let back = parquet::read_dataset(&path).unwrap();
    assert_eq!(back.image, colour.image);
    assert_eq!(back.features, colour.features);

    let gray = toy(4, Some(ImageShape::gray(2, 3)), 6);
    parquet::write_dataset(&path, &gray).unwrap();
    assert_eq!(parquet::key_values(&path).unwrap()["image_shape"], "2,3");

    // `1,2,3` (C,H,W with one channel) was refused; it is the same shape as `2,3`.
    write_with_shape(&path, &gray, "1,2,3");
    assert_eq!(
        parquet::read_dataset(&path).unwrap().image,
        Some(ImageShape::gray(2, 3))
    );
    write_with_shape(&path, &gray, "2,2,2");
    let e = parquet::read_dataset(&path).unwrap_err().to_string();
    assert!(
        e.contains("colour.parquet") && e.contains("8 values per row") && e.contains("has 6"),
        "{e}"
    );
}
