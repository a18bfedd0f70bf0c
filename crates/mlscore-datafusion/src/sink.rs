//! Writing a query's result: partition-parallel, streaming, committed only when complete.
//!
//! Every output partition streams into its own part file inside a temporary directory next to
//! the target, so memory stays bounded by one row group per partition. When all partitions are
//! done the output is committed:
//! - a single `.parquet` file: the parts' row groups are stitched, in partition order, into one
//!   file (column chunks are copied as bytes, not decoded), then renamed onto the target;
//! - a single `.csv` file: the parts are concatenated under one header;
//! - a directory: the temporary directory, holding `part-00000.<ext>`, … in order, is renamed.
//!
//! Object store targets (`abfss://`, `s3://`, `gs://`, …) are committed the way object stores
//! allow: a directory's part files stream straight into multipart uploads, which stay invisible
//! until completed; they are completed only once every partition has finished, then `_SUCCESS`
//! is written. A single remote file is assembled locally as above and uploaded the same way.
//! On failure every upload is aborted, so readers never see part of an output.
//!
//! Partitions cover the input in order (files sorted by name, byte ranges in order), so rows
//! keep the input's order. A failure, or an interrupted job, leaves no output behind.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use futures::StreamExt;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{KeyValue, PageIndexPolicy, ParquetMetaDataReader};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;

use mlscore_mlflow::objects;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use url::Url;

use crate::chunk::{ChunkSource, SpliceFile, copied_close};
use crate::error::{Error, Result};
use crate::input::Format;

/// Receives progress while a job writes.
pub trait Progress: Send + Sync {
    /// `rows` more rows were written.
    fn rows_written(&self, rows: u64);
}

/// Progress that goes nowhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn rows_written(&self, _rows: u64) {}
}

/// Turns dictionary encoding off for floating-point columns. Features and scores seldom repeat,
/// so the writer would intern every value of a row group (a hash table as large as the data)
/// only to fall back to plain encoding: measured, a third of a 28-feature job's time.
fn float_columns_plain(
    mut props: parquet::file::properties::WriterPropertiesBuilder,
    schema: &arrow::datatypes::Schema,
) -> parquet::file::properties::WriterPropertiesBuilder {
    use parquet::basic::Type as Physical;
    if let Ok(descr) = parquet::arrow::ArrowSchemaConverter::new().convert(schema) {
        for column in descr.columns() {
            if matches!(column.physical_type(), Physical::FLOAT | Physical::DOUBLE) {
                props = props.set_column_dictionary_enabled(column.path().clone(), false);
            }
        }
    }
    props
}

/// Parquet compression codecs offered for outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Codec {
    /// Snappy: what Spark and pyarrow write by default.
    #[default]
    Snappy,
    /// Zstandard level 1: smaller files, a little more CPU.
    Zstd,
    /// LZ4 (raw).
    Lz4,
    /// No compression.
    Uncompressed,
}

impl std::str::FromStr for Codec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "snappy" => Self::Snappy,
            "zstd" => Self::Zstd,
            "lz4" => Self::Lz4,
            "none" | "uncompressed" => Self::Uncompressed,
            _ => {
                return Err(Error::Query(format!("unknown compression '{s}': use snappy, zstd, lz4 or none")));
            }
        })
    }
}

impl Codec {
    pub(crate) fn parquet(self) -> Compression {
        match self {
            Self::Snappy => Compression::SNAPPY,
            Self::Zstd => Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()),
            Self::Lz4 => Compression::LZ4_RAW,
            Self::Uncompressed => Compression::UNCOMPRESSED,
        }
    }
}

/// Where and how a result is written.
#[derive(Debug, Clone)]
pub struct OutputSpec {
    /// The target file or directory (for an object store target, its URL).
    pub path: PathBuf,
    /// The object store URL of a remote target; `None` for local files.
    pub url: Option<Url>,
    /// Parquet or CSV.
    pub format: Format,
    /// One file, or a directory of part files.
    pub directory: bool,
    /// Replace an existing target.
    pub overwrite: bool,
    /// Key-value metadata stored in every Parquet file.
    pub metadata: Vec<(String, String)>,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
    /// Parquet compression.
    pub codec: Codec,
}

