//! Tree ensembles: `TreeEnsembleClassifier`, `TreeEnsembleRegressor` (ai.onnx.ml 1-3) and
//! `TreeEnsemble` (ai.onnx.ml 5), with onnxruntime's aggregation, base values, binary-class
//! rules and post-transforms, on the tree kernel of `mlscore-kernels` (this module turns the
//! node's attributes into its `RawEnsemble`).

use std::collections::{BTreeSet, HashMap};

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::kernel::{Kernel, OutShape, OutSpec, OutType, as_f32, attr, boxed, rows_and_width, tensor_from};
use super::linear::{Choice, Labels};
use mlscore_kernels::transform::{PostTransform, apply_row, logistic, probit};
use mlscore_kernels::tree::{Aggregate, Ensemble, Float, Mode, RawEnsemble, RawNode, Rows, Target};

type Built = TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

/// What the ensemble's outputs are.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Classifier {
        labels: Labels,
        binary_case: bool,
        weights_all_positive: bool,
    },
    Regressor,
    /// ai.onnx.ml 5: like a regressor, but its output has the input's type.
    V5,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TreeOp {
    kind: Kind,
    f32: Ensemble<f32>,
    f64: Ensemble<f64>,
    base_values: Vec<f64>,
    aggregate: Aggregate,
    post: PostTransform,
}

fn floats_or_tensor(ctx: &ParsingContext, node: &NodeProto, name: &str) -> TractResult<Option<Vec<f64>>> {
    if let Some(v) = attr::floats(node, name).filter(|v| !v.is_empty()) {
        return Ok(Some(v.into_iter().map(f64::from).collect()));
    }
    let tensor_name = format!("{name}_as_tensor");
    match attr::tensor(node, &tensor_name) {
        Some(t) => {
            let t = ctx.load_tensor(t)?.cast_to::<f64>()?.into_owned();
            Ok(Some(t.try_as_plain_ram()?.as_slice::<f64>()?.to_vec()))
        }
        None => Ok(None),
    }
}

fn parse_mode(node: &NodeProto, s: &str) -> TractResult<Option<Mode>> {
    Ok(Some(match s {
        "BRANCH_LEQ" => Mode::Leq,
        "BRANCH_LT" => Mode::Lt,
        "BRANCH_GTE" => Mode::Gte,
        "BRANCH_GT" => Mode::Gt,
        "BRANCH_EQ" => Mode::Eq,
        "BRANCH_NEQ" => Mode::Neq,
        "LEAF" => return Ok(None),
        other => return Err(attr::bad(node, "nodes_modes", format!("unknown mode '{other}'"))),
    }))
}

