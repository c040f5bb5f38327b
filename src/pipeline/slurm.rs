//! `distill run --executor slurm`: each stage that is out of date becomes an `sbatch` job, with
//! `--dependency=afterok:` on the jobs that write its inputs; the expansions of a `foreach` stage
//! (and a `--shard K/N` stage) become one job array, `SLURM_ARRAY_TASK_ID` choosing the expansion
//! (K for shards). A job runs the stage's own command line (`distill teach --model=... ...`, the
//! one the local executor runs in-process), writes the stage's report and its exit code beside its
//! log under `WDIR/.distill/slurm/PIPELINE/`, and the runner records the stage in the lock when it
//! sees that file. The submitted jobs are kept in `jobs.yaml` there, so that a later `distill run`
//! (after `--no-wait`, or an interrupted wait) records the jobs that finished and does not submit
//! again the ones still queued or running.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::error::{PipelineError, Result};
use super::graph::Graph;
use super::lock::{Entry, State};
use super::runner::{Row, Runner, Status, say};
use super::spec::Kind;
use super::stage::{Stage, StageConfig};

/// The flags of `distill run --executor slurm`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlurmOptions {
    /// `--partition P`.
    pub partition: Option<String>,
    /// More `sbatch` options (`--slurm-opt '--time=30 --mem=4G'`), one per item, each written as
    /// an `#SBATCH` line of every job.
    pub opts: Vec<String>,
    /// Wait for the jobs and record them in the lock (the default), or return once submitted.
    pub wait: bool,
}

/// `sbatch` options the executor sets itself, refused in `--slurm-opt`.
const OWN_OPTIONS: [&str; 8] = [
    "--array",
    "--dependency",
    "--output",
    "--error",
    "--job-name",
    "--chdir",
    "--wrap",
    "--parsable",
];

impl SlurmOptions {
    /// Splits each `--slurm-opt` value at white space; refuses a word that is not an option and
    /// the options the executor sets itself.
    pub fn parse_opts(values: &[String]) -> std::result::Result<Vec<String>, String> {
        let mut opts = Vec::new();
        for v in values {
            for word in v.split_whitespace() {
                if !word.starts_with('-') {
                    return Err(format!(
                        "--slurm-opt: `{word}` is not an sbatch option; write options as \
                         --slurm-opt '--time=30 --mem=4G' (one word each, `--name=value`)"
                    ));
                }
                let name = word.split('=').next().unwrap_or_default();
                if OWN_OPTIONS.contains(&name)
                    || ["-a", "-d", "-o", "-e", "-J", "-D"].contains(&name)
                {
                    return Err(format!(
                        "--slurm-opt: {name} is set by distill run for each job (arrays, \
                         dependencies, logs, names and the working folder); leave it out"
                    ));
                }
                opts.push(word.to_string());
            }
        }
        Ok(opts)
    }
}

/// The folder of a pipeline's Slurm scripts, logs and state: `WDIR/.distill/slurm/NAME`, NAME the
/// pipeline file's name without `.yaml`.
pub fn state_dir(wdir: &Path, pipeline: &Path) -> PathBuf {
    let stem = pipeline
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pipeline".into());
    wdir.join(".distill").join("slurm").join(safe_name(&stem))
}

/// A stage name as a file name: `teach@1` stays, any other character than letters, digits and
/// `@._-` becomes `_`.
fn safe_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "@._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Planning: which stages go into which job, and which job waits for which.

/// One `sbatch` submission: a single stage, or the expansions of a `foreach` stage (or one shard)
/// as a job array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct JobPlan {
    /// The stage's name, or for an array the `foreach` stage's name in the file.
    pub name: String,
    /// (stage index, array task id); the task id is `None` for a plain job.
    pub members: Vec<(usize, Option<usize>)>,
    /// Planned jobs (indices into the plan) this one waits for.
    pub after_jobs: Vec<usize>,
    /// Jobs submitted earlier, still queued or running, this one waits for.
    pub after_ids: Vec<String>,
    /// `afterany` instead of `afterok`: a `report` stage, whose inputs are all optional, runs
    /// after a failure too, as in the local executor.
    pub any: bool,
}

impl JobPlan {
    pub fn is_array(&self) -> bool {
        self.members.iter().any(|(_, t)| t.is_some())
    }

