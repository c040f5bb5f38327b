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

mod align;
mod meta;
mod reader;
mod shards;
mod writer;

pub use meta::{Layout, Shard, StoreMeta, TeacherMeta, top_k_columns};
pub use reader::{SoftTargets, read_teacher_settings};
pub use shards::{part_path, read_store};
pub use writer::StoreWriter;

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

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;
    use writer::logits_field;

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

    /// A store of two 3-class teachers and one row in the layout of earlier versions: file
    /// key-value metadata `m` only, no schema or field metadata.
    fn write_old_layout(path: &Path, m: &StoreMeta) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("index", DataType::UInt64, false),
            Field::new("label", DataType::Int32, true),
            logits_field("a", 3),
            logits_field("b", 3),
        ]));
        let props = WriterProperties::builder()
            .set_key_value_metadata(Some(vec![KeyValue::new(
                META_KEY.into(),
                serde_json::to_string(m).unwrap(),
            )]))
            .build();
        let mut w =
            ArrowWriter::try_new(File::create(path).unwrap(), schema.clone(), Some(props)).unwrap();
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
    }

    #[test]
    fn stores_written_before_the_schema_metadata_still_read() {
        // The layout of earlier versions: file key-value metadata only, no schema or field metadata.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.parquet");
        let m = meta(None);
        write_old_layout(&path, &m);
        let s = read_store(&path).unwrap();
        assert_eq!(s.meta, m);
        assert_eq!(s.logits[1][[0, 2]], -3.0);
    }

    #[test]
    fn classes_metadata_that_does_not_match_the_width_is_named_so() {
        // The layout of earlier versions: file key-value metadata only, no schema or field metadata.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wide.parquet");
        let m = StoreMeta {
            classes: 4,
            ..meta(None)
        };
        write_old_layout(&path, &m);
        let e = read_store(&path).unwrap_err().to_string();
        assert!(
            e.contains("teacher column 'a' holds 3 values per row, but the store's metadata says `classes: 4`"),
            "{e}"
        );
        assert!(!e.contains("ragged"), "{e}");
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
