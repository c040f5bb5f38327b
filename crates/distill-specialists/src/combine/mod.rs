//! Combining the generalist with its specialists at inference (Hinton, Vinyals and Dean, §5).
//!
//! For one row, with the generalist's distribution `p_g` over all `C` classes:
//!
//! 1. the set `k` holds the generalist's `top_n` most probable classes (ties: the lower class id);
//! 2. the *active* specialists are those whose subset `S_m` intersects `k`;
//! 3. the combined distribution is `q = softmax(z)` minimising
//!    `F(z) = KL(p_g ‖ q) + Σ_{m active} KL(p_m ‖ q_m)`, where `p_m` is specialist `m`'s distribution
//!    over `S_m` plus its dustbin and `q_m` is `q` on `S_m` with every other class's mass lumped into
//!    the dustbin;
//! 4. `z` starts at the generalist's logits and descends `F` (see **Steps** below).
//!
//! **Gradient.** With `q = softmax(z)`, `∂/∂z_j [−Σ_k p_k ln q_m,k] = q_j − p_k(j) · q_j / q_m,k(j)`,
//! where `k(j)` is the group holding class `j` (itself when `j ∈ S_m`, the dustbin otherwise). So
//!
//! ```text
//! ∂F/∂z_j = (1 + |A|) q_j − p_g,j − Σ_m r_m,j,   r_m,j = p_m,j                 if j ∈ S_m
//!                                                 r_m,j = p_m,dustbin · q_j / q_m,dustbin  otherwise
//! ```
//!
//! (each term's lumped `q_m − p_m` mapped back to the classes, the dustbin's share split in
//! proportion to `q`). The components sum to zero, as they must: `F` does not change when a constant
//! is added to `z`.
//!
//! **Convexity and uniqueness.** `q_m` is linear in `q` and KL is convex in its second argument, so `F`
//! is convex in `q` on the simplex, strictly so where `p_g > 0` (the term `−Σ p_g ln q`). In `z` it is
//! not convex in general, but a stationary point in `z` (with `q > 0`) has `∇_q F` constant across
//! classes, which is the optimality condition on the simplex: every stationary point is the global
//! minimum, and it is unique.
//!
//! **Reduction (exact).** Call `U` the union of the active subsets and `O` the other classes. Every
//! class of `O` sits in every active specialist's dustbin, so setting `∂F/∂z_j = 0` for `j ∈ O` gives
//! `q_j = p_g,j / ((1 + |A|) − Σ_m p_m,d / q_m,d)`: at the optimum `q` restricted to `O` is proportional
//! to `p_g` there. The solver therefore optimises `|U| + 1` logits (the classes of `U`, and `O` as one
//! lumped class with target `Σ_O p_g`); the full `z` is the reduced one with `O`'s logit spread over
//! `O`'s classes as the generalist spreads it. `F` and the norm of the full gradient are the same as
//! the reduced problem's (the full gradient on `j ∈ O` is `p̂_j · g_O`, with `p̂` the generalist's
//! distribution within `O`), so nothing is approximated; [`objective`] evaluates the full, unreduced
//! `F` and gradient directly and the tests check the solver with it.
//!
//! **Steps.** Every step moves `z` along a direction `d` with `dᵀ∇F < 0`, from the generalist's
//! logits, and is accepted by backtracking from a step of 1 until Armijo's condition
//! `F(z + t d) ≤ F(z) + 10⁻⁴ t dᵀ∇F` holds (with a relative slack of `10⁻¹⁴` for rounding), so `F`
//! never increases. The plain gradient `d = −∇F` with a fixed step is not enough: `∂F/∂z_j` carries a
//! factor `q_j`, so it all but vanishes on classes of tiny probability whether or not they are
//! right (SciPy's L-BFGS on `z` stalls there on peaked rows: see the test fixture), and it crawls
//! along the nearly flat valleys that appear when several active specialists all put their mass
//! in the dustbin. So the gradient is rescaled:
//!
//! - the first step is the **EM step**: writing `∂F/∂z_j = W q_j − num_j` (`num_j` collects `p_g,j`,
//!   `p_m,j` on the subsets and the dustbins' shares `p_m,d q_j / q_m,d`; `W = 1 + |A|`), `F` is the
//!   cross-entropy of a mixture with hidden class identities inside each dustbin, and `q ← num / W`
//!   is its EM update: it never increases `F`, and with one active specialist it is the exact
//!   minimum at once (the closed form `q_S = (p_g,S + p_m,S)/2`, `q_j = p_g,j (P_O + p_m,d)/(2 P_O)`
//!   elsewhere). As a direction, `d_j = ln(num_j / W) − ln q_j`, which has the sign of `−∂F/∂z_j`;
//! - later steps are **Newton steps** `d = −H⁻¹∇F`, with the exact Hessian
//!   `H = W (diag q − q qᵀ) − Σ_m p_m,d (diag u_m − u_m u_mᵀ)` (`u_m`: `q` renormalised within
//!   specialist `m`'s dustbin) on the logits other than the most probable one (`F` does not change
//!   along `z + const`), solved by Cholesky; where `H` is not positive definite there, or the line
//!   search fails, the EM direction is taken instead, and failing that the gradient step `1/L` with
//!   `L = (1 + |A|)/2` (each term's Hessian is a difference of softmax covariances with eigenvalues
//!   in `[0, 1/2]`, so `‖H‖ ≤ L` and that step always decreases `F`).
//!
//! No move of one logit exceeds 30 nats in a step. The solver stops when
//! `sqrt(Σ_j (∂F/∂z_j)² / q_j)` (the gradient's norm in the metric of `q`, which bounds its
//! Euclidean norm and does not vanish on tiny classes) is at most [`CombineOptions::tolerance`]
//! **and** the Newton step predicts a decrease of `F` below `10⁻²⁴`, or after
//! [`CombineOptions::max_iterations`] steps.
//!
//! A specialist whose subset is every class has an empty dustbin: its dustbin mass has nowhere to go,
//! the term `−p_d ln q_m,d` is a constant (infinite) and is left out, so it weighs `1 − p_d` instead
//! of 1 in the gradient above.

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

