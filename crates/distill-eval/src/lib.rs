//! `distill-eval`: the numbers a distillation is judged by.
//!
//! [`run`] evaluates ONNX models (students, teachers, any exporter's models, through `distill-runtime`) and,
//! optionally, the arithmetic and geometric ensembles of some of them, on a labelled selection of a data set:
//! errors, per-class errors, confusion, NLL, calibration, top-k accuracy and agreement ([`metrics`]), plus
//! what each model costs to deploy: parameters, bytes on disk ([`footprint`]), latency and throughput
//! ([`timing`]). The [`Report`] is written as `metrics.json` and displayed as a table.

pub mod cli;
mod error;
pub mod footprint;
pub mod metrics;
pub mod predictions;
pub mod report;
pub mod specialists;
pub mod timing;

use std::path::{Path, PathBuf};
use std::time::Instant;

use distill_core::math::{Combine, argmax_rows, ensemble_probs, probabilities_to_logits, softmax};
use distill_data::{Dataset, Selection};
use distill_progress::{Progress, Task};
use distill_quantize::max_abs_diff;
use distill_runtime::{ModelSettings, ModelSpec, OnnxModel, OutputKind, Provider, RuntimeError};
use ndarray::{Array2, ArrayView2, Axis, s};
use serde::Serialize;

pub use distill_core::bias::{BiasAdjust, ClassBias};
pub use error::EvalError;
pub use report::{Entry, EntryType, Report, SCHEMA_VERSION, Variant};
pub use specialists::{CoveringRow, SpecialistsConfig, SpecialistsReport};

/// One model to evaluate.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelEntry {
    /// The `.onnx` file.
    pub path: PathBuf,
    /// Settings given explicitly; they override the sidecar `model.onnx.yaml`, which is read as usual.
    pub settings: ModelSettings,
    /// Whether the model is a member of the ensemble (used only with [`Config::ensemble`]).
    pub ensemble_member: bool,
    /// The name in tables and `metrics.json` (`None`: the file stem, made unique as distill-teach
    /// makes a teacher's column name, so the two agree).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Whether it is a teacher (`--teacher`, `--teachers-of`): its entry's type is `teacher`.
    pub teacher: bool,
}

impl ModelEntry {
    /// A model with no explicit settings that is an ensemble member.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            settings: ModelSettings::default(),
            ensemble_member: true,
            name: None,
            teacher: false,
        }
    }
}

/// Everything an evaluation needs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// The models, evaluated and reported in this order.
    pub models: Vec<ModelEntry>,
    /// The labelled rows to evaluate on.
    pub selection: Selection,
    /// Also evaluate the arithmetic and geometric ensembles of the models marked as members (at least two).
    pub ensemble: bool,
    /// Per-class deltas added to each model's logits (to `ln p` for probability models) before anything is
    /// computed, ensembles included.
    pub bias_adjust: BiasAdjust,
    /// The execution provider to run the models with.
    pub provider: Provider,
    /// ONNX Runtime intra-op threads per model (the command line's default: all cores; 0 leaves
    /// the choice to ONNX Runtime, one per physical core).
    pub threads: usize,
    /// Rows per inference call while evaluating.
    pub batch_size: usize,
    /// Timed batch-1 runs per model (see [`timing::plan`]); 0 skips the speed measurement.
    pub latency_runs: usize,
    /// Combine one of the models (the manifest's generalist) with the specialists of a
    /// `distill-specialists` manifest, and report the combination.
    pub specialists: Option<SpecialistsConfig>,
    /// Where to write `metrics.json`; its folder must exist.
    pub out: Option<PathBuf>,
    /// Where to write each row's most probable classes per model ([`predictions`]), and how many.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predictions: Option<(PathBuf, usize)>,
    /// A soft-target store whose teachers are evaluated too, after [`Config::models`], each as a
    /// teacher under its column name with the settings the store records for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub teachers_of: Option<PathBuf>,
}

