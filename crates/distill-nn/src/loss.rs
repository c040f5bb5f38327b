//! The distillation loss of docs/method.md §3, averaged over the batch:
//!
//! `L = alpha * T² * CE(p(T), softmax(s / T)) + (1 - alpha) * CE(onehot(y), softmax(s))`
//!
//! Its gradient with respect to a student logit is
//! `alpha * T * (q_i - p_i) + (1 - alpha) * (softmax(s)_i - y_i)`, divided by the batch size.
//!
//! The soft term is *reported* as `T² * KL(p(T) ‖ softmax(s / T))`: the cross-entropy minus the
//! teachers' entropy `H(p)`, which does not depend on the student, so the gradient is the same,
//! and the number falls toward 0 as the student matches the teachers (the cross-entropy would
//! level off at `T² * H(p)`, which is large at high `T`).

use crate::{NnError, Result};
use distill_core::math::{log_softmax_of, log_softmax_row};
use ndarray::{Array1, ArrayView2, ArrayViewMut2, Axis, Zip};

/// Weights of the two terms.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DistillLoss {
    /// `T`, used in the student's softmax for the soft term.
    pub temperature: f32,
    /// Weight of the soft term; `1 - alpha` weighs the hard term.
    pub alpha: f32,
}

impl DistillLoss {
    /// Plain cross-entropy on hard labels.
    pub fn hard() -> Self {
        DistillLoss {
            temperature: 1.0,
            alpha: 0.0,
        }
    }
}

/// The loss of one batch (means over its rows), by term, each unweighted.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossParts {
    /// `T² * KL(p(T) ‖ softmax(s / T))`: 0 when the student matches the teachers (0 when the
    /// soft term's weight is 0).
    pub soft: f64,
    /// `CE(onehot(y), softmax(s))` (0 when the hard term's weight is 0).
    pub hard: f64,
    /// The soft term's weight `alpha`.
    pub alpha: f64,
}

impl LossParts {
    /// `alpha * soft + (1 - alpha) * hard`: the loss minimised, less the constant
    /// `alpha * T² * H(p)`.
    pub fn total(&self) -> f64 {
        weighted(self.alpha, self.soft, self.hard)
    }
}

/// `alpha * soft + (1 - alpha) * hard`, leaving out a term whose weight is 0.
pub fn weighted(alpha: f64, soft: f64, hard: f64) -> f64 {
    let mut total = 0.0;
    if alpha > 0.0 {
        total += alpha * soft;
    }
    if alpha < 1.0 {
        total += (1.0 - alpha) * hard;
    }
    total
}

