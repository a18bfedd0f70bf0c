//! A scorable model: an MLflow model, its compiled ONNX graph, and how a table feeds it.

use std::collections::HashSet;
use std::fmt;
use std::io::Read;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_buffer::{BooleanBufferBuilder, NullBuffer};
use arrow_schema::{DataType as ArrowType, Field, Schema as ArrowSchema};
use mlscore_mlflow::{ColType, MlflowModel, Schema, Signature, StoreConfig};
use sha2::{Digest, Sha256};
use tract_onnx::prelude::*;

use crate::convert::{build_tensor, probabilities_to_map, tensor_to_array};
use crate::enforce::{Check, check_column, numpy_name, run_check};
use crate::error::{Error, Result};
use crate::graph::{CHUNK_ROWS, ElemType, IoSpec, OnnxGraph};

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

/// A model ready to score: shared by all threads (`Arc<Model>`), compiled once.
#[derive(Debug)]
pub struct Model {
    /// The MLflow model (where it came from, its MLmodel).
    pub mlflow: MlflowModel,
    graph: OnnxGraph,
    signature: Option<Signature>,
    onnx_sha256: String,
}

/// One column the model reads: which table column, under which signature name and type.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundColumn {
    /// Index of the column in the frame given to [`Model::bind`].
    pub index: usize,
    /// The column's name in that frame.
    pub name: String,
    /// The signature column it feeds, with its type.
    pub spec: Option<(String, ColType)>,
    /// A value check to run on each batch.
    pub check: Check,
}

/// How one ONNX input is built from the frame's columns.
#[derive(Debug, Clone, PartialEq)]
enum Feed {
    /// `[N, k]`: the columns side by side (k may be 1), or `[N]` when `rank1`.
    Stack { columns: Vec<usize>, elem: ElemType, rank1: bool },
    /// `[N, k]` from one list column of width `k`.
    List { column: usize, width: usize, elem: ElemType },
}

/// A table's columns matched to a model's inputs, decided once per query before any data is read.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    /// The columns read, in the order of the model's inputs.
    pub columns: Vec<BoundColumn>,
    feeds: Vec<Feed>,
    /// Things the user should know (e.g. positional arguments whose names differ from the signature's).
    pub warnings: Vec<String>,
}

/// The result of scoring one batch.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// One array per ONNX output, in output order.
    pub outputs: Vec<(String, ArrayRef)>,
    /// Rows that had a null input (null under [`NullPolicy::Null`], NaN inputs under [`NullPolicy::Nan`]).
    pub null_rows: usize,
}

impl Model {
    /// Resolves `uri` against the process's MLflow configuration and compiles the model.
    pub fn load(uri: &str) -> Result<Self> {
        Self::load_with(uri, &StoreConfig::from_env())
    }

    /// Resolves `uri` against the given stores and compiles the model.
    pub fn load_with(uri: &str, config: &StoreConfig) -> Result<Self> {
        Self::from_mlflow(MlflowModel::load_with(uri, config)?)
    }

    /// Compiles an opened MLflow model.
    pub fn from_mlflow(mlflow: MlflowModel) -> Result<Self> {
        let graph = OnnxGraph::load(&mlflow.onnx_path)?;
        let onnx_sha256 = sha256_file(&mlflow.onnx_path)?;
        let signature = mlflow.enforced_signature().cloned();
        Ok(Self { mlflow, graph, signature, onnx_sha256 })
    }

    /// The URI the model was loaded from.
    pub fn uri(&self) -> &str {
        &self.mlflow.resolution.uri
    }

    /// The signature that is enforced (none for models without one, or with a type-hint signature).
    pub fn signature(&self) -> Option<&Signature> {
        self.signature.as_ref()
    }

    /// The compiled graph's declared inputs and outputs.
    pub fn graph(&self) -> &OnnxGraph {
        &self.graph
    }

    /// SHA-256 of the ONNX file, hex.
    pub fn onnx_sha256(&self) -> &str {
        &self.onnx_sha256
    }

    /// The signature's input column names, in order (what a no-argument call reads).
    pub fn input_names(&self) -> Vec<String> {
        match self.signature.as_ref().and_then(|s| s.inputs.as_ref()) {
            Some(schema) if schema.is_named() => schema.names().into_iter().map(str::to_string).collect(),
            _ => Vec::new(),
        }
    }

