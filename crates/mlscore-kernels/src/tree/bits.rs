//! The bit-vector walk (QuickScorer: Lucchese et al., SIGIR 2015), for trees of at most 32 or 64
//! leaves (the width of the ensemble's masks) and for the top of larger ones.
//!
//! Number a tree's leaves left to right, the true branch of every split first. A row's leaf is
//! then the first leaf that none of the splits it fails rules out, where a failed split (the row
//! goes to its false branch) rules out every leaf under its true branch. So instead of following
//! each row down each tree, every split is visited once per block of 64 rows: the block's values
//! are gathered feature by feature, and for each tree its 64 masks are held in registers
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
//! A tree of more leaves than a mask has bits is cut at the deepest level where its frontier (the
//! leaves above that level and the nodes at it) still fits: the masks take each row to its
//! frontier node (a random forest's depth-8 trees: the first 5 levels), and the node walk goes on
//! from there.
//!
//! The masks are 32 bits wide, or 64 when most of an ensemble's trees need 33 to 64 leaves
//! (LightGBM's default 63; XGBoost's depth 6): such trees then go by masks alone, where 32 bits
//! left their last level to the node walk. Same invocation, one thread: LightGBM 100 trees 1.27-1.30M
//! -> 1.62-1.75M rows/s, 500 trees +17-27%, XGBoost 500 trees +11-15%, XGBoost 100 trees within
//! noise. Ensembles of smaller trees keep 32 bits: 64 would cost them twice the lanes (3-7%
//! slower).

use super::{CAT_BIT, Cats, FEATURE_MASK, FastNode, Float, NAN_BIT, Tree, WIDE_BITS, WideSet, in_mask};

/// Rows whose masks one pass over the splits updates.
pub(super) const LANES: usize = 64;

/// The most leaves a tree may have to be walked this way (one bit each, in 64-bit masks).
pub(super) const MAX_LEAVES: usize = 64;

/// A mask word: 32 bits, or 64 for ensembles most of whose trees need 33 to 64 leaves.
pub(super) trait Word: Copy + std::fmt::Debug + PartialEq + Send + Sync + 'static {
    const BITS: usize;
    const ONES: Self;
    /// `self & keep` where `b`, else `self`: computed, not chosen (a choice compiled to a gather
    /// per split).
    fn keep_if(self, keep: Self, b: bool) -> Self;
    /// The number of the lowest set bit, kept below [`Word::BITS`].
    fn lowest(self) -> usize;
    /// The low [`Word::BITS`] bits of `v`.
    fn from_u64(v: u64) -> Self;
}

macro_rules! word {
    ($t:ty) => {
        impl Word for $t {
            const BITS: usize = <$t>::BITS as usize;
            const ONES: Self = <$t>::MAX;
            #[inline(always)]
            fn keep_if(self, keep: Self, b: bool) -> Self {
                // All ones where `b`, else zero.
                let fails = <$t>::from(b).wrapping_neg();
                self & !(!keep & fails)
            }
            #[inline(always)]
            fn lowest(self) -> usize {
                (self.trailing_zeros() as usize) & (<Self as Word>::BITS - 1)
            }
            #[inline(always)]
            fn from_u64(v: u64) -> Self {
                // A tree's frontier in these masks has at most BITS nodes: the higher bits of
                // a split's `keep` are all ones and dropped.
                <$t>::try_from(v & u64::from(<$t>::MAX)).unwrap_or(<$t>::MAX)
            }
        }
    };
}
word!(u32);
word!(u64);

/// A split, as the bit-vector walk visits it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Split<T, M> {
    threshold: T,
    feature: u32,
    /// Every bit but those of the leaves under the true branch.
    keep: M,
}

/// The splits of every tree, in masks of one width.
#[derive(Debug, Clone, PartialEq)]
enum Splits<T> {
    W32(Vec<Split<T, u32>>),
    W64(Vec<Split<T, u64>>),
    /// 64-bit masks computed as two 32-bit halves, each tree's splits in two groups (see
    /// [`in_order_halves`]): `bounds` holds two entries a tree, its true subtree's then its
    /// false subtree's.
    Halves(Vec<Split<T, u32>>),
}

/// A buffer of masks, `stride` a tree, of the width a [`BitTrees`] uses.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum MaskBuf {
    W32(Vec<u32>),
    W64(Vec<u64>),
}

