#!/usr/bin/env python3
"""Regenerate the legacy XGBoost and LightGBM cases: what Databricks Runtime ML 13.3 LTS logged.

    scripts/python-env models/gbdt_legacy.py           # writes models/xgboost-1.7/ and models/lightgbm-3.3/
    scripts/python-env models/gbdt_legacy.py NAME...   # only those cases, keeping the others

xgboost 1.7 with MLflow 2.5 logs `mlflow.xgboost` models as `model.xgb` in XGBoost's legacy
binary format, which xgboost 3.1 no longer reads; lightgbm 3.3 writes its text format `version=v3`
and MLflow 2.5 pickles its scikit-learn API classes. This script runs in the scikit-learn 1.1
virtualenv of models/sklearn_legacy.py (models/sklearn_legacy_1.1.txt pins xgboost 1.7.6 and
lightgbm 3.3.5 too) and makes each case with models/gbdt.py's own case makers: the MLflow model,
input.parquet (planted on the trees' thresholds), and golden.parquet with MLflow's pyfunc
prediction, the library's margins and, for classifiers, its probabilities.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "xgboost-1.7"
LGB_OUT = HERE / "lightgbm-3.3"


def versioned(out: Path, make, library: str):
    """Runs one of models/gbdt.py's case makers into `out`, recording the library's version."""

    def run(rng):
        import importlib

        import gbdt

        gbdt.OUT = out
        entry = make(rng)
        entry[f"{library}_version"] = importlib.import_module(library).__version__
        return entry

    return run


def xgb_cases():
    """models/gbdt.py's `make_xgb` cases, saved as `model.xgb`: xgboost 1.7's legacy binary format."""
    import gbdt

    legacy = {"model_format": "xgb"}
    specs = [
        ("xgb17_binary_logistic", "binary:logistic", "binary", 0.08, "booster", legacy),
        ("xgb17_regressor_nan", "reg:squarederror", "regression", 0.1, "regressor", legacy),
        ("xgb17_classifier_multiclass", "multi:softprob", "multiclass", 0.05, "classifier", legacy),
        ("xgb17_classifier_binary_early", "binary:logistic", "binary", 0.05, "classifier", {**legacy, "early_stop": True}),
        ("xgb17_poisson", "count:poisson", "positive", 0.0, "booster", {**legacy, "max_delta_step": 0.7}),
    ]

    def make(rng, spec):
        entry = gbdt.make_xgb(rng, *spec)
        model = OUT / spec[0] / "model" / "model.xgb"
        assert model.read_bytes()[:4] == b"binf", f"{model} is not in the legacy binary format"
        return entry

    return [(s[0], [41, i], versioned(OUT, lambda rng, s=s: make(rng, s), "xgboost")) for i, s in enumerate(specs)]


def lgb_cases():
    """models/gbdt.py's LightGBM Booster and scikit-learn API cases (MLflow 2.5 pickles the latter)."""
    import gbdt

    boosters = [
        ("lgb33_binary", {"objective": "binary"}, "binary", 0.08),
        ("lgb33_regression_nan", {"objective": "regression"}, "regression", 0.1),
    ]
    classes = [
        ("lgb33_classifier_multiclass", "LGBMClassifier", None, "multiclass", 0.05, None, {}),
        ("lgb33_regressor", "LGBMRegressor", None, "regression", 0.0, None, {}),
    ]
    made = [(b[0], lambda rng, b=b: gbdt.make_lgb(rng, *b)) for b in boosters]
    made += [(c[0], lambda rng, c=c: gbdt.make_lgb_sklearn(rng, *c)) for c in classes]
    return [(name, [43, i], versioned(LGB_OUT, make, "lightgbm")) for i, (name, make) in enumerate(made)]


def main() -> None:
    import xgboost

    if xgboost.__version__ != "1.7.6":  # not the legacy virtualenv: run there
        sys.path.insert(0, str(HERE))
        from sklearn_legacy import legacy_python

        python = str(legacy_python("1.1"))
        os.execv(python, [python, __file__, *sys.argv[1:]])
    from casegen import regenerate

    # MLflow 2.5 loads the pickled scikit-learn API classes only when allowed to.
    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "true"
    names = set(sys.argv[1:])
    for out, cases in ((OUT, xgb_cases), (LGB_OUT, lgb_cases)):
        mine = {name for name, _, _ in cases()}
        if names and not names & mine:
            continue
        sys.argv[1:] = sorted(names & mine)
        regenerate(out, cases, lambda e: f"{e['model_class']:32s} {e['objective']}")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
