use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};

/// How a model wants each example: the data always arrives as `[N, D]` rows of raw values in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// `[N, D]`, the rows as they are.
    Flat,
    /// `[N, C, H, W]`, each row reshaped in row-major order (`D = C * H * W`).
    Image {
        /// Channels.
        c: usize,
        /// Height.
        h: usize,
        /// Width.
        w: usize,
    },
}

impl Layout {
    /// The per-example dimensions fed to the model after the batch dimension, given the data's width.
    pub fn example_dims(&self, width: usize) -> Vec<usize> {
        match *self {
            Self::Flat => vec![width],
            Self::Image { c, h, w } => vec![c, h, w],
        }
    }

    /// The data width this layout needs, if it fixes one.
    pub fn width(&self) -> Option<usize> {
        match *self {
            Self::Flat => None,
            Self::Image { c, h, w } => Some(c * h * w),
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flat => f.write_str("flat"),
            Self::Image { c, h, w } => write!(f, "image [{c}, {h}, {w}]"),
        }
    }
}

/// The layout's name as written in settings; the image dimensions come from the model or `image_shape`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayoutKind {
    /// See [`Layout::Flat`].
    Flat,
    /// See [`Layout::Image`].
    Image,
}

/// Whether a model's output is logits or probabilities (the same type the store records).
pub use distill_core::OutputKind;

/// `x' = (x * scale - mean) / std`, applied to each raw value `x` in `[0, 1]` before the model sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalization {
    /// Multiplies the raw value first (255 for a model trained on bytes).
    pub scale: f32,
    /// Subtracted after scaling.
    pub mean: f32,
    /// Divides last; never zero.
    pub std: f32,
}

impl Default for Normalization {
    fn default() -> Self {
        Self {
            scale: 1.0,
            mean: 0.0,
            std: 1.0,
        }
    }
}

impl Normalization {
    /// Whether this leaves the data unchanged.
    pub fn is_identity(&self) -> bool {
        *self == Self::default()
    }

    /// Applies the normalisation to one value.
    #[inline]
    pub fn apply(&self, x: f32) -> f32 {
        (x * self.scale - self.mean) / self.std
    }
}

/// Optional settings for one model; every field left out is read from the model or defaulted.
///
/// This is the schema of the sidecar file `model.onnx.yaml` beside a model, and of a teacher entry's settings
/// in a pipeline. Unknown fields are an error.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSettings {
    /// The input to feed; needed only when the model has several float inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// The output to read; needed only when the model has several candidate outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// `flat` (`[N, D]`) or `image` (`[N, C, H, W]`); inferred from the input's rank (2 or 4) when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<LayoutKind>,
    /// `[C, H, W]` for the image layout, needed only when the model's input leaves them dynamic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_shape: Option<[usize; 3]>,
    /// See [`Normalization::scale`]; default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<f32>,
    /// See [`Normalization::mean`]; default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<f32>,
    /// See [`Normalization::std`]; default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<f32>,
    /// `logits` or `probabilities`; inferred from the model's outputs when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<OutputKind>,
}

impl ModelSettings {
    /// Field by field, `self`'s value where it has one, otherwise `lower`'s.
    pub fn or(self, lower: ModelSettings) -> ModelSettings {
        ModelSettings {
            input: self.input.or(lower.input),
            output: self.output.or(lower.output),
            layout: self.layout.or(lower.layout),
            image_shape: self.image_shape.or(lower.image_shape),
            scale: self.scale.or(lower.scale),
            mean: self.mean.or(lower.mean),
            std: self.std.or(lower.std),
            kind: self.kind.or(lower.kind),
        }
    }

