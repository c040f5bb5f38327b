#!/usr/bin/env python3
"""Reads a distill soft-target store with pyarrow alone (no distill code) and checks its layout.

    python3 scripts/check_store_readable.py work/soft.parquet      # one store file
    python3 scripts/check_store_readable.py work/soft-parts         # a folder of part-K-of-N.parquet

Needs `pyarrow` (pip install pyarrow; it also gives pandas and Polars their Parquet reader path).
Prints the schema, the row count and the store's metadata; exits 1 when the layout is not the one
docs/store.md describes: `index` uint64, `label` int32, and one FixedSizeList<float32>[classes]
column per teacher named in the metadata, with `classes` from the metadata (in a top-k store,
`layout: top_k`, three columns per teacher: `NAME.topk_logits` FixedSizeList<float32>[K],
`NAME.topk_ids` FixedSizeList<int32>[K] and `NAME.log_rest` float32); the metadata also in
the Arrow schema (`distill.store` and pandas' `PANDAS_ATTRS`) and on each teacher column
(`distill.kind`, `distill.teacher`, `distill.sha256`).
"""

import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


class LayoutError(Exception):
    pass


def store_files(path: Path) -> list:
    files = sorted(path.glob("part-*-of-*.parquet")) if path.is_dir() else [path]
    if not files:
        raise LayoutError(f"{path}: no part-K-of-N.parquet files in this folder")
    return files


def check(path: Path):
    """Checks the store at `path`; returns (table sorted by index, metadata of its first file)."""
    files = store_files(path)
    table = pa.concat_tables(pq.read_table(f) for f in files)
    table = table.sort_by("index")
    meta_bytes = (pq.ParquetFile(files[0]).metadata.metadata or {}).get(b"distill.store")
    if meta_bytes is None:
        raise LayoutError(f"{files[0]}: no 'distill.store' key-value metadata")
    meta = json.loads(meta_bytes)
    schema = pq.read_schema(files[0])
    schema_meta = schema.metadata or {}
    for key in (b"distill.store", b"PANDAS_ATTRS"):
        if key not in schema_meta:
            raise LayoutError(f"{files[0]}: no '{key.decode()}' in the Arrow schema metadata")
        if json.loads(schema_meta[key]) != meta:
            raise LayoutError(f"{files[0]}: schema metadata '{key.decode()}' differs from the file's")
    classes = meta["classes"]
    if table.schema.field("index").type != pa.uint64():
        raise LayoutError(f"column 'index' is {table.schema.field('index').type}, not uint64")
    if table.schema.field("label").type != pa.int32():
        raise LayoutError(f"column 'label' is {table.schema.field('label').type}, not int32")
    top_k = meta.get("top_k") if meta.get("layout", "full") == "top_k" else None
    if meta.get("layout", "full") not in ("full", "top_k"):
        raise LayoutError(f"{files[0]}: unknown layout {meta.get('layout')!r}")
    want_version = 1 if top_k is None else 2
    if meta["schema_version"] != want_version:
        raise LayoutError(
            f"{files[0]}: schema_version {meta['schema_version']} with layout "
            f"{meta.get('layout', 'full')}, expected {want_version}"
        )
    for teacher in meta["teachers"]:
        if top_k is None:
            columns = [(teacher["name"], (pa.float32(), classes))]
        else:
            if not 1 <= top_k < classes:
                raise LayoutError(f"top_k {top_k} is outside 1..{classes - 1}")
            n = teacher["name"]
            columns = [
                (f"{n}.topk_logits", (pa.float32(), top_k)),
                (f"{n}.topk_ids", (pa.int32(), top_k)),
                (f"{n}.log_rest", (pa.float32(), None)),
            ]
        for name, (item, size) in columns:
            field = schema.field(name)
            if size is None:
                ok = field.type == item
                want = str(item)
            else:
                ok = (pa.types.is_fixed_size_list(field.type) and field.type.list_size == size
                      and field.type.value_type == item)
                want = f"fixed_size_list<{item}>[{size}]"
            if not ok:
                raise LayoutError(f"column '{field.name}' is {field.type}, not {want}")
            fm = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
            want_kind = {"logits": "logits", "probabilities": "log_probabilities"}[teacher["kind"]]
            if fm.get("distill.kind") != want_kind or fm.get("distill.teacher") != teacher["name"]:
                raise LayoutError(f"column '{field.name}' has field metadata {fm}")
            if fm.get("distill.sha256") != teacher["sha256"]:
                raise LayoutError(f"column '{field.name}': field sha256 differs from the metadata's")
            if top_k is not None and fm.get("distill.top_k") != str(top_k):
                raise LayoutError(f"column '{field.name}': field distill.top_k is not {top_k}")
    if table.num_rows and table.column("index").null_count:
        raise LayoutError("column 'index' has nulls")
    return table, meta


def main() -> None:
    if len(sys.argv) != 2:
        print("usage: check_store_readable.py STORE.parquet|PARTS_FOLDER", file=sys.stderr)
        sys.exit(2)
    try:
        table, meta = check(Path(sys.argv[1]))
    except LayoutError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(table.schema)
    print(f"rows: {table.num_rows}")
    layout = f"top-{meta['top_k']}" if meta.get("layout") == "top_k" else "full"
    print(f"classes: {meta['classes']}; layout: {layout}; "
          f"teachers: {[t['name'] for t in meta['teachers']]}")
    print(f"dataset: {meta['dataset']} split: {meta['split']} transform: {meta['transform']}")
    print("ok: readable by pyarrow with the documented layout")


if __name__ == "__main__":
    main()
