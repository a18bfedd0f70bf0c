#!/usr/bin/env python3
"""Regenerate the scikit-learn cases: estimators logged with mlflow.sklearn, with goldens.

    scripts/python-env models/sklearn_zoo.py           # writes models/sklearn/
    scripts/python-env models/sklearn_zoo.py NAME...   # only those cases, keeping the others

Every case is fitted here on a small table, saved with `mlflow.sklearn.save_model` in one of the
three serialization formats (cloudpickle, pickle, skops with the trusted types it needs; a few
cases in all three), signature inferred from the training frame, and scored on a test table as
it reads back from input.parquet (as Arrow, hence spark_udf, delivers it):

  prediction   what `mlflow.pyfunc.load_model(path).predict(test)` returns (so what spark_udf
               returns): labels of a classifier, values of a regressor, probabilities where the
               case saves pyfunc_predict_fn="predict_proba"
  proba        a classifier's `predict_proba`, one list a row (where it has one)

Written per case: models/sklearn/<case>/model/, input.parquet, golden.parquet, and
models/sklearn/cases.json. Tree cases get test rows planted on their own thresholds (exactly,
one float64 ulp and one float32 ulp either side), where scikit-learn's float32 cast decides.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
OUT = HERE / "sklearn"
SEED = 23
N_TRAIN = 600
N_TEST = 300
FORMATS = ["cloudpickle", "pickle", "skops"]
CITIES = ["lille", "lyon", "nice", "paris", "rennes"]
PLANS = ["basic", "pro", "team", "edu"]


def numeric(n: int, rng: np.random.Generator, nan: float) -> pd.DataFrame:
    from zoo import numeric_frame

    df = numeric_frame(n, rng)
    if nan:
        df = df.mask(rng.random(df.shape) < nan)
    return df


def mixed(n: int, rng: np.random.Generator, unseen: bool) -> pd.DataFrame:
    """int, float with NaN, bool and two string columns (one with rare categories)."""
    cities = list(CITIES) + (["brest"] if unseen else [])
    df = pd.DataFrame(
        {
            "age": rng.integers(18, 90, n).astype("int64"),
            "income": np.round(rng.lognormal(10, 0.5, n), 2),
            "active": rng.random(n) < 0.6,
            "city": rng.choice(cities, n),
            "plan": rng.choice(PLANS, n, p=[0.5, 0.3, 0.17, 0.03]),
        }
    )
    df.loc[rng.random(n) < 0.1, "income"] = np.nan
    return df


def targets(df: pd.DataFrame, rng: np.random.Generator) -> dict:
    if "age" in df:
        z = (df["age"] - 50) / 20 + np.log(df["income"].fillna(20000)) - 10 + df["active"] * 0.8
        z = z + df["city"].map({"lille": 0.5, "lyon": -0.3, "paris": 1.0}).fillna(0) + rng.normal(0, 0.4, len(df))
    else:
        x = df.fillna(0).to_numpy(dtype=float)
        z = x @ np.array([1.5, -0.4, 0.1, 1.0, 0.02, 0.3]) + np.sin(x[:, 0] * 2) + rng.normal(0, 0.5, len(df))
    z = np.asarray(z, dtype=float)
    q = np.quantile(z, [0.33, 0.66])
    return {
        "regression": z * 3 + 10,
        "positive": np.exp(z / 4),
        "binary": (z > np.median(z)).astype("int64"),
        "multiclass": np.digitize(z, q).astype("int64"),
        "strings": np.array(["low", "mid", "high"], dtype=object)[np.digitize(z, q)],
        "bools": z > np.median(z),
        "strings_binary": np.array(["no", "yes"], dtype=object)[(z > np.median(z)).astype(int)],
    }


def tree_thresholds(model) -> list[tuple[int, float]]:
    """(feature, threshold) of the fitted trees' splits, for planting test rows."""
    from sklearn.pipeline import Pipeline

    model = getattr(model, "best_estimator_", model)  # a search: its refitted estimator
    est = model.steps[-1][1] if isinstance(model, Pipeline) else model
    trees = []
    if hasattr(est, "tree_"):
        trees = [est.tree_]
    elif hasattr(est, "estimators_"):
        trees = [t.tree_ for t in np.ravel(est.estimators_)]
    out = []
    for t in trees[:5]:
        for f, thr in zip(t.feature, t.threshold):
            if f >= 0 and np.isfinite(thr):
                out.append((int(f), float(thr)))
    return out


def plant(test: pd.DataFrame, splits, rng) -> pd.DataFrame:
    test = test.copy()
    rows = rng.permutation(len(test))
    k = 0
    for f, thr in splits[:40]:
        t32 = float(np.float32(thr))
        for v in (thr, np.nextafter(thr, -np.inf), np.nextafter(thr, np.inf), t32,
                  float(np.nextafter(np.float32(thr), np.float32(np.inf)))):
            if k >= len(rows):
                return test
            test.iloc[rows[k], f] = v
            k += 1
    return test


def as_list_column(a) -> pa.Array:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    return pa.array([list(r) for r in a], type=pa.list_(pa.float64()))


def ct_onehot(dense: dict | None = None, **ohe):
    """The mixed tables' one-hot ColumnTransformer. `dense` asks the OneHotEncoder for dense
    output: `sparse_output=False`, or `sparse=False` before scikit-learn 1.2
    (models/sklearn_legacy.py)."""
    from sklearn import preprocessing
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline

    dense = {"sparse_output": False} if dense is None else dense
    return ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True), preprocessing.StandardScaler()), ["age", "income"]),
            ("cat", preprocessing.OneHotEncoder(**dense, **ohe), ["city", "plan"]),
        ],
        remainder="passthrough",
    )


