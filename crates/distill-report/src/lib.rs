//! `distill-report`: one self-contained HTML page that shows a distillation the way people judge
//! one: a results table, learning curves, confusion matrices and per-class errors, reliability
//! diagrams, the class clusters, the error/size and error/latency trade-offs, the specialists'
//! gains, and the provenance of every input. The plots are drawn with `plotters` on its SVG
//! backend and inlined; the page loads nothing (no script, font, style sheet or image from
//! elsewhere).
//!
//! The report reads what the other stages wrote. A file it was told to read that is missing is a
//! mistake (exit 2) unless [`Config::allow_missing`] is set, as pipelines do: then the page says
//! which stages' outputs are missing and draws what it can. A file that is there but unreadable
//! (another schema version, a damaged training record) is always an error, and nothing is written.

pub mod cli;
pub mod html;
pub mod inputs;
pub mod plot;

use std::fmt;
use std::path::{Path, PathBuf};

use inputs::{Metrics, Specialists, TrainLog};

/// Why no page was written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// An input that is there but cannot be used.
    #[error("{}: {message}", path.display())]
    Input { path: PathBuf, message: String },
    /// An input that was named but does not exist.
    #[error(
        "{flag} {}: missing ({what}); run that stage first, or pass --allow-missing to draw the page without it",
        path.display()
    )]
    Missing {
        /// The flag that named it.
        flag: &'static str,
        path: PathBuf,
        /// Which stage writes it, in words.
        what: String,
    },
    /// A flag's value.
    #[error("{0}")]
    Usage(String),
    /// Nothing to draw at all.
    #[error(
        "none of the inputs exists ({0}): there is nothing to report; run the pipeline's stages first"
    )]
    Nothing(String),
    /// The plotting library failed.
    #[error("cannot draw {0}")]
    Plot(String),
    /// Writing the page.
    #[error(transparent)]
    Core(#[from] distill_core::CoreError),
}

impl ReportError {
    /// Whether the error comes from the user's input rather than the machine.
    pub fn is_user_error(&self) -> bool {
        match self {
            ReportError::Input { .. }
            | ReportError::Missing { .. }
            | ReportError::Usage(_)
            | ReportError::Nothing(_) => true,
            ReportError::Plot(_) => false,
            ReportError::Core(e) => e.is_user_error(),
        }
    }
}

impl distill_cli::UserError for ReportError {
    fn is_user_error(&self) -> bool {
        ReportError::is_user_error(self)
    }
}

/// The paper's figure for one of our models: its test errors as the paper reports them.
#[derive(Clone, Debug, PartialEq)]
pub struct PaperFigure {
    /// The entry of `metrics.json` it stands beside.
    pub name: String,
    pub errors: usize,
}

impl std::str::FromStr for PaperFigure {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, errors) = s.split_once('=').ok_or_else(|| {
            format!("--paper `{s}`: expected NAME=ERRORS, e.g. student=74 (the paper's test errors for that entry)")
        })?;
        let errors = errors.trim().parse().map_err(|_| {
            format!("--paper `{s}`: `{errors}` is not a whole number of test errors")
        })?;
        if name.trim().is_empty() {
            return Err(format!("--paper `{s}`: the entry name is empty"));
        }
        Ok(PaperFigure {
            name: name.trim().to_string(),
            errors,
        })
    }
}

/// What to read and where to write.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// distill-eval's `metrics.json`.
    pub metrics: Option<PathBuf>,
    /// Training records (`MODEL.metrics.csv`); when none is given, the records beside the models
    /// of `metrics.json` that have one.
    pub train_logs: Vec<PathBuf>,
    /// distill-cluster's `specialists.yaml`, the class subsets (`--subsets`).
    pub specialists: Option<PathBuf>,
    /// The flag that named [`Config::specialists`], for messages (empty: `--subsets`).
    pub subsets_flag: &'static str,
    /// The specialists' `manifest.yaml`.
    pub manifest: Option<PathBuf>,
    /// The soft-target store (its metadata: the teachers and their SHA-256).
    pub store: Option<PathBuf>,
    /// The pipeline file; its lock (beside it) tells which stages completed.
    pub pipeline: Option<PathBuf>,
    /// The paper's figures to show beside ours.
    pub paper: Vec<PaperFigure>,
    /// The page's title (default: from the pipeline or the data set).
    pub title: Option<String>,
    /// Draw the page when named inputs are missing, saying which.
    pub allow_missing: bool,
    pub out: PathBuf,
}

