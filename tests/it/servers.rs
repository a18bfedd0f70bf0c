//! Storage servers the tests start on 127.0.0.1: Azurite (the Azure Storage emulator, from npm)
//! and s3s-fs (an S3 protocol server that checks SigV4, from crates.io), both installed once by
//! `scripts/tools`; and a TCP proxy that cuts a server off in the middle of a job.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use object_store::ObjectStore;
use object_store::azure::{AzureAccessKey, AzureAuthorizer, AzureCredential, MicrosoftAzureBuilder};

use crate::common::repo;

/// Azurite's account and its well-known key.
pub(crate) const AZURE_ACCOUNT: &str = "devstoreaccount1";
pub(crate) const AZURE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Whether the tools this test needs are meant to be there: `scripts/test` installs the storage
/// servers and the Python environment (MLflow, PySpark) and sets `MLSCORE_TEST_SERVERS=1`. Under a
/// plain `cargo test` the tests that need them are skipped, each with one line on stderr saying
/// why (written past the test harness's capture, so that it shows).
pub(crate) fn servers_installed(test: &str) -> bool {
    use std::io::Write;
    if std::env::var_os("MLSCORE_TEST_SERVERS").is_some_and(|v| !v.is_empty()) {
        return true;
    }
    let _ = writeln!(
        std::io::stderr(),
        "skipped {test}: it needs the storage servers, MLflow or PySpark that scripts/test installs (run scripts/test, or set MLSCORE_TEST_SERVERS=1)"
    );
    false
}

/// The path of a tool `scripts/tools` installs (once per machine).
fn tool(name: &str) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _one_at_a_time = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new(repo().join("scripts/tools")).arg(name).stderr(Stdio::inherit()).output().unwrap();
    assert!(out.status.success(), "scripts/tools {name} failed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for_port(port: u16, what: &str, log: &Path) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "{what} did not start on port {port}; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A server process, stopped when this is dropped or when the test process ends: it runs under
/// a shell that kills it once its stdin (held here) closes.
pub(crate) struct Process {
    child: Child,
}

impl Process {
    fn spawn(program: &Path, args: &[String], log: &Path) -> Self {
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#""$0" "$@" & pid=$!; cat >/dev/null; kill $pid 2>/dev/null; wait $pid"#)
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(log).unwrap())
            .stderr(Stdio::from(std::fs::File::options().append(true).open(log).unwrap()))
            .spawn()
            .unwrap();
        Self { child }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// A tool from `scripts/tools` serving on a free port, with a scratch directory of its own
/// (its log is `server.log` there).
struct Server {
    port: u16,
    _process: Process,
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts `tool` with the arguments `args` gives for its port and scratch directory, and
    /// waits until it accepts connections.
    fn start(tool_name: &str, args: impl FnOnce(u16, &Path) -> Vec<String>) -> Self {
        let bin = tool(tool_name);
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = dir.path().join("server.log");
        let process = Process::spawn(&bin, &args(port, dir.path()), &log);
        wait_for_port(port, tool_name, &log);
        Self { port, _process: process, dir }
    }
}

/// A running Azurite blob service.
pub(crate) struct Azurite {
    pub(crate) port: u16,
    _server: Server,
}

impl Azurite {
    pub(crate) fn start() -> Self {
        let server = Server::start("azurite", |port, dir| {
            let (port, data) = (port.to_string(), dir.join("data").display().to_string());
            ["--blobHost", "127.0.0.1", "--blobPort", &port, "--location", &data]
                .into_iter()
                .chain(["--skipApiVersionCheck", "--disableTelemetry", "--loose"])
                .map(String::from)
                .collect()
        });
        Self { port: server.port, _server: server }
    }

    /// The Azurite shared by every test of the run.
    pub(crate) fn shared() -> &'static Self {
        static AZURITE: OnceLock<Azurite> = OnceLock::new();
        AZURITE.get_or_init(Self::start)
    }

    /// The environment mlscore reads to reach this Azurite (object_store's own variables), through
    /// `port` (this server's, or a proxy's in front of it).
    pub(crate) fn env_via(cmd: &mut Command, port: u16) {
        cmd.env("AZURE_STORAGE_USE_EMULATOR", "true")
            .env("AZURITE_BLOB_STORAGE_URL", format!("http://127.0.0.1:{port}"))
            .env("AZURE_STORAGE_ACCOUNT_NAME", AZURE_ACCOUNT)
            .env("MLSCORE_STORE_MAX_RETRIES", "3")
            .env("MLSCORE_STORE_RETRY_TIMEOUT", "20");
    }

    pub(crate) fn env(&self, cmd: &mut Command) {
        Self::env_via(cmd, self.port);
    }

    /// Creates a container (object_store has no call for it): a PUT signed with the account key.
    pub(crate) fn create_container(&self, name: &str) {
        let credential = AzureCredential::AccessKey(AzureAccessKey::try_new(AZURE_KEY).unwrap());
        let url = format!("http://127.0.0.1:{}/{AZURE_ACCOUNT}/{name}?restype=container", self.port);
        let mut request = http::Request::builder()
            .method("PUT")
            .uri(&url)
            .header("content-length", "0")
            .body(object_store::client::HttpRequestBody::empty())
            .unwrap();
        AzureAuthorizer::new(&credential, AZURE_ACCOUNT).authorize(&mut request);
        let (parts, _) = request.into_parts();
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let response = agent.run(http::Request::from_parts(parts, ())).unwrap();
        assert_eq!(response.status().as_u16(), 201, "creating container {name}");
    }

    /// A client of one container, for the tests' own puts and gets.
    pub(crate) fn store(&self, container: &str) -> Arc<dyn ObjectStore> {
        Arc::new(
            MicrosoftAzureBuilder::new()
                .with_account(AZURE_ACCOUNT)
                .with_access_key(AZURE_KEY)
                .with_endpoint(format!("http://127.0.0.1:{}/{AZURE_ACCOUNT}", self.port))
                .with_allow_http(true)
                .with_container_name(container)
                .build()
                .unwrap(),
        )
    }
}

/// A running s3s-fs serving a directory: each subdirectory is a bucket.
pub(crate) struct S3 {
    pub(crate) port: u16,
    pub(crate) root: PathBuf,
    _server: Server,
}

pub(crate) const S3_KEY_ID: &str = "AKIDMLSCORETEST";
pub(crate) const S3_SECRET: &str = "mlscore-test-secret";

impl S3 {
    pub(crate) fn shared() -> &'static Self {
        static S3: OnceLock<S3> = OnceLock::new();
        S3.get_or_init(|| {
            let server = Server::start("s3s-fs", |port, dir| {
                let root = dir.join("root");
                std::fs::create_dir_all(&root).unwrap();
                let (port, root) = (port.to_string(), root.display().to_string());
                ["--host", "127.0.0.1", "--port", &port, "--access-key", S3_KEY_ID, "--secret-key", S3_SECRET, &root]
                    .map(String::from)
                    .to_vec()
            });
            S3 { port: server.port, root: server.dir.path().join("root"), _server: server }
        })
    }

    /// object_store's standard AWS variables for this server.
    pub(crate) fn env(&self, cmd: &mut Command, secret: &str) {
        cmd.env("AWS_ACCESS_KEY_ID", S3_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{}", self.port))
            .env("AWS_ALLOW_HTTP", "true")
            .env("MLSCORE_STORE_MAX_RETRIES", "2")
            .env("MLSCORE_STORE_RETRY_TIMEOUT", "10");
    }
}

/// A TCP proxy to a server on 127.0.0.1 that, once more than `limit` bytes have crossed it in
/// one direction, drops every connection and stops listening: the server seems to die mid-job.
pub(crate) struct CutProxy {
    pub(crate) port: u16,
    cut: Arc<AtomicBool>,
}

/// Which bytes a [`CutProxy`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Sent by the client (uploads).
    Up,
    /// Sent by the server (downloads).
    Down,
}

