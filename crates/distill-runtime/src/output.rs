//! Reading a model's chosen output into `[N, C]` f32 scores: f32 and f64 tensors, and skl2onnx's
//! ZipMap (a sequence of maps from class label to probability), read in class order.

use ort::value::{DynMapValueType, DynValue};

use crate::signature::{OutputForm, shape_string};

/// Reads `(rows, classes, row-major values)` from an output; the error describes what was found instead.
pub(crate) fn read_output(
    value: &DynValue,
    form: OutputForm,
) -> std::result::Result<(usize, usize, Vec<f32>), String> {
    let matrix = |shape: &[i64]| -> std::result::Result<(usize, usize), String> {
        match shape {
            [rows, classes] => Ok((
                usize::try_from(*rows).map_err(|e| e.to_string())?,
                usize::try_from(*classes).map_err(|e| e.to_string())?,
            )),
            _ => Err(shape_string(shape)),
        }
    };
    match form {
        OutputForm::F32 => {
            let (shape, data) = value
                .try_extract_tensor::<f32>()
                .map_err(|e| e.to_string())?;
            let (rows, classes) = matrix(shape)?;
            Ok((rows, classes, data.to_vec()))
        }
        OutputForm::F64 => {
            let (shape, data) = value
                .try_extract_tensor::<f64>()
                .map_err(|e| e.to_string())?;
            let (rows, classes) = matrix(shape)?;
            Ok((rows, classes, data.iter().map(|&v| v as f32).collect()))
        }
        OutputForm::ZipMap { string_keys } => {
            let maps = value
                .try_extract_sequence::<DynMapValueType>()
                .map_err(|e| e.to_string())?;
            let rows = maps.len();
            let mut classes = None;
            let mut values = Vec::new();
            for map in &maps {
                let probabilities: Vec<f32> = if string_keys {
                    let pairs = map
                        .try_extract_key_values::<String, f32>()
                        .map_err(|e| e.to_string())?;
                    string_keyed_in_class_order(pairs)
                } else {
                    map.try_extract_key_values::<i64, f32>()
                        .map_err(|e| e.to_string())?
                        .into_iter()
                        .map(|(_, p)| p)
                        .collect()
                };
                if *classes.get_or_insert(probabilities.len()) != probabilities.len() {
                    return Err(
                        "a ZipMap sequence whose maps have different numbers of classes"
                            .to_string(),
                    );
                }
                values.extend(probabilities);
            }
            Ok((rows, classes.unwrap_or(0), values))
        }
    }
}

/// A string-keyed ZipMap row's probabilities in class order. ONNX Runtime hands the map sorted
/// as strings, so "10" comes before "2"; labels that are all integers ("0", "1", … "10") are put
/// in numeric order, so that column k is class k. Other labels keep the string order, which is
/// the order of scikit-learn's `classes_` (sorted) and of the model's own label output.
fn string_keyed_in_class_order(mut pairs: Vec<(String, f32)>) -> Vec<f32> {
    let numeric: Option<Vec<i64>> = pairs.iter().map(|(k, _)| k.trim().parse().ok()).collect();
    if let Some(keys) = numeric {
        let mut keyed: Vec<(i64, f32)> = keys.into_iter().zip(pairs.iter().map(|p| p.1)).collect();
        keyed.sort_by_key(|&(k, _)| k);
        return keyed.into_iter().map(|(_, p)| p).collect();
    }
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    pairs.into_iter().map(|(_, p)| p).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_zipmap_labels_in_numeric_order() {
        let labels = ["0", "1", "10", "2", "3", "4", "5", "6", "7", "8", "9"];
        let pairs = labels
            .iter()
            .map(|l| (l.to_string(), l.parse::<f32>().unwrap()))
            .collect();
        let expected: Vec<f32> = (0..11).map(|k| k as f32).collect();
        assert_eq!(string_keyed_in_class_order(pairs), expected);
        let pairs = vec![("cat".to_string(), 0.7), ("ant".to_string(), 0.3)];
        assert_eq!(string_keyed_in_class_order(pairs), vec![0.3, 0.7]);
    }
}
