use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayView2};
use ort::session::builder::SessionBuilder;
use ort::session::{HasSelectedOutputs, OutputSelector, RunOptions, Session};
use ort::value::{DynMapValueType, DynValue, TensorElementType, TensorRef, ValueType};

use crate::error::{Result, RuntimeError};
use crate::external::external_data_locations;
use crate::library::{Runtime, init};
use crate::provider::{Provider, cuda_dispatch};
use crate::spec::{Layout, LayoutKind, ModelSettings, ModelSpec, Normalization, OutputKind};

/// How the chosen output is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutputForm {
    /// A `[N, C]` tensor of f32.
    F32,
    /// A `[N, C]` tensor of f64, converted to f32.
    F64,
    /// skl2onnx's ZipMap: a sequence of N maps from class label to probability, read in label order.
    ZipMap { string_keys: bool },
}

/// One ONNX model opened with ONNX Runtime, ready to turn `[N, D]` rows into `[N, C]` scores.
///
/// `OnnxModel` is `Send`: give each thread its own model (`Session::run` needs `&mut`).
pub struct OnnxModel {
    path: PathBuf,
    name: String,
    session: Session,
    provider: Provider,
    input: String,
    input_shape: Vec<i64>,
    output: String,
    output_form: OutputForm,
    kind: OutputKind,
    /// Whether the sidecar said the kind (otherwise it was inferred from names).
    kind_declared: bool,
    layout: Layout,
    normalization: Normalization,
    input_width: Option<usize>,
    classes: Option<usize>,
    fixed_batch: Option<usize>,
    notes: Vec<String>,
    buffer: Vec<f32>,
    run_options: RunOptions<HasSelectedOutputs>,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel")
            .field("path", &self.path)
            .field("provider", &self.provider)
            .field("input", &self.input)
            .field("output", &self.output)
            .field("kind", &self.kind)
            .field("layout", &self.layout)
            .field("normalization", &self.normalization)
            .field("classes", &self.classes)
            .field("fixed_batch", &self.fixed_batch)
            .finish_non_exhaustive()
    }
}

impl OnnxModel {
    /// Opens the model described by `spec` with the given provider and intra-op thread count (0: ONNX
    /// Runtime's default, one per physical core).
    ///
    /// Loads ONNX Runtime first if needed (see [`crate::init`]). Settings are resolved as explicit over the
    /// sidecar (`model.onnx.yaml`) over what the model declares over defaults. The input is the named one or the
    /// model's only float input; the output is the named one, or the only float tensor output, or the one named
    /// like probabilities, or skl2onnx's ZipMap output. When the class count is not declared and the input width
    /// is, one batch of zeros is run to learn it. Notes for the user (CPU fallback, slow fixed batch size) are in
    /// [`OnnxModel::notes`].
    pub fn load(spec: &ModelSpec, provider: Provider, threads: usize) -> Result<OnnxModel> {
        let runtime = init()?;
        let path = spec.path.clone();
        if !path.exists() {
            return Err(RuntimeError::ModelNotFound { path });
        }
        if path.is_dir() {
            return Err(RuntimeError::ModelLoad {
                path,
                message: "this is a directory, not an .onnx file".to_string(),
            });
        }
        let settings = spec.resolved_settings()?;
        let normalization = settings.normalization(&path)?;
        let mut notes = Vec::new();
        let (session, provider) = open_session(runtime, &path, provider, threads, &mut notes)?;

        let (input, input_shape) = choose_input(&session, &path, &settings)?;
        let layout = resolve_layout(&path, &input, &input_shape, &settings)?;
        let input_width = match layout {
            Layout::Flat => input_shape
                .get(1)
                .and_then(|&d| usize::try_from(d).ok())
                .filter(|&d| d > 0),
            Layout::Image { .. } => layout.width(),
        };
        let fixed_batch = input_shape
            .first()
            .and_then(|&d| usize::try_from(d).ok())
            .filter(|&d| d > 0);
        let (output, output_form, classes) = choose_output(&session, &path, &settings)?;
        let kind = resolve_kind(&session, &path, &output, output_form, &settings)?;
        let run_options = RunOptions::new()
            .map_err(|e| RuntimeError::Environment {
                message: e.to_string(),
            })?
            .with_outputs(OutputSelector::no_default().with(output.as_str()));
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        if let Some(batch) = fixed_batch {
            notes.push(format!(
                "model {} has a fixed batch size of {batch} (input `{input}` is {}); it runs {batch} example{} at a time, which is slow; re-export it with a dynamic batch dimension",
                path.display(),
                shape_string(&input_shape),
                if batch == 1 { "" } else { "s" }
            ));
        }
        let mut model = OnnxModel {
            path,
            name,
            session,
            provider,
            input,
            input_shape,
            output,
            output_form,
            kind,
            kind_declared: settings.kind.is_some(),
            layout,
            normalization,
            input_width,
            classes,
            fixed_batch,
            notes,
            buffer: Vec::new(),
            run_options,
        };
        if model.classes.is_none()
            && let Some(width) = model.input_width
        {
            let probe = Array2::<f32>::zeros((model.fixed_batch.unwrap_or(1), width));
            model.run_unchecked(probe.view())?;
        }
        Ok(model)
    }

