//! Inference speed of one model: latency at batch 1 and throughput at batch 256, as medians of repeated runs
//! after warm-up runs that are not counted.

use std::time::Instant;

use distill_core::stats::median;
use distill_runtime::{OnnxModel, Result};
use ndarray::{Array2, ArrayView2, Axis};
use serde::Serialize;

/// The most timed batch-1 runs `--latency-runs` may ask for (a million: minutes per model even
/// for the smallest, and a few megabytes of timings).
pub const MAX_LATENCY_RUNS: usize = 1_000_000;

/// Batch size of the throughput measurement.
pub const THROUGHPUT_BATCH: usize = 256;

/// Measured speed of one model.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Speed {
    /// Median wall time of one `run` on one row, in milliseconds.
    pub latency_ms_batch1: f64,
    /// `256 / median wall time of one run on 256 rows`, in rows per second.
    pub rows_per_s_batch256: f64,
}

/// How many runs each measurement makes, given the batch-1 run count `runs` (at least 1).
///
/// Batch 1: `runs` timed runs after `clamp(runs / 10, 1, 20)` warm-up runs. Batch 256: `max(runs / 10, 3)`
/// timed runs after 2 warm-up runs.
pub fn plan(runs: usize) -> [(usize, usize); 2] {
    let runs = runs.max(1);
    [((runs / 10).clamp(1, 20), runs), (2, (runs / 10).max(3))]
}

/// Measures `model` on rows of `x` (`[N, D]`, `N > 0`): the first row for batch 1, and the first 256 rows (repeated
/// cyclically when there are fewer) for batch 256, following [`plan`]. The time includes everything
/// [`OnnxModel::run`] does (normalisation, layout, the fixed-batch splitting of models that need it).
pub fn measure(model: &mut OnnxModel, x: ArrayView2<f32>, runs: usize) -> Result<Speed> {
    let [(warm1, runs1), (warm256, runs256)] = plan(runs);
    let n = x.nrows().max(1);
    let one = x.select(Axis(0), &[0]);
    let rows: Vec<usize> = (0..THROUGHPUT_BATCH).map(|i| i % n).collect();
    let batch = x.select(Axis(0), &rows);
    let latency = median_seconds(model, &one, warm1, runs1)?;
    let batch_time = median_seconds(model, &batch, warm256, runs256)?;
    Ok(Speed {
        latency_ms_batch1: latency * 1e3,
        rows_per_s_batch256: THROUGHPUT_BATCH as f64 / batch_time.max(f64::MIN_POSITIVE),
    })
}

fn median_seconds(model: &mut OnnxModel, x: &Array2<f32>, warm: usize, runs: usize) -> Result<f64> {
    for _ in 0..warm {
        model.run(x.view())?;
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        model.run(x.view())?;
        times.push(start.elapsed().as_secs_f64());
    }
    Ok(median(&mut times))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_counts_runs() {
        assert_eq!(plan(200), [(20, 200), (2, 20)]);
        assert_eq!(plan(5), [(1, 5), (2, 3)]);
    }
}
