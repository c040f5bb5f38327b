//! `Net` export: ONNX Runtime computes what `Net::forward` computes (to 1e-4), preprocessing
//! included; loading gives back the same weights; a folded net exports its head.

#![allow(clippy::unwrap_used)]

use distill_core::rng::Rng;
use distill_nn::onnx::{self, Preprocess};
use distill_nn::{Arch, DistillLoss, Net, NetWorkspace, Optimizer, OptimizerConfig, Shape};
use distill_runtime::{ModelSpec, OnnxModel, Provider};
use ndarray::Array2;
use std::path::Path;

fn run(path: &Path, x: ndarray::ArrayView2<f32>) -> Array2<f32> {
    OnnxModel::load(&ModelSpec::new(path), Provider::Cpu, 1)
        .unwrap()
        .run(x)
        .unwrap()
}

/// `a` within 1e-4 of `b`, relative to the largest magnitude in `b` (max-abs difference over
/// max-abs reference).
fn assert_close(a: &Array2<f32>, b: &Array2<f32>, what: &str) {
    assert_eq!(a.dim(), b.dim(), "{what}");
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
    let diff = a
        .iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(
        diff <= 1e-4 * scale,
        "{what}: max difference {diff}, scale {scale}"
    );
}

/// A CNN with every exported op, trained a few steps so batch norm's running statistics are not
/// the defaults.
fn trained_net() -> Net {
    let arch: Arch = "conv:4:3:p1,bn,relu,maxpool:2,conv:6:3:s2:p1,relu,avgpool:2:s1,conv:5:1,gap,flatten,fc:8,relu,dropout:0.5,fc"
        .parse()
        .unwrap();
    let mut net = Net::new(arch, Shape::Image { c: 2, h: 10, w: 10 }, 4, 3).unwrap();
    net.max_norm = Some(2.0);
    let mut rng = Rng::new(5);
    let x = Array2::from_shape_simple_fn((16, 200), || rng.normal());
    let y: Vec<u32> = (0..16).map(|i| (i % 4) as u32).collect();
    let mut opt = Optimizer::new(OptimizerConfig::sgd(0.05, 0.9), &net.shapes());
    let mut ws = NetWorkspace::default();
    for step in 0..3 {
        net.train_step(
            x.view(),
            None,
            Some(&y),
            &DistillLoss::hard(),
            &mut opt,
            0,
            step,
            &mut ws,
        )
        .unwrap();
    }
    net
}

#[test]
fn onnx_runtime_matches_forward_and_load_gives_the_same_net() {
    let net = trained_net();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cnn.onnx");
    onnx::save_net(&net, &path, &[("k".into(), "v".into())], None).unwrap();
    let mut rng = Rng::new(9);
    let x = Array2::from_shape_simple_fn((7, 200), || rng.normal());
    assert_close(
        &run(&path, x.view()),
        &net.forward(x.view()).unwrap(),
        "plain",
    );
    let back = onnx::load_net(&path).unwrap();
    assert_eq!(back.net, net);
    assert_eq!(back.metadata["k"], "v");
    assert_eq!(back.metadata[onnx::net::ARCH_KEY], net.arch().to_string());
}

/// With preprocessing baked in, the model on raw values equals the net on preprocessed ones.
#[test]
fn preprocessing_is_baked_into_the_graph() {
    let net = trained_net();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pre.onnx");
    let (mean, std) = ([0.4f32, 0.6], [0.2f32, 0.3]);
    let pre = Preprocess {
        scale: 1.0 / 255.0,
        mean: &mean,
        std: &std,
    };
    onnx::save_net(&net, &path, &[], Some(pre)).unwrap();
    let mut rng = Rng::new(2);
    let raw = Array2::from_shape_simple_fn((5, 200), || (rng.uniform() * 255.0).floor());
    let pre_x = Array2::from_shape_fn((5, 200), |(r, k)| {
        let c = k / 100;
        (raw[[r, k]] / 255.0 - mean[c]) / std[c]
    });
    assert_close(
        &run(&path, raw.view()),
        &net.forward(pre_x.view()).unwrap(),
        "preprocessed",
    );
    let back = onnx::load_net(&path).unwrap();
    assert_eq!(back.net, net);
    assert_eq!(
        back.metadata[onnx::net::PREPROCESS_KEY],
        r#"{"scale":0.003921569,"mean":[0.4,0.6],"std":[0.2,0.3]}"#
    );
    for bad in [&[0.2f32, 0.3, 0.4][..], &[0.0, 1.0][..]] {
        let e = onnx::save_net(
            &net,
            &path,
            &[],
            Some(Preprocess {
                scale: 1.0,
                mean: &mean,
                std: bad,
            }),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("preprocessing std"), "{e}");
    }
}

/// A folded net exports its head: ONNX Runtime gives the fold of the full logits, and it loads
/// back folded.
#[test]
fn a_folded_net_exports_and_loads_its_head() {
    let net = trained_net().folded(&[0, 2]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("folded.onnx");
    onnx::save_net(&net, &path, &[], None).unwrap();
    let mut rng = Rng::new(4);
    let x = Array2::from_shape_simple_fn((6, 200), || rng.normal());
    let out = run(&path, x.view());
    assert_eq!(out.ncols(), 3);
    assert_close(&out, &net.forward(x.view()).unwrap(), "folded");
    let back = onnx::load_net(&path).unwrap();
    assert_eq!(back.net, net);
}

/// A flat-input net (the MLP shorthand) exports without a Reshape and runs the same.
#[test]
fn a_flat_net_exports_and_loads() {
    let net = Net::new(Arch::mlp(&[7], 0.2), Shape::Flat(12), 3, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flat.onnx");
    onnx::save_net(&net, &path, &[], None).unwrap();
    let mut rng = Rng::new(4);
    let x = Array2::from_shape_simple_fn((6, 12), || rng.normal());
    assert_close(
        &run(&path, x.view()),
        &net.forward(x.view()).unwrap(),
        "flat",
    );
    assert_eq!(onnx::load_net(&path).unwrap().net, net);
}

#[test]
fn loading_something_else_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mlp.onnx");
    let mlp = distill_nn::Mlp::new(
        distill_nn::MlpConfig {
            sizes: vec![4, 3, 2],
            input_dropout: 0.0,
            hidden_dropout: 0.0,
            max_norm: None,
        },
        1,
    )
    .unwrap();
    onnx::save(&mlp, &path, &[]).unwrap();
    let e = onnx::load_net(&path).err().unwrap().to_string();
    assert!(
        e.contains("mlp.onnx") && e.contains("no 'distill.arch'") && e.contains("onnx::load"),
        "{e}"
    );
}
