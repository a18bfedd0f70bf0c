//! The scikit-learn API classes of both libraries, read from a pickle or skops object graph
//! ([`mlscore_pickle`], nothing executed):
//!
//! - LightGBM's (`LGBMClassifier`, `LGBMRegressor`, `LGBMRanker`), which `mlflow.lightgbm`
//!   stores with mlflow.sklearn's serializers and which a scikit-learn Pipeline may end with:
//!   the estimator's `_Booster` holds the plain text model in `_handle`
//!   (`Booster.__getstate__`), a classifier's `_le` (a LabelEncoder) its labels. Prediction
//!   follows `lightgbm/sklearn.py`: the Booster predicts with its `best_iteration` rounds when
//!   it has one (early stopping), else all of them; a classifier returns
//!   `classes_[argmax(predict_proba)]`, where a binary model's probabilities are `[1 - p, p]`.
//! - XGBoost's (`XGBClassifier`, `XGBRegressor`, `XGBRanker`, `XGBRF*`), inside a Pipeline or
//!   saved with mlflow.sklearn: the `_Booster`'s `handle` is a memory snapshot (UBJSON
//!   `{Config, Model}`) whose `Model` is what `save_model` writes. `XGBModel.predict` uses the
//!   rounds up to `best_iteration` and the estimator's own `missing` value; a classifier's
//!   labels are the class indices `0..K-1` (XGBoost requires them to be its classes).

use mlscore_pickle::{Graph, Id, Labels, Node};

use crate::booster::{Booster, Inputs, Pyfunc};
use crate::error::ReadError;
use crate::{lightgbm, xgboost};

/// A boosted model of either library, in the float type it predicts in.
#[derive(Debug)]
pub enum AnyBooster {
    /// XGBoost's, in float32.
    Xgboost(Booster<f32>),
    /// LightGBM's, in float64.
    Lightgbm(Booster<f64>),
}

impl AnyBooster {
    /// The library's name (`xgboost`, `lightgbm`).
    pub fn library(&self) -> &'static str {
        match self {
            AnyBooster::Xgboost(_) => "xgboost",
            AnyBooster::Lightgbm(_) => "lightgbm",
        }
    }

    /// What the model says about its input features.
    pub fn inputs(&self) -> &Inputs {
        match self {
            AnyBooster::Xgboost(b) => &b.inputs,
            AnyBooster::Lightgbm(b) => &b.inputs,
        }
    }

    /// The number of trees scored.
    pub fn n_trees(&self) -> usize {
        match self {
            AnyBooster::Xgboost(b) => b.n_trees(),
            AnyBooster::Lightgbm(b) => b.n_trees(),
        }
    }

    /// The number of values a row's prediction has.
    pub fn output_width(&self) -> usize {
        match self {
            AnyBooster::Xgboost(b) => b.transform.width(b.groups),
            AnyBooster::Lightgbm(b) => b.transform.width(b.groups),
        }
    }
}

/// A scikit-learn API estimator of either library, read from an object graph.
#[derive(Debug)]
pub struct Estimator {
    /// The class, without its module (`LGBMClassifier`).
    pub class: String,
    /// Its booster.
    pub booster: AnyBooster,
    /// A classifier's labels: a LightGBM classifier's own (its LabelEncoder's), an XGBoost
    /// classifier's class indices.
    pub classes: Option<Labels>,
}

/// Whether `class` (a pickled object's `module.name`) is one of the scikit-learn API classes
/// [`from_graph`] reads.
pub fn is_estimator(class: &str) -> bool {
    let (module, name) = class.rsplit_once('.').unwrap_or(("", class));
    (module.starts_with("lightgbm.") && matches!(name, "LGBMClassifier" | "LGBMRegressor" | "LGBMRanker"))
        || (module.starts_with("xgboost.")
            && matches!(name, "XGBClassifier" | "XGBRegressor" | "XGBRanker" | "XGBRFClassifier" | "XGBRFRegressor"))
}

