//! An ONNX graph compiled by tract, with mlscore's own operators registered.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tract_onnx::pb;
use tract_onnx::prelude::*;

use mlscore_core::{Error, Result};

/// ONNX tensor element types mlscore feeds and reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElemType {
    /// `tensor(float)`
    F32,
    /// `tensor(double)`
    F64,
    /// `tensor(float16)`
    F16,
    /// `tensor(int8)`
    I8,
    /// `tensor(int16)`
    I16,
    /// `tensor(int32)`
    I32,
    /// `tensor(int64)`
    I64,
    /// `tensor(uint8)`
    U8,
    /// `tensor(uint16)`
    U16,
    /// `tensor(uint32)`
    U32,
    /// `tensor(uint64)`
    U64,
    /// `tensor(bool)`
    Bool,
    /// `tensor(string)`
    String,
}

impl ElemType {
    /// From ONNX's `TensorProto.DataType` number.
    pub fn from_onnx(code: i32) -> Option<Self> {
        Some(match code {
            1 => Self::F32,
            2 => Self::U8,
            3 => Self::I8,
            4 => Self::U16,
            5 => Self::I16,
            6 => Self::I32,
            7 => Self::I64,
            8 => Self::String,
            9 => Self::Bool,
            10 => Self::F16,
            11 => Self::F64,
            12 => Self::U32,
            13 => Self::U64,
            _ => return None,
        })
    }

    /// tract's datum type for it.
    pub(crate) fn datum_type(self) -> DatumType {
        match self {
            Self::F32 => f32::datum_type(),
            Self::F64 => f64::datum_type(),
            Self::F16 => f16::datum_type(),
            Self::I8 => i8::datum_type(),
            Self::I16 => i16::datum_type(),
            Self::I32 => i32::datum_type(),
            Self::I64 => i64::datum_type(),
            Self::U8 => u8::datum_type(),
            Self::U16 => u16::datum_type(),
            Self::U32 => u32::datum_type(),
            Self::U64 => u64::datum_type(),
            Self::Bool => bool::datum_type(),
            Self::String => String::datum_type(),
        }
    }

    /// ONNX's name, as onnxruntime prints it (`tensor(float)`).
    pub fn onnx_name(self) -> &'static str {
        match self {
            Self::F32 => "tensor(float)",
            Self::F64 => "tensor(double)",
            Self::F16 => "tensor(float16)",
            Self::I8 => "tensor(int8)",
            Self::I16 => "tensor(int16)",
            Self::I32 => "tensor(int32)",
            Self::I64 => "tensor(int64)",
            Self::U8 => "tensor(uint8)",
            Self::U16 => "tensor(uint16)",
            Self::U32 => "tensor(uint32)",
            Self::U64 => "tensor(uint64)",
            Self::Bool => "tensor(bool)",
            Self::String => "tensor(string)",
        }
    }

    /// Whether it is a floating point type.
    pub fn is_float(self) -> bool {
        matches!(self, Self::F32 | Self::F64 | Self::F16)
    }
}

/// One dimension of a declared ONNX shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size.
    Fixed(usize),
    /// A named, variable size (`dim_param`).
    Named(String),
    /// Declared but unknown (`?`).
    Unknown,
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Named(s) => f.write_str(s),
            Dim::Unknown => f.write_str("?"),
        }
    }
}

/// The class labels of a ZipMap output: its maps' keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapKeys {
    /// `classlabels_int64s`
    Ints(Vec<i64>),
    /// `classlabels_strings`
    Strings(Vec<String>),
}

/// What the ONNX file declares for one graph input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoSpec {
    /// Name.
    pub name: String,
    /// Element type; `None` when it is not a tensor (a sequence of maps, as skl2onnx's ZipMap writes).
    pub elem: Option<ElemType>,
    /// Declared shape, if any.
    pub shape: Option<Vec<Dim>>,
    /// The declared type as text (`tensor(float)[?,6]`, `seq(map(int64,tensor(float)))`).
    pub type_text: String,
    /// For an output written by skl2onnx's ZipMap: the keys of its `{class: probability}` maps.
    pub map_keys: Option<MapKeys>,
}