/// Reads the node and weight attributes of ai.onnx.ml 1-3 (`prefix` is `class` or `target`).
fn raw_v3(ctx: &ParsingContext, node: &NodeProto, prefix: &str) -> TractResult<RawEnsemble> {
    let ints = |n: &str| attr::ints(node, n).ok_or_else(|| attr::bad(node, n, "missing"));
    let tree_ids = ints("nodes_treeids")?;
    let node_ids = ints("nodes_nodeids")?;
    let features = ints("nodes_featureids")?;
    let true_ids = ints("nodes_truenodeids")?;
    let false_ids = ints("nodes_falsenodeids")?;
    let modes = attr::strings(node, "nodes_modes").ok_or_else(|| attr::bad(node, "nodes_modes", "missing"))?;
    let values = floats_or_tensor(ctx, node, "nodes_values")?.unwrap_or_else(|| vec![0.0; tree_ids.len()]);
    let missing = attr::ints(node, "nodes_missing_value_tracks_true").unwrap_or_default();
    let n = tree_ids.len();
    for (name, len) in [
        ("nodes_nodeids", node_ids.len()),
        ("nodes_featureids", features.len()),
        ("nodes_truenodeids", true_ids.len()),
        ("nodes_falsenodeids", false_ids.len()),
        ("nodes_modes", modes.len()),
        ("nodes_values", values.len()),
    ] {
        if len != n {
            return Err(attr::bad(node, name, format!("{len} values for {n} nodes")));
        }
    }
    // Leaves and splits get their own numbering; (tree, node id) finds either.
    let mut leaf_index = HashMap::new();
    let mut split_index = HashMap::new();
    let mut parsed_modes = Vec::with_capacity(n);
    for i in 0..n {
        let mode = parse_mode(node, &modes[i])?;
        let key = (tree_ids[i], node_ids[i]);
        let fresh = match mode {
            None => leaf_index.insert(key, leaf_index.len()).is_none() && !split_index.contains_key(&key),
            Some(_) => split_index.insert(key, split_index.len()).is_none() && !leaf_index.contains_key(&key),
        };
        if !fresh {
            return Err(attr::bad(node, "nodes_nodeids", format!("node {} of tree {} appears twice", key.1, key.0)));
        }
        parsed_modes.push(mode);
    }
    let target_of = |tree: i64, id: i64, what: &str| -> TractResult<Target> {
        if let Some(l) = leaf_index.get(&(tree, id)) {
            Ok(Target::Leaf(*l))
        } else if let Some(s) = split_index.get(&(tree, id)) {
            Ok(Target::Node(*s))
        } else {
            Err(attr::bad(node, what, format!("tree {tree} has no node {id}")))
        }
    };
    let mut nodes = Vec::with_capacity(split_index.len());
    for i in 0..n {
        let Some(mode) = parsed_modes[i] else { continue };
        let feature = usize::try_from(features[i])
            .map_err(|_| attr::bad(node, "nodes_featureids", format!("negative feature {}", features[i])))?;
        nodes.push(RawNode {
            feature,
            threshold: values[i],
            mode,
            members: vec![],
            yes: target_of(tree_ids[i], true_ids[i], "nodes_truenodeids")?,
            no: target_of(tree_ids[i], false_ids[i], "nodes_falsenodeids")?,
            missing_true: missing.get(i).is_some_and(|m| *m == 1),
        });
    }
    // onnxruntime takes the first node listed for each tree as its root.
    let mut roots = Vec::new();
    for i in 0..n {
        if i == 0 || tree_ids[i] != tree_ids[i - 1] {
            roots.push(target_of(tree_ids[i], node_ids[i], "nodes_treeids")?);
        }
    }
    let w_trees = ints(&format!("{prefix}_treeids"))?;
    let w_nodes = ints(&format!("{prefix}_nodeids"))?;
    let w_ids = ints(&format!("{prefix}_ids"))?;
    let weights_name = format!("{prefix}_weights");
    let w = floats_or_tensor(ctx, node, &weights_name)?.ok_or_else(|| attr::bad(node, &weights_name, "missing"))?;
    if w_nodes.len() != w_trees.len() || w_ids.len() != w_trees.len() || w.len() != w_trees.len() {
        return Err(attr::bad(node, &weights_name, "the weight attributes have different lengths"));
    }
    let mut leaves = vec![Vec::new(); leaf_index.len()];
    for j in 0..w_trees.len() {
        let Some(l) = leaf_index.get(&(w_trees[j], w_nodes[j])) else {
            return Err(attr::bad(
                node,
                &format!("{prefix}_nodeids"),
                format!("weight {j} names node {} of tree {}, which is not a leaf", w_nodes[j], w_trees[j]),
            ));
        };
        let out = usize::try_from(w_ids[j]).map_err(|_| attr::bad(node, &format!("{prefix}_ids"), "negative id"))?;
        leaves[*l].push((out, w[j]));
    }
    Ok(RawEnsemble { nodes, leaves, roots })
}

/// The trees compiled in both float types, equal leaves shared (a forest's table of leaf weights
/// then holds its distinct rows only: see [`RawEnsemble::share_equal_leaves`]).
fn compile(mut raw: RawEnsemble, outputs: usize, node: &NodeProto) -> TractResult<(Ensemble<f32>, Ensemble<f64>)> {
    let err = |e: mlscore_kernels::Error| format_err!("node '{}' ({}): {e}", node.name, node.op_type);
    raw.share_equal_leaves();
    Ok((Ensemble::compile(&raw, outputs).map_err(err)?, Ensemble::compile(&raw, outputs).map_err(err)?))
}

fn post_of(node: &NodeProto) -> TractResult<PostTransform> {
    PostTransform::parse(attr::string(node, "post_transform").as_deref())
        .map_err(|e| attr::bad(node, "post_transform", e))
}

