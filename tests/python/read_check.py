"""Reads mlscore outputs with pyarrow, DuckDB and Spark and checks each reader sees the same rows.

    scripts/python-env tests/python/read_check.py COPIED REENCODED [MORE ...]

COPIED is an output whose columns mlscore copied from its Parquet input, REENCODED the same job
with --reencode; every further path (a directory output, say) must read like them too. For each
reader, prints "<reader>: <rows> rows" once all of its comparisons pass; exits non-zero, naming
the reader and file, at the first difference.
"""

from __future__ import annotations

import os
import sys

import duckdb
import pyarrow.parquet as pq


def fail(message: str) -> None:
    print(message, file=sys.stderr)
    sys.exit(1)


def check_pyarrow(reference: str, others: list[str]) -> int:
    want = pq.read_table(reference)
    for path in others:
        got = pq.read_table(path)
        if got.schema != want.schema or not got.equals(want):
            fail(f"pyarrow: {path} differs from {reference}")
    return want.num_rows


def check_duckdb(reference: str, others: list[str]) -> int:
    con = duckdb.connect()

    def scan(path: str) -> str:
        target = os.path.join(path, "*.parquet") if os.path.isdir(path) else path
        return f"read_parquet('{target}')"

    rows = con.execute(f"SELECT count(*) FROM {scan(reference)}").fetchone()[0]
    for path in others:
        for a, b in [(reference, path), (path, reference)]:
            extra = con.execute(f"SELECT count(*) FROM (SELECT * FROM {scan(a)} EXCEPT ALL SELECT * FROM {scan(b)})").fetchone()[0]
            if extra:
                fail(f"duckdb: {extra} rows of {a} are not in {b}")
    return rows


def check_spark(reference: str, others: list[str]) -> int:
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("mlscore-read-check")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    try:
        want = spark.read.parquet(reference)
        # Spark cannot compare maps, but these tables hold none; arrays and structs compare.
        rows = want.count()
        for path in others:
            got = spark.read.parquet(path)
            if got.schema != want.schema:
                fail(f"spark: {path} has schema {got.schema}, {reference} {want.schema}")
            for a, b, name in [(want, got, path), (got, want, reference)]:
                extra = a.exceptAll(b).count()
                if extra:
                    fail(f"spark: {extra} rows not in {name}")
        return rows
    finally:
        spark.stop()


def main() -> None:
    if len(sys.argv) < 3:
        fail(__doc__)
    reference, others = sys.argv[2], [sys.argv[1], *sys.argv[3:]]
    for name, check in [("pyarrow", check_pyarrow), ("duckdb", check_duckdb), ("spark", check_spark)]:
        print(f"{name}: {check(reference, others)} rows", flush=True)


if __name__ == "__main__":
    main()
