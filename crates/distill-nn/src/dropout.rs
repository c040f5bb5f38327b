//! Inverted dropout: kept activations are scaled by `1 / keep` during training, so inference is the
//! identity. Masks are drawn per row from a stream derived from the step's seed and the row number,
//! which makes them independent of how rows are spread over threads.

use distill_core::rng::Rng;
use ndarray::{ArrayViewMut2, Axis};
use rayon::prelude::*;

/// Zeroes each value with probability `rate` and scales survivors by `1 / (1 - rate)`.
pub fn apply(x: &mut ArrayViewMut2<f32>, rate: f32, seed: u64) {
    if rate <= 0.0 {
        return;
    }
    bias_relu_dropout(x, None, false, rate, seed);
}

/// One pass over each row: add `bias` (when given), apply ReLU (when `relu`), then inverted dropout
/// at `rate` with the row's mask stream. Each 64-bit draw gives four 16-bit uniforms; a value
/// survives when its uniform is below `(1 - rate) * 2^16`.
pub fn bias_relu_dropout(
    x: &mut ArrayViewMut2<f32>,
    bias: Option<&[f32]>,
    relu: bool,
    rate: f32,
    seed: u64,
) {
    let keep = 1.0 - rate;
    let scale = if rate > 0.0 { 1.0 / keep } else { 1.0 };
    let threshold = (keep as f64 * 65536.0).round() as u64;
    let cols = x.ncols();
    if rate <= 0.0 {
        // No masks to draw: a loop the compiler vectorises, with the same arithmetic.
        x.axis_iter_mut(Axis(0))
            .into_par_iter()
            .for_each(|mut row| match (row.as_slice_mut(), bias) {
                (Some(r), Some(b)) if relu => {
                    for (v, &b) in r.iter_mut().zip(b) {
                        *v = (*v + b).max(0.0);
                    }
                }
                (Some(r), Some(b)) => {
                    for (v, &b) in r.iter_mut().zip(b) {
                        *v += b;
                    }
                }
                (Some(r), None) if relu => {
                    for v in r.iter_mut() {
                        *v = v.max(0.0);
                    }
                }
                (Some(_), None) => {}
                (None, _) => {
                    for (c, v) in row.iter_mut().enumerate() {
                        let mut y = *v;
                        if let Some(b) = bias {
                            y += b[c];
                        }
                        *v = if relu { y.max(0.0) } else { y };
                    }
                }
            });
        return;
    }
    x.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(r, mut row)| {
            let mut rng = Rng::derive(seed, r as u64);
            let mut chunk = [0.0f32; 4];
            for start in (0..cols).step_by(4) {
                let end = (start + 4).min(cols);
                let bits = if rate > 0.0 { rng.next_u64() } else { 0 };
                for (k, c) in (start..end).enumerate() {
                    let mut v = row[c];
                    if let Some(b) = bias {
                        v += b[c];
                    }
                    if relu {
                        v = v.max(0.0);
                    }
                    let kept = rate <= 0.0 || ((bits >> (16 * k)) & 0xFFFF) < threshold;
                    chunk[k] = if kept { v * scale } else { 0.0 };
                }
                for (k, c) in (start..end).enumerate() {
                    row[c] = chunk[k];
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn keeps_the_expected_share_and_scales() {
        let mut x = Array2::<f32>::ones((100, 1000));
        apply(&mut x.view_mut(), 0.2, 42);
        let kept = x.iter().filter(|&&v| v != 0.0).count() as f32 / 100_000.0;
        assert!((kept - 0.8).abs() < 0.01, "{kept}");
        assert!(x.iter().all(|&v| v == 0.0 || (v - 1.25).abs() < 1e-6));
        let mut y = Array2::<f32>::ones((100, 1000));
        apply(&mut y.view_mut(), 0.2, 42);
        assert_eq!(x, y);
    }

    /// Without dropout: bias then ReLU, on contiguous rows and on a strided view alike.
    #[test]
    fn without_dropout_adds_the_bias_and_clamps() {
        let mut rng = Rng::new(3);
        let x = Array2::from_shape_simple_fn((7, 13), || rng.normal());
        let bias: Vec<f32> = (0..13).map(|_| rng.normal()).collect();
        let want = |relu: bool| {
            Array2::from_shape_fn((7, 13), |(r, c)| {
                let v = x[[r, c]] + bias[c];
                if relu { v.max(0.0) } else { v }
            })
        };
        for relu in [true, false] {
            let mut a = x.clone();
            bias_relu_dropout(&mut a.view_mut(), Some(&bias), relu, 0.0, 1);
            assert_eq!(a, want(relu));
            let mut t = x.t().to_owned();
            let mut tv = t.view_mut().reversed_axes();
            bias_relu_dropout(&mut tv, Some(&bias), relu, 0.0, 1);
            assert_eq!(tv, want(relu));
        }
        let mut a = x.clone();
        bias_relu_dropout(&mut a.view_mut(), None, true, 0.0, 1);
        assert_eq!(a, x.mapv(|v| v.max(0.0)));
    }
}
