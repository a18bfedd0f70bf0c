//! Delta Lake tables as inputs, read with `deltalake` (delta-rs): the files of the table's
//! current snapshot (or of an older version: time travel), with deletion vectors applied, column
//! mapping resolved and v2 checkpoints read. A directory or prefix holding `_delta_log/` is a
//! Delta table wherever a table can be named: `--input`, `FROM 'path/'` in SQL, and the
//! `delta_scan('path' [, version | 'timestamp'])` table function.
//!
//! Reading a Delta table's Parquet files as a plain folder would score rows the table deleted
//! and files it removed; mlscore never does that silently.
//!
//! Outputs (`--output-format delta`) are committed as one Delta transaction ([`write_table`]).

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{TableFunctionImpl, TableProvider, UrlTableFactory};
use datafusion::datasource::dynamic_file::DynamicListTableFactory;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionState;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::Expr;
use datafusion::prelude::{DataFrame, SessionContext};
use datafusion::scalar::ScalarValue;
use datafusion_session::SessionStore;
use deltalake_core::DeltaTableBuilder;
use url::Url;

use mlscore_mlflow::objects;

use crate::error::{Error, Result};
use crate::sink::{OutputSpec, WriteStats};

/// Which version of a Delta table to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TimeTravel {
    /// The latest version.
    #[default]
    Latest,
    /// A version number (`VERSION AS OF`).
    Version(u64),
    /// The version current at an RFC 3339 timestamp (`TIMESTAMP AS OF`).
    Timestamp(String),
}

/// The URL of a table location: object store URLs as they are, local paths made absolute; the
/// error is the reason only (callers name the input or the output).
fn table_url(location: &str) -> std::result::Result<Url, String> {
    if objects::is_object_url(location) {
        let mut url = objects::parse_url(location).map_err(|e| e.to_string())?;
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        return Ok(url);
    }
    let path = std::fs::canonicalize(location).map_err(|e| format!("cannot open the table: {e}"))?;
    Url::from_directory_path(&path).map_err(|()| "not an absolute directory path".to_string())
}

/// A builder for the Delta table at `url` that reads and writes through the session's object
/// stores, and that store.
fn table_builder(
    state: &SessionState,
    url: &Url,
) -> std::result::Result<(DeltaTableBuilder, Arc<dyn object_store::ObjectStore>), String> {
    register_log_stores();
    let store =
        state.runtime_env().object_store_registry.get_store(url).map_err(|e| Error::DataFusion(e).to_string())?;
    let builder = DeltaTableBuilder::from_url(url.clone())
        .map_err(|e| e.to_string())?
        .with_storage_backend(store.clone(), url.clone());
    Ok((builder, store))
}

/// Whether a local directory is a Delta table.
pub fn is_local_delta_table(path: &Path) -> bool {
    path.join("_delta_log").is_dir()
}

/// Whether `location` (a local directory or an object store prefix) holds a Delta log.
pub async fn is_delta_table(state: &SessionState, location: &str) -> bool {
    if !objects::is_object_url(location) {
        return is_local_delta_table(Path::new(location));
    }
    let Ok(url) = table_url(location) else {
        return false;
    };
    let Ok(store) = state.runtime_env().object_store_registry.get_store(&url) else {
        return false;
    };
    let Ok(prefix) = objects::path_in_store(&url) else {
        return false;
    };
    let log = prefix.clone().join("_delta_log");
    use futures::StreamExt;
    matches!(store.list(Some(&log)).next().await, Some(Ok(_)))
}

/// deltalake-core serves only `file://` and `memory://` tables by itself (its cloud crates add
/// the other schemes, each with an object store client of its own). mlscore hands it the stores
/// it opened from the environment, so one log store kind serves every scheme: delta-rs's default,
/// which commits a version by put-if-absent (conditional writes on Azure, S3 and GCS), so two
/// writers never both commit the same version.
#[derive(Debug)]
struct CommitByPutIfAbsent;

impl deltalake_core::logstore::LogStoreFactory for CommitByPutIfAbsent {
    fn with_options(
        &self,
        prefixed_store: deltalake_core::logstore::ObjectStoreRef,
        root_store: deltalake_core::logstore::ObjectStoreRef,
        location: &Url,
        options: &deltalake_core::logstore::StorageConfig,
    ) -> deltalake_core::DeltaResult<Arc<dyn deltalake_core::logstore::LogStore>> {
        Ok(deltalake_core::logstore::default_logstore(prefixed_store, root_store, location, options))
    }
}

fn register_log_stores() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let registry = deltalake_core::logstore::logstore_factories();
        for scheme in ["abfss", "abfs", "az", "azure", "adl", "s3", "s3a", "gs"] {
            if let Ok(url) = Url::parse(&format!("{scheme}://"))
                && registry.get(&url).is_none()
            {
                registry.insert(url, Arc::new(CommitByPutIfAbsent));
            }
        }
    });
}

