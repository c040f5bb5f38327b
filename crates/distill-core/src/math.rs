//! Tempered softmax and the ensemble's soft targets (docs/method.md §1–2), computed stably: the row
//! maximum is subtracted first and logs are taken in log space.

use crate::{CoreError, Result};
use ndarray::{Array2, ArrayView1, ArrayView2, ArrayViewMut1, Axis, Zip};

/// Floor applied to a probability before its log when a *score* is computed (the NLL), so that
/// one confidently wrong row adds at most about 27.6.
pub const PROB_FLOOR: f32 = 1e-12;

/// The logit that stands for a probability of exactly 0 (or a negative rounding error): finite, so
/// every reader's arithmetic stays finite, and so negative that `exp(z / T)` is exactly 0 at any
/// temperature up to 1e28 — the tempered weight of an impossible class stays 0.
pub const ZERO_PROB_LOGIT: f32 = -1e30;

/// `softmax(z / t)` of one row, written into `out`.
pub fn softmax_row(z: ArrayView1<f32>, t: f32, mut out: ArrayViewMut1<f32>) {
    let inv_t = 1.0 / t;
    let max = z.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0.0f32;
    for (o, &v) in out.iter_mut().zip(z.iter()) {
        let e = ((v - max) * inv_t).exp();
        *o = e;
        sum += e;
    }
    let inv = 1.0 / sum;
    out.mapv_inplace(|v| v * inv);
}

/// `log softmax(z / t)` of one row, written into `out`.
pub fn log_softmax_row(z: ArrayView1<f32>, t: f32, mut out: ArrayViewMut1<f32>) {
    let log_q = log_softmax_of(z, t);
    for (o, &v) in out.iter_mut().zip(z.iter()) {
        *o = log_q(v);
    }
}

/// `z_i -> log softmax(z / t)_i` for the row `z`: the row's maximum and log-sum-exp are computed
/// once, so a caller that visits each entry once (the distillation loss) needs no buffer.
#[inline]
pub fn log_softmax_of(z: ArrayView1<f32>, t: f32) -> impl Fn(f32) -> f32 {
    let inv_t = 1.0 / t;
    let max = z.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let log_sum = z
        .iter()
        .map(|&v| ((v - max) * inv_t).exp())
        .sum::<f32>()
        .ln();
    move |v| (v - max) * inv_t - log_sum
}

/// Row-wise `softmax(z / t)`.
pub fn softmax(z: ArrayView2<f32>, t: f32) -> Array2<f32> {
    let mut out = Array2::zeros(z.raw_dim());
    Zip::from(z.rows())
        .and(out.rows_mut())
        .par_for_each(|zr, o| softmax_row(zr, t, o));
    out
}

/// Row-wise `log softmax(z / t)`.
pub fn log_softmax(z: ArrayView2<f32>, t: f32) -> Array2<f32> {
    let mut out = Array2::zeros(z.raw_dim());
    Zip::from(z.rows())
        .and(out.rows_mut())
        .par_for_each(|zr, o| log_softmax_row(zr, t, o));
    out
}

/// Logits that stand for a teacher's probabilities: `ln p`, so that `softmax(logits / T)` is
/// `p^(1/T)` renormalised, exactly for every positive f32 (subnormals included: their log is
/// above −104); a probability of 0 becomes [`ZERO_PROB_LOGIT`]. No floor is applied: a floor of
/// 1e-12 gave a class with p = 1e-20 the weight of p = 1e-12 (0.25 instead of 0.10 at T = 20).
pub fn probabilities_to_logits(p: ArrayView2<f32>) -> Array2<f32> {
    p.mapv(|v| if v > 0.0 { v.ln() } else { ZERO_PROB_LOGIT })
}

/// How the members of an ensemble are combined into one soft target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Combine {
    /// Mean of the members' tempered distributions (the default).
    Arithmetic,
    /// Tempered softmax of the members' mean logits.
    Geometric,
}

impl std::str::FromStr for Combine {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "arithmetic" => Ok(Combine::Arithmetic),
            "geometric" => Ok(Combine::Geometric),
            other => Err(CoreError::invalid(format!(
                "unknown ensemble combination '{other}': use arithmetic or geometric"
            ))),
        }
    }
}

impl std::fmt::Display for Combine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Combine::Arithmetic => "arithmetic",
            Combine::Geometric => "geometric",
        })
    }
}

