//! MLflow model signatures: input and output schemas and the params schema.
//!
//! In an `MLmodel` file a signature is a map of three JSON documents embedded as YAML strings:
//!
//! ```yaml
//! signature:
//!   inputs: '[{"type": "double", "name": "a", "required": true}]'
//!   outputs: '[{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]'
//!   params: null
//! ```
//!
//! Every form MLflow writes is decoded, including the array, object, map and `any` column
//! types, even where scoring later refuses them: refusing is the scorer's decision, with
//! a message that names the column, not the parser's.
//!
//! ```
//! use mlscore_mlflow::signature::{Schema, ColType, DataType};
//! let schema = Schema::from_json(
//!     "inputs",
//!     r#"[{"type": "long", "name": "age"}, {"type": "double", "name": "income", "required": false}]"#,
//! )?;
//! let cols = schema.columns().unwrap();
//! assert_eq!(cols[0].name.as_deref(), Some("age"));
//! assert_eq!(cols[0].ty, ColType::Primitive(DataType::Long));
//! assert!(cols[0].required && !cols[1].required);
//! # Ok::<(), mlscore_mlflow::Error>(())
//! ```

use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// MLflow's primitive column types (`mlflow.types.DataType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// `boolean` (numpy bool)
    Boolean,
    /// `integer` (int32)
    Integer,
    /// `long` (int64)
    Long,
    /// `float` (float32)
    Float,
    /// `double` (float64)
    Double,
    /// `string`
    String,
    /// `binary` (bytes; base64 in JSON)
    Binary,
    /// `datetime` (datetime64\[ns\])
    Datetime,
}

impl DataType {
    /// Parses MLflow's name for the type.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "boolean" => Self::Boolean,
            "integer" => Self::Integer,
            "long" => Self::Long,
            "float" => Self::Float,
            "double" => Self::Double,
            "string" => Self::String,
            "binary" => Self::Binary,
            "datetime" => Self::Datetime,
            _ => return None,
        })
    }

    /// MLflow's name for the type.
    pub fn name(self) -> &'static str {
        match self {
            Self::Boolean => "boolean",
            Self::Integer => "integer",
            Self::Long => "long",
            Self::Float => "float",
            Self::Double => "double",
            Self::String => "string",
            Self::Binary => "binary",
            Self::Datetime => "datetime",
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The type of a column in a column-based schema.
#[derive(Debug, Clone, PartialEq)]
pub enum ColType {
    /// A primitive type.
    Primitive(DataType),
    /// `{"type": "array", "items": ...}`
    Array(Box<ColType>),
    /// `{"type": "object", "properties": {...}}`
    Object(Vec<Property>),
    /// `{"type": "map", "values": ...}`; keys are always strings.
    Map(Box<ColType>),
    /// `{"type": "any"}`
    Any,
    /// `{"type": "sparkml_vector"}`
    SparkMlVector,
}

impl fmt::Display for ColType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Primitive(t) => write!(f, "{t}"),
            Self::Array(t) => write!(f, "array<{t}>"),
            Self::Object(props) => {
                f.write_str("object<")?;
                for (i, p) in props.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}: {}{}", p.name, p.ty, if p.required { "" } else { " (optional)" })?;
                }
                f.write_str(">")
            }
            Self::Map(t) => write!(f, "map<string, {t}>"),
            Self::Any => f.write_str("any"),
            Self::SparkMlVector => f.write_str("sparkml_vector"),
        }
    }
}

/// A property of an object column.
#[derive(Debug, Clone, PartialEq)]
pub struct Property {
    /// Property name.
    pub name: String,
    /// Property type.
    pub ty: ColType,
    /// Whether the property must be present.
    pub required: bool,
}

/// A column of a column-based schema (`ColSpec`).
#[derive(Debug, Clone, PartialEq)]
pub struct ColSpec {
    /// Column name; `None` in unnamed schemas, where columns are matched by position.
    pub name: Option<String>,
    /// Column type.
    pub ty: ColType,
    /// Whether the column must be present. A missing optional column is not filled in.
    pub required: bool,
}

/// A tensor of a tensor-based schema (`TensorSpec`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// Tensor name; `None` for a single unnamed tensor.
    pub name: Option<String>,
    /// numpy dtype name, e.g. `float32`, `int64`, `object`.
    pub dtype: String,
    /// Shape; `-1` is a variable dimension.
    pub shape: Vec<i64>,
}

/// An input or output schema: either columns or tensors, never both.
#[derive(Debug, Clone, PartialEq)]
pub enum Schema {
    /// A column-based schema.
    Columns(Vec<ColSpec>),
    /// A tensor-based schema.
    Tensors(Vec<TensorSpec>),
}

