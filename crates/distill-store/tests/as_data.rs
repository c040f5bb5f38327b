//! The data loader given a soft-target store instead of a data set: refused, with the file and
//! the columns it has named.
#![allow(clippy::unwrap_used)]

use distill_data::{ClassFilter, Selection, Split};
use distill_store::{StoreMeta, StoreWriter, TeacherMeta};

const MNIST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/mnist");

#[test]
fn a_store_given_as_data_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let selection = |data: &str, split, limit| Selection {
        data: data.into(),
        split,
        limit,
        classes: ClassFilter::default(),
    };
    let mnist = selection(MNIST, Split::Test, Some(300)).load().unwrap();
    let store = dir.path().join("soft.parquet");
    let meta = StoreMeta::new(
        10,
        vec![TeacherMeta::logits("t", "t.onnx", "")],
        MNIST,
        "test",
        "",
    );
    let mut w = StoreWriter::create(&store, &meta).unwrap();
    let logits = ndarray::Array2::<f32>::zeros((300, 10));
    w.write(&mnist.index, mnist.labels.as_deref(), &[logits.view()])
        .unwrap();
    w.finish().unwrap();
    let e = selection(store.to_str().unwrap(), Split::Train, None)
        .load()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("soft.parquet")
            && e.contains("no 'features' column")
            && e.contains("index, label, t"),
        "{e}"
    );
}
