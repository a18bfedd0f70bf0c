//! XGBoost's binary model format before 2.1 (what `Booster.save_model("model.xgb")` and
//! `save_raw()` wrote with xgboost 1.x and 2.0, so what MLflow 2's `mlflow.xgboost` logged on
//! Databricks Runtime ML 13 to 15), read into the document the JSON and UBJSON readers build,
//! so that one reader interprets all three.
//!
//! The layout, little-endian: an optional `binf` tag; the learner's 136-byte parameter block
//! (`base_score` f32 in the objective's output space, `num_feature` u32, `num_class` i32,
//! whether attributes follow, whether metric names follow, the writer's major and minor version,
//! `num_target`, then reserved words); the objective's and the booster's names (u64 length and
//! bytes each); for `gbtree`, its 160-byte parameter block (`num_trees` i32 first, then `num_parallel_tree`) and each tree:
//! a 148-byte parameter block (`num_nodes` i32 second, `size_leaf_vector` sixth), its nodes (20
//! bytes each: parent, left and right child i32, the split feature u32 whose top bit is
//! `default_left`, and the threshold or, for a leaf, its value as f32) and their statistics (16
//! bytes each, not used); then `tree_info` (i32 a tree); then the attributes (a u64 count of
//! string pairs) and the metric names when the flags say so. Every count is checked against the
//! bytes left before anything is allocated.

use crate::error::ReadError;
use crate::value::{Value, fits, take};

/// The learner's parameter block, a tree booster's and a tree's (each with its reserved words).
const LEARNER_PARAM: usize = 136;
const GBTREE_PARAM: usize = 160;
const TREE_PARAM: usize = 148;
const NODE: usize = 20;
const NODE_STAT: usize = 16;

struct Bytes<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Bytes<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ReadError> {
        let pos = self.pos;
        take(self.b, &mut self.pos, n).ok_or_else(|| {
            ReadError::Truncated(format!(
                "XGBoost legacy binary model: {what} ({n} bytes at offset {pos}) runs past the end of the file ({} bytes)",
                self.b.len()
            ))
        })
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], ReadError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn i32(&mut self, what: &str) -> Result<i32, ReadError> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, ReadError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count of items of `size` bytes each, which the bytes left must hold.
    fn count(&mut self, n: u64, size: usize, what: &str) -> Result<usize, ReadError> {
        let left = self.b.len() - self.pos;
        if fits(n, size, left) {
            Ok(n as usize)
        } else {
            Err(ReadError::Truncated(format!(
                "XGBoost legacy binary model: {what} declares {n} items, more than the {left} bytes left hold"
            )))
        }
    }

    fn string(&mut self, what: &str) -> Result<String, ReadError> {
        let n = self.u64(what)?;
        let n = self.count(n, 1, what)?;
        let s = self.take(n, what)?;
        String::from_utf8(s.to_vec())
            .map_err(|_| ReadError::Invalid(format!("XGBoost legacy binary model: {what} is not UTF-8")))
    }
}

/// Word `i` (4 bytes) of a fixed-size block the reader has taken whole, so in range.
fn word(block: &[u8], i: usize) -> [u8; 4] {
    [block[4 * i], block[4 * i + 1], block[4 * i + 2], block[4 * i + 3]]
}

