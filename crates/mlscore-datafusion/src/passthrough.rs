//! Parquet in, Parquet out, without re-encoding what the model does not change.
//!
//! A score job adds a column to a table. When the input is local Parquet and the output is
//! Parquet, the input's column chunks are copied into the output byte for byte (same pages,
//! encodings, compression, statistics and page index) and only the model's feature columns are
//! decoded; the prediction is the one column encoded. The output has the input's row groups,
//! in the input's order (files in the order the query engine reads them, one output part per
//! input file for a directory output), so it holds exactly what the re-encoding route writes.
//!
//! Work is done row group by row group: the features are decoded in batches on one thread
//! while the batches decoded before are scored on the others, the prediction is encoded into
//! a column chunk held in memory, and a writer thread copies the input's chunks and appends the
//! prediction's. Memory is bounded by a few batches of features and the prediction chunk of the
//! row groups in flight, whatever the row group size or the number of columns passed through.
//!
//! [`PassThrough::plan`] says why when it cannot serve a job (CSV, object store inputs,
//! files whose schemas differ, a compression or row group size asked for that the input does
//! not have); the caller then takes the re-encoding route.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StructArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, SchemaRef};
use datafusion::dataframe::DataFrame;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::DataFusionError;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::ScalarUDF;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::prelude::SessionContext;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::arrow::arrow_writer::{ArrowColumnChunk, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::arrow::{ArrowSchemaConverter, ProjectionMask, add_encoded_arrow_schema_to_metadata};
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::{KeyValue, PageIndexPolicy};
use parquet::file::properties::{WriterProperties, WriterPropertiesPtr};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::input::Format;
use crate::job::{EngineOptions, Feed, RegisteredModel, ScoreJob};
use crate::sink::{OutputSpec, Progress, Staging, WriteStats, commit_dir, float_columns_plain, replace, upload_file};
use crate::udf::PredictUdf;

/// When a Parquet-to-Parquet score job may copy its input's columns instead of re-encoding them.
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

/// A job the pass-through route can serve, planned.
pub(crate) struct PassThrough {
    files: Vec<InputFile>,
    /// The input files' Arrow schema (all files share one Parquet schema).
    file_schema: SchemaRef,
    /// The input's root columns the model reads, ascending.
    projected: Vec<usize>,
    feed: Feed,
    udf: Arc<ScalarUDF>,
    /// The prediction's field and the writer factory of its leaf columns.
    prediction: FieldRef,
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

/// Thread time spent in each phase of a job, in nanoseconds.
#[derive(Debug, Default)]
struct Timings {
    decode: AtomicU64,
    model: AtomicU64,
    encode: AtomicU64,
    copy: AtomicU64,
}

/// Runs `f`, adding the time it took to `counter`.
fn timed<T>(counter: &AtomicU64, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    counter.fetch_add(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
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

/// One row group's prediction, encoded.
struct Unit {
    file: usize,
    row_group: usize,
    chunks: Vec<ArrowColumnChunk>,
}

/// The local files a plan scans, in the order its partitions read them, if the plan is a
/// projection over one local Parquet scan and nothing else.
fn scanned_files(plan: &Arc<dyn ExecutionPlan>) -> std::result::Result<Vec<PathBuf>, String> {
    let mut node = plan.clone();
    while let Some(p) = node.downcast_ref::<ProjectionExec>() {
        node = p.input().clone();
    }
    let config = node
        .downcast_ref::<DataSourceExec>()
        .and_then(|exec| exec.data_source().downcast_ref::<FileScanConfig>())
        .ok_or_else(|| format!("the query is not a plain scan ({})", node.name()))?;
    if config.file_source().file_type() != "parquet" {
        return Err("the input is not Parquet".into());
    }
    if config.object_store_url.as_str() != "file:///" {
        return Err(format!("the input is in an object store ({})", config.object_store_url.as_str()));
    }
    let local = object_store::local::LocalFileSystem::new();
    let mut files: Vec<PathBuf> = Vec::new();
    for group in &config.file_groups {
        for file in group.files() {
            let path = local
                .path_to_filesystem(&file.object_meta.location)
                .map_err(|e| format!("cannot map {} to a local path: {e}", file.object_meta.location))?;
            if !files.contains(&path) {
                files.push(path);
            }
        }
    }
    Ok(files)
}

/// Whether `codec` is the compression the user asked for (levels aside).
fn same_codec(a: parquet::basic::Compression, b: parquet::basic::Compression) -> bool {
    std::mem::discriminant(&a) == std::mem::discriminant(&b)
}

impl PassThrough {
    /// Plans `df` (a [`ScoreJob`]'s query) for the pass-through route; `Ok(Err(reason))` when
    /// this route cannot serve it and the caller should re-encode.
    pub(crate) async fn plan(
        job: &ScoreJob,
        ctx: &SessionContext,
        df: &DataFrame,
        model: &RegisteredModel,
        spec: &OutputSpec,
        engine: &EngineOptions,
    ) -> Result<std::result::Result<Self, String>> {
        let policy = job.copy;
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
        let paths = match scanned_files(&plan) {
            Ok(p) => p,
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
        // The table DataFusion reads must be the files' own: same names, same types.
        let file_schema = first.meta.schema().clone();
        let out_schema = df.schema().as_arrow().clone();
        let n = file_schema.fields().len();
        if out_schema.fields().len() != n + 1 {
            return Ok(Err("the query does not add exactly one column".into()));
        }
        for (a, b) in file_schema.fields().iter().zip(out_schema.fields()) {
            if a.name() != b.name() || a.data_type() != b.data_type() {
                return Ok(Err(format!(
                    "column '{}' is read as {} by the engine but stored as {}",
                    b.name(),
                    b.data_type(),
                    a.data_type()
                )));
            }
        }
        let feed = job.feed(&file_schema, model.model.as_ref())?;
        let mut projected = match &feed {
            Feed::Positional(c) | Feed::Named(c) => c.clone(),
        };
        projected.sort_unstable();
        projected.dedup();
        if projected.is_empty() {
            return Ok(Err("the model reads no columns".into()));
        }
        let udf = ctx.udf(&model.name)?;
        if udf.inner().downcast_ref::<PredictUdf>().is_none() {
            return Err(Error::Query(format!("{} is not a model function", model.name)));
        }
        let prediction = Arc::new(out_schema.field(n).clone());

        // The output: the input's Parquet columns as they are, then the prediction's. The
        // input's schema-level metadata (pandas' column list, say) goes, as the engine drops it.
        let out_arrow =
            Arc::new(Schema::new(file_schema.fields().iter().cloned().chain([prediction.clone()]).collect::<Fields>()));
        let parquet_err = |source| Error::Parquet { path: spec.path.clone(), source };
        let prediction_schema = Arc::new(Schema::new(vec![prediction.clone()]));
        let prediction_descr = ArrowSchemaConverter::new().convert(&prediction_schema).map_err(parquet_err)?;
        let input_root = descr.root_schema();
        let fields =
            input_root.get_fields().iter().cloned().chain(prediction_descr.root_schema().get_fields().iter().cloned());
        let root = Arc::new(
            Type::group_type_builder(input_root.name()).with_fields(fields.collect()).build().map_err(parquet_err)?,
        );
        let mut props = float_columns_plain(WriterProperties::builder(), &out_arrow)
            .set_compression(spec.codec.parquet())
            .set_key_value_metadata(Some(
                spec.metadata.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())).collect(),
            ))
            .build();
        add_encoded_arrow_schema_to_metadata(&out_arrow, &mut props);
        let props = Arc::new(props);
        // The prediction's column writers come from a schema of its leaves alone: their
        // descriptors equal those of the same leaves in the output's schema.
        let shape = SerializedFileWriter::new(std::io::sink(), prediction_descr.root_schema_ptr(), props.clone())
            .map_err(parquet_err)?;
        let factory = ArrowRowGroupWriterFactory::new(&shape, prediction_schema);
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
            page_index,
            files,
            file_schema,
            projected,
            feed,
            udf,
            prediction,
            factory,
            root,
            props,
            batch_rows: engine.batch_rows.max(1),
            threads: engine.partitions.max(1),
            timings: Timings::default(),
        }))
    }

    /// Columns copied undecoded into the output.
    pub(crate) fn copied_columns(&self) -> usize {
        self.file_schema.fields().len()
    }

    /// Scores every row group and writes and commits the output as `spec` says; returns what
    /// was written and the thread time each phase took (decoding the features, the model,
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
    fn write(&self, dir: &Path, directory: bool, progress: &dyn Progress) -> Result<Vec<(PathBuf, u64)>> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads)
            .thread_name(|i| format!("mlscore-score-{i}"))
            .build()
            .map_err(|e| Error::Query(format!("cannot start the scoring threads: {e}")))?;
        let (tx, rx) = sync_channel::<Result<Unit>>(1);
        std::thread::scope(|scope| {
            scope.spawn(move || {
                pool.install(|| {
                    for (file, input) in self.files.iter().enumerate() {
                        for row_group in 0..input.meta.metadata().num_row_groups() {
                            let unit = self.score_row_group(file, row_group, progress);
                            let failed = unit.is_err();
                            if tx.send(unit).is_err() || failed {
                                return;
                            }
                        }
                    }
                })
            });
            // Dropping `rx` on an error stops the scoring side at its next send.
            let mut out = Output::new(self, dir, directory);
            for unit in rx {
                let unit = unit?;
                timed(&self.timings.copy, || out.append(unit))?;
            }
            out.finish()
        })
    }

    /// Decodes one row group's features, scores them and encodes the prediction.
    fn score_row_group(&self, file: usize, row_group: usize, progress: &dyn Progress) -> Result<Unit> {
        let input = &self.files[file];
        let path = &input.path;
        let read_err = |source| Error::ParquetInput { path: path.clone(), source };
        let handle = File::open(path).map_err(|e| Error::io("cannot open", path, e))?;
        let mask = ProjectionMask::roots(input.meta.metadata().file_metadata().schema_descr(), self.projected.clone());
        let mut reader = ParquetRecordBatchReaderBuilder::new_with_metadata(handle, input.meta.clone())
            .with_projection(mask)
            .with_row_groups(vec![row_group])
            .with_batch_size(self.batch_rows)
            .build()
            .map_err(read_err)?;
        let mut writers = self.factory.create_column_writers(row_group).map_err(|source| self.write_err(source))?;
        // Batches are scored in groups, in parallel, while the next group is decoded.
        let group = self.threads * 2;
        let decoding = &self.timings.decode;
        let mut decode = move || -> Result<Vec<RecordBatch>> {
            timed(decoding, || {
                let mut batches = Vec::with_capacity(group);
                for batch in reader.by_ref().take(group) {
                    batches.push(batch.map_err(|e| Error::ParquetInput { path: path.clone(), source: e.into() })?);
                }
                Ok(batches)
            })
        };
        let mut batches = decode()?;
        while !batches.is_empty() {
            let (scored, next) = rayon::join(
                || {
                    batches
                        .par_iter()
                        .map(|b| timed(&self.timings.model, || self.score(b)))
                        .collect::<Result<Vec<ArrayRef>>>()
                },
                &mut decode,
            );
            for prediction in scored? {
                timed(&self.timings.encode, || -> Result<()> {
                    let leaves = compute_leaves(&self.prediction, &prediction).map_err(|s| self.write_err(s))?;
                    for (writer, leaf) in writers.iter_mut().zip(&leaves) {
                        writer.write(leaf).map_err(|s| self.write_err(s))?;
                    }
                    Ok(())
                })?;
                progress.rows_written(prediction.len() as u64);
            }
            batches = next?;
        }
        let chunks = timed(&self.timings.encode, || {
            writers.into_iter().map(|w| w.close()).collect::<parquet::errors::Result<_>>()
        })
        .map_err(|s| self.write_err(s))?;
        Ok(Unit { file, row_group, chunks })
    }

    /// The model's prediction for one decoded batch of feature columns.
    fn score(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        let column = |i: &usize| -> (FieldRef, ArrayRef) {
            let at = self.projected.binary_search(i).unwrap_or_default();
            (self.file_schema.fields()[*i].clone(), batch.column(at).clone())
        };
        let (fields, arrays): (Vec<FieldRef>, Vec<ArrayRef>) = match &self.feed {
            Feed::Positional(cols) => cols.iter().map(column).unzip(),
            Feed::Named(cols) => {
                let (fields, arrays): (Vec<FieldRef>, Vec<ArrayRef>) = cols.iter().map(column).unzip();
                let fields = Fields::from(fields);
                let array = StructArray::try_new(fields.clone(), arrays, None)
                    .map_err(|e| Error::from(DataFusionError::from(e)))?;
                (vec![Arc::new(Field::new("features", DataType::Struct(fields), false))], vec![Arc::new(array)])
            }
        };
        let udf = self
            .udf
            .inner()
            .downcast_ref::<PredictUdf>()
            .ok_or_else(|| Error::Query(format!("{} is not a model function", self.udf.name())))?;
        Ok(udf.score(&fields, &arrays, batch.num_rows())?)
    }

    fn write_err(&self, source: parquet::errors::ParquetError) -> Error {
        Error::Parquet { path: PathBuf::from(self.prediction.name()), source }
    }
}

