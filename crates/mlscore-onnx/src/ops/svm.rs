//! `SVMClassifier` and `SVMRegressor` (ai.onnx.ml), as onnxruntime computes them: libsvm's
//! one-vs-one votes and Platt-scaled pairwise probabilities, liblinear's linear mode.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::kernel::{Kernel, OutShape, OutSpec, as_f32, attr, boxed, rows_and_width, tensor_from};
use super::linear::{Choice, Labels};
use mlscore_kernels::svm::{KernelType, kernel_dot, multiclass_probability};
use mlscore_kernels::transform::{
    PostTransform, SecondClass, apply_row_batched, gemm_dot, gemm_stride_k, logistic, write_scores,
};

type Built = TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

fn kernel_type(node: &NodeProto) -> TractResult<KernelType> {
    let p = attr::floats(node, "kernel_params").unwrap_or_default();
    let (gamma, coef0, degree) =
        (p.first().copied().unwrap_or(0.0), p.get(1).copied().unwrap_or(0.0), p.get(2).copied().unwrap_or(0.0));
    Ok(match attr::string(node, "kernel_type").as_deref().unwrap_or("LINEAR") {
        "LINEAR" => KernelType::Linear,
        "POLY" => KernelType::Poly { gamma, coef0, degree },
        "RBF" => KernelType::Rbf { gamma },
        "SIGMOID" => KernelType::Sigmoid { gamma, coef0 },
        other => return Err(attr::bad(node, "kernel_type", format!("unknown kernel '{other}'"))),
    })
}

