//! Reading one Parquet file of a store into memory, expanding top-k rows into one logit per
//! class.

use super::*;

/// A whole store in memory.
#[derive(Clone, Debug)]
pub struct SoftTargets {
    pub meta: StoreMeta,
    pub index: Vec<u64>,
    /// Labels, `None` where the store has no label for a row.
    pub labels: Vec<Option<u32>>,
    /// One `[rows, classes]` matrix per teacher, in `meta.teachers` order.
    pub logits: Vec<Array2<f32>>,
}

impl SoftTargets {
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn classes(&self) -> usize {
        self.meta.classes
    }

    /// Views of every teacher's logits.
    pub fn views(&self) -> Vec<ArrayView2<'_, f32>> {
        self.logits.iter().map(|l| l.view()).collect()
    }

    /// The store with only the rows `rows` (in that order).
    pub fn select_rows(&self, rows: &[usize]) -> SoftTargets {
        SoftTargets {
            meta: self.meta.clone(),
            index: rows.iter().map(|&r| self.index[r]).collect(),
            labels: rows.iter().map(|&r| self.labels[r]).collect(),
            logits: self
                .logits
                .iter()
                .map(|l| l.select(ndarray::Axis(0), rows))
                .collect(),
        }
    }

    /// The labels, when every row has one.
    pub fn complete_labels(&self) -> Option<Vec<u32>> {
        self.labels.iter().copied().collect()
    }
}

/// Each teacher of the store at `path` (a file, or a folder of part files: its first part) with
/// the model settings distill-teach recorded for it (`None` for stores written without them), read
/// from the metadata alone.
pub fn read_teacher_settings(path: &Path) -> Result<Vec<(TeacherMeta, Option<serde_json::Value>)>> {
    let file = if path.is_dir() {
        crate::shards::first_part(path)?
    } else {
        path.to_path_buf()
    };
    distill_data::parquet::guard_decoder(&file, || {
        distill_core::input::check_regular("the soft-target store", &file)?;
        let handle = File::open(&file).map_err(|e| CoreError::io(&file, e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(handle)
            .map_err(|e| CoreError::format(&file, format!("not a readable Parquet file ({e})")))?;
        let json = meta_json(&file, &builder)?;
        let meta: StoreMeta = serde_json::from_str(&json)
            .map_err(|e| CoreError::format(&file, format!("bad '{META_KEY}' metadata: {e}")))?;
        let value: serde_json::Value = serde_json::from_str(&json)
            .map_err(|e| CoreError::format(&file, format!("bad '{META_KEY}' metadata: {e}")))?;
        let settings = |i: usize| {
            value["teachers"]
                .get(i)
                .and_then(|t| t.get("settings"))
                .filter(|s| !s.is_null())
                .cloned()
        };
        Ok(meta
            .teachers
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), settings(i)))
            .collect())
    })
}

/// The store metadata's JSON, from the key-value metadata or, for a store rewritten by another
/// tool, the Arrow schema.
fn meta_json(path: &Path, builder: &ParquetRecordBatchReaderBuilder<File>) -> Result<String> {
    let mut kv = kv_map(builder.metadata().file_metadata().key_value_metadata());
    if let Some(json) = builder.schema().metadata().get(META_KEY) {
        kv.entry(META_KEY.to_string())
            .or_insert_with(|| json.clone());
    }
    kv.remove(META_KEY).ok_or_else(|| {
        CoreError::format(
            path,
            format!(
                "no '{META_KEY}' metadata: this is not a soft-target store made by distill-teach"
            ),
        )
    })
}

pub(crate) fn read_one(path: &Path) -> Result<SoftTargets> {
    distill_data::parquet::guard_decoder(path, || read_one_unguarded(path))
}