/// Reads a legacy binary model into a `{"learner": ...}` document.
pub(crate) fn read(bytes: &[u8]) -> Result<Value, ReadError> {
    let mut r = Bytes { b: bytes, pos: 0 };
    if bytes.starts_with(b"binf") {
        r.pos = 4;
    }
    let param = r.take(LEARNER_PARAM, "the learner's parameters")?;
    let base_score = f32::from_le_bytes(word(param, 0));
    let num_feature = u32::from_le_bytes(word(param, 1));
    let num_class = i32::from_le_bytes(word(param, 2));
    let has_attributes = i32::from_le_bytes(word(param, 3)) != 0;
    let has_metrics = i32::from_le_bytes(word(param, 4)) != 0;
    let major = u32::from_le_bytes(word(param, 5));
    let num_target = u32::from_le_bytes(word(param, 7)).max(1);
    if major > 2 || !base_score.is_finite() || num_class < 0 {
        return Err(ReadError::Invalid(
            "it is not an XGBoost model (not JSON, UBJSON, nor a legacy binary model's parameters)".into(),
        ));
    }
    let objective = r.string("the objective's name")?;
    let booster = r.string("the booster's name")?;
    if booster != "gbtree" {
        return Err(ReadError::Unsupported(format!(
            "its booster is {booster} in XGBoost's legacy binary format; mlscore reads gbtree boosters in that format \
             (re-save the model with xgboost 2.x as UBJSON: `b = xgboost.Booster(model_file='model.xgb'); \
             b.save_model('model.ubj')`)"
        )));
    }
    let gbtree = r.take(GBTREE_PARAM, "the tree booster's parameters")?;
    let num_trees = i32::from_le_bytes(word(gbtree, 0));
    // Trees a round (random forests); older files hold 0 or 1 there.
    let num_parallel_tree = i32::from_le_bytes(word(gbtree, 1)).max(1);
    let num_trees = r.count(u64::try_from(num_trees).unwrap_or(u64::MAX), TREE_PARAM, "num_trees")?;
    let mut trees = Vec::with_capacity(num_trees);
    for t in 0..num_trees {
        let what = |x: &str| format!("tree {t}'s {x}");
        let tp = r.take(TREE_PARAM, &what("parameters"))?;
        let tword = |i: usize| i32::from_le_bytes(word(tp, i));
        let (num_nodes, size_leaf_vector) = (tword(1), tword(5));
        let n = r.count(u64::try_from(num_nodes).unwrap_or(u64::MAX), NODE + NODE_STAT, &what("num_nodes"))?;
        let (mut left, mut right, mut index, mut cond, mut default_left) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for _ in 0..n {
            let node = r.take(NODE, &what("nodes"))?;
            let f = |i: usize| word(node, i);
            left.push(i64::from(i32::from_le_bytes(f(1))));
            right.push(i64::from(i32::from_le_bytes(f(2))));
            let split = u32::from_le_bytes(f(3));
            index.push(i64::from(split & 0x7fff_ffff));
            default_left.push(i64::from(split >> 31));
            cond.push(f32::from_le_bytes(f(4)));
        }
        r.take(n * NODE_STAT, &what("node statistics"))?;
        trees.push(Value::Object(vec![
            ("left_children".into(), Value::I64s(left)),
            ("right_children".into(), Value::I64s(right)),
            ("split_indices".into(), Value::I64s(index)),
            ("split_conditions".into(), Value::F32s(cond)),
            ("default_left".into(), Value::I64s(default_left)),
            (
                "tree_param".into(),
                Value::Object(vec![("size_leaf_vector".into(), Value::Str(size_leaf_vector.to_string()))]),
            ),
        ]));
    }
    let tree_info = (0..num_trees).map(|_| r.i32("tree_info").map(i64::from)).collect::<Result<Vec<_>, _>>()?;
    let mut attributes = Vec::new();
    if has_attributes {
        let n = r.u64("the attributes' count")?;
        let n = r.count(n, 16, "the attributes")?;
        for _ in 0..n {
            let key = r.string("an attribute's name")?;
            let value = r.string("an attribute's value")?;
            attributes.push((key, Value::Str(value)));
        }
    }
    if has_metrics {
        let n = r.u64("the metrics' count")?;
        let n = r.count(n, 8, "the metrics")?;
        for _ in 0..n {
            r.string("a metric's name")?;
        }
    }
    if r.pos != bytes.len() {
        return Err(ReadError::Unsupported(format!(
            "XGBoost's legacy binary model holds {} bytes past its last field (categorical splits, or a layout \
             other than xgboost 1.x's and 2.0's); re-save it with xgboost 2.x as UBJSON: \
             `b = xgboost.Booster(model_file='model.xgb'); b.save_model('model.ubj')`",
            bytes.len() - r.pos
        )));
    }
    let learner_param = Value::Object(vec![
        ("base_score".into(), Value::Str(format!("{base_score:?}"))),
        ("num_class".into(), Value::Str(num_class.to_string())),
        ("num_feature".into(), Value::Str(num_feature.to_string())),
        ("num_target".into(), Value::Str(num_target.to_string())),
    ]);
    let model_param = Value::Object(vec![
        ("num_trees".into(), Value::Str(num_trees.to_string())),
        ("num_parallel_tree".into(), Value::Str(num_parallel_tree.to_string())),
    ]);
    let model = Value::Object(vec![
        ("gbtree_model_param".into(), model_param),
        ("trees".into(), Value::Array(trees)),
        ("tree_info".into(), Value::I64s(tree_info)),
    ]);
    let learner = Value::Object(vec![
        ("learner_model_param".into(), learner_param),
        ("objective".into(), Value::Object(vec![("name".into(), Value::Str(objective))])),
        (
            "gradient_booster".into(),
            Value::Object(vec![("name".into(), Value::Str("gbtree".into())), ("model".into(), model)]),
        ),
        ("attributes".into(), Value::Object(attributes)),
    ]);
    Ok(Value::Object(vec![("learner".into(), learner)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A legacy file of one regression stump, `x0 < 1.5` (NaN to the left): left leaf -1, right 2.
    fn stump(num_nodes: i32, extra: &[u8]) -> Vec<u8> {
        let mut b = b"binf".to_vec();
        let mut param = [0u8; LEARNER_PARAM];
        for (i, w) in [0.5f32.to_bits(), 1, 0, 0, 0, 1, 7, 1].iter().enumerate() {
            param[4 * i..4 * i + 4].copy_from_slice(&w.to_le_bytes());
        }
        b.extend(param);
        for s in ["reg:squarederror", "gbtree"] {
            b.extend((s.len() as u64).to_le_bytes());
            b.extend(s.as_bytes());
        }
        let mut gbtree = [0u8; GBTREE_PARAM];
        gbtree[..4].copy_from_slice(&1i32.to_le_bytes());
        b.extend(gbtree);
        let mut tree = [0u8; TREE_PARAM];
        tree[4..8].copy_from_slice(&num_nodes.to_le_bytes());
        b.extend(tree);
        let node = |parent: i32, l: i32, r: i32, split: u32, v: f32| {
            [parent.to_le_bytes(), l.to_le_bytes(), r.to_le_bytes(), split.to_le_bytes(), v.to_le_bytes()].concat()
        };
        b.extend(node(-1, 1, 2, 1 << 31, 1.5));
        b.extend(node(i32::MIN, -1, -1, 0, -1.0));
        b.extend(node(0, -1, -1, 0, 2.0));
        b.extend([0u8; 3 * NODE_STAT]);
        b.extend(0i32.to_le_bytes());
        b.extend(extra);
        b
    }

    #[test]
    fn a_stump_reads_into_the_json_document() {
        let doc = read(&stump(3, &[])).unwrap();
        assert_eq!(doc.str_at("learner/objective/name").unwrap(), "reg:squarederror");
        assert_eq!(doc.str_at("learner/learner_model_param/base_score").unwrap(), "0.5");
        let tree = &doc.at("learner/gradient_booster/model/trees").unwrap().items("trees").unwrap()[0];
        assert_eq!(tree.at("left_children").unwrap().numbers::<i64>("l").unwrap(), vec![1, -1, -1]);
        assert_eq!(tree.at("default_left").unwrap().numbers::<i64>("d").unwrap(), vec![1, 0, 0]);
        assert_eq!(tree.at("split_conditions").unwrap().numbers::<f32>("c").unwrap(), vec![1.5, -1.0, 2.0]);
        // And scores through the reader every format shares.
        assert!(crate::xgboost::read(&stump(3, &[]), "xgboost.core.Booster").is_ok());
    }

    #[test]
    fn declared_counts_past_the_file_and_bytes_left_over_are_errors() {
        let e = read(&stump(i32::MAX, &[])).unwrap_err();
        assert!(matches!(e, ReadError::Truncated(_)), "{e:?}");
        assert!(e.to_string().contains("declares 2147483647 items"), "{e}");
        let e = read(&stump(3, b"more")).unwrap_err().to_string();
        assert!(e.contains("4 bytes past its last field"), "{e}");
        let full = stump(3, &[]);
        for cut in [3, 100, 200, full.len() - 1] {
            let e = read(&full[..cut]).unwrap_err();
            assert!(matches!(e, ReadError::Truncated(_)), "cut at {cut}: {e:?}");
        }
    }
}
