//! Per-class logit bias adjustment (PAPER.md §4): given by hand (`3=+3.5`), or fitted for the
//! classes the transfer set omitted, on a held-out slice of the training split.

use crate::{Result, TrainError};
use distill_core::math::argmax_rows;
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

/// Errors of `logits` against `labels` after adding `delta` to the logits of `classes`.
pub fn errors_with_shift(
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
    argmax_rows(shifted.view())
        .iter()
        .zip(labels)
        .filter(|(p, y)| **p != **y as usize)
        .count()
}

/// The shift for `classes` in [-20, 20] (steps of 0.1) with the fewest validation errors; among
/// equals, the smallest in magnitude. Returns `(delta, errors)`.
pub fn fit_shift(logits: ArrayView2<f32>, labels: &[u32], classes: &[u32]) -> (f32, usize) {
    let mut best = (0.0f32, errors_with_shift(logits, labels, classes, 0.0));
    for i in 1..=200 {
        for sign in [1.0f32, -1.0] {
            let delta = sign * i as f32 * 0.1;
            let e = errors_with_shift(logits, labels, classes, delta);
            if e < best.1 {
                best = (delta, e);
            }
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
