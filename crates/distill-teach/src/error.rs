use std::path::PathBuf;

use distill_core::CoreError;
use distill_runtime::RuntimeError;

/// Result with [`TeachError`].
pub type Result<T, E = TeachError> = std::result::Result<T, E>;

/// Everything that can stop `distill-teach`. Each variant names the teacher, file or flag at fault.
#[derive(Debug, thiserror::Error)]
pub enum TeachError {
    /// Data, store or file errors from the shared layer.
    #[error(transparent)]
    Core(#[from] CoreError),

    /// Loading or running a teacher with ONNX Runtime; the message names the model file.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),

    /// A flag or configuration value that cannot work.
    #[error("{flag}: {message}")]
    Usage {
        /// The flag (or configuration field) at fault, e.g. `--shard`.
        flag: &'static str,
        /// What is wrong and what to give instead.
        message: String,
    },

    /// A teacher's class count differs from the data set's.
    #[error(
        "teacher '{teacher}' ({}) outputs {found} classes (output `{output}` of shape [N, {found}]), \
         but the data set {dataset} has {expected} classes, so it must be [N, {expected}]; every \
         teacher must score exactly the data set's classes: use a teacher trained on these {expected} \
         classes, or, if the model has another output with the class scores, name it with the \
         `output` setting (--output after its --model, or `output:` in {}.yaml)",
        path.display(),
        path.display()
    )]
    Classes {
        teacher: String,
        path: PathBuf,
        output: String,
        expected: usize,
        found: usize,
        dataset: String,
    },

    /// Two teachers have the same explicit name, or a name that is a reserved column.
    #[error("teacher {}: {message}", path.display())]
    Name { path: PathBuf, message: String },

    /// The output path cannot be written as asked.
    #[error("--out {}: {message}", path.display())]
    Output { path: PathBuf, message: String },

    /// A worker thread stopped without saying why (a bug, not bad input).
    #[error("internal error: {0}")]
    Internal(String),
}

impl TeachError {
    /// Whether the error comes from the user's input (files, models, flags); binaries exit with 2 for
    /// these and with 1 for the others.
    pub fn is_user_error(&self) -> bool {
        match self {
            TeachError::Core(e) => e.is_user_error(),
            TeachError::Runtime(e) => e.is_user_error(),
            TeachError::Internal(_) => false,
            TeachError::Usage { .. } | TeachError::Classes { .. } | TeachError::Name { .. } => true,
            TeachError::Output { .. } => true,
        }
    }

    pub(crate) fn usage(flag: &'static str, message: impl Into<String>) -> Self {
        TeachError::Usage {
            flag,
            message: message.into(),
        }
    }
}
