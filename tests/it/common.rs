//! Helpers shared by the integration tests: the CLI binary, the bundled models, Parquet I/O.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::{Float32Type, Float64Type, Int64Type};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// The repository root: read when the test runs (cargo sets it), not baked in when it is compiled, so that a
/// test binary reused from a shared target directory by another checkout still looks at its own files.
pub(crate) fn repo() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// `models/` of the repository.
pub(crate) fn models() -> PathBuf {
    repo().join("models")
}

/// The error loading the model at `dir` gives; fails the test when it loads or panics.
pub(crate) fn load_error(dir: &Path) -> String {
    match std::panic::catch_unwind(|| mlscore::load(dir.to_str().unwrap())) {
        Ok(Ok(_)) => panic!("{} loaded", dir.display()),
        Ok(Err(e)) => e.to_string(),
        Err(_) => panic!("loading {} panicked", dir.display()),
    }
}

/// The sample table directory.
pub(crate) fn sample() -> PathBuf {
    models().join("data/customers")
}

/// `models/manifest.json`, written by models/generate.py.
pub(crate) fn manifest() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(models().join("manifest.json")).unwrap()).unwrap()
}

/// The tracking URI of the bundled sqlite store.
pub(crate) fn sqlite_store() -> String {
    format!("sqlite:///{}", models().join("store/mlflow.db").display())
}

/// The `mlscore` binary, built beside this test binary by `cargo test --workspace`.
pub(crate) fn binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join(format!("mlscore{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} is missing: run the tests with `cargo test --workspace` (scripts/test), which builds it",
        bin.display()
    );
    bin
}

/// The CLI with a clean MLflow environment (no tracking URI from the caller's shell).
pub(crate) fn mlscore() -> Command {
    let mut c = Command::new(binary());
    c.env_remove("MLFLOW_TRACKING_URI").env_remove("MLFLOW_REGISTRY_URI").current_dir(repo());
    c
}

/// Runs a command and returns its output; panics with stderr if `expect_ok` disagrees.
pub(crate) fn run(cmd: &mut Command, expect_ok: bool) -> Output {
    let out = cmd.output().unwrap();
    if out.status.success() != expect_ok {
        panic!(
            "{:?} {}:\nstdout:\n{}\nstderr:\n{}",
            cmd,
            if expect_ok { "failed" } else { "unexpectedly succeeded" },
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// stderr as text.
pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every file under `dir` (recursively), with its path relative to `dir`, in name order.
pub(crate) fn files_under(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.strip_prefix(dir).unwrap().to_str().unwrap().to_string(), p));
            }
        }
    }
    out.sort();
    out
}

/// Copies a directory tree.
pub(crate) fn copy_tree(from: &Path, to: &Path) {
    for (rel, path) in files_under(from) {
        let target = to.join(rel);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(path, target).unwrap();
    }
    std::fs::create_dir_all(to).unwrap();
}

/// Reads a Parquet file, or every `.parquet` file of a directory in name order, as one batch.
/// The files of `dir` whose extension is `ext`, in name order.
pub(crate) fn files_with_extension(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}

pub(crate) fn read_parquet(path: &Path) -> RecordBatch {
    let files = if path.is_dir() { files_with_extension(path, "parquet") } else { vec![path.to_path_buf()] };
    let mut batches = Vec::new();
    let mut schema = None;
    for f in files {
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&f).unwrap()).unwrap().build().unwrap();
        schema.get_or_insert(arrow::array::RecordBatchReader::schema(&reader));
        batches.extend(reader.map(Result::unwrap));
    }
    concat_batches(&schema.unwrap(), &batches).unwrap()
}

/// Parquet key-value metadata of a file.
pub(crate) fn parquet_metadata(path: &Path) -> Vec<(String, String)> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap();
    reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| kv.iter().map(|k| (k.key.clone(), k.value.clone().unwrap_or_default())).collect())
        .unwrap_or_default()
}