impl OutputSpec {
    /// An output at `path`: a directory when the path ends with `/`, is an existing directory
    /// or has no extension; otherwise a file whose format is its extension's.
    ///
    /// Object store URLs (`abfss://`, `az://`, `wasbs://`, `s3://`, `gs://`) are remote
    /// targets, a directory unless the last segment has an extension; `file://` is a local path.
    pub fn new(path: &str, format: Option<Format>, overwrite: bool) -> Result<Self> {
        let (p, url) = if objects::is_object_url(path) {
            let url =
                objects::parse_url(path).map_err(|source| Error::OutputStore { path: PathBuf::from(path), source })?;
            if url.scheme() == "file" {
                let local = url.to_file_path().map_err(|()| Error::Output {
                    path: PathBuf::from(path),
                    reason: "not a local file path".into(),
                })?;
                (local, None)
            } else {
                (PathBuf::from(url.as_str()), Some(url))
            }
        } else {
            (PathBuf::from(path), None)
        };
        let ext_format = Format::from_extension(path);
        let directory =
            path.ends_with('/') || (url.is_none() && p.is_dir()) || (ext_format.is_none() && p.extension().is_none());
        let format = match (format, ext_format) {
            (Some(f), _) => f,
            (None, Some(f)) if !directory => f,
            _ => Format::Parquet,
        };
        if format == Format::Arrow {
            return Err(Error::Output {
                path: p,
                reason: "Arrow IPC output is not supported; write .parquet or .csv".into(),
            });
        }
        let directory = directory || format == Format::Delta;
        if format == Format::Delta && ext_format.is_some() {
            return Err(Error::Output {
                path: p,
                reason: "a Delta table is a directory: name the output without a file extension".into(),
            });
        }
        if !directory && ext_format.is_none() && p.extension().is_some() {
            return Err(Error::Output {
                path: p,
                reason: "unknown file extension: name the output .parquet or .csv, or end it with / for a directory"
                    .into(),
            });
        }
        Ok(Self {
            path: p,
            url,
            format,
            directory,
            overwrite,
            metadata: Vec::new(),
            row_group_rows: 128 * 1024,
            codec: Codec::default(),
        })
    }

    /// Checks the target can be written, before any work is done: its directory exists (for an
    /// object store, the store is reachable with the environment's credentials) and it is absent
    /// unless `overwrite`.
    pub async fn check(&self, schema: &SchemaRef) -> Result<()> {
        if self.format == Format::Delta {
            // The Delta writer checks the table itself; a local target's parent must exist.
            if self.url.is_none() && self.path.exists() && !self.overwrite {
                return Err(self.error(
                    "already exists: pass --overwrite to write the new rows as a new version of the Delta table \
                     (older versions stay readable with --version-as-of)",
                ));
            }
            return if self.url.is_none() && !parent_dir(&self.path).is_dir() {
                Err(self.error(format!("the directory {} does not exist", parent_dir(&self.path).display())))
            } else {
                Ok(())
            };
        }
        self.check_format(schema)?;
        match &self.url {
            Some(url) => self.remote_target(url).await.map(|_| ()),
            None => self.check_local(),
        }
    }

    /// A remote target's store, its path there and what it holds now (allowed only with `overwrite`).
    async fn remote_target(&self, url: &Url) -> Result<RemoteTarget> {
        let (store, prefix) = open_target(url, &self.path)?;
        let existing = objects::list(store.as_ref(), url, &prefix).await.map_err(|e| self.error(e))?;
        if !existing.is_empty() && !self.overwrite {
            return Err(self.error("already exists; pass --overwrite to replace it"));
        }
        Ok(RemoteTarget { store, prefix, existing })
    }

    fn error(&self, reason: impl std::fmt::Display) -> Error {
        Error::Output { path: self.path.clone(), reason: reason.to_string() }
    }

    fn check_local(&self) -> Result<()> {
        let parent = parent_dir(&self.path);
        if !parent.is_dir() {
            return Err(Error::Output {
                path: self.path.clone(),
                reason: format!("the directory {} does not exist", parent.display()),
            });
        }
        if self.path.exists() && !self.overwrite {
            let is_empty_dir =
                self.directory && std::fs::read_dir(&self.path).map(|mut d| d.next().is_none()).unwrap_or(false);
            if !is_empty_dir {
                return Err(Error::Output {
                    path: self.path.clone(),
                    reason: "already exists; pass --overwrite to replace it".into(),
                });
            }
        }
        if self.directory != self.path.is_dir() && self.path.exists() {
            return Err(Error::Output {
                path: self.path.clone(),
                reason: if self.directory {
                    "exists and is a file, not a directory".into()
                } else {
                    "is a directory".into()
                },
            });
        }
        Ok(())
    }

