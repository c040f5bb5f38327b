//! The one adapter between distill and ONNX Runtime.
//!
//! [`init`] finds and loads the ONNX Runtime shared library once per process; [`Provider`] is the only place
//! where execution providers are chosen; [`OnnxModel`] opens a model described by a [`ModelSpec`] (its file,
//! explicit [`ModelSettings`], and the sidecar `model.onnx.yaml`) and turns raw `[N, D]` rows into `[N, C]`
//! logits or probabilities. Every failure is a [`RuntimeError`] that names the file and says what to change.

mod error;
mod external;
pub mod flags;
mod library;
mod model;
mod output;
mod provider;
mod session;
mod signature;
mod spec;

pub use error::{Result, RuntimeError};
pub use external::external_data_locations;
pub use flags::{ModelSettingsArgs, Owners};
pub use library::{Runtime, init};
pub use model::OnnxModel;
pub use provider::Provider;
pub use spec::{
    Layout, LayoutKind, ModelSettings, ModelSpec, Normalization, OutputKind, parse_image_shape,
    parse_kind, parse_layout,
};