/// Writes one batch as a Parquet file.
pub(crate) fn write_parquet(path: &Path, batch: &RecordBatch) {
    let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

/// The sample table with `f` applied to it, written to `dir/name`.
pub(crate) fn sample_with(dir: &Path, name: &str, f: impl FnOnce(RecordBatch) -> RecordBatch) -> PathBuf {
    let batch = f(read_parquet(&sample()));
    let path = dir.join(name);
    write_parquet(&path, &batch);
    path
}

/// A column of a batch by name.
pub(crate) fn column(batch: &RecordBatch, name: &str) -> ArrayRef {
    batch
        .column(batch.schema().index_of(name).unwrap_or_else(|_| panic!("no column {name} in {:?}", batch.schema())))
        .clone()
}

/// A batch without one column.
pub(crate) fn without(batch: RecordBatch, name: &str) -> RecordBatch {
    let idx = batch.schema().index_of(name).unwrap();
    let keep: Vec<usize> = (0..batch.num_columns()).filter(|i| *i != idx).collect();
    batch.project(&keep).unwrap()
}

/// A batch with one column replaced.
pub(crate) fn replace(batch: RecordBatch, name: &str, array: ArrayRef) -> RecordBatch {
    let idx = batch.schema().index_of(name).unwrap();
    let mut fields: Vec<arrow::datatypes::Field> = batch.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields[idx] = arrow::datatypes::Field::new(name, array.data_type().clone(), true);
    let mut cols = batch.columns().to_vec();
    cols[idx] = array;
    RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), cols).unwrap()
}

/// Floats of a column (f32 or f64), as f64.
pub(crate) fn floats(a: &dyn Array) -> Vec<f64> {
    match a.data_type() {
        arrow::datatypes::DataType::Float32 => {
            a.as_primitive::<Float32Type>().values().iter().map(|v| f64::from(*v)).collect()
        }
        arrow::datatypes::DataType::Float64 => a.as_primitive::<Float64Type>().values().to_vec(),
        other => panic!("not a float column: {other}"),
    }
}

/// Int64 values of a column.
pub(crate) fn ints(a: &dyn Array) -> Vec<i64> {
    a.as_primitive::<Int64Type>().values().to_vec()
}

/// Row-major values of a list-of-float column.
pub(crate) fn float_rows(a: &dyn Array) -> Vec<Vec<f64>> {
    let l = a.as_list::<i32>();
    (0..l.len()).map(|r| floats(l.value(r).as_ref())).collect()
}

/// Asserts two sequences are equal, reporting the first difference (not both whole sequences).
pub(crate) fn assert_same<T: PartialEq + std::fmt::Debug>(got: &[T], want: &[T], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: {} values, expected {}", got.len(), want.len());
    if let Some(i) = got.iter().zip(want).position(|(g, w)| g != w) {
        let diffs = got.iter().zip(want).filter(|(g, w)| g != w).count();
        panic!("{what}: {diffs} values differ, first at [{i}]: {:?} vs {:?}", got[i], want[i]);
    }
}

/// Asserts `got` equals `want` within `rel` relative tolerance (absolute near zero).
pub(crate) fn assert_close(got: &[f64], want: &[f64], rel: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let tol = rel * w.abs().max(1e-3);
        assert!((g - w).abs() <= tol || (g.is_nan() && w.is_nan()), "{what}[{i}]: {g} vs {w} (tolerance {tol})");
    }
}

/// Compares a scored output's struct/flat prediction column with a model's golden outputs:
/// labels exactly, scores within 1e-5 relative.
pub(crate) fn assert_matches_golden(out: &RecordBatch, prediction: &str, golden_name: &str) {
    let golden = read_parquet(&models().join(format!("golden/{golden_name}.parquet")));
    assert_same(
        &ints(column(out, "customer_id").as_ref()),
        &ints(column(&golden, "customer_id").as_ref()),
        "row order (customer_id)",
    );
    let pred = column(out, prediction);
    for field in golden.schema().fields().iter().filter(|f| f.name() != "customer_id") {
        let want = column(&golden, field.name());
        let got = match pred.data_type() {
            arrow::datatypes::DataType::Struct(_) => pred
                .as_struct()
                .column_by_name(field.name())
                .unwrap_or_else(|| panic!("no field {}", field.name()))
                .clone(),
            _ => pred.clone(),
        };
        match want.data_type() {
            arrow::datatypes::DataType::Int64 => {
                assert_same(&ints(got.as_ref()), &ints(want.as_ref()), &format!("{golden_name}.{}", field.name()))
            }
            arrow::datatypes::DataType::List(_) => {
                let (g, w) = (float_rows(got.as_ref()), float_rows(want.as_ref()));
                assert_eq!(g.len(), w.len());
                for (r, (gr, wr)) in g.iter().zip(&w).enumerate() {
                    assert_close(gr, wr, 1e-5, &format!("{golden_name}.{} row {r}", field.name()));
                }
            }
            _ => assert_close(
                &floats(got.as_ref()),
                &floats(want.as_ref()),
                1e-5,
                &format!("{golden_name}.{}", field.name()),
            ),
        }
    }
}

