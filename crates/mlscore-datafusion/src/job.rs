//! Scoring jobs: a session with models registered, `score` as a query, and query outputs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::dataframe::DataFrame;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{FunctionRegistry, SessionStateBuilder};
use datafusion::logical_expr::{Expr, ScalarUDF};
use datafusion::prelude::{SessionConfig, SessionContext, col};
use mlscore_core::Scorer;

use crate::error::{Error, Result};
use crate::input::Format;
use crate::passthrough::{CopyPolicy, PassThrough};
use crate::sink::{OutputSpec, Progress, Swept, WriteStats, write_plan};
use crate::stores::StoreRegistry;
use crate::udf::{NoArgumentCalls, PredictOptions, PredictStats, PredictUdf};

/// Rows per batch the engine scores at a time (DataFusion's default).
pub const DEFAULT_BATCH_ROWS: usize = 8192;

/// Engine settings of a session.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Partitions (and threads) to run on; defaults to the number of cores.
    pub partitions: usize,
    /// Rows per batch.
    pub batch_rows: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self { partitions: std::thread::available_parallelism().map_or(1, usize::from), batch_rows: DEFAULT_BATCH_ROWS }
    }
}

/// A DataFusion session set up for scoring: order-preserving partitioning, URL tables
/// (`FROM 'data/*.parquet'`), and the rewrite that makes `model()` read its signature's columns.
pub fn scoring_context(engine: &EngineOptions) -> SessionContext {
    let mut config = SessionConfig::new()
        .with_target_partitions(engine.partitions.max(1))
        .with_batch_size(engine.batch_rows.max(1))
        // Round-robin repartitioning would interleave rows; scans split files into ordered ranges instead.
        .with_round_robin_repartition(false)
        .with_repartition_file_scans(true)
        .with_repartition_file_min_size(1 << 20)
        .with_information_schema(true);
    // Keep the input's string and binary types as they are (no Utf8View), so outputs round-trip.
    config.options_mut().execution.parquet.schema_force_view_types = false;
    // Idle partitions stealing files from their siblings would reorder rows across partitions.
    config.options_mut().execution.enable_file_stream_work_stealing = false;
    // Object stores (abfss://, s3://, gs://, https://) are opened on first use from the environment.
    let runtime = RuntimeEnvBuilder::new()
        .with_object_store_registry(Arc::new(StoreRegistry::default()))
        .build_arc()
        .unwrap_or_default();
    let state =
        SessionStateBuilder::new().with_config(config).with_runtime_env(runtime).with_default_features().build();
    let mut ctx = crate::delta::UrlTables::enable(SessionContext::new_with_state(state));
    ctx.register_function_rewrite(Arc::new(NoArgumentCalls)).ok();
    ctx
}

/// A model registered in a session under a name.
#[derive(Debug, Clone)]
pub struct RegisteredModel {
    /// The SQL function name.
    pub name: String,
    /// The model.
    pub model: Arc<dyn Scorer>,
    /// Its UDF's options.
    pub options: PredictOptions,
    /// Its UDF's counters.
    pub stats: Arc<PredictStats>,
}

/// Registers `model` as the SQL function `name`.
pub fn register_model(
    ctx: &SessionContext,
    name: &str,
    model: Arc<dyn Scorer>,
    options: PredictOptions,
) -> RegisteredModel {
    let udf = PredictUdf::new(name, model.clone(), options.clone());
    let stats = udf.stats();
    ctx.register_udf(ScalarUDF::new_from_impl(udf));
    RegisteredModel { name: name.to_string(), model, options, stats }
}

/// What `EXPLAIN` adds for a registered model (`mlscore sql` prints it under the plan): the
/// function, the columns it reads, its result type, what its URI resolved to, the format and
/// artifact hash, and its null policy.
pub fn model_binding(m: &RegisteredModel) -> String {
    let r = &m.model.mlflow().resolution;
    let version = r.registered.as_ref().map(|(n, v)| format!(" = {n} v{v}")).unwrap_or_default();
    let result = match &m.options.result_type {
        Some(t) => t.to_string(),
        None => {
            m.model.default_result_type().map_or_else(|e| format!("(no default result type: {e})"), |t| t.to_string())
        }
    };
    format!(
        "{}({}) -> {result}: {}{version}, {} sha256 {}, nulls: {}",
        m.name,
        m.model.input_names().join(", "),
        r.uri,
        m.model.format(),
        m.model.artifact_sha256().get(..12).unwrap_or_default(),
        m.options.null_policy
    )
}

