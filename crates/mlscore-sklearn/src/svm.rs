//! Kernel support vector machines (`SVC`, `NuSVC`, `SVR`, `NuSVR`) as scikit-learn's libsvm
//! predicts with them, and Gaussian naive Bayes.
//!
//! libsvm's one-vs-one decision for the classes `i < j` (pair `p`, in that order) sums the
//! kernel values of class `i`'s support vectors times `_dual_coef_[j - 1]`, then class `j`'s
//! times `_dual_coef_[i]`, and adds `_intercept_[p]` (libsvm's `-rho`). A positive decision is a
//! vote for `i`, any other for `j`; the label is the first class with the most votes.
//! Probabilities (`probability=True`) pass each decision through its Platt sigmoid
//! (`_probA`, `_probB`), clamp it to `[1e-7, 1 - 1e-7]` and couple the pairs.

use mlscore_kernels::svm::{Libsvm, libsvm_kernel, multiclass_probability};
use mlscore_pickle::{Graph, Id, Labels};

use crate::error::{ReadError, Result, invalid};
use crate::estimator::{argmax, short};

/// A fitted kernel SVM, its arrays checked against each other.
#[derive(Debug)]
pub(crate) struct Svm {
    pub kernel: Libsvm,
    /// Support vectors, row-major `(n_sv, n_features)`.
    pub vectors: Vec<f64>,
    pub n_sv: usize,
    pub n_features: usize,
    /// `_dual_coef_`, row-major `(max(k - 1, 1), n_sv)`.
    pub coef: Vec<f64>,
    /// `_intercept_`: one per pair of classes, or one for a regressor.
    pub intercept: Vec<f64>,
    pub kind: SvmKind,
}

#[derive(Debug)]
pub(crate) enum SvmKind {
    Regressor,
    /// `OneClassSVM`: 1 (inlier) where the decision is above zero, else -1.
    OneClass,
    Classifier {
        classes: Labels,
        /// The support vectors of each class, in class order (`_n_support`).
        counts: Vec<usize>,
        /// Platt's `(A, B)` per pair when fitted with `probability=True`.
        platt: Option<(Vec<f64>, Vec<f64>)>,
        /// `break_ties` with `decision_function_shape='ovr'` and more than two classes: the label is
        /// the argmax of the one-vs-rest decision, not the vote.
        break_ties: bool,
        /// `decision_function_shape='ovr'`: `decision_function` gives one column per class.
        ovr: bool,
    },
}

