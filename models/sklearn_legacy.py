#!/usr/bin/env python3
"""Regenerate the legacy scikit-learn cases: models as older scikit-learn and numpy releases pickle them.

    scripts/python-env models/sklearn_legacy.py 1.1           # writes models/sklearn-1.1/
    scripts/python-env models/sklearn_legacy.py 1.3 NAME...   # only those cases of models/sklearn-1.3/

Most registered MLflow models were logged years ago on older runtimes: Databricks Runtime ML
13.3 LTS ships scikit-learn 1.1, numpy 1.23 and MLflow 2.x; 14.3 LTS scikit-learn 1.3. Their files
differ from today's where mlscore reads them: numpy 1.x's `numpy.core` names, tree nodes without
`missing_go_to_left` (scikit-learn < 1.3), classifier leaves holding weighted class counts, not
fractions (< 1.4), GradientBoosting's `_gb_losses` objects and `loss="deviance"` (< 1.3).

Run with the main virtualenv's Python, this script makes (once) a virtualenv pinned by
models/sklearn_legacy_<release>.txt and runs itself there; each case is then fitted, saved with
that MLflow's `mlflow.sklearn.save_model` and scored by its pyfunc, exactly as
models/sklearn_zoo.py does for the current releases (same tables, same golden columns, same
cases.json entries).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Each release's exact scikit-learn version (its pins: models/sklearn_legacy_<release>.txt).
RELEASES = {"1.1": "1.1.3", "1.3": "1.3.2"}


def legacy_python(release: str) -> Path:
    """The pinned virtualenv of a legacy release, made on first use."""
    import hashlib

    pins = HERE / f"sklearn_legacy_{release}.txt"
    venv = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mlscore" / f"venv-sklearn-{release}"
    stamp = venv / ".mlscore-requirements.sha256"
    want = hashlib.sha256(pins.read_bytes()).hexdigest()
    if not (venv / "bin" / "python").exists() or not stamp.exists() or stamp.read_text().strip() != want:
        print(f"sklearn_legacy: installing {pins.name} into {venv} (once)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(pins)]
        subprocess.run(pip, check=True)
        stamp.write_text(want + "\n")
    return venv / "bin" / "python"


def cases(release: str):
    """(name, data, target, make(), options), written with the API of both releases."""
    from sklearn import calibration, cluster, compose, decomposition, discriminant_analysis, ensemble, feature_selection, linear_model, multiclass, naive_bayes, neighbors, neural_network, preprocessing, svm, tree
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn import pipeline
    from sklearn.pipeline import make_pipeline

    import numpy as np
    import sklearn_zoo
    from sklearn_zoo import ct_ordinal

    sc = preprocessing.StandardScaler

    def xgb():
        import xgboost

        return xgboost

    # What was renamed between the two: OneHotEncoder's `sparse`, the log losses' names.
    old = release == "1.1"
    dense = {"sparse": False} if old else {"sparse_output": False}
    log = "log" if old else "log_loss"
    deviance = "deviance" if old else "log_loss"

    def ct_onehot(**ohe):
        return sklearn_zoo.ct_onehot(dense, **ohe)

    cp, pk = {"format": "cloudpickle"}, {"format": "pickle"}
    return [
        ("linear_regression", "numeric", "regression", lambda: linear_model.LinearRegression(), pk),
        ("ridge", "numeric", "regression", lambda: make_pipeline(sc(), linear_model.Ridge(alpha=2.0)), cp),
        ("elastic_net", "numeric", "regression", lambda: make_pipeline(preprocessing.RobustScaler(), linear_model.ElasticNet(alpha=0.05)), cp),
        ("sgd_regressor", "numeric", "regression", lambda: make_pipeline(sc(), linear_model.SGDRegressor(random_state=0)), pk),
        ("linear_svr", "numeric", "regression", lambda: make_pipeline(preprocessing.MaxAbsScaler(), svm.LinearSVR(random_state=0)), cp),
        ("logreg_multiclass", "numeric", "multiclass", lambda: make_pipeline(sc(), linear_model.LogisticRegression()), cp),
        ("logreg_strings_proba", "numeric", "strings", lambda: make_pipeline(sc(), linear_model.LogisticRegression()), {**pk, "predict_fn": "predict_proba"}),
        ("sgd_classifier", "numeric", "multiclass", lambda: make_pipeline(sc(), linear_model.SGDClassifier(loss=log, random_state=0)), cp),
        ("linear_svc", "numeric", "binary", lambda: make_pipeline(sc(), svm.LinearSVC(random_state=0)), cp),
        ("decision_tree_regressor", "numeric", "regression", lambda: tree.DecisionTreeRegressor(max_depth=8, random_state=0), {**pk, "plant": True}),
        ("decision_tree_bools", "numeric", "bools", lambda: tree.DecisionTreeClassifier(max_depth=5, random_state=0), {**cp, "plant": True}),
        ("random_forest", "numeric", "binary", lambda: ensemble.RandomForestClassifier(n_estimators=30, max_depth=8, random_state=0), {**cp, "plant": True}),
        ("random_forest_pickle", "numeric", "multiclass", lambda: ensemble.RandomForestClassifier(n_estimators=20, max_depth=8, random_state=0), {**pk, "plant": True}),
        # Bootstrap samples weigh rows unevenly: the leaves' counts are weighted, not whole.
        ("random_forest_proba", "numeric", "strings", lambda: ensemble.RandomForestClassifier(n_estimators=20, random_state=0), {**cp, "predict_fn": "predict_proba"}),
        ("random_forest_regressor", "numeric", "regression", lambda: ensemble.RandomForestRegressor(n_estimators=20, max_depth=10, random_state=0), {**cp, "plant": True}),
        ("extra_trees", "numeric", "multiclass", lambda: ensemble.ExtraTreesClassifier(n_estimators=20, max_depth=8, random_state=0), {**pk, "plant": True}),
        # loss="deviance": the name scikit-learn < 1.3 pickled (deprecated in 1.1, its default).
        ("gradient_boosting_binary", "numeric", "binary", lambda: ensemble.GradientBoostingClassifier(loss=deviance, n_estimators=40, random_state=0), {**cp, "plant": True}),
        ("gradient_boosting_multiclass", "numeric", "strings", lambda: ensemble.GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=0), pk),
        ("gradient_boosting_regressor", "numeric", "regression", lambda: ensemble.GradientBoostingRegressor(n_estimators=40, loss="huber", random_state=0), {**cp, "plant": True}),
        ("gradient_boosting_exponential", "numeric", "bools", lambda: ensemble.GradientBoostingClassifier(loss="exponential", n_estimators=30, random_state=0), cp),
        ("hist_gradient_boosting", "numeric_nan", "binary", lambda: ensemble.HistGradientBoostingClassifier(max_iter=30, random_state=0), cp),
        ("hist_gradient_boosting_multiclass", "numeric_nan", "multiclass", lambda: ensemble.HistGradientBoostingClassifier(max_iter=15, random_state=0), pk),
        ("hist_gradient_boosting_regressor", "numeric_nan", "regression", lambda: ensemble.HistGradientBoostingRegressor(max_iter=30, random_state=0), cp),
        ("mlp_classifier", "numeric", "multiclass", lambda: make_pipeline(sc(), neural_network.MLPClassifier(hidden_layer_sizes=(16, 8), max_iter=300, random_state=0)), cp),
        ("mlp_regressor", "numeric", "regression", lambda: make_pipeline(sc(), neural_network.MLPRegressor(hidden_layer_sizes=(16,), activation="tanh", max_iter=300, random_state=0)), pk),
        ("kmeans", "numeric", "regression", lambda: make_pipeline(sc(), cluster.KMeans(n_clusters=4, n_init=3, random_state=0)), {**cp, "unsupervised": True}),
        ("pca_logreg", "numeric", "binary", lambda: make_pipeline(sc(), decomposition.PCA(n_components=3, whiten=True), linear_model.LogisticRegression()), cp),
        ("pipeline_onehot_logreg", "mixed_unseen", "strings", lambda: make_pipeline(ct_onehot(handle_unknown="ignore"), linear_model.LogisticRegression(max_iter=500)), cp),
        ("pipeline_onehot_logreg_pickle", "mixed_unseen", "strings", lambda: make_pipeline(ct_onehot(handle_unknown="ignore"), linear_model.LogisticRegression(max_iter=500)), pk),
        ("pipeline_ordinal_forest", "mixed_unseen", "binary", lambda: make_pipeline(ct_ordinal(), ensemble.RandomForestClassifier(n_estimators=15, random_state=0)), cp),
        ("pipeline_onehot_infrequent", "mixed_unseen", "regression", lambda: make_pipeline(ct_onehot(drop="first", handle_unknown="infrequent_if_exist", min_frequency=0.05), ensemble.GradientBoostingRegressor(n_estimators=20, random_state=0)), pk),
        # MLflow 2.9 infers no signature from a string column holding None: nulls in 1.1's only.
        ("pipeline_string_imputer", "mixed_nulls" if old else "mixed_unseen", "multiclass", lambda: make_pipeline(ColumnTransformer([
            ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"), preprocessing.OneHotEncoder(handle_unknown="ignore", **dense)), ["city", "plan"]),
            ("num", SimpleImputer(strategy="constant", fill_value=0.0), ["income", "age"]),
        ]), tree.DecisionTreeClassifier(max_depth=5, random_state=0)), cp),
    ] + ([
        # XGBoost 1.7 (that runtime's) as a pipeline's last step: its pickle keeps a UBJSON snapshot.
        ("pipeline_onehot_xgboost", "mixed_unseen", "binary", lambda: make_pipeline(ct_onehot(handle_unknown="ignore"), xgb().XGBClassifier(n_estimators=30, max_depth=4, random_state=0)), cp),
    ] if old else [
        # Trees learn where NaN goes from 1.3 on (`missing_go_to_left`), leaves still counts.
        ("decision_tree_nan", "numeric_nan", "multiclass", lambda: tree.DecisionTreeClassifier(max_depth=6, random_state=0), {**cp, "plant": True}),
        ("decision_tree_regressor_nan", "numeric_nan", "regression", lambda: tree.DecisionTreeRegressor(max_depth=6, random_state=0), {**pk, "plant": True}),
    ]) + [
        # Feature selectors: masks recomputed from the fitted scores; RFE's NaN rule is its tree's.
        ("select_k_best_pipeline", "numeric", "multiclass", lambda: make_pipeline(feature_selection.VarianceThreshold(1.5), sc(), feature_selection.SelectKBest(feature_selection.f_classif, k=3), linear_model.LogisticRegression()), cp),
        ("select_percentile_ties", "numeric", "regression", lambda: make_pipeline(sklearn_zoo.duplicated(), feature_selection.SelectPercentile(feature_selection.f_regression, percentile=12.5), linear_model.LinearRegression()), pk),
        ("rfe_tree", "numeric", "binary", lambda: feature_selection.RFE(tree.DecisionTreeClassifier(max_depth=5, random_state=0), n_features_to_select=3), pk),
        # SelectFromModel's L1 default threshold (1e-5) under these releases' rule, and count-leaf trees' importances.
        ("select_from_l1_liblinear", "numeric", "multiclass", lambda: make_pipeline(sc(), feature_selection.SelectFromModel(linear_model.LogisticRegression(penalty="l1", solver="liblinear", C=0.01)), linear_model.LogisticRegression()), cp),
        ("select_from_elastic_net_l1", "numeric", "regression", lambda: make_pipeline(sc(), feature_selection.SelectFromModel(linear_model.ElasticNet(alpha=2.0, l1_ratio=1.0)), linear_model.LinearRegression()), pk),
        ("select_from_extra_trees", "numeric", "strings", lambda: make_pipeline(feature_selection.SelectFromModel(ensemble.ExtraTreesClassifier(n_estimators=8, max_depth=4, random_state=0), threshold="1.25*mean"), linear_model.LogisticRegression(max_iter=500)), {**cp, "predict_fn": "predict_proba"}),
        # Kernel SVMs and Gaussian naive Bayes as these releases pickle them.
        ("svc_rbf_proba", "numeric", "strings", lambda: make_pipeline(sc(), svm.SVC(probability=True, random_state=0)), {**cp, "predict_fn": "predict_proba"}),
        ("svr_poly", "numeric", "regression", lambda: make_pipeline(sc(), svm.SVR(kernel="poly", degree=2, C=5.0)), pk),
        ("gaussian_nb", "numeric", "multiclass", lambda: naive_bayes.GaussianNB(), pk),
        ("calibrated_linear_svc", "numeric", "strings", lambda: make_pipeline(sc(), calibration.CalibratedClassifierCV(svm.LinearSVC(random_state=0), cv=3)), {**cp, "predict_fn": "predict_proba"}),
        ("calibrated_forest_isotonic", "numeric", "binary", lambda: calibration.CalibratedClassifierCV(ensemble.RandomForestClassifier(n_estimators=10, max_depth=5, random_state=0), method="isotonic", cv=2), pk),
        ("voting_soft", "numeric", "strings", lambda: ensemble.VotingClassifier([("lr", make_pipeline(sc(), linear_model.LogisticRegression())), ("rf", ensemble.RandomForestClassifier(n_estimators=10, max_depth=5, random_state=0))], voting="soft", weights=[1, 2]), {**cp, "predict_fn": "predict_proba"}),
        ("stacking_regressor", "numeric", "regression", lambda: ensemble.StackingRegressor([("ridge", make_pipeline(sc(), linear_model.Ridge())), ("dt", tree.DecisionTreeRegressor(max_depth=5, random_state=0))], final_estimator=linear_model.LinearRegression(), passthrough=True), pk),
        ("polynomial_power", "numeric", "regression", lambda: make_pipeline(preprocessing.PolynomialFeatures(2), preprocessing.PowerTransformer(), linear_model.Ridge()), cp),
        ("kbins_quantile", "numeric", "multiclass", lambda: make_pipeline(preprocessing.QuantileTransformer(n_quantiles=100), preprocessing.KBinsDiscretizer(n_bins=4, encode="onehot"), linear_model.LogisticRegression()), pk),
        ("isolation_forest", "numeric", "binary", lambda: ensemble.IsolationForest(n_estimators=30, max_features=0.5, contamination=0.1, random_state=0), pk),
        ("quantile_normal", "numeric", "regression", lambda: make_pipeline(preprocessing.QuantileTransformer(n_quantiles=80, output_distribution="normal"), linear_model.Ridge()), cp),
        ("knn_distance", "numeric", "strings", lambda: make_pipeline(sc(), neighbors.KNeighborsClassifier(5, weights="distance")), {**pk, "predict_fn": "predict_proba"}),
        ("knn_regressor_brute", "numeric", "regression", lambda: make_pipeline(sc(), neighbors.KNeighborsRegressor(9, algorithm="brute")), cp),
        ("glm_lda_target", "numeric", "positive", lambda: ensemble.VotingRegressor([("poisson", make_pipeline(sc(), linear_model.PoissonRegressor())), ("target", compose.TransformedTargetRegressor(regressor=linear_model.Ridge(), func=np.log, inverse_func=np.exp))]), pk),
        ("linear_discriminant", "numeric", "strings", lambda: discriminant_analysis.LinearDiscriminantAnalysis(), {**cp, "predict_fn": "predict_proba"}),
        ("ovr_tree_ties", "numeric", "multiclass", lambda: multiclass.OneVsRestClassifier(tree.DecisionTreeClassifier(random_state=0)), pk),
        ("bagging_one_class", "numeric", "binary", lambda: ensemble.VotingRegressor([("bag", ensemble.BaggingRegressor(tree.DecisionTreeRegressor(max_depth=4, random_state=0), n_estimators=5, max_features=0.6, random_state=0))]), cp),
        ("one_class_svm", "numeric", "binary", lambda: make_pipeline(sc(), svm.OneClassSVM(nu=0.1)), pk),
        ("ada_boost_samme_r", "numeric", "strings", lambda: ensemble.AdaBoostClassifier(n_estimators=20, random_state=0), {**pk, "predict_fn": "predict_proba"}),
        ("ada_boost_samme", "numeric", "binary", lambda: ensemble.AdaBoostClassifier(n_estimators=20, algorithm="SAMME", random_state=0), cp),
        ("ada_boost_regressor", "numeric", "regression", lambda: ensemble.AdaBoostRegressor(tree.DecisionTreeRegressor(max_depth=3), n_estimators=15, random_state=0), pk),
        ("feature_union", "numeric", "multiclass", lambda: make_pipeline(sc(), pipeline.FeatureUnion([("pca", decomposition.PCA(3)), ("svd", decomposition.TruncatedSVD(2, random_state=0)), ("raw", "passthrough")], transformer_weights={"svd": 0.5}), linear_model.LogisticRegression(max_iter=1000)), pk),
    ] + ([
        # pandas 1's None nulls reach the imputers and encoders inside a meta-estimator's members too.
        ("voting_string_imputer", "mixed_nulls", "multiclass", lambda: ensemble.VotingClassifier([
            ("tree", make_pipeline(ColumnTransformer([
                ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"), preprocessing.OneHotEncoder(handle_unknown="ignore", **dense)), ["city", "plan"]),
                ("num", SimpleImputer(strategy="constant", fill_value=0.0), ["income", "age"]),
            ]), tree.DecisionTreeClassifier(max_depth=5, random_state=0))),
            ("logreg", make_pipeline(ColumnTransformer([
                ("cat", preprocessing.OneHotEncoder(handle_unknown="ignore", **dense), ["city", "plan"]),
                ("num", SimpleImputer(), ["income", "age"]),
            ]), sc(), linear_model.LogisticRegression(max_iter=1000))),
        ], voting="soft"), {**cp, "predict_fn": "predict_proba"}),
        ("calibrated_string_imputer", "mixed_nulls", "binary", lambda: calibration.CalibratedClassifierCV(make_pipeline(ColumnTransformer([
            ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"), preprocessing.OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)), ["city", "plan"]),
            ("num", SimpleImputer(), ["income", "age"]),
        ]), ensemble.RandomForestClassifier(n_estimators=10, max_depth=5, random_state=0)), cv=3), {**pk, "predict_fn": "predict_proba"}),
    ] if old else [
        ("target_encoder_unseen", "mixed_unseen", "binary", lambda: make_pipeline(ColumnTransformer([("num", SimpleImputer(), ["age", "income"]), ("te", preprocessing.TargetEncoder(random_state=0), ["city", "plan"])]), linear_model.LogisticRegression(max_iter=1000)), {**pk, "predict_fn": "predict_proba"}),
    ])


def all_cases(release: str):
    import sklearn_zoo

    return [
        (name, [sklearn_zoo.SEED, 1000 + i], lambda rng, a=(name, data, target, factory, opts, opts["format"]): sklearn_zoo.make(rng, *a))
        for i, (name, data, target, factory, opts) in enumerate(cases(release))
    ]


def main() -> None:
    import sklearn

    if len(sys.argv) < 2 or sys.argv[1] not in RELEASES:
        raise SystemExit(f"usage: sklearn_legacy.py RELEASE [NAME...], RELEASE one of {', '.join(RELEASES)}")
    release = sys.argv.pop(1)
    if sklearn.__version__ != RELEASES[release]:
        # Not that release's virtualenv: run there.
        python = str(legacy_python(release))
        os.execv(python, [python, __file__, release, *sys.argv[1:]])
    import sklearn_zoo
    from casegen import regenerate

    sklearn_zoo.OUT = HERE / f"sklearn-{release}"
    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "true"
    regenerate(sklearn_zoo.OUT, lambda: all_cases(release), lambda e: f"{e['format']:12s} {e['estimator']}")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
