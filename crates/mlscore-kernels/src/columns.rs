//! Float64 column arithmetic as numpy does it, value by value (scikit-learn's scalers, linear
//! models and MLP layers): each elementwise operation rounded on its own, never fused, and the
//! MLP layers' sums in the order and with the rounding of numpy's matrix product ([`dense`]),
//! so the results are numpy's bits. The loops are compiled for SSE2 (x86-64's baseline) and for AVX2
//! and AVX-512, picked at run time once per call: the same arithmetic in 2, 4 or 8 lanes.
//!
//! ```
//! use mlscore_kernels::columns::{ColumnOp, apply_finite, axpy, first_nan};
//! // (x - 1) / 2, as StandardScaler computes it.
//! let mut x = vec![1.0, 3.0, 5.0];
//! assert_eq!(apply_finite(&mut x, &[ColumnOp::Sub(1.0), ColumnOp::Div(2.0)]), None);
//! assert_eq!(x, vec![0.0, 1.0, 2.0]);
//! // acc += x * 0.5
//! let mut acc = vec![1.0; 3];
//! axpy(&mut acc, &x, 0.5);
//! assert_eq!(acc, vec![1.0, 1.5, 2.0]);
//! assert_eq!(first_nan(&[1.0, f64::NAN]), Some(1));
//! ```

/// One elementwise step with a constant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ColumnOp {
    /// `x - c`
    Sub(f64),
    /// `x / c`
    Div(f64),
    /// `x * c`
    Mul(f64),
    /// `x + c`
    Add(f64),
    /// `x` clamped to `[lo, hi]`, as numpy's `clip` does it: `min(max(x, lo), hi)`, NaN staying
    /// NaN (and no panic when `lo > hi`: every value is then `hi`).
    Clamp(f64, f64),
}

/// numpy's `clip(v, lo, hi)` for `lo <= hi`; never panics.
#[inline(always)]
fn clip(v: f64, lo: f64, hi: f64) -> f64 {
    let v = if v < lo { lo } else { v };
    if v > hi { hi } else { v }
}

/// The ops on one block, in order (inlined into each compiled version of its callers).
#[inline(always)]
fn apply_block(block: &mut [f64], ops: &[ColumnOp]) {
    for op in ops {
        match *op {
            ColumnOp::Sub(c) => block.iter_mut().for_each(|v| *v -= c),
            ColumnOp::Div(c) => block.iter_mut().for_each(|v| *v /= c),
            ColumnOp::Mul(c) => block.iter_mut().for_each(|v| *v *= c),
            ColumnOp::Add(c) => block.iter_mut().for_each(|v| *v += c),
            ColumnOp::Clamp(lo, hi) => block.iter_mut().for_each(|v| *v = clip(*v, lo, hi)),
        }
    }
}

/// Values a block of [`apply_finite`] and [`apply_copy_finite`]: 4 KB, which stays in L1.
const OPS_BLOCK: usize = 512;

/// Whether `v` is an infinity (either sign), as one compare that vectorises.
#[inline(always)]
fn infinite(v: f64) -> bool {
    v.abs() == f64::INFINITY
}

/// The index of a block's first infinity: reduced without a branch per value, searched only
/// when there is one (inlined into each compiled version of its callers).
#[inline(always)]
fn first_infinite_in(block: &[f64]) -> Option<usize> {
    if block.iter().fold(false, |a, v| a | infinite(*v)) { block.iter().position(|v| infinite(*v)) } else { None }
}

/// Applies `ops` in order to every value of `x`, in one pass over blocks that stay in L1 (each
/// op rounded on its own, as numpy's separate passes round them), refusing infinities as
/// scikit-learn's scalers do (`ensure_all_finite="allow-nan"`): each block is scanned while it
/// is in L1, just before its ops, not in a pass of its own over the column (that pass cost a
/// scaler + logistic pipeline 20% of its rows/s). Returns the index of the first infinity, if
/// any; the blocks before its block are then transformed, the others left as they were.
///
/// ```
/// use mlscore_kernels::columns::{apply_finite, ColumnOp};
/// let mut x = vec![1.0, 3.0];
/// assert_eq!(apply_finite(&mut x, &[ColumnOp::Sub(1.0), ColumnOp::Div(2.0)]), None);
/// assert_eq!(x, [0.0, 1.0]);
/// assert_eq!(apply_finite(&mut [0.0, f64::NAN, f64::NEG_INFINITY], &[ColumnOp::Add(1.0)]), Some(2));
/// ```
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx2+fma+bmi1+bmi2+lzcnt+popcnt",
    "x86_64+avx2+fma+bmi1+bmi2+lzcnt+popcnt",
))]
pub fn apply_finite(x: &mut [f64], ops: &[ColumnOp]) -> Option<usize> {
    for (b, block) in x.chunks_mut(OPS_BLOCK).enumerate() {
        if let Some(i) = first_infinite_in(block) {
            return Some(b * OPS_BLOCK + i);
        }
        apply_block(block, ops);
    }
    None
}

