//! The ONNX graphs of a quantised MLP. Every variant reads `input` `[N, D]` float32 and writes
//! `logits` `[N, C]` float32, like the float model, so callers do not change; a folded head
//! (`Gather`, `Gather`, `ReduceLogSumExp`, `Concat`) stays in float after the last layer.
//!
//! - **Static int8** ([`static_int8`]), the QDQ format of `onnxruntime.quantization.
//!   quantize_static(quant_format=QDQ, per_channel=True)` with its default int8 activations:
//!   `input` → `QuantizeLinear` → `DequantizeLinear`; per layer, int8 weights with a
//!   `DequantizeLinear` on axis 1 (one scale per output channel, zero point 0), an int32 bias
//!   with a `DequantizeLinear` on axis 0 (scale `input scale × weight scale`), and a `Gemm`. A
//!   hidden layer's `Relu` is absorbed, as ONNX Runtime's quantiser does, into the
//!   `QuantizeLinear` of its output, whose zero point is -128 for a range starting at 0, so the
//!   quantisation itself clamps negatives to 0. ONNX Runtime's CPU provider fuses each
//!   `DequantizeLinear` → `Gemm` (→ `QuantizeLinear`) into one `QGemm`. One difference from
//!   ONNX Runtime's quantiser: the last layer's output (the logits) stays float, where
//!   `quantize_static` adds a `QuantizeLinear`/`DequantizeLinear` pair. Callers read the logits
//!   themselves; 8 bits over their whole range would round them to steps of about range/255 and
//!   can tie the two top classes, and the last `QGemm` writes float for no extra cost.
//! - **Dynamic int8** ([`dynamic_int8`]), the graph of `onnxruntime.quantization.
//!   quantize_dynamic(per_channel=True)` for a `Gemm` MLP: per layer `DynamicQuantizeLinear`
//!   (uint8 input, its scale and zero point computed per batch), `MatMulInteger` with the int8
//!   weights (per output channel, symmetric), `Cast` to float, `Mul` by `input scale × weight
//!   scale`, `Add` of the float bias, `Relu`. ONNX Runtime fuses each layer into
//!   `DynamicQuantizeMatMul`.
//! - **fp16** ([`fp16`]): weights and biases stored as float16, each followed by a `Cast` to
//!   float32, then the float graph. ONNX Runtime 1.31's CPU provider has no float16 `Gemm`,
//!   `MatMul` or `Relu` kernel on x86-64: given a float16 graph it inserts casts to float32
//!   around every node and computes in float32 anyway. This variant says so in the graph: it
//!   halves the file and the weights' memory, and computes what ONNX Runtime computes on CPU
//!   (float32 with float16-rounded weights). It is not faster on CPU.

use distill_core::onnx_proto::*;
use distill_nn::Mlp;
use distill_nn::onnx::{INPUT, OUTPUT, mlp_model, node};

use crate::qparams;

pub(crate) fn tensor(name: &str, data_type: i32, dims: &[usize], raw_data: Vec<u8>) -> TensorProto {
    TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type,
        name: name.to_string(),
        raw_data,
        ..Default::default()
    }
}

pub(crate) fn f32s(name: &str, dims: &[usize], v: &[f32]) -> TensorProto {
    tensor(
        name,
        DATA_FLOAT,
        dims,
        v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    )
}

pub(crate) fn i8s(name: &str, dims: &[usize], v: &[i8]) -> TensorProto {
    tensor(name, DATA_INT8, dims, v.iter().map(|&x| x as u8).collect())
}

pub(crate) fn i32s(name: &str, dims: &[usize], v: &[i32]) -> TensorProto {
    tensor(
        name,
        DATA_INT32,
        dims,
        v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    )
}

pub(crate) fn f16s(name: &str, dims: &[usize], v: impl Iterator<Item = f32>) -> TensorProto {
    tensor(
        name,
        DATA_FLOAT16,
        dims,
        v.flat_map(|x| half::f16::from_f32(x).to_le_bytes())
            .collect(),
    )
}

/// The name of layer `l`'s output: `logits` for the last layer without a folded head.
fn layer_output(mlp: &Mlp, l: usize) -> String {
    if l + 1 == mlp.layers.len() && mlp.fold.is_none() {
        OUTPUT.to_string()
    } else if l + 1 == mlp.layers.len() {
        format!("layer{l}.linear")
    } else {
        format!("layer{l}.relu")
    }
}

/// The scales and zero points of a static int8 model, for tests and reports.
#[derive(Clone, Debug, PartialEq)]
pub struct StaticParams {
    /// `(scale, zero point)` of the input, then of each hidden layer's ReLU output.
    pub activations: Vec<(f32, i8)>,
    /// Per layer: int8 weights (`[in, out]`, row-major) and their per-column scales.
    pub weights: Vec<(Vec<i8>, Vec<f32>)>,
    /// Per layer: int32 biases and their scales.
    pub biases: Vec<(Vec<i32>, Vec<f32>)>,
}

