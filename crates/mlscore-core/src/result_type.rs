//! `result_type`: the Spark type of the prediction column, as `mlflow.pyfunc.spark_udf` takes it.
//!
//! A result type is a Spark DDL string (`double`, `array<float>`,
//! `struct<label:bigint,probabilities:array<float>>`, or a bare field list `label long, p double`).
//! [`ResultType::convert`] turns a model's outputs into a column of that type with spark_udf's
//! rules: primitive types take the leftmost compatible output, `array<T>` gathers every
//! compatible value of a row, structs take outputs by field name.
//!
//! Where spark_udf fails on ONNX classifiers (outputs of different widths), mlscore does the
//! evident thing instead: each `[N, k]` output counts as `k` values of the row.
//!
//! ```
//! use mlscore_core::ResultType;
//! let t: ResultType = "struct<label: bigint, probabilities: array<float>>".parse()?;
//! assert_eq!(t.to_string(), "struct<label:bigint,probabilities:array<float>>");
//! assert!("date".parse::<ResultType>().is_err());
//! # Ok::<(), mlscore_core::Error>(())
//! ```

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, ListArray, StructArray, new_empty_array, new_null_array};
use arrow_buffer::OffsetBuffer;
use arrow_cast::cast::{CastOptions, cast_with_options};
use arrow_schema::{DataType as ArrowType, Field, Fields};
use mlscore_mlflow::{ColType, DataType as MlflowType, Schema};

use crate::error::{Error, Result};

/// A Spark SQL type usable as a spark_udf result type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultType {
    /// `int` / `integer`
    Int,
    /// `long` / `bigint`
    Long,
    /// `float` / `real`
    Float,
    /// `double`
    Double,
    /// `string`
    String,
    /// `boolean` / `bool`
    Boolean,
    /// `array<T>`
    Array(Box<ResultType>),
    /// `struct<name: T, ...>`
    Struct(Vec<(String, ResultType)>),
    /// `map<string, T>`
    Map(Box<ResultType>, Box<ResultType>),
}

impl fmt::Display for ResultType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Int => f.write_str("int"),
            Self::Long => f.write_str("bigint"),
            Self::Float => f.write_str("float"),
            Self::Double => f.write_str("double"),
            Self::String => f.write_str("string"),
            Self::Boolean => f.write_str("boolean"),
            Self::Array(t) => write!(f, "array<{t}>"),
            Self::Map(k, v) => write!(f, "map<{k},{v}>"),
            Self::Struct(fields) => {
                f.write_str("struct<")?;
                for (i, (n, t)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{n}:{t}")?;
                }
                f.write_str(">")
            }
        }
    }
}

impl FromStr for ResultType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl ResultType {
    /// Parses a Spark DDL type string, and refuses the types spark_udf refuses.
    pub fn parse(ddl: &str) -> Result<Self> {
        let bad = |reason: String| Error::InvalidResultType { ty: ddl.to_string(), reason };
        let tokens = tokenize(ddl).map_err(bad)?;
        let mut p = Parser { tokens, pos: 0 };
        // A bare field list ("a int, b double") is a struct, as in Spark's DDL.
        let looks_like_fields = p.tokens.len() >= 2
            && matches!(p.tokens[0], Tok::Ident(_))
            && (matches!(p.tokens[1], Tok::Colon) || matches!(p.tokens[1], Tok::Ident(_)));
        let parsed = if looks_like_fields { p.fields().map(Parsed::Struct) } else { p.ty() }.map_err(bad)?;
        if p.pos != p.tokens.len() {
            return Err(bad(format!("unexpected '{}'", p.tokens[p.pos])));
        }
        parsed.into_allowed().map_err(|t| {
            bad(format!(
                "Invalid 'spark_udf' result type: {t}. It must be one of int, long, float, double, string, boolean, \
                 or an array, struct or map (with string keys) of these"
            ))
        })
    }