/// A seeded mutation loop over real model files: for each `(case, file)` of `models/<family>/`,
/// `MLSCORE_FUZZ_ROUNDS` (else `rounds`) mutants of the file (see [`Mutator`]), loaded and scored on the case's
/// `input.parquet` in a copy of its model directory. Panics if any mutant panics; returns how many
/// scored and how many were errors.
/// `MLSCORE_FUZZ_ROUNDS`, else `rounds`: how many mutants a fuzz loop tries per file.
pub(crate) fn fuzz_rounds(rounds: usize) -> usize {
    std::env::var("MLSCORE_FUZZ_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(rounds)
}

/// Seeded mutants of a file: each with 1 to 4 edits (a bit flipped, a byte replaced by one of
/// the alphabet, the file cut, a span repeated or dropped, an 8-byte little-endian integer
/// overwritten with an edge value).
pub(crate) struct Mutator {
    state: u64,
}

impl Mutator {
    pub(crate) fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A number below `n` (xorshift).
    fn next(&mut self, n: usize) -> usize {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        (self.state % n.max(1) as u64) as usize
    }

    pub(crate) fn mutant(&mut self, original: &[u8], alphabet: &[u8]) -> Vec<u8> {
        let mut b = original.to_vec();
        for _ in 0..1 + self.next(4) {
            if b.is_empty() {
                break;
            }
            let at = self.next(b.len());
            match self.next(6) {
                0 => b[at] ^= 1 << self.next(8),
                1 => b[at] = alphabet[self.next(alphabet.len())],
                2 => b.truncate(at),
                3 => {
                    let end = (at + self.next(64)).min(b.len());
                    let span = b[at..end].to_vec();
                    b.splice(at..at, span);
                }
                4 => {
                    let v = [-1i64, 0, 1, 7, 1 << 40, i64::MAX][self.next(6)].to_le_bytes();
                    let end = (at + 8).min(b.len());
                    b[at..end].copy_from_slice(&v[..end - at]);
                }
                _ => {
                    let end = (at + self.next(16)).min(b.len());
                    b.drain(at..end);
                }
            }
        }
        b
    }
}

pub(crate) fn mutation_loop(
    family: &str,
    cases: &[(&str, &str)],
    alphabet: &[u8],
    seed: u64,
    rounds: usize,
) -> [usize; 2] {
    let rounds = fuzz_rounds(rounds);
    let tmp = tempfile::tempdir().unwrap();
    let mut mutator = Mutator::new(seed);
    let mut outcomes = [0usize; 2];
    for (case, file) in cases {
        let src = models().join(family).join(case);
        let input = read_parquet(&src.join("input.parquet"));
        let original = std::fs::read(src.join("model").join(file)).unwrap();
        for round in 0..rounds {
            let b = mutator.mutant(&original, alphabet);
            let dir = tempfile::tempdir_in(tmp.path()).unwrap();
            for entry in std::fs::read_dir(src.join("model")).unwrap() {
                let p = entry.unwrap().path();
                std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
            }
            std::fs::write(dir.path().join(file), &b).unwrap();
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let model = mlscore::load(dir.path().to_str().unwrap())?;
                mlscore::core::predict_batch(model.as_ref(), &input, mlscore::NullPolicy::Nan).map(|_| ())
            }));
            match result {
                Ok(r) => outcomes[usize::from(r.is_err())] += 1,
                Err(_) => {
                    let kept = dir.keep();
                    panic!("{family}/{case} mutant {round} of {file} panicked (kept in {})", kept.display())
                }
            }
        }
    }
    outcomes
}

/// A copy of `models/<family>/<case>/model` in a new directory under `tmp`, with `file` changed by `edit`.
pub(crate) fn edited_model(
    family: &str,
    case: &str,
    file: &str,
    tmp: &Path,
    edit: impl FnOnce(Vec<u8>) -> Vec<u8>,
) -> PathBuf {
    let src = models().join(family).join(case).join("model");
    let dst = tempfile::tempdir_in(tmp).unwrap().keep().join(case);
    std::fs::create_dir_all(&dst).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
    }
    let bytes = std::fs::read(dst.join(file)).unwrap();
    std::fs::write(dst.join(file), edit(bytes)).unwrap();
    dst
}

