//! The one error type of this crate.

/// What can go wrong while compiling or running a kernel. Messages say what is inconsistent in
/// the model's description (the front end adds which model, node or file it came from).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The model's description is inconsistent (an index out of range, no trees, ...).
    #[error("{0}")]
    InvalidModel(String),

    /// The model is consistent but asks for something the kernels do not implement.
    #[error("{0}")]
    Unsupported(String),

    /// The input does not have the shape the kernel was compiled for.
    #[error("{0}")]
    InvalidInput(String),
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Returns an [`Error::InvalidModel`] unless the condition holds.
#[macro_export]
#[doc(hidden)]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err($crate::Error::InvalidModel(format!($($arg)+)));
        }
    };
}

/// Returns an [`Error::InvalidModel`].
#[macro_export]
#[doc(hidden)]
macro_rules! bail {
    ($($arg:tt)+) => {
        return Err($crate::Error::InvalidModel(format!($($arg)+)))
    };
}
