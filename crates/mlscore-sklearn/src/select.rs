//! Which features scikit-learn's feature selectors keep, computed from what they stored when
//! fitted (`scores_`, `pvalues_`, `variances_`) the way their `_get_support_mask` computes it
//! at every `transform`: numpy's arithmetic, stable sorts, ties and NaN scores included, so that
//! a feature on the edge is kept or dropped exactly as scikit-learn keeps or drops it.

use std::cmp::Ordering;

/// The scores with NaN replaced by the lowest float64, as scikit-learn's `_clean_nans` does
/// before it ranks them (a NaN score ranks below every number, above minus infinity).
fn clean(scores: &[f64]) -> Vec<f64> {
    scores.iter().map(|s| if s.is_nan() { f64::MIN } else { *s }).collect()
}

/// Features in ascending order of `scores` (which hold no NaN), equal scores in feature order:
/// numpy's stable `argsort(kind="mergesort")`, for which `-0.0` equals `0.0`.
fn ascending(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|a, b| scores[*a].partial_cmp(&scores[*b]).unwrap_or(Ordering::Equal));
    order
}

/// `SelectKBest`: the `k` highest scores (all of them where `k` is at least their number); of
/// equal scores on the edge, the later features.
///
/// ```text
/// k_best(&[1.0, 3.0, 3.0, NaN], 2) == [false, true, true, false]
/// k_best(&[2.0, 2.0, 2.0], 1)      == [false, false, true]
/// ```
pub(crate) fn k_best(scores: &[f64], k: usize) -> Vec<bool> {
    let mut mask = vec![false; scores.len()];
    // scikit-learn tests k == 0 first: its slice `[-0:]` would keep everything.
    if k == 0 {
        return mask;
    }
    let order = ascending(&clean(scores));
    for &i in &order[order.len().saturating_sub(k)..] {
        mask[i] = true;
    }
    mask
}

/// numpy's `percentile(values, q * 100)` with its default `linear` method: the order statistics
/// either side of the virtual index `(n - 1) * q` and numpy's `_lerp` between them (which
/// computes from the upper one when the weight is at least a half). `values` holds no NaN.
fn linear_percentile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap_or(Ordering::Equal));
    let n = sorted.len();
    let Some(&last) = sorted.last() else { return f64::NAN };
    let virtual_index = (n - 1) as f64 * q;
    // numpy's `_get_indexes`: past the last index, both neighbours are the last value (index
    // -1, from which the weight is then computed too); before the first, the first.
    let (previous, a, b) = if virtual_index >= (n - 1) as f64 {
        (-1.0, last, last)
    } else if virtual_index < 0.0 {
        (0.0, sorted[0], sorted[0])
    } else {
        let p = virtual_index.floor();
        // In range: 0 <= p < n - 1, so both indices are inside `sorted`.
        let i = p as usize;
        (p, sorted[i], sorted[i + 1])
    };
    let t = virtual_index - previous;
    let diff = b - a;
    if t >= 0.5 { b - diff * (1.0 - t) } else { a + diff * t }
}

/// `SelectPercentile`: the features whose score is above the `100 - percentile` percentile of
/// all scores, then features scoring exactly that percentile, in feature order, until
/// `int(n * percentile / 100)` are kept (with Python's slice arithmetic when more than that are
/// already above it).
pub(crate) fn percentile(scores: &[f64], percentile: f64) -> Vec<bool> {
    let n = scores.len();
    if percentile == 100.0 {
        return vec![true; n];
    }
    if percentile == 0.0 {
        return vec![false; n];
    }
    let s = clean(scores);
    let threshold = linear_percentile(&s, (100.0 - percentile) / 100.0);
    let mut mask: Vec<bool> = s.iter().map(|v| *v > threshold).collect();
    let ties: Vec<usize> = (0..n).filter(|i| s[*i] == threshold).collect();
    if !ties.is_empty() {
        let max_feats = ((n as f64 * percentile) / 100.0).trunc() as i64;
        let above = mask.iter().filter(|m| **m).count() as i64;
        let stop = max_feats - above;
        let len = ties.len() as i64;
        // `ties[:stop]`: a negative stop counts from the end.
        let end = if stop >= 0 { stop.min(len) } else { (len + stop).max(0) };
        for &i in &ties[..end as usize] {
            mask[i] = true;
        }
    }
    mask
}