    /// The Arrow type a column of this result type has.
    pub fn arrow_type(&self) -> ArrowType {
        match self {
            Self::Int => ArrowType::Int32,
            Self::Long => ArrowType::Int64,
            Self::Float => ArrowType::Float32,
            Self::Double => ArrowType::Float64,
            Self::String => ArrowType::Utf8,
            Self::Boolean => ArrowType::Boolean,
            Self::Array(t) => ArrowType::List(Arc::new(Field::new("item", t.arrow_type(), true))),
            Self::Struct(fields) => {
                ArrowType::Struct(fields.iter().map(|(n, t)| Field::new(n, t.arrow_type(), true)).collect())
            }
            Self::Map(k, v) => ArrowType::Map(
                Arc::new(Field::new(
                    "entries",
                    ArrowType::Struct(Fields::from(vec![
                        Field::new("key", k.arrow_type(), false),
                        Field::new("value", v.arrow_type(), true),
                    ])),
                    false,
                )),
                false,
            ),
        }
    }

    /// The result type of a column that holds this Arrow type unchanged, if there is one.
    pub fn from_arrow(t: &ArrowType) -> Option<Self> {
        Some(match t {
            ArrowType::Int8 | ArrowType::Int16 | ArrowType::Int32 | ArrowType::UInt8 | ArrowType::UInt16 => Self::Int,
            ArrowType::Int64 | ArrowType::UInt32 => Self::Long,
            ArrowType::Float16 | ArrowType::Float32 => Self::Float,
            ArrowType::Float64 => Self::Double,
            ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View => Self::String,
            ArrowType::Boolean => Self::Boolean,
            ArrowType::List(f) | ArrowType::LargeList(f) | ArrowType::FixedSizeList(f, _) => {
                Self::Array(Box::new(Self::from_arrow(f.data_type())?))
            }
            ArrowType::Struct(fields) => Self::Struct(
                fields
                    .iter()
                    .map(|f| Some((f.name().clone(), Self::from_arrow(f.data_type())?)))
                    .collect::<Option<_>>()?,
            ),
            ArrowType::Map(entries, _) => match entries.data_type() {
                ArrowType::Struct(kv) if kv.len() == 2 => Self::Map(
                    Box::new(Self::from_arrow(kv[0].data_type())?),
                    Box::new(Self::from_arrow(kv[1].data_type())?),
                ),
                _ => return None,
            },
            _ => return None,
        })
    }