impl DistillLoss {
    /// Loss of `logits` against soft targets `soft` (`[N, C]` probabilities at this loss's
    /// temperature) and `labels`, with its gradient written into `grad`.
    pub fn loss_and_grad(
        &self,
        logits: ArrayView2<f32>,
        soft: Option<ArrayView2<f32>>,
        labels: Option<&[u32]>,
        mut grad: ArrayViewMut2<f32>,
    ) -> Result<LossParts> {
        let (n, c) = logits.dim();
        let alpha = self.alpha;
        let t = self.temperature;
        if alpha > 0.0 && soft.is_none() {
            return Err(NnError::Shape(
                "a soft-target weight above 0 needs soft targets".into(),
            ));
        }
        if alpha < 1.0 && labels.is_none() {
            return Err(NnError::Shape(
                "a hard-label weight above 0 (alpha < 1) needs labels; use alpha 1 for unlabeled data"
                    .into(),
            ));
        }
        if let Some(s) = soft
            && s.dim() != (n, c)
        {
            return Err(NnError::Shape(format!(
                "soft targets of shape {:?} for logits of shape {:?}",
                s.dim(),
                (n, c)
            )));
        }
        if let Some(l) = labels {
            if l.len() != n {
                return Err(NnError::Shape(format!("{} labels for {n} rows", l.len())));
            }
            if let Some(bad) = l.iter().find(|&&y| y as usize >= c) {
                return Err(NnError::Shape(format!(
                    "label {bad} is not below the class count {c}"
                )));
            }
        }
        let inv_n = 1.0 / n as f32;
        let mut soft_loss = Array1::<f64>::zeros(n);
        let mut hard_loss = Array1::<f64>::zeros(n);
        let soft_view = soft.unwrap_or(logits);
        Zip::indexed(logits.rows())
            .and(soft_view.rows())
            .and(grad.rows_mut())
            .and(&mut soft_loss)
            .and(&mut hard_loss)
            .par_for_each(|r, s, p, mut g, sl, hl| {
                g.fill(0.0);
                if alpha > 0.0 {
                    let log_q = log_softmax_of(s, t);
                    let mut kl = 0.0f64;
                    for i in 0..c {
                        let lq = log_q(s[i]);
                        if p[i] > 0.0 {
                            let pi = p[i] as f64;
                            kl += pi * (pi.ln() - lq as f64);
                        }
                        g[i] += alpha * t * (lq.exp() - p[i]) * inv_n;
                    }
                    *sl = (t * t) as f64 * kl;
                }
                if alpha < 1.0 {
                    let y = labels.map_or(0, |l| l[r] as usize);
                    let log_q = log_softmax_of(s, 1.0);
                    *hl = -(log_q(s[y]) as f64);
                    for i in 0..c {
                        let onehot = if i == y { 1.0 } else { 0.0 };
                        g[i] += (1.0 - alpha) * (log_q(s[i]).exp() - onehot) * inv_n;
                    }
                }
            });
        Ok(LossParts {
            soft: soft_loss.iter().sum::<f64>() / n as f64,
            hard: hard_loss.iter().sum::<f64>() / n as f64,
            alpha: alpha as f64,
        })
    }
}