impl Schema {
    /// Decodes the JSON document MLflow stores for `part` ("inputs" or "outputs") and checks
    /// the rules `mlflow.types.Schema` enforces.
    pub fn from_json(part: &'static str, json: &str) -> Result<Self> {
        let bad = |reason: String| Error::InvalidSignature { part, reason };
        let value: Value = serde_json::from_str(json).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let Value::Array(items) = value else {
            return Err(bad("expected a JSON list of column or tensor specs".into()));
        };
        if items.is_empty() {
            return Err(bad("the schema is empty".into()));
        }
        let tensors = items.iter().filter(|v| v.get("type").and_then(Value::as_str) == Some("tensor")).count();
        let schema = if tensors == 0 {
            let cols = items
                .iter()
                .enumerate()
                .map(|(i, v)| parse_colspec(v).map_err(|e| bad(format!("column {i}: {e}"))))
                .collect::<Result<Vec<_>>>()?;
            Schema::Columns(cols)
        } else if tensors == items.len() {
            let ts = items
                .iter()
                .enumerate()
                .map(|(i, v)| parse_tensorspec(v).map_err(|e| bad(format!("tensor {i}: {e}"))))
                .collect::<Result<Vec<_>>>()?;
            Schema::Tensors(ts)
        } else {
            return Err(bad("column and tensor specs cannot be mixed in one schema".into()));
        };
        schema.validate().map_err(bad)?;
        Ok(schema)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let names: Vec<Option<&str>> = match self {
            Schema::Columns(c) => c.iter().map(|c| c.name.as_deref()).collect(),
            Schema::Tensors(t) => t.iter().map(|t| t.name.as_deref()).collect(),
        };
        let named = names.iter().filter(|n| n.is_some()).count();
        if named != 0 && named != names.len() {
            return Err("either all or none of the entries must have a name".into());
        }
        let mut seen = BTreeSet::new();
        for n in names.iter().flatten() {
            if !seen.insert(*n) {
                return Err(format!("the name '{n}' appears twice"));
            }
        }
        match self {
            Schema::Tensors(t) if named == 0 && t.len() > 1 => {
                Err("a schema may hold at most one unnamed tensor".into())
            }
            Schema::Columns(c) if named == 0 && c.iter().any(|c| !c.required) => {
                Err("an unnamed column schema cannot have optional columns".into())
            }
            _ => Ok(()),
        }
    }

    /// The column specs, if this is a column-based schema.
    pub fn columns(&self) -> Option<&[ColSpec]> {
        match self {
            Schema::Columns(c) => Some(c),
            Schema::Tensors(_) => None,
        }
    }

    /// The tensor specs, if this is a tensor-based schema.
    pub fn tensors(&self) -> Option<&[TensorSpec]> {
        match self {
            Schema::Tensors(t) => Some(t),
            Schema::Columns(_) => None,
        }
    }

    /// Whether the entries have names.
    pub fn is_named(&self) -> bool {
        match self {
            Schema::Columns(c) => c.first().is_some_and(|c| c.name.is_some()),
            Schema::Tensors(t) => t.first().is_some_and(|t| t.name.is_some()),
        }
    }

    /// The entries' names (empty for an unnamed schema).
    pub fn names(&self) -> Vec<&str> {
        match self {
            Schema::Columns(c) => c.iter().filter_map(|c| c.name.as_deref()).collect(),
            Schema::Tensors(t) => t.iter().filter_map(|t| t.name.as_deref()).collect(),
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        match self {
            Schema::Columns(c) => c.len(),
            Schema::Tensors(t) => t.len(),
        }
    }

    /// Whether the schema has no entries (never true for a decoded schema).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schema::Columns(cols) => {
                for (i, c) in cols.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    match &c.name {
                        Some(n) => write!(f, "{n}: {}", c.ty)?,
                        None => write!(f, "[{i}]: {}", c.ty)?,
                    }
                    if !c.required {
                        f.write_str(" (optional)")?;
                    }
                }
                Ok(())
            }
            Schema::Tensors(ts) => {
                for (i, t) in ts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    let shape: Vec<String> = t.shape.iter().map(i64::to_string).collect();
                    write!(
                        f,
                        "{}: tensor<{}>[{}]",
                        t.name.as_deref().unwrap_or("(unnamed)"),
                        t.dtype,
                        shape.join(", ")
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// One inference parameter (`ParamSpec`).
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    /// Parameter name.
    pub name: String,
    /// Parameter type (never `binary`).
    pub ty: DataType,
    /// Default value, as JSON.
    pub default: Value,
    /// `None` for a scalar, `Some([-1])` for a 1-D list.
    pub shape: Option<Vec<i64>>,
}

/// The params schema of a signature.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParamSchema {
    /// The parameters, in declaration order.
    pub params: Vec<ParamSpec>,
}

