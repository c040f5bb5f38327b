//! The `distill-specialists` command line: flags, their defaults, and the mapping to [`Config`].

use crate::{Config, Result, SpecialistsError};
use clap::Parser;
use distill_cli::DataArgs;
use distill_core::data::parse_class_list;
use distill_core::math::Combine;
use std::ffi::OsString;
use std::path::PathBuf;

/// Train one specialist per class subset of specialists.yaml (written by distill-cluster),
/// starting from the generalist's weights: outputs are the subset's classes plus a dustbin; each
/// epoch is half the subset's rows and half rows of other classes; the dustbin logit is corrected
/// for that oversampling. Writes specialist-<id>.onnx files and manifest.yaml into --out.
#[derive(Parser, Debug)]
#[command(name = "distill-specialists", version, about, long_about = None)]
pub struct Args {
    #[command(flatten)]
    pub data: DataArgs,
    /// specialists.yaml, the class subsets written by distill-cluster.
    #[arg(long, value_name = "PATH")]
    pub subsets: PathBuf,
    /// The generalist: an MLP ONNX written by distill-train on the same data.
    #[arg(long, value_name = "MODEL.onnx")]
    pub generalist: PathBuf,
    /// Soft-target store (file or folder of parts) of the ensemble; without it, hard labels only.
    #[arg(long)]
    pub soft_targets: Option<PathBuf>,
    /// Distillation temperature T (the same T in the specialist's softmax).
    #[arg(long, default_value_t = 20.0)]
    pub temperature: f32,
    /// Weight of the soft-target term; 1 uses no labels (default: 1 with --soft-targets, else 0).
    #[arg(long)]
    pub alpha: Option<f32>,
    /// How the teachers are combined: arithmetic or geometric mean.
    #[arg(long, default_value = "arithmetic")]
    pub combine: String,
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
    /// Learning rate (default: 0.01 for sgd, 0.0003 for adam: fine-tuning a trained network).
    #[arg(long)]
    pub lr: Option<f32>,
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f32,
    #[arg(long)]
    pub momentum_start: Option<f32>,
    #[arg(long, default_value_t = 0)]
    pub momentum_ramp: usize,
    /// Learning-rate schedule: constant, exp:GAMMA, step:EVERY:GAMMA or cosine:EPOCHS.
    #[arg(long, default_value = "constant")]
    pub schedule: String,
    /// The most epochs each specialist trains (an epoch: every subset row and as many others).
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Stop a specialist after this many epochs without a lower validation cross-entropy (the
    /// epoch with the lowest is kept).
    #[arg(long, default_value_t = 2)]
    pub patience: usize,
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Rows of the split held out for validation, as distill-train holds them out (default: 10%
    /// of the rows, at most 5000; 0: none, no early stopping).
    #[arg(long)]
    pub validation: Option<usize>,
    /// Worker threads per specialist (default: the cores divided among --jobs).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Specialists trained at once.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Train only these subset ids, e.g. 3 or 0,4 (others already in the folder's manifest stay).
    #[arg(long, value_name = "IDS")]
    pub only: Option<String>,
    /// The output folder: specialist-<id>.onnx and manifest.yaml.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

impl Args {
    pub fn into_config(self) -> Result<Config> {
        let lr = self.lr.or(match self.optimizer.as_str() {
            "adam" => Some(3e-4),
            _ => Some(0.01),
        });
        let optimizer = distill_train::cli::optimizer_config(
            &self.optimizer,
            lr,
            self.momentum,
            self.momentum_start,
            self.momentum_ramp,
            &self.schedule,
        )?;
        let only = match &self.only {
            None => None,
            Some(s) => {
                let ids = parse_class_list(s).map_err(|_| {
                    SpecialistsError::invalid(format!(
                        "--only {s}: write subset ids such as 3 or 0,4"
                    ))
                })?;
                if ids.is_empty() {
                    return Err(SpecialistsError::invalid(format!(
                        "--only {s}: name at least one subset id"
                    )));
                }
                Some(ids.into_iter().map(|i| i as usize).collect())
            }
        };
        let alpha = self.alpha.unwrap_or(if self.soft_targets.is_some() {
            1.0
        } else {
            0.0
        });
        Ok(Config {
            selection: self.data.selection()?,
            subsets: self.subsets,
            generalist: self.generalist,
            soft_targets: self.soft_targets,
            temperature: self.temperature,
            alpha,
            combine: self.combine.parse::<Combine>()?,
            input_dropout: self.input_dropout,
            hidden_dropout: self.hidden_dropout,
            max_norm: self.max_norm,
            jitter: self.jitter,
            optimizer,
            epochs: self.epochs,
            patience: self.patience,
            batch: self.batch,
            seed: self.seed,
            validation: self.validation,
            threads: self.threads,
            jobs: self.jobs,
            only,
            out: self.out,
        })
    }
}

impl distill_cli::UserError for SpecialistsError {
    fn is_user_error(&self) -> bool {
        SpecialistsError::is_user_error(self)
    }
}

impl distill_cli::Report for crate::Report {}

/// Parses `args`, trains, and prints the report. Exit codes: 0 done, 2 bad input or usage, 1
/// anything else.
pub fn main_from<I, T>(args: I) -> std::process::ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    distill_cli::run_main(args, |args: Args| {
        args.into_config().and_then(|c| crate::run(&c))
    })
}