    fn check_format(&self, schema: &SchemaRef) -> Result<()> {
        let nested = |t: &DataType| {
            matches!(
                t,
                DataType::Struct(_)
                    | DataType::List(_)
                    | DataType::LargeList(_)
                    | DataType::FixedSizeList(..)
                    | DataType::Map(..)
            )
        };
        if self.format == Format::Csv
            && let Some(f) = schema.fields().iter().find(|f| nested(f.data_type()))
        {
            return Err(Error::Output {
                path: self.path.clone(),
                reason: format!(
                    "CSV cannot hold column '{}' of type {}; write Parquet, or choose a scalar --result-type such as double",
                    f.name(),
                    f.data_type()
                ),
            });
        }
        Ok(())
    }
}

/// An object store target, checked: see [`OutputSpec::remote_target`].
struct RemoteTarget {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    existing: Vec<objects::Listed>,
}

/// The store of a remote target and the target's path in it.
fn open_target(url: &Url, shown: &Path) -> Result<(Arc<dyn ObjectStore>, ObjectPath)> {
    objects::open(url).map_err(|source| Error::OutputStore { path: shown.to_path_buf(), source })
}

fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The temporary directory of an output being written; removed unless committed.
///
/// Beside it lies a lock file (`<dir>.lock`) that this process holds locked for as long as the
/// output is being written. The operating system releases the lock when the process dies,
/// SIGKILL included, so the next job writing to the same place can tell an abandoned staging
/// directory from a live one and removes it ([`sweep_stale`]).
#[derive(Debug)]
pub(crate) struct Staging {
    pub(crate) dir: PathBuf,
    lock_path: PathBuf,
    _lock: File,
    committed: bool,
    /// Abandoned staging directories of earlier jobs removed before this one started.
    pub(crate) swept: Vec<Swept>,
}

/// A temporary output of a dead job, removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swept {
    /// The directory that was removed.
    pub path: PathBuf,
    /// The bytes it held.
    pub bytes: u64,
}

const STAGING_MARK: &str = ".mlscore-tmp-";

/// The staging directories (and their lock files) of the outputs this process is writing.
static LIVE_STAGING: std::sync::Mutex<Vec<(PathBuf, PathBuf)>> = std::sync::Mutex::new(Vec::new());

/// Removes the temporary files of every output this process is still writing, for a process
/// about to exit before its jobs finish (on SIGINT or SIGTERM): nothing of them is left behind.
/// Returns how many outputs were abandoned. Writers still running may recreate a file in a
/// directory being removed, so each removal is tried a few times.
pub fn abandon_unfinished_outputs() -> usize {
    let live = LIVE_STAGING.lock().map(|l| l.clone()).unwrap_or_default();
    for (dir, lock) in &live {
        for _ in 0..5 {
            match std::fs::remove_dir_all(dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => std::thread::yield_now(),
                _ => break,
            }
        }
        let _ = std::fs::remove_file(lock);
    }
    live.len()
}

