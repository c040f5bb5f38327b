//! The bad-input suite: one row per mistake a user can make, over every stage binary and
//! `distill run`. Each row states the command, the exit code it must end with, a fragment the
//! message must contain, and — for every row — that the run left nothing behind: no output, no
//! hidden temporary file, no sibling (checkpoint, metrics, heatmap), and no input changed.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const MNIST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist");

/// `distill STAGE` runs the same code as the stage binary `distill-STAGE` (its `main_from`),
/// and is always built fresh with this test.
fn stage_command(stage: &str) -> (PathBuf, Vec<String>) {
    (
        PathBuf::from(env!("CARGO_BIN_EXE_distill")),
        vec![stage.to_string()],
    )
}

struct Outcome {
    code: i32,
    stderr: String,
    stdout: String,
}

fn run(dir: &Path, program: &str, args: &[String]) -> Outcome {
    let (exe, mut argv) = if program == "distill" {
        (PathBuf::from(env!("CARGO_BIN_EXE_distill")), Vec::new())
    } else {
        stage_command(program)
    };
    argv.extend(args.iter().cloned());
    let out = Command::new(exe)
        .current_dir(dir)
        .args(&argv)
        .output()
        .unwrap();
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

/// Every file under `dir` (hidden ones included) with its size and a hash of its bytes; a symlink
/// by its target and a FIFO by its kind (neither is followed or read).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, String)> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                files.insert(
                    path.strip_prefix(dir).unwrap().to_path_buf(),
                    (0, format!("symlink to {}", target.display())),
                );
            } else if !meta.is_dir() && !meta.is_file() {
                files.insert(
                    path.strip_prefix(dir).unwrap().to_path_buf(),
                    (0, "not a file".to_string()),
                );
            } else if path.is_dir() {
                files.insert(
                    path.strip_prefix(dir).unwrap().to_path_buf(),
                    (0, "folder".to_string()),
                );
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                files.insert(
                    path.strip_prefix(dir).unwrap().to_path_buf(),
                    (bytes.len() as u64, distill_core::sha256_hex(&bytes)),
                );
            }
        }
    }
    files
}

