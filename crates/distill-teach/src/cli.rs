//! The `distill-teach` command line.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use distill_cli::DataArgs;
use distill_runtime::flags::{MisplacedFlag, assign};
use distill_runtime::{ModelSettingsArgs, Owners};

use crate::{Config, DEFAULT_BATCH, Provider, Result, TeachError, TeacherSpec, run};

/// Runs an ensemble of ONNX teachers over a data set and writes every teacher's raw logits into a
/// Parquet soft-target store.
///
/// Per-teacher settings (--name, --input, --output, --layout, --image-shape, --scale, --mean, --std,
/// --kind) apply to the --model given before them and override the model's sidecar
/// (MODEL.onnx.yaml), which overrides what the model itself declares.
#[derive(Debug, Parser)]
#[command(name = "distill-teach", version, allow_negative_numbers = true)]
pub struct Args {
    /// A teacher's ONNX file (repeat for each teacher).
    #[arg(long, value_name = "PATH", required = true)]
    pub model: Vec<PathBuf>,
    /// The teacher's column in the store [default: the file stem, with -2, -3, ... for repeats].
    #[arg(long, value_name = "NAME")]
    pub name: Vec<String>,
    #[command(flatten)]
    pub settings: ModelSettingsArgs,

    #[command(flatten)]
    pub data: DataArgs,
    /// The store file to write; with --shard, the folder for part-K-of-N.parquet (created if missing).
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// Execution provider: cpu, cuda (fails when CUDA is unusable) or auto (CUDA, else CPU with a note).
    #[arg(long, value_name = "cpu|cuda|auto", default_value = "cpu")]
    pub provider: Provider,
    /// Rows per batch.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BATCH)]
    pub batch: usize,
    /// Worker threads for this stage, divided among the teachers, which run at the same time
    /// [default: all cores]; --ort-threads sets each teacher's threads instead.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// ONNX Runtime intra-op threads of each teacher's session [default: --threads divided among
    /// the teachers, at least 1].
    #[arg(long, value_name = "N")]
    pub ort_threads: Option<usize>,
    /// Score only part K of N (1-based) contiguous slices of the selected rows, into
    /// OUT/part-K-of-N.parquet; the store reader takes the folder once all N parts exist.
    #[arg(long, value_name = "K/N", value_parser = parse_shard)]
    pub shard: Option<(usize, usize)>,
    /// Keep per row and teacher only the K largest logits, their class ids and the log of the
    /// rest of the probability mass (1 <= K < classes); readers expand it back to every class.
    #[arg(long, value_name = "K")]
    pub top_k: Option<usize>,
    #[command(flatten)]
    pub progress: distill_cli::ProgressArgs,

    /// For each per-teacher flag, the teacher (index into `model`) each of its values belongs to;
    /// `None` for a value given before any --model. Filled by [`Args::parse_from_args`].
    #[arg(skip)]
    pub owners: Owners,
}

fn parse_shard(s: &str) -> std::result::Result<(usize, usize), String> {
    s.split_once('/')
        .and_then(|(k, n)| Some((k.trim().parse().ok()?, n.trim().parse().ok()?)))
        .ok_or_else(|| format!("'{s}' is not K/N (part K of N, 1-based, e.g. 1/4)"))
}

impl Args {
    /// Parses the command line (the first item is the program name) and records which --model each
    /// per-teacher flag follows.
    pub fn parse_from_args<I, T>(args: I) -> std::result::Result<Args, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let matches = Args::command().try_get_matches_from(args)?;
        let mut parsed = Args::from_arg_matches(&matches)?;
        parsed.owners = owners(&matches);
        Ok(parsed)
    }

    /// The configuration these flags describe.
    pub fn into_config(self) -> Result<Config> {
        let mut teachers: Vec<TeacherSpec> = self.model.iter().map(TeacherSpec::new).collect();
        let owners = &self.owners;
        let misplaced = |e: MisplacedFlag| TeachError::usage(e.flag, e.message);
        assign(
            owners,
            "name",
            "--name",
            self.name,
            &mut teachers,
            "--model",
            |t| (format!("--model {}", t.path.display()), &mut t.name),
        )
        .map_err(misplaced)?;
        self.settings
            .assign_to(owners, &mut teachers, "--model", |t| {
                (format!("--model {}", t.path.display()), &mut t.settings)
            })
            .map_err(misplaced)?;
        if let (Some(n), None, 2..) = (self.threads, self.ort_threads, teachers.len()) {
            eprintln!(
                "note: --threads {n} is divided among the {} teachers ({} each); --ort-threads {n} \
                 gives each teacher {n}",
                teachers.len(),
                (n / teachers.len()).max(1)
            );
        }
        Ok(Config {
            teachers,
            selection: self.data.selection()?,
            out: self.out,
            provider: self.provider,
            batch: self.batch,
            threads: self.threads,
            ort_threads: self.ort_threads,
            shard: self.shard,
            top_k: self.top_k,
        })
    }
}

