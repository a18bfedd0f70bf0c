//! The scoring contract: what every model format implements ([`Scorer`]), and what the engine,
//! the CLI, the Python package and a server rely on: binding a table to a model before any data
//! is read, MLflow's signature checks and spark_udf's null semantics on every batch, one Arrow
//! column per model output.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use arrow_buffer::{BooleanBufferBuilder, NullBuffer};
use arrow_schema::{DataType as ArrowType, Field, Schema as ArrowSchema};
use mlscore_mlflow::{ColType, MlflowModel, Schema, Signature};

use crate::enforce::{Check, numpy_name, run_check};
use crate::error::{Error, Result};
use crate::result_type::ResultType;

/// What happens to rows with a null in a model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum NullPolicy {
    /// Fail, naming the column and the number of nulls (the default: MLflow's own behaviour
    /// varies by column type and is rarely what anyone wants).
    #[default]
    Error,
    /// The row gets a null prediction; the model never sees it.
    Null,
    /// Nulls reach the model as NaN, as they do in `spark_udf` for float columns.
    Nan,
}

impl std::str::FromStr for NullPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "error" => Ok(Self::Error),
            "null" => Ok(Self::Null),
            "nan" => Ok(Self::Nan),
            _ => Err(Error::Binding(format!("unknown null policy '{s}': use error, null or nan"))),
        }
    }
}

impl fmt::Display for NullPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Error => "error",
            Self::Null => "null",
            Self::Nan => "nan",
        })
    }
}

/// One column the model reads: which table column, under which signature name and type.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundColumn {
    /// Index of the column in the frame given to [`Scorer::bind`].
    pub index: usize,
    /// The column's name in that frame.
    pub name: String,
    /// The signature column it feeds, with its type.
    pub spec: Option<(String, ColType)>,
    /// A value check to run on each batch.
    pub check: Check,
    /// Whether the model reads it as floating-point values, where NaN can stand for a null
    /// ([`NullPolicy::Nan`] is refused for the others).
    pub nan_ok: bool,
}

/// A table's columns matched to a model's inputs, decided once per query before any data is read.
#[derive(Clone)]
pub struct Binding {
    /// The columns read, in the order of the model's inputs.
    pub columns: Vec<BoundColumn>,
    /// Things the user should know (e.g. positional arguments whose names differ from the signature's).
    pub warnings: Vec<String>,
    /// How the format feeds these columns to its model, decided at bind time (for ONNX, which
    /// columns are stacked into which input tensor). Only the scorer that made it reads it.
    pub plan: Arc<dyn Any + Send + Sync>,
}

impl fmt::Debug for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Binding").field("columns", &self.columns).field("warnings", &self.warnings).finish()
    }
}

impl Binding {
    /// The format's plan, if it is of type `T`.
    pub fn plan<T: 'static>(&self) -> Option<&T> {
        self.plan.downcast_ref::<T>()
    }

    /// The name a frame column is bound under (its index if it is not bound).
    pub fn column_name(&self, index: usize) -> String {
        self.columns.iter().find(|c| c.index == index).map_or_else(|| index.to_string(), |c| c.name.clone())
    }
}

/// The result of scoring one batch.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// One array per model output, in output order.
    pub outputs: Vec<(String, ArrayRef)>,
    /// Rows that had a null input (null under [`NullPolicy::Null`], NaN inputs under [`NullPolicy::Nan`]).
    pub null_rows: usize,
}

/// A model ready to score, whatever its format: shared by every thread (`Arc<dyn Scorer>`),
/// loaded once.
///
/// A format implements the required methods; the provided ones ([`Scorer::predict`] above all)
/// give every format the same MLflow semantics.
pub trait Scorer: fmt::Debug + Send + Sync {
    /// The MLflow model (where it came from, its MLmodel).
    fn mlflow(&self) -> &MlflowModel;

    /// The format's name (`onnx`, ...), as provenance records it.
    fn format(&self) -> &str;

    /// SHA-256 (hex) of the artifact that is scored: what provenance records.
    fn artifact_sha256(&self) -> &str;

    /// The signature that is enforced (none for models without one, or with a type-hint signature).
    fn signature(&self) -> Option<&Signature>;

    /// The outputs' names and Arrow types, as [`Scorer::predict`] returns them.
    fn output_types(&self) -> Vec<(String, ArrowType)>;

    /// Matches a frame (the columns the model receives, under the names it receives them) to
    /// the model's inputs and checks their types: everything that can fail before data is read.
    fn bind(&self, frame: &ArrowSchema) -> Result<Binding>;

