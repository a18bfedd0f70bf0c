//! MLflow models for mlscore, with no ONNX runtime and no query engine in sight.
//!
//! This crate knows MLflow's on-disk and registry formats:
//! - [`MlModel`]: the `MLmodel` file, every key MLflow 3 writes, flavors included;
//! - [`signature`]: input, output and params schemas, decoded from their embedded JSON;
//! - [`ModelUri`]: paths, `file:`, `runs:/`, `models:/` (version, `latest`, stage, `@alias`,
//!   logged model ids) and object store URLs;
//! - [`store`]: MLflow's sqlite and file stores, read directly;
//! - [`resolve()`] and [`MlflowModel`]: from a URI to the model's files.
//!
//! ```no_run
//! use mlscore_mlflow::{MlflowModel, StoreConfig};
//! // MLFLOW_TRACKING_URI=sqlite:///mlflow.db, as MLflow's own client reads it.
//! let model = MlflowModel::load_with("models:/churn@champion", &StoreConfig::from_env())?;
//! println!("{} model from {}", model.format.name(), model.resolution.store.unwrap_or_default());
//! # Ok::<(), mlscore_mlflow::Error>(())
//! ```
#![warn(missing_docs)]

mod error;
pub mod mlmodel;
mod model;
pub mod objects;
mod resilient;
pub mod resolve;
pub mod signature;
pub mod store;
mod uri;

pub use error::{Error, Result};
pub use mlmodel::MlModel;
pub use model::{MlflowModel, ModelFormat};
pub use resolve::{Resolution, resolve};
pub use signature::{ColSpec, ColType, DataType, ParamSchema, Schema, Signature, TensorSpec};
pub use store::StoreConfig;
pub use uri::{ModelUri, REMOTE_SCHEMES, VersionSelector, is_model_id};
