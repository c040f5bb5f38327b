//! Training of teachers, baseline students and distilled students (docs/method.md §3–4): an MLP trained
//! on hard labels, or on the soft targets of a stored teacher ensemble at temperature `T`, saved as
//! ONNX with its configuration in the metadata, with a per-epoch record, resumable checkpoints and
//! per-class bias adjustment.

pub mod bias;
pub mod checkpoint;
pub mod cli;
mod error;
pub mod record;
pub mod steps;

pub use bias::BiasChoice;
pub use distill_core::bias::{BiasAdjust, ClassBias};
pub use error::{Result, TrainError};

use checkpoint::{EpochSums, Progress};
use distill_core::math::{Combine, argmax_rows, ensemble_probs, error_count};
use distill_core::rng::Rng;
use distill_core::{interrupt, sha256_file};
use distill_data::{Dataset, Selection, Split};
use distill_nn::loss::{cross_entropy, weighted};
use distill_nn::{DistillLoss, Init, Mlp, MlpConfig, Optimizer, OptimizerConfig, onnx};
use distill_store::{SoftTargets, read_store};
use ndarray::{Array2, ArrayView2, Axis};
use record::EpochRecord;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;
use steps::BatchTrainer;

/// Everything a training run needs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Config {
    /// The transfer set (or training set): data, split, limit and class filter.
    pub selection: Selection,
    /// Rows of the split held out for validation, before class filters (`None`: 10% of the rows, at
    /// most 5,000; `Some(0)`: none).
    pub validation: Option<usize>,
    /// Keep only this seeded random fraction of the transfer set.
    pub fraction: Option<f32>,
    /// Soft-target store: train by distillation from it; `None` trains on hard labels.
    pub soft_targets: Option<PathBuf>,
    pub temperature: f32,
    /// Weight of the soft term (`1 - alpha` weighs the hard labels).
    pub alpha: f32,
    pub combine: Combine,
    pub hidden: Vec<usize>,
    /// How the weights are initialised.
    #[serde(default)]
    pub init: Init,
    pub input_dropout: f32,
    pub hidden_dropout: f32,
    pub max_norm: Option<f32>,
    /// Random translation of training images by up to this many pixels (0: off).
    pub jitter: usize,
    pub optimizer: OptimizerConfig,
    pub epochs: usize,
    pub batch: usize,
    pub seed: u64,
    pub threads: Option<usize>,
    pub bias_adjust: BiasChoice,
    /// The model file (`.onnx`); the metrics file, checkpoint and best model sit beside it.
    pub out: PathBuf,
    /// The per-epoch record (default: `<out stem>.metrics.csv`).
    pub metrics: Option<PathBuf>,
    /// Continue from the checkpoint beside `out` when there is one.
    pub resume: bool,
    /// Split to report errors on after training (`None`: no such report).
    pub test_split: Option<Split>,
    /// Stop, as an interrupt would, after this many optimiser steps in this invocation.
    pub max_steps: Option<u64>,
}

