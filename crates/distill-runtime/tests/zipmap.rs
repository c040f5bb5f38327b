//! ZipMap outputs with every kind of class label, from tiny models built here: an input `X` of
//! three probabilities per row fed straight into `ai.onnx.ml` ZipMap. Labels that are the class
//! numbers 0..2 (as integers or strings, in any order) are read so that column k is class k; names
//! and numbers outside 0..2 are refused, naming the model and the labels.
//!
//! The expected columns follow from the ZipMap contract (label `classlabels[i]` gets column `i` of
//! `X`), not from our reader.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use distill_runtime::{ModelSpec, OnnxModel, OutputKind, Provider, RuntimeError};
use ndarray::{Array2, array};
use prost::Message;

/// The part of the ONNX schema (onnx/onnx.proto3) a ZipMap model needs, with its field numbers:
/// sequence and map types, and string-list attributes, which distill itself never writes.
mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelProto {
        #[prost(int64, tag = "1")]
        pub ir_version: i64,
        #[prost(message, repeated, tag = "8")]
        pub opset_import: Vec<OperatorSetIdProto>,
        #[prost(message, optional, tag = "7")]
        pub graph: Option<GraphProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct OperatorSetIdProto {
        #[prost(string, tag = "1")]
        pub domain: String,
        #[prost(int64, tag = "2")]
        pub version: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GraphProto {
        #[prost(message, repeated, tag = "1")]
        pub node: Vec<NodeProto>,
        #[prost(string, tag = "2")]
        pub name: String,
        #[prost(message, repeated, tag = "11")]
        pub input: Vec<ValueInfoProto>,
        #[prost(message, repeated, tag = "12")]
        pub output: Vec<ValueInfoProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NodeProto {
        #[prost(string, repeated, tag = "1")]
        pub input: Vec<String>,
        #[prost(string, repeated, tag = "2")]
        pub output: Vec<String>,
        #[prost(string, tag = "4")]
        pub op_type: String,
        #[prost(message, repeated, tag = "5")]
        pub attribute: Vec<AttributeProto>,
        #[prost(string, tag = "7")]
        pub domain: String,
    }

    /// `AttributeProto.AttributeType` STRINGS and INTS.
    pub const STRINGS: i32 = 8;
    pub const INTS: i32 = 7;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AttributeProto {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(int64, repeated, tag = "8")]
        pub ints: Vec<i64>,
        #[prost(bytes = "vec", repeated, tag = "9")]
        pub strings: Vec<Vec<u8>>,
        #[prost(int32, tag = "20")]
        pub r#type: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueInfoProto {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub r#type: Option<TypeProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TypeProto {
        #[prost(oneof = "Value", tags = "1, 4, 5")]
        pub value: Option<Value>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(message, tag = "1")]
        Tensor(Tensor),
        #[prost(message, tag = "4")]
        Sequence(Box<Sequence>),
        #[prost(message, tag = "5")]
        Map(Box<Map>),
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Tensor {
        #[prost(int32, tag = "1")]
        pub elem_type: i32,
        #[prost(message, optional, tag = "2")]
        pub shape: Option<Shape>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Shape {
        #[prost(message, repeated, tag = "1")]
        pub dim: Vec<Dimension>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dimension {
        #[prost(int64, optional, tag = "1")]
        pub dim_value: Option<i64>,
        #[prost(string, optional, tag = "2")]
        pub dim_param: Option<String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sequence {
        #[prost(message, optional, boxed, tag = "1")]
        pub elem_type: Option<Box<TypeProto>>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Map {
        #[prost(int32, tag = "1")]
        pub key_type: i32,
        #[prost(message, optional, boxed, tag = "2")]
        pub value_type: Option<Box<TypeProto>>,
    }
}

/// `TensorProto.DataType` FLOAT, INT64 and STRING.
const FLOAT: i32 = 1;
const INT64: i32 = 7;
const STRING: i32 = 8;

/// The labels of a ZipMap node: `classlabels_int64s` or `classlabels_strings`.
enum Labels<'a> {
    Ints(&'a [i64]),
    Strings(&'a [&'a str]),
}

/// Writes `X [N, 3] → ZipMap(labels) → Z` to `dir/name` and returns its path.
fn zipmap_model(dir: &Path, name: &str, labels: Labels) -> PathBuf {
    use proto::*;
    let (attribute, key_type) = match labels {
        Labels::Ints(l) => (
            AttributeProto {
                name: "classlabels_int64s".into(),
                ints: l.to_vec(),
                strings: Vec::new(),
                r#type: INTS,
            },
            INT64,
        ),
        Labels::Strings(l) => (
            AttributeProto {
                name: "classlabels_strings".into(),
                ints: Vec::new(),
                strings: l.iter().map(|s| s.as_bytes().to_vec()).collect(),
                r#type: STRINGS,
            },
            STRING,
        ),
    };
    let dim = |value: Option<i64>, param: Option<&str>| Dimension {
        dim_value: value,
        dim_param: param.map(str::to_string),
    };
    let float_tensor = |dims: Vec<Dimension>| TypeProto {
        value: Some(Value::Tensor(Tensor {
            elem_type: FLOAT,
            shape: Some(Shape { dim: dims }),
        })),
    };
    let map = TypeProto {
        value: Some(Value::Map(Box::new(Map {
            key_type,
            value_type: Some(Box::new(float_tensor(Vec::new()))),
        }))),
    };
    let model = ModelProto {
        ir_version: 8,
        opset_import: vec![
            OperatorSetIdProto {
                domain: String::new(),
                version: 13,
            },
            OperatorSetIdProto {
                domain: "ai.onnx.ml".into(),
                version: 1,
            },
        ],
        graph: Some(GraphProto {
            node: vec![NodeProto {
                input: vec!["X".into()],
                output: vec!["Z".into()],
                op_type: "ZipMap".into(),
                attribute: vec![attribute],
                domain: "ai.onnx.ml".into(),
            }],
            name: "zipmap".into(),
            input: vec![ValueInfoProto {
                name: "X".into(),
                r#type: Some(float_tensor(vec![dim(None, Some("N")), dim(Some(3), None)])),
            }],
            output: vec![ValueInfoProto {
                name: "Z".into(),
                r#type: Some(TypeProto {
                    value: Some(Value::Sequence(Box::new(Sequence {
                        elem_type: Some(Box::new(map)),
                    }))),
                }),
            }],
        }),
    };
    let path = dir.join(name);
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    path
}

fn rows() -> Array2<f32> {
    array![[0.1, 0.2, 0.7], [0.6, 0.3, 0.1]]
}

fn scores(path: &Path) -> Result<Array2<f32>, RuntimeError> {
    let mut model = OnnxModel::load(&ModelSpec::new(path), Provider::Cpu, 1)?;
    assert_eq!(model.kind(), OutputKind::Probabilities);
    model.run(rows().view())
}

#[test]
fn labels_that_are_the_class_numbers_give_column_k_to_class_k() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // In order: the columns as given.
    for (name, labels) in [
        ("ints.onnx", Labels::Ints(&[0, 1, 2])),
        ("strings.onnx", Labels::Strings(&["0", "1", "2"])),
    ] {
        assert_eq!(
            scores(&zipmap_model(d, name, labels)).unwrap(),
            rows(),
            "{name}"
        );
    }
    // Out of order: label 2 holds column 0, label 0 column 1, label 1 column 2.
    let expected = array![[0.2, 0.7, 0.1], [0.3, 0.1, 0.6]];
    for (name, labels) in [
        ("ints-shuffled.onnx", Labels::Ints(&[2, 0, 1])),
        ("strings-shuffled.onnx", Labels::Strings(&["2", "0", "1"])),
    ] {
        assert_eq!(
            scores(&zipmap_model(d, name, labels)).unwrap(),
            expected,
            "{name}"
        );
    }
}

#[test]
fn labels_that_are_not_the_class_numbers_are_refused_with_the_model_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (name, labels, found) in [
        (
            "names.onnx",
            Labels::Strings(&["zero", "one", "two"]),
            r#""one", "two", "zero" (3 labels)"#,
        ),
        (
            "big-int.onnx",
            Labels::Ints(&[0, 1, 4242]),
            r#""0", "1", "4242" (3 labels)"#,
        ),
        (
            "gap.onnx",
            Labels::Strings(&["1", "2", "3"]),
            r#""1", "2", "3" (3 labels)"#,
        ),
    ] {
        let path = zipmap_model(d, name, labels);
        let e = scores(&path).unwrap_err();
        assert!(
            matches!(e, RuntimeError::ZipMapLabels { .. }),
            "{name}: {e:?}"
        );
        assert!(e.is_user_error(), "{name}");
        let message = e.to_string();
        for part in [
            &format!("model {}", path.display()),
            "`Z`",
            found,
            "class numbers 0 to C-1",
        ] {
            assert!(message.contains(part), "{name}: {part}: {message}");
        }
    }
}
