//! A tree ensemble compiled for fast evaluation.
//!
//! Every tree is re-laid out breadth-first in one flat array of 12-byte nodes (16 for f64).
//! Leaves step to themselves, so walking a tree is `depth` identical steps with no branch on
//! the node kind. Rows are walked in blocks: for each tree, every row of the block advances one
//! level at a time, so the loads of different rows overlap instead of waiting on each other,
//! and the tree's nodes and the block's features stay in L1.
//!
//! All comparisons are rewritten as `x <= t` with the node's children ordered accordingly:
//! `x < t` is `x <= pred(t)`, `x > t` is `!(x <= t)`, `x >= t` is `!(x <= pred(t))`. What a NaN
//! does (the true branch when `missing_value_tracks_true`, else the branch the comparison gives)
//! is one bit a node. A MEMBER (categorical) split whose set holds integers below 256 keeps its
//! set in the node, as a mask in the threshold's bits, or as the number of a 256-bit set in the
//! ensemble's table; a node bit picks its test or the `x <= t` one without a branch. Trees with
//! EQ or NEQ nodes, sets of other values, or thresholds that cannot be rewritten, take the exact
//! per-mode path.
//!
//! Before any node is walked, the `x <= t` form is also scored by bit-vectors (the `bits` module): whole
//! trees of up to 32 or 64 leaves, and the top levels of larger trees, whose walk then starts from the
//! node the masks reached.

mod bits;

use std::collections::VecDeque;

use self::bits::{BitTrees, CatTable, ColumnBlock, MAX_LEAVES, MaskBuf, Reached, RowBlock, Word};

use crate::encode::Positions;
use crate::error::Result;
use crate::{bail, ensure};

/// A branch mode of the ONNX tree operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// `x <= threshold` takes the true branch.
    Leq,
    /// `x < threshold`.
    Lt,
    /// `x >= threshold`.
    Gte,
    /// `x > threshold`.
    Gt,
    /// `x == threshold`.
    Eq,
    /// `x != threshold`.
    Neq,
    /// `x` is one of the node's `members` (a categorical split).
    Member,
}

/// Where a branch leads, before compilation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// An index into [`RawEnsemble::nodes`].
    Node(usize),
    /// An index into [`RawEnsemble::leaves`].
    Leaf(usize),
}

/// A split, before compilation.
#[derive(Debug, Clone, PartialEq)]
pub struct RawNode {
    /// The input column the split reads.
    pub feature: usize,
    /// The threshold, as written by the model (rounded to the ensemble's float type when compiled).
    pub threshold: f64,
    /// The comparison.
    pub mode: Mode,
    /// The values a [`Mode::Member`] split sends to the true branch.
    pub members: Vec<f64>,
    /// Where rows the comparison holds for go.
    pub yes: Target,
    /// Where the others go.
    pub no: Target,
    /// Whether a NaN goes to `yes` (else it goes where its comparison, always false, sends it).
    pub missing_true: bool,
}

/// An ensemble as the ONNX attributes describe it (every version maps to this).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawEnsemble {
    /// Every split of every tree.
    pub nodes: Vec<RawNode>,
    /// Each leaf's `(output index, weight)` entries, in attribute order.
    pub leaves: Vec<Vec<(usize, f64)>>,
    /// Each tree's first node (or leaf, for a tree that is a single leaf), in tree order.
    pub roots: Vec<Target>,
}

impl RawEnsemble {
    /// Makes the leaves whose entries are equal (bit for bit) one leaf, which every split and
    /// root that named any of them names; leaves keep the order of their first appearance.
    /// Every row scores the same. A forest's table of leaf values ([`Self::leaf_table`]) keeps
    /// only its distinct rows: a RandomForest of 100 trees of depth 8 has 19,129 leaves and
    /// 5,200 distinct pairs of class fractions.
    ///
    /// ```
    /// use mlscore_kernels::tree::{RawEnsemble, Target};
    /// let mut raw = RawEnsemble {
    ///     nodes: vec![],
    ///     leaves: vec![vec![(0, 1.0)], vec![(0, 2.0)], vec![(0, 1.0)]],
    ///     roots: vec![Target::Leaf(2), Target::Leaf(1), Target::Leaf(0)],
    /// };
    /// raw.share_equal_leaves();
    /// assert_eq!(raw.leaves, vec![vec![(0, 1.0)], vec![(0, 2.0)]]);
    /// assert_eq!(raw.roots, vec![Target::Leaf(0), Target::Leaf(1), Target::Leaf(0)]);
    /// ```
    pub fn share_equal_leaves(&mut self) {
        let mut first: Positions<Vec<(usize, u64)>> = Positions::default();
        let mut kept: Vec<Vec<(usize, f64)>> = Vec::new();
        let shared: Vec<usize> = std::mem::take(&mut self.leaves)
            .into_iter()
            .map(|leaf| {
                let key = leaf.iter().map(|(o, v)| (*o, v.to_bits())).collect();
                *first.entry(key).or_insert_with(|| {
                    kept.push(leaf);
                    kept.len() - 1
                })
            })
            .collect();
        self.leaves = kept;
        // A leaf number past the leaves (a damaged model) stays past them, for compile to refuse.
        let renumber = |t: &mut Target| {
            if let Target::Leaf(l) = t
                && let Some(n) = shared.get(*l)
            {
                *l = *n;
            }
        };
        for n in &mut self.nodes {
            renumber(&mut n.yes);
            renumber(&mut n.no);
        }
        self.roots.iter_mut().for_each(renumber);
    }

    /// Every leaf's weights as a row of `outputs` values, leaf after leaf, where each leaf
    /// weighs each output exactly once (forest classifiers); else `None`. Adding a leaf's row
    /// gives the same sums, in the same order, as adding its entries one by one.
    pub fn leaf_table(&self, outputs: usize) -> Option<Vec<f64>> {
        // Checked before the table is allocated: `outputs` may come from a damaged file.
        if self.leaves.iter().any(|leaf| leaf.len() != outputs) {
            return None;
        }
        let mut table = vec![0.0; self.leaves.len().checked_mul(outputs)?];
        for (l, leaf) in self.leaves.iter().enumerate() {
            let mut seen = vec![false; outputs];
            for (o, v) in leaf {
                if *o >= outputs || std::mem::replace(&mut seen[*o], true) {
                    return None;
                }
                table[l * outputs + o] = *v;
            }
        }
        Some(table)
    }
}

/// The float types an ensemble is evaluated in (that of its input).
pub trait Float:
    Copy
    + Default
    + PartialOrd
    + std::ops::AddAssign
    + std::ops::Add<Output = Self>
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// Positive infinity.
    const INFINITY: Self;
    /// Negative infinity.
    const NEG_INFINITY: Self;
    /// The nearest value to `v`.
    fn from_f64(v: f64) -> Self;
    /// The value, exactly.
    fn to_f64(self) -> f64;
    /// Whether it is NaN.
    fn is_nan(self) -> bool;
    /// The largest value below `self`, if there is one (`None` for -inf and NaN).
    fn pred(self) -> Option<Self>;
    /// How many small integers a membership mask in a value's bits holds (its width in bits).
    const MASK_BITS: u32;
    /// The value whose bits are `mask` (the low [`Float::MASK_BITS`] bits): a membership mask.
    fn from_mask(mask: u64) -> Self;
    /// Whether `self` is one of the integers `0..MASK_BITS` whose bit is set in `mask`'s bits
    /// (equal as floats: -0.0 is 0; NaN and every other value are not): computed, not branched.
    #[inline(always)]
    fn member(self, mask: Self) -> bool {
        in_mask(mask.mask_bits(), self.category(Self::MASK_BITS))
    }
    /// `self` as a category: the integer it is, if it is one of `0..limit` (`limit` a power of
    /// two, at most 256), else `limit`. Computed without a branch or a float-to-integer
    /// conversion, which would not vectorise as well.
    fn category(self, limit: u32) -> u64;
    /// The bits of a membership mask held in a value.
    fn mask_bits(self) -> u64;
}

/// Whether bit `code` of `mask` is set (`code` 64 or more: no).
#[inline(always)]
fn in_mask(mask: u64, code: u64) -> bool {
    (if code < 64 { mask >> code } else { 0 }) & 1 == 1
}

/// The most categories a categorical split's set may reach to walk the fast layout: its values
/// are integers below this. Larger ones keep the exact walk.
const WIDE_BITS: u32 = 256;

/// A set of categories below [`WIDE_BITS`], one bit each, then four zero words: category
/// [`WIDE_BITS`] (no category) reads a zero.
type WideSet = [u64; 8];

/// Whether category `code` (at most [`WIDE_BITS`]) is in `set`.
#[inline(always)]
fn in_wide_set(set: &WideSet, code: u64) -> bool {
    (set[(code >> 6) as usize & 7] >> (code & 63)) & 1 == 1
}

impl Float for f32 {
    const INFINITY: Self = f32::INFINITY;
    const NEG_INFINITY: Self = f32::NEG_INFINITY;
    const MASK_BITS: u32 = 32;
    #[inline]
    fn from_mask(mask: u64) -> Self {
        f32::from_bits(mask as u32)
    }
    #[inline(always)]
    // `&` on purpose: the three tests are computed, never branched on.
    #[allow(clippy::manual_range_contains)]
    fn category(self, limit: u32) -> u64 {
        // Adding 2^23 leaves an integer in [0, limit) in the low bits, and rounds any other
        // value of that range to an integer. NaN fails every comparison.
        const MAGIC: f32 = 8_388_608.0;
        let t = self + MAGIC;
        let small = (self >= 0.0) & (self < limit as f32) & (t - MAGIC == self);
        if small { u64::from(t.to_bits() & (limit - 1)) } else { u64::from(limit) }
    }
    #[inline(always)]
    fn mask_bits(self) -> u64 {
        u64::from(self.to_bits())
    }
    #[inline]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    #[inline]
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
    #[inline]
    fn pred(self) -> Option<Self> {
        if self.is_nan() || self == f32::NEG_INFINITY {
            None
        } else if self == 0.0 {
            Some(-f32::from_bits(1))
        } else if self > 0.0 {
            Some(f32::from_bits(self.to_bits() - 1))
        } else {
            Some(f32::from_bits(self.to_bits() + 1))
        }
    }
}

impl Float for f64 {
    const INFINITY: Self = f64::INFINITY;
    const NEG_INFINITY: Self = f64::NEG_INFINITY;
    const MASK_BITS: u32 = 64;
    #[inline]
    fn from_mask(mask: u64) -> Self {
        f64::from_bits(mask)
    }
    #[inline(always)]
    #[allow(clippy::manual_range_contains)]
    fn category(self, limit: u32) -> u64 {
        // As for f32, with 2^52.
        const MAGIC: f64 = 4_503_599_627_370_496.0;
        let t = self + MAGIC;
        let small = (self >= 0.0) & (self < f64::from(limit)) & (t - MAGIC == self);
        if small { t.to_bits() & u64::from(limit - 1) } else { u64::from(limit) }
    }
    #[inline(always)]
    fn mask_bits(self) -> u64 {
        self.to_bits()
    }
    #[inline]
    fn from_f64(v: f64) -> Self {
        v
    }
    #[inline]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline]
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
    #[inline]
    fn pred(self) -> Option<Self> {
        if self.is_nan() || self == f64::NEG_INFINITY {
            None
        } else if self == 0.0 {
            Some(-f64::from_bits(1))
        } else if self > 0.0 {
            Some(f64::from_bits(self.to_bits() - 1))
        } else {
            Some(f64::from_bits(self.to_bits() + 1))
        }
    }
}