/// The ensemble's soft target at temperature `t` from each member's logits (all `[N, C]`).
pub fn ensemble_probs(
    members: &[ArrayView2<f32>],
    t: f32,
    combine: Combine,
) -> Result<Array2<f32>> {
    let first = members
        .first()
        .ok_or_else(|| CoreError::invalid("an ensemble needs at least one teacher"))?;
    if let Some(bad) = members.iter().find(|m| m.dim() != first.dim()) {
        return Err(CoreError::invalid(format!(
            "ensemble members disagree in shape: {:?} and {:?}",
            first.dim(),
            bad.dim()
        )));
    }
    let m = members.len() as f32;
    match combine {
        Combine::Arithmetic => {
            let mut acc = Array2::<f32>::zeros(first.raw_dim());
            for member in members {
                acc += &softmax(*member, t);
            }
            acc.mapv_inplace(|v| v / m);
            Ok(acc)
        }
        Combine::Geometric => {
            let mut mean = Array2::<f32>::zeros(first.raw_dim());
            for member in members {
                mean += member;
            }
            mean.mapv_inplace(|v| v / m);
            Ok(softmax(mean.view(), t))
        }
    }
}

/// Index of the largest value in each row.
pub fn argmax_rows(x: ArrayView2<f32>) -> Vec<usize> {
    x.axis_iter(Axis(0))
        .map(|row| {
            let mut best = 0;
            for (i, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = i;
                }
            }
            best
        })
        .collect()
}

/// Rows whose predicted class (the first largest score) is not their label. `scores` may be
/// logits or probabilities: softmax keeps the order. The one error count of every stage.
pub fn error_count(scores: ArrayView2<f32>, labels: &[u32]) -> usize {
    argmax_rows(scores)
        .iter()
        .zip(labels)
        .filter(|&(&p, &y)| p != y as usize)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    // Reference values from NumPy:
    //   z = np.array([1., 2., 3.]); e = np.exp(z / 2); e / e.sum()
    //   -> [0.18632372, 0.30719589, 0.50648039]
    #[test]
    fn errors_count_first_maximum_misses() {
        let logits = ndarray::array![[0.0f32, 2.0, 1.0], [3.0, 1.0, 3.0], [0.0, 0.0, 5.0]];
        // Row 1 is a tie between classes 0 and 2: the first counts.
        assert_eq!(error_count(logits.view(), &[1, 0, 2]), 0);
        assert_eq!(error_count(logits.view(), &[1, 2, 0]), 2);
    }

    #[test]
    fn tempered_softmax_matches_numpy() {
        let z = array![[1.0f32, 2.0, 3.0]];
        let p = softmax(z.view(), 2.0);
        let expected = [0.186_323_7, 0.307_195_9, 0.506_480_4];
        for (a, b) in p.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        let lp = log_softmax(z.view(), 2.0);
        for (a, b) in lp.iter().zip(expected) {
            assert!((a - b.ln()).abs() < 1e-6);
        }
    }

    #[test]
    fn softmax_is_stable_for_huge_logits() {
        let z = array![[1000.0f32, 1001.0, -1000.0]];
        let p = softmax(z.view(), 1.0);
        assert!(p.iter().all(|v| v.is_finite()));
        assert!((p.sum() - 1.0).abs() < 1e-6);
        let lp = log_softmax(z.view(), 1.0);
        assert!(lp.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn probabilities_as_logits_give_powered_distribution() {
        let p = array![[0.7f32, 0.2, 0.1]];
        let t = 3.0;
        let q = softmax(probabilities_to_logits(p.view()).view(), t);
        let pow: Vec<f32> = p.iter().map(|v| v.powf(1.0 / t)).collect();
        let s: f32 = pow.iter().sum();
        for (a, b) in q.iter().zip(pow.iter()) {
            assert!((a - b / s).abs() < 1e-6);
        }
    }

    #[test]
    fn arithmetic_and_geometric_means() {
        let a = array![[2.0f32, 0.0]];
        let b = array![[0.0f32, 2.0]];
        let ar = ensemble_probs(&[a.view(), b.view()], 1.0, Combine::Arithmetic).unwrap();
        assert!((ar[[0, 0]] - 0.5).abs() < 1e-6);
        let a = array![[2.0f32, 0.0]];
        let b = array![[1.0f32, 0.0]];
        let ge = ensemble_probs(&[a.view(), b.view()], 1.0, Combine::Geometric).unwrap();
        let expected = 1.0 / (1.0 + (-1.5f32).exp());
        assert!((ge[[0, 0]] - expected).abs() < 1e-6);
        let ar = ensemble_probs(&[a.view(), b.view()], 1.0, Combine::Arithmetic).unwrap();
        let e1 = 1.0 / (1.0 + (-2.0f32).exp());
        let e2 = 1.0 / (1.0 + (-1.0f32).exp());
        assert!((ar[[0, 0]] - (e1 + e2) / 2.0).abs() < 1e-6);
    }
}
