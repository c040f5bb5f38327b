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

/// Rows solved by one rayon task.
const CHUNK_ROWS: usize = 64;
/// Armijo's sufficient-decrease constant.
const ARMIJO: f64 = 1e-4;
/// Largest move of one logit in one step, in nats.
const MAX_MOVE: f64 = 30.0;
/// Relative slack in the Armijo test for rounding: near the optimum the decrease of `F` falls below
/// the spacing of `f64` values at `F`.
const ROUNDING: f64 = 1e-14;
/// Stop only once the Newton step predicts a decrease of `F` below this (and the gradient is
/// below [`CombineOptions::tolerance`]): along a nearly flat valley the gradient is tiny long
/// before the minimum.
const GAP_TOLERANCE: f64 = 1e-24;
/// Halvings of the step tried along one direction before the next fallback.
const MAX_HALVINGS: usize = 40;

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

/// For each class, the specialists whose subset holds it.
struct ClassIndex {
    offsets: Vec<usize>,
    specialists: Vec<usize>,
}

impl ClassIndex {
    fn new(classes: usize, specialists: &[SpecialistLogits]) -> Self {
        let mut lists = vec![Vec::new(); classes];
        for (m, s) in specialists.iter().enumerate() {
            for &c in s.classes {
                lists[c as usize].push(m);
            }
        }
        let mut offsets = vec![0];
        let mut flat = Vec::new();
        for l in lists {
            flat.extend(l);
            offsets.push(flat.len());
        }
        Self {
            offsets,
            specialists: flat,
        }
    }

    fn of(&self, class: usize) -> &[usize] {
        &self.specialists[self.offsets[class]..self.offsets[class + 1]]
    }
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

/// One active specialist's targets in the reduced problem.
struct Term {
    /// Into `RowSolver::members`: the reduced indices of its subset's classes.
    start: usize,
    len: usize,
    /// Into `RowSolver::in_subset` (`dim` flags).
    mask: usize,
    dustbin: f64,
    /// Whether any reduced class lies outside its subset.
    has_dustbin: bool,
    /// `Σ p ln p` over its groups that can hold mass.
    entropy: f64,
}

/// What one row's solve reports.
#[derive(Clone, Copy, Default)]
struct RowOutcome {
    iterations: u32,
    converged: bool,
    gradient_norm: f64,
    objective: f64,
}

/// The reduced logits and what [`RowSolver::evaluate`] finds there.
#[derive(Default)]
struct Point {
    z: Vec<f64>,
    q: Vec<f64>,
    g: Vec<f64>,
    /// What the terms ask of each class: `p_g`, plus `p_m,c` on a subset, plus the dustbin's mass
    /// split in proportion to `q`; the gradient is `W q − num` and the EM update is `q ← num / W`.
    num: Vec<f64>,
    /// Per active specialist, `ln Σ exp z` over the classes outside its subset.
    log_rest: Vec<f64>,
}

impl Point {
    fn resize(&mut self, dim: usize, terms: usize) {
        for v in [&mut self.z, &mut self.q, &mut self.g, &mut self.num] {
            v.resize(dim, 0.0);
        }
        self.log_rest.resize(terms, 0.0);
    }
}

/// Scratch space for solving rows one after another without allocating.
struct RowSolver {
    /// `reduced[c]`: class `c`'s reduced index when `stamp[c] == row + 1`.
    reduced: Vec<usize>,
    stamp: Vec<usize>,
    seen_specialist: Vec<usize>,
    top: Vec<usize>,
    active: Vec<usize>,
    /// Reduced index → class (the classes of `U`, in the order first met).
    classes_u: Vec<usize>,
    target: Vec<f64>,
    members: Vec<(usize, f64)>,
    in_subset: Vec<bool>,
    terms: Vec<Term>,
    z: Vec<f64>,
    current: Point,
    trial: Point,
    direction: Vec<f64>,
    hessian: Vec<f64>,
    u: Vec<f64>,
    spec_probs: Vec<f64>,
}

impl RowSolver {
    fn new(classes: usize, specialists: usize) -> Self {
        Self {
            reduced: vec![0; classes],
            stamp: vec![0; classes],
            seen_specialist: vec![0; specialists],
            top: Vec::new(),
            active: Vec::new(),
            classes_u: Vec::new(),
            target: Vec::new(),
            members: Vec::new(),
            in_subset: Vec::new(),
            terms: Vec::new(),
            z: Vec::new(),
            current: Point::default(),
            trial: Point::default(),
            direction: Vec::new(),
            hessian: Vec::new(),
            u: Vec::new(),
            spec_probs: Vec::new(),
        }
    }

