//! LightGBM text models (`model.lgb`, `Booster.save_model`; also what a scikit-learn API model
//! holds), read into a [`Booster`] with
//! LightGBM's semantics (`include/LightGBM/tree.h`): inputs within 1e-35 of 0 read as 0 (its
//! dense-row reader drops them, `c_api.cpp`), splits `x <= threshold` in float64, NaN read as 0
//! on splits whose missing type is None, zeros sent to the default child on Zero splits
//! (`zero_as_missing`), NaN to it on NaN splits.

use std::collections::HashMap;

use mlscore_kernels::tree::{Mode, RawEnsemble, RawNode, Target};

use crate::booster::{Booster, FeatureRule, Inputs, Pyfunc, Transform, feature_count};
use crate::error::ReadError;

/// Reads a LightGBM text model (a Booster's `model.lgb`, or the `_handle` of a scikit-learn API
/// model), scoring at most `iterations` boosting rounds where given (the `best_iteration` a
/// scikit-learn API model predicts with).
pub fn read(text: &str, iterations: Option<usize>) -> Result<Booster<f64>, ReadError> {
    let mut lines = text.lines().map(str::trim_end);
    let mut header: HashMap<&str, &str> = HashMap::new();
    let mut average_output = false;
    let mut first_tree = None;
    for line in lines.by_ref() {
        if let Some(id) = line.strip_prefix("Tree=") {
            first_tree = Some(id);
            break;
        }
        if line == "average_output" {
            average_output = true;
        } else if let Some((k, v)) = line.split_once('=') {
            header.insert(k, v);
        }
    }
    if !text.starts_with("tree") {
        return Err(ReadError::Invalid("it does not start with 'tree': not a LightGBM text model".into()));
    }
    let count = |key: &str| -> Result<usize, ReadError> {
        let v = header.get(key).ok_or_else(|| ReadError::Missing(key.into()))?;
        v.trim().parse().map_err(|_| ReadError::Invalid(format!("{key}={v} is not a count")))
    };
    let groups = count("num_tree_per_iteration")?;
    if groups == 0 {
        return Err(ReadError::Invalid("num_tree_per_iteration=0".into()));
    }
    // LightGBM lists every feature (feature_names, feature_infos): at least two bytes each.
    let n_features = feature_count(count("max_feature_idx")?.saturating_add(1), "max_feature_idx", text.len() / 2)?;
    let feature_names: Vec<String> = match header.get("feature_names") {
        Some(v) => v.split(' ').map(str::to_string).collect(),
        None => Vec::new(),
    };
    let transform = objective_transform(header.get("objective").copied())?;

    // Tree blocks: "Tree=i", key=value lines, a blank line; then "end of trees".
    let mut raw = RawEnsemble::default();
    let mut rules = vec![None::<u8>; n_features];
    let mut next = first_tree;
    let mut t = 0;
    while let Some(id) = next {
        if id.trim() != t.to_string() {
            return Err(ReadError::Invalid(format!("tree {t} is numbered '{id}'")));
        }
        let mut fields: HashMap<&str, &str> = HashMap::new();
        next = None;
        for line in lines.by_ref() {
            if let Some(id) = line.strip_prefix("Tree=") {
                next = Some(id);
                break;
            }
            if line == "end of trees" {
                break;
            }
            if let Some((k, v)) = line.split_once('=') {
                fields.insert(k, v);
            }
        }
        if iterations.is_none_or(|i| t < i * groups) {
            add_tree(&mut raw, &fields, t, t % groups, &mut rules)?;
        }
        t += 1;
    }
    if raw.roots.is_empty() {
        return Err(ReadError::Invalid("the model has no trees".into()));
    }
    if raw.roots.len() % groups != 0 {
        return Err(ReadError::Invalid(format!(
            "{} trees is not a whole number of iterations of {groups} trees",
            raw.roots.len()
        )));
    }
    let rules: Vec<FeatureRule> = rules
        .into_iter()
        .map(|r| match r {
            Some(MISSING_ZERO) => FeatureRule::TinyIsMissing,
            Some(MISSING_CATEGORY) => FeatureRule::Category,
            _ => FeatureRule::TinyIsZero,
        })
        .collect();
    let categories = pandas_categories(text, header.get("feature_infos").copied(), n_features)?;
    let iterations = raw.roots.len() / groups;
    let inputs = Inputs { n_features, names: feature_names, rules, categories, missing: None };
    let mut booster = Booster::new(&raw, groups, vec![0.0; groups], transform, Pyfunc::Prediction, inputs)?;
    if average_output {
        booster.average = Some(iterations as f64);
    }
    Ok(booster)
}

