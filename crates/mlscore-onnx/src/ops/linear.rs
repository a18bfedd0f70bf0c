//! `LinearRegressor` and `LinearClassifier` (ai.onnx.ml), as onnxruntime computes them.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::kernel::{Kernel, OutShape, OutSpec, as_f32, attr, boxed, rows_and_width, tensor_from};
use mlscore_kernels::linear::dot_rows;
use mlscore_kernels::transform::{PostTransform, SecondClass, apply_rows_batched, write_scores};

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
