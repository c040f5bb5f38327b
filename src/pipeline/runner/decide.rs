//! The run/skip decision of each stage (arguments, inputs, outputs and the tool's version
//! against the lock), and the dry run's plan built from it.

use super::*;
use crate::pipeline::Dep;

/// Whether a stage runs, and why.
pub(in crate::pipeline) struct Decision {
    pub run: bool,
    pub reason: String,
    /// A training stage interrupted with the same arguments and inputs: continue from its
    /// checkpoint.
    pub resume: bool,
    /// The hashes of the inputs as they are now.
    pub deps: BTreeMap<String, String>,
}

impl Runner<'_> {
    pub(in crate::pipeline) fn entry(&self, name: &str) -> Option<Entry> {
        self.lock.lock().ok()?.stages.get(name).cloned()
    }

    pub(in crate::pipeline) fn decide(&self, i: usize) -> Result<Decision> {
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

    pub(in crate::pipeline) fn row(
        &self,
        i: usize,
        status: Status,
        seconds: f64,
        reason: String,
    ) -> Row {
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

    /// The stages other than `i` that write `path` (or a folder holding it, or a file inside it).
    fn writers_of(&self, i: usize, path: &Path) -> Vec<usize> {
        (0..self.stages.len())
            .filter(|&j| j != i)
            .filter(|&j| {
                self.stages[j]
                    .outs
                    .iter()
                    .any(|o| path.starts_with(&o.path) || o.path.starts_with(path))
            })
            .collect()
    }

    /// Why input `d` of stage `i` is missing, in words: the flag that names it and the stage that
    /// writes it (to be run first with `--from`), or that no stage writes it.
    pub(in crate::pipeline) fn missing_message(&self, i: usize, d: &Dep) -> String {
        let flag = match d.key.as_deref().and_then(|k| k.strip_prefix("args.")) {
            Some(k) => format!(" (--{})", k.split('.').next().unwrap_or(k)),
            None => String::new(),
        };
        let why = match self.writers_of(i, &d.path).first() {
            Some(&j) => format!(
                "stage {} writes it and is not selected; start with --from {}",
                self.stages[j].name, self.stages[j].name
            ),
            None => "no stage writes it; create it or fix the path".to_string(),
        };
        format!("input {}{flag} missing: {why}", d.path.display())
    }

    /// For the dry run: why stage `i` cannot run, when one of its inputs does not exist and no
    /// stage planned to run before it writes it.
    fn missing_input(&self, i: usize, runs: &[bool]) -> Option<String> {
        self.stages[i]
            .deps
            .iter()
            .filter(|d| !d.optional && std::fs::symlink_metadata(&d.path).is_err())
            .find(|d| !self.writers_of(i, &d.path).iter().any(|&j| runs[j]))
            .map(|d| self.missing_message(i, d))
    }

    /// The dry run: each stage's decision, with stages below one that runs marked to run too.
    pub(in crate::pipeline) fn plan(&self, selected: &[bool]) -> Result<Vec<Row>> {
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
            if run && let Some(missing) = self.missing_input(i, &runs) {
                rows[i] = Some(self.row(i, Status::NotRun, 0.0, missing));
                continue;
            }
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
}
