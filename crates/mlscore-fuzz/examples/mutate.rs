//! A seeded mutation loop over one model file, fast enough for millions of mutants (driven by
//! `scripts/fuzz-models`, which runs it over every scikit-learn, XGBoost and LightGBM case in
//! `models/`): the model directory is copied once, its `FILE` replaced by a mutant (bits
//! flipped, bytes replaced, the file cut, spans repeated or dropped, 8-byte integers overwritten
//! with edge values), loaded with the front end its format needs and scored on batches made from
//! its signature ([`mlscore_fuzz::ModelFiles`]). Every mutant must load and score or be an error;
//! a panic is reported with the mutant kept, and the exit code is 1.
//!
//!     cargo run --release --example mutate -p mlscore-fuzz --no-default-features --features gbdt,sklearn -- \
//!         MODEL_DIR FILE ROUNDS SEED
//!
//! Prints one JSON line: mutants, scored, errors, panics.
//!
//! With `--corpus DIR` in place of `ROUNDS SEED`, the mutants are the files of `DIR` instead
//! (made elsewhere, e.g. by `scripts/fuzz-objects`, which mutates the fitted estimators before
//! pickling them), each run the same way.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use mlscore_fuzz::{ModelFiles, Outcome};

struct Rng(u64);

impl Rng {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
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
        return Err("usage: mutate MODEL_DIR FILE (ROUNDS SEED | --corpus DIR)".into());
    };
    // The mutants: made here from a seed, or read from a directory.
    let corpus: Option<Vec<std::path::PathBuf>> = if rounds == "--corpus" {
        let mut files: Vec<_> = std::fs::read_dir(seed)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
        files.sort();
        Some(files)
    } else {
        None
    };
    let (rounds, seed): (usize, u64) = match &corpus {
        Some(files) => (files.len(), 0),
        None => (rounds.parse()?, seed.parse()?),
    };
    let mut rng = Rng(seed | 1);
    let model = ModelFiles::new(std::path::Path::new(dir), file)?;
    let original = model.original()?;
    // Panics are counted and reported here, not printed by the default hook a million times.
    std::panic::set_hook(Box::new(|_| {}));
    let (mut scored, mut errors, mut panics) = (0usize, 0usize, 0usize);
    for round in 0..rounds {
        let bytes = match &corpus {
            Some(files) => std::fs::read(&files[round])?,
            None => mutate(&original, &mut rng),
        };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| model.run(&bytes))) {
            Ok(Outcome::Accepted) => scored += 1,
            Ok(Outcome::Refused) => errors += 1,
            Err(_) => {
                panics += 1;
                let kept = std::env::temp_dir().join(format!("mlscore-panic-{seed}-{round}-{file}"));
                std::fs::write(&kept, &bytes)?;
                eprintln!("round {round}: a mutant of {dir}/{file} panicked; kept as {}", kept.display());
            }
        }
    }
    println!(
        "{{\"model\": \"{dir}\", \"mutants\": {rounds}, \"scored\": {scored}, \"errors\": {errors}, \"panics\": {panics}}}"
    );
    if panics > 0 {
        std::process::exit(1);
    }
    Ok(())
}
