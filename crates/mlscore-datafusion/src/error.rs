//! The one error type of this crate.

use std::path::PathBuf;

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;

/// Everything that can go wrong while planning or running a scoring query or job.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The model could not be loaded, bound or run.
    #[error(transparent)]
    Model(#[from] mlscore_core::Error),

    /// DataFusion failed to plan or execute the query.
    #[error("{}", datafusion_message(.0))]
    DataFusion(#[source] datafusion::error::DataFusionError),

    /// An input path, glob or directory is unusable.
    #[error("input {input}: {reason}")]
    Input {
        /// The input as given.
        input: String,
        /// What is wrong.
        reason: String,
    },

    /// The output cannot be written (exists, unwritable, unknown format).
    #[error("output {}: {reason}", path.display())]
    Output {
        /// The output path.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },

    /// The output's object store cannot be opened (a URL it cannot parse, missing credentials).
    #[error("output {}: {source}", path.display())]
    OutputStore {
        /// The output as given.
        path: PathBuf,
        /// Why the store cannot be opened.
        #[source]
        source: mlscore_mlflow::Error,
    },

    /// Writing CSV failed.
    #[error("writing CSV {}: {source}", path.display())]
    Csv {
        /// The file being written.
        path: PathBuf,
        /// Arrow's CSV writer's error.
        #[source]
        source: datafusion::arrow::error::ArrowError,
    },

    /// A file-system operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Writing or stitching Parquet failed.
    #[error("writing Parquet {}: {source}", path.display())]
    Parquet {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: parquet::errors::ParquetError,
    },

    /// Reading a Parquet input failed.
    #[error("reading Parquet {}: {source}", path.display())]
    ParquetInput {
        /// The file being read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: parquet::errors::ParquetError,
    },

    /// A query that cannot be run as a scoring query.
    #[error("{0}")]
    Query(String),
}

/// DataFusion wraps errors raised inside UDFs in context layers; surface the model's own
/// message first, as that is what the user must act on.
fn datafusion_message(e: &datafusion::error::DataFusionError) -> String {
    let root = e.find_root();
    match root {
        datafusion::error::DataFusionError::External(inner) => inner.to_string(),
        other => other.to_string(),
    }
}

impl From<DataFusionError> for Error {
    /// A model's error raised inside a query reaches us wrapped in DataFusion's layers
    /// (`External`, `Context`, Arrow's `ExternalError`): those are taken off, so that the error
    /// is the model's own, with its own causes, and no wrapper words are printed.
    fn from(e: DataFusionError) -> Self {
        match unwrap_model_error(e) {
            Ok(model) => Self::Model(model),
            Err(e) => Self::DataFusion(e),
        }
    }
}

fn unwrap_model_error(e: DataFusionError) -> std::result::Result<mlscore_core::Error, DataFusionError> {
    fn boxed(b: Box<dyn std::error::Error + Send + Sync>) -> std::result::Result<mlscore_core::Error, DataFusionError> {
        match b.downcast::<mlscore_core::Error>() {
            Ok(model) => Ok(*model),
            Err(b) => match b.downcast::<DataFusionError>() {
                Ok(inner) => unwrap_model_error(*inner),
                Err(b) => Err(DataFusionError::External(b)),
            },
        }
    }
    match e {
        DataFusionError::External(b) => boxed(b),
        DataFusionError::Context(context, inner) => {
            unwrap_model_error(*inner).map_err(|e| DataFusionError::Context(context, Box::new(e)))
        }
        DataFusionError::ArrowError(arrow, backtrace) => match *arrow {
            ArrowError::ExternalError(b) => boxed(b),
            other => Err(DataFusionError::ArrowError(Box::new(other), backtrace)),
        },
        other => Err(other),
    }
}

impl Error {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { action, path: path.into(), source }
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
