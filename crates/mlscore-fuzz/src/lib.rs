//! mlscore's fuzz targets, as plain functions of arbitrary bytes.
//!
//! Every parser that reads a user's files has one: `MLmodel` files (YAML, the signature and
//! input-example JSON inside), model URIs, and the model files of each front end (ONNX protobufs,
//! scikit-learn pickles and skops zips, XGBoost UBJSON/JSON, LightGBM text), loaded and scored on
//! a batch made from the model's signature; the answers of a tracking server while a registered
//! model is resolved, downloaded and loaded; Parquet and CSV inputs, read as the engine reads them
//! and scored through the scoring contract (binding, MLflow's type checks, null policies). A
//! target returns what became of its input; it must never panic, hang or allocate without
//! bound, whatever the bytes.
//!
//! The same functions are driven three ways: by cargo-fuzz (`fuzz/`, coverage-guided libFuzzer,
//! `scripts/fuzz`), by the seeded mutation example (`examples/mutate.rs`, `scripts/fuzz-models`),
//! and by this crate's regression test, which replays the seeds and every input a fuzzer ever
//! crashed on (`fuzz/regressions/<target>/`) in CI.
//!
//! ```
//! use mlscore_fuzz::{Outcome, model_uri};
//! assert_eq!(model_uri(b"models:/churn@champion"), Outcome::Accepted);
//! assert_eq!(model_uri(b"models:/"), Outcome::Refused);
//! ```
#![allow(clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType as ArrowType, Field, Schema as ArrowSchema};
use mlscore_core::{NullPolicy, Scorer, predict_batch};
use mlscore_mlflow::signature::{ColType, DataType, Schema};
use mlscore_mlflow::{MlflowModel, ModelUri};

/// What became of one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Read (and, for models and tables, scored).
    Accepted,
    /// Refused with an error.
    Refused,
}

fn outcome<T, E>(r: Result<T, E>) -> Outcome {
    if r.is_ok() { Outcome::Accepted } else { Outcome::Refused }
}

/// The repository's `models/` directory (the fuzz targets' models and seeds).
pub fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

/// The model-file targets: a fuzz target's name, the model directory it starts from (under
/// `models/`) and the file whose bytes the fuzzer supplies.
pub const MODEL_TARGETS: &[(&str, &str, &str)] = &[
    ("mlmodel", "churn", "MLmodel"),
    ("onnx", "zoo/column_transformer_onehot_random_forest/model", "model.onnx"),
    ("onnx_labels", "zoo/label_encoder/model", "model.onnx"),
    ("pickle", "sklearn/pipeline_onehot_logreg_pickle/model", "model.pkl"),
    ("skops", "sklearn/random_forest_skops/model", "model.skops"),
    ("xgboost", "gbdt/xgb_classifier_multiclass/model", "model.ubj"),
    ("xgboost_json", "gbdt/xgb_binary_logistic_json/model", "model.json"),
    ("lightgbm", "gbdt/lgb_categorical/model", "model.lgb"),
    ("lightgbm_pickle", "gbdt/lgb_classifier_small_pickle/model", "model.pkl"),
    // A scikit-learn pipeline ending with an XGBClassifier: its booster is a UBJSON snapshot
    // inside the pickle.
    ("xgboost_pickle", "sklearn/pipeline_onehot_xgboost_pickle/model", "model.pkl"),
];

/// A model directory copied once to a scratch directory, whose `file` each input replaces.
#[derive(Debug)]
pub struct ModelFiles {
    dir: PathBuf,
    file: String,
    inputs: [RecordBatch; 2],
}