/// An input that was named but is not there.
#[derive(Clone, Debug, PartialEq)]
pub struct MissingInput {
    pub path: PathBuf,
    /// Which stage writes it, in words.
    pub what: String,
}

/// A stage recorded in the pipeline's lock, or named in the pipeline and absent from the lock.
#[derive(Clone, Debug, PartialEq)]
pub struct StageState {
    pub name: String,
    pub kind: String,
    /// `complete`, `started` (running, failed or killed) or `never run`.
    pub state: String,
    pub seconds: Option<f64>,
    pub command: String,
}

/// The pipeline file with its SHA-256, and its lock with its SHA-256 when there is one.
#[derive(Clone, Debug)]
pub struct PipelineFiles {
    pub path: PathBuf,
    pub sha256: String,
    pub lock: Option<(PathBuf, String)>,
}

/// Everything the page is drawn from.
#[derive(Debug, Default)]
pub struct Inputs {
    pub metrics: Option<(PathBuf, Metrics)>,
    pub train_logs: Vec<TrainLog>,
    pub specialists: Option<(PathBuf, Specialists)>,
    pub manifest: Option<(PathBuf, distill_specialists::manifest::Manifest)>,
    pub store: Option<(PathBuf, distill_store::StoreMeta)>,
    pub pipeline: Option<PipelineFiles>,
    pub stages: Vec<StageState>,
    pub missing: Vec<MissingInput>,
    pub paper: Vec<PaperFigure>,
    pub title: String,
}

/// What `run` wrote.
#[derive(Clone, Debug)]
pub struct Report {
    pub out: PathBuf,
    pub bytes: usize,
    /// The `id` of every figure on the page.
    pub figures: Vec<String>,
    pub missing: Vec<MissingInput>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "report: {} ({} figures, {:.0} KiB)",
            self.out.display(),
            self.figures.len(),
            self.bytes as f64 / 1024.0
        )?;
        for m in &self.missing {
            write!(f, "\nmissing: {} ({})", m.path.display(), m.what)?;
        }
        Ok(())
    }
}

impl distill_cli::Report for Report {
    /// Prints the report; a closed stdout (`| head -1`) ends the output quietly.
    fn print(&self) {
        distill_core::out::print_line(self);
    }
}

/// `x.onnx` → `x.metrics.csv`, distill-train's default record path.
pub fn train_log_path(model: &Path) -> PathBuf {
    model.with_extension("metrics.csv")
}

