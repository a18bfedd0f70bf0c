//! A streaming reader for the most common request body, a pandas split frame:
//! `{"dataframe_split": {"columns": [...], "index": [...], "data": [[...], ...]}}` (what MLflow's
//! own client and `DataFrame.to_dict(orient="split")` send).
//!
//! The general reader builds a tree of JSON values, copies its rows into columns and then turns
//! each column into Arrow: a 1,000-row, 28-column request held about 1.8 MB of values at once for
//! 560 KB of JSON. Here each row's cells go straight into their columns as they are parsed, in
//! 16 bytes a cell where a JSON value takes 32, and a column becomes JSON values only while it is
//! turned into Arrow. Anything unusual (another payload, an unknown key, rows of different
//! lengths, a row that is not a list, no rows) makes [`read`] give up, and the general reader
//! reads the body again and answers as it always has, errors included: both readers give the
//! same columns for every body this one accepts.

use std::fmt;

use serde::Deserialize as _;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// One cell of a split frame's `data`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Text, lists, objects and integers past `i64`, as the general reader holds them.
    Other(Box<Value>),
}

impl Cell {
    /// The cell as the JSON value the general reader would hold for it.
    pub(crate) fn into_value(self) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::Bool(b) => Value::Bool(b),
            Cell::Int(i) => Value::from(i),
            Cell::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
            Cell::Other(v) => *v,
        }
    }
}

/// A split frame's columns: names (`columns`, else positions) and cells, by column.
pub(crate) type CellColumns = Vec<(String, Vec<Cell>)>;

/// The body's split frame read straight into columns, or `None` where the general reader must
/// read it (see the module's documentation).
pub(crate) fn read(text: &str) -> Option<CellColumns> {
    let mut de = serde_json::Deserializer::from_str(text);
    let frame = de.deserialize_map(BodyVisitor).ok()?;
    de.end().ok()?;
    let Frame { columns, cells } = frame;
    let rows = cells.first().map_or(0, Vec::len);
    if rows == 0 {
        return None;
    }
    let names: Vec<String> = match columns {
        Some(c) => c.iter().map(crate::request::name_of).collect(),
        None => (0..cells.len()).map(|i| i.to_string()).collect(),
    };
    (names.len() == cells.len()).then(|| names.into_iter().zip(cells).collect())
}

/// What a split frame holds, as read.
struct Frame {
    columns: Option<Vec<Value>>,
    cells: Vec<Vec<Cell>>,
}

/// The body: one `dataframe_split` key and any others but the other payloads (`params`, say).
struct BodyVisitor;

impl<'de> Visitor<'de> for BodyVisitor {
    type Value = Frame;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a dictionary with dataframe_split")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Frame, A::Error> {
        let mut frame = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "dataframe_split" if frame.is_none() => frame = Some(map.next_value_seed(FrameSeed)?),
                "dataframe_split" | "dataframe_records" | "inputs" | "instances" => {
                    return Err(de::Error::custom("not a lone split frame"));
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        frame.ok_or_else(|| de::Error::custom("no split frame"))
    }
}

struct FrameSeed;

impl<'de> DeserializeSeed<'de> for FrameSeed {
    type Value = Frame;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Frame, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FrameSeed {
    type Value = Frame;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a split frame")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Frame, A::Error> {
        let (mut columns, mut cells) = (None, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "columns" if columns.is_none() => columns = Some(map.next_value::<Vec<Value>>()?),
                "index" => {
                    map.next_value::<IgnoredAny>()?;
                }
                "data" if cells.is_none() => cells = Some(map.next_value_seed(RowsSeed)?),
                _ => return Err(de::Error::custom("not a plain split frame")),
            }
        }
        let cells = cells.ok_or_else(|| de::Error::custom("no data"))?;
        Ok(Frame { columns, cells })
    }
}

/// `data`: rows of cells, written into columns as they are read.
struct RowsSeed;

impl<'de> DeserializeSeed<'de> for RowsSeed {
    type Value = Vec<Vec<Cell>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowsSeed {
    type Value = Vec<Vec<Cell>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of rows")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut cols: Vec<Vec<Cell>> = Vec::new();
        let mut first = true;
        while seq.next_element_seed(RowSeed { cols: &mut cols, first })?.is_some() {
            first = false;
        }
        Ok(cols)
    }
}

