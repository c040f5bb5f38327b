//! `distill-teach`: runs an ensemble of ONNX teachers over a data set and writes every teacher's raw
//! logits into the Parquet soft-target store of `distill_store`.
//!
//! [`run`] loads the data and the teachers (one ONNX Runtime session each, in parallel), checks before
//! anything is written that every teacher accepts the data's width and scores exactly the data set's
//! classes, then runs the teachers concurrently batch by batch while the main thread writes the
//! previous batches into the store, which appears at its path only when complete.

pub mod cli;
mod error;
mod infer;
mod report;
mod teacher;

use std::path::{Path, PathBuf};
use std::time::Instant;

use distill_data::Selection;
use distill_store::{Shard, StoreMeta, StoreWriter, part_path};
use serde::Serialize;

pub use distill_runtime::{LayoutKind, ModelSettings, OutputKind, Provider};
pub use error::{Result, TeachError};
pub use report::{Report, TeacherReport};

/// Rows per batch when none is given.
pub const DEFAULT_BATCH: usize = 512;

/// One teacher of the ensemble.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TeacherSpec {
    /// The `.onnx` file.
    pub path: PathBuf,
    /// The teacher's column in the store. `None`: the file stem (`a` for `models/a.onnx`), with
    /// `-2`, `-3`, … appended when another teacher already has that name.
    pub name: Option<String>,
    /// Settings given explicitly; they override the sidecar `model.onnx.yaml`, which overrides what
    /// the model itself declares.
    pub settings: ModelSettings,
}

impl TeacherSpec {
    /// A teacher with no explicit name or settings.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        TeacherSpec {
            path: path.into(),
            name: None,
            settings: ModelSettings::default(),
        }
    }
}

/// Everything one run needs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    pub teachers: Vec<TeacherSpec>,
    /// The rows to score.
    pub selection: Selection,
    /// The store file to write; with `shard`, the folder that receives `part-K-of-N.parquet` (created
    /// when missing).
    pub out: PathBuf,
    pub provider: Provider,
    /// Rows per batch handed to each teacher.
    pub batch: usize,
    /// Worker threads of the stage, divided among the teachers (at least one each), since the
    /// teachers run at the same time; `None`: the machine's cores.
    pub threads: Option<usize>,
    /// ONNX Runtime intra-op threads of each teacher's session; `None`: `threads` divided among
    /// the teachers.
    #[serde(default)]
    pub ort_threads: Option<usize>,
    /// `(K, N)`: score only part K (1-based) of N contiguous, equal (±1 row) slices of the selected
    /// rows.
    pub shard: Option<(usize, usize)>,
    /// Keep per row and teacher only the K largest logits, their class ids and the log of the rest
    /// of the mass (the top-k layout of the store); `None`: every class's logit.
    pub top_k: Option<usize>,
}

impl Config {
    /// Checks the values that need no file: at least one teacher, positive batch and thread counts,
    /// a shard that exists (also run by `distill run` before any stage starts).
    pub fn check_values(&self) -> Result<()> {
        if self.teachers.is_empty() {
            return Err(TeachError::usage(
                "--model",
                "no teachers given; name at least one ONNX file with --model",
            ));
        }
        if self.batch == 0 {
            return Err(TeachError::usage("--batch", "must be at least 1"));
        }
        if self.threads == Some(0) {
            return Err(TeachError::usage(
                "--threads",
                "must be at least 1 (leave it out to divide the cores among the teachers)",
            ));
        }
        if self.ort_threads == Some(0) {
            return Err(TeachError::usage(
                "--ort-threads",
                "must be at least 1 (leave it out to divide --threads among the teachers)",
            ));
        }
        for (flag, value) in [
            ("--threads", self.threads),
            ("--ort-threads", self.ort_threads),
        ] {
            if let Some(n) = value
                && n > distill_core::MAX_THREADS
            {
                return Err(TeachError::usage(
                    flag,
                    format!(
                        "{n} is more than the {} threads a stage may start; leave it out to use \
                         every core",
                        distill_core::MAX_THREADS
                    ),
                ));
            }
        }
        if self.top_k == Some(0) {
            return Err(TeachError::usage(
                "--top-k",
                "0 keeps no class: give the number of largest logits to keep per row (at least 1 \
                 and fewer than the classes), or leave --top-k out to keep every class",
            ));
        }
        if let Some((k, n)) = self.shard
            && (n == 0 || k == 0 || k > n)
        {
            return Err(TeachError::usage(
                "--shard",
                format!(
                    "{k}/{n} names no part: K/N means part K of N, with K from 1 to N (e.g. 1/{} to {}/{})",
                    n.max(1),
                    n.max(1),
                    n.max(1)
                ),
            ));
        }
        Ok(())
    }

