//! The one place GEMMs are issued, so the backend can be chosen by measurement.
//!
//! The backend is the `gemm-f32` crate (the f32 kernels of the `gemm` family): it picks its
//! micro-kernel when first called, from the CPU it runs on — AVX-512 on CPUs that have it, AVX2 +
//! FMA otherwise, plain scalar code on anything older — so one binary is fast on every x86-64 CPU
//! without `-C target-cpu=native`. It splits the output into tiles over rayon's current pool (the
//! training threads) and never splits the inner dimension `k`: each output element is summed in
//! the same order whatever the thread count, and results are bit-for-bit reproducible on one
//! machine. ndarray's own `general_mat_mul` (matrixmultiply, AVX2 kernels at most) stays
//! reachable as [`Backend::MatrixMultiply`] so `make bench` can show the choice is still right.

use ndarray::{ArrayView2, ArrayViewMut2};

/// A GEMM implementation this binary carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `gemm-f32`, micro-kernel chosen at run time (the engine's backend).
    Gemm,
    /// ndarray's `general_mat_mul` (matrixmultiply).
    MatrixMultiply,
}

impl Backend {
    pub const ALL: [Backend; 2] = [Backend::Gemm, Backend::MatrixMultiply];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Gemm => "gemm-f32 (rayon)",
            Backend::MatrixMultiply => "matrixmultiply",
        }
    }
}

/// The widest x86 vector instructions the GEMM kernels use on this CPU.
pub fn kernel_isa() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            "AVX-512"
        } else if std::arch::is_x86_feature_detected!("fma") {
            "AVX2+FMA"
        } else {
            "scalar"
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        "native SIMD"
    }
}

/// `c = alpha * a · b + beta * c`, on the engine's backend.
///
/// # Panics
/// When the shapes do not chain (`a` is `[m, k]`, `b` `[k, n]`, `c` `[m, n]`): a bug in the
/// caller, as with ndarray's own products.
pub fn sgemm(
    alpha: f32,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    beta: f32,
    c: &mut ArrayViewMut2<f32>,
) {
    sgemm_with(Backend::Gemm, alpha, a, b, beta, c);
}

/// [`sgemm`] on a chosen backend (for benchmarks).
pub fn sgemm_with(
    backend: Backend,
    alpha: f32,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    beta: f32,
    c: &mut ArrayViewMut2<f32>,
) {
    sgemm_on(backend, true, alpha, a, b, beta, c);
}

/// [`sgemm`] on the calling thread only: for callers that already split the work over the pool
/// (blocks of the output, each finished while it is still in that core's cache). Per element the
/// result is the same as [`sgemm`]'s: the inner dimension is summed in the same order.
///
/// # Panics
/// As [`sgemm`].
pub fn sgemm_serial(
    alpha: f32,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    beta: f32,
    c: &mut ArrayViewMut2<f32>,
) {
    sgemm_on(Backend::Gemm, false, alpha, a, b, beta, c);
}

/// The shape check, the fallback to ndarray for negative strides, and the product, on the pool
/// (`parallel`) or on the calling thread.
fn sgemm_on(
    backend: Backend,
    parallel: bool,
    alpha: f32,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    beta: f32,
    c: &mut ArrayViewMut2<f32>,
) {
    let (m, k) = a.dim();
    let (k2, n) = b.dim();
    assert!(
        k == k2 && c.dim() == (m, n),
        "sgemm: [{m}, {k}] · [{k2}, {n}] into {:?}",
        c.dim()
    );
    let strides_ok = [a.strides(), b.strides(), c.strides()]
        .iter()
        .all(|s| s.iter().all(|&x| x >= 0));
    if backend == Backend::MatrixMultiply || !strides_ok {
        ndarray::linalg::general_mat_mul(alpha, &a, &b, beta, c);
        return;
    }
    if m == 0 || n == 0 {
        return;
    }
    gemm_f32_kernel(alpha, a, b, beta, c, parallel);
}