impl Staging {
    /// A directory beside `target`, or in the system's temporary directory for a remote target.
    pub(crate) fn new(target: &Path, remote: bool) -> Result<Self> {
        let name = target.file_name().and_then(|n| n.to_str()).unwrap_or("output");
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or_default();
        let parent = if remote { std::env::temp_dir() } else { parent_dir(target) };
        let swept = sweep_stale(&parent, name);
        let dir = parent.join(format!(".{name}{STAGING_MARK}{}-{nanos}", std::process::id()));
        let lock_path = with_suffix(&dir, ".lock");
        let lock = File::create(&lock_path).map_err(|e| Error::io("cannot create", &lock_path, e))?;
        lock.try_lock().map_err(|e| Error::io("cannot lock", &lock_path, e.into()))?;
        if let Err(e) = std::fs::create_dir(&dir) {
            let _ = std::fs::remove_file(&lock_path);
            return Err(Error::io("cannot create", &dir, e));
        }
        if let Ok(mut live) = LIVE_STAGING.lock() {
            live.push((dir.clone(), lock_path.clone()));
        }
        Ok(Self { dir, lock_path, _lock: lock, committed: false, swept })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Ok(mut live) = LIVE_STAGING.lock() {
            live.retain(|(dir, _)| dir != &self.dir);
        }
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

/// `path` with `suffix` appended to its last component.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Removes the staging directories that jobs writing `name` in `parent` left when they died:
/// those whose lock file nobody holds any more, with their lock files and any `.old` copy of a
/// replaced output. Staging directories of running jobs (their lock is held) are left alone, and
/// so is anything this process cannot read or remove: sweeping never fails a job.
fn sweep_stale(parent: &Path, name: &str) -> Vec<Swept> {
    let prefix = format!(".{name}{STAGING_MARK}");
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut swept = Vec::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(lock_name) = file_name.to_str().filter(|n| n.starts_with(&prefix)) else {
            continue;
        };
        let Some(stem) = lock_name.strip_suffix(".lock") else {
            continue;
        };
        let lock_path = entry.path();
        let Ok(lock) = File::options().write(true).open(&lock_path) else {
            continue;
        };
        if lock.try_lock().is_err() {
            continue; // a live job holds it
        }
        let mut removed_all = true;
        for dir in [parent.join(stem), parent.join(format!("{stem}.old"))] {
            let bytes = tree_bytes(&dir);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => swept.push(Swept { path: dir, bytes }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(_) => removed_all = false,
            }
        }
        // The lock file is what marks the leftovers as this kind of debris: it goes last, and
        // only when nothing of them is left, so that a later job can try again.
        if removed_all {
            let _ = std::fs::remove_file(&lock_path);
        }
    }
    swept
}

/// The bytes of the files under `path` (0 where it cannot be read).
fn tree_bytes(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path).map(|entries| entries.flatten().map(|e| tree_bytes(&e.path())).sum()).unwrap_or_default()
}

/// What writing produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Rows written.
    pub rows: u64,
    /// Files in the committed output.
    pub files: usize,
    /// Bytes of the committed output.
    pub bytes: u64,
    /// Temporary outputs of dead jobs removed before writing.
    pub swept: Vec<Swept>,
}

/// Waits for every partition writer: what the finished ones wrote, and the first error, if any
/// (every writer runs to its end either way, so nothing is left writing behind a failure).
async fn join_writers<T>(tasks: Vec<tokio::task::JoinHandle<Result<T>>>) -> (Vec<T>, Option<Error>) {
    let mut done = Vec::with_capacity(tasks.len());
    let mut first_error = None;
    for t in tasks {
        match t.await {
            Ok(Ok(p)) => done.push(p),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            // A reader that panicked on a damaged input (the parquet crate asserts on some
            // pages) ends its task: that is the job's error, never the process's end.
            Err(join) if join.is_panic() => {
                let said = mlscore_core::panic_message(join.into_panic().as_ref());
                first_error.get_or_insert(Error::Query(format!(
                    "reading the input failed inside a reader ({said}); an input file is damaged"
                )));
            }
            Err(join) => {
                first_error.get_or_insert(Error::Query(format!("a writer task failed: {join}")));
            }
        }
    }
    (done, first_error)
}

