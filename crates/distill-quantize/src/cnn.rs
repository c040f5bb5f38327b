//! Quantised encodings of a [`Net`] (a CNN student written by `distill_nn::onnx::save_net`).
//!
//! Every variant starts from the float graph the engine exports ([`to_onnx_bytes_net`]) for the
//! net with its batch norms folded ([`fold_batchnorm`]), and rewrites it; inputs, outputs, the
//! `Reshape`, the preprocessing (`Mul`/`Sub`/`Div`), pools, `Flatten`, a batch norm that does
//! not follow a convolution and a folded head stay float.
//!
//! - **Static int8** ([`Method::Static`]): each `Conv` and `Gemm` reads its input through a
//!   `QuantizeLinear` → `DequantizeLinear` pair (int8, per tensor, range calibrated on data), and
//!   its weights through a `DequantizeLinear` of int8 values (symmetric, one scale per output
//!   channel: axis 0 of a `Conv`'s `[O, C, K, K]`, axis 1 of a `Gemm`'s `[in, out]`) and its bias
//!   through one of int32 values (scale `input scale × weight scale`). Each `Conv` and hidden
//!   `Gemm` output is quantised too, so ONNX Runtime's CPU provider fuses each into `QLinearConv`
//!   / `QGemm`: a following `Relu` is absorbed into that `QuantizeLinear` (its range starts at 0,
//!   so the zero point is -128 and the quantisation clamps negatives), as
//!   `onnxruntime.quantization.quantize_static` does. `MaxPool` and `Flatten` only move values,
//!   so their outputs keep their inputs' scale and zero point (ONNX Runtime then runs `MaxPool`
//!   on int8); after `AveragePool` or `GlobalAveragePool` the next layer's input is calibrated
//!   again. The logits stay float, as for an MLP (see [`crate::graph`]).
//! - **Dynamic int8** ([`Method::Dynamic`]): each `Gemm` becomes the MLP's
//!   `DynamicQuantizeLinear`/`MatMulInteger` layer ([`crate::graph::dynamic_layer`]); each `Conv`
//!   becomes `DynamicQuantizeLinear` → `ConvInteger` → `Cast` → `Mul` → `Add`. ONNX Runtime's CPU
//!   `ConvInteger` takes uint8 weights with one zero point for the whole tensor, so the weights
//!   are the symmetric int8 values (one scale per output channel) shifted by 128, zero point 128:
//!   the same numbers, and the per-channel scale is applied after the integer convolution.
//! - **fp16** ([`Method::Fp16`]): every `Conv`, `Gemm` and remaining `BatchNormalization`
//!   parameter stored as float16 with a `Cast` to float32, computed in float32 (see
//!   [`crate::graph`] on ONNX Runtime's CPU kernels).
//!
//! Folding a batch norm into the convolution before it is exact in real arithmetic
//! (`w' = w·γ/√(σ²+ε)`, `b' = (b − μ)·γ/√(σ²+ε) + β`); in float32 the folded net's logits stay
//! within 1e-5 (relative to the largest logit) of the unfolded one's, which the tests check in
//! ONNX Runtime.

use std::collections::{HashMap, HashSet};

use distill_core::onnx_proto::*;
use distill_nn::layer::{Layer, Scratch};
use distill_nn::onnx::net::{PREPROCESS_KEY, Preprocess, to_onnx_bytes_net};
use distill_nn::onnx::{INPUT, OUTPUT, node};
use distill_nn::{Net, Shape};
use ndarray::{Array2, ArrayView2};
use prost::Message;

use crate::calibrate::{Calibration, range};
use crate::graph::{dynamic_layer, f16s, f32s, i8s, i32s, tensor};
use crate::{Method, qparams};

/// The preprocessing a net's model computes before its first layer, as its metadata records it.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
pub struct OwnedPreprocess {
    /// Multiplies the raw input.
    pub scale: f32,
    /// Subtracted per channel (one value, or one per input channel).
    pub mean: Vec<f32>,
    /// Divides per channel (one value, or one per input channel).
    pub std: Vec<f32>,
}

