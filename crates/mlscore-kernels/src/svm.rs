//! Support vector machines: kernel values against the support vectors, and libsvm's pairwise
//! coupling of one-vs-one probabilities, as onnxruntime computes them.

use crate::transform::{gemm_dot, gemm_stride_k};

/// An SVM's kernel function.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KernelType {
    /// `x · b`.
    Linear,
    /// `(gamma x · b + coef0)^degree`.
    Poly {
        /// The scale of the dot product.
        gamma: f32,
        /// The offset.
        coef0: f32,
        /// The power.
        degree: f32,
    },
    /// `exp(-gamma |x - b|²)`.
    Rbf {
        /// The scale of the squared distance.
        gamma: f32,
    },
    /// `tanh(gamma x · b + coef0)`.
    Sigmoid {
        /// The scale of the dot product.
        gamma: f32,
        /// The offset.
        coef0: f32,
    },
}

/// `out[r * n + j] = K(x_r, b_j)` (+ `c` for the linear kernel) for `rows` rows of `x` and `n`
/// rows of `b`, both `k` wide, in f32 as onnxruntime does.
pub fn kernel_dot(kt: KernelType, x: &[f32], b: &[f32], rows: usize, n: usize, k: usize, c: f32) -> Vec<f32> {
    let mut out = vec![0.0f32; rows * n];
    let stride = gemm_stride_k(n, k);
    for r in 0..rows {
        let xr = &x[r * k..(r + 1) * k];
        for j in 0..n {
            let bj = &b[j * k..(j + 1) * k];
            out[r * n + j] = match kt {
                KernelType::Rbf { gamma } => {
                    let d: f32 = xr.iter().zip(bj).map(|(a, b)| (a - b) * (a - b)).sum();
                    (-gamma * d).exp()
                }
                KernelType::Linear => gemm_dot(xr, bj, (c != 0.0).then_some(c), stride),
                KernelType::Poly { gamma, coef0, degree } => {
                    let v = gamma * gemm_dot(xr, bj, None, stride) + coef0;
                    if degree == 2.0 {
                        v * v
                    } else if degree == 3.0 {
                        v * v * v
                    } else {
                        v.powf(degree)
                    }
                }
                KernelType::Sigmoid { gamma, coef0 } => (gamma * gemm_dot(xr, bj, None, stride) + coef0).tanh(),
            };
        }
    }
    out
}

/// libsvm's kernel functions as scikit-learn's `SVC`, `SVR`, `NuSVC` and `NuSVR` evaluate them:
/// in float64, the polynomial's power an integer one taken by squaring (libsvm's `powi`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Libsvm {
    /// `x · v`.
    Linear,
    /// `(gamma x · v + coef0)^degree`.
    Poly {
        /// The scale of the dot product.
        gamma: f64,
        /// The offset.
        coef0: f64,
        /// The power (none below 1: the value is 1).
        degree: i64,
    },
    /// `exp(-gamma |x - v|²)`.
    Rbf {
        /// The scale of the squared distance.
        gamma: f64,
    },
    /// `tanh(gamma x · v + coef0)`.
    Sigmoid {
        /// The scale of the dot product.
        gamma: f64,
        /// The offset.
        coef0: f64,
    },
}

/// libsvm's `powi`: `base^times` by repeated squaring, 1 for `times <= 0`.
fn powi(base: f64, times: i64) -> f64 {
    let (mut tmp, mut ret, mut t) = (base, 1.0, times);
    while t > 0 {
        if t % 2 == 1 {
            ret *= tmp;
        }
        tmp *= tmp;
        t /= 2;
    }
    ret
}

