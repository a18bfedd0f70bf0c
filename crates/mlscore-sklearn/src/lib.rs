//! scikit-learn models logged with `mlflow.sklearn`, scored without Python: their pickle,
//! cloudpickle or skops files are read as data (a pickle is interpreted opcode by opcode into
//! an inert object graph and never executed), the estimators in them are read into mlscore's
//! kernels, and predictions follow scikit-learn's own arithmetic, so that they are those of
//! `mlflow.pyfunc.load_model(uri).predict(df)`.
//!
//! A pickle that names anything outside scikit-learn and numpy (`os.system`, a cloudpickled
//! function, a user's own class) is refused at the opcode that names it, before anything else is
//! read. An estimator mlscore does not know is refused by its class name.
//!
//! ```no_run
//! use mlscore_core::Scorer;
//! use mlscore_mlflow::MlflowModel;
//! let model = mlscore_sklearn::Model::from_mlflow(MlflowModel::load("models:/churn/3")?)?;
//! // `label` (what pyfunc's predict returns), then `probabilities`.
//! println!("{:?}", model.output_types());
//! # Ok::<(), mlscore_core::Error>(())
//! ```
#![warn(missing_docs)]

mod calibration;
mod ensemble;
mod error;
mod estimator;
mod neighbors;
mod numpy;
mod preprocess;
mod select;
mod svm;

use std::any::Any;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, ArrayRef, Float64Array, Int32Array, ListArray};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType as ArrowType, Field, FieldRef, Schema as ArrowSchema};
use mlscore_core::bind::signature_columns;
use mlscore_core::enforce::numpy_name;
use mlscore_core::{Binding, Error, Result, Scorer};
use mlscore_mlflow::{MlflowModel, ModelFormat, Signature};
use sha2::{Digest, Sha256};

pub use crate::error::ReadError;
use crate::estimator::{Col, Frame, Nums, Predicted, Predictor, TextNulls};

/// What a chunk of rows may hold in its widest form (input columns, a step's outputs, a network's
/// layer), so that it stays in a core's L2 cache while the steps pass over it.
const CHUNK_BYTES: usize = 1 << 20;

/// Rows transformed at a time: as many as [`CHUNK_BYTES`] allows for `widest` float64 values a
/// row, a power of two from 1,024 to 8,192. Long chunks matter for narrow models: each chunk
/// starts a new read of every input column, and a logistic pipeline over 28 columns scored
/// 11.6M rows/s in chunks of 1,024 rows and 22M in chunks of 4,096 (65,536-row batches, one
/// thread); an MLP's 64-wide layers lose 4% at 4,096 and 20% at 8,192.
fn chunk_rows(widest: usize) -> usize {
    let fit = CHUNK_BYTES / widest.max(1).saturating_mul(8);
    let pow2 = if fit == 0 { 1 } else { 1 << fit.ilog2() };
    pow2.clamp(1_024, 8_192)
}

/// What MLflow's pyfunc `predict` calls (the flavor's `predict_fn`, fixed at save time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PredictFn {
    Predict,
    PredictProba,
    PredictLogProba,
}

/// The major version of pandas a model's environment files pin (`pandas==X...` in
/// `requirements.txt`, or in `conda.yaml`'s pip list), if they pin one.
fn pinned_pandas(dir: &std::path::Path) -> Option<u32> {
    ["requirements.txt", "conda.yaml"].iter().find_map(|file| {
        let text = std::fs::read_to_string(dir.join(file)).ok()?;
        text.lines().find_map(|line| {
            let line = line.trim().trim_start_matches('-').trim();
            let rest = line.strip_prefix("pandas")?.trim_start().strip_prefix("==")?.trim_start_matches('=').trim();
            rest.split('.').next()?.parse().ok()
        })
    })
}

