//! Model URIs resolved against stores MLflow 3.17 wrote: a sqlite database and a mlruns/ directory.

use std::path::Path;

use crate::common::*;

/// `mlscore inspect --json` of a URI with the given tracking URI (and working directory).
fn inspect(uri: &str, tracking: Option<&str>, cwd: Option<&Path>) -> serde_json::Value {
    let mut cmd = mlscore();
    cmd.args(["inspect", "--json", uri]);
    if let Some(t) = tracking {
        cmd.env("MLFLOW_TRACKING_URI", t);
    }
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let out = run(&mut cmd, true);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn version_of(v: &serde_json::Value) -> (String, u64) {
    let r = &v["resolved"]["registered_model"];
    (r["name"].as_str().unwrap().to_string(), r["version"].as_u64().unwrap())
}

#[test]
fn every_models_uri_form_resolves_in_the_sqlite_store() {
    let store = sqlite_store();
    let m = manifest();
    for (uri, want) in [
        ("models:/churn/1", ("churn", 1)),
        ("models:/churn/2", ("churn", 2)),
        ("models:/churn/latest", ("churn", 2)),
        ("models:/churn/production", ("churn", 1)),
        ("models:/churn@champion", ("churn", 2)),
        ("models:/churn@challenger", ("churn", 1)),
        ("models:/segment@champion", ("segment", 1)),
    ] {
        let v = inspect(uri, Some(&store), None);
        assert_eq!(version_of(&v), (want.0.to_string(), want.1), "{uri}");
        let key = if want.0 == "churn" { format!("churn_v{}", want.1) } else { want.0.to_string() };
        assert_eq!(v["resolved"]["model_id"], m["models"][&key]["model_id"], "{uri}");
        assert_eq!(v["resolved"]["run_id"], m["models"][&key]["run_id"], "{uri}");
    }
}

#[test]
fn logged_model_ids_and_runs_resolve_in_the_sqlite_store() {
    let store = sqlite_store();
    let info = &manifest()["models"]["spend"];
    let id = info["model_id"].as_str().unwrap();
    let v = inspect(&format!("models:/{id}"), Some(&store), None);
    assert_eq!(v["resolved"]["model_id"].as_str(), Some(id));
    assert!(v["resolved"]["local_path"].as_str().unwrap().ends_with(&format!("{id}/artifacts")));
    // MLflow 3 keeps the model outside the run's artifacts: runs:/ falls back to the run's logged model.
    let v = inspect(&format!("runs:/{}/model", info["run_id"].as_str().unwrap()), Some(&store), None);
    assert_eq!(v["resolved"]["model_id"].as_str(), Some(id));
    assert!(v["resolved"]["steps"].to_string().contains("logged model 'model'"));
}

#[test]
fn the_file_store_resolves_registry_and_runs() {
    let m = manifest();
    let fs = &m["filestore"];
    let root = models().join("filestore/mlruns");
    for tracking in [root.display().to_string(), format!("file://{}", root.display())] {
        let v = inspect("models:/churn@champion", Some(&tracking), None);
        assert_eq!(version_of(&v), ("churn".into(), 1));
        assert_eq!(v["resolved"]["model_id"], fs["model_id"]);
        let v = inspect(&format!("runs:/{}/model", fs["run_id"].as_str().unwrap()), Some(&tracking), None);
        assert_eq!(v["resolved"]["model_id"], fs["model_id"]);
    }
}

#[test]
fn the_default_tracking_uri_is_mlflow_db_in_the_working_directory() {
    let v = inspect("models:/churn@champion", None, Some(&models().join("store")));
    assert_eq!(v["resolved"]["store"], "sqlite:///mlflow.db");
    assert_eq!(version_of(&v), ("churn".into(), 2));
}

#[test]
fn a_moved_store_still_resolves_and_scores() {
    // MLflow records absolute artifact paths; a copied store points at the original location.
    let dir = tempfile::tempdir().unwrap();
    let moved = dir.path().join("elsewhere/store");
    copy_tree(&models().join("store"), &moved);
    let tracking = format!("sqlite:///{}", moved.join("mlflow.db").display());
    let v = inspect("models:/churn@champion", Some(&tracking), None);
    let local = v["resolved"]["local_path"].as_str().unwrap();
    assert!(local.starts_with(&moved.display().to_string()), "{local}");
    let out = dir.path().join("o.parquet");
    let mut cmd = mlscore();
    cmd.env("MLFLOW_TRACKING_URI", &tracking)
        .args(["score", "-m", "models:/churn@champion", "-i"])
        .arg(sample())
        .arg("-o")
        .arg(&out);
    run(&mut cmd, true);
    assert_matches_golden(&read_parquet(&out), "prediction", "churn_v2");
}

#[test]
fn inspect_describes_signature_onnx_io_and_result_types() {
    let mut cmd = mlscore();
    cmd.args(["inspect", "models/churn"]);
    let text = String::from_utf8(run(&mut cmd, true).stdout).unwrap();
    for want in [
        "flavors        onnx, python_function",
        "inputs       age: long, income: double, tenure: integer, balance: double, products: integer, active: boolean",
        "inputs       X tensor(float)[?,6]",
        "outputs      label tensor(int64)[?], probabilities tensor(float)[?,2]",
        "struct<label:bigint,probabilities:array<float>> (mlscore default)",
        "array<bigint> (what spark_udf infers from the signature)",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}
