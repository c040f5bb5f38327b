use std::path::{Path, PathBuf};

/// Result with [`CoreError`].
pub type Result<T, E = CoreError> = std::result::Result<T, E>;

/// Everything that can go wrong in the shared layer. Each variant names the file, field or shape.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error(
        "{path}: SHA-256 mismatch: expected {expected}, found {found}; the file is damaged; restore it with `git checkout -- {path}`"
    )]
    Checksum {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("{path}: {source}")]
    Parquet {
        path: PathBuf,
        /// What the Parquet reader or writer said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{0}")]
    Invalid(String),
}

impl CoreError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        CoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn format(path: &Path, message: impl Into<String>) -> Self {
        CoreError::Format {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    /// An error of the Parquet reader or writer (or of Arrow) about the file at `path`.
    pub fn parquet(
        path: &Path,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        CoreError::Parquet {
            path: path.to_path_buf(),
            source: source.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        CoreError::Invalid(message.into())
    }

    /// Whether the error comes from the user's input (files, flags) rather than the machine.
    /// Binaries exit with code 2 for these.
    pub fn is_user_error(&self) -> bool {
        match self {
            CoreError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::InvalidData
                    | std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::IsADirectory
                    | std::io::ErrorKind::NotADirectory
                    | std::io::ErrorKind::ReadOnlyFilesystem
            ),
            _ => true,
        }
    }
}