/// `gemm-f32` on views with non-negative strides and matching shapes (checked by the caller).
#[allow(unsafe_code)]
fn gemm_f32_kernel(
    alpha: f32,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    beta: f32,
    c: &mut ArrayViewMut2<f32>,
    threaded: bool,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    let (a_rs, a_cs) = (a.strides()[0], a.strides()[1]);
    let (b_rs, b_cs) = (b.strides()[0], b.strides()[1]);
    let (c_rs, c_cs) = (c.strides()[0], c.strides()[1]);
    let (a_ptr, b_ptr, c_ptr) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
    // The kernels want a column-major destination; a row-major one is the transposed product
    // `c^T = b^T · a^T`, which is the same memory with rows and columns swapped.
    #[allow(clippy::type_complexity)]
    let (m, n, c_rs, c_cs, lhs, lhs_rs, lhs_cs, rhs, rhs_rs, rhs_cs) = if c_cs < c_rs {
        (n, m, c_cs, c_rs, b_ptr, b_cs, b_rs, a_ptr, a_cs, a_rs)
    } else {
        (m, n, c_rs, c_cs, a_ptr, a_rs, a_cs, b_ptr, b_rs, b_cs)
    };
    let gemm = gemm_f32::gemm::f32::get_gemm_fn();
    // SAFETY: every pointer and stride comes from a live ndarray view whose shape was checked
    // above to chain ([m, k] · [k, n] into [m, n], or its transpose after the swap), so each
    // element the kernel addresses (`ptr + i * rs + j * cs` within those bounds) lies inside its
    // view; all strides are non-negative (views with negative strides took ndarray's path), and
    // m, n > 0. `c` is borrowed mutably while `a` and `b` are shared borrows, so the destination
    // cannot overlap an operand. The kernel reads `c` only when `beta != 0` (`read_dst`), so a
    // destination of uninitialised garbage or NaNs is overwritten, not propagated, for beta 0.
    // Its threads run inside rayon's current pool and return before this call does.
    unsafe {
        gemm(
            m,
            n,
            k,
            c_ptr,
            c_cs,
            c_rs,
            beta != 0.0,
            lhs,
            lhs_cs,
            lhs_rs,
            rhs,
            rhs_cs,
            rhs_rs,
            beta,
            alpha,
            false,
            false,
            false,
            if threaded {
                gemm_common::Parallelism::Rayon(0)
            } else {
                gemm_common::Parallelism::None
            },
        );
    }
}

/// Floating-point operations of `[m, k] · [k, n]`.
pub fn flops(m: usize, k: usize, n: usize) -> f64 {
    2.0 * m as f64 * k as f64 * n as f64
}

/// Times every GEMM one training step of an MLP with layer `sizes` issues at batch `batch` (the
/// forward product, the weight gradient and, above the first layer, the input gradient), each on
/// its own as plain SGEMM on `backend`; returns `(flops, seconds)` with the median of `reps` runs
/// per shape. This is the machine's GEMM figure a training step is measured against.
pub fn time_step_gemms(backend: Backend, batch: usize, sizes: &[usize], reps: usize) -> (f64, f64) {
    let mut total_flops = 0.0;
    let mut total_secs = 0.0;
    for (m, k, n, ta, tb) in step_shapes(batch, sizes) {
        total_flops += flops(m, k, n);
        total_secs += time_gemm(backend, (m, k, n, ta, tb), reps);
    }
    (total_flops, total_secs)
}

/// The GEMMs of one training step: `(m, k, n, a transposed, b transposed)`.
pub fn step_shapes(batch: usize, sizes: &[usize]) -> Vec<(usize, usize, usize, bool, bool)> {
    let mut shapes = Vec::new();
    for (l, w) in sizes.windows(2).enumerate() {
        let (i, o) = (w[0], w[1]);
        shapes.push((batch, i, o, false, false));
        shapes.push((i, batch, o, true, false));
        if l > 0 {
            shapes.push((batch, o, i, false, true));
        }
    }
    shapes
}

