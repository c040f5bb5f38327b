//! The `distill-train` command line: flags, their defaults, and the mapping to [`Config`].

use crate::{BiasChoice, Config, Regularisation, Result, SoftTargetSettings, TrainError};
use clap::Parser;
use distill_cli::DataArgs;
use distill_core::math::Combine;
use distill_data::Split;

use distill_nn::{OptimizerConfig, Schedule};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

/// Train an MLP or a CNN on hard labels, or distil one from a soft-target store, and save it as
/// ONNX.
#[derive(Parser, Debug)]
#[command(name = "distill-train", version, about, long_about = None, allow_negative_numbers = true)]
pub struct Args {
    #[command(flatten)]
    pub data: DataArgs,
    /// Keep this seeded random fraction of the transfer set, e.g. 0.03.
    #[arg(long, value_name = "F")]
    pub fraction: Option<f32>,
    /// Rows of the split held out for validation (default: 10% of the rows, at most 5000; 0: none).
    #[arg(long, value_name = "N")]
    pub validation: Option<usize>,
    #[command(flatten)]
    pub soft: SoftTargetArgs,
    /// Hidden layer widths, e.g. 1200,1200 (the network may hold at most 2^31 weights).
    #[arg(long, value_name = "WIDTHS", default_value = "800,800")]
    pub hidden: String,
    /// The network as comma-separated layers instead of the --hidden MLP, e.g.
    /// conv:16:5:p2,relu,maxpool:2,flatten,fc:128,relu,dropout:0.5,fc (conv:OUT:K[:sS][:pP],
    /// maxpool:K, avgpool:K, gap, bn, flatten, fc[:N], relu, dropout:P; the input shape comes from
    /// the data's images). Repeated, the pieces are joined with commas (a pipeline's YAML list).
    #[arg(long, value_name = "LAYERS", conflicts_with = "hidden")]
    pub arch: Vec<String>,
    /// Normalise every row before the network sees it, `mean=M,std=S` with one value for all
    /// channels or one per channel (`mean=0.49:0.48:0.45,std=0.25:0.24:0.26`), optionally
    /// `scale=K` first: value = (x * K - M) / S. The saved model computes it as its first nodes,
    /// so it takes the raw rows the data gives, as the teachers do.
    #[arg(long, value_name = "mean=M[:M..],std=S[:S..]")]
    pub normalize: Option<String>,
    /// Weight initialisation: torch (PyTorch's nn.Linear default, uniform +-1/sqrt(fan_in) weights
    /// and biases) or he (He-normal weights, zero biases).
    #[arg(long, value_name = "torch|he", default_value = "torch")]
    pub init: String,
    #[command(flatten)]
    pub regularisation: RegularisationArgs,
    #[command(flatten)]
    pub optimizer: OptimizerArgs,
    #[command(flatten)]
    pub run: LoopArgs,
    /// Worker threads for this stage, 1 to 1024 [default: all cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Per-class logit bias shifts, e.g. 3=+3.5, or auto (fitted on the validation slice for the
    /// classes the transfer set omits).
    #[arg(long, value_name = "SHIFTS|auto")]
    pub bias_adjust: Option<String>,
    /// The model file to write (.onnx); metrics, checkpoint and best model go beside it.
    #[arg(long, value_name = "MODEL.onnx", default_value = "model.onnx")]
    pub out: PathBuf,
    /// The per-epoch metrics CSV (default: beside --out).
    #[arg(long, value_name = "PATH")]
    pub metrics: Option<PathBuf>,
    /// Continue from the checkpoint beside --out.
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many epochs without fewer validation errors, and save the epoch with the
    /// fewest as --out (default: train every epoch and save the last).
    #[arg(long, value_name = "N")]
    pub patience: Option<usize>,
    /// Split to report errors on after training, or none.
    #[arg(long, value_name = "test|none", default_value = "test")]
    pub test_split: String,
    /// Stop after this many optimiser steps, leaving a checkpoint (as an interrupt would).
    #[arg(long, hide = true)]
    pub max_steps: Option<u64>,
    #[command(flatten)]
    pub progress: distill_cli::ProgressArgs,
}