/// The splits of the trees walked by bit-vectors, by tree.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct BitTrees<T> {
    /// Tree by tree: first the `x <= t` splits that NaN fails, then those NaN passes, then the
    /// categorical splits (`threshold`: their membership mask) likewise.
    splits: Splits<T>,
    /// Per tree (per half of a tree for [`Splits::Halves`]): where each of its four groups of
    /// splits starts, and where the last ends.
    bounds: Vec<[u32; 5]>,
    /// Number of features the splits read.
    features: usize,
    /// The features categorical splits read.
    cat_features: Vec<usize>,
    /// How the categorical splits hold their sets, and the table of wide ones.
    cats: Cats,
    sets: Vec<WideSet>,
    /// Per tree: the fast-layout slot of each node of its frontier, left to right.
    leaves: Vec<[u32; MAX_LEAVES]>,
    /// Per tree: each frontier leaf's value (its node's `threshold`), left to right.
    values: Vec<[T; MAX_LEAVES]>,
    /// Per tree: `None` when its frontier is its leaves, else the depth of its frontier, from
    /// which the walk goes on node by node.
    resume: Vec<Option<u32>>,
}

impl<T> From<Vec<Split<T, u32>>> for Splits<T> {
    fn from(v: Vec<Split<T, u32>>) -> Self {
        Splits::W32(v)
    }
}

impl<T> From<Vec<Split<T, u64>>> for Splits<T> {
    fn from(v: Vec<Split<T, u64>>) -> Self {
        Splits::W64(v)
    }
}

impl<T: Float> BitTrees<T> {
    /// Collects every tree down to its [`cut_depth`]; `None` when a threshold is NaN. The masks
    /// are 64 bits wide when most trees need 33 to 64 leaves (LightGBM's 63, XGBoost's depth 6),
    /// else 32: wider masks hold such trees whole, and cost the others twice the lanes. 64-bit
    /// masks are computed as two 32-bit halves ([`in_order_halves`]) where every tree fits them.
    pub(super) fn build(
        nodes: &[FastNode<T>],
        leaf_of: &[u32],
        trees: &[Tree],
        features: usize,
        table: CatTable<'_>,
    ) -> Option<Self> {
        if nodes.iter().zip(leaf_of).any(|(n, l)| *l == u32::MAX && n.feature & CAT_BIT == 0 && n.threshold.is_nan()) {
            return None;
        }
        // Trees 64-bit masks hold whole and 32-bit ones do not.
        let wide = trees
            .iter()
            .filter(|t| {
                let (slots, _) = in_order(nodes, leaf_of, t.root, cut_depth(nodes, leaf_of, t.root, 64));
                slots.len() > 32 && all_leaves(&slots, leaf_of)
            })
            .count();
        if wide == 0 || 2 * wide < trees.len() {
            return Self::build_as::<u32>(nodes, leaf_of, trees, features, table, false);
        }
        // 64-bit masks as two 32-bit halves where every tree's frontier fits them (XGBoost's
        // depth-6 trees do; LightGBM's lopsided 63 leaves often do not, and `build_as` gives up
        // at the first such tree): a split then clears bits of one half, at the cost of a
        // 32-bit mask, twice the lanes a vector (XGBoost 100 trees of depth 6, 65,536-row
        // batches, one thread: 3.72M -> 4.67M rows per CPU second).
        Self::build_as::<u32>(nodes, leaf_of, trees, features, table, true)
            .or_else(|| Self::build_as::<u64>(nodes, leaf_of, trees, features, table, false))
    }

