//! scikit-learn's meta-estimators over several fitted estimators: `VotingClassifier`,
//! `VotingRegressor`, `StackingClassifier` and `StackingRegressor`, each member a fitted
//! estimator or pipeline scored on the same rows.

use mlscore_pickle::Labels;

use crate::estimator::{Col, Frame, Predicted, Predictor, ScoreError, Transformer, argmax, score_err};

/// One fitted estimator: a pipeline's steps, then its predictor.
#[derive(Debug)]
pub(crate) struct Sub {
    pub steps: Vec<Transformer>,
    pub predictor: Predictor,
}

impl Sub {
    pub(crate) fn set_text_nulls(&mut self, nulls: crate::estimator::TextNulls) {
        self.steps.iter_mut().for_each(|s| s.set_text_nulls(nulls));
        self.predictor.set_text_nulls(nulls);
    }

    /// What its predictor receives: the frame through its steps.
    pub(crate) fn input(&self, f: Frame) -> Result<Frame, ScoreError> {
        self.steps.iter().try_fold(f, |x, s| s.transform(x))
    }

    pub(crate) fn predict(&self, f: &Frame, name: &str) -> Result<Predicted, ScoreError> {
        self.predictor.predict(&self.input(f.clone())?, name)
    }

    fn decision(&self, f: &Frame, name: &str) -> Result<(Vec<f64>, usize), ScoreError> {
        self.predictor.decision(&self.input(f.clone())?, name)
    }

    /// The most values a row holds on its way through (see [`Predictor::widest`]).
    pub(crate) fn widest(&self) -> usize {
        self.steps.iter().map(Transformer::widest).max().unwrap_or(0).max(self.predictor.widest())
    }
}

/// What a stacking member contributes (`stack_method_`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Method {
    Proba,
    Decision,
    Predict,
}

#[derive(Debug)]
pub(crate) enum Ensemble {
    /// `classes`: a classifier's (its members predict their indices); none for a regressor.
    /// `weights`: `_weights_not_none`.
    Voting {
        members: Vec<Sub>,
        weights: Option<Vec<f64>>,
        soft: bool,
        classes: Option<Labels>,
    },
    Stacking {
        members: Vec<(Sub, Method)>,
        last: Box<Sub>,
        passthrough: bool,
        classes: Option<Labels>,
    },
    /// One binary estimator per class (one for two classes); `first_wins`: equal scores go to
    /// the first class (scikit-learn 1.8 and later), else to the last; `zero_rows_kept`: rows
    /// of probabilities summing to 0 stay 0 (1.7 and later), else they divide to NaN.
    OneVsRest {
        members: Vec<Sub>,
        classes: Labels,
        first_wins: bool,
        zero_rows_kept: bool,
        proba: bool,
    },
    /// Bagging: each member on its feature subset, its class indices mapped to the model's
    /// (a member may have seen a subset of the classes); `classes`: none for a regressor.
    Bagging {
        members: Vec<(Sub, Vec<usize>, Vec<usize>)>,
        classes: Option<Labels>,
    },
    /// AdaBoost: a classifier's weighted votes (SAMME) or its members' centred log
    /// probabilities (SAMME.R, before scikit-learn 1.6), or a regressor's weighted median.
    /// `weights`: `estimator_weights_`, whole (its sum divides); `symmetric`: SAMME's other
    /// classes get `-w / (k - 1)` (scikit-learn 1.3 and later), else 0.
    AdaBoost {
        members: Vec<Sub>,
        weights: Vec<f64>,
        classes: Option<Labels>,
        samme_r: bool,
        symmetric: bool,
    },
}

impl Ensemble {
    pub(crate) fn classes(&self) -> Option<&Labels> {
        match self {
            Ensemble::Voting { classes, .. }
            | Ensemble::Stacking { classes, .. }
            | Ensemble::Bagging { classes, .. } => classes.as_ref(),
            Ensemble::OneVsRest { classes, .. } => Some(classes),
            Ensemble::AdaBoost { classes, .. } => classes.as_ref(),
        }
    }

    pub(crate) fn has_proba(&self) -> bool {
        match self {
            Ensemble::Voting { soft, classes, .. } => *soft && classes.is_some(),
            Ensemble::Stacking { last, classes, .. } => classes.is_some() && last.predictor.has_proba(),
            Ensemble::OneVsRest { proba, .. } => *proba,
            Ensemble::Bagging { classes, .. } | Ensemble::AdaBoost { classes, .. } => classes.is_some(),
        }
    }

