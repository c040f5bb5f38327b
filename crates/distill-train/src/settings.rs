//! The groups of settings every trainer of an MLP shares (`distill-train` and
//! `distill-specialists`): one type each, built once from its flag group in [`crate::cli`] and
//! nested, flattened, into each trainer's `Config`, so that the serialized configuration keeps one
//! flat layout.

use crate::{Result, TrainError};
use distill_core::math::Combine;
use distill_nn::{DistillLoss, MlpConfig, OptimizerConfig, Schedule};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What a run distils from and how the two terms of the loss weigh (docs/method.md §3): the
/// soft-target store, the temperature `T`, the weight `alpha` of the soft term and how the
/// teachers are combined. Built by [`crate::cli::SoftTargetArgs::settings`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SoftTargetSettings {
    /// Soft-target store: train by distillation from it; `None` trains on hard labels.
    pub soft_targets: Option<PathBuf>,
    /// The temperature of the teachers' targets and of the trained network's softmax in the
    /// soft term.
    pub temperature: f32,
    /// Weight of the soft term (`1 - alpha` weighs the hard labels).
    pub alpha: f32,
    /// How the teachers' predictions are combined.
    pub combine: Combine,
}

impl SoftTargetSettings {
    /// The loss these settings train with: the two weighted terms with a store, plain
    /// cross-entropy on hard labels without one.
    pub fn loss(&self) -> DistillLoss {
        match self.soft_targets {
            Some(_) => DistillLoss {
                temperature: self.temperature,
                alpha: self.alpha,
            },
            None => DistillLoss::hard(),
        }
    }

    /// A finite temperature of at least [`MIN_TEMPERATURE`], alpha in [0, 1], and a store
    /// whenever alpha weighs soft targets.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(TrainError::invalid(m));
        let (temperature, alpha) = (self.temperature, self.alpha);
        if !(temperature.is_finite() && temperature > 0.0) {
            return bad(format!(
                "--temperature {temperature} must be a positive number"
            ));
        }
        if temperature < MIN_TEMPERATURE {
            return bad(format!(
                "--temperature {temperature} is below {MIN_TEMPERATURE}, the lowest that softens \
                 anything: it multiplies logit gaps by more than {}, and the tempered softmax is \
                 then one-hot in float32, so the soft term teaches no more than hard labels; give \
                 --temperature {MIN_TEMPERATURE} or more (1 is the plain softmax)",
                1.0 / MIN_TEMPERATURE
            ));
        }
        if !(0.0..=1.0).contains(&alpha) {
            return bad(format!("--alpha {alpha} must be between 0 and 1"));
        }
        if self.soft_targets.is_none() && alpha > 0.0 {
            return bad("--alpha above 0 weighs soft targets: give --soft-targets STORE, or leave --alpha out to train on hard labels".into());
        }
        Ok(())
    }
}

/// The lowest distillation temperature: 0.05. Below it the tempered softmax multiplies logit
/// gaps by more than 20, so a gap of 5 (common between a network's first and second class)
/// becomes more than 100, past the roughly 87 at which `exp` underflows float32: the targets and
/// the network's tempered outputs are one-hot and the soft term carries nothing hard labels do
/// not.
pub const MIN_TEMPERATURE: f32 = 0.05;

