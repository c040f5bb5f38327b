//! `make bench` figures for the MLP engine: plain SGEMM GFLOP/s for the GEMM shapes of a
//! 784-1200-1200-10 training step on every backend this binary carries (and on NumPy, when a
//! Python with NumPy is found), and the training step itself (samples/s, GFLOP/s, share of the
//! best SGEMM figure of the same run), at batch 128 and 256. Medians of repeated runs.
//!
//! NumPy is looked for in `DISTILL_BENCH_PYTHON`, then `.venv-bench/bin/python` (made by `make
//! bench-compare`), then `.venv/bin/python`; it runs with as many BLAS threads as the engine has.

use distill_core::rng::Rng;
use distill_nn::gemm::{Backend, flops, kernel_isa, step_shapes, time_step_gemms};
use distill_nn::optim::{Optimizer, OptimizerConfig};
use distill_nn::{DistillLoss, Mlp, MlpConfig, SparseInput, Workspace};
use ndarray::Array2;
use std::path::PathBuf;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    distill_core::stats::median(&mut v)
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

fn python_with_numpy() -> Option<PathBuf> {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let candidates = std::env::var_os("DISTILL_BENCH_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            root.join(".venv-bench/bin/python"),
            root.join(".venv/bin/python"),
        ]);
    candidates.into_iter().find(|p| {
        p.is_file()
            && std::process::Command::new(p)
                .args(["-c", "import numpy"])
                .output()
                .is_ok_and(|o| o.status.success())
    })
}

/// NumPy's `(flops, seconds)` for the same shapes (sum of per-shape medians), or why there is none.
fn numpy_step_gemms(
    python: &PathBuf,
    batch: usize,
    sizes: &[usize],
    threads: usize,
    reps: usize,
) -> Result<(f64, f64, String), String> {
    let shapes: Vec<String> = step_shapes(batch, sizes)
        .into_iter()
        .map(|(m, k, n, ta, tb)| format!("({m},{k},{n},{},{})", ta as u8, tb as u8))
        .collect();
    let script = format!(
        r#"
import time, numpy as np
try:
    cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    blas = f"{{cfg.get('name')}} {{cfg.get('version')}}"
except Exception:
    blas = "unknown BLAS"
rng = np.random.default_rng(1)
total = 0.0
for m, k, n, ta, tb in [{shapes}]:
    a = rng.random((k, m) if ta else (m, k), dtype=np.float32)
    b = rng.random((n, k) if tb else (k, n), dtype=np.float32)
    av = a.T if ta else a
    bv = b.T if tb else b
    c = np.empty((m, n), dtype=np.float32)
    np.matmul(av, bv, out=c)
    ts = []
    for _ in range({reps}):
        t = time.perf_counter(); np.matmul(av, bv, out=c); ts.append(time.perf_counter() - t)
    ts.sort()
    total += ts[len(ts) // 2]
print(total)
print(f"NumPy {{np.__version__}}, {{blas}}")
"#,
        shapes = shapes.join(",")
    );
    let out = std::process::Command::new(python)
        .args(["-c", &script])
        .env("OPENBLAS_NUM_THREADS", threads.to_string())
        .env("OMP_NUM_THREADS", threads.to_string())
        .env("MKL_NUM_THREADS", threads.to_string())
        .output()
        .map_err(|e| format!("{} did not run: {e}", python.display()))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let secs: f64 = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| format!("unexpected NumPy output: {text}"))?;
    let what = lines.next().unwrap_or("NumPy").to_string();
    let total: f64 = step_shapes(batch, sizes)
        .into_iter()
        .map(|(m, k, n, _, _)| flops(m, k, n))
        .sum();
    Ok((total, secs, what))
}

fn main() {
    let pool = distill_nn::threads::training_pool(None).expect("thread pool");
    // `cargo bench -p distill-nn --bench engine -- first-layer` runs only the second table.
    if !std::env::args().any(|a| a == "first-layer") {
        pool.install(bench);
    }
    pool.install(first_layer);
}

