//! XGBoost models: `model.ubj` / `model.json` (and `model.xgb`, whose bytes decide what it is),
//! read into a [`Booster`] with XGBoost's semantics (`src/predictor/predict_fn.h`): splits
//! `f32(x) < f32(cond)`, NaN to each node's default child, margins summed in float32 from the
//! base margin, the objective's transform in float32.

use mlscore_kernels::tree::{Mode, RawEnsemble, RawNode, Target};

use crate::booster::{Booster, FeatureRule, Inputs, Pyfunc, Transform, feature_count};
use crate::error::ReadError;
use crate::value::{Value, from_json, from_ubjson};

/// What the first bytes of an XGBoost model file say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// JSON (`model.json`).
    Json,
    /// Universal Binary JSON (`model.ubj`; `model.xgb` from xgboost 2.1 on).
    Ubjson,
    /// XGBoost's binary format before 2.1 (removed in 3.1): read by `xgboost_legacy`.
    Legacy,
}

/// Sniffs the encoding: JSON and UBJSON both open an object; UBJSON's first key is a length marker.
pub fn encoding(bytes: &[u8]) -> Encoding {
    match bytes {
        [b'{', b'L' | b'i' | b'U' | b'I' | b'l' | b'$' | b'#' | b'}', ..] => Encoding::Ubjson,
        [b'{', ..] => Encoding::Json,
        _ => Encoding::Legacy,
    }
}

/// Reads an XGBoost model file saved by `Booster.save_model` or a sklearn-API estimator's
/// `save_model`, for the flavor's `model_class`.
pub fn read(bytes: &[u8], model_class: &str) -> Result<Booster<f32>, ReadError> {
    let doc = match encoding(bytes) {
        Encoding::Json => from_json(bytes)?,
        Encoding::Ubjson => from_ubjson(bytes)?,
        Encoding::Legacy => crate::xgboost_legacy::read(bytes)?,
    };
    read_doc(&doc, model_class)
}

/// Reads the model of an XGBoost memory snapshot: the `handle` a pickled or skops-saved
/// `Booster` keeps (`Booster.__getstate__`), UBJSON `{"Config": ..., "Model": ...}`, whose
/// `Model` is what `save_model` writes.
pub(crate) fn read_snapshot(bytes: &[u8], model_class: &str) -> Result<Booster<f32>, ReadError> {
    if encoding(bytes) != Encoding::Ubjson {
        return Err(ReadError::Invalid(
            "its handle is not an XGBoost UBJSON snapshot (Booster.__getstate__ of xgboost 2.1 or later); \
             save the model again with a current xgboost"
                .into(),
        ));
    }
    let doc = from_ubjson(bytes)?;
    read_doc(doc.at("Model")?, model_class)
}