/// `SelectFpr`: p-values below `alpha`.
pub(crate) fn fpr(pvalues: &[f64], alpha: f64) -> Vec<bool> {
    pvalues.iter().map(|p| *p < alpha).collect()
}

/// `SelectFwe`: p-values below `alpha / n` (Bonferroni).
pub(crate) fn fwe(pvalues: &[f64], alpha: f64) -> Vec<bool> {
    let bound = alpha / pvalues.len() as f64;
    pvalues.iter().map(|p| *p < bound).collect()
}

/// `SelectFdr` (Benjamini-Hochberg): with the p-values sorted, the largest that is at most
/// `alpha / n * rank`; every feature whose p-value is at most that one.
pub(crate) fn fdr(pvalues: &[f64], alpha: f64) -> Vec<bool> {
    let n = pvalues.len();
    let mut sorted = pvalues.to_vec();
    // numpy sorts NaN last; a NaN is never at most a bound, so it is never selected.
    sorted.sort_by(|a, b| a.total_cmp(b));
    let step = alpha / n as f64;
    let largest = sorted
        .iter()
        .enumerate()
        .filter(|(i, p)| **p <= step * (*i + 1) as f64)
        .map(|(_, p)| *p)
        .fold(None, |m: Option<f64>, p| Some(m.map_or(p, |m| m.max(p))));
    match largest {
        None => vec![false; n],
        Some(m) => pvalues.iter().map(|p| *p <= m).collect(),
    }
}

/// `VarianceThreshold`: variances above the threshold.
pub(crate) fn variance(variances: &[f64], threshold: f64) -> Vec<bool> {
    variances.iter().map(|v| *v > threshold).collect()
}

/// `numpy.linalg.norm(rows, ord=order, axis=0)` of a `(k, n)` array given row by row: each
/// column's norm, its values summed in row order.
pub(crate) fn column_norms(rows: &[Vec<f64>], order: f64) -> Vec<f64> {
    let n = rows.first().map_or(0, Vec::len);
    (0..n)
        .map(|j| {
            let col = rows.iter().map(|r| r[j]);
            if order == f64::INFINITY {
                col.map(f64::abs).fold(f64::NEG_INFINITY, |m, v| if v > m || v.is_nan() { v } else { m })
            } else if order == f64::NEG_INFINITY {
                col.map(f64::abs).fold(f64::INFINITY, |m, v| if v < m || v.is_nan() { v } else { m })
            } else if order == 0.0 {
                col.fold(0.0, |s, v| s + f64::from(u8::from(v != 0.0)))
            } else if order == 1.0 {
                col.map(f64::abs).reduce(|s, v| s + v).unwrap_or(0.0)
            } else if order == 2.0 {
                col.map(|v| v * v).reduce(|s, v| s + v).unwrap_or(0.0).sqrt()
            } else {
                col.map(|v| v.abs().powf(order)).reduce(|s, v| s + v).unwrap_or(0.0).powf(1.0 / order)
            }
        })
        .collect()
}

