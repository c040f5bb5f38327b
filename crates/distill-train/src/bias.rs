//! What `--bias-adjust` asks of distill-train (docs/method.md §4): nothing, fixed per-class
//! shifts (`3=+3.5`), or one shift for the classes the transfer set omitted, fitted on the
//! validation slice. The shifts themselves, their parsing and the fit live in
//! [`distill_core::bias`], shared with distill-eval.

use distill_core::bias::BiasAdjust;
use serde::{Deserialize, Serialize};

use crate::{Result, TrainError};

/// What `--bias-adjust` asked for.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum BiasChoice {
    #[default]
    None,
    /// Fixed shifts, e.g. `3=+3.5,8=-1`.
    Fixed(BiasAdjust),
    /// One shift shared by the omitted classes, chosen on the validation slice.
    Auto,
}

impl std::str::FromStr for BiasChoice {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(BiasChoice::Auto),
            "" | "none" => Ok(BiasChoice::None),
            _ => Ok(BiasChoice::Fixed(s.parse::<BiasAdjust>()?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use distill_core::bias::ClassBias;

    #[test]
    fn parses_choices() {
        assert_eq!(
            "3=+3.5,8=-7.6".parse::<BiasChoice>().unwrap(),
            BiasChoice::Fixed(BiasAdjust(vec![
                ClassBias {
                    class: 3,
                    delta: 3.5
                },
                ClassBias {
                    class: 8,
                    delta: -7.6
                }
            ]))
        );
        assert_eq!("auto".parse::<BiasChoice>().unwrap(), BiasChoice::Auto);
        assert_eq!("none".parse::<BiasChoice>().unwrap(), BiasChoice::None);
        let err = "3:1".parse::<BiasChoice>().unwrap_err().to_string();
        assert!(
            err.contains("CLASS=DELTA") && err.contains("--bias-adjust"),
            "{err}"
        );
    }
}
