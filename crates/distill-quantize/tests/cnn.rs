//! The `distill-quantize` binary on a small CNN (with a batch norm after its first convolution
//! and MNIST's normalisation baked into the graph) trained here on 300 MNIST rows: each method's
//! output runs in ONNX Runtime and keeps the float model's class; the batch-norm folding is
//! exact to 1e-5 in ONNX Runtime; bad input exits 2 and writes nothing.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::*;

use distill_core::math::argmax_rows;
use distill_core::onnx_proto::{DATA_FLOAT16, DATA_INT8, DATA_UINT8};
use distill_data::Split;
use distill_nn::onnx::{self, Preprocess};
use distill_nn::{Arch, DistillLoss, Net, NetWorkspace, Optimizer, OptimizerConfig, Shape};
use distill_quantize::cnn;
use ndarray::{Array2, s};

const MEAN: [f32; 1] = [0.1307];
const STD: [f32; 1] = [0.3081];

fn preprocess() -> Preprocess<'static> {
    Preprocess {
        scale: 1.0,
        mean: &MEAN,
        std: &STD,
    }
}

/// A small CNN trained for 60 steps of 50 rows on the first 300 MNIST training rows (its inputs
/// normalised as the saved graph does).
fn trained(arch: &str) -> Net {
    let train = mnist(Split::Train, 300);
    let x = train.features.mapv(|v| (v - MEAN[0]) / STD[0]);
    let labels = train.labels.as_ref().unwrap();
    let arch: Arch = arch.parse().unwrap();
    let mut net = Net::new(arch, Shape::Image { c: 1, h: 28, w: 28 }, 10, 7).unwrap();
    let mut opt = Optimizer::new(OptimizerConfig::sgd(0.05, 0.9), &net.shapes());
    let mut ws = NetWorkspace::default();
    for step in 0..60 {
        let r = (step % 6) * 50;
        net.train_step(
            x.slice(s![r..r + 50, ..]),
            None,
            Some(&labels[r..r + 50]),
            &DistillLoss::hard(),
            &mut opt,
            step / 6,
            step as u64,
            &mut ws,
        )
        .unwrap();
    }
    net
}

const ARCH: &str = "conv:8:3:p1,bn,relu,maxpool:2,conv:16:3,relu,maxpool:2,flatten,fc:32,relu,fc";

/// The binary on the first 300 rows.
fn quantize(dir: &Path, args: &[&str]) -> Outcome {
    common::quantize(dir, &[&["--limit", "300"], args].concat())
}

fn max_abs(a: &Array2<f32>) -> f32 {
    a.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

/// Every method writes a model ONNX Runtime runs, with the expected graph, keeping the float
/// model's class on the 256 check rows and on 500 held-out test rows.
#[test]
fn every_method_quantises_a_cnn() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let net = trained(ARCH);
    let float = d.join("cnn.onnx");
    onnx::save_net(&net, &float, &[], Some(preprocess())).unwrap();
    let test = mnist(Split::Test, 500);
    let reference = run(&float, test.features.view());
    let float_classes = argmax_rows(reference.view());
    let float_bytes = std::fs::metadata(&float).unwrap().len() as f64;
    for method in ["static", "dynamic", "fp16"] {
        let out = format!("cnn.{method}.onnx");
        let o = quantize(
            d,
            &["--model", "cnn.onnx", "--method", method, "--out", &out],
        );
        assert_eq!(o.code, 0, "{method}: {}", o.stderr);
        assert!(o.stdout.contains("argmax agreement"), "{}", o.stdout);
        let path = d.join(&out);
        let model = read_model(&path);
        let ops = ops(&model);
        let inits = &model.graph.as_ref().unwrap().initializer;
        let meta = |k: &str| {
            model
                .metadata_props
                .iter()
                .find(|p| p.key == k)
                .map(|p| p.value.clone())
        };
        assert_eq!(
            meta("distill.quantize.folded_batchnorm").as_deref(),
            Some("1")
        );
        assert_eq!(count(&ops, "BatchNormalization"), 0, "{method}: {ops:?}");
        assert_eq!(count(&ops, "Div"), 1, "{method}: preprocessing kept");
        let bytes = std::fs::metadata(&path).unwrap().len() as f64;
        let q = run(&path, test.features.view());
        let diff = distill_quantize::max_abs_diff(q.view(), reference.view());
        let agree = argmax_rows(q.view())
            .iter()
            .zip(&float_classes)
            .filter(|(a, b)| a == b)
            .count();
        match method {
            "static" => {
                assert_eq!(count(&ops, "Conv"), 2);
                // The input of each of the 3 layers, and the outputs of the first 2
                // convolutions and the hidden fc layer; each hidden Relu is absorbed.
                assert_eq!(count(&ops, "QuantizeLinear"), 6, "{ops:?}");
                assert_eq!(count(&ops, "Relu"), 0, "{ops:?}");
                let int8 = inits.iter().filter(|t| t.data_type == DATA_INT8).count();
                assert!(int8 >= 4 + 6, "weights and zero points are int8");
                assert!(bytes < 0.35 * float_bytes, "{bytes} of {float_bytes}");
            }
            "dynamic" => {
                assert_eq!(count(&ops, "ConvInteger"), 2, "{ops:?}");
                assert_eq!(count(&ops, "MatMulInteger"), 2, "{ops:?}");
                assert_eq!(count(&ops, "Conv"), 0, "{ops:?}");
                assert!(inits.iter().any(|t| t.data_type == DATA_UINT8));
                assert!(bytes < 0.35 * float_bytes, "{bytes} of {float_bytes}");
            }
            _ => {
                assert!(inits.iter().any(|t| t.data_type == DATA_FLOAT16));
                assert!((0.45..0.6).contains(&(bytes / float_bytes)), "{bytes}");
                // float16 weights change logits by about 1e-3 of their size.
                assert!(diff <= 5e-3 * max_abs(&reference), "fp16: {diff}");
            }
        }
        // int8 rounding on a 300-row net: a few logits' worth of 1/255 steps.
        assert!(
            diff <= 0.1 * max_abs(&reference),
            "{method}: max |Δlogit| {diff}"
        );
        assert!(
            agree >= 495,
            "{method}: {agree}/500 rows keep the float class"
        );
    }
}

