//! XGBoost and LightGBM models logged with `mlflow.xgboost` and `mlflow.lightgbm`, scored
//! without either library: their files are read as data (XGBoost's UBJSON and JSON, LightGBM's
//! text format) into mlscore's tree kernel, with each library's own arithmetic, so that
//! predictions are those of `mlflow.pyfunc.load_model(uri).predict(df)`.
//!
//! - XGBoost: a Booster's transformed output (probabilities, values) in float32; an
//!   `XGBClassifier`'s labels, predicted with the rounds up to its `best_iteration`; an
//!   `XGBRegressor`'s values. Splits are `f32(x) < f32(threshold)`, NaN follows each node's
//!   default child, margins are float32 sums from the base margin.
//! - LightGBM: a Booster's transformed output in float64. Splits are `x <= threshold`, with
//!   LightGBM's missing-value rules per split (NaN read as 0, zero as missing, NaN as missing).
//!   Its scikit-learn API classes (`LGBMClassifier`, ...), stored as skops or pickle files, are
//!   read as data with [`mlscore_pickle`] (nothing executed): a classifier's labels are its own.
//!
//! Every model has, after the output pyfunc returns, the raw margins (`margin`) and for
//! classifiers the class probabilities (`probabilities`), which a struct result type can ask
//! for by name.
//!
//! ```no_run
//! use mlscore_core::Scorer;
//! use mlscore_mlflow::MlflowModel;
//! let model = mlscore_gbdt::Model::from_mlflow(MlflowModel::load("models:/churn-xgb/3")?)?;
//! // `prediction` (what pyfunc returns), then `margin`.
//! println!("{:?}", model.output_types());
//! # Ok::<(), mlscore_core::Error>(())
//! ```
#![warn(missing_docs)]

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{ArrowPrimitiveType, Float32Type, Float64Type};
use arrow_array::{Array, ArrayRef, Int64Array, ListArray, PrimitiveArray};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType as ArrowType, Field, FieldRef, Schema as ArrowSchema};
use mlscore_core::bind::signature_columns;
use mlscore_core::enforce::numpy_name;
use mlscore_core::{Binding, BoundColumn, Error, Result, Scorer};
use mlscore_mlflow::{MlflowModel, ModelFormat, Signature};
use mlscore_pickle::Labels;
use sha2::{Digest, Sha256};

pub use mlscore_booster::ReadError;
use mlscore_booster::sklearn_api::{self, AnyBooster};
use mlscore_booster::{Booster, Inputs, Pyfunc, Real, Scores, lightgbm, xgboost};

/// An XGBoost or LightGBM model, ready to score: shared by all threads, compiled once.
#[derive(Debug)]
pub struct Model {
    mlflow: MlflowModel,
    trees: AnyBooster,
    /// A LightGBM scikit-learn API model's class, serialization and labels (without them,
    /// a classifier's labels are `0..K-1`).
    estimator: Option<Estimator>,
    signature: Option<Signature>,
    sha256: String,
}

/// What a LightGBM scikit-learn API model adds to its booster.
#[derive(Debug)]
struct Estimator {
    class: String,
    serialization: String,
    classes: Option<Labels>,
}

/// Which frame column feeds each model feature, and how: the plan of this format's [`Binding`].
#[derive(Debug, Clone, PartialEq)]
struct Features(Vec<Feed>);

#[derive(Debug, Clone, PartialEq)]
struct Feed {
    /// The frame column.
    column: usize,
    /// Its name, for errors.
    name: String,
    /// For a categorical feature whose model stores its categories: each category's code (its
    /// position in training), by name; values are looked up by name (numbers by their text).
    codes: Option<Arc<HashMap<String, f64>>>,
}

