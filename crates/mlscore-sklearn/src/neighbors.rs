//! `KNeighborsClassifier` and `KNeighborsRegressor`: the `n_neighbors` nearest of the rows the
//! model was fitted on (`_fit_X`, which the file holds), found by brute force over all of them,
//! with the distances scikit-learn's search computes: exact sums for its KD and ball trees,
//! `|x|² - 2 x·y + |y|²` for its brute-force search (euclidean).

use mlscore_kernels::distance::{Accumulate, pairwise};
use mlscore_pickle::{Graph, Id, Labels, Node};

use crate::error::{ReadError, Result, invalid};

/// Rows whose distances are computed together.
const BLOCK: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Metric {
    /// `sqrt(Σ (x - y)²)`: summed exactly (`exact`), or through the norms as the brute-force
    /// search sums it.
    Euclidean {
        exact: bool,
    },
    Manhattan,
    Chebyshev,
}

#[derive(Debug)]
pub(crate) struct Neighbors {
    /// The fitted rows, laid out for how their distances are computed.
    fit: Fitted,
    pub n_fit: usize,
    pub n_features: usize,
    pub k: usize,
    pub metric: Metric,
    /// Weights `1 / distance` (else uniform).
    pub by_distance: bool,
    /// A classifier's classes and each fitted row's class index; a regressor's targets.
    pub target: Target,
}

/// The fitted rows as the distances read them.
#[derive(Debug)]
enum Fitted {
    /// Row-major, for distances summed pair by pair ([`pairwise`]).
    Rows(Vec<f64>),
    /// Transposed (features x rows), with each row's `|y|²` and a zero bias, for the brute
    /// search's `|x|² - 2 x·yᵀ + |y|²` through one matrix product.
    Product { t: Vec<f64>, norms: Vec<f64>, zeros: Vec<f64> },
}

#[derive(Debug)]
pub(crate) enum Target {
    Classes { classes: Labels, y: Vec<usize> },
    Values(Vec<f64>),
}

pub(crate) fn read(g: &Graph, id: Id, name: &str) -> Result<Neighbors> {
    if g.attr(id, "outputs_2d_")?.is_some_and(|o| g.bool(o).unwrap_or(false)) {
        return Err(ReadError::Unsupported(format!("a multi-output {name}")));
    }
    let weights = g.get(id, "weights")?;
    let by_distance = match g.opt_str(weights).ok().flatten() {
        Some("uniform") => false,
        Some("distance") => true,
        _ if matches!(g.node(weights), Node::None) => false,
        _ => {
            return Err(ReadError::Unsupported(format!(
                "{name} with weights given as a function ({}); use 'uniform' or 'distance', or log the model as ONNX",
                g.describe(weights)
            )));
        }
    };
    let method = g.str(g.get(id, "_fit_method")?)?.to_string();
    let metric_name = g.str(g.get(id, "effective_metric_")?)?.to_string();
    let p = match g.attr(id, "effective_metric_params_")? {
        Some(m) => match g.attr(m, "p")? {
            Some(p) => Some(g.float(p)?),
            None => None,
        },
        None => None,
    };
    let metric = match (metric_name.as_str(), p) {
        ("euclidean", _) | ("minkowski", Some(2.0)) | ("l2", _) => Metric::Euclidean { exact: method != "brute" },
        ("manhattan" | "cityblock" | "l1", _) | ("minkowski", Some(1.0)) => Metric::Manhattan,
        ("chebyshev" | "infinity", _) => Metric::Chebyshev,
        (m, p) => {
            return Err(ReadError::Unsupported(format!(
                "{name} with metric '{m}'{} (mlscore reads euclidean, manhattan and chebyshev)",
                p.map(|p| format!(" p={p}")).unwrap_or_default()
            )));
        }
    };
    let (fit, shape) = g.f64s(g.get(id, "_fit_X")?)?;
    let [n_fit, n_features] = shape[..] else { return Err(invalid!("{name}'s _fit_X has shape {shape:?}")) };
    if fit.len() != n_fit.saturating_mul(n_features) || n_features == 0 {
        return Err(invalid!("{name}'s fitted rows do not fill their shape"));
    }
    let k = g.int(g.get(id, "n_neighbors")?)?;
    let k = usize::try_from(k)
        .ok()
        .filter(|k| *k >= 1 && *k <= n_fit)
        .ok_or_else(|| invalid!("{name} asks for {k} neighbours of its {n_fit} fitted rows"))?;
    let y = g.vector(g.get(id, "_y")?)?;
    if y.len() != n_fit {
        return Err(invalid!("{name} has {} targets for {n_fit} fitted rows", y.len()));
    }
    let target = if name.ends_with("Classifier") {
        let classes = g.labels(g.get(id, "classes_")?)?;
        let y = y
            .iter()
            .map(|v| {
                if v.fract() == 0.0 && *v >= 0.0 && (*v as usize) < classes.len() {
                    Ok(*v as usize)
                } else {
                    Err(invalid!("{name} has a fitted row of class {v} of {}", classes.len()))
                }
            })
            .collect::<Result<_>>()?;
        Target::Classes { classes, y }
    } else {
        Target::Values(y)
    };
    let fit = if metric == (Metric::Euclidean { exact: false }) {
        let norms = fit.chunks(n_features).take(n_fit).map(|r| r.iter().map(|v| v * v).sum()).collect();
        let mut t = vec![0.0; n_fit * n_features];
        for (j, row) in fit.chunks(n_features).enumerate().take(n_fit) {
            for (f, v) in row.iter().enumerate() {
                t[f * n_fit + j] = *v;
            }
        }
        Fitted::Product { t, norms, zeros: vec![0.0; n_fit] }
    } else {
        Fitted::Rows(fit)
    };
    Ok(Neighbors { fit, n_fit, n_features, k, metric, by_distance, target })
}

