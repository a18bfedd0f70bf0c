//! One wrapper turns a plain kernel into a tract operator.
//!
//! An ONNX-ML operator is, for mlscore, a function of whole tensors: every one of them maps
//! rows to rows. [`Kernel`] describes that function (its outputs' types and shapes, and how to
//! evaluate it); [`KernelOp`] gives tract what it needs around it: inference rules for the
//! `InferenceModel`, and a `TypedOp` for the compiled plan.

use std::fmt::Debug;

use tract_onnx::tract_hir::internal::*;

/// The element type of an output.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum OutType {
    /// Always this type.
    Fixed(DatumType),
    /// The type of input 0.
    SameAsInput,
}

/// The shape of an output, from the shape of input 0.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum OutShape {
    /// `[N]`: one value per row.
    Rows,
    /// `[N, k]`.
    RowsBy(usize),
    /// The shape of input 0.
    SameAsInput,
    /// The shape of input 0 with one more axis of size `k` (OneHotEncoder).
    InputPlus(usize),
    /// The shape of input 0 with its last axis as long as input 1 has values; `[1, k]` for a
    /// rank-1 input (ArrayFeatureExtractor).
    LastAxisFromIndices,
}

impl OutShape {
    fn dims(&self, shapes: &[TVec<TDim>]) -> TVec<TDim> {
        let input: &[TDim] = shapes.first().map(|s| s.as_slice()).unwrap_or(&[]);
        // A rank-1 input is one row of features, as onnxruntime treats it.
        let rows = if input.len() >= 2 { input[0].clone() } else { 1.to_dim() };
        match self {
            OutShape::Rows => tvec![rows],
            OutShape::RowsBy(k) => tvec![rows, (*k).to_dim()],
            OutShape::SameAsInput => input.iter().cloned().collect(),
            OutShape::InputPlus(k) => input.iter().cloned().chain(std::iter::once((*k).to_dim())).collect(),
            OutShape::LastAxisFromIndices => {
                let k: TDim = shapes.get(1).map(|s| s.iter().product()).unwrap_or_else(|| 1.to_dim());
                if input.len() <= 1 {
                    tvec![1.to_dim(), k]
                } else {
                    input[..input.len() - 1].iter().cloned().chain(std::iter::once(k)).collect()
                }
            }
        }
    }
}

/// An output's type and shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct OutSpec {
    pub(crate) dt: OutType,
    pub(crate) shape: OutShape,
}

impl OutSpec {
    pub(crate) fn new(dt: DatumType, shape: OutShape) -> Self {
        Self { dt: OutType::Fixed(dt), shape }
    }

    pub(crate) fn same_as_input() -> Self {
        Self { dt: OutType::SameAsInput, shape: OutShape::SameAsInput }
    }
}

/// A row-wise ONNX-ML computation over whole tensors.
pub(crate) trait Kernel: Debug + Clone + PartialEq + Send + Sync + 'static {
    /// The ONNX operator name.
    fn name(&self) -> &'static str;
    /// Number of inputs taken.
    fn inputs(&self) -> usize {
        1
    }
    /// The outputs, in order.
    fn outputs(&self) -> Vec<OutSpec>;
    /// Evaluates the kernel.
    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>>;
}

/// A [`Kernel`] as a tract operator (both inference-time `Expansion` and compiled `TypedOp`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KernelOp<K: Kernel>(pub(crate) K);

// tract compares ops for equality when it merges identical nodes; a kernel equals itself
// (its float attributes are never NaN in a way that matters for that).
impl<K: Kernel> Eq for KernelOp<K> {}

impl<K: Kernel> Op for KernelOp<K> {
    fn name(&self) -> StaticName {
        self.0.name().into()
    }

    op_as_typed_op!();
}

impl<K: Kernel> EvalOp for KernelOp<K> {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        self.0.eval(inputs)
    }
}

impl<K: Kernel> TypedOp for KernelOp<K> {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let input = inputs.first().context("the operator takes an input")?;
        let shapes: Vec<TVec<TDim>> = inputs.iter().map(|i| i.shape.iter().cloned().collect()).collect();
        Ok(self
            .0
            .outputs()
            .iter()
            .map(|o| {
                let dt = match o.dt {
                    OutType::Fixed(dt) => dt,
                    OutType::SameAsInput => input.datum_type,
                };
                dt.fact(o.shape.dims(&shapes))
            })
            .collect())
    }

    as_op!();
}

