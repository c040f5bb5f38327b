//! Reading what the other stages wrote: `metrics.json` (distill-eval), the `.metrics.csv` training
//! records (distill-train), `specialists.yaml` (distill-cluster), the specialists' `manifest.yaml`,
//! and the soft-target store's metadata (distill-teach). Each reader checks the shapes the page
//! relies on and names the file, the field, what it expected and what it found.

mod metrics;
mod specialists;
mod train_log;

pub use metrics::{
    Covering, Entry, Metrics, ReliabilityBin, SpecialistsResult, Variant, read_metrics,
};
pub use specialists::{Specialists, Subset, read_specialists};
pub use train_log::{Epoch, TrainLog, read_train_log};

use std::path::{Path, PathBuf};

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

/// The text of an input: a regular file of at most [`distill_core::input::MAX_TEXT_BYTES`].
fn read_text(path: &Path) -> Result<String, ReportError> {
    distill_core::input::read_to_string("", path, distill_core::input::MAX_TEXT_BYTES).map_err(
        |e| match e {
            distill_core::CoreError::Io { source, .. } => {
                bad(path, format!("cannot read it: {source}"))
            }
            other => other.into(),
        },
    )
}

/// The specialists' manifest, checked by distill-specialists' own reader.
pub fn read_manifest(path: &Path) -> Result<distill_specialists::manifest::Manifest, ReportError> {
    distill_core::input::check_bounded("--manifest", path, distill_core::input::MAX_TEXT_BYTES)?;
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
    distill_core::input::check_regular("--store", &file)?;
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
