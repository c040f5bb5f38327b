//! Deciding which stages run, running them (in-process, or `sh -c` for `cmd`), several at a time
//! when they are independent, and recording each completed stage in the lock.

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

/// Whether a stage runs, and why.
pub(super) struct Decision {
    pub run: bool,
    pub reason: String,
    /// A training stage interrupted with the same arguments and inputs: continue from its
    /// checkpoint.
    pub resume: bool,
    /// The hashes of the inputs as they are now.
    pub deps: BTreeMap<String, String>,
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

impl Runner<'_> {
    pub(super) fn entry(&self, name: &str) -> Option<Entry> {
        self.lock.lock().ok()?.stages.get(name).cloned()
    }

    pub(super) fn decide(&self, i: usize) -> Result<Decision> {
        let stage = &self.stages[i];
        let mut deps = BTreeMap::new();
        for d in &stage.deps {
            if let Some(h) = self.hasher.hash(&d.path)? {
                deps.insert(key(&d.path), h);
            }
        }
        let decision = |run: bool, reason: String| Decision {
            run,
            reason,
            resume: false,
            deps: deps.clone(),
        };
        if self.forced[i] {
            return Ok(decision(true, "forced".into()));
        }
        let Some(entry) = self.entry(&stage.name) else {
            return Ok(decision(true, "never run".into()));
        };
        if entry.state == State::Started {
            let resume = match &stage.config {
                StageConfig::Train(c) => {
                    entry.args == stage.args_hash
                        && entry.deps == deps
                        && c.paths().checkpoint.is_file()
                }
                _ => false,
            };
            let mut d = decision(
                true,
                if resume {
                    "interrupted last time; resuming from its checkpoint".into()
                } else {
                    "did not complete last time".into()
                },
            );
            d.resume = resume;
            return Ok(d);
        }
        if entry.version.as_deref() != Some(distill_core::TOOL_VERSION) {
            return Ok(decision(
                true,
                match &entry.version {
                    Some(v) => format!(
                        "distill version changed ({v} -> {})",
                        distill_core::TOOL_VERSION
                    ),
                    None => "distill version changed (the lock records none)".into(),
                },
            ));
        }
        if entry.args != stage.args_hash {
            return Ok(decision(true, "args changed".into()));
        }
        for (path, hash) in &deps {
            match entry.deps.get(path) {
                None => return Ok(decision(true, format!("new dep {path}"))),
                Some(h) if h != hash => return Ok(decision(true, format!("dep {path} changed"))),
                _ => {}
            }
        }
        if let Some(gone) = entry.deps.keys().find(|p| !deps.contains_key(*p)) {
            return Ok(decision(true, format!("dep {gone} missing")));
        }
        for o in &stage.outs {
            let now = self.hasher.hash(&o.path)?;
            let recorded = entry.outs.get(&key(&o.path));
            match (now, recorded) {
                (None, Some(_)) => {
                    return Ok(decision(
                        true,
                        format!("output {} missing", o.path.display()),
                    ));
                }
                (None, None) if o.required => {
                    return Ok(decision(
                        true,
                        format!("output {} missing", o.path.display()),
                    ));
                }
                (Some(h), Some(r)) if &h != r => {
                    return Ok(decision(
                        true,
                        format!("output {} changed", o.path.display()),
                    ));
                }
                _ => {}
            }
        }
        Ok(decision(false, "up to date".into()))
    }

    pub(super) fn row(&self, i: usize, status: Status, seconds: f64, reason: String) -> Row {
        let s = &self.stages[i];
        Row {
            stage: s.name.clone(),
            kind: s.kind,
            status,
            seconds,
            reason,
            report: None,
            outs: s
                .outs
                .iter()
                .filter(|o| o.required)
                .map(|o| o.path.clone())
                .collect(),
        }
    }

