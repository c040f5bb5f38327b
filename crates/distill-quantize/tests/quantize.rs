//! The `distill-quantize` binary on a small MLP trained here on MNIST rows: each method's output
//! runs in ONNX Runtime and keeps the float model's class on at least 99 % of held-out rows; the
//! static scales, zero points and integer weights equal ONNX Runtime's own quantiser's; bad input
//! exits 2 and writes nothing.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::*;

use distill_core::math::argmax_rows;
use distill_data::Split;
use distill_nn::linear::Linear;
use distill_nn::optim::{Optimizer, OptimizerConfig, Schedule};
use distill_nn::{DistillLoss, Mlp, MlpConfig, Workspace, onnx};
use distill_quantize::calibrate::{Calibration, ranges};
use distill_quantize::graph::StaticParams;
use ndarray::{Array1, Array2, s};

/// A 784-64-32-10 MLP trained for a few hundred steps on 2,048 training rows.
fn trained() -> Mlp {
    let train = mnist(Split::Train, 2048);
    let mut mlp = Mlp::new(
        MlpConfig {
            sizes: vec![784, 64, 32, 10],
            input_dropout: 0.0,
            hidden_dropout: 0.0,
            max_norm: None,
        },
        3,
    )
    .unwrap();
    let mut opt = Optimizer::new(
        OptimizerConfig::Sgd {
            lr: 0.05,
            momentum: 0.9,
            momentum_start: 0.5,
            momentum_ramp: 2,
            schedule: Schedule::Constant,
        },
        &mlp.shapes(),
    );
    let labels = train.labels.as_ref().unwrap();
    let mut ws = Workspace::default();
    for step in 0..160 {
        let r = (step % 16) * 128;
        mlp.train_step(
            train.features.slice(s![r..r + 128, ..]),
            None,
            Some(&labels[r..r + 128]),
            &DistillLoss::hard(),
            &mut opt,
            step / 16,
            step as u64,
            &mut ws,
        )
        .unwrap();
    }
    mlp
}

/// Fraction of `rows` on which the two models' argmax agree.
fn agreement(a: &Path, b: &Path, rows: ndarray::ArrayView2<f32>) -> f64 {
    let (x, y) = (
        argmax_rows(run(a, rows).view()),
        argmax_rows(run(b, rows).view()),
    );
    x.iter().zip(&y).filter(|(p, q)| p == q).count() as f64 / x.len() as f64
}

#[test]
fn every_method_runs_in_onnx_runtime_and_agrees_with_float() {
    let dir = tempfile::tempdir().unwrap();
    let mlp = trained();
    let float = dir.path().join("student.onnx");
    onnx::save(&mlp, &float, &[("distill.note".into(), "kept".into())]).unwrap();
    let test = mnist(Split::Test, 1000);
    for (method, extra) in [
        ("static", &["--calibration", "percentile"][..]),
        ("static", &["--calibration", "minmax"][..]),
        ("dynamic", &[][..]),
        ("fp16", &[][..]),
    ] {
        let out = dir.path().join(format!("{method}-{}.onnx", extra.len()));
        let mut args = vec![
            "--model",
            "student.onnx",
            "--method",
            method,
            "--limit",
            "2000",
            "--calibration-rows",
            "512",
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ];
        args.extend_from_slice(extra);
        let o = quantize(dir.path(), &args);
        assert_eq!(o.code, 0, "{method} {extra:?}: {}", o.stderr);
        assert!(o.stdout.contains("argmax agreement"), "{}", o.stdout);
        let a = agreement(&float, &out, test.features.view());
        assert!(a >= 0.99, "{method} {extra:?}: agreement {a}");

        let model = read_model(&out);
        let meta: std::collections::HashMap<_, _> = model
            .metadata_props
            .iter()
            .map(|p| (p.key.as_str(), p.value.as_str()))
            .collect();
        assert_eq!(meta["distill.note"], "kept");
        assert_eq!(
            meta["distill.quantize.source_sha256"],
            distill_core::sha256_file(&float).unwrap()
        );
        let ops = ops(&model);
        let bytes = std::fs::metadata(&out).unwrap().len() as f64;
        let float_bytes = std::fs::metadata(&float).unwrap().len() as f64;
        match method {
            "static" => {
                assert_eq!(meta["distill.quantize.method"], "static-int8");
                assert_eq!(meta["distill.quantize.calibration_rows"], "512");
                // input + 2 hidden activations quantised; the Relus absorbed; 3 weights, 3 biases.
                assert_eq!(count(&ops, "QuantizeLinear"), 3);
                assert_eq!(count(&ops, "DequantizeLinear"), 9);
                assert_eq!(count(&ops, "Gemm"), 3);
                assert_eq!(count(&ops, "Relu"), 0);
                assert!(bytes <= 0.3 * float_bytes, "{bytes} of {float_bytes}");
            }
            "dynamic" => {
                assert_eq!(count(&ops, "MatMulInteger"), 3);
                assert_eq!(count(&ops, "DynamicQuantizeLinear"), 3);
                assert!(!meta.contains_key("distill.quantize.calibration"));
                assert!(bytes <= 0.3 * float_bytes, "{bytes} of {float_bytes}");
            }
            _ => {
                assert_eq!(count(&ops, "Cast"), 6);
                assert!(bytes <= 0.55 * float_bytes, "{bytes} of {float_bytes}");
            }
        }
    }
}

