//! `make bench` figures for the KL combination (`distill_specialists::combine`): 100 classes, 10
//! specialists of 10 classes each (classes 10k..10k+9), 100,000 rows, on every core rayon finds.
//! Goal: at least 50,000 rows/s with the paper's top-1; top-2 and top-3 are printed for reference.
//!
//! The inputs look like a trained system's: the generalist puts a peak on the row's class, which a
//! quarter of the time is not its top class; each specialist puts a peak on the class when it is in
//! its subset and on its dustbin otherwise, and is wrong a tenth of the time. The machine may be
//! shared, so each setting runs several times and the best is reported, next to the rows per
//! CPU-second of this process (from `/proc/self/stat`, where there is one), which other processes'
//! load does not lower.
//!
//! `COMBINE_BENCH_ROWS=N` changes the row count.

use std::time::Instant;

use distill_specialists::combine::{CombineOptions, SpecialistLogits, combine};
use ndarray::Array2;

const CLASSES: usize = 100;
const GROUP: usize = 10;
const REPEATS: usize = 5;

/// SplitMix64, for reproducible inputs without a dependency.
struct Stream(u64);

impl Stream {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit().max(1e-300), self.unit());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    fn below(&mut self, n: usize) -> usize {
        ((self.unit() * n as f64) as usize).min(n - 1)
    }
}

/// CPU seconds (user + system) this process has used, where `/proc/self/stat` exists.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rows = std::env::var("COMBINE_BENCH_ROWS")
        .ok()
        .map(|v| v.parse::<usize>())
        .transpose()?
        .unwrap_or(100_000);
    let mut rng = Stream(2026);
    let subsets: Vec<Vec<u32>> = (0..CLASSES / GROUP)
        .map(|k| ((k * GROUP) as u32..((k + 1) * GROUP) as u32).collect())
        .collect();
    let mut generalist = Array2::<f32>::zeros((rows, CLASSES));
    let mut specialists: Vec<Array2<f32>> = subsets
        .iter()
        .map(|s| Array2::zeros((rows, s.len() + 1)))
        .collect();
    for r in 0..rows {
        let label = rng.below(CLASSES);
        let confused = label / GROUP * GROUP + rng.below(GROUP);
        for c in 0..CLASSES {
            generalist[[r, c]] = (1.5 * rng.normal()) as f32;
        }
        generalist[[r, label]] += 6.0;
        if rng.unit() < 0.25 {
            generalist[[r, confused]] += 7.0;
        }
        for (m, s) in subsets.iter().enumerate() {
            let spec = &mut specialists[m];
            for k in 0..=s.len() {
                spec[[r, k]] = (1.5 * rng.normal()) as f32;
            }
            let truth = s
                .iter()
                .position(|&c| c as usize == label)
                .unwrap_or(s.len());
            let said = if rng.unit() < 0.1 {
                rng.below(s.len() + 1)
            } else {
                truth
            };
            spec[[r, said]] += 7.0;
        }
    }
    let inputs: Vec<SpecialistLogits> = subsets
        .iter()
        .zip(&specialists)
        .map(|(classes, l)| SpecialistLogits {
            classes,
            logits: l.view(),
        })
        .collect();
    let threads = rayon::current_num_threads();
    println!(
        "distill-specialists combine bench: {rows} rows, {CLASSES} classes, {} specialists of {GROUP}, \
         {threads} rayon thread(s); best of {REPEATS} runs",
        subsets.len()
    );
    println!(
        "  top-n       rows/s   rows/CPU-s   mean iters   max iters   mean active   max |grad|   not converged"
    );
    for top_n in [1, 2, 3] {
        let options = CombineOptions {
            top_n,
            ..CombineOptions::default()
        };
        let mut best = f64::INFINITY;
        let mut best_cpu = f64::INFINITY;
        let mut last = None;
        for _ in 0..REPEATS {
            let cpu = cpu_seconds();
            let start = Instant::now();
            let out = combine(generalist.view(), &inputs, &options)?;
            best = best.min(start.elapsed().as_secs_f64());
            if let (Some(before), Some(after)) = (cpu, cpu_seconds()) {
                best_cpu = best_cpu.min(after - before);
            }
            last = Some(out);
        }
        let out = last.ok_or("no run")?;
        let iters = out.iterations.iter().map(|&i| i as f64).sum::<f64>() / rows as f64;
        let max_iters = out.iterations.iter().max().copied().unwrap_or(0);
        let active = out.active.len() as f64 / rows as f64;
        let max_grad = out.gradient_norm.iter().fold(0.0f64, |m, &g| m.max(g));
        let per_cpu = if best_cpu.is_finite() && best_cpu > 0.0 {
            format!("{:.0}", rows as f64 / best_cpu)
        } else {
            "-".to_string()
        };
        println!(
            "  {top_n:>5} {:>12.0} {per_cpu:>12} {iters:>12.1} {max_iters:>11} {active:>13.2} {max_grad:>12.1e} {:>15}",
            rows as f64 / best,
            out.not_converged()
        );
    }
    Ok(())
}
