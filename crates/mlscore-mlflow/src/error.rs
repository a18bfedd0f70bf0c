//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while reading, resolving or fetching an MLflow model.
///
/// Each variant names the thing at fault (a URI, a file, a key) and, where there is one,
/// what the user can do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The model URI could not be parsed.
    #[error("invalid model URI '{uri}': {reason}")]
    InvalidUri {
        /// The URI as given.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The URI's scheme is not one mlscore can read models from.
    #[error(
        "unsupported model URI scheme '{scheme}' in '{uri}': use a local path, file:, runs:/, models:/ \
         or an object store URL (s3://, abfss://, az://, wasbs://, gs://, https://)"
    )]
    UnsupportedScheme {
        /// The URI as given.
        uri: String,
        /// Its scheme.
        scheme: String,
    },

    /// A tracking URI that mlscore cannot use as a model store.
    #[error("unsupported MLflow tracking URI '{uri}': {reason}")]
    UnsupportedTrackingUri {
        /// The tracking URI.
        uri: String,
        /// Why it cannot be used.
        reason: String,
    },

    /// An MLflow tracking server (or its artifact proxy) failed or refused a request.
    #[error("MLflow server request {url} failed: {reason}")]
    Remote {
        /// The endpoint called (never with credentials).
        url: String,
        /// What went wrong, and what to do.
        reason: String,
    },

    /// An object store (Azure, S3, GCS, HTTP) refused or failed a request, or is misconfigured.
    #[error("object store {url}: {reason}")]
    ObjectStore {
        /// The URL involved (object store URLs carry no credentials).
        url: String,
        /// What went wrong, and what to do.
        reason: String,
    },

    /// A file or directory could not be read or written.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done ("cannot read", "cannot create", ...).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// An `MLmodel` file that is not valid YAML or lacks what a model needs.
    #[error("invalid MLmodel file {}: {reason}", path.display())]
    InvalidMlModel {
        /// The MLmodel file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A model signature (inputs, outputs or params) that cannot be decoded.
    #[error("invalid model signature ({part}): {reason}")]
    InvalidSignature {
        /// Which part: "inputs", "outputs" or "params".
        part: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// The URI is well formed but names nothing in the store.
    #[error("model not found: {uri}: {what}{}", hint_suffix(hint))]
    NotFound {
        /// The model URI being resolved.
        uri: String,
        /// What was looked for and not found.
        what: String,
        /// What the user can try.
        hint: Option<String>,
    },

    /// The tracking store itself could not be read.
    #[error("MLflow tracking store {store}: {reason}")]
    Store {
        /// The store (tracking URI or path).
        store: String,
        /// What went wrong.
        reason: String,
    },

    /// The model exists but cannot be scored by mlscore (no ONNX flavor, external model, ...).
    #[error("model {location} cannot be scored by mlscore: {reason}")]
    Unsupported {
        /// Where the model was loaded from.
        location: String,
        /// Why not, and what to do.
        reason: String,
    },
}

fn hint_suffix(hint: &Option<String>) -> String {
    hint.as_ref().map(|h| format!(" ({h})")).unwrap_or_default()
}

impl Error {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { action, path: path.into(), source }
    }

    pub(crate) fn invalid_uri(uri: &str, reason: impl Into<String>) -> Self {
        Self::InvalidUri { uri: uri.to_string(), reason: reason.into() }
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