/// What pandas makes of a string column's nulls in the pyfunc this model was logged for, and
/// why: the pandas its environment files pin, or else, for files older than pandas 3
/// (scikit-learn before 1.8, released before it), pandas 1 or 2's `None`; NaN otherwise
/// (pandas 3, what MLflow installs today).
fn text_nulls(mlflow: &MlflowModel) -> (TextNulls, String) {
    if let Some(major) = pinned_pandas(&mlflow.dir) {
        let nulls = if major < 3 { TextNulls::None } else { TextNulls::Nan };
        return (nulls, format!("the model's environment pins pandas {major}"));
    }
    let version =
        mlflow.mlmodel.as_ref().and_then(|m| m.sklearn_flavor().ok().flatten()).and_then(|f| f.sklearn_version);
    match version {
        Some(v) if estimator::written_before_pandas_3(&v) => {
            (TextNulls::None, format!("written by scikit-learn {v}, before pandas 3"))
        }
        _ => (TextNulls::Nan, "pandas 3, as no older pandas is recorded".to_string()),
    }
}

/// A scikit-learn model, ready to score: shared by all threads, read once.
#[derive(Debug)]
pub struct Model {
    mlflow: MlflowModel,
    model: estimator::Model,
    predict_fn: PredictFn,
    signature: Option<Signature>,
    sha256: String,
    serialization: String,
    string_nulls: String,
}

/// Which frame columns feed the model, in the model's order: the plan of this format's [`Binding`].
#[derive(Debug, Clone, PartialEq)]
struct Columns(Vec<(usize, String)>);

impl Model {
    /// Reads an opened MLflow model whose format is scikit-learn.
    pub fn from_mlflow(mlflow: MlflowModel) -> Result<Self> {
        let ModelFormat::Sklearn { path, serialization_format } = &mlflow.format else {
            return Err(Error::UnsupportedFormat {
                uri: mlflow.resolution.uri.clone(),
                reason: format!("it is a {} model, not a scikit-learn one", mlflow.format.name()),
            });
        };
        let path = path.clone();
        let bytes = std::fs::read(&path).map_err(|source| Error::Io { action: "read", path: path.clone(), source })?;
        let kind = "scikit-learn model";
        let load = |e: ReadError| match e {
            ReadError::Unsupported(item) | ReadError::Refused(item) => {
                Error::Unsupported { kind, path: path.clone(), items: vec![item] }
            }
            e => Error::Load { kind, path: path.clone(), reason: e.to_string() },
        };
        let is_zip = mlscore_pickle::is_skops(&bytes);
        let graph = mlscore_pickle::read(&bytes).map_err(load)?;
        let mut model = estimator::build(&graph).map_err(load)?;
        let (nulls, why) = text_nulls(&mlflow);
        model.set_text_nulls(nulls);
        let string_nulls = match nulls {
            TextNulls::None => format!("None, not imputed as NaN ({why})"),
            TextNulls::Nan => format!("NaN ({why})"),
        };
        let predict_fn = match mlflow
            .mlmodel
            .as_ref()
            .map(|m| m.pyfunc_flavor())
            .transpose()?
            .flatten()
            .and_then(|p| p.predict_fn)
        {
            None => PredictFn::Predict,
            Some(f) => match f.as_str() {
                "predict" => PredictFn::Predict,
                "predict_proba" => PredictFn::PredictProba,
                "predict_log_proba" => PredictFn::PredictLogProba,
                other => {
                    return Err(load(ReadError::Unsupported(format!(
                        "pyfunc_predict_fn '{other}' (mlscore scores predict, predict_proba and predict_log_proba)"
                    ))));
                }
            },
        };
        if predict_fn != PredictFn::Predict && !model.predictor.has_proba() {
            return Err(load(ReadError::Unsupported(format!(
                "pyfunc_predict_fn '{}' on an estimator without probabilities",
                if predict_fn == PredictFn::PredictProba { "predict_proba" } else { "predict_log_proba" }
            ))));
        }
        let sha256 = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        let signature = mlflow.enforced_signature().cloned();
        let serialization = if is_zip { "skops".to_string() } else { serialization_format.clone() };
        Ok(Self { mlflow, model, predict_fn, signature, sha256, serialization, string_nulls })
    }

    /// What a null in a string column reaches the estimator as (Python's `None` with pandas 1
    /// and 2, NaN with pandas 3), and why: `"NaN (pandas 3, as no older pandas is recorded)"`.
    pub fn string_nulls(&self) -> &str {
        &self.string_nulls
    }

    /// How the file was serialized: `skops`, `pickle` or `cloudpickle`.
    pub fn serialization(&self) -> &str {
        &self.serialization
    }

