//! What a run did and how long it took, and its table for people.

use crate::{OutputKind, Provider};
use distill_store::Shard;
use serde::Serialize;
use std::fmt;
use std::path::PathBuf;

/// One teacher's part of a [`Report`].
#[derive(Clone, Debug, Serialize)]
pub struct TeacherReport {
    pub name: String,
    pub path: PathBuf,
    /// What the model emits (probabilities are stored as their floored log).
    pub kind: OutputKind,
    /// The provider that ran it (`auto` resolves to `cpu` or `cuda`).
    pub provider: Provider,
    pub threads: usize,
    /// Seconds spent inside this teacher's `OnnxModel::run` calls (ONNX Runtime plus the adapter's
    /// normalisation of the batch).
    pub ort_seconds: f64,
    /// Rows whose top-1 prediction is not the label, when the data has labels.
    pub errors: Option<usize>,
    /// `errors / rows`, when the data has labels.
    pub error_rate: Option<f64>,
}

/// What a run did and how long it took.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The file written.
    pub out: PathBuf,
    pub rows: usize,
    pub classes: usize,
    /// K when the store keeps only each row's K largest logits (the top-k layout).
    pub top_k: Option<usize>,
    pub teachers: Vec<TeacherReport>,
    pub shard: Option<Shard>,
    /// Wall-clock seconds of the whole run, loading included.
    pub seconds: f64,
    /// `rows / seconds`.
    pub rows_per_second: f64,
    /// Seconds spent loading the data and opening the teachers, before the first batch.
    pub setup_seconds: f64,
    /// Wall-clock seconds from the first batch to the store's rename into place.
    pub inference_seconds: f64,
    /// Wall-clock seconds during which at least one teacher's run call was in flight.
    pub ort_busy_seconds: f64,
    /// Seconds inside run calls, summed over the teachers (more than the wall time when they overlap).
    pub ort_seconds_sum: f64,
    /// Seconds the main thread spent encoding and writing the store (closing and syncing it
    /// included), mostly while the teachers ran the next batches.
    pub write_seconds: f64,
    /// Things the user was told on stderr (CPU fallback, slow fixed batch size).
    pub notes: Vec<String>,
    /// Teachers far worse than the others or near chance on the labelled rows (see
    /// [`crate::error_warnings`]); also printed on stderr.
    pub warnings: Vec<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .teachers
            .iter()
            .map(|t| t.name.len())
            .max()
            .unwrap_or(0)
            .max(7);
        writeln!(
            f,
            "{:<width$}  {:<13}  {:<8}  {:>7}  {:>9}  {:>16}  path",
            "teacher", "kind", "provider", "threads", "ORT s", "errors"
        )?;
        for t in &self.teachers {
            let errors = match (t.errors, t.error_rate) {
                (Some(e), Some(r)) => format!("{e} ({:.2}%)", 100.0 * r),
                _ => "no labels".to_string(),
            };
            writeln!(
                f,
                "{:<width$}  {:<13}  {:<8}  {:>7}  {:>9.3}  {:>16}  {}",
                t.name,
                t.kind.to_string(),
                t.provider.to_string(),
                t.threads,
                t.ort_seconds,
                errors,
                t.path.display()
            )?;
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        let share = if self.inference_seconds > 0.0 {
            100.0 * self.ort_busy_seconds / self.inference_seconds
        } else {
            0.0
        };
        write!(
            f,
            "wrote {}: {} rows x {} teachers x {} classes{} in {:.2} s ({:.0} rows/s); inference {:.2} s, \
             of which {:.2} s ({share:.1}%) inside ONNX Runtime (sum over teachers {:.2} s); setup {:.2} s",
            self.out.display(),
            self.rows,
            self.teachers.len(),
            self.classes,
            match self.top_k {
                Some(k) => format!(" (top-{k} layout)"),
                None => String::new(),
            },
            self.seconds,
            self.rows_per_second,
            self.inference_seconds,
            self.ort_busy_seconds,
            self.ort_seconds_sum,
            self.setup_seconds
        )
    }
}
