//! The scikit-learn zoo (models/zoo.py): every estimator exported by skl2onnx, scored by mlscore,
//! compared with onnxruntime on the same graph and rows: labels exactly, scores within 1e-5.
//! Every case in models/zoo/cases.json is run; a failure lists all failing cases.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use mlscore::onnx::{CHUNK_ROWS, Model};
use mlscore::{NullPolicy, ResultType, Scorer};

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
    // Under the `null` policy a row with a null input gets a null prediction and the others
    // their own: row 0 nulled, rows 1.. as the golden's (for the cases whose input has no nulls).
    if policy == NullPolicy::Nan {
        return Ok(());
    }
    let nulled = with_a_null_row(&input);
    let label = format!("{name} (row 0 null)");
    let prediction =
        model.predict(&binding, nulled.columns(), NullPolicy::Null).map_err(|e| format!("{label}: {e}"))?;
    for field in golden.schema().fields() {
        let out = field.name();
        let Some((_, got)) = prediction.outputs.iter().find(|(n, _)| n == out) else {
            return Err(format!("{label}: mlscore has no output '{out}'"));
        };
        if !got.is_null(0) || got.null_count() != 1 {
            return Err(format!("{label}.{out}: {} nulls, row 0 null: {}", got.null_count(), got.is_null(0)));
        }
        let want = column(&golden, out).slice(1, input.num_rows() - 1);
        compare(&label, out, &got.slice(1, input.num_rows() - 1), &want)?;
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

/// A graph that is one tree ensemble (a ZipMap and label casts after it allowed) scores float64
/// columns directly, without the input tensor or tract: for every such zoo case, the direct
/// outputs equal, value for value, those of the same rows cast to float32 first (a float32
/// column builds the tensor, which tract runs). Graphs with any other operator take tract.
#[test]
fn lone_tree_ensembles_score_float64_columns_directly_and_as_tract_does() {
    let cases: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(models().join("zoo/cases.json")).unwrap()).unwrap();
    let lone = |c: &serde_json::Value| {
        c["ops"].as_array().unwrap().iter().all(|o| {
            let o = o.as_str().unwrap();
            o.contains("TreeEnsemble") || o.ends_with(":ZipMap") || o.ends_with(":Cast") || o.ends_with(":Identity")
        })
    };
    let (mut direct, mut others) = (0, 0);
    for case in &cases {
        let name = case["case"].as_str().unwrap();
        let dir = models().join("zoo").join(name);
        let model = Model::load(dir.join("model").to_str().unwrap()).unwrap();
        if !lone(case) {
            assert!(!model.graph().scores_columns_directly(), "{name} ({:?}) skips tract", case["ops"]);
            others += 1;
            continue;
        }
        assert!(model.graph().scores_columns_directly(), "{name} ({:?}) does not skip tract", case["ops"]);
        assert_eq!(model.graph().inputs[0].elem, Some(mlscore::onnx::ElemType::F32), "{name}");
        direct += 1;
        let input = read_parquet(&dir.join("input.parquet"));
        // Past the tract chunk size, and past 128 rows (the kernel's bit-vector blocks).
        let input =
            arrow::compute::concat_batches(&input.schema(), &vec![input.clone(); CHUNK_ROWS / input.num_rows() + 2])
                .unwrap();
        let cast: Vec<ArrayRef> =
            input.columns().iter().map(|c| arrow::compute::cast(c, &DataType::Float32).unwrap()).collect();
        let fields: Vec<_> = cast
            .iter()
            .zip(input.schema().fields())
            .map(|(c, f)| f.as_ref().clone().with_data_type(c.data_type().clone()))
            .collect();
        let cast = RecordBatch::try_new(std::sync::Arc::new(arrow::datatypes::Schema::new(fields)), cast).unwrap();
        let policy = if case["handles_nan"].as_bool() == Some(true) { NullPolicy::Nan } else { NullPolicy::Error };
        let score = |batch: &RecordBatch| {
            let binding = model.bind(batch.schema().as_ref()).unwrap();
            model.predict(&binding, batch.columns(), policy).unwrap().outputs
        };
        let (got, want) = (score(&input), score(&cast));
        assert_eq!(got.len(), want.len(), "{name}");
        for ((n, g), (_, w)) in got.iter().zip(&want) {
            assert_eq!(g.to_data(), w.to_data(), "{name}: output {n}");
        }
    }
    assert!(direct >= 20 && others >= 30, "{direct} lone ensembles, {others} other graphs");
    // `mlscore inspect` says which.
    for (case, by) in [("random_forest_binary_zipmap", "tree kernel on float64 columns"), ("logistic_binary", "tract")]
    {
        let mut cmd = mlscore();
        cmd.args(["inspect", "--json"]).arg(models().join("zoo").join(case).join("model"));
        let v: serde_json::Value = serde_json::from_slice(&run(&mut cmd, true).stdout).unwrap();
        assert_eq!(v["onnx"]["scored_by"], by, "{case}");
    }
}