/// The name of the arithmetic ensemble's entry.
pub const ARITHMETIC_ENSEMBLE: &str = "ensemble (arithmetic)";
/// The name of the geometric ensemble's entry.
pub const GEOMETRIC_ENSEMBLE: &str = "ensemble (geometric)";

/// One evaluated model's predictions, kept for the ensembles and the agreement.
struct Evaluated {
    entry: Entry,
    logits: Array2<f32>,
    /// The logits before the bias adjustment, when there is one.
    unadjusted: Option<Array2<f32>>,
    predicted: Vec<usize>,
}

/// Evaluates every model of `config` (and their ensembles with [`Config::ensemble`]) and writes
/// `metrics.json` when [`Config::out`] is set.
///
/// Fails before any inference when a model file is missing, the ensemble has fewer than two members, the
/// output folder does not exist, the selection is empty or unlabelled, or a bias adjustment names a class the
/// data lacks; fails when a model's input width or class count does not fit the data. Nothing is written
/// on failure.
pub fn run(config: &Config, progress: &Progress) -> Result<Report, EvalError> {
    let start = Instant::now();
    let with_store_teachers;
    let config = match &config.teachers_of {
        Some(store) => {
            with_store_teachers = Config {
                models: config
                    .models
                    .iter()
                    .cloned()
                    .chain(store_teachers(store)?)
                    .collect(),
                ..config.clone()
            };
            &with_store_teachers
        }
        None => config,
    };
    check_config(config)?;
    let plan = config
        .specialists
        .as_ref()
        .map(|s| specialists::Plan::prepare(s, &config.models))
        .transpose()?;
    let data = config.selection.load()?;
    let labels = data.require_labels("evaluation")?;
    if data.is_empty() {
        return Err(distill_core::CoreError::invalid(format!(
            "{}: the selection ({}) has no rows to evaluate",
            data.name,
            config.selection.describe()
        ))
        .into());
    }
    if let Some((row, &label)) = labels
        .iter()
        .enumerate()
        .find(|&(_, &l)| l as usize >= data.classes)
    {
        return Err(EvalError::LabelOutOfRange {
            data: data.name.clone(),
            row,
            label,
            classes: data.classes,
        });
    }
    config.bias_adjust.check(data.classes)?;
    if let Some(plan) = &plan {
        plan.check_data(&data)?;
    }

    let runtime = distill_runtime::init()?;
    let mut notes: Vec<String> = runtime.notes().to_vec();
    let names = entry_names(&config.models);
    let runs = config.models.len() + plan.as_ref().map_or(0, |p| p.len());
    let bar = progress.task("evaluate", (data.len() * runs) as u64, "rows");
    let mut evaluated = Vec::with_capacity(config.models.len());
    for (model, name) in config.models.iter().zip(names) {
        bar.set_message(name.clone());
        evaluated.push(evaluate_model(
            config, model, name, &data, labels, &bar, &mut notes,
        )?);
    }
    let specialists = match &plan {
        Some(plan) => {
            let generalist = &evaluated[plan.generalist];
            Some(plan.evaluate(
                config,
                &data,
                labels,
                (&generalist.entry.name, generalist.logits.view()),
                &bar,
                &mut notes,
            )?)
        }
        None => None,
    };
    bar.finish();
    let links = link_variants(&mut evaluated, &mut notes);
    if let Some((path, k)) = &config.predictions {
        write_predictions(
            config,
            &data,
            labels,
            (&evaluated, &links),
            specialists.as_ref(),
            (path, *k),
        )?;
    }
    let specialists = specialists.map(|(report, _)| report);

    let mut entries: Vec<Entry> = Vec::new();
    let mut reference: Option<(String, Vec<usize>)> = None;
    let mut ensemble_predictions = Vec::new();
    if config.ensemble {
        let members: Vec<&Evaluated> = config
            .models
            .iter()
            .zip(&evaluated)
            .filter(|(m, _)| m.ensemble_member)
            .map(|(_, e)| e)
            .collect();
        for (combine, name) in [
            (Combine::Arithmetic, ARITHMETIC_ENSEMBLE),
            (Combine::Geometric, GEOMETRIC_ENSEMBLE),
        ] {
            let (entry, predicted) = evaluate_ensemble(&members, combine, name, labels)?;
            if reference.is_none() {
                reference = Some((name.to_string(), predicted.clone()));
            }
            ensemble_predictions.push((entry, predicted));
        }
    }
    let (reference_name, reference_predicted) = match reference {
        Some(r) => r,
        None => match evaluated.first() {
            Some(first) => (first.entry.name.clone(), first.predicted.clone()),
            None => return Err(EvalError::NoModels),
        },
    };
    for e in evaluated {
        let mut entry = e.entry;
        entry.agreement = metrics::agreement(&e.predicted, &reference_predicted);
        entries.push(entry);
    }
    for (mut entry, predicted) in ensemble_predictions {
        entry.agreement = metrics::agreement(&predicted, &reference_predicted);
        entries.push(entry);
    }

    let mut report = Report {
        schema_version: SCHEMA_VERSION,
        tool: "distill-eval".to_string(),
        tool_version: distill_core::TOOL_VERSION.to_string(),
        dataset: config.selection.data.clone(),
        split: config.selection.split_label(),
        rows_from: config.selection.rows_origin(),
        transform: config.selection.describe_rows(),
        rows: data.len(),
        classes: data.classes,
        bias_adjust: config.bias_adjust.clone(),
        provider: config.provider.to_string(),
        threads: config.threads,
        latency_runs: config.latency_runs,
        agreement_reference: reference_name,
        entries,
        specialists,
        notes,
        seconds: 0.0,
        out: None,
    };
    report.seconds = start.elapsed().as_secs_f64();
    if let Some(out) = &config.out {
        let json = serde_json::to_vec_pretty(&report).map_err(|e| EvalError::Serialize {
            path: out.clone(),
            message: e.to_string(),
        })?;
        distill_core::atomic::write_bytes(out, &json)?;
        report.out = Some(out.clone());
    }
    Ok(report)
}