    fn solve_row(
        &mut self,
        row: usize,
        generalist: ArrayView2<f32>,
        specialists: &[SpecialistLogits],
        index: &ClassIndex,
        options: &CombineOptions,
        out: &mut [f64],
    ) -> RowOutcome {
        let classes = out.len();
        let owned: Vec<f32>;
        let zg_row = generalist.row(row);
        let zg: &[f32] = match zg_row.as_slice() {
            Some(s) => s,
            None => {
                owned = zg_row.to_vec();
                &owned
            }
        };
        let stamp = row + 1;

        top_n_classes(zg, options.top_n, &mut self.top);
        self.active.clear();
        for &c in &self.top {
            for &m in index.of(c) {
                if self.seen_specialist[m] != stamp {
                    self.seen_specialist[m] = stamp;
                    self.active.push(m);
                }
            }
        }
        self.active.sort_unstable();
        if self.active.is_empty() {
            let max = zg.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            let lse = max + zg.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
            for (o, &v) in out.iter_mut().zip(zg) {
                *o = v as f64 - lse;
            }
            return RowOutcome {
                iterations: 0,
                converged: true,
                gradient_norm: 0.0,
                objective: 0.0,
            };
        }

        // The reduced classes: U in the order met, then O (when not empty) as one class.
        self.classes_u.clear();
        for &m in &self.active {
            for &c in specialists[m].classes {
                let c = c as usize;
                if self.stamp[c] != stamp {
                    self.stamp[c] = stamp;
                    self.reduced[c] = self.classes_u.len();
                    self.classes_u.push(c);
                }
            }
        }
        let n_u = self.classes_u.len();
        let has_o = n_u < classes;
        let dim = n_u + usize::from(has_o);

        // The generalist's log-sum-exp over all classes and over O, and Σ_O p̂² for the full norm.
        let mut max_all = f64::NEG_INFINITY;
        let mut max_o = f64::NEG_INFINITY;
        for (c, &v) in zg.iter().enumerate() {
            let v = v as f64;
            max_all = max_all.max(v);
            if self.stamp[c] != stamp {
                max_o = max_o.max(v);
            }
        }
        let (mut sum_o, mut sum_o2) = (0.0, 0.0);
        for (c, &v) in zg.iter().enumerate() {
            if self.stamp[c] != stamp {
                let e = (v as f64 - max_o).exp();
                sum_o += e;
                sum_o2 += e * e;
            }
        }
        let lse_o = max_o + sum_o.ln();
        let o_spread = if has_o { sum_o2 / (sum_o * sum_o) } else { 0.0 };
        let mut sum_u = 0.0;
        for &c in &self.classes_u {
            sum_u += (zg[c] as f64 - max_all).exp();
        }
        let lse_u = max_all + sum_u.ln();
        let lse_all = if has_o {
            log_add_exp(lse_u, lse_o)
        } else {
            lse_u
        };

        self.z.clear();
        self.target.clear();
        for &c in &self.classes_u {
            let v = zg[c] as f64;
            self.z.push(v);
            self.target.push((v - lse_all).exp());
        }
        if has_o {
            self.z.push(lse_o);
            self.target.push((lse_o - lse_all).exp());
        }

        // Each active specialist's distribution and its place in the reduced problem.
        self.members.clear();
        self.in_subset.clear();
        self.terms.clear();
        let mut weight = 1.0;
        for &m in &self.active {
            let s = &specialists[m];
            let logits = s.logits.row(row);
            self.spec_probs.clear();
            self.spec_probs.extend(logits.iter().map(|&v| v as f64));
            softmax_in_place(&mut self.spec_probs);
            let k = s.classes.len();
            let start = self.members.len();
            let mask = self.in_subset.len();
            self.in_subset.resize(mask + dim, false);
            for (j, &c) in s.classes.iter().enumerate() {
                let r = self.reduced[c as usize];
                self.members.push((r, self.spec_probs[j]));
                self.in_subset[mask + r] = true;
            }
            let dustbin = self.spec_probs[k];
            let has_dustbin = k < dim;
            let mut entropy = self.spec_probs[..k]
                .iter()
                .filter(|&&p| p > 0.0)
                .map(|&p| p * p.ln())
                .sum::<f64>();
            if has_dustbin && dustbin > 0.0 {
                entropy += dustbin * dustbin.ln();
            }
            weight += if has_dustbin { 1.0 } else { 1.0 - dustbin };
            self.terms.push(Term {
                start,
                len: k,
                mask,
                dustbin,
                has_dustbin,
                entropy,
            });
        }

        let lipschitz = (1.0 + self.active.len() as f64) / 2.0;
        self.current.resize(dim, self.terms.len());
        self.trial.resize(dim, self.terms.len());
        self.direction.resize(dim, 0.0);
        self.current.z.copy_from_slice(&self.z);
        let (mut f, mut lse) = self.evaluate(weight, false);
        let mut iterations = 0;
        let converged = loop {
            // The first step is EM's (exact at once with one active specialist), then Newton's.
            let newton = if iterations == 0 {
                None
            } else {
                self.newton_direction(weight)
            };
            let converged = iterations > 0
                && self.natural_norm() <= options.tolerance
                && newton.is_none_or(|slope| -slope / 2.0 <= GAP_TOLERANCE);
            if converged || iterations >= options.max_iterations {
                break converged;
            }
            iterations += 1;
            let slack = ROUNDING * f.abs().max(1.0);
            let mut accepted = match newton {
                Some(slope) => self.line_search(weight, f, slope, slack),
                None => None,
            };
            if accepted.is_none() {
                // Each logit moves against its gradient component, by the amount that makes a step
                // of 1 the EM update q ← num / W.
                let mut slope = 0.0;
                for j in 0..dim {
                    let now = self.current.z[j] - lse;
                    let em = (self.current.num[j] / weight).ln();
                    let d = (em - now).clamp(-MAX_MOVE, MAX_MOVE);
                    self.direction[j] = d;
                    slope += d * self.current.g[j];
                }
                accepted = self.line_search(weight, f, slope, slack);
            }
            let (f_trial, lse_trial) = match accepted {
                Some(a) => a,
                None => {
                    // The plain gradient step 1/L, which decreases F whatever the curvature.
                    for j in 0..dim {
                        self.trial.z[j] = self.current.z[j] - self.current.g[j] / lipschitz;
                    }
                    self.evaluate(weight, true)
                }
            };
            std::mem::swap(&mut self.current, &mut self.trial);
            f = f_trial;
            lse = lse_trial;
        };
        let norm = self.full_norm(has_o, o_spread);
        self.z.copy_from_slice(&self.current.z);

        let lse = log_sum_exp(&self.z);
        for (r, &c) in self.classes_u.iter().enumerate() {
            out[c] = self.z[r] - lse;
        }
        if has_o {
            let shift = self.z[n_u] - lse - lse_o;
            for (c, o) in out.iter_mut().enumerate() {
                if self.stamp[c] != stamp {
                    *o = zg[c] as f64 + shift;
                }
            }
        }
        RowOutcome {
            iterations: iterations as u32,
            converged,
            gradient_norm: norm,
            objective: f,
        }
    }

