//! Planning: which stages go into which job, and which job waits for which.

use super::*;

/// One `sbatch` submission: a single stage, or the expansions of a `foreach` stage (or one shard)
/// as a job array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(in crate::pipeline) struct JobPlan {
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
pub(in crate::pipeline) fn task_ids(stages: &[Stage]) -> Vec<Option<usize>> {
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
pub(in crate::pipeline) fn plan_jobs(
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
