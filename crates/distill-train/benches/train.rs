//! `make bench` figures for distillation training: a 784-800-800-10 student distilled at T = 20,
//! batch 128, on 2 threads, over MNIST rows with soft targets from a stored 3-teacher ensemble.
//! Prints samples/s and GEMM GFLOP/s next to the same-run SGEMM figure for the step's shapes, and
//! the share of a step spent outside the network (batch gathering, jitter, the loss).

use distill_core::math::{Combine, ensemble_probs};
use distill_core::rng::Rng;
use distill_core::stats::median;
use distill_data::{Selection, Split, jitter};
use distill_nn::gemm::{Backend, kernel_isa, time_step_gemms};
use distill_nn::mlp::gather_rows;
use distill_nn::{DistillLoss, Init, Mlp, MlpConfig, OptimizerConfig};
use distill_store::{StoreMeta, StoreWriter, TeacherMeta};
use distill_train::{BiasChoice, Config, Regularisation, SoftTargetSettings};
use ndarray::Array2;
use std::time::Instant;

const ROWS: usize = 20_000;
/// Enough steps (157 per epoch) for the velocity of weights that never get a gradient to decay
/// into the subnormal range, which is what used to slow later epochs down.
const EPOCHS: usize = 10;

fn main() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("pool");
    pool.install(bench);
}

fn bench() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let selection = Selection {
        data: format!("{root}/data/mnist"),
        split: Split::Train,
        limit: Some(ROWS),
        classes: Default::default(),
    };
    let data = selection.load().expect("MNIST");
    let dir = tempfile::tempdir().expect("temp dir");
    let store_path = dir.path().join("soft.parquet");
    let teachers: Vec<Array2<f32>> = (0..3)
        .map(|seed| {
            let t = Mlp::new(
                MlpConfig {
                    sizes: vec![784, 256, 10],
                    input_dropout: 0.0,
                    hidden_dropout: 0.0,
                    max_norm: None,
                },
                seed,
            )
            .expect("teacher");
            t.forward(data.features.view()).expect("forward")
        })
        .collect();
    let teacher_meta = (0..3)
        .map(|i| TeacherMeta::logits(format!("t{i}"), "", ""))
        .collect();
    let meta = StoreMeta::new(
        10,
        teacher_meta,
        selection.data.clone(),
        "train",
        selection.describe(),
    );
    let mut w = StoreWriter::create(&store_path, &meta).expect("store");
    let views: Vec<_> = teachers.iter().map(|t| t.view()).collect();
    w.write(&data.index, data.labels.as_deref(), &views)
        .expect("write");
    w.finish().expect("finish");

    let config = Config {
        selection,
        validation: Some(0),
        fraction: None,
        soft: SoftTargetSettings {
            soft_targets: Some(store_path),
            temperature: 20.0,
            alpha: 0.9,
            combine: Combine::Arithmetic,
        },
        hidden: vec![800, 800],
        arch: None,
        normalize: None,
        init: Init::default(),
        regularisation: Regularisation {
            input_dropout: 0.0,
            hidden_dropout: 0.0,
            max_norm: None,
            jitter: 2,
            flip: false,
        },
        optimizer: OptimizerConfig::sgd(0.05, 0.9),
        epochs: EPOCHS,
        batch: 128,
        seed: 1,
        threads: Some(2),
        bias_adjust: BiasChoice::None,
        out: dir.path().join("student.onnx"),
        metrics: None,
        resume: false,
        test_split: None,
        max_steps: None,
        patience: None,
    };
    let report =
        distill_train::run(&config, &distill_progress::Progress::hidden()).expect("training");
    let sizes = [784usize, 800, 800, 10];
    let sgemm = Backend::ALL
        .into_iter()
        .map(|b| {
            let (f, s) = time_step_gemms(b, 128, &sizes, 15);
            f / s / 1e9
        })
        .fold(0.0, f64::max);
    let mlp = Mlp::new(
        MlpConfig {
            sizes: sizes.to_vec(),
            input_dropout: 0.0,
            hidden_dropout: 0.0,
            max_norm: None,
        },
        1,
    )
    .expect("mlp");
    let step_flops = mlp.train_step_flops(128);
    let metrics = std::fs::read_to_string(dir.path().join("student.metrics.csv")).expect("metrics");
    let mut epoch_rates: Vec<f64> = metrics
        .lines()
        .skip(1)
        .filter_map(|l| l.rsplit(',').next()?.parse().ok())
        .collect();
    let fastest = epoch_rates.iter().copied().fold(0.0, f64::max);
    let slowest = epoch_rates.iter().copied().fold(f64::INFINITY, f64::min);
    let per_epoch: Vec<String> = epoch_rates.iter().map(|r| format!("{r:.0}")).collect();
    let samples_per_s = median(&mut epoch_rates);
    let gflops = samples_per_s / 128.0 * step_flops / 1e9;

    // The parts of a step outside the network, timed on their own.
    let mut rng = Rng::new(3);
    let perm = rng.permutation(data.len());
    let mut xb = Array2::<f32>::zeros((128, 784));
    let reps = 200;
    let gather = median(
        &mut (0..reps)
            .map(|i| {
                let t = Instant::now();
                gather_rows(
                    data.features.view(),
                    &perm[(i * 128) % 19_000..][..128],
                    xb.view_mut(),
                );
                t.elapsed().as_secs_f64()
            })
            .collect::<Vec<f64>>(),
    );
    let jit = median(
        &mut (0..reps)
            .map(|_| {
                let t = Instant::now();
                jitter(
                    &mut xb.view_mut(),
                    distill_data::ImageShape::gray(28, 28),
                    2,
                    &mut rng,
                );
                t.elapsed().as_secs_f64()
            })
            .collect::<Vec<f64>>(),
    );
    let logits = Array2::from_shape_simple_fn((128, 10), || rng.normal());
    let p = ensemble_probs(&[logits.view()], 20.0, Combine::Arithmetic).expect("probs");
    let labels: Vec<u32> = (0..128).map(|i| i % 10).collect();
    let mut g = Array2::<f32>::zeros((128, 10));
    let loss = DistillLoss {
        temperature: 20.0,
        alpha: 0.9,
    };
    let loss_t = median(
        &mut (0..reps)
            .map(|_| {
                let t = Instant::now();
                loss.loss_and_grad(logits.view(), Some(p.view()), Some(&labels), g.view_mut())
                    .expect("loss");
                t.elapsed().as_secs_f64()
            })
            .collect::<Vec<f64>>(),
    );
    let step = 128.0 / samples_per_s;
    println!(
        "## Distillation training: 784-800-800-10 student, T=20, alpha 0.9, jitter 2, batch 128, 2 threads"
    );
    println!(
        "CPU: {}; GEMM kernels: {}",
        distill_core::stats::cpu_model(),
        kernel_isa()
    );
    println!(
        "rows per epoch: {ROWS}; epochs: {} (samples/s is their median)",
        report.epochs
    );
    println!(
        "samples/s per epoch: {}   slowest epoch {:.1}% below the fastest",
        per_epoch.join(" "),
        100.0 * (1.0 - slowest / fastest)
    );
    println!(
        "samples/s: {:.0}   step GFLOP/s: {:.1}   best SGEMM GFLOP/s (same shapes): {:.1}   ratio: {:.0}%",
        samples_per_s,
        gflops,
        sgemm,
        100.0 * gflops / sgemm
    );
    println!(
        "share of a {:.2} ms step: batch gathering {:.1}%, jitter {:.1}%, loss {:.1}%",
        step * 1e3,
        100.0 * gather / step,
        100.0 * jit / step,
        100.0 * loss_t / step
    );
}
