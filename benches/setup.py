#!/usr/bin/env python3
"""Generate the benchmark data and models (into bench-data/, which git ignores).

    scripts/python-env benches/setup.py --rows 1000000

Data: a HIGGS-like table (28 float64 features: 21 "low-level" gaussians and exponentials, 7
"high-level" nonlinear combinations of them; a binary label), seeded, written as several Parquet
files of several row groups each, plus a 1M-row training sample.

Models (scikit-learn 1.9, trained on 200k rows), each logged with MLflow into
bench-data/mlruns (a file store) twice: with the sklearn flavor (what spark_udf runs natively)
and with the onnx flavor (skl2onnx, zipmap off):
  lr   StandardScaler + LogisticRegression
  rf   RandomForestClassifier, 100 trees, max depth 8
  gbdt GradientBoostingClassifier, 100 trees, depth 3
  hgb  HistGradientBoostingClassifier, 100 iterations
  mlp  StandardScaler + MLPClassifier (64, 32)
bench-data/models.json maps each model to its ONNX model directory and its MLflow URIs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench-data"
FEATURES = [f"f{i:02d}" for i in range(28)]


def higgs_like(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    low = np.empty((n, 21))
    low[:, 0::3] = rng.exponential(1.0, (n, 7))  # momenta
    low[:, 1::3] = rng.normal(0.0, 1.0, (n, 7))  # pseudo-rapidities
    low[:, 2::3] = rng.uniform(-np.pi, np.pi, (n, 7))  # angles
    high = np.stack(
        [
            np.sqrt(low[:, 0] * low[:, 3]) * np.cosh(low[:, 1] - low[:, 4]),
            np.sqrt(low[:, 6] * low[:, 9]) * np.cos(low[:, 8] - low[:, 11]),
            low[:, 12] + low[:, 15] * np.abs(low[:, 13]),
            np.log1p(low[:, 18] + low[:, 0]),
            low[:, 3] * low[:, 6] - low[:, 9],
            np.sin(low[:, 2]) * low[:, 15],
            np.hypot(low[:, 1], low[:, 4]),
        ],
        axis=1,
    )
    x = np.concatenate([low, high], axis=1)
    z = 0.8 * high[:, 0] - 0.6 * high[:, 2] + 0.5 * np.sin(high[:, 4]) + 0.3 * low[:, 1] * low[:, 4] + rng.normal(0, 1, n)
    y = (z > np.median(z)).astype("int64")
    return x, y


def write_table(x: np.ndarray, path: Path, files: int, row_group: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    n = len(x)
    bounds = np.linspace(0, n, files + 1).astype(int)
    for i in range(files):
        part = x[bounds[i] : bounds[i + 1]]
        table = pa.table({"id": pa.array(np.arange(bounds[i], bounds[i + 1], dtype="int64"))} | {f: part[:, j] for j, f in enumerate(FEATURES)})
        pq.write_table(table, path / f"part-{i:05d}.parquet", row_group_size=row_group)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--files", type=int, default=4)
    p.add_argument("--row-group", type=int, default=131_072)
    p.add_argument("--train-rows", type=int, default=200_000)
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from skl2onnx import to_onnx

    sys.path.insert(0, str(ROOT / "models"))
    from zoo import fix_skl2onnx_hist_gradient_boosting

    fix_skl2onnx_hist_gradient_boosting()
    OUT.mkdir(exist_ok=True)
    t0 = time.time()
    x, _ = higgs_like(args.rows, seed=1)
    table = OUT / f"higgs-{args.rows}"
    shutil.rmtree(table, ignore_errors=True)
    write_table(x, table, args.files, args.row_group)
    print(f"data: {args.rows} rows in {args.files} files -> {table} ({time.time() - t0:.1f}s)", flush=True)

    models_json = OUT / "models.json"
    if models_json.exists():
        print(f"models: already in {models_json} (delete it to retrain)")
        return
    xt, yt = higgs_like(args.train_rows, seed=2)
    import pandas as pd

    frame = pd.DataFrame(xt, columns=FEATURES)
    estimators = {
        "lr": make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
        "rf": RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0, n_jobs=2),
        "gbdt": GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=0),
        "hgb": HistGradientBoostingClassifier(max_iter=100, random_state=0, early_stopping=False),
        "mlp": make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(64, 32), max_iter=30, random_state=0)),
    }
    store = OUT / "mlruns"
    shutil.rmtree(store, ignore_errors=True)
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    mlflow.set_tracking_uri(store.as_uri())
    mlflow.set_experiment("bench")
    out = {}
    for name, est in estimators.items():
        t = time.time()
        est.fit(frame, yt)
        onx = to_onnx(est, xt[:1].astype(np.float32), options={"zipmap": False})
        sig = infer_signature(frame.head(100), est.predict(frame.head(100)))
        onnx_dir = OUT / "onnx" / name
        shutil.rmtree(onnx_dir, ignore_errors=True)
        mlflow.onnx.save_model(onx, onnx_dir, signature=sig)
        with mlflow.start_run(run_name=name) as run:
            # cloudpickle, as Databricks logs sklearn models (skops refuses tree internals without an allow-list)
            sk = mlflow.sklearn.log_model(est, name="sklearn", signature=sig, serialization_format="cloudpickle")
            ox = mlflow.onnx.log_model(onx, name="onnx", signature=sig)
        out[name] = {"onnx_dir": str(onnx_dir), "onnx_file": str(onnx_dir / "model.onnx"), "sklearn_uri": sk.model_uri, "onnx_uri": ox.model_uri, "run_id": run.info.run_id}
        print(f"model {name}: trained and logged in {time.time() - t:.1f}s", flush=True)
    models_json.write_text(json.dumps({"tracking_uri": store.as_uri(), "features": FEATURES, "models": out}, indent=1))


if __name__ == "__main__":
    main()
