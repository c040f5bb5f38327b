//! A fully connected layer `y = x · W + b`, with `W` stored `[in, out]` so each column holds one
//! unit's incoming weights (the vector a max-norm constraint bounds).

use crate::gemm::sgemm;
use distill_core::rng::Rng;
use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// How a layer's weights and biases are drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// He-normal weights `N(0, 2 / in)`, zero biases.
    He,
    /// PyTorch's `nn.Linear` default: weights and biases uniform on `±1 / sqrt(in)` (Kaiming
    /// uniform with `a = sqrt(5)`).
    #[default]
    Torch,
}

impl Init {
    pub fn name(self) -> &'static str {
        match self {
            Init::He => "he",
            Init::Torch => "torch",
        }
    }
}

impl std::str::FromStr for Init {
    type Err = crate::NnError;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "he" => Ok(Init::He),
            "torch" => Ok(Init::Torch),
            other => Err(crate::NnError::Shape(format!(
                "unknown initialisation '{other}': use he (He-normal weights, zero biases) or \
                 torch (PyTorch's uniform +-1/sqrt(fan_in) weights and biases)"
            ))),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    /// `[in, out]`.
    pub w: Array2<f32>,
    /// `[out]`.
    pub b: Array1<f32>,
}

impl Linear {
    /// He-normal weights (`N(0, 2 / in)`), zero biases.
    pub fn new(inputs: usize, outputs: usize, rng: &mut Rng) -> Self {
        Self::init(inputs, outputs, Init::He, rng)
    }

    /// A layer drawn as `init` says.
    pub fn init(inputs: usize, outputs: usize, init: Init, rng: &mut Rng) -> Self {
        match init {
            Init::He => {
                let std = (2.0 / inputs as f32).sqrt();
                Linear {
                    w: Array2::from_shape_simple_fn((inputs, outputs), || rng.normal() * std),
                    b: Array1::zeros(outputs),
                }
            }
            Init::Torch => {
                let bound = 1.0 / (inputs as f32).sqrt();
                let mut u = || (2.0 * rng.uniform() - 1.0) * bound;
                let w = Array2::from_shape_simple_fn((inputs, outputs), &mut u);
                let b = Array1::from_shape_simple_fn(outputs, &mut u);
                Linear { w, b }
            }
        }
    }

    pub fn inputs(&self) -> usize {
        self.w.nrows()
    }

    pub fn outputs(&self) -> usize {
        self.w.ncols()
    }

    /// `out = x · W + b`, then ReLU when `relu`, then inverted dropout at `dropout` with masks
    /// drawn from `seed` (see [`crate::dropout::bias_relu_dropout`]).
    pub fn forward_into(
        &self,
        x: ArrayView2<f32>,
        mut out: ArrayViewMut2<f32>,
        relu: bool,
        dropout: f32,
        seed: u64,
    ) {
        sgemm(1.0, x, self.w.view(), 0.0, &mut out);
        let bias = self.b.as_slice();
        crate::dropout::bias_relu_dropout(&mut out, bias, relu, dropout, seed);
    }

    /// Column sums of `dz` (the bias gradient), summed in a fixed order.
    pub fn bias_grad(dz: ArrayView2<f32>) -> Array1<f32> {
        dz.sum_axis(Axis(0))
    }

    /// Rescales every unit whose incoming weight vector is longer than `max_norm` back onto the
    /// ball of that radius.
    pub fn apply_max_norm(&mut self, max_norm: f32) {
        let norms = column_norms(self.w.view());
        self.scale_columns_to(&norms, max_norm);
    }

    /// Given each column's current norm, rescales the columns longer than `max_norm`.
    pub fn scale_columns_to(&mut self, norms: &[f32], max_norm: f32) {
        let scale: Vec<f32> = norms
            .iter()
            .map(|&n| if n > max_norm { max_norm / n } else { 1.0 })
            .collect();
        if scale.iter().all(|&s| s == 1.0) {
            return;
        }
        self.w
            .axis_iter_mut(Axis(0))
            .into_par_iter()
            .for_each(|mut row| {
                for (v, s) in row.iter_mut().zip(&scale) {
                    *v *= s;
                }
            });
    }
}

/// Euclidean norm of each column, accumulated over fixed row chunks in a fixed order.
pub fn column_norms(w: ArrayView2<f32>) -> Vec<f32> {
    let cols = w.ncols();
    let partial: Vec<Vec<f32>> = w
        .axis_chunks_iter(Axis(0), 64)
        .into_par_iter()
        .map(|chunk| {
            let mut acc = vec![0.0f32; cols];
            for row in chunk.rows() {
                for (a, v) in acc.iter_mut().zip(row.iter()) {
                    *a += v * v;
                }
            }
            acc
        })
        .collect();
    let mut total = vec![0.0f32; cols];
    for p in partial {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    total.into_iter().map(f32::sqrt).collect()
}
