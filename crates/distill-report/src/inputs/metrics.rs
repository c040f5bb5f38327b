//! `metrics.json`, written by distill-eval.

use super::{METRICS_SCHEMA_VERSION, bad, read_text};
use crate::ReportError;
pub use distill_core::metrics::{ReliabilityBin, Summary};
use serde::Deserialize;
use std::path::Path;

/// `metrics.json`, the fields the page shows. Keys this crate does not know are ignored.
#[derive(Clone, Debug, Deserialize)]
pub struct Metrics {
    pub schema_version: u32,
    #[serde(default)]
    pub tool_version: String,
    pub dataset: String,
    pub split: String,
    /// Where the rows come from, in words (`the test split of DATA`, `all rows of FILE (…)`);
    /// empty in files written before distill-eval recorded it.
    #[serde(default)]
    pub rows_from: String,
    #[serde(default)]
    pub transform: String,
    pub rows: usize,
    pub classes: usize,
    #[serde(default)]
    pub provider: String,
    #[serde(default)]
    pub latency_runs: usize,
    #[serde(default)]
    pub agreement_reference: String,
    pub entries: Vec<Entry>,
    #[serde(default)]
    pub notes: Vec<String>,
    /// The specialist system's result, when distill-eval evaluated one.
    #[serde(default)]
    pub specialists: Option<SpecialistsResult>,
}

impl Metrics {
    /// Where the rows come from, in words: `rows_from`, else `the SPLIT split`.
    pub fn rows_phrase(&self) -> String {
        if self.rows_from.is_empty() {
            format!("the {} split", self.split)
        } else {
            self.rows_from.clone()
        }
    }

    /// Whether the rows are all rows of one data file rather than a held-out split.
    pub fn all_rows(&self) -> bool {
        self.split == "all"
    }
}

/// One model or ensemble of `metrics.json`.
#[derive(Clone, Debug, Deserialize)]
pub struct Entry {
    pub name: String,
    #[serde(rename = "type")]
    pub entry_type: String,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub members: Vec<String>,
    /// Errors, per-class errors, confusion, NLL, ECE, top-k accuracy and the ECE bins: the type
    /// distill-eval writes them from.
    #[serde(flatten)]
    pub metrics: Summary,
    #[serde(default)]
    pub errors_unadjusted: Option<usize>,
    #[serde(default)]
    pub agreement: Option<f64>,
    pub parameters: u64,
    pub file_bytes: u64,
    #[serde(default)]
    pub latency_ms_batch1: Option<f64>,
    #[serde(default)]
    pub rows_per_s_batch256: Option<f64>,
    /// For a model distill-quantize wrote, its float model and how closely it follows it; absent
    /// from files written before distill-eval recorded it.
    #[serde(default)]
    pub variant_of: Option<Variant>,
}

/// The `variant_of` of an entry: a quantised model and its float model. Every field but
/// `method` may be missing or `null`.
#[derive(Clone, Debug, Deserialize)]
pub struct Variant {
    pub method: String,
    #[serde(default)]
    pub source_sha256: Option<String>,
    /// The float model's entry name, when it was evaluated in the same run.
    #[serde(default)]
    pub source: Option<String>,
    /// Share of rows on which the variant predicts the float model's class.
    #[serde(default)]
    pub agreement: Option<f64>,
    #[serde(default)]
    pub max_abs_diff: Option<f64>,
    /// `logits` or `probabilities`.
    #[serde(default)]
    pub max_abs_diff_of: Option<String>,
}

impl Entry {
    /// Whether this is an ensemble rather than one model.
    pub fn is_ensemble(&self) -> bool {
        self.entry_type == "ensemble"
    }
}

impl Metrics {
    /// For each entry, the index of the float model it is a quantised variant of: the entry
    /// its `variant_of.source` names, else the other entry whose `sha256` is its
    /// `variant_of.source_sha256`.
    pub fn variant_sources(&self) -> Vec<Option<usize>> {
        self.entries
            .iter()
            .enumerate()
            .map(|(k, e)| {
                let v = e.variant_of.as_ref()?;
                let by_name = v.source.as_ref().and_then(|name| {
                    self.entries
                        .iter()
                        .enumerate()
                        .position(|(j, o)| j != k && &o.name == name)
                });
                by_name.or_else(|| {
                    let sha = v.source_sha256.as_ref()?;
                    self.entries
                        .iter()
                        .enumerate()
                        .position(|(j, o)| j != k && o.sha256.as_ref() == Some(sha))
                })
            })
            .collect()
    }
}

