#!/usr/bin/env python3
"""Reads a distill soft-target store with pyarrow alone (no distill code) and checks its layout.

    python3 scripts/check_store_readable.py work/soft.parquet      # one store file
    python3 scripts/check_store_readable.py work/soft-parts         # a folder of part-K-of-N.parquet

Needs `pyarrow` (pip install pyarrow; it also gives pandas and Polars their Parquet reader path).
Prints the schema, the row count and the store's metadata; exits 1 when the layout is not the one
distill-teach promises: `index` uint64, `label` int32, and one FixedSizeList<float32>[classes]
column per teacher named in the metadata, with `classes` from the metadata.
"""

import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def main() -> None:
    if len(sys.argv) != 2:
        fail("usage: check_store_readable.py STORE.parquet|PARTS_FOLDER")
    path = Path(sys.argv[1])
    files = sorted(path.glob("part-*-of-*.parquet")) if path.is_dir() else [path]
    if not files:
        fail(f"{path}: no part-K-of-N.parquet files in this folder")
    table = pa.concat_tables(pq.read_table(f) for f in files)
    meta_bytes = (pq.ParquetFile(files[0]).metadata.metadata or {}).get(b"distill.store")
    if meta_bytes is None:
        fail(f"{files[0]}: no 'distill.store' key-value metadata")
    meta = json.loads(meta_bytes)
    classes = meta["classes"]
    print(table.schema)
    print(f"rows: {table.num_rows} in {len(files)} file(s)")
    print(f"classes: {classes}; teachers: {[t['name'] for t in meta['teachers']]}")
    print(f"dataset: {meta['dataset']} split: {meta['split']} transform: {meta['transform']}")

    if table.schema.field("index").type != pa.uint64():
        fail(f"column 'index' is {table.schema.field('index').type}, not uint64")
    if table.schema.field("label").type != pa.int32():
        fail(f"column 'label' is {table.schema.field('label').type}, not int32")
    for teacher in meta["teachers"]:
        field = table.schema.field(teacher["name"])
        if not pa.types.is_fixed_size_list(field.type):
            fail(f"column '{field.name}' is {field.type}, not a FixedSizeList")
        if field.type.list_size != classes or field.type.value_type != pa.float32():
            fail(f"column '{field.name}' is {field.type}, not fixed_size_list<float>[{classes}]")
        first = table.column(field.name)[0].as_py() if table.num_rows else []
        if table.num_rows and len(first) != classes:
            fail(f"column '{field.name}' row 0 has {len(first)} values, not {classes}")
    if table.num_rows and table.column("index").null_count:
        fail("column 'index' has nulls")
    print("ok: readable by pyarrow with the documented layout")


if __name__ == "__main__":
    main()