/// The training step of the distillation student (784-800-800-10, batch 128, SGD momentum 0.9, no
/// dropout) with the first layer on dense GEMMs and on the sparse kernels: on real MNIST batches
/// (the repository's `data/mnist`, about 19% of pixels nonzero) and on synthetic batches whose
/// nonzeros are scattered at random (no blank margins, so the grouped form stores much more than
/// the nonzeros), to show where the engine's thresholds (`distill_nn::sparse`) sit against the
/// crossover. Each row gives the batch's density and its grouped form's share of stored values
/// (what the sparse kernels compute, relative to a dense product).
fn first_layer() {
    use distill_nn::sparse::{DENSITY_MAX, GROUPED_DENSITY_MAX, SparseBatch, density};
    let sizes = vec![784, 800, 800, 10];
    let batch = 128;
    println!();
    println!(
        "## First layer on sparse inputs: 784-800-800-10 training step, batch {batch}, SGD momentum 0.9"
    );
    println!(
        "CPU: {}; kernels: {}; rayon threads: {}; engine thresholds: density <= {DENSITY_MAX} and \
         grouped <= {GROUPED_DENSITY_MAX}",
        distill_core::stats::cpu_model(),
        kernel_isa(),
        rayon::current_num_threads(),
    );
    println!(
        "{:<28} {:>8} {:>8} {:>9} {:>10} {:>8} {:>7}",
        "input", "density", "grouped", "dense ms", "sparse ms", "speedup", "engine"
    );
    let mut inputs: Vec<(String, Array2<f32>)> = Vec::new();
    let mnist = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/mnist"));
    match distill_data::DataSource::Mnist(mnist).load(distill_data::Split::Train) {
        Ok(ds) => {
            // Eight batches of rows spread over the training set.
            let step = ds.features.nrows() / (8 * batch);
            let rows: Vec<usize> = (0..8 * batch).map(|i| i * step).collect();
            inputs.push((
                "MNIST (8 batches)".into(),
                ds.features.select(ndarray::Axis(0), &rows),
            ));
        }
        Err(e) => println!("  (no MNIST row: {e})"),
    }
    let mut rng = Rng::new(3);
    for d in [0.02f32, 0.05, 0.1, 0.15, 0.2, 0.3] {
        let x = Array2::from_shape_simple_fn((batch, 784), || {
            if rng.uniform() < d {
                rng.uniform()
            } else {
                0.0
            }
        });
        inputs.push((format!("scattered at random, {d}"), x));
    }
    for (name, x) in inputs {
        let batches: Vec<Array2<f32>> = x
            .axis_chunks_iter(ndarray::Axis(0), batch)
            .map(|b| b.to_owned())
            .collect();
        let mut sb = SparseBatch::default();
        let (mut dens, mut grouped) = (0.0, 0.0);
        for b in &batches {
            sb.build(b.view());
            dens += density(b.view()) / batches.len() as f64;
            grouped += sb.grouped_density() / batches.len() as f64;
        }
        let y: Vec<u32> = (0..batch).map(|i| (i % 10) as u32).collect();
        // Three copies of the same net, stepped in turn (dense, sparse, automatic) so that a
        // swing in the machine's load hits all three alike; medians of the steps' times.
        let mut runs: Vec<_> = [SparseInput::Never, SparseInput::Always, SparseInput::Auto]
            .into_iter()
            .map(|policy| {
                let mlp = Mlp::new(
                    MlpConfig {
                        sizes: sizes.clone(),
                        input_dropout: 0.0,
                        hidden_dropout: 0.0,
                        max_norm: None,
                    },
                    1,
                )
                .expect("valid config");
                let cfg = OptimizerConfig::sgd(0.01, 0.9);
                let opt = Optimizer::new(cfg, &mlp.shapes());
                (
                    mlp,
                    opt,
                    Workspace::with_sparse_input(policy),
                    Vec::new(),
                    0usize,
                )
            })
            .collect();
        let steps = 80;
        for step in 0..steps {
            let x = &batches[step % batches.len()];
            for (mlp, opt, ws, times, sparse_steps) in runs.iter_mut() {
                let t = Instant::now();
                mlp.train_step(
                    x.view(),
                    None,
                    Some(&y),
                    &DistillLoss::hard(),
                    opt,
                    0,
                    step as u64,
                    ws,
                )
                .expect("step");
                times.push(t.elapsed().as_secs_f64() * 1e3);
                *sparse_steps += usize::from(ws.used_sparse_input());
            }
        }
        let mut medians = runs.into_iter().map(|(_, _, _, times, sparse_steps)| {
            // The first steps warm the caches and the workspace up.
            (median(times[4..].to_vec()), sparse_steps * 2 > steps)
        });
        let (dense, _) = medians.next().expect("dense");
        let (sparse, _) = medians.next().expect("sparse");
        let (_, auto_sparse) = medians.next().expect("auto");
        println!(
            "{name:<28} {dens:>8.3} {grouped:>8.3} {dense:>9.2} {sparse:>10.2} {:>7.2}x {:>7}",
            dense / sparse,
            if auto_sparse { "sparse" } else { "dense" }
        );
    }
}
fn bench() {
    let sizes = vec![784, 1200, 1200, 10];
    let threads = rayon::current_num_threads();
    let python = python_with_numpy();
    println!(
        "## MLP engine: 784-1200-1200-10 training step (dropout 0.2/0.5, max-norm 3.5, SGD momentum 0.9)"
    );
    println!(
        "CPU: {} ({} logical CPUs); GEMM kernels: {}; rayon threads: {threads}; engine backend: {}",
        distill_core::stats::cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel_isa(),
        Backend::Gemm.name()
    );
    println!("SGEMM GFLOP/s, every GEMM of one training step, sum of per-shape medians:");
    let mut best = Vec::new();
    for batch in [128usize, 256] {
        let mut row = format!("  batch {batch:>3}:");
        let mut top = (0.0f64, "");
        for backend in Backend::ALL {
            let (f, s) = time_step_gemms(backend, batch, &sizes, 15);
            let g = f / s / 1e9;
            row += &format!("  {} {g:.1}", backend.name());
            if g > top.0 {
                top = (g, backend.name());
            }
        }
        match &python {
            Some(p) => match numpy_step_gemms(p, batch, &sizes, threads, 15) {
                Ok((f, s, what)) => row += &format!("  {what} {:.1}", f / s / 1e9),
                Err(e) => row += &format!("  NumPy failed: {}", e.trim()),
            },
            None => row += "  (NumPy: no Python with numpy found; `make bench-compare` makes one)",
        }
        println!("{row}");
        best.push(top);
    }
    println!(
        "{:>6} {:>14} {:>12} {:>14} {:>16} {:>8}",
        "batch", "step ms (med)", "samples/s", "step GFLOP/s", "best SGEMM", "ratio"
    );
    let mut rng = Rng::new(1);
    for (batch, (sgemm_gflops, name)) in [128usize, 256].into_iter().zip(best) {
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
        let cfg = OptimizerConfig::sgd(0.01, 0.9);
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
            "{batch:>6} {:>14.2} {:>12.0} {:>14.1} {:>16} {:>7.0}%",
            secs * 1e3,
            batch as f64 / secs,
            gflops,
            format!(
                "{sgemm_gflops:.1} ({})",
                name.split(' ').next().unwrap_or(name)
            ),
            100.0 * gflops / sgemm_gflops
        );
    }
}