/// In a fast node's `feature`: NaN takes the true branch.
const NAN_BIT: u32 = 1 << 31;
/// In a fast node's `feature`: the false child (at `left`) is a leaf.
const FALSE_LEAF_BIT: u32 = 1 << 30;
/// In a fast node's `feature`: the true child (at `left + 1`) is a leaf.
const TRUE_LEAF_BIT: u32 = 1 << 29;
/// In a fast node's `feature`: a categorical split, true for the members of the set whose
/// mask `threshold`'s bits hold ([`Float::member`]).
const CAT_BIT: u32 = 1 << 28;
/// The feature index bits of a fast node's `feature`.
const FEATURE_MASK: u32 = CAT_BIT - 1;

/// Where a tree starts and how deep its leaves are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tree {
    root: u32,
    /// The number of steps that reach every leaf.
    depth: u32,
    /// The steps every row takes before the walk follows only the rows still on a split
    /// (`depth`: never).
    switch: u32,
}

/// What stepping one listed row costs, against 1 for a step of every row in the block. The list's
/// upkeep and indirection cost about 2, but real rows do not split evenly as [`switch_depth`]
/// assumes, and more stay live: 5 was the fastest on the HGB, GBDT and RF benchmark models
/// (`benches/models.py`; HGB +13% over 2, the others unchanged within noise).
const LISTED_STEP_COST: f64 = 5.0;

/// Picks a tree's `switch`: the step count that minimises the expected cost of a walk, if rows
/// took both branches of every split equally often. `live[d]` is the share of rows still on a
/// split after `d` steps. Stepping every row costs 1 a step; building the list of live rows costs
/// 1; stepping a listed row costs [`LISTED_STEP_COST`].
fn switch_depth(live: &[f64], min_depth: u32) -> u32 {
    let depth = live.len() as u32;
    let mut best = (f64::from(depth), depth);
    for s in min_depth..depth {
        let cost = f64::from(s) + 1.0 + LISTED_STEP_COST * live[s as usize..].iter().sum::<f64>();
        if cost < best.0 {
            best = (cost, s);
        }
    }
    best.1
}

/// A node of the fast layout: go to `left` when not `x <= threshold`, to `left + 1` when it is
/// (or when `x` is NaN and the NaN bit of `feature` is set). The two children of a split sit side
/// by side, so a step is one load of the node, one of the feature, a compare and an add; two more
/// bits of `feature` say which children are leaves. Extra steps stay on a leaf: its threshold is
/// NaN and its `left` itself; or, in single-output ensembles whose leaves' values are their
/// thresholds, it is stored three times, as its parent's child and as a pair pointing to itself.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
struct FastNode<T> {
    threshold: T,
    feature: u32,
    left: u32,
}

/// How an exact-mode node decides (for trees the `<=` form cannot express).
#[derive(Debug, Clone, PartialEq)]
struct Exact<T> {
    mode: Mode,
    feature: u32,
    threshold: T,
    members: Vec<T>,
    missing_true: bool,
    /// `[false branch, true branch]`.
    children: [u32; 2],
}

/// How an ensemble's categorical splits hold their sets (the `CAT` of the walks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cats {
    /// No categorical split.
    None,
    /// Every set's values are below [`Float::MASK_BITS`]: the set is a mask in the node's
    /// `threshold` bits.
    Small,
    /// Some set has values up to [`WIDE_BITS`]: the node's `threshold` bits number its set in
    /// the ensemble's table of [`WideSet`]s.
    Wide,
}

/// The walks' `CAT` parameters.
const NO_CATS: u8 = 0;
const SMALL_CATS: u8 = 1;
const WIDE_CATS: u8 = 2;

/// The node layout an ensemble was compiled to.
#[derive(Debug, Clone, PartialEq)]
enum Layout<T> {
    /// Every split written as `x <= t` (the common case), also compiled for the bit-vector walk
    /// (whole trees of at most 32 or 64 leaves, the top of larger ones).
    Fast { nodes: Vec<FastNode<T>>, any_nan: bool, cats: Cats, sets: Vec<WideSet>, bits: Option<Box<BitTrees<T>>> },
    /// Splits evaluated by their own mode (EQ, NEQ, MEMBER, unrepresentable thresholds).
    Exact(Vec<Exact<T>>),
}

/// A compiled ensemble.
#[derive(Debug, Clone, PartialEq)]
pub struct Ensemble<T> {
    layout: Layout<T>,
    /// Per tree: its root, its depth and how its rows are walked.
    trees: Vec<Tree>,
    /// Per node: the leaf it is, or `u32::MAX` for a split.
    leaf_of: Vec<u32>,
    /// `leaf_of` in 16 bits (`u16::MAX` for a split), when every leaf's number fits: what the
    /// sums of a caller's table read, a load per row and tree. Empty when a number does not fit.
    leaf_of16: Vec<u16>,
    /// Single-output ensembles whose every leaf has a weight: the leaf's value is in its node.
    value_in_node: bool,
    /// Per leaf: the sum of its weights for output 0, and whether it has any (single-output ensembles).
    single: Option<Vec<(T, bool)>>,
    /// Multi-output ensembles whose every leaf has exactly one weight per output (forest
    /// classifiers): the weights, `outputs` a leaf, by output.
    dense: Option<Vec<T>>,
    /// Per leaf: its entries' range in `weights`.
    ranges: Vec<(u32, u32)>,
    weights: Vec<(u32, T)>,
    /// Number of outputs (classes or targets).
    pub outputs: usize,
    /// The highest feature index read, plus one.
    pub features: usize,
}

/// A split in the `x <= t` form: threshold, `[child when false, child when true]`, and whether
/// NaN takes the true child.
fn leq_form<T: Float>(n: &RawNode) -> (T, [Target; 2], bool) {
    let thr = T::from_f64(n.threshold);
    match n.mode {
        // The set (its mask, or its number in the table) is filled in by `compile`.
        Mode::Member => (T::default(), [n.no, n.yes], n.missing_true),
        Mode::Lt => (thr.pred().unwrap_or(thr), [n.no, n.yes], n.missing_true),
        Mode::Gt => (thr, [n.yes, n.no], !n.missing_true),
        Mode::Gte => (thr.pred().unwrap_or(thr), [n.yes, n.no], !n.missing_true),
        _ => (thr, [n.no, n.yes], n.missing_true),
    }
}

/// A set of integers below [`WIDE_BITS`] as bits (see [`small_members`]).
fn wide_set(members: &[f64]) -> WideSet {
    let mut set = [0u64; 8];
    for m in members {
        let c = *m as usize;
        if let Some(w) = set.get_mut(c / 64).filter(|_| c < WIDE_BITS as usize) {
            *w |= 1 << (c % 64);
        }
    }
    set
}

/// Whether a categorical split's set fits a mask of `bits` bits: integers `0..bits`.
fn small_members(members: &[f64], bits: u32) -> bool {
    members.iter().all(|m| m.fract() == 0.0 && *m >= 0.0 && *m < f64::from(bits))
}

/// The rows an ensemble scores.
#[derive(Debug, Clone, Copy)]
pub enum Rows<'a, T> {
    /// Row-major, `width` values a row.
    Major {
        /// The values.
        x: &'a [T],
        /// Values a row.
        width: usize,
    },
    /// One float64 slice a feature, each at least as long as the rows scored, read as `T`. The
    /// bit-vectors read a block's values from the columns themselves; trees the node walk
    /// finishes read the block copied row-major. Scoring columns this way saves copying the
    /// whole batch to rows first (scikit-learn's GradientBoosting 100 trees, 65,536-row batches
    /// of 28 features, one thread: 6.7-6.9M -> 7.3-7.7M rows/s; RandomForest and
    /// HistGradientBoosting gain too, their node walk reading 128-row blocks copied).
    Columns(&'a [&'a [f64]]),
}

impl<T> Rows<'_, T> {
    /// Values a row.
    fn width(&self) -> usize {
        match self {
            Rows::Major { width, .. } => *width,
            Rows::Columns(cols) => cols.len(),
        }
    }

    /// Checks that the input holds `rows` rows of at least `features` values.
    fn check(&self, rows: usize, features: usize) -> Result<()> {
        let width = self.width();
        ensure!(
            width >= features,
            "the model reads feature {} but the input has {width} columns",
            features.saturating_sub(1)
        );
        match self {
            Rows::Major { x, width } => {
                ensure!(x.len() >= rows * width, "{} values for {rows} rows of {width}", x.len())
            }
            Rows::Columns(cols) => {
                if let Some((j, c)) = cols.iter().enumerate().find(|(_, c)| c.len() < rows) {
                    bail!("column {j} holds {} values for {rows} rows", c.len());
                }
            }
        }
        Ok(())
    }
}

/// Rows walked together through each tree.
const BLOCK: usize = 128;

/// The width a block's rows are padded to when the ensemble reads at most this many features
/// and they come as more than half as many columns: the walk then reads a row as a fixed-size
/// array, a feature's index masked into it, with no bounds check a step (RandomForest 100
/// trees of depth 8, 28 features, 65,536-row batches, one thread: +1-4% rows/s). Narrower rows
/// keep their width: padded, a block would be several times larger.
const PADDED: usize = 32;

/// Masks a tree holds in the bit-vector walk's buffer: a block's, and one cache line more, so
/// that the trees' masks spread over the L1 cache's sets (512 bytes apart, every eighth tree's
/// fell into the same sets): XGBoost 100 trees depth 6, 2.13-2.16M -> 2.26-2.30M rows/s at
/// 65,536-row batches, one thread.
const MASK_STRIDE: usize = BLOCK + 16;
/// Fewer rows than this are walked node by node from every root, without the bit-vectors
/// (measured per call, 1 thread, bit-vectors -> walk: 1 row: RF-100 depth 8 49 -> 32 us,
/// XGBoost-500 105 -> 50 us, LightGBM-500 173 -> 71 us, a 6-feature GradientBoosting 10.5 ->
/// 7.6 us; 8 rows: all faster by 1.3-2.2x; 32 rows: the GradientBoosting model slower (14 vs
/// 18 us), the others 1.1-1.25x faster; 64 rows: at best equal).
const BITS_MIN_ROWS: usize = 16;
const _: () = assert!(BLOCK.is_multiple_of(bits::LANES));

/// A hard limit on compiled nodes, against graphs whose trees share subtrees exponentially.
const MAX_NODES: usize = 1 << 28;

/// How many nodes and leaves the ensemble's trees hold once unfolded from their roots (a node
/// reached from two parents counts twice), saturating; an error when a node is its own
/// descendant. Iterative, so that deep trees cannot overflow the stack.
fn expanded_size(raw: &RawEnsemble) -> Result<u64> {
    const UNSEEN: u64 = u64::MAX;
    const OPEN: u64 = u64::MAX - 1;
    let mut size = vec![UNSEEN; raw.nodes.len()];
    let of = |t: Target, size: &[u64]| match t {
        Target::Leaf(_) => Some(1),
        Target::Node(i) => Some(size[i]).filter(|s| *s < OPEN),
    };
    let mut total = 0u64;
    for root in &raw.roots {
        match *root {
            Target::Node(r) => ensure!(r < raw.nodes.len(), "root node index {r} out of range"),
            Target::Leaf(l) => ensure!(l < raw.leaves.len(), "root leaf index {l} out of range"),
        }
        if let Target::Node(r) = *root
            && size[r] == UNSEEN
        {
            // Depth first; OPEN marks the nodes on the current path, so only a path that comes
            // back to one of its own nodes is a cycle (a subtree shared by two parents is not).
            let mut stack: Vec<(usize, u8)> = vec![(r, 0)];
            size[r] = OPEN;
            while let Some(top) = stack.last_mut() {
                let (i, next) = *top;
                let node = &raw.nodes[i];
                if next < 2 {
                    top.1 += 1;
                    if let Target::Node(c) = if next == 0 { node.yes } else { node.no } {
                        match size[c] {
                            OPEN => bail!("node {c} is its own descendant: the trees have a cycle"),
                            UNSEEN => {
                                size[c] = OPEN;
                                stack.push((c, 0));
                            }
                            _ => {}
                        }
                    }
                } else {
                    stack.pop();
                    let (yes, no) = (of(node.yes, &size).unwrap_or(0), of(node.no, &size).unwrap_or(0));
                    size[i] = 1u64.saturating_add(yes).saturating_add(no).min(OPEN - 1);
                }
            }
        }
        total = total.saturating_add(of(*root, &size).unwrap_or(0));
    }
    Ok(total)
}