/// What a training run did.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub mode: String,
    pub model: Option<PathBuf>,
    pub best_model: Option<PathBuf>,
    pub metrics: PathBuf,
    pub checkpoint: PathBuf,
    pub parameters: usize,
    pub rows: usize,
    pub epochs: usize,
    pub seconds: f64,
    pub samples_per_s: f64,
    pub last: Option<EpochRecord>,
    pub bias: Vec<ClassBias>,
    /// Validation errors of the saved model (after bias adjustment), and the slice's size.
    pub val_errors: Option<(usize, usize)>,
    /// Errors on `test_split` before bias adjustment, after it, and the split's size.
    pub test_errors: Option<TestErrors>,
    pub interrupted: bool,
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TestErrors {
    pub split: String,
    pub rows: usize,
    pub errors: usize,
    pub errors_before_bias: usize,
    /// Errors per true class (after bias adjustment).
    pub per_class: Vec<usize>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        if self.interrupted {
            writeln!(
                f,
                "stopped early; checkpoint saved to {}; run again with --resume to continue",
                self.checkpoint.display()
            )?;
        }
        if let Some(r) = &self.last {
            let val = r
                .val_error
                .map(|v| format!(", validation error {:.2}%", 100.0 * v))
                .unwrap_or_default();
            writeln!(
                f,
                "last epoch {}: loss {:.4} (soft T²·KL {:.4}, hard CE {:.4}), train error {:.2}%{val}",
                r.epoch,
                r.loss,
                r.soft_loss,
                r.hard_loss,
                100.0 * r.train_error
            )?;
        }
        for b in &self.bias {
            writeln!(f, "bias of class {} adjusted by {:+.2}", b.class, b.delta)?;
        }
        if let Some((e, n)) = self.val_errors {
            writeln!(f, "validation errors: {e} of {n}")?;
        }
        if let Some(t) = &self.test_errors {
            if self.bias.is_empty() {
                writeln!(f, "{} errors: {} of {}", t.split, t.errors, t.rows)?;
            } else {
                writeln!(
                    f,
                    "{} errors: {} of {} ({} before bias adjustment)",
                    t.split, t.errors, t.rows, t.errors_before_bias
                )?;
            }
        }
        if let Some(m) = &self.model {
            writeln!(f, "model: {} ({} parameters)", m.display(), self.parameters)?;
        }
        write!(
            f,
            "{}: {} rows x {} epochs in {:.1} s ({:.0} samples/s); metrics: {}",
            self.mode,
            self.rows,
            self.epochs,
            self.seconds,
            self.samples_per_s,
            self.metrics.display()
        )
    }
}

/// Files written beside the model.
pub struct OutputPaths {
    pub model: PathBuf,
    pub metrics: PathBuf,
    pub checkpoint: PathBuf,
    pub best: PathBuf,
}

impl Config {
    pub fn paths(&self) -> OutputPaths {
        let stem = self.out.with_extension("");
        let with = |suffix: &str| PathBuf::from(format!("{}{suffix}", stem.display()));
        OutputPaths {
            model: self.out.clone(),
            metrics: self.metrics.clone().unwrap_or_else(|| with(".metrics.csv")),
            checkpoint: with(".ckpt"),
            best: with(".best.onnx"),
        }
    }

    fn mlp_config(&self, inputs: usize, classes: usize) -> MlpConfig {
        let mut sizes = vec![inputs];
        sizes.extend(&self.hidden);
        sizes.push(classes);
        MlpConfig {
            sizes,
            input_dropout: self.input_dropout,
            hidden_dropout: self.hidden_dropout,
            max_norm: self.max_norm,
        }
    }

    /// A digest of the settings a resumed run must share with the run that made the checkpoint.
    fn fingerprint(&self) -> String {
        let mut c = self.clone();
        c.epochs = 0;
        c.out = PathBuf::new();
        c.metrics = None;
        c.resume = false;
        c.threads = None;
        c.test_split = None;
        c.max_steps = None;
        c.bias_adjust = BiasChoice::None;
        let json = serde_json::to_vec(&c).unwrap_or_default();
        distill_core::sha256_hex(&json)[..16].to_string()
    }

    /// Checks the values that need no file (also run by `distill run` before any stage starts).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(TrainError::invalid(m));
        check_schedule_values(
            self.epochs,
            self.batch,
            self.temperature,
            self.alpha,
            self.soft_targets.is_some(),
        )?;
        if let Some(f) = self.fraction
            && !(f > 0.0 && f <= 1.0)
        {
            return bad(format!("--fraction {f} must be in (0, 1]"));
        }
        if matches!(self.bias_adjust, BiasChoice::Auto) {
            if self.selection.classes.is_empty() {
                return bad(
                    "--bias-adjust auto fits the bias of classes the transfer set omits; give \
                     --exclude-classes or --only-classes, or fixed shifts such as 3=+3.5"
                        .into(),
                );
            }
            if self.validation == Some(0) {
                return bad(
                    "--bias-adjust auto needs a validation slice (--validation N above 0)".into(),
                );
            }
        }
        if self.hidden.contains(&0) {
            return bad("--hidden widths must be above zero, e.g. --hidden 800,800".into());
        }
        if self.out.extension().and_then(|e| e.to_str()) != Some("onnx") {
            return bad(format!(
                "--out {}: the model file must end in .onnx",
                self.out.display()
            ));
        }
        Ok(())
    }
}