/// Opens the Delta table at `location` as a DataFusion table, through the session's object
/// stores (configured from the environment, like every other input).
pub async fn open_table(state: &SessionState, location: &str, at: &TimeTravel) -> Result<Arc<dyn TableProvider>> {
    let err = |reason: String| Error::Input { input: location.to_string(), reason };
    let url = table_url(location).map_err(err)?;
    let (builder, _) = table_builder(state, &url).map_err(err)?;
    let builder = match at {
        TimeTravel::Latest => builder,
        TimeTravel::Version(v) => builder.with_version(*v),
        TimeTravel::Timestamp(ts) => builder
            .with_datestring(ts)
            .map_err(|e| err(format!("'{ts}' is not an RFC 3339 timestamp (e.g. 2026-11-30T12:00:00Z): {e}")))?,
    };
    let table = builder.load().await.map_err(|e| {
        let text = e.to_string();
        err(match at {
            TimeTravel::Version(v) if text.contains("ersion") => {
                format!("the Delta table has no version {v} ({text}); `mlscore inspect`-style history: see _delta_log/")
            }
            _ => format!("cannot read the Delta table: {text}"),
        })
    })?;
    let provider = table.table_provider().with_session(Arc::new(state.clone())).await.map_err(|e| {
        let text = e.to_string();
        err(if text.contains("Unsupported table features") || text.contains("eader features") {
            format!("{text}; this reader cannot honour them, so it refuses the table rather than misread it")
        } else {
            format!("cannot read the Delta table: {text}")
        })
    })?;
    Ok(provider)
}

/// Table names in SQL that are paths or URLs (`FROM 'data/'`): Delta tables where the
/// location holds `_delta_log/`, file listings (DataFusion's own) otherwise.
#[derive(Debug)]
pub(crate) struct UrlTables {
    listing: DynamicListTableFactory,
}

impl UrlTables {
    /// A factory for `ctx`'s session, and `ctx` with it enabled.
    pub(crate) fn enable(ctx: SessionContext) -> SessionContext {
        use datafusion::catalog::DynamicFileCatalog;
        let state = ctx.state();
        let factory = Arc::new(Self { listing: DynamicListTableFactory::new(SessionStore::new()) });
        let catalogs = Arc::new(DynamicFileCatalog::new(
            Arc::clone(state.catalog_list()),
            Arc::clone(&factory) as Arc<dyn UrlTableFactory>,
        ));
        let ctx: SessionContext =
            SessionStateBuilder::new_from_existing(state).with_catalog_list(catalogs).build().into();
        factory.listing.session_store().with_state(ctx.state_weak_ref());
        let session = SessionStore::new();
        session.with_state(ctx.state_weak_ref());
        ctx.register_udtf("delta_scan", Arc::new(DeltaScan { session }));
        ctx
    }

    fn state(&self) -> datafusion::error::Result<SessionState> {
        state_of(self.listing.session_store())
    }
}

/// The session a store points to, as a `SessionState`.
fn state_of(store: &SessionStore) -> datafusion::error::Result<SessionState> {
    store
        .get_session()
        .upgrade()
        .and_then(|session| session.read().as_any().downcast_ref::<SessionState>().cloned())
        .ok_or_else(|| DataFusionError::Plan("the session that named this table has ended".into()))
}

#[async_trait]
impl UrlTableFactory for UrlTables {
    async fn try_new(&self, url: &str) -> datafusion::error::Result<Option<Arc<dyn TableProvider>>> {
        let state = self.state()?;
        if is_delta_table(&state, url).await {
            let provider = open_table(&state, url, &TimeTravel::Latest)
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            return Ok(Some(provider));
        }
        // `FROM 'data/'` in SQL: local Parquet footers are checked as `mlscore score` checks them.
        crate::input::check_local_footers(&[url.to_string()]).map_err(|e| DataFusionError::External(Box::new(e)))?;
        self.listing.try_new(url).await
    }
}

/// `delta_scan('path' [, version | 'timestamp'])`: a Delta table, at a version if asked.
#[derive(Debug)]
struct DeltaScan {
    session: SessionStore,
}

