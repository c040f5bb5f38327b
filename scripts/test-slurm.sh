#!/usr/bin/env bash
# `make test-slurm`: tests/slurm/pipeline.yaml (a teacher, its soft targets in three shards, a
# distilled student, an evaluation) run by the local executor and through a real one-node Slurm
# (scripts/slurm-local.sh up), which must write byte-identical outputs. On the way it checks:
#   - an unreachable slurmctld: exit 2, a message saying what to do, no lock, no job state;
#   - `--no-wait` submits 4 jobs (the shards as one array of 3), each waiting with afterok on the
#     jobs that write its inputs (scontrol shows the Dependency= of the pending jobs);
#   - a second `distill run --executor slurm` submits nothing again, waits, and records every
#     stage in the lock; a third finds everything up to date;
#   - sacct (slurmdbd's accounting database) lists every job and the array's tasks as JOB_1..JOB_3,
#     and each job became eligible only after the jobs it waited for had ended; the jobcomp record
#     (sacct -c) has them too, with their ArrayJobId/ArrayTaskId;
#   - tests/slurm/failing.yaml: a failing array task is reported (exit 1), the job waiting on it is
#     cancelled, the lock records only what completed, a later run submits only the failed task,
#     and the local executor refuses to run while that job is queued.
# Needs root (apt-get, daemons). Leaves the daemons running; `scripts/slurm-local.sh down` stops them.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/target/release/distill
OUT=$ROOT/work/test-slurm
cd "$ROOT"
[ -x "$BIN" ] || { echo "test-slurm: build first (make build)" >&2; exit 1; }

fail() { echo "test-slurm: FAILED: $*" >&2; exit 1; }
step() { echo; echo "=== test-slurm: $*"; }

step "a one-node Slurm on 127.0.0.1"
scripts/slurm-local.sh up

rm -rf "$OUT"
mkdir -p "$OUT/local" "$OUT/slurm"
cp tests/slurm/pipeline.yaml "$OUT/local/pipeline.yaml"
cp tests/slurm/pipeline.yaml "$OUT/slurm/pipeline.yaml"

step "bad input: an unreachable slurmctld (a copy of the config with a port nobody listens on)"
sed 's/^SlurmctldPort=.*/SlurmctldPort=6899/' /etc/slurm/slurm.conf > "$OUT/unreachable.conf"
set +e
SLURM_CONF=$OUT/unreachable.conf "$BIN" run "$OUT/slurm/pipeline.yaml" --executor slurm \
    > "$OUT/unreachable.out" 2>&1
code=$?
set -e
cat "$OUT/unreachable.out"
[ "$code" = 2 ] || fail "exit code $code, want 2"
grep -q "cannot reach the Slurm controller" "$OUT/unreachable.out" || fail "no clear message"
grep -q "slurm-local.sh up" "$OUT/unreachable.out" || fail "the message does not say how to fix it"
[ ! -e "$OUT/slurm/pipeline.lock" ] || fail "a lock was written"
[ ! -e "$OUT/slurm/.distill" ] || fail "job state was written"
[ -z "$(find "$OUT/slurm" -newer "$OUT/unreachable.conf" ! -path "$OUT/slurm")" ] || fail "files were written"
echo "ok: exit 2, nothing written"

step "the local executor"
start=$(date +%s)
"$BIN" run "$OUT/local/pipeline.yaml" | tail -12
echo "local run: $(( $(date +%s) - start )) s"

step "the Slurm executor, --dry-run (the sbatch scripts)"
"$BIN" run "$OUT/slurm/pipeline.yaml" --executor slurm --dry-run | grep -E '^(---|#SBATCH|[0-9]\))' 

step "the Slurm executor, --no-wait"
start=$(date +%s)
"$BIN" run "$OUT/slurm/pipeline.yaml" --executor slurm --no-wait | tee "$OUT/submit.out"
[ "$(grep -c '^submitted ' "$OUT/submit.out")" = 4 ] || fail "want 4 submissions (teacher, teach array, student, eval)"
grep -q '^submitted teach: Slurm job [0-9]* (array 1-3), afterok [0-9]*$' "$OUT/submit.out" \
    || fail "the shards are not one array of 3 waiting for the teacher"
first=$(sed -n 's/^submitted teacher: Slurm job \([0-9]*\).*/\1/p' "$OUT/submit.out")
echo "-- the jobs as slurmctld holds them while they wait (scontrol show job):"
for id in $(seq "$first" $((first + 3))); do
    scontrol show job -o "$id" | head -1 | grep -o 'JobId=[0-9]*\|ArrayTaskId=[^ ]*\|JobName=[^ ]*\|JobState=[^ ]*\|Dependency=[^ ]*' | paste -sd' '