pub(crate) fn read_one_unguarded(path: &Path) -> Result<SoftTargets> {
    distill_core::input::check_regular("the soft-target store", path)?;
    let file = File::open(path).map_err(|e| CoreError::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| CoreError::format(path, format!("not a readable Parquet file ({e})")))?;
    distill_data::parquet_guard::check_column_chunks(path, builder.metadata())?;
    let json = &meta_json(path, &builder)?;
    let meta: StoreMeta = serde_json::from_str(json)
        .map_err(|e| CoreError::format(path, format!("bad '{META_KEY}' metadata: {e}")))?;
    meta.check_layout()
        .map_err(|e| CoreError::format(path, e))?;
    let reader = builder.build().map_err(|e| CoreError::parquet(path, e))?;
    let mut index = Vec::new();
    let mut labels = Vec::new();
    let mut values: Vec<Vec<f32>> = vec![Vec::new(); meta.teachers.len()];
    for batch in reader {
        let batch = batch.map_err(|e| CoreError::format(path, e.to_string()))?;
        let first_row = index.len();
        let col = |name: &str| {
            batch.column_by_name(name).ok_or_else(|| {
                let hint = match meta.top_k {
                    Some(k) => format!(
                        " (a top-{k} store keeps columns NAME.topk_logits, NAME.topk_ids and \
                         NAME.log_rest per teacher)"
                    ),
                    None => String::new(),
                };
                CoreError::format(path, format!("the store has no column '{name}'{hint}"))
            })
        };
        for v in int_column(path, "index", col("index")?)? {
            index.push(v.ok_or_else(|| CoreError::format(path, "null in column 'index'"))? as u64);
        }
        for v in int_column(path, "label", col("label")?)? {
            labels.push(v.map(|l| l as u32));
        }
        for (t, acc) in meta.teachers.iter().zip(values.iter_mut()) {
            match meta.top_k {
                None => {
                    let (w, v) = list_f32(path, &t.name, col(&t.name)?, None, first_row)?;
                    if !v.is_empty() && w != meta.classes {
                        return Err(CoreError::format(
                            path,
                            format!(
                                "teacher column '{}' holds {w} values per row, but the store's \
                                 metadata says `classes: {}`; the metadata and the data disagree \
                                 (a rewritten or damaged store): write it again with distill-teach",
                                t.name, meta.classes
                            ),
                        ));
                    }
                    acc.extend_from_slice(&v);
                }
                Some(k) => {
                    let [l, i, r] = top_k_columns(&t.name);
                    let (_, logits) = list_f32(path, &l, col(&l)?, Some(k), first_row)?;
                    let ids = id_lists(path, &i, col(&i)?, k, first_row)?;
                    let rest = float_column(path, &r, col(&r)?, first_row)?;
                    expand_top_k(path, t, &meta, (&logits, &ids, &rest), first_row, acc)?;
                }
            }
        }
    }
    let n = index.len();
    let mut logits = Vec::with_capacity(values.len());
    for (t, v) in meta.teachers.iter().zip(values) {
        if let Some(pos) = v.iter().position(|x| !x.is_finite()) {
            return Err(CoreError::format(
                path,
                format!(
                    "teacher '{}' has a non-finite value ({}) at row {} class {}; regenerate the store",
                    t.name,
                    v[pos],
                    pos / meta.classes,
                    pos % meta.classes
                ),
            ));
        }
        logits.push(
            Array2::from_shape_vec((n, meta.classes), v)
                .map_err(|e| CoreError::format(path, e.to_string()))?,
        );
    }
    Ok(SoftTargets {
        meta,
        index,
        labels,
        logits,
    })
}

/// A `FixedSizeList<Int32>[k]` column of class ids (no nulls), flattened.
pub(crate) fn id_lists(
    path: &Path,
    name: &str,
    column: &ArrayRef,
    k: usize,
    first_row: usize,
) -> Result<Vec<i32>> {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    let wrong = || {
        CoreError::format(
            path,
            format!(
                "column '{name}' has type {}, expected FixedSizeList<Int32>[{k}] (the top-{k} \
                 class ids)",
                column.data_type()
            ),
        )
    };
    let list = column.as_fixed_size_list_opt().ok_or_else(wrong)?;
    if list.value_length() as usize != k {
        return Err(wrong());
    }
    if let Some(r) = (0..list.len()).find(|&r| list.is_null(r)) {
        return Err(CoreError::format(
            path,
            format!("column '{name}' is null at row {}", first_row + r),
        ));
    }
    let values = list
        .values()
        .as_primitive_opt::<arrow_array::types::Int32Type>()
        .ok_or_else(wrong)?;
    if values.null_count() > 0 {
        return Err(CoreError::format(
            path,
            format!("column '{name}' has a null class id"),
        ));
    }
    let start = list.offset() * k;
    Ok(values.values()[start..start + list.len() * k].to_vec())
}

