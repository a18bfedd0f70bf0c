//! The one error type of this crate, shared by the front ends that read estimators out of a graph.

/// What is wrong with a pickle or skops file, or with an estimator read from one. The front ends
/// turn it into the scoring core's error, naming the file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The file ends before a value it declares.
    #[error("the file is truncated: {0}")]
    Truncated(String),
    /// The bytes are not a valid pickle or skops file, or a value cannot be right (an index out
    /// of range, a length that does not match its array, a cycle).
    #[error("{0}")]
    Invalid(String),
    /// The file refers to code mlscore will not interpret (a function, a user's class, an
    /// arbitrary global): named, with what to do.
    #[error("{0}")]
    Refused(String),
    /// A class or option mlscore does not score yet (named, with what to do).
    #[error("{0}")]
    Unsupported(String),
}

pub(crate) type Result<T, E = ReadError> = std::result::Result<T, E>;

macro_rules! invalid {
    ($($t:tt)*) => { $crate::error::ReadError::Invalid(format!($($t)*)) };
}
pub(crate) use invalid;
