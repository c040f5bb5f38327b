//! The per-model settings flags of the stages that run models (distill-teach, distill-eval), in one
//! place: `--input`, `--output`, `--layout`, `--image-shape`, `--scale`, `--mean`, `--std` and
//! `--kind`, each applying to the model flag before it on the command line, and the step that
//! hands each value to that model.

use crate::spec::{
    LayoutKind, ModelSettings, OutputKind, parse_image_shape, parse_kind, parse_layout,
};
use std::collections::BTreeMap;

/// For each per-model flag (by its clap id), the model each of its values follows, in order
/// (`None`: given before any model).
pub type Owners = BTreeMap<&'static str, Vec<Option<usize>>>;

/// A per-model flag value that cannot be given to one model.
#[derive(Debug, Clone, PartialEq)]
pub struct MisplacedFlag {
    /// The flag, e.g. `--mean`.
    pub flag: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// The per-model settings flags.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ModelSettingsArgs {
    /// The model input to feed (needed only when it has several float inputs).
    #[arg(long, value_name = "NAME")]
    pub input: Vec<String>,
    /// The model output to read (needed only when it has several candidate outputs).
    #[arg(long, value_name = "NAME")]
    pub output: Vec<String>,
    /// flat ([N, D]) or image ([N, C, H, W]) [default: from the input's rank].
    #[arg(long, value_name = "flat|image", value_parser = parse_layout)]
    pub layout: Vec<LayoutKind>,
    /// C,H,W of the image layout, when the model leaves them dynamic.
    #[arg(long, value_name = "C,H,W", value_parser = parse_image_shape)]
    pub image_shape: Vec<[usize; 3]>,
    /// Multiplies each raw value in [0, 1] first (255 for a model trained on bytes) [default: 1].
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub scale: Vec<f32>,
    /// Subtracted after scaling [default: 0].
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub mean: Vec<f32>,
    /// Divides last [default: 1].
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub std: Vec<f32>,
    /// What the output holds: logits or probabilities [default: from the model's outputs].
    #[arg(long, value_name = "logits|probabilities", value_parser = parse_kind)]
    pub kind: Vec<OutputKind>,
}

impl ModelSettingsArgs {
    /// The clap ids of the flags, for recording which model each value follows.
    pub const IDS: [&'static str; 8] = [
        "input",
        "output",
        "layout",
        "image_shape",
        "scale",
        "mean",
        "std",
        "kind",
    ];

    /// Gives each value to the model it follows (see [`assign`]); `settings` gives a model's path
    /// (for messages) and its settings.
    pub fn assign_to<M>(
        self,
        owners: &Owners,
        models: &mut [M],
        model_flags: &str,
        settings: impl Fn(&mut M) -> (String, &mut ModelSettings),
    ) -> Result<(), MisplacedFlag> {
        let s = &settings;
        assign(
            owners,
            "input",
            "--input",
            self.input,
            models,
            model_flags,
            |m| {
                let (p, s) = s(m);
                (p, &mut s.input)
            },
        )?;
        assign(
            owners,
            "output",
            "--output",
            self.output,
            models,
            model_flags,
            |m| {
                let (p, s) = s(m);
                (p, &mut s.output)
            },
        )?;
        assign(
            owners,
            "layout",
            "--layout",
            self.layout,
            models,
            model_flags,
            |m| {
                let (p, s) = s(m);
                (p, &mut s.layout)
            },
        )?;
        assign(
            owners,
            "image_shape",
            "--image-shape",
            self.image_shape,
            models,
            model_flags,
            |m| {
                let (p, s) = s(m);
                (p, &mut s.image_shape)
            },
        )?;
        assign(
            owners,
            "scale",
            "--scale",
            self.scale,
            models,
            model_flags,
            |m| {
                let (p, s) = s(m);
                (p, &mut s.scale)
            },
        )?;
        assign(
            owners,
            "mean",
            "--mean",
            self.mean,
            models,
            model_flags,
            |m| {
                let (p, s) = s(m);
                (p, &mut s.mean)
            },
        )?;
        assign(owners, "std", "--std", self.std, models, model_flags, |m| {
            let (p, s) = s(m);
            (p, &mut s.std)
        })?;
        assign(
            owners,
            "kind",
            "--kind",
            self.kind,
            models,
            model_flags,
            |m| {
                let (p, s) = s(m);
                (p, &mut s.kind)
            },
        )
    }
}

/// Gives each value of the per-model flag `flag` (clap id `id`) to the model it follows, as
/// `owners` recorded; without recorded positions (arguments not parsed from a command line) the
/// values can only go to a lone model. `model_flags` names the model flags in messages (e.g.
/// `--model or --teacher`); `slot` gives a model's path and the setting to fill. A value before any
/// model, or a second value for one model, is a [`MisplacedFlag`].
pub fn assign<M, T>(
    owners: &Owners,
    id: &str,
    flag: &'static str,
    values: Vec<T>,
    models: &mut [M],
    model_flags: &str,
    slot: impl Fn(&mut M) -> (String, &mut Option<T>),
) -> Result<(), MisplacedFlag> {
    if values.is_empty() {
        return Ok(());
    }
    let misplaced = |message: String| MisplacedFlag { flag, message };
    let recorded = owners.get(id).filter(|o| o.len() == values.len());
    let lone = models.len() == 1;
    for (i, value) in values.into_iter().enumerate() {
        let owner = match recorded {
            Some(o) => o[i],
            None if lone => Some(0),
            None => {
                return Err(misplaced(format!(
                    "cannot tell which {model_flags} this applies to; put it after its model"
                )));
            }
        };
        let Some(m) = owner.and_then(|o| models.get_mut(o)) else {
            return Err(misplaced(format!(
                "given before any {model_flags}; per-model flags apply to the {model_flags} \
                 before them, so put it after the model it describes"
            )));
        };
        let (path, setting) = slot(m);
        if setting.is_some() {
            return Err(misplaced(format!(
                "given twice for {path}; give it once after that model"
            )));
        }
        *setting = Some(value);
    }
    Ok(())
}