    /// [`BitTrees::build`] in masks of `M`, or, where `halves` (with `M` = `u32`), in 64-bit
    /// masks of two halves of `M`.
    fn build_as<M: Word>(
        nodes: &[FastNode<T>],
        leaf_of: &[u32],
        trees: &[Tree],
        features: usize,
        table: CatTable<'_>,
        halves: bool,
    ) -> Option<Self>
    where
        Splits<T>: From<Vec<Split<T, M>>>,
    {
        // Halves are of 32-bit masks.
        let halves = halves && M::BITS == 32;
        let mut splits: Vec<Split<T, M>> = Vec::new();
        let mut bounds = Vec::with_capacity(trees.len());
        let mut leaves = Vec::new();
        let mut values = Vec::new();
        let mut resume = Vec::new();
        for tree in trees {
            let cut = cut_depth(nodes, leaf_of, tree.root, if halves { 64 } else { M::BITS });
            let (table, slots, tree_splits) = if halves {
                in_order_halves(nodes, leaf_of, tree.root, cut)?
            } else {
                let (slots, tree_splits) = in_order(nodes, leaf_of, tree.root, cut);
                (slot_table(&slots), slots, tree_splits)
            };
            resume.push((!all_leaves(&slots, leaf_of)).then_some(cut));
            leaves.push(table);
            values.push(table.map(|slot| nodes[slot as usize].threshold));
            // By half (for `halves`), kind (`x <= t`, categorical) and whether NaN passes.
            let mut groups: [Vec<Split<T, M>>; 8] = Default::default();
            for (slot, keep) in tree_splits {
                let node = &nodes[slot as usize];
                let nan_passes = node.feature & NAN_BIT != 0;
                let cat = node.feature & CAT_BIT != 0;
                let feature = node.feature & FEATURE_MASK;
                if feature as usize >= features {
                    return None;
                }
                // A half's split keeps every bit of the other half.
                let (half, keep) = match (halves, keep >> 32 == u64::from(u32::MAX)) {
                    (false, _) => (0, keep),
                    (true, true) => (0, keep & u64::from(u32::MAX)),
                    (true, false) if keep & u64::from(u32::MAX) == u64::from(u32::MAX) => (1, keep >> 32),
                    (true, false) => return None,
                };
                groups[4 * half + 2 * usize::from(cat) + usize::from(nan_passes)].push(Split {
                    threshold: node.threshold,
                    feature,
                    keep: M::from_u64(keep),
                });
            }
            for half in groups.chunks(4).take(if halves { 2 } else { 1 }) {
                let mut b = [splits.len() as u32; 5];
                for (g, split) in half.iter().enumerate() {
                    splits.extend(split);
                    b[g + 1] = splits.len() as u32;
                }
                bounds.push(b);
            }
        }
        let mut cat_features: Vec<usize> = nodes
            .iter()
            .zip(leaf_of)
            .filter(|(n, l)| **l == u32::MAX && n.feature & CAT_BIT != 0)
            .map(|(n, _)| (n.feature & FEATURE_MASK) as usize)
            .collect();
        cat_features.sort_unstable();
        cat_features.dedup();
        let (cats, sets) = (table.cats, table.sets.to_vec());
        let splits = match splits.into() {
            Splits::W32(s) if halves => Splits::Halves(s),
            s => s,
        };
        Some(Self { splits, bounds, features, cat_features, cats, sets, leaves, values, resume })
    }

    /// A buffer for [`BitTrees::masks`]: `stride` masks a tree.
    pub(super) fn buffer(&self, stride: usize) -> MaskBuf {
        match self.splits {
            Splits::W32(_) => MaskBuf::W32(vec![0; self.trees() * stride]),
            Splits::W64(_) | Splits::Halves(_) => MaskBuf::W64(vec![0; self.trees() * stride]),
        }
    }

    /// The width of the masks, in bits.
    #[cfg(test)]
    pub(super) fn width(&self) -> usize {
        match self.splits {
            Splits::W32(_) => 32,
            Splits::W64(_) | Splits::Halves(_) => 64,
        }
    }

    /// The same trees in masks of the other width, for tests.
    #[cfg(test)]
    pub(super) fn other_width(&self, nodes: &[FastNode<T>], leaf_of: &[u32], trees: &[Tree]) -> Option<Self> {
        match self.splits {
            Splits::W32(_) => Self::build_as::<u64>(nodes, leaf_of, trees, self.features, self.table(), false),
            Splits::W64(_) | Splits::Halves(_) => {
                Self::build_as::<u32>(nodes, leaf_of, trees, self.features, self.table(), false)
            }
        }
    }

    /// The same trees in 64-bit masks of two halves, for tests: `None` where a tree's frontier
    /// does not fit them.
    #[cfg(test)]
    pub(super) fn halved(&self, nodes: &[FastNode<T>], leaf_of: &[u32], trees: &[Tree]) -> Option<Self> {
        Self::build_as::<u32>(nodes, leaf_of, trees, self.features, self.table(), true)
    }

    /// Whether the masks are 64-bit ones computed as two halves.
    #[cfg(test)]
    pub(super) fn is_halved(&self) -> bool {
        matches!(self.splits, Splits::Halves(_))
    }

