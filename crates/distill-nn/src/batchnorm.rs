//! Batch normalisation per channel of NCHW rows, with PyTorch's `BatchNorm2d` conventions:
//! in training each channel is normalised by its batch mean and *biased* variance (over `N·H·W`
//! values) and the running statistics move by momentum 0.1 toward the batch mean and the
//! *unbiased* variance; in evaluation the running statistics are used. `eps` is 1e-5. Channel
//! statistics are summed in f64 in a fixed order, so results do not depend on the thread count.

use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;

pub const MOMENTUM: f32 = 0.1;
pub const EPS: f32 = 1e-5;

#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm2d {
    /// Scale per channel (1 at the start).
    pub gamma: Array1<f32>,
    /// Shift per channel (0 at the start).
    pub beta: Array1<f32>,
    pub running_mean: Array1<f32>,
    pub running_var: Array1<f32>,
    /// Values per channel plane (`H·W`).
    pub plane: usize,
}

/// What a training-mode forward pass keeps for the backward pass and the running update.
#[derive(Default)]
pub struct BnScratch {
    xhat: Array2<f32>,
    inv_std: Vec<f32>,
    mean: Vec<f32>,
    var: Vec<f32>,
}

impl BatchNorm2d {
    pub fn new(channels: usize, plane: usize) -> Self {
        BatchNorm2d {
            gamma: Array1::ones(channels),
            beta: Array1::zeros(channels),
            running_mean: Array1::zeros(channels),
            running_var: Array1::ones(channels),
            plane,
        }
    }

    pub fn channels(&self) -> usize {
        self.gamma.len()
    }

    /// Per channel, `(f(x) summed over every example's plane)` in f64, channels in parallel.
    fn channel_sums(&self, rows: usize, f: impl Fn(usize, usize) -> f64 + Sync) -> Vec<f64> {
        (0..self.channels())
            .into_par_iter()
            .map(|c| {
                let mut s = 0.0f64;
                for n in 0..rows {
                    for k in c * self.plane..(c + 1) * self.plane {
                        s += f(n, k);
                    }
                }
                s
            })
            .collect()
    }

    /// Evaluation: `gamma · (x − running_mean) / sqrt(running_var + eps) + beta`.
    pub fn forward_eval(&self, x: ArrayView2<f32>, out: ArrayViewMut2<f32>) {
        let inv: Vec<f32> = self
            .running_var
            .iter()
            .map(|v| 1.0 / (v + EPS).sqrt())
            .collect();
        let mean = self.running_mean.to_vec();
        let (gamma, beta) = (self.gamma.to_vec(), self.beta.to_vec());
        affine(self.plane, x, out, [&mean, &inv, &gamma, &beta]);
    }

    /// Training: normalises by the batch's statistics and keeps what the backward pass and
    /// [`BatchNorm2d::update_running`] need.
    pub fn forward_train(&self, x: ArrayView2<f32>, out: ArrayViewMut2<f32>, s: &mut BnScratch) {
        let n = x.nrows();
        let count = (n * self.plane) as f64;
        let mean = self.channel_sums(n, |r, k| x[[r, k]] as f64);
        let mean: Vec<f64> = mean.iter().map(|m| m / count).collect();
        let var: Vec<f64> = self
            .channel_sums(n, |r, k| {
                let d = x[[r, k]] as f64 - mean[k / self.plane];
                d * d
            })
            .iter()
            .map(|v| v / count)
            .collect();
        s.mean = mean.iter().map(|&m| m as f32).collect();
        s.var = var.iter().map(|&v| v as f32).collect();
        s.inv_std = var
            .iter()
            .map(|&v| (1.0 / (v + EPS as f64).sqrt()) as f32)
            .collect();
        if s.xhat.dim() != x.dim() {
            s.xhat = Array2::zeros(x.dim());
        }
        let zero = vec![0.0f32; self.channels()];
        let one = vec![1.0f32; self.channels()];
        affine(
            self.plane,
            x,
            s.xhat.view_mut(),
            [&s.mean, &s.inv_std, &one, &zero],
        );
        let (gamma, beta) = (self.gamma.to_vec(), self.beta.to_vec());
        affine(self.plane, s.xhat.view(), out, [&zero, &one, &gamma, &beta]);
    }

    /// Moves the running statistics toward the last training batch's (`rows` examples).
    pub fn update_running(&mut self, s: &BnScratch, rows: usize) {
        let count = (rows * self.plane) as f32;
        let unbias = if count > 1.0 {
            count / (count - 1.0)
        } else {
            1.0
        };
        for c in 0..self.channels() {
            self.running_mean[c] = (1.0 - MOMENTUM) * self.running_mean[c] + MOMENTUM * s.mean[c];
            self.running_var[c] =
                (1.0 - MOMENTUM) * self.running_var[c] + MOMENTUM * s.var[c] * unbias;
        }
    }

    /// Gradients of a training-mode pass: `gamma`'s into `g_gamma`, `beta`'s into `g_beta`, and
    /// the input's into `dx` when asked.
    pub fn backward(
        &self,
        dy: ArrayView2<f32>,
        dx: Option<ArrayViewMut2<f32>>,
        s: &BnScratch,
        g_gamma: &mut Array1<f32>,
        g_beta: &mut Array1<f32>,
    ) {
        let n = dy.nrows();
        let xhat = s.xhat.view();
        let sum_dy = self.channel_sums(n, |r, k| dy[[r, k]] as f64);
        let sum_dy_xhat = self.channel_sums(n, |r, k| (dy[[r, k]] * xhat[[r, k]]) as f64);
        for c in 0..self.channels() {
            g_beta[c] = sum_dy[c] as f32;
            g_gamma[c] = sum_dy_xhat[c] as f32;
        }
        let Some(mut dx) = dx else { return };
        let count = (n * self.plane) as f32;
        let mean_dy: Vec<f32> = sum_dy.iter().map(|&v| v as f32 / count).collect();
        let mean_dy_xhat: Vec<f32> = sum_dy_xhat.iter().map(|&v| v as f32 / count).collect();
        dx.axis_iter_mut(Axis(0))
            .into_par_iter()
            .zip(dy.axis_iter(Axis(0)).into_par_iter())
            .zip(xhat.axis_iter(Axis(0)).into_par_iter())
            .for_each(|((mut dx, dy), xh)| {
                for (k, d) in dx.iter_mut().enumerate() {
                    let c = k / self.plane;
                    *d = self.gamma[c]
                        * s.inv_std[c]
                        * (dy[k] - mean_dy[c] - xh[k] * mean_dy_xhat[c]);
                }
            });
    }
}

/// `out = (x − mean) · inv · gamma + beta` per channel (`[mean, inv, gamma, beta]`), rows in
/// parallel.
fn affine(plane: usize, x: ArrayView2<f32>, mut out: ArrayViewMut2<f32>, p: [&[f32]; 4]) {
    let [mean, inv, gamma, beta] = p;
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(x.axis_iter(Axis(0)).into_par_iter())
        .for_each(|(mut o, x)| {
            for (k, (o, &x)) in o.iter_mut().zip(x.iter()).enumerate() {
                let c = k / plane;
                *o = (x - mean[c]) * inv[c] * gamma[c] + beta[c];
            }
        });
}
