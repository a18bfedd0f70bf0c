//! scikit-learn's feature-expanding and per-feature distribution transformers:
//! `PolynomialFeatures`, `KBinsDiscretizer`, `PowerTransformer` and `QuantileTransformer`
//! (uniform output), as their `transform` computes in the release that wrote them.

use mlscore_pickle::{Graph, Id};

use crate::error::{ReadError, Result, invalid};
use crate::estimator::{Col, Finite, Frame, ScoreError, Transformer, score_err, short, written_since};

#[derive(Debug, Clone)]
pub(crate) enum Preprocess {
    /// Each output column's features (ascending, repeated for powers; none for the bias).
    Polynomial { n_in: usize, terms: Vec<Vec<usize>> },
    /// Per feature, its inner bin edges; one-hot (dense) or the bin's index.
    Bins { inner: Vec<Vec<f64>>, onehot: bool },
    /// Per feature, its lambda; then the fitted standardisation, if any.
    Power { method: PowerMethod, lambdas: Vec<f64>, scaler: Option<Box<Transformer>> },
    /// Per feature, its quantiles (as many as `references`); `normal`: mapped on through the
    /// normal quantile function, else uniform.
    Quantile { quantiles: Vec<Vec<f64>>, references: Vec<f64>, normal: bool },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum PowerMethod {
    /// Yeo-Johnson: by powers (scikit-learn before 1.8), or by `expm1`/`log1p` as SciPy's
    /// `yeojohnson`, which scikit-learn calls from 1.8 on.
    YeoJohnson { scipy: bool },
    /// SciPy's `boxcox`: strictly positive inputs only.
    BoxCox,
}

/// scikit-learn's `_combinations`: for degrees `min.max(1)..=max`, the combinations (with
/// repetition unless `interaction_only`) of the features in lexicographic order, after the
/// bias term.
fn combinations(n: usize, min: usize, max: usize, interaction_only: bool, bias: bool) -> Result<Vec<Vec<usize>>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    if bias {
        out.push(Vec::new());
    }
    for d in min.max(1)..=max {
        // Odometer over non-decreasing (or increasing) index tuples of length d.
        let mut c: Vec<usize> = if interaction_only { (0..d).collect() } else { vec![0; d] };
        if interaction_only && d > n {
            continue;
        }
        loop {
            out.push(c.clone());
            if out.len() > 100_000 {
                return Err(ReadError::Unsupported("PolynomialFeatures with more than 100,000 output features".into()));
            }
            // The rightmost index that can still grow.
            let mut i = d;
            let grown = loop {
                if i == 0 {
                    break false;
                }
                i -= 1;
                let limit = if interaction_only { n - (d - i) } else { n - 1 };
                if c[i] < limit {
                    break true;
                }
            };
            if !grown {
                break;
            }
            c[i] += 1;
            for j in i + 1..d {
                c[j] = if interaction_only { c[j - 1] + 1 } else { c[i] };
            }
        }
    }
    Ok(out)
}

