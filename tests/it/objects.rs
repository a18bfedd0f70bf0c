//! Models and tables on object stores: Azure (abfss://, az://, wasbs:// on Azurite) and S3
//! (s3:// on s3s-fs, which checks SigV4), configured only through object_store's standard
//! environment variables; outputs committed only when complete, also when the store dies.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::servers::{
    AZURE_ACCOUNT, Azurite, CutProxy, Direction, S3, S3_SECRET, get_dir, list, put_dir, servers_installed,
};

fn abfss(container: &str, path: &str) -> String {
    format!("abfss://{container}@{AZURE_ACCOUNT}.dfs.core.windows.net/{path}")
}

/// The sample scored from local files, for comparison.
fn scored_locally(dir: &Path) -> arrow::array::RecordBatch {
    let local = dir.join("local.parquet");
    run(
        mlscore().args(["score", "--model", "models/churn", "--input"]).arg(sample()).arg("--output").arg(&local),
        true,
    );
    read_parquet(&local)
}

#[test]
fn an_azure_model_and_table_score_into_another_container_as_they_do_locally() {
    if !servers_installed("an_azure_model_and_table_score_into_another_container_as_they_do_locally") {
        return;
    }
    let az = Azurite::shared();
    az.create_container("a1-models");
    az.create_container("a1-data");
    let (model_store, data) = (az.store("a1-models"), az.store("a1-data"));
    put_dir(model_store.as_ref(), &models().join("churn"), "churn");
    put_dir(data.as_ref(), &sample(), "customers");
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let score = |output: &str, extra: &[&str]| {
        let mut cmd = mlscore();
        az.env(&mut cmd);
        cmd.arg("--cache-dir").arg(&cache).args(["score", "--model", &abfss("a1-models", "churn"), "--input"]);
        cmd.args([abfss("a1-data", "customers/"), "--output".into(), output.into()]).args(extra);
        cmd
    };
    // wasbs:// is the same container as abfss://; the model's container and the data's share an account.
    let output = format!("wasbs://a1-data@{AZURE_ACCOUNT}.blob.core.windows.net/scored/");
    run(&mut score(&output, &[]), true);
    let names = list(data.as_ref(), "scored");
    assert!(names.contains(&"_SUCCESS".to_string()) && names.iter().any(|n| n.ends_with(".parquet")), "{names:?}");
    let got_dir = dir.path().join("got");
    get_dir(data.as_ref(), "scored", &got_dir);
    let (got, want) = (read_parquet(&got_dir), scored_locally(dir.path()));
    assert_eq!(got.num_rows(), want.num_rows());
    assert_eq!(got.column_by_name("prediction").unwrap(), want.column_by_name("prediction").unwrap());
    assert_eq!(got.column_by_name("age").unwrap(), want.column_by_name("age").unwrap());

    // An existing output is kept unless --overwrite, and the error names it.
    let err = stderr(&run(&mut score(&output, &[]), false));
    assert!(err.contains(&abfss("a1-data", "scored/")) && err.contains("--overwrite"), "{err}");
    // Replacing with fewer parts leaves none of the old ones behind.
    run(&mut score(&output, &["--overwrite", "--partitions", "1"]), true);
    assert_eq!(list(data.as_ref(), "scored"), ["_SUCCESS", "part-00000.parquet"]);

    // SQL reads URL tables from the store too, with the same answer as over the local files.
    let sql = |model: &str, table: &str| {
        let mut cmd = mlscore();
        az.env(&mut cmd);
        let query = format!("SELECT count(*) AS n, sum(churn()) AS churned FROM '{table}'");
        cmd.arg("--cache-dir").arg(&cache).args(["sql", "--result-type", "bigint", "--format", "csv"]);
        let out = run(cmd.args(["--model", &format!("churn={model}"), &query]), true);
        String::from_utf8(out.stdout).unwrap()
    };
    let remote = sql(&abfss("a1-models", "churn"), &abfss("a1-data", "customers/"));
    let local = sql("models/churn", &format!("{}/", sample().display()));
    assert_eq!(remote, local);
    assert!(remote.contains(&format!("{},", want.num_rows())), "{remote}");

    // The model was downloaded once; unchanged on the store, it comes from the cache.
    let mut inspect = mlscore();
    az.env(&mut inspect);
    let out = run(inspect.arg("--cache-dir").arg(&cache).args(["inspect", &abfss("a1-models", "churn")]), true);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("unchanged since it was cached"), "{text}");
}

