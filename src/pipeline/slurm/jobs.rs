//! The jobs a pipeline has in flight (`jobs.yaml`), their results, and recording finished ones in
//! the lock.

use super::*;

pub(in crate::pipeline) const SCHEMA: u32 = 1;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(in crate::pipeline) struct Jobs {
    pub(in crate::pipeline) schema: u32,
    #[serde(default)]
    pub(in crate::pipeline) stages: BTreeMap<String, Submitted>,
}

/// A stage submitted to Slurm and not yet recorded in the lock.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(in crate::pipeline) struct Submitted {
    /// `12_3` for an array task, `12` for a job.
    pub(in crate::pipeline) job: String,
    /// The array's (or job's) id, as the job script writes it into its exit file.
    pub(in crate::pipeline) array_job: String,
    /// The stage's args hash and command line when it was submitted: what the lock records.
    pub(in crate::pipeline) args: String,
    pub(in crate::pipeline) command: String,
    /// The log file's name in the state folder.
    pub(in crate::pipeline) log: String,
    /// Seconds since 1970 at submission.
    pub(in crate::pipeline) submitted: u64,
}

pub(in crate::pipeline) fn jobs_path(dir: &Path) -> PathBuf {
    dir.join("jobs.yaml")
}

pub(in crate::pipeline) fn read_jobs(dir: &Path) -> Result<Jobs> {
    let path = jobs_path(dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Jobs {
                schema: SCHEMA,
                stages: BTreeMap::new(),
            });
        }
        Err(e) => return Err(PipelineError::io(&path, e)),
    };
    match serde_norway::from_str::<Jobs>(&text) {
        Ok(j) if j.schema == SCHEMA => Ok(j),
        Ok(j) => Err(PipelineError::Usage(format!(
            "{}: schema {} is not {SCHEMA}\n  hint: delete it if none of the jobs it lists still runs",
            path.display(),
            j.schema
        ))),
        Err(e) => Err(PipelineError::Usage(format!(
            "{}: not a list of submitted jobs ({e})\n  hint: delete it if none of its jobs still runs",
            path.display()
        ))),
    }
}

pub(in crate::pipeline) fn write_jobs(dir: &Path, jobs: &Jobs) -> Result<()> {
    let path = jobs_path(dir);
    if jobs.stages.is_empty() {
        return match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(PipelineError::io(&path, e)),
        };
    }
    let text = serde_norway::to_string(jobs).map_err(|e| {
        PipelineError::io(&path, std::io::Error::other(format!("cannot encode: {e}")))
    })?;
    distill_core::atomic::write_bytes(&path, text.as_bytes())?;
    Ok(())
}

/// What a job's exit file says: the stage's exit code, its seconds, and the job's id.
pub(in crate::pipeline) fn read_exit(dir: &Path, stage: &str) -> Option<(i32, f64, String)> {
    let text = std::fs::read_to_string(dir.join(format!("{}.exit", safe_name(stage)))).ok()?;
    let mut words = text.split_whitespace();
    let code = words.next()?.parse().ok()?;
    // A `date` without %N writes `1700000000.N`: then whole seconds.
    let time = |w: Option<&str>| -> Option<f64> {
        let w = w?;
        w.parse().ok().or_else(|| w.split('.').next()?.parse().ok())
    };
    let start = time(words.next())?;
    let end = time(words.next())?;
    let job = words.next().unwrap_or_default().to_string();
    Some((code, (end - start).max(0.0), job))
}

pub(in crate::pipeline) fn remove_results(dir: &Path, stage: &str) -> Result<()> {
    for ext in ["exit", "report"] {
        let p = dir.join(format!("{}.{ext}", safe_name(stage)));
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(PipelineError::io(&p, e)),
        }
    }
    Ok(())
}

