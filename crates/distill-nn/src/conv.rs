//! 2-D convolution (groups = 1) on NCHW rows, through im2col and the engine's GEMM.
//!
//! Each example's `[C, H, W]` input becomes `P = H_out·W_out` rows of `C·K·K` values (the patch
//! under each output position, in the order `c, ki, kj` of PyTorch's `[O, C, K, K]` weights); all
//! examples' rows stack into one `[N·P, C·K·K]` matrix, so the forward pass is one GEMM with the
//! weights `[C·K·K, O]` and the weight gradient one GEMM whose inner dimension is the whole batch.
//! The GEMM never splits its inner dimension, and the per-example passes (im2col, col2im, the
//! NCHW transposes) each own their example's memory, so results are the same bits on any thread
//! count. Im2col rather than an implicit GEMM: it reuses the tuned GEMM kernels unchanged.

use crate::gemm::sgemm;
use crate::linear::Linear;
use crate::pool::Window;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;

/// A convolution: its weights as a [`Linear`] of `C·K·K` inputs and `O` outputs (each column one
/// filter, the vector max-norm bounds) and its geometry.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv2d {
    pub lin: Linear,
    pub window: Window,
}

/// Buffers of one convolution's training step: the im2col rows (reused for their gradient) and
/// the output by position `[N·P, O]` (reused for its gradient).
#[derive(Default)]
pub struct ConvScratch {
    pub col: Array2<f32>,
    pub pos: Array2<f32>,
}

impl ConvScratch {
    fn ensure(&mut self, rows: usize, ckk: usize, out: usize) {
        if self.col.dim() != (rows, ckk) {
            self.col = Array2::zeros((rows, ckk));
        }
        if self.pos.dim() != (rows, out) {
            self.pos = Array2::zeros((rows, out));
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
        s.ensure(n * p, self.patch(), o);
        s.col
            .axis_chunks_iter_mut(Axis(0), p)
            .into_par_iter()
            .zip(x.axis_iter(Axis(0)).into_par_iter())
            .for_each(|(mut col, x)| self.im2col(x.as_slice().expect("contiguous row"), &mut col));
        sgemm(
            1.0,
            s.col.view(),
            self.lin.w.view(),
            0.0,
            &mut s.pos.view_mut(),
        );
        let bias = &self.lin.b;
        out.axis_iter_mut(Axis(0))
            .into_par_iter()
            .zip(s.pos.axis_chunks_iter(Axis(0), p).into_par_iter())
            .for_each(|(mut row, pos)| {
                for (k, v) in row.iter_mut().enumerate() {
                    let (c, q) = (k / p, k % p);
                    *v = pos[[q, c]] + bias[c];
                }
            });
    }

    /// Given `dy` (`[N, O·P]`) and the scratch of the forward pass, writes the weight and bias
    /// gradients into `gw`, `gb`, and the input gradient into `dx` when asked.
    pub fn backward(
        &self,
        dy: ArrayView2<f32>,
        dx: Option<ArrayViewMut2<f32>>,
        s: &mut ConvScratch,
        gw: &mut Array2<f32>,
        gb: &mut ndarray::Array1<f32>,
    ) {
        let p = self.window.positions();
        s.pos
            .axis_chunks_iter_mut(Axis(0), p)
            .into_par_iter()
            .zip(dy.axis_iter(Axis(0)).into_par_iter())
            .for_each(|(mut pos, dy)| {
                for (k, &v) in dy.iter().enumerate() {
                    pos[[k % p, k / p]] = v;
                }
            });
        sgemm(1.0, s.col.t(), s.pos.view(), 0.0, &mut gw.view_mut());
        gb.assign(&Linear::bias_grad(s.pos.view()));
        let Some(mut dx) = dx else { return };
        sgemm(
            1.0,
            s.pos.view(),
            self.lin.w.t(),
            0.0,
            &mut s.col.view_mut(),
        );
        dx.axis_iter_mut(Axis(0))
            .into_par_iter()
            .zip(s.col.axis_chunks_iter(Axis(0), p).into_par_iter())
            .for_each(|(mut dx, col)| self.col2im(col, dx.as_slice_mut().expect("contiguous row")));
    }

    /// Each output position's patch of one example `x` (`C·H·W`) as a row of `col` (`[P, C·K·K]`);
    /// zero where the patch lies in the padding.
    fn im2col(&self, x: &[f32], col: &mut ArrayViewMut2<f32>) {
        let wd = &self.window;
        for (q, mut row) in col.axis_iter_mut(Axis(0)).enumerate() {
            let row = row.as_slice_mut().expect("contiguous row");
            let mut k = 0;
            for c in 0..wd.c {
                for ki in 0..wd.kernel {
                    for kj in 0..wd.kernel {
                        row[k] = wd.source(q, ki, kj).map_or(0.0, |i| x[c * wd.h * wd.w + i]);
                        k += 1;
                    }
                }
            }
        }
    }

    /// The adjoint of [`Conv2d::im2col`]: sums each patch row's values back onto `dx`.
    fn col2im(&self, col: ArrayView2<f32>, dx: &mut [f32]) {
        let wd = &self.window;
        dx.fill(0.0);
        for (q, row) in col.axis_iter(Axis(0)).enumerate() {
            let mut k = 0;
            for c in 0..wd.c {
                for ki in 0..wd.kernel {
                    for kj in 0..wd.kernel {
                        if let Some(i) = wd.source(q, ki, kj) {
                            dx[c * wd.h * wd.w + i] += row[k];
                        }
                        k += 1;
                    }
                }
            }
        }
    }
}
