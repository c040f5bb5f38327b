use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// Everything that can go wrong between finding ONNX Runtime and reading a model's outputs.
///
/// Every variant that concerns a model names its file; the messages say what to change.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No ONNX Runtime shared library was found anywhere we looked.
    #[error(
        "ONNX Runtime shared library not found (looked for ORT_DYLIB_PATH, {searched}, and the system's libonnxruntime.so: {system_error}); \
         run `make setup` to install it into the project's .venv, or set ORT_DYLIB_PATH to a libonnxruntime.so (version 1.31 or newer)"
    )]
    LibraryNotFound {
        /// The `.venv` locations that were searched, joined for display.
        searched: String,
        /// Why loading the system library failed.
        system_error: String,
    },

    /// A library was found but could not be loaded (wrong file, wrong version, missing dependencies).
    #[error(
        "cannot load ONNX Runtime from {}: {message}; run `make setup` (or point ORT_DYLIB_PATH at a libonnxruntime.so, version 1.31 or newer)",
        path.display()
    )]
    LibraryLoad {
        /// The library file.
        path: PathBuf,
        /// The loader's message.
        message: String,
    },

    /// ONNX Runtime loaded, but creating its environment failed.
    #[error("cannot initialise ONNX Runtime: {message}")]
    Environment {
        /// ONNX Runtime's message.
        message: String,
    },

    /// A provider name that is not `cpu`, `cuda` or `auto`.
    #[error("unknown execution provider `{given}`; expected cpu, cuda or auto")]
    UnknownProvider {
        /// What was given.
        given: String,
    },

    /// `--provider cuda` was asked for and CUDA cannot be used.
    #[error(
        "CUDA execution provider is not available: {reason}; run `make setup CUDA=1` on a machine with an NVIDIA GPU, or use --provider cpu"
    )]
    CudaUnavailable {
        /// Why CUDA cannot be used.
        reason: String,
    },

    /// The model file does not exist.
    #[error("model file {} does not exist", path.display())]
    ModelNotFound {
        /// The model file.
        path: PathBuf,
    },

    /// The model stores weights in external data files and one of them is missing.
    #[error(
        "model {} keeps its weights in the external data file {}, which does not exist; copy it next to the model (external data paths are relative to the model's folder)",
        path.display(),
        data_path.display()
    )]
    ExternalDataMissing {
        /// The model file.
        path: PathBuf,
        /// The missing data file.
        data_path: PathBuf,
    },

    /// ONNX Runtime refused to load the model (corrupt, truncated, not ONNX, unsupported operators).
    #[error("cannot load ONNX model {}: {message}", path.display())]
    ModelLoad {
        /// The model file.
        path: PathBuf,
        /// ONNX Runtime's message, with a hint where one is known.
        message: String,
    },

    /// Reading a file failed.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// A sidecar settings file (`model.onnx.yaml`) is not valid.
    #[error(
        "invalid model settings in {}: {message} (allowed fields: input, output, layout: flat|image, image_shape: [C, H, W], scale, mean, std, kind: logits|probabilities)",
        path.display()
    )]
    Sidecar {
        /// The sidecar file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },

    /// A setting has a value that cannot work (for example `std: 0`).
    #[error("invalid setting `{field}` for model {}: {message}", path.display())]
    InvalidSetting {
        /// The model file.
        path: PathBuf,
        /// The setting's name, as written in a sidecar.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },

    /// A named input or output does not exist in the model.
    #[error(
        "model {} has no {role} named `{name}`; its {role}s are: {available}; fix the `{role}` setting",
        path.display()
    )]
    NoSuchTensor {
        /// The model file.
        path: PathBuf,
        /// `input` or `output`.
        role: &'static str,
        /// The name that was asked for.
        name: String,
        /// The model's names with their types, joined for display.
        available: String,
    },

    /// The model does not say enough to decide something, and no setting does.
    #[error("model {}: {message}; set `{field}` in {}.yaml or in the pipeline entry", path.display(), path.display())]
    Ambiguous {
        /// The model file.
        path: PathBuf,
        /// The setting that decides it.
        field: &'static str,
        /// What could not be decided, and between which choices.
        message: String,
    },

    /// The model's interface is something this adapter does not handle.
    #[error("model {}: {message}", path.display())]
    Unsupported {
        /// The model file.
        path: PathBuf,
        /// What is not supported and what to do instead.
        message: String,
    },

    /// The data's width does not fit the model's input.
    #[error(
        "model {} expects input `{input}` of shape {expected}, but the data has {found} features per example; {hint}",
        path.display()
    )]
    InputWidth {
        /// The model file.
        path: PathBuf,
        /// The input's name.
        input: String,
        /// The shape the model declares or the settings imply.
        expected: String,
        /// The data's width.
        found: usize,
        /// Which setting to change.
        hint: String,
    },

    /// The model produced an output of an unexpected shape.
    #[error("model {} produced output `{output}` of shape {found}; expected {expected}", path.display())]
    OutputShape {
        /// The model file.
        path: PathBuf,
        /// The output's name.
        output: String,
        /// What was expected.
        expected: String,
        /// What came out.
        found: String,
    },

    /// A ZipMap output whose class labels are not the class numbers `0..C-1`.
    #[error(
        "model {} outputs `{output}`, a ZipMap whose class labels are {labels}: distill reads column k as class k, so the labels must be the class numbers 0 to C-1 (as integers, or as strings such as \"7\"), each once; export the classifier trained on labels 0 to C-1 in the data's class order (e.g. the data's labels, or scikit-learn's LabelEncoder codes mapped to them)",
        path.display()
    )]
    ZipMapLabels {
        /// The model file.
        path: PathBuf,
        /// The output's name.
        output: String,
        /// The labels found, in the map's order.
        labels: String,
    },

    /// The model produced NaN or infinity.
    #[error(
        "model {} produced a non-finite value ({value}) for row {row}, class {class}; check the model and its normalisation settings",
        path.display()
    )]
    NonFinite {
        /// The model file.
        path: PathBuf,
        /// The row within the batch passed to `run`.
        row: usize,
        /// The class column.
        class: usize,
        /// The offending value.
        value: f32,
    },

    /// The scores contradict the output kind (probabilities that are not distributions, or
    /// undeclared "logits" that are all distributions).
    #[error("model {}: {message}", path.display())]
    KindContradiction {
        /// The model file.
        path: PathBuf,
        /// What was found, and how to say which kind the output is.
        message: String,
    },

    /// ONNX Runtime failed while running the model.
    #[error("running model {} failed: {message}", path.display())]
    Inference {
        /// The model file.
        path: PathBuf,
        /// ONNX Runtime's message.
        message: String,
    },
}

impl RuntimeError {
    /// Whether the error comes from the user's setup, files, settings or flags (binaries exit with 2)
    /// rather than from a failure inside ONNX Runtime (exit 1).
    pub fn is_user_error(&self) -> bool {
        !matches!(self, Self::Environment { .. } | Self::Inference { .. })
    }
}
