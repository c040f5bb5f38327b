//! Activation ranges of an MLP on calibration rows: the range of the input and of each hidden
//! layer's ReLU output, the tensors static int8 quantises. The logits are not quantised (see
//! [`crate::graph`]), so they need no range.

use distill_nn::Mlp;
use ndarray::{Array2, ArrayView2, Axis};
use serde::Serialize;

/// How an activation's range is chosen from its calibration values.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "method", rename_all = "lowercase")]
pub enum Calibration {
    /// The smallest and largest value seen: nothing saturates on the calibration rows, but one
    /// outlier widens the step of every other value.
    MinMax,
    /// The `percentile`-th and `(100 - percentile)`-th percentiles of all the tensor's values
    /// (nearest rank): the top `100 - percentile` % saturate, and the rest get a finer step.
    Percentile {
        /// In `(50, 100]`; 100 is min-max.
        percentile: f64,
    },
}

/// The default percentile of [`Calibration::Percentile`]: the 99.99th, which leaves out the
/// rarest values (0.01 %, about 80 of the 819,200 values of an 800-unit layer on 1,024 rows) so
/// that the rest of the range gets finer int8 steps, while covering all but extreme activations.
/// Min-max stays the default calibration: on the MNIST student both give the same test errors,
/// and min-max keeps the logits closer to the float model's (it saturates nothing).
pub const DEFAULT_PERCENTILE: f64 = 99.99;

impl std::fmt::Display for Calibration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Calibration::MinMax => write!(f, "minmax"),
            Calibration::Percentile { percentile } => write!(f, "percentile {percentile}"),
        }
    }
}

/// `(min, max)` of one activation under `calibration`; `values` is reordered.
pub fn range(values: &mut [f32], calibration: Calibration) -> (f32, f32) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    match calibration {
        Calibration::MinMax => values
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            }),
        Calibration::Percentile { percentile } => {
            let n = values.len();
            // Nearest rank: the smallest value with at least p % of the values at or below it.
            let rank = |p: f64| -> usize {
                // The small slack keeps 99.99 % of 10,000 at rank 9,999 despite rounding.
                let r = (p / 100.0 * n as f64 - 1e-9).ceil().max(0.0) as usize;
                r.clamp(1, n) - 1
            };
            let hi_at = rank(percentile);
            let lo_at = rank(100.0 - percentile);
            let (_, &mut hi, _) = values.select_nth_unstable_by(hi_at, f32::total_cmp);
            let (_, &mut lo, _) = values.select_nth_unstable_by(lo_at, f32::total_cmp);
            (lo, hi)
        }
    }
}

/// The calibrated ranges of `mlp` on `rows`: the input's first, then each hidden layer's ReLU
/// output, in order (one entry per layer).
pub fn ranges(mlp: &Mlp, rows: ArrayView2<f32>, calibration: Calibration) -> Vec<(f32, f32)> {
    let mut out = Vec::with_capacity(mlp.layers.len());
    let mut values: Vec<f32> = rows.iter().copied().collect();
    out.push(range(&mut values, calibration));
    let mut h: Array2<f32> = rows.to_owned();
    let hidden = mlp.layers.len().saturating_sub(1);
    for layer in &mlp.layers[..hidden] {
        let mut z = h.dot(&layer.w);
        z += &layer.b.view().insert_axis(Axis(0));
        z.mapv_inplace(|v| v.max(0.0));
        let mut values: Vec<f32> = z.iter().copied().collect();
        out.push(range(&mut values, calibration));
        h = z;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v: Vec<f32> = (1..=10_000).map(|i| i as f32).collect();
        assert_eq!(
            range(&mut v, Calibration::Percentile { percentile: 99.99 }),
            (1.0, 9_999.0)
        );
        assert_eq!(range(&mut v, Calibration::MinMax), (1.0, 10_000.0));
        assert_eq!(
            range(&mut v, Calibration::Percentile { percentile: 100.0 }),
            (1.0, 10_000.0)
        );
    }
}
