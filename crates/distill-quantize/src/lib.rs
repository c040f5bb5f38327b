//! `distill-quantize`: a distilled MLP or CNN made cheaper to run, with what it cost measured.
//!
//! [`run`] reads a float32 student written by distill-train (or a specialist with a folded head;
//! a CNN is described in [`cnn`]),
//! and writes one of three variants ([`Method`]; the graphs are described in [`graph`]):
//! static int8 in ONNX Runtime's QDQ format, calibrated on rows of the training data
//! ([`calibrate`]); dynamic int8 (weights only); or float16 weights. The output reads and writes
//! float32 like the source, so callers do not change. Its metadata holds the source's metadata
//! plus `distill.quantize.*`: the method, the calibration and its rows, and the source's SHA-256.
//!
//! The output is written atomically, then run in ONNX Runtime on (up to) 256 rows beside the
//! float model; the [`Report`] gives the largest |Δlogit| and the argmax agreement. Before
//! anything is written the float model is also run in ONNX Runtime and compared with the network
//! read from the file, so a graph that is not the MLP or CNN it claims to be is refused rather than
//! misquantised.

pub mod calibrate;
pub mod cli;
pub mod cnn;
mod error;
pub mod graph;
pub mod qparams;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use distill_core::atomic;
use distill_data::{DataSource, Selection};
use distill_nn::{Mlp, Net};
use distill_progress::Progress;
use distill_runtime::{ModelSpec, OnnxModel, Provider};
use ndarray::{Array2, ArrayView2, s};
use prost::Message;
use serde::Serialize;

pub use calibrate::{Calibration, DEFAULT_PERCENTILE};
pub use error::QuantizeError;

/// Rows the written model is checked on against the float model.
pub const CHECK_ROWS: usize = 256;

/// The default number of calibration rows.
pub const DEFAULT_CALIBRATION_ROWS: usize = 1024;

/// Metadata key prefix of what this stage records.
pub const METADATA_PREFIX: &str = "distill.quantize.";

/// Metadata key of the method ([`Method::name`]) a written model was made with.
pub const METHOD_KEY: &str = "distill.quantize.method";

/// Metadata key of the SHA-256 (lowercase hex) of the float model a written model was made from.
pub const SOURCE_SHA256_KEY: &str = "distill.quantize.source_sha256";

/// What a model file's metadata says about the float model it was quantised from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QuantizedFrom {
    /// The method's name ([`Method::name`]).
    pub method: String,
    /// The SHA-256 of the float model's file.
    pub source_sha256: String,
}

impl QuantizedFrom {
    /// Reads [`METHOD_KEY`] and [`SOURCE_SHA256_KEY`] from a model's metadata entries; `None`
    /// unless both are present (the model was not written by this stage).
    pub fn from_metadata<'a>(
        entries: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Option<Self> {
        let (mut method, mut source_sha256) = (None, None);
        for (key, value) in entries {
            match key {
                METHOD_KEY => method = Some(value.to_string()),
                SOURCE_SHA256_KEY => source_sha256 = Some(value.to_string()),
                _ => {}
            }
        }
        Some(Self {
            method: method?,
            source_sha256: source_sha256?,
        })
    }
}

/// What the weights (and activations) become.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Int8 weights (per output channel, symmetric) and int8 activations (per tensor, ranges
    /// calibrated on data), in ONNX Runtime's QDQ format.
    Static,
    /// Int8 weights (per output channel, symmetric); activations quantised per batch at run time.
    Dynamic,
    /// Float16 weights, cast to float32 for the computation.
    Fp16,
}

impl Method {
    /// The name recorded in the metadata.
    pub fn name(self) -> &'static str {
        match self {
            Method::Static => "static-int8",
            Method::Dynamic => "dynamic-int8",
            Method::Fp16 => "fp16",
        }
    }
}

/// Everything a quantisation needs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// The float32 MLP or CNN (`--model`).
    pub model: PathBuf,
    /// The variant to write.
    pub method: Method,
    /// How activation ranges are calibrated (used by [`Method::Static`] only).
    pub calibration: Calibration,
    /// The first rows of the selection calibrated on (static); at least 1.
    pub calibration_rows: usize,
    /// The rows calibrated and checked on (the training split by default).
    pub selection: Selection,
    /// The output `.onnx`; it may not be, hold or sit inside an input.
    pub out: PathBuf,
}