/// One row: its cells appended to the columns (the first row makes them).
struct RowSeed<'a> {
    cols: &'a mut Vec<Vec<Cell>>,
    first: bool,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a row (a list of values)")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut j = 0;
        while let Some(cell) = seq.next_element::<Cell>()? {
            if self.first {
                self.cols.push(vec![cell]);
            } else {
                self.cols.get_mut(j).ok_or_else(|| de::Error::custom("a longer row"))?.push(cell);
            }
            j += 1;
        }
        if j != self.cols.len() {
            return Err(de::Error::custom("a shorter row"));
        }
        Ok(())
    }
}

impl<'de> de::Deserialize<'de> for Cell {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Cell, D::Error> {
        d.deserialize_any(CellVisitor)
    }
}

struct CellVisitor;

impl<'de> Visitor<'de> for CellVisitor {
    type Value = Cell;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Cell, E> {
        Ok(Cell::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Cell, E> {
        Ok(Cell::Bool(b))
    }

    fn visit_i64<E>(self, i: i64) -> Result<Cell, E> {
        Ok(Cell::Int(i))
    }

    fn visit_u64<E>(self, u: u64) -> Result<Cell, E> {
        Ok(i64::try_from(u).map_or_else(|_| Cell::Other(Box::new(Value::from(u))), Cell::Int))
    }

    fn visit_f64<E>(self, f: f64) -> Result<Cell, E> {
        Ok(Cell::Float(f))
    }

    fn visit_str<E>(self, s: &str) -> Result<Cell, E> {
        Ok(Cell::Other(Box::new(Value::String(s.to_owned()))))
    }

    fn visit_string<E>(self, s: String) -> Result<Cell, E> {
        Ok(Cell::Other(Box::new(Value::String(s))))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Cell, A::Error> {
        let v = Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        Ok(Cell::Other(Box::new(v)))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Cell, A::Error> {
        let v = Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(Cell::Other(Box::new(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The general reader's columns for a body it reads as a split frame.
    fn general(text: &str) -> Vec<(String, Vec<Value>)> {
        let Value::Object(mut body) = serde_json::from_str::<Value>(text).unwrap() else { panic!() };
        let Some(Value::Object(frame)) = body.remove("dataframe_split") else { panic!() };
        crate::request::split_columns(frame).unwrap()
    }

    #[test]
    fn cells_go_to_their_columns_as_the_general_reader_puts_them() {
        let bodies = [
            r#"{"dataframe_split": {"columns": ["a", "b", 3], "index": [0, 1], "data": [[1, "x", null], [2.5, true, [1, {"k": 2}]]]}}"#,
            r#"{"params": {"p": 1}, "dataframe_split": {"data": [[18446744073709551615, -3], [0.1, "é"]]}}"#,
        ];
        for body in bodies {
            let fast: Vec<(String, Vec<Value>)> = read(body)
                .unwrap()
                .into_iter()
                .map(|(n, c)| (n, c.into_iter().map(Cell::into_value).collect()))
                .collect();
            assert_eq!(fast, general(body), "{body}");
        }
        assert_eq!(std::mem::size_of::<Cell>(), 16);
    }

    #[test]
    fn anything_unusual_is_left_to_the_general_reader() {
        for body in [
            r#"{"dataframe_split": {"columns": ["a"], "data": []}}"#,
            r#"{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3]]}}"#,
            r#"{"dataframe_split": {"columns": ["a"], "data": [[1], [2, 3]]}}"#,
            r#"{"dataframe_split": {"columns": ["a", "b"], "data": [[1]]}}"#,
            r#"{"dataframe_split": {"data": [1, 2]}}"#,
            r#"{"dataframe_split": {"columns": ["a"]}}"#,
            r#"{"dataframe_split": {"columns": ["a"], "data": [[1]], "extra": 1}}"#,
            r#"{"dataframe_split": {"data": [[1]]}, "inputs": [1]}"#,
            r#"{"dataframe_records": [{"a": 1}]}"#,
            r#"{"dataframe_split": {"data": [[1]]}} trailing"#,
            r#"[1]"#,
        ] {
            assert_eq!(read(body), None, "{body}");
        }
    }
}
