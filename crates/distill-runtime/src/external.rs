//! A model's external data files, read from its bytes without ONNX Runtime (which names none when it
//! refuses a model whose data file is missing).

use distill_core::onnx_proto::ModelProto;
use prost::Message;

/// The `location`s of the external data of a model's initializers, in file order, without
/// duplicates; none when the bytes are not a readable ONNX model.
pub fn external_data_locations(model: &[u8]) -> Vec<String> {
    ModelProto::decode(model)
        .map(|m| m.external_data_locations())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use distill_core::onnx_proto::{GraphProto, StringStringEntryProto, TensorProto};

    #[test]
    fn finds_locations_of_external_initializers() {
        let entry = |key: &str, value: &str| StringStringEntryProto {
            key: key.into(),
            value: value.into(),
        };
        let tensor = TensorProto {
            data_type: 1,
            external_data: vec![entry("location", "model.onnx.data"), entry("offset", "0")],
            data_location: 1,
            ..Default::default()
        };
        let model = ModelProto {
            ir_version: 7,
            graph: Some(GraphProto {
                initializer: vec![tensor.clone(), tensor],
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(external_data_locations(&model), vec!["model.onnx.data"]);
        assert!(external_data_locations(&model[..model.len() - 3]).is_empty());
        assert!(external_data_locations(b"not a model at all").is_empty());
    }
}
