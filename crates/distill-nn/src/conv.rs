//! 2-D convolution (groups = 1) on NCHW rows, through im2col and the engine's GEMM.
//!
//! Each example's `[C, H, W]` input becomes a `[C·K·K, P]` matrix (`P = H_out·W_out`; row
//! `(c, ki, kj)` in the order of PyTorch's `[O, C, K, K]` weights holds the input value under
//! that kernel offset at every output position, zero in the padding). The forward pass is then
//! `out = Wᵀ · col` (`[O, P]`, which is the example's NCHW output row as it is), the input
//! gradient `dcol = W · dout` folded back by col2im, and the weight gradient `col · doutᵀ`.
//!
//! Examples are processed in fixed groups of [`GROUP`], each group by one thread on its own
//! buffers with the single-threaded GEMM, so the per-example matrices stay in that core's cache.
//! The weight and bias gradients are summed per group (examples in order) and the groups' sums
//! are added in group order, so results are the same bits on any thread count. The backward pass
//! rebuilds each example's im2col matrix rather than keeping the whole batch's from the forward
//! pass: rebuilding one example's costs less than reading it back from memory.

use crate::gemm::sgemm_serial;
use crate::linear::Linear;
use crate::pool::Window;
use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;

/// Examples per task; fixed so the gradient sums do not depend on the thread count.
pub const GROUP: usize = 8;

/// A convolution: its weights as a [`Linear`] of `C·K·K` inputs and `O` outputs (each column one
/// filter, the vector max-norm bounds) and its geometry.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv2d {
    pub lin: Linear,
    pub window: Window,
}

/// One group's buffers: an example's im2col matrix (reused for its gradient) and the group's
/// weight and bias gradient sums.
struct GroupScratch {
    col: Array2<f32>,
    /// An example's input plane with its zero padding (empty without padding).
    padded: Vec<f32>,
    /// The same for the input gradient.
    dpadded: Vec<f32>,
    gw: Array2<f32>,
    gb: Array1<f32>,
}

/// Buffers of one convolution, reused from one batch to the next.
#[derive(Default)]
pub struct ConvScratch {
    groups: Vec<GroupScratch>,
}

impl ConvScratch {
    fn ensure(&mut self, groups: usize, ckk: usize, p: usize, out: usize, padded: usize) {
        let fits = |g: &GroupScratch| {
            g.col.dim() == (ckk, p) && g.gw.dim() == (ckk, out) && g.padded.len() == padded
        };
        if !self.groups.iter().all(fits) {
            self.groups.clear();
        }
        while self.groups.len() < groups {
            self.groups.push(GroupScratch {
                col: Array2::zeros((ckk, p)),
                padded: vec![0.0; padded],
                dpadded: vec![0.0; padded],
                gw: Array2::zeros((ckk, out)),
                gb: Array1::zeros(out),
            });
        }
    }
}

impl Conv2d {
    pub fn out_channels(&self) -> usize {
        self.lin.outputs()
    }

    fn patch(&self) -> usize {
        self.window.c * self.window.kernel * self.window.kernel
    }

    /// `out` (`[N, O·P]`) = the convolution of `x` (`[N, C·H·W]`) plus the bias.
    pub fn forward(&self, x: ArrayView2<f32>, mut out: ArrayViewMut2<f32>, s: &mut ConvScratch) {
        let (n, p, o) = (x.nrows(), self.window.positions(), self.out_channels());
        s.ensure(n.div_ceil(GROUP), self.patch(), p, o, self.padded_len());
        let wt = self.lin.w.t();
        let bias = self.lin.b.as_slice().expect("contiguous bias");
        out.axis_chunks_iter_mut(Axis(0), GROUP)
            .into_par_iter()
            .zip(x.axis_chunks_iter(Axis(0), GROUP).into_par_iter())
            .zip(s.groups.par_iter_mut())
            .for_each(|((mut out, x), g)| {
                for (out, x) in out.outer_iter_mut().zip(x.outer_iter()) {
                    let x = x.as_slice().expect("contiguous row");
                    self.im2col(x, &mut g.padded, &mut g.col);
                    let mut y = out
                        .into_shape_with_order((o, p))
                        .expect("contiguous output row");
                    sgemm_serial(1.0, wt, g.col.view(), 0.0, &mut y);
                    for (mut row, &b) in y.outer_iter_mut().zip(bias) {
                        row.mapv_inplace(|v| v + b);
                    }
                }
            });
    }

