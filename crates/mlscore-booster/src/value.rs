//! XGBoost's model documents: UBJSON (`model.ubj`, and `model.xgb` since xgboost 2.1) and JSON
//! (`model.json`), read into one tree of [`Value`]s. Typed arrays stay typed (a 500-tree model's
//! thresholds are one `Vec<f32>` a tree, not a `Vec` of boxed numbers).
//!
//! The UBJSON reader trusts no declared size: every count is checked against the bytes left
//! before anything is allocated, and nesting is bounded, so a crafted file is an error.

use crate::error::ReadError;

/// One value of a model document.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    F32s(Vec<f32>),
    I32s(Vec<i32>),
    U8s(Vec<u8>),
    I64s(Vec<i64>),
    F64s(Vec<f64>),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

/// Deeper documents are refused (XGBoost's are 7 levels deep).
const MAX_DEPTH: usize = 64;

impl Value {
    /// The member `key` of an object.
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The member at `path` (keys separated by `/`), or an error naming the path.
    pub(crate) fn at(&self, path: &str) -> Result<&Value, ReadError> {
        let mut v = self;
        for key in path.split('/') {
            v = v.get(key).ok_or_else(|| ReadError::Missing(path.to_string()))?;
        }
        Ok(v)
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A string member at `path`.
    pub(crate) fn str_at(&self, path: &str) -> Result<&str, ReadError> {
        self.at(path)?.as_str().ok_or_else(|| ReadError::Invalid(format!("'{path}' is not a string")))
    }

    /// A count written as a string (XGBoost writes its parameters as strings) or a number.
    pub(crate) fn usize_at(&self, path: &str) -> Result<usize, ReadError> {
        let bad = || ReadError::Invalid(format!("'{path}' is not a non-negative integer"));
        match self.at(path)? {
            Value::Str(s) => s.trim().parse().map_err(|_| bad()),
            Value::Int(i) => usize::try_from(*i).map_err(|_| bad()),
            _ => Err(bad()),
        }
    }

    /// The elements of an array, as numbers of type `T`, whatever the array's encoding.
    pub(crate) fn numbers<T: Number>(&self, what: &str) -> Result<Vec<T>, ReadError> {
        let bad = || ReadError::Invalid(format!("'{what}' is not an array of numbers"));
        Ok(match self {
            Value::F32s(v) => v.iter().map(|x| T::from_f64(f64::from(*x))).collect(),
            Value::F64s(v) => v.iter().map(|x| T::from_f64(*x)).collect(),
            Value::I32s(v) => v.iter().map(|x| T::from_i64(i64::from(*x))).collect(),
            Value::I64s(v) => v.iter().map(|x| T::from_i64(*x)).collect(),
            Value::U8s(v) => v.iter().map(|x| T::from_i64(i64::from(*x))).collect(),
            Value::Array(items) => items
                .iter()
                .map(|x| match x {
                    Value::Int(i) => Ok(T::from_i64(*i)),
                    Value::Float(f) => Ok(T::from_f64(*f)),
                    Value::Bool(b) => Ok(T::from_i64(i64::from(*b))),
                    _ => Err(bad()),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(bad()),
        })
    }

    /// The elements of an array of strings.
    pub(crate) fn strings(&self, what: &str) -> Result<Vec<String>, ReadError> {
        let bad = || ReadError::Invalid(format!("'{what}' is not an array of strings"));
        match self {
            Value::Array(items) => items.iter().map(|x| x.as_str().map(str::to_string).ok_or_else(bad)).collect(),
            _ => Err(bad()),
        }
    }

    /// The elements of a generic array.
    pub(crate) fn items(&self, what: &str) -> Result<&[Value], ReadError> {
        match self {
            Value::Array(items) => Ok(items),
            _ => Err(ReadError::Invalid(format!("'{what}' is not an array"))),
        }
    }
}

/// The element types [`Value::numbers`] converts to.
pub(crate) trait Number: Copy {
    fn from_f64(v: f64) -> Self;
    fn from_i64(v: i64) -> Self;
}

impl Number for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn from_i64(v: i64) -> Self {
        v as f32
    }
}

impl Number for f64 {
    fn from_f64(v: f64) -> Self {
        v
    }
    fn from_i64(v: i64) -> Self {
        v as f64
    }
}

/// Integers: a fractional or out-of-range value becomes -1, which every index check refuses.
impl Number for i64 {
    fn from_f64(v: f64) -> Self {
        if v.fract() == 0.0 && v.abs() < 9.0e15 { v as i64 } else { -1 }
    }
    fn from_i64(v: i64) -> Self {
        v
    }
}

/// Parses a JSON document (XGBoost's `model.json`).
pub(crate) fn from_json(bytes: &[u8]) -> Result<Value, ReadError> {
    let doc: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ReadError::Invalid(format!("not valid JSON: {e}")))?;
    Ok(convert_json(doc))
}

fn convert_json(v: serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::Str(s),
        serde_json::Value::Array(items) => Value::Array(items.into_iter().map(convert_json).collect()),
        serde_json::Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, convert_json(v))).collect()),
    }
}

