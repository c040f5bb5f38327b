//! The `distill` command line: `distill run PIPELINE.yaml [...]`, and `distill <stage> ...` for
//! each stage tool.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use crate::pipeline::{self, Executor, Force, Options, SlurmOptions};

const USAGE: &str = "\
distill: distil an ensemble of ONNX teachers into one small ONNX student

usage:
  distill run PIPELINE.yaml [--set NAME=VALUE]... [--force [STAGE]] [--from STAGE] [--to STAGE]
                            [--dry-run] [--jobs N]
                            [--executor slurm [--partition P] [--slurm-opt '...'] [--no-wait]]
  distill status PIPELINE.yaml [--set NAME=VALUE]...
                            one line per stage: up to date, or why it would run
  distill metrics [PIPELINE.yaml|FOLDER]... [--json]
                            every eval stage's key numbers across pipelines (default: pipelines/)
  distill train ARGS...     train a teacher or student (same as distill-train)
  distill teach ARGS...     run teachers into a soft-target store (same as distill-teach)
  distill cluster ARGS...   specialist class subsets from a store (same as distill-cluster)
  distill specialists ARGS... train one specialist per subset (same as distill-specialists)
  distill eval ARGS...      evaluate models and ensembles (same as distill-eval)
  distill quantize ARGS...  an int8 or fp16 version of a student (same as distill-quantize)
  distill report ARGS...    one HTML page of a distillation's results (same as distill-report)

`distill run --help` and `distill <stage> --help` describe the flags.";

/// Run a YAML pipeline of distill stages: stages whose arguments, inputs and outputs are unchanged
/// since the lock file (PIPELINE.lock, beside the pipeline) recorded them are skipped.
#[derive(Debug, Parser)]
#[command(name = "distill run", version)]
pub struct RunArgs {
    /// The pipeline file, e.g. pipelines/mnist.yaml.
    #[arg(value_name = "PIPELINE.yaml")]
    pub pipeline: Option<PathBuf>,
    /// Run stages even when up to date: every selected stage, or only STAGE (a stage name, or a
    /// foreach stage's name for all its expansions).
    #[arg(long, value_name = "STAGE", num_args = 0..=1, default_missing_value = "")]
    pub force: Option<String>,
    /// Start at this stage (in the printed order).
    #[arg(long, value_name = "STAGE")]
    pub from: Option<String>,
    /// Stop after this stage (in the printed order).
    #[arg(long, value_name = "STAGE")]
    pub to: Option<String>,
    /// Print the plan, and why each stage would run or be skipped; run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Run up to N independent stages at once.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub jobs: usize,
    /// Replace the pipeline's variable NAME (under `vars:`) with VALUE, read as YAML (4 is a
    /// number, [1, 2] a list); repeat for several. Stages whose resolved args change run again.
    #[arg(short = 'S', long = "set", value_name = "NAME=VALUE", value_parser = pipeline::parse_set)]
    pub set: Vec<(String, String)>,
    #[command(flatten)]
    pub progress: distill_cli::ProgressArgs,
    /// Where the stages run: here (local, the default), or as Slurm jobs (slurm: one sbatch job
    /// per out-of-date stage, a job array per foreach stage, afterok dependencies).
    #[arg(long, value_enum, value_name = "local|slurm", default_value_t = ExecutorArg::Local)]
    pub executor: ExecutorArg,
    /// With --executor slurm: the partition of every job.
    #[arg(long, value_name = "P")]
    pub partition: Option<String>,
    /// With --executor slurm: more sbatch options for every job, e.g. --slurm-opt='--time=30
    /// --mem=4G' (repeatable).
    #[arg(long, value_name = "'OPTIONS'", allow_hyphen_values = true)]
    pub slurm_opt: Vec<String>,
    /// With --executor slurm: print the job ids and return once submitted; a later `distill
    /// run` records the jobs that finished and does not submit the ones still running again.
    #[arg(long)]
    pub no_wait: bool,
}

