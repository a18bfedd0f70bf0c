//! Crash safety: real `mlscore score` and `mlscore sql` jobs killed at random moments (SIGKILL,
//! and SIGTERM and SIGINT, which must clean up themselves) never leave a partial output behind.
//!
//! After every kill the target is either absent or complete: a single file readable with every
//! row, a directory with `_SUCCESS` and every row in its parts. Replacing an existing output
//! (`--overwrite`), the target is the old output or the new one, both complete. SIGTERM and
//! SIGINT leave no temporary files; what SIGKILL leaves is removed by the next job writing there.
//!
//! Seeded and reproducible: `MLSCORE_CHAOS_KILLS` (kills per job kind, default 3, which CI runs)
//! and `MLSCORE_CHAOS_SEED` choose the sample; `MLSCORE_CHAOS_ROWS` the table size (default
//! 60,000 rows). `scripts/chaos` runs the long sample (200 kills per kind).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arrow::compute::concat_batches;

use crate::common::*;

/// xorshift64*: enough randomness for kill times, reproducible from a seed.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

pub(crate) fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The sample table repeated to `rows` rows, as two Parquet files of 8k-row row groups.
pub(crate) fn big_table(dir: &Path, rows: usize) -> PathBuf {
    let sample = read_parquet(&sample());
    let copies: Vec<_> = (0..rows.div_ceil(sample.num_rows())).map(|_| sample.clone()).collect();
    let table = concat_batches(&sample.schema(), &copies).unwrap().slice(0, rows);
    let input = dir.join("input");
    std::fs::create_dir(&input).unwrap();
    let half = rows / 2;
    for (i, (offset, len)) in [(0, half), (half, rows - half)].into_iter().enumerate() {
        let props =
            parquet::file::properties::WriterProperties::builder().set_max_row_group_row_count(Some(8192)).build();
        let file = std::fs::File::create(input.join(format!("part-{i}.parquet"))).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(file, table.schema(), Some(props)).unwrap();
        w.write(&table.slice(offset, len)).unwrap();
        w.close().unwrap();
    }
    input
}

#[derive(Debug, Clone, Copy)]
struct Kind {
    name: &'static str,
    /// The output's name in the scratch directory (a trailing `/` for a directory).
    target: &'static str,
    sql: bool,
    extra: &'static [&'static str],
}

const KINDS: &[Kind] = &[
    Kind { name: "score, one Parquet file, columns copied", target: "out.parquet", sql: false, extra: &[] },
    Kind { name: "score, one Parquet file, re-encoded", target: "out.parquet", sql: false, extra: &["--reencode"] },
    Kind { name: "score, a directory, columns copied", target: "out/", sql: false, extra: &[] },
    Kind { name: "score, a directory, re-encoded", target: "out/", sql: false, extra: &["--reencode"] },
    Kind { name: "score, one CSV file", target: "out.csv", sql: false, extra: &["--result-type", "bigint"] },
    Kind { name: "sql, one Parquet file, sorted", target: "out.parquet", sql: true, extra: &[] },
    Kind { name: "sql, a directory, sorted", target: "out/", sql: true, extra: &[] },
    Kind { name: "sql, one Parquet file, columns copied", target: "out.parquet", sql: true, extra: &["--copy"] },
];

fn command(kind: &Kind, input: &Path, target: &Path, overwrite: bool) -> Command {
    let mut cmd = mlscore();
    if kind.sql {
        cmd.args(["sql", "-q", "--model", "churn=models/churn", "--output"])
            .arg(target)
            .arg(format!("SELECT customer_id, churn() AS p FROM '{}/' ORDER BY customer_id", input.display()));
    } else {
        cmd.args(["score", "-q", "--model", "models/churn", "--input"]).arg(input).arg("--output").arg(target);
    }
    if overwrite {
        cmd.arg("--overwrite");
    }
    if kind.extra != ["--copy"] {
        cmd.args(kind.extra);
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    cmd
}

/// What is in the scratch directory besides the input: the target and any temporary files.
fn leftovers(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".mlscore-tmp-"))
        .collect();
    names.sort();
    names
}

