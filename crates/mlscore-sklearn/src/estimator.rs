//! scikit-learn estimators read from the object graph into typed steps, and scored with
//! scikit-learn's own arithmetic: transformers column by column in float64, trees through the
//! kernels' tree ensemble, linear models and networks as float64 dot products.
//!
//! Only the classes listed in [`build`] are read; any other is refused by name.

use mlscore_booster::sklearn_api::{self, AnyBooster};
use mlscore_booster::{Booster, Pyfunc, Real};
use mlscore_kernels::columns::{self, ColumnOp};
use mlscore_kernels::encode::{Categories, binarize};
use mlscore_kernels::tree::{Aggregate, Ensemble, Mode, RawEnsemble, RawNode, Rows, Target};

use crate::calibration::{self, Calibrator};
use crate::ensemble::{self, Method, Sub};
use crate::error::{ReadError, Result, invalid};
use crate::neighbors;
use crate::preprocess;
use crate::select;
use crate::svm;
use mlscore_pickle::{Graph, Id, Label, Labels, Node};

/// A column between steps: numbers, or text (categories) that only encoders read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Col {
    Num(Nums),
    Text(Vec<Option<String>>),
}

/// A numeric column's values: its own, or an input column's, shared with the Arrow array they
/// came from until a step changes them (a scaler then writes its output in one pass over them,
/// not a copy and a pass over the copy).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Nums {
    Owned(Vec<f64>),
    Shared(arrow_buffer::ScalarBuffer<f64>),
}

impl std::ops::Deref for Nums {
    type Target = [f64];
    fn deref(&self) -> &[f64] {
        match self {
            Nums::Owned(v) => v,
            Nums::Shared(b) => b,
        }
    }
}

impl From<Vec<f64>> for Nums {
    fn from(v: Vec<f64>) -> Self {
        Nums::Owned(v)
    }
}

impl Nums {
    /// The values, to change in place (copied first where they are shared).
    fn make_mut(&mut self) -> &mut Vec<f64> {
        if let Nums::Shared(b) = self {
            *self = Nums::Owned(b.to_vec());
        }
        match self {
            Nums::Owned(v) => v,
            Nums::Shared(_) => unreachable!("made owned above"),
        }
    }

    /// Applies `ops` to every value in one pass (copying a shared buffer as it goes), refusing
    /// infinities as scikit-learn's scalers do (see [`columns::apply_finite`]): the row of the
    /// first, and its value.
    fn apply_finite(&mut self, ops: &[ColumnOp]) -> Option<(usize, f64)> {
        match self {
            Nums::Owned(v) => columns::apply_finite(v, ops).map(|r| (r, v[r])),
            Nums::Shared(b) => match columns::apply_copy_finite(b, ops) {
                Ok(v) => {
                    *self = Nums::Owned(v);
                    None
                }
                Err(r) => Some((r, b[r])),
            },
        }
    }
}

/// The columns a step receives: named (the table's names, then the steps' output names).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Frame {
    pub names: Vec<String>,
    pub cols: Vec<Col>,
    pub rows: usize,
}

/// What went wrong while scoring: a column and what is wrong with its values.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ScoreError {
    pub column: String,
    pub reason: String,
}

type Scored<T> = std::result::Result<T, ScoreError>;

pub(crate) fn score_err(column: &str, reason: impl Into<String>) -> ScoreError {
    ScoreError { column: column.to_string(), reason: reason.into() }
}

/// Which values scikit-learn's input validation lets into a step (its `ensure_all_finite`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finite {
    /// Any (`False`): HistGradientBoosting, XGBoost, LightGBM.
    Any,
    /// NaN but no infinity (`"allow-nan"`): the scalers, SimpleImputer of NaN, the encoders'
    /// numeric columns.
    AllowNan,
    /// Neither NaN nor infinity (`True`, the default): linear models, MLPs, KMeans, PCA,
    /// Normalizer, Binarizer, GradientBoosting.
    All,
}

impl Frame {
    /// Refuses, as scikit-learn does, the first NaN or infinity of a numeric column that
    /// `finite` does not let into `step`, naming the column, the row and what to do.
    pub(crate) fn check_finite(&self, finite: Finite, step: &str) -> Scored<()> {
        for (j, c) in self.cols.iter().enumerate() {
            let Col::Num(v) = c else { continue };
            let bad = match finite {
                Finite::Any => None,
                Finite::AllowNan => columns::first_infinite(v),
                Finite::All => columns::first_non_finite(v),
            };
            let Some(r) = bad else { continue };
            return Err(non_finite_err(&self.names[j], r, v[r], step));
        }
        Ok(())
    }
}

/// The error for `value`, NaN or infinite, at `row` of `column`, refused by `step` as
/// scikit-learn refuses it.
fn non_finite_err(column: &str, row: usize, value: f64, step: &str) -> ScoreError {
    let reason = if value.is_nan() {
        format!(
            "row {row} is NaN or null, and {step} does not accept missing values (scikit-learn raises \
             \"Input X contains NaN\"); impute them (SimpleImputer) or fill the column"
        )
    } else {
        format!(
            "row {row} is {value}, and {step} does not accept infinite values (scikit-learn raises \"Input X \
             contains infinity or a value too large\"); replace them (with NaN where the model takes \
             missing values, or a bound)"
        )
    };
    score_err(column, reason)
}

/// A fitted transformer.
#[derive(Debug, Clone)]
pub(crate) enum Transformer {
    Pipeline(Vec<Transformer>),
    Columns(Vec<Branch>),
    /// `(x - sub) / div`, `x * mul + add` and friends, per column, in scikit-learn's order.
    Elementwise {
        class: String,
        ops: Vec<Op>,
        clip: Option<(f64, f64)>,
    },
    Normalizer(Norm),
    Binarizer(f64),
    Imputer(Imputer),
    OneHot(OneHot),
    Ordinal(Ordinal),
    Pca {
        mean: Vec<f64>,
        components: Vec<Vec<f64>>,
        whiten: Option<Vec<f64>>,
    },
    /// A feature selector: the input columns it keeps, in order, of the `n_in` it was fitted on,
    /// and what its input validation refuses (checked on every input column, kept or not).
    Select {
        class: String,
        keep: Vec<usize>,
        n_in: usize,
        finite: Finite,
    },
    /// PolynomialFeatures, KBinsDiscretizer, PowerTransformer, QuantileTransformer.
    Preprocess(Box<preprocess::Preprocess>),
    /// A `FeatureUnion`: each transformer (none: passthrough) on all the columns, its output
    /// times its weight, side by side.
    Union(Vec<(String, Option<Transformer>, Option<f64>)>),
    /// A `TargetEncoder`: each feature's categories to their fitted encodings (one per class
    /// for a multiclass target, feature-major), unknown ones to the target's mean.
    /// `missing`: per feature, how its categories hold a missing value (None or NaN), which a
    /// null matches only as pandas delivers it (`text_nulls`); else a null is unknown.
    Target {
        categories: Vec<Categories>,
        encodings: Vec<Vec<f64>>,
        per_feature: usize,
        mean: Vec<f64>,
        suffixes: Vec<String>,
        missing: Vec<Option<TextNulls>>,
        text_nulls: TextNulls,
    },
}

/// One column operation with a per-column vector.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Sub(Vec<f64>),
    Div(Vec<f64>),
    Mul(Vec<f64>),
    Add(Vec<f64>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Norm {
    L1,
    L2,
    Max,
}

/// A ColumnTransformer's branch: which input columns, and what is done with them.
#[derive(Debug, Clone)]
pub(crate) struct Branch {
    pub name: String,
    pub columns: Vec<usize>,
    pub step: Option<Transformer>,
}

/// What pandas makes of an Arrow null in a string column, and so what pyfunc's scikit-learn
/// model sees: NaN in pandas 3's `str` columns, Python's `None` in the object columns of pandas 1
/// and 2. A `SimpleImputer` imputes only the one its `missing_values` names (NaN by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextNulls {
    Nan,
    None,
}

/// A `SimpleImputer`'s `missing_values`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum MissingValue {
    /// NaN (the default): NaN in numeric columns, a null in string columns where it arrives as NaN.
    Nan,
    /// Python's `None`: a null in string columns where it arrives as `None`; NaN in numeric ones.
    None,
    /// A number.
    Value(f64),
}

#[derive(Debug, Clone)]
pub(crate) struct Imputer {
    /// The value that means missing (`missing_values`).
    missing: MissingValue,
    /// How a null of a string column reaches the imputer (see [`TextNulls`]).
    text_nulls: TextNulls,
    /// Per input column: its fill value (`None`: the column is dropped, it was empty in training).
    fill: Vec<Option<Label>>,
    /// Input columns that get a missing-indicator column appended.
    indicator: Vec<usize>,
}

#[derive(Debug, Clone)]
pub(crate) struct OneHot {
    categories: Vec<Categories>,
    /// Per feature: the output column of each category (`None` when dropped).
    slots: Vec<Vec<Option<usize>>>,
    /// Per feature: its output width and where unknown values go (`None`: all zeros).
    widths: Vec<usize>,
    unknown: Vec<Option<usize>>,
    unknown_is_error: bool,
    /// Per feature, the missing marker its categories hold, and how nulls arrive (see
    /// [`null_is_category`]).
    missing_kind: Vec<Option<TextNulls>>,
    text_nulls: TextNulls,
}

#[derive(Debug, Clone)]
pub(crate) struct Ordinal {
    categories: Vec<Categories>,
    unknown: Option<f64>,
    missing: Option<f64>,
    /// Per feature, the category encoded as `missing` (a NaN one), if any.
    missing_at: Vec<Option<usize>>,
    missing_kind: Vec<Option<TextNulls>>,
    text_nulls: TextNulls,
}

/// Whether a null of a string column is its feature's missing category: scikit-learn matches
/// None to None and NaN to NaN only, so a category fitted as None (an object column) does not
/// take the NaN of pandas 3's `str` columns, which is then an unknown value.
fn null_is_category(kind: Option<TextNulls>, nulls: TextNulls) -> bool {
    kind == Some(nulls)
}

/// How each feature's object categories (`categories_`) hold a missing value: None or NaN.
fn missing_kinds(g: &Graph, id: Id) -> Result<Vec<Option<TextNulls>>> {
    let mut out = Vec::new();
    for c in g.items(g.get(id, "categories_")?)? {
        out.push(match &g.array(*c)?.data {
            mlscore_pickle::ArrayData::Objects(o) => o.iter().find_map(|i| match g.node(*i) {
                Node::None => Some(TextNulls::None),
                Node::Float(f) if f.is_nan() => Some(TextNulls::Nan),
                _ => None,
            }),
            _ => None,
        });
    }
    Ok(out)
}

/// An outlier detector's labels: -1 (outlier) and 1 (inlier).
static OUTLIER_LABELS: std::sync::LazyLock<Labels> = std::sync::LazyLock::new(|| Labels::Int(vec![-1, 1]));

/// A fitted predictor (the last step of a pipeline, or the model itself).
#[derive(Debug)]
pub(crate) enum Predictor {
    Linear {
        coef: Vec<Vec<f64>>,
        intercept: Vec<f64>,
        kind: LinearKind,
    },
    Trees(Box<Trees>),
    /// Layers as `Layer`s: weights `(n_in, n_out)` row-major, as scikit-learn stores them.
    Mlp {
        layers: Vec<Layer>,
        hidden: Activation,
        out: Activation,
        classes: Option<Labels>,
    },
    KMeans {
        centers: Vec<Vec<f64>>,
    },
    /// An XGBoost or LightGBM scikit-learn API estimator, scored with its library's
    /// arithmetic by [`mlscore_booster`].
    Boosted(Box<sklearn_api::Estimator>),
    Calibrated(Box<calibration::Calibrated>),
    /// An IsolationForest: its trees sum each leaf's path length; `denominator` scales the
    /// sum into an anomaly score, `offset` is subtracted, and a negative decision is an
    /// outlier (-1), any other an inlier (1).
    Isolation {
        trees: Box<Trees>,
        denominator: f64,
        offset: f64,
    },
    /// A `TransformedTargetRegressor`: its regressor (steps, predictor), then the target
    /// transformer's inverse, after the check its input validation makes.
    TargetTransformed {
        regressor: Box<Sub>,
        inverse: Inverse,
        finite: Finite,
    },
    /// A `DummyClassifier` (most_frequent, prior) or `DummyRegressor`: the same answer for
    /// every row, whatever it holds (it validates nothing).
    Constant {
        classes: Option<Labels>,
        label: usize,
        proba: Vec<f64>,
        value: f64,
    },
    /// k nearest neighbours over the fitted rows.
    Neighbors(Box<neighbors::Neighbors>),
    /// Voting and stacking over fitted estimators.
    Ensemble(Box<ensemble::Ensemble>),
    /// A kernel `SVC`, `NuSVC`, `SVR` or `NuSVR`, as libsvm predicts.
    Svm(Box<svm::Svm>),
    NaiveBayes(Box<svm::GaussianNb>),
}

