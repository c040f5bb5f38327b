//! The soft-target store: one Parquet file (or a folder of `part-K-of-N.parquet` files) with one
//! row per example: `index` (u64, row in the source split), `label` (i32, nullable) and one
//! `FixedSizeList<f32>[classes]` column of raw logits per teacher. Teachers that emit
//! probabilities are stored as `ln p` (a huge negative finite value for p = 0), which the metadata records. Temperature is
//! not stored: it is chosen when training.

use crate::atomic::AtomicFile;
use crate::data::Dataset;
use crate::data::parquet::{int_column, kv_map, list_f32};
use crate::{CoreError, Result};
use arrow_array::{
    ArrayRef, FixedSizeListArray, Float32Array, Int32Array, RecordBatch, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
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

/// Version of the store layout written by these tools.
pub const SCHEMA_VERSION: u32 = 1;
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

/// What a teacher's stored column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// Raw logits, stored as they are.
    Logits,
    /// Probabilities, stored as `ln p` (`math::ZERO_PROB_LOGIT` for p = 0).
    Probabilities,
}

impl std::fmt::Display for OutputKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OutputKind::Logits => "logits",
            OutputKind::Probabilities => "probabilities",
        })
    }
}

/// One teacher of the ensemble, as recorded in the store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TeacherMeta {
    /// Column name.
    pub name: String,
    pub path: String,
    pub sha256: String,
    /// What the model emitted; probabilities are stored as their log (`ln p`, and
    /// [`crate::math::ZERO_PROB_LOGIT`] for p = 0).
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
            tool_version: crate::TOOL_VERSION.into(),
            shard: None,
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
    teachers: Vec<String>,
    rows: usize,
    buffered: usize,
}

fn logits_field(name: &str, classes: usize) -> Field {
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    Field::new(name, DataType::FixedSizeList(item, classes as i32), false)
}

/// A teacher's column, with field metadata saying what it holds and whose it is.
fn teacher_field(t: &TeacherMeta, classes: usize) -> Field {
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
    logits_field(&t.name, classes).with_metadata(meta)
}

/// The store's schema: `index`, `label`, one column per teacher (with field metadata), and the
/// store metadata in the schema's own metadata (under [`META_KEY`] and, for pandas,
/// [`PANDAS_ATTRS_KEY`]).
fn store_schema(meta: &StoreMeta, json: &str) -> Schema {
    let mut fields = vec![
        Field::new("index", DataType::UInt64, false),
        Field::new("label", DataType::Int32, true),
    ];
    fields.extend(meta.teachers.iter().map(|t| teacher_field(t, meta.classes)));
    Schema::new(fields).with_metadata(std::collections::HashMap::from([
        (META_KEY.to_string(), json.to_string()),
        (
            "distill.schema_version".to_string(),
            SCHEMA_VERSION.to_string(),
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
        let json = serde_json::to_string(meta).map_err(|e| CoreError::invalid(e.to_string()))?;
        let schema = Arc::new(store_schema(meta, &json));
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_key_value_metadata(Some(vec![
                KeyValue::new(META_KEY.into(), json),
                KeyValue::new("distill.schema_version".into(), SCHEMA_VERSION.to_string()),
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
            teachers: meta.teachers.iter().map(|t| t.name.clone()).collect(),
            rows: 0,
            buffered: 0,
        })
    }

    /// Appends rows: their indices, labels (when known) and each teacher's `[rows, classes]` logits.
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
            let values = Float32Array::from(block.iter().copied().collect::<Vec<_>>());
            let item = Arc::new(Field::new("item", DataType::Float32, false));
            columns.push(Arc::new(
                FixedSizeListArray::try_new(item, self.classes as i32, Arc::new(values), None)
                    .map_err(|e| CoreError::invalid(e.to_string()))?,
            ));
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
    crate::data::parquet::guard_decoder(path, || read_one_unguarded(path))
}

fn read_one_unguarded(path: &Path) -> Result<SoftTargets> {
    let file = File::open(path).map_err(|e| CoreError::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| CoreError::format(path, format!("not a readable Parquet file ({e})")))?;
    crate::parquet_guard::check_column_chunks(path, builder.metadata())?;
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
    if meta.schema_version != SCHEMA_VERSION {
        return Err(CoreError::format(
            path,
            format!(
                "store schema version {} is not supported (this tool reads version {SCHEMA_VERSION})",
                meta.schema_version
            ),
        ));
    }
    let reader = builder.build().map_err(|e| CoreError::parquet(path, e))?;
    let mut index = Vec::new();
    let mut labels = Vec::new();
    let mut values: Vec<Vec<f32>> = vec![Vec::new(); meta.teachers.len()];
    for batch in reader {
        let batch = batch.map_err(|e| CoreError::format(path, e.to_string()))?;
        let first_row = index.len();
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| CoreError::format(path, format!("the store has no column '{name}'")))
        };
        for v in int_column(path, "index", col("index")?)? {
            index.push(v.ok_or_else(|| CoreError::format(path, "null in column 'index'"))? as u64);
        }
        for v in int_column(path, "label", col("label")?)? {
            labels.push(v.map(|l| l as u32));
        }
        for (t, acc) in meta.teachers.iter().zip(values.iter_mut()) {
            let (_, v) = list_f32(path, &t.name, col(&t.name)?, Some(meta.classes), first_row)?;
            acc.extend_from_slice(&v);
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
            tool_version: crate::TOOL_VERSION.into(),
            shard,
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
}