    /// The model file's stem (`teacher-1` for `models/teacher-1.onnx`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The model file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The provider that actually runs the model: [`Provider::Cpu`] or [`Provider::Cuda`], never `Auto`.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// Whether [`OnnxModel::run`] returns logits or probabilities.
    pub fn kind(&self) -> OutputKind {
        self.kind
    }

    /// The number of classes, once known (declared by the model, or learnt from the first run).
    pub fn classes(&self) -> Option<usize> {
        self.classes
    }

    /// The data width the model accepts, when it fixes one.
    pub fn input_width(&self) -> Option<usize> {
        self.input_width
    }

    /// The batch size the model insists on, when its input's first dimension is fixed.
    pub fn fixed_batch(&self) -> Option<usize> {
        self.fixed_batch
    }

    /// The input fed and the output read.
    pub fn io_names(&self) -> (&str, &str) {
        (&self.input, &self.output)
    }

    /// How rows are reshaped for the model.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The normalisation applied to each raw value.
    pub fn normalization(&self) -> Normalization {
        self.normalization
    }

    /// Things the user should be told (CPU fallback, slow fixed batch size), in the order they arose.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Checks that rows of `width` raw values fit the model's input, with an error that names the model, the
    /// expected and found shapes and the setting to change.
    pub fn expect_input_width(&self, width: usize) -> Result<()> {
        let fits = match self.input_width {
            Some(expected) => expected == width,
            None => width > 0,
        };
        if fits {
            return Ok(());
        }
        let hint = match self.layout {
            Layout::Flat => format!(
                "use a model made for {width}-feature data, or, if the model has another input for it, name that one with the `input` setting"
            ),
            Layout::Image { .. } => format!(
                "set image_shape: [C, H, W] with C*H*W = {width}, or layout: flat, if the model's input allows it"
            ),
        };
        Err(RuntimeError::InputWidth {
            path: self.path.clone(),
            input: self.input.clone(),
            expected: match self.layout {
                Layout::Flat => shape_string(&self.input_shape),
                Layout::Image { c, h, w } => format!(
                    "{} (image [{c}, {h}, {w}], {} values per example)",
                    shape_string(&self.input_shape),
                    c * h * w
                ),
            },
            found: width,
            hint,
        })
    }

