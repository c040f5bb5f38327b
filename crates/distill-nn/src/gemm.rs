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

/// Times every GEMM one training step of an MLP with layer `sizes` issues at batch `batch` (the
/// forward product, the weight gradient and, above the first layer, the input gradient), each on
/// its own as plain SGEMM; returns `(flops, seconds)` with the median of `reps` runs per shape.
/// This is the machine's GEMM figure a training step is measured against.
pub fn time_step_gemms(batch: usize, sizes: &[usize], reps: usize) -> (f64, f64) {
    use ndarray::Array2;
    let mut rng = distill_core::rng::Rng::new(1);
    let mut total_flops = 0.0;
    let mut total_secs = 0.0;
    for (l, w) in sizes.windows(2).enumerate() {
        let (i, o) = (w[0], w[1]);
        // (m, k, n, a transposed, b transposed)
        let mut shapes = vec![(batch, i, o, false, false), (i, batch, o, true, false)];
        if l > 0 {
            shapes.push((batch, o, i, false, true));
        }
        for (m, k, n, ta, tb) in shapes {
            let a =
                Array2::from_shape_simple_fn(if ta { (k, m) } else { (m, k) }, || rng.uniform());
            let b =
                Array2::from_shape_simple_fn(if tb { (n, k) } else { (k, n) }, || rng.uniform());
            let mut c = Array2::<f32>::zeros((m, n));
            let mut run = || {
                let av = if ta { a.t() } else { a.view() };
                let bv = if tb { b.t() } else { b.view() };
                let t = std::time::Instant::now();
                sgemm(1.0, av, bv, 0.0, &mut c.view_mut());
                t.elapsed().as_secs_f64()
            };
            run();
            let mut times: Vec<f64> = (0..reps.max(1)).map(|_| run()).collect();
            times.sort_by(f64::total_cmp);
            total_flops += flops(m, k, n);
            total_secs += times[times.len() / 2];
        }
    }
    (total_flops, total_secs)
}
