//! The first layer's products on a sparse input batch.
//!
//! MNIST pixels are scaled to [0, 1] without mean subtraction, so about four in five input values
//! are exactly 0 (blank background), and neighbouring pixels tend to be blank in the same images.
//! A dense GEMM multiplies all of them. These kernels read the batch in groups of [`GROUP`]
//! adjacent input features: for each group, the list of batch rows where any of its features is
//! nonzero, with the group's values in that row (a block-compressed-column form). Every product
//! then runs over those rows only, with all of a group's weights (or sums) in registers, so the
//! arithmetic stays as dense as in a GEMM micro-kernel while the blank parts are skipped:
//!
//! - forward, `out = x · W + b`: per panel of [`BLOCK`] output columns, the panel of `out` for the
//!   whole batch (32 KiB at batch 128) stays in L1 while each group's rows of `W` are loaded once
//!   into registers and added into the batch rows the group lists;
//! - weight gradient, `g = xᵀ · dz`: per group and panel, `g[k, :] = Σ x[i, k] · dz[i, :]` over
//!   the group's rows, summed in registers and fused with the SGD momentum and weight update
//!   (`v = beta * v + alpha * g`, `w += v`) as the dense path's `sgd_update` does for its blocks.
//!   A feature that is zero in the whole batch still takes its momentum step.
//!
//! The engine takes this path when the batch's share of nonzeros is at most [`DENSITY_MAX`] and
//! the grouped form's share of stored values (the work the kernels do, relative to a dense
//! product) is at most [`GROUPED_DENSITY_MAX`], both measured on each batch, and the dense GEMM
//! otherwise, so dense inputs never pay for it.
//!
//! Determinism and rounding: every output element is one chain of fused multiply-adds over the
//! input features in ascending order. The stored zeros of a group add `0 · w`, which leaves a
//! finite sum unchanged, so the result is exactly the sum over the nonzeros in ascending order.
//! The work is split over fixed panels of columns (forward) and blocks of features (weight
//! gradient), so results are bit-for-bit the same on any thread count. They differ from the dense
//! GEMM's by the order of float additions only.
//!
//! The kernels are compiled three times — AVX-512, AVX2 + FMA, and the x86-64 baseline — and the
//! widest the CPU supports is chosen at run time, so one binary runs at full width everywhere.
//!
//! One file of about 600 lines of code (tests below): the grouped form and the kernels that read
//! it share its private layout (row lists, value packing, panel widths), which a split would have
//! to make public to the whole crate.