impl Model {
    /// Reads an opened MLflow model whose format is XGBoost or LightGBM.
    pub fn from_mlflow(mlflow: MlflowModel) -> Result<Self> {
        let (path, model_class, xgboost, serialization_format) = match &mlflow.format {
            ModelFormat::Xgboost { path, model_class } => (path.clone(), model_class.clone(), true, None),
            ModelFormat::Lightgbm { path, model_class, serialization_format } => {
                (path.clone(), model_class.clone(), false, serialization_format.clone())
            }
            other => {
                return Err(Error::UnsupportedFormat {
                    uri: mlflow.resolution.uri.clone(),
                    reason: format!("it is a {} model, not an XGBoost or LightGBM one", other.name()),
                });
            }
        };
        let bytes = std::fs::read(&path).map_err(|source| Error::Io { action: "read", path: path.clone(), source })?;
        let kind = if xgboost { "XGBoost model" } else { "LightGBM model" };
        let load = |e: ReadError| match e {
            ReadError::Unsupported(item)
            | ReadError::Pickle(
                mlscore_pickle::ReadError::Unsupported(item) | mlscore_pickle::ReadError::Refused(item),
            ) => Error::Unsupported { kind, path: path.clone(), items: vec![item] },
            e => Error::Load { kind, path: path.clone(), reason: e.to_string() },
        };
        let mut estimator = None;
        let trees = if xgboost {
            AnyBooster::Xgboost(xgboost::read(&bytes, &model_class).map_err(load)?)
        } else if model_class.rsplit('.').next() == Some("Booster") {
            let text = std::str::from_utf8(&bytes)
                .map_err(|_| load(ReadError::Invalid("it is not text: not a LightGBM model file".into())))?;
            AnyBooster::Lightgbm(lightgbm::read(text, None).map_err(load)?)
        } else {
            // A scikit-learn API class: a skops or pickle file.
            let stored =
                sklearn_api::read_lightgbm(&bytes, &model_class, serialization_format.as_deref()).map_err(load)?;
            let sklearn_api::Estimator { class, booster, classes } = stored.estimator;
            estimator = Some(Estimator { class, serialization: stored.serialization, classes });
            booster
        };
        let sha256 = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        let signature = mlflow.enforced_signature().cloned();
        Ok(Self { mlflow, trees, estimator, signature, sha256 })
    }

    /// The number of trees scored (for an early-stopped sklearn-API XGBoost model, those up
    /// to its best iteration).
    pub fn n_trees(&self) -> usize {
        self.trees.n_trees()
    }

    /// For a LightGBM scikit-learn API model (read from its skops or pickle file as data): its
    /// class and serialization, as `("LGBMClassifier", "skops")`.
    pub fn estimator(&self) -> Option<(&str, &str)> {
        self.estimator.as_ref().map(|e| (e.class.as_str(), e.serialization.as_str()))
    }

    /// A scikit-learn API classifier's labels.
    fn classes(&self) -> Option<&Labels> {
        self.estimator.as_ref().and_then(|e| e.classes.as_ref())
    }

    fn inputs(&self) -> &Inputs {
        self.trees.inputs()
    }

    /// Whether a category not seen in training is an error (XGBoost refuses it) or missing
    /// (LightGBM sends it right).
    fn unseen_is_error(&self) -> bool {
        matches!(self.trees, AnyBooster::Xgboost(_))
    }

    /// How each feature is fed: the column, and for categorical features the codes of their
    /// categories; a column whose type cannot feed its feature is an error naming both.
    fn feeds(&self, frame: &ArrowSchema, columns: &[BoundColumn], indices: Vec<usize>) -> Result<Vec<Feed>> {
        let Inputs { names, categories, .. } = self.inputs();
        indices
            .into_iter()
            .enumerate()
            .map(|(f, column)| {
                let name = columns.iter().find(|c| c.index == column).map_or_else(|| column.to_string(), |c| c.name.clone());
                let t = frame.field(column).data_type();
                let feature = names.get(f).map_or_else(|| format!("feature {f}"), |n| format!("feature '{n}'"));
                let cats = categories.get(f).and_then(Option::as_ref);
                let numeric_names = cats.is_some_and(|c| c.iter().all(|n| n.parse::<f64>().is_ok()));
                let fits = if is_string(t) { cats.is_some() } else { feedable(t) && (cats.is_none() || numeric_names) };
                if !fits {
                    let expected = match cats {
                        Some(c) if !numeric_names => {
                            format!("the categories of {feature} as strings ({})", preview(c))
                        }
                        _ => format!("a number or a boolean for {feature}"),
                    };
                    return Err(Error::IncompatibleType {
                        column: name,
                        found: numpy_name(t),
                        expected,
                        hint: (is_string(t) && cats.is_none()).then(|| {
                            "the model stores no category names for this feature: give its category codes as numbers".into()
                        }),
                    });
                }
                let codes =
                    cats.map(|c| Arc::new(c.iter().enumerate().map(|(i, n)| (n.clone(), i as f64)).collect()));
                Ok(Feed { column, name, codes })
            })
            .collect()
    }