/// [`apply_finite`] to a copy of `x`: the same values, in one pass over `x` (each block is
/// copied, then transformed while it is in cache), or the index of the first infinity.
///
/// ```
/// use mlscore_kernels::columns::{apply_copy_finite, ColumnOp};
/// assert_eq!(apply_copy_finite(&[1.0, 3.0], &[ColumnOp::Mul(2.0)]), Ok(vec![2.0, 6.0]));
/// assert_eq!(apply_copy_finite(&[1.0, f64::INFINITY], &[ColumnOp::Mul(2.0)]), Err(1));
/// ```
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx2+fma+bmi1+bmi2+lzcnt+popcnt",
    "x86_64+avx2+fma+bmi1+bmi2+lzcnt+popcnt",
))]
pub fn apply_copy_finite(x: &[f64], ops: &[ColumnOp]) -> Result<Vec<f64>, usize> {
    let mut out = Vec::with_capacity(x.len());
    for (b, block) in x.chunks(OPS_BLOCK).enumerate() {
        if let Some(i) = first_infinite_in(block) {
            return Err(b * OPS_BLOCK + i);
        }
        let start = out.len();
        // The first op writes the copy (one pass over the source, not a copy and then a pass).
        let Some((first, rest)) = ops.split_first() else {
            out.extend_from_slice(block);
            continue;
        };
        match *first {
            ColumnOp::Sub(c) => out.extend(block.iter().map(|v| v - c)),
            ColumnOp::Div(c) => out.extend(block.iter().map(|v| v / c)),
            ColumnOp::Mul(c) => out.extend(block.iter().map(|v| v * c)),
            ColumnOp::Add(c) => out.extend(block.iter().map(|v| v + c)),
            ColumnOp::Clamp(lo, hi) => out.extend(block.iter().map(|v| clip(*v, lo, hi))),
        }
        apply_block(&mut out[start..], rest);
    }
    Ok(out)
}

/// `acc[i] += x[i] * w` (a multiply, then an add: two roundings, as numpy's).
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx2+fma+bmi1+bmi2+lzcnt+popcnt",
    "x86_64+avx2+fma+bmi1+bmi2+lzcnt+popcnt",
))]
pub fn axpy(acc: &mut [f64], x: &[f64], w: f64) {
    acc.iter_mut().zip(x).for_each(|(a, x)| *a += x * w);
}

/// A dense layer over row-major inputs: for each of `rows` rows of `x` (`n_in` values each),
/// `y = Σ_i x_i · w[i] + bias`, where `w` is row-major `(n_in, n_out)` and `bias` has `n_out`
/// values, summed as numpy's matrix product sums it through OpenBLAS (scikit-learn's MLP layers
/// and linear models), then the bias added. Returns `rows * n_out` values, row-major (rows that
/// `x` does not hold, and inputs past `w`'s rows, count as zeros).
///
/// On a CPU with fused multiply-adds ([`fused_multiply_add`]), OpenBLAS's matrix-matrix kernel
/// adds each product to its sum in input order with one rounding (a fused multiply-add, from
/// 0), and so does this; a layer of one output is a matrix-vector product, which OpenBLAS sums
/// in four lanes (input `i` into lane `i % 4`, fused), adds as `(l0 + l2) + (l1 + l3)`, then
/// fuses the last `n_in % 4` products onto that one by one: this sums it so too. Without fused
/// multiply-adds, each product is rounded, then added, in input order. (numpy multiplies a
/// single row, or inputs past 2,048, in other orders: those sums may differ in their last
/// bits.)
pub fn dense(x: &[f64], rows: usize, n_in: usize, w: &[f64], bias: &[f64]) -> Vec<f64> {
    dense_then(x, rows, n_in, w, bias, false)
}

