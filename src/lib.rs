//! # mlscore
//!
//! Batch-score MLflow models over Arrow and Parquet tables, natively: no JVM, no Python
//! workers, no pandas. mlscore reads a model logged with `mlflow.onnx` (from a path, `runs:/`,
//! `models:/…@alias` or an MLflow store), enforces its signature the way MLflow does, runs its
//! ONNX graph (scikit-learn's ai.onnx.ml operators included) and returns Arrow columns, one
//! batch or one partition-parallel, streaming DataFusion query at a time.
//!
//! This crate is a facade over the workspace's crates:
//! - [`mlflow`]: `MLmodel`, signatures, model URIs and MLflow stores;
//! - [`onnx`]: compiled models, binding tables to them, predictions and result types;
//! - [`datafusion`]: the `predict` UDF, scoring jobs and their outputs.
//!
//! Scoring a table in SQL, on your own DataFusion session:
//!
//! ```
//! use std::sync::Arc;
//! use datafusion::execution::FunctionRegistry;
//! use datafusion::prelude::{ParquetReadOptions, SessionContext};
//! use mlscore::datafusion::NoArgumentCalls;
//! use mlscore::{Model, PredictOptions, predict_udf};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! // Resolve and compile the model once; every partition shares it.
//! let model = Arc::new(Model::load("models/churn")?);
//!
//! let mut ctx = SessionContext::new();
//! ctx.register_udf(predict_udf("churn", model, PredictOptions::default()));
//! // Lets `churn()` read the signature's input columns by name.
//! ctx.register_function_rewrite(Arc::new(NoArgumentCalls))?;
//! ctx.register_parquet("customers", "models/data/customers/", ParquetReadOptions::default()).await?;
//!
//! let df = ctx.sql("SELECT customer_id, churn()['probabilities'][2] AS p FROM customers ORDER BY p DESC LIMIT 3").await?;
//! let top = df.collect().await?;
//! assert_eq!(top[0].num_rows(), 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })
//! # }
//! ```
//!
//! [`datafusion::scoring_context`] gives a session already set up for scoring (order-preserving
//! partitions, `FROM 'data/*.parquet'` tables, the rewrite above), and [`datafusion::ScoreJob`]
//! is `mlscore score` as a library call.
#![warn(missing_docs)]

pub use mlscore_datafusion as datafusion;
pub use mlscore_mlflow as mlflow;
pub use mlscore_onnx as onnx;

pub use mlscore_datafusion::{PredictOptions, ScoreJob, predict_udf, scoring_context};
pub use mlscore_onnx::{Model, NullPolicy, ResultType};
