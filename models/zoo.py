#!/usr/bin/env python3
"""Regenerate the scikit-learn zoo: one MLflow ONNX model per estimator, with onnxruntime goldens.

    scripts/python-env models/zoo.py            # writes models/zoo/

Every case is a scikit-learn estimator (or pipeline) exported with skl2onnx, saved with
mlflow.onnx.save_model (signature inferred from the training frame, input example), and scored
by onnxruntime on a test table. Classifiers are exported twice: with options zipmap=False and
with skl2onnx's default ZipMap output. Written per case:

  models/zoo/<case>/model/        the MLflow model directory
  models/zoo/<case>/input.parquet the test table (with NaNs where the model handles them, and
                                  rows planted exactly on tree thresholds)
  models/zoo/<case>/golden.parquet onnxruntime's outputs, one column per ONNX output
  models/zoo/cases.json           every case: estimator, task, ONNX operators, outputs

The feed follows mlscore's rules (and MLflow's where MLflow can score the model at all): a
single-input graph takes every signature column cast to its element type and stacked; a
multi-input graph (ColumnTransformer) takes one [N, 1] column per input.

skl2onnx 1.20 cannot export HistGradientBoosting* from scikit-learn 1.9 (`missing_go_to_left` is a
numpy bool array that protobuf refuses); `fix_skl2onnx_hist_gradient_boosting` casts it to int
before the node is written. Nothing else is patched.
"""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
ZOO = HERE / "zoo"
SEED = 7
N_TRAIN = 600
N_TEST = 200


def fix_skl2onnx_hist_gradient_boosting() -> None:
    import skl2onnx.common.tree_ensemble as te

    original = te.add_node

    def add_node(*args, **kwargs):
        args = list(args)
        # the last positional argument of add_node is `missing_tracks_true`, a numpy bool in sklearn 1.9
        args = [int(a) if isinstance(a, (np.bool_, bool)) else a for a in args]
        kwargs = {k: int(v) if isinstance(v, (np.bool_, bool)) else v for k, v in kwargs.items()}
        return original(*args, **kwargs)

    te.add_node = add_node
    import skl2onnx.operator_converters.gradient_boosting as gb  # noqa: F401  (uses te.add_node by module lookup)


def numeric_frame(n: int, rng: np.random.Generator, nan_fraction: float = 0.0) -> pd.DataFrame:
    """Six float64 features; two are integer-valued so that tree thresholds fall between values seen in data."""
    df = pd.DataFrame(
        {
            "f0": rng.normal(0, 1, n),
            "f1": rng.normal(5, 2, n),
            "f2": rng.integers(0, 20, n).astype("float64"),
            "f3": rng.uniform(-3, 3, n),
            "f4": rng.integers(18, 90, n).astype("float64"),
            "f5": rng.exponential(2.0, n),
        }
    )
    if nan_fraction:
        mask = rng.random(df.shape) < nan_fraction
        df = df.mask(mask)
    return df


def mixed_frame(n: int, rng: np.random.Generator) -> pd.DataFrame:
    df = numeric_frame(n, rng)[["f0", "f1", "f4"]]
    df["city"] = rng.choice(["paris", "lyon", "nice", "lille"], n)
    df["plan"] = rng.choice(["basic", "pro", "team"], n)
    return df


def targets(df: pd.DataFrame, rng: np.random.Generator):
    x = df.fillna(0).to_numpy(dtype=float)
    weights = np.array([1.5, -0.4, 0.1, 1.0, 0.02, 0.3])[: x.shape[1]]
    z = x @ weights + np.sin(x[:, 0] * 2) + rng.normal(0, 0.5, len(df))
    reg = z * 3 + 10
    binary = (z > np.median(z)).astype("int64")
    multi = np.digitize(z, np.quantile(z, [0.25, 0.5, 0.75])).astype("int64")
    return reg, binary, multi


