//! Post-transforms of the ONNX-ML classifiers and regressors, with onnxruntime's exact semantics.
//!
//! onnxruntime's numerics are the reference: a stable logistic, its own inverse-erf
//! approximation for PROBIT, softmax with the max subtracted, and SOFTMAX_ZERO that leaves
//! zero scores at zero. The binary cases (one score for two classes) follow its rules for
//! writing the second class.
//!
//! The small functions are `#[inline]`: the front ends call them once a value from their own
//! loops, in other crates, where they must inline to vectorize (release builds have no LTO).

use crate::error::{Error, Result};

/// `post_transform`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PostTransform {
    /// The scores as they are.
    #[default]
    None,
    /// Each score through the logistic function.
    Logistic,
    /// Each row's scores through softmax.
    Softmax,
    /// Softmax that leaves zero scores at zero.
    SoftmaxZero,
    /// Each score through the inverse of the normal CDF.
    Probit,
}

impl PostTransform {
    /// The transform an ONNX `post_transform` attribute names (`NONE` when absent).
    pub fn parse(s: Option<&str>) -> Result<Self> {
        Ok(match s.unwrap_or("NONE") {
            "NONE" | "" => Self::None,
            "LOGISTIC" => Self::Logistic,
            "SOFTMAX" => Self::Softmax,
            "SOFTMAX_ZERO" => Self::SoftmaxZero,
            "PROBIT" => Self::Probit,
            other => return Err(Error::Unsupported(format!("unknown post_transform '{other}'"))),
        })
    }
}

/// onnxruntime's stable logistic (post-transforms, and `Sigmoid` over doubles).
pub fn logistic<F: num_traits::Float>(v: F) -> F {
    let one = F::one();
    let e = one / (one + (-v.abs()).exp());
    if v < F::zero() { one - e } else { e }
}

#[inline]
fn erf_inv(x: f32) -> f32 {
    let sgn = if x < 0.0 { -1.0f32 } else { 1.0 };
    let x = (1.0 - x) * (1.0 + x);
    let log = x.ln();
    let v = 2.0 / (std::f32::consts::PI * 0.147) + 0.5 * log;
    let v2 = 1.0 / 0.147 * log;
    let v3 = -v + (v * v - v2).sqrt();
    sgn * v3.sqrt()
}

/// onnxruntime's vectorized logistic (MLAS, the rational approximation Eigen uses), which it
/// applies to whole score matrices (`batched_update_scores_inplace`): linear models and SVMs.
/// It differs from the exact logistic by up to a few percent in the far tails, so matching
/// onnxruntime there means computing it the same way, fused multiply-adds included.
/// `a * b + c` rounded once, as an FMA instruction computes it. The product of two f32 is exact
/// in f64, so only the f64 sum rounds before the final rounding to f32; that double rounding
/// differs from a true FMA once in about 2^29 operations, and it runs at full speed on every x86-64
/// (a software `fmaf` costs tens of nanoseconds where the CPU has no FMA unit enabled).
#[inline(always)]
pub fn fma(a: f32, b: f32, c: f32) -> f32 {
    (f64::from(a) * f64::from(b) + f64::from(c)) as f32
}

/// Branch-free, so that a loop over many scores vectorizes: a NaN stays NaN through both clamps.
#[inline]
pub fn mlas_logistic(v: f32) -> f32 {
    let x = v.clamp(-18.0, 18.0);
    let x2 = x * x;
    // MLAS's coefficients, as f32 (the shortest decimals that round to the same floats).
    let p = fma(x2, 4.37031e-11, 1.156_273_2e-7);
    let p = fma(p, x2, 6.085_749e-5);
    let p = fma(p, x2, 0.008_513_771);
    let p = fma(p, x2, 0.248_287_95);
    let p = p * x;
    let q = fma(x2, 6.102_473_7e-13, 5.761_021_4e-9);
    let q = fma(q, x2, 6.291_068e-6);
    let q = fma(q, x2, 0.001_701_988_2);
    let q = fma(q, x2, 0.116_817_65);
    let q = fma(q, x2, 0.993_151_9);
    (p / q + 0.5).clamp(0.0, 1.0)
}

/// onnxruntime's `batched_update_scores_inplace` for a row of two or more scores: like
/// [`apply_row`], with MLAS's logistic.
#[inline]
pub fn apply_row_batched(t: PostTransform, row: &mut [f32]) {
    apply_rows_batched(t, row, row.len());
}

/// [`apply_row_batched`] over every row of a row-major score matrix of rows `width` wide. The
/// logistic applies to each score alone, so it runs as one pass over the whole matrix.
#[inline]
pub fn apply_rows_batched(t: PostTransform, scores: &mut [f32], width: usize) {
    match t {
        PostTransform::Logistic => scores.iter_mut().for_each(|v| *v = mlas_logistic(*v)),
        other if width > 0 => scores.chunks_exact_mut(width).for_each(|row| apply_row(other, row)),
        _ => {}
    }
}

/// The K stride MLAS's SGEMM uses for an `[M, K] x [K, N]` product: 128, deepened when the
/// output is narrow and made shallower when K is small (`MlasSgemmOperation`).
#[inline]
pub fn gemm_stride_k(n: usize, k: usize) -> usize {
    let mut stride_k = 128usize;
    if n >= k {
        while stride_k / 2 >= k {
            stride_k /= 2;
        }
    } else {
        // The N stride starts at 128 and halves while the output stays narrower than half of it.
        let mut stride_n = 128usize;
        while stride_n > 16 && stride_n / 2 >= n {
            stride_k *= 2;
            stride_n /= 2;
        }
    }
    stride_k.max(1)
}