/// Reads one of this module's transformers.
pub(crate) fn read(g: &Graph, id: Id, class: &str) -> Result<Preprocess> {
    let name = short(class);
    let n_in = g.int(g.get(id, "n_features_in_")?)?;
    let n_in = usize::try_from(n_in).map_err(|_| invalid!("{name} fitted on {n_in} features"))?;
    match name {
        "PolynomialFeatures" => {
            let (min, max) = match (g.attr(id, "_min_degree")?, g.attr(id, "_max_degree")?) {
                (Some(a), Some(b)) => (g.int(a)?, g.int(b)?),
                _ => (0, g.int(g.get(id, "degree")?)?),
            };
            let (min, max) = (usize::try_from(min).unwrap_or(0), usize::try_from(max).unwrap_or(0));
            let interaction = g.bool(g.get(id, "interaction_only")?)?;
            let bias = g.bool(g.get(id, "include_bias")?)?;
            if max > 64 || n_in == 0 && max > 0 {
                return Err(invalid!("PolynomialFeatures of degree {max} over {n_in} features"));
            }
            let terms = combinations(n_in, min, max, interaction, bias)?;
            if let Some(n) = g.attr(id, "n_output_features_")?
                && g.int(n)? != terms.len() as i64
            {
                return Err(invalid!(
                    "PolynomialFeatures records {} output features and its degrees give {}",
                    g.int(n)?,
                    terms.len()
                ));
            }
            Ok(Preprocess::Polynomial { n_in, terms })
        }
        "KBinsDiscretizer" => {
            let encode = g.str(g.get(id, "encode")?)?;
            if let Some(d) = g.attr(id, "dtype")?
                && !matches!(g.node(d), mlscore_pickle::Node::None)
                && g.dtype(d).map(|t| t.itemsize() != 8).unwrap_or(true)
            {
                return Err(ReadError::Unsupported(format!(
                    "KBinsDiscretizer with dtype {} (mlscore reads the float64 default)",
                    g.describe(d)
                )));
            }
            // An object array of arrays, one per feature.
            let edges_id = g.get(id, "bin_edges_")?;
            let edges: Vec<Id> = if g.is_array(edges_id) {
                match &g.array(edges_id)?.data {
                    mlscore_pickle::ArrayData::Objects(o) => o.clone(),
                    _ => return Err(invalid!("KBinsDiscretizer's bin_edges_ is not an array of arrays")),
                }
            } else {
                g.items(edges_id)?.to_vec()
            };
            if edges.len() != n_in {
                return Err(invalid!("KBinsDiscretizer has {} bin edge arrays for {n_in} features", edges.len()));
            }
            let mut inner = Vec::new();
            for e in &edges {
                let v = g.vector(*e)?;
                if v.len() < 2 {
                    return Err(invalid!("KBinsDiscretizer has a feature with {} bin edges", v.len()));
                }
                inner.push(v[1..v.len() - 1].to_vec());
            }
            let onehot = match encode {
                "ordinal" => false,
                "onehot" | "onehot-dense" => true,
                other => return Err(ReadError::Unsupported(format!("KBinsDiscretizer encode='{other}'"))),
            };
            Ok(Preprocess::Bins { inner, onehot })
        }
        "PowerTransformer" => {
            let method = match g.str(g.get(id, "method")?)? {
                "yeo-johnson" => PowerMethod::YeoJohnson { scipy: written_since(g, id, 1, 8)? },
                "box-cox" => PowerMethod::BoxCox,
                m => return Err(ReadError::Unsupported(format!("PowerTransformer method '{m}'"))),
            };
            let lambdas = g.vector(g.get(id, "lambdas_")?)?;
            if lambdas.len() != n_in {
                return Err(invalid!("PowerTransformer has {} lambdas for {n_in} features", lambdas.len()));
            }
            let scaler = match (g.attr(id, "standardize")?, g.attr(id, "_scaler")?) {
                (Some(s), Some(sc)) if g.bool(s)? => Some(Box::new(crate::estimator::transformer_of(g, sc)?)),
                _ => None,
            };
            Ok(Preprocess::Power { method, lambdas, scaler })
        }
        "QuantileTransformer" => {
            let normal = match g.str(g.get(id, "output_distribution")?)? {
                "uniform" => false,
                "normal" => true,
                d => return Err(ReadError::Unsupported(format!("QuantileTransformer with output_distribution='{d}'"))),
            };
            let (q, shape) = g.f64s(g.get(id, "quantiles_")?)?;
            let references = g.vector(g.get(id, "references_")?)?;
            let [n_q, n_f] = shape[..] else {
                return Err(invalid!("QuantileTransformer quantiles_ of shape {shape:?}"));
            };
            if n_f != n_in || n_q != references.len() || n_q == 0 || q.len() != n_q * n_f {
                return Err(invalid!(
                    "QuantileTransformer's quantiles_ {shape:?} and {} references do not match its {n_in} features",
                    references.len()
                ));
            }
            let quantiles: Vec<Vec<f64>> = (0..n_f).map(|j| (0..n_q).map(|i| q[i * n_f + j]).collect()).collect();
            if quantiles.iter().any(|c| c.windows(2).any(|w| w[0] > w[1] || w[0].is_nan()))
                || references.windows(2).any(|w| w[0] > w[1] || w[0].is_nan())
            {
                return Err(invalid!("QuantileTransformer's quantiles or references do not go up"));
            }
            Ok(Preprocess::Quantile { quantiles, references, normal })
        }
        other => Err(ReadError::Unsupported(other.to_string())),
    }
}