/// Checks the target is absent or complete, with `rows` rows; returns whether it is there.
fn check_target(kind: &Kind, target: &Path, rows: usize, what: &str) -> bool {
    if !target.exists() {
        return false;
    }
    if kind.target.ends_with('/') {
        assert!(
            target.join("_SUCCESS").is_file(),
            "{what}: a directory without _SUCCESS was left at {}",
            target.display()
        );
        assert_eq!(read_parquet(target).num_rows(), rows, "{what}: the directory holds the wrong number of rows");
    } else if kind.target.ends_with(".csv") {
        let text = std::fs::read_to_string(target).unwrap();
        assert_eq!(text.lines().count(), rows + 1, "{what}: a partial CSV file");
        assert!(text.ends_with('\n'), "{what}: a CSV file cut in the middle of a line");
    } else {
        assert_eq!(read_parquet(target).num_rows(), rows, "{what}: the file holds the wrong number of rows");
    }
    true
}

fn remove(target: &Path) {
    if target.is_dir() {
        std::fs::remove_dir_all(target).unwrap();
    } else if target.exists() {
        std::fs::remove_file(target).unwrap();
    }
}

fn signal(pid: u32, name: &str) {
    let status =
        Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).stderr(Stdio::null()).status().unwrap();
    // The job may have finished (and been reaped) just before.
    let _ = status;
}

#[test]
fn killed_jobs_leave_their_target_absent_or_complete() {
    let kills: usize = env_or("MLSCORE_CHAOS_KILLS", 3);
    let seed: u64 = env_or("MLSCORE_CHAOS_SEED", 20261130);
    let rows: usize = env_or("MLSCORE_CHAOS_ROWS", 60_000);
    let dir = tempfile::tempdir().unwrap();
    let input = big_table(dir.path(), rows);
    let mut rng = Rng(seed.max(1));
    let mut tally = std::collections::BTreeMap::<&str, usize>::new();
    for kind in KINDS {
        let scratch = dir.path().join(kind.name.replace([' ', ','], "_"));
        std::fs::create_dir(&scratch).unwrap();
        let target = scratch.join(kind.target);
        // An uninterrupted run: how long the job takes, and the reference it must produce.
        let start = Instant::now();
        let out = command(kind, &input, &target, false).output().unwrap();
        assert!(out.status.success(), "{}: {}", kind.name, String::from_utf8_lossy(&out.stderr));
        let took = start.elapsed();
        assert!(check_target(kind, &target, rows, kind.name));
        for i in 0..kills {
            let overwrite = i % 3 == 2;
            if !overwrite {
                remove(&target);
            }
            // Mostly SIGKILL; every fourth a SIGTERM, every fourth after that a SIGINT.
            let sig = match i % 8 {
                3 => "TERM",
                7 => "INT",
                _ => "KILL",
            };
            let what = format!("{}, kill {i} (SIG{sig}{})", kind.name, if overwrite { ", --overwrite" } else { "" });
            let before = leftovers(&scratch);
            let mut child = command(kind, &input, &target, overwrite).spawn().unwrap();
            let at = took.mul_f64(1.1 * rng.unit());
            let deadline = Instant::now() + at;
            while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
                std::thread::sleep(Duration::from_millis(2));
            }
            signal(child.id(), sig);
            let status = child.wait().unwrap();
            let present = check_target(kind, &target, rows, &what);
            if overwrite {
                // The old output was complete: a killed job leaves it, or its own complete one.
                assert!(present || status.success() || !target.exists(), "{what}");
            }
            if sig != "KILL" && !status.success() {
                let mut stderr = String::new();
                std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
                assert!(stderr.contains("interrupted") || stderr.is_empty(), "{what}: {stderr}");
                let left: Vec<String> = leftovers(&scratch).into_iter().filter(|l| !before.contains(l)).collect();
                assert_eq!(left, Vec::<String>::new(), "{what}: temporary files left behind");
            }
            *tally.entry(if status.success() { "finished before the signal" } else { "killed" }).or_default() += 1;
        }
        // A job that runs to its end removes what the killed ones left.
        remove(&target);
        let out = command(kind, &input, &target, false).output().unwrap();
        assert!(out.status.success(), "{}: {}", kind.name, String::from_utf8_lossy(&out.stderr));
        assert!(check_target(kind, &target, rows, kind.name));
        assert_eq!(leftovers(&scratch), Vec::<String>::new(), "{}: debris of killed jobs was not removed", kind.name);
    }
    let _ = std::io::Write::write_fmt(
        &mut std::io::stderr(),
        format_args!("chaos: {} kinds x {kills} signals, seed {seed}, {rows} rows: {tally:?}\n", KINDS.len()),
    );
}

