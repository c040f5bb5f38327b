//! The `distill-quantize` command line: flags, their translation into a [`Config`], and the exit
//! codes.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use distill_cli::{DataArgs, ProgressArgs};

use crate::{
    Calibration, Config, DEFAULT_CALIBRATION_ROWS, DEFAULT_PERCENTILE, Method, QuantizeError, run,
};

/// How static int8 calibrates activation ranges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CalibrationKind {
    /// The --percentile-th percentile of each activation's values (robust to rare outliers).
    Percentile,
    /// The smallest and largest value seen.
    Minmax,
}

/// Write an int8 or fp16 version of a float32 MLP or CNN (a distill-train student, or a specialist
/// with a folded head), then run it in ONNX Runtime beside the float model and report the largest
/// |Δlogit| and the argmax agreement.
///
/// static: int8 weights (per output channel, symmetric) and int8 activations (per tensor,
/// calibrated on the first --calibration-rows rows of --data/--split), in ONNX Runtime's QDQ
/// format. dynamic: int8 weights, activations quantised at run time. fp16: float16 weights,
/// computed in float32 (ONNX Runtime's CPU provider has no float16 Gemm). Inputs and outputs stay
/// float32 in every variant.
#[derive(Debug, Parser)]
#[command(name = "distill-quantize", version)]
pub struct Args {
    /// The float32 ONNX MLP or CNN to quantise.
    #[arg(long, value_name = "PATH")]
    pub model: PathBuf,

    /// What to write: static int8, dynamic int8 or fp16 weights.
    #[arg(long, value_name = "static|dynamic|fp16", default_value = "static")]
    pub method: Method,

    /// Static only: how activation ranges are chosen [default: minmax, as ONNX Runtime's
    /// quantize_static].
    #[arg(long, value_name = "percentile|minmax")]
    pub calibration: Option<CalibrationKind>,

    /// With --calibration percentile: the percentile of each activation's values taken as its
    /// largest (and 100 - P as its smallest) value [default: 99.99].
    #[arg(long, value_name = "P")]
    pub percentile: Option<f64>,

    /// Static only: calibrate on the first N rows of the selection (all of them when it has fewer).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CALIBRATION_ROWS)]
    pub calibration_rows: usize,

    #[command(flatten)]
    pub data: DataArgs,

    /// The quantised model to write; its folder must exist, and it may not be the --model.
    #[arg(long, value_name = "FILE.onnx")]
    pub out: PathBuf,

    #[command(flatten)]
    pub progress: ProgressArgs,
}

impl Args {
    /// The configuration these flags describe; fails on a calibration flag given with a method
    /// that does not calibrate, or a bad class list.
    pub fn into_config(self) -> Result<Config, QuantizeError> {
        if self.method != Method::Static && self.calibration.is_some() {
            return Err(QuantizeError::Flag {
                flag: "--calibration",
                message: format!(
                    "--method {} quantises no activations ahead of time, so it has no \
                     calibration; drop --calibration or use --method static",
                    self.method.name()
                ),
            });
        }
        let kind = self.calibration.unwrap_or(CalibrationKind::Minmax);
        if self.percentile.is_some() && kind != CalibrationKind::Percentile {
            return Err(QuantizeError::Flag {
                flag: "--percentile",
                message: "applies to --calibration percentile only (the default calibration is \
                          minmax); add --calibration percentile or drop --percentile"
                    .into(),
            });
        }
        let calibration = match kind {
            CalibrationKind::Minmax => Calibration::MinMax,
            CalibrationKind::Percentile => Calibration::Percentile {
                percentile: self.percentile.unwrap_or(DEFAULT_PERCENTILE),
            },
        };
        Ok(Config {
            model: self.model,
            method: self.method,
            calibration,
            calibration_rows: self.calibration_rows,
            selection: self.data.selection()?,
            out: self.out,
        })
    }
}

/// Parses `args` (the program name first), quantises, prints the report to stdout and notes to
/// stderr.
///
/// Exit codes: 0 on success (and for `--help`/`--version`); 2 for bad flags, files, data or
/// models (nothing is written); 1 when something fails inside ONNX Runtime or the machine.
pub fn main_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    distill_cli::run_main(args, |args: Args| {
        let progress = args.progress.progress();
        args.into_config()
            .and_then(|config| run(&config, &progress))
    })
}

impl distill_cli::UserError for QuantizeError {
    fn is_user_error(&self) -> bool {
        QuantizeError::is_user_error(self)
    }
}

impl distill_cli::Report for crate::Report {
    /// The notes as `note: …` lines on stderr, then the report on stdout.
    fn print(&self) {
        for note in &self.notes {
            eprintln!("note: {note}");
        }
        print!("{self}");
    }
}