#[derive(Debug)]
pub(crate) enum LinearKind {
    Regressor,
    /// A generalised linear model with a log link: `exp` of the linear predictor.
    LogLink,
    /// Classes; `proba`: how decisions become probabilities (none for hinge losses).
    Classifier {
        classes: Labels,
        proba: Option<LinearProba>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum LinearProba {
    /// Binary: expit; multiclass: softmax (LogisticRegression).
    Multinomial,
    /// Binary: expit; multiclass: sigmoids normalised to sum to one (OvR).
    OneVsRest,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Activation {
    Identity,
    Relu,
    Tanh,
    Logistic,
    Softmax,
}

/// Trees scored by the kernel's ensemble, in float64.
#[derive(Debug)]
pub(crate) struct Trees {
    /// The compiled trees: only one form is kept (a 100-tree depth-8 forest holds about 3 MB in
    /// each).
    pub walk: TreeWalk,
    /// Number of outputs of the trees.
    pub outputs: usize,
    /// Round inputs to float32 first (DecisionTree, forests, GradientBoosting; not HGB).
    pub f32_inputs: bool,
    pub init: Vec<f64>,
    /// Divide the sums by this (forests average their trees).
    pub average: Option<f64>,
    pub link: TreeLink,
    pub classes: Option<Labels>,
    pub n_features: usize,
    /// NaN is refused, as scikit-learn refuses it for this estimator (named).
    pub nan_is_error: Option<String>,
    /// Values beyond float32 become infinities (IsolationForest from 1.6, which validates
    /// nothing), where other trees refuse them.
    pub take_infinite: bool,
}

/// How an ensemble's trees are walked.
#[derive(Debug)]
pub(crate) enum TreeWalk {
    /// In float64 (inputs rounded to float32 first where `f32_inputs`).
    F64(Ensemble<f64>),
    /// For float32 inputs, in float32 with float64 leaf values from the table (see [`f32_walk`]).
    F32(Ensemble<f32>, Vec<f64>),
}

/// The trees of `raw` compiled for the walk they take: float32 where the inputs are rounded to
/// float32 and [`f32_walk`] can serve them, float64 otherwise. Equal leaves are shared first, so
/// that a forest's table of leaf values holds its distinct rows only (RandomForest 100 trees of
/// depth 8, 65,536-row batches, one thread: +4% rows per CPU second).
fn tree_walk(mut raw: RawEnsemble, k: usize, f32_inputs: bool) -> Result<TreeWalk> {
    raw.share_equal_leaves();
    if f32_inputs && let Some((e, table)) = f32_walk(&raw, k)? {
        return Ok(TreeWalk::F32(e, table));
    }
    Ok(TreeWalk::F64(compile(&raw, k)?))
}

/// One dense layer of a network.
#[derive(Debug)]
pub(crate) struct Layer {
    pub n_in: usize,
    /// `(n_in, n_out)`, row-major.
    pub weights: Vec<f64>,
    pub bias: Vec<f64>,
}

/// How tree sums become predictions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum TreeLink {
    /// Values (regressors) or probabilities (forest classifiers).
    Identity,
    /// `exp` (Poisson, gamma, Tweedie HGB regressors).
    Exp,
    /// Raw scores of a binary classifier: expit; label `raw >= 0` (GradientBoosting) or the
    /// argmax of `[1-p, p]` (HistGradientBoosting).
    Binary { ge_zero: bool },
    /// Raw scores of GradientBoosting's exponential loss (half the logit): `expit(2 raw)`;
    /// label `raw >= 0`.
    HalfLogit,
    /// Raw scores of a multiclass classifier: softmax; label the argmax.
    Softmax,
}

/// What a predictor gives for a batch.
pub(crate) enum Predicted {
    Values { values: Vec<f64>, width: usize },
    Classes { labels: Vec<usize>, proba: Option<Vec<f64>>, classes: Labels },
    Clusters(Vec<i32>),
}

/// A whole model: transformers, then a predictor.
#[derive(Debug)]
pub(crate) struct Model {
    pub steps: Vec<Transformer>,
    pub predictor: Predictor,
    /// The input column names the model was fitted on, if it records them.
    pub feature_names: Option<Vec<String>>,
    /// The estimator's class, or a pipeline's steps' classes (for `inspect`).
    pub chain: Vec<String>,
}

impl Model {
    /// Scores string columns' nulls as the given pandas delivers them (see [`TextNulls`]),
    /// in its own steps and in those of every member a meta-estimator holds.
    pub(crate) fn set_text_nulls(&mut self, nulls: TextNulls) {
        self.steps.iter_mut().for_each(|s| s.set_text_nulls(nulls));
        self.predictor.set_text_nulls(nulls);
    }
}

impl Transformer {
    pub(crate) fn set_text_nulls(&mut self, nulls: TextNulls) {
        match self {
            Transformer::Pipeline(steps) => steps.iter_mut().for_each(|s| s.set_text_nulls(nulls)),
            Transformer::Columns(branches) => {
                branches.iter_mut().filter_map(|b| b.step.as_mut()).for_each(|s| s.set_text_nulls(nulls))
            }
            Transformer::Union(parts) => {
                parts.iter_mut().filter_map(|(_, t, _)| t.as_mut()).for_each(|s| s.set_text_nulls(nulls))
            }
            Transformer::Imputer(i) => i.text_nulls = nulls,
            Transformer::Target { text_nulls, .. } => *text_nulls = nulls,
            Transformer::OneHot(o) => o.text_nulls = nulls,
            Transformer::Ordinal(o) => o.text_nulls = nulls,
            _ => {}
        }
    }
}

impl Predictor {
    /// Reaches the steps inside the fitted estimators a meta-estimator holds.
    pub(crate) fn set_text_nulls(&mut self, nulls: TextNulls) {
        let subs: Vec<&mut Sub> = match self {
            Predictor::Calibrated(c) => c.members.iter_mut().map(|m| &mut m.sub).collect(),
            Predictor::TargetTransformed { regressor, .. } => vec![regressor.as_mut()],
            Predictor::Ensemble(e) => e.members_mut(),
            _ => Vec::new(),
        };
        subs.into_iter().for_each(|s| s.set_text_nulls(nulls));
    }
}

/// The classes read, for errors.
pub(crate) const SUPPORTED: &str = "Pipeline, GridSearchCV and the other searches (their best_estimator_), ColumnTransformer, StandardScaler, MinMaxScaler, MaxAbsScaler, RobustScaler, \
     Normalizer, Binarizer, SimpleImputer, OneHotEncoder, OrdinalEncoder, PCA, VarianceThreshold, SelectKBest, \
     SelectPercentile, SelectFpr, SelectFdr, SelectFwe, GenericUnivariateSelect, RFE, RFECV, SelectFromModel, LinearRegression, Ridge, Lasso, ElasticNet, \
     TargetEncoder, FeatureUnion, TruncatedSVD, IncrementalPCA, PolynomialFeatures, KBinsDiscretizer, PowerTransformer, QuantileTransformer, SVC, NuSVC, SVR, NuSVR, GaussianNB, DummyClassifier, DummyRegressor, OneClassSVM, OneVsRestClassifier, BaggingClassifier, BaggingRegressor, AdaBoostClassifier, AdaBoostRegressor, TransformedTargetRegressor, KNeighborsClassifier, KNeighborsRegressor, IsolationForest, CalibratedClassifierCV, VotingClassifier, VotingRegressor, \
     StackingClassifier, StackingRegressor, \
     SGDRegressor, LinearSVR, ARDRegression, Lars*, LassoLars*, OrthogonalMatchingPursuit*, TheilSenRegressor, \
     QuantileRegressor, PassiveAggressive*, PoissonRegressor, GammaRegressor, TweedieRegressor, LogisticRegression, \
     SGDClassifier, LinearSVC, RidgeClassifier, RidgeClassifierCV, Perceptron, LinearDiscriminantAnalysis, DecisionTree*, RandomForest*, \
     ExtraTrees*, GradientBoosting*, HistGradientBoosting*, MLPClassifier, MLPRegressor, KMeans, \
     LGBMClassifier, LGBMRegressor, LGBMRanker, XGBClassifier, XGBRegressor, XGBRanker, XGBRF*";

pub(crate) fn short(class: &str) -> &str {
    class.rsplit('.').next().unwrap_or(class)
}

/// scikit-learn's hyper-parameter searches, which predict with the estimator they refit on the
/// best parameters (`best_estimator_`). MLflow's autologging logs a fitted search as the model.
const SEARCHES: [&str; 4] = ["GridSearchCV", "RandomizedSearchCV", "HalvingGridSearchCV", "HalvingRandomSearchCV"];

/// The estimator that predicts for `id`: `id` itself, or a search's `best_estimator_` (of a
/// search over searches, the innermost).
fn searched(g: &Graph, id: Id) -> Result<Id> {
    let mut id = id;
    for _ in 0..50 {
        let c = class(g, id)?;
        let search = short(&c);
        if !SEARCHES.contains(&search) {
            return Ok(id);
        }
        id = g.attr_set(id, "best_estimator_")?.ok_or_else(|| {
            ReadError::Unsupported(format!(
                "a {search} without best_estimator_ (fitted with refit=False, or not fitted): it holds no \
                 estimator to predict with, and scikit-learn's predict fails on it too; refit it with refit=True, \
                 or log the estimator of the parameters you chose"
            ))
        })?;
    }
    Err(invalid!("searches nest too deeply"))
}

/// Reads the root estimator.
pub(crate) fn build(g: &Graph) -> Result<Model> {
    let root = g.root;
    if g.class_of(root).is_none() {
        return Err(invalid!("the file holds {}, not a scikit-learn estimator", g.describe(root)));
    }
    if let Some(v) = g.attr(root, "_sklearn_version").ok().flatten().and_then(|v| g.str(v).ok())
        && version_before(v, 1, 0)
    {
        return Err(ReadError::Unsupported(format!(
            "an estimator written by scikit-learn {v} (files from scikit-learn 1.0 and later are read); \
                 re-save it with a current scikit-learn"
        )));
    }
    // What predicts: a search's refitted estimator is read as if it had been logged itself.
    let search = g.class_of(root).filter(|c| SEARCHES.contains(&short(c))).map(|c| short(&c).to_string());
    let root = searched(g, root)?;
    let feature_names = names_in(g, root)?;
    let (mut steps, last) = pipeline_parts(g, root, 0)?;
    let predictor = predictor(g, last)?;
    steps.extend(own_preprocessor(g, last)?);
    if let Predictor::Trees(t) = &predictor {
        let k = t.outputs;
        let expected = match t.link {
            TreeLink::Binary { .. } | TreeLink::HalfLogit => Some(2),
            TreeLink::Softmax => Some(k),
            _ => t.classes.as_ref().map(|_| k),
        };
        if let (Some(c), Some(e)) = (&t.classes, expected)
            && c.len() != e
        {
            return Err(invalid!("the model has {} classes and its trees give {k} outputs", c.len()));
        }
    }
    let mut chain: Vec<String> = search.into_iter().map(|s| format!("{s}.best_estimator_")).collect();
    let mut ends = Vec::new();
    if short(&class(g, root)?) == "Pipeline" {
        for st in g.items(g.get(root, "steps")?)? {
            if let Some(e) = step_object(g, *st)? {
                ends.push(e);
            }
        }
    } else {
        ends.push(root);
    }
    let n = ends.len();
    for (i, mut e) in ends.into_iter().enumerate() {
        // A final RFE predicts with its estimator_, named after it.
        loop {
            let c = short(&class(g, e)?).to_string();
            let rfe = matches!(c.as_str(), "RFE" | "RFECV");
            chain.push(if i + 1 == n && !rfe { describe(g, e, 0) } else { c });
            if i + 1 < n || !rfe || chain.len() > 100 {
                break;
            }
            e = searched(g, g.get(e, "estimator_")?)?;
        }
    }
    Ok(Model { steps, predictor, feature_names, chain })
}

/// An estimator's name for `inspect`: its class, and for meta-estimators their members
/// (`VotingClassifier[Pipeline(StandardScaler -> LogisticRegression), GaussianNB]`), equal
/// neighbours counted (`BaggingClassifier[DecisionTreeClassifier x10]`).
fn describe(g: &Graph, id: Id, depth: usize) -> String {
    let Ok(c) = class(g, id) else { return g.describe(id) };
    let name = short(&c).to_string();
    if depth > 4 {
        return name;
    }
    let items = |attr: &str| -> Vec<Id> {
        g.attr(id, attr).ok().flatten().and_then(|l| g.items(l).ok()).map(<[Id]>::to_vec).unwrap_or_default()
    };
    let one = |attr: &str| g.attr(id, attr).ok().flatten().map(|e| describe(g, e, depth + 1));
    let members: Vec<String> = match name.as_str() {
        "Pipeline" => {
            let steps: Vec<String> = items("steps")
                .iter()
                .filter_map(|s| step_object(g, *s).ok().flatten())
                .map(|e| describe(g, e, depth + 1))
                .collect();
            return format!("Pipeline({})", steps.join(" -> "));
        }
        "VotingClassifier"
        | "VotingRegressor"
        | "BaggingClassifier"
        | "BaggingRegressor"
        | "OneVsRestClassifier"
        | "AdaBoostClassifier"
        | "AdaBoostRegressor" => items("estimators_").iter().map(|e| describe(g, *e, depth + 1)).collect(),
        "StackingClassifier" | "StackingRegressor" => {
            let mut m: Vec<String> = items("estimators_").iter().map(|e| describe(g, *e, depth + 1)).collect();
            m.extend(one("final_estimator_").map(|f| format!("final {f}")));
            m
        }
        "CalibratedClassifierCV" => items("calibrated_classifiers_")
            .iter()
            .filter_map(|c| {
                g.attr(*c, "estimator").ok().flatten().or_else(|| g.attr(*c, "base_estimator").ok().flatten())
            })
            .map(|e| describe(g, e, depth + 1))
            .collect(),
        "TransformedTargetRegressor" => one("regressor_").into_iter().collect(),
        _ => return name,
    };
    let parts: Vec<String> = members
        .chunk_by(|a, b| a == b)
        .map(|run| if run.len() == 1 { run[0].clone() } else { format!("{} x{}", run[0], run.len()) })
        .collect();
    format!("{name}[{}]", parts.join(", "))
}

fn names_in(g: &Graph, id: Id) -> Result<Option<Vec<String>>> {
    let Some(n) = g.attr(id, "feature_names_in_")? else { return Ok(None) };
    match g.labels(n)? {
        Labels::Str(v) => Ok(Some(v)),
        _ => Ok(None),
    }
}

fn class(g: &Graph, id: Id) -> Result<String> {
    g.class_of(id).ok_or_else(|| invalid!("expected an estimator, found {}", g.describe(id)))
}

/// A Pipeline's transformers and final estimator (nested pipelines flattened; an `RFE` or
/// `RFECV` that predicts is its selection, then its `estimator_`).
fn pipeline_parts(g: &Graph, id: Id, depth: usize) -> Result<(Vec<Transformer>, Id)> {
    if depth > 50 {
        return Err(invalid!("pipelines nest too deeply"));
    }
    match short(&class(g, id)?) {
        "Pipeline" => {}
        "RFE" | "RFECV" => {
            let mut out = vec![selector(g, id)?];
            let (more, last) = pipeline_parts(g, searched(g, g.get(id, "estimator_")?)?, depth + 1)?;
            out.extend(more);
            return Ok((out, last));
        }
        _ => return Ok((Vec::new(), id)),
    }
    let steps = g.items(g.get(id, "steps")?)?.to_vec();
    let (last, init) = steps.split_last().ok_or_else(|| invalid!("a Pipeline without steps"))?;
    let mut out = Vec::new();
    for s in init {
        if let Some(t) = step_object(g, *s)? {
            out.push(transformer(g, t, depth + 1)?);
        }
    }
    let last = step_object(g, *last)?
        .ok_or_else(|| ReadError::Unsupported("a Pipeline whose last step is 'passthrough'".into()))?;
    let (more, last) = pipeline_parts(g, searched(g, last)?, depth + 1)?;
    out.extend(more);
    Ok((out, last))
}

/// A `(name, estimator)` step: the estimator, or `None` for `'passthrough'` / `None`.
fn step_object(g: &Graph, step: Id) -> Result<Option<Id>> {
    let t = g.tuple(step)?;
    let est = *t.get(1).ok_or_else(|| invalid!("a Pipeline step without its estimator"))?;
    Ok(match g.node(est) {
        Node::None => None,
        Node::Str(s) if s == "passthrough" => None,
        _ => Some(est),
    })
}

/// A fitted transformer held inside another one (PowerTransformer's scaler).
pub(crate) fn transformer_of(g: &Graph, id: Id) -> Result<Transformer> {
    transformer(g, id, 40)
}

fn transformer(g: &Graph, id: Id, depth: usize) -> Result<Transformer> {
    if depth > 50 {
        return Err(invalid!("pipelines nest too deeply"));
    }
    let id = searched(g, id)?;
    let c = class(g, id)?;
    let v = |name: &str| g.vector(g.get(id, name)?);
    let opt = |name: &str| -> Result<Option<Vec<f64>>> { g.attr_set(id, name)?.map(|a| g.vector(a)).transpose() };
    let t = match short(&c) {
        "Pipeline" => {
            let mut steps = Vec::new();
            for s in g.items(g.get(id, "steps")?)? {
                if let Some(t) = step_object(g, *s)? {
                    steps.push(transformer(g, t, depth + 1)?);
                }
            }
            Transformer::Pipeline(steps)
        }
        "ColumnTransformer" => column_transformer(g, id, depth)?,
        "StandardScaler" => {
            let mut ops = Vec::new();
            if let Some(m) = opt("mean_")?
                .filter(|_| g.attr(id, "with_mean").ok().flatten().is_none_or(|w| g.bool(w).unwrap_or(true)))
            {
                ops.push(Op::Sub(m));
            }
            if let Some(s) = opt("scale_")? {
                ops.push(Op::Div(s));
            }
            Transformer::Elementwise { class: c, ops, clip: None }
        }
        "MinMaxScaler" => {
            let clip = match g.attr(id, "clip")? {
                Some(b) if g.bool(b)? => {
                    let r = g.vector(g.get(id, "feature_range")?)?;
                    let (lo, hi) = (*r.first().unwrap_or(&0.0), *r.get(1).unwrap_or(&1.0));
                    // scikit-learn refuses such a range when fitting, and clipping to one would
                    // panic: a crafted file is refused here.
                    if lo.is_nan() || hi.is_nan() || lo > hi {
                        return Err(invalid!(
                            "MinMaxScaler's feature_range ({lo}, {hi}) does not go up: the model is damaged"
                        ));
                    }
                    Some((lo, hi))
                }
                _ => None,
            };
            Transformer::Elementwise { class: c, ops: vec![Op::Mul(v("scale_")?), Op::Add(v("min_")?)], clip }
        }
        "MaxAbsScaler" => Transformer::Elementwise { class: c, ops: vec![Op::Div(v("scale_")?)], clip: None },
        "RobustScaler" => {
            let mut ops = Vec::new();
            if let Some(m) = opt("center_")? {
                ops.push(Op::Sub(m));
            }
            if let Some(s) = opt("scale_")? {
                ops.push(Op::Div(s));
            }
            Transformer::Elementwise { class: c, ops, clip: None }
        }
        "Normalizer" => Transformer::Normalizer(match g.str(g.get(id, "norm")?)? {
            "l1" => Norm::L1,
            "l2" => Norm::L2,
            "max" => Norm::Max,
            n => return Err(invalid!("Normalizer norm '{n}'")),
        }),
        "Binarizer" => Transformer::Binarizer(g.float(g.get(id, "threshold")?)?),
        "SimpleImputer" => imputer(g, id)?,
        "OneHotEncoder" => one_hot(g, id)?,
        "OrdinalEncoder" => ordinal(g, id)?,
        "TargetEncoder" => {
            let cats = categories(g, id)?;
            let encodings: Vec<Vec<f64>> =
                g.items(g.get(id, "encodings_")?)?.iter().map(|e| g.vector(*e)).collect::<Result<_>>()?;
            let multiclass = g.str(g.get(id, "target_type_")?)? == "multiclass";
            let (per_feature, suffixes) = if multiclass {
                let classes = g.labels(g.get(id, "classes_")?)?;
                let names = (0..classes.len())
                    .map(|i| match &classes {
                        Labels::Str(v) => v[i].clone(),
                        Labels::Int(v) => v[i].to_string(),
                        Labels::Float(v) => v[i].to_string(),
                        Labels::Bool(v) => v[i].to_string(),
                        Labels::StrOrNone(v) => v[i].clone().unwrap_or_else(|| "None".into()),
                    })
                    .collect::<Vec<_>>();
                (classes.len(), names)
            } else {
                (1, Vec::new())
            };
            let mean = g.vector(g.get(id, "target_mean_")?)?;
            if per_feature == 0 || encodings.len() != cats.len() * per_feature || mean.len() != per_feature {
                return Err(invalid!(
                    "TargetEncoder has {} encodings and {} target means for {} features of {per_feature} outputs",
                    encodings.len(),
                    mean.len(),
                    cats.len()
                ));
            }
            for (e, enc) in encodings.iter().enumerate() {
                let n = cats[e / per_feature].len();
                if enc.len() != n {
                    return Err(invalid!("TargetEncoder's encoding {e} has {} values for {n} categories", enc.len()));
                }
            }
            let missing = missing_kinds(g, id)?;
            Transformer::Target {
                categories: cats.iter().map(index).collect(),
                encodings,
                per_feature,
                mean,
                suffixes,
                missing,
                text_nulls: TextNulls::Nan,
            }
        }
        "FeatureUnion" => {
            let weights = g.attr_set(id, "transformer_weights")?;
            let mut parts = Vec::new();
            for item in g.items(g.get(id, "transformer_list")?)? {
                let [name, t, ..] = g.tuple(*item)? else {
                    return Err(invalid!("a FeatureUnion entry without its transformer"));
                };
                let name = g.str(*name)?.to_string();
                let step = match g.opt_str(*t).ok().flatten() {
                    Some("drop") => continue,
                    Some("passthrough") => None,
                    _ => Some(transformer(g, *t, depth + 1)?),
                };
                let weight = match weights {
                    Some(w) => g.attr(w, &name)?.map(|v| g.float(v)).transpose()?,
                    None => None,
                };
                parts.push((name, step, weight));
            }
            Transformer::Union(parts)
        }
        // Projections without centring: TruncatedSVD's X @ components_.T.
        "TruncatedSVD" => {
            let (comp, shape) = g.f64s(g.get(id, "components_")?)?;
            let [k, n] = shape[..] else { return Err(invalid!("TruncatedSVD components_ of shape {shape:?}")) };
            Transformer::Pca {
                mean: vec![0.0; n],
                components: comp.chunks(n.max(1)).map(<[f64]>::to_vec).take(k).collect(),
                whiten: None,
            }
        }
        "PCA" | "IncrementalPCA" => {
            let (comp, shape) = g.f64s(g.get(id, "components_")?)?;
            let [k, n] = shape[..] else { return Err(invalid!("PCA components_ of shape {shape:?}")) };
            let mean = v("mean_")?;
            if mean.len() != n {
                return Err(invalid!("PCA mean_ has {} values for {n} features", mean.len()));
            }
            let whiten = match g.attr(id, "whiten")? {
                Some(w) if g.bool(w)? => Some(v("explained_variance_")?.iter().map(|v| v.sqrt()).collect::<Vec<_>>()),
                _ => None,
            };
            if whiten.as_ref().is_some_and(|w| w.len() != k) {
                return Err(invalid!("PCA explained_variance_ does not match its components"));
            }
            Transformer::Pca { mean, components: comp.chunks(n.max(1)).map(<[f64]>::to_vec).take(k).collect(), whiten }
        }
        s if SELECTORS.contains(&s) => selector(g, id)?,
        "SelectFromModel" => from_model(g, id)?,
        "PolynomialFeatures" | "KBinsDiscretizer" | "PowerTransformer" | "QuantileTransformer" => {
            Transformer::Preprocess(Box::new(preprocess::read(g, id, &c)?))
        }
        // Without a function it is the identity ("passthrough" in a fitted FeatureUnion), after
        // check_array's refusal of NaN and infinities where validate=True.
        "FunctionTransformer" if g.attr_set(id, "func")?.is_none() => {
            if g.attr(id, "validate")?.is_some_and(|v| g.bool(v).unwrap_or(false)) {
                let n_in = n_features_of(g, id)?;
                Transformer::Select {
                    class: "FunctionTransformer".into(),
                    keep: (0..n_in).collect(),
                    n_in,
                    finite: Finite::All,
                }
            } else {
                Transformer::Pipeline(Vec::new())
            }
        }
        "FunctionTransformer" => {
            return Err(ReadError::Unsupported(
                "a FunctionTransformer (its function is code, which mlscore does not run); drop that step or log the model as ONNX".into(),
            ));
        }
        _ => {
            return Err(ReadError::Unsupported(format!(
                "{c} as a transformer (mlscore reads {SUPPORTED}); log the model as ONNX (skl2onnx) to score it"
            )));
        }
    };
    if let Transformer::Elementwise { ops, class, .. } = &t {
        let widths: Vec<usize> = ops
            .iter()
            .map(|o| match o {
                Op::Sub(v) | Op::Div(v) | Op::Mul(v) | Op::Add(v) => v.len(),
            })
            .collect();
        if widths.windows(2).any(|w| w[0] != w[1]) {
            return Err(invalid!("{class}'s fitted vectors have different lengths ({widths:?})"));
        }
    }
    Ok(t)
}

/// scikit-learn's feature selectors that mlscore reads. `RFE` and `RFECV` also predict, with
/// the estimator they refitted on the features they keep (`estimator_`).
const SELECTORS: [&str; 9] = [
    "VarianceThreshold",
    "SelectKBest",
    "SelectPercentile",
    "SelectFpr",
    "SelectFdr",
    "SelectFwe",
    "GenericUnivariateSelect",
    "RFE",
    "RFECV",
];

/// A feature selector, its mask computed from its fitted state as scikit-learn computes it at
/// every `transform` (see [`select`]).
fn selector(g: &Graph, id: Id) -> Result<Transformer> {
    let class = class(g, id)?;
    let name = short(&class).to_string();
    let number = |attr: &str| g.float(g.get(id, attr)?);
    let scores = || g.vector(g.get(id, "scores_")?);
    let pvalues = || -> Result<Vec<f64>> {
        match g.attr_set(id, "pvalues_")? {
            Some(p) => g.vector(p),
            None => Err(ReadError::Unsupported(format!(
                "a {name} whose score function gives no p-values, so it has nothing to select by (scikit-learn \
                 fails on it too); select with SelectKBest or SelectPercentile instead"
            ))),
        }
    };
    // `k` / a percentile: a number, or "all".
    let param = |attr: &str| -> Result<Option<f64>> {
        let p = g.get(id, attr)?;
        match g.node(p) {
            Node::Str(s) if s == "all" => Ok(None),
            _ => g.float(p).map(Some),
        }
    };
    let k_best = |k: Option<f64>, scores: Vec<f64>| -> Result<Vec<bool>> {
        match k {
            None => Ok(vec![true; scores.len()]),
            Some(k) if k >= 0.0 && k.fract() == 0.0 => Ok(select::k_best(&scores, k as usize)),
            Some(k) => Err(invalid!("{name} keeps k={k} features, which is not a whole number")),
        }
    };
    let percentile = |p: Option<f64>, scores: Vec<f64>| -> Result<Vec<bool>> {
        match p {
            None => Ok(vec![true; scores.len()]),
            Some(p) if (0.0..=100.0).contains(&p) => Ok(select::percentile(&scores, p)),
            Some(p) => Err(invalid!("{name}'s percentile {p} is not between 0 and 100")),
        }
    };
    // scikit-learn's univariate filters validate with ensure_all_finite=True.
    let (mask, finite) = match name.as_str() {
        "VarianceThreshold" => {
            (select::variance(&g.vector(g.get(id, "variances_")?)?, number("threshold")?), Finite::Any)
        }
        "SelectKBest" => (k_best(param("k")?, scores()?)?, Finite::All),
        "SelectPercentile" => (percentile(param("percentile")?, scores()?)?, Finite::All),
        "SelectFpr" => (select::fpr(&pvalues()?, number("alpha")?), Finite::All),
        "SelectFdr" => (select::fdr(&pvalues()?, number("alpha")?), Finite::All),
        "SelectFwe" => (select::fwe(&pvalues()?, number("alpha")?), Finite::All),
        "GenericUnivariateSelect" => {
            let mode = g.str(g.get(id, "mode")?)?.to_string();
            let mask = match mode.as_str() {
                "k_best" => k_best(param("param")?, scores()?)?,
                "percentile" => percentile(param("param")?, scores()?)?,
                "fpr" | "fdr" | "fwe" => {
                    let alpha = param("param")?
                        .ok_or_else(|| invalid!("{name} in mode '{mode}' with param 'all', which is not an alpha"))?;
                    let p = pvalues()?;
                    match mode.as_str() {
                        "fpr" => select::fpr(&p, alpha),
                        "fdr" => select::fdr(&p, alpha),
                        _ => select::fwe(&p, alpha),
                    }
                }
                m => return Err(invalid!("{name} in mode '{m}' (scikit-learn has percentile, k_best, fpr, fdr, fwe)")),
            };
            (mask, Finite::All)
        }
        "RFE" | "RFECV" => {
            let support = g.vector(g.get(id, "support_")?)?.iter().map(|v| *v != 0.0).collect();
            // Its validation lets NaN in where its estimator's does (its allow_nan tag).
            let est = searched(g, g.get(id, "estimator_")?)?;
            (support, if allow_nan(g, est)? { Finite::Any } else { Finite::All })
        }
        _ => return Err(invalid!("{name} is not a feature selector")),
    };
    let n_in = mask.len();
    if let Some(n) = g.attr(id, "n_features_in_")?
        && g.int(n)? != n_in as i64
    {
        return Err(invalid!("{name} was fitted on {} features and its selection covers {n_in}", g.int(n)?));
    }
    let keep = mask.iter().enumerate().filter(|(_, m)| **m).map(|(i, _)| i).collect();
    Ok(Transformer::Select { class: name, keep, n_in, finite })
}

/// `SelectFromModel`: its estimator's importances (`coef_`'s norm across classes, or the trees'
/// impurity decreases), its threshold and `max_features`, as scikit-learn's `_get_support_mask`
/// computes them at every `transform`.
fn from_model(g: &Graph, id: Id) -> Result<Transformer> {
    let est = match g.attr_set(id, "estimator_")? {
        Some(e) => e,
        None => g.get(id, "estimator")?,
    };
    let est_class = class(g, est)?;
    let est_name = short(&est_class).to_string();
    let text = |id: Id, attr: &str| -> Result<Option<String>> {
        Ok(g.attr_set(id, attr)?.and_then(|v| g.str(v).ok().map(str::to_string)))
    };
    let getter = text(id, "importance_getter")?.unwrap_or_else(|| "auto".into());
    let coef = g.attr_set(est, "coef_")?;
    let scores = match (getter.as_str(), coef) {
        ("auto" | "coef_", Some(c)) => {
            let (v, shape) = g.f64s(c)?;
            match shape[..] {
                [_] => v.iter().map(|x| x.abs()).collect(),
                [k, n] if k * n == v.len() => {
                    let order = match g.attr_set(id, "norm_order")? {
                        Some(o) => g.float(o)?,
                        None => 1.0,
                    };
                    let rows: Vec<Vec<f64>> = v.chunks(n.max(1)).map(<[f64]>::to_vec).take(k).collect();
                    select::column_norms(&rows, order)
                }
                _ => return Err(invalid!("SelectFromModel's {est_name} has coef_ of shape {shape:?}")),
            }
        }
        ("auto" | "feature_importances_", _) => importances(g, est, &est_name)?,
        (other, _) => {
            return Err(ReadError::Unsupported(format!(
                "a SelectFromModel with importance_getter={other:?} (mlscore reads 'auto', 'coef_' and \
                 'feature_importances_'); log the model as ONNX (skl2onnx) to score it"
            )));
        }
    };
    let version = sklearn_version(g, id)?;
    let threshold = from_model_threshold(g, id, est, &est_name, &scores, &version)?;
    let max_features = match g.attr_set(id, "max_features")? {
        None => None,
        Some(m) => {
            let m = g.attr_set(id, "max_features_")?.unwrap_or(m);
            Some(usize::try_from(g.int(m)?).map_err(|_| invalid!("SelectFromModel's max_features is negative"))?)
        }
    };
    let mask = select::from_model(&scores, threshold, max_features);
    let n_in = mask.len();
    if let Some(n) = g.attr(id, "n_features_in_")?
        && g.int(n)? != n_in as i64
    {
        return Err(invalid!("SelectFromModel was fitted on {} features and its {est_name} scores {n_in}", g.int(n)?));
    }
    let keep = mask.iter().enumerate().filter(|(_, m)| **m).map(|(i, _)| i).collect();
    let finite = if allow_nan(g, est)? { Finite::Any } else { Finite::All };
    Ok(Transformer::Select { class: "SelectFromModel".into(), keep, n_in, finite })
}

/// `SelectFromModel`'s threshold: a number, `"mean"`, `"median"` or `"<scale>*mean"` /
/// `"<scale>*median"` of the scores; by default 1e-5 for an L1-penalised estimator (the rule of
/// the release that wrote the file: 1.8 narrowed ElasticNet's and added LogisticRegression's)
/// and the mean otherwise.
fn from_model_threshold(g: &Graph, id: Id, est: Id, est_name: &str, scores: &[f64], version: &str) -> Result<f64> {
    let number = |attr: &str| -> Result<Option<f64>> {
        match g.attr_set(est, attr)? {
            None => Ok(None),
            Some(v) => g.float(v).map(Some).map_err(|_| {
                ReadError::Unsupported(format!(
                    "a SelectFromModel whose {est_name}.{attr} is not a number, from which scikit-learn cannot \
                     compute its default threshold either; set SelectFromModel's threshold"
                ))
            }),
        }
    };
    let close_to_one =
        |attr: &str| -> Result<bool> { Ok(number(attr)?.is_some_and(|v| crate::numpy::isclose(v, 1.0))) };
    let threshold = match g.attr_set(id, "threshold")? {
        Some(t) => match g.node(t) {
            Node::Str(s) => Some(s.clone()),
            _ => return g.float(t),
        },
        None => None,
    };
    let threshold = match threshold {
        Some(t) => t,
        None => {
            let l1_penalty = g.attr_set(est, "penalty")?.is_some_and(|p| g.str(p).is_ok_and(|p| p == "l1"));
            let l1 = l1_penalty
                || est_name.contains("Lasso")
                || if version.is_empty() || !version_before(version, 1, 8) {
                    match est_name {
                        "ElasticNet" | "LogisticRegression" => close_to_one("l1_ratio")?,
                        "ElasticNetCV" => close_to_one("l1_ratio_")?,
                        "LogisticRegressionCV" => match g.attr_set(est, "l1_ratio_")? {
                            Some(v) => g.vector(v)?.iter().all(|r| crate::numpy::isclose(*r, 1.0)),
                            None => false,
                        },
                        _ => false,
                    }
                } else {
                    est_name.contains("ElasticNet") && (close_to_one("l1_ratio_")? || close_to_one("l1_ratio")?)
                };
            return Ok(if l1 { 1e-5 } else { crate::numpy::mean(scores) });
        }
    };
    let reference = |r: &str| -> Result<f64> {
        match r.trim() {
            "mean" => Ok(crate::numpy::mean(scores)),
            "median" => Ok(crate::numpy::median(scores)),
            r => Err(invalid!("SelectFromModel's threshold refers to {r:?} (scikit-learn knows mean and median)")),
        }
    };
    match threshold.split_once('*') {
        Some((scale, r)) if !r.contains('*') => {
            let scale: f64 = scale
                .trim()
                .parse()
                .map_err(|_| invalid!("SelectFromModel's threshold {threshold:?} does not start with a number"))?;
            Ok(scale * reference(r)?)
        }
        Some(_) => Err(invalid!("SelectFromModel's threshold {threshold:?} has more than one '*'")),
        None => reference(&threshold),
    }
}

/// An estimator's `feature_importances_`, which scikit-learn computes from its trees' nodes
/// each time it is asked: each split's weighted impurity decrease, per feature, normalised per
/// tree (`DecisionTree*`) and averaged over the trees (forests, normalised per tree;
/// GradientBoosting, not), then normalised again; trees that are a single leaf are left out.
fn importances(g: &Graph, est: Id, name: &str) -> Result<Vec<f64>> {
    if let Some(v) = g.attr_set(est, "feature_importances_")? {
        return g.vector(v);
    }
    let n_features = n_features_of(g, est)?;
    let (trees, normalize): (Vec<Id>, bool) = match name {
        "DecisionTreeClassifier" | "DecisionTreeRegressor" | "ExtraTreeClassifier" | "ExtraTreeRegressor" => {
            return tree_importances(g, g.get(est, "tree_")?, n_features, true)?
                .ok_or_else(|| invalid!("{name}'s tree has no nodes"))
                .map(|(v, _)| v);
        }
        "RandomForestClassifier" | "RandomForestRegressor" | "ExtraTreesClassifier" | "ExtraTreesRegressor" => {
            (g.items(g.get(est, "estimators_")?)?.to_vec(), true)
        }
        "GradientBoostingClassifier" | "GradientBoostingRegressor" => {
            let a = g.array(g.get(est, "estimators_")?)?;
            let mlscore_pickle::ArrayData::Objects(t) = &a.data else {
                return Err(invalid!("{name}'s estimators_ is not an object array"));
            };
            (t.clone(), false)
        }
        _ => {
            return Err(ReadError::Unsupported(format!(
                "a SelectFromModel over {name}, whose importances mlscore does not compute (it reads coef_, \
                 and the importances of scikit-learn's trees, forests and GradientBoosting); log the model as \
                 ONNX (skl2onnx) to score it"
            )));
        }
    };
    let mut sum = vec![0.0f64; n_features];
    let mut count = 0usize;
    for t in trees {
        if let Some((v, nodes)) = tree_importances(g, g.get(t, "tree_")?, n_features, normalize)?
            && nodes > 1
        {
            // numpy's mean over axis 0: each feature's values added tree after tree.
            sum.iter_mut().zip(&v).for_each(|(s, x)| *s += x);
            count += 1;
        }
    }
    if count == 0 {
        return Ok(vec![0.0; n_features]);
    }
    let mean: Vec<f64> = sum.iter().map(|s| s / count as f64).collect();
    let total = crate::numpy::sum(&mean);
    Ok(mean.iter().map(|m| m / total).collect())
}

/// One tree's importances (scikit-learn's `Tree.compute_feature_importances`), and its node
/// count; `None` for a tree without nodes.
fn tree_importances(g: &Graph, tree: Id, n_features: usize, normalize: bool) -> Result<Option<(Vec<f64>, usize)>> {
    let nodes = g.array(g.get(tree, "nodes")?)?;
    let n = nodes.len();
    if n == 0 {
        return Ok(None);
    }
    let left = g.field(&nodes, "left_child")?;
    let right = g.field(&nodes, "right_child")?;
    let feature = g.field(&nodes, "feature")?;
    let impurity = g.field(&nodes, "impurity")?;
    let weight = g.field(&nodes, "weighted_n_node_samples")?;
    let index = |v: f64, what: &str| -> Result<usize> {
        if v >= 0.0 && v.fract() == 0.0 && (v as usize) < n {
            Ok(v as usize)
        } else {
            Err(invalid!("a tree node's {what} is {v}, outside its {n} nodes"))
        }
    };
    let mut imp = vec![0.0f64; n_features];
    for i in 0..n {
        // scikit-learn's _TREE_LEAF.
        if left[i] == -1.0 {
            continue;
        }
        let (l, r) = (index(left[i], "left child")?, index(right[i], "right child")?);
        let f = feature[i];
        if !(f >= 0.0 && f.fract() == 0.0 && (f as usize) < n_features) {
            return Err(invalid!("a tree node splits on feature {f} of {n_features}"));
        }
        imp[f as usize] += weight[i] * impurity[i] - weight[l] * impurity[l] - weight[r] * impurity[r];
    }
    imp.iter_mut().for_each(|v| *v /= weight[0]);
    if normalize {
        let total = crate::numpy::sum(&imp);
        if total > 0.0 {
            imp.iter_mut().for_each(|v| *v /= total);
        }
    }
    Ok(Some((imp, n)))
}

/// Whether an estimator's input validation lets NaN in (scikit-learn's `allow_nan` tag), for
/// the selectors that take their estimator's: HistGradientBoosting, XGBoost and LightGBM, and
/// trees where the release that wrote them takes NaN.
fn allow_nan(g: &Graph, id: Id) -> Result<bool> {
    let c = class(g, id)?;
    if sklearn_api::is_estimator(&c) {
        return Ok(true);
    }
    let name = short(&c);
    Ok(match name {
        "HistGradientBoostingClassifier" | "HistGradientBoostingRegressor" => true,
        "DecisionTreeClassifier"
        | "DecisionTreeRegressor"
        | "ExtraTreeClassifier"
        | "ExtraTreeRegressor"
        | "RandomForestClassifier"
        | "RandomForestRegressor"
        | "ExtraTreesClassifier"
        | "ExtraTreesRegressor" => {
            let version = sklearn_version(g, id)?;
            trees_take_nan(g, id, name, &version)?
        }
        _ => false,
    })
}

fn column_transformer(g: &Graph, id: Id, depth: usize) -> Result<Transformer> {
    let names = names_in(g, id)?;
    let mut branches = Vec::new();
    let n_in = match g.attr(id, "n_features_in_")? {
        Some(n) => usize::try_from(g.int(n)?).map_err(|_| invalid!("n_features_in_"))?,
        None => names.as_ref().map_or(0, Vec::len),
    };
    if g.attr(id, "sparse_output_")?.is_some_and(|s| g.bool(s).unwrap_or(false)) {
        return Err(ReadError::Unsupported(
            "a ColumnTransformer whose output is a sparse matrix (sparse_threshold > 0 with sparse encoders); refit it with sparse_threshold=0".into(),
        ));
    }
    for t in g.items(g.get(id, "transformers_")?)? {
        let t = g.tuple(*t)?;
        let [name, est, cols, ..] = t else { return Err(invalid!("a ColumnTransformer entry without its columns")) };
        let name = g.str(*name)?.to_string();
        let columns = column_spec(g, *cols, names.as_deref(), n_in, 0)?;
        let step = match g.node(*est) {
            Node::Str(s) if s == "drop" => continue,
            Node::Str(s) if s == "passthrough" => None,
            _ => {
                let c = class(g, *est)?;
                if short(&c) == "FunctionTransformer" && g.attr_set(*est, "func")?.is_none() {
                    None
                } else {
                    Some(transformer(g, *est, depth + 1)?)
                }
            }
        };
        if columns.is_empty() {
            continue;
        }
        branches.push(Branch { name, columns, step });
    }
    Ok(Transformer::Columns(branches))
}

/// Column selections: names, positions, slices, boolean masks, or lists of them.
fn column_spec(g: &Graph, id: Id, names: Option<&[String]>, n_in: usize, depth: usize) -> Result<Vec<usize>> {
    if depth > 8 {
        return Err(invalid!("a ColumnTransformer column selection nests too deeply"));
    }
    let by_name = |s: &str| -> Result<usize> {
        names
            .and_then(|n| n.iter().position(|x| x == s))
            .ok_or_else(|| invalid!("the ColumnTransformer selects column '{s}', which is not among its input columns"))
    };
    let check = |i: i64| -> Result<usize> {
        let i = if i < 0 { i + n_in as i64 } else { i };
        usize::try_from(i)
            .ok()
            .filter(|i| n_in == 0 || *i < n_in)
            .ok_or_else(|| invalid!("column index {i} out of range"))
    };
    if g.is_array(id) {
        return match g.labels(id)? {
            Labels::Str(v) => v.iter().map(|s| by_name(s)).collect(),
            Labels::Bool(m) => Ok(m.iter().enumerate().filter(|(_, b)| **b).map(|(i, _)| i).collect()),
            Labels::Int(v) => v.into_iter().map(check).collect(),
            _ => Err(invalid!("a ColumnTransformer column selection of numbers")),
        };
    }
    match g.node(id) {
        Node::Str(s) => Ok(vec![by_name(s)?]),
        Node::Int(i) => Ok(vec![check(*i)?]),
        Node::List(items) | Node::Tuple(items) => {
            let mut out = Vec::new();
            for i in items {
                match g.node(*i) {
                    Node::Bool(_) => {
                        let mask: Vec<bool> = items.iter().map(|b| g.bool(*b)).collect::<Result<_>>()?;
                        return Ok(mask.iter().enumerate().filter(|(_, b)| **b).map(|(i, _)| i).collect());
                    }
                    _ => out.extend(column_spec(g, *i, names, n_in, depth + 1)?),
                }
            }
            Ok(out)
        }
        Node::Object { args, .. } if g.class_of(id).as_deref() == Some("builtins.slice") => {
            let a = g.tuple(*args)?;
            let get = |k: usize| -> Result<Option<i64>> {
                match a.get(k).map(|i| g.node(*i)) {
                    None | Some(Node::None) => Ok(None),
                    Some(Node::Str(s)) => Ok(Some(by_name(s)? as i64 + i64::from(k == 1))),
                    Some(_) => Ok(Some(g.int(a[k])?)),
                }
            };
            let start = get(0)?.unwrap_or(0).max(0) as usize;
            let stop =
                get(1)?.map_or(n_in, |s| if s < 0 { (n_in as i64 + s).max(0) as usize } else { s as usize }).min(n_in);
            let step = get(2)?.unwrap_or(1);
            if step != 1 {
                return Err(ReadError::Unsupported("ColumnTransformer column slices with a step".into()));
            }
            Ok((start..stop.max(start)).collect())
        }
        _ => Err(ReadError::Unsupported(format!(
            "a ColumnTransformer column selection given as {} (callables and selectors are not read; select columns by name)",
            g.describe(id)
        ))),
    }
}

fn imputer(g: &Graph, id: Id) -> Result<Transformer> {
    let mv = g.get(id, "missing_values")?;
    let missing = match g.node(mv) {
        Node::None => MissingValue::None,
        Node::Float(f) if f.is_nan() => MissingValue::Nan,
        Node::Str(s) => return Err(ReadError::Unsupported(format!("SimpleImputer with missing_values='{s}'"))),
        _ => match g.float(mv)? {
            v if v.is_nan() => MissingValue::Nan,
            v => MissingValue::Value(v),
        },
    };
    let stats = g.get(id, "statistics_")?;
    let fill: Vec<Option<Label>> = match g.labels(stats)? {
        Labels::Float(v) => v.into_iter().map(|x| (!x.is_nan()).then_some(Label::Float(x))).collect(),
        Labels::Int(v) => v.into_iter().map(|x| Some(Label::Float(x as f64))).collect(),
        Labels::Bool(v) => v.into_iter().map(|x| Some(Label::Float(f64::from(u8::from(x))))).collect(),
        Labels::Str(v) => v.into_iter().map(|s| Some(Label::Str(s))).collect(),
        Labels::StrOrNone(v) => v.into_iter().map(|s| s.map(Label::Str)).collect(),
    };
    let keep_empty = g.attr(id, "keep_empty_features")?.is_some_and(|k| g.bool(k).unwrap_or(false));
    let fill = if keep_empty { fill.into_iter().map(|f| Some(f.unwrap_or(Label::Float(0.0)))).collect() } else { fill };
    let indicator = match g.attr_set(id, "indicator_")? {
        Some(ind) => {
            g.vector(g.get(ind, "features_")?)?.into_iter().map(|f| f as usize).filter(|f| *f < fill.len()).collect()
        }
        None => Vec::new(),
    };
    Ok(Transformer::Imputer(Imputer { missing, text_nulls: TextNulls::Nan, fill, indicator }))
}

fn categories(g: &Graph, id: Id) -> Result<Vec<Labels>> {
    g.items(g.get(id, "categories_")?)?.iter().map(|c| g.labels(*c)).collect()
}

/// A feature's categories indexed for lookups: numbers (ints and bools too) by value, strings
/// by text with their missing-value category.
fn index(labels: &Labels) -> Categories {
    match labels {
        Labels::Float(c) => Categories::from_floats(c.iter().copied()),
        Labels::Int(c) => Categories::from_ints(c.iter().copied()),
        Labels::Bool(c) => Categories::from_floats(c.iter().map(|b| f64::from(u8::from(*b)))),
        Labels::Str(c) => Categories::from_strings(c.iter().cloned()),
        Labels::StrOrNone(c) => Categories::from_optional_strings(c.iter().cloned()),
    }
}

fn one_hot(g: &Graph, id: Id) -> Result<Transformer> {
    let categories = categories(g, id)?;
    let handle = g.str(g.get(id, "handle_unknown")?)?.to_string();
    // sparse_output only changes how the values are stored; the next step reads the same numbers.
    let infrequent: Vec<Option<Vec<usize>>> = match g.attr(id, "_infrequent_indices")? {
        Some(ii) if g.attr(id, "_infrequent_enabled")?.is_some_and(|e| g.bool(e).unwrap_or(false)) => g
            .items(ii)?
            .iter()
            .map(|x| match g.node(*x) {
                Node::None => Ok(None),
                _ => Ok(Some(g.vector(*x)?.into_iter().map(|v| v as usize).collect())),
            })
            .collect::<Result<_>>()?,
        _ => vec![None; categories.len()],
    };
    let drop: Vec<Option<usize>> = match g.attr(id, "_drop_idx_after_grouping")?.or(g.attr(id, "drop_idx_")?) {
        Some(d) if !matches!(g.node(d), Node::None) => {
            if g.is_array(d) {
                let a = g.array(d)?;
                match &a.data {
                    mlscore_pickle::ArrayData::Objects(o) => o
                        .iter()
                        .map(|x| match g.node(*x) {
                            Node::None => Ok(None),
                            _ => Ok(Some(g.int(*x)? as usize)),
                        })
                        .collect::<Result<_>>()?,
                    _ => g.vector(d)?.into_iter().map(|v| Some(v as usize)).collect(),
                }
            } else {
                g.items(d)?
                    .iter()
                    .map(|x| Ok(if matches!(g.node(*x), Node::None) { None } else { Some(g.int(*x)? as usize) }))
                    .collect::<Result<_>>()?
            }
        }
        _ => vec![None; categories.len()],
    };
    if drop.len() != categories.len() || infrequent.len() != categories.len() {
        return Err(invalid!("OneHotEncoder's drop or infrequent lists do not match its categories"));
    }
    let (mut slots, mut widths, mut unknown) = (Vec::new(), Vec::new(), Vec::new());
    for ((cats, drop), infreq) in categories.iter().zip(&drop).zip(&infrequent) {
        let n = cats.len();
        // Grouped index of each category: frequent ones in order, infrequent ones last.
        let mut grouped = vec![0usize; n];
        let mut next = 0;
        let infreq = infreq.as_deref().unwrap_or(&[]);
        for (i, slot) in grouped.iter_mut().enumerate() {
            if !infreq.contains(&i) {
                *slot = next;
                next += 1;
            }
        }
        let infreq_slot = (!infreq.is_empty()).then_some(next);
        for i in infreq {
            if *i >= n {
                return Err(invalid!("OneHotEncoder infrequent index {i} out of range"));
            }
            grouped[*i] = next;
        }
        let total = next + usize::from(infreq_slot.is_some());
        if let Some(d) = drop
            && *d >= total
        {
            return Err(invalid!("OneHotEncoder drops category {d} of a feature with {total}"));
        }
        let out = |gidx: usize| -> Option<usize> {
            match drop {
                Some(d) if *d == gidx => None,
                Some(d) if gidx > *d => Some(gidx - 1),
                _ => Some(gidx),
            }
        };
        slots.push(grouped.iter().map(|gi| out(*gi)).collect());
        widths.push(total - usize::from(drop.is_some()));
        unknown.push(if handle == "infrequent_if_exist" { infreq_slot.and_then(out) } else { None });
    }
    let categories = categories.iter().map(index).collect();
    Ok(Transformer::OneHot(OneHot {
        categories,
        slots,
        widths,
        unknown,
        unknown_is_error: handle == "error",
        missing_kind: missing_kinds(g, id)?,
        text_nulls: TextNulls::Nan,
    }))
}

fn ordinal(g: &Graph, id: Id) -> Result<Transformer> {
    let categories = categories(g, id)?;
    if g.attr(id, "_infrequent_enabled")?.is_some_and(|e| g.bool(e).unwrap_or(false)) {
        return Err(ReadError::Unsupported("OrdinalEncoder with infrequent categories".into()));
    }
    let unknown = match g.str(g.get(id, "handle_unknown")?)? {
        "use_encoded_value" => Some(g.float(g.get(id, "unknown_value")?)?),
        _ => None,
    };
    let missing = match g.attr(id, "encoded_missing_value")? {
        Some(m) => Some(g.float(m)?),
        None => None,
    };
    // Which fitted category each feature encodes as `encoded_missing_value`: scikit-learn
    // records it (`_missing_indices`, from 1.1 on; older releases have neither) for a NaN
    // category only; a None category keeps its code, as any other category does.
    let mut missing_at = vec![None; categories.len()];
    if let Some(d) = g.attr(id, "_missing_indices")? {
        for (k, i) in g.attrs(d)? {
            let (k, i) = (g.int(*k)?, g.int(*i)?);
            let slot = usize::try_from(k).ok().and_then(|k| missing_at.get_mut(k));
            let (Some(slot), Ok(i)) = (slot, usize::try_from(i)) else {
                return Err(invalid!(
                    "OrdinalEncoder's _missing_indices names feature {k} (category {i}); it has {} features",
                    categories.len()
                ));
            };
            *slot = Some(i);
        }
    }
    let categories = categories.iter().map(index).collect();
    Ok(Transformer::Ordinal(Ordinal {
        categories,
        unknown,
        missing,
        missing_at,
        missing_kind: missing_kinds(g, id)?,
        text_nulls: TextNulls::Nan,
    }))
}

fn predictor(g: &Graph, id: Id) -> Result<Predictor> {
    predictor_at(g, id, 0)
}

/// The predictor of `id`, `depth` ensembles deep (a calibrated classifier's estimator is one
/// deeper than it).
fn predictor_at(g: &Graph, id: Id, depth: usize) -> Result<Predictor> {
    let c = class(g, id)?;
    if sklearn_api::is_estimator(&c) {
        return boosted(g, id, &c);
    }
    let name = short(&c).to_string();
    let classes = || g.labels(g.get(id, "classes_")?);
    match name.as_str() {
        "LinearRegression"
        | "Ridge"
        | "Lasso"
        | "ElasticNet"
        | "SGDRegressor"
        | "LinearSVR"
        | "RidgeCV"
        | "LassoCV"
        | "ElasticNetCV"
        | "BayesianRidge"
        | "HuberRegressor"
        | "ARDRegression"
        | "Lars"
        | "LarsCV"
        | "LassoLars"
        | "LassoLarsCV"
        | "LassoLarsIC"
        | "OrthogonalMatchingPursuit"
        | "OrthogonalMatchingPursuitCV"
        | "TheilSenRegressor"
        | "QuantileRegressor"
        | "PassiveAggressiveRegressor" => {
            let (coef, intercept) = linear_weights(g, id)?;
            Ok(Predictor::Linear { coef, intercept, kind: LinearKind::Regressor })
        }
        // Generalised linear models: the link's inverse of the linear predictor.
        "PoissonRegressor" | "GammaRegressor" | "TweedieRegressor" => {
            let (coef, intercept) = linear_weights(g, id)?;
            let log = match name.as_str() {
                "TweedieRegressor" => match g.str(g.get(id, "link")?)? {
                    "auto" => g.float(g.get(id, "power")?)? > 0.0,
                    "log" => true,
                    "identity" => false,
                    l => return Err(ReadError::Unsupported(format!("TweedieRegressor link '{l}'"))),
                },
                _ => true,
            };
            Ok(Predictor::Linear {
                coef,
                intercept,
                kind: if log { LinearKind::LogLink } else { LinearKind::Regressor },
            })
        }
        "LogisticRegression"
        | "LogisticRegressionCV"
        | "SGDClassifier"
        | "LinearSVC"
        | "RidgeClassifier"
        | "RidgeClassifierCV"
        | "Perceptron"
        | "PassiveAggressiveClassifier"
        | "LinearDiscriminantAnalysis" => {
            let (coef, intercept) = linear_weights(g, id)?;
            let classes = classes()?;
            let proba = match name.as_str() {
                // Binary: expit; multiclass: softmax of the decisions.
                "LinearDiscriminantAnalysis" => Some(LinearProba::Multinomial),
                "LogisticRegression" | "LogisticRegressionCV" => {
                    let ovr = match g.attr(id, "multi_class")? {
                        Some(m) => matches!(g.opt_str(m)?, Some("ovr")),
                        None => false,
                    };
                    Some(if ovr { LinearProba::OneVsRest } else { LinearProba::Multinomial })
                }
                "SGDClassifier" => match g.str(g.get(id, "loss")?)? {
                    "log_loss" | "log" => Some(LinearProba::OneVsRest),
                    _ => None,
                },
                _ => None,
            };
            let k = classes.len();
            if k < 2 {
                return Err(invalid!("{name} has {k} classes; a classifier has two or more"));
            }
            if coef.len() != if k == 2 { 1 } else { k } {
                return Err(invalid!("{name} has {} rows of coefficients for {k} classes", coef.len()));
            }
            Ok(Predictor::Linear { coef, intercept, kind: LinearKind::Classifier { classes, proba } })
        }
        "DecisionTreeClassifier" | "DecisionTreeRegressor" | "ExtraTreeClassifier" | "ExtraTreeRegressor" => {
            forest(g, &[id], id, &name)
        }
        "RandomForestClassifier" | "RandomForestRegressor" | "ExtraTreesClassifier" | "ExtraTreesRegressor" => {
            let est = g.items(g.get(id, "estimators_")?)?.to_vec();
            forest(g, &est, id, &name)
        }
        "GradientBoostingClassifier" | "GradientBoostingRegressor" => gradient_boosting(g, id, &name),
        "HistGradientBoostingClassifier" | "HistGradientBoostingRegressor" => hist_gradient_boosting(g, id, &name),
        "MLPClassifier" | "MLPRegressor" => {
            let coefs = g.items(g.get(id, "coefs_")?)?;
            let icpts = g.items(g.get(id, "intercepts_")?)?;
            if coefs.len() != icpts.len() || coefs.is_empty() {
                return Err(invalid!("{name}'s coefs_ and intercepts_ do not match"));
            }
            let mut layers = Vec::new();
            let mut width: Option<usize> = None;
            for (c, b) in coefs.iter().zip(icpts) {
                let (w, shape) = g.f64s(*c)?;
                let [n_in, n_out] = shape[..] else { return Err(invalid!("{name} weights of shape {shape:?}")) };
                if width.is_some_and(|w| w != n_in) {
                    return Err(invalid!("{name}'s layers do not chain ({n_in} inputs after {width:?} outputs)"));
                }
                let b = g.vector(*b)?;
                if b.len() != n_out {
                    return Err(invalid!("{name} intercepts do not match its weights"));
                }
                layers.push(Layer { n_in, weights: w, bias: b });
                width = Some(n_out);
            }
            let act = |s: &str| -> Result<Activation> {
                Ok(match s {
                    "identity" => Activation::Identity,
                    "relu" => Activation::Relu,
                    "tanh" => Activation::Tanh,
                    "logistic" => Activation::Logistic,
                    "softmax" => Activation::Softmax,
                    a => return Err(ReadError::Unsupported(format!("{name} activation '{a}'"))),
                })
            };
            let hidden = act(g.str(g.get(id, "activation")?)?)?;
            let out = act(g.str(g.get(id, "out_activation_")?)?)?;
            let classes = if name == "MLPClassifier" { Some(classes()?) } else { None };
            if let Some(c) = &classes {
                let k = width.unwrap_or(0);
                if k != if c.len() == 2 { 1 } else { c.len() } {
                    return Err(ReadError::Unsupported(format!(
                        "{name} with {k} outputs for {} classes (multilabel)",
                        c.len()
                    )));
                }
            }
            Ok(Predictor::Mlp { layers, hidden, out, classes })
        }
        "KMeans" | "MiniBatchKMeans" => {
            let (c, shape) = g.f64s(g.get(id, "cluster_centers_")?)?;
            let [_, n] = shape[..] else { return Err(invalid!("KMeans cluster_centers_ of shape {shape:?}")) };
            Ok(Predictor::KMeans { centers: c.chunks(n.max(1)).map(<[f64]>::to_vec).collect() })
        }
        "SVC" | "NuSVC" | "SVR" | "NuSVR" | "OneClassSVM" => Ok(Predictor::Svm(Box::new(svm::read(g, id, &c)?))),
        "GaussianNB" => Ok(Predictor::NaiveBayes(Box::new(svm::gaussian_nb(g, id)?))),
        "IsolationForest" => isolation_forest(g, id),
        "DummyClassifier" => {
            let strategy = g.str(g.get(id, "_strategy")?)?;
            if g.attr(id, "n_outputs_")?.is_some_and(|n| g.int(n).unwrap_or(1) != 1) {
                return Err(ReadError::Unsupported("a multi-output DummyClassifier".into()));
            }
            let classes = classes()?;
            let prior = g.vector(g.get(id, "class_prior_")?)?;
            if prior.len() != classes.len() || prior.is_empty() {
                return Err(invalid!("DummyClassifier has {} priors for {} classes", prior.len(), classes.len()));
            }
            let label = argmax(&prior);
            let proba = match strategy {
                "prior" => prior,
                "most_frequent" => (0..classes.len()).map(|c| f64::from(u8::from(c == label))).collect(),
                s => {
                    return Err(ReadError::Unsupported(format!(
                        "DummyClassifier(strategy='{s}') (random or constant answers; mlscore reads most_frequent and prior)"
                    )));
                }
            };
            Ok(Predictor::Constant { classes: Some(classes), label, proba, value: 0.0 })
        }
        "DummyRegressor" => {
            let c = g.vector(g.get(id, "constant_")?)?;
            let [value] = c[..] else { return Err(ReadError::Unsupported("a multi-output DummyRegressor".into())) };
            Ok(Predictor::Constant { classes: None, label: 0, proba: Vec::new(), value })
        }
        "KNeighborsClassifier" | "KNeighborsRegressor" => {
            Ok(Predictor::Neighbors(Box::new(neighbors::read(g, id, &name)?)))
        }
        "CalibratedClassifierCV" => calibrated(g, id, depth),
        "TransformedTargetRegressor" => target_transformed(g, id, depth),
        "OneVsRestClassifier" => Ok(Predictor::Ensemble(Box::new(one_vs_rest(g, id, depth)?))),
        "BaggingClassifier" | "BaggingRegressor" => Ok(Predictor::Ensemble(Box::new(bagging(g, id, &name, depth)?))),
        "AdaBoostClassifier" | "AdaBoostRegressor" => {
            Ok(Predictor::Ensemble(Box::new(ada_boost(g, id, &name, depth)?)))
        }
        "VotingClassifier" | "VotingRegressor" | "StackingClassifier" | "StackingRegressor" => {
            Ok(Predictor::Ensemble(Box::new(meta_ensemble(g, id, &name, depth)?)))
        }
        "Pipeline" => Err(invalid!("a nested Pipeline as a final step")),
        _ => Err(ReadError::Unsupported(format!(
            "{c} (mlscore reads {SUPPORTED}); log the model as ONNX (skl2onnx) to score it"
        ))),
    }
}

/// A fitted estimator on its own: a pipeline's (or search's) steps, then its predictor.
fn sub_model(g: &Graph, id: Id, depth: usize) -> Result<(Vec<Transformer>, Predictor)> {
    if depth > 10 {
        return Err(invalid!("ensembles nest more than 10 deep"));
    }
    let id = searched(g, id)?;
    let (mut steps, last) = pipeline_parts(g, id, 0)?;
    let predictor = predictor_at(g, last, depth)?;
    steps.extend(own_preprocessor(g, last)?);
    Ok((steps, predictor))
}

/// A `CalibratedClassifierCV`: its calibrated classifiers, each an estimator and one
/// calibrator per class it scores (one for two classes).
fn calibrated(g: &Graph, id: Id, depth: usize) -> Result<Predictor> {
    let name = "CalibratedClassifierCV";
    let classes = g.labels(g.get(id, "classes_")?)?;
    let k = classes.len();
    if k < 2 {
        return Err(invalid!("{name} has {k} classes; a classifier has two or more"));
    }
    let mut members = Vec::new();
    for c in g.items(g.get(id, "calibrated_classifiers_")?)? {
        let method = g.str(g.get(*c, "method")?)?;
        if method != "sigmoid" && method != "isotonic" {
            return Err(ReadError::Unsupported(format!(
                "{name} with method='{method}' (mlscore reads 'sigmoid' and 'isotonic'); log the model as ONNX, \
                 or calibrate with one of those"
            )));
        }
        // `base_estimator` before scikit-learn 1.2.
        let est = match g.attr(*c, "estimator")? {
            Some(e) => e,
            None => g.get(*c, "base_estimator")?,
        };
        let (steps, predictor) = sub_model(g, est, depth + 1)?;
        let Some(own) = predictor.classes().cloned() else {
            return Err(ReadError::Unsupported(format!(
                "{name} over {}, which is not a classifier",
                g.class_of(est).unwrap_or_default()
            )));
        };
        if !predictor.has_decision() && !predictor.has_proba() {
            return Err(ReadError::Unsupported(format!(
                "{name} over {}, which has neither decision_function nor predict_proba",
                g.class_of(est).unwrap_or_default()
            )));
        }
        if let Predictor::Svm(m) = &predictor
            && let svm::SvmKind::Classifier { counts, ovr: false, .. } = &m.kind
            && counts.len() > 2
        {
            return Err(ReadError::Unsupported(format!(
                "{name} over an SVC with decision_function_shape='ovo' and {} classes (one score per pair of \
                 classes, not per class)",
                counts.len()
            )));
        }
        let mine = g.labels(g.get(*c, "classes")?)?;
        if mine != classes {
            return Err(invalid!("{name}'s calibrated classifier has other classes than the model"));
        }
        let positions = class_positions(&own, &classes)
            .ok_or_else(|| invalid!("{name}'s estimator has classes that the calibrated classifier does not know"))?;
        let mut cals = Vec::new();
        let list = g.items(g.get(*c, "calibrators")?)?;
        let width = if own.len() == 2 { 1 } else { own.len() };
        for (t, cal) in list.iter().enumerate().take(width.min(positions.len())) {
            let class = positions[t] + usize::from(k == 2);
            if class >= k {
                return Err(invalid!("{name}'s calibrator {t} scores class {class} of {k}"));
            }
            cals.push((class, calibrator(g, *cal)?));
        }
        members.push(calibration::Member { sub: Sub { steps, predictor }, calibrators: cals });
    }
    if members.is_empty() {
        return Err(invalid!("{name} holds no calibrated classifier"));
    }
    Ok(Predictor::Calibrated(Box::new(calibration::Calibrated { classes, members })))
}

/// A voting or stacking ensemble: its fitted members (drops left out, as scikit-learn leaves
/// them out of `estimators_`), and how they combine.
fn meta_ensemble(g: &Graph, id: Id, name: &str, depth: usize) -> Result<ensemble::Ensemble> {
    let classifier = name.ends_with("Classifier");
    let classes = if classifier {
        if g.attr(id, "_label_encoder")?.is_some_and(|e| g.items(e).is_ok()) {
            return Err(ReadError::Unsupported(format!("a multilabel {name}")));
        }
        let c = g.labels(g.get(id, "classes_")?)?;
        if c.len() < 2 {
            return Err(invalid!("{name} has {} classes; a classifier has two or more", c.len()));
        }
        Some(c)
    } else {
        None
    };
    let k = classes.as_ref().map_or(0, Labels::len);
    // Members of a classifier were fitted on the labels' indices: their classes are 0..k.
    let encoded = |p: &Predictor, what: &str| -> Result<()> {
        if classifier && p.classes() != Some(&Labels::Int((0..k as i64).collect())) {
            return Err(invalid!("{name}'s {what} was not fitted on its {k} encoded classes"));
        }
        Ok(())
    };
    let mut subs = Vec::new();
    for e in g.items(g.get(id, "estimators_")?)? {
        let (steps, predictor) = sub_model(g, *e, depth + 1)?;
        subs.push((Sub { steps, predictor }, g.class_of(*e).unwrap_or_default()));
    }
    if subs.is_empty() {
        return Err(invalid!("{name} holds no fitted estimator"));
    }
    if name.starts_with("Voting") {
        let soft = classifier && g.str(g.get(id, "voting")?)? == "soft";
        let weights = match g.attr(id, "weights")? {
            Some(w) if !matches!(g.node(w), Node::None) => {
                let all = g.items(g.get(id, "estimators")?)?;
                let w = g.vector(w)?;
                if w.len() != all.len() {
                    return Err(invalid!("{name} has {} weights for {} estimators", w.len(), all.len()));
                }
                let mut kept = Vec::new();
                for (pair, w) in all.iter().zip(w) {
                    let est =
                        *g.tuple(*pair)?.get(1).ok_or_else(|| invalid!("{name}'s estimators hold a bare entry"))?;
                    if g.opt_str(est).ok().flatten() != Some("drop") {
                        kept.push(w);
                    }
                }
                if kept.len() != subs.len() {
                    return Err(invalid!("{name} has {} weights for {} fitted estimators", kept.len(), subs.len()));
                }
                Some(kept)
            }
            _ => None,
        };
        for (s, c) in &subs {
            encoded(&s.predictor, c)?;
            if soft && !s.predictor.has_proba() {
                return Err(ReadError::Unsupported(format!("a soft {name} over {c}, which has no predict_proba")));
            }
            if !classifier && s.predictor.classes().is_some() {
                return Err(invalid!("{name} over the classifier {c}"));
            }
        }
        let members = subs.into_iter().map(|(s, _)| s).collect();
        return Ok(ensemble::Ensemble::Voting { members, weights, soft, classes });
    }
    let methods = g.items(g.get(id, "stack_method_")?)?;
    if methods.len() != subs.len() {
        return Err(invalid!("{name} has {} stack methods for {} estimators", methods.len(), subs.len()));
    }
    let mut members = Vec::new();
    for ((s, c), m) in subs.into_iter().zip(methods) {
        let method = match g.str(*m)? {
            "predict_proba" if s.predictor.has_proba() => Method::Proba,
            "decision_function" if s.predictor.has_decision() => Method::Decision,
            "predict" => Method::Predict,
            other => {
                return Err(ReadError::Unsupported(format!(
                    "{name} stacking {c} by its {other}, which mlscore does not compute"
                )));
            }
        };
        if method != Method::Predict || s.predictor.classes().is_some() {
            encoded(&s.predictor, &c)?;
        }
        members.push((s, method));
    }
    let last_id = g.get(id, "final_estimator_")?;
    let (steps, predictor) = sub_model(g, last_id, depth + 1)?;
    encoded(&predictor, "final estimator")?;
    let passthrough = match g.attr(id, "passthrough")? {
        Some(p) => g.bool(p)?,
        None => false,
    };
    Ok(ensemble::Ensemble::Stacking { members, last: Box::new(Sub { steps, predictor }), passthrough, classes })
}

/// A `OneVsRestClassifier`: one fitted binary estimator per class (one for two classes).
fn one_vs_rest(g: &Graph, id: Id, depth: usize) -> Result<ensemble::Ensemble> {
    let name = "OneVsRestClassifier";
    let lb = g.get(id, "label_binarizer_")?;
    let kind = g.str(g.get(lb, "y_type_")?)?;
    if kind != "multiclass" && kind != "binary" {
        return Err(ReadError::Unsupported(format!("a {name} fitted on {kind} targets")));
    }
    let classes = match g.attr(id, "classes_")? {
        Some(c) => g.labels(c)?,
        None => g.labels(g.get(lb, "classes_")?)?,
    };
    let mut members = Vec::new();
    for e in g.items(g.get(id, "estimators_")?)? {
        let c = g.class_of(*e).unwrap_or_default();
        if short(&c) == "_ConstantPredictor" {
            return Err(ReadError::Unsupported(format!(
                "a {name} with a class that was always or never present when it was fitted (a constant predictor)"
            )));
        }
        let (steps, predictor) = sub_model(g, *e, depth + 1)?;
        if predictor.classes().map(Labels::len) != Some(2) {
            return Err(invalid!("{name}'s estimator {c} is not a binary classifier"));
        }
        if !predictor.has_decision() && !predictor.has_proba() {
            return Err(ReadError::Unsupported(format!(
                "a {name} over {c}, which has neither decision_function nor predict_proba"
            )));
        }
        members.push(Sub { steps, predictor });
    }
    let want = if classes.len() == 2 { 1 } else { classes.len() };
    if members.len() != want {
        return Err(invalid!("{name} has {} estimators for {} classes", members.len(), classes.len()));
    }
    let first_wins = written_since(g, id, 1, 8)?;
    let zero_rows_kept = written_since(g, id, 1, 7)?;
    let proba = members.iter().all(|m| m.predictor.has_proba());
    Ok(ensemble::Ensemble::OneVsRest { members, classes, first_wins, zero_rows_kept, proba })
}

/// A `BaggingClassifier` or `BaggingRegressor`: each fitted estimator with its features.
fn bagging(g: &Graph, id: Id, name: &str, depth: usize) -> Result<ensemble::Ensemble> {
    let n_in = n_features_of(g, id)?;
    let classes = if name == "BaggingClassifier" { Some(g.labels(g.get(id, "classes_")?)?) } else { None };
    let k = classes.as_ref().map_or(0, Labels::len);
    let ests = g.items(g.get(id, "estimators_")?)?.to_vec();
    let feats = g.items(g.get(id, "estimators_features_")?)?.to_vec();
    if ests.is_empty() || ests.len() != feats.len() {
        return Err(invalid!("{name} has {} estimators and {} feature sets", ests.len(), feats.len()));
    }
    let mut members = Vec::new();
    for (e, fs) in ests.iter().zip(&feats) {
        let features = g
            .vector(*fs)?
            .into_iter()
            .map(|f| {
                if f >= 0.0 && f.fract() == 0.0 && (f as usize) < n_in {
                    Ok(f as usize)
                } else {
                    Err(invalid!("{name}'s estimator reads feature {f} of {n_in}"))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let (steps, predictor) = sub_model(g, *e, depth + 1)?;
        let own = match (&classes, predictor.classes()) {
            (None, None) => Vec::new(),
            (Some(_), Some(Labels::Int(v))) => v
                .iter()
                .map(|c| {
                    usize::try_from(*c)
                        .ok()
                        .filter(|c| *c < k)
                        .ok_or_else(|| invalid!("{name}'s estimator has class {c} of {k}"))
                })
                .collect::<Result<_>>()?,
            _ => return Err(invalid!("{name}'s estimator does not predict what the model does")),
        };
        members.push((Sub { steps, predictor }, features, own));
    }
    Ok(ensemble::Ensemble::Bagging { members, classes })
}

/// An `AdaBoostClassifier` or `AdaBoostRegressor`: its fitted estimators and their weights.
fn ada_boost(g: &Graph, id: Id, name: &str, depth: usize) -> Result<ensemble::Ensemble> {
    let classes = if name == "AdaBoostClassifier" { Some(g.labels(g.get(id, "classes_")?)?) } else { None };
    if classes.as_ref().is_some_and(|c| c.len() < 2) {
        return Err(ReadError::Unsupported(format!("an {name} fitted on one class")));
    }
    let weights = g.vector(g.get(id, "estimator_weights_")?)?;
    let ests = g.items(g.get(id, "estimators_")?)?.to_vec();
    if ests.is_empty() || ests.len() > weights.len() {
        return Err(invalid!("{name} has {} estimators and {} weights", ests.len(), weights.len()));
    }
    // SAMME.R was the default until scikit-learn 1.6 removed it.
    let samme_r = classes.is_some()
        && g.attr(id, "algorithm")?.and_then(|a| g.opt_str(a).ok().flatten()).is_some_and(|a| a == "SAMME.R");
    let mut members = Vec::new();
    for e in &ests {
        let (steps, predictor) = sub_model(g, *e, depth + 1)?;
        if predictor.classes() != classes.as_ref() {
            return Err(invalid!("{name}'s estimator predicts other classes than the model"));
        }
        if samme_r && !predictor.has_proba() {
            return Err(invalid!("{name} (SAMME.R) over an estimator without predict_proba"));
        }
        members.push(Sub { steps, predictor });
    }
    let symmetric = written_since(g, id, 1, 3)?;
    Ok(ensemble::Ensemble::AdaBoost { members, weights, classes, samme_r, symmetric })
}

/// How a `TransformedTargetRegressor` maps its regressor's predictions back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Inverse {
    Identity,
    /// A numpy function given as `inverse_func`.
    Ufunc(Ufunc),
    /// `StandardScaler.inverse_transform`: `x * mul` (with_std), then `+ add` (with_mean).
    Scale {
        mul: Option<f64>,
        add: Option<f64>,
    },
    /// `MinMaxScaler.inverse_transform`: `(x - min_) / scale_`.
    MinMax {
        sub: f64,
        div: f64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Ufunc {
    Exp,
    Expm1,
    Exp2,
    Log,
    Log1p,
    Log2,
    Log10,
    Sqrt,
    Square,
    Cbrt,
}

impl Inverse {
    fn apply(self, x: f64) -> f64 {
        match self {
            Inverse::Identity => x,
            Inverse::Ufunc(u) => match u {
                Ufunc::Exp => x.exp(),
                Ufunc::Expm1 => x.exp_m1(),
                Ufunc::Exp2 => x.exp2(),
                Ufunc::Log => x.ln(),
                Ufunc::Log1p => x.ln_1p(),
                Ufunc::Log2 => x.log2(),
                Ufunc::Log10 => x.log10(),
                Ufunc::Sqrt => x.sqrt(),
                Ufunc::Square => x * x,
                Ufunc::Cbrt => x.cbrt(),
            },
            Inverse::Scale { mul, add } => {
                let x = mul.map_or(x, |m| x * m);
                add.map_or(x, |a| x + a)
            }
            Inverse::MinMax { sub, div } => (x - sub) / div,
        }
    }
}

/// A `TransformedTargetRegressor`: its fitted regressor, and the inverse of its fitted
/// transformer (a numpy function pair given as func / inverse_func, or a scaler).
fn target_transformed(g: &Graph, id: Id, depth: usize) -> Result<Predictor> {
    let name = "TransformedTargetRegressor";
    let (steps, inner) = sub_model(g, g.get(id, "regressor_")?, depth + 1)?;
    if inner.classes().is_some() || inner.value_width() != 1 {
        return Err(ReadError::Unsupported(format!("a {name} over a classifier or a multi-output regressor")));
    }
    let t = g.get(id, "transformer_")?;
    let class = class(g, t)?;
    let one = |attr: &str| -> Result<Option<f64>> {
        match g.attr_set(t, attr)? {
            Some(v) => {
                let v = g.vector(v)?;
                if v.len() != 1 {
                    return Err(invalid!("{name}'s target {class} has {} values of {attr}", v.len()));
                }
                Ok(Some(v[0]))
            }
            None => Ok(None),
        }
    };
    let (inverse, finite) = match short(&class) {
        "FunctionTransformer" => {
            let validate = g.attr(t, "validate")?.is_some_and(|v| g.bool(v).unwrap_or(false));
            let inverse = match g.attr_set(t, "inverse_func")? {
                None => Inverse::Identity,
                Some(f) => {
                    let full = g.global(f).unwrap_or_else(|| g.describe(f));
                    let (module, func) = full.rsplit_once('.').unwrap_or(("", full.as_str()));
                    let u = match func {
                        "exp" => Ufunc::Exp,
                        "expm1" => Ufunc::Expm1,
                        "exp2" => Ufunc::Exp2,
                        "log" => Ufunc::Log,
                        "log1p" => Ufunc::Log1p,
                        "log2" => Ufunc::Log2,
                        "log10" => Ufunc::Log10,
                        "sqrt" => Ufunc::Sqrt,
                        "square" => Ufunc::Square,
                        "cbrt" => Ufunc::Cbrt,
                        _ => {
                            return Err(ReadError::Unsupported(format!(
                                "a {name} whose inverse_func is {full} (mlscore applies numpy's exp, expm1, exp2, log, \
                                 log1p, log2, log10, sqrt, square and cbrt); log the model as ONNX"
                            )));
                        }
                    };
                    if !module.starts_with("numpy") {
                        return Err(ReadError::Unsupported(format!("a {name} whose inverse_func is {full}")));
                    }
                    if g.attr_set(t, "inv_kw_args")?.is_some_and(|k| g.attrs(k).map(|a| !a.is_empty()).unwrap_or(true))
                    {
                        return Err(ReadError::Unsupported(format!("a {name} whose inverse_func takes arguments")));
                    }
                    Inverse::Ufunc(u)
                }
            };
            (inverse, if validate { Finite::All } else { Finite::Any })
        }
        "StandardScaler" => {
            let flag = |f: &str| -> Result<bool> { Ok(g.attr(t, f)?.is_none_or(|w| g.bool(w).unwrap_or(true))) };
            let mul = if flag("with_std")? { one("scale_")? } else { None };
            let add = if flag("with_mean")? { one("mean_")? } else { None };
            (Inverse::Scale { mul, add }, Finite::AllowNan)
        }
        "MinMaxScaler" => {
            let (Some(div), Some(sub)) = (one("scale_")?, one("min_")?) else {
                return Err(invalid!("{name}'s MinMaxScaler is not fitted"));
            };
            (Inverse::MinMax { sub, div }, Finite::AllowNan)
        }
        other => {
            return Err(ReadError::Unsupported(format!(
                "a {name} whose target transformer is {other} (mlscore reads a numpy function pair, StandardScaler \
                 and MinMaxScaler)"
            )));
        }
    };
    Ok(Predictor::TargetTransformed { regressor: Box::new(Sub { steps, predictor: inner }), inverse, finite })
}

/// Where each of `sub`'s labels is among `all`'s (`LabelEncoder.transform`).
fn class_positions(sub: &Labels, all: &Labels) -> Option<Vec<usize>> {
    fn find<T: PartialEq>(s: &[T], a: &[T]) -> Option<Vec<usize>> {
        s.iter().map(|x| a.iter().position(|y| y == x)).collect()
    }
    match (sub, all) {
        (Labels::Int(s), Labels::Int(a)) => find(s, a),
        (Labels::Float(s), Labels::Float(a)) => find(s, a),
        (Labels::Str(s), Labels::Str(a)) => find(s, a),
        (Labels::Bool(s), Labels::Bool(a)) => find(s, a),
        (Labels::StrOrNone(s), Labels::StrOrNone(a)) => find(s, a),
        _ => None,
    }
}

fn calibrator(g: &Graph, id: Id) -> Result<Calibrator> {
    let c = class(g, id)?;
    match short(&c) {
        "_SigmoidCalibration" => {
            Ok(Calibrator::Sigmoid { a: g.float(g.get(id, "a_")?)?, b: g.float(g.get(id, "b_")?)? })
        }
        "IsotonicRegression" => {
            let bounds = g.str(g.get(id, "out_of_bounds")?)?;
            if bounds != "clip" {
                return Err(ReadError::Unsupported(format!(
                    "an IsotonicRegression calibrator with out_of_bounds='{bounds}'"
                )));
            }
            let x = g.vector(g.get(id, "X_thresholds_")?)?;
            let y = g.vector(g.get(id, "y_thresholds_")?)?;
            if x.len() != y.len() || x.is_empty() || !x.windows(2).all(|w| w[0] < w[1]) {
                return Err(invalid!(
                    "an IsotonicRegression calibrator's thresholds are not increasing, or do not match"
                ));
            }
            Ok(Calibrator::Isotonic { x, y, min: g.float(g.get(id, "X_min_")?)?, max: g.float(g.get(id, "X_max_")?)? })
        }
        other => Err(ReadError::Unsupported(format!("a calibrator {other}"))),
    }
}

/// An XGBoost or LightGBM estimator (most often a pipeline's last step): its booster, read
/// from the graph as data.
fn boosted(g: &Graph, id: Id, class: &str) -> Result<Predictor> {
    use mlscore_booster::ReadError as Booster;
    let name = short(class);
    let e = sklearn_api::from_graph(g, id).map_err(|e| match e {
        Booster::Pickle(p) => p,
        Booster::Unsupported(s) => ReadError::Unsupported(format!("{name}: {s}")),
        other => invalid!("{name}'s booster: {other}"),
    })?;
    if let Some(f) = e
        .booster
        .inputs()
        .categories
        .iter()
        .position(|c| c.as_ref().is_some_and(|c| c.iter().any(|n| n.parse::<f64>().is_err())))
    {
        return Err(ReadError::Unsupported(format!(
            "{name} with categorical feature {f} whose categories are names (pandas categories) in a scikit-learn model; \
             log the estimator itself with mlflow.{} to score it with its categories",
            e.booster.library()
        )));
    }
    Ok(Predictor::Boosted(Box::new(e)))
}

/// `coef_` as rows (one per output) and `intercept_` (one per output).
fn linear_weights(g: &Graph, id: Id) -> Result<(Vec<Vec<f64>>, Vec<f64>)> {
    let (w, shape) = g.f64s(g.get(id, "coef_")?)?;
    let (rows, n) = match shape[..] {
        [n] => (1, n),
        [r, n] => (r, n),
        _ => return Err(invalid!("coef_ of shape {shape:?}")),
    };
    let coef: Vec<Vec<f64>> = w.chunks(n.max(1)).map(<[f64]>::to_vec).take(rows).collect();
    let intercept = match g.attr(id, "intercept_")? {
        Some(i) => g.vector(i)?,
        None => vec![0.0],
    };
    let intercept = if intercept.len() == 1 && rows > 1 { vec![intercept[0]; rows] } else { intercept };
    if intercept.len() != rows {
        return Err(invalid!("intercept_ has {} values for {rows} rows of coefficients", intercept.len()));
    }
    Ok((coef, intercept))
}

/// Whether a scikit-learn version is older than 1.8, the last release before pandas 3.
pub(crate) fn written_before_pandas_3(v: &str) -> bool {
    version_before(v, 1, 8)
}

/// The scikit-learn release that wrote an estimator (`_sklearn_version`; empty if unrecorded).
pub(crate) fn sklearn_version(g: &Graph, id: Id) -> Result<String> {
    Ok(g.attr(id, "_sklearn_version")?.and_then(|v| g.str(v).ok().map(str::to_string)).unwrap_or_default())
}

/// Whether an estimator records that scikit-learn `major.minor` or later wrote it.
pub(crate) fn written_since(g: &Graph, id: Id, major: u32, minor: u32) -> Result<bool> {
    let v = sklearn_version(g, id)?;
    Ok(!v.is_empty() && !version_before(&v, major, minor))
}

/// Whether a version string (`1.3.2`) is before `major.minor`.
pub(crate) fn version_before(v: &str, major: u32, minor: u32) -> bool {
    let mut p = v
        .split('.')
        .map(|x| x.chars().take_while(char::is_ascii_digit).collect::<String>().parse::<u32>().unwrap_or(0));
    let (a, b) = (p.next().unwrap_or(0), p.next().unwrap_or(0));
    (a, b) < (major, minor)
}

/// Turns a tree node's values into its leaf's `(output, weight)` entries.
type LeafWeights<'a> = dyn Fn(&[f64]) -> Vec<(usize, f64)> + 'a;

/// Appends one `sklearn.tree._tree.Tree` to `raw`, validated: children in range and after their
/// parent (so no cycles), features in range, values the right size. `leaf` turns a node's values
/// into the leaf's `(output, weight)` entries.
fn add_tree(g: &Graph, tree: Id, n_features: usize, raw: &mut RawEnsemble, leaf: &LeafWeights) -> Result<()> {
    let (t, _) = tree_nodes(g, tree)?;
    let n = t.is_leaf.len();
    let (values, vshape) = g.f64s(g.get(tree, "values")?)?;
    if vshape.first() != Some(&n) || n == 0 {
        return Err(invalid!("a tree has {n} nodes and values of shape {vshape:?}"));
    }
    let per = values.len() / n;
    push_tree(raw, &t.arrays(), n_features, &|i| leaf(&values[i * per..(i + 1) * per]))
}

/// A fitted `sklearn.tree._tree.Tree`'s node fields, read from its `nodes` record array (also
/// returned, for the fields only some readers need). Validated when pushed ([`push_tree`]).
struct TreeNodes {
    left: Vec<f64>,
    right: Vec<f64>,
    feature: Vec<f64>,
    threshold: Vec<f64>,
    missing_left: Vec<f64>,
    is_leaf: Vec<bool>,
}

fn tree_nodes(g: &Graph, tree: Id) -> Result<(TreeNodes, std::rc::Rc<mlscore_pickle::NdArray>)> {
    let Node::Object { state: Some(_), .. } = g.node(tree) else {
        return Err(invalid!("expected a fitted tree, found {}", g.describe(tree)));
    };
    let nodes = g.array(g.get(tree, "nodes")?)?;
    let left = g.field(&nodes, "left_child")?;
    let missing_left = if Graph::has_field(&nodes, "missing_go_to_left") {
        g.field(&nodes, "missing_go_to_left")?
    } else {
        vec![0.0; nodes.len()]
    };
    let t = TreeNodes {
        is_leaf: left.iter().map(|l| *l < 0.0).collect(),
        right: g.field(&nodes, "right_child")?,
        feature: g.field(&nodes, "feature")?,
        threshold: g.field(&nodes, "threshold")?,
        left,
        missing_left,
    };
    Ok((t, nodes))
}

impl TreeNodes {
    fn arrays(&self) -> TreeArrays<'_> {
        TreeArrays {
            is_leaf: &self.is_leaf,
            left: &self.left,
            right: &self.right,
            feature: &self.feature,
            threshold: &self.threshold,
            missing_left: &self.missing_left,
            members: &[],
        }
    }
}

/// One tree's node arrays, node by node (both scikit-learn layouts read into this).
struct TreeArrays<'a> {
    is_leaf: &'a [bool],
    left: &'a [f64],
    right: &'a [f64],
    feature: &'a [f64],
    threshold: &'a [f64],
    missing_left: &'a [f64],
    /// Per node, for categorical splits: the categories that go left (empty: no such split).
    members: &'a [Option<Vec<f64>>],
}

/// Appends a tree to `raw`, validated: children must be later nodes of the tree (so no cycles),
/// features in range; `leaf(i)` gives node `i`'s leaf entries. Splits are `x <= threshold`, NaN
/// to the left where `missing_left`.
fn push_tree(
    raw: &mut RawEnsemble,
    t: &TreeArrays<'_>,
    n_features: usize,
    leaf: &dyn Fn(usize) -> Vec<(usize, f64)>,
) -> Result<()> {
    let n = t.is_leaf.len();
    if n == 0 {
        return Err(invalid!("a tree without nodes"));
    }
    // New indices: splits into raw.nodes, leaves into raw.leaves.
    let mut target = Vec::with_capacity(n);
    let (mut splits, mut leaves) = (raw.nodes.len(), raw.leaves.len());
    for l in t.is_leaf {
        if *l {
            target.push(Target::Leaf(leaves));
            leaves += 1;
        } else {
            target.push(Target::Node(splits));
            splits += 1;
        }
    }
    for i in 0..n {
        if t.is_leaf[i] {
            raw.leaves.push(leaf(i));
            continue;
        }
        let child = |c: f64| -> Result<Target> {
            if c.fract() != 0.0 || c <= i as f64 || c >= n as f64 {
                return Err(invalid!("tree node {i} has child {c}, which is not a later node of its {n}"));
            }
            Ok(target[c as usize])
        };
        let f = t.feature[i];
        if f.fract() != 0.0 || f < 0.0 || f >= n_features as f64 {
            return Err(invalid!("tree node {i} splits on feature {f}, and the model has {n_features} features"));
        }
        let members = t.members.get(i).cloned().flatten();
        raw.nodes.push(RawNode {
            feature: f as usize,
            threshold: t.threshold[i],
            mode: if members.is_some() { Mode::Member } else { Mode::Leq },
            missing_true: t.missing_left[i] != 0.0,
            members: members.unwrap_or_default(),
            yes: child(t.left[i])?,
            no: child(t.right[i])?,
        });
    }
    raw.roots.push(target[0]);
    Ok(())
}

/// A HistGradientBoosting tree's categorical splits: per node, the categories its bitset sends
/// left (`None` for numeric splits and leaves).
fn categorical_splits(
    g: &Graph,
    predictor: Id,
    nodes: &mlscore_pickle::NdArray,
    is_leaf: &[bool],
    name: &str,
) -> Result<Vec<Option<Vec<f64>>>> {
    if !Graph::has_field(nodes, "is_categorical") {
        return Ok(Vec::new());
    }
    let cat = g.field(nodes, "is_categorical")?;
    if cat.iter().zip(is_leaf).all(|(c, l)| *c == 0.0 || *l) {
        return Ok(Vec::new());
    }
    let index = g.field(nodes, "bitset_idx")?;
    let (words, shape) = g.f64s(g.get(predictor, "raw_left_cat_bitsets")?)?;
    let rows = match shape.as_slice() {
        [n, 8] => *n,
        _ => return Err(invalid!("{name}'s category bitsets have shape {shape:?}, not (n, 8)")),
    };
    cat.iter()
        .zip(&index)
        .zip(is_leaf)
        .map(|((c, b), leaf)| {
            if *c == 0.0 || *leaf {
                return Ok(None);
            }
            if b.fract() != 0.0 || *b < 0.0 || *b >= rows as f64 {
                return Err(invalid!("{name} has a split on bitset {b} of {rows}"));
            }
            let row = &words[*b as usize * 8..][..8];
            let members = (0..256u32).filter(|k| (row[(k / 32) as usize] as u64 >> (k % 32)) & 1 == 1);
            Ok(Some(members.map(f64::from).collect()))
        })
        .collect()
}

/// Checks that the categories a HistGradientBoosting's trees know for each categorical feature
/// are its encoder's codes, 0 to n - 1 (`counts`: the encoder's categories per feature, a
/// missing one among them, which it encodes as NaN): a code then goes left or right, never the
/// missing way (which scikit-learn takes for a category its trees do not know).
fn known_categories_are_codes(g: &Graph, id: Id, name: &str, counts: &[usize]) -> Result<()> {
    let mapper = g.get(id, "_bin_mapper")?;
    let remapped: Vec<bool> = g.vector(g.get(mapper, "is_categorical_")?)?.iter().map(|v| *v != 0.0).collect();
    let thresholds = g.items(g.get(mapper, "bin_thresholds_")?)?;
    if remapped.iter().filter(|c| **c).count() != counts.len() {
        let known = remapped.iter().filter(|c| **c).count();
        return Err(invalid!("{name} encodes {} categorical features and its trees know {known}", counts.len()));
    }
    let mut counts = counts.iter();
    for (f, (cat, t)) in remapped.iter().zip(thresholds).enumerate() {
        if !*cat {
            continue;
        }
        let known = g.vector(*t)?;
        let encoded = counts.next().copied().unwrap_or(0);
        if known.len() > 256
            || known.iter().enumerate().any(|(i, v)| *v != i as f64)
            || !(encoded == known.len() || encoded == known.len() + 1)
        {
            return Err(ReadError::Unsupported(format!(
                "{name} whose categorical feature {f} knows categories other than its encoder's codes"
            )));
        }
    }
    Ok(())
}

fn n_features_of(g: &Graph, id: Id) -> Result<usize> {
    let n = g.get(id, "n_features_in_")?;
    usize::try_from(g.int(n)?).map_err(|_| invalid!("n_features_in_ is negative"))
}

fn compile(raw: &RawEnsemble, outputs: usize) -> Result<Ensemble<f64>> {
    Ensemble::compile(raw, outputs).map_err(|e| invalid!("the trees cannot be compiled: {e}"))
}

/// The trees again for float32 inputs: each split `x <= t` becomes `x <= t32`, `t32` the largest
/// float32 not above `t`, which for a float32 `x` is the same test exactly; walked in float32
/// (twice the SIMD lanes and half the node bytes of float64), the leaves' values kept in float64
/// in a table, `k` a leaf ([`RawEnsemble::leaf_table`]). `None` where a split is not `<=` or a
/// leaf does not weigh every output once. Forest classifiers gain most: RandomForest 100 trees
/// depth 8, binary, 279k rows/s in float64, 500-700k in float32 (an older kernel). Single outputs
/// once were as fast in float64, where each leaf's value sits in its node; since the masks add a
/// single output's values from a per-tree copy of the table, float32 is faster for them too
/// (GradientBoosting 100 trees, 65,536-row batches, one thread: 6.1M -> 6.3M rows/s, and
/// reading the columns in place, which only this walk does, 7.3-7.7M).
fn f32_walk(raw: &RawEnsemble, k: usize) -> Result<Option<(Ensemble<f32>, Vec<f64>)>> {
    if raw.nodes.iter().any(|n| n.mode != Mode::Leq) {
        return Ok(None);
    }
    let Some(table) = raw.leaf_table(k) else { return Ok(None) };
    let mut rounded = raw.clone();
    for n in &mut rounded.nodes {
        let t = n.threshold as f32;
        n.threshold = f64::from(if f64::from(t) > n.threshold { t.next_down() } else { t });
    }
    let ensemble = Ensemble::compile(&rounded, k).map_err(|e| invalid!("the trees cannot be compiled: {e}"))?;
    Ok(Some((ensemble, table)))
}

fn forest(g: &Graph, trees: &[Id], model: Id, name: &str) -> Result<Predictor> {
    let n_features = n_features_of(g, model)?;
    let version = sklearn_version(g, model)?;
    let classifier = name.ends_with("Classifier");
    let classes = if classifier { Some(g.labels(g.get(model, "classes_")?)?) } else { None };
    let mut raw = RawEnsemble::default();
    let outputs;
    if let Some(c) = &classes {
        let k = c.len();
        outputs = k;
        let counts = version_before(&version, 1, 4);
        for t in trees {
            let tree = g.get(*t, "tree_")?;
            let leaf = |v: &[f64]| -> Vec<(usize, f64)> {
                let v = &v[..k.min(v.len())];
                let sum: f64 = v.iter().sum();
                v.iter().enumerate().map(|(i, x)| (i, if counts && sum > 0.0 { x / sum } else { *x })).collect()
            };
            check_outputs(g, tree, 1, name)?;
            add_tree(g, tree, n_features, &mut raw, &leaf)?;
        }
    } else {
        let n_out = match g.attr(model, "n_outputs_")? {
            Some(n) => usize::try_from(g.int(n)?).map_err(|_| invalid!("n_outputs_"))?,
            None => 1,
        };
        outputs = n_out;
        for t in trees {
            let tree = g.get(*t, "tree_")?;
            check_outputs(g, tree, n_out, name)?;
            let leaf = |v: &[f64]| -> Vec<(usize, f64)> {
                let per = v.len() / n_out.max(1);
                (0..n_out).filter_map(|o| v.get(o * per).map(|x| (o, *x))).collect()
            };
            add_tree(g, tree, n_features, &mut raw, &leaf)?;
        }
    }
    if trees.is_empty() {
        return Err(invalid!("{name} has no trees"));
    }
    let average = (trees.len() > 1 || !name.starts_with("Decision")).then_some(trees.len() as f64);
    let nan_is_error = (!trees_take_nan(g, model, name, &version)?).then(|| name.to_string());
    Ok(Predictor::Trees(Box::new(Trees {
        walk: tree_walk(raw, outputs, true)?,
        outputs,
        f32_inputs: true,
        init: Vec::new(),
        average,
        link: TreeLink::Identity,
        classes,
        n_features,
        nan_is_error,
        take_infinite: false,
    })))
}

/// scikit-learn's `_average_path_length` of a leaf of `n` samples: the expected path length
/// of an unsuccessful search in a binary tree of `n` keys.
fn average_path_length(n: f64) -> f64 {
    if n <= 1.0 {
        0.0
    } else if n == 2.0 {
        1.0
    } else {
        2.0 * ((n - 1.0).ln() + 0.577_215_664_901_532_9) - 2.0 * (n - 1.0) / n
    }
}

/// An `IsolationForest`: each extra tree (on its `estimators_features_` when features were
/// subsampled) with leaves worth `depth + average_path_length(n_node_samples) - 1`, as
/// scikit-learn adds them per tree.
fn isolation_forest(g: &Graph, id: Id) -> Result<Predictor> {
    let name = "IsolationForest";
    let n_features = n_features_of(g, id)?;
    let trees = g.items(g.get(id, "estimators_")?)?.to_vec();
    let features = g.items(g.get(id, "estimators_features_")?)?.to_vec();
    if trees.is_empty() || trees.len() != features.len() {
        return Err(invalid!("{name} has {} trees and {} feature sets", trees.len(), features.len()));
    }
    let max_features = g.int(g.get(id, "_max_features")?)?;
    let subsample = max_features != n_features as i64;
    let max_samples = g.float(g.get(id, "_max_samples")?)?;
    let offset = g.float(g.get(id, "offset_")?)?;
    let mut raw = RawEnsemble::default();
    for (t, fs) in trees.iter().zip(&features) {
        let tree = g.get(*t, "tree_")?;
        let (mut t, nodes) = tree_nodes(g, tree)?;
        let n = t.is_leaf.len();
        let samples = g.field(&nodes, "n_node_samples")?;
        if subsample {
            let fs = g.vector(*fs)?;
            for (f, leaf) in t.feature.iter_mut().zip(&t.is_leaf) {
                if !leaf {
                    *f = *fs.get(*f as usize).filter(|_| *f >= 0.0 && f.fract() == 0.0).ok_or_else(|| {
                        invalid!("{name}'s tree splits on feature {f} of its {} subsampled ones", fs.len())
                    })?;
                }
            }
        }
        // Nodes on the path to each node (the root: 1); children come after their parent.
        let mut depth = vec![1.0f64; n];
        for i in 0..n {
            if t.is_leaf[i] {
                continue;
            }
            for c in [t.left[i], t.right[i]] {
                if c > i as f64 && c < n as f64 && c.fract() == 0.0 {
                    depth[c as usize] = depth[i] + 1.0;
                }
            }
        }
        push_tree(&mut raw, &t.arrays(), n_features, &|i| vec![(0, depth[i] + average_path_length(samples[i]) - 1.0)])?;
    }
    let takes_all = written_since(g, id, 1, 6)?;
    let trees_kernel = Trees {
        walk: tree_walk(raw, 1, true)?,
        outputs: 1,
        f32_inputs: true,
        init: Vec::new(),
        average: None,
        link: TreeLink::Identity,
        classes: None,
        n_features,
        nan_is_error: (!takes_all).then(|| name.to_string()),
        take_infinite: takes_all,
    };
    Ok(Predictor::Isolation {
        trees: Box::new(trees_kernel),
        denominator: trees.len() as f64 * average_path_length(max_samples),
        offset,
    })
}

/// Whether scikit-learn `version` (the file's) sends NaN down these trees, each node's
/// `missing_go_to_left` way, rather than refusing it ("Input X contains NaN"). Measured release
/// by release (1.1.3, 1.3.2, 1.4.2, 1.5.2, 1.6.1, 1.7.2, 1.8.0, 1.9.1): none before 1.3;
/// `DecisionTree*` with `splitter="best"` from 1.3, `RandomForest*` from 1.4, the random splitter
/// (`ExtraTree*`, `ExtraTrees*`) from 1.6; the `absolute_error` criterion and monotonic
/// constraints refuse NaN until 1.9, which takes it everywhere.
fn trees_take_nan(g: &Graph, model: Id, name: &str, version: &str) -> Result<bool> {
    if version.is_empty() || !version_before(version, 1, 9) {
        return Ok(true);
    }
    if version_before(version, 1, 3) {
        return Ok(false);
    }
    let text = |a: &str| -> Result<Option<String>> {
        Ok(g.attr_set(model, a)?.and_then(|v| g.str(v).ok().map(str::to_string)))
    };
    let random = name.starts_with("ExtraTree") || text("splitter")?.as_deref() == Some("random");
    let forest = name.starts_with("RandomForest") || name.starts_with("ExtraTrees");
    if text("criterion")?.as_deref() == Some("absolute_error") || g.attr_set(model, "monotonic_cst")?.is_some() {
        return Ok(false);
    }
    Ok(if version_before(version, 1, 4) {
        !forest && !random
    } else if version_before(version, 1, 6) {
        !random
    } else {
        true
    })
}

/// Checks a tree's `n_outputs` (the first argument of its REDUCE is n_features, the third n_outputs).
fn check_outputs(g: &Graph, tree: Id, expected: usize, name: &str) -> Result<()> {
    if let Node::Object { args, .. } = g.node(tree)
        && let Some(n) = g.tuple(*args)?.get(2)
    {
        let n = g.int(*n)?;
        if n != expected as i64 {
            return Err(ReadError::Unsupported(format!(
                "{name} with {n} outputs (multi-output classifiers are not read)"
            )));
        }
    }
    Ok(())
}

fn gradient_boosting(g: &Graph, id: Id, name: &str) -> Result<Predictor> {
    let n_features = n_features_of(g, id)?;
    let lr = g.float(g.get(id, "learning_rate")?)?;
    let est = g.array(g.get(id, "estimators_")?)?;
    let mlscore_pickle::ArrayData::Objects(trees) = &est.data else {
        return Err(invalid!("GradientBoosting estimators_ is not an object array"));
    };
    let [_, k] = est.shape[..] else { return Err(invalid!("GradientBoosting estimators_ of shape {:?}", est.shape)) };
    let classifier = name.ends_with("Classifier");
    let classes = if classifier { Some(g.labels(g.get(id, "classes_")?)?) } else { None };
    let exponential = classifier
        && g.attr(id, "loss")?.and_then(|l| g.str(l).ok().map(str::to_string)).as_deref() == Some("exponential");
    let mut raw = RawEnsemble::default();
    for (i, t) in trees.iter().enumerate() {
        let tree = g.get(*t, "tree_")?;
        let out = i % k.max(1);
        let leaf = move |v: &[f64]| v.first().map(|x| (out, lr * x)).into_iter().collect();
        add_tree(g, tree, n_features, &mut raw, &leaf)?;
    }
    // The init estimator's constant raw prediction.
    let init_id = g.get(id, "init_")?;
    let init: Vec<f64> = match g.node(init_id) {
        Node::Str(s) if s == "zero" => vec![0.0; k],
        _ => {
            let ic = class(g, init_id)?;
            match (short(&ic), classifier) {
                ("DummyClassifier", true) => {
                    let prior = g.vector(g.get(init_id, "class_prior_")?)?;
                    let eps = f64::EPSILON;
                    let p: Vec<f64> = prior.iter().map(|p| p.clamp(eps, 1.0 - eps)).collect();
                    if k == 1 {
                        let p1 = *p.get(1).ok_or_else(|| invalid!("a binary DummyClassifier with one class"))?;
                        // The loss's link: the logit, or half of it for the exponential loss.
                        let logit = (p1 / (1.0 - p1)).ln();
                        vec![if exponential { 0.5 * logit } else { logit }]
                    } else {
                        let logs: Vec<f64> = p.iter().map(|x| x.ln()).collect();
                        let mean = logs.iter().sum::<f64>() / logs.len() as f64;
                        logs.iter().map(|l| l - mean).collect()
                    }
                }
                ("DummyRegressor", false) => {
                    let c = g.vector(g.get(init_id, "constant_")?)?;
                    vec![*c.first().ok_or_else(|| invalid!("DummyRegressor without a constant"))?]
                }
                _ => {
                    return Err(ReadError::Unsupported(format!("{name} with an init estimator of class {ic}")));
                }
            }
        }
    };
    if init.len() != k {
        return Err(invalid!("{name}'s init gives {} values for {k} outputs", init.len()));
    }
    let link = match (classifier, k) {
        (false, _) => TreeLink::Identity,
        (true, 1) if exponential => TreeLink::HalfLogit,
        (true, 1) => TreeLink::Binary { ge_zero: true },
        (true, _) if exponential => {
            return Err(invalid!("{name} has the exponential loss, which is binary, and {k} outputs"));
        }
        (true, _) => TreeLink::Softmax,
    };
    Ok(Predictor::Trees(Box::new(Trees {
        walk: tree_walk(raw, k, true)?,
        outputs: k,
        f32_inputs: true,
        init,
        average: None,
        link,
        classes,
        n_features,
        nan_is_error: Some(if classifier { "GradientBoostingClassifier" } else { "GradientBoostingRegressor" }.into()),
        take_infinite: false,
    })))
}

/// What an estimator does to its input before its own arithmetic: HistGradientBoosting's
/// `_preprocessor` (scikit-learn >= 1.4, for categorical features), an OrdinalEncoder on the
/// categorical columns (unknown and missing categories to NaN) whose codes come first, then the
/// other columns, as `check_array` makes them float64 (which mlscore's frames already are).
fn own_preprocessor(g: &Graph, id: Id) -> Result<Option<Transformer>> {
    let name = short(&class(g, id)?).to_string();
    if !name.starts_with("HistGradientBoosting") {
        return Ok(None);
    }
    let Some(p) = g.attr_set(id, "_preprocessor")? else {
        return Ok(None);
    };
    let n_in = n_features_of(g, id)?;
    let names = names_in(g, id)?;
    let mut branches = Vec::new();
    for t in g.items(g.get(p, "transformers_")?)? {
        let [part, est, cols, ..] = g.tuple(*t)? else {
            return Err(invalid!("{name}'s preprocessor has an entry without its columns"));
        };
        let part = g.str(*part)?.to_string();
        let columns = column_spec(g, *cols, names.as_deref(), n_in, 0)?;
        let step = match (part.as_str(), g.node(*est)) {
            (_, Node::Str(s)) if s == "drop" => continue,
            ("encoder", _) if short(&class(g, *est)?) == "OrdinalEncoder" => {
                let counts: Vec<usize> = g
                    .items(g.get(*est, "categories_")?)?
                    .iter()
                    .map(|c| g.array(*c).map(|a| a.len()))
                    .collect::<Result<_>>()?;
                known_categories_are_codes(g, id, &name, &counts)?;
                Some(ordinal(g, *est)?)
            }
            ("numerical", _) if is_check_array(g, *est)? => None,
            _ => {
                return Err(ReadError::Unsupported(format!(
                    "{name} whose preprocessor holds '{part}' ({}), not scikit-learn's own encoder and check",
                    g.describe(*est)
                )));
            }
        };
        branches.push(Branch { name: part, columns, step });
    }
    Ok(Some(Transformer::Columns(branches)))
}

/// Whether a transformer is scikit-learn's `FunctionTransformer(partial(check_array, ...))`.
fn is_check_array(g: &Graph, id: Id) -> Result<bool> {
    if short(&class(g, id)?) != "FunctionTransformer" {
        return Ok(false);
    }
    let Some(func) = g.attr(id, "func")? else { return Ok(false) };
    let Node::Object { callable, args, .. } = g.node(func) else { return Ok(false) };
    let first = g.items(*args).ok().and_then(|a| a.first().copied());
    Ok(g.global(*callable).as_deref() == Some("functools.partial")
        && first.and_then(|f| g.global(f)).as_deref() == Some("sklearn.utils.validation.check_array"))
}

fn hist_gradient_boosting(g: &Graph, id: Id, name: &str) -> Result<Predictor> {
    let n_features = n_features_of(g, id)?;
    // Categorical features are read where the estimator's own preprocessor encodes them: its
    // codes are then exactly the categories the trees know (checked by `own_preprocessor`), and
    // a split's bitset decides between its two branches, NaN (missing or unknown) going its
    // missing way.
    let categorical = match g.attr_set(id, "is_categorical_")? {
        Some(c) => g.vector(c)?.iter().any(|v| *v != 0.0),
        None => false,
    };
    if categorical && g.attr_set(id, "_preprocessor")?.is_none() {
        return Err(ReadError::Unsupported(format!(
            "{name} with categorical features from a scikit-learn before 1.4 (no preprocessor); \
             re-save it with a current scikit-learn, or log it as ONNX"
        )));
    }
    let baseline = g.f64s(g.get(id, "_baseline_prediction")?)?.0;
    let k = baseline.len();
    let mut raw = RawEnsemble::default();
    for it in g.items(g.get(id, "_predictors")?)? {
        let per_iter = g.items(*it)?;
        if per_iter.len() != k {
            return Err(invalid!("{name} has {} trees in an iteration for {k} outputs", per_iter.len()));
        }
        for (out, p) in per_iter.iter().enumerate() {
            let nodes = g.array(g.get(*p, "nodes")?)?;
            let f = |s| g.field(&nodes, s);
            let (value, feat, thr, miss, left, right, leaf) = (
                f("value")?,
                f("feature_idx")?,
                f("num_threshold")?,
                f("missing_go_to_left")?,
                f("left")?,
                f("right")?,
                f("is_leaf")?,
            );
            let is_leaf: Vec<bool> = leaf.iter().map(|l| *l != 0.0).collect();
            let members = categorical_splits(g, *p, &nodes, &is_leaf, name)?;
            let arrays = TreeArrays {
                is_leaf: &is_leaf,
                left: &left,
                right: &right,
                feature: &feat,
                threshold: &thr,
                missing_left: &miss,
                members: &members,
            };
            push_tree(&mut raw, &arrays, n_features, &|i| vec![(out, value[i])])
                .map_err(|e| invalid!("{name}: {e}"))?;
        }
    }
    let classifier = name.ends_with("Classifier");
    let loss = g.class_of(g.get(id, "_loss")?).unwrap_or_default();
    let link = match (classifier, k) {
        (true, 1) => TreeLink::Binary { ge_zero: false },
        (true, _) => TreeLink::Softmax,
        (false, _)
            if ["HalfPoissonLoss", "HalfGammaLoss", "HalfTweedieLoss", "HalfTweedieLossIdentity"]
                .contains(&short(&loss)) =>
        {
            if short(&loss) == "HalfTweedieLossIdentity" {
                TreeLink::Identity
            } else {
                TreeLink::Exp
            }
        }
        (false, _) => TreeLink::Identity,
    };
    if raw.roots.is_empty() {
        return Err(ReadError::Unsupported(format!("{name} without trees")));
    }
    Ok(Predictor::Trees(Box::new(Trees {
        walk: tree_walk(raw, k, false)?,
        outputs: k,
        f32_inputs: false,
        init: baseline,
        average: None,
        link,
        classes: if classifier { Some(g.labels(g.get(id, "classes_")?)?) } else { None },
        n_features,
        nan_is_error: None,
        take_infinite: false,
    })))
}

// ---------------------------------------------------------------------------------------------
// Scoring

impl Frame {
    pub(crate) fn num(&self, j: usize, step: &str) -> Scored<&[f64]> {
        match &self.cols[j] {
            Col::Num(v) => Ok(v),
            Col::Text(_) => {
                Err(score_err(&self.names[j], format!("{step} reads numbers, and this column holds strings")))
            }
        }
    }

    pub(crate) fn width_check(&self, n: usize, step: &str) -> Scored<()> {
        if self.cols.len() == n {
            Ok(())
        } else {
            Err(score_err(step, format!("the step was fitted on {n} columns and receives {}", self.cols.len())))
        }
    }
}

impl Transformer {
    /// The most columns the step's output can hold where it can exceed its input's (feature
    /// expansions), so that chunks of rows are sized by it; 0 where it cannot.
    pub(crate) fn widest(&self) -> usize {
        match self {
            Transformer::Pipeline(steps) => steps.iter().map(Transformer::widest).max().unwrap_or(0),
            Transformer::Columns(branches) => {
                branches.iter().filter_map(|b| b.step.as_ref()).map(Transformer::widest).sum::<usize>()
            }
            Transformer::Preprocess(p) => p.widest(),
            Transformer::Union(parts) => parts.iter().filter_map(|(_, t, _)| t.as_ref()).map(Transformer::widest).sum(),
            _ => 0,
        }
    }

    pub(crate) fn transform(&self, f: Frame) -> Scored<Frame> {
        match self {
            Transformer::Pipeline(steps) => steps.iter().try_fold(f, |f, s| s.transform(f)),
            Transformer::Columns(branches) => {
                let mut out = Frame { names: Vec::new(), cols: Vec::new(), rows: f.rows };
                for b in branches {
                    let sub = Frame {
                        names: b.columns.iter().map(|c| f.names.get(*c).cloned().unwrap_or_default()).collect(),
                        cols: b
                            .columns
                            .iter()
                            .map(|c| {
                                f.cols.get(*c).cloned().ok_or_else(|| {
                                    score_err(
                                        &b.name,
                                        format!("selects column {c}, and the table has {}", f.cols.len()),
                                    )
                                })
                            })
                            .collect::<Scored<_>>()?,
                        rows: f.rows,
                    };
                    let t = match &b.step {
                        Some(s) => s.transform(sub)?,
                        None => sub,
                    };
                    out.names.extend(t.names.into_iter().map(|n| format!("{}__{n}", b.name)));
                    out.cols.extend(t.cols);
                }
                Ok(out)
            }
            Transformer::Elementwise { class, ops, clip } => {
                let mut f = f;
                let width = ops.first().map_or(f.cols.len(), |o| match o {
                    Op::Sub(v) | Op::Div(v) | Op::Mul(v) | Op::Add(v) => v.len(),
                });
                f.width_check(width, short(class))?;
                let mut col_ops = Vec::with_capacity(ops.len() + 1);
                for j in 0..f.cols.len() {
                    f.num(j, short(class))?;
                    let Col::Num(col) = &mut f.cols[j] else { continue };
                    col_ops.clear();
                    col_ops.extend(ops.iter().map(|op| match op {
                        Op::Sub(v) => ColumnOp::Sub(v[j]),
                        Op::Div(v) => ColumnOp::Div(v[j]),
                        Op::Mul(v) => ColumnOp::Mul(v[j]),
                        Op::Add(v) => ColumnOp::Add(v[j]),
                    }));
                    col_ops.extend(clip.map(|(lo, hi)| ColumnOp::Clamp(lo, hi)));
                    // The scalers take NaN but no infinity ("allow-nan"), checked in the same pass.
                    if let Some((r, v)) = col.apply_finite(&col_ops) {
                        return Err(non_finite_err(&f.names[j], r, v, short(class)));
                    }
                }
                Ok(f)
            }
            Transformer::Normalizer(norm) => {
                let mut f = f;
                for j in 0..f.cols.len() {
                    f.num(j, "Normalizer")?;
                }
                f.check_finite(Finite::All, "Normalizer")?;
                let mut norms = vec![0.0f64; f.rows];
                for c in &f.cols {
                    let Col::Num(v) = c else { continue };
                    for (n, x) in norms.iter_mut().zip(v.iter()) {
                        match norm {
                            Norm::L1 => *n += x.abs(),
                            Norm::L2 => *n += x * x,
                            Norm::Max => *n = n.max(x.abs()),
                        }
                    }
                }
                for n in &mut norms {
                    if *norm == Norm::L2 {
                        *n = n.sqrt();
                    }
                    if *n == 0.0 {
                        *n = 1.0;
                    }
                }
                for c in &mut f.cols {
                    if let Col::Num(v) = c {
                        v.make_mut().iter_mut().zip(&norms).for_each(|(x, n)| *x /= n);
                    }
                }
                Ok(f)
            }
            Transformer::Binarizer(t) => {
                let mut f = f;
                f.check_finite(Finite::All, "Binarizer")?;
                for j in 0..f.cols.len() {
                    f.num(j, "Binarizer")?;
                    if let Col::Num(v) = &mut f.cols[j] {
                        binarize(v.make_mut(), *t);
                    }
                }
                Ok(f)
            }
            Transformer::Imputer(imp) => imp.transform(f),
            Transformer::OneHot(oh) => oh.transform(f),
            Transformer::Ordinal(o) => o.transform(f),
            Transformer::Target { categories, encodings, per_feature, mean, suffixes, missing, text_nulls } => {
                f.width_check(categories.len(), "TargetEncoder")?;
                f.check_finite(Finite::AllowNan, "TargetEncoder")?;
                let mut out = Frame { names: Vec::new(), cols: Vec::new(), rows: f.rows };
                for (j, col) in f.cols.iter().enumerate() {
                    // A null of a string column is its feature's missing category only where that
                    // category is the marker pandas delivers (NaN is not None to scikit-learn).
                    let null_known = null_is_category(missing.get(j).copied().flatten(), *text_nulls);
                    let codes: Vec<Option<usize>> = (0..f.rows)
                        .map(|r| match col {
                            Col::Text(v) if v[r].is_none() && !null_known => None,
                            _ => find(&categories[j], col, r),
                        })
                        .collect();
                    for c in 0..*per_feature {
                        let enc = &encodings[j * per_feature + c];
                        out.cols.push(Col::Num(
                            codes
                                .iter()
                                .map(|k| k.and_then(|k| enc.get(k).copied()).unwrap_or(mean[c]))
                                .collect::<Vec<_>>()
                                .into(),
                        ));
                        out.names.push(match suffixes.get(c) {
                            Some(s) => format!("{}_{s}", f.names[j]),
                            None => f.names[j].clone(),
                        });
                    }
                }
                Ok(out)
            }
            Transformer::Pca { mean, components, whiten } => {
                f.width_check(mean.len(), "PCA")?;
                let cols: Vec<&[f64]> = (0..f.cols.len()).map(|j| f.num(j, "PCA")).collect::<Scored<_>>()?;
                f.check_finite(Finite::All, "PCA")?;
                let mut out = Vec::with_capacity(components.len());
                for (k, comp) in components.iter().enumerate() {
                    let shift: f64 = mean.iter().zip(comp).map(|(m, c)| m * c).sum();
                    let mut v = vec![0.0; f.rows];
                    for (c, w) in cols.iter().zip(comp) {
                        v.iter_mut().zip(c.iter()).for_each(|(o, x)| *o += x * w);
                    }
                    v.iter_mut().for_each(|x| *x -= shift);
                    if let Some(s) = whiten {
                        v.iter_mut().for_each(|x| *x /= s[k]);
                    }
                    out.push(Col::Num(v.into()));
                }
                Ok(Frame { names: (0..out.len()).map(|k| format!("pca{k}")).collect(), cols: out, rows: f.rows })
            }
            Transformer::Preprocess(p) => p.transform(f),
            Transformer::Union(parts) => {
                let mut out = Frame { names: Vec::new(), cols: Vec::new(), rows: f.rows };
                for (name, step, weight) in parts {
                    let mut t = match step {
                        Some(s) => s.transform(f.clone())?,
                        None => f.clone(),
                    };
                    if let Some(w) = weight {
                        for j in 0..t.cols.len() {
                            t.num(j, name)?;
                            if let Col::Num(v) = &mut t.cols[j] {
                                v.make_mut().iter_mut().for_each(|x| *x *= w);
                            }
                        }
                    }
                    out.names.extend(t.names.into_iter().map(|n| format!("{name}__{n}")));
                    out.cols.extend(t.cols);
                }
                Ok(out)
            }
            Transformer::Select { class, keep, n_in, finite } => {
                f.width_check(*n_in, class)?;
                f.check_finite(*finite, class)?;
                let Frame { mut names, mut cols, rows } = f;
                Ok(Frame {
                    names: keep.iter().map(|j| std::mem::take(&mut names[*j])).collect(),
                    cols: keep.iter().map(|j| std::mem::replace(&mut cols[*j], Col::Text(Vec::new()))).collect(),
                    rows,
                })
            }
        }
    }
}

impl Imputer {
    fn text_null_missing(&self) -> bool {
        matches!(
            (self.missing, self.text_nulls),
            (MissingValue::Nan, TextNulls::Nan) | (MissingValue::None, TextNulls::None)
        )
    }

    fn transform(&self, f: Frame) -> Scored<Frame> {
        f.width_check(self.fill.len(), "SimpleImputer")?;
        // scikit-learn lets NaN through only where it is what is imputed.
        let finite = if self.missing == MissingValue::Nan { Finite::AllowNan } else { Finite::All };
        f.check_finite(finite, "SimpleImputer")?;
        let mut out = Frame { names: Vec::new(), cols: Vec::new(), rows: f.rows };
        let mut indicators = Vec::new();
        for (j, (col, name)) in f.cols.into_iter().zip(f.names).enumerate() {
            let is_missing: Vec<bool> = match &col {
                Col::Num(v) => match self.missing {
                    MissingValue::Value(m) => v.iter().map(|x| *x == m).collect(),
                    MissingValue::Nan | MissingValue::None => v.iter().map(|x| x.is_nan()).collect(),
                },
                // A null is missing where `missing_values` is what it arrives as (NaN or None).
                Col::Text(v) if self.text_null_missing() => v.iter().map(Option::is_none).collect(),
                Col::Text(v) => vec![false; v.len()],
            };
            if self.indicator.contains(&j) {
                indicators.push((
                    format!("missingindicator_{name}"),
                    Col::Num(is_missing.iter().map(|m| f64::from(u8::from(*m))).collect::<Vec<_>>().into()),
                ));
            }
            let Some(fill) = &self.fill[j] else { continue };
            let col = match (col, fill) {
                (Col::Num(mut v), Label::Float(x)) => {
                    v.make_mut().iter_mut().zip(&is_missing).filter(|(_, m)| **m).for_each(|(v, _)| *v = *x);
                    Col::Num(v)
                }
                (Col::Text(mut v), Label::Str(s)) => {
                    v.iter_mut().zip(&is_missing).filter(|(_, m)| **m).for_each(|(x, _)| *x = Some(s.clone()));
                    Col::Text(v)
                }
                (Col::Num(v), Label::Str(s)) => {
                    // A numeric column imputed with a string (strategy="constant" on objects).
                    Col::Text(v.iter().map(|x| Some(if x.is_nan() { s.clone() } else { num_text(*x) })).collect())
                }
                (Col::Text(_), _) => {
                    return Err(score_err(&name, "SimpleImputer was fitted on numbers, and this column holds strings"));
                }
                (c, _) => c,
            };
            out.names.push(name);
            out.cols.push(col);
        }
        for (n, c) in indicators {
            out.names.push(n);
            out.cols.push(c);
        }
        Ok(out)
    }
}

/// A number as pandas would print it in an object column (`3` for 3.0 from an int column).
fn num_text(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 { format!("{}", x as i64) } else { format!("{x}") }
}

/// The position of a value among a feature's categories (`None`: unknown). NaN and null match a
/// missing-value category when there is one; numbers match string categories by their text as
/// pandas prints them, text matches numeric categories by the number it spells.
fn find(cats: &Categories, col: &Col, r: usize) -> Option<usize> {
    match col {
        Col::Num(v) if cats.are_strings() && !v[r].is_nan() => cats.find_str(&num_text(v[r])),
        Col::Num(v) => cats.find_float(v[r]),
        Col::Text(v) if cats.are_strings() => match &v[r] {
            Some(s) => cats.find_str(s),
            None => cats.missing(),
        },
        Col::Text(v) => cats.find_float(v[r].as_deref().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN)),
    }
}

fn value_text(col: &Col, r: usize) -> String {
    match col {
        Col::Num(v) => num_text(v[r]),
        Col::Text(v) => v[r].clone().unwrap_or_else(|| "null".into()),
    }
}

impl OneHot {
    fn transform(&self, f: Frame) -> Scored<Frame> {
        f.width_check(self.categories.len(), "OneHotEncoder")?;
        f.check_finite(Finite::AllowNan, "OneHotEncoder")?;
        let mut out = Frame { names: Vec::new(), cols: Vec::new(), rows: f.rows };
        for (j, col) in f.cols.iter().enumerate() {
            let cats = &self.categories[j];
            let width = self.widths[j];
            let mut cols = vec![vec![0.0f64; f.rows]; width];
            let mut slots = Vec::with_capacity(f.rows);
            for r in 0..f.rows {
                let unknown_null = matches!(col, Col::Text(v) if v[r].is_none())
                    && !null_is_category(self.missing_kind.get(j).copied().flatten(), self.text_nulls);
                slots.push(match if unknown_null { None } else { find(cats, col, r) } {
                    Some(i) => self.slots[j][i],
                    None if self.unknown_is_error => {
                        return Err(score_err(
                            &f.names[j],
                            format!(
                                "Found unknown categories ['{}'] during transform (OneHotEncoder with handle_unknown='error'); \
                                 scikit-learn refuses it too",
                                value_text(col, r)
                            ),
                        ));
                    }
                    None => self.unknown[j],
                });
            }
            for (r, slot) in slots.into_iter().enumerate() {
                if let Some(s) = slot {
                    cols[s][r] = 1.0;
                }
            }
            for (k, c) in cols.into_iter().enumerate() {
                out.names.push(format!("{}_{k}", f.names[j]));
                out.cols.push(Col::Num(c.into()));
            }
        }
        Ok(out)
    }
}

impl Ordinal {
    fn transform(&self, f: Frame) -> Scored<Frame> {
        f.width_check(self.categories.len(), "OrdinalEncoder")?;
        f.check_finite(Finite::AllowNan, "OrdinalEncoder")?;
        let mut out = Frame { names: f.names.clone(), cols: Vec::new(), rows: f.rows };
        for (j, col) in f.cols.iter().enumerate() {
            let cats = &self.categories[j];
            let mut v = Vec::with_capacity(f.rows);
            for r in 0..f.rows {
                let unknown_null = matches!(col, Col::Text(v) if v[r].is_none())
                    && !null_is_category(self.missing_kind.get(j).copied().flatten(), self.text_nulls);
                let code = match if unknown_null { None } else { find(cats, col, r) } {
                    Some(i) if self.missing_at.get(j) == Some(&Some(i)) => self.missing.unwrap_or(i as f64),
                    Some(i) => i as f64,
                    None => match self.unknown {
                        Some(u) => u,
                        None => {
                            return Err(score_err(
                                &f.names[j],
                                format!(
                                    "Found unknown categories ['{}'] during transform (OrdinalEncoder)",
                                    value_text(col, r)
                                ),
                            ));
                        }
                    },
                };
                v.push(code);
            }
            out.cols.push(Col::Num(v.into()));
        }
        Ok(out)
    }
}

pub(crate) fn expit(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn softmax(row: &mut [f64]) {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    row.iter_mut().for_each(|v| *v /= sum);
}

/// numpy's argmax: the first index of the largest value (NaN wins, as numpy's does).
pub(crate) fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if x.is_nan() {
            return i;
        }
        if *x > v[best] {
            best = i;
        }
    }
    best
}

impl Predictor {
    /// The number of input columns the predictor reads, if it knows.
    pub(crate) fn n_features(&self) -> Option<usize> {
        match self {
            Predictor::Linear { coef, .. } => coef.first().map(Vec::len),
            Predictor::Trees(t) | Predictor::Isolation { trees: t, .. } => Some(t.n_features),
            Predictor::Mlp { layers, .. } => layers.first().map(|l| l.n_in),
            Predictor::KMeans { centers } => centers.first().map(Vec::len),
            Predictor::Boosted(e) => Some(e.booster.inputs().n_features),
            Predictor::Svm(m) => Some(m.n_features),
            Predictor::NaiveBayes(m) => Some(m.n_features),
            Predictor::Neighbors(m) => Some(m.n_features),
            // Each member checks its own inputs; a dummy reads none.
            Predictor::Calibrated(_)
            | Predictor::Ensemble(_)
            | Predictor::TargetTransformed { .. }
            | Predictor::Constant { .. } => None,
        }
    }

    /// The most values a row holds on its way through the predictor: its inputs, or a
    /// network's widest layer.
    pub(crate) fn widest(&self) -> usize {
        match self {
            Predictor::Mlp { layers, .. } => layers.iter().map(|l| l.n_in.max(l.bias.len())).max().unwrap_or(0),
            // The kernel values against every support vector.
            Predictor::Svm(m) => m.n_features + m.n_sv,
            Predictor::Calibrated(c) => c.members.iter().map(|m| m.sub.widest()).max().unwrap_or(0),
            Predictor::Ensemble(e) => e.widest(),
            Predictor::TargetTransformed { regressor, .. } => regressor.widest(),
            _ => self.n_features().unwrap_or(0),
        }
    }

    pub(crate) fn classes(&self) -> Option<&Labels> {
        match self {
            Predictor::Linear { kind: LinearKind::Classifier { classes, .. }, .. } => Some(classes),
            Predictor::Trees(t) => t.classes.as_ref(),
            Predictor::Mlp { classes, .. } => classes.as_ref(),
            Predictor::Boosted(e) => e.classes.as_ref(),
            Predictor::Svm(m) => match &m.kind {
                svm::SvmKind::Classifier { classes, .. } => Some(classes),
                svm::SvmKind::OneClass => Some(&OUTLIER_LABELS),
                svm::SvmKind::Regressor => None,
            },
            Predictor::NaiveBayes(m) => Some(&m.classes),
            Predictor::Calibrated(c) => Some(&c.classes),
            Predictor::Ensemble(e) => e.classes(),
            Predictor::Isolation { .. } => Some(&OUTLIER_LABELS),
            Predictor::Constant { classes, .. } => classes.as_ref(),
            Predictor::Neighbors(m) => match &m.target {
                neighbors::Target::Classes { classes, .. } => Some(classes),
                neighbors::Target::Values(_) => None,
            },
            _ => None,
        }
    }

    pub(crate) fn has_proba(&self) -> bool {
        match self {
            Predictor::Linear { kind: LinearKind::Classifier { proba, .. }, .. } => proba.is_some(),
            Predictor::Svm(m) => matches!(&m.kind, svm::SvmKind::Classifier { platt: Some(_), .. }),
            Predictor::Ensemble(e) => e.has_proba(),
            Predictor::Isolation { .. } => false,
            _ => self.classes().is_some(),
        }
    }

    /// The output width of a regressor.
    pub(crate) fn value_width(&self) -> usize {
        match self {
            Predictor::Linear { coef, .. } => coef.len(),
            Predictor::Trees(t) => t.outputs,
            Predictor::Mlp { layers, .. } => layers.last().map_or(1, |l| l.bias.len()),
            Predictor::KMeans { .. }
            | Predictor::Neighbors(_)
            | Predictor::Isolation { .. }
            | Predictor::Svm(_)
            | Predictor::NaiveBayes(_)
            | Predictor::Calibrated(_)
            | Predictor::TargetTransformed { .. }
            | Predictor::Constant { .. }
            | Predictor::Ensemble(_) => 1,
            Predictor::Boosted(e) => e.booster.output_width(),
        }
    }

    /// What the estimator's input validation refuses. Trees that read float32 refuse
    /// infinities in their own check, with the values too large for float32 (no second pass).
    fn finite(&self) -> Finite {
        match self {
            Predictor::Trees(t) | Predictor::Isolation { trees: t, .. } if t.nan_is_error.is_some() => Finite::All,
            Predictor::Isolation { .. } => Finite::Any,
            Predictor::Trees(_)
            | Predictor::Boosted(_)
            | Predictor::Calibrated(_)
            | Predictor::Ensemble(_)
            | Predictor::TargetTransformed { .. }
            | Predictor::Constant { .. } => Finite::Any,
            Predictor::Linear { .. }
            | Predictor::Mlp { .. }
            | Predictor::KMeans { .. }
            | Predictor::Svm(_)
            | Predictor::Neighbors(_)
            | Predictor::NaiveBayes(_) => Finite::All,
        }
    }

    /// The frame's columns as numbers, checked as the estimator's input validation checks them.
    fn inputs<'a>(&self, f: &'a Frame, name: &str) -> Scored<Vec<&'a [f64]>> {
        if let Some(n) = self.n_features()
            && f.cols.len() != n
        {
            return Err(score_err(
                name,
                format!(
                    "the estimator was fitted on {n} features and receives {} ({})",
                    f.cols.len(),
                    preview(&f.names)
                ),
            ));
        }
        let cols: Vec<&[f64]> = (0..f.cols.len()).map(|j| f.num(j, name)).collect::<Scored<_>>()?;
        f.check_finite(self.finite(), name)?;
        Ok(cols)
    }

