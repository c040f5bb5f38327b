"""The PyTorch side of `make bench-compare`: the same MLP training distill-train does, on the same
data, with the same loss, optimiser and batch order conventions, so the two can be timed and scored
side by side.

Modes (each mirrors a distill-train command line that scripts/bench_compare.py builds):
  distill  784-800-800-10 student, soft targets of a distill-teach store at T (alpha weighs them,
           1 - alpha the hard labels), no dropout
  hard     the same student on hard labels only
  teacher  784-1200-1200-10 on hard labels with input/hidden dropout, max-norm and jitter
  cnn      the network of --arch (distill-train's --arch grammar) on hard labels

Reads MNIST from the IDX files in --data (pixels / 255, as distill does) and the store with pyarrow.
--normalize standardises the pixels as torchvision users do, (x - 0.1307) / 0.3081, so no input is zero
(distill-train reads the same values from a Parquet file scripts/bench_compare.py writes).
Prints one JSON line: training seconds (the epochs only), epochs, each epoch's mean loss, and test
errors when --test.

--same-start draws the initial weights and each epoch's batch order exactly as distill-train does
for the same --seed (its xoshiro256++ generator, ported below), instead of from PyTorch's generator.
Both sides then start from the same weights and see the same batches, so what is left between their
results is the arithmetic of the steps (float rounding, and anything that differs in the method).
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


MASK = (1 << 64) - 1


def _splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & MASK
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return x, z ^ (z >> 31)


class DistillRng:
    """distill_core::rng::Rng (xoshiro256++ seeded through SplitMix64), bit for bit."""

    def __init__(self, seed):
        s = []
        x = seed & MASK
        for _ in range(4):
            x, z = _splitmix64(x)
            s.append(z)
        self.s = s

    @classmethod
    def derive(cls, seed, stream):
        x = (seed ^ ((stream * 0xD1B54A32D192ED03) & MASK)) & MASK
        _, z = _splitmix64(x)
        return cls(z)

    def next_u64(self):
        s0, s1, s2, s3 = self.s
        t0 = (s0 + s3) & MASK
        result = ((((t0 << 23) | (t0 >> 41)) & MASK) + s0) & MASK
        t = (s1 << 17) & MASK
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = ((s3 << 45) | (s3 >> 19)) & MASK
        self.s = [s0, s1, s2, s3]
        return result

    def uniform24(self, n):
        """n draws of Rng::uniform as their 24-bit integers (uniform = k / 2^24)."""
        return np.fromiter((self.next_u64() >> 40 for _ in range(n)), dtype=np.int64, count=n)

    def permutation(self, n):
        p = list(range(n))
        for i in range(n - 1, 0, -1):
            j = (self.next_u64() * (i + 1)) >> 64
            p[i], p[j] = p[j], p[i]
        return p


def distill_init(sizes, seed):
    """distill-train's `--init torch` weights for `sizes`: per layer, [in, out] weights row by row,
    then the biases, each (2u - 1) / sqrt(in) in float32 from Rng::derive(seed, 0x1417)."""
    rng = DistillRng.derive(seed, 0x1417)
    layers = []
    for fan_in, fan_out in zip(sizes, sizes[1:]):
        bound = np.float32(1.0) / np.sqrt(np.float32(fan_in))
        u = rng.uniform24(fan_in * fan_out + fan_out).astype(np.float32) * np.float32(1.0 / (1 << 24))
        v = (np.float32(2.0) * u - np.float32(1.0)) * bound
        layers.append((v[: fan_in * fan_out].reshape(fan_in, fan_out).T.copy(), v[fan_in * fan_out :].copy()))
    return layers


def torch_arch(spec, shape=(1, 28, 28), classes=10):
    """A torch.nn.Sequential for distill-train's --arch grammar (conv:OUT:K[:sS][:pP], maxpool:K[:sS],
    avgpool:K[:sS], gap, bn, flatten, fc:N, fc, relu, dropout:P)."""
    import torch.nn as nn

    layers, (c, h, w), flat = [], shape, None
    tokens = [t for t in spec.split(",") if t]
    for i, tok in enumerate(tokens):
        parts = tok.split(":")
        opts = {p[0]: int(p[1:]) for p in parts[3:] if p[:1] in ("s", "p")}
        if parts[0] == "conv":
            out, k = int(parts[1]), int(parts[2])
            s, p = opts.get("s", 1), opts.get("p", 0)
            layers.append(nn.Conv2d(c, out, k, stride=s, padding=p))
            c, h, w = out, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        elif parts[0] in ("maxpool", "avgpool"):
            k = int(parts[1])
            s = int(parts[2][1:]) if len(parts) > 2 else k
            layers.append((nn.MaxPool2d if parts[0] == "maxpool" else nn.AvgPool2d)(k, s))
            h, w = (h - k) // s + 1, (w - k) // s + 1
        elif parts[0] == "gap":
            layers += [nn.AdaptiveAvgPool2d(1)]
            h = w = 1
        elif parts[0] == "bn":
            layers.append(nn.BatchNorm2d(c))
        elif parts[0] == "flatten":
            layers.append(nn.Flatten())
            flat = c * h * w
        elif parts[0] == "fc":
            out = int(parts[1]) if len(parts) > 1 else classes
            layers.append(nn.Linear(flat, out))
            flat = out
        elif parts[0] == "relu":
            layers.append(nn.ReLU())
        elif parts[0] == "dropout":
            layers.append(nn.Dropout(float(parts[1])))
        else:
            sys.exit(f"--arch: token {i + 1} '{tok}' is not one this script knows")
    return nn.Sequential(*layers)


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
    ap.add_argument("--mode", choices=["distill", "hard", "teacher", "cnn"], required=True)
    ap.add_argument("--arch", help="the network of --mode cnn, in distill-train's --arch grammar")
    ap.add_argument("--normalize", action="store_true", help="(x - 0.1307) / 0.3081, as torchvision users do")
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
    ap.add_argument("--float64", action="store_true",
                    help="train in double precision (a reference for the float32 runs' rounding)")
    ap.add_argument("--limit", type=int, help="train on the first N training rows only (as distill-train --limit)")
    ap.add_argument("--same-start", action="store_true",
                    help="distill-train's initial weights and batch order for --seed (see above)")
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    x_np, y_np = load_mnist(args.data, "train")
    if args.normalize:
        x_np = (x_np - np.float32(0.1307)) / np.float32(0.3081)
    x = torch.from_numpy(x_np)
    y = torch.from_numpy(y_np)
    n = x.shape[0]
    soft = None
    if args.mode == "distill":
        if not args.store:
            sys.exit("--mode distill needs --store")
        soft = torch.from_numpy(soft_targets(args.store, n, args.temperature))
    if args.float64:
        torch.set_default_dtype(torch.float64)
        x = x.double()
        soft = soft.double() if soft is not None else None
    if args.limit:
        n = min(n, args.limit)
        x, y = x[:n], y[:n]
        soft = soft[:n] if soft is not None else None

    hidden = [1200, 1200] if args.mode == "teacher" else [800, 800]
    in_drop, hid_drop, max_norm, jitter = (0.1, 0.3, 4.0, 1) if args.mode == "teacher" else (0, 0, None, 0)
    sizes = [784] + hidden + [10]
    layers = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
    cnn = None
    if args.mode == "cnn":
        if not args.arch or args.same_start:
            sys.exit("--mode cnn needs --arch and does not take --same-start")
        cnn = torch_arch(args.arch)
        layers = cnn
    if args.same_start:
        if in_drop or hid_drop or jitter:
            sys.exit("--same-start: dropout masks and jitter are drawn differently; use --mode distill or hard")
        with torch.no_grad():
            for layer, (w, b) in zip(layers, distill_init(sizes, args.seed)):
                layer.weight.copy_(torch.from_numpy(w).to(layer.weight.dtype))
                layer.bias.copy_(torch.from_numpy(b).to(layer.bias.dtype))
    opt = torch.optim.SGD(layers.parameters(), lr=args.lr, momentum=args.momentum)
    gen = torch.Generator().manual_seed(args.seed)
    t, alpha = args.temperature, args.alpha

    def forward(xb, train):
        if cnn is not None:
            cnn.train(train)
            return cnn(xb.view(-1, 1, 28, 28))
        h = F.dropout(xb, in_drop, train) if in_drop and train else xb
        for i, layer in enumerate(layers):
            h = layer(h)
            if i + 1 < len(layers):
                h = F.relu(h)
                if hid_drop and train:
                    h = F.dropout(h, hid_drop, train)
        return h

    # Each epoch's mean loss is reported as distill-train prints it: the soft term as T^2 * KL(p || q),
    # the cross-entropy less the teachers' entropy (which does not depend on the network). With
    # --same-start it is computed as KL per batch (log_soft), otherwise as the mean cross-entropy
    # less the entropy over the rows (entropy_term), which costs nothing in the timed runs.
    entropy_term = 0.0
    log_soft = None
    if soft is not None:
        if args.same_start:
            log_soft = torch.log(soft.clamp_min(torch.finfo(soft.dtype).tiny))
        else:
            p64 = soft.double()
            entropy_term = alpha * t * t * float(-(p64 * torch.log(p64.clamp_min(1e-300))).sum(dim=1).mean())

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
    epoch_losses = []
    for epoch in range(args.epochs):
        if args.same_start:
            perm = torch.tensor(DistillRng.derive(args.seed, 0xE90C0000 + epoch).permutation(n))
        else:
            perm = torch.randperm(n, generator=gen)
        loss_sum = torch.zeros((), dtype=torch.float64)
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
            if log_soft is not None:
                # The reported loss in distill-train's form, summed in float64: the soft term as
                # T^2 * KL(p || q). (The cross-entropy form carries T^2 * H(p), hundreds, whose
                # float32 rounding would hide the differences this comparison looks for.)
                with torch.no_grad():
                    p_b = soft.index_select(0, idx)
                    kl = (p_b * (log_soft.index_select(0, idx) - log_q)).sum(dim=1).mean()
                    reported = alpha * t * t * kl
                    if alpha < 1:
                        reported = reported + (1 - alpha) * F.cross_entropy(logits, y.index_select(0, idx))
                loss_sum += reported.double() * idx.shape[0]
            else:
                loss_sum += loss.detach().double() * idx.shape[0]
            opt.zero_grad(set_to_none=False)
            loss.backward()
            opt.step()
            if max_norm:
                with torch.no_grad():
                    for layer in layers:
                        layer.weight.copy_(torch.renorm(layer.weight, 2, 0, max_norm))
        epoch_losses.append(float(loss_sum) / n - entropy_term)
    seconds = time.perf_counter() - started
    out = {"seconds": seconds, "epochs": args.epochs, "torch": torch.__version__,
           "epoch_losses": [round(v, 6) for v in epoch_losses]}
    if args.test:
        xt, yt = load_mnist(args.data, "test")
        if args.normalize:
            xt = (xt - np.float32(0.1307)) / np.float32(0.3081)
        with torch.no_grad():
            pred = forward(torch.from_numpy(xt).to(x.dtype), False).argmax(dim=1).numpy()
        out["test_errors"] = int((pred != yt).sum())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