/// Checks that the folder of `path` exists and takes new files, before any work is done.
fn check_writable(flag: &str, path: &Path, inputs: &[(&str, &Path)]) -> Result<()> {
    distill_core::atomic::check_output(flag, path, inputs)?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let probe = dir.join(format!(".distill-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| {
        TrainError::invalid(format!(
            "{}: cannot write in the output folder {} ({e})",
            path.display(),
            dir.display()
        ))
    })?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// The transfer set and the validation slice.
struct Data {
    train: Dataset,
    val: Option<Dataset>,
}

/// Step 1: the rows. Loads the split, holds out the validation slice (before the class filters),
/// applies the class filters and `--fraction`.
fn load_data(config: &Config, notes: &mut Vec<String>) -> Result<Data> {
    let all = Selection {
        classes: Default::default(),
        ..config.selection.clone()
    }
    .load()?;
    let val_rows = config.validation.unwrap_or((all.len() / 10).min(5000));
    let (rest, val) = if val_rows > 0 {
        let (rest, val) = all.split_validation(val_rows)?;
        (rest, Some(val))
    } else {
        (all, None)
    };
    let mut train = rest.filter_classes(&config.selection.classes)?;
    if let Some(f) = config.fraction {
        let k = ((train.len() as f64 * f as f64).round() as usize).max(1);
        let mut rows = Rng::derive(config.seed, 0xF4AC).permutation(train.len())[..k].to_vec();
        rows.sort_unstable();
        train = train.select(&rows);
        notes.push(format!("transfer set: {k} rows ({:.1}%)", 100.0 * f));
    }
    if config.alpha < 1.0 {
        train.require_labels("training with hard labels (alpha below 1)")?;
    }
    Ok(Data { train, val })
}

/// Step 2: the targets. The ensemble's tempered probabilities for each row of `train` (aligned
/// by row id), and the store they come from; `None` when training on hard labels.
fn soft_targets(
    config: &Config,
    train: &Dataset,
) -> Result<(Option<Array2<f32>>, Option<SoftTargets>)> {
    let Some(path) = &config.soft_targets else {
        return Ok((None, None));
    };
    let store = read_store(path)?;
    if store.meta.split != config.selection.split.to_string() {
        return Err(TrainError::invalid(format!(
            "{}: the store holds the '{}' split, but training reads the '{}' split",
            path.display(),
            store.meta.split,
            config.selection.split
        )));
    }
    let rows = store.align(train, path)?;
    let members: Vec<Array2<f32>> = store
        .logits
        .iter()
        .map(|l| l.select(Axis(0), &rows))
        .collect();
    let views: Vec<ArrayView2<f32>> = members.iter().map(|m| m.view()).collect();
    let probs = ensemble_probs(&views, config.temperature, config.combine)?;
    Ok((Some(probs), Some(store)))
}

/// `--jitter` needs images; with soft targets it gets a note on what the targets are.
fn check_jitter(
    config: &Config,
    train: &Dataset,
    distilling: bool,
    notes: &mut Vec<String>,
) -> Result<()> {
    if config.jitter > 0 && distilling {
        notes.push(format!(
            "--jitter {} shifts each image, but its soft target is the teachers' for the unshifted \
             image: right for shifts the teachers are (nearly) invariant to, such as 1-2 pixels on \
             MNIST; for larger shifts, score the shifted images with distill-teach instead",
            config.jitter
        ));
    }
    if config.jitter > 0 && train.image.is_none() {
        return Err(TrainError::invalid(format!(
            "--jitter needs images, and the rows of {} are not images",
            train.name
        )));
    }
    Ok(())
}

/// The value checks every trainer of an MLP shares (distill-train and distill-specialists):
/// epochs and batch size at least 1, a positive temperature, alpha in [0, 1], and soft targets
/// whenever alpha weighs them.
pub fn check_schedule_values(
    epochs: usize,
    batch: usize,
    temperature: f32,
    alpha: f32,
    has_soft_targets: bool,
) -> Result<()> {
    let bad = |m: String| Err(TrainError::invalid(m));
    if epochs == 0 {
        return bad("--epochs must be at least 1".into());
    }
    if batch == 0 {
        return bad("--batch must be at least 1".into());
    }
    if !(temperature.is_finite() && temperature > 0.0) {
        return bad(format!(
            "--temperature {temperature} must be a positive number"
        ));
    }
    if !(0.0..=1.0).contains(&alpha) {
        return bad(format!("--alpha {alpha} must be between 0 and 1"));
    }
    if !has_soft_targets && alpha > 0.0 {
        return bad("--alpha above 0 weighs soft targets: give --soft-targets STORE, or leave --alpha out to train on hard labels".into());
    }
    Ok(())
}

/// Trains as `config` says. Returns early (with `interrupted`) on Ctrl-C or `max_steps`, leaving
/// a checkpoint to resume from and no model file.
///
/// Training runs on its own pool of `config.threads` workers (default: all cores) that flush
/// subnormal floats to zero, which keeps epochs equally fast (see [`distill_nn::threads`]).
pub fn run(config: &Config, reporter: &distill_progress::Progress) -> Result<Report> {
    let threads = config.threads.filter(|&n| n > 0);
    distill_nn::threads::training_pool(threads)
        .map_err(|e| TrainError::Threads {
            threads: threads.unwrap_or(0),
            message: e.to_string(),
        })?
        .install(|| train(config, reporter))
}

fn train(config: &Config, reporter: &distill_progress::Progress) -> Result<Report> {
    config.validate()?;
    let paths = config.paths();
    check_outputs(config, &paths)?;
    let started = Instant::now();
    let mut notes = Vec::new();
    let Data { train, val } = load_data(config, &mut notes)?;
    let (soft, store) = soft_targets(config, &train)?;
    check_jitter(config, &train, soft.is_some(), &mut notes)?;
    let provenance = provenance(config, store.as_ref())?;
    let State {
        mut mlp,
        mut opt,
        mut progress,
    } = start(config, &train, &paths, &mut notes)?;
    let loss = match &soft {
        Some(_) => DistillLoss {
            temperature: config.temperature,
            alpha: config.alpha,
        },
        None => DistillLoss::hard(),
    };
    let outputs = Outputs {
        config,
        paths: &paths,
        provenance: &provenance,
    };
    let mut trainer = BatchTrainer::new(
        train.features.view(),
        soft.as_ref().map(|s| s.view()),
        train.labels.as_deref(),
        config.seed,
    )
    .with_jitter(train.image, config.jitter);
    let trained = epochs(
        &outputs,
        &mut trainer,
        &loss,
        train.len(),
        val.as_ref(),
        (&mut mlp, &mut opt, &mut progress),
        reporter,
    )?;

    let mode = match &config.soft_targets {
        Some(p) => format!(
            "distilled from {} at T={} (alpha {}, {})",
            p.display(),
            config.temperature,
            config.alpha,
            config.combine
        ),
        None => "trained on hard labels".to_string(),
    };
    let mut report = Report {
        mode,
        model: None,
        best_model: trained.best_saved.then(|| paths.best.clone()),
        metrics: paths.metrics.clone(),
        checkpoint: paths.checkpoint.clone(),
        parameters: mlp.parameters(),
        rows: train.len(),
        epochs: progress.history.len(),
        seconds: started.elapsed().as_secs_f64(),
        samples_per_s: trained.rows as f64 / trained.seconds.max(1e-9),
        last: progress.history.last().cloned(),
        bias: Vec::new(),
        val_errors: None,
        test_errors: None,
        interrupted: trained.interrupted,
        notes,
    };
    if trained.interrupted {
        // The interrupt flag stays set: other stages running in this process stop too.
        checkpoint::save(&paths.checkpoint, &mlp, &opt, &progress)?;
        record::write_csv(&paths.metrics, &progress.history)?;
        return Ok(report);
    }
    finish(
        &outputs,
        mlp,
        &train,
        val.as_ref(),
        trained.best_saved,
        &mut report,
    )?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Step 0: every output's folder exists and takes files, and no output is an input.
fn check_outputs(config: &Config, paths: &OutputPaths) -> Result<()> {
    let mut inputs: Vec<(&str, &Path)> = vec![("--data", Path::new(&config.selection.data))];
    if let Some(store) = &config.soft_targets {
        inputs.push(("--soft-targets", store.as_path()));
    }
    for (flag, path) in [
        ("--out", &paths.model),
        ("--metrics", &paths.metrics),
        ("--out (its checkpoint)", &paths.checkpoint),
        ("--out (its best model)", &paths.best),
    ] {
        check_writable(flag, path, &inputs)?;
    }
    Ok(())
}

/// The network, its optimiser, and where training stands.
struct State {
    mlp: Mlp,
    opt: Optimizer,
    progress: Progress,
}

/// Step 3: a freshly initialised network and optimiser, or, with `--resume` and a checkpoint
/// made with the same settings, the checkpoint's.
fn start(
    config: &Config,
    train: &Dataset,
    paths: &OutputPaths,
    notes: &mut Vec<String>,
) -> Result<State> {
    let mlp_config = config.mlp_config(train.width(), train.classes);
    let mut mlp = Mlp::with_init(mlp_config, config.seed, config.init)?;
    let mut opt = Optimizer::new(config.optimizer.clone(), &mlp.shapes());
    let fingerprint = config.fingerprint();
    let mut progress = Progress {
        fingerprint: fingerprint.clone(),
        epoch: 0,
        batch: 0,
        optimizer_steps: 0,
        partial: EpochSums::default(),
        history: Vec::new(),
        best_val_errors: None,
    };
    if config.resume {
        if paths.checkpoint.is_file() {
            progress = checkpoint::load(&paths.checkpoint, &mut mlp, &mut opt)?;
            if progress.fingerprint != fingerprint {
                return Err(TrainError::Checkpoint {
                    path: paths.checkpoint.clone(),
                    message: "the checkpoint was made with other settings (data, model, loss or optimiser); \
                              resume with the same flags, or delete the checkpoint to start over"
                        .into(),
                });
            }
            notes.push(format!(
                "resumed from {} at epoch {}, batch {}",
                paths.checkpoint.display(),
                progress.epoch + 1,
                progress.batch
            ));
        } else {
            notes.push(format!(
                "no checkpoint at {}; starting from scratch",
                paths.checkpoint.display()
            ));
        }
    }
    Ok(State { mlp, opt, progress })
}

/// Where and with which metadata models are saved.
struct Outputs<'a> {
    config: &'a Config,
    paths: &'a OutputPaths,
    provenance: &'a [(String, String)],
}

/// What the epoch loop did.
struct Trained {
    /// Stopped by Ctrl-C or `--max-steps` before the last epoch ended.
    interrupted: bool,
    /// Rows trained on, and the seconds it took, over the epochs of this invocation.
    rows: usize,
    seconds: f64,
    /// Whether a best model (lowest validation errors) was saved.
    best_saved: bool,
}

/// Step 4: the epoch loop, from where `progress` stands to `config.epochs`. After each epoch:
/// the validation errors, the console line, the best model, the checkpoint and the metrics file.
fn epochs(
    out: &Outputs,
    trainer: &mut BatchTrainer,
    loss: &DistillLoss,
    n: usize,
    val: Option<&Dataset>,
    (mlp, opt, progress): (&mut Mlp, &mut Optimizer, &mut Progress),
    reporter: &distill_progress::Progress,
) -> Result<Trained> {
    let config = out.config;
    let labelled = trainer.has_labels();
    let batches = n.div_ceil(config.batch);
    let mut steps_this_run = 0u64;
    let mut trained = Trained {
        interrupted: false,
        rows: 0,
        seconds: 0.0,
        best_saved: false,
    };

    'epochs: while progress.epoch < config.epochs {
        let epoch = progress.epoch;
        let perm = Rng::derive(config.seed, 0xE90C_0000 + epoch as u64).permutation(n);
        let bar = reporter.task(
            format!("epoch {}/{}", epoch + 1, config.epochs),
            n as u64,
            "rows",
        );
        bar.set_position((progress.batch * config.batch).min(n) as u64);
        let epoch_started = Instant::now();
        let already = progress.partial.seconds;
        while progress.batch < batches {
            if interrupt::requested() || config.max_steps.is_some_and(|m| steps_this_run >= m) {
                // The checkpoint keeps the epoch's time so far, so that a resumed epoch reports
                // its seconds and samples/s over the whole epoch.
                progress.partial.seconds = already + epoch_started.elapsed().as_secs_f64();
                trained.interrupted = true;
                break 'epochs;
            }
            let b = progress.batch;
            let rows = &perm[b * config.batch..((b + 1) * config.batch).min(n)];
            let m = rows.len();
            let parts = trainer.step(mlp, loss, opt, epoch, b, rows)?;
            let s = &mut progress.partial;
            s.rows += m;
            s.soft += parts.soft * m as f64;
            s.hard += parts.hard * m as f64;
            s.errors += trainer.last_errors();
            progress.batch += 1;
            progress.optimizer_steps = opt.step;
            steps_this_run += 1;
            bar.inc(m as u64);
            if b.is_multiple_of(20) {
                let secs = already + epoch_started.elapsed().as_secs_f64();
                bar.set_message(format!(
                    "loss {:.4}  {:.0} samples/s",
                    weighted(loss.alpha as f64, s.soft, s.hard) / s.rows as f64,
                    s.rows as f64 / secs.max(1e-9)
                ));
            }
        }
        bar.finish();
        let seconds = already + epoch_started.elapsed().as_secs_f64();
        trained.rows += progress.partial.rows;
        trained.seconds += seconds;
        let (rec, val_errors) = end_epoch(mlp, config, loss, progress, val, seconds, labelled)?;
        reporter.say(format_args!(
            "epoch {}/{}  loss {:.4} (soft T²·KL {:.4}, hard CE {:.4})  train error {:.2}%{}  {:.1} s  {:.0} samples/s",
            rec.epoch,
            config.epochs,
            rec.loss,
            rec.soft_loss,
            rec.hard_loss,
            100.0 * rec.train_error,
            rec.val_error
                .map(|v| format!("  validation error {:.2}%", 100.0 * v))
                .unwrap_or_default(),
            seconds,
            rec.samples_per_s
        ));
        progress.history.push(rec);
        progress.epoch += 1;
        progress.batch = 0;
        progress.partial = EpochSums::default();
        if let Some(e) = val_errors
            && progress.best_val_errors.is_none_or(|b| e < b)
        {
            progress.best_val_errors = Some(e);
            save_model(
                mlp,
                &out.paths.best,
                config,
                out.provenance,
                &[],
                Snapshot::Best,
            )?;
            trained.best_saved = true;
        }
        checkpoint::save(&out.paths.checkpoint, mlp, opt, progress)?;
        record::write_csv(&out.paths.metrics, &progress.history)?;
    }
    Ok(trained)
}