    /// Matches a frame (the columns the model receives, under the names it receives them) to
    /// the model's inputs and checks their types: everything that can fail before data is read.
    pub fn bind(&self, frame: &ArrowSchema) -> Result<Binding> {
        let inputs = self.signature.as_ref().and_then(|s| s.inputs.as_ref());
        match inputs {
            Some(Schema::Columns(cols)) if cols.first().is_some_and(|c| c.name.is_some()) => {
                self.bind_named(frame, cols)
            }
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
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                self.finish_columns(frame, columns)
            }
            Some(Schema::Tensors(specs)) => self.bind_tensors(frame, specs),
            None => {
                let columns = frame
                    .fields()
                    .iter()
                    .enumerate()
                    .map(|(i, f)| BoundColumn { index: i, name: f.name().clone(), spec: None, check: Check::None })
                    .collect();
                self.finish_columns(frame, columns)
            }
        }
    }

    fn bind_named(&self, frame: &ArrowSchema, cols: &[mlscore_mlflow::ColSpec]) -> Result<Binding> {
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
        self.finish_columns(frame, columns)
    }

    /// Maps the bound columns onto the ONNX inputs (§3.1 of MLflow's ONNX flavor).
    fn finish_columns(&self, frame: &ArrowSchema, columns: Vec<BoundColumn>) -> Result<Binding> {
        let inputs = &self.graph.inputs;
        let feeds = if inputs.len() == 1 {
            let input = &inputs[0];
            let elem = feed_elem(input)?;
            if let [col] = columns.as_slice()
                && let Some(width) = list_width(frame.field(col.index))
            {
                let width = match width {
                    0 => input.width().ok_or_else(|| {
                        Error::Binding(format!(
                            "column '{}' is a list, but the ONNX input '{}' ({}) declares no fixed width",
                            col.name, input.name, input.type_text
                        ))
                    })?,
                    w => check_width(input, w, &columns)?,
                };
                vec![Feed::List { column: col.index, width, elem }]
            } else {
                check_width(input, columns.len(), &columns)?;
                for c in &columns {
                    check_feedable(&c.name, frame.field(c.index).data_type(), elem)?;
                }
                vec![Feed::Stack {
                    columns: columns.iter().map(|c| c.index).collect(),
                    elem,
                    rank1: input.rank() == Some(1),
                }]
            }
        } else {
            let mut feeds = Vec::with_capacity(inputs.len());
            for input in inputs {
                let elem = feed_elem(input)?;
                let Some(col) = columns.iter().find(|c| c.spec.as_ref().map_or(&c.name, |(n, _)| n) == &input.name)
                else {
                    let have: Vec<&str> =
                        columns.iter().map(|c| c.spec.as_ref().map_or(c.name.as_str(), |(n, _)| n.as_str())).collect();
                    return Err(Error::Binding(format!(
                        "the ONNX graph has {} inputs, one per column, and none is given for input '{}' (columns given: {have:?})",
                        inputs.len(),
                        input.name
                    )));
                };
                check_feedable(&col.name, frame.field(col.index).data_type(), elem)?;
                // skl2onnx declares per-column inputs as [N, 1]; MLflow feeds 1-D arrays there and fails. Feed what is declared.
                feeds.push(Feed::Stack { columns: vec![col.index], elem, rank1: input.rank() == Some(1) });
            }
            feeds
        };
        Ok(Binding { columns, feeds, warnings: Vec::new() })
    }

    fn bind_tensors(&self, frame: &ArrowSchema, specs: &[mlscore_mlflow::TensorSpec]) -> Result<Binding> {
        let unnamed = specs.len() == 1 && specs[0].name.is_none();
        let mut columns = Vec::new();
        if unnamed {
            let spec = &specs[0];
            let fields = frame.fields();
            if fields.len() == 1 && list_width(&fields[0]).is_some() {
                columns.push(BoundColumn { index: 0, name: fields[0].name().clone(), spec: None, check: Check::None });
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
                    columns.push(BoundColumn { index: i, name: f.name().clone(), spec: None, check: Check::None });
                }
            }
        } else {
            let mut missing = Vec::new();
            for spec in specs {
                let name = spec.name.clone().unwrap_or_default();
                match frame.index_of(&name) {
                    Ok(i) => columns.push(BoundColumn { index: i, name: name.clone(), spec: None, check: Check::None }),
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
        self.finish_columns(frame, columns)
    }

    /// Scores one batch of the frame the binding was made for.
    pub fn predict(&self, binding: &Binding, frame: &[ArrayRef], nulls: NullPolicy) -> Result<Prediction> {
        let rows = frame.first().map_or(0, |a| a.len());
        for c in &binding.columns {
            if let Some((_, ty)) = &c.spec {
                run_check(c.check, &c.name, frame[c.index].as_ref(), ty)?;
            }
        }
        let (null_rows, mask) = null_rows(binding, frame, nulls)?;
        let outputs = match mask {
            Some(mask) if mask.null_count() > 0 => self.predict_valid_rows(binding, frame, &mask)?,
            _ => self.outputs(binding, frame, rows)?,
        };
        Ok(Prediction { outputs, null_rows })
    }

    /// Scores the rows `valid` marks and gives the others null predictions: under
    /// [`NullPolicy::Null`] the model never sees a row with a null input (a NaN or 0 in its place
    /// could fail the model, as a Binarizer fails on NaN, or cost time for nothing).
    fn predict_valid_rows(
        &self,
        binding: &Binding,
        frame: &[ArrayRef],
        valid: &NullBuffer,
    ) -> Result<Vec<(String, ArrayRef)>> {
        let rows = valid.len();
        let conversion = |e: arrow_schema::ArrowError| Error::ResultConversion(e.to_string());
        if valid.null_count() == rows {
            return Ok(self
                .output_types()
                .into_iter()
                .map(|(name, ty)| (name, arrow_array::new_null_array(&ty, rows)))
                .collect());
        }
        let keep = arrow_array::BooleanArray::new(valid.inner().clone(), None);
        let kept: Vec<ArrayRef> = frame
            .iter()
            .map(|a| arrow_select::filter::filter(a.as_ref(), &keep))
            .collect::<std::result::Result<_, _>>()
            .map_err(conversion)?;
        let scored = self.outputs(binding, &kept, rows - valid.null_count())?;
        // Row r takes the next scored row when it is valid, a null otherwise.
        let mut next = 0u32;
        let positions: arrow_array::UInt32Array = valid
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
            .map(|(name, a)| {
                let placed = arrow_select::take::take(a.as_ref(), &positions, None).map_err(conversion)?;
                Ok((name, placed))
            })
            .collect()
    }

    /// Every output of the graph for `rows` rows of the frame, as Arrow columns.
    fn outputs(&self, binding: &Binding, frame: &[ArrayRef], rows: usize) -> Result<Vec<(String, ArrayRef)>> {
        let outs = if rows == 0 { None } else { Some(self.run(binding, frame, rows)?) };
        let mut outputs = Vec::with_capacity(self.graph.outputs.len());
        for (i, spec) in self.graph.outputs.iter().enumerate() {
            let array = match &outs {
                Some(outs) => match &spec.map_keys {
                    Some(keys) => probabilities_to_map(&outs[i], &spec.name, keys)?,
                    None => tensor_to_array(&outs[i], &spec.name)?,
                },
                None => arrow_array::new_empty_array(&output_arrow_type(spec)),
            };
            outputs.push((spec.name.clone(), array));
        }
        Ok(outputs)
    }

    /// The graph's outputs for every row of the frame. A batch larger than [`CHUNK_ROWS`] goes
    /// through the graph in chunks of that many rows (the last one shorter), each built from
    /// zero-copy slices of the columns, and the chunks' outputs are stacked.
    fn run(&self, binding: &Binding, frame: &[ArrayRef], rows: usize) -> Result<TVec<TValue>> {
        let infer = |e: TractError| Error::Inference { model: self.uri().to_string(), reason: format!("{e:#}") };
        let run_one = |frame: &[ArrayRef]| -> Result<TVec<TValue>> {
            let tensors = self.input_tensors(binding, frame)?.into_iter().map(IntoTValue::into_tvalue).collect();
            self.graph.run(tensors).map_err(infer)
        };
        if rows <= CHUNK_ROWS {
            return run_one(frame);
        }
        let mut chunks = Vec::with_capacity(rows.div_ceil(CHUNK_ROWS));
        for start in (0..rows).step_by(CHUNK_ROWS) {
            let len = CHUNK_ROWS.min(rows - start);
            let sliced: Vec<ArrayRef> = frame.iter().map(|a| a.slice(start, len)).collect();
            let outs = run_one(&sliced)?;
            if outs.iter().any(|t| t.shape().first() != Some(&len)) {
                // An output that is not one row per input row cannot be stacked: whole batch.
                return run_one(frame);
            }
            chunks.push(outs);
        }
        let outputs = chunks.first().map_or(0, TVec::len);
        (0..outputs)
            .map(|i| {
                let parts: Vec<&Tensor> = chunks.iter().map(|c| &*c[i]).collect();
                Ok(Tensor::stack_tensors(0, &parts).map_err(infer)?.into_tvalue())
            })
            .collect()
    }

    /// The tensors [`Model::predict`] feeds the graph for a batch of the frame: the Arrow to
    /// tensor stage alone (signature checks and null handling excluded), for benchmarks and debugging.
    pub fn input_tensors(&self, binding: &Binding, frame: &[ArrayRef]) -> Result<Vec<Tensor>> {
        let rows = frame.first().map_or(0, |a| a.len());
        binding.feeds.iter().map(|feed| self.feed(binding, feed, frame, rows)).collect()
    }

    fn feed(&self, binding: &Binding, feed: &Feed, frame: &[ArrayRef], rows: usize) -> Result<Tensor> {
        let name_of = |idx: usize| {
            binding.columns.iter().find(|c| c.index == idx).map_or_else(|| idx.to_string(), |c| c.name.clone())
        };
        match feed {
            Feed::Stack { columns, elem, rank1 } => {
                let k = columns.len();
                let shape: Vec<usize> = if *rank1 { vec![rows] } else { vec![rows, k] };
                let names: Vec<String> = columns.iter().map(|idx| name_of(*idx)).collect();
                build_tensor(*elem, &shape, |filler| {
                    // Row blocks: each block of the row-major buffer stays in L1 (256 rows of 28 f32 features
                    // are 28 KiB) while every column is written into it.
                    const BLOCK: usize = 256;
                    for start in (0..rows).step_by(BLOCK) {
                        let len = BLOCK.min(rows - start);
                        let mut block = filler.rows(start * k, (start + len) * k);
                        for (j, idx) in columns.iter().enumerate() {
                            block.column(k, j, frame[*idx].as_ref(), start..start + len, &names[j])?;
                        }
                    }
                    Ok(())
                })
            }
            Feed::List { column, width, elem } => {
                let array = frame[*column].as_ref();
                let name = name_of(*column);
                let (values, offsets) = list_parts(array, &name)?;
                for r in 0..rows {
                    if array.is_valid(r) && offsets[r + 1] - offsets[r] != *width {
                        return Err(Error::InvalidValues {
                            column: name,
                            reason: format!(
                                "row {r} holds {} values; the model takes {width}",
                                offsets[r + 1] - offsets[r]
                            ),
                        });
                    }
                }
                let start = offsets[0];
                let values = values.slice(start, rows * width);
                build_tensor(*elem, &[rows, *width], |filler| {
                    filler.column(1, 0, values.as_ref(), 0..values.len(), &name)
                })
            }
        }
    }

    /// The Arrow types of the outputs as [`Model::predict`] returns them.
    pub fn output_types(&self) -> Vec<(String, ArrowType)> {
        self.graph.outputs.iter().map(|o| (o.name.clone(), output_arrow_type(o))).collect()
    }
}

fn output_arrow_type(spec: &IoSpec) -> ArrowType {
    if let Some(keys) = &spec.map_keys {
        let key = if matches!(keys, crate::graph::MapKeys::Ints(_)) { ArrowType::Int64 } else { ArrowType::Utf8 };
        let entries = ArrowType::Struct(
            vec![Field::new("key", key, false), Field::new("value", ArrowType::Float32, true)].into(),
        );
        return ArrowType::Map(Arc::new(Field::new("entries", entries, false)), false);
    }
    let elem = match spec.elem {
        Some(ElemType::F64) => ArrowType::Float64,
        Some(ElemType::I32) => ArrowType::Int32,
        Some(ElemType::Bool) => ArrowType::Boolean,
        Some(ElemType::String) => ArrowType::Utf8,
        Some(e) if e.is_float() => ArrowType::Float32,
        Some(_) => ArrowType::Int64,
        None => ArrowType::Float32,
    };
    match spec.shape.as_deref() {
        Some([_, crate::graph::Dim::Fixed(1)]) | Some([_]) | Some([]) => elem,
        Some([_, _]) => ArrowType::List(Arc::new(Field::new("item", elem, false))),
        _ => elem,
    }
}

fn feed_elem(input: &IoSpec) -> Result<ElemType> {
    input.elem.ok_or_else(|| {
        Error::Binding(format!("ONNX input '{}' is {}; only tensors can be fed", input.name, input.type_text))
    })
}

fn check_width(input: &IoSpec, given: usize, columns: &[BoundColumn]) -> Result<usize> {
    match input.width() {
        Some(w) if w != given => Err(Error::Binding(format!(
            "the ONNX input '{}' ({}) takes {w} values a row, but {given} are given ({})",
            input.name,
            input.type_text,
            columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
        ))),
        _ => Ok(given),
    }
}

fn check_feedable(column: &str, t: &ArrowType, elem: ElemType) -> Result<()> {
    let string_col = matches!(t, ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View)
        || matches!(t, ArrowType::Dictionary(_, v) if matches!(**v, ArrowType::Utf8 | ArrowType::LargeUtf8));
    let ok = if elem == ElemType::String {
        string_col
    } else {
        t.is_numeric() || matches!(t, ArrowType::Boolean | ArrowType::Null)
    };
    if ok {
        Ok(())
    } else {
        Err(Error::IncompatibleType {
            column: column.to_string(),
            found: numpy_name(t),
            expected: format!("the model's {} input", elem.onnx_name()),
            hint: None,
        })
    }
}

fn list_width(field: &Field) -> Option<usize> {
    match field.data_type() {
        ArrowType::FixedSizeList(_, w) => Some(*w as usize),
        ArrowType::List(_) | ArrowType::LargeList(_) => Some(0),
        _ => None,
    }
}

fn list_parts(array: &dyn Array, column: &str) -> Result<(ArrayRef, Vec<usize>)> {
    use arrow_array::cast::AsArray;
    Ok(match array.data_type() {
        ArrowType::List(_) => {
            let l = array.as_list::<i32>();
            (l.values().clone(), l.value_offsets().iter().map(|o| *o as usize).collect())
        }
        ArrowType::LargeList(_) => {
            let l = array.as_list::<i64>();
            (l.values().clone(), l.value_offsets().iter().map(|o| *o as usize).collect())
        }
        ArrowType::FixedSizeList(_, w) => {
            let l = array.as_fixed_size_list();
            let w = *w as usize;
            (l.values().clone(), (0..=l.len()).map(|r| r * w).collect())
        }
        other => {
            return Err(Error::Binding(format!("column '{column}' of type {other} is not a list")));
        }
    })
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
            for c in &with_nulls {
                let t = frame[c.index].data_type();
                let feeds_float = binding.feeds.iter().any(|f| match f {
                    Feed::Stack { columns, elem, .. } => columns.contains(&c.index) && elem.is_float(),
                    Feed::List { column, elem, .. } => *column == c.index && elem.is_float(),
                });
                if !feeds_float {
                    return Err(Error::InvalidValues {
                        column: c.name.clone(),
                        reason: format!(
                            "{} null values, and this {} column feeds a non-float model input where NaN does not exist; use --on-null null",
                            frame[c.index].null_count(),
                            numpy_name(t)
                        ),
                    });
                }
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
    model: &Model,
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

fn required_count(model: &Model) -> usize {
    model
        .signature()
        .and_then(|s| s.inputs.as_ref())
        .and_then(Schema::columns)
        .map_or(0, |c| c.iter().filter(|c| c.required).count())
}

/// Scores a whole record batch whose columns carry the model's input names.
pub fn predict_batch(model: &Model, batch: &RecordBatch, nulls: NullPolicy) -> Result<Prediction> {
    let binding = model.bind(batch.schema().as_ref())?;
    model.predict(&binding, batch.columns(), nulls)
}

fn sha256_file(path: &std::path::Path) -> Result<String> {
    let mut f =
        std::fs::File::open(path).map_err(|e| Error::Load { path: path.to_path_buf(), reason: e.to_string() })?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::Load { path: path.to_path_buf(), reason: e.to_string() })?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
