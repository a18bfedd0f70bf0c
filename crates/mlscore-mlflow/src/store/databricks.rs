//! A Databricks workspace as MLflow's client reaches it: tracking (`databricks`,
//! `databricks://<profile>`), the workspace model registry (`databricks`) and the Unity Catalog
//! registry (`databricks-uc`, MLflow's default registry for a Databricks tracking URI).
//!
//! **Credentials**, in MLflow's order: a profile named in the URI or in
//! `DATABRICKS_CONFIG_PROFILE` is read from the config file (`DATABRICKS_CONFIG_FILE`, else
//! `~/.databrickscfg`) and nothing else; otherwise `DATABRICKS_HOST` with `DATABRICKS_TOKEN`
//! (a personal access token), `DATABRICKS_USERNAME` / `DATABRICKS_PASSWORD`, or
//! `DATABRICKS_CLIENT_ID` / `DATABRICKS_CLIENT_SECRET` (OAuth machine-to-machine: a token from the
//! workspace's OIDC endpoint, renewed before it expires); otherwise the config file's `[DEFAULT]`.
//!
//! **Files.** The workspace does not stream artifacts itself; it hands out signed URLs (runs,
//! logged models, the workspace registry) or, for Unity Catalog, temporary credentials for the
//! version's storage location (S3, ADLS, GCS), or signed URLs through the Files API for default
//! storage. Each is read here exactly as MLflow's client reads it, and nothing of a signed URL but
//! its path ever appears in a message.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::rest::{
    Auth, ClientCredentials, RestStore, TokenEndpoint, basic_auth, http_backoff, http_timeout, paged, safe_join,
    version_from,
};
use super::{ArtifactFetcher, LoggedModelInfo, ModelVersion, RegisteredModel, RemoteFile, RunInfo, TrackingStore};
use crate::error::{Error, Result};
use crate::objects::{self, TemporaryCredentials};

/// Paths asked for per `credentials-for-read` request (MLflow's own batch size).
const CREDENTIAL_BATCH: usize = 2000;

/// A Databricks workspace's tracking server and one of its two model registries.
#[derive(Debug)]
pub struct DatabricksStore {
    /// The URI as given (`databricks`, `databricks-uc://prod`).
    uri: String,
    rest: RestStore,
    /// Whether registry questions go to Unity Catalog.
    unity: bool,
}

/// Host, credentials and where they came from.
struct Credentials {
    host: String,
    auth: Auth,
    source: String,
    fix: String,
}

impl DatabricksStore {
    /// The workspace a `databricks[-uc][://<profile>]` URI names, with its credentials.
    pub fn open(uri: &str) -> Result<Self> {
        let (unity, profile) = parse_uri(uri)?;
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let creds = credentials(uri, profile.as_deref(), &env, &config_file_path(&env))?;
        let rest = RestStore::with_options(&creds.host, None, http_timeout(), http_backoff())?.with_auth(
            creds.auth,
            format!("the workspace refused the credentials from {}; {}", creds.source, creds.fix),
        );
        Ok(Self { uri: uri.trim().to_string(), rest, unity })
    }

    /// The API of the registry in use: `/api/2.0/mlflow/`, or Unity Catalog's under it.
    fn registry_api(&self) -> &'static str {
        if self.unity { "/api/2.0/mlflow/unity-catalog/" } else { "/api/2.0/mlflow/" }
    }

    fn check_name(&self, name: &str) -> Result<()> {
        if self.unity && (name.split('.').count() != 3 || name.split('.').any(str::is_empty)) {
            return Err(Error::Store {
                store: self.location(),
                reason: format!(
                    "'{name}' is not a Unity Catalog model name: use <catalog>.<schema>.<model>, or set \
                     MLFLOW_REGISTRY_URI=databricks for the workspace model registry"
                ),
            });
        }
        Ok(())
    }
}

/// `(unity catalog?, profile)` of a Databricks tracking or registry URI.
fn parse_uri(uri: &str) -> Result<(bool, Option<String>)> {
    let t = uri.trim();
    let (unity, rest) = if let Some(r) = t.strip_prefix("databricks-uc") {
        (true, r)
    } else if let Some(r) = t.strip_prefix("databricks") {
        (false, r)
    } else {
        return Err(Error::UnsupportedTrackingUri { uri: uri.into(), reason: "not a Databricks URI".into() });
    };
    if rest.is_empty() {
        return Ok((unity, None));
    }
    let Some(profile) = rest.strip_prefix("://").map(|p| p.trim_end_matches('/')) else {
        return Err(Error::UnsupportedTrackingUri {
            uri: uri.into(),
            reason: "expected databricks, databricks://<profile>, databricks-uc or databricks-uc://<profile>".into(),
        });
    };
    if profile.contains(':') {
        return Err(Error::UnsupportedTrackingUri {
            uri: uri.into(),
            reason: "databricks://<scope>:<prefix> reads secrets through dbutils, which only exists inside a \
                     Databricks notebook; use a profile of ~/.databrickscfg or DATABRICKS_HOST and DATABRICKS_TOKEN"
                .into(),
        });
    }
    Ok((unity, (!profile.is_empty()).then(|| profile.to_string())))
}

