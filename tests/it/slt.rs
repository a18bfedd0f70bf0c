//! SQL semantics of the predict UDF, as sqllogictest files in tests/sqllogictests/.
//!
//! Each file runs in a fresh session holding the sample table `customers`, the zoo's mixed table
//! `accounts`, and models registered under several option sets (see `session`). EXPLAIN results
//! end with one `model_binding` row per model used. To rewrite the expected results after a
//! deliberate change: `MLSCORE_SLT_COMPLETE=1 cargo test --test it slt`.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use mlscore::datafusion::{
    EngineOptions, PredictOptions, RegisteredModel, model_binding, register_model, scoring_context,
};
use mlscore::mlflow::StoreConfig;
use mlscore::onnx::Model;
use mlscore::{NullPolicy, ResultType};
use sqllogictest::{DBOutput, DefaultColumnType};

use crate::common::*;

#[derive(Debug)]
struct SqlError(String);

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SqlError {}

struct Db {
    ctx: SessionContext,
    models: Vec<RegisteredModel>,
}

async fn session() -> Db {
    let ctx = scoring_context(&EngineOptions { partitions: 2, batch_rows: 128 });
    ctx.register_parquet("customers", sample().to_str().unwrap(), ParquetReadOptions::default()).await.unwrap();
    let accounts = models().join("zoo/column_transformer_onehot_logistic/input.parquet");
    ctx.register_parquet("accounts", accounts.to_str().unwrap(), ParquetReadOptions::default()).await.unwrap();
    let store = StoreConfig::with_tracking_uri(sqlite_store());
    let load = |uri: &str| Arc::new(Model::load_with(uri, &store).unwrap());
    let churn = load(models().join("churn").to_str().unwrap());
    let opts = |result_type: Option<&str>, null_policy| PredictOptions {
        result_type: result_type.map(|t| ResultType::parse(t).unwrap()),
        null_policy,
    };
    let models = vec![
        register_model(&ctx, "churn", churn.clone(), opts(None, NullPolicy::Error)),
        register_model(&ctx, "churn_double", churn.clone(), opts(Some("double"), NullPolicy::Error)),
        register_model(&ctx, "churn_probs", churn.clone(), opts(Some("array<double>"), NullPolicy::Error)),
        register_model(&ctx, "churn_null", churn.clone(), opts(None, NullPolicy::Null)),
        register_model(&ctx, "churn_nan", churn, opts(Some("array<double>"), NullPolicy::Nan)),
        register_model(&ctx, "spend", load("models:/spend/1"), opts(None, NullPolicy::Error)),
        register_model(&ctx, "segment", load("models:/segment@champion"), opts(None, NullPolicy::Error)),
        register_model(
            &ctx,
            "plan_model",
            load(models().join("zoo/column_transformer_onehot_logistic_zipmap/model").to_str().unwrap()),
            opts(None, NullPolicy::Error),
        ),
    ];
    Db { ctx, models }
}

/// One cell as text: NULL for nulls, floats rounded to 6 significant digits (so that results do
/// not depend on the last bits of a platform's libm).
fn cell(a: &dyn Array, row: usize) -> String {
    if a.is_null(row) {
        return "NULL".into();
    }
    match a.data_type() {
        DataType::Float32 | DataType::Float64 => {
            let v = floats(&a.slice(row, 1))[0];
            if v == 0.0 || !v.is_finite() {
                format!("{v}")
            } else {
                format!("{}", format!("{v:.5e}").parse::<f64>().unwrap_or(v))
            }
        }
        _ => {
            let opts = FormatOptions::default().with_null("NULL");
            ArrayFormatter::try_new(a, &opts).map(|f| f.value(row).to_string()).unwrap_or_else(|e| e.to_string())
        }
    }
}

fn rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            out.push(b.columns().iter().map(|c| cell(c.as_ref(), r)).collect());
        }
    }
    out
}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for Db {
    type Error = SqlError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SqlError> {
        let err = |e: datafusion::error::DataFusionError| SqlError(mlscore::datafusion::Error::from(e).to_string());
        let df = self.ctx.sql(sql).await.map_err(err)?;
        let columns = df.schema().fields().len();
        let batches = df.collect().await.map_err(err)?;
        let mut out = rows(&batches);
        if sql.trim_start().to_ascii_lowercase().starts_with("explain") {
            // The plan's text mentions every model it calls; add what each resolved to.
            let plan: String = out.iter().flatten().cloned().collect::<Vec<_>>().join("\n");
            for m in &self.models {
                if plan.contains(&format!("{}(", m.name)) {
                    // The line `mlscore sql` prints for the model under an EXPLAIN.
                    out.push(vec!["model_binding".into(), model_binding(m)]);
                }
            }
            // Plans hold absolute paths and partition details: keep the first line of each plan and the bindings.
            out.retain(|r| r[0] == "model_binding" || !r[0].is_empty());
            let root = repo().display().to_string();
            for r in &mut out {
                if r[0] == "model_binding" {
                    r[1] = r[1].replace(&root, "$REPO");
                } else {
                    r[1] = r[1].lines().next().unwrap_or_default().replace(root.trim_start_matches('/'), "$REPO");
                }
            }
        }
        if columns == 0 {
            return Ok(DBOutput::StatementComplete(0));
        }
        Ok(DBOutput::Rows { types: vec![DefaultColumnType::Any; columns], rows: out })
    }

    async fn shutdown(&mut self) {}
}

fn slt_files() -> Vec<PathBuf> {
    files_with_extension(&repo().join("tests/sqllogictests"), "slt")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_semantics() {
    let complete = std::env::var_os("MLSCORE_SLT_COMPLETE").is_some();
    let files = slt_files();
    assert!(!files.is_empty());
    let mut failures = Vec::new();
    for file in files {
        let mut runner = sqllogictest::Runner::new(|| async { Ok(session().await) });
        runner.with_column_validator(sqllogictest::default_column_validator);
        if complete {
            runner
                .update_test_file(
                    &file,
                    " ",
                    sqllogictest::default_validator,
                    sqllogictest::default_normalizer,
                    sqllogictest::default_column_validator,
                )
                .await
                .unwrap();
        } else if let Err(e) = runner.run_file_async(&file).await {
            failures.push(format!("{}: {e}", file.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
