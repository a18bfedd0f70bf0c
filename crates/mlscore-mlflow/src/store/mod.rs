//! MLflow tracking and registry stores: where `runs:/` and `models:/` URIs are looked up.
//!
//! A store answers a handful of questions (a registered model with its versions and aliases,
//! a logged model, a run); choosing the version a URI names and following MLflow 3's
//! indirections (`models:/m-…` sources, the `runs:/` fallback to logged models) is shared
//! code in [`crate::resolve()`], so every store behaves the same way.
//!
//! Stores read here:
//! - [`SqliteStore`]: `sqlite:///mlflow.db`, MLflow's default backend, read with SQLite itself;
//! - [`FileStore`]: a `mlruns/` directory (`file:` tracking URIs and plain paths);
//! - [`RestStore`]: an MLflow tracking server (`http://`, `https://`), artifacts through its proxy;
//! - [`DatabricksStore`]: a Databricks workspace (`databricks`, `databricks://<profile>`), its
//!   workspace registry and its Unity Catalog registry (`databricks-uc`), artifacts through the
//!   signed URLs and temporary credentials the workspace hands out;
//! - [`AzureMlStore`]: an Azure Machine Learning workspace (`azureml://…/workspaces/<name>`).

mod azureml;
mod databricks;
mod file;
mod rest;
mod sqlite;

pub(crate) use rest::safe_join;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::{Path, PathBuf};

pub use azureml::AzureMlStore;
pub use databricks::DatabricksStore;
pub use file::FileStore;
pub use rest::RestStore;
pub use sqlite::SqliteStore;

use crate::error::{Error, Result};
use crate::uri::{file_uri_path, scheme_of};

/// One version of a registered model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelVersion {
    /// Registered model name.
    pub name: String,
    /// Version number.
    pub version: u64,
    /// `source`: in MLflow 3 `models:/m-<id>`; before, a run artifact URI or a path.
    pub source: Option<String>,
    /// `storage_location`: where the version's files are (MLflow 3).
    pub storage_location: Option<String>,
    /// The run that produced it.
    pub run_id: Option<String>,
    /// `READY`, `PENDING_REGISTRATION` or `FAILED_REGISTRATION`.
    pub status: Option<String>,
    /// Legacy stage: `None`, `Staging`, `Production`, `Archived`.
    pub current_stage: Option<String>,
}

/// A registered model with all its versions and aliases.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegisteredModel {
    /// Its name.
    pub name: String,
    /// Its versions, in ascending version order.
    pub versions: Vec<ModelVersion>,
    /// Alias -> version.
    pub aliases: BTreeMap<String, u64>,
}

/// An MLflow 3 logged model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedModelInfo {
    /// `m-<32 hex>`.
    pub model_id: String,
    /// Experiment holding it.
    pub experiment_id: String,
    /// Its name (the `name=` of `log_model`, e.g. `model`).
    pub name: String,
    /// Where its artifacts are.
    pub artifact_location: String,
    /// The run that logged it.
    pub source_run_id: Option<String>,
}

/// A run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    /// Run id.
    pub run_id: String,
    /// Experiment holding it.
    pub experiment_id: String,
    /// Root of its artifacts.
    pub artifact_uri: String,
}

/// What mlscore needs from an MLflow tracking / model registry store.
pub trait TrackingStore: Debug + Send + Sync {
    /// The store as the user would name it (a tracking URI), for messages.
    fn location(&self) -> String;

    /// A registered model with its versions and aliases; `None` if there is no such model.
    fn registered_model(&self, name: &str) -> Result<Option<RegisteredModel>>;

    /// All registered model names (for "did you mean" hints).
    fn registered_model_names(&self) -> Result<Vec<String>>;

    /// A logged model by id.
    fn logged_model(&self, model_id: &str) -> Result<Option<LoggedModelInfo>>;

    /// A run by id.
    fn run(&self, run_id: &str) -> Result<Option<RunInfo>>;

    /// The logged models a run produced.
    fn logged_models_of_run(&self, run: &RunInfo) -> Result<Vec<LoggedModelInfo>>;

    /// For stores on the local disk: the directory the store's relative layout starts from,
    /// used to find artifacts of a store that was moved after MLflow recorded absolute paths.
    fn local_root(&self) -> Option<PathBuf> {
        None
    }

    /// For tracking servers: the client that downloads `mlflow-artifacts:` URIs.
    fn remote_artifacts(&self) -> Option<&RestStore> {
        None
    }

    /// One version of a registered model, asked for directly; `None` if there is none.
    fn model_version(&self, name: &str, version: u64) -> Result<Option<ModelVersion>> {
        Ok(self.registered_model(name)?.and_then(|m| m.versions.into_iter().find(|v| v.version == version)))
    }

    /// The version an alias points to; `None` if the model or the alias does not exist.
    fn version_by_alias(&self, name: &str, alias: &str) -> Result<Option<ModelVersion>> {
        let Some(model) = self.registered_model(name)? else {
            return Ok(None);
        };
        let Some(v) = model.aliases.get(alias).copied() else {
            return Ok(None);
        };
        Ok(model.versions.into_iter().find(|mv| mv.version == v))
    }