/// The category names of the features that were pandas categoricals in training
/// (`pandas_categorical:` at the end of the file, one list per categorical column in column
/// order). The categorical features are those `feature_infos` lists categories for
/// (`0:1:2`, where numeric features have `[min:max]`); a file where the two disagree is refused.
fn pandas_categories(
    text: &str,
    feature_infos: Option<&str>,
    n_features: usize,
) -> Result<Vec<Option<Vec<String>>>, ReadError> {
    let mut out = vec![None; n_features];
    let Some(json) = text.lines().rev().find_map(|l| l.strip_prefix("pandas_categorical:")) else {
        return Ok(out);
    };
    let lists: Option<Vec<Vec<serde_json::Value>>> = serde_json::from_str(json.trim())
        .map_err(|e| ReadError::Invalid(format!("pandas_categorical is not a JSON list of lists: {e}")))?;
    let lists = lists.unwrap_or_default();
    if lists.is_empty() {
        return Ok(out);
    }
    let infos: Vec<&str> = feature_infos.unwrap_or_default().split(' ').collect();
    let categorical: Vec<usize> =
        (0..n_features).filter(|f| infos.get(*f).is_some_and(|i| !i.starts_with('[') && *i != "none")).collect();
    if categorical.len() != lists.len() {
        return Err(ReadError::Unsupported(format!(
            "its pandas_categorical has {} category lists for {} categorical features: mlscore cannot tell which \
             list belongs to which feature",
            lists.len(),
            categorical.len()
        )));
    }
    for (f, list) in categorical.into_iter().zip(lists) {
        out[f] = Some(
            list.into_iter()
                .map(|v| match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                })
                .collect(),
        );
    }
    Ok(out)
}

/// The objective line (`binary sigmoid:1`, `multiclass num_class:3`, `regression sqrt`, ...)
/// as an output transform (`src/objective/*.hpp`, `ConvertOutput`).
fn objective_transform(line: Option<&str>) -> Result<Transform, ReadError> {
    let Some(line) = line else {
        // No objective (a custom one): predictions are the raw scores.
        return Ok(Transform::Identity);
    };
    let mut words = line.split(' ');
    let name = words.next().unwrap_or_default();
    let params: Vec<&str> = words.collect();
    let sigmoid = || -> Result<f64, ReadError> {
        match params.iter().find_map(|p| p.strip_prefix("sigmoid:")) {
            Some(v) => v.parse().map_err(|_| ReadError::Invalid(format!("objective '{line}': sigmoid:{v}"))),
            None => Ok(1.0),
        }
    };
    Ok(match name {
        "binary" | "multiclassova" => Transform::Sigmoid(sigmoid()?),
        "multiclass" => Transform::Softmax,
        "cross_entropy" => Transform::Sigmoid(1.0),
        "cross_entropy_lambda" => Transform::Log1pExp,
        "regression" if params.contains(&"sqrt") => Transform::SignedSquare,
        "regression" | "regression_l1" | "huber" | "fair" | "quantile" | "mape" | "lambdarank" | "rank_xendcg"
        | "custom" => Transform::Identity,
        "poisson" | "gamma" | "tweedie" => Transform::Exp,
        other => {
            return Err(ReadError::Unsupported(format!(
                "its objective {other} is not one mlscore scores yet (binary, multiclass, multiclassova, cross_entropy, \
                 cross_entropy_lambda, regression[ sqrt], regression_l1, huber, fair, quantile, mape, poisson, gamma, \
                 tweedie, lambdarank, rank_xendcg)"
            )));
        }
    })
}

const MISSING_NONE: u8 = 0;
const MISSING_ZERO: u8 = 1;
const MISSING_NAN: u8 = 2;
/// Not a missing type: marks a feature with categorical splits in `add_tree`'s `rules`.
const MISSING_CATEGORY: u8 = 255;

