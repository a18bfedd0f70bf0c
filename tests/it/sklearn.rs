//! scikit-learn models logged with mlflow.sklearn (models/sklearn_zoo.py) in cloudpickle, pickle
//! and skops, scored by mlscore's own readers (nothing executed), compared with what MLflow's
//! pyfunc gave on the same rows: labels and their type exactly, values and probabilities within
//! 1e-6 relative. Then hostile files: each an error naming the file and the culprit, never a
//! panic, and nothing run.

use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use mlscore::core::predict_batch;
use mlscore::{NullPolicy, ResultType};

use crate::common::*;

/// The cases of `models/<family>/cases.json`: `sklearn` (today's releases), `sklearn-1.1` or
/// `sklearn-1.3`.
fn cases(family: &str) -> Vec<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(models().join(family).join("cases.json")).unwrap()).unwrap()
}

fn close(got: &[f64], want: &[f64], what: &str) -> Result<(), String> {
    close_to(got, want, 1e-6, 1e-3, what)
}

fn rows(a: &dyn Array) -> Vec<Vec<f64>> {
    value_rows(a)
}

fn run_case(family: &str, case: &serde_json::Value) -> Result<(), String> {
    let name = case["case"].as_str().unwrap();
    let err = |e: String| format!("{family}/{name} ({}): {e}", case["format"]);
    let ScoredCase { model, golden, outputs, pyfunc: got, .. } = score_case(family, name, err)?;
    let outputs = &outputs;
    let want = column(&golden, "prediction");
    match want.data_type() {
        DataType::Float64 | DataType::Float32 => {
            if got.data_type() != &DataType::Float64 {
                return Err(err(format!("prediction is {}, pyfunc gives {}", got.data_type(), want.data_type())));
            }
            close(&floats(got.as_ref()), &floats(want.as_ref()), &err("prediction".into()))?
        }
        DataType::List(_) => {
            close(&rows(got.as_ref()).concat(), &rows(want.as_ref()).concat(), &err("prediction".into()))?
        }
        _ => same_labels(got.as_ref(), want.as_ref()).map_err(err)?,
    }
    if golden.schema().index_of("proba").is_ok() {
        let proba = outputs
            .iter()
            .find(|(n, _)| n == "probabilities")
            .map(|(_, a)| a)
            .ok_or_else(|| err("no probabilities".into()))?;
        close(&rows(proba.as_ref()).concat(), &rows(column(&golden, "proba").as_ref()).concat(), &err("proba".into()))?;
        if case["predict_fn"] == "predict" {
            let spark = ResultType::from_arrow(want.data_type()).expect("labels have a Spark type");
            let both = ResultType::parse(&format!("struct<label:{spark},probabilities:array<double>>")).unwrap();
            let s = model.convert(&both, outputs).map_err(|e| err(e.to_string()))?;
            if texts(s.as_struct().column(0).as_ref()) != texts(want.as_ref()) {
                return Err(err("the label/probabilities struct differs from the outputs".into()));
            }
        }
    }
    Ok(())
}

