//! Keeping only the specialists that help: on the held-out validation rows (the real class
//! frequencies, not the subset-enriched slices), the generalist combined with a set of specialists
//! is scored by its errors, then its negative log-likelihood. Starting from every specialist, the
//! one without which the system scores best is dropped, as long as the system without it scores
//! no worse, until every remaining specialist makes the score better. A specialist is therefore
//! used only when the system without it makes more validation errors, or as many with a higher
//! NLL; and the system of the used specialists is never worse than the generalist alone on the
//! validation rows.

use crate::Result;
use crate::SpecialistsError;
use crate::combine::{CombineOptions, SpecialistLogits, combine};
use crate::manifest::ValidationEffect;
use ndarray::{Array2, ArrayView2, Axis};

/// A system's score on the validation rows: errors, then mean negative log-likelihood.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Score {
    pub errors: usize,
    pub nll: f64,
}

/// NLL differences at most this large are rounding (an untrained specialist leaves the
/// generalist's distribution unchanged up to the combination's tolerance), not an effect.
pub(super) const NLL_TOLERANCE: f64 = 1e-7;

impl Score {
    fn better_than(&self, other: &Score) -> bool {
        self.errors < other.errors
            || (self.errors == other.errors && self.nll < other.nll - NLL_TOLERANCE)
    }
}

/// Which specialists to use, each one's effect, and the scores of the generalist alone and of
/// the system of the used specialists.
#[derive(Clone, Debug)]
pub struct Chosen {
    pub used: Vec<bool>,
    pub effects: Vec<ValidationEffect>,
    pub generalist: Score,
    pub system: Score,
}

/// A specialist's subset (the classes its folded head keeps) and its logits on the rows `x`, as
/// [`choose`] and [`score`] take them.
pub(super) fn subset_logits(
    specialist: &distill_nn::Model,
    x: ndarray::ArrayView2<f32>,
) -> Result<(Vec<u32>, Array2<f32>)> {
    let keep = specialist
        .fold()
        .map(|f| f.keep().to_vec())
        .unwrap_or_default();
    Ok((keep, specialist.forward(x)?))
}

/// The score of the generalist combined with the specialists `set` (indices into
/// `specialists`: subset classes and their logits on the validation rows).
pub(super) fn score(
    generalist: ArrayView2<f32>,
    specialists: &[(Vec<u32>, Array2<f32>)],
    set: &[usize],
    labels: &[u32],
) -> Result<Score> {
    let given: Vec<SpecialistLogits> = set
        .iter()
        .map(|&i| SpecialistLogits {
            classes: &specialists[i].0,
            logits: specialists[i].1.view(),
        })
        .collect();
    let combined = combine(generalist, &given, &CombineOptions::default())
        .map_err(|e| SpecialistsError::invalid(format!("validation combination: {e}")))?;
    let mut errors = 0;
    let mut nll = 0.0;
    for (row, &y) in combined.log_probs.axis_iter(Axis(0)).zip(labels) {
        let best = row
            .iter()
            .enumerate()
            .fold(
                (0, f64::NEG_INFINITY),
                |b, (c, &v)| if v > b.1 { (c, v) } else { b },
            )
            .0;
        errors += usize::from(best != y as usize);
        nll -= row[y as usize];
    }
    Ok(Score {
        errors,
        nll: nll / labels.len().max(1) as f64,
    })
}

/// Chooses the specialists as the module documentation says. `generalist` holds the generalist's
/// logits on the validation rows, `specialists` each specialist's classes and logits on them.
pub fn choose(
    generalist: ArrayView2<f32>,
    specialists: &[(Vec<u32>, Array2<f32>)],
    labels: &[u32],
) -> Result<Chosen> {
    let mut set: Vec<usize> = (0..specialists.len()).collect();
    let alone = score(generalist, specialists, &[], labels)?;
    let mut current = score(generalist, specialists, &set, labels)?;
    // Drop the specialist without which the system scores best, as long as the system without
    // it is no worse: a specialist stays only when it makes the system better.
    loop {
        let mut best: Option<(usize, Score)> = None;
        for k in 0..set.len() {
            let mut without = set.clone();
            without.remove(k);
            let s = score(generalist, specialists, &without, labels)?;
            let no_worse = !current.better_than(&s);
            if no_worse && best.as_ref().is_none_or(|(_, b)| s.better_than(b)) {
                best = Some((k, s));
            }
        }
        match best {
            Some((k, s)) => {
                set.remove(k);
                current = s;
            }
            None => break,
        }
    }
    let mut effects = Vec::with_capacity(specialists.len());
    for m in 0..specialists.len() {
        let (with, without) = match set.iter().position(|&i| i == m) {
            Some(k) => {
                let mut without = set.clone();
                without.remove(k);
                (current, score(generalist, specialists, &without, labels)?)
            }
            None => {
                let mut with = set.clone();
                with.push(m);
                with.sort_unstable();
                (score(generalist, specialists, &with, labels)?, current)
            }
        };
        effects.push(ValidationEffect {
            rows: labels.len(),
            errors_with: with.errors,
            errors_without: without.errors,
            nll_with: with.nll,
            nll_without: without.nll,
        });
    }
    Ok(Chosen {
        used: (0..specialists.len()).map(|m| set.contains(&m)).collect(),
        effects,
        generalist: alone,
        system: current,
    })
}
