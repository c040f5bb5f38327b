//! The label metrics of one model's (or ensemble's) predictions, as one entry of `metrics.json`
//! holds them: computed and written by distill-eval (`distill_eval::metrics::summarize`), read back
//! by distill-report. One type for both sides, so that the file's fields are declared once.
//!
//! Reading accepts files written before a field was added: `top_k` and `reliability` default to
//! empty.

use serde::{Deserialize, Serialize};

/// One top-k accuracy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopK {
    /// How many of the most probable classes may contain the label.
    pub k: usize,
    /// Share of rows whose label is among the `k` most probable classes.
    pub accuracy: f64,
}

/// Every label-based metric of one set of predictions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Rows evaluated.
    pub rows: usize,
    /// Rows whose predicted class is not the label.
    pub errors: usize,
    /// `errors / rows`.
    pub error_rate: f64,
    /// For each true class, the rows of that class predicted as another class.
    pub per_class_errors: Vec<usize>,
    /// For each true class, the rows of that class.
    pub per_class_rows: Vec<usize>,
    /// `confusion[true][predicted]` row counts.
    pub confusion: Vec<Vec<usize>>,
    /// Mean negative log-likelihood of the labels, in nats, with each row's probability floored
    /// at `math::PROB_FLOOR`.
    pub nll: f64,
    /// Expected calibration error over the `reliability` bins.
    pub ece: f64,
    /// Top-k accuracy for each reported `k` below the class count, and `k = 1` (empty in files
    /// written before they were recorded).
    #[serde(default)]
    pub top_k: Vec<TopK>,
    /// The equal-width confidence bins the ECE is computed from (the reliability diagram), empty
    /// ones included (empty in files written before they were recorded).
    #[serde(default)]
    pub reliability: Vec<ReliabilityBin>,
}

/// One confidence bin of the expected calibration error: the rows whose confidence (largest
/// probability) lies in `(lower, upper]` (confidence 0 goes to the first bin).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    pub lower: f64,
    pub upper: f64,
    /// Rows in the bin.
    pub rows: usize,
    /// Rows of the bin whose predicted class is the label.
    pub correct: usize,
    /// Mean confidence of the bin's rows (0 for an empty bin).
    pub confidence: f64,
}
