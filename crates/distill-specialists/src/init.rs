//! A specialist's starting point: the generalist's network with the output layer rebuilt for the
//! subset's classes and the dustbin.
//!
//! - Hidden layers: copied from the generalist, so before training the specialist's hidden
//!   activations are the generalist's.
//! - Output rows of the subset's classes: the generalist's rows for those classes, so their logits
//!   start equal to the generalist's.
//! - The dustbin row: the generalist gives the dustbin the probability of all other classes
//!   together, i.e. the logit `LSE_{c ∉ S}(z_c) = ln Σ_{c ∉ S} exp(z_c)`. That is not linear in the
//!   last hidden layer's activations `h`, so the dustbin row `(w, b)` is the least-squares fit of
//!   `w·h + b` to it over (up to 4,096) training rows of the specialist's stream, with a small
//!   ridge term (`1e-6` of the Gram matrix's mean diagonal). With it, the specialist's softmax
//!   starts close to the generalist's distribution folded onto the subset and the dustbin. When
//!   that fit cannot be solved, the row falls back to the log-sum-exp-consistent constant choice:
//!   the mean of the other classes' rows, with bias `+ ln |others|`, which is exact when the other
//!   classes' logits are equal and a lower bound otherwise (Jensen's inequality).
//!
//! The training stage then lowers the dustbin bias by the dustbin correction (see
//! [`crate::targets::dustbin_correction`]), so the start is calibrated for the oversampled stream
//! it trains on; adding the correction back after training undoes exactly that shift.

use crate::targets::SubsetMap;
use crate::{Result, SpecialistsError};
use distill_nn::linear::Linear;
use distill_nn::{Mlp, MlpConfig};
use ndarray::{Array1, Array2, ArrayView2, Axis};

/// Rows used for the dustbin fit, at most.
pub const FIT_ROWS: usize = 4096;

/// The activations that feed the output layer (the input itself for a network without hidden
/// layers).
pub fn last_hidden(mlp: &Mlp, x: ArrayView2<f32>) -> Array2<f32> {
    let mut a = x.to_owned();
    let hidden = mlp.layers.len().saturating_sub(1);
    for layer in &mlp.layers[..hidden] {
        let mut z = Array2::zeros((a.nrows(), layer.outputs()));
        layer.forward_into(a.view(), z.view_mut(), true, 0.0, 0);
        a = z;
    }
    a
}

/// How the dustbin row was chosen.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub enum DustbinInit {
    /// Least-squares fit of `LSE_{c ∉ S}(z_c)` on the rows given; its root-mean-square residual.
    Fitted { rows: usize, rms: f64 },
    /// The mean of the other classes' rows, bias `+ ln |others|`.
    Mean,
}

/// The specialist for `map`'s subset, built from `generalist` (see the module documentation);
/// `fit` are training rows for the dustbin fit. `config` sets the specialist's regularisation
/// (its sizes are the generalist's, with `map.outputs()` outputs).
pub fn from_generalist(
    generalist: &Mlp,
    map: &SubsetMap,
    fit: ArrayView2<f32>,
    mut config: MlpConfig,
) -> Result<(Mlp, DustbinInit)> {
    if generalist.classes() != map.total() {
        return Err(SpecialistsError::invalid(format!(
            "the generalist has {} classes, the subsets {}",
            generalist.classes(),
            map.total()
        )));
    }
    let Some(out) = generalist.layers.last() else {
        return Err(SpecialistsError::invalid("the generalist has no layers"));
    };
    let hidden_width = out.inputs();
    let others: Vec<usize> = (0..map.total())
        .filter(|&c| !map.contains(c as u32))
        .collect();
    if others.is_empty() {
        return Err(SpecialistsError::invalid(
            "the subset holds every class, so the dustbin would be empty",
        ));
    }
    let mut w = Array2::<f32>::zeros((hidden_width, map.outputs()));
    let mut b = Array1::<f32>::zeros(map.outputs());
    for (k, &c) in map.classes().iter().enumerate() {
        w.column_mut(k).assign(&out.w.column(c as usize));
        b[k] = out.b[c as usize];
    }
    let d = map.dustbin();
    let (dw, db, how) = match fit_dustbin(generalist, &others, fit) {
        Some((dw, db, rms)) => (
            dw,
            db,
            DustbinInit::Fitted {
                rows: fit.nrows().min(FIT_ROWS),
                rms,
            },
        ),
        None => {
            let mut dw = Array1::<f32>::zeros(hidden_width);
            let mut db = 0.0f32;
            for &c in &others {
                dw += &out.w.column(c);
                db += out.b[c];
            }
            let n = others.len() as f32;
            (dw / n, db / n + n.ln(), DustbinInit::Mean)
        }
    };
    w.column_mut(d).assign(&dw);
    b[d] = db;
    let mut layers: Vec<Linear> = generalist.layers[..generalist.layers.len() - 1].to_vec();
    layers.push(Linear { w, b });
    config.sizes = generalist.config.sizes.clone();
    if let Some(last) = config.sizes.last_mut() {
        *last = map.outputs();
    }
    config.validate()?;
    Ok((Mlp { config, layers }, how))
}

