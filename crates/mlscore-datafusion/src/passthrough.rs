//! Parquet in, Parquet out, without re-encoding what the models do not change.
//!
//! A scoring job adds a column to a table. When the input is local Parquet, the output is
//! Parquet, and every column of the result is either an input column passed through under its
//! own name or a model's prediction (`mlscore score`; `SELECT *, churn() AS p FROM ...`), the
//! input's column chunks are copied into the output byte for byte (same pages, encodings,
//! compression, statistics and page index) and only the models' feature columns are decoded;
//! the predictions are the only columns encoded. The output has the input's row groups, in the
//! input's order (files in the order the query engine reads them, one output part per input file
//! for a directory output), so it holds exactly what the re-encoding route writes. The models
//! run through the query's own physical expressions, so their semantics are the engine's.
//!
//! One thread decodes the features, batch after batch and row group after row group; others
//! score the batches as they come; one encodes the predictions in order into column chunks held
//! in memory; one writes, copying a row group's input chunks into the output as soon as the row
//! group before it is written and appending its predictions when they are encoded. No thread
//! waits for the others at a row group's end. Memory is bounded by a few batches of features
//! and two row groups' prediction chunks, whatever the row group size or the number of columns
//! passed through.
//!
//! [`PassThrough::plan`] says why when it cannot serve a job (CSV, object store inputs, files
//! whose schemas differ, a query that filters, sorts or computes columns, a compression or row
//! group size asked for that the input does not have); the caller then takes the re-encoding
//! route.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{FieldRef, Schema, SchemaRef};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::dataframe::DataFrame;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_expr::projection::ProjectionExprs;
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::expressions::Column;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::arrow::arrow_writer::{ArrowColumnChunk, ArrowColumnWriter, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::arrow::{ArrowSchemaConverter, ProjectionMask, add_encoded_arrow_schema_to_metadata};

use crate::chunk::{ChunkSource, SpliceFile, Splices, copied_close};
use parquet::file::metadata::PageIndexPolicy;
use parquet::file::properties::WriterPropertiesPtr;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;

use crate::error::{Error, Result};
use crate::input::Format;
use crate::job::EngineOptions;
use crate::sink::{OutputSpec, Progress, Staging, WriteStats, commit_dir, parquet_props, replace, upload_file};
use crate::udf::PredictUdf;

/// When a Parquet-to-Parquet job may copy its input's columns instead of re-encoding them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyPolicy {
    /// Re-encode every column (`--reencode`): never copy.
    pub reencode: bool,
    /// The user asked for a compression: copy only columns already compressed that way.
    pub compression_given: bool,
    /// The user asked for a row group size: the input's row groups cannot be kept, so re-encode.
    pub row_group_rows_given: bool,
}

/// An input file and what its footer says.
struct InputFile {
    path: PathBuf,
    meta: ArrowReaderMetadata,
}

/// A column of the output.
enum OutColumn {
    /// An input root column, copied: the input's leaf columns under it.
    Copy { leaves: Vec<usize> },
    /// A model's prediction: its expression over the decoded feature columns and how many leaf
    /// columns it has.
    Model { expr: Arc<dyn PhysicalExpr>, leaves: usize },
}

/// A job the pass-through route can serve, planned.
pub(crate) struct PassThrough {
    files: Vec<InputFile>,
    /// The input's root columns the models read, ascending: what is decoded.
    projected: Vec<usize>,
    columns: Vec<OutColumn>,
    /// The models' fields, in output order, and the writer factory of their leaf columns.
    models: Arc<Schema>,
    factory: ArrowRowGroupWriterFactory,
    /// The output's Parquet root and writer properties (metadata, the Arrow schema hint).
    root: Arc<Type>,
    props: WriterPropertiesPtr,
    /// Whether each input file has an offset index for every column chunk. A Parquet file's
    /// column chunks have one each or none do: an output keeps the page index only when all
    /// the input files it is made of have one.
    page_index: Vec<bool>,
    batch_rows: usize,
    threads: usize,
    timings: Timings,
}

