//! mlscore on DataFusion: `predict` as a scalar UDF with `spark_udf`'s semantics, input tables,
//! and streaming, partition-parallel scoring jobs whose outputs are committed only when complete.
#![warn(missing_docs)]

mod chunk;
pub mod delta;
mod error;
pub mod input;
pub mod job;
mod passthrough;
pub mod sink;
pub mod stores;
pub mod udf;

pub use delta::TimeTravel;
pub use error::{Error, Result};
pub use input::Format;
pub use job::{
    EngineOptions, JobReport, RegisteredModel, ScoreJob, model_binding, provenance_metadata, register_model,
    scoring_context, write_job, write_query,
};
pub use passthrough::CopyPolicy;
pub use sink::{Codec, NoProgress, OutputSpec, Progress, Swept, abandon_unfinished_outputs};
pub use stores::StoreRegistry;
pub use udf::{NoArgumentCalls, PredictOptions, PredictStats, PredictUdf, predict_udf};