    /// Whether scikit-learn's estimator has a `decision_function` this predictor computes
    /// (linear classifiers, SVMs, GradientBoosting and HistGradientBoosting classifiers).
    pub(crate) fn has_decision(&self) -> bool {
        match self {
            Predictor::Linear { kind, .. } => matches!(kind, LinearKind::Classifier { .. }),
            Predictor::Svm(m) => matches!(m.kind, svm::SvmKind::Classifier { .. }),
            Predictor::Trees(t) => {
                t.classes.is_some()
                    && matches!(t.link, TreeLink::Binary { .. } | TreeLink::HalfLogit | TreeLink::Softmax)
            }
            _ => false,
        }
    }

    /// What scikit-learn's `_get_response_values(response_method=["decision_function",
    /// "predict_proba"])` gives a classifier: its decision function where it has one (one
    /// column for two classes), else its probabilities (of the second class alone for two).
    /// Row-major, with its width.
    pub(crate) fn response(&self, f: &Frame, name: &str) -> Scored<(Vec<f64>, usize)> {
        if !self.has_decision() {
            return match self.predict(f, name)? {
                Predicted::Classes { proba: Some(p), classes, .. } => {
                    let k = classes.len();
                    if k == 2 { Ok((p.chunks(2).map(|r| r[1]).collect(), 1)) } else { Ok((p, k)) }
                }
                _ => Err(score_err(name, "the estimator has neither decision_function nor predict_proba")),
            };
        }
        self.decision(f, name)
    }