def ct_ordinal():
    """The mixed tables' ordinal ColumnTransformer."""
    from sklearn import preprocessing
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline

    return ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="mean"), preprocessing.MinMaxScaler()), [0, 1]),
            ("cat", preprocessing.OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), ["city", "plan"]),
            ("flag", "passthrough", ["active"]),
        ]
    )


def cases():
    """(name, data, target, make(), options)."""
    import lightgbm
    import xgboost
    from sklearn import calibration, cluster, compose, decomposition, discriminant_analysis, dummy, ensemble, feature_selection, linear_model, model_selection, multiclass, naive_bayes, neighbors, neural_network, preprocessing, svm, tree
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn import pipeline
    from sklearn.pipeline import make_pipeline

    sc = preprocessing.StandardScaler

    return [
        ("linear_regression", "numeric", "regression", lambda: linear_model.LinearRegression(), {}),
        ("ridge", "numeric", "regression", lambda: make_pipeline(sc(), linear_model.Ridge(alpha=2.0)), {}),
        ("lasso", "numeric", "regression", lambda: linear_model.Lasso(alpha=0.05), {}),
        ("elastic_net", "numeric", "regression", lambda: make_pipeline(preprocessing.RobustScaler(), linear_model.ElasticNet(alpha=0.05)), {}),
        ("sgd_regressor", "numeric", "regression", lambda: make_pipeline(sc(), linear_model.SGDRegressor(random_state=0)), {}),
        ("linear_svr", "numeric", "regression", lambda: make_pipeline(preprocessing.MaxAbsScaler(), svm.LinearSVR(random_state=0)), {}),
        ("logreg_binary", "numeric", "binary", lambda: make_pipeline(sc(), linear_model.LogisticRegression()), {}),
        ("logreg_multiclass", "numeric", "multiclass", lambda: make_pipeline(sc(), linear_model.LogisticRegression()), {}),
        ("logreg_strings_proba", "numeric", "strings", lambda: make_pipeline(sc(), linear_model.LogisticRegression()), {"predict_fn": "predict_proba"}),
        ("sgd_classifier", "numeric", "multiclass", lambda: make_pipeline(sc(), linear_model.SGDClassifier(loss="log_loss", random_state=0)), {}),
        ("linear_svc", "numeric", "binary", lambda: make_pipeline(sc(), svm.LinearSVC(random_state=0)), {}),
        ("ridge_classifier", "numeric", "multiclass", lambda: linear_model.RidgeClassifier(), {}),
        ("normalizer_binarizer", "numeric", "binary", lambda: make_pipeline(preprocessing.Normalizer(), preprocessing.Binarizer(threshold=0.1), linear_model.LogisticRegression()), {}),
        ("decision_tree_nan", "numeric_nan", "multiclass", lambda: tree.DecisionTreeClassifier(max_depth=6, random_state=0), {"plant": True}),
        ("decision_tree_regressor", "numeric", "regression", lambda: tree.DecisionTreeRegressor(max_depth=8, random_state=0), {"plant": True}),
        ("decision_tree_bools", "numeric", "bools", lambda: tree.DecisionTreeClassifier(max_depth=5, random_state=0), {"plant": True}),
        ("random_forest", "numeric_nan", "binary", lambda: ensemble.RandomForestClassifier(n_estimators=30, max_depth=8, random_state=0), {"plant": True, "all_formats": True}),
        ("random_forest_proba", "numeric", "strings", lambda: ensemble.RandomForestClassifier(n_estimators=20, random_state=0), {"predict_fn": "predict_proba"}),
        ("random_forest_regressor", "numeric", "regression", lambda: ensemble.RandomForestRegressor(n_estimators=20, max_depth=10, random_state=0), {"plant": True}),
        ("extra_trees", "numeric", "multiclass", lambda: ensemble.ExtraTreesClassifier(n_estimators=20, max_depth=8, random_state=0), {"plant": True}),
        ("extra_trees_regressor", "numeric", "regression", lambda: ensemble.ExtraTreesRegressor(n_estimators=20, max_depth=8, random_state=0), {}),
        ("gradient_boosting_binary", "numeric", "binary", lambda: ensemble.GradientBoostingClassifier(n_estimators=40, random_state=0), {"plant": True}),
        ("gradient_boosting_multiclass", "numeric", "strings", lambda: ensemble.GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=0), {}),
        ("gradient_boosting_regressor", "numeric", "regression", lambda: ensemble.GradientBoostingRegressor(n_estimators=40, loss="huber", random_state=0), {"plant": True}),
        ("hist_gradient_boosting", "numeric_nan", "binary", lambda: ensemble.HistGradientBoostingClassifier(max_iter=30, random_state=0), {}),
        ("hist_gradient_boosting_multiclass", "numeric_nan", "multiclass", lambda: ensemble.HistGradientBoostingClassifier(max_iter=15, random_state=0), {}),
        ("hist_gradient_boosting_regressor", "numeric_nan", "regression", lambda: ensemble.HistGradientBoostingRegressor(max_iter=30, random_state=0), {}),
        ("hist_gradient_boosting_poisson", "numeric", "positive", lambda: ensemble.HistGradientBoostingRegressor(loss="poisson", max_iter=20, random_state=0), {}),
        ("mlp_classifier", "numeric", "multiclass", lambda: make_pipeline(sc(), neural_network.MLPClassifier(hidden_layer_sizes=(16, 8), max_iter=300, random_state=0)), {}),
        ("mlp_regressor", "numeric", "regression", lambda: make_pipeline(sc(), neural_network.MLPRegressor(hidden_layer_sizes=(16,), activation="tanh", max_iter=300, random_state=0)), {}),
        ("kmeans", "numeric", "regression", lambda: make_pipeline(sc(), cluster.KMeans(n_clusters=4, n_init=3, random_state=0)), {"unsupervised": True}),
        ("pca_logreg", "numeric", "binary", lambda: make_pipeline(sc(), decomposition.PCA(n_components=3, whiten=True), linear_model.LogisticRegression()), {}),
        ("pipeline_onehot_logreg", "mixed_unseen", "strings", lambda: make_pipeline(ct_onehot(handle_unknown="ignore"), linear_model.LogisticRegression(max_iter=500)), {"all_formats": True}),
        ("pipeline_ordinal_forest", "mixed_unseen", "binary", lambda: make_pipeline(ct_ordinal(), ensemble.RandomForestClassifier(n_estimators=15, random_state=0)), {}),
        ("pipeline_onehot_infrequent", "mixed_unseen", "regression", lambda: make_pipeline(ct_onehot(drop="first", handle_unknown="infrequent_if_exist", min_frequency=0.05), ensemble.GradientBoostingRegressor(n_estimators=20, random_state=0)), {}),
        ("pipeline_string_imputer", "mixed_nulls", "multiclass", lambda: make_pipeline(ColumnTransformer([
            ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"), preprocessing.OneHotEncoder(handle_unknown="ignore", sparse_output=False)), ["city", "plan"]),
            ("num", SimpleImputer(strategy="constant", fill_value=0.0), ["income", "age"]),
        ]), tree.DecisionTreeClassifier(max_depth=5, random_state=0)), {}),
        # XGBoost and LightGBM estimators as a pipeline's last step, or saved with mlflow.sklearn:
        # their boosters live in the pickle / skops file (XGBoost's as a UBJSON snapshot).
        ("pipeline_onehot_xgboost", "mixed_unseen", "binary", lambda: make_pipeline(ct_onehot(handle_unknown="ignore"), xgboost.XGBClassifier(n_estimators=30, max_depth=4, random_state=0)), {"all_formats": True}),
        ("pipeline_lightgbm_strings", "numeric_nan", "strings", lambda: make_pipeline(sc(), lightgbm.LGBMClassifier(n_estimators=25, num_leaves=15, random_state=0, verbose=-1)), {"all_formats": True}),
        ("xgboost_regressor_missing", "numeric_sentinel", "regression", lambda: xgboost.XGBRegressor(n_estimators=40, max_depth=5, missing=-999.0, random_state=0), {}),
        ("xgboost_multiclass_early_stopped", "numeric_nan", "multiclass", lambda: xgboost.XGBClassifier(n_estimators=300, learning_rate=0.3, max_depth=4, early_stopping_rounds=5, random_state=0), {"early_stop": True, "predict_fn": "predict_proba"}),
        ("lightgbm_regressor", "numeric", "regression", lambda: lightgbm.LGBMRegressor(n_estimators=40, random_state=0, verbose=-1), {}),
        # Test values outside the training range are clipped to the feature range (pickled: a
        # test edits the range's floats in the file).
        ("minmax_clip_ridge", "numeric", "regression", lambda: make_pipeline(preprocessing.MinMaxScaler(feature_range=(-1.5, 2.5), clip=True), linear_model.Ridge()), {"format": "pickle"}),
        # Categorical features: scikit-learn ordinal-encodes them first (its `_preprocessor`),
        # unseen (classifier) and missing (regressor) categories going each split's missing way.
        ("hist_gradient_boosting_categorical", "mixed_unseen", "multiclass", lambda: ensemble.HistGradientBoostingClassifier(max_iter=20, categorical_features=["city", "plan"], random_state=0), {"format": "pickle"}),
        ("hist_gradient_boosting_categorical_regressor", "mixed_nulls", "regression", lambda: ensemble.HistGradientBoostingRegressor(max_iter=20, categorical_features=["city", "plan"], random_state=0), {"format": "skops"}),
        # The exponential loss (AdaBoost's): half-logit raw scores, from the prior and from zero.
        ("gradient_boosting_exponential", "numeric", "bools", lambda: ensemble.GradientBoostingClassifier(loss="exponential", n_estimators=30, random_state=0), {"plant": True, "format": "cloudpickle"}),
        ("gradient_boosting_exponential_zero", "numeric", "strings_binary", lambda: ensemble.GradientBoostingClassifier(loss="exponential", init="zero", n_estimators=20, random_state=0), {"format": "skops", "predict_fn": "predict_proba"}),
        # Hyper-parameter searches, as MLflow's autologging logs them: they predict with
        # best_estimator_, refitted on the best parameters (their cv_results_ hold masked arrays).
        ("grid_search_pipeline", "numeric", "strings", lambda: model_selection.GridSearchCV(make_pipeline(sc(), linear_model.LogisticRegression(max_iter=500)), {"logisticregression__C": [0.01, 1.0]}, cv=3), {"all_formats": True}),
        ("randomized_search_forest", "numeric_nan", "binary", lambda: model_selection.RandomizedSearchCV(ensemble.RandomForestClassifier(n_estimators=15, random_state=0), {"max_depth": [3, 6, 9], "min_samples_leaf": [1, 5]}, n_iter=3, cv=3, random_state=0), {"plant": True, "format": "cloudpickle", "predict_fn": "predict_proba"}),
        # Feature selectors: their masks are recomputed from scores_ / pvalues_ / variances_ at
        # every transform. Duplicated columns give equal scores, so that ties decide.
        ("select_k_best_pipeline", "numeric", "multiclass", lambda: make_pipeline(feature_selection.VarianceThreshold(1.5), sc(), feature_selection.SelectKBest(feature_selection.f_classif, k=3), linear_model.LogisticRegression()), {"all_formats": True}),
        ("select_k_best_ties", "numeric", "regression", lambda: make_pipeline(duplicated(), feature_selection.SelectKBest(feature_selection.f_regression, k=1), linear_model.Ridge()), {}),
        ("select_percentile_ties", "numeric", "regression", lambda: make_pipeline(duplicated(), feature_selection.SelectPercentile(feature_selection.f_regression, percentile=12.5), linear_model.LinearRegression()), {}),
        ("select_fwe_fdr", "numeric", "binary", lambda: make_pipeline(feature_selection.SelectFwe(feature_selection.f_classif, alpha=1e-5), feature_selection.GenericUnivariateSelect(feature_selection.f_classif, mode="fdr", param=1e-8), linear_model.LogisticRegression()), {}),
        ("select_fpr_branch", "numeric", "strings", lambda: make_pipeline(ColumnTransformer([("sel", feature_selection.SelectFpr(feature_selection.f_classif, alpha=0.01), [0, 1, 2, 3]), ("rest", "passthrough", [4, 5])]), ensemble.RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0)), {"format": "skops"}),
        ("generic_k_best_mutual_info", "numeric", "bools", lambda: make_pipeline(sc(), feature_selection.GenericUnivariateSelect(feature_selection.mutual_info_classif, mode="k_best", param=2), linear_model.LogisticRegression()), {"format": "pickle"}),
        ("rfe_logreg_proba", "numeric", "strings", lambda: feature_selection.RFE(linear_model.LogisticRegression(max_iter=500), n_features_to_select=3), {"predict_fn": "predict_proba", "format": "cloudpickle"}),
        ("rfecv_forest_nan", "numeric_nan", "binary", lambda: feature_selection.RFECV(ensemble.RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0), cv=3), {"format": "skops"}),
        ("rfe_step_gradient_boosting", "numeric", "regression", lambda: make_pipeline(sc(), feature_selection.RFE(linear_model.Ridge(), n_features_to_select=4), ensemble.GradientBoostingRegressor(n_estimators=20, random_state=0)), {"format": "pickle"}),
        ("variance_threshold_hgb_nan", "numeric_nan", "binary", lambda: make_pipeline(feature_selection.VarianceThreshold(threshold=5.0), ensemble.HistGradientBoostingClassifier(max_iter=10, random_state=0)), {"format": "cloudpickle"}),
        # SelectFromModel: importances from coef_ (the norm across classes) or from the trees'
        # impurity decreases, which scikit-learn recomputes at every transform.
        ("select_from_l1_logreg", "numeric", "multiclass", lambda: make_pipeline(sc(), feature_selection.SelectFromModel(linear_model.LogisticRegression(l1_ratio=1.0, solver="saga", C=0.02, max_iter=2000)), linear_model.LogisticRegression()), {"all_formats": True}),
        ("select_from_lasso", "numeric", "regression", lambda: make_pipeline(sc(), feature_selection.SelectFromModel(linear_model.Lasso(alpha=1.5)), linear_model.LinearRegression()), {"format": "pickle"}),
        ("select_from_forest_median", "numeric", "strings", lambda: make_pipeline(feature_selection.SelectFromModel(ensemble.RandomForestClassifier(n_estimators=10, max_depth=5, random_state=0), threshold="median"), linear_model.LogisticRegression(max_iter=500)), {"format": "cloudpickle", "predict_fn": "predict_proba"}),
        ("select_from_gradient_boosting", "numeric", "regression", lambda: make_pipeline(feature_selection.SelectFromModel(ensemble.GradientBoostingRegressor(n_estimators=10, random_state=0), threshold="0.5*mean", max_features=3), linear_model.Ridge()), {"format": "skops"}),
        ("select_from_tree_nan", "numeric_nan", "binary", lambda: make_pipeline(feature_selection.SelectFromModel(tree.DecisionTreeClassifier(max_depth=4, random_state=0)), ensemble.HistGradientBoostingClassifier(max_iter=10, random_state=0)), {"format": "pickle"}),
        # Kernel SVMs (libsvm's one-vs-one votes, Platt probabilities coupled) and Gaussian naive Bayes.
        ("svc_rbf", "numeric", "multiclass", lambda: make_pipeline(sc(), svm.SVC()), {"all_formats": True}),
        ("svc_rbf_proba", "numeric", "strings", lambda: make_pipeline(sc(), svm.SVC(probability=True, random_state=0)), {"format": "cloudpickle", "predict_fn": "predict_proba"}),
        ("svc_poly_binary_proba", "numeric", "binary", lambda: make_pipeline(sc(), svm.SVC(kernel="poly", degree=3, coef0=1.0, gamma="auto", probability=True, random_state=0)), {"format": "pickle", "predict_fn": "predict_proba"}),
        ("svc_sigmoid", "numeric", "multiclass", lambda: make_pipeline(sc(), svm.SVC(kernel="sigmoid", gamma=0.05)), {"format": "cloudpickle"}),
        # A soft margin that leaves many rows with one vote per class: libsvm's first class, or break_ties' argmax.
        ("svc_vote_ties", "numeric", "multiclass", lambda: make_pipeline(sc(), svm.SVC(C=0.02)), {"format": "pickle"}),
        ("svc_break_ties", "numeric", "multiclass", lambda: make_pipeline(sc(), svm.SVC(C=0.02, break_ties=True)), {"format": "skops"}),
        ("nu_svc_linear_bools", "numeric", "bools", lambda: make_pipeline(sc(), svm.NuSVC(kernel="linear", nu=0.3)), {"format": "cloudpickle"}),
        ("svr_rbf", "numeric", "regression", lambda: make_pipeline(sc(), svm.SVR(C=10.0, epsilon=0.1)), {"format": "pickle"}),
        ("nu_svr_poly", "numeric", "regression", lambda: make_pipeline(sc(), svm.NuSVR(kernel="poly", degree=2, nu=0.4)), {"format": "skops"}),
        ("gaussian_nb_proba", "numeric", "strings", lambda: naive_bayes.GaussianNB(), {"format": "cloudpickle", "predict_fn": "predict_proba"}),
        ("gaussian_nb_pipeline", "numeric", "binary", lambda: make_pipeline(sc(), naive_bayes.GaussianNB(var_smoothing=1e-3)), {"format": "skops"}),
        # Calibration: scikit-learn 1.9's replacement for SVC(probability=True), decision functions or probabilities through sigmoid and isotonic calibrators.
        ("calibrated_svc", "numeric", "strings", lambda: make_pipeline(sc(), calibration.CalibratedClassifierCV(svm.SVC(), ensemble=False)), {"all_formats": True, "predict_fn": "predict_proba"}),
        ("calibrated_linear_svc_isotonic", "numeric", "binary", lambda: make_pipeline(sc(), calibration.CalibratedClassifierCV(svm.LinearSVC(random_state=0), method="isotonic", cv=3)), {"format": "pickle", "predict_fn": "predict_proba"}),
        ("calibrated_forest", "numeric_nan", "multiclass", lambda: calibration.CalibratedClassifierCV(ensemble.RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0), cv=3), {"format": "cloudpickle"}),
        ("calibrated_gradient_boosting_isotonic", "numeric", "strings", lambda: calibration.CalibratedClassifierCV(make_pipeline(sc(), ensemble.GradientBoostingClassifier(n_estimators=20, random_state=0)), method="isotonic", cv=2), {"format": "skops", "predict_fn": "predict_proba"}),
        ("calibrated_nb_bools", "numeric", "bools", lambda: calibration.CalibratedClassifierCV(naive_bayes.GaussianNB(), cv=3), {"format": "pickle"}),
        ("calibrated_svc_ovr_isotonic", "numeric", "multiclass", lambda: make_pipeline(sc(), calibration.CalibratedClassifierCV(svm.SVC(C=0.02), method="isotonic", cv=2)), {"format": "cloudpickle", "predict_fn": "predict_proba"}),
        # Voting and stacking over members of every kind (pipelines among them, one dropped).
        ("voting_soft_weighted", "numeric", "strings", lambda: ensemble.VotingClassifier([("lr", make_pipeline(sc(), linear_model.LogisticRegression())), ("rf", ensemble.RandomForestClassifier(n_estimators=10, max_depth=5, random_state=0)), ("nb", naive_bayes.GaussianNB())], voting="soft", weights=[2, 1, 1]), {"all_formats": True, "predict_fn": "predict_proba"}),
        ("voting_hard_drop", "numeric", "multiclass", lambda: ensemble.VotingClassifier([("svc", make_pipeline(sc(), svm.SVC())), ("dt", tree.DecisionTreeClassifier(max_depth=4, random_state=0)), ("off", "drop"), ("gb", ensemble.GradientBoostingClassifier(n_estimators=10, random_state=0))]), {"format": "pickle"}),
        ("voting_regressor_weighted", "numeric", "regression", lambda: ensemble.VotingRegressor([("ridge", make_pipeline(sc(), linear_model.Ridge())), ("rf", ensemble.RandomForestRegressor(n_estimators=10, max_depth=6, random_state=0)), ("hgb", ensemble.HistGradientBoostingRegressor(max_iter=20, random_state=0))], weights=[1, 2, 0.5]), {"format": "cloudpickle"}),
        ("stacking_classifier", "numeric", "strings", lambda: ensemble.StackingClassifier([("rf", ensemble.RandomForestClassifier(n_estimators=10, max_depth=5, random_state=0)), ("svc", make_pipeline(sc(), svm.LinearSVC(random_state=0)))], final_estimator=linear_model.LogisticRegression()), {"format": "skops", "predict_fn": "predict_proba"}),
        ("stacking_binary_passthrough", "numeric", "binary", lambda: ensemble.StackingClassifier([("nb", naive_bayes.GaussianNB()), ("gb", ensemble.GradientBoostingClassifier(n_estimators=10, random_state=0))], final_estimator=ensemble.RandomForestClassifier(n_estimators=10, max_depth=5, random_state=0), passthrough=True, stack_method="predict_proba"), {"format": "pickle", "predict_fn": "predict_proba"}),
        ("stacking_predict_method", "numeric", "multiclass", lambda: ensemble.StackingClassifier([("dt", tree.DecisionTreeClassifier(max_depth=4, random_state=0)), ("mlp", make_pipeline(sc(), neural_network.MLPClassifier(hidden_layer_sizes=(8,), max_iter=300, random_state=0)))], final_estimator=linear_model.LogisticRegression(), stack_method="predict"), {"format": "cloudpickle"}),
        ("stacking_regressor", "numeric", "regression", lambda: ensemble.StackingRegressor([("lasso", make_pipeline(sc(), linear_model.Lasso(alpha=0.1))), ("svr", make_pipeline(sc(), svm.SVR()))], final_estimator=linear_model.Ridge()), {"format": "cloudpickle"}),
        # Feature expansion and per-feature distributions (f2 and f4 are integer-valued: tied quantiles, values on bin edges).
        ("polynomial_ridge", "numeric", "regression", lambda: make_pipeline(preprocessing.PolynomialFeatures(2), sc(), linear_model.Ridge()), {"all_formats": True}),
        ("polynomial_interactions", "numeric", "binary", lambda: make_pipeline(sc(), preprocessing.PolynomialFeatures(3, interaction_only=True, include_bias=False), linear_model.LogisticRegression(max_iter=2000)), {"format": "pickle", "predict_fn": "predict_proba"}),
        ("kbins_onehot", "numeric", "multiclass", lambda: make_pipeline(preprocessing.KBinsDiscretizer(n_bins=5, encode="onehot", strategy="quantile"), linear_model.LogisticRegression()), {"format": "cloudpickle"}),
        ("kbins_ordinal_tree", "numeric", "strings", lambda: make_pipeline(preprocessing.KBinsDiscretizer(n_bins=4, encode="ordinal", strategy="uniform"), tree.DecisionTreeClassifier(max_depth=4, random_state=0)), {"format": "skops"}),
        ("power_yeo_johnson", "numeric", "regression", lambda: make_pipeline(preprocessing.PowerTransformer(), linear_model.LinearRegression()), {"format": "pickle"}),
        ("power_box_cox_nan", "numeric_nan", "regression", lambda: make_pipeline(preprocessing.MinMaxScaler(feature_range=(1, 2)), preprocessing.PowerTransformer(method="box-cox"), ensemble.HistGradientBoostingRegressor(max_iter=20, random_state=0)), {"format": "cloudpickle"}),
        ("quantile_uniform_nan", "numeric_nan", "multiclass", lambda: make_pipeline(preprocessing.QuantileTransformer(n_quantiles=100), ensemble.HistGradientBoostingClassifier(max_iter=10, random_state=0)), {"format": "skops", "predict_fn": "predict_proba"}),
        ("quantile_uniform_linear", "numeric", "regression", lambda: make_pipeline(preprocessing.QuantileTransformer(n_quantiles=50), linear_model.LinearRegression()), {"format": "pickle"}),
        ("quantile_normal_linear", "numeric", "regression", lambda: make_pipeline(preprocessing.QuantileTransformer(n_quantiles=100, output_distribution="normal"), linear_model.LinearRegression()), {"format": "pickle"}),
        ("quantile_normal_nan", "numeric_nan", "strings", lambda: make_pipeline(preprocessing.QuantileTransformer(n_quantiles=60, output_distribution="normal"), ensemble.HistGradientBoostingClassifier(max_iter=10, random_state=0)), {"format": "cloudpickle", "predict_fn": "predict_proba"}),
        # Nearest neighbours: KD tree, ball tree and brute force (whose euclidean distances go through the norms), uniform and distance weights.
        ("knn_classifier", "numeric", "strings", lambda: make_pipeline(sc(), neighbors.KNeighborsClassifier(5)), {"all_formats": True, "predict_fn": "predict_proba"}),
        ("knn_distance_brute", "numeric", "multiclass", lambda: make_pipeline(sc(), neighbors.KNeighborsClassifier(7, weights="distance", algorithm="brute")), {"format": "pickle", "predict_fn": "predict_proba"}),
        ("knn_regressor_distance", "numeric", "regression", lambda: make_pipeline(sc(), neighbors.KNeighborsRegressor(4, weights="distance")), {"format": "cloudpickle"}),
        ("knn_manhattan_ball_tree", "numeric", "binary", lambda: neighbors.KNeighborsClassifier(3, metric="manhattan", algorithm="ball_tree"), {"format": "skops"}),
        ("knn_regressor_brute_ten", "numeric", "regression", lambda: make_pipeline(sc(), neighbors.KNeighborsRegressor(10, algorithm="brute")), {"format": "pickle"}),
        # More linear models and GLMs, and a regressor on a transformed target.
        ("linear_discriminant", "numeric", "strings", lambda: discriminant_analysis.LinearDiscriminantAnalysis(), {"format": "skops", "predict_fn": "predict_proba"}),
        ("linear_discriminant_binary", "numeric", "binary", lambda: make_pipeline(sc(), discriminant_analysis.LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")), {"format": "pickle", "predict_fn": "predict_proba"}),
        ("perceptron", "numeric", "multiclass", lambda: make_pipeline(sc(), linear_model.Perceptron(random_state=0)), {"format": "cloudpickle"}),
        ("passive_aggressive", "numeric", "bools", lambda: make_pipeline(sc(), linear_model.PassiveAggressiveClassifier(random_state=0)), {"format": "pickle"}),
        ("ridge_classifier_cv", "numeric", "strings", lambda: make_pipeline(sc(), linear_model.RidgeClassifierCV()), {"format": "skops"}),
        ("lars_omp_regressors", "numeric", "regression", lambda: ensemble.VotingRegressor([("lars", linear_model.LassoLarsIC()), ("omp", linear_model.OrthogonalMatchingPursuit(n_nonzero_coefs=3)), ("ard", linear_model.ARDRegression()), ("ts", linear_model.TheilSenRegressor(random_state=0)), ("q", linear_model.QuantileRegressor(alpha=0.01))]), {"format": "cloudpickle"}),
        ("poisson_regressor", "numeric", "positive", lambda: make_pipeline(sc(), linear_model.PoissonRegressor(alpha=0.1)), {"format": "pickle"}),
        ("gamma_tweedie", "numeric", "positive", lambda: ensemble.VotingRegressor([("gamma", make_pipeline(sc(), linear_model.GammaRegressor())), ("tw", make_pipeline(sc(), linear_model.TweedieRegressor(power=1.5))), ("tw0", make_pipeline(sc(), linear_model.TweedieRegressor(power=0)))]), {"format": "skops"}),
        ("target_log_ridge", "numeric", "positive", lambda: compose.TransformedTargetRegressor(regressor=make_pipeline(sc(), linear_model.Ridge()), func=np.log, inverse_func=np.exp), {"all_formats": True}),
        ("target_scaled_forest", "numeric", "regression", lambda: compose.TransformedTargetRegressor(regressor=ensemble.RandomForestRegressor(n_estimators=10, max_depth=5, random_state=0), transformer=preprocessing.StandardScaler()), {"format": "pickle"}),
        # One-class SVM, one-vs-rest (shallow trees tie often: the release's tie rule decides) and bagging (feature subsets, votes where a member has no probabilities).
        ("one_class_svm", "numeric", "binary", lambda: make_pipeline(sc(), svm.OneClassSVM(nu=0.1)), {"format": "cloudpickle"}),
        ("ovr_linear_svc", "numeric", "strings", lambda: multiclass.OneVsRestClassifier(make_pipeline(sc(), svm.LinearSVC(random_state=0))), {"format": "pickle"}),
        ("ovr_logreg_proba", "numeric", "multiclass", lambda: make_pipeline(sc(), multiclass.OneVsRestClassifier(linear_model.LogisticRegression())), {"format": "skops", "predict_fn": "predict_proba"}),
        ("ovr_binary_tree", "numeric", "binary", lambda: multiclass.OneVsRestClassifier(tree.DecisionTreeClassifier(max_depth=3, random_state=0)), {"format": "cloudpickle"}),
        ("ovr_tree_ties", "numeric", "multiclass", lambda: multiclass.OneVsRestClassifier(tree.DecisionTreeClassifier(random_state=0)), {"format": "pickle"}),
        ("bagging_trees", "numeric", "strings", lambda: ensemble.BaggingClassifier(tree.DecisionTreeClassifier(max_depth=4, random_state=0), n_estimators=10, max_features=0.7, bootstrap_features=True, random_state=0), {"format": "pickle", "predict_fn": "predict_proba"}),
        ("bagging_svc_votes", "numeric", "multiclass", lambda: ensemble.BaggingClassifier(make_pipeline(sc(), svm.LinearSVC(random_state=0)), n_estimators=5, max_samples=0.5, random_state=0), {"format": "cloudpickle", "predict_fn": "predict_proba"}),
        ("bagging_regressor", "numeric", "regression", lambda: ensemble.BaggingRegressor(neighbors.KNeighborsRegressor(3), n_estimators=5, max_features=0.5, random_state=0), {"format": "skops"}),
        ("ada_boost_stumps", "numeric", "strings", lambda: ensemble.AdaBoostClassifier(n_estimators=30, random_state=0), {"format": "pickle", "predict_fn": "predict_proba"}),
        ("ada_boost_binary", "numeric", "binary", lambda: make_pipeline(sc(), ensemble.AdaBoostClassifier(tree.DecisionTreeClassifier(max_depth=2), n_estimators=20, random_state=0)), {"format": "skops", "predict_fn": "predict_proba"}),
        ("ada_boost_regressor", "numeric", "regression", lambda: ensemble.AdaBoostRegressor(tree.DecisionTreeRegressor(max_depth=3), n_estimators=25, random_state=0), {"format": "cloudpickle"}),
        ("feature_union", "numeric", "multiclass", lambda: make_pipeline(sc(), pipeline.FeatureUnion([("pca", decomposition.PCA(3)), ("svd", decomposition.TruncatedSVD(2, random_state=0)), ("raw", "passthrough")], transformer_weights={"pca": 2.0}), linear_model.LogisticRegression(max_iter=1000)), {"format": "pickle", "predict_fn": "predict_proba"}),
        ("feature_union_ipca_poly", "numeric", "regression", lambda: make_pipeline(pipeline.FeatureUnion([("ipca", decomposition.IncrementalPCA(3)), ("poly", preprocessing.PolynomialFeatures(2, include_bias=False)), ("off", "drop")]), linear_model.Ridge()), {"format": "skops"}),
        ("target_encoder", "mixed_unseen", "binary", lambda: make_pipeline(ColumnTransformer([("num", SimpleImputer(), ["age", "income"]), ("te", preprocessing.TargetEncoder(random_state=0), ["city", "plan"])]), linear_model.LogisticRegression()), {"format": "pickle", "predict_fn": "predict_proba"}),
        ("target_encoder_multiclass_nulls", "mixed_nulls", "strings", lambda: make_pipeline(ColumnTransformer([("num", SimpleImputer(), ["age", "income"]), ("te", preprocessing.TargetEncoder(random_state=0), ["city", "plan"])]), ensemble.HistGradientBoostingClassifier(max_iter=10, random_state=0)), {"format": "skops", "predict_fn": "predict_proba"}),
        ("target_encoder_regression", "mixed", "regression", lambda: make_pipeline(ColumnTransformer([("te", preprocessing.TargetEncoder(smooth=5.0, random_state=0), ["city", "plan"]), ("rest", "passthrough", ["age", "active"])]), linear_model.Ridge()), {"format": "cloudpickle"}),
        # Encoders fitted on None in an object column, scored on pandas 3's str column whose nulls are NaN: unknown to scikit-learn.
        ("encoders_none_categories", "mixed_nulls", "binary", lambda: make_pipeline(ColumnTransformer([("oh", preprocessing.OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["city"]), ("ord", preprocessing.OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), ["city"]), ("num", SimpleImputer(), ["age", "income"])]), linear_model.LogisticRegression(max_iter=1000)), {"format": "pickle", "predict_fn": "predict_proba"}),
        ("dummy_prior", "numeric_nan", "strings", lambda: dummy.DummyClassifier(strategy="prior"), {"format": "pickle", "predict_fn": "predict_proba"}),
        ("dummy_most_frequent_pipeline", "numeric", "bools", lambda: make_pipeline(sc(), dummy.DummyClassifier()), {"format": "skops"}),
        ("dummy_regressor_median", "numeric_nan", "regression", lambda: dummy.DummyRegressor(strategy="median"), {"format": "cloudpickle"}),
        # Outlier detection: -1 / 1 from path lengths (subsampled features, a contamination offset, NaN).
        ("isolation_forest", "numeric", "binary", lambda: ensemble.IsolationForest(n_estimators=50, random_state=0), {"all_formats": True}),
        ("isolation_forest_subsampled_nan", "numeric_nan", "binary", lambda: ensemble.IsolationForest(n_estimators=30, max_features=0.5, max_samples=100, contamination=0.1, random_state=0), {"format": "pickle"}),
        ("isolation_forest_pipeline", "numeric", "binary", lambda: make_pipeline(sc(), ensemble.IsolationForest(n_estimators=40, contamination=0.05, random_state=0)), {"format": "skops"}),
        # Fitted on NaN nulls: OrdinalEncoder's NaN category (`_missing_indices`) takes encoded_missing_value.
        ("ordinal_nan_category", "mixed_nans", "binary", lambda: make_pipeline(ColumnTransformer([("ord", preprocessing.OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-2), ["city", "plan"]), ("num", SimpleImputer(), ["age", "income"])]), linear_model.LogisticRegression(max_iter=1000)), {"all_formats": True, "predict_fn": "predict_proba"}),
        ("onehot_nan_category", "mixed_nans", "multiclass", lambda: make_pipeline(ColumnTransformer([("oh", preprocessing.OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["city", "plan"]), ("num", SimpleImputer(), ["age", "income"])]), linear_model.LogisticRegression(max_iter=1000)), {"format": "skops", "predict_fn": "predict_proba"}),
        ("target_encoder_nan_category", "mixed_nans", "regression", lambda: make_pipeline(ColumnTransformer([("te", preprocessing.TargetEncoder(random_state=0), ["city", "plan"]), ("num", SimpleImputer(), ["age", "income"])]), linear_model.Ridge()), {"format": "pickle"}),
        ("hist_gradient_boosting_nan_categories", "mixed_nans", "multiclass", lambda: ensemble.HistGradientBoostingClassifier(max_iter=15, categorical_features=["city", "plan"], random_state=0), {"format": "cloudpickle", "predict_fn": "predict_proba"}),
        ("string_imputer_nan_nulls", "mixed_nans", "strings", lambda: make_pipeline(ColumnTransformer([
            ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value="missing"), preprocessing.OneHotEncoder(handle_unknown="ignore", sparse_output=False)), ["city", "plan"]),
            ("num", SimpleImputer(strategy="median"), ["income", "age"]),
        ]), tree.DecisionTreeClassifier(max_depth=5, random_state=0)), {"format": "skops"}),
    ]


