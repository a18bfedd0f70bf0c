//! `CalibratedClassifierCV` as scikit-learn predicts with it: each calibrated classifier maps
//! its estimator's decision function (or, lacking one, its probabilities) through one
//! calibrator per class, normalises, and the classifiers' probabilities are averaged.

use mlscore_pickle::Labels;

use crate::ensemble::Sub;
use crate::estimator::{Frame, Predicted, ScoreError, argmax, expit};

/// A fitted calibrator of one class's scores.
#[derive(Debug)]
pub(crate) enum Calibrator {
    /// Platt's `expit(-(a s + b))` (`_SigmoidCalibration`).
    Sigmoid { a: f64, b: f64 },
    /// An `IsotonicRegression` with `out_of_bounds='clip'`: scores clipped to `[min, max]`,
    /// then interpolated linearly between the thresholds as `numpy.interp` does.
    Isotonic { x: Vec<f64>, y: Vec<f64>, min: f64, max: f64 },
}

impl Calibrator {
    fn apply(&self, s: f64) -> f64 {
        match self {
            Calibrator::Sigmoid { a, b } => expit(-(a * s + b)),
            Calibrator::Isotonic { x, y, min, max } => {
                if y.len() == 1 {
                    return y[0];
                }
                crate::numpy::interp(s.max(*min).min(*max), x, y)
            }
        }
    }
}

/// One of `calibrated_classifiers_`: a fitted estimator (a pipeline's steps, then its
/// predictor) and, per column of its response, the class it calibrates and how.
#[derive(Debug)]
pub(crate) struct Member {
    pub sub: Sub,
    pub calibrators: Vec<(usize, Calibrator)>,
}

#[derive(Debug)]
pub(crate) struct Calibrated {
    pub classes: Labels,
    pub members: Vec<Member>,
}

impl Calibrated {
    pub(crate) fn predict(&self, f: &Frame, name: &str) -> Result<Predicted, ScoreError> {
        let k = self.classes.len();
        let rows = f.rows;
        let mut mean = vec![0.0; rows * k];
        let mut proba = vec![0.0; rows * k];
        for m in &self.members {
            let x = m.sub.input(f.clone())?;
            let (response, width) = m.sub.predictor.response(&x, name)?;
            if response.iter().any(|v| v.is_nan())
                && m.calibrators.iter().any(|(_, c)| matches!(c, Calibrator::Isotonic { .. }))
            {
                return Err(ScoreError {
                    column: name.to_string(),
                    reason: "the calibrated estimator's scores contain NaN, which the isotonic calibrator refuses \
                             (scikit-learn raises \"Input contains NaN\")"
                        .into(),
                });
            }
            proba.fill(0.0);
            for (row, out) in response.chunks(width.max(1)).zip(proba.chunks_mut(k)).take(rows) {
                for ((class, c), s) in m.calibrators.iter().zip(row) {
                    out[*class] = c.apply(*s);
                }
                if k == 2 {
                    out[0] = 1.0 - out[1];
                } else {
                    let den = crate::numpy::sum(out);
                    if den != 0.0 {
                        out.iter_mut().for_each(|p| *p /= den);
                    } else {
                        out.fill(1.0 / k as f64);
                    }
                }
                for p in out.iter_mut() {
                    if 1.0 < *p && *p <= 1.0 + 1e-5 {
                        *p = 1.0;
                    }
                }
            }
            mean.iter_mut().zip(&proba).for_each(|(a, p)| *a += p);
        }
        let n = self.members.len() as f64;
        mean.iter_mut().for_each(|a| *a /= n);
        let labels = mean.chunks(k.max(1)).map(argmax).collect();
        Ok(Predicted::Classes { labels, proba: Some(mean), classes: self.classes.clone() })
    }
}