    /// Runs the model on raw rows `x` (`[N, D]`, values in `[0, 1]`) and returns `[N, C]` scores of
    /// [`OnnxModel::kind`].
    ///
    /// `x` is one batch: callers choose the batch size by how many rows they pass. Applies the normalisation and
    /// the layout, and splits `x` into the model's fixed batch size if it has one (padding the last batch). Fails when `D` does not fit the model, when the output shape is not `[N, C]` with
    /// the model's class count, or when any score is NaN or infinite (naming the row within `x`).
    pub fn run(&mut self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        let scores = self.run_unchecked(x)?;
        if let Some(((row, class), &value)) = scores.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(RuntimeError::NonFinite {
                path: self.path.clone(),
                row,
                class,
                value,
            });
        }
        self.check_kind(&scores)?;
        Ok(scores)
    }

    /// Refuses scores that contradict the output kind: "probabilities" whose rows are not
    /// distributions (their log would be garbage), and — when the kind was only inferred from
    /// the output's name — "logits" whose every row is a distribution (a softmax output with a
    /// neutral name such as `output`, which would otherwise be tempered as if it were logits).
    fn check_kind(&self, scores: &Array2<f32>) -> Result<()> {
        const SUM_TOLERANCE: f32 = 1e-3;
        let distribution = |row: ndarray::ArrayView1<f32>| {
            row.iter().all(|&v| v >= 0.0) && (row.sum() - 1.0).abs() <= SUM_TOLERANCE
        };
        let contradiction = |message: String| {
            Err(RuntimeError::KindContradiction {
                path: self.path.clone(),
                message,
            })
        };
        match self.kind {
            OutputKind::Probabilities => {
                if let Some((r, row)) = scores
                    .rows()
                    .into_iter()
                    .enumerate()
                    .find(|(_, row)| !distribution(*row))
                {
                    return contradiction(format!(
                        "output `{}` is read as probabilities, but row {r} is not a distribution \
                         (sum {:.4}, smallest value {:.4}); if the model emits logits, say \
                         `kind: logits` in its sidecar {}.yaml",
                        self.output,
                        row.sum(),
                        row.iter().fold(f32::INFINITY, |m, &v| m.min(v)),
                        self.path.display()
                    ));
                }
            }
            OutputKind::Logits => {
                if !self.kind_declared
                    && scores.ncols() >= 2
                    && scores.nrows() >= 1
                    && scores.rows().into_iter().all(distribution)
                {
                    return contradiction(format!(
                        "output `{}` is read as logits (its name does not say probabilities), but \
                         every row it produced is a probability distribution (non-negative, sums to \
                         1): it looks like a softmax output, and tempering probabilities as logits \
                         gives wrong soft targets. Say which in its sidecar {}.yaml: \
                         `kind: probabilities` (or `kind: logits` if these really are logits)",
                        self.output,
                        self.path.display()
                    ));
                }
            }
        }
        Ok(())
    }

    fn run_unchecked(&mut self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        let (n, width) = x.dim();
        self.expect_input_width(width)?;
        if n == 0 {
            return Ok(Array2::zeros((0, self.classes.unwrap_or(0))));
        }
        let step = self.fixed_batch.unwrap_or(n);
        let mut scores: Vec<f32> = Vec::new();
        let mut start = 0;
        while start < n {
            let rows = step.min(n - start);
            let batch = self.fixed_batch.unwrap_or(rows);
            self.fill_buffer(x.slice(ndarray::s![start..start + rows, ..]), batch);
            let classes = self.run_batch(batch, width, &mut scores, rows)?;
            if start == 0 {
                scores.reserve_exact((n - rows) * classes);
            }
            start += rows;
        }
        let classes = self.classes.unwrap_or(0);
        Array2::from_shape_vec((n, classes), scores).map_err(|e| RuntimeError::OutputShape {
            path: self.path.clone(),
            output: self.output.clone(),
            expected: format!("[{n}, {classes}]"),
            found: e.to_string(),
        })
    }

    /// Writes the normalised rows, then zeros up to `batch` rows, into the reused input buffer.
    fn fill_buffer(&mut self, rows: ArrayView2<'_, f32>, batch: usize) {
        let width = rows.ncols();
        let norm = self.normalization;
        self.buffer.clear();
        self.buffer.reserve(batch * width);
        if norm.is_identity() {
            self.buffer.extend(rows.iter().copied());
        } else {
            self.buffer.extend(rows.iter().map(|&v| norm.apply(v)));
        }
        self.buffer.resize(batch * width, 0.0);
    }

    /// Runs one batch from the buffer and appends the first `keep` rows of its output to `scores`; returns
    /// the class count.
    fn run_batch(
        &mut self,
        batch: usize,
        width: usize,
        scores: &mut Vec<f32>,
        keep: usize,
    ) -> Result<usize> {
        let mut shape = vec![batch];
        shape.extend(self.layout.example_dims(width));
        let inference = |message: String| RuntimeError::Inference {
            path: self.path.clone(),
            message,
        };
        let tensor = TensorRef::from_array_view((shape, self.buffer.as_slice()))
            .map_err(|e| inference(e.to_string()))?;
        let read = {
            let outputs = self
                .session
                .run_with_options(
                    ort::inputs![self.input.as_str() => tensor],
                    &self.run_options,
                )
                .map_err(|e| inference(e.to_string()))?;
            let value = outputs.get(self.output.as_str()).ok_or_else(|| {
                inference(format!("ONNX Runtime returned no output `{}`", self.output))
            })?;
            read_output(value, self.output_form)
        };
        let (rows, classes, values) =
            read.map_err(|found| self.output_shape_error(batch, found))?;
        if rows != batch || self.classes.is_some_and(|c| c != classes) || classes == 0 {
            return Err(self.output_shape_error(batch, format!("[{rows}, {classes}]")));
        }
        self.classes = Some(classes);
        scores.extend_from_slice(&values[..keep * classes]);
        Ok(classes)
    }

    fn output_shape_error(&self, batch: usize, found: String) -> RuntimeError {
        RuntimeError::OutputShape {
            path: self.path.clone(),
            output: self.output.clone(),
            expected: match self.classes {
                Some(c) => format!("[{batch}, {c}] (batch, classes)"),
                None => format!("[{batch}, classes]"),
            },
            found,
        }
    }
}

