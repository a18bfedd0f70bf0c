//! The model-level benchmarks' mlscore side (driven by `benches/gbdt.py` and `benches/sklearn_bench.py`):
//! scores a row-major float64 matrix with an MLflow model of any format this build has a front end
//! for, through the scoring contract (Arrow columns in, bind once, `predict` per batch), on
//! `threads` threads, for about `seconds`. Built without tract for the tree and scikit-learn
//! benchmarks:
//!
//!     cargo run --release --example bench -p mlscore-formats --no-default-features --features gbdt,sklearn -- \
//!         MODEL_DIR X.f64 FEATURES BATCH THREADS SECONDS [OUT.f64]
//!
//! Allocates with mimalloc, as `mlscore score` does. Prints one JSON line: rows scored (all
//! threads), wall seconds, rows/s, CPU seconds of the timed passes (all threads; null where
//! Linux's per-thread schedstat is not there), peak RSS. Like the Python side's
//! measurement, the timed passes follow one untimed batch and leave out loading the model and
//! the rows. With OUT, first writes the default
//! prediction of every row (float64, row-major; a row's probabilities one after another) there,
//! for the benchmark's agreement check.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int32Type, Int64Type};
use arrow_array::{Array, ArrayRef, Float64Array};
use arrow_schema::{DataType, Field, Schema};
use mlscore_core::{NullPolicy, thread_cpu_ns};
use mlscore_mlflow::MlflowModel;

// The allocator `mlscore score` runs with: scoring allocates and frees batch-sized buffers
// continuously, which the system allocator returns to the OS and faults back in, zeroed.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, data, features, batch, threads, seconds, rest @ ..] = args.as_slice() else {
        return Err("usage: bench MODEL_DIR X.f64 FEATURES BATCH THREADS SECONDS [OUT.f64]".into());
    };
    let (features, batch, threads): (usize, usize, usize) = (features.parse()?, batch.parse()?, threads.parse()?);
    let seconds: f64 = seconds.parse()?;
    let model = mlscore_formats::from_mlflow(MlflowModel::load(dir)?)?;
    let bytes = std::fs::read(data)?;
    let x: Vec<f64> = bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or_default())).collect();
    let rows = x.len() / features;
    let mut names = model.input_names();
    if names.is_empty() {
        names = (0..features).map(|i| format!("f{i:02}")).collect();
    }
    let columns: Vec<ArrayRef> = (0..features)
        .map(|f| Arc::new(Float64Array::from_iter_values((0..rows).map(|r| x[r * features + f]))) as ArrayRef)
        .collect();
    let schema = Schema::new(names.iter().map(|n| Field::new(n, DataType::Float64, true)).collect::<Vec<_>>());
    let binding = model.bind(&schema)?;
    let batches: Vec<Vec<ArrayRef>> =
        (0..rows).step_by(batch).map(|s| columns.iter().map(|c| c.slice(s, batch.min(rows - s))).collect()).collect();
    if let Some(out) = rest.first() {
        let ty = model.default_result_type()?;
        let mut values = Vec::with_capacity(rows);
        for b in &batches {
            let p = model.predict(&binding, b, NullPolicy::Nan)?;
            let col = model.convert(&ty, &p.outputs)?;
            match col.data_type() {
                DataType::Float32 => {
                    values.extend(col.as_primitive::<Float32Type>().values().iter().map(|v| f64::from(*v)))
                }
                DataType::Float64 => values.extend(col.as_primitive::<Float64Type>().values().iter().copied()),
                DataType::Int64 => values.extend(col.as_primitive::<Int64Type>().values().iter().map(|v| *v as f64)),
                DataType::Int32 => {
                    values.extend(col.as_primitive::<Int32Type>().values().iter().map(|v| f64::from(*v)))
                }
                // Probabilities (a model logged with `pyfunc_predict_fn="predict_proba"`): each
                // row's values in turn.
                DataType::List(f) if f.data_type() == &DataType::Float64 => {
                    values.extend(col.as_list::<i32>().values().as_primitive::<Float64Type>().values().iter().copied())
                }
                other => return Err(format!("prediction type {other}").into()),
            }
        }
        std::fs::write(out, values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())?;
    }
    // One untimed batch first, as the Python side predicts once before its timer starts.
    if let Some(b) = batches.first() {
        model.predict(&binding, b, NullPolicy::Nan)?;
    }
    let deadline = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let (scored, cpu_ns) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (model, binding, batches) = (&model, &binding, &batches);
                s.spawn(move || {
                    let cpu0 = thread_cpu_ns();
                    let mut n = 0;
                    // Every thread passes over the whole table (from its own starting batch) until the
                    // time is up: `threads` tables scored at once, as the engine scores partitions.
                    while n == 0 || start.elapsed() < deadline {
                        for b in batches.iter().cycle().skip(t).take(batches.len()) {
                            let p = model.predict(binding, b, NullPolicy::Nan).expect("scoring failed");
                            n += p.outputs[0].1.len();
                        }
                    }
                    (n, thread_cpu_ns().zip(cpu0).map(|(b, a)| b.saturating_sub(a)))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or((0, None)))
            .fold((0, Some(0)), |(n, cpu), (m, c)| (n + m, cpu.zip(c).map(|(a, b)| a + b)))
    });
    let wall = start.elapsed().as_secs_f64();
    // Peak resident memory of this process (Linux), in MiB.
    let peak_mb = mlscore_core::peak_memory_mib().unwrap_or(f64::NAN);
    let cpu_s = cpu_ns.map_or("null".to_string(), |ns| format!("{}", ns as f64 / 1e9));
    println!(
        "{{\"rows\": {scored}, \"wall_s\": {wall}, \"rows_per_s\": {}, \"cpu_s\": {cpu_s}, \"peak_rss_mb\": {peak_mb}}}",
        scored as f64 / wall
    );
    Ok(())
}