def cases():
    """(name, task, estimator factory, data kind, handles_nan)."""
    from sklearn.cluster import KMeans
    from sklearn.compose import ColumnTransformer
    from sklearn.decomposition import PCA
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, LogisticRegression, Ridge
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Binarizer, MinMaxScaler, Normalizer, OneHotEncoder, OrdinalEncoder, StandardScaler
    from sklearn.svm import SVC, SVR, LinearSVC
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    def onehot_pipeline(clf):
        return make_pipeline(
            ColumnTransformer(
                [
                    ("num", StandardScaler(), ["f0", "f1", "f4"]),
                    ("cat", OneHotEncoder(handle_unknown="ignore"), ["city", "plan"]),
                ]
            ),
            clf,
        )

    def ordinal_pipeline():
        return make_pipeline(
            ColumnTransformer(
                [
                    ("num", "passthrough", ["f0", "f1", "f4"]),
                    ("cat", OrdinalEncoder(), ["city", "plan"]),
                ]
            ),
            DecisionTreeRegressor(max_depth=5, random_state=0),
        )

    r = 0
    return [
        # linear models
        ("linear_regression", "regression", lambda: LinearRegression(), "numeric", False),
        ("ridge", "regression", lambda: Ridge(alpha=1.0), "numeric", False),
        ("lasso", "regression", lambda: Lasso(alpha=0.05), "numeric", False),
        ("elastic_net", "regression", lambda: ElasticNet(alpha=0.05, l1_ratio=0.3), "numeric", False),
        ("logistic_binary", "binary", lambda: LogisticRegression(max_iter=2000), "numeric", False),
        ("logistic_multiclass", "multiclass", lambda: LogisticRegression(max_iter=2000), "numeric", False),
        ("linear_svc_binary", "binary", lambda: LinearSVC(random_state=r), "numeric", False),
        ("linear_svc_multiclass", "multiclass", lambda: LinearSVC(random_state=r), "numeric", False),
        # kernel machines
        ("svc_linear_binary", "binary", lambda: SVC(kernel="linear", probability=True, random_state=r), "numeric", False),
        ("svc_rbf_binary", "binary", lambda: SVC(kernel="rbf", probability=True, random_state=r), "numeric", False),
        ("svc_rbf_multiclass", "multiclass", lambda: SVC(kernel="rbf", probability=True, random_state=r), "numeric", False),
        ("svc_rbf_multiclass_noproba", "multiclass", lambda: SVC(kernel="rbf", random_state=r), "numeric", False),
        ("svr_linear", "regression", lambda: SVR(kernel="linear"), "numeric", False),
        ("svr_rbf", "regression", lambda: SVR(kernel="rbf"), "numeric", False),
        # neighbours
        ("knn_classifier", "multiclass", lambda: KNeighborsClassifier(n_neighbors=5), "numeric", False),
        ("knn_regressor", "regression", lambda: KNeighborsRegressor(n_neighbors=5), "numeric", False),
        # trees
        ("decision_tree_classifier", "multiclass", lambda: DecisionTreeClassifier(max_depth=6, random_state=r), "numeric", False),
        ("decision_tree_regressor", "regression", lambda: DecisionTreeRegressor(max_depth=6, random_state=r), "numeric", False),
        ("random_forest_binary", "binary", lambda: RandomForestClassifier(n_estimators=15, max_depth=6, random_state=r), "numeric", False),
        ("random_forest_multiclass", "multiclass", lambda: RandomForestClassifier(n_estimators=15, max_depth=6, random_state=r), "numeric", False),
        ("random_forest_regressor", "regression", lambda: RandomForestRegressor(n_estimators=15, max_depth=6, random_state=r), "numeric", False),
        ("extra_trees_binary", "binary", lambda: ExtraTreesClassifier(n_estimators=15, max_depth=6, random_state=r), "numeric", False),
        ("extra_trees_multiclass", "multiclass", lambda: ExtraTreesClassifier(n_estimators=15, max_depth=6, random_state=r), "numeric", False),
        ("extra_trees_regressor", "regression", lambda: ExtraTreesRegressor(n_estimators=15, max_depth=6, random_state=r), "numeric", False),
        ("gradient_boosting_binary", "binary", lambda: GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=r), "numeric", False),
        ("gradient_boosting_multiclass", "multiclass", lambda: GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=r), "numeric", False),
        ("gradient_boosting_regressor", "regression", lambda: GradientBoostingRegressor(n_estimators=20, max_depth=3, random_state=r), "numeric", False),
        ("hist_gradient_boosting_binary", "binary", lambda: HistGradientBoostingClassifier(max_iter=20, random_state=r), "numeric_nan", True),
        ("hist_gradient_boosting_multiclass", "multiclass", lambda: HistGradientBoostingClassifier(max_iter=20, random_state=r), "numeric_nan", True),
        ("hist_gradient_boosting_regressor", "regression", lambda: HistGradientBoostingRegressor(max_iter=20, random_state=r), "numeric_nan", True),
        # neural networks
        ("mlp_classifier", "multiclass", lambda: MLPClassifier(hidden_layer_sizes=(16, 8), max_iter=300, random_state=r), "numeric", False),
        ("mlp_regressor", "regression", lambda: MLPRegressor(hidden_layer_sizes=(16, 8), max_iter=300, random_state=r), "numeric", False),
        # unsupervised and transformers
        ("kmeans", "transform", lambda: KMeans(n_clusters=4, n_init=3, random_state=r), "numeric", False),
        ("pca", "transform", lambda: PCA(n_components=3, random_state=r), "numeric", False),
        ("standard_scaler", "transform", lambda: StandardScaler(), "numeric", False),
        ("min_max_scaler", "transform", lambda: MinMaxScaler(), "numeric", False),
        ("normalizer_l2", "transform", lambda: Normalizer(norm="l2"), "numeric", False),
        ("normalizer_l1", "transform", lambda: Normalizer(norm="l1"), "numeric", False),
        ("normalizer_max", "transform", lambda: Normalizer(norm="max"), "numeric", False),
        ("binarizer", "transform", lambda: Binarizer(threshold=0.5), "numeric", False),
        ("simple_imputer", "transform", lambda: SimpleImputer(strategy="median"), "numeric_nan", True),
        # compositions
        ("pipeline_scaler_logistic", "multiclass", lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)), "numeric", False),
        ("pipeline_imputer_scaler_logistic", "binary", lambda: make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression(max_iter=2000)), "numeric_nan", True),
        ("pipeline_scaler_pca_mlp", "regression", lambda: make_pipeline(StandardScaler(), PCA(n_components=4), MLPRegressor(hidden_layer_sizes=(8,), max_iter=500, random_state=r)), "numeric", False),
        ("column_transformer_onehot_logistic", "multiclass", lambda: onehot_pipeline(LogisticRegression(max_iter=2000)), "mixed", False),
        ("column_transformer_onehot_random_forest", "binary", lambda: onehot_pipeline(RandomForestClassifier(n_estimators=10, max_depth=5, random_state=r)), "mixed", False),
        ("column_transformer_ordinal_tree", "regression", lambda: ordinal_pipeline(), "mixed", False),
        # A binary MLP ends in Sigmoid; test rows far from the training data saturate it (p = 1, 1 - p = 0).
        ("mlp_classifier_binary", "binary", lambda: MLPClassifier(hidden_layer_sizes=(16, 8), max_iter=300, random_state=r), "numeric_far", False),
    ]