def duplicated():
    """The six numeric columns, then f0 and f3 again: equal selection scores, tied."""
    from sklearn.compose import ColumnTransformer

    return ColumnTransformer([("all", "passthrough", [0, 1, 2, 3, 4, 5]), ("again", "passthrough", [0, 3])])


def untrusted(model) -> list[str]:
    import skops.io

    return skops.io.get_untrusted_types(data=skops.io.dumps(model))


def make(rng, name, data, target, factory, opts, fmt) -> dict:
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    if data.startswith("mixed"):
        train, test = mixed(N_TRAIN, rng, False), mixed(N_TEST, rng, data.endswith("unseen"))
        if data.endswith("nulls"):
            for df in (train, test):
                df["city"] = df["city"].astype(object)
                df.loc[rng.random(len(df)) < 0.1, "city"] = None
        elif data.endswith("nans"):
            # pandas 3's str column: its nulls are NaN at fit time too (a NaN category).
            for df in (train, test):
                df.loc[rng.random(len(df)) < 0.1, "city"] = np.nan
    else:
        nan = 0.08 if data.endswith("nan") else 0.0
        train, test = numeric(N_TRAIN, rng, nan), numeric(N_TEST, rng, nan)
        if data.endswith("sentinel"):
            # The estimator's own `missing` value, among NaN (both are missing to XGBoost).
            for df in (train, test):
                df[:] = df.mask(rng.random(df.shape) < 0.08, -999.0).mask(rng.random(df.shape) < 0.04)
    y = targets(train, rng)[target]
    model = factory()
    if opts.get("unsupervised"):
        model.fit(train)
    elif opts.get("early_stop"):
        # Stops on a held-out part of the training rows: best_iteration < n_estimators.
        model.fit(train[:450], y[:450], eval_set=[(train[450:], y[450:])], verbose=False)
        assert model.best_iteration + 1 < model.n_estimators, model.best_iteration
    else:
        model.fit(train, y)
    if opts.get("plant"):
        test = plant(test, tree_thresholds(model), rng)
    dest = OUT / name
    dest.mkdir(parents=True)
    kwargs = {}
    if fmt == "skops":
        kwargs["skops_trusted_types"] = untrusted(model)
    if "predict_fn" in opts:
        kwargs["pyfunc_predict_fn"] = opts["predict_fn"]
    signature = infer_signature(train, model.predict(train))
    mlflow.sklearn.save_model(model, dest / "model", serialization_format=fmt, signature=signature, **kwargs)
    # Scored as Arrow delivers the table (what spark_udf feeds pyfunc): read back from Parquet,
    # so that a missing string is what pandas makes of an Arrow null (NaN in pandas 3's str
    # dtype, which SimpleImputer imputes), not the Python None it was built with (which it
    # keeps as a category).
    pq.write_table(pa.Table.from_pandas(test, preserve_index=False), dest / "input.parquet")
    test = pq.read_table(dest / "input.parquet").to_pandas()
    loaded = mlflow.pyfunc.load_model(str(dest / "model"))
    prediction = np.asarray(loaded.predict(test))
    cols = {"prediction": pa.array(prediction) if prediction.ndim == 1 else as_list_column(prediction)}
    if hasattr(model, "predict_proba") and not opts.get("unsupervised"):
        try:
            cols["proba"] = as_list_column(model.predict_proba(test))
        except AttributeError:
            pass
    pq.write_table(pa.table(cols), dest / "golden.parquet")
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    return {"case": name, "format": fmt, "estimator": type(final).__name__, "golden": list(cols),
            "predict_fn": opts.get("predict_fn", "predict")}


def all_cases():
    out = []
    for i, (name, data, target, factory, opts) in enumerate(cases()):
        formats = FORMATS if opts.get("all_formats") else [opts.get("format", FORMATS[i % 3])]
        for fmt in formats:
            case = f"{name}_{fmt}" if opts.get("all_formats") else name
            out.append((case, [SEED, i], lambda rng, a=(case, data, target, factory, opts, fmt): make(rng, *a)))
    return out


def main() -> None:
    """`sklearn_zoo.py` regenerates every case; `sklearn_zoo.py NAME...` only those, keeping the others."""
    from casegen import regenerate

    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "true"
    regenerate(OUT, all_cases, lambda e: f"{e['format']:12s} {e['estimator']}")


if __name__ == "__main__":
    main()
