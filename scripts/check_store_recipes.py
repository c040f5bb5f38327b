#!/usr/bin/env python3
"""Runs the pandas, Polars and DuckDB recipes of docs/store.md, as written there, against a store
and compares what they compute with NumPy on the raw columns (read with pyarrow alone).

    python scripts/check_store_recipes.py STORE [--doc docs/store.md] [--temperatures 1,20]

STORE is a store file or a folder of part-K-of-N.parquet files. Each recipe's `store = ...` and
`T = ...` lines are replaced with STORE and each temperature; the recipe must leave `meta` (the
store's metadata), `probs` (teacher name -> [rows, classes] softmax at T, rows sorted by index) and
`ensemble` (their arithmetic mean). Every value must be within 1e-6 of NumPy's. On a top-k store
the top-k recipe must do the same (against the expansion docs/store.md describes, computed here
from the raw columns) and the three others must stop with their message naming the top-k recipe;
on a full store, the top-k recipe must stop with its message. Needs numpy,
pyarrow, pandas, polars and duckdb (`make check-store-recipes` makes a venv with them). Exits 1 on
any difference, 2 on bad usage.
"""

import argparse
import contextlib
import io
import json
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_store_readable import LayoutError, check  # noqa: E402

TOLERANCE = 1e-6
RECIPE = re.compile(r"<!-- recipe: (\w+) -->\s*```python\n(.*?)```", re.S)
TOP_K_RECIPE = re.compile(r"<!-- top-k recipe: (\w+) -->\s*```python\n(.*?)```", re.S)


def stored_logits(table, meta, name):
    """A teacher's [rows, classes] logits in float64: the stored ones, or a top-k row expanded as
    docs/store.md says (kept classes as stored, each missing one log_rest - ln(C - K))."""
    classes = meta["classes"]
    if meta.get("layout", "full") != "top_k":
        col = table.column(name).combine_chunks()
        return col.values.to_numpy().astype(np.float64).reshape(-1, classes)
    k = meta["top_k"]
    top = table.column(f"{name}.topk_logits").combine_chunks().values.to_numpy()
    ids = table.column(f"{name}.topk_ids").combine_chunks().values.to_numpy()
    rest = table.column(f"{name}.log_rest").to_numpy().astype(np.float64)
    rows = len(rest)
    out = np.empty((rows, classes))
    for r in range(rows):
        out[r, :] = -1e30 if rest[r] <= -1e30 else rest[r] - np.log(classes - k)
        for j in range(k):
            out[r, ids[r * k + j]] = top[r * k + j]
    return out


def reference(table, meta, T):
    """Each teacher's softmax at T and their mean, in float64 NumPy from the raw stored values."""
    probs = {}
    for t in meta["teachers"]:
        z = stored_logits(table, meta, t["name"]) / T
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        probs[t["name"]] = e / e.sum(axis=1, keepdims=True)
    return probs, np.mean(list(probs.values()), axis=0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--doc", default=str(Path(__file__).resolve().parent.parent / "docs/store.md"))
    ap.add_argument("--temperatures", default="1,20")
    args = ap.parse_args()
    store = Path(args.store)
    try:
        table, meta = check(store)
    except LayoutError as e:
        print(f"error: the store's layout: {e}", file=sys.stderr)
        return 1
    recipes = RECIPE.findall(Path(args.doc).read_text())
    names = [name for name, _ in recipes]
    if sorted(names) != ["duckdb", "pandas", "polars"]:
        print(f"error: {args.doc}: expected the pandas, polars and duckdb recipes, found {names}",
              file=sys.stderr)
        return 1
    top_k_recipes = TOP_K_RECIPE.findall(Path(args.doc).read_text())
    if [name for name, _ in top_k_recipes] != ["numpy"]:
        print(f"error: {args.doc}: expected one top-k recipe (numpy)", file=sys.stderr)
        return 1
    is_top_k = meta.get("layout", "full") == "top_k"
    # The recipes for the other layout must stop with their message.
    wrong = top_k_recipes if not is_top_k else recipes
    want_message = "a full store" if not is_top_k else "a top-k store"
    for name, code in wrong:
        code = re.sub(r"(?m)^store = .*$", f"store = {str(store)!r}", code)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                exec(compile(code, f"{args.doc}:{name}", "exec"), {})
            status = "FAILED: it did not stop"
        except AssertionError as e:
            status = "ok" if want_message in str(e) else f"FAILED: message {e!r}"
        print(f"{name:7s} refuses this layout ({want_message}): {status}")
        failed_refusal = status != "ok"
        if failed_refusal:
            return 1
    if is_top_k:
        recipes = top_k_recipes
    file_meta = dict(meta)
    failed = False
    for T in [float(t) for t in args.temperatures.split(",")]:
        want_probs, want_mean = reference(table, meta, T)
        for name, code in recipes:
            code, n1 = re.subn(r"(?m)^store = .*$", f"store = {str(store)!r}", code)
            code, n2 = re.subn(r"(?m)^T = .*$", f"T = {T!r}", code)
            if (n1, n2) != (1, 1):
                print(f"error: recipe {name}: no single `store = ` and `T = ` line", file=sys.stderr)
                return 1
            scope = {}
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(code, f"{args.doc}:{name}", "exec"), scope)
            problems = []
            got_meta = dict(scope["meta"])
            if got_meta != file_meta:
                problems.append(f"its metadata {got_meta} is not the file's {file_meta}")
            worst = 0.0
            for teacher, want in want_probs.items():
                got = np.asarray(scope["probs"][teacher], dtype=np.float64)
                if got.shape != want.shape:
                    problems.append(f"teacher {teacher}: shape {got.shape}, expected {want.shape}")
                    continue
                worst = max(worst, float(np.abs(got - want).max()))
            got_mean = np.asarray(scope["ensemble"], dtype=np.float64)
            if got_mean.shape != want_mean.shape:
                problems.append(f"ensemble: shape {got_mean.shape}, expected {want_mean.shape}")
            else:
                worst = max(worst, float(np.abs(got_mean - want_mean).max()))
            if worst > TOLERANCE:
                problems.append(f"values differ from NumPy's by up to {worst:.3g}")
            status = "FAILED: " + "; ".join(problems) if problems else "ok"
            print(f"{name:7s} T={T:g}: {len(want_mean)} rows x {len(want_probs)} teachers, "
                  f"max |recipe - numpy| = {worst:.2e} (tolerance {TOLERANCE:g}): {status}")
            failed |= bool(problems)
    print("store:", store, "teachers:", [(t["name"], t["kind"]) for t in meta["teachers"]])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