/// Writes `--predictions`: each model, each ensemble of [`Config::ensemble`] and the
/// specialists' combination, in the order of the report's entries, then each quantised model's
/// comparison with its float model.
fn write_predictions(
    config: &Config,
    data: &Dataset,
    labels: &[u32],
    (evaluated, links): (&[Evaluated], &[Link]),
    specialists: Option<&(SpecialistsReport, Array2<f32>)>,
    (path, k): (&Path, usize),
) -> Result<(), EvalError> {
    let mut probs: Vec<(String, Array2<f32>)> = evaluated
        .iter()
        .map(|e| (e.entry.name.clone(), softmax(e.logits.view(), 1.0)))
        .collect();
    if config.ensemble {
        let members: Vec<ArrayView2<f32>> = config
            .models
            .iter()
            .zip(evaluated)
            .filter(|(m, _)| m.ensemble_member)
            .map(|(_, e)| e.logits.view())
            .collect();
        for (combine, name) in [
            (Combine::Arithmetic, ARITHMETIC_ENSEMBLE),
            (Combine::Geometric, GEOMETRIC_ENSEMBLE),
        ] {
            probs.push((name.to_string(), ensemble_probs(&members, 1.0, combine)?));
        }
    }
    let mut sources: Vec<predictions::Source> = probs
        .iter()
        .map(|(name, p)| predictions::Source {
            name,
            probs: p.view(),
        })
        .collect();
    if let Some((_, combined)) = specialists {
        sources.push(predictions::Source {
            name: specialists::COMBINED,
            probs: combined.view(),
        });
    }
    let comparisons: Vec<predictions::Comparison> = links
        .iter()
        .filter_map(|l| {
            let e = &evaluated[l.variant].entry;
            let v = e.variant_of.as_ref()?;
            Some(predictions::Comparison {
                name: &e.name,
                source: v.source.as_deref()?,
                of: v.max_abs_diff_of.as_deref()?,
                same_class: &l.same_class,
                max_abs_diff: &l.max_abs_diff,
            })
        })
        .collect();
    predictions::write(
        path,
        (&config.selection.data, &config.selection.split_label()),
        &data.index,
        labels,
        (&sources, &comparisons),
        k,
    )
}