fn read_x(t: &Tensor, features: usize, op: &str) -> TractResult<(Vec<f32>, usize)> {
    let (rows, width) = rows_and_width(t);
    ensure!(width == features, "{op}: the model takes {features} features, the input has {width}");
    let x = as_f32(t)?;
    let v = x.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
    Ok((v, rows))
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SvmClassifier {
    kt: KernelType,
    labels: Labels,
    /// Support vectors per class; empty in linear mode.
    per_class: Vec<usize>,
    support_vectors: Vec<f32>,
    coefficients: Vec<f32>,
    rho: Vec<f32>,
    prob_a: Vec<f32>,
    prob_b: Vec<f32>,
    post: PostTransform,
    features: usize,
    all_positive: bool,
}

pub(crate) fn svm_classifier(_ctx: &ParsingContext, node: &NodeProto) -> Built {
    let labels = Labels::parse(node, "classlabels_ints", "classlabels_strings")?;
    let classes = labels.len();
    let per_class: Vec<usize> =
        attr::ints(node, "vectors_per_class").unwrap_or_default().iter().map(|v| (*v).max(0) as usize).collect();
    let vectors: usize = per_class.iter().sum();
    let support_vectors = attr::floats(node, "support_vectors").unwrap_or_default();
    let coefficients = attr::req_floats(node, "coefficients")?;
    let rho = attr::req_floats(node, "rho")?;
    let prob_a = attr::floats(node, "prob_a").unwrap_or_default();
    let prob_b = attr::floats(node, "prob_b").unwrap_or_default();
    if prob_a.len() != prob_b.len() {
        return Err(attr::bad(node, "prob_b", "prob_a and prob_b differ in length"));
    }
    let pairs = classes * classes.saturating_sub(1) / 2;
    let (kt, features) = if vectors > 0 {
        if per_class.len() != classes {
            return Err(attr::bad(
                node,
                "vectors_per_class",
                format!("{} values for {classes} classes", per_class.len()),
            ));
        }
        if coefficients.len() < (classes - 1) * vectors
            || rho.len() < pairs
            || (!prob_a.is_empty() && prob_a.len() < pairs)
            || !support_vectors.len().is_multiple_of(vectors)
        {
            return Err(attr::bad(
                node,
                "coefficients",
                "sizes of coefficients, rho, prob_a or support_vectors do not fit the classes",
            ));
        }
        (kernel_type(node)?, support_vectors.len() / vectors)
    } else {
        // liblinear: one weight vector a class, linear kernel.
        (KernelType::Linear, coefficients.len() / classes.max(1))
    };
    let all_positive = coefficients.iter().all(|c| *c >= 0.0);
    let post = PostTransform::parse(attr::string(node, "post_transform").as_deref())
        .map_err(|e| attr::bad(node, "post_transform", e))?;
    Ok(boxed(SvmClassifier {
        kt,
        labels,
        per_class,
        support_vectors,
        coefficients,
        rho,
        prob_a,
        prob_b,
        post,
        features,
        all_positive,
    }))
}

impl SvmClassifier {
    fn svc(&self) -> bool {
        !self.per_class.is_empty()
    }

    fn classes(&self) -> usize {
        self.labels.len()
    }

    fn score_width(&self) -> usize {
        let c = self.classes();
        if self.svc() && self.prob_a.is_empty() { if c > 2 { c * (c - 1) / 2 } else { 2 } } else { c }
    }
}

impl Kernel for SvmClassifier {
    fn name(&self) -> &'static str {
        "SVMClassifier"
    }

    fn outputs(&self) -> Vec<OutSpec> {
        vec![
            OutSpec::new(self.labels.datum_type(), OutShape::Rows),
            OutSpec::new(f32::datum_type(), OutShape::RowsBy(self.score_width())),
        ]
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (x, rows) = read_x(&inputs[0], self.features, "SVMClassifier")?;
        let c = self.classes();
        let width = self.score_width();
        let pairs = c * (c - 1) / 2;
        let have_proba = !self.prob_a.is_empty();
        let mut z = vec![0.0f32; rows * width];
        let mut picks = Vec::with_capacity(rows);
        if !self.svc() {
            let scores = kernel_dot(KernelType::Linear, &x, &self.coefficients, rows, c, self.features, self.rho[0]);
            for r in 0..rows {
                let row = &scores[r * c..(r + 1) * c];
                let (mut best, mut max) = (0, row[0]);
                for (j, v) in row.iter().enumerate().skip(1) {
                    if *v > max {
                        best = j;
                        max = *v;
                    }
                }
                picks.push(self.choose(pairs, max, best, have_proba));
                let out = &mut z[r * width..(r + 1) * width];
                out.copy_from_slice(row);
                if width > 1 {
                    apply_row_batched(self.post, out);
                } else {
                    write_scores(&[out[0]], self.post, SecondClass::No, out);
                }
            }
        } else {
            let vectors: usize = self.per_class.iter().sum();
            let kernels = kernel_dot(self.kt, &x, &self.support_vectors, rows, vectors, self.features, 0.0);
            let starts: Vec<usize> = self
                .per_class
                .iter()
                .scan(0, |s, n| {
                    let here = *s;
                    *s += n;
                    Some(here)
                })
                .collect();
            for r in 0..rows {
                let k = &kernels[r * vectors..(r + 1) * vectors];
                let mut votes = vec![0i64; c];
                let mut scores = Vec::with_capacity(pairs);
                let mut idx = 0;
                for i in 0..c - 1 {
                    for j in i + 1..c {
                        let mut sum = 0.0f64;
                        let (si, ni, sj, nj) = (starts[i], self.per_class[i], starts[j], self.per_class[j]);
                        for m in 0..ni {
                            sum += f64::from(self.coefficients[vectors * (j - 1) + si + m] * k[si + m]);
                        }
                        for m in 0..nj {
                            sum += f64::from(self.coefficients[vectors * i + sj + m] * k[sj + m]);
                        }
                        sum += f64::from(self.rho[idx]);
                        idx += 1;
                        scores.push(sum as f32);
                        votes[if sum > 0.0 { i } else { j }] += 1;
                    }
                }
                // The class with the most votes (the first of equals).
                let mut best = 0;
                for j in 1..c {
                    if votes[j] > votes[best] {
                        best = j;
                    }
                }
                picks.push(self.choose(pairs, 0.0, best, have_proba));
                let out = &mut z[r * width..(r + 1) * width];
                if have_proba {
                    let mut probs = vec![0.0f32; c * c];
                    let mut index = 0;
                    for i in 0..c - 1 {
                        for j in i + 1..c {
                            let v = 1.0 - logistic(scores[index] * self.prob_a[index] + self.prob_b[index]);
                            let v = v.clamp(1.0e-7, 1.0 - 1.0e-7);
                            probs[i * c + j] = v;
                            probs[j * c + i] = 1.0 - v;
                            index += 1;
                        }
                    }
                    multiclass_probability(c, &probs, out, 100);
                    if c > 1 {
                        apply_row_batched(self.post, out);
                    }
                } else if pairs == 1 {
                    // One pairwise score, written with its opposite.
                    let second =
                        if self.post == PostTransform::None { SecondClass::Mirror } else { SecondClass::Complement };
                    write_scores(&[scores[0]], self.post, second, out);
                } else {
                    out.copy_from_slice(&scores);
                    apply_row_batched(self.post, out);
                }
            }
        }
        let labels = self.labels.choose(&picks, |_, l| l.to_string())?;
        Ok(tvec!(labels.into_tvalue(), tensor_from(&[rows, width], z)?.into_tvalue()))
    }
}

