#!/usr/bin/env python3
"""Regenerate mlscore's bundled sample models, stores, data and golden predictions.

Run it through the project's pinned virtualenv (versions in python/requirements.txt):

    scripts/python-env models/generate.py

What it writes (everything under models/, all committed; the run is deterministic in its data
and weights, while MLflow's run and model ids change from one regeneration to the next):

  data/customers/part-0000{0,1,2}.parquet   the sample table (1000 rows, 3 files, small row groups)
  store/mlflow.db + store/mlruns/           an MLflow sqlite store, written by MLflow itself,
                                            with registered models, versions, aliases and a stage
  filestore/mlruns/                         the same kind of store in MLflow's file layout
  churn/                                    a plain model directory (mlflow.onnx.save_model)
  golden/<model>.parquet                    onnxruntime's outputs on the sample table
  manifest.json                             run ids, model ids and URIs, for tests and docs

The models are scikit-learn estimators exported with skl2onnx (options zipmap=False) and logged
with mlflow.onnx.log_model, with a signature inferred from the training frame and an input example.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
SEED = 20261122
FEATURES = ["age", "income", "tenure", "balance", "products", "active"]


def customers(n: int, seed: int) -> pd.DataFrame:
    """A synthetic customer table with the column types real tables have (int64, int32, f64, bool, str)."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 90, n).astype("int64")
    income = np.round(rng.lognormal(10.5, 0.5, n), 2)
    tenure = rng.integers(0, 120, n).astype("int32")
    balance = np.round(rng.normal(2500.0, 1800.0, n), 2)
    products = rng.integers(1, 5, n).astype("int32")
    active = rng.random(n) < 0.6
    region = rng.choice(["north", "south", "east", "west"], n)
    return pd.DataFrame(
        {
            "customer_id": np.arange(1, n + 1, dtype="int64") + seed % 1000 * 100_000,
            "age": age,
            "income": income,
            "tenure": tenure,
            "balance": balance,
            "products": products,
            "active": active,
            "region": region,
        }
    )


def targets(df: pd.DataFrame, seed: int):
    rng = np.random.default_rng(seed + 1)
    z = (
        -0.04 * (df.age - 50)
        - 0.02 * df.tenure
        + 0.0004 * (df.balance - 2500)
        - 0.8 * df.active
        + 0.3 * df.products
        + rng.normal(0, 0.7, len(df))
    )
    churn = (z > 0).astype("int64")
    spend = 0.02 * df.income + 15 * df.products + 0.01 * df.balance - 0.3 * df.age + rng.normal(0, 20, len(df))
    segment = np.digitize(df.income / 1000 + df.tenure / 10 + rng.normal(0, 3, len(df)), [35, 45, 55]).astype("int64")
    return churn, spend, segment


def to_onnx(model, n_features: int):
    from skl2onnx import to_onnx as _to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    options = {id(model): {"zipmap": False}} if hasattr(model, "predict_proba") else None
    return _to_onnx(model, initial_types=[("X", FloatTensorType([None, n_features]))], options=options)


def with_raw_initializers(onx):
    """Store initializers as raw bytes, as torch.onnx and most exporters do (skl2onnx writes float_data).

    mlflow.onnx.save_model then moves every initializer of 1 KiB or more to an external
    `<uuid>.data` file beside model.onnx: the case that makes loading by path necessary.
    """
    from onnx import numpy_helper

    for init in onx.graph.initializer:
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init), init.name))
    return onx


def ort_outputs(onx, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """onnxruntime's outputs for the frame's feature columns, each cast to float32 and stacked."""
    import onnxruntime as ort

    sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.stack([frame[c].to_numpy().astype(np.float32) for c in FEATURES], axis=1)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {sess.get_inputs()[0].name: x})))


def write_golden(name: str, frame: pd.DataFrame, outputs: dict[str, np.ndarray]) -> None:
    cols = {"customer_id": pa.array(frame.customer_id.to_numpy())}
    for k, v in outputs.items():
        if v.ndim == 2 and v.shape[1] == 1:
            v = v[:, 0]
        cols[k] = pa.array(list(v)) if v.ndim == 2 else pa.array(v)
    pq.write_table(pa.table(cols), HERE / "golden" / f"{name}.parquet")