/// CPU time spent in each phase of a job, in nanoseconds.
#[derive(Debug, Default)]
struct Timings {
    decode: AtomicU64,
    model: AtomicU64,
    encode: AtomicU64,
    copy: AtomicU64,
}

/// Runs `f`, adding the CPU time its thread spent in it to `counter` (the wall time where the
/// CPU time cannot be read: then threads waiting for a core count too).
fn timed<T>(counter: &AtomicU64, f: impl FnOnce() -> T) -> T {
    let (wall, cpu) = (Instant::now(), mlscore_core::thread_cpu_ns());
    let out = f();
    let spent = match (cpu, mlscore_core::thread_cpu_ns()) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => u64::try_from(wall.elapsed().as_nanos()).unwrap_or(u64::MAX),
    };
    counter.fetch_add(spent, Ordering::Relaxed);
    out
}

impl std::fmt::Debug for PassThrough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassThrough")
            .field("files", &self.files.iter().map(|i| &i.path).collect::<Vec<_>>())
            .field("projected", &self.projected)
            .finish_non_exhaustive()
    }
}

/// A batch of feature columns decoded: the `index`th of the `seq`th row group (counting every
/// input file's in order).
struct Decoded {
    seq: usize,
    index: usize,
    batch: RecordBatch,
}

/// What the decoding and scoring threads tell the encoding one.
enum Done {
    /// A batch's predictions, in output order.
    Scored {
        seq: usize,
        index: usize,
        predictions: Vec<ArrayRef>,
    },
    /// Every batch of row group `seq` is decoded: there are `batches`.
    Ended {
        seq: usize,
        batches: usize,
    },
    Failed(Error),
}

/// One row group's predictions, encoded: the models' leaf column chunks in output order.
type Encoded = Vec<ArrowColumnChunk>;

/// The scan a plan is, if it is one local Parquet scan with a projection and nothing else
/// (no filter, no limit, no sort, no join): the files in the order its partitions read them,
/// its table schema, and its projection (columns and expressions over the table's columns).
fn plain_scan(
    plan: &Arc<dyn ExecutionPlan>,
) -> std::result::Result<(Vec<PathBuf>, SchemaRef, ProjectionExprs), String> {
    let config = plan
        .downcast_ref::<DataSourceExec>()
        .and_then(|exec| exec.data_source().downcast_ref::<FileScanConfig>())
        .ok_or_else(|| format!("the query is more than a scan ({})", plan.name()))?;
    if config.limit.is_some() {
        return Err("the query has a limit".into());
    }
    if config.file_source().file_type() != "parquet" {
        return Err("the input is not Parquet".into());
    }
    if config.file_source().filter().is_some() {
        return Err("the query filters rows".into());
    }
    if config.object_store_url.as_str() != "file:///" {
        return Err(format!("the input is in an object store ({})", config.object_store_url.as_str()));
    }
    let table = config.file_schema().clone();
    let projection = match config.file_source().projection() {
        Some(p) => p.clone(),
        None => ProjectionExprs::from_indices(&(0..table.fields().len()).collect::<Vec<_>>(), &table),
    };
    let local = object_store::local::LocalFileSystem::new();
    let mut files: Vec<PathBuf> = Vec::new();
    for group in &config.file_groups {
        for file in group.files() {
            if !file.partition_values.is_empty() {
                return Err("the table has partition columns".into());
            }
            let path = local
                .path_to_filesystem(&file.object_meta.location)
                .map_err(|e| format!("cannot map {} to a local path: {e}", file.object_meta.location))?;
            if !files.contains(&path) {
                files.push(path);
            }
        }
    }
    Ok((files, table, projection))
}

/// Whether `codec` is the compression the user asked for (levels aside).
fn same_codec(a: parquet::basic::Compression, b: parquet::basic::Compression) -> bool {
    std::mem::discriminant(&a) == std::mem::discriminant(&b)
}

/// Whether `expr` calls a model (a [`PredictUdf`]) anywhere.
fn calls_a_model(expr: &Arc<dyn PhysicalExpr>) -> bool {
    expr.exists(|e| {
        Ok(e.downcast_ref::<ScalarFunctionExpr>()
            .is_some_and(|f| f.fun().inner().downcast_ref::<PredictUdf>().is_some()))
    })
    .unwrap_or(false)
}