mod solver;

use solver::{ClassIndex, RowOutcome, RowSolver, log_sum_exp};

/// Rows solved by one rayon task.
const CHUNK_ROWS: usize = 64;
/// Why a combination could not run.
#[derive(Debug, thiserror::Error)]
pub enum CombineError {
    #[error("the generalist has {classes} classes; a generalist needs at least 2")]
    TooFewClasses { classes: usize },
    #[error("top-n is {top_n}; it must be between 1 and the class count {classes}")]
    TopN { top_n: usize, classes: usize },
    #[error("specialist {index}: {message}")]
    Subset { index: usize, message: String },
    #[error(
        "specialist {index} (classes {classes:?}): its logits are {found_rows}×{found_cols}, \
         expected {rows}×{expected_cols} (one column per class of its subset, then the dustbin)"
    )]
    Shape {
        index: usize,
        classes: Vec<u32>,
        rows: usize,
        expected_cols: usize,
        found_rows: usize,
        found_cols: usize,
    },
    #[error("{model}: row {row} has a non-finite logit ({value}) in column {column}")]
    NonFinite {
        model: String,
        row: usize,
        column: usize,
        value: f32,
    },
}

/// One specialist's outputs for the rows being combined.
#[derive(Clone, Copy, Debug)]
pub struct SpecialistLogits<'a> {
    /// The subset, ascending and distinct: column `k` is class `classes[k]`.
    pub classes: &'a [u32],
    /// `rows × (classes.len() + 1)`; the last column is the dustbin.
    pub logits: ArrayView2<'a, f32>,
}

/// How the combination runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CombineOptions {
    /// How many of the generalist's most probable classes decide the active specialists (the paper: 1).
    pub top_n: usize,
    /// Stop when `sqrt(Σ_j (∂F/∂z_j)² / q_j)` is at most this (and the predicted decrease is
    /// negligible: see the module docs).
    pub tolerance: f64,
    /// Stop after this many steps even when the tolerance is not met.
    pub max_iterations: usize,
}

impl Default for CombineOptions {
    fn default() -> Self {
        Self {
            top_n: 1,
            tolerance: 1e-9,
            max_iterations: 2000,
        }
    }
}

/// The combined distributions of a batch of rows.
#[derive(Clone, Debug)]
pub struct Combined {
    /// `rows × classes` natural-log probabilities `ln q` (rows with no active specialist: the
    /// generalist's own).
    pub log_probs: Array2<f64>,
    /// Steps taken per row (0 with no active specialist).
    pub iterations: Vec<u32>,
    /// Whether the row met the stopping rule before [`CombineOptions::max_iterations`].
    pub converged: Vec<bool>,
    /// Euclidean norm of `∂F/∂z` at the returned `z = ln q`, per row.
    pub gradient_norm: Vec<f64>,
    /// `F` at the returned `q`, per row (0 with no active specialist).
    pub objective: Vec<f64>,
    /// Active specialists (indices into the specialists given) of row `i`:
    /// `active[active_offsets[i]..active_offsets[i + 1]]`, ascending.
    pub active: Vec<u32>,
    pub active_offsets: Vec<usize>,
}