/// The teachers of the soft-target store at `store`, each under its column name with the settings
/// distill-teach recorded for it (none for stores written without them: the sidecar and the
/// model's declarations then apply, as they did in distill-teach); fails when a model file is
/// missing or its SHA-256 differs from the store's.
pub fn store_teachers(store: &Path) -> Result<Vec<ModelEntry>, EvalError> {
    if !store.exists() {
        return Err(distill_core::CoreError::invalid(format!(
            "--teachers-of {}: the soft-target store does not exist (the teach stage writes it: \
             distill-teach --model TEACHER.onnx --out {}); run that stage first",
            store.display(),
            store.display()
        ))
        .into());
    }
    let teachers = distill_store::read_teacher_settings(store)?;
    let mut entries = Vec::with_capacity(teachers.len());
    for (meta, settings) in teachers {
        let path = PathBuf::from(&meta.path);
        let problem = |problem: String| EvalError::StoreTeacher {
            store: store.to_path_buf(),
            name: meta.name.clone(),
            path: path.clone(),
            problem,
        };
        if distill_core::input::check_regular("--teachers-of", &path).is_err() {
            return Err(problem(
                "and that file is missing or not a regular file".into(),
            ));
        }
        let sha = distill_core::sha256_file(&path)?;
        if sha != meta.sha256 {
            return Err(problem(format!(
                "(SHA-256 {}), but that file now has SHA-256 {sha}",
                meta.sha256
            )));
        }
        let settings: ModelSettings = match settings {
            Some(s) => serde_json::from_value(s).map_err(|e| {
                problem(format!(
                    "with settings this version cannot read ({e}); rerun distill-teach"
                ))
            })?,
            None => ModelSettings::default(),
        };
        entries.push(ModelEntry {
            path,
            settings,
            ensemble_member: true,
            name: Some(meta.name.clone()),
            teacher: true,
        });
    }
    Ok(entries)
}

/// The checks that need no file (also run by `distill run` before any stage starts).
pub fn check_values(config: &Config) -> Result<(), EvalError> {
    if config.models.is_empty() && config.teachers_of.is_none() {
        return Err(EvalError::NoModels);
    }
    let mut seen = std::collections::HashSet::new();
    for m in &config.models {
        if let Some(name) = &m.name
            && (name.trim().is_empty()
                || name == ARITHMETIC_ENSEMBLE
                || name == GEOMETRIC_ENSEMBLE
                || !seen.insert(name.as_str()))
        {
            return Err(EvalError::Name {
                path: m.path.clone(),
                name: name.clone(),
            });
        }
    }
    if config.ensemble && config.teachers_of.is_none() {
        let members = config.models.iter().filter(|m| m.ensemble_member).count();
        if members < 2 {
            return Err(EvalError::EnsembleTooSmall { members });
        }
    }
    if let Some((path, k)) = &config.predictions {
        if *k == 0 {
            return Err(distill_core::CoreError::invalid(
                "--predictions-k must be at least 1 (classes kept per row)",
            )
            .into());
        }
        if config.out.as_deref() == Some(path.as_path()) {
            return Err(distill_core::CoreError::invalid(format!(
                "--predictions {} is also --out; give the predictions their own file",
                path.display()
            ))
            .into());
        }
    }
    if config.latency_runs > timing::MAX_LATENCY_RUNS {
        return Err(distill_core::CoreError::invalid(format!(
            "--latency-runs {}: at most {} timed runs per model; 200 (the default) gives a stable \
             median, 0 skips the speed measurement",
            config.latency_runs,
            timing::MAX_LATENCY_RUNS
        ))
        .into());
    }
    if config.threads > distill_core::MAX_THREADS {
        return Err(distill_core::CoreError::invalid(format!(
            "--threads {}: at most {} worker threads; leave --threads out for all cores",
            config.threads,
            distill_core::MAX_THREADS
        ))
        .into());
    }
    if config.batch_size == 0 {
        return Err(distill_core::CoreError::invalid(
            "--batch must be at least 1 (rows per inference call)",
        )
        .into());
    }
    Ok(())
}