    /// The estimator's class, or a pipeline's steps' classes, in order (`["StandardScaler",
    /// "LogisticRegression"]`).
    pub fn estimators(&self) -> &[String] {
        &self.model.chain
    }

    /// The input column names the estimator was fitted on, if it records them.
    pub fn feature_names(&self) -> Option<&[String]> {
        self.model.feature_names.as_deref()
    }

    fn label_type(&self) -> Option<ArrowType> {
        Some(self.model.predictor.classes()?.arrow_type())
    }
}

fn list_item() -> FieldRef {
    Arc::new(Field::new("item", ArrowType::Float64, false))
}

fn list_type() -> ArrowType {
    ArrowType::List(list_item())
}

fn column(values: Vec<f64>, width: usize) -> ArrayRef {
    let flat = Float64Array::from(values);
    if width == 1 {
        return Arc::new(flat);
    }
    let rows = flat.len() / width.max(1);
    Arc::new(ListArray::new(
        list_item(),
        OffsetBuffer::from_lengths(std::iter::repeat_n(width, rows)),
        Arc::new(flat),
        None,
    ))
}

/// An Arrow column as a step's column: numbers (nulls NaN), booleans as 0/1, strings as text.
fn to_col(a: &ArrayRef, name: &str) -> Result<Col> {
    // Float64 without nulls: the array's own values, shared until a step changes them.
    if let Some(p) = a.as_primitive_opt::<Float64Type>()
        && p.null_count() == 0
    {
        return Ok(Col::Num(Nums::Shared(p.values().clone())));
    }
    if let Some(v) = mlscore_core::float64_values(a.as_ref()) {
        return Ok(Col::Num(v.into()));
    }
    if is_text(a.data_type()) {
        let s = arrow_cast::cast(a, &ArrowType::Utf8).map_err(|e| Error::Binding(format!("column '{name}': {e}")))?;
        return Ok(Col::Text(s.as_string::<i32>().iter().map(|v| v.map(str::to_string)).collect()));
    }
    Err(Error::IncompatibleType {
        column: name.to_string(),
        found: numpy_name(a.data_type()),
        expected: "numbers, booleans or strings".into(),
        hint: None,
    })
}

fn is_text(t: &ArrowType) -> bool {
    match t {
        ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View => true,
        ArrowType::Dictionary(_, v) => is_text(v),
        _ => false,
    }
}

impl Scorer for Model {
    fn mlflow(&self) -> &MlflowModel {
        &self.mlflow
    }

    fn format(&self) -> &str {
        "sklearn"
    }

    fn artifact_sha256(&self) -> &str {
        &self.sha256
    }

    fn signature(&self) -> Option<&Signature> {
        self.signature.as_ref()
    }

    fn output_types(&self) -> Vec<(String, ArrowType)> {
        let p = &self.model.predictor;
        if let Predictor::KMeans { .. } = p {
            return vec![("label".into(), ArrowType::Int32)];
        }
        let Some(label) = self.label_type() else {
            let w = p.value_width();
            return vec![("prediction".into(), if w == 1 { ArrowType::Float64 } else { list_type() })];
        };
        let mut out = vec![("label".to_string(), label)];
        if p.has_proba() {
            out.push(("probabilities".into(), list_type()));
        }
        match self.predict_fn {
            PredictFn::Predict => {}
            PredictFn::PredictProba => out.swap(0, 1),
            PredictFn::PredictLogProba => {
                out.insert(0, ("log_probabilities".into(), list_type()));
            }
        }
        out
    }

    fn pyfunc_outputs(&self) -> usize {
        1
    }