    /// `1-3`, or `1,3` when only some expansions run.
    pub fn array_spec(&self) -> String {
        let mut ids: Vec<usize> = self.members.iter().filter_map(|(_, t)| *t).collect();
        ids.sort_unstable();
        let contiguous = ids.windows(2).all(|w| w[1] == w[0] + 1);
        match (ids.first(), ids.last()) {
            (Some(a), Some(b)) if contiguous && ids.len() > 1 => format!("{a}-{b}"),
            _ => ids
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

/// The array task id of each stage: K for a `--shard K/N` teach stage (when the shards of its
/// `foreach` are distinct), else its position among its `foreach` expansions (from 1). `None`
/// for a stage that is neither.
fn task_ids(stages: &[Stage]) -> Vec<Option<usize>> {
    let shard = |s: &Stage| match &s.config {
        StageConfig::Teach(c) => c.shard.map(|(k, _)| k),
        _ => None,
    };
    let mut ids = vec![None; stages.len()];
    let mut templates: Vec<&str> = stages.iter().map(|s| s.template.as_str()).collect();
    templates.dedup();
    for t in templates {
        let members: Vec<usize> = (0..stages.len())
            .filter(|&i| stages[i].template == t)
            .collect();
        let foreach = members
            .iter()
            .any(|&i| stages[i].name != stages[i].template);
        let shards: Vec<Option<usize>> = members.iter().map(|&i| shard(&stages[i])).collect();
        let distinct = shards.iter().flatten().collect::<BTreeSet<_>>().len() == members.len();
        for (pos, &i) in members.iter().enumerate() {
            ids[i] = if shards.iter().all(Option::is_some) && distinct {
                shards[pos]
            } else if foreach {
                Some(pos + 1)
            } else {
                None
            };
        }
    }
    ids
}

/// Groups the stages to submit (`submit[i]`) into jobs, in an order where every job comes after
/// the jobs it waits for. `in_flight[i]` is the job id of a stage queued or running from an
/// earlier submission.
pub(super) fn plan_jobs(
    stages: &[Stage],
    graph: &Graph,
    submit: &[bool],
    in_flight: &[Option<String>],
) -> Vec<JobPlan> {
    let tasks = task_ids(stages);
    let grouped = |by_template: bool| -> Vec<Vec<usize>> {
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for &i in &graph.order {
            if !submit[i] {
                continue;
            }
            let joined = by_template && tasks[i].is_some() && stages[i].name != stages[i].template;
            match groups.iter_mut().find(|g| {
                joined
                    && stages[g[0]].template == stages[i].template
                    && tasks[g[0]].is_some()
                    && stages[g[0]].name != stages[g[0]].template
            }) {
                Some(g) => g.push(i),
                None => groups.push(vec![i]),
            }
        }
        groups
    };
    // Expansions of one foreach stage share a job array unless that makes the jobs depend on
    // each other in a circle; then each stage is its own job (the stage graph has no cycle).
    let plan = |groups: Vec<Vec<usize>>| -> Option<Vec<JobPlan>> {
        let group_of = |i: usize| groups.iter().position(|g| g.contains(&i));
        let mut after: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); groups.len()];
        let mut after_ids: Vec<BTreeSet<String>> = vec![BTreeSet::new(); groups.len()];
        for (g, members) in groups.iter().enumerate() {
            for &i in members {
                for &j in &graph.upstream[i] {
                    match (group_of(j), &in_flight[j]) {
                        (Some(h), _) if h == g => return None,
                        (Some(h), _) => {
                            after[g].insert(h);
                        }
                        (None, Some(id)) => {
                            after_ids[g].insert(id.clone());
                        }
                        (None, None) => {}
                    }
                }
            }
        }
        // Topological order of the groups.
        let n = groups.len();
        let mut done = vec![false; n];
        let mut order = Vec::with_capacity(n);
        while order.len() < n {
            let next = (0..n).find(|&g| !done[g] && after[g].iter().all(|&h| done[h]))?;
            done[next] = true;
            order.push(next);
        }
        let position = |g: usize| order.iter().position(|&o| o == g).unwrap_or(0);
        Some(
            order
                .iter()
                .map(|&g| {
                    let members = &groups[g];
                    let single = members.len() == 1
                        && stages[members[0]].name == stages[members[0]].template;
                    JobPlan {
                        name: if single {
                            stages[members[0]].name.clone()
                        } else {
                            stages[members[0]].template.clone()
                        },
                        members: members.iter().map(|&i| (i, tasks[i])).collect(),
                        after_jobs: after[g].iter().map(|&h| position(h)).collect(),
                        after_ids: after_ids[g].iter().cloned().collect(),
                        any: members.iter().all(|&i| stages[i].kind == Kind::Report),
                    }
                })
                .collect(),
        )
    };
    plan(grouped(true))
        .or_else(|| plan(grouped(false)))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// The batch script.

/// What every job script of one run shares.
pub(super) struct ScriptContext<'a> {
    /// The pipeline's working folder, where the jobs start.
    pub wdir: &'a Path,
    /// `WDIR/.distill/slurm/NAME`: logs, reports, exit codes.
    pub dir: &'a Path,
    pub pipeline: &'a Path,
    pub options: &'a SlurmOptions,
}

fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=./,:+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The command a job runs for a stage: `distill KIND ARGS...` (the stage's own flags, as the
/// local executor parses them), or `sh -c CMD` for a `cmd` stage.
pub(super) fn job_command(exe: &Path, stage: &Stage, resume: bool) -> Vec<String> {
    match stage.kind {
        Kind::Cmd => vec!["sh".into(), "-c".into(), stage.argv.join(" ")],
        kind => {
            let mut argv = vec![exe.display().to_string(), kind.name().to_string()];
            argv.extend(stage.argv.iter().skip(1).cloned());
            if resume {
                argv.push("--resume".into());
            }
            argv
        }
    }
}

/// The log of a stage's job: `NAME-%A_%a.log` for an array task, `NAME-%j.log` for a job.
pub(super) fn log_pattern(job: &JobPlan) -> String {
    if job.is_array() {
        format!("{}-%A_%a.log", safe_name(&job.name))
    } else {
        format!("{}-%j.log", safe_name(&job.name))
    }
}

/// The log file of one member once its job id is known.
fn log_file(job_name: &str, array: bool, array_job: &str, task: Option<usize>) -> String {
    match (array, task) {
        (true, Some(t)) => format!("{}-{array_job}_{t}.log", safe_name(job_name)),
        _ => format!("{}-{array_job}.log", safe_name(job_name)),
    }
}

/// The `sbatch` script of a job. `after` is the dependency list (job ids, or placeholders in a
/// dry run); `commands[k]` is the command of member k.
pub(super) fn script(
    ctx: &ScriptContext<'_>,
    stages: &[Stage],
    job: &JobPlan,
    after: &[String],
    commands: &[Vec<String>],
) -> String {
    let mut s = String::from("#!/bin/sh\n");
    let stem = ctx
        .pipeline
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let line = |s: &mut String, opt: String| s.push_str(&format!("#SBATCH {opt}\n"));
    line(
        &mut s,
        format!("--job-name={}", quote(&format!("{stem}:{}", job.name))),
    );
    line(
        &mut s,
        format!(
            "--output={}",
            quote(&ctx.dir.join(log_pattern(job)).display().to_string())
        ),
    );
    line(
        &mut s,
        format!("--chdir={}", quote(&ctx.wdir.display().to_string())),
    );
    if job.is_array() {
        line(&mut s, format!("--array={}", job.array_spec()));
    }
    if !after.is_empty() {
        let kind = if job.any { "afterany" } else { "afterok" };
        line(&mut s, format!("--dependency={kind}:{}", after.join(":")));
        line(&mut s, "--kill-on-invalid-dep=yes".into());
    }
    if let Some(p) = &ctx.options.partition {
        line(&mut s, format!("--partition={}", quote(p)));
    }
    for o in &ctx.options.opts {
        line(&mut s, quote(o));
    }
    let names: Vec<&str> = job
        .members
        .iter()
        .map(|&(i, _)| stages[i].name.as_str())
        .collect();
    s.push_str(&format!(
        "# distill run --executor slurm: {} of {}\n",
        names.join(", "),
        ctx.pipeline.display()
    ));
    s.push_str("set -u\n");
    let set = |(i, _): &(usize, Option<usize>), command: &[String]| {
        format!(
            "stage={}; set -- {}",
            quote(&safe_name(&stages[*i].name)),
            command
                .iter()
                .map(|a| quote(a))
                .collect::<Vec<_>>()
                .join(" ")
        )
    };
    if job.is_array() {
        s.push_str("case \"${SLURM_ARRAY_TASK_ID:-}\" in\n");
        for (m, c) in job.members.iter().zip(commands) {
            s.push_str(&format!("{}) {} ;;\n", m.1.unwrap_or(0), set(m, c)));
        }
        s.push_str(
            "*) echo \"distill: no stage for array task ${SLURM_ARRAY_TASK_ID:-}\" >&2; exit 2 ;;\nesac\n",
        );
    } else if let (Some(m), Some(c)) = (job.members.first(), commands.first()) {
        s.push_str(&set(m, c));
        s.push('\n');
    }
    let dir = quote(&ctx.dir.display().to_string());
    let report_to = if job
        .members
        .iter()
        .all(|&(i, _)| stages[i].kind == Kind::Cmd)
    {
        // A shell command's output is its log, as in the local executor; it has no report.
        "\"$@\" && : > \"$dir/$stage.report.tmp\""
    } else {
        // A stage tool prints its report on stdout (and its progress on stderr).
        "\"$@\" > \"$dir/$stage.report.tmp\""
    };
    s.push_str(&format!(
        "dir={dir}\n\
         echo \"distill: stage $stage, job ${{SLURM_JOB_ID:-}} on $(hostname)\" >&2\n\
         start=$(date +%s.%N)\n\
         {report_to}\n\
         code=$?\n\
         [ -f \"$dir/$stage.report.tmp\" ] && cat \"$dir/$stage.report.tmp\" && mv \"$dir/$stage.report.tmp\" \"$dir/$stage.report\"\n\
         # The runner records the stage in the lock when this file appears: exit code, start and\n\
         # end (seconds since 1970), the job's id.\n\
         echo \"$code $start $(date +%s.%N) ${{SLURM_ARRAY_JOB_ID:-${{SLURM_JOB_ID:-}}}}\" > \"$dir/.$stage.exit.tmp\"\n\
         mv \"$dir/.$stage.exit.tmp\" \"$dir/$stage.exit\"\n\
         exit $code\n"
    ));
    s
}

// ---------------------------------------------------------------------------------------------
// Talking to Slurm.

/// A program on PATH.
fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The Slurm commands a submission needs, on PATH.
fn check_tools() -> Result<()> {
    let missing: Vec<&str> = ["sbatch", "squeue", "scontrol", "scancel"]
        .into_iter()
        .filter(|p| which(p).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(PipelineError::Usage(format!(
        "--executor slurm needs Slurm's commands, and {} {} not on PATH ({}); nothing was submitted\n  \
         hint: install Slurm's client commands (Debian: apt-get install slurm-client), or on this \
         machine run scripts/slurm-local.sh up for a one-node Slurm; or leave out --executor slurm \
         to run the stages here",
        missing.join(", "),
        if missing.len() == 1 { "is" } else { "are" },
        std::env::var("PATH").unwrap_or_default()
    )))
}

/// Runs a Slurm command, giving up after `timeout`; returns (success, stdout, stderr).
fn slurm(program: &str, args: &[&str], timeout: Duration) -> Result<(bool, String, String)> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| PipelineError::Usage(format!("cannot start {program}: {e}")))?;
    let started = Instant::now();
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut o = String::new();
        let mut e = String::new();
        if let Some(s) = out.as_mut() {
            let _ = std::io::Read::read_to_string(s, &mut o);
        }
        if let Some(s) = err.as_mut() {
            let _ = std::io::Read::read_to_string(s, &mut e);
        }
        (o, e)
    });
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| PipelineError::Usage(format!("{program}: {e}")))?
        {
            break Some(status);
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (o, e) = reader.join().unwrap_or_default();
    match status {
        Some(s) => Ok((s.success(), o, e)),
        None => Ok((
            false,
            o,
            format!("{e}(no answer within {} s)", timeout.as_secs()),
        )),
    }
}

