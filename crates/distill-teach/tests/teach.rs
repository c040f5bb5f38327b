//! The `distill-teach` binary on the real ONNX fixtures in `tests/fixtures/teachers/` (made by its
//! `make_fixtures.py`) and small slices of MNIST, each run in a fresh temporary folder.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use distill_store::{OutputKind, SoftTargets, read_store};
use serde_json::Value;

/// Absolute tolerance against ONNX Runtime 1.31.1's outputs recorded in `expected.json` (other CPUs
/// and thread counts may differ in the last bits).
const TOLERANCE: f32 = 1e-5;

const CNN_NORM: [&str; 4] = ["--mean", "0.1307", "--std", "0.3081"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> String {
    repo()
        .join("tests/fixtures/teachers")
        .join(name)
        .display()
        .to_string()
}

fn mnist() -> String {
    repo().join("data/mnist").display().to_string()
}

/// Runs `distill-teach` in `dir` with `args`, on the MNIST folder of the repository.
fn teach(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_distill-teach"))
        .current_dir(dir)
        .args(["--data", &mnist()])
        .args(args)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn succeed(dir: &Path, args: &[&str]) {
    let out = teach(dir, args);
    assert!(
        out.status.success(),
        "distill-teach {args:?} failed: {}",
        stderr(&out)
    );
}

/// Every file and folder under `dir`, hidden ones included.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                found.extend(files_under(&path));
            }
            found.push(path);
        }
    }
    found
}

/// The arguments that load every valid fixture at once, with the normalisation the CNNs need.
fn all_valid_teachers() -> Vec<String> {
    let mut args = Vec::new();
    for (file, extra) in [
        ("torchscript_cnn.onnx", &CNN_NORM[..]),
        ("dynamo_cnn.onnx", &CNN_NORM[..]),
        ("skl_logreg.onnx", &[][..]),
        ("skl_logreg_zipmap.onnx", &[][..]),
        ("fixed_batch1.onnx", &[][..]),
        ("external_data/model.onnx", &["--name", "external_data"][..]),
    ] {
        args.push("--model".to_string());
        args.push(fixture(file));
        args.extend(extra.iter().map(|s| s.to_string()));
    }
    args
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn every_fixture_in_one_store_matches_onnx_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = all_valid_teachers();
    args.extend(
        [
            "--split",
            "test",
            "--limit",
            "8",
            "--batch",
            "3",
            "--out",
            "soft.parquet",
        ]
        .map(String::from),
    );
    let out = teach(dir.path(), &strs(&args));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("fixed batch size of 1"),
        "no speed warning for fixed_batch1: {}",
        stderr(&out)
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("8 rows x 6 teachers x 10 classes"),
        "{report}"
    );

    let store = read_store(&dir.path().join("soft.parquet")).unwrap();
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap();
    assert_eq!(store.index, (0..8).collect::<Vec<u64>>());
    let labels: Vec<Option<u32>> = expected["test_labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| Some(l.as_u64().unwrap() as u32))
        .collect();
    assert_eq!(store.labels, labels);
    assert_eq!(store.meta.classes, 10);
    assert_eq!(store.meta.split, "test");
    assert_eq!(store.meta.transform, "split=test, limit=8");
    assert_eq!(store.meta.dataset, mnist());
    assert_eq!(store.meta.shard, None);

    let fixtures = expected["fixtures"].as_array().unwrap();
    assert_eq!(fixtures.len(), 6);
    for f in fixtures {
        let name = f["name"].as_str().unwrap();
        let t = store
            .meta
            .teachers
            .iter()
            .position(|t| t.name == name)
            .unwrap_or_else(|| panic!("no column '{name}' in {:?}", store.meta.teachers));
        let meta = &store.meta.teachers[t];
        let file = fixture(f["file"].as_str().unwrap());
        assert_eq!(meta.path, file);
        assert_eq!(
            meta.sha256,
            distill_core::sha256_file(Path::new(&file)).unwrap()
        );
        let probabilities = f["output_kind"] == "probabilities";
        if probabilities {
            assert_eq!(meta.kind, OutputKind::Probabilities, "{name}");
            assert_eq!(
                meta.prob_floor,
                Some(0.0),
                "{name}: probabilities are stored unfloored"
            );
        } else {
            assert_eq!(meta.kind, OutputKind::Logits, "{name}");
            assert_eq!(meta.prob_floor, None);
        }
        assert_values(&store, t, &f["values"], probabilities, name);
    }
}