impl ParamSchema {
    /// Decodes the params JSON document.
    pub fn from_json(json: &str) -> Result<Self> {
        let bad = |reason: String| Error::InvalidSignature { part: "params", reason };
        let value: Value = serde_json::from_str(json).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let Value::Array(items) = value else {
            return Err(bad("expected a JSON list of param specs".into()));
        };
        let mut params = Vec::with_capacity(items.len());
        let mut seen = BTreeSet::new();
        for (i, item) in items.iter().enumerate() {
            let obj = item.as_object().ok_or_else(|| bad(format!("param {i} is not a JSON object")))?;
            let name = obj
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("param {i} has no name")))?
                .to_string();
            let ty_name = obj
                .get("type")
                .or_else(|| obj.get("dtype"))
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("param '{name}' has no type")))?;
            let ty = DataType::from_name(ty_name)
                .ok_or_else(|| bad(format!("param '{name}' has unknown type '{ty_name}'")))?;
            if ty == DataType::Binary {
                return Err(bad(format!("param '{name}': binary params are not allowed")));
            }
            let shape = match obj.get("shape") {
                None | Some(Value::Null) => None,
                Some(v) => Some(parse_shape(v).map_err(|e| bad(format!("param '{name}': {e}")))?),
            };
            if !seen.insert(name.clone()) {
                return Err(bad(format!("the param '{name}' appears twice")));
            }
            params.push(ParamSpec { name, ty, default: obj.get("default").cloned().unwrap_or(Value::Null), shape });
        }
        Ok(Self { params })
    }
}

/// A model signature: what the model takes and returns.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Signature {
    /// The input schema; `None` when the signature has none.
    pub inputs: Option<Schema>,
    /// The output schema; `None` when the signature has none.
    pub outputs: Option<Schema>,
    /// The params schema; `None` when the model takes no params.
    pub params: Option<ParamSchema>,
}

fn parse_colspec(v: &Value) -> std::result::Result<ColSpec, String> {
    let obj = v.as_object().ok_or("not a JSON object")?;
    let name = match obj.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => return Err(format!("name must be a string, found {other}")),
    };
    let ty = parse_coltype(obj).map_err(|e| match &name {
        Some(n) => format!("'{n}': {e}"),
        None => e,
    })?;
    Ok(ColSpec { name, ty, required: required_flag(obj)? })
}

/// `required` defaults to true; MLflow 2.x wrote `optional: true` instead.
fn required_flag(obj: &Map<String, Value>) -> std::result::Result<bool, String> {
    match (obj.get("required"), obj.get("optional")) {
        (Some(Value::Bool(r)), _) => Ok(*r),
        (Some(other), _) => Err(format!("'required' must be true or false, found {other}")),
        (None, Some(Value::Bool(o))) => Ok(!o),
        (None, _) => Ok(true),
    }
}

fn parse_coltype(obj: &Map<String, Value>) -> std::result::Result<ColType, String> {
    let ty = obj.get("type").and_then(Value::as_str).ok_or("missing 'type'")?;
    Ok(match ty {
        "array" => {
            let items = obj.get("items").and_then(Value::as_object).ok_or("array type without 'items'")?;
            ColType::Array(Box::new(parse_coltype(items)?))
        }
        "object" => {
            let props = obj.get("properties").and_then(Value::as_object).ok_or("object type without 'properties'")?;
            let mut out = Vec::with_capacity(props.len());
            for (name, p) in props {
                let p = p.as_object().ok_or_else(|| format!("property '{name}' is not a JSON object"))?;
                out.push(Property {
                    name: name.clone(),
                    ty: parse_coltype(p).map_err(|e| format!("property '{name}': {e}"))?,
                    required: required_flag(p)?,
                });
            }
            ColType::Object(out)
        }
        "map" => {
            let values = obj.get("values").and_then(Value::as_object).ok_or("map type without 'values'")?;
            ColType::Map(Box::new(parse_coltype(values)?))
        }
        "any" => ColType::Any,
        "sparkml_vector" => ColType::SparkMlVector,
        other => ColType::Primitive(DataType::from_name(other).ok_or_else(|| format!("unknown type '{other}'"))?),
    })
}

fn parse_tensorspec(v: &Value) -> std::result::Result<TensorSpec, String> {
    let obj = v.as_object().ok_or("not a JSON object")?;
    let name = obj.get("name").and_then(Value::as_str).map(str::to_string);
    let spec = obj.get("tensor-spec").and_then(Value::as_object).ok_or("tensor without 'tensor-spec'")?;
    let dtype = spec.get("dtype").and_then(Value::as_str).ok_or("tensor-spec without 'dtype'")?.to_string();
    let shape = parse_shape(spec.get("shape").ok_or("tensor-spec without 'shape'")?)?;
    Ok(TensorSpec { name, dtype, shape })
}

