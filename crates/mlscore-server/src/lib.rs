//! `mlscore serve`: the REST protocol of `mlflow models serve` (MLflow 3.x's scoring server),
//! over any model mlscore scores. One model, shared by every request thread; scoring runs off the
//! reactor, on tokio's blocking pool, under a per-request timeout.
//!
//! Routes, as MLflow's server answers them: `GET /ping` and `GET /health` (200, a newline),
//! `GET /version`, `POST /invocations` with `application/json` (`dataframe_split`,
//! `dataframe_records`, `inputs`, `instances`, `params` accepted and ignored where the model has
//! none) or `text/csv`; `{"predictions": ...}` answers; MLflow's error bodies (`error_code`,
//! `message`) and status codes (400, 404, 405, 413, 415, 504); and, beyond MLflow, `GET /metrics`
//! (Prometheus text: requests by route and status, rows, latency).
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

mod metrics;
mod request;
mod response;
mod split;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
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
    /// Also answer as an Azure ML online endpoint: `POST /score` with `{"input_data": ...}`,
    /// bare answers, `GET /` liveness, request ids echoed.
    pub azureml: bool,
    /// Write one JSON line a scoring request on stderr (time, route, status, milliseconds,
    /// rows, request bytes, request id).
    pub access_log: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 5000,
            timeout: Duration::from_secs(60),
            body_limit: 100 << 20,
            azureml: false,
            access_log: false,
        }
    }
}

#[derive(Clone)]
struct AppState {
    model: Arc<dyn Scorer>,
    timeout: Duration,
    metrics: Arc<metrics::Metrics>,
    access_log: bool,
}

/// Why a scoring request got no answer body: the model or the request (an answer of its own),
/// the scoring task dying, or the request timeout.
enum Failure {
    Scoring(ApiError),
    Task(tokio::task::JoinError),
    Timeout,
}

impl AppState {
    /// Runs `work` (parsing and scoring a request, giving the answer body and its rows) on the
    /// blocking pool, off the network threads, under the request timeout. A request that times
    /// out is answered; its task runs on to its end, as in MLflow.
    async fn score_off_reactor<F>(&self, work: F) -> Result<(String, usize), Failure>
    where
        F: FnOnce(&dyn Scorer) -> Result<(String, usize), ApiError> + Send + 'static,
    {
        let model = self.model.clone();
        match tokio::time::timeout(self.timeout, tokio::task::spawn_blocking(move || work(model.as_ref()))).await {
            Ok(Ok(r)) => r.map_err(Failure::Scoring),
            Ok(Err(join)) => Err(Failure::Task(join)),
            Err(_) => Err(Failure::Timeout),
        }
    }

    /// Counts an answered scoring request, and logs it where asked.
    fn record(
        &self,
        route: &'static str,
        status: StatusCode,
        start: std::time::Instant,
        rows: usize,
        bytes: usize,
        id: Option<&str>,
    ) {
        let elapsed = start.elapsed();
        self.metrics.observe(route, status.as_u16(), elapsed, rows);
        if self.access_log {
            let ts =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
            let line = serde_json::json!({
                "ts": (ts * 1000.0).round() / 1000.0,
                "route": route,
                "status": status.as_u16(),
                "ms": (elapsed.as_secs_f64() * 1e6).round() / 1000.0,
                "rows": rows,
                "bytes": bytes,
                "request_id": id,
            });
            // A lost log line is not worth failing the request for.
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        }
    }
}

/// The routes, for a model and a configuration (what [`serve`] runs; tests can drive it directly).
pub fn router(model: Arc<dyn Scorer>, config: &Config) -> Router {
    let state = AppState {
        model,
        timeout: config.timeout,
        metrics: Arc::new(metrics::Metrics::new()),
        access_log: config.access_log,
    };
    let mut routes = Router::new()
        // FastAPI answers HEAD with 405 where axum would answer it like GET.
        .route("/ping", get(ping).head(method_not_allowed))
        .route("/health", get(ping).head(method_not_allowed))
        .route("/version", get(version))
        .route("/invocations", post(invocations))
        // FastAPI's slash redirect, which MLflow clients may rely on.
        .route("/invocations/", axum::routing::any(|| async { axum::response::Redirect::temporary("/invocations") }))
        .route("/metrics", get(metrics_text));
    if config.azureml {
        routes = routes.route("/", get(healthy)).route("/score", post(score).get(healthy));
    }
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(config.body_limit))
        .with_state(state)
}

/// The runtime to [`serve`] on: network threads, one per core, and as many threads for
/// scoring as there are cores. Scoring is CPU work: more threads than cores only switch
/// between requests, and tokio's default (up to 512 blocking threads, one a request in
/// flight) held 64 threads at 64 clients, which with mimalloc's per-thread heaps measured 252 MB
/// of RSS and half the requests/s of a pool of 2 (44 MB) on this 2-core machine.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    tokio::runtime::Builder::new_multi_thread().max_blocking_threads(cores).enable_all().build()
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