/// [`dense`], then each output `max(y, 0)` as numpy's `maximum(y, 0)` takes it (NaN and -0.0
/// stay), in the same pass as the bias: a ReLU layer.
///
/// ```
/// use mlscore_kernels::columns::dense_relu;
/// // One row, two inputs, two outputs: [1, 2] times [[1, -1], [1, -1]], plus [0, 0.5].
/// assert_eq!(dense_relu(&[1.0, 2.0], 1, 2, &[1.0, -1.0, 1.0, -1.0], &[0.0, 0.5]), vec![3.0, 0.0]);
/// ```
pub fn dense_relu(x: &[f64], rows: usize, n_in: usize, w: &[f64], bias: &[f64]) -> Vec<f64> {
    dense_then(x, rows, n_in, w, bias, true)
}

/// Whether [`dense`] sums with fused multiply-adds on this CPU (as OpenBLAS does where the CPU
/// has them): x86-64 with AVX2 and FMA, and AArch64.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx2+fma+bmi1+bmi2+lzcnt+popcnt",
    "x86_64+avx2+fma+bmi1+bmi2+lzcnt+popcnt",
))]
pub fn fused_multiply_add() -> bool {
    multiversion::target::target_cfg_f!(target_feature = "fma") || cfg!(target_arch = "aarch64")
}

fn dense_then(x: &[f64], rows: usize, n_in: usize, w: &[f64], bias: &[f64], relu: bool) -> Vec<f64> {
    let n_out = bias.len();
    // Written by appending, so that no pass clears the whole batch's outputs first (8% of an
    // MLP's samples in perf, zeroing 64 outputs a row; the appends' copies are 3-4%).
    let mut y = Vec::with_capacity(rows * n_out);
    if n_in > 0 && n_out > 0 {
        dense_into(&x[..x.len().min(rows * n_in)], n_in, w, bias, relu, &mut y);
    }
    y.resize(rows * n_out, 0.0);
    y
}

/// numpy's `maximum(v, 0)`: NaN and -0.0 stay.
#[inline(always)]
fn relu_of(v: f64) -> f64 {
    if v < 0.0 { 0.0 } else { v }
}

/// Adds the bias to a row's outputs, then takes the ReLU if asked.
#[inline(always)]
fn add_bias(yr: &mut [f64], bias: &[f64], relu: bool) {
    if relu {
        yr.iter_mut().zip(bias).for_each(|(y, b)| *y = relu_of(*y + b));
    } else {
        yr.iter_mut().zip(bias).for_each(|(y, b)| *y += b);
    }
}

/// `acc + x * w`: fused (one rounding) or not (two), as the sum being matched does it.
#[inline(always)]
fn madd<const FUSED: bool>(acc: f64, x: f64, w: f64) -> f64 {
    if FUSED { x.mul_add(w, acc) } else { acc + x * w }
}

#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx2+fma+bmi1+bmi2+lzcnt+popcnt",
    "x86_64+avx2+fma+bmi1+bmi2+lzcnt+popcnt",
))]
fn dense_into(x: &[f64], n_in: usize, w: &[f64], bias: &[f64], relu: bool, y: &mut Vec<f64>) {
    // Tiles of 32 and 16 outputs, four rows at a time, hold 128 and 64 sums: in AVX-512's 32
    // registers of 8, they fit; in AVX2's 16 of 4 they spilled to the stack every input (the
    // benchmark's MLP, AMD EPYC Milan, one thread: 0.83-0.91M -> 1.10-1.31M rows/s, tiles of 8
    // alone). The sums are the same either way: only which outputs go together changes.
    // AArch64's 32 registers of 2 take tiles of 8 as well (not measured there).
    let fused = multiversion::target::target_cfg_f!(target_feature = "fma") || cfg!(target_arch = "aarch64");
    let wide = multiversion::target::target_cfg_f!(target_feature = "avx512f");
    match (fused, wide) {
        (true, true) => dense_layer::<true, true>(x, n_in, w, bias, relu, y),
        (true, false) => dense_layer::<true, false>(x, n_in, w, bias, relu, y),
        (false, _) => dense_layer::<false, false>(x, n_in, w, bias, relu, y),
    }
}