impl Combined {
    pub fn rows(&self) -> usize {
        self.log_probs.nrows()
    }

    /// The active specialists of `row`.
    pub fn active(&self, row: usize) -> &[u32] {
        &self.active[self.active_offsets[row]..self.active_offsets[row + 1]]
    }

    /// Rows that stopped at [`CombineOptions::max_iterations`] before meeting the stopping rule.
    pub fn not_converged(&self) -> usize {
        self.converged.iter().filter(|&&c| !c).count()
    }
}

/// Combines the generalist's logits (`rows × classes`) with the specialists' (see the module docs).
///
/// Fails when a subset is empty, unsorted, or names a class the generalist lacks, when a specialist's
/// logits do not have `rows` rows and one column per subset class plus the dustbin, when `top_n` is 0 or
/// above the class count, or when a logit is NaN or infinite.
pub fn combine(
    generalist: ArrayView2<f32>,
    specialists: &[SpecialistLogits],
    options: &CombineOptions,
) -> Result<Combined, CombineError> {
    let (rows, classes) = generalist.dim();
    check(generalist, specialists, options)?;
    let index = ClassIndex::new(classes, specialists);
    let mut log_probs = vec![0.0f64; rows * classes];
    let mut outcomes = vec![RowOutcome::default(); rows];
    let chunks: Vec<Vec<u32>> = log_probs
        .par_chunks_mut(CHUNK_ROWS * classes)
        .zip(outcomes.par_chunks_mut(CHUNK_ROWS))
        .enumerate()
        .map(|(chunk, (lp, outcome))| {
            let mut solver = RowSolver::new(classes, specialists.len());
            let mut active_ids = Vec::new();
            for (r, o) in outcome.iter_mut().enumerate() {
                *o = solver.solve_row(
                    chunk * CHUNK_ROWS + r,
                    generalist,
                    specialists,
                    &index,
                    options,
                    &mut lp[r * classes..(r + 1) * classes],
                );
                active_ids.push(solver.active.len() as u32);
                active_ids.extend(solver.active.iter().map(|&m| m as u32));
            }
            active_ids
        })
        .collect();
    let mut active = Vec::new();
    let mut active_offsets = Vec::with_capacity(rows + 1);
    active_offsets.push(0);
    for chunk in chunks {
        let mut rest = chunk.as_slice();
        while let Some((&count, tail)) = rest.split_first() {
            let (ids, tail) = tail.split_at(count as usize);
            active.extend_from_slice(ids);
            active_offsets.push(active.len());
            rest = tail;
        }
    }
    let log_probs = Array2::from_shape_vec((rows, classes), log_probs)
        .unwrap_or_else(|_| unreachable!("rows × classes values were allocated"));
    Ok(Combined {
        log_probs,
        iterations: outcomes.iter().map(|o| o.iterations).collect(),
        converged: outcomes.iter().map(|o| o.converged).collect(),
        gradient_norm: outcomes.iter().map(|o| o.gradient_norm).collect(),
        objective: outcomes.iter().map(|o| o.objective).collect(),
        active,
        active_offsets,
    })
}

fn check(
    generalist: ArrayView2<f32>,
    specialists: &[SpecialistLogits],
    options: &CombineOptions,
) -> Result<(), CombineError> {
    let (rows, classes) = generalist.dim();
    if classes < 2 {
        return Err(CombineError::TooFewClasses { classes });
    }
    if options.top_n == 0 || options.top_n > classes {
        return Err(CombineError::TopN {
            top_n: options.top_n,
            classes,
        });
    }
    for (index, s) in specialists.iter().enumerate() {
        let subset = |message: String| Err(CombineError::Subset { index, message });
        if s.classes.is_empty() {
            return subset("its subset is empty; a specialist covers at least one class".into());
        }
        if s.classes.windows(2).any(|w| w[0] >= w[1]) {
            return subset(format!(
                "its classes must be ascending and distinct, found {:?}",
                s.classes
            ));
        }
        if let Some(&c) = s.classes.iter().find(|&&c| c as usize >= classes) {
            return subset(format!(
                "it names class {c}, but the generalist has {classes} classes (0..={})",
                classes - 1
            ));
        }
        let (found_rows, found_cols) = s.logits.dim();
        if found_rows != rows || found_cols != s.classes.len() + 1 {
            return Err(CombineError::Shape {
                index,
                classes: s.classes.to_vec(),
                rows,
                expected_cols: s.classes.len() + 1,
                found_rows,
                found_cols,
            });
        }
    }
    let non_finite = |model: String, logits: ArrayView2<f32>| {
        logits
            .indexed_iter()
            .find(|(_, v)| !v.is_finite())
            .map(|((row, column), &value)| CombineError::NonFinite {
                model,
                row,
                column,
                value,
            })
    };
    if let Some(e) = non_finite("the generalist".into(), generalist) {
        return Err(e);
    }
    for (index, s) in specialists.iter().enumerate() {
        if let Some(e) = non_finite(format!("specialist {index}"), s.logits) {
            return Err(e);
        }
    }
    Ok(())
}