impl StaticParams {
    /// The parameters of `mlp` for the calibrated `ranges` (see [`crate::calibrate::ranges`]:
    /// the input's, then each hidden layer's).
    pub fn new(mlp: &Mlp, ranges: &[(f32, f32)]) -> StaticParams {
        let activations: Vec<(f32, i8)> = ranges
            .iter()
            .map(|&(lo, hi)| qparams::activation(lo, hi))
            .collect();
        let mut weights = Vec::new();
        let mut biases = Vec::new();
        for (l, layer) in mlp.layers.iter().enumerate() {
            let w: Vec<f32> = layer.w.iter().copied().collect();
            let (q, scales) = qparams::weights_per_column(&w, layer.inputs(), layer.outputs());
            let input_scale = activations.get(l).map_or(1.0, |a| a.0);
            let b: Vec<f32> = layer.b.iter().copied().collect();
            biases.push(qparams::bias(&b, input_scale, &scales));
            weights.push((q, scales));
        }
        StaticParams {
            activations,
            weights,
            biases,
        }
    }
}

/// The static int8 QDQ model of `mlp` with `params` (see the module documentation).
pub fn static_int8(mlp: &Mlp, params: &StaticParams, metadata: &[(String, String)]) -> ModelProto {
    let mut nodes = Vec::new();
    let mut inits = Vec::new();
    let qdq =
        |nodes: &mut Vec<NodeProto>, inits: &mut Vec<TensorProto>, x: &str, (s, z): (f32, i8)| {
            let (scale, zp) = (format!("{x}.scale"), format!("{x}.zero_point"));
            inits.push(f32s(&scale, &[], &[s]));
            inits.push(i8s(&zp, &[], &[z]));
            let (q, dq) = (format!("{x}.quantized"), format!("{x}.dequantized"));
            nodes.push(node(
                "QuantizeLinear",
                &format!("{x}/QuantizeLinear"),
                &[x, &scale, &zp],
                &[&q],
                &[],
            ));
            nodes.push(node(
                "DequantizeLinear",
                &format!("{x}/DequantizeLinear"),
                &[&q, &scale, &zp],
                &[&dq],
                &[],
            ));
            dq
        };
    let mut prev = qdq(&mut nodes, &mut inits, INPUT, params.activations[0]);
    for (l, layer) in mlp.layers.iter().enumerate() {
        let (n_in, n_out) = (layer.inputs(), layer.outputs());
        let (wq, ws) = &params.weights[l];
        let (bq, bs) = &params.biases[l];
        let w = format!("layer{l}.weight");
        let b = format!("layer{l}.bias");
        for (name, q, s, zp) in [
            (
                &w,
                i8s(&format!("{w}.quantized"), &[n_in, n_out], wq),
                ws,
                i8s(&format!("{w}.zero_point"), &[n_out], &vec![0; n_out]),
            ),
            (
                &b,
                i32s(&format!("{b}.quantized"), &[n_out], bq),
                bs,
                i32s(&format!("{b}.zero_point"), &[n_out], &vec![0; n_out]),
            ),
        ] {
            let scale = f32s(&format!("{name}.scale"), &[n_out], s);
            nodes.push(node(
                "DequantizeLinear",
                &format!("{name}/DequantizeLinear"),
                &[&q.name, &scale.name, &zp.name],
                &[name],
                &[("axis", if name == &w { 1 } else { 0 })],
            ));
            inits.extend([q, scale, zp]);
        }
        let out = layer_output(mlp, l);
        nodes.push(node(
            "Gemm",
            &format!("layer{l}/Gemm"),
            &[&prev, &w, &b],
            &[&out],
            &[("transB", 0)],
        ));
        prev = if l + 1 < mlp.layers.len() {
            qdq(&mut nodes, &mut inits, &out, params.activations[l + 1])
        } else {
            out
        };
    }
    mlp_model(
        mlp,
        nodes,
        inits,
        &prev,
        metadata,
        "distill_mlp_int8_static",
    )
}

