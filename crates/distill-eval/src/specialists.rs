//! The generalist combined with its specialists (`--manifest manifest.yaml`): the paper's §5
//! inference, its error counts (Table 3) and the rows grouped by how many active specialists cover
//! the correct class (Table 4).
//!
//! The manifest written by `distill-specialists` names the generalist and each specialist file with
//! its SHA-256; every hash is checked before anything runs, and the generalist must be one of the
//! `--model` files (same SHA-256). Each specialist runs through ONNX Runtime exactly as the models
//! do, and the rows are combined by [`distill_specialists::combine`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use distill_core::math::{argmax_rows, probabilities_to_logits};
use distill_data::Dataset;
use distill_progress::Task;
use distill_runtime::{ModelSpec, OnnxModel, OutputKind};
use distill_specialists::{CombineOptions, Manifest, SpecialistLogits};
use ndarray::{Array2, ArrayView2};
use serde::Serialize;

use crate::metrics::{self, Summary};
use crate::{Config, EvalError, ModelEntry};
use distill_progress::grouped;

/// The name of the specialists' combination among the predictions (`--predictions`).
pub const COMBINED: &str = "combined";

/// What `--manifest` and `--top-n` ask for.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SpecialistsConfig {
    /// The `manifest.yaml` written by `distill-specialists`.
    pub manifest: PathBuf,
    /// How many of the generalist's most probable classes decide the active specialists.
    pub top_n: usize,
}

/// The manifest, checked against the files it names and the models given.
pub(crate) struct Plan {
    config: SpecialistsConfig,
    manifest: Manifest,
    /// Index of the generalist among [`Config::models`].
    pub(crate) generalist: usize,
    paths: Vec<PathBuf>,
}

