//! The `distill-cluster` command line.

use crate::{ClusterError, Config, Method, SizeBounds, run};
use clap::Parser;
use distill_core::math::Combine;
use std::path::PathBuf;
use std::process::ExitCode;

/// Groups the classes an ensemble confuses into specialist subsets: K-means on the columns of the
/// second-moment (or confusion) matrix of its predictions. Writes the subsets as YAML and a heatmap
/// PNG of the matrix with classes reordered by subset.
#[derive(Debug, Parser)]
#[command(name = "distill-cluster", version, allow_negative_numbers = true)]
pub struct Args {
    /// The soft-target store written by distill-teach (a Parquet file or a folder of parts).
    #[arg(long, value_name = "PATH")]
    pub soft_targets: PathBuf,
    /// K, the number of subsets to find (one specialist is trained per subset).
    #[arg(long, value_name = "K")]
    pub count: usize,
    /// Where to write the subsets (YAML).
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// second-moment (the matrix E[p pᵀ] of the predicted distributions; no labels needed) or
    /// confusion (needs labels).
    #[arg(
        long,
        value_name = "second-moment|confusion",
        default_value = "second-moment"
    )]
    pub method: String,
    /// Temperature of the ensemble's distributions before clustering. 1 (unlike distillation's
    /// 20) because the confusions to find are those of the ensemble's own predictions; a high T
    /// flattens every row toward uniform and blurs which classes are confused.
    #[arg(long, default_value_t = 1.0, value_name = "T")]
    pub temperature: f32,
    /// How the teachers are combined: arithmetic (mean of distributions) or geometric.
    #[arg(
        long,
        default_value = "arithmetic",
        value_name = "arithmetic|geometric"
    )]
    pub combine: String,
    /// The most subsets a class may belong to (1: none overlap).
    #[arg(long, default_value_t = 1, value_name = "M")]
    pub overlap: usize,
    /// A class joins another subset when that subset's centroid is at most this many times as far
    /// as its reference distance (its own centroid's, or the median class's if larger).
    #[arg(long, default_value_t = 1.5, value_name = "F")]
    pub overlap_factor: f64,
    /// The fewest classes in a subset.
    #[arg(long, default_value_t = 1, value_name = "A")]
    pub min_size: usize,
    /// The most classes in a subset (before overlap).
    #[arg(long, value_name = "B")]
    pub max_size: Option<usize>,
    /// Classes whose off-diagonal mass is below this share of the mean class's are left to the
    /// generalist (listed under generalist_only).
    #[arg(long, default_value_t = 0.01, value_name = "SHARE")]
    pub min_confusion: f64,
    /// Seed of the k-means restarts (the same seed and store give the same subsets).
    #[arg(long, default_value_t = 1, value_name = "S")]
    pub seed: u64,
    /// K-means runs from different seeds; the lowest inertia wins.
    #[arg(long, default_value_t = 10, value_name = "R")]
    pub restarts: usize,
    /// Mini-batch (online) K-means, for thousands of classes.
    #[arg(long)]
    pub online: bool,
    /// Where to write the heatmap PNG (default: beside --out, as <out-stem>.png).
    #[arg(long, value_name = "PATH")]
    pub heatmap: Option<PathBuf>,
    /// The rows clustered (the data set and split are the store's).
    #[command(flatten)]
    pub rows: distill_cli::RowArgs,
    /// Not a flag of this stage, which runs on one thread: given (as to the other stages), it is
    /// refused with that explanation rather than taken for another flag.
    #[arg(long, hide = true, value_name = "N", value_parser = no_threads)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub progress: distill_cli::ProgressArgs,
}

fn no_threads(_: &str) -> Result<usize, String> {
    Err("distill-cluster runs on one thread and has no --threads; leave it out".into())
}

impl Args {
    pub fn into_config(self) -> Result<Config, ClusterError> {
        let combine: Combine = self.combine.parse()?;
        let method: Method = self.method.parse()?;
        let mut config = Config::new(self.soft_targets, self.count, self.out);
        config.heatmap = self.heatmap;
        config.method = method;
        config.temperature = self.temperature;
        config.combine = combine;
        config.overlap = self.overlap;
        config.overlap_factor = self.overlap_factor;
        config.bounds = SizeBounds {
            min: self.min_size,
            max: self.max_size,
        };
        config.min_confusion = self.min_confusion;
        config.seed = self.seed;
        config.restarts = self.restarts;
        config.online = self.online;
        config.limit = self.rows.limit;
        config.classes = self.rows.classes()?;
        Ok(config)
    }
}

/// Parses `args`, runs, prints the report; exit code 2 for bad usage or input, 1 otherwise.
pub fn main_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    distill_cli::run_main(args, |args: Args| {
        let progress = args.progress.progress();
        args.into_config().and_then(|c| run(&c, &progress))
    })
}

impl distill_cli::UserError for ClusterError {
    fn is_user_error(&self) -> bool {
        ClusterError::is_user_error(self)
    }
}

impl distill_cli::Report for crate::Report {
    /// Prints the report; a closed stdout (`| head -1`) ends the output quietly.
    fn print(&self) {
        distill_core::out::print_line(self);
    }
}