/// Median seconds of `reps` runs of one GEMM shape `(m, k, n, a transposed, b transposed)` on
/// `backend` (after one warm-up run).
pub fn time_gemm(
    backend: Backend,
    (m, k, n, ta, tb): (usize, usize, usize, bool, bool),
    reps: usize,
) -> f64 {
    use ndarray::Array2;
    let mut rng = distill_core::rng::Rng::new(1);
    let a = Array2::from_shape_simple_fn(if ta { (k, m) } else { (m, k) }, || rng.uniform());
    let b = Array2::from_shape_simple_fn(if tb { (n, k) } else { (k, n) }, || rng.uniform());
    let mut c = Array2::<f32>::zeros((m, n));
    let mut run = || {
        let av = if ta { a.t() } else { a.view() };
        let bv = if tb { b.t() } else { b.view() };
        let t = std::time::Instant::now();
        sgemm_with(backend, 1.0, av, bv, 0.0, &mut c.view_mut());
        t.elapsed().as_secs_f64()
    };
    run();
    let mut times: Vec<f64> = (0..reps.max(1)).map(|_| run()).collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, s};

    /// Every layout the engine uses (plain, transposed operands, strided sub-views), odd shapes
    /// that leave partial tiles, and beta 0 / non-zero, against a float64 triple loop.
    #[test]
    fn matches_a_plain_triple_loop() {
        let mut rng = distill_core::rng::Rng::new(5);
        for &(m, k, n) in &[
            (1, 1, 1),
            (3, 5, 2),
            (17, 33, 9),
            (128, 70, 130),
            (64, 1, 31),
        ] {
            for ta in [false, true] {
                for tb in [false, true] {
                    for beta in [0.0f32, 0.9] {
                        let a = Array2::from_shape_simple_fn(
                            if ta { (k, m + 2) } else { (m + 2, k) },
                            || rng.normal(),
                        );
                        let b =
                            Array2::from_shape_simple_fn(if tb { (n, k) } else { (k, n) }, || {
                                rng.normal()
                            });
                        let av = if ta {
                            a.slice(s![.., 1..m + 1]).reversed_axes()
                        } else {
                            a.slice(s![1..m + 1, ..])
                        };
                        let bv = if tb { b.t() } else { b.view() };
                        let c0 = Array2::from_shape_simple_fn((m, n), || rng.normal());
                        let mut c = if beta == 0.0 {
                            Array2::from_elem((m, n), f32::NAN)
                        } else {
                            c0.clone()
                        };
                        sgemm(-0.5, av, bv, beta, &mut c.view_mut());
                        for i in 0..m {
                            for j in 0..n {
                                let dot: f64 =
                                    (0..k).map(|p| av[[i, p]] as f64 * bv[[p, j]] as f64).sum();
                                let want = -0.5 * dot + beta as f64 * c0[[i, j]] as f64;
                                let got = c[[i, j]] as f64;
                                assert!(
                                    (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                                    "[{m},{k},{n}] ta {ta} tb {tb} beta {beta} at ({i},{j}): \
                                     {got} vs {want}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn both_backends_agree_and_results_repeat_exactly() {
        let mut rng = distill_core::rng::Rng::new(6);
        let a = Array2::from_shape_simple_fn((128, 300), || rng.normal());
        let b = Array2::from_shape_simple_fn((300, 200), || rng.normal());
        let run = |backend| {
            let mut c = Array2::<f32>::zeros((128, 200));
            sgemm_with(backend, 1.0, a.view(), b.view(), 0.0, &mut c.view_mut());
            c
        };
        let g = run(Backend::Gemm);
        assert_eq!(g, run(Backend::Gemm));
        // The single-threaded entry gives the same bits, on a whole product and on row blocks
        // (as the fused SGD update issues it), with beta 0 and not.
        let mut serial = Array2::<f32>::zeros((128, 200));
        sgemm_serial(1.0, a.view(), b.view(), 0.0, &mut serial.view_mut());
        assert_eq!(g, serial);
        let c0 = Array2::from_shape_simple_fn((128, 200), || rng.normal());
        let mut whole = c0.clone();
        sgemm(-0.05, a.view(), b.view(), 0.9, &mut whole.view_mut());
        let mut blocks = c0.clone();
        for r in (0..128).step_by(48) {
            let end = (r + 48).min(128);
            sgemm_serial(
                -0.05,
                a.slice(s![r..end, ..]),
                b.view(),
                0.9,
                &mut blocks.slice_mut(s![r..end, ..]),
            );
        }
        assert_eq!(whole, blocks);
        let mm = run(Backend::MatrixMultiply);
        let diff = g
            .iter()
            .zip(&mm)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-3, "{diff}");
    }
}
