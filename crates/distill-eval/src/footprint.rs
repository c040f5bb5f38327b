//! A model's deployment footprint read from its ONNX file: parameter count and bytes on disk.
//!
//! Decoded with the ONNX schema subset of `distill_core::onnx_proto`.

use std::path::{Path, PathBuf};

use distill_core::onnx_proto::{ModelProto, TensorProto};
use prost::Message;
use serde::Serialize;

use crate::EvalError;

/// `TensorProto.DataType` values of floating-point tensors: FLOAT, FLOAT16, DOUBLE, BFLOAT16.
const FLOAT_TYPES: [i32; 4] = [1, 10, 11, 16];

/// Elements of a floating-point tensor (0 for other types).
fn float_elements(t: &TensorProto) -> u64 {
    if !FLOAT_TYPES.contains(&t.data_type) {
        return 0;
    }
    t.dims
        .iter()
        .map(|&d| u64::try_from(d).unwrap_or(0))
        .product()
}

/// What a model costs to deploy, as far as its file says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Footprint {
    /// Floating-point numbers stored in the model: the elements of its top-level float initializers, plus
    /// float tensors and float lists held in node attributes (skl2onnx keeps a linear model's coefficients in
    /// `LinearClassifier` attributes, and some exporters use `Constant` nodes). Subgraphs (`If`, `Loop`) are
    /// not counted.
    pub parameters: u64,
    /// Bytes of the `.onnx` file plus its external data files.
    pub file_bytes: u64,
    /// SHA-256 of the `.onnx` file, from the same read.
    pub sha256: String,
}

/// Reads the footprint of the model at `path`, following external data locations relative to its folder.
pub fn footprint(path: &Path) -> Result<Footprint, EvalError> {
    let bytes = std::fs::read(path).map_err(|source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    })?;
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
    let graph = model.graph.unwrap_or_default();
    let initializers: u64 = graph.initializer.iter().map(float_elements).sum();
    let attributes: u64 = graph
        .node
        .iter()
        .flat_map(|n| &n.attribute)
        .map(|a| {
            a.t.as_ref().map_or(0, float_elements)
                + a.tensors.iter().map(float_elements).sum::<u64>()
                + a.floats.len() as u64
        })
        .sum();

    let mut file_bytes = bytes.len() as u64;
    for data in external {
        let meta =
            std::fs::metadata(&data).map_err(|source| EvalError::Io { path: data, source })?;
        file_bytes += meta.len();
    }
    Ok(Footprint {
        parameters: initializers + attributes,
        file_bytes,
        sha256: distill_core::sha256_hex(&bytes),
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
    fn corrupt_files_and_missing_external_data_are_errors() {
        let err = footprint(&Path::new(FIXTURES).join("corrupt.onnx")).unwrap_err();
        assert!(err.to_string().contains("corrupt.onnx"), "{err}");
        let err = footprint(&Path::new(FIXTURES).join("external_missing/model.onnx")).unwrap_err();
        assert!(err.to_string().contains("model.onnx.data"), "{err}");
    }
}