    /// scikit-learn's `decision_function` (one column for two classes), for the predictors
    /// [`Predictor::has_decision`] names. Row-major, with its width.
    pub(crate) fn decision(&self, f: &Frame, name: &str) -> Scored<(Vec<f64>, usize)> {
        let cols = self.inputs(f, name)?;
        let rows = f.rows;
        Ok(match self {
            Predictor::Linear { coef, intercept, .. } => (linear_decision(&cols, coef, intercept, rows), coef.len()),
            Predictor::Svm(m) => m.decision_function(&cols, rows),
            Predictor::Trees(t) => (t.raw(&cols, rows, name)?, t.outputs),
            _ => return Err(score_err(name, "the estimator has no decision_function")),
        })
    }

    pub(crate) fn predict(&self, f: &Frame, name: &str) -> Scored<Predicted> {
        match self {
            Predictor::Calibrated(c) => return c.predict(f, name),
            Predictor::Ensemble(e) => return e.predict(f, name),
            Predictor::Constant { classes, label, proba, value } => {
                let rows = f.rows;
                return Ok(match classes {
                    Some(c) => Predicted::Classes {
                        labels: vec![*label; rows],
                        proba: Some(proba.iter().copied().cycle().take(rows * proba.len()).collect()),
                        classes: c.clone(),
                    },
                    None => Predicted::Values { values: vec![*value; rows], width: 1 },
                });
            }
            Predictor::TargetTransformed { regressor, inverse, finite } => {
                let Predicted::Values { mut values, width: 1 } = regressor.predict(f, name)? else {
                    return Err(score_err(name, "the regressor gave no single value per row"));
                };
                if let Some(r) = values.iter().position(|v| match finite {
                    Finite::All => !v.is_finite(),
                    Finite::AllowNan => v.is_infinite(),
                    Finite::Any => false,
                }) {
                    return Err(score_err(
                        name,
                        format!(
                            "row {r}: the regressor predicted {}, which the target transformer's inverse refuses \
                             (scikit-learn raises \"Input contains infinity or NaN\")",
                            values[r]
                        ),
                    ));
                }
                values.iter_mut().for_each(|v| *v = inverse.apply(*v));
                return Ok(Predicted::Values { values, width: 1 });
            }
            _ => {}
        }
        let cols = self.inputs(f, name)?;
        let rows = f.rows;
        Ok(match self {
            Predictor::Linear { coef, intercept, kind } => {
                let k = coef.len();
                let dec = linear_decision(&cols, coef, intercept, rows);
                match kind {
                    LinearKind::Regressor => Predicted::Values { values: dec, width: k },
                    LinearKind::LogLink => {
                        Predicted::Values { values: dec.iter().map(|v| v.exp()).collect(), width: k }
                    }
                    LinearKind::Classifier { classes, proba } => {
                        let labels: Vec<usize> = if k == 1 {
                            dec.iter().map(|d| usize::from(*d > 0.0)).collect()
                        } else {
                            dec.chunks(k).map(argmax).collect()
                        };
                        let proba = proba.map(|p| {
                            if k == 1 {
                                dec.iter()
                                    .flat_map(|d| {
                                        let p = expit(*d);
                                        [1.0 - p, p]
                                    })
                                    .collect()
                            } else {
                                let mut out = dec.clone();
                                for row in out.chunks_mut(k) {
                                    match p {
                                        LinearProba::Multinomial => softmax(row),
                                        LinearProba::OneVsRest => {
                                            row.iter_mut().for_each(|v| *v = expit(*v));
                                            let s: f64 = row.iter().sum();
                                            if s == 0.0 {
                                                row.iter_mut().for_each(|v| *v = 1.0 / k as f64);
                                            } else {
                                                row.iter_mut().for_each(|v| *v /= s);
                                            }
                                        }
                                    }
                                }
                                out
                            }
                        });
                        Predicted::Classes { labels, proba, classes: classes.clone() }
                    }
                }
            }
            Predictor::Trees(t) => t.predict(&cols, rows, name)?,
            Predictor::Isolation { trees, denominator, offset } => {
                let depths = trees.raw(&cols, rows, name)?;
                let labels = depths
                    .iter()
                    .map(|d| {
                        // score_samples is minus 2^(-depth / denominator) (0.5 for an empty
                        // denominator); decision_function subtracts offset_.
                        let score = if *denominator != 0.0 { 2f64.powf(-(d / denominator)) } else { 0.5 };
                        // An outlier where the decision is below zero (NaN is not).
                        match (-score - offset).partial_cmp(&0.0) {
                            Some(std::cmp::Ordering::Less) => 0,
                            _ => 1,
                        }
                    })
                    .collect();
                Predicted::Classes { labels, proba: None, classes: OUTLIER_LABELS.clone() }
            }
            Predictor::Boosted(e) => match &e.booster {
                AnyBooster::Xgboost(b) => boosted_predict(b, e.classes.as_ref(), &cols, rows, name)?,
                AnyBooster::Lightgbm(b) => boosted_predict(b, e.classes.as_ref(), &cols, rows, name)?,
            },
            Predictor::Mlp { layers, hidden, out, classes } => {
                // Row-major activations: each row times each layer's (n_in, n_out) weights, the
                // inner loop over the outputs (contiguous, vectorised; the weights stay in cache).
                let mut act = Vec::new();
                columns::to_rows(&cols, 0, rows, &mut act);
                for (i, layer) in layers.iter().enumerate() {
                    let a = if i + 1 == layers.len() { *out } else { *hidden };
                    let (w, b) = (&layer.weights, &layer.bias);
                    // A ReLU is taken as the layer's outputs are written.
                    let mut next = match a {
                        Activation::Relu => columns::dense_relu(&act, rows, layer.n_in, w, b),
                        _ => columns::dense(&act, rows, layer.n_in, w, b),
                    };
                    match a {
                        Activation::Identity | Activation::Softmax | Activation::Relu => {}
                        Activation::Tanh => next.iter_mut().for_each(|v| *v = v.tanh()),
                        Activation::Logistic => next.iter_mut().for_each(|v| *v = expit(*v)),
                    }
                    act = next;
                }
                let k = layers.last().map_or(1, |l| l.bias.len());
                let mut flat = act;
                if *out == Activation::Softmax {
                    flat.chunks_mut(k).for_each(softmax);
                }
                match classes {
                    None => Predicted::Values { values: flat, width: k },
                    Some(c) if k == 1 => Predicted::Classes {
                        labels: flat.iter().map(|p| usize::from(*p > 0.5)).collect(),
                        proba: Some(flat.iter().flat_map(|p| [1.0 - p, *p]).collect()),
                        classes: c.clone(),
                    },
                    Some(c) => Predicted::Classes {
                        labels: flat.chunks(k).map(argmax).collect(),
                        proba: Some(flat),
                        classes: c.clone(),
                    },
                }
            }
            Predictor::Svm(m) => {
                let (values, labels, proba) = m.predict(&cols, rows);
                match &m.kind {
                    svm::SvmKind::Regressor => Predicted::Values { values, width: 1 },
                    svm::SvmKind::OneClass => {
                        Predicted::Classes { labels, proba: None, classes: OUTLIER_LABELS.clone() }
                    }
                    svm::SvmKind::Classifier { classes, .. } => {
                        Predicted::Classes { labels, proba, classes: classes.clone() }
                    }
                }
            }
            Predictor::Calibrated(_)
            | Predictor::Ensemble(_)
            | Predictor::TargetTransformed { .. }
            | Predictor::Constant { .. } => {
                return Err(score_err(name, "an ensemble predicts on its own"));
            }
            Predictor::Neighbors(m) => {
                let (labels, values) = m.predict(&cols, rows);
                match &m.target {
                    neighbors::Target::Classes { classes, .. } => {
                        Predicted::Classes { labels, proba: Some(values), classes: classes.clone() }
                    }
                    neighbors::Target::Values(_) => Predicted::Values { values, width: 1 },
                }
            }
            Predictor::NaiveBayes(m) => {
                let (labels, proba) = m.predict(&cols, rows);
                Predicted::Classes { labels, proba: Some(proba), classes: m.classes.clone() }
            }
            Predictor::KMeans { centers } => {
                let norms: Vec<f64> = centers.iter().map(|c| c.iter().map(|x| x * x).sum()).collect();
                let mut best = vec![(f64::INFINITY, 0i32); rows];
                for (ci, (c, n2)) in centers.iter().zip(&norms).enumerate() {
                    let mut d = vec![*n2; rows];
                    for (col, w) in cols.iter().zip(c) {
                        d.iter_mut().zip(col.iter()).for_each(|(d, x)| *d -= 2.0 * x * w);
                    }
                    for (b, d) in best.iter_mut().zip(d) {
                        if d < b.0 {
                            *b = (d, ci as i32);
                        }
                    }
                }
                Predicted::Clusters(best.into_iter().map(|b| b.1).collect())
            }
        })
    }
}

