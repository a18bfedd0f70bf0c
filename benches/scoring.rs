//! Micro-benchmarks of the scoring hot path, stage by stage, on models of the bundled zoo:
//!
//! - `to_tensor`: Arrow columns to the graph's input tensor (the float64 -> float32 stacking);
//! - `predict`: one call of [`Model::predict`] (signature checks, tensors, graph, Arrow outputs);
//! - `to_result`: the Arrow outputs to the job's result column (`struct<label, probabilities>`).
//!
//! Each at 1,024 and 65,536 rows (the zoo's input rows repeated; nulls reach the models as NaN), one thread.
//!
//! ```sh
//! cargo bench --bench scoring                 # all
//! cargo bench --bench scoring -- random_forest # one model
//! ```
//! The end-to-end comparisons with onnxruntime and spark_udf are `benches/run` and `benches/models.py`.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::concat_batches;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mlscore::onnx::Model;
use mlscore::{NullPolicy, ResultType, Scorer};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

const MODELS: [&str; 4] =
    ["pipeline_scaler_logistic", "random_forest_binary", "hist_gradient_boosting_binary", "mlp_classifier"];
const ROWS: [usize; 2] = [1024, 65536];

fn zoo(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/zoo").join(case)
}

/// The case's input rows, repeated up to `rows`.
fn input(case: &str, rows: usize) -> RecordBatch {
    let file = std::fs::File::open(zoo(case).join("input.parquet")).expect("the zoo's input.parquet");
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).and_then(|b| b.build()).expect("a Parquet file");
    let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().expect("readable batches");
    let one = concat_batches(&batches[0].schema(), &batches).expect("one schema");
    let copies = rows.div_ceil(one.num_rows());
    let all = concat_batches(&one.schema(), &vec![one.clone(); copies]).expect("one schema");
    all.slice(0, rows)
}

fn stages(c: &mut Criterion) {
    for case in MODELS {
        let model =
            Arc::new(Model::load(zoo(case).join("model").to_str().expect("a UTF-8 path")).expect("a zoo model"));
        let mut group = c.benchmark_group(case);
        for rows in ROWS {
            let batch = input(case, rows);
            let binding = model.bind(batch.schema().as_ref()).expect("the input fits the signature");
            let frame: Vec<ArrayRef> = batch.columns().to_vec();
            group.throughput(Throughput::Elements(rows as u64));
            group.bench_with_input(BenchmarkId::new("to_tensor", rows), &frame, |b, frame| {
                b.iter(|| black_box(model.build_inputs(&binding, frame).expect("tensors")))
            });
            group.bench_with_input(BenchmarkId::new("predict", rows), &frame, |b, frame| {
                b.iter(|| black_box(model.predict(&binding, frame, NullPolicy::Nan).expect("a prediction")))
            });
            let outputs = model.predict(&binding, &frame, NullPolicy::Nan).expect("a prediction").outputs;
            let result = ResultType::infer_from_outputs(&model.output_types()).expect("a result type");
            group.bench_with_input(BenchmarkId::new("to_result", rows), &outputs, |b, outputs| {
                b.iter(|| black_box(result.convert(outputs).expect("a result column")))
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(2));
    targets = stages
}
criterion_main!(benches);
