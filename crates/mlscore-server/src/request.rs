//! Request bodies into a record batch: MLflow's JSON payloads (`dataframe_split`,
//! `dataframe_records`, `inputs`, `instances`) and CSV, with the values cast to the model
//! signature's column types as MLflow casts them (`"0.1"` into a double column is 0.1).

use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, Float32Array, Float64Array, Int32Array, Int64Array, RecordBatch, RecordBatchReader,
    StringArray,
};
use arrow_schema::{Field, Schema as ArrowSchema};
use mlscore_core::Scorer;
use mlscore_mlflow::{ColType, DataType, Schema};
use serde_json::{Map, Value};

use crate::response::ApiError;

/// What the body is, by its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body {
    Json,
    Csv,
    Parquet,
}

const FORMATS: &str = "{'dataframe_split', 'dataframe_records', 'instances', 'inputs'}";

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(msg.into())
}

/// Columns by name, in order, each a list of JSON values.
type Columns = Vec<(String, Vec<Value>)>;

/// The body as a record batch, and whether it came as tensors (`inputs` / `instances`), which
/// MLflow answers column-wise rather than as records.
pub(crate) fn parse(kind: Body, body: &[u8], model: &dyn Scorer) -> Result<(RecordBatch, bool), ApiError> {
    let (columns, tensor) = match kind {
        Body::Json => {
            let text = json_text(body)?;
            // The common split frame straight into columns; anything else the general way.
            if let Some(cells) = crate::split::read(&text) {
                let columns =
                    cells.into_iter().map(|(n, c)| (n, c.into_iter().map(crate::split::Cell::into_value).collect()));
                return Ok((batch(columns, model)?, false));
            }
            json_columns(&text, model)?
        }
        Body::Csv => (csv_columns(body)?, false),
        Body::Parquet => return Ok((parquet_batch(body)?, false)),
    };
    Ok((batch(columns, model)?, tensor))
}

/// A Parquet file as the body: its columns as they are (MLflow reads them with pandas, without
/// casting).
fn parquet_batch(body: &[u8]) -> Result<RecordBatch, ApiError> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let fail =
        |e: String| bad(format!("Failed to parse input as a Pandas DataFrame: the Parquet body cannot be read: {e}"));
    // Footer and page headers first: a few bytes of hostile Thrift would hold a scoring thread
    // for hours inside the parquet crate (see mlscore_core::check_parquet_file).
    mlscore_core::check_parquet_file(body).map_err(fail)?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(axum::body::Bytes::copy_from_slice(body))
        .and_then(|b| b.build())
        .map_err(|e| fail(e.to_string()))?;
    let schema = reader.schema();
    let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().map_err(|e| fail(e.to_string()))?;
    arrow_select_concat(&schema, &batches).map_err(fail)
}

fn arrow_select_concat(schema: &arrow_schema::SchemaRef, batches: &[RecordBatch]) -> Result<RecordBatch, String> {
    match batches {
        [one] => Ok(one.clone()),
        _ => arrow_select::concat::concat_batches(schema, batches).map_err(|e| e.to_string()),
    }
}

/// Azure ML's online-endpoint body, `{"input_data": ..., "params": ...}`: a split frame
/// (`columns`, `index`, `data`), a dictionary of named columns, or a 2-D list.
pub(crate) fn parse_azureml(body: &[u8], model: &dyn Scorer) -> Result<RecordBatch, ApiError> {
    let value: Value = serde_json::from_str(&json_text(body)?)
        .map_err(|e| bad(format!("Invalid input. The body is not JSON: {e}")))?;
    let Some(data) = (match value {
        Value::Object(mut o) => o.remove("input_data"),
        _ => None,
    }) else {
        return Err(bad("A value is not provided for the 'input_data' parameter."));
    };
    let columns = match data {
        Value::Object(o) if o.contains_key("data") => split_columns(o)?,
        other => tensor_columns(other, model)?,
    };
    batch(columns, model)
}

