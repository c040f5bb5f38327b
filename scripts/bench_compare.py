"""`make bench-compare`: distill-train against PyTorch on the same MLP trainings, side by side.

1. Makes the shared inputs once (in bench-out/compare/): a 784-1200-1200-10 teacher trained by
   distill-train for 2 epochs, and its soft targets on all 60,000 MNIST training rows written by
   distill-teach. Both sides read that store (PyTorch through pyarrow).
2. Speed: for each configuration, runs a 1-epoch and a 3-epoch training of each side, the two
   sides alternating (which side goes first alternates too), and takes the per-epoch time as
   (t3 - t1) / 2 of the processes' wall time, so start-up (imports, data loading, model export)
   cancels. Prints each side's median and best round over --repeats rounds (default 5), and the
   speed ratio of the medians and of the best rounds.
3. Accuracy: 5-epoch distillation runs of both sides over seeds 1-3, test errors on the 10,000
   MNIST test images, and the mean. With --same-start, two more PyTorch runs per seed start from
   distill-train's initial weights and see its batch order (bench_torch.py --same-start), one in
   float32 and one in float64; each epoch's mean loss of PyTorch float32 and of distill-train is
   compared with the float64 run's, which stands for the exact trajectory from that start.

Configurations (2 threads each side, batch 128, SGD lr 0.05 momentum 0.9, all 60,000 rows):
  distill        784-800-800-10 student, T=20, alpha 0.9, on MNIST as stored (pixels / 255: 81% zeros)
  distill-dense  the same on MNIST normalised as torchvision users do, (x - 0.1307) / 0.3081: no zeros
  hard           the 784-800-800-10 student on hard labels (pixels / 255)
  hard-dense     the same on normalised MNIST
  teacher        784-1200-1200-10, dropout 0.1/0.3, max-norm 4, jitter 1, hard labels
  cnn            the --cnn-arch network on hard labels (the pipelines/mnist-cnn.yaml student)
distill-train reads normalised MNIST from Parquet files written here (bench-out/compare/mnist-dense/).
"""

import argparse
import csv
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import time

import docs_section

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def run(cmd, env=None):
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    secs = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    return secs, p.stdout + p.stderr


def distill_out(mode, epochs, seed, work, init=None):
    """The model distill_cmd writes; its per-epoch record is beside it, as .metrics.csv."""
    return os.path.join(work, f"distill-{mode}-e{epochs}-s{seed}-{init or 'default'}.onnx")


def relative(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


CNN_ARCH = "conv:16:5:p2,relu,maxpool:2,conv:32:5:p2,relu,maxpool:2,flatten,fc:64,relu,fc"


def cpu_vector_extension():
    """The widest x86 vector extension /proc/cpuinfo lists."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((l.split(":", 1)[1].split() for l in f if l.startswith("flags")), [])
    except OSError:
        return "unknown"
    for name in ("avx512f", "avx2", "avx", "sse4_2"):
        if name in flags:
            return name.upper().replace("AVX512F", "AVX-512")
    return "none of SSE4.2/AVX"


def write_dense_mnist(folder):
    """MNIST normalised as torchvision users do, in distill's generic Parquet layout."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    from bench_torch import load_mnist

    os.makedirs(folder, exist_ok=True)
    for split in ("train", "test"):
        path = os.path.join(folder, f"{split}.parquet")
        if os.path.exists(path):
            continue
        x, y = load_mnist(os.path.join(ROOT, "data", "mnist"), split)
        x = ((x - np.float32(0.1307)) / np.float32(0.3081)).astype(np.float32)
        features = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 784)
        table = pa.table({"features": features, "label": pa.array(y.astype(np.int32))})
        table = table.replace_schema_metadata({"classes": "10", "image_shape": "28,28"})
        pq.write_table(table, path + ".tmp")
        os.replace(path + ".tmp", path)


def distill_cmd(mode, epochs, seed, store, work, threads, test, init=None, cnn_arch=CNN_ARCH, limit=None):
    dense = mode.endswith("-dense")
    cmd = [
        os.path.join(BIN, "distill-train"),
        "--data", os.path.join(work, "mnist-dense") if dense else "data/mnist",
        "--validation", "0", "--threads", str(threads),
        "--epochs", str(epochs), "--seed", str(seed), "--batch", "128",
        "--lr", "0.05", "--momentum", "0.9",
        "--test-split", "test" if test else "none",
        "--out", distill_out(mode, epochs, seed, work, init),
    ]
    if init:
        cmd += ["--init", init]
    if limit:
        cmd += ["--limit", str(limit)]
    if mode.startswith("distill"):
        cmd += ["--hidden", "800,800", "--soft-targets", store, "--temperature", "20", "--alpha", "0.9"]
    elif mode.startswith("hard"):
        cmd += ["--hidden", "800,800"]
    elif mode == "cnn":
        cmd += ["--arch", cnn_arch]
    else:
        cmd += ["--hidden", "1200,1200", "--input-dropout", "0.1", "--hidden-dropout", "0.3",
                "--max-norm", "4", "--jitter", "1"]
    return cmd


