//! MLflow's signature enforcement (`_enforce_mlflow_datatype`), on Arrow types.
//!
//! pandas and numpy dtypes are what MLflow reasons about; each Arrow type is mapped to the
//! dtype pandas would give the same column, then MLflow's conversion matrix decides:
//!
//! | column ↓ / signature → | boolean | integer | long | float | double | string |
//! |---|---|---|---|---|---|---|
//! | int8/16/32, uint8 | ✗ | ✓ | ✓ | ✗ | ✓ | ✗ |
//! | uint16 | ✗ | ✓ | ✓ | ✗ | ✓ | ✗ |
//! | uint32 | ✗ | ✗ | ✓ | ✗ | ✓ | ✗ |
//! | int64 | ✗ | ✗ | ✓ | 0/1 only | 0/1 only | ✗ |
//! | float16/32 | ✗ | ✗ | ✗ | ✓ | ✓ | ✗ |
//! | float64 | ✗ | ✗ | ✗ | ✗ | ✓ | ✗ |
//! | bool | ✓ | ✗ | ✗ | ✗ | ✗ | ✗ |
//! | string | ✗ | ✗ | ✗ | ✗ | ✗ | ✓ |
//!
//! plus decimal → double, timestamps → datetime and binary → binary.

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_schema::DataType as ArrowType;
use mlscore_mlflow::{ColType, DataType};

use crate::error::{Error, Result};

/// What a column needs before it can be fed, once its type has been accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Nothing: every value converts.
    None,
    /// MLflow's int64 exception: the column may be fed as float/double only if every value is 0, 1 or null.
    ZeroOrOne,
}

/// The numpy dtype pandas gives a column of this Arrow type (the name MLflow prints).
pub fn numpy_name(t: &ArrowType) -> String {
    match t {
        ArrowType::Boolean => "bool".into(),
        ArrowType::Int8 => "int8".into(),
        ArrowType::Int16 => "int16".into(),
        ArrowType::Int32 => "int32".into(),
        ArrowType::Int64 => "int64".into(),
        ArrowType::UInt8 => "uint8".into(),
        ArrowType::UInt16 => "uint16".into(),
        ArrowType::UInt32 => "uint32".into(),
        ArrowType::UInt64 => "uint64".into(),
        ArrowType::Float16 => "float16".into(),
        ArrowType::Float32 => "float32".into(),
        ArrowType::Float64 => "float64".into(),
        ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View => "string".into(),
        ArrowType::Binary | ArrowType::LargeBinary | ArrowType::BinaryView | ArrowType::FixedSizeBinary(_) => {
            "bytes".into()
        }
        ArrowType::Timestamp(_, _) => "datetime64".into(),
        ArrowType::Decimal128(..) | ArrowType::Decimal256(..) => "decimal".into(),
        ArrowType::Dictionary(_, v) => numpy_name(v),
        other => format!("{other}"),
    }
}

fn is_string(t: &ArrowType) -> bool {
    match t {
        ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View => true,
        ArrowType::Dictionary(_, v) => is_string(v),
        _ => false,
    }
}

/// Decides whether a column of Arrow type `found` may be fed where the signature declares `expected`.
pub fn check_column(column: &str, found: &ArrowType, expected: &ColType) -> Result<Check> {
    let incompatible = |hint: Option<String>| Error::IncompatibleType {
        column: column.to_string(),
        found: numpy_name(found),
        expected: expected.to_string(),
        hint,
    };
    let ColType::Primitive(expected_prim) = expected else {
        return Err(Error::Binding(format!(
            "column '{column}' is declared as {expected} in the signature; mlscore feeds primitive columns to ONNX graphs only"
        )));
    };
    use ArrowType as A;
    use DataType as D;
    let ok = match (found, expected_prim) {
        (A::Null, _) => true, // all-null column: the null policy decides
        (A::Boolean, D::Boolean) => true,
        (A::Int8 | A::Int16 | A::Int32 | A::UInt8 | A::UInt16, D::Integer | D::Long | D::Double) => true,
        (A::UInt32, D::Long | D::Double) => true,
        (A::Int64, D::Long) => true,
        (A::Int64, D::Float | D::Double) => return Ok(Check::ZeroOrOne),
        (A::Float16 | A::Float32, D::Float | D::Double) => true,
        (A::Float64, D::Double) => true,
        (A::Decimal128(..) | A::Decimal256(..), D::Double) => true,
        (t, D::String) if is_string(t) => true,
        (A::Binary | A::LargeBinary | A::BinaryView | A::FixedSizeBinary(_), D::Binary) => true,
        (A::Timestamp(..), D::Datetime) => true,
        (A::Dictionary(_, v), _) => return check_column(column, v, expected),
        _ => false,
    };
    if ok {
        return Ok(Check::None);
    }
    Err(incompatible(cast_hint(found, *expected_prim)))
}