impl Args {
    pub fn into_config(self) -> Result<Config> {
        let optimizer = self.optimizer.config()?;
        let arch = match self.arch.join(",") {
            a if a.is_empty() => None,
            a => Some(
                a.parse::<distill_nn::Arch>()
                    .map_err(|e| TrainError::invalid(format!("--arch {a}: {e}")))?,
            ),
        };
        let hidden = if arch.is_some() || self.hidden.trim().is_empty() {
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
        let normalize = self
            .normalize
            .as_deref()
            .map(|text| {
                distill_data::Preprocess::parse(text)
                    .map_err(|e| TrainError::invalid(format!("--normalize {text}: {e}")))
            })
            .transpose()?;
        Ok(Config {
            selection: self.data.selection()?,
            validation: self.validation,
            fraction: self.fraction,
            soft: self.soft.settings()?,
            hidden,
            arch,
            normalize,
            init: self
                .init
                .parse()
                .map_err(|e| TrainError::invalid(format!("--init {}: {e}", self.init)))?,
            regularisation: self.regularisation.settings(),
            optimizer,
            epochs: self.run.epochs,
            batch: self.run.batch,
            seed: self.run.seed,
            threads: self.threads,
            bias_adjust: match self.bias_adjust {
                Some(s) => s.parse::<BiasChoice>()?,
                None => BiasChoice::None,
            },
            out: self.out,
            metrics: self.metrics,
            resume: self.resume,
            test_split,
            max_steps: self.max_steps,
            patience: self.patience,
        })
    }
}

/// The soft-target flags: the store, its temperature, its weight and how the teachers are
/// combined. Shared by every stage that trains (distill-train, distill-specialists).
#[derive(clap::Args, Debug, Clone)]
pub struct SoftTargetArgs {
    /// Soft-target store (file or folder of parts) to distil from; without it, hard labels.
    #[arg(long, value_name = "PATH")]
    pub soft_targets: Option<PathBuf>,
    /// Distillation temperature T of the teachers' targets and of the trained network's softmax
    /// in the soft term (at least 0.05: below, the tempered softmax is one-hot in float32).
    #[arg(long, value_name = "T", default_value_t = 20.0)]
    pub temperature: f32,
    /// Weight of the soft-target term; 1 uses no labels (default: 1 with --soft-targets, else 0).
    #[arg(long, value_name = "A")]
    pub alpha: Option<f32>,
    /// How the teachers are combined: arithmetic or geometric mean.
    #[arg(
        long,
        value_name = "arithmetic|geometric",
        default_value = "arithmetic"
    )]
    pub combine: String,
}

impl SoftTargetArgs {
    /// The settings these flags give: `--alpha` defaults to 1 with a store and 0 without, and
    /// `--combine` is parsed.
    pub fn settings(&self) -> Result<SoftTargetSettings> {
        Ok(SoftTargetSettings {
            soft_targets: self.soft_targets.clone(),
            temperature: self.temperature,
            alpha: self.alpha.unwrap_or(if self.soft_targets.is_some() {
                1.0
            } else {
                0.0
            }),
            combine: self.combine.parse::<Combine>()?,
        })
    }
}

/// The regularisation flags of a training run (shared by every stage that trains).
#[derive(clap::Args, Debug, Clone)]
pub struct RegularisationArgs {
    /// Dropout rate on the input units while training (0: none; the paper's teacher: 0.2).
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    pub input_dropout: f32,
    /// Dropout rate on the hidden units while training (0: none; the paper's teacher: 0.5).
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    pub hidden_dropout: f32,
    /// Bound on each unit's incoming weight vector length (default: none).
    #[arg(long, value_name = "C")]
    pub max_norm: Option<f32>,
    /// Translate training images randomly by up to this many pixels (below the images' height
    /// and width).
    #[arg(long, value_name = "PIXELS", default_value_t = 0)]
    pub jitter: usize,
    /// Mirror each training image left to right with probability 1/2, drawn from the run's seed
    /// (for natural images such as photos, not for digits or text).
    #[arg(long)]
    pub flip: bool,
}

impl RegularisationArgs {
    /// The settings these flags give.
    pub fn settings(&self) -> Regularisation {
        Regularisation {
            input_dropout: self.input_dropout,
            hidden_dropout: self.hidden_dropout,
            max_norm: self.max_norm,
            jitter: self.jitter,
            flip: self.flip,
        }
    }
}

/// The optimiser flags (shared by every stage that trains, so that they mean the same
/// everywhere).
#[derive(clap::Args, Debug, Clone)]
pub struct OptimizerArgs {
    /// The optimiser: sgd (with momentum) or adam.
    #[arg(long, value_name = "sgd|adam", default_value = "sgd")]
    pub optimizer: String,
    /// Learning rate, above 0 (default: 0.05 for sgd, 0.001 for adam).
    #[arg(long, value_name = "LR")]
    pub lr: Option<f32>,
    /// SGD momentum, at least 0 and below 1 (reached after --momentum-ramp epochs).
    #[arg(long, value_name = "M", default_value_t = 0.9)]
    pub momentum: f32,
    /// SGD momentum at the first epoch, when ramping, at least 0 and below 1 (default:
    /// --momentum).
    #[arg(long, value_name = "M")]
    pub momentum_start: Option<f32>,
    /// Epochs over which momentum rises from --momentum-start to --momentum.
    #[arg(long, value_name = "EPOCHS", default_value_t = 0)]
    pub momentum_ramp: usize,
    /// Learning-rate schedule: constant, exp:GAMMA, step:EVERY:GAMMA or cosine:EPOCHS (GAMMA
    /// above 0 and at most 1; EVERY and EPOCHS at least 1).
    #[arg(long, value_name = "SCHEDULE", default_value = "constant")]
    pub schedule: String,
}