async fn metrics_text(State(state): State<AppState>) -> Response {
    let ct = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    (StatusCode::OK, [(header::CONTENT_TYPE, ct)], state.metrics.render()).into_response()
}

async fn healthy() -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "Healthy").into_response()
}

/// A request id for an answer: the client's `x-request-id` if it sent one (at most 100
/// characters, as Azure ML's server allows), else a new one.
fn request_id(headers: &HeaderMap) -> Result<String, ()> {
    match headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
        Some(id) if id.len() > 100 => Err(()),
        Some(id) => Ok(id.to_string()),
        None => {
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            Ok(format!("{:016x}-{n:08x}", t as u64))
        }
    }
}

/// Azure ML's `POST /score`: `{"input_data": ..., "params": ...}` in, the bare predictions out,
/// request ids echoed and the scoring time in `x-ms-run-fn-exec-ms`.
async fn score(State(state): State<AppState>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let Ok(id) = request_id(&headers) else {
        let msg = json_message("x-request-id is longer than 100 characters");
        return (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, [(header::CONTENT_TYPE, "application/json")], msg)
            .into_response();
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return unread_body(&state, "/score", rejection, Some(&id)),
    };
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut response = if ct.split(';').next().map(str::trim) != Some("application/json") {
        let msg = json_message("Expects Content-Type to be application/json");
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, [(header::CONTENT_TYPE, "application/json")], msg).into_response()
    } else {
        let (start, bytes) = (std::time::Instant::now(), body.len());
        let (mut r, rows) = match state
            .score_off_reactor(move |model| {
                let batch = request::parse_azureml(&body, model)?;
                Ok((response::predictions(model, &batch, false)?.to_string(), batch.num_rows()))
            })
            .await
        {
            Ok((body, rows)) => (json_response(StatusCode::OK, body), rows),
            Err(Failure::Scoring(e)) => (e.azureml(), 0),
            Err(Failure::Task(join)) => {
                (ApiError::internal(format!("An unexpected error occurred in scoring script: {join}")).azureml(), 0)
            }
            Err(Failure::Timeout) => {
                (ApiError::internal(format!("Scoring timeout after {} ms", state.timeout.as_millis())).azureml(), 0)
            }
        };
        state.record("/score", r.status(), start, rows, bytes, Some(&id));
        let ms = format!("{:.3}", start.elapsed().as_secs_f64() * 1000.0);
        if let Ok(v) = axum::http::HeaderValue::from_str(&ms) {
            r.headers_mut().insert("x-ms-run-fn-exec-ms", v);
        }
        r
    };
    let h = response.headers_mut();
    if let Ok(v) = axum::http::HeaderValue::from_str(&id) {
        h.insert("x-request-id", v.clone());
        h.insert("x-ms-request-id", v);
    }
    if let Some(v) = headers.get("x-ms-client-request-id") {
        h.insert("x-ms-client-request-id", v.clone());
    }
    response
}

fn json_message(m: &str) -> String {
    serde_json::json!({ "message": m }).to_string()
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

/// The answer to a request whose body could not be read (413 over the body limit), counted and
/// logged like any other answer.
fn unread_body(state: &AppState, route: &'static str, rejection: BytesRejection, id: Option<&str>) -> Response {
    let response = rejection.into_response();
    state.record(route, response.status(), std::time::Instant::now(), 0, 0, id);
    response
}

async fn invocations(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return unread_body(&state, "/invocations", rejection, None),
    };
    let kind = match content_type(&headers) {
        Ok(k) => k,
        Err(msg) => {
            let text = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
            return (StatusCode::UNSUPPORTED_MEDIA_TYPE, text, msg).into_response();
        }
    };
    let (start, bytes) = (std::time::Instant::now(), body.len());
    let (response, rows) = match state
        .score_off_reactor(move |model| {
            let (batch, tensor_input) = request::parse(kind, &body, model)?;
            Ok((response::predict(model, &batch, tensor_input)?, batch.num_rows()))
        })
        .await
    {
        Ok((body, rows)) => (json_response(StatusCode::OK, body), rows),
        Err(Failure::Scoring(e)) => (e.into_response(), 0),
        Err(Failure::Task(join)) => (ApiError::internal(format!("the scoring task failed: {join}")).into_response(), 0),
        Err(Failure::Timeout) => {
            (json_response(StatusCode::GATEWAY_TIMEOUT, "Request processing time exceeded limit".into()), 0)
        }
    };
    state.record("/invocations", response.status(), start, rows, bytes, None);
    response
}
