"""`make bench-quantize`: distill-quantize against ONNX Runtime's own quantiser, side by side.

1. The model: --model (default work/mnist/student.onnx, the distilled 784-800-800-10 student of
   `make pipeline`; when it is missing, `distill run PIPELINE --to student` makes it, PIPELINE
   being --pipeline, default pipelines/mnist.yaml). A CNN student (written by distill-nn's
   save_net, its preprocessing in the graph) works the same way: it reads the same raw rows.
2. Calibration rows: the first --calibration-rows (1,024) rows of the MNIST training split, read
   here from data/mnist as distill reads them (pixel / 255 in float32), so both quantisers see the
   same rows.
3. Ours: `distill-quantize --method static` with min-max (the default) and percentile
   calibration, `--method dynamic` and `--method fp16`. Theirs: `onnxruntime.quantization.
   quantize_static(quant_format=QDQ, per_channel=True)` with its defaults (int8 activations and
   weights, min-max calibration) on the same rows, and `quantize_dynamic(per_channel=True)`, both
   after ONNX Runtime's `quant_pre_process` (which folds a batch norm into its convolution).
4. Measured in this one process, the models alternating: test errors on the 10,000 MNIST test
   rows, file size, and batch-1 latency in Python onnxruntime with one thread (intra- and
   inter-op), --rounds rounds of --calls single-row calls per model, the model order rotated each
   round. Also printed: the operators of each static model's graph after ONNX Runtime's
   optimisations (QLinearConv / QGemm when the Q/DQ pairs were fused). Every round opens each model in a new session: two sessions of the same file differ by
   up to about 10 % in batch-1 latency on the machine this was written on (where ONNX Runtime puts
   the weights and buffers), which a single session per model would report as a difference between
   models. Latency is given as the median of the rounds' medians and the best round's median.
5. Writes the table between the markers of the quantisation section in docs/benchmarks.md (with
   the command, the CPU and the date) unless --no-write, and prints it.
"""

import argparse
import datetime
import gzip
import os
import statistics
import subprocess
import sys
import time

import docs_section

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    quantize_dynamic,
    quantize_static,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")