#[test]
fn a_full_disk_fails_the_job_with_the_file_named_and_no_output() {
    // A file-size limit stands in for a full disk: writes past it fail like ENOSPC's do.
    let dir = tempfile::tempdir().unwrap();
    let input = big_table(dir.path(), 60_000);
    for (target, extra) in
        [("o.parquet", ""), ("o.parquet", "--reencode"), ("d/", ""), ("o.csv", "--result-type bigint")]
    {
        let scratch =
            dir.path().join(format!("out-{}", target.replace(['.', '/'], "_")) + extra.replace(' ', "_").as_str());
        std::fs::create_dir(&scratch).unwrap();
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "ulimit -f 64; exec \"$0\" score -q --model models/churn --input '{}' --output '{}' {extra}",
                input.display(),
                scratch.join(target).display()
            ))
            .arg(binary())
            .current_dir(repo())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{target} {extra}: succeeded past the limit");
        assert_eq!(out.status.code(), Some(1), "{target} {extra}: not an orderly failure: {err}");
        assert!(err.contains("too large") && err.contains(&scratch.display().to_string()), "{target} {extra}: {err}");
        assert!(err.contains("hint: the disk holding the output is full"), "{target} {extra}: {err}");
        let left: Vec<String> =
            std::fs::read_dir(&scratch).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert!(left.is_empty(), "{target} {extra}: left {left:?}");
    }
}

#[test]
fn killed_jobs_writing_to_azure_leave_nothing_visible_before_their_commit() {
    if !crate::servers::servers_installed("killed_jobs_writing_to_azure_leave_nothing_visible_before_their_commit") {
        return;
    }
    use crate::servers::Azurite;
    let az = Azurite::shared();
    az.create_container("chaos");
    kill_jobs_writing_to("Azurite", az.store("chaos"), &|cmd| az.env(cmd), "az://chaos", 0x5eed);
}

#[test]
fn killed_jobs_writing_to_s3_leave_nothing_visible_before_their_commit() {
    if !crate::servers::servers_installed("killed_jobs_writing_to_s3_leave_nothing_visible_before_their_commit") {
        return;
    }
    use crate::servers::{S3, S3_KEY_ID, S3_SECRET};
    let s3 = S3::shared();
    std::fs::create_dir_all(s3.root.join("chaos")).unwrap();
    let store: std::sync::Arc<dyn object_store::ObjectStore> = std::sync::Arc::new(
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(format!("http://127.0.0.1:{}", s3.port))
            .with_access_key_id(S3_KEY_ID)
            .with_secret_access_key(S3_SECRET)
            .with_region("us-east-1")
            .with_bucket_name("chaos")
            .with_allow_http(true)
            .build()
            .unwrap(),
    );
    kill_jobs_writing_to("the S3 test server", store, &|cmd| s3.env(cmd, S3_SECRET), "s3://chaos", 0x53);
}

