//! Delta tables as inputs: tables written by the `deltalake` Python package (appends, a delete,
//! schema evolution, a checkpoint) and two written by Databricks Runtime (deletion vectors, column
//! mapping). mlscore scores exactly the rows a Delta reader sees, at any version.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use arrow::array::Array;
use arrow::compute::{SortOptions, take};
use arrow::record_batch::RecordBatch;

use crate::common::*;
use crate::servers::servers_installed;

/// A fresh copy of a table from `tests/data/delta` (written by Databricks Runtime).
fn shared_table(name: &str, dir: &Path) -> PathBuf {
    let to = dir.join(name);
    copy_tree(&repo().join("tests/data/delta").join(name), &to);
    to
}

/// `tests/python/delta_tables.py` with these arguments.
fn delta_py(args: &[&std::ffi::OsStr]) {
    let out = Command::new(repo().join("scripts/python-env"))
        .arg(repo().join("tests/python/delta_tables.py"))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "delta_tables.py failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// The batch with its rows ordered by `customer_id`.
fn by_id(batch: &RecordBatch) -> RecordBatch {
    let ids = column(batch, "customer_id");
    let order = arrow::compute::sort_to_indices(&ids, Some(SortOptions { descending: false, nulls_first: true }), None)
        .unwrap();
    let columns = batch.columns().iter().map(|c| take(c, &order, None).unwrap()).collect();
    RecordBatch::try_new(batch.schema(), columns).unwrap()
}

fn score(input: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    run(
        mlscore().args(["score", "--model", "models/churn", "--input"]).arg(input).args(extra).arg("--output").arg(out),
        true,
    )
}

#[test]
fn a_delta_tables_versions_score_the_rows_a_delta_reader_sees() {
    if !servers_installed("a_delta_tables_versions_score_the_rows_a_delta_reader_sees") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("table");
    delta_py(&["make".as_ref(), table.as_os_str(), sample().as_os_str()]);
    let versions: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("versions.json")).unwrap()).unwrap();
    for (version, extra) in [
        (3, vec![]),
        (1, vec!["--version-as-of".to_string(), "1".into()]),
        (2, vec!["--version-as-of".to_string(), "2".into()]),
        (0, {
            // The instant version 0 was committed: time travel by timestamp.
            let ms = versions["0"].as_i64().unwrap();
            vec!["--timestamp-as-of".to_string(), rfc3339(ms / 1000, (ms % 1000) as u32)]
        }),
    ] {
        let out = dir.path().join(format!("v{version}.parquet"));
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        score(&table, &out, &extra);
        let expected = dir.path().join(format!("expected-v{version}.parquet"));
        let want_out = dir.path().join(format!("want-v{version}.parquet"));
        score(&expected, &want_out, &[]);
        let (got, want) = (by_id(&read_parquet(&out)), by_id(&read_parquet(&want_out)));
        assert_eq!(got.num_rows(), want.num_rows(), "version {version}: rows");
        assert_eq!(got.schema().fields().len(), want.schema().fields().len(), "version {version}: columns");
        for name in ["customer_id", "prediction"] {
            assert_eq!(&column(&got, name), &column(&want, name), "version {version}: {name}");
        }
    }
    // The latest version has the evolved column; version 1 has all 1000 rows, none deleted yet.
    let latest = read_parquet(&dir.path().join("v3.parquet"));
    assert!(latest.column_by_name("segment").is_some());
    assert_eq!(read_parquet(&dir.path().join("v1.parquet")).num_rows(), 1000);

    // Its Parquet files read as a plain folder would bring back deleted rows: refused, not misread.
    let refused = run(
        mlscore()
            .args(["score", "--model", "models/churn", "--input-format", "parquet", "--input"])
            .arg(&table)
            .arg("--output")
            .arg(dir.path().join("no.parquet")),
        false,
    );
    assert!(stderr(&refused).contains("Delta table") && stderr(&refused).contains("deleted"), "{}", stderr(&refused));
    let missing = run(
        mlscore()
            .args(["score", "--model", "models/churn", "--version-as-of", "17", "--input"])
            .arg(&table)
            .arg("--output")
            .arg(dir.path().join("no.parquet")),
        false,
    );
    assert!(stderr(&missing).contains("17"), "{}", stderr(&missing));
    assert!(!dir.path().join("no.parquet").exists());

    // SQL names a Delta table by its path, or with delta_scan for a version.
    let sql = dir.path().join("sql.parquet");
    run(
        mlscore()
            .args(["sql", "--model", "churn=models/churn", "--output"])
            .arg(&sql)
            .arg(format!(
                "SELECT customer_id, churn() AS p FROM delta_scan('{}', 1) WHERE customer_id IN (SELECT customer_id FROM '{}/')",
                table.display(),
                table.display()
            )),
        true,
    );
    // Version 1's rows that the latest version still has: those the delete kept (version 2's).
    let kept = read_parquet(&dir.path().join("expected-v2.parquet")).num_rows();
    assert_eq!(read_parquet(&sql).num_rows(), kept, "version 1 rows still in the latest version");
}