    /// [`Config::check_values`], then the output path: its folder exists, it has the right kind
    /// (a file, or a folder of parts with `--shard`), and it is none of the inputs.
    pub fn validate(&self) -> Result<()> {
        self.check_values()?;
        for t in &self.teachers {
            if std::fs::symlink_metadata(&t.path).is_err() {
                return Err(TeachError::usage(
                    "--model",
                    format!(
                        "model file {} does not exist; check the path (a teacher made here is \
                         written by the train stage: distill-train --out {})",
                        t.path.display(),
                        t.path.display()
                    ),
                ));
            }
        }
        let out = &self.out;
        match self.shard {
            Some(_) if out.is_file() => Err(TeachError::Output {
                path: out.clone(),
                message:
                    "with --shard, --out names a folder for the part files, but this is a file"
                        .into(),
            }),
            // The folder of parts is created when missing: the part and the folder are checked
            // against the inputs.
            Some(_) => {
                let part = self.destination();
                let files = self.input_files();
                let inputs: Vec<(&str, &Path)> = files
                    .iter()
                    .map(|(f, p)| (f.as_str(), p.as_path()))
                    .collect();
                distill_core::atomic::check_disjoint(&[("--out", out)], &inputs)?;
                distill_core::atomic::check_disjoint(&[("--out (this part)", &part)], &inputs)?;
                Ok(())
            }
            None if out.is_dir() => Err(TeachError::Output {
                path: out.clone(),
                message: "this is a folder; give the store's file name (e.g. work/soft.parquet), \
                          or use --shard K/N to write part files into a folder"
                    .into(),
            }),
            None => self.check_not_an_input(out),
        }
    }

    /// Every file the run reads, with the flag that names it: each teacher with its sidecar and
    /// external-data files, and the data.
    fn input_files(&self) -> Vec<(String, PathBuf)> {
        let mut files: Vec<(String, PathBuf)> = self
            .teachers
            .iter()
            .flat_map(|t| distill_core::atomic::model_files(&t.path))
            .collect();
        files.push(("--data".into(), PathBuf::from(&self.selection.data)));
        files
    }

    /// The output file's folder exists, and the file is none of the inputs.
    fn check_not_an_input(&self, dest: &Path) -> Result<()> {
        Ok(distill_core::atomic::check_output_of_model_run(
            dest,
            self.teachers.iter().map(|t| t.path.as_path()),
            Path::new(&self.selection.data),
        )?)
    }

    /// Intra-op threads each teacher's session gets: `ort_threads`, or the stage's threads (all
    /// cores by default) divided among the teachers, at least one each.
    pub fn threads_per_teacher(&self) -> usize {
        self.ort_threads.unwrap_or_else(|| {
            let total = self
                .threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            (total / self.teachers.len().max(1)).max(1)
        })
    }

    /// The file this run writes: `out`, or part K of N inside the `out` folder.
    pub fn destination(&self) -> PathBuf {
        match self.shard {
            Some((k, n)) => part_path(&self.out, k, n),
            None => self.out.clone(),
        }
    }
}

/// The rows of a split that part `k` (1-based) of `n` covers: contiguous, in order, sizes differing by
/// at most one, together exactly `0..total`.
pub fn shard_rows(total: usize, k: usize, n: usize) -> std::ops::Range<usize> {
    let n = n.max(1);
    let k = k.clamp(1, n);
    (total * (k - 1) / n)..(total * k / n)
}

