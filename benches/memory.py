#!/usr/bin/env python3
"""Memory benchmark: `mlscore score` must stream, so its peak RSS must not grow with the input.

    scripts/python-env benches/memory.py [--rows 1000000,10000000] [--model models/churn]

Builds tables of the sample customers schema with 1M and 10M rows (the bundled 1,000 rows
repeated, `customer_id` made unique; 8 Parquet files of 128k-row row groups each, in
bench-data/customers-<rows>/), then runs the release `mlscore score` on each, Parquet to
Parquet, in the same invocation, and reads every child's own peak RSS and CPU seconds from
wait4(2). Prints rows/s, CPU seconds and peak RSS, each as a ratio to the smallest table's run,
and appends JSON lines to bench-data/results-memory.jsonl. Target: peak RSS for 10M rows
within 20% of the 1M-row run.
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


def table(rows: int) -> Path:
    """bench-data/customers-<rows>/: the sample rows repeated up to `rows`, in FILES files."""
    out = DATA / f"customers-{rows}"
    if out.is_dir() and sum(pq.ParquetFile(f).metadata.num_rows for f in out.glob("*.parquet")) == rows:
        return out
    sample = pq.read_table(ROOT / "models/data/customers")
    per_file = -(-rows // FILES)
    tmp = DATA / f".customers-{rows}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    written = 0
    for i in range(FILES):
        n = min(per_file, rows - written)
        if n <= 0:
            break
        reps = -(-n // sample.num_rows)
        t = pa.concat_tables([sample] * reps).slice(0, n)
        ids = pa.array(range(written, written + n), pa.int64())
        t = t.set_column(t.schema.get_field_index("customer_id"), "customer_id", pc.cast(ids, t.schema.field("customer_id").type))
        pq.write_table(t, tmp / f"part-{i:05d}.parquet", row_group_size=128 * 1024)
        written += n
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def run(binary: Path, model: str, source: Path, dest: Path) -> dict:
    """Runs one scoring job; returns its wall seconds, CPU seconds and peak RSS.

    CPU seconds come from wait4(2) for that child alone. Its ru_maxrss would not do for memory: a
    forked child starts with this (large, pyarrow-laden) process's pages counted, so the peak is
    the one mlscore reads from /proc/self/status (VmHWM) and prints in its summary line.
    """
    start = time.perf_counter()
    proc = subprocess.Popen([str(binary), "score", "--model", model, "--input", str(source), "--output", str(dest)], stderr=subprocess.PIPE, text=True)
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
    p.add_argument("--model", default=str(ROOT / "models/churn"))
    args = p.parse_args()
    sizes = [int(r) for r in args.rows.split(",")]
    binary = mlscore_binary()
    tables = {n: table(n) for n in sizes}
    results = []
    with tempfile.TemporaryDirectory(dir=DATA) as d:
        for n in sizes:
            r = run(binary, args.model, tables[n], Path(d) / f"out-{n}.parquet")
            rows_out = pq.ParquetFile(Path(d) / f"out-{n}.parquet").metadata.num_rows
            if rows_out != n:
                raise SystemExit(f"{n} rows in, {rows_out} rows out")
            r.update(rows=n, rows_per_s=n / r["wall_s"], cores=os.cpu_count(), model=args.model)
            results.append(r)
            (Path(d) / f"out-{n}.parquet").unlink()
    base = results[0]
    print(f"{'rows':>10} {'rows/s':>12} {'wall s':>8} {'CPU s':>8} {'peak RSS MiB':>13}   ratios to {base['rows']:,} rows (rows/s, CPU s, RSS)")
    for r in results:
        print(
            f"{r['rows']:>10,} {r['rows_per_s']:>12,.0f} {r['wall_s']:>8.2f} {r['cpu_s']:>8.2f} {r['peak_rss_mib']:>13.1f}"
            f"   {r['rows_per_s'] / base['rows_per_s']:.2f} {r['cpu_s'] / base['cpu_s']:.2f} {r['peak_rss_mib'] / base['peak_rss_mib']:.2f}"
        )
    growth = results[-1]["peak_rss_mib"] / base["peak_rss_mib"] - 1
    print(f"peak RSS growth from {base['rows']:,} to {results[-1]['rows']:,} rows: {growth:+.1%} (target < 20%)")
    with open(DATA / "results-memory.jsonl", "a") as f:
        for r in results:
            f.write(json.dumps({"bench": "memory", "time": time.time(), **r}) + "\n")


if __name__ == "__main__":
    main()
