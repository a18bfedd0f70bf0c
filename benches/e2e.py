#!/usr/bin/env python3
"""End-to-end benchmark: mlscore against mlflow's spark_udf and a pyarrow + onnxruntime loop.

    benches/run [--rows 1000000] [--models lr,rf,hgb,mlp] [--repeat 3]
                [--variants mlscore,ort,spark-onnx,spark-sklearn]

Every variant scores the same Parquet table (bench-data/higgs-<rows>/, 28 float64 features and an
`id`) with the same model and writes Parquet, in a fresh process of its own:
  mlscore        `mlscore score` (release build), the ONNX flavor by its `models:/m-…` URI, all cores;
                 the input's columns copied into the output as stored, only the features decoded;
  mlscore-reencode  the same with --reencode: every column decoded and encoded again (the route
                 before pass-through, and what CSV or a changed compression still take);
  mlscore-sklearn   `mlscore score` on the sklearn flavor (the pickle, read as data, scored natively);
  ort            pyarrow dataset batches -> float32 matrix -> onnxruntime (intra-op threads = cores)
                 -> pyarrow table with a label/probabilities struct -> ParquetWriter;
  spark-onnx     mlflow.pyfunc.spark_udf on local PySpark (local[cores]), the ONNX flavor;
  spark-sklearn  the same with the sklearn flavor (the model as trained, what most users run).
For Spark, session start-up is timed separately and is part of the end-to-end time.

Runs are interleaved (each repeat runs every model and variant once, each repeat's variants
starting one further along) and the median is kept.
Peak RSS is that of the whole process tree (JVM and Python workers included), sampled every
50 ms from /proc, or mlscore's own report of its peak (VmHWM) where that is higher; CPU seconds are the larger of what wait4 reports (the process and the children it reaped) and
the sum over the sampled process tree (Spark's JVM is not reaped by its Python driver).
Every variant's labels are compared with mlscore's by `id` (with the first mlscore variant's
when plain `mlscore` is not run, as in `--variants mlscore-sklearn,spark-sklearn`): the ONNX
variants must agree exactly; the sklearn flavor runs the float64 model, so a few rows near 0.5
may differ from the ONNX flavor's. Prints a table per model with ratios (mlscore's speed-up over
each baseline) and appends JSON lines to bench-data/results-e2e.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import DATA, mlscore_binary

VARIANTS = ["mlscore", "mlscore-reencode", "mlscore-sklearn", "ort", "spark-onnx", "spark-sklearn"]
PAGE = os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------------------------------------
# Measuring a process tree


TICK = os.sysconf("SC_CLK_TCK")


def tree_rss(root: int, cpu: dict[int, float]) -> int:
    """Resident bytes of `root` and all its descendants; records each one's CPU seconds in `cpu`.

    Walks /proc/<pid>/task/<tid>/children, so that sampling costs little CPU (this machine may
    have two cores, and the sampler shares them with what it measures)."""
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
                cpu[pid] = (int(fields[11]) + int(fields[12])) / TICK
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return total


def measure(cmd: list[str], env: dict[str, str] | None = None) -> dict:
    """Runs `cmd`; returns wall and CPU seconds, peak tree RSS and the JSON it printed last.

    The outputs earlier runs left in the page cache are written out first, so that their
    writeback does not land inside this run; the wall time ends when the process exits (a thread
    waits on it), not at the next RSS sample (up to 50 ms later: a twelfth of a 0.6 s run)."""
    os.sync()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    ended: list = []
    # The waiter reads the pipes too: a child that writes much (Spark's logs) never blocks on them.
    waiter = threading.Thread(target=lambda: ended.extend([*proc.communicate(), time.perf_counter()]))
    waiter.start()
    peak, cpu = 0, {}
    while waiter.is_alive():
        peak = max(peak, tree_rss(proc.pid, cpu))
        waiter.join(0.05)
    out, err, end = ended
    wall = end - start
    # mlscore reports its own peak (VmHWM, read as it finishes): exact where 50 ms samples can
    # miss a short peak.
    reported_peak = re.findall(r"peak memory (\d+) MiB", err)
    if reported_peak:
        peak = max(peak, int(reported_peak[-1]) * 2**20)
    # Spark's JVM outlives its Python driver by a second or so, shutting down: the next run must
    # not share the cores with it. The wait is nobody's time.
    settle(cpu)
    # The child is reaped already; its CPU time is in this process's children totals.
    if proc.returncode != 0:
        # A baseline that cannot run this model is a result too: keep the reason, go on.
        lines = [line for line in err.splitlines() if line.strip() and not line.startswith(" ")]
        # The Python exception's own line, when there is one (Spark logs around it).
        lines = [line for line in lines if re.match(r"^[\w.]+(Error|Exception): ", line)] or lines
        return {"wall_s": wall, "peak_rss_mib": peak / 2**20, "reported": {}, "failed": lines[-1][:300] if lines else f"exit {proc.returncode}"}
    last = [line for line in out.splitlines() if line.startswith("{")]
    return {"wall_s": wall, "peak_rss_mib": peak / 2**20, "tree_cpu_s": sum(cpu.values()), "reported": json.loads(last[-1]) if last else {}}


def settle(pids, limit: float = 60.0) -> None:
    """Waits until none of `pids` (a run's process tree, as sampled) is alive, `limit` seconds at
    most."""
    deadline = time.perf_counter() + limit
    for pid in pids:
        while time.perf_counter() < deadline:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except OSError:
                break
            if state in ("Z", "X"):
                break
            time.sleep(0.05)


def cpu_of(fn):
    """Calls fn(); adds the CPU seconds of the children it reaped."""
    before = os.times()
    r = fn()
    after = os.times()
    waited = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    # wait4 misses descendants their parent never reaped (Spark's JVM); sampling misses the
    # last 50 ms of each process: the larger of the two is the closer.
    r["cpu_s"] = max(waited, r.pop("tree_cpu_s", 0.0))
    return r


# ---------------------------------------------------------------------------------------------
# Workers (run in their own process: `e2e.py --worker <variant> ...`)


def worker_ort(model: dict, features: list[str], table: str, output: str) -> None:
    import numpy as np
    import onnxruntime as ort
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    so = ort.SessionOptions()
    so.intra_op_num_threads = os.cpu_count() or 1
    sess = ort.InferenceSession(model["onnx_file"], so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    dataset = ds.dataset(table, format="parquet")
    tmp = output + ".tmp"
    writer = None
    for batch in dataset.to_batches(batch_size=65536):
        x = np.column_stack([batch.column(f).to_numpy() for f in features]).astype(np.float32)
        label, proba = sess.run(None, {name: x})
        k = proba.shape[1]
        probs = pa.FixedSizeListArray.from_arrays(pa.array(proba.reshape(-1)), k).cast(pa.list_(pa.float32()))
        pred = pa.StructArray.from_arrays([pa.array(label), probs], ["label", "probabilities"])
        out = pa.RecordBatch.from_arrays([*batch.columns, pred], [*batch.schema.names, "prediction"])
        if writer is None:
            writer = pq.ParquetWriter(tmp, out.schema)
        writer.write_batch(out)
    writer.close()
    os.replace(tmp, output)


def worker_spark(model: dict, features: list[str], table: str, output: str, flavor: str, tracking_uri: str) -> None:
    t0 = time.perf_counter()
    import mlflow
    from pyspark.sql import SparkSession
    from pyspark.sql.functions import struct

    cores = os.cpu_count() or 1
    spark = (
        SparkSession.builder.master(f"local[{cores}]")
        .appName("mlscore-bench")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "4g")
        .config("spark.sql.shuffle.partitions", str(cores))
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    startup = time.perf_counter() - t0
    mlflow.set_tracking_uri(tracking_uri)
    t1 = time.perf_counter()
    uri = model["sklearn_uri"] if flavor == "sklearn" else model["onnx_uri"]
    # The label: sklearn's predict() returns it; the ONNX flavor's leftmost int64 output is it.
    udf = mlflow.pyfunc.spark_udf(spark, uri, result_type="long", env_manager="local")
    df = spark.read.parquet(table)
    df.withColumn("prediction", udf(struct(*features))).write.mode("overwrite").parquet(output)
    job = time.perf_counter() - t1
    spark.stop()
    print(json.dumps({"startup_s": startup, "job_s": job}))


# ---------------------------------------------------------------------------------------------
# Driver


def run_variant(variant: str, name: str, meta: dict, table: Path, out: Path, binary: Path) -> dict:
    model = meta["models"][name]
    # setup.py logs into a file store, which MLflow 3 reads only when allowed to.
    env = {**os.environ, "MLFLOW_TRACKING_URI": meta["tracking_uri"], "MLFLOW_ALLOW_FILE_STORE": "true", "PYSPARK_PYTHON": sys.executable}
    if variant.startswith("mlscore"):
        uri = model["sklearn_uri"] if variant == "mlscore-sklearn" else model["onnx_uri"]
        cmd = [str(binary), "score", "--model", uri, "--input", str(table), "--output", str(out)]
        if variant == "mlscore-reencode":
            cmd.append("--reencode")
    else:
        cmd = [sys.executable, __file__, "--worker", variant, "--model-name", name, "--table", str(table), "--out", str(out)]
    return cpu_of(lambda: measure(cmd, env))


def labels(path: Path, variant: str):
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    t = ds.dataset(str(path), format="parquet").to_table(columns=["id", "prediction"])
    t = t.sort_by("id")
    p = t.column("prediction").combine_chunks()
    if variant.startswith("spark") or not pa.types.is_struct(p.type):
        # spark_udf and mlscore on the sklearn flavor return pyfunc's labels as they are.
        return t.column("id"), p
    return t.column("id"), pc.struct_field(p, "label")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--models", default="lr,rf,hgb,mlp")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--model-name", help=argparse.SUPPRESS)
    p.add_argument("--table", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    meta = json.loads((DATA / "models.json").read_text())
    if args.worker:
        model = meta["models"][args.model_name]
        if args.worker == "ort":
            worker_ort(model, meta["features"], args.table, args.out)
        else:
            worker_spark(model, meta["features"], args.table, args.out, args.worker.removeprefix("spark-"), meta["tracking_uri"])
        return

    table = DATA / f"higgs-{args.rows}"
    if not table.is_dir():
        raise SystemExit(f"{table} is missing: run `scripts/python-env benches/setup.py --rows {args.rows}` (benches/run does)")
    models = args.models.split(",")
    variants = args.variants.split(",")
    for v in variants:
        if v not in VARIANTS:
            raise SystemExit(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
    for m in models:
        if m not in meta["models"]:
            raise SystemExit(f"unknown model {m!r}; bench-data/models.json has {', '.join(meta['models'])}")
    binary = mlscore_binary()
    runs: dict[tuple[str, str], list[dict]] = {}
    checks: dict[tuple[str, str], str] = {}
    print(f"{args.rows:,} rows of {table.name}, {os.cpu_count()} cores, {args.repeat} interleaved repeats", flush=True)
    with tempfile.TemporaryDirectory(dir=DATA, prefix=".e2e-") as tmp:
        for rep in range(args.repeat):
            for m in models:
                outs = {}
                # Each repeat starts with another variant, so that no variant always runs
                # right after the same other one (a run after one that freed gigabytes is a
                # little slower on these machines).
                shift = rep % len(variants)
                for v in variants[shift:] + variants[:shift]:
                    out = Path(tmp) / f"{m}-{v}" / ("out" if v.startswith("spark") else "out.parquet")
                    shutil.rmtree(out.parent, ignore_errors=True)
                    out.parent.mkdir()
                    r = run_variant(v, m, meta, table, out, binary)
                    runs.setdefault((m, v), []).append(r)
                    if "failed" in r:
                        print(f"  repeat {rep + 1} {m:5} {v:14} FAILED: {r['failed']}", flush=True)
                        continue
                    outs[v] = out
                    print(f"  repeat {rep + 1} {m:5} {v:14} {r['wall_s']:8.2f} s  {r['peak_rss_mib']:8.0f} MiB", flush=True)
                if rep == 0:
                    check(m, variants, outs, checks)
    report(args, models, variants, runs, checks)


def reference(variants: list[str]) -> str | None:
    """The variant the others are compared with: `mlscore`, or else the first mlscore variant run
    (`--variants mlscore-sklearn,spark-sklearn` compares Spark with the sklearn flavor)."""
    if "mlscore" in variants:
        return "mlscore"
    return next((v for v in variants if v.startswith("mlscore")), None)


def check(model: str, variants: list[str], outs: dict[str, Path], checks: dict) -> None:
    import numpy as np

    # Against the reference among the variants that ran, as the report picks it from those that
    # did not fail: if plain mlscore failed, the other mlscore variants are still checked.
    base = reference([v for v in variants if v in outs])
    if base is None:
        return
    ids, ref = labels(outs[base], base)
    ref = np.asarray(ref)
    for v in variants:
        if v == base or v not in outs:
            continue
        vid, got = labels(outs[v], v)
        if not np.array_equal(np.asarray(vid), np.asarray(ids)):
            checks[(model, v)] = "ROWS DIFFER"
            continue
        diff = int((np.asarray(got) != ref).sum())
        checks[(model, v)] = "labels equal" if diff == 0 else f"{diff} labels differ ({diff / len(ref):.4%})"


def report(args, models, variants, runs, checks) -> None:
    results = DATA / "results-e2e.jsonl"
    stamp = time.time()
    with open(results, "a") as f:
        for m in models:
            failed = {v: r["failed"] for v in variants for r in runs[(m, v)] if "failed" in r}
            ok = [v for v in variants if v not in failed]
            med = {v: {k: statistics.median(r[k] for r in runs[(m, v)]) for k in ("wall_s", "cpu_s", "peak_rss_mib")} for v in ok}
            for v in ok:
                rep = [r["reported"] for r in runs[(m, v)] if r["reported"]]
                if rep:
                    med[v]["startup_s"] = statistics.median(r["startup_s"] for r in rep)
                    med[v]["job_s"] = statistics.median(r["job_s"] for r in rep)
            ref = reference(ok)
            base = med.get(ref) if ref else None
            print(f"\n{m}: {args.rows:,} rows, median of {args.repeat}; ratios and labels against {ref or 'no mlscore run'}")
            print(f"  {'variant':14} {'wall s':>8} {'rows/s':>11} {'CPU s':>8} {'peak RSS MiB':>13} {'mlscore speed-up':>17} {'CPU ratio':>10}  check")
            for v, reason in failed.items():
                print(f"  {v:14} FAILED: {reason}")
                f.write(json.dumps({"bench": "e2e", "time": stamp, "model": m, "variant": v, "rows": args.rows, "failed": reason}) + "\n")
            for v in ok:
                r = med[v]
                speed = f"{r['wall_s'] / base['wall_s']:.1f}x" if base and v != ref else ""
                cpu = f"{r['cpu_s'] / base['cpu_s']:.1f}x" if base and v != ref and base["cpu_s"] > 0 else ""
                extra = f"  (start-up {r['startup_s']:.1f} s, job {r['job_s']:.1f} s)" if "startup_s" in r else ""
                print(
                    f"  {v:14} {r['wall_s']:8.2f} {args.rows / r['wall_s']:11,.0f} {r['cpu_s']:8.2f} {r['peak_rss_mib']:13.0f}"
                    f" {speed:>17} {cpu:>10}  {checks.get((m, v), '')}{extra}"
                )
                f.write(json.dumps({"bench": "e2e", "time": stamp, "model": m, "variant": v, "rows": args.rows, "cores": os.cpu_count(), "repeat": args.repeat, "check": checks.get((m, v)), **r}) + "\n")
    print(f"\nJSON lines appended to {results}")


if __name__ == "__main__":
    main()
