//! mlscore's scoring contract, over Arrow, for every model format.
//!
//! A format's front end (`mlscore-onnx` today) implements [`Scorer`]; everything above it (the
//! DataFusion engine, the CLI, the Python package, a server) holds an `Arc<dyn Scorer>` and
//! relies on this crate's semantics, the same for every format:
//! - [`bind`]: a table's columns matched to the model's MLflow signature, by name, position or
//!   tensor spec, with MLflow's type matrix ([`enforce`]), before any data is read;
//! - [`NullPolicy`]: what a null input means (an error, a null prediction, or NaN as in
//!   `spark_udf`), applied by [`Scorer::predict`] before the model runs;
//! - [`ResultType`]: `spark_udf`'s `result_type`, a Spark DDL type, and the conversion of a
//!   model's outputs into one column of it.
//!
//! ```
//! use std::sync::Arc;
//! use arrow_array::{ArrayRef, Float32Array, Int64Array};
//! use mlscore_core::ResultType;
//! // A classifier's outputs for two rows, as a Scorer returns them...
//! let outputs: Vec<(String, ArrayRef)> = vec![
//!     ("label".into(), Arc::new(Int64Array::from(vec![1, 0]))),
//!     ("score".into(), Arc::new(Float32Array::from(vec![0.75, 0.125]))),
//! ];
//! // ...as the column spark_udf(result_type="double") would return: the leftmost compatible output.
//! let column = ResultType::parse("double")?.convert(&outputs)?;
//! assert_eq!(column.len(), 2);
//! # Ok::<(), mlscore_core::Error>(())
//! ```
#![warn(missing_docs)]

pub mod bind;
mod cpu;
pub mod enforce;
mod error;
mod guard;
mod parquet_guard;
mod result_type;
mod scorer;
mod values;

pub use cpu::{peak_memory_mib, thread_cpu_ns};
pub use error::{Error, Result};
pub use guard::{catch_panic, defer_panic_reports, deferred_panics, panic_message};
pub use parquet_guard::{check_parquet_file, check_parquet_footer, parquet_footer_length};
pub use result_type::{ResultType, null_column};
pub use scorer::{Binding, BoundColumn, NullPolicy, Prediction, Scorer, positional_frame, predict_batch};
pub use values::float64_values;