/// The checks that need neither data nor ONNX Runtime.
fn check_config(config: &Config) -> Result<(), EvalError> {
    check_values(&Config {
        teachers_of: None,
        ..config.clone()
    })?;
    for m in &config.models {
        let flag = if m.teacher { "--teacher" } else { "--model" };
        if let Err(e) = distill_core::input::check_regular(flag, &m.path) {
            if m.path.symlink_metadata().is_err() {
                return Err(EvalError::ModelMissing {
                    flag,
                    path: m.path.clone(),
                });
            }
            return Err(e.into());
        }
    }
    if let Some(s) = &config.specialists
        && std::fs::symlink_metadata(&s.manifest).is_err()
    {
        return Err(EvalError::ManifestMissing {
            path: s.manifest.clone(),
        });
    }
    let mut files: Vec<(String, PathBuf)> = config
        .models
        .iter()
        .flat_map(|m| distill_core::atomic::model_files(&m.path))
        .collect();
    if let Some(store) = &config.teachers_of {
        files.push(("--teachers-of".into(), store.clone()));
    }
    if let Some(s) = &config.specialists {
        files.push(("--manifest".into(), s.manifest.clone()));
        // The files the manifest names, when it can be read (a manifest that cannot is refused
        // with its own message when the specialists are prepared).
        if let Ok(manifest) = distill_specialists::manifest::Manifest::load(&s.manifest) {
            files.push((
                "--manifest's generalist".into(),
                manifest.generalist_path(&s.manifest),
            ));
            for p in manifest.specialist_paths(&s.manifest) {
                files.extend(distill_core::atomic::model_files(&p).into_iter().map(
                    |(flag, path)| (flag.replace("--model", "--manifest's specialist"), path),
                ));
            }
        }
    }
    let mut inputs: Vec<(&str, &Path)> = files
        .iter()
        .map(|(flag, path)| (flag.as_str(), path.as_path()))
        .collect();
    inputs.push(("--data", Path::new(&config.selection.data)));
    if let Some(out) = &config.out {
        distill_core::atomic::check_output("--out", out, &inputs)?;
    }
    if let Some((path, _)) = &config.predictions {
        distill_core::atomic::check_output("--predictions", path, &inputs)?;
    }
    Ok(())
}

/// Each model's name: its `--name`, else its file stem, made unique by appending `-2`, `-3`, …
/// as distill-teach names the store's columns (so a teacher has the same name in both).
fn entry_names(models: &[ModelEntry]) -> Vec<String> {
    let given: Vec<(&Path, Option<&str>)> = models
        .iter()
        .map(|m| (m.path.as_path(), m.name.as_deref()))
        .collect();
    distill_core::names::model_names(&given, &[ARITHMETIC_ENSEMBLE, GEOMETRIC_ENSEMBLE])
}

