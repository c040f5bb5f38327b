//! Writing a store: the Arrow schema with its metadata, row groups of buffered rows, and the
//! atomic rename into place.

use super::*;

/// Rows written so far are buffered into row groups of this many rows.
pub(crate) const ROW_GROUP_ROWS: usize = 16_384;

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

pub(crate) fn logits_field(name: &str, classes: usize) -> Field {
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    Field::new(name, DataType::FixedSizeList(item, classes as i32), false)
}

/// The field metadata every column of teacher `t` carries: what it holds and whose it is.
pub(crate) fn teacher_field_meta(t: &TeacherMeta) -> std::collections::HashMap<String, String> {
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
pub(crate) fn teacher_fields(t: &TeacherMeta, meta: &StoreMeta) -> Vec<Field> {
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
pub(crate) fn store_schema(meta: &StoreMeta, json: &str) -> Schema {
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
    /// Starts a store at `path` (written to a temporary file, renamed into place by
    /// [`StoreWriter::finish`]); fails on no teachers, duplicate or reserved names, or a layout
    /// the metadata does not describe.
    pub fn create(path: &Path, meta: &StoreMeta) -> Result<Self> {
        Self::create_with_settings(path, meta, &[])
    }

    /// [`StoreWriter::create`], recording with each teacher the model settings it was run with
    /// (`settings[i]` for `meta.teachers[i]`, as distill-runtime's `ModelSettings` in JSON): the
    /// `settings` field of that teacher in the metadata, which [`crate::read_teacher_settings`]
    /// returns.
    pub fn create_with_settings(
        path: &Path,
        meta: &StoreMeta,
        settings: &[serde_json::Value],
    ) -> Result<Self> {
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
        let mut value =
            serde_json::to_value(meta).map_err(|e| CoreError::invalid(e.to_string()))?;
        if let Some(teachers) = value.get_mut("teachers").and_then(|t| t.as_array_mut()) {
            for (teacher, s) in teachers.iter_mut().zip(settings) {
                if let Some(t) = teacher.as_object_mut() {
                    t.insert("settings".into(), s.clone());
                }
            }
        }
        let json = value.to_string();
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