pub(crate) fn tree_ensemble_classifier(ctx: &ParsingContext, node: &NodeProto) -> Built {
    let labels = Labels::parse(node, "classlabels_int64s", "classlabels_strings")?;
    let classes = labels.len();
    if classes < 2 {
        return Err(attr::bad(node, "classlabels_int64s", "a classifier needs at least two class labels"));
    }
    let raw = raw_v3(ctx, node, "class")?;
    let ids: BTreeSet<usize> = raw.leaves.iter().flatten().map(|(o, _)| *o).collect();
    // onnxruntime's test is `weight < 0` (a NaN weight counts as positive).
    let weights_all_positive = !raw.leaves.iter().flatten().any(|(_, w)| *w < 0.0);
    let binary_case = classes == 2 && ids.len() == 1;
    // A binary classifier whose weights all go to one class accumulates one score.
    let outputs = if classes == 2 && ids.iter().all(|i| *i == 0) { 1 } else { classes };
    let (f32, f64) = compile(raw, outputs, node)?;
    Ok(boxed(TreeOp {
        kind: Kind::Classifier { labels, binary_case, weights_all_positive },
        f32,
        f64,
        base_values: floats_or_tensor(ctx, node, "base_values")?.unwrap_or_default(),
        aggregate: Aggregate::Sum,
        post: post_of(node)?,
    }))
}

fn aggregate_of(node: &NodeProto) -> TractResult<Aggregate> {
    Ok(match attr::string(node, "aggregate_function").as_deref().unwrap_or("SUM") {
        "SUM" => Aggregate::Sum,
        "AVERAGE" => Aggregate::Average,
        "MIN" => Aggregate::Min,
        "MAX" => Aggregate::Max,
        other => return Err(attr::bad(node, "aggregate_function", format!("unknown aggregate function '{other}'"))),
    })
}

pub(crate) fn tree_ensemble_regressor(ctx: &ParsingContext, node: &NodeProto) -> Built {
    let targets = attr::int(node, "n_targets").unwrap_or(1).max(1) as usize;
    let raw = raw_v3(ctx, node, "target")?;
    let (f32, f64) = compile(raw, targets, node)?;
    Ok(boxed(TreeOp {
        kind: Kind::Regressor,
        f32,
        f64,
        base_values: floats_or_tensor(ctx, node, "base_values")?.unwrap_or_default(),
        aggregate: aggregate_of(node)?,
        post: post_of(node)?,
    }))
}

