//! MLPs as standard ONNX models: input `input` `[N, D]` f32 (dynamic batch), a `Gemm` per layer with
//! `Relu` between them, output `logits` `[N, C]`; opset 17. A network with a folded head (see
//! [`crate::fold`]) ends in `Gather` (kept classes), `Gather` (the others), `ReduceLogSumExp` and
//! `Concat`, in opset 18 (where `ReduceLogSumExp` takes its axes as an input). Metadata props carry
//! the training configuration. Loading reads back models of this shape (Gemm, or MatMul + Add, and
//! Relu, and the folded head).

use crate::fold::Fold;
use crate::linear::Linear;
use crate::mlp::{Mlp, MlpConfig};
use crate::{NnError, Result};
use distill_core::onnx_proto::*;
use ndarray::{Array1, Array2};
use prost::Message;
use std::collections::HashMap;
use std::path::Path;

pub mod net;
pub use net::{LoadedNet, NET_OPSET, Preprocess, load_net, save_net, to_onnx_bytes_net};

pub const OPSET: i64 = 17;
/// The opset of a network with a folded head.
pub const OPSET_FOLDED: i64 = 18;
/// ONNX's `TensorProto.DataType` for int64.
const DATA_INT64: i32 = 7;
pub const INPUT: &str = "input";
pub const OUTPUT: &str = "logits";
/// Metadata key holding the network's [`MlpConfig`] as JSON.
pub const CONFIG_KEY: &str = "distill.mlp";

fn tensor(name: &str, dims: &[usize], values: impl Iterator<Item = f32>) -> TensorProto {
    TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: DATA_FLOAT,
        name: name.to_string(),
        raw_data: values.flat_map(f32::to_le_bytes).collect(),
        ..Default::default()
    }
}

fn int64_tensor(name: &str, values: &[u32]) -> TensorProto {
    TensorProto {
        dims: vec![values.len() as i64],
        data_type: DATA_INT64,
        name: name.to_string(),
        raw_data: values
            .iter()
            .flat_map(|&v| (v as i64).to_le_bytes())
            .collect(),
        ..Default::default()
    }
}

/// A node of the default domain with integer attributes.
pub fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    outputs: &[&str],
    ints: &[(&str, i64)],
) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: name.into(),
        op_type: op.into(),
        attribute: ints
            .iter()
            .map(|&(name, i)| AttributeProto {
                name: name.into(),
                i,
                r#type: ATTR_INT,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// The folded head's nodes and index initializers, from `full` (the last layer's output) to
/// [`OUTPUT`]. Public for writers of other encodings of the same network (quantised models keep
/// this head in float).
pub fn fold_nodes(fold: &Fold, full: &str) -> (Vec<NodeProto>, Vec<TensorProto>) {
    let inits = vec![
        int64_tensor("fold.keep", fold.keep()),
        int64_tensor("fold.others", fold.others()),
        TensorProto {
            dims: vec![1],
            data_type: DATA_INT64,
            name: "fold.axes".into(),
            raw_data: 1i64.to_le_bytes().to_vec(),
            ..Default::default()
        },
    ];
    let nodes = vec![
        node(
            "Gather",
            "fold/Keep",
            &[full, "fold.keep"],
            &["fold.kept"],
            &[("axis", 1)],
        ),
        node(
            "Gather",
            "fold/Others",
            &[full, "fold.others"],
            &["fold.other_logits"],
            &[("axis", 1)],
        ),
        node(
            "ReduceLogSumExp",
            "fold/Dustbin",
            &["fold.other_logits", "fold.axes"],
            &["fold.dustbin"],
            &[("keepdims", 1)],
        ),
        node(
            "Concat",
            "fold/Concat",
            &["fold.kept", "fold.dustbin"],
            &[OUTPUT],
            &[("axis", 1)],
        ),
    ];
    (nodes, inits)
}

/// A float32 `[batch, width]` graph input or output named `name` (dynamic batch).
pub fn value_info(name: &str, width: usize) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: DATA_FLOAT,
                shape: Some(TensorShapeProto {
                    dim: vec![
                        Dimension {
                            value: Some(DimValue::DimParam("batch".into())),
                        },
                        Dimension {
                            value: Some(DimValue::DimValue(width as i64)),
                        },
                    ],
                }),
            }),
        }),
    }
}