/// `X @ coef.T + intercept`, row-major `(rows, outputs)`.
fn linear_decision(cols: &[&[f64]], coef: &[Vec<f64>], intercept: &[f64], rows: usize) -> Vec<f64> {
    let k = coef.len();
    let mut dec = vec![0.0; rows * k];
    for (o, (w, b)) in coef.iter().zip(intercept).enumerate() {
        let mut acc = vec![0.0; rows];
        for (c, wj) in cols.iter().zip(w) {
            columns::axpy(&mut acc, c, *wj);
        }
        for (r, a) in acc.iter().enumerate() {
            dec[r * k + o] = a + b;
        }
    }
    dec
}

/// Scores a booster on float64 columns (read into its float type, as the library reads a
/// float64 array): its values, or a classifier's classes and probabilities.
fn boosted_predict<T: Real>(
    b: &Booster<T>,
    classes: Option<&Labels>,
    cols: &[&[f64]],
    rows: usize,
    name: &str,
) -> Scored<Predicted> {
    let values = b.score_columns(cols, rows).map_err(|e| score_err(name, e.to_string()))?.values;
    let to_f64 = |v: Vec<T>| v.into_iter().map(mlscore_kernels::tree::Float::to_f64).collect::<Vec<f64>>();
    Ok(match (b.pyfunc, classes) {
        (Pyfunc::Labels, Some(c)) => {
            let (labels, proba) = b.classify(&values);
            Predicted::Classes { labels, proba: Some(to_f64(proba)), classes: c.clone() }
        }
        _ => Predicted::Values { values: to_f64(values), width: b.transform.width(b.groups) },
    })
}

