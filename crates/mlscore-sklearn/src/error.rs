//! The error type of this crate's readers: the pickle reader's, which the estimators extend.

pub use mlscore_pickle::ReadError;

pub(crate) type Result<T, E = ReadError> = std::result::Result<T, E>;

macro_rules! invalid {
    ($($t:tt)*) => { $crate::error::ReadError::Invalid(format!($($t)*)) };
}
pub(crate) use invalid;
