//! Reading what the other stages wrote: `metrics.json` (distill-eval), the `.metrics.csv` training
//! records (distill-train), `specialists.yaml` (distill-cluster), the specialists' `manifest.yaml`,
//! and the soft-target store's metadata (distill-teach). Each reader checks the shapes the page
//! relies on and names the file, the field, what it expected and what it found.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ReportError;

/// The `metrics.json` schema version this crate reads.
pub const METRICS_SCHEMA_VERSION: u32 = 1;
/// The `specialists.yaml` version this crate reads.
pub const SPECIALISTS_VERSION: u32 = 1;

fn bad(path: &Path, message: impl Into<String>) -> ReportError {
    ReportError::Input {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn read_text(path: &Path) -> Result<String, ReportError> {
    std::fs::read_to_string(path).map_err(|e| bad(path, format!("cannot read it: {e}")))
}

/// `metrics.json`, the fields the page shows. Keys this crate does not know are ignored.
#[derive(Clone, Debug, Deserialize)]
pub struct Metrics {
    pub schema_version: u32,
    #[serde(default)]
    pub tool_version: String,
    pub dataset: String,
    pub split: String,
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
    pub rows: usize,
    pub errors: usize,
    pub error_rate: f64,
    pub per_class_errors: Vec<usize>,
    pub per_class_rows: Vec<usize>,
    pub confusion: Vec<Vec<usize>>,
    pub nll: f64,
    pub ece: f64,
    /// The ECE bins; absent in files written before distill-eval recorded them.
    #[serde(default)]
    pub reliability: Vec<ReliabilityBin>,
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
}

impl Entry {
    /// Whether this is an ensemble rather than one model.
    pub fn is_ensemble(&self) -> bool {
        self.entry_type == "ensemble"
    }
}

/// One confidence bin of the expected calibration error.
#[derive(Clone, Debug, Deserialize)]
pub struct ReliabilityBin {
    pub lower: f64,
    pub upper: f64,
    pub rows: usize,
    pub correct: usize,
    pub confidence: f64,
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
        if e.per_class_errors.len() != c {
            return Err(shape("per_class_errors", e.per_class_errors.len()));
        }
        if e.per_class_rows.len() != c {
            return Err(shape("per_class_rows", e.per_class_rows.len()));
        }
        if e.confusion.len() != c {
            return Err(shape("confusion", e.confusion.len()));
        }
        if let Some((r, row)) = e.confusion.iter().enumerate().find(|(_, r)| r.len() != c) {
            return Err(bad(
                path,
                format!(
                    "{at}: `confusion[{r}]` has {} values, expected {c} (a {c}x{c} matrix)",
                    row.len()
                ),
            ));
        }
        if !(e.error_rate.is_finite() && e.nll.is_finite() && e.ece.is_finite()) {
            return Err(bad(
                path,
                format!("{at}: `error_rate`, `nll` and `ece` must be numbers"),
            ));
        }
    }
    Ok(metrics)
}

/// One epoch of a `.metrics.csv` training record.
#[derive(Clone, Debug, PartialEq)]
pub struct Epoch {
    pub epoch: usize,
    pub loss: Option<f64>,
    pub train_error: Option<f64>,
    pub val_error: Option<f64>,
    pub val_loss: Option<f64>,
    pub seconds: Option<f64>,
}

/// A model's training record.
#[derive(Clone, Debug)]
pub struct TrainLog {
    /// The model's name: the file name without `.metrics.csv`.
    pub name: String,
    pub path: PathBuf,
    pub epochs: Vec<Epoch>,
}

/// The columns a training record must have.
const REQUIRED_COLUMNS: [&str; 3] = ["epoch", "loss", "train_error"];

/// Reads a `.metrics.csv` written by distill-train: a header naming the columns (in any order),
/// then one row per epoch; empty cells are missing values.
pub fn read_train_log(path: &Path) -> Result<TrainLog, ReportError> {
    let text = read_text(path)?;
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err(bad(
            path,
            "the file is empty: expected a header `epoch,learning_rate,...,train_error,val_error,...` and one row per epoch; train the model again",
        ));
    };
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    for required in REQUIRED_COLUMNS {
        if !columns.contains(&required) {
            return Err(bad(
                path,
                format!(
                    "the header has no `{required}` column (found `{header}`): expected distill-train's training record"
                ),
            ));
        }
    }
    let at = |name: &str| columns.iter().position(|c| *c == name);
    let (epoch_at, loss_at, train_at) = (at("epoch"), at("loss"), at("train_error"));
    let (val_at, val_loss_at, seconds_at) = (at("val_error"), at("val_loss"), at("seconds"));
    let mut epochs = Vec::new();
    for (n, line) in lines {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != columns.len() {
            return Err(bad(
                path,
                format!(
                    "line {}: {} cells, expected {} (one per header column); the file is damaged: train the model again",
                    n + 1,
                    cells.len(),
                    columns.len()
                ),
            ));
        }
        let number = |i: Option<usize>| -> Result<Option<f64>, ReportError> {
            let Some(i) = i else { return Ok(None) };
            let cell = cells[i];
            if cell.is_empty() {
                return Ok(None);
            }
            match cell.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(Some(v)),
                _ => Err(bad(
                    path,
                    format!(
                        "line {}, column `{}`: `{cell}` is not a finite number; the file is damaged: train the model again",
                        n + 1,
                        columns[i]
                    ),
                )),
            }
        };
        for i in 0..cells.len() {
            number(Some(i))?;
        }
        let epoch = number(epoch_at)?
            .filter(|e| *e >= 0.0 && e.fract() == 0.0)
            .ok_or_else(|| {
                bad(
                    path,
                    format!(
                        "line {}, column `epoch`: expected a whole number of epochs",
                        n + 1
                    ),
                )
            })? as usize;
        epochs.push(Epoch {
            epoch,
            loss: number(loss_at)?,
            train_error: number(train_at)?,
            val_error: number(val_at)?,
            val_loss: number(val_loss_at)?,
            seconds: number(seconds_at)?,
        });
    }
    if epochs.is_empty() {
        return Err(bad(
            path,
            "a header but no epoch rows: the training stopped before its first epoch ended; train the model again",
        ));
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.strip_suffix(".metrics.csv").unwrap_or(n).to_string())
        .unwrap_or_else(|| path.display().to_string());
    Ok(TrainLog {
        name,
        path: path.to_path_buf(),
        epochs,
    })
}

