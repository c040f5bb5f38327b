//! The soft-target store: one Parquet file (or a folder of `part-K-of-N.parquet` files) with one
//! row per example: `index` (u64, row in the source split), `label` (i32, nullable) and one
//! `FixedSizeList<f32>[classes]` column of raw logits per teacher. Teachers that emit
//! probabilities are stored as `ln p` (a huge negative finite value for p = 0), which the metadata records. Temperature is
//! not stored: it is chosen when training.
//!
//! The top-k layout (`distill-teach --top-k K`, schema version 2) keeps per teacher only the K
//! largest logits, their class ids and the log of the rest of the mass (three columns,
//! `<teacher>.topk_logits`, `<teacher>.topk_ids`, `<teacher>.log_rest`; see [`crate::topk`]). The
//! reader expands each such row back into one logit per class, so every reader of
//! [`SoftTargets`] handles both layouts.

pub mod topk;

use arrow_array::{
    ArrayRef, FixedSizeListArray, Float32Array, Int32Array, RecordBatch, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use distill_core::atomic::AtomicFile;
use distill_core::{CoreError, Result};
use distill_data::Dataset;
use distill_data::parquet::{int_column, kv_map, list_f32};
use ndarray::{Array2, ArrayView2};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Version of the full store layout (one logit per class), written by these tools.
pub const SCHEMA_VERSION: u32 = 1;
/// Version of the top-k layout; readers of version 1 only refuse it by its version.
pub const TOP_K_SCHEMA_VERSION: u32 = 2;
/// Field metadata of the top-k columns: which part of the teacher's row the column holds
/// (`topk_logits`, `topk_ids` or `log_rest`).
pub const FIELD_PART_KEY: &str = "distill.part";
/// Field metadata of the top-k columns: K.
pub const FIELD_TOP_K_KEY: &str = "distill.top_k";
/// The key-value metadata key holding [`StoreMeta`] as JSON.
pub const META_KEY: &str = "distill.store";
/// The Arrow schema metadata key pandas reads into `DataFrame.attrs` (a JSON object); the store
/// puts [`StoreMeta`] there too, so `pd.read_parquet(store).attrs` shows it.
pub const PANDAS_ATTRS_KEY: &str = "PANDAS_ATTRS";
/// Field metadata of each teacher column: what it holds (`logits` or `log_probabilities`).
pub const FIELD_KIND_KEY: &str = "distill.kind";
/// Field metadata of each teacher column: the teacher's name.
pub const FIELD_TEACHER_KEY: &str = "distill.teacher";
/// Field metadata of each teacher column: the SHA-256 of the teacher's ONNX file.
pub const FIELD_SHA256_KEY: &str = "distill.sha256";
/// Field metadata of a probability teacher's column: the floor applied before the log (`0`: none).
pub const FIELD_PROB_FLOOR_KEY: &str = "distill.prob_floor";

pub use distill_core::OutputKind;

/// How a store keeps each teacher's scores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// One logit per class (schema version 1).
    #[default]
    Full,
    /// The K largest logits, their ids and the log of the rest of the mass (schema version 2).
    TopK,
}

impl Layout {
    fn is_full(&self) -> bool {
        *self == Layout::Full
    }
}

/// The three columns of teacher `name` in the top-k layout: logits, ids, log of the rest.
pub fn top_k_columns(name: &str) -> [String; 3] {
    [
        format!("{name}.topk_logits"),
        format!("{name}.topk_ids"),
        format!("{name}.log_rest"),
    ]
}

/// One teacher of the ensemble, as recorded in the store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TeacherMeta {
    /// Column name.
    pub name: String,
    pub path: String,
    pub sha256: String,
    /// What the model emitted; probabilities are stored as their log (`ln p`, and
    /// [`distill_core::math::ZERO_PROB_LOGIT`] for p = 0).
    pub kind: OutputKind,
    /// The floor applied before the log, for probability teachers: 0 (none) in stores written
    /// by this version; 1e-12 in older ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prob_floor: Option<f32>,
}

/// Which slice of the split a part file holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Shard {
    /// 1-based part number.
    pub part: usize,
    pub parts: usize,
    /// Rows of the whole split that the parts cover together.
    pub total_rows: usize,
}

