//! From an MLflow model URI to a [`Scorer`], whatever the model's format.
//!
//! `mlscore-mlflow` reads what a model's flavors say it is ([`ModelFormat`]); this crate picks
//! the front end that scores that format and loads the model with it. Each front end is a cargo
//! feature (`onnx`, `gbdt` and `sklearn`, on by default), so a build carries only the runtimes it needs; a format whose
//! front end is not built in, or that no front end scores yet, is refused with what to do.
//!
//! ```no_run
//! use mlscore_core::Scorer;
//! use mlscore_mlflow::StoreConfig;
//! // MLFLOW_TRACKING_URI=sqlite:///mlflow.db, as MLflow's own client reads it.
//! let model = mlscore_formats::load("models:/churn@champion", &StoreConfig::from_env())?;
//! println!("{} model, artifact sha256 {}", model.format(), model.artifact_sha256());
//! # Ok::<(), mlscore_core::Error>(())
//! ```
#![warn(missing_docs)]

use std::sync::Arc;

use mlscore_core::{Error, Result, Scorer};
use mlscore_mlflow::{MlflowModel, ModelFormat, StoreConfig};

/// Resolves `uri` against the given stores and loads the model with its format's front end.
pub fn load(uri: &str, config: &StoreConfig) -> Result<Arc<dyn Scorer>> {
    from_mlflow(MlflowModel::load_with(uri, config)?)
}

/// Loads an opened MLflow model with its format's front end.
pub fn from_mlflow(mlflow: MlflowModel) -> Result<Arc<dyn Scorer>> {
    match &mlflow.format {
        #[cfg(feature = "onnx")]
        ModelFormat::Onnx { .. } => Ok(Arc::new(mlscore_onnx::Model::from_mlflow(mlflow)?)),
        #[cfg(feature = "gbdt")]
        ModelFormat::Xgboost { .. } | ModelFormat::Lightgbm { .. } => {
            Ok(Arc::new(mlscore_gbdt::Model::from_mlflow(mlflow)?))
        }
        #[cfg(feature = "sklearn")]
        ModelFormat::Sklearn { .. } => Ok(Arc::new(mlscore_sklearn::Model::from_mlflow(mlflow)?)),
        other => Err(Error::UnsupportedFormat { uri: mlflow.resolution.uri.clone(), reason: advice(other) }),
    }
}

/// Why a format cannot be scored by this build, and what to do.
fn advice(format: &ModelFormat) -> String {
    match format {
        ModelFormat::Onnx { .. } => {
            "it is an ONNX model and this build of mlscore has no ONNX front end (the `onnx` feature)".into()
        }
        ModelFormat::Xgboost { .. } | ModelFormat::Lightgbm { .. } => format!(
            "it is a {} model and this build of mlscore has no XGBoost/LightGBM front end (the `gbdt` feature)",
            format.name()
        ),
        ModelFormat::Sklearn { serialization_format, .. } => format!(
            "it is a scikit-learn model ({serialization_format}) and this build of mlscore has no scikit-learn front end \
             (the `sklearn` feature)"
        ),
        ModelFormat::Other { flavors } => format!(
            "it has the flavors [{}], and mlscore scores the onnx, sklearn, xgboost and lightgbm flavors; export it \
             to ONNX and log it with mlflow.onnx.log_model",
            flavors.join(", ")
        ),
        _ => format!("mlscore has no front end for {} models", format.name()),
    }
}