    /// Backtracking from a step of 1 along `direction` (whose inner product with the gradient is
    /// `slope`) until Armijo's condition holds; `None` when it does not within [`MAX_HALVINGS`].
    fn line_search(&mut self, weight: f64, f: f64, slope: f64, slack: f64) -> Option<(f64, f64)> {
        if slope.is_nan() || slope >= 0.0 {
            return None;
        }
        let mut t = 1.0;
        for _ in 0..MAX_HALVINGS {
            for j in 0..self.direction.len() {
                self.trial.z[j] = self.current.z[j] + t * self.direction[j];
            }
            let (f_trial, lse_trial) = self.evaluate(weight, true);
            if f_trial <= f + ARMIJO * t * slope + slack {
                return Some((f_trial, lse_trial));
            }
            t *= 0.5;
        }
        None
    }

    /// The Newton step at the current point into `direction`, and its inner product with the
    /// gradient (`−gᵀH⁻¹g`, twice the predicted decrease of `F`); `None` where the Hessian is not
    /// positive definite on the logits other than the most probable one (held fixed: `F` does not
    /// change along `z + const`).
    ///
    /// `∇²F = W (diag q − q qᵀ) − Σ_m p_m,d (diag u_m − u_m u_mᵀ)`, with `u_m` the distribution of
    /// `q` within specialist `m`'s dustbin (zero on its subset).
    fn newton_direction(&mut self, weight: f64) -> Option<f64> {
        let p = &self.current;
        let dim = p.z.len();
        let reference = (0..dim).fold(0, |b, j| if p.q[j] > p.q[b] { j } else { b });
        let n = dim - 1;
        let index = |j: usize| if j < reference { j } else { j - 1 };
        self.hessian.clear();
        self.hessian.resize(n * n, 0.0);
        let h = &mut self.hessian;
        for j in (0..dim).filter(|&j| j != reference) {
            let a = index(j);
            h[a * n + a] += weight * p.q[j];
            for k in (0..dim).filter(|&k| k != reference) {
                h[a * n + index(k)] -= weight * p.q[j] * p.q[k];
            }
        }
        for (t, term) in self.terms.iter().enumerate() {
            if !term.has_dustbin || term.dustbin <= 0.0 {
                continue;
            }
            let mask = &self.in_subset[term.mask..term.mask + dim];
            self.u.clear();
            self.u.extend((0..dim).map(|j| {
                if mask[j] {
                    0.0
                } else {
                    (p.z[j] - p.log_rest[t]).exp()
                }
            }));
            for j in (0..dim).filter(|&j| j != reference && !mask[j]) {
                let a = index(j);
                h[a * n + a] -= term.dustbin * self.u[j];
                for k in (0..dim).filter(|&k| k != reference && !mask[k]) {
                    h[a * n + index(k)] += term.dustbin * self.u[j] * self.u[k];
                }
            }
        }
        // Cholesky, in place (lower triangle).
        for a in 0..n {
            for b in 0..=a {
                let mut v = h[a * n + b];
                for c in 0..b {
                    v -= h[a * n + c] * h[b * n + c];
                }
                if a == b {
                    if v.is_nan() || v <= 0.0 || !v.is_finite() {
                        return None;
                    }
                    h[a * n + a] = v.sqrt();
                } else {
                    h[a * n + b] = v / h[b * n + b];
                }
            }
        }
        self.direction.clear();
        self.direction
            .extend((0..dim).filter(|&j| j != reference).map(|j| -p.g[j]));
        let x = &mut self.direction;
        for a in 0..n {
            let mut v = x[a];
            for c in 0..a {
                v -= h[a * n + c] * x[c];
            }
            x[a] = v / h[a * n + a];
        }
        for a in (0..n).rev() {
            let mut v = x[a];
            for c in a + 1..n {
                v -= h[c * n + a] * x[c];
            }
            x[a] = v / h[a * n + a];
        }
        x.insert(reference, 0.0);
        let largest = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        if !largest.is_finite() {
            return None;
        }
        if largest > MAX_MOVE {
            let scale = MAX_MOVE / largest;
            x.iter_mut().for_each(|v| *v *= scale);
        }
        let slope: f64 = x.iter().zip(&p.g).map(|(d, g)| d * g).sum();
        (slope < 0.0).then_some(slope)
    }