fn parse_shape(v: &Value) -> std::result::Result<Vec<i64>, String> {
    let dims = v.as_array().ok_or_else(|| format!("shape must be a list, found {v}"))?;
    dims.iter()
        .map(|d| match d.as_i64() {
            Some(d) if d == -1 || d >= 0 => Ok(d),
            _ => Err(format!("invalid dimension {d} in shape {v}")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_primitive_type_round_trips_its_name() {
        for t in ["boolean", "integer", "long", "float", "double", "string", "binary", "datetime"] {
            assert_eq!(DataType::from_name(t).unwrap().name(), t);
        }
        assert!(DataType::from_name("int").is_none());
    }

    #[test]
    fn nested_column_types_are_decoded() {
        let s = Schema::from_json(
            "inputs",
            r#"[{"type": "array", "items": {"type": "double"}, "name": "v"},
                {"type": "object", "name": "o", "properties": {"p": {"type": "string", "required": false},
                                                              "q": {"type": "array", "items": {"type": "long"}}}},
                {"type": "map", "values": {"type": "float"}, "name": "m"},
                {"type": "any", "name": "x"},
                {"type": "sparkml_vector", "name": "sv"}]"#,
        )
        .unwrap();
        let c = s.columns().unwrap();
        assert_eq!(c[0].ty, ColType::Array(Box::new(ColType::Primitive(DataType::Double))));
        let ColType::Object(props) = &c[1].ty else { panic!("object expected") };
        assert_eq!(props.len(), 2);
        assert!(!props[0].required);
        assert_eq!(props[1].ty, ColType::Array(Box::new(ColType::Primitive(DataType::Long))));
        assert_eq!(c[2].ty, ColType::Map(Box::new(ColType::Primitive(DataType::Float))));
        assert_eq!(c[3].ty, ColType::Any);
        assert_eq!(c[4].ty, ColType::SparkMlVector);
        assert_eq!(s.to_string().matches(':').count(), 7);
    }

    #[test]
    fn tensor_specs_keep_dtype_and_shape() {
        let s = Schema::from_json(
            "outputs",
            r#"[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 3]}, "name": "x"}]"#,
        )
        .unwrap();
        assert_eq!(
            s.tensors().unwrap()[0],
            TensorSpec { name: Some("x".into()), dtype: "float32".into(), shape: vec![-1, 3] }
        );
        let unnamed =
            Schema::from_json("outputs", r#"[{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]"#)
                .unwrap();
        assert!(!unnamed.is_named());
    }

    #[test]
    fn the_rules_of_mlflow_schema_are_enforced() {
        let cases = [
            ("[]", "empty"),
            (r#"[{"type": "double", "name": "a"}, {"type": "double"}]"#, "all or none"),
            (r#"[{"type": "double", "name": "a"}, {"type": "double", "name": "a"}]"#, "twice"),
            (r#"[{"type": "double", "required": false}]"#, "optional"),
            (
                r#"[{"type": "double", "name": "a"}, {"type": "tensor", "name": "b", "tensor-spec": {"dtype": "float32", "shape": [-1]}}]"#,
                "mixed",
            ),
            (
                r#"[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1]}}, {"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1]}}]"#,
                "one unnamed tensor",
            ),
            (r#"[{"type": "decimal", "name": "a"}]"#, "unknown type 'decimal'"),
            (r#"{"type": "double"}"#, "JSON list"),
            ("not json", "not valid JSON"),
        ];
        for (json, expected) in cases {
            let err = Schema::from_json("inputs", json).unwrap_err().to_string();
            assert!(err.contains(expected), "{json}: {err}");
        }
    }

    #[test]
    fn legacy_optional_flag_is_honoured() {
        let s = Schema::from_json("inputs", r#"[{"type": "double", "name": "a", "optional": true}]"#).unwrap();
        assert!(!s.columns().unwrap()[0].required);
    }

    #[test]
    fn params_are_decoded_with_defaults_and_shapes() {
        let p = ParamSchema::from_json(
            r#"[{"name": "t", "type": "float", "default": 0.5, "shape": null},
                {"name": "ids", "dtype": "long", "default": [1, 2], "shape": [-1]}]"#,
        )
        .unwrap();
        assert_eq!(p.params[0].ty, DataType::Float);
        assert_eq!(p.params[0].default, serde_json::json!(0.5));
        assert_eq!(p.params[1].shape, Some(vec![-1]));
        let err = ParamSchema::from_json(r#"[{"name": "b", "type": "binary", "default": null}]"#).unwrap_err();
        assert!(err.to_string().contains("binary params are not allowed"));
    }
}
