"""The PyTorch side of `make bench-compare`: the same MLP training distill-train does, on the same
data, with the same loss, optimiser and batch order conventions, so the two can be timed and scored
side by side.

Modes (each mirrors a distill-train command line that scripts/bench_compare.py builds):
  distill  784-800-800-10 student, soft targets of a distill-teach store at T (alpha weighs them,
           1 - alpha the hard labels), no dropout
  hard     the same student on hard labels only
  teacher  784-1200-1200-10 on hard labels with input/hidden dropout, max-norm and jitter

Reads MNIST from the IDX files in --data (pixels / 255, as distill does) and the store with pyarrow.
Prints one JSON line: training seconds (the epochs only), epochs, and test errors when --test.
"""

import argparse
import gzip
import json
import os
import struct
import sys
import time

import numpy as np


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, count = struct.unpack(">II", data[:8])
    if magic == 2051:
        rows, cols = struct.unpack(">II", data[8:16])
        return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, rows * cols)
    if magic == 2049:
        return np.frombuffer(data, dtype=np.uint8, offset=8)
    sys.exit(f"{path}: not an MNIST IDX file (magic {magic})")


def load_mnist(folder, split):
    prefix = "train" if split == "train" else "t10k"
    x = read_idx(os.path.join(folder, f"{prefix}-images-idx3-ubyte.gz")).astype(np.float32) / 255.0
    y = read_idx(os.path.join(folder, f"{prefix}-labels-idx1-ubyte.gz")).astype(np.int64)
    return x, y


def soft_targets(store, rows, temperature):
    """Arithmetic mean of the teachers' softmax(logits / T), aligned to MNIST row order."""
    import pyarrow.parquet as pq

    table = pq.read_table(store)
    index = table.column("index").to_numpy()
    teachers = [n for n in table.column_names if n not in ("index", "label")]
    if not teachers:
        sys.exit(f"{store}: no teacher columns")
    probs = np.zeros((rows, 10), dtype=np.float64)
    for name in teachers:
        flat = table.column(name).combine_chunks().flatten().to_numpy()
        logits = flat.reshape(len(index), -1).astype(np.float64) / temperature
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        p = e / e.sum(axis=1, keepdims=True)
        probs[index] += p / len(teachers)
    if len(index) != rows or len(set(index.tolist())) != rows:
        sys.exit(f"{store}: holds {len(index)} rows, training needs all {rows} training rows")
    return probs.astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", choices=["distill", "hard", "teacher"], required=True)
    ap.add_argument("--data", default="data/mnist")
    ap.add_argument("--store")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--temperature", type=float, default=20.0)
    ap.add_argument("--alpha", type=float, default=0.9)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--test", action="store_true", help="report test errors after training")
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    x_np, y_np = load_mnist(args.data, "train")
    x = torch.from_numpy(x_np)
    y = torch.from_numpy(y_np)
    n = x.shape[0]
    soft = None
    if args.mode == "distill":
        if not args.store:
            sys.exit("--mode distill needs --store")
        soft = torch.from_numpy(soft_targets(args.store, n, args.temperature))

    hidden = [1200, 1200] if args.mode == "teacher" else [800, 800]
    in_drop, hid_drop, max_norm, jitter = (0.1, 0.3, 4.0, 1) if args.mode == "teacher" else (0, 0, None, 0)
    sizes = [784] + hidden + [10]
    layers = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
    opt = torch.optim.SGD(layers.parameters(), lr=args.lr, momentum=args.momentum)
    gen = torch.Generator().manual_seed(args.seed)
    t, alpha = args.temperature, args.alpha

    def forward(xb, train):
        h = F.dropout(xb, in_drop, train) if in_drop and train else xb
        for i, layer in enumerate(layers):
            h = layer(h)
            if i + 1 < len(layers):
                h = F.relu(h)
                if hid_drop and train:
                    h = F.dropout(h, hid_drop, train)
        return h

    base = torch.arange(28)

    def shift(xb):
        """Translates each image by up to `jitter` pixels, zero fill (as distill's --jitter)."""
        b = xb.shape[0]
        pad = F.pad(xb.view(b, 28, 28), (jitter, jitter, jitter, jitter))
        d = torch.randint(0, 2 * jitter + 1, (b, 2), generator=gen)
        rows = (base[None, :] + d[:, :1])[:, :, None]
        cols = (base[None, :] + d[:, 1:])[:, None, :]
        return pad[torch.arange(b)[:, None, None], rows, cols].reshape(b, 784)

    started = time.perf_counter()
    for _ in range(args.epochs):
        perm = torch.randperm(n, generator=gen)
        for s in range(0, n, args.batch):
            idx = perm[s : s + args.batch]
            xb = x.index_select(0, idx)
            if jitter:
                xb = shift(xb)
            logits = forward(xb, True)
            if soft is not None:
                log_q = F.log_softmax(logits / t, dim=1)
                soft_loss = -(soft.index_select(0, idx) * log_q).sum(dim=1).mean()
                loss = alpha * t * t * soft_loss
                if alpha < 1:
                    loss = loss + (1 - alpha) * F.cross_entropy(logits, y.index_select(0, idx))
            else:
                loss = F.cross_entropy(logits, y.index_select(0, idx))
            opt.zero_grad(set_to_none=False)
            loss.backward()
            opt.step()
            if max_norm:
                with torch.no_grad():
                    for layer in layers:
                        layer.weight.copy_(torch.renorm(layer.weight, 2, 0, max_norm))
    seconds = time.perf_counter() - started
    out = {"seconds": seconds, "epochs": args.epochs, "torch": torch.__version__}
    if args.test:
        xt, yt = load_mnist(args.data, "test")
        with torch.no_grad():
            pred = forward(torch.from_numpy(xt), False).argmax(dim=1).numpy()
        out["test_errors"] = int((pred != yt).sum())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
