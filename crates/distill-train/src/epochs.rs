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
                bar.set_message(format!(
                    "train loss so far {:.4}",
                    weighted(loss.alpha as f64, s.soft, s.hard) / s.rows as f64
                ));
            }
        }
        bar.finish_quietly();
        let seconds = already + epoch_started.elapsed().as_secs_f64();
        trained.rows += progress.partial.rows;
        trained.seconds += seconds;
        let (rec, val_errors) = end_epoch(mlp, config, loss, progress, val, seconds, labelled)?;
        reporter.say(epoch_line(&rec, config.epochs));
        progress.history.push(rec);
        if let Some(w) = chance_warning(
            &progress.history,
            mlp.classes(),
            config.optimizer.learning_rate(0),
        ) {
            reporter.warn(w);
        }
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
        soft_loss: (loss.alpha > 0.0).then(|| s.soft / s.rows.max(1) as f64),
        hard_loss: (loss.alpha < 1.0).then(|| s.hard / s.rows.max(1) as f64),
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

/// The line printed after each epoch: `epoch 3/10  train loss 0.0254 (soft T²·KL 0.0198, hard CE
/// 0.0762)  train error 2.32%  validation loss 0.0810  validation error 2.10%  17.3 s  3,459 rows/s`.
/// The training figures are over the epoch's rows as trained (with dropout and jitter), the
/// validation figures after the epoch.
fn epoch_line(rec: &EpochRecord, epochs: usize) -> String {
    format!(
        "epoch {}/{epochs}  {}  {:.1} s  {} rows/s",
        rec.epoch,
        rec.figures_text(),
        rec.seconds,
        distill_progress::human_rate(rec.samples_per_s)
    )
}

/// Whether an epoch's training error is at chance level: from the second epoch on, at least
/// `1 − 1.2/C` with C ≥ 3 classes.
fn at_chance(rec: &EpochRecord, classes: usize) -> bool {
    rec.epoch >= 2
        && classes >= 3
        && rec.train_error.is_finite()
        && rec.train_error >= 1.0 - 1.2 / classes as f64
}

/// A warning when the last epoch of `history` is the first at chance level (see [`at_chance`]),
/// so that a run warns once, resumed or not: the loss stays finite, but the network has stopped
/// learning, typically because a too-large learning rate killed its ReLUs in the first steps.
fn chance_warning(history: &[EpochRecord], classes: usize, lr: f32) -> Option<String> {
    let (last, earlier) = history.split_last()?;
    if !at_chance(last, classes) || earlier.iter().any(|r| at_chance(r, classes)) {
        return None;
    }
    Some(format!(
        "training error {:.1}% after {} epochs is chance level for {classes} classes: the \
         network is not learning. The usual cause is a learning rate too large for this loss \
         (this run starts at {}); try --lr {}",
        100.0 * last.train_error,
        last.epoch,
        crate::record::rate_text(lr),
        crate::record::rate_text(lr / 5.0)
    ))
}

#[cfg(test)]
mod tests {
    use super::{EpochRecord, chance_warning, epoch_line};

    fn record(epoch: usize, train_error: f64) -> EpochRecord {
        EpochRecord {
            epoch,
            learning_rate: 0.1,
            soft_loss: None,
            hard_loss: Some(2.3),
            loss: 2.3,
            train_error,
            val_error: Some(0.9),
            val_loss: Some(2.25),
            seconds: 1.5,
            samples_per_s: 12345.6,
        }
    }

    #[test]
    fn chance_level_training_error_is_named_once_with_a_smaller_rate() {
        let mut history = vec![record(1, 0.9), record(2, 0.895)];
        let w = chance_warning(&history, 10, 0.1).expect("a warning at 89.5% of 10 classes");
        assert!(w.contains("89.5%") && w.contains("--lr 0.02"), "{w}");
        // Once: not again at the next epoch still at chance (nor after a resume, which sees the
        // same history).
        history.push(record(3, 0.9));
        assert!(chance_warning(&history, 10, 0.1).is_none());
        // Not after the first epoch alone, not when learning, not for two classes, not unlabelled.
        assert!(chance_warning(&[record(1, 0.9)], 10, 0.1).is_none());
        assert!(chance_warning(&[record(1, 0.9), record(2, 0.5)], 10, 0.1).is_none());
        assert!(chance_warning(&[record(1, 0.6), record(5, 0.6)], 2, 0.1).is_none());
        assert!(chance_warning(&[record(1, 0.9), record(2, f64::NAN)], 10, 0.1).is_none());
        assert!(chance_warning(&[], 10, 0.1).is_none());
    }

    #[test]
    fn the_epoch_line_labels_each_figure_once() {
        assert_eq!(
            epoch_line(&record(2, 0.895), 10),
            "epoch 2/10  train loss 2.3000 (hard CE)  train error 89.50%  validation loss 2.2500  \
             validation error 90.00%  1.5 s  12,346 rows/s"
        );
        let mut unlabelled = record(1, f64::NAN);
        (unlabelled.soft_loss, unlabelled.hard_loss) = (Some(2.3), None);
        (unlabelled.val_error, unlabelled.val_loss) = (None, None);
        assert_eq!(
            epoch_line(&unlabelled, 1),
            "epoch 1/1  train loss 2.3000 (soft T²·KL)  1.5 s  12,346 rows/s"
        );
    }
}