/// The record of the epoch that just ended (its sums are `progress.partial`), with the validation
/// slice's errors when it has labels.
fn end_epoch(
    mlp: &Mlp,
    config: &Config,
    loss: &DistillLoss,
    progress: &Progress,
    val: Option<&Dataset>,
    seconds: f64,
    labelled: bool,
) -> Result<(EpochRecord, Option<usize>)> {
    let s = progress.partial;
    let (val_error, val_loss, val_errors) = match val.and_then(|v| Some((v, v.labels.as_ref()?))) {
        Some((v, vl)) => {
            let logits = mlp.forward(v.features.view())?;
            let e = error_count(logits.view(), vl);
            (
                Some(e as f64 / v.len() as f64),
                Some(cross_entropy(logits.view(), vl)),
                Some(e),
            )
        }
        None => (None, None, None),
    };
    let rec = EpochRecord {
        epoch: progress.epoch + 1,
        learning_rate: config.optimizer.learning_rate(progress.epoch),
        soft_loss: s.soft / s.rows.max(1) as f64,
        hard_loss: s.hard / s.rows.max(1) as f64,
        loss: weighted(loss.alpha as f64, s.soft, s.hard) / s.rows.max(1) as f64,
        train_error: if labelled {
            s.errors as f64 / s.rows.max(1) as f64
        } else {
            f64::NAN
        },
        val_error,
        val_loss,
        seconds,
        samples_per_s: s.rows as f64 / seconds.max(1e-9),
    };
    Ok((rec, val_errors))
}

