#!/usr/bin/env python3
"""Model-level benchmark for scikit-learn: mlscore's pickle reader and kernels against
scikit-learn's own `predict`, on the same models and rows, in one invocation, per thread.

    scripts/python-env benches/sklearn_bench.py [--rows 65536] [--batches 1024,65536] [--repeat 3] [--seconds 1] [--models logreg,mlp]

Models (trained on a HIGGS-like table, 28 float64 features, benches/setup.py's generator; saved
with mlflow.sklearn as cloudpickle into bench-data/sklearn/):
  rf100      RandomForestClassifier, 100 trees, max_depth 8
  gb100      GradientBoostingClassifier, 100 trees, depth 3
  hgb100     HistGradientBoostingClassifier, 100 iterations
  logreg     Pipeline(StandardScaler, LogisticRegression)
  mlp        Pipeline(StandardScaler, MLPClassifier(64, 32))
  xgbpipe    Pipeline(StandardScaler, XGBClassifier(100 trees, depth 6)), one thread
  lgbpipe    Pipeline(StandardScaler, LGBMClassifier(100 trees, 63 leaves)), one thread
  hgbcat     HistGradientBoostingClassifier, 100 iterations, its first 4 features categorical
             (in this model's table, and its rows', those features are binned to 16 integers)
  svc        Pipeline(StandardScaler, SVC()) (rbf), trained on the first 2,000 rows
  voting     VotingClassifier(soft: the logreg pipeline, RandomForest 20 trees depth 6, GaussianNB)
  iforest    IsolationForest, 100 trees (labels -1 / 1)
  knn        Pipeline(StandardScaler, KNeighborsClassifier(5)), fitted on the first 2,000 rows
             (28 features: scikit-learn searches by brute force, its distances by BLAS)
For every model and batch size, interleaved `--repeat` times (median kept), one thread each:
  sklearn:   the estimator's `predict` (what MLflow's pyfunc calls) on float64 numpy slices,
             n_jobs=1 and one BLAS/OpenMP thread;
  mlscore:   the release example `bench` of mlscore-formats (Arrow float64 columns in, bind
             once, Scorer::predict per batch), one thread.
Prints rows/s, CPU seconds a pass and the ratios mlscore / sklearn, mlscore's peak RSS, and checks
that both give the same labels. Appends JSON lines to bench-data/results-sklearn.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench-data" / "sklearn"
sys.path.insert(0, str(ROOT / "benches"))

from gbdt import categorical_view as gbdt_view, example_binary, mlscore_rate  # noqa: E402


def estimators():
    import lightgbm
    import xgboost
    from sklearn import ensemble, linear_model, naive_bayes, neighbors, neural_network, preprocessing, svm
    from sklearn.pipeline import make_pipeline

    return {
        "rf100": lambda: ensemble.RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0, n_jobs=1),
        "gb100": lambda: ensemble.GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=0),
        "hgb100": lambda: ensemble.HistGradientBoostingClassifier(max_iter=100, early_stopping=False, random_state=0),
        "logreg": lambda: make_pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression(max_iter=500)),
        "mlp": lambda: make_pipeline(preprocessing.StandardScaler(), neural_network.MLPClassifier((64, 32), max_iter=50, random_state=0)),
        "xgbpipe": lambda: make_pipeline(preprocessing.StandardScaler(), xgboost.XGBClassifier(n_estimators=100, max_depth=6, n_jobs=1, random_state=0)),
        "lgbpipe": lambda: make_pipeline(preprocessing.StandardScaler(), lightgbm.LGBMClassifier(n_estimators=100, num_leaves=63, n_jobs=1, random_state=0, verbose=-1)),
        "hgbcat": lambda: ensemble.HistGradientBoostingClassifier(max_iter=100, early_stopping=False, random_state=0, categorical_features=[0, 1, 2, 3]),
        "svc": lambda: make_pipeline(preprocessing.StandardScaler(), svm.SVC()),
        "voting": lambda: ensemble.VotingClassifier(
            [
                ("lr", make_pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression(max_iter=500))),
                ("rf", ensemble.RandomForestClassifier(n_estimators=20, max_depth=6, random_state=0, n_jobs=1)),
                ("nb", naive_bayes.GaussianNB()),
            ],
            voting="soft",
        ),
        "iforest": lambda: ensemble.IsolationForest(n_estimators=100, random_state=0, n_jobs=1),
        "knn": lambda: make_pipeline(preprocessing.StandardScaler(), neighbors.KNeighborsClassifier(5, n_jobs=1)),
    }


# Models fitted on fewer rows (a kernel SVM's cost grows with its support vectors).
FIT_ROWS = {"svc": 2_000, "knn": 2_000}


# Models that read a view of the table rather than the table itself.
CATEGORICAL = {"hgbcat"}


def categorical_view(x: np.ndarray) -> np.ndarray:
    """The table with its first four features binned to the integers 0-15 (categories): gbdt.py's
    `lgbcat` view, so that the scikit-learn and LightGBM categorical models read the same rows."""
    return gbdt_view("lgbcat", x)


def models(x: np.ndarray, y: np.ndarray) -> dict:
    import pickle

    import mlflow.sklearn
    from mlflow.models import infer_signature

    cols = [f"f{i:02d}" for i in range(x.shape[1])]
    df = pd.DataFrame(x, columns=cols)
    out = {}
    for name, make in estimators().items():
        d = OUT / name
        if not d.exists():
            fit_df = pd.DataFrame(categorical_view(x), columns=cols) if name in CATEGORICAL else df
            n = FIT_ROWS.get(name, len(fit_df))
            m = make().fit(fit_df.iloc[:n], y[:n])
            mlflow.sklearn.save_model(m, d, serialization_format="cloudpickle", signature=infer_signature(fit_df.head(), m.predict(fit_df.head())))
        with open(d / "model.pkl", "rb") as f:
            out[name] = (str(d), pickle.load(f))  # our own file, just written
    return out


def sklearn_rate(model, x: np.ndarray, batch: int, seconds: float) -> tuple[float, float]:
    cols = [f"f{i:02d}" for i in range(x.shape[1])]
    slices = [pd.DataFrame(x[i : i + batch], columns=cols) for i in range(0, len(x), batch)]
    model.predict(slices[0])
    passes, start, cpu0 = 0, time.perf_counter(), time.process_time()
    while passes == 0 or time.perf_counter() - start < seconds:
        for s in slices:
            model.predict(s)
        passes += 1
    wall = time.perf_counter() - start
    return len(x) * passes / wall, (time.process_time() - cpu0) / passes


def agree(binary: Path, model_dir: str, model, data: str, x: np.ndarray) -> str:
    import subprocess

    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "p.f64"
        subprocess.run([str(binary), model_dir, data, str(x.shape[1]), "65536", "1", "0", str(out)], check=True, capture_output=True)
        got = np.fromfile(out, dtype="<f8")
    want = np.asarray(model.predict(pd.DataFrame(x, columns=[f"f{i:02d}" for i in range(x.shape[1])])), dtype=np.float64)
    return f"{int((got == want).sum())} of {len(want)} labels equal"


def main() -> None:
    import warnings

    warnings.filterwarnings("ignore")
    from setup import higgs_like

    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=65_536)
    p.add_argument("--batches", default="1024,65536")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--models", default=",".join(estimators()), help="which of: " + ", ".join(estimators()))
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    train_x, train_y = higgs_like(20_000, seed=1)
    x, _ = higgs_like(args.rows, seed=2)
    x = np.ascontiguousarray(x, dtype=np.float64)
    data = OUT / f"x-{args.rows}.f64"
    x.astype("<f8").tofile(data)
    x_cat = categorical_view(x)
    data_cat = OUT / f"x-{args.rows}-categorical.f64"
    x_cat.astype("<f8").tofile(data_cat)
    binary = example_binary()
    ms = models(train_x, train_y)
    x_all, data_all = x, data
    results = ROOT / "bench-data" / "results-sklearn.jsonl"
    print(f"{len(x)} rows x {x.shape[1]} float64 features, one thread each; mlscore {binary}")
    print(f"{'model':7} {'batch':>6} {'sk rows/s':>12} {'mlscore rows/s':>15} {'ratio':>7} {'sk cpu/pass':>12} {'mls cpu/pass':>12} {'cpu ratio':>9} {'mls RSS MB':>10}")
    for name, (model_dir, model) in ms.items():
        if name not in args.models.split(","):
            continue
        x, data = (x_cat, data_cat) if name in CATEGORICAL else (x_all, data_all)
        for batch in map(int, args.batches.split(",")):
            sk, mls = [], []
            for _ in range(args.repeat):
                sk.append(sklearn_rate(model, x, batch, args.seconds))
                mls.append(mlscore_rate(binary, model_dir, str(data), x.shape[1], len(x), batch, 1, args.seconds))
            sr, mr = statistics.median(v[0] for v in sk), statistics.median(v[0] for v in mls)
            sc, mc = statistics.median(v[1] for v in sk), statistics.median(v[1] for v in mls)
            rss = max(v[2] for v in mls)
            print(f"{name:7} {batch:>6} {sr:>12.0f} {mr:>15.0f} {mr / sr:>6.2f}x {sc:>12.3f} {mc:>12.3f} {sc / mc:>8.2f}x {rss:>10.0f}", flush=True)
            with results.open("a") as f:
                f.write(json.dumps({"time": time.time(), "model": name, "rows": len(x), "batch": batch, "threads": 1, "sklearn_rows_per_s": sr, "mlscore_rows_per_s": mr, "ratio": mr / sr, "sklearn_cpu_s_per_pass": sc, "mlscore_cpu_s_per_pass": mc, "mlscore_peak_rss_mb": rss}) + "\n")
        print(f"{name:7} check: {agree(binary, model_dir, model, str(data), x)}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
