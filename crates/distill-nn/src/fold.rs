//! A folded output head: the network computes logits `z` over all `total` classes and outputs
//! `[z_{keep[0]}, …, z_{keep[k−1]}, LSE_{c ∈ others}(z_c)]`, the kept classes' logits and one
//! *dustbin* logit, the log-sum-exp of every other class's.
//!
//! `softmax` of the folded logits is exactly `softmax(z)` with the mass of the other classes summed
//! into the dustbin (both are normalised by the same `Σ_c exp(z_c)`). A specialist that starts as
//! its generalist with this head therefore starts as the generalist folded onto its subset and the
//! dustbin, to float precision, and trains every weight of the generalist's network through it.
//!
//! The gradient of a loss `L(f)` of the folded logits `f` is `∂L/∂z_c = ∂L/∂f_k` for the kept class
//! `c = keep[k]`, and `∂L/∂f_dustbin · exp(z_c − f_dustbin)` (the dustbin's share split in
//! proportion to the other classes' probabilities) for the others.
//!
//! In ONNX (opset 18) the head is `Gather` of the kept and of the other columns, `ReduceLogSumExp`
//! over the others, and `Concat`.

use crate::loss::{DistillLoss, LossParts};
use crate::{NnError, Result};
use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2, Axis, Zip};
use serde::{Deserialize, Serialize};

/// Which classes a folded head keeps; every other class goes into the dustbin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fold {
    keep: Vec<u32>,
    others: Vec<u32>,
}

impl Fold {
    /// The head keeping `keep` (ascending, distinct, each below `total`) of `total` classes; at
    /// least one class must be left for the dustbin.
    pub fn new(keep: &[u32], total: usize) -> Result<Self> {
        if keep.windows(2).any(|w| w[0] >= w[1]) {
            return Err(NnError::Shape(format!(
                "a folded head's classes must be ascending and distinct; got {keep:?}"
            )));
        }
        if let Some(&c) = keep.iter().find(|&&c| c as usize >= total) {
            return Err(NnError::Shape(format!(
                "a folded head keeps class {c}, but the network has {total} classes"
            )));
        }
        if keep.len() >= total {
            return Err(NnError::Shape(format!(
                "a folded head keeping all {total} classes would have an empty dustbin"
            )));
        }
        let others = (0..total as u32)
            .filter(|c| keep.binary_search(c).is_err())
            .collect();
        Ok(Fold {
            keep: keep.to_vec(),
            others,
        })
    }

    /// The kept classes, in output order.
    pub fn keep(&self) -> &[u32] {
        &self.keep
    }

    /// The classes folded into the dustbin, ascending.
    pub fn others(&self) -> &[u32] {
        &self.others
    }

    /// The class count of the logits the head folds.
    pub fn total(&self) -> usize {
        self.keep.len() + self.others.len()
    }

    /// Outputs of the head: the kept classes and the dustbin (the last).
    pub fn outputs(&self) -> usize {
        self.keep.len() + 1
    }

    /// Writes the folded logits of `z` (`[N, total]`) into `out` (`[N, outputs]`).
    pub fn forward(&self, z: ArrayView2<f32>, mut out: ArrayViewMut2<f32>) {
        let d = self.keep.len();
        Zip::from(out.axis_iter_mut(Axis(0)))
            .and(z.axis_iter(Axis(0)))
            .for_each(|mut o, z| {
                for (k, &c) in self.keep.iter().enumerate() {
                    o[k] = z[c as usize];
                }
                let m = self
                    .others
                    .iter()
                    .map(|&c| z[c as usize])
                    .fold(f32::NEG_INFINITY, f32::max);
                let s: f32 = self.others.iter().map(|&c| (z[c as usize] - m).exp()).sum();
                o[d] = m + s.ln();
            });
    }

    /// The gradient with respect to `z` (written into `dz`, `[N, total]`) of a loss whose gradient
    /// with respect to the folded logits `folded` (from [`Fold::forward`] of `z`) is `dfolded`.
    pub fn backward(
        &self,
        z: ArrayView2<f32>,
        folded: ArrayView2<f32>,
        dfolded: ArrayView2<f32>,
        mut dz: ArrayViewMut2<f32>,
    ) {
        let d = self.keep.len();
        Zip::from(dz.axis_iter_mut(Axis(0)))
            .and(z.axis_iter(Axis(0)))
            .and(folded.axis_iter(Axis(0)))
            .and(dfolded.axis_iter(Axis(0)))
            .for_each(|mut g, z, f, df| {
                for (k, &c) in self.keep.iter().enumerate() {
                    g[c as usize] = df[k];
                }
                for &c in &self.others {
                    g[c as usize] = df[d] * (z[c as usize] - f[d]).exp();
                }
            });
    }
}