/// Reads `(rows, classes, row-major values)` from an output; the error describes what was found instead.
fn read_output(
    value: &DynValue,
    form: OutputForm,
) -> std::result::Result<(usize, usize, Vec<f32>), String> {
    let matrix = |shape: &[i64]| -> std::result::Result<(usize, usize), String> {
        match shape {
            [rows, classes] => Ok((
                usize::try_from(*rows).map_err(|e| e.to_string())?,
                usize::try_from(*classes).map_err(|e| e.to_string())?,
            )),
            _ => Err(shape_string(shape)),
        }
    };
    match form {
        OutputForm::F32 => {
            let (shape, data) = value
                .try_extract_tensor::<f32>()
                .map_err(|e| e.to_string())?;
            let (rows, classes) = matrix(shape)?;
            Ok((rows, classes, data.to_vec()))
        }
        OutputForm::F64 => {
            let (shape, data) = value
                .try_extract_tensor::<f64>()
                .map_err(|e| e.to_string())?;
            let (rows, classes) = matrix(shape)?;
            Ok((rows, classes, data.iter().map(|&v| v as f32).collect()))
        }
        OutputForm::ZipMap { string_keys } => {
            let maps = value
                .try_extract_sequence::<DynMapValueType>()
                .map_err(|e| e.to_string())?;
            let rows = maps.len();
            let mut classes = None;
            let mut values = Vec::new();
            for map in &maps {
                let probabilities: Vec<f32> = if string_keys {
                    let pairs = map
                        .try_extract_key_values::<String, f32>()
                        .map_err(|e| e.to_string())?;
                    string_keyed_in_class_order(pairs)
                } else {
                    map.try_extract_key_values::<i64, f32>()
                        .map_err(|e| e.to_string())?
                        .into_iter()
                        .map(|(_, p)| p)
                        .collect()
                };
                if *classes.get_or_insert(probabilities.len()) != probabilities.len() {
                    return Err(
                        "a ZipMap sequence whose maps have different numbers of classes"
                            .to_string(),
                    );
                }
                values.extend(probabilities);
            }
            Ok((rows, classes.unwrap_or(0), values))
        }
    }
}