impl Trees {
    /// The trees' sums (averaged for forests), before any link: a classifier's raw scores,
    /// which scikit-learn's `decision_function` returns.
    fn raw(&self, cols: &[&[f64]], rows: usize, name: &str) -> Scored<Vec<f64>> {
        let width = cols.len();
        if self.f32_inputs
            && !self.take_infinite
            && let Some((j, r)) =
                cols.iter().enumerate().find_map(|(j, c)| mlscore_kernels::columns::first_beyond_f32(c).map(|r| (j, r)))
        {
            return Err(score_err(
                &format!("feature {j}"),
                format!(
                    "row {r} is {}, infinite or too large for float32, which {name} reads its inputs as (scikit-learn \
                     raises \"Input X contains infinity or a value too large for dtype('float32')\"); replace it (with NaN \
                     where the model takes missing values, or a bound)",
                    cols[j][r]
                ),
            ));
        }
        let k = self.outputs;
        let mut sums = match &self.walk {
            TreeWalk::F32(ensemble, table) => {
                let init = if self.init.is_empty() { vec![0.0; k] } else { self.init.clone() };
                ensemble.sum_leaf_table(Rows::Columns(cols), rows, table, &init)
            }
            TreeWalk::F64(ensemble) if self.f32_inputs => {
                let mut x: Vec<f64> = Vec::new();
                mlscore_kernels::columns::to_rows_through_f32(cols, 0, rows, &mut x);
                ensemble.aggregate_from(&x, width, rows, Aggregate::Sum, &self.init).map(|(sums, _)| sums)
            }
            TreeWalk::F64(ensemble) => {
                ensemble.aggregate_input(Rows::Columns(cols), rows, Aggregate::Sum, &self.init).map(|(sums, _)| sums)
            }
        }
        .map_err(|e| score_err(name, e.to_string()))?;
        if let Some(n) = self.average {
            sums.iter_mut().for_each(|v| *v /= n);
        }
        Ok(sums)
    }

