//! `LinearRegressor` and `LinearClassifier` (ai.onnx.ml), as onnxruntime computes them.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::kernel::{Kernel, OutShape, OutSpec, as_f32, attr, boxed, rows_and_width, tensor_from};
use mlscore_kernels::transform::{PostTransform, SecondClass, apply_rows_batched, fma, gemm_stride_k, write_scores};

/// A classifier's label for one row: the index of a class label, or a literal 0 / 1 (onnxruntime's
/// fallback for binary models with one class label, or none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Choice {
    Index(usize),
    Literal(i64),
}

/// Class labels of a classifier: ints or strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Labels {
    Ints(Vec<i64>),
    Strings(Vec<String>),
}

impl Labels {
    pub(crate) fn parse(node: &NodeProto, ints_attr: &str, strings_attr: &str) -> TractResult<Self> {
        match (
            attr::ints(node, ints_attr).filter(|v| !v.is_empty()),
            attr::strings(node, strings_attr).filter(|v| !v.is_empty()),
        ) {
            (Some(i), None) => Ok(Labels::Ints(i)),
            (None, Some(s)) => Ok(Labels::Strings(s)),
            (None, None) => Err(attr::bad(node, ints_attr, format!("neither {ints_attr} nor {strings_attr} is set"))),
            (Some(_), Some(_)) => {
                Err(attr::bad(node, ints_attr, format!("both {ints_attr} and {strings_attr} are set")))
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Labels::Ints(v) => v.len(),
            Labels::Strings(v) => v.len(),
        }
    }

    pub(crate) fn datum_type(&self) -> DatumType {
        match self {
            Labels::Ints(_) => i64::datum_type(),
            Labels::Strings(_) => String::datum_type(),
        }
    }

    /// A `[N]` tensor of the chosen labels. Int labels take a literal as it is; what a literal is
    /// among string labels differs between onnxruntime's operators, so `string_literal` says.
    pub(crate) fn choose(
        &self,
        picks: &[Choice],
        string_literal: impl Fn(&[String], i64) -> String,
    ) -> TractResult<Tensor> {
        match self {
            Labels::Ints(v) => tensor_from(
                &[picks.len()],
                picks
                    .iter()
                    .map(|p| match p {
                        Choice::Index(i) => v[*i],
                        Choice::Literal(l) => *l,
                    })
                    .collect::<Vec<i64>>(),
            ),
            Labels::Strings(v) => tensor_from(
                &[picks.len()],
                picks
                    .iter()
                    .map(|p| match p {
                        Choice::Index(i) => v[*i].clone(),
                        Choice::Literal(l) => string_literal(v, *l),
                    })
                    .collect::<Vec<String>>(),
            ),
        }
    }

    /// A `[N]` tensor of the labels at `indices` (an index past the end takes `fallback`).
    pub(crate) fn gather(&self, indices: &[usize], fallback: &(i64, &str)) -> TractResult<Tensor> {
        match self {
            Labels::Ints(v) => tensor_from(
                &[indices.len()],
                indices.iter().map(|i| v.get(*i).copied().unwrap_or(fallback.0)).collect(),
            ),
            Labels::Strings(v) => tensor_from(
                &[indices.len()],
                indices
                    .iter()
                    .map(|i| v.get(*i).cloned().unwrap_or_else(|| fallback.1.to_string()))
                    .collect::<Vec<String>>(),
            ),
        }
    }
}

/// `x · coefficientsᵀ + intercepts` for every row, each value computed as MLAS's SGEMM does (see
/// [`gemm_dot`](mlscore_kernels::transform::gemm_dot)). Rows are taken in blocks, transposed so that one feature of every row of the
/// block is contiguous: the block's independent sums then run in SIMD lanes, each in MLAS's order.
fn dot_rows(
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

fn check_features(name: &str, coefficients: usize, targets: usize, features: usize) -> TractResult<()> {
    ensure!(
        coefficients == targets * features,
        "{name}: {coefficients} coefficients do not fit {targets} targets of {features} features (the input has {features} columns)"
    );
    Ok(())
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LinearRegressor {
    coefficients: Vec<f32>,
    intercepts: Option<Vec<f32>>,
    targets: usize,
    post: PostTransform,
}

pub(crate) fn linear_regressor(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let targets = attr::int(node, "targets").unwrap_or(1).max(1) as usize;
    let intercepts = attr::floats(node, "intercepts").filter(|v| v.len() == targets);
    let post = PostTransform::parse(attr::string(node, "post_transform").as_deref())
        .map_err(|e| attr::bad(node, "post_transform", e))?;
    Ok(boxed(LinearRegressor { coefficients: attr::req_floats(node, "coefficients")?, intercepts, targets, post }))
}

impl Kernel for LinearRegressor {
    fn name(&self) -> &'static str {
        "LinearRegressor"
    }

    fn outputs(&self) -> Vec<OutSpec> {
        vec![OutSpec::new(f32::datum_type(), OutShape::RowsBy(self.targets))]
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = as_f32(&inputs[0])?;
        let (rows, features) = rows_and_width(&x);
        check_features("LinearRegressor", self.coefficients.len(), self.targets, features)?;
        let view = x.try_as_plain_ram()?;
        let mut out = dot_rows(
            view.as_slice::<f32>()?,
            rows,
            features,
            &self.coefficients,
            self.intercepts.as_deref(),
            self.targets,
        );
        if self.targets > 1 {
            apply_rows_batched(self.post, &mut out, self.targets);
        } else if self.post == PostTransform::Probit {
            out.iter_mut().for_each(|v| *v = mlscore_kernels::transform::probit(*v));
        }
        Ok(tvec!(tensor_from(&[rows, self.targets], out)?.into_tvalue()))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LinearClassifier {
    coefficients: Vec<f32>,
    intercepts: Vec<f32>,
    classes: usize,
    labels: Labels,
    post: PostTransform,
}

pub(crate) fn linear_classifier(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let labels = Labels::parse(node, "classlabels_ints", "classlabels_strings")?;
    let coefficients = attr::req_floats(node, "coefficients")?;
    let mut intercepts = attr::floats(node, "intercepts").unwrap_or_default();
    // onnxruntime counts the scores by the intercepts; without them, by the labels.
    let classes = if intercepts.is_empty() {
        let n = if labels.len() == 2 && coefficients.len() % 2 == 1 { 1 } else { labels.len().max(1) };
        intercepts = vec![0.0; n];
        n
    } else {
        intercepts.len()
    };
    let post = PostTransform::parse(attr::string(node, "post_transform").as_deref())
        .map_err(|e| attr::bad(node, "post_transform", e))?;
    Ok(boxed(LinearClassifier { coefficients, intercepts, classes, labels, post }))
}

impl LinearClassifier {
    fn add_second_class(&self) -> bool {
        self.classes == 1 && self.labels.len() == 2
    }

    fn score_width(&self) -> usize {
        if self.add_second_class() { 2 } else { self.classes }
    }
}

impl Kernel for LinearClassifier {
    fn name(&self) -> &'static str {
        "LinearClassifier"
    }

    fn outputs(&self) -> Vec<OutSpec> {
        vec![
            OutSpec::new(self.labels.datum_type(), OutShape::Rows),
            OutSpec::new(f32::datum_type(), OutShape::RowsBy(self.score_width())),
        ]
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = as_f32(&inputs[0])?;
        let (rows, features) = rows_and_width(&x);
        check_features("LinearClassifier", self.coefficients.len(), self.classes, features)?;
        let view = x.try_as_plain_ram()?;
        let scores =
            dot_rows(view.as_slice::<f32>()?, rows, features, &self.coefficients, Some(&self.intercepts), self.classes);
        let width = self.score_width();
        let mut z = vec![0.0f32; rows * width];
        let labels = if self.classes == 1 {
            // One score: the positive class when it is above zero; without two class labels, 1 and 0.
            let picks: Vec<usize> = scores.iter().map(|s| usize::from(*s > 0.0)).collect();
            let t = match &self.labels {
                l if l.len() == 2 => l.gather(&picks, &(0, ""))?,
                Labels::Ints(_) => tensor_from(&[rows], picks.iter().map(|p| *p as i64).collect::<Vec<i64>>())?,
                Labels::Strings(_) => {
                    tensor_from(&[rows], picks.iter().map(|p| p.to_string()).collect::<Vec<String>>())?
                }
            };
            let second = if self.add_second_class() { SecondClass::Complement } else { SecondClass::No };
            for (r, s) in scores.iter().enumerate() {
                write_scores(&[*s], self.post, second, &mut z[r * width..(r + 1) * width]);
            }
            t
        } else {
            let mut picks = Vec::with_capacity(rows);
            for (r, row) in scores.chunks(self.classes).enumerate() {
                let mut best = 0;
                for (j, v) in row.iter().enumerate().skip(1) {
                    if *v > row[best] {
                        best = j;
                    }
                }
                picks.push(best);
                z[r * width..(r + 1) * width].copy_from_slice(row);
            }
            apply_rows_batched(self.post, &mut z, width);
            self.labels.gather(&picks, &(0, ""))?
        };
        Ok(tvec!(labels.into_tvalue(), tensor_from(&[rows, width], z)?.into_tvalue()))
    }
}