/// ai.onnx.ml 5 `TreeEnsemble`: nodes and leaves in separate arrays, modes and splits as tensors.
pub(crate) fn tree_ensemble_v5(ctx: &ParsingContext, node: &NodeProto) -> Built {
    let ints = |n: &str| attr::ints(node, n).ok_or_else(|| attr::bad(node, n, "missing"));
    let tensor = |n: &str| -> TractResult<Tensor> {
        ctx.load_tensor(attr::tensor(node, n).ok_or_else(|| attr::bad(node, n, "missing"))?)
    };
    let features = ints("nodes_featureids")?;
    let true_ids = ints("nodes_truenodeids")?;
    let false_ids = ints("nodes_falsenodeids")?;
    let true_leafs = ints("nodes_trueleafs")?;
    let false_leafs = ints("nodes_falseleafs")?;
    let roots = ints("tree_roots")?;
    let splits = tensor("nodes_splits")?.cast_to::<f64>()?.into_owned();
    let splits = splits.try_as_plain_ram()?.as_slice::<f64>()?.to_vec();
    let modes = tensor("nodes_modes")?.cast_to::<i64>()?.into_owned();
    let modes = modes.try_as_plain_ram()?.as_slice::<i64>()?.to_vec();
    let missing = attr::ints(node, "nodes_missing_value_tracks_true").unwrap_or_default();
    let members = match attr::tensor(node, "membership_values") {
        Some(t) => ctx.load_tensor(t)?.cast_to::<f64>()?.try_as_plain_ram()?.as_slice::<f64>()?.to_vec(),
        None => vec![],
    };
    let leaf_targets = ints("leaf_targetids")?;
    let leaf_weights = tensor("leaf_weights")?.cast_to::<f64>()?.into_owned();
    let leaf_weights = leaf_weights.try_as_plain_ram()?.as_slice::<f64>()?.to_vec();
    let n = features.len();
    for (name, len) in [
        ("nodes_truenodeids", true_ids.len()),
        ("nodes_falsenodeids", false_ids.len()),
        ("nodes_trueleafs", true_leafs.len()),
        ("nodes_falseleafs", false_leafs.len()),
        ("nodes_splits", splits.len()),
        ("nodes_modes", modes.len()),
    ] {
        if len != n {
            return Err(attr::bad(node, name, format!("{len} values for {n} nodes")));
        }
    }
    if leaf_targets.len() != leaf_weights.len() {
        return Err(attr::bad(node, "leaf_weights", "leaf_targetids and leaf_weights differ in length"));
    }
    // Membership sets are listed in node order, each ended by a NaN.
    let mut sets = members.split(|v| v.is_nan());
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        let mode = match modes[i] {
            0 => Mode::Leq,
            1 => Mode::Lt,
            2 => Mode::Gte,
            3 => Mode::Gt,
            4 => Mode::Eq,
            5 => Mode::Neq,
            6 => Mode::Member,
            other => return Err(attr::bad(node, "nodes_modes", format!("unknown mode {other}"))),
        };
        let target = |id: i64, leaf: i64| -> TractResult<Target> {
            let id = usize::try_from(id).map_err(|_| attr::bad(node, "nodes_truenodeids", "negative index"))?;
            Ok(if leaf == 1 { Target::Leaf(id) } else { Target::Node(id) })
        };
        nodes.push(RawNode {
            feature: usize::try_from(features[i])
                .map_err(|_| attr::bad(node, "nodes_featureids", "negative feature"))?,
            threshold: splits[i],
            mode,
            members: if mode == Mode::Member { sets.next().unwrap_or_default().to_vec() } else { vec![] },
            yes: target(true_ids[i], true_leafs[i])?,
            no: target(false_ids[i], false_leafs[i])?,
            missing_true: missing.get(i).is_some_and(|m| *m == 1),
        });
    }
    let leaves: Vec<Vec<(usize, f64)>> = leaf_targets
        .iter()
        .zip(&leaf_weights)
        .map(|(t, w)| Ok(vec![(usize::try_from(*t).map_err(|_| attr::bad(node, "leaf_targetids", "negative"))?, *w)]))
        .collect::<TractResult<_>>()?;
    let roots = roots
        .iter()
        .map(|r| usize::try_from(*r).map(Target::Node).map_err(|_| attr::bad(node, "tree_roots", "negative")))
        .collect::<TractResult<_>>()?;
    let raw = RawEnsemble { nodes, leaves, roots };
    let targets = attr::int(node, "n_targets").ok_or_else(|| attr::bad(node, "n_targets", "missing"))?.max(1) as usize;
    let (f32, f64) = compile(raw, targets, node)?;
    let aggregate = match attr::int(node, "aggregate_function").unwrap_or(1) {
        0 => Aggregate::Average,
        1 => Aggregate::Sum,
        2 => Aggregate::Min,
        3 => Aggregate::Max,
        other => return Err(attr::bad(node, "aggregate_function", format!("unknown value {other}"))),
    };
    let post = match attr::int(node, "post_transform").unwrap_or(0) {
        0 => PostTransform::None,
        1 => PostTransform::Softmax,
        2 => PostTransform::Logistic,
        3 => PostTransform::SoftmaxZero,
        4 => PostTransform::Probit,
        other => return Err(attr::bad(node, "post_transform", format!("unknown value {other}"))),
    };
    Ok(boxed(TreeOp { kind: Kind::V5, f32, f64, base_values: vec![], aggregate, post }))
}

impl TreeOp {
    /// The width of the scores (probabilities) output.
    pub(crate) fn outputs_count(&self) -> usize {
        match &self.kind {
            Kind::Classifier { labels, .. } => labels.len(),
            _ => self.f32.outputs,
        }
    }