/// Adds one tree; `rules` collects each feature's missing type (Zero and NaN must not mix on
/// one feature: LightGBM decides it per feature, and mlscore reads zeros as missing per feature).
fn add_tree(
    raw: &mut RawEnsemble,
    fields: &HashMap<&str, &str>,
    t: usize,
    group: usize,
    rules: &mut [Option<u8>],
) -> Result<(), ReadError> {
    let ctx = |what: &str| format!("tree {t}: {what}");
    let get = |key: &str| fields.get(key).copied().ok_or_else(|| ReadError::Missing(ctx(key)));
    let list =
        |key: &str| -> Result<Vec<&str>, ReadError> { Ok(get(key)?.split(' ').filter(|s| !s.is_empty()).collect()) };
    fn parse<T: std::str::FromStr>(v: &[&str], what: &str) -> Result<Vec<T>, ReadError> {
        v.iter().map(|s| s.parse().map_err(|_| ReadError::Invalid(format!("{what}: '{s}' is not a number")))).collect()
    }
    let num_leaves: usize =
        get("num_leaves")?.trim().parse().map_err(|_| ReadError::Invalid(ctx("num_leaves is not a count")))?;
    if fields.get("is_linear").is_some_and(|v| v.trim() != "0") {
        return Err(ReadError::Unsupported(ctx(
            "it is a linear tree (linear_tree=true), which mlscore does not score yet; train without linear_tree",
        )));
    }
    let num_cat: usize = match fields.get("num_cat") {
        Some(v) => v.trim().parse().map_err(|_| ReadError::Invalid(ctx("num_cat is not a count")))?,
        None => 0,
    };
    // Categorical splits: split i's threshold indexes `cat_boundaries`, which slices
    // `cat_threshold` into the u32 words of a bitset of the categories that go left.
    let (cat_boundaries, cat_threshold): (Vec<usize>, Vec<u32>) = if num_cat > 0 {
        let b: Vec<usize> = parse(&list("cat_boundaries")?, &ctx("cat_boundaries"))?;
        let t: Vec<u32> = parse(&list("cat_threshold")?, &ctx("cat_threshold"))?;
        if b.len() != num_cat + 1 || b.windows(2).any(|w| w[0] > w[1]) || b.last().is_some_and(|e| *e > t.len()) {
            return Err(ReadError::Invalid(ctx("cat_boundaries do not slice cat_threshold")));
        }
        (b, t)
    } else {
        (Vec::new(), Vec::new())
    };
    let leaf_value: Vec<f64> = parse(&list("leaf_value")?, &ctx("leaf_value"))?;
    if num_leaves == 0 || leaf_value.len() != num_leaves {
        return Err(ReadError::Invalid(ctx(&format!("{} leaf values for {num_leaves} leaves", leaf_value.len()))));
    }
    let leaf_base = raw.leaves.len();
    raw.leaves.extend(leaf_value.iter().map(|v| vec![(group, *v)]));
    if num_leaves == 1 {
        raw.roots.push(Target::Leaf(leaf_base));
        return Ok(());
    }
    let n = num_leaves - 1;
    let feature: Vec<usize> = parse(&list("split_feature")?, &ctx("split_feature"))?;
    let threshold: Vec<f64> = parse(&list("threshold")?, &ctx("threshold"))?;
    let decision: Vec<u8> = parse(&list("decision_type")?, &ctx("decision_type"))?;
    let left: Vec<i64> = parse(&list("left_child")?, &ctx("left_child"))?;
    let right: Vec<i64> = parse(&list("right_child")?, &ctx("right_child"))?;
    if [feature.len(), threshold.len(), decision.len(), left.len(), right.len()].iter().any(|l| *l != n) {
        return Err(ReadError::Invalid(ctx(&format!(
            "its split arrays do not all have {n} entries ({num_leaves} leaves)"
        ))));
    }
    let node_base = raw.nodes.len();
    let target = |c: i64| -> Result<Target, ReadError> {
        if c >= 0 {
            usize::try_from(c).ok().filter(|c| *c < n).map(|c| Target::Node(node_base + c))
        } else {
            usize::try_from(!c).ok().filter(|l| *l < num_leaves).map(|l| Target::Leaf(leaf_base + l))
        }
        .ok_or_else(|| ReadError::Invalid(ctx(&format!("child {c} is out of range"))))
    };
    for i in 0..n {
        let (dt, f) = (decision[i], feature[i]);
        let rule = rules
            .get_mut(f)
            .ok_or_else(|| ReadError::Invalid(ctx(&format!("split {i} reads feature {f}, past max_feature_idx"))))?;
        let both = || ReadError::Invalid(ctx(&format!("feature {f} has both numeric and categorical splits")));
        let (mode, thr, members, missing_true) = if dt & 1 != 0 {
            // Categories whose bit is set go left; NaN, negative and unset values go right.
            if rule.is_some_and(|r| r != MISSING_CATEGORY) {
                return Err(both());
            }
            *rule = Some(MISSING_CATEGORY);
            // The threshold is the bitset's index: a NaN, a negative or one past the bitsets (a
            // float past usize saturates to usize::MAX) is refused.
            let idx = threshold[i] as usize;
            if threshold[i].is_nan() || threshold[i] < 0.0 || idx >= cat_boundaries.len().saturating_sub(1) {
                return Err(ReadError::Invalid(ctx(&format!("categorical split {i} has bitset {}", threshold[i]))));
            }
            let words = &cat_threshold[cat_boundaries[idx]..cat_boundaries[idx + 1]];
            let members =
                (0..words.len() * 32).filter(|c| words[c / 32] >> (c % 32) & 1 == 1).map(|c| c as f64).collect();
            (Mode::Member, 0.0, members, false)
        } else {
            let default_left = dt & 2 != 0;
            let missing = (dt >> 2) & 3;
            match (*rule, missing) {
                (Some(MISSING_CATEGORY), _) => return Err(both()),
                (_, MISSING_NONE) => {}
                (None, m) => *rule = Some(m),
                (Some(r), m) if r == m => {}
                _ => {
                    return Err(ReadError::Unsupported(ctx(&format!(
                        "feature {f} has splits with both the Zero and the NaN missing type, which mlscore cannot score exactly"
                    ))));
                }
            }
            let missing_true = match missing {
                // NaN is read as 0.0 and compared.
                MISSING_NONE => 0.0 <= threshold[i],
                MISSING_ZERO | MISSING_NAN => default_left,
                m => return Err(ReadError::Invalid(ctx(&format!("split {i} has missing type {m}")))),
            };
            (Mode::Leq, threshold[i], vec![], missing_true)
        };
        raw.nodes.push(RawNode {
            feature: f,
            threshold: thr,
            mode,
            members,
            yes: target(left[i])?,
            no: target(right[i])?,
            missing_true,
        });
    }
    // Every split and leaf reached exactly once from the root (split 0).
    let mut seen_nodes = vec![false; n];
    let mut seen_leaves = vec![false; num_leaves];
    let mut stack = vec![Target::Node(node_base)];
    while let Some(at) = stack.pop() {
        let seen = match at {
            Target::Node(i) => {
                let node = &raw.nodes[i];
                stack.extend([node.yes, node.no]);
                &mut seen_nodes[i - node_base]
            }
            Target::Leaf(l) => &mut seen_leaves[l - leaf_base],
        };
        if std::mem::replace(seen, true) {
            return Err(ReadError::Invalid(ctx("a split or leaf is reached twice (a cycle or a shared child)")));
        }
    }
    raw.roots.push(Target::Node(node_base));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(decision: &str, left: &str, right: &str) -> String {
        format!(
            "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nmax_feature_idx=0\nobjective=regression\n\n\
             Tree=0\nnum_leaves=3\nnum_cat=0\nsplit_feature=0 0\nthreshold=1.5 -0.5\ndecision_type={decision}\n\
             left_child={left}\nright_child={right}\nleaf_value=10 20 30\nis_linear=0\nshrinkage=1\n\n\nend of trees\n"
        )
    }

    fn score(text: &str, x: &[f64]) -> Vec<f64> {
        let b = read(text, None).unwrap();
        let mut x = x.to_vec();
        b.read_features(&mut x);
        b.score(&x, x.len()).unwrap().values
    }

    #[test]
    fn missing_types_decide_where_nan_and_zero_go() {
        // Split 0: x <= 1.5 ? split 1 : leaf 2. Split 1: x <= -0.5 ? leaf 0 : leaf 1.
        let (l, r) = ("1 -1", "-3 -2");
        // None (default_left set, ignored): NaN is 0: 0 <= 1.5, 0 > -0.5 -> leaf 1.
        assert_eq!(score(&model("2 2", l, r), &[f64::NAN, 1.5, -0.5, 2.0]), vec![20.0, 20.0, 10.0, 30.0]);
        // NaN, default right on split 0: NaN -> leaf 2; zero is a number.
        assert_eq!(score(&model("8 8", l, r), &[f64::NAN, 0.0]), vec![30.0, 20.0]);
        // Zero, default left everywhere: 0 and NaN go left twice -> leaf 0.
        assert_eq!(score(&model("6 6", l, r), &[0.0, f64::NAN, 1e-36, 0.1]), vec![10.0, 10.0, 10.0, 20.0]);
    }

    #[test]
    fn crafted_trees_are_errors() {
        for (left, right, want) in
            [("1 -1", "-3 -7", "out of range"), ("0 -1", "-3 -2", "reached twice"), ("1", "-3 -2", "entries")]
        {
            let e = read(&model("2 2", left, right), None).unwrap_err();
            assert!(e.to_string().contains(want), "{e}");
        }
        let e = read(&model("1 2", "1 -1", "-3 -2"), None).unwrap_err();
        assert!(e.to_string().contains("categorical"), "{e}");
    }
}