    /// Number of trees (rows of the masks: one per tree of the ensemble, in order).
    pub(super) fn trees(&self) -> usize {
        self.leaves.len()
    }

    /// Computes the masks of the `n` rows of `block`: tree `k`'s masks are
    /// `masks[k * stride..][..n]`. `stride` is at least `n` rounded up to a multiple of
    /// [`LANES`]; `masks` comes from [`BitTrees::buffer`] (another is replaced by one).
    pub(super) fn masks(&self, block: impl Block<T>, n: usize, masks: &mut MaskBuf, stride: usize) {
        match (&self.splits, &mut *masks) {
            (Splits::W32(s), MaskBuf::W32(m)) => {
                fill_masks(s, &self.bounds, self.cat_sets(), block, n, &mut Whole { masks: m, stride })
            }
            (Splits::W64(s), MaskBuf::W64(m)) => {
                fill_masks(s, &self.bounds, self.cat_sets(), block, n, &mut Whole { masks: m, stride })
            }
            (Splits::Halves(s), MaskBuf::W64(m)) => {
                let mut out = Halved { masks: m, stride, low: [0; LANES] };
                fill_masks(s, &self.bounds, self.cat_sets(), block, n, &mut out)
            }
            _ => {
                *masks = self.buffer(stride);
                self.masks(block, n, masks, stride);
            }
        }
    }

    /// The categorical sets, as [`BitTrees::build`] takes them.
    #[cfg(test)]
    fn table(&self) -> CatTable<'_> {
        CatTable { cats: self.cats, sets: &self.sets }
    }

    /// What [`fill_masks`] needs to know of the categorical splits.
    fn cat_sets(&self) -> CatSets<'_> {
        CatSets { features: self.features, read: &self.cat_features, wide: self.cats == Cats::Wide, sets: &self.sets }
    }

    /// Per tree, its frontier's leaves' values (the nodes' `threshold`s).
    pub(super) fn values(&self) -> &[[T; MAX_LEAVES]] {
        &self.values
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
    pub(super) fn frontier(&self, row: u32, masks: &MaskBuf, stride: usize, idx: &mut [u32]) {
        fn slots_of<M: Word>(slots: &[u32; MAX_LEAVES], masks: &[M], idx: &mut [u32]) {
            for (i, m) in idx.iter_mut().zip(masks) {
                *i = slots[m.lowest()];
            }
        }
        let (slots, at) = (&self.leaves[row as usize], row as usize * stride);
        match masks {
            MaskBuf::W32(m) => slots_of(slots, &m[at..], idx),
            MaskBuf::W64(m) => slots_of(slots, &m[at..], idx),
        }
    }

    /// Tree `row`'s masks in a block's `masks` (from [`Self::masks`], `stride` apart) and the
    /// fast-layout slots of its frontier, which their lowest bits number.
    pub(super) fn frontier_of<'a, M: Word>(
        &'a self,
        row: u32,
        masks: &'a [M],
        stride: usize,
    ) -> (&'a [M], &'a [u32; MAX_LEAVES]) {
        (&masks[row as usize * stride..], &self.leaves[row as usize])
    }

    /// The leaves the first `n` rows reached in tree `row` (a row of the masks), when
    /// [`Self::resume_at`] is `None`.
    pub(super) fn reached<'a>(&'a self, row: u32, masks: &'a MaskBuf, stride: usize, n: usize) -> Reached<'a, T> {
        let row = row as usize;
        let masks = match masks {
            MaskBuf::W32(m) => Masks::W32(&m[row * stride..][..n]),
            MaskBuf::W64(m) => Masks::W64(&m[row * stride..][..n]),
        };
        Reached::Masks { masks, tree: row as u32, slots: &self.leaves[row], values: &self.values[row] }
    }

    /// Per tree, its frontier's leaves' values looked up in a caller's table (one value a leaf of
    /// the [`RawEnsemble`](super::RawEnsemble), by `leaf_of` slot): what [`Masks::add_values`]
    /// adds from, so that a row's value is one load and not three. Frontier nodes that are not
    /// leaves (trees the node walk finishes) get `A::default()`: they are never read.
    pub(super) fn tabled<A: Copy + Default>(&self, leaf_of: &[u32], table: &[A]) -> Vec<[A; MAX_LEAVES]> {
        self.leaves
            .iter()
            .map(|slots| {
                slots.map(|s| leaf_of.get(s as usize).and_then(|l| table.get(*l as usize)).copied().unwrap_or_default())
            })
            .collect()
    }
}