fn evaluate_model(
    config: &Config,
    model_entry: &ModelEntry,
    name: String,
    data: &Dataset,
    labels: &[u32],
    bar: &Task,
    notes: &mut Vec<String>,
) -> Result<Evaluated, EvalError> {
    let path = &model_entry.path;
    let spec = ModelSpec::new(path).with_settings(model_entry.settings.clone());
    let mut model = OnnxModel::load(&spec, config.provider, config.threads)?;
    notes.extend(model.notes().iter().cloned());
    model.expect_input_width(data.width())?;
    let class_mismatch = |model_classes: usize| EvalError::ClassMismatch {
        path: path.clone(),
        model_classes,
        data: data.name.clone(),
        data_classes: data.classes,
    };
    if let Some(c) = model.classes().filter(|&c| c != data.classes) {
        return Err(class_mismatch(c));
    }
    let scores = infer(&mut model, data.features.view(), config.batch_size, bar)?;
    if scores.ncols() != data.classes {
        return Err(class_mismatch(scores.ncols()));
    }
    let mut logits = match model.kind() {
        OutputKind::Logits => scores,
        OutputKind::Probabilities => probabilities_to_logits(scores.view()),
    };
    let unadjusted = if config.bias_adjust.is_empty() {
        None
    } else {
        let before = logits.clone();
        config.bias_adjust.apply(&mut logits);
        Some(before)
    };
    let errors_unadjusted = unadjusted
        .as_ref()
        .map(|before| metrics::error_count(before.view(), labels));
    let probs = softmax(logits.view(), 1.0);
    let summary = metrics::summarize(probs.view(), labels);
    let predicted = argmax_rows(probs.view());
    let footprint = footprint::footprint(path)?;
    let speed = if config.latency_runs > 0 {
        Some(timing::measure(
            &mut model,
            data.features.view(),
            config.latency_runs,
        )?)
    } else {
        None
    };
    let entry = Entry {
        name,
        entry_type: if model_entry.teacher {
            EntryType::Teacher
        } else {
            EntryType::Model
        },
        path: Some(path.clone()),
        sha256: Some(footprint.sha256.clone()),
        output_kind: Some(model.kind().to_string()),
        provider: Some(model.provider().to_string()),
        members: Vec::new(),
        combine: None,
        metrics: summary,
        errors_unadjusted,
        agreement: 0.0,
        parameters: footprint.parameters,
        file_bytes: footprint.file_bytes,
        latency_ms_batch1: speed.map(|s| s.latency_ms_batch1),
        rows_per_s_batch256: speed.map(|s| s.rows_per_s_batch256),
        variant_of: footprint.quantized_from.map(|q| Variant {
            method: q.method,
            source_sha256: q.source_sha256,
            source: None,
            agreement: None,
            max_abs_diff: None,
            max_abs_diff_of: None,
        }),
    };
    Ok(Evaluated {
        entry,
        logits,
        unadjusted,
        predicted,
    })
}

/// A quantised model compared row by row with its float model.
pub(crate) struct Link {
    /// Index of the quantised model among the evaluated models.
    pub variant: usize,
    /// Whether each row's predicted class equals the float model's.
    pub same_class: Vec<bool>,
    /// Each row's largest |output difference| over the classes (see [`Variant::max_abs_diff`]).
    pub max_abs_diff: Vec<f32>,
}

/// Fills each quantised model's [`Variant`] from the first other evaluated model whose file has
/// the SHA-256 its metadata records, and returns the row-by-row comparisons; adds one note
/// naming the quantised models whose float model was not evaluated.
fn link_variants(evaluated: &mut [Evaluated], notes: &mut Vec<String>) -> Vec<Link> {
    fn raw(e: &Evaluated) -> ArrayView2<'_, f32> {
        e.unadjusted.as_ref().unwrap_or(&e.logits).view()
    }
    let mut links = Vec::new();
    let mut unlinked = Vec::new();
    for i in 0..evaluated.len() {
        let Some(v) = &evaluated[i].entry.variant_of else {
            continue;
        };
        let wanted = Some(v.source_sha256.as_str());
        let Some(j) = (0..evaluated.len())
            .find(|&j| j != i && evaluated[j].entry.sha256.as_deref() == wanted)
        else {
            unlinked.push(format!(
                "{} ({} of SHA-256 {})",
                evaluated[i].entry.name, v.method, v.source_sha256
            ));
            continue;
        };
        let (variant, float) = (&evaluated[i], &evaluated[j]);
        let logits = |e: &Evaluated| e.entry.output_kind.as_deref() == Some("logits");
        let per_row = |a: ArrayView2<f32>, b: ArrayView2<f32>| -> Vec<f32> {
            (0..a.nrows())
                .map(|r| max_abs_diff(a.slice(s![r..=r, ..]), b.slice(s![r..=r, ..])))
                .collect()
        };
        let (diffs, of) = if logits(variant) && logits(float) {
            (per_row(raw(variant), raw(float)), "logits")
        } else {
            let (p, q) = (softmax(raw(variant), 1.0), softmax(raw(float), 1.0));
            (per_row(p.view(), q.view()), "probabilities")
        };
        let same_class: Vec<bool> = variant
            .predicted
            .iter()
            .zip(&float.predicted)
            .map(|(a, b)| a == b)
            .collect();
        let agreement = metrics::agreement(&variant.predicted, &float.predicted);
        let largest = diffs.iter().copied().fold(0.0f32, f32::max);
        let name = float.entry.name.clone();
        if let Some(v) = evaluated[i].entry.variant_of.as_mut() {
            v.source = Some(name);
            v.agreement = Some(agreement);
            v.max_abs_diff = Some(f64::from(largest));
            v.max_abs_diff_of = Some(of.to_string());
        }
        links.push(Link {
            variant: i,
            same_class,
            max_abs_diff: diffs,
        });
    }
    if !unlinked.is_empty() {
        notes.push(format!(
            "quantised from a model not evaluated in this run: {}; give that float model with \
             --model too to see each variant's agreement with it",
            unlinked.join(", ")
        ));
    }
    links
}

