//! Real ONNX files from `tests/fixtures/teachers/` (made by its `make_fixtures.py`), run through the adapter and
//! compared with ONNX Runtime 1.31.1's own outputs recorded in `expected.json` by the same script.

#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::path::{Path, PathBuf};

use distill_runtime::{
    Layout, ModelSettings, ModelSpec, OnnxModel, OutputKind, Provider, RuntimeError, init,
};
use ndarray::Array2;
use serde_json::Value;

/// Absolute tolerance against ONNX Runtime's recorded outputs (other CPUs may differ in the last bits).
const TOLERANCE: f32 = 1e-5;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures/teachers").join(name)
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixture("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The first `n` MNIST t10k images as raw values in [0, 1], `[n, 784]`.
fn mnist_test_images(n: usize) -> Array2<f32> {
    let file = std::fs::File::open(repo().join("data/mnist/t10k-images-idx3-ubyte.gz")).unwrap();
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut bytes)
        .unwrap();
    let header =
        |i: usize| u32::from_be_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap()) as usize;
    assert_eq!(header(0), 2051, "not an idx3 image file");
    let (count, rows, cols) = (header(1), header(2), header(3));
    assert!(n <= count);
    let width = rows * cols;
    let pixels = &bytes[16..16 + n * width];
    Array2::from_shape_vec(
        (n, width),
        pixels.iter().map(|&b| f32::from(b) / 255.0).collect(),
    )
    .unwrap()
}

fn load(spec: &ModelSpec) -> distill_runtime::Result<OnnxModel> {
    OnnxModel::load(spec, Provider::Cpu, 1)
}

fn load_err(spec: &ModelSpec) -> RuntimeError {
    match load(spec) {
        Ok(model) => panic!(
            "{} loaded, but should not have: {model:?}",
            spec.path.display()
        ),
        Err(e) => e,
    }
}

fn assert_close(found: &Array2<f32>, expected: &Value, what: &str) {
    let rows = expected.as_array().unwrap();
    assert_eq!(found.nrows(), rows.len(), "{what}: rows");
    for (i, row) in rows.iter().enumerate() {
        let row = row.as_array().unwrap();
        assert_eq!(found.ncols(), row.len(), "{what}: classes");
        for (j, value) in row.iter().enumerate() {
            let value = value.as_f64().unwrap() as f32;
            let got = found[[i, j]];
            assert!(
                (got - value).abs() <= TOLERANCE,
                "{what}: [{i}, {j}] is {got}, ONNX Runtime gave {value}"
            );
        }
    }
}

fn copy_to(dir: &Path, from: &Path) -> PathBuf {
    let to = dir.join(from.file_name().unwrap());
    std::fs::copy(from, &to).unwrap();
    to
}

#[test]
fn cpu_provider_loads_the_library_and_a_model() {
    let runtime = init().unwrap();
    assert!(
        runtime.library().exists(),
        "{}",
        runtime.library().display()
    );
    let model = load(&ModelSpec::new(fixture("torchscript_cnn.onnx"))).unwrap();
    assert_eq!(model.provider(), Provider::Cpu);
    assert_eq!(model.name(), "torchscript_cnn");
    assert!(model.notes().is_empty(), "{:?}", model.notes());
}

#[test]
fn cuda_provider_fails_with_a_clear_message_when_cuda_is_unusable() {
    let runtime = init().unwrap();
    let spec = ModelSpec::new(fixture("torchscript_cnn.onnx"));
    match OnnxModel::load(&spec, Provider::Cuda, 1) {
        Ok(model) => {
            assert!(
                cfg!(feature = "cuda") && runtime.has_cuda_provider_library(),
                "CUDA loaded without CUDA support"
            );
            assert_eq!(model.provider(), Provider::Cuda);
        }
        Err(e) => {
            assert!(matches!(e, RuntimeError::CudaUnavailable { .. }), "{e:?}");
            let message = e.to_string();
            assert!(
                message.starts_with("CUDA execution provider is not available: "),
                "{message}"
            );
            assert!(
                message.ends_with(
                    "; run `make setup CUDA=1` on a machine with an NVIDIA GPU, or use --provider cpu"
                ),
                "{message}"
            );
            if !cfg!(feature = "cuda") {
                assert!(message.contains("without its `cuda` feature"), "{message}");
            } else if !runtime.has_cuda_provider_library() {
                assert!(message.contains("built without CUDA"), "{message}");
            }
            assert!(e.is_user_error());
        }
    }
}