/// Runs every partition of `plan`, writes them, and commits the output.
pub async fn write_plan(
    plan: Arc<dyn ExecutionPlan>,
    task_ctx: Arc<TaskContext>,
    spec: &OutputSpec,
    progress: Arc<dyn Progress>,
) -> Result<WriteStats> {
    let schema = plan.schema();
    if let (Some(url), true) = (&spec.url, spec.directory) {
        // The check lists the target; writing needs that listing, so it is taken once.
        spec.check_format(&schema)?;
        let target = spec.remote_target(url).await?;
        return write_remote_dir(plan, task_ctx, spec, url, target, progress).await;
    }
    spec.check(&schema).await?;
    let mut staging = Staging::new(&spec.path, spec.url.is_some())?;
    let partitions = plan.properties().partitioning.partition_count().max(1);
    let ext = spec.format.extension();
    let mut tasks = Vec::with_capacity(partitions);
    for i in 0..partitions {
        let part = staging.dir.join(format!("part-{i:05}{ext}"));
        let plan = plan.clone();
        let ctx = task_ctx.clone();
        let spec = spec.clone();
        let progress = progress.clone();
        let header = spec.directory || i == 0;
        tasks.push(tokio::spawn(async move {
            write_partition(plan, i, ctx, &part, &spec, header, progress.as_ref()).await.map(|rows| (part, rows))
        }));
    }
    let (parts, first_error) = join_writers(tasks).await;
    if let Some(e) = first_error {
        return Err(e);
    }
    let rows = parts.iter().map(|(_, r)| r).sum();
    let stats = if spec.directory {
        commit_dir(&mut staging, spec, &parts)?
    } else {
        let assembled = staging.dir.join(format!("assembled{ext}"));
        let paths: Vec<&Path> = parts.iter().map(|(p, _)| p.as_path()).collect();
        match spec.format {
            Format::Parquet => stitch_parquet(&paths, &assembled)?,
            _ => concat_files(&paths, &assembled)?,
        }
        let bytes = std::fs::metadata(&assembled).map(|m| m.len()).unwrap_or_default();
        match &spec.url {
            Some(url) => upload_file(&assembled, spec, url).await?,
            None => replace(&assembled, &spec.path, spec.overwrite)?,
        }
        WriteStats { rows: 0, files: 1, bytes, swept: Vec::new() }
    };
    Ok(WriteStats { rows, swept: std::mem::take(&mut staging.swept), ..stats })
}

async fn write_partition(
    plan: Arc<dyn ExecutionPlan>,
    partition: usize,
    ctx: Arc<TaskContext>,
    path: &Path,
    spec: &OutputSpec,
    csv_header: bool,
    progress: &dyn Progress,
) -> Result<u64> {
    let mut stream = plan.execute(partition, ctx)?;
    let schema = stream.schema();
    let file = File::create(path).map_err(|e| Error::io("cannot create", path, e))?;
    let mut rows = 0u64;
    let parquet_err = |source| Error::Parquet { path: path.to_path_buf(), source };
    match spec.format {
        Format::Parquet => {
            let props = parquet_props(spec, &schema);
            let mut writer = ArrowWriter::try_new(BufWriter::with_capacity(1 << 20, file), schema, Some(props))
                .map_err(parquet_err)?;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                writer.write(&batch).map_err(parquet_err)?;
                rows += batch.num_rows() as u64;
                progress.rows_written(batch.num_rows() as u64);
            }
            writer.close().map_err(parquet_err)?;
        }
        _ => {
            let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(csv_header)
                .build(BufWriter::with_capacity(1 << 20, file));
            let mut wrote_any = false;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                writer.write(&batch).map_err(|source| Error::Csv { path: path.to_path_buf(), source })?;
                wrote_any = true;
                rows += batch.num_rows() as u64;
                progress.rows_written(batch.num_rows() as u64);
            }
            if !wrote_any && csv_header {
                // An empty result still gets its header line.
                let empty = datafusion::arrow::record_batch::RecordBatch::new_empty(schema);
                writer.write(&empty).map_err(|source| Error::Csv { path: path.to_path_buf(), source })?;
            }
            let mut inner = writer.into_inner();
            inner.flush().map_err(|e| Error::io("cannot write", path, e))?;
        }
    }
    Ok(rows)
}

/// The writer properties of an output with `schema`: its compression, provenance metadata and
/// row group size, and no dictionaries for floating-point columns.
pub(crate) fn parquet_props(spec: &OutputSpec, schema: &SchemaRef) -> WriterProperties {
    float_columns_plain(WriterProperties::builder(), schema)
        .set_compression(spec.codec.parquet())
        .set_max_row_group_row_count(Some(spec.row_group_rows))
        .set_key_value_metadata(Some(spec.metadata.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())).collect()))
        .build()
}