/// What a quantisation wrote and measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// The output file.
    pub out: PathBuf,
    /// The variant written.
    pub method: Method,
    /// The calibration (static only).
    pub calibration: Option<Calibration>,
    /// Rows calibrated on (static only).
    pub calibration_rows: Option<usize>,
    /// The data the rows came from.
    pub data: String,
    /// Bytes of the float model and of the output.
    pub source_bytes: u64,
    /// Bytes of the output.
    pub out_bytes: u64,
    /// Rows of the check in ONNX Runtime.
    pub check_rows: usize,
    /// The largest |logit difference| from the float model on the check rows.
    pub max_abs_diff: f32,
    /// Check rows on which both models' most probable class is the same.
    pub agreeing_rows: usize,
    /// Things the user should know.
    pub notes: Vec<String>,
}

impl Report {
    /// The fraction of check rows with the same most probable class as the float model.
    pub fn agreement(&self) -> f64 {
        self.agreeing_rows as f64 / self.check_rows.max(1) as f64
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = match (self.calibration, self.calibration_rows) {
            (Some(c), Some(n)) => format!(", {c} calibration on {n} rows of {}", self.data),
            _ => String::new(),
        };
        writeln!(
            f,
            "wrote {} ({}{how}): {} bytes, {:.1} % of the float model's {}",
            self.out.display(),
            self.method.name(),
            self.out_bytes,
            100.0 * self.out_bytes as f64 / self.source_bytes.max(1) as f64,
            self.source_bytes
        )?;
        writeln!(
            f,
            "checked with ONNX Runtime on {} rows against the float model: max |Δlogit| {:.4}, argmax agreement {}/{} ({:.2} %)",
            self.check_rows,
            self.max_abs_diff,
            self.agreeing_rows,
            self.check_rows,
            100.0 * self.agreement()
        )
    }
}

/// Checks the values of `config` that need no file: the calibration row count and the
/// percentile. [`run`] checks these too; a pipeline checks them before any stage runs.
pub fn check_values(config: &Config) -> Result<(), QuantizeError> {
    if config.calibration_rows == 0 {
        return Err(QuantizeError::Flag {
            flag: "--calibration-rows",
            message: "0 rows give no activation ranges; give a positive number (default 1024)"
                .into(),
        });
    }
    if let Calibration::Percentile { percentile } = config.calibration
        && !(percentile > 50.0 && percentile <= 100.0)
    {
        return Err(QuantizeError::Flag {
            flag: "--percentile",
            message: format!(
                "{percentile} is not in (50, 100]; give e.g. {DEFAULT_PERCENTILE} (100 is min-max)"
            ),
        });
    }
    Ok(())
}

/// Checks the flags and paths before any work: [`check_values`], and that `--out` is not, does
/// not hold and is not inside `--model` (or its sidecar and external data) or `--data`.
fn check_config(config: &Config) -> Result<(), QuantizeError> {
    check_values(config)?;
    let mut inputs = atomic::model_files(&config.model);
    if let Some(data) = DataSource::input_path(&config.selection.data) {
        inputs.push(("--data".into(), data));
    }
    let inputs: Vec<(&str, &Path)> = inputs
        .iter()
        .map(|(f, p)| (f.as_str(), p.as_path()))
        .collect();
    atomic::check_output("--out", &config.out, &inputs)?;
    let sidecar = atomic::sidecar_path(&config.model);
    if sidecar.exists() {
        return Err(QuantizeError::Sidecar {
            path: config.model.clone(),
            sidecar,
        });
    }
    Ok(())
}

/// The largest |a - b| over the elements of two arrays of the same shape; NaN if any
/// difference is NaN.
pub fn max_abs_diff(a: ArrayView2<f32>, b: ArrayView2<f32>) -> f32 {
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, |m, d| {
            if m.is_nan() || d.is_nan() {
                f32::NAN
            } else {
                m.max(d)
            }
        })
}

/// Loads `path` in ONNX Runtime (CPU, one thread) and runs it on `rows`.
fn run_onnx(
    path: &Path,
    rows: ArrayView2<f32>,
) -> Result<Array2<f32>, distill_runtime::RuntimeError> {
    let mut model = OnnxModel::load(&ModelSpec::new(path), Provider::Cpu, 1)?;
    model.run(rows)
}