    /// The type spark_udf infers from a signature's output schema (`_infer_spark_udf_return_type`):
    /// one output gives its type, several a struct; tensors `(-1,)` give `array<T>` and `(-1, k)`
    /// `array<array<T>>`. Without an output schema spark_udf uses `double`.
    pub fn infer_from_signature(outputs: Option<&Schema>) -> Result<Self> {
        let Some(schema) = outputs else {
            return Ok(Self::Double);
        };
        let err = |reason: String| Error::InvalidResultType { ty: schema.to_string(), reason };
        let types: Vec<(String, Self)> = match schema {
            Schema::Columns(cols) => cols
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    Ok((c.name.clone().unwrap_or_else(|| i.to_string()), coltype_to_spark(&c.ty).map_err(err)?))
                })
                .collect::<Result<_>>()?,
            Schema::Tensors(ts) => ts
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let elem = numpy_to_spark(&t.dtype).ok_or_else(|| {
                        err(format!("tensor dtype {} has no Spark type (MLflow's spark_udf refuses it too)", t.dtype))
                    })?;
                    let ty = match t.shape.len() {
                        1 => Self::Array(Box::new(elem)),
                        2 => Self::Array(Box::new(Self::Array(Box::new(elem)))),
                        n => {
                            return Err(err(format!("tensors of rank {n} cannot be returned by a Spark UDF")));
                        }
                    };
                    Ok((t.name.clone().unwrap_or_else(|| i.to_string()), ty))
                })
                .collect::<Result<_>>()?,
        };
        Ok(if types.len() == 1 {
            types.into_iter().next().map(|(_, t)| t).unwrap_or(Self::Double)
        } else {
            Self::Struct(types)
        })
    }

    /// The natural result type of a model's outputs: one output as it is (`[N]` a value, `[N, k]`
    /// an array), several outputs a struct with one field per output.
    pub fn infer_from_outputs(outputs: &[(String, ArrowType)]) -> Result<Self> {
        let types = outputs
            .iter()
            .map(|(name, t)| {
                Self::from_arrow(t).map(|r| (name.clone(), r)).ok_or_else(|| Error::InvalidResultType {
                    ty: t.to_string(),
                    reason: format!("model output '{name}' has no Spark type"),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        match types.len() {
            0 => Err(Error::ResultConversion("the model has no outputs".into())),
            1 => Ok(types.into_iter().next().map(|(_, t)| t).unwrap_or(Self::Double)),
            _ => Ok(Self::Struct(types)),
        }
    }

    /// Converts named model outputs (`[N]` columns or `[N, k]` list columns, all of one length)
    /// into one column of this type.
    pub fn convert(&self, outputs: &[(String, ArrayRef)]) -> Result<ArrayRef> {
        self.convert_with(outputs, outputs.len())
    }

    /// [`ResultType::convert`] for a model whose first `pyfunc` outputs are what MLflow's pyfunc
    /// returns: a struct takes its fields by name from every output, other types are built from
    /// those first outputs alone (as spark_udf builds them from pyfunc's frame).
    pub fn convert_with(&self, all: &[(String, ArrayRef)], pyfunc: usize) -> Result<ArrayRef> {
        let outputs = if matches!(self, Self::Struct(_)) || pyfunc >= all.len() { all } else { &all[..pyfunc.max(1)] };
        let len = outputs.first().map_or(0, |(_, a)| a.len());
        if len == 0 {
            // An empty batch: its `[N, k]` outputs do not even say k. Nothing to convert.
            return Ok(new_empty_array(&self.arrow_type()));
        }
        match self {
            Self::Struct(fields) => {
                let mut arrays = Vec::with_capacity(fields.len());
                for (name, ty) in fields {
                    let Some((_, out)) = outputs.iter().find(|(n, _)| n == name) else {
                        let names: Vec<&str> = outputs.iter().map(|(n, _)| n.as_str()).collect();
                        return Err(Error::ResultConversion(format!(
                            "result type {self} asks for field '{name}', but the model's outputs are {names:?}"
                        )));
                    };
                    arrays.push(convert_field(name, out, ty)?);
                }
                let fields: Fields =
                    fields.iter().zip(&arrays).map(|((n, _), a)| Field::new(n, a.data_type().clone(), true)).collect();
                // Rows with a null prediction (null policy `null`) are null structs, not structs of nulls.
                let nulls = outputs.first().and_then(|(_, a)| a.nulls().cloned());
                let s =
                    StructArray::try_new(fields, arrays, nulls).map_err(|e| Error::ResultConversion(e.to_string()))?;
                Ok(Arc::new(s))
            }
            Self::Map(..) => match outputs.iter().find(|(_, a)| matches!(a.data_type(), ArrowType::Map(..))) {
                Some((name, map)) => cast_to(name, map, self),
                None => Err(Error::ResultConversion(format!(
                    "result type {self} needs a model that returns a map (skl2onnx's ZipMap output); request \
                     array<float> or a struct instead"
                ))),
            },
            Self::Array(inner) => match **inner {
                // array<array<T>>: one inner array per output (spark_udf fails here for ONNX models).
                Self::Array(_) => {
                    let per_output: Vec<ArrayRef> =
                        outputs.iter().map(|(n, a)| convert_field(n, a, inner)).collect::<Result<_>>()?;
                    nest_outputs(&per_output, inner, len)
                }
                Self::Struct(_) | Self::Map(..) => Err(Error::ResultConversion(format!(
                    "result type {self} is not supported: arrays of structs or maps cannot be built from model outputs"
                ))),
                _ => {
                    let cols = compatible_columns(self, inner, outputs)?;
                    gather_rows(&cols, inner, len)
                }
            },
            prim => {
                let cols = compatible_columns(self, prim, outputs)?;
                let (name, first) = &cols[0];
                cast_to(name, first, prim)
            }
        }
    }
}

/// The frame spark_udf would see: every `[N]` output is a column, every `[N, k]` output `k`
/// columns; then only those whose type can become `elem` are kept (spark_udf's filter).
fn compatible_columns(
    full: &ResultType,
    elem: &ResultType,
    outputs: &[(String, ArrayRef)],
) -> Result<Vec<(String, ArrayRef)>> {
    let mut cols = Vec::new();
    for (name, a) in outputs {
        match a.data_type() {
            ArrowType::List(_) => {
                let list = a.as_list::<i32>();
                let width = list.value_length(0) as usize;
                for j in 0..width {
                    let idx: Vec<u64> =
                        (0..list.len()).map(|r| (list.value_offsets()[r] as usize + j) as u64).collect();
                    let col =
                        arrow_select::take::take(list.values().as_ref(), &arrow_array::UInt64Array::from(idx), None)
                            .map_err(|e| Error::ResultConversion(e.to_string()))?;
                    cols.push((format!("{name}[{j}]"), col));
                }
            }
            _ => cols.push((name.clone(), a.clone())),
        }
    }
    let keep = |t: &ArrowType| -> bool {
        use ArrowType as A;
        match elem {
            ResultType::Int => matches!(t, A::Int8 | A::Int16 | A::Int32 | A::UInt8 | A::UInt16),
            ResultType::Long => {
                matches!(t, A::Int8 | A::Int16 | A::Int32 | A::Int64 | A::UInt8 | A::UInt16 | A::UInt32)
            }
            ResultType::Float | ResultType::Double => t.is_numeric(),
            ResultType::Boolean => matches!(t, A::Boolean),
            ResultType::String => true,
            _ => false,
        }
    };
    let kept: Vec<_> = cols.into_iter().filter(|(_, a)| keep(a.data_type())).collect();
    if kept.is_empty() {
        return Err(Error::ResultConversion(format!(
            "The model did not produce any values compatible with the requested type '{full}'. Consider requesting udf \
             with StringType or Arraytype(StringType). (outputs: {})",
            outputs.iter().map(|(n, a)| format!("{n}: {}", a.data_type())).collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(kept)
}

/// The values of model output `name` as `ty`, or an error that names both and says what to ask
/// for instead.
fn cast_to(name: &str, a: &ArrayRef, ty: &ResultType) -> Result<ArrayRef> {
    let target = ty.arrow_type();
    if a.data_type() == &target {
        return Ok(a.clone());
    }
    if matches!(a.data_type(), ArrowType::Map(..)) && !matches!(ty, ResultType::Map(..)) {
        return Err(Error::ResultConversion(format!(
            "model output '{name}' is a map of class label to probability (skl2onnx's ZipMap) and cannot be \
             returned as {ty}; request map<string,double> for it, or export the model with \
             options={{'zipmap': False}} to get array<double>"
        )));
    }
    let opts = CastOptions { safe: false, ..Default::default() };
    cast_with_options(a, &target, &opts).map_err(|e| {
        Error::ResultConversion(format!("model output '{name}' ({}) cannot be returned as {ty}: {e}", a.data_type()))
    })
}

/// One struct field (or one output) as `ty`: scalars from `[N]` outputs, arrays from `[N, k]` ones.
fn convert_field(name: &str, out: &ArrayRef, ty: &ResultType) -> Result<ArrayRef> {
    match (out.data_type(), ty) {
        (ArrowType::List(_), ResultType::Array(_)) | (_, ResultType::Struct(_) | ResultType::Map(..)) => {
            cast_to(name, out, ty)
        }
        (ArrowType::List(_), scalar) => {
            let list = out.as_list::<i32>();
            if list.len() > 0 && list.value_length(0) != 1 {
                return Err(Error::ResultConversion(format!(
                    "output '{name}' holds {} values a row and cannot be returned as {scalar}; request array<{scalar}>",
                    list.value_length(0)
                )));
            }
            cast_to(name, list.values(), scalar)
        }
        (_, ResultType::Array(inner)) => {
            // A [N] output requested as an array: one value per row.
            let values = cast_to(name, out, inner)?;
            let offsets = OffsetBuffer::from_lengths(std::iter::repeat_n(1, out.len()));
            let field = Arc::new(Field::new("item", values.data_type().clone(), true));
            Ok(Arc::new(
                ListArray::try_new(field, offsets, values, out.nulls().cloned())
                    .map_err(|e| Error::ResultConversion(e.to_string()))?,
            ))
        }
        (_, scalar) => cast_to(name, out, scalar),
    }
}

/// `array<T>`: each row holds the row's values of every kept column, in order.
fn gather_rows(cols: &[(String, ArrayRef)], elem: &ResultType, len: usize) -> Result<ArrayRef> {
    let cast: Vec<ArrayRef> = cols.iter().map(|(name, a)| cast_to(name, a, elem)).collect::<Result<_>>()?;
    let refs: Vec<&dyn Array> = cast.iter().map(AsRef::as_ref).collect();
    let k = cols.len();
    // Interleave column-major values into row-major order.
    let indices: Vec<(usize, usize)> = (0..len).flat_map(|r| (0..k).map(move |c| (c, r))).collect();
    let values =
        arrow_select::interleave::interleave(&refs, &indices).map_err(|e| Error::ResultConversion(e.to_string()))?;
    let nulls = cast.first().and_then(|a| a.nulls().cloned());
    let offsets = OffsetBuffer::from_lengths(std::iter::repeat_n(k, len));
    let field = Arc::new(Field::new("item", elem.arrow_type(), true));
    Ok(Arc::new(ListArray::try_new(field, offsets, values, nulls).map_err(|e| Error::ResultConversion(e.to_string()))?))
}

/// `array<array<T>>`: each row holds one inner array per output.
fn nest_outputs(per_output: &[ArrayRef], inner: &ResultType, len: usize) -> Result<ArrayRef> {
    let refs: Vec<&dyn Array> = per_output.iter().map(AsRef::as_ref).collect();
    let k = per_output.len();
    let indices: Vec<(usize, usize)> = (0..len).flat_map(|r| (0..k).map(move |c| (c, r))).collect();
    let values =
        arrow_select::interleave::interleave(&refs, &indices).map_err(|e| Error::ResultConversion(e.to_string()))?;
    let offsets = OffsetBuffer::from_lengths(std::iter::repeat_n(k, len));
    let field = Arc::new(Field::new("item", inner.arrow_type(), true));
    let nulls = per_output.first().and_then(|a| a.nulls().cloned());
    Ok(Arc::new(ListArray::try_new(field, offsets, values, nulls).map_err(|e| Error::ResultConversion(e.to_string()))?))
}

/// A null column of the result type (for batches where every row's prediction is null).
pub fn null_column(ty: &ResultType, len: usize) -> ArrayRef {
    new_null_array(&ty.arrow_type(), len)
}

fn coltype_to_spark(t: &ColType) -> std::result::Result<ResultType, String> {
    Ok(match t {
        ColType::Primitive(p) => match p {
            MlflowType::Boolean => ResultType::Boolean,
            MlflowType::Integer => ResultType::Int,
            MlflowType::Long => ResultType::Long,
            MlflowType::Float => ResultType::Float,
            MlflowType::Double => ResultType::Double,
            MlflowType::String => ResultType::String,
            other => return Err(format!("{other} outputs cannot be returned by a Spark UDF")),
        },
        ColType::Array(inner) => ResultType::Array(Box::new(coltype_to_spark(inner)?)),
        ColType::Object(props) => ResultType::Struct(
            props
                .iter()
                .map(|p| Ok((p.name.clone(), coltype_to_spark(&p.ty)?)))
                .collect::<std::result::Result<_, String>>()?,
        ),
        ColType::Map(v) => ResultType::Map(Box::new(ResultType::String), Box::new(coltype_to_spark(v)?)),
        ColType::Any | ColType::SparkMlVector => {
            return Err(format!("{t} outputs have no Spark type"));
        }
    })
}

fn numpy_to_spark(dtype: &str) -> Option<ResultType> {
    Some(match dtype {
        "bool" => ResultType::Boolean,
        "int8" | "int16" | "int32" | "uint8" | "uint16" => ResultType::Int,
        "int64" | "uint32" => ResultType::Long,
        "float16" | "float32" => ResultType::Float,
        "float64" => ResultType::Double,
        // MLflow has no type for str and object tensors (`DataType.from_numpy_type` gives None)
        // and its spark_udf refuses them, though string labels are what they most often hold.
        _ => return None,
    })
}

// ---- DDL parsing ----

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Lt,
    Gt,
    Comma,
    Colon,
    LParen,
    RParen,
    Number(u32),
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => f.write_str(s),
            Tok::Lt => f.write_str("<"),
            Tok::Gt => f.write_str(">"),
            Tok::Comma => f.write_str(","),
            Tok::Colon => f.write_str(":"),
            Tok::LParen => f.write_str("("),
            Tok::RParen => f.write_str(")"),
            Tok::Number(n) => write!(f, "{n}"),
        }
    }
}

fn tokenize(s: &str) -> std::result::Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '<' | '>' | ',' | ':' | '(' | ')' => {
                chars.next();
                out.push(match c {
                    '<' => Tok::Lt,
                    '>' => Tok::Gt,
                    ',' => Tok::Comma,
                    ':' => Tok::Colon,
                    '(' => Tok::LParen,
                    _ => Tok::RParen,
                });
            }
            '`' => {
                chars.next();
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('`') if chars.peek() == Some(&'`') => {
                            chars.next();
                            name.push('`');
                        }
                        Some('`') => break,
                        Some(ch) => name.push(ch),
                        None => return Err("unterminated `quoted` name".into()),
                    }
                }
                out.push(Tok::Ident(name));
            }
            c if c.is_ascii_digit() => {
                let mut n = String::new();
                while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    n.push(d);
                    chars.next();
                }
                out.push(Tok::Number(n.parse().map_err(|_| format!("number {n} too large"))?));
            }
            c if c.is_alphanumeric() || c == '_' => {
                let mut id = String::new();
                while let Some(&d) = chars.peek().filter(|d| d.is_alphanumeric() || **d == '_' || **d == '.') {
                    id.push(d);
                    chars.next();
                }
                out.push(Tok::Ident(id));
            }
            other => return Err(format!("unexpected character '{other}'")),
        }
    }
    if out.is_empty() {
        return Err("the type is empty".into());
    }
    Ok(out)
}

