//! Image folders end to end through the release binaries: a folder of colour PNGs trains and
//! evaluates, and a bad image stops the stage with exit 2, naming the file, with nothing written.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

fn distill(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_distill"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `photos/{train,test}/{red,green,blue}/NN.png`: 8x8 RGB images, mostly of their class's colour.
fn photo_folder(root: &Path) {
    for (split, n) in [("train", 12u8), ("test", 4)] {
        for (c, class) in ["red", "green", "blue"].iter().enumerate() {
            let folder = root.join("photos").join(split).join(class);
            std::fs::create_dir_all(&folder).unwrap();
            for i in 0..n {
                let img = image::RgbImage::from_fn(8, 8, |x, y| {
                    let mut px = [(x * 9 + y * 5 + i as u32 * 7) as u8 % 60; 3];
                    px[c] = 200 + (i % 50);
                    image::Rgb(px)
                });
                img.save(folder.join(format!("{i:02}.png"))).unwrap();
            }
        }
    }
}

#[test]
fn a_folder_of_colour_pngs_trains_and_evaluates() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    photo_folder(d);
    let out = distill(
        d,
        &[
            "train", "--data", "photos", "--hidden", "16", "--epochs", "1", "--out", "m.onnx",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(d.join("m.onnx").is_file());
    let out = distill(
        d,
        &[
            "eval",
            "--model",
            "m.onnx",
            "--data",
            "photos",
            "--split",
            "test",
            "--latency-runs",
            "0",
            "--out",
            "metrics.json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("metrics.json")).unwrap()).unwrap();
    let all = metrics.to_string();
    assert!(all.contains("photos"), "{all}");
    assert!(
        text(&out).contains("on 12 rows, the test split of photos"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_bad_image_stops_training_naming_the_file_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    photo_folder(d);
    std::fs::write(d.join("photos/train/green/03.png"), b"not a png").unwrap();
    let out = distill(
        d,
        &[
            "train", "--data", "photos", "--hidden", "16", "--epochs", "1", "--out", "m.onnx",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("green/03.png"), "{}", text(&out));
    let left: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("photos")]);
}

#[test]
fn a_parquet_label_of_two_to_the_31_is_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ds = distill_data::Dataset {
        name: "t".into(),
        features: ndarray::Array2::zeros((2, 3)),
        labels: Some(vec![2147483647, 0]),
        index: vec![0, 1],
        classes: 2147483648,
        image: None,
    };
    distill_data::parquet::write_dataset(&d.join("huge.parquet"), &ds).unwrap();
    let out = distill(
        d,
        &[
            "train",
            "--data",
            "huge.parquet",
            "--hidden",
            "4",
            "--epochs",
            "1",
            "--out",
            "m.onnx",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("huge.parquet") && t.contains("2147483648"),
        "{t}"
    );
    assert!(!d.join("m.onnx").exists());
}

#[test]
fn a_store_made_from_an_image_folder_names_its_classes_by_folder() {
    let dir = tempfile::tempdir().unwrap();
    photo_folder(dir.path());
    let photos = dir.path().join("photos");
    let names = ["blue", "green", "red"].map(String::from).to_vec();
    for dataset in [
        format!("{}:train", photos.display()),
        format!("images:{}:test", photos.display()),
        format!("images:{},size=8x8:train", photos.display()),
    ] {
        assert_eq!(
            distill_cluster::class_names(&dataset),
            Some(names.clone()),
            "{dataset}"
        );
    }
}

#[test]
fn a_tiny_cnn_with_normalize_and_flip_trains_on_colour_pngs_and_evaluates_on_raw_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    photo_folder(d);
    let out = distill(
        d,
        &[
            "train",
            "--data",
            "photos",
            "--arch",
            "conv:4:3:p1,relu,maxpool:2,flatten,fc",
            "--normalize",
            "mean=0.5:0.4:0.3,std=0.25:0.3:0.35",
            "--flip",
            "--epochs",
            "8",
            "--batch",
            "8",
            "--validation",
            "0",
            "--out",
            "cnn.onnx",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("raw rows"), "{}", text(&out));
    let out = distill(
        d,
        &[
            "eval",
            "--model",
            "cnn.onnx",
            "--data",
            "photos",
            "--split",
            "test",
            "--latency-runs",
            "0",
            "--out",
            "metrics.json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("metrics.json")).unwrap()).unwrap();
    let eval_errors = metrics["entries"][0]["errors"].as_u64().unwrap() as usize;
    // distill-eval fed the file raw pixels; the engine, given the same pixels normalised here
    // by hand, counts the same errors.
    let test = distill_data::Selection {
        data: d.join("photos").display().to_string(),
        split: distill_data::Split::Test,
        limit: None,
        classes: Default::default(),
    }
    .load()
    .unwrap();
    let (mean, std) = ([0.5f32, 0.4, 0.3], [0.25f32, 0.3, 0.35]);
    let plane = 8 * 8;
    let mut x = test.features.clone();
    for mut row in x.rows_mut() {
        for (i, v) in row.iter_mut().enumerate() {
            *v = (*v - mean[i / plane]) / std[i / plane];
        }
    }
    let model = distill_nn::Model::load(&d.join("cnn.onnx")).unwrap().0;
    let logits = model.forward(x.view()).unwrap();
    let engine_errors = logits
        .rows()
        .into_iter()
        .zip(test.labels.as_ref().unwrap())
        .filter(|(l, y)| {
            let best = (0..l.len()).fold(0, |b, k| if l[k] > l[b] { k } else { b });
            best != **y as usize
        })
        .count();
    assert_eq!(eval_errors, engine_errors, "{metrics}");
    assert!(
        eval_errors < 4,
        "{eval_errors} of 12 test images wrong: not learning"
    );
}