/// For each per-teacher flag, the index of the --model each of its values follows.
fn owners(matches: &ArgMatches) -> Owners {
    let positions = |id: &str| -> Vec<usize> {
        matches
            .indices_of(id)
            .map(|i| i.collect())
            .unwrap_or_default()
    };
    let models = positions("model");
    std::iter::once(&"name")
        .chain(ModelSettingsArgs::IDS.iter())
        .map(|&id| {
            let owner = positions(id)
                .into_iter()
                .map(|at| models.iter().rposition(|&m| m < at))
                .collect();
            (id, owner)
        })
        .collect()
}

/// Parses `args` (the first item is the program name), runs, prints the report to stdout and notes,
/// progress and errors to stderr. Exit codes: 0 success (and --help), 2 bad flags or input, 1 other
/// failures.
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

impl distill_cli::UserError for TeachError {
    fn is_user_error(&self) -> bool {
        TeachError::is_user_error(self)
    }
}

impl distill_cli::Report for crate::Report {
    /// Prints the report; a closed stdout (`| head -1`) ends the output quietly.
    fn print(&self) {
        distill_core::out::print_line(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OutputKind;

    fn config(args: &[&str]) -> Result<Config> {
        let mut argv = vec!["distill-teach"];
        argv.extend_from_slice(args);
        Args::parse_from_args(argv).unwrap().into_config()
    }

    #[test]
    fn threads_are_the_stages_and_ort_threads_each_teachers() {
        let c = config(&[
            "--model",
            "a.onnx",
            "--model",
            "b.onnx",
            "--out",
            "s.parquet",
            "--threads",
            "8",
        ])
        .unwrap();
        assert_eq!(c.threads_per_teacher(), 4);
        let c = config(&[
            "--model",
            "a.onnx",
            "--model",
            "b.onnx",
            "--out",
            "s.parquet",
            "--threads",
            "3",
        ])
        .unwrap();
        assert_eq!(c.threads_per_teacher(), 1);
        let c = config(&[
            "--model",
            "a.onnx",
            "--model",
            "b.onnx",
            "--out",
            "s.parquet",
            "--threads",
            "8",
            "--ort-threads",
            "3",
        ])
        .unwrap();
        assert_eq!(c.threads_per_teacher(), 3);
    }

    #[test]
    fn per_teacher_flags_follow_their_model() {
        let c = config(&[
            "--model",
            "a.onnx",
            "--mean",
            "0.1307",
            "--std",
            "0.3081",
            "--out",
            "s.parquet",
            "--model",
            "b.onnx",
            "--kind",
            "probabilities",
            "--name",
            "bee",
            "--model",
            "c.onnx",
            "--image-shape",
            "1,28,28",
            "--shard",
            "2/3",
            "--top-k",
            "5",
        ])
        .unwrap();
        assert_eq!(c.teachers.len(), 3);
        assert_eq!(c.teachers[0].settings.mean, Some(0.1307));
        assert_eq!(c.teachers[0].settings.std, Some(0.3081));
        assert_eq!(c.teachers[0].settings.kind, None);
        assert_eq!(c.teachers[1].settings.kind, Some(OutputKind::Probabilities));
        assert_eq!(c.teachers[1].name.as_deref(), Some("bee"));
        assert_eq!(c.teachers[1].settings.mean, None);
        assert_eq!(c.teachers[2].settings.image_shape, Some([1, 28, 28]));
        assert_eq!(c.shard, Some((2, 3)));
        assert_eq!(c.top_k, Some(5));
        assert_eq!(c.batch, DEFAULT_BATCH);
        assert_eq!(c.provider, Provider::Cpu);
    }

    #[test]
    fn misplaced_or_repeated_per_teacher_flags_are_refused() {
        let e = config(&["--mean", "0.5", "--model", "a.onnx", "--out", "s.parquet"])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--mean: given before any --model"), "{e}");
        let e = config(&[
            "--model", "a.onnx", "--std", "2", "--std", "3", "--out", "s",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("--std: given twice for --model a.onnx"), "{e}");
    }
}
