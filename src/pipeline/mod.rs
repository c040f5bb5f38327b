//! `distill run PIPELINE.yaml`: named stages of the distill tools (and shell commands) in one YAML
//! file, run in dependency order, skipped when their arguments, inputs and outputs are unchanged
//! since the lock file recorded them, and resumed after an interruption.
//!
//! The format, the cache rules and the flags are described in the top-level README.

mod child;
mod error;
mod graph;
mod locate;
mod lock;
mod runner;
mod slurm;
mod spec;
mod stage;

pub use error::{PipelineError, Result};
pub use locate::Pos;
pub use lock::{Entry, Lock, State, lock_path};
pub use runner::{Executor, Force, Options, Row, Status, Summary, run, say};
pub use slurm::SlurmOptions;
pub use spec::{Document, Kind, StageSpec, parse_set};
pub use stage::{Dep, Out, Stage};
