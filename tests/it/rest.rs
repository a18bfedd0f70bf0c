//! Models from a real MLflow tracking server on 127.0.0.1 (started once for the whole test run by
//! tests/servers/mlflow_server.py, which logs and registers a model with MLflow's own client):
//! resolution over the REST API, downloads through the artifact proxy, the cache.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use crate::common::*;
use crate::servers::servers_installed;

/// The running server: its URL, ids of what was logged, and the pipe whose closing stops it.
pub(crate) struct Server {
    pub(crate) url: String,
    run_id: String,
    model_id: String,
    _child: Mutex<(Child, ChildStdin)>,
    _dir: tempfile::TempDir,
}

pub(crate) fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(repo().join("scripts/python-env"))
            .arg(repo().join("tests/servers/mlflow_server.py"))
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("client.log")).unwrap())
            .spawn()
            .expect("scripts/python-env runs the MLflow server script");
        let stdin = child.stdin.take().unwrap();
        // MLflow's client prints a few lines of its own first; the script's is the JSON one.
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 0 && !line.starts_with('{') {
            line.clear();
        }
        let ready: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            let log = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap_or_default();
            panic!(
                "the MLflow server did not start ({e}); its log:\n{}\nthe client's:\n{}",
                log("server.log"),
                log("client.log")
            )
        });
        let s = |k: &str| ready[k].as_str().unwrap().to_string();
        Server {
            url: s("url"),
            run_id: s("run_id"),
            model_id: s("model_id"),
            _child: Mutex::new((child, stdin)),
            _dir: dir,
        }
    })
}

/// The CLI against the server, with its own cache directory.
fn remote(cache: &std::path::Path) -> Command {
    let mut c = mlscore();
    c.env("MLFLOW_TRACKING_URI", &server().url).arg("--cache-dir").arg(cache);
    c
}

#[test]
fn a_registered_alias_on_a_server_scores_like_the_local_model() {
    if !servers_installed("a_registered_alias_on_a_server_scores_like_the_local_model") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("remote.parquet");
    run(
        remote(&dir.path().join("cache"))
            .args(["score", "--model", "models:/churn_remote@champion", "--input"])
            .arg(sample())
            .arg("--output")
            .arg(&out),
        true,
    );
    let local = dir.path().join("local.parquet");
    run(
        mlscore().args(["score", "--model", "models/churn", "--input"]).arg(sample()).arg("--output").arg(&local),
        true,
    );
    let (got, want) = (read_parquet(&out), read_parquet(&local));
    assert_eq!(got.num_rows(), 1000);
    assert_eq!(got.column_by_name("prediction").unwrap(), want.column_by_name("prediction").unwrap());
    let kv = parquet_metadata(&out);
    assert!(kv.iter().any(|(k, v)| k == "mlscore.model.registered_version" && v == "1"), "{kv:?}");
}

#[test]
fn every_uri_form_resolves_over_rest_and_the_cache_is_used_the_second_time() {
    if !servers_installed("every_uri_form_resolves_over_rest_and_the_cache_is_used_the_second_time") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let s = server();
    for uri in [
        "models:/churn_remote/1".to_string(),
        "models:/churn_remote/latest".to_string(),
        "models:/churn_remote@champion".to_string(),
        format!("models:/{}", s.model_id),
        format!("runs:/{}/model", s.run_id),
    ] {
        let out = run(remote(&cache).args(["inspect", "--json", &uri]), true);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["signature"]["inputs"][0]["name"], "age", "{uri}: {v}");
        let text = v.to_string();
        assert!(text.contains("mlflow-artifacts:"), "{uri} did not go through the artifact proxy: {text}");
    }
    // All five name the same artifacts: downloaded once, then read from the cache.
    let again = run(remote(&cache).args(["inspect", "models:/churn_remote/1"]), true);
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(text.contains("in the cache"), "{text}");
    let entries = std::fs::read_dir(&cache)
        .unwrap()
        .filter(|e| !e.as_ref().unwrap().file_name().to_string_lossy().starts_with('.'));
    assert_eq!(entries.count(), 1);
    let fresh = run(remote(&cache).args(["--no-cache", "inspect", "models:/churn_remote/1"]), true);
    assert!(String::from_utf8_lossy(&fresh.stdout).contains("downloaded"));
}

