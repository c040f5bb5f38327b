//! `--predictions FILE.parquet`: every evaluated row with its label and, for each model, ensemble
//! and the specialists' combination, its `k` most probable classes and their probabilities, so a
//! user (or an independent check) can follow each prediction row by row.
//!
//! Columns: `index` (u64, the row's position in the split), `label` (i32), then for each
//! prediction source `NAME` two columns `NAME.classes` (`FixedSizeList<i32>[k]`, most probable
//! first; ties: the lower class id) and `NAME.probs` (`FixedSizeList<f32>[k]`). Then, for each
//! quantised model `NAME` evaluated with its float model, `NAME.same_class_as_float` (bool: its
//! most probable class is the float model's) and `NAME.max_abs_diff_from_float` (f32: the row's
//! largest |output difference| over the classes, of the logits or the probabilities as
//! `metrics.json`'s `variant_of` says). Key-value metadata: `distill.predictions` (JSON: the data
//! set, split, rows, classes, k, the sources in order, and the comparisons: each quantised
//! model's name, its float model's and what the difference measures).

use crate::EvalError;
use arrow_array::{
    ArrayRef, BooleanArray, FixedSizeListArray, Float32Array, Int32Array, RecordBatch, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema};
use distill_core::CoreError;
use ndarray::{ArrayView2, Axis};
use parquet::file::metadata::KeyValue;
use std::path::Path;
use std::sync::Arc;

/// The most probable classes kept per row and source, by default.
pub const DEFAULT_TOP_K: usize = 5;

/// One source of predictions: its name and its probabilities, `rows × classes`.
pub struct Source<'a> {
    pub name: &'a str,
    pub probs: ArrayView2<'a, f32>,
}

/// A quantised model's row-by-row comparison with its float model.
pub struct Comparison<'a> {
    /// The quantised model's name.
    pub name: &'a str,
    /// The float model's name.
    pub source: &'a str,
    /// What the differences measure: `logits` or `probabilities`.
    pub of: &'a str,
    /// Per row: whether the two most probable classes are the same.
    pub same_class: &'a [bool],
    /// Per row: the largest |output difference| over the classes.
    pub max_abs_diff: &'a [f32],
}

/// The `k` most probable classes of `row`, most probable first (ties: the lower class id).
fn top_k(row: ndarray::ArrayView1<f32>, k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    order.truncate(k);
    order
}

/// Writes the predictions file at `path` (atomically): see the module documentation.
pub fn write(
    path: &Path,
    (dataset, split): (&str, &str),
    index: &[u64],
    labels: &[u32],
    (sources, comparisons): (&[Source], &[Comparison]),
    k: usize,
) -> Result<(), EvalError> {
    let rows = labels.len();
    let classes = sources.first().map_or(0, |s| s.probs.ncols());
    let k = k.min(classes).max(1);
    let mut fields = vec![
        Field::new("index", DataType::UInt64, false),
        Field::new("label", DataType::Int32, false),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from(index.to_vec())),
        Arc::new(Int32Array::from(
            labels.iter().map(|&l| l as i32).collect::<Vec<_>>(),
        )),
    ];
    let format = |e: arrow_schema::ArrowError| CoreError::format(path, e.to_string());
    for s in sources {
        let (mut ids, mut probs) = (Vec::with_capacity(rows * k), Vec::with_capacity(rows * k));
        for row in s.probs.axis_iter(Axis(0)) {
            for c in top_k(row, k) {
                ids.push(c as i32);
                probs.push(row[c]);
            }
        }
        for (suffix, item, values) in [
            (
                "classes",
                DataType::Int32,
                Arc::new(Int32Array::from(ids)) as ArrayRef,
            ),
            (
                "probs",
                DataType::Float32,
                Arc::new(Float32Array::from(probs)) as ArrayRef,
            ),
        ] {
            let item = Arc::new(Field::new("item", item, false));
            let list = FixedSizeListArray::try_new(item.clone(), k as i32, values, None)
                .map_err(format)?;
            fields.push(Field::new(
                format!("{}.{suffix}", s.name),
                DataType::FixedSizeList(item, k as i32),
                false,
            ));
            columns.push(Arc::new(list));
        }
    }
    for c in comparisons {
        fields.push(Field::new(
            format!("{}.same_class_as_float", c.name),
            DataType::Boolean,
            false,
        ));
        columns.push(Arc::new(BooleanArray::from(c.same_class.to_vec())));
        fields.push(Field::new(
            format!("{}.max_abs_diff_from_float", c.name),
            DataType::Float32,
            false,
        ));
        columns.push(Arc::new(Float32Array::from(c.max_abs_diff.to_vec())));
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema, columns).map_err(format)?;
    let meta = serde_json::json!({
        "dataset": dataset,
        "split": split,
        "rows": rows,
        "classes": classes,
        "k": k,
        "sources": sources.iter().map(|s| s.name).collect::<Vec<_>>(),
        "comparisons": comparisons
            .iter()
            .map(|c| serde_json::json!({"name": c.name, "float": c.source, "max_abs_diff_of": c.of}))
            .collect::<Vec<_>>(),
        "tool_version": distill_core::TOOL_VERSION,
    });
    distill_data::parquet::write_batch(
        path,
        &batch,
        vec![KeyValue::new(
            "distill.predictions".into(),
            meta.to_string(),
        )],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_is_most_probable_first_with_ties_to_the_lower_class() {
        let row = ndarray::array![0.1f32, 0.3, 0.3, 0.05, 0.25];
        assert_eq!(top_k(row.view(), 3), vec![1, 2, 4]);
        assert_eq!(top_k(row.view(), 9), vec![1, 2, 4, 0, 3]);
    }
}
