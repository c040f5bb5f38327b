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
    /// Binaries exit with code 2 for these. An I/O error counts as the user's when its kind says
    /// so (a missing file, a permission, damaged data), also when the Parquet reader or writer
    /// reports it; a full disk or any other failure of the machine does not.
    pub fn is_user_error(&self) -> bool {
        match self {
            CoreError::Io { source, .. } => user_io_kind(source.kind()),
            CoreError::Parquet { source, .. } => {
                io_cause(source.as_ref()).is_none_or(|io| user_io_kind(io.kind()))
            }
            _ => true,
        }
    }
}

/// The I/O error kinds that come from the user's files or paths.
fn user_io_kind(kind: std::io::ErrorKind) -> bool {
    matches!(
        kind,
        std::io::ErrorKind::NotFound
            | std::io::ErrorKind::PermissionDenied
            | std::io::ErrorKind::InvalidData
            | std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::IsADirectory
            | std::io::ErrorKind::NotADirectory
            | std::io::ErrorKind::ReadOnlyFilesystem
    )
}

/// The first I/O error in `error`'s chain of sources, `error` included.
fn io_cause<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        next = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Error, ErrorKind};

    /// An error that wraps another, as the Parquet writer's `External` does.
    #[derive(Debug, thiserror::Error)]
    #[error("External: {0}")]
    struct Wrapped(#[source] Error);

    #[test]
    fn a_full_disk_is_the_machine_s_fault_however_it_is_reported() {
        let path = Path::new("s.parquet");
        let full = || Error::from(ErrorKind::StorageFull);
        assert!(!CoreError::io(path, full()).is_user_error());
        assert!(!CoreError::parquet(path, Wrapped(full())).is_user_error());
        assert!(!CoreError::parquet(path, full()).is_user_error());
        // A missing file and a Parquet complaint without an I/O cause are the user's.
        let missing = Wrapped(Error::from(ErrorKind::NotFound));
        assert!(CoreError::parquet(path, missing).is_user_error());
        assert!(CoreError::parquet(path, "not a Parquet file").is_user_error());
        assert!(CoreError::io(path, Error::from(ErrorKind::PermissionDenied)).is_user_error());
    }
}
