//! Just enough of the ONNX protobuf format to list a model's external data files.

/// One field of a protobuf message: its number and, for length-delimited fields, its bytes.
struct Fields<'a> {
    rest: &'a [u8],
}

fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first()?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

impl<'a> Iterator for Fields<'a> {
    type Item = (u64, Option<&'a [u8]>);

    /// Stops at the end or at the first malformed field.
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let key = varint(&mut self.rest)?;
        let (field, wire) = (key >> 3, key & 7);
        let bytes = match wire {
            0 => {
                varint(&mut self.rest)?;
                None
            }
            1 | 5 => {
                let len = if wire == 1 { 8 } else { 4 };
                self.rest = self.rest.get(len..)?;
                None
            }
            2 => {
                let len = usize::try_from(varint(&mut self.rest)?).ok()?;
                let bytes = self.rest.get(..len)?;
                self.rest = self.rest.get(len..)?;
                Some(bytes)
            }
            _ => return None,
        };
        Some((field, bytes))
    }
}

fn fields(buf: &[u8]) -> Fields<'_> {
    Fields { rest: buf }
}

fn messages(buf: &[u8], number: u64) -> impl Iterator<Item = &[u8]> {
    fields(buf).filter_map(move |(field, bytes)| if field == number { bytes } else { None })
}

/// The `location`s of the external data of a model's top-level initializers, in file order, without
/// duplicates. A malformed file yields what could be read before the damage.
pub fn external_data_locations(model: &[u8]) -> Vec<String> {
    const MODEL_GRAPH: u64 = 7;
    const GRAPH_INITIALIZER: u64 = 5;
    const TENSOR_EXTERNAL_DATA: u64 = 13;
    const ENTRY_KEY: u64 = 1;
    const ENTRY_VALUE: u64 = 2;

    let mut locations: Vec<String> = Vec::new();
    for graph in messages(model, MODEL_GRAPH) {
        for tensor in messages(graph, GRAPH_INITIALIZER) {
            for entry in messages(tensor, TENSOR_EXTERNAL_DATA) {
                let key = messages(entry, ENTRY_KEY).next();
                let value = messages(entry, ENTRY_VALUE).next();
                if let (Some(b"location"), Some(value)) = (key, value) {
                    let location = String::from_utf8_lossy(value).into_owned();
                    if !locations.contains(&location) {
                        locations.push(location);
                    }
                }
            }
        }
    }
    locations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(number: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(number << 3 | 2) as u8, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn finds_locations_of_external_initializers() {
        let entry = [field(1, b"location"), field(2, b"model.onnx.data")].concat();
        let other = [field(1, b"offset"), field(2, b"0")].concat();
        let tensor = [
            vec![0x08, 0x02],
            field(13, &entry),
            field(13, &other),
            vec![0x70, 0x01],
        ]
        .concat();
        let graph = [field(1, b"node"), field(5, &tensor), field(5, &tensor)].concat();
        let model = [vec![0x08, 0x07], field(7, &graph)].concat();
        assert_eq!(external_data_locations(&model), vec!["model.onnx.data"]);
        assert!(external_data_locations(&model[..model.len() - 3]).is_empty());
        assert!(external_data_locations(b"not a model at all").is_empty());
    }
}
