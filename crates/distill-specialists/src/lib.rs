//! Specialists: one small model per class subset found by `distill-cluster`, each predicting its
//! subset's classes plus one *dustbin* class for everything else, combined with the generalist at
//! inference by minimising a sum of KL divergences (Hinton, Vinyals and Dean, §5).
//!
//! - [`combine`]: the KL combination of the generalist's and the active specialists' distributions
//!   (the reusable inference step).
//! - [`manifest`]: the `manifest.yaml` that names the generalist and every specialist file (the
//!   contract between training, evaluation and the report).

pub mod combine;
pub mod manifest;

pub use combine::{CombineError, CombineOptions, Combined, SpecialistLogits, combine};
pub use manifest::{MANIFEST_VERSION, Manifest, ManifestError, SpecialistEntry};
