//! XGBoost and LightGBM models logged by MLflow (models/gbdt.py), scored by mlscore's own reader
//! and tree kernel, compared with what the libraries gave on the same rows: pyfunc's prediction
//! (type and values), the raw margins, a classifier's probabilities. Labels exactly, scores within
//! 1e-6 relative. Then crafted and unsupported files: each an error naming the file, never a panic.

use std::path::{Path, PathBuf};

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::DataType;
use mlscore::core::predict_batch;
use mlscore::{NullPolicy, ResultType};

use crate::common::*;

/// The cases of `models/<family>/cases.json`: `gbdt` (today's libraries), `xgboost-1.7`,
/// `xgboost-2.0` or `lightgbm-3.3`.
fn cases_of(family: &str) -> Vec<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(models().join(family).join("cases.json")).unwrap()).unwrap()
}

fn cases() -> Vec<serde_json::Value> {
    cases_of("gbdt")
}

fn close(got: &[f64], want: &[f64], what: &str) -> Result<(), String> {
    close_to(got, want, 1e-6, 1e-2, what)
}

fn rows(a: &dyn Array) -> Vec<Vec<f64>> {
    value_rows(a)
}

fn output<'a>(outputs: &'a [(String, ArrayRef)], name: &str) -> Result<&'a ArrayRef, String> {
    outputs.iter().find(|(n, _)| n == name).map(|(_, a)| a).ok_or_else(|| format!("no output '{name}'"))
}

fn run_case(case: &serde_json::Value) -> Result<(), String> {
    run_family_case("gbdt", case)
}

fn run_family_case(family: &str, case: &serde_json::Value) -> Result<(), String> {
    let name = case["case"].as_str().unwrap();
    let err = |e: String| format!("{family}/{name}: {e}");
    // What pyfunc returns, through the default result type: its type and its values.
    let ScoredCase { model, input, golden, outputs, pyfunc: got } = score_case(family, name, err)?;
    let outputs = &outputs;
    let want = column(&golden, "prediction");
    match want.data_type() {
        // Labels: XGBoost's 0..K-1, a LightGBM classifier's own (strings, booleans, integers).
        DataType::Int64 | DataType::Boolean | DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            same_labels(got.as_ref(), want.as_ref()).map_err(err)?
        }
        DataType::List(_) => {
            close(&rows(got.as_ref()).concat(), &rows(want.as_ref()).concat(), &err("prediction".into()))?
        }
        t => {
            if got.data_type() != t {
                return Err(err(format!("prediction is {}, pyfunc gives {t}", got.data_type())));
            }
            close(&floats(got.as_ref()), &floats(want.as_ref()), &err("prediction".into()))?
        }
    }
    let margin = output(outputs, "margin").map_err(err)?;
    close(&rows(margin.as_ref()).concat(), &rows(column(&golden, "margin").as_ref()).concat(), &err("margin".into()))?;
    if golden.schema().index_of("proba").is_ok() {
        let proba = output(outputs, "probabilities").map_err(err)?;
        close(&rows(proba.as_ref()).concat(), &rows(column(&golden, "proba").as_ref()).concat(), &err("proba".into()))?;
        // Label and probabilities together, by name.
        let spark = ResultType::from_arrow(want.data_type()).expect("labels have a Spark type");
        let both = ResultType::parse(&format!("struct<label:{spark},probabilities:array<double>>")).unwrap();
        let s = model.convert(&both, outputs).map_err(|e| err(e.to_string()))?;
        let s = s.as_struct();
        if texts(s.column(0).as_ref()) != texts(want.as_ref()) || s.column(1).len() != input.num_rows() {
            return Err(err("the label/probabilities struct differs from the outputs".into()));
        }
    }
    Ok(())
}