fn rfc3339(secs: i64, millis: u32) -> String {
    // Civil-from-days (proleptic Gregorian), for a timestamp without a date library.
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[test]
fn tables_written_by_databricks_runtime_read_with_deletion_vectors_and_column_mapping() {
    if !servers_installed("tables_written_by_databricks_runtime_read_with_deletion_vectors_and_column_mapping") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, rows) in [("table-with-dv-small", 8), ("table_with_column_mapping", 5)] {
        let table = shared_table(name, dir.path());
        let ours = dir.path().join(format!("{name}.parquet"));
        run(
            mlscore()
                .args(["sql", "--model", "churn=models/churn", "--output"])
                .arg(&ours)
                .arg(format!("SELECT * FROM '{}/'", table.display())),
            true,
        );
        let theirs = dir.path().join(format!("{name}-deltalake.parquet"));
        delta_py(&["read".as_ref(), table.as_os_str(), theirs.as_os_str()]);
        let (got, want) = (read_parquet(&ours), read_parquet(&theirs));
        assert_eq!(got.num_rows(), rows, "{name}");
        assert_eq!(got.num_rows(), want.num_rows(), "{name}");
        let names = |b: &RecordBatch| b.schema().fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>();
        assert_eq!(names(&got), names(&want), "{name}: logical column names");
        for i in 0..got.num_columns() {
            let (g, w) = (got.column(i), want.column(i));
            let (g, w) = (arrow::compute::cast(g, w.data_type()).unwrap(), w.clone());
            let mut gs: Vec<String> =
                (0..g.len()).map(|r| arrow::util::display::array_value_to_string(&g, r).unwrap()).collect();
            let mut ws: Vec<String> =
                (0..w.len()).map(|r| arrow::util::display::array_value_to_string(&w, r).unwrap()).collect();
            gs.sort();
            ws.sort();
            assert_eq!(gs, ws, "{name}: column {}", names(&got)[i]);
        }
    }

    // A table that needs a reader feature delta-rs cannot honour is refused with its name.
    let table = shared_table("table-with-dv-small", &dir.path().join("widened"));
    let protocol = r#"{"protocol":{"minReaderVersion":3,"minWriterVersion":7,"readerFeatures":["deletionVectors","typeWidening"],"writerFeatures":["deletionVectors","typeWidening"]}}"#;
    std::fs::write(table.join("_delta_log/00000000000000000002.json"), format!("{protocol}\n")).unwrap();
    let out = run(
        mlscore()
            .args(["score", "--model", "models/churn", "--input"])
            .arg(&table)
            .arg("--output")
            .arg(dir.path().join("no.parquet")),
        false,
    );
    let err = stderr(&out);
    assert!(err.to_ascii_lowercase().contains("typewidening") || err.contains("TypeWidening"), "{err}");
}

