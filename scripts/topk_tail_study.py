#!/usr/bin/env python3
"""How far a store of about 5% of the full size can get in KL at 10,000 classes, by what it keeps of
the tail: the study behind docs/store.md's "Why not a smaller KL at T = 1".

The synthetic teachers are those of `cargo bench -p distill-teach --bench topk` ("confident"): two
teachers, classes in superclasses of 10, a teacher's logit for class c is
b_c + 1.5 g_c + 0.5 e_tc + [c = y] A + [c a sibling of y] B with b_c ~ N(0, 0.5^2), g_c ~ N(0, 1)
shared by the teachers, e_tc ~ N(0, 1), A ~ N(18, 3^2), B ~ N(8, 1.5^2). (NumPy's generator, so the
rows are not the benchmark's; the figures agree with it to within sampling error.)

Each way of storing a row is scored by KL(full || stored) of the ensemble's softmax at T = 1, mean
and 99th percentile over rows, and by its size relative to the full f32 store, counted as the
benchmark's Parquet files measured them: 3.76 bytes per class for the full store, 7.4 bytes per kept
(logit, id) pair, plus what the tail costs (bits per missing class, one f32 per bucket).

The tails tried:
  uniform      the store's own fill: every missing class gets an equal share of the rest mass;
  class prior  the rest mass spread in proportion to exp(b_c), a per-class profile that a store could
               keep once (here the true b_c: an upper bound on what such a profile can do);
  B bits       each missing class's logit quantised to one of 2^B quantile buckets of its row, each
               bucket's mass exact (B bits per class plus 2^B floats per row);
  adaptive K   the uniform tail, but K chosen per row: the writer knows each row's full logits, so
               it can spend a 5% budget where it buys the most KL (greedy over K in a grid).

Usage: python3 scripts/topk_tail_study.py [--rows 300] [--seed 0]   (needs NumPy)
"""
import argparse

import numpy as np

CLASSES = 10_000
FULL_BYTES_PER_CLASS = 3.76
PAIR_BYTES = 7.4


def teachers(rows, rng):
    b = rng.normal(0, 0.5, CLASSES)
    y = rng.integers(0, CLASSES, rows)
    g = b + 1.5 * rng.normal(0, 1, (rows, CLASSES))
    a = rng.normal(18, 3, rows)
    s = rng.normal(8, 1.5, rows)
    out = []
    for _ in range(2):
        z = g + 0.5 * rng.normal(0, 1, (rows, CLASSES))
        for i in range(rows):
            group = (y[i] // 10) * 10
            z[i, group:group + 10] += s[i]
            z[i, y[i]] += a[i] - s[i]
        out.append(z)
    return out, b


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def stored(z, k, tail, bias):
    out = np.empty_like(z)
    for i, row in enumerate(z):
        order = np.argsort(-row)
        top, rest = order[:k], order[k:]
        m = row[rest].max()
        log_rest = m + np.log(np.exp(row[rest] - m).sum())
        out[i, top] = row[top]
        if tail == "uniform":
            out[i, rest] = log_rest - np.log(len(rest))
        elif tail == "class prior":
            w = np.exp(bias[rest])
            out[i, rest] = log_rest + np.log(w / w.sum())
        else:
            levels = 2 ** int(tail.split()[0])
            zr = row[rest]
            edges = np.quantile(zr, np.linspace(0, 1, levels + 1))
            bucket = np.clip(np.searchsorted(edges, zr, side="right") - 1, 0, levels - 1)
            value = np.full(levels, -np.inf)
            for j in range(levels):
                if (bucket == j).any():
                    value[j] = np.log(np.exp(zr[bucket == j]).mean())
            out[i, rest] = value[bucket]
    return out


def size(k, tail):
    extra = 4.0
    if "bit" in tail:
        bits = int(tail.split()[0])
        extra = bits * CLASSES / 8 + 4 * 2 ** bits
    return (k * PAIR_BYTES + extra) / (CLASSES * FULL_BYTES_PER_CLASS)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    zs, bias = teachers(args.rows, np.random.default_rng(args.seed))
    p = np.mean([softmax(z) for z in zs], axis=0)
    print(f"{args.rows} rows, {CLASSES} classes, 2 teachers; KL(full || stored) at T = 1")
    print(f"{'K':>5}  {'tail':<12} {'of full':>8} {'KL mean':>10} {'KL p99':>10}")
    for k, tail in [(200, "uniform"), (200, "class prior"), (50, "1 bit"), (100, "1 bit"),
                    (20, "2 bits"), (50, "2 bits"), (200, "2 bits")]:
        q = np.mean([softmax(stored(z, k, tail, bias)) for z in zs], axis=0)
        kl = (p * np.log(p / q)).sum(axis=1)
        print(f"{k:>5}  {tail:<12} {100 * size(k, tail):>7.2f}% {kl.mean():>10.2e} "
              f"{np.quantile(kl, 0.99):>10.2e}")
    frac, mean, p99, median_k = adaptive(zs, p)
    print(f"{'~' + str(int(median_k)):>5}  {'adaptive K':<12} {100 * frac:>7.2f}% {mean:>10.2e} {p99:>10.2e}"
          f"   (K per row from 10 to 4,000; the median row's K shown)")


def adaptive(zs, p, budget=0.05):
    """Mean KL when each row gets its own K (uniform tail), chosen greedily within `budget`."""
    grid = [10, 20, 50, 100, 200, 300, 500, 1000, 2000, 4000]
    rows = len(p)
    kl = np.zeros((rows, len(grid)))
    for j, k in enumerate(grid):
        q = np.mean([softmax(stored(z, k, "uniform", None)) for z in zs], axis=0)
        kl[:, j] = np.maximum((p * np.log(p / q)).sum(axis=1), 0)
    cost = [k * PAIR_BYTES + 4 for k in grid]
    allowed = budget * CLASSES * FULL_BYTES_PER_CLASS * rows
    at = np.zeros(rows, dtype=int)
    spent = cost[0] * rows
    while True:
        gain = np.full(rows, -1.0)
        up = at + 1 < len(grid)
        extra = np.array([cost[a + 1] - cost[a] if u else np.inf for a, u in zip(at, up)])
        fits = up & (spent + extra <= allowed)
        gain[fits] = (kl[fits, at[fits]] - kl[fits, at[fits] + 1]) / extra[fits]
        i = int(np.argmax(gain))
        if gain[i] <= 0:
            break
        spent += extra[i]
        at[i] += 1
    chosen = kl[np.arange(rows), at]
    size = spent / (CLASSES * FULL_BYTES_PER_CLASS * rows)
    return size, chosen.mean(), np.quantile(chosen, 0.99), np.median([grid[a] for a in at])


if __name__ == "__main__":
    main()