#[inline(always)]
fn dense_layer<const FUSED: bool, const WIDE: bool>(
    x: &[f64],
    n_in: usize,
    w: &[f64],
    bias: &[f64],
    relu: bool,
    y: &mut Vec<f64>,
) {
    let n_out = bias.len();
    // The inputs that have weights (the others count as zeros).
    let n_w = n_in.min(w.len() / n_out);
    // Four rows at a time: each output's sum is a chain of dependent adds, one per input, and
    // one row's 16 outputs are two such chains in registers, so a row waited on the adders'
    // latency; four rows are eight chains, and share each load of the weights. The rows past
    // the last four go one at a time. Each group's outputs are written to a buffer that stays
    // in L1, then appended.
    let mut buf = vec![0.0; 4 * n_out];
    let quads = x.chunks_exact(4 * n_in);
    let done = quads.len() * 4;
    for xq in quads {
        // The rows as a literal array (built by `array::from_fn`, a call, the array was stored
        // in pieces and loaded whole: a store-forwarding stall per group, a sixth of the time).
        let xs = [&xq[..n_w], &xq[n_in..][..n_w], &xq[2 * n_in..][..n_w], &xq[3 * n_in..][..n_w]];
        dense_rows::<4, FUSED, WIDE>(xs, w, n_out, &mut buf);
        for yr in buf.chunks_exact_mut(n_out) {
            add_bias(yr, bias, relu);
        }
        y.extend_from_slice(&buf);
    }
    let one = &mut buf[..n_out];
    for xr in x.chunks_exact(n_in).skip(done) {
        dense_rows::<1, FUSED, WIDE>([&xr[..n_w]], w, n_out, one);
        add_bias(one, bias, relu);
        y.extend_from_slice(one);
    }
}

/// Writes the outputs of `R` rows (`xs`: their inputs that have weights; `ys`: `n_out` outputs
/// a row, row after row): 32, 16, then 8 at a time where `WIDE` (AVX-512), else 8 at a time,
/// their sums held in registers across the inputs; the rest one by one. Each output's sum is the
/// same in every case: from 0, input by input (a single output, fused: in OpenBLAS's four lanes,
/// see [`dense`]).
#[inline(always)]
fn dense_rows<const R: usize, const FUSED: bool, const WIDE: bool>(
    xs: [&[f64]; R],
    w: &[f64],
    n_out: usize,
    ys: &mut [f64],
) {
    if FUSED && n_out == 1 {
        for (xr, y) in xs.iter().zip(ys.iter_mut()) {
            *y = four_lane_dot(xr, w);
        }
        return;
    }
    let mut o = 0;
    if WIDE {
        o = dense_tiles::<32, R, FUSED>(xs, w, n_out, o, ys);
        o = dense_tiles::<16, R, FUSED>(xs, w, n_out, o, ys);
    }
    o = dense_tiles::<8, R, FUSED>(xs, w, n_out, o, ys);
    // The outputs past the tiles, one at a time, each with a chain of adds per row: for four
    // rows, four chains.
    for out in o..n_out {
        let mut acc = [0.0f64; R];
        for i in 0..xs[0].len() {
            let wi = w[i * n_out + out];
            for (a, xr) in acc.iter_mut().zip(&xs) {
                *a = madd::<FUSED>(*a, xr[i], wi);
            }
        }
        for (r, a) in acc.iter().enumerate() {
            ys[r * n_out + out] = *a;
        }
    }
}

/// `Σ x_i · w_i` as OpenBLAS's matrix-vector kernel sums it with fused multiply-adds: four
/// lanes over the inputs up to the last multiple of four, added `(l0 + l2) + (l1 + l3)`, then
/// the remaining products fused onto it in order. `w` holds at least `x.len()` values.
#[inline(always)]
fn four_lane_dot(x: &[f64], w: &[f64]) -> f64 {
    let mut lanes = [0.0f64; 4];
    let (xq, xt) = x.split_at(x.len() & !3);
    for (xs, ws) in xq.chunks_exact(4).zip(w.chunks_exact(4)) {
        for l in 0..4 {
            lanes[l] = xs[l].mul_add(ws[l], lanes[l]);
        }
    }
    let mut sum = (lanes[0] + lanes[2]) + (lanes[1] + lanes[3]);
    for (xi, wi) in xt.iter().zip(&w[xq.len()..]) {
        sum = xi.mul_add(*wi, sum);
    }
    sum
}