impl OwnedPreprocess {
    /// The preprocessing recorded under [`PREPROCESS_KEY`], if any.
    pub fn from_metadata(metadata: &HashMap<String, String>) -> Result<Option<Self>, String> {
        metadata
            .get(PREPROCESS_KEY)
            .map(|json| {
                serde_json::from_str(json).map_err(|e| {
                    format!("its '{PREPROCESS_KEY}' metadata '{json}' is not read: {e}")
                })
            })
            .transpose()
    }

    fn borrowed(&self) -> Preprocess<'_> {
        Preprocess {
            scale: self.scale,
            mean: &self.mean,
            std: &self.std,
        }
    }

    /// `rows` (raw, `[N, C·H·W]`) as the net's first layer sees them, computed as the graph's
    /// `Mul`, `Sub` and `Div` compute them in float32.
    pub fn apply(&self, input: Shape, rows: ArrayView2<f32>) -> Array2<f32> {
        let plane = match input {
            Shape::Image { h, w, .. } => h * w,
            Shape::Flat(_) => 1,
        };
        let at = |v: &[f32], k: usize| if v.len() == 1 { v[0] } else { v[k / plane] };
        Array2::from_shape_fn(rows.dim(), |(r, k)| {
            (rows[[r, k]] * self.scale - at(&self.mean, k)) / at(&self.std, k)
        })
    }
}

/// `net` with every batch norm that directly follows a convolution folded into it, and the
/// number folded.
pub fn fold_batchnorm(net: &Net) -> Result<(Net, usize), distill_nn::NnError> {
    let mut specs = Vec::new();
    let mut layers: Vec<Layer> = Vec::new();
    let mut folded = 0;
    for (layer, spec) in net.layers.iter().zip(&net.arch().layers) {
        if let (Layer::BatchNorm(bn), Some(Layer::Conv(conv))) = (layer, layers.last_mut()) {
            for (o, mut column) in conv.lin.w.columns_mut().into_iter().enumerate() {
                let s = f64::from(bn.gamma[o])
                    / (f64::from(bn.running_var[o]) + f64::from(distill_nn::batchnorm::EPS)).sqrt();
                column.mapv_inplace(|w| (f64::from(w) * s) as f32);
                let b = &mut conv.lin.b[o];
                *b = ((f64::from(*b) - f64::from(bn.running_mean[o])) * s + f64::from(bn.beta[o]))
                    as f32;
            }
            folded += 1;
            continue;
        }
        specs.push(*spec);
        layers.push(layer.clone());
    }
    let arch = distill_nn::Arch { layers: specs };
    let mut out = Net::new(arch, net.input_shape(), net.classes(), 0)?;
    out.layers = layers;
    out.fold = net.fold.clone();
    out.max_norm = net.max_norm;
    Ok((out, folded))
}

/// The names the engine's export gives the input of `net`'s first layer and each layer's output
/// (a dropout layer, which has no node, passes its input's name on).
fn tensor_names(net: &Net, preprocess: bool) -> (String, Vec<String>) {
    let first = match (preprocess, net.input_shape()) {
        (true, _) => "pre.out",
        (false, Shape::Image { .. }) => "input.nchw",
        (false, Shape::Flat(_)) => INPUT,
    }
    .to_string();
    let last = net.layers.len() - 1;
    let mut prev = first.clone();
    let names = net
        .layers
        .iter()
        .enumerate()
        .map(|(l, layer)| {
            if !matches!(layer, Layer::Dropout(_)) {
                prev = if l == last && net.fold.is_none() {
                    OUTPUT.to_string()
                } else {
                    format!("layer{l}.out")
                };
            }
            prev.clone()
        })
        .collect();
    (first, names)
}

/// The calibrated range of the first layer's input and of every layer's output of `net` on
/// `rows` (already preprocessed), by tensor name in the exported graph.
pub fn ranges(
    net: &Net,
    preprocess: bool,
    rows: ArrayView2<f32>,
    calibration: Calibration,
) -> HashMap<String, (f32, f32)> {
    let (first, names) = tensor_names(net, preprocess);
    let mut out = HashMap::new();
    let mut a = rows.as_standard_layout().into_owned();
    let mut values: Vec<f32> = a.iter().copied().collect();
    out.insert(first, range(&mut values, calibration));
    let shapes = net.arch().shapes(net.input_shape(), net.classes());
    let shapes = shapes.unwrap_or_default();
    for ((layer, shape), name) in net.layers.iter().zip(&shapes).zip(names) {
        let mut z = Array2::zeros((a.nrows(), shape.len()));
        layer.forward(a.view(), z.view_mut(), &mut Scratch::None, None);
        values.clear();
        values.extend(z.iter().copied());
        out.insert(name, range(&mut values, calibration));
        a = z;
    }
    out
}