#[test]
fn every_xgboost_and_lightgbm_model_scores_like_its_library() {
    let cases = cases();
    assert!(cases.len() >= 40, "models/gbdt lists {} cases", cases.len());
    for lib in ["xgboost", "lightgbm"] {
        assert!(cases.iter().filter(|c| c["library"] == lib).count() >= 15, "too few {lib} cases");
    }
    // LightGBM's scikit-learn API classes, in each of MLflow's serialization formats.
    for f in ["skops", "pickle", "cloudpickle"] {
        assert!(cases.iter().filter(|c| c["serialization_format"] == f).count() >= 2, "too few {f} cases");
    }
    let failures: Vec<String> = cases.iter().filter_map(|c| run_case(c).err()).collect();
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// Models of older libraries, logged by MLflow 2 (models/gbdt_legacy.py): `mlflow.xgboost` models
/// of xgboost 1.7.6 (Databricks Runtime ML 13.3 LTS's) and 2.0.3, `model.xgb` in XGBoost's binary
/// format before 2.1 (which xgboost itself no longer reads since 3.1; 2.0's with an intercept
/// estimated from the data, a multiclass Booster and a forest of 4 trees a round), and
/// `mlflow.lightgbm` models of lightgbm 3.3.5 (text format `version=v3`, scikit-learn API classes
/// pickled). Scored like those releases' pyfunc.
#[test]
fn xgboost_1_7_and_2_0_and_lightgbm_3_3_models_score_like_their_releases() {
    let mut families = Vec::new();
    for (family, at_least) in [("xgboost-1.7", 5), ("xgboost-2.0", 7)] {
        let cases = cases_of(family);
        assert!(cases.len() >= at_least, "models/{family} lists {} cases", cases.len());
        for c in &cases {
            let file = models().join(family).join(c["case"].as_str().unwrap()).join("model/model.xgb");
            assert!(
                std::fs::read(&file).unwrap().starts_with(b"binf"),
                "{} is not in the legacy format",
                file.display()
            );
        }
        families.push((family, cases));
    }
    let lgb = cases_of("lightgbm-3.3");
    assert!(lgb.len() >= 4, "models/lightgbm-3.3 lists {} cases", lgb.len());
    families.push(("lightgbm-3.3", lgb));
    let failures: Vec<String> = families
        .iter()
        .flat_map(|(family, cases)| cases.iter().filter_map(|c| run_family_case(family, c).err()))
        .collect();
    assert!(failures.is_empty(), "{} cases differ:\n{}", failures.len(), failures.join("\n"));
}

/// A copy of a case's model directory, with its model file changed by `edit`.
fn edited(case: &str, file: &str, tmp: &Path, edit: impl FnOnce(Vec<u8>) -> Vec<u8>) -> PathBuf {
    edited_model("gbdt", case, file, tmp, edit)
}

fn replace_once(bytes: Vec<u8>, from: &str, to: &str) -> Vec<u8> {
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.contains(from), "'{from}' not in the file");
    text.replacen(from, to, 1).into_bytes()
}

#[test]
fn crafted_and_unsupported_model_files_are_errors_that_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let cases: Vec<(PathBuf, &str, &str)> = vec![
        (edited("xgb_binary_logistic", "model.ubj", t, |b| b[..b.len() / 2].to_vec()), "model.ubj", "truncated"),
        (
            edited("xgb_binary_logistic_json", "model.json", t, |b| {
                replace_once(b, "\"left_children\":[1,", "\"left_children\":[99999,")
            }),
            "model.json",
            "left child 99999 is out of range",
        ),
        (
            edited("xgb_squarederror", "model.ubj", t, |_| b"\x00\x00\x00\x01binf\x00\x00\x00\x00".to_vec()),
            "model.ubj",
            "legacy binary model: the learner's parameters (136 bytes at offset 0) runs past the end",
        ),
        (
            edited("lgb_multiclass", "model.lgb", t, |b| {
                replace_once(b, "num_tree_per_iteration=4", "num_tree_per_iteration=3")
            }),
            "model.lgb",
            "not a whole number of iterations",
        ),
        (
            edited("lgb_binary", "model.lgb", t, |b| replace_once(b, "left_child=1 ", "left_child=40 ")),
            "model.lgb",
            "out of range",
        ),
        (
            edited("lgb_binary", "MLmodel", t, |b| {
                replace_once(b, "model_class: lightgbm.basic.Booster", "model_class: lightgbm.sklearn.LGBMClassifier")
            }),
            "model.lgb",
            "skops or pickle files",
        ),
        // The scikit-learn API classes: their text model inside a pickle (an edit of the same
        // length), and an MLmodel whose class is not the file's.
        (
            edited("lgb_classifier_multiclass_pickle", "model.pkl", t, |b| {
                replace_bytes(b, b"num_tree_per_iteration=4", b"num_tree_per_iteration=3")
            }),
            "model.pkl",
            "not a whole number of iterations",
        ),
        (
            edited("lgb_regressor_pickle", "MLmodel", t, |b| {
                replace_once(
                    b,
                    "model_class: lightgbm.sklearn.LGBMRegressor",
                    "model_class: lightgbm.sklearn.LGBMClassifier",
                )
            }),
            "model.pkl",
            "but the file holds lightgbm.sklearn.LGBMRegressor",
        ),
    ];
    for (dir, file, want) in cases {
        let e = load_error(&dir);
        assert!(e.contains(file) && e.contains(want), "{}: {e}", dir.display());
    }
    // The tree-to-class map must agree with num_class: a tree credited to class 7 of 4.
    let json = edited("xgb_binary_logistic_json", "model.json", t, |b| {
        replace_once(b, "\"tree_info\":[0,", "\"tree_info\":[7,")
    });
    let e = load_error(&json);
    assert!(e.contains("output group 7") && e.contains("model.json"), "{e}");
}