/// A JSON body as text, with Python's bare tokens read as values ([`python_json`]).
fn json_text(body: &[u8]) -> Result<std::borrow::Cow<'_, str>, ApiError> {
    let text = std::str::from_utf8(body).map_err(|_| bad("Invalid input. The request body is not UTF-8"))?;
    Ok(python_json(text))
}

fn json_columns(text: &str, model: &dyn Scorer) -> Result<(Columns, bool), ApiError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| bad(format!("Invalid input. Ensure that input is a valid JSON formatted string. Error: '{e}'")))?;
    let Value::Object(mut obj) = value else {
        let got = if value.is_array() { "a list" } else { "not a dictionary" };
        return Err(bad(format!(
            "Invalid input. The input must be a JSON dictionary with exactly one of the input fields {FORMATS}. Received {got}."
        )));
    };
    let keys: Vec<&str> = ["dataframe_split", "dataframe_records", "instances", "inputs"]
        .into_iter()
        .filter(|k| obj.contains_key(*k))
        .collect();
    let [key] = keys[..] else {
        return Err(bad(format!(
            "Invalid input. The input must be a JSON dictionary with exactly one of the input fields {FORMATS}. \
             Received dictionary with input fields: {:?}. IMPORTANT: The MLflow Model scoring protocol has changed \
             in MLflow version 2.0.",
            obj.keys().collect::<Vec<_>>()
        )));
    };
    let data = obj.remove(key).unwrap_or(Value::Null);
    match key {
        "dataframe_split" => {
            let Value::Object(split) = data else {
                return Err(bad(format!("Dataframe split format must be a dictionary. Got {}.", kind_of(&data))));
            };
            if split.keys().any(|k| !["data", "columns", "index"].contains(&k.as_str())) || !split.contains_key("data")
            {
                return Err(bad(format!(
                    "Dataframe split format must have 'data' field and optionally 'columns' and 'index' fields. Got {:?}.",
                    split.keys().collect::<Vec<_>>()
                )));
            }
            Ok((split_columns(split)?, false))
        }
        "dataframe_records" => {
            let Value::Array(records) = data else {
                return Err(bad(format!(
                    "Dataframe records format must be a list of records. Got {}.",
                    kind_of(&data)
                )));
            };
            Ok((records_columns(records)?, false))
        }
        _ => Ok((tensor_columns(data, model)?, true)),
    }
}

/// JSON as Python's `json` module reads and writes it: the bare tokens `NaN`, `Infinity` and
/// `-Infinity` (what `json.dumps` writes for such floats, so what MLflow's own client sends for a
/// pandas frame holding NaN) are values. `NaN` becomes `null` (pandas' missing value, as NaN is
/// for MLflow's server) and the infinities the strings `"Infinity"` and `"-Infinity"`, which a
/// number column reads as infinities. Text without those tokens is returned as it is.
fn python_json(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("NaN") && !text.contains("Infinity") {
        return text.into();
    }
    // Bytes, not chars: the quotes, backslashes and tokens are ASCII, which never occurs inside
    // a multi-byte UTF-8 sequence; runs between replacements are copied whole.
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 16);
    let (mut in_string, mut escaped, mut copied, mut i) = (false, false, 0, 0);
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if matches!(b, b'N' | b'I' | b'-') {
            let rest = &text[i..];
            let token = [("NaN", "null"), ("-Infinity", "\"-Infinity\""), ("Infinity", "\"Infinity\"")]
                .into_iter()
                .find(|(t, _)| rest.starts_with(t));
            if let Some((t, value)) = token {
                out.push_str(&text[copied..i]);
                out.push_str(value);
                i += t.len();
                copied = i;
                continue;
            }
        }
        i += 1;
    }
    out.push_str(&text[copied..]);
    out.into()
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Object(_) => "dictionary",
        Value::Array(_) => "list",
        Value::String(_) => "str",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Null => "None",
    }
}