#[test]
fn every_sklearn_model_scores_like_scikit_learn() {
    let cases = cases("sklearn");
    assert!(cases.len() >= 35, "models/sklearn lists {} cases", cases.len());
    for f in ["cloudpickle", "pickle", "skops"] {
        assert!(cases.iter().filter(|c| c["format"] == f).count() >= 10, "too few {f} cases");
    }
    let failures: Vec<String> = cases.iter().filter_map(|c| run_case("sklearn", c).err()).collect();
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// Models as older releases pickled them (models/sklearn_legacy.py), scored like the pyfunc of
/// the release that wrote them: scikit-learn 1.1.3 with numpy 1.23 and MLflow 2.5 (what
/// Databricks Runtime ML 13.3 LTS writes: numpy's `numpy.core` names, tree nodes without
/// `missing_go_to_left`, classifier leaves of weighted counts, `loss="deviance"`), and 1.3.2
/// with numpy 1.26 and MLflow 2.9 (nodes with `missing_go_to_left`, NaN in trees, leaves still
/// counts).
#[test]
fn models_pickled_by_older_scikit_learn_releases_score_like_them() {
    for (family, sklearn, mlflow) in [("sklearn-1.1", "1.1.3", "2.5.0"), ("sklearn-1.3", "1.3.2", "2.9.2")] {
        let cases = cases(family);
        assert!(cases.len() >= 30, "models/{family} lists {} cases", cases.len());
        for c in &cases {
            let mlmodel = models().join(family).join(c["case"].as_str().unwrap()).join("model/MLmodel");
            let text = std::fs::read_to_string(&mlmodel).unwrap();
            let versions = [format!("sklearn_version: {sklearn}"), format!("mlflow_version: {mlflow}")];
            assert!(versions.iter().all(|v| text.contains(v.as_str())), "{}", mlmodel.display());
        }
        for f in ["cloudpickle", "pickle"] {
            assert!(cases.iter().filter(|c| c["format"] == f).count() >= 10, "too few {f} cases in {family}");
        }
        let failures: Vec<String> = cases.iter().filter_map(|c| run_case(family, c).err()).collect();
        assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
    }
}

/// An MLP's layers are summed as numpy's OpenBLAS sums them where the CPU fuses multiply-adds
/// (the goldens were written on such a CPU): the classifier's probabilities are MLflow's bit for
/// bit, not only within the tolerance above.
#[test]
fn an_mlp_classifiers_probabilities_are_scikit_learns_bit_for_bit() {
    if !mlscore::kernels::columns::fused_multiply_add() {
        return;
    }
    let ScoredCase { golden, outputs, .. } = score_case("sklearn", "mlp_classifier", |e| e).unwrap();
    let proba = outputs.iter().find(|(n, _)| n == "probabilities").map(|(_, a)| rows(a.as_ref())).unwrap();
    let want = rows(column(&golden, "proba").as_ref());
    assert_eq!(proba.len(), 300);
    let differ = proba.iter().zip(&want).filter(|(g, w)| g != w).count();
    assert_eq!(differ, 0, "{differ} of 300 rows' probabilities differ from scikit-learn's in their bits");
}

/// A batch is scored a chunk of rows at a time (up to 8,192, by the model's width): a batch of
/// many chunks, whose last chunk is a short one, gives every row exactly what the row gets in a
/// small batch.
#[test]
fn a_batch_of_many_chunks_scores_every_row_as_a_small_batch_does() {
    for name in [
        "logreg_binary",
        "mlp_classifier",
        "pipeline_onehot_logreg_skops",
        "pipeline_string_imputer",
        "random_forest_proba",
        "kmeans",
        "normalizer_binarizer",
    ] {
        let ScoredCase { model, input, outputs, .. } = score_case("sklearn", name, |e| e).unwrap();
        let copies = 9_000usize.div_ceil(input.num_rows());
        let big = arrow::compute::concat_batches(&input.schema(), &vec![input.clone(); copies]).unwrap();
        let scored = predict_batch(model.as_ref(), &big, NullPolicy::Nan).unwrap().outputs;
        assert_eq!(scored.len(), outputs.len(), "{name}: outputs");
        for ((n, got), (_, small)) in scored.iter().zip(&outputs) {
            let want = arrow::compute::concat(&vec![small.as_ref(); copies]).unwrap();
            assert_eq!(got.len(), big.num_rows(), "{name}: {n}");
            assert!(got.as_ref() == want.as_ref(), "{name}: {n} differs from the small batch's, repeated");
        }
    }
}

/// A copy of a case's model directory with its model file replaced.
fn with_model_file(case: &str, file: &str, bytes: &[u8], tmp: &Path) -> PathBuf {
    edited_model("sklearn", case, file, tmp, |_| bytes.to_vec())
}

/// The bytes of a zoo case's pickled model.
fn zoo_pickle(case: &str) -> Vec<u8> {
    std::fs::read(models().join(format!("sklearn/{case}/model/model.pkl"))).unwrap()
}

#[test]
fn hostile_pickles_are_refused_by_name_and_nothing_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("ran");
    let dir = with_model_file("random_forest_pickle", "model.pkl", &shell_pickle(&marker), tmp.path());
    let e = load_error(&dir);
    assert!(e.contains("posix.system") && e.contains("model.pkl") && e.contains("never runs"), "{e}");
    assert!(!marker.exists(), "the pickle's command ran");

    let original = zoo_pickle("random_forest_pickle");
    // A class outside scikit-learn: the estimator's module renamed.
    let text = original.clone();
    let at = text.windows(7).position(|w| w == b"sklearn").unwrap();
    let mut other = text.clone();
    other[at..at + 7].copy_from_slice(b"mymodel");
    let e = load_error(&with_model_file("random_forest_pickle", "model.pkl", &other, tmp.path()));
    assert!(e.contains("mymodel") && e.contains("outside scikit-learn"), "{e}");

    // Truncated at every tenth of the file: an error naming the file.
    for k in 1..10 {
        let cut = &original[..original.len() * k / 10];
        let e = load_error(&with_model_file("random_forest_pickle", "model.pkl", cut, tmp.path()));
        assert!(e.contains("model.pkl"), "{e}");
    }

    // A declared length far past the end of the file (BINBYTES8 of 2^60 bytes).
    let huge = b"\x80\x04\x8e\x00\x00\x00\x00\x00\x00\x00\x10.";
    let e = load_error(&with_model_file("random_forest_pickle", "model.pkl", huge, tmp.path()));
    assert!(e.contains("truncated"), "{e}");
}