/// Folding the batch norm into the convolution gives the same logits in ONNX Runtime, to 1e-5 of
/// the largest logit; the folded net has no batch norm left.
#[test]
fn batchnorm_folds_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let net = trained("conv:6:3:p1,bn,relu,conv:4:3:s2,bn,maxpool:2,bn,flatten,fc");
    let (folded, count) = cnn::fold_batchnorm(&net).unwrap();
    assert_eq!(count, 2, "the bn after maxpool stays");
    assert_eq!(folded.arch().to_string().matches("bn").count(), 1);
    let (a, b) = (dir.path().join("a.onnx"), dir.path().join("b.onnx"));
    onnx::save_net(&net, &a, &[], Some(preprocess())).unwrap();
    onnx::save_net(&folded, &b, &[], Some(preprocess())).unwrap();
    let x = mnist(Split::Test, 200).features;
    let (ya, yb) = (run(&a, x.view()), run(&b, x.view()));
    let diff = distill_quantize::max_abs_diff(ya.view(), yb.view());
    assert!(diff <= 1e-5 * max_abs(&ya), "{diff} of {}", max_abs(&ya));
    // Batch norm with non-trivial statistics did something.
    let plain = trained("conv:6:3:p1,relu,conv:4:3:s2,maxpool:2,flatten,fc");
    assert_ne!(
        plain.forward(x.view()).unwrap(),
        net.forward(x.view()).unwrap()
    );
    // The static variant of this net (a float batch norm between a pool and the fc) runs too.
    std::fs::copy(&a, dir.path().join("bn.onnx")).unwrap();
    let o = quantize(dir.path(), &["--model", "bn.onnx", "--out", "bn.int8.onnx"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let ops = ops(&read_model(&dir.path().join("bn.int8.onnx")));
    assert_eq!(self::count(&ops, "BatchNormalization"), 1, "{ops:?}");
}

/// Bad input for a CNN exits 2 and writes nothing.
#[test]
fn bad_cnn_input_exits_2_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let net = trained(ARCH);
    onnx::save_net(&net, &d.join("cnn.onnx"), &[], Some(preprocess())).unwrap();
    let small: Arch = "conv:2:3,relu,flatten,fc".parse().unwrap();
    let small = Net::new(small, Shape::Image { c: 1, h: 10, w: 10 }, 10, 1).unwrap();
    onnx::save_net(&small, &d.join("small.onnx"), &[], None).unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--model", "small.onnx", "--out", "q.onnx"],
            "rows of 784 features, but --model small.onnx reads 100",
        ),
        (
            vec![
                "--model",
                "cnn.onnx",
                "--calibration-rows",
                "0",
                "--out",
                "q.onnx",
            ],
            "--calibration-rows",
        ),
        (
            vec!["--model", "cnn.onnx", "--out", "cnn.onnx"],
            "this is also the input --model",
        ),
    ];
    assert_each_exits_2(d, cases, quantize);
}
