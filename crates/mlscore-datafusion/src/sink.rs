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
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::{KeyValue, PageIndexPolicy, ParquetMetaDataReader};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;

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
    fn parquet(self) -> Compression {
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
    /// The target file or directory.
    pub path: PathBuf,
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
    pub fn new(path: &str, format: Option<Format>, overwrite: bool) -> Result<Self> {
        let p = PathBuf::from(path);
        let ext_format = Format::from_extension(path);
        let directory = path.ends_with('/') || p.is_dir() || (ext_format.is_none() && p.extension().is_none());
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
        if !directory && ext_format.is_none() && p.extension().is_some() {
            return Err(Error::Output {
                path: p,
                reason: "unknown file extension: name the output .parquet or .csv, or end it with / for a directory"
                    .into(),
            });
        }
        Ok(Self {
            path: p,
            format,
            directory,
            overwrite,
            metadata: Vec::new(),
            row_group_rows: 128 * 1024,
            codec: Codec::default(),
        })
    }

    /// Checks the target can be written, before any work is done.
    pub fn check(&self, schema: &SchemaRef) -> Result<()> {
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

fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The temporary directory of an output being written; removed unless committed.
#[derive(Debug)]
struct Staging {
    dir: PathBuf,
    committed: bool,
}

impl Staging {
    fn new(target: &Path) -> Result<Self> {
        let name = target.file_name().and_then(|n| n.to_str()).unwrap_or("output");
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or_default();
        let dir = parent_dir(target).join(format!(".{name}.mlscore-tmp-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| Error::io("cannot create", &dir, e))?;
        Ok(Self { dir, committed: false })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
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
}

/// Runs every partition of `plan`, writes them, and commits the output.
pub async fn write_plan(
    plan: Arc<dyn ExecutionPlan>,
    task_ctx: Arc<TaskContext>,
    spec: &OutputSpec,
    progress: Arc<dyn Progress>,
) -> Result<WriteStats> {
    let schema = plan.schema();
    spec.check(&schema)?;
    let mut staging = Staging::new(&spec.path)?;
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
    let mut parts = Vec::with_capacity(partitions);
    let mut first_error = None;
    for t in tasks {
        match t.await {
            Ok(Ok(p)) => parts.push(p),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(join) => {
                first_error.get_or_insert(Error::Query(format!("a writer task failed: {join}")));
            }
        }
    }
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
        replace(&assembled, &spec.path, spec.overwrite)?;
        WriteStats { rows: 0, files: 1, bytes }
    };
    Ok(WriteStats { rows, ..stats })
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
            let props = float_columns_plain(WriterProperties::builder(), &schema)
                .set_compression(spec.codec.parquet())
                .set_max_row_group_row_count(Some(spec.row_group_rows))
                .set_key_value_metadata(Some(
                    spec.metadata.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())).collect(),
                ))
                .build();
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
                writer.write(&batch).map_err(|e| Error::Output { path: path.to_path_buf(), reason: e.to_string() })?;
                wrote_any = true;
                rows += batch.num_rows() as u64;
                progress.rows_written(batch.num_rows() as u64);
            }
            if !wrote_any && csv_header {
                // An empty result still gets its header line.
                let empty = datafusion::arrow::record_batch::RecordBatch::new_empty(schema);
                writer.write(&empty).map_err(|e| Error::Output { path: path.to_path_buf(), reason: e.to_string() })?;
            }
            let mut inner = writer.into_inner();
            inner.flush().map_err(|e| Error::io("cannot write", path, e))?;
        }
    }
    Ok(rows)
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
        inputs.push((f, meta));
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
    let file = File::create(out).map_err(|e| Error::io("cannot create", out, e))?;
    let mut writer =
        SerializedFileWriter::new(BufWriter::with_capacity(1 << 20, file), root, props).map_err(perr(out))?;
    for (input, meta) in &inputs {
        let column_index = meta.column_index();
        let offset_index = meta.offset_index();
        for (rg_idx, rg) in meta.row_groups().iter().enumerate() {
            let mut rg_out = writer.next_row_group().map_err(perr(out))?;
            for (col_idx, column) in rg.columns().iter().enumerate() {
                let close = ColumnCloseResult {
                    bytes_written: column.compressed_size() as u64,
                    rows_written: rg.num_rows() as u64,
                    metadata: column.clone(),
                    bloom_filter: None,
                    column_index: column_index.and_then(|c| c.get(rg_idx)).and_then(|r| r.get(col_idx)).cloned(),
                    offset_index: offset_index.and_then(|c| c.get(rg_idx)).and_then(|r| r.get(col_idx)).cloned(),
                };
                rg_out.append_column(input, close).map_err(perr(out))?;
            }
            rg_out.close().map_err(perr(out))?;
        }
    }
    writer.close().map_err(perr(out))?;
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
fn replace(from: &Path, to: &Path, overwrite: bool) -> Result<()> {
    if to.exists() && !overwrite {
        return Err(Error::Output {
            path: to.to_path_buf(),
            reason: "appeared while the job ran; not replaced".into(),
        });
    }
    std::fs::rename(from, to).map_err(|e| Error::io("cannot move the finished output to", to, e))
}

fn commit_dir(staging: &mut Staging, spec: &OutputSpec, parts: &[(PathBuf, u64)]) -> Result<WriteStats> {
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
            let old = staging.dir.with_extension("old");
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
    Ok(WriteStats { rows: 0, files: parts.len(), bytes })
}
