#!/usr/bin/env python3
"""The specialists' results table of docs/results.md (`make results-specialists`).

For each generalist size, runs pipelines/specialists-pairs.yaml with `--set hidden=H` into its own
folder under work/specialists-results/, in two steps: up to the specialists (the generalist trained
to its best validation epoch, its soft targets, the subsets, the specialists), then the rest with
`baseline_epochs` set from what the first step consumed, so that the compute-matched baseline (the
same generalist trained alone) sees as many training rows as the generalist and the specialists
together: the generalist's epochs plus the specialists' rows (`rows_trained` in their manifest) in
epochs of the training rows, rounded up. Both generalists keep their best validation epoch.

Then trains the specialists again with other seeds on each generalist (the pipeline's flags, read
from its YAML) and evaluates them. Then reads the runs' files (each training run's metrics CSV, the specialists' manifest, the eval
stage's metrics.json), and writes the table with the command, the commit, the CPU and the date
between the markers in docs/results.md (through a temporary file, renamed into place). Every
figure comes from those files; nothing is typed in. Standard library only.

Usage: scripts/specialists_results.py [--hidden 512,512 --hidden 32,32 ...] [--doc FILE]
       [--no-pipeline]   (use the pipeline runs already made; make only the missing seed runs)
"""

import argparse
import csv
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

PIPELINE = "pipelines/specialists-pairs.yaml"
WORK = "work/specialists-results"
BEGIN = "<!-- specialists-results:begin -->"
END = "<!-- specialists-results:end -->"
DEFAULT_SIZES = ["32,32", "128,128", "512,512"]
# Seeds of further specialist runs on each generalist (the pipeline's own run is seed 1).
OTHER_SEEDS = [2, 3]


def run(cmd):
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def folder(hidden):
    return os.path.join(WORK, "h" + hidden.replace(",", "-"))


def pipeline_vars():
    """The pipeline's `vars:` that this script reads (the data source), from the YAML text."""
    with open(PIPELINE) as f:
        text = f.read()
    m = re.search(r"^\s+data:\s*(\S+)\s*$", text, re.M)
    if not m:
        sys.exit(f"{PIPELINE}: no `data:` variable")
    return {"data": m.group(1)}