/// Provenance and shape of a store, kept as JSON under [`META_KEY`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoreMeta {
    pub schema_version: u32,
    pub classes: usize,
    pub teachers: Vec<TeacherMeta>,
    pub dataset: String,
    pub split: String,
    /// The transform applied to the data before the teachers saw it (limit, filters).
    pub transform: String,
    pub tool_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// `full` (absent in the JSON) or `top_k`.
    #[serde(default, skip_serializing_if = "Layout::is_full")]
    pub layout: Layout,
    /// K of the top-k layout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
}

impl TeacherMeta {
    /// A teacher whose raw logits are stored as they are.
    pub fn logits(
        name: impl Into<String>,
        path: impl Into<String>,
        sha256: impl Into<String>,
    ) -> Self {
        TeacherMeta {
            name: name.into(),
            path: path.into(),
            sha256: sha256.into(),
            kind: OutputKind::Logits,
            prob_floor: None,
        }
    }
}

impl StoreMeta {
    /// The metadata of a whole (unsharded) store written by this version of the tools.
    pub fn new(
        classes: usize,
        teachers: Vec<TeacherMeta>,
        dataset: impl Into<String>,
        split: impl Into<String>,
        transform: impl Into<String>,
    ) -> Self {
        StoreMeta {
            schema_version: SCHEMA_VERSION,
            classes,
            teachers,
            dataset: dataset.into(),
            split: split.into(),
            transform: transform.into(),
            tool_version: distill_core::TOOL_VERSION.into(),
            shard: None,
            layout: Layout::Full,
            top_k: None,
        }
    }

    /// The same store in the top-k layout with `k` kept classes per row and teacher.
    pub fn with_top_k(self, k: usize) -> Self {
        StoreMeta {
            schema_version: TOP_K_SCHEMA_VERSION,
            layout: Layout::TopK,
            top_k: Some(k),
            ..self
        }
    }

    /// Checks that the version, the layout and K agree, and that K is usable for the class count.
    pub fn check_layout(&self) -> std::result::Result<(), String> {
        match (self.schema_version, self.layout, self.top_k) {
            (SCHEMA_VERSION, Layout::Full, None) => Ok(()),
            (TOP_K_SCHEMA_VERSION, Layout::TopK, Some(k)) if k >= 1 && k < self.classes => Ok(()),
            (TOP_K_SCHEMA_VERSION, Layout::TopK, Some(k)) => Err(format!(
                "top_k {k} is outside 1..{} (the store has {} classes)",
                self.classes.saturating_sub(1),
                self.classes
            )),
            (v, _, _) if v != SCHEMA_VERSION && v != TOP_K_SCHEMA_VERSION => Err(format!(
                "store schema version {v} is not supported (this tool reads versions \
                 {SCHEMA_VERSION} and {TOP_K_SCHEMA_VERSION})"
            )),
            (v, layout, k) => Err(format!(
                "schema version {v}, layout {layout:?} and top_k {k:?} do not go together \
                 (version {SCHEMA_VERSION} is the full layout, version {TOP_K_SCHEMA_VERSION} \
                 the top-k layout with a top_k)"
            )),
        }
    }

    /// A short description of the layout, e.g. `full` or `top-5`.
    pub fn layout_name(&self) -> String {
        match self.top_k {
            Some(k) => format!("top-{k}"),
            None => "full".into(),
        }
    }
}

/// Rows written so far are buffered into row groups of this many rows.
const ROW_GROUP_ROWS: usize = 16_384;

/// Writes a store row group by row group; it appears at its path only after [`finish`](Self::finish).
pub struct StoreWriter {
    out: AtomicFile,
    writer: ArrowWriter<File>,
    schema: SchemaRef,
    classes: usize,
    /// K of the top-k layout; `None`: the full layout.
    top_k: Option<usize>,
    teachers: Vec<String>,
    rows: usize,
    buffered: usize,
    selector: crate::topk::Selector,
}

fn logits_field(name: &str, classes: usize) -> Field {
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    Field::new(name, DataType::FixedSizeList(item, classes as i32), false)
}

/// The field metadata every column of teacher `t` carries: what it holds and whose it is.
fn teacher_field_meta(t: &TeacherMeta) -> std::collections::HashMap<String, String> {
    let mut meta = std::collections::HashMap::from([
        (
            FIELD_KIND_KEY.to_string(),
            match t.kind {
                OutputKind::Logits => "logits",
                OutputKind::Probabilities => "log_probabilities",
            }
            .to_string(),
        ),
        (FIELD_TEACHER_KEY.to_string(), t.name.clone()),
        (FIELD_SHA256_KEY.to_string(), t.sha256.clone()),
    ]);
    if t.kind == OutputKind::Probabilities {
        meta.insert(
            FIELD_PROB_FLOOR_KEY.to_string(),
            t.prob_floor.unwrap_or(0.0).to_string(),
        );
    }
    meta
}

