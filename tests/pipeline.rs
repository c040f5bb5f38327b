//! `distill run` end to end: the real binary on pipelines over small MNIST slices, each in a fresh
//! temporary folder.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

const MNIST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Runs `distill ARGS` in `dir`; returns (exit code, stdout, stderr).
fn distill(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_distill"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The summary row of `stage`: its status (`ran`, `skipped`, `run`, ...).
fn status_of(stdout: &str, stage: &str) -> String {
    let summary = stdout
        .rsplit_once("\nsummary of ")
        .or_else(|| stdout.rsplit_once("\nplan of "))
        .map(|(_, s)| s)
        .unwrap_or_else(|| panic!("no summary in:\n{stdout}"));
    let line = summary
        .lines()
        .find(|l| l.split_whitespace().next() == Some(stage))
        .unwrap_or_else(|| panic!("no row for {stage} in:\n{summary}"));
    line.split_whitespace().nth(2).unwrap().to_string()
}

fn mtime(path: &Path) -> SystemTime {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .modified()
        .unwrap()
}

/// Two teachers (foreach), their store, specialist subsets, a distilled student and an
/// evaluation, on 600 training rows with 32 hidden units.
fn small_pipeline(specialists: usize, student_epochs: usize) -> String {
    format!(
        "\
vars:
  data: {MNIST}
  out: out
stages:
  teacher:
    kind: train
    foreach: [1, 2]
    args:
      data: ${{data}}
      limit: 600
      validation: 100
      hidden: 32
      epochs: 2
      seed: ${{item}}
      test-split: none
      out: ${{out}}/teacher-${{item}}.onnx
  teach:
    kind: teach
    args:
      model:
        - ${{out}}/teacher-1.onnx
        - ${{out}}/teacher-2.onnx
      data: ${{data}}
      limit: 600
      out: ${{out}}/store.parquet
  cluster:
    kind: cluster
    args:
      soft-targets: ${{out}}/store.parquet
      count: {specialists}
      out: ${{out}}/specialists.yaml
  student:
    kind: train
    args:
      data: ${{data}}
      limit: 600
      validation: 100
      soft-targets: ${{out}}/store.parquet
      hidden: 32
      epochs: {student_epochs}
      test-split: none
      out: ${{out}}/student.onnx
  eval:
    kind: eval
    args:
      teacher:
        - ${{out}}/teacher-1.onnx
        - ${{out}}/teacher-2.onnx
      model: ${{out}}/student.onnx
      ensemble: true
      data: ${{data}}
      limit: 300
      latency-runs: 0
      out: ${{out}}/metrics.json
"
    )
}

/// `distill metrics` shows, for the pipeline in `d`, exactly the errors that its eval stage wrote
/// into metrics.json, and says how to fix a metrics file that is gone.
fn metrics_view_agrees_with_the_eval_stage(d: &Path) {
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("out/metrics.json")).unwrap())
            .unwrap();
    let (code, stdout, stderr) = distill(d, &["metrics", "p.yaml", "--json"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let shown: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let rows = shown["rows"].as_array().unwrap();
    let entries = written["entries"].as_array().unwrap();
    assert_eq!(rows.len(), entries.len(), "{stdout}");
    for (row, entry) in rows.iter().zip(entries) {
        assert_eq!(row["stage"], "eval");
        assert_eq!(row["model"], entry["name"]);
        assert_eq!(row["errors"], entry["errors"]);
        assert_eq!(row["rows"], entry["rows"]);
    }
    let (code, table, _) = distill(d, &["metrics", "p.yaml"]);
    assert_eq!(code, 0);
    let student = table.lines().find(|l| l.contains(" student ")).unwrap();
    let errors = entries.iter().find(|e| e["name"] == "student").unwrap()["errors"].to_string();
    assert!(student.split_whitespace().any(|f| f == errors), "{table}");

    std::fs::rename(d.join("out/metrics.json"), d.join("metrics.json.bak")).unwrap();
    let (code, table, _) = distill(d, &["metrics", "p.yaml"]);
    assert_eq!(code, 0);
    assert!(
        table.contains("stage `eval`") && table.contains("distill run p.yaml"),
        "{table}"
    );
    std::fs::rename(d.join("metrics.json.bak"), d.join("out/metrics.json")).unwrap();
    let (code, _, stderr) = distill(d, &["metrics", "missing.yaml"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("missing.yaml: no such pipeline"),
        "{stderr}"
    );
}

const STAGES: [&str; 6] = [
    "teacher@1",
    "teacher@2",
    "teach",
    "cluster",
    "student",
    "eval",
];

#[test]
fn a_pipeline_runs_then_skips_everything_then_reruns_only_what_a_change_touches() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("p.yaml"), small_pipeline(3, 2)).unwrap();

    let (code, stdout, stderr) = distill(d, &["run", "p.yaml"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for s in STAGES {
        assert_eq!(status_of(&stdout, s), "ran", "{s}");
    }
    assert!(stdout.contains("results of eval:"), "{stdout}");
    assert!(stdout.contains("ensemble (arithmetic)"), "{stdout}");
    let outputs = [
        "out/teacher-1.onnx",
        "out/teacher-1.metrics.csv",
        "out/teacher-1.ckpt",
        "out/teacher-2.onnx",
        "out/store.parquet",
        "out/specialists.yaml",
        "out/specialists.png",
        "out/student.onnx",
        "out/metrics.json",
    ];
    let times: Vec<SystemTime> = outputs.iter().map(|o| mtime(&d.join(o))).collect();
    let lock = std::fs::read_to_string(d.join("p.lock")).unwrap();
    assert_eq!(lock.matches("state: complete").count(), 6, "{lock}");
    metrics_view_agrees_with_the_eval_stage(d);

    let (code, stdout, stderr) = distill(d, &["run", "p.yaml"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for s in STAGES {
        assert_eq!(status_of(&stdout, s), "skipped", "{s}");
    }
    assert!(
        stdout.contains("results of eval:"),
        "a skipped eval still shows its table"
    );
    for (o, t) in outputs.iter().zip(&times) {
        assert_eq!(mtime(&d.join(o)), *t, "{o} was rewritten");
    }
    assert_eq!(std::fs::read_to_string(d.join("p.lock")).unwrap(), lock);

    std::fs::write(d.join("p.yaml"), small_pipeline(2, 3)).unwrap();
    std::fs::remove_file(d.join("out/metrics.json")).unwrap();
    let (code, stdout, _) = distill(d, &["run", "p.yaml", "--dry-run"]);
    assert_eq!(code, 0, "{stdout}");
    let plan = stdout.rsplit_once("plan of").unwrap().1;
    let reason = |stage: &str| {
        plan.lines()
            .find(|l| l.starts_with(stage))
            .unwrap()
            .to_string()
    };
    assert!(reason("cluster ").ends_with("args changed"), "{plan}");
    assert!(reason("student ").ends_with("args changed"), "{plan}");
    assert!(
        reason("eval ").ends_with("output out/metrics.json missing"),
        "{plan}"
    );
    assert!(reason("teach ").ends_with("up to date"), "{plan}");
    assert_eq!(
        mtime(&d.join("out/student.onnx")),
        times[7],
        "a dry run ran something"
    );

    let (code, stdout, stderr) = distill(d, &["run", "p.yaml"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for (s, want) in [
        ("teacher@1", "skipped"),
        ("teacher@2", "skipped"),
        ("teach", "skipped"),
        ("cluster", "ran"),
        ("student", "ran"),
        ("eval", "ran"),
    ] {
        assert_eq!(status_of(&stdout, s), want, "{s}\n{stdout}");
    }
    for (o, t) in outputs.iter().zip(&times).take(5) {
        assert_eq!(mtime(&d.join(o)), *t, "{o} was rewritten");
    }
    assert!(stdout.contains("2 subsets capture"), "{stdout}");
}

/// One training stage large enough to be killed in the middle.
fn training_pipeline(extra: &str) -> String {
    format!(
        "\
stages:
  train:
    kind: train
    args:
      data: {MNIST}
      limit: 1500
      validation: 0
      hidden: 64
      epochs: 15
      batch: 100
      test-split: none
      out: out/model.onnx
{extra}"
    )
}

fn layers(path: &Path) -> Vec<distill_nn::linear::Linear> {
    distill_nn::onnx::load(path).unwrap().mlp.layers
}

#[test]
fn an_interrupted_training_stage_resumes_and_ends_with_the_same_weights() {
    let reference = tempfile::tempdir().unwrap();
    std::fs::write(reference.path().join("p.yaml"), training_pipeline("")).unwrap();
    let (code, stdout, stderr) = distill(reference.path(), &["run", "p.yaml"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let want = layers(&reference.path().join("out/model.onnx"));

    // Killed with SIGKILL once its first checkpoint is on disk.
    let killed = tempfile::tempdir().unwrap();
    let k = killed.path();
    std::fs::write(k.join("p.yaml"), training_pipeline("")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_distill"))
        .current_dir(k)
        .args(["run", "p.yaml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !k.join("out/model.ckpt").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint"
        );
        assert!(child.try_wait().unwrap().is_none(), "finished too soon");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), None, "the run ended before it was killed");
    assert!(
        !k.join("out/model.onnx").exists(),
        "a killed stage left its model"
    );
    let lock = std::fs::read_to_string(k.join("p.lock")).unwrap();
    assert!(lock.contains("state: started"), "{lock}");
    let (code, stdout, stderr) = distill(k, &["run", "p.yaml", "--dry-run"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("interrupted last time; resuming from its checkpoint"),
        "{stdout}"
    );
    let (code, stdout, stderr) = distill(k, &["run", "p.yaml"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("--resume"), "{stdout}");
    assert!(
        stderr.contains("resumed from") || stdout.contains("resumed from"),
        "{stdout}\n{stderr}"
    );
    assert_eq!(layers(&k.join("out/model.onnx")), want);

    // Stopped cleanly in the middle of the first epoch by the hidden --max-steps, then run again
    // without it: --max-steps, like --resume, is not part of the stage's arguments hash.
    let stopped = tempfile::tempdir().unwrap();
    let s = stopped.path();
    std::fs::write(s.join("p.yaml"), training_pipeline("      max-steps: 7\n")).unwrap();
    let (code, stdout, stderr) = distill(s, &["run", "p.yaml"]);
    assert_eq!(code, 130, "{stdout}\n{stderr}");
    assert!(stderr.contains("stage train was interrupted"), "{stderr}");
    assert!(!s.join("out/model.onnx").exists());
    std::fs::write(s.join("p.yaml"), training_pipeline("")).unwrap();
    let (code, stdout, stderr) = distill(s, &["run", "p.yaml"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(status_of(&stdout, "train"), "ran");
    assert!(stdout.contains("resuming from its checkpoint"), "{stdout}");
    assert_eq!(layers(&s.join("out/model.onnx")), want);
}

/// A pipeline of shell commands: a → b → c, and d on its own.
const COMMANDS: &str = "\
stages:
  a:
    kind: cmd
    cmd: echo one > a.txt
    outs: [a.txt]
  b:
    kind: cmd
    cmd: cat a.txt > b.txt && echo ran >> b.log
    deps: [a.txt]
    outs: [b.txt]
  c:
    kind: cmd
    cmd: mkdir -p c && cat b.txt b.txt > c/c.txt
    deps: [b.txt]
    outs: [c/]
  d:
    kind: cmd
    cmd: echo four > d.txt
    outs: [d.txt]
";

#[test]
fn force_from_to_and_jobs_select_the_stages_that_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("p.yaml"), COMMANDS).unwrap();
    let (code, stdout, stderr) = distill(d, &["run", "p.yaml", "--jobs", "2"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for s in ["a", "b", "c", "d"] {
        assert_eq!(status_of(&stdout, s), "ran", "{s}");
    }
    assert_eq!(
        std::fs::read_to_string(d.join("c/c.txt")).unwrap(),
        "one\none\n"
    );

    // b reruns and writes the same b.txt, so c, whose input is unchanged, is still skipped.
    let (code, stdout, _) = distill(d, &["run", "p.yaml", "--force", "b"]);
    assert_eq!(code, 0);
    let statuses: Vec<String> = ["a", "b", "c", "d"]
        .iter()
        .map(|s| status_of(&stdout, s))
        .collect();
    assert_eq!(statuses, ["skipped", "ran", "skipped", "skipped"]);
    assert_eq!(
        std::fs::read_to_string(d.join("b.log")).unwrap(),
        "ran\nran\n"
    );

    let (code, stdout, _) = distill(d, &["run", "--force", "p.yaml", "--from", "b", "--to", "c"]);
    assert_eq!(code, 0);
    let statuses: Vec<String> = ["a", "b", "c", "d"]
        .iter()
        .map(|s| status_of(&stdout, s))
        .collect();
    assert_eq!(statuses, ["-", "ran", "ran", "-"]);

    std::fs::write(d.join("a.txt"), "edited\n").unwrap();
    let (code, stdout, _) = distill(d, &["run", "p.yaml"]);
    assert_eq!(code, 0);
    assert_eq!(
        status_of(&stdout, "a"),
        "ran",
        "output a.txt changed: {stdout}"
    );
    assert_eq!(
        status_of(&stdout, "b"),
        "skipped",
        "a rewrote the same a.txt"
    );

    let (code, _, stderr) = distill(d, &["run", "p.yaml", "--force", "nope"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("no stage named nope; the stages are a, b, c, d"),
        "{stderr}"
    );
}

#[test]
fn a_failing_stage_stops_the_pipeline_and_runs_again_next_time() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let failing = COMMANDS.replace("cat a.txt > b.txt", "test -e go && cat a.txt > b.txt");
    std::fs::write(d.join("p.yaml"), &failing).unwrap();
    let (code, stdout, stderr) = distill(d, &["run", "p.yaml"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("stage b failed: the command exited with status 1"),
        "{stderr}"
    );
    assert_eq!(status_of(&stdout, "b"), "failed");
    assert_eq!(status_of(&stdout, "c"), "blocked");
    assert!(!d.join("c").exists());
    std::fs::write(d.join("go"), "").unwrap();
    let (code, stdout, _) = distill(d, &["run", "p.yaml"]);
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(status_of(&stdout, "a"), "skipped");
    assert_eq!(status_of(&stdout, "b"), "ran");
    assert_eq!(status_of(&stdout, "c"), "ran");
}

#[test]
fn a_failed_pipeline_still_ends_with_a_report_that_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let report = "  report:
    kind: report
    args:
      metrics: ${out}/metrics.json
      train-log:
        - ${out}/teacher-1.metrics.csv
        - ${out}/student.metrics.csv
      subsets: ${out}/specialists.yaml
      store: ${out}/store.parquet
      pipeline: p.yaml
      allow-missing: true
      out: ${out}/report.html
";
    let good = small_pipeline(2, 1) + report;
    // --limit 0 passes the flag parser and fails when the evaluation runs.
    let failing = good.replace("limit: 300", "limit: 0");
    std::fs::write(d.join("p.yaml"), &failing).unwrap();
    let (code, stdout, stderr) = distill(d, &["run", "p.yaml"]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert_eq!(status_of(&stdout, "eval"), "failed");
    assert_eq!(status_of(&stdout, "report"), "ran", "{stdout}");
    assert_eq!(
        stdout.trim_end().lines().last(),
        Some("report: out/report.html")
    );
    let html = std::fs::read_to_string(d.join("out/report.html")).unwrap();
    assert!(
        html.contains("id=\"missing\""),
        "the page says what is missing"
    );
    assert!(html.contains("stage <b>eval</b> (eval): started but did not complete"));
    assert!(html.contains("out/metrics.json</code>: the eval stage writes it"));
    assert!(
        html.contains("id=\"fig-learning-error\""),
        "the curves exist already"
    );

    std::fs::write(d.join("p.yaml"), &good).unwrap();
    let (code, stdout, stderr) = distill(d, &["run", "p.yaml"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(status_of(&stdout, "eval"), "ran");
    assert_eq!(status_of(&stdout, "report"), "ran");
    assert_eq!(
        stdout.trim_end().lines().last(),
        Some("report: out/report.html")
    );
    let html = std::fs::read_to_string(d.join("out/report.html")).unwrap();
    assert!(!html.contains("id=\"missing\""));
    for id in [
        "results",
        "fig-confusion-student",
        "fig-clusters",
        "fig-tradeoff-size",
    ] {
        assert!(html.contains(&format!("id=\"{id}\"")), "{id}");
    }
}

/// (pipeline text, `file:line:column` the error must start with, words it must contain).
fn bad_pipelines() -> Vec<(String, &'static str, &'static str)> {
    let train = |args: &str| {
        format!(
            "vars:\n  out: out\nstages:\n  t:\n    kind: train\n    args:\n      data: {MNIST}\n{args}      out: ${{out}}/t.onnx\n"
        )
    };
    vec![
        (
            train("      epoch: 3\n"),
            "p.yaml:8:7: stage t (train) has no flag `epoch`",
            "did you mean `epochs`?",
        ),
        (
            train("      epochs: many\n"),
            "p.yaml:8:7: stage t (train): invalid value 'many' for '--epochs",
            "distill train --help",
        ),
        (
            train("      hidden:\n        a: 1\n"),
            "p.yaml:8:7: stage t: `hidden` is a mapping",
            "a list of them",
        ),
        (
            train("      optimizer: adamw\n"),
            "p.yaml:8:7: stage t (train): --optimizer adamw: use sgd or adam",
            "",
        ),
        (
            train("      soft-targets: ${out}/missing.parquet\n"),
            "p.yaml:8:7: stage t: input out/missing.parquet does not exist and no stage writes it",
            "relative paths are taken from",
        ),
        (
            train("      seed: ${sede}\n"),
            "p.yaml:8:13: undefined variable `sede`",
            "defined variables: out",
        ),
        (
            "stages:\n  t:\n    kind: trian\n".to_string(),
            "p.yaml:3:5: stage t: unknown kind `trian`",
            "did you mean `train`?",
        ),
        (
            "stages:\n  t:\n    kind: cmd\n    cmd: touch x\n    outs: [x]\n  u:\n    kind: cmd\n    cmd: cat x\n    deps:\n      - x\n      - ${item}\n"
                .to_string(),
            "p.yaml:11:9: undefined variable `item`",
            "only in a stage with `foreach:`",
        ),
        (
            "stages:\n  a:\n    kind: cmd\n    cmd: cp y x\n    deps: [y]\n    outs: [x]\n  b:\n    kind: cmd\n    cmd: cp x y\n    deps: [x]\n    outs: [y]\n"
                .to_string(),
            "p.yaml:10:5: dependency cycle: a → b → a",
            "cannot depend on its own outputs",
        ),
        (
            "stages:\n  t:\n    kind: train\n    arg:\n      epochs: 1\n".to_string(),
            "p.yaml:4:5: stage t: unknown key `arg`",
            "did you mean `args`?",
        ),
        (
            "stages:\n  t:\n    kind: train\n    args:\n      epochs: [1\n".to_string(),
            "p.yaml:",
            "not valid YAML",
        ),
    ]
}

#[test]
fn mistakes_in_the_yaml_point_at_their_line_and_nothing_runs() {
    for (text, at, words) in bad_pipelines() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("p.yaml"), &text).unwrap();
        let (code, stdout, stderr) = distill(d, &["run", "p.yaml"]);
        assert_eq!(code, 2, "{text}\n{stdout}\n{stderr}");
        assert!(
            stderr.starts_with(&format!("error: {at}")),
            "expected `{at}` for\n{text}\ngot:\n{stderr}"
        );
        assert!(stderr.contains(words), "expected `{words}` in:\n{stderr}");
        assert!(stderr.contains("hint: ") || words.is_empty(), "{stderr}");
        let left: Vec<PathBuf> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(left, [d.join("p.yaml")], "something ran for\n{text}");
    }
}

#[test]
fn every_shipped_pipeline_validates() {
    // The paper pipelines other than paper-teacher.yaml read the shared teacher's files
    // (work/paper/teacher/), which exist only once paper-teacher.yaml has run: they are dry-run in a
    // copy of the repository's layout (pipelines/, data/) where empty stand-ins take those files'
    // places, so that the check holds in a fresh clone as well as after `make reproduce`.
    let stand_in = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(stand_in.path().join("pipelines")).unwrap();
    std::os::unix::fs::symlink(Path::new(ROOT).join("data"), stand_in.path().join("data")).unwrap();
    let teacher = stand_in.path().join("work/paper/teacher");
    std::fs::create_dir_all(&teacher).unwrap();
    for f in [
        "teacher.onnx",
        "soft-targets.parquet",
        "teacher.metrics.csv",
    ] {
        std::fs::write(teacher.join(f), b"").unwrap();
    }
    let (mut seen, mut reading_the_teacher) = (0, 0);
    for entry in std::fs::read_dir(Path::new(ROOT).join("pipelines")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let (dir, file) = if name.starts_with("paper-") && name != "paper-teacher.yaml" {
            let copy = stand_in.path().join("pipelines").join(&name);
            std::fs::copy(&path, &copy).unwrap();
            reading_the_teacher += 1;
            (stand_in.path().to_path_buf(), copy)
        } else {
            (PathBuf::from(ROOT), path.clone())
        };
        let (code, stdout, stderr) = distill(&dir, &["run", file.to_str().unwrap(), "--dry-run"]);
        assert_eq!(code, 0, "{}:\n{stdout}\n{stderr}", path.display());
        assert!(stdout.contains("dry run: nothing ran"), "{stdout}");
        seen += 1;
    }
    assert_eq!(seen, 15, "the shipped pipelines");
    assert_eq!(
        reading_the_teacher, 5,
        "the paper pipelines that read the shared teacher"
    );
}

#[test]
fn a_quantize_stage_runs_after_the_model_it_reads_and_is_skipped_when_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let quantize = [
        "  quantize:",
        "    kind: quantize",
        "    args:",
        "      model: out/model.onnx",
        "      method: static",
        &format!("      data: {MNIST}"),
        "      calibration-rows: 256",
        "      out: out/model.int8.onnx\n",
    ]
    .join("\n");
    std::fs::write(d.join("p.yaml"), training_pipeline(&quantize)).unwrap();
    let (code, stdout, stderr) = distill(d, &["run", "p.yaml"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(status_of(&stdout, "quantize"), "ran");
    assert!(stdout.contains("argmax agreement"), "{stdout}");
    assert!(d.join("out/model.int8.onnx").is_file());
    let (code, stdout, stderr) = distill(d, &["run", "p.yaml"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(status_of(&stdout, "quantize"), "skipped");
    // A value the stage refuses is refused before anything runs.
    let bad = quantize.replace("calibration-rows: 256", "calibration-rows: 0");
    std::fs::write(d.join("p.yaml"), training_pipeline(&bad)).unwrap();
    let (code, _, stderr) = distill(d, &["run", "p.yaml", "--dry-run"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--calibration-rows"), "{stderr}");
}

#[test]
fn stage_commands_are_the_stage_tools() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, _) = distill(dir.path(), &["train", "--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("Usage: distill train"), "{stdout}");
    let (code, stdout, _) = distill(dir.path(), &["specialists", "--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("Usage: distill specialists"), "{stdout}");
    let (code, _, stderr) = distill(dir.path(), &["eval", "--data", MNIST]);
    assert_eq!(code, 2);
    assert!(stderr.starts_with("error: "), "{stderr}");
    let (code, stdout, _) = distill(dir.path(), &["report", "--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("Usage: distill report"), "{stdout}");
    let (code, _, stderr) = distill(dir.path(), &["distil"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("unknown command `distil`"), "{stderr}");
}

/// A teacher, its store and a student whose epochs are a variable, on 300 rows.
fn vars_pipeline() -> String {
    format!(
        "\
vars:
  data: {MNIST}
  out: out
  student_epochs: 1
stages:
  teacher:
    kind: train
    args:
      data: ${{data}}
      limit: 300
      validation: 50
      hidden: 16
      epochs: 1
      test-split: none
      out: ${{out}}/teacher.onnx
  teach:
    kind: teach
    args:
      model: ${{out}}/teacher.onnx
      data: ${{data}}
      limit: 300
      out: ${{out}}/store.parquet
  student:
    kind: train
    args:
      data: ${{data}}
      limit: 300
      validation: 50
      soft-targets: ${{out}}/store.parquet
      hidden: 16
      epochs: ${{student_epochs}}
      test-split: none
      out: ${{out}}/student.onnx
"
    )
}

/// The line of `stage` in `distill status`'s output.
fn status_line<'a>(stdout: &'a str, stage: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(stage))
        .unwrap_or_else(|| panic!("no line for {stage} in:\n{stdout}"))
}

#[test]
fn set_overrides_vars_status_is_short_and_a_new_version_reruns() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("p.yaml"), vars_pipeline()).unwrap();
    let (code, stdout, stderr) = distill(d, &["run", "p.yaml"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let lock = std::fs::read_to_string(d.join("p.lock")).unwrap();
    let version = format!("version: {}", env!("CARGO_PKG_VERSION"));
    assert_eq!(lock.matches(&version).count(), 3, "{lock}");

    let (code, stdout, _) = distill(d, &["status", "p.yaml"]);
    assert_eq!(code, 0, "{stdout}");
    for s in ["teacher", "teach", "student"] {
        assert!(status_line(&stdout, s).ends_with("up to date"), "{stdout}");
    }
    assert!(stdout.contains("3 of 3 stages up to date"), "{stdout}");

    // --set changes only what reads the variable.
    let (code, stdout, _) = distill(d, &["status", "p.yaml", "-S", "student_epochs=2"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        status_line(&stdout, "teach").ends_with("up to date"),
        "{stdout}"
    );
    assert!(
        status_line(&stdout, "student").ends_with("runs: args changed"),
        "{stdout}"
    );
    let student = mtime(&d.join("out/student.onnx"));
    let store = mtime(&d.join("out/store.parquet"));
    let (code, stdout, stderr) = distill(d, &["run", "p.yaml", "--set", "student_epochs=2"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(status_of(&stdout, "teacher"), "skipped", "{stdout}");
    assert_eq!(status_of(&stdout, "teach"), "skipped", "{stdout}");
    assert_eq!(status_of(&stdout, "student"), "ran", "{stdout}");
    assert_ne!(mtime(&d.join("out/student.onnx")), student);
    assert_eq!(mtime(&d.join("out/store.parquet")), store);
    let csv = std::fs::read_to_string(d.join("out/student.metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "two epochs and a header:\n{csv}");
    // Without the override the file's value is back, and so is the run.
    let (_, stdout, _) = distill(d, &["status", "p.yaml"]);
    assert!(
        status_line(&stdout, "student").ends_with("runs: args changed"),
        "{stdout}"
    );
    let (_, stdout, _) = distill(d, &["status", "p.yaml", "--set=student_epochs=2"]);
    assert!(stdout.contains("3 of 3 stages up to date"), "{stdout}");

    // An unknown variable, or no `=`, is a usage error that lists the variables; nothing runs.
    let lock = std::fs::read_to_string(d.join("p.lock")).unwrap();
    let (code, _, stderr) = distill(d, &["run", "p.yaml", "--set", "student_epoch=3"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("no variable `student_epoch`")
            && stderr.contains("did you mean `student_epochs`")
            && stderr.contains("its vars are data, out, student_epochs"),
        "{stderr}"
    );
    let (code, _, stderr) = distill(d, &["run", "p.yaml", "-S", "student_epochs"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("expected NAME=VALUE"), "{stderr}");
    assert_eq!(std::fs::read_to_string(d.join("p.lock")).unwrap(), lock);

    // A lock written by another version of distill reruns the stage (the seeded teacher writes
    // the same file again, so the stages below it stay up to date).
    // The stages are sorted by name in the lock: the last is the teacher's.
    let at = lock.rfind(&version).unwrap();
    assert!(
        lock[..at].rfind("  teacher:") > lock[..at].rfind("  teach:"),
        "{lock}"
    );
    let old = format!(
        "{}version: 0.0.0-old{}",
        &lock[..at],
        &lock[at + version.len()..]
    );
    std::fs::write(d.join("p.lock"), &old).unwrap();
    let (_, stdout, _) = distill(d, &["status", "p.yaml", "-S", "student_epochs=2"]);
    assert!(
        stdout.contains(&format!(
            "runs: distill version changed (0.0.0-old -> {})",
            env!("CARGO_PKG_VERSION")
        )),
        "{stdout}"
    );
    let (code, stdout, stderr) = distill(d, &["run", "p.yaml", "-S", "student_epochs=2"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(status_of(&stdout, "teacher"), "ran", "{stdout}");
    assert_eq!(status_of(&stdout, "teach"), "skipped", "{stdout}");
    assert_eq!(status_of(&stdout, "student"), "skipped", "{stdout}");
    assert!(
        stdout.contains("distill version changed (0.0.0-old"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("p.lock"))
            .unwrap()
            .matches(&version)
            .count(),
        3
    );
}

/// A pipeline named by a path relative to where `distill run` starts, whose `wdir` is another
/// folder: its lock goes beside it, and a second run finds it there.
#[test]
fn a_relative_pipeline_path_finds_its_lock_wherever_wdir_points() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("sub/work")).unwrap();
    std::fs::write(
        d.join("sub/p.yaml"),
        "wdir: work\nstages:\n  a:\n    kind: cmd\n    cmd: echo one > a.txt\n    outs: [a.txt]\n",
    )
    .unwrap();
    let (code, stdout, stderr) = distill(d, &["run", "sub/p.yaml"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(d.join("sub/work/a.txt").is_file());
    assert!(d.join("sub/p.lock").is_file(), "{stdout}\n{stderr}");
    let (code, stdout, _) = distill(d, &["run", "sub/p.yaml"]);
    assert_eq!(code, 0);
    assert_eq!(status_of(&stdout, "a"), "skipped", "{stdout}");
}
