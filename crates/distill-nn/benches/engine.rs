//! `make bench` figures for the MLP engine: plain SGEMM GFLOP/s for the GEMM shapes of a
//! 784-1200-1200-10 training step, and the training step itself (samples/s, GFLOP/s, share of the
//! SGEMM figure), at batch 128 and 256. Medians of repeated runs.

use distill_core::rng::Rng;
use distill_nn::gemm::time_step_gemms;
use distill_nn::optim::{Optimizer, OptimizerConfig, Schedule};
use distill_nn::{DistillLoss, Mlp, MlpConfig, Workspace};
use ndarray::Array2;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn time<F: FnMut()>(reps: usize, mut f: F) -> f64 {
    f();
    median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn main() {
    let sizes = vec![784, 1200, 1200, 10];
    let threads = rayon::current_num_threads();
    println!(
        "## MLP engine: 784-1200-1200-10 training step (dropout 0.2/0.5, max-norm 3.5, SGD momentum 0.9)"
    );
    println!(
        "backend: ndarray general_mat_mul (matrixmultiply, threading feature); rayon threads: {threads}"
    );
    println!(
        "{:>6} {:>14} {:>12} {:>14} {:>12} {:>8}",
        "batch", "step ms (med)", "samples/s", "step GFLOP/s", "SGEMM GFLOP/s", "ratio"
    );
    let mut rng = Rng::new(1);
    for batch in [128usize, 256] {
        let (f, s) = time_step_gemms(batch, &sizes, 15);
        let sgemm_gflops = f / s / 1e9;
        let mut mlp = Mlp::new(
            MlpConfig {
                sizes: sizes.clone(),
                input_dropout: 0.2,
                hidden_dropout: 0.5,
                max_norm: Some(3.5),
            },
            1,
        )
        .expect("valid config");
        let cfg = OptimizerConfig::Sgd {
            lr: 0.01,
            momentum: 0.9,
            momentum_start: 0.9,
            momentum_ramp: 0,
            schedule: Schedule::Constant,
        };
        let mut opt = Optimizer::new(cfg, &mlp.shapes());
        let x = Array2::from_shape_simple_fn((batch, 784), || rng.uniform());
        let y: Vec<u32> = (0..batch).map(|i| (i % 10) as u32).collect();
        let mut ws = Workspace::default();
        let mut step = 0u64;
        let secs = time(40, || {
            step += 1;
            mlp.train_step(
                x.view(),
                None,
                Some(&y),
                &DistillLoss::hard(),
                &mut opt,
                0,
                step,
                &mut ws,
            )
            .expect("step");
        });
        let gflops = mlp.train_step_flops(batch) / secs / 1e9;
        println!(
            "{batch:>6} {:>14.2} {:>12.0} {:>14.1} {:>12.1} {:>7.0}%",
            secs * 1e3,
            batch as f64 / secs,
            gflops,
            sgemm_gflops,
            100.0 * gflops / sgemm_gflops
        );
    }
}
