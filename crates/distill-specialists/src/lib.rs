//! Specialists: one small model per class subset found by `distill-cluster`, each predicting its
//! subset's classes plus one *dustbin* class for everything else, combined with the generalist at
//! inference by minimising a sum of KL divergences (Hinton, Vinyals and Dean, §5).
//!
//! - [`combine`]: the KL combination of the generalist's and the active specialists' distributions
//!   (the reusable inference step).
//! - [`manifest`]: the `manifest.yaml` that names the generalist and every specialist file (the
//!   contract between training, evaluation and the report).
//! - [`targets`]: the subset/dustbin view of labels and soft targets, and the dustbin correction.
//! - [`sampler`]: the half-subset, half-others training stream.
//! - [`init`]: a specialist built from the generalist's weights.
//! - [`train`]: the training stage (`distill-specialists`), and [`cli`] its command line.

pub mod cli;
pub mod combine;
mod error;
pub mod init;
pub mod manifest;
pub mod sampler;
pub mod targets;
pub mod train;

pub use combine::{CombineError, CombineOptions, Combined, SpecialistLogits, combine};
pub use error::{Result, SpecialistsError};
pub use manifest::{MANIFEST_VERSION, Manifest, ManifestError, SpecialistEntry};
pub use train::{Config, Report, run};
