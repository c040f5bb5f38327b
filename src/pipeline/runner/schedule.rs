//! Scheduling: the selected stages in dependency order, up to `--jobs` at a time.

use super::*;

impl Runner<'_> {
    /// Runs the selected stages, up to `jobs` at a time; stops starting new ones after a failure.
    pub(super) fn execute(
        &self,
        selected: &[bool],
        jobs: usize,
    ) -> (Vec<Row>, Option<PipelineError>) {
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
}