/// Copies the row groups of `parts`, in order, into one Parquet file (no decoding).
fn stitch_parquet(parts: &[&Path], out: &Path) -> Result<()> {
    fn perr(path: &Path) -> impl Fn(parquet::errors::ParquetError) -> Error + '_ {
        move |source| Error::Parquet { path: path.to_path_buf(), source }
    }
    let mut inputs = Vec::with_capacity(parts.len());
    for p in parts {
        let f = File::open(p).map_err(|e| Error::io("cannot open", p, e))?;
        let meta = ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Optional)
            .parse_and_finish(&f)
            .map_err(perr(p))?;
        inputs.push((ChunkSource::open(p).map_err(|e| Error::io("cannot open", p, e))?, meta));
    }
    let Some((_, first)) = inputs.first() else {
        return Err(Error::Query("no partitions were written".into()));
    };
    let kv: Vec<KeyValue> = first.file_metadata().key_value_metadata().cloned().unwrap_or_default();
    let created_by = first.file_metadata().created_by().map(str::to_string);
    let props = Arc::new(
        WriterProperties::builder()
            .set_key_value_metadata(Some(kv))
            .set_created_by(created_by.unwrap_or_else(|| "mlscore".into()))
            .build(),
    );
    let root = first.file_metadata().schema_descr().root_schema_ptr();
    let (file, splices) = SpliceFile::create(out).map_err(|e| Error::io("cannot create", out, e))?;
    let mut writer = SerializedFileWriter::new(file, root, props).map_err(perr(out))?;
    for (part, (input, meta)) in parts.iter().zip(&inputs) {
        for (rg_idx, rg) in meta.row_groups().iter().enumerate() {
            splices.start(writer.bytes_written());
            let mut rg_out = writer.next_row_group().map_err(perr(out))?;
            for (col_idx, column) in rg.columns().iter().enumerate() {
                let close = copied_close(meta, rg_idx, col_idx, true);
                let placeholder =
                    splices.copy(input, column).map_err(|e| Error::io("cannot copy a column chunk of", part, e))?;
                rg_out.append_column(&placeholder, close).map_err(perr(out))?;
            }
            rg_out.close().map_err(perr(out))?;
            splices.check(writer.bytes_written()).map_err(|e| Error::io("cannot write", out, e))?;
        }
    }
    let file = writer.into_inner().map_err(perr(out))?;
    file.finish().map_err(|e| Error::io("cannot write", out, e))?;
    Ok(())
}

fn concat_files(parts: &[&Path], out: &Path) -> Result<()> {
    let mut w = BufWriter::new(File::create(out).map_err(|e| Error::io("cannot create", out, e))?);
    for p in parts {
        let mut f = File::open(p).map_err(|e| Error::io("cannot open", p, e))?;
        std::io::copy(&mut f, &mut w).map_err(|e| Error::io("cannot write", out, e))?;
    }
    w.flush().map_err(|e| Error::io("cannot write", out, e))
}

/// Moves `from` onto `to` (same directory, so the rename is atomic for files).
pub(crate) fn replace(from: &Path, to: &Path, overwrite: bool) -> Result<()> {
    if to.exists() && !overwrite {
        return Err(Error::Output {
            path: to.to_path_buf(),
            reason: "appeared while the job ran; not replaced".into(),
        });
    }
    std::fs::rename(from, to).map_err(|e| Error::io("cannot move the finished output to", to, e))
}

pub(crate) fn commit_dir(staging: &mut Staging, spec: &OutputSpec, parts: &[(PathBuf, u64)]) -> Result<WriteStats> {
    let bytes = parts.iter().map(|(p, _)| std::fs::metadata(p).map(|m| m.len()).unwrap_or_default()).sum();
    // Mark the directory as complete, as Spark and Hadoop committers do.
    File::create(staging.dir.join("_SUCCESS"))
        .map_err(|e| Error::io("cannot create", staging.dir.join("_SUCCESS"), e))?;
    let target = &spec.path;
    let old = if target.exists() {
        let is_empty = std::fs::read_dir(target).map(|mut d| d.next().is_none()).unwrap_or(false);
        if is_empty {
            std::fs::remove_dir(target).map_err(|e| Error::io("cannot replace", target, e))?;
            None
        } else if spec.overwrite {
            let old = with_suffix(&staging.dir, ".old");
            std::fs::rename(target, &old).map_err(|e| Error::io("cannot move aside", target, e))?;
            Some(old)
        } else {
            return Err(Error::Output {
                path: target.clone(),
                reason: "appeared while the job ran; not replaced".into(),
            });
        }
    } else {
        None
    };
    std::fs::rename(&staging.dir, target).map_err(|e| Error::io("cannot move the finished output to", target, e))?;
    staging.committed = true;
    if let Some(old) = old {
        let _ = std::fs::remove_dir_all(old);
    }
    Ok(WriteStats { rows: 0, files: parts.len(), bytes, swept: Vec::new() })
}