impl<T: Float> Ensemble<T> {
    /// Compiles an ensemble with `outputs` outputs.
    pub fn compile(raw: &RawEnsemble, outputs: usize) -> Result<Self> {
        ensure!(!raw.roots.is_empty(), "the ensemble has no trees");
        for (i, leaf) in raw.leaves.iter().enumerate() {
            if let Some((o, _)) = leaf.iter().find(|(o, _)| *o >= outputs) {
                bail!("leaf {i} has a weight for output {o}, but there are {outputs} outputs");
            }
        }
        for n in &raw.nodes {
            for t in [n.yes, n.no] {
                match t {
                    Target::Node(i) => ensure!(i < raw.nodes.len(), "node index {i} out of range"),
                    Target::Leaf(l) => ensure!(l < raw.leaves.len(), "leaf index {l} out of range"),
                }
            }
        }
        // Trees are unfolded from their roots: a node reached from several parents is copied for
        // each, so a damaged file whose children point back up (or share subtrees) would unfold
        // into a cycle or an exponential number of nodes. Counted before anything is allocated.
        let expanded = expanded_size(raw)?;
        let budget = (64 * (raw.nodes.len() + raw.leaves.len()) as u64 + 1024).min(MAX_NODES as u64);
        ensure!(
            expanded <= budget,
            "the trees unfold into {expanded} nodes from {} described (nodes reached from several parents); \
             the trees are too large or the model is damaged",
            raw.nodes.len()
        );
        let fast = raw.nodes.iter().all(|n| match n.mode {
            Mode::Leq | Mode::Gt => true,
            Mode::Lt | Mode::Gte => T::from_f64(n.threshold).pred().is_some(),
            Mode::Member => small_members(&n.members, WIDE_BITS),
            Mode::Eq | Mode::Neq => false,
        });
        let mut members = raw.nodes.iter().filter(|n| n.mode == Mode::Member).peekable();
        let cats = if members.peek().is_none() {
            Cats::None
        } else if members.all(|n| small_members(&n.members, T::MASK_BITS)) {
            Cats::Small
        } else {
            Cats::Wide
        };
        let mut sets: Vec<WideSet> = Vec::new();
        let features = raw.nodes.iter().map(|n| n.feature + 1).max().unwrap_or(0);
        ensure!(features <= FEATURE_MASK as usize, "feature index too large");
        let single: Option<Vec<(T, bool)>> = (outputs == 1).then(|| {
            raw.leaves
                .iter()
                .map(|w| (w.iter().fold(T::default(), |acc, (_, v)| acc + T::from_f64(*v)), !w.is_empty()))
                .collect()
        });
        let value_in_node = fast && single.as_ref().is_some_and(|s| s.iter().all(|(_, h)| *h));
        let leaf_value =
            |l: usize| if value_in_node { single.as_ref().map_or(T::INFINITY, |s| s[l].0) } else { T::INFINITY };
        let mut trees = Vec::with_capacity(raw.roots.len());
        let mut leaf_of = Vec::new();
        let layout = if fast {
            let mut nodes: Vec<FastNode<T>> = Vec::with_capacity(3 * (raw.nodes.len() + raw.leaves.len()));
            let mut any_nan = false;
            for root in &raw.roots {
                // Breadth-first, allocating each split's two children side by side.
                let root_slot = nodes.len() as u32;
                nodes.push(FastNode { threshold: T::INFINITY, feature: 0, left: 0 });
                leaf_of.push(u32::MAX);
                let mut queue = VecDeque::from([(root_slot, *root, 0u32)]);
                let (mut depth, mut min_depth) = (0, u32::MAX);
                // Share of rows on a split at each depth, if both branches were equally likely.
                let mut live: Vec<f64> = Vec::new();
                while let Some((slot, target, d)) = queue.pop_front() {
                    depth = depth.max(d);
                    let pair = nodes.len() as u32;
                    ensure!(nodes.len() + 2 < MAX_NODES, "the trees are too large");
                    match target {
                        // A leaf whose value is kept elsewhere is one node: its NaN threshold fails
                        // every `x <=` test (NaN included, its feature having no NaN bit), so each
                        // step returns to `left`, itself. Half the nodes of a forest (RandomForest
                        // 100 trees of depth 8: 76,416 -> 38,158, 917 -> 458 KB in float32), the
                        // rest of its walk unchanged.
                        Target::Leaf(l) if !value_in_node => {
                            min_depth = min_depth.min(d);
                            nodes[slot as usize] =
                                FastNode { threshold: T::from_f64(f64::NAN), feature: 0, left: slot };
                            leaf_of[slot as usize] = l as u32;
                        }
                        // One whose value is its threshold: a pair of copies to step into.
                        Target::Leaf(l) => {
                            min_depth = min_depth.min(d);
                            let node = FastNode { threshold: leaf_value(l), feature: 0, left: pair };
                            nodes[slot as usize] = node;
                            nodes.extend([node, node]);
                            leaf_of[slot as usize] = l as u32;
                            leaf_of.extend([l as u32, l as u32]);
                        }
                        Target::Node(i) => {
                            if live.len() <= d as usize {
                                live.resize(d as usize + 1, 0.0);
                            }
                            live[d as usize] += 0.5f64.powi(d as i32);
                            let n = &raw.nodes[i];
                            let (mut threshold, children, nan) = leq_form::<T>(n);
                            if n.mode == Mode::Member {
                                let set = wide_set(&n.members);
                                threshold = match cats {
                                    Cats::Wide => {
                                        sets.push(set);
                                        T::from_mask(sets.len() as u64 - 1)
                                    }
                                    _ => T::from_mask(set[0]),
                                };
                            }
                            any_nan |= nan;
                            let is_leaf = |t: Target| matches!(t, Target::Leaf(_));
                            let feature = n.feature as u32
                                | if nan { NAN_BIT } else { 0 }
                                | if n.mode == Mode::Member { CAT_BIT } else { 0 }
                                | if is_leaf(children[0]) { FALSE_LEAF_BIT } else { 0 }
                                | if is_leaf(children[1]) { TRUE_LEAF_BIT } else { 0 };
                            nodes[slot as usize] = FastNode { threshold, feature, left: pair };
                            nodes.extend([FastNode { threshold: T::INFINITY, feature: 0, left: 0 }; 2]);
                            leaf_of.extend([u32::MAX, u32::MAX]);
                            queue.push_back((pair, children[0], d + 1));
                            queue.push_back((pair + 1, children[1], d + 1));
                        }
                    }
                }
                let switch = switch_depth(&live, min_depth);
                trees.push(Tree { root: root_slot, depth, switch });
            }
            let bits =
                BitTrees::build(&nodes, &leaf_of, &trees, features, CatTable { cats, sets: &sets }).map(Box::new);
            Layout::Fast { nodes, any_nan, cats, sets, bits }
        } else {
            let mut nodes: Vec<Exact<T>> = Vec::new();
            for root in &raw.roots {
                let root_slot = nodes.len() as u32;
                let blank = Exact {
                    mode: Mode::Leq,
                    feature: 0,
                    threshold: T::INFINITY,
                    members: vec![],
                    missing_true: false,
                    children: [0, 0],
                };
                nodes.push(blank.clone());
                leaf_of.push(u32::MAX);
                let mut queue = VecDeque::from([(root_slot, *root, 0u32)]);
                let mut depth = 0;
                while let Some((slot, target, d)) = queue.pop_front() {
                    depth = depth.max(d);
                    ensure!(nodes.len() + 2 < MAX_NODES, "the trees are too large");
                    match target {
                        Target::Leaf(l) => {
                            nodes[slot as usize].children = [slot, slot];
                            leaf_of[slot as usize] = l as u32;
                        }
                        Target::Node(i) => {
                            let n = &raw.nodes[i];
                            let (no, yes) = (nodes.len() as u32, nodes.len() as u32 + 1);
                            nodes[slot as usize] = Exact {
                                mode: n.mode,
                                feature: n.feature as u32,
                                threshold: T::from_f64(n.threshold),
                                members: n.members.iter().map(|m| T::from_f64(*m)).collect(),
                                missing_true: n.missing_true,
                                children: [no, yes],
                            };
                            nodes.extend([blank.clone(), blank.clone()]);
                            leaf_of.extend([u32::MAX, u32::MAX]);
                            queue.push_back((no, n.no, d + 1));
                            queue.push_back((yes, n.yes, d + 1));
                        }
                    }
                }
                trees.push(Tree { root: root_slot, depth, switch: depth });
            }
            Layout::Exact(nodes)
        };
        let mut ranges = Vec::with_capacity(raw.leaves.len());
        let mut weights = Vec::new();
        for leaf in &raw.leaves {
            let start = weights.len() as u32;
            weights.extend(leaf.iter().map(|(o, v)| (*o as u32, T::from_f64(*v))));
            ranges.push((start, weights.len() as u32));
        }
        let dense =
            (outputs > 1).then(|| raw.leaf_table(outputs)).flatten().map(|t| t.into_iter().map(T::from_f64).collect());
        let leaf_of16 = if raw.leaves.len() < usize::from(u16::MAX) {
            leaf_of.iter().map(|&l| u16::try_from(l).unwrap_or(u16::MAX)).collect()
        } else {
            Vec::new()
        };
        Ok(Self { layout, trees, leaf_of, leaf_of16, value_in_node, single, dense, ranges, weights, outputs, features })
    }

    /// Number of trees.
    pub fn n_trees(&self) -> usize {
        self.trees.len()
    }

    /// The bit-vector trees, when their masks take every tree to its leaves (no node walk) and
    /// `rows` are enough for the masks to pay.
    fn masks_only(&self, rows: usize) -> Option<&BitTrees<T>> {
        match &self.layout {
            Layout::Fast { bits: Some(bits), .. }
                if rows >= BITS_MIN_ROWS && bits.whole_trees() == self.trees.len() =>
            {
                Some(bits)
            }
            _ => None,
        }
    }

    /// For [`Ensemble::masks_only`]'s trees: computes the masks of each block of `input`'s rows
    /// and calls `visit(first row of the block, rows in it, masks)`.
    fn walk_masks(
        &self,
        bits: &BitTrees<T>,
        input: Rows<'_, T>,
        rows: usize,
        mut visit: impl FnMut(usize, usize, &MaskBuf),
    ) {
        let mut masks = bits.buffer(MASK_STRIDE);
        for start in (0..rows).step_by(BLOCK) {
            let n = BLOCK.min(rows - start);
            match input {
                Rows::Major { x, width } => {
                    let x = &x[start * width..(start + n) * width];
                    bits.masks(RowBlock { x, width }, n, &mut masks, MASK_STRIDE);
                }
                Rows::Columns(cols) => bits.masks(ColumnBlock { cols, start }, n, &mut masks, MASK_STRIDE),
            }
            visit(start, n, &masks);
        }
    }