/// `out[r] = K(x_r, v)` for the rows of `cols` (one slice per feature, each at least
/// `out.len()` long) against one support vector `v` (one value per feature), the sums in feature
/// order.
///
/// ```
/// use mlscore_kernels::svm::{Libsvm, libsvm_kernel};
/// let (a, b) = ([1.0, 0.0], [2.0, 3.0]);
/// let mut out = [0.0; 2];
/// libsvm_kernel(Libsvm::Rbf { gamma: 0.5 }, &[&a, &b], &[1.0, 1.0], &mut out);
/// assert_eq!(out, [(-0.5f64 * 1.0).exp(), (-0.5f64 * 5.0).exp()]);
/// libsvm_kernel(Libsvm::Poly { gamma: 1.0, coef0: 1.0, degree: 3 }, &[&a, &b], &[1.0, 1.0], &mut out);
/// assert_eq!(out, [64.0, 64.0]);
/// ```
pub fn libsvm_kernel(kernel: Libsvm, cols: &[&[f64]], v: &[f64], out: &mut [f64]) {
    out.fill(0.0);
    let n = out.len();
    match kernel {
        Libsvm::Rbf { gamma } => {
            for (c, vf) in cols.iter().zip(v) {
                out.iter_mut().zip(&c[..n]).for_each(|(o, x)| {
                    let d = x - vf;
                    *o += d * d;
                });
            }
            out.iter_mut().for_each(|o| *o = (-gamma * *o).exp());
        }
        Libsvm::Linear | Libsvm::Poly { .. } | Libsvm::Sigmoid { .. } => {
            for (c, vf) in cols.iter().zip(v) {
                out.iter_mut().zip(&c[..n]).for_each(|(o, x)| *o += x * vf);
            }
            match kernel {
                Libsvm::Poly { gamma, coef0, degree } => {
                    out.iter_mut().for_each(|o| *o = powi(gamma * *o + coef0, degree));
                }
                Libsvm::Sigmoid { gamma, coef0 } => out.iter_mut().for_each(|o| *o = (gamma * *o + coef0).tanh()),
                _ => {}
            }
        }
    }
}

/// libsvm's pairwise coupling of probabilities (Wu, Lin and Weng's second method): `r` holds
/// the `k x k` pairwise probabilities (row-major), `p` receives the `k` class probabilities
/// after at most `max_iter` rounds (libsvm: `max(100, k)`; onnxruntime: 100), stopping once
/// every class is within `0.005 / k`. In f32 as onnxruntime computes it, in f64 as libsvm does.
///
/// ```
/// use mlscore_kernels::svm::multiclass_probability;
/// // Two classes: the pairwise probability itself, to within the stopping tolerance.
/// let mut p = [0.0f64; 2];
/// multiclass_probability(2, &[0.0, 0.8, 0.2, 0.0], &mut p, 100);
/// assert!((p[0] - 0.8).abs() < 0.005 && (p[0] + p[1] - 1.0).abs() < 1e-12);
/// ```
pub fn multiclass_probability<T: Coupled>(k: usize, r: &[T], p: &mut [T], max_iter: usize) {
    let zero = T::from_f64(0.0);
    let one = T::from_f64(1.0);
    let mut q = vec![zero; k * k];
    let mut qp = vec![zero; k];
    let eps = T::from_f64(0.005) / T::from_f64(k as f64);
    for i in 0..k {
        p[i] = one / T::from_f64(k as f64);
        for j in 0..i {
            q[i * k + i] += r[j * k + i] * r[j * k + i];
            q[i * k + j] = q[j * k + i];
        }
        for j in i + 1..k {
            q[i * k + i] += r[j * k + i] * r[j * k + i];
            q[i * k + j] = -(r[j * k + i] * r[i * k + j]);
        }
    }
    for _ in 0..max_iter {
        let mut pqp = zero;
        for i in 0..k {
            qp[i] = zero;
            for j in 0..k {
                qp[i] += q[i * k + j] * p[j];
            }
            pqp += p[i] * qp[i];
        }
        let mut max_error = zero;
        for &v in &qp {
            let e = if v - pqp < zero { pqp - v } else { v - pqp };
            if e > max_error {
                max_error = e;
            }
        }
        if max_error < eps {
            break;
        }
        for i in 0..k {
            let diff = (-qp[i] + pqp) / q[i * k + i];
            p[i] += diff;
            pqp = (pqp + diff * (diff * q[i * k + i] + T::from_f64(2.0) * qp[i])) / (one + diff) / (one + diff);
            for j in 0..k {
                qp[j] = (qp[j] + diff * q[i * k + j]) / (one + diff);
                p[j] = p[j] / (one + diff);
            }
        }
    }
}

/// The arithmetic [`multiclass_probability`] needs: f32 and f64.
pub trait Coupled:
    crate::tree::Float
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
{
}

impl Coupled for f32 {}
impl Coupled for f64 {}