/// Least-squares `(w, b)` with `w·h + b ≈ LSE_{c ∈ others}(z_c)` over the first `FIT_ROWS` rows
/// of `x`, and the root-mean-square residual; `None` when there are too few rows or the system
/// cannot be solved.
fn fit_dustbin(
    generalist: &Mlp,
    others: &[usize],
    x: ArrayView2<f32>,
) -> Option<(Array1<f32>, f32, f64)> {
    let n = x.nrows().min(FIT_ROWS);
    let x = x.slice(ndarray::s![..n, ..]);
    let h = last_hidden(generalist, x);
    let width = h.ncols();
    if n < 2 * (width + 1).min(64) {
        return None;
    }
    let logits = generalist.forward(x).ok()?;
    let target: Array1<f64> = logits
        .axis_iter(Axis(0))
        .map(|z| {
            let m = others
                .iter()
                .map(|&c| z[c])
                .fold(f32::NEG_INFINITY, f32::max) as f64;
            m + others
                .iter()
                .map(|&c| (z[c] as f64 - m).exp())
                .sum::<f64>()
                .ln()
        })
        .collect();
    // Design matrix [h, 1] in f64.
    let mut a = Array2::<f64>::ones((n, width + 1));
    a.slice_mut(ndarray::s![.., ..width])
        .assign(&h.mapv(|v| v as f64));
    let mut gram = a.t().dot(&a);
    let rhs = a.t().dot(&target);
    let ridge = 1e-6 * gram.diag().mean().unwrap_or(1.0).max(1e-12);
    for i in 0..=width {
        gram[[i, i]] += ridge;
    }
    let coef = cholesky_solve(gram, rhs)?;
    let residual = a.dot(&coef) - &target;
    let rms = (residual.mapv(|r| r * r).sum() / n as f64).sqrt();
    if !rms.is_finite() {
        return None;
    }
    let w = coef.slice(ndarray::s![..width]).mapv(|v| v as f32);
    Some((w, coef[width] as f32, rms))
}

