//! The order of the stages: an edge from a stage to every stage that reads one of its outputs.

use std::path::Path;

use super::error::Result;
use super::spec::Document;
use super::stage::Stage;

/// The stages' dependencies and a topological order (file order among independent stages).
#[derive(Debug)]
pub struct Graph {
    /// For each stage, the stages whose outputs it reads.
    pub upstream: Vec<Vec<usize>>,
    /// The stages, each after every stage it reads from.
    pub order: Vec<usize>,
}

/// Whether one path is the other or lies inside it (a folder output holds the files read from it,
/// and a folder input holds the files written into it).
fn overlaps(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

fn dep_key_path<'a>(stage: &'a Stage, key: &'a Option<String>) -> Vec<&'a str> {
    let mut path = vec!["stages", stage.template.as_str()];
    if let Some(k) = key {
        path.extend(k.split('.'));
    }
    path
}

impl Graph {
    /// Links the stages, drops optional inputs that nothing provides, and rejects two stages
    /// writing one file, an input that is neither present nor written by a stage, and cycles.
    pub fn build(doc: &Document, stages: &mut [Stage]) -> Result<Graph> {
        for (i, s) in stages.iter().enumerate() {
            for o in &s.outs {
                if let Some(other) = stages[..i]
                    .iter()
                    .find(|t| t.outs.iter().any(|p| p.path == o.path))
                {
                    let key = if s.outs.iter().any(|p| p.folder) {
                        "outs"
                    } else {
                        "args"
                    };
                    return Err(doc.error(
                        &["stages", &s.template, key],
                        format!(
                            "stages {} and {} both write {}",
                            other.name,
                            s.name,
                            o.path.display()
                        ),
                        "give each stage its own output path",
                    ));
                }
            }
        }
        let producers = |stages: &[Stage], me: usize, path: &Path| -> Vec<usize> {
            stages
                .iter()
                .enumerate()
                .filter(|(j, t)| *j != me && t.outs.iter().any(|o| overlaps(&o.path, path)))
                .map(|(j, _)| j)
                .collect()
        };
        let mut upstream = vec![Vec::new(); stages.len()];
        for i in 0..stages.len() {
            let mut kept = Vec::new();
            for d in std::mem::take(&mut stages[i].deps) {
                let from = producers(stages, i, &d.path);
                let present = d.path.exists();
                if from.is_empty() && !present {
                    if d.optional {
                        continue;
                    }
                    let s = &stages[i];
                    return Err(doc.error(
                        &dep_key_path(s, &d.key),
                        format!(
                            "stage {}: input {} does not exist and no stage writes it",
                            s.name,
                            d.path.display()
                        ),
                        &format!(
                            "check the path (relative paths are taken from {}), or add a stage whose outputs include it",
                            if doc.wdir.as_os_str().is_empty() {
                                "the pipeline file's folder".to_string()
                            } else {
                                format!("wdir `{}`", doc.wdir.display())
                            }
                        ),
                    ));
                }
                for j in from {
                    if !upstream[i].contains(&j) {
                        upstream[i].push(j);
                    }
                }
                kept.push(d);
            }
            stages[i].deps = kept;
        }
        let n = stages.len();
        let mut done = vec![false; n];
        let mut order = Vec::with_capacity(n);
        while order.len() < n {
            let Some(next) = (0..n).find(|&i| !done[i] && upstream[i].iter().all(|&j| done[j]))
            else {
                return Err(cycle_error(doc, stages, &upstream, &done));
            };
            done[next] = true;
            order.push(next);
        }
        Ok(Graph { upstream, order })
    }
}

fn cycle_error(
    doc: &Document,
    stages: &[Stage],
    upstream: &[Vec<usize>],
    done: &[bool],
) -> super::error::PipelineError {
    let start = done.iter().position(|d| !d).unwrap_or(0);
    let mut path = vec![start];
    let mut at = start;
    while let Some(&next) = upstream[at].iter().find(|&&j| !done[j]) {
        if let Some(k) = path.iter().position(|&p| p == next) {
            path = path[k..].to_vec();
            path.push(next);
            break;
        }
        path.push(next);
        at = next;
    }
    path.reverse();
    let names: Vec<&str> = path.iter().map(|&i| stages[i].name.as_str()).collect();
    let first = &stages[path[1.min(path.len() - 1)]];
    let feeder = &stages[path[0]];
    let key = first
        .deps
        .iter()
        .find(|d| feeder.outs.iter().any(|o| overlaps(&o.path, &d.path)))
        .and_then(|d| d.key.clone());
    doc.error(
        &dep_key_path(first, &key),
        format!("dependency cycle: {}", names.join(" → ")),
        "each stage reads what the one before it writes; a stage cannot depend on its own outputs, directly or through others",
    )
}