/// The `"specialists"` key of `metrics.json`: the generalist with its specialists against the
/// generalist alone. Every field but `by_covering`'s `covering` and `count` may be missing.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SpecialistsResult {
    #[serde(default)]
    pub manifest: Option<String>,
    /// The name of the entry the specialists were combined with.
    #[serde(default)]
    pub generalist: Option<String>,
    #[serde(default)]
    pub top_n: Option<usize>,
    #[serde(default)]
    pub rows: Option<usize>,
    #[serde(default)]
    pub generalist_errors: Option<usize>,
    #[serde(default)]
    pub combined_errors: Option<usize>,
    #[serde(default)]
    pub relative_error_reduction: Option<f64>,
    #[serde(default)]
    pub rows_per_second: Option<f64>,
    #[serde(default)]
    pub by_covering: Vec<Covering>,
}

/// Test rows grouped by how many specialists cover their true class (the paper's Table 4).
#[derive(Clone, Debug, Deserialize)]
pub struct Covering {
    pub covering: usize,
    pub count: usize,
    #[serde(default)]
    pub generalist_correct: Option<usize>,
    #[serde(default)]
    pub combined_correct: Option<usize>,
    #[serde(default)]
    pub relative_gain: Option<f64>,
}

impl Covering {
    /// The relative gain in correct rows, as recorded or from the two counts.
    pub fn gain(&self) -> Option<f64> {
        self.relative_gain.or_else(|| {
            let (g, c) = (self.generalist_correct?, self.combined_correct?);
            (g > 0).then(|| (c as f64 - g as f64) / g as f64)
        })
    }
}

/// Reads `metrics.json` and checks its schema version and every matrix's shape.
pub fn read_metrics(path: &Path) -> Result<Metrics, ReportError> {
    let text = read_text(path)?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        bad(
            path,
            format!("not JSON: {e}; write it again with distill-eval"),
        )
    })?;
    match value.get("tool").and_then(|t| t.as_str()) {
        Some("distill-eval") | None => {}
        Some(other) => {
            return Err(bad(
                path,
                format!(
                    "`tool` is \"{other}\", expected \"distill-eval\": give --metrics the file distill-eval --out wrote"
                ),
            ));
        }
    }
    match value.get("schema_version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(METRICS_SCHEMA_VERSION) => {}
        Some(v) => {
            return Err(bad(
                path,
                format!(
                    "`schema_version` is {v}, this report reads version {METRICS_SCHEMA_VERSION}: \
                     evaluate again with the distill-eval of this version, or use the distill-report \
                     of the version that wrote the file"
                ),
            ));
        }
        None => {
            return Err(bad(
                path,
                format!(
                    "no `schema_version` number: expected {METRICS_SCHEMA_VERSION}; is this a metrics.json written by distill-eval?"
                ),
            ));
        }
    }
    let metrics: Metrics = serde_json::from_value(value).map_err(|e| {
        bad(
            path,
            format!(
                "{e} (schema_version {METRICS_SCHEMA_VERSION} as documented in distill-eval's README); write it again with distill-eval"
            ),
        )
    })?;
    let c = metrics.classes;
    if metrics.entries.is_empty() {
        return Err(bad(path, "`entries` is empty: expected at least one model"));
    }
    for (k, e) in metrics.entries.iter().enumerate() {
        let at = format!("entries[{k}] ({})", e.name);
        let shape = |field: &str, found: usize| {
            bad(
                path,
                format!("{at}: `{field}` has {found} values, expected one per class ({c})"),
            )
        };
        if e.metrics.per_class_errors.len() != c {
            return Err(shape("per_class_errors", e.metrics.per_class_errors.len()));
        }
        if e.metrics.per_class_rows.len() != c {
            return Err(shape("per_class_rows", e.metrics.per_class_rows.len()));
        }
        if e.metrics.confusion.len() != c {
            return Err(shape("confusion", e.metrics.confusion.len()));
        }
        if let Some((r, row)) = e
            .metrics
            .confusion
            .iter()
            .enumerate()
            .find(|(_, r)| r.len() != c)
        {
            return Err(bad(
                path,
                format!(
                    "{at}: `confusion[{r}]` has {} values, expected {c} (a {c}x{c} matrix)",
                    row.len()
                ),
            ));
        }
        if !(e.metrics.error_rate.is_finite()
            && e.metrics.nll.is_finite()
            && e.metrics.ece.is_finite())
        {
            return Err(bad(
                path,
                format!("{at}: `error_rate`, `nll` and `ece` must be numbers"),
            ));
        }
    }
    Ok(metrics)
}
