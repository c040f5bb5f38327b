//! The `distill-report` command line: flags, their translation into a [`Config`], and the exit
//! codes (0 written; 2 a bad flag or input, nothing written; 1 anything else).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use crate::{Config, PaperFigure, ReportError, run};

/// Draw one self-contained HTML page of a distillation from the files its stages wrote: the
/// results table, learning curves, confusion matrices, per-class errors, reliability diagrams,
/// the class clusters, error against size and latency, the specialists' gains and the provenance.
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
    /// distill-cluster's specialists.yaml.
    #[arg(long, value_name = "PATH")]
    pub specialists: Option<PathBuf>,
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
}

impl Args {
    /// The configuration these flags describe.
    pub fn into_config(self) -> Result<Config, ReportError> {
        Ok(Config {
            metrics: self.metrics,
            train_logs: self.train_logs,
            specialists: self.specialists,
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
    distill_cli::run_main(args, |a: Args| run(&a.into_config()?))
}