    /// Matches the bound columns to the model's features: by name where the model names its
    /// features and every name is bound (XGBoost checks names; columns in another order are
    /// still read right), else by position (LightGBM's own rule).
    fn features(&self, columns: &[BoundColumn], warnings: &mut Vec<String>) -> Result<Vec<usize>> {
        let Inputs { n_features: n, names, .. } = self.inputs();
        let n = *n;
        let bound_name = |c: &BoundColumn| c.spec.as_ref().map_or(c.name.clone(), |(s, _)| s.clone());
        if !names.is_empty() {
            let by_name: Option<Vec<usize>> =
                names.iter().map(|f| columns.iter().find(|c| bound_name(c) == *f).map(|c| c.index)).collect();
            if let Some(indices) = by_name {
                return Ok(indices);
            }
            if matches!(self.trees, AnyBooster::Xgboost(_)) {
                let missing: Vec<String> =
                    names.iter().filter(|f| !columns.iter().any(|c| bound_name(c) == **f)).cloned().collect();
                let extra: Vec<String> = columns.iter().map(bound_name).filter(|c| !names.contains(c)).collect();
                return Err(Error::MissingColumns {
                    missing,
                    extra,
                    hint: "XGBoost reads features by name (its feature_names); give the table those columns".into(),
                });
            }
        }
        if columns.len() < n {
            return Err(Error::Binding(format!(
                "the model reads {n} features, and {} columns are given ({})",
                columns.len(),
                columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        for (f, c) in names.iter().zip(columns) {
            if *f != bound_name(c) {
                warnings.push(format!(
                    "column '{}' is read as the model's feature '{f}' (LightGBM reads features by position)",
                    c.name
                ));
                break;
            }
        }
        Ok(columns[..n].iter().map(|c| c.index).collect())
    }
}

/// The Arrow type a float type's outputs have.
trait Output: Real {
    type Arrow: ArrowPrimitiveType<Native = Self>;
    const ARROW: ArrowType;
}

impl Output for f32 {
    type Arrow = Float32Type;
    const ARROW: ArrowType = ArrowType::Float32;
}

impl Output for f64 {
    type Arrow = Float64Type;
    const ARROW: ArrowType = ArrowType::Float64;
}

fn list_item(elem: ArrowType) -> FieldRef {
    Arc::new(Field::new("item", elem, false))
}

/// `[N]` values for a width of 1, else `[N, width]` as a list column.
fn column<T: Output>(values: Vec<T>, width: usize) -> ArrayRef {
    let flat = PrimitiveArray::<T::Arrow>::from_iter_values(values);
    if width == 1 {
        return Arc::new(flat);
    }
    let rows = flat.len() / width.max(1);
    let offsets = OffsetBuffer::from_lengths(std::iter::repeat_n(width, rows));
    Arc::new(ListArray::new(list_item(T::ARROW), offsets, Arc::new(flat), None))
}

fn output_types<T: Output>(b: &Booster<T>, classes: Option<&Labels>) -> Vec<(String, ArrowType)> {
    let shaped = |width: usize| if width == 1 { T::ARROW } else { ArrowType::List(list_item(T::ARROW)) };
    let margin = ("margin".to_string(), shaped(b.groups));
    match b.pyfunc {
        Pyfunc::Prediction => vec![("prediction".into(), shaped(b.transform.width(b.groups))), margin],
        Pyfunc::Labels => {
            vec![
                ("label".into(), classes.map_or(ArrowType::Int64, Labels::arrow_type)),
                ("probabilities".into(), ArrowType::List(list_item(T::ARROW))),
                margin,
            ]
        }
    }
}

/// Reads the bound columns into row-major chunks and scores them with `model`'s trees.
fn score<T: Output>(
    model: &Model,
    b: &Booster<T>,
    feeds: &[Feed],
    frame: &[ArrayRef],
) -> Result<Vec<(String, ArrayRef)>> {
    let rows = frame.first().map_or(0, |a| a.len());
    // Float64 columns without nulls are read straight from their Arrow buffers; categorical
    // columns are re-coded once, other columns converted once (nulls as NaN).
    let owned: Vec<Option<Vec<f64>>> = feeds
        .iter()
        .map(|feed| {
            let col = &frame[feed.column];
            match (&feed.codes, col.data_type()) {
                (Some(c), _) => category_codes(col, feed, c, model.unseen_is_error()).map(Some),
                (None, ArrowType::Float64) if col.null_count() == 0 => Ok(None),
                (None, _) => as_f64(col).map(Some),
            }
        })
        .collect::<Result<_>>()?;
    let cols: Vec<&[f64]> = feeds
        .iter()
        .zip(&owned)
        .map(|(feed, owned)| match owned {
            Some(values) => values.as_slice(),
            None => frame[feed.column].as_primitive::<Float64Type>().values(),
        })
        .collect();
    let Scores { margins, values } = b
        .score_columns(&cols, rows)
        .map_err(|e| Error::Inference { model: model.uri().to_string(), reason: e.to_string() })?;
    let k = b.groups;
    let margin = ("margin".to_string(), column(margins, k));
    Ok(match b.pyfunc {
        Pyfunc::Prediction => vec![("prediction".into(), column(values, b.transform.width(k))), margin],
        Pyfunc::Labels => {
            let (labels, proba) = b.classify(&values);
            let labels: ArrayRef = match model.classes() {
                Some(classes) => classes.take(&labels).map_err(|i| Error::Inference {
                    model: model.uri().to_string(),
                    reason: format!(
                        "the booster gave class {i} and the model has {} classes: the model is damaged",
                        classes.len()
                    ),
                })?,
                None => Arc::new(Int64Array::from_iter_values(labels.into_iter().map(|l| l as i64))),
            };
            vec![("label".into(), labels), ("probabilities".into(), column(proba, if k == 1 { 2 } else { k })), margin]
        }
    })
}

/// A numeric or boolean column as float64 values, nulls as NaN (the binding allows nulls only
/// under the `nan` policy).
fn as_f64(a: &ArrayRef) -> Result<Vec<f64>> {
    mlscore_core::float64_values(a.as_ref())
        .ok_or_else(|| Error::Binding(format!("a {} column cannot feed a tree model", a.data_type())))
}

/// A categorical column (strings, or numbers where the categories are numbers) as the codes of
/// its values; nulls are NaN (missing), and so are unseen categories unless `unseen_is_error`.
fn category_codes(a: &ArrayRef, feed: &Feed, codes: &HashMap<String, f64>, unseen_is_error: bool) -> Result<Vec<f64>> {
    let text = arrow_cast::cast(a, &ArrowType::Utf8)
        .map_err(|e| Error::Binding(format!("column '{}' cannot be read as categories: {e}", feed.name)))?;
    let mut out = Vec::with_capacity(a.len());
    for v in text.as_string::<i32>().iter() {
        let Some(v) = v else {
            out.push(f64::NAN);
            continue;
        };
        // Numbers by their integer text where they are integers (arrow writes 3.0 as "3.0").
        let key = match v.parse::<f64>() {
            Ok(x) if !is_string(a.data_type()) && x.fract() == 0.0 && x.abs() < 1e15 => format!("{}", x as i64),
            _ => v.to_string(),
        };
        match codes.get(&key) {
            Some(c) => out.push(*c),
            None if unseen_is_error => {
                let mut known: Vec<(&String, &f64)> = codes.iter().collect();
                known.sort_by(|x, y| x.1.total_cmp(y.1));
                let known: Vec<String> = known.into_iter().map(|(k, _)| k.clone()).collect();
                return Err(Error::InvalidValues {
                    column: feed.name.clone(),
                    reason: format!(
                        "category '{v}' was not seen in training (the model's categories: {}); XGBoost refuses it too",
                        preview(&known)
                    ),
                });
            }
            None => out.push(f64::NAN),
        }
    }
    Ok(out)
}

fn is_string(t: &ArrowType) -> bool {
    match t {
        ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View => true,
        ArrowType::Dictionary(_, v) => is_string(v),
        _ => false,
    }
}

/// The first few names of a list, for messages.
fn preview(names: &[String]) -> String {
    let mut s: Vec<String> = names.iter().take(8).map(|n| format!("'{n}'")).collect();
    if names.len() > 8 {
        s.push(format!("... {} in all", names.len()));
    }
    s.join(", ")
}

fn feedable(t: &ArrowType) -> bool {
    (t.is_numeric() && !matches!(t, ArrowType::Float16 | ArrowType::Decimal128(..) | ArrowType::Decimal256(..)))
        || matches!(t, ArrowType::Boolean | ArrowType::Null)
}

impl Scorer for Model {
    fn mlflow(&self) -> &MlflowModel {
        &self.mlflow
    }

    fn format(&self) -> &str {
        self.trees.library()
    }

    fn artifact_sha256(&self) -> &str {
        &self.sha256
    }

    fn signature(&self) -> Option<&Signature> {
        self.signature.as_ref()
    }

    fn output_types(&self) -> Vec<(String, ArrowType)> {
        match &self.trees {
            AnyBooster::Xgboost(b) => output_types(b, None),
            AnyBooster::Lightgbm(b) => output_types(b, self.classes()),
        }
    }

    fn pyfunc_outputs(&self) -> usize {
        1
    }

    fn bind(&self, frame: &ArrowSchema) -> Result<Binding> {
        let mut columns = signature_columns(self.signature.as_ref(), frame)?;
        for c in &mut columns {
            // Nulls are missing values, for categories too.
            c.nan_ok = true;
        }
        let mut warnings = Vec::new();
        let indices = self.features(&columns, &mut warnings)?;
        let feeds = self.feeds(frame, &columns, indices)?;
        Ok(Binding { columns, warnings, plan: Arc::new(Features(feeds)) })
    }

    fn score(&self, binding: &Binding, frame: &[ArrayRef]) -> Result<Vec<(String, ArrayRef)>> {
        let Features(feeds) = binding
            .plan::<Features>()
            .ok_or_else(|| Error::Binding("the binding was made by another model's scorer".into()))?;
        match &self.trees {
            AnyBooster::Xgboost(b) => score(self, b, feeds, frame),
            AnyBooster::Lightgbm(b) => score(self, b, feeds, frame),
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