fn config_file_path(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    env("DATABRICKS_CONFIG_FILE")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".databrickscfg")))
        .unwrap_or_else(|| PathBuf::from(".databrickscfg"))
}

/// The sections of an INI file (`[name]`, `key = value`, `;` and `#` comments); keys lower-cased.
fn parse_ini(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current = String::from("DEFAULT");
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.trim().to_string();
            sections.entry(current.clone()).or_default();
        } else if let Some((k, v)) = line.split_once(['=', ':']) {
            sections.entry(current.clone()).or_default().insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    sections
}

/// Host and credentials in MLflow's order (see the module documentation).
fn credentials(
    uri: &str,
    profile: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    config_file: &Path,
) -> Result<Credentials> {
    let file = std::fs::read_to_string(config_file).ok().map(|t| parse_ini(&t));
    let shown = config_file.display().to_string();
    let refuse = |reason: String| Error::UnsupportedTrackingUri { uri: uri.to_string(), reason };
    let profile = profile.map(str::to_string).or_else(|| env("DATABRICKS_CONFIG_PROFILE"));
    if let Some(p) = profile {
        let section = file.as_ref().and_then(|f| f.get(&p)).ok_or_else(|| {
            refuse(format!(
                "profile '{p}' is not in {shown}; add it (`databricks configure --profile {p}`) or set \
                 DATABRICKS_CONFIG_FILE to the file that has it"
            ))
        })?;
        let get = |k: &str| section.get(k).filter(|v| !v.is_empty()).cloned();
        return from_settings(&get, &format!("profile '{p}' of {shown}"), &format!("fix profile '{p}' in {shown}"))
            .ok_or_else(|| {
                refuse(format!(
                    "profile '{p}' of {shown} needs host and token (or client_id and client_secret, or \
                     username and password)"
                ))
            });
    }
    let from_env = |k: &str| env(&format!("DATABRICKS_{}", k.to_ascii_uppercase()));
    if let Some(c) = from_settings(
        &from_env,
        "DATABRICKS_HOST and its credentials in the environment",
        "check DATABRICKS_TOKEN (or DATABRICKS_CLIENT_ID / DATABRICKS_CLIENT_SECRET)",
    ) {
        return Ok(c);
    }
    if let Some(section) = file.as_ref().and_then(|f| f.get("DEFAULT")) {
        let get = |k: &str| section.get(k).filter(|v| !v.is_empty()).cloned();
        if let Some(c) = from_settings(&get, &format!("[DEFAULT] of {shown}"), &format!("fix [DEFAULT] in {shown}")) {
            return Ok(c);
        }
    }
    Err(refuse(format!(
        "no Databricks credentials found: set DATABRICKS_HOST and DATABRICKS_TOKEN (or DATABRICKS_CLIENT_ID and \
         DATABRICKS_CLIENT_SECRET for a service principal), or add a [DEFAULT] profile to {shown}{}",
        if env("DATABRICKS_HOST").is_some() { " (DATABRICKS_HOST is set, but none of the credentials)" } else { "" }
    )))
}

/// Credentials from one set of settings (`host`, `token`, `username` / `password`, `client_id` /
/// `client_secret`), if they hold a host and one complete kind.
fn from_settings(get: &dyn Fn(&str) -> Option<String>, source: &str, fix: &str) -> Option<Credentials> {
    let host = get("host")?;
    let host = if host.contains("://") { host } else { format!("https://{host}") };
    let host = host.trim_end_matches('/').to_string();
    let auth = if let Some(token) = get("token") {
        Auth::Header(format!("Bearer {token}"))
    } else if let (Some(user), Some(password)) = (get("username"), get("password")) {
        Auth::Header(basic_auth(&user, &password))
    } else if let (Some(id), Some(secret)) = (get("client_id"), get("client_secret")) {
        let mut c = ClientCredentials::new(
            TokenEndpoint::Discover(format!("{host}/oidc/.well-known/oauth-authorization-server")),
            id,
            secret,
            "all-apis",
        );
        c.basic_auth = true;
        Auth::ClientCredentials(c)
    } else {
        return None;
    };
    Some(Credentials { host, auth, source: source.to_string(), fix: fix.to_string() })
}

impl TrackingStore for DatabricksStore {
    fn location(&self) -> String {
        format!("{} ({})", self.uri, self.rest.base())
    }

    fn registered_model(&self, name: &str) -> Result<Option<RegisteredModel>> {
        self.check_name(name)?;
        self.rest.registered_model_at(self.registry_api(), name, &[])
    }