def training_rows(data):
    """Rows distill-train trains on for an `mnist-pairs:rows=N` source: N less the validation
    slice it holds out (10% of the rows, at most 5,000)."""
    m = re.search(r"rows=(\d+)", data)
    if not m:
        sys.exit(f"{PIPELINE}: cannot read the row count of {data}")
    rows = int(m.group(1))
    return rows - min(rows // 10, 5000)


def epochs_log(path):
    """The per-epoch records of a distill-train metrics CSV."""
    with open(path) as f:
        return list(csv.DictReader(f))


def best_epoch(log):
    """(epoch, validation error) of the first epoch with the fewest validation errors."""
    best = min(log, key=lambda r: (float(r["val_error"]), int(r["epoch"])))
    return int(best["epoch"]), float(best["val_error"])


def manifest_rows(path):
    """(rows trained on by every specialist, specialists used, specialists trained) from a
    distill-specialists manifest.yaml (read as text: the standard library has no YAML)."""
    with open(path) as f:
        text = f.read()
    rows = sum(int(v) for v in re.findall(r"^\s+rows_trained:\s*(\d+)\s*$", text, re.M))
    used = re.findall(r"^\s+used:\s*(true|false)\s*$", text, re.M)
    return rows, used.count("true"), len(used)


def stage_args(stage):
    """The `args:` of a stage of the pipeline, as (key, value) pairs (scalars only), read from the
    YAML text."""
    with open(PIPELINE) as f:
        lines = f.read().splitlines()
    start = lines.index(f"  {stage}:")
    args, inside = [], False
    for line in lines[start + 1:]:
        if re.match(r"^  \S", line):
            break
        if line.strip() == "args:":
            inside = True
        elif inside:
            m = re.match(r"^      ([\w-]+):\s*(\S.*)$", line)
            if m:
                args.append((m.group(1), m.group(2).strip()))
    return args


def run_other_seeds(hidden, data):
    """The specialists trained again with other seeds on the same generalist, and evaluated."""
    out = folder(hidden)
    for seed in OTHER_SEEDS:
        metrics = os.path.join(out, f"metrics-seed{seed}.json")
        if os.path.exists(metrics):
            continue
        spec = os.path.join(out, f"specialists-seed{seed}")
        argv = ["./target/release/distill-specialists", "-q"]
        for key, value in stage_args("specialists"):
            value = value.replace("${data}", data).replace("${out}", out)
            if key == "out":
                value = spec
            argv += [f"--{key}", value]
        run(argv + ["--seed", str(seed)])
        run(["./target/release/distill-eval", "-q", "--model", os.path.join(out, "generalist.onnx"),
             "--manifest", os.path.join(spec, "manifest.yaml"), "--data", data, "--split",
             "test", "--latency-runs", "0", "--out", metrics])


def run_size(hidden, data):
    out = folder(hidden)
    common = ["./target/release/distill", "run", PIPELINE, "--set", f"hidden={hidden}",
              "--set", f"out={out}"]
    run(common + ["--to", "specialists"])
    generalist_epochs = len(epochs_log(os.path.join(out, "generalist.metrics.csv")))
    rows, _, _ = manifest_rows(os.path.join(out, "specialists", "manifest.yaml"))
    baseline = generalist_epochs + math.ceil(rows / training_rows(data))
    run(common + ["--set", f"baseline_epochs={baseline}"])


def row(hidden, data):
    out = folder(hidden)
    g_log = epochs_log(os.path.join(out, "generalist.metrics.csv"))
    b_log = epochs_log(os.path.join(out, "baseline.metrics.csv"))
    g_best, g_val = best_epoch(g_log)
    b_best, b_val = best_epoch(b_log)
    rows, used, trained = manifest_rows(os.path.join(out, "specialists", "manifest.yaml"))
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    errors = {e["name"]: e["errors"] for e in metrics["entries"]}
    sp = metrics["specialists"]
    g, b, s = errors["generalist"], errors["baseline"], sp["combined_errors"]
    if g != sp["generalist_errors"]:
        sys.exit(f"{out}/metrics.json: the generalist's errors differ ({g}, {sp['generalist_errors']})")
    seeds = []
    for seed in OTHER_SEEDS:
        with open(os.path.join(out, f"metrics-seed{seed}.json")) as f:
            seeds.append(json.load(f)["specialists"]["combined_errors"])
    train_rows = training_rows(data)
    total = len(g_log) * train_rows + rows
    return {
        "hidden": hidden,
        "g_best": g_best,
        "g_run": len(g_log),
        "g_val": g_val,
        "b_best": b_best,
        "b_run": len(b_log),
        "b_val": b_val,
        "g": g,
        "b": b,
        "s": s,
        "seeds": seeds,
        "used": used,
        "trained": trained,
        "rows": rows,
        "total": total,
        "test_rows": metrics["rows"],
        "vs_g": (g - s) / g,
        "vs_b": (b - s) / b,
    }


def table(rows, data, command):
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M)
            cpu = m.group(1).strip() if m else platform.processor() or cpu
    except OSError:
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    lines = [
        BEGIN,
        "",
        f"`{command}` at commit `{commit}`, {time.strftime('%Y-%m-%d')}, on {os.cpu_count()} "
        f"cores of an {cpu}. Data: `{data}` ({training_rows(data):,} training rows, 5,000 "
        "held out for validation, the test split's rows for the test errors). Every model here "
        "keeps its best validation epoch; nothing was chosen on the test split.",
        "",
        "| generalist | its best validation epoch (of those run) | validation error | test errors: "
        "generalist | compute-matched generalist: best epoch of those run, test errors | "
        "generalist + specialists (used of trained) | fewer errors than the generalist | "
        "than the compute-matched one | specialists of seeds " +
        ", ".join(str(s) for s in OTHER_SEEDS) + ": test errors (fewer than the generalist) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| 1568-{r['hidden'].replace(',', '-')}-100 | {r['g_best']} ({r['g_run']}) | "
            f"{100 * r['g_val']:.2f}% | {r['g']} | {r['b_best']} ({r['b_run']}), {r['b']} | "
            f"{r['s']} ({r['used']} of {r['trained']}) | {100 * r['vs_g']:+.1f}% | "
            f"{100 * r['vs_b']:+.1f}% | " +
            ", ".join(f"{e} ({100 * (r['g'] - e) / r['g']:+.1f}%)" for e in r["seeds"]) + " |"
        )
    lines += [
        "",
        "The compute-matched generalist trains on as many rows as the generalist and its "
        "specialists together (" + "; ".join(
            f"{r['hidden']}: {r['total']:,} rows = {r['b_run']} epochs" for r in rows) +
        "). A positive percentage is fewer test errors with the specialists. The last column "
        "trains the specialists again with other seeds (their row order, image shifts and "
        "half/half draws) on the same generalist and subsets.",
        "",
        END,
    ]
    return "\n".join(lines)


def write_doc(path, text):
    with open(path) as f:
        doc = f.read()
    if BEGIN not in doc or END not in doc:
        sys.exit(f"{path}: the markers {BEGIN} and {END} are missing")
    new = doc[: doc.index(BEGIN)] + text + doc[doc.index(END) + len(END):]
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".results-")
    with os.fdopen(fd, "w") as f:
        f.write(new)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", action="append", help="generalist hidden widths, e.g. 512,512")
    ap.add_argument("--doc", default="docs/results.md")
    ap.add_argument("--no-pipeline", action="store_true")
    args = ap.parse_args()
    sizes = args.hidden or DEFAULT_SIZES
    data = pipeline_vars()["data"]
    for h in sizes:
        if not args.no_pipeline:
            run_size(h, data)
        run_other_seeds(h, data)
    command = "make results-specialists"
    if args.hidden:
        command = "scripts/specialists_results.py " + " ".join(f"--hidden {h}" for h in sizes)
    text = table([row(h, data) for h in sizes], data, command)
    print(text)
    write_doc(args.doc, text)


if __name__ == "__main__":
    main()