pub(crate) fn name_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A pandas split frame (`data`, with `columns` or columns named by position; `index` unused).
pub(crate) fn split_columns(mut split: Map<String, Value>) -> Result<Columns, ApiError> {
    let rows = rows_of(split.remove("data").unwrap_or(Value::Null))?;
    let names: Vec<String> = match split.get("columns") {
        Some(Value::Array(c)) => c.iter().map(name_of).collect(),
        _ => (0..rows.first().map_or(0, Vec::len)).map(|i| i.to_string()).collect(),
    };
    transpose(names, rows)
}

/// The rows of a split frame's `data`, moved out of it (a scalar row is a row of one value).
fn rows_of(data: Value) -> Result<Vec<Vec<Value>>, ApiError> {
    let Value::Array(rows) = data else { return Err(bad("Dataframe split 'data' must be a list of rows")) };
    Ok(rows
        .into_iter()
        .map(|r| match r {
            Value::Array(v) => v,
            scalar => vec![scalar],
        })
        .collect())
}

fn transpose(names: Vec<String>, rows: Vec<Vec<Value>>) -> Result<Columns, ApiError> {
    let width = names.len();
    let mut cols: Vec<Vec<Value>> = vec![Vec::with_capacity(rows.len()); width];
    for (i, r) in rows.into_iter().enumerate() {
        if r.len() != width {
            return Err(bad(format!("row {i} has {} values for {width} columns", r.len())));
        }
        for (c, v) in cols.iter_mut().zip(r) {
            c.push(v);
        }
    }
    Ok(names.into_iter().zip(cols).collect())
}

/// A list of records as columns, named in order of first appearance; a record without a column
/// has null there. The values are moved out of the records.
fn records_columns(records: Vec<Value>) -> Result<Columns, ApiError> {
    let mut names: Vec<String> = Vec::new();
    let mut objects = Vec::with_capacity(records.len());
    for r in records {
        let Value::Object(o) = r else {
            return Err(bad("Dataframe records format must be a list of records (objects)"));
        };
        for k in o.keys() {
            if !names.contains(k) {
                names.push(k.clone());
            }
        }
        objects.push(o);
    }
    let mut cols: Vec<Vec<Value>> = vec![Vec::with_capacity(objects.len()); names.len()];
    for mut o in objects {
        for (n, c) in names.iter().zip(&mut cols) {
            c.push(o.remove(n).unwrap_or(Value::Null));
        }
    }
    Ok(names.into_iter().zip(cols).collect())
}

/// `inputs` / `instances`: a dictionary of columns, a list of records, a 2-D list (columns by
/// position) or a list of values (the model's one column).
fn tensor_columns(data: Value, model: &dyn Scorer) -> Result<Columns, ApiError> {
    match data {
        Value::Object(map) => Ok(dict_columns(map)),
        Value::Array(items) if items.iter().all(Value::is_object) && !items.is_empty() => records_columns(items),
        Value::Array(items) if items.iter().all(Value::is_array) => {
            let width = items.first().and_then(Value::as_array).map_or(0, Vec::len);
            let rows = items.into_iter().map(|r| if let Value::Array(v) = r { v } else { Vec::new() }).collect();
            transpose((0..width).map(|i| i.to_string()).collect(), rows)
        }
        Value::Array(items) => {
            let names = model.input_names();
            let name = if names.len() == 1 { names[0].clone() } else { "0".to_string() };
            Ok(vec![(name, items)])
        }
        other => Err(bad(format!("Invalid input. 'inputs' must be a list or a dictionary, got {}", kind_of(&other)))),
    }
}

fn dict_columns(map: Map<String, Value>) -> Columns {
    map.into_iter()
        .map(|(k, v)| match v {
            Value::Array(items) => (k, items),
            scalar => (k, vec![scalar]),
        })
        .collect()
}