#[test]
fn an_unknown_alias_on_a_server_lists_the_aliases_and_the_token_is_never_printed() {
    if !servers_installed("an_unknown_alias_on_a_server_lists_the_aliases_and_the_token_is_never_printed") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        remote(&dir.path().join("cache"))
            .env("MLFLOW_TRACKING_TOKEN", "s3cr3t-t0ken")
            .args(["score", "--model", "models:/churn_remote@nope", "--input"])
            .arg(sample())
            .arg("--output")
            .arg(dir.path().join("o.parquet")),
        false,
    );
    let err = stderr(&out);
    assert!(err.contains("nope") && err.contains("champion"), "{err}");
    assert!(!err.contains("s3cr3t"), "{err}");
    assert!(!dir.path().join("o.parquet").exists());
}

#[test]
fn a_server_that_does_not_answer_is_named_after_retries() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        mlscore()
            .env("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
            .args(["score", "--model", "models:/churn@champion", "--input"])
            .arg(sample())
            .arg("--output")
            .arg(dir.path().join("o.parquet")),
        false,
    );
    let err = stderr(&out);
    assert!(err.contains("http://127.0.0.1:9/api/2.0/mlflow/"), "{err}");
    assert!(err.contains("attempts"), "{err}");
    assert!(!dir.path().join("o.parquet").exists());
}

/// POSTs JSON to the server's REST API, as MLflow's client does.
fn post(path: &str, body: serde_json::Value) -> serde_json::Value {
    let url = format!("{}/api/2.0/mlflow/{path}", server().url);
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut response = agent.post(&url).header("content-type", "application/json").send(body.to_string()).unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    assert_eq!(status, 200, "POST {url} {body}: {text}");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn a_version_whose_files_are_on_azure_is_read_from_azure_not_through_the_server() {
    if !servers_installed("a_version_whose_files_are_on_azure_is_read_from_azure_not_through_the_server") {
        return;
    }
    use crate::servers::{AZURE_ACCOUNT, Azurite, put_dir};
    let az = Azurite::shared();
    az.create_container("r1-models");
    put_dir(az.store("r1-models").as_ref(), &models().join("churn"), "churn/v1");
    // A registry entry whose source is a storage URL: the server records it and does not proxy it.
    let source = format!("abfss://r1-models@{AZURE_ACCOUNT}.dfs.core.windows.net/churn/v1");
    post("registered-models/create", serde_json::json!({"name": "churn_on_azure"}));
    let v = post("model-versions/create", serde_json::json!({"name": "churn_on_azure", "source": source}));
    assert_eq!(v["model_version"]["version"], "1", "{v}");
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = remote(&dir.path().join("cache"));
    az.env(&mut cmd);
    let out = run(cmd.args(["inspect", "models:/churn_on_azure/1"]), true);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&source) && text.contains("downloaded"), "{text}");
}

#[test]
fn a_server_dying_in_the_middle_of_a_download_is_named_and_leaves_no_cache_entry() {
    if !servers_installed("a_server_dying_in_the_middle_of_a_download_is_named_and_leaves_no_cache_entry") {
        return;
    }
    use crate::servers::{CutProxy, Direction};
    let port: u16 = server().url.rsplit(':').next().unwrap().trim_end_matches('/').parse().unwrap();
    // The lookups and the listing take well under 3 KiB; the files come after.
    let proxy = CutProxy::start(port, Direction::Down, 3000);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let out = run(
        mlscore()
            .env("MLFLOW_TRACKING_URI", format!("http://127.0.0.1:{}", proxy.port))
            .arg("--cache-dir")
            .arg(&cache)
            .args(["inspect", "models:/churn_remote/1"]),
        false,
    );
    let err = stderr(&out);
    assert!(proxy.was_cut(), "{err}");
    assert!(err.contains(&format!("http://127.0.0.1:{}/api/2.0/mlflow", proxy.port)), "{err}");
    let left: Vec<_> =
        std::fs::read_dir(&cache).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "a partial download was left in the cache: {left:?}");
}
