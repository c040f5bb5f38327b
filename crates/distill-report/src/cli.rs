//! The `distill-report` command line: flags, their translation into a [`Config`], and the exit
//! codes (0 written; 2 a bad flag or input, nothing written; 1 anything else).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use crate::{Config, PaperFigure, ReportError, run};

/// Draw one self-contained HTML page of a distillation from the files its stages wrote: the
/// results table, learning curves, confusion matrices, per-class errors, reliability diagrams,
/// the class clusters, error against size and latency, the specialists' errors and the provenance.
#[derive(Debug, Parser)]
#[command(name = "distill-report", version)]
pub struct Args {
    /// distill-eval's metrics.json.
    #[arg(long, value_name = "PATH")]
    pub metrics: Option<PathBuf>,
    /// A training record, MODEL.metrics.csv (repeat for several; default: the records beside the
    /// models of --metrics).
    #[arg(long = "train-log", value_name = "PATH")]
    pub train_logs: Vec<PathBuf>,
    /// The class subsets distill-cluster wrote (its --out, specialists.yaml), as distill-specialists
    /// --subsets takes them.
    #[arg(long = "subsets", alias = "specialists", value_name = "PATH")]
    pub specialists: Option<PathBuf>,
    /// The spelling the subsets were given with (`--subsets`, or the old `--specialists`), for
    /// messages; recorded by [`Args::parse_from_args`].
    #[arg(skip)]
    pub subsets_flag: &'static str,
    /// The specialists' manifest.yaml.
    #[arg(long, value_name = "PATH")]
    pub manifest: Option<PathBuf>,
    /// The soft-target store (a file or a folder of parts): its teachers and their SHA-256.
    #[arg(long, value_name = "PATH")]
    pub store: Option<PathBuf>,
    /// The pipeline file: its SHA-256, and from its lock (beside it) which stages completed.
    #[arg(long, value_name = "PIPELINE.yaml")]
    pub pipeline: Option<PathBuf>,
    /// The paper's test errors for an entry of metrics.json, shown beside ours, e.g. student=74
    /// (repeat for several).
    #[arg(long, value_name = "NAME=ERRORS")]
    pub paper: Vec<PaperFigure>,
    /// The page's title.
    #[arg(long, value_name = "TEXT")]
    pub title: Option<String>,
    /// Draw the page even when named inputs are missing, listing which stages' outputs are.
    #[arg(long)]
    pub allow_missing: bool,
    /// Where to write the page.
    #[arg(long, value_name = "PATH", default_value = "report.html")]
    pub out: PathBuf,
    #[command(flatten)]
    pub progress: distill_cli::ProgressArgs,
}

impl Args {
    /// Parses the command line (the program name first) and records how the subsets were spelled.
    pub fn parse_from_args<I, T>(args: I) -> Result<Args, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let old = args.iter().take_while(|a| *a != "--").any(|a| {
            a.to_str()
                .is_some_and(|a| a == "--specialists" || a.starts_with("--specialists="))
        });
        let mut parsed = Args::try_parse_from(args)?;
        parsed.subsets_flag = if old { "--specialists" } else { "--subsets" };
        Ok(parsed)
    }

    /// The configuration these flags describe.
    pub fn into_config(self) -> Result<Config, ReportError> {
        Ok(Config {
            metrics: self.metrics,
            train_logs: self.train_logs,
            specialists: self.specialists,
            subsets_flag: self.subsets_flag,
            manifest: self.manifest,
            store: self.store,
            pipeline: self.pipeline,
            paper: self.paper,
            title: self.title,
            allow_missing: self.allow_missing,
            out: self.out,
        })
    }
}

/// Parses `args` (the program name first), draws the page, prints where it went.
pub fn main_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    distill_cli::run_main_with(args, Args::parse_from_args, |a: Args| {
        let progress = a.progress.progress();
        let config = a.into_config()?;
        let started = std::time::Instant::now();
        let report = run(&config)?;
        progress.detail(format_args!(
            "drew {} figures in {:.1} s",
            report.figures.len(),
            started.elapsed().as_secs_f64()
        ));
        Ok::<_, ReportError>(report)
    })
}