/// Step 5: after the last epoch, the bias adjustment (of the final and the best model), the
/// validation and test errors, the model file and its check with ONNX Runtime.
fn finish(
    out: &Outputs,
    mut mlp: Mlp,
    train: &Dataset,
    val: Option<&Dataset>,
    best_saved: bool,
    report: &mut Report,
) -> Result<()> {
    let (config, paths) = (out.config, out.paths);
    let before = mlp.clone();
    report.bias = adjust_bias(&mut mlp, config, val)?;
    if best_saved && !matches!(config.bias_adjust, BiasChoice::None) {
        // The best checkpoint gets the same adjustment as the final model (refitted on its own
        // validation logits for `auto`), so that either file is used the same way.
        let mut best = onnx::load(&paths.best)?.mlp;
        let shifts = adjust_bias(&mut best, config, val)?;
        save_model(
            &best,
            &paths.best,
            config,
            out.provenance,
            &shifts,
            Snapshot::Best,
        )?;
    }
    if let Some((v, vl)) = val.and_then(|v| Some((v, v.labels.as_ref()?))) {
        let logits = mlp.forward(v.features.view())?;
        report.val_errors = Some((error_count(logits.view(), vl), v.len()));
    }
    if let Some(split) = config.test_split {
        report.test_errors = test_errors(config, split, &mlp, &before)?;
    }
    save_model(
        &mlp,
        &paths.model,
        config,
        out.provenance,
        &report.bias,
        Snapshot::Last,
    )?;
    let sample = val.unwrap_or(train).features.view();
    let sample = sample.slice(ndarray::s![..sample.nrows().min(256), ..]);
    let note = verify_with_onnx_runtime(&paths.model, &mlp, sample)?;
    report.notes.push(note);
    report.model = Some(paths.model.clone());
    Ok(())
}