/// The files every row may read: a small model, a store made from it, and broken copies.
fn fixtures(d: &Path) {
    let ok = |o: Outcome, what: &str| {
        assert_eq!(o.code, 0, "{what} failed:\n{}\n{}", o.stdout, o.stderr);
    };
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    ok(
        run(
            d,
            "train",
            &s(&[
                "--data",
                MNIST,
                "--limit",
                "300",
                "--epochs",
                "1",
                "--hidden",
                "16",
                "--validation",
                "0",
                "--test-split",
                "none",
                "--out",
                "model.onnx",
            ]),
        ),
        "training the fixture model",
    );
    for f in ["model.ckpt", "model.metrics.csv"] {
        std::fs::remove_file(d.join(f)).unwrap();
    }
    ok(
        run(
            d,
            "train",
            &s(&[
                "--data",
                "synthetic:classes=10,groups=2,dim=20,train=200,test=50,seed=1",
                "--epochs",
                "1",
                "--hidden",
                "8",
                "--validation",
                "0",
                "--test-split",
                "none",
                "--out",
                "narrow.onnx",
            ]),
        ),
        "training the narrow model",
    );
    for f in ["narrow.ckpt", "narrow.metrics.csv"] {
        std::fs::remove_file(d.join(f)).unwrap();
    }
    ok(
        run(
            d,
            "teach",
            &s(&[
                "--model",
                "model.onnx",
                "--data",
                MNIST,
                "--limit",
                "200",
                "--out",
                "store.parquet",
            ]),
        ),
        "teaching the fixture store",
    );
    // A folder of parts that mixes layouts: part 1 top-3, part 2 full.
    for (shard, top_k) in [("1/2", Some("3")), ("2/2", None)] {
        let mut args = vec![
            "--model",
            "model.onnx",
            "--data",
            MNIST,
            "--limit",
            "200",
            "--shard",
            shard,
            "--out",
            "mixed",
        ];
        if let Some(k) = top_k {
            args.extend(["--top-k", k]);
        }
        ok(
            run(d, "teach", &s(&args)),
            "teaching a part of the mixed store",
        );
    }
    let store = std::fs::read(d.join("store.parquet")).unwrap();
    std::fs::write(d.join("trunc.parquet"), &store[..store.len() / 2]).unwrap();
    // The store with its file metadata saying 12 classes over 10-wide teacher columns.
    let key = b"\"classes\":10";
    let at: Vec<usize> = (0..store.len())
        .filter(|&i| store[i..].starts_with(key))
        .collect();
    assert_eq!(at.len(), 1, "the store's metadata holds one \"classes\":10");
    let mut classes12 = store.clone();
    classes12[at[0] + key.len() - 1] = b'2';
    std::fs::write(d.join("classes12.parquet"), &classes12).unwrap();
    std::fs::write(d.join("store-copy.onnx"), &store).unwrap();
    std::fs::write(d.join("garbage.onnx"), b"not a model at all").unwrap();
    std::fs::write(d.join("afile"), b"a file, not a folder").unwrap();
    std::fs::create_dir(d.join("folder.onnx")).unwrap();
    std::fs::create_dir(d.join("folder.parquet")).unwrap();
    std::fs::create_dir(d.join("folder.yaml")).unwrap();
    std::fs::create_dir(d.join("folder.json")).unwrap();
    std::fs::write(d.join("binary.yaml"), [0u8, 159, 146, 150, 255, 0, 1]).unwrap();
    std::fs::write(d.join("syntax.yaml"), "stages:\n  a: [unclosed\n").unwrap();
    std::fs::write(
        d.join("unknown-kind.yaml"),
        "stages:\n  a:\n    kind: compile\n    args: {out: x.onnx}\n",
    )
    .unwrap();
    std::fs::write(
        d.join("unknown-flag.yaml"),
        "stages:\n  a:\n    kind: train\n    args:\n      out: o/a.onnx\n      learning-rate: 0.1\n",
    )
    .unwrap();
    std::fs::write(
        d.join("late-alpha.yaml"),
        format!(
            "stages:\n  teacher:\n    kind: train\n    args:\n      data: {MNIST}\n      limit: 100\n      epochs: 1\n      out: o/t.onnx\n  teach:\n    kind: teach\n    args:\n      model: o/t.onnx\n      data: {MNIST}\n      limit: 100\n      out: o/s.parquet\n  student:\n    kind: train\n    args:\n      data: {MNIST}\n      limit: 100\n      soft-targets: o/s.parquet\n      alpha: 1.5\n      out: o/student.onnx\n"
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("late-cluster.yaml"),
        "stages:\n  teach:\n    kind: teach\n    args:\n      model: model.onnx\n      limit: 100\n      out: o/s.parquet\n  cluster:\n    kind: cluster\n    args:\n      soft-targets: o/s.parquet\n      count: 0\n      out: o/subsets.yaml\n",
    )
    .unwrap();
    std::fs::write(
        d.join("same-out.yaml"),
        "stages:\n  a:\n    kind: train\n    args:\n      limit: 100\n      out: o/a.onnx\n  b:\n    kind: train\n    args:\n      limit: 100\n      out: o/a.onnx\n",
    )
    .unwrap();
    std::fs::write(
        d.join("self-dep.yaml"),
        "stages:\n  a:\n    kind: cmd\n    cmd: echo x >> notes.txt\n    deps: [notes.txt]\n    outs: [notes.txt]\n",
    )
    .unwrap();
    std::fs::write(
        d.join("plain.yaml"),
        "stages:\n  a:\n    kind: cmd\n    cmd: echo hi\n",
    )
    .unwrap();
    hostile_fixtures(d);
}

/// Inputs that are not what they seem: devices and FIFOs behind input names, a model with an
/// external-data file and a sidecar, folders reached through a symlink, and pipelines whose
/// stages would write what the run reads.
fn hostile_fixtures(d: &Path) {
    use std::os::unix::fs::symlink;
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/teachers");
    for f in ["model.onnx", "model.onnx.data"] {
        std::fs::create_dir_all(d.join("ext")).unwrap();
        std::fs::copy(
            fixtures.join("external_data").join(f),
            d.join("ext").join(f),
        )
        .unwrap();
    }
    std::fs::copy(d.join("model.onnx"), d.join("sc.onnx")).unwrap();
    symlink("/dev/zero", d.join("sc.onnx.yaml")).unwrap();
    std::fs::copy(d.join("model.onnx"), d.join("side.onnx")).unwrap();
    std::fs::write(d.join("side.onnx.yaml"), "kind: logits\n").unwrap();
    for name in ["zero.onnx", "zero.json", "zero.yaml", "zero.parquet"] {
        symlink("/dev/zero", d.join(name)).unwrap();
    }
    for name in ["fifo.onnx", "fifo.json", "fifo.parquet", "fifo.dep"] {
        let ok = Command::new("mkfifo")
            .arg(d.join(name))
            .status()
            .unwrap()
            .success();
        assert!(ok, "mkfifo {name}");
    }
    std::fs::create_dir(d.join("idxfifo")).unwrap();
    let ok = Command::new("mkfifo")
        .arg(d.join("idxfifo/train-images-idx3-ubyte"))
        .status()
        .unwrap()
        .success();
    assert!(ok, "mkfifo idxfifo");
    std::fs::create_dir(d.join("idxloop")).unwrap();
    symlink(
        "train-images-idx3-ubyte",
        d.join("idxloop/train-images-idx3-ubyte"),
    )
    .unwrap();
    // A gzip'd IDX file whose header declares one 1x1 image and which inflates to 16 MiB.
    std::fs::create_dir(d.join("gzbomb")).unwrap();
    let mut images = vec![0u8, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1];
    images.resize(16 + (16 << 20), 0);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &images).unwrap();
    std::fs::write(
        d.join("gzbomb/train-images-idx3-ubyte.gz"),
        gz.finish().unwrap(),
    )
    .unwrap();
    std::fs::write(
        d.join("gzbomb/train-labels-idx1-ubyte"),
        [0u8, 0, 8, 1, 0, 0, 0, 1, 0],
    )
    .unwrap();
    std::fs::create_dir_all(d.join("idxdir/train-images-idx3-ubyte")).unwrap();
    for folder in ["idxfifo", "idxloop", "idxdir"] {
        std::fs::write(
            d.join(folder).join("train-labels-idx1-ubyte"),
            [0u8, 0, 8, 1, 0, 0, 0, 1, 0],
        )
        .unwrap();
    }
    std::fs::write(d.join("m.json"), "{}").unwrap();
    std::fs::write(
        d.join("log.metrics.csv"),
        "epoch,loss,train_error\n1,0.5,10\n",
    )
    .unwrap();
    std::fs::create_dir(d.join("sub")).unwrap();
    std::fs::write(d.join("sub/m.json"), "{}").unwrap();
    symlink("sub", d.join("sublink")).unwrap();
    let cmd = |name: &str, extra: &str| {
        std::fs::write(
            d.join(name),
            format!("stages:\n  a:\n    kind: cmd\n    cmd: echo hi\n{extra}"),
        )
        .unwrap();
    };
    std::fs::write(
        d.join("wdir-file.yaml"),
        "wdir: afile\nstages:\n  a:\n    kind: cmd\n    cmd: echo hi\n",
    )
    .unwrap();
    cmd("zero-dep.yaml", "    deps: [zero.onnx]\n");
    cmd("fifo-dep.yaml", "    deps: [fifo.dep]\n");
    cmd("root-dep.yaml", "    deps: [/]\n");
    cmd("dot-out.yaml", "    outs: [./]\n");
    cmd("nul-out.yaml", "    outs: [\"a\\0b\"]\n");
    cmd("lock-out.yaml", "    outs: [lock-out.lock]\n");
    std::fs::write(
        d.join("self-out.yaml"),
        "stages:\n  r:\n    kind: report\n    args: {train-log: log.metrics.csv, out: self-out.yaml}\n",
    )
    .unwrap();
    std::fs::write(
        d.join("linked-out.yaml"),
        "stages:\n  a:\n    kind: cmd\n    cmd: echo a\n    outs: [sub/x.txt]\n  \
         b:\n    kind: cmd\n    cmd: echo b\n    outs: [sublink/x.txt]\n",
    )
    .unwrap();
    std::fs::write(
        d.join("nested-out.yaml"),
        "stages:\n  a:\n    kind: cmd\n    cmd: echo a\n    outs: [o/]\n  \
         b:\n    kind: cmd\n    cmd: echo b\n    outs: [o/b.txt]\n",
    )
    .unwrap();
    std::fs::write(
        d.join("bomb.yaml"),
        "vars:\n  a: xxxxxxxxxxxxxxxx\n  b: ${a}${a}${a}${a}${a}${a}${a}${a}\n  \
         c: ${b}${b}${b}${b}${b}${b}${b}${b}\n  d: ${c}${c}${c}${c}${c}${c}${c}${c}\n  \
         e: ${d}${d}${d}${d}${d}${d}${d}${d}\n  f: ${e}${e}${e}${e}${e}${e}${e}${e}\n  \
         g: ${f}${f}${f}${f}${f}${f}${f}${f}\nstages:\n  a:\n    kind: cmd\n    cmd: echo ${g}\n",
    )
    .unwrap();
    trainer_fixtures(d);
}

/// What the rows of distill-train, distill-specialists and distill-cluster read: a checkpoint of two
/// epochs, class subsets of the fixture store, a generalist with a NaN weight, folders holding a
/// file that no manifest lists or a manifest.yaml of someone else's, and stores with an example
/// twice or a label beyond the class count.
fn trainer_fixtures(d: &Path) {
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let ok = |o: Outcome, what: &str| {
        assert_eq!(o.code, 0, "{what} failed:\n{}\n{}", o.stdout, o.stderr);
    };
    ok(
        run(
            d,
            "train",
            &s(&[
                "--data",
                MNIST,
                "--limit",
                "100",
                "--epochs",
                "2",
                "--hidden",
                "8",
                "--validation",
                "0",
                "--test-split",
                "none",
                "--out",
                "ck.onnx",
            ]),
        ),
        "training the checkpoint fixture",
    );
    for f in ["ck.onnx", "ck.metrics.csv"] {
        std::fs::remove_file(d.join(f)).unwrap();
    }
    ok(
        run(
            d,
            "cluster",
            &s(&[
                "--soft-targets",
                "store.parquet",
                "--count",
                "2",
                "--out",
                "subsets.yaml",
            ]),
        ),
        "clustering the fixture store",
    );
    let mut nan = distill_nn::onnx::load(&d.join("model.onnx")).unwrap().mlp;
    nan.layers[0].w[[0, 0]] = f32::NAN;
    distill_nn::onnx::save(&nan, &d.join("nan.onnx"), &[]).unwrap();
    std::fs::create_dir(d.join("userspec")).unwrap();
    std::fs::write(d.join("userspec/specialist-0.onnx"), b"the user's own file").unwrap();
    std::fs::create_dir(d.join("foreign")).unwrap();
    std::fs::write(d.join("foreign/manifest.yaml"), "shopping: [eggs, milk]\n").unwrap();
    for (name, index, label) in [
        ("dup.parquet", [0u64, 1, 2, 3, 4, 5, 6, 7, 8, 3], None),
        (
            "label77.parquet",
            [0u64, 1, 2, 3, 4, 5, 6, 7, 8, 9],
            Some(77u32),
        ),
    ] {
        write_store(d, name, &index, label);
    }
}