/// A string-keyed ZipMap row's probabilities in class order. ONNX Runtime hands the map sorted
/// as strings, so "10" comes before "2"; labels that are all integers ("0", "1", … "10") are put
/// in numeric order, so that column k is class k. Other labels keep the string order, which is
/// the order of scikit-learn's `classes_` (sorted) and of the model's own label output.
fn string_keyed_in_class_order(mut pairs: Vec<(String, f32)>) -> Vec<f32> {
    let numeric: Option<Vec<i64>> = pairs.iter().map(|(k, _)| k.trim().parse().ok()).collect();
    if let Some(keys) = numeric {
        let mut keyed: Vec<(i64, f32)> = keys.into_iter().zip(pairs.iter().map(|p| p.1)).collect();
        keyed.sort_by_key(|&(k, _)| k);
        return keyed.into_iter().map(|(_, p)| p).collect();
    }
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    pairs.into_iter().map(|(_, p)| p).collect()
}

fn shape_string(shape: &[i64]) -> String {
    let dims: Vec<String> = shape
        .iter()
        .map(|&d| {
            if d < 0 {
                "N".to_string()
            } else {
                d.to_string()
            }
        })
        .collect();
    format!("[{}]", dims.join(", "))
}

fn describe_outlets(outlets: &[ort::value::Outlet]) -> String {
    let described: Vec<String> = outlets
        .iter()
        .map(|o| format!("`{}` ({})", o.name(), o.dtype()))
        .collect();
    if described.is_empty() {
        "none".to_string()
    } else {
        described.join(", ")
    }
}

fn session_builder(runtime: &Runtime, threads: usize) -> Result<SessionBuilder> {
    let environment = |e: ort::Error| RuntimeError::Environment {
        message: e.to_string(),
    };
    let builder = Session::builder(runtime.environment()).map_err(environment)?;
    if threads == 0 {
        return Ok(builder);
    }
    builder
        .with_intra_threads(threads)
        .map_err(|e| environment(e.into()))
}

fn commit(mut builder: SessionBuilder, path: &Path) -> Result<Session> {
    builder
        .commit_from_file(path)
        .map_err(|e| load_error(path, &e))
}

/// The error for a model ONNX Runtime refused, naming a missing external data file when that is the cause.
fn load_error(path: &Path, error: &ort::Error) -> RuntimeError {
    if let Ok(bytes) = std::fs::read(path) {
        let dir = path.parent().unwrap_or(Path::new("."));
        if let Some(missing) = external_data_locations(&bytes)
            .into_iter()
            .map(|location| dir.join(location))
            .find(|data| !data.is_file())
        {
            return RuntimeError::ExternalDataMissing {
                path: path.to_path_buf(),
                data_path: missing,
            };
        }
    }
    let message = error.message().trim().to_string();
    let message = if error.code() == ort::ErrorCode::InvalidProtobuf {
        format!(
            "{message} (the file is not a complete ONNX model: it may be corrupt or truncated; export it again)"
        )
    } else {
        message
    };
    RuntimeError::ModelLoad {
        path: path.to_path_buf(),
        message,
    }
}

/// Opens the session on the requested provider; returns it with the provider actually used.
fn open_session(
    runtime: &Runtime,
    path: &Path,
    provider: Provider,
    threads: usize,
    notes: &mut Vec<String>,
) -> Result<(Session, Provider)> {
    let on_cpu = || commit(session_builder(runtime, threads)?, path);
    if provider == Provider::Cpu {
        return Ok((on_cpu()?, Provider::Cpu));
    }
    let cuda = cuda_dispatch(runtime).and_then(|ep| {
        session_builder(runtime, threads)
            .map_err(|e| e.to_string())?
            .with_execution_providers([ep])
            .map_err(|e| e.to_string())
    });
    let mut reason = match cuda {
        Ok(builder) => match commit(builder, path) {
            Ok(session) => return Ok((session, Provider::Cuda)),
            Err(e) => e.to_string(),
        },
        Err(reason) => reason,
    };
    for note in runtime.notes() {
        reason.push_str("; ");
        reason.push_str(note);
    }
    // A model that also fails on the CPU is the model's problem, not CUDA's: report that instead.
    let session = on_cpu()?;
    if provider == Provider::Cuda {
        return Err(RuntimeError::CudaUnavailable { reason });
    }
    notes.push(format!(
        "CUDA is not available ({reason}); running {} on the CPU",
        path.display()
    ));
    Ok((session, Provider::Cpu))
}

