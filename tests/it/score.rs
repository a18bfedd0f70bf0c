//! `mlscore score` on the bundled MLflow-logged models and sample table, against onnxruntime's goldens.

use arrow::array::{Array, AsArray, Float64Array, Int64Array};
use arrow::datatypes::{DataType, Float64Type};

use crate::common::*;

fn score(model: &str, output: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let mut cmd = mlscore();
    cmd.env("MLFLOW_TRACKING_URI", sqlite_store())
        .args(["score", "--model", model, "--input"])
        .arg(sample())
        .arg("--output")
        .arg(output)
        .args(extra);
    run(&mut cmd, true)
}

#[test]
fn every_sample_model_scores_like_onnxruntime() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest();
    for (key, info) in manifest["models"].as_object().unwrap() {
        let uri = format!("models:/{}/{}", info["registered_name"].as_str().unwrap(), info["registered_version"]);
        let out = dir.path().join(format!("{key}.parquet"));
        score(&uri, &out, &[]);
        let batch = read_parquet(&out);
        assert_eq!(batch.num_rows(), 1000, "{key}");
        assert_matches_golden(&batch, "prediction", key);
    }
}

#[test]
fn weights_in_external_data_files_are_loaded() {
    let info = &manifest()["models"]["segment_mlp"];
    let dir = models().join(format!("store/mlruns/1/models/{}/artifacts", info["model_id"].as_str().unwrap()));
    let sidecars = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "data"))
        .count();
    assert_eq!(sidecars, 1, "the MLP's weights should sit in a <uuid>.data file beside model.onnx");
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("mlp.parquet");
    score(&format!("models:/{}", info["model_id"].as_str().unwrap()), &path, &[]);
    assert_matches_golden(&read_parquet(&path), "prediction", "segment_mlp");
}

#[test]
fn every_input_column_is_kept_unchanged_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.parquet");
    // 3 files of small row groups on 3 partitions: order must survive file and range splits.
    score("models/churn", &out, &["--partitions", "3", "--batch-rows", "100"]);
    let scored = read_parquet(&out);
    let input = read_parquet(&sample());
    assert_eq!(scored.num_columns(), input.num_columns() + 1);
    for (i, field) in input.schema().fields().iter().enumerate() {
        assert_eq!(scored.schema().field(i).name(), field.name());
        assert_eq!(scored.schema().field(i).data_type(), field.data_type(), "{} changed type", field.name());
        assert_eq!(scored.column(i).as_ref(), input.column(i).as_ref(), "{} changed", field.name());
    }
    assert_matches_golden(&scored, "prediction", "churn_v2");
}

#[test]
fn directory_outputs_hold_ordered_parts_and_a_success_marker() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("scored/");
    score("models/churn", &out, &["--partitions", "2"]);
    assert!(out.join("_SUCCESS").is_file());
    let parts: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".parquet"))
        .collect();
    assert!(!parts.is_empty());
    assert_matches_golden(&read_parquet(&out), "prediction", "churn_v2");
}

#[test]
fn csv_output_with_a_scalar_result_type() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.csv");
    score("models/churn", &out, &["--result-type", "double", "--output-column", "churn"]);
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next().unwrap(), "customer_id,age,income,tenure,balance,products,active,region,churn");
    let golden = read_parquet(&models().join("golden/churn_v2.parquet"));
    let labels = ints(column(&golden, "label").as_ref());
    let got: Vec<i64> = lines.map(|l| l.rsplit(',').next().unwrap().parse::<f64>().unwrap() as i64).collect();
    assert_same(&got, &labels, "csv labels");
}

