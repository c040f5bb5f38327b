//! [`Net`]s as standard ONNX models (opset [`NET_OPSET`]): input `input` `[N, C·H·W]` f32 (dynamic
//! batch), `Reshape` to `[N, C, H, W]`, the optional preprocessing (`Mul` by the scale, `Sub` the
//! per-channel mean, `Div` by the per-channel std), then one node per layer — `Conv`, `MaxPool`,
//! `AveragePool`, `GlobalAveragePool`, `BatchNormalization` (its own node in inference form,
//! running statistics as inputs, not folded into the convolution), `Flatten`, `Gemm`, `Relu`;
//! dropout is the identity at inference and has no node — and the folded head when the net has
//! one; output `logits`. The metadata props record the architecture ([`ARCH_KEY`]), the input
//! shape ([`INPUT_SHAPE_KEY`]), the preprocessing ([`PREPROCESS_KEY`]) and the max-norm bound.

use super::{
    DATA_INT64, INPUT, OUTPUT, float_initializer, initializers, model, node, read_fold, read_model,
    tensor,
};
use crate::arch::{Arch, Shape};
use crate::layer::Layer;
use crate::net::Net;
use crate::{NnError, Result};
use distill_core::onnx_proto::*;
use ndarray::Array2;
use prost::Message;
use std::collections::HashMap;
use std::path::Path;

pub const NET_OPSET: i64 = 18;
/// Metadata key of the architecture string.
pub const ARCH_KEY: &str = "distill.arch";
/// Metadata key of the input shape, `C,H,W` (or the width of a flat input).
pub const INPUT_SHAPE_KEY: &str = "distill.input_shape";
/// Metadata key of the preprocessing, JSON `{"scale": s, "mean": [...], "std": [...]}`.
pub const PREPROCESS_KEY: &str = "distill.preprocess";
/// Metadata key of the max-norm bound, when the net has one.
pub const MAX_NORM_KEY: &str = "distill.max_norm";
const ATTR_FLOAT: i32 = 1;
const ATTR_INTS: i32 = 7;

/// Per-channel preprocessing baked into an exported net: the model computes
/// `(x · scale − mean[c]) / std[c]` on raw input before its first layer. `mean` and `std` hold one
/// value per input channel, or one value for all.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Preprocess<'a> {
    pub scale: f32,
    pub mean: &'a [f32],
    pub std: &'a [f32],
}

/// A net read from ONNX, with the model's metadata props (the preprocessing, if any, under
/// [`PREPROCESS_KEY`]).
pub struct LoadedNet {
    pub net: Net,
    pub metadata: HashMap<String, String>,
}

fn ints_node(
    op: &str,
    name: &str,
    io: (&str, &str),
    extra: &[&str],
    ints: &[(&str, Vec<i64>)],
) -> NodeProto {
    let mut inputs = vec![io.0];
    inputs.extend_from_slice(extra);
    let mut n = node(op, name, &inputs, &[io.1], &[]);
    n.attribute = ints
        .iter()
        .map(|(a, v)| AttributeProto {
            name: (*a).into(),
            ints: v.clone(),
            r#type: ATTR_INTS,
            ..Default::default()
        })
        .collect();
    n
}