/// A search fitted with `refit=False` keeps no `best_estimator_`: refused, naming the search
/// and what to do (the zoo's pickled GridSearchCV, that attribute's name changed).
#[test]
fn a_search_without_its_best_estimator_is_refused_with_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let case = "grid_search_pipeline_pickle";
    let bytes = replace_bytes(zoo_pickle(case), b"best_estimator_", b"best_estimatorX");
    let e = load_error(&with_model_file(case, "model.pkl", &bytes, tmp.path()));
    assert!(
        e.contains("model.pkl") && e.contains("GridSearchCV without best_estimator_") && e.contains("refit=True"),
        "{e}"
    );
}

#[test]
fn a_damaged_xgboost_snapshot_in_a_pipeline_is_an_error_naming_the_file_and_the_step() {
    let tmp = tempfile::tempdir().unwrap();
    let case = "pipeline_onehot_xgboost_pickle";
    let original = zoo_pickle(case);
    // The UBJSON snapshot inside the pickle opens an object whose first key is "Config".
    let head = b"{L\x00\x00\x00\x00\x00\x00\x00\x06Config";
    let at = original.windows(head.len()).position(|w| w == head).expect("a snapshot in the pickle");
    // Not an object any more.
    let mut bytes = original.clone();
    bytes[at] = b'[';
    let e = load_error(&with_model_file(case, "model.pkl", &bytes, tmp.path()));
    assert!(
        e.contains("model.pkl") && e.contains("XGBClassifier") && e.contains("not an XGBoost UBJSON snapshot"),
        "{e}"
    );
    // A key's declared length past the snapshot's end.
    let mut bytes = original.clone();
    bytes[at + 2..at + 10].copy_from_slice(&(1u64 << 40).to_be_bytes());
    let e = load_error(&with_model_file(case, "model.pkl", &bytes, tmp.path()));
    assert!(e.contains("model.pkl") && e.contains("XGBClassifier"), "{e}");
}

#[test]
fn an_out_of_range_tree_index_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bytes = zoo_pickle("decision_tree_nan");
    // The root's right child, 8 bytes after its left child (1, as <i8) at the start of the nodes
    // array, which follows the structured dtype that names its last field.
    let field = b"missing_go_to_left";
    let dtype_end = bytes.windows(field.len()).rposition(|w| w == field).unwrap();
    let at = dtype_end + bytes[dtype_end..].windows(8).position(|w| w == 1i64.to_le_bytes()).unwrap();
    bytes[at + 8..at + 16].copy_from_slice(&1_000_000i64.to_le_bytes());
    let e = load_error(&with_model_file("decision_tree_nan", "model.pkl", &bytes, tmp.path()));
    assert!(e.contains("model.pkl") && (e.contains("child") || e.contains("node")), "{e}");
}

#[test]
fn a_clipping_range_that_does_not_go_up_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let case = "minmax_clip_ridge";
    let mut bytes = zoo_pickle(case);
    // feature_range=(-1.5, 2.5), two BINFLOATs after the key: swapped, (2.5, -1.5).
    let key = b"feature_range";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len();
    let lo = bytes[at..].windows(9).position(|w| w == [&b"G"[..], &(-1.5f64).to_be_bytes()].concat()).unwrap() + at;
    assert_eq!(bytes[lo + 9..lo + 18], [&b"G"[..], &2.5f64.to_be_bytes()].concat()[..]);
    bytes[lo + 1..lo + 9].copy_from_slice(&2.5f64.to_be_bytes());
    bytes[lo + 10..lo + 18].copy_from_slice(&(-1.5f64).to_be_bytes());
    let e = load_error(&with_model_file(case, "model.pkl", &bytes, tmp.path()));
    assert!(e.contains("model.pkl") && e.contains("feature_range (2.5, -1.5)"), "{e}");
}