/// `specialists.yaml`, the fields the page shows.
#[derive(Clone, Debug, Deserialize)]
pub struct Specialists {
    pub version: u32,
    pub classes: usize,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub rows: Option<usize>,
    #[serde(default)]
    pub captured: Option<f64>,
    #[serde(default)]
    pub generalist_only: Vec<u32>,
    pub subsets: Vec<Subset>,
    #[serde(default)]
    pub ari_vs_true_groups: Option<f64>,
}

/// One subset of `specialists.yaml`.
#[derive(Clone, Debug, Deserialize)]
pub struct Subset {
    pub id: usize,
    pub classes: Vec<u32>,
    #[serde(default)]
    pub names: Option<Vec<String>>,
    #[serde(default)]
    pub captured: Option<f64>,
    #[serde(default)]
    pub joined: Vec<u32>,
}

impl Specialists {
    /// The classes in subset order (each class's own subset; joined classes are not repeated),
    /// then the generalist-only ones and any class in no subset; and each subset's block size.
    pub fn order(&self) -> (Vec<usize>, Vec<usize>) {
        let mut order = Vec::new();
        let mut blocks = Vec::new();
        for s in &self.subsets {
            let own: Vec<usize> = s
                .classes
                .iter()
                .filter(|c| !s.joined.contains(c))
                .map(|&c| c as usize)
                .filter(|c| !order.contains(c))
                .collect();
            blocks.push(own.len());
            order.extend(own);
        }
        for c in 0..self.classes {
            if !order.contains(&c) {
                order.push(c);
            }
        }
        (order, blocks)
    }
}

/// Reads `specialists.yaml` and checks its version and class ids.
pub fn read_specialists(path: &Path) -> Result<Specialists, ReportError> {
    let text = read_text(path)?;
    let s: Specialists = serde_norway::from_str(&text).map_err(|e| {
        bad(
            path,
            format!("not a specialists.yaml written by distill-cluster: {e}"),
        )
    })?;
    if s.version != SPECIALISTS_VERSION {
        return Err(bad(
            path,
            format!(
                "`version` is {}, this report reads version {SPECIALISTS_VERSION}: cluster again with distill-cluster of this version",
                s.version
            ),
        ));
    }
    for (k, subset) in s.subsets.iter().enumerate() {
        if let Some(&c) = subset.classes.iter().find(|&&c| c as usize >= s.classes) {
            return Err(bad(
                path,
                format!(
                    "subsets[{k}] names class {c}, but `classes` is {}: expected class ids 0..{}",
                    s.classes,
                    s.classes.saturating_sub(1)
                ),
            ));
        }
        if let Some(names) = &subset.names
            && names.len() != subset.classes.len()
        {
            return Err(bad(
                path,
                format!(
                    "subsets[{k}] has {} names for {} classes: expected one name per class",
                    names.len(),
                    subset.classes.len()
                ),
            ));
        }
    }
    Ok(s)
}

/// The specialists' manifest, checked by distill-specialists' own reader.
pub fn read_manifest(path: &Path) -> Result<distill_specialists::manifest::Manifest, ReportError> {
    distill_specialists::manifest::Manifest::load(path).map_err(|e| ReportError::Input {
        path: path.to_path_buf(),
        message: match e {
            distill_specialists::manifest::ManifestError::Io { source, .. } => {
                format!("cannot read it: {source}")
            }
            other => other
                .to_string()
                .trim_start_matches(&format!("{}: ", path.display()))
                .to_string(),
        },
    })
}

/// The metadata distill-teach keeps in a soft-target store (a file, or a folder of parts: the
/// first part's, which every part shares but for its shard number).
pub fn read_store_meta(path: &Path) -> Result<distill_store::StoreMeta, ReportError> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let file = if path.is_dir() {
        let mut parts: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| bad(path, format!("cannot list the folder: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("part-") && n.ends_with(".parquet"))
            })
            .collect();
        parts.sort();
        parts.into_iter().next().ok_or_else(|| {
            bad(
                path,
                "a folder without part-K-of-N.parquet files: expected a soft-target store written by distill-teach",
            )
        })?
    } else {
        path.to_path_buf()
    };
    let handle =
        std::fs::File::open(&file).map_err(|e| bad(&file, format!("cannot read it: {e}")))?;
    let reader = SerializedFileReader::new(handle)
        .map_err(|e| bad(&file, format!("not a readable Parquet file ({e})")))?;
    let json = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| {
            kv.iter()
                .find(|k| k.key == distill_store::META_KEY)
                .and_then(|k| k.value.clone())
        })
        .ok_or_else(|| {
            bad(
                &file,
                format!(
                    "no '{}' metadata: not a soft-target store made by distill-teach",
                    distill_store::META_KEY
                ),
            )
        })?;
    serde_json::from_str(&json).map_err(|e| {
        bad(
            &file,
            format!("bad '{}' metadata: {e}", distill_store::META_KEY),
        )
    })
}
