//! Features files written by pandas and pyarrow: a column of arrays becomes `List<Float32>`,
//! `LargeList<Float32>` or `List<Float64>`, not `FixedSizeList`. They read like the native layout;
//! ragged rows are refused with the row and the lengths.
#![allow(clippy::unwrap_used)]

use arrow_array::builder::{Float32Builder, Float64Builder, LargeListBuilder, ListBuilder};
use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use arrow_schema::{Field, Schema};
use distill_data::parquet::read_dataset;
use parquet::arrow::ArrowWriter;
use std::path::Path;
use std::sync::Arc;

/// Writes `features` (and int64 labels, as pandas does) in one or more record batches.
fn write(path: &Path, batches: Vec<(ArrayRef, Vec<i64>)>) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("features", batches[0].0.data_type().clone(), true),
        Field::new("label", arrow_schema::DataType::Int64, true),
    ]));
    let file = std::fs::File::create(path).unwrap();
    let mut w = ArrowWriter::try_new(file, schema.clone(), None).unwrap();
    for (features, labels) in batches {
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![features, Arc::new(Int64Array::from(labels))],
        )
        .unwrap();
        w.write(&batch).unwrap();
    }
    w.close().unwrap();
}

fn rows() -> Vec<Vec<f64>> {
    vec![
        vec![0.0, 0.25, 0.5],
        vec![1.0, 0.125, 0.75],
        vec![0.5, 0.5, 0.0],
    ]
}

fn list_f32(rows: &[Vec<f64>]) -> ArrayRef {
    let mut b = ListBuilder::new(Float32Builder::new());
    for r in rows {
        b.values()
            .append_slice(&r.iter().map(|&v| v as f32).collect::<Vec<_>>());
        b.append(true);
    }
    Arc::new(b.finish())
}

fn large_list_f32(rows: &[Vec<f64>]) -> ArrayRef {
    let mut b = LargeListBuilder::new(Float32Builder::new());
    for r in rows {
        b.values()
            .append_slice(&r.iter().map(|&v| v as f32).collect::<Vec<_>>());
        b.append(true);
    }
    Arc::new(b.finish())
}

fn list_f64(rows: &[Vec<f64>]) -> ArrayRef {
    let mut b = ListBuilder::new(Float64Builder::new());
    for r in rows {
        b.values().append_slice(r);
        b.append(true);
    }
    Arc::new(b.finish())
}

#[test]
fn list_large_list_and_double_features_read_like_fixed_size_lists() {
    let dir = tempfile::tempdir().unwrap();
    let want: Vec<f32> = rows().iter().flatten().map(|&v| v as f32).collect();
    type Maker = fn(&[Vec<f64>]) -> ArrayRef;
    let makers: [(&str, Maker); 3] = [
        ("list_float", list_f32),
        ("large_list_float", large_list_f32),
        ("list_double", list_f64),
    ];
    for (name, make) in makers {
        let path = dir.path().join(format!("{name}.parquet"));
        // Two batches, so rows continue across them.
        let r = rows();
        write(
            &path,
            vec![(make(&r[..2]), vec![0, 2]), (make(&r[2..]), vec![1])],
        );
        let ds = read_dataset(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(ds.features.dim(), (3, 3), "{name}");
        assert_eq!(
            ds.features.iter().copied().collect::<Vec<_>>(),
            want,
            "{name}"
        );
        assert_eq!(ds.labels, Some(vec![0, 2, 1]), "{name}");
        assert_eq!(ds.classes, 3, "{name}");
    }
}

#[test]
fn ragged_rows_are_refused_with_the_row_and_the_lengths() {
    let dir = tempfile::tempdir().unwrap();
    // Ragged inside one batch: row 1 has 2 values where row 0 has 3.
    let path = dir.path().join("ragged.parquet");
    let r = vec![vec![0.0, 0.1, 0.2], vec![0.3, 0.4]];
    write(&path, vec![(list_f32(&r), vec![0, 1])]);
    let e = read_dataset(&path).unwrap_err().to_string();
    assert!(
        e.contains("ragged.parquet")
            && e.contains("'features'")
            && e.contains("row 1 has 2 values")
            && e.contains("row 0 has 3"),
        "{e}"
    );
    // Ragged across batches: the first row of the second batch is row 2 of the file.
    let path = dir.path().join("ragged2.parquet");
    let a = vec![vec![0.0, 0.1], vec![0.3, 0.4]];
    let b = vec![vec![0.0, 0.1, 0.2]];
    write(
        &path,
        vec![(list_f64(&a), vec![0, 1]), (list_f64(&b), vec![1])],
    );
    let e = read_dataset(&path).unwrap_err().to_string();
    assert!(
        e.contains("row 2 has 3 values") && e.contains("row 0 has 2"),
        "{e}"
    );
    // A null row is named too.
    let path = dir.path().join("null.parquet");
    let mut bld = ListBuilder::new(Float32Builder::new());
    bld.values().append_slice(&[0.0, 1.0]);
    bld.append(true);
    bld.append(false);
    write(&path, vec![(Arc::new(bld.finish()), vec![0, 1])]);
    let e = read_dataset(&path).unwrap_err().to_string();
    assert!(e.contains("null at row 1"), "{e}");
    // A null value inside a row.
    let path = dir.path().join("nullvalue.parquet");
    let mut bld = ListBuilder::new(Float32Builder::new());
    bld.values().append_slice(&[0.0, 1.0]);
    bld.append(true);
    bld.values().append_value(0.5);
    bld.values().append_null();
    bld.append(true);
    write(&path, vec![(Arc::new(bld.finish()), vec![0, 1])]);
    let e = read_dataset(&path).unwrap_err().to_string();
    assert!(e.contains("null value at row 1 (position 1)"), "{e}");
    // Integers are not features.
    let path = dir.path().join("ints.parquet");
    let mut bld = ListBuilder::new(arrow_array::builder::Int32Builder::new());
    bld.values().append_slice(&[0, 1]);
    bld.append(true);
    write(&path, vec![(Arc::new(bld.finish()), vec![0])]);
    let e = read_dataset(&path).unwrap_err().to_string();
    assert!(e.contains("expected Float32 or Float64"), "{e}");
}