    /// The dry run: each stage's decision, with stages below one that runs marked to run too.
    pub(super) fn plan(&self, selected: &[bool]) -> Result<Vec<Row>> {
        let mut runs = vec![false; self.stages.len()];
        let mut rows: Vec<Option<Row>> = vec![None; self.stages.len()];
        for &i in &self.graph.order {
            if !selected[i] {
                rows[i] = Some(self.row(i, Status::NotSelected, 0.0, "not selected".into()));
                continue;
            }
            let d = self.decide(i)?;
            let upstream = self.graph.upstream[i].iter().find(|&&j| runs[j]);
            let (run, reason) = match (d.run, upstream) {
                (true, _) => (true, d.reason),
                (false, Some(&j)) => (true, format!("upstream {} runs", self.stages[j].name)),
                (false, None) => (false, d.reason),
            };
            runs[i] = run;
            let status = if run {
                Status::WouldRun
            } else {
                Status::Skipped
            };
            rows[i] = Some(self.row(i, status, 0.0, reason));
        }
        Ok(self
            .graph
            .order
            .iter()
            .filter_map(|&i| rows[i].take())
            .collect())
    }

    /// Runs the selected stages, up to `jobs` at a time; stops starting new ones after a failure.
    fn execute(&self, selected: &[bool], jobs: usize) -> (Vec<Row>, Option<PipelineError>) {
        #[derive(Clone, PartialEq)]
        enum StageState {
            Pending,
            Running,
            Finished,
            Failed,
        }
        let n = self.stages.len();
        let mut state: Vec<StageState> = (0..n)
            .map(|i| {
                if selected[i] {
                    StageState::Pending
                } else {
                    StageState::Finished
                }
            })
            .collect();
        let mut rows: Vec<Option<Row>> = vec![None; n];
        for i in 0..n {
            if !selected[i] {
                rows[i] = Some(self.row(i, Status::NotSelected, 0.0, "not selected".into()));
            }
        }
        let mut error: Option<PipelineError> = None;
        let (tx, rx) = mpsc::channel::<(usize, Result<Outcome>)>();
        std::thread::scope(|scope| {
            let mut running = 0usize;
            loop {
                while running < jobs && error.is_none() {
                    let ready = self.graph.order.iter().copied().find(|&i| {
                        state[i] == StageState::Pending
                            && self.graph.upstream[i]
                                .iter()
                                .all(|&j| state[j] == StageState::Finished)
                    });
                    let Some(i) = ready else { break };
                    if distill_core::interrupt::requested() {
                        error = Some(PipelineError::Stopped {
                            stage: self.stages[i].name.clone(),
                        });
                        break;
                    }
                    state[i] = StageState::Running;
                    running += 1;
                    let tx = tx.clone();
                    scope.spawn(move || {
                        // A panicking stage must still report back: the loop below waits for
                        // one message per running stage, and would otherwise wait forever.
                        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            self.stage(i)
                        }))
                        .unwrap_or_else(|panic| {
                            Err(PipelineError::Stage {
                                stage: self.stages[i].name.clone(),
                                message: format!("it panicked: {}", panic_message(&panic)),
                                user: false,
                            })
                        });
                        let _ = tx.send((i, result));
                    });
                }
                if running == 0 {
                    break;
                }
                let Ok((i, result)) = rx.recv() else { break };
                running -= 1;
                match result {
                    Ok(Outcome::Ran {
                        seconds,
                        reason,
                        report,
                    }) => {
                        state[i] = StageState::Finished;
                        let mut row = self.row(i, Status::Ran, seconds, reason);
                        row.report = Some(report);
                        rows[i] = Some(row);
                    }
                    Ok(Outcome::Skipped { reason, report }) => {
                        state[i] = StageState::Finished;
                        let mut row = self.row(i, Status::Skipped, 0.0, reason);
                        row.report = report;
                        rows[i] = Some(row);
                    }
                    Err(e) => {
                        state[i] = StageState::Failed;
                        rows[i] = Some(self.row(i, Status::Failed, 0.0, e.to_string()));
                        if error.is_none() {
                            error = Some(e);
                        }
                    }
                }
            }
        });
        // A failed pipeline still gets its report: the report stages, whose inputs are all
        // optional, run after the failure and say which stages' outputs are missing.
        let failed = error.as_ref().is_some_and(|e| {
            !matches!(
                e,
                PipelineError::Interrupted { .. } | PipelineError::Stopped { .. }
            )
        });
        if failed {
            for &i in &self.graph.order {
                if state[i] != StageState::Pending || self.stages[i].kind != Kind::Report {
                    continue;
                }
                rows[i] = Some(match self.stage(i) {
                    Ok(Outcome::Ran {
                        seconds,
                        reason,
                        report,
                    }) => {
                        let why = format!("run after the failure, {reason}");
                        let mut row = self.row(i, Status::Ran, seconds, why);
                        row.report = Some(report);
                        row
                    }
                    Ok(Outcome::Skipped { reason, report }) => {
                        let mut row = self.row(i, Status::Skipped, 0.0, reason);
                        row.report = report;
                        row
                    }
                    Err(e) => self.row(i, Status::Failed, 0.0, e.to_string()),
                });
            }
        }
        let rows = self
            .graph
            .order
            .iter()
            .map(|&i| {
                rows[i]
                    .take()
                    .unwrap_or_else(|| self.row(i, Status::NotRun, 0.0, String::new()))
            })
            .collect();
        (rows, error)
    }

    pub(super) fn update_lock(&self, name: &str, entry: Entry) -> Result<()> {
        let mut lock = self
            .lock
            .lock()
            .map_err(|_| PipelineError::Usage("the lock's mutex was poisoned".into()))?;
        lock.stages.insert(name.to_string(), entry);
        let names: Vec<&str> = self.stages.iter().map(|s| s.name.as_str()).collect();
        lock.stages.retain(|k, _| names.contains(&k.as_str()));
        lock.write(&self.lock_file)
    }

    /// Creates the folders stage `i` writes into, and forgets what was known of its outputs.
    pub(super) fn prepare_outputs(&self, i: usize) -> Result<()> {
        for o in &self.stages[i].outs {
            let dir = if o.folder {
                Some(o.path.as_path())
            } else {
                o.path.parent().filter(|p| !p.as_os_str().is_empty())
            };
            if let Some(dir) = dir {
                std::fs::create_dir_all(dir).map_err(|e| PipelineError::io(dir, e))?;
            }
            self.hasher.forget(&o.path);
        }
        Ok(())
    }

    /// The lock entry of stage `i` while it runs (`started`, no outputs yet).
    pub(super) fn started_entry(&self, i: usize, d: &Decision) -> Entry {
        let stage = &self.stages[i];
        let mut command = stage.display_command();
        if d.resume {
            command.push_str(" --resume");
        }
        Entry {
            kind: stage.kind.name().to_string(),
            state: State::Started,
            args: stage.args_hash.clone(),
            command,
            deps: d.deps.clone(),
            outs: BTreeMap::new(),
            seconds: 0.0,
            report: None,
            version: Some(distill_core::TOOL_VERSION.to_string()),
        }
    }

    /// The SHA-256 of stage `i`'s outputs as they are now; an error naming a required one that
    /// is missing.
    pub(super) fn output_hashes(&self, i: usize) -> Result<BTreeMap<String, String>> {
        let stage = &self.stages[i];
        let mut outs = BTreeMap::new();
        for o in &stage.outs {
            match self.hasher.hash(&o.path)? {
                Some(h) => {
                    outs.insert(key(&o.path), h);
                }
                None if o.required => {
                    return Err(PipelineError::Stage {
                        stage: stage.name.clone(),
                        message: format!("it completed without writing {}", o.path.display()),
                        user: true,
                    });
                }
                None => {}
            }
        }
        Ok(outs)
    }

    /// The SHA-256 of stage `i`'s inputs as they are now (those that exist).
    pub(super) fn dep_hashes(&self, i: usize) -> Result<BTreeMap<String, String>> {
        let mut deps = BTreeMap::new();
        for d in &self.stages[i].deps {
            if let Some(h) = self.hasher.hash(&d.path)? {
                deps.insert(key(&d.path), h);
            }
        }
        Ok(deps)
    }

    /// Decides, and runs when needed, stage `i`.
    fn stage(&self, i: usize) -> Result<Outcome> {
        let stage = &self.stages[i];
        let d = self.decide(i)?;
        if !d.run {
            let report = self.entry(&stage.name).and_then(|e| e.report);
            say(format_args!(
                "skipped {} ({}): {}",
                stage.name,
                stage.kind.name(),
                d.reason
            ));
            return Ok(Outcome::Skipped {
                reason: d.reason,
                report,
            });
        }
        for dep in &stage.deps {
            if !dep.optional && !dep.path.exists() {
                return Err(PipelineError::Stage {
                    stage: stage.name.clone(),
                    message: format!(
                        "its input {} is missing (is the stage that writes it outside --from/--to?)",
                        dep.path.display()
                    ),
                    user: true,
                });
            }
        }
        self.prepare_outputs(i)?;
        let mut entry = self.started_entry(i, &d);
        let command = entry.command.clone();
        self.update_lock(&stage.name, entry.clone())?;
        {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "\n==> {} ({}): {}\n    {command}",
                stage.name,
                stage.kind.name(),
                d.reason
            );
            let _ = out.flush();
        }
        let started = Instant::now();
        let report = run_stage(stage, d.resume, &self.progress.stage(&stage.name))?;
        let seconds = started.elapsed().as_secs_f64();
        entry.outs = self.output_hashes(i)?;
        entry.state = State::Complete;
        entry.seconds = seconds;
        entry.report = (!report.is_empty()).then(|| report.clone());
        self.update_lock(&stage.name, entry)?;
        {
            let mut out = std::io::stdout().lock();
            if !report.is_empty() {
                let _ = writeln!(out, "{report}");
            }
            let _ = writeln!(out, "<== {} done in {seconds:.1} s", stage.name);
            let _ = out.flush();
        }
        Ok(Outcome::Ran {
            seconds,
            reason: d.reason,
            report,
        })
    }
}

