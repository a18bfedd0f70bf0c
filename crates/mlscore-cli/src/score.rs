//! `mlscore score` and what the commands that run queries share (`sql`, `bench`): engine
//! options, output options, and the clean-up of an unfinished output on SIGINT/SIGTERM.

use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use mlscore_core::{NullPolicy, ResultType};
use mlscore_datafusion::{
    Codec, CopyPolicy, EngineOptions, Format, OutputSpec, PredictOptions, ScoreJob, TimeTravel, provenance_metadata,
    scoring_context, write_job,
};

use crate::{load_model, progress};

/// Options shared by the commands that run queries.
#[derive(Debug, Clone, Args)]
pub(crate) struct EngineArgs {
    /// Partitions (threads) to run on [default: the number of cores].
    #[arg(long, value_name = "N")]
    pub(crate) partitions: Option<usize>,
    /// Rows per batch fed to the model.
    #[arg(long, value_name = "N", default_value_t = mlscore_datafusion::job::DEFAULT_BATCH_ROWS)]
    pub(crate) batch_rows: usize,
    /// No progress bar or summary on stderr.
    #[arg(long, short)]
    pub(crate) quiet: bool,
}

impl EngineArgs {
    pub(crate) fn engine(&self) -> EngineOptions {
        let mut e = EngineOptions { batch_rows: self.batch_rows, ..EngineOptions::default() };
        if let Some(p) = self.partitions {
            e.partitions = p.max(1);
        }
        e
    }
}

/// Options of a written output.
#[derive(Debug, Clone, Args)]
pub(crate) struct OutputArgs {
    /// Output format [default: from the output's extension, else parquet]. delta writes (or,
    /// with --overwrite, writes a new version of) a Delta table, committed as one transaction.
    #[arg(long, value_name = "parquet|csv|delta")]
    pub(crate) output_format: Option<Format>,
    /// Replace the output if it exists.
    #[arg(long)]
    pub(crate) overwrite: bool,
    /// Parquet compression [default: snappy; `mlscore score` keeps a Parquet input's own
    /// compression for the columns it copies].
    #[arg(long, value_name = "snappy|zstd|lz4|none")]
    pub(crate) compression: Option<Codec>,
    /// Rows per Parquet row group [default: 131072; `mlscore score` keeps a Parquet input's own
    /// row groups].
    #[arg(long, value_name = "N")]
    pub(crate) row_group_rows: Option<usize>,
    /// Decode and re-encode every column, even where a Parquet input's columns could be copied
    /// into a Parquet output as they are stored.
    #[arg(long)]
    pub(crate) reencode: bool,
}