/// Scores the selected rows with every teacher and writes the store (see the crate documentation).
///
/// Fails before writing anything when a flag, the data or a teacher is unusable; fails without leaving
/// an output file (not even a temporary one) when a teacher's output turns out non-finite while
/// running. Notes for the user are printed to stderr as they arise and kept in the report.
pub fn run(config: &Config, progress: &distill_progress::Progress) -> Result<Report> {
    let started = Instant::now();
    config.validate()?;
    let names = teacher::column_names(&config.teachers)?;
    let threads = config.threads_per_teacher();

    let (data, loaded) = std::thread::scope(|s| {
        let data = s.spawn(|| config.selection.load());
        let loads: Vec<_> = config
            .teachers
            .iter()
            .zip(&names)
            .map(|(spec, name)| {
                s.spawn(move || teacher::Teacher::load(spec, name, config.provider, threads))
            })
            .collect();
        let loaded: Vec<_> = loads.into_iter().map(|h| h.join()).collect();
        (data.join(), loaded)
    });
    let panicked = || TeachError::Internal("a loading thread panicked".into());
    let ds = data.map_err(|_| panicked())??;
    let mut teachers = Vec::with_capacity(loaded.len());
    for t in loaded {
        teachers.push(t.map_err(|_| panicked())??);
    }

    let mut notes: Vec<String> = distill_runtime::init()?.notes().to_vec();
    for t in &teachers {
        notes.extend(t.model.notes().iter().cloned());
    }
    for note in &notes {
        progress.say(format!("note: {note}"));
    }
    teacher::check(&mut teachers, &ds)?;

    let total = ds.len();
    let (rows, shard) = match config.shard {
        Some((k, n)) => (
            shard_rows(total, k, n),
            Some(Shard {
                part: k,
                parts: n,
                total_rows: total,
            }),
        ),
        None => (0..total, None),
    };
    if let Some(k) = config.top_k
        && k >= ds.classes
    {
        return Err(TeachError::usage(
            "--top-k",
            format!(
                "{k} keeps {} classes, but the data set {} has {}: the top-k layout needs K below \
                 the class count (K = {} keeps all but one); leave --top-k out to store every \
                 class's logit",
                if k == ds.classes {
                    "all"
                } else {
                    "more than all"
                },
                ds.name,
                ds.classes,
                ds.classes.saturating_sub(1)
            ),
        ));
    }
    let meta = StoreMeta {
        shard: shard.clone(),
        ..StoreMeta::new(
            ds.classes,
            teachers.iter().map(|t| t.meta.clone()).collect(),
            config.selection.data.clone(),
            config.selection.split.to_string(),
            config.selection.describe(),
        )
    };
    let meta = match config.top_k {
        Some(k) => meta.with_top_k(k),
        None => meta,
    };
    if config.shard.is_some() {
        std::fs::create_dir_all(&config.out)
            .map_err(|e| distill_core::CoreError::io(&config.out, e))?;
    }
    let out = config.destination();
    let settings: Vec<serde_json::Value> = teachers.iter().map(|t| t.settings.clone()).collect();
    let writer = StoreWriter::create_with_settings(&out, &meta, &settings)?;

    let setup_seconds = started.elapsed().as_secs_f64();
    let inference_started = Instant::now();
    let timings = infer::infer(
        &mut teachers,
        &ds,
        rows.clone(),
        config.batch,
        writer,
        progress,
    )?;
    let inference_seconds = inference_started.elapsed().as_secs_f64();
    let seconds = started.elapsed().as_secs_f64();

    let n = rows.len();
    let rates: Option<Vec<f64>> = timings.errors.as_ref().map(|errors| {
        errors
            .iter()
            .map(|&e| if n > 0 { e as f64 / n as f64 } else { 0.0 })
            .collect()
    });
    let warnings = match &rates {
        Some(rates) if n > 0 => {
            let named: Vec<(String, f64, String)> = teachers
                .iter()
                .zip(rates)
                .map(|(t, &r)| {
                    let norm = t.model.normalization();
                    (
                        t.meta.name.clone(),
                        r,
                        format!("mean {}, std {}, scale {}", norm.mean, norm.std, norm.scale),
                    )
                })
                .collect();
            error_warnings(&named, ds.classes)
        }
        _ => Vec::new(),
    };
    for w in &warnings {
        progress.warn(w);
    }
    Ok(Report {
        out,
        rows: n,
        classes: ds.classes,
        top_k: config.top_k,
        teachers: teachers
            .iter()
            .zip(&timings.per_teacher)
            .enumerate()
            .map(|(i, (t, &ort_seconds))| TeacherReport {
                name: t.meta.name.clone(),
                path: t.model.path().to_path_buf(),
                kind: t.model.kind(),
                provider: t.model.provider(),
                threads,
                ort_seconds,
                errors: timings.errors.as_ref().map(|e| e[i]),
                error_rate: rates.as_ref().map(|r| r[i]),
            })
            .collect(),
        shard,
        seconds,
        rows_per_second: if seconds > 0.0 {
            n as f64 / seconds
        } else {
            0.0
        },
        setup_seconds,
        inference_seconds,
        ort_busy_seconds: timings.busy,
        ort_seconds_sum: timings.per_teacher.iter().sum(),
        write_seconds: timings.write,
        notes,
        warnings,
    })
}