impl Plan {
    /// Loads the manifest, checks every SHA-256 it records, and finds the generalist among `models`.
    pub(crate) fn prepare(
        config: &SpecialistsConfig,
        models: &[ModelEntry],
    ) -> Result<Self, EvalError> {
        let mut manifest = Manifest::load(&config.manifest)?;
        manifest.verify_files(&config.manifest)?;
        // Specialists that did not improve the validation combination are not used.
        manifest.specialists.retain(|e| e.used);
        if config.top_n == 0 || config.top_n > manifest.classes {
            return Err(EvalError::TopN {
                top_n: config.top_n,
                classes: manifest.classes,
            });
        }
        let mut hashes = Vec::with_capacity(models.len());
        for m in models {
            hashes.push(distill_core::sha256_file(&m.path)?);
        }
        let generalist = hashes
            .iter()
            .position(|h| *h == manifest.generalist.sha256)
            .ok_or_else(|| EvalError::NotTheGeneralist {
                manifest: config.manifest.clone(),
                generalist: manifest.generalist_path(&config.manifest),
                models: models
                    .iter()
                    .map(|m| m.path.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let paths = manifest.specialist_paths(&config.manifest);
        Ok(Self {
            config: config.clone(),
            manifest,
            generalist,
            paths,
        })
    }

    /// How many specialist models will run.
    pub(crate) fn len(&self) -> usize {
        self.paths.len()
    }

    /// Checks that the data has the manifest's class count.
    pub(crate) fn check_data(&self, data: &Dataset) -> Result<(), EvalError> {
        if data.classes != self.manifest.classes {
            return Err(EvalError::ManifestClasses {
                manifest: self.config.manifest.clone(),
                classes: self.manifest.classes,
                data: data.name.clone(),
                data_classes: data.classes,
            });
        }
        Ok(())
    }

    /// Runs the specialists over `data`, combines them with the generalist (its entry name and
    /// logits) and counts.
    pub(crate) fn evaluate(
        &self,
        config: &Config,
        data: &Dataset,
        labels: &[u32],
        (generalist_name, logits): (&str, ArrayView2<f32>),
        bar: &Task,
        notes: &mut Vec<String>,
    ) -> Result<(SpecialistsReport, Array2<f32>), EvalError> {
        let mut outputs: Vec<Array2<f32>> = Vec::with_capacity(self.paths.len());
        let mut parameters = 0;
        for (entry, path) in self.manifest.specialists.iter().zip(&self.paths) {
            bar.set_message(format!("specialist {}", entry.id));
            let mut model =
                OnnxModel::load(&ModelSpec::new(path), config.provider, config.threads)?;
            notes.extend(model.notes().iter().cloned());
            model.expect_input_width(data.width())?;
            let expected = entry.classes.len() + 1;
            let width_error = |found: usize| EvalError::SpecialistWidth {
                path: path.clone(),
                id: entry.id,
                subset: entry.classes.len(),
                expected,
                found,
            };
            if let Some(c) = model.classes().filter(|&c| c != expected) {
                return Err(width_error(c));
            }
            let scores = crate::infer(&mut model, data.features.view(), config.batch_size, bar)?;
            if scores.ncols() != expected {
                return Err(width_error(scores.ncols()));
            }
            outputs.push(match model.kind() {
                OutputKind::Logits => scores,
                OutputKind::Probabilities => probabilities_to_logits(scores.view()),
            });
            parameters += crate::footprint::footprint(path)?.parameters;
        }
        let inputs: Vec<SpecialistLogits> = self
            .manifest
            .specialists
            .iter()
            .zip(&outputs)
            .map(|(s, l)| SpecialistLogits {
                classes: &s.classes,
                logits: l.view(),
            })
            .collect();
        let options = CombineOptions {
            top_n: self.config.top_n,
            ..CombineOptions::default()
        };
        let start = Instant::now();
        let combined = distill_specialists::combine(logits, &inputs, &options)?;
        let seconds = start.elapsed().as_secs_f64();

        let probs = combined.log_probs.mapv(|v| v.exp() as f32);
        let summary = metrics::summarize(probs.view(), labels);
        let generalist_predicted = argmax_rows(logits);
        let combined_predicted = argmax_rows(probs.view());
        let covering: Vec<usize> = labels
            .iter()
            .enumerate()
            .map(|(row, &y)| {
                combined
                    .active(row)
                    .iter()
                    .filter(|&&m| {
                        self.manifest.specialists[m as usize]
                            .classes
                            .binary_search(&y)
                            .is_ok()
                    })
                    .count()
            })
            .collect();
        let table = by_covering(
            &covering,
            &generalist_predicted,
            &combined_predicted,
            labels,
        );
        let generalist_errors = labels
            .iter()
            .zip(&generalist_predicted)
            .filter(|&(&y, &p)| p != y as usize)
            .count();
        let rows = labels.len();
        let gradient_max = combined.gradient_norm.iter().fold(0.0f64, |m, &g| m.max(g));
        let report = SpecialistsReport {
            manifest: self.config.manifest.clone(),
            generalist: generalist_name.to_string(),
            top_n: self.config.top_n,
            specialists: self.manifest.specialists.len(),
            specialist_parameters: parameters,
            rows,
            rows_with_active: (0..rows)
                .filter(|&r| !combined.active(r).is_empty())
                .count(),
            generalist_errors,
            combined_errors: summary.errors,
            relative_error_reduction: (generalist_errors > 0).then(|| {
                (generalist_errors as f64 - summary.errors as f64) / generalist_errors as f64
            }),
            rows_per_second: rows as f64 / seconds.max(1e-9),
            mean_iterations: combined.iterations.iter().map(|&i| i as f64).sum::<f64>()
                / rows.max(1) as f64,
            max_gradient_norm: gradient_max,
            not_converged: combined.not_converged(),
            by_covering: table,
            combined: summary,
        };
        Ok((report, probs))
    }
}

/// One row of the paper's Table 4: the test rows whose correct class is covered by `covering` of the
/// active specialists.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CoveringRow {
    /// Active specialists whose subset holds the row's label.
    pub covering: usize,
    /// Rows with that count.
    pub count: usize,
    /// Of those, rows the generalist alone classifies correctly.
    pub generalist_correct: usize,
    /// Of those, rows the combination classifies correctly.
    pub combined_correct: usize,
    /// `(combined_correct − generalist_correct) / generalist_correct` (`null` when the generalist
    /// gets none right).
    pub relative_gain: Option<f64>,
}

/// Rows grouped by `covering`, from 0 to the largest count seen (groups may be empty).
pub fn by_covering(
    covering: &[usize],
    generalist_predicted: &[usize],
    combined_predicted: &[usize],
    labels: &[u32],
) -> Vec<CoveringRow> {
    let top = covering.iter().copied().max().unwrap_or(0);
    let mut table: Vec<CoveringRow> = (0..=top)
        .map(|k| CoveringRow {
            covering: k,
            count: 0,
            generalist_correct: 0,
            combined_correct: 0,
            relative_gain: None,
        })
        .collect();
    for (((&k, &g), &c), &y) in covering
        .iter()
        .zip(generalist_predicted)
        .zip(combined_predicted)
        .zip(labels)
    {
        let row = &mut table[k];
        row.count += 1;
        row.generalist_correct += usize::from(g == y as usize);
        row.combined_correct += usize::from(c == y as usize);
    }
    for row in &mut table {
        row.relative_gain = (row.generalist_correct > 0).then(|| {
            (row.combined_correct as f64 - row.generalist_correct as f64)
                / row.generalist_correct as f64
        });
    }
    table
}

/// The `"specialists"` object of `metrics.json`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SpecialistsReport {
    /// The `--manifest` argument.
    pub manifest: PathBuf,
    /// The entry name of the generalist (one of the models).
    pub generalist: String,
    pub top_n: usize,
    /// Specialist models in the manifest.
    pub specialists: usize,
    /// Their parameters together (see [`crate::footprint::Footprint::parameters`]).
    pub specialist_parameters: u64,
    pub rows: usize,
    /// Rows with at least one active specialist.
    pub rows_with_active: usize,
    /// Errors of the generalist alone (after any `--bias-adjust`, as in its entry).
    pub generalist_errors: usize,
    /// Errors of the combination.
    pub combined_errors: usize,
    /// `(generalist_errors − combined_errors) / generalist_errors` (`null` with no generalist error).
    pub relative_error_reduction: Option<f64>,
    /// Rows combined per second of wall time (the combination only, not the inference).
    pub rows_per_second: f64,
    /// Optimiser steps per row.
    pub mean_iterations: f64,
    /// Largest Euclidean norm of the objective's gradient at a returned row.
    pub max_gradient_norm: f64,
    /// Rows that hit the iteration limit before the stopping rule.
    pub not_converged: usize,
    /// The paper's Table 4.
    pub by_covering: Vec<CoveringRow>,
    /// Every metric of the combined system's predictions (as in a model's entry).
    pub combined: Summary,
}

fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{:+.2}%", 100.0 * v))
}