/// Parquet key-value metadata that records which model produced a file.
pub fn provenance_metadata(models: &[RegisteredModel], extra: &[(&str, String)]) -> Vec<(String, String)> {
    let mut kv = vec![("mlscore.version".to_string(), env!("CARGO_PKG_VERSION").to_string())];
    for m in models {
        let p = |k: &str| {
            if models.len() == 1 { format!("mlscore.model.{k}") } else { format!("mlscore.model.{}.{k}", m.name) }
        };
        let r = &m.model.mlflow().resolution;
        kv.push((p("uri"), r.uri.clone()));
        if let Some((name, version)) = &r.registered {
            kv.push((p("registered_name"), name.clone()));
            kv.push((p("registered_version"), version.to_string()));
        }
        if let Some(run) = &r.run_id {
            kv.push((p("run_id"), run.clone()));
        }
        if let Some(id) = &r.model_id {
            kv.push((p("model_id"), id.clone()));
        }
        kv.push((p("artifact_location"), r.artifact_location.clone()));
        kv.push((p("format"), m.model.format().to_string()));
        kv.push((p("artifact_sha256"), m.model.artifact_sha256().to_string()));
        kv.push((p("null_policy"), m.options.null_policy.to_string()));
        if let Some(t) = &m.options.result_type {
            kv.push((p("result_type"), t.to_string()));
        }
    }
    kv.extend(extra.iter().map(|(k, v)| ((*k).to_string(), v.clone())));
    kv
}