impl ModelFiles {
    /// Copies the model directory `src` and makes two batches from its signature (the second
    /// with NaNs and zeros where numbers go).
    pub fn new(src: &Path, file: &str) -> Result<Self, Box<dyn std::error::Error>> {
        static SCRATCH: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = SCRATCH.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("mlscore-fuzz-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(src)? {
            let p = entry?.path();
            if p.is_file() {
                std::fs::copy(&p, dir.join(p.file_name().unwrap_or_default()))?;
            }
        }
        let model = MlflowModel::load(dir.to_str().unwrap_or_default())?;
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        let inputs = [signature_batch(&model, &mut seed, 16, false)?, signature_batch(&model, &mut seed, 16, true)?];
        Ok(Self { dir, file: file.to_string(), inputs })
    }

    /// The one for a target of [`MODEL_TARGETS`], made the first time that target runs.
    pub fn for_target(target: &str) -> &'static ModelFiles {
        static CASES: [OnceLock<ModelFiles>; MODEL_TARGETS.len()] = [const { OnceLock::new() }; MODEL_TARGETS.len()];
        let i =
            MODEL_TARGETS.iter().position(|(t, ..)| *t == target).unwrap_or_else(|| panic!("no fuzz target {target}"));
        CASES[i].get_or_init(|| {
            let (_, model, file) = MODEL_TARGETS[i];
            ModelFiles::new(&models_dir().join(model), file)
                .unwrap_or_else(|e| panic!("fuzz target {target}: cannot set up models/{model}: {e}"))
        })
    }

    /// The original bytes of the file inputs replace (the target's seed).
    pub fn seed(target: &str) -> std::io::Result<Vec<u8>> {
        let (_, model, file) = MODEL_TARGETS.iter().find(|(t, ..)| *t == target).copied().unwrap_or_default();
        std::fs::read(models_dir().join(model).join(file))
    }

    /// The bytes of the file inputs replace, as copied.
    pub fn original(&self) -> std::io::Result<Vec<u8>> {
        std::fs::read(self.dir.join(&self.file))
    }

    /// Writes `data` as the model's file, loads the model with the front end its format needs
    /// and scores both batches.
    pub fn run(&self, data: &[u8]) -> Outcome {
        if std::fs::write(self.dir.join(&self.file), data).is_err() {
            return Outcome::Refused;
        }
        let loaded = MlflowModel::load(self.dir.to_str().unwrap_or_default())
            .map_err(|e| e.to_string())
            .and_then(|m| mlscore_formats::from_mlflow(m).map_err(|e| e.to_string()));
        let Ok(model) = loaded else { return Outcome::Refused };
        let clean = predict_batch(model.as_ref(), &self.inputs[0], NullPolicy::Nan);
        let _ = predict_batch(model.as_ref(), &self.inputs[1], NullPolicy::Nan);
        outcome(clean)
    }
}

impl Drop for ModelFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A batch of `rows` rows with the columns a model's signature names: strings from a small
/// vocabulary, booleans, integers, and numbers (with NaN and zeros when `nans`).
pub fn signature_batch(
    model: &MlflowModel,
    seed: &mut u64,
    rows: usize,
    nans: bool,
) -> Result<RecordBatch, Box<dyn std::error::Error>> {
    let mut next = |n: usize| {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        (*seed % n.max(1) as u64) as usize
    };
    let Some(Schema::Columns(cols)) = model.enforced_signature().and_then(|s| s.inputs.clone()) else {
        return Err("the model has no column signature to make a batch from".into());
    };
    let words = ["lille", "lyon", "paris", "basic", "pro", "team", "brest", ""];
    let (mut fields, mut arrays): (Vec<Field>, Vec<ArrayRef>) = (Vec::new(), Vec::new());
    for (i, c) in cols.iter().enumerate() {
        let name = c.name.clone().unwrap_or_else(|| format!("c{i}"));
        let (t, a): (ArrowType, ArrayRef) = match &c.ty {
            ColType::Primitive(DataType::String) => {
                (ArrowType::Utf8, Arc::new(StringArray::from_iter_values((0..rows).map(|_| words[next(words.len())]))))
            }
            ColType::Primitive(DataType::Boolean) => {
                (ArrowType::Boolean, Arc::new(BooleanArray::from_iter((0..rows).map(|_| Some(next(2) == 1)))))
            }
            ColType::Primitive(DataType::Integer) => {
                (ArrowType::Int32, Arc::new(Int32Array::from_iter_values((0..rows).map(|_| next(100) as i32 - 10))))
            }
            ColType::Primitive(DataType::Long) => {
                (ArrowType::Int64, Arc::new(Int64Array::from_iter_values((0..rows).map(|_| next(100) as i64 - 10))))
            }
            _ => (
                ArrowType::Float64,
                Arc::new(Float64Array::from_iter_values((0..rows).map(|_| match next(10) {
                    0 if nans => f64::NAN,
                    1 => 0.0,
                    _ => (next(20_000) as f64 - 10_000.0) / 1000.0,
                }))),
            ),
        };
        fields.push(Field::new(name, t, true));
        arrays.push(a);
    }
    Ok(RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), arrays)?)
}

