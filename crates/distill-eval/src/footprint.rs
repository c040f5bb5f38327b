//! A model's deployment footprint read from its ONNX file: parameter count and bytes on disk.
//!
//! Decoded with the ONNX schema subset of `distill_core::onnx_proto`.

use std::path::{Path, PathBuf};

use distill_core::onnx_proto::{ModelProto, TensorProto};
use prost::Message;
use serde::Serialize;

use crate::EvalError;

/// `TensorProto.DataType` values of tensors that hold parameters: the floating-point ones (FLOAT,
/// FLOAT16, DOUBLE, BFLOAT16) and the integer ones a quantised model keeps its weights, zero
/// points and biases in (UINT8, INT8, INT32). INT64 tensors hold indices and shapes, not
/// parameters.
const PARAMETER_TYPES: [i32; 7] = [1, 10, 11, 16, 2, 3, 6];

/// Bytes per element of a [`PARAMETER_TYPES`] `TensorProto.DataType`.
fn element_bytes(data_type: i32) -> u64 {
    match data_type {
        11 => 8,
        10 | 16 => 2,
        2 | 3 => 1,
        _ => 4,
    }
}

/// Elements of a parameter tensor (0 for other types) that its data actually holds: the
/// declared shape's element count, but never more than the data present (`raw_data`,
/// `float_data`, or the external data's length). A double or 16-bit tensor may keep its values
/// in fields this schema subset skips (`double_data`, `int32_data`); then it is counted as
/// declared, but never as more elements than `model_bytes` bytes can hold.
fn parameter_elements(t: &TensorProto, folder: &Path, model_bytes: u64) -> u64 {
    if !PARAMETER_TYPES.contains(&t.data_type) {
        return 0;
    }
    let declared = t
        .dims
        .iter()
        .map(|&d| u64::try_from(d).unwrap_or(0))
        .try_fold(1u64, |n, d| n.checked_mul(d))
        .unwrap_or(u64::MAX);
    let size = element_bytes(t.data_type);
    let external = |key: &str| {
        t.external_data
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.value.as_str())
    };
    let present = if t.data_location == 1 {
        match external("length").and_then(|l| l.parse::<u64>().ok()) {
            Some(length) => length / size,
            None => external("location")
                .and_then(|l| std::fs::metadata(folder.join(l)).ok())
                .map_or(0, |m| {
                    let offset = external("offset")
                        .and_then(|o| o.parse::<u64>().ok())
                        .unwrap_or(0);
                    m.len().saturating_sub(offset) / size
                }),
        }
    } else if !t.raw_data.is_empty() {
        t.raw_data.len() as u64 / size
    } else if !t.float_data.is_empty() {
        t.float_data.len() as u64
    } else if t.data_type == 1 {
        0
    } else {
        model_bytes / element_bytes(t.data_type).min(8)
    };
    declared.min(present)
}

/// What a model costs to deploy, as far as its file says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Footprint {
    /// Parameters stored in the model (as many as its data holds, whatever the shapes declare):
    /// the elements of its top-level floating-point initializers and of the integer ones that
    /// hold a quantised model's weights, zero points and biases (int8, uint8, int32), plus
    /// float tensors and float lists held in node attributes (skl2onnx keeps a linear model's coefficients in
    /// `LinearClassifier` attributes, and some exporters use `Constant` nodes). Subgraphs (`If`, `Loop`) are
    /// not counted.
    pub parameters: u64,
    /// Bytes of the `.onnx` file plus its external data files.
    pub file_bytes: u64,
    /// SHA-256 of the `.onnx` file, from the same read.
    pub sha256: String,
    /// The float model it was quantised from, when its metadata says so (distill-quantize's
    /// output).
    pub quantized_from: Option<distill_quantize::QuantizedFrom>,
}