/// Mean cross-entropy of logits against labels (no gradient).
pub fn cross_entropy(logits: ArrayView2<f32>, labels: &[u32]) -> f64 {
    let c = logits.ncols();
    let mut lq = Array1::<f32>::zeros(c);
    let mut total = 0.0f64;
    for (row, &y) in logits.axis_iter(Axis(0)).zip(labels) {
        log_softmax_row(row, 1.0, lq.view_mut());
        total -= lq[y as usize] as f64;
    }
    total / labels.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use distill_core::math::softmax;
    use distill_core::rng::Rng;
    use ndarray::Array2;

    fn loss_value(l: &DistillLoss, s: &Array2<f32>, p: &Array2<f32>, y: &[u32]) -> f64 {
        let mut g = Array2::zeros(s.raw_dim());
        l.loss_and_grad(s.view(), Some(p.view()), Some(y), g.view_mut())
            .unwrap()
            .total()
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let mut rng = Rng::new(11);
        let (n, c) = (4, 6);
        let s = Array2::from_shape_simple_fn((n, c), || rng.normal() * 2.0);
        let teacher = Array2::from_shape_simple_fn((n, c), || rng.normal() * 3.0);
        let y: Vec<u32> = (0..n).map(|_| rng.below(c) as u32).collect();
        for (t, alpha) in [(1.0, 0.0), (2.0, 0.5), (20.0, 1.0), (4.0, 0.9)] {
            let l = DistillLoss {
                temperature: t,
                alpha,
            };
            let p = softmax(teacher.view(), t);
            let mut g = Array2::zeros((n, c));
            l.loss_and_grad(s.view(), Some(p.view()), Some(&y), g.view_mut())
                .unwrap();
            let s64 = s.mapv(|v| v as f64);
            for i in 0..n {
                for j in 0..c {
                    let h = 1e-2f32;
                    let mut plus = s64.mapv(|v| v as f32);
                    plus[[i, j]] += h;
                    let mut minus = s64.mapv(|v| v as f32);
                    minus[[i, j]] -= h;
                    let fd = (loss_value(&l, &plus, &p, &y) - loss_value(&l, &minus, &p, &y))
                        / (2.0 * h as f64);
                    let a = g[[i, j]] as f64;
                    assert!(
                        (a - fd).abs() < 2e-3 * (1.0 + fd.abs()),
                        "T={t} alpha={alpha} [{i},{j}]: analytic {a}, finite difference {fd}"
                    );
                }
            }
        }
    }

    // NumPy reference: s=[1,2,3], p=[0.2,0.3,0.5], T=2
    //   q = softmax(s/2) = [0.18632372, 0.30719589, 0.50648039]
    //   CE = -(p*log q).sum() = 1.03026967;  H(p) = 1.02965301
    //   T²·KL = T²·(p*(log p - log q)).sum() = 0.0024666263
    #[test]
    fn soft_term_matches_numpy() {
        let s = ndarray::array![[1.0f32, 2.0, 3.0]];
        let p = ndarray::array![[0.2f32, 0.3, 0.5]];
        let l = DistillLoss {
            temperature: 2.0,
            alpha: 1.0,
        };
        let mut g = Array2::zeros((1, 3));
        let parts = l
            .loss_and_grad(s.view(), Some(p.view()), None, g.view_mut())
            .unwrap();
        assert!((parts.soft - 0.002_466_626).abs() < 1e-6, "{}", parts.soft);
        assert_eq!(parts.hard, 0.0);
        assert_eq!(parts.total(), parts.soft);
    }

    /// The reported soft term is 0 for a student whose tempered softmax is the teachers'
    /// distribution, and the hard term is the plain cross-entropy whatever alpha is.
    #[test]
    fn soft_term_is_zero_at_a_perfect_match_and_hard_term_is_unweighted() {
        let s = ndarray::array![[1.0f32, -2.0, 0.5, 3.0], [0.0, 0.1, -0.4, 2.0]];
        let t = 20.0;
        let p = softmax(s.view(), t);
        let y = [3u32, 1];
        let l = DistillLoss {
            temperature: t,
            alpha: 0.7,
        };
        let mut g = Array2::zeros(s.raw_dim());
        let parts = l
            .loss_and_grad(s.view(), Some(p.view()), Some(&y), g.view_mut())
            .unwrap();
        // T² = 400 magnifies float32 rounding of log q; 1e-3 is far below the teachers' entropy
        // (about 555 here) that the cross-entropy would have reported.
        assert!(parts.soft.abs() < 1e-3, "{}", parts.soft);
        let ce = cross_entropy(s.view(), &y);
        assert!((parts.hard - ce).abs() < 1e-6, "{} vs {ce}", parts.hard);
        assert_eq!(parts.alpha, 0.7f32 as f64);
        let total = parts.alpha * parts.soft + (1.0 - parts.alpha) * parts.hard;
        assert!((parts.total() - total).abs() < 1e-12);
    }

    #[test]
    fn high_temperature_gradient_approaches_logit_matching() {
        // docs/method.md §3: for zero-mean logits and large T, the soft gradient times T² tends to
        // (s - v) / N_classes (here for a single row).
        let s = ndarray::array![[0.5f32, -0.2, -0.3]];
        let v = ndarray::array![[-0.1f32, 0.4, -0.3]];
        let t = 200.0;
        let l = DistillLoss {
            temperature: t,
            alpha: 1.0,
        };
        let p = softmax(v.view(), t);
        let mut g = Array2::zeros((1, 3));
        l.loss_and_grad(s.view(), Some(p.view()), None, g.view_mut())
            .unwrap();
        for j in 0..3 {
            // g = alpha * T * (q - p); the paper's gradient (1/T)(q - p) scaled by T² is this.
            let expected = (s[[0, j]] - v[[0, j]]) / 3.0;
            assert!(
                (g[[0, j]] - expected).abs() < 1e-3,
                "{} vs {expected}",
                g[[0, j]]
            );
        }
    }
}