    /// Every fitted estimator it holds (a stacking's final one last).
    pub(crate) fn members_mut(&mut self) -> Vec<&mut Sub> {
        match self {
            Ensemble::Voting { members, .. }
            | Ensemble::OneVsRest { members, .. }
            | Ensemble::AdaBoost { members, .. } => members.iter_mut().collect(),
            Ensemble::Stacking { members, last, .. } => {
                members.iter_mut().map(|(m, _)| m).chain([last.as_mut()]).collect()
            }
            Ensemble::Bagging { members, .. } => members.iter_mut().map(|(m, _, _)| m).collect(),
        }
    }

    pub(crate) fn widest(&self) -> usize {
        let subs: Vec<&Sub> = match self {
            Ensemble::Voting { members, .. }
            | Ensemble::OneVsRest { members, .. }
            | Ensemble::AdaBoost { members, .. } => members.iter().collect(),
            Ensemble::Stacking { members, last, .. } => members.iter().map(|(m, _)| m).chain([last.as_ref()]).collect(),
            Ensemble::Bagging { members, .. } => members.iter().map(|(m, _, _)| m).collect(),
        };
        subs.iter().map(|s| s.widest()).max().unwrap_or(0)
    }

    pub(crate) fn predict(&self, f: &Frame, name: &str) -> Result<Predicted, ScoreError> {
        let rows = f.rows;
        match self {
            Ensemble::AdaBoost { members, weights, classes, samme_r, symmetric } => {
                // AdaBoost validates its input itself: no NaN, no infinity.
                f.check_finite(crate::estimator::Finite::All, name)?;
                let total = crate::numpy::sum(weights);
                let Some(classes) = classes else {
                    // The weighted median of the members' predictions.
                    let mut preds = Vec::with_capacity(members.len());
                    for m in members {
                        match m.predict(f, name)? {
                            Predicted::Values { values, width: 1 } => preds.push(values),
                            _ => {
                                return Err(score_err(
                                    name,
                                    "an AdaBoostRegressor member gave no single value per row",
                                ));
                            }
                        }
                    }
                    let mut order: Vec<usize> = Vec::with_capacity(members.len());
                    let values = (0..rows)
                        .map(|r| {
                            order.clear();
                            order.extend(0..members.len());
                            order.sort_by(|a, b| preds[*a][r].total_cmp(&preds[*b][r]));
                            let mut cdf = Vec::with_capacity(order.len());
                            let mut acc = 0.0;
                            for i in &order {
                                acc += weights[*i];
                                cdf.push(acc);
                            }
                            let half = 0.5 * acc;
                            let at = cdf.iter().position(|c| *c >= half).unwrap_or(0);
                            preds[order[at]][r]
                        })
                        .collect();
                    return Ok(Predicted::Values { values, width: 1 });
                };
                let k = classes.len();
                let mut pred = vec![0.0; rows * k];
                for (m, w) in members.iter().zip(weights) {
                    match m.predict(f, name)? {
                        Predicted::Classes { proba: Some(p), .. } if *samme_r => {
                            for (row, pr) in pred.chunks_mut(k).zip(p.chunks(k)) {
                                let logs: Vec<f64> = pr.iter().map(|v| v.max(f64::EPSILON).ln()).collect();
                                let s = crate::numpy::sum(&logs);
                                for (a, l) in row.iter_mut().zip(&logs) {
                                    *a += (k - 1) as f64 * (l - (1.0 / k as f64) * s);
                                }
                            }
                        }
                        Predicted::Classes { labels, .. } if !*samme_r => {
                            let other = if *symmetric { -1.0 / (k - 1) as f64 * w } else { 0.0 };
                            for (row, l) in pred.chunks_mut(k).zip(&labels) {
                                for (c, a) in row.iter_mut().enumerate() {
                                    *a += if c == *l { *w } else { other };
                                }
                            }
                        }
                        _ => {
                            return Err(score_err(
                                name,
                                "an AdaBoostClassifier member gave no classes or probabilities",
                            ));
                        }
                    }
                }
                pred.iter_mut().for_each(|v| *v /= total);
                let (labels, mut proba): (Vec<usize>, Vec<f64>) = if k == 2 {
                    let d: Vec<f64> = pred.chunks(2).map(|p| -p[0] + p[1]).collect();
                    (
                        d.iter().map(|v| usize::from(*v > 0.0)).collect(),
                        d.iter().flat_map(|v| [-v / 2.0, v / 2.0]).collect(),
                    )
                } else {
                    let labels = pred.chunks(k).map(argmax).collect();
                    let div = (k - 1) as f64;
                    (labels, pred.iter().map(|v| v / div).collect())
                };
                for row in proba.chunks_mut(k) {
                    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    row.iter_mut().for_each(|v| *v = (*v - max).exp());
                    let s = crate::numpy::sum(row);
                    row.iter_mut().for_each(|v| *v /= s);
                }
                Ok(Predicted::Classes { labels, proba: Some(proba), classes: classes.clone() })
            }
            Ensemble::OneVsRest { members, classes, first_wins, zero_rows_kept, proba } => {
                let mut scores = Vec::with_capacity(members.len());
                let mut probas = Vec::new();
                for m in members {
                    let x = m.input(f.clone())?;
                    // _predict_binary: the decision function, else the positive class's probability.
                    let (v, w) = m.predictor.response(&x, name)?;
                    if w != 1 {
                        return Err(score_err(name, "a one-vs-rest member is not binary"));
                    }
                    if *proba {
                        probas.push(match m.predictor.predict(&x, name)? {
                            Predicted::Classes { proba: Some(p), .. } => {
                                p.chunks(2).map(|r| r[1]).collect::<Vec<f64>>()
                            }
                            _ => return Err(score_err(name, "a one-vs-rest member gave no probabilities")),
                        });
                    }
                    scores.push((v, m.predictor.has_decision()));
                }
                let labels: Vec<usize> = if members.len() == 1 {
                    let (v, decision) = &scores[0];
                    let thresh = if *decision { 0.0 } else { 0.5 };
                    v.iter().map(|s| usize::from(*s > thresh)).collect()
                } else {
                    (0..rows)
                        .map(|r| {
                            let mut best = 0;
                            for (i, (v, _)) in scores.iter().enumerate().skip(1) {
                                let (a, b) = (v[r], scores[best].0[r]);
                                if a > b || (!*first_wins && a == b) {
                                    best = i;
                                }
                            }
                            best
                        })
                        .collect()
                };
                let proba = proba.then(|| {
                    let k = classes.len();
                    let mut out = vec![0.0; rows * k];
                    for (r, row) in out.chunks_mut(k).enumerate() {
                        if probas.len() == 1 {
                            row[0] = 1.0 - probas[0][r];
                            row[1] = probas[0][r];
                        } else {
                            for (c, p) in probas.iter().enumerate() {
                                row[c] = p[r];
                            }
                        }
                        let sum = crate::numpy::sum(row);
                        if sum != 0.0 || !*zero_rows_kept {
                            row.iter_mut().for_each(|v| *v /= sum);
                        }
                    }
                    out
                });
                Ok(Predicted::Classes { labels, proba, classes: classes.clone() })
            }
            Ensemble::Bagging { members, classes } => {
                let k = classes.as_ref().map_or(1, Labels::len);
                let mut sum = vec![0.0; rows * k];
                for (m, features, own) in members {
                    let mut x = Frame { names: Vec::new(), cols: Vec::new(), rows };
                    for j in features {
                        let c = f
                            .cols
                            .get(*j)
                            .ok_or_else(|| score_err(name, format!("a bagged estimator reads feature {j}")))?;
                        x.cols.push(c.clone());
                        x.names.push(f.names.get(*j).cloned().unwrap_or_default());
                    }
                    let x = m.input(x)?;
                    match (m.predictor.predict(&x, name)?, classes) {
                        (Predicted::Values { values, width: 1 }, None) => {
                            sum.iter_mut().zip(&values).for_each(|(a, v)| *a += v);
                        }
                        (Predicted::Classes { proba: Some(p), .. }, Some(_)) => {
                            let w = own.len();
                            for (row, pr) in sum.chunks_mut(k).zip(p.chunks(w.max(1))) {
                                for (c, v) in own.iter().zip(pr) {
                                    row[*c] += v;
                                }
                            }
                        }
                        (Predicted::Classes { labels, proba: None, .. }, Some(_)) => {
                            for (row, l) in sum.chunks_mut(k).zip(&labels) {
                                let c = *own
                                    .get(*l)
                                    .ok_or_else(|| score_err(name, "a bagged estimator predicted an unknown class"))?;
                                row[c] += 1.0;
                            }
                        }
                        _ => {
                            return Err(score_err(
                                name,
                                "a bagged estimator gave another kind of output than the model",
                            ));
                        }
                    }
                }
                let n = members.len() as f64;
                sum.iter_mut().for_each(|v| *v /= n);
                Ok(match classes {
                    None => Predicted::Values { values: sum, width: 1 },
                    Some(c) => Predicted::Classes {
                        labels: sum.chunks(k).map(argmax).collect(),
                        proba: Some(sum),
                        classes: c.clone(),
                    },
                })
            }
            Ensemble::Voting { members, weights, classes: None, .. } => {
                // np.average over the members' predictions, in member order.
                let mut sum = vec![0.0; rows];
                for (i, m) in members.iter().enumerate() {
                    let Predicted::Values { values, width: 1 } = m.predict(f, name)? else {
                        return Err(score_err(name, "a VotingRegressor member gave no single value per row"));
                    };
                    let w = weights.as_ref().map_or(1.0, |w| w[i]);
                    sum.iter_mut().zip(&values).for_each(|(s, v)| *s += if weights.is_some() { v * w } else { *v });
                }
                let scale = weights.as_ref().map_or(members.len() as f64, |w| w.iter().sum());
                sum.iter_mut().for_each(|s| *s /= scale);
                Ok(Predicted::Values { values: sum, width: 1 })
            }
            Ensemble::Voting { members, weights, soft: true, classes: Some(classes) } => {
                let k = classes.len();
                let mut sum = vec![0.0; rows * k];
                for (i, m) in members.iter().enumerate() {
                    let Predicted::Classes { proba: Some(p), .. } = m.predict(f, name)? else {
                        return Err(score_err(name, "a soft VotingClassifier member gave no probabilities"));
                    };
                    if p.len() != sum.len() {
                        return Err(score_err(name, "a VotingClassifier member gave probabilities of another width"));
                    }
                    let w = weights.as_ref().map_or(1.0, |w| w[i]);
                    sum.iter_mut().zip(&p).for_each(|(s, v)| *s += if weights.is_some() { v * w } else { *v });
                }
                let scale = weights.as_ref().map_or(members.len() as f64, |w| w.iter().sum());
                sum.iter_mut().for_each(|s| *s /= scale);
                let labels = sum.chunks(k).map(argmax).collect();
                Ok(Predicted::Classes { labels, proba: Some(sum), classes: classes.clone() })
            }
            Ensemble::Voting { members, weights, soft: false, classes: Some(classes) } => {
                // np.bincount of the members' class indices (weighted), then its argmax.
                let k = classes.len();
                let mut counts = vec![0.0; rows * k];
                for (i, m) in members.iter().enumerate() {
                    let Predicted::Classes { labels, .. } = m.predict(f, name)? else {
                        return Err(score_err(name, "a VotingClassifier member gave no classes"));
                    };
                    let w = weights.as_ref().map_or(1.0, |w| w[i]);
                    for (r, l) in labels.iter().enumerate().take(rows) {
                        if *l >= k {
                            return Err(score_err(
                                name,
                                format!("a VotingClassifier member predicted class {l} of {k}"),
                            ));
                        }
                        counts[r * k + l] += w;
                    }
                }
                let labels = counts.chunks(k).map(argmax).collect();
                Ok(Predicted::Classes { labels, proba: None, classes: classes.clone() })
            }
            Ensemble::Stacking { members, last, passthrough, classes } => {
                let mut cols: Vec<Vec<f64>> = Vec::new();
                let binary = classes.as_ref().is_some_and(|c| c.len() == 2);
                for (m, method) in members {
                    let (values, width) = match method {
                        Method::Decision => m.decision(f, name)?,
                        Method::Proba => match m.predict(f, name)? {
                            Predicted::Classes { proba: Some(p), classes: c, .. } => (p, c.len()),
                            _ => return Err(score_err(name, "a stacking member gave no probabilities")),
                        },
                        Method::Predict => match m.predict(f, name)? {
                            Predicted::Values { values, width } => (values, width),
                            Predicted::Classes { labels, .. } => (labels.iter().map(|l| *l as f64).collect(), 1),
                            Predicted::Clusters(c) => (c.iter().map(|l| f64::from(*l)).collect(), 1),
                        },
                    };
                    let skip = usize::from(*method == Method::Proba && binary && width > 1);
                    for j in skip..width {
                        cols.push(values.iter().skip(j).step_by(width.max(1)).copied().take(rows).collect());
                    }
                }
                let mut meta = Frame { names: Vec::new(), cols: Vec::new(), rows };
                for (j, c) in cols.into_iter().enumerate() {
                    meta.names.push(format!("x{j}"));
                    meta.cols.push(Col::Num(c.into()));
                }
                if *passthrough {
                    for j in 0..f.cols.len() {
                        let c = f.num(j, name)?;
                        meta.names.push(f.names[j].clone());
                        meta.cols.push(Col::Num(c.to_vec().into()));
                    }
                }
                match (last.predict(&meta, name)?, classes) {
                    (Predicted::Classes { labels, proba, classes: own }, Some(classes)) => {
                        if own.len() != classes.len() {
                            return Err(score_err(
                                name,
                                "the final estimator has other classes than the stacking model",
                            ));
                        }
                        Ok(Predicted::Classes { labels, proba, classes: classes.clone() })
                    }
                    (p @ Predicted::Values { .. }, None) => Ok(p),
                    _ => {
                        Err(score_err(name, "the final estimator gave another kind of output than the stacking model"))
                    }
                }
            }
        }
    }
}