impl<K: Kernel> Expansion for KernelOp<K> {
    fn name(&self) -> StaticName {
        self.0.name().into()
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(self.0.outputs().len())
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, self.0.inputs())?;
        let outs = self.0.outputs();
        check_output_arity(outputs, outs.len())?;
        for (i, o) in outs.iter().enumerate() {
            match o.dt {
                OutType::Fixed(dt) => s.equals(&outputs[i].datum_type, dt)?,
                OutType::SameAsInput => s.equals(&outputs[i].datum_type, &inputs[0].datum_type)?,
            }
        }
        s.given_all(inputs.iter().map(|i| &i.shape), move |s, shapes| {
            for (i, o) in outs.iter().enumerate() {
                s.equals(&outputs[i].shape, ShapeFactoid::from(o.shape.dims(&shapes)))?;
            }
            Ok(())
        })
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, self.clone(), inputs)
    }
}

/// Wraps a kernel for the op register.
pub(crate) fn boxed<K: Kernel>(k: K) -> (Box<dyn InferenceOp>, Vec<String>) {
    (expand(KernelOp(k)), vec![])
}

/// Reads a tensor as f32 values, converting from any numeric type (tract's `TDim` included).
pub(crate) fn as_f32(t: &Tensor) -> TractResult<std::borrow::Cow<'_, Tensor>> {
    if t.datum_type() == f32::datum_type() {
        Ok(std::borrow::Cow::Borrowed(t))
    } else if t.datum_type() == TDim::datum_type() {
        Ok(std::borrow::Cow::Owned(t.cast_to::<i64>()?.cast_to::<f32>()?.into_owned()))
    } else {
        Ok(std::borrow::Cow::Owned(t.cast_to::<f32>()?.into_owned()))
    }
}

/// Reads a tensor as i64 values (tract's `TDim` included).
pub(crate) fn as_i64(t: &Tensor) -> TractResult<std::borrow::Cow<'_, Tensor>> {
    if t.datum_type() == i64::datum_type() {
        Ok(std::borrow::Cow::Borrowed(t))
    } else {
        Ok(std::borrow::Cow::Owned(t.cast_to::<i64>()?.into_owned()))
    }
}

/// The rows and the row width of an input: `[N, F]`, or one row for a rank-1 input.
pub(crate) fn rows_and_width(t: &Tensor) -> (usize, usize) {
    match t.shape() {
        [] => (1, 1),
        [f] => (1, *f),
        [n, rest @ ..] => (*n, rest.iter().product()),
    }
}

/// A tensor of the given shape from a Vec, without copying.
pub(crate) fn tensor_from<T: Datum>(shape: &[usize], data: Vec<T>) -> TractResult<Tensor> {
    Ok(tract_ndarray::ArrayD::from_shape_vec(shape, data)?.into_tensor())
}

/// Small readers for NodeProto attributes, failing with the node and attribute named.
pub(crate) mod attr {
    use tract_onnx::pb::NodeProto;
    use tract_onnx::tract_hir::internal::*;

    fn find<'a>(node: &'a NodeProto, name: &str) -> Option<&'a tract_onnx::pb::AttributeProto> {
        node.attribute.iter().find(|a| a.name == name)
    }

    pub(crate) fn floats(node: &NodeProto, name: &str) -> Option<Vec<f32>> {
        find(node, name).map(|a| a.floats.clone())
    }

    pub(crate) fn ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
        find(node, name).map(|a| a.ints.clone())
    }

    pub(crate) fn strings(node: &NodeProto, name: &str) -> Option<Vec<String>> {
        find(node, name).map(|a| a.strings.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect())
    }

    pub(crate) fn string(node: &NodeProto, name: &str) -> Option<String> {
        find(node, name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
    }

    pub(crate) fn int(node: &NodeProto, name: &str) -> Option<i64> {
        find(node, name).map(|a| a.i)
    }

    pub(crate) fn float(node: &NodeProto, name: &str) -> Option<f32> {
        find(node, name).map(|a| a.f)
    }

    pub(crate) fn tensor<'a>(node: &'a NodeProto, name: &str) -> Option<&'a tract_onnx::pb::TensorProto> {
        find(node, name).and_then(|a| a.t.as_ref())
    }

    /// An error naming the node, its operator and the attribute.
    pub(crate) fn bad(node: &NodeProto, name: &str, what: impl std::fmt::Display) -> TractError {
        format_err!("node '{}' ({}): attribute {name}: {what}", node.name, node.op_type)
    }

    /// A required list of floats.
    pub(crate) fn req_floats(node: &NodeProto, name: &str) -> TractResult<Vec<f32>> {
        floats(node, name).filter(|v| !v.is_empty()).ok_or_else(|| bad(node, name, "missing"))
    }
}
