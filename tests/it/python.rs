//! The `mlscore` Python package: the wheel maturin built from crates/mlscore-python (scripts/test
//! builds it into `<target>/wheels`), installed with pip and checked by
//! tests/python/spark_check.py on local PySpark, classic and Spark Connect, against MLflow's own
//! spark_udf and onnxruntime.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use crate::common::*;
use crate::servers::servers_installed;

/// The newest modification time of the files under `dir`.
fn newest(dir: &Path) -> SystemTime {
    let mut latest = SystemTime::UNIX_EPOCH;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let t =
            if e.file_type().unwrap().is_dir() { newest(&e.path()) } else { e.metadata().unwrap().modified().unwrap() };
        latest = latest.max(t);
    }
    latest
}

/// The wheel scripts/test built, refused when a source it is built from is newer.
fn built_wheel() -> PathBuf {
    let wheels = binary().parent().and_then(Path::parent).unwrap().join("wheels");
    let wheel = std::fs::read_dir(&wheels)
        .into_iter()
        .flatten()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name().unwrap().to_string_lossy().starts_with("mlscore-")
                && p.extension().is_some_and(|x| x == "whl")
        })
        .max_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
    let Some(wheel) = wheel else {
        panic!("no mlscore wheel in {}: scripts/test builds it (maturin build --profile dev)", wheels.display())
    };
    let built = std::fs::metadata(&wheel).unwrap().modified().unwrap();
    for sources in ["crates/mlscore-python", "crates/mlscore-onnx/src", "crates/mlscore-mlflow/src"] {
        assert!(
            newest(&repo().join(sources)) <= built,
            "{} is older than {sources}: rebuild it with scripts/test",
            wheel.display()
        );
    }
    wheel
}

/// The built wheel installed into `<dir>/site` (for PYTHONPATH), with the project venv's pip, so
/// that the wheel's tags are checked against the interpreter that runs it.
pub(crate) fn install_wheel(dir: &Path) -> PathBuf {
    let site = dir.join("site");
    let install = Command::new(repo().join("scripts/python-env"))
        .args(["-m", "pip", "install", "--quiet", "--no-deps", "--disable-pip-version-check", "--target"])
        .arg(&site)
        .arg(built_wheel())
        .output()
        .unwrap();
    assert!(install.status.success(), "pip install failed:\n{}", String::from_utf8_lossy(&install.stderr));
    site
}

#[test]
fn the_python_wheel_scores_on_spark_like_mlflow_spark_udf_and_onnxruntime() {
    if !servers_installed("the_python_wheel_scores_on_spark_like_mlflow_spark_udf_and_onnxruntime") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let site = install_wheel(dir.path());
    let python = repo().join("scripts/python-env");
    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let out = Command::new(&python)
        .arg(repo().join("tests/python/spark_check.py"))
        .arg(repo())
        .arg(&scratch)
        .env("PYTHONPATH", &site)
        .env_remove("MLFLOW_TRACKING_URI")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("all checks passed"),
        "spark_check.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