/// Solves `a x = b` for symmetric positive definite `a`; `None` when it is not.
fn cholesky_solve(mut a: Array2<f64>, b: Array1<f64>) -> Option<Array1<f64>> {
    let n = a.nrows();
    for j in 0..n {
        let mut d = a[[j, j]];
        for k in 0..j {
            d -= a[[j, k]] * a[[j, k]];
        }
        if !(d > 0.0 && d.is_finite()) {
            return None;
        }
        let d = d.sqrt();
        a[[j, j]] = d;
        for i in j + 1..n {
            let mut s = a[[i, j]];
            for k in 0..j {
                s -= a[[i, k]] * a[[j, k]];
            }
            a[[i, j]] = s / d;
        }
    }
    let mut y = b;
    for i in 0..n {
        let mut s = y[i];
        for k in 0..i {
            s -= a[[i, k]] * y[k];
        }
        y[i] = s / a[[i, i]];
    }
    for i in (0..n).rev() {
        let mut s = y[i];
        for k in i + 1..n {
            s -= a[[k, i]] * y[k];
        }
        y[i] = s / a[[i, i]];
    }
    Some(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use distill_core::rng::Rng;

    fn generalist() -> Mlp {
        Mlp::new(
            MlpConfig {
                sizes: vec![6, 16, 12, 8],
                input_dropout: 0.0,
                hidden_dropout: 0.0,
                max_norm: None,
            },
            7,
        )
        .unwrap()
    }

    fn lse(z: ndarray::ArrayView1<f32>, classes: &[usize]) -> f32 {
        let m = classes
            .iter()
            .map(|&c| z[c])
            .fold(f32::NEG_INFINITY, f32::max);
        m + classes.iter().map(|&c| (z[c] - m).exp()).sum::<f32>().ln()
    }

    #[test]
    fn starts_as_the_generalist_folded_onto_the_subset() {
        let g = generalist();
        let map = SubsetMap::new(&[1, 4, 6], 8);
        let mut rng = Rng::new(3);
        let x = Array2::from_shape_simple_fn((600, 6), || rng.uniform());
        let (s, how) = from_generalist(&g, &map, x.view(), g.config.clone()).unwrap();
        assert_eq!(s.config.sizes, vec![6, 16, 12, 4]);
        // Hidden activations are the generalist's, exactly.
        assert_eq!(last_hidden(&s, x.view()), last_hidden(&g, x.view()));
        assert_eq!(s.layers[..2], g.layers[..2]);
        // Subset logits are the generalist's; the dustbin logit is close to the log-sum-exp of
        // the other classes' logits, closer than the constant choice.
        let zs = s.forward(x.view()).unwrap();
        let zg = g.forward(x.view()).unwrap();
        let others = [0usize, 2, 3, 5, 7];
        let (mut fit_err, mut mean_err) = (0.0f64, 0.0f64);
        let out = g.layers.last().unwrap();
        let h = last_hidden(&g, x.view());
        for r in 0..x.nrows() {
            for (k, c) in [1usize, 4, 6].into_iter().enumerate() {
                assert!((zs[[r, k]] - zg[[r, c]]).abs() < 1e-5);
            }
            let target = lse(zg.row(r), &others);
            fit_err += ((zs[[r, 3]] - target) as f64).powi(2);
            let mean: f32 = others
                .iter()
                .map(|&c| h.row(r).dot(&out.w.column(c)) + out.b[c])
                .sum::<f32>()
                / 5.0
                + 5f32.ln();
            mean_err += ((mean - target) as f64).powi(2);
        }
        let (fit_rms, mean_rms) = ((fit_err / 600.0).sqrt(), (mean_err / 600.0).sqrt());
        match how {
            DustbinInit::Fitted { rows, rms } => {
                assert_eq!(rows, 600);
                assert!((rms - fit_rms).abs() < 1e-3, "{rms} vs {fit_rms}");
            }
            DustbinInit::Mean => panic!("the fit should succeed"),
        }
        assert!(fit_rms < 0.5 * mean_rms, "fit {fit_rms}, mean {mean_rms}");
    }

    #[test]
    fn cholesky_solves_a_known_system() {
        let a = ndarray::array![[4.0, 2.0, 0.6], [2.0, 5.0, 1.0], [0.6, 1.0, 3.0]];
        let x = ndarray::array![1.0, -2.0, 0.5];
        let b = a.dot(&x);
        let got = cholesky_solve(a, b).unwrap();
        for (g, w) in got.iter().zip(x.iter()) {
            assert!((g - w).abs() < 1e-12);
        }
        assert!(
            cholesky_solve(
                ndarray::array![[1.0, 2.0], [2.0, 1.0]],
                ndarray::array![1.0, 1.0]
            )
            .is_none()
        );
    }

    #[test]
    fn too_few_rows_fall_back_to_the_mean_row() {
        let g = generalist();
        let map = SubsetMap::new(&[0, 1], 8);
        let x = Array2::<f32>::zeros((3, 6));
        let (_, how) = from_generalist(&g, &map, x.view(), g.config.clone()).unwrap();
        assert_eq!(how, DustbinInit::Mean);
    }
}