/// Bytes buffered before they are handed to a multipart upload, and uploads in flight per part.
const UPLOAD_CHUNK: usize = 8 << 20;
const UPLOADS_IN_FLIGHT: usize = 2;

/// A part file of a remote directory, uploaded but not yet completed (so not yet visible).
#[derive(Debug)]
struct PendingPart {
    upload: WriteMultipart,
    location: ObjectPath,
    rows: u64,
    bytes: u64,
}

/// Streams each partition into a multipart upload under the target prefix, then completes them
/// all (or, on any failure, aborts them all) and writes `_SUCCESS`.
async fn write_remote_dir(
    plan: Arc<dyn ExecutionPlan>,
    task_ctx: Arc<TaskContext>,
    spec: &OutputSpec,
    url: &Url,
    target: RemoteTarget,
    progress: Arc<dyn Progress>,
) -> Result<WriteStats> {
    let RemoteTarget { store, prefix, existing } = target;
    let partitions = plan.properties().partitioning.partition_count().max(1);
    let ext = spec.format.extension();
    let mut tasks = Vec::with_capacity(partitions);
    for i in 0..partitions {
        let location = prefix.clone().join(format!("part-{i:05}{ext}"));
        let (plan, ctx, spec, progress, store) =
            (plan.clone(), task_ctx.clone(), spec.clone(), progress.clone(), store.clone());
        tasks.push(tokio::spawn(async move {
            write_remote_partition(plan, i, ctx, store, location, &spec, progress.as_ref()).await
        }));
    }
    let (parts, mut first_error) = join_writers(tasks).await;
    if first_error.is_none() && !spec.overwrite {
        match objects::list(store.as_ref(), url, &prefix).await {
            Ok(now) if !now.is_empty() => {
                first_error = Some(spec.error("appeared while the job ran; not replaced"));
            }
            Ok(_) => {}
            Err(e) => first_error = Some(spec.error(e)),
        }
    }
    if let Some(e) = first_error {
        for p in parts {
            let _ = p.upload.abort().await;
        }
        return Err(e);
    }
    let rows = parts.iter().map(|p| p.rows).sum();
    let bytes = parts.iter().map(|p| p.bytes).sum();
    let files = parts.len();
    let written: Vec<ObjectPath> = parts.iter().map(|p| p.location.clone()).collect();
    // Every part is completed at once, so that the moment when some are visible and `_SUCCESS`
    // is not yet (a job killed then leaves complete parts without the marker) is as short as
    // the slowest completion. If one fails, the parts that did complete are removed again.
    let completed = futures::future::join_all(parts.into_iter().map(|p| async move {
        let done = p.upload.finish().await;
        (p.location, done)
    }))
    .await;
    if let Some((location, Err(e))) = completed.iter().find(|(_, done)| done.is_err()) {
        for (done, _) in completed.iter().filter(|(_, d)| d.is_ok()) {
            let _ = store.delete(done).await;
        }
        return Err(spec.error(format!("cannot complete {location}: {e}")));
    }
    // Replaced outputs: what the new parts did not overwrite goes.
    for old in existing.iter().filter(|o| !written.contains(&o.location)) {
        store
            .delete(&old.location)
            .await
            .map_err(|e| spec.error(format!("cannot remove the old {}: {e}", old.location)))?;
    }
    store
        .put(&prefix.clone().join("_SUCCESS"), Vec::<u8>::new().into())
        .await
        .map_err(|e| spec.error(format!("cannot write _SUCCESS: {e}")))?;
    Ok(WriteStats { rows, files, bytes, swept: Vec::new() })
}

