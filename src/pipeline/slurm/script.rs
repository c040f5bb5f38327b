//! The batch script of a job.

use super::*;

/// What every job script of one run shares.
pub(in crate::pipeline) struct ScriptContext<'a> {
    /// The pipeline's working folder, where the jobs start.
    pub wdir: &'a Path,
    /// `WDIR/.distill/slurm/NAME`: logs, reports, exit codes.
    pub dir: &'a Path,
    pub pipeline: &'a Path,
    pub options: &'a SlurmOptions,
}

/// `s` as one shell word: bare when it holds only characters the shell gives no meaning to, else
/// in single quotes. A newline inside the quotes stays part of the word; a NUL cannot be written
/// (see [`body_value`]).
pub(in crate::pipeline) fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=./,:+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Refuses a value that goes into an `#SBATCH` line: sbatch reads one option per line, and the
/// shell runs a line that a newline would start, so no control character is allowed there.
fn option_value<'a>(what: &str, value: &'a str) -> Result<&'a str> {
    match value.chars().find(|c| c.is_control()) {
        None => Ok(value),
        Some(c) => Err(PipelineError::Usage(format!(
            "{what} {value:?} holds the control character {c:?}, which cannot go into an \
             `#SBATCH` line of a job script; nothing was submitted\n  hint: rename it without \
             newlines, tabs or other control characters"
        ))),
    }
}

/// Refuses a value that goes into the shell part of a job script with a NUL byte, which no shell
/// can read; every other character is kept by [`quote`].
fn body_value<'a>(what: &str, value: &'a str) -> Result<&'a str> {
    if value.contains('\0') {
        return Err(PipelineError::Usage(format!(
            "{what} {value:?} holds a NUL byte, which cannot go into a job script; nothing was \
             submitted\n  hint: remove the NUL (`\\0`) from the pipeline file"
        )));
    }
    Ok(value)
}

/// `s` on one comment line: control characters written as Rust escapes (`\n`), so that no part of
/// it starts a line the shell would run.
fn comment(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// The command a job runs for a stage: `distill KIND ARGS...` (the stage's own flags, as the
/// local executor parses them), or `sh -c CMD` for a `cmd` stage.
pub(in crate::pipeline) fn job_command(exe: &Path, stage: &Stage, resume: bool) -> Vec<String> {
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
pub(in crate::pipeline) fn log_pattern(job: &JobPlan) -> String {
    if job.is_array() {
        format!("{}-%A_%a.log", safe_name(&job.name))
    } else {
        format!("{}-%j.log", safe_name(&job.name))
    }
}

/// The log file of one member once its job id is known.
pub(in crate::pipeline) fn log_file(
    job_name: &str,
    array: bool,
    array_job: &str,
    task: Option<usize>,
) -> String {
    match (array, task) {
        (true, Some(t)) => format!("{}-{array_job}_{t}.log", safe_name(job_name)),
        _ => format!("{}-{array_job}.log", safe_name(job_name)),
    }
}

/// The `sbatch` script of a job. `after` is the dependency list (job ids, or placeholders in a
/// dry run); `commands[k]` is the command of member k. Every value is quoted; a value with a
/// control character in an `#SBATCH` line or a NUL anywhere is refused (exit 2), and names in
/// comments have their control characters escaped, so the script runs exactly the members'
/// commands and its own bookkeeping.
pub(in crate::pipeline) fn script(
    ctx: &ScriptContext<'_>,
    stages: &[Stage],
    job: &JobPlan,
    after: &[String],
    commands: &[Vec<String>],
) -> Result<String> {
    let mut s = String::from("#!/bin/sh\n");
    let stem = ctx
        .pipeline
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let line = |s: &mut String, opt: String| s.push_str(&format!("#SBATCH {opt}\n"));
    // The job's name is for squeue's listing only: the file-name form of the pipeline and stage.
    line(
        &mut s,
        format!(
            "--job-name={}",
            quote(&format!("{}:{}", safe_name(&stem), safe_name(&job.name)))
        ),
    );
    let log = ctx.dir.join(log_pattern(job)).display().to_string();
    line(
        &mut s,
        format!(
            "--output={}",
            quote(option_value("the Slurm log folder", &log)?)
        ),
    );
    let wdir = ctx.wdir.display().to_string();
    line(
        &mut s,
        format!(
            "--chdir={}",
            quote(option_value("the working folder (wdir)", &wdir)?)
        ),
    );
    if job.is_array() {
        line(&mut s, format!("--array={}", job.array_spec()));
    }
    if !after.is_empty() {
        let kind = if job.any { "afterany" } else { "afterok" };
        for a in after {
            option_value("the job id", a)?;
        }
        line(&mut s, format!("--dependency={kind}:{}", after.join(":")));
        line(&mut s, "--kill-on-invalid-dep=yes".into());
    }
    if let Some(p) = &ctx.options.partition {
        line(
            &mut s,
            format!("--partition={}", quote(option_value("--partition", p)?)),
        );
    }
    for o in &ctx.options.opts {
        line(&mut s, quote(option_value("--slurm-opt", o)?));
    }
    let names: Vec<String> = job
        .members
        .iter()
        .map(|&(i, _)| comment(&stages[i].name))
        .collect();
    s.push_str(&format!(
        "# distill run --executor slurm: {} of {}\n",
        names.join(", "),
        comment(&ctx.pipeline.display().to_string())
    ));
    s.push_str("set -u\n");
    let set = |(i, _): &(usize, Option<usize>), command: &[String]| -> Result<String> {
        let words = command
            .iter()
            .map(|a| body_value(&format!("stage {}: the argument", stages[*i].name), a).map(quote))
            .collect::<Result<Vec<_>>>()?;
        Ok(format!(
            "stage={}; set -- {}",
            quote(&safe_name(&stages[*i].name)),
            words.join(" ")
        ))
    };
    if job.is_array() {
        s.push_str("case \"${SLURM_ARRAY_TASK_ID:-}\" in\n");
        for (m, c) in job.members.iter().zip(commands) {
            s.push_str(&format!("{}) {} ;;\n", m.1.unwrap_or(0), set(m, c)?));
        }
        s.push_str(
            "*) echo \"distill: no stage for array task ${SLURM_ARRAY_TASK_ID:-}\" >&2; exit 2 ;;\nesac\n",
        );
    } else if let (Some(m), Some(c)) = (job.members.first(), commands.first()) {
        s.push_str(&set(m, c)?);
        s.push('\n');
    }
    let dir = quote(body_value(
        "the Slurm log folder",
        &ctx.dir.display().to_string(),
    )?);
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
    Ok(s)
}