impl fmt::Display for SpecialistsReport {
    /// A summary line, then the Table-4 rows.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "specialists ({}, top-{}, {} specialists): {} errors for {} alone, {} combined ({}); \
             {} of {} rows had an active specialist; combined at {} rows/s, {:.1} steps per row",
            self.manifest.display(),
            self.top_n,
            self.specialists,
            self.generalist_errors,
            self.generalist,
            self.combined_errors,
            match self.relative_error_reduction {
                Some(r) if r >= 0.0 => format!("{:.2}% fewer", 100.0 * r),
                Some(r) => format!("{:.2}% more", -100.0 * r),
                None => "no generalist error to reduce".to_string(),
            },
            grouped(self.rows_with_active as u64),
            grouped(self.rows as u64),
            grouped(self.rows_per_second.round() as u64),
            self.mean_iterations,
        )?;
        if self.not_converged > 0 {
            writeln!(
                f,
                "note: {} rows stopped at the iteration limit",
                self.not_converged
            )?;
        }
        writeln!(
            f,
            "  covering     rows  generalist correct  combined correct  relative gain"
        )?;
        for row in &self.by_covering {
            writeln!(
                f,
                "  {:>8}  {:>7}  {:>18}  {:>16}  {:>13}",
                row.covering,
                grouped(row.count as u64),
                grouped(row.generalist_correct as u64),
                grouped(row.combined_correct as u64),
                percent(row.relative_gain)
            )?;
        }
        Ok(())
    }
}

/// The manifest's generalist, for a command line that gives `--manifest` without `--model`.
pub fn generalist_of(manifest: &Path) -> Result<PathBuf, EvalError> {
    Ok(Manifest::load(manifest)?.generalist_path(manifest))
}
