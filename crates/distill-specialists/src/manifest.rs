//! `manifest.yaml`: what a specialist training run produced, and what inference needs to use it.
//!
//! ```yaml
//! version: 2
//! tool_version: 0.1.0
//! generalist: { path: ../student.onnx, sha256: 4f0c… }   # relative to the manifest's folder
//! classes: 100                                            # the generalist's class count
//! subsets: ../specialists.yaml                            # the distill-cluster file trained from
//! store: ../soft-targets.parquet                          # soft-target store, when one was used
//! specialists:
//!   - id: 0
//!     path: specialist-0.onnx
//!     sha256: 9a1e…
//!     classes: [4, 9, 44, 49]     # output k < len is class classes[k]; output len is the dustbin
//!     subset_share: 0.041         # share of the training rows whose label is in `classes`
//!     sampled_share: 0.5          # share of subset rows in the half/half training stream
//!     dustbin_correction: 0.0     # log(oversampling factor), already added to the dustbin bias
//!     epochs: 6                   # epochs trained (after early stopping)
//!     rows_trained: 19200         # rows trained on, every epoch run counted
//!     validation_errors: 31       # on the subset-enriched validation slice
//!     validation_rows: 2000
//!     used: true                  # lowered the held-out validation errors: inference uses it
//!     validation_effect: { rows: 5000, errors_with: 241, errors_without: 247, nll_with: 0.171, nll_without: 0.180 }
//! ```
//!
//! `dustbin_correction` is informational: the correction is baked into the saved ONNX, so a reader
//! applies nothing and simply reads the specialist's logits.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Version of the manifest layout written by this crate.
pub const MANIFEST_VERSION: u32 = 2;

/// Why a manifest could not be read or does not fit.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a specialists manifest: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error(
        "{}: the {what} {} has SHA-256 {found}, but the manifest records {expected}; \
         the file changed after the specialists were trained: train them again \
         (distill-specialists) or restore the file",
        manifest.display(), file.display()
    )]
    HashMismatch {
        manifest: PathBuf,
        what: &'static str,
        file: PathBuf,
        expected: String,
        found: String,
    },
}

/// A file named by the manifest, with its SHA-256.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRef {
    /// Relative to the manifest's folder (or absolute).
    pub path: String,
    pub sha256: String,
}

/// One trained specialist.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecialistEntry {
    /// The subset's id in `specialists.yaml`.
    pub id: usize,
    /// The ONNX file, relative to the manifest's folder.
    pub path: String,
    pub sha256: String,
    /// The subset's class ids, ascending: output `k` is class `classes[k]`, output
    /// `classes.len()` is the dustbin.
    pub classes: Vec<u32>,
    /// Share of the training rows (after class filters) whose label is in `classes`.
    pub subset_share: f64,
    /// Share of subset rows in the training stream the specialist saw (0.5 for half/half).
    pub sampled_share: f64,
    /// Added to the dustbin logit after training (already in the saved bias).
    pub dustbin_correction: f64,
    pub epochs: usize,
    /// Rows the specialist trained on, over every epoch it ran (early stopping's included).
    #[serde(default)]
    pub rows_trained: usize,
    pub validation_errors: usize,
    pub validation_rows: usize,
    /// Whether inference uses this specialist: it lowered the held-out validation errors (or
    /// kept them and lowered the NLL) of the generalist combined with the other used specialists.
    /// Manifests of version 1 did not choose, and use every specialist.
    #[serde(default = "used_by_default")]
    pub used: bool,
    /// The system's validation score with and without this specialist (version 2 on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_effect: Option<ValidationEffect>,
}

fn used_by_default() -> bool {
    true
}

/// The generalist combined with the used specialists, scored on the held-out validation rows with
/// and without one specialist (without it when it is used, with it added when it is not).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationEffect {
    pub rows: usize,
    pub errors_with: usize,
    pub errors_without: usize,
    /// Mean negative log-likelihood of the true class (nats).
    pub nll_with: f64,
    pub nll_without: f64,
}

/// The whole manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub version: u32,
    pub tool_version: String,
    pub generalist: FileRef,
    /// The generalist's class count; every specialist class id is below it.
    pub classes: usize,
    /// The `specialists.yaml` the subsets came from (relative to the manifest's folder).
    pub subsets: String,
    /// The soft-target store the specialists were trained from, when one was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    pub specialists: Vec<SpecialistEntry>,
}

impl Manifest {
    /// Reads and validates `path` (hashes are not checked: see [`Manifest::verify_files`]). Only
    /// a regular file of at most [`distill_core::input::MAX_TEXT_BYTES`] is read: a device, a
    /// FIFO, a folder or a larger file is [`ManifestError::Invalid`].
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text =
            distill_core::input::read_to_string("", path, distill_core::input::MAX_TEXT_BYTES)
                .map_err(|e| match e {
                    distill_core::CoreError::Io { source, .. } => ManifestError::Io {
                        path: path.to_path_buf(),
                        source,
                    },
                    distill_core::CoreError::Format { message, .. } => ManifestError::Invalid {
                        path: path.to_path_buf(),
                        message: message.trim_start_matches(": ").to_string(),
                    },
                    other => ManifestError::Invalid {
                        path: path.to_path_buf(),
                        message: other.to_string(),
                    },
                })?;
        let manifest: Manifest =
            serde_norway::from_str(&text).map_err(|e| ManifestError::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        manifest.validate(path)?;
        Ok(manifest)
    }