/// Every result type a user can ask for, over the outputs of the model at hand: each spark_udf
/// type alone and in arrays, nested arrays, maps, the classifier structs, a struct of every
/// output by name, and the two defaults (from the outputs, from the signature).
fn result_types(model: &Model) -> Vec<ResultType> {
    let scalars = ["int", "bigint", "float", "double", "string", "boolean"];
    let mut ddl: Vec<String> = scalars.iter().map(|s| s.to_string()).collect();
    ddl.extend(scalars.iter().map(|s| format!("array<{s}>")));
    ddl.extend(
        ["array<array<double>>", "array<array<string>>", "map<string,float>", "map<string,double>"].map(String::from),
    );
    ddl.extend(["map<string,string>", "map<string,bigint>"].map(String::from));
    for label in ["bigint", "string", "double", "boolean"] {
        for probs in ["array<double>", "array<float>", "double", "map<string,double>"] {
            ddl.push(format!("struct<label:{label},probabilities:{probs}>"));
            ddl.push(format!("struct<output_label:{label},output_probability:{probs}>"));
        }
    }
    let outputs = model.output_types();
    ddl.push(format!("struct<{}>", outputs.iter().map(|(n, _)| format!("`{n}`:string")).collect::<Vec<_>>().join(",")));
    let mut types: Vec<ResultType> = ddl.iter().map(|d| ResultType::parse(d).unwrap()).collect();
    types.extend(ResultType::infer_from_outputs(&outputs).ok());
    types.extend(ResultType::infer_from_signature(model.signature().and_then(|s| s.outputs.as_ref())).ok());
    types
}

/// The case's input with row 0 of its first column null (scored under the `null` policy).
fn with_a_null_row(input: &RecordBatch) -> RecordBatch {
    let first = input.column(0);
    let mask = arrow::array::BooleanArray::from((0..first.len()).map(|r| r == 0).collect::<Vec<_>>());
    let nulled = arrow::compute::nullif(first, &mask).unwrap();
    let mut columns = input.columns().to_vec();
    columns[0] = nulled;
    RecordBatch::try_new(input.schema(), columns).unwrap()
}

/// Drives one result type over one prediction: a column of the type's Arrow type and the
/// prediction's length, or an error that names the type or an output. Never a panic.
fn convert_case(label: &str, ty: &ResultType, outputs: &[(String, ArrayRef)], rows: usize) -> Result<(), String> {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ty.convert(outputs)));
    match result {
        Err(panic) => {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!("{label} as {ty}: panicked: {text}"))
        }
        Ok(Ok(column)) if column.len() != rows => Err(format!("{label} as {ty}: {} rows for {rows}", column.len())),
        Ok(Ok(column)) if column.data_type() != &ty.arrow_type() => {
            Err(format!("{label} as {ty}: a {} column, not {}", column.data_type(), ty.arrow_type()))
        }
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => {
            let text = e.to_string();
            let named = text.contains(&ty.to_string()) || outputs.iter().any(|(n, _)| text.contains(&format!("'{n}'")));
            if named { Ok(()) } else { Err(format!("{label} as {ty}: the error names neither: {text}")) }
        }
    }
}