#[test]
fn a_folded_head_stays_float() {
    let dir = tempfile::tempdir().unwrap();
    let mlp = trained().folded(&[3, 5, 8]).unwrap();
    let float = dir.path().join("specialist.onnx");
    onnx::save(&mlp, &float, &[]).unwrap();
    let test = mnist(Split::Test, 1000);
    for method in ["static", "dynamic", "fp16"] {
        let out = dir.path().join(format!("{method}.onnx"));
        let o = quantize(
            dir.path(),
            &[
                "--model",
                "specialist.onnx",
                "--method",
                method,
                "--limit",
                "1024",
                "--out",
                out.to_str().unwrap(),
            ],
        );
        assert_eq!(o.code, 0, "{method}: {}", o.stderr);
        let ops = ops(&read_model(&out));
        assert_eq!(
            ops[ops.len() - 4..],
            ["Gather", "Gather", "ReduceLogSumExp", "Concat"],
            "{method}"
        );
        let a = agreement(&float, &out, test.features.view());
        assert!(a >= 0.99, "{method}: agreement {a}");
    }
}

/// The reference MLP of the generator below: weights, biases and rows from integer formulas,
/// exact in f32 on both sides.
fn reference_mlp() -> (Mlp, Array2<f32>) {
    let sizes = [6usize, 5, 4, 3];
    let w = |l: usize, i: usize, j: usize| ((i * 7 + j * 13 + l * 5) % 17) as f32 - 8.0;
    let b = |l: usize, j: usize| ((j * 3 + l) % 7) as f32 - 3.0;
    let layers = (0..3)
        .map(|l| Linear {
            w: Array2::from_shape_fn((sizes[l], sizes[l + 1]), |(i, j)| w(l, i, j) / 9.0),
            b: Array1::from_shape_fn(sizes[l + 1], |j| b(l, j) / 4.0),
        })
        .collect();
    let mlp = Mlp {
        config: MlpConfig {
            sizes: sizes.to_vec(),
            input_dropout: 0.0,
            hidden_dropout: 0.0,
            max_norm: None,
        },
        layers,
        fold: None,
    };
    let x = Array2::from_shape_fn((16, 6), |(r, c)| ((r * 5 + c * 3) % 11) as f32 / 10.0);
    (mlp, x)
}

