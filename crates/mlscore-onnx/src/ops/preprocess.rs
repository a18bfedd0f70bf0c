//! The ai.onnx.ml preprocessing operators scikit-learn exports: Scaler, Normalizer, Imputer,
//! Binarizer, OneHotEncoder, LabelEncoder, FeatureVectorizer, and ZipMap.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::kernel::{Kernel, OutShape, OutSpec, OutType, as_f32, as_i64, attr, boxed, rows_and_width, tensor_from};
use super::linear::Labels;
use mlscore_kernels::encode::{self, Categories, LabelMap};
use mlscore_kernels::preprocess::{self as kernels, Norm};

type Built = TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

/// Values of a float tensor computed in its own precision: f64 inputs stay f64 until the end.
fn values_f64(t: &Tensor) -> TractResult<Vec<f64>> {
    if t.datum_type() == f64::datum_type() {
        Ok(t.try_as_plain_ram()?.as_slice::<f64>()?.to_vec())
    } else {
        let f = as_f32(t)?;
        Ok(f.try_as_plain_ram()?.as_slice::<f32>()?.iter().map(|v| f64::from(*v)).collect())
    }
}

// ---------------------------------------------------------------- Scaler

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scaler {
    offset: Vec<f32>,
    scale: Vec<f32>,
}

pub(crate) fn scaler(_ctx: &ParsingContext, node: &NodeProto) -> Built {
    let scale = attr::req_floats(node, "scale")?;
    let offset = attr::floats(node, "offset").unwrap_or_else(|| vec![0.0; scale.len()]);
    if offset.len() != scale.len() {
        return Err(attr::bad(node, "offset", format!("{} values, but scale has {}", offset.len(), scale.len())));
    }
    Ok(boxed(Scaler { offset, scale }))
}

impl Kernel for Scaler {
    fn name(&self) -> &'static str {
        "Scaler"
    }

    fn outputs(&self) -> Vec<OutSpec> {
        vec![OutSpec::new(f32::datum_type(), OutShape::SameAsInput)]
    }

    fn eval(&self, mut inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (_, width) = rows_and_width(&inputs[0]);
        let per_feature = self.scale.len() == width;
        ensure!(
            per_feature || self.scale.len() == 1,
            "Scaler: scale and offset hold {} values; expected 1 or {width}",
            self.scale.len()
        );
        // One offset and scale per column (a single value applies to every column).
        let per_column = |v: &[f32]| -> Vec<f32> { if per_feature { v.to_vec() } else { vec![v[0]; width] } };
        let (offset, scale) = (per_column(&self.offset), per_column(&self.scale));
        let shape: TVec<usize> = inputs[0].shape().into();
        if inputs[0].datum_type() == f64::datum_type() {
            let mut out = Tensor::zero::<f32>(&shape)?;
            {
                let x = inputs[0].try_as_plain_ram()?;
                let mut view = out.try_as_plain_ram_mut()?;
                kernels::scale_rows_f64(x.as_slice::<f64>()?, view.as_slice_mut::<f32>()?, width, &offset, &scale);
            }
            return Ok(tvec!(out.into_tvalue()));
        }
        // f32 in place: the input is usually this node's alone, so no new batch is allocated.
        let input = inputs.swap_remove(0);
        let mut x =
            if input.datum_type() == f32::datum_type() { input.into_tensor() } else { as_f32(&input)?.into_owned() };
        {
            let mut view = x.try_as_plain_ram_mut()?;
            kernels::scale_rows(view.as_slice_mut::<f32>()?, width, &offset, &scale);
        }
        Ok(tvec!(x.into_tvalue()))
    }
}

// ---------------------------------------------------------------- Normalizer

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Normalizer(Norm);

pub(crate) fn normalizer(_ctx: &ParsingContext, node: &NodeProto) -> Built {
    let norm = match attr::string(node, "norm").as_deref().unwrap_or("MAX") {
        "MAX" => Norm::Max,
        "L1" => Norm::L1,
        "L2" => Norm::L2,
        other => return Err(attr::bad(node, "norm", format!("unknown norm '{other}'"))),
    };
    Ok(boxed(Normalizer(norm)))
}

