//! A scorable model: an MLflow model, its compiled ONNX graph, and how a table feeds it.

use std::any::Any;
use std::io::Read;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType as ArrowType, Field, Schema as ArrowSchema};
use mlscore_core::bind::{list_width, signature_columns};
use mlscore_core::enforce::numpy_name;
use mlscore_core::{Binding, BoundColumn, Error, Result, Scorer};
use mlscore_mlflow::{MlflowModel, ModelFormat, Signature, StoreConfig};
use sha2::{Digest, Sha256};
use tract_onnx::prelude::*;

use crate::convert::{build_tensor, probabilities_to_map, tensor_to_array};
use crate::graph::{CHUNK_ROWS, ElemType, IoSpec, OnnxGraph};

/// A model ready to score: shared by all threads (`Arc<Model>`), compiled once.
#[derive(Debug)]
pub struct Model {
    /// The MLflow model (where it came from, its MLmodel).
    pub mlflow: MlflowModel,
    graph: OnnxGraph,
    signature: Option<Signature>,
    onnx_sha256: String,
}

/// How one ONNX input is built from the frame's columns: the plan of an ONNX [`Binding`].
#[derive(Debug, Clone, PartialEq)]
enum Feed {
    /// `[N, k]`: the columns side by side (k may be 1), or `[N]` when `rank1`.
    Stack { columns: Vec<usize>, elem: ElemType, rank1: bool },
    /// `[N, k]` from one list column of width `k`.
    List { column: usize, width: usize, elem: ElemType },
}

/// A graph's tree ensemble and the float64 columns of a batch it reads directly.
type Direct<'m, 'a> = (&'m crate::ops::DirectTrees, Vec<&'a [f64]>);

