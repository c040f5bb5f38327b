//! Teachers trained in-process with the distill-nn engine, and their soft-target store, standing in
//! for `distill-train` and `distill-teach`.
#![allow(dead_code, clippy::unwrap_used)]

use distill_core::rng::Rng;
use distill_data::Dataset;
use distill_nn::mlp::gather_rows;
use distill_nn::{DistillLoss, Mlp, MlpConfig, Optimizer, OptimizerConfig, Schedule, Workspace};
use distill_store::{StoreMeta, StoreWriter, TeacherMeta};
use ndarray::{Array2, ArrayView2};
use std::path::Path;

/// Trains one MLP (`[inputs, hidden, classes]`, ReLU) on hard labels with SGD and momentum.
pub fn train_teacher(train: &Dataset, hidden: usize, epochs: usize, seed: u64) -> Mlp {
    let labels = train.labels.as_ref().unwrap();
    let config = MlpConfig {
        sizes: vec![train.width(), hidden, train.classes],
        input_dropout: 0.0,
        hidden_dropout: 0.0,
        max_norm: None,
    };
    let mut mlp = Mlp::new(config, seed).unwrap();
    let mut opt = Optimizer::new(
        OptimizerConfig::Sgd {
            lr: 0.1,
            momentum: 0.9,
            momentum_start: 0.5,
            momentum_ramp: 1,
            schedule: Schedule::Constant,
        },
        &mlp.shapes(),
    );
    let batch = 100;
    let mut ws = Workspace::default();
    let mut x = Array2::<f32>::zeros((batch, train.width()));
    let mut rng = Rng::derive(seed, 99);
    for epoch in 0..epochs {
        let order = rng.permutation(train.len());
        for (step, rows) in order.chunks_exact(batch).enumerate() {
            gather_rows(train.features.view(), rows, x.view_mut());
            let y: Vec<u32> = rows.iter().map(|&r| labels[r]).collect();
            mlp.train_step(
                x.view(),
                None,
                Some(&y),
                &DistillLoss::hard(),
                &mut opt,
                epoch,
                (epoch * 100_000 + step) as u64,
                &mut ws,
            )
            .unwrap();
        }
    }
    mlp
}

/// Writes the teachers' logits on `data` as a soft-target store at `path`, recording `dataset`
/// as the data set's name (as distill-teach would). Returns each teacher's logits.
pub fn write_store(
    path: &Path,
    dataset: &str,
    data: &Dataset,
    teachers: &[Mlp],
    with_labels: bool,
) -> Vec<Array2<f32>> {
    let logits: Vec<Array2<f32>> = teachers
        .iter()
        .map(|t| t.forward(data.features.view()).unwrap())
        .collect();
    let meta = meta(data.classes, teachers.len(), dataset);
    let mut w = StoreWriter::create(path, &meta).unwrap();
    let views: Vec<ArrayView2<f32>> = logits.iter().map(|l| l.view()).collect();
    let labels = with_labels.then(|| data.labels.as_deref().unwrap());
    w.write(&data.index, labels, &views).unwrap();
    w.finish().unwrap();
    logits
}

/// Accuracy of the mean of the teachers' logits, and the share of errors whose predicted class is
/// in the true class's group.
pub fn ensemble_errors(logits: &[Array2<f32>], labels: &[u32], groups: &[usize]) -> (f64, f64) {
    let mut mean = logits[0].clone();
    for l in &logits[1..] {
        mean += l;
    }
    let pred = distill_core::math::argmax_rows(mean.view());
    let wrong: Vec<(usize, u32)> = pred
        .iter()
        .zip(labels)
        .filter(|(p, l)| **p != **l as usize)
        .map(|(&p, &l)| (p, l))
        .collect();
    let within = wrong
        .iter()
        .filter(|(p, l)| groups[*p] == groups[*l as usize])
        .count();
    (
        1.0 - wrong.len() as f64 / labels.len() as f64,
        within as f64 / wrong.len().max(1) as f64,
    )
}

fn meta(classes: usize, teachers: usize, dataset: &str) -> StoreMeta {
    let teachers = (0..teachers)
        .map(|i| TeacherMeta::logits(format!("teacher{i}"), format!("in-process-{i}"), "-"))
        .collect();
    StoreMeta::new(classes, teachers, dataset, "train", "split=train")
}

/// A store of two teachers with random logits (for inputs that are wrong in shape, not content).
pub fn random_store(path: &Path, classes: usize, rows: usize, with_labels: bool) {
    let mut rng = Rng::new(classes as u64);
    let logits: Vec<Array2<f32>> = (0..2)
        .map(|_| Array2::from_shape_simple_fn((rows, classes), || 3.0 * rng.normal()))
        .collect();
    let labels: Vec<u32> = (0..rows).map(|r| (r % classes) as u32).collect();
    let index: Vec<u64> = (0..rows as u64).collect();
    let mut w = StoreWriter::create(path, &meta(classes, 2, "random")).unwrap();
    let views: Vec<ArrayView2<f32>> = logits.iter().map(|l| l.view()).collect();
    w.write(&index, with_labels.then_some(&labels[..]), &views)
        .unwrap();
    w.finish().unwrap();
}

/// A store whose single teacher column holds a NaN, written past StoreWriter (which refuses it).
pub fn nan_store(path: &Path) {
    use arrow_array::{
        ArrayRef, FixedSizeListArray, Float32Array, Int32Array, RecordBatch, UInt64Array,
    };
    use arrow_schema::{DataType, Field, Schema};
    use parquet::file::metadata::KeyValue;
    use parquet::file::properties::WriterProperties;
    use std::sync::Arc;
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let schema = Arc::new(Schema::new(vec![
        Field::new("index", DataType::UInt64, false),
        Field::new("label", DataType::Int32, true),
        Field::new("teacher0", DataType::FixedSizeList(item.clone(), 3), false),
    ]));
    let values = Float32Array::from(vec![1.0, 2.0, 3.0, 0.5, f32::NAN, 0.0]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from(vec![0u64, 1])),
        Arc::new(Int32Array::from(vec![0, 1])),
        Arc::new(FixedSizeListArray::try_new(item, 3, Arc::new(values), None).unwrap()),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let json = serde_json::to_string(&meta(3, 1, "random")).unwrap();
    let props = WriterProperties::builder()
        .set_key_value_metadata(Some(vec![KeyValue::new(
            distill_store::META_KEY.into(),
            json,
        )]))
        .build();
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}
