//! The `mlscore` Python package (crates/mlscore-python): the extension module this build made,
//! laid out as the wheel lays it out, checked by tests/python/spark_check.py on local PySpark
//! against MLflow's own spark_udf and onnxruntime.

use std::process::Command;

use crate::common::*;

/// A package directory: `mlscore/*.py` from the source tree and `mlscore/_native.abi3.so`, the
/// extension module `cargo build --workspace` (scripts/test) built beside the CLI.
fn assembled_package(dir: &std::path::Path) -> std::path::PathBuf {
    let built =
        binary().with_file_name(format!("{}_native{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX));
    assert!(
        built.is_file(),
        "{} is missing: scripts/test builds it (cargo build --workspace), or run cargo build -p mlscore-python",
        built.display()
    );
    let sources = repo().join("crates/mlscore-python/src/lib.rs");
    let stale = std::fs::metadata(&sources).unwrap().modified().unwrap()
        > std::fs::metadata(&built).unwrap().modified().unwrap();
    assert!(!stale, "{} is older than {}: rebuild it with scripts/test", built.display(), sources.display());
    let package = dir.join("mlscore");
    std::fs::create_dir_all(&package).unwrap();
    for e in std::fs::read_dir(repo().join("crates/mlscore-python/python/mlscore")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "py") {
            std::fs::copy(&p, package.join(p.file_name().unwrap())).unwrap();
        }
    }
    std::os::unix::fs::symlink(&built, package.join("_native.abi3.so")).unwrap();
    dir.to_path_buf()
}

#[test]
fn the_python_package_scores_on_spark_like_mlflow_spark_udf_and_onnxruntime() {
    let dir = tempfile::tempdir().unwrap();
    let path = assembled_package(&dir.path().join("pkg"));
    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let out = Command::new(repo().join("scripts/python-env"))
        .arg(repo().join("tests/python/spark_check.py"))
        .arg(repo())
        .arg(&scratch)
        .env("PYTHONPATH", &path)
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
