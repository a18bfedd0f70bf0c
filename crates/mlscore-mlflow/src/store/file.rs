//! MLflow's file store: a `mlruns/` directory of YAML files.
//!
//! ```text
//! mlruns/<exp_id>/<run_id>/meta.yaml                 artifact_uri, experiment_id
//! mlruns/<exp_id>/models/<model_id>/meta.yaml        artifact_location, name, source_run_id
//! mlruns/models/<name>/meta.yaml                     aliases: {champion: '1'}
//! mlruns/models/<name>/version-<N>/meta.yaml         source, storage_location, run_id, current_stage
//! ```

use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

use super::{LoggedModelInfo, ModelVersion, RegisteredModel, RunInfo, TrackingStore};
use crate::error::{Error, Result};

/// A `mlruns/` directory.
#[derive(Debug)]
pub struct FileStore {
    uri: String,
    root: PathBuf,
}

impl FileStore {
    /// Opens the store at `root` (named `uri` in messages). The directory must exist.
    pub fn open(uri: &str, root: &Path) -> Result<Self> {
        if !root.is_dir() {
            return Err(Error::Store {
                store: uri.to_string(),
                reason: format!(
                    "directory {} does not exist; set MLFLOW_TRACKING_URI to the store that holds the model \
                     (e.g. sqlite:///path/to/mlflow.db or a mlruns/ directory)",
                    root.display()
                ),
            });
        }
        Ok(Self { uri: uri.to_string(), root: root.to_path_buf() })
    }

    fn read_meta(&self, path: &Path) -> Result<Option<Mapping>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("cannot read", path, e)),
        };
        match serde_yaml::from_str::<Value>(&text) {
            Ok(Value::Mapping(m)) => Ok(Some(m)),
            Ok(_) | Err(_) => Err(Error::Store {
                store: self.uri.clone(),
                reason: format!("{} is not a valid meta.yaml file", path.display()),
            }),
        }
    }

    /// Experiment directories (numeric ids; `models` and `.trash` are not experiments).
    fn experiment_dirs(&self) -> Result<Vec<PathBuf>> {
        let entries = std::fs::read_dir(&self.root).map_err(|e| Error::io("cannot list", &self.root, e))?;
        let mut dirs: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.is_dir()
                    && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n != "models" && !n.starts_with('.'))
            })
            .collect();
        dirs.sort();
        Ok(dirs)
    }

    fn logged_model_at(&self, dir: &Path) -> Result<Option<LoggedModelInfo>> {
        let Some(m) = self.read_meta(&dir.join("meta.yaml"))? else {
            return Ok(None);
        };
        let model_id =
            text(&m, "model_id").unwrap_or_else(|| dir.file_name().unwrap_or_default().to_string_lossy().into_owned());
        Ok(Some(LoggedModelInfo {
            model_id,
            experiment_id: text(&m, "experiment_id").unwrap_or_default(),
            name: text(&m, "name").unwrap_or_default(),
            artifact_location: text(&m, "artifact_location")
                .unwrap_or_else(|| dir.join("artifacts").display().to_string()),
            source_run_id: text(&m, "source_run_id"),
        }))
    }
}

fn text(m: &Mapping, key: &str) -> Option<String> {
    match m.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl TrackingStore for FileStore {
    fn location(&self) -> String {
        self.uri.clone()
    }

    fn registered_model(&self, name: &str) -> Result<Option<RegisteredModel>> {
        if name.contains(['/', '\\']) || name.starts_with('.') {
            return Ok(None);
        }
        let dir = self.root.join("models").join(name);
        let Some(meta) = self.read_meta(&dir.join("meta.yaml"))? else {
            return Ok(None);
        };
        let mut aliases: std::collections::BTreeMap<String, u64> = match meta.get("aliases") {
            Some(Value::Mapping(a)) => a
                .iter()
                .filter_map(|(k, v)| {
                    let version = match v {
                        Value::Number(n) => n.as_u64(),
                        Value::String(s) => s.parse().ok(),
                        _ => None,
                    };
                    Some((k.as_str()?.to_string(), version?))
                })
                .collect(),
            _ => Default::default(),
        };
        // Older layouts keep aliases as files under aliases/<alias> holding the version.
        if let Ok(entries) = std::fs::read_dir(dir.join("aliases")) {
            for e in entries.flatten() {
                let (Some(alias), Ok(v)) =
                    (e.file_name().to_str().map(str::to_string), std::fs::read_to_string(e.path()))
                else {
                    continue;
                };
                if let Ok(v) = v.trim().parse() {
                    aliases.entry(alias).or_insert(v);
                }
            }
        }
        let mut versions = Vec::new();
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io("cannot list", &dir, e))?;
        for e in entries.flatten() {
            let fname = e.file_name();
            let Some(v) = fname.to_str().and_then(|n| n.strip_prefix("version-")).and_then(|v| v.parse::<u64>().ok())
            else {
                continue;
            };
            let Some(m) = self.read_meta(&e.path().join("meta.yaml"))? else {
                continue;
            };
            let stage = text(&m, "current_stage");
            if stage.as_deref() == Some("Deleted_Internal") {
                continue;
            }
            versions.push(ModelVersion {
                name: name.to_string(),
                version: v,
                source: text(&m, "source"),
                storage_location: text(&m, "storage_location"),
                run_id: text(&m, "run_id"),
                status: text(&m, "status"),
                current_stage: stage,
            });
        }
        versions.sort_by_key(|v| v.version);
        Ok(Some(RegisteredModel { name: name.to_string(), versions, aliases }))
    }

    fn registered_model_names(&self) -> Result<Vec<String>> {
        let dir = self.root.join("models");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().join("meta.yaml").is_file())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }

    fn logged_model(&self, model_id: &str) -> Result<Option<LoggedModelInfo>> {
        if model_id.contains(['/', '\\']) || model_id.starts_with('.') {
            return Ok(None);
        }
        for exp in self.experiment_dirs()? {
            let dir = exp.join("models").join(model_id);
            if dir.is_dir() {
                return self.logged_model_at(&dir);
            }
        }
        Ok(None)
    }

    fn run(&self, run_id: &str) -> Result<Option<RunInfo>> {
        if run_id.contains(['/', '\\']) || run_id.starts_with('.') {
            return Ok(None);
        }
        for exp in self.experiment_dirs()? {
            let Some(m) = self.read_meta(&exp.join(run_id).join("meta.yaml"))? else {
                continue;
            };
            return Ok(Some(RunInfo {
                run_id: run_id.to_string(),
                experiment_id: text(&m, "experiment_id")
                    .unwrap_or_else(|| exp.file_name().unwrap_or_default().to_string_lossy().into_owned()),
                artifact_uri: text(&m, "artifact_uri")
                    .unwrap_or_else(|| exp.join(run_id).join("artifacts").display().to_string()),
            }));
        }
        Ok(None)
    }

    fn logged_models_of_run(&self, run: &RunInfo) -> Result<Vec<LoggedModelInfo>> {
        let mut out = Vec::new();
        for exp in self.experiment_dirs()? {
            let Ok(entries) = std::fs::read_dir(exp.join("models")) else {
                continue;
            };
            let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            dirs.sort();
            for dir in dirs {
                if let Some(lm) = self.logged_model_at(&dir)?
                    && lm.source_run_id.as_deref() == Some(run.run_id.as_str())
                {
                    out.push(lm);
                }
            }
        }
        Ok(out)
    }

    fn local_root(&self) -> Option<PathBuf> {
        self.root.parent().map(Path::to_path_buf)
    }
}