/// The standard normal quantile of `p` (SciPy's `ndtri`): -inf at 0, inf at 1, NaN outside.
/// From Abramowitz and Stegun's rational start (26.2.23), three Halley steps on libm's `erf`
/// (near the median, where `p - 1/2` is exact) or `erfc` (in the tails, relatively accurate
/// there) bring it to the last bits; the upper half is the lower one's mirror (`1 - p` is exact).
pub(crate) fn ndtri(p: f64) -> f64 {
    if p.is_nan() || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    if p == 0.5 {
        return 0.0;
    }
    if p > 0.5 {
        return -ndtri(1.0 - p);
    }
    let t = (-2.0 * p.ln()).sqrt();
    let mut x = -(t
        - (2.515517 + 0.802853 * t + 0.010328 * t * t)
            / (1.0 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t * t * t));
    let sqrt_2pi = (2.0 * std::f64::consts::PI).sqrt();
    for _ in 0..3 {
        let e = if p >= 0.25 {
            0.5 * libm::erf(x / std::f64::consts::SQRT_2) - (p - 0.5)
        } else {
            0.5 * libm::erfc(-x / std::f64::consts::SQRT_2) - p
        };
        let u = e * sqrt_2pi * (x * x / 2.0).exp();
        if !u.is_finite() {
            break;
        }
        x -= u / (1.0 + x * u / 2.0);
    }
    x
}

fn yeo_johnson(x: f64, l: f64, scipy: bool) -> f64 {
    let eps = f64::EPSILON;
    if x >= 0.0 {
        if l.abs() < eps {
            x.ln_1p()
        } else if scipy {
            (l * x.ln_1p()).exp_m1() / l
        } else {
            ((x + 1.0).powf(l) - 1.0) / l
        }
    } else if (l - 2.0).abs() > eps {
        if scipy {
            -((2.0 - l) * (-x).ln_1p()).exp_m1() / (2.0 - l)
        } else {
            -((-x + 1.0).powf(2.0 - l) - 1.0) / (2.0 - l)
        }
    } else {
        -(-x).ln_1p()
    }
}

fn box_cox(x: f64, l: f64) -> f64 {
    if l.abs() < 1e-19 { x.ln() } else { (l * x.ln()).exp_m1() / l }
}

