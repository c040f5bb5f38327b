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
/// example into `arg` (`N·C·P` values) for the backward pass. Windows lie inside the input (no
/// padding), as [`Window::new`] with `pad` 0 makes them.
pub fn max_forward(wd: &Window, x: ArrayView2<f32>, mut out: ArrayViewMut2<f32>, arg: &mut [u32]) {
    debug_assert_eq!(wd.pad, 0, "max pooling has no padding");
    let per = out.ncols();
    let (k, s, plane) = (wd.kernel, wd.stride, wd.h * wd.w);
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(x.axis_iter(Axis(0)).into_par_iter())
        .zip(arg.par_chunks_mut(per))
        .for_each(|((mut out, x), arg)| {
            let out = out.as_slice_mut().expect("contiguous row");
            let x = x.to_slice().expect("contiguous row");
            let mut q = 0;
            for c in 0..wd.c {
                for oh in 0..wd.out_h {
                    for ow in 0..wd.out_w {
                        let corner = c * plane + oh * s * wd.w + ow * s;
                        let (mut best, mut at) = (x[corner], corner);
                        for ki in 0..k {
                            let row = corner + ki * wd.w;
                            for (i, &v) in x[row..row + k].iter().enumerate() {
                                if v > best {
                                    (best, at) = (v, row + i);
                                }
                            }
                        }
                        out[q] = best;
                        arg[q] = at as u32;
                        q += 1;
                    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    /// Max pooling against a scan of each window through [`Window::source`], on overlapping,
    /// strided and non-dividing geometries, with values drawn from a few levels so windows hold
    /// ties (the first maximum in row-major window order must win).
    #[test]
    fn max_forward_takes_the_first_maximum_of_each_window() {
        let mut rng = distill_core::rng::Rng::new(9);
        for &(c, h, w, k, s) in &[(2, 6, 6, 2, 2), (3, 7, 5, 3, 2), (1, 9, 8, 3, 1)] {
            let wd = Window::new(c, h, w, k, s, 0);
            let x = Array2::from_shape_simple_fn((3, c * h * w), || (rng.uniform() * 4.0).floor());
            let per = c * wd.positions();
            let mut out = Array2::zeros((3, per));
            let mut arg = vec![0u32; 3 * per];
            max_forward(&wd, x.view(), out.view_mut(), &mut arg);
            for n in 0..3 {
                for ch in 0..c {
                    for q in 0..wd.positions() {
                        let mut best: Option<(f32, usize)> = None;
                        for ki in 0..k {
                            for kj in 0..k {
                                let i = ch * h * w + wd.source(q, ki, kj).expect("inside");
                                if best.is_none_or(|(b, _)| x[[n, i]] > b) {
                                    best = Some((x[[n, i]], i));
                                }
                            }
                        }
                        let (v, i) = best.expect("a window");
                        let o = ch * wd.positions() + q;
                        assert_eq!((out[[n, o]], arg[n * per + o]), (v, i as u32), "{wd:?}");
                    }
                }
            }
        }
    }
}