fn conf_description() -> String {
    match std::env::var_os("SLURM_CONF") {
        Some(c) => format!("SLURM_CONF={}", Path::new(&c).display()),
        None => "SLURM_CONF is not set, so /etc/slurm/slurm.conf (or the DNS SRV record)".into(),
    }
}

/// Fails (exit 2) unless `scontrol ping` finds the controller up; nothing is submitted before.
fn check_controller() -> Result<()> {
    let fix = "start it (on this machine: scripts/slurm-local.sh up), or set SLURM_CONF to your \
               cluster's slurm.conf; or leave out --executor slurm to run the stages here";
    if let Some(c) = std::env::var_os("SLURM_CONF")
        && !Path::new(&c).is_file()
    {
        return Err(PipelineError::Usage(format!(
            "SLURM_CONF={} is not a file, so the Slurm controller cannot be found; nothing was \
             submitted\n  hint: {fix}",
            Path::new(&c).display()
        )));
    }
    let (ok, out, err) = slurm("scontrol", &["ping"], Duration::from_secs(60))?;
    if ok && out.contains("is UP") {
        return Ok(());
    }
    let said: Vec<&str> = out
        .lines()
        .chain(err.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("**"))
        .collect();
    Err(PipelineError::Usage(format!(
        "cannot reach the Slurm controller (slurmctld): `scontrol ping` said \"{}\" ({}); nothing \
         was submitted\n  hint: {fix}",
        said.join(" / "),
        conf_description()
    )))
}