/// A dot product the way MLAS's SGEMM computes it: fused multiply-adds in order, in blocks of
/// `stride_k` (see [`gemm_stride_k`]) along the shared dimension, each block's sum added to what
/// is already there (the bias, then the previous blocks).
#[inline]
pub fn gemm_dot(x: &[f32], w: &[f32], bias: Option<f32>, stride_k: usize) -> f32 {
    let mut c = bias;
    for (xb, wb) in x.chunks(stride_k).zip(w.chunks(stride_k)) {
        let mut acc = 0.0f32;
        for (a, b) in xb.iter().zip(wb) {
            acc = fma(*a, *b, acc);
        }
        c = Some(match c {
            Some(c) => acc + c,
            None => acc,
        });
    }
    c.unwrap_or(0.0)
}

/// The inverse of the standard normal CDF, with onnxruntime's approximation of `erf⁻¹`.
#[inline]
pub fn probit(v: f32) -> f32 {
    std::f32::consts::SQRT_2 * erf_inv(2.0 * v - 1.0)
}

/// Softmax of a row, in place (the maximum subtracted first).
#[inline]
pub fn softmax(row: &mut [f32]) {
    let max = row.iter().fold(-f32::MAX, |m, v| if *v > m { *v } else { m });
    let mut sum = 0.0f32;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in row.iter_mut() {
        *v /= sum;
    }
}

/// onnxruntime's `SOFTMAX_ZERO`: softmax over the non-zero scores; zeros stay zero.
#[inline]
pub fn softmax_zero(row: &mut [f32]) {
    let max = row.iter().fold(-f32::MAX, |m, v| if *v > m { *v } else { m });
    let exp_neg_max = (-max).exp();
    let mut sum = 0.0f32;
    for v in row.iter_mut() {
        if *v > 0.000_000_1 || *v < -0.000_000_1 {
            *v = (*v - max).exp();
            sum += *v;
        } else {
            *v *= exp_neg_max;
        }
    }
    for v in row.iter_mut() {
        *v /= sum;
    }
}

/// Applies the transform to a row of two or more scores, in place.
#[inline]
pub fn apply_row(t: PostTransform, row: &mut [f32]) {
    match t {
        PostTransform::None => {}
        PostTransform::Logistic => row.iter_mut().for_each(|v| *v = logistic(*v)),
        PostTransform::Probit => row.iter_mut().for_each(|v| *v = probit(*v)),
        PostTransform::Softmax => softmax(row),
        PostTransform::SoftmaxZero => softmax_zero(row),
    }
}

/// How a single binary score becomes two (onnxruntime's `add_second_class`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondClass {
    /// Write the score alone.
    No,
    /// `[1 - s, s]` (weights all positive).
    Complement,
    /// `[-s, s]`, or `[logistic(-s), logistic(s)]` under LOGISTIC (mixed-sign weights).
    Mirror,
}

/// onnxruntime's `write_scores`: transforms `scores` (one value a class, or a single binary
/// score) and writes them to `out`, which has room for `out.len()` values.
#[inline]
pub fn write_scores(scores: &[f32], t: PostTransform, second: SecondClass, out: &mut [f32]) {
    if scores.len() >= 2 {
        out[..scores.len()].copy_from_slice(scores);
        apply_row(t, &mut out[..scores.len()]);
    } else if let Some(&s) = scores.first() {
        if t == PostTransform::Probit {
            out[0] = probit(s);
            return;
        }
        match second {
            SecondClass::Complement => {
                out[0] = 1.0 - s;
                if out.len() > 1 {
                    out[1] = s;
                }
            }
            SecondClass::Mirror => {
                let (a, b) = if t == PostTransform::Logistic { (logistic(-s), logistic(s)) } else { (-s, s) };
                out[0] = a;
                if out.len() > 1 {
                    out[1] = b;
                }
            }
            SecondClass::No => out[0] = s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logistic_is_stable_at_the_extremes() {
        assert_eq!(logistic(0.0f32), 0.5);
        assert!((logistic(2.0f32) + logistic(-2.0f32) - 1.0).abs() < 1e-7);
        assert_eq!(logistic(-200.0f32), 0.0);
        assert!(logistic(f32::NAN).is_nan());
    }

    #[test]
    fn softmax_sums_to_one_and_softmax_zero_keeps_zeros() {
        let mut r = [1.0f32, 2.0, 3.0];
        softmax(&mut r);
        assert!((r.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let mut z = [0.0f32, 2.0, 3.0];
        softmax_zero(&mut z);
        assert_eq!(z[0], 0.0);
        assert!((z[1] + z[2] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn probit_inverts_the_normal_cdf_closely() {
        assert!(probit(0.5).abs() < 1e-6);
        assert!((probit(0.975) - 1.959_964).abs() < 2e-2);
    }

    #[test]
    fn binary_scores_get_their_second_class() {
        let mut out = [0.0f32; 2];
        write_scores(&[0.8], PostTransform::None, SecondClass::Complement, &mut out);
        assert_eq!(out, [0.19999999, 0.8]);
        write_scores(&[0.0], PostTransform::Logistic, SecondClass::Mirror, &mut out);
        assert_eq!(out, [0.5, 0.5]);
        write_scores(&[1.5], PostTransform::None, SecondClass::Mirror, &mut out);
        assert_eq!(out, [-1.5, 1.5]);
    }
}