/// Appends `preprocess` as the nodes `pre/Mul` (by the scale), `pre/Sub` (the per-channel mean)
/// and `pre/Div` (by the per-channel std) after `prev`, on an input of shape `input` (`[N, C, H,
/// W]` for an image, `[N, D]` for flat rows, whose one channel takes one mean and one std), and
/// moves `prev` to their output. Returns the metadata prop recording it ([`PREPROCESS_KEY`]).
/// Refused: a count of means or stds that is neither one nor the input's channel count, and a
/// std that is zero or not finite.
pub(super) fn preprocess_nodes(
    p: Preprocess,
    input: Shape,
    prev: &mut String,
    nodes: &mut Vec<NodeProto>,
    inits: &mut Vec<TensorProto>,
) -> Result<(String, String)> {
    let c = input.channels();
    for (what, v) in [("mean", p.mean), ("std", p.std)] {
        if v.len() != 1 && v.len() != c {
            return Err(NnError::Shape(format!(
                "preprocessing {what} has {} values; give one per input channel ({c}) or one \
                 for all",
                v.len()
            )));
        }
    }
    if let Some(s) = p.std.iter().find(|&&s| !(s.is_finite() && s != 0.0)) {
        return Err(NnError::Shape(format!(
            "preprocessing std {s} would divide by zero or not a number; give finite \
             non-zero values"
        )));
    }
    let per_channel = |v: &[f32]| match input {
        Shape::Image { .. } => vec![1, v.len(), 1, 1],
        Shape::Flat(_) => vec![1, v.len()],
    };
    inits.push(tensor("pre.scale", &[1], [p.scale].into_iter()));
    inits.push(tensor(
        "pre.mean",
        &per_channel(p.mean),
        p.mean.iter().copied(),
    ));
    inits.push(tensor(
        "pre.std",
        &per_channel(p.std),
        p.std.iter().copied(),
    ));
    for (op, arg, out) in PREPROCESS_NODES {
        nodes.push(node(op, &format!("pre/{op}"), &[prev, arg], &[out], &[]));
        *prev = out.into();
    }
    let json = serde_json::to_string(&p).map_err(|e| NnError::Shape(e.to_string()))?;
    Ok((PREPROCESS_KEY.into(), json))
}

/// The preprocessing nodes' operator, constant input and output, in graph order.
pub(super) const PREPROCESS_NODES: [(&str, &str, &str); 3] = [
    ("Mul", "pre.scale", "pre.scaled"),
    ("Sub", "pre.mean", "pre.centred"),
    ("Div", "pre.std", "pre.out"),
];

