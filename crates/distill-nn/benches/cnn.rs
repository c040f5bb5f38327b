//! Figures for the CNN engine: one `Net::train_step` at batch 128 (median ms, rows/s, GEMM
//! GFLOP/s) for the MNIST teacher and student networks of `pipelines/mnist-cnn.yaml`, and a
//! per-layer breakdown of the training-mode forward and backward passes, so it shows where a step's
//! time goes. Medians of repeated runs on synthetic `[0, 1)` pixels.
//!
//! `cargo bench -p distill-nn --bench cnn`; `RAYON_NUM_THREADS` sets the thread count.

use distill_core::rng::Rng;
use distill_nn::layer::Scratch;
use distill_nn::optim::{Optimizer, OptimizerConfig};
use distill_nn::{Arch, DistillLoss, Net, NetWorkspace, Shape};
use ndarray::Array2;
use std::time::Instant;

const BATCH: usize = 128;
const NETS: [(&str, &str); 2] = [
    (
        "teacher",
        "conv:12:5:p2,relu,maxpool:2,conv:24:5:p2,relu,maxpool:2,flatten,fc:128,relu,dropout:0.5,fc",
    ),
    (
        "student",
        "conv:8:5,relu,maxpool:2,conv:16:5,relu,maxpool:2,flatten,fc:64,relu,fc",
    ),
];

fn median(mut v: Vec<f64>) -> f64 {
    distill_core::stats::median(&mut v)
}

fn main() {
    let pool = distill_nn::threads::training_pool(None).expect("thread pool");
    pool.install(|| {
        println!(
            "## CNN engine: one training step at batch {BATCH} (SGD momentum 0.9, hard labels)"
        );
        println!(
            "CPU: {}; GEMM kernels: {}; rayon threads: {}",
            distill_core::stats::cpu_model(),
            distill_nn::gemm::kernel_isa(),
            rayon::current_num_threads()
        );
        for (name, arch) in NETS {
            bench(name, arch);
        }
    });
}

fn bench(name: &str, arch: &str) {
    let arch: Arch = arch.parse().expect("valid arch");
    let input = Shape::Image { c: 1, h: 28, w: 28 };
    let mut net = Net::new(arch.clone(), input, 10, 1).expect("valid net");
    let mut rng = Rng::new(7);
    let x = Array2::from_shape_simple_fn((BATCH, 784), || rng.uniform());
    let y: Vec<u32> = (0..BATCH).map(|i| (i % 10) as u32).collect();
    let loss = DistillLoss::hard();
    let mut opt = Optimizer::new(OptimizerConfig::sgd(0.01, 0.9), &net.shapes());
    let mut ws = NetWorkspace::default();
    let mut step = 0u64;
    let mut run = || {
        step += 1;
        let t = Instant::now();
        net.train_step(x.view(), None, Some(&y), &loss, &mut opt, 0, step, &mut ws)
            .expect("step");
        t.elapsed().as_secs_f64()
    };
    for _ in 0..3 {
        run();
    }
    let secs = median((0..30).map(|_| run()).collect());
    println!(
        "\n{name} `{arch}`: step {:.2} ms, {:.0} rows/s, {:.1} GEMM GFLOP/s",
        secs * 1e3,
        BATCH as f64 / secs,
        net.train_step_flops(BATCH) / secs / 1e9
    );
    breakdown(&net, &x);
}

/// Median forward and backward milliseconds of each layer, on activations of one real pass.
fn breakdown(net: &Net, x: &Array2<f32>) {
    let layers = &net.layers;
    let mut acts = vec![x.clone()];
    let mut scratch: Vec<Scratch> = layers.iter().map(|_| Scratch::None).collect();
    let shapes = net
        .arch()
        .shapes(net.input_shape(), net.classes())
        .expect("valid");
    let mut fwd = Vec::new();
    for (l, layer) in layers.iter().enumerate() {
        let mut out = Array2::zeros((BATCH, shapes[l].len()));
        let times = (0..15)
            .map(|_| {
                let t = Instant::now();
                layer.forward(acts[l].view(), out.view_mut(), &mut scratch[l], Some(1));
                t.elapsed().as_secs_f64()
            })
            .collect();
        fwd.push(median(times));
        acts.push(out);
    }
    let mut bwd = Vec::new();
    for (l, layer) in layers.iter().enumerate() {
        let mut rng = Rng::new(l as u64);
        let dy = Array2::from_shape_simple_fn(acts[l + 1].raw_dim(), || rng.normal());
        let mut dx = Array2::zeros(acts[l].raw_dim());
        let mut grad = layer
            .param_shape()
            .map(|(r, c)| (Array2::zeros((r, c)), ndarray::Array1::zeros(c)));
        let times = (0..15)
            .map(|_| {
                let t = Instant::now();
                layer.backward(
                    acts[l].view(),
                    acts[l + 1].view(),
                    dy.view(),
                    (l > 0).then(|| dx.view_mut()),
                    &mut scratch[l],
                    grad.as_mut(),
                );
                t.elapsed().as_secs_f64()
            })
            .collect();
        bwd.push(median(times));
    }
    println!(
        "{:<4} {:<10} {:>10} {:>10}",
        "#", "layer", "fwd ms", "bwd ms"
    );
    for (l, (tok, (f, b))) in net
        .arch()
        .to_string()
        .split(',')
        .zip(fwd.iter().zip(&bwd))
        .enumerate()
    {
        println!("{l:<4} {tok:<10} {:>10.3} {:>10.3}", f * 1e3, b * 1e3);
    }
    println!(
        "{:<4} {:<10} {:>10.3} {:>10.3}",
        "",
        "total",
        fwd.iter().sum::<f64>() * 1e3,
        bwd.iter().sum::<f64>() * 1e3
    );
}
