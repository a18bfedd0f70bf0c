//! The bit-vector walk (QuickScorer: Lucchese et al., SIGIR 2015), for trees of at most 32 leaves
//! and for the top of larger ones.
//!
//! Number a tree's leaves left to right, the true branch of every split first. A row's leaf is
//! then the first leaf that none of the splits it fails rules out, where a failed split (the row
//! goes to its false branch) rules out every leaf under its true branch. So instead of following
//! each row down each tree, every split is visited once per block of 64 rows: the block's values
//! are gathered feature by feature, and for each tree its 64 32-bit masks are held in registers
//! while each of its splits compares its feature's 64 values with its threshold and clears the
//! split's leaves from the failing rows' masks; then the masks are written once. The inner loop
//! runs over 64 rows with no branch and no dependent load, so the compiler turns it into SIMD
//! compares and ANDs. What is left is one mask per tree and row, whose lowest set bit is the leaf.
//!
//! QuickScorer's own order (the splits grouped by feature and sorted by threshold, each updating
//! its tree's masks in memory, a feature's list ending at the first split no row fails) was this
//! kernel's first: it loads and stores 64 masks per split where this order keeps them in
//! registers, and its early ends rarely come for blocks of 64 rows. Tree by tree, XGBoost 100
//! trees of depth 6 scored 3.05-3.10M rows/s against 2.26-2.31M, 500 trees 0.60-0.61M against
//! 0.48-0.51M, RandomForest 1.41-1.44M against 1.17-1.19M and HistGradientBoosting 3.2-3.4M
//! against 3.0-3.2M (65,536-row batches, one thread, same invocation); LightGBM's 63-leaf trees
//! within noise.
//!
//! Lopsided boosting trees (scikit-learn's HistGradientBoosting, 31 leaves) cost a node walk
//! about their path length in dependent steps a row; here they cost their 30 splits in SIMD lanes.
//! A tree of more than 32 leaves is cut at the deepest level where its frontier (the leaves above
//! that level and the nodes at it) still fits 32 bits: the masks take each row to its frontier node
//! (a random forest's depth-8 trees: the first 5 levels), and the node walk goes on from there.

use super::{FEATURE_MASK, FastNode, Float, NAN_BIT, Tree};

/// Rows whose masks one pass over the splits updates.
pub(super) const LANES: usize = 64;

/// The most leaves a tree may have to be walked this way (one bit each).
const MAX_LEAVES: usize = 32;

/// A split, as the bit-vector walk visits it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Split<T> {
    threshold: T,
    feature: u32,
    /// Every bit but those of the leaves under the true branch.
    keep: u32,
}

/// The splits of the trees walked by bit-vectors, by tree.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct BitTrees<T> {
    /// Tree by tree: first the splits that NaN fails, then those NaN passes.
    splits: Vec<Split<T>>,
    /// Per tree: where its splits start, where those NaN passes start, and where they end.
    bounds: Vec<[u32; 3]>,
    /// Number of features the splits read.
    features: usize,
    /// Per tree: the fast-layout slot of each node of its frontier, left to right.
    leaves: Vec<[u32; MAX_LEAVES]>,
    /// Per tree: each frontier leaf's value (its node's `threshold`), left to right.
    values: Vec<[T; MAX_LEAVES]>,
    /// Per tree: `None` when its frontier is its leaves, else the depth of its frontier, from
    /// which the walk goes on node by node.
    resume: Vec<Option<u32>>,
}

impl<T: Float> BitTrees<T> {
    /// Collects every tree down to its [`cut_depth`]; `None` when a threshold is NaN.
    pub(super) fn build(nodes: &[FastNode<T>], leaf_of: &[u32], trees: &[Tree], features: usize) -> Option<Self> {
        if nodes.iter().zip(leaf_of).any(|(n, l)| *l == u32::MAX && n.threshold.is_nan()) {
            return None;
        }
        let mut splits = Vec::new();
        let mut bounds = Vec::with_capacity(trees.len());
        let mut leaves = Vec::new();
        let mut values = Vec::new();
        let mut resume = Vec::new();
        for tree in trees {
            let cut = cut_depth(nodes, leaf_of, tree.root);
            let (slots, tree_splits) = in_order(nodes, leaf_of, tree.root, cut);
            resume.push(slots.iter().any(|s| leaf_of[*s as usize] == u32::MAX).then_some(cut));
            let mut table = [slots[0]; MAX_LEAVES];
            table[..slots.len()].copy_from_slice(&slots);
            leaves.push(table);
            values.push(table.map(|slot| nodes[slot as usize].threshold));
            let mut by_nan: [Vec<Split<T>>; 2] = [Vec::new(), Vec::new()];
            for (slot, keep) in tree_splits {
                let node = &nodes[slot as usize];
                let nan_passes = node.feature & NAN_BIT != 0;
                let feature = node.feature & FEATURE_MASK;
                if feature as usize >= features {
                    return None;
                }
                by_nan[usize::from(nan_passes)].push(Split { threshold: node.threshold, feature, keep });
            }
            let start = splits.len() as u32;
            splits.extend(&by_nan[0]);
            let mid = splits.len() as u32;
            splits.extend(&by_nan[1]);
            bounds.push([start, mid, splits.len() as u32]);
        }
        Some(Self { splits, bounds, features, leaves, values, resume })
    }

