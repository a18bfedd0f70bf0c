//! ONNX scoring for mlscore: tract plans, Arrow <-> tensor conversion and MLflow's signature
//! enforcement, for models logged with `mlflow.onnx`.
//!
//! ```no_run
//! use mlscore_onnx::{Model, NullPolicy, ResultType};
//! # fn batch() -> arrow_array::RecordBatch { unimplemented!() }
//! let model = Model::load("models:/churn@champion")?;          // resolve, compile once
//! let batch = batch();                                          // columns named as the signature's inputs
//! let binding = model.bind(batch.schema().as_ref())?;          // checked before any data is read
//! let prediction = model.predict(&binding, batch.columns(), NullPolicy::Error)?;
//! let result = ResultType::parse("struct<label:bigint,probabilities:array<float>>")?;
//! let column = result.convert(&prediction.outputs)?;
//! # Ok::<(), mlscore_onnx::Error>(())
//! ```
#![warn(missing_docs)]

mod convert;
pub mod enforce;
mod error;
mod graph;
mod model;
mod ops;
mod result_type;

pub use error::{Error, Result};
pub use graph::{CHUNK_ROWS, Dim, ElemType, IoSpec, MapKeys, OnnxGraph};
pub use model::{Binding, BoundColumn, Model, NullPolicy, Prediction, positional_frame, predict_batch};
pub use result_type::{ResultType, null_column};