/// A 10-class store of one teacher over the examples `index`, labelled `k % 10` but for the last
/// row, which gets `last_label` when given.
fn write_store(d: &Path, name: &str, index: &[u64], last_label: Option<u32>) {
    use distill_store::{OutputKind, SCHEMA_VERSION, StoreMeta, StoreWriter, TeacherMeta};
    let meta = StoreMeta {
        schema_version: SCHEMA_VERSION,
        classes: 10,
        teachers: vec![TeacherMeta {
            name: "t".into(),
            path: "t.onnx".into(),
            sha256: "00".into(),
            kind: OutputKind::Logits,
            prob_floor: None,
        }],
        dataset: MNIST.into(),
        split: "train".into(),
        transform: "none".into(),
        tool_version: distill_core::TOOL_VERSION.into(),
        shard: None,
        layout: Default::default(),
        top_k: None,
    };
    let n = index.len();
    let mut labels: Vec<u32> = (0..n as u32).map(|k| k % 10).collect();
    if let Some(l) = last_label {
        labels[n - 1] = l;
    }
    let logits = ndarray::Array2::from_shape_fn((n, 10), |(i, j)| ((i * 7 + j * 3) % 11) as f32);
    let mut w = StoreWriter::create(&d.join(name), &meta).unwrap();
    w.write(index, Some(&labels), &[logits.view()]).unwrap();
    w.finish().unwrap();
}

