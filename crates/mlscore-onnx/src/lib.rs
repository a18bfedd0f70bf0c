//! The ONNX front end of mlscore: models logged with `mlflow.onnx` (and bare `.onnx` files),
//! compiled with tract, with mlscore's own ai.onnx.ml operators (on the kernels of
//! `mlscore-kernels`) and Arrow <-> tensor conversion. [`Model`] implements the scoring
//! contract of `mlscore-core` ([`Scorer`]); everything else about scoring (signatures, nulls,
//! result types) lives there.
//!
//! ```no_run
//! use mlscore_core::{NullPolicy, ResultType, Scorer};
//! use mlscore_onnx::Model;
//! # fn batch() -> arrow_array::RecordBatch { unimplemented!() }
//! let model = Model::load("models:/churn@champion")?;          // resolve, compile once
//! let batch = batch();                                          // columns named as the signature's inputs
//! let binding = model.bind(batch.schema().as_ref())?;          // checked before any data is read
//! let prediction = model.predict(&binding, batch.columns(), NullPolicy::Error)?;
//! let result = ResultType::parse("struct<label:bigint,probabilities:array<float>>")?;
//! let column = result.convert(&prediction.outputs)?;
//! # Ok::<(), mlscore_core::Error>(())
//! ```
#![warn(missing_docs)]

mod convert;
mod graph;
mod model;
mod ops;

pub use graph::{CHUNK_ROWS, Dim, ElemType, IoSpec, MapKeys, OnnxGraph};
pub use mlscore_core::{Error, Result, Scorer};
pub use model::Model;