/// Adds `delta` to output `class`'s logit through `bias`, the last layer's (`[total]`): behind a
/// folded head, a kept class's logit moves through its own bias and the dustbin's through the
/// bias of every class folded into it (`LSE(z + δ) = LSE(z) + δ`). `class` is below the model's
/// output width.
pub fn adjust_bias(fold: Option<&Fold>, bias: &mut Array1<f32>, class: usize, delta: f32) {
    match fold {
        None => bias[class] += delta,
        Some(f) if class < f.keep().len() => bias[f.keep()[class] as usize] += delta,
        Some(f) => {
            for &c in f.others() {
                bias[c as usize] += delta;
            }
        }
    }
}

/// The loss of `logits` (`[N, total]`, the last layer's outputs) and its gradient with respect to
/// them, written into `dz`: through the folded head `fold` when there is one (its folded logits
/// and their gradient kept in `folded`, which is cleared otherwise), else on the logits directly.
#[allow(clippy::too_many_arguments)]
pub fn head_loss(
    fold: Option<&Fold>,
    logits: ArrayView2<f32>,
    soft: Option<ArrayView2<f32>>,
    labels: Option<&[u32]>,
    loss: &DistillLoss,
    folded: &mut Option<(Array2<f32>, Array2<f32>)>,
    mut dz: ArrayViewMut2<f32>,
) -> Result<LossParts> {
    let Some(fold) = fold else {
        *folded = None;
        return loss.loss_and_grad(logits, soft, labels, dz);
    };
    let n = logits.nrows();
    let (f, df) = folded.get_or_insert_with(Default::default);
    if f.dim() != (n, fold.outputs()) {
        *f = Array2::zeros((n, fold.outputs()));
        *df = Array2::zeros((n, fold.outputs()));
    }
    fold.forward(logits, f.view_mut());
    let parts = loss.loss_and_grad(f.view(), soft, labels, df.view_mut())?;
    fold.backward(logits, f.view(), df.view(), dz.view_mut());
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use distill_core::math::softmax;
    use distill_core::rng::Rng;
    use ndarray::Array2;

    #[test]
    fn folded_softmax_is_the_full_softmax_with_the_others_summed() {
        let mut rng = Rng::new(5);
        let z = Array2::from_shape_simple_fn((7, 9), || rng.normal() * 4.0);
        let fold = Fold::new(&[1, 4, 8], 9).unwrap();
        assert_eq!(fold.others(), &[0, 2, 3, 5, 6, 7]);
        let mut f = Array2::zeros((7, 4));
        fold.forward(z.view(), f.view_mut());
        let (p, q) = (softmax(z.view(), 1.0), softmax(f.view(), 1.0));
        for r in 0..7 {
            for (k, &c) in [1usize, 4, 8].iter().enumerate() {
                assert!((q[[r, k]] - p[[r, c]]).abs() < 1e-6);
            }
            let rest: f32 = fold.others().iter().map(|&c| p[[r, c as usize]]).sum();
            assert!((q[[r, 3]] - rest).abs() < 1e-6, "{} vs {rest}", q[[r, 3]]);
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        let mut rng = Rng::new(8);
        let z = Array2::from_shape_simple_fn((3, 6), || rng.normal() * 2.0);
        let w = Array2::from_shape_simple_fn((3, 3), || rng.normal());
        let fold = Fold::new(&[0, 3], 6).unwrap();
        // L = Σ w ⊙ f: its gradient with respect to f is w.
        let loss = |z: &Array2<f32>| {
            let mut f = Array2::zeros((3, 3));
            fold.forward(z.view(), f.view_mut());
            (&f * &w).sum() as f64
        };
        let mut f = Array2::zeros((3, 3));
        fold.forward(z.view(), f.view_mut());
        let mut g = Array2::zeros((3, 6));
        fold.backward(z.view(), f.view(), w.view(), g.view_mut());
        for i in 0..3 {
            for j in 0..6 {
                let h = 1e-2f32;
                let (mut plus, mut minus) = (z.clone(), z.clone());
                plus[[i, j]] += h;
                minus[[i, j]] -= h;
                let fd = (loss(&plus) - loss(&minus)) / (2.0 * h as f64);
                assert!(
                    (g[[i, j]] as f64 - fd).abs() < 2e-3 * (1.0 + fd.abs()),
                    "[{i},{j}]: {} vs {fd}",
                    g[[i, j]]
                );
            }
        }
    }

    #[test]
    fn bad_subsets_are_refused() {
        assert!(Fold::new(&[2, 1], 5).is_err());
        assert!(Fold::new(&[1, 1], 5).is_err());
        assert!(Fold::new(&[5], 5).is_err());
        assert!(Fold::new(&[0, 1, 2], 3).is_err());
    }
}
