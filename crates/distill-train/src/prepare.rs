//! Steps 0 to 3 of a training run: the outputs checked, the rows, the targets, and the network and
//! optimiser (fresh, or from a checkpoint).

use super::*;

/// Checks that the folder of `path` exists and takes new files, before any work is done.
pub(crate) fn check_writable(flag: &str, path: &Path, inputs: &[(&str, &Path)]) -> Result<()> {
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

/// The transfer set and the validation slice, normalised as `--normalize` says.
pub(crate) struct Data {
    pub(crate) train: Dataset,
    pub(crate) val: Option<Dataset>,
    /// The first rows (at most 256) of the validation slice, or else of the transfer set, before
    /// normalisation: the raw rows the saved model is checked on with ONNX Runtime.
    pub(crate) raw_sample: Array2<f32>,
}

/// Step 1: the rows. Loads the split, holds out the validation slice (before the class filters),
/// applies the class filters and `--fraction`, keeps a raw sample and normalises the rows.
pub(crate) fn load_data(config: &Config, notes: &mut Vec<String>) -> Result<Data> {
    let all = Selection {
        classes: Default::default(),
        ..config.selection.clone()
    }
    .load()?;
    let val_rows = config.validation.unwrap_or((all.len() / 10).min(5000));
    let (rest, mut val) = if val_rows > 0 {
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
    if config.soft.alpha < 1.0 {
        train.require_labels("training with hard labels (alpha below 1)")?;
    }
    let sample = val.as_ref().unwrap_or(&train).features.view();
    let raw_sample = sample
        .slice(ndarray::s![..sample.nrows().min(256), ..])
        .to_owned();
    let normalize = config.normalize.as_ref();
    normalize_rows(normalize, &mut train, "--normalize")?;
    if let Some(v) = val.as_mut() {
        normalize_rows(normalize, v, "--normalize")?;
    }
    Ok(Data {
        train,
        val,
        raw_sample,
    })
}

/// Step 2: the targets. The ensemble's tempered probabilities for each row of `train` (aligned
/// by row id), and the store they come from; `None` when training on hard labels.
pub(crate) fn soft_targets(
    config: &Config,
    train: &Dataset,
) -> Result<(Option<Array2<f32>>, Option<SoftTargets>)> {
    let Some(path) = &config.soft.soft_targets else {
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
    let probs = store.ensemble_for(train, path, config.soft.temperature, config.soft.combine)?;
    Ok((Some(probs), Some(store)))
}

/// `--jitter` and `--flip` need images, and a shift below their sides
/// ([`check_augmentation_fits`]); jitter with soft targets gets a note on what the targets are.
pub(crate) fn check_augmentation(
    config: &Config,
    train: &Dataset,
    distilling: bool,
    notes: &mut Vec<String>,
) -> Result<()> {
    if config.regularisation.jitter > 0 && distilling {
        notes.push(format!(
            "--jitter {} shifts each image, but its soft target is the teachers' for the unshifted \
             image: right for shifts the teachers are (nearly) invariant to, such as 1-2 pixels on \
             MNIST; for larger shifts, score the shifted images with distill-teach instead",
            config.regularisation.jitter
        ));
    }
    check_augmentation_fits(&config.regularisation, train.image, &train.name)
}

/// Step 0: every output's folder exists and takes files, and the outputs (the model, the metrics
/// file, the checkpoint and the best model) are neither an input (the data, the soft-target
/// store) nor one another, as [`distill_core::atomic::check_disjoint`] rules.
pub(crate) fn check_outputs(config: &Config, paths: &OutputPaths) -> Result<()> {
    if let Some(store) = &config.soft.soft_targets {
        distill_core::input::require_exists(
            "--soft-targets",
            store,
            "the teach stage (distill-teach --out)",
        )?;
    }
    let mut inputs: Vec<(&str, &Path)> = vec![("--data", Path::new(&config.selection.data))];
    if let Some(store) = &config.soft.soft_targets {
        inputs.push(("--soft-targets", store.as_path()));
    }
    let outputs: [(&str, &Path); 4] = [
        ("--out", &paths.model),
        ("--metrics", &paths.metrics),
        ("--out (its checkpoint)", &paths.checkpoint),
        ("--out (its best model)", &paths.best),
    ];
    distill_core::atomic::check_disjoint(&outputs, &inputs)?;
    for (flag, path) in outputs {
        check_writable(flag, path, &inputs)?;
    }
    Ok(())
}

/// The network, its optimiser, and where training stands.
pub(crate) struct State {
    pub(crate) model: Model,
    pub(crate) opt: Optimizer,
    pub(crate) progress: Progress,
}

/// Step 3: a freshly initialised network and optimiser, or, with `--resume` and a checkpoint
/// made with the same settings, the checkpoint's.
pub(crate) fn start(
    config: &Config,
    train: &Dataset,
    paths: &OutputPaths,
    notes: &mut Vec<String>,
) -> Result<State> {
    let mut model = build_model(config, train)?;
    let mut opt = Optimizer::new(config.optimizer.clone(), &model.shapes());
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
            progress = checkpoint::load(&paths.checkpoint, &mut model, &mut opt)?;
            if progress.fingerprint != fingerprint {
                return Err(TrainError::Checkpoint {
                    path: paths.checkpoint.clone(),
                    message: "the checkpoint was made with other settings (data, model, loss or optimiser); \
                              resume with the same flags, or delete the checkpoint to start over"
                        .into(),
                });
            }
            // The checkpoint's weights have seen its completed epochs and the batches of the
            // epoch in progress: a run of fewer epochs would save them as something they are not.
            let held = progress.epoch + usize::from(progress.batch > 0);
            if held > config.epochs {
                return Err(TrainError::Checkpoint {
                    path: paths.checkpoint.clone(),
                    message: format!(
                        "the checkpoint holds {} completed epochs{}, more than --epochs {}; \
                         resume with --epochs {held} or more, or delete the checkpoint to start \
                         over",
                        progress.epoch,
                        if progress.batch > 0 {
                            format!(
                                " and {} batches of epoch {}",
                                progress.batch,
                                progress.epoch + 1
                            )
                        } else {
                            String::new()
                        },
                        config.epochs
                    ),
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
    Ok(State {
        model,
        opt,
        progress,
    })
}

/// The shape of one row of `data`: an image `[1, H, W]` when its rows are images, else a flat
/// vector of its width.
pub fn input_shape(data: &Dataset) -> Shape {
    match data.image {
        Some(image) => Shape::Image {
            c: image.channels,
            h: image.height,
            w: image.width,
        },
        None => Shape::Flat(data.width()),
    }
}

/// A freshly initialised network for `train`: the `--arch` net on the data's input shape, or the
/// `--hidden` MLP. An architecture that does not fit the data (a convolution on rows that are not
/// images) is an error naming `--arch` and the data.
pub(crate) fn build_model(config: &Config, train: &Dataset) -> Result<Model> {
    let Some(arch) = &config.arch else {
        let mlp_config = config.mlp_config(train.width(), train.classes);
        return Ok(Model::Mlp(Mlp::with_init(
            mlp_config,
            config.seed,
            config.init,
        )?));
    };
    let input = input_shape(train);
    let mut net = Net::with_init(arch.clone(), input, train.classes, config.seed, config.init)
        .map_err(|e| {
            let rows = match input {
                Shape::Flat(n) => format!(
                    "flat rows of {n} features (no image_shape in its metadata; a convolution or \
                     pooling layer needs images — use --hidden, or data with an image shape)"
                ),
                image => format!("images of {image}"),
            };
            TrainError::invalid(format!(
                "--arch {arch}: {e}; the data {} has {rows} and {} classes",
                train.name, train.classes
            ))
        })?;
    net.max_norm = config.regularisation.max_norm;
    Ok(Model::Net(net))
}
