//! Per-class bias adjustment at evaluation time (docs/method.md §4: raising the bias of a class the student never
//! saw during transfer), applied to logits without retraining.

use std::str::FromStr;

use ndarray::{Array2, Axis};
use serde::{Deserialize, Serialize};

use crate::Error;

/// One class's adjustment: `delta` is added to that class's logit in every row.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassBias {
    /// The class column.
    pub class: usize,
    /// Added to the logit (for probability models, to `ln p`).
    pub delta: f32,
}

/// A set of per-class adjustments, parsed from `CLASS=DELTA[,CLASS=DELTA…]` such as `3=+3.5,8=-7.6`.
///
/// Each class may appear once; deltas must be finite. The empty adjustment changes nothing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BiasAdjust(pub Vec<ClassBias>);

impl BiasAdjust {
    /// Whether there is nothing to adjust.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every class named must be below `classes`.
    pub fn check(&self, classes: usize) -> Result<(), Error> {
        match self.0.iter().find(|b| b.class >= classes) {
            Some(b) => Err(Error::BiasClass {
                class: b.class,
                classes,
            }),
            None => Ok(()),
        }
    }

    /// Adds each delta to its class's column of `logits` (`[N, C]`); classes at or above `C` are skipped
    /// (call [`BiasAdjust::check`] first to refuse them).
    pub fn apply(&self, logits: &mut Array2<f32>) {
        for b in &self.0 {
            if b.class < logits.ncols() {
                logits
                    .index_axis_mut(Axis(1), b.class)
                    .mapv_inplace(|v| v + b.delta);
            }
        }
    }

    /// Merges several specifications (a repeated flag) into one, refusing a class named twice.
    pub fn parse_all<S: AsRef<str>>(specs: &[S]) -> Result<BiasAdjust, Error> {
        let mut all = BiasAdjust::default();
        for spec in specs {
            let spec = spec.as_ref();
            for b in spec.parse::<BiasAdjust>()?.0 {
                if all.0.iter().any(|a| a.class == b.class) {
                    return Err(Error::BiasSpec {
                        spec: spec.to_string(),
                        message: format!("class {} is adjusted twice", b.class),
                    });
                }
                all.0.push(b);
            }
        }
        Ok(all)
    }
}

impl FromStr for BiasAdjust {
    type Err = Error;

    fn from_str(spec: &str) -> Result<Self, Error> {
        let bad = |message: String| Error::BiasSpec {
            spec: spec.to_string(),
            message,
        };
        let mut out: Vec<ClassBias> = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (class, delta) = part
                .split_once('=')
                .ok_or_else(|| bad(format!("`{part}` has no `=`")))?;
            let class: usize = class
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

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

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