#[test]
fn every_result_type_converts_every_output_kind_or_says_why() {
    let cases: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(models().join("zoo/cases.json")).unwrap()).unwrap();
    // The zoo must hold every output kind: int and string labels, ZipMap maps with int and string
    // keys, probability matrices, plain scores.
    let kinds = |pred: &dyn Fn(&serde_json::Value) -> bool| cases.iter().filter(|c| pred(c)).count();
    assert!(kinds(&|c| c["labels"] == "string" && c["zipmap"] == true) >= 8, "string-label ZipMap cases missing");
    assert!(kinds(&|c| c["labels"] == "string" && c["zipmap"] == false) >= 8, "string-label dense cases missing");
    let mut failures = Vec::new();
    let mut conversions = 0;
    for case in &cases {
        let name = case["case"].as_str().unwrap();
        let dir = models().join("zoo").join(name);
        let model = Model::load(dir.join("model").to_str().unwrap()).unwrap();
        let input = read_parquet(&dir.join("input.parquet"));
        let types = result_types(&model);
        for (label, input, policy) in [
            (name.to_string(), input.clone(), NullPolicy::Nan),
            (format!("{name} (a null row)"), with_a_null_row(&input), NullPolicy::Null),
            (format!("{name} (no rows)"), input.slice(0, 0), NullPolicy::Error),
        ] {
            let binding = model.bind(input.schema().as_ref()).unwrap();
            let prediction = match model.predict(&binding, input.columns(), policy) {
                Ok(p) => p,
                Err(e) => {
                    failures.push(format!("{label}: {e}"));
                    continue;
                }
            };
            for ty in &types {
                conversions += 1;
                if let Err(e) = convert_case(&label, ty, &prediction.outputs, input.num_rows()) {
                    failures.push(e);
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {conversions} conversions failed:\n{}", failures.len(), failures.join("\n"));
}

/// The seeded mutation loop over ONNX files (protobuf: field tags, lengths and varints as the
/// alphabet) of tree ensembles, a linear model, a pipeline with encoders and a ZipMap classifier:
/// every mutant loads and scores, or is an error; none panics (tract's own checks included).
#[test]
fn mutated_onnx_files_are_errors_or_models_never_panics() {
    let cases = [
        ("decision_tree_classifier_zipmap", "model.onnx"),
        ("column_transformer_onehot_random_forest", "model.onnx"),
        ("binarizer", "model.onnx"),
    ];
    let outcomes = crate::common::mutation_loop(
        "zoo",
        &cases,
        b"\x00\x01\x02\x08\x10\x12\x1a\x22\x2a\x3a\x7f\x80\xff",
        0x3c6e_f372_fe94_f82b,
        60,
    );
    assert!(outcomes[1] > 0, "no mutant was refused: {outcomes:?}");
}

/// A LabelEncoder whose values are fewer than its keys (the last value's tag turned into an
/// unknown field, which protobuf readers skip) is refused when the model loads; scoring it used
/// to index past the values and panic on the first row holding the last key.
#[test]
fn a_label_encoder_with_fewer_values_than_keys_is_refused_at_load() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = crate::common::edited_model("zoo", "label_encoder", "model.onnx", tmp.path(), |mut b| {
        let at =
            b.windows(5).position(|w| w == [0x40, 0x03, 0xa0, 0x01, 0x07]).expect("the last value of values_int64s");
        b[at] = 0x60;
        b
    });
    let err = match mlscore::load(dir.to_str().unwrap()) {
        Ok(_) => panic!("a LabelEncoder with 4 keys and 3 values loaded"),
        Err(e) => {
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                text = format!("{text}: {c}");
                cause = c.source();
            }
            text
        }
    };
    assert!(err.contains("4 keys but 3 values") && err.contains("LabelEncoder"), "{err}");
}