    fn registered_model_names(&self) -> Result<Vec<String>> {
        // Only for hints: a registry that does not list is not an error here.
        Ok(self.rest.registered_model_names_at(self.registry_api(), "100").unwrap_or_default())
    }

    fn model_version(&self, name: &str, version: u64) -> Result<Option<ModelVersion>> {
        self.check_name(name)?;
        let v = version.to_string();
        let endpoint = format!("{}model-versions/get", self.registry_api());
        let reply = self.rest.lookup(&endpoint, &[("name", name), ("version", &v)])?;
        Ok(reply.and_then(|r| version_from(&r["model_version"])))
    }

    fn version_by_alias(&self, name: &str, alias: &str) -> Result<Option<ModelVersion>> {
        self.check_name(name)?;
        let endpoint = format!("{}registered-models/alias", self.registry_api());
        let reply = self.rest.lookup(&endpoint, &[("name", name), ("alias", alias)])?;
        Ok(reply.and_then(|r| version_from(&r["model_version"])))
    }

    fn refuses_latest_and_stages(&self) -> Option<String> {
        self.unity.then(|| {
            "Unity Catalog models have no stages and no 'latest': use models:/<catalog>.<schema>.<model>/<version> \
             or models:/<catalog>.<schema>.<model>@<alias>"
                .to_string()
        })
    }

    fn logged_model(&self, model_id: &str) -> Result<Option<LoggedModelInfo>> {
        self.rest.logged_model(model_id)
    }

    fn run(&self, run_id: &str) -> Result<Option<RunInfo>> {
        self.rest.run(run_id)
    }

    fn logged_models_of_run(&self, run: &RunInfo) -> Result<Vec<LoggedModelInfo>> {
        self.rest.logged_models_of_run(run)
    }

    fn version_artifacts(&self, version: &ModelVersion) -> Result<Option<Box<dyn ArtifactFetcher>>> {
        let rest = self.rest.clone();
        let (name, number) = (version.name.clone(), version.version);
        Ok(Some(if self.unity {
            Box::new(UnityCatalogFiles { rest, name, version: number })
        } else {
            Box::new(WorkspaceRegistryFiles { rest, name, version: number })
        }))
    }

    fn location_artifacts(&self, location: &str) -> Result<Option<Box<dyn ArtifactFetcher>>> {
        let Some(path) = location.strip_prefix("dbfs:") else {
            return Ok(None);
        };
        let path = format!("/{}", path.trim_start_matches('/').trim_end_matches('/'));
        let rest = self.rest.clone();
        if let Some(tail) = path.strip_prefix("/databricks/mlflow-tracking/") {
            // <experiment>/<run>/artifacts[/<path>] or <experiment>/logged_models/<id>/artifacts[/<path>].
            // MLflow reads them through the Files API first, under /WorkspaceInternal/Mlflow/Artifacts,
            // and through signed URLs when that fails.
            let parts: Vec<&str> = tail.splitn(3, '/').collect();
            if let [experiment, second, rest_path] = parts.as_slice() {
                let (head, sub) = rest_path.split_once('/').unwrap_or((rest_path, ""));
                let internal = format!("/WorkspaceInternal/Mlflow/Artifacts/{experiment}");
                let fallback: Option<(String, Box<dyn ArtifactFetcher>)> = if *second == "logged_models" {
                    sub.strip_prefix("artifacts").map(|sub| {
                        let root = sub.trim_start_matches('/').to_string();
                        let files_root = join(&format!("{internal}/LoggedModels/{head}/artifacts"), &root);
                        let signed: Box<dyn ArtifactFetcher> =
                            Box::new(LoggedModelFiles { rest: rest.clone(), model_id: head.to_string(), root });
                        (files_root, signed)
                    })
                } else if head == "artifacts" {
                    let files_root = join(&format!("{internal}/Runs/{second}/artifacts"), sub);
                    let signed: Box<dyn ArtifactFetcher> =
                        Box::new(RunFiles { rest: rest.clone(), run_id: second.to_string(), root: sub.to_string() });
                    Some((files_root, signed))
                } else {
                    None
                };
                if let Some((files_root, signed)) = fallback {
                    let disabled = std::env::var("MLFLOW_DISABLE_DATABRICKS_SDK_FOR_RUN_ARTIFACTS")
                        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1"));
                    if disabled {
                        return Ok(Some(signed));
                    }
                    return Ok(Some(Box::new(FilesFirst {
                        files: FilesApi { rest, root: files_root },
                        signed,
                        chosen: std::sync::atomic::AtomicU8::new(0),
                    })));
                }
            }
        }
        if path.starts_with("/Volumes/") {
            return Ok(Some(Box::new(FilesApi { rest, root: path })));
        }
        Err(Error::Unsupported {
            location: location.to_string(),
            reason: "only MLflow's own DBFS locations (dbfs:/databricks/mlflow-tracking/…) and Unity Catalog volumes \
                     (dbfs:/Volumes/…) are read; download the model (`databricks fs cp -r`) and pass its path"
                .into(),
        })
    }
}