/// Compares teacher `t`'s stored column with ONNX Runtime's values (probabilities after `exp`).
fn assert_values(store: &SoftTargets, t: usize, expected: &Value, probabilities: bool, name: &str) {
    let rows = expected.as_array().unwrap();
    assert_eq!(store.logits[t].nrows(), rows.len());
    for (i, row) in rows.iter().enumerate() {
        for (j, v) in row.as_array().unwrap().iter().enumerate() {
            let stored = store.logits[t][[i, j]];
            let got = if probabilities { stored.exp() } else { stored };
            let want = v.as_f64().unwrap() as f32;
            assert!(
                (got - want).abs() <= TOLERANCE,
                "{name}: [{i}, {j}] is {got}, ONNX Runtime gave {want}"
            );
        }
    }
}

#[test]
fn three_shards_concatenate_to_the_unsharded_store() {
    let dir = tempfile::tempdir().unwrap();
    let common = [
        "--model",
        &fixture("torchscript_cnn.onnx"),
        "--mean",
        "0.1307",
        "--std",
        "0.3081",
        "--model",
        &fixture("skl_logreg.onnx"),
        "--split",
        "test",
        "--limit",
        "50",
        "--exclude-classes",
        "3",
        "--batch",
        "16",
    ]
    .map(String::from);
    let run = |extra: &[&str]| {
        let mut args = strs(&common);
        args.extend_from_slice(extra);
        succeed(dir.path(), &args);
    };
    run(&["--out", "whole.parquet"]);
    for k in 1..=3 {
        run(&["--out", "parts", "--shard", &format!("{k}/3")]);
    }
    let whole = read_store(&dir.path().join("whole.parquet")).unwrap();
    let parts = read_store(&dir.path().join("parts")).unwrap();
    assert!(whole.len() < 50 && whole.len() > 40, "{}", whole.len());
    assert!(whole.labels.iter().all(|&l| l != Some(3)));
    assert_eq!(parts.index, whole.index);
    assert_eq!(parts.labels, whole.labels);
    assert_eq!(parts.meta, whole.meta);
    for (a, b) in parts.logits.iter().zip(&whole.logits) {
        let diff = (a - b).mapv(f32::abs).fold(0.0f32, |m, &v| m.max(v));
        assert!(diff <= TOLERANCE, "parts differ from the whole by {diff}");
    }
    let mut sizes = Vec::new();
    for k in 1..=3 {
        let part = read_store(&dir.path().join(format!("parts/part-{k}-of-3.parquet"))).unwrap();
        let shard = part.meta.shard.clone().unwrap();
        assert_eq!(
            (shard.part, shard.parts, shard.total_rows),
            (k, 3, whole.len())
        );
        sizes.push(part.len());
    }
    assert!(
        sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
        "{sizes:?}"
    );

    std::fs::remove_file(dir.path().join("parts/part-2-of-3.parquet")).unwrap();
    let e = read_store(&dir.path().join("parts"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("parts 2 of 3 are missing"), "{e}");
}

/// Each bad input: exit code 2, a message holding every `needles` entry, and nothing in the output
/// folder, not even a temporary file.
#[test]
fn bad_inputs_fail_with_exit_2_and_leave_no_file() {
    let ok = fixture("torchscript_cnn.onnx");
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            vec!["--model".into(), fixture("corrupt.onnx")],
            vec!["cannot load ONNX model", "corrupt.onnx"],
        ),
        (
            vec!["--model".into(), fixture("truncated.onnx")],
            vec!["cannot load ONNX model", "truncated.onnx"],
        ),
        (
            vec!["--model".into(), fixture("wide_input.onnx")],
            vec!["wide_input.onnx", "785", "784 features"],
        ),
        (
            vec![
                "--model".into(),
                ok.clone(),
                "--model".into(),
                fixture("classes12.onnx"),
            ],
            vec![
                "teacher 'classes12'",
                "12 classes",
                "[N, 12]",
                "[N, 10]",
                "output",
            ],
        ),
        (
            vec!["--model".into(), fixture("classes12.onnx")],
            vec!["classes12.onnx", "has 10 classes"],
        ),
        (
            vec!["--model".into(), fixture("nan_output.onnx")],
            vec!["nan_output.onnx", "non-finite", "NaN"],
        ),
        (
            vec!["--model".into(), fixture("external_missing/model.onnx")],
            vec!["external_missing", "model.onnx.data", "does not exist"],
        ),
        (
            vec![
                "--model".into(),
                ok.clone(),
                "--output".into(),
                "scores".into(),
            ],
            vec!["torchscript_cnn.onnx", "no output named `scores`", "output"],
        ),
        (
            vec!["--model".into(), ok.clone(), "--shard".into(), "4/3".into()],
            vec!["--shard", "4/3", "K from 1 to N"],
        ),
        (
            vec!["--mean".into(), "0.5".into(), "--model".into(), ok.clone()],
            vec!["--mean", "before any --model"],
        ),
    ];
    for (args, needles) in cases {
        let dir = tempfile::tempdir().unwrap();
        let out_dir = dir.path().join("out");
        std::fs::create_dir(&out_dir).unwrap();
        let mut all = strs(&args);
        all.extend(["--split", "test", "--limit", "20"]);
        let sharded = args.iter().any(|a| a == "--shard");
        all.extend(["--out", if sharded { "out" } else { "out/soft.parquet" }]);
        let out = teach(dir.path(), &all);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("error: "), "{args:?}: {err}");
        for needle in needles {
            assert!(err.contains(needle), "{args:?}: '{needle}' not in: {err}");
        }
        assert_eq!(files_under(&out_dir), Vec::<PathBuf>::new(), "{args:?}");
        assert_eq!(files_under(dir.path()), vec![out_dir], "{args:?}");
    }
}

