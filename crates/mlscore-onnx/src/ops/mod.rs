//! mlscore's own ONNX-ML operators, registered into tract over (or beside) the stock ones.
//!
//! tract 0.23 parses most of ai.onnx.ml but runs only part of it, and some of that differently
//! from onnxruntime (binary tree classifiers, `Normalizer(MAX)`, NaN through `LinearClassifier`,
//! a tree kernel quadratic in the forest size). Every operator scikit-learn's exporter emits is
//! implemented here with onnxruntime's semantics, on mlscore's kernels; the stock one kept is
//! `CategoryMapper`, which matches it. One standard operator is replaced too: `Sigmoid`, whose
//! f32 approximation in tract differs from onnxruntime's near 0 and 1 (MLP classifiers).

mod kernel;
mod linear;
mod preprocess;
mod svm;
mod transform;
pub(crate) mod tree;

use tract_onnx::model::OnnxOpRegister;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::cast::Cast;
use tract_onnx::tract_hir::internal::DimLike;

/// Registers mlscore's operator builders (replacing tract's where both exist).
pub(crate) fn register(reg: &mut OnnxOpRegister) {
    reg.insert("LinearRegressor", linear::linear_regressor);
    reg.insert("LinearClassifier", linear::linear_classifier);
    reg.insert("Scaler", preprocess::scaler);
    reg.insert("Normalizer", preprocess::normalizer);
    reg.insert("Imputer", preprocess::imputer);
    reg.insert("Binarizer", preprocess::binarizer);
    reg.insert("OneHotEncoder", preprocess::one_hot_encoder);
    reg.insert("LabelEncoder", preprocess::label_encoder);
    reg.insert("FeatureVectorizer", preprocess::feature_vectorizer);
    reg.insert("ZipMap", preprocess::zip_map);
    reg.insert("ArrayFeatureExtractor", preprocess::array_feature_extractor);
    reg.insert("SVMClassifier", svm::svm_classifier);
    reg.insert("SVMRegressor", svm::svm_regressor);
    reg.insert("TreeEnsembleClassifier", tree::tree_ensemble_classifier);
    reg.insert("TreeEnsembleRegressor", tree::tree_ensemble_regressor);
    reg.insert("TreeEnsemble", tree::tree_ensemble_v5);
    reg.insert("Sigmoid", transform::sigmoid);
}

/// A graph that is one tree ensemble over its one input, `[N, width]` of float32 or float64,
/// whose outputs are the ensemble's (a ZipMap's are its input's, and a cast of integer labels
/// to int64 is theirs): it scores float64 columns without a tensor or tract
/// ([`tree::TreeOp::eval_columns`]). It holds its own copy of the ensemble.
#[derive(Debug, Clone)]
pub(crate) struct DirectTrees {
    pub(crate) op: tree::TreeOp,
    /// Values a row: the columns it reads.
    pub(crate) width: usize,
    /// The input tensor's type.
    pub(crate) input_dt: DatumType,
    /// Per graph output, in order: the ensemble's output it is.
    pub(crate) outputs: Vec<usize>,
}

/// The graph as [`DirectTrees`], if it is one.
pub(crate) fn direct_trees(model: &TypedModel) -> Option<DirectTrees> {
    let [input] = model.inputs.as_slice() else { return None };
    let fact = model.outlet_fact(*input).ok()?;
    let input_dt = fact.datum_type;
    if fact.rank() != 2 || (input_dt != f32::datum_type() && input_dt != f64::datum_type()) {
        return None;
    }
    let width = fact.shape[1].to_usize().ok()?;
    let mut trees: Option<(usize, &tree::TreeOp)> = None;
    let mut outputs = Vec::with_capacity(model.outputs.len());
    for output in &model.outputs {
        let mut outlet = *output;
        let mut node = model.node(outlet.node);
        // skl2onnx casts integer labels to int64, which they are (tract casts to its TDim).
        if let Some(cast) = node.op_as::<Cast>() {
            outlet = *node.inputs.first()?;
            let from = model.outlet_fact(outlet).ok()?.datum_type;
            if from != i64::datum_type() || (cast.to != i64::datum_type() && cast.to != TDim::datum_type()) {
                return None;
            }
            node = model.node(outlet.node);
        }
        let zip = node.op_as::<kernel::KernelOp<preprocess::ZipMap>>();
        if zip.is_some() {
            outlet = *node.inputs.first()?;
            node = model.node(outlet.node);
        }
        let op = &node.op_as::<kernel::KernelOp<tree::TreeOp>>()?.0;
        // ZipMap takes the probabilities and checks their width; a mismatch stays tract's error.
        let zip_fits = zip.is_none_or(|z| outlet.slot == 1 && op.outputs_count() == z.0.classes());
        if !zip_fits || node.inputs.as_slice() != [*input] || trees.is_some_and(|(id, _)| id != node.id) {
            return None;
        }
        trees = Some((node.id, op));
        outputs.push(outlet.slot);
    }
    let (_, op) = trees?;
    Some(DirectTrees { op: op.clone(), width, input_dt, outputs })
}

/// Rewrites applied to the optimized graph before it is made runnable: tract's `ArgMax` over the
/// last axis of a `[N, k]` f32 tensor (every classifier's label) goes through ndarray views a row,
/// which costs more than the rest of a small MLP's tail; a flat row kernel replaces it.
pub(crate) fn rewrite_optimized(mut model: TypedModel) -> TractResult<TypedModel> {
    use tract_onnx::tract_core::ops::nn::{Reduce, Reducer};
    let candidates = model
        .nodes()
        .iter()
        .filter_map(|node| {
            let reduce = node.op_as::<Reduce>()?;
            let Reducer::ArgMax(last) = reduce.reducer else { return None };
            let fact = model.outlet_fact(*node.inputs.first()?).ok()?;
            (fact.datum_type == f32::datum_type() && fact.rank() == 2 && reduce.axes.as_slice() == [1])
                .then_some((node.id, last))
        })
        .collect::<Vec<_>>();
    for (id, last) in candidates {
        let node = model.node(id);
        let patch = TypedModelPatch::replace_single_op(
            &model,
            node,
            &node.inputs,
            kernel::KernelOp(transform::RowArgMax { last }),
        )?;
        patch.apply(&mut model)?;
    }
    Ok(model)
}