impl Preprocess {
    pub(crate) fn class(&self) -> &'static str {
        match self {
            Preprocess::Polynomial { .. } => "PolynomialFeatures",
            Preprocess::Bins { .. } => "KBinsDiscretizer",
            Preprocess::Power { .. } => "PowerTransformer",
            Preprocess::Quantile { .. } => "QuantileTransformer",
        }
    }

    /// The columns it outputs where it expands its input.
    pub(crate) fn widest(&self) -> usize {
        match self {
            Preprocess::Polynomial { terms, .. } => terms.len(),
            Preprocess::Bins { inner, onehot: true } => inner.iter().map(|e| e.len() + 1).sum(),
            _ => 0,
        }
    }

    pub(crate) fn transform(&self, f: Frame) -> Result<Frame, ScoreError> {
        let step = self.class();
        let n_in = match self {
            Preprocess::Polynomial { n_in, .. } => *n_in,
            Preprocess::Bins { inner, .. } => inner.len(),
            Preprocess::Power { lambdas, .. } => lambdas.len(),
            Preprocess::Quantile { quantiles, .. } => quantiles.len(),
        };
        f.width_check(n_in, step)?;
        let cols: Vec<&[f64]> = (0..f.cols.len()).map(|j| f.num(j, step)).collect::<Result<_, _>>()?;
        let finite = match self {
            Preprocess::Polynomial { .. } | Preprocess::Bins { .. } => Finite::All,
            Preprocess::Power { .. } | Preprocess::Quantile { .. } => Finite::AllowNan,
        };
        f.check_finite(finite, step)?;
        let rows = f.rows;
        match self {
            Preprocess::Polynomial { terms, .. } => {
                let mut names = Vec::with_capacity(terms.len());
                let mut out = Vec::with_capacity(terms.len());
                for t in terms {
                    // scikit-learn multiplies each term of one degree less (its higher features,
                    // themselves built the same way) by the term's lowest feature.
                    let mut v = match t.last() {
                        None => vec![1.0; rows],
                        Some(last) => cols[*last].to_vec(),
                    };
                    for j in t.iter().rev().skip(1) {
                        v.iter_mut().zip(cols[*j]).for_each(|(a, x)| *a *= x);
                    }
                    out.push(Col::Num(v.into()));
                    names.push(term_name(t, &f.names));
                }
                Ok(Frame { names, cols: out, rows })
            }
            Preprocess::Bins { inner, onehot } => {
                let mut names = Vec::new();
                let mut out = Vec::new();
                for (j, (c, edges)) in cols.iter().zip(inner).enumerate() {
                    // np.searchsorted(inner, x, side="right"): the inner edges at or below x.
                    let bins: Vec<usize> = c.iter().map(|x| edges.partition_point(|e| e <= x)).collect();
                    if *onehot {
                        for b in 0..=edges.len() {
                            out.push(Col::Num(
                                bins.iter().map(|v| f64::from(u8::from(*v == b))).collect::<Vec<_>>().into(),
                            ));
                            names.push(format!("{}_{b}", f.names[j]));
                        }
                    } else {
                        out.push(Col::Num(bins.iter().map(|v| *v as f64).collect::<Vec<_>>().into()));
                        names.push(f.names[j].clone());
                    }
                }
                Ok(Frame { names, cols: out, rows })
            }
            Preprocess::Power { method, lambdas, scaler } => {
                if *method == PowerMethod::BoxCox
                    && let Some((j, r)) =
                        cols.iter().enumerate().find_map(|(j, c)| c.iter().position(|x| *x <= 0.0).map(|r| (j, r)))
                {
                    return Err(score_err(
                        &f.names[j],
                        format!(
                            "row {r} is {}, and PowerTransformer's Box-Cox transformation takes strictly positive values \
                             (scikit-learn raises \"The Box-Cox transformation can only be applied to strictly positive data\")",
                            cols[j][r]
                        ),
                    ));
                }
                let mut out = Vec::with_capacity(cols.len());
                for (c, l) in cols.iter().zip(lambdas) {
                    let v: Vec<f64> = match method {
                        PowerMethod::BoxCox => c.iter().map(|x| box_cox(*x, *l)).collect(),
                        PowerMethod::YeoJohnson { scipy } => c.iter().map(|x| yeo_johnson(*x, *l, *scipy)).collect(),
                    };
                    out.push(Col::Num(v.into()));
                }
                let t = Frame { names: f.names.clone(), cols: out, rows };
                match scaler {
                    Some(s) => s.transform(t),
                    None => Ok(t),
                }
            }
            Preprocess::Quantile { quantiles, references, normal } => {
                let rev_refs: Vec<f64> = references.iter().rev().map(|r| -r).collect();
                // scikit-learn's BOUNDS_THRESHOLD, and the normal output's clip.
                let bound = 1e-7;
                let (clip_lo, clip_hi) = (ndtri(bound - f64::EPSILON), ndtri(1.0 - (bound - f64::EPSILON)));
                let mut out = Vec::with_capacity(cols.len());
                for (c, q) in cols.iter().zip(quantiles) {
                    let rev_q: Vec<f64> = q.iter().rev().map(|v| -v).collect();
                    let (lo, hi) = (q[0], q[q.len() - 1]);
                    let v: Vec<f64> = c
                        .iter()
                        .map(|x| {
                            if x.is_nan() {
                                return *x;
                            }
                            // The bounds are tested on the value itself; the lower one wins.
                            let (at_lo, at_hi) =
                                if *normal { (x - bound < lo, x + bound > hi) } else { (*x == lo, *x == hi) };
                            let u = if at_lo {
                                0.0
                            } else if at_hi {
                                1.0
                            } else {
                                0.5 * (crate::numpy::interp(*x, q, references)
                                    - crate::numpy::interp(-x, &rev_q, &rev_refs))
                            };
                            if *normal { ndtri(u).max(clip_lo).min(clip_hi) } else { u }
                        })
                        .collect();
                    out.push(Col::Num(v.into()));
                }
                Ok(Frame { names: f.names.clone(), cols: out, rows })
            }
        }
    }
}