/// A teacher's column(s), with field metadata saying what they hold and whose they are: one list
/// of `classes` logits, or in the top-k layout the K logits, the K ids and the log of the rest.
fn teacher_fields(t: &TeacherMeta, meta: &StoreMeta) -> Vec<Field> {
    let base = teacher_field_meta(t);
    let Some(k) = meta.top_k else {
        return vec![logits_field(&t.name, meta.classes).with_metadata(base)];
    };
    let [logits, ids, rest] = top_k_columns(&t.name);
    let part = |name: &str| {
        let mut m = base.clone();
        m.insert(FIELD_PART_KEY.into(), name.into());
        m.insert(FIELD_TOP_K_KEY.into(), k.to_string());
        m
    };
    let id_item = Arc::new(Field::new("item", DataType::Int32, false));
    vec![
        logits_field(&logits, k).with_metadata(part("topk_logits")),
        Field::new(&ids, DataType::FixedSizeList(id_item, k as i32), false)
            .with_metadata(part("topk_ids")),
        Field::new(&rest, DataType::Float32, false).with_metadata(part("log_rest")),
    ]
}

/// The store's schema: `index`, `label`, one column per teacher (with field metadata), and the
/// store metadata in the schema's own metadata (under [`META_KEY`] and, for pandas,
/// [`PANDAS_ATTRS_KEY`]).
fn store_schema(meta: &StoreMeta, json: &str) -> Schema {
    let mut fields = vec![
        Field::new("index", DataType::UInt64, false),
        Field::new("label", DataType::Int32, true),
    ];
    fields.extend(meta.teachers.iter().flat_map(|t| teacher_fields(t, meta)));
    Schema::new(fields).with_metadata(std::collections::HashMap::from([
        (META_KEY.to_string(), json.to_string()),
        (
            "distill.schema_version".to_string(),
            meta.schema_version.to_string(),
        ),
        (PANDAS_ATTRS_KEY.to_string(), json.to_string()),
    ]))
}

impl StoreWriter {
    pub fn create(path: &Path, meta: &StoreMeta) -> Result<Self> {
        if meta.teachers.is_empty() {
            return Err(CoreError::invalid(
                "a soft-target store needs at least one teacher",
            ));
        }
        let mut names: Vec<&str> = meta.teachers.iter().map(|t| t.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(CoreError::invalid(format!(
                "two teachers are both named '{}'; give them distinct names",
                w[0]
            )));
        }
        if let Some(t) = meta
            .teachers
            .iter()
            .find(|t| t.name == "index" || t.name == "label")
        {
            return Err(CoreError::invalid(format!(
                "a teacher may not be named '{}' (a reserved column)",
                t.name
            )));
        }
        meta.check_layout().map_err(|e| {
            CoreError::invalid(format!("{}: cannot write this store: {e}", path.display()))
        })?;
        if meta.top_k.is_some() {
            // A teacher named `a.topk_ids` would collide with teacher `a`'s ids column.
            let mut columns: Vec<String> = meta
                .teachers
                .iter()
                .flat_map(|t| top_k_columns(&t.name))
                .collect();
            columns.sort_unstable();
            if let Some(w) = columns.windows(2).find(|w| w[0] == w[1]) {
                return Err(CoreError::invalid(format!(
                    "two teachers' top-k columns are both named '{}'; rename a teacher with --name",
                    w[0]
                )));
            }
        }
        let json = serde_json::to_string(meta).map_err(|e| CoreError::invalid(e.to_string()))?;
        let schema = Arc::new(store_schema(meta, &json));
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_key_value_metadata(Some(vec![
                KeyValue::new(META_KEY.into(), json),
                KeyValue::new(
                    "distill.schema_version".into(),
                    meta.schema_version.to_string(),
                ),
            ]))
            .build();
        let out = AtomicFile::create(path)?;
        let writer = ArrowWriter::try_new(out.try_clone()?, schema.clone(), Some(props))
            .map_err(|e| CoreError::parquet(path, e))?;
        Ok(StoreWriter {
            out,
            writer,
            schema,
            classes: meta.classes,
            top_k: meta.top_k,
            teachers: meta.teachers.iter().map(|t| t.name.clone()).collect(),
            rows: 0,
            buffered: 0,
            selector: crate::topk::Selector::default(),
        })
    }