impl IoSpec {
    /// The declared width of a `[N, k]` tensor: `Some(k)` when fixed.
    pub fn width(&self) -> Option<usize> {
        match self.shape.as_deref() {
            Some([_, Dim::Fixed(k)]) => Some(*k),
            _ => None,
        }
    }

    /// Declared rank, if a shape is declared.
    pub fn rank(&self) -> Option<usize> {
        self.shape.as_ref().map(Vec::len)
    }
}

/// The rows of one chunk: batches larger than this are scored chunk by chunk.
pub const CHUNK_ROWS: usize = 1024;

/// A compiled ONNX graph: immutable, shared by all threads.
#[derive(Clone)]
pub struct OnnxGraph {
    path: PathBuf,
    /// The plan for any number of rows (a symbolic batch dimension).
    plan: Arc<TypedSimplePlan>,
    /// The same graph compiled for exactly [`CHUNK_ROWS`] rows: with the batch size known, tract
    /// picks matrix kernels and packings for it (an MLP runs ~1.5x faster per row), and a chunk's
    /// intermediates stay in cache.
    chunk_plan: Option<Arc<TypedSimplePlan>>,
    /// A graph that is one tree ensemble: batches of float64 columns skip the tensor and tract.
    direct: Option<Arc<crate::ops::DirectTrees>>,
    /// Graph inputs (initializers excluded), in graph order.
    pub inputs: Vec<IoSpec>,
    /// Graph outputs, in graph order.
    pub outputs: Vec<IoSpec>,
    /// `ai.onnx` opset imported by the file.
    pub opset: i64,
    /// `ai.onnx.ml` opset imported, if any.
    pub ml_opset: Option<i64>,
    /// The file's producer (`skl2onnx 1.20.0`).
    pub producer: String,
}

impl fmt::Debug for OnnxGraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnnxGraph")
            .field("path", &self.path)
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .finish_non_exhaustive()
    }
}

/// Runs one of tract's steps over a graph read from `path`, turning a panic inside tract (it
/// asserts on some malformed graphs) into an error naming the file: a damaged model must never
/// bring down the process (in the Python wheel, a Spark task).
fn guarded<T>(path: &Path, step: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    mlscore_core::catch_panic(f).unwrap_or_else(|said| {
        Err(Error::Load {
            kind: "ONNX graph",
            path: path.to_path_buf(),
            reason: format!(
                "tract failed while {step} ({said}): the file is damaged or uses a form tract does not handle"
            ),
        })
    })
}

/// tract's ONNX framework with mlscore's operators registered over the stock ones.
pub(crate) fn framework() -> tract_onnx::Onnx {
    let mut fw = tract_onnx::onnx();
    crate::ops::register(&mut fw.op_register);
    fw
}

