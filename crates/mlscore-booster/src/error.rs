//! The one error type of this crate's readers.

/// What is wrong with an XGBoost or LightGBM model file (or the skops or pickle file of a
/// LightGBM scikit-learn API model). The front end turns it into the scoring
/// core's error, naming the file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// A field the model must have is absent.
    #[error("it has no '{0}'")]
    Missing(String),
    /// A field has a value that cannot be right (a child index out of range, a count that does
    /// not match its array, a cycle).
    #[error("{0}")]
    Invalid(String),
    /// The file ends before a value it declares.
    #[error("the file is truncated: {0}")]
    Truncated(String),
    /// The model uses something mlscore cannot score yet (named, with what to do).
    #[error("{0}")]
    Unsupported(String),
    /// The skops or pickle file of a scikit-learn API model cannot be read, or refers to code
    /// mlscore does not run.
    #[error(transparent)]
    Pickle(#[from] mlscore_pickle::ReadError),
}