    /// Whether this registry understands `latest` and stages (Unity Catalog does not): `None`
    /// when it does, else the advice to give.
    fn refuses_latest_and_stages(&self) -> Option<String> {
        None
    }

    /// For registries that serve a version's files themselves (Databricks): where they come from.
    fn version_artifacts(&self, _version: &ModelVersion) -> Result<Option<Box<dyn ArtifactFetcher>>> {
        Ok(None)
    }

    /// For stores whose artifact locations only they can read (Databricks' `dbfs:/databricks/
    /// mlflow-tracking/…`): the files under `location`.
    fn location_artifacts(&self, _location: &str) -> Result<Option<Box<dyn ArtifactFetcher>>> {
        Ok(None)
    }
}

/// One file a remote artifact repository holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// Its path relative to the listed root (`/`-separated).
    pub path: String,
    /// Its size in bytes, when the listing says.
    pub size: Option<u64>,
}

/// The files of one model in a service that hands them out (signed URLs, temporary credentials).
pub trait ArtifactFetcher: Debug + Send + Sync {
    /// Where the files come from, for `mlscore inspect`: never a token or a signature.
    fn describe(&self) -> String;

    /// Every file below the root, recursively.
    fn list(&self) -> Result<Vec<RemoteFile>>;

    /// Downloads `files` (from [`Self::list`]) into `dest`, keeping their relative paths;
    /// returns the bytes written.
    fn download(&self, files: &[RemoteFile], dest: &Path) -> Result<u64>;
}

/// Where models are looked up: MLflow's tracking and registry URIs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// `MLFLOW_TRACKING_URI`, or MLflow's default.
    pub tracking_uri: String,
    /// `MLFLOW_REGISTRY_URI`, defaulting to the tracking URI.
    pub registry_uri: String,
    /// Directory relative store paths are taken from (the current directory).
    pub base_dir: PathBuf,
    /// Where models downloaded from a tracking server are kept (`MLSCORE_CACHE_DIR`, else
    /// `~/.cache/mlscore/models`), one directory per artifact location.
    pub cache_dir: PathBuf,
    /// Download again even when the cache holds the model (`--no-cache`).
    pub refresh: bool,
}

/// `MLSCORE_CACHE_DIR`, else `$XDG_CACHE_HOME/mlscore/models`, else `~/.cache/mlscore/models`.
pub fn default_cache_dir() -> PathBuf {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    env("MLSCORE_CACHE_DIR").unwrap_or_else(|| {
        env("XDG_CACHE_HOME")
            .or_else(|| env("HOME").map(|h| h.join(".cache")))
            .unwrap_or_else(std::env::temp_dir)
            .join("mlscore/models")
    })
}

impl StoreConfig {
    /// The configuration MLflow's client would use in this process: `MLFLOW_TRACKING_URI` and
    /// `MLFLOW_REGISTRY_URI`, else `./mlruns` if it holds experiments, else `sqlite:///mlflow.db`.
    pub fn from_env() -> Self {
        let base_dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let tracking_uri = env("MLFLOW_TRACKING_URI").unwrap_or_else(|| default_tracking_uri(&base_dir));
        let registry_uri = env("MLFLOW_REGISTRY_URI").unwrap_or_else(|| default_registry_uri(&tracking_uri));
        Self { tracking_uri, registry_uri, base_dir, cache_dir: default_cache_dir(), refresh: false }
    }

    /// A configuration with one URI for tracking and registry.
    pub fn with_tracking_uri(uri: impl Into<String>) -> Self {
        let uri = uri.into();
        Self {
            registry_uri: default_registry_uri(&uri),
            tracking_uri: uri,
            base_dir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            cache_dir: default_cache_dir(),
            refresh: false,
        }
    }

    /// Opens the tracking store (for `runs:/` and `models:/m-…`).
    pub fn tracking_store(&self) -> Result<Box<dyn TrackingStore>> {
        open_store(&self.tracking_uri, &self.base_dir)
    }

    /// Opens the registry store (for `models:/<name>/…`).
    pub fn registry_store(&self) -> Result<Box<dyn TrackingStore>> {
        open_store(&self.registry_uri, &self.base_dir)
    }
}

/// MLflow's registry for a tracking URI when `MLFLOW_REGISTRY_URI` is not set: Unity Catalog
/// (with the same profile) for a Databricks workspace, the tracking store itself otherwise.
pub fn default_registry_uri(tracking_uri: &str) -> String {
    let t = tracking_uri.trim();
    match t.strip_prefix("databricks") {
        Some(rest) if rest.is_empty() || rest.starts_with("://") => format!("databricks-uc{rest}"),
        _ => t.to_string(),
    }
}