impl OnnxGraph {
    /// Loads and compiles the graph at `path`. External data (`<uuid>.data` files) is read
    /// relative to the file's directory.
    pub fn load(path: &Path) -> Result<Self> {
        let load_err =
            |e: TractError| Error::Load { kind: "ONNX graph", path: path.to_path_buf(), reason: format!("{e:#}") };
        let fw = framework();
        let proto = fw.proto_model_for_path(path).map_err(load_err)?;
        check_supported(&fw, &proto, path)?;
        let graph = proto.graph.as_ref().ok_or_else(|| Error::Load {
            kind: "ONNX graph",
            path: path.to_path_buf(),
            reason: "the file holds no graph".into(),
        })?;
        let initializers: std::collections::HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let inputs: Vec<IoSpec> =
            graph.input.iter().filter(|i| !initializers.contains(i.name.as_str())).map(io_spec).collect();
        let mut outputs: Vec<IoSpec> = graph.output.iter().map(io_spec).collect();
        // ZipMap outputs are sequences of maps; mlscore returns them as map columns keyed by the class labels.
        for node in graph.node.iter().filter(|n| n.op_type == "ZipMap") {
            let Some(out) = outputs.iter_mut().find(|o| node.output.first() == Some(&o.name)) else { continue };
            let attr = |name: &str| node.attribute.iter().find(|a| a.name == name);
            let keys = match (attr("classlabels_int64s"), attr("classlabels_strings")) {
                (Some(a), _) if !a.ints.is_empty() => MapKeys::Ints(a.ints.clone()),
                (_, Some(a)) => {
                    MapKeys::Strings(a.strings.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect())
                }
                _ => continue,
            };
            out.elem = Some(ElemType::F32);
            out.type_text = format!(
                "seq(map({}, tensor(float)))",
                if matches!(keys, MapKeys::Ints(_)) { "int64" } else { "string" }
            );
            out.map_keys = Some(keys);
        }
        let opset =
            proto.opset_import.iter().find(|o| o.domain.is_empty() || o.domain == "ai.onnx").map_or(0, |o| o.version);
        let ml_opset = proto.opset_import.iter().find(|o| o.domain == "ai.onnx.ml").map(|o| o.version);
        let producer = format!("{} {}", proto.producer_name, proto.producer_version).trim().to_string();

        // tract indexes its outlets by these names without checking: a damaged file would panic.
        let produced: std::collections::HashSet<&str> = graph
            .node
            .iter()
            .flat_map(|n| n.output.iter().map(String::as_str))
            .chain(graph.input.iter().map(|i| i.name.as_str()))
            .chain(initializers.iter().copied())
            .collect();
        if let Some(o) = graph.output.iter().find(|o| !produced.contains(o.name.as_str())) {
            return Err(Error::Load {
                kind: "ONNX graph",
                path: path.to_path_buf(),
                reason: format!(
                    "graph output '{}' is produced by no node, input or initializer: the file is damaged",
                    o.name
                ),
            });
        }
        let dir = path.parent().and_then(Path::to_str);
        let parsed = guarded(path, "reading the graph", || fw.parse(&proto, dir).map_err(load_err))?;
        if !parsed.unresolved_inputs.is_empty() {
            return Err(Error::Load {
                kind: "ONNX graph",
                path: path.to_path_buf(),
                reason: format!("unresolved inputs {:?}", parsed.unresolved_inputs),
            });
        }
        let mut model = parsed.model;
        let n = model.sym("N");
        for (ix, spec) in inputs.iter().enumerate() {
            let elem = spec.elem.ok_or_else(|| Error::Load {
                kind: "ONNX graph",
                path: path.to_path_buf(),
                reason: format!(
                    "input '{}' is not a tensor ({}); only tensor inputs can be fed",
                    spec.name, spec.type_text
                ),
            })?;
            let shape: Vec<TDim> = match spec.shape.as_deref() {
                None | Some([]) => vec![n.to_dim()],
                Some(dims) => dims
                    .iter()
                    .enumerate()
                    .map(|(i, d)| match (i, d) {
                        (0, _) => Ok(n.to_dim()),
                        (_, Dim::Fixed(k)) => Ok((*k).to_dim()),
                        _ => Err(Error::Load {
                            kind: "ONNX graph",
                            path: path.to_path_buf(),
                            reason: format!(
                                "input '{}' has a variable dimension {i} ({}); only the batch dimension may vary",
                                spec.name, spec.type_text
                            ),
                        }),
                    })
                    .collect::<Result<_>>()?,
            };
            model.set_input_fact(ix, InferenceFact::dt_shape(elem.datum_type(), shape)).map_err(load_err)?;
        }
        let typed = guarded(path, "typing the graph", || model.into_typed().map_err(load_err))?;
        let compile = |typed: TypedModel| -> TractResult<Arc<TypedSimplePlan>> {
            let optimized = crate::ops::rewrite_optimized(typed.into_optimized()?)?;
            optimized.into_runnable()
        };
        // Optional: the symbolic plan scores every batch size on its own.
        let chunk_plan = guarded(path, "compiling the graph", || {
            Ok(typed.set_symbols(&HashMap::from([(n, CHUNK_ROWS.to_dim())])).and_then(compile).ok())
        })?;
        let plan = guarded(path, "compiling the graph", || compile(typed).map_err(load_err))?;
        let direct = crate::ops::direct_trees(plan.model()).filter(|d| d.outputs.len() == outputs.len()).map(Arc::new);
        Ok(Self { path: path.to_path_buf(), plan, chunk_plan, direct, inputs, outputs, opset, ml_opset, producer })
    }

