#!/usr/bin/env python3
"""Regenerate the legacy XGBoost and LightGBM cases: what MLflow 2 logged with older releases.

    scripts/python-env models/gbdt_legacy.py           # writes models/xgboost-1.7/, lightgbm-3.3/, xgboost-2.0/
    scripts/python-env models/gbdt_legacy.py NAME...   # only those cases, keeping the others

xgboost 1.7 and 2.0 with MLflow 2 log `mlflow.xgboost` models as `model.xgb` in XGBoost's legacy
binary format, which xgboost 3.1 no longer reads (2.0 also estimates the intercept, `base_score`,
from the data); lightgbm 3.3 writes its text format `version=v3` and MLflow 2.5 pickles its
scikit-learn API classes. Each family is made in a virtualenv of models/sklearn_legacy.py:
xgboost 1.7.6 and lightgbm 3.3.5 (Databricks Runtime ML 13.3 LTS) in the scikit-learn 1.1 one,
xgboost 2.0.3 in the scikit-learn 1.3 one (their pins are models/sklearn_legacy_<release>.txt).
Each case comes from models/gbdt.py's own case makers: the MLflow model, input.parquet (planted on
the trees' thresholds), and golden.parquet with MLflow's pyfunc prediction, the library's margins
and, for classifiers, its probabilities.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "xgboost-1.7"
LGB_OUT = HERE / "lightgbm-3.3"
XGB20_OUT = HERE / "xgboost-2.0"


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


def xgb_cases(out: Path, prefix: str, seed: int, extra: list):
    """models/gbdt.py's `make_xgb` cases, saved as `model.xgb`: the legacy binary format of the
    virtualenv's xgboost. The cases are named `<prefix>_...`; `extra` adds specs of that release."""
    import gbdt

    legacy = {"model_format": "xgb"}
    specs = [
        (f"{prefix}_binary_logistic", "binary:logistic", "binary", 0.08, "booster", legacy),
        (f"{prefix}_regressor_nan", "reg:squarederror", "regression", 0.1, "regressor", legacy),
        (f"{prefix}_classifier_multiclass", "multi:softprob", "multiclass", 0.05, "classifier", legacy),
        (f"{prefix}_classifier_binary_early", "binary:logistic", "binary", 0.05, "classifier", {**legacy, "early_stop": True}),
        (f"{prefix}_poisson", "count:poisson", "positive", 0.0, "booster", {**legacy, "max_delta_step": 0.7}),
    ] + [(f"{prefix}_{name}", *rest[:-1], {**legacy, **rest[-1]}) for name, *rest in extra]

    def make(rng, spec):
        entry = gbdt.make_xgb(rng, *spec)
        model = out / spec[0] / "model" / "model.xgb"
        assert model.read_bytes()[:4] == b"binf", f"{model} is not in the legacy binary format"
        return entry

    return [(s[0], [seed, i], versioned(out, lambda rng, s=s: make(rng, s), "xgboost")) for i, s in enumerate(specs)]


def xgb17_cases():
    return xgb_cases(OUT, "xgb17", 41, [])


def xgb20_cases():
    """xgboost 2.0's: its intercept estimated from the data (not 0.5), a multiclass Booster, and a
    random forest of 4 trees a round (`num_parallel_tree`)."""
    extra = [
        ("booster_multiclass", "multi:softprob", "multiclass", 0.05, "booster", {}),
        ("forest_binary", "binary:logistic", "binary", 0.05, "booster",
         {"num_parallel_tree": 4, "subsample": 0.7, "colsample_bynode": 0.6, "eta": 1.0}),
    ]
    return xgb_cases(XGB20_OUT, "xgb20", 47, extra)


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


# Each scikit-learn legacy virtualenv's families: (directory, cases).
FAMILIES = {
    "1.1": [(OUT, xgb17_cases), (LGB_OUT, lgb_cases)],
    "1.3": [(XGB20_OUT, xgb20_cases)],
}
RELEASE = "MLSCORE_GBDT_LEGACY_RELEASE"


def main() -> None:
    names = set(sys.argv[1:])
    release = os.environ.get(RELEASE)
    if release is None:  # not in a legacy virtualenv: run each release's families in its own
        from sklearn_legacy import legacy_python

        for release in FAMILIES:
            python = str(legacy_python(release))
            subprocess.run([python, __file__, *sys.argv[1:]], env={**os.environ, RELEASE: release}, check=True)
        return
    from casegen import regenerate

    # MLflow 2 loads the pickled scikit-learn API classes only when allowed to.
    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "true"
    for out, cases in FAMILIES[release]:
        mine = {name for name, _, _ in cases()}
        if names and not names & mine:
            continue
        sys.argv[1:] = sorted(names & mine)
        regenerate(out, cases, lambda e: f"{e['model_class']:32s} {e['objective']}")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