impl PassThrough {
    /// Plans the query `df` for the pass-through route: every output column either an input
    /// column passed through under its own name or a model's prediction. `Ok(Err(reason))`
    /// when this route cannot serve it and the caller should re-encode.
    pub(crate) async fn plan(
        df: &DataFrame,
        spec: &OutputSpec,
        engine: &EngineOptions,
        policy: CopyPolicy,
    ) -> Result<std::result::Result<Self, String>> {
        if policy.reencode {
            return Ok(Err("--reencode".into()));
        }
        if spec.format != Format::Parquet {
            return Ok(Err("the output is not Parquet".into()));
        }
        if spec.url.is_some() && spec.directory {
            return Ok(Err("the output is an object store directory".into()));
        }
        if policy.row_group_rows_given {
            return Ok(Err("a row group size was asked for".into()));
        }
        let plan = df.clone().create_physical_plan().await?;
        let (paths, table, projection) = match plain_scan(&plan) {
            Ok(scan) => scan,
            Err(reason) => return Ok(Err(reason)),
        };
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            let file = File::open(&path).map_err(|e| Error::io("cannot open", &path, e))?;
            let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
            let meta = ArrowReaderMetadata::load(&file, options)
                .map_err(|source| Error::ParquetInput { path: path.clone(), source })?;
            files.push(InputFile { path, meta });
        }
        let Some(first) = files.first() else {
            return Ok(Err("no input files".into()));
        };
        let descr = first.meta.metadata().file_metadata().schema_descr_ptr();
        for f in &files {
            let m = f.meta.metadata();
            if m.file_metadata().schema_descr().root_schema() != descr.root_schema() {
                return Ok(Err(format!(
                    "{} has another Parquet schema than {}",
                    f.path.display(),
                    first.path.display()
                )));
            }
            for rg in m.row_groups() {
                for c in rg.columns() {
                    if c.file_path().is_some() {
                        return Ok(Err(format!("{} keeps column data in other files", f.path.display())));
                    }
                    if policy.compression_given && !same_codec(c.compression(), spec.codec.parquet()) {
                        return Ok(Err(format!(
                            "{} is compressed with {}, not the compression asked for",
                            f.path.display(),
                            c.compression()
                        )));
                    }
                }
            }
        }
        // The table the engine reads must be the files' own: same columns, same types, so that
        // the projection's column indices are the files' root columns.
        let file_schema = first.meta.schema().clone();
        let same_table = table.fields().len() == file_schema.fields().len()
            && table
                .fields()
                .iter()
                .zip(file_schema.fields())
                .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
        if !same_table {
            return Ok(Err("the engine reads the files as another table (types or columns differ)".into()));
        }
        let out_schema = plan.schema();
        let mut columns = Vec::with_capacity(projection.iter().count());
        let mut model_fields: Vec<FieldRef> = Vec::new();
        let mut parquet_fields = Vec::new();
        let mut projected: Vec<usize> = Vec::new();
        let parquet_err = |source| Error::Parquet { path: spec.path.clone(), source };
        let input_root = descr.root_schema();
        for (i, p) in projection.iter().enumerate() {
            let field = out_schema.field(i);
            if let Some(c) = p.expr.downcast_ref::<Column>() {
                let root = c.index();
                if field.name() != file_schema.field(root).name() {
                    return Ok(Err(format!("column '{}' is renamed", file_schema.field(root).name())));
                }
                if field.data_type() != file_schema.field(root).data_type() {
                    return Ok(Err(format!("column '{}' changes type", field.name())));
                }
                let leaves = (0..descr.num_columns()).filter(|l| descr.get_column_root_idx(*l) == root).collect();
                parquet_fields.push(input_root.get_fields()[root].clone());
                columns.push(OutColumn::Copy { leaves });
            } else if calls_a_model(&p.expr) {
                let mut reads = Vec::new();
                p.expr
                    .apply(|e| {
                        if let Some(c) = e.downcast_ref::<Column>() {
                            reads.push(c.index());
                        }
                        Ok(TreeNodeRecursion::Continue)
                    })
                    .map_err(Error::from)?;
                projected.extend(reads);
                let field = Arc::new(field.clone());
                let descr =
                    ArrowSchemaConverter::new().convert(&Schema::new(vec![field.clone()])).map_err(parquet_err)?;
                parquet_fields.extend(descr.root_schema().get_fields().iter().cloned());
                model_fields.push(field);
                columns.push(OutColumn::Model { expr: p.expr.clone(), leaves: descr.num_columns() });
            } else {
                return Ok(Err(format!("column '{}' is computed by the query", field.name())));
            }
        }
        projected.sort_unstable();
        projected.dedup();
        if model_fields.is_empty() {
            return Ok(Err("the query calls no model".into()));
        }
        if projected.is_empty() {
            return Ok(Err("the models read no columns".into()));
        }
        // The models' expressions read the decoded columns, which are the projected ones.
        for column in &mut columns {
            if let OutColumn::Model { expr, .. } = column {
                let at = |i: usize| projected.binary_search(&i).unwrap_or_default();
                *expr =
                    expr.clone()
                        .transform(|e| {
                            Ok(match e.downcast_ref::<Column>() {
                                Some(c) => Transformed::yes(
                                    Arc::new(Column::new(c.name(), at(c.index()))) as Arc<dyn PhysicalExpr>
                                ),
                                None => Transformed::no(e),
                            })
                        })
                        .map_err(Error::from)?
                        .data;
            }
        }