/// Checks an optimiser's settings, naming the flag that gave each: a learning rate above 0 and
/// finite (`--lr`); SGD's momentum (`--momentum`, `--momentum-start`) in `[0, 1)`, where 1 or
/// more never forgets a step and diverges; and the schedule (`--schedule`): `exp:G` and
/// `step:N:G` with the factor G in `(0, 1]` (above 1 the rate grows without bound, 0 or less
/// stops or reverses learning) and N at least 1, `cosine:N` with N at least 1.
pub fn check_optimizer(optimizer: &OptimizerConfig) -> Result<()> {
    let bad = |m: String| Err(TrainError::invalid(m));
    let (lr, schedule) = match optimizer {
        OptimizerConfig::Sgd {
            lr,
            momentum,
            momentum_start,
            schedule,
            ..
        } => {
            for (flag, m) in [
                ("--momentum", momentum),
                ("--momentum-start", momentum_start),
            ] {
                if !(0.0..1.0).contains(m) {
                    return bad(format!(
                        "{flag} {m} must be at least 0 and below 1 (0.9 is usual; 1 or more never \
                         forgets a step and diverges)"
                    ));
                }
            }
            (*lr, schedule)
        }
        OptimizerConfig::Adam { lr, schedule, .. } => (*lr, schedule),
    };
    if !(lr.is_finite() && lr > 0.0) {
        return bad(format!(
            "--lr {lr} must be a number above 0 (e.g. 0.05 for sgd, 0.001 for adam)"
        ));
    }
    let factor_ok = |g: f32| g > 0.0 && g <= 1.0;
    match *schedule {
        Schedule::Constant => {}
        Schedule::Exponential { gamma } if !factor_ok(gamma) => {
            return bad(format!(
                "--schedule exp:{gamma}: the factor must be above 0 and at most 1 (e.g. exp:0.95 \
                 lowers the rate 5% an epoch)"
            ));
        }
        Schedule::Step { every, gamma } if every == 0 || !factor_ok(gamma) => {
            return bad(format!(
                "--schedule step:{every}:{gamma}: the epochs between steps must be at least 1 and \
                 the factor above 0 and at most 1 (e.g. step:10:0.5 halves the rate every 10 \
                 epochs)"
            ));
        }
        Schedule::Cosine { epochs: 0 } => {
            return bad(
                "--schedule cosine:0: the epochs of the decay must be at least 1 (e.g. cosine:30)"
                    .into(),
            );
        }
        _ => {}
    }
    Ok(())
}

/// How training is regularised: dropout, the max-norm bound on incoming weights, and random
/// translation and horizontal flips of training images. Built by [`crate::cli::RegularisationArgs::settings`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Regularisation {
    /// Dropout rate on the input units while training.
    pub input_dropout: f32,
    /// Dropout rate on the hidden units while training.
    pub hidden_dropout: f32,
    /// Bound on the length of each unit's incoming weight vector.
    pub max_norm: Option<f32>,
    /// Random translation of training images by up to this many pixels (0: off).
    pub jitter: usize,
    /// Mirror each training image left to right with probability one half (for natural images,
    /// not digits); absent from the serialised settings when off, so that the settings,
    /// fingerprint and metadata of a run without it are as they were before it existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub flip: bool,
}

impl Regularisation {
    /// The MLP of layer widths `sizes` (input to output) with this dropout and max-norm bound.
    pub fn mlp_config(&self, sizes: Vec<usize>) -> MlpConfig {
        MlpConfig {
            sizes,
            input_dropout: self.input_dropout,
            hidden_dropout: self.hidden_dropout,
            max_norm: self.max_norm,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sgd(lr: f32, momentum: f32, schedule: &str) -> OptimizerConfig {
        OptimizerConfig::Sgd {
            lr,
            momentum,
            momentum_start: momentum,
            momentum_ramp: 0,
            schedule: schedule.parse().unwrap(),
        }
    }

    #[test]
    fn optimiser_settings_are_checked_at_their_bounds() {
        for ok in [
            sgd(0.05, 0.0, "exp:1"),
            sgd(1e-30, 0.99, "step:1:1"),
            sgd(0.05, 0.9, "cosine:1"),
            sgd(0.05, 0.9, "constant"),
        ] {
            assert!(check_optimizer(&ok).is_ok(), "{ok:?}");
        }
        for (bad, flag) in [
            (sgd(0.0, 0.9, "constant"), "--lr 0"),
            (sgd(f32::INFINITY, 0.9, "constant"), "--lr inf"),
            (sgd(0.05, 1.0, "constant"), "--momentum 1"),
            (sgd(0.05, f32::NAN, "constant"), "--momentum NaN"),
            (sgd(0.05, 0.9, "exp:1.01"), "--schedule exp:1.01"),
            (sgd(0.05, 0.9, "exp:0"), "--schedule exp:0"),
            (sgd(0.05, 0.9, "step:3:NaN"), "--schedule step:3:NaN"),
            (sgd(0.05, 0.9, "cosine:0"), "--schedule cosine:0"),
        ] {
            let e = check_optimizer(&bad).unwrap_err().to_string();
            assert!(e.starts_with(flag), "{flag}: {e}");
        }
    }

    #[test]
    fn the_temperature_has_a_floor() {
        let soft = |temperature| SoftTargetSettings {
            soft_targets: Some("s.parquet".into()),
            temperature,
            alpha: 1.0,
            combine: Combine::Arithmetic,
        };
        assert!(soft(MIN_TEMPERATURE).check().is_ok());
        let e = soft(0.04).check().unwrap_err().to_string();
        assert!(e.contains("below 0.05"), "{e}");
    }
}
