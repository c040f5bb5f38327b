//! Pooling on NCHW rows: max pooling (the first maximum of a window wins, as in PyTorch), average
//! pooling (no padding, so every window averages `K·K` values) and global average pooling. Each
//! example is its own task, so results do not depend on the thread count.

use ndarray::{ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;

/// The geometry of a sliding `K×K` window over `[C, H, W]` with stride and zero padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
    pub out_h: usize,
    pub out_w: usize,
}

impl Window {
    /// The window over `[c, h, w]`; the caller has checked it fits (see [`crate::arch`]).
    pub fn new(c: usize, h: usize, w: usize, kernel: usize, stride: usize, pad: usize) -> Self {
        Window {
            c,
            h,
            w,
            kernel,
            stride,
            pad,
            out_h: (h + 2 * pad - kernel) / stride + 1,
            out_w: (w + 2 * pad - kernel) / stride + 1,
        }
    }

    /// Output positions per channel.
    pub fn positions(&self) -> usize {
        self.out_h * self.out_w
    }

    /// The index within a channel's `H·W` plane under offset `(ki, kj)` of the window at output
    /// position `q`, or `None` in the padding.
    #[inline]
    pub fn source(&self, q: usize, ki: usize, kj: usize) -> Option<usize> {
        let i = (q / self.out_w * self.stride + ki).checked_sub(self.pad)?;
        let j = (q % self.out_w * self.stride + kj).checked_sub(self.pad)?;
        (i < self.h && j < self.w).then_some(i * self.w + j)
    }
}

/// Max pooling: writes each window's maximum into `out` (`[N, C·P]`) and its index within the
/// example into `arg` (`N·C·P` values) for the backward pass.
pub fn max_forward(wd: &Window, x: ArrayView2<f32>, mut out: ArrayViewMut2<f32>, arg: &mut [u32]) {
    let per = out.ncols();
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(x.axis_iter(Axis(0)).into_par_iter())
        .zip(arg.par_chunks_mut(per))
        .for_each(|((mut out, x), arg)| {
            let p = wd.positions();
            for c in 0..wd.c {
                let plane = c * wd.h * wd.w;
                for q in 0..p {
                    let mut best: Option<(f32, usize)> = None;
                    for ki in 0..wd.kernel {
                        for kj in 0..wd.kernel {
                            if let Some(i) = wd.source(q, ki, kj) {
                                let v = x[plane + i];
                                if best.is_none_or(|(b, _)| v > b) {
                                    best = Some((v, plane + i));
                                }
                            }
                        }
                    }
                    let (v, i) = best.unwrap_or((0.0, plane));
                    out[c * p + q] = v;
                    arg[c * p + q] = i as u32;
                }
            }
        });
}

/// Max pooling's input gradient: each output's gradient goes to its window's maximum.
pub fn max_backward(dy: ArrayView2<f32>, arg: &[u32], mut dx: ArrayViewMut2<f32>) {
    let per = dy.ncols();
    dx.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(dy.axis_iter(Axis(0)).into_par_iter())
        .zip(arg.par_chunks(per))
        .for_each(|((mut dx, dy), arg)| {
            dx.fill(0.0);
            for (&g, &i) in dy.iter().zip(arg) {
                dx[i as usize] += g;
            }
        });
}

/// Average pooling over windows that lie inside the input (no padding).
pub fn avg_forward(wd: &Window, x: ArrayView2<f32>, mut out: ArrayViewMut2<f32>) {
    let inv = 1.0 / (wd.kernel * wd.kernel) as f32;
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(x.axis_iter(Axis(0)).into_par_iter())
        .for_each(|(mut out, x)| {
            let p = wd.positions();
            for c in 0..wd.c {
                let plane = c * wd.h * wd.w;
                for q in 0..p {
                    let mut sum = 0.0f32;
                    for ki in 0..wd.kernel {
                        for kj in 0..wd.kernel {
                            if let Some(i) = wd.source(q, ki, kj) {
                                sum += x[plane + i];
                            }
                        }
                    }
                    out[c * p + q] = sum * inv;
                }
            }
        });
}

/// Average pooling's input gradient.
pub fn avg_backward(wd: &Window, dy: ArrayView2<f32>, mut dx: ArrayViewMut2<f32>) {
    let inv = 1.0 / (wd.kernel * wd.kernel) as f32;
    dx.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(dy.axis_iter(Axis(0)).into_par_iter())
        .for_each(|(mut dx, dy)| {
            dx.fill(0.0);
            let p = wd.positions();
            for c in 0..wd.c {
                let plane = c * wd.h * wd.w;
                for q in 0..p {
                    let g = dy[c * p + q] * inv;
                    for ki in 0..wd.kernel {
                        for kj in 0..wd.kernel {
                            if let Some(i) = wd.source(q, ki, kj) {
                                dx[plane + i] += g;
                            }
                        }
                    }
                }
            }
        });
}

/// Global average pooling: `[N, C·H·W]` to `[N, C]`, the mean of each channel's plane.
pub fn gap_forward(x: ArrayView2<f32>, mut out: ArrayViewMut2<f32>) {
    let plane = x.ncols() / out.ncols();
    let inv = 1.0 / plane as f32;
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(x.axis_iter(Axis(0)).into_par_iter())
        .for_each(|(mut out, x)| {
            for (c, o) in out.iter_mut().enumerate() {
                *o = x.slice(ndarray::s![c * plane..(c + 1) * plane]).sum() * inv;
            }
        });
}

/// Global average pooling's input gradient.
pub fn gap_backward(dy: ArrayView2<f32>, mut dx: ArrayViewMut2<f32>) {
    let plane = dx.ncols() / dy.ncols();
    let inv = 1.0 / plane as f32;
    dx.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(dy.axis_iter(Axis(0)).into_par_iter())
        .for_each(|(mut dx, dy)| {
            for (k, v) in dx.iter_mut().enumerate() {
                *v = dy[k / plane] * inv;
            }
        });
}