/// Errors of the trained network on `split` (all its rows, no class filter), after the bias
/// adjustment (`mlp`) and before it (`before`); `None` when the split has no labels.
fn test_errors(
    config: &Config,
    split: Split,
    mlp: &Mlp,
    before: &Mlp,
) -> Result<Option<TestErrors>> {
    let test = Selection {
        split,
        limit: None,
        classes: Default::default(),
        ..config.selection.clone()
    }
    .load()?;
    let Some(tl) = &test.labels else {
        return Ok(None);
    };
    let after = mlp.forward(test.features.view())?;
    let pred = argmax_rows(after.view());
    let mut per_class = vec![0usize; mlp.classes()];
    for (p, &y) in pred.iter().zip(tl) {
        if *p != y as usize {
            per_class[y as usize] += 1;
        }
    }
    let before_logits = before.forward(test.features.view())?;
    Ok(Some(TestErrors {
        split: split.to_string(),
        rows: test.len(),
        errors: per_class.iter().sum(),
        errors_before_bias: error_count(before_logits.view(), tl),
        per_class,
    }))
}

/// Applies `--bias-adjust` to the network's output biases; returns the shifts applied.
fn adjust_bias(mlp: &mut Mlp, config: &Config, val: Option<&Dataset>) -> Result<Vec<ClassBias>> {
    let classes = mlp.classes();
    match &config.bias_adjust {
        BiasChoice::None => Ok(Vec::new()),
        BiasChoice::Fixed(shifts) => {
            for s in &shifts.0 {
                mlp.adjust_bias(s.class as usize, s.delta)?;
            }
            Ok(shifts.0.clone())
        }
        BiasChoice::Auto => {
            let filter = &config.selection.classes;
            let omitted: Vec<u32> = (0..classes as u32).filter(|&c| !filter.keeps(c)).collect();
            if omitted.is_empty() {
                return Err(TrainError::invalid(
                    "--bias-adjust auto fits the bias of classes the transfer set omits; give \
                     --exclude-classes or --only-classes, or fixed shifts such as 3=+3.5",
                ));
            }
            let val = val.ok_or_else(|| {
                TrainError::invalid(
                    "--bias-adjust auto needs a validation slice (--validation N above 0)",
                )
            })?;
            let vl = val.require_labels("--bias-adjust auto")?;
            let logits = mlp.forward(val.features.view())?;
            let (delta, _) = distill_core::bias::fit_shift(logits.view(), vl, &omitted);
            let shifts: Vec<ClassBias> = omitted
                .iter()
                .map(|&class| ClassBias { class, delta })
                .collect();
            for s in &shifts {
                mlp.adjust_bias(s.class as usize, s.delta)?;
            }
            Ok(shifts)
        }
    }
}