impl TableFunctionImpl for DeltaScan {
    fn call(&self, args: &[Expr]) -> datafusion::error::Result<Arc<dyn TableProvider>> {
        let usage = || {
            DataFusionError::Plan(
                "delta_scan takes a table location and optionally a version number or an RFC 3339 timestamp: \
                 delta_scan('path/to/table'), delta_scan('abfss://…', 3), delta_scan('s3://…', '2026-11-30T00:00:00Z')"
                    .into(),
            )
        };
        let text = |e: &Expr| match e {
            Expr::Literal(
                ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)),
                _,
            ) => Some(s.clone()),
            _ => None,
        };
        let location = args.first().and_then(text).ok_or_else(usage)?;
        let at = match args.get(1) {
            None => TimeTravel::Latest,
            Some(Expr::Literal(v, _)) if v.data_type().is_integer() => {
                let n = v.to_string().parse::<u64>().map_err(|_| usage())?;
                TimeTravel::Version(n)
            }
            Some(e) => TimeTravel::Timestamp(text(e).ok_or_else(usage)?),
        };
        if args.len() > 2 {
            return Err(usage());
        }
        let state = state_of(&self.session)?;
        objects::block_on(async move { open_table(&state, &location, &at).await })
            .map_err(|e| DataFusionError::External(Box::new(e)))?
            .map_err(|e| DataFusionError::External(Box::new(e)))
    }
}

/// Writes the query's rows into the Delta table at `spec`'s target as one transaction: a new
/// table (its first version), or, with `overwrite`, a new version of an existing one that
/// replaces its rows (older versions stay readable by time travel). The data files are written
/// first under fresh names, then one commit makes them visible: a job that fails or is killed
/// before its commit leaves the table as it was (files without a commit are never read; Delta's
/// VACUUM removes them).
pub async fn write_table(df: DataFrame, spec: &OutputSpec) -> Result<WriteStats> {
    use deltalake_core::kernel::transaction::CommitProperties;
    use deltalake_core::protocol::SaveMode;
    use futures::StreamExt;

    let location = spec.url.as_ref().map_or_else(|| spec.path.display().to_string(), |u| u.to_string());
    let err = |reason: String| Error::Output { path: spec.path.clone(), reason };
    if spec.url.is_none() {
        std::fs::create_dir_all(&spec.path).map_err(|e| Error::io("cannot create", &spec.path, e))?;
    }
    let url = table_url(&location).map_err(err)?;
    let (session, plan) = df.into_parts();
    let schema = Arc::new(plan.schema().as_arrow().clone());
    let exists = is_delta_table(&session, &location).await;
    if !exists && spec.url.is_none() {
        let stray = std::fs::read_dir(&spec.path)
            .map(|entries| entries.flatten().any(|e| !e.file_name().to_string_lossy().starts_with('.')))
            .unwrap_or(false);
        if stray {
            return Err(err(
                "the directory is not empty and not a Delta table; choose an empty or new directory".into()
            ));
        }
    }
    if exists && !spec.overwrite {
        return Err(err(
            "already a Delta table: pass --overwrite to replace its rows in a new version (older versions stay \
             readable with --version-as-of)"
                .into(),
        ));
    }
    let (builder, store) = table_builder(&session, &url).map_err(err)?;
    let table = if exists {
        builder.load().await.map_err(|e| err(format!("cannot read the Delta table: {e}")))?
    } else {
        builder.build().map_err(|e| err(e.to_string()))?
    };
    let metadata: Vec<(String, serde_json::Value)> =
        spec.metadata.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
    // delta-rs plans its write with nodes of its own: the session (object stores, settings) gets
    // its query planner.
    let session = SessionStateBuilder::new_from_existing(session)
        .with_query_planner(deltalake_core::delta_datafusion::planner::DeltaPlanner::new())
        .build();
    let written = table
        .write(Vec::new())
        .with_input_plan(plan)
        .with_session_state(Arc::new(session))
        .with_save_mode(if exists { SaveMode::Overwrite } else { SaveMode::ErrorIfExists })
        .with_writer_properties(crate::sink::parquet_props(spec, &schema))
        .with_commit_properties(CommitProperties::default().with_metadata(metadata))
        .await
        .map_err(|e| err(format!("writing the Delta table failed; its previous version is unchanged: {e}")))?;
    let commit = written.history(Some(1)).next().await.and_then(|c| c.ok());
    let metric = |k: &str| {
        commit.as_ref().and_then(|c| c.info.get("operationMetrics")).and_then(|m| m.get(k)).and_then(|v| v.as_u64())
    };
    // The bytes the commit added: the sizes its `add` actions record.
    let mut bytes = 0;
    if let (Some(version), Ok(prefix)) = (written.version(), objects::path_in_store(&url)) {
        let log = prefix.clone().join("_delta_log").join(format!("{version:020}.json"));
        if let Ok(got) = object_store::ObjectStoreExt::get(store.as_ref(), &log).await
            && let Ok(text) = got.bytes().await
        {
            bytes = String::from_utf8_lossy(&text)
                .lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .filter_map(|action| action["add"]["size"].as_u64())
                .sum();
        }
    }
    Ok(WriteStats {
        rows: metric("num_added_rows").unwrap_or_default(),
        files: metric("num_added_files").unwrap_or_default() as usize,
        bytes,
        swept: Vec::new(),
    })
}
