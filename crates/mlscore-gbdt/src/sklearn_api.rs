//! LightGBM's scikit-learn API classes (`LGBMClassifier`, `LGBMRegressor`, `LGBMRanker`), which
//! `mlflow.lightgbm` stores with mlflow.sklearn's serializers: a skops file (MLflow's default),
//! a pickle or a cloudpickle. Read as data with [`mlscore_pickle`] (nothing is executed): the
//! estimator's `_Booster` holds the plain text model in `_handle` (`Booster.__getstate__`), and
//! a classifier's `_le` (a LabelEncoder) its labels.
//!
//! Prediction follows `lightgbm/sklearn.py`: the Booster predicts with its `best_iteration`
//! rounds when it has one (early stopping), else all of them; a classifier returns
//! `classes_[argmax(predict_proba)]`, where a binary model's probabilities are `[1 - p, p]`.

use mlscore_pickle::{Graph, Labels};

use crate::booster::{Booster, Pyfunc};
use crate::error::ReadError;
use crate::lightgbm;

/// What a scikit-learn API LightGBM model adds to its booster.
#[derive(Debug)]
pub(crate) struct Estimator {
    /// The class (`LGBMClassifier`).
    pub class: String,
    /// How the file was serialized: `skops`, `pickle` or `cloudpickle`.
    pub serialization: String,
    /// A classifier's labels (its LabelEncoder's).
    pub classes: Option<Labels>,
}

/// Reads a skops or pickle file holding the flavor's `model_class`, serialized as the flavor's
/// `serialization_format` says (the bytes decide skops; MLflow's loader defaults to cloudpickle).
pub(crate) fn read(
    bytes: &[u8],
    model_class: &str,
    serialization_format: Option<&str>,
) -> Result<(Booster<f64>, Estimator), ReadError> {
    let class = model_class.rsplit('.').next().unwrap_or(model_class);
    let classifier = match class {
        "LGBMClassifier" => true,
        "LGBMRegressor" | "LGBMRanker" => false,
        other => {
            return Err(ReadError::Unsupported(format!(
                "its model_class {other} is not one mlscore knows (Booster, LGBMClassifier, LGBMRegressor, LGBMRanker)"
            )));
        }
    };
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
    let booster = g.get(g.root, "_Booster")?;
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
    let mut booster = lightgbm::read(text, iterations)?;
    let classes = if classifier {
        booster.pyfunc = Pyfunc::Labels;
        Some(labels(&g, booster.groups)?)
    } else {
        None
    };
    let serialization = if mlscore_pickle::is_skops(bytes) {
        "skops"
    } else {
        serialization_format.filter(|f| *f != "skops").unwrap_or("cloudpickle")
    };
    Ok((booster, Estimator { class: class.to_string(), serialization: serialization.to_string(), classes }))
}

/// A classifier's labels (its LabelEncoder's `classes_`), checked against the model's outputs.
fn labels(g: &Graph, groups: usize) -> Result<Labels, ReadError> {
    let le = g.get(g.root, "_le")?;
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