    /// Scores every row; returns `[rows, width]` values (as f64) and, for classifiers, labels.
    fn run<T: Float + Datum>(
        &self,
        e: &Ensemble<T>,
        input: Rows<'_, T>,
        rows: usize,
    ) -> TractResult<(Vec<f64>, Option<Vec<Choice>>)> {
        let (acc, has) = e.aggregate_input(input, rows, self.aggregate, &[])?;
        let k = e.outputs;
        let n_trees = e.n_trees() as f64;
        let mut out = vec![0.0f64; rows * self.outputs_count()];
        match &self.kind {
            Kind::Classifier { labels, binary_case, weights_all_positive } => {
                let classes = labels.len();
                let mut picks = Vec::with_capacity(rows);
                let (mut s, mut h) = (vec![0.0f32; classes], vec![false; classes]);
                for r in 0..rows {
                    s.fill(0.0);
                    h.fill(false);
                    for j in 0..k {
                        s[j] = acc[r * k + j].to_f64() as f32;
                        h[j] = has[r * k + j];
                    }
                    let z = &mut out[r * classes..(r + 1) * classes];
                    picks.push(classify(
                        &mut s,
                        &mut h,
                        &self.base_values,
                        self.post,
                        *binary_case,
                        *weights_all_positive,
                        z,
                    ));
                }
                Ok((out, Some(picks)))
            }
            Kind::Regressor | Kind::V5 => {
                let origin = if self.base_values.len() == 1 { self.base_values[0] } else { 0.0 };
                let use_base = self.base_values.len() == k;
                // A multi-output row's scores, reused row after row.
                let mut row = vec![0.0f32; k];
                for r in 0..rows {
                    if k == 1 {
                        let (a, h) = (acc[r].to_f64(), has[r]);
                        let v = match self.aggregate {
                            Aggregate::Sum => a + origin,
                            Aggregate::Average => a / n_trees + origin,
                            Aggregate::Min | Aggregate::Max => {
                                if h {
                                    a + origin
                                } else {
                                    origin
                                }
                            }
                        };
                        out[r] = if self.post == PostTransform::Probit { f64::from(probit(v as f32)) } else { v };
                    } else {
                        for (j, v) in row.iter_mut().enumerate() {
                            let (a, h) = (acc[r * k + j].to_f64(), has[r * k + j]);
                            let base = if use_base { self.base_values[j] } else { 0.0 };
                            let sum = if self.aggregate == Aggregate::Average { a / n_trees + base } else { a + base };
                            // onnxruntime reads an output no leaf reached as 0, base value included.
                            *v = if h { sum as f32 } else { 0.0 };
                        }
                        apply_row(self.post, &mut row);
                        for (o, v) in out[r * k..(r + 1) * k].iter_mut().zip(&row) {
                            *o = f64::from(*v);
                        }
                    }
                }
                Ok((out, None))
            }
        }
    }

    /// What [`Kernel::eval`] returns for a `[rows, columns.len()]` tensor of `input_dt` (float32
    /// or float64) built from float64 `columns`, one a feature, without building it: the
    /// ensemble reads the columns a block of rows at a time (each value read as float32 for a
    /// float32 tensor, as the tensor would hold it).
    pub(crate) fn eval_columns(
        &self,
        columns: &[&[f64]],
        rows: usize,
        input_dt: DatumType,
    ) -> TractResult<TVec<TValue>> {
        let (values, picks) = if input_dt == f64::datum_type() {
            self.run(&self.f64, Rows::Columns(columns), rows)?
        } else if input_dt == f32::datum_type() {
            self.run(&self.f32, Rows::Columns(columns), rows)?
        } else {
            bail!("{}: columns are read as float32 or float64, not {input_dt:?}", self.name());
        };
        self.outputs_from(rows, values, picks, input_dt)
    }

    /// The op's outputs from [`TreeOp::run`]'s values and labels, for an input of `input_dt`.
    fn outputs_from(
        &self,
        rows: usize,
        values: Vec<f64>,
        picks: Option<Vec<Choice>>,
        input_dt: DatumType,
    ) -> TractResult<TVec<TValue>> {
        let double = input_dt == f64::datum_type();
        let k = self.outputs_count();
        let scores = if matches!(self.kind, Kind::V5) && double {
            tensor_from(&[rows, k], values)?
        } else {
            tensor_from(&[rows, k], values.into_iter().map(|v| v as f32).collect::<Vec<f32>>())?
        };
        let scores = if matches!(self.kind, Kind::V5) && !double && input_dt != f32::datum_type() {
            scores.cast_to_dt(input_dt)?.into_owned()
        } else {
            scores
        };
        match (&self.kind, picks) {
            (Kind::Classifier { labels, .. }, Some(picks)) => {
                // A literal among string labels is the label at that index.
                let label = labels.choose(&picks, |v, l| v[l as usize].clone())?;
                Ok(tvec!(label.into_tvalue(), scores.into_tvalue()))
            }
            _ => Ok(tvec!(scores.into_tvalue())),
        }
    }
}

