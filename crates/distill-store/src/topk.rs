//! The arithmetic of the top-k soft-target layout: what a row keeps (the K largest logits, their
//! class ids and the log of the rest of the softmax mass) and how a reader turns it back into one
//! logit per class.
//!
//! A row `z` of C logits is kept as its K largest values `z_(1) ≥ … ≥ z_(K)` (ties: the lower class
//! id first), their class ids, and `log_rest = ln Σ_{j missing} exp(z_j)`, in the same offset as
//! the logits (no normalisation: logits are shift-invariant, so none is needed). Each of the C − K
//! missing classes is given the logit `log_rest − ln(C − K)`: it receives an equal share of the
//! missing probability mass at T = 1. The softmax at T = 1 of the expanded row is then exactly the
//! full row's for the K kept classes, and the missing classes hold exactly the missing mass
//! together (up to f32 rounding).
//!
//! Why an equal share: with only the rest's total known, nothing tells the missing classes apart,
//! and among fills that are the same for every missing class only this one is exact at T = 1.
//! At T > 1 the true tempered tail `Σ exp(z_j / T)` depends on how the missing logits are spread;
//! an equal share gives the flattest tail the mass allows. `cargo bench -p distill-teach --bench
//! topk` measures it against the alternatives (see [`TailFill`]).

use distill_core::math::ZERO_PROB_LOGIT;

/// How the missing classes of a top-k row get their logit. [`TailFill::EqualMass`] is what the
/// store reader uses; the others exist so the benchmark can measure the choice.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TailFill {
    /// `log_rest − ln(C − K)`: an equal share of the missing probability at T = 1 (exact at T = 1).
    EqualMass,
    /// The K-th kept logit: every missing class as likely as the least likely kept one (an upper
    /// bound; not exact at any T).
    KthLogit,
    /// A given logit for every missing class (e.g. the best one for a given T, known only when the
    /// full row is: the benchmark's oracle).
    Constant(f32),
}

/// One row in the top-k layout.
#[derive(Clone, Debug, PartialEq)]
pub struct TopKRow {
    /// The K largest logits, largest first.
    pub logits: Vec<f32>,
    /// Their class ids.
    pub ids: Vec<u32>,
    /// `ln Σ exp(z_j)` over the classes not kept, in the logits' offset; [`ZERO_PROB_LOGIT`] (or
    /// below) when the missing classes have probability 0 (a probability teacher's `ln 0`).
    pub log_rest: f32,
}

/// Reusable scratch for [`select_into`].
#[derive(Default)]
pub struct Selector {
    order: Vec<u32>,
}

impl Selector {
    /// Writes the K largest logits of `z` (largest first, the lower class id first among equals)
    /// and their ids into `logits` and `ids` (each of length K), and returns `log_rest`.
    ///
    /// `z` must be finite and `1 ≤ K < z.len()`.
    pub fn select_into(&mut self, z: &[f32], logits: &mut [f32], ids: &mut [u32]) -> f32 {
        let k = logits.len();
        debug_assert!(k >= 1 && k < z.len() && ids.len() == k);
        self.order.clear();
        self.order.extend(0..z.len() as u32);
        // Descending by value, ascending by id among equals: a total order, so the result does not
        // depend on the selection algorithm.
        let cmp = |a: &u32, b: &u32| {
            z[*b as usize]
                .total_cmp(&z[*a as usize])
                .then_with(|| a.cmp(b))
        };
        self.order.select_nth_unstable_by(k - 1, cmp);
        let (top, rest) = self.order.split_at_mut(k);
        top.sort_unstable_by(cmp);
        for (i, &c) in top.iter().enumerate() {
            logits[i] = z[c as usize];
            ids[i] = c;
        }
        log_sum_exp(rest.iter().map(|&c| z[c as usize]))
    }
}

/// The top-k row of `z` (see [`Selector::select_into`]).
pub fn select(z: &[f32], k: usize) -> TopKRow {
    let mut logits = vec![0.0; k];
    let mut ids = vec![0; k];
    let log_rest = Selector::default().select_into(z, &mut logits, &mut ids);
    TopKRow {
        logits,
        ids,
        log_rest,
    }
}

/// `ln Σ exp(v)` in f64, shifted by the maximum (so it is finite for any finite values, and
/// equal to the maximum when every other term underflows).
fn log_sum_exp(values: impl Iterator<Item = f32> + Clone) -> f32 {
    let max = values.clone().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return ZERO_PROB_LOGIT;
    }
    let m = f64::from(max);
    let sum: f64 = values.map(|v| (f64::from(v) - m).exp()).sum();
    (m + sum.ln()) as f32
}

/// The logit each missing class gets under `fill`.
pub fn fill_value(fill: TailFill, logits: &[f32], log_rest: f32, classes: usize) -> f32 {
    let missing = classes - logits.len();
    match fill {
        TailFill::EqualMass => {
            if log_rest <= ZERO_PROB_LOGIT {
                ZERO_PROB_LOGIT
            } else {
                (f64::from(log_rest) - (missing as f64).ln()) as f32
            }
        }
        TailFill::KthLogit => logits.last().copied().unwrap_or(ZERO_PROB_LOGIT),
        TailFill::Constant(v) => v,
    }
}

