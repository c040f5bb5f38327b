use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::time::Instant;

use distill_core::math::probabilities_to_logits;
use distill_data::Dataset;
use distill_progress::Progress;
use distill_runtime::OutputKind;
use distill_store::StoreWriter;
use ndarray::{Array2, s};

use crate::teacher::Teacher;
use crate::{Result, TeachError};

/// Batches a teacher may run ahead of the writer.
const AHEAD: usize = 8;

/// Where the time went.
pub(crate) struct Timings {
    /// Seconds inside each teacher's run calls.
    pub per_teacher: Vec<f64>,
    /// Wall-clock seconds during which at least one run call was in flight.
    pub busy: f64,
    /// Seconds the calling thread spent writing the store (closing it included).
    pub write: f64,
    /// Each teacher's wrong top-1 predictions on the rows, when the data has labels.
    pub errors: Option<Vec<usize>>,
}

/// One teacher's logits for one batch, with the span of its run call.
struct Block {
    logits: Array2<f32>,
    span: (Instant, Instant),
}

/// Runs every teacher over `rows` of `ds` in batches and writes them into `writer`, which is renamed
/// into place at the end.
///
/// Each teacher runs in its own thread over all batches, up to [`AHEAD`] batches ahead; the calling
/// thread gathers batch after batch from every teacher and writes it, so writing overlaps inference.
/// On the first error every thread stops and the writer is dropped, which removes its temporary file.
pub(crate) fn infer(
    teachers: &mut [Teacher],
    ds: &Dataset,
    rows: Range<usize>,
    batch: usize,
    mut writer: StoreWriter,
    progress: &Progress,
) -> Result<Timings> {
    let batches: Vec<Range<usize>> = rows
        .clone()
        .step_by(batch)
        .map(|start| start..(start + batch).min(rows.end))
        .collect();
    let bar = progress.task("teach", rows.len() as u64, "rows");
    let stop = AtomicBool::new(false);
    let mut per_teacher = vec![0.0f64; teachers.len()];
    let mut write = 0.0f64;
    let mut errors = ds.labels.as_ref().map(|_| vec![0usize; teachers.len()]);
    let mut spans: Vec<(Instant, Instant)> = Vec::with_capacity(teachers.len() * batches.len());

    let result = std::thread::scope(|scope| -> Result<()> {
        let mut receivers: Vec<Receiver<Result<Block>>> = Vec::with_capacity(teachers.len());
        for teacher in teachers.iter_mut() {
            let (tx, rx) = sync_channel::<Result<Block>>(AHEAD);
            receivers.push(rx);
            let (batches, stop) = (&batches, &stop);
            scope.spawn(move || {
                for range in batches {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let x = ds.features.slice(s![range.clone(), ..]);
                    let t0 = Instant::now();
                    let out = teacher.model.run(x);
                    let t1 = Instant::now();
                    let block = out.map_err(TeachError::from).map(|scores| Block {
                        logits: match teacher.model.kind() {
                            OutputKind::Logits => scores,
                            OutputKind::Probabilities => probabilities_to_logits(scores.view()),
                        },
                        span: (t0, t1),
                    });
                    let failed = block.is_err();
                    if tx.send(block).is_err() || failed {
                        return;
                    }
                }
            });
        }
        let gathered = (|| -> Result<()> {
            let mut blocks = Vec::with_capacity(receivers.len());
            for range in &batches {
                blocks.clear();
                for (t, rx) in receivers.iter().enumerate() {
                    let block = rx.recv().map_err(|_| {
                        TeachError::Internal(format!(
                            "teacher {t}'s thread stopped without a result"
                        ))
                    })??;
                    per_teacher[t] += (block.span.1 - block.span.0).as_secs_f64();
                    spans.push(block.span);
                    blocks.push(block.logits);
                }
                let views: Vec<_> = blocks.iter().map(|b| b.view()).collect();
                let t0 = Instant::now();
                writer.write(
                    &ds.index[range.clone()],
                    ds.labels.as_ref().map(|l| &l[range.clone()]),
                    &views,
                )?;
                write += t0.elapsed().as_secs_f64();
                if let (Some(errors), Some(labels)) = (errors.as_mut(), ds.labels.as_ref()) {
                    for (e, v) in errors.iter_mut().zip(&views) {
                        *e += distill_core::math::error_count(*v, &labels[range.clone()]);
                    }
                }
                bar.inc(range.len() as u64);
            }
            Ok(())
        })();
        if gathered.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        drop(receivers);
        gathered
    });
    bar.finish();
    result?;
    let t0 = Instant::now();
    writer.finish()?;
    write += t0.elapsed().as_secs_f64();
    Ok(Timings {
        per_teacher,
        busy: union_seconds(&mut spans),
        write,
        errors,
    })
}

/// Total length of the union of the time spans.
fn union_seconds(spans: &mut [(Instant, Instant)]) -> f64 {
    spans.sort_by_key(|s| s.0);
    let mut total = 0.0;
    let mut current: Option<(Instant, Instant)> = None;
    for &(a, b) in spans.iter() {
        current = match current {
            Some((ca, cb)) if a <= cb => Some((ca, cb.max(b))),
            Some((ca, cb)) => {
                total += (cb - ca).as_secs_f64();
                Some((a, b))
            }
            None => Some((a, b)),
        };
    }
    if let Some((a, b)) = current {
        total += (b - a).as_secs_f64();
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn union_counts_overlaps_once() {
        let t = Instant::now();
        let at = |ms: u64| t + Duration::from_millis(ms);
        let mut spans = vec![
            (at(10), at(30)),
            (at(0), at(20)),
            (at(50), at(60)),
            (at(55), at(58)),
        ];
        let u = union_seconds(&mut spans);
        assert!((u - 0.040).abs() < 1e-9, "{u}");
        assert_eq!(union_seconds(&mut []), 0.0);
    }
}
