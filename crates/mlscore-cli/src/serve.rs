//! `mlscore serve`: MLflow's scoring protocol over a model, as `mlflow models serve` runs it.

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The model: a path or an MLflow model URI.
    #[arg(long, short, value_name = "MODEL_URI")]
    model: String,
    /// The address to listen on (MLflow's MLFLOW_HOST).
    #[arg(long = "host", short = 'H', env = "MLFLOW_HOST", default_value = "127.0.0.1")]
    host: String,
    /// The port (MLflow's MLFLOW_PORT); 0 picks a free one, printed on stderr.
    #[arg(long, short, env = "MLFLOW_PORT", default_value_t = 5000)]
    port: u16,
    /// Seconds a request may take before it is answered 504 (MLflow's
    /// MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT).
    #[arg(long, short, env = "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT", default_value_t = 60)]
    timeout: u64,
    /// Accepted for MLflow's command line (MLFLOW_MODELS_WORKERS): mlscore serves every request
    /// from one process and one model copy, on all cores.
    #[arg(long, short, env = "MLFLOW_MODELS_WORKERS", value_name = "N")]
    workers: Option<usize>,
    /// The largest request body, in MB; larger ones are answered 413.
    #[arg(long, value_name = "MB", default_value_t = 100)]
    body_limit_mb: usize,
    /// Also answer as an Azure ML online endpoint (a custom container): POST /score with
    /// {"input_data": ...}, bare JSON answers, GET / liveness, request ids echoed.
    #[arg(long)]
    azureml: bool,
    /// One JSON line a scoring request on stderr: time, route, status, milliseconds, rows,
    /// request bytes, request id.
    #[arg(long)]
    access_log: bool,
}

pub(crate) fn run(args: ServeArgs) -> Result<()> {
    let model = crate::load_model(&args.model)?;
    let config = mlscore_server::Config {
        host: args.host.clone(),
        port: args.port,
        timeout: Duration::from_secs(args.timeout.max(1)),
        body_limit: args.body_limit_mb.saturating_mul(1 << 20),
        azureml: args.azureml,
        access_log: args.access_log,
    };
    let rt = mlscore_server::runtime().context("cannot start the runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind((config.host.as_str(), config.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
        let addr = listener.local_addr().context("the listener has no address")?;
        eprintln!(
            "mlscore serve: listening on http://{addr} ({}, {} model{})",
            args.model,
            model.format(),
            if args.workers.is_some_and(|w| w > 1) {
                "; --workers is ignored: one process serves on all cores"
            } else {
                ""
            }
        );
        mlscore_server::serve(listener, model, config).await.context("the server failed")
    })?;
    eprintln!("mlscore serve: stopped");
    Ok(())
}
