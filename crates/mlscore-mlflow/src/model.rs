//! A model found on disk: its `MLmodel`, signature and ONNX file.

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
    /// The ONNX graph to run.
    pub onnx_path: PathBuf,
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
            return Ok(Self { resolution, dir, mlmodel: None, onnx_path: path });
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
        let data = match mlmodel.onnx_flavor()? {
            Some(onnx) => onnx.data.unwrap_or_else(|| "model.onnx".into()),
            None => match mlmodel.pyfunc_flavor()? {
                Some(p) if p.loader_module == "mlflow.onnx" => p.data.unwrap_or_else(|| "model.onnx".into()),
                _ => {
                    let flavors = mlmodel.flavor_names().join(", ");
                    let advice = if mlmodel.flavors.contains_key("sklearn") {
                        "convert the estimator with skl2onnx (to_onnx(model, X[:1], options={'zipmap': False})) and log it with mlflow.onnx.log_model"
                    } else {
                        "export it to ONNX and log it with mlflow.onnx.log_model"
                    };
                    return Err(Error::Unsupported {
                        location,
                        reason: format!(
                            "it has the flavors [{flavors}] but no onnx flavor, and mlscore runs ONNX graphs; {advice}"
                        ),
                    });
                }
            },
        };
        let onnx_path = dir.join(&data);
        if !onnx_path.is_file() {
            return Err(Error::NotFound {
                uri: location,
                what: format!("its MLmodel names the ONNX file '{data}', but {} does not exist", onnx_path.display()),
                hint: Some("the model directory is incomplete; download or copy it again".into()),
            });
        }
        Ok(Self { resolution, dir, mlmodel: Some(mlmodel), onnx_path })
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