/// A model URI (and, for object store URLs, the store URL) parsed.
pub fn model_uri(data: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(data) else { return Outcome::Refused };
    let parsed = ModelUri::parse(text);
    if let Ok(uri) = &parsed {
        let _ = uri.needs_store();
    }
    if mlscore_mlflow::objects::is_object_url(text) {
        let _ = mlscore_mlflow::objects::parse_url(text).map(|u| mlscore_mlflow::objects::store_key(&u));
    }
    outcome(parsed)
}

/// The models the table targets score: Parquet inputs the churn sample (an ONNX pipeline over
/// integers, numbers and booleans), CSV inputs a scikit-learn pipeline whose signature's types
/// (long, double, boolean, string) are the ones CSV inference gives.
const TABLE_MODELS: [&str; 2] = ["churn", "sklearn/pipeline_onehot_logreg_pickle/model"];

fn table_model(which: usize) -> &'static Arc<dyn Scorer> {
    static MODELS: [OnceLock<Arc<dyn Scorer>>; TABLE_MODELS.len()] = [const { OnceLock::new() }; TABLE_MODELS.len()];
    MODELS[which].get_or_init(|| {
        let m = TABLE_MODELS[which];
        let dir = models_dir().join(m);
        let mlflow = MlflowModel::load(dir.to_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("models/{m} does not load: {e}"));
        mlscore_formats::from_mlflow(mlflow).unwrap_or_else(|e| panic!("models/{m} has no front end: {e}"))
    })
}

/// Scores batches through the scoring contract under each null policy; whether the batches
/// score as MLflow scores them (nulls as NaN) decides the outcome.
fn score_batches(
    model: &Arc<dyn Scorer>,
    batches: impl Iterator<Item = Result<RecordBatch, arrow_schema::ArrowError>>,
) -> Outcome {
    let mut result = Outcome::Accepted;
    for batch in batches.take(64) {
        let Ok(batch) = batch else { return Outcome::Refused };
        if predict_batch(model.as_ref(), &batch, NullPolicy::Nan).is_err() {
            result = Outcome::Refused;
        }
        let _ = predict_batch(model.as_ref(), &batch, NullPolicy::Error);
        let _ = predict_batch(model.as_ref(), &batch, NullPolicy::Null);
    }
    result
}

/// A Parquet file read as the engine reads it (the parquet crate's Arrow reader, 1,024-row
/// batches) and scored by the churn sample model.
pub fn parquet_table(data: &[u8]) -> Outcome {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    // mlscore checks a Parquet file's Thrift first (its footer in the engine, footer and page
    // headers for a request body): the parquet crate can spend hours on a few hostile bytes.
    if mlscore_core::check_parquet_file(data).is_err() {
        return Outcome::Refused;
    }
    let bytes = bytes::Bytes::copy_from_slice(data);
    // mlscore reads under catch_panic (the parquet crate asserts on some damaged pages, arrow's
    // schema decoder on some footers), so a panic while reading is this input's error; one while
    // scoring is a finding.
    let read = mlscore_core::catch_panic(|| {
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).ok()?;
        let reader = builder.with_batch_size(1024).build().ok()?;
        Some(reader.take(64).collect::<Vec<_>>())
    });
    let Ok(Some(batches)) = read else { return Outcome::Refused };
    score_batches(table_model(0), batches.into_iter())
}