#[test]
fn a_single_output_file_on_azure_is_uploaded_whole_and_az_urls_take_the_account_from_the_environment() {
    if !servers_installed(
        "a_single_output_file_on_azure_is_uploaded_whole_and_az_urls_take_the_account_from_the_environment",
    ) {
        return;
    }
    let az = Azurite::shared();
    az.create_container("a2-data");
    let data = az.store("a2-data");
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = mlscore();
    az.env(&mut cmd);
    cmd.args(["score", "--model", "models/churn", "--input"]).arg(sample());
    run(cmd.args(["--output", "az://a2-data/out/scored.parquet"]), true);
    assert_eq!(list(data.as_ref(), "out"), ["scored.parquet"]);
    get_dir(data.as_ref(), "out", dir.path());
    let (got, want) = (read_parquet(&dir.path().join("scored.parquet")), scored_locally(dir.path()));
    assert_eq!(got.column_by_name("prediction").unwrap(), want.column_by_name("prediction").unwrap());
    let kv = parquet_metadata(&dir.path().join("scored.parquet"));
    assert!(kv.iter().any(|(k, _)| k == "mlscore.model.artifact_sha256"), "{kv:?}");

    // A missing input prefix is named, and nothing is written.
    let mut cmd = mlscore();
    az.env(&mut cmd);
    cmd.args(["score", "--model", "models/churn", "--input", &abfss("a2-data", "nothing-here/")]);
    let err = stderr(&run(cmd.args(["--output", "az://a2-data/out2/"]), false));
    assert!(err.contains(&abfss("a2-data", "nothing-here/")) && err.contains("no such object"), "{err}");
    assert!(list(data.as_ref(), "out2").is_empty());
}

#[test]
fn an_s3_model_and_table_score_into_s3_with_sigv4_and_a_wrong_secret_is_refused() {
    if !servers_installed("an_s3_model_and_table_score_into_s3_with_sigv4_and_a_wrong_secret_is_refused") {
        return;
    }
    let s3 = S3::shared();
    let bucket = s3.root.join("bucket-one");
    copy_tree(&models().join("churn"), &bucket.join("models/churn"));
    copy_tree(&sample(), &bucket.join("data/customers"));
    let dir = tempfile::tempdir().unwrap();
    let score = |secret: &str, output: &str| {
        let mut cmd = mlscore();
        s3.env(&mut cmd, secret);
        cmd.arg("--cache-dir").arg(dir.path().join("cache"));
        cmd.args([
            "score",
            "--model",
            "s3://bucket-one/models/churn",
            "--input",
            "s3://bucket-one/data/customers/",
            "--output",
            output,
        ]);
        cmd
    };
    run(&mut score(S3_SECRET, "s3://bucket-one/scored/"), true);
    assert!(bucket.join("scored/_SUCCESS").is_file());
    let (got, want) = (read_parquet(&bucket.join("scored")), scored_locally(dir.path()));
    assert_eq!(got.column_by_name("prediction").unwrap(), want.column_by_name("prediction").unwrap());

    let err = stderr(&run(&mut score("not-the-secret", "s3://bucket-one/scored-2/"), false));
    assert!(err.contains("s3://bucket-one/scored-2/") && err.contains("403 Forbidden"), "{err}");
    assert!(!bucket.join("scored-2").exists());
}

#[test]
fn azurite_dying_in_the_middle_of_an_upload_fails_naming_the_output_and_leaves_nothing() {
    if !servers_installed("azurite_dying_in_the_middle_of_an_upload_fails_naming_the_output_and_leaves_nothing") {
        return;
    }
    let az = Azurite::start();
    az.create_container("f1-data");
    let data = az.store("f1-data");
    // Cut once the first part file is on its way (the checks before it send well under 4 KiB).
    let proxy = CutProxy::start(az.port, Direction::Up, 4096);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = mlscore();
    Azurite::env_via(&mut cmd, proxy.port);
    cmd.env("MLSCORE_STORE_MAX_RETRIES", "2").env("MLSCORE_STORE_RETRY_TIMEOUT", "5");
    let output = abfss("f1-data", "scored/");
    cmd.args(["score", "--model"]).arg(models().join("churn")).arg("--input").arg(sample()).args(["--output", &output]);
    let start = Instant::now();
    let err = stderr(&run(cmd.current_dir(dir.path()), false));
    assert!(proxy.was_cut(), "the job ended before the proxy cut the server off: {err}");
    assert!(err.contains(&output) && err.contains("127.0.0.1"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(60), "retries took {:?}", start.elapsed());
    // No block list was committed: the container holds nothing.
    assert!(list(data.as_ref(), "").is_empty(), "{:?}", list(data.as_ref(), ""));
}
