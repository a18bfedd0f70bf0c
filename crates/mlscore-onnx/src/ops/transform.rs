//! tract operators over the kernels' post-transforms: `ArgMax` over rows and `Sigmoid`.

use mlscore_kernels::transform::{logistic, mlas_logistic};
use tract_onnx::tract_hir::internal::*;

/// `ArgMax` over the last axis of a `[N, k]` f32 tensor, keeping the axis (`[N, 1]` int64), with
/// tract's semantics: the first maximum (the last with `select_last_index`), NaN never chosen.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RowArgMax {
    pub(crate) last: bool,
}

impl super::kernel::Kernel for RowArgMax {
    fn name(&self) -> &'static str {
        "ArgMax"
    }

    fn outputs(&self) -> Vec<super::kernel::OutSpec> {
        vec![super::kernel::OutSpec::new(i64::datum_type(), super::kernel::OutShape::RowsBy(1))]
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = &inputs[0];
        let (rows, k) = match x.shape() {
            [n, k] => (*n, *k),
            other => bail!("ArgMax: expected a [N, k] input, got {other:?}"),
        };
        let values = x.try_as_plain_ram()?.as_slice::<f32>()?;
        let mut out = Vec::with_capacity(rows);
        for row in values.chunks_exact(k.max(1)).take(rows) {
            let (mut best, mut at) = (-f32::MAX, 0usize);
            for (j, v) in row.iter().enumerate() {
                if *v > best || (self.last && *v == best) {
                    best = *v;
                    at = j;
                }
            }
            out.push(at as i64);
        }
        out.resize(rows, 0);
        Ok(tvec!(super::kernel::tensor_from(&[rows, 1], out)?.into_tvalue()))
    }
}

/// ONNX `Sigmoid` as onnxruntime computes it: MLAS's logistic over f32 (tract's own approximation
/// differs from it by up to 8 units in the last place near 0 and 1: 0.9999995 where onnxruntime
/// gives 1, which a following `1 - p` turns into 4.8e-7 against 0), the stable formula over f64.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sigmoid;

pub(crate) fn sigmoid(
    _ctx: &tract_onnx::model::ParsingContext,
    _node: &tract_onnx::pb::NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    Ok(super::kernel::boxed(Sigmoid))
}

impl super::kernel::Kernel for Sigmoid {
    fn name(&self) -> &'static str {
        "Sigmoid"
    }

    fn outputs(&self) -> Vec<super::kernel::OutSpec> {
        vec![super::kernel::OutSpec::same_as_input()]
    }

    fn eval(&self, mut inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        // In place: the input is usually this node's alone.
        let mut x = inputs.swap_remove(0).into_tensor();
        let dt = x.datum_type();
        {
            let mut view = x.try_as_plain_ram_mut()?;
            if dt == f32::datum_type() {
                view.as_slice_mut::<f32>()?.iter_mut().for_each(|v| *v = mlas_logistic(*v));
            } else if dt == f64::datum_type() {
                view.as_slice_mut::<f64>()?.iter_mut().for_each(|v| *v = logistic(*v));
            } else {
                bail!("Sigmoid over {dt:?} values is not supported (float and double are)");
            }
        }
        Ok(tvec!(x.into_tvalue()))
    }
}

#[cfg(test)]
mod argmax_tests {
    use super::super::kernel::{Kernel, tensor_from};
    use super::*;

    fn argmax(last: bool, rows: usize, values: Vec<f32>) -> Vec<i64> {
        let k = values.len() / rows.max(1);
        let t = tensor_from(&[rows, k], values).unwrap();
        let out = RowArgMax { last }.eval(tvec!(t.into_tvalue())).unwrap();
        assert_eq!(out[0].shape(), &[rows, 1]);
        out[0].try_as_plain_ram().unwrap().as_slice::<i64>().unwrap().to_vec()
    }

    #[test]
    fn sigmoid_is_mlas_logistic_over_floats_and_exact_over_doubles() {
        let x = tensor_from(&[2, 2], vec![0.0f32, 18.5, -30.0, f32::NAN]).unwrap();
        let out = Sigmoid.eval(tvec!(x.into_tvalue())).unwrap();
        let got = out[0].try_as_plain_ram().unwrap().as_slice::<f32>().unwrap().to_vec();
        assert_eq!(&got[..3], &[0.5, 1.0, 0.0]);
        assert!(got[3].is_nan());
        let x = tensor_from(&[3], vec![0.0f64, 20.0, -2.0]).unwrap();
        let out = Sigmoid.eval(tvec!(x.into_tvalue())).unwrap();
        let got = out[0].try_as_plain_ram().unwrap().as_slice::<f64>().unwrap().to_vec();
        assert_eq!(got[0], 0.5);
        assert!((got[1] - 1.0 / (1.0 + (-20.0f64).exp())).abs() < 1e-16 && got[1] < 1.0);
        assert!((got[2] - 1.0 / (1.0 + 2.0f64.exp())).abs() < 1e-15);
        let x = tensor_from(&[1], vec![1i64]).unwrap();
        let err = Sigmoid.eval(tvec!(x.into_tvalue())).unwrap_err();
        assert!(format!("{err}").contains("Sigmoid over I64"), "{err}");
    }

    #[test]
    fn row_argmax_takes_the_first_maximum_unless_asked_for_the_last_and_never_nan() {
        let x = vec![0.2, 0.8, 0.8, f32::NAN, 0.1, 0.0, f32::NAN, f32::NAN, f32::NAN];
        assert_eq!(argmax(false, 3, x.clone()), vec![1, 1, 0]);
        assert_eq!(argmax(true, 3, x), vec![2, 1, 0]);
        assert_eq!(argmax(false, 0, vec![]), Vec::<i64>::new());
    }
}