/// A CSV file, its schema inferred from the first rows as the engine does, scored by a
/// scikit-learn pipeline.
pub fn csv_table(data: &[u8]) -> Outcome {
    use arrow_csv::reader::{Format, ReaderBuilder};
    let format = Format::default().with_header(true);
    let Ok((schema, _)) = format.infer_schema(std::io::Cursor::new(data), Some(100)) else {
        return Outcome::Refused;
    };
    let reader = ReaderBuilder::new(Arc::new(schema))
        .with_format(format)
        .with_batch_size(1024)
        .build(std::io::Cursor::new(data));
    let Ok(reader) = reader else { return Outcome::Refused };
    let Ok(batches) = mlscore_core::catch_panic(|| reader.take(64).collect::<Vec<_>>()) else {
        return Outcome::Refused;
    };
    score_batches(table_model(1), batches.into_iter())
}

/// Runs the target named `target` on `data`.
pub fn run(target: &str, data: &[u8]) -> Outcome {
    // libFuzzer's Rust driver aborts at every panic, caught or not; mlscore catches the panics of
    // third-party decoders (see `mlscore_core::catch_panic`), so the default hook is put back:
    // a panic that mlscore catches is the input's error, and one it does not still ends the run.
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| drop(std::panic::take_hook()));
    match target {
        "model_uri" => model_uri(data),
        "rest" => rest_responses(data),
        "parquet" => parquet_table(data),
        "csv" => csv_table(data),
        model => ModelFiles::for_target(model).run(data),
    }
}

/// Every target's name.
pub fn targets() -> Vec<&'static str> {
    let mut t: Vec<&str> = MODEL_TARGETS.iter().map(|(t, ..)| *t).collect();
    t.extend(["model_uri", "rest", "parquet", "csv"]);
    t
}

/// The seed inputs of a target: its model file, or for tables the repository's sample inputs,
/// or for URIs a list of real URI forms.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "model_uri" => [
            "models:/churn/3",
            "models:/churn@champion",
            "models:/main.ml.churn/latest",
            "models:/m-0123456789abcdef0123456789abcdef",
            "runs:/0123456789abcdef/model",
            "mlflow-artifacts:/1/abc/artifacts/model",
            "abfss://c@acct.dfs.core.windows.net/models/churn",
            "wasbs://c@acct.blob.core.windows.net/p",
            "s3://bucket/models/churn/",
            "file:///tmp/model",
            "models/churn",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect(),
        "rest" => rest_seeds(),
        "parquet" => files_with_extension(&models_dir().join("data/customers"), "parquet", 4),
        "csv" => std::fs::read(models_dir().join("sklearn/pipeline_onehot_logreg_pickle/input.parquet"))
            .ok()
            .and_then(|p| as_csv(&p))
            .into_iter()
            .collect(),
        model => ModelFiles::seed(model).map(|b| vec![b]).unwrap_or_default(),
    }
}

/// The first rows of a Parquet file as CSV with a header.
fn as_csv(parquet: &[u8]) -> Option<Vec<u8>> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::copy_from_slice(parquet))
        .ok()?
        .with_batch_size(200)
        .build()
        .ok()?;
    let batch = reader.into_iter().next()?.ok()?;
    let mut out = Vec::new();
    arrow_csv::WriterBuilder::new().with_header(true).build(&mut out).write(&batch).ok()?;
    Some(out)
}

