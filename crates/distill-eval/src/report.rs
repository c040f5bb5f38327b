//! The evaluation's result: `metrics.json` (its schema is documented in README.md and by these types) and the
//! human-readable table.

use std::fmt;
use std::path::PathBuf;

use distill_core::math::Combine;
use distill_progress::{grouped, size};
use serde::Serialize;

use crate::metrics::Summary;
use crate::specialists::SpecialistsReport;
use distill_core::bias::BiasAdjust;

/// The version of the `metrics.json` schema; raised when a field changes meaning or disappears.
pub const SCHEMA_VERSION: u32 = 1;

/// Whether an entry is one model or an ensemble of models.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryType {
    /// One ONNX model (`--model`).
    Model,
    /// One ONNX teacher (`--teacher`, `--teachers-of`).
    Teacher,
    /// A combination of several models' predictions.
    Ensemble,
}

/// A model distill-quantize wrote, and how closely it follows the float model it was made from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Variant {
    /// The method its metadata records: `static-int8`, `dynamic-int8` or `fp16`.
    pub method: String,
    /// The SHA-256 of the float model's file, as its metadata records it.
    pub source_sha256: String,
    /// The first other entry whose file has that SHA-256 (`null` when the float model was not
    /// evaluated in the same run; the three fields below are then `null` too).
    pub source: Option<String>,
    /// Share of the evaluated rows whose predicted class equals the source's, both after any
    /// bias adjustment (the predictions the `errors` count).
    pub agreement: Option<f64>,
    /// The largest |difference| between the two models' outputs over every evaluated row and
    /// class, before any bias adjustment: of the logits when both models output logits,
    /// otherwise of the probabilities (see `max_abs_diff_of`).
    pub max_abs_diff: Option<f64>,
    /// What `max_abs_diff` measures: `logits` or `probabilities`.
    pub max_abs_diff_of: Option<String>,
}

impl Variant {
    /// `max_abs_diff` as `0.0123 logit` / `0.0004 prob`, or `-` without a source.
    pub fn describe_diff(&self) -> String {
        match (self.max_abs_diff, self.max_abs_diff_of.as_deref()) {
            (Some(d), Some("logits")) => format!("{d:.4} logit"),
            (Some(d), _) => format!("{d:.4} prob"),
            _ => "-".to_string(),
        }
    }
}

/// The metrics of one model or ensemble. Every field is always present in `metrics.json` (`null` where it
/// does not apply).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Entry {
    /// The model file's stem (its path when two models share a stem), or `ensemble (arithmetic)` /
    /// `ensemble (geometric)`.
    pub name: String,
    /// `model`, `teacher` or `ensemble`.
    #[serde(rename = "type")]
    pub entry_type: EntryType,
    /// The model file, as given (`null` for ensembles).
    pub path: Option<PathBuf>,
    /// SHA-256 of the model file (`null` for ensembles).
    pub sha256: Option<String>,
    /// What the model outputs, `logits` or `probabilities` (`null` for ensembles).
    pub output_kind: Option<String>,
    /// The execution provider that ran the model, `cpu` or `cuda` (`null` for ensembles).
    pub provider: Option<String>,
    /// The names of the ensemble's members (empty for models).
    pub members: Vec<String>,
    /// How the members were combined (`null` for models).
    pub combine: Option<Combine>,
    /// Errors, per-class errors, confusion, NLL, ECE and top-k accuracy, after any bias adjustment.
    #[serde(flatten)]
    pub metrics: Summary,
    /// Errors before the bias adjustment (`null` when there is none).
    pub errors_unadjusted: Option<usize>,
    /// Share of rows whose predicted class equals the reference's (see [`Report::agreement_reference`]).
    pub agreement: f64,
    /// See [`crate::footprint::Footprint::parameters`]; for ensembles, the members' sum.
    pub parameters: u64,
    /// See [`crate::footprint::Footprint::file_bytes`]; for ensembles, the members' sum.
    pub file_bytes: u64,
    /// Median latency of one row, in ms (`null` with `--latency-runs 0`). For ensembles, the sum of the
    /// members' latencies: the members run one after another, and the cheap averaging is not timed.
    pub latency_ms_batch1: Option<f64>,
    /// Median throughput at batch 256, in rows/s (`null` with `--latency-runs 0`). For ensembles,
    /// `1 / sum(1 / member throughput)`, on the same assumption.
    pub rows_per_s_batch256: Option<f64>,
    /// For a model distill-quantize wrote, its method and its agreement with the float model
    /// (`null` for every other entry).
    pub variant_of: Option<Variant>,
}