impl Kernel for Normalizer {
    fn name(&self) -> &'static str {
        "Normalizer"
    }

    fn outputs(&self) -> Vec<OutSpec> {
        vec![OutSpec::new(f32::datum_type(), OutShape::SameAsInput)]
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (_, width) = rows_and_width(&inputs[0]);
        let x = values_f64(&inputs[0])?;
        let mut out = vec![0.0f32; x.len()];
        kernels::normalize_rows(&x, &mut out, width, self.0);
        Ok(tvec!(tensor_from(inputs[0].shape(), out)?.into_tvalue()))
    }
}

// ---------------------------------------------------------------- Imputer

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Imputer {
    Floats { replaced: f32, imputed: Vec<f32> },
    Ints { replaced: i64, imputed: Vec<i64> },
}

pub(crate) fn imputer(_ctx: &ParsingContext, node: &NodeProto) -> Built {
    let floats = attr::floats(node, "imputed_value_floats").filter(|v| !v.is_empty());
    let ints = attr::ints(node, "imputed_value_int64s").filter(|v| !v.is_empty());
    match (floats, ints) {
        (Some(imputed), None) => {
            Ok(boxed(Imputer::Floats { replaced: attr::float(node, "replaced_value_float").unwrap_or(0.0), imputed }))
        }
        (None, Some(imputed)) => {
            Ok(boxed(Imputer::Ints { replaced: attr::int(node, "replaced_value_int64").unwrap_or(0), imputed }))
        }
        _ => Err(attr::bad(
            node,
            "imputed_value_floats",
            "exactly one of imputed_value_floats and imputed_value_int64s must be set",
        )),
    }
}

impl Kernel for Imputer {
    fn name(&self) -> &'static str {
        "Imputer"
    }

    fn outputs(&self) -> Vec<OutSpec> {
        vec![OutSpec::same_as_input()]
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (_, width) = rows_and_width(&inputs[0]);
        let shape = inputs[0].shape().to_vec();
        let out = match self {
            Imputer::Floats { replaced, imputed } => {
                ensure!(
                    inputs[0].datum_type().is_float(),
                    "Imputer with float values takes float inputs, not {:?}",
                    inputs[0].datum_type()
                );
                let x = as_f32(&inputs[0])?;
                let x = x.try_as_plain_ram()?;
                let v = kernels::impute(x.as_slice::<f32>()?, width, *replaced, imputed);
                let t = tensor_from(&shape, v)?;
                if inputs[0].datum_type() == f32::datum_type() {
                    t
                } else {
                    t.cast_to_dt(inputs[0].datum_type())?.into_owned()
                }
            }
            Imputer::Ints { replaced, imputed } => {
                let x = as_i64(&inputs[0])?;
                let x = x.try_as_plain_ram()?;
                let v = kernels::impute(x.as_slice::<i64>()?, width, *replaced, imputed);
                tensor_from(&shape, v)?
            }
        };
        Ok(tvec!(out.into_tvalue()))
    }
}

// ---------------------------------------------------------------- Binarizer

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Binarizer {
    threshold: f32,
}

pub(crate) fn binarizer(_ctx: &ParsingContext, node: &NodeProto) -> Built {
    Ok(boxed(Binarizer { threshold: attr::float(node, "threshold").unwrap_or(1.0) }))
}

impl Kernel for Binarizer {
    fn name(&self) -> &'static str {
        "Binarizer"
    }

    fn outputs(&self) -> Vec<OutSpec> {
        vec![OutSpec::same_as_input()]
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = as_f32(&inputs[0])?;
        let mut values = x.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
        if let Some(i) = values.iter().position(|v| v.is_nan()) {
            bail!("Binarizer: input value {i} is NaN (onnxruntime refuses NaN here too)");
        }
        encode::binarize(&mut values, self.threshold);
        let t = tensor_from(inputs[0].shape(), values)?;
        let t = if inputs[0].datum_type() == f32::datum_type() {
            t
        } else {
            t.cast_to_dt(inputs[0].datum_type())?.into_owned()
        };
        Ok(tvec!(t.into_tvalue()))
    }
}

