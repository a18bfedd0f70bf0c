//! CI's share of the fuzzing: every target's seeds are read and scored, every input a fuzzer
//! ever found a panic, hang or runaway allocation with (`fuzz/regressions/<target>/`) runs
//! without one, and a short seeded mutation sample of the URI and table targets (whose long runs
//! are `scripts/fuzz`) finds no panic.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use mlscore_fuzz::{Outcome, run, seeds, targets};

fn regressions(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions").join(target);
    let mut found: Vec<_> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect();
    found.sort();
    found
}

fn no_panic(target: &str, what: &str, data: &[u8]) -> Outcome {
    catch_unwind(AssertUnwindSafe(|| run(target, data)))
        .unwrap_or_else(|_| panic!("fuzz target {target} panicked on {what} ({} bytes)", data.len()))
}

#[test]
fn every_target_reads_its_seeds() {
    for target in targets() {
        let seeds = seeds(target);
        assert!(!seeds.is_empty(), "{target} has no seeds");
        for (i, seed) in seeds.iter().enumerate() {
            assert_eq!(no_panic(target, &format!("seed {i}"), seed), Outcome::Accepted, "{target} seed {i}");
        }
    }
}

#[test]
fn inputs_that_once_crashed_a_target_are_read_or_refused() {
    for target in targets() {
        for (name, data) in regressions(target) {
            no_panic(target, &format!("fuzz/regressions/{target}/{name}"), &data);
        }
    }
}

#[test]
fn mutated_uris_and_tables_never_panic() {
    let rounds: usize = std::env::var("MLSCORE_FUZZ_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(150);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n.max(1) as u64) as usize
    };
    let mut tally = [0usize; 2];
    for target in ["model_uri", "parquet", "csv"] {
        let seeds = seeds(target);
        for round in 0..rounds {
            let mut b = seeds[round % seeds.len()].clone();
            for _ in 0..1 + next(4) {
                if b.is_empty() {
                    break;
                }
                let at = next(b.len());
                match next(5) {
                    0 => b[at] ^= 1 << next(8),
                    1 => b[at] = b"\x00\x01\xff\x7f:/@,\n\"0123456789-.e"[next(20)],
                    2 => b.truncate(at),
                    3 => {
                        let end = (at + next(64)).min(b.len());
                        let span = b[at..end].to_vec();
                        b.splice(at..at, span);
                    }
                    _ => {
                        let v = [-1i64, 0, 1, 1 << 40, i64::MAX][next(5)].to_le_bytes();
                        let end = (at + 8).min(b.len());
                        b[at..end].copy_from_slice(&v[..end - at]);
                    }
                }
            }
            let outcome = no_panic(target, &format!("mutant {round}"), &b);
            tally[usize::from(outcome == Outcome::Refused)] += 1;
        }
    }
    assert!(tally[1] > 0, "no mutant was refused: {tally:?}");
}