/// The metadata of the output: the source's (sorted by key) and this stage's.
fn metadata(
    config: &Config,
    source: &HashMap<String, String>,
    source_sha256: &str,
    rows: usize,
    data: &str,
) -> Vec<(String, String)> {
    let mut meta: Vec<(String, String)> = source
        .iter()
        .filter(|(k, _)| !k.starts_with(METADATA_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    meta.sort();
    let key = |k: &str| format!("{METADATA_PREFIX}{k}");
    meta.push((METHOD_KEY.into(), config.method.name().into()));
    if config.method == Method::Static {
        meta.push((key("calibration"), config.calibration.to_string()));
        meta.push((key("calibration_rows"), rows.to_string()));
        meta.push((
            key("calibration_data"),
            format!("{data} ({})", config.selection.describe()),
        ));
    }
    meta.push((
        key("source"),
        config
            .model
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    ));
    meta.push((SOURCE_SHA256_KEY.into(), source_sha256.into()));
    meta
}

/// The ONNX bytes of `mlp` quantised by `config.method` (`calibration` rows for static).
pub fn quantize(
    mlp: &Mlp,
    method: Method,
    calibration: Calibration,
    rows: ArrayView2<f32>,
    metadata: &[(String, String)],
) -> Vec<u8> {
    let model = match method {
        Method::Static => {
            let ranges = calibrate::ranges(mlp, rows, calibration);
            let params = graph::StaticParams::new(mlp, &ranges);
            graph::static_int8(mlp, &params, metadata)
        }
        Method::Dynamic => graph::dynamic_int8(mlp, metadata),
        Method::Fp16 => graph::fp16(mlp, metadata),
    };
    model.encode_to_vec()
}

/// A student model as read from its file: an MLP written by `distill_nn::onnx::save`, or a
/// network (CNN) written by `distill_nn::onnx::save_net`, with its preprocessing.
enum Student {
    Mlp(Mlp),
    Net {
        net: Net,
        preprocess: Option<cnn::OwnedPreprocess>,
    },
}

impl Student {
    /// Reads `path` as a network saved by `save_net`, else as an MLP; with its metadata.
    fn load(path: &Path) -> Result<(Student, HashMap<String, String>), QuantizeError> {
        let not_a_student = |message: String| QuantizeError::NotAnMlp {
            path: path.to_path_buf(),
            message,
        };
        let net_error = match distill_nn::onnx::load_net(path) {
            Ok(loaded) => {
                let preprocess =
                    cnn::OwnedPreprocess::from_metadata(&loaded.metadata).map_err(not_a_student)?;
                let student = Student::Net {
                    net: loaded.net,
                    preprocess,
                };
                return Ok((student, loaded.metadata));
            }
            Err(distill_nn::NnError::Core(core)) => return Err(QuantizeError::Core(core)),
            Err(e) => e,
        };
        match distill_nn::onnx::load(path) {
            Ok(loaded) => Ok((Student::Mlp(loaded.mlp), loaded.metadata)),
            Err(distill_nn::NnError::Core(core)) => Err(QuantizeError::Core(core)),
            Err(e) => Err(not_a_student(format!(
                "as an MLP: {e}; as a CNN: {net_error}"
            ))),
        }
    }

    fn inputs(&self) -> usize {
        match self {
            Student::Mlp(mlp) => mlp.inputs(),
            Student::Net { net, .. } => net.inputs(),
        }
    }

    /// The logits the engine computes for raw `rows`.
    fn forward(&self, rows: ArrayView2<f32>) -> Result<Array2<f32>, distill_nn::NnError> {
        match self {
            Student::Mlp(mlp) => mlp.forward(rows),
            Student::Net {
                net,
                preprocess: Some(p),
            } => net.forward(p.apply(net.input_shape(), rows).view()),
            Student::Net { net, .. } => net.forward(rows),
        }
    }
}

/// Quantises `config.model` and writes `config.out` (see the crate documentation).
///
/// Fails before writing anything on a bad flag, an output path that overlaps an input, a model
/// that is not an MLP or CNN distill reads (or one with a sidecar), an empty selection, or rows
/// of the wrong width. Fails after writing, and removes the output, if ONNX Runtime cannot run it.
pub fn run(config: &Config, progress: &Progress) -> Result<Report, QuantizeError> {
    check_config(config)?;
    let (student, source_metadata) = Student::load(&config.model)?;
    let data = config.selection.load()?;
    if data.is_empty() {
        return Err(QuantizeError::NoRows {
            data: data.name.clone(),
            selection: config.selection.describe(),
        });
    }
    if data.width() != student.inputs() {
        return Err(QuantizeError::Width {
            path: config.model.clone(),
            inputs: student.inputs(),
            data: data.name.clone(),
            width: data.width(),
        });
    }
    let mut notes = Vec::new();
    let rows = config.calibration_rows.min(data.len());
    if config.method == Method::Static && rows < config.calibration_rows {
        notes.push(format!(
            "the selection has {} rows; calibrated on all of them rather than --calibration-rows {}",
            data.len(),
            config.calibration_rows
        ));
    }
    let calibration_rows = data.features.slice(s![..rows, ..]);
    let check = data.features.slice(s![..CHECK_ROWS.min(data.len()), ..]);

    // The float model in ONNX Runtime, against the network read from it.
    let float = run_onnx(&config.model, check)?;
    let engine = student
        .forward(check)
        .map_err(|e| QuantizeError::NotAnMlp {
            path: config.model.clone(),
            message: e.to_string(),
        })?;
    let scale = float.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let diff = if engine.dim() == float.dim() {
        max_abs_diff(engine.view(), float.view())
    } else {
        f32::NAN
    };
    if diff.is_nan() || diff > 1e-4 * scale {
        return Err(QuantizeError::NotWhatRuns {
            path: config.model.clone(),
            diff,
        });
    }

    let source_sha256 = distill_core::sha256_file(&config.model)?;
    let mut meta = metadata(config, &source_metadata, &source_sha256, rows, &data.name);
    progress.detail(format!(
        "quantising {} ({}) with {} rows of {}",
        config.model.display(),
        config.method.name(),
        rows,
        data.name
    ));
    let bytes = match &student {
        Student::Mlp(mlp) => quantize(
            mlp,
            config.method,
            config.calibration,
            calibration_rows,
            &meta,
        ),
        Student::Net { net, preprocess } => {
            let internal = |message: String| QuantizeError::Check {
                path: config.out.clone(),
                message: format!("could not be made ({message})"),
            };
            let (folded, count) = cnn::fold_batchnorm(net).map_err(|e| internal(e.to_string()))?;
            if count > 0 {
                meta.push((
                    format!("{METADATA_PREFIX}folded_batchnorm"),
                    count.to_string(),
                ));
            }
            let ranges = if config.method == Method::Static {
                let x = match preprocess {
                    Some(p) => p.apply(net.input_shape(), calibration_rows),
                    None => calibration_rows.to_owned(),
                };
                cnn::ranges(&folded, preprocess.is_some(), x.view(), config.calibration)
            } else {
                HashMap::new()
            };
            cnn::quantize(&folded, preprocess.as_ref(), config.method, &ranges, &meta)
                .map_err(internal)?
                .encode_to_vec()
        }
    };
    atomic::write_bytes(&config.out, &bytes)?;

    let checked = run_onnx(&config.out, check)
        .map_err(|e| e.to_string())
        .and_then(|q| {
            if q.dim() == float.dim() {
                Ok(q)
            } else {
                Err(format!(
                    "its output has shape {:?}, the float model's {:?}",
                    q.dim(),
                    float.dim()
                ))
            }
        });
    let quantized = match checked {
        Ok(q) => q,
        Err(message) => {
            let _ = std::fs::remove_file(&config.out);
            return Err(QuantizeError::Check {
                path: config.out.clone(),
                message: format!("ONNX Runtime cannot run it: {message}"),
            });
        }
    };
    let max_abs_diff = max_abs_diff(quantized.view(), float.view());
    let (a, b) = (
        distill_core::math::argmax_rows(quantized.view()),
        distill_core::math::argmax_rows(float.view()),
    );
    let agreeing_rows = a.iter().zip(&b).filter(|(x, y)| x == y).count();
    let file_len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mut report = Report {
        out: config.out.clone(),
        method: config.method,
        calibration: (config.method == Method::Static).then_some(config.calibration),
        calibration_rows: (config.method == Method::Static).then_some(rows),
        data: data.name.clone(),
        source_bytes: file_len(&config.model),
        out_bytes: bytes.len() as u64,
        check_rows: check.nrows(),
        max_abs_diff,
        agreeing_rows,
        notes,
    };
    if report.agreement() < 0.99 {
        report.notes.push(format!(
            "only {:.2} % of the check rows keep the float model's class; compare the variants' \
             test errors with distill-eval before using this model",
            100.0 * report.agreement()
        ));
    }
    Ok(report)
}