// ---------------------------------------------------------------- OneHotEncoder

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OneHotEncoder {
    categories: Categories,
    zeros: bool,
}

pub(crate) fn one_hot_encoder(_ctx: &ParsingContext, node: &NodeProto) -> Built {
    let categories = match Labels::parse(node, "cats_int64s", "cats_strings")? {
        Labels::Ints(c) => Categories::from_ints(c),
        Labels::Strings(c) => Categories::from_strings(c),
    };
    Ok(boxed(OneHotEncoder { categories, zeros: attr::int(node, "zeros").unwrap_or(1) != 0 }))
}

impl Kernel for OneHotEncoder {
    fn name(&self) -> &'static str {
        "OneHotEncoder"
    }

    fn outputs(&self) -> Vec<OutSpec> {
        vec![OutSpec::new(f32::datum_type(), OutShape::InputPlus(self.categories.len()))]
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let c = self.categories.len();
        let slots: Vec<Option<usize>> = if self.categories.are_strings() {
            ensure!(
                inputs[0].datum_type() == String::datum_type(),
                "OneHotEncoder with string categories takes strings"
            );
            let x = inputs[0].try_as_plain_ram()?;
            x.as_slice::<String>()?.iter().map(|s| self.categories.find_str(s)).collect()
        } else {
            // float inputs are truncated to int64, as onnxruntime casts them
            let x = if inputs[0].datum_type().is_float() {
                as_f32(&inputs[0])?.cast_to::<i64>()?.into_owned()
            } else {
                as_i64(&inputs[0])?.into_owned()
            };
            let x = x.try_as_plain_ram()?;
            x.as_slice::<i64>()?.iter().map(|v| self.categories.find_int(*v)).collect()
        };
        if !self.zeros && slots.iter().any(Option::is_none) {
            bail!("OneHotEncoder: unknown category and zeros = 0");
        }
        let mut shape = inputs[0].shape().to_vec();
        shape.push(c);
        Ok(tvec!(tensor_from(&shape, encode::one_hot_rows::<f32>(&slots, c))?.into_tvalue()))
    }
}

// ---------------------------------------------------------------- LabelEncoder

