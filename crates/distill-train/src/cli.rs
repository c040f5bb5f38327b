//! The `distill-train` command line: flags, their defaults, and the mapping to [`Config`].

use crate::{BiasAdjust, Config, Result, TrainError};
use clap::Parser;
use distill_core::data::{ClassFilter, Selection, Split, parse_class_list};
use distill_core::math::Combine;
use distill_nn::{OptimizerConfig, Schedule};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

/// Train an MLP on hard labels, or distil one from a soft-target store, and save it as ONNX.
#[derive(Parser, Debug)]
#[command(name = "distill-train", version, about, long_about = None)]
pub struct Args {
    /// Data: a folder of MNIST IDX files, a folder with train.parquet/test.parquet, a Parquet
    /// file, or synthetic:...
    #[arg(long, default_value = "data/mnist")]
    pub data: String,
    #[arg(long, default_value = "train")]
    pub split: String,
    /// Use only the first N rows of the split.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Keep only these classes in the transfer set, e.g. 7,8.
    #[arg(long)]
    pub only_classes: Option<String>,
    /// Remove these classes from the transfer set, e.g. 3.
    #[arg(long)]
    pub exclude_classes: Option<String>,
    /// Keep this seeded random fraction of the transfer set, e.g. 0.03.
    #[arg(long)]
    pub fraction: Option<f32>,
    /// Rows of the split held out for validation (default: 10% of the rows, at most 5000; 0: none).
    #[arg(long)]
    pub validation: Option<usize>,
    /// Soft-target store (file or folder of parts) to distil from; without it, hard labels.
    #[arg(long)]
    pub soft_targets: Option<PathBuf>,
    /// Distillation temperature T (the same T in the student's softmax).
    #[arg(long, default_value_t = 20.0)]
    pub temperature: f32,
    /// Weight of the soft-target term; 1 uses no labels (default: 1 with --soft-targets, else 0).
    #[arg(long)]
    pub alpha: Option<f32>,
    /// How the teachers are combined: arithmetic or geometric mean.
    #[arg(long, default_value = "arithmetic")]
    pub combine: String,
    /// Hidden layer widths, e.g. 1200,1200.
    #[arg(long, default_value = "800,800")]
    pub hidden: String,
    #[arg(long, default_value_t = 0.0)]
    pub input_dropout: f32,
    #[arg(long, default_value_t = 0.0)]
    pub hidden_dropout: f32,
    /// Bound on each unit's incoming weight vector length.
    #[arg(long)]
    pub max_norm: Option<f32>,
    /// Translate training images randomly by up to this many pixels.
    #[arg(long, default_value_t = 0)]
    pub jitter: usize,
    /// sgd or adam.
    #[arg(long, default_value = "sgd")]
    pub optimizer: String,
    #[arg(long)]
    pub lr: Option<f32>,
    /// SGD momentum (reached after --momentum-ramp epochs).
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f32,
    /// SGD momentum at the first epoch, when ramping.
    #[arg(long)]
    pub momentum_start: Option<f32>,
    /// Epochs over which momentum rises from --momentum-start to --momentum.
    #[arg(long, default_value_t = 0)]
    pub momentum_ramp: usize,
    /// Learning-rate schedule: constant, exp:GAMMA, step:EVERY:GAMMA or cosine:EPOCHS.
    #[arg(long, default_value = "constant")]
    pub schedule: String,
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Per-class logit bias shifts, e.g. 3=+3.5, or auto (fitted on the validation slice for the
    /// classes the transfer set omits).
    #[arg(long)]
    pub bias_adjust: Option<String>,
    /// The model file to write (.onnx); metrics, checkpoint and best model go beside it.
    #[arg(long, default_value = "model.onnx")]
    pub out: PathBuf,
    /// The per-epoch metrics CSV (default: beside --out).
    #[arg(long)]
    pub metrics: Option<PathBuf>,
    /// Continue from the checkpoint beside --out.
    #[arg(long)]
    pub resume: bool,
    /// Split to report errors on after training, or none.
    #[arg(long, default_value = "test")]
    pub test_split: String,
    /// Stop after this many optimiser steps, leaving a checkpoint (as an interrupt would).
    #[arg(long, hide = true)]
    pub max_steps: Option<u64>,
}

fn classes(only: &Option<String>, exclude: &Option<String>) -> Result<ClassFilter> {
    Ok(ClassFilter {
        only: only.as_deref().map(parse_class_list).transpose()?,
        exclude: exclude
            .as_deref()
            .map(parse_class_list)
            .transpose()?
            .unwrap_or_default(),
    })
}

impl Args {
    pub fn into_config(self) -> Result<Config> {
        let schedule: Schedule = self.schedule.parse()?;
        let optimizer = match self.optimizer.as_str() {
            "sgd" => OptimizerConfig::Sgd {
                lr: self.lr.unwrap_or(0.05),
                momentum: self.momentum,
                momentum_start: self.momentum_start.unwrap_or(self.momentum),
                momentum_ramp: self.momentum_ramp,
                schedule,
            },
            "adam" => OptimizerConfig::Adam {
                lr: self.lr.unwrap_or(1e-3),
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                schedule,
            },
            other => {
                return Err(TrainError::invalid(format!(
                    "--optimizer {other}: use sgd or adam"
                )));
            }
        };
        let hidden = if self.hidden.trim().is_empty() {
            Vec::new()
        } else {
            self.hidden
                .split(',')
                .map(|w| {
                    w.trim().parse::<usize>().map_err(|_| {
                        TrainError::invalid(format!(
                            "--hidden {}: write widths like 800,800",
                            self.hidden
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?
        };
        let test_split = match self.test_split.as_str() {
            "none" => None,
            s => Some(s.parse::<Split>()?),
        };
        let alpha = self.alpha.unwrap_or(if self.soft_targets.is_some() {
            1.0
        } else {
            0.0
        });
        Ok(Config {
            selection: Selection {
                data: self.data,
                split: self.split.parse()?,
                limit: self.limit,
                classes: classes(&self.only_classes, &self.exclude_classes)?,
            },
            validation: self.validation,
            fraction: self.fraction,
            soft_targets: self.soft_targets,
            temperature: self.temperature,
            alpha,
            combine: self.combine.parse::<Combine>()?,
            hidden,
            input_dropout: self.input_dropout,
            hidden_dropout: self.hidden_dropout,
            max_norm: self.max_norm,
            jitter: self.jitter,
            optimizer,
            epochs: self.epochs,
            batch: self.batch,
            seed: self.seed,
            threads: self.threads,
            bias_adjust: match self.bias_adjust {
                Some(s) => s.parse::<BiasAdjust>()?,
                None => BiasAdjust::None,
            },
            out: self.out,
            metrics: self.metrics,
            resume: self.resume,
            test_split,
            max_steps: self.max_steps,
        })
    }
}

/// Parses `args`, trains, and prints the report. Exit codes: 0 done, 2 bad input or usage,
/// 130 stopped by an interrupt (checkpoint saved), 1 anything else.
pub fn main_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    distill_core::interrupt::install();
    let result = args.into_config().and_then(|c| crate::run(&c));
    match result {
        Ok(report) => {
            println!("{report}");
            if report.interrupted {
                ExitCode::from(130)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(if e.is_user_error() { 2 } else { 1 })
        }
    }
}
