//! Step 4 of a training run: the epoch loop and each epoch's record.

use super::*;

/// Where and with which metadata models are saved.
pub(crate) struct Outputs<'a> {
    pub(crate) config: &'a Config,
    pub(crate) paths: &'a OutputPaths,
    pub(crate) provenance: &'a [(String, String)],
}

/// What the epoch loop did.
pub(crate) struct Trained {
    /// Stopped by Ctrl-C or `--max-steps` before the last epoch ended.
    pub(crate) interrupted: bool,
    /// Rows trained on, and the seconds it took, over the epochs of this invocation.
    pub(crate) rows: usize,
    pub(crate) seconds: f64,
    /// Whether a best model (lowest validation errors) was saved.
    pub(crate) best_saved: bool,
    /// The epoch (1-based) with the fewest validation errors, when `--patience` stopped the run.
    pub(crate) stopped_early: Option<usize>,
}

/// Step 4: the epoch loop, from where `progress` stands to `config.epochs`. After each epoch:
/// the validation errors, the console line, the best model, the checkpoint and the metrics file.
pub(crate) fn epochs(
    out: &Outputs,
    trainer: &mut BatchTrainer,
    loss: &DistillLoss,
    n: usize,
    val: Option<&Dataset>,
    (mlp, opt, progress): (&mut Model, &mut Optimizer, &mut Progress),
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
        stopped_early: None,
    };

    let mut warned_chance = false;
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
        if !warned_chance
            && let Some(w) = chance_warning(
                rec.epoch,
                rec.train_error,
                mlp.classes(),
                config.optimizer.learning_rate(0),
            )
        {
            reporter.warn(w);
            warned_chance = true;
        }
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
        if let Some(patience) = config.patience
            && let Some(best) = best_epoch(&progress.history)
            && progress.history.len() - best >= patience
        {
            trained.stopped_early = Some(best);
            break;
        }
    }
    Ok(trained)
}

/// The epoch (1-based) with the fewest validation errors, the first of equals; `None` without
/// validation errors. Found from the history, so a resumed run stops where an uninterrupted one
/// would.
fn best_epoch(history: &[EpochRecord]) -> Option<usize> {
    history
        .iter()
        .filter_map(|r| Some((r.epoch, r.val_error?)))
        .fold(None, |best: Option<(usize, f64)>, (e, v)| match best {
            Some((_, b)) if b <= v => best,
            _ => Some((e, v)),
        })
        .map(|(e, _)| e)
}

/// The record of the epoch that just ended (its sums are `progress.partial`), with the validation
/// slice's errors when it has labels.
pub(crate) fn end_epoch(
    mlp: &Model,
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

/// A warning when, from the second epoch on, the training error is still at chance level (at
/// least `1 − 1.2/C` with C ≥ 3 classes): the loss stays finite, but the network has stopped
/// learning, typically because a too-large learning rate killed its ReLUs in the first steps.
fn chance_warning(epoch: usize, train_error: f64, classes: usize, lr: f32) -> Option<String> {
    if epoch < 2 || classes < 3 || !train_error.is_finite() {
        return None;
    }
    let chance = 1.0 - 1.2 / classes as f64;
    (train_error >= chance).then(|| {
        format!(
            "training error {:.1}% after {epoch} epochs is chance level for {classes} classes: the \
             network is not learning. The usual cause is a learning rate too large for this loss \
             (this run starts at {lr}); try --lr {}",
            100.0 * train_error,
            lr / 5.0
        )
    })
}

#[cfg(test)]
mod tests {
    use super::chance_warning;

    #[test]
    fn chance_level_training_error_is_named_with_a_smaller_rate() {
        let w = chance_warning(2, 0.895, 10, 0.1).expect("a warning at 89.5% of 10 classes");
        assert!(w.contains("89.5%") && w.contains("--lr 0.02"), "{w}");
        // Not after the first epoch alone, not when learning, not for two classes, not unlabelled.
        assert!(chance_warning(1, 0.9, 10, 0.1).is_none());
        assert!(chance_warning(2, 0.5, 10, 0.1).is_none());
        assert!(chance_warning(5, 0.6, 2, 0.1).is_none());
        assert!(chance_warning(5, f64::NAN, 10, 0.1).is_none());
    }
}
