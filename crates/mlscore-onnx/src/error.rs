//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while compiling a model, binding a table to it, or scoring.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Finding or reading the MLflow model failed.
    #[error(transparent)]
    Mlflow(#[from] mlscore_mlflow::Error),

    /// The ONNX file could not be parsed or compiled.
    #[error("cannot load ONNX graph {}: {reason}", path.display())]
    Load {
        /// The ONNX file.
        path: PathBuf,
        /// What failed (tract's error chain, with the node it names).
        reason: String,
    },

    /// The graph uses operators (or attribute values) mlscore cannot run.
    #[error("ONNX graph {} uses what mlscore cannot run yet: {}", path.display(), ops.join("; "))]
    UnsupportedOperators {
        /// The ONNX file.
        path: PathBuf,
        /// One entry per offending node: `domain:OpType (node 'name')` and, where known, why.
        ops: Vec<String>,
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