/// The ONNX bytes of `net`, with `preprocess` as its first nodes and `metadata` (plus the
/// architecture, input shape and preprocessing) as metadata props.
pub fn to_onnx_bytes_net(
    net: &Net,
    metadata: &[(String, String)],
    preprocess: Option<Preprocess>,
) -> Result<Vec<u8>> {
    let mut nodes = Vec::new();
    let mut inits = Vec::new();
    let mut prev = INPUT.to_string();
    let input = net.input_shape();
    let mut props = vec![(ARCH_KEY.to_string(), net.arch().to_string())];
    if let Shape::Image { c, h, w } = input {
        props.push((INPUT_SHAPE_KEY.into(), format!("{c},{h},{w}")));
        inits.push(TensorProto {
            dims: vec![4],
            data_type: DATA_INT64,
            name: "input.shape".into(),
            raw_data: [-1i64, c as i64, h as i64, w as i64]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            ..Default::default()
        });
        nodes.push(node(
            "Reshape",
            "input/Reshape",
            &[INPUT, "input.shape"],
            &["input.nchw"],
            &[],
        ));
        prev = "input.nchw".into();
    } else {
        props.push((INPUT_SHAPE_KEY.into(), input.len().to_string()));
    }
    if let Some(p) = preprocess {
        props.push(preprocess_nodes(
            p, input, &mut prev, &mut nodes, &mut inits,
        )?);
    }
    if let Some(c) = net.max_norm {
        props.push((MAX_NORM_KEY.into(), c.to_string()));
    }
    props.extend_from_slice(metadata);
    let last = net.layers.len() - 1;
    for (l, layer) in net.layers.iter().enumerate() {
        let out = if l == last && net.fold.is_none() {
            OUTPUT.to_string()
        } else {
            format!("layer{l}.out")
        };
        let p = |s: &str| format!("layer{l}.{s}");
        let name = |op: &str| format!("layer{l}/{op}");
        let io = (prev.as_str(), out.as_str());
        match layer {
            Layer::Conv(conv) => {
                let wd = &conv.window;
                let k = wd.kernel as i64;
                let o = conv.out_channels();
                inits.push(tensor(
                    &p("weight"),
                    &[o, wd.c, wd.kernel, wd.kernel],
                    conv.lin.w.t().iter().copied(),
                ));
                inits.push(tensor(&p("bias"), &[o], conv.lin.b.iter().copied()));
                let (s, pad) = (wd.stride as i64, wd.pad as i64);
                nodes.push(ints_node(
                    "Conv",
                    &name("Conv"),
                    io,
                    &[&p("weight"), &p("bias")],
                    &[
                        ("kernel_shape", vec![k, k]),
                        ("strides", vec![s, s]),
                        ("pads", vec![pad; 4]),
                    ],
                ));
            }
            Layer::MaxPool(wd) | Layer::AvgPool(wd) => {
                let op = if matches!(layer, Layer::MaxPool(_)) {
                    "MaxPool"
                } else {
                    "AveragePool"
                };
                let (k, s) = (wd.kernel as i64, wd.stride as i64);
                nodes.push(ints_node(
                    op,
                    &name(op),
                    io,
                    &[],
                    &[("kernel_shape", vec![k, k]), ("strides", vec![s, s])],
                ));
            }
            Layer::Gap => nodes.push(node(
                "GlobalAveragePool",
                &name("GlobalAveragePool"),
                &[io.0],
                &[io.1],
                &[],
            )),
            Layer::BatchNorm(bn) => {
                let c = bn.channels();
                for (s, v) in [
                    ("scale", &bn.gamma),
                    ("bias", &bn.beta),
                    ("running_mean", &bn.running_mean),
                    ("running_var", &bn.running_var),
                ] {
                    inits.push(tensor(&p(s), &[c], v.iter().copied()));
                }
                let mut n = node(
                    "BatchNormalization",
                    &name("BatchNormalization"),
                    &[
                        io.0,
                        &p("scale"),
                        &p("bias"),
                        &p("running_mean"),
                        &p("running_var"),
                    ],
                    &[io.1],
                    &[],
                );
                n.attribute.push(AttributeProto {
                    name: "epsilon".into(),
                    f: crate::batchnorm::EPS,
                    r#type: ATTR_FLOAT,
                    ..Default::default()
                });
                nodes.push(n);
            }
            Layer::Flatten => nodes.push(node(
                "Flatten",
                &name("Flatten"),
                &[io.0],
                &[io.1],
                &[("axis", 1)],
            )),
            Layer::Linear(lin) => {
                inits.push(tensor(
                    &p("weight"),
                    &[lin.inputs(), lin.outputs()],
                    lin.w.iter().copied(),
                ));
                inits.push(tensor(&p("bias"), &[lin.outputs()], lin.b.iter().copied()));
                nodes.push(node(
                    "Gemm",
                    &name("Gemm"),
                    &[io.0, &p("weight"), &p("bias")],
                    &[io.1],
                    &[("transB", 0)],
                ));
            }
            Layer::Relu => nodes.push(node("Relu", &name("Relu"), &[io.0], &[io.1], &[])),
            Layer::Dropout(_) => continue,
        }
        prev = out;
    }
    let io = (net.inputs(), net.classes());
    Ok(model(
        net.fold.as_ref(),
        NET_OPSET,
        io,
        (nodes, inits),
        &prev,
        &props,
        "distill_net",
    )
    .encode_to_vec())
}

/// Saves `net` as ONNX at `path`, atomically, with `preprocess` baked in (see
/// [`to_onnx_bytes_net`]).
pub fn save_net(
    net: &Net,
    path: &Path,
    metadata: &[(String, String)],
    preprocess: Option<Preprocess>,
) -> Result<()> {
    let bytes = to_onnx_bytes_net(net, metadata, preprocess)?;
    distill_core::atomic::write_bytes(path, &bytes)?;
    Ok(())
}