/// One row of the suite: program, arguments (`{mnist}` is the MNIST folder), exit code, fragment.
type Row = (&'static str, &'static str, i32, &'static str);

const ROWS: &[Row] = &[
    // distill-train: values
    (
        "train",
        "--epochs 0 --out m.onnx",
        2,
        "--epochs must be at least 1",
    ),
    (
        "train",
        "--batch 0 --out m.onnx",
        2,
        "--batch must be at least 1",
    ),
    (
        "train",
        "--soft-targets store.parquet --temperature -1 --out m.onnx",
        2,
        "--temperature -1",
    ),
    (
        "train",
        "--soft-targets store.parquet --temperature 0 --out m.onnx",
        2,
        "--temperature 0",
    ),
    (
        "train",
        "--soft-targets store.parquet --alpha 1.5 --out m.onnx",
        2,
        "--alpha 1.5",
    ),
    (
        "train",
        "--alpha 0.5 --out m.onnx",
        2,
        "give --soft-targets",
    ),
    ("train", "--fraction 0 --out m.onnx", 2, "--fraction 0"),
    ("train", "--fraction 1.5 --out m.onnx", 2, "--fraction 1.5"),
    (
        "train",
        "--hidden 0 --out m.onnx",
        2,
        "--hidden widths must be above zero",
    ),
    ("train", "--hidden 8,x --out m.onnx", 2, "--hidden"),
    ("train", "--out m.txt", 2, "must end in .onnx"),
    ("train", "--optimizer lbfgs --out m.onnx", 2, "--optimizer"),
    ("train", "--schedule wobble --out m.onnx", 2, "--schedule"),
    (
        "train",
        "--bias-adjust 3=abc --out m.onnx",
        2,
        "--bias-adjust",
    ),
    (
        "train",
        "--limit 100 --epochs 1 --bias-adjust auto --out m.onnx",
        2,
        "--exclude-classes",
    ),
    ("train", "--split valid --out m.onnx", 2, "--split"),
    (
        "train",
        "--only-classes x --out m.onnx",
        2,
        "--only-classes",
    ),
    (
        "train",
        "--limit 100 --only-classes 12 --out m.onnx",
        2,
        "--only-classes: class 12 does not exist in the data",
    ),
    (
        "train",
        "--limit 100 --exclude-classes 10 --out m.onnx",
        2,
        "--exclude-classes: class 10 does not exist in the data",
    ),
    (
        "eval",
        "--model model.onnx --limit 50 --only-classes 77 --out e.json",
        2,
        "--only-classes: class 77 does not exist in the data",
    ),
    (
        "train",
        "--limit 100 --soft-targets classes12.parquet --out m.onnx",
        2,
        "classes12.parquet: teacher column 'model' holds 10 values per row, but the store's \
         metadata says `classes: 12`",
    ),
    (
        "cluster",
        "--soft-targets classes12.parquet --count 2 --out c.yaml",
        2,
        "classes12.parquet: teacher column 'model' holds 10 values per row",
    ),
    ("train", "--temperature", 2, "--temperature"),
    ("train", "--bogus 1", 2, "--bogus"),
    // distill-train: files
    (
        "train",
        "--limit 100 --out folder.onnx",
        2,
        "existing folder",
    ),
    (
        "train",
        "--limit 100 --out nowhere/m.onnx",
        2,
        "does not exist",
    ),
    (
        "train",
        "--limit 100 --out afile/m.onnx",
        2,
        "is a file, not a folder",
    ),
    (
        "train",
        "--limit 200 --soft-targets store-copy.onnx --out store-copy.onnx",
        2,
        "would destroy it",
    ),
    (
        "train",
        "--limit 100 --soft-targets missing.parquet --out m.onnx",
        2,
        "missing.parquet",
    ),
    (
        "train",
        "--limit 100 --soft-targets trunc.parquet --out m.onnx",
        2,
        "trunc.parquet",
    ),
    (
        "train",
        "--limit 100 --soft-targets model.onnx --out m.onnx",
        2,
        "model.onnx",
    ),
    (
        "train",
        "--limit 300 --soft-targets store.parquet --out m.onnx",
        2,
        "--limit 200",
    ),
    ("train", "--data nowhere --out m.onnx", 2, "nowhere"),
    ("train", "--data synthetic:bogus=1 --out m.onnx", 2, "bogus"),
    (
        "train",
        "--data synthetic:classes=10,groups=2,dim=20,train=100,test=20 --jitter 2 --out m.onnx",
        2,
        "--jitter needs images",
    ),
    // distill-teach
    ("teach", "--out s.parquet", 2, "--model"),
    (
        "teach",
        "--model missing.onnx --out s.parquet",
        2,
        "missing.onnx",
    ),
    (
        "teach",
        "--model garbage.onnx --limit 10 --out s.parquet",
        2,
        "garbage.onnx",
    ),
    (
        "teach",
        "--model narrow.onnx --limit 10 --out s.parquet",
        2,
        "narrow.onnx",
    ),
    (
        "teach",
        "--model model.onnx --batch 0 --out s.parquet",
        2,
        "--batch",
    ),
    (
        "teach",
        "--model model.onnx --threads 0 --out s.parquet",
        2,
        "--threads",
    ),
    (
        "teach",
        "--model model.onnx --shard 0/2 --out parts",
        2,
        "--shard",
    ),
    (
        "teach",
        "--model model.onnx --shard 3/2 --out parts",
        2,
        "--shard",
    ),
    (
        "teach",
        "--model model.onnx --shard 1/2 --out afile",
        2,
        "this is a file",
    ),
    (
        "teach",
        "--model model.onnx --limit 10 --out folder.parquet",
        2,
        "this is a folder",
    ),
    (
        "teach",
        "--model model.onnx --limit 10 --out model.onnx",
        2,
        "would destroy it",
    ),
    (
        "teach",
        "--model model.onnx --limit 10 --out nowhere/s.parquet",
        2,
        "does not exist",
    ),
    (
        "teach",
        "--model model.onnx --name a --model model.onnx --name a --limit 10 --out s.parquet",
        2,
        "also named 'a'",
    ),
    (
        "teach",
        "--model model.onnx --data nowhere --out s.parquet",
        2,
        "nowhere",
    ),
    (
        "teach",
        "--model model.onnx --kind probabilities --limit 20 --out s.parquet",
        2,
        "is read as probabilities, but row 0 is not a distribution",
    ),
    (
        "teach",
        "--model model.onnx --limit 10 --only-classes 12 --out s.parquet",
        2,
        "class 12",
    ),
    (
        "teach",
        "--model model.onnx --top-k 0 --limit 10 --out s.parquet",
        2,
        "--top-k: 0 keeps no class",
    ),
    (
        "teach",
        "--model model.onnx --top-k 10 --limit 10 --out s.parquet",
        2,
        "--top-k: 10 keeps all classes",
    ),
    (
        "teach",
        "--model model.onnx --top-k 11 --limit 10 --out s.parquet",
        2,
        "--top-k: 11 keeps more than all classes",
    ),
    (
        "train",
        "--soft-targets mixed --limit 200 --epochs 1 --out m.onnx",
        2,
        "part-2-of-2.parquet: this part is a full store but part 1 is a top-3 store",
    ),
    (
        "cluster",
        "--soft-targets mixed --count 2 --out c.yaml",
        2,
        "make every part again with the same --top-k",
    ),
    (
        "train",
        "--soft-targets never-made.parquet --hidden 8 --epochs 1 --out m.onnx",
        2,
        "--soft-targets: never-made.parquet does not exist; check the path, or run the teach stage",
    ),
    (
        "specialists",
        "--subsets never-made.yaml --generalist never-made.onnx --out sp",
        2,
        "--subsets: never-made.yaml does not exist; check the path, or run the cluster stage",
    ),
    // distill-cluster
    (
        "cluster",
        "--soft-targets never-made.parquet --count 2 --out c.yaml",
        2,
        "--soft-targets: never-made.parquet does not exist; check the path, or run the teach stage",
    ),
    (
        "cluster",
        "--soft-targets store.parquet --count 0 --out c.yaml",
        2,
        "--count 0",
    ),
    (
        "cluster",
        "--soft-targets store.parquet --count 30 --out c.yaml",
        2,
        "30",
    ),
    (
        "cluster",
        "--soft-targets store.parquet --count 2 --temperature 0 --out c.yaml",
        2,
        "--temperature 0",
    ),
    (
        "cluster",
        "--soft-targets store.parquet --count 2 --temperature -2 --out c.yaml",
        2,
        "--temperature -2",
    ),
    (
        "cluster",
        "--soft-targets store.parquet --count 2 --overlap 0 --out c.yaml",
        2,
        "--overlap 0",
    ),
    (
        "cluster",
        "--soft-targets store.parquet --count 2 --restarts 0 --out c.yaml",
        2,
        "--restarts 0",
    ),
    (
        "cluster",
        "--soft-targets missing.parquet --count 2 --out c.yaml",
        2,
        "missing.parquet",
    ),
    (
        "cluster",
        "--soft-targets trunc.parquet --count 2 --out c.yaml",
        2,
        "trunc.parquet",
    ),
    (
        "cluster",
        "--soft-targets store-copy.onnx --count 2 --out store-copy.onnx",
        2,
        "would destroy it",
    ),
    (
        "cluster",
        "--soft-targets store.parquet --count 2 --out c.yaml --heatmap c.yaml",
        2,
        "same file",
    ),
    (
        "cluster",
        "--soft-targets store.parquet --count 2 --out nowhere/c.yaml",
        2,
        "does not exist",
    ),
    (
        "cluster",
        "--soft-targets store.parquet --count 2 --out folder.yaml",
        2,
        "existing folder",
    ),
    (
        "cluster",
        "--soft-targets store.parquet --count 2 --out c.yaml --heatmap afile/h.png",
        2,
        "is a file, not a folder",
    ),
    // distill-eval
    ("eval", "--limit 10", 2, "--model"),
    ("eval", "--model missing.onnx --limit 10", 2, "missing.onnx"),
    ("eval", "--model garbage.onnx --limit 10", 2, "garbage.onnx"),
    ("eval", "--model narrow.onnx --limit 10", 2, "narrow.onnx"),
    (
        "eval",
        "--model model.onnx --batch 0 --limit 10",
        2,
        "--batch must be at least 1",
    ),
    (
        "eval",
        "--model model.onnx --limit 10 --out model.onnx",
        2,
        "would destroy it",
    ),
    (
        "eval",
        "--model model.onnx --limit 10 --out folder.json",
        2,
        "existing folder",
    ),
    (
        "eval",
        "--model model.onnx --limit 10 --out nowhere/m.json",
        2,
        "does not exist",
    ),
    (
        "eval",
        "--model model.onnx --ensemble --limit 10",
        2,
        "ensemble",
    ),
    (
        "eval",
        "--model model.onnx --bias-adjust 12=+1 --limit 10",
        2,
        "12",
    ),
    (
        "eval",
        "--model model.onnx --limit 10 --split valid",
        2,
        "--split",
    ),
    // distill-quantize
    (
        "quantize",
        "--model garbage.onnx --out q.onnx",
        2,
        "not an MLP or CNN distill can quantise",
    ),
    (
        "quantize",
        concat!(
            "--model ",
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/teachers/torchscript_cnn.onnx --out q.onnx"
        ),
        2,
        "not an MLP or CNN distill can quantise",
    ),
    (
        "quantize",
        "--model narrow.onnx --out q.onnx",
        2,
        "rows of 784 features, but --model narrow.onnx reads 20",
    ),
    (
        "quantize",
        "--model model.onnx --calibration-rows 0 --out q.onnx",
        2,
        "--calibration-rows: 0 rows",
    ),
    (
        "quantize",
        "--model model.onnx --limit 3 --only-classes 9 --out q.onnx",
        2,
        "no rows are left after the class filter",
    ),
    (
        "quantize",
        "--model model.onnx --out model.onnx",
        2,
        "this is also the input --model",
    ),
    (
        "quantize",
        "--model model.onnx --out folder.json",
        2,
        "existing folder",
    ),
    // distill run
    ("distill", "run nope.yaml", 2, "no such file"),
    ("distill", "run folder.yaml", 2, "it is a folder"),
    ("distill", "run binary.yaml", 2, "binary.yaml"),
    ("distill", "run syntax.yaml", 2, "syntax.yaml"),
    ("distill", "run unknown-kind.yaml", 2, "compile"),
    ("distill", "run unknown-flag.yaml", 2, "learning-rate"),
    ("distill", "run late-alpha.yaml", 2, "--alpha 1.5"),
    ("distill", "run late-cluster.yaml", 2, "--count 0"),
    // distill-cluster's old spelling of --count is rewritten with a note, also in a pipeline.
    (
        "cluster",
        "--soft-targets store.parquet --specialists 0 --out c.yaml",
        2,
        "note: --specialists is now --count; the old spelling goes in the next release",
    ),
    (
        "cluster",
        "--soft-targets store.parquet --specialists 0 --out c.yaml",
        2,
        "--count 0: ask for at least one subset",
    ),
    ("distill", "run same-out.yaml", 2, "o/a.onnx"),
    (
        "distill",
        "run plain.yaml --force nosuchstage",
        2,
        "nosuchstage",
    ),
    ("distill", "run plain.yaml --jobs 0", 2, "--jobs"),
    (
        "distill",
        "run plain.yaml --executor bogus",
        2,
        "invalid value 'bogus' for '--executor",
    ),
    (
        "distill",
        "run plain.yaml --partition gpu",
        2,
        "--partition applies to Slurm jobs; add --executor slurm",
    ),
    (
        "distill",
        "run plain.yaml --no-wait",
        2,
        "--no-wait applies to Slurm jobs",
    ),
    (
        "distill",
        "run plain.yaml --slurm-opt=--time=5",
        2,
        "--slurm-opt applies to Slurm jobs",
    ),
    (
        "distill",
        "run plain.yaml --executor slurm --slurm-opt=--array=1-3",
        2,
        "--array is set by distill run",
    ),
    (
        "distill",
        "run plain.yaml --executor slurm --slurm-opt=time=5",
        2,
        "`time=5` is not an sbatch option",
    ),
    (
        "distill",
        "run plain.yaml --set nope=1",
        2,
        "has no `vars:`",
    ),
    (
        "distill",
        "run plain.yaml -S novalue",
        2,
        "expected NAME=VALUE",
    ),
    (
        "distill",
        "status plain.yaml --set nope=1",
        2,
        "nothing to set",
    ),
    ("distill", "frobnicate", 2, "unknown command"),
    // distill-report: no output over an input
    (
        "report",
        "--metrics m.json --out m.json",
        2,
        "also the input --metrics",
    ),
    (
        "report",
        "--metrics sub/m.json --out sublink/m.json",
        2,
        "also the input --metrics",
    ),
    (
        "report",
        "--train-log log.metrics.csv --out log.metrics.csv",
        2,
        "also the input --train-log",
    ),
    (
        "report",
        "--store store.parquet --out store.parquet",
        2,
        "also the input --store",
    ),
    (
        "report",
        "--store mixed --out mixed/r.html",
        2,
        "inside the input --store",
    ),
    (
        "report",
        "--pipeline plain.yaml --out plain.yaml",
        2,
        "also the input --pipeline",
    ),
    (
        "report",
        "--pipeline plain.yaml --out plain.lock",
        2,
        "also the input --pipeline's lock",
    ),
    (
        "report",
        "--manifest m.json --out m.json",
        2,
        "also the input --manifest",
    ),
    // The old spelling --specialists (report: the subsets file) is rewritten with a note.
    (
        "report",
        "--specialists m.json --out m.json",
        2,
        "also the input --subsets",
    ),
    (
        "report",
        "--specialists m.json --out m.json",
        2,
        "note: --specialists is now --subsets; the old spelling goes in the next release",
    ),
    (
        "eval",
        "--model model.onnx --limit 10 --specialists missing.yaml",
        2,
        "note: --specialists is now --manifest; the old spelling goes in the next release",
    ),
    (
        "eval",
        "--model model.onnx --limit 10 --specialists missing.yaml",
        2,
        "--manifest missing.yaml",
    ),
    // distill-teach and distill-eval: a model's sidecar and external data are inputs
    (
        "teach",
        "--model ext/model.onnx --limit 10 --out ext/model.onnx.data",
        2,
        "external data",
    ),
    (
        "teach",
        "--model side.onnx --limit 10 --out side.onnx.yaml",
        2,
        "sidecar",
    ),
    (
        "teach",
        "--model model.onnx --shard 1/2 --limit 10 --out sub/..",
        2,
        "holds the input",
    ),
    (
        "eval",
        "--model side.onnx --limit 10 --out side.onnx.yaml",
        2,
        "sidecar",
    ),
    (
        "eval",
        "--model ext/model.onnx --limit 10 --out ext/model.onnx.data",
        2,
        "external data",
    ),
    // Sizes and counts are checked before anything is allocated
    (
        "teach",
        "--model model.onnx --threads 100000 --limit 10 --out s.parquet",
        2,
        "more than the 1024 threads",
    ),
    (
        "teach",
        "--model model.onnx --ort-threads 5000 --limit 10 --out s.parquet",
        2,
        "more than the 1024 threads",
    ),
    (
        "train",
        "--data synthetic:classes=10,dim=200000000 --out m.onnx",
        2,
        "make more than 1073741824 values",
    ),
    (
        "train",
        "--data synthetic:classes=4,classes=8 --out m.onnx",
        2,
        "classes is given twice",
    ),
    (
        "train",
        "--data synthetic:classes=100000000 --out m.onnx",
        2,
        "make more than 1073741824 values",
    ),
    // Devices and FIFOs are refused, never read
    (
        "train",
        "--data idxfifo --out m.onnx",
        2,
        "a FIFO (named pipe)",
    ),
    (
        "train",
        "--data idxloop --out m.onnx",
        2,
        "train-images-idx3-ubyte: --data: this is a symbolic link that never reaches a file",
    ),
    (
        "train",
        "--data idxdir --out m.onnx",
        2,
        "idxdir/train-images-idx3-ubyte: --data: this is a folder, not a regular file",
    ),
    (
        "train",
        "--data gzbomb --out m.onnx",
        2,
        "inflates to more than the 17 bytes its IDX header declares",
    ),
    (
        "teach",
        "--model zero.onnx --limit 10 --out s.parquet",
        2,
        "a device, not a regular file",
    ),
    (
        "teach",
        "--model fifo.onnx --limit 10 --out s.parquet",
        2,
        "a FIFO (named pipe), not a regular file",
    ),
    (
        "teach",
        "--model sc.onnx --limit 10 --out s.parquet",
        2,
        "a device, not a regular file",
    ),
    ("report", "--metrics zero.json", 2, "a device"),
    ("report", "--metrics fifo.json", 2, "a FIFO"),
    ("report", "--store fifo.parquet", 2, "a FIFO"),
    ("report", "--pipeline zero.yaml", 2, "zero.yaml"),
    (
        "train",
        "--soft-targets fifo.parquet --limit 100 --out m.onnx",
        2,
        "a FIFO",
    ),
    (
        "cluster",
        "--soft-targets zero.parquet --count 2 --out c.yaml",
        2,
        "a device",
    ),
    (
        "distill",
        "run zero.yaml",
        2,
        "a device, not a regular file",
    ),
    (
        "distill",
        "run zero-dep.yaml",
        2,
        "a device, not a regular file",
    ),
    (
        "distill",
        "run zero-dep.yaml --dry-run",
        2,
        "a device, not a regular file",
    ),
    (
        "distill",
        "status zero-dep.yaml",
        2,
        "a device, not a regular file",
    ),
    ("distill", "run fifo-dep.yaml", 2, "a FIFO"),
    ("distill", "status fifo-dep.yaml", 2, "a FIFO"),
    ("distill", "run root-dep.yaml", 2, "is the root folder"),
    ("distill", "run bomb.yaml", 2, "more than 1048576 bytes"),
    // distill run: no stage writes what the run reads, or what another stage writes
    ("distill", "run self-out.yaml", 2, "the pipeline file"),
    ("distill", "run lock-out.yaml", 2, "the pipeline's lock"),
    ("distill", "run linked-out.yaml", 2, "both write one file"),
    (
        "distill",
        "run nested-out.yaml",
        2,
        "inside stage a's output",
    ),
    (
        "distill",
        "run dot-out.yaml",
        2,
        "the working folder itself",
    ),
    ("distill", "run nul-out.yaml", 2, "NUL byte"),
    (
        "distill",
        "run wdir-file.yaml",
        2,
        "afile is a file, not a folder",
    ),
    // distill-train: every optimiser setting in range, checked before any work
    ("train", "--lr -0.1 --out m.onnx", 2, "--lr -0.1 must be"),
    ("train", "--lr 0 --out m.onnx", 2, "--lr 0 must be"),
    ("train", "--lr NaN --out m.onnx", 2, "--lr NaN must be"),
    ("train", "--momentum 1.5 --out m.onnx", 2, "--momentum 1.5"),
    (
        "train",
        "--momentum -0.5 --out m.onnx",
        2,
        "--momentum -0.5",
    ),
    (
        "train",
        "--momentum-start 1 --momentum-ramp 3 --out m.onnx",
        2,
        "--momentum-start 1",
    ),
    (
        "train",
        "--schedule exp:0 --out m.onnx",
        2,
        "--schedule exp:0",
    ),
    (
        "train",
        "--schedule exp:-2 --out m.onnx",
        2,
        "--schedule exp:-2",
    ),
    (
        "train",
        "--schedule exp:1.5 --out m.onnx",
        2,
        "--schedule exp:1.5",
    ),
    (
        "train",
        "--limit 100 --epochs 2 --schedule exp:NaN --out m.onnx",
        2,
        "--schedule exp:NaN",
    ),
    (
        "train",
        "--schedule step:0:0.5 --out m.onnx",
        2,
        "--schedule step:0:0.5",
    ),
    (
        "train",
        "--schedule step:5:0 --out m.onnx",
        2,
        "--schedule step:5:0",
    ),
    (
        "train",
        "--schedule cosine:0 --out m.onnx",
        2,
        "--schedule cosine:0",
    ),
    (
        "train",
        "--soft-targets store.parquet --temperature 1e-30 --out m.onnx",
        2,
        "is below 0.05",
    ),
    (
        "train",
        "--limit 100 --jitter 1000 --out m.onnx",
        2,
        "are 28x28 pixels",
    ),
    (
        "train",
        "--threads 100000 --out m.onnx",
        2,
        "more than the 1024 threads",
    ),
    (
        "train",
        "--limit 100 --hidden 100000000 --out m.onnx",
        2,
        "would hold more than 2147483648 weights",
    ),
    // distill-train: no output over another, no late refusal
    (
        "train",
        "--limit 100 --metrics m.ckpt --out m.onnx",
        2,
        "the same file as --out (its checkpoint) m.ckpt",
    ),
    (
        "train",
        "--limit 100 --metrics m.onnx --out m.onnx",
        2,
        "the same file as --metrics m.onnx",
    ),
    (
        "train",
        "--limit 100 --epochs 1 --hidden 8 --validation 0 --test-split none --resume --out ck.onnx",
        2,
        "holds 2 completed epochs, more than --epochs 1",
    ),
    (
        "train",
        "--limit 100 --epochs 1 --hidden 8 --bias-adjust 99=1 --out m.onnx",
        2,
        "--bias-adjust names class 99",
    ),
    // distill-specialists: settings, inputs and the folder it writes
    (
        "specialists",
        "--subsets subsets.yaml --generalist model.onnx --lr -1 --out so",
        2,
        "--lr -1",
    ),
    (
        "specialists",
        "--subsets subsets.yaml --generalist model.onnx --schedule cosine:0 --out so",
        2,
        "--schedule cosine:0",
    ),
    (
        "specialists",
        "--subsets subsets.yaml --generalist model.onnx --threads 100000 --out so",
        2,
        "more than the 1024 threads",
    ),
    (
        "specialists",
        "--subsets subsets.yaml --generalist model.onnx --jobs 5000 --out so",
        2,
        "--jobs 5000",
    ),
    (
        "specialists",
        "--limit 300 --subsets subsets.yaml --generalist model.onnx --jitter 28 --out so",
        2,
        "--jitter 28",
    ),
    (
        "specialists",
        "--subsets sub/m.json --generalist model.onnx --out sub",
        2,
        "holds the input --subsets",
    ),
    (
        "specialists",
        "--subsets subsets.yaml --generalist ext/model.onnx --out ext",
        2,
        "holds the input --generalist",
    ),
    (
        "specialists",
        "--subsets subsets.yaml --generalist model.onnx --soft-targets mixed --out mixed/so",
        2,
        "inside the input --soft-targets",
    ),
    (
        "specialists",
        "--limit 300 --subsets subsets.yaml --generalist model.onnx --out userspec",
        2,
        "userspec/specialist-0.onnx is already there",
    ),
    (
        "specialists",
        "--limit 300 --subsets subsets.yaml --generalist model.onnx --out foreign",
        2,
        "cannot read as its own",
    ),
    (
        "specialists",
        "--subsets zero.yaml --generalist model.onnx --out so",
        2,
        "a device, not a regular file",
    ),
    (
        "specialists",
        "--subsets fifo.json --generalist model.onnx --out so",
        2,
        "a FIFO",
    ),
    (
        "specialists",
        "--subsets subsets.yaml --generalist zero.onnx --out so",
        2,
        "a device, not a regular file",
    ),
    (
        "specialists",
        "--limit 300 --epochs 1 --subsets subsets.yaml --generalist nan.onnx --out so",
        2,
        "nan.onnx: --generalist: layer 1 holds the value NaN",
    ),
    (
        "specialists",
        "--limit 300 --subsets subsets.yaml --generalist model.onnx --only 0,0 --out so",
        2,
        "subset 0 is named twice",
    ),
    // distill-cluster: the rows other stages refuse
    (
        "cluster",
        "--soft-targets dup.parquet --count 2 --out c.yaml",
        2,
        "example 3 appears twice",
    ),
    (
        "cluster",
        "--soft-targets label77.parquet --count 2 --out c.yaml",
        2,
        "has label 77, but the store has 10 classes",
    ),
    (
        "cluster",
        "--soft-targets store.parquet --count 2 --only-classes 77 --out c.yaml",
        2,
        "--only-classes: class 77 does not exist in the store store.parquet",
    ),
    (
        "cluster",
        "--soft-targets store.parquet --count 2 --threads 4 --out c.yaml",
        2,
        "runs on one thread and has no --threads",
    ),
];

#[test]
fn every_bad_input_exits_2_with_a_clear_message_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fixtures(d);
    assert!(ROWS.len() >= 60, "the suite has {} rows", ROWS.len());
    let before = snapshot(d);
    let mut failures = Vec::new();
    for (program, args, code, fragment) in ROWS {
        let mut argv: Vec<String> = args.split_whitespace().map(str::to_string).collect();
        // Stages read MNIST unless a row names other data.
        if !["distill", "cluster", "report"].contains(program) && !args.contains("--data") {
            argv.extend(["--data".to_string(), MNIST.to_string()]);
        }
        let o = run(d, program, &argv);
        let text = format!("{}{}", o.stderr, o.stdout);
        if o.code != *code || !text.contains(fragment) {
            failures.push(format!(
                "{program} {args}: exit {} (want {code}), message lacks {fragment:?}:\n{text}",
                o.code
            ));
        }
        if text.contains("panicked") {
            failures.push(format!("{program} {args}: panicked:\n{text}"));
        }
        let after = snapshot(d);
        if after != before {
            let added: Vec<_> = after.keys().filter(|k| !before.contains_key(*k)).collect();
            let changed: Vec<_> = before
                .iter()
                .filter(|(k, v)| after.get(*k) != Some(v))
                .map(|(k, _)| k)
                .collect();
            failures.push(format!(
                "{program} {args}: left files behind {added:?} or changed inputs {changed:?}"
            ));
            // Restore the folder for the next rows.
            for k in added {
                let p = d.join(k);
                let _ = std::fs::remove_dir_all(&p);
                let _ = std::fs::remove_file(&p);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n\n{}",
        failures.len(),
        ROWS.len(),
        failures.join("\n\n")
    );
}

/// `distill run --executor slurm` where Slurm cannot be used, on any machine: Slurm's commands
/// missing from PATH, and a controller that is down (stand-ins on PATH: `scontrol ping` says
/// DOWN as the real one does; `sbatch` would leave a file if it were ever called). Each exits 2
/// naming what was tried and how to fix it, and submits and writes nothing (no lock, no job state).
#[test]
fn slurm_unusable_exits_2_and_submits_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("plain.yaml"),
        "stages:\n  a:\n    kind: cmd\n    cmd: echo hi > a.txt\n    outs: [a.txt]\n",
    )
    .unwrap();
    let empty = d.join("bin-empty");
    let down = d.join("bin-down");
    std::fs::create_dir(&empty).unwrap();
    std::fs::create_dir(&down).unwrap();
    let stub = |name: &str, body: &str| {
        let p = down.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    stub(
        "scontrol",
        "echo 'Slurmctld(primary) at head is DOWN'; echo '** RESTORE SLURMCTLD DAEMON TO SERVICE **'; exit 1",
    );
    stub(
        "sbatch",
        &format!("touch {}/SBATCH-CALLED; echo 1", d.display()),
    );
    stub("squeue", "exit 0");
    stub("scancel", "exit 0");
    let rows: [(&Path, Option<&str>, &[&str]); 3] = [
        (
            &empty,
            None,
            &[
                "sbatch, squeue, scontrol, scancel are not on PATH",
                "scripts/slurm-local.sh up",
                "nothing was submitted",
            ],
        ),
        (
            &down,
            None,
            &[
                "cannot reach the Slurm controller (slurmctld)",
                "Slurmctld(primary) at head is DOWN",
                "set SLURM_CONF",
                "scripts/slurm-local.sh up",
            ],
        ),
        (
            &down,
            Some("nope.conf"),
            &[
                "SLURM_CONF=nope.conf is not a file",
                "nothing was submitted",
            ],
        ),
    ];
    let before = snapshot(d);
    for (path, conf, fragments) in rows {
        let mut command = Command::new(env!("CARGO_BIN_EXE_distill"));
        command
            .current_dir(d)
            .args(["run", "plain.yaml", "--executor", "slurm"])
            .env("PATH", path)
            .env_remove("SLURM_CONF");
        if let Some(c) = conf {
            command.env("SLURM_CONF", c);
        }
        let out = command.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(
            out.status.code(),
            Some(2),
            "PATH={}: {text}",
            path.display()
        );
        for f in fragments {
            assert!(
                text.contains(f),
                "PATH={}: {f:?} not in\n{text}",
                path.display()
            );
        }
        assert_eq!(
            snapshot(d),
            before,
            "PATH={}: files were written",
            path.display()
        );
    }
}

/// Stand-ins for Slurm's commands in `bin`: the controller is up, the queue is empty, and `sbatch`
/// keeps a copy of each script it is given in `submitted/N.sbatch` and answers job id N.
fn slurm_stand_ins(d: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = d.join("bin");
    let submitted = d.join("submitted");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&submitted).unwrap();
    let stub = |name: &str, body: &str| {
        let p = bin.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    stub("scontrol", "echo 'Slurmctld(primary) at head is UP'");
    stub(
        "sbatch",
        &format!(
            "n=$(ls '{0}' | wc -l); n=$((n + 1)); cp \"$2\" '{0}'/$n.sbatch; echo $n",
            submitted.display()
        ),
    );
    stub("squeue", "exit 0");
    stub("scancel", "exit 0");
    bin
}

/// Every file name under `dir` that starts with `PWNED`.
fn pwned(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path.clone());
            }
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("PWNED"))
            {
                found.push(path);
            }
        }
    }
    found
}