    /// Appends rows: their indices, labels (when known) and each teacher's `[rows, classes]` logits
    /// (in the top-k layout, the writer keeps the K largest of each row and the log of the rest).
    pub fn write(
        &mut self,
        index: &[u64],
        labels: Option<&[u32]>,
        logits: &[ArrayView2<f32>],
    ) -> Result<()> {
        let path = self.out.destination().to_path_buf();
        let n = index.len();
        if logits.len() != self.teachers.len() {
            return Err(CoreError::invalid(format!(
                "{}: {} logit blocks given for {} teachers",
                path.display(),
                logits.len(),
                self.teachers.len()
            )));
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from(index.to_vec())),
            Arc::new(match labels {
                Some(l) => Int32Array::from(l.iter().map(|&v| v as i32).collect::<Vec<_>>()),
                None => Int32Array::new_null(n),
            }),
        ];
        for (block, name) in logits.iter().zip(&self.teachers) {
            if block.dim() != (n, self.classes) {
                return Err(CoreError::invalid(format!(
                    "teacher '{name}': logits of shape {:?}, expected [{n}, {}]",
                    block.dim(),
                    self.classes
                )));
            }
            if let Some(((r, c), v)) = block.indexed_iter().find(|(_, v)| !v.is_finite()) {
                return Err(CoreError::invalid(format!(
                    "teacher '{name}' produced {v} for row {} (class {c}); the model's output is \
                     not finite, so no store is written",
                    index[r]
                )));
            }
            let item = Arc::new(Field::new("item", DataType::Float32, false));
            let Some(k) = self.top_k else {
                let values = Float32Array::from(block.iter().copied().collect::<Vec<_>>());
                columns.push(Arc::new(
                    FixedSizeListArray::try_new(item, self.classes as i32, Arc::new(values), None)
                        .map_err(|e| CoreError::invalid(e.to_string()))?,
                ));
                continue;
            };
            let mut top = vec![0.0f32; n * k];
            let mut ids = vec![0u32; n * k];
            let mut rest = Vec::with_capacity(n);
            let mut row_buf = Vec::with_capacity(self.classes);
            for (r, row) in block.rows().into_iter().enumerate() {
                row_buf.clear();
                row_buf.extend(row.iter().copied());
                rest.push(self.selector.select_into(
                    &row_buf,
                    &mut top[r * k..(r + 1) * k],
                    &mut ids[r * k..(r + 1) * k],
                ));
            }
            let id_item = Arc::new(Field::new("item", DataType::Int32, false));
            let ids = Int32Array::from(ids.into_iter().map(|c| c as i32).collect::<Vec<_>>());
            columns.push(Arc::new(
                FixedSizeListArray::try_new(
                    item,
                    k as i32,
                    Arc::new(Float32Array::from(top)),
                    None,
                )
                .map_err(|e| CoreError::invalid(e.to_string()))?,
            ));
            columns.push(Arc::new(
                FixedSizeListArray::try_new(id_item, k as i32, Arc::new(ids), None)
                    .map_err(|e| CoreError::invalid(e.to_string()))?,
            ));
            columns.push(Arc::new(Float32Array::from(rest)));
        }
        let batch = RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| CoreError::invalid(e.to_string()))?;
        self.writer
            .write(&batch)
            .map_err(|e| CoreError::parquet(&path, e))?;
        self.rows += n;
        self.buffered += n;
        if self.buffered >= ROW_GROUP_ROWS {
            self.writer
                .flush()
                .map_err(|e| CoreError::parquet(&path, e))?;
            self.buffered = 0;
        }
        Ok(())
    }

    /// Closes the file and renames it into place. Returns the number of rows written.
    pub fn finish(self) -> Result<usize> {
        let path = self.out.destination().to_path_buf();
        self.writer
            .close()
            .map_err(|e| CoreError::parquet(&path, e))?;
        self.out.commit()?;
        Ok(self.rows)
    }
}

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

    /// The labels, when every row has one.
    pub fn complete_labels(&self) -> Option<Vec<u32>> {
        self.labels.iter().copied().collect()
    }

    /// For each row of `ds`, the store row holding its soft targets. Refuses a store that does not
    /// cover the data set's rows, disagrees on labels, or has another class count.
    pub fn align(&self, ds: &Dataset, store_path: &Path) -> Result<Vec<usize>> {
        if self.meta.classes != ds.classes {
            return Err(CoreError::invalid(format!(
                "{}: the store has {} classes but the data set {} has {}; make the store from \
                 this data set with distill-teach",
                store_path.display(),
                self.meta.classes,
                ds.name,
                ds.classes
            )));
        }
        let mut by_index = std::collections::HashMap::with_capacity(self.len());
        for (row, &i) in self.index.iter().enumerate() {
            by_index.insert(i, row);
        }
        let mut rows = Vec::with_capacity(ds.len());
        for (r, &i) in ds.index.iter().enumerate() {
            let Some(&row) = by_index.get(&i) else {
                // A store of the first N rows (distill-teach --limit N) is the common case.
                let first_rows = self.index.iter().enumerate().all(|(k, &x)| x == k as u64);
                let hint = if first_rows {
                    format!("; or keep to the rows it has with --limit {}", self.len())
                } else {
                    String::new()
                };
                return Err(CoreError::invalid(format!(
                    "{}: the store has no row for example {i} of {} (it covers {} rows of split \
                     '{}'); run distill-teach on the same data and split{hint}",
                    store_path.display(),
                    ds.name,
                    self.len(),
                    self.meta.split
                )));
            };
            if let (Some(labels), Some(stored)) = (&ds.labels, self.labels[row])
                && labels[r] != stored
            {
                return Err(CoreError::invalid(format!(
                    "{}: example {i} has label {stored} in the store but {} in {}; the store was \
                     made from other data",
                    store_path.display(),
                    labels[r],
                    ds.name
                )));
            }
            rows.push(row);
        }
        Ok(rows)
    }
}