def torch_cmd(mode, epochs, seed, store, threads, test, same_start=False, float64=False,
              cnn_arch=CNN_ARCH, limit=None):
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "bench_torch.py"),
           "--mode", mode.removesuffix("-dense"),
           "--data", "data/mnist", "--epochs", str(epochs), "--seed", str(seed),
           "--threads", str(threads)]
    if mode.endswith("-dense"):
        cmd.append("--normalize")
    if mode == "cnn":
        cmd += ["--arch", cnn_arch]
    if limit:
        cmd += ["--limit", str(limit)]
    if same_start:
        cmd.append("--same-start")
    if float64:
        cmd.append("--float64")
    if mode.startswith("distill"):
        cmd += ["--store", store, "--temperature", "20", "--alpha", "0.9"]
    if test:
        cmd.append("--test")
    return cmd


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--modes", default="distill,distill-dense,hard-dense,teacher,cnn")
    ap.add_argument("--repeats", type=int, default=5, help="alternating rounds per configuration")
    ap.add_argument("--cnn-arch", default=CNN_ARCH, help="the network of the cnn configuration")
    ap.add_argument("--limit", type=int,
                    help="time epochs of the first N training rows only (default: all 60,000)")
    ap.add_argument("--no-write", action="store_true",
                    help="print the speed table only (default: also write it into docs/benchmarks.md)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seeds", default="1,2,3", help="seeds of the accuracy runs ('' skips them)")
    ap.add_argument("--accuracy-epochs", type=int, default=5)
    ap.add_argument("--inits", default="", help="extra distill-train --init values to score too, e.g. he")
    ap.add_argument("--same-start", action="store_true",
                    help="also score PyTorch started from distill-train's weights and batch order "
                         "(bench_torch.py --same-start), and compare the two runs' per-epoch losses")
    args = ap.parse_args()

    import torch

    work = os.path.join(ROOT, "bench-out", "compare")
    os.makedirs(work, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs, widest vector extension "
          f"{cpu_vector_extension()}); {args.threads} threads each side")
    print(f"PyTorch {torch.__version__} (CPU), distill-train from {BIN}")

    teacher = os.path.join(work, "teacher.onnx")
    store = os.path.join(work, "soft-targets.parquet")
    modes = [m for m in args.modes.split(",") if m]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    needs_store = seeds or any(m.startswith("distill") for m in modes)
    if needs_store and not os.path.exists(store):
        print("making the shared soft-target store (teacher: 2 epochs of distill-train; distill-teach)...",
              flush=True)
        run([os.path.join(BIN, "distill-train"), "--data", "data/mnist", "--hidden", "1200,1200",
             "--epochs", "2", "--validation", "0", "--test-split", "none", "--seed", "7",
             "--threads", str(args.threads), "--out", teacher], env)
        run([os.path.join(BIN, "distill-teach"), "--model", teacher, "--data", "data/mnist",
             "--split", "train", "--out", store], env)

    if any(m.endswith("-dense") for m in modes):
        write_dense_mnist(os.path.join(work, "mnist-dense"))

    print("\n## Seconds per epoch: (3-epoch run - 1-epoch run) / 2, wall time, alternating; "
          f"median and best of {args.repeats} rounds")
    print(f"{'configuration':<46} {'PyTorch median':>15} {'best':>7} {'distill median':>15} {'best':>7} "
          f"{'speed-up, medians':>18} {'best rounds':>12}")
    labels = {
        "distill": "784-800-800-10 distilled, T=20, alpha 0.9",
        "distill-dense": "the same, normalised (dense) MNIST",
        "hard": "784-800-800-10 hard labels",
        "hard-dense": "784-800-800-10 hard labels, normalised MNIST",
        "teacher": "784-1200-1200-10 dropout, max-norm, jitter",
        "cnn": f"CNN {args.cnn_arch}",
    }
    table = [
        "| configuration | PyTorch median | PyTorch best | distill-train median | distill-train best "
        "| speed-up, medians | speed-up, best rounds |",
        "|---|---|---|---|---|---|---|",
    ]
    short = []
    for mode in modes:
        per = {"torch": [], "distill": []}
        for r in range(args.repeats):
            t = {}
            order = ["torch", "distill"] if r % 2 == 0 else ["distill", "torch"]
            for epochs in (1, 3):
                for side in order:
                    cmd = (torch_cmd(mode, epochs, 1, store, args.threads, False, cnn_arch=args.cnn_arch,
                                     limit=args.limit)
                           if side == "torch"
                           else distill_cmd(mode, epochs, 1, store, work, args.threads, False,
                                            cnn_arch=args.cnn_arch, limit=args.limit))
                    t[(side, epochs)] = run(cmd, env)[0]
            for side in per:
                per[side].append((t[(side, 3)] - t[(side, 1)]) / 2)
            # Each round as it ends, so a long run still leaves figures when it is stopped.
            print(f"  {mode} round {r + 1}: PyTorch {per['torch'][-1]:.2f}s, distill "
                  f"{per['distill'][-1]:.2f}s, {per['torch'][-1] / per['distill'][-1]:.2f}x",
                  flush=True)
        pt, dt = statistics.median(per["torch"]), statistics.median(per["distill"])
        pb, db = min(per["torch"]), min(per["distill"])
        print(f"{labels[mode]:<46} {pt:>14.2f}s {pb:>6.2f}s {dt:>14.2f}s {db:>6.2f}s "
              f"{pt / dt:>17.2f}x {pb / db:>11.2f}x", flush=True)
        table.append(f"| {labels[mode]} | {pt:.2f} s | {pb:.2f} s | {dt:.2f} s | {db:.2f} s | "
                     f"{pt / dt:.2f}x | {pb / db:.2f}x |")
        if min(pt, dt) < 1.0:
            short.append(labels[mode])
    if modes and not args.no_write:
        command = "make bench-compare" + (
            f" BENCH_COMPARE_ARGS=\"{shlex.join(sys.argv[1:])}\"" if sys.argv[1:] else "")
        body = [
            f"`{command}` at commit `{docs_section.commit()}`, {time.strftime('%Y-%m-%d')}, on "
            f"{docs_section.cpu()}; PyTorch {torch.__version__} (CPU), {args.threads} threads each side. "
            f"Seconds per epoch of {f'the first {args.limit:,}' if args.limit else 'all 60,000'} MNIST "
            "training rows, batch 128, SGD lr 0.05 momentum 0.9, "
            f"as (3-epoch run - 1-epoch run) / 2 of each process's wall time; {args.repeats} rounds, "
            "the two sides alternating. A speed-up above 1 is distill-train faster.",
            "",
            *table,
        ]
        if short:
            body += ["", "Epochs under a second (" + "; ".join(short) + ") are of the size of the "
                     "spread in the processes' start-up, which the subtraction does not remove: their "
                     "best-round column says little; run without --limit for those."]
        page = docs_section.write_section("benchmarks.md", "bench-compare", body,
                                          "## Against PyTorch, generated (`make bench-compare`)")
        print(f"wrote the speed table into {page}")

    if seeds:
        e = args.accuracy_epochs
        print(f"\n## Test errors (of 10,000) after {e} epochs of the distillation configuration")
        same = "PyTorch, distill-train's start and order"
        same64 = "the same in float64 (reference)"
        rows = {"PyTorch": []}
        if args.same_start:
            rows[same] = []
            rows[same64] = []
        inits = [None] + [i for i in args.inits.split(",") if i]
        for init in inits:
            rows[f"distill-train --init {init}" if init else "distill-train (default init)"] = []
        loss_gaps = []
        for seed in seeds:
            _, out = run(torch_cmd("distill", e, seed, store, args.threads, True), env)
            rows["PyTorch"].append(int(re.search(r'"test_errors": (\d+)', out).group(1)))
            if args.same_start:
                _, out = run(torch_cmd("distill", e, seed, store, args.threads, True, True), env)
                result = json.loads(out.strip().splitlines()[-1])
                rows[same].append(result["test_errors"])
                torch_losses = result["epoch_losses"]
                _, out = run(torch_cmd("distill", e, seed, store, args.threads, True, True, True), env)
                result = json.loads(out.strip().splitlines()[-1])
                rows[same64].append(result["test_errors"])
                f64_losses = result["epoch_losses"]
            for init in inits:
                _, out = run(distill_cmd("distill", e, seed, store, work, args.threads, True, init), env)
                key = f"distill-train --init {init}" if init else "distill-train (default init)"
                rows[key].append(int(re.search(r"test errors: (\d+) of", out).group(1)))
                if args.same_start and init is None:
                    metrics = distill_out("distill", e, seed, work).removesuffix(".onnx") + ".metrics.csv"
                    with open(metrics) as f:
                        ours = [float(r["loss"]) for r in csv.DictReader(f)]
                    loss_gaps.append(([relative(a, b) for a, b in zip(torch_losses, f64_losses)],
                                      [relative(a, b) for a, b in zip(ours, f64_losses)]))
                    print(f"  seed {seed}: mean loss per epoch: float64 reference "
                          + " ".join(f"{v:.6f}" for v in f64_losses)
                          + "; PyTorch float32 " + " ".join(f"{v:.6f}" for v in torch_losses)
                          + "; distill-train " + " ".join(f"{v:.6f}" for v in ours), flush=True)
            print(f"  seed {seed}: " + ", ".join(f"{k} {v[-1]}" for k, v in rows.items()), flush=True)
        print(f"{'':<32} " + " ".join(f"{'seed ' + str(s):>8}" for s in seeds) + f" {'mean':>8}")
        for name, errs in rows.items():
            print(f"{name:<32} " + " ".join(f"{x:>8}" for x in errs) + f" {statistics.mean(errs):>8.1f}")
        if loss_gaps:
            epochs = range(len(loss_gaps[0][0]))
            for label, side in (("PyTorch float32", 0), ("distill-train", 1)):
                med = [statistics.median(g[side][i] for g in loss_gaps) for i in epochs]
                print(f"{label}: median over seeds of the mean epoch loss's relative distance from "
                      "the float64 reference, per epoch: " + " ".join(f"{v:.1e}" for v in med))


if __name__ == "__main__":
    main()
