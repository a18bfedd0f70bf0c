//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while loading a model, binding a table to it, or scoring: the
/// error of the scoring contract, which every front end (ONNX, and the formats to come) returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Finding or reading the MLflow model failed.
    #[error(transparent)]
    Mlflow(#[from] mlscore_mlflow::Error),

    /// The model's file could not be read, parsed or compiled.
    #[error("cannot load {kind} {}: {reason}", path.display())]
    Load {
        /// What the file is (`ONNX graph`, ...).
        kind: &'static str,
        /// The file.
        path: PathBuf,
        /// What failed (the front end's error chain, with the part of the model it names).
        reason: String,
    },

    /// Reading a model's file failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done (`read`, ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// The model uses what mlscore cannot score (operators, estimators, attribute values).
    #[error("{kind} {} uses what mlscore cannot run yet: {}", path.display(), items.join("; "))]
    Unsupported {
        /// What the file is (`ONNX graph`, ...).
        kind: &'static str,
        /// The file.
        path: PathBuf,
        /// One entry per offending part: for ONNX, `domain:OpType (node 'name')` and, where known, why.
        items: Vec<String>,
    },

    /// No front end of this build scores the model's format.
    #[error("cannot score model {uri}: {reason}")]
    UnsupportedFormat {
        /// The model URI.
        uri: String,
        /// Its flavors, and what to do.
        reason: String,
    },

    /// Required model inputs are absent from the table.
    #[error("model is missing inputs {missing:?}{}; {hint}", extra_suffix(extra))]
    MissingColumns {
        /// Signature inputs not found.
        missing: Vec<String>,
        /// Table columns the model does not use.
        extra: Vec<String>,
        /// What to do.
        hint: String,
    },

    /// A column's type cannot be converted to what the signature declares.
    #[error(
        "incompatible input types for column '{column}': cannot safely convert {found} to {expected}{}",
        hint_suffix(hint)
    )]
    IncompatibleType {
        /// The table column (and signature input, where the names differ).
        column: String,
        /// The column's type.
        found: String,
        /// The declared type.
        expected: String,
        /// What to do.
        hint: Option<String>,
    },

    /// Input values the model cannot take (nulls under the `error` policy, out-of-range values).
    #[error("column '{column}': {reason}")]
    InvalidValues {
        /// The column.
        column: String,
        /// What is wrong, with counts.
        reason: String,
    },

    /// The table cannot be mapped onto the model's inputs.
    #[error("cannot feed the model: {0}")]
    Binding(String),

    /// A `result_type` that is not valid or not allowed.
    #[error("invalid result type '{ty}': {reason}")]
    InvalidResultType {
        /// The type as given.
        ty: String,
        /// Why.
        reason: String,
    },

    /// The model's outputs cannot be converted to the requested result type.
    #[error("{0}")]
    ResultConversion(String),

    /// The model failed while running.
    #[error("model {model} failed while scoring: {reason}")]
    Inference {
        /// The model URI.
        model: String,
        /// tract's error chain.
        reason: String,
    },
}

fn extra_suffix(extra: &[String]) -> String {
    if extra.is_empty() { String::new() } else { format!(". Note that there were extra inputs: {extra:?}") }
}

fn hint_suffix(hint: &Option<String>) -> String {
    hint.as_ref().map(|h| format!(" ({h})")).unwrap_or_default()
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