/// Reads an `SVC`, `NuSVC`, `SVR` or `NuSVR`.
pub(crate) fn read(g: &Graph, id: Id, class: &str) -> Result<Svm> {
    let name = short(class);
    if let Some(s) = g.attr(id, "_sparse")?
        && g.bool(s)?
    {
        return Err(ReadError::Unsupported(format!(
            "{name} fitted on a sparse matrix (its support vectors are sparse); fit it on a dense array, or log it as ONNX"
        )));
    }
    let kernel_id = g.get(id, "kernel")?;
    let kernel_name = g.opt_str(kernel_id).ok().flatten().ok_or_else(|| {
        ReadError::Unsupported(format!(
            "{name} with a kernel given as a function ({}); log the model as ONNX, or use one of \
             linear, poly, rbf, sigmoid",
            g.describe(kernel_id)
        ))
    })?;
    let gamma = || g.float(g.get(id, "_gamma")?);
    let coef0 = || g.float(g.get(id, "coef0")?);
    let kernel = match kernel_name {
        "linear" => Libsvm::Linear,
        "rbf" => Libsvm::Rbf { gamma: gamma()? },
        "sigmoid" => Libsvm::Sigmoid { gamma: gamma()?, coef0: coef0()? },
        "poly" => Libsvm::Poly { gamma: gamma()?, coef0: coef0()?, degree: g.int(g.get(id, "degree")?)? },
        "precomputed" => {
            return Err(ReadError::Unsupported(format!(
                "{name} with kernel='precomputed': it scores a matrix of kernel values against its training rows, \
                 not a table's features; log a model that computes the kernel itself"
            )));
        }
        k => return Err(ReadError::Unsupported(format!("{name} kernel '{k}'"))),
    };
    let (vectors, shape) = g.f64s(g.get(id, "support_vectors_")?)?;
    let [n_sv, n_features] = shape[..] else {
        return Err(invalid!("{name}'s support_vectors_ has shape {shape:?}, not (vectors, features)"));
    };
    let (coef, cshape) = g.f64s(g.get(id, "_dual_coef_")?)?;
    if vectors.len() != n_sv.saturating_mul(n_features) || coef.len() != cshape.iter().product::<usize>() {
        return Err(invalid!("{name}'s support vectors or dual coefficients do not fill their shapes"));
    }
    let intercept = g.vector(g.get(id, "_intercept_")?)?;
    let classifier = matches!(name, "SVC" | "NuSVC");
    let kind = if classifier {
        let classes = g.labels(g.get(id, "classes_")?)?;
        let k = classes.len();
        if k < 2 {
            return Err(invalid!("{name} has {k} classes; a classifier has two or more"));
        }
        let support = match g.attr(id, "_n_support")? {
            Some(s) => s,
            None => g.get(id, "n_support_")?,
        };
        let counts = g
            .vector(support)?
            .into_iter()
            .map(|c| if c >= 0.0 && c.fract() == 0.0 { Ok(c as usize) } else { Err(invalid!("{name} n_support {c}")) })
            .collect::<Result<Vec<_>>>()?;
        if counts.len() != k || counts.iter().sum::<usize>() != n_sv {
            return Err(invalid!(
                "{name}'s support vector counts {counts:?} do not add up to its {n_sv} support vectors of {k} classes"
            ));
        }
        if cshape[..] != [k - 1, n_sv] {
            return Err(invalid!("{name}'s dual_coef_ has shape {cshape:?}, not ({}, {n_sv})", k - 1));
        }
        let pairs = k * (k - 1) / 2;
        if intercept.len() != pairs {
            return Err(invalid!("{name} has {} intercepts for {pairs} pairs of classes", intercept.len()));
        }
        let probability = match g.attr(id, "probability")? {
            Some(p) => matches!(g.node(p), mlscore_pickle::Node::Bool(true)),
            None => false,
        };
        let platt = match (g.attr(id, "_probA")?, g.attr(id, "_probB")?) {
            (Some(a), Some(b)) if probability => {
                let (a, b) = (g.vector(a)?, g.vector(b)?);
                if a.is_empty() && b.is_empty() {
                    None
                } else if a.len() != pairs || b.len() != pairs {
                    return Err(invalid!("{name}'s Platt parameters do not match its {pairs} pairs of classes"));
                } else {
                    Some((a, b))
                }
            }
            _ => None,
        };
        let ovr = match g.attr(id, "decision_function_shape")? {
            Some(s) => g.opt_str(s)? == Some("ovr"),
            None => true,
        };
        let break_ties = match g.attr(id, "break_ties")? {
            Some(b) => g.bool(b)?,
            None => false,
        };
        if break_ties && !ovr {
            return Err(ReadError::Unsupported(format!(
                "{name} with break_ties and decision_function_shape='ovo', which scikit-learn's predict refuses"
            )));
        }
        SvmKind::Classifier { classes, counts, platt, break_ties: break_ties && k > 2, ovr }
    } else {
        if cshape[..] != [1, n_sv] || intercept.len() != 1 {
            return Err(invalid!("{name}'s dual_coef_ {cshape:?} and {} intercepts do not match", intercept.len()));
        }
        if name == "OneClassSVM" { SvmKind::OneClass } else { SvmKind::Regressor }
    };
    Ok(Svm { kernel, vectors, n_sv, n_features, coef, intercept, kind })
}

impl Svm {
    /// The decisions: one per pair of classes (row-major, `rows x pairs`), or a regressor's
    /// values.
    fn decisions(&self, cols: &[&[f64]], rows: usize) -> (Vec<f64>, usize) {
        let n_sv = self.n_sv;
        // Kernel values, one run of rows per support vector.
        let mut k = vec![0.0; n_sv * rows];
        for (s, out) in k.chunks_mut(rows.max(1)).enumerate() {
            let v = &self.vectors[s * self.n_features..(s + 1) * self.n_features];
            libsvm_kernel(self.kernel, cols, v, out);
        }
        let kv = |s: usize| &k[s * rows..(s + 1) * rows];
        match &self.kind {
            SvmKind::Regressor | SvmKind::OneClass => {
                let mut sum = vec![0.0; rows];
                for s in 0..n_sv {
                    let c = self.coef[s];
                    sum.iter_mut().zip(kv(s)).for_each(|(a, x)| *a += c * x);
                }
                let b = self.intercept[0];
                sum.iter_mut().for_each(|a| *a -= -b);
                (sum, 1)
            }
            SvmKind::Classifier { counts, .. } => {
                let nc = counts.len();
                let pairs = nc * (nc - 1) / 2;
                let start: Vec<usize> =
                    counts.iter().scan(0, |acc, c| Some(std::mem::replace(acc, *acc + c))).collect();
                let mut dec = vec![0.0; rows * pairs];
                let mut sum = vec![0.0; rows];
                let mut p = 0;
                for i in 0..nc {
                    for j in i + 1..nc {
                        sum.fill(0.0);
                        for (class, row) in [(i, j - 1), (j, i)] {
                            let coef = &self.coef[row * n_sv..(row + 1) * n_sv];
                            let first = start[class];
                            for (s, c) in coef.iter().enumerate().skip(first).take(counts[class]) {
                                sum.iter_mut().zip(kv(s)).for_each(|(a, x)| *a += c * x);
                            }
                        }
                        let rho = -self.intercept[p];
                        for (r, a) in sum.iter().enumerate() {
                            dec[r * pairs + p] = a - rho;
                        }
                        p += 1;
                    }
                }
                (dec, pairs)
            }
        }
    }

