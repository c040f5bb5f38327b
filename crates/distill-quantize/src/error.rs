use std::path::PathBuf;

use distill_core::CoreError;
use distill_runtime::RuntimeError;

/// Everything that can stop a quantisation. Variants about a model name its file and flag.
#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    /// Data loading, selection, or the output path.
    #[error(transparent)]
    Core(#[from] CoreError),

    /// ONNX Runtime could not load or run the float model.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),

    /// The `--model` is not an MLP or CNN this stage can read.
    #[error(
        "--model {}: not an MLP or CNN distill can quantise ({message}); give a float32 model \
         written by distill-train or distill-specialists (an MLP of Gemm, or MatMul + Add, with \
         Relu between layers, or a network whose metadata records its architecture; optionally \
         with the folded head)",
        path.display()
    )]
    NotAnMlp {
        /// The model file.
        path: PathBuf,
        /// What the reader found.
        message: String,
    },

    /// The network read from the model computes something else than ONNX Runtime does.
    #[error(
        "--model {}: the network read from the file gives logits {diff:.3e} away from ONNX \
         Runtime's on the same rows, so the graph holds more than the network its metadata and \
         weights describe (for example no Relu between two layers); only students written by \
         distill-train or distill-specialists can be quantised",
        path.display()
    )]
    NotWhatRuns {
        /// The model file.
        path: PathBuf,
        /// The largest |difference| of a logit.
        diff: f32,
    },

    /// The model has a sidecar with settings (normalisation, layout) the quantised model would lose.
    #[error(
        "--model {}: it has the sidecar {}, whose settings (normalisation, layout) a quantised \
         model would not carry; quantise a model that reads the data's rows as they are (as \
         distill-train's students do)",
        path.display(), sidecar.display()
    )]
    Sidecar {
        /// The model file.
        path: PathBuf,
        /// Its sidecar.
        sidecar: PathBuf,
    },

    /// The data's rows do not have the model's input width.
    #[error(
        "--data {data}: rows of {width} features, but --model {} reads {inputs}; calibrate on the \
         data the model was trained on",
        path.display()
    )]
    Width {
        /// The model file.
        path: PathBuf,
        /// The model's input width.
        inputs: usize,
        /// The data set's name.
        data: String,
        /// The data's row width.
        width: usize,
    },

    /// The selection has no rows.
    #[error(
        "--data {data}: the selection ({selection}) has no rows to calibrate and check on; \
         choose a split or class filter with rows"
    )]
    NoRows {
        /// The data set's name.
        data: String,
        /// The selection's description.
        selection: String,
    },

    /// A flag value out of range or not for this method.
    #[error("{flag}: {message}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },

    /// The written model failed its check in ONNX Runtime (it was removed).
    #[error("{}: the quantised model was written but {message}; it has been removed", path.display())]
    Check {
        /// The output file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

impl QuantizeError {
    /// Whether the error comes from the user's files, flags or data (exit 2) rather than the
    /// machine or this stage (exit 1).
    pub fn is_user_error(&self) -> bool {
        match self {
            QuantizeError::Core(e) => e.is_user_error(),
            QuantizeError::Runtime(e) => e.is_user_error(),
            QuantizeError::Check { .. } => false,
            _ => true,
        }
    }
}
