//! One specialist: its enriched validation slice, its start from the generalist, the epochs with
//! early stopping, the dustbin correction, and its ONNX file.

use super::{Config, EpochLog, Score, Shared, SpecialistReport, specialist_file};
use crate::init;
use crate::manifest::{FileRef, SpecialistEntry};
use crate::sampler::HalfSampler;
use crate::targets::{SubsetMap, dustbin_correction};
use crate::{Result, SpecialistsError};
use distill_cluster::specialists::Subset;
use distill_core::math::{error_count, softmax};
use distill_core::rng::Rng;
use distill_nn::loss::cross_entropy;
use distill_nn::{Model, Optimizer};
use distill_train::steps::BatchTrainer;
use ndarray::{Array2, Axis};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

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
    mlp: &Model,
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

/// The generalist combined with `mlp` alone (its dustbin moved by `correction` to the real class
/// shares) on the held-out validation rows; `None` without them.
fn system_score(shared: &Shared, mlp: &Model, correction: f64) -> Result<Option<Score>> {
    let (Some(v), Some(g)) = (shared.val, shared.val_logits) else {
        return Ok(None);
    };
    let labels = v.require_labels("the validation slice")?;
    let mut calibrated = mlp.clone();
    calibrated.adjust_bias(calibrated.classes() - 1, correction as f32)?;
    let (keep, z) = super::select::subset_logits(&calibrated, v.features.view())?;
    Ok(Some(super::select::score(
        g.view(),
        &[(keep, z)],
        &[0],
        labels,
    )?))
}

/// Trains the specialist of `subset`, writes its file, and returns its report.
pub(super) fn train_one(
    shared: &Shared,
    subset: &Subset,
    written: &Mutex<Vec<PathBuf>>,
) -> Result<(SpecialistReport, Model)> {
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
    // Start exactly as the generalist folded onto the subset and the dustbin.
    let start = init::from_generalist(shared.generalist, &map, &config.regularisation)?;
    let mut mlp = start.clone();
    // The generalist's folded distribution is calibrated for the real class shares; the stream
    // oversamples the subset, so the start is moved to the stream's shares by the inverse of the
    // correction added after training. A specialist that never improves on its start therefore
    // ends exactly as the generalist folded onto the subset and the dustbin.
    let subset_share = sampler.subset_share();
    let sampled_share = sampler.sampled_share();
    let correction = dustbin_correction(subset_share, sampled_share);
    mlp.adjust_bias(map.dustbin(), -correction as f32)?;

    let mut opt = Optimizer::new(config.optimizer.clone(), &mlp.shapes());
    let loss = config.soft.loss();
    let (mut best_errors, start_loss) = evaluate(&mlp, val_slice.as_ref())?;
    // The generalist on the same slice, at the same class shares: the specialist's start.
    let generalist_validation_errors = best_errors.unwrap_or(0);
    let mut best = mlp.clone();
    let mut best_epochs = 0usize;
    let mut since_best = 0usize;
    let alone = system_score(shared, &mlp, correction)?;
    let mut best_system = alone;
    let mut history = vec![EpochLog {
        epoch: 0,
        loss: f64::NAN,
        validation_errors: best_errors,
        validation_loss: start_loss,
        system: alone,
        seconds: 0.0,
    }];
    let mut trainer = BatchTrainer::new(
        train.features.view(),
        mapped_soft.as_ref().map(|p| p.view()),
        Some(&mapped_labels),
        seed,
    )
    .with_augmentation(train.image, &config.regularisation, shared.preprocess)?;
    for epoch in 0..config.epochs {
        let epoch_started = Instant::now();
        let rows = sampler.epoch(epoch);
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
        let system = system_score(shared, &mlp, correction)?;
        let seconds = epoch_started.elapsed().as_secs_f64();
        shared.progress.say(format_args!(
            "specialist {} epoch {}/{}: loss {:.4}{}{}  {:.1} s",
            subset.id,
            epoch + 1,
            config.epochs,
            sum / seen.max(1) as f64,
            match (errors, &val_slice) {
                (Some(e), Some((x, _))) => format!(
                    ", enriched-slice errors {e} of {} (start {generalist_validation_errors})",
                    x.nrows()
                ),
                _ => String::new(),
            },
            match (system, alone) {
                (Some(s), Some(a)) => format!(
                    ", with the generalist {} errors, NLL {:.4} (generalist alone {}, {:.4})",
                    s.errors, s.nll, a.errors, a.nll
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
            system,
            seconds,
        });
        // The epoch is chosen by what the specialist is for: the NLL of the generalist combined
        // with it on the held-out validation rows (a proper scoring rule, smoother than the
        // error count). Without validation rows, the last epoch is kept.
        let better = match (system, best_system) {
            (Some(s), Some(b)) => s.nll < b.nll - super::select::NLL_TOLERANCE,
            _ => true,
        };
        if better {
            best = mlp.clone();
            best_errors = errors;
            best_system = system;
            best_epochs = epoch + 1;
            since_best = 0;
        } else {
            since_best += 1;
            if since_best >= config.patience {
                break;
            }
        }
    }

    // Calibrate for the real class frequencies: add the correction back, or keep the unshifted
    // start itself when no epoch improved on it (so such a specialist is exactly the folded
    // generalist, without the rounding of shifting the biases and back).
    let mlp = if best_epochs == 0 {
        start
    } else {
        let mut mlp = best;
        mlp.adjust_bias(map.dustbin(), correction as f32)?;
        mlp
    };
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
    mlp.save(
        &path,
        &metadata,
        shared.preprocess.map(distill_train::baked),
    )?;
    let onnx_check = distill_train::verify_with_onnx_runtime(
        &path,
        &mlp,
        shared.raw_sample,
        shared.preprocess.map(|p| (p, train.image)),
    )?;
    let sha256 = distill_core::sha256_file(&path)?;
    let (validation_errors, validation_rows) = match (&val_slice, best_errors) {
        (Some((x, _)), Some(e)) => (e, x.nrows()),
        _ => (0, 0),
    };
    let report = SpecialistReport {
        entry: SpecialistEntry {
            id: subset.id,
            path: file,
            sha256,
            classes: subset.classes.clone(),
            subset_share,
            sampled_share,
            dustbin_correction: correction,
            epochs: best_epochs,
            rows_trained: (history.len() - 1) * sampler.epoch_len(),
            validation_errors,
            validation_rows,
            used: true,
            validation_effect: None,
        },
        generalist_validation_errors,
        dustbin_check,
        rows_per_epoch: sampler.epoch_len(),
        history,
        seconds: started.elapsed().as_secs_f64(),
        onnx_check,
    };
    Ok((report, mlp))
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
}

fn json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
