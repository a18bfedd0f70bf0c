//! `mlscore serve`: the REST protocol of `mlflow models serve` (MLflow 3.x's scoring server),
//! over any model mlscore scores. One model, shared by every request thread; scoring runs off the
//! reactor, on tokio's blocking pool, under a per-request timeout.
//!
//! Routes, as MLflow's server answers them: `GET /ping` and `GET /health` (200, a newline),
//! `GET /version`, `POST /invocations` with `application/json` (`dataframe_split`,
//! `dataframe_records`, `inputs`, `instances`, `params` accepted and ignored where the model has
//! none) or `text/csv`; `{"predictions": ...}` answers; MLflow's error bodies (`error_code`,
//! `message`) and status codes (400, 404, 405, 413, 415, 504).
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! let model = mlscore_formats::load("models:/churn@champion", &mlscore_mlflow::StoreConfig::from_env()).unwrap();
//! let config = mlscore_server::Config::default();
//! let listener = tokio::net::TcpListener::bind((config.host.as_str(), config.port)).await?;
//! mlscore_server::serve(listener, model, config).await
//! # }
//! ```
#![warn(missing_docs)]

mod request;
mod response;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mlscore_core::Scorer;

pub use crate::response::ApiError;

/// How the server runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The address to listen on (MLflow's `--host`, `MLFLOW_HOST`; default 127.0.0.1).
    pub host: String,
    /// The port (MLflow's `--port`, `MLFLOW_PORT`; default 5000; 0 picks a free one).
    pub port: u16,
    /// The longest a request may take before it is answered 504 (MLflow's `--timeout`,
    /// `MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT`; default 60 s).
    pub timeout: Duration,
    /// The largest request body accepted; larger ones are answered 413 (default 100 MB, the
    /// limit of MLflow's container image).
    pub body_limit: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self { host: "127.0.0.1".into(), port: 5000, timeout: Duration::from_secs(60), body_limit: 100 << 20 }
    }
}

#[derive(Clone)]
struct AppState {
    model: Arc<dyn Scorer>,
    timeout: Duration,
}

/// The routes, for a model and a configuration (what [`serve`] runs; tests can drive it directly).
pub fn router(model: Arc<dyn Scorer>, config: &Config) -> Router {
    let state = AppState { model, timeout: config.timeout };
    Router::new()
        .route("/ping", get(ping))
        .route("/health", get(ping))
        .route("/version", get(version))
        .route("/invocations", post(invocations))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(config.body_limit))
        .with_state(state)
}

/// Serves `model` on `listener` until SIGTERM or Ctrl-C; requests in flight then finish.
pub async fn serve(listener: tokio::net::TcpListener, model: Arc<dyn Scorer>, config: Config) -> std::io::Result<()> {
    axum::serve(listener, router(model, &config)).with_graceful_shutdown(shutdown()).await
}

/// SIGTERM (what Kubernetes, Docker and Azure send) or Ctrl-C.
async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn ping() -> Response {
    json_response(StatusCode::OK, "\n".into())
}

async fn version() -> Response {
    json_response(StatusCode::OK, env!("CARGO_PKG_VERSION").into())
}

async fn not_found() -> Response {
    json_response(StatusCode::NOT_FOUND, r#"{"detail":"Not Found"}"#.into())
}

async fn method_not_allowed() -> Response {
    json_response(StatusCode::METHOD_NOT_ALLOWED, r#"{"detail":"Method Not Allowed"}"#.into())
}

/// The request's content type, checked as MLflow checks it; the error is the 415's message.
fn content_type(headers: &HeaderMap) -> Result<request::Body, String> {
    let raw = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut parts = raw.split(';').map(str::trim);
    let mime = parts.next().unwrap_or("");
    let kind = match mime {
        "application/json" => request::Body::Json,
        "text/csv" => request::Body::Csv,
        "application/vnd.apache.parquet" => request::Body::Parquet,
        _ => {
            return Err(format!(
                "This predictor only supports the following content types: Types: ['text/csv', 'application/json', \
                 'application/vnd.apache.parquet']. Got '{raw}'."
            ));
        }
    };
    let mut unknown = Vec::new();
    for p in parts.filter(|p| !p.is_empty()) {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        if k.trim().eq_ignore_ascii_case("charset") {
            if !v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8") {
                return Err("The scoring server only supports UTF-8".into());
            }
        } else {
            unknown.push(k.trim().to_string());
        }
    }
    if !unknown.is_empty() {
        return Err(format!(
            "Unrecognized content type parameters: {}. IMPORTANT: The MLflow Model scoring protocol has changed in \
             MLflow version 2.0. If you are seeing this error, you are likely using an outdated scoring request format.",
            unknown.join(", ")
        ));
    }
    Ok(kind)
}

async fn invocations(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let kind = match content_type(&headers) {
        Ok(k) => k,
        Err(msg) => {
            let text = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
            return (StatusCode::UNSUPPORTED_MEDIA_TYPE, text, msg).into_response();
        }
    };
    let model = state.model.clone();
    let work = tokio::task::spawn_blocking(move || -> Result<String, ApiError> {
        let (batch, tensor_input) = request::parse(kind, &body, model.as_ref())?;
        response::predict(model.as_ref(), &batch, tensor_input)
    });
    match tokio::time::timeout(state.timeout, work).await {
        Ok(Ok(Ok(body))) => json_response(StatusCode::OK, body),
        Ok(Ok(Err(e))) => e.into_response(),
        Ok(Err(join)) => ApiError::internal(format!("the scoring task failed: {join}")).into_response(),
        Err(_) => json_response(StatusCode::GATEWAY_TIMEOUT, "Request processing time exceeded limit".into()),
    }
}