    /// scikit-learn's `decision_function`: for two classes one column (libsvm's decision
    /// negated), else one per class (`'ovr'`) or per pair (`'ovo'`). A regressor's values.
    pub(crate) fn decision_function(&self, cols: &[&[f64]], rows: usize) -> (Vec<f64>, usize) {
        let (dec, pairs) = self.decisions(cols, rows);
        match &self.kind {
            SvmKind::Classifier { counts, .. } if counts.len() == 2 => (dec.iter().map(|d| -d).collect(), 1),
            SvmKind::Classifier { counts, ovr: true, .. } => {
                let k = counts.len();
                let mut out = vec![0.0; rows * k];
                for (d, o) in dec.chunks(pairs.max(1)).zip(out.chunks_mut(k)) {
                    ovr_decision(d, k, o);
                }
                (out, k)
            }
            _ => (dec, pairs),
        }
    }

    /// A regressor's values, or a classifier's class indices and (with Platt parameters)
    /// probabilities.
    pub(crate) fn predict(&self, cols: &[&[f64]], rows: usize) -> (Vec<f64>, Vec<usize>, Option<Vec<f64>>) {
        let (dec, pairs) = self.decisions(cols, rows);
        let SvmKind::Classifier { counts, platt, break_ties, .. } = &self.kind else {
            if matches!(self.kind, SvmKind::OneClass) {
                return (Vec::new(), dec.iter().map(|d| usize::from(*d > 0.0)).collect(), None);
            }
            return (dec, Vec::new(), None);
        };
        let k = counts.len();
        let mut labels = Vec::with_capacity(rows);
        let mut votes = vec![0usize; k];
        let mut score = vec![0.0; k];
        for d in dec.chunks(pairs.max(1)).take(rows) {
            if *break_ties {
                // scikit-learn's argmax of its one-vs-rest decision.
                ovr_decision(d, k, &mut score);
                labels.push(argmax(&score));
            } else {
                votes.fill(0);
                let mut p = 0;
                for i in 0..k {
                    for j in i + 1..k {
                        votes[if d[p] > 0.0 { i } else { j }] += 1;
                        p += 1;
                    }
                }
                let mut best = 0;
                for c in 1..k {
                    if votes[c] > votes[best] {
                        best = c;
                    }
                }
                labels.push(best);
            }
        }
        let proba = platt.as_ref().map(|(a, b)| {
            let mut out = vec![0.0; rows * k];
            let mut r = vec![0.0; k * k];
            for (d, o) in dec.chunks(pairs.max(1)).zip(out.chunks_mut(k)) {
                let mut p = 0;
                for i in 0..k {
                    for j in i + 1..k {
                        let v = clamp(sigmoid_predict(d[p], a[p], b[p]), 1e-7, 1.0 - 1e-7);
                        r[i * k + j] = v;
                        r[j * k + i] = 1.0 - v;
                        p += 1;
                    }
                }
                multiclass_probability(k, &r, o, k.max(100));
            }
            out
        });
        (Vec::new(), labels, proba)
    }
}

/// scikit-learn's `_ovr_decision_function(dec < 0, -dec, k)` for one row's pairwise decisions:
/// each class's votes plus its summed confidence squashed into (-1/3, 1/3).
fn ovr_decision(d: &[f64], k: usize, out: &mut [f64]) {
    let mut votes = vec![0.0; k];
    out.fill(0.0);
    let mut p = 0;
    for i in 0..k {
        for j in i + 1..k {
            out[i] -= -d[p];
            out[j] += -d[p];
            votes[if d[p] < 0.0 { j } else { i }] += 1.0;
            p += 1;
        }
    }
    for (o, v) in out.iter_mut().zip(votes) {
        *o = v + *o / (3.0 * (o.abs() + 1.0));
    }
}