    /// Checks the invariants every reader relies on; `path` names the file in errors.
    pub fn validate(&self, path: &Path) -> Result<(), ManifestError> {
        let bad = |message: String| {
            Err(ManifestError::Invalid {
                path: path.to_path_buf(),
                message,
            })
        };
        if !(1..=MANIFEST_VERSION).contains(&self.version) {
            return bad(format!(
                "manifest version {} is not supported (this tool reads versions 1 to {MANIFEST_VERSION})",
                self.version
            ));
        }
        if self.classes < 2 {
            return bad(format!(
                "`classes` is {}; a generalist has at least 2 classes",
                self.classes
            ));
        }
        let mut ids = std::collections::HashSet::new();
        for (k, s) in self.specialists.iter().enumerate() {
            if !ids.insert(s.id) {
                return bad(format!("specialist id {} appears twice", s.id));
            }
            if s.classes.is_empty() {
                return bad(format!(
                    "specialists[{k}] (id {}) has no classes; each specialist covers at least one",
                    s.id
                ));
            }
            if s.classes.windows(2).any(|w| w[0] >= w[1]) {
                return bad(format!(
                    "specialists[{k}] (id {}): `classes` must be ascending and distinct, found {:?}",
                    s.id, s.classes
                ));
            }
            if let Some(&c) = s.classes.iter().find(|&&c| c as usize >= self.classes) {
                return bad(format!(
                    "specialists[{k}] (id {}) names class {c}, but the generalist has {} classes (0..={})",
                    s.id,
                    self.classes,
                    self.classes - 1
                ));
            }
        }
        Ok(())
    }

    /// The folder relative paths are taken from.
    pub fn base_dir(manifest_path: &Path) -> PathBuf {
        manifest_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }

    /// `relative` resolved against the manifest's folder.
    pub fn resolve(manifest_path: &Path, relative: &str) -> PathBuf {
        let p = Path::new(relative);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            Self::base_dir(manifest_path).join(p)
        }
    }

    /// The generalist's path.
    pub fn generalist_path(&self, manifest_path: &Path) -> PathBuf {
        Self::resolve(manifest_path, &self.generalist.path)
    }

    /// Each specialist's path, in manifest order.
    pub fn specialist_paths(&self, manifest_path: &Path) -> Vec<PathBuf> {
        self.specialists
            .iter()
            .map(|s| Self::resolve(manifest_path, &s.path))
            .collect()
    }

    /// Checks that the generalist and every specialist file still have the recorded SHA-256.
    pub fn verify_files(&self, manifest_path: &Path) -> Result<(), ManifestError> {
        let check = |what: &'static str, file: PathBuf, expected: &str| {
            let found = distill_core::sha256_file(&file).map_err(|e| ManifestError::Invalid {
                path: manifest_path.to_path_buf(),
                message: format!("cannot read the {what} it names: {e}"),
            })?;
            if found != expected {
                return Err(ManifestError::HashMismatch {
                    manifest: manifest_path.to_path_buf(),
                    what,
                    file,
                    expected: expected.to_string(),
                    found,
                });
            }
            Ok(())
        };
        check(
            "generalist",
            self.generalist_path(manifest_path),
            &self.generalist.sha256,
        )?;
        for (s, path) in self
            .specialists
            .iter()
            .zip(self.specialist_paths(manifest_path))
        {
            check("specialist", path, &s.sha256)?;
        }
        Ok(())
    }

    /// Writes the manifest atomically.
    pub fn save(&self, path: &Path) -> Result<(), ManifestError> {
        let text = serde_norway::to_string(self).map_err(|e| ManifestError::Invalid {
            path: path.to_path_buf(),
            message: format!("cannot serialise: {e}"),
        })?;
        distill_core::atomic::write_bytes(path, text.as_bytes()).map_err(|e| {
            ManifestError::Invalid {
                path: path.to_path_buf(),
                message: e.to_string(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            version: MANIFEST_VERSION,
            tool_version: distill_core::TOOL_VERSION.into(),
            generalist: FileRef {
                path: "g.onnx".into(),
                sha256: String::new(),
            },
            classes: 10,
            subsets: "specialists.yaml".into(),
            store: None,
            specialists: vec![SpecialistEntry {
                id: 0,
                path: "specialist-0.onnx".into(),
                sha256: String::new(),
                classes: vec![3, 5, 8],
                subset_share: 0.3,
                sampled_share: 0.5,
                dustbin_correction: (0.7f64 / 0.5).ln(),
                epochs: 3,
                rows_trained: 0,
                validation_errors: 4,
                validation_rows: 100,
                used: true,
                validation_effect: None,
            }],
        }
    }

    #[test]
    fn round_trip_and_hash_check() {
        let dir = tempfile::tempdir().unwrap();
        let g = dir.path().join("g.onnx");
        let s = dir.path().join("specialist-0.onnx");
        std::fs::write(&g, b"generalist").unwrap();
        std::fs::write(&s, b"specialist").unwrap();
        let mut m = sample();
        m.generalist.sha256 = distill_core::sha256_hex(b"generalist");
        m.specialists[0].sha256 = distill_core::sha256_hex(b"specialist");
        let path = dir.path().join("manifest.yaml");
        m.save(&path).unwrap();
        let back = Manifest::load(&path).unwrap();
        assert_eq!(back, m);
        back.verify_files(&path).unwrap();
        std::fs::write(&s, b"changed").unwrap();
        let err = back.verify_files(&path).unwrap_err().to_string();
        assert!(
            err.contains("specialist-0.onnx") && err.contains("train them again"),
            "{err}"
        );
    }

    #[test]
    fn refuses_class_out_of_range() {
        let mut m = sample();
        m.specialists[0].classes = vec![3, 12];
        let err = m.validate(Path::new("m.yaml")).unwrap_err().to_string();
        assert!(
            err.contains("class 12") && err.contains("10 classes"),
            "{err}"
        );
    }
}