/// Reads a parsed model document (`{"learner": ...}`) for `model_class`.
fn read_doc(doc: &Value, model_class: &str) -> Result<Booster<f32>, ReadError> {
    let class = model_class.rsplit('.').next().unwrap_or(model_class);
    let pyfunc = match class {
        "Booster" => Pyfunc::Prediction,
        "XGBClassifier" | "XGBRFClassifier" => Pyfunc::Labels,
        "XGBRegressor" | "XGBRFRegressor" | "XGBRanker" => Pyfunc::Prediction,
        other => {
            return Err(ReadError::Unsupported(format!(
                "its model_class {other} is not one mlscore knows (Booster, XGBClassifier, XGBRegressor, XGBRanker, XGBRF*)"
            )));
        }
    };
    let learner = doc.at("learner")?;
    let param = learner.at("learner_model_param")?;
    let num_class = param.usize_at("num_class")?;
    let groups = num_class.max(1);
    if param.get("num_target").is_some() && param.usize_at("num_target")? > 1 {
        return Err(ReadError::Unsupported(
            "it is a multi-target model (num_target > 1), which mlscore does not score yet".into(),
        ));
    }
    let n_features = feature_count(param.usize_at("num_feature")?, "num_feature", usize::MAX)?;
    let objective = learner.str_at("objective/name")?;
    let (transform, link) = objective_semantics(objective)?;

    let booster = learner.at("gradient_booster")?;
    let (model, weights) = match booster.str_at("name")? {
        "gbtree" => (booster.at("model")?, None),
        "dart" => {
            let w = booster.at("weight_drop")?.numbers::<f32>("weight_drop")?;
            (booster.at("gbtree/model")?, Some(w))
        }
        other => {
            return Err(ReadError::Unsupported(format!(
                "its booster is {other}; mlscore scores tree boosters (gbtree, dart), not linear ones"
            )));
        }
    };
    let trees = model.at("trees")?.items("trees")?;
    // Every class has its trees (each round adds one a class), so more classes than trees is a
    // damaged file. Checked before anything is allocated per class (and scoring allocates each
    // row's outputs).
    if groups > trees.len().max(MAX_CLASSES_WITHOUT_TREES) {
        return Err(ReadError::Invalid(format!(
            "num_class is {num_class} and the model has {} trees: the model is damaged",
            trees.len()
        )));
    }
    let base = base_margins(param.str_at("base_score")?, groups, link)?;
    let tree_info: Vec<i64> = model.at("tree_info")?.numbers("tree_info")?;
    if tree_info.len() != trees.len() {
        return Err(ReadError::Invalid(format!("{} trees but {} tree_info entries", trees.len(), tree_info.len())));
    }
    if let Some(w) = &weights
        && w.len() != trees.len()
    {
        return Err(ReadError::Invalid(format!("{} trees but {} dart weights", trees.len(), w.len())));
    }
    // A sklearn-API model predicts with the rounds up to its best iteration (early stopping);
    // a Booster with all of them.
    let mut n_trees = trees.len();
    if class != "Booster"
        && let Some(best) = learner.get("attributes").and_then(|a| a.get("best_iteration"))
    {
        let best: usize = best
            .as_str()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| ReadError::Invalid("attribute best_iteration is not an integer".into()))?;
        let indptr: Vec<i64> = match model.get("iteration_indptr") {
            Some(v) => v.numbers("iteration_indptr")?,
            None => {
                let per_round = groups * model.usize_at("gbtree_model_param/num_parallel_tree")?.max(1);
                (0..=trees.len() / per_round.max(1)).map(|r| (r * per_round) as i64).collect()
            }
        };
        n_trees =
            indptr.get(best + 1).and_then(|n| usize::try_from(*n).ok()).filter(|n| *n <= trees.len()).ok_or_else(
                || {
                    ReadError::Invalid(format!(
                        "best_iteration {best} is past the model's {} rounds",
                        indptr.len().saturating_sub(1)
                    ))
                },
            )?;
    }

    let mut raw = RawEnsemble::default();
    for (t, tree) in trees[..n_trees].iter().enumerate() {
        let group = usize::try_from(tree_info[t]).ok().filter(|g| *g < groups).ok_or_else(|| {
            ReadError::Invalid(format!("tree {t} is for output group {}, but the model has {groups}", tree_info[t]))
        })?;
        let weight = weights.as_ref().map_or(1.0, |w| w[t]);
        add_tree(&mut raw, tree, t, group, weight)?;
    }
    if raw.roots.is_empty() {
        return Err(ReadError::Invalid("the model has no trees".into()));
    }
    let feature_names = match learner.get("feature_names") {
        Some(v) => v.strings("feature_names")?,
        None => Vec::new(),
    };
    let feature_types = match learner.get("feature_types") {
        Some(v) => v.strings("feature_types")?,
        None => Vec::new(),
    };
    let mut rules = vec![FeatureRule::AsIs; n_features];
    for (rule, ty) in rules.iter_mut().zip(&feature_types) {
        if ty == "c" {
            *rule = FeatureRule::Category;
        }
    }
    for n in raw.nodes.iter().filter(|n| n.mode == Mode::Member) {
        if let Some(rule) = rules.get_mut(n.feature) {
            *rule = FeatureRule::Category;
        }
    }
    let categories = match model.get("cats") {
        Some(cats) => categories(cats, n_features)?,
        None => vec![None; n_features],
    };
    let inputs = Inputs { n_features, names: feature_names, rules, categories, missing: None };
    Booster::new(&raw, groups, base, transform, pyfunc, inputs)
}