/// onnxruntime's classifier finalization: base values, the label, and the scores written.
fn classify(
    s: &mut [f32],
    h: &mut [bool],
    base: &[f64],
    post: PostTransform,
    binary_case: bool,
    all_positive: bool,
    z: &mut [f64],
) -> Choice {
    let classes = s.len();
    let value = |s: f32, h: bool| if h { s } else { 0.0 };
    if classes > 2 {
        for (j, b) in base.iter().enumerate().take(classes) {
            let b = *b as f32;
            if h[j] {
                s[j] += b;
            } else {
                s[j] = b;
                h[j] = true;
            }
        }
        let mut best: Option<usize> = None;
        for j in 0..classes {
            if h[j] && best.is_none_or(|b| s[j] > s[b]) {
                best = Some(j);
            }
        }
        // In place: `s` is the caller's scratch row.
        for (v, h) in s.iter_mut().zip(h.iter()) {
            *v = value(*v, *h);
        }
        apply_row(post, s);
        for (o, v) in z.iter_mut().zip(s.iter()) {
            *o = f64::from(*v);
        }
        return Choice::Index(best.unwrap_or(0));
    }
    // Two classes.
    #[derive(Clone, Copy, PartialEq)]
    enum Second {
        None,
        Complement,
        Mirror,
    }
    let mut second = Second::None;
    let mut len = 2;
    match base.len() {
        2 => {
            if h[1] {
                s[1] = base[1] as f32 + s[0];
                s[0] = -s[1];
            } else {
                s[1] += base[1] as f32;
                s[0] += base[0] as f32;
            }
        }
        1 => {
            s[0] += base[0] as f32;
            if !h[1] {
                len = 1;
            }
        }
        0 => {
            second = Second::Mirror;
            if !h[1] {
                len = 1;
            }
        }
        _ => {}
    }
    let pos = if len == 2 && h[1] {
        s[1]
    } else if h[0] {
        s[0]
    } else {
        0.0
    };
    let pick = if binary_case {
        // Weights all positive: probabilities, split at 0.5. Mixed signs: margins, split at 0.
        let threshold = if all_positive {
            second = Second::Complement;
            0.5
        } else {
            second = Second::Mirror;
            0.0
        };
        if pos > threshold { Choice::Index(1) } else { Choice::Index(0) }
    } else {
        Choice::Literal(i64::from(pos > 0.0))
    };
    if len == 2 {
        let mut row = [value(s[0], h[0]), value(s[1], h[1])];
        apply_row(post, &mut row);
        z[0] = f64::from(row[0]);
        z[1] = f64::from(row[1]);
    } else {
        let v = value(s[0], h[0]);
        if post == PostTransform::Probit {
            z[0] = f64::from(probit(v));
        } else {
            match second {
                Second::Complement => {
                    z[0] = f64::from(1.0 - v);
                    z[1] = f64::from(v);
                }
                Second::Mirror => {
                    let (a, b) = if post == PostTransform::Logistic { (logistic(-v), logistic(v)) } else { (-v, v) };
                    z[0] = f64::from(a);
                    z[1] = f64::from(b);
                }
                Second::None => z[0] = f64::from(v),
            }
        }
    }
    pick
}

impl Kernel for TreeOp {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Classifier { .. } => "TreeEnsembleClassifier",
            Kind::Regressor => "TreeEnsembleRegressor",
            Kind::V5 => "TreeEnsemble",
        }
    }

    fn outputs(&self) -> Vec<OutSpec> {
        match &self.kind {
            Kind::Classifier { labels, .. } => vec![
                OutSpec::new(labels.datum_type(), OutShape::Rows),
                OutSpec::new(f32::datum_type(), OutShape::RowsBy(labels.len())),
            ],
            Kind::Regressor => vec![OutSpec::new(f32::datum_type(), OutShape::RowsBy(self.f32.outputs))],
            Kind::V5 => vec![OutSpec { dt: OutType::SameAsInput, shape: OutShape::RowsBy(self.f32.outputs) }],
        }
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (rows, width) = rows_and_width(&inputs[0]);
        let input_dt = inputs[0].datum_type();
        let (values, picks) = if input_dt == f64::datum_type() {
            let x = inputs[0].try_as_plain_ram()?;
            self.run(&self.f64, Rows::Major { x: x.as_slice::<f64>()?, width }, rows)?
        } else {
            let x = as_f32(&inputs[0])?;
            let x = x.try_as_plain_ram()?;
            self.run(&self.f32, Rows::Major { x: x.as_slice::<f32>()?, width }, rows)?
        };
        self.outputs_from(rows, values, picks, input_dt)
    }
}
