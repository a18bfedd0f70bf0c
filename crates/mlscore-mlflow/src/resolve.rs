//! From a model URI to a directory of model files, the way MLflow's client gets there.
//!
//! - `models:/<name>/<version|latest|stage>` and `models:/<name>@<alias>` pick a version of a
//!   registered model; its files are at the version's `storage_location`, else its `source`
//!   (which in MLflow 3 is itself `models:/m-<id>`, a logged model).
//! - `models:/m-<id>` is a logged model: its `artifact_location`.
//! - `runs:/<run>/<path>` is `<run artifact root>/<path>`; when nothing is there (MLflow 3 keeps
//!   models outside the run) it falls back to the run's logged model named by the first path
//!   segment, as MLflow does.
//!
//! Local stores record absolute paths. When a store has been moved or copied (a clone of a
//! repository, a colleague's `mlruns/`), the recorded path no longer exists; the resolver then
//! looks for the same relative layout under the store's directory and says so in the notes.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::store::{ArtifactFetcher, LoggedModelInfo, ModelVersion, RegisteredModel, StoreConfig, TrackingStore};
use crate::uri::{ModelUri, VersionSelector, file_uri_path, scheme_of};

/// Where a model was found, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    /// The URI as the user gave it.
    pub uri: String,
    /// The tracking or registry store consulted, if any.
    pub store: Option<String>,
    /// Registered model name and version, for `models:/<name>…` URIs.
    pub registered: Option<(String, u64)>,
    /// The run the model belongs to, when known.
    pub run_id: Option<String>,
    /// The MLflow 3 logged model id, when known.
    pub model_id: Option<String>,
    /// The artifact location the store gave (path or URI), before any relocation.
    pub artifact_location: String,
    /// The local directory (or `.onnx` file) the model is read from.
    pub local_path: PathBuf,
    /// How the URI was followed, one step a line, for `mlscore inspect`.
    pub steps: Vec<String>,
}