/// The float32 values and dims of initializer `t`.
fn floats(t: &TensorProto) -> (Vec<usize>, Vec<f32>) {
    let dims = t.dims.iter().map(|&d| d as usize).collect();
    let v = if t.raw_data.is_empty() {
        t.float_data.clone()
    } else {
        t.raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    (dims, v)
}

/// A graph being rewritten: its nodes so far, its initializers by name, and the renaming of
/// tensors whose consumers now read a dequantised copy.
struct Rewrite {
    nodes: Vec<NodeProto>,
    inits: HashMap<String, TensorProto>,
    order: Vec<String>,
    renamed: HashMap<String, String>,
}

impl Rewrite {
    fn take(&mut self, name: &str) -> Result<(Vec<usize>, Vec<f32>), String> {
        self.inits
            .remove(name)
            .map(|t| floats(&t))
            .ok_or_else(|| format!("the exported graph has no initializer '{name}'"))
    }

    fn add(&mut self, t: TensorProto) {
        self.order.push(t.name.clone());
        self.inits.insert(t.name.clone(), t);
    }

    /// Adds `QuantizeLinear` → `DequantizeLinear` of `x` with `(scale, zero point)`; returns the
    /// dequantised tensor's name, which `x`'s later consumers read.
    fn qdq(&mut self, x: &str, (s, z): (f32, i8)) -> String {
        let (scale, zp) = (format!("{x}.scale"), format!("{x}.zero_point"));
        self.add(f32s(&scale, &[], &[s]));
        self.add(i8s(&zp, &[], &[z]));
        let (q, dq) = (format!("{x}.quantized"), format!("{x}.dequantized"));
        self.nodes.push(node(
            "QuantizeLinear",
            &format!("{x}/QuantizeLinear"),
            &[x, &scale, &zp],
            &[&q],
            &[],
        ));
        self.nodes.push(node(
            "DequantizeLinear",
            &format!("{x}/DequantizeLinear"),
            &[&q, &scale, &zp],
            &[&dq],
            &[],
        ));
        self.renamed.insert(x.to_string(), dq.clone());
        dq
    }

    /// Adds `DequantizeLinear` of the initializers `q` (int8 or int32) with per-channel `scales`
    /// on `axis`, writing the float tensor `name`.
    fn dequantized(&mut self, name: &str, q: TensorProto, scales: &[f32], axis: i64) {
        let n = scales.len();
        let zp = if q.data_type == DATA_INT32 {
            i32s(&format!("{name}.zero_point"), &[n], &vec![0; n])
        } else {
            i8s(&format!("{name}.zero_point"), &[n], &vec![0; n])
        };
        let scale = f32s(&format!("{name}.scale"), &[n], scales);
        self.nodes.push(node(
            "DequantizeLinear",
            &format!("{name}/DequantizeLinear"),
            &[&q.name, &scale.name, &zp.name],
            &[name],
            &[("axis", axis)],
        ));
        self.add(q);
        self.add(scale);
        self.add(zp);
    }
}

/// `[rows, cols]` row-major → `[cols, rows]` row-major.
fn transposed<T: Copy>(v: &[T], rows: usize, cols: usize) -> Vec<T> {
    (0..cols)
        .flat_map(|c| (0..rows).map(move |r| (r, c)))
        .map(|(r, c)| v[r * cols + c])
        .collect()
}

/// A Conv's weights `[O, C·K·K]` (row-major, `dims[0]` = O) as symmetric int8 per output channel,
/// in the same layout, with one scale per output channel.
fn conv_weights(dims: &[usize], values: &[f32]) -> (Vec<i8>, Vec<f32>) {
    let (o, rest) = (dims[0], values.len() / dims[0].max(1));
    let (q, scales) = qparams::weights_per_column(&transposed(values, o, rest), rest, o);
    (transposed(&q, rest, o), scales)
}

/// The model of `net` (batch norms already folded) encoded by `method`, with `metadata` as its
/// metadata props; `ranges` (from [`ranges`]) are used by [`Method::Static`] only.
pub fn quantize(
    net: &Net,
    preprocess: Option<&OwnedPreprocess>,
    method: Method,
    ranges: &HashMap<String, (f32, f32)>,
    metadata: &[(String, String)],
) -> Result<ModelProto, String> {
    let bytes = to_onnx_bytes_net(net, &[], preprocess.map(OwnedPreprocess::borrowed))
        .map_err(|e| e.to_string())?;
    let mut model = ModelProto::decode(bytes.as_slice()).map_err(|e| e.to_string())?;
    let graph = model.graph.take().unwrap_or_default();
    let mut rw = Rewrite {
        nodes: Vec::new(),
        order: graph.initializer.iter().map(|t| t.name.clone()).collect(),
        inits: graph
            .initializer
            .iter()
            .map(|t| (t.name.clone(), t.clone()))
            .collect(),
        renamed: HashMap::new(),
    };
    let source = graph.node;
    let last_layer = source
        .iter()
        .rposition(|n| n.op_type == "Conv" || n.op_type == "Gemm");
    // The scale and zero point of each dequantised tensor, and those a MaxPool or Flatten
    // passes on to its output.
    let mut params: HashMap<String, (f32, i8)> = HashMap::new();
    let range_of = |name: &str| {
        ranges
            .get(name)
            .map(|&(lo, hi)| qparams::activation(lo, hi))
            .ok_or_else(|| format!("no calibrated range for tensor '{name}'"))
    };
    let mut skip = HashSet::new();
    for (i, source_node) in source.iter().enumerate() {
        if skip.contains(&i) {
            continue;
        }
        let mut n = source_node.clone();
        for input in &mut n.input {
            if let Some(r) = rw.renamed.get(input.as_str()) {
                *input = r.clone();
            }
        }
        let is_layer = n.op_type == "Conv" || n.op_type == "Gemm";
        match method {
            Method::Static if is_layer => {
                let x = n.input[0].clone();
                let (xs, x) = match params.get(&x) {
                    Some(&p) if x.ends_with(".dequantized") => (p, x),
                    inherited => {
                        let p = match inherited {
                            Some(&p) => p,
                            None => range_of(&x)?,
                        };
                        let dq = rw.qdq(&x, p);
                        params.insert(dq.clone(), p);
                        (p, dq)
                    }
                };
                n.input[0] = x;
                let (w, b) = (n.input[1].clone(), n.input[2].clone());
                let (dims, values) = rw.take(&w)?;
                let (wq, ws, axis) = if n.op_type == "Conv" {
                    let (q, s) = conv_weights(&dims, &values);
                    (q, s, 0)
                } else {
                    let (q, s) = qparams::weights_per_column(&values, dims[0], dims[1]);
                    (q, s, 1)
                };
                rw.dequantized(&w, i8s(&format!("{w}.quantized"), &dims, &wq), &ws, axis);
                let (_, bias) = rw.take(&b)?;
                let (bq, bs) = qparams::bias(&bias, xs.0, &ws);
                let bt = i32s(&format!("{b}.quantized"), &[bq.len()], &bq);
                rw.dequantized(&b, bt, &bs, 0);
                if Some(i) != last_layer {
                    let out = n.output[0].clone();
                    let relu = source
                        .get(i + 1)
                        .filter(|r| r.op_type == "Relu" && r.input.first() == Some(&out));
                    let out = match relu {
                        Some(r) => {
                            skip.insert(i + 1);
                            n.output[0] = r.output[0].clone();
                            r.output[0].clone()
                        }
                        None => out,
                    };
                    let p = range_of(&out)?;
                    rw.nodes.push(n);
                    let dq = rw.qdq(&out, p);
                    params.insert(dq, p);
                    continue;
                }
            }
            Method::Static if n.op_type == "MaxPool" || n.op_type == "Flatten" => {
                if let Some(&p) = params.get(&n.input[0]) {
                    params.insert(n.output[0].clone(), p);
                }
            }
            Method::Dynamic if n.op_type == "Gemm" => {
                let (w, b) = (n.input[1].clone(), n.input[2].clone());
                let (dims, values) = rw.take(&w)?;
                let (_, bias) = rw.take(&b)?;
                let (nodes, inits) = dynamic_layer(
                    &n.input[0],
                    n.name.trim_end_matches("/Gemm"),
                    &values,
                    (dims[0], dims[1]),
                    &bias,
                    &n.output[0],
                );
                rw.nodes.extend(nodes);
                inits.into_iter().for_each(|t| rw.add(t));
                continue;
            }
            Method::Dynamic if n.op_type == "Conv" => {
                dynamic_conv(&mut rw, n)?;
                continue;
            }
            Method::Fp16 if is_layer || n.op_type == "BatchNormalization" => {
                for input in n.input.iter_mut().skip(1) {
                    let (dims, values) = rw.take(input)?;
                    let half = f16s(&format!("{input}.fp16"), &dims, values.into_iter());
                    rw.nodes.push(node(
                        "Cast",
                        &format!("{input}/Cast"),
                        &[&half.name],
                        &[input],
                        &[("to", i64::from(DATA_FLOAT))],
                    ));
                    rw.add(half);
                }
            }
            _ => {}
        }
        rw.nodes.push(n);
    }
    let Rewrite {
        nodes,
        mut inits,
        order,
        ..
    } = rw;
    model.graph = Some(GraphProto {
        node: nodes,
        initializer: order.iter().filter_map(|k| inits.remove(k)).collect(),
        name: format!("distill_net_{}", method.name().replace('-', "_")),
        ..graph
    });
    model.metadata_props = metadata
        .iter()
        .map(|(k, v)| StringStringEntryProto {
            key: k.clone(),
            value: v.clone(),
        })
        .collect();
    Ok(model)
}

/// `n` (a float `Conv`) as `DynamicQuantizeLinear` → `ConvInteger` → `Cast` → `Mul` → `Add`
/// (see the module documentation).
fn dynamic_conv(rw: &mut Rewrite, mut n: NodeProto) -> Result<(), String> {
    let (x, w, b, out) = (
        n.input[0].clone(),
        n.input[1].clone(),
        n.input[2].clone(),
        n.output[0].clone(),
    );
    let p = n.name.trim_end_matches("/Conv").to_string();
    let (dims, values) = rw.take(&w)?;
    let (_, bias) = rw.take(&b)?;
    let (q, scales) = conv_weights(&dims, &values);
    let wq: Vec<u8> = q.iter().map(|&v| (i16::from(v) + 128) as u8).collect();
    let (wq_name, wz_name) = (format!("{w}.quantized"), format!("{w}.zero_point"));
    rw.add(tensor(&wq_name, DATA_UINT8, &dims, wq));
    rw.add(tensor(&wz_name, DATA_UINT8, &[], vec![128]));
    let channel = [1, dims[0], 1, 1];
    let ws_name = format!("{w}.scale");
    rw.add(f32s(&ws_name, &channel, &scales));
    rw.add(f32s(&b, &channel, &bias));
    let (xq, xs, xz) = (
        format!("{x}.quantized"),
        format!("{x}.scale"),
        format!("{x}.zero_point"),
    );
    rw.nodes.push(node(
        "DynamicQuantizeLinear",
        &format!("{x}/DynamicQuantizeLinear"),
        &[&x],
        &[&xq, &xs, &xz],
        &[],
    ));
    let int = format!("{p}.conv_int32");
    n.op_type = "ConvInteger".into();
    n.name = format!("{p}/ConvInteger");
    n.input = vec![xq, wq_name, xz, wz_name];
    n.output = vec![int.clone()];
    rw.nodes.push(n);
    let (cast, scales_name, scaled) = (
        format!("{p}.conv_float"),
        format!("{p}.scales"),
        format!("{p}.conv"),
    );
    rw.nodes.push(node(
        "Cast",
        &format!("{p}/Cast"),
        &[&int],
        &[&cast],
        &[("to", i64::from(DATA_FLOAT))],
    ));
    rw.nodes.push(node(
        "Mul",
        &format!("{p}/MulScales"),
        &[&xs, &ws_name],
        &[&scales_name],
        &[],
    ));
    rw.nodes.push(node(
        "Mul",
        &format!("{p}/Mul"),
        &[&cast, &scales_name],
        &[&scaled],
        &[],
    ));
    rw.nodes.push(node(
        "Add",
        &format!("{p}/Add"),
        &[&scaled, &b],
        &[&out],
        &[],
    ));
    Ok(())
}
