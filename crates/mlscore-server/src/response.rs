//! Predictions and errors as MLflow's scoring server writes them.

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType as ArrowType;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use mlscore_core::{Error, NullPolicy, Scorer, predict_batch};
use serde_json::{Map, Value, json};

/// An error answer: MLflow's `{"error_code", "message", "sqlstate", "error_class"}` body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The HTTP status (400 for bad input and for the model's failures, as MLflow).
    pub status: StatusCode,
    /// MLflow's error code (`BAD_REQUEST`, `INVALID_PARAMETER_VALUE`, `INTERNAL_ERROR`).
    pub error_code: &'static str,
    /// What is wrong.
    pub message: String,
    sqlstate: &'static str,
    error_class: &'static str,
}

impl ApiError {
    pub(crate) fn bad_request(message: String) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error_code: "BAD_REQUEST",
            message,
            sqlstate: "KAM00",
            error_class: "INVALID_PARAMETER_VALUE",
        }
    }

    pub(crate) fn internal(message: String) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error_code: "INTERNAL_ERROR",
            message,
            sqlstate: "XX000",
            error_class: "INTERNAL_ERROR",
        }
    }

    /// A scoring error, classed as MLflow classes it: a missing or mistyped input is a schema
    /// enforcement failure; the model failing on the values is a bad request.
    fn from_scoring(e: &Error) -> Self {
        let schema = |detail: String| Self {
            status: StatusCode::BAD_REQUEST,
            error_code: "INVALID_PARAMETER_VALUE",
            message: format!("Failed to enforce schema of data with the model's signature. Error: {detail}"),
            sqlstate: "KAM01",
            error_class: "SCHEMA_ENFORCEMENT_FAILED",
        };
        match e {
            // MLflow's wording, without the command line's hint.
            Error::MissingColumns { missing, extra, .. } => {
                let extra = if extra.is_empty() {
                    String::new()
                } else {
                    format!(". Note that there were extra inputs: {extra:?}")
                };
                schema(format!("Model is missing inputs {missing:?}{extra}"))
            }
            Error::IncompatibleType { .. } | Error::Binding(_) => schema(e.to_string()),
            _ => Self::bad_request(format!(
                "Encountered an unexpected error while evaluating the model. Verify that the serialized input \
                 Dataframe is compatible with the model for inference. Error: {e}"
            )),
        }
    }
}

impl ApiError {
    /// The answer Azure ML's inference server gives: `{"message": ...}`, 5xx marked with
    /// `x-ms-run-function-failed`.
    pub(crate) fn azureml(self) -> Response {
        let body = json!({ "message": self.message }).to_string();
        let mut r = (self.status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        if self.status.is_server_error() {
            r.headers_mut().insert("x-ms-run-function-failed", axum::http::HeaderValue::from_static("True"));
        }
        r
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error_code": self.error_code,
            "message": self.message,
            "sqlstate": self.sqlstate,
            "error_class": self.error_class,
        });
        (self.status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
    }
}

/// Scores the batch and writes `{"predictions": ...}`: what MLflow's pyfunc returns, as its
/// server writes it. One output: a list, one value a row. Several (an ONNX model's): one record
/// a row, or for tensor inputs (`inputs`, `instances`) one list an output.
pub(crate) fn predict(model: &dyn Scorer, batch: &RecordBatch, tensor_input: bool) -> Result<String, ApiError> {
    Ok(json!({ "predictions": predictions(model, batch, tensor_input)? }).to_string())
}

/// What pyfunc returns for the batch, as JSON (the `predictions` of MLflow's answer; Azure ML's
/// whole answer).
pub(crate) fn predictions(model: &dyn Scorer, batch: &RecordBatch, tensor_input: bool) -> Result<Value, ApiError> {
    let p = predict_batch(model, batch, NullPolicy::Nan).map_err(|e| ApiError::from_scoring(&e))?;
    let n = model.pyfunc_outputs().clamp(1, p.outputs.len().max(1));
    let outputs = &p.outputs[..n.min(p.outputs.len())];
    let rows = batch.num_rows();
    let predictions = match outputs {
        [(_, a)] => Value::Array((0..rows).map(|i| value(a.as_ref(), i)).collect()),
        many if tensor_input => Value::Object(
            many.iter()
                .map(|(name, a)| (name.clone(), Value::Array((0..rows).map(|i| value(a.as_ref(), i)).collect())))
                .collect(),
        ),
        many => Value::Array(
            (0..rows)
                .map(|i| Value::Object(many.iter().map(|(name, a)| (name.clone(), value(a.as_ref(), i))).collect()))
                .collect(),
        ),
    };
    Ok(predictions)
}

fn float(v: f64) -> Value {
    // JSON has no NaN: a NaN prediction is null (MLflow writes a bare NaN, which is not JSON).
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}

/// Row `i` of an output as JSON.
fn value(a: &dyn Array, i: usize) -> Value {
    if a.is_null(i) {
        return Value::Null;
    }
    macro_rules! int {
        ($t:ty) => {
            Value::from(a.as_primitive::<$t>().value(i))
        };
    }
    match a.data_type() {
        ArrowType::Boolean => Value::Bool(a.as_boolean().value(i)),
        ArrowType::Int8 => int!(Int8Type),
        ArrowType::Int16 => int!(Int16Type),
        ArrowType::Int32 => int!(Int32Type),
        ArrowType::Int64 => int!(Int64Type),
        ArrowType::UInt8 => int!(UInt8Type),
        ArrowType::UInt16 => int!(UInt16Type),
        ArrowType::UInt32 => int!(UInt32Type),
        ArrowType::UInt64 => int!(UInt64Type),
        ArrowType::Float32 => float(f64::from(a.as_primitive::<Float32Type>().value(i))),
        ArrowType::Float64 => float(a.as_primitive::<Float64Type>().value(i)),
        ArrowType::Utf8 => Value::String(a.as_string::<i32>().value(i).to_string()),
        ArrowType::LargeUtf8 => Value::String(a.as_string::<i64>().value(i).to_string()),
        ArrowType::List(_) => list(a.as_list::<i32>().value(i).as_ref()),
        ArrowType::LargeList(_) => list(a.as_list::<i64>().value(i).as_ref()),
        ArrowType::FixedSizeList(..) => list(a.as_fixed_size_list().value(i).as_ref()),
        ArrowType::Struct(_) => {
            let s = a.as_struct();
            Value::Object(
                s.column_names().iter().zip(s.columns()).map(|(n, c)| (n.to_string(), value(c.as_ref(), i))).collect(),
            )
        }
        ArrowType::Map(..) => {
            let m = a.as_map().value(i);
            let (keys, vals) = (m.column(0), m.column(1));
            let mut out = Map::new();
            for j in 0..m.len() {
                let k = match value(keys.as_ref(), j) {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                out.insert(k, value(vals.as_ref(), j));
            }
            Value::Object(out)
        }
        _ => match arrow_cast_fallback(a, i) {
            Some(s) => Value::String(s),
            None => Value::Null,
        },
    }
}

fn list(items: &dyn Array) -> Value {
    Value::Array((0..items.len()).map(|j| value(items, j)).collect())
}

/// Any other type, as Arrow displays it.
fn arrow_cast_fallback(a: &dyn Array, i: usize) -> Option<String> {
    let f = arrow_cast::display::ArrayFormatter::try_new(a, &Default::default()).ok()?;
    Some(f.value(i).to_string())
}