#[test]
fn auto_provider_falls_back_to_cpu_and_says_so() {
    let runtime = init().unwrap();
    let model = OnnxModel::load(
        &ModelSpec::new(fixture("torchscript_cnn.onnx")),
        Provider::Auto,
        0,
    )
    .unwrap();
    if model.provider() == Provider::Cpu {
        assert!(
            model
                .notes()
                .iter()
                .any(|n| n.starts_with("CUDA is not available") && n.contains("on the CPU")),
            "{:?}",
            model.notes()
        );
    } else {
        assert!(cfg!(feature = "cuda") && runtime.has_cuda_provider_library());
    }
}

#[test]
fn every_exporter_fixture_matches_onnx_runtime() {
    let expected = expected();
    let x = mnist_test_images(8);
    for fx in expected["fixtures"].as_array().unwrap() {
        let file = fx["file"].as_str().unwrap();
        let pre = &fx["preprocessing"];
        let settings = ModelSettings {
            mean: Some(pre["mean"].as_f64().unwrap() as f32),
            std: Some(pre["std"].as_f64().unwrap() as f32),
            ..ModelSettings::default()
        };
        let spec = ModelSpec::new(fixture(file)).with_settings(settings);
        let mut model = load(&spec).unwrap_or_else(|e| panic!("{file}: {e}"));

        assert_eq!(
            model.io_names(),
            (
                fx["input"].as_str().unwrap(),
                fx["output"].as_str().unwrap()
            ),
            "{file}"
        );
        let kind = match fx["output_kind"].as_str().unwrap() {
            "logits" => OutputKind::Logits,
            _ => OutputKind::Probabilities,
        };
        assert_eq!(model.kind(), kind, "{file}: inferred kind");
        match pre["layout"].as_str().unwrap() {
            "image" => assert_eq!(
                model.layout(),
                Layout::Image { c: 1, h: 28, w: 28 },
                "{file}"
            ),
            _ => assert_eq!(model.layout(), Layout::Flat, "{file}"),
        }
        assert_eq!(model.classes(), Some(10), "{file}");
        assert_eq!(model.input_width(), Some(784), "{file}");
        model.expect_input_width(784).unwrap();
        let one_at_a_time = fx["run_one_row_at_a_time"].as_bool().unwrap();
        assert_eq!(model.fixed_batch(), one_at_a_time.then_some(1), "{file}");

        let scores = model
            .run(x.view())
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_close(&scores, &fx["values"], file);
        let argmax: Vec<u64> = scores
            .rows()
            .into_iter()
            .map(|r| {
                r.iter()
                    .enumerate()
                    .fold(
                        (0, f32::MIN),
                        |best, (i, &v)| if v > best.1 { (i, v) } else { best },
                    )
                    .0 as u64
            })
            .collect();
        let want: Vec<u64> = fx["argmax"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(argmax, want, "{file}");

        // A second call with another batch size reuses the session and its buffer.
        let again = model.run(x.slice(ndarray::s![5..8, ..])).unwrap();
        assert_eq!(again, scores.slice(ndarray::s![5..8, ..]), "{file}");
    }
}

#[test]
fn zipmap_output_reads_like_the_plain_probabilities() {
    let x = mnist_test_images(8);
    let mut zipmap = load(&ModelSpec::new(fixture("skl_logreg_zipmap.onnx"))).unwrap();
    let mut plain = load(&ModelSpec::new(fixture("skl_logreg.onnx"))).unwrap();
    assert_eq!(zipmap.kind(), OutputKind::Probabilities);
    assert_eq!(zipmap.classes(), Some(10), "learnt from a probe run");
    assert_eq!(zipmap.run(x.view()).unwrap(), plain.run(x.view()).unwrap());
}

#[test]
fn fixed_batch_models_run_any_number_of_rows_and_warn() {
    let mut model = load(&ModelSpec::new(fixture("fixed_batch1.onnx"))).unwrap();
    assert_eq!(model.fixed_batch(), Some(1));
    assert!(
        model
            .notes()
            .iter()
            .any(|n| n.contains("fixed batch size of 1") && n.contains("slow")),
        "{:?}",
        model.notes()
    );
    let x = mnist_test_images(3);
    assert_eq!(model.run(x.view()).unwrap().dim(), (3, 10));
    assert_eq!(
        model.run(x.slice(ndarray::s![..0, ..])).unwrap().dim(),
        (0, 10)
    );
}

#[test]
fn a_sidecar_sets_the_normalisation_and_explicit_settings_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let model_path = copy_to(dir.path(), &fixture("torchscript_cnn.onnx"));
    std::fs::write(
        ModelSettings::sidecar_path(&model_path),
        "# teacher exported from PyTorch\nmean: 0.1307\nstd: 0.3081\nlayout: image\nkind: logits\n",
    )
    .unwrap();
    let expected = expected();
    let fx = &expected["fixtures"][0];
    assert_eq!(fx["file"], "torchscript_cnn.onnx");
    let x = mnist_test_images(8);

    let mut model = load(&ModelSpec::new(&model_path)).unwrap();
    assert_eq!(model.normalization().mean, 0.1307);
    assert_close(&model.run(x.view()).unwrap(), &fx["values"], "with sidecar");

    let explicit = ModelSettings {
        mean: Some(0.0),
        std: Some(1.0),
        kind: Some(OutputKind::Probabilities),
        ..ModelSettings::default()
    };
    let model = load(&ModelSpec::new(&model_path).with_settings(explicit)).unwrap();
    assert!(model.normalization().is_identity());
    assert_eq!(model.kind(), OutputKind::Probabilities);

    std::fs::write(ModelSettings::sidecar_path(&model_path), "means: 0.1\n").unwrap();
    let err = load_err(&ModelSpec::new(&model_path));
    assert!(matches!(err, RuntimeError::Sidecar { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("torchscript_cnn.onnx.yaml"), "{message}");
    assert!(message.contains("means"), "{message}");
}

#[test]
fn external_data_beside_the_model_is_found_wherever_the_model_is() {
    let dir = tempfile::tempdir().unwrap();
    let model_path = copy_to(dir.path(), &fixture("external_data/model.onnx"));
    copy_to(dir.path(), &fixture("external_data/model.onnx.data"));
    let mut model = load(&ModelSpec::new(&model_path)).unwrap();
    assert_eq!(
        model.run(mnist_test_images(2).view()).unwrap().dim(),
        (2, 10)
    );
}

#[test]
fn a_missing_external_data_file_is_named() {
    let path = fixture("external_missing/model.onnx");
    let err = load_err(&ModelSpec::new(&path));
    match &err {
        RuntimeError::ExternalDataMissing { path: p, data_path } => {
            assert_eq!(p, &path);
            assert_eq!(data_path, &fixture("external_missing/model.onnx.data"));
        }
        other => panic!("{other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("external_missing/model.onnx.data"),
        "{message}"
    );
    assert!(err.is_user_error());
}

#[test]
fn missing_corrupt_and_truncated_files_give_clear_errors() {
    let missing = fixture("no_such_teacher.onnx");
    let err = load_err(&ModelSpec::new(&missing));
    assert!(matches!(err, RuntimeError::ModelNotFound { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("model file {} does not exist", missing.display())
    );

    for name in ["corrupt.onnx", "truncated.onnx"] {
        let err = load_err(&ModelSpec::new(fixture(name)));
        assert!(
            matches!(err, RuntimeError::ModelLoad { .. }),
            "{name}: {err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(name), "{message}");
        assert!(message.contains("Protobuf parsing failed"), "{message}");
        assert!(message.contains("corrupt or truncated"), "{message}");
        assert!(err.is_user_error());
    }

    let err = load_err(&ModelSpec::new(fixture("external_data")));
    assert!(err.to_string().contains("is a directory"), "{err}");
}

#[test]
fn non_finite_outputs_are_refused_naming_model_and_row() {
    let mut model = load(&ModelSpec::new(fixture("nan_output.onnx"))).unwrap();
    let err = model.run(mnist_test_images(2).view()).unwrap_err();
    match &err {
        RuntimeError::NonFinite {
            row, class, value, ..
        } => {
            assert_eq!((*row, *class), (0, 3));
            assert!(value.is_nan());
        }
        other => panic!("{other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains("nan_output.onnx"), "{message}");
    assert!(message.contains("row 0"), "{message}");
}

#[test]
fn a_width_mismatch_names_model_shapes_and_setting() {
    let mut model = load(&ModelSpec::new(fixture("wide_input.onnx"))).unwrap();
    assert_eq!(model.input_width(), Some(785));
    let err = model.expect_input_width(784).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("wide_input.onnx"), "{message}");
    assert!(message.contains("[N, 785]"), "{message}");
    assert!(message.contains("784 features"), "{message}");
    assert!(message.contains("`input`"), "{message}");
    assert!(err.is_user_error());
    let err = model.run(mnist_test_images(1).view()).unwrap_err();
    assert!(
        matches!(err, RuntimeError::InputWidth { found: 784, .. }),
        "{err:?}"
    );

    let image = load(&ModelSpec::new(fixture("torchscript_cnn.onnx"))).unwrap();
    let message = image.expect_input_width(785).unwrap_err().to_string();
    assert!(message.contains("[N, 1, 28, 28]"), "{message}");
    assert!(message.contains("image_shape"), "{message}");
}

#[test]
fn the_class_count_is_read_from_the_model() {
    let mut model = load(&ModelSpec::new(fixture("classes12.onnx"))).unwrap();
    assert_eq!(model.classes(), Some(12));
    assert_eq!(
        model.run(mnist_test_images(2).view()).unwrap().dim(),
        (2, 12)
    );
}

#[test]
fn settings_that_contradict_the_model_are_refused() {
    let cases: [(&str, ModelSettings, &str); 4] = [
        (
            "torchscript_cnn.onnx",
            ModelSettings {
                output: Some("logits".into()),
                ..ModelSettings::default()
            },
            "has no output named `logits`; its outputs are: `output`",
        ),
        (
            "torchscript_cnn.onnx",
            ModelSettings {
                input: Some("pixels".into()),
                ..ModelSettings::default()
            },
            "has no input named `pixels`",
        ),
        (
            "torchscript_cnn.onnx",
            ModelSettings {
                image_shape: Some([1, 14, 56]),
                ..ModelSettings::default()
            },
            "image_shape",
        ),
        (
            "skl_logreg.onnx",
            ModelSettings {
                output: Some("label".into()),
                ..ModelSettings::default()
            },
            "output `label` is Tensor<i64>",
        ),
    ];
    for (file, settings, needle) in cases {
        let err = load_err(&ModelSpec::new(fixture(file)).with_settings(settings));
        let message = err.to_string();
        assert!(message.contains(needle), "{file}: {message}");
        assert!(message.contains(file), "{file}: {message}");
        assert!(err.is_user_error());
    }
}