/// `[{name, value}]` headers of a signed URL.
fn headers_of(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| Some((h["name"].as_str()?.to_string(), h["value"].as_str()?.to_string())))
        .collect()
}

fn target(dest: &Path, rel: &str, from: &str) -> Result<PathBuf> {
    safe_join(dest, rel).ok_or_else(|| Error::Remote {
        url: from.to_string(),
        reason: format!("the artifact name '{rel}' would be written outside {}; refused", dest.display()),
    })
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{}/{}", a.trim_end_matches('/'), b.trim_start_matches('/')),
    }
}

/// Walks a listing API one directory at a time: `list_dir(dir)` gives `(path relative to the
/// root, is_dir, size)` entries of one directory.
fn walk(list_dir: impl Fn(&str) -> Result<Vec<(String, bool, Option<u64>)>>) -> Result<Vec<RemoteFile>> {
    use super::rest::{MAX_ARTIFACT_DEPTH, MAX_ARTIFACTS};
    let mut files = Vec::new();
    let mut todo = vec![String::new()];
    // A listing that names a directory already walked, or nests without end, would never finish.
    let mut seen = std::collections::HashSet::new();
    let mut entries = 0usize;
    while let Some(dir) = todo.pop() {
        for (path, is_dir, size) in list_dir(&dir)? {
            if path == dir || path.is_empty() {
                continue;
            }
            entries += 1;
            let refuse = |reason: String| Error::Remote { url: format!("the listing of '{dir}'"), reason };
            if entries > MAX_ARTIFACTS {
                return Err(refuse(format!("more than {MAX_ARTIFACTS} artifacts listed; refused")));
            }
            if path.split('/').count() > MAX_ARTIFACT_DEPTH {
                return Err(refuse(format!("artifacts nested deeper than {MAX_ARTIFACT_DEPTH} directories; refused")));
            }
            if is_dir {
                if seen.insert(path.clone()) {
                    todo.push(path);
                }
            } else {
                files.push(RemoteFile { path, size });
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// One directory level of a paged `{files: [{path, is_dir, file_size}]}` listing (GET `endpoint`
/// with `query`), paths made relative to `root` (listings name them from the artifact root).
fn list_level(
    rest: &RestStore,
    endpoint: &str,
    query: &[(&str, &str)],
    root: &str,
) -> Result<Vec<(String, bool, Option<u64>)>> {
    let mut out = Vec::new();
    paged(
        endpoint,
        |token| {
            let mut q = query.to_vec();
            q.extend(token.map(|t| ("page_token", t)));
            Ok(rest.api_get(endpoint, &q)?.unwrap_or_default())
        },
        |reply| {
            for f in reply["files"].as_array().into_iter().flatten() {
                let full = f["path"].as_str().unwrap_or_default();
                let rel = full.strip_prefix(root).map_or(full, |r| r.trim_start_matches('/'));
                out.push((rel.to_string(), f["is_dir"].as_bool().unwrap_or(false), f["file_size"].as_u64()));
            }
        },
    )?;
    Ok(out)
}

/// A signed URL and the headers to send with it.
type Signed = (String, Vec<(String, String)>);

/// Asks the signing `endpoint` (a POST of `body(paths)`, paged with `page_token`) for signed URLs
/// of `files` (paths below `root`), a batch of paths at a time; `entries` reads `(path, signed
/// URL)` pairs from a reply. Then downloads each file.
fn download_signed(
    rest: &RestStore,
    endpoint: &str,
    root: &str,
    files: &[RemoteFile],
    dest: &Path,
    body: impl Fn(&[String]) -> Value,
    entries: impl Fn(&Value) -> Vec<(String, Signed)>,
) -> Result<u64> {
    let from = &format!("{}{endpoint}", rest.base());
    let sign = |paths: &[String], token: Option<&str>| -> Result<Value> {
        let mut body = body(paths);
        if let Some(t) = token {
            body["page_token"] = Value::String(t.to_string());
        }
        Ok(rest.api_post(endpoint, &body)?.unwrap_or_default())
    };
    let mut signed: BTreeMap<String, Signed> = BTreeMap::new();
    for batch in files.chunks(CREDENTIAL_BATCH) {
        let paths: Vec<String> = batch.iter().map(|f| join(root, &f.path)).collect();
        paged(from, |token| sign(&paths, token), |reply| signed.extend(entries(reply)))?;
    }
    let mut bytes = 0;
    for f in files {
        let full = join(root, &f.path);
        let missing =
            || Error::Remote { url: from.to_string(), reason: format!("the workspace gave no signed URL for {full}") };
        let (uri, headers) = signed.get(&full).ok_or_else(missing)?;
        let target = target(dest, &f.path, from)?;
        bytes += match rest.download(uri, headers, false, &target, f.size) {
            // Signed URLs expire (a long download of many files): one new URL, as MLflow asks again.
            Err(Error::Remote { reason, .. }) if reason.contains("signed URL was refused") => {
                let mut fresh = BTreeMap::new();
                paged(from, |token| sign(std::slice::from_ref(&full), token), |reply| fresh.extend(entries(reply)))?;
                let (uri, headers) = fresh.get(&full).ok_or_else(missing)?;
                rest.download(uri, headers, false, &target, f.size)?
            }
            other => other?,
        };
    }
    Ok(bytes)
}

/// A signed URL from a `{path, signed_uri, headers}` credential.
fn credential(c: &Value) -> Option<(String, Signed)> {
    Some((c["path"].as_str()?.to_string(), (c["signed_uri"].as_str()?.to_string(), headers_of(&c["headers"]))))
}

/// A run's artifacts: listed with `artifacts/list`, read through `credentials-for-read`.
#[derive(Debug)]
struct RunFiles {
    rest: RestStore,
    run_id: String,
    /// The directory below the run's artifact root.
    root: String,
}

impl ArtifactFetcher for RunFiles {
    fn describe(&self) -> String {
        format!("run {} on {}, through signed URLs (credentials-for-read)", self.run_id, self.rest.base())
    }

    fn list(&self) -> Result<Vec<RemoteFile>> {
        walk(|dir| {
            let path = join(&self.root, dir);
            let query = [("run_id", self.run_id.as_str()), ("path", path.as_str())];
            list_level(&self.rest, "/api/2.0/mlflow/artifacts/list", &query, &self.root)
        })
    }

    fn download(&self, files: &[RemoteFile], dest: &Path) -> Result<u64> {
        download_signed(
            &self.rest,
            "/api/2.0/mlflow/artifacts/credentials-for-read",
            &self.root,
            files,
            dest,
            |paths| json!({ "run_id": self.run_id, "path": paths }),
            |reply| reply["credential_infos"].as_array().into_iter().flatten().filter_map(credential).collect(),
        )
    }
}

/// An MLflow 3 logged model's artifacts.
#[derive(Debug)]
struct LoggedModelFiles {
    rest: RestStore,
    model_id: String,
    root: String,
}

impl ArtifactFetcher for LoggedModelFiles {
    fn describe(&self) -> String {
        format!("logged model {} on {}, through signed URLs", self.model_id, self.rest.base())
    }

    fn list(&self) -> Result<Vec<RemoteFile>> {
        let endpoint = format!("/api/2.0/mlflow/logged-models/{}/artifacts/directories", self.model_id);
        walk(|dir| {
            let path = join(&self.root, dir);
            list_level(&self.rest, &endpoint, &[("artifact_directory_path", path.as_str())], &self.root)
        })
    }

    fn download(&self, files: &[RemoteFile], dest: &Path) -> Result<u64> {
        let endpoint = format!("/api/2.0/mlflow/logged-models/{}/artifacts/credentials-for-download", self.model_id);
        download_signed(
            &self.rest,
            &endpoint,
            &self.root,
            files,
            dest,
            |paths| json!({ "paths": paths }),
            |reply| {
                let creds = reply["credentials"].as_array().into_iter().flatten();
                creds.filter_map(|c| credential(&c["credential_info"])).collect()
            },
        )
    }
}

/// A version of the workspace model registry: `list-artifacts` and `get-signed-download-uri`.
#[derive(Debug)]
struct WorkspaceRegistryFiles {
    rest: RestStore,
    name: String,
    version: u64,
}

impl ArtifactFetcher for WorkspaceRegistryFiles {
    fn describe(&self) -> String {
        format!(
            "version {} of '{}' in the workspace registry of {}, through signed URLs",
            self.version,
            self.name,
            self.rest.base()
        )
    }

    fn list(&self) -> Result<Vec<RemoteFile>> {
        let v = self.version.to_string();
        walk(|dir| {
            let query = [("name", self.name.as_str()), ("version", v.as_str()), ("path", dir)];
            list_level(&self.rest, "/api/2.0/mlflow/model-versions/list-artifacts", &query, "")
        })
    }

    fn download(&self, files: &[RemoteFile], dest: &Path) -> Result<u64> {
        let endpoint = "/api/2.0/mlflow/model-versions/get-signed-download-uri";
        let from = format!("{}{endpoint}", self.rest.base());
        let v = self.version.to_string();
        let mut bytes = 0;
        for f in files {
            let q = [("name", self.name.as_str()), ("version", v.as_str()), ("path", f.path.as_str())];
            let reply = self.rest.api_get(endpoint, &q)?.unwrap_or_default();
            let uri = reply["signed_uri"].as_str().ok_or_else(|| Error::Remote {
                url: from.clone(),
                reason: format!("no signed URL for {} of version {} of '{}'", f.path, self.version, self.name),
            })?;
            let target = target(dest, &f.path, &from)?;
            bytes += self.rest.download(uri, &headers_of(&reply["headers"]), false, &target, f.size)?;
        }
        Ok(bytes)
    }
}

/// Files read through the workspace's Files API (`/api/2.0/fs/…`) with the workspace's own
/// credentials: Unity Catalog volumes, and model versions where the workspace says so.
#[derive(Debug)]
struct FilesApi {
    rest: RestStore,
    /// An absolute workspace path: `/Models/<catalog>/<schema>/<model>/<version>`, `/Volumes/…`.
    root: String,
}

impl FilesApi {
    fn list_tree(&self) -> Result<Vec<RemoteFile>> {
        walk(|dir| {
            let path = join(&self.root, dir);
            let endpoint = format!("/api/2.0/fs/directories{}", encode(&path));
            let mut out = Vec::new();
            paged(
                &endpoint,
                |token| {
                    let q: Vec<(&str, &str)> = token.map(|t| ("page_token", t)).into_iter().collect();
                    Ok(self.rest.api_get(&endpoint, &q)?.unwrap_or_default())
                },
                |reply| {
                    for f in reply["contents"].as_array().into_iter().flatten() {
                        let full = f["path"].as_str().unwrap_or_default();
                        let rel = full.strip_prefix(&self.root).unwrap_or(full).trim_start_matches('/');
                        let is_dir = f["is_directory"].as_bool().unwrap_or(false);
                        out.push((rel.to_string(), is_dir, f["file_size"].as_u64()));
                    }
                },
            )?;
            Ok(out)
        })
    }
}

impl ArtifactFetcher for FilesApi {
    fn describe(&self) -> String {
        format!("{} through the Files API of {}", self.root, self.rest.base())
    }

    fn list(&self) -> Result<Vec<RemoteFile>> {
        self.list_tree()
    }

    fn download(&self, files: &[RemoteFile], dest: &Path) -> Result<u64> {
        let mut bytes = 0;
        for f in files {
            let url = format!("{}/api/2.0/fs/files{}", self.rest.base(), encode(&join(&self.root, &f.path)));
            bytes += self.rest.download(&url, &[], true, &target(dest, &f.path, &url)?, f.size)?;
        }
        Ok(bytes)
    }
}

/// The Files API where it serves the files, else another route (signed URLs): MLflow's own order
/// for run and logged-model artifacts. The route that listed the files downloads them.
#[derive(Debug)]
struct FilesFirst {
    files: FilesApi,
    signed: Box<dyn ArtifactFetcher>,
    /// 0: not listed yet, 1: the Files API, 2: the other route.
    chosen: std::sync::atomic::AtomicU8,
}

impl ArtifactFetcher for FilesFirst {
    fn describe(&self) -> String {
        match self.chosen.load(std::sync::atomic::Ordering::Relaxed) {
            1 => self.files.describe(),
            _ => self.signed.describe(),
        }
    }

    fn list(&self) -> Result<Vec<RemoteFile>> {
        use std::sync::atomic::Ordering;
        match self.files.list_tree() {
            Ok(files) if !files.is_empty() => {
                self.chosen.store(1, Ordering::Relaxed);
                Ok(files)
            }
            // Not there, not enabled, or refused: the workspace's signed URLs serve the same files.
            _ => {
                self.chosen.store(2, Ordering::Relaxed);
                self.signed.list()
            }
        }
    }

    fn download(&self, files: &[RemoteFile], dest: &Path) -> Result<u64> {
        match self.chosen.load(std::sync::atomic::Ordering::Relaxed) {
            1 => self.files.download(files, dest),
            _ => self.signed.download(files, dest),
        }
    }
}

/// Percent-encodes a workspace path for a URL, keeping its slashes.
fn encode(path: &str) -> String {
    path.split('/')
        .map(|seg| url::form_urlencoded::byte_serialize(seg.as_bytes()).collect::<String>().replace('+', "%20"))
        .collect::<Vec<_>>()
        .join("/")
}

/// A Unity Catalog model version, read the way MLflow's client reads it: the Files API when the
/// workspace asks for it, signed URLs for default storage, else the version's storage location
/// with the temporary credentials Unity Catalog issues for it.
#[derive(Debug)]
struct UnityCatalogFiles {
    rest: RestStore,
    name: String,
    version: u64,
}

/// How a Unity Catalog version's files are reached.
enum UcRoute {
    Files(FilesApi),
    DefaultStorage(FilesApi),
    Storage { url: url::Url, credentials: TemporaryCredentials },
}

impl UnityCatalogFiles {
    fn models_path(&self) -> String {
        format!("/Models/{}/{}", self.name.replace('.', "/"), self.version)
    }

    fn endpoint(&self, e: &str) -> String {
        format!("/api/2.0/mlflow/unity-catalog/{e}")
    }

    fn route(&self) -> Result<UcRoute> {
        let files = || FilesApi { rest: self.rest.clone(), root: self.models_path() };
        let forced = std::env::var("MLFLOW_USE_DATABRICKS_SDK_MODEL_ARTIFACTS_REPO_FOR_UC")
            .ok()
            .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1"));
        let use_files = match forced {
            Some(f) => f,
            None => self
                .rest
                .api_get(
                    &self.endpoint("registered-models:is-databricks-sdk-models-artifact-repository-enabled"),
                    &[("name", self.name.as_str())],
                )
                .ok()
                .flatten()
                .and_then(|r| r["is_databricks_sdk_models_artifact_repository_enabled"].as_bool())
                .unwrap_or(false),
        };
        if use_files {
            return Ok(UcRoute::Files(files()));
        }
        let creds = self.temporary_credentials()?;
        if creds["storage_mode"] == "DEFAULT_STORAGE" {
            return Ok(UcRoute::DefaultStorage(files()));
        }
        let v = self.version.to_string();
        let reply = self
            .rest
            .api_get(&self.endpoint("model-versions/get-download-uri"), &[("name", &self.name), ("version", &v)])?
            .unwrap_or_default();
        let location = reply["artifact_uri"].as_str().ok_or_else(|| Error::Store {
            store: self.rest.base().to_string(),
            reason: format!("Unity Catalog gave no storage location for version {} of {}", self.version, self.name),
        })?;
        let url = objects::parse_url(location)?;
        Ok(UcRoute::Storage { url, credentials: self.credentials_of(&creds)? })
    }

    fn temporary_credentials(&self) -> Result<Value> {
        let body = json!({
            "name": self.name,
            "version": self.version.to_string(),
            "operation": "MODEL_VERSION_OPERATION_READ",
        });
        let reply = self
            .rest
            .api_post(&self.endpoint("model-versions/generate-temporary-credentials"), &body)?
            .unwrap_or_default();
        Ok(reply["credentials"].clone())
    }

    fn credentials_of(&self, c: &Value) -> Result<TemporaryCredentials> {
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        if let Some(aws) = c.get("aws_temp_credentials").or_else(|| c.get("r2_temp_credentials")) {
            return Ok(TemporaryCredentials::Aws {
                access_key_id: s(&aws["access_key_id"]),
                secret_access_key: s(&aws["secret_access_key"]),
                session_token: s(&aws["session_token"]),
            });
        }
        if let Some(sas) = c["azure_user_delegation_sas"]["sas_token"].as_str() {
            return Ok(TemporaryCredentials::AzureSas(sas.to_string()));
        }
        if let Some(token) = c["gcp_oauth_token"]["oauth_token"].as_str() {
            return Ok(TemporaryCredentials::GcpBearer(token.to_string()));
        }
        Err(Error::Store {
            store: self.rest.base().to_string(),
            reason: format!(
                "Unity Catalog issued credentials of a kind mlscore does not know for version {} of {}",
                self.version, self.name
            ),
        })
    }

    fn storage_listing(url: &url::Url, credentials: &TemporaryCredentials) -> Result<Vec<objects::Listed>> {
        let (store, prefix) = objects::open_with(url, credentials)?;
        objects::block_on(objects::list(store.as_ref(), url, &prefix))?
    }
}

impl ArtifactFetcher for UnityCatalogFiles {
    fn describe(&self) -> String {
        format!("version {} of {} in Unity Catalog on {}", self.version, self.name, self.rest.base())
    }

    fn list(&self) -> Result<Vec<RemoteFile>> {
        Ok(match self.route()? {
            UcRoute::Files(f) | UcRoute::DefaultStorage(f) => f.list_tree()?,
            UcRoute::Storage { url, credentials } => Self::storage_listing(&url, &credentials)?
                .into_iter()
                .map(|l| RemoteFile { path: l.relative, size: Some(l.size) })
                .collect(),
        })
    }

    fn download(&self, files: &[RemoteFile], dest: &Path) -> Result<u64> {
        match self.route()? {
            UcRoute::Files(f) => f.download(files, dest),
            UcRoute::DefaultStorage(f) => {
                let endpoint = "/api/2.0/fs/create-download-url";
                let from = format!("{}{endpoint}", self.rest.base());
                let mut bytes = 0;
                for file in files {
                    let path = join(&f.root, &file.path);
                    let reply = self.rest.api_post(endpoint, &json!({ "path": path }))?.unwrap_or_default();
                    let url = reply["url"].as_str().ok_or_else(|| Error::Remote {
                        url: from.clone(),
                        reason: format!("no download URL for {path}"),
                    })?;
                    bytes += self.rest.download(
                        url,
                        &headers_of(&reply["headers"]),
                        false,
                        &target(dest, &file.path, &from)?,
                        file.size,
                    )?;
                }
                Ok(bytes)
            }
            UcRoute::Storage { url, credentials } => {
                let fetch = |credentials: &TemporaryCredentials| -> Result<u64> {
                    let (store, prefix) = objects::open_with(&url, credentials)?;
                    let listed = objects::block_on(objects::list(store.as_ref(), &url, &prefix))??;
                    let wanted: Vec<objects::Listed> =
                        listed.into_iter().filter(|l| files.iter().any(|f| f.path == l.relative)).collect();
                    objects::block_on(objects::download(store.as_ref(), &url, &wanted, dest))?
                };
                match fetch(&credentials) {
                    // Temporary credentials that expired between listing and download: once more with new ones.
                    Err(Error::ObjectStore { reason, .. })
                        if reason.contains("403") || reason.to_ascii_lowercase().contains("expired") =>
                    {
                        let fresh = self.credentials_of(&self.temporary_credentials()?)?;
                        fetch(&fresh)
                    }
                    other => other,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k: &str| map.get(k).cloned()
    }

    #[test]
    fn uris_name_the_registry_and_the_profile() {
        assert_eq!(parse_uri("databricks").unwrap(), (false, None));
        assert_eq!(parse_uri("databricks-uc").unwrap(), (true, None));
        assert_eq!(parse_uri("databricks://prod").unwrap(), (false, Some("prod".into())));
        assert_eq!(parse_uri("databricks-uc://prod/").unwrap(), (true, Some("prod".into())));
        let err = parse_uri("databricks://scope:prefix").unwrap_err().to_string();
        assert!(err.contains("notebook"), "{err}");
        assert!(parse_uri("databricksx").is_err());
    }

    #[test]
    fn ini_files_are_read_like_databricks_cli_reads_them() {
        let ini =
            parse_ini("host = https://a\n; note\n[prod]\nhost=https://p/\ntoken = dapi1\n# x\n[m2m]\nclient_id: c\n");
        assert_eq!(ini["DEFAULT"]["host"], "https://a");
        assert_eq!(ini["prod"]["token"], "dapi1");
        assert_eq!(ini["m2m"]["client_id"], "c");
    }

    #[test]
    fn credentials_follow_mlflows_order() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("cfg");
        std::fs::write(&cfg, "[DEFAULT]\nhost = default.example\ntoken = t0\n[prod]\nhost = https://prod.example/\ntoken = t1\n[bad]\nhost = x\n")
            .unwrap();
        // A profile: only the file's section.
        let env = env_of(&[("DATABRICKS_HOST", "https://env.example"), ("DATABRICKS_TOKEN", "t2")]);
        let c = credentials("databricks://prod", Some("prod"), &env, &cfg).unwrap();
        assert_eq!(c.host, "https://prod.example");
        assert!(c.source.contains("profile 'prod'"));
        // The environment before [DEFAULT].
        let c = credentials("databricks", None, &env, &cfg).unwrap();
        assert_eq!(c.host, "https://env.example");
        assert!(matches!(c.auth, Auth::Header(ref h) if h == "Bearer t2"));
        // [DEFAULT] last, with https:// added to a bare host.
        let c = credentials("databricks", None, &env_of(&[]), &cfg).unwrap();
        assert_eq!(c.host, "https://default.example");
        // DATABRICKS_CONFIG_PROFILE picks a profile too.
        let c = credentials("databricks", None, &env_of(&[("DATABRICKS_CONFIG_PROFILE", "prod")]), &cfg).unwrap();
        assert_eq!(c.host, "https://prod.example");
        // OAuth machine-to-machine from the environment.
        let m2m = env_of(&[
            ("DATABRICKS_HOST", "https://w.example"),
            ("DATABRICKS_CLIENT_ID", "id"),
            ("DATABRICKS_CLIENT_SECRET", "s"),
        ]);
        let c = credentials("databricks", None, &m2m, &dir.path().join("none")).unwrap();
        assert!(matches!(c.auth, Auth::ClientCredentials(ref cc) if cc.basic_auth && cc.scope == "all-apis"));
        // What is missing is said, never a secret.
        let err = credentials("databricks://bad", Some("bad"), &env, &cfg).err().unwrap().to_string();
        assert!(err.contains("needs host and token"), "{err}");
        let err = credentials("databricks://nope", Some("nope"), &env, &cfg).err().unwrap().to_string();
        assert!(err.contains("profile 'nope' is not in"), "{err}");
        let err = credentials("databricks", None, &env_of(&[("DATABRICKS_HOST", "h")]), &dir.path().join("none"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("DATABRICKS_TOKEN") && err.contains("none of the credentials"), "{err}");
        assert!(!err.contains("t1") && !err.contains("t2"), "{err}");
    }
}