/// The training categories xgboost >= 3.1 stores (`cats.enc`: per feature, the names' UTF-8
/// bytes concatenated, with offsets); a feature's code is its category's position.
fn categories(cats: &Value, n_features: usize) -> Result<Vec<Option<Vec<String>>>, ReadError> {
    let mut out = vec![None; n_features];
    let Some(enc) = cats.get("enc") else {
        return Ok(out);
    };
    let enc = enc.items("cats/enc")?;
    if !enc.is_empty() && enc.len() != n_features {
        return Err(ReadError::Invalid(format!("cats/enc has {} entries for {n_features} features", enc.len())));
    }
    for (f, e) in enc.iter().enumerate() {
        let (Some(offsets), Some(values)) = (e.get("offsets"), e.get("values")) else {
            // Numeric categories (no names): codes are the values themselves.
            continue;
        };
        let offsets: Vec<i64> = offsets.numbers("cats/enc/offsets")?;
        let values: Vec<i64> = values.numbers("cats/enc/values")?;
        if offsets.is_empty() {
            continue;
        }
        let bytes: Vec<u8> = values.iter().map(|b| u8::try_from(*b).unwrap_or(0)).collect();
        let mut names = Vec::with_capacity(offsets.len());
        for (i, start) in offsets.iter().enumerate() {
            let end = offsets.get(i + 1).copied().unwrap_or(bytes.len() as i64);
            let range = usize::try_from(*start)
                .ok()
                .zip(usize::try_from(end).ok())
                .filter(|(s, e)| s <= e && *e <= bytes.len());
            let (s, e) =
                range.ok_or_else(|| ReadError::Invalid(format!("cats/enc of feature {f}: offsets out of range")))?;
            names.push(
                String::from_utf8(bytes[s..e].to_vec())
                    .map_err(|_| ReadError::Invalid(format!("cats/enc of feature {f}: a category is not UTF-8")))?,
            );
        }
        out[f] = Some(names);
    }
    Ok(out)
}

/// How base_score (stored in the objective's output space) becomes a margin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Identity,
    Logit,
    Log,
}

/// The output transform of an objective, and the link its base_score is stored through.
fn objective_semantics(name: &str) -> Result<(Transform, Link), ReadError> {
    Ok(match name {
        "binary:logistic" | "reg:logistic" => (Transform::Sigmoid(1.0), Link::Logit),
        "binary:logitraw" => (Transform::Identity, Link::Identity),
        "binary:hinge" => (Transform::Hinge, Link::Identity),
        "multi:softprob" => (Transform::Softmax, Link::Identity),
        "multi:softmax" => (Transform::ArgMax, Link::Identity),
        "reg:squarederror" | "reg:linear" | "reg:absoluteerror" | "reg:pseudohubererror" => {
            (Transform::Identity, Link::Identity)
        }
        "count:poisson" | "reg:gamma" | "reg:tweedie" => (Transform::Exp, Link::Log),
        n if n.starts_with("rank:") => (Transform::Identity, Link::Identity),
        other => {
            return Err(ReadError::Unsupported(format!(
                "its objective {other} is not one mlscore scores yet (binary:logistic, binary:logitraw, binary:hinge, \
                 reg:logistic, reg:squarederror, reg:absoluteerror, reg:pseudohubererror, multi:softprob, multi:softmax, \
                 count:poisson, reg:gamma, reg:tweedie, rank:*)"
            )));
        }
    })
}

/// The most classes a model without a tree for each may declare (a model of zero rounds).
const MAX_CLASSES_WITHOUT_TREES: usize = 1024;

/// base_score: `"5E-1"` before xgboost 3.1, `"[5E-1]"` or one value per class since; in the
/// objective's output space, turned into margins as XGBoost's `ProbToMargin` does (float32).
fn base_margins(text: &str, groups: usize, link: Link) -> Result<Vec<f32>, ReadError> {
    let bad = || ReadError::Invalid(format!("base_score '{text}' is not a number or a list of numbers"));
    let inner = text.trim().trim_start_matches('[').trim_end_matches(']');
    let values: Vec<f32> =
        inner.split(',').map(|v| v.trim().parse::<f32>().map_err(|_| bad())).collect::<Result<_, _>>()?;
    let values = match values.len() {
        1 => vec![values[0]; groups],
        n if n == groups => values,
        n => return Err(ReadError::Invalid(format!("base_score has {n} values for {groups} output groups"))),
    };
    Ok(values
        .into_iter()
        .map(|b| match link {
            Link::Identity => b,
            Link::Logit => -(1.0f32 / b - 1.0f32).ln(),
            Link::Log => b.ln(),
        })
        .collect())
}

