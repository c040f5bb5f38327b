//! Scale and zero-point arithmetic, written to give the same numbers as ONNX Runtime's Python
//! quantiser (`onnxruntime.quantization.quant_utils.compute_scale_zp` and `quantize_nparray`):
//! the real range is widened to hold 0, the scale is computed in f64 and stored as f32, values are
//! rounded half to even, and a scale below f32's smallest normal becomes 1.
//!
//! Weights are int8, symmetric, per output channel, in `[-127, 127]` (zero point 0); activations
//! are int8, asymmetric, per tensor, in `[-128, 127]`; biases are int32 with the scale
//! `input scale × weight scale` of their channel and zero point 0.

/// `(scale, zero point)` of an int8 activation whose calibrated range is `[rmin, rmax]`
/// (asymmetric, `[-128, 127]`). The range is widened to include 0 first. A degenerate range
/// (scale below f32's smallest normal, e.g. an activation that was 0 on every calibration row)
/// gets the scale 1 and the zero point that still maps `rmin` (widened) to -128, so a
/// quantised ReLU output keeps clamping negatives to 0.
pub fn activation(rmin: f32, rmax: f32) -> (f32, i8) {
    let (qmin, qmax) = (-128.0f64, 127.0f64);
    let rmin = rmin.min(0.0);
    let rmax = rmax.max(0.0);
    let scale = (f64::from(rmax) - f64::from(rmin)) / (qmax - qmin);
    if scale.is_nan() || scale < f64::from(f32::MIN_POSITIVE) {
        let zp = (qmin - f64::from(rmin)).round_ties_even().clamp(qmin, qmax);
        return (1.0, zp as i8);
    }
    let zp = (qmin - f64::from(rmin) / scale)
        .round_ties_even()
        .clamp(qmin, qmax);
    (scale as f32, zp as i8)
}

/// The scale of an int8 weight channel whose largest magnitude is `absmax` (symmetric,
/// `[-127, 127]`, zero point 0); 1 for an all-zero channel.
pub fn weight_scale(absmax: f32) -> f32 {
    let scale = (2.0 * f64::from(absmax)) / 254.0;
    if scale.is_nan() || scale < f64::from(f32::MIN_POSITIVE) {
        1.0
    } else {
        scale as f32
    }
}

/// `value / scale` rounded half to even plus `zero_point`, clamped to `[lo, hi]` (the division
/// in f32, as NumPy does for float32 arrays).
pub fn quantize(value: f32, scale: f32, zero_point: i32, lo: i32, hi: i32) -> i32 {
    let q = (value / scale).round_ties_even() + zero_point as f32;
    if q.is_nan() {
        return zero_point;
    }
    q.clamp(lo as f32, hi as f32) as i32
}

/// A `[inputs, outputs]` weight matrix (row-major) quantised per output channel (column):
/// `(int8 values in the same order, one scale per column)`.
pub fn weights_per_column(w: &[f32], inputs: usize, outputs: usize) -> (Vec<i8>, Vec<f32>) {
    let mut absmax = vec![0.0f32; outputs];
    for row in w.chunks_exact(outputs).take(inputs) {
        for (m, &v) in absmax.iter_mut().zip(row) {
            *m = m.max(v.abs());
        }
    }
    let scales: Vec<f32> = absmax.iter().map(|&a| weight_scale(a)).collect();
    let q = w
        .iter()
        .enumerate()
        .map(|(k, &v)| quantize(v, scales[k % outputs], 0, -127, 127) as i8)
        .collect();
    (q, scales)
}

/// A bias quantised to int32 for an input of scale `input_scale` and weights of the per-channel
/// `weight_scales`: `(values, scales)` with `scale[c] = input_scale × weight_scales[c]` (f32, as
/// ONNX Runtime computes it) and zero point 0.
pub fn bias(b: &[f32], input_scale: f32, weight_scales: &[f32]) -> (Vec<i32>, Vec<f32>) {
    let scales: Vec<f32> = weight_scales.iter().map(|&s| input_scale * s).collect();
    let q = b
        .iter()
        .zip(&scales)
        .map(|(&v, &s)| {
            let s = if s >= f32::MIN_POSITIVE { s } else { 1.0 };
            let q = (f64::from(v) / f64::from(s)).round_ties_even();
            if q.is_nan() {
                0
            } else {
                q.clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
            }
        })
        .collect();
    (q, scales)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relu_ranges_have_zero_point_at_the_bottom() {
        let (s, z) = activation(0.0, 2.55);
        assert_eq!(z, -128);
        assert!((s - 0.01).abs() < 1e-7);
        // Dead activation: scale 1, still clamping at 0.
        assert_eq!(activation(0.0, 0.0), (1.0, -128));
        // A range that crosses 0.
        let (s, z) = activation(-1.0, 1.0);
        assert!((s - 2.0 / 255.0).abs() < 1e-7);
        assert_eq!(z, 0); // -128 + 127.5 = -0.5, rounded half to even
    }

    #[test]
    fn weights_are_symmetric_per_column() {
        // 2 inputs x 3 outputs
        let w = [1.27, -0.5, 0.0, -0.635, 0.25, 0.0];
        let (q, s) = weights_per_column(&w, 2, 3);
        assert_eq!(s[0], weight_scale(1.27));
        assert_eq!(s[2], 1.0);
        assert_eq!(q, vec![127, -127, 0, -64, 64, 0]);
    }
}