/// Which of a run's two model files is saved (its metadata `distill.checkpoint`).
#[derive(Clone, Copy, Debug)]
enum Snapshot {
    /// The network of the epoch with the fewest validation errors so far.
    Best,
    /// The network after the last epoch.
    Last,
}

impl Snapshot {
    fn name(self) -> &'static str {
        match self {
            Snapshot::Best => "best",
            Snapshot::Last => "last",
        }
    }
}

fn save_model(
    mlp: &Mlp,
    path: &Path,
    config: &Config,
    provenance: &[(String, String)],
    bias: &[ClassBias],
    snapshot: Snapshot,
) -> Result<()> {
    // How the run was carried out (resumed or not, threads, step limits) is not part of what
    // the weights are: it stays out of the file, so a resumed run's model has the same bytes,
    // and so the same SHA-256 in every store made from it, as an uninterrupted one.
    let mut settings = config.clone();
    settings.resume = false;
    settings.threads = None;
    settings.max_steps = None;
    let mut meta = vec![
        ("distill.training".to_string(), json(&settings)),
        (
            "distill.checkpoint".to_string(),
            snapshot.name().to_string(),
        ),
        ("distill.bias_adjust".to_string(), json(bias)),
    ];
    meta.extend_from_slice(provenance);
    onnx::save(mlp, path, &meta)?;
    Ok(())
}

