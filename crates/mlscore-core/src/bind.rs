//! Binding a table to a model's signature: which frame column feeds which signature input,
//! with MLflow's type checks, before any data is read. A format then decides how the bound
//! columns reach its model.

use std::collections::HashSet;

use arrow_schema::{DataType as ArrowType, Field, Schema as ArrowSchema};
use mlscore_mlflow::{ColSpec, Schema, Signature, TensorSpec};

use crate::enforce::{Check, check_column, numpy_name};
use crate::error::{Error, Result};
use crate::scorer::BoundColumn;

/// Matches a frame (the columns the model receives, under the names it receives them) to a
/// signature's inputs and checks their types: named column signatures by name (missing
/// required columns are an error naming them, with the frame's other columns and a hint),
/// unnamed ones by position, tensor signatures by name or as one stacked input. Without a
/// signature every frame column is bound, in order.
pub fn signature_columns(signature: Option<&Signature>, frame: &ArrowSchema) -> Result<Vec<BoundColumn>> {
    let inputs = signature.and_then(|s| s.inputs.as_ref());
    match inputs {
        Some(Schema::Columns(cols)) if cols.first().is_some_and(|c| c.name.is_some()) => bind_named(frame, cols),
        Some(Schema::Columns(cols)) => {
            if frame.fields().len() < cols.len() {
                return Err(Error::Binding(format!(
                    "Model inference is missing inputs. The model signature declares {} inputs but the provided value only has {} inputs",
                    cols.len(),
                    frame.fields().len()
                )));
            }
            let columns = cols
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let f = frame.field(i);
                    Ok(BoundColumn {
                        index: i,
                        name: f.name().clone(),
                        spec: Some((format!("[{i}]"), c.ty.clone())),
                        check: check_column(f.name(), f.data_type(), &c.ty)?,
                        nan_ok: false,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(columns)
        }
        Some(Schema::Tensors(specs)) => bind_tensors(frame, specs),
        None => {
            let columns = frame
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| BoundColumn {
                    index: i,
                    name: f.name().clone(),
                    spec: None,
                    check: Check::None,
                    nan_ok: false,
                })
                .collect();
            Ok(columns)
        }
    }
}

fn bind_named(frame: &ArrowSchema, cols: &[ColSpec]) -> Result<Vec<BoundColumn>> {
    let mut missing = Vec::new();
    let mut columns = Vec::new();
    for spec in cols {
        let name = spec.name.as_deref().unwrap_or_default();
        match frame.index_of(name) {
            Ok(i) => {
                let f = frame.field(i);
                let check = check_column(name, f.data_type(), &spec.ty)?;
                columns.push(BoundColumn {
                    index: i,
                    name: name.to_string(),
                    spec: Some((name.to_string(), spec.ty.clone())),
                    check,
                    nan_ok: false,
                });
            }
            Err(_) if spec.required => missing.push(name.to_string()),
            Err(_) => {}
        }
    }
    if !missing.is_empty() {
        let wanted: HashSet<&str> = cols.iter().filter_map(|c| c.name.as_deref()).collect();
        let extra: Vec<String> =
            frame.fields().iter().map(|f| f.name().clone()).filter(|n| !wanted.contains(n.as_str())).collect();
        let close: Vec<String> = missing
            .iter()
            .filter_map(|m| {
                frame
                    .fields()
                    .iter()
                    .find(|f| f.name().eq_ignore_ascii_case(m))
                    .map(|f| format!("'{}' for '{m}'", f.name()))
            })
            .collect();
        let hint = if close.is_empty() {
            "pass the columns explicitly (--columns a,b,c in the signature's order, or predict(a, b, c) in SQL)"
                .to_string()
        } else {
            format!("names are case-sensitive: found {}", close.join(", "))
        };
        return Err(Error::MissingColumns { missing, extra, hint });
    }
    Ok(columns)
}

fn bind_tensors(frame: &ArrowSchema, specs: &[TensorSpec]) -> Result<Vec<BoundColumn>> {
    let unnamed = specs.len() == 1 && specs[0].name.is_none();
    let mut columns = Vec::new();
    if unnamed {
        let spec = &specs[0];
        let fields = frame.fields();
        if fields.len() == 1 && list_width(&fields[0]).is_some() {
            columns.push(BoundColumn {
                index: 0,
                name: fields[0].name().clone(),
                spec: None,
                check: Check::None,
                nan_ok: false,
            });
        } else {
            for (i, f) in fields.iter().enumerate() {
                let found = numpy_name(f.data_type());
                if found != spec.dtype {
                    return Err(Error::IncompatibleType {
                        column: f.name().clone(),
                        found,
                        expected: format!("tensor dtype {}", spec.dtype),
                        hint: Some("tensor signatures take columns of exactly their dtype (MLflow: dtype of input does not match expected dtype)".into()),
                    });
                }
                columns.push(BoundColumn {
                    index: i,
                    name: f.name().clone(),
                    spec: None,
                    check: Check::None,
                    nan_ok: false,
                });
            }
        }
    } else {
        let mut missing = Vec::new();
        for spec in specs {
            let name = spec.name.clone().unwrap_or_default();
            match frame.index_of(&name) {
                Ok(i) => columns.push(BoundColumn {
                    index: i,
                    name: name.clone(),
                    spec: None,
                    check: Check::None,
                    nan_ok: false,
                }),
                Err(_) => missing.push(name),
            }
        }
        if !missing.is_empty() {
            return Err(Error::MissingColumns {
                missing,
                extra: Vec::new(),
                hint: "the model's tensor signature names its inputs; provide columns with those names".into(),
            });
        }
    }
    Ok(columns)
}

/// The width of a list column: its fixed size, 0 for a variable-length list; `None` for others.
pub fn list_width(field: &Field) -> Option<usize> {
    match field.data_type() {
        ArrowType::FixedSizeList(_, w) => Some(*w as usize),
        ArrowType::List(_) | ArrowType::LargeList(_) => Some(0),
        _ => None,
    }
}
