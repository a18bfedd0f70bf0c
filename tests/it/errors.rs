//! Bad input: each case fails with an error that names the thing, exits non-zero, and leaves no output.

use std::path::{Path, PathBuf};

use arrow::array::StringArray;

use crate::common::*;

/// Runs `score` expecting failure; returns stderr after checking that nothing was written
/// (no output and no temporary files beside it).
fn score_fails(model: &str, input: &Path, env: &[(&str, String)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.parquet");
    let mut cmd = mlscore();
    cmd.args(["score", "--model", model, "--input"]).arg(input).arg("--output").arg(&out);
    // What users see (a developer's RUST_BACKTRACE brings Rust's own panic reports back).
    cmd.env_remove("RUST_BACKTRACE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = run(&mut cmd, false);
    assert_eq!(o.status.code(), Some(1));
    let left: Vec<PathBuf> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(left.is_empty(), "a failed job left files behind: {left:?}");
    stderr(&o)
}

/// A copy of the plain churn model directory that a test may break.
fn churn_copy(dir: &Path) -> PathBuf {
    let to = dir.join("churn");
    std::fs::create_dir(&to).unwrap();
    for e in std::fs::read_dir(models().join("churn")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    to
}

#[test]
fn a_missing_column_is_named_with_the_extra_ones() {
    let dir = tempfile::tempdir().unwrap();
    let input = sample_with(dir.path(), "in.parquet", |b| without(b, "income"));
    let err = score_fails("models/churn", &input, &[]);
    assert!(
        err.contains("missing inputs [\"income\"]") && err.contains("extra inputs") && err.contains("customer_id"),
        "{err}"
    );
}

#[test]
fn a_column_of_the_wrong_type_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let input = sample_with(dir.path(), "in.parquet", |b| {
        let n = b.num_rows();
        replace(b, "income", std::sync::Arc::new(StringArray::from(vec!["12.5"; n])))
    });
    let err = score_fails("models/churn", &input, &[]);
    assert!(err.contains("column 'income'") && err.contains("string to double"), "{err}");
}

#[test]
fn a_corrupt_mlmodel_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let model = churn_copy(dir.path());
    std::fs::write(model.join("MLmodel"), "flavors: [unclosed\n").unwrap();
    let err = score_fails(model.to_str().unwrap(), &sample(), &[]);
    assert!(
        err.contains("invalid MLmodel file") && err.contains(&model.join("MLmodel").display().to_string()),
        "{err}"
    );
}

#[test]
fn a_missing_onnx_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let model = churn_copy(dir.path());
    std::fs::remove_file(model.join("model.onnx")).unwrap();
    let err = score_fails(model.to_str().unwrap(), &sample(), &[]);
    assert!(err.contains("model.onnx") && err.contains("does not exist"), "{err}");
}

#[test]
fn a_corrupt_onnx_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let model = churn_copy(dir.path());
    std::fs::write(model.join("model.onnx"), b"not a protobuf at all").unwrap();
    let err = score_fails(model.to_str().unwrap(), &sample(), &[]);
    assert!(err.contains("cannot load ONNX graph") && err.contains("model.onnx"), "{err}");
}

#[test]
fn a_directory_that_is_not_a_model_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let err = score_fails(dir.path().to_str().unwrap(), &sample(), &[]);
    assert!(err.contains("has no MLmodel file"), "{err}");
}

#[test]
fn an_unknown_uri_scheme_is_named() {
    let err = score_fails("ftp://models.example.com/churn", &sample(), &[]);
    assert!(err.contains("unsupported model URI scheme 'ftp'"), "{err}");
}

#[test]
fn an_unknown_alias_lists_the_aliases_there_are() {
    let err = score_fails("models:/churn@nope", &sample(), &[("MLFLOW_TRACKING_URI", sqlite_store())]);
    assert!(err.contains("has no alias 'nope'") && err.contains("@champion -> version 2"), "{err}");
}

#[test]
fn an_unknown_version_lists_the_versions_there_are() {
    let err = score_fails("models:/churn/7", &sample(), &[("MLFLOW_TRACKING_URI", sqlite_store())]);
    assert!(err.contains("has no version 7") && err.contains("its versions: 1 (Production), 2"), "{err}");
}

#[test]
fn a_missing_store_is_named() {
    let err =
        score_fails("models:/churn/1", &sample(), &[("MLFLOW_TRACKING_URI", "sqlite:////nowhere/mlflow.db".into())]);
    assert!(err.contains("/nowhere/mlflow.db does not exist") && err.contains("MLFLOW_TRACKING_URI"), "{err}");
}