fn tensor_type(value: &ValueType) -> Option<(TensorElementType, Vec<i64>)> {
    match value {
        ValueType::Tensor { ty, shape, .. } => Some((*ty, shape.to_vec())),
        _ => None,
    }
}

fn choose_input(
    session: &Session,
    path: &Path,
    settings: &ModelSettings,
) -> Result<(String, Vec<i64>)> {
    let inputs = session.inputs();
    let chosen = match &settings.input {
        Some(name) => {
            inputs
                .iter()
                .find(|i| i.name() == name)
                .ok_or_else(|| RuntimeError::NoSuchTensor {
                    path: path.to_path_buf(),
                    role: "input",
                    name: name.clone(),
                    available: describe_outlets(inputs),
                })?
        }
        None => {
            let floats: Vec<_> = inputs
                .iter()
                .filter(|i| {
                    matches!(
                        tensor_type(i.dtype()),
                        Some((TensorElementType::Float32, _))
                    )
                })
                .collect();
            match floats.as_slice() {
                [only] => *only,
                [] => {
                    return Err(RuntimeError::Unsupported {
                        path: path.to_path_buf(),
                        message: format!(
                            "it has no float32 tensor input (inputs: {}); distill feeds float32 pixels, so re-export it with a float input (skl2onnx: FloatTensorType)",
                            describe_outlets(inputs)
                        ),
                    });
                }
                _ => {
                    return Err(RuntimeError::Ambiguous {
                        path: path.to_path_buf(),
                        field: "input",
                        message: format!(
                            "it has several float inputs ({}), so which one takes the pixels is unclear",
                            describe_outlets(inputs)
                        ),
                    });
                }
            }
        }
    };
    let Some((TensorElementType::Float32, shape)) = tensor_type(chosen.dtype()) else {
        return Err(RuntimeError::Unsupported {
            path: path.to_path_buf(),
            message: format!(
                "input `{}` is {}; distill feeds a float32 tensor (skl2onnx: FloatTensorType)",
                chosen.name(),
                chosen.dtype()
            ),
        });
    };
    if inputs.len() > 1 {
        return Err(RuntimeError::Unsupported {
            path: path.to_path_buf(),
            message: format!(
                "it has {} inputs ({}); distill feeds exactly one, so re-export it with a single input",
                inputs.len(),
                describe_outlets(inputs)
            ),
        });
    }
    Ok((chosen.name().to_string(), shape))
}

fn resolve_layout(
    path: &Path,
    input: &str,
    shape: &[i64],
    settings: &ModelSettings,
) -> Result<Layout> {
    let kind = match settings.layout {
        Some(kind) => kind,
        None if settings.image_shape.is_some() => LayoutKind::Image,
        None => match shape.len() {
            2 => LayoutKind::Flat,
            4 => LayoutKind::Image,
            0 => {
                return Err(RuntimeError::Ambiguous {
                    path: path.to_path_buf(),
                    field: "layout",
                    message: format!(
                        "input `{input}` does not declare its rank, so its layout is unclear (flat or image)"
                    ),
                });
            }
            _ => {
                return Err(RuntimeError::Unsupported {
                    path: path.to_path_buf(),
                    message: format!(
                        "input `{input}` has shape {}; distill feeds [N, D] (layout: flat) or [N, C, H, W] (layout: image)",
                        shape_string(shape)
                    ),
                });
            }
        },
    };
    let wrong_rank = |wanted: usize| RuntimeError::InvalidSetting {
        path: path.to_path_buf(),
        field: "layout",
        message: format!(
            "input `{input}` has shape {}, which is not rank {wanted}",
            shape_string(shape)
        ),
    };
    match kind {
        LayoutKind::Flat => {
            if !shape.is_empty() && shape.len() != 2 {
                return Err(wrong_rank(2));
            }
            Ok(Layout::Flat)
        }
        LayoutKind::Image => {
            if !shape.is_empty() && shape.len() != 4 {
                return Err(wrong_rank(4));
            }
            let positive = |d: i64| usize::try_from(d).ok().filter(|&d| d > 0);
            let declared = match *shape {
                [_, c, h, w] => positive(c)
                    .zip(positive(h))
                    .zip(positive(w))
                    .map(|((c, h), w)| [c, h, w]),
                _ => None,
            };
            let [c, h, w] = match (declared, settings.image_shape) {
                (Some(declared), Some(given)) if declared != given => {
                    return Err(RuntimeError::InvalidSetting {
                        path: path.to_path_buf(),
                        field: "image_shape",
                        message: format!(
                            "{given:?} contradicts input `{input}`'s declared shape {}",
                            shape_string(shape)
                        ),
                    });
                }
                (_, Some(given)) => given,
                (Some(declared), None) => declared,
                (None, None) => {
                    return Err(RuntimeError::Ambiguous {
                        path: path.to_path_buf(),
                        field: "image_shape",
                        message: format!(
                            "input `{input}` has shape {} with dynamic image dimensions",
                            shape_string(shape)
                        ),
                    });
                }
            };
            if c * h * w == 0 {
                return Err(RuntimeError::InvalidSetting {
                    path: path.to_path_buf(),
                    field: "image_shape",
                    message: "every dimension must be positive".to_string(),
                });
            }
            Ok(Layout::Image { c, h, w })
        }
    }
}

