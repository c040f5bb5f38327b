//! Per-class logit bias adjustment (docs/method.md §4): given by hand (`3=+3.5`), or fitted for the
//! classes the transfer set omitted, on a held-out slice of the training split.

use crate::{Result, TrainError};
use ndarray::{ArrayView2, Axis};
use serde::{Deserialize, Serialize};

/// One class's bias change.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BiasShift {
    pub class: u32,
    pub delta: f32,
}

/// What `--bias-adjust` asked for.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum BiasAdjust {
    #[default]
    None,
    /// Fixed shifts, e.g. `3=+3.5,8=-1`.
    Fixed(Vec<BiasShift>),
    /// One shift shared by the omitted classes, chosen on the validation slice.
    Auto,
}

impl std::str::FromStr for BiasAdjust {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self> {
        if s == "auto" {
            return Ok(BiasAdjust::Auto);
        }
        if s.is_empty() || s == "none" {
            return Ok(BiasAdjust::None);
        }
        parse_shifts(s).map(BiasAdjust::Fixed)
    }
}

/// Parses `CLASS=DELTA[,CLASS=DELTA…]`.
pub fn parse_shifts(s: &str) -> Result<Vec<BiasShift>> {
    s.split(',')
        .map(|part| {
            let bad = || {
                TrainError::invalid(format!(
                    "--bias-adjust: '{part}' is not CLASS=DELTA; write e.g. 3=+3.5 or 7=-7.6,8=-7.6, or auto"
                ))
            };
            let (c, d) = part.split_once('=').ok_or_else(bad)?;
            let class = c.trim().parse::<u32>().map_err(|_| bad())?;
            let delta = d.trim().trim_start_matches('+').parse::<f32>().map_err(|_| bad())?;
            if !delta.is_finite() {
                return Err(bad());
            }
            Ok(BiasShift { class, delta })
        })
        .collect()
}

/// The shift added to the logits of `classes` that leaves the fewest errors of `logits` against
/// `labels`; among equals, the one nearest 0. Returns `(delta, errors)`.
///
/// Exact, over every shift: row `r` predicts inside `classes` exactly when the shift exceeds
/// `k_r = max(logits outside) - max(logits inside)`, so the error count only changes at those
/// breakpoints and is tried once between each pair of them (and beyond both ends).
pub fn fit_shift(logits: ArrayView2<f32>, labels: &[u32], classes: &[u32]) -> (f32, usize) {
    // Per row: its breakpoint, and whether it is right when predicted inside / outside `classes`.
    let mut rows: Vec<(f32, bool, bool)> = Vec::with_capacity(labels.len());
    for (row, &y) in logits.axis_iter(Axis(0)).zip(labels) {
        let (mut inside, mut outside) = ((f32::NEG_INFINITY, 0), (f32::NEG_INFINITY, 0));
        for (c, &v) in row.iter().enumerate() {
            let best = if classes.contains(&(c as u32)) {
                &mut inside
            } else {
                &mut outside
            };
            if v > best.0 {
                *best = (v, c);
            }
        }
        rows.push((
            outside.0 - inside.0,
            inside.1 == y as usize,
            outside.1 == y as usize,
        ));
    }
    let errors = |delta: f32| {
        rows.iter()
            .filter(|&&(k, right_in, right_out)| if delta > k { !right_in } else { !right_out })
            .count()
    };
    let mut breaks: Vec<f32> = rows.iter().map(|r| r.0).filter(|k| k.is_finite()).collect();
    breaks.sort_by(f32::total_cmp);
    breaks.dedup();
    let mut candidates = vec![0.0f32];
    if let (Some(first), Some(last)) = (breaks.first(), breaks.last()) {
        candidates.push(first - 1.0);
        candidates.push(last + 1.0);
    }
    candidates.extend(breaks.windows(2).map(|w| (w[0] + w[1]) / 2.0));
    let mut best = (0.0f32, errors(0.0));
    for delta in candidates {
        let e = errors(delta);
        if e < best.1 || (e == best.1 && delta.abs() < best.0.abs()) {
            best = (delta, e);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn parses_specs() {
        assert_eq!(
            "3=+3.5,8=-7.6".parse::<BiasAdjust>().unwrap(),
            BiasAdjust::Fixed(vec![
                BiasShift {
                    class: 3,
                    delta: 3.5
                },
                BiasShift {
                    class: 8,
                    delta: -7.6
                }
            ])
        );
        assert_eq!("auto".parse::<BiasAdjust>().unwrap(), BiasAdjust::Auto);
        assert!(
            "3:1"
                .parse::<BiasAdjust>()
                .unwrap_err()
                .to_string()
                .contains("CLASS=DELTA")
        );
    }

    /// Errors after adding `delta` to the logits of `classes`, the direct way.
    fn errors_with_shift(
        logits: ArrayView2<f32>,
        labels: &[u32],
        classes: &[u32],
        delta: f32,
    ) -> usize {
        let mut shifted = logits.to_owned();
        for &c in classes {
            shifted
                .index_axis_mut(Axis(1), c as usize)
                .mapv_inplace(|v| v + delta);
        }
        distill_core::math::argmax_rows(shifted.view())
            .iter()
            .zip(labels)
            .filter(|(p, y)| **p != **y as usize)
            .count()
    }

    #[test]
    fn the_exact_fit_beats_every_shift_on_a_grid() {
        let mut rng = distill_core::rng::Rng::new(4);
        let logits = ndarray::Array2::from_shape_simple_fn((200, 5), || rng.normal() * 3.0);
        let labels: Vec<u32> = (0..200).map(|i| (i % 5) as u32).collect();
        for classes in [vec![1u32], vec![0, 3]] {
            let (delta, errors) = fit_shift(logits.view(), &labels, &classes);
            assert_eq!(
                errors,
                errors_with_shift(logits.view(), &labels, &classes, delta)
            );
            for i in -400..=400 {
                let grid = errors_with_shift(logits.view(), &labels, &classes, i as f32 * 0.05);
                assert!(
                    errors <= grid,
                    "{classes:?}: {errors} errors at {delta}, {grid} at {}",
                    i as f32 * 0.05
                );
            }
        }
        // A class whose logits sit 50 below the rest still gets its shift (no bounded range):
        // its rows need more than +50, the other rows less than +60.
        let mut far = ndarray::Array2::<f32>::zeros((4, 2));
        for r in 0..4 {
            far[[r, 1]] = if r < 2 {
                -50.0 + r as f32
            } else {
                -60.0 - r as f32
            };
        }
        let (delta, errors) = fit_shift(far.view(), &[1, 1, 0, 0], &[1]);
        assert_eq!(errors, 0, "shift {delta}");
    }

    #[test]
    fn fitted_shift_recovers_an_omitted_class() {
        // Class 1 is under-predicted by 2.0: its rows have logit 1 lower than class 0.
        let logits = array![[1.0f32, 0.0], [1.0, 0.0], [0.0, -3.0], [2.0, 0.0]];
        let labels = [1, 1, 0, 0];
        let (delta, errors) = fit_shift(logits.view(), &labels, &[1]);
        assert_eq!(errors, 0);
        assert!(delta > 1.0 && delta < 2.0, "{delta}");
    }
}
