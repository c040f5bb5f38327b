//! The `distill-eval` command line: flags, their translation into a [`Config`], and the exit codes.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser};
use distill_cli::{DataArgs, ProgressArgs};
use distill_runtime::{ModelSettings, ModelSettingsArgs, Owners, Provider};

use crate::{BiasAdjust, Config, EvalError, ModelEntry, SpecialistsConfig, run};

/// Evaluate ONNX models (and their ensemble) on a labelled data split: errors, per-class errors, confusion,
/// NLL, calibration, top-k accuracy, agreement, parameters, file size, latency and throughput.
///
/// Each model's settings (input, output, layout, normalisation, logits or probabilities) are, as in
/// distill-teach: the per-model flags after its --model or --teacher (--input, --output, --layout,
/// --image-shape, --scale, --mean, --std, --kind), over its sidecar `MODEL.onnx.yaml`, over what the
/// model declares. --teachers-of STORE evaluates a store's teachers with the settings distill-teach
/// recorded for them.
#[derive(Debug, Parser)]
#[command(name = "distill-eval", version, allow_negative_numbers = true, mut_arg("split", |a| a.default_value("test")))]
pub struct Args {
    /// An ONNX model to evaluate (repeat for several).
    #[arg(long = "model", value_name = "PATH")]
    pub models: Vec<PathBuf>,

    /// An ONNX teacher to evaluate; with --ensemble, the ensemble is made of the teachers when any are given,
    /// otherwise of every --model (repeat for several).
    #[arg(long = "teacher", value_name = "PATH")]
    pub teachers: Vec<PathBuf>,

    /// The name of the --model or --teacher before it, in the table and metrics.json; give the
    /// name its column has in the store, as distill-teach's --name [default: the file stem, with
    /// -2, -3, ... for repeats, as distill-teach names columns].
    #[arg(long = "name", value_name = "NAME")]
    pub names: Vec<String>,

    /// For each --name, the entry (models first, then teachers) it follows on the command line;
    /// recorded by [`Args::parse_from_args`].
    #[arg(skip)]
    pub name_owners: Option<Vec<Option<usize>>>,

    #[command(flatten)]
    pub settings: ModelSettingsArgs,

    /// Evaluate every teacher of this soft-target store (distill-teach --out) as a --teacher,
    /// under its column name and with the settings distill-teach ran it with (recorded in the
    /// store), so teach and eval see the same inputs; each model file must still be where the store
    /// says, unchanged.
    #[arg(long, value_name = "STORE")]
    pub teachers_of: Option<PathBuf>,

    /// For each per-model settings flag, the entry (models first, then teachers) each of its
    /// values follows; recorded by [`Args::parse_from_args`].
    #[arg(skip)]
    pub setting_owners: Owners,

    /// Also evaluate the arithmetic and geometric mean ensembles (at T = 1) of the teachers, or of all models.
    #[arg(long)]
    pub ensemble: bool,

    #[command(flatten)]
    pub data: DataArgs,

    /// Add DELTA to class CLASS's logit (ln p for probability models) of every model before evaluating, e.g.
    /// 3=+3.5,8=-7.6 (may be repeated).
    #[arg(long, value_name = "CLASS=DELTA,...", allow_hyphen_values = true)]
    pub bias_adjust: Vec<String>,

    /// ONNX Runtime execution provider: cpu, cuda, or auto (CUDA when usable, else CPU with a note).
    #[arg(long, value_name = "cpu|cuda|auto", default_value = "cpu")]
    pub provider: Provider,

    /// Worker threads for this stage: ONNX Runtime intra-op threads of the model being evaluated
    /// (models run one after another), at most 1024 [default: all cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Rows per inference call while evaluating.
    #[arg(long = "batch", value_name = "N", default_value_t = 1024)]
    pub batch_size: usize,

    /// Timed batch-1 runs per model for the latency (throughput at batch 256 uses a tenth, at least 3); 0 skips
    /// the speed measurement.
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub latency_runs: usize,

    /// Combine the generalist (the --model with the manifest's SHA-256; without --model, the
    /// manifest's generalist) with the specialists of this distill-specialists manifest.yaml, and
    /// report the combined errors and the rows by the number of active specialists covering the label.
    #[arg(long = "manifest", alias = "specialists", value_name = "MANIFEST")]
    pub specialists: Option<PathBuf>,

