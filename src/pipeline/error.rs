//! The pipeline runner's errors: the file, line and column of a mistake in the YAML, or the stage
//! that failed.

use std::fmt;
use std::path::PathBuf;

use super::locate::Pos;

pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A mistake in the pipeline file, found before anything runs.
    #[error("{}", Located { file, pos: *pos, message, hint })]
    Invalid {
        file: PathBuf,
        pos: Pos,
        message: String,
        hint: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A bad command line (an unknown stage in --force/--from/--to, a missing pipeline file).
    #[error("{0}")]
    Usage(String),
    #[error("stage {stage} failed: {message}")]
    Stage {
        stage: String,
        message: String,
        user: bool,
    },
    /// A stage stopped by Ctrl-C; `checkpoint` when it left one (a train stage) to resume from.
    #[error(
        "stage {stage} was interrupted; {}",
        if *checkpoint {
            "its checkpoint is kept: run the pipeline again to resume"
        } else {
            "run the pipeline again to run it from the start"
        }
    )]
    Interrupted { stage: String, checkpoint: bool },
    #[error("interrupted before stage {stage} started; run the pipeline again to continue")]
    Stopped { stage: String },
    /// `distill run --executor slurm` stopped waiting (Ctrl-C); the jobs go on.
    #[error(
        "stopped waiting for the Slurm jobs {jobs}; they keep running: `distill run` again picks up \
         their results (or cancel them with scancel)"
    )]
    Detached { jobs: String },
    #[error(transparent)]
    Core(#[from] distill_core::CoreError),
}

struct Located<'a> {
    file: &'a PathBuf,
    pos: Pos,
    message: &'a str,
    hint: &'a str,
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.pos.line,
            self.pos.column,
            self.message
        )?;
        if !self.hint.is_empty() {
            write!(f, "\n  hint: {}", self.hint)?;
        }
        Ok(())
    }
}

impl PipelineError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        PipelineError::Io {
            path: path.into(),
            source,
        }
    }

    /// 2 for mistakes in the pipeline, the command line or a stage's input; 130 for an interrupt;
    /// 1 for anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            PipelineError::Invalid { .. } | PipelineError::Usage(_) => 2,
            PipelineError::Stage { user: true, .. } => 2,
            PipelineError::Stage { user: false, .. } | PipelineError::Io { .. } => 1,
            PipelineError::Interrupted { .. }
            | PipelineError::Stopped { .. }
            | PipelineError::Detached { .. } => 130,
            PipelineError::Core(e) => {
                if e.is_user_error() {
                    2
                } else {
                    1
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PipelineError;

    #[test]
    fn only_a_stage_with_a_checkpoint_is_said_to_resume() {
        let train = PipelineError::Interrupted {
            stage: "student".into(),
            checkpoint: true,
        };
        assert!(
            train.to_string().contains("its checkpoint is kept"),
            "{train}"
        );
        let cmd = PipelineError::Interrupted {
            stage: "import".into(),
            checkpoint: false,
        };
        assert_eq!(
            cmd.to_string(),
            "stage import was interrupted; run the pipeline again to run it from the start"
        );
    }
}