/// The keys, the values and the default of a LabelEncoder, as the kernels' label map.
#[derive(Debug, Clone, PartialEq)]
enum Map {
    Strings(LabelMap<String>),
    Ints(LabelMap<i64>),
    Floats(LabelMap<f32>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LabelEncoder(Map);

fn tensor_attr_values(ctx: &ParsingContext, node: &NodeProto, name: &str) -> TractResult<Option<Tensor>> {
    attr::tensor(node, name).map(|t| ctx.load_tensor(t)).transpose()
}

/// The values of a LabelEncoder and its default.
enum Values {
    Strings(Vec<String>, String),
    Ints(Vec<i64>, i64),
    Floats(Vec<f32>, f32),
}

pub(crate) fn label_encoder(ctx: &ParsingContext, node: &NodeProto) -> Built {
    let map = |keys: Categories, values: Values| -> TractResult<LabelEncoder> {
        let map = match values {
            Values::Strings(v, d) => LabelMap::new(keys, v, d).map(Map::Strings),
            Values::Ints(v, d) => LabelMap::new(keys, v, d).map(Map::Ints),
            Values::Floats(v, d) => LabelMap::new(keys, v, d).map(Map::Floats),
        };
        map.map(LabelEncoder).map_err(|e| attr::bad(node, "values_*", e))
    };
    // ai.onnx.ml v1: classes_strings maps strings to their index.
    if let Some(classes) = attr::strings(node, "classes_strings").filter(|c| !c.is_empty()) {
        let n = classes.len() as i64;
        let values = Values::Ints((0..n).collect(), attr::int(node, "default_int64").unwrap_or(-1));
        return Ok(boxed(map(Categories::from_strings(classes), values)?));
    }
    let keys = if let Some(k) = attr::strings(node, "keys_strings").filter(|v| !v.is_empty()) {
        Categories::from_strings(k)
    } else if let Some(k) = attr::ints(node, "keys_int64s").filter(|v| !v.is_empty()) {
        Categories::from_ints(k)
    } else if let Some(k) = attr::floats(node, "keys_floats").filter(|v| !v.is_empty()) {
        Categories::from_floats(k.into_iter().map(f64::from))
    } else if let Some(t) = tensor_attr_values(ctx, node, "keys_tensor")? {
        tensor_keys(&t).map_err(|e| attr::bad(node, "keys_tensor", e))?
    } else {
        return Err(attr::bad(node, "keys_*", "no keys"));
    };
    let default_tensor = tensor_attr_values(ctx, node, "default_tensor")?;
    let values = if let Some(v) = attr::strings(node, "values_strings").filter(|v| !v.is_empty()) {
        Values::Strings(v, attr::string(node, "default_string").unwrap_or_else(|| "_Unused".into()))
    } else if let Some(v) = attr::ints(node, "values_int64s").filter(|v| !v.is_empty()) {
        Values::Ints(v, attr::int(node, "default_int64").unwrap_or(-1))
    } else if let Some(v) = attr::floats(node, "values_floats").filter(|v| !v.is_empty()) {
        Values::Floats(v, attr::float(node, "default_float").unwrap_or(-0.0))
    } else if let Some(t) = tensor_attr_values(ctx, node, "values_tensor")? {
        tensor_values(&t, default_tensor.as_ref()).map_err(|e| attr::bad(node, "values_tensor", e))?
    } else {
        return Err(attr::bad(node, "values_*", "no values"));
    };
    Ok(boxed(map(keys, values)?))
}

fn tensor_keys(t: &Tensor) -> TractResult<Categories> {
    let v = t.try_as_plain_ram()?;
    Ok(if t.datum_type() == String::datum_type() {
        Categories::from_strings(v.as_slice::<String>()?.iter().cloned())
    } else if t.datum_type().is_float() {
        Categories::from_floats(as_f32(t)?.try_as_plain_ram()?.as_slice::<f32>()?.iter().map(|f| f64::from(*f)))
    } else {
        Categories::from_ints(as_i64(t)?.try_as_plain_ram()?.as_slice::<i64>()?.iter().copied())
    })
}

fn tensor_values(t: &Tensor, default: Option<&Tensor>) -> TractResult<Values> {
    // The default tensor's first value (an empty one is refused, not indexed).
    fn first<T: Clone + Datum>(d: &Tensor) -> TractResult<T> {
        d.try_as_plain_ram()?.as_slice::<T>()?.first().cloned().context("default_tensor is empty")
    }
    let v = t.try_as_plain_ram()?;
    Ok(if t.datum_type() == String::datum_type() {
        let d = default.map(first::<String>).transpose()?;
        Values::Strings(v.as_slice::<String>()?.to_vec(), d.unwrap_or_else(|| "_Unused".into()))
    } else if t.datum_type().is_float() {
        let d = default.map(|d| as_f32(d).and_then(|d| first::<f32>(&d))).transpose()?;
        Values::Floats(as_f32(t)?.try_as_plain_ram()?.as_slice::<f32>()?.to_vec(), d.unwrap_or(-0.0))
    } else {
        let d = default.map(|d| as_i64(d).and_then(|d| first::<i64>(&d))).transpose()?;
        Values::Ints(as_i64(t)?.try_as_plain_ram()?.as_slice::<i64>()?.to_vec(), d.unwrap_or(-1))
    })
}

impl LabelEncoder {
    fn keys(&self) -> &Categories {
        match &self.0 {
            Map::Strings(m) => m.keys(),
            Map::Ints(m) => m.keys(),
            Map::Floats(m) => m.keys(),
        }
    }

    /// Position of each input value among the keys.
    fn lookup(&self, x: &Tensor) -> TractResult<Vec<Option<usize>>> {
        let keys = self.keys();
        Ok(if keys.are_strings() {
            ensure!(
                x.datum_type() == String::datum_type(),
                "LabelEncoder with string keys takes strings, not {:?}",
                x.datum_type()
            );
            x.try_as_plain_ram()?.as_slice::<String>()?.iter().map(|s| keys.find_str(s)).collect()
        } else if keys.are_floats() {
            // NaN keys match NaN inputs (ai.onnx.ml v4).
            as_f32(x)?.try_as_plain_ram()?.as_slice::<f32>()?.iter().map(|v| keys.find_float(f64::from(*v))).collect()
        } else {
            as_i64(x)?.try_as_plain_ram()?.as_slice::<i64>()?.iter().map(|v| keys.find_int(*v)).collect()
        })
    }
}

impl Kernel for LabelEncoder {
    fn name(&self) -> &'static str {
        "LabelEncoder"
    }

    fn outputs(&self) -> Vec<OutSpec> {
        let dt = match &self.0 {
            Map::Strings(..) => String::datum_type(),
            Map::Ints(..) => i64::datum_type(),
            Map::Floats(..) => f32::datum_type(),
        };
        vec![OutSpec::new(dt, OutShape::SameAsInput)]
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let found = self.lookup(&inputs[0])?;
        let shape = inputs[0].shape();
        let t = match &self.0 {
            Map::Strings(m) => tensor_from(shape, m.map(&found))?,
            Map::Ints(m) => tensor_from(shape, m.map(&found))?,
            Map::Floats(m) => tensor_from(shape, m.map(&found))?,
        };
        Ok(tvec!(t.into_tvalue()))
    }
}

// ---------------------------------------------------------------- FeatureVectorizer

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FeatureVectorizer {
    dims: Vec<usize>,
}

pub(crate) fn feature_vectorizer(_ctx: &ParsingContext, node: &NodeProto) -> Built {
    let dims = attr::ints(node, "inputdimensions").unwrap_or_default();
    if dims.len() != node.input.len() || dims.iter().any(|d| *d < 0) {
        return Err(attr::bad(
            node,
            "inputdimensions",
            format!("{} values for {} inputs", dims.len(), node.input.len()),
        ));
    }
    Ok(boxed(FeatureVectorizer { dims: dims.iter().map(|d| *d as usize).collect() }))
}

impl Kernel for FeatureVectorizer {
    fn name(&self) -> &'static str {
        "FeatureVectorizer"
    }