/// Adds each of the first `n` rows' leaf values, tree by tree in order, to its entry of `acc`
/// (`values[t]`: tree `t`'s leaves' values, as [`Masks::add_values`] adds them one tree at a
/// time): eight rows at a time, whose sums stay in registers across the trees instead of being
/// loaded and stored once per tree.
pub(super) fn add_all<A: Copy + std::ops::AddAssign>(
    masks: &MaskBuf,
    stride: usize,
    n: usize,
    values: &[[A; MAX_LEAVES]],
    acc: &mut [A],
) {
    const ROWS: usize = 8;
    fn add<A: Copy + std::ops::AddAssign, M: Word>(
        masks: &[M],
        stride: usize,
        n: usize,
        values: &[[A; MAX_LEAVES]],
        acc: &mut [A],
    ) {
        for (first, acc) in (0..n).step_by(ROWS).zip(acc[..n].chunks_mut(ROWS)) {
            let mut sums: [A; ROWS] = std::array::from_fn(|i| acc[i.min(acc.len() - 1)]);
            for (t, v) in values.iter().enumerate() {
                // Lanes past the block's rows hold masks too (an earlier block's): their sums
                // are dropped.
                let m = &masks[t * stride + first..][..ROWS];
                for (s, m) in sums.iter_mut().zip(m) {
                    *s += v[m.lowest()];
                }
            }
            let k = acc.len();
            acc.copy_from_slice(&sums[..k]);
        }
    }
    match masks {
        MaskBuf::W32(m) => add(m, stride, n, values, acc),
        MaskBuf::W64(m) => add(m, stride, n, values, acc),
    }
}

/// A block's masks in one tree.
#[derive(Debug, Clone, Copy)]
pub(super) enum Masks<'a> {
    W32(&'a [u32]),
    W64(&'a [u64]),
}

impl Masks<'_> {
    /// Adds each row's leaf value (from the tree's `values` table) to its entry of `acc`.
    #[inline(always)]
    pub(super) fn add_values<A: Copy + std::ops::AddAssign>(self, acc: &mut [A], values: &[A; MAX_LEAVES]) {
        fn add<A: Copy + std::ops::AddAssign, M: Word>(acc: &mut [A], masks: &[M], values: &[A; MAX_LEAVES]) {
            for (a, m) in acc.iter_mut().zip(masks) {
                *a += values[m.lowest()];
            }
        }
        match self {
            Masks::W32(m) => add(acc, m, values),
            Masks::W64(m) => add(acc, m, values),
        }
    }

    /// Calls `f(row in the block, number of its leaf in the tree's tables)` for every row.
    #[inline(always)]
    pub(super) fn for_each_leaf(self, mut f: impl FnMut(usize, usize)) {
        match self {
            Masks::W32(m) => m.iter().enumerate().for_each(|(r, m)| f(r, m.lowest())),
            Masks::W64(m) => m.iter().enumerate().for_each(|(r, m)| f(r, m.lowest())),
        }
    }
}

/// The leaves a block's rows reached in one tree, or in three consecutive ones.
#[derive(Debug, Clone, Copy)]
pub(super) enum Reached<'a, T> {
    /// Each row's leaf, as a fast-layout slot.
    Slots(&'a [u32]),
    /// Each row's leaves in three consecutive trees, as fast-layout slots: a visitor adds a
    /// row's three in tree order, so its sums round as three visits would have them round.
    Three([&'a [u32]; 3]),
    /// Each row's mask, whose lowest set bit numbers its leaf in the tree's tables.
    Masks { masks: Masks<'a>, tree: u32, slots: &'a [u32; MAX_LEAVES], values: &'a [T; MAX_LEAVES] },
}

impl<T> Reached<'_, T> {
    /// Calls `f(row in the block, fast-layout slot of its leaf)` for every row.
    #[inline(always)]
    pub(super) fn for_each_slot(self, mut f: impl FnMut(usize, u32)) {
        match self {
            Reached::Slots(idx) => idx.iter().enumerate().for_each(|(r, i)| f(r, *i)),
            // Row by row, each row's trees in order: a visitor keeps per-row state only.
            Reached::Three([a, b, c]) => a.iter().zip(b).zip(c).enumerate().for_each(|(r, ((i, j), k))| {
                f(r, *i);
                f(r, *j);
                f(r, *k);
            }),
            Reached::Masks { masks, slots, .. } => masks.for_each_leaf(|r, l| f(r, slots[l])),
        }
    }
}

/// A block of rows, as the masks read it: one feature of up to [`LANES`] rows at a time.
pub(super) trait Block<T>: Copy {
    /// Writes feature `f` of the block's rows `first..first + n` to `out[..n]` (`n <= LANES`).
    fn feature(self, f: usize, first: usize, n: usize, out: &mut [T; LANES]);
}

/// Rows of `T`, row-major, `width` values a row.
#[derive(Debug, Clone, Copy)]
pub(super) struct RowBlock<'a, T> {
    pub x: &'a [T],
    pub width: usize,
}

impl<T: Copy> Block<T> for RowBlock<'_, T> {
    #[inline(always)]
    fn feature(self, f: usize, first: usize, n: usize, out: &mut [T; LANES]) {
        let rows = self.x[first * self.width..].chunks_exact(self.width).take(n);
        for (c, row) in out.iter_mut().zip(rows) {
            *c = row[f];
        }
    }
}

