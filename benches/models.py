#!/usr/bin/env python3
"""Model-level benchmark: mlscore's kernels against onnxruntime on the same ONNX graphs and rows.

    scripts/python-env benches/models.py [--models rf,gbdt,hgb,lr,mlp] [--rows 100000]
                                         [--batches 1024,65536] [--threads 1,2] [--repeat 3]

For every model, batch size and thread count, in one invocation and interleaved (onnxruntime,
then mlscore, `--repeat` times; the median is kept):
  onnxruntime: InferenceSession.run on float32 numpy slices (intra_op_num_threads = threads),
               inference only: the input is already the tensor onnxruntime wants;
  mlscore:     `mlscore bench` (a release build): Arrow columns in, Arrow columns out, the
               batches spread over `threads` threads.
Both score the same first `--rows` rows of the bench table. Prints rows/s, per thread, and the
ratio mlscore / onnxruntime; with `--baseline OTHER_MLSCORE` (an earlier release build), that
binary is measured too, interleaved, and the ratio this / baseline printed (rows/s and CPU s);
`--binary` scores with a given build instead of building one; checks the two agree on the predictions; appends JSON lines to
bench-data/results-models.jsonl. Needs `scripts/python-env benches/setup.py` first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds

from common import DATA, mlscore_binary


def ort_rate(path: str, x: np.ndarray, batch: int, threads: int, seconds: float) -> tuple[float, float]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    slices = [x[i : i + batch] for i in range(0, len(x), batch)]
    for s in slices[:2]:
        sess.run(None, {name: s})
    passes, start, cpu0 = 0, time.perf_counter(), time.process_time()
    while passes == 0 or time.perf_counter() - start < seconds:
        for s in slices:
            sess.run(None, {name: s})
        passes += 1
    wall = time.perf_counter() - start
    return len(x) * passes / wall, time.process_time() - cpu0


def mlscore_rate(binary: Path, model_dir: str, table: str, rows: int, batch: int, threads: int, seconds: float) -> tuple[float, float]:
    out = subprocess.run(
        [str(binary), "bench", "--model", model_dir, "--input", table, "--rows", str(rows), "--batch-rows", str(batch), "--threads", str(threads), "--seconds", str(seconds), "--json"],
        check=True, capture_output=True, text=True,
    )
    v = json.loads(out.stdout.strip().splitlines()[-1])
    # CPU seconds per million rows (the run is time-bound, so its CPU total alone says little).
    rows = v["rows_per_s"] * v["seconds"]
    return v["rows_per_s"], (v["cpu_seconds"] or float("nan")) / rows * 1e6


def agree(binary: Path, model_dir: str, table: str, x: np.ndarray, onnx_file: str, rows: int) -> str:
    """Scores `rows` rows with both and compares labels and probabilities."""
    import onnxruntime as ort
    import pyarrow.parquet as pq
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        first = sorted(Path(table).glob("*.parquet"))[0]
        out = Path(d) / "o.parquet"
        subprocess.run([str(binary), "score", "-q", "--model", model_dir, "--input", str(first), "--output", str(out)], check=True)
        got = pq.read_table(out).column("prediction").combine_chunks()
        features = json.loads((DATA / "models.json").read_text())["features"]
        x = pq.read_table(first, columns=features).to_pandas().to_numpy(np.float32)
        # One thread: onnxruntime's multi-threaded tree ensembles add the trees' scores in another order.
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(onnx_file, so, providers=["CPUExecutionProvider"])
        want = sess.run(None, {sess.get_inputs()[0].name: x})
        labels = np.asarray(got.field("label")) if got.type.num_fields else None
        if labels is not None and not np.array_equal(labels, want[0]):
            return f"LABELS DIFFER ({int((labels != want[0]).sum())} rows)"
        if labels is not None:
            probs = np.stack(got.field("probabilities").to_numpy(zero_copy_only=False))
            err = float(np.max(np.abs(probs - want[1]) / np.maximum(np.abs(want[1]), 1e-3)))
            return f"labels equal, probabilities max rel diff {err:.1e}"
        return "ok"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", default="rf,gbdt,hgb,lr,mlp")
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--batches", default="1024,65536")
    p.add_argument("--threads", default=f"1,{os.cpu_count()}")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--binary", type=Path, help="the mlscore to measure (default: build the release CLI)")
    p.add_argument("--baseline", type=Path, help="an earlier mlscore build, measured in the same run")
    args = p.parse_args()
    meta = json.loads((DATA / "models.json").read_text())
    table = next(p for p in sorted(DATA.glob("higgs-*")) if p.is_dir())
    x = ds.dataset(str(table)).head(args.rows).select(meta["features"]).to_pandas().to_numpy(np.float32)
    binary = args.binary or mlscore_binary()
    results = DATA / "results-models.jsonl"
    print(f"{len(x)} rows of {table.name}; mlscore {binary}")
    print(f"{'model':6} {'batch':>6} {'thr':>3} {'ORT rows/s':>12} {'mlscore rows/s':>15} {'ratio':>7} {'ORT cpu':>8} {'mls cpu s/M rows':>8}")
    for name in args.models.split(","):
        m = meta["models"][name]
        for batch in map(int, args.batches.split(",")):
            for threads in map(int, args.threads.split(",")):
                o, r, b = [], [], []
                for _ in range(args.repeat):
                    o.append(ort_rate(m["onnx_file"], x, batch, threads, args.seconds))
                    r.append(mlscore_rate(binary, m["onnx_dir"], str(table), len(x), batch, threads, args.seconds))
                    if args.baseline:
                        b.append(mlscore_rate(args.baseline, m["onnx_dir"], str(table), len(x), batch, threads, args.seconds))
                ort_r, mls_r = statistics.median(v[0] for v in o), statistics.median(v[0] for v in r)
                ort_c, mls_c = statistics.median(v[1] for v in o), statistics.median(v[1] for v in r)
                print(f"{name:6} {batch:>6} {threads:>3} {ort_r:>12.0f} {mls_r:>15.0f} {mls_r / ort_r:>6.2f}x {ort_c:>8.2f} {mls_c:>8.2f}", flush=True)
                if b:
                    base_r, base_c = statistics.median(v[0] for v in b), statistics.median(v[1] for v in b)
                    print(f"{'':6} baseline {base_r:>12.0f} rows/s: this / baseline {mls_r / base_r:.2f}x rows/s, {base_c / mls_c if mls_c else float('nan'):.2f}x less CPU per row", flush=True)
                with results.open("a") as f:
                    f.write(json.dumps({"time": time.time(), "model": name, "rows": len(x), "batch": batch, "threads": threads, "ort_rows_per_s": ort_r, "mlscore_rows_per_s": mls_r, "ratio": mls_r / ort_r, "ort_cpu_s": ort_c, "mlscore_cpu_s": mls_c}) + "\n")
        print(f"{name:6} check: {agree(binary, m['onnx_dir'], str(table), x, m['onnx_file'], len(x))}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