done | tee "$OUT/scontrol.out"
grep -q "JobName=pipeline:teach JobState=PENDING .*Dependency=afterok:$first" "$OUT/scontrol.out" \
    || grep -q "Dependency=afterok:${first}_\?" "$OUT/scontrol.out" || echo "(the jobs started before scontrol looked)"

step "a second run: submits nothing again, waits, records the lock"
"$BIN" run "$OUT/slurm/pipeline.yaml" --executor slurm | tee "$OUT/wait.out" | tail -14
! grep -q '^submitted ' "$OUT/wait.out" || fail "the second run submitted jobs again"
[ "$(grep -c '^<== ' "$OUT/wait.out")" = 6 ] || fail "want 6 stages recorded as their jobs ended"
echo "slurm run (submit to last record): $(( $(date +%s) - start )) s"
[ ! -e "$OUT/slurm/.distill/slurm/pipeline/jobs.yaml" ] || fail "jobs.yaml left with jobs in it"

step "a third run: everything up to date"
"$BIN" run "$OUT/slurm/pipeline.yaml" --executor slurm > "$OUT/third.out"
grep -q '6 stages: 0 ran, 6 skipped' "$OUT/third.out" || { cat "$OUT/third.out"; fail "stages ran again"; }
echo "ok: 6 stages: 0 ran, 6 skipped"

step "sacct (slurmdbd's accounting database): every job and array task"
# Job ids only grow: this run's jobs are those from the teacher's id on. Accounting reaches the
# database a moment after a job ends, so wait until every job of the run is there and final.
for i in $(seq 60); do
    sacct -X -P -S now-6hours -o JobID,JobIDRaw,JobName,State,ExitCode,Submit,Eligible,Start,End 2>/dev/null \
        | awk -F'|' -v first="$first" 'NR == 1 || $2 >= first' > "$OUT/sacct.out"
    [ "$(grep -c '|COMPLETED|0:0|' "$OUT/sacct.out")" -ge 6 ] && break
    sleep 1
done
cat "$OUT/sacct.out"
python3 - "$OUT" <<'EOF'
import re, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = [l.split("|") for l in (out / "sacct.out").read_text().splitlines()[1:] if l.strip()]
submit = (out / "submit.out").read_text()
jobs = {m[0]: int(m[1]) for m in re.findall(r"^submitted (\S+): Slurm job (\d+)", submit, re.M)}
after = {m[0]: m[1].split(":") for m in re.findall(r"^submitted (\S+): .*afterok (\S+)$", submit, re.M)}
# sacct names an array task ARRAYJOB_TASK; match the rows to the stages by job name (pipeline:STAGE).
by_name = {}
for r in rows:
    jobid, raw, name, state, code, sub, elig, start, end = r
    if not name.startswith("pipeline:"):
        continue
    by_name.setdefault(name.split(":", 1)[1], []).append(dict(id=jobid, state=state, code=code, elig=elig, start=start, end=end))
assert set(by_name) == set(jobs), f"sacct lacks jobs: {set(jobs) - set(by_name)}"
assert len(by_name["teach"]) == 3, f"the teach array has {len(by_name['teach'])} tasks in sacct, want 3"
teach = jobs["teach"]
ids_seen = sorted(t["id"] for t in by_name["teach"])
assert ids_seen == [f"{teach}_{k}" for k in (1, 2, 3)], f"the teach array's tasks are {ids_seen}, want {teach}_1..3"
for name, tasks in by_name.items():
    for t in tasks:
        assert t["state"] == "COMPLETED" and t["code"] == "0:0", (name, t)
ids = {v: k for k, v in jobs.items()}
for name, deps in after.items():
    for d in deps:
        up = ids[int(d)]
        last_end = max(t["end"] for t in by_name[up])
        for t in by_name[name]:
            assert t["elig"] >= last_end, f"{name} was eligible at {t['elig']}, before {up} ended at {last_end}"
            print(f"ok: {name} eligible {t['elig']} >= end of {up} (afterok) {last_end}")
print(f"ok: sacct lists {sum(len(v) for v in by_name.values())} jobs/tasks, all COMPLETED 0:0; the teach array is {', '.join(ids_seen)}")
EOF

step "the same jobs in Slurm's jobcomp record (what sacct -c reads), with their array fields"
state=${DISTILL_SLURM_STATE:-/var/tmp/distill-slurm}
python3 - "$state/jobcomp.txt" "$first" <<'EOF' | tee "$OUT/jobcomp.out"
import sys
for line in open(sys.argv[1]):
    f = dict(w.split("=", 1) for w in line.split() if "=" in w)
    if int(f["JobId"]) >= int(sys.argv[2]):
        print(" ".join(f"{k}={f.get(k, '')}" for k in
              ["JobId", "Name", "JobState", "ArrayJobId", "ArrayTaskId", "EligibleTime", "EndTime"]))
