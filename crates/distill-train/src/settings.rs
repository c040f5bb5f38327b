//! The groups of settings every trainer of an MLP shares (`distill-train` and
//! `distill-specialists`): one type each, built once from its flag group in [`crate::cli`] and
//! nested, flattened, into each trainer's `Config`, so that the serialized configuration keeps one
//! flat layout.

use crate::{Result, TrainError};
use distill_core::math::Combine;
use distill_nn::{DistillLoss, MlpConfig};
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

    /// A positive temperature, alpha in [0, 1], and a store whenever alpha weighs soft targets.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(TrainError::invalid(m));
        let (temperature, alpha) = (self.temperature, self.alpha);
        if !(temperature.is_finite() && temperature > 0.0) {
            return bad(format!(
                "--temperature {temperature} must be a positive number"
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

/// How training is regularised: dropout, the max-norm bound on incoming weights, and random
/// translation of training images. Built by [`crate::cli::RegularisationArgs::settings`].
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
