//! MLflow's SQLAlchemy store on SQLite (`sqlite:///mlflow.db`), read with SQLite itself.
//!
//! The database is opened read-only: mlscore never migrates or writes an MLflow database.
//! Tables used (MLflow 3 schema; the `workspace` column is optional so older databases work):
//! `registered_models`, `model_versions`, `registered_model_aliases`, `logged_models`, `runs`.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::{LoggedModelInfo, ModelVersion, RegisteredModel, RunInfo, TrackingStore};
use crate::error::{Error, Result};

/// A read-only view of an MLflow sqlite database.
#[derive(Debug)]
pub struct SqliteStore {
    uri: String,
    path: PathBuf,
    conn: std::sync::Mutex<Connection>,
    /// Whether the registry tables carry MLflow 3's `workspace` column.
    workspaces: bool,
}

impl SqliteStore {
    /// Opens the database at `path` (named `uri` in messages). It must exist.
    pub fn open(uri: &str, path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::Store {
                store: uri.to_string(),
                reason: format!(
                    "database {} does not exist; set MLFLOW_TRACKING_URI to the store that holds the model \
                     (e.g. sqlite:///path/to/mlflow.db or a mlruns/ directory)",
                    path.display()
                ),
            });
        }
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(|e| sql_error(uri, path, &e))?;
        let store_err = |e: rusqlite::Error| sql_error(uri, path, &e);
        let has_table = |t: &str| -> Result<bool> {
            conn.query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1", [t], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n > 0)
            .map_err(store_err)
        };
        if !has_table("model_versions")? || !has_table("runs")? {
            return Err(Error::Store {
                store: uri.to_string(),
                reason: format!(
                    "{} is an SQLite database but not an MLflow store (no runs or model_versions table)",
                    path.display()
                ),
            });
        }
        let workspaces = conn
            .prepare("SELECT name FROM pragma_table_info('model_versions')")
            .and_then(|mut s| s.query_map([], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(store_err)?
            .iter()
            .any(|c| c == "workspace");
        Ok(Self { uri: uri.to_string(), path: path.to_path_buf(), conn: std::sync::Mutex::new(conn), workspaces })
    }

    fn with_conn<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let conn = self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&conn).map_err(|e| sql_error(&self.uri, &self.path, &e))
    }

    fn ws_filter(&self) -> &'static str {
        if self.workspaces { " AND workspace = 'default'" } else { "" }
    }
}

fn sql_error(uri: &str, path: &Path, e: &rusqlite::Error) -> Error {
    Error::Store { store: uri.to_string(), reason: format!("cannot read {}: {e}", path.display()) }
}

fn logged_model_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LoggedModelInfo> {
    Ok(LoggedModelInfo {
        model_id: r.get(0)?,
        experiment_id: r.get::<_, i64>(1)?.to_string(),
        name: r.get(2)?,
        artifact_location: r.get(3)?,
        source_run_id: r.get(4)?,
    })
}

impl TrackingStore for SqliteStore {
    fn location(&self) -> String {
        self.uri.clone()
    }

    fn registered_model(&self, name: &str) -> Result<Option<RegisteredModel>> {
        let ws = self.ws_filter();
        self.with_conn(|c| {
            let exists: Option<String> = c
                .query_row(&format!("SELECT name FROM registered_models WHERE name = ?1{ws}"), [name], |r| r.get(0))
                .optional()?;
            if exists.is_none() {
                return Ok(None);
            }
            let mut stmt = c.prepare(&format!(
                "SELECT version, source, storage_location, run_id, status, current_stage FROM model_versions \
                 WHERE name = ?1{ws} AND (current_stage IS NULL OR current_stage != 'Deleted_Internal') ORDER BY version"
            ))?;
            let versions = stmt
                .query_map([name], |r| {
                    Ok(ModelVersion {
                        name: name.to_string(),
                        version: r.get::<_, i64>(0)? as u64,
                        source: r.get(1)?,
                        storage_location: r.get(2)?,
                        run_id: r.get(3)?,
                        status: r.get(4)?,
                        current_stage: r.get(5)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut stmt = c.prepare(&format!("SELECT alias, version FROM registered_model_aliases WHERE name = ?1{ws}"))?;
            let aliases = stmt
                .query_map([name], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(Some(RegisteredModel { name: name.to_string(), versions, aliases }))
        })
    }

    fn registered_model_names(&self) -> Result<Vec<String>> {
        let ws = self.ws_filter();
        self.with_conn(|c| {
            let mut stmt = c.prepare(&format!("SELECT name FROM registered_models WHERE 1 = 1{ws} ORDER BY name"))?;
            stmt.query_map([], |r| r.get(0))?.collect()
        })
    }

    fn logged_model(&self, model_id: &str) -> Result<Option<LoggedModelInfo>> {
        self.with_conn(|c| {
            let has_table: i64 =
                c.query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'logged_models'", [], |r| r.get(0))?;
            if has_table == 0 {
                return Ok(None);
            }
            c.query_row(
                "SELECT model_id, experiment_id, name, artifact_location, source_run_id FROM logged_models WHERE model_id = ?1",
                [model_id],
                logged_model_row,
            )
            .optional()
        })
    }

    fn run(&self, run_id: &str) -> Result<Option<RunInfo>> {
        self.with_conn(|c| {
            c.query_row("SELECT run_uuid, experiment_id, artifact_uri FROM runs WHERE run_uuid = ?1", [run_id], |r| {
                Ok(RunInfo {
                    run_id: r.get(0)?,
                    experiment_id: r.get::<_, i64>(1)?.to_string(),
                    artifact_uri: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                })
            })
            .optional()
        })
    }

    fn logged_models_of_run(&self, run: &RunInfo) -> Result<Vec<LoggedModelInfo>> {
        self.with_conn(|c| {
            let has_table: i64 = c.query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'logged_models'",
                [],
                |r| r.get(0),
            )?;
            if has_table == 0 {
                return Ok(Vec::new());
            }
            let mut stmt = c.prepare(
                "SELECT model_id, experiment_id, name, artifact_location, source_run_id FROM logged_models \
                 WHERE source_run_id = ?1 AND (lifecycle_stage IS NULL OR lifecycle_stage = 'active') \
                 ORDER BY creation_timestamp_ms DESC",
            )?;
            stmt.query_map(params![run.run_id], logged_model_row)?.collect()
        })
    }

    fn local_root(&self) -> Option<PathBuf> {
        self.path.parent().map(Path::to_path_buf)
    }
}