#[test]
fn a_lightgbm_pickle_that_would_run_a_command_is_refused_by_name_and_nothing_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("ran");
    let dir = edited("lgb_classifier_multiclass_pickle", "model.pkl", tmp.path(), |_| shell_pickle(&marker));
    let e = load_error(&dir);
    assert!(e.contains("posix.system") && e.contains("model.pkl") && e.contains("never runs"), "{e}");
    assert!(!marker.exists(), "the pickle's command ran");
}

#[test]
fn a_classifier_scores_from_the_cli_as_labels_or_labels_with_probabilities() {
    let dir = models().join("gbdt/xgb_classifier_binary");
    let out = tempfile::tempdir().unwrap();
    let labels = out.path().join("labels.parquet");
    let both = out.path().join("both.parquet");
    for (path, extra) in [
        (&labels, vec![]),
        (&both, vec!["--result-type", "struct<label:bigint,probabilities:array<double>,margin:double>"]),
    ] {
        let mut cmd = mlscore();
        cmd.args(["score", "--model"])
            .arg(dir.join("model"))
            .arg("--input")
            .arg(dir.join("input.parquet"))
            .arg("--output")
            .arg(path)
            .args(["--on-null", "nan"])
            .args(extra);
        run(&mut cmd, true);
    }
    let golden = read_parquet(&dir.join("golden.parquet"));
    let labels = read_parquet(&labels);
    assert_eq!(column(&labels, "prediction").data_type(), &DataType::Int64);
    assert_same(&ints(column(&labels, "prediction").as_ref()), &ints(column(&golden, "prediction").as_ref()), "labels");
    let both = read_parquet(&both);
    let s = column(&both, "prediction");
    let s = s.as_struct();
    assert_same(&ints(s.column(0).as_ref()), &ints(column(&golden, "prediction").as_ref()), "struct labels");
    let margins = floats(s.column(2).as_ref());
    let want: Vec<f64> = rows(column(&golden, "margin").as_ref()).concat();
    close(&margins, &want, "struct margins").unwrap();
}

/// Categorical features are re-coded by name from the categories the model stores, whatever
/// the column's encoding (the parquet file holds dictionaries; plain strings score the same).
/// A category XGBoost never saw is an error naming it, as in XGBoost; codes given as numbers
/// for a feature whose categories are names are refused at bind time.
#[test]
fn categories_are_read_by_name_and_unseen_ones_are_refused_by_xgboost() {
    use arrow::array::{Int64Array, StringArray};
    let dir = models().join("gbdt/xgb_categorical");
    let model = mlscore::load(dir.join("model").to_str().unwrap()).unwrap();
    let input = read_parquet(&dir.join("input.parquet"));
    let golden = read_parquet(&dir.join("golden.parquet"));
    let city = column(&input, "city");
    assert!(matches!(city.data_type(), DataType::Dictionary(..)), "{}", city.data_type());
    let plain = arrow::compute::cast(&city, &DataType::Utf8).unwrap();
    let as_strings = replace(input.clone(), "city", plain.clone());
    let p = predict_batch(model.as_ref(), &as_strings, NullPolicy::Nan).unwrap();
    let got = floats(output(&p.outputs, "prediction").unwrap().as_ref());
    close(&got, &floats(column(&golden, "prediction").as_ref()), "plain strings").unwrap();

    let mut values: Vec<Option<String>> = plain.as_string::<i32>().iter().map(|v| v.map(str::to_string)).collect();
    values[7] = Some("rome".into());
    let unseen = replace(input.clone(), "city", std::sync::Arc::new(StringArray::from(values)));
    let e = predict_batch(model.as_ref(), &unseen, NullPolicy::Nan).unwrap_err().to_string();
    assert!(e.contains("'city'") && e.contains("'rome'") && e.contains("'paris'"), "{e}");

    let codes = replace(input, "city", std::sync::Arc::new(Int64Array::from(vec![1i64; 300])));
    let e = predict_batch(model.as_ref(), &codes, NullPolicy::Nan).unwrap_err().to_string();
    // The signature says string: MLflow's type check refuses the codes before the model sees them.
    assert!(e.contains("'city'") && e.contains("int64 to string"), "{e}");
}