def string_label_cases():
    """(name, task, estimator factory): classifiers fitted on string labels, one per kernel family."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.tree import DecisionTreeClassifier

    out = []
    for task in ("binary", "multiclass"):
        out += [
            (f"str_labels_decision_tree_{task}", task, lambda: DecisionTreeClassifier(max_depth=6, random_state=0)),
            (f"str_labels_random_forest_{task}", task, lambda: RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0)),
            (f"str_labels_logistic_{task}", task, lambda: LogisticRegression(max_iter=2000)),
            (f"str_labels_mlp_{task}", task, lambda: MLPClassifier(hidden_layer_sizes=(16, 8), max_iter=300, random_state=0)),
        ]
    return out


def label_encoder_case():
    """LabelEncoder is fitted on labels, not features: exported alone, it maps strings to ints."""
    from sklearn.preprocessing import LabelEncoder

    enc = LabelEncoder().fit(["lille", "lyon", "nice", "paris"])
    return enc


def plant_thresholds(onx, test: pd.DataFrame, features: list[str], rng: np.random.Generator) -> pd.DataFrame:
    """Put some test values exactly on tree split thresholds (as float32), where <= and < differ."""
    values = []
    for node in onx.graph.node:
        if node.op_type.startswith("TreeEnsemble"):
            attrs = {a.name: a for a in node.attribute}
            if "nodes_values" in attrs and "nodes_featureids" in attrs:
                values += list(zip(attrs["nodes_featureids"].ints, attrs["nodes_values"].floats))
    if not values:
        return test
    test = test.copy()
    for row in range(0, len(test), 4):
        fid, thr = values[rng.integers(0, len(values))]
        if fid < len(features):
            test.iloc[row, test.columns.get_loc(features[fid])] = float(np.float32(thr))
    return test


def ort_feed(sess, frame: pd.DataFrame, sig_columns: list[str]):
    inputs = sess.get_inputs()
    np_type = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64, "tensor(string)": object}
    if len(inputs) == 1:
        t = np_type[inputs[0].type]
        return {inputs[0].name: np.stack([frame[c].to_numpy().astype(t) for c in sig_columns], axis=1)}
    def column(name, t):
        if t is object:  # pandas 3 strings are Arrow-backed: onnxruntime wants a numpy object array
            return np.array(frame[name].tolist(), dtype=object).reshape(-1, 1)
        return frame[name].to_numpy().astype(t).reshape(-1, 1)

    return {i.name: column(i.name, np_type[i.type]) for i in inputs}


def single_thread():
    """onnxruntime's options for goldens: one thread, so that a forest's trees are summed in order
    (as mlscore sums them). With more threads onnxruntime sums them in another order, which moves
    a probability by an ulp: enough to make a binary forest's 1 - p come out as -1.2e-7 or 0."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return so