    fn inputs(&self) -> usize {
        self.dims.len()
    }

    fn outputs(&self) -> Vec<OutSpec> {
        vec![OutSpec::new(f32::datum_type(), OutShape::RowsBy(self.dims.iter().sum()))]
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let total: usize = self.dims.iter().sum();
        let (rows, _) = rows_and_width(&inputs[0]);
        let mut out = vec![0.0f32; rows * total];
        let mut offset = 0;
        for (input, dim) in inputs.iter().zip(&self.dims) {
            let (_, width) = rows_and_width(input);
            let x = as_f32(input)?;
            let x = x.try_as_plain_ram()?;
            let x = x.as_slice::<f32>()?;
            let take = width.min(*dim);
            for r in 0..rows {
                out[r * total + offset..r * total + offset + take].copy_from_slice(&x[r * width..r * width + take]);
            }
            offset += dim;
        }
        Ok(tvec!(tensor_from(&[rows, total], out)?.into_tvalue()))
    }
}

// ---------------------------------------------------------------- ZipMap

/// ZipMap turns `[N, C]` probabilities into one `{class: probability}` map a row. tract has no
/// map values, so the operator passes the dense probabilities through and the graph remembers
/// the class labels of every ZipMap output; the Arrow conversion builds the map column.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ZipMap {
    classes: usize,
}

