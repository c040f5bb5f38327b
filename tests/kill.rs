//! SIGKILL at seeded moments: a killed stage never leaves a file that looks complete, and a rerun
//! leaves no stale temporary file and ends with exactly the result of an uninterrupted run.
//! `make soak` runs the same with more kills (`DISTILL_KILLS`, default 3 per stage here).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MNIST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist");

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_distill"))
}

fn kills() -> usize {
    std::env::var("DISTILL_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

/// A small deterministic generator for the kill delays (xorshift).
struct Delays(u64);
impl Delays {
    /// A delay between 5% and 75% of `duration_ms`, the length of an uninterrupted run: the
    /// margin above is for run-to-run variation (a short run under load varies by more than 10%,
    /// and a delay near its end lets the next, faster run finish before the kill).
    fn within(&mut self, duration_ms: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let span = (duration_ms * 70 / 100).max(1);
        duration_ms * 5 / 100 + self.0 % span
    }
}

fn run_to_end(dir: &Path, args: &[&str]) {
    let out = Command::new(exe())
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "distill {args:?}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `distill ARGS` and SIGKILLs it after `ms` (or lets it finish first).
fn kill_after(dir: &Path, args: &[&str], ms: u64) -> bool {
    let mut child = Command::new(exe())
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < until {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    // A run that ended on its own just before the kill was not killed.
    use std::os::unix::process::ExitStatusExt;
    child.wait().unwrap().signal() == Some(9)
}

/// Runs `distill ARGS` to the end in `dir`; returns its wall time in milliseconds.
fn timed(dir: &Path, args: &[&str]) -> u64 {
    let t = Instant::now();
    run_to_end(dir, args);
    t.elapsed().as_millis() as u64
}

fn temps(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && n.ends_with(".tmp"))
        .collect()
}

fn sha(path: &Path) -> String {
    distill_core::sha256_file(path).unwrap()
}

/// Training: a kill leaves no model; `--resume` after any number of kills gives the same bytes as
/// one uninterrupted run; no temporary file survives the rerun.
#[test]
fn killed_training_resumes_to_the_same_model() {
    let args = [
        "train",
        "--data",
        MNIST,
        "--limit",
        "3000",
        // Large enough that training, not loading the data or the ONNX Runtime check, takes
        // most of the run, so the kills land in training.
        "--hidden",
        "512",
        "--epochs",
        "10",
        "--validation",
        "500",
        "--test-split",
        "none",
        "--threads",
        "1",
        "--out",
        "m.onnx",
    ];
    let clean = tempfile::tempdir().unwrap();
    let duration = timed(clean.path(), &args);
    let want = sha(&clean.path().join("m.onnx"));

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut delays = Delays(0x5eed_0001);
    let mut resume_args = args.to_vec();
    resume_args.push("--resume");
    let mut first = true;
    let mut killed = 0;
    for _ in 0..kills() {
        let a: &[&str] = if first { &args } else { &resume_args };
        if !kill_after(d, a, delays.within(duration)) {
            break;
        }
        killed += 1;
        first = !d.join("m.ckpt").exists();
        // A kill after the model was renamed into place (while the run checks it with ONNX
        // Runtime) leaves the finished model; anything else must leave none.
        let model = d.join("m.onnx");
        assert!(
            !model.exists() || sha(&model) == want,
            "a killed run left a model that looks complete but is not"
        );
    }
    assert!(
        killed > 0,
        "the run ended before the first kill: make it longer"
    );
    eprintln!("training killed {killed} times");
    run_to_end(d, if first { &args } else { &resume_args });
    assert_eq!(sha(&d.join("m.onnx")), want, "resumed model differs");
    assert!(temps(d).is_empty(), "stale temporary files: {:?}", temps(d));
}

/// Teaching: a kill leaves no store; the rerun writes the same store and removes the killed
/// run's temporary file.
#[test]
fn killed_teach_reruns_to_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run_to_end(
        d,
        &[
            "train",
            "--data",
            MNIST,
            "--limit",
            "300",
            "--hidden",
            "256",
            "--epochs",
            "1",
            "--validation",
            "0",
            "--test-split",
            "none",
            "--out",
            "t.onnx",
        ],
    );
    let args = [
        "teach",
        "--model",
        "t.onnx",
        "--data",
        MNIST,
        "--batch",
        "64",
        "--threads",
        "1",
        "--out",
        "s.parquet",
    ];
    let reference = tempfile::tempdir().unwrap();
    std::fs::copy(d.join("t.onnx"), reference.path().join("t.onnx")).unwrap();
    let duration = timed(reference.path(), &args);
    let want = sha(&reference.path().join("s.parquet"));
    let mut delays = Delays(0x5eed_0002);
    let mut killed = 0;
    for _ in 0..kills() {
        if !kill_after(d, &args, delays.within(duration)) {
            break;
        }
        killed += 1;
        let store = d.join("s.parquet");
        assert!(
            !store.exists() || sha(&store) == want,
            "a killed run left a store that looks complete but is not"
        );
    }
    assert!(
        killed > 0,
        "the run ended before the first kill: make it longer"
    );
    eprintln!("teach killed {killed} times");
    run_to_end(d, &args);
    assert!(temps(d).is_empty(), "stale temporary files: {:?}", temps(d));
    assert_eq!(sha(&d.join("s.parquet")), want, "the rerun's store differs");
}

/// `distill run` killed with SIGKILL takes its `cmd` stage's command (and the command's own
/// children) with it: nothing goes on writing outputs after the runner is gone.
#[test]
fn a_killed_runner_takes_its_commands_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("p.yaml"),
        "stages:\n  slow:\n    kind: cmd\n    cmd: sleep 2 && touch late.txt\n    outs: [late.txt]\n",
    )
    .unwrap();
    assert!(
        kill_after(d, &["run", "p.yaml"], 600),
        "the runner ended early"
    );
    std::thread::sleep(Duration::from_millis(3000));
    assert!(
        !d.join("late.txt").exists(),
        "the command went on after distill run was killed"
    );
}

/// A closed stdout (`distill run ... | head -1`) ends the run instead of hanging it.
#[test]
fn a_closed_stdout_does_not_hang_the_runner() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut yaml = String::from("stages:\n");
    for k in 0..6 {
        yaml.push_str(&format!(
            "  s{k}:\n    kind: cmd\n    cmd: echo {k} > o{k}.txt\n    outs: [o{k}.txt]\n"
        ));
    }
    std::fs::write(d.join("p.yaml"), yaml).unwrap();
    // Run once, so that the second run's stage threads print `skipped ...` lines.
    run_to_end(d, &["run", "p.yaml"]);
    let mut child = Command::new(exe())
        .current_dir(d)
        .args(["run", "p.yaml"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let until = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < until,
            "distill run hangs on a closed stdout"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