    /// With --manifest: how many of the generalist's most probable classes decide which
    /// specialists are active (default 1, as in the paper).
    #[arg(long, value_name = "N")]
    pub top_n: Option<usize>,

    /// Write the metrics as JSON (schema_version 1) to this file; its folder must exist.
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,

    /// Write each row's label and, for every model, ensemble and the specialists' combination,
    /// its most probable classes with their probabilities to this Parquet file.
    #[arg(long, value_name = "FILE.parquet")]
    pub predictions: Option<PathBuf>,

    /// With --predictions: the most probable classes kept per row and model.
    #[arg(long, value_name = "K", default_value_t = crate::predictions::DEFAULT_TOP_K)]
    pub predictions_k: usize,

    #[command(flatten)]
    pub progress: ProgressArgs,
}

impl Args {
    /// Parses the command line (the program name first) and records which --model or --teacher
    /// each --name follows.
    pub fn parse_from_args<I, T>(args: I) -> Result<Args, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let matches = Args::command().try_get_matches_from(args)?;
        let mut parsed = Args::from_arg_matches(&matches)?;
        let positions = |id: &str| -> Vec<usize> {
            matches
                .indices_of(id)
                .map(|i| i.collect())
                .unwrap_or_default()
        };
        let (models, teachers) = (positions("models"), positions("teachers"));
        let owners = |id: &str| -> Vec<Option<usize>> {
            positions(id)
                .into_iter()
                .map(|at| {
                    let model = models.iter().rposition(|&m| m < at).map(|k| (models[k], k));
                    let teacher = teachers
                        .iter()
                        .rposition(|&t| t < at)
                        .map(|k| (teachers[k], models.len() + k));
                    match (model, teacher) {
                        (Some(m), Some(t)) => Some(if m.0 > t.0 { m.1 } else { t.1 }),
                        (m, t) => m.or(t).map(|(_, entry)| entry),
                    }
                })
                .collect()
        };
        parsed.name_owners = Some(owners("names"));
        parsed.setting_owners = ModelSettingsArgs::IDS
            .iter()
            .map(|&id| (id, owners(id)))
            .collect();
        Ok(parsed)
    }

    /// The configuration these flags describe; fails on a bad class list or --bias-adjust, or no model.
    pub fn into_config(mut self) -> Result<Config, EvalError> {
        if self.top_n.is_some() && self.specialists.is_none() {
            return Err(EvalError::TopNWithoutSpecialists);
        }
        if self.models.is_empty() && self.teachers.is_empty() && self.teachers_of.is_none() {
            match &self.specialists {
                Some(manifest) => self
                    .models
                    .push(crate::specialists::generalist_of(manifest)?),
                None => return Err(EvalError::NoModels),
            }
        }
        let no_teachers = self.teachers.is_empty() && self.teachers_of.is_none();
        let entry = |path: PathBuf, teacher: bool| ModelEntry {
            path,
            settings: ModelSettings::default(),
            ensemble_member: teacher || no_teachers,
            name: None,
            teacher,
        };
        let mut models: Vec<ModelEntry> =
            self.models.into_iter().map(|p| entry(p, false)).collect();
        models.extend(self.teachers.into_iter().map(|p| entry(p, true)));
        let owners = &self.setting_owners;
        self.settings
            .assign_to(owners, &mut models, "--model or --teacher", |m| {
                (m.path.display().to_string(), &mut m.settings)
            })
            .map_err(|e| EvalError::PerModelFlag {
                flag: e.flag,
                message: e.message,
            })?;
        for (k, name) in self.names.into_iter().enumerate() {
            let owner = match &self.name_owners {
                Some(owners) => owners.get(k).copied().flatten(),
                None if models.len() == 1 => Some(0),
                None => None,
            };
            let Some(m) = owner.and_then(|o| models.get_mut(o)) else {
                return Err(EvalError::NameWithoutModel { name });
            };
            if m.name.is_some() {
                return Err(EvalError::NameWithoutModel { name });
            }
            m.name = Some(name);
        }
        Ok(Config {
            models,
            selection: self.data.selection()?,
            ensemble: self.ensemble,
            bias_adjust: BiasAdjust::parse_all(&self.bias_adjust)?,
            provider: self.provider,
            threads: match self.threads {
                Some(0) => {
                    eprintln!(
                        "note: --threads 0 is now the default (leave --threads out); the old spelling goes in the next release"
                    );
                    all_cores()
                }
                Some(n) if n > distill_core::MAX_THREADS => {
                    return Err(distill_core::CoreError::invalid(format!(
                        "--threads {n}: at most {} worker threads; leave --threads out for all cores",
                        distill_core::MAX_THREADS
                    ))
                    .into());
                }
                Some(n) => n,
                None => all_cores(),
            },
            batch_size: self.batch_size,
            latency_runs: self.latency_runs,
            specialists: self.specialists.map(|manifest| SpecialistsConfig {
                manifest,
                top_n: self.top_n.unwrap_or(1),
            }),
            out: self.out,
            predictions: self.predictions.map(|p| (p, self.predictions_k)),
            teachers_of: self.teachers_of,
        })
    }
}

