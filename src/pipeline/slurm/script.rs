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
/// dry run); `commands[k]` is the command of member k.
pub(in crate::pipeline) fn script(
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