/// `--executor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExecutorArg {
    Local,
    Slurm,
}

/// Show, one line per stage, whether each stage of a pipeline is up to date or why it would run
/// (the plan of `distill run --dry-run`, in short); runs nothing.
#[derive(Debug, Parser)]
#[command(name = "distill status", version)]
pub struct StatusArgs {
    /// The pipeline file, e.g. pipelines/mnist.yaml.
    #[arg(value_name = "PIPELINE.yaml")]
    pub pipeline: PathBuf,
    /// Replace the pipeline's variable NAME with VALUE, as `distill run --set` does.
    #[arg(short = 'S', long = "set", value_name = "NAME=VALUE", value_parser = pipeline::parse_set)]
    pub set: Vec<(String, String)>,
}

/// Show the key numbers (errors, NLL, ECE, parameters) of every completed eval stage of each
/// pipeline, read from the lock files and the metrics.json files they name; runs nothing.
#[derive(Debug, Parser)]
#[command(name = "distill metrics", version)]
pub struct MetricsArgs {
    /// Pipeline files, or folders of them.
    #[arg(value_name = "PIPELINE.yaml|FOLDER", default_value = "pipelines")]
    pub pipelines: Vec<PathBuf>,
    /// Print the rows as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl RunArgs {
    /// The pipeline file and the options; `--force PIPELINE.yaml` reads as the pipeline and
    /// `--force`, since a stage name never ends in `.yaml`.
    pub fn resolve(self) -> Result<(PathBuf, Options), String> {
        let mut force = self.force;
        let mut pipeline = self.pipeline;
        if pipeline.is_none()
            && let Some(f) = &force
            && (f.ends_with(".yaml") || f.ends_with(".yml"))
        {
            pipeline = Some(PathBuf::from(f));
            force = Some(String::new());
        }
        let pipeline =
            pipeline.ok_or("give the pipeline file, e.g. distill run pipelines/mnist.yaml")?;
        if self.jobs == 0 {
            return Err("--jobs must be at least 1".into());
        }
        let executor = match self.executor {
            ExecutorArg::Local => {
                let slurm_only = [
                    (self.partition.is_some(), "--partition"),
                    (!self.slurm_opt.is_empty(), "--slurm-opt"),
                    (self.no_wait, "--no-wait"),
                ];
                if let Some((_, flag)) = slurm_only.iter().find(|(given, _)| *given) {
                    return Err(format!(
                        "{flag} applies to Slurm jobs; add --executor slurm (the local executor \
                         runs the stages in this process)"
                    ));
                }
                Executor::Local
            }
            ExecutorArg::Slurm => {
                if let Some(p) = &self.partition
                    && (p.is_empty() || p.contains(char::is_whitespace))
                {
                    return Err(format!(
                        "--partition `{p}` is not a partition name (`sinfo` lists them)"
                    ));
                }
                Executor::Slurm(SlurmOptions {
                    partition: self.partition,
                    opts: SlurmOptions::parse_opts(&self.slurm_opt)?,
                    wait: !self.no_wait,
                })
            }
        };
        Ok((
            pipeline,
            Options {
                force: match force {
                    None => Force::None,
                    Some(s) if s.is_empty() => Force::All,
                    Some(s) => Force::Stage(s),
                },
                from: self.from,
                to: self.to,
                dry_run: self.dry_run,
                jobs: self.jobs,
                set: self.set,
                progress: self.progress.progress(),
                executor,
            },
        ))
    }
}

