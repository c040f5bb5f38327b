//! Several specialists at once: `--jobs` threads, each with its own Rayon pool.

use super::one::train_one;
use super::{Shared, SpecialistReport};
use crate::{Result, SpecialistsError};
use distill_cluster::specialists::Subset;
use distill_nn::Model;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A trained specialist: its report and its network.
type Trained = (SpecialistReport, Model);

/// Trains every subset, `config.jobs` at a time, each in its own thread pool; the reports and
/// trained networks in subset order, or the first error.
pub(super) fn train_all(
    shared: &Shared,
    subsets: &[&Subset],
    written: &Mutex<Vec<PathBuf>>,
) -> Result<Vec<Trained>> {
    let jobs = shared.config.jobs.min(subsets.len()).max(1);
    let total = shared.config.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let threads = (total / jobs).max(1);
    let next = AtomicUsize::new(0);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<Trained>>>> =
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