/// Resolves a model URI to local model files.
///
/// Remote files (object stores, `mlflow-artifacts:` through a tracking server) are downloaded
/// into the cache directory of `config` once, and read from there.
pub fn resolve(uri: &str, config: &StoreConfig) -> Result<Resolution> {
    if let Some((plain, registry)) = profile_in_uri(uri)? {
        // `models://<profile>@databricks-uc/…`: this URI's own registry, as MLflow reads it.
        let config = StoreConfig { registry_uri: registry, ..config.clone() };
        let mut res = resolve(&plain, &config)?;
        res.uri = uri.to_string();
        return Ok(res);
    }
    let parsed = ModelUri::parse(uri)?;
    let mut res = Resolution { uri: uri.to_string(), ..Resolution::default() };
    let location = match &parsed {
        ModelUri::Local(p) => {
            let path = if p.is_absolute() { p.clone() } else { config.base_dir.join(p) };
            res.artifact_location = path.display().to_string();
            res.local_path = path;
            return check_local(uri, res);
        }
        ModelUri::MlflowArtifacts(u) => {
            res.artifact_location.clone_from(u);
            res.local_path = fetch_from_server(uri, u, config, &mut res.steps)?;
            return check_local(uri, res);
        }
        ModelUri::Remote(u) => {
            res.artifact_location.clone_from(u);
            res.local_path = fetch_from_object_store(uri, u, config, &mut res.steps)?;
            return check_local(uri, res);
        }
        ModelUri::Registered { name, selector, sub_path } => {
            let store = config.registry_store()?;
            res.store = Some(store.location());
            let version = select_version(store.as_ref(), uri, name, selector)?;
            res.registered = Some((version.name.clone(), version.version));
            res.run_id.clone_from(&version.run_id);
            res.steps.push(match selector {
                VersionSelector::Version(_) => {
                    format!("{uri}: registered model '{name}' version {} in {}", version.version, store.location())
                }
                other => format!(
                    "{uri}: {other} is version {} of registered model '{name}' in {}",
                    version.version,
                    store.location()
                ),
            });
            if let Some(status) = version.status.as_deref().filter(|s| *s != "READY") {
                return Err(Error::NotFound {
                    uri: uri.to_string(),
                    what: format!("version {} of '{name}' has status {status}", version.version),
                    hint: Some("only READY versions can be loaded".into()),
                });
            }
            if let Some(fetcher) = store.version_artifacts(&version)? {
                // The registry serves the version's files itself (Databricks): MLflow reads them there.
                res.artifact_location = fetcher.describe();
                if let Some(id) = source_model_id(&version) {
                    res.model_id = Some(id);
                }
                let key = format!("{}\n{}\n{}", store.location(), version.name, version.version);
                let dir = fetch_with(fetcher.as_ref(), &key, config, &mut res.steps)?;
                res.local_path = if sub_path.is_empty() { dir } else { dir.join(sub_path) };
                return check_local(uri, res);
            }
            let tracking = config.tracking_store()?;
            let base = version_location(tracking.as_ref(), store.as_ref(), uri, &version, &mut res)?;
            join_sub(&base, sub_path)
        }
        ModelUri::LoggedModel { model_id, sub_path } => {
            let store = config.tracking_store()?;
            res.store = Some(store.location());
            let lm = logged_model(store.as_ref(), uri, model_id)?;
            note_logged_model(&mut res, &lm);
            join_sub(&lm.artifact_location, sub_path)
        }
        ModelUri::Run { run_id, path } => {
            let store = config.tracking_store()?;
            res.store = Some(store.location());
            run_location(store.as_ref(), uri, run_id, path, &mut res)?
        }
    };
    res.artifact_location.clone_from(&location);
    let tracking = config.tracking_store().ok();
    if let Some(t) = &tracking
        && let Some(fetcher) = t.location_artifacts(&location)?
    {
        let key = format!("{}\n{location}", t.location());
        res.local_path = fetch_with(fetcher.as_ref(), &key, config, &mut res.steps)?;
        return check_local(uri, res);
    }
    if location.starts_with("mlflow-artifacts:") {
        res.local_path = fetch_from_server(uri, &location, config, &mut res.steps)?;
        return check_local(uri, res);
    }
    if as_local_path(&location).is_none() && crate::objects::is_object_url(&location) {
        res.local_path = fetch_from_object_store(uri, &location, config, &mut res.steps)?;
        return check_local(uri, res);
    }
    let store_root = tracking.and_then(|t| t.local_root());
    res.local_path = local_artifact_path(uri, &location, store_root.as_deref(), &mut res.steps)?;
    check_local(uri, res)
}

/// Downloads `mlflow-artifacts:` files through the tracking server into the cache, once: the
/// cache holds one directory per server and artifact location (a registered version's or a
/// logged model's files never change), filled under a temporary name and renamed when complete.
fn fetch_from_server(uri: &str, location: &str, config: &StoreConfig, steps: &mut Vec<String>) -> Result<PathBuf> {
    let no_server = || Error::Unsupported {
        location: uri.to_string(),
        reason: format!(
            "its files are at {location}, which only an MLflow tracking server can serve; set MLFLOW_TRACKING_URI \
             to the server's http(s):// URI"
        ),
    };
    // The tracking server serves artifacts; the registry is asked only when tracking is not a server.
    let tracking = config.tracking_store()?;
    let registry;
    let server = match tracking.remote_artifacts() {
        Some(server) => server,
        None => {
            registry = config.registry_store()?;
            registry.remote_artifacts().ok_or_else(no_server)?
        }
    };
    let key = cache_key(&format!("{}\n{location}", server.location()));
    let (dir, bytes) = match fill_cache(config, &key, |tmp| server.download_artifacts(location, tmp))? {
        Cached::Hit(dir) => {
            steps.push(format!("{location}: in the cache at {}", dir.display()));
            return Ok(dir);
        }
        Cached::Filled(dir, bytes) => (dir, bytes),
    };
    steps.push(format!("{location}: downloaded {bytes} bytes from {} into {}", server.location(), dir.display()));
    Ok(dir)
}

