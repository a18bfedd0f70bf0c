#!/usr/bin/env python3
"""Memory benchmark: `mlscore score` must stream, so its peak RSS must not grow with the input.

    scripts/python-env benches/memory.py [--rows 1000000,10000000] [--big-row-groups 1000000]
                                         [--model models/churn]

Builds tables of the sample customers schema with 1M and 10M rows (the bundled 1,000 rows
repeated, `customer_id` made unique; 8 Parquet files of 128k-row row groups each, in
bench-data/customers-<rows>/), and one whose row groups hold 1M rows each
(bench-data/customers-<rows>-rg<rows>/), then runs the release `mlscore score` on each, Parquet
to Parquet, both routes in the same invocation: columns copied as stored (the default) and
--reencode. Every child's own CPU seconds come from wait4(2), its peak RSS from its summary line.
Prints rows/s, CPU seconds and peak RSS, each as a ratio to the first table's copied run, and
appends JSON lines to bench-data/results-memory.jsonl. Targets: peak RSS at most 256 MiB for
every table, and for 10M rows within 20% of the 1M-row run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from common import DATA, ROOT, mlscore_binary

FILES = 8


def table(rows: int, row_group: int = 128 * 1024) -> Path:
    """bench-data/customers-<rows>/: the sample rows repeated up to `rows`, in FILES files of
    `row_group`-row row groups (one file when a row group holds the table)."""
    files = 1 if row_group >= rows else FILES
    out = DATA / (f"customers-{rows}" if row_group == 128 * 1024 else f"customers-{rows}-rg{row_group}")
    if out.is_dir() and sum(pq.ParquetFile(f).metadata.num_rows for f in out.glob("*.parquet")) == rows:
        return out
    sample = pq.read_table(ROOT / "models/data/customers")
    per_file = -(-rows // files)
    tmp = DATA / f".{out.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    written = 0
    for i in range(files):
        n = min(per_file, rows - written)
        if n <= 0:
            break
        reps = -(-n // sample.num_rows)
        t = pa.concat_tables([sample] * reps).slice(0, n)
        ids = pa.array(range(written, written + n), pa.int64())
        t = t.set_column(t.schema.get_field_index("customer_id"), "customer_id", pc.cast(ids, t.schema.field("customer_id").type))
        pq.write_table(t, tmp / f"part-{i:05d}.parquet", row_group_size=row_group)
        written += n
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def run(binary: Path, model: str, source: Path, dest: Path, extra: list[str]) -> dict:
    """Runs one scoring job; returns its wall seconds, CPU seconds and peak RSS.

    CPU seconds come from wait4(2) for that child alone. Its ru_maxrss would not do for memory: a
    forked child starts with this (large, pyarrow-laden) process's pages counted, so the peak is
    the one mlscore reads from /proc/self/status (VmHWM) and prints in its summary line.
    """
    start = time.perf_counter()
    cmd = [str(binary), "score", "--model", model, "--input", str(source), "--output", str(dest), *extra]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"mlscore score failed on {source} (exit {code}):\n{stderr}")
    peak = re.search(r"peak memory (\d+) MiB", stderr)
    if not peak:
        raise SystemExit(f"mlscore printed no peak memory (not Linux?):\n{stderr}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mib": float(peak.group(1))}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", default="1000000,10000000")
    p.add_argument("--big-row-groups", type=int, default=1_000_000, help="rows of the table with one-file, table-sized row groups (0: none)")
    p.add_argument("--model", default=str(ROOT / "models/churn"))
    args = p.parse_args()
    sizes = [int(r) for r in args.rows.split(",")]
    binary = mlscore_binary()
    tables = [(n, "128k", table(n)) for n in sizes]
    if args.big_row_groups:
        n = args.big_row_groups
        tables.append((n, f"{n // 1000}k", table(n, n)))
    routes = {"copied": [], "reencode": ["--reencode"]}
    results = []
    with tempfile.TemporaryDirectory(dir=DATA) as d:
        for n, groups, source in tables:
            for route, extra in routes.items():
                dest = Path(d) / f"out-{n}-{groups}-{route}.parquet"
                r = run(binary, args.model, source, dest, extra)
                rows_out = pq.ParquetFile(dest).metadata.num_rows
                if rows_out != n:
                    raise SystemExit(f"{n} rows in, {rows_out} rows out")
                r.update(rows=n, row_groups=groups, route=route, rows_per_s=n / r["wall_s"], cores=os.cpu_count(), model=args.model)
                results.append(r)
                dest.unlink()
    base = results[0]
    print(f"{'rows':>10} {'row groups':>10} {'route':>9} {'rows/s':>12} {'wall s':>8} {'CPU s':>8} {'peak RSS MiB':>13}   ratios to the first run (rows/s, CPU s, RSS)")
    for r in results:
        print(
            f"{r['rows']:>10,} {r['row_groups']:>10} {r['route']:>9} {r['rows_per_s']:>12,.0f} {r['wall_s']:>8.2f} {r['cpu_s']:>8.2f} {r['peak_rss_mib']:>13.1f}"
            f"   {r['rows_per_s'] / base['rows_per_s']:.2f} {r['cpu_s'] / base['cpu_s']:.2f} {r['peak_rss_mib'] / base['peak_rss_mib']:.2f}"
        )
    for route in routes:
        runs = [r for r in results if r["route"] == route and r["row_groups"] == "128k"]
        growth = runs[-1]["peak_rss_mib"] / runs[0]["peak_rss_mib"] - 1
        worst = max(r["peak_rss_mib"] for r in results if r["route"] == route)
        print(f"{route}: peak RSS growth from {runs[0]['rows']:,} to {runs[-1]['rows']:,} rows {growth:+.1%} (target < 20%); largest peak {worst:.0f} MiB (target <= 256)")
    with open(DATA / "results-memory.jsonl", "a") as f:
        for r in results:
            f.write(json.dumps({"bench": "memory", "time": time.time(), **r}) + "\n")


if __name__ == "__main__":
    main()