impl OptimizerArgs {
    /// The optimiser these flags describe (SGD's default rate 0.05, Adam's 0.001).
    pub fn config(&self) -> Result<OptimizerConfig> {
        let schedule: Schedule = self
            .schedule
            .parse()
            .map_err(|e| TrainError::invalid(format!("--schedule {}: {e}", self.schedule)))?;
        match self.optimizer.as_str() {
            "sgd" => Ok(OptimizerConfig::Sgd {
                lr: self.lr.unwrap_or(0.05),
                momentum: self.momentum,
                momentum_start: self.momentum_start.unwrap_or(self.momentum),
                momentum_ramp: self.momentum_ramp,
                schedule,
            }),
            "adam" => Ok(OptimizerConfig::Adam {
                lr: self.lr.unwrap_or(1e-3),
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                schedule,
            }),
            other => Err(TrainError::invalid(format!(
                "--optimizer {other}: use sgd or adam"
            ))),
        }
    }
}

/// How long a run trains, in what steps, from what seed (shared by every stage that trains).
#[derive(clap::Args, Debug, Clone)]
pub struct LoopArgs {
    /// Passes over the training rows.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub epochs: usize,
    /// Rows per optimiser step.
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub batch: usize,
    /// Seed of the initialisation, the shuffles, dropout and jitter: the same seed, inputs and
    /// machine give the same weights, bit for bit.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
}

impl distill_cli::UserError for TrainError {
    fn is_user_error(&self) -> bool {
        TrainError::is_user_error(self)
    }
}

impl distill_cli::Report for crate::Report {
    /// 130 when the run stopped early on an interrupt (or `--max-steps`), 0 otherwise.
    fn exit_code(&self) -> ExitCode {
        if self.interrupted {
            ExitCode::from(130)
        } else {
            ExitCode::SUCCESS
        }
    }
}

/// Parses `args`, trains, and prints the report. Exit codes: 0 done, 2 bad input or usage,
/// 130 stopped by an interrupt (checkpoint saved), 1 anything else.
pub fn main_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    distill_cli::run_main(args, |args: Args| {
        distill_core::interrupt::install();
        let progress = args.progress.progress();
        args.into_config().and_then(|c| crate::run(&c, &progress))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration with every serialized setting away from its default.
    fn config() -> Config {
        Args::parse_from(
            "distill-train --data data/mnist \
             --soft-targets work/soft.parquet --temperature 8 --alpha 0.9 --combine geometric \
             --hidden 64,32 \
             --input-dropout 0.2 --hidden-dropout 0.5 --max-norm 3.5 --jitter 2 \
             --epochs 7 --batch 50 --seed 9 --validation 100 --out work/student.onnx"
                .split_whitespace(),
        )
        .into_config()
        .unwrap()
    }

    /// The JSON written into the model's `distill.training` metadata and hashed into the
    /// checkpoint's fingerprint keeps this layout byte for byte: checkpoints already on disk
    /// carry it, and resume only while their fingerprint matches.
    #[test]
    fn serialized_config_keeps_its_layout() {
        let c = config();
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(
            json,
            r#"{"selection":{"data":"data/mnist","split":"train","limit":null,"classes":{"only":null,"exclude":[]}},"validation":100,"fraction":null,"soft_targets":"work/soft.parquet","temperature":8.0,"alpha":0.9,"combine":"geometric","hidden":[64,32],"init":"torch","input_dropout":0.2,"hidden_dropout":0.5,"max_norm":3.5,"jitter":2,"optimizer":{"kind":"sgd","lr":0.05,"momentum":0.9,"momentum_start":0.9,"momentum_ramp":0,"schedule":{"kind":"constant"}},"epochs":7,"batch":50,"seed":9,"threads":null,"bias_adjust":"None","out":"work/student.onnx","metrics":null,"resume":false,"test_split":"test","max_steps":null}"#
        );
        assert_eq!(c.fingerprint(), "27162dfb5fd0a350");
        let back: Config = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
    }
}
