//! Training the specialists: one network per subset of `specialists.yaml`, started from the
//! generalist, trained on the half/half stream with hard labels (and, with a store, the ensemble's
//! tempered soft targets folded onto the subset and the dustbin), stopped early on a validation
//! slice, corrected for the oversampling, and saved with a manifest.

mod folder;
mod one;
mod pool;
mod report;
mod select;

pub use one::{SpecialistMeta, enriched_rows};
pub use report::{EpochLog, Report, SpecialistReport};
pub use select::{Chosen, Score};

use crate::targets::SubsetMap;
use crate::{Result, SpecialistsError};
use distill_cluster::specialists::{SpecialistSet, Subset};
use distill_data::{Dataset, Preprocess, Selection};
use distill_nn::{Model, OptimizerConfig};
use distill_store::read_store;
use distill_train::{Regularisation, SoftTargetSettings};
use folder::write_manifest;
use ndarray::{Array2, ArrayView2};
use pool::train_all;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
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
    /// The ensemble's soft-target store (`None`: hard labels only), `T`, `alpha` and how its
    /// teachers combine.
    #[serde(flatten)]
    pub soft: SoftTargetSettings,
    /// Dropout, max-norm and jitter.
    #[serde(flatten)]
    pub regularisation: Regularisation,
    pub optimizer: OptimizerConfig,
    /// The most epochs a specialist trains.
    pub epochs: usize,
    /// Stop after this many epochs without a lower NLL of the generalist combined with the
    /// specialist on the held-out validation rows.
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

impl Config {
    /// Checks the values that need no file (also run by `distill run` before any stage starts):
    /// those every trainer shares ([`distill_train::check_schedule_values`]: epochs, batch,
    /// temperature, alpha, learning rate, momentum, schedule, `--threads`), `--jobs` between 1 and
    /// [`distill_core::MAX_THREADS`], and `--patience` at least 1.
    pub fn check_values(&self) -> Result<()> {
        let bad = |m: String| Err(SpecialistsError::invalid(m));
        distill_train::check_schedule_values(
            self.epochs,
            self.batch,
            &self.soft,
            &self.optimizer,
            self.threads,
        )?;
        if self.jobs == 0 {
            return bad("--jobs must be at least 1".into());
        }
        if self.jobs > distill_core::MAX_THREADS {
            return bad(format!(
                "--jobs {} is more than the {} threads a stage may start; give at most the \
                 number of subsets",
                self.jobs,
                distill_core::MAX_THREADS
            ));
        }
        if self.patience == 0 {
            return bad("--patience must be at least 1 (epochs without improvement)".into());
        }
        Ok(())
    }