    /// Given the forward pass's input `x` (`[N, C·H·W]`) and `dy` (`[N, O·P]`), writes the
    /// weight and bias gradients into `gw`, `gb`, and the input gradient into `dx` when asked.
    pub fn backward(
        &self,
        x: ArrayView2<f32>,
        dy: ArrayView2<f32>,
        mut dx: Option<ArrayViewMut2<f32>>,
        s: &mut ConvScratch,
        gw: &mut Array2<f32>,
        gb: &mut Array1<f32>,
    ) {
        let (n, p, o) = (x.nrows(), self.window.positions(), self.out_channels());
        let groups = n.div_ceil(GROUP);
        s.ensure(groups, self.patch(), p, o, self.padded_len());
        let w = self.lin.w.view();
        let dx_groups: Vec<Option<ArrayViewMut2<f32>>> = match dx.as_mut() {
            Some(dx) => dx.axis_chunks_iter_mut(Axis(0), GROUP).map(Some).collect(),
            None => (0..groups).map(|_| None).collect(),
        };
        x.axis_chunks_iter(Axis(0), GROUP)
            .into_par_iter()
            .zip(dy.axis_chunks_iter(Axis(0), GROUP).into_par_iter())
            .zip(dx_groups.into_par_iter())
            .zip(s.groups.par_iter_mut())
            .for_each(|(((x, dy), mut dx), g)| {
                for (e, (x, dy)) in x.outer_iter().zip(dy.outer_iter()).enumerate() {
                    let dout = dy.into_shape_with_order((o, p)).expect("contiguous row");
                    let x = x.as_slice().expect("contiguous row");
                    self.im2col(x, &mut g.padded, &mut g.col);
                    let beta = if e == 0 { 0.0 } else { 1.0 };
                    sgemm_serial(1.0, g.col.view(), dout.t(), beta, &mut g.gw.view_mut());
                    for (acc, row) in g.gb.iter_mut().zip(dout.outer_iter()) {
                        *acc = if e == 0 { row.sum() } else { *acc + row.sum() };
                    }
                    if let Some(dx) = dx.as_mut() {
                        sgemm_serial(1.0, w, dout, 0.0, &mut g.col.view_mut());
                        let mut dx = dx.row_mut(e);
                        let dx = dx.as_slice_mut().expect("contiguous row");
                        self.col2im(g.col.view(), &mut g.dpadded, dx);
                    }
                }
            });
        let mut sums = s.groups[..groups].iter();
        let first = sums.next().expect("a non-empty batch");
        gw.assign(&first.gw);
        gb.assign(&first.gb);
        for g in sums {
            *gw += &g.gw;
            *gb += &g.gb;
        }
    }

    /// Values of an example's padded input (0 without padding: im2col reads the input itself).
    fn padded_len(&self) -> usize {
        let (hp, wp) = self.padded();
        if self.window.pad == 0 {
            0
        } else {
            self.window.c * hp * wp
        }
    }

    /// The padded input plane's height and width.
    fn padded(&self) -> (usize, usize) {
        let wd = &self.window;
        (wd.h + 2 * wd.pad, wd.w + 2 * wd.pad)
    }

    /// One example `x` (`C·H·W`) as its `[C·K·K, P]` im2col matrix `col`. With padding, `x` is
    /// first copied into the interior of `padded` (`C·(H+2·pad)·(W+2·pad)`, whose border is zero
    /// and stays so), so every row of `col` is plain copies with no bounds to test.
    fn im2col(&self, x: &[f32], padded: &mut [f32], col: &mut Array2<f32>) {
        let wd = &self.window;
        let (k, s, pad) = (wd.kernel, wd.stride, wd.pad);
        let (hp, wp) = self.padded();
        let src: &[f32] = if pad == 0 {
            x
        } else {
            for (plane, xp) in padded
                .chunks_exact_mut(hp * wp)
                .zip(x.chunks_exact(wd.h * wd.w))
            {
                for (row, xr) in plane[pad * wp..]
                    .chunks_exact_mut(wp)
                    .zip(xp.chunks_exact(wd.w))
                {
                    copy_short(&mut row[pad..pad + wd.w], xr);
                }
            }
            padded
        };
        for (r, mut row) in col.outer_iter_mut().enumerate() {
            let row = row.as_slice_mut().expect("contiguous row");
            let (c, ki, kj) = (r / (k * k), r / k % k, r % k);
            let plane = &src[c * hp * wp..(c + 1) * hp * wp];
            for (oh, out) in row.chunks_exact_mut(wd.out_w).enumerate() {
                let line = &plane[(oh * s + ki) * wp + kj..];
                if s == 1 {
                    copy_short(out, &line[..wd.out_w]);
                } else {
                    for (ow, v) in out.iter_mut().enumerate() {
                        *v = line[ow * s];
                    }
                }
            }
        }
    }