impl SvmClassifier {
    fn choose(&self, pairs: usize, max_weight: f32, best: usize, have_proba: bool) -> Choice {
        if pairs != 1 {
            return Choice::Index(best);
        }
        if self.labels.len() == 2 {
            if !have_proba && ((self.all_positive && max_weight >= 0.5) || (max_weight > 0.0 && !self.all_positive)) {
                Choice::Index(1)
            } else {
                Choice::Index(best)
            }
        } else {
            Choice::Literal(i64::from(max_weight > 0.0))
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SvmRegressor {
    kt: KernelType,
    vectors: usize,
    support_vectors: Vec<f32>,
    coefficients: Vec<f32>,
    rho: f32,
    one_class: bool,
    features: usize,
}

pub(crate) fn svm_regressor(_ctx: &ParsingContext, node: &NodeProto) -> Built {
    let vectors = attr::int(node, "n_supports").unwrap_or(0).max(0) as usize;
    let support_vectors = attr::floats(node, "support_vectors").unwrap_or_default();
    let coefficients = attr::req_floats(node, "coefficients")?;
    let rho = attr::req_floats(node, "rho")?[0];
    let (kt, features) = if vectors > 0 {
        if !support_vectors.len().is_multiple_of(vectors) || coefficients.len() < vectors {
            return Err(attr::bad(node, "support_vectors", "sizes do not fit n_supports"));
        }
        (kernel_type(node)?, support_vectors.len() / vectors)
    } else {
        (KernelType::Linear, coefficients.len())
    };
    Ok(boxed(SvmRegressor {
        kt,
        vectors,
        support_vectors,
        coefficients,
        rho,
        one_class: attr::int(node, "one_class").unwrap_or(0) != 0,
        features,
    }))
}

impl Kernel for SvmRegressor {
    fn name(&self) -> &'static str {
        "SVMRegressor"
    }

    fn outputs(&self) -> Vec<OutSpec> {
        vec![OutSpec::new(f32::datum_type(), OutShape::RowsBy(1))]
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (x, rows) = read_x(&inputs[0], self.features, "SVMRegressor")?;
        let mut y = if self.vectors > 0 {
            let k = kernel_dot(self.kt, &x, &self.support_vectors, rows, self.vectors, self.features, 0.0);
            (0..rows)
                .map(|r| {
                    gemm_dot(
                        &k[r * self.vectors..(r + 1) * self.vectors],
                        &self.coefficients[..self.vectors],
                        Some(self.rho),
                        gemm_stride_k(1, self.vectors),
                    )
                })
                .collect::<Vec<f32>>()
        } else {
            kernel_dot(KernelType::Linear, &x, &self.coefficients, rows, 1, self.features, self.rho)
        };
        if self.one_class {
            y.iter_mut().for_each(|v| *v = if *v > 0.0 { 1.0 } else { -1.0 });
        }
        Ok(tvec!(tensor_from(&[rows, 1], y)?.into_tvalue()))
    }
}