def main() -> None:
    warnings.filterwarnings("ignore")
    import mlflow
    from mlflow.models import infer_signature
    from mlflow.tracking import MlflowClient
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.neural_network import MLPClassifier

    for d in ["store", "filestore", "churn", "golden", "data"]:
        shutil.rmtree(HERE / d, ignore_errors=True)
    (HERE / "golden").mkdir()
    (HERE / "data" / "customers").mkdir(parents=True)

    train = customers(3000, SEED)
    churn_y, spend_y, segment_y = targets(train, SEED)
    x = train[FEATURES]

    # The sample table: three files, small row groups, so that ordering across files and row groups is exercised.
    sample = customers(1000, SEED + 7)
    bounds = [0, 400, 750, 1000]
    for i in range(3):
        part = sample.iloc[bounds[i] : bounds[i + 1]]
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), HERE / "data" / "customers" / f"part-{i:05d}.parquet", row_group_size=128)

    models = {
        "churn_v1": LogisticRegression(C=1.0, max_iter=2000).fit(x, churn_y),
        "churn_v2": LogisticRegression(C=0.05, max_iter=2000).fit(x, churn_y),
        "spend": LinearRegression().fit(x, spend_y),
        "segment": LogisticRegression(max_iter=5000).fit(x, segment_y),
        # Large enough weights that mlflow.onnx saves them as external data (<uuid>.data beside model.onnx).
        "segment_mlp": MLPClassifier(hidden_layer_sizes=(64, 32), max_iter=300, random_state=0).fit(x, segment_y),
    }
    onnx_models = {k: to_onnx(m, len(FEATURES)) for k, m in models.items()}
    with_raw_initializers(onnx_models["segment_mlp"])

    manifest: dict = {"features": FEATURES, "sample": "data/customers", "models": {}}
    for k, onx in onnx_models.items():
        outs = ort_outputs(onx, sample)
        write_golden(k, sample, outs)
        manifest["models"][k] = {"outputs": list(outs)}

    sklearn_predictions = {k: m.predict(x) for k, m in models.items()}

    # --- the sqlite store, as `MLFLOW_TRACKING_URI=sqlite:///mlflow.db` writes it (artifacts in ./mlruns) ---
    store = HERE / "store"
    store.mkdir()
    os.chdir(store)
    mlflow.set_tracking_uri("sqlite:///mlflow.db")
    mlflow.set_experiment("customers")
    client = MlflowClient()
    registry = {"churn_v1": "churn", "churn_v2": "churn", "spend": "spend", "segment": "segment", "segment_mlp": "segment_mlp"}
    for k, onx in onnx_models.items():
        sig = infer_signature(x, sklearn_predictions[k])
        with mlflow.start_run(run_name=k) as run:
            info = mlflow.onnx.log_model(
                onx, name="model", signature=sig, input_example=x.head(3), registered_model_name=registry[k]
            )
        manifest["models"][k].update(
            run_id=run.info.run_id,
            model_id=info.model_id,
            registered_name=registry[k],
            registered_version=int(info.registered_model_version),
        )
    client.set_registered_model_alias("churn", "champion", 2)
    client.set_registered_model_alias("churn", "challenger", 1)
    client.set_registered_model_alias("segment", "champion", 1)
    client.transition_model_version_stage("churn", 1, "Production")
    manifest["aliases"] = {"churn@champion": 2, "churn@challenger": 1, "segment@champion": 1}
    manifest["stages"] = {"churn/Production": 1}

    # --- a file store (mlruns/ layout) with the churn model registered the same way ---
    filestore = HERE / "filestore"
    filestore.mkdir()
    os.chdir(filestore)
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    mlflow.set_tracking_uri((filestore / "mlruns").as_uri())
    mlflow.set_experiment("customers")
    with mlflow.start_run(run_name="churn_v1") as run:
        info = mlflow.onnx.log_model(
            onnx_models["churn_v1"],
            name="model",
            signature=infer_signature(x, sklearn_predictions["churn_v1"]),
            input_example=x.head(3),
            registered_model_name="churn",
        )
    MlflowClient().set_registered_model_alias("churn", "champion", 1)
    manifest["filestore"] = {"run_id": run.info.run_id, "model_id": info.model_id, "registered": "churn", "alias": "champion"}

    # --- a plain model directory, for `--model models/churn` ---
    os.chdir(HERE)
    mlflow.onnx.save_model(
        onnx_models["churn_v2"], HERE / "churn", signature=infer_signature(x, sklearn_predictions["churn_v2"]), input_example=x.head(3)
    )
    manifest["plain"] = {"churn": "churn_v2"}

    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    print(json.dumps(manifest, indent=2, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