/// Kills jobs writing a directory (multipart-uploaded parts) and a single file under `base` (a
/// bucket or container that `store` reads, which `env` points the CLI at) at seeded random
/// moments: after each, nothing under the target, or a complete output, is visible.
fn kill_jobs_writing_to(
    server: &str,
    store: std::sync::Arc<dyn object_store::ObjectStore>,
    env: &dyn Fn(&mut Command),
    base: &str,
    salt: u64,
) {
    use crate::servers::{block_on, get_dir, list};
    let kills: usize = env_or("MLSCORE_CHAOS_KILLS", 3);
    let seed: u64 = env_or("MLSCORE_CHAOS_SEED", 20261130);
    let rows: usize = env_or("MLSCORE_CHAOS_ROWS", 60_000);
    let dir = tempfile::tempdir().unwrap();
    let input = big_table(dir.path(), rows);
    let mut rng = Rng(seed ^ salt);
    let mut tally = std::collections::BTreeMap::<&str, usize>::new();
    // (prefix, output URL): a directory of multipart-uploaded parts, and one file uploaded whole.
    for (prefix, url) in [("dir", format!("{base}/dir/")), ("file", format!("{base}/file/out.parquet"))] {
        let url = url.as_str();
        let command = || {
            let mut cmd = mlscore();
            env(&mut cmd);
            cmd.args(["score", "-q", "--model", "models/churn", "--input"]).arg(&input).args(["--output", url]);
            cmd.stdout(Stdio::null()).stderr(Stdio::piped());
            cmd
        };
        let clear = || {
            for name in list(store.as_ref(), prefix) {
                let location = object_store::path::Path::from(format!("{prefix}/{name}"));
                block_on(object_store::ObjectStoreExt::delete(store.as_ref(), &location)).unwrap();
            }
        };
        // Absent, or complete: every row, and for a directory its _SUCCESS marker.
        let check = |what: &str| {
            let names = list(store.as_ref(), prefix);
            if names.is_empty() {
                return false;
            }
            if prefix == "dir" && !names.contains(&"_SUCCESS".to_string()) {
                // Killed while completing its parts: an object store has no atomic commit of
                // several objects, so some may be visible, each complete, without the marker
                // that readers honouring _SUCCESS wait for.
                let got = tempfile::tempdir().unwrap();
                get_dir(store.as_ref(), prefix, got.path());
                for name in &names {
                    assert!(name.starts_with("part-") && name.ends_with(".parquet"), "{what}: {names:?}");
                    read_parquet(&got.path().join(name));
                }
                return false;
            }
            if prefix != "dir" {
                assert_eq!(names, ["out.parquet"], "{what}");
            }
            let got = tempfile::tempdir().unwrap();
            get_dir(store.as_ref(), prefix, got.path());
            let path = if prefix == "dir" { got.path().to_path_buf() } else { got.path().join("out.parquet") };
            assert_eq!(read_parquet(&path).num_rows(), rows, "{what}: an incomplete output is visible");
            true
        };
        clear();
        let start = Instant::now();
        let out = command().output().unwrap();
        assert!(out.status.success(), "{url}: {}", String::from_utf8_lossy(&out.stderr));
        let took = start.elapsed();
        assert!(check(url));
        for i in 0..kills {
            clear();
            let sig = if i % 4 == 3 { "TERM" } else { "KILL" };
            let what = format!("{url}, kill {i} (SIG{sig})");
            let mut child = command().spawn().unwrap();
            let deadline = Instant::now() + took.mul_f64(1.1 * rng.unit());
            while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
                std::thread::sleep(Duration::from_millis(2));
            }
            signal(child.id(), sig);
            let status = child.wait().unwrap();
            let complete = check(&what);
            let marked = list(store.as_ref(), prefix).iter().any(|n| n == "_SUCCESS");
            let outcome = match (
                status.success(),
                complete,
                prefix == "dir" && !marked && !list(store.as_ref(), prefix).is_empty(),
            ) {
                (true, _, _) => "finished before the signal",
                (false, _, true) => "killed while completing parts (no _SUCCESS)",
                (false, true, _) => "killed after its commit",
                (false, false, _) => "killed, nothing visible",
            };
            *tally.entry(outcome).or_default() += 1;
        }
    }
    let _ = std::io::Write::write_fmt(
        &mut std::io::stderr(),
        format_args!("chaos on {server}: 2 kinds x {kills} signals, seed {seed}, {rows} rows: {tally:?}\n"),
    );
}
