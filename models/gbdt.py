#!/usr/bin/env python3
"""Regenerate the gradient-boosting cases: XGBoost and LightGBM models logged by MLflow, with goldens.

    scripts/python-env models/gbdt.py           # writes models/gbdt/
    scripts/python-env models/gbdt.py NAME...   # only those cases, keeping the others

Every case is trained here on a small table, saved with `mlflow.xgboost.save_model` or
`mlflow.lightgbm.save_model` (signature inferred from the training frame; LightGBM's scikit-learn
API classes in skops, pickle or cloudpickle), and scored on a test table three ways, all recorded
in golden.parquet:

  prediction   what `mlflow.pyfunc.load_model(path).predict(test)` returns (so what spark_udf
               returns): probabilities of a Booster, labels of an XGBClassifier, values
  margin       the library's raw margins (`output_margin=True` / `raw_score=True`), one list a row
  proba        a classifier's `predict_proba` (sklearn-API models only)

Written per case: models/gbdt/<case>/model/ (the MLflow model), input.parquet, golden.parquet,
and models/gbdt/cases.json (every case: library, objective, model class, golden columns).

The test rows carry NaNs where the case says so, and rows planted on the model's own thresholds
(exactly on one, and one double ulp either side), where strict `<` against float32 (XGBoost) and
`<=` against double (LightGBM) decide the branch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
OUT = HERE / "gbdt"
SEED = 11
N_TRAIN = 800
N_TEST = 300


def frame(n: int, rng: np.random.Generator, nan_fraction: float) -> pd.DataFrame:
    """The zoo's six numeric features (models/zoo.py), with zeros planted, then NaNs."""
    from zoo import numeric_frame

    df = numeric_frame(n, rng)
    # Zeros matter to LightGBM's zero_as_missing and to missing type None (NaN read as 0).
    df.loc[rng.random(n) < 0.1, "f3"] = 0.0
    if nan_fraction:
        df = df.mask(rng.random(df.shape) < nan_fraction)
    return df


def targets(df: pd.DataFrame, rng: np.random.Generator):
    x = df.fillna(0).to_numpy(dtype=float)
    z = x @ np.array([1.5, -0.4, 0.1, 1.0, 0.02, 0.3]) + np.sin(x[:, 0] * 2) + rng.normal(0, 0.5, len(df))
    return {
        "regression": z * 3 + 10,
        "positive": np.exp(z / 4) + 0.05,
        "binary": (z > np.median(z)).astype("int64"),
        "multiclass": np.digitize(z, np.quantile(z, [0.25, 0.5, 0.75])).astype("int64"),
        "rank": np.digitize(z, np.quantile(z, [0.3, 0.6, 0.85])).astype("int64"),
    }


def plant(test: pd.DataFrame, splits: list[tuple[str, float]], rng: np.random.Generator) -> pd.DataFrame:
    """Overwrites some test cells with split thresholds: exactly, and one double ulp below and above."""
    test = test.copy()
    rows = rng.permutation(len(test))
    k = 0
    for col, thr in splits[:60]:
        for value in (thr, np.nextafter(thr, -np.inf), np.nextafter(thr, np.inf)):
            if k >= len(rows):
                return test
            test.loc[test.index[rows[k]], col] = value
            k += 1
    return test


def xgb_splits(booster) -> list[tuple[str, float]]:
    df = booster.trees_to_dataframe()
    df = df[df["Feature"] != "Leaf"]
    return [(f, float(np.float32(s))) for f, s in zip(df["Feature"], df["Split"])]


def lgb_splits(booster) -> list[tuple[str, float]]:
    df = booster.trees_to_dataframe()
    df = df[df["split_feature"].notna() & (df["decision_type"] == "<=")]
    return [(f, float(t)) for f, t in zip(df["split_feature"], df["threshold"])]