/// A column chunk's entry in a file's page index, if the output keeps page indexes.
fn page_index_entry<T: Clone>(index: Option<&Vec<Vec<T>>>, keep: bool, row_group: usize, column: usize) -> Option<T> {
    index.filter(|_| keep).and_then(|i| i.get(row_group)).and_then(|r| r.get(column)).cloned()
}

/// The file(s) being written, fed row group by row group in order.
struct Output<'a> {
    job: &'a PassThrough,
    dir: &'a Path,
    directory: bool,
    /// The file being written, the input file it belongs to, and the rows in it.
    current: Option<(SerializedFileWriter<BufWriter<File>>, PathBuf, u64)>,
    /// Input files whose output is open or done (directory outputs have one part each).
    opened: usize,
    done: Vec<(PathBuf, u64)>,
}

impl<'a> Output<'a> {
    fn new(job: &'a PassThrough, dir: &'a Path, directory: bool) -> Self {
        Self { job, dir, directory, current: None, opened: 0, done: Vec::new() }
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
        let file = File::create(&path).map_err(|e| Error::io("cannot create", &path, e))?;
        let writer = SerializedFileWriter::new(
            BufWriter::with_capacity(1 << 20, file),
            self.job.root.clone(),
            self.job.props.clone(),
        )
        .map_err(|source| Error::Parquet { path: path.clone(), source })?;
        self.current = Some((writer, path, 0));
        self.opened += 1;
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        if let Some((writer, path, rows)) = self.current.take() {
            writer.close().map_err(|source| Error::Parquet { path: path.clone(), source })?;
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

    fn append(&mut self, unit: Unit) -> Result<()> {
        self.reach(unit.file)?;
        let page_index = self.page_index(unit.file);
        let input = &self.job.files[unit.file];
        let Some((writer, path, rows)) = self.current.as_mut() else {
            return Err(Error::Query("no output file is open".into()));
        };
        let werr = |source| Error::Parquet { path: path.clone(), source };
        let meta = input.meta.metadata();
        let rg = meta.row_group(unit.row_group);
        let handle = File::open(&input.path).map_err(|e| Error::io("cannot open", &input.path, e))?;
        let mut out = writer.next_row_group().map_err(werr)?;
        for (c, column) in rg.columns().iter().enumerate() {
            let close = ColumnCloseResult {
                bytes_written: column.compressed_size() as u64,
                rows_written: rg.num_rows() as u64,
                metadata: column.clone(),
                bloom_filter: None,
                column_index: page_index_entry(meta.column_index(), page_index, unit.row_group, c),
                offset_index: page_index_entry(meta.offset_index(), page_index, unit.row_group, c),
            };
            out.append_column(&handle, close).map_err(werr)?;
        }
        for mut chunk in unit.chunks {
            if !page_index {
                let close = chunk.close_mut();
                close.offset_index = None;
                close.column_index = None;
            }
            chunk.append_to_row_group(&mut out).map_err(werr)?;
        }
        out.close().map_err(werr)?;
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