use ndarray::{ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;

/// The highest share of stored values in the grouped form (listed rows × [`GROUP`] / (rows ×
/// features)) at which the sparse kernels are used: the work they do relative to a dense product.
/// Set from the engine bench's first-layer table (`make bench`, see the README) on an Intel Xeon
/// with AVX-512 at 784 → 800, batch 128: a step with the sparse first layer took as long as the
/// dense one at a stored share of about 0.6 (batches whose nonzeros are scattered at random), and
/// was faster below; MNIST batches store about 0.27. The threshold sits below the crossover so
/// that a batch near it is never slower than the dense path.
pub const GROUPED_DENSITY_MAX: f64 = 0.5;

/// The highest share of nonzero input values (nonzeros / (rows × features)) at which the grouped
/// form is built at all: the grouped share is never below the plain density, so a batch above
/// this cannot pass [`GROUPED_DENSITY_MAX`], and a cheap count of its nonzeros rules it out
/// without building anything.
pub const DENSITY_MAX: f64 = GROUPED_DENSITY_MAX;

/// Adjacent input features per group.
pub const GROUP: usize = 4;
/// Output columns per panel (4 AVX-512 vectors, 8 AVX2 ones).
const BLOCK: usize = 64;
/// Input features per parallel task of the build and of the weight gradient (a multiple of
/// [`GROUP`]).
const FEATURE_ROWS: usize = 64;
/// Rows per partial sum of the column norms (as in the dense update).
const NORM_ROWS: usize = 16;

/// The share of values in `x` that are not 0.
pub fn density(x: ArrayView2<f32>) -> f64 {
    let total = x.len();
    if total == 0 {
        return 0.0;
    }
    let nonzero: usize = match x.as_slice() {
        Some(s) => s
            .par_chunks(16 * 1024)
            .map(|c| c.iter().filter(|&&v| v != 0.0).count())
            .sum(),
        None => x.iter().filter(|&&v| v != 0.0).count(),
    };
    nonzero as f64 / total as f64
}

/// A batch in grouped compressed-column form (see the module notes); buffers are reused from step
/// to step.
#[derive(Clone, Debug, Default)]
pub struct SparseBatch {
    rows: usize,
    cols: usize,
    blocks: Vec<FeatureBlock>,
}

/// The groups of one block of [`FEATURE_ROWS`] features.
#[derive(Clone, Debug, Default)]
struct FeatureBlock {
    /// Group `g`'s entries are `start[g]..start[g] + count[g]` of `index` and `value`; each
    /// group's span has one spare slot at its end, which lets the fill loop store without a
    /// branch on the data.
    start: Vec<usize>,
    count: Vec<u32>,
    /// Batch rows, ascending within a group.
    index: Vec<u32>,
    /// The group's [`GROUP`] values in that row (0 past the last feature).
    value: Vec<[f32; GROUP]>,
}

impl FeatureBlock {
    /// Features `first..first + width` of `x`.
    fn build(&mut self, x: ArrayView2<f32>, first: usize, width: usize) {
        let groups = width.div_ceil(GROUP);
        let x = x.slice(ndarray::s![.., first..first + width]);
        let group_values = |row: ndarray::ArrayView1<f32>, g: usize| {
            let mut v = [0.0f32; GROUP];
            for (t, slot) in v.iter_mut().enumerate() {
                if let Some(&x) = row.get(g * GROUP + t) {
                    *slot = x;
                }
            }
            v
        };
        self.count.clear();
        self.count.resize(groups, 0);
        for row in x.rows() {
            for (g, c) in self.count.iter_mut().enumerate() {
                *c += u32::from(group_values(row, g) != [0.0; GROUP]);
            }
        }
        self.start.clear();
        let mut at = 0;
        for &c in &self.count {
            self.start.push(at);
            at += c as usize + 1;
        }
        self.index.clear();
        self.index.resize(at, 0);
        self.value.clear();
        self.value.resize(at, [0.0; GROUP]);
        let mut next = self.start.clone();
        for (i, row) in x.rows().into_iter().enumerate() {
            for (g, n) in next.iter_mut().enumerate() {
                // An all-zero group is written to the next free slot and then overwritten (or
                // left in the spare slot): no branch on the data.
                let v = group_values(row, g);
                self.index[*n] = i as u32;
                self.value[*n] = v;
                *n += usize::from(v != [0.0; GROUP]);
            }
        }
    }
}

impl SparseBatch {
    /// Rebuilds the grouped form from `x` (`[rows, features]`).
    pub fn build(&mut self, x: ArrayView2<f32>) {
        let (rows, cols) = x.dim();
        self.rows = rows;
        self.cols = cols;
        self.blocks
            .resize_with(cols.div_ceil(FEATURE_ROWS), FeatureBlock::default);
        self.blocks
            .par_iter_mut()
            .enumerate()
            .for_each(|(b, block)| {
                let first = b * FEATURE_ROWS;
                block.build(x, first, FEATURE_ROWS.min(cols - first));
            });
    }

    /// Stored values of the grouped form as a share of `rows × features`: the work of the sparse
    /// kernels relative to a dense product.
    pub fn grouped_density(&self) -> f64 {
        let listed: usize = self
            .blocks
            .iter()
            .flat_map(|b| &b.count)
            .map(|&c| c as usize)
            .sum();
        if self.rows * self.cols == 0 {
            return 0.0;
        }
        (listed * GROUP) as f64 / (self.rows * self.cols) as f64
    }

    /// `(rows, features)` of the batch.
    pub fn dim(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// Group `g` (features `g * GROUP..`): its rows and values.
    #[inline(always)]
    fn group(&self, g: usize) -> (&[u32], &[[f32; GROUP]]) {
        const PER_BLOCK: usize = FEATURE_ROWS / GROUP;
        let block = &self.blocks[g / PER_BLOCK];
        let r = g % PER_BLOCK;
        let span = block.start[r]..block.start[r] + block.count[r] as usize;
        (&block.index[span.clone()], &block.value[span])
    }

    /// `out = x · w + bias` (`w` is `[features, outputs]`).
    ///
    /// # Panics
    /// When the shapes do not chain: a bug in the caller.
    pub fn forward(&self, w: ArrayView2<f32>, bias: &[f32], mut out: ArrayViewMut2<f32>) {
        let n = w.ncols();
        assert!(
            w.nrows() == self.cols && bias.len() == n && out.dim() == (self.rows, n),
            "sparse forward: [{}, {}] · {:?} + [{}] into {:?}",
            self.rows,
            self.cols,
            w.dim(),
            bias.len(),
            out.dim()
        );
        let w = w.as_standard_layout();
        let w = w.as_slice().expect("standard layout");
        let isa = Isa::detect();
        out.axis_chunks_iter_mut(Axis(1), BLOCK)
            .into_par_iter()
            .enumerate()
            .for_each(|(p, mut panel)| {
                let c0 = p * BLOCK;
                let width = panel.ncols();
                let mut buf = vec![0.0f32; self.rows * width];
                for row in buf.chunks_exact_mut(width) {
                    row.copy_from_slice(&bias[c0..c0 + width]);
                }
                isa.forward_panel(self, w, n, c0, width, &mut buf);
                for (mut o, b) in panel.rows_mut().into_iter().zip(buf.chunks_exact(width)) {
                    o.iter_mut().zip(b).for_each(|(o, &b)| *o = b);
                }
            });
    }

    /// The weight gradient `xᵀ · dz`, fused with an update of `v` (`[features, outputs]`):
    /// `v = beta * v + alpha * xᵀ · dz` (with `beta = 0`, `v` is overwritten), then `w += v`
    /// when `w` is given. With `norms`, also returns each column's Euclidean norm of `w` after
    /// the update (for max-norm), summed over fixed 16-row chunks in a fixed order.
    ///
    /// # Panics
    /// When the shapes do not chain, `v` or `w` is not in standard layout, or `norms` is asked
    /// without `w`: a bug in the caller.
    pub fn weight_update(
        &self,
        dz: ArrayView2<f32>,
        alpha: f32,
        beta: f32,
        mut v: ArrayViewMut2<f32>,
        mut w: Option<ArrayViewMut2<f32>>,
        norms: bool,
    ) -> Option<Vec<f32>> {
        let n = dz.ncols();
        assert!(
            dz.nrows() == self.rows
                && v.dim() == (self.cols, n)
                && w.as_ref().is_none_or(|w| w.dim() == (self.cols, n))
                && (!norms || w.is_some())
                && v.is_standard_layout()
                && w.as_ref().is_none_or(|w| w.is_standard_layout()),
            "sparse weight gradient: [{}, {}]ᵀ · {:?} into {:?}",
            self.rows,
            self.cols,
            dz.dim(),
            v.dim()
        );
        let dz = dz.as_standard_layout();
        let dz = dz.as_slice().expect("standard layout");
        let isa = Isa::detect();
        let blocks: Vec<_> = match w.as_mut() {
            Some(w) => v
                .axis_chunks_iter_mut(Axis(0), FEATURE_ROWS)
                .zip(w.axis_chunks_iter_mut(Axis(0), FEATURE_ROWS))
                .map(|(vb, wb)| (vb, Some(wb)))
                .collect(),
            None => v
                .axis_chunks_iter_mut(Axis(0), FEATURE_ROWS)
                .map(|vb| (vb, None))
                .collect(),
        };
        let partial: Vec<Vec<Vec<f32>>> = blocks
            .into_par_iter()
            .enumerate()
            .map(|(b, (mut vb, mut wb))| {
                let update = Update {
                    first_group: b * FEATURE_ROWS / GROUP,
                    alpha,
                    beta,
                };
                let vs = vb.as_slice_mut().expect("checked above");
                let ws = wb
                    .as_mut()
                    .map(|wb| wb.as_slice_mut().expect("checked above"));
                isa.update_block(self, dz, n, &update, vs, ws);
                match (norms, wb) {
                    (true, Some(wb)) => norm_partials(wb.view()),
                    _ => Vec::new(),
                }
            })
            .collect();
        norms.then(|| column_norms(partial, n))
    }
}

/// Squared column sums of `w` over fixed chunks of [`NORM_ROWS`] rows, in row order.
pub(crate) fn norm_partials(w: ArrayView2<f32>) -> Vec<Vec<f32>> {
    let cols = w.ncols();
    w.axis_chunks_iter(Axis(0), NORM_ROWS)
        .map(|chunk| {
            let mut acc = vec![0.0f32; cols];
            for row in chunk.rows() {
                for (s, x) in acc.iter_mut().zip(row.iter()) {
                    *s += x * x;
                }
            }
            acc
        })
        .collect()
}

/// The column norms of a matrix from the [`norm_partials`] of its row blocks, given in row order:
/// the squared sums added chunk by chunk in that fixed order (so the result does not depend on
/// how the blocks were spread over threads), then the square root.
pub(crate) fn column_norms(partials: Vec<Vec<Vec<f32>>>, cols: usize) -> Vec<f32> {
    let mut total = vec![0.0f32; cols];
    for p in partials.into_iter().flatten() {
        for (t, x) in total.iter_mut().zip(p) {
            *t += x;
        }
    }
    total.into_iter().map(f32::sqrt).collect()
}

/// One block of the fused weight update: its first group, and `v = beta * v + alpha * g`.
struct Update {
    first_group: usize,
    alpha: f32,
    beta: f32,
}

/// The vector instructions the kernels are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Isa {
    Avx512,
    Avx2Fma,
    Baseline,
}

impl Isa {
    fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2_fma = std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma");
            if avx2_fma && std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if avx2_fma {
                return Isa::Avx2Fma;
            }
        }
        Isa::Baseline
    }

    #[allow(unsafe_code)]
    fn forward_panel(
        self,
        x: &SparseBatch,
        w: &[f32],
        n: usize,
        c0: usize,
        width: usize,
        buf: &mut [f32],
    ) {
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Isa::detect` returns Avx512 only after `is_x86_feature_detected!` has
            // confirmed AVX-512F, AVX2 and FMA on this CPU, the features the wrapper is compiled
            // for; it is otherwise safe Rust with bounds-checked indexing.
            Isa::Avx512 => unsafe { forward_panel_avx512(x, w, n, c0, width, buf) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: Avx2Fma is returned only after AVX2 and FMA were confirmed at run time.
            Isa::Avx2Fma => unsafe { forward_panel_avx2(x, w, n, c0, width, buf) },
            _ => forward_panel::<false>(x, w, n, c0, width, buf),
        }
    }

    #[allow(unsafe_code)]
    fn update_block(
        self,
        x: &SparseBatch,
        dz: &[f32],
        n: usize,
        u: &Update,
        v: &mut [f32],
        w: Option<&mut [f32]>,
    ) {
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as in `forward_panel`.
            Isa::Avx512 => unsafe { update_block_avx512(x, dz, n, u, v, w) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as in `forward_panel`.
            Isa::Avx2Fma => unsafe { update_block_avx2(x, dz, n, u, v, w) },
            _ => update_block::<false>(x, dz, n, u, v, w),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn forward_panel_avx512(
    x: &SparseBatch,
    w: &[f32],
    n: usize,
    c0: usize,
    width: usize,
    buf: &mut [f32],
) {
    forward_panel::<true>(x, w, n, c0, width, buf)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn forward_panel_avx2(
    x: &SparseBatch,
    w: &[f32],
    n: usize,
    c0: usize,
    width: usize,
    buf: &mut [f32],
) {
    forward_panel::<true>(x, w, n, c0, width, buf)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn update_block_avx512(
    x: &SparseBatch,
    dz: &[f32],
    n: usize,
    u: &Update,
    v: &mut [f32],
    w: Option<&mut [f32]>,
) {
    update_block::<true>(x, dz, n, u, v, w)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn update_block_avx2(
    x: &SparseBatch,
    dz: &[f32],
    n: usize,
    u: &Update,
    v: &mut [f32],
    w: Option<&mut [f32]>,
) {
    update_block::<true>(x, dz, n, u, v, w)
}

#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// `buf` (`[rows, width]`, holding the bias) += `x · w[:, c0..c0 + width]`, in sub-panels of
/// [`BLOCK`] (or 16, or 1) columns.
#[inline(always)]
fn forward_panel<const FMA: bool>(
    x: &SparseBatch,
    w: &[f32],
    n: usize,
    c0: usize,
    width: usize,
    buf: &mut [f32],
) {
    let mut c = 0;
    while c + BLOCK <= width {
        forward_sub::<BLOCK, FMA>(x, w, n, c0, width, c, buf);
        c += BLOCK;
    }
    while c + 16 <= width {
        forward_sub::<16, FMA>(x, w, n, c0, width, c, buf);
        c += 16;
    }
    while c < width {
        forward_sub::<1, FMA>(x, w, n, c0, width, c, buf);
        c += 1;
    }
}

/// One sub-panel of `B` columns: each group's `GROUP` rows of `w` are held in registers and
/// added into every batch row the group lists, feature by feature in ascending order.
#[inline(always)]
fn forward_sub<const B: usize, const FMA: bool>(
    x: &SparseBatch,
    w: &[f32],
    n: usize,
    c0: usize,
    width: usize,
    c: usize,
    buf: &mut [f32],
) {
    for g in 0..x.cols.div_ceil(GROUP) {
        let (rows, values) = x.group(g);
        if rows.is_empty() {
            continue;
        }
        let mut wg = [[0.0f32; B]; GROUP];
        for (t, wt) in wg.iter_mut().enumerate() {
            let k = g * GROUP + t;
            if k < x.cols {
                let at = k * n + c0 + c;
                wt.copy_from_slice(&w[at..at + B]);
            }
        }
        for (&i, xv) in rows.iter().zip(values) {
            let o = i as usize * width + c;
            let out: &mut [f32; B] = (&mut buf[o..o + B]).try_into().expect("row in bounds");
            let mut acc = *out;
            for (wt, &xt) in wg.iter().zip(xv) {
                for j in 0..B {
                    acc[j] = madd::<FMA>(xt, wt[j], acc[j]);
                }
            }
            *out = acc;
        }
    }
}

/// The fused update of one block of features (`v` and `w` are its rows, `[features, n]`), in
/// panels of [`BLOCK`] (or 16, or 1) columns.
#[inline(always)]
fn update_block<const FMA: bool>(
    x: &SparseBatch,
    dz: &[f32],
    n: usize,
    u: &Update,
    v: &mut [f32],
    mut w: Option<&mut [f32]>,
) {
    let mut c = 0;
    while c + BLOCK <= n {
        update_sub::<BLOCK, FMA>(x, dz, n, u, c, v, w.as_deref_mut());
        c += BLOCK;
    }
    while c + 16 <= n {
        update_sub::<16, FMA>(x, dz, n, u, c, v, w.as_deref_mut());
        c += 16;
    }
    while c < n {
        update_sub::<1, FMA>(x, dz, n, u, c, v, w.as_deref_mut());
        c += 1;
    }
}

/// One panel of `B` columns of the fused update: per group, the `GROUP` gradient rows are summed
/// in registers over the group's batch rows (ascending), then `v` and `w` are updated.
#[inline(always)]
fn update_sub<const B: usize, const FMA: bool>(
    x: &SparseBatch,
    dz: &[f32],
    n: usize,
    u: &Update,
    c: usize,
    v: &mut [f32],
    mut w: Option<&mut [f32]>,
) {
    let features = v.len() / n;
    for local in 0..features.div_ceil(GROUP) {
        let (rows, values) = x.group(u.first_group + local);
        let mut acc = [[0.0f32; B]; GROUP];
        for (&i, xv) in rows.iter().zip(values) {
            let at = i as usize * n + c;
            let d: &[f32; B] = dz[at..at + B].try_into().expect("panel in bounds");
            for (a, &xt) in acc.iter_mut().zip(xv) {
                for j in 0..B {
                    a[j] = madd::<FMA>(xt, d[j], a[j]);
                }
            }
        }
        for (t, a) in acc.iter().enumerate() {
            let r = local * GROUP + t;
            if r >= features {
                break;
            }
            let at = r * n + c;
            let vr: &mut [f32; B] = (&mut v[at..at + B]).try_into().expect("row in bounds");
            if u.beta == 0.0 {
                for j in 0..B {
                    vr[j] = u.alpha * a[j];
                }
            } else {
                for j in 0..B {
                    vr[j] = u.beta * vr[j] + u.alpha * a[j];
                }
            }
            if let Some(w) = w.as_deref_mut() {
                let wr: &mut [f32; B] = (&mut w[at..at + B]).try_into().expect("row in bounds");
                for j in 0..B {
                    wr[j] += vr[j];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::sgemm;
    use distill_core::rng::Rng;
    use ndarray::{Array1, Array2};

    /// A batch with about `keep` of its values nonzero, some rows and columns all zero.
    fn sparse_batch(rows: usize, cols: usize, keep: f32, seed: u64) -> Array2<f32> {
        let mut rng = Rng::new(seed);
        let mut x = Array2::from_shape_simple_fn((rows, cols), || {
            if rng.uniform() < keep {
                rng.uniform()
            } else {
                0.0
            }
        });
        x.row_mut(1).fill(0.0);
        x.column_mut(2).fill(0.0);
        x
    }

    #[test]
    fn density_counts_nonzeros() {
        let x = Array2::from_shape_vec((2, 4), vec![0.0, 1.0, 0.0, 0.0, 2.0, 0.0, -3.0, 0.0])
            .expect("shape");
        assert_eq!(density(x.view()), 3.0 / 8.0);
        assert_eq!(density(x.t()), 3.0 / 8.0);
        assert_eq!(density(Array2::<f32>::zeros((0, 3)).view()), 0.0);
    }

    /// Forward and weight gradient against the dense GEMM, on widths that leave partial blocks
    /// (64 + 16 + 3 columns), within a relative tolerance for the different summation order.
    #[test]
    fn matches_the_dense_products() {
        let (rows, inputs, outputs) = (37, 90, 83);
        let x = sparse_batch(rows, inputs, 0.2, 1);
        let mut rng = Rng::new(2);
        let w = Array2::from_shape_simple_fn((inputs, outputs), || rng.normal());
        let bias = Array1::from_shape_simple_fn(outputs, || rng.normal());
        let dz = Array2::from_shape_simple_fn((rows, outputs), || rng.normal());
        let mut sb = SparseBatch::default();
        sb.build(x.view());
        let groups_listed = (0..inputs.div_ceil(GROUP))
            .map(|g| {
                (0..rows)
                    .filter(|&i| {
                        (g * GROUP..(g * GROUP + GROUP).min(inputs)).any(|k| x[[i, k]] != 0.0)
                    })
                    .count()
            })
            .sum::<usize>();
        assert_eq!(
            sb.grouped_density(),
            (groups_listed * GROUP) as f64 / (rows * inputs) as f64
        );

        let mut want = Array2::zeros((rows, outputs));
        sgemm(1.0, x.view(), w.view(), 0.0, &mut want.view_mut());
        want += &bias;
        let mut got = Array2::from_elem((rows, outputs), f32::NAN);
        sb.forward(w.view(), bias.as_slice().expect("bias"), got.view_mut());
        close(&got, &want, "forward");

        // Plain gradient (beta 0 overwrites a NaN-filled v; no weights).
        let mut g_want = Array2::zeros((inputs, outputs));
        sgemm(1.0, x.t(), dz.view(), 0.0, &mut g_want.view_mut());
        let mut g = Array2::from_elem((inputs, outputs), f32::NAN);
        assert!(
            sb.weight_update(dz.view(), 1.0, 0.0, g.view_mut(), None, false)
                .is_none()
        );
        close(&g, &g_want, "gradient");
        assert!(g.row(2).iter().all(|&v| v == 0.0));

        // The fused momentum step: v = 0.9 v - 0.05 g; w += v; column norms of the new w.
        let v0 = Array2::from_shape_simple_fn((inputs, outputs), || rng.normal() * 0.01);
        let v_want = &v0 * 0.9 - &g_want * 0.05;
        let w_want = &w + &v_want;
        let (mut v, mut w1) = (v0.clone(), w.clone());
        let norms = sb
            .weight_update(
                dz.view(),
                -0.05,
                0.9,
                v.view_mut(),
                Some(w1.view_mut()),
                true,
            )
            .expect("norms");
        close(&v, &v_want, "velocity");
        close(&w1, &w_want, "weights");
        // A feature that is zero in every row still takes its momentum step.
        assert_eq!(v.row(2), (&v0.row(2) * 0.9));
        for (a, b) in norms.iter().zip(crate::linear::column_norms(w1.view())) {
            assert!((a - b).abs() <= 1e-5 * b, "{a} vs {b}");
        }
    }

    fn close(got: &Array2<f32>, want: &Array2<f32>, what: &str) {
        for ((i, j), &g) in got.indexed_iter() {
            let w = want[[i, j]];
            assert!(
                (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                "{what} at ({i},{j}): {g} vs {w}"
            );
        }
    }

    /// Same bits on 1 thread and on 3, for both products.
    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let (rows, inputs, outputs) = (130, 200, 150);
        let x = sparse_batch(rows, inputs, 0.25, 3);
        let mut rng = Rng::new(4);
        let w = Array2::from_shape_simple_fn((inputs, outputs), || rng.normal());
        let bias: Vec<f32> = (0..outputs).map(|_| rng.normal()).collect();
        let dz = Array2::from_shape_simple_fn((rows, outputs), || rng.normal());
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool");
            pool.install(|| {
                let mut sb = SparseBatch::default();
                sb.build(x.view());
                let mut h = Array2::zeros((rows, outputs));
                sb.forward(w.view(), &bias, h.view_mut());
                let (mut v, mut w1) = (Array2::from_elem((inputs, outputs), 0.01f32), w.clone());
                let norms = sb.weight_update(
                    dz.view(),
                    -0.05,
                    0.9,
                    v.view_mut(),
                    Some(w1.view_mut()),
                    true,
                );
                (h, v, w1, norms)
            })
        };
        assert_eq!(run(1), run(3));
    }
}
