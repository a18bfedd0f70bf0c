#!/usr/bin/env python3
"""Inside Spark: mlscore's spark_udf against mlflow.pyfunc.spark_udf on local PySpark.

    benches/run spark [--rows 1000000] [--models lr,rf] [--repeat 1]

Same table (bench-data/higgs-<rows>, 28 float64 features), same cores (local[<cores>]), same
job: read Parquet, add the predicted label, write Parquet. Variants, each in a fresh JVM,
interleaved per round:
  jvm-floor       the same job with a constant instead of a model: Spark's own share (the floor)
  arrow-floor     an Arrow UDF over the same struct of features that returns zeros: Spark's
                  Arrow hop to a Python worker and back, what any Python-side scorer pays
  mlflow-sklearn  mlflow.pyfunc.spark_udf on the scikit-learn flavor (pandas UDF, pickled model)
  mlflow-onnx     mlflow.pyfunc.spark_udf on the ONNX flavor (fails for skl2onnx classifiers)
  mlscore         mlscore.spark.spark_udf on the ONNX flavor (Arrow UDF, Rust), release wheel
Prints one JSON line per run and a table of medians, for wall seconds and CPU seconds of the
job (without JVM start-up; CPU of the driver, the JVM and Spark's Python workers, read from
/proc): the value, what it adds to the jvm-floor ("-floor": scoring's share beyond Spark's own
read and write), and the speed-ups over mlflow-sklearn, end to end and beyond the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, ROOT  # noqa: E402

VARIANTS = ["jvm-floor", "arrow-floor", "mlflow-sklearn", "mlflow-onnx", "mlscore"]


def package() -> Path:
    """The mlscore wheel, built in release with maturin and installed into a directory of its own."""
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/mlscore/target"))
    env = {**os.environ, "CARGO_TARGET_DIR": str(target)}
    wheels = DATA / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    maturin = Path(sys.executable).with_name("maturin")
    cmd = [str(maturin), "build", "--quiet", "--release", "-m", "crates/mlscore-python/Cargo.toml",
           "--interpreter", sys.executable, "--out", str(wheels)]
    subprocess.run(cmd, cwd=ROOT, check=True, env=env)
    site = DATA / "python-pkg"
    shutil.rmtree(site, ignore_errors=True)
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site)]
    subprocess.run(pip + [str(w) for w in wheels.glob("*.whl")], check=True)
    return site


def tree_cpu_s() -> float:
    """CPU seconds used so far by this process and every live descendant (the JVM, Spark's Python
    daemon and workers), each with the children it has reaped, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    stats = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command: state ppid ... utime(12) stime(13) cutime(14) cstime(15), 0-based.
        stats[int(pid)] = (int(fields[1]), sum(int(x) for x in fields[11:15]))
    total, todo = 0, [os.getpid()]
    while todo:
        pid = todo.pop()
        total += stats.get(pid, (0, 0))[1]
        todo.extend(child for child, (ppid, _) in stats.items() if ppid == pid)
    return total / tick


def worker(variant: str, model: dict, features: list, table: str, out: str, tracking_uri: str) -> None:
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    t0 = time.perf_counter()
    cores = os.cpu_count() or 1
    spark = (
        SparkSession.builder.master(f"local[{cores}]")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "4g")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    startup = time.perf_counter() - t0
    t1, cpu1 = time.perf_counter(), tree_cpu_s()
    df = spark.read.parquet(table)
    if variant == "jvm-floor":
        pred = F.lit(0).cast("long")
    elif variant == "arrow-floor":
        import pyarrow as pa
        from pyspark.sql.pandas.functions import ArrowUDFType, arrow_udf

        def zeros(features):
            return pa.nulls(len(features), pa.int64()).fill_null(0)

        pred = arrow_udf(zeros, "long", ArrowUDFType.SCALAR)(F.struct(*features))
    elif variant == "mlscore":
        import mlscore.spark

        pred = mlscore.spark.spark_udf(spark, model["onnx_uri"], result_type="long")(F.struct(*features))
    else:
        import mlflow.pyfunc

        mlflow.set_tracking_uri(tracking_uri)
        uri = model["sklearn_uri"] if variant == "mlflow-sklearn" else model["onnx_uri"]
        pred = mlflow.pyfunc.spark_udf(spark, uri, result_type="long", env_manager="local")(F.struct(*features))
    df.withColumn("prediction", pred).write.mode("overwrite").parquet(out)
    job, cpu = time.perf_counter() - t1, tree_cpu_s() - cpu1
    spark.stop()
    print(json.dumps({"startup_s": startup, "job_s": job, "cpu_s": cpu}))


def run(variant: str, name: str, meta: dict, table: Path, out: Path, pkg: Path) -> dict:
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": meta["tracking_uri"],
        "MLFLOW_ALLOW_FILE_STORE": "true",
        "PYSPARK_PYTHON": sys.executable,
        "PYTHONPATH": str(pkg),
    }
    cmd = [sys.executable, __file__, "--worker", variant, "--model-name", name, "--table", str(table), "--out", str(out)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
    if p.returncode != 0 or not lines:
        last = (p.stderr.strip().splitlines() or ["?"])[-1]
        return {"variant": variant, "model": name, "error": last[:300]}
    return {"variant": variant, "model": name, **json.loads(lines[-1])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--models", default="lr,rf")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--worker")
    p.add_argument("--model-name")
    p.add_argument("--table")
    p.add_argument("--out")
    args = p.parse_args()
    meta = json.loads((DATA / "models.json").read_text())
    if args.worker:
        worker(args.worker, meta["models"][args.model_name], meta["features"], args.table, args.out, meta["tracking_uri"])
        return
    table = DATA / f"higgs-{args.rows}"
    pkg = package()
    runs = []
    for _ in range(args.repeat):
        for name in args.models.split(","):
            for variant in VARIANTS:
                r = run(variant, name, meta, table, DATA / "spark-out" / f"{name}-{variant}", pkg)
                print(json.dumps(r), flush=True)
                runs.append(r)
    with open(DATA / "results-spark.jsonl", "a") as f:
        for r in runs:
            f.write(json.dumps({"rows": args.rows, **r}) + "\n")
    print(f"\n{args.rows} rows, local[{os.cpu_count()}], median of {args.repeat}")
    head = f"{'model':6} {'variant':15}"
    for metric in ("wall", "cpu"):
        head += f" {metric + ' s':>8} {'-floor':>7} {'speed-up':>9} {'-floor':>7}"
    print(head)
    for name in args.models.split(","):
        rows = {v: [r for r in runs if r["model"] == name and r["variant"] == v and "job_s" in r] for v in VARIANTS}
        med = {v: {k: statistics.median(r[k] for r in rs) for k in ("job_s", "cpu_s")} for v, rs in rows.items() if rs}
        for v in VARIANTS:
            if v not in med:
                print(f"{name:6} {v:15} {'failed':>8}")
                continue
            line = f"{name:6} {v:15}"
            for key in ("job_s", "cpu_s"):
                base = med.get("mlflow-sklearn", {}).get(key)
                floor = med.get("jvm-floor", {}).get(key, 0.0)
                here = med[v][key]
                extra = here - floor
                speed = f"{base / here:8.1f}x" if base else ""
                beyond = f"{(base - floor) / extra:6.1f}x" if base and v != "jvm-floor" and extra > 0 else ""
                line += f" {here:8.2f} {extra:7.2f} {speed:>9} {beyond:>7}"
            print(line)

if __name__ == "__main__":
    main()
