//! # mlscore
//!
//! Batch-score MLflow models over Arrow and Parquet tables, natively: no JVM, no Python
//! workers, no pandas. mlscore reads a model logged with `mlflow.onnx`, `mlflow.xgboost` or
//! `mlflow.lightgbm` (from a path, `runs:/`, `models:/…@alias` or an MLflow store), enforces its
//! signature the way MLflow does, scores it with its own kernels (ONNX graphs with
//! scikit-learn's ai.onnx.ml operators through tract; XGBoost and LightGBM files read as data)
//! and returns Arrow columns, one batch or one partition-parallel, streaming DataFusion query at
//! a time.
//!
//! This crate is a facade over the workspace's crates, lowest layer first:
//! - [`mlflow`]: `MLmodel`, signatures, model URIs and MLflow stores (no runtime);
//! - [`kernels`]: the numeric kernels every format is scored with (tree ensembles,
//!   post-transforms), over plain slices;
//! - [`core`]: the scoring contract ([`Scorer`]): binding tables to a model's signature, null
//!   policies, predictions and result types, over Arrow;
//! - [`onnx`] (feature `onnx`, on by default): the ONNX front end, tract graphs;
//! - [`gbdt`] (feature `gbdt`, on by default): the XGBoost and LightGBM front end;
//! - [`sklearn`] (feature `sklearn`, on by default): the scikit-learn front end (pickle,
//!   cloudpickle and skops files read as data, never executed);
//! - [`formats`]: [`load`] a model URI with the front end its format needs;
//! - [`datafusion`]: the `predict` UDF, scoring jobs and their outputs.
//!
//! Scoring a table in SQL, on your own DataFusion session:
//!
//! ```
//! use std::sync::Arc;
//! use datafusion::execution::FunctionRegistry;
//! use datafusion::prelude::{ParquetReadOptions, SessionContext};
//! use mlscore::datafusion::NoArgumentCalls;
//! use mlscore::{PredictOptions, predict_udf};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! // Resolve and load the model once (an ONNX graph, compiled); every partition shares it.
//! let model = mlscore::load("models/churn")?;
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

pub use mlscore_core as core;
pub use mlscore_datafusion as datafusion;
pub use mlscore_formats as formats;
#[cfg(feature = "gbdt")]
pub use mlscore_gbdt as gbdt;
pub use mlscore_kernels as kernels;
pub use mlscore_mlflow as mlflow;
#[cfg(feature = "onnx")]
pub use mlscore_onnx as onnx;
#[cfg(feature = "sklearn")]
pub use mlscore_sklearn as sklearn;

pub use mlscore_core::{NullPolicy, ResultType, Scorer};
pub use mlscore_datafusion::{PredictOptions, ScoreJob, predict_udf, scoring_context};

/// Resolves a model URI with MLflow's environment variables (`MLFLOW_TRACKING_URI`, ...) and
/// loads the model with the front end its format needs.
pub fn load(uri: &str) -> mlscore_core::Result<std::sync::Arc<dyn Scorer>> {
    mlscore_formats::load(uri, &mlscore_mlflow::StoreConfig::from_env())
}