    /// Parses settings from YAML; `origin` names the file in errors.
    pub fn from_yaml(text: &str, origin: &Path) -> Result<ModelSettings> {
        if text.trim().is_empty() {
            return Ok(ModelSettings::default());
        }
        serde_norway::from_str(text).map_err(|e| RuntimeError::Sidecar {
            path: origin.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// The sidecar's path for a model: the model's file name with `.yaml` appended (`model.onnx.yaml`).
    pub fn sidecar_path(model: &Path) -> PathBuf {
        distill_core::atomic::sidecar_path(model)
    }

    /// Reads the sidecar beside `model`; `None` when there is none.
    pub fn read_sidecar(model: &Path) -> Result<Option<ModelSettings>> {
        let path = Self::sidecar_path(model);
        match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(RuntimeError::Io { path, source }),
            Ok(_) => {}
        }
        let text = distill_core::input::read_to_string(
            "the sidecar",
            &path,
            distill_core::input::MAX_TEXT_BYTES,
        )
        .map_err(|e| RuntimeError::Sidecar {
            path: path.clone(),
            message: e
                .to_string()
                .trim_start_matches(&format!("{}: ", path.display()))
                .to_string(),
        })?;
        Self::from_yaml(&text, &path).map(Some)
    }

    /// The normalisation these settings give (defaults for missing fields), checked to be usable.
    pub fn normalization(&self, model: &Path) -> Result<Normalization> {
        let norm = Normalization {
            scale: self.scale.unwrap_or(1.0),
            mean: self.mean.unwrap_or(0.0),
            std: self.std.unwrap_or(1.0),
        };
        for (field, value) in [
            ("scale", norm.scale),
            ("mean", norm.mean),
            ("std", norm.std),
        ] {
            if !value.is_finite() {
                return Err(RuntimeError::InvalidSetting {
                    path: model.to_path_buf(),
                    field,
                    message: format!("{value} is not a finite number"),
                });
            }
        }
        if norm.std == 0.0 {
            return Err(RuntimeError::InvalidSetting {
                path: model.to_path_buf(),
                field: "std",
                message: "must not be 0".to_string(),
            });
        }
        Ok(norm)
    }
}

/// Parses a `--layout` value: `flat` or `image`.
pub fn parse_layout(s: &str) -> std::result::Result<LayoutKind, String> {
    match s {
        "flat" => Ok(LayoutKind::Flat),
        "image" => Ok(LayoutKind::Image),
        _ => Err(format!("'{s}' is not a layout; use flat or image")),
    }
}

/// Parses a `--kind` value: `logits` or `probabilities`.
pub fn parse_kind(s: &str) -> std::result::Result<OutputKind, String> {
    match s {
        "logits" => Ok(OutputKind::Logits),
        "probabilities" => Ok(OutputKind::Probabilities),
        _ => Err(format!(
            "'{s}' is not an output kind; use logits or probabilities"
        )),
    }
}

/// Parses an `--image-shape` value: `C,H,W`, three positive numbers.
pub fn parse_image_shape(s: &str) -> std::result::Result<[usize; 3], String> {
    let dims: Vec<usize> = s
        .split(',')
        .map(|d| d.trim().parse::<usize>().ok().filter(|&d| d > 0))
        .collect::<Option<_>>()
        .ok_or_else(|| format!("'{s}' is not C,H,W (three positive numbers, e.g. 1,28,28)"))?;
    <[usize; 3]>::try_from(dims)
        .map_err(|_| format!("'{s}' is not C,H,W (three positive numbers, e.g. 1,28,28)"))
}

/// A model to load: its file and the settings given explicitly (flags or a pipeline entry).
///
/// When loaded, the explicit settings override the sidecar's (`model.onnx.yaml`), which override what is read
/// from the model itself, which overrides the defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelSpec {
    /// The `.onnx` file.
    pub path: PathBuf,
    /// Settings given explicitly.
    pub settings: ModelSettings,
}

impl ModelSpec {
    /// A model with no explicit settings.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            settings: ModelSettings::default(),
        }
    }

    /// The same model with these explicit settings.
    pub fn with_settings(mut self, settings: ModelSettings) -> Self {
        self.settings = settings;
        self
    }

    /// The explicit settings over the sidecar's, if the model has a sidecar.
    pub fn resolved_settings(&self) -> Result<ModelSettings> {
        let sidecar = ModelSettings::read_sidecar(&self.path)?.unwrap_or_default();
        Ok(self.settings.clone().or(sidecar))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecar_fields_parse_and_unknown_ones_are_refused() {
        let origin = Path::new("m.onnx.yaml");
        let s = ModelSettings::from_yaml(
            "input: x\noutput: y\nlayout: image\nimage_shape: [1, 28, 28]\nscale: 255\nmean: 33.3\nstd: 78.6\nkind: probabilities\n",
            origin,
        )
        .unwrap();
        assert_eq!(s.input.as_deref(), Some("x"));
        assert_eq!(s.output.as_deref(), Some("y"));
        assert_eq!(s.layout, Some(LayoutKind::Image));
        assert_eq!(s.image_shape, Some([1, 28, 28]));
        assert_eq!(s.scale, Some(255.0));
        assert_eq!(s.kind, Some(OutputKind::Probabilities));

        let err = ModelSettings::from_yaml("kind: logit\n", origin).unwrap_err();
        assert!(err.to_string().contains("m.onnx.yaml"), "{err}");
        let err = ModelSettings::from_yaml("mean_value: 3\n", origin).unwrap_err();
        assert!(err.to_string().contains("mean_value"), "{err}");
        assert_eq!(
            ModelSettings::from_yaml("\n", origin).unwrap(),
            ModelSettings::default()
        );
    }

    #[test]
    fn explicit_settings_override_the_sidecar() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.onnx");
        std::fs::write(
            ModelSettings::sidecar_path(&model),
            "scale: 255\nkind: probabilities\n",
        )
        .unwrap();
        let spec = ModelSpec::new(&model).with_settings(ModelSettings {
            kind: Some(OutputKind::Logits),
            mean: Some(0.5),
            ..ModelSettings::default()
        });
        let s = spec.resolved_settings().unwrap();
        assert_eq!(s.kind, Some(OutputKind::Logits));
        assert_eq!(s.scale, Some(255.0));
        assert_eq!(s.mean, Some(0.5));
        assert_eq!(
            ModelSpec::new(dir.path().join("other.onnx"))
                .resolved_settings()
                .unwrap(),
            ModelSettings::default()
        );
    }

    #[test]
    fn normalization_is_checked() {
        let model = Path::new("m.onnx");
        let norm = ModelSettings {
            scale: Some(255.0),
            mean: Some(33.0),
            std: Some(2.0),
            ..ModelSettings::default()
        }
        .normalization(model)
        .unwrap();
        assert_eq!(norm.apply(1.0), 111.0);
        assert!(
            ModelSettings::default()
                .normalization(model)
                .unwrap()
                .is_identity()
        );
        let err = ModelSettings {
            std: Some(0.0),
            ..ModelSettings::default()
        }
        .normalization(model)
        .unwrap_err();
        assert!(err.to_string().contains("`std`"), "{err}");
    }
}