/// Loads a net saved by [`save_net`]: the architecture and input shape from the metadata, every
/// weight from the graph's initializers (exactly), the folded head from its nodes.
pub fn load_net(path: &Path) -> Result<LoadedNet> {
    let err = |message: String| NnError::Onnx {
        path: path.display().to_string(),
        message,
    };
    let (model, graph) = read_model(path)?;
    let metadata: HashMap<String, String> = model
        .metadata_props
        .into_iter()
        .map(|p| (p.key, p.value))
        .collect();
    let meta = |key: &str| {
        metadata.get(key).ok_or_else(|| {
            err(format!(
                "no '{key}' in the model's metadata: not a network saved by distill's save_net \
                 (an MLP saved by save loads with onnx::load)"
            ))
        })
    };
    let arch: Arch = meta(ARCH_KEY)?
        .parse()
        .map_err(|e: NnError| err(e.to_string()))?;
    let shape_text = meta(INPUT_SHAPE_KEY)?;
    let input = match shape_text.parse::<usize>() {
        Ok(n) => Shape::Flat(n),
        Err(_) => crate::arch::parse_input_shape(shape_text).map_err(|e| err(e.to_string()))?,
    };
    let inits = initializers(&graph);
    let values = |name: &str| float_initializer(&inits, name).map_err(err);
    let mut params: Vec<(String, Vec<Vec<f32>>)> = Vec::new();
    let head_at = graph
        .node
        .iter()
        .position(|n| n.op_type == "Gather")
        .unwrap_or(graph.node.len());
    let (chain, head) = graph.node.split_at(head_at);
    let mut classes = 0;
    for n in chain {
        let arity = match n.op_type.as_str() {
            "Conv" | "Gemm" => 3,
            "BatchNormalization" => 5,
            _ => continue,
        };
        let mut tensors = Vec::new();
        for name in n.input.iter().skip(1).take(arity - 1) {
            let (dims, v) = values(name)?;
            if n.op_type == "Gemm" {
                classes = dims.last().copied().unwrap_or(0);
            }
            tensors.push(v);
        }
        if tensors.len() != arity - 1 {
            return Err(err(format!(
                "node '{}' ({}) lacks its weights",
                n.name, n.op_type
            )));
        }
        params.push((n.name.clone(), tensors));
    }
    let mut net = Net::new(arch, input, classes, 0).map_err(|e| err(e.to_string()))?;
    let expected = net
        .layers
        .iter()
        .filter(|l| l.param_shape().is_some())
        .count();
    if params.len() != expected {
        return Err(err(format!(
            "the graph has {} Conv, BatchNormalization and Gemm nodes; the architecture '{}' \
             has {expected} such layers",
            params.len(),
            net.arch()
        )));
    }
    let mut found = params.into_iter();
    let specs = net.arch().layers.clone();
    let with_params = net.layers.iter_mut().zip(&specs);
    for (layer, spec) in with_params.filter(|(l, _)| l.param_shape().is_some()) {
        let (name, t) = found.next().expect("counted above");
        let mismatch = || {
            err(format!(
                "the weights of node '{name}' do not fit layer '{spec}' of the architecture"
            ))
        };
        let fill = |dst: &mut [f32], src: &[f32]| {
            if dst.len() != src.len() {
                return false;
            }
            dst.copy_from_slice(src);
            true
        };
        let ok = match layer {
            Layer::Conv(conv) => {
                let (rows, o) = conv.lin.w.dim();
                t[0].len() == rows * o && {
                    conv.lin.w = Array2::from_shape_vec((o, rows), t[0].clone())
                        .map_err(|e| err(e.to_string()))?
                        .reversed_axes()
                        .as_standard_layout()
                        .into_owned();
                    fill(conv.lin.b.as_slice_mut().expect("contiguous"), &t[1])
                }
            }
            Layer::Linear(lin) => {
                fill(lin.w.as_slice_mut().expect("contiguous"), &t[0])
                    && fill(lin.b.as_slice_mut().expect("contiguous"), &t[1])
            }
            Layer::BatchNorm(bn) => {
                let mut ok = true;
                for (dst, src) in [
                    &mut bn.gamma,
                    &mut bn.beta,
                    &mut bn.running_mean,
                    &mut bn.running_var,
                ]
                .into_iter()
                .zip(&t)
                {
                    ok &= fill(dst.as_slice_mut().expect("contiguous"), src);
                }
                ok
            }
            _ => false,
        };
        if !ok {
            return Err(mismatch());
        }
    }
    if !head.is_empty() {
        let full = chain
            .last()
            .and_then(|n| n.output.first())
            .cloned()
            .unwrap_or_default();
        let total = net.shapes().last().map_or(0, |s| s.1);
        net.fold = Some(read_fold(head, &full, total, &inits).map_err(err)?);
    }
    if let Some(c) = metadata.get(MAX_NORM_KEY) {
        net.max_norm = Some(
            c.parse()
                .map_err(|_| err(format!("'{MAX_NORM_KEY}' is '{c}', not a number")))?,
        );
    }
    Ok(LoadedNet { net, metadata })
}
