#!/usr/bin/env python3
"""Model-level benchmark for XGBoost and LightGBM: mlscore's reader and tree kernel against the
libraries' own predict, on the same models and rows, in one invocation.

    scripts/python-env benches/gbdt.py [--trees 100,500] [--batches 1024,65536] [--threads 1,2]
                                       [--rows 65536] [--repeat 3] [--seconds 1]

Models: XGBoost (binary:logistic, depth 6) and LightGBM (binary, 63 leaves) Boosters with
`--trees` trees each, trained on a HIGGS-like table (28 float64 features; benches/setup.py's
generator) and saved with mlflow.xgboost / mlflow.lightgbm into bench-data/gbdt/; and LightGBM
Boosters whose first four features are categorical: `lgbcat<n>` (those features binned to 16
integers, in its table and its rows) and `lgbwide<n>` (200 integers).
For every model, batch size and thread count, interleaved `--repeat` times (median kept):
  xgboost:  Booster.inplace_predict on float64 numpy slices (nthread = threads);
  lightgbm: Booster.predict on float64 numpy slices (num_threads = threads);
  treelite: the same model through treelite's frontend, compiled to a shared library by tl2cgen
            (gcc with tl2cgen's flags, cached next to the model), tl2cgen.Predictor.predict on a DMatrix of each
            float64 slice (nthread = threads); `--no-treelite` skips it;
  mlscore:  the release example `bench` of mlscore-formats: Arrow float64 columns in, bind once,
            Scorer::predict per batch; with several threads each scores the whole table (as the
            engine scores partitions side by side), the libraries split each batch instead.
Prints rows/s, CPU seconds a pass, the ratio mlscore / library (rows/s, and CPU seconds per row),
peak RSS of mlscore's process (the table as Arrow columns and one model) and of this Python process, and checks that both give the same predictions. Appends JSON lines to
bench-data/results-gbdt.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench-data" / "gbdt"
sys.path.insert(0, str(ROOT / "benches"))


def example_binary() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/mlscore/target"))
    env = {**os.environ, "CARGO_TARGET_DIR": str(target)}
    subprocess.run(["cargo", "build", "--release", "-q", "--example", "bench", "-p", "mlscore-formats", "--no-default-features", "--features", "gbdt,sklearn"], cwd=ROOT, check=True, env=env)
    return target / "release" / "examples" / "bench"


def models(trees: list[int], x: np.ndarray, y: np.ndarray) -> dict[str, tuple[str, object]]:
    import lightgbm as lgb
    import mlflow
    import xgboost as xgb

    cols = [f"f{i:02d}" for i in range(x.shape[1])]
    df = pd.DataFrame(x, columns=cols)
    out = {}
    for n in trees:
        d = OUT / f"xgb{n}"
        if not d.exists():
            b = xgb.train({"objective": "binary:logistic", "max_depth": 6, "eta": 0.1, "nthread": 2, "seed": 0}, xgb.DMatrix(df, label=y), n)
            mlflow.xgboost.save_model(b, d)
        b = xgb.Booster()
        b.load_model(str(d / "model.ubj"))
        out[f"xgb{n}"] = (str(d), b)
        d = OUT / f"lgb{n}"
        if not d.exists():
            b = lgb.train({"objective": "binary", "num_leaves": 63, "learning_rate": 0.1, "verbose": -1, "num_threads": 2, "seed": 0}, lgb.Dataset(df, label=y), n)
            mlflow.lightgbm.save_model(b, d)
        out[f"lgb{n}"] = (str(d), lgb.Booster(model_file=str(d / "model.lgb")))
        for view in CATEGORICAL:
            d = OUT / f"{view}{n}"
            if not d.exists():
                cat = pd.DataFrame(categorical_view(view, x), columns=cols)
                params = {"objective": "binary", "num_leaves": 63, "learning_rate": 0.1, "verbose": -1, "num_threads": 2, "seed": 0}
                b = lgb.train(params, lgb.Dataset(cat, label=y, categorical_feature=[0, 1, 2, 3]), n)
                mlflow.lightgbm.save_model(b, d)
            out[f"{view}{n}"] = (str(d), lgb.Booster(model_file=str(d / "model.lgb")))
    return out


# Models of a view of the table: its first four features binned to (scale, offset, categories).
CATEGORICAL = {"lgbcat": (3, 6, 16), "lgbwide": (20, 100, 200)}


def categorical_view(view: str, x: np.ndarray) -> np.ndarray:
    """The table with its first four features binned to the integers of a categorical view."""
    scale, offset, n = CATEGORICAL[view]
    x = x.copy()
    x[:, :4] = np.clip(np.floor(x[:, :4] * scale + offset), 0, n - 1)
    return x


def treelite_library(name: str, model_dir: str, booster) -> Path:
    """The model compiled by treelite + tl2cgen (once; the library is kept next to the model)."""
    import tl2cgen
    import treelite

    lib = Path(model_dir) / f"treelite-{treelite.__version__}-tl2cgen-{tl2cgen.__version__}.so"
    if not lib.exists():
        frontend = treelite.frontend.from_xgboost if name.startswith("xgb") else treelite.frontend.from_lightgbm
        tmp = lib.with_suffix(".tmp.so")
        tl2cgen.export_lib(frontend(booster), toolchain="gcc", libpath=str(tmp), params={"parallel_comp": 8}, nthread=os.cpu_count())
        tmp.rename(lib)
    return lib


def treelite_check(lib: Path, name: str, booster, x: np.ndarray) -> str:
    import tl2cgen

    got = np.asarray(tl2cgen.Predictor(str(lib), nthread=1).predict(tl2cgen.DMatrix(x)), dtype=np.float64).ravel()
    want = np.asarray(booster.inplace_predict(x) if name.startswith("xgb") else booster.predict(x), dtype=np.float64)
    diff = np.abs(got - want)
    return f"treelite: {int((diff == 0).sum())} of {len(want)} predictions bit-identical to the library's, max abs diff {diff.max():.1e}"


def rate(fn, x: np.ndarray, batch: int, seconds: float) -> tuple[float, float]:
    slices = [x[i : i + batch] for i in range(0, len(x), batch)]
    fn(slices[0])
    passes, start, cpu0 = 0, time.perf_counter(), time.process_time()
    while passes == 0 or time.perf_counter() - start < seconds:
        for s in slices:
            fn(s)
        passes += 1
    wall = time.perf_counter() - start
    return len(x) * passes / wall, (time.process_time() - cpu0) / passes


def library_rate(name: str, booster, x: np.ndarray, batch: int, threads: int, seconds: float) -> tuple[float, float]:
    if name.startswith("xgb"):
        booster.set_param({"nthread": threads})
        return rate(lambda s: booster.inplace_predict(s), x, batch, seconds)
    return rate(lambda s: booster.predict(s, num_threads=threads), x, batch, seconds)


def treelite_rate(lib: Path, x: np.ndarray, batch: int, threads: int, seconds: float) -> tuple[float, float]:
    import tl2cgen

    predictor = tl2cgen.Predictor(str(lib), nthread=threads)
    return rate(lambda s: predictor.predict(tl2cgen.DMatrix(s)), x, batch, seconds)


def mlscore_rate(binary: Path, model_dir: str, data: str, features: int, rows: int, batch: int, threads: int, seconds: float) -> tuple[float, float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([str(binary), model_dir, data, str(features), str(batch), str(threads), str(seconds)], check=True, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    v = json.loads(out.stdout.strip().splitlines()[-1])
    # The timed passes' CPU, as the library's is measured; where the example cannot tell (no
    # per-thread schedstat), the whole process's, loading the model and the rows included.
    cpu = v.get("cpu_s")
    if cpu is None:
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    passes = v["rows"] / rows
    return v["rows_per_s"], cpu / passes, v["peak_rss_mb"]


def agree(binary: Path, name: str, model_dir: str, booster, data: str, x: np.ndarray) -> str:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "p.f64"
        subprocess.run([str(binary), model_dir, data, str(x.shape[1]), "65536", "1", "0", str(out)], check=True, capture_output=True)
        got = np.fromfile(out, dtype="<f8")
    want = booster.inplace_predict(x) if name.startswith("xgb") else booster.predict(x)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return f"SHAPES DIFFER {got.shape} vs {want.shape}"
    diff = np.abs(got - want)
    return f"{int((diff == 0).sum())} of {len(want)} predictions bit-identical, max abs diff {diff.max():.1e}"


def main() -> None:
    from setup import higgs_like

    p = argparse.ArgumentParser()
    p.add_argument("--trees", default="100,500")
    p.add_argument("--rows", type=int, default=65_536)
    p.add_argument("--batches", default="1024,65536")
    p.add_argument("--threads", default=f"1,{os.cpu_count()}")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--models", help="only these (xgb100, lgb500, ...)")
    p.add_argument("--no-treelite", action="store_true", help="skip the treelite baseline")
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    train_x, train_y = higgs_like(100_000, seed=1)
    x, _ = higgs_like(args.rows, seed=2)
    x = np.ascontiguousarray(x, dtype=np.float64)
    data = OUT / f"x-{args.rows}.f64"
    x.astype("<f8").tofile(data)
    tables = {"": (x, data)}
    for view in CATEGORICAL:
        path = OUT / f"x-{args.rows}-{view}.f64"
        xv = np.ascontiguousarray(categorical_view(view, x))
        xv.astype("<f8").tofile(path)
        tables[view] = (xv, path)
    binary = example_binary()
    ms = models([int(t) for t in args.trees.split(",")], train_x, train_y)
    results = ROOT / "bench-data" / "results-gbdt.jsonl"
    print(f"{len(x)} rows x {x.shape[1]} float64 features; mlscore {binary}")
    print(f"{'model':7} {'batch':>6} {'thr':>3} {'lib rows/s':>12} {'mlscore rows/s':>15} {'ratio':>7} {'lib cpu/pass':>12} {'mls cpu/pass':>12} {'cpu ratio':>9} {'mls RSS MB':>10}")
    for name, (model_dir, booster) in ms.items():
        if args.models and name not in args.models.split(","):
            continue
        x, data = tables[next((v for v in CATEGORICAL if name.startswith(v)), "")]
        tl = None if args.no_treelite else treelite_library(name, model_dir, booster)
        for batch in map(int, args.batches.split(",")):
            for threads in map(int, args.threads.split(",")):
                lib, mls, tls = [], [], []
                for _ in range(args.repeat):
                    lib.append(library_rate(name, booster, x, batch, threads, args.seconds))
                    mls.append(mlscore_rate(binary, model_dir, str(data), x.shape[1], len(x), batch, threads, args.seconds))
                    if tl:
                        tls.append(treelite_rate(tl, x, batch, threads, args.seconds))
                lr, mr = statistics.median(v[0] for v in lib), statistics.median(v[0] for v in mls)
                lc, mc = statistics.median(v[1] for v in lib), statistics.median(v[1] for v in mls)
                rss = max(v[2] for v in mls)
                print(f"{name:7} {batch:>6} {threads:>3} {lr:>12.0f} {mr:>15.0f} {mr / lr:>6.2f}x {lc:>12.3f} {mc:>12.3f} {lc / mc:>8.2f}x {rss:>10.0f}", flush=True)
                row = {"time": time.time(), "model": name, "rows": len(x), "batch": batch, "threads": threads, "lib_rows_per_s": lr, "mlscore_rows_per_s": mr, "ratio": mr / lr, "lib_cpu_s_per_pass": lc, "mlscore_cpu_s_per_pass": mc, "mlscore_peak_rss_mb": rss}
                if tls:
                    tr, tc = statistics.median(v[0] for v in tls), statistics.median(v[1] for v in tls)
                    print(f"{'':7} {'':>6} {'':>3} treelite {tr:>12.0f} rows/s: mlscore / treelite {mr / tr:.2f}x rows/s, {tc / mc:.2f}x less CPU per row", flush=True)
                    row.update({"treelite_rows_per_s": tr, "treelite_cpu_s_per_pass": tc, "ratio_treelite": mr / tr})
                with results.open("a") as f:
                    f.write(json.dumps(row) + "\n")
        print(f"{name:7} check: {agree(binary, name, model_dir, booster, str(data), x)}", flush=True)
        if tl:
            print(f"{name:7} check: {treelite_check(tl, name, booster, x)}", flush=True)
    print(f"library side peak RSS (this Python process: the table, all models loaded): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    sys.exit(main())