#[test]
fn a_histgradientboosting_preprocessor_with_another_function_is_refused() {
    // The preprocessor's numeric step is partial(check_array): another function there is code
    // mlscore does not run (functools.partial is read as a name, never called).
    let tmp = tempfile::tempdir().unwrap();
    let case = "hist_gradient_boosting_categorical";
    let mut bytes = zoo_pickle(case);
    let name = b"check_array";
    let at = bytes.windows(name.len()).position(|w| w == name).expect("check_array in the pickle");
    bytes[at + name.len() - 1] = b'z';
    let e = load_error(&with_model_file(case, "model.pkl", &bytes, tmp.path()));
    assert!(e.contains("model.pkl") && e.contains("preprocessor") && e.contains("numerical"), "{e}");
}

/// Mutants that `scripts/fuzz-objects` once found a panic with
/// (`fuzz/regressions/sklearn-objects/<case>/<file>`, the case's model file replaced by it):
/// each loads and scores the case's test table, or is an error; none panics.
#[test]
fn estimator_mutants_that_once_panicked_are_errors_or_models() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/sklearn-objects");
    let tmp = tempfile::tempdir().unwrap();
    let mut replayed = 0;
    for case in std::fs::read_dir(&root).unwrap().flatten() {
        let case = case.file_name().to_string_lossy().into_owned();
        for file in std::fs::read_dir(root.join(&case)).unwrap().flatten() {
            let path = file.path();
            let name = if path.extension().is_some_and(|e| e == "skops") { "model.skops" } else { "model.pkl" };
            let dir = with_model_file(&case, name, &std::fs::read(&path).unwrap(), tmp.path());
            let input = read_parquet(&models().join(format!("sklearn/{case}/input.parquet")));
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                mlscore::load(dir.to_str().unwrap()).map(|m| predict_batch(m.as_ref(), &input, NullPolicy::Nan).is_ok())
            }));
            assert!(outcome.is_ok(), "{} panicked", path.display());
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no mutants under {}", root.display());
}

#[test]
fn unknown_categories_are_an_error_only_where_scikit_learn_refuses_them() {
    // handle_unknown="ignore": the unseen city scores (its golden has it).
    let dir = models().join("sklearn/pipeline_onehot_logreg_skops");
    let model = mlscore::load(dir.join("model").to_str().unwrap()).unwrap();
    let input = read_parquet(&dir.join("input.parquet"));
    let cities = texts(column(&input, "city").as_ref());
    assert!(cities.iter().any(|c| c == "brest"), "the test table has no unseen city");
    predict_batch(model.as_ref(), &input, NullPolicy::Nan).unwrap();
}

#[test]
fn cli_scores_a_pickled_pipeline_and_inspect_names_its_format() {
    let dir = models().join("sklearn/pipeline_onehot_logreg_cloudpickle");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.parquet");
    let mut cmd = mlscore();
    cmd.args(["score", "--model"])
        .arg(dir.join("model"))
        .arg("--input")
        .arg(dir.join("input.parquet"))
        .arg("--output")
        .arg(&out)
        .args(["--on-null", "nan"]);
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let scored = read_parquet(&out);
    let golden = read_parquet(&dir.join("golden.parquet"));
    let pred = column(&scored, "prediction");
    assert_eq!(texts(pred.as_ref()), texts(column(&golden, "prediction").as_ref()));

    let mut cmd = mlscore();
    cmd.args(["inspect"]).arg(dir.join("model"));
    let o = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && text.contains("ColumnTransformer -> LogisticRegression (cloudpickle, read as data)"),
        "{text}"
    );
    assert!(text.contains("string nulls NaN (the model's environment pins pandas 3)"), "{text}");
    // A model of scikit-learn 1.1, whose environment files pin no pandas: pandas 1-2's None.
    let mut cmd = mlscore();
    cmd.args(["inspect"]).arg(models().join("sklearn-1.1/pipeline_string_imputer/model"));
    let o = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    let want = "string nulls None, not imputed as NaN (written by scikit-learn 1.1.3, before pandas 3)";
    assert!(o.status.success() && text.contains(want), "{text}");
    // A meta-estimator is named with its members, equal neighbours counted.
    for (case, want) in [
        (
            "voting_soft_weighted_pickle",
            "VotingClassifier[Pipeline(StandardScaler -> LogisticRegression), RandomForestClassifier, GaussianNB]",
        ),
        ("bagging_trees", "BaggingClassifier[DecisionTreeClassifier x10]"),
        (
            "stacking_classifier",
            "StackingClassifier[RandomForestClassifier, Pipeline(StandardScaler -> LinearSVC), final LogisticRegression]",
        ),
    ] {
        let mut cmd = mlscore();
        cmd.args(["inspect"]).arg(models().join("sklearn").join(case).join("model"));
        let o = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success() && text.contains(want), "{case}: {text}");
    }
}