/// Adds tree `t` (its node arrays) to `raw`, its leaves weighted `weight` (dart) and credited to
/// `group`. Every node must be reached exactly once from the root: a crafted file with shared
/// or cyclic children, or indices out of range, is an error.
fn add_tree(raw: &mut RawEnsemble, tree: &Value, t: usize, group: usize, weight: f32) -> Result<(), ReadError> {
    let ctx = |what: &str| format!("tree {t}: {what}");
    let field = |key: &str| tree.at(key).map_err(|_| ReadError::Missing(ctx(key)));
    if let Some(size) = tree.get("tree_param").and_then(|p| p.get("size_leaf_vector"))
        && !matches!(size.as_str().map(str::trim), Some("0" | "1") | None)
    {
        return Err(ReadError::Unsupported(format!(
            "{} (vector leaves of multi-target trees are not scored yet)",
            ctx("size_leaf_vector > 1")
        )));
    }
    let left: Vec<i64> = field("left_children")?.numbers(&ctx("left_children"))?;
    let right: Vec<i64> = field("right_children")?.numbers(&ctx("right_children"))?;
    let index: Vec<i64> = field("split_indices")?.numbers(&ctx("split_indices"))?;
    let cond: Vec<f32> = field("split_conditions")?.numbers(&ctx("split_conditions"))?;
    let default_left: Vec<i64> = field("default_left")?.numbers(&ctx("default_left"))?;
    let split_type: Vec<i64> = match tree.get("split_type") {
        Some(v) => v.numbers(&ctx("split_type"))?,
        None => vec![0; left.len()],
    };
    let n = left.len();
    if n == 0 || [right.len(), index.len(), cond.len(), default_left.len(), split_type.len()].iter().any(|l| *l != n) {
        return Err(ReadError::Invalid(ctx("its node arrays differ in length (or it has no nodes)")));
    }
    let child = |c: i64, what: &str| {
        usize::try_from(c)
            .ok()
            .filter(|c| *c < n)
            .ok_or_else(|| ReadError::Invalid(ctx(&format!("{what} {c} is out of range"))))
    };
    // Depth-first from the root, each node mapped to a split or a leaf of `raw`.
    let mut seen = vec![false; n];
    let mut stack = vec![(0usize, None::<(usize, bool)>)];
    while let Some((i, parent)) = stack.pop() {
        if std::mem::replace(&mut seen[i], true) {
            return Err(ReadError::Invalid(ctx(&format!("node {i} is reached twice (a cycle or a shared child)"))));
        }
        let target = if left[i] == -1 {
            raw.leaves.push(vec![(group, f64::from(cond[i] * weight))]);
            Target::Leaf(raw.leaves.len() - 1)
        } else {
            let feature = usize::try_from(index[i])
                .map_err(|_| ReadError::Invalid(ctx(&format!("node {i} reads feature {}", index[i]))))?;
            let (l, r) = (child(left[i], "left child")?, child(right[i], "right child")?);
            let me = raw.nodes.len();
            if split_type[i] == 0 {
                raw.nodes.push(RawNode {
                    feature,
                    threshold: f64::from(cond[i]),
                    mode: Mode::Lt,
                    members: vec![],
                    yes: Target::Leaf(0),
                    no: Target::Leaf(0),
                    missing_true: default_left[i] != 0,
                });
                stack.push((r, Some((me, false))));
                stack.push((l, Some((me, true))));
            } else {
                // The listed categories go right, every other value left; NaN to the default.
                raw.nodes.push(RawNode {
                    feature,
                    threshold: 0.0,
                    mode: Mode::Member,
                    members: split_categories(tree, i, &ctx)?,
                    yes: Target::Leaf(0),
                    no: Target::Leaf(0),
                    missing_true: default_left[i] == 0,
                });
                stack.push((r, Some((me, true))));
                stack.push((l, Some((me, false))));
            }
            Target::Node(me)
        };
        match parent {
            None => raw.roots.push(target),
            Some((p, true)) => raw.nodes[p].yes = target,
            Some((p, false)) => raw.nodes[p].no = target,
        }
    }
    Ok(())
}

