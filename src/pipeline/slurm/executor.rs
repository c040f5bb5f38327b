//! The executor: submitting the out-of-date stages, waiting for them, and the dry run's scripts.

use super::*;

pub(in crate::pipeline) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(in crate::pipeline) fn exe() -> Result<PathBuf> {
    std::env::current_exe().map_err(|e| PipelineError::io("the distill binary", e))
}

/// Which stages to submit: each selected stage that is out of date, or below one that runs; the
/// reason of each.
pub(in crate::pipeline) fn decide_all(
    runner: &Runner<'_>,
    selected: &[bool],
    in_flight: &BTreeMap<usize, String>,
) -> Result<(Vec<bool>, Vec<Option<crate::pipeline::runner::Decision>>)> {
    let n = runner.stages.len();
    let mut submit = vec![false; n];
    let mut decisions: Vec<Option<crate::pipeline::runner::Decision>> =
        (0..n).map(|_| None).collect();
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
                    message: format!("{}; nothing was submitted", runner.missing_message(i, dep)),
                    user: true,
                });
            }
        }
    }
    Ok((submit, decisions))
}

/// `--dry-run --executor slurm`: the plan, then the script of each job that would be submitted.
pub(in crate::pipeline) fn print_scripts(
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
    let mut texts = Vec::with_capacity(plan.len());
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
        texts.push(format!(
            "\n--- sbatch script of {} ({}) ---\n{}",
            job.name.escape_debug(),
            if job.is_array() {
                format!("a job array of {}", job.members.len())
            } else {
                "a job".to_string()
            },
            script(&ctx, runner.stages, job, &after, &commands)?
        ));
    }
    let mut out = std::io::stdout().lock();
    for text in texts {
        let _ = writeln!(out, "{text}");
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
pub(in crate::pipeline) fn execute(
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
    let exe = exe()?;
    let ctx = ScriptContext {
        wdir,
        dir,
        pipeline,
        options,
    };
    let commands_of = |job: &JobPlan| -> Vec<Vec<String>> {
        job.members
            .iter()
            .map(|&(i, _)| {
                let resume = decisions[i].as_ref().is_some_and(|d| d.resume);
                job_command(&exe, &runner.stages[i], resume)
            })
            .collect()
    };
    // Every script is written once before any job is submitted, so that a value a script cannot
    // hold stops the run with nothing submitted.
    for job in &plan {
        let after: Vec<String> = job
            .after_jobs
            .iter()
            .map(|_| "0".to_string())
            .chain(job.after_ids.iter().cloned())
            .collect();
        script(&ctx, runner.stages, job, &after, &commands_of(job))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| PipelineError::io(dir, e))?;
    let mut ids: Vec<String> = Vec::with_capacity(plan.len());
    let mut reasons: BTreeMap<usize, String> = BTreeMap::new();
    for job in &plan {
        let mut after: Vec<String> = job.after_jobs.iter().map(|&k| ids[k].clone()).collect();
        after.extend(job.after_ids.iter().cloned());
        let text = script(&ctx, runner.stages, job, &after, &commands_of(job))?;
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

pub(in crate::pipeline) fn collect(runner: &Runner<'_>, mut rows: Vec<Option<Row>>) -> Vec<Row> {
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
pub(in crate::pipeline) fn poll_interval() -> Duration {
    Duration::from_millis(
        std::env::var("DISTILL_SLURM_POLL_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2000),
    )
}

/// Waits for the stages in flight; records each in the lock when its job ends; cancels the jobs
/// below a failed stage (except `report` stages, which run after a failure as locally).
pub(in crate::pipeline) fn wait(
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
pub(in crate::pipeline) fn downstream(graph: &Graph, from: &[usize]) -> BTreeSet<usize> {
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