/// A `Float32` column with no nulls.
pub(crate) fn float_column(
    path: &Path,
    name: &str,
    column: &ArrayRef,
    first_row: usize,
) -> Result<Vec<f32>> {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    let values = column
        .as_primitive_opt::<arrow_array::types::Float32Type>()
        .ok_or_else(|| {
            CoreError::format(
                path,
                format!(
                    "column '{name}' has type {}, expected Float32 (the log of the rest of the mass)",
                    column.data_type()
                ),
            )
        })?;
    if let Some(r) = (0..values.len()).find(|&r| values.is_null(r)) {
        return Err(CoreError::format(
            path,
            format!("column '{name}' is null at row {}", first_row + r),
        ));
    }
    Ok(values.values().to_vec())
}

/// Checks one batch of teacher `t`'s top-k rows and appends their dense expansion to `out`.
pub(crate) fn expand_top_k(
    path: &Path,
    t: &TeacherMeta,
    meta: &StoreMeta,
    (logits, ids, rest): (&[f32], &[i32], &[f32]),
    first_row: usize,
    out: &mut Vec<f32>,
) -> Result<()> {
    let classes = meta.classes;
    if rest.is_empty() {
        return Ok(());
    }
    let k = logits.len() / rest.len();
    // Nothing in a top-k file shows the class count but the metadata: a damaged count must give an
    // error, not an allocation the machine cannot make.
    let rows_so_far = first_row + rest.len();
    let too_big = || {
        CoreError::format(
            path,
            format!(
                "the metadata says {classes} classes: {rows_so_far} rows of that many logits do \
                 not fit in memory; the metadata is damaged, or the store is too large to expand \
                 here"
            ),
        )
    };
    let mut seen: Vec<bool> = Vec::new();
    let mut dense: Vec<f32> = Vec::new();
    seen.try_reserve_exact(classes).map_err(|_| too_big())?;
    dense.try_reserve_exact(classes).map_err(|_| too_big())?;
    rest.len()
        .checked_mul(classes)
        .and_then(|n| out.try_reserve(n).ok())
        .ok_or_else(too_big)?;
    seen.resize(classes, false);
    dense.resize(classes, 0.0);
    let mut row_ids = vec![0u32; k];
    for r in 0..rest.len() {
        let row = first_row + r;
        let zs = &logits[r * k..(r + 1) * k];
        for (slot, &c) in row_ids.iter_mut().zip(&ids[r * k..(r + 1) * k]) {
            if c < 0 || c as usize >= classes {
                return Err(CoreError::format(
                    path,
                    format!(
                        "teacher '{}': row {row} keeps class id {c}, outside 0..{classes}; \
                         regenerate the store",
                        t.name
                    ),
                ));
            }
            if seen[c as usize] {
                return Err(CoreError::format(
                    path,
                    format!(
                        "teacher '{}': row {row} keeps class {c} twice; regenerate the store",
                        t.name
                    ),
                ));
            }
            seen[c as usize] = true;
            *slot = c as u32;
        }
        for &c in &row_ids {
            seen[c as usize] = false;
        }
        if let Some(v) = zs.iter().chain([&rest[r]]).find(|v| !v.is_finite()) {
            return Err(CoreError::format(
                path,
                format!(
                    "teacher '{}' has a non-finite value ({v}) at row {row}; regenerate the store",
                    t.name
                ),
            ));
        }
        crate::topk::expand_into(
            crate::topk::TailFill::EqualMass,
            zs,
            &row_ids,
            rest[r],
            &mut dense,
        );
        out.extend_from_slice(&dense);
    }
    Ok(())
}