impl Neighbors {
    /// The distances from rows `start..start + n` of `cols` to every fitted row, row by row
    /// (`out[r * n_fit + j]`): summed pair by pair in feature order (vectorised across rows),
    /// or for the brute search through one matrix product.
    fn distances(&self, cols: &[&[f64]], start: usize, n: usize, out: &mut Vec<f64>) {
        match &self.fit {
            Fitted::Product { t, norms, zeros } => {
                let mut x = Vec::new();
                mlscore_kernels::columns::to_rows(cols, start, n, &mut x);
                *out = mlscore_kernels::columns::dense(&x, n, self.n_features, t, zeros);
                for (r, row) in out.chunks_mut(self.n_fit.max(1)).enumerate() {
                    let xn: f64 = cols.iter().map(|c| c[start + r] * c[start + r]).sum();
                    row.iter_mut().zip(norms).for_each(|(d, yn)| *d = (xn + -2.0 * *d + yn).max(0.0).sqrt());
                }
            }
            Fitted::Rows(fit) => {
                let kind = match self.metric {
                    Metric::Euclidean { .. } => Accumulate::SquaredDifference,
                    Metric::Manhattan => Accumulate::AbsoluteDifference,
                    Metric::Chebyshev => Accumulate::MaxAbsoluteDifference,
                };
                pairwise(kind, cols, start, n, &fit[..self.n_fit * self.n_features], out);
                if kind == Accumulate::SquaredDifference {
                    out.iter_mut().for_each(|d| *d = d.sqrt());
                }
            }
        }
    }

    /// A row's neighbours (fitted row, distance) from its distances, nearest first (ties by
    /// fitted row).
    fn neighbours(&self, d: &[f64], near: &mut Vec<(f64, usize)>) {
        // The k smallest (distance, row) pairs, kept sorted; a later row ties after an earlier.
        near.clear();
        let k = self.k;
        for (j, dj) in d.iter().enumerate() {
            if near.len() == k && !(dj.total_cmp(&near[k - 1].0).is_lt()) {
                continue;
            }
            let at = near.partition_point(|(e, _)| e.total_cmp(dj).is_le());
            if near.len() == k {
                near.pop();
            }
            near.insert(at, (*dj, j));
        }
    }

    /// Each neighbour's weight: 1, or `1 / distance` (a row at distance 0 takes all the weight,
    /// shared by the neighbours at distance 0).
    fn weights(&self, near: &[(f64, usize)], w: &mut Vec<f64>) {
        w.clear();
        if !self.by_distance {
            w.extend(near.iter().map(|_| 1.0));
            return;
        }
        if near.iter().any(|(d, _)| *d == 0.0) {
            w.extend(near.iter().map(|(d, _)| f64::from(u8::from(*d == 0.0))));
        } else {
            w.extend(near.iter().map(|(d, _)| 1.0 / d));
        }
    }

    /// A classifier's class indices and probabilities, or a regressor's values.
    pub(crate) fn predict(&self, cols: &[&[f64]], rows: usize) -> (Vec<usize>, Vec<f64>) {
        let mut near = Vec::with_capacity(self.n_fit);
        let mut w = Vec::new();
        let mut dist = Vec::new();
        match &self.target {
            Target::Classes { classes, y } => {
                let c = classes.len();
                let mut labels = Vec::with_capacity(rows);
                let mut proba = vec![0.0; rows * c];
                for (r, out) in proba.chunks_mut(c.max(1)).enumerate().take(rows) {
                    if r % BLOCK == 0 {
                        self.distances(cols, r, BLOCK.min(rows - r), &mut dist);
                    }
                    let at = (r % BLOCK) * self.n_fit;
                    self.neighbours(&dist[at..at + self.n_fit], &mut near);
                    self.weights(&near, &mut w);
                    for ((_, j), wi) in near.iter().zip(&w) {
                        out[y[*j]] += wi;
                    }
                    let mut best = 0;
                    for (i, v) in out.iter().enumerate() {
                        if *v > out[best] {
                            best = i;
                        }
                    }
                    labels.push(best);
                    let total: f64 = crate::numpy::sum(out);
                    out.iter_mut().for_each(|v| *v /= total);
                }
                (labels, proba)
            }
            Target::Values(y) => {
                let mut values = Vec::with_capacity(rows);
                let mut terms = Vec::new();
                for r in 0..rows {
                    if r % BLOCK == 0 {
                        self.distances(cols, r, BLOCK.min(rows - r), &mut dist);
                    }
                    let at = (r % BLOCK) * self.n_fit;
                    self.neighbours(&dist[at..at + self.n_fit], &mut near);
                    self.weights(&near, &mut w);
                    terms.clear();
                    if self.by_distance {
                        terms.extend(near.iter().zip(&w).map(|((_, j), wi)| y[*j] * wi));
                        values.push(crate::numpy::sum(&terms) / crate::numpy::sum(&w));
                    } else {
                        terms.extend(near.iter().map(|(_, j)| y[*j]));
                        values.push(crate::numpy::sum(&terms) / near.len() as f64);
                    }
                }
                (Vec::new(), values)
            }
        }
    }
}
