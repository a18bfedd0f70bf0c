//! The scikit-learn zoo (models/zoo.py): every estimator exported by skl2onnx, scored by mlscore,
//! compared with onnxruntime on the same graph and rows: labels exactly, scores within 1e-5.
//! Every case in models/zoo/cases.json is run; a failure lists all failing cases.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use mlscore::onnx::{CHUNK_ROWS, Model, NullPolicy};

use crate::common::*;

fn compare(case: &str, name: &str, got: &ArrayRef, want: &ArrayRef) -> Result<(), String> {
    let ctx = |m: String| format!("{case}.{name}: {m}");
    if got.len() != want.len() {
        return Err(ctx(format!("{} rows, expected {}", got.len(), want.len())));
    }
    match want.data_type() {
        DataType::Int64 | DataType::Utf8 | DataType::LargeUtf8 => {
            let g = arrow::compute::cast(got, &DataType::Utf8).map_err(|e| ctx(e.to_string()))?;
            let w = arrow::compute::cast(want, &DataType::Utf8).map_err(|e| ctx(e.to_string()))?;
            let (g, w) = (g.as_string::<i32>(), w.as_string::<i32>());
            match (0..w.len()).find(|i| g.value(*i) != w.value(*i)) {
                Some(i) => Err(ctx(format!(
                    "{} labels differ, first at row {i}: {} vs {}",
                    (0..w.len()).filter(|i| g.value(*i) != w.value(*i)).count(),
                    g.value(i),
                    w.value(i)
                ))),
                None => Ok(()),
            }
        }
        DataType::Map(..) => {
            let (g, w) = (got.as_map(), want.as_map());
            for r in 0..w.len() {
                let (gk, wk) = (g.value(r).column(0).clone(), w.value(r).column(0).clone());
                let as_text = |a: &ArrayRef| {
                    arrow::compute::cast(a, &DataType::Utf8).map(|a| {
                        a.as_string::<i32>().iter().map(|v| v.unwrap_or_default().to_string()).collect::<Vec<_>>()
                    })
                };
                if as_text(&gk).map_err(|e| ctx(e.to_string()))? != as_text(&wk).map_err(|e| ctx(e.to_string()))? {
                    return Err(ctx(format!("map keys differ at row {r}")));
                }
                close(&floats(g.value(r).column(1).as_ref()), &floats(w.value(r).column(1).as_ref()))
                    .map_err(|e| ctx(format!("row {r}: {e}")))?;
            }
            Ok(())
        }
        DataType::List(_) => {
            let (g, w) = (float_rows(got.as_ref()), float_rows(want.as_ref()));
            for (r, (gr, wr)) in g.iter().zip(&w).enumerate() {
                close(gr, wr).map_err(|e| ctx(format!("row {r}: {e}")))?;
            }
            Ok(())
        }
        _ => {
            let g = arrow::compute::cast(got, &DataType::Float64).map_err(|e| ctx(e.to_string()))?;
            close(&floats(g.as_ref()), &floats(want.as_ref())).map_err(ctx)
        }
    }
}

fn close(got: &[f64], want: &[f64]) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{} values, expected {}", got.len(), want.len()));
    }
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let tol = 1e-5 * w.abs().max(1e-2);
        if !((g - w).abs() <= tol || (g.is_nan() && w.is_nan())) {
            return Err(format!("value {i}: {g} vs {w}"));
        }
    }
    Ok(())
}

/// The case's rows as they are, then repeated to more than `CHUNK_ROWS`: a long batch is scored
/// in chunks through the plan compiled for the chunk size, and must give the same answers.
fn run_case(case: &serde_json::Value) -> Result<(), String> {
    let name = case["case"].as_str().unwrap();
    let dir = models().join("zoo").join(name);
    let model = Model::load(dir.join("model").to_str().unwrap()).map_err(|e| format!("{name}: {e}"))?;
    let input: RecordBatch = read_parquet(&dir.join("input.parquet"));
    let golden = read_parquet(&dir.join("golden.parquet"));
    let binding = model.bind(input.schema().as_ref()).map_err(|e| format!("{name}: {e}"))?;
    let policy = if case["handles_nan"].as_bool() == Some(true) { NullPolicy::Nan } else { NullPolicy::Error };
    let times = CHUNK_ROWS / input.num_rows() + 2;
    for repeat in [1, times] {
        let input = arrow::compute::concat_batches(&input.schema(), &vec![input.clone(); repeat]).unwrap();
        let label = format!("{name} x{repeat} ({} rows)", input.num_rows());
        let prediction = model.predict(&binding, input.columns(), policy).map_err(|e| format!("{label}: {e}"))?;
        for field in golden.schema().fields() {
            let want = column(&golden, field.name());
            let want = arrow::compute::concat(&vec![want.as_ref(); repeat]).unwrap();
            let Some((_, got)) = prediction.outputs.iter().find(|(n, _)| n == field.name()) else {
                return Err(format!("{label}: mlscore has no output '{}'", field.name()));
            };
            compare(&label, field.name(), got, &want)?;
        }
    }
    Ok(())
}

#[test]
fn every_scikit_learn_estimator_scores_like_onnxruntime() {
    let cases: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(models().join("zoo/cases.json")).unwrap()).unwrap();
    assert!(cases.len() >= 60, "the zoo lists {} cases", cases.len());
    let failures: Vec<String> = cases.iter().filter_map(|c| run_case(c).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} zoo cases differ from onnxruntime:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