/// What `distill-eval` found: the contents of `metrics.json`, and its table when displayed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// `distill-eval`.
    pub tool: String,
    /// The distill version that wrote the file.
    pub tool_version: String,
    /// The `--data` argument.
    pub dataset: String,
    /// `train` or `test`; `all` when `--data` is a single file, which has no splits, so every row
    /// of it is evaluated (figures on rows a model was trained on are not test figures).
    pub split: String,
    /// Where the rows come from, in words: `the test split of DATA`, or `all rows of FILE (one
    /// file: it has no separate test split)`.
    pub rows_from: String,
    /// The selection applied to the split (limit, class filter), as
    /// `distill_data::Selection::describe_rows`.
    pub transform: String,
    /// Rows evaluated.
    pub rows: usize,
    /// Classes of the data set (the width of every confusion matrix).
    pub classes: usize,
    /// Per-class deltas added to every model's logits before evaluation (`[]` when none).
    pub bias_adjust: BiasAdjust,
    /// The execution provider asked for (`cpu`, `cuda` or `auto`); each model entry says which one ran it.
    pub provider: String,
    /// ONNX Runtime intra-op threads (0: its default, one per physical core).
    pub threads: usize,
    /// Timed batch-1 runs per model (0: speed not measured).
    pub latency_runs: usize,
    /// The entry whose predictions `agreement` compares with: `ensemble (arithmetic)` when there is an
    /// ensemble, otherwise the first model.
    pub agreement_reference: String,
    /// The models in the order given, then the ensembles (arithmetic, geometric).
    pub entries: Vec<Entry>,
    /// The generalist combined with its specialists (`null` without `--manifest`).
    pub specialists: Option<SpecialistsReport>,
    /// Messages for the user from ONNX Runtime and the models (CPU fallback, slow fixed batch sizes).
    pub notes: Vec<String>,
    /// Wall time of the whole evaluation, in seconds.
    pub seconds: f64,
    /// Where `metrics.json` was written, if anywhere (not part of the file).
    #[serde(skip)]
    pub out: Option<PathBuf>,
}

fn optional(value: Option<f64>, show: impl Fn(f64) -> String) -> String {
    value.map_or_else(|| "-".to_string(), show)
}

impl fmt::Display for Report {
    /// One row per entry (model, params, size, errors, error %, NLL, ECE, agreement, ms @1, rows/s @256,
    /// and, when a quantised model's float model was evaluated too, the agreement with it and the
    /// largest output difference), the bias adjustment if any, a line per quantised model, and a
    /// one-line summary with rows, seconds and rows/s.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let linked = self
            .entries
            .iter()
            .any(|e| e.variant_of.as_ref().is_some_and(|v| v.source.is_some()));
        let mut header = vec![
            "model",
            "params",
            "size",
            "errors",
            "error %",
            "NLL",
            "ECE",
            "agree %",
            "ms @1",
            "rows/s @256",
        ];
        if linked {
            header.extend(["float agree %", "max |Δ| vs float"]);
        }
        let rows: Vec<Vec<String>> = self
            .entries
            .iter()
            .map(|e| {
                let mut row = vec![
                    e.name.clone(),
                    grouped(e.parameters),
                    size(e.file_bytes),
                    match e.errors_unadjusted {
                        Some(before) => format!("{} (was {before})", e.metrics.errors),
                        None => e.metrics.errors.to_string(),
                    },
                    format!("{:.2}", 100.0 * e.metrics.error_rate),
                    format!("{:.4}", e.metrics.nll),
                    format!("{:.4}", e.metrics.ece),
                    format!("{:.2}", 100.0 * e.agreement),
                    optional(e.latency_ms_batch1, |v| format!("{v:.3}")),
                    optional(e.rows_per_s_batch256, |v| grouped(v.round() as u64)),
                ];
                if linked {
                    let v = e.variant_of.as_ref();
                    row.push(optional(v.and_then(|v| v.agreement), |a| {
                        format!("{:.2}", 100.0 * a)
                    }));
                    row.push(v.map_or_else(|| "-".to_string(), Variant::describe_diff));
                }
                row
            })
            .collect();
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |f: &mut fmt::Formatter<'_>, cells: &[&str]| -> fmt::Result {
            for (i, (cell, &w)) in cells.iter().zip(&widths).enumerate() {
                if i == 0 {
                    write!(f, "{cell:<w$}")?;
                } else {
                    write!(f, "  {cell:>w$}")?;
                }
            }
            writeln!(f)
        };
        line(f, &header)?;
        for row in &rows {
            line(f, &row.iter().map(String::as_str).collect::<Vec<_>>())?;
        }
        for e in &self.entries {
            if let Some(v) = &e.variant_of
                && let (Some(source), Some(agreement)) = (&v.source, v.agreement)
            {
                writeln!(
                    f,
                    "{} is the {} variant of {}: {:.2} % of the rows keep its class, max |Δ{}| {}",
                    e.name,
                    v.method,
                    source,
                    100.0 * agreement,
                    if v.max_abs_diff_of.as_deref() == Some("logits") {
                        "logit"
                    } else {
                        "probability"
                    },
                    v.max_abs_diff
                        .map_or_else(|| "-".into(), |d| format!("{d:.4}"))
                )?;
            }
        }
        if !self.bias_adjust.is_empty() {
            writeln!(
                f,
                "bias adjustment {} applied to every model's logits; `was` is the error count before it",
                self.bias_adjust
            )?;
        }
        let models = self
            .entries
            .iter()
            .filter(|e| e.entry_type != EntryType::Ensemble)
            .count();
        let ensembles = self.entries.len() - models;
        let predictions = (self.rows * models) as f64;
        write!(
            f,
            "evaluated {models} model{}{} on {} rows, {} ({}) in {:.1} s ({} rows/s); agreement is with {}",
            if models == 1 { "" } else { "s" },
            if ensembles > 0 {
                format!(" and {ensembles} ensembles")
            } else {
                String::new()
            },
            self.rows,
            self.rows_from,
            self.transform,
            self.seconds,
            grouped((predictions / self.seconds.max(1e-9)).round() as u64),
            self.agreement_reference,
        )?;
        if let Some(out) = &self.out {
            write!(f, "; metrics written to {}", out.display())?;
        }
        writeln!(f)?;
        if let Some(s) = &self.specialists {
            write!(f, "{s}")?;
        }
        Ok(())
    }
}
