//! `distill run --executor slurm`: each stage that is out of date becomes an `sbatch` job, with
//! `--dependency=afterok:` on the jobs that write its inputs; the expansions of a `foreach` stage
//! (and a `--shard K/N` stage) become one job array, `SLURM_ARRAY_TASK_ID` choosing the expansion
//! (K for shards). A job runs the stage's own command line (`distill teach --model=... ...`, the
//! one the local executor runs in-process), writes the stage's report and its exit code beside its
//! log under `WDIR/.distill/slurm/PIPELINE/`, and the runner records the stage in the lock when it
//! sees that file. The submitted jobs are kept in `jobs.yaml` there, so that a later `distill run`
//! (after `--no-wait`, or an interrupted wait) records the jobs that finished and does not submit
//! again the ones still queued or running.

mod executor;
mod jobs;
mod plan;
mod script;
mod tools;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::error::{PipelineError, Result};
use super::graph::Graph;
use super::lock::{Entry, State};
use super::runner::{Row, Runner, Status, say};
use super::spec::Kind;
use super::stage::{Stage, StageConfig};

use jobs::*;
use plan::*;
use script::*;
use tools::*;

pub(super) use executor::{execute, print_scripts};
pub(super) use jobs::{note_submitted, pick_up_for_local};

/// The flags of `distill run --executor slurm`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlurmOptions {
    /// `--partition P`.
    pub partition: Option<String>,
    /// More `sbatch` options (`--slurm-opt '--time=30 --mem=4G'`), one per item, each written as
    /// an `#SBATCH` line of every job.
    pub opts: Vec<String>,
    /// Wait for the jobs and record them in the lock (the default), or return once submitted.
    pub wait: bool,
}

/// `sbatch` options the executor sets itself, refused in `--slurm-opt`.
const OWN_OPTIONS: [&str; 8] = [
    "--array",
    "--dependency",
    "--output",
    "--error",
    "--job-name",
    "--chdir",
    "--wrap",
    "--parsable",
];

impl SlurmOptions {
    /// Splits each `--slurm-opt` value at white space; refuses a word that is not an option and
    /// the options the executor sets itself.
    pub fn parse_opts(values: &[String]) -> std::result::Result<Vec<String>, String> {
        let mut opts = Vec::new();
        for v in values {
            for word in v.split_whitespace() {
                if !word.starts_with('-') {
                    return Err(format!(
                        "--slurm-opt: `{word}` is not an sbatch option; write options as \
                         --slurm-opt '--time=30 --mem=4G' (one word each, `--name=value`)"
                    ));
                }
                let name = word.split('=').next().unwrap_or_default();
                if OWN_OPTIONS.contains(&name)
                    || ["-a", "-d", "-o", "-e", "-J", "-D"].contains(&name)
                {
                    return Err(format!(
                        "--slurm-opt: {name} is set by distill run for each job (arrays, \
                         dependencies, logs, names and the working folder); leave it out"
                    ));
                }
                opts.push(word.to_string());
            }
        }
        Ok(opts)
    }
}

/// The folder of a pipeline's Slurm scripts, logs and state: `WDIR/.distill/slurm/NAME`, NAME the
/// pipeline file's name without `.yaml`.
pub fn state_dir(wdir: &Path, pipeline: &Path) -> PathBuf {
    let stem = pipeline
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pipeline".into());
    wdir.join(".distill").join("slurm").join(safe_name(&stem))
}

/// A stage name as a file name: `teach@1` stays, any other character than letters, digits and
/// `@._-` becomes `_`.
fn safe_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "@._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::spec::Document;

    const SYNTH: &str = "synthetic:classes=10,groups=2,dim=8,seed=1";

    fn pipeline(text: &str) -> (Vec<Stage>, Graph) {
        let doc = Document::parse(
            Path::new("p.yaml"),
            text.replace("SYNTH", &format!("'{SYNTH}'")),
        )
        .unwrap();
        let mut stages: Vec<Stage> = doc
            .stages
            .iter()
            .map(|s| Stage::resolve(&doc, s).unwrap())
            .collect();
        let graph = Graph::build(&doc, &mut stages).unwrap();
        (stages, graph)
    }

    /// A teacher, its store in three shards, a student from the shards, an evaluation, a report.
    const SHARDED: &str = "
stages:
  teacher:
    kind: train
    args: {data: SYNTH, hidden: 8, out: w/teacher.onnx}
  teach:
    kind: teach
    foreach: [1, 2, 3]
    args: {model: w/teacher.onnx, data: SYNTH, shard: '${item}/3', out: w/soft}
  student:
    kind: train
    args: {data: SYNTH, hidden: 4, soft-targets: w/soft, out: w/student.onnx}
  eval:
    kind: eval
    args: {teacher: w/teacher.onnx, model: w/student.onnx, data: SYNTH, out: w/metrics.json}
  report:
    kind: report
    args: {metrics: w/metrics.json, allow-missing: true, out: w/report.html}