/// The constants below are what ONNX Runtime 1.31.1's own quantiser writes for the same network
/// and rows (min-max calibration), printed by this generator (Python, with `onnx` installed):
///
/// ```python
/// import numpy as np, onnx
/// from onnx import helper, TensorProto, numpy_helper as nh
/// from onnxruntime.quantization import quantize_static, QuantFormat, CalibrationDataReader
/// sizes, f = [6, 5, 4, 3], np.float32
/// def w(l, i, j): return f(((i * 7 + j * 13 + l * 5) % 17) - 8) / f(9)
/// def b(l, j): return f(((j * 3 + l) % 7) - 3) / f(4)
/// def x(r, c): return f((r * 5 + c * 3) % 11) / f(10)
/// nodes, inits, prev = [], [], 'input'
/// for l in range(3):
///     W = np.array([[w(l, i, j) for j in range(sizes[l + 1])] for i in range(sizes[l])], dtype=f)
///     B = np.array([b(l, j) for j in range(sizes[l + 1])], dtype=f)
///     inits += [nh.from_array(W, f'layer{l}.weight'), nh.from_array(B, f'layer{l}.bias')]
///     out = 'logits' if l == 2 else f'layer{l}.linear'
///     nodes.append(helper.make_node('Gemm', [prev, f'layer{l}.weight', f'layer{l}.bias'], [out], transB=0))
///     prev = out
///     if l < 2:
///         nodes.append(helper.make_node('Relu', [prev], [f'layer{l}.relu'])); prev = f'layer{l}.relu'
/// g = helper.make_graph(nodes, 'm', [helper.make_tensor_value_info('input', TensorProto.FLOAT, ['batch', 6])],
///                       [helper.make_tensor_value_info('logits', TensorProto.FLOAT, ['batch', 3])], inits)
/// m = helper.make_model(g, opset_imports=[helper.make_opsetid('', 17)]); m.ir_version = 8
/// onnx.save(m, 'ref.onnx')
/// X = np.array([[x(r, c) for c in range(6)] for r in range(16)], dtype=f)
/// class R(CalibrationDataReader):
///     def __init__(s): s.it = iter([{'input': X}])
///     def get_next(s): return next(s.it, None)
/// quantize_static('ref.onnx', 'ref.q.onnx', R(), quant_format=QuantFormat.QDQ, per_channel=True)
/// for t in onnx.load('ref.q.onnx').graph.initializer:
///     print(t.name, nh.to_array(t).ravel().tolist())
/// ```
#[test]
// The constants exactly as the generator prints them (float32 values widened to float64).
#[allow(clippy::excessive_precision)]
fn static_parameters_equal_onnx_runtimes_quantiser() {
    let (mlp, x) = reference_mlp();
    let params = StaticParams::new(&mlp, &ranges(&mlp, x.view(), Calibration::MinMax));
    let activations = [
        (0.003921568859368563f32, -128i8),
        (0.006470588501542807, -128),
        (0.0062841931357979774, -128),
    ];
    assert_eq!(params.activations, activations);
    let weights: [&[i8]; 3] = [
        &[
            -127, 79, 16, -48, -127, -16, -79, 127, 64, 0, 95, 32, -32, -95, 127, -64, -127, 79,
            16, -54, 48, -16, -79, 127, 73, -111, 95, 32, -32, -109,
        ],
        &[
            -48, -127, 109, 32, 64, 0, -73, -127, -95, 127, 54, -16, 16, -54, -127, 95, 127, 73, 0,
            -64,
        ],
        &[32, -51, -95, -127, 127, 16, -16, -127, 127, 95, 51, -32],
    ];
    let weight_scales: [&[f32]; 3] = [
        &[
            0.006999125238507986,
            0.006999125238507986,
            0.006999125238507986,
            0.006999125238507986,
            0.0061242347583174706,
        ],
        &[
            0.006999125238507986,
            0.0061242347583174706,
            0.0061242347583174706,
            0.006999125238507986,
        ],
        &[
            0.006999125238507986,
            0.004374453332275152,
            0.006999125238507986,
        ],
    ];
    let biases: [&[i32]; 3] = [
        &[-27325, 0, 27325, -9108, 20819],
        &[-11040, 6309, -18926, 0],
        &[-5684, 18188, -11368],
    ];
    let bias_scales: [&[f32]; 3] = [
        &[
            2.7447551474324428e-05,
            2.7447551474324428e-05,
            2.7447551474324428e-05,
            2.7447551474324428e-05,
            2.40166082221549e-05,
        ],
        &[
            4.5288459659786895e-05,
            3.962740447605029e-05,
            3.962740447605029e-05,
            4.5288459659786895e-05,
        ],
        &[
            4.398385499371216e-05,
            2.74899102805648e-05,
            4.398385499371216e-05,
        ],
    ];
    for l in 0..3 {
        assert_eq!(params.weights[l].0, weights[l], "layer {l} weights");
        assert_eq!(
            params.weights[l].1, weight_scales[l],
            "layer {l} weight scales"
        );
        assert_eq!(params.biases[l].0, biases[l], "layer {l} biases");
        assert_eq!(params.biases[l].1, bias_scales[l], "layer {l} bias scales");
    }
}