/// Path of part `k` of `n` inside a store folder.
pub fn part_path(dir: &Path, k: usize, n: usize) -> PathBuf {
    dir.join(format!("part-{k}-of-{n}.parquet"))
}

/// Reads a store file, or a folder of part files (all present and consistent).
pub fn read_store(path: &Path) -> Result<SoftTargets> {
    if !path.is_dir() {
        return read_one(path);
    }
    let mut parts: Vec<(usize, usize, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| CoreError::io(path, e))? {
        let p = entry.map_err(|e| CoreError::io(path, e))?.path();
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if let Some((k, n)) = parse_part_name(&name) {
            parts.push((k, n, p));
        }
    }
    if parts.is_empty() {
        return Err(CoreError::invalid(format!(
            "{}: no part-K-of-N.parquet files in this folder",
            path.display()
        )));
    }
    parts.sort();
    let n = parts[0].1;
    if let Some(p) = parts.iter().find(|p| p.1 != n) {
        return Err(CoreError::invalid(format!(
            "{}: parts of different shardings ({} and {})",
            path.display(),
            parts[0].2.display(),
            p.2.display()
        )));
    }
    let present: Vec<usize> = parts.iter().map(|p| p.0).collect();
    let missing: Vec<String> = (1..=n)
        .filter(|k| !present.contains(k))
        .map(|k| k.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(CoreError::invalid(format!(
            "{}: the store is incomplete: parts {} of {n} are missing; run distill-teach with \
             --shard K/{n} for each",
            path.display(),
            missing.join(", ")
        )));
    }
    let mut all: Option<SoftTargets> = None;
    for (k, _, p) in &parts {
        let part = read_one(p)?;
        if part.meta.shard.as_ref().map(|s| (s.part, s.parts)) != Some((*k, n)) {
            return Err(CoreError::format(
                p,
                format!("its metadata does not say it is part {k} of {n}"),
            ));
        }
        match &mut all {
            None => all = Some(part),
            Some(acc) => {
                if acc.meta.top_k != part.meta.top_k {
                    return Err(CoreError::format(
                        p,
                        format!(
                            "this part is a {} store but part {} is a {} store; parts of one \
                             store need the same layout: make every part again with the same \
                             --top-k (or none)",
                            part.meta.layout_name(),
                            parts[0].0,
                            acc.meta.layout_name()
                        ),
                    ));
                }
                let same = acc.meta.classes == part.meta.classes
                    && acc.meta.teachers == part.meta.teachers
                    && acc.meta.dataset == part.meta.dataset
                    && acc.meta.split == part.meta.split
                    && acc.meta.transform == part.meta.transform
                    && acc.meta.shard.as_ref().map(|s| s.total_rows)
                        == part.meta.shard.as_ref().map(|s| s.total_rows);
                if !same {
                    return Err(CoreError::format(
                        p,
                        "this part was made with other teachers, data or settings than part 1",
                    ));
                }
                acc.index.extend_from_slice(&part.index);
                acc.labels.extend_from_slice(&part.labels);
                for (a, b) in acc.logits.iter_mut().zip(part.logits) {
                    a.append(ndarray::Axis(0), b.view())
                        .map_err(|e| CoreError::invalid(e.to_string()))?;
                }
            }
        }
    }
    let mut all = all.ok_or_else(|| CoreError::invalid("no parts"))?;
    let total = all
        .meta
        .shard
        .as_ref()
        .map(|s| s.total_rows)
        .unwrap_or(all.len());
    if all.len() != total {
        return Err(CoreError::invalid(format!(
            "{}: the parts hold {} rows together, but the split has {total}",
            path.display(),
            all.len()
        )));
    }
    all.meta.shard = None;
    Ok(all)
}

