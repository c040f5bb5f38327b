//! ZipMap outputs with every kind of class label, from tiny models built here: an input `X` of
//! three probabilities per row fed straight into `ai.onnx.ml` ZipMap. Labels that are the class
//! numbers 0..2 (as integers or strings, in any order) are read so that column k is class k; names
//! and numbers outside 0..2 are refused, naming the model and the labels.
//!
//! The expected columns follow from the ZipMap contract (label `classlabels[i]` gets column `i` of
//! `X`), not from our reader.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use distill_core::onnx_proto::{
    ATTR_INTS, ATTR_STRINGS, AttributeProto, DATA_FLOAT, DimValue, Dimension, GraphProto,
    ModelProto, NodeProto, OperatorSetIdProto, TensorShapeProto, TensorTypeProto, TypeProto,
    ValueInfoProto,
};
use distill_runtime::{ModelSpec, OnnxModel, OutputKind, Provider, RuntimeError};
use ndarray::{Array2, array};
use prost::Message;

/// The labels of a ZipMap node: `classlabels_int64s` or `classlabels_strings`.
enum Labels<'a> {
    Ints(&'a [i64]),
    Strings(&'a [&'a str]),
}

/// Writes `X [N, 3] → ZipMap(labels) → Z` to `dir/name` and returns its path. The output's type
/// (a sequence of maps) is left to ONNX Runtime's type inference.
fn zipmap_model(dir: &Path, name: &str, labels: Labels) -> PathBuf {
    let attribute = match labels {
        Labels::Ints(l) => AttributeProto {
            name: "classlabels_int64s".into(),
            ints: l.to_vec(),
            r#type: ATTR_INTS,
            ..Default::default()
        },
        Labels::Strings(l) => AttributeProto {
            name: "classlabels_strings".into(),
            strings: l.iter().map(|s| s.as_bytes().to_vec()).collect(),
            r#type: ATTR_STRINGS,
            ..Default::default()
        },
    };
    let dim = |value| Dimension { value: Some(value) };
    let input = ValueInfoProto {
        name: "X".into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: DATA_FLOAT,
                shape: Some(TensorShapeProto {
                    dim: vec![
                        dim(DimValue::DimParam("N".into())),
                        dim(DimValue::DimValue(3)),
                    ],
                }),
            }),
        }),
    };
    let opset = |domain: &str, version| OperatorSetIdProto {
        domain: domain.into(),
        version,
    };
    let model = ModelProto {
        ir_version: 8,
        opset_import: vec![opset("", 13), opset("ai.onnx.ml", 1)],
        graph: Some(GraphProto {
            node: vec![NodeProto {
                input: vec!["X".into()],
                output: vec!["Z".into()],
                op_type: "ZipMap".into(),
                attribute: vec![attribute],
                domain: "ai.onnx.ml".into(),
                ..Default::default()
            }],
            name: "zipmap".into(),
            input: vec![input],
            output: vec![ValueInfoProto {
                name: "Z".into(),
                r#type: None,
            }],
            ..Default::default()
        }),
        ..Default::default()
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