/// A CSV body with a header row: every cell as text, cast to the signature's types later.
fn csv_columns(body: &[u8]) -> Result<Columns, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| bad("Failed to parse input as a Pandas DataFrame: the body is not UTF-8"))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header =
        lines.next().ok_or_else(|| bad("Failed to parse input as a Pandas DataFrame: the CSV body is empty"))?;
    let names: Vec<String> = split_csv(header).into_iter().map(|s| s.unwrap_or_default()).collect();
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate() {
        let cells = split_csv(line);
        if cells.len() != names.len() {
            return Err(bad(format!(
                "Failed to parse input as a Pandas DataFrame: line {} has {} fields, the header {}",
                i + 2,
                cells.len(),
                names.len()
            )));
        }
        rows.push(cells.into_iter().map(|c| c.map_or(Value::Null, Value::String)).collect());
    }
    transpose(names, rows)
}

/// One CSV line's fields (RFC 4180 quoting); an empty unquoted field is missing.
fn split_csv(line: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut was_quoted) = (false, false);
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if cur.is_empty() => {
                quoted = true;
                was_quoted = true;
            }
            (',', false) => {
                out.push(if cur.is_empty() && !was_quoted { None } else { Some(std::mem::take(&mut cur)) });
                was_quoted = false;
            }
            (c, _) => cur.push(c),
        }
    }
    out.push(if cur.is_empty() && !was_quoted { None } else { Some(cur) });
    out
}

/// The signature's type for a column, if it names it.
fn signature_type(model: &dyn Scorer, name: &str) -> Option<DataType> {
    let Some(Schema::Columns(cols)) = model.signature().and_then(|s| s.inputs.as_ref()) else { return None };
    cols.iter().find(|c| c.name.as_deref() == Some(name)).and_then(|c| match &c.ty {
        ColType::Primitive(t) => Some(*t),
        _ => None,
    })
}

/// The columns as a record batch, each cast to its signature type (else to the type its values
/// suggest). Columns are taken one at a time, so that a lazy iterator holds only one column of
/// JSON values at once.
fn batch(columns: impl IntoIterator<Item = (String, Vec<Value>)>, model: &dyn Scorer) -> Result<RecordBatch, ApiError> {
    let mut columns = columns.into_iter().peekable();
    let rows = columns.peek().map_or(0, |c| c.1.len());
    if rows == 0 {
        return Err(bad("Invalid input. The request has no rows"));
    }
    let (mut fields, mut arrays) = (Vec::new(), Vec::<ArrayRef>::new());
    for (name, values) in columns {
        if values.len() != rows {
            return Err(bad(format!("column '{name}' has {} values and the others {rows}", values.len())));
        }
        let ty = signature_type(model, &name).unwrap_or_else(|| infer(&values));
        let array = cast(&name, &values, ty)?;
        fields.push(Field::new(&name, array.data_type().clone(), true));
        arrays.push(array);
    }
    RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), arrays).map_err(|e| bad(format!("Invalid input. {e}")))
}