/// Everything Spark's DDL parser accepts, before spark_udf's own filter.
#[derive(Debug, Clone)]
enum Parsed {
    Allowed(ResultType),
    Other(String),
    Array(Box<Parsed>),
    Struct(Vec<(String, Parsed)>),
    Map(Box<Parsed>, Box<Parsed>),
}

impl Parsed {
    fn into_allowed(self) -> std::result::Result<ResultType, String> {
        Ok(match self {
            Parsed::Allowed(t) => t,
            Parsed::Other(name) => return Err(name),
            Parsed::Array(t) => ResultType::Array(Box::new(t.into_allowed()?)),
            Parsed::Struct(fields) => ResultType::Struct(
                fields
                    .into_iter()
                    .map(|(n, t)| Ok((n, t.into_allowed()?)))
                    .collect::<std::result::Result<_, String>>()?,
            ),
            Parsed::Map(k, v) => {
                let k = k.into_allowed()?;
                if k != ResultType::String {
                    return Err(format!("map<{k},...> (map keys must be strings)"));
                }
                ResultType::Map(Box::new(k), Box::new(v.into_allowed()?))
            }
        })
    }
}

struct Parser {
    tokens: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn next(&mut self) -> Option<Tok> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn expect(&mut self, t: &Tok) -> std::result::Result<(), String> {
        match self.next() {
            Some(got) if &got == t => Ok(()),
            Some(got) => Err(format!("expected '{t}', found '{got}'")),
            None => Err(format!("expected '{t}' at the end")),
        }
    }