/// A seeded mutation loop over real model files (UBJSON, JSON, LightGBM text): bytes flipped,
/// digits changed, spans cut or repeated. Every mutant either loads and scores the case's rows,
/// or is an error; none panics. (`MLSCORE_FUZZ_ROUNDS` runs more rounds outside CI.)
#[test]
fn mutated_model_files_are_errors_or_models_never_panics() {
    let cases = [
        ("xgb_classifier_early_stopped", "model.ubj"),
        ("xgb_binary_logistic_json", "model.json"),
        ("xgb_categorical", "model.ubj"),
        ("lgb_multiclass", "model.lgb"),
        ("lgb_categorical", "model.lgb"),
        ("lgb_classifier_multiclass_pickle", "model.pkl"),
    ];
    let outcomes = mutation_loop("gbdt", &cases, b"0123456789-.e", 0x2545_f491_4f6c_dd1d, 150);
    // Both outcomes occur: the mutations reach the readers' checks and past them.
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "scored / errors: {outcomes:?}");
}

/// `mlscore inspect` says how many trees are scored (an early-stopped classifier: those up to its
/// best iteration) and lists every output, the ones reachable only by name marked.
#[test]
fn inspect_shows_the_trees_scored_and_every_output() {
    let case = &cases().into_iter().find(|c| c["case"] == "xgb_classifier_early_stopped").unwrap();
    let best = case["best_iteration"].as_u64().unwrap();
    let mut cmd = mlscore();
    cmd.args(["inspect", "--json"]).arg(models().join("gbdt/xgb_classifier_early_stopped/model"));
    let out = run(&mut cmd, true);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["format"], "xgboost");
    assert_eq!(v["trees"].as_u64(), Some(best + 1), "{v}");
    let outputs: Vec<(String, bool)> = v["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["name"].as_str().unwrap().to_string(), o["pyfunc"].as_bool().unwrap()))
        .collect();
    let want = [("label", true), ("probabilities", false), ("margin", false)].map(|(n, p)| (n.to_string(), p));
    assert_eq!(outputs, want);
    assert_eq!(v["default_result_type"], "bigint");

    // A LightGBM scikit-learn API classifier: its class and serialization, its labels' type, and
    // the trees up to the booster's best iteration.
    let case = &cases().into_iter().find(|c| c["case"] == "lgb_classifier_best_iteration_skops").unwrap();
    let mut cmd = mlscore();
    cmd.args(["inspect"]).arg(models().join("gbdt/lgb_classifier_best_iteration_skops/model"));
    let text = String::from_utf8(run(&mut cmd, true).stdout).unwrap();
    let best = case["best_iteration"].as_u64().unwrap();
    for line in ["estimator    LGBMClassifier (skops, read as data)", &format!("trees        {best} (scored)")] {
        assert!(text.contains(line), "no '{line}' in:\n{text}");
    }
}

/// The same loop over the `MLmodel` files (YAML, with the signature as embedded JSON): every
/// mutant is a model or an error, never a panic.
#[test]
fn mutated_mlmodel_files_are_errors_or_models_never_panics() {
    let cases = [("lgb_binary", "MLmodel"), ("xgb_categorical", "MLmodel")];
    let outcomes = mutation_loop("gbdt", &cases, b" :-\n\"'[]{}#&*!|>%@`,", 0x6a09_e667_f3bc_c908, 120);
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "scored / errors: {outcomes:?}");
}
