//! Arrow arrays to tensors and back.
//!
//! Inputs: each column is written into a row-major `[N, k]` (or `[N]`) buffer of the ONNX
//! input's element type, converting values the way numpy's `astype` does. Outputs: `[N]` and
//! `[N, 1]` tensors become plain columns, `[N, k]` tensors list columns.

use std::ops::Range;
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float32Array, Float64Array, Int32Array, Int64Array, ListArray, MapArray,
    StringArray, StructArray,
};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field};
use tract_onnx::prelude::*;

use crate::graph::{ElemType, MapKeys};
use mlscore_core::{Error, Result};

/// An element type a feed buffer can hold.
pub(crate) trait FeedElem: Datum + Copy + Default {
    fn from_f64(v: f64) -> Self;
    fn from_i64(v: i64) -> Self;
    fn from_u64(v: u64) -> Self;
    fn from_bool(v: bool) -> Self;
}

macro_rules! float_elem {
    ($t:ty) => {
        impl FeedElem for $t {
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn from_i64(v: i64) -> Self {
                v as $t
            }
            fn from_u64(v: u64) -> Self {
                v as $t
            }
            fn from_bool(v: bool) -> Self {
                if v { 1.0 } else { 0.0 }
            }
        }
    };
}
float_elem!(f32);
float_elem!(f64);

macro_rules! int_elem {
    ($t:ty) => {
        impl FeedElem for $t {
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn from_i64(v: i64) -> Self {
                v as $t
            }
            fn from_u64(v: u64) -> Self {
                v as $t
            }
            fn from_bool(v: bool) -> Self {
                <$t>::from(v)
            }
        }
    };
}
int_elem!(i64);
int_elem!(i32);

impl FeedElem for bool {
    fn from_f64(v: f64) -> Self {
        v != 0.0
    }
    fn from_i64(v: i64) -> Self {
        v != 0
    }
    fn from_u64(v: u64) -> Self {
        v != 0
    }
    fn from_bool(v: bool) -> Self {
        v
    }
}

/// Writes rows `rows` of `array` into `out[row * stride + offset]` (rows counted from the
/// range's start), converting each value. Null slots receive `null_value` (callers have already
/// applied the null policy). The range is read in place: no sliced array is made.
pub(crate) fn write_column<E: FeedElem>(
    out: &mut [E],
    stride: usize,
    offset: usize,
    array: &dyn Array,
    rows: Range<usize>,
    null_value: E,
    column: &str,
) -> Result<()> {
    let start = rows.start;
    macro_rules! prim {
        ($ty:ty, $conv:expr) => {{
            let a = array.as_primitive::<$ty>();
            // One row of the output a chunk: a pointer step a value, no index arithmetic or
            // bounds check (`skip(..).step_by(..)` over the elements cost 3-4 ns a value).
            if let Some(out) = out.get_mut(offset..) {
                for (o, v) in out.chunks_mut(stride.max(1)).zip(&a.values()[rows.clone()]) {
                    o[0] = $conv(*v);
                }
            }
        }};
    }
    match array.data_type() {
        DataType::Float64 => prim!(Float64Type, E::from_f64),
        DataType::Float32 => prim!(Float32Type, |v: f32| E::from_f64(f64::from(v))),
        DataType::Float16 => prim!(Float16Type, |v| E::from_f64(f64::from(v))),
        DataType::Int64 => prim!(Int64Type, E::from_i64),
        DataType::Int32 => prim!(Int32Type, |v: i32| E::from_i64(i64::from(v))),
        DataType::Int16 => prim!(Int16Type, |v: i16| E::from_i64(i64::from(v))),
        DataType::Int8 => prim!(Int8Type, |v: i8| E::from_i64(i64::from(v))),
        DataType::UInt64 => prim!(UInt64Type, E::from_u64),
        DataType::UInt32 => prim!(UInt32Type, |v: u32| E::from_u64(u64::from(v))),
        DataType::UInt16 => prim!(UInt16Type, |v: u16| E::from_u64(u64::from(v))),
        DataType::UInt8 => prim!(UInt8Type, |v: u8| E::from_u64(u64::from(v))),
        DataType::Boolean => {
            let a = array.as_boolean();
            for row in rows.clone() {
                out[(row - start) * stride + offset] = E::from_bool(a.value(row));
            }
        }
        DataType::Decimal128(_, scale) => {
            let a = array.as_primitive::<Decimal128Type>();
            let div = 10f64.powi(i32::from(*scale));
            for (row, v) in a.values()[rows.clone()].iter().enumerate() {
                out[row * stride + offset] = E::from_f64(*v as f64 / div);
            }
        }
        DataType::Null => {}
        other => {
            return Err(Error::Binding(format!(
                "column '{column}' of type {other} cannot be fed to a numeric model input"
            )));
        }
    }
    if matches!(array.data_type(), DataType::Null) {
        for row in rows {
            out[(row - start) * stride + offset] = null_value;
        }
    } else if let Some(nulls) = array.nulls().filter(|n| n.null_count() > 0) {
        for row in rows.filter(|r| nulls.is_null(*r)) {
            out[(row - start) * stride + offset] = null_value;
        }
    }
    Ok(())
}

