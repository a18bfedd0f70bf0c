//! numpy's own arithmetic where scikit-learn's results depend on it: its pairwise sums, the means
//! and medians built on them, `isclose` and `interp`. Many estimators reduce with these; a
//! running sum or a textbook interpolation would round differently.

use std::cmp::Ordering;

/// numpy's `sum` of a contiguous float64 array: pairwise, eight accumulators over blocks of at
/// most 128 values, halves split at multiples of eight (so `mean` and a threshold computed from
/// it round as numpy's do), added to the reduction's initial zero.
pub(crate) fn sum(a: &[f64]) -> f64 {
    0.0 + pairwise(a)
}

fn pairwise(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        a.iter().fold(-0.0, |r, x| r + x)
    } else if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let whole = n - n % 8;
        for block in a[8..whole].chunks_exact(8) {
            for (acc, x) in r.iter_mut().zip(block) {
                *acc += x;
            }
        }
        let res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        a[whole..].iter().fold(res, |r, x| r + x)
    } else {
        let half = n / 2;
        let half = half - half % 8;
        pairwise(&a[..half]) + pairwise(&a[half..])
    }
}

/// numpy's `mean` of a contiguous float64 array.
pub(crate) fn mean(a: &[f64]) -> f64 {
    sum(a) / a.len() as f64
}

/// numpy's `median`: the middle value, or the mean of the middle two; NaN if any value is NaN.
pub(crate) fn median(a: &[f64]) -> f64 {
    if a.is_empty() || a.iter().any(|v| v.is_nan()) {
        return f64::NAN;
    }
    let mut s = a.to_vec();
    s.sort_by(|x, y| x.partial_cmp(y).unwrap_or(Ordering::Equal));
    let n = s.len();
    if n % 2 == 1 { s[n / 2] } else { mean(&s[n / 2 - 1..n / 2 + 1]) }
}

/// numpy's `isclose(a, b)` with its default tolerances.
pub(crate) fn isclose(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-8 + 1e-5 * b.abs()
}

/// `numpy.interp(v, xp, fp)` for non-decreasing `xp` (ties take the last of their values).
pub(crate) fn interp(v: f64, xp: &[f64], fp: &[f64]) -> f64 {
    let n = xp.len();
    if v.is_nan() || n == 0 {
        return f64::NAN;
    }
    if v < xp[0] {
        return fp[0];
    }
    if v > xp[n - 1] {
        return fp[n - 1];
    }
    let j = xp.partition_point(|x| *x <= v).saturating_sub(1);
    if j >= n - 1 {
        return fp[n - 1];
    }
    if xp[j] == v {
        return fp[j];
    }
    let slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
    let mut r = slope * (v - xp[j]) + fp[j];
    if r.is_nan() {
        r = slope * (v - xp[j + 1]) + fp[j + 1];
        if r.is_nan() && fp[j] == fp[j + 1] {
            r = fp[j];
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAN: f64 = f64::NAN;

    #[test]
    fn sums_and_medians_round_as_numpy_does() {
        // numpy 2.4's np.sum and np.mean of [1e16] + [1.0] * 15 and of [1e16] + [1.0] * 7: its
        // eight accumulators keep ones that a running sum (1e16) would round away.
        let mut a = vec![1e16];
        a.extend([1.0; 15]);
        assert_eq!(sum(&a), 1.0000000000000014e16);
        assert_eq!(mean(&a), 625000000000000.9);
        assert_eq!(sum(&a[..8]), 1.0000000000000006e16);
        assert_eq!(sum(&[-0.0, -0.0]).to_bits(), 0.0f64.to_bits());
        assert_eq!(median(&[3.0, 1.0, 2.0, 10.0]), 2.5);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert!(median(&[1.0, NAN]).is_nan());
        assert!(isclose(1.0 + 1e-6, 1.0) && !isclose(1.0 + 1e-4, 1.0) && !isclose(NAN, 1.0));
    }

    #[test]
    fn interpolation_is_numpys_with_ties() {
        let (xp, fp) = ([0.0, 1.0, 1.0, 3.0], [0.0, 0.25, 0.5, 1.0]);
        // numpy 2.4: np.interp([-1, 0.5, 1, 2, 3, 9], xp, fp)
        assert_eq!(interp(-1.0, &xp, &fp), 0.0);
        assert_eq!(interp(0.5, &xp, &fp), 0.125);
        assert_eq!(interp(1.0, &xp, &fp), 0.5);
        assert_eq!(interp(2.0, &xp, &fp), 0.75);
        assert_eq!(interp(3.0, &xp, &fp), 1.0);
        assert_eq!(interp(9.0, &xp, &fp), 1.0);
    }
}