/// Writes outputs `o..` of `R` rows, `T` at a time while `T` remain; returns the first not
/// written.
#[inline(always)]
fn dense_tiles<const T: usize, const R: usize, const FUSED: bool>(
    xs: [&[f64]; R],
    w: &[f64],
    n_out: usize,
    mut o: usize,
    ys: &mut [f64],
) -> usize {
    // Every row as long as the first, so that indexing them by input needs no bounds check.
    let n_w = xs[0].len();
    let xs = xs.map(|x| &x[..n_w]);
    while o + T <= n_out {
        let mut acc = [[0.0f64; T]; R];
        for i in 0..n_w {
            let wt = &w[i * n_out + o..][..T];
            for (acc, xr) in acc.iter_mut().zip(&xs) {
                let xi = xr[i];
                for k in 0..T {
                    acc[k] = madd::<FUSED>(acc[k], xi, wt[k]);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            ys[r * n_out + o..][..T].copy_from_slice(acc);
        }
        o += T;
    }
    o
}

/// The index of the first NaN of `x`, if any: `x` is reduced without a branch per value, and
/// searched only when it holds a NaN.
pub fn first_nan(x: &[f64]) -> Option<usize> {
    if has_nan(x) { x.iter().position(|v| v.is_nan()) } else { None }
}

/// The index of the first infinity of `x` (either sign), if any: what scikit-learn's
/// `ensure_all_finite="allow-nan"` refuses. Reduced without a branch per value, searched only
/// when there is one.
///
/// ```
/// use mlscore_kernels::columns::first_infinite;
/// assert_eq!(first_infinite(&[1.0, f64::NAN, f64::MAX]), None);
/// assert_eq!(first_infinite(&[0.0, 2.0, f64::NEG_INFINITY, f64::INFINITY]), Some(2));
/// ```
pub fn first_infinite(x: &[f64]) -> Option<usize> {
    if has_infinite(x) { x.iter().position(|v| infinite(*v)) } else { None }
}

/// The index of the first NaN or infinity of `x`, if any: what scikit-learn's default input
/// validation (`ensure_all_finite=True`) refuses.
///
/// ```
/// use mlscore_kernels::columns::first_non_finite;
/// assert_eq!(first_non_finite(&[1.0, f64::MAX, -0.0]), None);
/// assert_eq!(first_non_finite(&[0.0, f64::INFINITY, f64::NAN]), Some(1));
/// assert_eq!(first_non_finite(&[0.0, f64::NAN]), Some(1));
/// ```
pub fn first_non_finite(x: &[f64]) -> Option<usize> {
    if has_non_finite(x) { x.iter().position(|v| !v.is_finite()) } else { None }
}

/// The index of the first value of `x` that float32 cannot hold (an infinity, or a finite value
/// that rounds to one), if any: scikit-learn refuses such inputs to the models that read
/// float32 ("Input X contains infinity or a value too large for dtype('float32')"). Reduced
/// without a branch per value, searched only when there is one.
///
/// ```
/// use mlscore_kernels::columns::first_beyond_f32;
/// assert_eq!(first_beyond_f32(&[1.0, f64::NAN, f64::from(f32::MAX)]), None);
/// assert_eq!(first_beyond_f32(&[0.0, -1e39, 1e300]), Some(1));
/// assert_eq!(first_beyond_f32(&[0.0, f64::INFINITY]), Some(1));
/// ```
pub fn first_beyond_f32(x: &[f64]) -> Option<usize> {
    if has_beyond_f32(x) { x.iter().position(|v| beyond_f32(*v)) } else { None }
}

/// The smallest magnitude that rounds to a float32 infinity: halfway from `f32::MAX` to 2^128,
/// where round-to-nearest-even goes up (`f32::MAX`'s significand is odd).
const F32_OVERFLOW: f64 = 340_282_356_779_733_661_637_539_395_458_142_568_448.0;

/// Whether `v` is an infinity or rounds to one as float32: one compare of `|v|` (false for
/// NaN), which vectorises where the conversion and its tests did not (one thread, 1.8M values:
/// 0.66 -> 0.53 ms).
#[inline(always)]
fn beyond_f32(v: f64) -> bool {
    v.abs() >= F32_OVERFLOW
}

#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx2+fma+bmi1+bmi2+lzcnt+popcnt",
    "x86_64+avx2+fma+bmi1+bmi2+lzcnt+popcnt",
))]
fn has_beyond_f32(x: &[f64]) -> bool {
    x.iter().fold(false, |a, v| a | beyond_f32(*v))
}

#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx2+fma+bmi1+bmi2+lzcnt+popcnt",
    "x86_64+avx2+fma+bmi1+bmi2+lzcnt+popcnt",
))]
fn has_infinite(x: &[f64]) -> bool {
    x.iter().fold(false, |a, v| a | infinite(*v))
}