/// Downloads a model from an object store (or an `https://` URL) into the cache. The cache entry
/// is keyed by the URL and the listing (names, sizes, ETags), so a model overwritten in place is
/// downloaded again while an unchanged one is read from the cache.
fn fetch_from_object_store(
    uri: &str,
    location: &str,
    config: &StoreConfig,
    steps: &mut Vec<String>,
) -> Result<PathBuf> {
    use crate::objects;
    let Listing { url, store, prefix, files } = list_location(location)?;
    if files.is_empty() {
        return Err(Error::NotFound {
            uri: uri.to_string(),
            what: format!("no objects at {location}"),
            hint: Some("check the URL and that the credentials in the environment can list it".into()),
        });
    }
    let single = (files.len() == 1 && files[0].location == prefix).then(|| files[0].relative.clone());
    let mut listing = format!("objects\n{url}");
    for f in &files {
        listing.push_str(&format!("\n{}\t{}\t{}", f.relative, f.size, f.version));
    }
    let key = cache_key(&listing);
    let fetched = fill_cache(config, &key, |tmp| {
        std::fs::create_dir_all(tmp).map_err(|e| Error::io("cannot create", tmp, e))?;
        objects::block_on(objects::download(store.as_ref(), &url, &files, tmp))?
    })?;
    let dir = match fetched {
        Cached::Hit(dir) => {
            steps.push(format!("{location}: unchanged since it was cached at {}", dir.display()));
            dir
        }
        Cached::Filled(dir, bytes) => {
            steps.push(format!("{location}: downloaded {bytes} bytes ({} files) into {}", files.len(), dir.display()));
            dir
        }
    };
    Ok(match single {
        Some(name) => dir.join(name),
        None => dir,
    })
}

/// Downloads the files a service hands out into the cache. The entry is keyed by `key` and the
/// listing (names and sizes), so that changed files are downloaded again.
fn fetch_with(
    fetcher: &dyn ArtifactFetcher,
    key: &str,
    config: &StoreConfig,
    steps: &mut Vec<String>,
) -> Result<PathBuf> {
    let files = fetcher.list()?;
    if files.is_empty() {
        return Err(Error::NotFound {
            uri: fetcher.describe(),
            what: "no files there".into(),
            hint: Some("the model's files were deleted, or the credentials in use cannot list them".into()),
        });
    }
    let mut listing = format!("fetched\n{key}");
    for f in &files {
        listing.push_str(&format!("\n{}\t{}", f.path, f.size.map_or_else(String::new, |s| s.to_string())));
    }
    match fill_cache(config, &cache_key(&listing), |tmp| {
        std::fs::create_dir_all(tmp).map_err(|e| Error::io("cannot create", tmp, e))?;
        fetcher.download(&files, tmp)
    })? {
        Cached::Hit(dir) => {
            steps.push(format!("{}: unchanged since it was cached at {}", fetcher.describe(), dir.display()));
            Ok(dir)
        }
        Cached::Filled(dir, bytes) => {
            steps.push(format!(
                "{}: downloaded {bytes} bytes ({} files) into {}",
                fetcher.describe(),
                files.len(),
                dir.display()
            ));
            Ok(dir)
        }
    }
}

