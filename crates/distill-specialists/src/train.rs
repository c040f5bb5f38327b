//! Training the specialists: one network per subset of `specialists.yaml`, started from the
//! generalist, trained on the half/half stream with hard labels (and, with a store, the ensemble's
//! tempered soft targets folded onto the subset and the dustbin), stopped early on a validation
//! slice, corrected for the oversampling, and saved with a manifest.

use crate::init::{self, DustbinInit};
use crate::manifest::{FileRef, MANIFEST_VERSION, Manifest, SpecialistEntry};
use crate::sampler::HalfSampler;
use crate::targets::{SubsetMap, dustbin_correction};
use crate::{Result, SpecialistsError};
use distill_cluster::specialists::{SpecialistSet, Subset};
use distill_core::math::{Combine, argmax_rows, error_count, softmax};
use distill_core::rng::Rng;
use distill_data::{Dataset, Selection};
use distill_nn::loss::cross_entropy;
use distill_nn::mlp::gather_rows;
use distill_nn::{DistillLoss, Mlp, MlpConfig, Optimizer, OptimizerConfig, onnx};
use distill_store::read_store;
use distill_train::steps::BatchTrainer;
use ndarray::{Array2, Axis};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Everything a specialist training run needs.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Config {
    /// The training data: the split the generalist was trained on (its class filter applies).
    pub selection: Selection,
    /// `specialists.yaml`, written by `distill-cluster`.
    pub subsets: PathBuf,
    /// The generalist: an MLP ONNX written by `distill-train`.
    pub generalist: PathBuf,
    /// Soft-target store of the ensemble; `None` trains on hard labels only.
    pub soft_targets: Option<PathBuf>,
    pub temperature: f32,
    /// Weight of the soft term (`1 - alpha` weighs the hard labels).
    pub alpha: f32,
    pub combine: Combine,
    pub input_dropout: f32,
    pub hidden_dropout: f32,
    pub max_norm: Option<f32>,
    /// Random translation of training images by up to this many pixels (0: off).
    pub jitter: usize,
    pub optimizer: OptimizerConfig,
    /// The most epochs a specialist trains.
    pub epochs: usize,
    /// Stop after this many epochs without a lower validation cross-entropy.
    pub patience: usize,
    pub batch: usize,
    pub seed: u64,
    /// Rows of the split held out for validation, before class filters, as `distill-train` holds
    /// them out (`None`: 10% of the rows, at most 5,000).
    pub validation: Option<usize>,
    /// Worker threads of the stage, divided among the `jobs` specialists trained at once
    /// (`None`: the machine's cores).
    pub threads: Option<usize>,
    /// Specialists trained at once.
    pub jobs: usize,
    /// Train only these subset ids (the others already in the folder's manifest are kept).
    pub only: Option<Vec<usize>>,
    /// The output folder.
    pub out: PathBuf,
}

/// One epoch of one specialist.
#[derive(Clone, Debug, Serialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub loss: f64,
    pub validation_errors: Option<usize>,
    pub validation_loss: Option<f64>,
    pub seconds: f64,
}

/// What training one specialist did.
#[derive(Clone, Debug, Serialize)]
pub struct SpecialistReport {
    pub entry: SpecialistEntry,
    /// The generalist's errors on the same validation slice, its prediction folded onto the subset
    /// and the dustbin.
    pub generalist_validation_errors: usize,
    pub init: DustbinInit,
    /// Mean predicted dustbin probability (after the correction) on the whole validation slice,
    /// and the share of its rows outside the subset: the correction's calibration check.
    pub dustbin_check: Option<(f64, f64)>,
    pub rows_per_epoch: usize,
    pub history: Vec<EpochLog>,
    pub seconds: f64,
    pub onnx_check: String,
}

