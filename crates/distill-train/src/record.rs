//! The training record: one row per epoch, written as CSV.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// What one epoch did.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EpochRecord {
    /// The epoch's number, from 1 (as on the console).
    pub epoch: usize,
    pub learning_rate: f32,
    /// Mean soft term `T² * KL(p ‖ q)` over the epoch's rows, unweighted: 0 when the student
    /// matches the teachers at temperature `T` (0 in hard-label training).
    pub soft_loss: f64,
    /// Mean hard-label cross-entropy, unweighted (0 when alpha is 1).
    pub hard_loss: f64,
    /// `alpha * soft_loss + (1 - alpha) * hard_loss`: the loss minimised, less the teachers'
    /// entropy `alpha * T² * H(p)`, a constant.
    pub loss: f64,
    /// Share of training rows misclassified during the epoch (with dropout, as trained).
    pub train_error: f64,
    /// Share of validation rows misclassified after the epoch (`None` without a validation slice).
    pub val_error: Option<f64>,
    pub val_loss: Option<f64>,
    pub seconds: f64,
    pub samples_per_s: f64,
}

const HEADER: &str = "epoch,learning_rate,soft_loss,hard_loss,loss,train_error,val_error,val_loss,seconds,samples_per_s";

/// Writes the records as CSV, atomically.
pub fn write_csv(path: &Path, records: &[EpochRecord]) -> distill_core::Result<()> {
    let opt = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
    let mut text = String::from(HEADER);
    text.push('\n');
    for r in records {
        text.push_str(&format!(
            "{},{},{:.6},{:.6},{:.6},{:.6},{},{},{:.3},{:.1}\n",
            r.epoch,
            r.learning_rate,
            r.soft_loss,
            r.hard_loss,
            r.loss,
            r.train_error,
            opt(r.val_error),
            opt(r.val_loss),
            r.seconds,
            r.samples_per_s
        ));
    }
    distill_core::atomic::write_bytes(path, text.as_bytes())
}