/// What a job did.
#[derive(Debug, Clone, Default)]
pub struct JobReport {
    /// Rows written.
    pub rows: u64,
    /// Rows that had null inputs, per model.
    pub null_rows: Vec<(String, u64)>,
    /// Files written.
    pub files: usize,
    /// Bytes written.
    pub bytes: u64,
    /// Partitions the job ran on.
    pub partitions: usize,
    /// Wall time.
    pub elapsed: Duration,
    /// Plan-time warnings.
    pub warnings: Vec<String>,
    /// Temporary outputs that earlier, interrupted jobs left beside the target, removed first.
    pub swept: Vec<Swept>,
    /// Input columns copied into the output as they were stored, without decoding (0 when
    /// every column was re-encoded).
    pub copied_columns: usize,
    /// Why the input's columns were re-encoded rather than copied, for a score job that could
    /// not copy them.
    pub reencoded_because: Option<String>,
    /// CPU time per phase, where the job measured it (jobs that copy columns do: decoding
    /// the features, the model, encoding the prediction, copying the input's column chunks).
    pub phases: Vec<(&'static str, Duration)>,
}

impl JobReport {
    /// The report of a job that wrote `stats` with `models` on `partitions`, started at `start`.
    fn written(stats: WriteStats, models: &[RegisteredModel], partitions: usize, start: Instant) -> Self {
        let WriteStats { rows, files, bytes, swept } = stats;
        Self {
            rows,
            null_rows: models
                .iter()
                .map(|m| (m.name.clone(), m.stats.null_rows.load(std::sync::atomic::Ordering::Relaxed)))
                .collect(),
            files,
            bytes,
            partitions,
            elapsed: start.elapsed(),
            warnings: models.iter().flat_map(|m| m.stats.warnings()).collect(),
            swept,
            copied_columns: 0,
            reencoded_because: None,
            phases: Vec::new(),
        }
    }
}

/// Runs a query and writes its result as `spec` says, reporting on `models`.
pub async fn write_query(
    df: DataFrame,
    spec: &OutputSpec,
    models: &[RegisteredModel],
    progress: Arc<dyn Progress>,
) -> Result<JobReport> {
    let start = Instant::now();
    if spec.format == Format::Delta {
        let partitions = df.task_ctx().session_config().target_partitions();
        let stats = crate::delta::write_table(df, spec).await?;
        return Ok(JobReport::written(stats, models, partitions, start));
    }
    let task_ctx = Arc::new(df.task_ctx());
    let plan = df.create_physical_plan().await?;
    let partitions = plan.properties().partitioning.partition_count();
    let stats = write_plan(plan, task_ctx, spec, progress).await?;
    Ok(JobReport::written(stats, models, partitions, start))
}

/// `mlscore score`: every input column, unchanged, plus the model's prediction.
#[derive(Debug, Clone)]
pub struct ScoreJob {
    /// Input files, directories or globs.
    pub inputs: Vec<String>,
    /// Input format; detected from the inputs when `None`.
    pub input_format: Option<Format>,
    /// Which version of a Delta table input to read.
    pub at: crate::delta::TimeTravel,
    /// Columns to feed, by position (spark_udf's `udf("a", "b")`); `None` reads the
    /// signature's inputs by name.
    pub columns: Option<Vec<String>>,
    /// Name of the prediction column.
    pub output_column: String,
    /// The UDF's options (result type, null policy).
    pub options: PredictOptions,
}

impl ScoreJob {
    /// Plans the job: the query `SELECT *, model(...) AS <output_column> FROM input`.
    /// Fails here (before reading any data) if the table cannot feed the model.
    pub async fn plan(&self, ctx: &SessionContext, model: Arc<dyn Scorer>) -> Result<(DataFrame, RegisteredModel)> {
        let df = unpanicked(
            "reading the inputs",
            crate::input::read_inputs_at(ctx, &self.inputs, self.input_format, &self.at),
        )
        .await?;
        let schema = df.schema().as_arrow().clone();
        if schema.index_of(&self.output_column).is_ok() {
            return Err(Error::Query(format!(
                "the input already has a column named '{}'; choose another name with --output-column",
                self.output_column
            )));
        }
        if let Some(missing) = self.columns.iter().flatten().find(|c| schema.index_of(c).is_err()) {
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            return Err(Error::Query(format!(
                "--columns: no column named '{missing}' in the input (its columns: {})",
                names.join(", ")
            )));
        }
        let args: Vec<Expr> = match &self.columns {
            Some(cols) => cols.iter().map(|c| col(quoted(c))).collect(),
            None => {
                let names = model.input_names();
                if names.is_empty() {
                    // No named signature: every column, in table order (what pyfunc.predict(df) passes).
                    schema.fields().iter().map(|f| col(quoted(f.name()))).collect()
                } else {
                    // Bind against the whole table first, so that a missing column is reported with the table's extra columns.
                    model.bind(&schema)?;
                    let present: Vec<&String> = names.iter().filter(|n| schema.index_of(n).is_ok()).collect();
                    let mut struct_args = Vec::with_capacity(present.len() * 2);
                    for n in present {
                        struct_args.push(datafusion::prelude::lit(n.as_str()));
                        struct_args.push(col(quoted(n)));
                    }
                    vec![datafusion::functions::core::expr_fn::named_struct(struct_args)]
                }
            }
        };
        let registered = register_model(ctx, "predict", model, self.options.clone());
        let udf = ctx.udf("predict")?;
        let mut select: Vec<Expr> = schema.fields().iter().map(|f| col(quoted(f.name()))).collect();
        select.push(udf.call(args).alias(&self.output_column));
        let df = df.select(select)?;
        Ok((df, registered))
    }
}

/// Runs a query and writes its result as `spec` says, reporting on `models`. From Parquet to
/// Parquet, when every column of the result is either an input column passed through under its
/// own name or a model's prediction (what `mlscore score` and `SELECT *, churn() AS p FROM ...`
/// ask), the input's columns are copied into the output as they are stored and only the
/// models' features are decoded, unless `copy` or the query rules that out; then every column is
/// decoded and encoded again, and the report says why.
pub async fn write_job(
    df: DataFrame,
    spec: &OutputSpec,
    models: &[RegisteredModel],
    engine: &EngineOptions,
    copy: CopyPolicy,
    progress: Arc<dyn Progress>,
) -> Result<JobReport> {
    unpanicked("the job", async move {
        let start = Instant::now();
        let pass = match PassThrough::plan(&df, spec, engine, copy).await? {
            Ok(pass) => pass,
            Err(reason) => {
                let mut report = write_query(df, spec, models, progress).await?;
                report.reencoded_because = Some(reason);
                return Ok(report);
            }
        };
        let copied_columns = pass.copied_columns();
        let (stats, phases) = pass.run(spec, progress).await?;
        Ok(JobReport { copied_columns, phases, ..JobReport::written(stats, models, engine.partitions, start) })
    })
    .await
}

/// Runs a step of a job. A panic inside it (a third-party reader asserting on a damaged input
/// file: arrow's schema decoder, the parquet crate's page decoders) becomes the job's error,
/// never the end of the process (in the Python wheel, of a Spark task).
pub async fn unpanicked<T>(what: &str, step: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(step).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => Err(Error::Query(format!(
            "{what} failed inside a reader ({}); an input file is damaged",
            mlscore_core::panic_message(panic.as_ref())
        ))),
    }
}

/// Column names as DataFusion's `col()` wants them: quoted, so case and dots survive.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
