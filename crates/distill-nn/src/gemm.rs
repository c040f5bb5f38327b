//! The one place GEMMs are issued, so the backend can be chosen by measurement.

use ndarray::{ArrayView2, ArrayViewMut2};

/// `c = alpha * a · b + beta * c`.
pub fn sgemm(
    alpha: f32,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    beta: f32,
    c: &mut ArrayViewMut2<f32>,
) {
    ndarray::linalg::general_mat_mul(alpha, &a, &b, beta, c);
}

/// Floating-point operations of `[m, k] · [k, n]`.
pub fn flops(m: usize, k: usize, n: usize) -> f64 {
    2.0 * m as f64 * k as f64 * n as f64
}
