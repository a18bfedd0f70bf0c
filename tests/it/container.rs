//! The container image of `mlscore serve` (Dockerfile, scripts/container), run by docker or podman:
//! it answers as `mlscore serve` from the CLI does, with a model baked in and with one fetched at
//! start from an MLflow tracking server, refuses to start without a model, and stops cleanly on
//! SIGTERM. `scripts/container test` builds the image and runs these; elsewhere they are skipped,
//! saying so.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;
use crate::serve::{agent, case_rows, json_of, post_with, start};
use crate::servers::free_port;

/// The engine, the base image (no model in it), the options `run` needs on this machine and the
/// options that built the image (for baking models in the same way).
struct Setup {
    engine: String,
    image: String,
    run_options: Vec<String>,
    build_options: Vec<String>,
}

fn setup(test: &str) -> Option<Setup> {
    let Ok(image) = std::env::var("MLSCORE_CONTAINER_IMAGE") else {
        let _ = std::io::Write::write_fmt(
            &mut std::io::stderr(),
            format_args!("skipping {test}: no image (scripts/container test builds one and runs this)\n"),
        );
        return None;
    };
    let words = |k: &str| std::env::var(k).unwrap_or_default().split_whitespace().map(String::from).collect();
    Some(Setup {
        engine: std::env::var("MLSCORE_CONTAINER_ENGINE").unwrap_or_else(|_| "docker".into()),
        image,
        run_options: words("MLSCORE_CONTAINER_RUN"),
        build_options: words("MLSCORE_CONTAINER_BUILD"),
    })
}

/// A container started in the background; removed when dropped.
struct Container {
    engine: String,
    name: String,
    url: String,
    /// From `run` to the first 200 on /ping.
    ready_after: Duration,
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new(&self.engine).args(["rm", "-f", "-t", "0", &self.name]).output();
    }
}

impl Setup {
    fn engine(&self) -> Command {
        Command::new(&self.engine)
    }

