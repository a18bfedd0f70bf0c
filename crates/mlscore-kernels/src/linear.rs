//! Linear models: every row's scores against a coefficient matrix, summed as onnxruntime's MLAS
//! sums them (the order of the fused multiply-adds decides the last bits).

use crate::transform::{fma, gemm_stride_k};

/// `x · coefficientsᵀ + intercepts` for every row (`x` row-major, `rows` rows of `features`;
/// `coefficients` one row of `features` per target), each value computed as MLAS's SGEMM does (see
/// [`gemm_dot`](crate::transform::gemm_dot)). Rows are taken in blocks, transposed so that one feature of every row of the
/// block is contiguous: the block's independent sums then run in SIMD lanes, each in MLAS's order.
pub fn dot_rows(
    x: &[f32],
    rows: usize,
    features: usize,
    coefficients: &[f32],
    intercepts: Option<&[f32]>,
    targets: usize,
) -> Vec<f32> {
    const BLOCK: usize = 64;
    let mut out = vec![0.0f32; rows * targets];
    if features == 0 || targets == 0 {
        if let Some(b) = intercepts.filter(|_| targets > 0) {
            out.chunks_exact_mut(targets).for_each(|row| row.copy_from_slice(b));
        }
        return out;
    }
    let stride = gemm_stride_k(targets, features).max(1);
    // A binary classifier's two scores are usually one score and its negation (skl2onnx writes
    // [-w, w] and [-b, b]). Rounding to nearest is symmetric, so the first is the second negated,
    // exactly (up to the sign of an exact zero): only the second is computed.
    let mirrored = targets == 2
        && (0..features).all(|k| coefficients[k] == -coefficients[features + k])
        && intercepts.is_none_or(|b| b[0] == -b[1]);
    let computed = if mirrored { 1..2 } else { 0..targets };
    // xt[k * BLOCK + r]: feature k of row r of the block (rows past the block's end are unused).
    let mut xt = vec![0.0f32; features * BLOCK];
    for r0 in (0..rows).step_by(BLOCK) {
        let n = BLOCK.min(rows - r0);
        for (r, row) in x[r0 * features..(r0 + n) * features].chunks_exact(features).enumerate() {
            for (k, v) in row.iter().enumerate() {
                xt[k * BLOCK + r] = *v;
            }
        }
        for t in computed.clone() {
            let w = &coefficients[t * features..(t + 1) * features];
            let mut c = [0.0f32; BLOCK];
            let mut have = false;
            if let Some(b) = intercepts {
                c.fill(b[t]);
                have = true;
            }
            for k0 in (0..features).step_by(stride) {
                let mut acc = [0.0f32; BLOCK];
                for (wk, col) in w[k0..(k0 + stride).min(features)].iter().zip(xt[k0 * BLOCK..].chunks_exact(BLOCK)) {
                    for (a, v) in acc.iter_mut().zip(col) {
                        *a = fma(*v, *wk, *a);
                    }
                }
                for (c, a) in c.iter_mut().zip(&acc) {
                    *c = if have { a + *c } else { *a };
                }
                have = true;
            }
            for (r, c) in c[..n].iter().enumerate() {
                out[(r0 + r) * targets + t] = *c;
                if mirrored {
                    out[(r0 + r) * targets] = -*c;
                }
            }
        }
    }
    out
}
