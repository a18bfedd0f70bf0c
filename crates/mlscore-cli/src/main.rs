//! `mlscore`: score MLflow models over Parquet, from the command line.
// A CLI talks on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]
// The doc comments of the clap types are the --help text, whose <placeholders> are not HTML.
#![allow(rustdoc::invalid_html_tags)]

// Without the `engine` feature (DataFusion, Parquet/CSV/Delta tables) the binary is `serve` and
// `inspect` only: what the container image runs.
#[cfg(feature = "engine")]
mod bench;
mod inspect;
#[cfg(feature = "engine")]
mod progress;
#[cfg(feature = "engine")]
mod score;
mod serve;
#[cfg(feature = "engine")]
mod sql;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::{Parser, Subcommand};
use mlscore_core::Scorer;
#[cfg(feature = "engine")]
use score::{runtime, until_interrupted};

/// Batch-score MLflow models over Arrow/Parquet tables, natively.
///
/// Models are MLflow model URIs: a path, runs:/<run_id>/<path>, models:/<name>/<version>,
/// models:/<name>/latest, models:/<name>/<stage>, models:/<name>@<alias> or models:/<model_id>,
/// resolved against MLFLOW_TRACKING_URI (default: sqlite:///mlflow.db, or ./mlruns).
#[derive(Debug, Parser)]
#[command(name = "mlscore", version, propagate_version = true, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Download models from an MLflow tracking server again, even when the cache holds them.
    #[arg(long, global = true)]
    no_cache: bool,
    /// Where models downloaded from a tracking server are kept [default: $MLSCORE_CACHE_DIR, else ~/.cache/mlscore/models].
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<std::path::PathBuf>,
}

/// Where models are looked up (MLflow's environment variables and the cache options), set once in `main`.
static STORES: std::sync::OnceLock<mlscore_mlflow::StoreConfig> = std::sync::OnceLock::new();

/// The store configuration of this run.
pub(crate) fn stores() -> &'static mlscore_mlflow::StoreConfig {
    STORES.get_or_init(mlscore_mlflow::StoreConfig::from_env)
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Score a table: every input column unchanged, plus the prediction, rows in input order.
    #[cfg(feature = "engine")]
    Score(score::ScoreArgs),
    /// Run a SQL query in which models are functions: SELECT id, churn(age, income) FROM 'data/*.parquet'.
    #[cfg(feature = "engine")]
    Sql(sql::SqlArgs),
    /// Show a model: where it resolves to, flavors, signature, ONNX inputs and outputs, result types.
    Inspect(inspect::InspectArgs),
    /// Measure how fast a model scores a table (in memory), by batch size and thread count.
    #[cfg(feature = "engine")]
    Bench(bench::BenchArgs),
    /// Serve a model over HTTP with MLflow's scoring protocol (a drop-in for `mlflow models serve`).
    Serve(serve::ServeArgs),
}

// Scoring allocates and frees batch-sized buffers continuously; mimalloc keeps them in the
// process instead of returning every large one to the OS (measured: page faults and memset were
// a tenth of a linear model's time with the system allocator).
//
// Not in the serve-only build (the container's): serving 1-row requests with mimalloc measured
// twice the RSS of the system allocator (43 vs 21 MB at 64 clients, 2 scoring threads) for no
// clear gain in requests/s.
#[cfg(feature = "engine")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut config = mlscore_mlflow::StoreConfig::from_env();
    config.refresh = cli.no_cache;
    if let Some(dir) = cli.cache_dir {
        config.cache_dir = dir;
    }
    let _ = STORES.set(config);
    // A job reports a reader's panic as its error, once; the panic's own report (message and
    // location) comes after it instead of above it. A server prints panics as they happen.
    if !matches!(cli.command, Command::Serve(_)) {
        mlscore_core::defer_panic_reports();
    }
    let result = std::panic::catch_unwind(move || run(cli.command));
    let panics = mlscore_core::deferred_panics();
    match result {
        Ok(Ok(())) => {
            for p in panics {
                eprintln!("note: a panic was caught on the way (see the report above): {p}");
            }
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            for (i, line) in error_lines(&*e).iter().enumerate() {
                if i == 0 {
                    eprintln!("error: {line}");
                } else if line.starts_with("hint: ") {
                    eprintln!("  {line}");
                } else {
                    eprintln!("  caused by: {line}");
                }
            }
            for p in panics {
                eprintln!("  panicked: {p}");
            }
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("error: mlscore stopped on an internal error; this is a bug: please report it with the command");
            for p in panics {
                eprintln!("  panicked: {p}");
            }
            ExitCode::from(101)
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        #[cfg(feature = "engine")]
        Command::Score(args) => {
            runtime(args.engine.engine().partitions).and_then(|rt| rt.block_on(until_interrupted(score::score(args))))
        }
        #[cfg(feature = "engine")]
        Command::Sql(args) => {
            runtime(args.engine.engine().partitions).and_then(|rt| rt.block_on(until_interrupted(sql::run(args))))
        }
        Command::Inspect(args) => inspect::run(&args),
        #[cfg(feature = "engine")]
        Command::Bench(args) => runtime(1).and_then(|rt| rt.block_on(bench::run(args))),
        Command::Serve(args) => serve::run(args),
    }
}

/// An error and its causes, each said once: a cause whose text an earlier line already holds is
/// left out, and the wrapper words that DataFusion and Arrow put before an error they pass on
/// (`External error: `, `Arrow error: `) are taken off.
fn error_lines(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
    const WRAPPERS: [&str; 4] = ["External error: ", "Arrow error: ", "Execution error: ", "Parquet error: "];
    let mut lines: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let mut text = err.to_string();
        while let Some(rest) = WRAPPERS.iter().find_map(|w| text.strip_prefix(w)) {
            text = rest.to_string();
        }
        let text = text.trim().to_string();
        if !text.is_empty() && !lines.iter().any(|l| l.contains(&text)) {
            lines.push(text);
        }
        next = err.source();
    }
    for line in &mut lines {
        *line = line.replace(": External: ", ": ");
    }
    // A full disk reaches us as an I/O error deep inside the Parquet or CSV writer: say what it
    // means for the job.
    if lines.iter().any(|l| l.contains("(os error 27)") || l.contains("(os error 28)")) {
        lines.push(
            "hint: the disk holding the output is full, or a file-size limit (ulimit -f) was reached; nothing was written"
                .into(),
        );
    }
    lines
}

/// Loads a model, saying which URI failed.
fn load_model(uri: &str) -> Result<Arc<dyn Scorer>> {
    Ok(mlscore_formats::load(uri, stores())?)
}