#[test]
fn a_missing_input_is_named() {
    let err = score_fails("models/churn", Path::new("/nowhere/data.parquet"), &[]);
    assert!(err.contains("/nowhere/data.parquet") && err.contains("no such file"), "{err}");
}

#[test]
fn an_existing_output_is_not_replaced_without_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.parquet");
    std::fs::write(&out, b"precious").unwrap();
    let mut cmd = mlscore();
    cmd.args(["score", "-m", "models/churn", "-i"]).arg(sample()).arg("-o").arg(&out);
    let err = stderr(&run(&mut cmd, false));
    assert!(err.contains("already exists") && err.contains("--overwrite"), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
    let mut cmd = mlscore();
    cmd.args(["score", "-m", "models/churn", "-i"]).arg(sample()).arg("-o").arg(&out).arg("--overwrite");
    run(&mut cmd, true);
    assert_eq!(read_parquet(&out).num_rows(), 1000);
}

#[test]
fn a_failure_in_the_middle_of_a_job_leaves_nothing_behind() {
    // The last input file has a null: the first files are scored, then the job fails.
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    for e in std::fs::read_dir(sample()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), inputs.join(e.file_name())).unwrap();
    }
    let last = inputs.join("part-00002.parquet");
    let batch = read_parquet(&last);
    let age = column(&batch, "age");
    let mut values: Vec<Option<i64>> = ints(age.as_ref()).into_iter().map(Some).collect();
    let n = values.len();
    values[n - 1] = None;
    write_parquet(&last, &replace(batch, "age", std::sync::Arc::new(arrow::array::Int64Array::from(values))));
    for out_name in ["out.parquet", "out_dir/"] {
        let out = dir.path().join("o").join(out_name);
        std::fs::create_dir_all(dir.path().join("o")).unwrap();
        let mut cmd = mlscore();
        cmd.args(["score", "-m", "models/churn", "--partitions", "1", "-i"]).arg(&inputs).arg("-o").arg(&out);
        let err = stderr(&run(&mut cmd, false));
        assert!(err.contains("column 'age'") && err.contains("1 null values"), "{err}");
        // Said once, without the wrapper words of the layers it passed through.
        assert_eq!(err.matches("1 null values").count(), 1, "{err}");
        assert!(!err.contains("External error") && !err.contains("caused by"), "{err}");
        let left: Vec<_> = std::fs::read_dir(dir.path().join("o")).unwrap().collect();
        assert!(left.is_empty(), "{out_name}: files left behind: {left:?}");
    }
}

#[test]
fn a_model_of_a_flavor_mlscore_does_not_score_is_refused_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("pt");
    std::fs::create_dir(&model).unwrap();
    std::fs::write(
        model.join("MLmodel"),
        "flavors:\n  python_function: {loader_module: mlflow.pytorch, data: data}\n  pytorch: {pytorch_version: 2.5.0}\n",
    )
    .unwrap();
    let err = score_fails(model.to_str().unwrap(), &sample(), &[]);
    assert!(err.contains("[python_function, pytorch]") && err.contains("export it to ONNX"), "{err}");

    // A scikit-learn flavor whose pickle holds no estimator: the file and what it holds.
    let sk = dir.path().join("sk");
    std::fs::create_dir(&sk).unwrap();
    std::fs::write(
        sk.join("MLmodel"),
        "flavors:\n  python_function: {loader_module: mlflow.sklearn, model_path: model.pkl}\n  sklearn: {pickled_model: model.pkl, serialization_format: cloudpickle}\n",
    )
    .unwrap();
    std::fs::write(sk.join("model.pkl"), b"\x80\x05N.").unwrap();
    let err = score_fails(sk.to_str().unwrap(), &sample(), &[]);
    assert!(err.contains("model.pkl") && err.contains("holds None, not a scikit-learn estimator"), "{err}");
}

