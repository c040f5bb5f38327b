//! Which input and output of a model distill uses, and how to read them: the input's layout (flat
//! rows or NCHW images), the output's form (tensor or ZipMap) and kind (logits or probabilities),
//! from the explicit settings, the sidecar, the model's declared names and shapes, in that order.

use std::path::Path;

use ort::session::Session;
use ort::value::{TensorElementType, ValueType};

use crate::error::{Result, RuntimeError};
use crate::spec::{Layout, LayoutKind, ModelSettings, OutputKind};

/// How the chosen output is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutputForm {
    /// A `[N, C]` tensor of f32.
    F32,
    /// A `[N, C]` tensor of f64, converted to f32.
    F64,
    /// skl2onnx's ZipMap: a sequence of N maps from class label to probability, read in label order.
    ZipMap { string_keys: bool },
}

fn tensor_type(value: &ValueType) -> Option<(TensorElementType, Vec<i64>)> {
    match value {
        ValueType::Tensor { ty, shape, .. } => Some((*ty, shape.to_vec())),
        _ => None,
    }
}

pub(crate) fn choose_input(
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

pub(crate) fn resolve_layout(
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

pub(crate) fn choose_output(
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

pub(crate) fn resolve_kind(
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

pub(crate) fn shape_string(shape: &[i64]) -> String {
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

pub(crate) fn describe_outlets(outlets: &[ort::value::Outlet]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
