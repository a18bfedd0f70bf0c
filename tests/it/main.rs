//! mlscore's integration tests: the CLI against real MLflow-logged models, real Parquet and
//! real MLflow stores (see models/generate.py for how they were made).

mod chaos;
mod common;
mod container;
mod delta;
mod errors;
mod faults;
mod gbdt;
mod objects;
mod passthrough;
mod platforms;
mod python;
mod resolve;
mod rest;
mod score;
mod serve;
mod servers;
mod sklearn;
mod slt;
mod zoo;
