//! Image folders and NumPy arrays, made small in a temporary folder: what loads, with which
//! shape, labels, class names and values, and every bad file refused by name.
#![allow(clippy::unwrap_used)]

use distill_data::{DataSource, ImageShape, Split, parquet};
use std::path::Path;

/// The colour of pixel `(y, x)` of image `i` of class `c`: every value distinct enough to check
/// the channel-major layout.
fn rgb(c: u8, i: u8, y: u32, x: u32) -> [u8; 3] {
    [c * 80, i * 20 + y as u8, 10 * x as u8]
}

/// `n` RGB `size`x`size` PNGs in `dir/class`.
fn pngs(dir: &Path, class: &str, c: u8, n: u8, size: u32) {
    let folder = dir.join(class);
    std::fs::create_dir_all(&folder).unwrap();
    for i in 0..n {
        let img = image::RgbImage::from_fn(size, size, |x, y| image::Rgb(rgb(c, i, y, x)));
        img.save(folder.join(format!("{i:02}.png"))).unwrap();
    }
}

/// A data set of 3 classes in `train/` (2 images each) and `test/` (1 each), 8x8 RGB.
fn colour_folder(root: &Path) {
    for (c, class) in ["cat", "dog", "ant"].iter().enumerate() {
        pngs(&root.join("train"), class, c as u8, 2, 8);
        pngs(&root.join("test"), class, c as u8, 1, 8);
    }
}

fn load(arg: &str, split: Split) -> distill_core::Result<distill_data::Dataset> {
    DataSource::parse(arg)?.load(split)
}

#[test]
fn a_folder_of_colour_pngs_loads_with_its_shape_labels_class_names_and_values() {
    let dir = tempfile::tempdir().unwrap();
    colour_folder(dir.path());
    let arg = dir.path().to_str().unwrap();
    let source = DataSource::parse(arg).unwrap();
    assert!(matches!(source, DataSource::Images(_)));
    assert_eq!(source.single_file(), None);
    assert_eq!(
        source.class_names().unwrap(),
        vec!["ant".to_string(), "cat".into(), "dog".into()]
    );
    let train = source.load(Split::Train).unwrap();
    assert_eq!(train.image, Some(ImageShape::new(3, 8, 8)));
    assert_eq!((train.len(), train.width(), train.classes), (6, 192, 3));
    // Sorted class folders (ant, cat, dog), then sorted files.
    assert_eq!(train.labels.as_deref().unwrap(), &[0, 0, 1, 1, 2, 2]);
    // Row 3 is cat (c = 0) image 01: pixel (y=2, x=5) of channel k at k*64 + 2*8 + 5.
    let expected = rgb(0, 1, 2, 5);
    for (k, v) in expected.iter().enumerate() {
        let got = train.features[[3, k * 64 + 2 * 8 + 5]];
        assert!((got - *v as f32 / 255.0).abs() < 1e-6, "channel {k}: {got}");
    }
    let test = source.load(Split::Test).unwrap();
    assert_eq!(test.labels.as_deref().unwrap(), &[0, 1, 2]);
    // The canonical description reads the same folder back.
    let again = DataSource::parse(&source.describe()).unwrap();
    assert_eq!(again.load(Split::Test).unwrap().features, test.features);
}

#[test]
fn one_folder_without_splits_is_one_set_and_resizes_on_request() {
    let dir = tempfile::tempdir().unwrap();
    pngs(dir.path(), "a", 0, 2, 8);
    pngs(dir.path(), "b", 1, 1, 6);
    let arg = dir.path().to_str().unwrap();
    let e = load(arg, Split::Train).unwrap_err();
    let m = e.to_string();
    assert!(e.is_user_error());
    assert!(
        m.contains("00.png") && m.contains("6x6") && m.contains("8x8") && m.contains("size=HxW"),
        "{m}"
    );
    let resized = load(&format!("images:{arg},size=4x5"), Split::Test).unwrap();
    assert_eq!(resized.image, Some(ImageShape::new(3, 4, 5)));
    assert_eq!(resized.len(), 3);
    assert!(resized.features.iter().all(|v| (0.0..=1.0).contains(v)));
    // A constant image stays that constant through the bilinear resize.
    let flat = tempfile::tempdir().unwrap();
    std::fs::create_dir(flat.path().join("k")).unwrap();
    image::GrayImage::from_pixel(7, 7, image::Luma([51]))
        .save(flat.path().join("k/a.png"))
        .unwrap();
    let g = load(
        &format!("images:{},size=3x3", flat.path().display()),
        Split::Train,
    )
    .unwrap();
    assert_eq!(g.image, Some(ImageShape::gray(3, 3)));
    assert!(
        g.features.iter().all(|v| (v - 0.2).abs() < 1e-6),
        "{}",
        g.features
    );
    let src = DataSource::parse(arg).unwrap();
    assert_eq!(src.single_file(), Some(dir.path()));
}