/// Reads the footprint of the model at `path`, following external data locations relative to its folder.
pub fn footprint(path: &Path) -> Result<Footprint, EvalError> {
    let bytes = distill_core::input::read("--model", path, distill_core::input::MAX_MODEL_BYTES)?;
    let model_bytes = bytes.len() as u64;
    let model = ModelProto::decode(bytes.as_slice()).map_err(|e| EvalError::OnnxParse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let folder = path.parent().unwrap_or(Path::new("."));
    let external: Vec<PathBuf> = model
        .external_data_locations()
        .iter()
        .map(|l| folder.join(l))
        .collect();
    let quantized_from = distill_quantize::QuantizedFrom::from_metadata(
        model
            .metadata_props
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str())),
    );
    let graph = model.graph.unwrap_or_default();
    let count = |t: &TensorProto| parameter_elements(t, folder, model_bytes);
    let initializers: u64 = graph
        .initializer
        .iter()
        .map(|t| parameter_elements(t, folder, model_bytes))
        .fold(0u64, u64::saturating_add);
    let attributes: u64 = graph
        .node
        .iter()
        .flat_map(|n| &n.attribute)
        .map(|a| {
            a.t.as_ref()
                .map_or(0, count)
                .saturating_add(a.tensors.iter().map(count).fold(0, u64::saturating_add))
                .saturating_add(a.floats.len() as u64)
        })
        .fold(0u64, u64::saturating_add);

    let mut file_bytes = bytes.len() as u64;
    for data in external {
        let meta =
            std::fs::metadata(&data).map_err(|source| EvalError::Io { path: data, source })?;
        file_bytes += meta.len();
    }
    Ok(Footprint {
        parameters: initializers.saturating_add(attributes),
        file_bytes,
        sha256: distill_core::sha256_hex(&bytes),
        quantized_from,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/teachers");

    // Parameter counts from the fixtures' make_fixtures.py architectures:
    // external_data MLP 784→32→10: 784*32 + 32 + 32*10 + 10 = 25450;
    // skl_logreg LinearClassifier: coefficients 10*784 + intercepts 10 = 7850 (node attributes);
    // torchscript_cnn Conv(1→4, 5×5, stride 2) → 12×12×4 → Gemm to 10: 4*25 + 4 + 10*576 + 10 = 5874.
    #[test]
    fn counts_initializers_attributes_and_external_data() {
        let f = footprint(&Path::new(FIXTURES).join("external_data/model.onnx")).unwrap();
        assert_eq!(f.parameters, 25_450);
        let data = std::fs::metadata(Path::new(FIXTURES).join("external_data/model.onnx.data"))
            .unwrap()
            .len();
        assert!(data >= 25_450 * 4, "{data}");
        let model = std::fs::metadata(Path::new(FIXTURES).join("external_data/model.onnx"))
            .unwrap()
            .len();
        assert_eq!(f.file_bytes, model + data);

        let skl = footprint(&Path::new(FIXTURES).join("skl_logreg.onnx")).unwrap();
        assert_eq!(skl.parameters, 7_850);
        let cnn = footprint(&Path::new(FIXTURES).join("torchscript_cnn.onnx")).unwrap();
        assert_eq!(cnn.parameters, 5_874);
    }

    #[test]
    fn parameters_are_counted_from_the_data_present_not_the_declared_shape() {
        use distill_core::onnx_proto::GraphProto;
        let dir = tempfile::tempdir().unwrap();
        let tensor = |dims: Vec<i64>, raw: usize| TensorProto {
            dims,
            data_type: 1,
            raw_data: vec![0u8; raw],
            ..TensorProto::default()
        };
        let model = ModelProto {
            graph: Some(GraphProto {
                initializer: vec![
                    tensor(vec![1 << 31, 1 << 31], 0),
                    tensor(vec![1 << 31, 1 << 31], 40),
                    tensor(vec![3, 2], 24),
                ],
                ..GraphProto::default()
            }),
            ..ModelProto::default()
        };
        let path = dir.path().join("empty.onnx");
        std::fs::write(&path, model.encode_to_vec()).unwrap();
        assert_eq!(footprint(&path).unwrap().parameters, 10 + 6);
    }

    /// A quantised model's int8 weights, uint8 zero points and int32 biases are parameters; int64
    /// tensors (indices, shapes) are not.
    #[test]
    fn quantised_weights_count_and_indices_do_not() {
        use distill_core::onnx_proto::GraphProto;
        let dir = tempfile::tempdir().unwrap();
        let tensor = |data_type: i32, n: usize, bytes: usize| TensorProto {
            dims: vec![n as i64],
            data_type,
            raw_data: vec![0u8; n * bytes],
            ..TensorProto::default()
        };
        let model = ModelProto {
            graph: Some(GraphProto {
                initializer: vec![
                    tensor(3, 12, 1),
                    tensor(2, 3, 1),
                    tensor(6, 4, 4),
                    tensor(10, 5, 2),
                    tensor(7, 9, 8),
                ],
                ..GraphProto::default()
            }),
            ..ModelProto::default()
        };
        let path = dir.path().join("quantised.onnx");
        std::fs::write(&path, model.encode_to_vec()).unwrap();
        assert_eq!(footprint(&path).unwrap().parameters, 12 + 3 + 4 + 5);
    }

    #[test]
    fn corrupt_files_and_missing_external_data_are_errors() {
        let err = footprint(&Path::new(FIXTURES).join("corrupt.onnx")).unwrap_err();
        assert!(err.to_string().contains("corrupt.onnx"), "{err}");
        let err = footprint(&Path::new(FIXTURES).join("external_missing/model.onnx")).unwrap_err();
        assert!(err.to_string().contains("model.onnx.data"), "{err}");
    }
}