fn default_tracking_uri(base: &Path) -> String {
    let mlruns = base.join("mlruns");
    let has_experiments = std::fs::read_dir(&mlruns)
        .map(|entries| entries.flatten().any(|e| e.path().join("meta.yaml").is_file()))
        .unwrap_or(false);
    if has_experiments { "./mlruns".to_string() } else { "sqlite:///mlflow.db".to_string() }
}

/// Opens the store a tracking URI names.
pub fn open_store(uri: &str, base_dir: &Path) -> Result<Box<dyn TrackingStore>> {
    let unsupported = |reason: &str| Error::UnsupportedTrackingUri { uri: uri.to_string(), reason: reason.to_string() };
    // MLflow's bare "databricks" / "databricks-uc" tracking URIs have no colon.
    let scheme = scheme_of(uri).or_else(|| uri.starts_with("databricks").then_some(uri));
    match scheme.map(str::to_ascii_lowercase).as_deref() {
        None => Ok(Box::new(FileStore::open(uri, &base_dir.join(uri))?)),
        Some("file") => {
            let path = file_uri_path(uri, &uri[5..])?;
            Ok(Box::new(FileStore::open(uri, &base_dir.join(path))?))
        }
        Some("sqlite") => Ok(Box::new(SqliteStore::open(uri, &sqlite_path(uri, base_dir)?)?)),
        Some("http" | "https") => Ok(Box::new(RestStore::open(uri)?)),
        Some("databricks" | "databricks-uc") => Ok(Box::new(DatabricksStore::open(uri)?)),
        Some("azureml") => Ok(Box::new(AzureMlStore::open(uri)?)),
        Some("uc") => Err(unsupported(
            "open-source Unity Catalog servers are not supported yet; pass the model version's storage URL \
             (abfss://, s3://, gs://) or a path instead",
        )),
        Some("postgresql" | "mysql" | "mssql" | "postgres") => Err(unsupported(
            "database backends other than SQLite are not read directly; run `mlflow server` on it and use its http:// URI",
        )),
        Some(other) => Err(unsupported(&format!("unknown scheme '{other}'"))),
    }
}

/// SQLAlchemy's sqlite URLs: `sqlite:///relative.db`, `sqlite:////abs/path.db`.
fn sqlite_path(uri: &str, base_dir: &Path) -> Result<PathBuf> {
    let rest = uri["sqlite:".len()..].split('?').next().unwrap_or_default();
    let path = rest.strip_prefix("///").ok_or_else(|| Error::UnsupportedTrackingUri {
        uri: uri.to_string(),
        reason: "expected sqlite:///<relative path> or sqlite:////<absolute path>".into(),
    })?;
    if path.is_empty() || path == ":memory:" {
        return Err(Error::UnsupportedTrackingUri {
            uri: uri.to_string(),
            reason: "an in-memory database holds no models".into(),
        });
    }
    Ok(base_dir.join(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_follow_sqlalchemy() {
        let base = Path::new("/work");
        assert_eq!(sqlite_path("sqlite:///mlflow.db", base).unwrap(), Path::new("/work/mlflow.db"));
        assert_eq!(sqlite_path("sqlite:///sub/mlflow.db?mode=ro", base).unwrap(), Path::new("/work/sub/mlflow.db"));
        assert_eq!(sqlite_path("sqlite:////abs/mlflow.db", base).unwrap(), Path::new("/abs/mlflow.db"));
        assert!(sqlite_path("sqlite://", base).is_err());
        assert!(sqlite_path("sqlite:///:memory:", base).is_err());
    }

    #[test]
    fn remote_and_unknown_tracking_uris_are_refused_with_advice() {
        for (uri, expected) in [
            ("uc:http://h:8080", "Unity Catalog"),
            ("postgresql://u@h/db", "mlflow server"),
            ("weird://x", "unknown scheme"),
        ] {
            let err = open_store(uri, Path::new("/")).unwrap_err().to_string();
            assert!(err.contains(expected), "{uri}: {err}");
        }
    }

    #[test]
    fn databricks_tracking_defaults_to_the_unity_catalog_registry() {
        assert_eq!(default_registry_uri("databricks"), "databricks-uc");
        assert_eq!(default_registry_uri("databricks://prod"), "databricks-uc://prod");
        assert_eq!(default_registry_uri("databricks-uc"), "databricks-uc");
        assert_eq!(default_registry_uri("http://h:5000"), "http://h:5000");
        assert_eq!(default_registry_uri("sqlite:///mlflow.db"), "sqlite:///mlflow.db");
    }

    #[test]
    fn default_is_sqlite_unless_mlruns_holds_experiments() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(default_tracking_uri(dir.path()), "sqlite:///mlflow.db");
        std::fs::create_dir_all(dir.path().join("mlruns/0")).unwrap();
        assert_eq!(default_tracking_uri(dir.path()), "sqlite:///mlflow.db");
        std::fs::write(dir.path().join("mlruns/0/meta.yaml"), "name: Default\n").unwrap();
        assert_eq!(default_tracking_uri(dir.path()), "./mlruns");
    }
}
