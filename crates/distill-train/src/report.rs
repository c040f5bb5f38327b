//! What a training run did, as printed and as JSON.

use super::*;

/// What a training run did.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub mode: String,
    pub model: Option<PathBuf>,
    pub best_model: Option<PathBuf>,
    pub metrics: PathBuf,
    pub checkpoint: PathBuf,
    pub parameters: usize,
    pub rows: usize,
    pub epochs: usize,
    pub seconds: f64,
    pub samples_per_s: f64,
    pub last: Option<EpochRecord>,
    pub bias: Vec<ClassBias>,
    /// Validation errors of the saved model (after bias adjustment), and the slice's size.
    pub val_errors: Option<(usize, usize)>,
    /// Errors on `test_split` before bias adjustment, after it, and the split's size.
    pub test_errors: Option<TestErrors>,
    pub interrupted: bool,
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TestErrors {
    pub split: String,
    pub rows: usize,
    pub errors: usize,
    pub errors_before_bias: usize,
    /// Errors per true class (after bias adjustment).
    pub per_class: Vec<usize>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        if self.interrupted {
            writeln!(
                f,
                "stopped early; checkpoint saved to {}; run again with --resume to continue",
                self.checkpoint.display()
            )?;
        }
        if let Some(r) = &self.last {
            writeln!(f, "last epoch {}: {}", r.epoch, r.figures_text())?;
        }
        for b in &self.bias {
            writeln!(f, "bias of class {} adjusted by {:+.2}", b.class, b.delta)?;
        }
        if let Some((e, n)) = self.val_errors {
            writeln!(f, "validation errors: {e} of {n}")?;
        }
        if let Some(t) = &self.test_errors {
            if self.bias.is_empty() {
                writeln!(f, "{} errors: {} of {}", t.split, t.errors, t.rows)?;
            } else {
                writeln!(
                    f,
                    "{} errors: {} of {} ({} before bias adjustment)",
                    t.split, t.errors, t.rows, t.errors_before_bias
                )?;
            }
        }
        if let Some(m) = &self.model {
            writeln!(f, "model: {} ({} parameters)", m.display(), self.parameters)?;
        }
        write!(
            f,
            "{}: {} rows x {} epochs in {:.1} s ({} rows/s); metrics: {}",
            self.mode,
            self.rows,
            self.epochs,
            self.seconds,
            distill_progress::human_rate(self.samples_per_s),
            self.metrics.display()
        )
    }
}