    /// [`Config::check_values`], then the output folder: not a file, and neither holding nor
    /// inside an input (`--subsets`, `--generalist`, `--soft-targets`, `--data`), as
    /// [`distill_core::atomic::check_disjoint`] rules.
    fn validate(&self) -> Result<()> {
        self.check_values()?;
        let bad = |m: String| Err(SpecialistsError::invalid(m));
        if self.out.exists() && !self.out.is_dir() {
            return bad(format!(
                "--out {}: this is a file; the specialists go into a folder (e.g. --out work/specialists)",
                self.out.display()
            ));
        }
        let mut inputs: Vec<(&str, &Path)> = vec![
            ("--subsets", &self.subsets),
            ("--generalist", &self.generalist),
            ("--data", Path::new(&self.selection.data)),
        ];
        if let Some(store) = &self.soft.soft_targets {
            inputs.push(("--soft-targets", store));
        }
        distill_core::atomic::check_disjoint(&[("--out", &self.out)], &inputs)?;
        let written_by = [
            (
                "--subsets",
                &self.subsets,
                "the cluster stage (distill-cluster --out)",
            ),
            (
                "--generalist",
                &self.generalist,
                "the train stage (distill-train --out)",
            ),
        ];
        for (flag, path, writer) in written_by {
            distill_core::input::require_exists(flag, path, writer)?;
        }
        if let Some(store) = &self.soft.soft_targets {
            distill_core::input::require_exists(
                "--soft-targets",
                store,
                "the teach stage (distill-teach --out)",
            )?;
        }
        Ok(())
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
/// Only a regular file of at most [`distill_core::input::MAX_TEXT_BYTES`] is read.
pub fn read_subsets(path: &Path, classes: usize) -> Result<SpecialistSet> {
    let text = distill_core::input::read_to_string(
        "--subsets",
        path,
        distill_core::input::MAX_TEXT_BYTES,
    )?;
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

/// Refuses a generalist with a weight or bias that is not a finite number: every specialist
/// starts from it, and its outputs would be NaN.
fn check_finite(generalist: &Model, path: &Path) -> Result<()> {
    for (k, (w, b)) in generalist.params().into_iter().enumerate() {
        if let Some(v) = w.iter().chain(b).find(|v| !v.is_finite()) {
            return Err(SpecialistsError::input(
                path,
                format!(
                    "--generalist: layer {} holds the value {v}, not a finite number; train the \
                     generalist again (a lower --lr, or --max-norm, keeps the weights finite)",
                    k + 1
                ),
            ));
        }
    }
    Ok(())
}

/// What the specialists share: the data, the generalist, and the soft targets.
struct Shared<'a> {
    config: &'a Config,
    generalist: &'a Model,
    generalist_sha256: &'a str,
    train: &'a Dataset,
    labels: &'a [u32],
    val: Option<&'a Dataset>,
    /// The generalist's logits on the validation rows.
    val_logits: Option<&'a Array2<f32>>,
    soft: Option<&'a Array2<f32>>,
    /// The generalist's preprocessing, applied to `train` and `val` and baked into every
    /// specialist file.
    preprocess: Option<&'a Preprocess>,
    /// The first rows (at most 256) of the validation slice, or else of the training rows, before
    /// preprocessing: what each saved specialist is checked on with ONNX Runtime.
    raw_sample: ArrayView2<'a, f32>,
    /// Where each specialist's epoch lines go.
    progress: &'a distill_progress::Progress,
}

/// [`select::choose`] on the held-out validation rows `val`, on which the generalist's logits are
/// `generalist`, for the specialists `nets`.
fn choose_on(generalist: &Array2<f32>, nets: &[Model], val: &Dataset) -> Result<Chosen> {
    let labels = val.require_labels("the validation slice")?;
    let specialists = nets
        .iter()
        .map(|m| select::subset_logits(m, val.features.view()))
        .collect::<Result<Vec<_>>>()?;
    select::choose(generalist.view(), &specialists, labels)
}

/// Trains as `config` says and writes the folder. Nothing is written when an input is bad.
pub fn run(config: &Config, progress: &distill_progress::Progress) -> Result<Report> {
    let started = Instant::now();
    config.validate()?;
    let mut notes = Vec::new();
    let (generalist, generalist_meta) = Model::load(&config.generalist)?;
    // The generalist's preprocessing: the specialists see the rows as it saw them, and their
    // files compute it too, so that every model of the system takes the same raw rows.
    let preprocess = distill_train::recorded_preprocess(&config.generalist, &generalist_meta)?;
    check_finite(&generalist, &config.generalist)?;
    let classes = generalist.classes();
    let set = read_subsets(&config.subsets, classes)?;
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
            "there are no subsets to train specialists for; run distill-cluster with --count K above 0",
        ));
    }
    let owned = folder::owned_files(config)?;
    folder::check_replaceable(config, &subsets, &owned)?;

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
    let (rest, mut val) = if val_rows > 0 {
        let (rest, val) = all.split_validation(val_rows)?;
        (rest, Some(val))
    } else {
        notes.push("no validation slice (--validation 0): no early stopping".into());
        (all, None)
    };
    let mut train = rest.filter_classes(&config.selection.classes)?;
    distill_train::check_augmentation_fits(&config.regularisation, train.image, &train.name)?;
    let sample = val.as_ref().unwrap_or(&train).features.view();
    let raw_sample = sample
        .slice(ndarray::s![..sample.nrows().min(256), ..])
        .to_owned();
    let source = format!("{} (its preprocessing)", config.generalist.display());
    distill_train::normalize_rows(preprocess.as_ref(), &mut train, &source)?;
    if let Some(v) = val.as_mut() {
        distill_train::normalize_rows(preprocess.as_ref(), v, &source)?;
    }
    if let Some(p) = &preprocess {
        notes.push(format!(
            "rows normalised as the generalist's preprocessing says ({}); every specialist file \
             computes it too and takes raw rows",
            p.describe()
        ));
    }
    let labels = train.require_labels("training specialists")?.to_vec();
    if let Some(v) = &val {
        v.require_labels("the validation slice")?;
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

    let soft = match &config.soft.soft_targets {
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
            Some(store.ensemble_for(&train, path, config.soft.temperature, config.soft.combine)?)
        }
    };

    // Every input is good: now the folder.
    let created = !config.out.exists();
    std::fs::create_dir_all(&config.out)
        .map_err(|e| distill_core::CoreError::io(&config.out, e))?;
    let generalist_sha256 = distill_core::sha256_file(&config.generalist)?;
    let val_logits = val
        .as_ref()
        .map(|v| generalist.forward(v.features.view()))
        .transpose()?;
    let shared = Shared {
        config,
        generalist: &generalist,
        generalist_sha256: &generalist_sha256,
        train: &train,
        labels: &labels,
        val: val.as_ref(),
        val_logits: val_logits.as_ref(),
        soft: soft.as_ref(),
        preprocess: preprocess.as_ref(),
        raw_sample: raw_sample.view(),
        progress,
    };
    let written: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    let outcome = train_all(&shared, &subsets, &written).and_then(|trained| {
        let (mut reports, nets): (Vec<SpecialistReport>, Vec<Model>) = trained.into_iter().unzip();
        let chosen = match (&val, &val_logits) {
            (Some(v), Some(g)) => Some(choose_on(g, &nets, v)?),
            _ => None,
        };
        if let Some(c) = &chosen {
            for ((r, used), effect) in reports.iter_mut().zip(&c.used).zip(&c.effects) {
                r.entry.used = *used;
                r.entry.validation_effect = Some(effect.clone());
            }
        }
        let manifest = write_manifest(config, &generalist_sha256, classes, &reports, &owned)?;
        Ok((reports, manifest, chosen))
    });
    let (specialists, manifest, chosen) = match outcome {
        Ok(r) => r,
        Err(e) => {
            // Only the files this run wrote: each was new, or one the folder's own earlier
            // manifest lists (see `folder::check_replaceable`).
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
        validation: chosen.map(|c| (c.generalist, c.system, val_rows)),
        seconds: started.elapsed().as_secs_f64(),
        jobs: config.jobs.min(subsets.len()),
        notes,
    })
}