    /// `run -d` with `options` before the image and `args` after it (the server's arguments),
    /// then waits for /ping on `port` of 127.0.0.1.
    fn start(&self, image: &str, options: &[&str], args: &[&str], port: u16) -> Container {
        let name = format!("mlscore-test-{}-{port}", std::process::id());
        let started = Instant::now();
        let out = self
            .engine()
            .args(["run", "-d", "--name", &name])
            .args(&self.run_options)
            .args(options)
            .arg(image)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{} run failed: {}", self.engine, String::from_utf8_lossy(&out.stderr));
        let mut container = Container {
            engine: self.engine.clone(),
            name,
            url: format!("http://127.0.0.1:{port}"),
            ready_after: Duration::ZERO,
        };
        let deadline = started + Duration::from_secs(60);
        loop {
            let up = agent().get(format!("{}/ping", container.url)).call().is_ok_and(|r| r.status() == 200);
            if up {
                container.ready_after = started.elapsed();
                return container;
            }
            if Instant::now() > deadline {
                panic!("the container answered no /ping within 60 s; its log:\n{}", self.logs(&container));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn logs(&self, c: &Container) -> String {
        let out = self.engine().args(["logs", &c.name]).output().unwrap();
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    }

    fn inspect(&self, what: &str, format: &str, name: &str) -> String {
        let out = self.engine().args([what, "inspect", "--format", format, name]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Builds an image with `model` baked in, as a user does (`scripts/container build --model`).
    fn bake(&self, model: &std::path::Path, tag: &str) -> String {
        let out = Command::new(repo().join("scripts/container"))
            .arg("build")
            .args(&self.build_options)
            .arg("--model")
            .arg(model)
            .args(["--tag", tag])
            .env("MLSCORE_CONTAINER_ENGINE", &self.engine)
            .output()
            .unwrap();
        assert!(out.status.success(), "scripts/container build failed:\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// Status, content type and body (JSON where it parses) of a request.
fn exchange(url: &str, content_type: Option<&str>, body: Option<&[u8]>) -> (u16, String, Value) {
    let mut r = match (content_type, body) {
        (Some(ct), Some(b)) => agent().post(url).header("Content-Type", ct).send(b),
        (None, Some(b)) => agent().post(url).send(b),
        (_, None) => agent().get(url).call(),
    }
    .unwrap();
    let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let text = r.body_mut().read_to_string().unwrap();
    (r.status().as_u16(), ct, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn rss_mib(pid: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    kb / 1024.0
}

fn say(line: String) {
    let _ = std::io::Write::write_fmt(&mut std::io::stderr(), format_args!("{line}\n"));
}

#[test]
fn the_image_with_a_model_baked_in_answers_as_the_cli_does_and_stops_on_sigterm() {
    let Some(s) = setup("the_image_with_a_model_baked_in_answers_as_the_cli_does_and_stops_on_sigterm") else {
        return;
    };
    let case = "pipeline_onehot_logreg_skops";
    let model = models().join("sklearn").join(case).join("model");
    let image = s.bake(&model, "mlscore-serve:test-baked");
    let port = free_port();
    let container = s.start(&image, &["-p", &format!("127.0.0.1:{port}:8080")], &[], port);
    let local = start(&model, &[]);

    // The same requests to both: probes, every payload MLflow's clients send, and bad ones.
    let (names, rows, labels) = case_rows(case);
    let split = json!({"dataframe_split": {"columns": names, "data": rows}}).to_string();
    let records: Vec<Value> =
        rows.iter().map(|r| Value::Object(names.iter().cloned().zip(r.iter().cloned()).collect())).collect();
    let records = json!({"dataframe_records": records}).to_string();
    let csv = {
        let cell = |v: &Value| match v {
            Value::Null => String::new(),
            Value::String(t) => t.clone(),
            v => v.to_string(),
        };
        let mut t = names.join(",") + "\n";
        for r in &rows {
            t += &(r.iter().map(cell).collect::<Vec<_>>().join(",") + "\n");
        }
        t
    };
    let parquet = std::fs::read(models().join("sklearn").join(case).join("input.parquet")).unwrap();
    // Path, content type, body (a GET without one).
    type Request<'a> = (&'a str, Option<&'a str>, Option<&'a [u8]>);
    let requests: Vec<Request> = vec![
        ("/ping", None, None),
        ("/health", None, None),
        ("/version", None, None),
        ("/nope", None, None),
        ("/invocations", Some("application/json"), Some(split.as_bytes())),
        ("/invocations", Some("application/json"), Some(records.as_bytes())),
        ("/invocations", Some("text/csv"), Some(csv.as_bytes())),
        ("/invocations", Some("application/vnd.apache.parquet"), Some(&parquet)),
        ("/invocations", Some("application/json"), Some(b"{not json")),
        ("/invocations", Some("application/json"), Some(br#"{"dataframe_split": {"columns": ["x"], "data": [[1]]}}"#)),
        ("/invocations", Some("application/xml"), Some(b"<a/>")),
    ];
    for (path, ct, body) in &requests {
        let inside = exchange(&format!("{}{path}", container.url), *ct, *body);
        let outside = exchange(&format!("{}{path}", local.url), *ct, *body);
        assert_eq!(inside, outside, "{path} ({ct:?}) answered differently by the container");
    }
    // And they are pyfunc's predictions.
    let (status, _, body) =
        post_with(&format!("{}/invocations", container.url), &[("Content-Type", "application/json")], split.as_bytes());
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_of(&body)["predictions"], Value::Array(labels));

    let size_mb: f64 = s.inspect("image", "{{.Size}}", &image).parse::<f64>().unwrap() / 1e6;
    let pid = s.inspect("container", "{{.State.Pid}}", &container.name);
    say(format!(
        "container: image {size_mb:.1} MB, first /ping {} ms after `run`, RSS {:.1} MiB after {} requests",
        container.ready_after.as_millis(),
        rss_mib(&pid),
        requests.len() + 1
    ));

    // SIGTERM (`stop`): in-flight work finishes, the server says so and exits 0, well before the
    // engine's kill timeout.
    let stopping = Instant::now();
    let out = s.engine().args(["stop", "-t", "20", &container.name]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let took = stopping.elapsed();
    assert_eq!(s.inspect("container", "{{.State.ExitCode}}", &container.name), "0", "{}", s.logs(&container));
    assert!(took < Duration::from_secs(10), "stopping took {took:?}");
    assert!(s.logs(&container).contains("mlscore serve: stopped"), "{}", s.logs(&container));
}

#[test]
fn the_image_fetches_a_registered_model_at_start_and_says_what_is_missing_without_one() {
    let Some(s) = setup("the_image_fetches_a_registered_model_at_start_and_says_what_is_missing_without_one") else {
        return;
    };
    // No model baked in and none named: the error names the path and what to pass.
    let out = s.engine().args(["run", "--rm"]).args(&s.run_options).arg(&s.image).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started without a model: {err}");
    assert!(err.contains("/opt/ml/model"), "{err}");

    // A registered alias on an MLflow tracking server, reached by name (localhost: the static
    // binary resolves names without glibc's shared NSS modules) from the host's network.
    let tracking = crate::rest::server().url.replace("127.0.0.1", "localhost");
    let port = free_port();
    let p = port.to_string();
    let container = s.start(
        &s.image,
        &["--network", "host", "-e", &format!("MLFLOW_TRACKING_URI={tracking}")],
        &["--model", "models:/churn_remote@champion", "--host", "127.0.0.1", "--port", &p],
        port,
    );
    let local = start(&models().join("churn"), &[]);
    let part = files_with_extension(&sample(), "parquet").into_iter().next().expect("the sample table has parts");
    let parquet = std::fs::read(part).unwrap();
    let url = |base: &str| format!("{base}/invocations");
    let inside = exchange(&url(&container.url), Some("application/vnd.apache.parquet"), Some(&parquet));
    let outside = exchange(&url(&local.url), Some("application/vnd.apache.parquet"), Some(&parquet));
    assert_eq!(inside.0, 200, "{:?}\n{}", inside.2, s.logs(&container));
    assert_eq!(inside, outside);
    let rows = read_parquet(&files_with_extension(&sample(), "parquet")[0]).num_rows();
    assert_eq!(inside.2["predictions"].as_array().map(Vec::len), Some(rows));
    say(format!("container: registered model fetched and ready {} ms after `run`", container.ready_after.as_millis()));
}
