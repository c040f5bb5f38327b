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
    let keep = 1.0 - rate;
    let scale = 1.0 / keep;
    // Each 64-bit draw gives four 16-bit uniforms; a value survives when its uniform is below
    // keep * 2^16 (the keep probability is thus exact to 1/65536).
    let threshold = (keep as f64 * 65536.0).round() as u64;
    x.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(r, mut row)| {
            let mut rng = Rng::derive(seed, r as u64);
            let mut bits = 0u64;
            for (i, v) in row.iter_mut().enumerate() {
                if i % 4 == 0 {
                    bits = rng.next_u64();
                }
                let u = (bits >> (16 * (i % 4))) & 0xFFFF;
                *v = if u < threshold { *v * scale } else { 0.0 };
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
}
