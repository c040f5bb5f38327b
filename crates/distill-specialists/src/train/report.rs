//! What a run reports: per epoch, per specialist, and for the whole run, with its table.

use crate::manifest::SpecialistEntry;
use serde::Serialize;
use std::path::PathBuf;

/// One epoch of one specialist.
#[derive(Clone, Debug, Serialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub loss: f64,
    pub validation_errors: Option<usize>,
    pub validation_loss: Option<f64>,
    /// The generalist combined with this specialist alone, on the held-out validation rows.
    pub system: Option<super::Score>,
    pub seconds: f64,
}

/// What training one specialist did.
#[derive(Clone, Debug, Serialize)]
pub struct SpecialistReport {
    pub entry: SpecialistEntry,
    /// The generalist's errors on the same validation slice: its prediction folded onto the subset
    /// and the dustbin, at the stream's class shares (the specialist's start, so that the two are
    /// compared at the same prior).
    pub generalist_validation_errors: usize,
    /// Mean predicted dustbin probability (after the correction) on the whole validation slice,
    /// and the share of its rows outside the subset: the correction's calibration check.
    pub dustbin_check: Option<(f64, f64)>,
    pub rows_per_epoch: usize,
    pub history: Vec<EpochLog>,
    pub seconds: f64,
    pub onnx_check: String,
}

/// What a run did.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub out: PathBuf,
    pub manifest: PathBuf,
    pub specialists: Vec<SpecialistReport>,
    /// On the held-out validation rows: the generalist alone, the generalist with the used
    /// specialists, and the rows (none without a validation slice).
    pub validation: Option<(super::Score, super::Score, usize)>,
    pub seconds: f64,
    pub jobs: usize,
    pub notes: Vec<String>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        writeln!(
            f,
            "{:>3}  {:>7}  {:>8}  {:>10}  {:>6}  {:>21}  {:>16}  {:>15}  {:>4}  {:>7}",
            "id",
            "classes",
            "share",
            "correction",
            "epochs",
            "validation errors s/g",
            "dustbin p / true",
            "system with/out",
            "used",
            "seconds"
        )?;
        for s in &self.specialists {
            let e = &s.entry;
            let check = s
                .dustbin_check
                .map(|(p, t)| format!("{p:.4} / {t:.4}"))
                .unwrap_or_else(|| "-".into());
            let effect = e
                .validation_effect
                .as_ref()
                .map(|v| format!("{} / {}", v.errors_with, v.errors_without))
                .unwrap_or_else(|| "-".into());
            writeln!(
                f,
                "{:>3}  {:>7}  {:>8.4}  {:>10.3}  {:>6}  {:>21}  {:>16}  {:>15}  {:>4}  {:>7.1}",
                e.id,
                e.classes.len(),
                e.subset_share,
                e.dustbin_correction,
                e.epochs,
                format!(
                    "{} / {} of {}",
                    e.validation_errors, s.generalist_validation_errors, e.validation_rows
                ),
                check,
                effect,
                if e.used { "yes" } else { "no" },
                s.seconds
            )?;
        }
        let (sv, gv): (usize, usize) = self.specialists.iter().fold((0, 0), |(a, b), s| {
            (
                a + s.entry.validation_errors,
                b + s.generalist_validation_errors,
            )
        });
        writeln!(
            f,
            "validation errors on the subset-enriched slices: specialists {sv}, generalist {gv}"
        )?;
        if let Some((g, system, rows)) = &self.validation {
            writeln!(
                f,
                "held-out validation rows ({rows}): generalist {} errors (NLL {:.4}), with the {} \
                 used specialists {} errors (NLL {:.4})",
                g.errors,
                g.nll,
                self.specialists.iter().filter(|s| s.entry.used).count(),
                system.errors,
                system.nll
            )?;
        }
        writeln!(
            f,
            "rows trained on: {} in all",
            self.specialists
                .iter()
                .map(|s| s.entry.rows_trained)
                .sum::<usize>()
        )?;
        write!(
            f,
            "{} specialists in {:.1} s ({} at once); manifest: {}",
            self.specialists.len(),
            self.seconds,
            self.jobs,
            self.manifest.display()
        )
    }
}