def golden_table(outputs: dict, names: list[str]) -> pa.Table:
    cols = {}
    for name in names:
        v = outputs[name]
        if isinstance(v, list) and v and isinstance(v[0], dict):  # ZipMap: a list of {class: prob}
            cols[name] = pa.array([list(d.items()) for d in v], type=pa.map_(pa.string() if isinstance(next(iter(v[0])), str) else pa.int64(), pa.float32()))
            continue
        v = np.asarray(v)
        if v.ndim == 2 and v.shape[1] == 1:
            v = v[:, 0]
        cols[name] = pa.array(list(v)) if v.ndim == 2 else pa.array(v)
    return pa.table(cols)


def export_case(name, task, factory, kind, handles_nan, train, test, y, rng, labels="int") -> list[dict]:
    """Fits one estimator, exports it (twice for classifiers), scores the test rows with onnxruntime
    and writes the case directories; returns their manifest entries."""
    import mlflow
    import onnxruntime as ort
    from mlflow.models import infer_signature
    from skl2onnx import to_onnx

    model = factory()
    model.fit(train, y) if y is not None else model.fit(train)
    # Classifiers twice: dense probabilities (zipmap=False) and skl2onnx's default ZipMap output.
    # Plain estimators take one float32 X (what skl2onnx does for arrays); ColumnTransformers one input per column.
    # (float32 columns: skl2onnx builds double pipelines from float64 frames, and its ZipMap refuses doubles.)
    if kind == "mixed":
        sample = train[:1].astype({c: np.float32 for c in train.select_dtypes("number").columns})
    else:
        sample = train[:1].to_numpy(np.float32)
    variants = [("", {"zipmap": False}), ("_zipmap", None)] if task in ("binary", "multiclass") else [("", None)]
    entries = []
    for suffix, options in variants:
        case = name + suffix
        try:
            onx = to_onnx(model, sample, options=options)
        except NameError as e:  # estimators without probabilities (LinearSVC) have no zipmap option
            if "zipmap" not in str(e):
                raise
            if suffix:
                continue
            onx = to_onnx(model, sample)
        case_test = plant_thresholds(onx, test, list(train.columns), rng) if kind != "mixed" else test
        sess = ort.InferenceSession(onx.SerializeToString(), single_thread(), providers=["CPUExecutionProvider"])
        out_names = [o.name for o in sess.get_outputs()]
        outputs = dict(zip(out_names, sess.run(out_names, ort_feed(sess, case_test, list(train.columns)))))
        d = ZOO / case
        d.mkdir()
        sig = infer_signature(train, model.predict(train) if hasattr(model, "predict") else model.transform(train))
        mlflow.onnx.save_model(onx, d / "model", signature=sig, input_example=train.head(3))
        pq.write_table(pa.Table.from_pandas(case_test, preserve_index=False), d / "input.parquet")
        pq.write_table(golden_table(outputs, out_names), d / "golden.parquet")
        ops = sorted({(n.domain or "ai.onnx") + ":" + n.op_type for n in onx.graph.node})
        entry = {"case": case, "estimator": type(model).__name__, "task": task, "zipmap": suffix == "_zipmap", "handles_nan": handles_nan, "outputs": out_names, "ops": ops}
        if labels != "int":
            entry["labels"] = labels
        entries.append(entry)
        print(f"{case:45s} {', '.join(ops)}")
    return entries