/// The model of `mlp` whose graph is `nodes` and `initializers`, ending at `last` (the last layer's
/// output), with the folded head appended when `mlp` has one, `metadata` as its metadata props, and
/// the opset, input and output every writer of this network's encodings shares (the float export
/// here, and the quantised ones).
pub fn mlp_model(
    mlp: &Mlp,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    last: &str,
    metadata: &[(String, String)],
    graph_name: &str,
) -> ModelProto {
    let opset = if mlp.fold.is_some() {
        OPSET_FOLDED
    } else {
        OPSET
    };
    let io = (mlp.inputs(), mlp.classes());
    model(
        mlp.fold.as_ref(),
        opset,
        io,
        (nodes, initializers),
        last,
        metadata,
        graph_name,
    )
}

/// A model of opset `opset` whose graph is `graph` (nodes and initializers) ending at `last`, then
/// the folded head `fold` if any; input [`INPUT`] and output [`OUTPUT`] of the widths `io`.
fn model(
    fold: Option<&Fold>,
    opset: i64,
    io: (usize, usize),
    graph: (Vec<NodeProto>, Vec<TensorProto>),
    last: &str,
    metadata: &[(String, String)],
    graph_name: &str,
) -> ModelProto {
    let (mut nodes, mut initializers) = graph;
    if let Some(fold) = fold {
        let (head, inits) = fold_nodes(fold, last);
        nodes.extend(head);
        initializers.extend(inits);
    }
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: opset,
        }],
        producer_name: "distill".into(),
        producer_version: distill_core::TOOL_VERSION.into(),
        graph: Some(GraphProto {
            node: nodes,
            name: graph_name.into(),
            initializer: initializers,
            input: vec![value_info(INPUT, io.0)],
            output: vec![value_info(OUTPUT, io.1)],
            ..Default::default()
        }),
        metadata_props: metadata
            .iter()
            .map(|(k, v)| StringStringEntryProto {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        ..Default::default()
    }
}

/// The ONNX bytes of `mlp`, with `preprocess` as its first nodes (as [`to_onnx_bytes_net`] bakes
/// it, one mean and one std for the flat input's one channel) and `metadata` (plus the network's
/// configuration, and the preprocessing under [`net::PREPROCESS_KEY`]) as metadata props. Without
/// preprocessing the bytes are those of an MLP file before preprocessing existed.
pub fn to_onnx_bytes(
    mlp: &Mlp,
    metadata: &[(String, String)],
    preprocess: Option<Preprocess>,
) -> Result<Vec<u8>> {
    let mut nodes = Vec::new();
    let mut initializers = Vec::new();
    let mut prev = INPUT.to_string();
    let pre_prop = preprocess
        .map(|p| {
            net::preprocess_nodes(
                p,
                crate::Shape::Flat(mlp.inputs()),
                &mut prev,
                &mut nodes,
                &mut initializers,
            )
        })
        .transpose()?;
    let last = mlp.layers.len() - 1;
    for (l, layer) in mlp.layers.iter().enumerate() {
        let w = format!("layer{l}.weight");
        let b = format!("layer{l}.bias");
        initializers.push(tensor(
            &w,
            &[layer.inputs(), layer.outputs()],
            layer.w.iter().copied(),
        ));
        initializers.push(tensor(&b, &[layer.outputs()], layer.b.iter().copied()));
        let gemm_out = if l == last && mlp.fold.is_none() {
            OUTPUT.to_string()
        } else {
            format!("layer{l}.linear")
        };
        let gemm = format!("layer{l}/Gemm");
        nodes.push(node(
            "Gemm",
            &gemm,
            &[&prev, &w, &b],
            &[&gemm_out],
            &[("transB", 0)],
        ));
        prev = gemm_out;
        if l != last {
            let relu_out = format!("layer{l}.relu");
            let relu = format!("layer{l}/Relu");
            nodes.push(node("Relu", &relu, &[&prev], &[&relu_out], &[]));
            prev = relu_out;
        }
    }
    let config = serde_json::to_string(&mlp.config).map_err(|e| NnError::Shape(e.to_string()))?;
    let mut props = vec![(CONFIG_KEY.to_string(), config)];
    props.extend(pre_prop);
    props.extend_from_slice(metadata);
    Ok(mlp_model(mlp, nodes, initializers, &prev, &props, "distill_mlp").encode_to_vec())
}

