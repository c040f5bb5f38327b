//! Deciding which stages run, running them (in-process, or `sh -c` for `cmd`), several at a time
//! when they are independent, and recording each completed stage in the lock.

mod decide;
mod dispatch;
mod record;
mod schedule;
mod summary;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, mpsc};
use std::time::Instant;

use super::error::{PipelineError, Result};
use super::graph::Graph;
use super::lock::{Entry, HashCache, Lock, State, lock_path};
use super::slurm::SlurmOptions;
use super::spec::{Document, Kind};
use super::stage::{Stage, StageConfig};
use distill_progress::{Mode, Progress, Verbosity};

pub(in crate::pipeline) use decide::Decision;

/// Which stages to force.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Force {
    #[default]
    None,
    All,
    /// A stage by name, or every `foreach` expansion of a stage by its name in the file.
    Stage(String),
}

/// How to run a pipeline.
#[derive(Clone, Debug)]
pub struct Options {
    pub force: Force,
    /// First stage (in the printed order) to consider.
    pub from: Option<String>,
    /// Last stage (in the printed order) to consider.
    pub to: Option<String>,
    /// Print the plan and why each stage would run or be skipped; run nothing.
    pub dry_run: bool,
    /// Stages run at once, when independent.
    pub jobs: usize,
    /// `--set NAME=VALUE`: values that replace the pipeline's `vars`, in the order given.
    pub set: Vec<(String, String)>,
    /// Where the stages show their progress: one display for every stage of the run, each
    /// stage's lines and bars under its name.
    pub progress: Progress,
    /// Where the stages run: in this process (the default), or as Slurm jobs.
    pub executor: Executor,
}

/// Where `distill run` runs the stages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Executor {
    /// In this process (`cmd` stages as child processes), `--jobs` at a time.
    #[default]
    Local,
    /// One `sbatch` job (or job array) per stage (or `foreach` stage), see [`super::slurm`].
    Slurm(SlurmOptions),
}

impl Default for Options {
    fn default() -> Self {
        Options {
            force: Force::None,
            from: None,
            to: None,
            dry_run: false,
            jobs: 1,
            set: Vec::new(),
            progress: Progress::new(Mode::Auto, Verbosity::Normal),
            executor: Executor::Local,
        }
    }
}

/// What happened to a stage.
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    Ran,
    Skipped,
    /// Would run (dry run).
    WouldRun,
    Failed,
    /// Outside --from/--to.
    NotSelected,
    /// Not reached: an earlier stage failed or the run was interrupted.
    NotRun,
    /// Submitted to Slurm and not finished when `distill run --no-wait` returned.
    Submitted,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Ran => "ran",
            Status::Skipped => "skipped",
            Status::WouldRun => "run",
            Status::Failed => "failed",
            Status::NotSelected => "-",
            Status::NotRun => "blocked",
            Status::Submitted => "queued",
        })
    }
}

#[derive(Clone, Debug)]
pub struct Row {
    pub stage: String,
    pub kind: Kind,
    pub status: Status,
    pub seconds: f64,
    /// Why it ran or was skipped.
    pub reason: String,
    /// The report the stage printed (this run, or the last run that completed it).
    pub report: Option<String>,
    pub outs: Vec<PathBuf>,
}

/// The table printed at the end, and what went wrong, if anything.
#[derive(Debug)]
pub struct Summary {
    pub pipeline: PathBuf,
    pub lock: PathBuf,
    /// The folder stage paths are relative to.
    pub wdir: PathBuf,
    pub rows: Vec<Row>,
    pub seconds: f64,
    pub dry_run: bool,
    pub error: Option<PipelineError>,
}