/// Runs one stage: a stage library in this process, or a shell command. Returns the report.
fn run_stage(stage: &Stage, resume: bool, progress: &Progress) -> Result<String> {
    let failed = |message: String, user: bool| PipelineError::Stage {
        stage: stage.name.clone(),
        message,
        user,
    };
    let text = match &stage.config {
        StageConfig::Train(c) => {
            let mut c = (**c).clone();
            c.resume = resume;
            let r = distill_train::run(&c, progress)
                .map_err(|e| failed(e.to_string(), e.is_user_error()))?;
            if r.interrupted {
                say(format_args!("{r}"));
                return Err(PipelineError::Interrupted {
                    stage: stage.name.clone(),
                });
            }
            r.to_string()
        }
        StageConfig::Teach(c) => distill_teach::run(c, progress)
            .map_err(|e| failed(e.to_string(), e.is_user_error()))?
            .to_string(),
        StageConfig::Cluster(c) => distill_cluster::run(c, progress)
            .map_err(|e| failed(e.to_string(), e.is_user_error()))?
            .to_string(),
        StageConfig::Specialists(c) => distill_specialists::run(c, progress)
            .map_err(|e| failed(e.to_string(), e.is_user_error()))?
            .to_string(),
        StageConfig::Eval(c) => {
            let r = distill_eval::run(c, progress)
                .map_err(|e| failed(e.to_string(), e.is_user_error()))?;
            for n in &r.notes {
                eprintln!("note: {n}");
            }
            r.to_string()
        }
        StageConfig::Report(c) => distill_report::run(c)
            .map_err(|e| failed(e.to_string(), e.is_user_error()))?
            .to_string(),
        StageConfig::Cmd(cmd) => {
            let status = match super::child::run_shell(cmd)
                .map_err(|e| failed(format!("cannot start sh: {e}"), false))?
            {
                super::child::Ended::Exited(status) => status,
                super::child::Ended::Interrupted => {
                    return Err(PipelineError::Interrupted {
                        stage: stage.name.clone(),
                    });
                }
            };
            if !status.success() {
                return Err(failed(
                    match status.code() {
                        Some(c) => format!("the command exited with status {c}"),
                        None => "the command was killed by a signal".to_string(),
                    },
                    false,
                ));
            }
            String::new()
        }
    };
    Ok(text.trim_end().to_string())
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self
            .rows
            .iter()
            .map(|r| r.stage.chars().count())
            .max()
            .unwrap_or(5)
            .max(5);
        let verb = if self.dry_run { "plan" } else { "summary" };
        writeln!(f, "\n{verb} of {}:", self.pipeline.display())?;
        writeln!(
            f,
            "{:<w$}  {:<11}  {:<7}  {:>8}  reason",
            "stage", "kind", "status", "seconds"
        )?;
        for r in &self.rows {
            let secs = if r.status == Status::Ran {
                format!("{:.1}", r.seconds)
            } else {
                String::new()
            };
            let reason = r.reason.lines().next().unwrap_or_default();
            writeln!(
                f,
                "{:<w$}  {:<11}  {:<7}  {:>8}  {reason}",
                r.stage,
                r.kind.name(),
                r.status.to_string(),
                secs
            )?;
        }
        let ran = self.rows.iter().filter(|r| r.status == Status::Ran).count();
        let queued = self
            .rows
            .iter()
            .filter(|r| r.status == Status::Submitted)
            .count();
        let skipped = self
            .rows
            .iter()
            .filter(|r| r.status == Status::Skipped)
            .count();
        if self.dry_run {
            let would = self
                .rows
                .iter()
                .filter(|r| r.status == Status::WouldRun)
                .count();
            write!(
                f,
                "{} stages: {would} would run, {skipped} up to date (dry run: nothing ran)",
                self.rows.len()
            )?;
            return Ok(());
        }
        if queued > 0 {
            writeln!(
                f,
                "{} stages: {ran} ran, {skipped} skipped, {queued} queued on Slurm (not waited for: \
                 `distill run` again picks up their results), in {:.1} s",
                self.rows.len(),
                self.seconds
            )?;
        } else {
            writeln!(
                f,
                "{} stages: {ran} ran, {skipped} skipped, in {:.1} s",
                self.rows.len(),
                self.seconds
            )?;
        }
        for r in &self.rows {
            if r.kind == Kind::Eval
                && let Some(report) = &r.report
            {
                writeln!(f, "\nresults of {}:\n{report}", r.stage)?;
            }
        }
        let mut folders: Vec<PathBuf> = Vec::new();
        for r in &self.rows {
            for o in &r.outs {
                let dir = o.parent().unwrap_or(Path::new("")).to_path_buf();
                if !folders.contains(&dir) {
                    folders.push(dir);
                }
            }
        }
        let shown: Vec<String> = folders
            .iter()
            .map(|d| {
                if d.as_os_str().is_empty() {
                    ".".to_string()
                } else {
                    format!("{}/", d.display())
                }
            })
            .collect();
        writeln!(
            f,
            "\noutputs in {} (relative to {}); lock: {}",
            shown.join(", "),
            self.wdir.display(),
            self.lock.display()
        )?;
        for r in &self.rows {
            if r.kind == Kind::Eval {
                for o in &r.outs {
                    writeln!(f, "metrics of {}: {}", r.stage, o.display())?;
                }
            }
        }
        for r in &self.rows {
            if r.kind == Kind::Report && matches!(r.status, Status::Ran | Status::Skipped) {
                for o in &r.outs {
                    if r.stage == "report" {
                        writeln!(f, "report: {}", o.display())?;
                    } else {
                        writeln!(f, "report of {}: {}", r.stage, o.display())?;
                    }
                }
            }
        }
        Ok(())
    }
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
