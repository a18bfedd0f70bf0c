//! mlscore's own ONNX operators, registered into tract over (or beside) the stock ones.

use tract_onnx::model::OnnxOpRegister;
use tract_onnx::prelude::*;

/// Registers mlscore's operator builders.
pub(crate) fn register(_reg: &mut OnnxOpRegister) {}

/// Rewrites applied to the optimized graph before it is made runnable.
pub(crate) fn rewrite_optimized(model: TypedModel) -> TractResult<TypedModel> {
    Ok(model)
}
