//! Training of teachers, baseline students and distilled students (docs/method.md §3–4): an MLP
//! (`--hidden`) or a sequential network such as a CNN (`--arch`) trained on hard labels, or on the soft targets of a stored teacher ensemble at temperature `T`, saved as
//! ONNX with its configuration in the metadata, with a per-epoch record, resumable checkpoints and
//! per-class bias adjustment.
pub mod bias;
pub mod checkpoint;
pub mod cli;
mod epochs;
mod error;
mod finish;
mod prepare;
pub mod record;
mod report;
pub mod settings;
pub mod steps;

pub use bias::BiasChoice;
pub use distill_core::bias::{BiasAdjust, ClassBias};
pub use error::{Result, TrainError};
pub use finish::verify_with_onnx_runtime;
pub use report::{Report, TestErrors};
pub use settings::{Regularisation, SoftTargetSettings};

use checkpoint::{EpochSums, Progress};
use distill_core::math::{argmax_rows, error_count};
use distill_core::rng::Rng;
use distill_core::{interrupt, sha256_file};
use distill_data::{Dataset, ImageShape, Preprocess, Selection, Split};
use distill_nn::loss::{cross_entropy, weighted};
use distill_nn::{
    Arch, DistillLoss, Init, Mlp, MlpConfig, Model, Net, Optimizer, OptimizerConfig, Shape,
};
use distill_store::{SoftTargets, read_store};
use epochs::*;
use finish::*;
use ndarray::{Array2, ArrayView2};
use prepare::*;
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
    /// The soft-target store (`None`: hard labels), `T`, `alpha` and how teachers combine.
    #[serde(flatten)]
    pub soft: SoftTargetSettings,
    /// The MLP's hidden layer widths (`--hidden`); empty with `arch`.
    pub hidden: Vec<usize>,
    /// The network as an architecture (`--arch`, the grammar of [`distill_nn::arch`]) instead of
    /// the `hidden` MLP; absent from the serialised settings when not given, so that an MLP's
    /// settings, fingerprint and model metadata are as they were before `--arch` existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<Arch>,
    /// Normalisation of every row (`--normalize`) before the network sees it; the saved model
    /// computes it as its first nodes and takes raw rows. Absent from the serialised settings
    /// when not given, as `arch` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalize: Option<Preprocess>,
    /// How the weights are initialised.
    #[serde(default)]
    pub init: Init,
    /// Dropout, max-norm and jitter.
    #[serde(flatten)]
    pub regularisation: Regularisation,
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
    /// Early stopping: stop after this many epochs without fewer validation errors, and save the
    /// epoch with the fewest as the model (`None`: train every epoch, save the last).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patience: Option<usize>,
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

    pub(crate) fn mlp_config(&self, inputs: usize, classes: usize) -> MlpConfig {
        let mut sizes = vec![inputs];
        sizes.extend(&self.hidden);
        sizes.push(classes);
        self.regularisation.mlp_config(sizes)
    }

    /// A digest of the settings a resumed run must share with the run that made the checkpoint.
    pub(crate) fn fingerprint(&self) -> String {
        let mut c = self.clone();
        c.epochs = 0;
        c.out = PathBuf::new();
        c.metrics = None;
        c.resume = false;
        c.threads = None;
        c.test_split = None;
        c.max_steps = None;
        c.patience = None;
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
            &self.soft,
            &self.optimizer,
            self.threads,
        )?;
        if let Some(f) = self.fraction
            && !(f > 0.0 && f <= 1.0)
        {
            return bad(format!("--fraction {f} must be in (0, 1]"));
        }
        if self.patience == Some(0) {
            return bad(
                "--patience must be at least 1 (epochs without fewer validation errors)".into(),
            );
        }
        if self.patience.is_some() && self.validation == Some(0) {
            return bad(
                "--patience stops on the validation slice's errors, but --validation 0 holds out \
                 no rows; give --validation N above 0, or drop --patience"
                    .into(),
            );
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
        check_hidden_fits(&self.hidden, None)?;
        if let Some(arch) = &self.arch {
            if !self.hidden.is_empty() {
                return bad(format!(
                    "--arch {arch} and --hidden describe the network twice; give one (--hidden \
                     800,800 is the MLP shorthand)"
                ));
            }
            let r = &self.regularisation;
            if r.input_dropout > 0.0 || r.hidden_dropout > 0.0 {
                return bad(format!(
                    "--input-dropout/--hidden-dropout apply to the --hidden MLP; with --arch, dropout \
                     goes in the architecture as a layer, e.g. --arch {}",
                    "conv:32:5,relu,maxpool:2,flatten,fc:256,relu,dropout:0.5,fc"
                ));
            }
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

/// The value checks every trainer of an MLP shares (distill-train and distill-specialists):
/// epochs and batch size at least 1, [`SoftTargetSettings::check`] (a temperature of at least
/// [`settings::MIN_TEMPERATURE`], alpha in [0, 1], and soft targets whenever alpha weighs them),
/// [`settings::check_optimizer`] (the learning rate, momentum and schedule), and `--threads`
/// between 1 and [`distill_core::MAX_THREADS`].
pub fn check_schedule_values(
    epochs: usize,
    batch: usize,
    soft: &SoftTargetSettings,
    optimizer: &OptimizerConfig,
    threads: Option<usize>,
) -> Result<()> {
    let bad = |m: String| Err(TrainError::invalid(m));
    if epochs == 0 {
        return bad("--epochs must be at least 1".into());
    }
    if batch == 0 {
        return bad("--batch must be at least 1".into());
    }
    match threads {
        Some(0) => return bad("--threads must be at least 1".into()),
        Some(n) if n > distill_core::MAX_THREADS => {
            return bad(format!(
                "--threads {n} is more than the {} threads a stage may start; leave it out to \
                 use every core",
                distill_core::MAX_THREADS
            ));
        }
        _ => {}
    }
    soft.check()?;
    settings::check_optimizer(optimizer)
}

/// `--jitter` shifts images by up to that many pixels: it needs rows that are images (`image`,
/// their height and width; `name` names the data in the message) and a shift below both sides.
pub fn check_jitter_fits(jitter: usize, image: Option<ImageShape>, name: &str) -> Result<()> {
    if jitter == 0 {
        return Ok(());
    }
    match image {
        None => Err(TrainError::invalid(format!(
            "--jitter needs images, and the rows of {name} are not images"
        ))),
        Some(ImageShape {
            height: h,
            width: w,
            ..
        }) if jitter >= h.min(w) => Err(TrainError::invalid(format!(
            "--jitter {jitter}: the images of {name} are {h}x{w} pixels, and a shift must be \
             below both sides (at most {}); 1 or 2 is usual",
            h.min(w).saturating_sub(1)
        ))),
        Some(_) => Ok(()),
    }
}

/// `--jitter` ([`check_jitter_fits`]) and `--flip`, which mirrors images left to right and so
/// needs rows that are images (`image`; `name` names the data in the message).
pub fn check_augmentation_fits(
    regularisation: &Regularisation,
    image: Option<ImageShape>,
    name: &str,
) -> Result<()> {
    check_jitter_fits(regularisation.jitter, image, name)?;
    if regularisation.flip && image.is_none() {
        return Err(TrainError::invalid(format!(
            "--flip mirrors images left to right, and the rows of {name} are not images (flat rows \
             have no left and right); drop --flip, or give data with an image shape"
        )));
    }
    Ok(())
}

/// Normalises the rows of `data` in place with `normalize` (nothing when `None`). `source` names
/// where the preprocessing comes from in the message (e.g. `--normalize`) when it does not fit
/// the rows' channels.
pub fn normalize_rows(
    normalize: Option<&Preprocess>,
    data: &mut Dataset,
    source: &str,
) -> Result<()> {
    let Some(p) = normalize else {
        return Ok(());
    };
    p.apply(&mut data.features.view_mut(), data.image)
        .map_err(|e| {
            TrainError::invalid(format!(
                "{source} {}: {e} (the rows of {})",
                p.describe(),
                data.name
            ))
        })
}

/// The preprocessing a model file records under [`distill_nn::onnx::net::PREPROCESS_KEY`] in
/// its `metadata` (`None`: it takes the rows as they are); `path` names the file in the error
/// when the record is not read.
pub fn recorded_preprocess(
    path: &Path,
    metadata: &std::collections::HashMap<String, String>,
) -> Result<Option<Preprocess>> {
    let key = distill_nn::onnx::net::PREPROCESS_KEY;
    metadata
        .get(key)
        .map(|json| {
            serde_json::from_str::<Preprocess>(json).map_err(|e| {
                TrainError::invalid(format!(
                    "{}: its '{key}' metadata '{json}' is not a preprocessing ({e}); give a \
                     model saved by distill-train",
                    path.display()
                ))
            })
        })
        .transpose()
}

/// The preprocessing in the form [`Model::save`] bakes into a model file.
pub fn baked(p: &Preprocess) -> distill_nn::onnx::Preprocess<'_> {
    distill_nn::onnx::Preprocess {
        scale: p.scale,
        mean: &p.mean,
        std: &p.std,
    }
}

/// `--hidden` between the data's `inputs` and `classes` (`None` before the data is read: any
/// data, at least 1 feature and 2 classes): a network of at most
/// [`distill_nn::mlp::MAX_WEIGHTS`] weights, refused before anything is allocated.
pub fn check_hidden_fits(hidden: &[usize], data: Option<(usize, usize)>) -> Result<()> {
    let (inputs, classes) = data.unwrap_or((1, 2));
    let mut sizes = vec![inputs];
    sizes.extend(hidden);
    sizes.push(classes);
    let config = MlpConfig {
        sizes,
        input_dropout: 0.0,
        hidden_dropout: 0.0,
        max_norm: None,
    };
    if config
        .weight_count()
        .is_none_or(|n| n > distill_nn::mlp::MAX_WEIGHTS)
    {
        let widths: Vec<String> = hidden.iter().map(|w| w.to_string()).collect();
        let between = match data {
            Some((i, c)) => format!("between the data's {i} features and {c} classes, "),
            None => String::new(),
        };
        return Err(TrainError::invalid(format!(
            "--hidden {}: {between}these layers would hold more than {} weights ({} GiB of \
             float32, before the optimiser's state); choose narrower layers, e.g. --hidden \
             800,800",
            widths.join(","),
            distill_nn::mlp::MAX_WEIGHTS,
            distill_nn::mlp::MAX_WEIGHTS / (1 << 28)
        )));
    }
    Ok(())
}

/// Trains as `config` says. Returns early (with `interrupted`) on Ctrl-C or `max_steps`, leaving
/// a checkpoint to resume from and no model file.
///
/// Training runs on its own pool of `config.threads` workers (default: all cores) that flush
/// subnormal floats to zero, which keeps epochs equally fast (see [`distill_nn::threads`]).
pub fn run(config: &Config, reporter: &distill_progress::Progress) -> Result<Report> {
    // The thread count is checked before the pool is made.
    config.validate()?;
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
    let Data {
        train,
        val,
        raw_sample,
    } = load_data(config, &mut notes)?;
    if config.arch.is_none() {
        check_hidden_fits(&config.hidden, Some((train.width(), train.classes)))?;
    }
    if let BiasChoice::Fixed(shifts) = &config.bias_adjust {
        shifts.check(train.classes)?;
    }
    check_augmentation(
        config,
        &train,
        config.soft.soft_targets.is_some(),
        &mut notes,
    )?;
    let (soft, store) = soft_targets(config, &train)?;
    let provenance = provenance(config, store.as_ref())?;
    let State {
        mut model,
        mut opt,
        mut progress,
    } = start(config, &train, &paths, &mut notes)?;
    let loss = config.soft.loss();
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
    .with_augmentation(
        train.image,
        &config.regularisation,
        config.normalize.as_ref(),
    )?;
    let trained = epochs(
        &outputs,
        &mut trainer,
        &loss,
        train.len(),
        val.as_ref(),
        (&mut model, &mut opt, &mut progress),
        reporter,
    )?;

    let mode = match &config.soft.soft_targets {
        Some(p) => format!(
            "distilled from {} at T={} (alpha {}, {})",
            p.display(),
            config.soft.temperature,
            config.soft.alpha,
            config.soft.combine
        ),
        None => "trained on hard labels".to_string(),
    };
    let mut report = Report {
        mode,
        model: None,
        best_model: trained.best_saved.then(|| paths.best.clone()),
        metrics: paths.metrics.clone(),
        checkpoint: paths.checkpoint.clone(),
        parameters: model.parameters(),
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
        checkpoint::save(&paths.checkpoint, &model, &opt, &progress)?;
        record::write_csv(&paths.metrics, &progress.history)?;
        return Ok(report);
    }
    if let Some(best) = trained.stopped_early {
        report.notes.push(format!(
            "stopped early after epoch {}: no fewer validation errors for {} epochs; the model is \
             epoch {best}'s, the one with the fewest",
            progress.history.len(),
            config.patience.unwrap_or_default()
        ));
    }
    // The best epoch's weights, saved when it ended (by this run or the one it resumed).
    let best_saved =
        trained.best_saved || progress.best_val_errors.is_some() && paths.best.is_file();
    if config.patience.is_some() && best_saved {
        model = Model::load(&paths.best)?.0;
    }
    finish(
        &outputs,
        model,
        (&train, val.as_ref()),
        raw_sample,
        best_saved,
        &mut report,
    )?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}