    /// Number of trees (rows of the masks: one per tree of the ensemble, in order).
    pub(super) fn trees(&self) -> usize {
        self.leaves.len()
    }

    /// Computes the masks of the `n` rows of `xb` (row-major, `width` values a row): tree `k`'s
    /// masks are `masks[k * stride..][..n]`. `stride` is at least `n` rounded up to a multiple of [`LANES`].
    pub(super) fn masks(&self, xb: &[T], width: usize, n: usize, masks: &mut [u32], stride: usize) {
        fill_masks(&self.splits, &self.bounds, self.features, xb, width, n, masks, stride);
    }

    /// Number of trees whose frontier is their leaves.
    pub(super) fn whole_trees(&self) -> usize {
        self.resume.iter().filter(|r| r.is_none()).count()
    }

    /// For tree `row` (a row of the masks): `None` when the masks reach its leaves, else the depth
    /// from which its walk goes on.
    pub(super) fn resume_at(&self, row: u32) -> Option<u32> {
        self.resume[row as usize]
    }

    /// The frontier node each row reached in tree `row` (a row of the masks), as fast-layout slots.
    pub(super) fn frontier(&self, row: u32, masks: &[u32], stride: usize, idx: &mut [u32]) {
        let slots = &self.leaves[row as usize];
        for (i, m) in idx.iter_mut().zip(&masks[row as usize * stride..]) {
            *i = slots[leaf_bit(*m)];
        }
    }

    /// The leaves the first `n` rows reached in tree `row` (a row of the masks), when
    /// [`Self::resume_at`] is `None`.
    pub(super) fn reached<'a>(&'a self, row: u32, masks: &'a [u32], stride: usize, n: usize) -> Reached<'a, T> {
        let row = row as usize;
        Reached::Masks { masks: &masks[row * stride..][..n], slots: &self.leaves[row], values: &self.values[row] }
    }
}

/// The leaves a block's rows reached in one tree.
#[derive(Debug, Clone, Copy)]
pub(super) enum Reached<'a, T> {
    /// Each row's leaf, as a fast-layout slot.
    Slots(&'a [u32]),
    /// Each row's mask, whose lowest set bit numbers its leaf in the tree's tables.
    Masks { masks: &'a [u32], slots: &'a [u32; MAX_LEAVES], values: &'a [T; MAX_LEAVES] },
}

impl<T> Reached<'_, T> {
    /// Calls `f(row in the block, fast-layout slot of its leaf)` for every row.
    #[inline(always)]
    pub(super) fn for_each_slot(self, mut f: impl FnMut(usize, u32)) {
        match self {
            Reached::Slots(idx) => idx.iter().enumerate().for_each(|(r, i)| f(r, *i)),
            Reached::Masks { masks, slots, .. } => {
                masks.iter().enumerate().for_each(|(r, m)| f(r, slots[leaf_bit(*m)]));
            }
        }
    }
}

/// The number of the leaf a mask leaves: its lowest set bit. A reached leaf's bit is never
/// cleared, so a mask is never 0; the AND keeps the index in bounds without a check.
#[inline(always)]
pub(super) fn leaf_bit(mask: u32) -> usize {
    (mask.trailing_zeros() as usize) & (MAX_LEAVES - 1)
}