def idx(name):
    with gzip.open(os.path.join(ROOT, "data", "mnist", name), "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def rows(split):
    prefix = "train" if split == "train" else "t10k"
    x = idx(f"{prefix}-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / np.float32(255)
    y = idx(f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    return x, y


def sh(cmd):
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    return p.stdout + p.stderr


def session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def fused_ops(path, out):
    """The operator counts of `path`'s graph after ONNX Runtime's CPU optimisations."""
    import collections

    import onnx

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.optimized_model_filepath = out
    so.log_severity_level = 3
    ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    counts = collections.Counter(n.op_type for n in onnx.load(out).graph.node)
    return ", ".join(f"{op} {n}" for op, n in sorted(counts.items()))


def errors(s, x, y):
    name = s.get_inputs()[0].name
    logits = np.concatenate([s.run(None, {name: x[i : i + 1000]})[0] for i in range(0, len(x), 1000)])
    return int((logits.argmax(axis=1) != y).sum())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="work/mnist/student.onnx")
    ap.add_argument("--pipeline", default="pipelines/mnist.yaml")
    ap.add_argument("--out", default="work/quantize")
    ap.add_argument("--calibration-rows", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=500)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if args.rounds < 5:
        sys.exit("--rounds: at least 5 rounds, so that the models alternate enough")
    model = os.path.join(ROOT, args.model)
    if not os.path.exists(model):
        print(f"{args.model} is missing: running {args.pipeline} up to the student", flush=True)
        sh([os.path.join(BIN, "distill"), "run", args.pipeline, "--to", "student", "--quiet"])
    out = os.path.join(ROOT, args.out)
    os.makedirs(out, exist_ok=True)
    n = args.calibration_rows
    train_x, _ = rows("train")
    calib = train_x[:n]
    test_x, test_y = rows("test")

    models = {"float32": model}
    ours = {
        "ours static int8 (min-max)": ("static", ["--calibration", "minmax"]),
        "ours static int8 (percentile 99.99)": ("static", ["--calibration", "percentile"]),
        "ours dynamic int8": ("dynamic", []),
        "ours fp16 weights": ("fp16", []),
    }
    for label, (method, extra) in ours.items():
        path = os.path.join(out, f"ours-{method}{'-' + extra[1] if extra else ''}.onnx")
        printed = sh(
            [os.path.join(BIN, "distill-quantize"), "--model", model, "--method", method,
             "--calibration-rows", str(n), "--out", path, "--quiet", *extra]
        )
        print(f"{label}: {printed.strip()}", flush=True)
        models[label] = path

    input_name = session(model).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{input_name: calib[i : i + 256]} for i in range(0, n, 256)])

        def get_next(self):
            return next(self.batches, None)

    # ONNX Runtime's recommended pre-processing (shape inference, and a batch norm folded into
    # its convolution, as ours folds it) before its quantiser.
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = os.path.join(out, "ort-prepared.onnx")
    quant_pre_process(model, prepared, skip_symbolic_shape=True)
    theirs_static = os.path.join(out, "ort-static.onnx")
    quantize_static(prepared, theirs_static, Reader(), quant_format=QuantFormat.QDQ, per_channel=True)
    models["ORT quantize_static (QDQ, per-channel, min-max)"] = theirs_static
    theirs_dynamic = os.path.join(out, "ort-dynamic.onnx")
    quantize_dynamic(prepared, theirs_dynamic, per_channel=True)
    models["ORT quantize_dynamic (per-channel)"] = theirs_dynamic

    for k in ("ours static int8 (min-max)", "ORT quantize_static (QDQ, per-channel, min-max)"):
        optimized = os.path.join(out, "optimized.onnx")
        print(f"{k}, as ONNX Runtime runs it: {fused_ops(models[k], optimized)}", flush=True)
        os.remove(optimized)

    errs = {k: errors(session(p), test_x, test_y) for k, p in models.items()}
    sizes = {k: os.path.getsize(p) for k, p in models.items()}
    names = list(models)
    round_medians = {k: [] for k in names}
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for k in order:
            s = session(models[k])
            times = []
            for i in range(args.calls + 20):
                x = test_x[(r * args.calls + i) % len(test_x)][None, :]
                t = time.perf_counter()
                s.run(None, {input_name: x})
                if i >= 20:
                    times.append(time.perf_counter() - t)
            round_medians[k].append(statistics.median(times))
    lat = {k: statistics.median(round_medians[k]) for k in names}
    best = {k: min(round_medians[k]) for k in names}

    f = "float32"
    lines = [
        "| model | test errors | file | of float | batch-1 latency: median of rounds / best round (µs) | speed-up (medians) |",
        "|---|---|---|---|---|---|",
    ]
    for k in names:
        lines.append(
            f"| {k} | {errs[k]} | {sizes[k] / 1e6:.2f} MB | {100 * sizes[k] / sizes[f]:.1f} % | "
            f"{lat[k] * 1e6:.1f} / {best[k] * 1e6:.1f} | {lat[f] / lat[k]:.2f}x |"
        )
    ours_static = "ours static int8 (min-max)"
    ort_static = "ORT quantize_static (QDQ, per-channel, min-max)"
    checks = []

    def check(name, ok, detail):
        checks.append(f"- {name}: {'met' if ok else 'NOT met'} ({detail})")

    for k in (ours_static, "ours static int8 (percentile 99.99)"):
        check(
            f"{k}: at most 5 % more test errors than float32",
            errs[k] <= 1.05 * errs[f],
            f"{errs[k]} against {errs[f]}, {100 * (errs[k] / errs[f] - 1):+.1f} %",
        )
        check(f"{k}: file at most 30 % of float32's", sizes[k] <= 0.3 * sizes[f], f"{100 * sizes[k] / sizes[f]:.1f} %")
        check(f"{k}: batch-1 latency at least 1.5x lower", lat[f] / lat[k] >= 1.5, f"{lat[f] / lat[k]:.2f}x")
        check(f"{k}: errors at most ONNX Runtime's + 2", errs[k] <= errs[ort_static] + 2, f"{errs[k]} against {errs[ort_static]}")
        check(
            f"{k}: latency within 10 % of ONNX Runtime's",
            lat[k] <= 1.1 * lat[ort_static],
            f"{lat[k] * 1e6:.1f} against {lat[ort_static] * 1e6:.1f} µs, {100 * (lat[k] / lat[ort_static] - 1):+.1f} %",
        )
    h = "ours fp16 weights"
    check(
        "fp16: test errors within 1 % of float32's",
        abs(errs[h] - errs[f]) <= 0.01 * errs[f],
        f"{errs[h]} against {errs[f]}",
    )
    check("fp16: about half the size", 0.45 <= sizes[h] / sizes[f] <= 0.55, f"{100 * sizes[h] / sizes[f]:.1f} %")

    date = datetime.date.today().isoformat()
    command = "make bench-quantize" + (
        "" if sys.argv[1:] == [] else " (scripts/quantize_compare.py " + " ".join(sys.argv[1:]) + ")"
    )
    body = [
        f"Measured {date} by `{command}` on {docs_section.cpu()}; onnxruntime {ort.__version__}, one thread, "
        f"{args.rounds} rounds x {args.calls} batch-1 calls per model, models alternating. Model: "
        f"`{args.model}`; calibration: the first {n} MNIST training rows for both quantisers; "
        "errors on the 10,000 MNIST test rows.",
        "",
        *lines,
        "",
        "Targets:",
        "",
        *checks,
    ]
    print("\n".join(body))
    if not args.no_write:
        page = docs_section.write_section("benchmarks.md", "quantize-compare", body,
                                          "## Quantised students (`make bench-quantize`)")
        print(f"wrote the table into {page}")


if __name__ == "__main__":
    main()