    fn bind(&self, frame: &ArrowSchema) -> Result<Binding> {
        let mut columns = signature_columns(self.signature.as_ref(), frame)?;
        for c in &mut columns {
            c.nan_ok = true;
        }
        // Borrowed: a request binds anew, and cloning the name at each comparison (28 features:
        // ~400 strings) was a fifth of a 1-row request's CPU in `mlscore serve`.
        fn name_of(c: &mlscore_core::BoundColumn) -> &str {
            c.spec.as_ref().map_or(c.name.as_str(), |(s, _)| s.as_str())
        }
        // scikit-learn checks the names it was fitted on: read those columns, in that order.
        let chosen: Vec<(usize, String)> = match self.feature_names() {
            Some(names) => {
                let found: Option<Vec<(usize, String)>> = names
                    .iter()
                    .map(|n| columns.iter().find(|c| name_of(c) == n.as_str()).map(|c| (c.index, n.clone())))
                    .collect();
                match found {
                    Some(f) => f,
                    None => {
                        let missing: Vec<String> = names
                            .iter()
                            .filter(|n| !columns.iter().any(|c| name_of(c) == n.as_str()))
                            .cloned()
                            .collect();
                        let extra: Vec<String> = columns
                            .iter()
                            .map(name_of)
                            .filter(|c| !names.iter().any(|n| n == c))
                            .map(String::from)
                            .collect();
                        return Err(Error::MissingColumns {
                            missing,
                            extra,
                            hint: "the estimator reads the columns it was fitted on, by name (its feature_names_in_)"
                                .into(),
                        });
                    }
                }
            }
            None => columns.iter().map(|c| (c.index, name_of(c).to_string())).collect(),
        };
        for (i, name) in &chosen {
            let t = frame.field(*i).data_type();
            if !(t.is_numeric() || is_text(t) || matches!(t, ArrowType::Boolean | ArrowType::Null))
                || matches!(t, ArrowType::Float16 | ArrowType::Decimal128(..) | ArrowType::Decimal256(..))
            {
                return Err(Error::IncompatibleType {
                    column: name.clone(),
                    found: numpy_name(t),
                    expected: "numbers, booleans or strings".into(),
                    hint: None,
                });
            }
        }
        columns.retain(|c| chosen.iter().any(|(i, _)| *i == c.index));
        Ok(Binding { columns, warnings: Vec::new(), plan: Arc::new(Columns(chosen)) })
    }