/// How an output can be read, if it can.
fn output_form(value: &ValueType) -> Option<OutputForm> {
    match value {
        ValueType::Tensor {
            ty: TensorElementType::Float32,
            ..
        } => Some(OutputForm::F32),
        ValueType::Tensor {
            ty: TensorElementType::Float64,
            ..
        } => Some(OutputForm::F64),
        ValueType::Sequence(element) => match element.as_ref() {
            ValueType::Map {
                key: TensorElementType::Int64,
                value: TensorElementType::Float32,
            } => Some(OutputForm::ZipMap { string_keys: false }),
            ValueType::Map {
                key: TensorElementType::String,
                value: TensorElementType::Float32,
            } => Some(OutputForm::ZipMap { string_keys: true }),
            _ => None,
        },
        _ => None,
    }
}

fn named_like_probabilities(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    (name.contains("prob") || name.contains("softmax")) && !named_like_logits(&name)
}

fn named_like_logits(name: &str) -> bool {
    let name = name.to_ascii_lowercase().replace(['_', '-', ' '], "");
    name.contains("logit") || name.contains("logprob") || name.contains("logsoftmax")
}

fn choose_output(
    session: &Session,
    path: &Path,
    settings: &ModelSettings,
) -> Result<(String, OutputForm, Option<usize>)> {
    let outputs = session.outputs();
    let chosen = match &settings.output {
        Some(name) => {
            outputs
                .iter()
                .find(|o| o.name() == name)
                .ok_or_else(|| RuntimeError::NoSuchTensor {
                    path: path.to_path_buf(),
                    role: "output",
                    name: name.clone(),
                    available: describe_outlets(outputs),
                })?
        }
        None => {
            let tensors: Vec<_> = outputs
                .iter()
                .filter(|o| {
                    matches!(
                        output_form(o.dtype()),
                        Some(OutputForm::F32 | OutputForm::F64)
                    )
                })
                .collect();
            let zipmaps: Vec<_> = outputs
                .iter()
                .filter(|o| matches!(output_form(o.dtype()), Some(OutputForm::ZipMap { .. })))
                .collect();
            let probabilities: Vec<_> = tensors
                .iter()
                .filter(|o| named_like_probabilities(o.name()))
                .collect();
            match (
                tensors.as_slice(),
                probabilities.as_slice(),
                zipmaps.as_slice(),
            ) {
                ([only], _, _) => *only,
                ([_, _, ..], [only], _) => **only,
                ([], _, [only]) => *only,
                ([], _, []) => {
                    return Err(RuntimeError::Unsupported {
                        path: path.to_path_buf(),
                        message: format!(
                            "it has no float tensor output (outputs: {}); distill reads [N, classes] float scores",
                            describe_outlets(outputs)
                        ),
                    });
                }
                _ => {
                    return Err(RuntimeError::Ambiguous {
                        path: path.to_path_buf(),
                        field: "output",
                        message: format!(
                            "it has several outputs that could be the class scores ({})",
                            describe_outlets(outputs)
                        ),
                    });
                }
            }
        }
    };
    let Some(form) = output_form(chosen.dtype()) else {
        return Err(RuntimeError::Unsupported {
            path: path.to_path_buf(),
            message: format!(
                "output `{}` is {}, not class scores; distill reads a [N, classes] float tensor or skl2onnx's ZipMap probabilities; fix the `output` setting",
                chosen.name(),
                chosen.dtype()
            ),
        });
    };
    let classes = match tensor_type(chosen.dtype()) {
        Some((_, shape)) => match shape.as_slice() {
            [] => None,
            [_, classes] => usize::try_from(*classes).ok().filter(|&c| c > 0),
            _ => {
                return Err(RuntimeError::Unsupported {
                    path: path.to_path_buf(),
                    message: format!(
                        "output `{}` has shape {}; distill reads [N, classes]",
                        chosen.name(),
                        shape_string(&shape)
                    ),
                });
            }
        },
        None => None,
    };
    Ok((chosen.name().to_string(), form, classes))
}