/// Without a usable NVIDIA GPU, `--provider cuda` is an error (exit 2, no file); with one (a
/// `make setup CUDA=1` machine) the same run either works on CUDA or says why CUDA is unusable.
#[test]
fn provider_cuda_without_a_gpu_is_a_clear_error() {
    let gpu = Command::new("nvidia-smi")
        .arg("-L")
        .output()
        .is_ok_and(|o| o.status.success());
    let dir = tempfile::tempdir().unwrap();
    let out = teach(
        dir.path(),
        &[
            "--model",
            &fixture("skl_logreg.onnx"),
            "--split",
            "test",
            "--limit",
            "5",
            "--provider",
            "cuda",
            "--out",
            "soft.parquet",
        ],
    );
    let err = stderr(&out);
    if gpu && out.status.success() {
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(report.contains(" cuda "), "{report}");
        return;
    }
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("error: CUDA execution provider is not available")
            && err.contains("--provider cpu"),
        "{err}"
    );
    assert!(files_under(dir.path()).is_empty());
}

#[test]
fn missing_output_folder_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = teach(
        dir.path(),
        &[
            "--model",
            &fixture("skl_logreg.onnx"),
            "--limit",
            "5",
            "--out",
            "nowhere/soft.parquet",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("the output folder nowhere does not exist"),
        "{}",
        stderr(&out)
    );
    assert!(files_under(dir.path()).is_empty());
}