    /// `sqrt(Σ_j g_j² / q_j)`: the gradient's norm in the metric of `q`, the same for the reduced
    /// and the full problem (on `O`, `Σ_O (p̂_j g_O)² / (p̂_j Q) = g_O² / Q`). It bounds the
    /// Euclidean norm from above and, unlike it, does not vanish on classes of tiny probability.
    fn natural_norm(&self) -> f64 {
        let p = &self.current;
        p.g.iter()
            .zip(&p.q)
            .map(|(g, q)| g * g / q.max(f64::MIN_POSITIVE))
            .sum::<f64>()
            .sqrt()
    }

    /// The full gradient's Euclidean norm from the reduced one: the lumped class's component spreads over `O`
    /// as the generalist's distribution within `O`.
    fn full_norm(&self, has_o: bool, o_spread: f64) -> f64 {
        let g = &self.current.g;
        let n = g.len();
        let (u, o) = if has_o {
            (&g[..n - 1], g[n - 1])
        } else {
            (&g[..], 0.0)
        };
        (u.iter().map(|g| g * g).sum::<f64>() + o * o * o_spread).sqrt()
    }

    /// `F` at `z` (or at `z_trial`), with `q`, the gradient and the EM target `num` at that point
    /// (into the matching buffers); also returns `ln Σ exp z`.
    fn evaluate(&mut self, weight: f64, trial: bool) -> (f64, f64) {
        let at = if trial {
            &mut self.trial
        } else {
            &mut self.current
        };
        let z = &at.z;
        let dim = z.len();
        let max = z.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        let mut sum = 0.0;
        for (q, &v) in at.q.iter_mut().zip(z) {
            *q = (v - max).exp();
            sum += *q;
        }
        let lse = max + sum.ln();
        let inv = 1.0 / sum;
        let mut f = 0.0;
        for ((num, &t), &v) in at.num.iter_mut().zip(&self.target).zip(z) {
            if t > 0.0 {
                f += t * (t.ln() - (v - lse));
            }
            *num = t;
        }
        for (index, term) in self.terms.iter().enumerate() {
            f += term.entropy;
            for &(r, p) in &self.members[term.start..term.start + term.len] {
                if p > 0.0 {
                    f -= p * (z[r] - lse);
                }
                at.num[r] += p;
            }
            if !term.has_dustbin {
                continue;
            }
            let mask = &self.in_subset[term.mask..term.mask + dim];
            // ln Σ_{j outside the subset} exp z_j, from those classes' own maximum when their sum
            // underflows next to the row's maximum.
            let rest: f64 =
                at.q.iter()
                    .zip(mask)
                    .filter(|(_, inside)| !**inside)
                    .map(|(e, _)| e)
                    .sum();
            let log_rest = if rest > sum * 1e-250 {
                rest.ln() + max
            } else {
                let rmax = (0..dim)
                    .filter(|&j| !mask[j])
                    .fold(f64::NEG_INFINITY, |m, j| m.max(z[j]));
                rmax + (0..dim)
                    .filter(|&j| !mask[j])
                    .map(|j| (z[j] - rmax).exp())
                    .sum::<f64>()
                    .ln()
            };
            at.log_rest[index] = log_rest;
            if term.dustbin > 0.0 {
                f -= term.dustbin * (log_rest - lse);
                for ((num, &v), _) in at.num.iter_mut().zip(z).zip(mask).filter(|(_, m)| !**m) {
                    *num += term.dustbin * (v - log_rest).exp();
                }
            }
        }
        for j in 0..dim {
            at.q[j] *= inv;
            at.g[j] = weight * at.q[j] - at.num[j];
        }
        (f, lse)
    }
}

fn log_add_exp(a: f64, b: f64) -> f64 {
    let m = a.max(b);
    m + ((a - m).exp() + (b - m).exp()).ln()
}

fn log_sum_exp(z: &[f64]) -> f64 {
    let max = z.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
    max + z.iter().map(|&v| (v - max).exp()).sum::<f64>().ln()
}

fn softmax_in_place(z: &mut [f64]) {
    let max = z.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0.0;
    for v in z.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in z.iter_mut() {
        *v /= sum;
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