EOF
teach=$(sed -n 's/^submitted teach: Slurm job \([0-9]*\).*/\1/p' "$OUT/submit.out")
for k in 1 2 3; do
    grep -q "Name=pipeline:teach JobState=COMPLETED ArrayJobId=$teach ArrayTaskId=$k " "$OUT/jobcomp.out" \
        || fail "array task ${teach}_$k of the teach stage is not in the jobcomp record"
done
echo "ok: the teach stage ran as array $teach, tasks 1, 2, 3"

step "a stage that fails: reported, the job waiting on it cancelled, only the failed expansion again"
mkdir -p "$OUT/failing"
cp tests/slurm/failing.yaml "$OUT/failing/failing.yaml"
set +e
DISTILL_SLURM_POLL_MS=500 "$BIN" run "$OUT/failing/failing.yaml" --executor slurm > "$OUT/failing.out" 2>&1
code=$?
set -e
cat "$OUT/failing.out"
[ "$code" = 1 ] || fail "a failed job: exit code $code, want 1"
grep -q '^<== part@2 FAILED' "$OUT/failing.out" || fail "the failure was not reported as it happened"
grep -q 'exited with status 3' "$OUT/failing.out" || fail "the job's exit status is not in the message"
grep -q 'part 2 fails on purpose' "$OUT/failing.out" || fail "the end of the job's log is not in the message"
grep -q '^join .*blocked .*upstream part@2 failed; its job was cancelled' "$OUT/failing.out" || fail "join was not cancelled"
[ -z "$(squeue --me -h -o %j | grep '^failing:' || true)" ] || fail "a job of the failed pipeline is still queued"
python3 - "$OUT/failing/failing.lock" <<'EOF'
import sys, re
lock = open(sys.argv[1]).read()
states = dict(re.findall(r"^  (\S+):\n(?:    .*\n)*?    state: (\w+)", lock, re.M))
assert states == {"part@1": "complete", "part@2": "started", "join": "started"}, states
print(f"ok: lock states {states}")
EOF
DISTILL_SLURM_POLL_MS=500 "$BIN" run "$OUT/failing/failing.yaml" --executor slurm --no-wait > "$OUT/failing2.out" 2>&1 || true
grep '^submitted' "$OUT/failing2.out"
grep -q '^submitted part: Slurm job [0-9]* (array 2)$' "$OUT/failing2.out" || fail "want only part@2 submitted again, as array task 2"
set +e
"$BIN" run "$OUT/failing/failing.yaml" > "$OUT/local-while-queued.out" 2>&1
code=$?
set -e
cat "$OUT/local-while-queued.out"
[ "$code" = 2 ] && grep -q 'still queued or running on Slurm' "$OUT/local-while-queued.out" \
    || fail "the local executor ran while Slurm jobs of the pipeline were queued (exit $code)"
set +e
DISTILL_SLURM_POLL_MS=500 "$BIN" run "$OUT/failing/failing.yaml" --executor slurm > "$OUT/failing3.out" 2>&1
code=$?
set -e
[ "$code" = 1 ] && ! grep -q '^submitted' "$OUT/failing3.out" || fail "the waiting run: exit $code, or it submitted again"
echo "ok: failed again with exit 1 after waiting for the queued jobs, nothing submitted twice"

step "SHA-256 of the outputs: local executor against Slurm"
compare() {
    local a b
    a=$(sha256sum < "$OUT/local/$1" | cut -d' ' -f1)
    b=$(sha256sum < "$OUT/slurm/$1" | cut -d' ' -f1)
    printf '%-34s %s %s %s\n' "$1" "$a" "$b" "$([ "$a" = "$b" ] && echo same || echo DIFFERENT)"
    [ "$a" = "$b" ]
}
status=0
for f in work/teacher.onnx work/teacher.best.onnx work/soft/part-1-of-3.parquet work/soft/part-2-of-3.parquet \
         work/soft/part-3-of-3.parquet work/student.onnx work/student.best.onnx; do
    compare "$f" || status=1
done
# metrics.json holds measured latencies and seconds: compare everything else.
for side in local slurm; do
    python3 - "$OUT/$side/work/metrics.json" > "$OUT/$side/work/metrics.untimed.json" <<'EOF'
import json, re, sys
timed = re.compile(r"latency|seconds|rows_per_s|threads")
def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if not timed.search(k)}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v
print(json.dumps(strip(json.load(open(sys.argv[1]))), sort_keys=True, indent=1))
EOF
done
compare work/metrics.untimed.json || status=1
[ "$status" = 0 ] || fail "the Slurm run's outputs differ from the local run's"

step "PASSED: Slurm outputs are byte-identical to the local executor's"