    fn predict(&self, cols: &[&[f64]], rows: usize, name: &str) -> Scored<Predicted> {
        let k = self.outputs;
        let sums = self.raw(cols, rows, name)?;
        Ok(match (&self.classes, self.link) {
            (None, TreeLink::Exp) => Predicted::Values { values: sums.iter().map(|v| v.exp()).collect(), width: k },
            (None, _) => Predicted::Values { values: sums, width: k },
            (Some(c), TreeLink::Identity) => Predicted::Classes {
                labels: sums.chunks(k).map(argmax).collect(),
                proba: Some(sums),
                classes: c.clone(),
            },
            (Some(c), TreeLink::Binary { ge_zero }) => {
                let labels = sums
                    .iter()
                    .map(|r| {
                        if ge_zero {
                            usize::from(*r >= 0.0)
                        } else {
                            let p = expit(*r);
                            usize::from(p > 1.0 - p)
                        }
                    })
                    .collect();
                let proba = sums.iter().flat_map(|r| {
                    let p = expit(*r);
                    [1.0 - p, p]
                });
                Predicted::Classes { labels, proba: Some(proba.collect()), classes: c.clone() }
            }
            (Some(c), TreeLink::HalfLogit) => {
                let labels = sums.iter().map(|r| usize::from(*r >= 0.0)).collect();
                let proba = sums.iter().flat_map(|r| {
                    let p = expit(2.0 * r);
                    [1.0 - p, p]
                });
                Predicted::Classes { labels, proba: Some(proba.collect()), classes: c.clone() }
            }
            (Some(c), TreeLink::Softmax | TreeLink::Exp) => {
                let labels = sums.chunks(k).map(argmax).collect();
                let mut p = sums;
                p.chunks_mut(k).for_each(softmax);
                Predicted::Classes { labels, proba: Some(p), classes: c.clone() }
            }
        })
    }
}

fn preview(names: &[String]) -> String {
    let mut s: Vec<String> = names.iter().take(6).cloned().collect();
    if names.len() > 6 {
        s.push(format!("... {} in all", names.len()));
    }
    s.join(", ")
}