/// Reads the estimator `id` of a pickle or skops graph (one [`is_estimator`] accepts).
pub fn from_graph(g: &Graph, id: Id) -> Result<Estimator, ReadError> {
    let found = g.class_of(id).unwrap_or_else(|| g.describe(id));
    if !is_estimator(&found) {
        return Err(ReadError::Unsupported(format!(
            "{found} is not one of the scikit-learn API classes of XGBoost or LightGBM that mlscore reads"
        )));
    }
    let class = found.rsplit('.').next().unwrap_or(&found).to_string();
    let booster = g.get(id, "_Booster")?;
    if found.starts_with("lightgbm.") {
        let handle = match g.attr(booster, "_handle")? {
            Some(h) => h,
            None => g.get(booster, "handle")?,
        };
        let text = g.opt_str(handle)?.ok_or_else(|| ReadError::Missing("the booster's text model (_handle)".into()))?;
        let best = match g.attr(booster, "best_iteration")? {
            Some(b) => g.int(b)?,
            None => 0,
        };
        // Booster.predict(num_iteration=None) uses best_iteration when it is positive, else all.
        let iterations = usize::try_from(best).ok().filter(|b| *b > 0);
        let mut b = lightgbm::read(text, iterations)?;
        let classes = if class == "LGBMClassifier" {
            b.pyfunc = Pyfunc::Labels;
            Some(lgbm_labels(g, id, b.groups)?)
        } else {
            None
        };
        return Ok(Estimator { class, booster: AnyBooster::Lightgbm(b), classes });
    }
    let handle = g.get(booster, "handle")?;
    if matches!(g.node(handle), Node::None) {
        return Err(ReadError::Missing("the booster's model (its handle is None: is it fitted?)".into()));
    }
    let mut b = xgboost::read_snapshot(g.bytes(handle)?, &found)?;
    if let Some(m) = g.attr(id, "missing")?
        && !matches!(g.node(m), Node::None)
    {
        let m = g.float(m)?;
        // NaN is always missing; another value is missing too where the estimator says so.
        if !m.is_nan() {
            b.inputs.missing = Some(m);
        }
    }
    let classes = (b.pyfunc == Pyfunc::Labels).then(|| {
        let k = if b.groups == 1 { 2 } else { b.groups };
        Labels::Int((0..k as i64).collect())
    });
    Ok(Estimator { class, booster: AnyBooster::Xgboost(b), classes })
}

/// How a LightGBM scikit-learn API model logged with `mlflow.lightgbm` was stored.
#[derive(Debug)]
pub struct Stored {
    /// The estimator.
    pub estimator: Estimator,
    /// How the file was serialized: `skops`, `pickle` or `cloudpickle`.
    pub serialization: String,
}

/// Reads the skops or pickle file of a LightGBM scikit-learn API model logged with
/// `mlflow.lightgbm`: the flavor's `model_class`, serialized as its `serialization_format`
/// says (the bytes decide skops; MLflow's loader defaults to cloudpickle).
pub fn read_lightgbm(bytes: &[u8], model_class: &str, serialization_format: Option<&str>) -> Result<Stored, ReadError> {
    let class = model_class.rsplit('.').next().unwrap_or(model_class);
    if !matches!(class, "LGBMClassifier" | "LGBMRegressor" | "LGBMRanker") {
        return Err(ReadError::Unsupported(format!(
            "its model_class {class} is not one mlscore knows (Booster, LGBMClassifier, LGBMRegressor, LGBMRanker)"
        )));
    }
    if bytes.starts_with(b"tree") {
        return Err(ReadError::Invalid(format!(
            "its model_class is {class}, a scikit-learn API estimator, but its file is a LightGBM text model; \
             MLflow stores those classes as skops or pickle files (model.skops, model.pkl): save the model again \
             with mlflow.lightgbm, or say lightgbm.basic.Booster in MLmodel"
        )));
    }
    let g = mlscore_pickle::read(bytes)?;
    let found = g.class_of(g.root).unwrap_or_else(|| g.describe(g.root));
    if found.rsplit('.').next() != Some(class) || !found.starts_with("lightgbm.") {
        return Err(ReadError::Invalid(format!("its MLmodel says {model_class}, but the file holds {found}")));
    }
    let estimator = from_graph(&g, g.root)?;
    let serialization = if mlscore_pickle::is_skops(bytes) {
        "skops"
    } else {
        serialization_format.filter(|f| *f != "skops").unwrap_or("cloudpickle")
    };
    Ok(Stored { estimator, serialization: serialization.to_string() })
}

/// A LightGBM classifier's labels (its LabelEncoder's `classes_`), checked against the
/// model's outputs.
fn lgbm_labels(g: &Graph, id: Id, groups: usize) -> Result<Labels, ReadError> {
    let le = g.get(id, "_le")?;
    let classes = g.labels(g.get(le, "classes_")?)?;
    let expected = if groups == 1 { 2 } else { groups };
    if classes.len() != expected {
        return Err(ReadError::Invalid(format!(
            "its LabelEncoder has {} classes, but its trees predict {expected}",
            classes.len()
        )));
    }
    Ok(classes)
}