/// Writes the dense row of `classes` logits that a top-k row stands for into `out`.
pub fn expand_into(fill: TailFill, logits: &[f32], ids: &[u32], log_rest: f32, out: &mut [f32]) {
    let v = fill_value(fill, logits, log_rest, out.len());
    out.fill(v);
    for (&c, &z) in ids.iter().zip(logits) {
        out[c as usize] = z;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Softmax at T in f64, straight from the definition (no shared code with the store).
    fn softmax64(z: &[f32], t: f64) -> Vec<f64> {
        let m = z
            .iter()
            .map(|&v| f64::from(v))
            .fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = z.iter().map(|&v| ((f64::from(v) - m) / t).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|v| v / s).collect()
    }

    /// A small deterministic generator, independent of the crate's.
    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*seed >> 11) as f64 / (1u64 << 53) as f64
    }

    #[test]
    fn selection_keeps_the_largest_in_order_with_ties_by_id() {
        let z = [0.5f32, 3.0, -1.0, 3.0, 2.0, 0.5];
        let r = select(&z, 3);
        assert_eq!(r.ids, vec![1, 3, 4]);
        assert_eq!(r.logits, vec![3.0, 3.0, 2.0]);
        let want = (0.5f64.exp() * 2.0 + (-1.0f64).exp()).ln();
        assert!(
            (f64::from(r.log_rest) - want).abs() < 1e-6,
            "{}",
            r.log_rest
        );
        let r = select(&z, 5);
        assert_eq!(r.ids, vec![1, 3, 4, 0, 5]);
        assert_eq!(r.log_rest, -1.0);
    }

    /// The reconstruction is exact at T = 1: the softmax of the expanded row equals the full row's
    /// for every kept class, and the missing classes hold the full row's missing mass, within
    /// 2e-6 relative (f32 storage of logits that reach ±30), against softmax computed here in f64.
    #[test]
    fn expansion_is_exact_at_t1_against_a_direct_softmax() {
        let mut seed = 7u64;
        for &(classes, k) in &[(10usize, 1usize), (10, 3), (10, 9), (1000, 5), (1000, 50)] {
            for row in 0..20 {
                // Gaussian-ish logits with a few dominant classes and a wide range.
                let mut z: Vec<f32> = (0..classes)
                    .map(|_| {
                        (3.0 * (lcg(&mut seed) + lcg(&mut seed) + lcg(&mut seed) - 1.5)) as f32
                    })
                    .collect();
                for d in 0..3 {
                    z[(row * 7 + d * 13) % classes] += 10.0 + 5.0 * d as f32;
                }
                let top = select(&z, k);
                let mut dense = vec![0.0f32; classes];
                expand_into(
                    TailFill::EqualMass,
                    &top.logits,
                    &top.ids,
                    top.log_rest,
                    &mut dense,
                );
                let full = softmax64(&z, 1.0);
                let rec = softmax64(&dense, 1.0);
                for (&c, _) in top.ids.iter().zip(&top.logits) {
                    let (a, b) = (full[c as usize], rec[c as usize]);
                    assert!(
                        (a - b).abs() <= 2e-6 * a.max(1e-30),
                        "{classes}/{k}: class {c}: {a} vs {b}"
                    );
                }
                let kept: std::collections::HashSet<u32> = top.ids.iter().copied().collect();
                let missing = |p: &[f64]| -> f64 {
                    (0..classes)
                        .filter(|c| !kept.contains(&(*c as u32)))
                        .map(|c| p[c])
                        .sum()
                };
                let (a, b) = (missing(&full), missing(&rec));
                assert!((a - b).abs() <= 2e-6 * a, "{classes}/{k}: rest {a} vs {b}");
                // Every missing class is given no more than the least likely kept one.
                let fill = fill_value(TailFill::EqualMass, &top.logits, top.log_rest, classes);
                assert!(
                    fill <= top.logits[k - 1] + 1e-5,
                    "{fill} > {}",
                    top.logits[k - 1]
                );
            }
        }
    }

    #[test]
    fn a_probability_teachers_zero_tail_stays_zero() {
        // ln p with exact zeros stored as ZERO_PROB_LOGIT.
        let p = [0.7f32, 0.2, 0.1, 0.0, 0.0];
        let z: Vec<f32> = p
            .iter()
            .map(|&v| if v > 0.0 { v.ln() } else { ZERO_PROB_LOGIT })
            .collect();
        let top = select(&z, 3);
        assert_eq!(top.ids, vec![0, 1, 2]);
        assert!(top.log_rest <= ZERO_PROB_LOGIT, "{}", top.log_rest);
        let mut dense = vec![0.0f32; 5];
        expand_into(
            TailFill::EqualMass,
            &top.logits,
            &top.ids,
            top.log_rest,
            &mut dense,
        );
        let rec = softmax64(&dense, 20.0);
        assert_eq!(rec[3], 0.0);
        assert_eq!(rec[4], 0.0);
        let top = select(&z, 2);
        assert!((f64::from(top.log_rest) - 0.1f64.ln()).abs() < 1e-6);
    }
}