/// A `models://<profile>@<registry>/…` URI as the plain `models:/…` URI and the registry URI
/// (`databricks-uc://<profile>`) it names; `None` for every other URI.
fn profile_in_uri(uri: &str) -> Result<Option<(String, String)>> {
    let Some(rest) = uri.trim().strip_prefix("models://") else {
        return Ok(None);
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let Some((profile, scheme)) = authority.split_once('@') else {
        return Err(Error::invalid_uri(
            uri,
            "expected models:/<name>/… or models://<profile>@databricks[-uc]/<name>/…",
        ));
    };
    if !matches!(scheme, "databricks" | "databricks-uc") || profile.is_empty() {
        return Err(Error::invalid_uri(
            uri,
            "the registry in models://<profile>@<registry>/ must be databricks or databricks-uc",
        ));
    }
    Ok(Some((format!("models:/{path}"), format!("{scheme}://{profile}"))))
}

fn cache_key(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).iter().take(16).map(|b| format!("{b:02x}")).collect()
}

enum Cached {
    Hit(PathBuf),
    Filled(PathBuf, u64),
}

/// The cache entry `key`: there already (unless refreshing), or filled by `download` under a
/// temporary name and renamed when complete, so an interrupted download leaves nothing behind.
fn fill_cache(config: &StoreConfig, key: &str, download: impl FnOnce(&Path) -> Result<u64>) -> Result<Cached> {
    let dir = config.cache_dir.join(key);
    if dir.is_dir() && !config.refresh {
        return Ok(Cached::Hit(dir));
    }
    std::fs::create_dir_all(&config.cache_dir).map_err(|e| Error::io("cannot create", &config.cache_dir, e))?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let tmp = config.cache_dir.join(format!(".{key}.tmp-{}-{nanos}", std::process::id()));
    let bytes = match download(&tmp) {
        Ok(b) => b,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    if config.refresh && dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io("cannot replace", &dir, e))?;
    }
    if let Err(e) = std::fs::rename(&tmp, &dir) {
        let _ = std::fs::remove_dir_all(&tmp);
        // Another process filled the same entry meanwhile: theirs is as good.
        if !dir.is_dir() {
            return Err(Error::io("cannot create", &dir, e));
        }
    }
    Ok(Cached::Filled(dir, bytes))
}

fn remote_unsupported(uri: &str, location: &str) -> Error {
    Error::Unsupported {
        location: uri.to_string(),
        reason: format!(
            "its files are at {location}, a kind of location mlscore cannot read (it reads local paths, \
             mlflow-artifacts: through a tracking server, and {} URLs); download the model directory \
             (e.g. `mlflow artifacts download -u {uri}`) and pass its path",
            crate::objects::SCHEMES.join(", ")
        ),
    }
}

/// The version a selector names, or a NotFound error that lists what there is.
pub fn select_version(
    store: &dyn TrackingStore,
    uri: &str,
    name: &str,
    selector: &VersionSelector,
) -> Result<ModelVersion> {
    if let (VersionSelector::Latest | VersionSelector::Stage(_), Some(advice)) =
        (selector, store.refuses_latest_and_stages())
    {
        return Err(Error::NotFound {
            uri: uri.to_string(),
            what: format!("{selector} of '{name}'"),
            hint: Some(advice),
        });
    }
    // A version or an alias is asked for directly; the whole model only to say what there is.
    let direct = match selector {
        VersionSelector::Version(v) => store.model_version(name, *v)?,
        VersionSelector::Alias(a) => store.version_by_alias(name, a)?,
        _ => None,
    };
    if let Some(v) = direct {
        return Ok(v);
    }
    let Some(model) = store.registered_model(name)? else {
        let names = store.registered_model_names()?;
        let hint = if names.is_empty() {
            format!("{} has no registered models; check MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI", store.location())
        } else {
            format!("registered models in {}: {}", store.location(), names.join(", "))
        };
        return Err(Error::NotFound {
            uri: uri.to_string(),
            what: format!("no registered model named '{name}'"),
            hint: Some(hint),
        });
    };
    let found = match selector {
        VersionSelector::Version(v) => model.versions.iter().find(|mv| mv.version == *v),
        VersionSelector::Latest => model.versions.iter().max_by_key(|mv| mv.version),
        VersionSelector::Stage(stage) => model
            .versions
            .iter()
            .filter(|mv| mv.current_stage.as_deref().is_some_and(|s| s.eq_ignore_ascii_case(stage)))
            .max_by_key(|mv| mv.version),
        VersionSelector::Alias(alias) => match model.aliases.get(alias) {
            Some(v) => model.versions.iter().find(|mv| mv.version == *v),
            None => {
                return Err(Error::NotFound {
                    uri: uri.to_string(),
                    what: format!("registered model '{name}' has no alias '{alias}'"),
                    hint: Some(describe_aliases(&model)),
                });
            }
        },
    };
    found.cloned().ok_or_else(|| Error::NotFound {
        uri: uri.to_string(),
        what: format!("registered model '{name}' has no {selector}"),
        hint: Some(describe_versions(&model)),
    })
}

