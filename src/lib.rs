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
//! Scoring a table in SQL:
//!
//! ```no_run
//! use std::sync::Arc;
//! use mlscore::datafusion::{PredictOptions, predict_udf, scoring_context, EngineOptions};
//! use mlscore::onnx::Model;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let model = Arc::new(Model::load("models/churn")?);
//! let ctx = scoring_context(&EngineOptions::default());
//! ctx.register_udf(predict_udf("churn", model, PredictOptions::default()));
//! let df = ctx.sql("SELECT customer_id, churn() AS p FROM 'models/data/customers/'").await?;
//! df.show().await?;
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub use mlscore_datafusion as datafusion;
pub use mlscore_mlflow as mlflow;
pub use mlscore_onnx as onnx;

pub use mlscore_onnx::{Model, NullPolicy, ResultType};
