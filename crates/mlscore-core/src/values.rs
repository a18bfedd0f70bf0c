//! Reading Arrow columns as the float64 values most model formats compute in.

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_schema::DataType as ArrowType;

/// A numeric, boolean or null column as float64 values, nulls as NaN (booleans as 0 and 1);
/// `None` for any other type.
///
/// ```
/// use arrow_array::Int32Array;
/// let v = mlscore_core::float64_values(&Int32Array::from(vec![Some(3), None])).unwrap();
/// assert_eq!(v[0], 3.0);
/// assert!(v[1].is_nan());
/// ```
pub fn float64_values(a: &dyn Array) -> Option<Vec<f64>> {
    // Without nulls, straight from the values buffer (no validity check per value).
    macro_rules! prim {
        ($t:ty) => {{
            let p = a.as_primitive::<$t>();
            if p.null_count() == 0 {
                p.values().iter().map(|v| *v as f64).collect()
            } else {
                p.iter().map(|v| v.map_or(f64::NAN, |v| v as f64)).collect()
            }
        }};
    }
    Some(match a.data_type() {
        ArrowType::Float64 => prim!(Float64Type),
        ArrowType::Float32 => prim!(Float32Type),
        ArrowType::Int64 => prim!(Int64Type),
        ArrowType::Int32 => prim!(Int32Type),
        ArrowType::Int16 => prim!(Int16Type),
        ArrowType::Int8 => prim!(Int8Type),
        ArrowType::UInt64 => prim!(UInt64Type),
        ArrowType::UInt32 => prim!(UInt32Type),
        ArrowType::UInt16 => prim!(UInt16Type),
        ArrowType::UInt8 => prim!(UInt8Type),
        ArrowType::Boolean => a.as_boolean().iter().map(|v| v.map_or(f64::NAN, f64::from)).collect(),
        ArrowType::Null => vec![f64::NAN; a.len()],
        _ => return None,
    })
}
