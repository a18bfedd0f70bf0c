//! mlscore's scoring kernels: the numeric cores every model format is scored with.
//!
//! Slices in, slices out: no tract, no Arrow, no MLflow. A front end (the ONNX graphs of
//! `mlscore-onnx`, and the scikit-learn, XGBoost and LightGBM readers to come) describes its
//! model in these kernels' terms and calls them; they never know where the model came from.
//!
//! - [`tree`]: tree ensembles. A [`tree::RawEnsemble`] (nodes with a feature, a threshold, a
//!   comparison and a per-node missing-value direction; leaves with weights per output) is
//!   compiled once into an [`tree::Ensemble`], scored by bit-vectors (QuickScorer) and a blocked
//!   node walk, in `f32` or `f64`.
//! - [`linear`] and [`svm`]: linear scores and SVM kernels, summed as onnxruntime's MLAS does;
//! - [`columns`]: float64 column arithmetic as numpy rounds it (scikit-learn's scalers, linear
//!   models and MLP layers), compiled for SSE2, AVX2 and AVX-512;
//! - [`preprocess`]: scaling, row normalization and imputation;
//! - [`encode`]: category lookups, one-hot rows, label maps and thresholds;
//! - [`transform`]: post-transforms (logistic, softmax, probit and onnxruntime's binary-class
//!   conventions) and the dot products they share.
//!
//! ```
//! use mlscore_kernels::tree::{Aggregate, Ensemble, Mode, RawEnsemble, RawNode, Target};
//! // One tree: x0 <= 2.5 ? 10 : 20
//! let raw = RawEnsemble {
//!     nodes: vec![RawNode {
//!         feature: 0,
//!         threshold: 2.5,
//!         mode: Mode::Leq,
//!         members: vec![],
//!         yes: Target::Leaf(0),
//!         no: Target::Leaf(1),
//!         missing_true: false,
//!     }],
//!     leaves: vec![vec![(0, 10.0)], vec![(0, 20.0)]],
//!     roots: vec![Target::Node(0)],
//! };
//! let ensemble = Ensemble::<f32>::compile(&raw, 1)?;
//! // Two rows of one feature.
//! let (scores, _) = ensemble.aggregate(&[1.0, 3.0], 1, 2, Aggregate::Sum)?;
//! assert_eq!(scores, vec![10.0, 20.0]);
//! # Ok::<(), mlscore_kernels::Error>(())
//! ```
#![warn(missing_docs)]

pub mod columns;
pub mod distance;
pub mod encode;
mod error;
pub mod linear;
pub mod preprocess;
pub mod svm;
pub mod transform;
pub mod tree;

pub use error::{Error, Result};
