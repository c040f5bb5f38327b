//! `Net` against PyTorch: the same weights and batch give the same training-mode logits, loss,
//! gradients, batch-norm running statistics and evaluation-mode logits. The reference is
//! `tests/fixtures/cnn/fixture.{json,bin}`, written by `make_fixture.py` beside them (PyTorch's
//! own `Conv2d`, `BatchNorm2d`, pooling and `Linear` with autograd).
//!
//! Tolerance: for each tensor, the largest absolute difference is at most 1e-4 times the largest
//! magnitude in PyTorch's tensor (max-abs relative error). A bias gradient is measured against the
//! larger of its own and its layer's weight gradient's magnitude: the bias of a convolution
//! followed by batch norm has an exact gradient of 0 (the normalisation removes any shift), which
//! both engines compute as rounding noise of about 1e-10.

#![allow(clippy::unwrap_used)]

use distill_nn::layer::Layer;
use distill_nn::{Arch, DistillLoss, Net, NetWorkspace, Shape};
use ndarray::{Array1, Array2, ArrayD, IxDyn};
use serde_json::Value;

struct Fixture {
    meta: Value,
    floats: Vec<f32>,
}

impl Fixture {
    fn load() -> Fixture {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cnn");
        let meta: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("fixture.json")).unwrap())
                .unwrap();
        let floats = std::fs::read(dir.join("fixture.bin"))
            .unwrap()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Fixture { meta, floats }
    }

    fn get(&self, name: &str) -> ArrayD<f32> {
        let t = &self.meta["tensors"][name];
        let offset = t["offset"].as_u64().unwrap() as usize;
        let shape: Vec<usize> = t["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        let len = shape.iter().product::<usize>();
        ArrayD::from_shape_vec(IxDyn(&shape), self.floats[offset..offset + len].to_vec()).unwrap()
    }

    fn matrix(&self, name: &str) -> Array2<f32> {
        let t = self.get(name);
        let rows = t.shape()[0];
        let cols = t.len() / rows;
        t.into_shape_with_order((rows, cols)).unwrap()
    }

    fn vector(&self, name: &str) -> Array1<f32> {
        Array1::from(self.get(name).into_raw_vec_and_offset().0)
    }
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

fn assert_close(ours: &[f32], torch: &[f32], what: &str) {
    assert_close_at(ours, torch, max_abs(torch), what);
}

fn assert_close_at(ours: &[f32], torch: &[f32], scale: f32, what: &str) {
    assert_eq!(ours.len(), torch.len(), "{what}");
    let diff = ours
        .iter()
        .zip(torch)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        diff <= 1e-4 * scale,
        "{what}: max difference {diff}, PyTorch's largest magnitude {scale}"
    );
}

#[test]
fn net_matches_pytorch_forward_backward_and_running_statistics() {
    let f = Fixture::load();
    let arch: Arch = f.meta["arch"].as_str().unwrap().parse().unwrap();
    let dims: Vec<usize> = f.meta["input_shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let input = Shape::Image {
        c: dims[0],
        h: dims[1],
        w: dims[2],
    };
    let classes = f.meta["classes"].as_u64().unwrap() as usize;
    let mut net = Net::new(arch, input, classes, 0).unwrap();
    for (i, layer) in net
        .layers
        .iter_mut()
        .filter(|l| l.param_shape().is_some())
        .enumerate()
    {
        let w = f.matrix(&format!("param{i}.weight"));
        let b = f.vector(&format!("param{i}.bias"));
        match layer {
            Layer::Conv(c) => {
                c.lin.w = w.t().as_standard_layout().into_owned();
                c.lin.b = b;
            }
            Layer::Linear(l) => {
                l.w = w.t().as_standard_layout().into_owned();
                l.b = b;
            }
            Layer::BatchNorm(bn) => {
                bn.gamma = f.vector(&format!("param{i}.weight"));
                bn.beta = b;
            }
            _ => unreachable!(),
        }
    }
    let x = f.matrix("input");
    let soft = f.matrix("soft");
    let labels: Vec<u32> = f.meta["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let loss = DistillLoss {
        temperature: f.meta["temperature"].as_f64().unwrap() as f32,
        alpha: f.meta["alpha"].as_f64().unwrap() as f32,
    };
    let mut ws = NetWorkspace::default();
    let parts = net
        .gradients(
            x.view(),
            Some(soft.view()),
            Some(&labels),
            &loss,
            0,
            &mut ws,
        )
        .unwrap();
    assert_close(
        ws.logits().as_slice().unwrap(),
        f.matrix("train_logits").as_slice().unwrap(),
        "training-mode logits",
    );
    assert_close(&[parts.total() as f32], &[f.vector("loss")[0]], "loss");
    let mut checked = 0;
    for (i, (layer, (gw, gb))) in net
        .layers
        .iter()
        .filter(|l| l.param_shape().is_some())
        .zip(ws.gradients())
        .enumerate()
    {
        let torch_w = f.matrix(&format!("param{i}.weight.grad"));
        let ours_w = match layer {
            Layer::BatchNorm(_) => gw.clone(),
            _ => gw.t().to_owned(),
        };
        let ours_w = ours_w.as_standard_layout().into_owned();
        let torch_w = torch_w.into_shape_with_order(ours_w.dim()).unwrap();
        assert_close(
            ours_w.as_slice().unwrap(),
            torch_w.as_slice().unwrap(),
            &format!("parameter layer {i} weight gradient"),
        );
        let torch_b = f.vector(&format!("param{i}.bias.grad"));
        assert_close_at(
            gb.as_slice().unwrap(),
            torch_b.as_slice().unwrap(),
            max_abs(torch_b.as_slice().unwrap()).max(max_abs(torch_w.as_slice().unwrap())),
            &format!("parameter layer {i} bias gradient"),
        );
        if let Layer::BatchNorm(bn) = layer {
            for (ours, key) in [
                (&bn.running_mean, "running_mean"),
                (&bn.running_var, "running_var"),
            ] {
                assert_close(
                    ours.as_slice().unwrap(),
                    f.vector(&format!("param{i}.{key}")).as_slice().unwrap(),
                    &format!("parameter layer {i} {key}"),
                );
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 6);
    assert_close(
        net.forward(x.view()).unwrap().as_slice().unwrap(),
        f.matrix("eval_logits").as_slice().unwrap(),
        "evaluation-mode logits",
    );
}
