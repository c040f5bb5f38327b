//! Reading a model's chosen output into `[N, C]` f32 scores: f32 and f64 tensors, and skl2onnx's
//! ZipMap (a sequence of maps from class label to probability), read in class order.

use ort::value::{DynMapValueType, DynValue};

use crate::signature::{OutputForm, shape_string};

/// Why an output could not be read as class scores.
#[derive(Debug, PartialEq)]
pub(crate) enum ReadError {
    /// Not a `[N, C]` matrix: what was found instead.
    Shape(String),
    /// A ZipMap whose class labels are not the class numbers `0..C-1`: the labels, as found.
    Labels(String),
}

/// Reads `(rows, classes, row-major values)` from an output; the error describes what was found instead.
pub(crate) fn read_output(
    value: &DynValue,
    form: OutputForm,
) -> std::result::Result<(usize, usize, Vec<f32>), ReadError> {
    let shape_err = |e: ort::Error| ReadError::Shape(e.to_string());
    let matrix = |shape: &[i64]| -> std::result::Result<(usize, usize), ReadError> {
        match shape {
            [rows, classes] => Ok((
                usize::try_from(*rows).map_err(|e| ReadError::Shape(e.to_string()))?,
                usize::try_from(*classes).map_err(|e| ReadError::Shape(e.to_string()))?,
            )),
            _ => Err(ReadError::Shape(shape_string(shape))),
        }
    };
    match form {
        OutputForm::F32 => {
            let (shape, data) = value.try_extract_tensor::<f32>().map_err(shape_err)?;
            let (rows, classes) = matrix(shape)?;
            Ok((rows, classes, data.to_vec()))
        }
        OutputForm::F64 => {
            let (shape, data) = value.try_extract_tensor::<f64>().map_err(shape_err)?;
            let (rows, classes) = matrix(shape)?;
            Ok((rows, classes, data.iter().map(|&v| v as f32).collect()))
        }
        OutputForm::ZipMap { string_keys } => {
            let maps = value
                .try_extract_sequence::<DynMapValueType>()
                .map_err(shape_err)?;
            let rows = maps.len();
            let mut classes = None;
            let mut values = Vec::new();
            for map in &maps {
                let pairs: Vec<(String, f32)> = if string_keys {
                    map.try_extract_key_values::<String, f32>()
                        .map_err(shape_err)?
                } else {
                    map.try_extract_key_values::<i64, f32>()
                        .map_err(shape_err)?
                        .into_iter()
                        .map(|(k, p)| (k.to_string(), p))
                        .collect()
                };
                let probabilities = in_class_order(pairs).map_err(ReadError::Labels)?;
                if *classes.get_or_insert(probabilities.len()) != probabilities.len() {
                    return Err(ReadError::Shape(
                        "a ZipMap sequence whose maps have different numbers of classes"
                            .to_string(),
                    ));
                }
                values.extend(probabilities);
            }
            Ok((rows, classes.unwrap_or(0), values))
        }
    }
}

/// A ZipMap row's probabilities in class order: column k is the probability of the label that
/// is the integer k. The labels (integer keys, or string keys such as "7") must be the class
/// numbers 0..C-1, each once; anything else (names such as "cat", 4242 among ten classes) has no
/// class order a store or a data set's labels could follow, and is refused with the labels found,
/// in the map's order.
fn in_class_order(pairs: Vec<(String, f32)>) -> std::result::Result<Vec<f32>, String> {
    let classes = pairs.len();
    let mut ordered = vec![None; classes];
    for (label, p) in &pairs {
        match label.parse::<usize>() {
            Ok(k) if k < classes && ordered[k].is_none() => ordered[k] = Some(*p),
            _ => return Err(labels_found(&pairs)),
        }
    }
    ordered
        .into_iter()
        .collect::<Option<Vec<f32>>>()
        .ok_or_else(|| labels_found(&pairs))
}

/// The labels of a ZipMap row for a message: at most 12 of them, quoted, then how many in all.
fn labels_found(pairs: &[(String, f32)]) -> String {
    let shown: Vec<String> = pairs
        .iter()
        .take(12)
        .map(|(k, _)| format!("{k:?}"))
        .collect();
    let more = if pairs.len() > 12 { ", …" } else { "" };
    format!("{}{more} ({} labels)", shown.join(", "), pairs.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(labels: &[&str]) -> Vec<(String, f32)> {
        labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.to_string(), i as f32))
            .collect()
    }

    #[test]
    fn zipmap_labels_that_are_class_numbers_are_read_in_numeric_order() {
        // ONNX Runtime hands a string-keyed map sorted as strings: "10" before "2".
        let labels = ["0", "1", "10", "2", "3", "4", "5", "6", "7", "8", "9"];
        let found = in_class_order(pairs(&labels)).unwrap();
        let expected: Vec<f32> = labels
            .iter()
            .enumerate()
            .map(|(i, _)| labels.iter().position(|l| *l == i.to_string()).unwrap() as f32)
            .collect();
        assert_eq!(found, expected);
        assert_eq!(found[10], 2.0, "class 10 is the third pair");
    }

    #[test]
    fn zipmap_labels_that_are_not_the_class_numbers_are_refused() {
        let names = [
            "eight", "five", "four", "nine", "one", "seven", "six", "three", "two", "zero",
        ];
        let e = in_class_order(pairs(&names)).unwrap_err();
        assert!(e.starts_with("\"eight\", \"five\", \"four\""), "{e}");
        assert!(e.ends_with("(10 labels)"), "{e}");
        let e = in_class_order(pairs(&[
            "0", "1", "2", "3", "4", "5", "6", "7", "8", "4242",
        ]))
        .unwrap_err();
        assert!(e.contains("\"4242\""), "{e}");
        // A gap, a repeat, a negative label.
        assert!(in_class_order(pairs(&["0", "2"])).is_err());
        assert!(in_class_order(pairs(&["0", "0"])).is_err());
        assert!(in_class_order(pairs(&["-1", "0"])).is_err());
        let many: Vec<String> = (100..120).map(|k| k.to_string()).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let e = in_class_order(pairs(&many)).unwrap_err();
        assert!(e.ends_with("\"111\", … (20 labels)"), "{e}");
    }
}