/// scikit-learn's name for a polynomial term: `1`, `a`, `a^2`, `a b`.
fn term_name(t: &[usize], names: &[String]) -> String {
    if t.is_empty() {
        return "1".into();
    }
    let parts: Vec<String> = t
        .chunk_by(|a, b| a == b)
        .map(|run| {
            let n = names.get(run[0]).cloned().unwrap_or_else(|| format!("x{}", run[0]));
            if run.len() == 1 { n } else { format!("{n}^{}", run.len()) }
        })
        .collect();
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combinations_follow_scikit_learns_order() {
        // PolynomialFeatures(2).fit(np.zeros((1, 3))).powers_, as index lists.
        let c = combinations(3, 0, 2, false, true).unwrap();
        let want: Vec<Vec<usize>> = vec![
            vec![],
            vec![0],
            vec![1],
            vec![2],
            vec![0, 0],
            vec![0, 1],
            vec![0, 2],
            vec![1, 1],
            vec![1, 2],
            vec![2, 2],
        ];
        assert_eq!(c, want);
        // interaction_only=True, degree 3, no bias.
        let c = combinations(3, 0, 3, true, false).unwrap();
        let want: Vec<Vec<usize>> = vec![vec![0], vec![1], vec![2], vec![0, 1], vec![0, 2], vec![1, 2], vec![0, 1, 2]];
        assert_eq!(c, want);
        // degree=(2, 2): only the second-degree terms.
        assert_eq!(combinations(2, 2, 2, false, false).unwrap(), vec![vec![0, 0], vec![0, 1], vec![1, 1]]);
    }

    #[test]
    fn the_normal_quantile_is_scipys() {
        // scipy.special.ndtri 1.17 (repr of each double).
        let cases = [
            (0.5, 0.0),
            (0.975, 1.959963984540054),
            (0.025, -1.9599639845400545),
            (1e-7, -5.1993375821928165),
            (0.3, -0.5244005127080409),
            (0.999999, 4.753424308817087),
            (1e-300, -37.0470962993612),
            (0.5000001, 2.506628273311648e-07),
        ];
        for (p, want) in cases {
            let got = ndtri(p);
            assert!(
                (got - want).abs() <= 4.0 * f64::EPSILON * want.abs().max(1e-300),
                "ndtri({p}) = {got}, SciPy {want}"
            );
        }
        assert_eq!(ndtri(0.0), f64::NEG_INFINITY);
        assert_eq!(ndtri(1.0), f64::INFINITY);
        assert!(ndtri(f64::NAN).is_nan());
    }

    #[test]
    fn polynomial_terms_are_named_as_scikit_learn_names_them() {
        assert_eq!(term_name(&[0, 0, 2], &["a".into(), "b".into(), "c".into()]), "a^2 c");
    }
}