    /// Walks every tree for `input`'s first `rows` rows: for each block of rows and each tree
    /// in order, calls `visit(first row of the block, leaf of each row)`.
    fn walk(&self, input: Rows<'_, T>, rows: usize, mut visit: impl FnMut(usize, Reached<'_, T>)) {
        let mut idx = [0u32; BLOCK];
        let mut three = [[0u32; BLOCK]; 3];
        let mut active = [0u8; 2 * BLOCK];
        // The bit-vectors cost a pass over every split of the ensemble's top levels per block, a
        // node walk a few steps per row and tree: for a handful of rows the walk is cheaper.
        let bits = match &self.layout {
            Layout::Fast { bits: Some(bits), .. } if rows >= BITS_MIN_ROWS => Some(bits),
            _ => None,
        };
        let mut masks = match bits {
            Some(bits) => bits.buffer(MASK_STRIDE),
            None => MaskBuf::W32(Vec::new()),
        };
        // Trees some step of whose walk goes node by node (the others end in the masks).
        let walked = match bits {
            Some(bits) => self.trees.len() - bits.whole_trees(),
            None => self.trees.len(),
        };
        let padded = match input {
            Rows::Columns(cols) => cols.len() > PADDED / 2 && cols.len() <= PADDED && self.features <= PADDED,
            Rows::Major { .. } => false,
        };
        // Values a row of the walk's block: padded, or the input's width.
        let width = if padded { PADDED } else { input.width() };
        // Columns' blocks copied row-major, for the node walk.
        let mut copied: Vec<T> = Vec::new();
        for start in (0..rows).step_by(BLOCK) {
            let n = BLOCK.min(rows - start);
            let xb: &[T] = match input {
                Rows::Major { x, width } => &x[start * width..(start + n) * width],
                Rows::Columns(cols) if walked > 0 => {
                    crate::columns::to_padded_rows(cols, start, n, width, &mut copied);
                    &copied
                }
                Rows::Columns(_) => &[],
            };
            let idx = &mut idx[..n];
            match &self.layout {
                Layout::Fast { nodes, any_nan, cats, sets, .. } => {
                    if let Some(bits) = bits {
                        match input {
                            Rows::Major { .. } => bits.masks(RowBlock { x: xb, width }, n, &mut masks, MASK_STRIDE),
                            Rows::Columns(cols) => bits.masks(ColumnBlock { cols, start }, n, &mut masks, MASK_STRIDE),
                        }
                    }
                    // NaN handling costs a few operations a step: only blocks that hold a NaN pay them.
                    // Folded without a branch, so that it vectorises: `any` compared and branched
                    // on each value, 5% of a random forest's walk (1.88M -> 1.93M rows per CPU
                    // second, 100 trees of depth 8, 65,536-row batches, one thread).
                    let nan = *any_nan && walked > 0 && xb.iter().fold(false, |a, v| a | v.is_nan());
                    let w = Walk { nodes, sets, leaf_of: &self.leaf_of, xb, width };
                    let mut t = 0;
                    while t < self.trees.len() {
                        // Three trees side by side where their walks are alike.
                        if let Some(bits) = bits
                            && let Some((from, depth)) = self.three_alike(bits, t)
                        {
                            let [a, b, c] = &mut three;
                            let ix = [&mut a[..n], &mut b[..n], &mut c[..n]];
                            let tree = |k: usize| (t + k) as u32;
                            match &masks {
                                MaskBuf::W32(m) => {
                                    let starts = [0, 1, 2].map(|k| bits.frontier_of(tree(k), m, MASK_STRIDE));
                                    walk_with!(nan, *cats, padded, w.three(ix, starts, from, depth));
                                }
                                MaskBuf::W64(m) => {
                                    let starts = [0, 1, 2].map(|k| bits.frontier_of(tree(k), m, MASK_STRIDE));
                                    walk_with!(nan, *cats, padded, w.three(ix, starts, from, depth));
                                }
                            }
                            let [a, b, c] = &three;
                            visit(start, Reached::Three([&a[..n], &b[..n], &c[..n]]));
                            t += 3;
                            continue;
                        }
                        let (tree, row) = (&self.trees[t], t as u32);
                        t += 1;
                        let mut from = 0;
                        if let Some(bits) = bits {
                            match bits.resume_at(row) {
                                None => {
                                    visit(start, bits.reached(row, &masks, MASK_STRIDE, n));
                                    continue;
                                }
                                Some(depth) => {
                                    bits.frontier(row, &masks, MASK_STRIDE, idx);
                                    from = depth;
                                }
                            }
                        }
                        walk_with!(nan, *cats, padded, w.tree(tree, idx, &mut active, from));
                        visit(start, Reached::Slots(idx));
                    }
                }
                Layout::Exact(nodes) => {
                    for tree in &self.trees {
                        idx.fill(tree.root);
                        for _ in 0..tree.depth {
                            for (i, row) in idx.iter_mut().zip(xb.chunks_exact(width)) {
                                let node = &nodes[*i as usize];
                                *i = node.children[usize::from(exact_decision(node, row[node.feature as usize]))];
                            }
                        }
                        visit(start, Reached::Slots(idx));
                    }
                }
            }
        }
    }

    /// Whether trees `t`, `t + 1` and `t + 2` are walked alike, every row to the bottom from the
    /// masks' frontier at the same depth: then the depth they go on from, and the deepest's.
    fn three_alike(&self, bits: &BitTrees<T>, t: usize) -> Option<(u32, u32)> {
        let trees = self.trees.get(t..t + 3)?;
        let from = bits.resume_at(t as u32)?;
        let alike = trees
            .iter()
            .enumerate()
            .all(|(k, tree)| bits.resume_at((t + k) as u32) == Some(from) && tree.switch >= tree.depth);
        alike.then(|| (from, trees.iter().map(|tree| tree.depth).max().unwrap_or(from)))
    }

    /// Sums leaf values kept by the caller, in a float type of its own (`A`), over the leaves
    /// each row reaches: per row, `init` (one value per output) plus, tree by tree in order,
    /// `table[leaf * k..(leaf + 1) * k]`, where `k = init.len()` and `leaf` indexes the leaves
    /// of the [`RawEnsemble`] this ensemble was compiled from. Thresholds are compared in `T`,
    /// sums are taken in `A`: scikit-learn's trees compare float32 inputs and add float64
    /// leaf values.
    ///
    /// ```
    /// use mlscore_kernels::tree::{Ensemble, Mode, RawEnsemble, RawNode, Rows, Target};
    /// // x0 <= 0.5 reaches leaf 0, else leaf 1.
    /// let raw = RawEnsemble {
    ///     nodes: vec![RawNode {
    ///         feature: 0,
    ///         threshold: 0.5,
    ///         mode: Mode::Leq,
    ///         members: Vec::new(),
    ///         yes: Target::Leaf(0),
    ///         no: Target::Leaf(1),
    ///         missing_true: false,
    ///     }],
    ///     leaves: vec![vec![(0, 1.0)], vec![(0, 2.0)]],
    ///     roots: vec![Target::Node(0)],
    /// };
    /// let trees = Ensemble::<f32>::compile(&raw, 1)?;
    /// let table = [0.1f64, 0.2];
    /// let rows = Rows::Major { x: &[0.25f32, 0.75], width: 1 };
    /// assert_eq!(trees.sum_leaf_table(rows, 2, &table, &[10.0])?, vec![10.1, 10.2]);
    /// // The same rows as a float64 column, read as float32.
    /// let column = [0.25f64, 0.75];
    /// assert_eq!(trees.sum_leaf_table(Rows::Columns(&[&column]), 2, &table, &[10.0])?, vec![10.1, 10.2]);
    /// # Ok::<(), mlscore_kernels::Error>(())
    /// ```
    pub fn sum_leaf_table<A: Copy + Default + std::ops::AddAssign>(
        &self,
        input: Rows<'_, T>,
        rows: usize,
        table: &[A],
        init: &[A],
    ) -> Result<Vec<A>> {
        let k = init.len();
        ensure!(k > 0, "no initial values: one per output is needed");
        input.check(rows, self.features)?;
        ensure!(
            table.len() == self.ranges.len() * k,
            "a table of {} values for {} leaves and {k} outputs",
            table.len(),
            self.ranges.len()
        );
        let mut acc = init.repeat(rows);
        self.add_leaf_rows(input, rows, table, k, &mut acc);
        Ok(acc)
    }

    /// Adds each reached leaf's row of `table` (`k` values a leaf) to the rows of `acc`.
    fn add_leaf_rows<A: Copy + Default + std::ops::AddAssign>(
        &self,
        input: Rows<'_, T>,
        rows: usize,
        table: &[A],
        k: usize,
        acc: &mut [A],
    ) {
        // One output: the masks' leaves' values, looked up in the table once a call, not three
        // loads a row and tree; where the masks reach every tree's leaves, eight rows' sums are
        // kept in registers across the trees (GradientBoosting 100 trees, 65,536-row batches:
        // 6.3M -> 6.7-6.9M rows/s).
        if k == 1
            && let Some(bits) = self.masks_only(rows)
        {
            let values = bits.tabled(&self.leaf_of, table);
            self.walk_masks(bits, input, rows, |start, n, masks| {
                bits::add_all(masks, MASK_STRIDE, n, &values, &mut acc[start..]);
            });
            return;
        }
        let tabled = match &self.layout {
            Layout::Fast { bits: Some(bits), .. } if k == 1 && rows >= BITS_MIN_ROWS => {
                bits.tabled(&self.leaf_of, table)
            }
            _ => Vec::new(),
        };
        // The leaf map in 16 bits where it fits: half the bytes to bring into cache from a
        // block's walk to the next (random forest, 100 trees of depth 8, 38,158 nodes, 65,536-row
        // batches, one thread: +2% rows per CPU second).
        self.walk(input, rows, |start, reached| {
            let acc = &mut acc[start * k..];
            if self.leaf_of16.is_empty() {
                add_reached(reached, &self.leaf_of, table, &tabled, k, acc);
            } else {
                add_reached(reached, &self.leaf_of16, table, &tabled, k, acc);
            }
        });
    }

    /// Aggregates every tree's leaves for each row: the per-output sums (or min / max) and whether
    /// any leaf reached gave the output a weight.
    pub fn aggregate(&self, x: &[T], width: usize, rows: usize, agg: Aggregate) -> Result<(Vec<T>, Vec<bool>)> {
        self.aggregate_from(x, width, rows, agg, &[])
    }

    /// [`Ensemble::aggregate`], with each row's sums starting from `init` (one value per output,
    /// or empty for zeros) rather than added to it afterwards: libraries that accumulate in
    /// float32 from their base margin (XGBoost) round exactly this way.
    pub fn aggregate_from(
        &self,
        x: &[T],
        width: usize,
        rows: usize,
        agg: Aggregate,
        init: &[T],
    ) -> Result<(Vec<T>, Vec<bool>)> {
        self.aggregate_input(Rows::Major { x, width }, rows, agg, init)
    }

    /// [`Ensemble::aggregate_from`] over rows given either way.
    pub fn aggregate_input(
        &self,
        input: Rows<'_, T>,
        rows: usize,
        agg: Aggregate,
        init: &[T],
    ) -> Result<(Vec<T>, Vec<bool>)> {
        input.check(rows, self.features)?;
        let k = self.outputs;
        ensure!(init.is_empty() || init.len() == k, "{} initial values for {k} outputs", init.len());
        ensure!(
            init.is_empty() || matches!(agg, Aggregate::Sum | Aggregate::Average),
            "initial values are for sums, not {agg:?}"
        );
        let mut acc = if init.is_empty() { vec![T::default(); rows * k] } else { init.repeat(rows) };
        let mut has = vec![false; rows * k];
        let combine = |a: &mut T, h: &mut bool, v: T| {
            match agg {
                Aggregate::Sum | Aggregate::Average => *a += v,
                Aggregate::Min => {
                    if !*h || v < *a {
                        *a = v;
                    }
                }
                Aggregate::Max => {
                    if !*h || v > *a {
                        *a = v;
                    }
                }
            }
            *h = true;
        };
        match (&self.layout, &self.single, agg) {
            // The common case: one output, summed, values in the leaves' nodes.
            (Layout::Fast { .. }, _, Aggregate::Sum | Aggregate::Average)
                if self.value_in_node
                    && let Some(bits) = self.masks_only(rows) =>
            {
                self.walk_masks(bits, input, rows, |start, n, masks| {
                    bits::add_all(masks, MASK_STRIDE, n, bits.values(), &mut acc[start..]);
                });
                has.fill(true);
            }
            (Layout::Fast { nodes, .. }, _, Aggregate::Sum | Aggregate::Average) if self.value_in_node => {
                self.walk(input, rows, |start, reached| match reached {
                    Reached::Slots(idx) => {
                        for (a, i) in acc[start..].iter_mut().zip(idx) {
                            *a += nodes[*i as usize].threshold;
                        }
                    }
                    // Three trees' values added to each row's sum in one pass, in tree order
                    // (one load and store of the sum a row, not three).
                    Reached::Three([x, y, z]) => {
                        for (a, ((i, j), k)) in acc[start..].iter_mut().zip(x.iter().zip(y).zip(z)) {
                            let mut sum = *a;
                            sum += nodes[*i as usize].threshold;
                            sum += nodes[*j as usize].threshold;
                            sum += nodes[*k as usize].threshold;
                            *a = sum;
                        }
                    }
                    Reached::Masks { masks, values, .. } => masks.add_values(&mut acc[start..], values),
                });
                has.fill(true);
            }
            (_, Some(single), Aggregate::Sum | Aggregate::Average) => self.walk(input, rows, |start, reached| {
                reached.for_each_slot(|r, i| {
                    let (v, h) = single[self.leaf_of[i as usize] as usize];
                    acc[start + r] += v;
                    has[start + r] |= h;
                });
            }),
            // Every leaf weighs every output once: add its row of the table (the same sums, in
            // the same order, as adding its entries one by one).
            (_, _, Aggregate::Sum | Aggregate::Average) if self.dense.is_some() => {
                let dense = self.dense.as_deref().unwrap_or_default();
                self.add_leaf_rows(input, rows, dense, k, &mut acc);
                has.fill(true);
            }
            _ => self.walk(input, rows, |start, reached| {
                reached.for_each_slot(|r, i| {
                    let (s, e) = self.ranges[self.leaf_of[i as usize] as usize];
                    for &(o, v) in &self.weights[s as usize..e as usize] {
                        let j = (start + r) * k + o as usize;
                        combine(&mut acc[j], &mut has[j], v);
                    }
                });
            }),
        }
        Ok((acc, has))
    }
}