    fn ty(&mut self) -> std::result::Result<Parsed, String> {
        let Some(Tok::Ident(name)) = self.next() else {
            return Err("expected a type name".into());
        };
        let lower = name.to_ascii_lowercase();
        Ok(match lower.as_str() {
            "int" | "integer" => Parsed::Allowed(ResultType::Int),
            "long" | "bigint" => Parsed::Allowed(ResultType::Long),
            "float" | "real" => Parsed::Allowed(ResultType::Float),
            "double" => Parsed::Allowed(ResultType::Double),
            "string" => Parsed::Allowed(ResultType::String),
            "boolean" | "bool" => Parsed::Allowed(ResultType::Boolean),
            "array" => {
                self.expect(&Tok::Lt)?;
                let t = self.ty()?;
                self.expect(&Tok::Gt)?;
                Parsed::Array(Box::new(t))
            }
            "map" => {
                self.expect(&Tok::Lt)?;
                let k = self.ty()?;
                self.expect(&Tok::Comma)?;
                let v = self.ty()?;
                self.expect(&Tok::Gt)?;
                Parsed::Map(Box::new(k), Box::new(v))
            }
            "struct" => {
                self.expect(&Tok::Lt)?;
                let fields = if self.tokens.get(self.pos) == Some(&Tok::Gt) { Vec::new() } else { self.fields()? };
                self.expect(&Tok::Gt)?;
                Parsed::Struct(fields)
            }
            "decimal" | "dec" | "numeric" | "varchar" | "char" => {
                if self.tokens.get(self.pos) == Some(&Tok::LParen) {
                    while !matches!(self.next(), Some(Tok::RParen) | None) {}
                }
                Parsed::Other(lower)
            }
            "tinyint" | "byte" | "smallint" | "short" | "date" | "timestamp" | "timestamp_ntz" | "timestamp_ltz"
            | "binary" | "void" | "interval" | "variant" => Parsed::Other(lower),
            _ => return Err(format!("unknown type '{name}'")),
        })
    }