/// One dynamic int8 layer (see the module documentation): `x` times the `[inputs, outputs]`
/// row-major weights `w` plus `b`, written to `out`, with nodes and initializers named after
/// `prefix` (`{prefix}.weight`, `{prefix}.bias`, …). No activation.
pub(crate) fn dynamic_layer(
    x: &str,
    prefix: &str,
    w: &[f32],
    (n_in, n_out): (usize, usize),
    b: &[f32],
    out: &str,
) -> (Vec<NodeProto>, Vec<TensorProto>) {
    let (wq, ws) = qparams::weights_per_column(w, n_in, n_out);
    let (wq_name, ws_name, wz_name) = (
        format!("{prefix}.weight.quantized"),
        format!("{prefix}.weight.scale"),
        format!("{prefix}.weight.zero_point"),
    );
    let b_name = format!("{prefix}.bias");
    let inits = vec![
        i8s(&wq_name, &[n_in, n_out], &wq),
        f32s(&ws_name, &[n_out], &ws),
        i8s(&wz_name, &[n_out], &vec![0; n_out]),
        f32s(&b_name, &[n_out], b),
    ];
    let (xq, xs, xz) = (
        format!("{x}.quantized"),
        format!("{x}.scale"),
        format!("{x}.zero_point"),
    );
    let p = prefix;
    let (scales, int, cast, scaled) = (
        format!("{p}.scales"),
        format!("{p}.matmul_int32"),
        format!("{p}.matmul_float"),
        format!("{p}.matmul"),
    );
    let nodes = vec![
        node(
            "DynamicQuantizeLinear",
            &format!("{x}/DynamicQuantizeLinear"),
            &[x],
            &[&xq, &xs, &xz],
            &[],
        ),
        node(
            "Mul",
            &format!("{p}/MulScales"),
            &[&xs, &ws_name],
            &[&scales],
            &[],
        ),
        node(
            "MatMulInteger",
            &format!("{p}/MatMulInteger"),
            &[&xq, &wq_name, &xz, &wz_name],
            &[&int],
            &[],
        ),
        node(
            "Cast",
            &format!("{p}/Cast"),
            &[&int],
            &[&cast],
            &[("to", i64::from(DATA_FLOAT))],
        ),
        node(
            "Mul",
            &format!("{p}/Mul"),
            &[&cast, &scales],
            &[&scaled],
            &[],
        ),
        node("Add", &format!("{p}/Add"), &[&scaled, &b_name], &[out], &[]),
    ];
    (nodes, inits)
}

/// The dynamic int8 model of `mlp` (see the module documentation).
pub fn dynamic_int8(mlp: &Mlp, metadata: &[(String, String)]) -> ModelProto {
    let mut nodes = Vec::new();
    let mut inits = Vec::new();
    let mut prev = INPUT.to_string();
    for (l, layer) in mlp.layers.iter().enumerate() {
        let p = format!("layer{l}");
        let w: Vec<f32> = layer.w.iter().copied().collect();
        let last = l + 1 == mlp.layers.len();
        let linear = if last {
            layer_output(mlp, l)
        } else {
            format!("{p}.linear")
        };
        let (n, i) = dynamic_layer(
            &prev,
            &p,
            &w,
            (layer.inputs(), layer.outputs()),
            &layer.b.to_vec(),
            &linear,
        );
        nodes.extend(n);
        inits.extend(i);
        prev = if last {
            linear
        } else {
            let relu = layer_output(mlp, l);
            nodes.push(node(
                "Relu",
                &format!("{p}/Relu"),
                &[&linear],
                &[&relu],
                &[],
            ));
            relu
        };
    }
    mlp_model(
        mlp,
        nodes,
        inits,
        &prev,
        metadata,
        "distill_mlp_int8_dynamic",
    )
}

/// The fp16-weight model of `mlp` (see the module documentation).
pub fn fp16(mlp: &Mlp, metadata: &[(String, String)]) -> ModelProto {
    let mut nodes = Vec::new();
    let mut inits = Vec::new();
    let mut prev = INPUT.to_string();
    for (l, layer) in mlp.layers.iter().enumerate() {
        let (n_in, n_out) = (layer.inputs(), layer.outputs());
        let (w, b) = (format!("layer{l}.weight"), format!("layer{l}.bias"));
        for (name, t) in [
            (
                &w,
                f16s(
                    &format!("{w}.fp16"),
                    &[n_in, n_out],
                    layer.w.iter().copied(),
                ),
            ),
            (
                &b,
                f16s(&format!("{b}.fp16"), &[n_out], layer.b.iter().copied()),
            ),
        ] {
            nodes.push(node(
                "Cast",
                &format!("{name}/Cast"),
                &[&t.name],
                &[name],
                &[("to", i64::from(DATA_FLOAT))],
            ));
            inits.push(t);
        }
        let last = l + 1 == mlp.layers.len();
        let linear = if last {
            layer_output(mlp, l)
        } else {
            format!("layer{l}.linear")
        };
        nodes.push(node(
            "Gemm",
            &format!("layer{l}/Gemm"),
            &[&prev, &w, &b],
            &[&linear],
            &[("transB", 0)],
        ));
        prev = if last {
            linear
        } else {
            let relu = layer_output(mlp, l);
            nodes.push(node(
                "Relu",
                &format!("layer{l}/Relu"),
                &[&linear],
                &[&relu],
                &[],
            ));
            relu
        };
    }
    mlp_model(mlp, nodes, inits, &prev, metadata, "distill_mlp_fp16")
}
