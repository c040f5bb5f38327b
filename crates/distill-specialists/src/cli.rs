//! The `distill-specialists` command line: flags, their defaults, and the mapping to [`Config`].

use crate::{Config, Result, SpecialistsError};
use clap::Parser;
use distill_cli::DataArgs;
use distill_data::parse_class_list;
use distill_train::cli::{LoopArgs, OptimizerArgs, RegularisationArgs, SoftTargetArgs};
use std::ffi::OsString;
use std::path::PathBuf;

/// Train one specialist per class subset of specialists.yaml (written by distill-cluster),
/// starting from the generalist's weights: outputs are the subset's classes plus a dustbin; each
/// epoch is half the subset's rows and half rows of other classes; the dustbin logit is corrected
/// for that oversampling. Writes specialist-<id>.onnx files and manifest.yaml into --out.
#[derive(Parser, Debug)]
#[command(name = "distill-specialists", version, about, long_about = None, allow_negative_numbers = true)]
#[command(mut_arg("lr", |a| a.help(
    "Learning rate (default: 0.01 for sgd, 0.0003 for adam: fine-tuning a trained network)"
)))]
#[command(mut_arg("epochs", |a| a.help(
    "The most epochs each specialist trains (an epoch: every subset row and as many others)"
)))]
#[command(mut_arg("temperature", |a| a.help(
    "Distillation temperature T of the ensemble's targets and of the specialist's softmax in the soft term"
)))]
#[command(mut_arg("soft_targets", |a| a.help(
    "Soft-target store (file or folder of parts) of the ensemble; without it, hard labels only"
)))]
pub struct Args {
    #[command(flatten)]
    pub data: DataArgs,
    /// specialists.yaml, the class subsets written by distill-cluster.
    #[arg(long, value_name = "PATH")]
    pub subsets: PathBuf,
    /// The generalist: an MLP ONNX written by distill-train on the same data.
    #[arg(long, value_name = "MODEL.onnx")]
    pub generalist: PathBuf,
    #[command(flatten)]
    pub soft: SoftTargetArgs,
    #[command(flatten)]
    pub regularisation: RegularisationArgs,
    #[command(flatten)]
    pub optimizer: OptimizerArgs,
    #[command(flatten)]
    pub run: LoopArgs,
    /// Stop a specialist after this many epochs in which the generalist combined with it did not
    /// reach a lower NLL on the held-out validation rows (the epoch with the lowest is kept; the
    /// start, the folded generalist, counts as epoch 0).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub patience: usize,
    /// Rows of the split held out for validation, as distill-train holds them out (default: 10%
    /// of the rows, at most 5000; 0: none, no early stopping).
    #[arg(long, value_name = "N")]
    pub validation: Option<usize>,
    /// Worker threads for this stage, divided among the --jobs specialists trained at once
    /// [default: all cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Specialists trained at once.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub jobs: usize,
    /// Train only these subset ids, e.g. 3 or 0,4 (others already in the folder's manifest stay).
    #[arg(long, value_name = "IDS")]
    pub only: Option<String>,
    /// The output folder: specialist-<id>.onnx and manifest.yaml.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub progress: distill_cli::ProgressArgs,
}

impl Args {
    pub fn into_config(self) -> Result<Config> {
        let mut optimizer = self.optimizer.clone();
        optimizer.lr = optimizer.lr.or(match optimizer.optimizer.as_str() {
            "adam" => Some(3e-4),
            _ => Some(0.01),
        });
        let optimizer = optimizer.config()?;
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
                if let Some(id) = ids
                    .iter()
                    .enumerate()
                    .find_map(|(k, id)| ids[..k].contains(id).then_some(id))
                {
                    return Err(SpecialistsError::invalid(format!(
                        "--only {s}: subset {id} is named twice; name each subset once"
                    )));
                }
                Some(ids.into_iter().map(|i| i as usize).collect())
            }
        };
        if let (Some(n), 2..) = (self.threads, self.jobs) {
            eprintln!(
                "note: --threads {n} is the stage's threads, divided among the {} specialists \
                 trained at once ({} each)",
                self.jobs,
                (n / self.jobs).max(1)
            );
        }
        Ok(Config {
            selection: self.data.selection()?,
            subsets: self.subsets,
            generalist: self.generalist,
            soft: self.soft.settings()?,
            regularisation: self.regularisation.settings(),
            optimizer,
            epochs: self.run.epochs,
            patience: self.patience,
            batch: self.run.batch,
            seed: self.run.seed,
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
        let progress = args.progress.progress();
        args.into_config().and_then(|c| crate::run(&c, &progress))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON written into each specialist's `distill.training` metadata, byte for byte as
    /// releases before the shared settings groups wrote it.
    #[test]
    fn serialized_config_keeps_its_layout() {
        let c = Args::parse_from(
            "distill-specialists --data data/mnist \
             --subsets work/specialists.yaml --generalist work/generalist.onnx \
             --soft-targets work/soft.parquet --temperature 8 --alpha 0.9 --combine geometric \
             --input-dropout 0.2 --hidden-dropout 0.5 --max-norm 3.5 --jitter 2 \
             --epochs 7 --patience 3 --batch 50 --seed 9 --out work/specialists"
                .split_whitespace(),
        )
        .into_config()
        .unwrap();
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"selection":{"data":"data/mnist","split":"train","limit":null,"classes":{"only":null,"exclude":[]}},"subsets":"work/specialists.yaml","generalist":"work/generalist.onnx","soft_targets":"work/soft.parquet","temperature":8.0,"alpha":0.9,"combine":"geometric","input_dropout":0.2,"hidden_dropout":0.5,"max_norm":3.5,"jitter":2,"optimizer":{"kind":"sgd","lr":0.01,"momentum":0.9,"momentum_start":0.9,"momentum_ramp":0,"schedule":{"kind":"constant"}},"epochs":7,"patience":3,"batch":50,"seed":9,"validation":null,"threads":null,"jobs":1,"only":null,"out":"work/specialists"}"#
        );
    }
}