/// The array task ids of a script's `#SBATCH --array=` line (`1-3`, `1,3`), or `[None]`.
fn array_tasks(script: &str) -> Vec<Option<usize>> {
    let Some(spec) = script
        .lines()
        .find_map(|l| l.strip_prefix("#SBATCH --array="))
    else {
        return vec![None];
    };
    spec.split(',')
        .flat_map(|part| match part.split_once('-') {
            Some((a, b)) => (a.parse().unwrap()..=b.parse().unwrap()).collect::<Vec<usize>>(),
            None => vec![part.parse().unwrap()],
        })
        .map(Some)
        .collect()
}

/// Values from a hostile pipeline (foreach items with quotes, `$(...)`, backticks, `;`, `#`,
/// newlines; a pipeline file whose name has a newline and `$(...)`) reach the generated sbatch
/// scripts only quoted: each script passes `bash -n`, and run as Slurm would run it (a stand-in
/// `sbatch`, each array task in turn) it runs its stages' commands with exactly the items as
/// arguments and nothing else. A scalar item with a control character (it names the stage) and a
/// `--partition` with a newline are refused with exit 2 before anything is submitted.
#[test]
fn slurm_scripts_quote_every_value_and_run_only_the_stages_commands() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bin = slurm_stand_ins(d);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let items = [
        "q'; touch PWNED_Q; echo '",
        "$(touch PWNED_S)",
        "`touch PWNED_B`",
        "sp ace # touch PWNED_H",
        "semi;touch PWNED_SEMI",
        "dq\"$(touch PWNED_DQ)\"",
        "back\\slash",
        "star*",
    ];
    let yaml_items: Vec<String> = items
        .iter()
        .map(|i| format!("\"{}\"", i.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    let list = yaml_items.join(", ");
    let pipeline = format!(
        "stages:\n  step:\n    kind: cmd\n    foreach: [{list}]\n    cmd: echo ran >> ran.txt\n  \
         look:\n    kind: report\n    foreach: [{list}]\n    args:\n      train-log: t.metrics.csv\n      \
         title: \"${{item}}\"\n      allow-missing: true\n      out: \"r-${{item}}.html\"\n  \
         mapped:\n    kind: report\n    foreach: [{{v: \"a\\ntouch PWNED_MAP #\"}}]\n    args:\n      \
         train-log: t.metrics.csv\n      title: \"${{item.v}}\"\n      allow-missing: true\n      \
         out: \"r-${{item.v}}.html\"\n"
    );
    let name = "p$(touch PWNED_F)'\ntouch PWNED_F2 #.yaml";
    std::fs::write(
        d.join("t.metrics.csv"),
        "epoch,loss,train_error\n1,0.5,10\n",
    )
    .unwrap();
    std::fs::write(d.join(name), &pipeline).unwrap();
    let run_slurm = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_distill"))
            .current_dir(d)
            .args(args)
            .env("PATH", &path)
            .env_remove("SLURM_CONF")
            .output()
            .unwrap();
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            ),
        )
    };
    let (code, text) = run_slurm(&["run", name, "--executor", "slurm", "--no-wait"]);
    assert_eq!(code, Some(0), "{text}");
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(d.join("submitted"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    scripts.sort();
    assert_eq!(scripts.len(), 3, "one job array per stage: {scripts:?}");
    for file in &scripts {
        let text = std::fs::read_to_string(file).unwrap();
        let check = Command::new("bash").arg("-n").arg(file).output().unwrap();
        assert!(
            check.status.success(),
            "bash -n {}: {}\n{text}",
            file.display(),
            String::from_utf8_lossy(&check.stderr)
        );
        for task in array_tasks(&text) {
            let mut command = Command::new("sh");
            command.arg(file).current_dir(d).env("SLURM_JOB_ID", "1");
            if let Some(t) = task {
                command.env("SLURM_ARRAY_TASK_ID", t.to_string());
            }
            let out = command.output().unwrap();
            assert!(
                out.status.success(),
                "{} task {task:?}: {}\n{text}",
                file.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    assert_eq!(
        pwned(d),
        Vec::<PathBuf>::new(),
        "a script ran an injected command"
    );
    let ran = std::fs::read_to_string(d.join("ran.txt")).unwrap();
    assert_eq!(ran.lines().count(), items.len());
    for item in items.iter().chain(&["a\ntouch PWNED_MAP #"]) {
        assert!(
            d.join(format!("r-{item}.html")).is_file(),
            "no report r-{item}.html"
        );
    }

    // Refused before anything is submitted.
    std::fs::remove_dir_all(d.join("submitted")).unwrap();
    std::fs::create_dir(d.join("submitted")).unwrap();
    std::fs::write(
        d.join("newline.yaml"),
        "stages:\n  a:\n    kind: cmd\n    foreach: [\"x\\ntouch PWNED_BY_ITEM\"]\n    cmd: echo hi\n",
    )
    .unwrap();
    let (code, text) = run_slurm(&["run", "newline.yaml", "--executor", "slurm"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("holds the control character '\\n'"), "{text}");
    let (code, text) = run_slurm(&["run", "newline.yaml", "--executor", "slurm", "--dry-run"]);
    assert_eq!(code, Some(2), "{text}");
    std::fs::write(
        d.join("plain.yaml"),
        "stages:\n  a:\n    kind: cmd\n    cmd: echo hi\n",
    )
    .unwrap();
    for extra in [&["--dry-run"][..], &[]] {
        let mut args = vec![
            "run",
            "plain.yaml",
            "--executor",
            "slurm",
            "--partition",
            "gpu\ntouch PWNED_PART",
        ];
        args.extend(extra);
        let (code, text) = run_slurm(&args);
        assert_eq!(code, Some(2), "{args:?}: {text}");
        assert!(text.contains("--partition"), "{text}");
    }
    assert_eq!(
        std::fs::read_dir(d.join("submitted")).unwrap().count(),
        0,
        "a refused run submitted a job"
    );
    assert_eq!(pwned(d), Vec::<PathBuf>::new());
}

/// A reader that stops early (`| head -1`) closes stdout before the report is written: each
/// command ends as it would have (exit 0), without a "Broken pipe" panic (exit 101).
#[test]
fn a_closed_stdout_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fixtures(d);
    let cases: [&[&str]; 7] = [
        &[
            "train",
            "--data",
            MNIST,
            "--limit",
            "100",
            "--epochs",
            "1",
            "--hidden",
            "8",
            "--validation",
            "0",
            "--test-split",
            "none",
            "--out",
            "closed.onnx",
        ],
        &[
            "specialists",
            "--data",
            MNIST,
            "--limit",
            "300",
            "--epochs",
            "1",
            "--subsets",
            "subsets.yaml",
            "--generalist",
            "model.onnx",
            "--out",
            "closed-specialists",
        ],
        &[
            "cluster",
            "--soft-targets",
            "store.parquet",
            "--count",
            "2",
            "--out",
            "c.yaml",
        ],
        &[
            "teach",
            "--model",
            "model.onnx",
            "--data",
            MNIST,
            "--limit",
            "20",
            "--out",
            "t.parquet",
        ],
        &[
            "report",
            "--train-log",
            "log.metrics.csv",
            "--out",
            "r.html",
        ],
        &["--help"],
        &["--version"],
    ];
    for args in cases {
        let mut child = Command::new(env!("CARGO_BIN_EXE_distill"))
            .current_dir(d)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The reader is gone before anything is written.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// distill-specialists replaces and deletes only the specialist files that its own earlier
/// manifest in `--out` lists: a user's `specialist-7.onnx` and a generalist stored there as
/// `specialist-9.onnx` survive a run, and a later run with fewer subsets deletes the file of the
/// subset it no longer has, and nothing else.
#[test]
fn specialists_delete_only_the_files_their_manifest_lists() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let ok = |o: Outcome, what: &str| {
        assert_eq!(o.code, 0, "{what} failed:\n{}\n{}", o.stdout, o.stderr);
    };
    ok(
        run(
            d,
            "train",
            &s(&[
                "--data",
                MNIST,
                "--limit",
                "300",
                "--epochs",
                "1",
                "--hidden",
                "16",
                "--validation",
                "0",
                "--test-split",
                "none",
                "--out",
                "g.onnx",
            ]),
        ),
        "training the generalist",
    );
    ok(
        run(
            d,
            "teach",
            &s(&[
                "--model",
                "g.onnx",
                "--data",
                MNIST,
                "--limit",
                "300",
                "--out",
                "s.parquet",
            ]),
        ),
        "teaching",
    );
    ok(
        run(
            d,
            "cluster",
            &s(&[
                "--soft-targets",
                "s.parquet",
                "--count",
                "2",
                "--out",
                "subsets.yaml",
            ]),
        ),
        "clustering",
    );
    let o = d.join("o");
    std::fs::create_dir(&o).unwrap();
    std::fs::write(o.join("specialist-7.onnx"), b"the user's own file").unwrap();
    std::fs::copy(d.join("g.onnx"), o.join("specialist-9.onnx")).unwrap();
    let keep = [
        (
            "specialist-7.onnx",
            std::fs::read(o.join("specialist-7.onnx")).unwrap(),
        ),
        (
            "specialist-9.onnx",
            std::fs::read(o.join("specialist-9.onnx")).unwrap(),
        ),
    ];
    let specialists = |subsets: &str| {
        run(
            d,
            "specialists",
            &s(&[
                "--data",
                MNIST,
                "--limit",
                "300",
                "--epochs",
                "1",
                "--subsets",
                subsets,
                "--generalist",
                "g.onnx",
                "--out",
                "o",
            ]),
        )
    };
    ok(specialists("subsets.yaml"), "the specialists");
    assert!(o.join("specialist-0.onnx").is_file() && o.join("specialist-1.onnx").is_file());
    for (name, bytes) in &keep {
        assert_eq!(
            &std::fs::read(o.join(name)).unwrap(),
            bytes,
            "{name} changed"
        );
    }
    // The same subsets but the last: the folder's own specialist-1.onnx goes, nothing else.
    let text = std::fs::read_to_string(d.join("subsets.yaml")).unwrap();
    let mut set: distill_cluster::SpecialistSet = serde_norway::from_str(&text).unwrap();
    set.subsets.truncate(1);
    set.specialists = 1;
    std::fs::write(d.join("one.yaml"), serde_norway::to_string(&set).unwrap()).unwrap();
    ok(specialists("one.yaml"), "the specialists of one subset");
    assert!(o.join("specialist-0.onnx").is_file());
    assert!(!o.join("specialist-1.onnx").exists());
    for (name, bytes) in &keep {
        assert_eq!(
            &std::fs::read(o.join(name)).unwrap(),
            bytes,
            "{name} changed"
        );
    }
}

/// A `cmd` stage reads nothing of what is fed to `distill run` on stdin.
#[test]
fn cmd_stages_get_no_stdin() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("p.yaml"),
        "stages:\n  a:\n    kind: cmd\n    cmd: cat > got.txt\n    outs: [got.txt]\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_distill"))
        .current_dir(d)
        .args(["run", "p.yaml"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(b"SECRET\n");
    // The pipe stays open while the stage runs: a stage reading it would wait forever.
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the cmd stage waits on distill run's stdin"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    drop(stdin);
    assert!(status.success());
    assert_eq!(std::fs::read_to_string(d.join("got.txt")).unwrap(), "");
}
