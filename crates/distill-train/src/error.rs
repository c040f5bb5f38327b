use std::path::PathBuf;

/// Everything that can stop a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Core(#[from] distill_core::CoreError),
    #[error(transparent)]
    Nn(#[from] distill_nn::NnError),
    #[error("{0}")]
    Invalid(String),
    /// The loss of a training step is not finite (`epoch` counts from 1).
    #[error(
        "the loss became {loss} at epoch {epoch}, batch {batch}: lower the learning rate (--lr) or add --max-norm"
    )]
    NonFiniteLoss {
        loss: f64,
        epoch: usize,
        batch: usize,
    },
    #[error("{path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    /// The saved model does not reproduce the engine's outputs in ONNX Runtime (a bug, not bad input).
    #[error("{path}: {message}")]
    Export { path: PathBuf, message: String },
    #[error("could not start {threads} worker threads: {message}")]
    Threads { threads: usize, message: String },
}

impl TrainError {
    pub fn invalid(message: impl Into<String>) -> Self {
        TrainError::Invalid(message.into())
    }

    /// Bad flags or input files (exit code 2), as opposed to failures of the machine.
    pub fn is_user_error(&self) -> bool {
        match self {
            TrainError::Core(e) => e.is_user_error(),
            TrainError::Nn(distill_nn::NnError::Core(e)) => e.is_user_error(),
            TrainError::Nn(_)
            | TrainError::Invalid(_)
            | TrainError::NonFiniteLoss { .. }
            | TrainError::Checkpoint { .. } => true,
            TrainError::Threads { .. } | TrainError::Export { .. } => false,
        }
    }
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;