/// The feeds of a binding this model made.
fn feeds(binding: &Binding) -> Result<&[Feed]> {
    binding
        .plan::<Vec<Feed>>()
        .map(Vec::as_slice)
        .ok_or_else(|| Error::Binding("the binding was made by another model's scorer".into()))
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

    /// Compiles an opened MLflow model whose format is ONNX.
    pub fn from_mlflow(mlflow: MlflowModel) -> Result<Self> {
        let ModelFormat::Onnx { path } = &mlflow.format else {
            return Err(Error::UnsupportedFormat {
                uri: mlflow.resolution.uri.clone(),
                reason: format!("it is a {} model, not an ONNX graph", mlflow.format.name()),
            });
        };
        let graph = OnnxGraph::load(path)?;
        let onnx_sha256 = sha256_file(path)?;
        let signature = mlflow.enforced_signature().cloned();
        Ok(Self { mlflow, graph, signature, onnx_sha256 })
    }

    /// The compiled graph's declared inputs and outputs.
    pub fn graph(&self) -> &OnnxGraph {
        &self.graph
    }

    /// SHA-256 of the ONNX file, hex.
    pub fn onnx_sha256(&self) -> &str {
        &self.onnx_sha256
    }

    /// Maps the bound columns onto the ONNX inputs (§3.1 of MLflow's ONNX flavor).
    fn finish_columns(&self, frame: &ArrowSchema, mut columns: Vec<BoundColumn>) -> Result<Binding> {
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
        for c in &mut columns {
            c.nan_ok = feeds.iter().any(|f| match f {
                Feed::Stack { columns, elem, .. } => columns.contains(&c.index) && elem.is_float(),
                Feed::List { column, elem, .. } => *column == c.index && elem.is_float(),
            });
        }
        Ok(Binding { columns, warnings: Vec::new(), plan: Arc::new(feeds) })
    }

    /// The graph's outputs for every row of the frame. A batch larger than [`CHUNK_ROWS`] goes
    /// through the graph in chunks of that many rows (the last one shorter), each built from
    /// zero-copy slices of the columns, and the chunks' outputs are stacked.
    fn run(&self, binding: &Binding, frame: &[ArrayRef], rows: usize) -> Result<TVec<TValue>> {
        let infer = |e: TractError| Error::Inference { model: self.uri().to_string(), reason: format!("{e:#}") };
        if let Some((direct, columns)) = self.direct_columns(binding, frame, rows)? {
            let outs = direct.op.eval_columns(&columns, rows, direct.input_dt).map_err(infer)?;
            return direct
                .outputs
                .iter()
                .map(|&i| {
                    outs.get(i)
                        .cloned()
                        .ok_or_else(|| infer(TractError::msg(format!("the ensemble has no output {i}"))))
                })
                .collect();
        }
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

    /// The graph's tree ensemble and the float64 columns it reads directly (see
    /// [`OnnxGraph::scores_columns_directly`]): when the batch's feed is such columns, without
    /// nulls, side by side. Other feeds (integers, float32, lists, nulls) build the tensor.
    ///
    /// A random forest exported by skl2onnx (100 trees of depth 8, 28 features), 1M rows of
    /// Parquet: the model's share of `mlscore score` 0.48-0.52 -> 0.43-0.48 CPU seconds (the input tensor,
    /// tract's 1,024-row chunks and the stacking of their outputs skipped).
    fn direct_columns<'a>(
        &self,
        binding: &Binding,
        frame: &'a [ArrayRef],
        rows: usize,
    ) -> Result<Option<Direct<'_, 'a>>> {
        let Some(direct) = self.graph.direct() else { return Ok(None) };
        let [Feed::Stack { columns, rank1: false, .. }] = feeds(binding)? else { return Ok(None) };
        if columns.len() != direct.width {
            return Ok(None);
        }
        let mut values = Vec::with_capacity(columns.len());
        for idx in columns {
            match frame.get(*idx).and_then(|a| a.as_primitive_opt::<Float64Type>()) {
                Some(a) if a.null_count() == 0 && a.len() == rows => values.push(a.values().as_ref()),
                _ => return Ok(None),
            }
        }
        Ok(Some((direct, values)))
    }

    /// Builds the tensors [`Scorer::predict`] feeds the graph for a batch of the frame and returns
    /// how many values they hold: the Arrow to tensor stage alone (signature checks and null
    /// handling excluded), for benchmarks. The tensors themselves are tract's and stay inside.
    pub fn build_inputs(&self, binding: &Binding, frame: &[ArrayRef]) -> Result<usize> {
        Ok(self.input_tensors(binding, frame)?.iter().map(Tensor::len).sum())
    }

    fn input_tensors(&self, binding: &Binding, frame: &[ArrayRef]) -> Result<Vec<Tensor>> {
        let rows = frame.first().map_or(0, |a| a.len());
        feeds(binding)?.iter().map(|feed| self.feed(binding, feed, frame, rows)).collect()
    }

    fn feed(&self, binding: &Binding, feed: &Feed, frame: &[ArrayRef], rows: usize) -> Result<Tensor> {
        let name_of = |idx: usize| binding.column_name(idx);
        match feed {
            Feed::Stack { columns, elem, rank1 } => {
                let k = columns.len();
                if *rank1 && k != 1 {
                    // A one-dimensional input holds one value per row; a damaged graph can declare
                    // one while its signature names several columns.
                    return Err(Error::Binding(format!(
                        "the graph's input is one-dimensional (one value per row) but {k} columns feed it; \
                         the model's graph and signature disagree"
                    )));
                }
                let shape: Vec<usize> = if *rank1 { vec![rows] } else { vec![rows, k] };
                let names: Vec<String> = columns.iter().map(|idx| name_of(*idx)).collect();
                // The common case, float64 columns without nulls into a float32 input: the
                // kernels' transposition over the columns' slices, with no type dispatch a column
                // and block.
                let plain: Option<Vec<&[f64]>> = if *elem == ElemType::F32 {
                    columns
                        .iter()
                        .map(|idx| {
                            let a = frame[*idx].as_primitive_opt::<Float64Type>()?;
                            (a.null_count() == 0).then(|| a.values().as_ref())
                        })
                        .collect()
                } else {
                    None
                };
                build_tensor(*elem, &shape, |filler| {
                    // Row blocks: each block of the row-major buffer stays in L1 (64 rows of 28 f32 features
                    // are 7 KiB) while every column is written into it. Blocks of 256 rows (28 KiB) filled
                    // L1 with the columns' values besides: lr 11.3M -> 12.8M rows/s, hgb +5%, 8,192-row
                    // batches, one thread.
                    if let (Some(cols), crate::convert::TensorFiller::F32(out)) = (&plain, &mut *filler) {
                        mlscore_kernels::columns::fill_rows(cols, 0, out);
                        return Ok(());
                    }
                    const BLOCK: usize = 64;
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
}

impl Scorer for Model {
    fn mlflow(&self) -> &MlflowModel {
        &self.mlflow
    }

    fn format(&self) -> &str {
        "onnx"
    }

    fn artifact_sha256(&self) -> &str {
        &self.onnx_sha256
    }

    fn signature(&self) -> Option<&Signature> {
        self.signature.as_ref()
    }

    fn output_types(&self) -> Vec<(String, ArrowType)> {
        self.graph.outputs.iter().map(|o| (o.name.clone(), output_arrow_type(o))).collect()
    }

    fn bind(&self, frame: &ArrowSchema) -> Result<Binding> {
        let columns = signature_columns(self.signature.as_ref(), frame)?;
        self.finish_columns(frame, columns)
    }

    fn score(&self, binding: &Binding, frame: &[ArrayRef]) -> Result<Vec<(String, ArrayRef)>> {
        let rows = frame.first().map_or(0, |a| a.len());
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

    fn as_any(&self) -> &dyn Any {
        self
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

fn sha256_file(path: &std::path::Path) -> Result<String> {
    let io = |source| Error::Io { action: "read", path: path.to_path_buf(), source };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