fn describe_aliases(model: &RegisteredModel) -> String {
    if model.aliases.is_empty() {
        return format!(
            "'{}' has no aliases; use models:/{}/<version> or set one with MlflowClient.set_registered_model_alias",
            model.name, model.name
        );
    }
    let list: Vec<String> = model.aliases.iter().map(|(a, v)| format!("@{a} -> version {v}")).collect();
    format!("its aliases: {}", list.join(", "))
}

fn describe_versions(model: &RegisteredModel) -> String {
    if model.versions.is_empty() {
        return format!("'{}' has no versions", model.name);
    }
    let list: Vec<String> = model
        .versions
        .iter()
        .map(|v| match v.current_stage.as_deref().filter(|s| !s.eq_ignore_ascii_case("none")) {
            Some(stage) => format!("{} ({stage})", v.version),
            None => v.version.to_string(),
        })
        .collect();
    format!("its versions: {}", list.join(", "))
}

fn logged_model(store: &dyn TrackingStore, uri: &str, model_id: &str) -> Result<LoggedModelInfo> {
    store.logged_model(model_id)?.ok_or_else(|| Error::NotFound {
        uri: uri.to_string(),
        what: format!("no logged model with id '{model_id}' in {}", store.location()),
        hint: Some(if crate::uri::is_model_id(model_id) {
            "check MLFLOW_TRACKING_URI".to_string()
        } else {
            format!(
                "models:/<one segment> names an MLflow 3 logged model id (m-<32 hex>); for a registered model use \
                 models:/{model_id}/<version>, models:/{model_id}/latest or models:/{model_id}@<alias>"
            )
        }),
    })
}

fn note_logged_model(res: &mut Resolution, lm: &LoggedModelInfo) {
    res.model_id = Some(lm.model_id.clone());
    if res.run_id.is_none() {
        res.run_id.clone_from(&lm.source_run_id);
    }
    res.steps.push(format!(
        "logged model {} ('{}', experiment {}) has its files at {}",
        lm.model_id, lm.name, lm.experiment_id, lm.artifact_location
    ));
}

/// The logged model a version's `source` names (`models:/m-<id>[/…]`, MLflow 3), if any.
fn source_model_id(version: &ModelVersion) -> Option<String> {
    let id = version.source.as_deref()?.strip_prefix("models:/")?;
    Some(id.split('/').next().unwrap_or(id).to_string())
}