/// Seeded mutations of real model files (pickle, cloudpickle, skops): each loads and scores or
/// is an error; none panics. (`MLSCORE_FUZZ_ROUNDS` runs more rounds outside CI.)
#[test]
fn mutated_sklearn_files_are_errors_or_models_never_panics() {
    let cases = [
        ("decision_tree_nan", "model.pkl"),
        ("gradient_boosting_multiclass", "model.pkl"),
        ("hist_gradient_boosting", "model.pkl"),
        ("pipeline_onehot_logreg_cloudpickle", "model.pkl"),
        ("pipeline_onehot_infrequent", "model.pkl"),
        ("pipeline_onehot_logreg_skops", "model.skops"),
        ("mlp_regressor", "model.skops"),
        ("random_forest_skops", "model.skops"),
        // An XGBoost snapshot (UBJSON) and a LightGBM text model inside the files.
        ("pipeline_onehot_xgboost_pickle", "model.pkl"),
        ("pipeline_lightgbm_strings_skops", "model.skops"),
        // HistGradientBoosting's own preprocessor (an OrdinalEncoder and partial(check_array)).
        ("hist_gradient_boosting_categorical", "model.pkl"),
        ("hist_gradient_boosting_categorical_regressor", "model.skops"),
    ];
    // Opcodes and small integers: memo reads (h), marks, stops, BININT1 (K), 0, 1, -1.
    let outcomes = mutation_loop("sklearn", &cases, b"\x00\x01\xff\x7fKh.(", 0x9e37_79b9_7f4a_7c15, 100);
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "scored / errors: {outcomes:?}");
}

/// `batch` with `value` at `row` of its float64 column `column`.
fn with_value(
    batch: &arrow::record_batch::RecordBatch,
    column: &str,
    row: usize,
    value: f64,
) -> arrow::record_batch::RecordBatch {
    let j = batch.schema().index_of(column).unwrap();
    let mut values: Vec<Option<f64>> = batch.column(j).as_primitive::<arrow::datatypes::Float64Type>().iter().collect();
    values[row] = Some(value);
    let mut columns = batch.columns().to_vec();
    columns[j] = std::sync::Arc::new(arrow::array::Float64Array::from(values));
    arrow::record_batch::RecordBatch::try_new(batch.schema(), columns).unwrap()
}

/// NaN, infinities and a value past float32 are refused where scikit-learn refuses them and
/// scored where it scores them, release by release: `models/sklearn_finite.py` put each into row
/// 3 of every case's first float64 column and recorded whether MLflow's pyfunc raised (the
/// scalers, imputers and encoders take NaN but no infinity; trees take NaN from certain releases
/// on, and nothing float32 cannot hold; HistGradientBoosting, XGBoost and LightGBM take anything).
#[test]
fn nan_and_infinities_are_refused_exactly_where_scikit_learn_refuses_them() {
    let mut failures = Vec::new();
    for family in ["sklearn", "sklearn-1.1", "sklearn-1.3"] {
        let text = std::fs::read_to_string(models().join(family).join("finite.json")).unwrap();
        let entries: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        assert!(entries.len() >= 4 * 30, "models/{family}/finite.json lists {} entries", entries.len());
        let mut loaded: Option<(String, std::sync::Arc<dyn mlscore::Scorer>, arrow::record_batch::RecordBatch)> = None;
        for e in &entries {
            let case = e["case"].as_str().unwrap();
            if loaded.as_ref().is_none_or(|(c, _, _)| c != case) {
                let dir = models().join(family).join(case);
                let model = mlscore::load(dir.join("model").to_str().unwrap()).unwrap();
                loaded = Some((case.to_string(), model, read_parquet(&dir.join("input.parquet"))));
            }
            let (_, model, input) = loaded.as_ref().unwrap();
            let label = e["value"].as_str().unwrap();
            let value: f64 = if label == "nan" { f64::NAN } else { label.parse().unwrap() };
            let row = e["row"].as_u64().unwrap() as usize;
            let table = with_value(input, e["column"].as_str().unwrap(), row, value);
            let what = format!("{family}/{case} with {label} in row {row} of {}", e["column"]);
            match (predict_batch(model.as_ref(), &table, NullPolicy::Nan), e["raises"].as_str()) {
                (Ok(_), None) | (Err(_), Some(_)) => {}
                (Ok(_), Some(r)) => failures.push(format!("{what}: scikit-learn raises ({r}), mlscore scores it")),
                (Err(err), None) => failures.push(format!("{what}: scikit-learn scores it, mlscore refuses: {err}")),
            }
        }
    }
    assert!(failures.is_empty(), "{} disagreements:\n{}", failures.len(), failures.join("\n"));
}