/// The last lines of a log, indented, for a failure message.
pub(in crate::pipeline) fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return String::new();
    };
    let all: Vec<&str> = text.lines().collect();
    let tail = &all[all.len().saturating_sub(lines)..];
    if tail.is_empty() {
        return String::new();
    }
    format!(
        "\n  last lines of the log:\n{}",
        tail.iter()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

/// How a submitted stage stands.
pub(in crate::pipeline) enum Outcome {
    Running,
    /// The job script wrote its exit file: (exit code, seconds).
    Ended(i32, f64),
    /// Slurm no longer runs the job and it wrote no exit file (cancelled, timed out, node lost):
    /// the job's last state, if Slurm still knows it.
    Lost(Option<String>),
}

pub(in crate::pipeline) fn outcome(
    dir: &Path,
    stage: &str,
    sub: &Submitted,
    queue: &BTreeMap<String, String>,
) -> Outcome {
    if let Some((code, seconds, job)) = read_exit(dir, stage)
        && (job.is_empty() || job == sub.array_job)
    {
        return Outcome::Ended(code, seconds);
    }
    // squeue lists a pending array as a whole (`12_[1-3]`) until its tasks start.
    let state = queue.get(&sub.job).or_else(|| {
        queue
            .iter()
            .find(|(id, _)| id.starts_with(&format!("{}_[", sub.array_job)))
            .map(|(_, s)| s)
    });
    match state {
        Some(s) if active(s) => Outcome::Running,
        other => Outcome::Lost(other.cloned()),
    }
}

/// The lock entry of a stage whose job ended with exit code 0.
pub(in crate::pipeline) fn completed_entry(
    runner: &Runner<'_>,
    i: usize,
    sub: &Submitted,
    seconds: f64,
    report: Option<String>,
) -> Result<Entry> {
    let stage = &runner.stages[i];
    for o in &stage.outs {
        runner.hasher.forget(&o.path);
    }
    Ok(Entry {
        kind: stage.kind.name().to_string(),
        state: State::Complete,
        args: sub.args.clone(),
        command: sub.command.clone(),
        deps: runner.dep_hashes(i)?,
        outs: runner.output_hashes(i)?,
        seconds,
        report,
        version: Some(distill_core::TOOL_VERSION.to_string()),
    })
}

pub(in crate::pipeline) fn read_report(dir: &Path, stage: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(format!("{}.report", safe_name(stage))))
        .ok()
        .map(|r| r.trim_end().to_string())
        .filter(|r| !r.is_empty())
}

/// A finished stage's result, recorded in the lock when it succeeded.
pub(in crate::pipeline) enum Finished {
    Done {
        seconds: f64,
        report: Option<String>,
    },
    Failed(PipelineError),
}

pub(in crate::pipeline) fn finish(
    runner: &Runner<'_>,
    dir: &Path,
    i: usize,
    sub: &Submitted,
    code: i32,
    seconds: f64,
) -> Result<Finished> {
    let stage = &runner.stages[i];
    let log = dir.join(&sub.log);
    if code != 0 {
        return Ok(Finished::Failed(PipelineError::Stage {
            stage: stage.name.clone(),
            message: format!(
                "its Slurm job {} exited with status {code}; log: {}{}",
                sub.job,
                log.display(),
                log_tail(&log, 8)
            ),
            user: code == 2,
        }));
    }
    let report = read_report(dir, &stage.name);
    match completed_entry(runner, i, sub, seconds, report.clone()) {
        Ok(entry) => {
            runner.update_lock(&stage.name, entry)?;
            Ok(Finished::Done { seconds, report })
        }
        Err(e @ PipelineError::Stage { .. }) => Ok(Finished::Failed(e)),
        Err(e) => Err(e),
    }
}

pub(in crate::pipeline) fn lost_error(
    stage: &str,
    sub: &Submitted,
    dir: &Path,
    state: Option<String>,
) -> PipelineError {
    let log = dir.join(&sub.log);
    PipelineError::Stage {
        stage: stage.to_string(),
        message: format!(
            "its Slurm job {} ended without finishing the stage ({}); log: {}{}",
            sub.job,
            match state {
                Some(s) => format!("Slurm's state: {s}"),
                None => "Slurm no longer lists it: cancelled, timed out or lost".into(),
            },
            log.display(),
            log_tail(&log, 8)
        ),
        user: false,
    }
}