#[test]
fn bad_input_exits_2_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mlp = trained();
    onnx::save(&mlp, &d.join("student.onnx"), &[]).unwrap();
    let narrow = Mlp::new(
        MlpConfig {
            sizes: vec![100, 8, 10],
            input_dropout: 0.0,
            hidden_dropout: 0.0,
            max_norm: None,
        },
        1,
    )
    .unwrap();
    onnx::save(&narrow, &d.join("narrow.onnx"), &[]).unwrap();
    std::fs::write(d.join("garbage.onnx"), b"not a model").unwrap();
    let cnn = format!("{REPO}/tests/fixtures/teachers/torchscript_cnn.onnx");
    let before = files(d);
    let student_bytes = std::fs::read(d.join("student.onnx")).unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--model", &cnn, "--out", "q.onnx"],
            "not an MLP or CNN distill can quantise",
        ),
        (
            vec!["--model", "garbage.onnx", "--out", "q.onnx"],
            "not an MLP or CNN distill can quantise",
        ),
        (
            vec!["--model", "narrow.onnx", "--out", "q.onnx"],
            "rows of 784 features, but --model narrow.onnx reads 100",
        ),
        (
            vec![
                "--model",
                "student.onnx",
                "--calibration-rows",
                "0",
                "--out",
                "q.onnx",
            ],
            "--calibration-rows",
        ),
        (
            vec!["--model", "student.onnx", "--out", "student.onnx"],
            "this is also the input --model",
        ),
        (
            vec!["--model", "student.onnx", "--out", "./student.onnx"],
            "this is also the input --model",
        ),
        (
            vec![
                "--model",
                "student.onnx",
                "--method",
                "fp16",
                "--calibration",
                "minmax",
                "--out",
                "q.onnx",
            ],
            "--calibration",
        ),
        (
            vec![
                "--model",
                "student.onnx",
                "--calibration",
                "percentile",
                "--percentile",
                "40",
                "--out",
                "q.onnx",
            ],
            "--percentile",
        ),
        (
            vec![
                "--model",
                "student.onnx",
                "--percentile",
                "99.9",
                "--out",
                "q.onnx",
            ],
            "applies to --calibration percentile only",
        ),
        (
            vec!["--model", "student.onnx", "--out", "missing/q.onnx"],
            "does not exist",
        ),
    ];
    assert_each_exits_2(d, cases, quantize);
    assert_eq!(
        std::fs::read(d.join("student.onnx")).unwrap(),
        student_bytes
    );
    // A selection without rows: the first three training rows have no 9.
    let o = quantize(
        d,
        &[
            "--model",
            "student.onnx",
            "--limit",
            "3",
            "--only-classes",
            "9",
            "--out",
            "q.onnx",
        ],
    );
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert_eq!(files(d), before);
}