/// A teacher is "far worse" than the best one when its error rate is more than this many times
/// the best's ...
pub const WORSE_FACTOR: f64 = 2.0;
/// ... and more than this much above it (5 percentage points).
pub const WORSE_MARGIN: f64 = 0.05;
/// A teacher is "near chance" when its error rate is above this fraction of chance's
/// (`1 - 1/classes`).
pub const NEAR_CHANCE: f64 = 0.8;

/// Warnings for teachers that look wrongly fed: `(name, error rate, its input settings)` for each
/// teacher. A teacher is flagged when it errs more than [`WORSE_FACTOR`] times as often as the best
/// teacher and [`WORSE_MARGIN`] above it, or on more than [`NEAR_CHANCE`] of what guessing would
/// (`1 - 1/classes`). Both are what a model given pixels with the wrong mean, std or scale does.
pub fn error_warnings(teachers: &[(String, f64, String)], classes: usize) -> Vec<String> {
    let Some((best_name, best, _)) = teachers.iter().min_by(|a, b| a.1.total_cmp(&b.1)).cloned()
    else {
        return Vec::new();
    };
    let chance = 1.0 - 1.0 / classes.max(1) as f64;
    let fix = "check the input settings in its sidecar (MODEL.onnx.yaml) or flags: `mean`, \
               `std` and `scale` must be the normalisation it was trained with (x -> (x * scale - \
               mean) / std, from pixels in [0, 1]), and `layout` its input's shape";
    let mut out = Vec::new();
    for (name, rate, settings) in teachers {
        let pct = 100.0 * rate;
        if classes > 1 && *rate > NEAR_CHANCE * chance {
            out.push(format!(
                "teacher '{name}' errs on {pct:.1}% of the labelled rows, near chance ({:.1}% \
                 for {classes} classes); it ran with {settings}: {fix}",
                100.0 * chance
            ));
        } else if *name != best_name && *rate > WORSE_FACTOR * best && *rate > best + WORSE_MARGIN {
            out.push(format!(
                "teacher '{name}' errs on {pct:.1}% of the labelled rows, against {:.1}% for \
                 '{best_name}', the best; it ran with {settings}: {fix}",
                100.0 * best
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_count_top1_misses_and_warnings_follow_their_thresholds() {
        let logits = ndarray::array![[0.0f32, 2.0, 1.0], [3.0, 1.0, 3.0], [0.0, 0.0, 5.0]];
        // Row 1 is a tie between classes 0 and 2: the first counts.
        assert_eq!(
            distill_core::math::error_count(logits.view(), &[1, 0, 2]),
            0
        );
        assert_eq!(
            distill_core::math::error_count(logits.view(), &[1, 2, 0]),
            2
        );
        let t = |name: &str, rate: f64| (name.to_string(), rate, "mean 0, std 1, scale 1".into());
        // 2x the best and 5 points above it: both are needed.
        assert!(error_warnings(&[t("a", 0.02), t("b", 0.06)], 10).is_empty());
        assert!(error_warnings(&[t("a", 0.10), t("b", 0.16)], 10).is_empty());
        let w = error_warnings(&[t("a", 0.02), t("b", 0.0701)], 10);
        assert_eq!(w.len(), 1);
        assert!(w[0].starts_with("teacher 'b' errs on 7.0%") && w[0].contains("'a', the best"));
        // Near chance: above 0.8 * (1 - 1/classes), even for a lone teacher.
        assert!(error_warnings(&[t("a", 0.72)], 10).is_empty());
        let w = error_warnings(&[t("a", 0.7201)], 10);
        assert!(w[0].contains("near chance (90.0% for 10 classes)"), "{w:?}");
        let w = error_warnings(&[t("a", 0.41)], 2);
        assert!(w[0].contains("near chance (50.0% for 2 classes)"), "{w:?}");
        assert!(error_warnings(&[], 10).is_empty());
    }

    #[test]
    fn shards_cover_the_rows_once_in_order() {
        for total in [0, 1, 2, 7, 10, 60_000] {
            for n in 1..=5 {
                let mut next = 0;
                for k in 1..=n {
                    let r = shard_rows(total, k, n);
                    assert_eq!(r.start, next, "total {total}, part {k}/{n}");
                    assert!(r.len().abs_diff(total / n) <= 1);
                    next = r.end;
                }
                assert_eq!(next, total);
            }
        }
    }
}
