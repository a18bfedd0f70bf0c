#!/usr/bin/env python3
"""Inside Spark: mlscore's spark_udf against mlflow.pyfunc.spark_udf on local PySpark.

    benches/run spark.py [--rows 1000000] [--models lr,rf] [--repeat 1]

Same table (bench-data/higgs-<rows>, 28 float64 features), same cores (local[<cores>]), same
job: read Parquet, add the predicted label, write Parquet. Variants, each in a fresh JVM,
interleaved per round:
  jvm-floor       the same job with a constant instead of a model: Spark's own share (the floor)
  mlflow-sklearn  mlflow.pyfunc.spark_udf on the scikit-learn flavor (pandas UDF, pickled model)
  mlflow-onnx     mlflow.pyfunc.spark_udf on the ONNX flavor (fails for skl2onnx classifiers)
  mlscore         mlscore.spark.spark_udf on the ONNX flavor (Arrow UDF, Rust), release wheel
Prints one JSON line per run and a table of medians: job seconds (without JVM start-up), the
time beyond the jvm-floor (what scoring adds to Spark's own read and write), and the speed-ups
over mlflow-sklearn. Wall time only: the JVM is not a waited-for child, so rusage cannot count
its CPU.
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

VARIANTS = ["jvm-floor", "mlflow-sklearn", "mlflow-onnx", "mlscore"]


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
    t1 = time.perf_counter()
    df = spark.read.parquet(table)
    if variant == "jvm-floor":
        pred = F.lit(0).cast("long")
    elif variant == "mlscore":
        import mlscore.spark

        pred = mlscore.spark.spark_udf(spark, model["onnx_uri"], result_type="long")(F.struct(*features))
    else:
        import mlflow.pyfunc

        mlflow.set_tracking_uri(tracking_uri)
        uri = model["sklearn_uri"] if variant == "mlflow-sklearn" else model["onnx_uri"]
        pred = mlflow.pyfunc.spark_udf(spark, uri, result_type="long", env_manager="local")(F.struct(*features))
    df.withColumn("prediction", pred).write.mode("overwrite").parquet(out)
    job = time.perf_counter() - t1
    spark.stop()
    print(json.dumps({"startup_s": startup, "job_s": job}))


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
    print(f"{'model':6} {'variant':15} {'job s':>8} {'beyond floor s':>15} {'speed-up':>9} {'beyond floor':>13}")
    for name in args.models.split(","):
        med = {}
        for v in VARIANTS:
            ok = [r["job_s"] for r in runs if r["model"] == name and r["variant"] == v and "job_s" in r]
            if ok:
                med[v] = statistics.median(ok)
        base, floor = med.get("mlflow-sklearn"), med.get("jvm-floor", 0.0)
        for v in VARIANTS:
            if v not in med:
                print(f"{name:6} {v:15} {'failed':>8}")
                continue
            job = med[v]
            speed = f"{base / job:8.1f}x" if base else ""
            extra = job - floor
            beyond = f"{(base - floor) / extra:12.1f}x" if base and v != "jvm-floor" and extra > 0 else ""
            print(f"{name:6} {v:15} {job:8.2f} {extra:15.2f} {speed:>9} {beyond:>13}")


if __name__ == "__main__":
    main()