/// Rows `start..` of float64 columns, one a feature, read as `T`: each feature's values are
/// contiguous, so they load and convert a vector at a time.
#[derive(Debug, Clone, Copy)]
pub(super) struct ColumnBlock<'a> {
    pub cols: &'a [&'a [f64]],
    pub start: usize,
}

impl<T: Float> Block<T> for ColumnBlock<'_> {
    #[inline(always)]
    fn feature(self, f: usize, first: usize, n: usize, out: &mut [T; LANES]) {
        let values = &self.cols[f][self.start + first..][..n];
        for (c, v) in out.iter_mut().zip(values) {
            *c = T::from_f64(*v);
        }
    }
}

/// [`BitTrees::masks`], compiled for SSE2 (x86-64's baseline), AVX2 and AVX-512, picked at run time
/// by what the CPU has: the same loop runs in 4, 8 or 16 lanes.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx2+fma+bmi1+bmi2+lzcnt+popcnt",
    "x86_64+avx2+fma+bmi1+bmi2+lzcnt+popcnt",
))]
fn fill_masks<T: Float, M: Word, B: Block<T>, O: MaskOut<M>>(
    splits: &[Split<T, M>],
    bounds: &[[u32; 5]],
    cats: CatSets<'_>,
    block: B,
    n: usize,
    out: &mut O,
) {
    // The block's values feature by feature (lanes past the block's rows keep what an earlier
    // block left: their masks are never read), and those categorical splits read as bit
    // numbers, once for all their splits.
    let mut columns = vec![[T::default(); LANES]; cats.features];
    let mut codes = vec![[0u64; LANES]; if cats.read.is_empty() { 0 } else { cats.features }];
    // For wide sets, each category as its bit in each of a set's four words (zero in the three
    // that do not hold it): a split's test is then four ANDs, with no word to pick per row.
    let mut words = vec![[[0u64; LANES]; 4]; if cats.wide { cats.features } else { 0 }];
    let limit = if cats.wide { WIDE_BITS } else { T::MASK_BITS };
    for first in (0..n).step_by(LANES) {
        let rows = LANES.min(n - first);
        for (f, column) in columns.iter_mut().enumerate() {
            block.feature(f, first, rows, column);
        }
        for &f in cats.read {
            for (c, v) in codes[f].iter_mut().zip(&columns[f]) {
                *c = v.category(limit);
            }
            if let Some(words) = words.get_mut(f) {
                for (k, word) in words.iter_mut().enumerate() {
                    for (w, c) in word.iter_mut().zip(&codes[f]) {
                        *w = if c >> 6 == k as u64 { 1 << (c & 63) } else { 0 };
                    }
                }
            }
        }
        for (tree, &[start, mid, cat, cat_mid, end]) in bounds.iter().enumerate() {
            let mut acc = [M::ONES; LANES];
            clear::<T, M, true>(&splits[start as usize..mid as usize], &columns, &mut acc);
            clear::<T, M, false>(&splits[mid as usize..cat as usize], &columns, &mut acc);
            if cat < end {
                let (nan_fails, nan_passes) =
                    (&splits[cat as usize..cat_mid as usize], &splits[cat_mid as usize..end as usize]);
                if cats.wide {
                    clear_wide::<T, M, true>(nan_fails, &columns, &words, cats.sets, &mut acc);
                    clear_wide::<T, M, false>(nan_passes, &columns, &words, cats.sets, &mut acc);
                } else {
                    clear_cat::<T, M, true>(nan_fails, &columns, &codes, &mut acc);
                    clear_cat::<T, M, false>(nan_passes, &columns, &codes, &mut acc);
                }
            }
            out.put(tree, first, &acc);
        }
    }
}