/// Writes string values (nulls as empty strings, which the caller has vetted).
pub(crate) fn write_strings(
    out: &mut [String],
    stride: usize,
    offset: usize,
    array: &dyn Array,
    column: &str,
) -> Result<()> {
    let mut put = |row: usize, v: Option<&str>| out[row * stride + offset] = v.unwrap_or_default().to_string();
    match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().iter().enumerate().for_each(|(r, v)| put(r, v)),
        DataType::LargeUtf8 => array.as_string::<i64>().iter().enumerate().for_each(|(r, v)| put(r, v)),
        DataType::Utf8View => array.as_string_view().iter().enumerate().for_each(|(r, v)| put(r, v)),
        DataType::Dictionary(_, _) => {
            let cast = arrow_cast::cast(array, &DataType::Utf8)
                .map_err(|e| Error::Binding(format!("column '{column}': {e}")))?;
            return write_strings(out, stride, offset, cast.as_ref(), column);
        }
        other => {
            return Err(Error::Binding(format!(
                "column '{column}' of type {other} cannot be fed to a string model input"
            )));
        }
    }
    Ok(())
}

/// Builds an `[N, k]` (or `[N]` when `shape` has one dim) tensor of `elem` from a filler.
pub(crate) fn build_tensor(
    elem: ElemType,
    shape: &[usize],
    fill: impl FnOnce(&mut TensorFiller<'_>) -> Result<()>,
) -> Result<Tensor> {
    let len: usize = shape.iter().product();
    // Numbers are written straight into the tensor's own (aligned) buffer: building an ndarray
    // first would cost a copy of the whole batch (tract copies arrays into its aligned storage).
    macro_rules! numeric {
        ($t:ty, $variant:ident) => {{
            let internal = |e: TractError| Error::Binding(format!("internal tensor error: {e:#}"));
            let mut t = Tensor::zero_dt(<$t>::datum_type(), shape).map_err(internal)?;
            let mut view = t.try_as_plain_ram_mut().map_err(internal)?;
            fill(&mut TensorFiller::$variant(view.as_slice_mut::<$t>().map_err(internal)?))?;
            Ok(t)
        }};
    }
    let t = match elem {
        ElemType::F32 => numeric!(f32, F32),
        ElemType::F64 => numeric!(f64, F64),
        ElemType::I64 => numeric!(i64, I64),
        ElemType::I32 => numeric!(i32, I32),
        ElemType::Bool => numeric!(bool, Bool),
        ElemType::String => {
            let mut buf = vec![String::new(); len];
            fill(&mut TensorFiller::String(&mut buf))?;
            tract_ndarray::ArrayD::from_shape_vec(shape, buf).map(IntoTensor::into_tensor)
        }
        other => {
            return Err(Error::Binding(format!("model inputs of type {} are not supported", other.onnx_name())));
        }
    };
    t.map_err(|e| Error::Binding(format!("internal shape error: {e}")))
}

/// A typed buffer being filled column by column.
#[derive(Debug)]
pub(crate) enum TensorFiller<'a> {
    F32(&'a mut [f32]),
    F64(&'a mut [f64]),
    I64(&'a mut [i64]),
    I32(&'a mut [i32]),
    Bool(&'a mut [bool]),
    String(&'a mut [String]),
}

impl TensorFiller<'_> {
    /// The part of the buffer from element `start` to `end`.
    pub(crate) fn rows(&mut self, start: usize, end: usize) -> TensorFiller<'_> {
        match self {
            Self::F32(b) => TensorFiller::F32(&mut b[start..end]),
            Self::F64(b) => TensorFiller::F64(&mut b[start..end]),
            Self::I64(b) => TensorFiller::I64(&mut b[start..end]),
            Self::I32(b) => TensorFiller::I32(&mut b[start..end]),
            Self::Bool(b) => TensorFiller::Bool(&mut b[start..end]),
            Self::String(b) => TensorFiller::String(&mut b[start..end]),
        }
    }

    /// Writes rows `rows` of a column at `offset` of rows of width `stride`; nulls become NaN
    /// (floats) or 0.
    pub(crate) fn column(
        &mut self,
        stride: usize,
        offset: usize,
        array: &dyn Array,
        rows: Range<usize>,
        column: &str,
    ) -> Result<()> {
        match self {
            Self::F32(b) => write_column(b, stride, offset, array, rows, f32::NAN, column),
            Self::F64(b) => write_column(b, stride, offset, array, rows, f64::NAN, column),
            Self::I64(b) => write_column(b, stride, offset, array, rows, 0, column),
            Self::I32(b) => write_column(b, stride, offset, array, rows, 0, column),
            Self::Bool(b) => write_column(b, stride, offset, array, rows, false, column),
            Self::String(b) => write_strings(b, stride, offset, array.slice(rows.start, rows.len()).as_ref(), column),
        }
    }
}

/// A ZipMap output: `[N, C]` probabilities as one `{class label: probability}` map a row.
pub(crate) fn probabilities_to_map(t: &Tensor, name: &str, keys: &MapKeys) -> Result<ArrayRef> {
    let values = flat_values(t, name)?;
    let shape = t.shape();
    let (rows, width) = (shape.first().copied().unwrap_or(0), shape.iter().skip(1).product::<usize>());
    let count = match keys {
        MapKeys::Ints(k) => k.len(),
        MapKeys::Strings(k) => k.len(),
    };
    if count != width {
        return Err(Error::ResultConversion(format!(
            "model output '{name}': {width} probabilities a row for {count} class labels"
        )));
    }
    // The keys repeat once a row. Built by appending, not from a flat-mapped iterator: arrow's
    // `from_iter_values` needs an exact upper size bound, which a flat map never has (it panicked).
    let key_array: ArrayRef = match keys {
        MapKeys::Ints(k) => {
            let mut values = Vec::with_capacity(rows * k.len());
            (0..rows).for_each(|_| values.extend_from_slice(k));
            Arc::new(Int64Array::from(values))
        }
        MapKeys::Strings(k) => {
            let bytes: usize = k.iter().map(String::len).sum();
            let mut b = StringBuilder::with_capacity(rows * k.len(), rows * bytes);
            for _ in 0..rows {
                k.iter().for_each(|key| b.append_value(key));
            }
            Arc::new(b.finish())
        }
    };
    let fields = vec![
        Field::new("key", key_array.data_type().clone(), false),
        Field::new("value", values.data_type().clone(), true),
    ];
    let entries = StructArray::try_new(fields.into(), vec![key_array, values], None)
        .map_err(|e| Error::ResultConversion(e.to_string()))?;
    let field = Arc::new(Field::new("entries", entries.data_type().clone(), false));
    let offsets = OffsetBuffer::from_lengths(std::iter::repeat_n(width, rows));
    let map =
        MapArray::try_new(field, offsets, entries, None, false).map_err(|e| Error::ResultConversion(e.to_string()))?;
    Ok(Arc::new(map))
}

/// Converts an output tensor to a column: `[N]`/`[N,1]` to a flat column, `[N,k]` to a list
/// column.
pub(crate) fn tensor_to_array(t: &Tensor, name: &str) -> Result<ArrayRef> {
    let shape = t.shape();
    let n = shape.first().copied().unwrap_or(1);
    let width: usize = shape.iter().skip(1).product();
    if shape.len() > 2 {
        return Err(Error::ResultConversion(format!(
            "model output '{name}' has shape {shape:?}; only [N] and [N, k] outputs can be returned"
        )));
    }
    let values = flat_values(t, name)?;
    if shape.len() <= 1 || width == 1 {
        return Ok(values);
    }
    let offsets = OffsetBuffer::from_lengths(std::iter::repeat_n(width, n));
    let field = Arc::new(Field::new("item", values.data_type().clone(), false));
    let list = ListArray::try_new(field, offsets, values, None).map_err(|e| Error::ResultConversion(e.to_string()))?;
    Ok(Arc::new(list))
}

fn flat_values(t: &Tensor, name: &str) -> Result<ArrayRef> {
    let err = |e: TractError| Error::ResultConversion(format!("model output '{name}': {e:#}"));
    let dt = t.datum_type();
    let view = t.try_as_plain_ram().map_err(err)?;
    Ok(if dt == f32::datum_type() {
        Arc::new(Float32Array::from(view.as_slice::<f32>().map_err(err)?.to_vec()))
    } else if dt == f64::datum_type() {
        Arc::new(Float64Array::from(view.as_slice::<f64>().map_err(err)?.to_vec()))
    } else if dt == i64::datum_type() {
        Arc::new(Int64Array::from(view.as_slice::<i64>().map_err(err)?.to_vec()))
    } else if dt == i32::datum_type() {
        Arc::new(Int32Array::from(view.as_slice::<i32>().map_err(err)?.to_vec()))
    } else if dt == bool::datum_type() {
        Arc::new(BooleanArray::from(view.as_slice::<bool>().map_err(err)?.to_vec()))
    } else if dt == String::datum_type() {
        Arc::new(StringArray::from_iter_values(view.as_slice::<String>().map_err(err)?.iter()))
    } else if dt == TDim::datum_type() || dt.is_integer() {
        // ONNX Cast(to=INT64) comes out of tract as TDim; every other integer type widens to int64.
        let cast = t.cast_to::<i64>().map_err(err)?;
        let view = cast.try_as_plain_ram().map_err(err)?;
        Arc::new(Int64Array::from(view.as_slice::<i64>().map_err(err)?.to_vec()))
    } else if dt.is_float() {
        let cast = t.cast_to::<f32>().map_err(err)?;
        let view = cast.try_as_plain_ram().map_err(err)?;
        Arc::new(Float32Array::from(view.as_slice::<f32>().map_err(err)?.to_vec()))
    } else {
        return Err(Error::ResultConversion(format!("model output '{name}' has unsupported element type {dt:?}")));
    })
}
