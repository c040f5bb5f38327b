//! The store's metadata: the layout, each teacher, the shard a part file holds, and how they
//! are kept in the Parquet key-value metadata and the Arrow schema.

use super::*;

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