/// What a run did.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub out: PathBuf,
    pub manifest: PathBuf,
    pub specialists: Vec<SpecialistReport>,
    pub seconds: f64,
    pub jobs: usize,
    pub notes: Vec<String>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        writeln!(
            f,
            "{:>3}  {:>7}  {:>8}  {:>10}  {:>6}  {:>21}  {:>16}  {:>7}",
            "id",
            "classes",
            "share",
            "correction",
            "epochs",
            "validation errors s/g",
            "dustbin p / true",
            "seconds"
        )?;
        for s in &self.specialists {
            let e = &s.entry;
            let check = s
                .dustbin_check
                .map(|(p, t)| format!("{p:.4} / {t:.4}"))
                .unwrap_or_else(|| "-".into());
            writeln!(
                f,
                "{:>3}  {:>7}  {:>8.4}  {:>10.3}  {:>6}  {:>21}  {:>16}  {:>7.1}",
                e.id,
                e.classes.len(),
                e.subset_share,
                e.dustbin_correction,
                e.epochs,
                format!(
                    "{} / {} of {}",
                    e.validation_errors, s.generalist_validation_errors, e.validation_rows
                ),
                check,
                s.seconds
            )?;
        }
        let (sv, gv): (usize, usize) = self.specialists.iter().fold((0, 0), |(a, b), s| {
            (
                a + s.entry.validation_errors,
                b + s.generalist_validation_errors,
            )
        });
        writeln!(
            f,
            "validation errors on the subset-enriched slices: specialists {sv}, generalist {gv}"
        )?;
        write!(
            f,
            "{} specialists in {:.1} s ({} at once); manifest: {}",
            self.specialists.len(),
            self.seconds,
            self.jobs,
            self.manifest.display()
        )
    }
}

impl Config {
    /// Checks the values that need no file (also run by `distill run` before any stage starts).
    pub fn check_values(&self) -> Result<()> {
        let bad = |m: String| Err(SpecialistsError::invalid(m));
        distill_train::check_schedule_values(
            self.epochs,
            self.batch,
            self.temperature,
            self.alpha,
            self.soft_targets.is_some(),
        )?;
        if self.jobs == 0 {
            return bad("--jobs must be at least 1".into());
        }
        if self.patience == 0 {
            return bad("--patience must be at least 1 (epochs without improvement)".into());
        }
        if self.threads == Some(0) {
            return bad("--threads must be at least 1".into());
        }
        Ok(())
    }

    /// [`Config::check_values`], then the output folder.
    fn validate(&self) -> Result<()> {
        self.check_values()?;
        let bad = |m: String| Err(SpecialistsError::invalid(m));
        if self.out.exists() && !self.out.is_dir() {
            return bad(format!(
                "--out {}: this is a file; the specialists go into a folder (e.g. --out work/specialists)",
                self.out.display()
            ));
        }
        Ok(())
    }

    fn mlp_config(&self) -> MlpConfig {
        MlpConfig {
            sizes: Vec::new(),
            input_dropout: self.input_dropout,
            hidden_dropout: self.hidden_dropout,
            max_norm: self.max_norm,
        }
    }

    /// The manifest's path.
    pub fn manifest_path(&self) -> PathBuf {
        self.out.join("manifest.yaml")
    }
}

/// The file of specialist `id` inside the output folder.
pub fn specialist_file(id: usize) -> String {
    format!("specialist-{id}.onnx")
}

/// Reads `specialists.yaml` and checks it against the generalist's class count, naming the file
/// and the subset in errors.
pub fn read_subsets(path: &Path, classes: usize) -> Result<SpecialistSet> {
    let text = std::fs::read_to_string(path).map_err(|e| distill_core::CoreError::io(path, e))?;
    let set: SpecialistSet = serde_norway::from_str(&text).map_err(|e| {
        SpecialistsError::input(
            path,
            format!("not a specialists.yaml written by distill-cluster: {e}"),
        )
    })?;
    for (k, s) in set.subsets.iter().enumerate() {
        if s.classes.is_empty() {
            return Err(SpecialistsError::input(
                path,
                format!(
                    "subsets[{k}] (id {}) has no classes; every subset needs at least one class \
                     (run distill-cluster again, or delete the empty subset)",
                    s.id
                ),
            ));
        }
        if let Some(&c) = s.classes.iter().find(|&&c| c as usize >= set.classes) {
            return Err(SpecialistsError::input(
                path,
                format!(
                    "subsets[{k}] (id {}) names class {c}, but the file has {} classes (0 to {}); \
                     run distill-cluster again on the store",
                    s.id,
                    set.classes,
                    set.classes.saturating_sub(1)
                ),
            ));
        }
    }
    if set.classes != classes {
        return Err(SpecialistsError::input(
            path,
            format!(
                "`classes` is {}, but the generalist has {classes} classes; cluster the store of \
                 the generalist's data set",
                set.classes
            ),
        ));
    }
    set.validate(path)
        .map_err(|e| SpecialistsError::invalid(e.to_string()))?;
    Ok(set)
}

