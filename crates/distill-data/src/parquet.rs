//! The generic Parquet data layout: a `features` column (`FixedSizeList<f32>[D]`, or a `List` or
//! `LargeList` of `f32`/`f64` with D values in every row, as pandas and pyarrow write arrays) and an
//! optional integer `label` column. Key-value metadata may give `classes` and `image_shape` (`C,H,W`,
//! or `H,W` for one channel; written as `H,W` when C is 1).

use super::{DATA_FORMATS, Dataset, ImageShape};
use arrow_array::cast::AsArray;
use arrow_array::types::Float32Type;
use arrow_array::{Array, ArrayRef, FixedSizeListArray, Float32Array, Int32Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use distill_core::{CoreError, Result};
use ndarray::Array2;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Reads the key-value metadata of a Parquet file.
pub fn key_values(path: &Path) -> Result<HashMap<String, String>> {
    distill_core::input::check_regular("the Parquet file", path)?;
    let file = std::fs::File::open(path).map_err(|e| CoreError::io(path, e))?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| CoreError::parquet(path, e))?;
    Ok(kv_map(
        builder.metadata().file_metadata().key_value_metadata(),
    ))
}

pub fn kv_map(kv: Option<&Vec<KeyValue>>) -> HashMap<String, String> {
    kv.into_iter()
        .flatten()
        .filter_map(|k| k.value.clone().map(|v| (k.key.clone(), v)))
        .collect()
}

/// Copies a list-of-floats column into one row-major `Vec<f32>`: `FixedSizeList`, `List` or
/// `LargeList` of `Float32` or `Float64` (what pandas and pyarrow write for a column of arrays).
/// Every row must have the same length (`width` when given, else that of the first row);
/// `first_row` is the row number of the column's first row in the whole file, for messages.
pub fn list_f32(
    path: &Path,
    name: &str,
    column: &ArrayRef,
    width: Option<usize>,
    first_row: usize,
) -> Result<(usize, Vec<f32>)> {
    let expected_type = || {
        CoreError::format(
            path,
            format!(
                "column '{name}' has type {}, expected a list of floats: FixedSizeList<Float32>, \
                 or List/LargeList of Float32 or Float64 (pandas' and pyarrow's arrays of floats)",
                column.data_type()
            ),
        )
    };
    // Row boundaries into the child values, and the child values.
    let (bounds, values): (Vec<(usize, usize)>, &ArrayRef) =
        if let Some(list) = column.as_fixed_size_list_opt() {
            let w = list.value_length() as usize;
            let base = list.offset() * w;
            let bounds = (0..list.len())
                .map(|r| (base + r * w, base + (r + 1) * w))
                .collect();
            (bounds, list.values())
        } else if let Some(list) = column.as_list_opt::<i32>() {
            (list_bounds(list), list.values())
        } else if let Some(list) = column.as_list_opt::<i64>() {
            (list_bounds(list), list.values())
        } else {
            return Err(expected_type());
        };
    if let Some(r) = (0..column.len()).find(|&r| column.is_null(r)) {
        return Err(CoreError::format(
            path,
            format!(
                "column '{name}' is null at row {}; every row needs a value",
                first_row + r
            ),
        ));
    }
    let mut w = width;
    for (r, &(a, b)) in bounds.iter().enumerate() {
        let len = b - a;
        match w {
            None => w = Some(len),
            Some(w) if w != len => {
                let against = if width.is_some() {
                    format!("expected {w} (the rows before it have {w})")
                } else {
                    format!("row {first_row} has {w}")
                };
                return Err(CoreError::format(
                    path,
                    format!(
                        "column '{name}' is ragged: row {} has {len} values, {against}; every \
                         row needs the same number of values",
                        first_row + r
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    let w = w.unwrap_or(0);
    let mut out = Vec::with_capacity(bounds.len() * w);
    match values.data_type() {
        DataType::Float32 => {
            let v = values.as_primitive::<Float32Type>();
            for &(a, b) in &bounds {
                check_no_null_values(path, name, values, a, b, first_row, &bounds)?;
                out.extend_from_slice(&v.values()[a..b]);
            }
        }
        DataType::Float64 => {
            let v = values.as_primitive::<arrow_array::types::Float64Type>();
            for &(a, b) in &bounds {
                check_no_null_values(path, name, values, a, b, first_row, &bounds)?;
                out.extend(v.values()[a..b].iter().map(|&x| x as f32));
            }
        }
        other => {
            return Err(CoreError::format(
                path,
                format!("column '{name}' holds {other} values, expected Float32 or Float64"),
            ));
        }
    }
    Ok((w, out))
}

/// Refuses a null inside a row's list of values.
fn check_no_null_values(
    path: &Path,
    name: &str,
    values: &ArrayRef,
    a: usize,
    b: usize,
    first_row: usize,
    bounds: &[(usize, usize)],
) -> Result<()> {
    if values.null_count() == 0 {
        return Ok(());
    }
    if let Some(i) = (a..b).find(|&i| values.is_null(i)) {
        let row = bounds.partition_point(|&(_, end)| end <= i);
        return Err(CoreError::format(
            path,
            format!(
                "column '{name}' has a null value at row {} (position {}); every value must be a \
                 number",
                first_row + row,
                i - a
            ),
        ));
    }
    Ok(())
}

thread_local! {
    /// Set while [`guard_decoder`] runs on this thread: its panics become errors, so the panic
    /// hook keeps quiet about them.
    static DECODING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `read` (decoding a Parquet file) and turns a panic inside the Parquet decoder, which some
/// damaged files cause, into an error naming the file (and no "panicked" message on stderr).
pub fn guard_decoder<T>(path: &Path, read: impl FnOnce() -> Result<T>) -> Result<T> {
    static QUIET_HOOK: std::sync::Once = std::sync::Once::new();
    QUIET_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !DECODING.with(|d| d.get()) {
                previous(info);
            }
        }));
    });
    let was = DECODING.with(|d| d.replace(true));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(read));
    DECODING.with(|d| d.set(was));
    outcome.unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(CoreError::format(
            path,
            format!("the file is damaged: the Parquet decoder failed ({why}); write it again"),
        ))
    })
}