/// Where [`fill_masks`] writes the masks of each row of `bounds` for rows `first..first + LANES`.
trait MaskOut<M> {
    fn put(&mut self, row: usize, first: usize, acc: &[M; LANES]);
}

/// A tree's masks at `masks[tree * stride..]`.
struct Whole<'a, M> {
    masks: &'a mut [M],
    stride: usize,
}

impl<M: Word> MaskOut<M> for Whole<'_, M> {
    #[inline(always)]
    fn put(&mut self, tree: usize, first: usize, acc: &[M; LANES]) {
        self.masks[tree * self.stride + first..][..LANES].copy_from_slice(acc);
    }
}

/// [`Splits::Halves`]: rows `2t` and `2t + 1` of the bounds are tree `t`'s low and high halves,
/// written as one 64-bit mask at `masks[t * stride..]`.
struct Halved<'a> {
    masks: &'a mut [u64],
    stride: usize,
    low: [u32; LANES],
}

impl MaskOut<u32> for Halved<'_> {
    #[inline(always)]
    fn put(&mut self, row: usize, first: usize, acc: &[u32; LANES]) {
        if row.is_multiple_of(2) {
            self.low = *acc;
        } else {
            let out = &mut self.masks[row / 2 * self.stride + first..][..LANES];
            for ((o, lo), hi) in out.iter_mut().zip(&self.low).zip(acc) {
                *o = u64::from(*lo) | (u64::from(*hi) << 32);
            }
        }
    }
}

/// Clears, for each split, its leaves from the masks of the rows that fail it. `NAN_FAILS`: the
/// split sends NaN to its false branch.
#[inline(always)]
fn clear<T: Float, M: Word, const NAN_FAILS: bool>(
    splits: &[Split<T, M>],
    columns: &[[T; LANES]],
    acc: &mut [M; LANES],
) {
    for s in splits {
        let column = &columns[s.feature as usize];
        let (t, keep) = (s.threshold, s.keep);
        // `!(v <= t)` is meant: it is true for NaN.
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        for (m, &v) in acc.iter_mut().zip(column) {
            let fails = if NAN_FAILS { !(v <= t) } else { v > t };
            *m = m.keep_if(keep, fails);
        }
    }
}

/// [`clear`] for categorical splits whose sets are masks in their `threshold`, which a row
/// fails when its value, as a category (`codes`), is not in the set. NaN is never a member.
#[inline(always)]
fn clear_cat<T: Float, M: Word, const NAN_FAILS: bool>(
    splits: &[Split<T, M>],
    columns: &[[T; LANES]],
    codes: &[[u64; LANES]],
    acc: &mut [M; LANES],
) {
    for s in splits {
        let (column, code) = (&columns[s.feature as usize], &codes[s.feature as usize]);
        let (set, keep) = (s.threshold.mask_bits(), s.keep);
        for ((m, &v), &c) in acc.iter_mut().zip(column).zip(code) {
            let out = !in_mask(set, c);
            let fails = if NAN_FAILS { out } else { out & !v.is_nan() };
            *m = m.keep_if(keep, fails);
        }
    }
}

/// [`clear_cat`] for sets of [`WideSet`]s, numbered by the splits' `threshold`; `words`: each
/// row's category as its bit in each of a set's four words. (Picking the word by the category,
/// with a gather or by comparisons, was slower.)
#[inline(always)]
fn clear_wide<T: Float, M: Word, const NAN_FAILS: bool>(
    splits: &[Split<T, M>],
    columns: &[[T; LANES]],
    words: &[[[u64; LANES]; 4]],
    sets: &[WideSet],
    acc: &mut [M; LANES],
) {
    for s in splits {
        let (column, [w0, w1, w2, w3]) = (&columns[s.feature as usize], &words[s.feature as usize]);
        let set = sets.get(s.threshold.mask_bits() as usize).copied().unwrap_or([0; 8]);
        let keep = s.keep;
        for (r, (m, &v)) in acc.iter_mut().zip(column).enumerate() {
            let hit = (set[0] & w0[r]) | (set[1] & w1[r]) | (set[2] & w2[r]) | (set[3] & w3[r]);
            let out = hit == 0;
            let fails = if NAN_FAILS { out } else { out & !v.is_nan() };
            *m = m.keep_if(keep, fails);
        }
    }
}

