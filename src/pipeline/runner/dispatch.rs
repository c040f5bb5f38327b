//! Running one stage: the decision, its folders, the lock before and after, and the call into
//! the stage's library (or `sh -c` for `cmd`).

use super::*;

impl Runner<'_> {
    /// Decides, and runs when needed, stage `i`.
    pub(super) fn stage(&self, i: usize) -> Result<Outcome> {
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
                    message: self.missing_message(i, dep),
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
                    checkpoint: true,
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
        StageConfig::Quantize(c) => {
            let r = distill_quantize::run(c, progress)
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
            let status = match crate::pipeline::child::run_shell(cmd)
                .map_err(|e| failed(format!("cannot start sh: {e}"), false))?
            {
                crate::pipeline::child::Ended::Exited(status) => status,
                crate::pipeline::child::Ended::Interrupted => {
                    return Err(PipelineError::Interrupted {
                        stage: stage.name.clone(),
                        checkpoint: false,
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