/// Reads an integer column as `i64`s with their nulls.
pub fn int_column(path: &Path, name: &str, column: &ArrayRef) -> Result<Vec<Option<i64>>> {
    let casted = arrow_cast_to_i64(column).ok_or_else(|| {
        CoreError::format(
            path,
            format!(
                "column '{name}' has type {}, expected an integer type",
                column.data_type()
            ),
        )
    })?;
    Ok(casted)
}

fn arrow_cast_to_i64(column: &ArrayRef) -> Option<Vec<Option<i64>>> {
    use arrow_array::types::*;
    macro_rules! ints {
        ($($t:ty),*) => {
            $(if let Some(a) = column.as_primitive_opt::<$t>() {
                return Some(a.iter().map(|v| v.map(|x| x as i64)).collect());
            })*
        };
    }
    ints!(
        Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type
    );
    None
}

/// Fails, naming the formats `--data` reads, when `path` does not begin with Parquet's `PAR1`
/// (a NumPy `.npy`/`.npz`, a CSV or any other file), before the Parquet reader would call its
/// footer corrupt.
fn check_magic(path: &Path) -> Result<()> {
    use std::io::Read;
    let mut head = [0u8; 8];
    let mut file = std::fs::File::open(path).map_err(|e| CoreError::io(path, e))?;
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(CoreError::io(path, e)),
        }
    }
    let head = &head[..n];
    if head.starts_with(b"PAR1") {
        return Ok(());
    }
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let looks_like = if head.starts_with(b"\x93NUMPY") {
        "a NumPy .npy array: give it a .npy name, or write npy:FILE".to_string()
    } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        "a zip archive such as a NumPy .npz: give it a .npz name, or write npy:FILE".to_string()
    } else if head.is_empty() {
        "an empty file".to_string()
    } else if matches!(extension.as_deref(), Some("csv" | "tsv" | "txt")) {
        "a text (CSV) file".to_string()
    } else if let Some(ext) = extension {
        format!("a .{ext} file")
    } else {
        "another format".to_string()
    };
    Err(CoreError::format(
        path,
        format!(
            "--data: not a Parquet file (it looks like {looks_like}); --data reads {DATA_FORMATS}"
        ),
    ))
}

/// Reads a data set in the generic Parquet layout.
pub fn read_dataset(path: &Path) -> Result<Dataset> {
    guard_decoder(path, || read_dataset_unguarded(path))
}

