//! The per-row solver of [`super::combine`]: the reduction to the active subsets' classes, the EM
//! first step, Newton steps with the exact Hessian, the Armijo line search and its fallbacks, as
//! the module documentation of `combine` derives them. Kept apart from the API and its checks
//! because it is one algorithm of ~450 lines whose pieces share one scratch space.

use ndarray::ArrayView2;

use super::{CombineOptions, SpecialistLogits, top_n_classes};

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

/// For each class, the specialists whose subset holds it.
pub(super) struct ClassIndex {
    offsets: Vec<usize>,
    specialists: Vec<usize>,
}

impl ClassIndex {
    pub(super) fn new(classes: usize, specialists: &[SpecialistLogits]) -> Self {
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
pub(super) struct RowOutcome {
    pub(super) iterations: u32,
    pub(super) converged: bool,
    pub(super) gradient_norm: f64,
    pub(super) objective: f64,
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
pub(super) struct RowSolver {
    /// `reduced[c]`: class `c`'s reduced index when `stamp[c] == row + 1`.
    reduced: Vec<usize>,
    stamp: Vec<usize>,
    seen_specialist: Vec<usize>,
    top: Vec<usize>,
    pub(super) active: Vec<usize>,
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
    pub(super) fn new(classes: usize, specialists: usize) -> Self {
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

    pub(super) fn solve_row(
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

pub(super) fn log_sum_exp(z: &[f64]) -> f64 {
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