/// Dispatches `distill run ...` and `distill <stage> ...`. Exit codes: 0 done; 2 a mistake in the
/// pipeline, the flags or a stage's input; 130 interrupted; 1 anything else.
pub fn main_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let command = args.get(1).and_then(|a| a.to_str()).unwrap_or_default();
    let rest = || args.iter().skip(2).cloned();
    let stage_argv =
        |stage: &str| std::iter::once(OsString::from(format!("distill {stage}"))).chain(rest());
    match command {
        "run" => run_main(std::iter::once(OsString::from("distill run")).chain(rest())),
        "status" => status_main(std::iter::once(OsString::from("distill status")).chain(rest())),
        "metrics" => metrics_main(std::iter::once(OsString::from("distill metrics")).chain(rest())),
        "train" => distill_train::cli::main_from(stage_argv("train")),
        "teach" => distill_teach::cli::main_from(stage_argv("teach")),
        "cluster" => distill_cluster::cli::main_from(stage_argv("cluster")),
        "specialists" => distill_specialists::cli::main_from(stage_argv("specialists")),
        "eval" => distill_eval::cli::main_from(stage_argv("eval")),
        "quantize" => distill_quantize::cli::main_from(stage_argv("quantize")),
        "report" => distill_report::cli::main_from(stage_argv("report")),
        "-h" | "--help" | "help" => {
            distill_core::out::print_line(USAGE);
            ExitCode::SUCCESS
        }
        "-V" | "--version" => {
            distill_core::out::print_line(format_args!("distill {}", distill_core::TOOL_VERSION));
            ExitCode::SUCCESS
        }
        "" => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
        other => {
            eprintln!("error: unknown command `{other}`\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Parses `args` with `A`'s clap parser; on a clap error (or `--help`), prints it and gives the
/// exit code: 2 for a usage error, 0 for help and version.
fn parse<A: Parser>(args: impl Iterator<Item = OsString>) -> Result<A, ExitCode> {
    A::try_parse_from(args).map_err(|e| {
        let _ = e.print();
        ExitCode::from(if e.use_stderr() { 2 } else { 0 })
    })
}

fn run_main(args: impl Iterator<Item = OsString>) -> ExitCode {
    let parsed = match parse::<RunArgs>(args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let (file, options) = match parsed.resolve() {
        Ok(r) => r,
        Err(m) => {
            eprintln!("error: {m}");
            return ExitCode::from(2);
        }
    };
    match pipeline::run(&file, &options) {
        Ok(summary) => {
            pipeline::say(format_args!("{summary}"));
            match &summary.error {
                None => ExitCode::SUCCESS,
                Some(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn status_main(args: impl Iterator<Item = OsString>) -> ExitCode {
    let parsed = match parse::<StatusArgs>(args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let options = Options {
        dry_run: true,
        set: parsed.set,
        ..Options::default()
    };
    match pipeline::run(&parsed.pipeline, &options) {
        Ok(summary) => {
            pipeline::say(format_args!("{}", status_text(&summary)));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn metrics_main(args: impl Iterator<Item = OsString>) -> ExitCode {
    let parsed = match parse::<MetricsArgs>(args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let files = match crate::metrics::pipeline_files(&parsed.pipelines) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let table = crate::metrics::collect(&files);
    if parsed.json {
        match serde_json::to_string_pretty(&table) {
            Ok(text) => pipeline::say(format_args!("{text}")),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        pipeline::say(format_args!("{}", table.text()));
    }
    ExitCode::SUCCESS
}

/// `distill status`: one line per stage (`up to date`, or `runs: WHY`), then the counts.
pub fn status_text(summary: &pipeline::Summary) -> String {
    let w = summary
        .rows
        .iter()
        .map(|r| r.stage.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    let mut stale = 0;
    for r in &summary.rows {
        let why = r.reason.lines().next().unwrap_or_default();
        let line = match r.status {
            pipeline::Status::Skipped => "up to date".to_string(),
            pipeline::Status::WouldRun => {
                stale += 1;
                format!("runs: {why}")
            }
            _ => why.to_string(),
        };
        out.push_str(&format!("{:<w$}  {line}\n", r.stage));
    }
    out.push_str(&format!(
        "{}: {} of {} stages up to date",
        summary.pipeline.display(),
        summary.rows.len() - stale,
        summary.rows.len()
    ));
    out
}