def main() -> None:
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("mlflow").setLevel(logging.CRITICAL)
    fix_skl2onnx_hist_gradient_boosting()
    import mlflow
    import onnx
    import onnxruntime as ort
    from mlflow.models import infer_signature
    from skl2onnx import to_onnx

    shutil.rmtree(ZOO, ignore_errors=True)
    ZOO.mkdir()
    rng = np.random.default_rng(SEED)
    data = {
        "numeric": (numeric_frame(N_TRAIN, rng), numeric_frame(N_TEST, rng)),
        "numeric_nan": (numeric_frame(N_TRAIN, rng, 0.08), numeric_frame(N_TEST, rng, 0.12)),
        "mixed": (mixed_frame(N_TRAIN, rng), mixed_frame(N_TEST, rng)),
    }
    # The numeric test rows, every other one moved 6x further from the mean (no draw: later cases keep their data).
    far = data["numeric"][1].copy()
    far.iloc[::2] = far.iloc[::2] * 6 - far.mean() * 5
    data["numeric_far"] = (data["numeric"][0], far)
    manifest = []
    for name, task, factory, kind, handles_nan in cases():
        train, test = data[kind]
        reg, binary, multi = targets(train.select_dtypes("number"), rng)
        y = {"regression": reg, "binary": binary, "multiclass": multi}.get(task)
        manifest += export_case(name, task, factory, kind, handles_nan, train, test, y, rng)

    # LabelEncoder: a string -> int mapping over one string column.
    enc = label_encoder_case()
    onx = to_onnx(enc, np.array(["paris"]).reshape(-1, 1))
    frame = pd.DataFrame({"city": rng.choice(["paris", "lyon", "nice", "lille", "rome"], N_TEST)})
    sess = ort.InferenceSession(onx.SerializeToString(), single_thread(), providers=["CPUExecutionProvider"])
    out_names = [o.name for o in sess.get_outputs()]
    outputs = dict(zip(out_names, sess.run(out_names, {sess.get_inputs()[0].name: np.array(frame["city"].tolist(), dtype=object).reshape(-1, 1)})))
    d = ZOO / "label_encoder"
    d.mkdir()
    mlflow.onnx.save_model(onx, d / "model", signature=infer_signature(frame, enc.transform(["paris"])), input_example=frame.head(3))
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), d / "input.parquet")
    pq.write_table(golden_table(outputs, out_names), d / "golden.parquet")
    manifest.append({"case": "label_encoder", "estimator": "LabelEncoder", "task": "transform", "zipmap": False, "handles_nan": False, "outputs": out_names, "ops": sorted({(n.domain or "ai.onnx") + ":" + n.op_type for n in onx.graph.node})})
    # Classifiers with string class labels (skl2onnx writes classlabels_strings, string label
    # tensors and string-keyed ZipMaps). Their own seeded stream: the cases above keep their data.
    rng = np.random.default_rng(SEED + 1)
    for name, task, factory in string_label_cases():
        train, test = data["numeric"]
        _, binary, multi = targets(train, rng)
        y = np.array(["no", "yes"])[binary] if task == "binary" else np.array(["bronze", "silver", "gold", "platinum"])[multi]
        manifest += export_case(name, task, factory, "numeric", False, train, test, y, rng, labels="string")

    (ZOO / "cases.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"{len(manifest)} cases")


if __name__ == "__main__":
    sys.exit(main())
