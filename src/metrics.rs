//! `distill metrics`: the key numbers of every evaluation across pipelines, in one table (what
//! `dvc metrics show` is to dvc). For each pipeline it reads the lock file, takes every `eval`
//! stage that completed, and reads the `metrics.json` that stage wrote (through distill-report's
//! checked reader, so the two views of that file agree).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::pipeline::{Document, Lock, PipelineError, State, lock_path};

/// One evaluated model (or ensemble, or a generalist with its specialists) of one eval stage.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    /// The pipeline file.
    pub pipeline: PathBuf,
    /// The eval stage's name.
    pub stage: String,
    /// The metrics file the stage wrote, relative to the pipeline's working folder.
    pub metrics: PathBuf,
    /// The model's name in that file (`student + specialists` for the combined system).
    pub model: String,
    pub split: String,
    pub rows: usize,
    pub errors: usize,
    pub error_rate: f64,
    /// `None` for the specialists row, which `metrics.json` gives errors only.
    pub nll: Option<f64>,
    pub ece: Option<f64>,
    pub parameters: Option<u64>,
}

/// What `distill metrics` found: the rows, and notes on pipelines it could not read.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Table {
    pub rows: Vec<Row>,
    /// Pipelines without a completed eval stage, or whose metrics could not be read, and why.
    pub notes: Vec<String>,
}

/// The pipeline files named by `targets`: files as given, folders expanded to their `*.yaml` and
/// `*.yml` files (sorted). A target that does not exist is the user's mistake.
pub fn pipeline_files(targets: &[PathBuf]) -> Result<Vec<PathBuf>, PipelineError> {
    let mut files = Vec::new();
    for t in targets {
        if t.is_dir() {
            let entries = std::fs::read_dir(t).map_err(|e| PipelineError::io(t, e))?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
                })
                .collect();
            found.sort();
            files.extend(found);
        } else if t.is_file() {
            files.push(t.clone());
        } else {
            return Err(PipelineError::Usage(format!(
                "{}: no such pipeline file or folder; give pipeline files (e.g. pipelines/mnist.yaml) \
                 or a folder of them (the default is pipelines/)",
                t.display()
            )));
        }
    }
    Ok(files)
}

/// Reads the metrics of every completed eval stage of each pipeline in `files`.
pub fn collect(files: &[PathBuf]) -> Table {
    let mut table = Table::default();
    for file in files {
        if let Err(note) = collect_one(file, &mut table.rows) {
            table.notes.push(format!("{}: {note}", file.display()));
        }
    }
    table
}

fn collect_one(file: &Path, rows: &mut Vec<Row>) -> Result<(), String> {
    let lock_file = lock_path(file);
    if !lock_file.is_file() {
        return Err(format!("not run yet (no {})", lock_file.display()));
    }
    let doc = Document::read(file).map_err(|e| format!("cannot read the pipeline: {e}"))?;
    let wdir = doc.working_folder(file).map_err(|e| e.to_string())?;
    let (lock, problem) = Lock::read(&lock_file);
    if let Some(p) = problem {
        return Err(p);
    }
    let mut evals = 0;
    for (stage, entry) in &lock.stages {
        if entry.kind != "eval" || entry.state != State::Complete {
            continue;
        }
        for out in entry.outs.keys().filter(|o| o.ends_with(".json")) {
            evals += 1;
            let path = wdir.join(out);
            let m = distill_report::inputs::read_metrics(&path).map_err(|e| {
                format!(
                    "stage `{stage}`: {e}; run `distill run {}` to write it again",
                    file.display()
                )
            })?;
            let row = |model: String, errors, rows, nll, ece, parameters| Row {
                pipeline: file.to_path_buf(),
                stage: stage.clone(),
                metrics: PathBuf::from(out),
                model,
                split: m.split.clone(),
                rows,
                errors,
                error_rate: if rows == 0 {
                    0.0
                } else {
                    errors as f64 / rows as f64
                },
                nll,
                ece,
                parameters,
            };
            for e in &m.entries {
                rows.push(row(
                    e.name.clone(),
                    e.metrics.errors,
                    e.metrics.rows,
                    Some(e.metrics.nll),
                    Some(e.metrics.ece),
                    Some(e.parameters),
                ));
            }
            if let Some(s) = &m.specialists
                && let (Some(errors), Some(n)) = (s.combined_errors, s.rows)
            {
                let generalist = s.generalist.as_deref().unwrap_or("generalist");
                rows.push(row(
                    format!("{generalist} + specialists"),
                    errors,
                    n,
                    None,
                    None,
                    None,
                ));
            }
        }
    }
    if evals == 0 {
        return Err("no completed eval stage".into());
    }
    Ok(())
}

impl Table {
    /// The table as aligned text columns, then the notes.
    pub fn text(&self) -> String {
        let header = [
            "pipeline", "stage", "model", "split", "rows", "errors", "error %", "NLL", "ECE",
            "params",
        ];
        let opt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.4}"));
        let cells: Vec<[String; 10]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.pipeline
                        .file_stem()
                        .map_or_else(String::new, |s| s.to_string_lossy().into_owned()),
                    r.stage.clone(),
                    r.model.clone(),
                    r.split.clone(),
                    r.rows.to_string(),
                    r.errors.to_string(),
                    format!("{:.2}", 100.0 * r.error_rate),
                    opt(r.nll),
                    opt(r.ece),
                    r.parameters
                        .map_or_else(|| "-".to_string(), distill_progress::grouped),
                ]
            })
            .collect();
        let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in &cells {
            for (w, c) in width.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        let mut line = |fields: &[&str]| {
            let mut l = String::new();
            for (k, (f, w)) in fields.iter().zip(&width).enumerate() {
                // Text columns to the left, numbers to the right.
                if k < 4 {
                    let _ = write!(l, "{f:<w$}  ");
                } else {
                    let _ = write!(l, "{f:>w$}  ");
                }
            }
            out.push_str(l.trim_end());
            out.push('\n');
        };
        line(&header);
        for row in &cells {
            line(&row.iter().map(String::as_str).collect::<Vec<_>>());
        }
        if self.rows.is_empty() {
            out.push_str(
                "(no evaluations yet: run a pipeline with an eval stage, e.g. `make pipeline`)\n",
            );
        }
        for n in &self.notes {
            out.push_str(&format!("note: {n}\n"));
        }
        out.trim_end().to_string()
    }
}
