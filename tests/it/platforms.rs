//! Databricks, Unity Catalog and Azure ML, as MLflow's client reaches them: a fixture control
//! plane (tests/servers/control_plane.py) whose signed URLs and temporary credentials point at a
//! real Azurite and a real S3 server, so that every byte of a model travels through the real
//! storage protocols. MLflow's own client downloads through the same fixture in the same run, to
//! prove the fixture answers as the services do.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use crate::common::*;
use crate::servers::{AZURE_ACCOUNT, Azurite, S3, S3_KEY_ID, S3_SECRET, put_dir, servers_installed};

const RUN: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
/// A run of an experiment whose artifacts live in a Unity Catalog volume.
const VOLUME_RUN: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";
/// A run whose signed URLs the fixture hands out expired the first time.
const EXPIRING_RUN: &str = "e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0";
const LOGGED: &str = "m-7f3e2d1c0b9a88776655443322110000";
const TOKEN: &str = "dapi-fixture-0123456789";
const CLIENT_ID: &str = "sp-client-id";
const CLIENT_SECRET: &str = "sp-very-secret";
const IDENTITY_HEADER: &str = "identity-header-value";
const AZURE_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const AZUREML_WS: &str =
    "subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.MachineLearningServices/workspaces/ws-1";

/// The fixture and the world it serves.
struct Plane {
    url: String,
    dir: tempfile::TempDir,
    _child: Mutex<(Child, ChildStdin)>,
}

fn plane() -> &'static Plane {
    static PLANE: OnceLock<Plane> = OnceLock::new();
    PLANE.get_or_init(|| {
        let azurite = Azurite::shared();
        let s3 = S3::shared();
        let container = "databricks";
        azurite.create_container(container);
        let store = azurite.store(container);
        let model = models().join("churn");
        put_dir(store.as_ref(), &model, &format!("runs/{RUN}/artifacts/model"));
        put_dir(store.as_ref(), &model, &format!("runs/{EXPIRING_RUN}/artifacts/model"));
        put_dir(store.as_ref(), &model, &format!("runs/{VOLUME_RUN}/artifacts/model"));
        put_dir(store.as_ref(), &model, &format!("logged/{LOGGED}"));
        for v in ["az", "default", "files"] {
            put_dir(store.as_ref(), &model, &format!("uc/main/ml/{v}/1"));
        }
        // The S3 server serves a directory: each subdirectory is a bucket.
        copy_tree(&model, &s3.root.join("ucbucket/uc/main/ml/s3/1"));
        let dir = tempfile::tempdir().unwrap();
        let version = |mode: &str| serde_json::json!({ "mode": mode, "prefix": format!("uc/main/ml/{mode}/1") });
        let world = serde_json::json!({
            "token": TOKEN,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "identity_header": IDENTITY_HEADER,
            "experiment_id": "4242",
            "azurite": {
                "url": format!("http://127.0.0.1:{}", azurite.port),
                "account": AZURE_ACCOUNT,
                "key": AZURE_KEY,
                "container": container,
            },
            "s3": { "bucket": "ucbucket", "key_id": S3_KEY_ID, "secret": S3_SECRET },
            "runs": {
                RUN: format!("runs/{RUN}/artifacts"),
                EXPIRING_RUN: format!("runs/{EXPIRING_RUN}/artifacts"),
                VOLUME_RUN: format!("runs/{VOLUME_RUN}/artifacts"),
            },
            "volume_runs": { VOLUME_RUN: format!("/Volumes/main/ml/mlflow/4242/{VOLUME_RUN}/artifacts") },
            "expire_first": [EXPIRING_RUN],
            "logged_models": { LOGGED: { "run_id": RUN, "name": "model", "prefix": format!("logged/{LOGGED}") } },
            "workspace_models": {
                "churn": { "versions": { "1": { "run_id": RUN, "path": "model" } }, "aliases": { "champion": 1 } },
            },
            "uc_models": {
                "main.ml.az": { "versions": { "1": version("az") }, "aliases": { "champion": 1 } },
                "main.ml.s3": { "versions": { "1": version("s3") } },
                "main.ml.default": { "versions": { "1": version("default") } },
                "main.ml.files": { "versions": { "1": version("files") } },
            },
            "azureml": { "sub": "sub-1", "rg": "rg-1", "ws": "ws-1" },
        });
        let world_path = dir.path().join("world.json");
        std::fs::write(&world_path, world.to_string()).unwrap();
        let mut child = Command::new(repo().join("scripts/python-env"))
            .arg(repo().join("tests/servers/control_plane.py"))
            .arg("--world")
            .arg(&world_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("fixture.log")).unwrap())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let ready: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            panic!(
                "the control plane fixture did not start ({e}): {}",
                std::fs::read_to_string(dir.path().join("fixture.log")).unwrap_or_default()
            )
        });
        Plane { url: ready["url"].as_str().unwrap().to_string(), dir, _child: Mutex::new((child, stdin)) }
    })
}