/// Starts a scoring job on a table large enough to take a while, kills it with SIGKILL once its
/// staging directory exists, and returns what the kill left beside the target.
#[cfg(unix)]
fn killed_job(dir: &std::path::Path, out_name: &str) -> Vec<std::path::PathBuf> {
    use std::time::{Duration, Instant};
    let input = dir.join("big.parquet");
    if !input.exists() {
        let batch = read_parquet(&sample());
        let big = arrow::compute::concat_batches(&batch.schema(), &vec![batch; 400]).unwrap();
        write_parquet(&input, &big);
    }
    let out = dir.join("o").join(out_name);
    std::fs::create_dir_all(dir.join("o")).unwrap();
    let mut child = mlscore()
        .args(["score", "-q", "-m", "models/churn", "--partitions", "1", "--batch-rows", "512", "-i"])
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .spawn()
        .unwrap();
    let start = Instant::now();
    let staged = || {
        std::fs::read_dir(dir.join("o")).unwrap().flatten().any(|e| e.file_name().to_string_lossy().ends_with(".lock"))
    };
    while !staged() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));
    child.kill().unwrap(); // SIGKILL: no destructor runs
    child.wait().unwrap();
    std::fs::read_dir(dir.join("o")).unwrap().flatten().map(|e| e.path()).collect()
}

#[cfg(unix)]
#[test]
fn temporary_outputs_of_a_killed_job_are_removed_by_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    for out_name in ["out.parquet", "out_dir/"] {
        let left = killed_job(dir.path(), out_name);
        assert!(
            left.iter().any(|p| p.file_name().unwrap().to_string_lossy().contains(".mlscore-tmp-")),
            "{out_name}: the kill came too late to leave a staging directory: {left:?}"
        );
        // A job writing somewhere else leaves them alone.
        let other = dir.path().join("o").join("other.parquet");
        let mut cmd = mlscore();
        cmd.args(["score", "-m", "models/churn", "-i"]).arg(sample()).arg("-o").arg(&other);
        run(&mut cmd, true);
        let after_other: Vec<_> =
            std::fs::read_dir(dir.path().join("o")).unwrap().flatten().map(|e| e.path()).collect();
        assert!(left.iter().all(|p| after_other.contains(p)), "{out_name}: another target's run swept {left:?}");
        // The next run to the same target sweeps them and says so.
        let out = dir.path().join("o").join(out_name);
        let mut cmd = mlscore();
        cmd.args(["score", "-m", "models/churn", "-i"]).arg(sample()).arg("-o").arg(&out);
        let err = stderr(&run(&mut cmd, true));
        assert!(err.contains("removed") && err.contains("temporary output"), "{err}");
        let mut names: Vec<String> = std::fs::read_dir(dir.path().join("o"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let target = out_name.trim_end_matches('/');
        assert_eq!(names, vec!["other.parquet".to_string(), target.to_string()], "{out_name}");
        assert_eq!(read_parquet(&out).num_rows(), 1000);
        std::fs::remove_dir_all(dir.path().join("o")).unwrap();
    }
}

/// A Parquet file whose embedded Arrow schema makes arrow's IPC decoder panic (found by the
/// fuzzer, `fuzz/regressions/parquet/`): the job fails with exit 1 saying the input is damaged,
/// writes nothing, and the process does not die of the panic.
#[test]
fn a_parquet_file_a_reader_panics_on_is_the_jobs_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("damaged.parquet");
    std::fs::copy(repo().join("fuzz/regressions/parquet/arrow-schema-of-type-none"), &input).unwrap();
    let err = score_fails("models/churn", &input, &[]);
    assert!(err.contains("failed inside a reader") && err.contains("damaged"), "{err}");

    // Among good files, the error names the damaged one; the reader's panic is said once, after
    // the error (where it panicked), not as Rust's panic report above it.
    let tables = dir.path().join("tables");
    std::fs::create_dir(&tables).unwrap();
    let good = files_with_extension(&sample(), "parquet").remove(0);
    std::fs::copy(&good, tables.join("a-good.parquet")).unwrap();
    std::fs::copy(&input, tables.join("b-damaged.parquet")).unwrap();
    std::fs::copy(&good, tables.join("c-good.parquet")).unwrap();
    let err = score_fails("models/churn", &tables, &[]);
    let first = err.lines().next().unwrap_or_default();
    assert!(first.starts_with("error: ") && first.contains("b-damaged.parquet"), "{err}");
    assert!(!err.contains("a-good") && !err.contains("c-good"), "{err}");
    assert!(!err.contains("panicked at"), "{err}");
    assert!(err.lines().any(|l| l.trim_start().starts_with("panicked: '")), "{err}");
}

