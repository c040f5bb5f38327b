//! Step 5 of a training run: the bias adjustment, the validation and test errors, the model files
//! and their check with ONNX Runtime.

use super::*;

/// Step 5: after the last epoch, the bias adjustment (of the final and the best model), the
/// validation and test errors, the model file and its check with ONNX Runtime.
pub(crate) fn finish(
    out: &Outputs,
    mut model: Model,
    (train, val): (&Dataset, Option<&Dataset>),
    raw_sample: Array2<f32>,
    best_saved: bool,
    report: &mut Report,
) -> Result<()> {
    let (config, paths) = (out.config, out.paths);
    let before = model.clone();
    report.bias = adjust_bias(&mut model, config, val)?;
    if best_saved && !matches!(config.bias_adjust, BiasChoice::None) {
        // The best checkpoint gets the same adjustment as the final model (refitted on its own
        // validation logits for `auto`), so that either file is used the same way.
        let mut best = Model::load(&paths.best)?.0;
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
        let logits = model.forward(v.features.view())?;
        report.val_errors = Some((error_count(logits.view(), vl), v.len()));
    }
    if let Some(split) = config.test_split {
        let source = distill_data::DataSource::parse(&config.selection.data)?;
        match source.single_file() {
            // Every split of a single file is all its rows, the ones trained on: no test errors.
            Some(file) => report.notes.push(format!(
                "no test errors reported, as --data {} is a single file, whose every split is all its rows, \
                 the ones trained on; evaluate the model on other rows (distill-eval --data \
                 TEST.parquet), or give a folder holding train.parquet and test.parquet",
                file.display()
            )),
            None => report.test_errors = test_errors(config, split, &model, &before)?,
        }
    }
    save_model(
        &model,
        &paths.model,
        config,
        out.provenance,
        &report.bias,
        Snapshot::Last,
    )?;
    let image = train.image;
    let preprocess = config.normalize.as_ref().map(|p| (p, image));
    let note = verify_with_onnx_runtime(&paths.model, &model, raw_sample.view(), preprocess)?;
    report.notes.push(note);
    report.model = Some(paths.model.clone());
    Ok(())
}

/// Errors of the trained network on `split` (all its rows, no class filter), after the bias
/// adjustment (`model`) and before it (`before`); `None` when the split has no labels.
pub(crate) fn test_errors(
    config: &Config,
    split: Split,
    model: &Model,
    before: &Model,
) -> Result<Option<TestErrors>> {
    let mut test = Selection {
        split,
        limit: None,
        classes: Default::default(),
        ..config.selection.clone()
    }
    .load()?;
    let Some(tl) = test.labels.take() else {
        return Ok(None);
    };
    normalize_rows(config.normalize.as_ref(), &mut test, "--normalize")?;
    let after = model.forward(test.features.view())?;
    let pred = argmax_rows(after.view());
    let mut per_class = vec![0usize; model.classes()];
    for (p, &y) in pred.iter().zip(&tl) {
        if *p != y as usize {
            per_class[y as usize] += 1;
        }
    }
    let before_logits = before.forward(test.features.view())?;
    Ok(Some(TestErrors {
        split: split.to_string(),
        rows: test.len(),
        errors: per_class.iter().sum(),
        errors_before_bias: error_count(before_logits.view(), &tl),
        per_class,
    }))
}

/// Applies `--bias-adjust` to the network's output biases; returns the shifts applied.
pub(crate) fn adjust_bias(
    model: &mut Model,
    config: &Config,
    val: Option<&Dataset>,
) -> Result<Vec<ClassBias>> {
    let classes = model.classes();
    match &config.bias_adjust {
        BiasChoice::None => Ok(Vec::new()),
        BiasChoice::Fixed(shifts) => {
            for s in &shifts.0 {
                model.adjust_bias(s.class as usize, s.delta)?;
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
            let logits = model.forward(val.features.view())?;
            let (delta, _) = distill_core::bias::fit_shift(logits.view(), vl, &omitted);
            let shifts: Vec<ClassBias> = omitted
                .iter()
                .map(|&class| ClassBias { class, delta })
                .collect();
            for s in &shifts {
                model.adjust_bias(s.class as usize, s.delta)?;
            }
            Ok(shifts)
        }
    }
}

/// Which of a run's two model files is saved (its metadata `distill.checkpoint`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Snapshot {
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

pub(crate) fn save_model(
    model: &Model,
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
    model.save(path, &meta, config.normalize.as_ref().map(baked))?;
    Ok(())
}

/// Metadata naming the teachers and the store a distilled model learnt from.
pub(crate) fn provenance(
    config: &Config,
    store: Option<&SoftTargets>,
) -> Result<Vec<(String, String)>> {
    let (Some(s), Some(p)) = (store, &config.soft.soft_targets) else {
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

/// Runs the saved model through ONNX Runtime on the raw `rows` and compares its logits with the
/// engine's on the same rows after `preprocess` (the preprocessing the file bakes in and the rows'
/// image shape; `None`: the rows as they are), max abs difference at most 1e-4. Returns a note; a
/// disagreement, or an ONNX Runtime that cannot be loaded, is an error.
pub fn verify_with_onnx_runtime(
    path: &Path,
    model: &Model,
    rows: ArrayView2<f32>,
    preprocess: Option<(&Preprocess, Option<ImageShape>)>,
) -> Result<String> {
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
    let mut session = distill_runtime::OnnxModel::load(
        &distill_runtime::ModelSpec::new(path),
        distill_runtime::Provider::Cpu,
        1,
    )
    .map_err(|e| fail(format!("ONNX Runtime cannot load the saved model: {e}")))?;
    let theirs = session
        .run(rows)
        .map_err(|e| fail(format!("ONNX Runtime cannot run the saved model: {e}")))?;
    let ours = match preprocess {
        Some((p, image)) => {
            let mut x = rows.to_owned();
            p.apply(&mut x.view_mut(), image)?;
            model.forward(x.view())?
        }
        None => model.forward(rows)?,
    };
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
        "{} checked with ONNX Runtime on {} {}rows: max |difference| {diff:.1e}",
        path.display(),
        rows.nrows(),
        if preprocess.is_some() { "raw " } else { "" }
    ))
}

/// JSON of a value, for model metadata.
pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
