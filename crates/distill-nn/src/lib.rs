//! The engine: MLPs and sequential convolutional networks ([`Net`], described by an [`Arch`]),
//! the distillation loss, optimisers and ONNX export/import, on ndarray and rayon. Small and exact: seeded runs are bit-for-bit reproducible.

pub mod arch;
pub mod batchnorm;
pub mod conv;
pub mod dropout;
pub mod fold;
pub mod gemm;
pub mod layer;
pub mod linear;
pub mod loss;
pub mod mlp;
pub mod model;
pub mod net;
pub mod onnx;
pub mod optim;
pub mod pool;
pub mod sparse;
pub mod threads;

pub use arch::{Arch, LayerSpec, Shape};
pub use fold::Fold;
pub use linear::Init;
pub use loss::{DistillLoss, LossParts};
pub use mlp::{Mlp, MlpConfig, SparseInput, Workspace};
pub use model::{Model, ModelWorkspace};
pub use net::{Net, NetWorkspace};
pub use optim::{Optimizer, OptimizerConfig, Schedule};

/// Errors of the engine: shapes that do not fit, and ONNX files it cannot read.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    #[error("{0}")]
    Shape(String),
    #[error("{path}: {message}")]
    Onnx { path: String, message: String },
    #[error(transparent)]
    Core(#[from] distill_core::CoreError),
}

pub type Result<T, E = NnError> = std::result::Result<T, E>;