/// Runs `model` over `x` in batches of `batch_size` rows, advancing `bar` by the rows done.
pub(crate) fn infer(
    model: &mut OnnxModel,
    x: ArrayView2<f32>,
    batch_size: usize,
    bar: &Task,
) -> Result<Array2<f32>, EvalError> {
    let step = batch_size.max(1);
    let mut parts = Vec::new();
    let mut start = 0;
    while start < x.nrows() {
        let end = (start + step).min(x.nrows());
        parts.push(model.run(x.slice(s![start..end, ..]))?);
        bar.inc((end - start) as u64);
        start = end;
    }
    let views: Vec<ArrayView2<f32>> = parts.iter().map(|p| p.view()).collect();
    ndarray::concatenate(Axis(0), &views).map_err(|e| {
        RuntimeError::OutputShape {
            path: model.path().to_path_buf(),
            output: model.io_names().1.to_string(),
            expected: "the same class count in every batch".to_string(),
            found: e.to_string(),
        }
        .into()
    })
}

fn evaluate_ensemble(
    members: &[&Evaluated],
    combine: Combine,
    name: &str,
    labels: &[u32],
) -> Result<(Entry, Vec<usize>), EvalError> {
    let views: Vec<ArrayView2<f32>> = members.iter().map(|m| m.logits.view()).collect();
    let probs = ensemble_probs(&views, 1.0, combine)?;
    let summary = metrics::summarize(probs.view(), labels);
    let predicted = argmax_rows(probs.view());
    let unadjusted: Option<Vec<ArrayView2<f32>>> = members
        .iter()
        .map(|m| m.unadjusted.as_ref().map(|u| u.view()))
        .collect();
    let errors_unadjusted = match unadjusted {
        Some(views) => Some(metrics::error_count(
            ensemble_probs(&views, 1.0, combine)?.view(),
            labels,
        )),
        None => None,
    };
    let sum_of = |f: fn(&Entry) -> Option<f64>| -> Option<f64> {
        members.iter().map(|m| f(&m.entry)).sum::<Option<f64>>()
    };
    let entry = Entry {
        name: name.to_string(),
        entry_type: EntryType::Ensemble,
        path: None,
        sha256: None,
        output_kind: None,
        provider: None,
        members: members.iter().map(|m| m.entry.name.clone()).collect(),
        combine: Some(combine),
        metrics: summary,
        errors_unadjusted,
        agreement: 0.0,
        parameters: members.iter().map(|m| m.entry.parameters).sum(),
        file_bytes: members.iter().map(|m| m.entry.file_bytes).sum(),
        latency_ms_batch1: sum_of(|e| e.latency_ms_batch1),
        rows_per_s_batch256: sum_of(|e| e.rows_per_s_batch256.map(|r| 1.0 / r)).map(|t| 1.0 / t),
        variant_of: None,
    };
    Ok((entry, predicted))
}
