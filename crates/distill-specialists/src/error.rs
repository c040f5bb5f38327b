use std::path::PathBuf;

/// Everything that can stop a specialist training run.
#[derive(Debug, thiserror::Error)]
pub enum SpecialistsError {
    #[error(transparent)]
    Core(#[from] distill_core::CoreError),
    #[error(transparent)]
    Nn(#[from] distill_nn::NnError),
    #[error(transparent)]
    Train(#[from] distill_train::TrainError),
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
    /// A flag value, or a combination of them, that cannot work.
    #[error("{0}")]
    Invalid(String),
    /// An input file (subsets, generalist, store) that does not fit the others.
    #[error("{}: {message}", path.display())]
    Input { path: PathBuf, message: String },
    #[error("could not start {threads} worker threads: {message}")]
    Threads { threads: usize, message: String },
}

impl SpecialistsError {
    pub fn invalid(message: impl Into<String>) -> Self {
        SpecialistsError::Invalid(message.into())
    }

    pub fn input(path: &std::path::Path, message: impl Into<String>) -> Self {
        SpecialistsError::Input {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    /// Bad flags or input files (exit code 2), as opposed to failures of the machine.
    pub fn is_user_error(&self) -> bool {
        match self {
            SpecialistsError::Core(e) => e.is_user_error(),
            SpecialistsError::Nn(distill_nn::NnError::Core(e)) => e.is_user_error(),
            SpecialistsError::Train(e) => e.is_user_error(),
            SpecialistsError::Manifest(crate::manifest::ManifestError::Io { .. }) => false,
            SpecialistsError::Threads { .. } => false,
            SpecialistsError::Nn(_)
            | SpecialistsError::Manifest(_)
            | SpecialistsError::Invalid(_)
            | SpecialistsError::Input { .. } => true,
        }
    }
}

pub type Result<T, E = SpecialistsError> = std::result::Result<T, E>;
