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

/// libsvm's pairwise coupling of probabilities (Wu, Lin and Weng), in onnxruntime's f32 form:
/// `r` holds the `k x k` pairwise probabilities, `p` receives the `k` class probabilities.
pub fn multiclass_probability(k: usize, r: &[f32], p: &mut [f32]) {
    let mut q = vec![0.0f32; k * k];
    let mut qp = vec![0.0f32; k];
    let eps = 0.005 / k as f32;
    for i in 0..k {
        p[i] = 1.0 / k as f32;
        for j in 0..i {
            q[i * k + i] += r[j * k + i] * r[j * k + i];
            q[i * k + j] = q[j * k + i];
        }
        for j in i + 1..k {
            q[i * k + i] += r[j * k + i] * r[j * k + i];
            q[i * k + j] = -r[j * k + i] * r[i * k + j];
        }
    }
    for _ in 0..100 {
        let mut pqp = 0.0f32;
        for i in 0..k {
            qp[i] = 0.0;
            for j in 0..k {
                qp[i] += q[i * k + j] * p[j];
            }
            pqp += p[i] * qp[i];
        }
        let max_error = (0..k).map(|i| (qp[i] - pqp).abs()).fold(0.0f32, f32::max);
        if max_error < eps {
            break;
        }
        for i in 0..k {
            let diff = (-qp[i] + pqp) / q[i * k + i];
            p[i] += diff;
            pqp = (pqp + diff * (diff * q[i * k + i] + 2.0 * qp[i])) / (1.0 + diff) / (1.0 + diff);
            for j in 0..k {
                qp[j] = (qp[j] + diff * q[i * k + j]) / (1.0 + diff);
                p[j] /= 1.0 + diff;
            }
        }
    }
}