impl OutputArgs {
    /// When a Parquet input's columns may be copied into the output as stored.
    pub(crate) fn copy_policy(&self) -> CopyPolicy {
        CopyPolicy {
            reencode: self.reencode,
            compression_given: self.compression.is_some(),
            row_group_rows_given: self.row_group_rows.is_some(),
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct ScoreArgs {
    /// The model: a path or an MLflow model URI.
    #[arg(long, short, value_name = "MODEL_URI")]
    model: String,
    /// Input files, directories or globs (files are read in name order).
    #[arg(long, short, value_name = "PATH", num_args = 1.., required = true)]
    input: Vec<String>,
    /// Output: a .parquet or .csv file, or a directory (ending in /) of part files.
    #[arg(long, short, value_name = "PATH")]
    output: String,
    /// Spark DDL type of the prediction, as spark_udf's result_type: double, bigint, array<float>,
    /// struct<label:bigint,probabilities:array<float>> [default: the model's outputs as they are].
    #[arg(long, value_name = "TYPE")]
    result_type: Option<String>,
    /// Columns to feed, in the signature's order (spark_udf's udf("a", "b", ...)) [default: the
    /// signature's input columns, by name].
    #[arg(long, value_delimiter = ',', value_name = "A,B,C")]
    columns: Option<Vec<String>>,
    /// Name of the prediction column.
    #[arg(long, default_value = "prediction", value_name = "NAME")]
    output_column: String,
    /// What a null in a model input means: error (fail, naming the column), null (null
    /// prediction for that row) or nan (the model sees NaN, as in MLflow).
    #[arg(long, value_name = "error|null|nan", default_value = "error")]
    on_null: NullPolicy,
    /// Input format [default: from the inputs' extension; a directory holding _delta_log/ is a Delta table].
    #[arg(long, value_name = "parquet|csv|arrow|delta")]
    input_format: Option<Format>,
    /// Read this version of a Delta table input (Delta's VERSION AS OF).
    #[arg(long, value_name = "N", conflicts_with = "timestamp_as_of")]
    version_as_of: Option<u64>,
    /// Read the version of a Delta table input that was current at this RFC 3339 time
    /// (Delta's TIMESTAMP AS OF), e.g. 2026-11-30T09:00:00Z.
    #[arg(long, value_name = "TIME")]
    timestamp_as_of: Option<String>,
    #[command(flatten)]
    out: OutputArgs,
    #[command(flatten)]
    pub(crate) engine: EngineArgs,
}

/// Runs a job that writes an output until it ends, or until SIGINT (Ctrl-C) or SIGTERM
/// arrives: then the temporary files of the unfinished output are removed and the process
/// exits at once, with 130 or 143 as a shell reports those signals, leaving the target as it was.
pub(crate) async fn until_interrupted(job: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return job.await;
    };
    // A file-size limit (`ulimit -f`) reached would kill the process with SIGXFSZ, leaving the
    // temporary output behind; handled, the write fails instead (EFBIG) and the job reports it
    // and cleans up like any other failed write. (25 is SIGXFSZ on Linux and macOS.)
    let _file_too_large = signal(SignalKind::from_raw(25));
    let (name, code) = tokio::select! {
        done = job => return done,
        _ = int.recv() => ("SIGINT", 130),
        _ = term.recv() => ("SIGTERM", 143),
    };
    let abandoned = mlscore_datafusion::abandon_unfinished_outputs();
    eprintln!(
        "error: interrupted by {name}; {}",
        if abandoned == 0 {
            "nothing was written".to_string()
        } else {
            "the unfinished output was removed".to_string()
        }
    );
    std::process::exit(code)
}

pub(crate) fn runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

pub(crate) fn output_spec(path: &str, args: &OutputArgs, metadata: Vec<(String, String)>) -> Result<OutputSpec> {
    let mut spec = OutputSpec::new(path, args.output_format, args.overwrite)?;
    if let Some(codec) = args.compression {
        spec.codec = codec;
    }
    if let Some(rows) = args.row_group_rows {
        spec.row_group_rows = rows.max(1);
    }
    spec.metadata = metadata;
    Ok(spec)
}

pub(crate) async fn score(args: ScoreArgs) -> Result<()> {
    let result_type = args.result_type.as_deref().map(ResultType::parse).transpose()?;
    // Fail on an unwritable output before the model is compiled or data is read.
    let early = OutputSpec::new(&args.output, args.out.output_format, args.out.overwrite)?;
    early.check(&Arc::new(arrow::datatypes::Schema::empty())).await?;
    let model = load_model(&args.model)?;
    let engine = args.engine.engine();
    let ctx = scoring_context(&engine);
    let job = ScoreJob {
        inputs: args.input.clone(),
        input_format: args.input_format,
        at: match (args.version_as_of, args.timestamp_as_of.clone()) {
            (Some(v), _) => TimeTravel::Version(v),
            (None, Some(ts)) => TimeTravel::Timestamp(ts),
            (None, None) => TimeTravel::Latest,
        },
        columns: args.columns.clone(),
        output_column: args.output_column.clone(),
        options: PredictOptions { result_type, null_policy: args.on_null },
    };
    let (df, registered) = job.plan(&ctx, model).await?;
    for w in registered.stats.warnings() {
        eprintln!("warning: {w}");
    }
    let spec = output_spec(&args.output, &args.out, provenance_metadata(std::slice::from_ref(&registered), &[]))?;
    let total = progress::estimated_rows(&df).await;
    let bar = progress::Bar::new(total, args.engine.quiet);
    let models = std::slice::from_ref(&registered);
    let report = write_job(df, &spec, models, &engine, args.out.copy_policy(), bar.clone()).await?;
    bar.finish();
    if !args.engine.quiet {
        progress::summary(&report, &args.output);
    }
    if report.rows == 0 && !args.engine.quiet {
        eprintln!("warning: the input has no rows; wrote an empty output");
    }
    Ok(())
}