impl ZipMap {
    /// The number of class labels: the width of the probabilities it takes.
    pub(crate) fn classes(&self) -> usize {
        self.classes
    }
}

pub(crate) fn zip_map(_ctx: &ParsingContext, node: &NodeProto) -> Built {
    Ok(boxed(ZipMap { classes: Labels::parse(node, "classlabels_int64s", "classlabels_strings")?.len() }))
}

impl Kernel for ZipMap {
    fn name(&self) -> &'static str {
        "ZipMap"
    }

    fn outputs(&self) -> Vec<OutSpec> {
        vec![OutSpec::new(f32::datum_type(), OutShape::RowsBy(self.classes))]
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (rows, width) = rows_and_width(&inputs[0]);
        ensure!(width == self.classes, "ZipMap: {width} probabilities a row for {} class labels", self.classes);
        let x = as_f32(&inputs[0])?.into_owned().into_shape(&[rows, width])?;
        Ok(tvec!(x.into_tvalue()))
    }
}

// ---------------------------------------------------------------- ArrayFeatureExtractor

/// Selects columns of the last axis. onnxruntime keeps the rank (`[N, F]` -> `[N, k]`); tract's
/// stock operator drops the axis when one index is taken, which breaks the Concat skl2onnx puts
/// after it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ArrayFeatureExtractor;

pub(crate) fn array_feature_extractor(_ctx: &ParsingContext, _node: &NodeProto) -> Built {
    Ok(boxed(ArrayFeatureExtractor))
}

impl Kernel for ArrayFeatureExtractor {
    fn name(&self) -> &'static str {
        "ArrayFeatureExtractor"
    }

    fn inputs(&self) -> usize {
        2
    }

    fn outputs(&self) -> Vec<OutSpec> {
        vec![OutSpec { dt: OutType::SameAsInput, shape: OutShape::LastAxisFromIndices }]
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = &inputs[0];
        let indices = as_i64(&inputs[1])?;
        let indices = indices.try_as_plain_ram()?.as_slice::<i64>()?.to_vec();
        let shape = x.shape();
        let last = shape.last().copied().unwrap_or(1);
        if let Some(i) = indices.iter().find(|i| **i < 0 || **i as usize >= last) {
            bail!("ArrayFeatureExtractor: index {i} is out of range for {last} columns");
        }
        let k = indices.len();
        let outer: usize = shape.iter().rev().skip(1).product();
        let mut out_shape: Vec<usize> = if shape.len() <= 1 { vec![1] } else { shape[..shape.len() - 1].to_vec() };
        out_shape.push(k);
        let take = |i: usize| (i / k.max(1)) * last + indices[i % k.max(1)] as usize;
        macro_rules! gather {
            ($t:ty, $v:expr) => {{
                let v = $v;
                tensor_from(&out_shape, (0..outer * k).map(|i| v[take(i)].clone()).collect::<Vec<$t>>())?
            }};
        }
        let dt = x.datum_type();
        let view = x.try_as_plain_ram()?;
        let t = if dt == f32::datum_type() {
            gather!(f32, view.as_slice::<f32>()?)
        } else if dt == f64::datum_type() {
            gather!(f64, view.as_slice::<f64>()?)
        } else if dt == i64::datum_type() {
            gather!(i64, view.as_slice::<i64>()?)
        } else if dt == i32::datum_type() {
            gather!(i32, view.as_slice::<i32>()?)
        } else if dt == String::datum_type() {
            gather!(String, view.as_slice::<String>()?)
        } else if dt == TDim::datum_type() {
            let v = as_i64(x)?;
            let v = v.try_as_plain_ram()?;
            gather!(i64, v.as_slice::<i64>()?)
        } else {
            bail!("ArrayFeatureExtractor: unsupported input type {dt:?}");
        };
        Ok(tvec!(t.into_tvalue()))
    }
}