/// Every core of the machine, as the other stages count them: the default worker threads.
fn all_cores() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(distill_core::MAX_THREADS)
}

/// Parses `args` (the program name first), evaluates, prints the table to stdout and notes to stderr.
///
/// Exit codes: 0 on success (and for `--help`/`--version`); 2 for bad flags, files, data or models; 1 when
/// something fails inside ONNX Runtime or the machine. Errors are printed as `error: …` on stderr.
pub fn main_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    distill_cli::run_main_with(args, Args::parse_from_args, |args: Args| {
        let progress = args.progress.progress();
        args.into_config()
            .and_then(|config| run(&config, &progress))
    })
}

impl distill_cli::UserError for EvalError {
    fn is_user_error(&self) -> bool {
        EvalError::is_user_error(self)
    }
}

impl distill_cli::Report for crate::Report {
    /// The notes as `note: …` lines on stderr, then the table on stdout.
    fn print(&self) {
        for note in &self.notes {
            eprintln!("note: {note}");
        }
        distill_core::out::print(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use distill_data::Split;

    #[test]
    fn teachers_form_the_ensemble_when_given() {
        let args = Args::try_parse_from([
            "distill-eval",
            "--model",
            "s.onnx",
            "--teacher",
            "a.onnx",
            "--teacher",
            "b.onnx",
            "--ensemble",
            "--bias-adjust",
            "3=-1.5",
            "--only-classes",
            "3,4",
        ])
        .unwrap();
        let config = args.into_config().unwrap();
        let members: Vec<bool> = config.models.iter().map(|m| m.ensemble_member).collect();
        assert_eq!(members, vec![false, true, true]);
        assert_eq!(config.bias_adjust.to_string(), "3=-1.5");
        assert_eq!(config.selection.classes.only, Some(vec![3, 4]));
        assert_eq!(config.selection.split, Split::Test);
        assert_eq!(config.latency_runs, 200);

        let config = Args::try_parse_from(["distill-eval", "--model", "a", "--model", "b"])
            .unwrap()
            .into_config()
            .unwrap();
        assert!(config.models.iter().all(|m| m.ensemble_member));
        let err = Args::try_parse_from(["distill-eval"])
            .unwrap()
            .into_config()
            .unwrap_err();
        assert!(matches!(err, EvalError::NoModels));
    }

    #[test]
    fn names_follow_their_model_or_teacher() {
        let config = |argv: &[&str]| {
            let mut all = vec!["distill-eval"];
            all.extend_from_slice(argv);
            Args::parse_from_args(all).unwrap().into_config()
        };
        let c = config(&[
            "--teacher",
            "a.onnx",
            "--name",
            "t1",
            "--model",
            "s.onnx",
            "--teacher",
            "b.onnx",
            "--name",
            "t2",
        ])
        .unwrap();
        let names: Vec<(&str, Option<&str>)> = c
            .models
            .iter()
            .map(|m| (m.path.to_str().unwrap(), m.name.as_deref()))
            .collect();
        assert_eq!(
            names,
            [
                ("s.onnx", None),
                ("a.onnx", Some("t1")),
                ("b.onnx", Some("t2"))
            ]
        );
        for bad in [
            &["--name", "x", "--model", "a.onnx"][..],
            &["--model", "a.onnx", "--name", "x", "--name", "y"][..],
        ] {
            let e = config(bad).unwrap_err();
            assert!(matches!(e, EvalError::NameWithoutModel { .. }), "{e}");
        }
        let c = config(&[
            "--model", "a.onnx", "--name", "x", "--model", "b.onnx", "--name", "x",
        ])
        .unwrap();
        assert!(matches!(
            crate::check_values(&c),
            Err(EvalError::Name { .. })
        ));
    }
}