#[test]
fn result_types_follow_spark_udf() {
    let dir = tempfile::tempdir().unwrap();
    let golden = read_parquet(&models().join("golden/churn_v2.parquet"));
    let labels = ints(column(&golden, "label").as_ref());
    let probs = float_rows(column(&golden, "probabilities").as_ref());

    let p = dir.path().join("struct.parquet");
    score("models/churn", &p, &["--result-type", "struct<probabilities:array<double>, label:int>"]);
    let s = column(&read_parquet(&p), "prediction");
    let s = s.as_struct();
    assert_eq!(
        s.column(0).data_type(),
        &DataType::List(std::sync::Arc::new(arrow::datatypes::Field::new("item", DataType::Float64, true)))
    );
    assert_same(
        &s.column(1)
            .as_primitive::<arrow::datatypes::Int32Type>()
            .values()
            .iter()
            .map(|v| i64::from(*v))
            .collect::<Vec<_>>(),
        &labels,
        "struct labels",
    );

    let p = dir.path().join("array.parquet");
    score("models/churn", &p, &["--result-type", "array<double>"]);
    let rows = float_rows(column(&read_parquet(&p), "prediction").as_ref());
    for (r, row) in rows.iter().enumerate() {
        assert_eq!(row.len(), 3, "array<double> holds the label and both probabilities");
        assert_eq!(row[0] as i64, labels[r]);
        assert_close(&row[1..], &probs[r], 1e-5, "array<double> probabilities");
    }

    let p = dir.path().join("long.parquet");
    score("models/churn", &p, &["--result-type", "bigint"]);
    assert_same(&ints(column(&read_parquet(&p), "prediction").as_ref()), &labels, "bigint labels");

    // spark_udf's 'int' keeps only int8/16/32 outputs: an int64 label gives its exact error.
    let p = dir.path().join("int.parquet");
    let mut cmd = mlscore();
    cmd.args(["score", "-m", "models/churn", "-i"]).arg(sample()).arg("-o").arg(&p).args(["--result-type", "int"]);
    let out = run(&mut cmd, false);
    assert!(
        stderr(&out).contains("did not produce any values compatible with the requested type 'int'"),
        "{}",
        stderr(&out)
    );
    assert!(!p.exists());
}

#[test]
fn positional_columns_are_fed_in_the_signature_order_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("same.parquet");
    let out = score("models/churn", &p, &["--columns", "age,income,tenure,balance,products,active"]);
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    assert_matches_golden(&read_parquet(&p), "prediction", "churn_v2");

    let swapped = dir.path().join("swapped.parquet");
    let out = score("models/churn", &swapped, &["--columns", "age,balance,tenure,income,products,active"]);
    let err = stderr(&out);
    assert!(
        err.contains(
            "warning: predict: column 'balance' is passed in position 2 and is scored as the model's input 'income'"
        ),
        "{err}"
    );
    assert!(
        err.contains("column 'income' is passed in position 4 and is scored as the model's input 'balance'"),
        "{err}"
    );
    // As in MLflow, the data goes where the position says: the predictions differ.
    let golden = read_parquet(&models().join("golden/churn_v2.parquet"));
    let got = column(&read_parquet(&swapped), "prediction");
    assert_ne!(ints(got.as_struct().column(0).as_ref()), ints(column(&golden, "label").as_ref()));
}

#[test]
fn provenance_is_recorded_in_the_parquet_footer() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("o.parquet");
    score("models:/churn@champion", &p, &[]);
    let kv = parquet_metadata(&p);
    let get = |k: &str| {
        kv.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).unwrap_or_else(|| panic!("no {k} in {kv:?}"))
    };
    let m = manifest();
    assert_eq!(get("mlscore.model.uri"), "models:/churn@champion");
    assert_eq!(get("mlscore.model.registered_name"), "churn");
    assert_eq!(get("mlscore.model.registered_version"), "2");
    assert_eq!(get("mlscore.model.run_id"), m["models"]["churn_v2"]["run_id"].as_str().unwrap());
    assert_eq!(get("mlscore.model.model_id"), m["models"]["churn_v2"]["model_id"].as_str().unwrap());
    assert_eq!(get("mlscore.model.format"), "onnx");
    assert_eq!(get("mlscore.model.artifact_sha256").len(), 64);
    assert_eq!(get("mlscore.version"), env!("CARGO_PKG_VERSION"));
}

#[test]
fn floating_point_columns_are_written_without_dictionaries() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("o.parquet");
    // Re-encoded: copied columns keep the input's own encodings (tests/it/passthrough.rs).
    score("models/churn", &p, &["--reencode"]);
    let reader = parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&p).unwrap()).unwrap();
    let meta = parquet::file::reader::FileReader::metadata(&reader);
    let mut seen = 0;
    for rg in meta.row_groups() {
        for c in rg.columns() {
            let path = c.column_path().string();
            let float = matches!(c.column_type(), parquet::basic::Type::DOUBLE | parquet::basic::Type::FLOAT);
            if float {
                seen += 1;
                assert_eq!(c.dictionary_page_offset(), None, "{path} has a dictionary page");
            } else if path == "customer_id" {
                assert!(c.dictionary_page_offset().is_some(), "{path} lost its dictionary");
            }
        }
    }
    // income, balance and the probabilities' values.
    assert!(seen >= 3, "{seen} floating-point column chunks");
}

