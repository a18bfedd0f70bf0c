//! `mlscore bench`: how fast a model scores a table, batch size by batch size, thread by thread.
//!
//! The table is read into memory first, so that only the model call is measured: columns to
//! tensors, the ONNX graph, tensors back to columns. Batches are spread over a pool of threads,
//! each batch scored by one thread, as the engine does with its partitions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use arrow::compute::concat_batches;
use arrow::record_batch::RecordBatch;
use clap::Args;
use mlscore_core::NullPolicy;
use mlscore_datafusion::{EngineOptions, Format, scoring_context};
use rayon::prelude::*;

use crate::load_model;

/// Arguments of `mlscore bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// The model: a path or an MLflow model URI.
    #[arg(long, short, value_name = "MODEL_URI")]
    model: String,
    /// Input files, directories or globs.
    #[arg(long, short, value_name = "PATH", num_args = 1.., required = true)]
    input: Vec<String>,
    /// Input format [default: from the inputs' extension].
    #[arg(long, value_name = "parquet|csv|arrow")]
    input_format: Option<Format>,
    /// Rows to read from the input (all when absent).
    #[arg(long, value_name = "N")]
    rows: Option<usize>,
    /// Batch sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "1024,65536", value_name = "N,N")]
    batch_rows: Vec<usize>,
    /// Thread counts to measure [default: 1 and the number of cores].
    #[arg(long, value_delimiter = ',', value_name = "N,N")]
    threads: Option<Vec<usize>>,
    /// Minimum seconds each measurement runs for.
    #[arg(long, default_value_t = 2.0, value_name = "S")]
    seconds: f64,
    /// Print one JSON object per measurement instead of a table.
    #[arg(long)]
    json: bool,
}

/// CPU seconds this process has used (user + system), where the OS tells.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

pub(crate) async fn run(args: BenchArgs) -> Result<()> {
    let model = load_model(&args.model)?;
    let ctx = scoring_context(&EngineOptions::default());
    let df = mlscore_datafusion::input::read_inputs(&ctx, &args.input, args.input_format).await?;
    let df = match args.rows {
        Some(n) => df.limit(0, Some(n)).context("limit")?,
        None => df,
    };
    let batches = df.collect().await.map_err(mlscore_datafusion::Error::from)?;
    let Some(first) = batches.first() else { bail!("the input has no rows") };
    let table = concat_batches(&first.schema(), &batches)?;
    drop(batches);
    let rows = table.num_rows();
    let binding = model.bind(table.schema().as_ref())?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let threads = args.threads.clone().unwrap_or_else(|| if cores > 1 { vec![1, cores] } else { vec![1] });
    if !args.json {
        println!("{} on {rows} rows of {}", args.model, args.input.join(" "));
        println!("{:>10} {:>8} {:>14} {:>16} {:>10}", "batch", "threads", "rows/s", "rows/s/thread", "cpu s");
    }
    for &batch in &args.batch_rows {
        let slices: Vec<RecordBatch> =
            (0..rows).step_by(batch.max(1)).map(|s| table.slice(s, batch.min(rows - s))).collect();
        for &t in &threads {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(t.max(1)).build()?;
            let model = Arc::clone(&model);
            let score = || -> Result<()> {
                pool.install(|| {
                    slices
                        .par_iter()
                        .try_for_each(|b| model.predict(&binding, b.columns(), NullPolicy::Nan).map(|_| ()))
                })?;
                Ok(())
            };
            score()?; // warm-up: page in the input, size the allocator
            let (cpu0, start) = (cpu_seconds(), Instant::now());
            let mut passes = 0u32;
            while passes == 0 || start.elapsed() < Duration::from_secs_f64(args.seconds) {
                score()?;
                passes += 1;
            }
            let secs = start.elapsed().as_secs_f64();
            let cpu = cpu_seconds().zip(cpu0).map(|(b, a)| b - a);
            let rate = rows as f64 * f64::from(passes) / secs;
            if args.json {
                let v = serde_json::json!({
                    "model": args.model, "rows": rows, "batch_rows": batch, "threads": t, "passes": passes,
                    "seconds": secs, "cpu_seconds": cpu, "rows_per_s": rate, "rows_per_s_per_thread": rate / t as f64,
                });
                println!("{v}");
            } else {
                let cpu = cpu.map_or_else(|| "-".to_string(), |c| format!("{c:.2}"));
                println!("{batch:>10} {t:>8} {rate:>14.0} {:>16.0} {cpu:>10}", rate / t as f64);
            }
        }
    }
    Ok(())
}