/// How an ensemble's categorical splits hold their sets, and its table of wide ones, as
/// [`BitTrees::build`] takes them.
#[derive(Debug, Clone, Copy)]
pub(super) struct CatTable<'a> {
    pub cats: Cats,
    pub sets: &'a [WideSet],
}

/// The categorical splits, as [`fill_masks`] reads them.
#[derive(Debug, Clone, Copy)]
struct CatSets<'a> {
    /// Number of features the splits read.
    features: usize,
    /// The features categorical splits read.
    read: &'a [usize],
    /// Whether the sets are [`WideSet`]s of `sets` (else masks in the splits).
    wide: bool,
    sets: &'a [WideSet],
}

/// Whether a frontier (fast-layout slots) is all leaves: the masks then reach a tree's leaves.
fn all_leaves(slots: &[u32], leaf_of: &[u32]) -> bool {
    slots.iter().all(|s| leaf_of[*s as usize] != u32::MAX)
}

/// A tree's frontier left to right (true branches first) as fast-layout slots, and each split
/// above it with the mask of the frontier nodes not under its true branch. The frontier is the
/// tree's leaves down to depth `cut` and its nodes at that depth.
type InOrder = (Vec<u32>, Vec<(u32, u64)>);

/// The deepest level at which a tree's frontier (its leaves above that level and its nodes at it)
/// holds at most `bits` nodes: the whole tree when it has at most `bits` leaves.
fn cut_depth<T: Float>(nodes: &[FastNode<T>], leaf_of: &[u32], root: u32, bits: usize) -> u32 {
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
        if leaves_above + next.len() > bits.min(MAX_LEAVES) {
            return depth;
        }
        (level, depth) = (next, depth + 1);
    }
}

/// A frontier's slots by bit, the bits past it repeating the first.
fn slot_table(slots: &[u32]) -> [u32; MAX_LEAVES] {
    let mut table = [slots[0]; MAX_LEAVES];
    table[..slots.len()].copy_from_slice(slots);
    table
}

/// What [`in_order_halves`] returns: the slot at each of a mask's 64 bits, the frontier's
/// nodes, and the splits with their `keep` masks.
type Halves = ([u32; MAX_LEAVES], Vec<u32>, Vec<(u32, u64)>);

/// A tree's frontier down to depth `cut` numbered by halves: its root's true subtree's nodes
/// (in [`in_order`]) at bits 0..32, its false subtree's at bits 32..64, so that each split's
/// `keep` clears bits of one half only (the root's, all of the low half). Returns the slot at
/// each of the 64 bits (bits no node holds repeat the first), the frontier's nodes and the
/// splits; `None` when a subtree's frontier has more than 32 nodes.
fn in_order_halves<T: Float>(nodes: &[FastNode<T>], leaf_of: &[u32], root: u32, cut: u32) -> Option<Halves> {
    const LOW: u64 = u32::MAX as u64;
    if leaf_of[root as usize] != u32::MAX || cut == 0 {
        let (slots, splits) = in_order(nodes, leaf_of, root, cut);
        return Some((slot_table(&slots), slots, splits));
    }
    let left = nodes[root as usize].left;
    let (yes, yes_splits) = in_order(nodes, leaf_of, left + 1, cut - 1);
    let (no, no_splits) = in_order(nodes, leaf_of, left, cut - 1);
    if yes.len() > 32 || no.len() > 32 {
        return None;
    }
    let mut table = slot_table(&yes);
    table[32..32 + no.len()].copy_from_slice(&no);
    let mut splits = vec![(root, !LOW)];
    splits.extend(yes_splits.iter().map(|&(s, keep)| (s, keep | !LOW)));
    splits.extend(no_splits.iter().map(|&(s, keep)| (s, (keep << 32) | LOW)));
    Some((table, [yes, no].concat(), splits))
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
                let under_true = (first..frontier.len()).fold(0u64, |m, l| m | 1 << l);
                splits.push((slot, !under_true));
                stack.push((node.left, depth + 1, None));
            }
        }
    }
    debug_assert!(frontier.len() <= MAX_LEAVES);
    (frontier, splits)
}