/// One test at a time talks to the fixture: tests compare the requests it logged before and
/// after their own jobs, which another test's requests would mix into.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The requests the fixture has seen since `from` lines: `METHOD path auth-kind`.
fn requests() -> Vec<String> {
    std::fs::read_to_string(plane().dir.path().join("requests.log"))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// The CLI against the fixture workspace, with a cache of its own and no other credentials.
fn databricks(cache: &Path) -> Command {
    let p = plane();
    let mut c = mlscore();
    Azurite::shared().env(&mut c);
    S3::shared().env(&mut c, S3_SECRET);
    c.env("MLFLOW_TRACKING_URI", "databricks")
        .env("DATABRICKS_HOST", &p.url)
        .env("DATABRICKS_TOKEN", TOKEN)
        .env("DATABRICKS_CONFIG_FILE", cache.join("no-such-databrickscfg"))
        .env_remove("MLFLOW_REGISTRY_URI")
        .env_remove("DATABRICKS_CONFIG_PROFILE")
        .arg("--cache-dir")
        .arg(cache);
    c
}

/// Scores the sample with `uri` and checks the predictions are the bundled model's.
fn scores_like_the_local_model(cmd: &mut Command, uri: &str, dir: &Path) -> serde_json::Value {
    let out = dir.join(format!("{}.parquet", uri.replace(['/', ':', '@', '.'], "_")));
    run(cmd.args(["score", "--model", uri, "--input"]).arg(sample()).arg("--output").arg(&out), true);
    let local = dir.join("local.parquet");
    if !local.exists() {
        run(
            mlscore().args(["score", "--model", "models/churn", "--input"]).arg(sample()).arg("--output").arg(&local),
            true,
        );
    }
    let (got, want) = (read_parquet(&out), read_parquet(&local));
    assert_eq!(got.column_by_name("prediction").unwrap(), want.column_by_name("prediction").unwrap(), "{uri}");
    serde_json::Value::Null
}

fn inspect(cmd: &mut Command, uri: &str) -> serde_json::Value {
    let out = run(cmd.args(["inspect", "--json", uri]), true);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The model files as a sorted list of (relative path, bytes).
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    files_under(dir).into_iter().map(|(rel, path)| (rel, std::fs::read(path).unwrap())).collect()
}

#[test]
fn databricks_runs_logged_models_and_the_workspace_registry_score_through_signed_urls() {
    if !servers_installed("databricks_runs_logged_models_and_the_workspace_registry_score_through_signed_urls") {
        return;
    }
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    for uri in [format!("runs:/{RUN}/model"), format!("models:/{LOGGED}")] {
        // MLflow's order: the Files API first, then the workspace's signed URLs.
        scores_like_the_local_model(&mut databricks(&cache), &uri, dir.path());
        let v = inspect(&mut databricks(&cache), &uri);
        assert!(v["resolved"].to_string().contains("Files API"), "{uri}: {}", v["resolved"]);
        let signed = dir.path().join("signed");
        std::fs::create_dir_all(&signed).unwrap();
        scores_like_the_local_model(
            databricks(&signed.join("cache")).env("MLFLOW_DISABLE_DATABRICKS_SDK_FOR_RUN_ARTIFACTS", "true"),
            &uri,
            &signed,
        );
    }
    // A run whose experiment keeps artifacts in a Unity Catalog volume: read through the Files API.
    let uri = format!("runs:/{VOLUME_RUN}/model");
    scores_like_the_local_model(&mut databricks(&cache), &uri, dir.path());
    let v = inspect(&mut databricks(&cache), &uri);
    assert!(v["resolved"].to_string().contains("/Volumes/main/ml/mlflow"), "{}", v["resolved"]);
    assert!(requests().iter().any(|r| r.starts_with("GET /api/2.0/fs/files/Volumes/main/ml/mlflow/")));
    // Signed URLs that expired before their download: each file asked for once more, then read.
    let before = requests().len();
    scores_like_the_local_model(
        databricks(&dir.path().join("expiring")).env("MLFLOW_DISABLE_DATABRICKS_SDK_FOR_RUN_ARTIFACTS", "true"),
        &format!("runs:/{EXPIRING_RUN}/model"),
        dir.path(),
    );
    let asked = requests()[before..].iter().filter(|r| r.contains("credentials-for-read")).count();
    assert_eq!(asked, 1 + 7, "one batch, then one request per expired file (7 files)");
    for uri in ["models:/churn/1", "models:/churn@champion", "models:/churn/latest"] {
        scores_like_the_local_model(databricks(&cache).env("MLFLOW_REGISTRY_URI", "databricks"), uri, dir.path());
    }
    let v = inspect(databricks(&cache).env("MLFLOW_REGISTRY_URI", "databricks"), "models:/churn@champion");
    let text = v["resolved"].to_string();
    assert!(text.contains("workspace registry") && text.contains("signed URLs"), "{text}");
    assert_eq!(v["resolved"]["registered_model"]["version"], 1);
    // What travelled: bearer-authorized control-plane calls, and no secret in any step.
    assert!(!text.contains("sig=") && !text.contains(TOKEN), "{text}");
    let seen = requests();
    for endpoint in [
        "/api/2.0/mlflow/artifacts/credentials-for-read",
        "/api/2.0/mlflow/logged-models/".to_string().as_str(),
        "/api/2.0/mlflow/model-versions/get-signed-download-uri",
        "/api/2.0/mlflow/registered-models/alias",
    ] {
        assert!(seen.iter().any(|r| r.contains(endpoint) && r.ends_with(" pat")), "{endpoint} not called: {seen:?}");
    }
}

#[test]
fn unity_catalog_versions_are_read_with_temporary_credentials_signed_urls_or_the_files_api() {
    if !servers_installed("unity_catalog_versions_are_read_with_temporary_credentials_signed_urls_or_the_files_api") {
        return;
    }
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    // databricks-uc is the default registry of a Databricks tracking URI, as in MLflow.
    // Each version's files exist only where its route leads (Azurite with a SAS, the S3 server
    // with session credentials, signed URLs, the Files API): scoring proves the route.
    for (uri, endpoint) in [
        ("models:/main.ml.az@champion", None),
        ("models:/main.ml.s3/1", None),
        ("models:/main.ml.default/1", Some("/api/2.0/fs/create-download-url")),
        ("models:/main.ml.files/1", Some("/api/2.0/fs/files/Models/main/ml/files/1/model.onnx")),
    ] {
        scores_like_the_local_model(&mut databricks(&cache), uri, dir.path());
        if let Some(endpoint) = endpoint {
            let seen = requests();
            assert!(seen.iter().any(|r| r.contains(endpoint)), "{uri}: {endpoint} not called: {seen:?}");
        }
    }
    let seen = requests().join("\n");
    assert!(seen.contains("generate-temporary-credentials") && seen.contains("get-download-uri"), "{seen}");
    // Unity Catalog has neither stages nor `latest`, and wants three-level names.
    let out = run(databricks(&cache).args(["inspect", "models:/main.ml.az/latest"]), false);
    assert!(stderr(&out).contains("no stages and no 'latest'"), "{}", stderr(&out));
    let out = run(databricks(&cache).args(["inspect", "models:/churn/1"]), false);
    assert!(stderr(&out).contains("<catalog>.<schema>.<model>"), "{}", stderr(&out));
}

#[test]
fn oauth_machine_to_machine_from_a_profile_and_refused_credentials_are_named_never_shown() {
    if !servers_installed("oauth_machine_to_machine_from_a_profile_and_refused_credentials_are_named_never_shown") {
        return;
    }
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let cfg = dir.path().join("databrickscfg");
    std::fs::write(
        &cfg,
        format!(
            "[DEFAULT]\nhost = {url}\ntoken = wrong\n\n[m2m]\nhost = {url}\nclient_id = {CLIENT_ID}\nclient_secret = {CLIENT_SECRET}\n",
            url = plane().url
        ),
    )
    .unwrap();
    let before = requests().len();
    let mut cmd = databricks(&cache);
    cmd.env("MLFLOW_TRACKING_URI", "databricks://m2m")
        .env("DATABRICKS_CONFIG_FILE", &cfg)
        .env("DATABRICKS_TOKEN", "ignored-when-a-profile-is-named");
    scores_like_the_local_model(&mut cmd, "models:/main.ml.az/1", dir.path());
    let seen: Vec<String> = requests()[before..].to_vec();
    assert_eq!(seen.iter().filter(|r| r.starts_with("POST /oidc/v1/token")).count(), 1, "{seen:?}");
    assert!(seen.iter().filter(|r| r.contains("/api/")).all(|r| r.ends_with(" oauth")), "{seen:?}");

    // A refused token: the error names where it came from and what to set, never the token.
    let out = run(
        databricks(&cache).env("DATABRICKS_TOKEN", "dapi-wrong-secret").args(["inspect", "models:/main.ml.az/1"]),
        false,
    );
    let err = stderr(&out);
    assert!(err.contains("401") && err.contains("DATABRICKS_TOKEN"), "{err}");
    assert!(!err.contains("dapi-wrong-secret"), "{err}");
    // A wrong client secret: the token endpoint's refusal, with the profile named.
    std::fs::write(&cfg, format!("[m2m]\nhost = {}\nclient_id = {CLIENT_ID}\nclient_secret = nope\n", plane().url))
        .unwrap();
    let out = run(
        databricks(&cache)
            .env("MLFLOW_TRACKING_URI", "databricks://m2m")
            .env("DATABRICKS_CONFIG_FILE", &cfg)
            .args(["inspect", "models:/main.ml.az/1"]),
        false,
    );
    let err = stderr(&out);
    assert!(err.contains("token endpoint") && err.contains("profile 'm2m'"), "{err}");
    assert!(!err.contains("nope"), "{err}");
}

#[test]
fn mlflows_own_client_downloads_the_same_files_from_the_fixture() {
    if !servers_installed("mlflows_own_client_downloads_the_same_files_from_the_fixture") {
        return;
    }
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let script = r#"
import sys, mlflow
for uri, dst in zip(sys.argv[1::2], sys.argv[2::2]):
    mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=dst)
"#;
    let uris = [format!("runs:/{RUN}/model"), "models:/churn/1".to_string()];
    let mut cmd = Command::new(repo().join("scripts/python-env"));
    cmd.arg("-c").arg(script);
    let mut theirs = Vec::new();
    for (i, uri) in uris.iter().enumerate() {
        let dst = dir.path().join(format!("mlflow-{i}"));
        std::fs::create_dir_all(&dst).unwrap();
        cmd.arg(uri).arg(&dst);
        theirs.push(dst);
    }
    let out = cmd
        .env("MLFLOW_TRACKING_URI", "databricks")
        .env("MLFLOW_REGISTRY_URI", "databricks")
        .env("DATABRICKS_HOST", &plane().url)
        .env("DATABRICKS_TOKEN", TOKEN)
        .env("DATABRICKS_CONFIG_FILE", dir.path().join("none"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "MLflow's client failed against the fixture:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = |d: &Path| {
        let out = Command::new("find").arg(d).output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    for (uri, theirs) in uris.iter().zip(&theirs) {
        assert!(
            !tree(theirs).is_empty(),
            "MLflow downloaded nothing for {uri}: {}\n{}",
            listing(theirs),
            String::from_utf8_lossy(&out.stderr)
        );
        let v = inspect(databricks(&cache).env("MLFLOW_REGISTRY_URI", "databricks"), uri);
        let ours = PathBuf::from(v["resolved"]["local_path"].as_str().unwrap());
        // MLflow puts a run's `model` directory under the destination; a version's files directly.
        let theirs = if theirs.join("model").is_dir() { theirs.join("model") } else { theirs.clone() };
        // MLflow's client writes registered_model_meta (name and version) next to what it
        // downloads; it is not an artifact (mlscore keeps the same facts in its outputs' footers).
        let _ = std::fs::remove_file(theirs.join("registered_model_meta"));
        let names = |t: Vec<(String, Vec<u8>)>| t.into_iter().map(|(n, b)| (n, b.len())).collect::<Vec<_>>();
        assert_eq!(names(tree(&ours)), names(tree(&theirs)), "{uri}: mlscore and MLflow downloaded different files");
        assert!(tree(&ours) == tree(&theirs), "{uri}: the same files with different bytes");
        assert!(tree(&ours) == tree(&models().join("churn")), "{uri}");
    }
}

#[test]
fn azure_ml_workspaces_resolve_runs_and_registered_models_with_entra_tokens() {
    if !servers_installed("azure_ml_workspaces_resolve_runs_and_registered_models_with_entra_tokens") {
        return;
    }
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let p = plane();
    let host = p.url.trim_start_matches("http://");
    let tracking = format!("azureml://{host}/mlflow/v1.0/{AZUREML_WS}");
    let azureml = |cmd: &mut Command| {
        Azurite::shared().env(cmd);
        cmd.env("MLFLOW_TRACKING_URI", &tracking).env_remove("MLFLOW_REGISTRY_URI").arg("--cache-dir").arg(&cache);
    };
    // A service principal, with the fixture as the Entra authority.
    let mut cmd = mlscore();
    azureml(&mut cmd);
    cmd.env("AZURE_CLIENT_ID", CLIENT_ID)
        .env("AZURE_CLIENT_SECRET", CLIENT_SECRET)
        .env("AZURE_TENANT_ID", "tenant-1")
        .env("AZURE_AUTHORITY_HOST", &p.url)
        .env_remove("MLFLOW_TRACKING_TOKEN");
    let before = requests().len();
    scores_like_the_local_model(&mut cmd, &format!("runs:/{RUN}/model"), dir.path());
    let seen = requests()[before..].to_vec();
    assert!(seen.iter().any(|r| r.starts_with("POST /tenant-1/oauth2/v2.0/token")), "{seen:?}");
    assert!(seen.iter().any(|r| r.contains("/artifacts/contentinfo") && r.ends_with(" oauth")), "{seen:?}");
    // The run token an Azure ML job sets.
    let mut cmd = mlscore();
    azureml(&mut cmd);
    cmd.env("MLFLOW_TRACKING_TOKEN", TOKEN);
    scores_like_the_local_model(&mut cmd, "models:/churn@champion", dir.path());
    // A managed identity (Azure ML compute): the host's local token endpoint.
    let mut cmd = mlscore();
    azureml(&mut cmd);
    for k in ["MLFLOW_TRACKING_TOKEN", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID"] {
        cmd.env_remove(k);
    }
    cmd.env("IDENTITY_ENDPOINT", format!("{}/msi/token", p.url)).env("IDENTITY_HEADER", IDENTITY_HEADER);
    let before = requests().len();
    scores_like_the_local_model(&mut cmd, "models:/churn/1", dir.path());
    let seen = requests()[before..].to_vec();
    assert_eq!(seen.iter().filter(|r| r.starts_with("GET /msi/token")).count(), 1, "{seen:?}");
    // No credentials at all: what to set.
    let mut cmd = mlscore();
    azureml(&mut cmd);
    for k in [
        "MLFLOW_TRACKING_TOKEN",
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_TENANT_ID",
        "AZURE_FEDERATED_TOKEN_FILE",
    ] {
        cmd.env_remove(k);
    }
    let out =
        run(cmd.env_remove("IDENTITY_ENDPOINT").env_remove("MSI_ENDPOINT").args(["inspect", "models:/churn/1"]), false);
    let err = stderr(&out);
    assert!(err.contains("AZURE_CLIENT_ID") && err.contains("MLFLOW_TRACKING_TOKEN"), "{err}");
}

#[test]
fn the_python_wheel_finds_databricks_credentials_the_way_mlflow_does() {
    if !servers_installed("the_python_wheel_finds_databricks_credentials_the_way_mlflow_does") {
        return;
    }
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let site = crate::python::install_wheel(dir.path());
    let python = repo().join("scripts/python-env");
    // A notebook, job or serving endpoint: a host and no token in the environment; the token
    // comes from what MLflow's client asks (here the Databricks SDK's metadata service, which
    // mlscore's own resolver does not read).
    let script = r#"
import sys, os, mlflow, pyarrow.parquet as pq
mlflow.set_tracking_uri("databricks")
import mlscore
table = pq.read_table(sys.argv[2])
labels = mlscore.load_model(sys.argv[1]).predict(table, result_type="bigint")
assert len(labels) == table.num_rows
assert "DATABRICKS_TOKEN" not in os.environ, "the token is not left in the environment"
print("scored", len(labels))
"#;
    let p = plane();
    let run_python = |metadata_service: bool| {
        let mut cmd = Command::new(&python);
        Azurite::shared().env(&mut cmd);
        cmd.arg("-c")
            .arg(script)
            .arg("models:/main.ml.az@champion")
            .arg(sample())
            .env("PYTHONPATH", &site)
            .env("MLSCORE_CACHE_DIR", dir.path().join("cache"))
            .env_remove("MLFLOW_TRACKING_URI")
            .env_remove("MLFLOW_REGISTRY_URI")
            .env_remove("DATABRICKS_TOKEN")
            .env("DATABRICKS_HOST", &p.url)
            .env("DATABRICKS_CONFIG_FILE", dir.path().join("none"));
        if metadata_service {
            cmd.env("DATABRICKS_METADATA_SERVICE_URL", format!("{}/metadata-service", p.url));
        }
        cmd.output().unwrap()
    };
    let out = run_python(true);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("scored 1000"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without any credential source, mlscore's own error says what to set.
    let out = run_python(false);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("DATABRICKS_TOKEN"), "{err}");
}
