//! Per-class logit bias adjustment (docs/method.md §4): the paper's remedy for a class the
//! transfer set omitted or under-represented, a shift added to that class's logit without
//! retraining. Given by hand as `CLASS=DELTA[,CLASS=DELTA…]` (`3=+3.5`, `7=-7.6,8=-7.6`), or
//! fitted on held-out rows ([`fit_shift`]). One home for distill-train (which writes the shifts
//! into the output layer's biases) and distill-eval (which adds them to any model's logits).

use std::str::FromStr;

use ndarray::{Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::{CoreError, Result};

/// One class's adjustment: `delta` is added to that class's logit in every row.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassBias {
    /// The class column.
    pub class: u32,
    /// Added to the logit (for probability models, to `ln p`).
    pub delta: f32,
}

/// A set of per-class adjustments, parsed from `CLASS=DELTA[,CLASS=DELTA…]` such as `3=+3.5,8=-7.6`.
///
/// Each class may appear once; deltas must be finite. The empty adjustment changes nothing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BiasAdjust(pub Vec<ClassBias>);

fn spec_error(spec: &str, message: impl std::fmt::Display) -> CoreError {
    CoreError::invalid(format!(
        "invalid --bias-adjust `{spec}`: {message}; write CLASS=DELTA pairs separated by commas, \
         e.g. 3=+3.5,8=-7.6"
    ))
}

impl BiasAdjust {
    /// Whether there is nothing to adjust.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every class named must be below `classes`.
    pub fn check(&self, classes: usize) -> Result<()> {
        match self.0.iter().find(|b| b.class as usize >= classes) {
            Some(b) => Err(CoreError::invalid(format!(
                "--bias-adjust names class {}, but the data has classes 0 to {}",
                b.class,
                classes.saturating_sub(1)
            ))),
            None => Ok(()),
        }
    }

    /// Adds each delta to its class's column of `logits` (`[N, C]`); classes at or above `C` are skipped
    /// (call [`BiasAdjust::check`] first to refuse them).
    pub fn apply(&self, logits: &mut Array2<f32>) {
        for b in &self.0 {
            let class = b.class as usize;
            if class < logits.ncols() {
                logits
                    .index_axis_mut(Axis(1), class)
                    .mapv_inplace(|v| v + b.delta);
            }
        }
    }

    /// Merges several specifications (a repeated flag) into one, refusing a class named twice.
    pub fn parse_all<S: AsRef<str>>(specs: &[S]) -> Result<BiasAdjust> {
        let mut all = BiasAdjust::default();
        for spec in specs {
            let spec = spec.as_ref();
            for b in spec.parse::<BiasAdjust>()?.0 {
                if all.0.iter().any(|a| a.class == b.class) {
                    return Err(spec_error(
                        spec,
                        format!("class {} is adjusted twice", b.class),
                    ));
                }
                all.0.push(b);
            }
        }
        Ok(all)
    }
}

impl FromStr for BiasAdjust {
    type Err = CoreError;

    fn from_str(spec: &str) -> Result<Self> {
        let bad = |message: String| spec_error(spec, message);
        let mut out: Vec<ClassBias> = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (class, delta) = part
                .split_once('=')
                .ok_or_else(|| bad(format!("`{part}` has no `=`")))?;
            let class: u32 = class
                .trim()
                .parse()
                .map_err(|_| bad(format!("`{}` is not a class number", class.trim())))?;
            let delta: f32 = delta
                .trim()
                .parse()
                .map_err(|_| bad(format!("`{}` is not a number", delta.trim())))?;
            if !delta.is_finite() {
                return Err(bad(format!("{delta} is not a finite number")));
            }
            if out.iter().any(|b| b.class == class) {
                return Err(bad(format!("class {class} is adjusted twice")));
            }
            out.push(ClassBias { class, delta });
        }
        if out.is_empty() {
            return Err(bad("no CLASS=DELTA pair".to_string()));
        }
        Ok(BiasAdjust(out))
    }
}

impl std::fmt::Display for BiasAdjust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|b| format!("{}={:+}", b.class, b.delta))
            .collect();
        f.write_str(&parts.join(","))
    }
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
        crate::math::argmax_rows(shifted.view())
            .iter()
            .zip(labels)
            .filter(|(p, y)| **p != **y as usize)
            .count()
    }

    #[test]
    fn the_exact_fit_beats_every_shift_on_a_grid() {
        let mut rng = crate::rng::Rng::new(4);
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

    #[test]
    fn parses_signed_deltas_and_applies_them_to_columns() {
        let b: BiasAdjust = "3=+3.5, 1=-7.6".parse().unwrap();
        assert_eq!(
            b.0,
            vec![
                ClassBias {
                    class: 3,
                    delta: 3.5
                },
                ClassBias {
                    class: 1,
                    delta: -7.6
                }
            ]
        );
        assert_eq!(b.to_string(), "3=+3.5,1=-7.6");
        let mut z = array![[0.0f32, 1.0, 2.0, 3.0], [1.0, 1.0, 1.0, 1.0]];
        b.apply(&mut z);
        assert_eq!(z, array![[0.0f32, -6.6, 2.0, 6.5], [1.0, -6.6, 1.0, 4.5]]);
        assert!(b.check(4).is_ok());
        assert!(b.check(3).unwrap_err().to_string().contains("class 3"));
    }

    #[test]
    fn refuses_bad_specs() {
        for (spec, needle) in [
            ("3", "has no `=`"),
            ("x=1", "`x` is not a class number"),
            ("3=abc", "`abc` is not a number"),
            ("3=inf", "not a finite number"),
            ("3=1,3=2", "adjusted twice"),
            (",", "no CLASS=DELTA"),
        ] {
            let err = spec.parse::<BiasAdjust>().unwrap_err().to_string();
            assert!(err.contains(needle), "{spec}: {err}");
            assert!(err.contains("--bias-adjust"), "{err}");
        }
        let err = BiasAdjust::parse_all(&["3=1", "3=2"]).unwrap_err();
        assert!(err.to_string().contains("adjusted twice"), "{err}");
        assert_eq!(BiasAdjust::parse_all(&["3=1", "4=2"]).unwrap().0.len(), 2);
    }
}
