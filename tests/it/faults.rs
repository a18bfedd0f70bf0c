//! Storage and server faults: a seeded fault-injecting proxy between mlscore and Azurite, the S3
//! test server and the MLflow tracking server (connections refused or reset, 500/503 answers,
//! stalls, bodies cut at random points in either direction). Each job ends either with the same
//! output as a job without faults, or with an error naming the URL and the retries spent; it
//! never leaves a partial output, and a cut download never enters the model cache.
//!
//! Seeded and reproducible: `MLSCORE_FAULT_ROUNDS` (jobs per route, default 3, which CI runs),
//! `MLSCORE_FAULT_SEED`, `MLSCORE_FAULT_RATE` (the share of connections given a fault, default
//! 0.3). `scripts/chaos` runs a long sample.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::chaos::{Rng, big_table, env_or};
use crate::common::*;
use crate::servers::{Azurite, S3, block_on, get_dir, list, servers_installed};

/// What the proxy does to one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Fault {
    /// Forwarded untouched.
    Pass,
    /// Accepted and closed at once.
    Refuse,
    /// The request is read and answered with this status, no body.
    Status(u16),
    /// Forwarded after this many milliseconds of silence.
    Stall(u64),
    /// Both ways closed once this many bytes came from the server (a body cut short).
    CutDown(u64),
    /// Both ways closed once this many bytes came from the client (an upload cut short).
    CutUp(u64),
}

/// A TCP proxy to a server on 127.0.0.1 that gives a seeded share of its connections a fault.
pub(crate) struct FaultProxy {
    pub(crate) port: u16,
    stop: Arc<AtomicBool>,
    injected: Arc<Mutex<Vec<Fault>>>,
}

