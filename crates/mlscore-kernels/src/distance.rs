//! Distances from a block of rows to a set of fitted rows (nearest-neighbour models).

/// What is summed over the features, in feature order, for each pair of rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accumulate {
    /// `Σ (x - y)²`.
    SquaredDifference,
    /// `Σ |x - y|`.
    AbsoluteDifference,
    /// `max |x - y|` (from 0).
    MaxAbsoluteDifference,
}

/// For rows `start..start + n` of `cols` (one slice per feature) and each of the fitted rows
/// (`fit`, row-major, `cols.len()` values each), `out[r * n_fit + j]` = the accumulation over
/// the features of row `start + r` and fitted row `j`, the terms added in feature order from 0
/// (each pair's sum is its own: the loop runs across rows, not features). `out` is resized to
/// `n * n_fit`.
///
/// ```
/// use mlscore_kernels::distance::{pairwise, Accumulate};
/// let (a, b) = ([0.0, 1.0, 2.0], [0.0, 0.0, 2.0]);
/// let fit = [0.0, 0.0, 1.0, 1.0]; // two fitted rows of two features
/// let mut out = Vec::new();
/// pairwise(Accumulate::SquaredDifference, &[&a, &b], 1, 2, &fit, &mut out);
/// assert_eq!(out, [1.0, 1.0, 8.0, 2.0]);
/// pairwise(Accumulate::AbsoluteDifference, &[&a, &b], 0, 1, &fit, &mut out);
/// assert_eq!(out, [0.0, 2.0]);
/// ```
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx2+fma+bmi1+bmi2+lzcnt+popcnt",
    "x86_64+avx2+fma+bmi1+bmi2+lzcnt+popcnt",
))]
pub fn pairwise(kind: Accumulate, cols: &[&[f64]], start: usize, n: usize, fit: &[f64], out: &mut Vec<f64>) {
    let nf = cols.len();
    let n_fit = fit.len().checked_div(nf).unwrap_or(0);
    out.clear();
    out.resize(n * n_fit, 0.0);
    let mut acc = vec![0.0; n];
    let xs: Vec<&[f64]> = cols.iter().map(|c| &c[start..start + n]).collect();
    for (j, y) in fit.chunks_exact(nf.max(1)).take(n_fit).enumerate() {
        acc.fill(0.0);
        for (x, yf) in xs.iter().zip(y) {
            let yf = *yf;
            match kind {
                Accumulate::SquaredDifference => acc.iter_mut().zip(x.iter()).for_each(|(a, x)| {
                    let d = x - yf;
                    *a += d * d;
                }),
                Accumulate::AbsoluteDifference => acc.iter_mut().zip(x.iter()).for_each(|(a, x)| *a += (x - yf).abs()),
                Accumulate::MaxAbsoluteDifference => {
                    acc.iter_mut().zip(x.iter()).for_each(|(a, x)| *a = a.max((x - yf).abs()))
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            out[r * n_fit + j] = *a;
        }
    }
}