/// Reads every input (see [`Config`]), checks them, and fails on the first unusable one.
pub fn read_inputs(config: &Config) -> Result<Inputs, ReportError> {
    let mut inputs = Inputs {
        paper: config.paper.clone(),
        ..Inputs::default()
    };
    let present = |flag: &'static str,
                   path: &Path,
                   what: &str,
                   inputs: &mut Inputs|
     -> Result<bool, ReportError> {
        if path.exists() {
            return Ok(true);
        }
        if !config.allow_missing {
            return Err(ReportError::Missing {
                flag,
                path: path.to_path_buf(),
                what: what.to_string(),
            });
        }
        inputs.missing.push(MissingInput {
            path: path.to_path_buf(),
            what: what.to_string(),
        });
        Ok(false)
    };
    if let Some(p) = &config.metrics
        && present(
            "--metrics",
            p,
            "the eval stage writes it: distill-eval --out METRICS.json",
            &mut inputs,
        )?
    {
        inputs.metrics = Some((p.clone(), inputs::read_metrics(p)?));
    }
    let logs: Vec<PathBuf> = if config.train_logs.is_empty() {
        inputs
            .metrics
            .iter()
            .flat_map(|(_, m)| &m.entries)
            .filter_map(|e| e.path.as_deref())
            .map(|p| train_log_path(Path::new(p)))
            .filter(|p| p.is_file())
            .collect()
    } else {
        config.train_logs.clone()
    };
    for p in &logs {
        let model = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".metrics.csv"))
            .map(|n| format!("{n}.onnx"));
        let what = match model {
            Some(m) => format!("the train stage of {m} writes it: distill-train --out {m}"),
            None => "the train stage of its model writes it: distill-train --out MODEL.onnx \
                     writes MODEL.metrics.csv"
                .to_string(),
        };
        if present("--train-log", p, &what, &mut inputs)? {
            inputs.train_logs.push(inputs::read_train_log(p)?);
        }
    }
    if let Some(p) = &config.specialists
        && present(
            config.subsets_flag(),
            p,
            "the cluster stage writes it: distill-cluster --out SUBSETS.yaml",
            &mut inputs,
        )?
    {
        inputs.specialists = Some((p.clone(), inputs::read_specialists(p)?));
    }
    if let Some(p) = &config.manifest
        && present(
            "--manifest",
            p,
            "the specialists stage writes it: distill-specialists --out FOLDER writes FOLDER/manifest.yaml",
            &mut inputs,
        )?
    {
        inputs.manifest = Some((p.clone(), inputs::read_manifest(p)?));
    }
    if let Some(p) = &config.store
        && present(
            "--store",
            p,
            "the teach stage writes it: distill-teach --out STORE.parquet",
            &mut inputs,
        )?
    {
        inputs.store = Some((p.clone(), inputs::read_store_meta(p)?));
    }
    if let Some(p) = &config.pipeline {
        if !p.is_file() {
            return Err(ReportError::Input {
                path: p.clone(),
                message: "--pipeline: the pipeline file does not exist; give the YAML file the \
                          stages were run from (distill run PIPELINE.yaml)"
                    .into(),
            });
        }
        let hash = distill_core::sha256_file(p)?;
        let lock = p.with_extension("lock");
        let lock_hash = if lock.is_file() {
            Some((lock.clone(), distill_core::sha256_file(&lock)?))
        } else {
            None
        };
        inputs.stages = stage_states(p, &lock)?;
        inputs.pipeline = Some(PipelineFiles {
            path: p.clone(),
            sha256: hash,
            lock: lock_hash,
        });
    }
    if inputs.metrics.is_none()
        && inputs.train_logs.is_empty()
        && inputs.specialists.is_none()
        && inputs.manifest.is_none()
        && inputs.store.is_none()
        && inputs.pipeline.is_none()
    {
        let named: Vec<String> = inputs
            .missing
            .iter()
            .map(|m| m.path.display().to_string())
            .collect();
        return Err(ReportError::Nothing(if named.is_empty() {
            "no --metrics, --train-log, --subsets, --manifest or --store given".into()
        } else {
            named.join(", ")
        }));
    }
    inputs.title = config.title.clone().unwrap_or_else(|| {
        let what = config
            .pipeline
            .as_deref()
            .and_then(|p| p.file_stem())
            .map(|s| s.to_string_lossy().into_owned())
            .or_else(|| inputs.metrics.as_ref().map(|(_, m)| m.dataset.clone()))
            .unwrap_or_else(|| "distillation".into());
        format!("distill report: {what}")
    });
    for fig in &inputs.paper {
        if let Some((path, m)) = &inputs.metrics
            && !m.entries.iter().any(|e| e.name == fig.name)
        {
            let names: Vec<&str> = m.entries.iter().map(|e| e.name.as_str()).collect();
            return Err(ReportError::Usage(format!(
                "--paper {}={}: {} has no entry named `{}`; its entries are {}",
                fig.name,
                fig.errors,
                path.display(),
                fig.name,
                names.join(", ")
            )));
        }
    }
    Ok(inputs)
}