/// libsvm's Platt sigmoid, written to avoid cancellation on either side.
fn sigmoid_predict(dec: f64, a: f64, b: f64) -> f64 {
    let f = dec * a + b;
    if f >= 0.0 { (-f).exp() / (1.0 + (-f).exp()) } else { 1.0 / (1.0 + f.exp()) }
}

/// `min(max(v, lo), hi)` as C++'s `std::min` / `std::max` take them (NaN passes through).
fn clamp(v: f64, lo: f64, hi: f64) -> f64 {
    let v = if v < lo { lo } else { v };
    if hi < v { hi } else { v }
}

/// A fitted `GaussianNB`: per class, the log prior, `-0.5 Σ log(2π var)`, the means and
/// variances.
#[derive(Debug)]
pub(crate) struct GaussianNb {
    pub classes: Labels,
    pub log_prior: Vec<f64>,
    pub norm: Vec<f64>,
    /// Row-major `(classes, features)`.
    pub theta: Vec<f64>,
    pub var: Vec<f64>,
    pub n_features: usize,
}

pub(crate) fn gaussian_nb(g: &Graph, id: Id) -> Result<GaussianNb> {
    let classes = g.labels(g.get(id, "classes_")?)?;
    let (theta, shape) = g.f64s(g.get(id, "theta_")?)?;
    let var_id = match g.attr(id, "var_")? {
        Some(v) => v,
        None => g.get(id, "sigma_")?,
    };
    let (var, vshape) = g.f64s(var_id)?;
    let prior = g.vector(g.get(id, "class_prior_")?)?;
    let k = classes.len();
    let [kt, n] = shape[..] else { return Err(invalid!("GaussianNB's theta_ has shape {shape:?}")) };
    if kt != k
        || vshape != shape
        || prior.len() != k
        || k == 0
        || theta.len() != k.saturating_mul(n)
        || var.len() != theta.len()
    {
        return Err(invalid!(
            "GaussianNB's theta_ {shape:?}, var_ {vshape:?} and {} priors do not match its {k} classes",
            prior.len()
        ));
    }
    let norm = (0..k)
        .map(|c| {
            let logs: Vec<f64> =
                var[c * n..(c + 1) * n].iter().map(|s| (2.0 * std::f64::consts::PI * s).ln()).collect();
            -0.5 * crate::numpy::sum(&logs)
        })
        .collect();
    Ok(GaussianNb { classes, log_prior: prior.iter().map(|p| p.ln()).collect(), norm, theta, var, n_features: n })
}

impl GaussianNb {
    /// Class indices and probabilities: the joint log likelihood's argmax, and its softmax by
    /// scikit-learn's logsumexp.
    pub(crate) fn predict(&self, cols: &[&[f64]], rows: usize) -> (Vec<usize>, Vec<f64>) {
        let k = self.classes.len();
        let n = self.n_features;
        let mut jll = vec![0.0; rows * k];
        let mut terms = vec![0.0; n];
        for r in 0..rows {
            for c in 0..k {
                for (f, t) in terms.iter_mut().enumerate() {
                    let d = cols[f][r] - self.theta[c * n + f];
                    *t = d * d / self.var[c * n + f];
                }
                jll[r * k + c] = self.log_prior[c] + (self.norm[c] - 0.5 * crate::numpy::sum(&terms));
            }
        }
        let mut labels = Vec::with_capacity(rows);
        let mut proba = jll;
        for row in proba.chunks_mut(k.max(1)) {
            labels.push(argmax(row));
            let lse = logsumexp(row);
            row.iter_mut().for_each(|v| *v = (*v - lse).exp());
        }
        (labels, proba)
    }
}

/// scikit-learn's `_logsumexp` of one row: the maximum `m` (taken `count` times) plus
/// `log1p(Σ exp(others - m) / count) + log(count)`.
fn logsumexp(row: &[f64]) -> f64 {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, |a, b| if b > a || b.is_nan() { b } else { a });
    let count = row.iter().filter(|v| **v == max).count() as f64;
    let shift = if max.is_finite() { max } else { 0.0 };
    let others: Vec<f64> = row.iter().map(|v| if *v == max { 0.0 } else { (v - shift).exp() }).collect();
    let s = crate::numpy::sum(&others);
    let s = if s == 0.0 { s } else { s / count };
    s.ln_1p() + count.ln() + max
}