fn parse_part_name(name: &str) -> Option<(usize, usize)> {
    let rest = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    let (k, n) = rest.split_once("-of-")?;
    Some((k.parse().ok()?, n.parse().ok()?))
}

fn read_one(path: &Path) -> Result<SoftTargets> {
    distill_data::parquet::guard_decoder(path, || read_one_unguarded(path))
}

fn read_one_unguarded(path: &Path) -> Result<SoftTargets> {
    let file = File::open(path).map_err(|e| CoreError::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| CoreError::format(path, format!("not a readable Parquet file ({e})")))?;
    distill_data::parquet_guard::check_column_chunks(path, builder.metadata())?;
    let mut kv = kv_map(builder.metadata().file_metadata().key_value_metadata());
    // A store rewritten by another tool may keep the metadata in the Arrow schema only.
    if let Some(json) = builder.schema().metadata().get(META_KEY) {
        kv.entry(META_KEY.to_string())
            .or_insert_with(|| json.clone());
    }
    let json = kv.get(META_KEY).ok_or_else(|| {
        CoreError::format(
            path,
            format!(
                "no '{META_KEY}' metadata: this is not a soft-target store made by distill-teach"
            ),
        )
    })?;
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
                    let (_, v) =
                        list_f32(path, &t.name, col(&t.name)?, Some(meta.classes), first_row)?;
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
fn id_lists(
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
fn float_column(path: &Path, name: &str, column: &ArrayRef, first_row: usize) -> Result<Vec<f32>> {
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
fn expand_top_k(
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

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn meta(shard: Option<Shard>) -> StoreMeta {
        StoreMeta {
            schema_version: SCHEMA_VERSION,
            classes: 3,
            teachers: vec![
                TeacherMeta {
                    name: "a".into(),
                    path: "a.onnx".into(),
                    sha256: "00".into(),
                    kind: OutputKind::Logits,
                    prob_floor: None,
                },
                TeacherMeta {
                    name: "b".into(),
                    path: "b.onnx".into(),
                    sha256: "11".into(),
                    kind: OutputKind::Probabilities,
                    prob_floor: Some(1e-12),
                },
            ],
            dataset: "toy".into(),
            split: "train".into(),
            transform: "none".into(),
            tool_version: distill_core::TOOL_VERSION.into(),
            shard,
            layout: Layout::Full,
            top_k: None,
        }
    }

    #[test]
    fn roundtrip_file_and_parts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("soft.parquet");
        let mut w = StoreWriter::create(&path, &meta(None)).unwrap();
        let a = array![[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]];
        let b = array![[-1.0f32, -2.0, -3.0], [-4.0, -5.0, -6.0]];
        w.write(&[0, 1], Some(&[2, 1]), &[a.view(), b.view()])
            .unwrap();
        w.write(
            &[2],
            None,
            &[a.slice(ndarray::s![..1, ..]), b.slice(ndarray::s![..1, ..])],
        )
        .unwrap();
        assert_eq!(w.finish().unwrap(), 3);
        let s = read_store(&path).unwrap();
        assert_eq!(s.index, vec![0, 1, 2]);
        assert_eq!(s.labels, vec![Some(2), Some(1), None]);
        assert_eq!(s.logits[1][[1, 2]], -6.0);
        assert_eq!(s.meta, meta(None));

        let parts = dir.path().join("parts");
        std::fs::create_dir(&parts).unwrap();
        for k in 1..=2 {
            let shard = Shard {
                part: k,
                parts: 2,
                total_rows: 2,
            };
            let mut w = StoreWriter::create(&part_path(&parts, k, 2), &meta(Some(shard))).unwrap();
            let r = k - 1;
            w.write(
                &[r as u64],
                Some(&[r as u32]),
                &[
                    a.slice(ndarray::s![r..r + 1, ..]),
                    b.slice(ndarray::s![r..r + 1, ..]),
                ],
            )
            .unwrap();
            w.finish().unwrap();
        }
        let s = read_store(&parts).unwrap();
        assert_eq!(s.index, vec![0, 1]);
        assert_eq!(s.logits[0], a);
        std::fs::remove_file(part_path(&parts, 2, 2)).unwrap();
        let e = read_store(&parts).unwrap_err().to_string();
        assert!(e.contains("parts 2 of 2 are missing"), "{e}");
    }

    #[test]
    fn metadata_is_in_the_arrow_schema_and_on_each_teacher_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("soft.parquet");
        let mut w = StoreWriter::create(&path, &meta(None)).unwrap();
        let a = array![[1.0f32, 2.0, 3.0]];
        w.write(&[0], Some(&[2]), &[a.view(), a.view()]).unwrap();
        w.finish().unwrap();
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        let schema = builder.schema();
        let from_schema: StoreMeta = serde_json::from_str(&schema.metadata()[META_KEY]).unwrap();
        assert_eq!(from_schema, meta(None));
        // pandas reads PANDAS_ATTRS into DataFrame.attrs: it must be a JSON object.
        let attrs: serde_json::Value =
            serde_json::from_str(&schema.metadata()[PANDAS_ATTRS_KEY]).unwrap();
        assert_eq!(attrs["classes"], 3);
        assert_eq!(attrs["teachers"][1]["name"], "b");
        let a_meta = schema.field_with_name("a").unwrap().metadata();
        assert_eq!(a_meta[FIELD_KIND_KEY], "logits");
        assert_eq!(a_meta[FIELD_TEACHER_KEY], "a");
        assert_eq!(a_meta[FIELD_SHA256_KEY], "00");
        assert!(!a_meta.contains_key(FIELD_PROB_FLOOR_KEY));
        let b_meta = schema.field_with_name("b").unwrap().metadata();
        assert_eq!(b_meta[FIELD_KIND_KEY], "log_probabilities");
        assert_eq!(b_meta[FIELD_SHA256_KEY], "11");
        assert_eq!(b_meta[FIELD_PROB_FLOOR_KEY], "0.000000000001");
        // The file-level key-value metadata is still there for older readers.
        let kv = kv_map(builder.metadata().file_metadata().key_value_metadata());
        assert_eq!(
            serde_json::from_str::<StoreMeta>(&kv[META_KEY]).unwrap(),
            meta(None)
        );
    }

    #[test]
    fn stores_written_before_the_schema_metadata_still_read() {
        // The layout of earlier versions: file key-value metadata only, no schema or field metadata.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.parquet");
        let m = meta(None);
        let schema = Arc::new(Schema::new(vec![
            Field::new("index", DataType::UInt64, false),
            Field::new("label", DataType::Int32, true),
            logits_field("a", 3),
            logits_field("b", 3),
        ]));
        let props = WriterProperties::builder()
            .set_key_value_metadata(Some(vec![KeyValue::new(
                META_KEY.into(),
                serde_json::to_string(&m).unwrap(),
            )]))
            .build();
        let mut w = ArrowWriter::try_new(File::create(&path).unwrap(), schema.clone(), Some(props))
            .unwrap();
        let item = Arc::new(Field::new("item", DataType::Float32, false));
        let list = |v: Vec<f32>| -> ArrayRef {
            Arc::new(
                FixedSizeListArray::try_new(item.clone(), 3, Arc::new(Float32Array::from(v)), None)
                    .unwrap(),
            )
        };
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(UInt64Array::from(vec![0u64])),
                Arc::new(Int32Array::from(vec![1])),
                list(vec![1.0, 2.0, 3.0]),
                list(vec![-1.0, -2.0, -3.0]),
            ],
        )
        .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let s = read_store(&path).unwrap();
        assert_eq!(s.meta, m);
        assert_eq!(s.logits[1][[0, 2]], -3.0);
    }

    #[test]
    fn nan_is_refused_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("soft.parquet");
        let mut w = StoreWriter::create(&path, &meta(None)).unwrap();
        let a = array![[1.0f32, f32::NAN, 3.0]];
        let e = w
            .write(&[0], None, &[a.view(), a.view()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("teacher 'a'") && e.contains("NaN"), "{e}");
        drop(w);
        assert!(!path.exists());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "temporary file left behind"
        );
    }

    /// A top-k store: its metadata in all three places, its columns, the expansion the reader
    /// gives back, and a folder mixing a top-k part with a full part refused.
    #[test]
    fn top_k_roundtrip_metadata_and_mixed_parts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("top.parquet");
        let m = StoreMeta {
            classes: 5,
            ..meta(None)
        }
        .with_top_k(2);
        let a = array![[1.0f32, 4.0, 3.0, 0.0, -2.0], [0.5, 0.5, 0.5, 9.0, 0.5]];
        let b = array![
            [
                -0.1f32,
                -3.0,
                -2.5,
                distill_core::math::ZERO_PROB_LOGIT,
                -4.0
            ],
            [-2.0, -0.5, -1.5, -3.0, -3.5]
        ];
        let mut w = StoreWriter::create(&path, &m).unwrap();
        w.write(&[0, 1], Some(&[1, 3]), &[a.view(), b.view()])
            .unwrap();
        w.finish().unwrap();
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        let kv = kv_map(builder.metadata().file_metadata().key_value_metadata());
        let json: serde_json::Value = serde_json::from_str(&kv[META_KEY]).unwrap();
        assert_eq!(json["layout"], "top_k");
        assert_eq!(json["top_k"], 2);
        assert_eq!(json["schema_version"], 2);
        assert_eq!(kv["distill.schema_version"], "2");
        let schema = builder.schema();
        assert_eq!(
            serde_json::from_str::<StoreMeta>(&schema.metadata()[META_KEY]).unwrap(),
            m
        );
        assert_eq!(schema.metadata()["distill.schema_version"], "2");
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            [
                "index",
                "label",
                "a.topk_logits",
                "a.topk_ids",
                "a.log_rest",
                "b.topk_logits",
                "b.topk_ids",
                "b.log_rest"
            ]
        );
        let ids_meta = schema.field_with_name("b.topk_ids").unwrap().metadata();
        assert_eq!(ids_meta[FIELD_PART_KEY], "topk_ids");
        assert_eq!(ids_meta[FIELD_TOP_K_KEY], "2");
        assert_eq!(ids_meta[FIELD_KIND_KEY], "log_probabilities");

        let s = read_store(&path).unwrap();
        assert_eq!(s.meta, m);
        // Kept classes come back as they were; the three missing ones share the rest equally.
        let rest0 = (1.0f64.exp() + 1.0 + (-2.0f64).exp()).ln() - 3.0f64.ln();
        assert_eq!(s.logits[0][[0, 1]], 4.0);
        assert_eq!(s.logits[0][[0, 2]], 3.0);
        for c in [0, 3, 4] {
            assert!((f64::from(s.logits[0][[0, c]]) - rest0).abs() < 1e-6);
        }
        // Row 2 of teacher a: ties at 0.5 keep the lower ids (class 0 next to class 3).
        assert_eq!(s.logits[0][[1, 3]], 9.0);
        assert_eq!(s.logits[0][[1, 0]], 0.5);
        assert!((f64::from(s.logits[0][[1, 1]]) - 0.5).abs() < 1e-6);

        // One part top-k, the other full: refused by name.
        let parts = dir.path().join("parts");
        std::fs::create_dir(&parts).unwrap();
        for k in 1..=2 {
            let shard = Shard {
                part: k,
                parts: 2,
                total_rows: 2,
            };
            let pm = StoreMeta {
                classes: 5,
                ..meta(Some(shard))
            };
            let pm = if k == 1 { pm.with_top_k(2) } else { pm };
            let mut w = StoreWriter::create(&part_path(&parts, k, 2), &pm).unwrap();
            let r = k - 1;
            w.write(
                &[r as u64],
                None,
                &[
                    a.slice(ndarray::s![r..r + 1, ..]),
                    b.slice(ndarray::s![r..r + 1, ..]),
                ],
            )
            .unwrap();
            w.finish().unwrap();
        }
        let e = read_store(&parts).unwrap_err().to_string();
        assert!(
            e.contains("part-2-of-2.parquet")
                && e.contains("this part is a full store but part 1 is a top-2 store")
                && e.contains("--top-k"),
            "{e}"
        );
    }

    #[test]
    fn top_k_needs_fewer_kept_classes_than_classes() {
        let dir = tempfile::tempdir().unwrap();
        for k in [0, 3, 4] {
            let path = dir.path().join(format!("k{k}.parquet"));
            let e = StoreWriter::create(&path, &meta(None).with_top_k(k))
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains(&format!("top_k {k} is outside 1..2")), "{e}");
            assert!(!path.exists());
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
