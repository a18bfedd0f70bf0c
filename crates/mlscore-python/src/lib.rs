//! `mlscore._native`: the Rust side of the `mlscore` Python package.
//!
//! One class, `Model`: an MLflow model resolved (any URI mlscore reads, downloaded into the
//! cache once) and compiled, scoring pyarrow record batches. Batches cross the boundary through
//! the Arrow PyCapsule interface, without copies, and the GIL is released while a batch scores.
//! Spark and the call styles of `spark_udf` live in the Python package (`python/mlscore`).

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use mlscore_core::{NullPolicy, ResultType, Scorer, positional_frame};
use mlscore_mlflow::StoreConfig;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3_arrow::{PyArray, PyRecordBatch};

pyo3::create_exception!(
    _native,
    MlscoreError,
    PyException,
    "A model that cannot be loaded or bound, or a batch that cannot be scored; the message names the model, column or URI at fault."
);

fn err(e: impl std::fmt::Display) -> PyErr {
    MlscoreError::new_err(e.to_string())
}

/// A compiled MLflow model.
#[pyclass(frozen, module = "mlscore._native")]
struct Model {
    inner: Arc<dyn Scorer>,
}

#[pymethods]
impl Model {
    /// Resolves `uri` (a path, `runs:/`, `models:/`, an object store URL) with MLflow's
    /// environment variables, downloads it into the cache if it is remote, and compiles it.
    #[new]
    #[pyo3(signature = (uri, cache_dir = None))]
    fn new(py: Python<'_>, uri: &str, cache_dir: Option<PathBuf>) -> PyResult<Self> {
        let mut config = StoreConfig::from_env();
        if let Some(dir) = cache_dir {
            config.cache_dir = dir;
        }
        let model = py.detach(|| mlscore_formats::load(uri, &config)).map_err(err)?;
        Ok(Self { inner: model })
    }

    /// The URI the model was loaded from.
    #[getter]
    fn uri(&self) -> String {
        self.inner.uri().to_string()
    }

    /// The local directory (or file) the model's files were read from.
    #[getter]
    fn local_path(&self) -> String {
        self.inner.mlflow().resolution.local_path.display().to_string()
    }

    /// The signature's input column names, in order (empty without a named signature).
    #[getter]
    fn input_names(&self) -> Vec<String> {
        self.inner.input_names()
    }

    /// The model's format (`onnx`, ...).
    #[getter]
    fn format(&self) -> String {
        self.inner.format().to_string()
    }

    /// SHA-256 of the model's artifact (the ONNX graph, for an ONNX model).
    #[getter]
    fn artifact_sha256(&self) -> String {
        self.inner.artifact_sha256().to_string()
    }

    /// The result type (a Spark DDL string) for a requested one: `None` infers it from the
    /// model's outputs, as `spark_udf` does; a requested type is checked against what
    /// `spark_udf` accepts.
    #[pyo3(signature = (requested = None))]
    fn result_type(&self, requested: Option<&str>) -> PyResult<String> {
        Ok(self.resolve_type(requested)?.to_string())
    }

    /// The type `mlflow.pyfunc.spark_udf` gives this model's predictions when called with
    /// `result_type=None`: from the signature's outputs, else `double`. Where MLflow's spark_udf
    /// cannot infer one and refuses the model (a `tensor<object>` of string labels, a tensor of
    /// rank 3), the type of the model's own outputs (`string` for string labels).
    fn spark_result_type(&self) -> PyResult<String> {
        let outputs = self.inner.signature().and_then(|s| s.outputs.as_ref());
        match ResultType::infer_from_signature(outputs) {
            Ok(t) => Ok(t.to_string()),
            Err(_) => self.result_type(None),
        }
    }

    /// Scores a record batch and returns one array of the result type.
    ///
    /// - `positional=False`: columns are matched to the signature by name (extra ones ignored);
    ///   a batch of a single struct column is read by its field names.
    /// - `positional=True`: columns are fed by position under the signature's names, as
    ///   `spark_udf`'s `udf("a", "b")`.
    ///
    /// `on_null` is `"error"`, `"null"` (a null prediction for such rows) or `"nan"` (MLflow's).
    #[pyo3(signature = (batch, result_type = None, on_null = "nan", positional = false))]
    fn predict(
        &self,
        py: Python<'_>,
        batch: PyRecordBatch,
        result_type: Option<&str>,
        on_null: &str,
        positional: bool,
    ) -> PyResult<Py<PyAny>> {
        let ty = self.resolve_type(result_type)?;
        let nulls: NullPolicy = on_null.parse().map_err(err)?;
        let batch = batch.into_inner();
        let model = &self.inner;
        let result = py.detach(|| -> Result<_, String> {
            let (schema, columns) = frame(model.as_ref(), &batch, positional)?;
            let binding = model.bind(&schema).map_err(|e| e.to_string())?;
            let prediction = model.predict(&binding, &columns, nulls).map_err(|e| e.to_string())?;
            model.convert(&ty, &prediction.outputs).map_err(|e| e.to_string())
        });
        let array = result.map_err(err)?;
        let field = Arc::new(Field::new("prediction", array.data_type().clone(), true));
        let out = PyArray::new(array, field);
        Ok(out.to_pyarrow(py)?.unbind())
    }
}

impl Model {
    fn resolve_type(&self, requested: Option<&str>) -> PyResult<ResultType> {
        match requested {
            Some(ddl) => ResultType::parse(ddl).map_err(err),
            None => self.inner.default_result_type().map_err(err),
        }
    }
}

/// The columns the model sees, named as it expects them.
fn frame(
    model: &dyn Scorer,
    batch: &RecordBatch,
    positional: bool,
) -> Result<(Schema, Vec<arrow::array::ArrayRef>), String> {
    let schema = batch.schema();
    if let [only] = batch.columns()
        && let DataType::Struct(fields) = only.data_type()
    {
        return Ok((Schema::new(fields.clone()), only.as_struct().columns().to_vec()));
    }
    if positional {
        let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let (frame, indices, _warnings) = positional_frame(model, &schema, &names).map_err(|e| e.to_string())?;
        let columns = indices.iter().map(|i| batch.column(*i).clone()).collect();
        return Ok((frame, columns));
    }
    Ok((schema.as_ref().clone(), batch.columns().to_vec()))
}

/// The version of the Rust engine.
#[pyfunction]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Model>()?;
    m.add("MlscoreError", m.py().get_type::<MlscoreError>())?;
    m.add_function(wrap_pyfunction!(version, m)?)?;
    Ok(())
}