def xgb_cases():
    """(name, objective, target, nan fraction, how: booster | classifier | regressor, params)."""
    return [
        ("xgb_binary_logistic", "binary:logistic", "binary", 0.1, "booster", {}),
        ("xgb_binary_logistic_json", "binary:logistic", "binary", 0.1, "booster", {"model_format": "json"}),
        ("xgb_binary_logistic_xgb", "binary:logistic", "binary", 0.0, "booster", {"model_format": "xgb"}),
        ("xgb_binary_logitraw", "binary:logitraw", "binary", 0.0, "booster", {}),
        ("xgb_binary_hinge", "binary:hinge", "binary", 0.0, "booster", {}),
        ("xgb_reg_logistic", "reg:logistic", "binary", 0.0, "booster", {}),
        ("xgb_multi_softprob", "multi:softprob", "multiclass", 0.1, "booster", {}),
        ("xgb_multi_softmax", "multi:softmax", "multiclass", 0.0, "booster", {}),
        ("xgb_squarederror", "reg:squarederror", "regression", 0.1, "booster", {}),
        ("xgb_absoluteerror", "reg:absoluteerror", "regression", 0.0, "booster", {}),
        ("xgb_pseudohubererror", "reg:pseudohubererror", "regression", 0.0, "booster", {}),
        ("xgb_poisson", "count:poisson", "positive", 0.0, "booster", {}),
        ("xgb_gamma", "reg:gamma", "positive", 0.0, "booster", {}),
        ("xgb_tweedie", "reg:tweedie", "positive", 0.1, "booster", {}),
        ("xgb_rank_pairwise", "rank:pairwise", "rank", 0.0, "booster", {}),
        ("xgb_dart", "binary:logistic", "binary", 0.0, "booster", {"booster": "dart", "rate_drop": 0.1}),
        ("xgb_forest", "reg:squarederror", "regression", 0.0, "booster", {"num_parallel_tree": 4, "subsample": 0.8, "colsample_bynode": 0.8}),
        ("xgb_classifier_binary", "binary:logistic", "binary", 0.1, "classifier", {}),
        ("xgb_classifier_multiclass", "multi:softprob", "multiclass", 0.0, "classifier", {}),
        ("xgb_classifier_early_stopped", "binary:logistic", "binary", 0.0, "classifier", {"early_stop": True}),
        ("xgb_regressor_early_stopped", "reg:squarederror", "regression", 0.0, "regressor", {"early_stop": True}),
    ]


def lgb_cases():
    """(name, params, target, nan fraction)."""
    return [
        ("lgb_binary", {"objective": "binary"}, "binary", 0.1),
        ("lgb_cross_entropy", {"objective": "cross_entropy"}, "binary", 0.0),
        ("lgb_multiclass", {"objective": "multiclass", "num_class": 4}, "multiclass", 0.1),
        ("lgb_multiclassova", {"objective": "multiclassova", "num_class": 4}, "multiclass", 0.0),
        ("lgb_regression", {"objective": "regression"}, "regression", 0.1),
        ("lgb_regression_sqrt", {"objective": "regression", "reg_sqrt": True}, "positive", 0.0),
        ("lgb_regression_l1", {"objective": "regression_l1"}, "regression", 0.0),
        ("lgb_huber", {"objective": "huber"}, "regression", 0.0),
        ("lgb_fair", {"objective": "fair"}, "regression", 0.0),
        ("lgb_quantile", {"objective": "quantile", "alpha": 0.8}, "regression", 0.0),
        ("lgb_mape", {"objective": "mape"}, "positive", 0.0),
        ("lgb_poisson", {"objective": "poisson"}, "positive", 0.0),
        ("lgb_gamma", {"objective": "gamma"}, "positive", 0.0),
        ("lgb_tweedie", {"objective": "tweedie"}, "positive", 0.1),
        ("lgb_lambdarank", {"objective": "lambdarank"}, "rank", 0.0),
        ("lgb_zero_as_missing", {"objective": "regression", "zero_as_missing": True}, "regression", 0.1),
        ("lgb_no_nan_handling", {"objective": "binary", "use_missing": False}, "binary", 0.1),
        ("lgb_rf", {"objective": "regression", "boosting": "rf", "bagging_freq": 1, "bagging_fraction": 0.7}, "regression", 0.0),
        ("lgb_early_stopped", {"objective": "binary", "early_stop": True}, "binary", 0.0),
    ]


