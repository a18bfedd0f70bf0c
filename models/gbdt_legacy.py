#!/usr/bin/env python3
"""Regenerate the legacy XGBoost and LightGBM cases: what Databricks Runtime ML 13.3 LTS logged.

    scripts/python-env models/gbdt_legacy.py           # writes models/xgboost-1.7/ and models/lightgbm-3.3/
    scripts/python-env models/gbdt_legacy.py NAME...   # only those cases, keeping the others

xgboost 1.7 with MLflow 2.5 logs `mlflow.xgboost` models as `model.xgb` in XGBoost's legacy
binary format, which xgboost 3.1 no longer reads; lightgbm 3.3 writes its text format `version=v3`
and MLflow 2.5 pickles its scikit-learn API classes. This script runs in the scikit-learn 1.1
virtualenv of models/sklearn_legacy.py (models/sklearn_legacy_1.1.txt pins xgboost 1.7.6 and
lightgbm 3.3.5 too) and writes each case as models/gbdt.py does: the MLflow model, input.parquet
(planted on the trees' thresholds), and golden.parquet with MLflow's pyfunc prediction, the
library's margins and, for classifiers, its probabilities.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "xgboost-1.7"
LGB_OUT = HERE / "lightgbm-3.3"


def make(rng, name, objective, target, nan, how, extra):
    import mlflow.xgboost
    import numpy as np
    import xgboost as xgb
    from mlflow.models import infer_signature

    import gbdt

    train, test = gbdt.frame(600, rng, nan), gbdt.frame(300, rng, nan)
    y = gbdt.targets(train, rng)[target]
    params = {"objective": objective, "max_depth": 4, **extra}
    if how == "booster":
        model = xgb.train({**params, "eta": 0.3, "seed": 0, "nthread": 1}, xgb.DMatrix(train, label=y), num_boost_round=25)
        booster = model
    else:
        cls = xgb.XGBClassifier if how == "classifier" else xgb.XGBRegressor
        model = cls(n_estimators=40, learning_rate=0.3, random_state=0, n_jobs=1, **params)
        if how == "classifier" and "early" in name:
            val = gbdt.frame(200, rng, nan)
            yv = rng.permutation(gbdt.targets(val, rng)[target])
            model.set_params(early_stopping_rounds=5)
            model.fit(train, y, eval_set=[(val, yv)], verbose=False)
            assert model.best_iteration + 1 < model.get_booster().num_boosted_rounds(), name
        else:
            model.fit(train, y)
        booster = model.get_booster()
    d = OUT / name
    d.mkdir(parents=True)
    test = gbdt.plant(test, gbdt.xgb_splits(booster), rng)
    sig = infer_signature(train, gbdt.xgb_sig_frame(model, train))
    mlflow.xgboost.save_model(model, d / "model", signature=sig, model_format="xgb")
    assert (d / "model" / "model.xgb").read_bytes()[:4] == b"binf", "not the legacy binary format"
    if how == "booster":
        margin, proba = booster.predict(xgb.DMatrix(test), output_margin=True), None
    else:
        margin = model.predict(test, output_margin=True)
        proba = model.predict_proba(test) if how == "classifier" else None
    prediction = gbdt.record(d, test, margin, proba)
    return {
        "case": name,
        "library": "xgboost",
        "xgboost_version": xgb.__version__,
        "objective": objective,
        "model_class": type(model).__module__ + "." + type(model).__name__,
        "model_format": "xgb",
        "prediction_dtype": str(np.asarray(prediction).dtype),
        "columns": ["prediction", "margin"] + (["proba"] if proba is not None else []),
    }


def make_lgb(rng, name, objective, target, nan, how):
    import lightgbm as lgb
    import mlflow.lightgbm
    import numpy as np
    from mlflow.models import infer_signature

    import gbdt

    train, test = gbdt.frame(600, rng, nan), gbdt.frame(300, rng, nan)
    y = gbdt.targets(train, rng)[target]
    params = {"objective": objective, "num_leaves": 15, "learning_rate": 0.2, "verbose": -1, "seed": 0}
    if how == "booster":
        model = lgb.train(params, lgb.Dataset(train, label=y), num_boost_round=30)
        booster = model
    else:
        cls = lgb.LGBMClassifier if how == "classifier" else lgb.LGBMRegressor
        model = cls(n_estimators=30, num_leaves=15, learning_rate=0.2, random_state=0, n_jobs=1, verbose=-1)
        model.fit(train, y)
        booster = model.booster_
    d = LGB_OUT / name
    d.mkdir(parents=True)
    test = gbdt.plant(test, gbdt.lgb_splits(booster), rng)
    sig = infer_signature(train, model.predict(train))
    mlflow.lightgbm.save_model(model, d / "model", signature=sig)
    margin = model.predict(test, raw_score=True)
    proba = model.predict_proba(test) if how == "classifier" else None
    prediction = gbdt.record(d, test, margin, proba)
    return {
        "case": name,
        "library": "lightgbm",
        "lightgbm_version": lgb.__version__,
        "objective": objective,
        "model_class": type(model).__module__ + "." + type(model).__name__,
        "prediction_dtype": str(np.asarray(prediction).dtype),
        "columns": ["prediction", "margin"] + (["proba"] if proba is not None else []),
    }


def lgb_cases():
    specs = [
        ("lgb33_binary", "binary", "binary", 0.08, "booster"),
        ("lgb33_regression_nan", "regression", "regression", 0.1, "booster"),
        ("lgb33_classifier_multiclass", "multiclass", "multiclass", 0.05, "classifier"),
        ("lgb33_regressor", "regression", "regression", 0.0, "regressor"),
    ]
    return [(s[0], [43, i], lambda rng, s=s: make_lgb(rng, *s)) for i, s in enumerate(specs)]


def all_cases():
    specs = [
        ("xgb17_binary_logistic", "binary:logistic", "binary", 0.08, "booster", {}),
        ("xgb17_regressor_nan", "reg:squarederror", "regression", 0.1, "regressor", {}),
        ("xgb17_classifier_multiclass", "multi:softprob", "multiclass", 0.05, "classifier", {}),
        ("xgb17_classifier_binary_early", "binary:logistic", "binary", 0.05, "classifier", {}),
        ("xgb17_poisson", "count:poisson", "positive", 0.0, "booster", {"max_delta_step": 0.7}),
    ]
    return [(s[0], [41, i], lambda rng, s=s: make(rng, *s)) for i, s in enumerate(specs)]


def main() -> None:
    import xgboost

    if xgboost.__version__ != "1.7.6":  # not the legacy virtualenv: run there
        sys.path.insert(0, str(HERE))
        from sklearn_legacy import legacy_python

        python = str(legacy_python("1.1"))
        os.execv(python, [python, __file__, *sys.argv[1:]])
    from casegen import regenerate

    names = set(sys.argv[1:])
    for out, cases in ((OUT, all_cases), (LGB_OUT, lgb_cases)):
        mine = {name for name, _, _ in cases()}
        if names and not names & mine:
            continue
        sys.argv[1:] = sorted(names & mine)
        regenerate(out, cases, lambda e: f"{e['model_class']:32s} {e['objective']}")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