#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx2+fma+bmi1+bmi2+lzcnt+popcnt",
    "x86_64+avx2+fma+bmi1+bmi2+lzcnt+popcnt",
))]
fn has_non_finite(x: &[f64]) -> bool {
    x.iter().fold(false, |a, v| a | !v.is_finite())
}

#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx2+fma+bmi1+bmi2+lzcnt+popcnt",
    "x86_64+avx2+fma+bmi1+bmi2+lzcnt+popcnt",
))]
fn has_nan(x: &[f64]) -> bool {
    x.iter().fold(false, |a, v| a | v.is_nan())
}

/// Rows a tile of [`to_rows`] writes: its row-major output (28 float32 features: 7 KB) stays in
/// L1 while every column writes its share, where a whole 1,024-row chunk (112 KB) would not.
const TILE_ROWS: usize = 64;

/// Copies rows `start..start + n` of `cols` (one slice a feature, each at least `start + n`
/// long) into `out` row-major, `cols.len()` values a row, converted to `T`: how the tree models,
/// which walk one row at a time, take a batch of columns.
///
/// ```
/// use mlscore_kernels::columns::to_rows;
/// let (a, b) = ([1.0, 2.0, 3.0], [10.0, 20.0, 30.0]);
/// let mut x: Vec<f32> = Vec::new();
/// to_rows(&[&a, &b], 1, 2, &mut x);
/// assert_eq!(x, vec![2.0, 20.0, 3.0, 30.0]);
/// ```
pub fn to_rows<T: crate::tree::Float>(cols: &[&[f64]], start: usize, n: usize, out: &mut Vec<T>) {
    transpose(cols, start, n, cols.len(), out, T::from_f64);
}

/// [`to_rows`] with rows `stride` values apart, zeros after each row's own (a `stride` below
/// `cols.len()` is taken as `cols.len()`): rows of a fixed width, which a walk can index
/// without a bounds check.
///
/// ```
/// use mlscore_kernels::columns::to_padded_rows;
/// let (a, b) = ([1.0, 2.0, 3.0], [10.0, 20.0, 30.0]);
/// let mut x: Vec<f32> = Vec::new();
/// to_padded_rows(&[&a, &b], 1, 2, 4, &mut x);
/// assert_eq!(x, vec![2.0, 20.0, 0.0, 0.0, 3.0, 30.0, 0.0, 0.0]);
/// ```
pub fn to_padded_rows<T: crate::tree::Float>(cols: &[&[f64]], start: usize, n: usize, stride: usize, out: &mut Vec<T>) {
    transpose(cols, start, n, stride.max(cols.len()), out, T::from_f64);
}

/// [`to_rows`] with every value rounded to float32 and back (as scikit-learn's trees read a
/// float64 input, walked in float64), in the same pass.
///
/// ```
/// use mlscore_kernels::columns::to_rows_through_f32;
/// let mut x = Vec::new();
/// to_rows_through_f32(&[&[0.1, 1e300], &[2.0, f64::NAN]], 0, 2, &mut x);
/// assert_eq!(x[..3], [f64::from(0.1f32), 2.0, f64::INFINITY]);
/// assert!(x[3].is_nan());
/// ```
pub fn to_rows_through_f32(cols: &[&[f64]], start: usize, n: usize, out: &mut Vec<f64>) {
    transpose(cols, start, n, cols.len(), out, |v| f64::from(v as f32));
}

/// [`to_rows`] into a buffer the caller owns (a model's input tensor, say): `out` holds whole
/// rows of `cols.len()` values and is filled from row `start` of the columns on, as many rows as
/// it holds.
///
/// ```
/// use mlscore_kernels::columns::fill_rows;
/// let (a, b) = ([1.0, 2.0, 3.0], [10.0, 20.0, 30.0]);
/// let mut x = [0f32; 4];
/// fill_rows(&[&a, &b], 1, &mut x);
/// assert_eq!(x, [2.0, 20.0, 3.0, 30.0]);
/// ```
pub fn fill_rows<T: crate::tree::Float>(cols: &[&[f64]], start: usize, out: &mut [T]) {
    fill(cols, start, cols.len(), out, T::from_f64);
}

/// Writes rows `width` values apart (`width >= cols.len()`), the values past `cols.len()` zero.
#[inline(always)]
fn transpose<T: Copy + Default>(
    cols: &[&[f64]],
    start: usize,
    n: usize,
    width: usize,
    out: &mut Vec<T>,
    conv: impl Fn(f64) -> T,
) {
    out.clear();
    out.resize(n * width, T::default());
    fill(cols, start, width, out, conv);
}