/// Reads, checks and runs the pipeline at `file`. Errors in the file (and an unknown stage in the
/// options) come back as `Err` before anything runs; a stage that fails ends the run, and the
/// summary carries the error. Changes the process's current folder to the pipeline's `wdir`.
pub fn run(file: &Path, options: &Options) -> Result<Summary> {
    let started = Instant::now();
    let doc = Document::read_with(file, &options.set)?;
    let wdir = doc.working_folder(file)?;
    // Before the folder changes: `file` may be relative to the folder the user is in.
    let file_abs = std::path::absolute(file).map_err(|e| PipelineError::io(file, e))?;
    std::env::set_current_dir(&wdir).map_err(|e| PipelineError::io(&wdir, e))?;
    let mut stages = doc
        .stages
        .iter()
        .map(|s| Stage::resolve(&doc, s))
        .collect::<Result<Vec<_>>>()?;
    let graph = Graph::build(&doc, &mut stages)?;
    super::graph::check_pipeline_files(&doc, &stages, &file_abs, &lock_path(&file_abs))?;
    let selected = select(&stages, &graph, options)?;
    let forced: Vec<bool> = match &options.force {
        Force::None => vec![false; stages.len()],
        Force::All => vec![true; stages.len()],
        Force::Stage(name) => {
            let hits = matching(&stages, name)?;
            (0..stages.len()).map(|i| hits.contains(&i)).collect()
        }
    };
    let lock_file = lock_path(&file_abs);
    let (lock, note) = Lock::read(&lock_file);
    if let Some(n) = note {
        eprintln!("note: {n}");
    }
    let slurm_dir = super::slurm::state_dir(&wdir, &file_abs);
    let runner = Runner {
        stages: &stages,
        graph: &graph,
        lock: Mutex::new(lock),
        lock_file: lock_file.clone(),
        hasher: HashCache::default(),
        forced,
        progress: &options.progress,
    };
    let (rows, error) = match (&options.executor, options.dry_run) {
        (Executor::Local, true) => {
            let mut rows = runner.plan(&selected)?;
            super::slurm::note_submitted(&mut rows, &slurm_dir);
            (rows, None)
        }
        (Executor::Slurm(slurm), true) => {
            let mut rows = runner.plan(&selected)?;
            super::slurm::note_submitted(&mut rows, &slurm_dir);
            super::slurm::print_scripts(&runner, &rows, slurm, &file_abs, &wdir, &slurm_dir)?;
            (rows, None)
        }
        (Executor::Local, false) => {
            // Results of Slurm jobs an earlier `--executor slurm --no-wait` submitted go into the
            // lock first; stages still running there are not run here too.
            super::slurm::pick_up_for_local(&runner, &slurm_dir)?;
            distill_core::interrupt::install();
            runner.execute(&selected, options.jobs.max(1))
        }
        (Executor::Slurm(slurm), false) => {
            distill_core::interrupt::install();
            super::slurm::execute(&runner, &selected, slurm, &file_abs, &wdir, &slurm_dir)?
        }
    };
    Ok(Summary {
        pipeline: file.to_path_buf(),
        lock: lock_file,
        wdir,
        rows,
        seconds: started.elapsed().as_secs_f64(),
        dry_run: options.dry_run,
        error,
    })
}

/// The stages a name refers to: the stage itself, or every expansion of a `foreach` stage.
fn matching(stages: &[Stage], name: &str) -> Result<Vec<usize>> {
    let hits: Vec<usize> = stages
        .iter()
        .enumerate()
        .filter(|(_, s)| s.name == name || s.template == name)
        .map(|(i, _)| i)
        .collect();
    if hits.is_empty() {
        let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
        return Err(PipelineError::Usage(format!(
            "no stage named {name}; the stages are {}",
            names.join(", ")
        )));
    }
    Ok(hits)
}

/// The stages from `--from` to `--to`, in the topological order.
fn select(stages: &[Stage], graph: &Graph, options: &Options) -> Result<Vec<bool>> {
    let position = |i: usize| graph.order.iter().position(|&k| k == i).unwrap_or(0);
    let first = match &options.from {
        Some(n) => matching(stages, n)?
            .into_iter()
            .map(position)
            .min()
            .unwrap_or(0),
        None => 0,
    };
    let last = match &options.to {
        Some(n) => matching(stages, n)?
            .into_iter()
            .map(position)
            .max()
            .unwrap_or(0),
        None => stages.len().saturating_sub(1),
    };
    if first > last {
        return Err(PipelineError::Usage(format!(
            "--from {} comes after --to {} in the pipeline's order",
            options.from.as_deref().unwrap_or_default(),
            options.to.as_deref().unwrap_or_default()
        )));
    }
    let mut selected = vec![false; stages.len()];
    for &i in &graph.order[first..=last] {
        selected[i] = true;
    }
    Ok(selected)
}

pub(super) struct Runner<'a> {
    pub stages: &'a [Stage],
    pub graph: &'a Graph,
    pub lock: Mutex<Lock>,
    pub lock_file: PathBuf,
    pub hasher: HashCache,
    pub forced: Vec<bool>,
    pub progress: &'a Progress,
}

enum Outcome {
    Ran {
        seconds: f64,
        reason: String,
        report: String,
    },
    Skipped {
        reason: String,
        report: Option<String>,
    },
}

pub(super) fn key(p: &Path) -> String {
    p.display().to_string()
}

/// The text of a panic's payload (`panic!` with a message carries a `&str` or a `String`).
fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Prints a line on stdout; a closed stdout (`distill run ... | head -1`) is not a stage failure.
pub fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}