/// `SelectFromModel`: with `max_features`, the that many highest scores (equal scores in
/// feature order); then every score below the threshold dropped.
pub(crate) fn from_model(scores: &[f64], threshold: f64, max_features: Option<usize>) -> Vec<bool> {
    let mut mask = match max_features {
        None => vec![true; scores.len()],
        Some(k) => {
            // numpy's stable argsort of -scores: descending, NaN last.
            let mut order: Vec<usize> = (0..scores.len()).collect();
            order.sort_by(|a, b| {
                let (x, y) = (-scores[*a], -scores[*b]);
                match (x.is_nan(), y.is_nan()) {
                    (false, false) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
                    (a, b) => a.cmp(&b),
                }
            });
            let mut m = vec![false; scores.len()];
            for &i in order.iter().take(k) {
                m[i] = true;
            }
            m
        }
    };
    for (m, s) in mask.iter_mut().zip(scores) {
        if *s < threshold {
            *m = false;
        }
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAN: f64 = f64::NAN;

    #[test]
    fn k_best_keeps_the_last_of_equal_scores_and_ranks_nan_lowest() {
        assert_eq!(k_best(&[1.0, 3.0, 3.0, NAN], 2), [false, true, true, false]);
        assert_eq!(k_best(&[2.0, 2.0, 2.0], 1), [false, false, true]);
        assert_eq!(k_best(&[NAN, f64::NEG_INFINITY, 0.0], 2), [true, false, true]);
        assert_eq!(k_best(&[1.0, 2.0], 5), [true, true]);
        assert_eq!(k_best(&[1.0, 2.0], 0), [false, false]);
        // -0.0 and 0.0 are equal to a stable sort: the later is kept.
        assert_eq!(k_best(&[0.0, -0.0], 1), [false, true]);
    }

    #[test]
    fn the_percentile_interpolates_as_numpy_does() {
        // What numpy 2.4's percentile gives for the same values.
        assert_eq!(linear_percentile(&[4.0, 1.0, 3.0, 2.0], 0.5), 2.5);
        assert_eq!(linear_percentile(&[1.0, 2.0, 3.0, 4.0, 10.0], 0.9), 7.6000000000000005);
        assert_eq!(linear_percentile(&[0.1, 0.7, 0.2], 0.35), 0.17);
        assert_eq!(linear_percentile(&[1.0, 2.0, 3.0], 1.0), 3.0);
        assert_eq!(linear_percentile(&[1.0, 2.0, 3.0], 0.0), 1.0);
        // Two infinities: numpy's difference is NaN, and so is its percentile.
        assert!(linear_percentile(&[0.0, f64::INFINITY, f64::INFINITY], 0.75).is_nan());
    }

    #[test]
    fn percentile_keeps_ties_in_feature_order_up_to_its_share() {
        // Each as scikit-learn 1.9's SelectPercentile gives it for these scores_.
        // 50% of 4: the threshold is 2.0 (between the two 2.0s); none above but 3.0, then one tie.
        assert_eq!(percentile(&[2.0, 2.0, 1.0, 3.0], 50.0), [true, false, false, true]);
        assert_eq!(percentile(&[5.0, 5.0, 5.0, 5.0], 50.0), [true, true, false, false]);
        assert_eq!(percentile(&[1.0, 2.0], 100.0), [true, true]);
        assert_eq!(percentile(&[1.0, 2.0], 0.0), [false, false]);
        // 10% of 3 features is int(0.3) = 0 of them, yet a score above the threshold is kept.
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 10.0), [false, false, true]);
        // Four ties at the threshold, one score above it, int(1.8) = 1: no tie is kept.
        assert_eq!(percentile(&[0.3, 0.3, 0.3, 0.1, 0.9, 0.3], 30.0), [false, false, false, false, true, false]);
        assert_eq!(percentile(&[NAN, 1.0, NAN, 2.0], 50.0), [false, true, false, true]);
    }

    #[test]
    fn p_value_rules() {
        let p = [0.001, 0.04, 0.2, NAN, 0.011];
        assert_eq!(fpr(&p, 0.05), [true, true, false, false, true]);
        assert_eq!(fwe(&p, 0.05), [true, false, false, false, false]);
        // Sorted: 0.001 <= 0.01, 0.011 <= 0.02, 0.04 <= 0.03 fails, 0.2 <= 0.04 fails: <= 0.011.
        assert_eq!(fdr(&p, 0.05), [true, false, false, false, true]);
        assert_eq!(fdr(&[0.9, 0.8], 0.05), [false, false]);
        assert_eq!(variance(&[0.0, 0.5, NAN], 0.1), [false, true, false]);
    }

    #[test]
    fn from_model_keeps_the_highest_then_drops_those_below_the_threshold() {
        assert_eq!(from_model(&[0.1, 0.5, 0.5, 0.2], 0.15, Some(2)), [false, true, true, false]);
        assert_eq!(from_model(&[0.5, 0.5, 0.5], 0.0, Some(2)), [true, true, false]);
        assert_eq!(from_model(&[0.1, 0.5, NAN], 0.2, None), [false, true, true]);
        assert_eq!(column_norms(&[vec![1.0, -2.0], vec![-3.0, 0.5]], 1.0), [4.0, 2.5]);
        assert_eq!(column_norms(&[vec![3.0], vec![-4.0]], 2.0), [5.0]);
        assert_eq!(column_norms(&[vec![3.0], vec![-4.0]], f64::INFINITY), [4.0]);
    }
}