/// Saves `mlp` as ONNX at `path`, atomically.
pub fn save(mlp: &Mlp, path: &Path, metadata: &[(String, String)]) -> Result<()> {
    save_preprocessed(mlp, path, metadata, None)
}

/// Saves `mlp` as ONNX at `path`, atomically, with `preprocess` baked in (see [`to_onnx_bytes`]).
pub fn save_preprocessed(
    mlp: &Mlp,
    path: &Path,
    metadata: &[(String, String)],
    preprocess: Option<Preprocess>,
) -> Result<()> {
    let bytes = to_onnx_bytes(mlp, metadata, preprocess)?;
    distill_core::atomic::write_bytes(path, &bytes)?;
    Ok(())
}

/// A network read from ONNX, with the model's metadata props.
pub struct Loaded {
    pub mlp: Mlp,
    pub metadata: HashMap<String, String>,
}

/// Loads an MLP saved by [`save`] (or any ONNX model made only of Gemm / MatMul+Add and Relu on a
/// flat float input). Only a regular file of at most [`distill_core::input::MAX_MODEL_BYTES`] is
/// read. An MLP saved with preprocessing ([`save_preprocessed`]) is refused, as the [`Mlp`] would
/// not compute it: read it with [`load_preprocessed`].
pub fn load(path: &Path) -> Result<Loaded> {
    load_mlp(path, false)
}

/// As [`load`], and also an MLP saved by [`save_preprocessed`]: the returned [`Mlp`] is the network
/// after the preprocessing nodes (it takes preprocessed rows), and the preprocessing is in the
/// metadata under [`net::PREPROCESS_KEY`].
pub fn load_preprocessed(path: &Path) -> Result<Loaded> {
    load_mlp(path, true)
}