/// `arg` fails to load (or parse) with a user error whose message holds every needle.
fn refused(arg: &str, needles: &[&str]) {
    let e = match DataSource::parse(arg) {
        Ok(s) => s.load(Split::Train).unwrap_err(),
        Err(e) => e,
    };
    assert!(e.is_user_error(), "{e}");
    let m = e.to_string();
    for n in needles {
        assert!(m.contains(n), "'{n}' not in: {m}");
    }
}

#[test]
fn bad_images_are_refused_naming_the_file() {
    let base = tempfile::tempdir().unwrap();
    let case = |name: &str| {
        let d = base.path().join(name);
        colour_folder(&d);
        d
    };
    let corrupt = case("corrupt");
    std::fs::write(
        corrupt.join("train/cat/01.png"),
        b"\x89PNG\r\n\x1a\nnot really",
    )
    .unwrap();
    refused(
        corrupt.to_str().unwrap(),
        &["cat/01.png", "cannot read this image"],
    );

    let grey = case("grey");
    image::GrayImage::new(8, 8)
        .save(grey.join("train/dog/01.png"))
        .unwrap();
    refused(
        grey.to_str().unwrap(),
        &["dog/01.png", "1 channel", "ant/00.png", "3"],
    );

    let asked = case("asked");
    refused(
        &format!("images:{},channels=1", asked.display()),
        &["ant/00.png", "3 channel", "channels= asks for 1"],
    );

    let empty = case("empty");
    std::fs::create_dir(empty.join("train/bee")).unwrap();
    refused(
        empty.to_str().unwrap(),
        &["train/bee", "class folder is empty"],
    );

    let text = case("text");
    std::fs::write(text.join("train/cat/notes.txt"), "hello").unwrap();
    refused(
        text.to_str().unwrap(),
        &["cat/notes.txt", ".png, .jpg, .jpeg"],
    );

    let nothing = base.path().join("nothing");
    std::fs::create_dir_all(nothing.join("train")).unwrap();
    refused(
        nothing.to_str().unwrap(),
        &["nothing/train", "no class folders"],
    );
    let bare = base.path().join("bare");
    std::fs::create_dir(&bare).unwrap();
    refused(bare.to_str().unwrap(), &["bare", "class folders of images"]);
    refused(
        &format!("images:{}", bare.display()),
        &["bare", "no class folders"],
    );

    let stranger = case("stranger");
    pngs(&stranger.join("test"), "eel", 0, 1, 8);
    let e = DataSource::parse(&format!("images:{}", stranger.display()))
        .unwrap()
        .load(Split::Test)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("test/eel") && e.contains("not among the training classes"),
        "{e}"
    );

    refused(
        &format!("images:{},size=2x2,size=3x3", bare.display()),
        &["size is given twice"],
    );
    refused(
        &format!("images:{},channels=2", bare.display()),
        &["channels=2", "1 (grey) or 3"],
    );
}

#[test]
fn jpeg_images_load_like_pngs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("only")).unwrap();
    image::RgbImage::from_pixel(4, 4, image::Rgb([200, 100, 50]))
        .save(dir.path().join("only/a.JPG"))
        .unwrap();
    let ds = load(dir.path().to_str().unwrap(), Split::Train).unwrap();
    assert_eq!(ds.image, Some(ImageShape::new(3, 4, 4)));
    // JPEG is lossy: a flat colour comes back within a few levels.
    for (k, v) in [200.0f32, 100.0, 50.0].iter().enumerate() {
        let got = ds.features[[0, k * 16]] * 255.0;
        assert!((got - v).abs() < 4.0, "channel {k}: {got}");
    }
}