    /// Scores every row of a frame that [`Scorer::bind`] accepted, after the signature checks and
    /// the null policy: one array per output, as long as the frame (empty for an empty frame).
    /// Bound columns hold nulls only under [`NullPolicy::Nan`], where float inputs read them as NaN.
    fn score(&self, binding: &Binding, frame: &[ArrayRef]) -> Result<Vec<(String, ArrayRef)>>;

    /// The concrete scorer, for what only one format can tell (the ONNX graph's inputs, say).
    fn as_any(&self) -> &dyn Any;

    /// How many outputs, the first ones, make up what MLflow's pyfunc `predict` returns (all,
    /// unless the format adds more). The default result type and every result type but a struct
    /// are built from those; the others (an XGBoost classifier's probabilities and margins next
    /// to its labels) are asked for by name in a struct result type.
    fn pyfunc_outputs(&self) -> usize {
        self.output_types().len()
    }

    /// The result type used when none is given: that of the pyfunc outputs.
    fn default_result_type(&self) -> Result<ResultType> {
        let types = self.output_types();
        ResultType::infer_from_outputs(&types[..self.pyfunc_outputs().min(types.len())])
    }

    /// Converts this model's outputs (from [`Scorer::predict`]) to one column of type `ty`.
    fn convert(&self, ty: &ResultType, outputs: &[(String, ArrayRef)]) -> Result<ArrayRef> {
        ty.convert_with(outputs, self.pyfunc_outputs())
    }

    /// The URI the model was loaded from.
    fn uri(&self) -> &str {
        &self.mlflow().resolution.uri
    }

    /// The signature's input column names, in order (what a no-argument call reads).
    fn input_names(&self) -> Vec<String> {
        match self.signature().and_then(|s| s.inputs.as_ref()) {
            Some(schema) if schema.is_named() => schema.names().into_iter().map(str::to_string).collect(),
            _ => Vec::new(),
        }
    }

    /// Scores one batch of the frame the binding was made for: MLflow's value checks, then the
    /// null policy, then the model.
    fn predict(&self, binding: &Binding, frame: &[ArrayRef], nulls: NullPolicy) -> Result<Prediction> {
        for c in &binding.columns {
            if let Some((_, ty)) = &c.spec {
                run_check(c.check, &c.name, frame[c.index].as_ref(), ty)?;
            }
        }
        let (null_rows, mask) = null_rows(binding, frame, nulls)?;
        let outputs = match mask {
            Some(valid) if valid.null_count() > 0 => score_valid_rows(self, binding, frame, &valid)?,
            _ => self.score(binding, frame)?,
        };
        Ok(Prediction { outputs, null_rows })
    }
}

/// Scores the rows `valid` marks and gives the others null predictions: under
/// [`NullPolicy::Null`] the model never sees a row with a null input (a NaN or 0 in its place
/// could fail the model, as an ONNX Binarizer fails on NaN, or cost time for nothing).
fn score_valid_rows<S: Scorer + ?Sized>(
    scorer: &S,
    binding: &Binding,
    frame: &[ArrayRef],
    valid: &NullBuffer,
) -> Result<Vec<(String, ArrayRef)>> {
    let rows = valid.len();
    let conversion = |e: arrow_schema::ArrowError| Error::ResultConversion(e.to_string());
    if valid.null_count() == rows {
        return Ok(scorer
            .output_types()
            .into_iter()
            .map(|(name, ty)| (name, arrow_array::new_null_array(&ty, rows)))
            .collect());
    }
    let keep = BooleanArray::new(valid.inner().clone(), None);
    let kept: Vec<ArrayRef> = frame
        .iter()
        .map(|a| arrow_select::filter::filter(a.as_ref(), &keep))
        .collect::<std::result::Result<_, _>>()
        .map_err(conversion)?;
    let scored = scorer.score(binding, &kept)?;
    // Row r takes the next scored row when it is valid, a null otherwise.
    let mut next = 0u32;
    let positions: UInt32Array = valid
        .iter()
        .map(|is_valid| {
            is_valid.then(|| {
                next += 1;
                next - 1
            })
        })
        .collect();
    scored
        .into_iter()
        .map(|(name, a)| Ok((name, arrow_select::take::take(a.as_ref(), &positions, None).map_err(conversion)?)))
        .collect()
}