/// Which child of a fast node `v` goes to: 0 (`left`) or 1 (`left + 1`). `CAT`: how the
/// ensemble's categorical splits hold their sets ([`Cats`]; `sets`: the table of wide ones);
/// a node's [`CAT_BIT`] picks its test without a branch.
#[inline(always)]
fn fast_step<T: Float, const NAN: bool, const CAT: u8>(node: &FastNode<T>, v: T, sets: &[WideSet]) -> u32 {
    let mut yes = u32::from(v <= node.threshold);
    if CAT != NO_CATS {
        let cat = (node.feature / CAT_BIT) & 1;
        let member = if CAT == SMALL_CATS {
            v.member(node.threshold)
        } else {
            // A numeric node's threshold numbers no set: it reads an empty one, unused.
            let set = sets.get(node.threshold.mask_bits() as usize).unwrap_or(&[0; 8]);
            in_wide_set(set, v.category(WIDE_BITS))
        };
        yes = (u32::from(member) & cat) | (yes & (cat ^ 1));
    }
    if NAN { yes | (u32::from(v.is_nan()) & (node.feature >> 31)) } else { yes }
}

/// An entry of a leaf map: a leaf's number (the type's largest value marks a split).
trait LeafNo: Copy {
    fn index(self) -> usize;
}

impl LeafNo for u16 {
    #[inline(always)]
    fn index(self) -> usize {
        usize::from(self)
    }
}

impl LeafNo for u32 {
    #[inline(always)]
    fn index(self) -> usize {
        self as usize
    }
}

/// Adds the row of `table` (`k` values a leaf) of each leaf `reached` (a block's rows in one
/// tree, numbered by `leaf_of`) to the block's rows of `acc`; `tabled`: for one output, each
/// tree's mask leaves' values (see [`BitTrees::tabled`]).
#[inline(always)]
fn add_reached<A: Copy + std::ops::AddAssign, L: LeafNo>(
    reached: Reached<'_, impl Float>,
    leaf_of: &[L],
    table: &[A],
    tabled: &[[A; bits::MAX_LEAVES]],
    k: usize,
    acc: &mut [A],
) {
    if k == 1 {
        match reached {
            Reached::Masks { masks, tree, .. } if (tree as usize) < tabled.len() => {
                masks.add_values(acc, &tabled[tree as usize]);
            }
            _ => reached.for_each_slot(|r, i| acc[r] += table[leaf_of[i as usize].index()]),
        }
    } else if k == 2 {
        // Binary classifiers' two probabilities: a fixed-size pair the compiler adds at once.
        // The rows' pairs are walked as chunks, not indexed: indexed, the compiler reloaded the
        // sums' address from the stack every row (the same forest: +1.5%).
        let add = |a: &mut [A], l: usize| {
            if let (Some([a0, a1]), Some([v0, v1])) = (a.get_mut(..2), table.get(2 * l..2 * l + 2)) {
                *a0 += *v0;
                *a1 += *v1;
            }
        };
        match reached {
            Reached::Slots(idx) => {
                for (a, &i) in acc.chunks_exact_mut(2).zip(idx) {
                    add(a, leaf_of[i as usize].index());
                }
            }
            Reached::Three([x, y, z]) => {
                for (a, ((&i, &j), &k)) in acc.chunks_exact_mut(2).zip(x.iter().zip(y).zip(z)) {
                    for slot in [i, j, k] {
                        add(a, leaf_of[slot as usize].index());
                    }
                }
            }
            _ => reached.for_each_slot(|r, i| {
                if let Some(a) = acc.get_mut(2 * r..) {
                    add(a, leaf_of[i as usize].index());
                }
            }),
        }
    } else {
        reached.for_each_slot(|r, i| {
            let l = leaf_of[i as usize].index();
            for (a, v) in acc[r * k..(r + 1) * k].iter_mut().zip(&table[l * k..(l + 1) * k]) {
                *a += *v;
            }
        });
    }
}

/// Calls `$walk.$method::<NAN, CAT, P>(...)` with the `NAN` of a block (`$nan`), the `CAT` of an
/// ensemble's categorical splits (`$cats`) and the `P` of its rows ([`PADDED`] where `$padded`,
/// else 0: see [`feature_of`]).
macro_rules! walk_with {
    ($nan:expr, $cats:expr, $padded:expr, $walk:ident . $method:ident ( $($arg:expr),* )) => {
        if $padded {
            walk_with!(@cats PADDED, $nan, $cats, $walk.$method($($arg),*))
        } else {
            walk_with!(@cats 0, $nan, $cats, $walk.$method($($arg),*))
        }
    };
    (@cats $p:expr, $nan:expr, $cats:expr, $walk:ident . $method:ident ( $($arg:expr),* )) => {
        match ($nan, $cats) {
            (true, Cats::None) => $walk.$method::<true, NO_CATS, $p>($($arg),*),
            (true, Cats::Small) => $walk.$method::<true, SMALL_CATS, $p>($($arg),*),
            (true, Cats::Wide) => $walk.$method::<true, WIDE_CATS, $p>($($arg),*),
            (false, Cats::None) => $walk.$method::<false, NO_CATS, $p>($($arg),*),
            (false, Cats::Small) => $walk.$method::<false, SMALL_CATS, $p>($($arg),*),
            (false, Cats::Wide) => $walk.$method::<false, WIDE_CATS, $p>($($arg),*),
        }
    };
}
use walk_with;

/// The value of a fast node's feature (its `feature` field, flags and all) in a row of a block:
/// with `P` = 0 the row is the block's width; otherwise it is `P` values, a power of two above
/// every feature read, and the index is masked into it, which needs no bounds check.
#[inline(always)]
fn feature_of<T: Copy, const P: usize>(row: &[T], feature: u32) -> T {
    if P == 0 { row[(feature & FEATURE_MASK) as usize] } else { row[feature as usize & P.wrapping_sub(1)] }
}

/// What the walk of one tree of the fast layout reads.
#[derive(Clone, Copy)]
struct Walk<'a, T> {
    nodes: &'a [FastNode<T>],
    sets: &'a [WideSet],
    leaf_of: &'a [u32],
    /// The block's rows, row-major, `width` values a row.
    xb: &'a [T],
    width: usize,
}