/// The bytes of a version-1 `.npy` file of `descr`, `shape` and little-endian `data`.
fn npy_bytes(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims = shape.iter().map(|d| format!("{d}, ")).collect::<String>();
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({dims}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn i64s(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn a_npy_with_its_labels_beside_it_loads() {
    let dir = tempfile::tempdir().unwrap();
    let x: Vec<f32> = (0..2 * 3 * 4).map(|i| i as f32 / 24.0).collect();
    std::fs::write(
        dir.path().join("x_train.npy"),
        npy_bytes("<f4", &[2, 3, 4], &f32s(&x)),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("y_train.npy"),
        npy_bytes("<i8", &[2], &i64s(&[1, 4])),
    )
    .unwrap();
    let arg = dir.path().join("x_train.npy");
    let source = DataSource::parse(arg.to_str().unwrap()).unwrap();
    assert_eq!(source.single_file(), Some(arg.as_path()));
    let ds = source.load(Split::Test).unwrap();
    assert_eq!(ds.image, Some(ImageShape::gray(3, 4)));
    assert_eq!(ds.features.as_slice().unwrap(), x.as_slice());
    assert_eq!(
        (ds.labels.as_deref().unwrap(), ds.classes),
        (&[1u32, 4][..], 5)
    );
    // Labels named explicitly, and a bad label file named.
    std::fs::write(
        dir.path().join("labels.npy"),
        npy_bytes("<f8", &[2], &[0u8; 16]),
    )
    .unwrap();
    let e = load(
        &format!(
            "npy:{},y={}",
            arg.display(),
            dir.path().join("labels.npy").display()
        ),
        Split::Train,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("labels") && e.contains("floats") && e.contains("<f8"),
        "{e}"
    );
    // A header that declares more than the file holds is refused before allocating.
    std::fs::write(
        dir.path().join("big.npy"),
        npy_bytes("<f4", &[1 << 30, 1 << 20], &[0u8; 8]),
    )
    .unwrap();
    let e = load(dir.path().join("big.npy").to_str().unwrap(), Split::Train)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("big.npy") && e.contains("only 8 bytes follow"),
        "{e}"
    );
}

#[test]
fn a_npz_with_train_and_test_arrays_loads_nhwc_uint8() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.npz");
    // x_train: 2 images 2x2 with 3 channels, NHWC, uint8: value = 10 * (pixel * 3 + channel).
    let x: Vec<u8> = (0..2 * 2 * 2 * 3).map(|i| (i * 10 % 250) as u8).collect();
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in [
        ("x_train.npy", npy_bytes("|u1", &[2, 2, 2, 3], &x)),
        ("y_train.npy", npy_bytes("|u1", &[2], &[0, 1])),
        ("x_test.npy", npy_bytes("|u1", &[1, 2, 2, 3], &x[..12])),
        ("y_test.npy", npy_bytes("|u1", &[1], &[1])),
    ] {
        zip.start_file(name, opts).unwrap();
        zip.write_all(&bytes).unwrap();
    }
    zip.finish().unwrap();
    let source = DataSource::parse(path.to_str().unwrap()).unwrap();
    assert_eq!(source.single_file(), None);
    let train = source.load(Split::Train).unwrap();
    assert_eq!(train.image, Some(ImageShape::new(3, 2, 2)));
    assert_eq!(train.labels.as_deref().unwrap(), &[0, 1]);
    // Channel-major: row 0, channel 1, pixel 2 is NHWC element (pixel 2, channel 1) = x[2*3+1].
    assert!((train.features[[0, 4 + 2]] - x[7] as f32 / 255.0).abs() < 1e-7);
    let test = source.load(Split::Test).unwrap();
    assert_eq!(
        (test.len(), test.labels.as_deref().unwrap()),
        (1, &[1u32][..])
    );
    // Without layout=, a shape whose second and last dimensions are both 1 or 3 is ambiguous.
    let amb = dir.path().join("amb.npy");
    std::fs::write(&amb, npy_bytes("|u1", &[1, 3, 2, 3], &[0u8; 18])).unwrap();
    let e = load(amb.to_str().unwrap(), Split::Train)
        .unwrap_err()
        .to_string();
    assert!(e.contains("amb.npy") && e.contains("layout=nchw"), "{e}");
    let nchw = load(&format!("npy:{},layout=nchw", amb.display()), Split::Train).unwrap();
    assert_eq!(nchw.image, Some(ImageShape::new(3, 2, 3)));
}

#[test]
fn csv_and_out_of_range_labels_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("data.csv");
    std::fs::write(&csv, "a,b\n1,2\n").unwrap();
    let e = DataSource::parse(csv.to_str().unwrap()).unwrap_err();
    assert!(e.is_user_error());
    let m = e.to_string();
    assert!(
        m.contains("data.csv") && m.contains(".npy") && m.contains("images:"),
        "{m}"
    );
    // A label of 2^31 - 1 would make a data set of 2^31 classes.
    let ds = distill_data::Dataset {
        name: "t".into(),
        features: ndarray::Array2::zeros((2, 3)),
        labels: Some(vec![2147483647, 0]),
        index: vec![0, 1],
        classes: 3,
        image: None,
    };
    let path = dir.path().join("huge-label.parquet");
    let batch_path = dir.path().join("plain.parquet");
    parquet::write_dataset(&batch_path, &ds).unwrap();
    // Rewrite without the 'classes' metadata, as a file from pandas would be.
    let reader = ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&batch_path).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap();
    let batch = reader.into_iter().next().unwrap().unwrap();
    parquet::write_batch(&path, &batch, vec![]).unwrap();
    let e = parquet::read_dataset(&path).unwrap_err();
    assert!(e.is_user_error());
    let m = e.to_string();
    assert!(
        m.contains("huge-label.parquet") && m.contains("label 2147483647 in row 0"),
        "{m}"
    );
    let e = parquet::read_dataset(&batch_path).unwrap_err().to_string();
    assert!(
        e.contains("not below the 3 classes the file declares"),
        "{e}"
    );
}
