//! The engine's ONNX export, end to end (kept here, beside the training stage, so that distill-nn
//! needs no data loader): an MLP trained by the engine, saved as ONNX, run by ONNX Runtime on real
//! MNIST rows, must give the engine's own logits (max abs difference ≤ 1e-5), and load back equal.

use distill_data::{Selection, Split};
use distill_nn::optim::{Optimizer, OptimizerConfig, Schedule};
use distill_nn::{DistillLoss, Mlp, MlpConfig, Workspace, onnx};
use distill_runtime::{ModelSpec, OnnxModel, Provider};
use ndarray::s;

fn mnist(split: Split, limit: usize) -> distill_data::Dataset {
    Selection {
        data: concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/mnist").into(),
        split,
        limit: Some(limit),
        classes: Default::default(),
    }
    .load()
    .expect("MNIST loads")
}

#[test]
fn saved_model_matches_onnx_runtime_on_mnist() {
    let train = mnist(Split::Train, 512);
    let test = mnist(Split::Test, 300);
    let mut mlp = Mlp::new(
        MlpConfig {
            sizes: vec![784, 64, 32, 10],
            input_dropout: 0.1,
            hidden_dropout: 0.2,
            max_norm: Some(3.0),
        },
        5,
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
    for step in 0..16 {
        let r = (step % 4) * 128;
        mlp.train_step(
            train.features.slice(s![r..r + 128, ..]),
            None,
            Some(&labels[r..r + 128]),
            &DistillLoss::hard(),
            &mut opt,
            step / 4,
            step as u64,
            &mut ws,
        )
        .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("student.onnx");
    onnx::save(&mlp, &path, &[("distill.note".into(), "round trip".into())]).unwrap();

    let ours = mlp.forward(test.features.view()).unwrap();
    let mut model = OnnxModel::load(&ModelSpec::new(&path), Provider::Cpu, 1).unwrap();
    assert_eq!(model.io_names(), ("input", "logits"));
    assert_eq!(model.classes(), Some(10));
    let theirs = model.run(test.features.view()).unwrap();
    let max_diff = ours
        .iter()
        .zip(theirs.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        max_diff <= 1e-5,
        "engine and ONNX Runtime differ by {max_diff}"
    );
    assert!(
        ours.iter().any(|v| v.abs() > 1.0),
        "logits should not be trivially small"
    );

    let back = onnx::load(&path).unwrap();
    assert_eq!(back.mlp, mlp);
    assert_eq!(back.metadata["distill.note"], "round trip");
}