/// A column's type from its values, without a signature: integers, numbers, booleans, else text.
fn infer(values: &[Value]) -> DataType {
    let present = values.iter().filter(|v| !v.is_null());
    let mut any = false;
    let (mut ints, mut nums, mut bools) = (true, true, true);
    for v in present {
        any = true;
        ints &= v.is_i64() || v.is_u64();
        nums &= v.is_number();
        bools &= v.is_boolean();
    }
    match (any, ints, nums, bools) {
        (false, ..) => DataType::Double,
        (_, true, ..) => DataType::Long,
        (_, _, true, _) => DataType::Double,
        (_, _, _, true) => DataType::Boolean,
        _ => DataType::String,
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.trim() {
            "NaN" | "nan" => Some(f64::NAN),
            t => t.parse().ok(),
        },
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

/// Values cast to an MLflow type, as pandas' `astype` would: a value that cannot be is a 400
/// naming the column.
fn cast(name: &str, values: &[Value], ty: DataType) -> Result<ArrayRef, ApiError> {
    let fail = |numpy: &str, v: &Value| {
        bad(format!(
            "Invalid input. Data is not compatible with model signature. Failed to convert column {name} to type '{numpy}': {v}"
        ))
    };
    Ok(match ty {
        DataType::Double | DataType::Float => {
            let v: Vec<Option<f64>> = values
                .iter()
                .map(|v| if v.is_null() { Ok(None) } else { number(v).map(Some).ok_or_else(|| fail("float64", v)) })
                .collect::<Result<_, _>>()?;
            if ty == DataType::Float {
                Arc::new(Float32Array::from_iter(v.into_iter().map(|x| x.map(|x| x as f32))))
            } else {
                Arc::new(Float64Array::from(v))
            }
        }
        DataType::Long | DataType::Integer => {
            let v: Vec<Option<i64>> = values
                .iter()
                .map(|v| {
                    if v.is_null() {
                        return Ok(None);
                    }
                    match (v.as_i64(), number(v)) {
                        (Some(i), _) => Ok(Some(i)),
                        (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(Some(f as i64)),
                        _ => Err(fail("int64", v)),
                    }
                })
                .collect::<Result<_, _>>()?;
            if ty == DataType::Integer {
                let narrowed: Vec<Option<i32>> = v
                    .iter()
                    .zip(values)
                    .map(|(x, raw)| x.map(|x| i32::try_from(x).map_err(|_| fail("int32", raw))).transpose())
                    .collect::<Result<_, _>>()?;
                Arc::new(Int32Array::from(narrowed))
            } else {
                Arc::new(Int64Array::from(v))
            }
        }
        DataType::Boolean => {
            let v: Vec<Option<bool>> = values
                .iter()
                .map(|v| match v {
                    Value::Null => Ok(None),
                    Value::Bool(b) => Ok(Some(*b)),
                    Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
                    Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
                    other => number(other).map(|n| Some(n != 0.0)).ok_or_else(|| fail("bool", other)),
                })
                .collect::<Result<_, _>>()?;
            Arc::new(BooleanArray::from(v))
        }
        _ => Arc::new(StringArray::from_iter(values.iter().map(|v| match v {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_with_quotes_and_missing_values() {
        assert_eq!(
            split_csv(r#"1,"a,b",,"say ""hi""",x"#),
            vec![Some("1".into()), Some("a,b".into()), None, Some("say \"hi\"".into()), Some("x".into())]
        );
    }

    #[test]
    fn python_json_reads_nan_and_infinities_outside_strings() {
        let body = r#"{"data": [[NaN, -Infinity, Infinity, "NaN \" Infinity", 1.5]]}"#;
        let v: Value = serde_json::from_str(&python_json(body)).unwrap();
        assert_eq!(v["data"][0], serde_json::json!([null, "-Infinity", "Infinity", "NaN \" Infinity", 1.5]));
        assert_eq!(number(&v["data"][0][1]), Some(f64::NEG_INFINITY));
        assert_eq!(number(&v["data"][0][2]), Some(f64::INFINITY));
        assert!(matches!(python_json(r#"{"a": 1}"#), std::borrow::Cow::Borrowed(_)));
        // Not JSON either way: still refused by the parser.
        assert!(serde_json::from_str::<Value>(&python_json("[NaNa]")).is_err());
    }

    #[test]
    fn inferred_types() {
        assert_eq!(infer(&[Value::from(1), Value::Null]), DataType::Long);
        assert_eq!(infer(&[Value::from(1), Value::from(1.5)]), DataType::Double);
        assert_eq!(infer(&[Value::from(true)]), DataType::Boolean);
        assert_eq!(infer(&[Value::from("a"), Value::from(1)]), DataType::String);
    }
}