impl<T: Float> Walk<'_, T> {
    /// Rows of the block, as [`feature_of`] reads them with `P`.
    fn rows<const P: usize>(&self) -> std::slice::ChunksExact<'_, T> {
        self.xb.chunks_exact(if P == 0 { self.width } else { P })
    }

    /// One step of `row` (one of [`Walk::rows`]) from node `i`: the child it goes to.
    #[inline(always)]
    fn step<const NAN: bool, const CAT: u8, const P: usize>(&self, i: u32, row: &[T]) -> u32 {
        let node = &self.nodes[i as usize];
        node.left + fast_step::<T, NAN, CAT>(node, feature_of::<T, P>(row, node.feature), self.sets)
    }

    /// Walks three trees for a block of rows, every row a step at a time in each of them, from
    /// their frontiers at depth `from` down to `depth` (rows on leaves loop on themselves);
    /// leaves each row's leaf of each tree in `idx`. `starts` holds each tree's masks of the
    /// block and its frontier's slots: the first step starts from the node a row's mask names.
    ///
    /// Three trees' steps for a row in one pass share the row's address and the loop, and
    /// overlap: random forests, 100 trees of depth 8, 65,536-row batches, one thread: 1.51M ->
    /// 1.71M rows/s (two at a time 1.63M, four 1.64M; same invocation). Taking the first step
    /// from the masks, not from slots written to `idx` by a pass of their own: +3-4%.
    #[inline(always)]
    fn three<const NAN: bool, const CAT: u8, const P: usize>(
        &self,
        idx: [&mut [u32]; 3],
        starts: [(&[impl Word], &[u32; MAX_LEAVES]); 3],
        from: u32,
        depth: u32,
    ) {
        let step = |i: u32, row: &[T]| self.step::<NAN, CAT, P>(i, row);
        let [a, b, c] = idx;
        let [(ma, sa), (mb, sb), (mc, sc)] = starts;
        let frontier = ma.iter().zip(mb).zip(mc);
        let walks = from < depth;
        for ((((i, j), k), ((x, y), z)), row) in
            a.iter_mut().zip(b.iter_mut()).zip(c.iter_mut()).zip(frontier).zip(self.rows::<P>())
        {
            let (fi, fj, fk) = (sa[x.lowest()], sb[y.lowest()], sc[z.lowest()]);
            (*i, *j, *k) = if walks { (step(fi, row), step(fj, row), step(fk, row)) } else { (fi, fj, fk) };
        }
        for _ in from + 1..depth {
            for (((i, j), k), row) in a.iter_mut().zip(b.iter_mut()).zip(c.iter_mut()).zip(self.rows::<P>()) {
                (*i, *j, *k) = (step(*i, row), step(*j, row), step(*k, row));
            }
        }
    }

    /// Walks one tree of the fast layout for a block of rows, from its root (`from` = 0) or from the
    /// nodes at depth `from` that `idx` holds; leaves each row's leaf in `idx`.
    ///
    /// Steps before `switch` are taken by every row, rows on leaves looping on themselves. Trees
    /// whose leaves all lie at about the same depth (random forests) take all their steps that way.
    /// Lopsided trees (boosting) then keep a list of the rows still on a split, and step only those:
    /// a row's walk then costs about its own path length, not the depth of the deepest leaf.
    #[inline(always)]
    fn tree<const NAN: bool, const CAT: u8, const P: usize>(
        &self,
        tree: &Tree,
        idx: &mut [u32],
        active: &mut [u8],
        from: u32,
    ) {
        let Walk { nodes, sets, leaf_of, xb, width } = *self;
        let every_row = |idx: &mut [u32]| {
            for (i, row) in idx.iter_mut().zip(self.rows::<P>()) {
                *i = self.step::<NAN, CAT, P>(*i, row);
            }
        };
        if tree.depth == 0 {
            idx.fill(tree.root);
            return;
        }
        let mut level = from;
        if level == 0 {
            // The first step: every row is on the root, which is loaded once.
            let root = &nodes[tree.root as usize];
            let f = (root.feature & FEATURE_MASK) as usize;
            for (i, row) in idx.iter_mut().zip(self.rows::<P>()) {
                *i = root.left + fast_step::<T, NAN, CAT>(root, row[f], sets);
            }
            level = 1;
        }
        let switch = tree.switch.max(level);
        for _ in level..switch {
            every_row(idx);
        }
        if switch >= tree.depth {
            return;
        }
        // Two lists, read from one and written to the other, so that no load waits on a store.
        let (cur, next) = active.split_at_mut(BLOCK);
        let (mut cur, mut next) = (cur, next);
        let mut live = 0;
        for (r, i) in idx.iter().enumerate() {
            cur[live] = r as u8;
            live += usize::from(leaf_of[*i as usize] == u32::MAX);
        }
        // Every live row reaches its leaf within the tree's depth: the bound only guards the loop.
        for _ in switch..tree.depth {
            if live == 0 {
                break;
            }
            let mut kept = 0;
            for &r in &cur[..live] {
                let r = usize::from(r);
                let node = &nodes[idx[r] as usize];
                let v = xb[r * width + (node.feature & FEATURE_MASK) as usize];
                let b = fast_step::<T, NAN, CAT>(node, v, sets);
                idx[r] = node.left + b;
                next[kept] = r as u8;
                // The child's leaf bit: FALSE_LEAF_BIT for b = 0, TRUE_LEAF_BIT for b = 1.
                kept += (((node.feature >> (30 - b)) & 1) ^ 1) as usize;
            }
            live = kept;
            std::mem::swap(&mut cur, &mut next);
        }
    }
}

fn exact_decision<T: Float>(node: &Exact<T>, v: T) -> bool {
    let t = node.threshold;
    let cmp = match node.mode {
        Mode::Leq => v <= t,
        Mode::Lt => v < t,
        Mode::Gte => v >= t,
        Mode::Gt => v > t,
        Mode::Eq => v == t,
        Mode::Neq => v != t,
        Mode::Member => node.members.contains(&v),
    };
    cmp || (node.missing_true && v.is_nan())
}

