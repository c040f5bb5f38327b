"""`make results-cnn`: runs pipelines/mnist-cnn.yaml (CNN teachers trained here, their soft targets, a
small CNN student distilled from them, the same CNN on hard labels, an MLP student) and writes its
table into docs/results.md between the cnn-results markers, with the commit, the CPU and the date.

The baseline (the student's network on hard labels) runs the student's whole epoch budget and keeps
its best validation epoch, so it is both the compute-matched reference (as many rows as the distilled
student) and the early-stopped one; the table says which epoch that was and whether it was the last. Figures are test errors on the 10,000 MNIST test images; nothing is chosen
on them. With --no-pipeline, only reads the files of an earlier run.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import time

import docs_section

ROOT = docs_section.ROOT
PIPELINE = "pipelines/mnist-cnn.yaml"
OUT = "work/mnist-cnn"


def lock_seconds():
    """Seconds each stage of the last complete run took, from the pipeline's lock."""
    import re

    path = os.path.join(ROOT, PIPELINE.replace(".yaml", ".lock"))
    seconds, stage = {}, None
    with open(path) as f:
        for line in f:
            m = re.match(r"^  (\S+):$", line)
            if m:
                stage = m.group(1)
            m = re.match(r"^    seconds: ([0-9.]+)$", line)
            if m and stage:
                seconds[stage] = float(m.group(1))
    return seconds


def epochs_of(name):
    """(epochs run, best validation epoch, its validation errors %, whether the last epoch was best)."""
    with open(os.path.join(ROOT, OUT, f"{name}.metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    vals = [float(r["val_error"]) for r in rows]
    best = min(range(len(vals)), key=lambda i: vals[i])
    return len(rows), best + 1, 100 * vals[best], best == len(rows) - 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-pipeline", action="store_true", help="read an earlier run's files only")
    ap.add_argument("--no-write", action="store_true", help="print the table, leave docs/ alone")
    args = ap.parse_args()
    if not args.no_pipeline:
        t = time.perf_counter()
        r = subprocess.run([os.path.join(ROOT, "target", "release", "distill"), "run", PIPELINE], cwd=ROOT)
        if r.returncode != 0:
            sys.exit(f"distill run {PIPELINE} failed ({r.returncode})")
        print(f"pipeline: {time.perf_counter() - t:.0f} s of wall time in this invocation")
    with open(os.path.join(ROOT, OUT, "metrics.json")) as f:
        metrics = json.load(f)
    by = {e["name"]: e for e in metrics["entries"]}
    need = ["teacher-1", "teacher-2", "teacher-3", "student", "baseline", "mlp-student"]
    missing = [n for n in need if n not in by]
    if missing:
        sys.exit(f"{OUT}/metrics.json: no entry for {', '.join(missing)}; run the pipeline first")
    ens = next(e for e in metrics["entries"] if e["type"] == "ensemble")
    seconds = lock_seconds()
    total = sum(seconds.values())
    b_run, b_best, _, b_last = epochs_of("baseline")
    s_run = epochs_of("student")[0]
    teacher_params = [by[f"teacher-{i}"]["parameters"] for i in (1, 2, 3)]
    s, b, ensemble = by["student"]["errors"], by["baseline"]["errors"], ens["errors"]
    rows = [
        ("teacher 1", "teacher-1"), ("teacher 2", "teacher-2"), ("teacher 3", "teacher-3"),
    ]
    table = [
        "| model | parameters | test errors | NLL | batch-1 latency (ms, ONNX Runtime CPU) |",
        "|---|---|---|---|---|",
    ]
    for label, name in rows:
        e = by[name]
        table.append(f"| {label} | {e['parameters']:,} | {e['errors']} | {e['nll']:.4f} | "
                     f"{e['latency_ms_batch1']:.3f} |")
    table.append(f"| the three teachers' {ens['name']} | {sum(teacher_params):,} | {ensemble} | "
                 f"{ens['nll']:.4f} | — |")
    for label, name in (
        (f"CNN student, distilled (T = 20), {s_run} epochs", "student"),
        (f"the same CNN on hard labels, {b_run} epochs, its best validation epoch ({b_best}) kept"
         + (" (the last: still improving)" if b_last else ""), "baseline"),
        ("784-800-800-10 MLP student, distilled from the same store", "mlp-student"),
    ):
        e = by[name]
        table.append(f"| {label} | {e['parameters']:,} | {e['errors']} | {e['nll']:.4f} | "
                     f"{e['latency_ms_batch1']:.3f} |")
    summary = [
        f"The distilled CNN student has {by['student']['parameters'] / max(teacher_params):.1%} of the "
        f"largest teacher's parameters and {by['student']['parameters'] / min(teacher_params):.1%} of the "
        f"smallest's; its errors are {s / ensemble:.2f}x the ensemble's and "
        f"{abs(100 * (b - s) / b):.1f}% {'fewer' if s <= b else 'more'} than the same network's on "
        "hard labels. The distilled MLP student, "
        f"{by['mlp-student']['parameters'] / by['student']['parameters']:.0f}x the CNN student's size, has "
        f"{by['mlp-student']['errors']}.",
        "",
        "Stage seconds from the run's lock: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items())
        + f"; {total / 60:.1f} minutes in all.",
    ]
    body = [
        "",
        f"`make results-cnn` (`distill run {PIPELINE}`, then scripts/cnn_results.py) at commit "
        f"`{docs_section.commit()}`, {time.strftime('%Y-%m-%d')}, on {docs_section.cpu()}. Errors on the "
        "10,000 MNIST test images; every network saw the 55,000 training rows left after the 5,000 "
        "validation rows; nothing was chosen on the test split.",
        "",
        *table,
        "",
        *summary,
        "",
    ]
    print("\n".join(body))
    if not args.no_write:
        page = docs_section.write_section("results.md", "cnn-results", body,
                                          "## CNN teachers and students (`make results-cnn`)")
        print(f"wrote the table into {page}")


if __name__ == "__main__":
    main()