/// The state of every job of this user that Slurm still knows, by id (`12`, `12_3`).
fn squeue() -> Result<BTreeMap<String, String>> {
    let (ok, out, err) = slurm(
        "squeue",
        &[
            "--me",
            "--noheader",
            "--array",
            "--states=all",
            "--format=%i|%T",
        ],
        Duration::from_secs(60),
    )?;
    if !ok {
        return Err(PipelineError::Usage(format!(
            "squeue failed: {} ({})",
            err.trim(),
            conf_description()
        )));
    }
    Ok(out
        .lines()
        .filter_map(|l| l.trim().split_once('|'))
        .map(|(id, st)| (id.to_string(), st.to_string()))
        .collect())
}

/// Whether a job state (squeue's %T) means the job may still run its stage.
fn active(state: &str) -> bool {
    !matches!(
        state,
        "COMPLETED"
            | "FAILED"
            | "CANCELLED"
            | "TIMEOUT"
            | "NODE_FAIL"
            | "PREEMPTED"
            | "OUT_OF_MEMORY"
            | "BOOT_FAIL"
            | "DEADLINE"
            | "SPECIAL_EXIT"
    )
}

fn scancel(ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    let args: Vec<&str> = ids.iter().map(String::as_str).collect();
    let _ = slurm("scancel", &args, Duration::from_secs(60));
}

// ---------------------------------------------------------------------------------------------
// The jobs a pipeline has in flight: `jobs.yaml`.

const SCHEMA: u32 = 1;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Jobs {
    schema: u32,
    #[serde(default)]
    stages: BTreeMap<String, Submitted>,
}

/// A stage submitted to Slurm and not yet recorded in the lock.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Submitted {
    /// `12_3` for an array task, `12` for a job.
    job: String,
    /// The array's (or job's) id, as the job script writes it into its exit file.
    array_job: String,
    /// The stage's args hash and command line when it was submitted: what the lock records.
    args: String,
    command: String,
    /// The log file's name in the state folder.
    log: String,
    /// Seconds since 1970 at submission.
    submitted: u64,
}

fn jobs_path(dir: &Path) -> PathBuf {
    dir.join("jobs.yaml")
}