/// Up to `max` files ending in `.ext` under `dir`, smallest first.
fn files_with_extension(dir: &Path, ext: &str, max: usize) -> Vec<Vec<u8>> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|e| e == ext) {
                found.push((entry.metadata().map(|m| m.len()).unwrap_or(u64::MAX), p));
            }
        }
    }
    found.sort();
    found.into_iter().take(max).filter_map(|(_, p)| std::fs::read(p).ok()).collect()
}

/// The bodies a fuzz input hands the tracking server, request by request, are separated by this.
pub const BODY_SEPARATOR: &[u8] = b"\n\x1e--\n";

/// A tracking server on 127.0.0.1 that answers the n-th request since [`FakeServer::serve`] with
/// the n-th body it was given (the last one again when they run out; `{}` when none), or, as an
/// oracle, with what a real MLflow server holding `models/churn` as version 1 of `churn` answers.
struct FakeServer {
    url: String,
    state: Arc<std::sync::Mutex<Serving>>,
    /// Held by one input at a time (tests run targets from several threads).
    turn: std::sync::Mutex<()>,
}

#[derive(Default)]
struct Serving {
    bodies: Vec<Vec<u8>>,
    next: usize,
    /// The oracle's answers, recorded (when `oracle` is set).
    oracle: bool,
    recorded: Vec<Vec<u8>>,
}

impl FakeServer {
    fn get() -> &'static FakeServer {
        static SERVER: OnceLock<FakeServer> = OnceLock::new();
        SERVER.get_or_init(|| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port on 127.0.0.1");
            let url = format!("http://{}", listener.local_addr().expect("its address"));
            let state: Arc<std::sync::Mutex<Serving>> = Arc::default();
            let shared = state.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    answer(stream, &shared);
                }
            });
            FakeServer { url, state, turn: std::sync::Mutex::new(()) }
        })
    }

    fn serve(&self, bodies: Vec<Vec<u8>>, oracle: bool) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *s = Serving { bodies, next: 0, oracle, recorded: Vec::new() };
    }
}

/// Reads one request and answers it (`Connection: close`).
fn answer(mut stream: std::net::TcpStream, state: &std::sync::Mutex<Serving>) {
    use std::io::{Read, Write};
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let target = text.split_whitespace().nth(1).unwrap_or("/").to_string();
    let end = text.find("\r\n\r\n").map_or(text.len(), |i| i + 4);
    let length: usize = text
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0);
    let mut have = head.len().saturating_sub(end);
    while have < length.min(1 << 20) {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => have += n,
        }
    }
    let body = {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        if s.oracle {
            let b = oracle(&target);
            s.recorded.push(b.clone());
            b
        } else {
            let i = s.next.min(s.bodies.len().saturating_sub(1));
            s.next += 1;
            s.bodies.get(i).cloned().unwrap_or_else(|| b"{}".to_vec())
        }
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&body));
}