/// The stages of the pipeline file (top-level names under `stages:`) and what its lock says
/// about each; a `foreach` stage is listed by its expansions when the lock has them.
fn stage_states(pipeline: &Path, lock: &Path) -> Result<Vec<StageState>, ReportError> {
    use serde_norway::Value;
    let bad = |path: &Path, message: String| ReportError::Input {
        path: path.to_path_buf(),
        message,
    };
    let text = distill_core::input::read_to_string(
        "--pipeline",
        pipeline,
        distill_core::input::MAX_TEXT_BYTES,
    )?;
    let doc: Value = serde_norway::from_str(&text).map_err(|e| {
        bad(
            pipeline,
            format!("not YAML: {e}; `distill run --dry-run` checks it"),
        )
    })?;
    let names: Vec<(String, String)> = doc
        .get("stages")
        .and_then(Value::as_mapping)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| {
                    Some((
                        k.as_str()?.to_string(),
                        v.get("kind")
                            .and_then(Value::as_str)
                            .unwrap_or("?")
                            .to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let recorded: Vec<StageState> = if lock.is_file() {
        let text = distill_core::input::read_to_string(
            "--pipeline's lock",
            lock,
            distill_core::input::MAX_TEXT_BYTES,
        )?;
        let doc: Value = serde_norway::from_str(&text).map_err(|e| {
            bad(
                lock,
                format!("not a pipeline lock: {e}; delete it and run the pipeline again"),
            )
        })?;
        doc.get("stages")
            .and_then(Value::as_mapping)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| {
                        let s = |key: &str| v.get(key).and_then(Value::as_str).unwrap_or("");
                        Some(StageState {
                            name: k.as_str()?.to_string(),
                            kind: s("kind").to_string(),
                            state: s("state").to_string(),
                            seconds: v.get("seconds").and_then(Value::as_f64),
                            command: s("command").to_string(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut states = Vec::new();
    for (name, kind) in names {
        let hits: Vec<&StageState> = recorded
            .iter()
            .filter(|s| s.name == name || s.name.starts_with(&format!("{name}@")))
            .collect();
        if hits.is_empty() {
            states.push(StageState {
                name,
                kind,
                state: "never run".into(),
                seconds: None,
                command: String::new(),
            });
        } else {
            states.extend(hits.into_iter().cloned());
        }
    }
    Ok(states)
}

impl Config {
    /// Every file or folder named by a flag that the page is drawn from, with its flag: the
    /// pipeline's lock (beside the pipeline file) included.
    /// The flag that named the subsets: `--subsets`, or the old `--specialists` when given so.
    pub fn subsets_flag(&self) -> &'static str {
        if self.subsets_flag.is_empty() {
            "--subsets"
        } else {
            self.subsets_flag
        }
    }

    pub fn input_files(&self) -> Vec<(&'static str, PathBuf)> {
        let mut files: Vec<(&'static str, PathBuf)> = Vec::new();
        let mut add = |flag: &'static str, p: &Option<PathBuf>| {
            if let Some(p) = p {
                files.push((flag, p.clone()));
            }
        };
        add("--metrics", &self.metrics);
        add(self.subsets_flag(), &self.specialists);
        add("--manifest", &self.manifest);
        add("--store", &self.store);
        add("--pipeline", &self.pipeline);
        add(
            "--pipeline's lock",
            &self.pipeline.as_ref().map(|p| p.with_extension("lock")),
        );
        files.extend(self.train_logs.iter().map(|p| ("--train-log", p.clone())));
        files
    }
}

/// Reads the inputs, draws the page and writes it atomically to `config.out`.
pub fn run(config: &Config) -> Result<Report, ReportError> {
    if config.out.as_os_str().is_empty() {
        return Err(ReportError::Usage(
            "--out is empty: give the page's path, e.g. work/mnist/report.html".into(),
        ));
    }
    let named = config.input_files();
    let named: Vec<(&str, &Path)> = named.iter().map(|(f, p)| (*f, p.as_path())).collect();
    distill_core::atomic::check_output("--out", &config.out, &named)?;
    let inputs = read_inputs(config)?;
    // The training records found beside the models of --metrics are read too.
    let found: Vec<(&str, &Path)> = inputs
        .train_logs
        .iter()
        .map(|l| {
            (
                "--train-log (beside a model of --metrics)",
                l.path.as_path(),
            )
        })
        .collect();
    distill_core::atomic::check_disjoint(&[("--out", &config.out)], &found)?;
    let page = html::page(&inputs)?;
    distill_core::atomic::write_bytes(&config.out, page.html.as_bytes())?;
    Ok(Report {
        out: config.out.clone(),
        bytes: page.html.len(),
        figures: page.figures,
        missing: inputs.missing,
    })
}