/// The `n` largest entries' indices of `z`, ties to the lower index (`out` is cleared first).
pub fn top_n_classes(z: &[f32], n: usize, out: &mut Vec<usize>) {
    out.clear();
    for (j, &v) in z.iter().enumerate() {
        if out.len() == n && z[out[n - 1]] >= v {
            continue;
        }
        let at = out.iter().position(|&k| z[k] < v).unwrap_or(out.len());
        if out.len() == n {
            out.pop();
        }
        out.insert(at, j);
    }
}

/// One active specialist's distribution, for [`objective`].
#[derive(Clone, Debug)]
pub struct ActiveTerm<'a> {
    /// The subset, as in [`SpecialistLogits::classes`].
    pub classes: &'a [u32],
    /// Its probabilities: one per subset class, then the dustbin.
    pub probs: &'a [f64],
}

/// `F(z)` and `∂F/∂z` over all classes, computed directly from the definition (no reduction): the
/// reference the solver is checked against. `generalist` holds `p_g`.
pub fn objective(z: &[f64], generalist: &[f64], terms: &[ActiveTerm]) -> (f64, Vec<f64>) {
    let lse = log_sum_exp(z);
    let log_q: Vec<f64> = z.iter().map(|&v| v - lse).collect();
    let q: Vec<f64> = log_q.iter().map(|v| v.exp()).collect();
    let xlogy = |p: f64, log_ratio: f64| if p > 0.0 { p * log_ratio } else { 0.0 };
    let mut f: f64 = generalist
        .iter()
        .zip(&log_q)
        .map(|(&p, &lq)| xlogy(p, p.ln() - lq))
        .sum();
    let mut g: Vec<f64> = q.iter().zip(generalist).map(|(&q, &p)| q - p).collect();
    for t in terms {
        let k = t.classes.len();
        let mut inside = vec![false; z.len()];
        for (j, &c) in t.classes.iter().enumerate() {
            let c = c as usize;
            inside[c] = true;
            f += xlogy(t.probs[j], t.probs[j].ln() - log_q[c]);
            g[c] += q[c] - t.probs[j];
        }
        let outside: Vec<usize> = (0..z.len()).filter(|&c| !inside[c]).collect();
        if outside.is_empty() {
            g.iter_mut()
                .zip(&q)
                .zip(&inside)
                .filter(|(_, i)| **i)
                .for_each(|((g, q), _)| *g -= t.probs[k] * q);
            continue;
        }
        let dustbin = t.probs[k];
        let log_qd = log_sum_exp(&outside.iter().map(|&c| log_q[c]).collect::<Vec<_>>());
        f += xlogy(dustbin, dustbin.ln() - log_qd);
        for &c in &outside {
            g[c] += q[c] - dustbin * (log_q[c] - log_qd).exp();
        }
    }
    (f, g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, array};

    #[test]
    fn top_n_breaks_ties_to_the_lower_class() {
        let mut out = Vec::new();
        top_n_classes(&[1.0, 3.0, 3.0, 2.0, 3.0], 2, &mut out);
        assert_eq!(out, [1, 2]);
        top_n_classes(&[1.0, 3.0, 3.0, 2.0, 3.0], 4, &mut out);
        assert_eq!(out, [1, 2, 4, 3]);
        top_n_classes(&[0.5, -1.0], 1, &mut out);
        assert_eq!(out, [0]);
    }

    #[test]
    fn no_active_specialist_returns_the_generalist() {
        let g = array![[2.0f32, 0.5, -1.0, 0.0], [0.0, 0.1, 3.0, 0.2]];
        let s = Array2::<f32>::zeros((2, 2));
        let spec = [SpecialistLogits {
            classes: &[1],
            logits: s.view(),
        }];
        let out = combine(g.view(), &spec, &CombineOptions::default()).unwrap();
        for r in 0..2 {
            assert_eq!(out.iterations[r], 0);
            assert!(out.active(r).is_empty());
            let lse = g.row(r).iter().map(|&v| (v as f64).exp()).sum::<f64>().ln();
            for c in 0..4 {
                assert!((out.log_probs[[r, c]] - (g[[r, c]] as f64 - lse)).abs() < 1e-12);
            }
        }
    }
}