    /// The ONNX file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the graph is one tree ensemble over its input (TreeEnsembleClassifier,
    /// TreeEnsembleRegressor or TreeEnsemble; a ZipMap and a cast of its integer labels to int64
    /// after it allowed), which scores float64 columns without nulls directly: no input tensor
    /// is built and tract does not run. Other columns and graphs go through tract.
    pub fn scores_columns_directly(&self) -> bool {
        self.direct.is_some()
    }

    pub(crate) fn direct(&self) -> Option<&crate::ops::DirectTrees> {
        self.direct.as_deref()
    }

    /// Runs the graph on one tensor per input; returns one tensor per output. Inputs of exactly
    /// [`CHUNK_ROWS`] rows run on the plan compiled for that size (see [`Model::predict`], which
    /// feeds large batches in such chunks).
    ///
    /// [`Model::predict`]: mlscore_core::Scorer::predict
    pub(crate) fn run(&self, inputs: TVec<TValue>) -> std::result::Result<TVec<TValue>, TractError> {
        match &self.chunk_plan {
            Some(plan) if inputs.first().and_then(|t| t.shape().first()) == Some(&CHUNK_ROWS) => plan.run(inputs),
            _ => self.plan.run(inputs),
        }
    }
}

fn io_spec(v: &pb::ValueInfoProto) -> IoSpec {
    let tensor =
        v.r#type.as_ref().and_then(|t| t.value.as_ref()).map(|tract_onnx::pb::type_proto::Value::TensorType(t)| t);
    match tensor {
        Some(t) => {
            let elem = ElemType::from_onnx(t.elem_type);
            let shape = t.shape.as_ref().map(|s| {
                s.dim
                    .iter()
                    .map(|d| match &d.value {
                        Some(pb::tensor_shape_proto::dimension::Value::DimValue(k)) if *k >= 0 => {
                            Dim::Fixed(*k as usize)
                        }
                        Some(pb::tensor_shape_proto::dimension::Value::DimParam(p)) if !p.is_empty() => {
                            Dim::Named(p.clone())
                        }
                        _ => Dim::Unknown,
                    })
                    .collect::<Vec<_>>()
            });
            let dims = shape
                .as_ref()
                .map(|s| format!("[{}]", s.iter().map(Dim::to_string).collect::<Vec<_>>().join(",")))
                .unwrap_or_default();
            let ty = elem.map_or_else(|| format!("tensor(type {})", t.elem_type), |e| e.onnx_name().to_string());
            IoSpec { name: v.name.clone(), elem, shape, type_text: format!("{ty}{dims}"), map_keys: None }
        }
        // tract's protobuf only models tensor types: sequences and maps decode as "no value".
        None => IoSpec {
            name: v.name.clone(),
            elem: None,
            shape: None,
            type_text: "non-tensor (sequence or map)".into(),
            map_keys: None,
        },
    }
}

/// Every node whose operator has no builder is reported at once, with its domain and node name.
fn check_supported(fw: &tract_onnx::Onnx, proto: &pb::ModelProto, path: &Path) -> Result<()> {
    fn walk(fw: &tract_onnx::Onnx, g: &pb::GraphProto, out: &mut Vec<String>) {
        for node in &g.node {
            if !fw.op_register.0.contains_key(&node.op_type) {
                let domain = if node.domain.is_empty() { "ai.onnx" } else { node.domain.as_str() };
                out.push(format!("{domain}:{} (node '{}')", node.op_type, node.name));
            }
            for attr in &node.attribute {
                if let Some(sub) = &attr.g {
                    walk(fw, sub, out);
                }
                for sub in &attr.graphs {
                    walk(fw, sub, out);
                }
            }
        }
    }
    let mut missing = Vec::new();
    if let Some(g) = &proto.graph {
        walk(fw, g, &mut missing);
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Unsupported { kind: "ONNX graph", path: path.to_path_buf(), items: missing })
    }
}