/// Metadata naming the teachers and the store a distilled model learnt from.
fn provenance(config: &Config, store: Option<&SoftTargets>) -> Result<Vec<(String, String)>> {
    let (Some(s), Some(p)) = (store, &config.soft_targets) else {
        return Ok(Vec::new());
    };
    Ok(vec![
        ("distill.teachers".to_string(), json(&s.meta.teachers)),
        (
            "distill.soft_targets_sha256".to_string(),
            if p.is_file() {
                sha256_file(p)?
            } else {
                String::new()
            },
        ),
    ])
}

/// Runs the saved model through ONNX Runtime on `rows` and compares its logits with the engine's
/// (max abs difference at most 1e-4). Returns a note; a disagreement, or an ONNX Runtime that
/// cannot be loaded, is an error.
pub fn verify_with_onnx_runtime(path: &Path, mlp: &Mlp, rows: ArrayView2<f32>) -> Result<String> {
    let fail = |m: String| TrainError::Export {
        path: path.to_path_buf(),
        message: m,
    };
    distill_runtime::init().map_err(|e| {
        fail(format!(
            "ONNX Runtime is needed to check the saved model and could not be loaded ({e}); \
             install it with `make setup`, or point ORT_DYLIB_PATH at libonnxruntime.so"
        ))
    })?;
    let mut model = distill_runtime::OnnxModel::load(
        &distill_runtime::ModelSpec::new(path),
        distill_runtime::Provider::Cpu,
        1,
    )
    .map_err(|e| fail(format!("ONNX Runtime cannot load the saved model: {e}")))?;
    let theirs = model
        .run(rows)
        .map_err(|e| fail(format!("ONNX Runtime cannot run the saved model: {e}")))?;
    let ours = mlp.forward(rows)?;
    if ours.dim() != theirs.dim() {
        return Err(fail(format!(
            "ONNX Runtime's output has shape {:?}, the engine's {:?}; the saved model is wrong",
            theirs.dim(),
            ours.dim()
        )));
    }
    // NaN-propagating maximum: `f32::max` would drop a NaN and report agreement.
    let diff = ours
        .iter()
        .zip(theirs.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, |m, d| {
            if m.is_nan() || d.is_nan() {
                f32::NAN
            } else {
                m.max(d)
            }
        });
    if diff.is_nan() || diff > 1e-4 {
        return Err(fail(format!(
            "ONNX Runtime's logits differ from the engine's by {diff} (more than 1e-4); the saved model is wrong"
        )));
    }
    Ok(format!(
        "{} checked with ONNX Runtime on {} rows: max |difference| {diff:.1e}",
        path.display(),
        rows.nrows()
    ))
}

/// JSON of a value, for model metadata.
fn json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
