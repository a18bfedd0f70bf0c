//! `mlscore sql`: SQL over files, with models as functions.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use arrow::util::pretty::pretty_format_batches;
use clap::Args;
use mlscore_core::{NullPolicy, ResultType};
use mlscore_datafusion::{
    PredictOptions, RegisteredModel, model_binding, provenance_metadata, register_model, scoring_context, write_job,
};

use crate::load_model;
use crate::progress;
use crate::score::{EngineArgs, OutputArgs, output_spec};

/// Arguments of `mlscore sql`.
#[derive(Debug, Args)]
pub(crate) struct SqlArgs {
    /// A model as a SQL function: NAME=MODEL_URI (repeat for several models).
    #[arg(long = "model", short, value_name = "NAME=MODEL_URI", required = true)]
    models: Vec<String>,
    /// The query. Tables are files, directories or globs in quotes: FROM 'data/*.parquet'.
    #[arg(value_name = "QUERY")]
    query: String,
    /// Write the result to a .parquet or .csv file, or a directory (ending in /), instead of printing it.
    #[arg(long, short, value_name = "PATH")]
    output: Option<String>,
    /// A model's result type: NAME=TYPE (a Spark DDL type), or TYPE for every model.
    #[arg(long, value_name = "[NAME=]TYPE")]
    result_type: Vec<String>,
    /// What a null input means: error, null or nan; NAME=POLICY for one model.
    #[arg(long, value_name = "[NAME=]POLICY")]
    on_null: Vec<String>,
    /// How to print the result without --output.
    #[arg(long, value_name = "table|csv|json", default_value = "table")]
    format: String,
    #[command(flatten)]
    out: OutputArgs,
    #[command(flatten)]
    pub(crate) engine: EngineArgs,
}

/// Splits `NAME=VALUE` options into per-name values and a default for every name.
fn per_model(values: &[String], names: &[&str]) -> Result<(Option<String>, HashMap<String, String>)> {
    let mut default = None;
    let mut named = HashMap::new();
    for v in values {
        match v.split_once('=') {
            Some((n, val)) if names.contains(&n) => {
                named.insert(n.to_string(), val.to_string());
            }
            Some((n, _)) if !n.contains(['<', ' ', ',']) => {
                bail!("'{v}': there is no model named '{n}' (models: {})", names.join(", "))
            }
            _ => default = Some(v.clone()),
        }
    }
    Ok((default, named))
}

pub(crate) async fn run(args: SqlArgs) -> Result<()> {
    let engine = args.engine.engine();
    let ctx = scoring_context(&engine);
    let pairs: Vec<(String, String)> = args
        .models
        .iter()
        .map(|m| {
            let (n, u) = m.split_once('=').with_context(|| {
                format!("--model '{m}': expected NAME=MODEL_URI, e.g. churn=models:/churn@champion")
            })?;
            if n.is_empty()
                || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                || n.starts_with(|c: char| c.is_ascii_digit())
            {
                bail!("--model '{m}': the name '{n}' must be a SQL identifier (letters, digits, _)");
            }
            Ok((n.to_ascii_lowercase(), u.to_string()))
        })
        .collect::<Result<_>>()?;
    let names: Vec<&str> = pairs.iter().map(|(n, _)| n.as_str()).collect();
    let (rt_default, rt_named) = per_model(&args.result_type, &names)?;
    let (null_default, null_named) = per_model(&args.on_null, &names)?;
    let mut models: Vec<RegisteredModel> = Vec::new();
    for (name, uri) in &pairs {
        let model = load_model(uri).with_context(|| format!("model '{name}'"))?;
        let result_type = rt_named.get(name).or(rt_default.as_ref()).map(|t| ResultType::parse(t)).transpose()?;
        let null_policy: NullPolicy =
            null_named.get(name).or(null_default.as_ref()).map(|p| p.parse()).transpose()?.unwrap_or_default();
        models.push(register_model(&ctx, name, model, PredictOptions { result_type, null_policy }));
    }
    let explain = args.query.trim_start().to_ascii_lowercase().starts_with("explain");
    let planned = async { ctx.sql(&args.query).await.map_err(mlscore_datafusion::Error::from) };
    let df = mlscore_datafusion::job::unpanicked("planning the query", planned).await?;
    for m in &models {
        for w in m.stats.warnings() {
            eprintln!("warning: {w}");
        }
    }
    if let Some(out) = &args.output {
        let spec = output_spec(out, &args.out, provenance_metadata(&models, &[("mlscore.query", args.query.clone())]))?;
        let total = progress::estimated_rows(&df).await;
        let bar = progress::Bar::new(total, args.engine.quiet);
        let report = write_job(df, &spec, &models, &args.engine.engine(), args.out.copy_policy(), bar.clone()).await?;
        bar.finish();
        if !args.engine.quiet {
            progress::summary(&report, out);
        }
        return Ok(());
    }
    let batches = df.collect().await.map_err(mlscore_datafusion::Error::from)?;
    match args.format.as_str() {
        "table" => println!("{}", pretty_format_batches(&batches)?),
        "csv" => {
            let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(std::io::stdout());
            for b in &batches {
                w.write(b)?;
            }
        }
        "json" => {
            let mut w = arrow::json::LineDelimitedWriter::new(std::io::stdout());
            for b in &batches {
                w.write(b)?;
            }
            w.finish()?;
        }
        other => bail!("unknown --format '{other}': use table, csv or json"),
    }
    if explain {
        println!("model bindings:");
        for m in &models {
            println!("  {}", model_binding(m));
        }
    }
    if !args.engine.quiet {
        for m in &models {
            let n = m.stats.null_rows.load(std::sync::atomic::Ordering::Relaxed);
            if n > 0 {
                eprintln!("{}: {n} rows had null inputs", m.name);
            }
        }
    }
    Ok(())
}