/// Records the jobs of an earlier submission that have ended: a success goes into the lock, a
/// failure is reported (the stage then runs again). Returns the stages still queued or running
/// (index → job id) and the rows of the stages recorded now.
pub(in crate::pipeline) fn pick_up(
    runner: &Runner<'_>,
    dir: &Path,
    jobs: &mut Jobs,
) -> Result<(BTreeMap<usize, String>, BTreeMap<usize, Row>)> {
    let mut in_flight = BTreeMap::new();
    let mut rows = BTreeMap::new();
    if jobs.stages.is_empty() {
        return Ok((in_flight, rows));
    }
    let index: BTreeMap<&str, usize> = runner
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let ended_all = jobs
        .stages
        .iter()
        .all(|(name, sub)| read_exit(dir, name).is_some_and(|(_, _, j)| j == sub.array_job));
    let queue = if ended_all {
        BTreeMap::new()
    } else {
        squeue()?
    };
    let mut keep = BTreeMap::new();
    for (name, sub) in std::mem::take(&mut jobs.stages) {
        let Some(&i) = index.get(name.as_str()) else {
            eprintln!(
                "note: Slurm job {} ran stage {name}, which the pipeline no longer has; forgotten",
                sub.job
            );
            continue;
        };
        match outcome(dir, &name, &sub, &queue) {
            Outcome::Running => {
                in_flight.insert(i, sub.job.clone());
                keep.insert(name, sub);
            }
            Outcome::Ended(code, seconds) => match finish(runner, dir, i, &sub, code, seconds)? {
                Finished::Done { seconds, report } => {
                    say(format_args!(
                        "picked up {name}: Slurm job {} finished in {seconds:.0} s",
                        sub.job
                    ));
                    let mut row = runner.row(
                        i,
                        Status::Ran,
                        seconds,
                        format!("Slurm job {}, submitted earlier", sub.job),
                    );
                    row.report = report;
                    rows.insert(i, row);
                }
                Finished::Failed(e) => eprintln!("note: {e}; it runs again"),
            },
            Outcome::Lost(state) => {
                eprintln!(
                    "note: {}; it runs again",
                    lost_error(&name, &sub, dir, state)
                );
            }
        }
    }
    jobs.stages = keep;
    write_jobs(dir, jobs)?;
    Ok((in_flight, rows))
}

/// A dry run (and `distill status`) does not ask Slurm: it says which stages `jobs.yaml` lists as
/// submitted and not yet recorded in the lock (the next `distill run` picks them up).
pub(in crate::pipeline) fn note_submitted(rows: &mut [Row], dir: &Path) {
    let Ok(jobs) = read_jobs(dir) else { return };
    for row in rows.iter_mut() {
        if let Some(sub) = jobs.stages.get(&row.stage) {
            let state = match read_exit(dir, &row.stage) {
                Some((0, _, job)) if job == sub.array_job => "finished".to_string(),
                Some((code, _, job)) if job == sub.array_job => format!("failed (exit {code})"),
                _ => "queued or running".to_string(),
            };
            row.reason = format!(
                "Slurm job {} {state}, not yet recorded: `distill run` picks it up",
                sub.job
            );
        }
    }
}

/// Before a local run: records what earlier Slurm jobs finished, and refuses to run while some
/// are still queued or running (both would write the same outputs).
pub(in crate::pipeline) fn pick_up_for_local(runner: &Runner<'_>, dir: &Path) -> Result<()> {
    let mut jobs = read_jobs(dir)?;
    if jobs.stages.is_empty() {
        return Ok(());
    }
    if which("squeue").is_none() {
        let unfinished: Vec<String> = jobs
            .stages
            .iter()
            .filter(|(name, sub)| read_exit(dir, name).is_none_or(|(_, _, j)| j != sub.array_job))
            .map(|(name, sub)| format!("{name} (job {})", sub.job))
            .collect();
        if !unfinished.is_empty() {
            return Err(PipelineError::Usage(format!(
                "{} lists Slurm jobs that have not finished: {}; squeue is not on PATH to ask \
                 whether they still run\n  hint: run where Slurm's commands are, or delete that \
                 file if the jobs are gone",
                jobs_path(dir).display(),
                unfinished.join(", ")
            )));
        }
    }
    let (in_flight, _) = pick_up(runner, dir, &mut jobs)?;
    if in_flight.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = in_flight
        .iter()
        .map(|(&i, id)| format!("{} (job {id})", runner.stages[i].name))
        .collect();
    Err(PipelineError::Usage(format!(
        "stages are still queued or running on Slurm: {}; running them here too would write the \
         same files\n  hint: wait for them with `distill run PIPELINE --executor slurm`, or cancel \
         them with scancel and run again",
        list.join(", ")
    )))
}
