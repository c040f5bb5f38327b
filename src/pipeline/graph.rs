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
    /// writing one file (see [`check_outputs_apart`]), an input that is neither present nor written by a stage, and cycles.
    pub fn build(doc: &Document, stages: &mut [Stage]) -> Result<Graph> {
        check_outputs_apart(doc, stages)?;
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

/// Refuses two stages whose outputs are the same file or where one's output lies inside the
/// other's output folder, compared as [`distill_core::atomic::Place`]s (symlinks resolved, and by
/// inode), so that neither a second spelling nor a symlinked folder hides the clash.
fn check_outputs_apart(doc: &Document, stages: &[Stage]) -> Result<()> {
    use distill_core::atomic::{Overlap, Place};
    let places: Vec<Vec<Place>> = stages
        .iter()
        .map(|s| s.outs.iter().map(|o| Place::of(&o.path)).collect())
        .collect();
    for (i, s) in stages.iter().enumerate() {
        for (k, o) in s.outs.iter().enumerate() {
            for (j, other) in stages[..i].iter().enumerate() {
                for (m, p) in other.outs.iter().enumerate() {
                    let how = places[i][k].overlap(&places[j][m]);
                    if how == Overlap::None {
                        continue;
                    }
                    let key = if s.outs.iter().any(|p| p.folder) {
                        "outs"
                    } else {
                        "args"
                    };
                    let message = match how {
                        Overlap::Same if o.path == p.path => format!(
                            "stages {} and {} both write {}",
                            other.name,
                            s.name,
                            o.path.display()
                        ),
                        Overlap::Same => format!(
                            "stages {} and {} both write one file: {} and {} are the same file \
                             (through a symlink or a hard link)",
                            other.name,
                            s.name,
                            p.path.display(),
                            o.path.display()
                        ),
                        _ => {
                            // One output holds the other: name the inner one first.
                            let ((inner, inner_path), (outer, outer_path)) =
                                if how == Overlap::Contains {
                                    ((other, p), (s, o))
                                } else {
                                    ((s, o), (other, p))
                                };
                            format!(
                                "stage {} writes {} inside stage {}'s output {} (stages {} and {} \
                                 both write there)",
                                inner.name,
                                inner_path.path.display(),
                                outer.name,
                                outer_path.path.display(),
                                other.name,
                                s.name
                            )
                        }
                    };
                    return Err(doc.error(
                        &["stages", &s.template, key],
                        message,
                        "give each stage its own output path, outside the other stages' output \
                         folders",
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Refuses a stage output that is, holds or lies inside the pipeline file or its lock, which
/// the run reads and rewrites.
pub fn check_pipeline_files(
    doc: &Document,
    stages: &[Stage],
    pipeline: &Path,
    lock: &Path,
) -> Result<()> {
    use distill_core::atomic::{Overlap, Place};
    let files = [
        ("the pipeline file", Place::of(pipeline), pipeline),
        ("the pipeline's lock", Place::of(lock), lock),
    ];
    for s in stages {
        for o in &s.outs {
            let place = Place::of(&o.path);
            for (what, file, path) in &files {
                if place.overlap(file) == Overlap::None {
                    continue;
                }
                let key = if s.outs.iter().any(|p| p.folder) {
                    "outs"
                } else {
                    "args"
                };
                return Err(doc.error(
                    &["stages", &s.template, key],
                    format!(
                        "stage {} writes {}, which is or holds {what} {}; the run would destroy it",
                        s.name,
                        o.path.display(),
                        path.display()
                    ),
                    "write the stage's outputs into a folder of their own (e.g. work/)",
                ));
            }
        }
    }
    Ok(())
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