/// Whether `got` is within `rel` of `want`, value by value (relative to `|want|`, but never to
/// less than `floor`: a value summing to about 0 is a difference of larger ones); NaN equals NaN.
pub(crate) fn close_to(got: &[f64], want: &[f64], rel: f64, floor: f64, what: &str) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{what}: {} values, expected {}", got.len(), want.len()));
    }
    let same =
        |i: usize| (got[i] - want[i]).abs() <= rel * want[i].abs().max(floor) || (got[i].is_nan() && want[i].is_nan());
    let bad: Vec<usize> = (0..got.len()).filter(|&i| !same(i)).collect();
    match bad.first() {
        Some(&i) => Err(format!("{what}: {} values differ, first [{i}]: {} vs {}", bad.len(), got[i], want[i])),
        None => Ok(()),
    }
}

/// A column's rows as lists of floats (one value a row for a primitive column).
pub(crate) fn value_rows(a: &dyn Array) -> Vec<Vec<f64>> {
    match a.data_type() {
        arrow::datatypes::DataType::List(_) => float_rows(a),
        _ => floats(a).into_iter().map(|v| vec![v]).collect(),
    }
}

/// Python's `pickle.dumps` of an object whose `__reduce__` is `(os.system, ("touch <marker>",))`,
/// protocol 4, written out opcode by opcode.
pub(crate) fn shell_pickle(marker: &Path) -> Vec<u8> {
    let cmd = format!("touch {}", marker.display());
    let mut p = b"\x80\x04\x8c\x05posix\x94\x8c\x06system\x94\x93\x94".to_vec();
    p.push(0x8c);
    p.push(cmd.len() as u8);
    p.extend(cmd.as_bytes());
    p.extend(b"\x94\x85\x94R\x94.");
    p
}

/// A column's values as text, whatever its type (labels compared exactly).
pub(crate) fn texts(a: &dyn Array) -> Vec<String> {
    let s = arrow::compute::cast(&arrow::array::make_array(a.to_data()), &arrow::datatypes::DataType::Utf8).unwrap();
    s.as_string::<i32>().iter().map(|v| v.unwrap_or("null").to_string()).collect()
}

/// Labels compared exactly: their type (pyarrow's large or view strings as strings) and values.
pub(crate) fn same_labels(got: &dyn Array, want: &dyn Array) -> Result<(), String> {
    use arrow::datatypes::DataType;
    let t = want.data_type();
    let expected = if matches!(t, DataType::LargeUtf8 | DataType::Utf8View) { &DataType::Utf8 } else { t };
    if got.data_type() != expected {
        return Err(format!("labels are {}, pyfunc gives {t}", got.data_type()));
    }
    let (g, w) = (texts(got), texts(want));
    match (0..w.len()).find(|&i| g[i] != w[i]) {
        Some(i) => Err(format!("label [{i}]: {} vs {}", g[i], w[i])),
        None => Ok(()),
    }
}

/// A model case of `models/<family>/<name>/` scored through the scoring contract: its model,
/// input and golden tables, every output, and the outputs converted to the default result type
/// (what pyfunc returns). Errors carry `err`'s prefix.
pub(crate) struct ScoredCase {
    pub model: std::sync::Arc<dyn mlscore::Scorer>,
    pub input: RecordBatch,
    pub golden: RecordBatch,
    pub outputs: Vec<(String, ArrayRef)>,
    pub pyfunc: ArrayRef,
}

pub(crate) fn score_case(family: &str, name: &str, err: impl Fn(String) -> String) -> Result<ScoredCase, String> {
    let dir = models().join(family).join(name);
    let model = mlscore::load(dir.join("model").to_str().unwrap()).map_err(|e| err(e.to_string()))?;
    let input = read_parquet(&dir.join("input.parquet"));
    let golden = read_parquet(&dir.join("golden.parquet"));
    let outputs = mlscore::core::predict_batch(model.as_ref(), &input, mlscore::NullPolicy::Nan)
        .map_err(|e| err(e.to_string()))?
        .outputs;
    let ty = model.default_result_type().map_err(|e| err(e.to_string()))?;
    let pyfunc = model.convert(&ty, &outputs).map_err(|e| err(e.to_string()))?;
    Ok(ScoredCase { model, input, golden, outputs, pyfunc })
}

/// `bytes` with the first occurrence of `from` replaced by `to` (a model file edited in place).
pub(crate) fn replace_bytes(bytes: Vec<u8>, from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = bytes.windows(from.len()).position(|w| w == from).expect("the bytes are in the file");
    [&bytes[..at], to, &bytes[at + from.len()..]].concat()
}
