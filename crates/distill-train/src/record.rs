//! The training record: one row per epoch, written as CSV.

use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

/// What one epoch did.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EpochRecord {
    /// The epoch's number, from 1 (as on the console).
    pub epoch: usize,
    pub learning_rate: f32,
    /// Mean soft term `T² * KL(p ‖ q)` over the epoch's rows, unweighted: 0 when the student
    /// matches the teachers at temperature `T`. `None` when it is not computed (alpha 0, as in
    /// hard-label training).
    #[serde(default)]
    pub soft_loss: Option<f64>,
    /// Mean hard-label cross-entropy, unweighted. `None` when it is not computed (alpha 1).
    #[serde(default)]
    pub hard_loss: Option<f64>,
    /// `alpha * soft_loss + (1 - alpha) * hard_loss`: the loss minimised, less the teachers'
    /// entropy `alpha * T² * H(p)`, a constant.
    pub loss: f64,
    /// Share of training rows misclassified during the epoch (with dropout, as trained).
    pub train_error: f64,
    /// Share of validation rows misclassified after the epoch (`None` without a validation slice).
    pub val_error: Option<f64>,
    /// Mean cross-entropy of the validation rows after the epoch (`None` without a validation
    /// slice).
    pub val_loss: Option<f64>,
    pub seconds: f64,
    pub samples_per_s: f64,
}

impl EpochRecord {
    /// The training loss with the terms that make it, as printed after each epoch:
    /// `train loss 0.1234 (soft T²·KL 0.1000, hard CE 0.3340)`, naming only the terms computed.
    pub fn train_loss_text(&self) -> String {
        let terms = match (self.soft_loss, self.hard_loss) {
            (Some(soft), Some(hard)) => format!(" (soft T²·KL {soft:.4}, hard CE {hard:.4})"),
            (Some(_), None) => " (soft T²·KL)".to_string(),
            (None, Some(_)) => " (hard CE)".to_string(),
            (None, None) => String::new(),
        };
        format!("train loss {:.4}{terms}", self.loss)
    }

    /// The epoch's figures, each named once: `train loss 2.3000 (hard CE)  train error 89.50%
    /// validation loss 2.2500  validation error 90.00%`, leaving out what was not measured (the
    /// training error without labels, the validation figures without a validation slice).
    pub fn figures_text(&self) -> String {
        let mut text = self.train_loss_text();
        if self.train_error.is_finite() {
            let _ = write!(text, "  train error {:.2}%", 100.0 * self.train_error);
        }
        if let Some(v) = self.val_loss {
            let _ = write!(text, "  validation loss {v:.4}");
        }
        if let Some(v) = self.val_error {
            let _ = write!(text, "  validation error {:.2}%", 100.0 * v);
        }
        text
    }
}

const HEADER: &str = "epoch,learning_rate,soft_loss,hard_loss,loss,train_error,val_error,val_loss,seconds,samples_per_s";

/// A learning rate to 6 significant digits, the decimal precision of an f32: a rate typed with
/// at most 6 digits reads as typed (`0.0009`, not the f32 product's `0.00090000004`).
pub fn rate_text(rate: f32) -> String {
    format!("{rate:.5e}")
        .parse::<f64>()
        .map_or_else(|_| rate.to_string(), |r| r.to_string())
}

/// Writes the records as CSV, atomically. A term that was not computed is an empty cell.
pub fn write_csv(path: &Path, records: &[EpochRecord]) -> distill_core::Result<()> {
    let opt = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
    let mut text = String::from(HEADER);
    text.push('\n');
    for r in records {
        let _ = writeln!(
            text,
            "{},{},{},{},{:.6},{:.6},{},{},{:.3},{:.1}",
            r.epoch,
            rate_text(r.learning_rate),
            opt(r.soft_loss),
            opt(r.hard_loss),
            r.loss,
            r.train_error,
            opt(r.val_error),
            opt(r.val_loss),
            r.seconds,
            r.samples_per_s
        );
    }
    distill_core::atomic::write_bytes(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(soft: Option<f64>, hard: Option<f64>) -> EpochRecord {
        EpochRecord {
            epoch: 2,
            learning_rate: 0.001 * 0.9,
            soft_loss: soft,
            hard_loss: hard,
            loss: 0.5,
            train_error: 0.1,
            val_error: None,
            val_loss: None,
            seconds: 1.0,
            samples_per_s: 100.0,
        }
    }

    #[test]
    fn rates_read_as_typed() {
        // 0.001f32 * 0.9f32 is the f32 0.00090000004 (its shortest round-trip form).
        assert_eq!((0.001f32 * 0.9).to_string(), "0.00090000004");
        assert_eq!(rate_text(0.001 * 0.9), "0.0009");
        assert_eq!(rate_text(0.001 * 0.9 * 0.9 * 0.9), "0.000729");
        assert_eq!(rate_text(50.0), "50");
        assert_eq!(rate_text(0.05), "0.05");
        assert_eq!(rate_text(1.234567e-7), "0.000000123457");
    }

    #[test]
    fn terms_not_computed_are_absent() {
        assert_eq!(
            record(Some(0.25), Some(0.75)).train_loss_text(),
            "train loss 0.5000 (soft T²·KL 0.2500, hard CE 0.7500)"
        );
        assert_eq!(
            record(Some(0.5), None).train_loss_text(),
            "train loss 0.5000 (soft T²·KL)"
        );
        assert_eq!(
            record(None, Some(0.5)).train_loss_text(),
            "train loss 0.5000 (hard CE)"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.metrics.csv");
        write_csv(&path, &[record(Some(0.5), None)]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines().nth(1),
            Some("2,0.0009,0.500000,,0.500000,0.100000,,,1.000,100.0")
        );
    }
}
