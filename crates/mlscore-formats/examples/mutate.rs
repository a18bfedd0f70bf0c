//! A seeded mutation loop over one model file, fast enough for millions of mutants (driven by
//! `scripts/fuzz-models`): the model directory is copied once, its `FILE` is replaced by a
//! mutant (bits flipped, bytes replaced, the file cut, spans repeated or dropped, 8-byte integers
//! overwritten with edge values), loaded with the front end its format needs and scored on a
//! batch made from its signature (numbers, booleans, strings), once without NaNs and once with. Every mutant must load
//! and score or be an error; a panic is reported with the mutant kept, and the exit code is 1.
//!
//!     cargo run --release --example mutate -p mlscore-formats --no-default-features --features gbdt,sklearn -- \
//!         MODEL_DIR FILE ROUNDS SEED
//!
//! Prints one JSON line: mutants, scored, errors, panics.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType as ArrowType, Field, Schema as ArrowSchema};
use mlscore_core::{NullPolicy, predict_batch};
use mlscore_mlflow::MlflowModel;
use mlscore_mlflow::signature::{ColType, DataType, Schema};

struct Rng(u64);

impl Rng {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// A batch of `rows` rows with the columns the model's signature names.
fn batch(
    model: &MlflowModel,
    rng: &mut Rng,
    rows: usize,
    nans: bool,
) -> Result<RecordBatch, Box<dyn std::error::Error>> {
    let Some(Schema::Columns(cols)) = model.enforced_signature().and_then(|s| s.inputs.clone()) else {
        return Err("the model has no column signature to make a batch from".into());
    };
    let words = ["lille", "lyon", "paris", "basic", "pro", "team", "brest", ""];
    let (mut fields, mut arrays): (Vec<Field>, Vec<ArrayRef>) = (Vec::new(), Vec::new());
    for (i, c) in cols.iter().enumerate() {
        let name = c.name.clone().unwrap_or_else(|| format!("c{i}"));
        let (t, a): (ArrowType, ArrayRef) = match &c.ty {
            ColType::Primitive(DataType::String) => (
                ArrowType::Utf8,
                Arc::new(StringArray::from_iter_values((0..rows).map(|_| words[rng.next(words.len())]))),
            ),
            ColType::Primitive(DataType::Boolean) => {
                (ArrowType::Boolean, Arc::new(BooleanArray::from_iter((0..rows).map(|_| Some(rng.next(2) == 1)))))
            }
            ColType::Primitive(DataType::Long | DataType::Integer) => {
                (ArrowType::Int64, Arc::new(Int64Array::from_iter_values((0..rows).map(|_| rng.next(100) as i64 - 10))))
            }
            _ => (
                ArrowType::Float64,
                Arc::new(Float64Array::from_iter_values((0..rows).map(|_| match rng.next(10) {
                    0 if nans => f64::NAN,
                    1 => 0.0,
                    _ => (rng.next(20_000) as f64 - 10_000.0) / 1000.0,
                }))),
            ),
        };
        fields.push(Field::new(name, t, true));
        arrays.push(a);
    }
    Ok(RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), arrays)?)
}

fn mutate(original: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = original.to_vec();
    for _ in 0..1 + rng.next(4) {
        if b.is_empty() {
            break;
        }
        let at = rng.next(b.len());
        match rng.next(6) {
            0 => b[at] ^= 1 << rng.next(8),
            1 => b[at] = b"\x00\x01\xff\x7fKh.(0123456789-.e{}[]"[rng.next(21)],
            2 => b.truncate(at),
            3 => {
                let end = (at + rng.next(64)).min(b.len());
                let span = b[at..end].to_vec();
                b.splice(at..at, span);
            }
            4 => {
                let v = [-1i64, 0, 1, 7, 1 << 40, i64::MAX][rng.next(6)].to_le_bytes();
                let end = (at + 8).min(b.len());
                b[at..end].copy_from_slice(&v[..end - at]);
            }
            _ => {
                let end = (at + rng.next(16)).min(b.len());
                b.drain(at..end);
            }
        }
    }
    b
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, file, rounds, seed] = args.as_slice() else {
        return Err("usage: mutate MODEL_DIR FILE ROUNDS SEED".into());
    };
    let (rounds, seed): (usize, u64) = (rounds.parse()?, seed.parse()?);
    let mut rng = Rng(seed | 1);
    let work = std::env::temp_dir().join(format!("mlscore-mutate-{}-{seed}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    for entry in std::fs::read_dir(dir)? {
        let p = entry?.path();
        if p.is_file() {
            std::fs::copy(&p, work.join(p.file_name().unwrap_or_default()))?;
        }
    }
    let original = std::fs::read(work.join(file))?;
    let original_model = MlflowModel::load(work.to_str().unwrap_or_default())?;
    let inputs = [batch(&original_model, &mut rng, 64, false)?, batch(&original_model, &mut rng, 64, true)?];
    // Panics are counted and reported here, not printed by the default hook a million times.
    std::panic::set_hook(Box::new(|_| {}));
    let (mut scored, mut errors, mut panics) = (0usize, 0usize, 0usize);
    for round in 0..rounds {
        let bytes = mutate(&original, &mut rng);
        std::fs::write(work.join(file), &bytes)?;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let model = mlscore_formats::from_mlflow(MlflowModel::load(work.to_str().unwrap_or_default())?)?;
            let clean = predict_batch(model.as_ref(), &inputs[0], NullPolicy::Nan).map(|_| ());
            let _ = predict_batch(model.as_ref(), &inputs[1], NullPolicy::Nan);
            clean
        }));
        match result {
            Ok(Ok(())) => scored += 1,
            Ok(Err(_)) => errors += 1,
            Err(_) => {
                panics += 1;
                let kept = std::env::temp_dir().join(format!("mlscore-panic-{seed}-{round}-{file}"));
                std::fs::write(&kept, &bytes)?;
                eprintln!("round {round}: a mutant of {dir}/{file} panicked; kept as {}", kept.display());
            }
        }
    }
    std::fs::remove_dir_all(&work).ok();
    println!(
        "{{\"model\": \"{dir}\", \"mutants\": {rounds}, \"scored\": {scored}, \"errors\": {errors}, \"panics\": {panics}}}"
    );
    if panics > 0 {
        std::process::exit(1);
    }
    Ok(())
}