fn load_mlp(path: &Path, with_preprocess: bool) -> Result<Loaded> {
    let err = |message: String| NnError::Onnx {
        path: path.display().to_string(),
        message,
    };
    let (model, graph) = read_model(path)?;
    let inits = initializers(&graph);
    let values = |name: &str| float_initializer(&inits, name).map_err(err);
    let input = graph
        .input
        .iter()
        .find(|i| !inits.contains_key(i.name.as_str()))
        .ok_or_else(|| err("the graph has no input".into()))?;
    let mut current = input.name.clone();
    let mut layers: Vec<Linear> = Vec::new();
    let mut pending: Option<Array2<f32>> = None;
    let head_at = graph
        .node
        .iter()
        .position(|n| n.op_type == "Gather")
        .unwrap_or(graph.node.len());
    let (chain, head) = graph.node.split_at(head_at);
    let has_preprocess = model
        .metadata_props
        .iter()
        .any(|p| p.key == net::PREPROCESS_KEY);
    let mut pre_nodes = 0;
    for node in chain {
        if node.input.first() != Some(&current) {
            return Err(err(format!(
                "node '{}' ({}) does not continue the chain from '{current}'; only plain MLPs load",
                node.name, node.op_type
            )));
        }
        let attr = |name: &str| node.attribute.iter().find(|a| a.name == name);
        let expected_pre = net::PREPROCESS_NODES
            .get(pre_nodes)
            .filter(|_| layers.is_empty());
        if let Some(&(op, arg, out)) = expected_pre
            && node.op_type == op
            && node.input.get(1).map(String::as_str) == Some(arg)
            && node.output.first().map(String::as_str) == Some(out)
        {
            if !(with_preprocess && has_preprocess) {
                return Err(err(format!(
                    "node '{}' ({op}) is preprocessing (the model's metadata {} it under '{}'), \
                     which a plain MLP does not compute; read the model with \
                     distill_nn::Model::load, which keeps the preprocessing in the metadata",
                    node.name,
                    if has_preprocess {
                        "records"
                    } else {
                        "does not record"
                    },
                    net::PREPROCESS_KEY
                )));
            }
            pre_nodes += 1;
            current = out.to_string();
            continue;
        }
        if pre_nodes > 0 && pre_nodes < net::PREPROCESS_NODES.len() {
            return Err(err(format!(
                "node '{}' ({}) follows {pre_nodes} of the 3 preprocessing nodes (Mul, Sub, Div); \
                 the preprocessing is incomplete",
                node.name, node.op_type
            )));
        }
        match node.op_type.as_str() {
            "Gemm" => {
                for (a, default) in [("alpha", 1.0f32), ("beta", 1.0)] {
                    if attr(a).is_some_and(|x| x.f != default) {
                        return Err(err(format!("Gemm '{}' has {a} != 1", node.name)));
                    }
                }
                if attr("transA").is_some_and(|x| x.i != 0) {
                    return Err(err(format!("Gemm '{}' has transA", node.name)));
                }
                let (wd, wv) = values(&node.input[1])?;
                let mut w =
                    Array2::from_shape_vec((wd[0], wd[1]), wv).map_err(|e| err(e.to_string()))?;
                if attr("transB").is_some_and(|x| x.i == 1) {
                    w = w.t().to_owned();
                }
                let b = match node.input.get(2) {
                    Some(name) => Array1::from(values(name)?.1),
                    None => Array1::zeros(w.ncols()),
                };
                if b.len() != w.ncols() {
                    return Err(err(format!(
                        "Gemm '{}': bias of {} for {} outputs",
                        node.name,
                        b.len(),
                        w.ncols()
                    )));
                }
                layers.push(Linear { w, b });
            }
            "MatMul" => {
                let (wd, wv) = values(&node.input[1])?;
                pending = Some(
                    Array2::from_shape_vec((wd[0], wd[1]), wv).map_err(|e| err(e.to_string()))?,
                );
            }
            "Add" => {
                let w = pending.take().ok_or_else(|| {
                    err(format!("Add '{}' without a MatMul before it", node.name))
                })?;
                let b = Array1::from(values(&node.input[1])?.1);
                layers.push(Linear { w, b });
            }
            "Relu" => {}
            other => {
                return Err(err(format!(
                    "operator {other} ('{}') is not part of an MLP",
                    node.name
                )));
            }
        }
        current = node.output.first().cloned().unwrap_or_default();
    }
    if layers.is_empty() {
        return Err(err("no layers found".into()));
    }
    let fold = if head.is_empty() {
        None
    } else {
        let total = layers.last().map_or(0, |l| l.outputs());
        Some(read_fold(head, &current, total, &inits).map_err(err)?)
    };
    for pair in layers.windows(2) {
        if pair[0].outputs() != pair[1].inputs() {
            return Err(err("consecutive layers disagree in width".into()));
        }
    }
    let metadata: HashMap<String, String> = model
        .metadata_props
        .into_iter()
        .map(|p| (p.key, p.value))
        .collect();
    let mut sizes = vec![layers[0].inputs()];
    sizes.extend(layers.iter().map(|l| l.outputs()));
    let config = metadata
        .get(CONFIG_KEY)
        .and_then(|c| serde_json::from_str::<MlpConfig>(c).ok())
        .filter(|c| c.sizes == sizes)
        .unwrap_or(MlpConfig {
            sizes,
            input_dropout: 0.0,
            hidden_dropout: 0.0,
            max_norm: None,
        });
    Ok(Loaded {
        mlp: Mlp {
            config,
            layers,
            fold,
        },
        metadata,
    })
}

/// The model at `path` (a regular file of at most [`distill_core::input::MAX_MODEL_BYTES`]) and
/// its graph.
/// The metadata props of the ONNX model at `path` (e.g. [`net::ARCH_KEY`] tells a net saved by
/// [`save_net`] from an MLP saved by [`save`]).
pub fn metadata(path: &Path) -> Result<HashMap<String, String>> {
    let (model, _) = read_model(path)?;
    Ok(model
        .metadata_props
        .into_iter()
        .map(|p| (p.key, p.value))
        .collect())
}

