//! The `distill-teach` command line.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use distill_cli::DataArgs;
use distill_runtime::{parse_image_shape, parse_kind, parse_layout};

use crate::{
    Config, DEFAULT_BATCH, LayoutKind, OutputKind, Provider, Result, TeachError, TeacherSpec, run,
};

/// The flags that describe one teacher: each applies to the `--model` before it.
const PER_MODEL: [&str; 9] = [
    "name",
    "input",
    "output",
    "layout",
    "image_shape",
    "scale",
    "mean",
    "std",
    "kind",
];

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
    /// The model input to feed (needed only when it has several float inputs).
    #[arg(long, value_name = "NAME")]
    pub input: Vec<String>,
    /// The model output to read (needed only when it has several candidate outputs).
    #[arg(long, value_name = "NAME")]
    pub output: Vec<String>,
    /// flat ([N, D]) or image ([N, C, H, W]) [default: from the input's rank].
    #[arg(long, value_name = "flat|image", value_parser = parse_layout)]
    pub layout: Vec<LayoutKind>,
    /// C,H,W of the image layout, when the model leaves them dynamic.
    #[arg(long, value_name = "C,H,W", value_parser = parse_image_shape)]
    pub image_shape: Vec<[usize; 3]>,
    /// Multiplies each raw value in [0, 1] first (255 for a model trained on bytes) [default: 1].
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub scale: Vec<f32>,
    /// Subtracted after scaling [default: 0].
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub mean: Vec<f32>,
    /// Divides last [default: 1].
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub std: Vec<f32>,
    /// What the output holds: logits or probabilities [default: from the model's outputs].
    #[arg(long, value_name = "logits|probabilities", value_parser = parse_kind)]
    pub kind: Vec<OutputKind>,

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
    pub owners: BTreeMap<&'static str, Vec<Option<usize>>>,
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
        assign(owners, "name", "--name", self.name, &mut teachers, |t| {
            &mut t.name
        })?;
        assign(owners, "input", "--input", self.input, &mut teachers, |t| {
            &mut t.settings.input
        })?;
        assign(
            owners,
            "output",
            "--output",
            self.output,
            &mut teachers,
            |t| &mut t.settings.output,
        )?;
        assign(
            owners,
            "layout",
            "--layout",
            self.layout,
            &mut teachers,
            |t| &mut t.settings.layout,
        )?;
        assign(
            owners,
            "image_shape",
            "--image-shape",
            self.image_shape,
            &mut teachers,
            |t| &mut t.settings.image_shape,
        )?;
        assign(owners, "scale", "--scale", self.scale, &mut teachers, |t| {
            &mut t.settings.scale
        })?;
        assign(owners, "mean", "--mean", self.mean, &mut teachers, |t| {
            &mut t.settings.mean
        })?;
        assign(owners, "std", "--std", self.std, &mut teachers, |t| {
            &mut t.settings.std
        })?;
        assign(owners, "kind", "--kind", self.kind, &mut teachers, |t| {
            &mut t.settings.kind
        })?;
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
fn owners(matches: &ArgMatches) -> BTreeMap<&'static str, Vec<Option<usize>>> {
    let positions = |id: &str| -> Vec<usize> {
        matches
            .indices_of(id)
            .map(|i| i.collect())
            .unwrap_or_default()
    };
    let models = positions("model");
    PER_MODEL
        .iter()
        .map(|&id| {
            let owner = positions(id)
                .into_iter()
                .map(|at| models.iter().rposition(|&m| m < at))
                .collect();
            (id, owner)
        })
        .collect()
}

/// Gives each value of a per-teacher flag to the teacher it follows. Without recorded positions (an
/// `Args` not made by [`Args::parse_from_args`]) the values can only go to a lone teacher.
fn assign<T>(
    owners: &BTreeMap<&'static str, Vec<Option<usize>>>,
    id: &str,
    flag: &'static str,
    values: Vec<T>,
    teachers: &mut [TeacherSpec],
    field: impl Fn(&mut TeacherSpec) -> &mut Option<T>,
) -> Result<()> {
    if values.is_empty() {
        return Ok(());
    }
    let recorded = owners.get(id).filter(|o| o.len() == values.len());
    for (i, value) in values.into_iter().enumerate() {
        let owner = match recorded {
            Some(o) => o[i],
            None if teachers.len() == 1 => Some(0),
            None => {
                return Err(TeachError::usage(
                    flag,
                    "cannot tell which --model this applies to; put it after its --model",
                ));
            }
        };
        let Some(t) = owner.and_then(|o| teachers.get_mut(o)) else {
            return Err(TeachError::usage(
                flag,
                "given before any --model; per-teacher flags apply to the --model before them, \
                 so put it after the --model it describes",
            ));
        };
        let path = t.path.display().to_string();
        let slot = field(t);
        if slot.is_some() {
            return Err(TeachError::usage(
                flag,
                format!("given twice for --model {path}; give it once after that --model"),
            ));
        }
        *slot = Some(value);
    }
    Ok(())
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