fn read_jobs(dir: &Path) -> Result<Jobs> {
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

fn write_jobs(dir: &Path, jobs: &Jobs) -> Result<()> {
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
fn read_exit(dir: &Path, stage: &str) -> Option<(i32, f64, String)> {
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

fn remove_results(dir: &Path, stage: &str) -> Result<()> {
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
fn log_tail(path: &Path, lines: usize) -> String {
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
enum Outcome {
    Running,
    /// The job script wrote its exit file: (exit code, seconds).
    Ended(i32, f64),
    /// Slurm no longer runs the job and it wrote no exit file (cancelled, timed out, node lost):
    /// the job's last state, if Slurm still knows it.
    Lost(Option<String>),
}

fn outcome(dir: &Path, stage: &str, sub: &Submitted, queue: &BTreeMap<String, String>) -> Outcome {
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
fn completed_entry(
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

fn read_report(dir: &Path, stage: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(format!("{}.report", safe_name(stage))))
        .ok()
        .map(|r| r.trim_end().to_string())
        .filter(|r| !r.is_empty())
}

/// A finished stage's result, recorded in the lock when it succeeded.
enum Finished {
    Done {
        seconds: f64,
        report: Option<String>,
    },
    Failed(PipelineError),
}

fn finish(
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

fn lost_error(stage: &str, sub: &Submitted, dir: &Path, state: Option<String>) -> PipelineError {
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
fn pick_up(
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
pub(super) fn note_submitted(rows: &mut [Row], dir: &Path) {
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
pub(super) fn pick_up_for_local(runner: &Runner<'_>, dir: &Path) -> Result<()> {
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

// ---------------------------------------------------------------------------------------------
// The executor.

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn exe() -> Result<PathBuf> {
    std::env::current_exe().map_err(|e| PipelineError::io("the distill binary", e))
}

/// Which stages to submit: each selected stage that is out of date, or below one that runs; the
/// reason of each.
fn decide_all(
    runner: &Runner<'_>,
    selected: &[bool],
    in_flight: &BTreeMap<usize, String>,
) -> Result<(Vec<bool>, Vec<Option<super::runner::Decision>>)> {
    let n = runner.stages.len();
    let mut submit = vec![false; n];
    let mut decisions: Vec<Option<super::runner::Decision>> = (0..n).map(|_| None).collect();
    for &i in &runner.graph.order {
        if !selected[i] || in_flight.contains_key(&i) {
            continue;
        }
        let mut d = runner.decide(i)?;
        if !d.run
            && let Some(&j) = runner.graph.upstream[i]
                .iter()
                .find(|&&j| submit[j] || in_flight.contains_key(&j))
        {
            d.run = true;
            d.reason = if submit[j] {
                format!("upstream {} runs", runner.stages[j].name)
            } else {
                format!("upstream {} is running on Slurm", runner.stages[j].name)
            };
        }
        submit[i] = d.run;
        decisions[i] = Some(d);
    }
    // An input that exists only if a stage outside --from/--to writes it fails now, before any job.
    for (i, stage) in runner.stages.iter().enumerate() {
        if !submit[i] {
            continue;
        }
        for dep in stage.deps.iter().filter(|d| !d.optional) {
            let written = runner.graph.upstream[i].iter().any(|&j| {
                (submit[j] || in_flight.contains_key(&j))
                    && runner.stages[j]
                        .outs
                        .iter()
                        .any(|o| o.path.starts_with(&dep.path) || dep.path.starts_with(&o.path))
            });
            if !written && !dep.path.exists() {
                return Err(PipelineError::Stage {
                    stage: stage.name.clone(),
                    message: format!(
                        "its input {} is missing (is the stage that writes it outside --from/--to?); \
                         nothing was submitted",
                        dep.path.display()
                    ),
                    user: true,
                });
            }
        }
    }
    Ok((submit, decisions))
}

/// `--dry-run --executor slurm`: the plan, then the script of each job that would be submitted.
pub(super) fn print_scripts(
    runner: &Runner<'_>,
    rows: &[Row],
    options: &SlurmOptions,
    pipeline: &Path,
    wdir: &Path,
    dir: &Path,
) -> Result<()> {
    let submit: Vec<bool> = (0..runner.stages.len())
        .map(|i| {
            rows.iter()
                .any(|r| r.stage == runner.stages[i].name && r.status == Status::WouldRun)
        })
        .collect();
    let none = vec![None; runner.stages.len()];
    let plan = plan_jobs(runner.stages, runner.graph, &submit, &none);
    let exe = exe()?;
    let ctx = ScriptContext {
        wdir,
        dir,
        pipeline,
        options,
    };
    let mut out = std::io::stdout().lock();
    for job in &plan {
        let after: Vec<String> = job
            .after_jobs
            .iter()
            .map(|&k| format!("<job {}>", plan[k].name))
            .collect();
        let commands: Vec<Vec<String>> = job
            .members
            .iter()
            .map(|&(i, _)| {
                let resume = runner.decide(i).map(|d| d.resume).unwrap_or(false);
                job_command(&exe, &runner.stages[i], resume)
            })
            .collect();
        let _ = writeln!(
            out,
            "\n--- sbatch script of {} ({}) ---\n{}",
            job.name,
            if job.is_array() {
                format!("a job array of {}", job.members.len())
            } else {
                "a job".to_string()
            },
            script(&ctx, runner.stages, job, &after, &commands)
        );
    }
    if plan.is_empty() {
        let _ = writeln!(
            out,
            "\nnothing to submit: every selected stage is up to date"
        );
    }
    Ok(())
}

/// `distill run --executor slurm`: submits the out-of-date stages, then (unless `--no-wait`)
/// waits for them, recording each in the lock as its job finishes.
pub(super) fn execute(
    runner: &Runner<'_>,
    selected: &[bool],
    options: &SlurmOptions,
    pipeline: &Path,
    wdir: &Path,
    dir: &Path,
) -> Result<(Vec<Row>, Option<PipelineError>)> {
    check_tools()?;
    check_controller()?;
    let mut jobs = read_jobs(dir)?;
    let (mut in_flight, picked) = pick_up(runner, dir, &mut jobs)?;
    let (submit, decisions) = decide_all(runner, selected, &in_flight)?;
    let n = runner.stages.len();
    let mut rows: Vec<Option<Row>> = vec![None; n];
    for i in 0..n {
        if let Some(row) = picked.get(&i)
            && !submit[i]
        {
            rows[i] = Some(row.clone());
        } else if !selected[i] && !in_flight.contains_key(&i) {
            rows[i] = Some(runner.row(i, Status::NotSelected, 0.0, "not selected".into()));
        } else if let Some(d) = &decisions[i]
            && !submit[i]
        {
            let report = runner.entry(&runner.stages[i].name).and_then(|e| e.report);
            say(format_args!(
                "skipped {} ({}): {}",
                runner.stages[i].name,
                runner.stages[i].kind.name(),
                d.reason
            ));
            let mut row = runner.row(i, Status::Skipped, 0.0, d.reason.clone());
            row.report = report;
            rows[i] = Some(row);
        }
    }
    let flight: Vec<Option<String>> = (0..n).map(|i| in_flight.get(&i).cloned()).collect();
    let plan = plan_jobs(runner.stages, runner.graph, &submit, &flight);
    std::fs::create_dir_all(dir).map_err(|e| PipelineError::io(dir, e))?;
    let exe = exe()?;
    let ctx = ScriptContext {
        wdir,
        dir,
        pipeline,
        options,
    };
    let mut ids: Vec<String> = Vec::with_capacity(plan.len());
    let mut reasons: BTreeMap<usize, String> = BTreeMap::new();
    for job in &plan {
        let mut after: Vec<String> = job.after_jobs.iter().map(|&k| ids[k].clone()).collect();
        after.extend(job.after_ids.iter().cloned());
        let commands: Vec<Vec<String>> = job
            .members
            .iter()
            .map(|&(i, _)| {
                let resume = decisions[i].as_ref().is_some_and(|d| d.resume);
                job_command(&exe, &runner.stages[i], resume)
            })
            .collect();
        let text = script(&ctx, runner.stages, job, &after, &commands);
        let file = dir.join(format!("{}.sbatch", safe_name(&job.name)));
        distill_core::atomic::write_bytes(&file, text.as_bytes())?;
        for &(i, _) in &job.members {
            runner.prepare_outputs(i)?;
            remove_results(dir, &runner.stages[i].name)?;
        }
        let file_arg = file.display().to_string();
        let (ok, out, err) = slurm(
            "sbatch",
            &["--parsable", &file_arg],
            Duration::from_secs(120),
        )?;
        let id = out.trim().split(';').next().unwrap_or_default().to_string();
        if !ok || id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
            let before: Vec<String> = plan
                .iter()
                .zip(&ids)
                .map(|(j, id)| format!("{} (job {id})", j.name))
                .collect();
            return Err(PipelineError::Usage(format!(
                "sbatch refused the job of {}: {}{}\n  script: {}\n  hint: check --partition and \
                 --slurm-opt against `sinfo`; {}",
                job.name,
                format!("{}{}", err.trim(), out.trim()).trim(),
                if before.is_empty() {
                    "; nothing was submitted".to_string()
                } else {
                    format!(
                        "; already submitted: {} (recorded; `distill run` again picks them up)",
                        before.join(", ")
                    )
                },
                file.display(),
                conf_description()
            )));
        }
        for &(i, task) in &job.members {
            let stage = &runner.stages[i];
            let Some(d) = &decisions[i] else { continue };
            let entry = runner.started_entry(i, d);
            let job_id = match task {
                Some(t) => format!("{id}_{t}"),
                None => id.clone(),
            };
            jobs.stages.insert(
                stage.name.clone(),
                Submitted {
                    job: job_id.clone(),
                    array_job: id.clone(),
                    args: entry.args.clone(),
                    command: entry.command.clone(),
                    log: log_file(&job.name, job.is_array(), &id, task),
                    submitted: now(),
                },
            );
            runner.update_lock(&stage.name, entry)?;
            in_flight.insert(i, job_id.clone());
            reasons.insert(i, d.reason.clone());
        }
        write_jobs(dir, &jobs)?;
        say(format_args!(
            "submitted {}: Slurm job {id}{}{}",
            job.name,
            if job.is_array() {
                format!(" (array {})", job.array_spec())
            } else {
                String::new()
            },
            if after.is_empty() {
                String::new()
            } else {
                format!(
                    ", {} {}",
                    if job.any { "afterany" } else { "afterok" },
                    after.join(":")
                )
            }
        ));
        ids.push(id);
    }
    let reason_of = |i: usize| {
        let job = &in_flight[&i];
        match reasons.get(&i) {
            Some(r) => format!("Slurm job {job}; {r}"),
            None => format!("Slurm job {job}, submitted earlier"),
        }
    };
    if !options.wait {
        for &i in in_flight.keys() {
            say(format_args!(
                "{}: Slurm job {}",
                runner.stages[i].name, in_flight[&i]
            ));
            rows[i] = Some(runner.row(i, Status::Submitted, 0.0, reason_of(i)));
        }
        return Ok((collect(runner, rows), None));
    }
    let error = wait(runner, dir, &mut jobs, &in_flight, &mut rows, &reason_of)?;
    Ok((collect(runner, rows), error))
}

fn collect(runner: &Runner<'_>, mut rows: Vec<Option<Row>>) -> Vec<Row> {
    runner
        .graph
        .order
        .iter()
        .map(|&i| {
            rows[i]
                .take()
                .unwrap_or_else(|| runner.row(i, Status::NotRun, 0.0, String::new()))
        })
        .collect()
}

/// The poll interval while waiting (`DISTILL_SLURM_POLL_MS`, default 2,000 ms).
fn poll_interval() -> Duration {
    Duration::from_millis(
        std::env::var("DISTILL_SLURM_POLL_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2000),
    )
}

/// Waits for the stages in flight; records each in the lock when its job ends; cancels the jobs
/// below a failed stage (except `report` stages, which run after a failure as locally).
fn wait(
    runner: &Runner<'_>,
    dir: &Path,
    jobs: &mut Jobs,
    in_flight: &BTreeMap<usize, String>,
    rows: &mut [Option<Row>],
    reason_of: &dyn Fn(usize) -> String,
) -> Result<Option<PipelineError>> {
    let mut waiting: BTreeSet<usize> = in_flight.keys().copied().collect();
    let mut error: Option<PipelineError> = None;
    let mut lost_once: BTreeSet<usize> = BTreeSet::new();
    let mut failures = 0;
    while !waiting.is_empty() {
        if distill_core::interrupt::requested() {
            let list: Vec<String> = waiting.iter().map(|i| in_flight[i].clone()).collect();
            for &i in &waiting {
                rows[i] = Some(runner.row(i, Status::Submitted, 0.0, reason_of(i)));
            }
            return Ok(Some(PipelineError::Detached {
                jobs: list.join(", "),
            }));
        }
        let queue = match squeue() {
            Ok(q) => {
                failures = 0;
                q
            }
            Err(e) => {
                failures += 1;
                if failures >= 5 {
                    for &i in &waiting {
                        rows[i] = Some(runner.row(i, Status::Submitted, 0.0, reason_of(i)));
                    }
                    return Ok(Some(PipelineError::Stage {
                        stage: runner.stages[*waiting.iter().next().unwrap_or(&0)]
                            .name
                            .clone(),
                        message: format!(
                            "lost contact with Slurm while waiting ({e}); the jobs keep their \
                             state: `distill run` again picks up their results"
                        ),
                        user: false,
                    }));
                }
                std::thread::sleep(poll_interval());
                continue;
            }
        };
        let mut failed_now: Vec<usize> = Vec::new();
        for &i in waiting.clone().iter() {
            let name = runner.stages[i].name.clone();
            let Some(sub) = jobs.stages.get(&name).cloned() else {
                waiting.remove(&i);
                continue;
            };
            let ended = match outcome(dir, &name, &sub, &queue) {
                Outcome::Running => {
                    lost_once.remove(&i);
                    continue;
                }
                // A file system shared with the node may show the exit file late: a job is
                // lost only when two polls in a row find neither the job nor the file.
                Outcome::Lost(_) if !lost_once.contains(&i) => {
                    lost_once.insert(i);
                    continue;
                }
                Outcome::Lost(state) => Finished::Failed(lost_error(&name, &sub, dir, state)),
                Outcome::Ended(code, seconds) => finish(runner, dir, i, &sub, code, seconds)?,
            };
            waiting.remove(&i);
            jobs.stages.remove(&name);
            match ended {
                Finished::Done { seconds, report } => {
                    let mut out = std::io::stdout().lock();
                    if let Some(r) = &report {
                        let _ = writeln!(out, "{r}");
                    }
                    let _ = writeln!(
                        out,
                        "<== {name} done in {seconds:.0} s (Slurm job {})",
                        sub.job
                    );
                    let _ = out.flush();
                    let mut row = runner.row(i, Status::Ran, seconds, reason_of(i));
                    row.report = report;
                    rows[i] = Some(row);
                }
                Finished::Failed(e) => {
                    say(format_args!(
                        "<== {name} FAILED (Slurm job {}; log: {})",
                        sub.job,
                        dir.join(&sub.log).display()
                    ));
                    rows[i] = Some(runner.row(i, Status::Failed, 0.0, e.to_string()));
                    failed_now.push(i);
                    if error.is_none() {
                        error = Some(e);
                    }
                }
            }
        }
        // Stages below a failure cannot run: cancel their jobs (afterok would wait forever).
        if !failed_now.is_empty() {
            let below = downstream(runner.graph, &failed_now);
            let mut cancel = Vec::new();
            for &i in &below {
                if !waiting.contains(&i) || runner.stages[i].kind == Kind::Report {
                    continue;
                }
                let name = &runner.stages[i].name;
                if let Some(sub) = jobs.stages.remove(name) {
                    cancel.push(sub.job);
                }
                waiting.remove(&i);
                let from = failed_now
                    .iter()
                    .map(|&f| runner.stages[f].name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                rows[i] = Some(runner.row(
                    i,
                    Status::NotRun,
                    0.0,
                    format!("upstream {from} failed; its job was cancelled"),
                ));
            }
            scancel(&cancel);
        }
        write_jobs(dir, jobs)?;
        if !waiting.is_empty() {
            std::thread::sleep(poll_interval());
        }
    }
    Ok(error)
}

/// Every stage below the given ones.
fn downstream(graph: &Graph, from: &[usize]) -> BTreeSet<usize> {
    let mut below: BTreeSet<usize> = BTreeSet::new();
    let mut frontier: Vec<usize> = from.to_vec();
    while let Some(f) = frontier.pop() {
        for (i, ups) in graph.upstream.iter().enumerate() {
            if ups.contains(&f) && below.insert(i) {
                frontier.push(i);
            }
        }
    }
    below
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::spec::Document;

    const SYNTH: &str = "synthetic:classes=10,groups=2,dim=8,seed=1";

    fn pipeline(text: &str) -> (Vec<Stage>, Graph) {
        let doc = Document::parse(
            Path::new("p.yaml"),
            text.replace("SYNTH", &format!("'{SYNTH}'")),
        )
        .unwrap();
        let mut stages: Vec<Stage> = doc
            .stages
            .iter()
            .map(|s| Stage::resolve(&doc, s).unwrap())
            .collect();
        let graph = Graph::build(&doc, &mut stages).unwrap();
        (stages, graph)
    }

    /// A teacher, its store in three shards, a student from the shards, an evaluation, a report.
    const SHARDED: &str = "
stages:
  teacher:
    kind: train
    args: {data: SYNTH, hidden: 8, out: w/teacher.onnx}
  teach:
    kind: teach
    foreach: [1, 2, 3]
    args: {model: w/teacher.onnx, data: SYNTH, shard: '${item}/3', out: w/soft}
  student:
    kind: train
    args: {data: SYNTH, hidden: 4, soft-targets: w/soft, out: w/student.onnx}
  eval:
    kind: eval
    args: {teacher: w/teacher.onnx, model: w/student.onnx, data: SYNTH, out: w/metrics.json}
  report:
    kind: report
    args: {metrics: w/metrics.json, allow-missing: true, out: w/report.html}
";

    fn index(stages: &[Stage], name: &str) -> usize {
        stages.iter().position(|s| s.name == name).unwrap()
    }

    #[test]
    fn foreach_shards_become_one_array_and_jobs_wait_for_their_inputs() {
        let (stages, graph) = pipeline(SHARDED);
        let n = stages.len();
        let plan = plan_jobs(&stages, &graph, &vec![true; n], &vec![None; n]);
        let names: Vec<&str> = plan.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["teacher", "teach", "student", "eval", "report"]);
        let teach = &plan[1];
        assert!(teach.is_array());
        assert_eq!(teach.array_spec(), "1-3");
        let tasks: Vec<(&str, Option<usize>)> = teach
            .members
            .iter()
            .map(|&(i, t)| (stages[i].name.as_str(), t))
            .collect();
        assert_eq!(
            tasks,
            [
                ("teach@1", Some(1)),
                ("teach@2", Some(2)),
                ("teach@3", Some(3))
            ]
        );
        // teach waits for the teacher, the student for the whole array, eval for both models,
        // the report (afterany) for eval.
        assert_eq!(plan[0].after_jobs, Vec::<usize>::new());
        assert_eq!(teach.after_jobs, [0]);
        assert_eq!(plan[2].after_jobs, [1]);
        assert_eq!(plan[3].after_jobs, [0, 2]);
        assert_eq!(plan[4].after_jobs, [3]);
        assert!(!plan[0].is_array() && !plan[2].is_array());
        assert!(plan[4].any && !plan[3].any);
    }

    #[test]
    fn only_stale_shards_are_submitted_and_running_jobs_are_waited_for_by_id() {
        let (stages, graph) = pipeline(SHARDED);
        let n = stages.len();
        let mut submit = vec![false; n];
        submit[index(&stages, "teach@1")] = true;
        submit[index(&stages, "teach@3")] = true;
        submit[index(&stages, "student")] = true;
        let mut in_flight = vec![None; n];
        in_flight[index(&stages, "teacher")] = Some("41".to_string());
        let plan = plan_jobs(&stages, &graph, &submit, &in_flight);
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[0].name, "teach");
        assert_eq!(plan[0].array_spec(), "1,3");
        assert_eq!(plan[0].after_ids, ["41"]);
        assert_eq!(plan[1].name, "student");
        assert_eq!(plan[1].after_jobs, [0]);
        assert!(plan[1].after_ids.is_empty());
    }

    #[test]
    fn a_shard_is_its_array_task_whatever_its_foreach_position() {
        let (stages, graph) = pipeline(
            "
stages:
  teacher:
    kind: train
    args: {data: SYNTH, hidden: 8, out: w/teacher.onnx}
  teach:
    kind: teach
    foreach: [{k: 4}, {k: 2}]
    args: {model: w/teacher.onnx, data: SYNTH, shard: '${item.k}/4', out: w/soft}
  last:
    kind: teach
    args: {model: w/teacher.onnx, data: SYNTH, shard: 3/4, out: w/soft}
",
        );
        let n = stages.len();
        let plan = plan_jobs(&stages, &graph, &vec![true; n], &vec![None; n]);
        assert_eq!(plan[1].name, "teach");
        assert_eq!(plan[1].array_spec(), "2,4");
        assert_eq!(plan[1].members[0].1, Some(4));
        // A single --shard 3/4 stage is an array of one task, K = 3.
        assert_eq!(plan[2].name, "last");
        assert_eq!(plan[2].members, [(index(&stages, "last"), Some(3))]);
        assert_eq!(plan[2].array_spec(), "3");
    }

    #[test]
    fn expansions_that_read_each_other_become_separate_jobs() {
        let (stages, graph) = pipeline(
            "
stages:
  step:
    kind: cmd
    foreach: [1, 2]
    cmd: echo ${item} > s${item}
    deps: ['${item}']
    outs: ['s${item}']
  one:
    kind: cmd
    cmd: echo > 1
    outs: ['1']
  two:
    kind: cmd
    cmd: cat s1 > 2
    deps: [s1]
    outs: ['2']
",
        );
        let n = stages.len();
        let plan = plan_jobs(&stages, &graph, &vec![true; n], &vec![None; n]);
        // step@2 reads `2`, written by `two`, which reads step@1's s1: one array for step@1 and
        // step@2 would wait for itself, so each expansion is its own job (array task 1 and 2).
        let of = |name: &str| {
            plan.iter()
                .position(|j| j.members.iter().any(|&(i, _)| stages[i].name == name))
                .unwrap()
        };
        assert_eq!(plan.len(), 4);
        assert_ne!(of("step@1"), of("step@2"));
        assert_eq!(plan[of("step@2")].members[0].1, Some(2));
        assert_eq!(plan[of("two")].after_jobs, [of("step@1")]);
        assert_eq!(plan[of("step@2")].after_jobs, [of("two")]);
        assert!(of("step@1") < of("two") && of("two") < of("step@2"));
    }

    #[test]
    fn the_script_runs_each_tasks_stage_command_line() {
        let (stages, graph) = pipeline(SHARDED);
        let n = stages.len();
        let plan = plan_jobs(&stages, &graph, &vec![true; n], &vec![None; n]);
        let options = SlurmOptions {
            partition: Some("gpu".into()),
            opts: SlurmOptions::parse_opts(&["--time=30 --mem=4G".into()]).unwrap(),
            wait: true,
        };
        let ctx = ScriptContext {
            wdir: Path::new("/data/run"),
            dir: Path::new("/data/run/.distill/slurm/p"),
            pipeline: Path::new("/data/run/p.yaml"),
            options: &options,
        };
        let exe = Path::new("/opt/distill");
        let commands = |job: &JobPlan| -> Vec<Vec<String>> {
            job.members
                .iter()
                .map(|&(i, _)| job_command(exe, &stages[i], false))
                .collect()
        };
        let teach = script(&ctx, &stages, &plan[1], &["7".into()], &commands(&plan[1]));
        for line in [
            "#!/bin/sh\n",
            "#SBATCH --job-name=p:teach\n",
            "#SBATCH --output=/data/run/.distill/slurm/p/teach-%A_%a.log\n",
            "#SBATCH --chdir=/data/run\n",
            "#SBATCH --array=1-3\n",
            "#SBATCH --dependency=afterok:7\n",
            "#SBATCH --partition=gpu\n",
            "#SBATCH --time=30\n#SBATCH --mem=4G\n",
            "case \"${SLURM_ARRAY_TASK_ID:-}\" in\n",
            &format!(
                "2) stage=teach@2; set -- /opt/distill teach --model=w/teacher.onnx --data={SYNTH} --shard=2/3 --out=w/soft ;;\n"
            ),
            "\"$@\" > \"$dir/$stage.report.tmp\"\n",
            "mv \"$dir/.$stage.exit.tmp\" \"$dir/$stage.exit\"\n",
        ] {
            assert!(teach.contains(line), "{line:?} not in\n{teach}");
        }
        let teacher = script(&ctx, &stages, &plan[0], &[], &commands(&plan[0]));
        assert!(teacher.contains("#SBATCH --output=/data/run/.distill/slurm/p/teacher-%j.log\n"));
        assert!(!teacher.contains("--array") && !teacher.contains("--dependency"));
        assert!(!teacher.contains("case "));
        assert!(teacher.contains("stage=teacher; set -- /opt/distill train "));
        let report = script(&ctx, &stages, &plan[4], &["9".into()], &commands(&plan[4]));
        assert!(report.contains("#SBATCH --dependency=afterany:9\n"));
        // A train stage interrupted with a checkpoint resumes, as locally.
        let resumed = job_command(exe, &stages[index(&stages, "student")], true);
        assert_eq!(resumed.last().map(String::as_str), Some("--resume"));
        assert_eq!(&resumed[..2], ["/opt/distill", "train"]);
    }

    #[test]
    fn slurm_options_are_words_and_not_the_executors_own() {
        assert_eq!(
            SlurmOptions::parse_opts(&["--time=30  --mem=4G".into(), "-N1".into()]).unwrap(),
            ["--time=30", "--mem=4G", "-N1"]
        );
        let e = SlurmOptions::parse_opts(&["--array=1-3".into()]).unwrap_err();
        assert!(e.contains("--array is set by distill run"), "{e}");
        let e = SlurmOptions::parse_opts(&["-d afterok:1".into()]).unwrap_err();
        assert!(e.contains("-d is set by distill run"), "{e}");
        let e = SlurmOptions::parse_opts(&["time=30".into()]).unwrap_err();
        assert!(e.contains("`time=30` is not an sbatch option"), "{e}");
    }

    #[test]
    fn an_exit_file_gives_code_seconds_and_job() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("teach@2.exit"),
            "0 1700000000.250000000 1700000003.750000000 12\n",
        )
        .unwrap();
        assert_eq!(
            read_exit(dir.path(), "teach@2"),
            Some((0, 3.5, "12".into()))
        );
        // `date` without %N.
        std::fs::write(dir.path().join("a.exit"), "3 1700000000.N 1700000002.N 7\n").unwrap();
        assert_eq!(read_exit(dir.path(), "a"), Some((3, 2.0, "7".into())));
        assert_eq!(read_exit(dir.path(), "missing"), None);
    }

    #[test]
    fn stage_names_are_file_names() {
        assert_eq!(safe_name("teach@1"), "teach@1");
        assert_eq!(safe_name("t@a/b c"), "t@a_b_c");
        assert_eq!(
            state_dir(Path::new("/w"), Path::new("/p/mnist.yaml")),
            PathBuf::from("/w/.distill/slurm/mnist")
        );
    }
}