fn read_model(path: &Path) -> Result<(ModelProto, GraphProto)> {
    let err = |message: String| NnError::Onnx {
        path: path.display().to_string(),
        message,
    };
    let bytes = distill_core::input::read("", path, distill_core::input::MAX_MODEL_BYTES)?;
    let mut model =
        ModelProto::decode(&bytes[..]).map_err(|e| err(format!("not an ONNX model ({e})")))?;
    let graph = model
        .graph
        .take()
        .ok_or_else(|| err("the model has no graph".into()))?;
    Ok((model, graph))
}

/// The graph's initializers by name.
fn initializers(graph: &GraphProto) -> HashMap<&str, &TensorProto> {
    graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect()
}

/// The dims and values of the float32 initializer `name` (stored in the model, not externally).
fn float_initializer(
    inits: &HashMap<&str, &TensorProto>,
    name: &str,
) -> std::result::Result<(Vec<usize>, Vec<f32>), String> {
    let t = inits
        .get(name)
        .ok_or_else(|| format!("'{name}' is not an initializer"))?;
    if t.data_type != DATA_FLOAT {
        return Err(format!("initializer '{name}' is not float32"));
    }
    if !t.external_data.is_empty() {
        return Err(format!(
            "initializer '{name}' uses external data, which import does not read"
        ));
    }
    let v: Vec<f32> = if t.raw_data.is_empty() {
        t.float_data.clone()
    } else {
        t.raw_data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    let dims: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
    if dims.iter().product::<usize>() != v.len() {
        return Err(format!(
            "initializer '{name}' has dims {dims:?} but {} values",
            v.len()
        ));
    }
    Ok((dims, v))
}

/// The folded head written by [`fold_nodes`], read back from its nodes; `full` is the last
/// layer's output, `total` its width.
fn read_fold(
    head: &[NodeProto],
    full: &str,
    total: usize,
    inits: &HashMap<&str, &TensorProto>,
) -> std::result::Result<Fold, String> {
    let shape = "a folded head is Gather (kept), Gather (others), ReduceLogSumExp, Concat";
    let [keep, others, lse, concat] = head else {
        return Err(format!(
            "{shape}; found {} nodes after the last layer",
            head.len()
        ));
    };
    let ops: Vec<&str> = head.iter().map(|n| n.op_type.as_str()).collect();
    if ops != ["Gather", "Gather", "ReduceLogSumExp", "Concat"]
        || keep.input.first().map(String::as_str) != Some(full)
        || others.input.first().map(String::as_str) != Some(full)
        || lse.input.first() != others.output.first()
        || concat.input.first() != keep.output.first()
        || concat.input.get(1) != lse.output.first()
    {
        return Err(format!("{shape}, in that order; found {ops:?}"));
    }
    let indices = |node: &NodeProto| -> std::result::Result<Vec<u32>, String> {
        let name = node.input.get(1).map(String::as_str).unwrap_or_default();
        let t = inits
            .get(name)
            .filter(|t| t.data_type == DATA_INT64 && t.raw_data.len() % 8 == 0)
            .ok_or_else(|| {
                format!(
                    "the indices '{name}' of '{}' are not an int64 initializer",
                    node.name
                )
            })?;
        t.raw_data
            .chunks_exact(8)
            .map(|c| {
                let v = i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
                u32::try_from(v).map_err(|_| format!("'{}' holds the class index {v}", node.name))
            })
            .collect()
    };
    let fold = Fold::new(&indices(keep)?, total).map_err(|e| e.to_string())?;
    if indices(others)? != fold.others() {
        return Err("the folded head's two Gathers do not split the classes in two".into());
    }
    Ok(fold)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_and_load_roundtrip_exactly() {
        let m = Mlp::new(
            MlpConfig {
                sizes: vec![6, 4, 3],
                input_dropout: 0.2,
                hidden_dropout: 0.5,
                max_norm: Some(3.0),
            },
            1,
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.onnx");
        save(&m, &p, &[("k".into(), "v".into())]).unwrap();
        let back = load(&p).unwrap();
        assert_eq!(back.mlp, m);
        assert_eq!(back.metadata["k"], "v");
        std::fs::write(&p, b"garbage").unwrap();
        assert!(load(&p).is_err());
    }
}
