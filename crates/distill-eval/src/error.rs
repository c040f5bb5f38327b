use std::path::PathBuf;

use distill_core::CoreError;
use distill_runtime::RuntimeError;

/// Everything that can stop an evaluation. Variants about a model name its file.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Data loading, selection or output writing failed.
    #[error(transparent)]
    Core(#[from] CoreError),

    /// ONNX Runtime, a model's settings, or a model's shapes.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),

    /// No model was given.
    #[error(
        "no model to evaluate; give at least one --model PATH, --teacher PATH or --teachers-of STORE"
    )]
    NoModels,

    /// `--ensemble` with fewer than two members.
    #[error(
        "an ensemble needs at least two models, and {members} {verb} given; add --model (or --teacher) files or drop --ensemble",
        verb = if *members == 1 { "was" } else { "were" }
    )]
    EnsembleTooSmall {
        /// How many members there were.
        members: usize,
    },

    /// A model's output has a different number of classes than the data.
    #[error(
        "model {} has {model_classes} output classes, but the data {data} has {data_classes}; evaluate it on data with the same classes",
        path.display()
    )]
    ClassMismatch {
        /// The model file.
        path: PathBuf,
        /// Columns of the model's output.
        model_classes: usize,
        /// The data set's name.
        data: String,
        /// Classes of the data set.
        data_classes: usize,
    },

    /// A label is not below the data set's class count.
    #[error(
        "data {data}: row {row} has label {label}, but the data set declares {classes} classes"
    )]
    LabelOutOfRange {
        /// The data set's name.
        data: String,
        /// The row within the selection.
        row: usize,
        /// The label.
        label: u32,
        /// The declared class count.
        classes: usize,
    },

    /// The model file is not a readable ONNX protobuf (for the parameter count).
    #[error("cannot read ONNX model {} to count its parameters: {message}", path.display())]
    OnnxParse {
        /// The model file.
        path: PathBuf,
        /// The decoder's message.
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

    /// The specialists manifest cannot be read, does not validate, or a file it names changed.
    #[error(transparent)]
    Manifest(#[from] distill_specialists::ManifestError),

    /// The generalist and specialists' outputs cannot be combined.
    #[error("cannot combine the specialists: {0}")]
    Combine(#[from] distill_specialists::CombineError),

    /// `--top-n` outside 1..=classes.
    #[error("--top-n {top_n} is out of range: it must be between 1 and the class count {classes}")]
    TopN {
        /// As given.
        top_n: usize,
        /// The manifest's class count.
        classes: usize,
    },

    /// `--top-n` without `--manifest`.
    #[error(
        "--top-n only applies with --manifest MANIFEST (the specialists' manifest.yaml): add it, or drop --top-n"
    )]
    TopNWithoutSpecialists,
    /// A `--name` that is empty, taken by another model or an ensemble's entry.
    #[error(
        "--name '{name}' (for {}): empty, or the name of another model or an ensemble entry; give each model a distinct --name",
        path.display()
    )]
    Name { path: PathBuf, name: String },
    /// A `--model` or `--teacher` file that does not exist.
    #[error(
        "{flag}: model file {} does not exist; check the path (a model made here is written by the train stage, distill-train --out {}, or the specialists stage)",
        path.display(), path.display()
    )]
    ModelMissing {
        /// `--model` or `--teacher`.
        flag: &'static str,
        /// The file.
        path: PathBuf,
    },

    /// The `--manifest` (old spelling `--specialists`) does not exist.
    #[error(
        "--manifest {}: the specialists' manifest does not exist (the specialists stage writes it: distill-specialists --out FOLDER writes FOLDER/manifest.yaml); run that stage first",
        path.display()
    )]
    ManifestMissing {
        /// The manifest.
        path: PathBuf,
    },

    /// A per-model settings flag that follows no model, or is given twice for one.
    #[error("{flag}: {message}")]
    PerModelFlag {
        /// The flag.
        flag: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },

    /// A teacher of `--teachers-of` whose file is missing or changed since distill-teach ran it.
    #[error(
        "--teachers-of {}: teacher '{name}' was scored from {} {problem}; evaluate the file the store was made from (or rerun distill-teach --model {} --out {})",
        store.display(), path.display(), path.display(), store.display()
    )]
    StoreTeacher {
        /// The store.
        store: PathBuf,
        /// The teacher's column name.
        name: String,
        /// The model file the store names.
        path: PathBuf,
        /// What is wrong with it now.
        problem: String,
    },

    /// A `--name` that does not follow a `--model` or `--teacher` of its own.
    #[error(
        "--name {name}: names the --model or --teacher before it, and there is none without a name; put each --name right after its model"
    )]
    NameWithoutModel { name: String },

    /// None of the models is the manifest's generalist.
    #[error(
        "{}: the specialists were trained for the generalist {}, but no --model has its SHA-256          (given: {models}); pass --model {} (or the file the specialists were trained from)",
        manifest.display(), generalist.display(), generalist.display()
    )]
    NotTheGeneralist {
        /// The manifest.
        manifest: PathBuf,
        /// The generalist it names.
        generalist: PathBuf,
        /// The models given.
        models: String,
    },

    /// The manifest's class count differs from the data's.
    #[error(
        "{}: the generalist has {classes} classes, but the data {data} has {data_classes}; evaluate on the data the specialists were trained for",
        manifest.display()
    )]
    ManifestClasses {
        /// The manifest.
        manifest: PathBuf,
        /// Its class count.
        classes: usize,
        /// The data set's name.
        data: String,
        /// The data's class count.
        data_classes: usize,
    },

    /// A specialist's output is not its subset plus the dustbin.
    #[error(
        "specialist {id} ({}) has {found} outputs, but its subset has {subset} classes, so {expected}          (the subset and the dustbin) were expected; the manifest and the file do not belong together",
        path.display()
    )]
    SpecialistWidth {
        /// The specialist's file.
        path: PathBuf,
        /// Its id in the manifest.
        id: usize,
        /// Classes in its subset.
        subset: usize,
        /// `subset + 1`.
        expected: usize,
        /// Its output columns.
        found: usize,
    },

    /// Writing metrics.json failed while serialising.
    #[error("cannot serialise the metrics for {}: {message}", path.display())]
    Serialize {
        /// The output file.
        path: PathBuf,
        /// serde_json's message.
        message: String,
    },
}

impl EvalError {
    /// Whether the error comes from the user's files, flags or data (exit 2) rather than the machine (exit 1).
    pub fn is_user_error(&self) -> bool {
        match self {
            EvalError::Core(e) => e.is_user_error(),
            EvalError::Runtime(e) => e.is_user_error(),
            EvalError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::IsADirectory
            ),
            EvalError::Serialize { .. } => false,
            EvalError::Manifest(distill_specialists::ManifestError::Io { source, .. }) => matches!(
                source.kind(),
                std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::IsADirectory
            ),
            _ => true,
        }
    }
}
