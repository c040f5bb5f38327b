#!/usr/bin/env python3
"""Runs the pandas, Polars and DuckDB recipes of docs/store.md, as written there, against a store
and compares what they compute with NumPy on the raw columns (read with pyarrow alone).

    python scripts/check_store_recipes.py STORE [--doc docs/store.md] [--temperatures 1,20]

STORE is a store file or a folder of part-K-of-N.parquet files. Each recipe's `store = ...` and
`T = ...` lines are replaced with STORE and each temperature; the recipe must leave `meta` (the
store's metadata), `probs` (teacher name -> [rows, classes] softmax at T, rows sorted by index) and
`ensemble` (their arithmetic mean). Every value must be within 1e-6 of NumPy's. Needs numpy,
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


def reference(table, meta, T):
    """Each teacher's softmax at T and their mean, in float64 NumPy from the raw stored values."""
    classes = meta["classes"]
    probs = {}
    for t in meta["teachers"]:
        col = table.column(t["name"]).combine_chunks()
        z = col.values.to_numpy().astype(np.float64).reshape(-1, classes) / T
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