        // The output's schema: copied columns as the input stores them, predictions as Arrow
        // writes them. The input's schema-level metadata (pandas' column list, say) goes, as
        // the engine drops it.
        let out_arrow = Arc::new(Schema::new(out_schema.fields().clone()));
        let root = Arc::new(
            Type::group_type_builder(input_root.name()).with_fields(parquet_fields).build().map_err(parquet_err)?,
        );
        // The row group size in them is moot here: the input's row groups are kept.
        let mut props = parquet_props(spec, &out_arrow);
        add_encoded_arrow_schema_to_metadata(&out_arrow, &mut props);
        let props = Arc::new(props);
        // The predictions' column writers come from a schema of their leaves alone: their
        // descriptors equal those of the same leaves in the output's schema.
        let models = Arc::new(Schema::new(model_fields));
        let models_descr = ArrowSchemaConverter::new().convert(&models).map_err(parquet_err)?;
        let shape = SerializedFileWriter::new(std::io::sink(), models_descr.root_schema_ptr(), props.clone())
            .map_err(parquet_err)?;
        let factory = ArrowRowGroupWriterFactory::new(&shape, models.clone());
        let page_index = files
            .iter()
            .map(|f| {
                let m = f.meta.metadata();
                m.offset_index().is_some_and(|index| {
                    index.len() == m.num_row_groups()
                        && index.iter().zip(m.row_groups()).all(|(columns, rg)| columns.len() == rg.num_columns())
                })
            })
            .collect();
        Ok(Ok(Self {
            files,
            projected,
            columns,
            models,
            factory,
            root,
            props,
            page_index,
            batch_rows: engine.batch_rows.max(1),
            threads: engine.partitions.max(1),
            timings: Timings::default(),
        }))
    }

    /// Input columns copied undecoded into the output.
    pub(crate) fn copied_columns(&self) -> usize {
        self.columns.iter().filter(|c| matches!(c, OutColumn::Copy { .. })).count()
    }

    /// Scores every row group and writes and commits the output as `spec` says; returns what
    /// was written and the CPU time each phase took (decoding the features, the model,
    /// encoding the prediction, copying the input's column chunks).
    pub(crate) async fn run(
        self,
        spec: &OutputSpec,
        progress: Arc<dyn Progress>,
    ) -> Result<(WriteStats, Vec<(&'static str, Duration)>)> {
        spec.check(&Arc::new(Schema::empty())).await?;
        let spec_owned = spec.clone();
        let (mut staging, parts) = tokio::task::spawn_blocking(move || {
            let staging = Staging::new(&spec_owned.path, spec_owned.url.is_some())?;
            let parts = self.write(&staging.dir, spec_owned.directory, progress.as_ref())?;
            let t = &self.timings;
            let phases = [("decode", &t.decode), ("model", &t.model), ("encode", &t.encode), ("copy", &t.copy)]
                .map(|(name, ns)| (name, Duration::from_nanos(ns.load(Ordering::Relaxed))));
            Ok::<_, Error>((staging, (parts, phases.to_vec())))
        })
        .await
        .map_err(|e| Error::Query(format!("the pass-through writer failed: {e}")))??;
        let (parts, phases) = parts;
        let swept = std::mem::take(&mut staging.swept);
        let rows = parts.iter().map(|(_, r)| r).sum();
        let stats = if spec.directory {
            commit_dir(&mut staging, spec, &parts)?
        } else {
            let (assembled, _) = parts.first().ok_or_else(|| Error::Query("no output was written".into()))?;
            let bytes = std::fs::metadata(assembled).map(|m| m.len()).unwrap_or_default();
            match &spec.url {
                Some(url) => upload_file(assembled, spec, url).await?,
                None => replace(assembled, &spec.path, spec.overwrite)?,
            }
            WriteStats { rows: 0, files: 1, bytes, swept: Vec::new() }
        };
        Ok((WriteStats { rows, swept, ..stats }, phases))
    }

    /// Writes the output files into `dir`: one per input file for a directory output, else one.
    ///
    /// One thread decodes the feature columns, batch after batch, row group after row group;
    /// `threads` score the batches as they come; this one encodes the predictions in order; one
    /// writes the output, row group after row group. No thread waits for another at a row
    /// group's end, and at most [`PassThrough::in_flight`] batches are decoded and not yet
    /// encoded.
    fn write(&self, dir: &Path, directory: bool, progress: &dyn Progress) -> Result<Vec<(PathBuf, u64)>> {
        let in_flight = self.in_flight();
        let (work_tx, work_rx) = sync_channel::<Decoded>(in_flight);
        let (done_tx, done_rx) = channel::<Done>();
        let (permit_tx, permit_rx) = sync_channel::<()>(in_flight);
        let work_rx = Mutex::new(work_rx);
        std::thread::scope(|scope| {
            let spawned = std::thread::Builder::new().name("mlscore-decode".into()).spawn_scoped(scope, {
                let done = done_tx.clone();
                move || {
                    let decoded = mlscore_core::catch_panic(|| self.decode_all(&work_tx, &done, &permit_tx));
                    let failed = match decoded {
                        Ok(Ok(())) => return,
                        Ok(Err(e)) => e,
                        Err(said) => Error::Query(format!("decoding the features failed: {said}")),
                    };
                    let _ = done.send(Done::Failed(failed));
                }
            });
            if let Err(e) = spawned {
                return Err(Error::Query(format!("cannot start the decoding thread: {e}")));
            }
            for i in 0..self.threads {
                let (work, done) = (&work_rx, done_tx.clone());
                let spawned =
                    std::thread::Builder::new().name(format!("mlscore-score-{i}")).spawn_scoped(scope, move || {
                        loop {
                            let next = work.lock().unwrap_or_else(PoisonError::into_inner).recv();
                            let Ok(Decoded { seq, index, batch }) = next else { return };
                            // A panic would lose the batch and leave the encoder waiting for it:
                            // it is this job's error instead.
                            let scored =
                                mlscore_core::catch_panic(|| timed(&self.timings.model, || self.score(&batch)));
                            let scored = match scored {
                                Ok(Ok(predictions)) => Done::Scored { seq, index, predictions },
                                Ok(Err(e)) => Done::Failed(e),
                                Err(said) => Done::Failed(Error::Query(format!("scoring a batch failed: {said}"))),
                            };
                            if done.send(scored).is_err() {
                                return;
                            }
                        }
                    });
                if let Err(e) = spawned {
                    return Err(Error::Query(format!("cannot start the scoring threads: {e}")));
                }
            }
            drop(done_tx);
            // The writer: row group after row group, the copied columns as soon as the one
            // before is written, the predictions when they are encoded.
            let (encoded_tx, encoded_rx) = sync_channel::<Encoded>(1);
            let writer = std::thread::Builder::new().name("mlscore-write".into()).spawn_scoped(scope, move || {
                let mut out = Output::new(self, dir, directory);
                for &(file, row_group) in &self.places() {
                    let next = || encoded_rx.recv().map_err(|_| Error::Query("the predictions stopped coming".into()));
                    timed(&self.timings.copy, || out.append(file, row_group, next))?;
                }
                out.finish()
            });
            let writer = writer.map_err(|e| Error::Query(format!("cannot start the writing thread: {e}")))?;
            // Returning drops the receivers, which stops the other threads at their next send;
            // the writer, waiting for predictions, then stops too.
            let encoded = mlscore_core::catch_panic(|| self.encode_all(done_rx, permit_rx, encoded_tx, progress))
                .unwrap_or_else(|said| Err(Error::Query(format!("encoding the predictions failed: {said}"))));
            let written = writer.join().map_err(|p| {
                Error::Query(format!("writing the output failed: {}", mlscore_core::panic_message(p.as_ref())))
            })?;
            // An encoding error is the cause of the writer's; a writer that stopped first says why.
            encoded?;
            written
        })
    }

    /// Every row group of the input, in order: its file and its index there.
    fn places(&self) -> Vec<(usize, usize)> {
        (self.files.iter().enumerate())
            .flat_map(|(file, f)| (0..f.meta.metadata().num_row_groups()).map(move |row_group| (file, row_group)))
            .collect()
    }

    /// How many batches may be decoded and not yet encoded.
    fn in_flight(&self) -> usize {
        4 * self.threads
    }

    /// The decoding thread: every row group's feature columns, in order, batch by batch, each
    /// batch once a permit is given; then the row group's batch count.
    fn decode_all(&self, work: &SyncSender<Decoded>, done: &Sender<Done>, permits: &SyncSender<()>) -> Result<()> {
        let mut seq = 0;
        for input in &self.files {
            let path = &input.path;
            let read_err = |source| Error::ParquetInput { path: path.clone(), source };
            for row_group in 0..input.meta.metadata().num_row_groups() {
                let handle = File::open(path).map_err(|e| Error::io("cannot open", path, e))?;
                let mask =
                    ProjectionMask::roots(input.meta.metadata().file_metadata().schema_descr(), self.projected.clone());
                let mut reader = ParquetRecordBatchReaderBuilder::new_with_metadata(handle, input.meta.clone())
                    .with_projection(mask)
                    .with_row_groups(vec![row_group])
                    .with_batch_size(self.batch_rows)
                    .build()
                    .map_err(read_err)?;
                let (mut index, mut rows) = (0, 0usize);
                loop {
                    // The parquet crate asserts on some damaged pages: that is this file's error too.
                    let next = timed(&self.timings.decode, || mlscore_core::catch_panic(|| reader.next()))
                        .map_err(|said| read_err(damaged(&said)))?;
                    let Some(batch) = next else { break };
                    let batch = batch.map_err(|e| read_err(e.into()))?;
                    rows += batch.num_rows();
                    // The other side has stopped when a send fails: so does this one.
                    if permits.send(()).is_err() || work.send(Decoded { seq, index, batch }).is_err() {
                        return Ok(());
                    }
                    index += 1;
                }
                // The copied chunks are taken at the footer's word; a footer that claims other
                // row counts than the pages hold is a damaged file, said of that file.
                let claimed = input.meta.metadata().row_group(row_group).num_rows();
                if i64::try_from(rows).ok() != Some(claimed) {
                    return Err(read_err(parquet::errors::ParquetError::General(format!(
                        "row group {row_group} holds {rows} rows where the file's footer says {claimed}; the file is damaged"
                    ))));
                }
                if done.send(Done::Ended { seq, batches: index }).is_err() {
                    return Ok(());
                }
                seq += 1;
            }
        }
        Ok(())
    }

    /// This thread's part: encodes the scored batches in order and hands each row group's
    /// chunks to the writer once its batches are all encoded. Returns early, and without an
    /// error, when the writer has stopped: its own result says why.
    fn encode_all(
        &self,
        done: Receiver<Done>,
        permits: Receiver<()>,
        encoded: SyncSender<Encoded>,
        progress: &dyn Progress,
    ) -> Result<()> {
        // Batches scored ahead of their turn, and row groups whose batch count is known.
        let mut scored: BTreeMap<(usize, usize), Vec<ArrayRef>> = BTreeMap::new();
        let mut ended: BTreeMap<usize, usize> = BTreeMap::new();
        let places = self.places();
        let (mut seq, mut next) = (0, 0);
        let mut writers: Option<Vec<ArrowColumnWriter>> = None;
        while let Some(&(_, row_group)) = places.get(seq) {
            if let Some(predictions) = scored.remove(&(seq, next)) {
                let writers = match &mut writers {
                    Some(w) => w,
                    None => {
                        writers.insert(self.factory.create_column_writers(row_group).map_err(|s| self.write_err(s))?)
                    }
                };
                timed(&self.timings.encode, || -> Result<()> {
                    let mut writers = writers.iter_mut();
                    for (field, prediction) in self.models.fields().iter().zip(&predictions) {
                        let leaves = compute_leaves(field, prediction).map_err(|s| self.write_err(s))?;
                        // Leaves first: `zip` would take a writer too many from the shared iterator.
                        for (leaf, writer) in leaves.iter().zip(writers.by_ref()) {
                            writer.write(leaf).map_err(|s| self.write_err(s))?;
                        }
                    }
                    Ok(())
                })?;
                progress.rows_written(predictions.first().map_or(0, |p| p.len()) as u64);
                let _ = permits.try_recv();
                next += 1;
                continue;
            }
            if ended.get(&seq) == Some(&next) {
                let writers = match writers.take() {
                    Some(w) => w,
                    None => self.factory.create_column_writers(row_group).map_err(|s| self.write_err(s))?,
                };
                let chunks = timed(&self.timings.encode, || {
                    writers.into_iter().map(|w| w.close()).collect::<parquet::errors::Result<_>>()
                })
                .map_err(|s| self.write_err(s))?;
                if encoded.send(chunks).is_err() {
                    return Ok(());
                }
                ended.remove(&seq);
                (seq, next) = (seq + 1, 0);
                continue;
            }
            match done.recv() {
                Ok(Done::Scored { seq, index, predictions }) => {
                    scored.insert((seq, index), predictions);
                }
                Ok(Done::Ended { seq, batches }) => {
                    ended.insert(seq, batches);
                }
                Ok(Done::Failed(e)) => return Err(e),
                Err(_) => return Err(Error::Query("the scoring threads stopped before the last row group".into())),
            }
        }
        Ok(())
    }

    /// The models' predictions for one decoded batch of feature columns, in output order.
    fn score(&self, batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
        let mut out = Vec::with_capacity(self.models.fields().len());
        for column in &self.columns {
            if let OutColumn::Model { expr, .. } = column {
                out.push(expr.evaluate(batch)?.into_array(batch.num_rows())?);
            }
        }
        Ok(out)
    }

    fn write_err(&self, source: parquet::errors::ParquetError) -> Error {
        let names: Vec<&str> = self.models.fields().iter().map(|f| f.name().as_str()).collect();
        Error::Parquet { path: PathBuf::from(names.join(", ")), source }
    }
}

