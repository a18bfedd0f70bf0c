//! XGBoost and LightGBM models read as data: their own file formats (XGBoost's UBJSON and
//! JSON, LightGBM's text format) and their scikit-learn API classes inside pickle or skops
//! files, compiled into mlscore's tree kernel with each library's prediction arithmetic. No
//! Arrow and no MLflow here: the front ends (mlflow.xgboost / mlflow.lightgbm, and scikit-learn
//! pipelines ending with one of these estimators) feed it row-major features.
//!
//! - XGBoost scores in float32: splits `f32(x) < f32(threshold)`, NaN to each node's default
//!   child, margins summed in float32 from the base margin, the objective's transform.
//! - LightGBM scores in float64: splits `x <= threshold`, with its missing-value rules per
//!   split (NaN read as 0, zero as missing, NaN as missing) and categorical bitsets.
//!
//! ```
//! // A one-tree LightGBM regressor: x0 <= 0.5 gives 1.0, else 3.0.
//! let text = "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\n\
//!     max_feature_idx=0\nobjective=regression\nfeature_names=x0\nfeature_infos=[0:1]\n\n\
//!     Tree=0\nnum_leaves=2\nnum_cat=0\nsplit_feature=0\nsplit_gain=1\nthreshold=0.5\n\
//!     decision_type=2\nleft_child=-1\nright_child=-2\nleaf_value=1 3\nleaf_weight=1 1\n\
//!     leaf_count=1 1\ninternal_value=0\ninternal_weight=0\ninternal_count=2\nis_linear=0\n\
//!     shrinkage=1\n\nend of trees\n";
//! let booster = mlscore_booster::lightgbm::read(text, None)?;
//! let mut x = vec![0.25, 0.75];
//! booster.read_features(&mut x);
//! assert_eq!(booster.score(&x, 2)?.values, vec![1.0, 3.0]);
//! # Ok::<(), mlscore_booster::ReadError>(())
//! ```
#![warn(missing_docs)]

mod booster;
mod error;
pub mod lightgbm;
pub mod sklearn_api;
mod value;
pub mod xgboost;
mod xgboost_legacy;

pub use crate::booster::{
    Booster, FeatureRule, Inputs, MAX_FEATURES, Pyfunc, Real, Scores, Transform, ZERO_THRESHOLD, arg_max,
};
pub use crate::error::ReadError;
pub use crate::sklearn_api::{AnyBooster, Estimator};