async fn write_remote_partition(
    plan: Arc<dyn ExecutionPlan>,
    partition: usize,
    ctx: Arc<TaskContext>,
    store: Arc<dyn ObjectStore>,
    location: ObjectPath,
    spec: &OutputSpec,
    progress: &dyn Progress,
) -> Result<PendingPart> {
    let upload = store
        .put_multipart(&location)
        .await
        .map_err(|e| spec.error(format!("cannot start uploading {location}: {e}")))?;
    let mut upload = WriteMultipart::new_with_chunk_size(upload, UPLOAD_CHUNK);
    let mut bytes = 0u64;
    let written = async {
        let mut stream = plan.execute(partition, ctx)?;
        let schema = stream.schema();
        let mut rows = 0u64;
        let upload_err = |e: object_store::Error| spec.error(format!("uploading {location}: {e}"));
        match spec.format {
            Format::Parquet => {
                let parquet_err =
                    |source| Error::Parquet { path: spec.path.join(location.filename().unwrap_or_default()), source };
                let mut writer = ArrowWriter::try_new(
                    Vec::with_capacity(UPLOAD_CHUNK),
                    schema,
                    Some(parquet_props(spec, &stream.schema())),
                )
                .map_err(parquet_err)?;
                while let Some(batch) = stream.next().await {
                    let batch = batch?;
                    writer.write(&batch).map_err(parquet_err)?;
                    rows += batch.num_rows() as u64;
                    progress.rows_written(batch.num_rows() as u64);
                    let buf = writer.inner_mut();
                    if buf.len() >= UPLOAD_CHUNK {
                        upload.write(buf);
                        bytes += buf.len() as u64;
                        buf.clear();
                        upload.wait_for_capacity(UPLOADS_IN_FLIGHT).await.map_err(upload_err)?;
                    }
                }
                // The footer; finishing flushes everything into the buffer.
                writer.finish().map_err(parquet_err)?;
                let rest = std::mem::take(writer.inner_mut());
                upload.write(&rest);
                bytes += rest.len() as u64;
            }
            _ => {
                let mut first = true;
                while let Some(batch) = stream.next().await {
                    let batch = batch?;
                    let text = csv_bytes(&batch, first, spec)?;
                    first = false;
                    upload.write(&text);
                    bytes += text.len() as u64;
                    rows += batch.num_rows() as u64;
                    progress.rows_written(batch.num_rows() as u64);
                    upload.wait_for_capacity(UPLOADS_IN_FLIGHT).await.map_err(upload_err)?;
                }
                if first {
                    let text = csv_bytes(&datafusion::arrow::record_batch::RecordBatch::new_empty(schema), true, spec)?;
                    upload.write(&text);
                    bytes += text.len() as u64;
                }
            }
        }
        // Every part uploaded; completing the upload is left to the commit.
        upload.wait_for_capacity(0).await.map_err(upload_err)?;
        Ok(rows)
    }
    .await;
    match written {
        Ok(rows) => Ok(PendingPart { upload, location, rows, bytes }),
        Err(e) => {
            let _ = upload.abort().await;
            Err(e)
        }
    }
}

fn csv_bytes(batch: &datafusion::arrow::record_batch::RecordBatch, header: bool, spec: &OutputSpec) -> Result<Vec<u8>> {
    let mut writer = datafusion::arrow::csv::WriterBuilder::new().with_header(header).build(Vec::new());
    writer.write(batch).map_err(|e| spec.error(e))?;
    Ok(writer.into_inner())
}

/// Uploads a finished local file onto a remote target (visible only once complete).
pub(crate) async fn upload_file(file: &Path, spec: &OutputSpec, url: &Url) -> Result<()> {
    use std::io::Read;
    let (store, location) = open_target(url, &spec.path)?;
    if !spec.overwrite && store.head(&location).await.is_ok() {
        return Err(spec.error("appeared while the job ran; not replaced"));
    }
    let upload =
        store.put_multipart(&location).await.map_err(|e| spec.error(format!("cannot start the upload: {e}")))?;
    let mut upload = WriteMultipart::new_with_chunk_size(upload, UPLOAD_CHUNK);
    let sent = async {
        let mut f = File::open(file).map_err(|e| Error::io("cannot open", file, e))?;
        let mut buf = vec![0u8; UPLOAD_CHUNK];
        loop {
            let n = f.read(&mut buf).map_err(|e| Error::io("cannot read", file, e))?;
            if n == 0 {
                break;
            }
            upload.write(&buf[..n]);
            upload.wait_for_capacity(UPLOADS_IN_FLIGHT).await.map_err(|e| spec.error(e))?;
        }
        Ok(())
    }
    .await;
    match sent {
        Ok(()) => upload.finish().await.map(|_| ()).map_err(|e| spec.error(format!("cannot complete the upload: {e}"))),
        Err(e) => {
            let _ = upload.abort().await;
            Err(e)
        }
    }
}