/// What to tell the user when a column is refused.
fn cast_hint(found: &ArrowType, expected: DataType) -> Option<String> {
    let sql = match expected {
        DataType::Float => "FLOAT",
        DataType::Double => "DOUBLE",
        DataType::Integer => "INT",
        DataType::Long => "BIGINT",
        DataType::Boolean => "BOOLEAN",
        DataType::String => "VARCHAR",
        _ => return None,
    };
    let lossy = match (found, expected) {
        (ArrowType::Float64, DataType::Float) => "MLflow refuses float64 -> float32 because it can lose precision",
        (ArrowType::Int64, DataType::Integer) => "MLflow refuses int64 -> int32 because it can overflow",
        (ArrowType::Int64 | ArrowType::UInt64, DataType::Double | DataType::Float) => {
            "MLflow refuses int64 -> float because large values lose precision"
        }
        (ArrowType::Float32 | ArrowType::Float64, DataType::Integer | DataType::Long) => {
            "a float column cannot become an integer one; if it holds integers with missing values, declare the column as double"
        }
        _ => "the types are not compatible",
    };
    Some(format!(
        "{lossy}; cast the column explicitly if the conversion is safe for your data, e.g. CAST(col AS {sql}) in `mlscore sql`"
    ))
}

/// Runs a deferred check on one batch's values.
pub fn run_check(check: Check, column: &str, array: &dyn Array, expected: &ColType) -> Result<()> {
    match check {
        Check::None => Ok(()),
        Check::ZeroOrOne => {
            let a = array.as_primitive::<Int64Type>();
            let bad = a.iter().flatten().filter(|v| *v != 0 && *v != 1).count();
            if bad == 0 {
                Ok(())
            } else {
                Err(Error::IncompatibleType {
                    column: column.to_string(),
                    found: "int64".into(),
                    expected: expected.to_string(),
                    hint: Some(format!(
                        "MLflow allows int64 -> float only when every value is 0 or 1, and {bad} values here are not; \
                         cast the column explicitly if the conversion is safe for your data"
                    )),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prim(t: DataType) -> ColType {
        ColType::Primitive(t)
    }

    #[test]
    fn the_conversion_matrix_matches_mlflow() {
        use ArrowType as A;
        use DataType as D;
        let targets = [D::Boolean, D::Integer, D::Long, D::Float, D::Double, D::String];
        // Rows: the table of MLflow's spec; 'z' is the int64 0/1 exception.
        let rows: [(ArrowType, &str); 11] = [
            (A::Int8, "-YY-Y-"),
            (A::Int16, "-YY-Y-"),
            (A::Int32, "-YY-Y-"),
            (A::UInt8, "-YY-Y-"),
            (A::UInt16, "-YY-Y-"),
            (A::UInt32, "--Y-Y-"),
            (A::Int64, "--Yzz-"),
            (A::Float32, "---YY-"),
            (A::Float64, "----Y-"),
            (A::Boolean, "Y-----"),
            (A::Utf8, "-----Y"),
        ];
        for (found, expect) in rows {
            for (t, e) in targets.iter().zip(expect.chars()) {
                let got = check_column("c", &found, &prim(*t));
                match e {
                    'Y' => assert_eq!(got.unwrap(), Check::None, "{found} -> {t}"),
                    'z' => assert_eq!(got.unwrap(), Check::ZeroOrOne, "{found} -> {t}"),
                    _ => assert!(got.is_err(), "{found} -> {t} should be refused"),
                }
            }
        }
        assert!(check_column("c", &A::UInt64, &prim(D::Long)).is_err());
        assert!(check_column("c", &A::UInt64, &prim(D::Double)).is_err());
        assert!(check_column("c", &A::Decimal128(10, 2), &prim(D::Double)).is_ok());
        assert!(check_column("c", &A::Dictionary(Box::new(A::Int32), Box::new(A::Utf8)), &prim(D::String)).is_ok());
    }

    #[test]
    fn refusals_name_the_column_and_say_what_to_do() {
        let err = check_column("income", &ArrowType::Float64, &prim(DataType::Float)).unwrap_err().to_string();
        assert!(
            err.contains("column 'income'") && err.contains("float64 to float") && err.contains("CAST(col AS FLOAT)"),
            "{err}"
        );
    }

    #[test]
    fn int64_zero_one_check_reads_the_values() {
        let ok = arrow_array::Int64Array::from(vec![Some(0), None, Some(1)]);
        assert!(run_check(Check::ZeroOrOne, "a", &ok, &prim(DataType::Double)).is_ok());
        let bad = arrow_array::Int64Array::from(vec![0, 2, 5]);
        let err = run_check(Check::ZeroOrOne, "a", &bad, &prim(DataType::Double)).unwrap_err().to_string();
        assert!(err.contains("2 values"), "{err}");
    }
}