impl CutProxy {
    pub(crate) fn start(target_port: u16, direction: Direction, limit: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let counted = Arc::new(AtomicU64::new(0));
        let streams: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let flag = cut.clone();
        std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) else { continue };
                streams.lock().unwrap().extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                for (from, to, dir) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap(), Direction::Up),
                    (server, client, Direction::Down),
                ] {
                    let (flag, counted, streams) = (flag.clone(), counted.clone(), streams.clone());
                    std::thread::spawn(move || pump(from, to, dir == direction, limit, &flag, &counted, &streams));
                }
            }
            // The listener is dropped here: new connections are refused.
        });
        Self { port, cut }
    }

    pub(crate) fn was_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }
}

fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    counts: bool,
    limit: u64,
    cut: &AtomicBool,
    counted: &AtomicU64,
    streams: &Mutex<Vec<TcpStream>>,
) {
    let mut buf = [0u8; 8192];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if cut.load(Ordering::SeqCst) {
            break;
        }
        if counts && counted.fetch_add(n as u64, Ordering::SeqCst) + n as u64 > limit {
            cut.store(true, Ordering::SeqCst);
            for s in streams.lock().unwrap().iter() {
                let _ = s.shutdown(Shutdown::Both);
            }
            break;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Runs a future on a runtime of its own (the tests themselves are synchronous).
pub(crate) fn block_on<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(fut)
}

/// Uploads every file under `dir` to `prefix/<relative path>`.
pub(crate) fn put_dir(store: &dyn ObjectStore, dir: &Path, prefix: &str) {
    use object_store::ObjectStoreExt;
    for (rel, path) in crate::common::files_under(dir) {
        let location = object_store::path::Path::from(format!("{prefix}/{rel}"));
        block_on(store.put(&location, std::fs::read(&path).unwrap().into())).unwrap();
    }
}

/// The names under `prefix` (relative to it), sorted.
pub(crate) fn list(store: &dyn ObjectStore, prefix: &str) -> Vec<String> {
    use futures::TryStreamExt;
    let prefix = object_store::path::Path::from(prefix);
    let mut names: Vec<String> = block_on(store.list(Some(&prefix)).try_collect::<Vec<_>>())
        .unwrap()
        .into_iter()
        .map(|m| m.location.as_ref()[prefix.as_ref().len()..].trim_start_matches('/').to_string())
        .collect();
    names.sort();
    names
}

/// Downloads the objects under `prefix` into `dir`.
pub(crate) fn get_dir(store: &dyn ObjectStore, prefix: &str, dir: &Path) {
    use object_store::ObjectStoreExt;
    for name in list(store, prefix) {
        let location = object_store::path::Path::from(format!("{prefix}/{name}"));
        let bytes = block_on(async { store.get(&location).await.unwrap().bytes().await.unwrap() });
        let target = dir.join(&name);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, bytes).unwrap();
    }
}