/// What the specialists share: the data, the generalist, and the soft targets.
struct Shared<'a> {
    config: &'a Config,
    generalist: &'a Mlp,
    generalist_sha256: &'a str,
    train: &'a Dataset,
    labels: &'a [u32],
    val: Option<&'a Dataset>,
    soft: Option<&'a Array2<f32>>,
    /// Where each specialist's epoch lines go.
    progress: &'a distill_progress::Progress,
}

/// Trains as `config` says and writes the folder. Nothing is written when an input is bad.
pub fn run(config: &Config, progress: &distill_progress::Progress) -> Result<Report> {
    let started = Instant::now();
    config.validate()?;
    let mut notes = Vec::new();
    let generalist = onnx::load(&config.generalist)?.mlp;
    let classes = generalist.classes();
    let set = read_subsets(&config.subsets, classes)?;

    // The data, split as distill-train splits it, so the validation rows are rows the generalist
    // did not train on either.
    let all = Selection {
        classes: Default::default(),
        ..config.selection.clone()
    }
    .load()?;
    if all.width() != generalist.inputs() {
        return Err(SpecialistsError::input(
            &config.generalist,
            format!(
                "the generalist takes {} features per row, but {} has {}; give the generalist \
                 trained on this data set",
                generalist.inputs(),
                all.name,
                all.width()
            ),
        ));
    }
    if all.classes != classes {
        return Err(SpecialistsError::input(
            &config.generalist,
            format!(
                "the generalist has {classes} classes, but {} has {}; give the generalist \
                 trained on this data set",
                all.name, all.classes
            ),
        ));
    }
    let val_rows = config.validation.unwrap_or((all.len() / 10).min(5000));
    let (rest, val) = if val_rows > 0 {
        let (rest, val) = all.split_validation(val_rows)?;
        (rest, Some(val))
    } else {
        notes.push("no validation slice (--validation 0): no early stopping".into());
        (all, None)
    };
    let train = rest.filter_classes(&config.selection.classes)?;
    let labels = train.require_labels("training specialists")?.to_vec();
    if let Some(v) = &val {
        v.require_labels("the validation slice")?;
    }

    let subsets: Vec<&Subset> = match &config.only {
        None => set.subsets.iter().collect(),
        Some(ids) => {
            let mut chosen = Vec::new();
            for &id in ids {
                let s = set.subsets.iter().find(|s| s.id == id).ok_or_else(|| {
                    SpecialistsError::invalid(format!(
                        "--only {id}: {} has subsets 0 to {}",
                        config.subsets.display(),
                        set.subsets.len().saturating_sub(1)
                    ))
                })?;
                chosen.push(s);
            }
            chosen
        }
    };
    if subsets.is_empty() {
        return Err(SpecialistsError::input(
            &config.subsets,
            "there are no subsets to train specialists for; run distill-cluster with --specialists K above 0",
        ));
    }
    for s in &subsets {
        let map = SubsetMap::new(&s.classes, classes);
        let inside = labels.iter().filter(|&&l| map.contains(l)).count();
        if inside == 0 {
            return Err(SpecialistsError::input(
                &config.subsets,
                format!(
                    "subset {} (classes {:?}) has no training rows in {}; check the class filter",
                    s.id, s.classes, train.name
                ),
            ));
        }
        if inside == labels.len() {
            return Err(SpecialistsError::input(
                &config.subsets,
                format!(
                    "subset {} holds the class of every training row, so its dustbin would never \
                     be seen; a specialist needs other classes",
                    s.id
                ),
            ));
        }
    }

    let soft = match &config.soft_targets {
        None => None,
        Some(path) => {
            let store = read_store(path)?;
            if store.meta.split != config.selection.split.to_string() {
                return Err(SpecialistsError::input(
                    path,
                    format!(
                        "the store holds the '{}' split, but the specialists train on the '{}' split",
                        store.meta.split, config.selection.split
                    ),
                ));
            }
            Some(store.ensemble_for(&train, path, config.temperature, config.combine)?)
        }
    };

    // Every input is good: now the folder.
    let created = !config.out.exists();
    std::fs::create_dir_all(&config.out)
        .map_err(|e| distill_core::CoreError::io(&config.out, e))?;
    let generalist_sha256 = distill_core::sha256_file(&config.generalist)?;
    let shared = Shared {
        config,
        generalist: &generalist,
        generalist_sha256: &generalist_sha256,
        train: &train,
        labels: &labels,
        val: val.as_ref(),
        soft: soft.as_ref(),
        progress,
    };
    let written: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    let outcome = train_all(&shared, &subsets, &written).and_then(|reports| {
        let manifest = write_manifest(config, &generalist_sha256, classes, &reports)?;
        Ok((reports, manifest))
    });
    let (specialists, manifest) = match outcome {
        Ok(r) => r,
        Err(e) => {
            for p in written.lock().map(|w| w.clone()).unwrap_or_default() {
                let _ = std::fs::remove_file(p);
            }
            if created {
                let _ = std::fs::remove_dir(&config.out);
            }
            return Err(e);
        }
    };
    Ok(Report {
        out: config.out.clone(),
        manifest,
        specialists,
        seconds: started.elapsed().as_secs_f64(),
        jobs: config.jobs.min(subsets.len()),
        notes,
    })
}