fn read_dataset_unguarded(path: &Path) -> Result<Dataset> {
    distill_core::input::check_regular("--data", path)?;
    check_magic(path)?;
    let file = std::fs::File::open(path).map_err(|e| CoreError::io(path, e))?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| CoreError::parquet(path, e))?;
    crate::parquet_guard::check_column_chunks(path, builder.metadata())?;
    let kv = kv_map(builder.metadata().file_metadata().key_value_metadata());
    let schema = builder.schema().clone();
    if schema.field_with_name("features").is_err() {
        return Err(CoreError::format(
            path,
            format!(
                "no 'features' column (found: {}); a data file needs a list-of-floats column \
                 (FixedSizeList<Float32>, List<Float32> or List<Float64>) named 'features' and optionally an integer 'label' column",
                schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let has_label = schema.field_with_name("label").is_ok();
    let reader = builder.build().map_err(|e| CoreError::parquet(path, e))?;
    let mut width = None;
    let mut rows_read = 0;
    let mut values = Vec::new();
    let mut raw_labels: Vec<Option<i64>> = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| CoreError::format(path, e.to_string()))?;
        let features = batch
            .column_by_name("features")
            .ok_or_else(|| CoreError::format(path, "missing 'features' column"))?;
        let (w, v) = list_f32(path, "features", features, width, rows_read)?;
        width = Some(w);
        rows_read += features.len();
        values.extend_from_slice(&v);
        if has_label {
            let col = batch
                .column_by_name("label")
                .ok_or_else(|| CoreError::format(path, "missing 'label' column"))?;
            raw_labels.extend(int_column(path, "label", col)?);
        }
    }
    let width = width.unwrap_or(0);
    let rows = rows_read;
    if rows == 0 {
        return Err(CoreError::format(path, "the data file has no rows"));
    }
    if width == 0 {
        return Err(CoreError::format(
            path,
            "every row of column 'features' is an empty list; each row needs its feature values",
        ));
    }
    let features = Array2::from_shape_vec((rows, width), values)
        .map_err(|e| CoreError::format(path, e.to_string()))?;
    let declared = match kv.get("classes") {
        Some(c) => Some(
            c.parse::<usize>()
                .ok()
                .filter(|&c| c <= crate::MAX_CLASSES)
                .ok_or_else(|| {
                    CoreError::format(
                        path,
                        format!(
                            "metadata 'classes' = '{c}' is not a class count from 0 to {}",
                            crate::MAX_CLASSES
                        ),
                    )
                })?,
        ),
        None => None,
    };
    let labels = crate::check_labels(path, raw_labels, declared, rows)?;
    let classes = declared.unwrap_or_else(|| labels.iter().max().map_or(0, |&m| m as usize + 1));
    let image = match kv.get("image_shape") {
        Some(s) => Some(parse_shape(path, s, width)?),
        None => None,
    };
    let ds = Dataset {
        name: path.display().to_string(),
        features,
        labels: has_label.then_some(labels),
        index: (0..rows as u64).collect(),
        classes,
        image,
    };
    ds.check_finite()?;
    Ok(ds)
}

fn parse_shape(path: &Path, s: &str, width: usize) -> Result<ImageShape> {
    let shape = ImageShape::parse(s)
        .map_err(|why| CoreError::format(path, format!("metadata 'image_shape': {why}")))?;
    if shape.values() != width {
        return Err(CoreError::format(
            path,
            format!(
                "metadata 'image_shape' = '{s}' holds {} values per row, but the 'features' \
                 column has {width}; give C,H,W (or H,W for one channel) with C*H*W = {width}",
                shape.values()
            ),
        ));
    }
    Ok(shape)
}

/// Writes a data set in the generic layout (atomically).
pub fn write_dataset(path: &Path, ds: &Dataset) -> Result<()> {
    let width = ds.width() as i32;
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let mut fields = vec![Field::new(
        "features",
        DataType::FixedSizeList(item.clone(), width),
        false,
    )];
    let values = Float32Array::from(ds.features.iter().copied().collect::<Vec<_>>());
    let mut columns: Vec<ArrayRef> = vec![Arc::new(
        FixedSizeListArray::try_new(item, width, Arc::new(values), None)
            .map_err(|e| CoreError::format(path, e.to_string()))?,
    )];
    if let Some(labels) = &ds.labels {
        fields.push(Field::new("label", DataType::Int32, false));
        columns.push(Arc::new(Int32Array::from(
            labels.iter().map(|&l| l as i32).collect::<Vec<_>>(),
        )));
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema, columns)
        .map_err(|e| CoreError::format(path, e.to_string()))?;
    let mut kv = vec![KeyValue::new("classes".into(), ds.classes.to_string())];
    if let Some(shape) = ds.image {
        kv.push(KeyValue::new("image_shape".into(), shape.metadata()));
    }
    write_batch(path, &batch, kv)
}

/// Writes `batch` as a zstd-compressed Parquet file at `path` with the key-value metadata `kv`,
/// atomically (a temporary file renamed into place when complete).
pub fn write_batch(path: &Path, batch: &RecordBatch, kv: Vec<KeyValue>) -> Result<()> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_key_value_metadata(Some(kv))
        .build();
    let out = distill_core::atomic::AtomicFile::create(path)?;
    let mut writer = ArrowWriter::try_new(out.try_clone()?, batch.schema(), Some(props))
        .map_err(|e| CoreError::parquet(path, e))?;
    writer
        .write(batch)
        .map_err(|e| CoreError::parquet(path, e))?;
    writer.close().map_err(|e| CoreError::parquet(path, e))?;
    out.commit()
}

/// Each row's `(start, end)` into the child values of a `list` or `large_list` column.
fn list_bounds<O: arrow_array::OffsetSizeTrait>(
    list: &arrow_array::GenericListArray<O>,
) -> Vec<(usize, usize)> {
    list.value_offsets()
        .windows(2)
        .map(|w| (w[0].as_usize(), w[1].as_usize()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_while_decoding_is_an_error_naming_the_file() {
        let path = Path::new("damaged.parquet");
        let e = guard_decoder::<()>(path, || panic!("Decoder for dict should have been set"))
            .unwrap_err();
        assert!(e.is_user_error());
        let e = e.to_string();
        assert!(
            e.contains("damaged.parquet") && e.contains("Decoder for dict"),
            "{e}"
        );
        assert_eq!(guard_decoder(path, || Ok(3)).unwrap(), 3);
        // The flag is cleared afterwards: other panics reach the usual hook again.
        assert!(!DECODING.with(|d| d.get()));
    }
}