/// [`BitTrees::masks`], compiled for SSE2 (x86-64's baseline), AVX2 and AVX-512, picked at run time
/// by what the CPU has: the same loop runs in 4, 8 or 16 lanes.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx2+fma+bmi1+bmi2+lzcnt+popcnt",
    "x86_64+avx2+fma+bmi1+bmi2+lzcnt+popcnt",
))]
#[allow(clippy::too_many_arguments)]
fn fill_masks<T: Float>(
    splits: &[Split<T>],
    bounds: &[[u32; 3]],
    features: usize,
    xb: &[T],
    width: usize,
    n: usize,
    masks: &mut [u32],
    stride: usize,
) {
    // The block's values feature by feature (lanes past the block's rows keep what an earlier
    // block left: their masks are never read).
    let mut columns = vec![[T::default(); LANES]; features];
    for first in (0..n).step_by(LANES) {
        let rows = LANES.min(n - first);
        let xs = &xb[first * width..(first + rows) * width];
        for (f, column) in columns.iter_mut().enumerate() {
            for (c, row) in column.iter_mut().zip(xs.chunks_exact(width)) {
                *c = row[f];
            }
        }
        for (tree, &[start, mid, end]) in bounds.iter().enumerate() {
            let mut acc = [u32::MAX; LANES];
            clear::<T, true>(&splits[start as usize..mid as usize], &columns, &mut acc);
            clear::<T, false>(&splits[mid as usize..end as usize], &columns, &mut acc);
            masks[tree * stride + first..][..LANES].copy_from_slice(&acc);
        }
    }
}

/// Clears, for each split, its leaves from the masks of the rows that fail it. `NAN_FAILS`: the
/// split sends NaN to its false branch. The masks are cleared by arithmetic rather than chosen
/// (`if fails { keep } else { MAX }`), which the compiler turned into a gather per split.
#[inline(always)]
fn clear<T: Float, const NAN_FAILS: bool>(splits: &[Split<T>], columns: &[[T; LANES]], acc: &mut [u32; LANES]) {
    for s in splits {
        let column = &columns[s.feature as usize];
        let (t, clear) = (s.threshold, !s.keep);
        // `!(v <= t)` is meant: it is true for NaN.
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        for (m, &v) in acc.iter_mut().zip(column) {
            let fails = if NAN_FAILS { !(v <= t) } else { v > t };
            *m &= !(clear & 0u32.wrapping_sub(u32::from(fails)));
        }
    }
}

/// A tree's frontier left to right (true branches first) as fast-layout slots, and each split
/// above it with the mask of the frontier nodes not under its true branch. The frontier is the
/// tree's leaves down to depth `cut` and its nodes at that depth.
type InOrder = (Vec<u32>, Vec<(u32, u32)>);

/// The deepest level at which a tree's frontier (its leaves above that level and its nodes at it)
/// holds at most 32 nodes: the whole tree when it has at most 32 leaves.
fn cut_depth<T: Float>(nodes: &[FastNode<T>], leaf_of: &[u32], root: u32) -> u32 {
    let is_leaf = |slot: u32| leaf_of[slot as usize] != u32::MAX;
    let (mut level, mut leaves_above, mut depth) = (vec![root], 0, 0);
    loop {
        let splits: Vec<u32> = level.iter().copied().filter(|s| !is_leaf(*s)).collect();
        if splits.is_empty() {
            return depth;
        }
        leaves_above += level.len() - splits.len();
        let next: Vec<u32> =
            splits.iter().flat_map(|s| [nodes[*s as usize].left + 1, nodes[*s as usize].left]).collect();
        if leaves_above + next.len() > MAX_LEAVES {
            return depth;
        }
        (level, depth) = (next, depth + 1);
    }
}

/// A tree's [`InOrder`] numbering down to depth `cut`.
fn in_order<T: Float>(nodes: &[FastNode<T>], leaf_of: &[u32], root: u32, cut: u32) -> InOrder {
    let mut frontier = Vec::new();
    let mut splits = Vec::new();
    // Depth-first, true child first. `Some(first)` marks a split whose true subtree is done.
    let mut stack = vec![(root, 0u32, None::<usize>)];
    while let Some((slot, depth, done)) = stack.pop() {
        if leaf_of[slot as usize] != u32::MAX || depth == cut {
            frontier.push(slot);
            continue;
        }
        let node = &nodes[slot as usize];
        match done {
            None => {
                // Visit the true subtree, then come back to close it and visit the false one.
                stack.push((slot, depth, Some(frontier.len())));
                stack.push((node.left + 1, depth + 1, None));
            }
            Some(first) => {
                let under_true = (first..frontier.len()).fold(0u32, |m, l| m | 1 << l);
                splits.push((slot, !under_true));
                stack.push((node.left, depth + 1, None));
            }
        }
    }
    debug_assert!(frontier.len() <= MAX_LEAVES);
    (frontier, splits)
}
