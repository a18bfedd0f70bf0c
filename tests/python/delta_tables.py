#!/usr/bin/env python3
"""Delta tables for the Delta tests (tests/it/delta.rs), written and read by the `deltalake`
package (delta-rs's Python binding) rather than by mlscore.

    scripts/python-env tests/python/delta_tables.py make <table dir> <sample parquet dir>
    scripts/python-env tests/python/delta_tables.py read <table dir> <out.parquet> [version]

`make` writes a table with a history: version 0 the first 600 customers, 1 the other 400
appended, 2 a delete (customers older than 60), 3 an append of 50 rows with a new column
(schema evolution), then a checkpoint; and writes next to it `expected-v<N>.parquet`, each version
as the Delta reader sees it, and `versions.json` (each version's commit time). `read` writes the
rows a Delta reader sees (deletion vectors honoured, through deltalake's query engine).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import DeltaTable, QueryBuilder, write_deltalake


def visible(table: str, version: int | None = None) -> pa.Table:
    dt = DeltaTable(table, version=version)
    return pa.table(QueryBuilder().register("t", dt).execute("select * from t").read_all())


def make(table: str, sample: str) -> None:
    rows = pq.read_table(sample)
    # Plain string and no pandas metadata: what Spark or pandas users would write.
    rows = rows.replace_schema_metadata(None).cast(
        pa.schema([f.with_type(pa.string()) if f.type == pa.large_string() else f for f in rows.schema])
    )
    write_deltalake(table, rows.slice(0, 600))
    write_deltalake(table, rows.slice(600), mode="append")
    DeltaTable(table).delete("age > 60")
    extra = rows.slice(0, 50).append_column("segment", pa.array(["late"] * 50))
    extra = extra.set_column(0, "customer_id", pc.add(extra["customer_id"], 100000))
    write_deltalake(table, extra, mode="append", schema_mode="merge")
    dt = DeltaTable(table)
    dt.create_checkpoint()
    out = Path(table).parent
    history = {}
    for v in range(dt.version() + 1):
        pq.write_table(visible(table, v), out / f"expected-v{v}.parquet")
    for h in dt.history():
        history[h["version"]] = h["timestamp"]
    (out / "versions.json").write_text(json.dumps(history))


def main() -> None:
    if sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "read":
        version = int(sys.argv[4]) if len(sys.argv) > 4 else None
        pq.write_table(visible(sys.argv[2], version), sys.argv[3])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