    /// The adjoint of [`Conv2d::im2col`]: sums each entry of `col` (`[C·K·K, P]`) back onto the
    /// input value it was copied from, in row order, through `padded` (the padded plane's size)
    /// when there is padding.
    fn col2im(&self, col: ArrayView2<f32>, padded: &mut [f32], dx: &mut [f32]) {
        let wd = &self.window;
        let (k, s, pad) = (wd.kernel, wd.stride, wd.pad);
        let (hp, wp) = self.padded();
        let dst: &mut [f32] = if pad == 0 { &mut *dx } else { &mut *padded };
        dst.fill(0.0);
        for (r, row) in col.outer_iter().enumerate() {
            let row = row.to_slice().expect("contiguous row");
            let (c, ki, kj) = (r / (k * k), r / k % k, r % k);
            let plane = &mut dst[c * hp * wp..(c + 1) * hp * wp];
            for (oh, grad) in row.chunks_exact(wd.out_w).enumerate() {
                let line = &mut plane[(oh * s + ki) * wp + kj..];
                if s == 1 {
                    for (d, g) in line[..wd.out_w].iter_mut().zip(grad) {
                        *d += g;
                    }
                } else {
                    for (ow, g) in grad.iter().enumerate() {
                        line[ow * s] += g;
                    }
                }
            }
        }
        if pad > 0 {
            for (plane, dp) in dx
                .chunks_exact_mut(wd.h * wd.w)
                .zip(padded.chunks_exact(hp * wp))
            {
                for (row, pr) in plane
                    .chunks_exact_mut(wd.w)
                    .zip(dp[pad * wp..].chunks_exact(wp))
                {
                    copy_short(row, &pr[pad..pad + wd.w]);
                }
            }
        }
    }
}

/// `dst.copy_from_slice(src)` for the short rows of an image, in fixed blocks of 8 that compile
/// to vector moves rather than a call into `memcpy` per row.
#[inline(always)]
fn copy_short(dst: &mut [f32], src: &[f32]) {
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d, s) in (&mut d).zip(&mut s) {
        d.copy_from_slice(s);
    }
    for (d, s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = *s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use distill_core::rng::Rng;

    /// im2col against the window's own index rule ([`Window::source`]) on strided, padded and
    /// odd geometries, and col2im as its adjoint: `<col2im(g), x> = <g, im2col(x)>` in f64.
    #[test]
    fn im2col_matches_the_window_rule_and_col2im_is_its_adjoint() {
        let mut rng = Rng::new(3);
        for &(c, h, w, k, s, pad) in &[
            (1, 5, 5, 3, 1, 0),
            (2, 7, 6, 3, 2, 1),
            (3, 8, 9, 5, 1, 2),
            (2, 9, 7, 4, 3, 2),
            (1, 3, 3, 3, 1, 2),
        ] {
            let window = Window::new(c, h, w, k, s, pad);
            let conv = Conv2d {
                lin: Linear::new(c * k * k, 2, &mut rng),
                window,
            };
            let x: Vec<f32> = (0..c * h * w).map(|_| rng.normal()).collect();
            let p = window.positions();
            let mut col = Array2::zeros((c * k * k, p));
            let mut padded = vec![0.0; conv.padded_len()];
            conv.im2col(&x, &mut padded, &mut col);
            for ch in 0..c {
                for ki in 0..k {
                    for kj in 0..k {
                        for q in 0..p {
                            let want = window.source(q, ki, kj).map_or(0.0, |i| x[ch * h * w + i]);
                            assert_eq!(col[[(ch * k + ki) * k + kj, q]], want, "{window:?}");
                        }
                    }
                }
            }
            let g = Array2::from_shape_simple_fn((c * k * k, p), || rng.normal());
            let mut back = vec![0.0; c * h * w];
            conv.col2im(g.view(), &mut padded, &mut back);
            let lhs: f64 = back
                .iter()
                .zip(&x)
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum();
            let rhs: f64 = g.iter().zip(&col).map(|(a, b)| *a as f64 * *b as f64).sum();
            assert!(
                (lhs - rhs).abs() < 1e-4 * (1.0 + rhs.abs()),
                "{lhs} vs {rhs}"
            );
        }
    }
}