fn version_location(
    tracking: &dyn TrackingStore,
    registry: &dyn TrackingStore,
    uri: &str,
    version: &ModelVersion,
    res: &mut Resolution,
) -> Result<String> {
    if let Some(loc) = version.storage_location.as_deref().filter(|s| !s.is_empty()) {
        if let Some(id) = source_model_id(version) {
            res.model_id = Some(id);
        }
        res.steps.push(format!("version {} is stored at {loc}", version.version));
        return Ok(loc.to_string());
    }
    let source = version.source.as_deref().unwrap_or_default();
    match ModelUri::parse(source) {
        Ok(ModelUri::LoggedModel { model_id, sub_path }) => {
            let lm = logged_model(tracking, uri, &model_id)?;
            note_logged_model(res, &lm);
            Ok(join_sub(&lm.artifact_location, &sub_path))
        }
        Ok(ModelUri::Run { run_id, path }) => run_location(tracking, uri, &run_id, &path, res),
        Ok(ModelUri::Registered { .. }) => Err(Error::Store {
            store: registry.location(),
            reason: format!(
                "version {} of '{}' has source {source}, which names another registered model",
                version.version, version.name
            ),
        }),
        // A location URI (an object store, a service's own scheme such as azureml:// or dbfs:/).
        parsed if !source.is_empty() && (parsed.is_ok() || scheme_of(source).is_some()) => {
            res.steps.push(format!("version {} has source {source}", version.version));
            Ok(source.to_string())
        }
        _ => Err(Error::Store {
            store: registry.location(),
            reason: format!(
                "version {} of '{}' has neither a storage location nor a usable source",
                version.version, version.name
            ),
        }),
    }
}

fn run_location(
    store: &dyn TrackingStore,
    uri: &str,
    run_id: &str,
    path: &str,
    res: &mut Resolution,
) -> Result<String> {
    let run = store.run(run_id)?.ok_or_else(|| Error::NotFound {
        uri: uri.to_string(),
        what: format!("no run with id '{run_id}' in {}", store.location()),
        hint: Some("check the run id and MLFLOW_TRACKING_URI".into()),
    })?;
    res.run_id = Some(run.run_id.clone());
    let direct = join_sub(&run.artifact_uri, path);
    res.steps
        .push(format!("run {run_id} (experiment {}) keeps its artifacts at {}", run.experiment_id, run.artifact_uri));
    let root = store.local_root();
    let exists = match store.remote_artifacts() {
        _ if let Some(fetcher) = store.location_artifacts(&direct)? => !fetcher.list()?.is_empty(),
        Some(server) if direct.starts_with("mlflow-artifacts:") => server.has_artifacts(&direct)?,
        _ if as_local_path(&direct).is_none() && crate::objects::is_object_url(&direct) => object_exists(&direct)?,
        _ => artifact_exists(&direct, root.as_deref()),
    };
    if exists {
        return Ok(direct);
    }
    // MLflow 3: models are logged models outside the run's artifacts; the first path segment is their name.
    let (first, rest) = path.split_once('/').unwrap_or((path, ""));
    let candidates = store.logged_models_of_run(&run)?;
    if let Some(lm) = candidates.iter().find(|lm| lm.name == first) {
        res.steps.push(format!(
            "{path} is not among the run's artifacts; the run logged model '{first}' as {}",
            lm.model_id
        ));
        note_logged_model(res, lm);
        return Ok(join_sub(&lm.artifact_location, rest));
    }
    let names: Vec<&str> = candidates.iter().map(|lm| lm.name.as_str()).collect();
    Err(Error::NotFound {
        uri: uri.to_string(),
        what: format!("run {run_id} has no artifact '{path}' and logged no model named '{first}'"),
        hint: Some(if names.is_empty() {
            "the run logged no models".into()
        } else {
            format!("models logged by this run: {}", names.join(", "))
        }),
    })
}

fn join_sub(base: &str, sub: &str) -> String {
    if sub.is_empty() {
        base.to_string()
    } else {
        format!("{}/{}", base.trim_end_matches('/'), sub.trim_start_matches('/'))
    }
}

/// Whether an artifact location is a local path (plain or `file:`), and which.
fn as_local_path(location: &str) -> Option<PathBuf> {
    match scheme_of(location).map(str::to_ascii_lowercase).as_deref() {
        None => Some(PathBuf::from(location)),
        Some("file") => file_uri_path(location, &location[5..]).ok(),
        Some(_) => None,
    }
}

/// Whether anything is stored under an object store location (a run's artifact directory).
fn object_exists(location: &str) -> Result<bool> {
    Ok(!list_location(location)?.files.is_empty())
}

