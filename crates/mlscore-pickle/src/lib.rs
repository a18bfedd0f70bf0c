//! Pickle, cloudpickle and skops files read as data, never executed.
//!
//! A pickle is a program for Python's unpickler: loading one can call any function it names.
//! This crate interprets the opcodes of protocols 0-5 into an inert object [`Graph`] instead:
//! class references stay names ([`Node::Global`]), constructor calls and their state stay records
//! ([`Node::Object`]), and nothing is looked up or called. A skops file (`model.skops`, a zip of
//! `schema.json` and `.npy` members) is read into the same graph.
//!
//! Only names a scikit-learn, XGBoost or LightGBM model can hold (their modules, numpy, scipy and
//! a few builtins) are read; any other (`os.system`, a cloudpickled function, a user's own
//! class) is refused at the opcode that names it, with an error that names it and says what to
//! do. numpy arrays are rebuilt from their bytes with dtype, shape and order checked against the
//! byte count, and every size a file declares is checked before anything is allocated for it.
//!
//! The front ends (scikit-learn, LightGBM's scikit-learn API) read their estimators out of the
//! graph with its checked accessors:
//!
//! ```
//! // pickle.dumps({"n_features_in_": 3}, protocol=2)
//! let bytes = b"\x80\x02}q\x00X\x0e\x00\x00\x00n_features_in_q\x01K\x03s.";
//! let graph = mlscore_pickle::read(bytes)?;
//! let n = graph.get(graph.root, "n_features_in_")?;
//! assert_eq!(graph.int(n)?, 3);
//!
//! // pickle.dumps(os.system) is refused, and the error names it.
//! let e = mlscore_pickle::read(b"\x80\x02cposix\nsystem\nq\x00.").unwrap_err();
//! assert!(e.to_string().contains("posix.system"));
//! # Ok::<(), mlscore_pickle::ReadError>(())
//! ```
#![warn(missing_docs)]

mod error;
mod graph;
mod pickle;
mod skops;

pub use crate::error::ReadError;
pub use crate::graph::{ArrayData, Dtype, Graph, Id, Label, Labels, NdArray, Node};

/// Reads a pickle (protocols 0-5, pickle or cloudpickle) or a skops file, told apart by their
/// bytes (a skops file is a zip), into an inert graph.
pub fn read(bytes: &[u8]) -> Result<Graph, ReadError> {
    if is_skops(bytes) { skops::read(bytes) } else { pickle::read(bytes) }
}

/// Whether the bytes are a skops file (a zip) rather than a pickle.
pub fn is_skops(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04")
}