/// The categories a categorical split of node `i` sends right (`categories_nodes` lists the
/// categorical nodes; `categories_segments` / `categories_sizes` their slices of `categories`).
fn split_categories(tree: &Value, i: usize, ctx: &dyn Fn(&str) -> String) -> Result<Vec<f64>, ReadError> {
    let field = |key: &str| -> Result<Vec<i64>, ReadError> {
        tree.at(key).map_err(|_| ReadError::Missing(ctx(key)))?.numbers(&ctx(key))
    };
    let (nodes, segments, sizes, cats) =
        (field("categories_nodes")?, field("categories_segments")?, field("categories_sizes")?, field("categories")?);
    let k = nodes
        .iter()
        .position(|n| *n == i as i64)
        .ok_or_else(|| ReadError::Invalid(ctx(&format!("categorical node {i} is not in categories_nodes"))))?;
    let (start, size) = (segments.get(k).copied().unwrap_or(-1), sizes.get(k).copied().unwrap_or(-1));
    let range = usize::try_from(start).ok().zip(usize::try_from(size).ok()).filter(|(s, n)| s + n <= cats.len());
    let (s, n) =
        range.ok_or_else(|| ReadError::Invalid(ctx(&format!("the categories of node {i} are out of range"))))?;
    Ok(cats[s..s + n].iter().map(|c| *c as f64).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_are_sniffed_from_bytes() {
        assert_eq!(encoding(b"{\"learner\": {}}"), Encoding::Json);
        assert_eq!(encoding(b"{ \"learner\": {}}"), Encoding::Json);
        assert_eq!(encoding(b"{L\0\0\0\0\0\0\0\x07learner"), Encoding::Ubjson);
        assert_eq!(encoding(b"\0\0\0?binf"), Encoding::Legacy);
        assert!(
            matches!(read(b"\0\0\0?", "xgboost.core.Booster"), Err(ReadError::Truncated(m)) if m.contains("legacy"))
        );
    }

    #[test]
    fn base_score_reads_both_forms_through_the_link() {
        assert_eq!(base_margins("5E-1", 1, Link::Logit).unwrap(), vec![0.0]);
        assert_eq!(base_margins("[5E-1]", 1, Link::Identity).unwrap(), vec![0.5]);
        assert_eq!(base_margins("[1E0,2E0]", 2, Link::Identity).unwrap(), vec![1.0, 2.0]);
        assert_eq!(base_margins("[1E0]", 3, Link::Log).unwrap(), vec![0.0; 3]);
        assert!(base_margins("[1E0,2E0]", 3, Link::Identity).is_err());
        assert!(base_margins("x", 1, Link::Identity).is_err());
    }

    fn one_tree(left: &str, right: &str) -> String {
        format!(
            r#"{{"learner": {{"learner_model_param": {{"num_class": "0", "num_feature": "1", "base_score": "[0E0]"}},
            "objective": {{"name": "reg:squarederror"}},
            "gradient_booster": {{"name": "gbtree", "model": {{"tree_info": [0], "trees": [{{
              "left_children": {left}, "right_children": {right}, "split_indices": [0, 0, 0],
              "split_conditions": [1.5, -1.0, 2.0], "default_left": [1, 0, 0], "split_type": [0, 0, 0]}}]}}}}}}}}"#
        )
    }

    #[test]
    fn strict_less_than_in_float32_and_default_left_for_nan() {
        let b = read(one_tree("[1, -1, -1]", "[2, -1, -1]").as_bytes(), "xgboost.core.Booster").unwrap();
        let x = [1.4999999f32, 1.5, f32::NAN];
        let s = b.score(&x, 3).unwrap();
        assert_eq!(s.values, vec![-1.0, 2.0, -1.0]);
    }

    #[test]
    fn crafted_trees_are_errors() {
        for (left, right, want) in [
            ("[1, -1, -1]", "[7, -1, -1]", "out of range"),
            ("[0, -1, -1]", "[2, -1, -1]", "reached twice"),
            ("[1, -1]", "[2, -1, -1]", "differ in length"),
        ] {
            let e = read(one_tree(left, right).as_bytes(), "xgboost.core.Booster").unwrap_err();
            assert!(e.to_string().contains(want), "{e}");
        }
    }
}