/// Parses a UBJSON document (draft 12, as XGBoost writes it: big-endian numbers, optimized
/// containers with `$` type and `#` count).
pub(crate) fn from_ubjson(bytes: &[u8]) -> Result<Value, ReadError> {
    Reader { bytes, pos: 0 }.value(0)
}

/// The next `n` bytes of `bytes` from `*pos`, moving past them; `None`, nothing moved, where
/// fewer are left. The bounds check of this crate's binary readers (UBJSON here, XGBoost's
/// legacy format in `xgboost_legacy`), which add their own error messages.
pub(crate) fn take<'a>(bytes: &'a [u8], pos: &mut usize, n: usize) -> Option<&'a [u8]> {
    let s = bytes.get(*pos..)?.get(..n)?;
    *pos += n;
    Some(s)
}

/// Whether `n` declared items of `unit` bytes each fit in the `left` bytes of a file: checked
/// before anything is allocated for them.
pub(crate) fn fits(n: u64, unit: usize, left: usize) -> bool {
    n.checked_mul(unit.max(1) as u64).is_some_and(|total| total <= left as u64)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn err(&self, what: impl std::fmt::Display) -> ReadError {
        ReadError::Invalid(format!("UBJSON at byte {}: {what}", self.pos))
    }

    fn take(&mut self, n: usize) -> Result<&[u8], ReadError> {
        let (pos, left) = (self.pos, self.bytes.len() - self.pos);
        take(self.bytes, &mut self.pos, n)
            .ok_or_else(|| ReadError::Truncated(format!("UBJSON value at byte {pos} needs {n} bytes, {left} are left")))
    }

    fn byte(&mut self) -> Result<u8, ReadError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ReadError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    /// The next marker, skipping no-ops.
    fn marker(&mut self) -> Result<u8, ReadError> {
        loop {
            let m = self.byte()?;
            if m != b'N' {
                return Ok(m);
            }
        }
    }

    fn int_of(&mut self, marker: u8) -> Result<i64, ReadError> {
        Ok(match marker {
            b'i' => i64::from(i8::from_be_bytes(self.array()?)),
            b'U' => i64::from(self.byte()?),
            b'I' => i64::from(i16::from_be_bytes(self.array()?)),
            b'l' => i64::from(i32::from_be_bytes(self.array()?)),
            b'L' => i64::from_be_bytes(self.array()?),
            m => return Err(self.err(format!("expected an integer, found marker {:?}", char::from(m)))),
        })
    }

    /// A length or count: an integer that must fit in what is left of the file, `unit` bytes each.
    fn count(&mut self, unit: usize) -> Result<usize, ReadError> {
        let m = self.marker()?;
        let n = self.int_of(m)?;
        let left = self.bytes.len() - self.pos;
        match usize::try_from(n) {
            Ok(n) if fits(n as u64, unit, left) => Ok(n),
            _ => Err(ReadError::Truncated(format!(
                "UBJSON at byte {}: a declared length of {n} (x {unit} bytes) exceeds the {left} bytes left",
                self.pos
            ))),
        }
    }

    fn string(&mut self) -> Result<String, ReadError> {
        let n = self.count(1)?;
        let pos = self.pos;
        let s = self.take(n)?;
        String::from_utf8(s.to_vec())
            .map_err(|_| ReadError::Invalid(format!("UBJSON at byte {pos}: a string is not UTF-8")))
    }

    fn value(&mut self, depth: usize) -> Result<Value, ReadError> {
        let m = self.marker()?;
        self.value_of(m, depth)
    }

    fn value_of(&mut self, marker: u8, depth: usize) -> Result<Value, ReadError> {
        Ok(match marker {
            b'Z' => Value::Null,
            b'T' => Value::Bool(true),
            b'F' => Value::Bool(false),
            b'i' | b'U' | b'I' | b'l' | b'L' => Value::Int(self.int_of(marker)?),
            b'd' => Value::Float(f64::from(f32::from_be_bytes(self.array()?))),
            b'D' => Value::Float(f64::from_be_bytes(self.array()?)),
            b'C' => Value::Str(char::from(self.byte()?).to_string()),
            b'S' | b'H' => Value::Str(self.string()?),
            b'[' | b'{' => {
                if depth >= MAX_DEPTH {
                    return Err(self.err(format!("nesting deeper than {MAX_DEPTH} levels")));
                }
                if marker == b'[' { self.array_value(depth + 1)? } else { self.object(depth + 1)? }
            }
            m => return Err(self.err(format!("unknown marker {:?}", char::from(m)))),
        })
    }

    /// The `$type` and `#count` of an optimized container, if present.
    fn header(&mut self) -> Result<(Option<u8>, Option<usize>), ReadError> {
        let mut ty = None;
        if self.bytes.get(self.pos) == Some(&b'$') {
            self.pos += 1;
            ty = Some(self.byte()?);
            if self.bytes.get(self.pos) != Some(&b'#') {
                return Err(self.err("a typed container without a count"));
            }
        }
        let mut count = None;
        if self.bytes.get(self.pos) == Some(&b'#') {
            self.pos += 1;
            let unit = match ty {
                Some(b'd' | b'l') => 4,
                Some(b'D' | b'L') => 8,
                Some(b'I') => 2,
                _ => 1,
            };
            count = Some(self.count(unit)?);
        }
        Ok((ty, count))
    }

    fn array_value(&mut self, depth: usize) -> Result<Value, ReadError> {
        let (ty, count) = self.header()?;
        match (ty, count) {
            (Some(t), Some(n)) => self.typed_array(t, n, depth),
            (None, Some(n)) => (0..n).map(|_| self.value(depth)).collect::<Result<_, _>>().map(Value::Array),
            _ => {
                let mut items = Vec::new();
                loop {
                    let m = self.marker()?;
                    if m == b']' {
                        return Ok(Value::Array(items));
                    }
                    items.push(self.value_of(m, depth)?);
                }
            }
        }
    }

    fn typed_array(&mut self, ty: u8, n: usize, depth: usize) -> Result<Value, ReadError> {
        macro_rules! numbers {
            ($t:ty, $variant:ident, $size:literal) => {{
                let raw = self.take(n * $size)?;
                Value::$variant(
                    raw.chunks_exact($size).map(|c| <$t>::from_be_bytes(c.try_into().unwrap_or_default())).collect(),
                )
            }};
        }
        Ok(match ty {
            b'd' => numbers!(f32, F32s, 4),
            b'D' => numbers!(f64, F64s, 8),
            b'l' => numbers!(i32, I32s, 4),
            b'L' => numbers!(i64, I64s, 8),
            b'U' => Value::U8s(self.take(n)?.to_vec()),
            b'i' => Value::I32s(self.take(n)?.iter().map(|b| i32::from(*b as i8)).collect()),
            b'I' => Value::I32s(
                self.take(n * 2)?.chunks_exact(2).map(|c| i32::from(i16::from_be_bytes([c[0], c[1]]))).collect(),
            ),
            b'T' | b'F' | b'Z' => Value::Array(vec![self.value_of(ty, depth)?; n]),
            other => Value::Array((0..n).map(|_| self.value_of(other, depth)).collect::<Result<_, _>>()?),
        })
    }

    fn object(&mut self, depth: usize) -> Result<Value, ReadError> {
        let (ty, count) = self.header()?;
        let mut members = Vec::new();
        let mut member = |r: &mut Self| -> Result<(), ReadError> {
            let key = r.string()?;
            let v = match ty {
                Some(t) => r.value_of(t, depth)?,
                None => r.value(depth)?,
            };
            members.push((key, v));
            Ok(())
        };
        match count {
            Some(n) => {
                for _ in 0..n {
                    member(self)?;
                }
            }
            None => loop {
                if self.bytes.get(self.pos) == Some(&b'}') {
                    self.pos += 1;
                    break;
                }
                member(self)?;
            },
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_arrays_strings_and_objects_parse() {
        // {"a": [$d#U2 1.5 -2.0], "b": "xy", "c": [i 1 U 200 ]}
        let mut doc = vec![b'{', b'U', 1, b'a', b'[', b'$', b'd', b'#', b'U', 2];
        doc.extend(1.5f32.to_be_bytes());
        doc.extend((-2.0f32).to_be_bytes());
        doc.extend([b'U', 1, b'b', b'S', b'U', 2, b'x', b'y']);
        doc.extend([b'U', 1, b'c', b'[', b'i', 1, b'U', 200, b']', b'}']);
        let v = from_ubjson(&doc).unwrap();
        assert_eq!(v.get("a"), Some(&Value::F32s(vec![1.5, -2.0])));
        assert_eq!(v.str_at("b").unwrap(), "xy");
        assert_eq!(v.at("c").unwrap().numbers::<i64>("c").unwrap(), vec![1, 200]);
    }

    #[test]
    fn declared_lengths_past_the_end_and_deep_nesting_are_errors() {
        // A string claiming 2^40 bytes, and an f32 array claiming 2^30 elements.
        let mut doc = vec![b'S', b'L'];
        doc.extend((1u64 << 40).to_be_bytes());
        assert!(matches!(from_ubjson(&doc), Err(ReadError::Truncated(_))));
        let mut doc = vec![b'[', b'$', b'd', b'#', b'l'];
        doc.extend((1i32 << 30).to_be_bytes());
        assert!(matches!(from_ubjson(&doc), Err(ReadError::Truncated(_))));
        let doc = vec![b'['; 10_000];
        assert!(from_ubjson(&doc).is_err());
        // Every prefix of a valid document is an error, never a panic.
        let mut doc = vec![b'{', b'U', 1, b'a', b'[', b'$', b'l', b'#', b'U', 2];
        doc.extend(7i32.to_be_bytes());
        doc.extend(8i32.to_be_bytes());
        doc.push(b'}');
        assert!(from_ubjson(&doc).is_ok());
        for n in 0..doc.len() {
            assert!(from_ubjson(&doc[..n]).is_err(), "prefix of {n} bytes");
        }
    }
}