/// An object store location, opened and listed.
struct Listing {
    url: url::Url,
    store: std::sync::Arc<dyn object_store::ObjectStore>,
    prefix: object_store::path::Path,
    files: Vec<crate::objects::Listed>,
}

fn list_location(location: &str) -> Result<Listing> {
    use crate::objects;
    let url = objects::parse_url(location)?;
    let (store, prefix) = objects::open(&url)?;
    let files = objects::block_on(objects::list(store.as_ref(), &url, &prefix))??;
    Ok(Listing { url, store, prefix, files })
}

fn artifact_exists(location: &str, store_root: Option<&Path>) -> bool {
    as_local_path(location).is_some_and(|p| p.exists() || relocate(&p, store_root).is_some())
}

/// The same relative layout under the store's own directory: the longest tail of `recorded`
/// that exists below `store_root`.
fn relocate(recorded: &Path, store_root: Option<&Path>) -> Option<PathBuf> {
    let root = store_root?;
    let parts: Vec<_> = recorded.components().filter(|c| matches!(c, std::path::Component::Normal(_))).collect();
    // Keep at least two components so a bare file or directory name never matches by accident.
    (0..parts.len().saturating_sub(1))
        .map(|skip| parts[skip..].iter().collect::<PathBuf>())
        .map(|tail| root.join(tail))
        .find(|p| p.exists())
}

fn local_artifact_path(
    uri: &str,
    location: &str,
    store_root: Option<&Path>,
    steps: &mut Vec<String>,
) -> Result<PathBuf> {
    let Some(path) = as_local_path(location) else {
        return Err(remote_unsupported(uri, location));
    };
    // A store travels with its artifacts: when the recorded path lies outside the store's
    // directory and the same layout exists inside it, the store was copied or moved.
    let outside_store = store_root.is_some_and(|root| !path.starts_with(root));
    if outside_store && let Some(moved) = relocate(&path, store_root) {
        steps.push(format!(
            "{} is outside the store's directory, which holds the same artifacts (the store was moved or copied since MLflow recorded the path); using {}",
            path.display(),
            moved.display()
        ));
        return Ok(moved);
    }
    if path.exists() {
        return Ok(path);
    }
    Err(Error::NotFound {
        uri: uri.to_string(),
        what: format!("the model's files should be at {} but that path does not exist", path.display()),
        hint: Some("the artifacts were deleted or the store was copied without them".into()),
    })
}

fn check_local(uri: &str, res: Resolution) -> Result<Resolution> {
    let p = &res.local_path;
    if p.is_dir()
        || (p.is_file()
            && (p.extension().is_some_and(|e| e == "onnx") || p.file_name().is_some_and(|n| n == "MLmodel")))
    {
        return Ok(res);
    }
    Err(Error::NotFound {
        uri: uri.to_string(),
        what: if p.exists() {
            format!("{} is neither a model directory, an MLmodel file nor an .onnx file", p.display())
        } else {
            format!("{} does not exist", p.display())
        },
        hint: (!uri.contains(':')).then(|| {
            "a model URI is a path, runs:/<run_id>/<path>, models:/<name>/<version> or models:/<name>@<alias>".into()
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relocation_finds_the_longest_existing_tail() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("mlruns/1/models/m-x/artifacts");
        std::fs::create_dir_all(&target).unwrap();
        let recorded = Path::new("/elsewhere/checkout/models/store/mlruns/1/models/m-x/artifacts");
        assert_eq!(relocate(recorded, Some(dir.path())), Some(target));
        assert_eq!(relocate(Path::new("/old/artifacts"), Some(dir.path())), None);
        assert_eq!(relocate(recorded, None), None);
    }

    #[test]
    fn sub_paths_join_with_one_slash() {
        assert_eq!(join_sub("s3://b/x/", "/model"), "s3://b/x/model");
        assert_eq!(join_sub("/a", ""), "/a");
    }
}