#[test]
fn scored_rows_commit_as_one_delta_transaction_and_killed_jobs_add_no_version() {
    if !servers_installed("scored_rows_commit_as_one_delta_transaction_and_killed_jobs_add_no_version") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("scored");
    let to_delta = |input: &Path, overwrite: bool| {
        let mut cmd = mlscore();
        cmd.args(["score", "--model", "models/churn", "--output-format", "delta", "--input"])
            .arg(input)
            .arg("--output")
            .arg(&table);
        if overwrite {
            cmd.arg("--overwrite");
        }
        cmd
    };
    run(&mut to_delta(&sample(), false), true);
    let plain = dir.path().join("plain.parquet");
    score(&sample(), &plain, &[]);
    // What a Delta reader (the deltalake package) sees: the rows mlscore scored, nothing else.
    let theirs = dir.path().join("theirs.parquet");
    delta_py(&["read".as_ref(), table.as_os_str(), theirs.as_os_str()]);
    let (got, want) = (by_id(&read_parquet(&theirs)), by_id(&read_parquet(&plain)));
    assert_eq!(got.num_rows(), 1000);
    // Values, not types: Delta names a list's items `element` where Arrow says `item`.
    let text = |a: &dyn Array| -> Vec<String> {
        (0..a.len()).map(|r| arrow::util::display::array_value_to_string(a, r).unwrap()).collect()
    };
    for name in ["customer_id", "prediction"] {
        assert_eq!(text(&column(&got, name)), text(&column(&want, name)), "{name}");
    }
    let versions = |t: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(t.join("_delta_log"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(".json"))
            .collect();
        v.sort();
        v
    };
    assert_eq!(versions(&table).len(), 1);
    // The commit carries the provenance every mlscore output carries.
    let commit = std::fs::read_to_string(table.join("_delta_log/00000000000000000000.json")).unwrap();
    assert!(commit.contains("mlscore.model.uri"), "{commit}");

    // An existing table is replaced only when asked, as a new version.
    let refused = run(&mut to_delta(&sample(), false), false);
    assert!(
        stderr(&refused).contains("--overwrite") && stderr(&refused).contains("new version"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(versions(&table).len(), 1);
    let out = run(&mut to_delta(&sample(), true), true);
    assert_eq!(versions(&table).len(), 2);
    // The summary counts what the commit added.
    let summary = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(summary.contains("wrote 1000 rows") && summary.contains("(1 file"), "{summary}");
    // mlscore reads what it wrote, at either version.
    let back = dir.path().join("back.parquet");
    run(
        mlscore()
            .args(["sql", "--model", "churn=models/churn", "--output"])
            .arg(&back)
            .arg(format!("SELECT count(*) AS n FROM delta_scan('{}', 0)", table.display())),
        true,
    );
    assert_eq!(ints(&column(&read_parquet(&back), "n")), vec![1000]);

    // Jobs killed while writing a new version: the table stays at the version it had.
    let big = crate::chaos::big_table(dir.path(), 1_500_000);
    let mut seed = 7u64;
    let mut interrupted = 0;
    for kill in 0..4 {
        let before = versions(&table);
        let mut child = to_delta(&big, true).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        std::thread::sleep(std::time::Duration::from_millis(300 + (seed >> 33) % 1500));
        let _ = child.kill();
        let status = child.wait().unwrap();
        let after = versions(&table);
        if status.success() {
            assert_eq!(after.len(), before.len() + 1, "kill {kill}: a finished job commits one version");
        } else {
            interrupted += 1;
            assert_eq!(after, before, "kill {kill}: a killed job must not add a version");
        }
        delta_py(&["read".as_ref(), table.as_os_str(), theirs.as_os_str()]);
        let rows = read_parquet(&theirs).num_rows();
        assert!(rows == 1000 || rows == 1_500_000, "kill {kill}: the reader sees {rows} rows");
    }
    assert!(interrupted > 0, "every job finished before its kill: make the table bigger");
}

#[test]
fn delta_tables_on_azure_are_read_and_written_through_the_same_stores() {
    if !servers_installed("delta_tables_on_azure_are_read_and_written_through_the_same_stores") {
        return;
    }
    use crate::servers::{AZURE_ACCOUNT, Azurite, put_dir};
    let az = Azurite::shared();
    az.create_container("delta-lake");
    let store = az.store("delta-lake");
    let dir = tempfile::tempdir().unwrap();
    let dv = shared_table("table-with-dv-small", dir.path());
    put_dir(store.as_ref(), &dv, "tables/dv");
    let url = |p: &str| format!("abfss://delta-lake@{AZURE_ACCOUNT}.dfs.core.windows.net/{p}");
    let sql = |query: String, out: &Path| {
        let mut cmd = mlscore();
        az.env(&mut cmd);
        cmd.args(["sql", "--model", "churn=models/churn", "--output"]).arg(out).arg(query);
        run(&mut cmd, true);
        read_parquet(out)
    };
    // Deletion vectors are read from the store too: 8 of the 10 rows written.
    let n = sql(format!("SELECT count(*) AS n FROM '{}'", url("tables/dv/")), &dir.path().join("n.parquet"));
    assert_eq!(ints(&column(&n, "n")), vec![8]);

    // Scored into a new Delta table on the store, then read back from it.
    let mut cmd = mlscore();
    az.env(&mut cmd);
    cmd.args(["score", "--model", "models/churn", "--output-format", "delta", "--input"])
        .arg(sample())
        .arg("--output")
        .arg(url("tables/scored/"));
    run(&mut cmd, true);
    let back = sql(
        format!("SELECT count(*) AS n, count(prediction) AS p FROM delta_scan('{}', 0)", url("tables/scored/")),
        &dir.path().join("back.parquet"),
    );
    assert_eq!(ints(&column(&back, "n")), vec![1000]);
    assert_eq!(ints(&column(&back, "p")), vec![1000]);
}

/// Hostile Delta logs: seeded mutations (common.rs's `Mutator`, JSON punctuation as its
/// alphabet) of a commit file, a checkpoint and `_last_checkpoint`. Reading
/// the table either gives rows or fails with an error; the process never dies of a panic.
#[test]
fn mutated_delta_logs_are_errors_or_tables_never_panics() {
    if !servers_installed("mutated_delta_logs_are_errors_or_tables_never_panics") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let made = dir.path().join("made");
    std::fs::create_dir_all(&made).unwrap();
    let table = made.join("table");
    delta_py(&["make".as_ref(), table.as_os_str(), sample().as_os_str()]);
    let dv = shared_table("table-with-dv-small", dir.path());
    let rounds = fuzz_rounds(25);
    let mut mutator = Mutator::new(0xbb67_ae85_84ca_a73b);
    let alphabet = b"{}[]\":,0123456789-truefalsnul";
    let mut outcomes = [0usize; 2];
    for (table, file) in [
        (&dv, "_delta_log/00000000000000000001.json"),
        (&table, "_delta_log/00000000000000000003.checkpoint.parquet"),
        (&table, "_delta_log/_last_checkpoint"),
        (&table, "_delta_log/00000000000000000002.json"),
    ] {
        let original = std::fs::read(table.join(file)).unwrap();
        for round in 0..rounds {
            let b = mutator.mutant(&original, alphabet);
            std::fs::write(table.join(file), &b).unwrap();
            let out = mlscore()
                .args(["sql", "-q", "--model", "churn=models/churn", "--output"])
                .arg(dir.path().join(format!("out-{round}.parquet")))
                .arg(format!("SELECT count(*) AS n FROM '{}/'", table.display()))
                .output()
                .unwrap();
            let err = stderr(&out);
            // The process must end on its own with a clean error (never killed by a panic, exit
            // 101). delta-rs's kernel executor panics inside a worker thread on some broken logs
            // (buoyant_kernel_engine's TokioMultiThreadExecutor); that surfaces as this query's
            // error, with the library's panic text printed above it.
            let clean = out.status.success() || err.lines().any(|l| l.starts_with("error: "));
            assert!(
                out.status.code().is_some_and(|c| c != 101) && clean,
                "{file} mutant {round} did not end with an error: {err}"
            );
            outcomes[usize::from(!out.status.success())] += 1;
        }
        std::fs::write(table.join(file), &original).unwrap();
    }
    assert!(outcomes[1] > 0, "no mutant was refused: {outcomes:?}");
}