/// The file(s) being written, fed row group by row group in order.
struct Output<'a> {
    job: &'a PassThrough,
    dir: &'a Path,
    directory: bool,
    /// The file being written, the copies it has yet to make, its path and the rows in it.
    current: Option<(SerializedFileWriter<SpliceFile>, Splices, PathBuf, u64)>,
    /// The input file chunks are being copied from.
    source: Option<(usize, ChunkSource)>,
    /// Input files whose output is open or done (directory outputs have one part each).
    opened: usize,
    done: Vec<(PathBuf, u64)>,
}

impl<'a> Output<'a> {
    fn new(job: &'a PassThrough, dir: &'a Path, directory: bool) -> Self {
        Self { job, dir, directory, current: None, source: None, opened: 0, done: Vec::new() }
    }

    /// Whether the output that input file `file` goes to keeps the page index.
    fn page_index(&self, file: usize) -> bool {
        if self.directory { self.job.page_index[file] } else { self.job.page_index.iter().all(|k| *k) }
    }

    fn open(&mut self) -> Result<()> {
        let path = if self.directory {
            self.dir.join(format!("part-{:05}.parquet", self.opened))
        } else {
            self.dir.join("assembled.parquet")
        };
        let (file, splices) = SpliceFile::create(&path).map_err(|e| Error::io("cannot create", &path, e))?;
        let writer = SerializedFileWriter::new(file, self.job.root.clone(), self.job.props.clone())
            .map_err(|source| Error::Parquet { path: path.clone(), source })?;
        self.current = Some((writer, splices, path, 0));
        self.opened += 1;
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        if let Some((writer, _, path, rows)) = self.current.take() {
            let file = writer.into_inner().map_err(|source| Error::Parquet { path: path.clone(), source })?;
            file.finish().map_err(|e| Error::io("cannot write", &path, e))?;
            self.done.push((path, rows));
        }
        Ok(())
    }