def as_list_column(a: np.ndarray) -> pa.Array:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    return pa.array([list(r) for r in a], type=pa.list_(pa.float64()))


def golden_table(prediction, margin, proba=None) -> pa.Table:
    prediction = np.asarray(prediction)
    cols = {"prediction": pa.array(prediction) if prediction.ndim == 1 else as_list_column(prediction)}
    cols["margin"] = as_list_column(margin)
    if proba is not None:
        cols["proba"] = as_list_column(proba)
    return pa.table(cols)


def record(d: Path, test: pd.DataFrame, margin, proba=None) -> np.ndarray:
    """Writes a case's input and golden tables: MLflow's pyfunc prediction on `test` (returned),
    the library's margins and, for classifiers, its probabilities."""
    import mlflow

    prediction = np.asarray(mlflow.pyfunc.load_model(str(d / "model")).predict(test))
    pq.write_table(pa.Table.from_pandas(test, preserve_index=False), d / "input.parquet")
    pq.write_table(golden_table(prediction, margin, proba), d / "golden.parquet")
    return prediction


def xgb_sig_frame(model, train):
    import xgboost as xgb

    return model.predict(xgb.DMatrix(train)) if isinstance(model, xgb.Booster) else model.predict(train)


def make_xgb(rng, name, objective, target, nan, how, params):
    import mlflow
    import xgboost as xgb
    from mlflow.models import infer_signature

    train = frame(N_TRAIN, rng, nan)
    test = frame(N_TEST, rng, nan)
    y = targets(train, rng)[target]
    params = dict(params)
    model_format = params.pop("model_format", "ubj")
    early = params.pop("early_stop", False)
    base = {"objective": objective, "max_depth": 4, "eta": 0.3, "seed": 0, "nthread": 1}
    if target == "multiclass" and how == "booster":
        base["num_class"] = 4
    base.update(params)
    if how == "booster":
        dtrain = xgb.DMatrix(train, label=y)
        if target == "rank":
            dtrain.set_group([40] * (N_TRAIN // 40))
        model = xgb.train(base, dtrain, num_boost_round=30)
        booster = model
    else:
        cls = xgb.XGBClassifier if how == "classifier" else xgb.XGBRegressor
        kw = {k: v for k, v in base.items() if k not in ("eta", "seed", "nthread")}
        model = cls(n_estimators=60, learning_rate=0.3, random_state=0, n_jobs=1, **kw)
        if early:
            # Validation labels from other rows: the loss soon rises, so the best round comes early.
            val = frame(200, rng, nan)
            yv = rng.permutation(targets(val, rng)[target])
            model.set_params(early_stopping_rounds=5)
            model.fit(train, y, eval_set=[(val, yv)], verbose=False)
            assert model.best_iteration + 1 < model.get_booster().num_boosted_rounds(), name
        else:
            model.fit(train, y)
        booster = model.get_booster()
    d = OUT / name
    d.mkdir(parents=True)
    test = plant(test, xgb_splits(booster), rng)
    sig = infer_signature(train, xgb_sig_frame(model, train))
    mlflow.xgboost.save_model(model, d / "model", signature=sig, input_example=train.head(3), model_format=model_format)
    if how == "booster":
        margin = booster.predict(xgb.DMatrix(test), output_margin=True)
        proba = None
    else:
        margin = model.predict(test, output_margin=True)
        proba = model.predict_proba(test) if how == "classifier" else None
    prediction = record(d, test, margin, proba)
    entry = {
        "case": name,
        "library": "xgboost",
        "objective": objective,
        "model_class": type(model).__module__ + "." + type(model).__name__,
        "model_format": model_format,
        "prediction_dtype": str(prediction.dtype),
        "columns": ["prediction", "margin"] + (["proba"] if proba is not None else []),
    }
    if how != "booster" and early:
        entry["best_iteration"] = int(model.best_iteration)
    return entry


def make_lgb(rng, name, params, target, nan):
    import lightgbm as lgb
    import mlflow
    from mlflow.models import infer_signature

    train = frame(N_TRAIN, rng, nan)
    test = frame(N_TEST, rng, nan)
    y = targets(train, rng)[target]
    params = dict(params)
    early = params.pop("early_stop", False)
    base = {"num_leaves": 15, "learning_rate": 0.2, "verbose": -1, "seed": 0, "num_threads": 1, "min_data_in_leaf": 10}
    base.update(params)
    dtrain = lgb.Dataset(train, label=y)
    if target == "rank":
        dtrain.set_group([40] * (N_TRAIN // 40))
    kw = {}
    if early:
        val = frame(200, rng, nan)
        dval = lgb.Dataset(val, label=rng.permutation(targets(val, rng)[target]), reference=dtrain)
        kw = {"valid_sets": [dval], "callbacks": [lgb.early_stopping(5, verbose=False)]}
    booster = lgb.train(base, dtrain, num_boost_round=40, **kw)
    d = OUT / name
    d.mkdir(parents=True)
    test = plant(test, lgb_splits(booster), rng)
    sig = infer_signature(train, booster.predict(train))
    mlflow.lightgbm.save_model(booster, d / "model", signature=sig, input_example=train.head(3))
    prediction = record(d, test, booster.predict(test, raw_score=True))
    return {
        "case": name,
        "library": "lightgbm",
        "objective": base["objective"],
        "model_class": "lightgbm.basic.Booster",
        "prediction_dtype": str(prediction.dtype),
        "columns": ["prediction", "margin"],
    }


def lgb_sklearn_cases():
    """(name, class, serialization format, target, nan fraction, labels, params): scikit-learn API
    models, which mlflow.lightgbm stores with mlflow.sklearn's serializers (skops by default)."""
    return [
        ("lgb_classifier_binary_skops", "LGBMClassifier", "skops", "binary", 0.1, ["churn", "stay"], {}),
        ("lgb_classifier_multiclass_pickle", "LGBMClassifier", "pickle", "multiclass", 0.1, [10, 20, 30, 40], {}),
        ("lgb_classifier_bool_cloudpickle", "LGBMClassifier", "cloudpickle", "binary", 0.0, [False, True], {}),
        ("lgb_classifier_early_stopped_skops", "LGBMClassifier", "skops", "multiclass", 0.0, ["a", "b", "c", "d"], {"early_stop": True}),
        ("lgb_regressor_pickle", "LGBMRegressor", "pickle", "regression", 0.1, None, {}),
        ("lgb_regressor_early_stopped_cloudpickle", "LGBMRegressor", "cloudpickle", "positive", 0.0, None, {"objective": "poisson", "early_stop": True}),
        ("lgb_ranker_pickle", "LGBMRanker", "pickle", "rank", 0.0, None, {}),
        # A booster that kept every round but has a best iteration (as lgb.train(...,
        # keep_training_booster=True) leaves it): predict uses the first 15 rounds of 40.
        ("lgb_classifier_best_iteration_skops", "LGBMClassifier", "skops", "binary", 0.0, [0, 1], {"best_iteration": 15}),
        # Small (a few KB): the seed of the lightgbm_pickle fuzz target.
        ("lgb_classifier_small_pickle", "LGBMClassifier", "pickle", "multiclass", 0.1, ["x", "y", "z", "w"], {"n_estimators": 3, "num_leaves": 4}),
    ]


def make_lgb_sklearn(rng, name, cls_name, fmt, target, nan, labels, params):
    """A scikit-learn API model: predictions are what MLflow's pyfunc returns (labels mapped back
    through the model's LabelEncoder for classifiers), with raw scores and predict_proba."""
    import lightgbm as lgb
    import mlflow
    from mlflow.models import infer_signature

    train = frame(N_TRAIN, rng, nan)
    test = frame(N_TEST, rng, nan)
    y = targets(train, rng)[target]
    if labels is not None:
        y = np.asarray(labels, dtype=object if isinstance(labels[0], str) else None)[y]
    params = dict(params)
    early = params.pop("early_stop", False)
    cls = getattr(lgb, cls_name)
    best = params.pop("best_iteration", None)
    base = {"n_estimators": 40, "num_leaves": 15, "learning_rate": 0.2, "verbose": -1, "random_state": 0, "n_jobs": 1, "min_child_samples": 10}
    model = cls(**{**base, **params})
    fit = {}
    if target == "rank":
        fit["group"] = [40] * (N_TRAIN // 40)
    if early:
        val = frame(200, rng, nan)
        yv = rng.permutation(y[:200])
        fit["eval_set"] = [(val, yv)]
        fit["callbacks"] = [lgb.early_stopping(5, verbose=False)]
    model.fit(train, y, **fit)
    if early:
        assert 0 < model.best_iteration_ < 40, (name, model.best_iteration_)
    if best is not None:
        model.booster_.best_iteration = best
        assert model.booster_.num_trees() == 40 and model.predict(train, raw_score=True)[0] != model.predict(train, raw_score=True, num_iteration=40)[0]
    booster = model.booster_
    d = OUT / name
    d.mkdir(parents=True)
    test = plant(test, lgb_splits(booster), rng)
    sig = infer_signature(train, model.predict(train))
    # fmt None: MLflow's default (models/gbdt_legacy.py: MLflow 2.5, which only pickles).
    kw = {"serialization_format": fmt} if fmt else {}
    mlflow.lightgbm.save_model(model, d / "model", signature=sig, input_example=train.head(3), **kw)
    proba = model.predict_proba(test) if cls_name == "LGBMClassifier" else None
    prediction = record(d, test, model.predict(test, raw_score=True), proba)
    entry = {
        "case": name,
        "library": "lightgbm",
        "objective": model.objective_,
        "model_class": "lightgbm.sklearn." + cls_name,
        "serialization_format": fmt,
        "prediction_dtype": str(prediction.dtype),
        "columns": ["prediction", "margin"] + (["proba"] if proba is not None else []),
    }
    if early or best is not None:
        entry["best_iteration"] = int(model.booster_.best_iteration)
    return entry


CITIES = ["lille", "lyon", "nice", "paris", "rennes", "toulouse"]
PLANS = ["basic", "pro", "team"]


def categorical_frame(n: int, rng: np.random.Generator, unseen: bool) -> pd.DataFrame:
    """Two numeric features and two pandas categoricals; nulls in both, an unseen city if asked."""
    df = frame(n, rng, 0.0)[["f0", "f1"]]
    cities = CITIES + (["rome"] if unseen else [])
    city = rng.choice(cities, n).astype(object)
    city[rng.random(n) < 0.05] = None
    plan = rng.choice(PLANS, n).astype(object)
    plan[rng.random(n) < 0.05] = None
    df["city"] = pd.Categorical(city, categories=cities)
    df["plan"] = pd.Categorical(plan, categories=PLANS)
    return df


def categorical_target(df: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    bonus = df["city"].map({"nice": 1.5, "paris": -1.0, "lille": 0.7}).astype(float).fillna(0).to_numpy().copy()
    bonus += df["plan"].map({"pro": 0.8, "team": -0.6}).astype(float).fillna(0).to_numpy()
    return ((df["f0"].to_numpy() + bonus + rng.normal(0, 0.3, len(df))) > 0.3).astype("int64")


def make_categorical(rng, name: str, library: str) -> dict:
    """A Booster trained on pandas categoricals. MLflow's pyfunc cannot score these at all (its
    signature says string; XGBoost refuses strings, schema enforcement refuses categories), so the
    prediction golden is the library's own predict on categorical columns."""
    import lightgbm as lgb
    import mlflow
    import xgboost as xgb
    from mlflow.models import infer_signature

    train = categorical_frame(N_TRAIN, rng, unseen=False)
    # XGBoost refuses categories it did not see in training; LightGBM sends them right.
    test = categorical_frame(N_TEST, rng, unseen=library == "lightgbm")
    y = categorical_target(train, rng)
    d = OUT / name
    d.mkdir(parents=True)
    if library == "xgboost":
        model = xgb.train({"objective": "binary:logistic", "max_depth": 4, "eta": 0.3, "seed": 0, "nthread": 1, "max_cat_to_onehot": 1}, xgb.DMatrix(train, label=y, enable_categorical=True), 20)
        predict = lambda df, **kw: model.predict(xgb.DMatrix(df, enable_categorical=True), **kw)  # noqa: E731
        sig = infer_signature(train, predict(train))
        mlflow.xgboost.save_model(model, d / "model", signature=sig, input_example=train.head(3))
        prediction, margin = predict(test), predict(test, output_margin=True)
    else:
        model = lgb.train({"objective": "binary", "num_leaves": 15, "learning_rate": 0.2, "verbose": -1, "seed": 0, "num_threads": 1, "min_data_in_leaf": 10, "cat_smooth": 1, "min_data_per_group": 5}, lgb.Dataset(train, label=y), 20)
        sig = infer_signature(train, model.predict(train))
        mlflow.lightgbm.save_model(model, d / "model", signature=sig, input_example=train.head(3))
        prediction, margin = model.predict(test), model.predict(test, raw_score=True)
    pq.write_table(pa.Table.from_pandas(test, preserve_index=False), d / "input.parquet")
    pq.write_table(golden_table(prediction, margin), d / "golden.parquet")
    return {
        "case": name,
        "library": library,
        "objective": "binary:logistic" if library == "xgboost" else "binary",
        "model_class": "xgboost.core.Booster" if library == "xgboost" else "lightgbm.basic.Booster",
        "prediction_dtype": str(np.asarray(prediction).dtype),
        "columns": ["prediction", "margin"],
        "golden": "the library's predict on pandas categoricals (MLflow's pyfunc cannot score this model)",
    }


def all_cases():
    """Every case: (name, function of its generator that makes it and returns its entry)."""
    out = []
    # One generator per case, seeded by its position: adding a case at the end changes no other.
    for i, (name, objective, target, nan, how, params) in enumerate(xgb_cases()):
        out.append((name, [SEED, i], lambda rng, a=(name, objective, target, nan, how, params): make_xgb(rng, *a)))
    for i, (name, params, target, nan) in enumerate(lgb_cases()):
        out.append((name, [SEED, 1000 + i], lambda rng, a=(name, params, target, nan): make_lgb(rng, *a)))
    out.append(("xgb_categorical", [SEED, 2000], lambda rng: make_categorical(rng, "xgb_categorical", "xgboost")))
    out.append(("lgb_categorical", [SEED, 2001], lambda rng: make_categorical(rng, "lgb_categorical", "lightgbm")))
    for i, (name, *rest) in enumerate(lgb_sklearn_cases()):
        out.append((name, [SEED, 3000 + i], lambda rng, name=name, rest=rest: make_lgb_sklearn(rng, name, *rest)))
    return out


def main() -> None:
    """`gbdt.py` regenerates every case; `gbdt.py NAME...` only those, keeping the others."""
    import os

    from casegen import regenerate

    # The scikit-learn API cases are pickles: MLflow loads them only when allowed to.
    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "true"

    regenerate(OUT, all_cases, lambda e: e["model_class"])


if __name__ == "__main__":
    main()