/// `aggregate_function`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Aggregate {
    /// The sum of the trees' leaf weights.
    Sum,
    /// The sum, divided by the number of trees by the caller.
    Average,
    /// The smallest leaf weight.
    Min,
    /// The largest leaf weight.
    Max,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// x0 <= 1 ? (x1 < 5 ? leaf0 : leaf1) : leaf2
    fn small(mode_inner: Mode, missing_true: bool) -> RawEnsemble {
        RawEnsemble {
            nodes: vec![
                RawNode {
                    feature: 0,
                    threshold: 1.0,
                    mode: Mode::Leq,
                    members: vec![],
                    yes: Target::Node(1),
                    no: Target::Leaf(2),
                    missing_true,
                },
                RawNode {
                    feature: 1,
                    threshold: 5.0,
                    mode: mode_inner,
                    members: vec![],
                    yes: Target::Leaf(0),
                    no: Target::Leaf(1),
                    missing_true: false,
                },
            ],
            leaves: vec![vec![(0, 10.0)], vec![(0, 20.0)], vec![(0, 30.0)]],
            roots: vec![Target::Node(0)],
        }
    }

    /// The ensemble with every tree walked node by node.
    fn without_bits<T: Float>(mut e: Ensemble<T>) -> Ensemble<T> {
        let Layout::Fast { bits, .. } = &mut e.layout else { panic!("not the fast layout") };
        assert!(bits.take().is_some(), "no tree was walked by bit-vectors");
        e
    }

    fn score<T: Float>(e: &Ensemble<T>, x: &[T]) -> Vec<T> {
        e.aggregate(x, 2, x.len() / 2, Aggregate::Sum).unwrap().0
    }

    /// A chain of `n` splits whose two branches both lead to the next split: 2^n paths.
    fn doubling(n: usize) -> RawEnsemble {
        let node = |i: usize| RawNode {
            feature: 0,
            threshold: i as f64,
            mode: Mode::Leq,
            members: vec![],
            yes: if i + 1 < n { Target::Node(i + 1) } else { Target::Leaf(0) },
            no: if i + 1 < n { Target::Node(i + 1) } else { Target::Leaf(1) },
            missing_true: false,
        };
        RawEnsemble {
            nodes: (0..n).map(node).collect(),
            leaves: vec![vec![(0, 1.0)], vec![(0, 2.0)]],
            roots: vec![Target::Node(0)],
        }
    }

    #[test]
    fn shared_subtrees_unfold_within_a_budget_and_cycles_are_refused() {
        // A few shared subtrees unfold (8 splits: 511 nodes) and score as trees.
        let e = Ensemble::<f32>::compile(&doubling(8), 1).expect("a small shared subtree");
        assert_eq!(score(&e, &[0.0, 0.0]), vec![1.0]);
        // 60 of them would unfold into 2^61 nodes: refused at once, before allocating any.
        let start = std::time::Instant::now();
        let err = Ensemble::<f32>::compile(&doubling(60), 1).expect_err("an exponential unfolding").to_string();
        assert!(err.contains("unfold") && start.elapsed().as_secs() < 2, "{err}");
        // A child pointing back up is a cycle.
        let mut cyclic = small(Mode::Lt, false);
        cyclic.nodes[1].no = Target::Node(0);
        let err = Ensemble::<f32>::compile(&cyclic, 1).expect_err("a cycle").to_string();
        assert!(err.contains("cycle"), "{err}");
        let mut bad_root = small(Mode::Lt, false);
        bad_root.roots.push(Target::Node(9));
        assert!(Ensemble::<f64>::compile(&bad_root, 1).is_err());
    }

    #[test]
    fn every_mode_matches_its_comparison_exactly_at_the_threshold() {
        for (mode, at, below, above) in [
            (Mode::Leq, 10.0, 10.0, 20.0),
            (Mode::Lt, 20.0, 10.0, 20.0),
            (Mode::Gte, 10.0, 20.0, 10.0),
            (Mode::Gt, 20.0, 20.0, 10.0),
            (Mode::Eq, 10.0, 20.0, 20.0),
            (Mode::Neq, 20.0, 10.0, 10.0),
        ] {
            let e32 = Ensemble::<f32>::compile(&small(mode, false), 1).unwrap();
            assert_eq!(
                score(&e32, &[0.0, 5.0, 0.0, 4.999_999_5, 0.0, 5.000_000_5]),
                vec![at, below, above],
                "{mode:?} f32"
            );
            let e64 = Ensemble::<f64>::compile(&small(mode, false), 1).unwrap();
            assert_eq!(
                score(&e64, &[0.0, 5.0, 0.0, 4.999_999_999_999, 0.0, 5.000_000_000_001]),
                vec![at as f64, below as f64, above as f64],
                "{mode:?} f64"
            );
        }
    }

    #[test]
    fn nan_follows_the_missing_value_track() {
        let tracked = Ensemble::<f32>::compile(&small(Mode::Leq, true), 1).unwrap();
        assert_eq!(score(&tracked, &[f32::NAN, 0.0]), vec![10.0]);
        let untracked = Ensemble::<f32>::compile(&small(Mode::Leq, false), 1).unwrap();
        assert_eq!(score(&untracked, &[f32::NAN, 0.0]), vec![30.0]);
        // x > t is false for NaN: without tracking NaN goes to the false branch, as onnxruntime does.
        let gt = Ensemble::<f32>::compile(&small(Mode::Gt, false), 1).unwrap();
        assert_eq!(score(&gt, &[0.0, f32::NAN]), vec![20.0]);
    }

    #[test]
    fn blocks_and_several_trees_sum_in_order() {
        let mut raw = small(Mode::Leq, false);
        raw.roots.push(Target::Node(0));
        let e = Ensemble::<f32>::compile(&raw, 1).unwrap();
        let x: Vec<f32> = (0..300).flat_map(|i| [(i % 3) as f32, (i % 7) as f32]).collect();
        let got = score(&e, &x);
        for (i, g) in got.iter().enumerate() {
            let (a, b) = ((i % 3) as f32, (i % 7) as f32);
            let one = if a <= 1.0 { if b <= 5.0 { 10.0 } else { 20.0 } } else { 30.0 };
            assert_eq!(*g, 2.0 * one, "row {i}");
        }
    }

    /// A lopsided tree: split k sends `x[k % 2] <= k` to leaf k (worth k), the rest deeper; the
    /// odd splits send NaN to their leaf. Its walk switches to the list of live rows.
    #[test]
    fn lopsided_trees_follow_only_the_live_rows_to_the_same_leaves() {
        let depth = 12;
        let nodes = (0..depth)
            .map(|k| RawNode {
                feature: k % 2,
                threshold: k as f64,
                mode: Mode::Leq,
                members: vec![],
                yes: Target::Leaf(k),
                no: if k + 1 < depth { Target::Node(k + 1) } else { Target::Leaf(depth) },
                missing_true: k % 2 == 1,
            })
            .collect();
        let leaves = (0..=depth).map(|k| vec![(0, k as f64)]).collect();
        let raw = RawEnsemble { nodes, leaves, roots: vec![Target::Node(0), Target::Node(0)] };
        // Walked node by node (its 13 leaves would otherwise be walked by bit-vectors).
        let e = without_bits(Ensemble::<f32>::compile(&raw, 1).unwrap());
        assert!(e.trees[0].switch < e.trees[0].depth, "{:?}", e.trees[0]);
        let expect = |x: [f32; 2]| {
            (0..depth)
                .find(|&k| x[k % 2] <= k as f32 || (k % 2 == 1 && x[k % 2].is_nan()))
                .map_or(depth as f32, |k| k as f32)
        };
        let rows: Vec<[f32; 2]> = (0..700)
            .map(|i| {
                let a = (i * 7 % 29) as f32 / 2.0;
                let b = if i % 11 == 0 { f32::NAN } else { (i * 5 % 31) as f32 / 2.0 };
                if i % 3 == 0 { [b, a] } else { [a, b] }
            })
            .collect();
        let x: Vec<f32> = rows.iter().flatten().copied().collect();
        let got = score(&e, &x);
        for (r, row) in rows.iter().enumerate() {
            assert_eq!(got[r], 2.0 * expect(*row), "row {r}: {row:?}");
        }
    }

    /// A small deterministic generator (64-bit LCG, high bits).
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((self.0 >> 33) % n as u64) as usize
        }
    }

    /// How [`random_ensemble`] grows its trees.
    #[derive(Clone, Copy)]
    enum Grow {
        /// Each tree to 1 to this many leaves, splitting a random leaf each time: lopsided.
        Random(usize),
        /// Each tree to this many leaves, splitting the shallowest leaf each time: level by level,
        /// a random forest's shape.
        Balanced(usize),
    }

    /// `trees` random trees over 5 features, with thresholds from a small set that the inputs
    /// hit exactly, every fast mode, NaN tracking on some splits. `dense`: every leaf weighs every
    /// output once, in a random order (forest classifiers). A third of the splits are categorical
    /// when `cats` is 1 (sets of the integers 0 to 5) or 2 (some sets with 40, 100 or 255 too:
    /// too large for a mask in a node).
    fn random_ensemble(rng: &mut Rng, trees: usize, grow: Grow, outputs: usize, dense: bool, cats: u8) -> RawEnsemble {
        let mut raw = RawEnsemble::default();
        for _ in 0..trees {
            let want = match grow {
                Grow::Random(max_leaves) => 1 + rng.below(max_leaves),
                Grow::Balanced(leaves) => leaves,
            };
            raw.roots.push(Target::Leaf(0));
            // Grow by splitting a leaf until the tree has `want` leaves. A leaf is a hole: its
            // parent split (`None`: the root) and which branch of it.
            let mut holes: Vec<(Option<usize>, bool)> = vec![(None, false)];
            while holes.len() < want {
                let (parent, yes) = match grow {
                    Grow::Random(_) => holes.swap_remove(rng.below(holes.len())),
                    Grow::Balanced(_) => holes.remove(0),
                };
                let node = raw.nodes.len();
                let mode = if cats > 0 && rng.below(3) == 0 {
                    Mode::Member
                } else {
                    [Mode::Leq, Mode::Lt, Mode::Gte, Mode::Gt][rng.below(4)]
                };
                let members = match mode {
                    Mode::Member => {
                        let mut m: Vec<f64> = (0..6).filter(|_| rng.below(2) == 0).map(f64::from).collect();
                        if cats == 2 && rng.below(2) == 0 {
                            m.push([40.0, 100.0, 255.0][rng.below(3)]);
                        }
                        m
                    }
                    _ => vec![],
                };
                raw.nodes.push(RawNode {
                    feature: rng.below(5),
                    threshold: (rng.below(9) as f64 - 4.0) / 2.0,
                    mode,
                    members,
                    yes: Target::Leaf(0),
                    no: Target::Leaf(0),
                    missing_true: rng.below(2) == 0,
                });
                match parent {
                    None => *raw.roots.last_mut().expect("root") = Target::Node(node),
                    Some(p) if yes => raw.nodes[p].yes = Target::Node(node),
                    Some(p) => raw.nodes[p].no = Target::Node(node),
                }
                holes.push((Some(node), true));
                holes.push((Some(node), false));
            }
            for (parent, yes) in holes {
                let leaf = raw.leaves.len();
                let mut weights: Vec<(usize, f64)> = if dense {
                    (0..outputs).map(|o| (o, rng.below(1000) as f64 / 8.0)).collect()
                } else {
                    (0..1 + rng.below(outputs)).map(|_| (rng.below(outputs), rng.below(1000) as f64 / 8.0)).collect()
                };
                if dense {
                    let turn = rng.below(outputs);
                    weights.rotate_left(turn);
                }
                raw.leaves.push(weights);
                match parent {
                    None => *raw.roots.last_mut().expect("root") = Target::Leaf(leaf),
                    Some(p) if yes => raw.nodes[p].yes = Target::Leaf(leaf),
                    Some(p) => raw.nodes[p].no = Target::Leaf(leaf),
                }
            }
        }
        raw
    }

    /// The ensemble evaluated node by node from its attributes, summing trees in order.
    fn oracle<T: Float>(raw: &RawEnsemble, row: &[T], outputs: usize) -> Vec<T> {
        let mut acc = vec![T::default(); outputs];
        for root in &raw.roots {
            let mut at = *root;
            while let Target::Node(i) = at {
                let n = &raw.nodes[i];
                let v = row[n.feature];
                let t = T::from_f64(n.threshold);
                let cmp = match n.mode {
                    Mode::Leq => v <= t,
                    Mode::Lt => v < t,
                    Mode::Gte => v >= t,
                    Mode::Gt => v > t,
                    Mode::Member => n.members.iter().any(|m| T::from_f64(*m) == v),
                    _ => unreachable!("not generated"),
                };
                at = if cmp || (n.missing_true && v.is_nan()) { n.yes } else { n.no };
            }
            let Target::Leaf(l) = at else { unreachable!() };
            for &(o, w) in &raw.leaves[l] {
                acc[o] += T::from_f64(w);
            }
        }
        acc
    }

    /// `cols` repeated to more than half of [`PADDED`] columns (and at most [`PADDED`]), so that
    /// the walk pads its rows to [`PADDED`] values. Trees that read only `cols` score the same.
    fn padded_columns<'a>(cols: &[&'a [f64]]) -> Vec<&'a [f64]> {
        let wide: Vec<&[f64]> = cols.iter().cycle().take(PADDED / 2 + 1).copied().collect();
        assert!(wide.len() > PADDED / 2 && wide.len() <= PADDED);
        wide
    }

    /// Scores random trees of up to `max_leaves` leaves every way and compares each row with
    /// [`oracle`]. Up to 32 leaves, every tree goes by masks alone; up to 48, some are walked on
    /// from their cut in 32-bit masks.
    fn check_against_oracle<T: Float>(seed: u64, max_leaves: usize, outputs: usize, dense: bool) {
        check_against_oracle_with::<T>(seed, max_leaves, outputs, dense, 0);
    }

    fn check_against_oracle_with<T: Float>(seed: u64, max_leaves: usize, outputs: usize, dense: bool, cats: u8) {
        let mut rng = Rng(seed);
        let raw = random_ensemble(&mut rng, 60, Grow::Random(max_leaves), outputs, dense, cats);
        let bits = Ensemble::<T>::compile(&raw, outputs).unwrap();
        let large = raw.nodes.iter().any(|n| n.members.iter().any(|m| *m >= f64::from(T::MASK_BITS)));
        let want = match cats {
            0 => Cats::None,
            _ if large => Cats::Wide,
            _ => Cats::Small,
        };
        assert_eq!(cats_of(&bits), Some(want), "seed {seed}, cats {cats}");
        // The same trees in masks of the other width (32 or 64 bits).
        let mut other = bits.clone();
        let Layout::Fast { nodes, bits: Some(b), .. } = &mut other.layout else { panic!("no bit-vector trees") };
        **b = b.other_width(nodes, &other.leaf_of, &other.trees).expect("the other width");
        // And with the leaf map of 32 bits that ensembles of 65,535 leaves or more keep.
        assert_eq!(bits.leaf_of16.len(), bits.leaf_of.len());
        other.leaf_of16.clear();
        let narrow = [&bits, &other]
            .into_iter()
            .find_map(|e| match &e.layout {
                Layout::Fast { bits: Some(b), .. } if b.width() == 32 => Some(b),
                _ => None,
            })
            .expect("one of them has 32-bit masks");
        // Trees of up to 32 leaves are scored by masks alone, larger ones walked on from their cut.
        let whole = narrow.whole_trees();
        if max_leaves <= 32 {
            assert_eq!(whole, raw.roots.len());
        } else {
            assert!(whole > 0 && whole < raw.roots.len(), "{whole} of {}", raw.roots.len());
        }
        let nodes_only = without_bits(bits.clone());
        // And in 64-bit masks of two halves, where every tree fits them.
        let halved = match &bits.layout {
            Layout::Fast { nodes, bits: Some(b), .. } => b.halved(nodes, &bits.leaf_of, &bits.trees).map(|h| {
                let mut e = bits.clone();
                if let Layout::Fast { bits: Some(b), .. } = &mut e.layout {
                    **b = h;
                }
                e
            }),
            _ => None,
        };
        // 300 rows: two full blocks and a partial one whose second 64-row chunk is partial too.
        // Values hit the thresholds exactly, fall between them, or are NaN (from row 128 on).
        // Rows 128..192 stay below most thresholds: most of their splits clear no mask.
        let rows = 300;
        let x: Vec<T> = (0..rows * 5)
            .map(|i| {
                let top = if (128..192).contains(&(i / 5)) { 4 } else { 12 };
                match rng.below(top) {
                    0 if i / 5 >= 128 => T::from_f64(f64::NAN),
                    // Wide sets' values, and values just past them.
                    1 if cats == 2 => T::from_f64([40.0, 100.0, 255.0, 256.0, 63.0, 64.0][rng.below(6)]),
                    k => T::from_f64((k as f64 - 6.0) / 2.0 + if rng.below(3) == 0 { 0.25 } else { 0.0 }),
                }
            })
            .collect();
        assert_eq!(bits.dense.is_some(), dense && outputs > 1);
        // A caller's table of every leaf's weights, by output.
        let mut table = vec![T::default(); raw.leaves.len() * outputs];
        for (l, leaf) in raw.leaves.iter().enumerate() {
            for &(o, w) in leaf {
                table[l * outputs + o] += T::from_f64(w);
            }
        }
        // The same rows as float64 columns (every value of `x` is one exactly).
        let cols: Vec<Vec<f64>> = (0..5).map(|j| x.iter().skip(j).step_by(5).map(|v| v.to_f64()).collect()).collect();
        let cols: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
        let wide = padded_columns(&cols);
        let zeros = vec![T::default(); outputs];
        let mut variants = vec![("bit-vector", &bits), ("other-width bit-vector", &other), ("node", &nodes_only)];
        variants.extend(halved.as_ref().map(|h| ("halved 64-bit", h)));
        for (name, e) in variants {
            let inputs = [
                (Rows::Major { x: &x, width: 5 }, "rows"),
                (Rows::Columns(&cols), "columns"),
                (Rows::Columns(&wide), "columns walked padded"),
            ];
            for (input, rows_are) in inputs {
                let (got, _) = e.aggregate_input(input, rows, Aggregate::Sum, &[]).unwrap();
                let tabled = e.sum_leaf_table(input, rows, &table, &zeros).unwrap();
                for (r, row) in x.chunks_exact(5).enumerate() {
                    let want = oracle(&raw, row, outputs);
                    let at = r * outputs..(r + 1) * outputs;
                    assert_eq!(&got[at.clone()], &want[..], "{name} walk of {rows_are}, row {r}: {row:?}");
                    if dense || outputs == 1 {
                        assert_eq!(&tabled[at], &want[..], "{name} walk of {rows_are}, table, row {r}");
                    }
                }
            }
        }
        assert!(bits.sum_leaf_table(Rows::Columns(&cols[..4]), rows, &table, &zeros).is_err(), "4 of 5 columns");
        let short = [cols[0], cols[1], cols[2], &cols[3][..rows - 1], cols[4]];
        assert!(bits.aggregate_input(Rows::Columns(&short), rows, Aggregate::Sum, &[]).is_err(), "a short column");
        // Batches of fewer than BITS_MIN_ROWS rows are walked node by node, bit-vectors or not.
        for (start, n) in [(0, 1), (130, 1), (140, 7), (200, BITS_MIN_ROWS - 1), (250, BITS_MIN_ROWS)] {
            let xs = &x[start * 5..(start + n) * 5];
            let (got, _) = bits.aggregate(xs, 5, n, Aggregate::Sum).unwrap();
            for (r, row) in xs.chunks_exact(5).enumerate() {
                let want = oracle(&raw, row, outputs);
                assert_eq!(&got[r * outputs..(r + 1) * outputs], &want[..], "{n}-row batch from row {start}, row {r}");
            }
        }
    }

    #[test]
    fn both_walks_reach_the_leaves_an_attribute_by_attribute_walk_reaches() {
        for seed in 0..8 {
            for max_leaves in [48, 32] {
                check_against_oracle::<f32>(seed, max_leaves, 1, false);
                check_against_oracle::<f64>(seed, max_leaves, 1, false);
                check_against_oracle::<f32>(seed, max_leaves, 3, false);
                // Forest classifiers: the dense table (binary's pair, and three classes).
                check_against_oracle::<f64>(seed, max_leaves, 2, true);
                check_against_oracle::<f32>(seed, max_leaves, 3, true);
            }
        }
    }

    #[test]
    fn shared_equal_leaves_score_the_same_and_a_leaf_past_the_end_stays_refused() {
        let mut rng = Rng(7);
        let mut raw = random_ensemble(&mut rng, 20, Grow::Balanced(100), 2, true, 0);
        // Class fractions from a few counts, as a forest's leaves hold them: many repeat.
        for leaf in &mut raw.leaves {
            let ones = rng.below(4) as f64;
            *leaf = vec![(0, (3.0 - ones) / 3.0), (1, ones / 3.0)];
        }
        let mut shared = raw.clone();
        shared.share_equal_leaves();
        assert_eq!(shared.leaves.len(), 4, "{} leaves before", raw.leaves.len());
        assert_eq!(shared.nodes.len(), raw.nodes.len());
        let rows = 300;
        let x: Vec<f32> = (0..rows * 5).map(|_| (rng.below(14) as f32 - 6.0) / 2.0).collect();
        let cols: Vec<Vec<f64>> =
            (0..5).map(|j| x.iter().skip(j).step_by(5).map(|v| f64::from(*v)).collect()).collect();
        let cols: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
        let score = |raw: &RawEnsemble| {
            let e = Ensemble::<f32>::compile(raw, 2).unwrap();
            let table = raw.leaf_table(2).unwrap();
            e.sum_leaf_table(Rows::Columns(&cols), rows, &table, &[0.0, 0.0]).unwrap()
        };
        let (before, after) = (score(&raw), score(&shared));
        assert_eq!(before, after);
        for (r, row) in x.chunks_exact(5).enumerate() {
            let row: Vec<f64> = row.iter().map(|v| f64::from(*v)).collect();
            let want = oracle(&raw, &row, 2);
            assert_eq!(&after[2 * r..2 * r + 2], &want[..], "row {r}");
        }
        // A root naming a leaf past the end names one past the shorter list too.
        let past = raw.leaves.len() + 1;
        raw.roots.push(Target::Leaf(past));
        raw.share_equal_leaves();
        assert_eq!(raw.roots.last(), Some(&Target::Leaf(past)));
        assert!(Ensemble::<f32>::compile(&raw, 2).is_err());
    }

    /// `rows` rows of 5 float32 values on and between the thresholds of [`random_ensemble`],
    /// NaN among them from row 128 on.
    fn random_rows(rng: &mut Rng, rows: usize) -> Vec<f32> {
        (0..rows * 5)
            .map(|i| match rng.below(14) {
                0 if i / 5 >= 128 => f32::NAN,
                k => (k as f32 - 6.0) / 2.0 + if rng.below(3) == 0 { 0.25 } else { 0.0 },
            })
            .collect()
    }

    #[test]
    fn forests_walked_three_trees_at_a_time_reach_the_attributes_leaves() {
        // Each way a visitor sums a triple's leaves: a binary forest's pairs of weights (dense,
        // 2 outputs), values kept in the leaves' nodes (1 output, every leaf weighted), leaves
        // some of which have no weight (1 output), and weights listed per leaf (3 outputs).
        let kinds = [(2, true), (1, true), (1, false), (3, false)];
        for (seed, cats, (outputs, dense)) in
            [(1, 0, kinds[0]), (2, 1, kinds[0]), (3, 0, kinds[0]), (4, 0, kinds[1]), (5, 1, kinds[2]), (6, 0, kinds[3])]
        {
            let mut rng = Rng(seed);
            // 100 leaves: depth 7, too many for 64-bit masks, so the masks take five levels and
            // the walk the last two, every row; 11 trees: three triples, then two walked alone.
            let mut raw = random_ensemble(&mut rng, 11, Grow::Balanced(100), outputs, dense, cats);
            if outputs == 1 && !dense {
                raw.leaves.iter_mut().step_by(7).for_each(Vec::clear);
            }
            let e = Ensemble::<f32>::compile(&raw, outputs).unwrap();
            let Layout::Fast { bits: Some(bits), .. } = &e.layout else { panic!("no bit-vector trees") };
            assert!(e.three_alike(bits, 0).is_some() && e.three_alike(bits, 9).is_none());
            assert_eq!(e.value_in_node, outputs == 1 && dense, "seed {seed}");
            let rows = 300;
            let x = random_rows(&mut rng, rows);
            let cols: Vec<Vec<f64>> =
                (0..5).map(|j| x.iter().skip(j).step_by(5).map(|v| f64::from(*v)).collect()).collect();
            let cols: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
            // A caller's table of every leaf's weights, by output.
            let mut table = vec![0.0f32; raw.leaves.len() * outputs];
            for (l, leaf) in raw.leaves.iter().enumerate() {
                for &(o, w) in leaf {
                    table[l * outputs + o] += w as f32;
                }
            }
            let zeros = vec![0.0f32; outputs];
            for input in [Rows::Major { x: &x, width: 5 }, Rows::Columns(&cols), Rows::Columns(&padded_columns(&cols))]
            {
                let (got, _) = e.aggregate_input(input, rows, Aggregate::Sum, &[]).unwrap();
                let tabled = e.sum_leaf_table(input, rows, &table, &zeros).unwrap();
                for (r, row) in x.chunks_exact(5).enumerate() {
                    let (at, want) = (r * outputs..(r + 1) * outputs, oracle(&raw, row, outputs));
                    assert_eq!(&got[at.clone()], &want[..], "seed {seed}, row {r}: {row:?}");
                    assert_eq!(&tabled[at], &want[..], "seed {seed}, table, row {r}: {row:?}");
                }
            }
        }
    }

    /// Trees of 64 leaves whose root's two subtrees hold 32 each (XGBoost's depth 6) take 64-bit
    /// masks computed as two 32-bit halves, and reach the attribute walk's leaves; lopsided trees
    /// of up to 64 leaves keep plain 64-bit masks, as do halves that would not fit.
    #[test]
    fn trees_of_two_32_leaf_halves_take_halved_masks_and_agree_with_the_attributes() {
        let cases = [(1, 0, Grow::Balanced(64)), (2, 1, Grow::Balanced(64)), (3, 0, Grow::Balanced(60))]
            .into_iter()
            .chain((10..40).map(|seed| (seed, (seed % 2) as u8, Grow::Random(64))));
        let (mut halved, mut plain) = (0, 0);
        for (seed, cats, grow) in cases {
            let mut rng = Rng(seed);
            let raw = random_ensemble(&mut rng, 9, grow, 1, false, cats);
            let e = Ensemble::<f32>::compile(&raw, 1).unwrap();
            let Layout::Fast { bits: Some(bits), .. } = &e.layout else { panic!("no bit-vector trees") };
            match (bits.width(), bits.is_halved()) {
                (64, true) => halved += 1,
                (64, false) => plain += 1,
                _ => {}
            }
            if matches!(grow, Grow::Balanced(_)) {
                assert!(bits.is_halved(), "seed {seed}");
            }
            let rows = 300;
            let x = random_rows(&mut rng, rows);
            let (got, _) = e.aggregate(&x, 5, rows, Aggregate::Sum).unwrap();
            for (r, row) in x.chunks_exact(5).enumerate() {
                assert_eq!(got[r], oracle(&raw, row, 1)[0], "seed {seed}, row {r}: {row:?}");
            }
        }
        assert!(halved >= 3 && plain >= 1, "{halved} halved, {plain} plain 64-bit");
    }

    #[test]
    fn categorical_splits_walk_fast_and_agree_with_the_attributes() {
        for seed in 0..8 {
            for max_leaves in [48, 32] {
                for cats in [1, 2] {
                    check_against_oracle_with::<f32>(seed, max_leaves, 1, false, cats);
                    check_against_oracle_with::<f64>(seed, max_leaves, 2, true, cats);
                    check_against_oracle_with::<f64>(seed, max_leaves, 3, false, cats);
                }
            }
        }
    }

    /// A categorical split on `{0, top}` of feature 0: 1 for members (and NaN), else 2.
    fn one_member_split(top: f64) -> RawEnsemble {
        RawEnsemble {
            nodes: vec![RawNode {
                feature: 0,
                threshold: 0.0,
                mode: Mode::Member,
                members: vec![0.0, top],
                yes: Target::Leaf(0),
                no: Target::Leaf(1),
                missing_true: true,
            }],
            leaves: vec![vec![(0, 1.0)], vec![(0, 2.0)]],
            roots: vec![Target::Node(0)],
        }
    }

    /// How an ensemble holds its categorical sets: `None` for the exact layout.
    fn cats_of<T>(e: &Ensemble<T>) -> Option<Cats> {
        match e.layout {
            Layout::Fast { cats, .. } => Some(cats),
            Layout::Exact(_) => None,
        }
    }

    #[test]
    fn sets_of_small_integers_take_the_fast_layout_and_others_the_exact_one() {
        let x = [0.0, -0.0, 31.0, 32.0, 63.0, 64.0, 255.0, 256.0, 0.5, -1.0, 1e10, f64::NAN, f64::INFINITY];
        let (small, wide) = (Some(Cats::Small), Some(Cats::Wide));
        for (top, cats32, cats64) in [
            (31.0, small, small),
            (32.0, wide, small),
            (63.0, wide, small),
            (64.0, wide, wide),
            (255.0, wide, wide),
            (256.0, None, None),
        ] {
            let raw = one_member_split(top);
            let want = |v: f64| if v.is_nan() || v == 0.0 || v == top { 1.0 } else { 2.0 };
            let e32 = Ensemble::<f32>::compile(&raw, 1).unwrap();
            let e64 = Ensemble::<f64>::compile(&raw, 1).unwrap();
            assert_eq!(cats_of(&e32), cats32, "f32, top {top}");
            assert_eq!(cats_of(&e64), cats64, "f64, top {top}");
            // 39 rows: through the masks, and one at a time through the node walk.
            let rows: Vec<f64> = x.iter().cycle().take(39).copied().collect();
            let (got64, _) = e64.aggregate(&rows, 1, rows.len(), Aggregate::Sum).unwrap();
            let rows32: Vec<f32> = rows.iter().map(|v| *v as f32).collect();
            let (got32, _) = e32.aggregate(&rows32, 1, rows.len(), Aggregate::Sum).unwrap();
            for (r, v) in rows.iter().enumerate() {
                assert_eq!(got64[r], want(*v), "f64, top {top}, {v}");
                assert_eq!(f64::from(got32[r]), want(f64::from(*v as f32)), "f32, top {top}, {v}");
                let (one, _) = e64.aggregate(&rows[r..=r], 1, 1, Aggregate::Sum).unwrap();
                assert_eq!(one[0], want(*v), "f64 node walk, top {top}, {v}");
            }
        }
    }

    #[test]
    fn pred_is_the_next_float_down() {
        assert_eq!(1.0f32.pred(), Some(0.99999994));
        assert_eq!((-1.0f32).pred(), Some(-1.0000001));
        assert!(0.0f32.pred().unwrap() < 0.0);
        assert_eq!(f32::NEG_INFINITY.pred(), None);
    }
}