impl FaultProxy {
    pub(crate) fn start(target: u16, seed: u64, rate: f64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let injected: Arc<Mutex<Vec<Fault>>> = Arc::default();
        let (flag, log) = (stop.clone(), injected.clone());
        std::thread::spawn(move || {
            let mut rng = Rng(seed | 1);
            while !flag.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                let fault = if rng.unit() >= rate {
                    Fault::Pass
                } else {
                    match rng.next() % 7 {
                        0 => Fault::Refuse,
                        1 => Fault::Status(500),
                        2 => Fault::Status(503),
                        3 => Fault::Stall(200 + rng.next() % 1500),
                        4 | 5 => Fault::CutDown(rng.next() % 300_000),
                        _ => Fault::CutUp(rng.next() % 300_000),
                    }
                };
                log.lock().unwrap().push(fault);
                std::thread::spawn(move || serve(client, target, fault));
            }
        });
        Self { port, stop, injected }
    }

    /// The faults given so far (`Pass` left out), counted by kind.
    pub(crate) fn tally(&self) -> std::collections::BTreeMap<String, usize> {
        let mut t = std::collections::BTreeMap::new();
        for f in self.injected.lock().unwrap().iter().filter(|f| **f != Fault::Pass) {
            let kind = match f {
                Fault::Status(s) => format!("HTTP {s}"),
                Fault::Stall(_) => "stall".into(),
                Fault::CutDown(_) => "body cut".into(),
                Fault::CutUp(_) => "upload cut".into(),
                Fault::Refuse => "refused".into(),
                Fault::Pass => unreachable!(),
            };
            *t.entry(kind).or_insert(0) += 1;
        }
        t
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn serve(mut client: TcpStream, target: u16, fault: Fault) {
    client.set_nonblocking(false).unwrap();
    match fault {
        Fault::Refuse => return,
        Fault::Status(code) => {
            // Read the request's head, answer, and drain what else comes so that closing does
            // not reset the answer away before the client reads it.
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            let _ = client.set_read_timeout(Some(Duration::from_secs(2)));
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                match client.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let reason = if code == 503 { "Service Unavailable" } else { "Internal Server Error" };
            let answer = format!("HTTP/1.1 {code} {reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = client.write_all(answer.as_bytes());
            let _ = client.shutdown(Shutdown::Write);
            let _ = client.set_read_timeout(Some(Duration::from_millis(300)));
            while matches!(client.read(&mut buf), Ok(n) if n > 0) {}
            return;
        }
        Fault::Stall(ms) => std::thread::sleep(Duration::from_millis(ms)),
        _ => {}
    }
    let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else { return };
    let (up_limit, down_limit) = match fault {
        Fault::CutUp(n) => (Some(n), None),
        Fault::CutDown(n) => (None, Some(n)),
        _ => (None, None),
    };
    let both = [client.try_clone().unwrap(), server.try_clone().unwrap()];
    let closer = Arc::new(both);
    let pumps = [(client.try_clone().unwrap(), server.try_clone().unwrap(), up_limit), (server, client, down_limit)]
        .map(|(from, to, limit)| {
            let closer = closer.clone();
            std::thread::spawn(move || pump(from, to, limit, &closer))
        });
    for p in pumps {
        let _ = p.join();
    }
}

/// Copies `from` to `to`; past `limit` bytes, closes both connections (both ways).
fn pump(mut from: TcpStream, mut to: TcpStream, limit: Option<u64>, both: &[TcpStream; 2]) {
    let mut buf = [0u8; 16384];
    let mut sent = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let allowed = limit.map_or(n as u64, |l| (l.saturating_sub(sent)).min(n as u64)) as usize;
        if to.write_all(&buf[..allowed]).is_err() {
            break;
        }
        sent += allowed as u64;
        if allowed < n {
            for s in both {
                let _ = s.shutdown(Shutdown::Both);
            }
            return;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Runs `cmd`; on failure, checks that its error names `url` (a prefix of the failed request's
/// URL) and says what was retried. Returns whether the job succeeded.
fn job(cmd: &mut Command, names: &[&str], what: &str, proxy: &FaultProxy) -> bool {
    let before = proxy.injected.lock().unwrap().len();
    let out = cmd.output().unwrap();
    let what = &format!("{what} (connections: {:?})", &proxy.injected.lock().unwrap()[before..]);
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{what}: {err}");
    if out.status.success() {
        return true;
    }
    assert!(names.iter().any(|n| err.contains(n)), "{what}: the error names none of {names:?}:\n{err}");
    let said_retries = ["retries", "retried", "attempts", "run again"].iter().any(|w| err.contains(w));
    assert!(said_retries, "{what}: the error does not say what was retried:\n{err}");
    false
}

/// Rows of two outputs, equal.
fn same_rows(got: &Path, want: &Path, what: &str) {
    let (got, want) = (read_parquet(got), read_parquet(want));
    assert_eq!(got.num_rows(), want.num_rows(), "{what}");
    assert_eq!(got, want, "{what}: the output differs from the one scored without faults");
}

/// Scores the table at `url` (read through `proxy`, which `cmd`'s environment points at) into the
/// local file `out`: the fault-free output, or a named error and no file. Returns whether it
/// completed.
fn read_through(mut cmd: Command, url: &str, out: &Path, reference: &Path, round: usize, proxy: &FaultProxy) -> bool {
    let what = format!("round {round}, reading {url}");
    let proxied = format!("127.0.0.1:{}", proxy.port);
    cmd.args(["score", "-q", "--model", "models/churn", "--input", url, "--output"]).arg(out);
    let ok = job(&mut cmd, &[url.trim_end_matches('/'), &proxied], &what, proxy);
    if ok {
        same_rows(out, reference, &what);
    } else {
        assert!(!out.exists(), "{what}: a failed job left its output");
    }
    ok
}

/// What a fault test injected and how its jobs ended, printed at the end (seen with --nocapture).
#[derive(Default)]
struct Figures {
    faults: std::collections::BTreeMap<String, usize>,
    jobs: std::collections::BTreeMap<String, usize>,
}

impl Figures {
    fn job(&mut self, kind: &str, ok: bool) {
        *self.jobs.entry(format!("{kind}: {}", if ok { "complete" } else { "named error" })).or_insert(0) += 1;
    }

    /// Counts what `proxy` injected over its round.
    fn round(&mut self, proxy: &FaultProxy) {
        for (k, v) in proxy.tally() {
            *self.faults.entry(k).or_insert(0) += v;
        }
    }

    fn finish(self, server: &str) {
        let (faults, jobs) = (&self.faults, &self.jobs);
        let _ = std::io::Write::write_fmt(
            &mut std::io::stderr(),
            format_args!("{server} faults: {faults:?}; jobs: {jobs:?}\n"),
        );
        assert!(faults.values().sum::<usize>() > 0, "no fault was injected");
    }
}

/// The seed, the fault-free table for the storage tests (30,000 rows in two files) and its
/// output scored without faults.
fn storage_case(dir: &Path, salt: u64) -> (u64, PathBuf, PathBuf) {
    let seed = env_or::<u64>("MLSCORE_FAULT_SEED", 20261130) ^ salt;
    let input = big_table(dir, 30_000);
    let reference = dir.join("reference.parquet");
    run(
        mlscore()
            .args(["score", "-q", "--model", "models/churn", "--input"])
            .arg(&input)
            .arg("--output")
            .arg(&reference),
        true,
    );
    (seed, input, reference)
}

/// The proxy of one round: its own seed, the configured fault rate.
fn round_proxy(target: u16, seed: u64, round: usize) -> FaultProxy {
    FaultProxy::start(target, seed.wrapping_add(round as u64 * 7919), rate())
}

fn rate() -> f64 {
    env_or("MLSCORE_FAULT_RATE", 0.3)
}

/// Scores a table through a faulty proxy to Azurite and from it: uploads (a directory of parts,
/// one file) and downloads (an input read back). Every job's output equals the fault-free one, or
/// the job failed naming the URL and nothing is visible under its target.
#[test]
fn jobs_through_faulty_azure_storage_end_complete_or_with_a_named_error() {
    if !servers_installed("jobs_through_faulty_azure_storage_end_complete_or_with_a_named_error") {
        return;
    }
    let rounds: usize = env_or("MLSCORE_FAULT_ROUNDS", 3);
    let dir = tempfile::tempdir().unwrap();
    let (seed, input, reference) = storage_case(dir.path(), 0);
    let az = Azurite::shared();
    az.create_container("faults");
    let store = az.store("faults");
    // The input on Azure for the reading jobs.
    crate::servers::put_dir(store.as_ref(), &input, "input");
    let mut figures = Figures::default();
    for round in 0..rounds {
        let proxy = round_proxy(az.port, seed, round);
        let proxied = format!("127.0.0.1:{}", proxy.port);
        for (name, target) in [("dir", "az://faults/out-dir/"), ("file", "az://faults/out-file/out.parquet")] {
            let prefix = target.trim_start_matches("az://faults/").split('/').next().unwrap().to_string();
            for n in list(store.as_ref(), &prefix) {
                block_on(object_store::ObjectStoreExt::delete(store.as_ref(), &format!("{prefix}/{n}").into()))
                    .unwrap();
            }
            let what = format!("round {round}, upload to {target}");
            let mut cmd = mlscore();
            Azurite::env_via(&mut cmd, proxy.port);
            cmd.args(["score", "-q", "--model", "models/churn", "--input"]).arg(&input).args(["--output", target]);
            let ok = job(&mut cmd, &[target, &proxied], &what, &proxy);
            let names = list(store.as_ref(), &prefix);
            if ok {
                let got = tempfile::tempdir().unwrap();
                get_dir(store.as_ref(), &prefix, got.path());
                if name == "dir" {
                    assert!(names.contains(&"_SUCCESS".to_string()), "{what}: {names:?}");
                }
                same_rows(got.path(), &reference, &what);
            } else {
                assert!(
                    names.is_empty() || (name == "dir" && !names.contains(&"_SUCCESS".to_string())),
                    "{what}: a failed job left {names:?} under its target"
                );
            }
            figures.job(&format!("upload {name}"), ok);
        }
        let mut cmd = mlscore();
        Azurite::env_via(&mut cmd, proxy.port);
        let ok = read_through(
            cmd,
            "az://faults/input/",
            &dir.path().join(format!("read-{round}.parquet")),
            &reference,
            round,
            &proxy,
        );
        figures.job("read", ok);
        figures.round(&proxy);
    }
    figures.finish("azure");
}

/// Scores a table on the S3 test server through a faulty proxy: reading an input directory and
/// writing an output directory. Same promises as on Azure.
#[test]
fn jobs_through_faulty_s3_storage_end_complete_or_with_a_named_error() {
    if !servers_installed("jobs_through_faulty_s3_storage_end_complete_or_with_a_named_error") {
        return;
    }
    let rounds: usize = env_or("MLSCORE_FAULT_ROUNDS", 3);
    let dir = tempfile::tempdir().unwrap();
    let (seed, input, reference) = storage_case(dir.path(), 0x53);
    let s3 = S3::shared();
    let bucket = s3.root.join("faults");
    std::fs::create_dir_all(&bucket).unwrap();
    copy_tree(&input, &bucket.join("input"));
    let mut figures = Figures::default();
    for round in 0..rounds {
        let proxy = round_proxy(s3.port, seed, round);
        let proxied = format!("127.0.0.1:{}", proxy.port);
        let command = || {
            let mut cmd = mlscore();
            s3.env(&mut cmd, crate::servers::S3_SECRET);
            cmd.env("AWS_ENDPOINT_URL", format!("http://{proxied}"));
            cmd
        };
        let target = bucket.join("out");
        let _ = std::fs::remove_dir_all(&target);
        let what = format!("round {round}, upload to s3://faults/out/");
        let mut cmd = command();
        cmd.args(["score", "-q", "--model", "models/churn", "--input"])
            .arg(&input)
            .args(["--output", "s3://faults/out/"]);
        let ok = job(&mut cmd, &["s3://faults/out", &proxied], &what, &proxy);
        let names: Vec<String> = std::fs::read_dir(&target)
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        if ok {
            assert!(names.contains(&"_SUCCESS".to_string()), "{what}: {names:?}");
            same_rows(&target, &reference, &what);
        } else {
            assert!(!names.contains(&"_SUCCESS".to_string()), "{what}: a failed job committed {names:?}");
        }
        figures.job("upload", ok);
        let ok = read_through(
            command(),
            "s3://faults/input/",
            &dir.path().join(format!("read-{round}.parquet")),
            &reference,
            round,
            &proxy,
        );
        figures.job("read", ok);
        figures.round(&proxy);
    }
    figures.finish("s3");
}

/// Downloads a registered model from the MLflow tracking server through a faulty proxy into a
/// fresh cache. The job scores like the fault-free one or fails naming the server; either way,
/// the cache it leaves serves the next job (against the server directly) the right model.
#[test]
fn model_downloads_through_a_faulty_tracking_server_never_cache_a_cut_model() {
    if !servers_installed("model_downloads_through_a_faulty_tracking_server_never_cache_a_cut_model") {
        return;
    }
    let rounds: usize = env_or("MLSCORE_FAULT_ROUNDS", 3);
    let seed: u64 = env_or("MLSCORE_FAULT_SEED", 20261130) ^ 0x4d4c;
    let server = crate::rest::server();
    let port: u16 = server.url.rsplit(':').next().unwrap().trim_end_matches('/').parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let score = |cache: &Path, uri: &str, out: &Path| {
        let mut cmd = mlscore();
        cmd.env("MLFLOW_TRACKING_URI", uri).arg("--cache-dir").arg(cache);
        cmd.args(["score", "-q", "--model", "models:/churn_remote/1", "--input"])
            .arg(sample())
            .arg("--output")
            .arg(out);
        cmd
    };
    let reference = dir.path().join("reference.parquet");
    run(&mut score(&dir.path().join("cache-ref"), &server.url, &reference), true);
    let mut figures = Figures::default();
    for round in 0..rounds {
        let proxy = round_proxy(port, seed, round);
        let proxied = format!("http://127.0.0.1:{}", proxy.port);
        let cache = dir.path().join(format!("cache-{round}"));
        let out = dir.path().join(format!("out-{round}.parquet"));
        let what = format!("round {round}, models:/churn_remote/1 through {proxied}");
        let ok = job(&mut score(&cache, &proxied, &out), &[&proxied], &what, &proxy);
        if ok {
            same_rows(&out, &reference, &what);
        } else {
            assert!(!out.exists(), "{what}: a failed job left its output");
        }
        // Whatever the faulty job cached must be the whole model.
        let again = dir.path().join(format!("again-{round}.parquet"));
        run(&mut score(&cache, &server.url, &again), true);
        same_rows(&again, &reference, &format!("{what}, then scored from its cache"));
        figures.job("download", ok);
        figures.round(&proxy);
    }
    figures.finish("tracking server");
}