/// A Parquet footer (FileMetaData) holding, under field ids the parquet crate does not know,
/// `lists` lists of booleans declaring 2^31 - 1 elements each: the crate walks every declared
/// element to skip the field (a boolean in a list taking no bytes, for it), seconds a list.
pub(crate) fn hostile_parquet(lists: usize) -> Vec<u8> {
    let mut footer = Vec::new();
    for i in 0..lists {
        // Field header: long form (type 9, list), field id 100 + i as a zigzag varint.
        footer.push(0x09);
        let id = 2 * (100 + i as u64);
        footer.extend([(id & 0x7f) as u8 | 0x80, (id >> 7) as u8]);
        // List header: size in a varint that follows, elements of type 1 (boolean).
        footer.extend([0xf1, 0xff, 0xff, 0xff, 0xff, 0x07]);
    }
    footer.push(0x00);
    let mut file = b"PAR1".to_vec();
    file.extend(&footer);
    file.extend((footer.len() as u32).to_le_bytes());
    file.extend(b"PAR1");
    file
}

/// A few bytes of hostile Thrift in a footer would keep the parquet crate busy for hours: the
/// job refuses the file at once, naming it, and `mlscore serve` refuses such a body.
#[test]
fn a_parquet_footer_declaring_billions_of_elements_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let tables = dir.path().join("tables");
    std::fs::create_dir(&tables).unwrap();
    let good = files_with_extension(&sample(), "parquet").remove(0);
    std::fs::copy(&good, tables.join("a-good.parquet")).unwrap();
    std::fs::write(tables.join("b-hostile.parquet"), hostile_parquet(64)).unwrap();
    let started = std::time::Instant::now();
    let err = score_fails("models/churn", &tables, &[]);
    assert!(err.contains("b-hostile.parquet") && err.contains("footer is damaged"), "{err}");
    assert!(err.contains("2147483647 elements"), "{err}");
    // Unguarded, 64 such lists are 137 billion skips in the parquet crate.
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "took {:?}", started.elapsed());

    // The file the fuzzer found (one list) is refused as well.
    let found = repo().join("fuzz/regressions/parquet/thrift-list-of-booleans-2e31-elements");
    let err = score_fails("models/churn", &found, &[]);
    assert!(err.contains("footer is damaged"), "{err}");
}

/// The Thrift check accepts every Parquet file the project holds: written by pyarrow, pandas,
/// Spark (Databricks Runtime's Delta files, with deletion vectors and column mapping), DuckDB
/// where present, and mlscore itself, with dictionary pages, several row groups and codecs.
#[test]
fn every_real_parquet_file_passes_the_thrift_check() {
    let mut checked = 0;
    for root in [models(), repo().join("tests/data")] {
        for (rel, path) in files_under(&root) {
            if !rel.ends_with(".parquet") {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(mlscore_core::check_parquet_file(&bytes), Ok(()), "{rel}");
            checked += 1;
        }
    }
    // And outputs mlscore writes, in each codec.
    let dir = tempfile::tempdir().unwrap();
    for codec in ["snappy", "zstd", "lz4", "none"] {
        let out = dir.path().join(format!("{codec}.parquet"));
        let mut cmd = mlscore();
        cmd.args(["score", "-q", "-m", "models/churn", "-i"]).arg(sample()).arg("-o").arg(&out);
        cmd.args(["--reencode", "--row-group-rows", "300", "--compression", codec]);
        run(&mut cmd, true);
        assert_eq!(mlscore_core::check_parquet_file(&std::fs::read(&out).unwrap()), Ok(()), "{codec}");
        checked += 1;
    }
    assert!(checked > 100, "only {checked} files");

    // The page headers are walked too: the first page of a file starts right after its "PAR1";
    // a field of an unknown type there is refused.
    let mut bytes = std::fs::read(files_with_extension(&sample(), "parquet").remove(0)).unwrap();
    bytes[4] = 0x1f;
    let err = mlscore_core::check_parquet_file(&bytes).unwrap_err();
    assert!(err.contains("page header at byte 4"), "{err}");
}

/// `mlscore sql` over a directory holding a hostile footer refuses it at once, naming it.
#[test]
fn sql_refuses_a_hostile_parquet_footer_too() {
    let dir = tempfile::tempdir().unwrap();
    let tables = dir.path().join("tables");
    std::fs::create_dir(&tables).unwrap();
    std::fs::write(tables.join("hostile.parquet"), hostile_parquet(64)).unwrap();
    let query = format!("SELECT count(*) FROM '{}/'", tables.display());
    let mut cmd = mlscore();
    cmd.args(["sql", "-q", "--model", "churn=models/churn", &query]).env_remove("RUST_BACKTRACE");
    let out = run(&mut cmd, false);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("hostile.parquet") && err.contains("footer is damaged"), "{err}");
}