/// Applies the null policy: an error under `Error`, the output validity mask under `Null`.
fn null_rows(binding: &Binding, frame: &[ArrayRef], policy: NullPolicy) -> Result<(usize, Option<NullBuffer>)> {
    let with_nulls: Vec<&BoundColumn> = binding.columns.iter().filter(|c| frame[c.index].null_count() > 0).collect();
    if with_nulls.is_empty() {
        return Ok((0, None));
    }
    match policy {
        NullPolicy::Error => {
            let c = with_nulls[0];
            let others: Vec<String> =
                with_nulls[1..].iter().map(|c| format!("'{}' ({})", c.name, frame[c.index].null_count())).collect();
            Err(Error::InvalidValues {
                column: c.name.clone(),
                reason: format!(
                    "{} null values in a batch of {} rows{}; the model cannot take nulls. Choose what nulls mean: \
                     --on-null null (null prediction for those rows) or --on-null nan (nulls reach the model as NaN, as in MLflow)",
                    frame[c.index].null_count(),
                    frame[c.index].len(),
                    if others.is_empty() { String::new() } else { format!(" (also null: {})", others.join(", ")) }
                ),
            })
        }
        NullPolicy::Nan => {
            if let Some(c) = with_nulls.iter().find(|c| !c.nan_ok) {
                return Err(Error::InvalidValues {
                    column: c.name.clone(),
                    reason: format!(
                        "{} null values, and this {} column feeds a non-float model input where NaN does not exist; use --on-null null",
                        frame[c.index].null_count(),
                        numpy_name(frame[c.index].data_type())
                    ),
                });
            }
            let mut any = vec![false; frame[0].len()];
            for c in &with_nulls {
                if let Some(n) = frame[c.index].nulls() {
                    n.iter().enumerate().filter(|(_, v)| !v).for_each(|(r, _)| any[r] = true);
                }
            }
            Ok((any.iter().filter(|b| **b).count(), None))
        }
        NullPolicy::Null => {
            let len = frame[0].len();
            let mut valid = BooleanBufferBuilder::new(len);
            valid.append_n(len, true);
            for c in &with_nulls {
                if let Some(n) = frame[c.index].nulls() {
                    n.iter().enumerate().filter(|(_, v)| !v).for_each(|(r, _)| valid.set_bit(r, false));
                }
            }
            let buf = NullBuffer::new(valid.finish());
            Ok((buf.null_count(), Some(buf)))
        }
    }
}

/// Renames columns given by position to the signature's input names (spark_udf's positional
/// call style), and warns where a given name differs from the one it is fed as: MLflow silently
/// scores wrong data when columns are passed in another order.
pub fn positional_frame(
    model: &dyn Scorer,
    schema: &ArrowSchema,
    columns: &[String],
) -> Result<(ArrowSchema, Vec<usize>, Vec<String>)> {
    let mut indices = Vec::with_capacity(columns.len());
    for c in columns {
        indices.push(schema.index_of(c).map_err(|_| {
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            Error::Binding(format!("no column named '{c}' in the input (its columns: {})", names.join(", ")))
        })?);
    }
    let sig_names = model.input_names();
    let mut warnings = Vec::new();
    if !sig_names.is_empty() && columns.len() < required_count(model) {
        return Err(Error::Binding(format!(
            "Model input is missing required columns. Expected {} required input columns {:?}, but the model received only {} unnamed input columns",
            required_count(model),
            sig_names,
            columns.len()
        )));
    }
    let fields: Vec<Field> = indices
        .iter()
        .enumerate()
        .map(|(pos, idx)| {
            let f = schema.field(*idx);
            let name = sig_names
                .get(pos)
                .cloned()
                .unwrap_or_else(|| if sig_names.is_empty() { f.name().clone() } else { pos.to_string() });
            if !sig_names.is_empty() && pos < sig_names.len() && f.name() != &name {
                warnings.push(format!(
                    "column '{}' is passed in position {} and is scored as the model's input '{name}'",
                    f.name(),
                    pos + 1
                ));
            }
            Field::new(name, f.data_type().clone(), f.is_nullable())
        })
        .take(if sig_names.is_empty() { usize::MAX } else { sig_names.len() })
        .collect();
    let n = fields.len();
    indices.truncate(n);
    Ok((ArrowSchema::new(fields), indices, warnings))
}

fn required_count(model: &dyn Scorer) -> usize {
    model
        .signature()
        .and_then(|s| s.inputs.as_ref())
        .and_then(Schema::columns)
        .map_or(0, |c| c.iter().filter(|c| c.required).count())
}

/// Scores a whole record batch whose columns carry the model's input names.
pub fn predict_batch(model: &dyn Scorer, batch: &RecordBatch, nulls: NullPolicy) -> Result<Prediction> {
    let binding = model.bind(batch.schema().as_ref())?;
    model.predict(&binding, batch.columns(), nulls)
}