    fn score(&self, binding: &Binding, frame: &[ArrayRef]) -> Result<Vec<(String, ArrayRef)>> {
        let Columns(chosen) = binding
            .plan::<Columns>()
            .ok_or_else(|| Error::Binding("the binding was made by another model's scorer".into()))?;
        let rows = frame.first().map_or(0, |a| a.len());
        let types = self.output_types();
        let fail = |e: estimator::ScoreError| Error::InvalidValues { column: e.column, reason: e.reason };
        let final_name = self.final_name();
        // Chunks' predictions are gathered as plain vectors and turned into Arrow arrays once.
        let mut all: Option<Predicted> = None;
        let widest_step = self.model.steps.iter().map(estimator::Transformer::widest).max().unwrap_or(0);
        let chunk = chunk_rows(chosen.len().max(self.model.predictor.widest()).max(widest_step));
        for start in (0..rows).step_by(chunk) {
            let n = chunk.min(rows - start);
            let mut f = Frame { names: Vec::new(), cols: Vec::new(), rows: n };
            for (i, name) in chosen {
                let a = frame.get(*i).ok_or_else(|| Error::Binding(format!("column {i} is not in the batch")))?;
                f.cols.push(to_col(&a.slice(start, n), name)?);
                f.names.push(name.clone());
            }
            for s in &self.model.steps {
                f = s.transform(f).map_err(fail)?;
            }
            let p = self.model.predictor.predict(&f, &final_name).map_err(fail)?;
            match (&mut all, p) {
                (None, mut p) => {
                    // Room for every chunk's rows: the vectors never grow by copying.
                    let more = rows - n;
                    match &mut p {
                        Predicted::Values { values, width } => values.reserve(more * *width),
                        Predicted::Clusters(c) => c.reserve(more),
                        Predicted::Classes { labels, proba, classes } => {
                            labels.reserve(more);
                            if let Some(p) = proba {
                                p.reserve(more * classes.len());
                            }
                        }
                    }
                    all = Some(p);
                }
                (Some(Predicted::Values { values, .. }), Predicted::Values { values: v, .. }) => values.extend(v),
                (Some(Predicted::Clusters(c)), Predicted::Clusters(v)) => c.extend(v),
                (Some(Predicted::Classes { labels, proba, .. }), Predicted::Classes { labels: l, proba: more, .. }) => {
                    labels.extend(l);
                    if let (Some(p), Some(more)) = (proba.as_mut(), more) {
                        p.extend(more);
                    }
                }
                _ => {
                    return Err(Error::ResultConversion(
                        "the estimator's chunks gave different kinds of output".into(),
                    ));
                }
            }
        }
        // Each output by name; placed in the order output_types gives them.
        let named: Vec<(&str, ArrayRef)> = match all {
            None => Vec::new(),
            Some(Predicted::Values { values, width }) => vec![("prediction", column(values, width))],
            Some(Predicted::Clusters(c)) => vec![("label", Arc::new(Int32Array::from(c)))],
            Some(Predicted::Classes { labels, proba, classes }) => {
                let k = classes.len();
                let taken = classes.take(&labels).map_err(|i| {
                    Error::ResultConversion(format!(
                        "the estimator gave class {i} and the model has {k} classes: the model is damaged"
                    ))
                })?;
                let mut v = vec![("label", taken)];
                if self.predict_fn == PredictFn::PredictLogProba {
                    let log: Vec<f64> = proba.iter().flatten().map(|x| x.ln()).collect();
                    v.push(("log_probabilities", column(log, k)));
                }
                if let Some(p) = proba {
                    v.push(("probabilities", column(p, k)));
                }
                v
            }
        };
        types
            .into_iter()
            .map(|(name, t)| {
                let col = match named.iter().find(|(n, _)| *n == name) {
                    Some((_, c)) => c.clone(),
                    None if rows == 0 => arrow_array::new_empty_array(&t),
                    None => return Err(Error::ResultConversion(format!("the model gave no output '{name}'"))),
                };
                Ok((name, col))
            })
            .collect()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Model {
    /// The final estimator's class, for errors.
    fn final_name(&self) -> String {
        match &self.model.predictor {
            Predictor::Linear { .. } => "the linear model".into(),
            Predictor::Trees(t) => t.nan_is_error.clone().unwrap_or_else(|| "the tree model".into()),
            Predictor::Mlp { .. } => "the MLP".into(),
            Predictor::KMeans { .. } => "KMeans".into(),
            Predictor::Boosted(e) => e.class.clone(),
            Predictor::Svm(_) => "the SVM".into(),
            Predictor::NaiveBayes(_) => "GaussianNB".into(),
            Predictor::Calibrated(_) => "CalibratedClassifierCV".into(),
            Predictor::Ensemble(_) => "the ensemble".into(),
            Predictor::Isolation { .. } => "IsolationForest".into(),
            Predictor::Neighbors(_) => "the nearest-neighbours model".into(),
            Predictor::TargetTransformed { .. } => "TransformedTargetRegressor".into(),
            Predictor::Constant { .. } => "the dummy estimator".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{chunk_rows, pinned_pandas};

    #[test]
    fn the_pandas_an_environment_pins_is_read_from_requirements_or_conda() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(pinned_pandas(dir.path()), None);
        std::fs::write(dir.path().join("conda.yaml"), "dependencies:\n- pip:\n  - mlflow==2.9.2\n  - pandas==1.5.3\n")
            .unwrap();
        assert_eq!(pinned_pandas(dir.path()), Some(1));
        // requirements.txt first; a range or another package named pandas-something pins nothing.
        std::fs::write(dir.path().join("requirements.txt"), "pandas-stubs==2.0\npandas>=2\nnumpy==2.4.6\n").unwrap();
        assert_eq!(pinned_pandas(dir.path()), Some(1));
        std::fs::write(dir.path().join("requirements.txt"), "mlflow==3.17.2\n pandas == 3.1.1\n").unwrap();
        assert_eq!(pinned_pandas(dir.path()), Some(3));
    }

    #[test]
    fn chunks_hold_about_a_mebibyte_of_the_widest_rows() {
        assert_eq!(chunk_rows(28), 4_096);
        assert_eq!(chunk_rows(64), 2_048);
        assert_eq!(chunk_rows(0), 8_192);
        assert_eq!(chunk_rows(3), 8_192);
        assert_eq!(chunk_rows(500), 1_024);
        assert_eq!(chunk_rows(usize::MAX / 8), 1_024);
    }
}
