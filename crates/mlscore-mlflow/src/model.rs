//! A model found on disk: its `MLmodel`, signature, and what its flavors say about its files.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::mlmodel::MlModel;
use crate::resolve::{Resolution, resolve};
use crate::signature::Signature;
use crate::store::StoreConfig;

/// An MLflow model whose files are on the local disk, ready to be compiled.
#[derive(Debug, Clone)]
pub struct MlflowModel {
    /// Where it came from.
    pub resolution: Resolution,
    /// The model directory (for a bare `.onnx` file, its directory).
    pub dir: PathBuf,
    /// The parsed `MLmodel` file; `None` for a bare `.onnx` file.
    pub mlmodel: Option<MlModel>,
    /// The model's format and its file, as its flavors describe it. Which runtime scores it is
    /// not decided here: a front end is chosen for it by the format (`mlscore-formats`).
    pub format: ModelFormat,
}

/// What a model's flavors say it is, and where its file is. Formats are listed in the order
/// they are preferred when a model has several flavors (a model that also has an ONNX flavor is
/// scored from its ONNX graph).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModelFormat {
    /// An ONNX graph (`mlflow.onnx`, or a bare `.onnx` file).
    Onnx {
        /// The `.onnx` file.
        path: PathBuf,
    },
    /// A scikit-learn estimator (`mlflow.sklearn`): a pickle, cloudpickle or skops file.
    Sklearn {
        /// The serialized estimator.
        path: PathBuf,
        /// `pickle`, `cloudpickle` or `skops`, as `MLmodel` records it.
        serialization_format: String,
    },
    /// An XGBoost model (`mlflow.xgboost`): a Booster or a sklearn-API estimator saved with
    /// `save_model` (UBJSON, JSON, or XGBoost's legacy binary format).
    Xgboost {
        /// The model file.
        path: PathBuf,
        /// The flavor's `model_class` (what pyfunc's predict returns depends on it).
        model_class: String,
    },
    /// A LightGBM model (`mlflow.lightgbm`): a Booster's text model, or a sklearn-API estimator
    /// serialized like a scikit-learn model.
    Lightgbm {
        /// The model file.
        path: PathBuf,
        /// The flavor's `model_class`.
        model_class: String,
        /// How a sklearn-API estimator is serialized (`skops`, `pickle`, `cloudpickle`).
        serialization_format: Option<String>,
    },
    /// Any other flavor set.
    Other {
        /// The flavor names, as in `MLmodel`.
        flavors: Vec<String>,
    },
}

impl ModelFormat {
    /// A short name: `onnx`, `sklearn`, `xgboost`, `lightgbm`, or the flavors joined by `+`.
    pub fn name(&self) -> String {
        match self {
            Self::Onnx { .. } => "onnx".into(),
            Self::Sklearn { .. } => "sklearn".into(),
            Self::Xgboost { .. } => "xgboost".into(),
            Self::Lightgbm { .. } => "lightgbm".into(),
            Self::Other { flavors } => flavors.join("+"),
        }
    }

    /// The model file the format names, if it has one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Onnx { path }
            | Self::Sklearn { path, .. }
            | Self::Xgboost { path, .. }
            | Self::Lightgbm { path, .. } => Some(path),
            Self::Other { .. } => None,
        }
    }
}

impl MlflowModel {
    /// Resolves a model URI with the process's MLflow configuration and opens the model.
    pub fn load(uri: &str) -> Result<Self> {
        Self::load_with(uri, &StoreConfig::from_env())
    }

    /// Resolves a model URI against the given stores and opens the model.
    pub fn load_with(uri: &str, config: &StoreConfig) -> Result<Self> {
        Self::open(resolve(uri, config)?)
    }

    /// Opens the model a resolution points at.
    pub fn open(resolution: Resolution) -> Result<Self> {
        let path = resolution.local_path.clone();
        let location = resolution.uri.clone();
        if path.is_file() && path.extension().is_some_and(|e| e == "onnx") {
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            return Ok(Self { resolution, dir, mlmodel: None, format: ModelFormat::Onnx { path } });
        }
        let (dir, mlmodel_path) = if path.is_file() {
            (path.parent().map(Path::to_path_buf).unwrap_or_default(), path.clone())
        } else {
            (path.clone(), path.join("MLmodel"))
        };
        if !mlmodel_path.is_file() {
            return Err(Error::NotFound {
                uri: location,
                what: format!("{} is not an MLflow model directory: it has no MLmodel file", dir.display()),
                hint: Some("point at the directory that holds MLmodel (for a run: runs:/<run_id>/<model name>), or at an .onnx file".into()),
            });
        }
        let mlmodel = MlModel::from_path(&mlmodel_path)?;
        if mlmodel.is_external() {
            return Err(Error::Unsupported {
                location,
                reason: "its metadata marks it as an external model (mlflow.model.is_external), which MLflow itself refuses to load".into(),
            });
        }
        let onnx = match mlmodel.onnx_flavor()? {
            Some(onnx) => Some(onnx.data.unwrap_or_else(|| "model.onnx".into())),
            None => match mlmodel.pyfunc_flavor()? {
                Some(p) if p.loader_module == "mlflow.onnx" => Some(p.data.unwrap_or_else(|| "model.onnx".into())),
                _ => None,
            },
        };
        let format = if let Some(data) = onnx {
            ModelFormat::Onnx { path: existing_file(&dir, &data, "ONNX", &location)? }
        } else if let Some(xgb) = mlmodel.xgboost_flavor()? {
            ModelFormat::Xgboost {
                path: existing_file(&dir, &xgb.data, "XGBoost", &location)?,
                model_class: xgb.model_class,
            }
        } else if let Some(lgb) = mlmodel.lightgbm_flavor()? {
            ModelFormat::Lightgbm {
                path: existing_file(&dir, &lgb.data, "LightGBM", &location)?,
                model_class: lgb.model_class,
                serialization_format: lgb.serialization_format,
            }
        } else if let Some(sk) = mlmodel.sklearn_flavor()? {
            let name = sk.pickled_model.clone().unwrap_or_else(|| "model.pkl".into());
            let path = existing_file(&dir, &name, "scikit-learn", &location)?;
            ModelFormat::Sklearn { path, serialization_format: sk.serialization_format }
        } else {
            ModelFormat::Other { flavors: mlmodel.flavor_names().iter().map(|f| f.to_string()).collect() }
        };
        Ok(Self { resolution, dir, mlmodel: Some(mlmodel), format })
    }

    /// The signature to enforce: `None` without one, and `None` when MLflow itself would not
    /// enforce it on data (a signature inferred from type hints).
    pub fn enforced_signature(&self) -> Option<&Signature> {
        let m = self.mlmodel.as_ref()?;
        if m.is_signature_from_type_hint {
            return None;
        }
        m.signature.as_ref()
    }

    /// The signature as written, enforced or not.
    pub fn signature(&self) -> Option<&Signature> {
        self.mlmodel.as_ref()?.signature.as_ref()
    }
}

/// `dir/name`, which the model's MLmodel names as its `kind` file, if it exists.
fn existing_file(dir: &Path, name: &str, kind: &str, location: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    if path.is_file() {
        return Ok(path);
    }
    Err(Error::NotFound {
        uri: location.to_string(),
        what: format!("its MLmodel names the {kind} file '{name}', but {} does not exist", path.display()),
        hint: Some("the model directory is incomplete; download or copy it again".into()),
    })
}
