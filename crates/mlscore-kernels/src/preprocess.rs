//! Column transforms of scikit-learn pipelines, as onnxruntime computes them: scaling, row
//! normalization and imputation, over row-major matrices of `width` columns.

/// `(x - offset) * scale` for every value, in place; `offset` and `scale` hold one value per
/// column (the caller expands a single value to every column).
#[inline]
pub fn scale_rows(x: &mut [f32], width: usize, offset: &[f32], scale: &[f32]) {
    for row in x.chunks_exact_mut(width.max(1)) {
        for ((v, o), s) in row.iter_mut().zip(offset).zip(scale) {
            *v = (*v - o) * s;
        }
    }
}

/// [`scale_rows`] over doubles, computed in double precision and rounded to `out` (onnxruntime's
/// Scaler takes doubles and returns floats).
pub fn scale_rows_f64(x: &[f64], out: &mut [f32], width: usize, offset: &[f32], scale: &[f32]) {
    let w = width.max(1);
    for (row, o_row) in x.chunks_exact(w).zip(out.chunks_exact_mut(w)) {
        for (((v, o), s), out) in row.iter().zip(offset).zip(scale).zip(o_row) {
            *out = ((v - f64::from(*o)) * f64::from(*s)) as f32;
        }
    }
}

/// A row norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Norm {
    /// Divide by the row's largest value (onnxruntime: the plain maximum, not the largest magnitude).
    Max,
    /// Divide by the sum of magnitudes.
    L1,
    /// Divide by the Euclidean length.
    L2,
}

/// Each row of `x` divided by its norm, into `out` (rows whose norm is 0 are copied), with
/// onnxruntime's float arithmetic.
pub fn normalize_rows(x: &[f64], out: &mut [f32], width: usize, norm: Norm) {
    for (row, o) in x.chunks(width.max(1)).zip(out.chunks_mut(width.max(1))) {
        match norm {
            Norm::Max => {
                let max = row.iter().fold(f32::MIN, |m, v| m.max(*v as f32));
                for (o, v) in o.iter_mut().zip(row) {
                    *o = if max != 0.0 { *v as f32 / max } else { *v as f32 };
                }
            }
            Norm::L1 => {
                let sum: f32 = row.iter().map(|v| v.abs() as f32).sum();
                for (o, v) in o.iter_mut().zip(row) {
                    *o = if sum != 0.0 { *v as f32 / sum } else { *v as f32 };
                }
            }
            Norm::L2 => {
                let sq: Vec<f32> = row.iter().map(|v| (v * v) as f32).collect();
                let sum: f32 = sq.iter().sum();
                for ((o, v), s) in o.iter_mut().zip(row).zip(&sq) {
                    *o = if sum != 0.0 {
                        let r = (s / sum).sqrt();
                        if *v < 0.0 { -r } else { r }
                    } else {
                        *v as f32
                    };
                }
            }
        }
    }
}

/// Replaces every value equal to `replaced` (NaN matches NaN) with its column's imputed value
/// (`imputed` holds one value per column, or one for all).
pub fn impute<T: Copy + PartialEq>(x: &[T], width: usize, replaced: T, imputed: &[T]) -> Vec<T> {
    let pick = |i: usize| if imputed.len() == width { imputed[i % width.max(1)] } else { imputed[0] };
    // `v != v` only for NaN: a float's missing-value marker matches NaN values.
    #[allow(clippy::eq_op)]
    let missing = |v: T| v == replaced || (replaced != replaced && v != v);
    x.iter().enumerate().map(|(i, v)| if missing(*v) { pick(i) } else { *v }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norms_divide_each_row_and_leave_zero_rows_alone() {
        let x = [3.0, -4.0, 0.0, 0.0];
        let mut out = [0.0f32; 4];
        normalize_rows(&x, &mut out, 2, Norm::L2);
        assert_eq!(out, [0.6, -0.8, 0.0, 0.0]);
        normalize_rows(&x, &mut out, 2, Norm::L1);
        assert!((out[0] - 3.0 / 7.0).abs() < 1e-7 && out[2] == 0.0);
        normalize_rows(&x, &mut out, 2, Norm::Max);
        assert_eq!(&out[..2], &[1.0, -4.0 / 3.0]);
    }

    #[test]
    fn imputation_matches_nan_and_exact_values_per_column() {
        let x = [1.0f32, f32::NAN, f32::NAN, 2.0];
        assert_eq!(impute(&x, 2, f32::NAN, &[10.0, 20.0]), vec![1.0, 20.0, 10.0, 2.0]);
        assert_eq!(impute(&[0i64, 5, 0], 1, 0, &[7]), vec![7, 5, 7]);
    }

    #[test]
    fn scaling_subtracts_then_multiplies() {
        let mut x = [1.0f32, 2.0, 3.0, 4.0];
        scale_rows(&mut x, 2, &[1.0, 2.0], &[2.0, 0.5]);
        assert_eq!(x, [0.0, 0.0, 4.0, 1.0]);
        let mut out = [0.0f32; 2];
        scale_rows_f64(&[1.5, 2.5], &mut out, 2, &[0.5, 0.5], &[2.0, 2.0]);
        assert_eq!(out, [2.0, 4.0]);
    }
}
