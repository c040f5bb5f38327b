//! [`OnnxModel`]: one ONNX model opened with ONNX Runtime, and running it on batches of rows. How
//! the session is opened is in `session.rs`; which input and output are used, and how they are
//! read, in `signature.rs` and `output.rs`.

use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayView2};
use ort::session::{HasSelectedOutputs, OutputSelector, RunOptions, Session};
use ort::value::TensorRef;

use crate::error::{Result, RuntimeError};
use crate::library::init;
use crate::output::{ReadError, read_output};
use crate::provider::Provider;
use crate::session::open_session;
use crate::signature::{
    OutputForm, choose_input, choose_output, resolve_kind, resolve_layout, shape_string,
};
use crate::spec::{Layout, LayoutKind, ModelSettings, ModelSpec, Normalization, OutputKind};

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
        crate::session::check_model_files(&path)?;
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

    /// Every setting this model runs with, resolved (explicit, sidecar, the model's own
    /// declarations, defaults): given back as explicit settings, they make the same model run the
    /// same way whatever sidecar is beside it. distill-teach records them in the store.
    pub fn settings_used(&self) -> ModelSettings {
        let (layout, image_shape) = match self.layout {
            Layout::Flat => (LayoutKind::Flat, None),
            Layout::Image { c, h, w } => (LayoutKind::Image, Some([c, h, w])),
        };
        ModelSettings {
            input: Some(self.input.clone()),
            output: Some(self.output.clone()),
            layout: Some(layout),
            image_shape,
            scale: Some(self.normalization.scale),
            mean: Some(self.normalization.mean),
            std: Some(self.normalization.std),
            kind: Some(self.kind),
        }
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
        let (rows, classes, values) = read.map_err(|e| match e {
            ReadError::Shape(found) => self.output_shape_error(batch, found),
            ReadError::Labels(labels) => RuntimeError::ZipMapLabels {
                path: self.path.clone(),
                output: self.output.clone(),
                labels,
            },
        })?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<OnnxModel>();
    }
}