";

    fn index(stages: &[Stage], name: &str) -> usize {
        stages.iter().position(|s| s.name == name).unwrap()
    }

    #[test]
    fn foreach_shards_become_one_array_and_jobs_wait_for_their_inputs() {
        let (stages, graph) = pipeline(SHARDED);
        let n = stages.len();
        let plan = plan_jobs(&stages, &graph, &vec![true; n], &vec![None; n]);
        let names: Vec<&str> = plan.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["teacher", "teach", "student", "eval", "report"]);
        let teach = &plan[1];
        assert!(teach.is_array());
        assert_eq!(teach.array_spec(), "1-3");
        let tasks: Vec<(&str, Option<usize>)> = teach
            .members
            .iter()
            .map(|&(i, t)| (stages[i].name.as_str(), t))
            .collect();
        assert_eq!(
            tasks,
            [
                ("teach@1", Some(1)),
                ("teach@2", Some(2)),
                ("teach@3", Some(3))
            ]
        );
        // teach waits for the teacher, the student for the whole array, eval for both models,
        // the report (afterany) for eval.
        assert_eq!(plan[0].after_jobs, Vec::<usize>::new());
        assert_eq!(teach.after_jobs, [0]);
        assert_eq!(plan[2].after_jobs, [1]);
        assert_eq!(plan[3].after_jobs, [0, 2]);
        assert_eq!(plan[4].after_jobs, [3]);
        assert!(!plan[0].is_array() && !plan[2].is_array());
        assert!(plan[4].any && !plan[3].any);
    }

    #[test]
    fn only_stale_shards_are_submitted_and_running_jobs_are_waited_for_by_id() {
        let (stages, graph) = pipeline(SHARDED);
        let n = stages.len();
        let mut submit = vec![false; n];
        submit[index(&stages, "teach@1")] = true;
        submit[index(&stages, "teach@3")] = true;
        submit[index(&stages, "student")] = true;
        let mut in_flight = vec![None; n];
        in_flight[index(&stages, "teacher")] = Some("41".to_string());
        let plan = plan_jobs(&stages, &graph, &submit, &in_flight);
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[0].name, "teach");
        assert_eq!(plan[0].array_spec(), "1,3");
        assert_eq!(plan[0].after_ids, ["41"]);
        assert_eq!(plan[1].name, "student");
        assert_eq!(plan[1].after_jobs, [0]);
        assert!(plan[1].after_ids.is_empty());
    }

    #[test]
    fn a_shard_is_its_array_task_whatever_its_foreach_position() {
        let (stages, graph) = pipeline(
            "
stages:
  teacher:
    kind: train
    args: {data: SYNTH, hidden: 8, out: w/teacher.onnx}
  teach:
    kind: teach
    foreach: [{k: 4}, {k: 2}]
    args: {model: w/teacher.onnx, data: SYNTH, shard: '${item.k}/4', out: w/soft}
  last:
    kind: teach
    args: {model: w/teacher.onnx, data: SYNTH, shard: 3/4, out: w/soft}
",
        );
        let n = stages.len();
        let plan = plan_jobs(&stages, &graph, &vec![true; n], &vec![None; n]);
        assert_eq!(plan[1].name, "teach");
        assert_eq!(plan[1].array_spec(), "2,4");
        assert_eq!(plan[1].members[0].1, Some(4));
        // A single --shard 3/4 stage is an array of one task, K = 3.
        assert_eq!(plan[2].name, "last");
        assert_eq!(plan[2].members, [(index(&stages, "last"), Some(3))]);
        assert_eq!(plan[2].array_spec(), "3");
    }

    #[test]
    fn expansions_that_read_each_other_become_separate_jobs() {
        let (stages, graph) = pipeline(
            "
stages:
  step:
    kind: cmd
    foreach: [1, 2]
    cmd: echo ${item} > s${item}
    deps: ['${item}']
    outs: ['s${item}']
  one:
    kind: cmd
    cmd: echo > 1
    outs: ['1']
  two:
    kind: cmd
    cmd: cat s1 > 2
    deps: [s1]
    outs: ['2']
",
        );
        let n = stages.len();
        let plan = plan_jobs(&stages, &graph, &vec![true; n], &vec![None; n]);
        // step@2 reads `2`, written by `two`, which reads step@1's s1: one array for step@1 and
        // step@2 would wait for itself, so each expansion is its own job (array task 1 and 2).
        let of = |name: &str| {
            plan.iter()
                .position(|j| j.members.iter().any(|&(i, _)| stages[i].name == name))
                .unwrap()
        };
        assert_eq!(plan.len(), 4);
        assert_ne!(of("step@1"), of("step@2"));
        assert_eq!(plan[of("step@2")].members[0].1, Some(2));
        assert_eq!(plan[of("two")].after_jobs, [of("step@1")]);
        assert_eq!(plan[of("step@2")].after_jobs, [of("two")]);
        assert!(of("step@1") < of("two") && of("two") < of("step@2"));
    }

    #[test]
    fn the_script_runs_each_tasks_stage_command_line() {
        let (stages, graph) = pipeline(SHARDED);
        let n = stages.len();
        let plan = plan_jobs(&stages, &graph, &vec![true; n], &vec![None; n]);
        let options = SlurmOptions {
            partition: Some("gpu".into()),
            opts: SlurmOptions::parse_opts(&["--time=30 --mem=4G".into()]).unwrap(),
            wait: true,
        };
        let ctx = ScriptContext {
            wdir: Path::new("/data/run"),
            dir: Path::new("/data/run/.distill/slurm/p"),
            pipeline: Path::new("/data/run/p.yaml"),
            options: &options,
        };
        let exe = Path::new("/opt/distill");
        let commands = |job: &JobPlan| -> Vec<Vec<String>> {
            job.members
                .iter()
                .map(|&(i, _)| job_command(exe, &stages[i], false))
                .collect()
        };
        let teach = script(&ctx, &stages, &plan[1], &["7".into()], &commands(&plan[1])).unwrap();
        for line in [
            "#!/bin/sh\n",
            "#SBATCH --job-name=p:teach\n",
            "#SBATCH --output=/data/run/.distill/slurm/p/teach-%A_%a.log\n",
            "#SBATCH --chdir=/data/run\n",
            "#SBATCH --array=1-3\n",
            "#SBATCH --dependency=afterok:7\n",
            "#SBATCH --partition=gpu\n",
            "#SBATCH --time=30\n#SBATCH --mem=4G\n",
            "case \"${SLURM_ARRAY_TASK_ID:-}\" in\n",
            &format!(
                "2) stage=teach@2; set -- /opt/distill teach --model=w/teacher.onnx --data={SYNTH} --shard=2/3 --out=w/soft ;;\n"
            ),
            "\"$@\" > \"$dir/$stage.report.tmp\"\n",
            "mv \"$dir/.$stage.exit.tmp\" \"$dir/$stage.exit\"\n",
        ] {
            assert!(teach.contains(line), "{line:?} not in\n{teach}");
        }
        let teacher = script(&ctx, &stages, &plan[0], &[], &commands(&plan[0])).unwrap();
        assert!(teacher.contains("#SBATCH --output=/data/run/.distill/slurm/p/teacher-%j.log\n"));
        assert!(!teacher.contains("--array") && !teacher.contains("--dependency"));
        assert!(!teacher.contains("case "));
        assert!(teacher.contains("stage=teacher; set -- /opt/distill train "));
        let report = script(&ctx, &stages, &plan[4], &["9".into()], &commands(&plan[4])).unwrap();
        assert!(report.contains("#SBATCH --dependency=afterany:9\n"));
        // A train stage interrupted with a checkpoint resumes, as locally.
        let resumed = job_command(exe, &stages[index(&stages, "student")], true);
        assert_eq!(resumed.last().map(String::as_str), Some("--resume"));
        assert_eq!(&resumed[..2], ["/opt/distill", "train"]);
    }

    #[test]
    fn slurm_options_are_words_and_not_the_executors_own() {
        assert_eq!(
            SlurmOptions::parse_opts(&["--time=30  --mem=4G".into(), "-N1".into()]).unwrap(),
            ["--time=30", "--mem=4G", "-N1"]
        );
        let e = SlurmOptions::parse_opts(&["--array=1-3".into()]).unwrap_err();
        assert!(e.contains("--array is set by distill run"), "{e}");
        let e = SlurmOptions::parse_opts(&["-d afterok:1".into()]).unwrap_err();
        assert!(e.contains("-d is set by distill run"), "{e}");
        let e = SlurmOptions::parse_opts(&["time=30".into()]).unwrap_err();
        assert!(e.contains("`time=30` is not an sbatch option"), "{e}");
    }

    #[test]
    fn an_exit_file_gives_code_seconds_and_job() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("teach@2.exit"),
            "0 1700000000.250000000 1700000003.750000000 12\n",
        )
        .unwrap();
        assert_eq!(
            read_exit(dir.path(), "teach@2"),
            Some((0, 3.5, "12".into()))
        );
        // `date` without %N.
        std::fs::write(dir.path().join("a.exit"), "3 1700000000.N 1700000002.N 7\n").unwrap();
        assert_eq!(read_exit(dir.path(), "a"), Some((3, 2.0, "7".into())));
        assert_eq!(read_exit(dir.path(), "missing"), None);
    }

    #[test]
    fn stage_names_are_file_names() {
        assert_eq!(safe_name("teach@1"), "teach@1");
        assert_eq!(safe_name("t@a/b c"), "t@a_b_c");
        assert_eq!(
            state_dir(Path::new("/w"), Path::new("/p/mnist.yaml")),
            PathBuf::from("/w/.distill/slurm/mnist")
        );
    }
}