    /// Opens the outputs up to and including that of input file `file` (empty files included).
    fn reach(&mut self, file: usize) -> Result<()> {
        if self.current.is_none() && self.opened == 0 {
            self.open()?;
        }
        while self.directory && self.opened <= file {
            self.close()?;
            self.open()?;
        }
        Ok(())
    }

    /// Appends row group `row_group` of input file `file`: its copied columns, and its
    /// predictions, which `predictions` waits for when the first model column is reached (the
    /// columns before it are copied meanwhile).
    fn append(&mut self, file: usize, row_group: usize, predictions: impl FnOnce() -> Result<Encoded>) -> Result<()> {
        self.reach(file)?;
        let page_index = self.page_index(file);
        let input = &self.job.files[file];
        if self.source.as_ref().is_none_or(|(f, _)| *f != file) {
            let source = ChunkSource::open(&input.path).map_err(|e| Error::io("cannot open", &input.path, e))?;
            self.source = Some((file, source));
        }
        let (Some((writer, splices, path, rows)), Some((_, source))) = (self.current.as_mut(), self.source.as_ref())
        else {
            return Err(Error::Query("no output file is open".into()));
        };
        let werr = |source| Error::Parquet { path: path.clone(), source };
        let meta = input.meta.metadata();
        let rg = meta.row_group(row_group);
        splices.start(writer.bytes_written());
        let mut out = writer.next_row_group().map_err(werr)?;
        let mut predictions = Some(predictions);
        let mut predicted = Vec::new().into_iter();
        for column in &self.job.columns {
            match column {
                OutColumn::Copy { leaves } => {
                    for &c in leaves {
                        let chunk = rg.column(c);
                        let close = copied_close(meta, row_group, c, page_index);
                        let placeholder = splices
                            .copy(source, chunk)
                            .map_err(|e| Error::io("cannot copy a column chunk of", &input.path, e))?;
                        out.append_column(&placeholder, close).map_err(werr)?;
                    }
                }
                OutColumn::Model { leaves, .. } => {
                    if let Some(wait) = predictions.take() {
                        predicted = wait()?.into_iter();
                    }
                    for mut chunk in predicted.by_ref().take(*leaves) {
                        if !page_index {
                            let close = chunk.close_mut();
                            close.offset_index = None;
                            close.column_index = None;
                        }
                        splices.skip(u64::try_from(chunk.close().metadata.compressed_size()).unwrap_or_default());
                        chunk.append_to_row_group(&mut out).map_err(werr)?;
                    }
                }
            }
        }
        out.close().map_err(werr)?;
        splices.check(writer.bytes_written()).map_err(|e| Error::io("cannot write", &*path, e))?;
        *rows += rg.num_rows() as u64;
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<(PathBuf, u64)>> {
        let last = self.job.files.len().saturating_sub(1);
        self.reach(last)?;
        self.close()?;
        Ok(self.done)
    }
}

/// The error of a reader that panicked on a file's bytes.
fn damaged(said: &str) -> parquet::errors::ParquetError {
    parquet::errors::ParquetError::General(format!("the file is damaged (the Parquet reader failed: {said})"))
}