/// Trains every subset, `config.jobs` at a time, each in its own thread pool; the reports in
/// subset order, or the first error.
fn train_all(
    shared: &Shared,
    subsets: &[&Subset],
    written: &Mutex<Vec<PathBuf>>,
) -> Result<Vec<SpecialistReport>> {
    let jobs = shared.config.jobs.min(subsets.len()).max(1);
    let total = shared.config.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let threads = (total / jobs).max(1);
    let next = AtomicUsize::new(0);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<SpecialistReport>>>> =
        Mutex::new((0..subsets.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                let pool = match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
                    Ok(p) => p,
                    Err(e) => {
                        let err = SpecialistsError::Threads {
                            threads,
                            message: e.to_string(),
                        };
                        if let Ok(mut r) = results.lock() {
                            let i = next.fetch_add(1, Ordering::SeqCst).min(subsets.len() - 1);
                            r[i] = Some(Err(err));
                        }
                        failed.store(true, Ordering::SeqCst);
                        return;
                    }
                };
                loop {
                    if failed.load(Ordering::SeqCst) {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= subsets.len() {
                        return;
                    }
                    let r = pool.install(|| train_one(shared, subsets[i], written));
                    if r.is_err() {
                        failed.store(true, Ordering::SeqCst);
                    }
                    if let Ok(mut all) = results.lock() {
                        all[i] = Some(r);
                    }
                }
            });
        }
    });
    let results = results
        .into_inner()
        .map_err(|_| SpecialistsError::invalid("a specialist's training thread panicked"))?;
    let mut reports = Vec::new();
    let mut first_error = None;
    for r in results.into_iter().flatten() {
        match r {
            Ok(rep) => reports.push(rep),
            Err(e) => {
                if first_error.is_none() {
                    first_error = Some(e);
                }
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    if reports.len() != subsets.len() {
        return Err(SpecialistsError::invalid(
            "a specialist's training thread stopped without a result",
        ));
    }
    Ok(reports)
}

/// The subset-enriched validation slice: every validation row of the subset and as many rows of
/// other classes, drawn once with a fixed seed. Returns the rows.
pub fn enriched_rows(labels: &[u32], map: &SubsetMap, seed: u64) -> Vec<usize> {
    let (inside, mut others): (Vec<usize>, Vec<usize>) =
        (0..labels.len()).partition(|&r| map.contains(labels[r]));
    let k = inside.len().min(others.len());
    let mut rng = Rng::derive(seed, 0x7A11);
    for i in 0..k {
        let j = i + rng.below(others.len() - i);
        others.swap(i, j);
    }
    let mut rows = inside;
    rows.extend_from_slice(&others[..k]);
    rows.sort_unstable();
    rows
}

/// Errors and loss of `mlp` on a validation slice (`None` when there is none).
fn evaluate(
    mlp: &Mlp,
    slice: Option<&(Array2<f32>, Vec<u32>)>,
) -> Result<(Option<usize>, Option<f64>)> {
    let Some((x, y)) = slice else {
        return Ok((None, None));
    };
    let logits = mlp.forward(x.view())?;
    Ok((
        Some(error_count(logits.view(), y)),
        Some(cross_entropy(logits.view(), y)),
    ))
}

/// Trains the specialist of `subset`, writes its file, and returns its report.
fn train_one(
    shared: &Shared,
    subset: &Subset,
    written: &Mutex<Vec<PathBuf>>,
) -> Result<SpecialistReport> {
    let started = Instant::now();
    let config = shared.config;
    let train = shared.train;
    let map = SubsetMap::new(&subset.classes, shared.generalist.classes());
    let seed = Rng::derive(config.seed, 0x5BEC_0000 + subset.id as u64).next_u64();
    let sampler = HalfSampler::new(shared.labels, &map, seed);
    let mapped_labels = map.map_labels(shared.labels);
    let mapped_soft = shared.soft.map(|p| map.map_probs(p.view()));

    // The validation slice, enriched like the training stream.
    let val_slice = shared.val.map(|v| {
        let vl = v.labels.as_deref().unwrap_or(&[]);
        let rows = enriched_rows(vl, &map, seed);
        let x = v.features.select(Axis(0), &rows);
        let y: Vec<u32> = rows.iter().map(|&r| map.label(vl[r])).collect();
        (x, y)
    });
    let generalist_validation_errors = match &val_slice {
        Some((x, y)) => {
            let z = shared.generalist.forward(x.view())?;
            argmax_rows(z.view())
                .iter()
                .zip(y)
                .filter(|(p, y)| map.label(**p as u32) != **y)
                .count()
        }
        None => 0,
    };

    // Start from the generalist; the dustbin row is fitted on rows of the training stream.
    let first = sampler.epoch(0);
    let fit_rows = &first[..first.len().min(init::FIT_ROWS)];
    let mut fit_x = Array2::<f32>::zeros((fit_rows.len(), train.width()));
    gather_rows(train.features.view(), fit_rows, fit_x.view_mut());
    let (mut mlp, init_how) =
        init::from_generalist(shared.generalist, &map, fit_x.view(), config.mlp_config())?;
    drop(fit_x);
    // The generalist's folded distribution is calibrated for the real class shares; the stream
    // oversamples the subset, so the start is moved to the stream's shares by the inverse of the
    // correction added after training. A specialist that never improves on its start therefore
    // ends exactly as the generalist folded onto the subset and the dustbin.
    let subset_share = sampler.subset_share();
    let sampled_share = sampler.sampled_share();
    let correction = dustbin_correction(subset_share, sampled_share);
    mlp.adjust_bias(map.dustbin(), -correction as f32)?;

    let mut opt = Optimizer::new(config.optimizer.clone(), &mlp.shapes());
    let loss = match mapped_soft {
        Some(_) => DistillLoss {
            temperature: config.temperature,
            alpha: config.alpha,
        },
        None => DistillLoss::hard(),
    };
    let (mut best_errors, mut best_loss) = evaluate(&mlp, val_slice.as_ref())?;
    let mut best = mlp.clone();
    let mut best_epochs = 0usize;
    let mut since_best = 0usize;
    let mut history = vec![EpochLog {
        epoch: 0,
        loss: f64::NAN,
        validation_errors: best_errors,
        validation_loss: best_loss,
        seconds: 0.0,
    }];
    let mut trainer = BatchTrainer::new(
        train.features.view(),
        mapped_soft.as_ref().map(|p| p.view()),
        Some(&mapped_labels),
        seed,
    )
    .with_jitter(train.image, config.jitter);
    for epoch in 0..config.epochs {
        let epoch_started = Instant::now();
        let rows = if epoch == 0 {
            first.clone()
        } else {
            sampler.epoch(epoch)
        };
        let (mut sum, mut seen) = (0.0f64, 0usize);
        for (b, chunk) in rows.chunks(config.batch).enumerate() {
            let m = chunk.len();
            let parts = trainer
                .step(&mut mlp, &loss, &mut opt, epoch, b, chunk)
                .map_err(|e| match e {
                    e @ distill_train::TrainError::NonFiniteLoss { .. } => {
                        SpecialistsError::invalid(format!("specialist {}: {e}", subset.id))
                    }
                    e => e.into(),
                })?;
            sum += parts.total() * m as f64;
            seen += m;
        }
        let (errors, vloss) = evaluate(&mlp, val_slice.as_ref())?;
        let seconds = epoch_started.elapsed().as_secs_f64();
        shared.progress.say(format_args!(
            "specialist {} epoch {}/{}: loss {:.4}{}  {:.1} s",
            subset.id,
            epoch + 1,
            config.epochs,
            sum / seen.max(1) as f64,
            match (errors, &val_slice) {
                (Some(e), Some((x, _))) => format!(
                    ", validation errors {e} of {} (generalist {generalist_validation_errors})",
                    x.nrows()
                ),
                _ => String::new(),
            },
            seconds
        ));
        history.push(EpochLog {
            epoch: epoch + 1,
            loss: sum / seen.max(1) as f64,
            validation_errors: errors,
            validation_loss: vloss,
            seconds,
        });
        // Cross-entropy, a proper scoring rule, picks the epoch: the dustbin correction assumes
        // calibrated probabilities, which fewest errors alone does not reward.
        let better = match (vloss, best_loss) {
            (Some(l), Some(b)) => l < b,
            _ => true,
        };
        if better {
            best = mlp.clone();
            best_errors = errors;
            best_loss = vloss;
            best_epochs = epoch + 1;
            since_best = 0;
        } else {
            since_best += 1;
            if since_best >= config.patience {
                break;
            }
        }
    }

    // Calibrate for the real class frequencies.
    let mut mlp = best;
    mlp.adjust_bias(map.dustbin(), correction as f32)?;
    let dustbin_check = match shared.val {
        Some(v) => {
            let vl = v.labels.as_deref().unwrap_or(&[]);
            let p = softmax(mlp.forward(v.features.view())?.view(), 1.0);
            let mean = p
                .column(map.dustbin())
                .iter()
                .map(|&x| x as f64)
                .sum::<f64>()
                / v.len().max(1) as f64;
            let share =
                vl.iter().filter(|&&l| !map.contains(l)).count() as f64 / vl.len().max(1) as f64;
            Some((mean, share))
        }
        None => None,
    };

    let file = specialist_file(subset.id);
    let path = config.out.join(&file);
    let meta = SpecialistMeta {
        id: subset.id,
        classes: subset.classes.clone(),
        dustbin: map.dustbin(),
        dustbin_correction: correction,
        subset_share,
        sampled_share,
        generalist: FileRef {
            path: config.generalist.display().to_string(),
            sha256: shared.generalist_sha256.to_string(),
        },
        dustbin_init: init_how,
    };
    // The settings that shape the weights; where and how many at once do not, so a specialist
    // file is the same whatever --out, --jobs, --threads or --only were.
    let recorded = Config {
        out: PathBuf::new(),
        jobs: 1,
        threads: None,
        only: None,
        ..config.clone()
    };
    let metadata = vec![
        ("distill.specialist".to_string(), json(&meta)),
        ("distill.training".to_string(), json(&recorded)),
    ];
    if let Ok(mut w) = written.lock() {
        w.push(path.clone());
    }
    onnx::save(&mlp, &path, &metadata)?;
    let sample = match &val_slice {
        Some((x, _)) => x.slice(ndarray::s![..x.nrows().min(256), ..]).to_owned(),
        None => train
            .features
            .slice(ndarray::s![..train.len().min(256), ..])
            .to_owned(),
    };
    let onnx_check = distill_train::verify_with_onnx_runtime(&path, &mlp, sample.view())?;
    let sha256 = distill_core::sha256_file(&path)?;
    let (validation_errors, validation_rows) = match (&val_slice, best_errors) {
        (Some((x, _)), Some(e)) => (e, x.nrows()),
        _ => (0, 0),
    };
    Ok(SpecialistReport {
        entry: SpecialistEntry {
            id: subset.id,
            path: file,
            sha256,
            classes: subset.classes.clone(),
            subset_share,
            sampled_share,
            dustbin_correction: correction,
            epochs: best_epochs,
            validation_errors,
            validation_rows,
        },
        generalist_validation_errors,
        init: init_how,
        dustbin_check,
        rows_per_epoch: sampler.epoch_len(),
        history,
        seconds: started.elapsed().as_secs_f64(),
        onnx_check,
    })
}

/// What a specialist's ONNX records about itself (metadata key `distill.specialist`).
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct SpecialistMeta {
    pub id: usize,
    /// Output `k < dustbin` is class `classes[k]` of the generalist.
    pub classes: Vec<u32>,
    /// The dustbin's output (`classes.len()`).
    pub dustbin: usize,
    /// Added to the dustbin's bias after training (already in the saved weights).
    pub dustbin_correction: f64,
    pub subset_share: f64,
    pub sampled_share: f64,
    pub generalist: FileRef,
    #[serde(skip_deserializing, default = "default_init")]
    pub dustbin_init: DustbinInit,
}

fn default_init() -> DustbinInit {
    DustbinInit::Mean
}

fn json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// `target` relative to the folder `base` (both as given, made absolute when they exist), for the
/// manifest; the absolute path when there is no relative one.
fn relative_to(target: &Path, base: &Path) -> String {
    let (Ok(t), Ok(b)) = (target.canonicalize(), base.canonicalize()) else {
        return target.display().to_string();
    };
    let tc: Vec<_> = t.components().collect();
    let bc: Vec<_> = b.components().collect();
    let common = tc.iter().zip(&bc).take_while(|(a, b)| a == b).count();
    if common == 0 {
        return t.display().to_string();
    }
    let mut rel = PathBuf::new();
    for _ in common..bc.len() {
        rel.push("..");
    }
    for c in &tc[common..] {
        rel.push(c.as_os_str());
    }
    rel.display().to_string()
}

/// Writes the manifest last. With `--only`, the entries of other specialists already in the
/// folder's manifest are kept when it was made from the same generalist and subsets.
fn write_manifest(
    config: &Config,
    generalist_sha256: &str,
    classes: usize,
    reports: &[SpecialistReport],
) -> Result<PathBuf> {
    let path = config.manifest_path();
    let subsets = relative_to(&config.subsets, &config.out);
    let store = config
        .soft_targets
        .as_ref()
        .map(|s| relative_to(s, &config.out));
    let mut entries: Vec<SpecialistEntry> = reports.iter().map(|r| r.entry.clone()).collect();
    if config.only.is_some()
        && let Ok(old) = Manifest::load(&path)
        && old.generalist.sha256 == generalist_sha256
        && old.subsets == subsets
        && old.store == store
    {
        for e in old.specialists {
            let exists = config.out.join(&e.path).is_file();
            if exists && !entries.iter().any(|n| n.id == e.id) {
                entries.push(e);
            }
        }
    }
    entries.sort_by_key(|e| e.id);
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        tool_version: distill_core::TOOL_VERSION.into(),
        generalist: FileRef {
            path: relative_to(&config.generalist, &config.out),
            sha256: generalist_sha256.to_string(),
        },
        classes,
        subsets,
        store,
        specialists: entries,
    };
    manifest.validate(&path)?;
    manifest.save(&path)?;
    if config.only.is_none() {
        remove_stale(&config.out, &manifest);
    }
    Ok(path)
}

/// Removes `specialist-<id>.onnx` files of an earlier run that the new manifest does not list (a
/// run with fewer subsets), so the folder holds exactly what the manifest names.
fn remove_stale(out: &Path, manifest: &Manifest) {
    let Ok(entries) = std::fs::read_dir(out) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let id = name
            .strip_prefix("specialist-")
            .and_then(|r| r.strip_suffix(".onnx"))
            .and_then(|id| id.parse::<usize>().ok());
        if let Some(id) = id
            && !manifest.specialists.iter().any(|e| e.id == id)
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