fn resolve_kind(
    session: &Session,
    path: &Path,
    output: &str,
    form: OutputForm,
    settings: &ModelSettings,
) -> Result<OutputKind> {
    if let Some(kind) = settings.kind {
        return Ok(kind);
    }
    // skl2onnx classifiers output a 1-D label tensor beside the probabilities.
    let has_label_output = session.outputs().iter().any(|o| {
        o.name() != output
            && o.name().to_ascii_lowercase().contains("label")
            && matches!(
                tensor_type(o.dtype()),
                Some((TensorElementType::Int64 | TensorElementType::String, _))
            )
    });
    let says_probabilities = named_like_probabilities(output)
        || matches!(form, OutputForm::ZipMap { .. })
        || has_label_output;
    match (named_like_logits(output), says_probabilities) {
        (true, true) => Err(RuntimeError::Ambiguous {
            path: path.to_path_buf(),
            field: "kind",
            message: format!(
                "output `{output}` is named like logits, but the model looks like a scikit-learn classifier, whose scores are probabilities; say which with kind: logits or kind: probabilities"
            ),
        }),
        (false, true) => Ok(OutputKind::Probabilities),
        _ => Ok(OutputKind::Logits),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_zipmap_labels_in_numeric_order() {
        let labels = ["0", "1", "10", "2", "3", "4", "5", "6", "7", "8", "9"];
        let pairs = labels
            .iter()
            .map(|l| (l.to_string(), l.parse::<f32>().unwrap()))
            .collect();
        let expected: Vec<f32> = (0..11).map(|k| k as f32).collect();
        assert_eq!(string_keyed_in_class_order(pairs), expected);
        let pairs = vec![("cat".to_string(), 0.7), ("ant".to_string(), 0.3)];
        assert_eq!(string_keyed_in_class_order(pairs), vec![0.3, 0.7]);
    }

    #[test]
    fn names_say_logits_or_probabilities() {
        assert!(named_like_probabilities("output_probability"));
        assert!(named_like_probabilities("probabilities"));
        assert!(named_like_probabilities("Softmax_out"));
        assert!(!named_like_probabilities("log_probs"));
        assert!(!named_like_probabilities("logits"));
        assert!(named_like_logits("log_probs"));
        assert!(named_like_logits("LogSoftmax"));
        assert!(!named_like_logits("output"));
    }

    #[test]
    fn shapes_show_dynamic_dimensions_as_n() {
        assert_eq!(shape_string(&[-1, 1, 28, 28]), "[N, 1, 28, 28]");
        assert_eq!(shape_string(&[]), "[]");
    }

    #[test]
    fn model_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<OnnxModel>();
    }
}