/// Writes `cols`' values from row `start` on into the rows of `out`, `width` values apart, a tile
/// of [`TILE_ROWS`] rows at a time (each tile stays in L1 while every column is written into it);
/// the values past `cols.len()` in each row are left as they are.
#[inline(always)]
fn fill<T: Copy>(cols: &[&[f64]], start: usize, width: usize, out: &mut [T], conv: impl Fn(f64) -> T) {
    for (t, tile) in out.chunks_mut(TILE_ROWS * width.max(1)).enumerate() {
        let first = start + t * TILE_ROWS;
        for (j, c) in cols.iter().enumerate() {
            for (row, v) in tile.chunks_exact_mut(width).zip(&c[first..]) {
                row[j] = conv(*v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_rows_transposes_every_tile_and_the_last_partial_one() {
        // 3 features, rows 5..205 of 300: three full 64-row tiles and a partial one.
        let cols: Vec<Vec<f64>> = (0..3).map(|j| (0..300).map(|r| (r * 10 + j) as f64).collect()).collect();
        let refs: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
        let mut x: Vec<f64> = vec![-1.0; 7];
        to_rows(&refs, 5, 200, &mut x);
        let want: Vec<f64> = (5..205).flat_map(|r| (0..3).map(move |j| (r * 10 + j) as f64)).collect();
        assert_eq!(x, want);
        to_rows(&refs, 0, 0, &mut x);
        assert!(x.is_empty());
    }

    #[test]
    fn the_overflow_bound_is_exactly_where_float32_rounds_to_infinity() {
        // The bound and its neighbours, both signs, against the conversion itself.
        let up = |v: f64| f64::from_bits(v.to_bits() + 1);
        let down = |v: f64| f64::from_bits(v.to_bits() - 1);
        let edges = [F32_OVERFLOW, up(F32_OVERFLOW), down(F32_OVERFLOW), f64::from(f32::MAX), f64::MAX, f64::INFINITY];
        let converted = |v: f64| (v as f32).is_infinite();
        for v in edges.into_iter().flat_map(|v| [v, -v]).chain([f64::NAN, 0.0, -0.0, f64::MIN_POSITIVE]) {
            assert_eq!(beyond_f32(v), converted(v), "{v:e}");
        }
        assert!(beyond_f32(F32_OVERFLOW) && !beyond_f32(down(F32_OVERFLOW)));
        // And over values of every exponent (a fixed xorshift sequence of bit patterns).
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let v = f64::from_bits(s);
            assert_eq!(beyond_f32(v), converted(v), "{v:e}");
        }
    }

    #[test]
    fn ops_round_as_separate_passes_do() {
        let x0: Vec<f64> = (0..2000).map(|i| (i as f64).sin() * 1e3 + 0.1).collect();
        let ops = [
            ColumnOp::Sub(0.3),
            ColumnOp::Div(7.1),
            ColumnOp::Mul(1.7),
            ColumnOp::Add(-2.2),
            ColumnOp::Clamp(-5.0, 5.0),
        ];
        let mut got = x0.clone();
        assert_eq!(apply_finite(&mut got, &ops), None);
        let want: Vec<f64> = x0.iter().map(|v| ((((v - 0.3) / 7.1) * 1.7) + -2.2).clamp(-5.0, 5.0)).collect();
        assert_eq!(got, want);
        assert_eq!(apply_copy_finite(&x0, &ops), Ok(want.clone()));
        assert_eq!(apply_copy_finite(&x0, &ops[1..2]), Ok(x0.iter().map(|v| v / 7.1).collect::<Vec<_>>()));
        assert_eq!(apply_copy_finite(&x0, &[]), Ok(x0.clone()));
        let mut acc = x0.clone();
        axpy(&mut acc, &want, 0.37);
        assert!(acc.iter().zip(&x0).zip(&want).all(|((a, x), w)| *a == x + w * 0.37));
    }

    #[test]
    fn clamping_is_numpys_clip_and_never_panics() {
        // The column ops refuse infinities, so an infinity's clip is checked on `clip` itself.
        let x = [f64::NAN, -3.0, 0.5, 3.0, f64::INFINITY];
        let mut got = apply_copy_finite(&x[..4], &[ColumnOp::Clamp(-1.0, 1.0)]).unwrap();
        got.push(clip(x[4], -1.0, 1.0));
        assert!(got[0].is_nan());
        assert_eq!(got[1..], [-1.0, 0.5, 1.0, 1.0]);
        // A range that does not go up (the sklearn reader refuses one): numpy gives `hi`.
        let mut got = apply_copy_finite(&x[1..4], &[ColumnOp::Clamp(1.0, -1.0)]).unwrap();
        got.push(clip(x[4], 1.0, -1.0));
        assert_eq!(got, vec![-1.0; 4]);
        let _ = apply_copy_finite(&x[..4], &[ColumnOp::Clamp(f64::NAN, f64::NAN)]);
        let _ = clip(x[4], f64::NAN, f64::NAN);
    }

    #[test]
    fn a_dense_layer_sums_as_openblas_then_adds_the_bias() {
        // OpenBLAS's sums: the matrix-matrix kernel's one chain from 0 in input order, and the
        // matrix-vector kernel's four lanes (a layer of one output), fused where the CPU fuses.
        let fused = fused_multiply_add();
        let madd = |a: f64, x: f64, w: f64| if fused { x.mul_add(w, a) } else { a + x * w };
        let want_sum = |xr: &[f64], w: &[f64], n_out: usize, o: usize| -> f64 {
            if fused && n_out == 1 {
                let m1 = xr.len() & !3;
                let mut l = [0.0; 4];
                for i in 0..m1 {
                    l[i % 4] = madd(l[i % 4], xr[i], w[i]);
                }
                (m1..xr.len()).fold((l[0] + l[2]) + (l[1] + l[3]), |s, i| madd(s, xr[i], w[i]))
            } else {
                (0..xr.len()).fold(0.0, |s, i| madd(s, xr[i], w[i * n_out + o]))
            }
        };
        // 4 outputs one by one; 27 as a tile of 16, one of 8 and 3 one by one; weights for
        // only some of the inputs (the others count as zeros); single outputs of 4k, 4k + 1,
        // 4k + 2 and 4k + 3 inputs.
        let shapes =
            [(5, 3, 4, 3), (7, 29, 27, 29), (3, 6, 40, 4), (9, 32, 1, 32), (6, 29, 1, 29), (5, 7, 1, 6), (7, 3, 1, 3)];
        for (rows, n_in, n_out, w_rows) in shapes {
            let x: Vec<f64> = (0..rows * n_in).map(|i| (i as f64 * 0.7).cos()).collect();
            let w: Vec<f64> = (0..w_rows * n_out).map(|i| (i as f64 * 1.3).sin()).collect();
            let bias: Vec<f64> = (0..n_out).map(|o| o as f64 * 0.1 - 0.2).collect();
            let y = dense(&x, rows, n_in, &w, &bias);
            // The ReLU of the same sums (rows of four go through another loop than the rest).
            let relu = dense_relu(&x, rows, n_in, &w, &bias);
            assert!(relu.iter().zip(&y).all(|(r, y)| *r == y.max(0.0)), "{n_out} outputs: {relu:?} against {y:?}");
            assert!(n_out == 1 || relu.contains(&0.0) && relu.iter().any(|v| *v > 0.0));
            for r in 0..rows {
                let xr = &x[r * n_in..][..w_rows];
                for o in 0..n_out {
                    let want = want_sum(xr, &w, n_out, o) + bias[o];
                    assert_eq!(y[r * n_out + o], want, "{n_out} outputs of {n_in} inputs, row {r}, output {o}");
                }
            }
        }
    }

    #[test]
    fn fused_sums_differ_from_unfused_ones() {
        // The oracle above would pass a kernel that ignored `fused`, were no sum's last bit
        // to depend on it: these do (0.1 * 3 rounds up; fused, its exact value meets -0.3).
        if fused_multiply_add() {
            let y = dense(&[1.0, 0.1], 1, 2, &[-0.3, -0.3, 3.0, 3.0], &[0.0, 0.0]);
            assert_eq!(y, vec![0.1f64.mul_add(3.0, -0.3), 0.1f64.mul_add(3.0, -0.3)]);
            assert_ne!(y[0], 0.1 * 3.0 - 0.3);
        }
    }

    #[test]
    fn nans_are_found_where_they_are() {
        let mut x = vec![0.0; 300];
        assert_eq!(first_nan(&x), None);
        x[200] = f64::NAN;
        x[250] = f64::NAN;
        assert_eq!(first_nan(&x), Some(200));
        assert_eq!(first_nan(&[f64::INFINITY, f64::NEG_INFINITY]), None);
    }
}