/// What an MLflow server holding `models/churn` as version 1 of `churn` (alias `champion`,
/// logged by run `0a1b`) answers to `target`.
fn oracle(target: &str) -> Vec<u8> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let churn = models_dir().join("churn");
    let source = "mlflow-artifacts:/0/0a1b/artifacts/model";
    let version = format!(
        r#"{{"name": "churn", "version": "1", "source": "{source}", "run_id": "0a1b", "status": "READY", "current_stage": "None"}}"#
    );
    if path.ends_with("/model-versions/get") || path.ends_with("/registered-models/alias") {
        return format!(r#"{{"model_version": {version}}}"#).into_bytes();
    }
    if path.ends_with("/model-versions/search") {
        return format!(r#"{{"model_versions": [{version}]}}"#).into_bytes();
    }
    if path.ends_with("/registered-models/get") {
        return br#"{"registered_model": {"name": "churn", "aliases": [{"alias": "champion", "version": "1"}]}}"#
            .to_vec();
    }
    if path.ends_with("/runs/get") {
        return br#"{"run": {"info": {"run_id": "0a1b", "experiment_id": "0", "artifact_uri": "mlflow-artifacts:/0/0a1b/artifacts"}}}"#.to_vec();
    }
    if path.ends_with("/mlflow-artifacts/artifacts") {
        let dir = query.split('&').find_map(|kv| kv.strip_prefix("path=")).unwrap_or_default().replace("%2F", "/");
        let files: Vec<String> = std::fs::read_dir(&churn)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_file())
            .map(|e| {
                let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                format!(r#"{{"path": "{}", "is_dir": false, "file_size": {size}}}"#, e.file_name().to_string_lossy())
            })
            .collect();
        return if dir.ends_with("artifacts/model") {
            format!(r#"{{"files": [{}]}}"#, files.join(", ")).into_bytes()
        } else {
            b"{}".to_vec()
        };
    }
    if let Some(file) = path.split("/mlflow-artifacts/artifacts/").nth(1) {
        let name = file.rsplit('/').next().unwrap_or_default();
        return std::fs::read(churn.join(name)).unwrap_or_default();
    }
    b"{}".to_vec()
}

/// The URIs the REST target resolves, chosen by the input's length.
const REST_URIS: [&str; 2] = ["models:/churn/1", "models:/churn@champion"];

fn rest_config(server: &FakeServer) -> mlscore_mlflow::StoreConfig {
    static SCRATCH: OnceLock<PathBuf> = OnceLock::new();
    let dir = SCRATCH.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("mlscore-fuzz-{}-rest", std::process::id()));
        let _ = std::fs::create_dir_all(&d);
        d
    });
    let mut config = mlscore_mlflow::StoreConfig::with_tracking_uri(server.url.clone());
    config.base_dir = dir.clone();
    config.cache_dir = dir.join("cache");
    config.refresh = true;
    config
}

/// The answers of a tracking server, fuzzed: `data` is split at [`BODY_SEPARATOR`] into the
/// bodies of the server's answers, request after request, while mlscore resolves a registered
/// model on it, downloads the model's files through its artifact proxy and loads the model.
pub fn rest_responses(data: &[u8]) -> Outcome {
    let server = FakeServer::get();
    let _turn = server.turn.lock().unwrap_or_else(|e| e.into_inner());
    let bodies: Vec<Vec<u8>> = split(data, BODY_SEPARATOR).into_iter().map(<[u8]>::to_vec).collect();
    server.serve(bodies, false);
    let uri = REST_URIS[data.len() % REST_URIS.len()];
    let loaded = MlflowModel::load_with(uri, &rest_config(server))
        .map_err(|e| e.to_string())
        .and_then(|m| mlscore_formats::from_mlflow(m).map_err(|e| e.to_string()));
    outcome(loaded)
}

/// The seeds of the REST target: the oracle's answers to each URI, recorded.
fn rest_seeds() -> Vec<Vec<u8>> {
    let server = FakeServer::get();
    let _turn = server.turn.lock().unwrap_or_else(|e| e.into_inner());
    let mut seeds = Vec::new();
    for (i, uri) in REST_URIS.iter().enumerate() {
        server.serve(Vec::new(), true);
        let loaded = MlflowModel::load_with(uri, &rest_config(server));
        let recorded = std::mem::take(&mut server.state.lock().unwrap_or_else(|e| e.into_inner()).recorded);
        if loaded.is_err() {
            continue;
        }
        let mut seed = recorded.join(BODY_SEPARATOR);
        // The target picks its URI by the input's length: an unused empty body (an odd number
        // of bytes) makes the seed pick this one.
        if seed.len() % REST_URIS.len() != i {
            seed.extend_from_slice(BODY_SEPARATOR);
        }
        seeds.push(seed);
    }
    seeds
}

fn split<'a>(data: &'a [u8], sep: &[u8]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while let Some(i) = rest.windows(sep.len()).position(|w| w == sep) {
        parts.push(&rest[..i]);
        rest = &rest[i + sep.len()..];
    }
    parts.push(rest);
    parts
}