/// Wrong top-1 predictions of stored teacher `t`, counted from the store itself.
fn store_errors(store: &SoftTargets, t: usize) -> usize {
    store.logits[t]
        .rows()
        .into_iter()
        .zip(&store.labels)
        .filter(|(row, label)| {
            let top = row
                .iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |b, (c, &v)| if v > b.1 { (c, v) } else { b },
                );
            Some(top.0 as u32) != **label
        })
        .count()
}

#[test]
fn each_teachers_error_rate_is_reported_and_wrong_normalisation_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (cnn, dynamo) = (fixture("torchscript_cnn.onnx"), fixture("dynamo_cnn.onnx"));
    // Right: the CNNs with the normalisation they were trained with. No warning.
    let mut args = vec!["--limit", "500", "--out", "ok.parquet", "--model", &cnn];
    args.extend(CNN_NORM);
    args.extend(["--model", &dynamo]);
    args.extend(CNN_NORM);
    let out = teach(d, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    assert!(!report.contains("warning"), "{report}");
    let store = read_store(&d.join("ok.parquet")).unwrap();
    for (t, name) in ["torchscript_cnn", "dynamo_cnn"].into_iter().enumerate() {
        let e = store_errors(&store, t);
        assert!(
            e < 25,
            "{name}: {e} errors of 500 with the right normalisation"
        );
        let line = report
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{report}"));
        let shown = format!("{e} ({:.2}%)", 100.0 * e as f64 / 500.0);
        assert!(line.contains(&shown), "want {shown} in: {line}");
    }

    // Wrong: the same CNN with a shifted mean and std (far worse than the others), and with
    // its pixels negated (scale -1: near chance).
    let mut args = vec!["--limit", "500", "--out", "bad.parquet", "--model", &cnn];
    args.extend(CNN_NORM);
    args.extend(["--name", "good", "--model", &dynamo, "--name", "shifted"]);
    args.extend([
        "--mean", "0.5", "--std", "0.05", "--model", &cnn, "--name", "negated",
    ]);
    args.extend(["--scale", "-1", "--mean", "0.1307", "--std", "0.3081"]);
    let out = teach(d, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let store = read_store(&d.join("bad.parquet")).unwrap();
    let rate = |t: usize| 100.0 * store_errors(&store, t) as f64 / 500.0;
    let (good, shifted, negated) = (rate(0), rate(1), rate(2));
    // The conditions the warnings stand for hold on these rows.
    assert!(
        shifted > 2.0 * good && shifted > good + 5.0 && shifted < 72.0,
        "{shifted} {good}"
    );
    assert!(negated > 72.0, "{negated}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 2, "{err}");
    assert!(
        warnings[0].contains(&format!("teacher 'shifted' errs on {shifted:.1}%"))
            && warnings[0].contains(&format!("against {good:.1}% for 'good', the best"))
            && warnings[0].contains("mean 0.5, std 0.05, scale 1")
            && warnings[0].contains("`mean`, `std` and `scale`"),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[1].contains(&format!("teacher 'negated' errs on {negated:.1}%"))
            && warnings[1].contains("near chance (90.0% for 10 classes)")
            && warnings[1].contains("scale -1"),
        "{}",
        warnings[1]
    );
    // The report (what `distill run` keeps in its lock) carries them too.
    for w in warnings {
        assert!(report.contains(w), "{w} not in:\n{report}");
    }
}

/// `--top-k 3` on a logits teacher and a probability teacher: the store says so in its metadata,
/// three parts read back as the whole, and at T = 1 the expanded rows give exactly the full
/// store's probabilities for the kept classes and its total for the others (softmax computed here
/// in f64 from the full store, within 1e-5 relative: the f32 logits of the two stores are the
/// same numbers, only the rest's log is rounded to f32).
#[test]
fn top_k_store_is_exact_at_t1_against_the_full_store() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cnn = fixture("torchscript_cnn.onnx");
    let logreg = fixture("skl_logreg.onnx");
    let mut common: Vec<&str> = vec!["--model", &cnn];
    common.extend(CNN_NORM);
    common.extend(["--model", &logreg, "--limit", "120"]);
    let with = |extra: &[&str]| -> Vec<String> {
        common.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    succeed(d, &strs(&with(&["--out", "full.parquet"])));
    succeed(d, &strs(&with(&["--top-k", "3", "--out", "top3.parquet"])));
    for k in 1..=3 {
        let shard = format!("{k}/3");
        succeed(
            d,
            &strs(&with(&[
                "--top-k", "3", "--shard", &shard, "--out", "parts",
            ])),
        );
    }
    let full = read_store(&d.join("full.parquet")).unwrap();
    let top = read_store(&d.join("top3.parquet")).unwrap();
    let parts = read_store(&d.join("parts")).unwrap();
    assert_eq!(top.meta.top_k, Some(3));
    assert_eq!(top.meta.schema_version, 2);
    assert_eq!(top.meta.teachers, full.meta.teachers);
    assert_eq!(top.meta.teachers[1].kind, OutputKind::Probabilities);
    assert_eq!(parts.logits, top.logits);
    assert_eq!(parts.index, top.index);
    let softmax = |z: ndarray::ArrayView1<f32>| -> Vec<f64> {
        let m = z
            .iter()
            .map(|&v| f64::from(v))
            .fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = z.iter().map(|&v| (f64::from(v) - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.into_iter().map(|v| v / s).collect()
    };
    for (f, t) in full.logits.iter().zip(&top.logits) {
        for (zf, zt) in f.rows().into_iter().zip(t.rows()) {
            let (pf, pt) = (softmax(zf), softmax(zt));
            // The three largest of the full row are kept as they are.
            let mut order: Vec<usize> = (0..10).collect();
            order.sort_by(|&a, &b| zf[b].total_cmp(&zf[a]).then(a.cmp(&b)));
            for &c in &order[..3] {
                assert_eq!(zt[c], zf[c]);
                assert!(
                    (pf[c] - pt[c]).abs() <= 1e-5 * pf[c],
                    "{} vs {}",
                    pf[c],
                    pt[c]
                );
            }
            let rest = |p: &[f64]| order[3..].iter().map(|&c| p[c]).sum::<f64>();
            let (rf, rt) = (rest(&pf), rest(&pt));
            assert!((rf - rt).abs() <= 1e-5 * rf.max(1e-30), "rest {rf} vs {rt}");
        }
    }
    // The report says which layout it wrote.
    let out = teach(d, &strs(&with(&["--top-k", "5", "--out", "top5.parquet"])));
    assert!(String::from_utf8_lossy(&out.stdout).contains("(top-5 layout)"));
}

/// With stderr going to a file (not a terminal), progress comes as plain lines while the teachers
/// run, not only at the end: here one line per batch (`DISTILL_PROGRESS_SECONDS=0`), each with the
/// rows done so far, then the last line.
#[test]
fn progress_goes_to_a_log_as_lines_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let out = Command::new(env!("CARGO_BIN_EXE_distill-teach"))
        .current_dir(dir.path())
        .env("DISTILL_PROGRESS_SECONDS", "0")
        .args(["--data", &mnist(), "--limit", "1000", "--batch", "250"])
        .args(["--model", &fixture("skl_logreg.onnx")])
        .args(["--out", "store.parquet"])
        .stderr(std::fs::File::create(&log).unwrap())
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(out.status.success(), "{text}");
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("teach: ")).collect();
    assert!(lines.len() >= 4, "{text}");
    assert!(
        lines[0].starts_with("teach: 250/1,000 rows (25%)"),
        "{text}"
    );
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with("teach: 1,000/1,000 rows in "),
        "{text}"
    );
    let quiet = teach(
        dir.path(),
        &[
            "--limit",
            "300",
            "--model",
            &fixture("skl_logreg.onnx"),
            "--out",
            "q.parquet",
            "--quiet",
        ],
    );
    assert!(quiet.status.success());
    assert!(!stderr(&quiet).contains("teach: "), "{}", stderr(&quiet));
}