    fn fields(&mut self) -> std::result::Result<Vec<(String, Parsed)>, String> {
        let mut fields = Vec::new();
        loop {
            let Some(Tok::Ident(name)) = self.next() else {
                return Err("expected a field name".into());
            };
            if self.tokens.get(self.pos) == Some(&Tok::Colon) {
                self.pos += 1;
            }
            let t = self.ty()?;
            // Spark DDL allows `NOT NULL` after a field type; nullability does not change the result.
            if matches!(self.tokens.get(self.pos), Some(Tok::Ident(n)) if n.eq_ignore_ascii_case("not")) {
                self.pos += 1;
                match self.next() {
                    Some(Tok::Ident(n)) if n.eq_ignore_ascii_case("null") => {}
                    _ => return Err("expected NULL after NOT".into()),
                }
            }
            if fields.iter().any(|(n, _): &(String, Parsed)| n == &name) {
                return Err(format!("field '{name}' appears twice"));
            }
            fields.push((name, t));
            match self.tokens.get(self.pos) {
                Some(Tok::Comma) => self.pos += 1,
                _ => return Ok(fields),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Int64Array;
    use arrow_array::builder::{Float32Builder, ListBuilder};

    fn list_of_f32(rows: &[&[f32]]) -> ArrayRef {
        let mut b = ListBuilder::new(Float32Builder::new());
        for r in rows {
            b.values().append_slice(r);
            b.append(true);
        }
        Arc::new(b.finish())
    }

    #[test]
    fn ddl_types_parse_and_print() {
        for (ddl, shown) in [
            ("double", "double"),
            ("BIGINT", "bigint"),
            ("long", "bigint"),
            ("bool", "boolean"),
            ("array<float>", "array<float>"),
            ("array< array<double> >", "array<array<double>>"),
            ("struct<label:bigint,probabilities:array<float>>", "struct<label:bigint,probabilities:array<float>>"),
            ("struct<label bigint, `p q` double NOT NULL>", "struct<label:bigint,p q:double>"),
            ("m float, s double", "struct<m:float,s:double>"),
            ("map<string, float>", "map<string,float>"),
        ] {
            assert_eq!(ResultType::parse(ddl).unwrap().to_string(), shown, "{ddl}");
        }
    }

    #[test]
    fn types_spark_udf_refuses_are_refused() {
        for (ddl, expected) in [
            ("date", "Invalid 'spark_udf' result type: date"),
            ("array<timestamp>", "Invalid 'spark_udf' result type: timestamp"),
            ("decimal(10, 2)", "Invalid 'spark_udf' result type: decimal"),
            ("map<int,double>", "map keys must be strings"),
            ("array<", "expected a type name"),
            ("struct<a:int,a:int>", "appears twice"),
            ("frobnicate", "unknown type 'frobnicate'"),
            ("", "empty"),
        ] {
            let err = ResultType::parse(ddl).unwrap_err().to_string();
            assert!(err.contains(expected), "{ddl}: {err}");
        }
    }

    fn classifier_outputs() -> Vec<(String, ArrayRef)> {
        vec![
            ("label".into(), Arc::new(Int64Array::from(vec![1, 0])) as ArrayRef),
            ("probabilities".into(), list_of_f32(&[&[0.25, 0.75], &[0.875, 0.125]])),
        ]
    }

    #[test]
    fn primitive_types_take_the_leftmost_compatible_output() {
        let out = classifier_outputs();
        let d = ResultType::Double.convert(&out).unwrap();
        assert_eq!(d.as_primitive::<arrow_array::types::Float64Type>().values().to_vec(), vec![1.0, 0.0]);
        let err = ResultType::Int.convert(&out).unwrap_err().to_string();
        assert!(err.contains("did not produce any values compatible with the requested type 'int'"), "{err}");
        let s = ResultType::String.convert(&out).unwrap();
        assert_eq!(s.as_string::<i32>().value(0), "1");
    }

    #[test]
    fn arrays_gather_every_value_of_a_row() {
        let a = ResultType::parse("array<double>").unwrap().convert(&classifier_outputs()).unwrap();
        let list = a.as_list::<i32>();
        let row0 = list.value(0);
        assert_eq!(row0.as_primitive::<arrow_array::types::Float64Type>().values().to_vec(), vec![1.0, 0.25, 0.75]);
        let nested = ResultType::parse("array<array<double>>").unwrap().convert(&classifier_outputs()).unwrap();
        assert_eq!(nested.as_list::<i32>().value(1).len(), 2);
    }

    #[test]
    fn structs_take_outputs_by_name() {
        let t = ResultType::parse("struct<probabilities:array<double>, label:int>").unwrap();
        let s = t.convert(&classifier_outputs()).unwrap();
        let s = s.as_struct();
        assert_eq!(s.column(1).as_primitive::<arrow_array::types::Int32Type>().values().to_vec(), vec![1, 0]);
        let missing =
            ResultType::parse("struct<score:double>").unwrap().convert(&classifier_outputs()).unwrap_err().to_string();
        assert!(missing.contains("field 'score'") && missing.contains("label"), "{missing}");
        let wide = ResultType::parse("struct<probabilities:double>")
            .unwrap()
            .convert(&classifier_outputs())
            .unwrap_err()
            .to_string();
        assert!(wide.contains("request array<double>"), "{wide}");
    }

    #[test]
    fn default_types_come_from_outputs_or_the_signature() {
        let out = classifier_outputs();
        let types: Vec<(String, ArrowType)> = out.iter().map(|(n, a)| (n.clone(), a.data_type().clone())).collect();
        assert_eq!(
            ResultType::infer_from_outputs(&types).unwrap().to_string(),
            "struct<label:bigint,probabilities:array<float>>"
        );
        let single = vec![("variable".to_string(), ArrowType::Float32)];
        assert_eq!(ResultType::infer_from_outputs(&single).unwrap(), ResultType::Float);
        let sig =
            Schema::from_json("outputs", r#"[{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]"#)
                .unwrap();
        assert_eq!(ResultType::infer_from_signature(Some(&sig)).unwrap().to_string(), "array<bigint>");
        let cols = Schema::from_json("outputs", r#"[{"type": "float", "name": "s"}, {"type": "float", "name": "m"}]"#)
            .unwrap();
        assert_eq!(ResultType::infer_from_signature(Some(&cols)).unwrap().to_string(), "struct<s:float,m:float>");
        assert_eq!(ResultType::infer_from_signature(None).unwrap(), ResultType::Double);
        // String labels: MLflow's spark_udf has no type for an object tensor, and refuses it.
        let labels =
            Schema::from_json("outputs", r#"[{"type": "tensor", "tensor-spec": {"dtype": "object", "shape": [-1]}}]"#)
                .unwrap();
        let e = ResultType::infer_from_signature(Some(&labels)).unwrap_err();
        assert!(e.to_string().contains("object has no Spark type"), "{e}");
    }
}
