//! `mlscore serve` on 127.0.0.1, driven over HTTP as a client of `mlflow models serve` drives it:
//! MLflow's payloads and answers, its error bodies and status codes, and a clean stop on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

use arrow::array::Array;

use serde_json::{Value, json};

use crate::common::*;

/// A running `mlscore serve` and its base URL; killed when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) url: String,
    /// What the server wrote on stderr after its first line.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn start(model: &std::path::Path, extra: &[&str]) -> Server {
    let mut cmd = mlscore();
    cmd.args(["serve", "--port", "0", "--model"]).arg(model).args(extra).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let line = lines.next().expect("the server printed nothing").unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in '{line}'"))
        .to_string();
    // Keep draining stderr so the server never blocks on it.
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = log.clone();
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(|l| sink.lock().unwrap().push(l)));
    Server { child, url, log }
}

pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

/// Status, content type and body of a POST.
pub(crate) fn post(url: &str, content_type: &str, body: &str) -> (u16, String, String) {
    let mut r = agent().post(url).header("Content-Type", content_type).send(body).unwrap();
    let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (r.status().as_u16(), ct, r.body_mut().read_to_string().unwrap())
}

pub(crate) fn get(url: &str) -> (u16, String) {
    let mut r = agent().get(url).call().unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

/// Row-major values as a dictionary of columns (`inputs` in MLflow's tensor form).
fn by_column(names: &[String], rows: &[impl AsRef<[Value]>]) -> serde_json::Map<String, Value> {
    names.iter().enumerate().map(|(j, n)| (n.clone(), rows.iter().map(|r| r.as_ref()[j].clone()).collect())).collect()
}

/// Rows as a list of records (`dataframe_records`, `instances`).
fn records_of(names: &[String], rows: &[Vec<Value>]) -> Vec<Value> {
    rows.iter().map(|r| Value::Object(names.iter().cloned().zip(r.iter().cloned()).collect())).collect()
}

/// A split frame of the rows with the columns in reverse order and an extra column `extra`.
fn reordered_with_extra(names: &[String], rows: &[Vec<Value>]) -> Value {
    let columns: Vec<&str> = names.iter().rev().map(String::as_str).chain(["extra"]).collect();
    let data: Vec<Vec<Value>> = rows.iter().map(|r| r.iter().rev().cloned().chain([json!(1)]).collect()).collect();
    json!({"columns": columns, "data": data})
}

/// Rows as a CSV body with a header: text as it is, null as an empty cell, the rest as JSON writes it.
fn csv_of(names: &[String], rows: &[Vec<Value>]) -> String {
    let mut csv = names.join(",") + "\n";
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .map(|v| match v {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        csv += &(cells.join(",") + "\n");
    }
    csv
}

pub(crate) fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// The case's input rows as JSON values by column (NaN as null), and pyfunc's labels.
pub(crate) fn case_rows(case: &str) -> (Vec<String>, Vec<Vec<Value>>, Vec<Value>) {
    let dir = models().join("sklearn").join(case);
    let input = read_parquet(&dir.join("input.parquet"));
    let golden = read_parquet(&dir.join("golden.parquet"));
    let names: Vec<String> = input.schema().fields().iter().map(|f| f.name().clone()).collect();
    let text = |a: &arrow::array::ArrayRef| -> Vec<Value> {
        use arrow::array::AsArray;
        use arrow::datatypes::{DataType, Float64Type, Int64Type};
        (0..a.len())
            .map(|i| {
                if a.is_null(i) {
                    return Value::Null;
                }
                match a.data_type() {
                    DataType::Int64 => json!(a.as_primitive::<Int64Type>().value(i)),
                    DataType::Float64 => {
                        let v = a.as_primitive::<Float64Type>().value(i);
                        if v.is_nan() { Value::Null } else { json!(v) }
                    }
                    DataType::Boolean => json!(a.as_boolean().value(i)),
                    DataType::Utf8 => json!(a.as_string::<i32>().value(i)),
                    DataType::LargeUtf8 => json!(a.as_string::<i64>().value(i)),
                    DataType::Utf8View => json!(a.as_string_view().value(i)),
                    t => panic!("a {t} column"),
                }
            })
            .collect()
    };
    let cols: Vec<Vec<Value>> = input.columns().iter().map(text).collect();
    let rows = (0..input.num_rows()).map(|i| cols.iter().map(|c| c[i].clone()).collect()).collect();
    (names, rows, text(&column(&golden, "prediction")))
}

#[test]
fn serve_answers_mlflow_clients_like_mlflow_models_serve() {
    let case = "pipeline_onehot_logreg_skops";
    let server = start(&models().join("sklearn").join(case).join("model"), &[]);
    let base = &server.url;
    let inv = format!("{base}/invocations");

    // Probes and version.
    assert_eq!(get(&format!("{base}/ping")), (200, "\n".into()));
    assert_eq!(get(&format!("{base}/health")).0, 200);
    assert_eq!(get(&format!("{base}/version")).0, 200);
    assert_eq!(get(&format!("{base}/nope")), (404, r#"{"detail":"Not Found"}"#.into()));
    assert_eq!(get(&inv), (405, r#"{"detail":"Method Not Allowed"}"#.into()));
    assert_eq!(agent().head(&format!("{base}/ping")).call().unwrap().status().as_u16(), 405);
    assert_eq!(post(&format!("{base}/ping"), "application/json", "{}").0, 405);
    let no_redirects: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
    let r = no_redirects.post(&format!("{inv}/")).header("Content-Type", "application/json").send("{}").unwrap();
    assert_eq!(
        (r.status().as_u16(), r.headers().get("location").map(|v| v.to_str().unwrap())),
        (307, Some("/invocations"))
    );

    // dataframe_split and dataframe_records give pyfunc's labels (string labels, an unseen city,
    // NaN incomes imputed by the pipeline).
    let (names, rows, labels) = case_rows(case);
    let split = json!({"dataframe_split": {"columns": names, "data": rows}});
    let (status, ct, body) = post(&inv, "application/json", &split.to_string());
    assert_eq!((status, ct.as_str()), (200, "application/json"), "{body}");
    assert_eq!(json_of(&body)["predictions"], Value::Array(labels.clone()));

    let records = records_of(&names, &rows);
    let (status, _, body) =
        post(&inv, "application/json; charset=UTF-8", &json!({"dataframe_records": records}).to_string());
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_of(&body)["predictions"], Value::Array(labels.clone()));

    // Columns in another order, an extra column and params: by name, extras ignored (as MLflow).
    let body = json!({"dataframe_split": reordered_with_extra(&names, &rows), "params": {"x": 1}}).to_string();
    let (status, _, body) = post(&inv, "application/json", &body);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_of(&body)["predictions"], Value::Array(labels.clone()));

    // `inputs` as a dictionary of columns.
    let (status, _, body) = post(&inv, "application/json", &json!({"inputs": by_column(&names, &rows)}).to_string());
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_of(&body)["predictions"], Value::Array(labels.clone()));

    // `instances` as a list of records, and an unknown top-level key beside the format key.
    let (status, _, body) =
        post(&inv, "application/json", &json!({"instances": records.clone(), "extra": 5}).to_string());
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_of(&body)["predictions"], Value::Array(labels.clone()));
    // A 2-D list against a named signature: refused as a schema error (400; MLflow 3.17.2 fails
    // otherwise with 400, see serve_and_mlflow_models_serve_answer_the_checklist_alike).
    let (status, _, body) = post(&inv, "application/json", &json!({"inputs": rows.clone()}).to_string());
    assert_eq!((status, json_of(&body)["error_class"].as_str()), (400, Some("SCHEMA_ENFORCEMENT_FAILED")), "{body}");

    // CSV with a header, numbers as text: cast to the signature's types.
    let csv = csv_of(&names, &rows);
    let (status, _, body) = post(&inv, "text/csv", &csv);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_of(&body)["predictions"], Value::Array(labels));
    // A CSV cell that does not convert: 400 BAD_REQUEST naming the column.
    let bad_csv = format!("{}\nforty,1.0,true,lille,pro\n", names.join(","));
    let (status, _, body) = post(&inv, "text/csv", &bad_csv);
    assert_eq!((status, json_of(&body)["error_code"].as_str()), (400, Some("BAD_REQUEST")), "{body}");
    assert!(body.contains("column age"), "{body}");

    // Errors, with MLflow's status codes and bodies.
    let missing = json!({"dataframe_split": {"columns": ["age"], "data": [[30]]}}).to_string();
    let (status, _, body) = post(&inv, "application/json", &missing);
    let e = json_of(&body);
    assert_eq!((status, e["error_code"].as_str()), (400, Some("INVALID_PARAMETER_VALUE")), "{body}");
    assert_eq!(e["error_class"], "SCHEMA_ENFORCEMENT_FAILED");
    assert!(e["message"].as_str().unwrap().contains(r#"Model is missing inputs ["active", "city", "plan"]"#), "{body}");

    let bad_value =
        json!({"dataframe_split": {"columns": names, "data": [["x", 1.0, true, "lille", "pro"]]}}).to_string();
    let (status, _, body) = post(&inv, "application/json", &bad_value);
    assert_eq!(status, 400, "{body}");
    assert!(json_of(&body)["message"].as_str().unwrap().contains("Failed to convert column age"), "{body}");

    for (payload, needle) in [
        ("{not json", "valid JSON"),
        ("[1, 2]", "Received a list"),
        (r#"{"columns": ["a"], "data": [[1]]}"#, "exactly one of the input fields"),
        (r#"{"dataframe_split": [1], "inputs": [1]}"#, "exactly one of the input fields"),
        (r#"{"dataframe_split": [[1]]}"#, "must be a dictionary"),
        (r#"{"dataframe_records": {"a": 1}}"#, "list of records"),
    ] {
        let (status, _, body) = post(&inv, "application/json", payload);
        assert_eq!(status, 400, "{payload}: {body}");
        let e = json_of(&body);
        assert_eq!(e["error_code"], "BAD_REQUEST", "{payload}: {body}");
        assert!(e["message"].as_str().unwrap().contains(needle), "{payload}: {body}");
    }
    for (ct, needle) in [
        ("text/plain", "only supports the following content types"),
        ("Application/JSON", "only supports the following content types"),
        ("application/json; charset=latin-1", "only supports UTF-8"),
        ("application/json; format=pandas-split", "Unrecognized content type parameters: format"),
    ] {
        let (status, ct_got, body) = post(&inv, ct, "{}");
        assert_eq!(status, 415, "{ct}: {body}");
        assert!(ct_got.starts_with("text/plain") && body.contains(needle), "{ct}: {ct_got} {body}");
    }
}

#[test]
fn serve_limits_bodies_and_stops_cleanly_on_sigterm() {
    let server = start(&models().join("sklearn/random_forest_pickle/model"), &["--body-limit-mb", "1", "--access-log"]);
    let inv = format!("{}/invocations", server.url);
    let big = format!(r#"{{"inputs": [{}]}}"#, vec!["1.0"; 400_000].join(","));
    // The server answers 413 without reading the rest of the body and closes the connection, so
    // a client still sending may see the pipe break before it reads the answer; the access log
    // below says what the server answered either way.
    match agent().post(&inv).header("Content-Type", "application/json").send(&big) {
        Ok(r) => assert_eq!(r.status().as_u16(), 413),
        Err(ureq::Error::Io(e)) => {
            assert!(matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset), "{e}")
        }
        Err(e) => panic!("{e}"),
    }
    // A tree model over NaN features: 200, NaN routed as scikit-learn routes it.
    let row = json!({"dataframe_split": {"columns": ["f0","f1","f2","f3","f4","f5"], "data": [[null, 1.0, 2.0, 3.0, 4.0, 5.0]]}});
    let (status, _, body) = post(&inv, "application/json", &row.to_string());
    assert_eq!(status, 200, "{body}");
    assert!(json_of(&body)["predictions"][0].is_i64(), "{body}");
    // --access-log: one JSON line for the scoring request.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let logged: Vec<Value> = server.log.lock().unwrap().iter().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(
        logged.iter().any(|l| l["route"] == "/invocations" && l["status"] == 200 && l["rows"] == 1 && l["ms"].is_f64()),
        "{logged:?}"
    );
    assert!(logged.iter().any(|l| l["route"] == "/invocations" && l["status"] == 413), "{logged:?}");

    #[cfg(unix)]
    {
        let mut server = server;
        let pid = server.child.id();
        let ok = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
        assert!(ok.success());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                assert!(status.success(), "the server exited with {status} on SIGTERM");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the server did not stop on SIGTERM");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

/// Status, headers and body of a POST with extra headers and a binary body.
pub(crate) fn post_with(url: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Vec<(String, String)>, String) {
    let mut req = agent().post(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut r = req.send(body).unwrap();
    let h = r.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect();
    (r.status().as_u16(), h, r.body_mut().read_to_string().unwrap())
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[test]
fn serve_reads_parquet_bodies_and_answers_as_an_azure_ml_endpoint() {
    let case = "random_forest_pickle";
    let dir = models().join("sklearn").join(case);
    let server = start(&dir.join("model"), &["--azureml"]);
    let (names, rows, labels) = case_rows(case);

    // A Parquet file as the body (application/vnd.apache.parquet).
    let parquet = std::fs::read(dir.join("input.parquet")).unwrap();
    let (status, _, body) = post_with(
        &format!("{}/invocations", server.url),
        &[("Content-Type", "application/vnd.apache.parquet")],
        &parquet,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_of(&body)["predictions"], Value::Array(labels.clone()));
    let (status, _, body) = post_with(
        &format!("{}/invocations", server.url),
        &[("Content-Type", "application/vnd.apache.parquet")],
        b"not parquet",
    );
    assert_eq!(status, 400, "{body}");
    assert!(json_of(&body)["message"].as_str().unwrap().contains("Parquet"), "{body}");
    // A footer of hostile Thrift (hours of work inside the parquet crate) is refused at once.
    let started = std::time::Instant::now();
    let (status, _, body) = post_with(
        &format!("{}/invocations", server.url),
        &[("Content-Type", "application/vnd.apache.parquet")],
        &crate::errors::hostile_parquet(64),
    );
    assert_eq!(status, 400, "{body}");
    assert!(json_of(&body)["message"].as_str().unwrap().contains("footer is damaged"), "{body}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "took {:?}", started.elapsed());

    // Azure ML: GET / is the liveness probe; POST /score takes input_data and answers the bare list.
    assert_eq!(get(&format!("{}/", server.url)), (200, "Healthy".into()));
    let score = format!("{}/score", server.url);
    let payload = json!({"input_data": {"columns": names, "index": (0..rows.len()).collect::<Vec<_>>(), "data": rows}});
    let (status, h, body) = post_with(
        &score,
        &[("Content-Type", "application/json"), ("x-request-id", "req-42"), ("x-ms-client-request-id", "client-7")],
        payload.to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_of(&body), Value::Array(labels));
    assert_eq!(header(&h, "x-request-id"), Some("req-42"));
    assert_eq!(header(&h, "x-ms-client-request-id"), Some("client-7"));
    assert!(header(&h, "x-ms-run-fn-exec-ms").is_some_and(|v| v.parse::<f64>().is_ok()), "{h:?}");

    // Azure ML's errors: {"message": ...}; a generated request id when none is sent.
    let (status, h, body) = post_with(&score, &[("Content-Type", "application/json")], br#"{"data": [[1]]}"#);
    assert_eq!(status, 400, "{body}");
    assert!(json_of(&body)["message"].as_str().unwrap().contains("'input_data'"), "{body}");
    assert!(header(&h, "x-request-id").is_some_and(|v| !v.is_empty()));
    let (status, _, body) = post_with(&score, &[("Content-Type", "text/csv")], b"a\n1\n");
    assert_eq!(status, 415, "{body}");
    assert!(json_of(&body)["message"].as_str().unwrap().contains("application/json"), "{body}");

    // /metrics counts what was answered: requests by route and status, rows scored.
    let (status, text) = get(&format!("{}/metrics", server.url));
    assert_eq!(status, 200);
    for line in [
        r#"mlscore_requests_total{route="/score",status="200"} 1"#,
        r#"mlscore_requests_total{route="/score",status="400"} 1"#,
        r#"mlscore_requests_total{route="/invocations",status="200"} 1"#,
        r#"mlscore_requests_total{route="/invocations",status="400"} 2"#,
        &format!("mlscore_rows_total {}", 2 * rows.len()),
        r#"mlscore_request_duration_seconds_count{route="/score"} 2"#,
    ] {
        assert!(text.lines().any(|l| l == line), "no '{line}' in:\n{text}");
    }
}

#[test]
fn a_request_past_the_timeout_is_answered_504() {
    let server = start(&models().join("sklearn/random_forest_pickle/model"), &["--timeout", "1"]);
    // 400,000 rows: parsing and scoring them takes well over a second in a debug build.
    let row = "[0.1, 5.0, 3.0, 1.0, 40.0, 2.0]";
    let body = format!(
        r#"{{"dataframe_split": {{"columns": ["f0","f1","f2","f3","f4","f5"], "data": [{}]}}}}"#,
        vec![row; 400_000].join(",")
    );
    let (status, _, text) = post(&format!("{}/invocations", server.url), "application/json", &body);
    assert_eq!((status, text.as_str()), (504, "Request processing time exceeded limit"));
    // The server still answers.
    assert_eq!(get(&format!("{}/ping", server.url)).0, 200);
}

/// An ONNX model with two outputs (the bundled churn classifier): one record a row for frame
/// inputs, one list an output for tensor inputs (as MLflow's ONNX wrapper answers the latter;
/// for the former MLflow fails on [N, 2] outputs, mlscore answers records).
#[test]
fn serve_answers_a_two_output_onnx_model_by_row_or_by_output() {
    let server = start(&models().join("churn"), &[]);
    let inv = format!("{}/invocations", server.url);
    let example = std::fs::read_to_string(models().join("churn/serving_input_example.json")).unwrap();
    let (status, _, body) = post(&inv, "application/json", &example);
    assert_eq!(status, 200, "{body}");
    let records = json_of(&body)["predictions"].as_array().unwrap().clone();
    let split: Value = json_of(&example)["dataframe_split"].clone();
    assert_eq!(records.len(), split["data"].as_array().unwrap().len());
    for r in &records {
        let p: Vec<f64> = r["probabilities"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert!(r["label"].is_i64() && p.len() == 2 && (p[0] + p[1] - 1.0).abs() < 1e-6, "{r}");
        assert_eq!(r["label"].as_i64().unwrap(), i64::from(p[1] > p[0]), "{r}");
    }
    // The same rows as `inputs` (a dictionary of columns): one list an output.
    let names: Vec<String> =
        split["columns"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    let rows: Vec<Vec<Value>> =
        split["data"].as_array().unwrap().iter().map(|r| r.as_array().unwrap().clone()).collect();
    let (status, _, body) = post(&inv, "application/json", &json!({"inputs": by_column(&names, &rows)}).to_string());
    assert_eq!(status, 200, "{body}");
    let by_output = json_of(&body)["predictions"].clone();
    let labels: Vec<Value> = records.iter().map(|r| r["label"].clone()).collect();
    assert_eq!(by_output["label"], Value::Array(labels));
    assert_eq!(by_output["probabilities"].as_array().unwrap().len(), records.len());
}

/// The soft limit on open files of this process (`/proc/self/limits`), where it can be read.
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Bad input never takes the server down: seeded mutants of every body format (the four JSON
/// payloads and CSV) are answered 200 or 400, never 5xx or a dropped connection; slow clients
/// holding half-sent headers do not stop others from being served; a thousand connections at
/// once are all answered. After each phase an ordinary request is answered as before.
/// `MLSCORE_SERVE_MUTANTS` and `MLSCORE_SERVE_SEED` run a longer or another sample.
#[test]
fn serve_survives_mutated_bodies_slow_clients_and_a_thousand_connections() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    let case = "pipeline_onehot_logreg_skops";
    let server = start(&models().join("sklearn").join(case).join("model"), &[]);
    let inv = format!("{}/invocations", server.url);
    let (names, rows, labels) = case_rows(case);
    let n = rows.len().min(8);
    let (rows, labels) = (&rows[..n], Value::Array(labels[..n].to_vec()));
    let good = json!({"dataframe_split": {"columns": names, "data": rows}}).to_string();
    let answered_as_before = |after: &str| {
        let (status, _, body) = post(&inv, "application/json", &good);
        assert_eq!(status, 200, "after {after}: {body}");
        assert_eq!(json_of(&body)["predictions"], labels, "after {after}");
    };
    answered_as_before("start");

    // Seeded mutants of every payload.
    let records = records_of(&names, rows);
    let csv = csv_of(&names, rows);
    let bodies = [
        ("application/json", good.clone()),
        ("application/json", json!({"dataframe_records": records}).to_string()),
        ("application/json", json!({"inputs": by_column(&names, rows)}).to_string()),
        ("application/json", json!({"instances": records, "params": {}}).to_string()),
        ("text/csv", csv),
    ];
    let mutants: usize = crate::chaos::env_or("MLSCORE_SERVE_MUTANTS", 2_000);
    let mut mutator = Mutator::new(crate::chaos::env_or("MLSCORE_SERVE_SEED", 1));
    let alphabet = br#"{}[]",:0123456789.eE+-nultrfaNI \"#;
    let mut answers = std::collections::BTreeMap::new();
    for i in 0..mutants {
        let (ct, body) = &bodies[i % bodies.len()];
        let mutant = mutator.mutant(body.as_bytes(), alphabet);
        let (status, _, answer) = post_with(&inv, &[("Content-Type", ct)], &mutant);
        assert!(
            status == 200 || status == 400,
            "mutant {i} ({ct}) was answered {status}: {answer}\n{}",
            String::from_utf8_lossy(&mutant)
        );
        *answers.entry(status).or_insert(0usize) += 1;
    }
    assert!(answers.get(&200).is_some_and(|n| *n > 0) && answers.get(&400).is_some_and(|n| *n > 0), "{answers:?}");
    answered_as_before("mutated bodies");

    // Slow clients: connections that send half a request line and headers, then wait.
    let addr = server.url.trim_start_matches("http://").to_string();
    let limit = open_files_limit().unwrap_or(1024);
    let slow: Vec<TcpStream> = (0..(limit / 8).min(500))
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.write_all(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Ty").unwrap();
            s
        })
        .collect();
    let start = Instant::now();
    answered_as_before("slow clients connected");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{} slow clients delayed a request {:?}",
        slow.len(),
        start.elapsed()
    );
    drop(slow);

    // A thousand connections at once (fewer where this process may not open that many files):
    // every request is written first, then every answer read.
    let many = (limit / 4).min(1_000);
    assert!(many >= 200, "this process may open only {limit} files");
    let request = format!(
        "POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{good}",
        good.len()
    );
    let mut conns: Vec<TcpStream> = (0..many)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            s.write_all(request.as_bytes()).unwrap();
            s
        })
        .collect();
    for (i, s) in conns.iter_mut().enumerate() {
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap_or_else(|e| panic!("connection {i} of {many}: {e}"));
        assert!(answer.starts_with("HTTP/1.1 200"), "connection {i} of {many}: {answer}");
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        assert_eq!(json_of(body)["predictions"], labels, "connection {i} of {many}");
    }
    drop(conns);
    answered_as_before("a thousand connections");
}

/// MLflow's own client for its scoring server (`mlflow.pyfunc.scoring_server.client`'s
/// `ScoringServerClient`, what MLflow's tooling uses to talk to `mlflow models serve`), pointed at
/// `mlscore serve`, works unchanged: it waits for `/ping`, reads `/version`, and its `invoke` of a
/// pandas DataFrame returns the labels pyfunc gives.
#[test]
fn mlflows_scoring_server_client_works_against_serve() {
    if !crate::servers::servers_installed("mlflows_scoring_server_client_works_against_serve") {
        return;
    }
    let case = "pipeline_onehot_logreg_skops";
    let dir = models().join("sklearn").join(case);
    let server = start(&dir.join("model"), &[]);
    let port = server.url.rsplit(':').next().unwrap().to_string();
    let script = r#"
import json, sys
import pandas as pd
from mlflow.pyfunc.scoring_server.client import ScoringServerClient
client = ScoringServerClient("127.0.0.1", int(sys.argv[1]))
client.wait_server_ready(timeout=30)
got = client.invoke(pd.read_parquet(sys.argv[2])).get_predictions()
print(json.dumps({"version": client.get_version(), "predictions": got.iloc[:, 0].tolist()}))
"#;
    let out = std::process::Command::new(repo().join("scripts/python-env"))
        .args(["-c", script, &port])
        .arg(dir.join("input.parquet"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let answer = json_of(stdout.lines().last().unwrap_or_default());
    let (_, _, labels) = case_rows(case);
    assert_eq!(answer["predictions"], Value::Array(labels), "{stdout}");
    assert!(answer["version"].as_str().is_some_and(|v| !v.is_empty()), "{stdout}");
}

/// `mlflow models serve` (the pinned MLflow of python/requirements.txt) on 127.0.0.1, in its own
/// process group (MLflow starts uvicorn as a child); the group is stopped when dropped.
struct MlflowServer {
    child: std::process::Child,
    url: String,
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = std::process::Command::new("kill").args(["-TERM", "--", &group]).status();
        let _ = self.child.wait();
    }
}

fn start_mlflow(model: &std::path::Path) -> MlflowServer {
    use std::os::unix::process::CommandExt;
    let venv = std::process::Command::new(repo().join("scripts/python-env")).arg("--path").output().unwrap();
    let venv = std::path::PathBuf::from(String::from_utf8(venv.stdout).unwrap().trim());
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let path = format!("{}:{}", venv.join("bin").display(), std::env::var("PATH").unwrap_or_default());
    let child = std::process::Command::new(venv.join("bin/mlflow"))
        .args(["models", "serve", "--env-manager", "local", "--host", "127.0.0.1", "-p", &port.to_string(), "-m"])
        .arg(model)
        .env("PATH", path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let server = MlflowServer { child, url: format!("http://127.0.0.1:{port}") };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while agent().get(&format!("{}/ping", server.url)).call().map_or(true, |r| r.status().as_u16() != 200) {
        assert!(std::time::Instant::now() < deadline, "mlflow models serve did not answer /ping in 120 s");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    server
}

/// Status, content type (without parameters) and body of a request.
fn answer(method: &str, url: &str, content_type: &str, body: &str) -> (u16, String, String) {
    let no_redirects: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
    let mut r = match method {
        "GET" => no_redirects.get(url).call(),
        _ => no_redirects.post(url).header("Content-Type", content_type).send(body),
    }
    .unwrap();
    let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let ct = ct.split(';').next().unwrap_or_default().trim().to_string();
    (r.status().as_u16(), ct, r.body_mut().read_to_string().unwrap_or_default())
}

/// The serving checklist (../shared/serving.md) sent to `mlflow models serve` and to
/// `mlscore serve`, the same model behind both: every request gets the same status and content
/// type, a scoring answer the same predictions, an error the same `error_code`. Messages are
/// compared by code, not text. Where mlscore deliberately answers otherwise, the case says so.
#[test]
fn serve_and_mlflow_models_serve_answer_the_checklist_alike() {
    if !crate::servers::servers_installed("serve_and_mlflow_models_serve_answer_the_checklist_alike") {
        return;
    }
    let case = "pipeline_onehot_logreg_skops";
    let model = models().join("sklearn").join(case).join("model");
    let ours = start(&model, &[]);
    let theirs = start_mlflow(&model);
    let (names, rows, _) = case_rows(case);
    let records = records_of(&names, &rows);
    let json = "application/json";
    let mut cases: Vec<(&str, &str, &str, String)> = vec![
        ("GET", "/ping", "", String::new()),
        ("GET", "/health", "", String::new()),
        ("GET", "/nope", "", String::new()),
        ("GET", "/invocations", "", String::new()),
        ("POST", "/ping", json, "{}".into()),
        ("POST", "/invocations/", json, "{}".into()),
        ("POST", "/invocations", json, json!({"dataframe_split": {"columns": names, "data": rows}}).to_string()),
        ("POST", "/invocations", "application/json; charset=UTF-8", json!({"dataframe_records": records}).to_string()),
        (
            "POST",
            "/invocations",
            json,
            json!({"dataframe_split": reordered_with_extra(&names, &rows), "params": {"x": 1}}).to_string(),
        ),
        ("POST", "/invocations", json, json!({"inputs": by_column(&names, &rows)}).to_string()),
        ("POST", "/invocations", json, json!({"instances": records, "extra": 5}).to_string()),
        ("POST", "/invocations", "text/csv", csv_of(&names, &rows)),
        ("POST", "/invocations", "text/csv", format!("{}\nforty,1.0,true,lille,pro\n", names.join(","))),
        ("POST", "/invocations", json, json!({"dataframe_split": {"columns": ["age"], "data": [[30]]}}).to_string()),
        (
            "POST",
            "/invocations",
            json,
            json!({"dataframe_split": {"columns": names, "data": [["x", 1.0, true, "lille", "pro"]]}}).to_string(),
        ),
        ("POST", "/invocations", json, "{not json".into()),
        ("POST", "/invocations", json, "[1, 2]".into()),
        ("POST", "/invocations", json, r#"{"columns": ["a"], "data": [[1]]}"#.into()),
        ("POST", "/invocations", json, r#"{"dataframe_split": [1], "inputs": [1]}"#.into()),
        ("POST", "/invocations", json, r#"{"dataframe_split": [[1]]}"#.into()),
        ("POST", "/invocations", json, r#"{"dataframe_records": {"a": 1}}"#.into()),
        ("POST", "/invocations", "text/plain", "{}".into()),
        ("POST", "/invocations", "Application/JSON", "{}".into()),
        ("POST", "/invocations", "application/json; charset=latin-1", "{}".into()),
        ("POST", "/invocations", "application/json; format=pandas-split", "{}".into()),
    ];
    // Deliberate differences: the same status, another answer, and why.
    let differs = [(
        json!({"inputs": rows}).to_string(),
        // A 2-D list against a signature of named columns: MLflow makes a numpy array of the
        // rows and fails converting a string with int() (BAD_REQUEST, "invalid literal for
        // int() with base 10: 'lille'"); mlscore says which named inputs are missing
        // (INVALID_PARAMETER_VALUE, SCHEMA_ENFORCEMENT_FAILED).
        "INVALID_PARAMETER_VALUE",
    )];
    for (body, code) in &differs {
        let (s1, _, b1) = answer("POST", &format!("{}/invocations", theirs.url), json, body);
        let (s2, _, b2) = answer("POST", &format!("{}/invocations", ours.url), json, body);
        assert_eq!((s1, s2), (400, 400), "mlflow: {b1}\nmlscore: {b2}");
        assert_eq!(json_of(&b2)["error_code"], *code, "{b2}");
    }
    cases.retain(|c| !differs.iter().any(|(b, _)| *b == c.3));
    for (method, path, ct, body) in &cases {
        let what = format!("{method} {path} ({ct}) {}", body.chars().take(80).collect::<String>());
        let (s1, ct1, b1) = answer(method, &format!("{}{path}", theirs.url), ct, body);
        let (s2, ct2, b2) = answer(method, &format!("{}{path}", ours.url), ct, body);
        assert_eq!((s2, &ct2), (s1, &ct1), "{what}\nmlflow: {b1}\nmlscore: {b2}");
        if ct1 != "application/json" || b1.trim().is_empty() {
            // Probes answer a bare newline (as JSON); plain-text errors (415) are compared by their
            // first sentence, which says what is wrong (MLflow's goes on with migration advice).
            let first = |b: &str| b.trim().split(". ").next().unwrap_or_default().to_string();
            assert_eq!(first(&b2), first(&b1), "{what}");
            continue;
        }
        let (v1, v2) = (json_of(&b1), json_of(&b2));
        if s1 == 200 && path.starts_with("/invocations") {
            assert_eq!(v2["predictions"], v1["predictions"], "{what}");
        } else if v1.get("error_code").is_some() {
            assert_eq!(v2["error_code"], v1["error_code"], "{what}\nmlflow: {b1}\nmlscore: {b2}");
        } else {
            assert_eq!(v2, v1, "{what}");
        }
    }
}