#[test]
fn null_policies_decide_what_a_null_means() {
    let dir = tempfile::tempdir().unwrap();
    let with_nulls = sample_with(dir.path(), "nulls.parquet", |b| {
        let income = column(&b, "income");
        let values: Float64Array = income
            .as_primitive::<Float64Type>()
            .iter()
            .enumerate()
            .map(|(i, v)| if i % 10 == 3 { None } else { v })
            .collect();
        replace(b, "income", std::sync::Arc::new(values))
    });
    let out = dir.path().join("o.parquet");
    let mut cmd = mlscore();
    cmd.args(["score", "-m", "models/churn", "-i"]).arg(&with_nulls).arg("-o").arg(&out);
    let err = stderr(&run(&mut cmd, false));
    assert!(err.contains("column 'income'") && err.contains("null values") && err.contains("--on-null"), "{err}");
    assert!(!out.exists());

    let mut cmd = mlscore();
    cmd.args(["score", "-m", "models/churn", "-i"]).arg(&with_nulls).arg("-o").arg(&out).args(["--on-null", "null"]);
    let err = stderr(&run(&mut cmd, true));
    assert!(err.contains("100 rows had null inputs"), "{err}");
    let pred = column(&read_parquet(&out), "prediction");
    assert_eq!(pred.null_count(), 100);
    assert!(pred.is_null(3) && pred.is_valid(4));

    let nan_out = dir.path().join("nan.parquet");
    let mut cmd = mlscore();
    cmd.args(["score", "-m", "models/churn", "-i"]).arg(&with_nulls).arg("-o").arg(&nan_out).args([
        "--on-null",
        "nan",
        "--result-type",
        "array<double>",
    ]);
    run(&mut cmd, true);
    let rows = float_rows(column(&read_parquet(&nan_out), "prediction").as_ref());
    assert!(rows[3][1].is_nan(), "a NaN input gives NaN probabilities, as in onnxruntime: {:?}", rows[3]);
    assert!(!rows[4][1].is_nan());
}

#[test]
fn int64_columns_feed_double_signatures_only_when_they_hold_0_or_1() {
    // 'active' is boolean in the signature, so use a model column declared double: balance.
    let dir = tempfile::tempdir().unwrap();
    let zero_one = sample_with(dir.path(), "zo.parquet", |b| {
        let n = b.num_rows();
        replace(b, "balance", std::sync::Arc::new(Int64Array::from((0..n as i64).map(|i| i % 2).collect::<Vec<_>>())))
    });
    let mut cmd = mlscore();
    cmd.args(["score", "-m", "models/churn", "-i"]).arg(&zero_one).arg("-o").arg(dir.path().join("a.parquet"));
    run(&mut cmd, true);
    let many = sample_with(dir.path(), "many.parquet", |b| {
        let n = b.num_rows();
        replace(b, "balance", std::sync::Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())))
    });
    let mut cmd = mlscore();
    cmd.args(["score", "-m", "models/churn", "-i"]).arg(&many).arg("-o").arg(dir.path().join("b.parquet"));
    let err = stderr(&run(&mut cmd, false));
    assert!(err.contains("column 'balance'") && err.contains("int64") && err.contains("0 or 1"), "{err}");
    assert!(!dir.path().join("b.parquet").exists());
}

#[test]
fn an_empty_table_gives_an_empty_output_with_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let empty = sample_with(dir.path(), "empty.parquet", |b| b.slice(0, 0));
    let out = dir.path().join("o.parquet");
    let mut cmd = mlscore();
    cmd.args(["score", "-m", "models/churn", "-i"]).arg(&empty).arg("-o").arg(&out);
    run(&mut cmd, true);
    let b = read_parquet(&out);
    assert_eq!(b.num_rows(), 0);
    assert_eq!(b.schema().field(b.num_columns() - 1).name(), "prediction");
}
