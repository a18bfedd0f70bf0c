//! `mlscore score` from Parquet to Parquet copies the input's column chunks as they are stored
//! and encodes only the prediction; the output equals what re-encoding every column gives, and
//! pyarrow, DuckDB and Spark read it alike.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Decimal128Array, Float64Array, Int32Array, ListArray, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{Field, Int32Type, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{ColumnChunkMetaData, PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::WriterProperties;

use crate::common::*;
use crate::servers::servers_installed;

/// The sample table plus columns of other kinds (nested, timestamp, decimal, nullable strings)
/// that the model does not read, written as three files with their own row group sizes,
/// compressions and page indexes; returns the directory.
fn mixed_table(dir: &Path) -> PathBuf {
    let sample = read_parquet(&sample());
    let n = sample.num_rows();
    let extras: Vec<(Field, ArrayRef)> = vec![
        (
            Field::new("tags", arrow::datatypes::DataType::new_list(arrow::datatypes::DataType::Int32, true), true),
            Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(
                (0..n).map(|i| if i % 7 == 0 { None } else { Some((0..i % 4).map(move |j| Some((i * j) as i32))) }),
            )),
        ),
        (
            Field::new(
                "seen_at",
                arrow::datatypes::DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Arc::new(
                TimestampMicrosecondArray::from_iter(
                    (0..n).map(|i| (i % 11 != 0).then_some(1_700_000_000_000_000 + i as i64)),
                )
                .with_timezone("UTC"),
            ),
        ),
        (
            Field::new("amount", arrow::datatypes::DataType::Decimal128(12, 2), false),
            Arc::new(
                Decimal128Array::from_iter_values((0..n).map(|i| i as i128 * 137))
                    .with_precision_and_scale(12, 2)
                    .unwrap(),
            ),
        ),
        (
            Field::new("note", arrow::datatypes::DataType::Utf8, true),
            Arc::new(StringArray::from_iter((0..n).map(|i| (i % 3 != 0).then(|| format!("note {}", i % 17))))),
        ),
        (
            Field::new("score_before", arrow::datatypes::DataType::Float64, true),
            Arc::new(Float64Array::from_iter((0..n).map(|i| (i % 5 != 0).then_some(i as f64 / 3.0)))),
        ),
        (
            Field::new("rank", arrow::datatypes::DataType::Int32, false),
            Arc::new(Int32Array::from_iter_values(0..n as i32)),
        ),
    ];
    let mut fields: Vec<Field> = sample.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut columns = sample.columns().to_vec();
    for (f, a) in extras {
        fields.push(f);
        columns.push(a);
    }
    let table = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    let input = dir.join("input");
    std::fs::create_dir(&input).unwrap();
    // (rows, row group rows, compression, page index)
    let files = [
        (400, 150, Compression::SNAPPY, true),
        (500, 500, Compression::ZSTD(ZstdLevel::try_new(3).unwrap()), false),
        (100, 33, Compression::UNCOMPRESSED, true),
    ];
    let mut offset = 0;
    for (i, (rows, rg, codec, index)) in files.into_iter().enumerate() {
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(rg))
            .set_compression(codec)
            .set_statistics_enabled(if index {
                parquet::file::properties::EnabledStatistics::Page
            } else {
                parquet::file::properties::EnabledStatistics::Chunk
            })
            .set_offset_index_disabled(!index)
            .set_data_page_row_count_limit(64)
            .build();
        let path = input.join(format!("part-{i}.parquet"));
        let mut w = ArrowWriter::try_new(File::create(&path).unwrap(), table.schema(), Some(props)).unwrap();
        w.write(&table.slice(offset, rows)).unwrap();
        w.close().unwrap();
        offset += rows;
    }
    assert_eq!(offset, n);
    input
}

fn footer(path: &Path) -> ParquetMetaData {
    ParquetMetaDataReader::new()
        .with_page_index_policy(PageIndexPolicy::Optional)
        .parse_and_finish(&File::open(path).unwrap())
        .unwrap()
}

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    files_with_extension(dir, "parquet")
}

/// The stored bytes of a column chunk.
fn chunk_bytes(path: &Path, c: &ColumnChunkMetaData) -> Vec<u8> {
    let (start, len) = c.byte_range();
    let mut f = File::open(path).unwrap();
    f.seek(SeekFrom::Start(start)).unwrap();
    let mut buf = vec![0; len as usize];
    f.read_exact(&mut buf).unwrap();
    buf
}

fn score_dir(input: &Path, output: &Path, extra: &[&str]) -> std::process::Output {
    let mut cmd = mlscore();
    cmd.args(["score", "--model", "models/churn", "--input"]).arg(input).arg("--output").arg(output).args(extra);
    run(&mut cmd, true)
}

const COPIED: &str = "copied as stored";

#[test]
fn parquet_columns_are_copied_as_stored_and_the_output_equals_reencoding() {
    let dir = tempfile::tempdir().unwrap();
    let input = mixed_table(dir.path());
    let copied = dir.path().join("copied.parquet");
    let reencoded = dir.path().join("reencoded.parquet");
    // Small batches on three threads: several batches per row group, scored in parallel.
    let out = score_dir(&input, &copied, &["--partitions", "3", "--batch-rows", "40"]);
    assert!(stderr(&out).contains(&format!("14 input columns {COPIED}")), "{}", stderr(&out));
    let out = score_dir(&input, &reencoded, &["--reencode"]);
    assert!(!stderr(&out).contains(COPIED), "{}", stderr(&out));

    let got = read_parquet(&copied);
    assert_eq!(got, read_parquet(&reencoded), "copying and re-encoding give different tables");
    assert_matches_golden(&got, "prediction", "churn_v2");

    // Row group by row group, column by column: the input's chunks, byte for byte, with their
    // compression, encodings and statistics; then the prediction's leaves.
    let out_meta = footer(&copied);
    let inputs: Vec<(PathBuf, ParquetMetaData)> =
        parquet_files(&input).into_iter().map(|p| (p.clone(), footer(&p))).collect();
    let in_groups: Vec<(&PathBuf, &parquet::file::metadata::RowGroupMetaData)> =
        inputs.iter().flat_map(|(p, m)| m.row_groups().iter().map(move |rg| (p, rg))).collect();
    assert_eq!(out_meta.num_row_groups(), in_groups.len(), "the output's row groups are the input's");
    for (i, (path, rg_in)) in in_groups.iter().enumerate() {
        let rg_out = out_meta.row_group(i);
        assert_eq!(rg_out.num_rows(), rg_in.num_rows(), "row group {i}");
        assert_eq!(rg_out.num_columns(), rg_in.num_columns() + 2, "row group {i}: label and probabilities added");
        for (c_in, c_out) in rg_in.columns().iter().zip(rg_out.columns()) {
            let what = format!("row group {i}, column {}", c_in.column_path());
            assert_eq!(c_out.column_path(), c_in.column_path(), "{what}");
            assert_eq!(c_out.compression(), c_in.compression(), "{what}");
            assert_eq!(c_out.encodings().collect::<Vec<_>>(), c_in.encodings().collect::<Vec<_>>(), "{what}");
            assert_eq!(c_out.statistics(), c_in.statistics(), "{what}");
            assert_eq!(c_out.num_values(), c_in.num_values(), "{what}");
            assert_eq!(chunk_bytes(&copied, c_out), chunk_bytes(path, c_in), "{what}: bytes differ");
        }
        // The prediction is encoded with the default compression.
        for c in &rg_out.columns()[rg_in.num_columns()..] {
            assert_eq!(c.compression(), Compression::SNAPPY, "{}", c.column_path());
        }
    }
    // Inputs without a page index for some files: the output has none (a file has one for
    // every column chunk or for none).
    assert!(out_meta.offset_index().is_none());
    let kv = parquet_metadata(&copied);
    assert!(kv.iter().any(|(k, v)| k == "mlscore.model.uri" && v.contains("models/churn")), "{kv:?}");

    // A directory output: one part per input file, each with its file's row groups, and the
    // page index of the files that had one.
    let parts_dir = dir.path().join("parts/");
    score_dir(&input, &parts_dir, &[]);
    assert!(parts_dir.join("_SUCCESS").is_file());
    let parts = parquet_files(&parts_dir);
    assert_eq!(parts.len(), inputs.len());
    for (part, (_, m)) in parts.iter().zip(&inputs) {
        let pm = footer(part);
        assert_eq!(pm.num_row_groups(), m.num_row_groups(), "{}", part.display());
        assert_eq!(pm.offset_index().is_some(), m.offset_index().is_some(), "{}", part.display());
    }
    assert_eq!(read_parquet(&parts_dir), got);
}

#[test]
fn what_cannot_be_copied_is_reencoded_without_the_user_asking() {
    let dir = tempfile::tempdir().unwrap();
    let input = mixed_table(dir.path());
    let reference = read_parquet(&{
        let p = dir.path().join("reference.parquet");
        score_dir(&input, &p, &["--reencode"]);
        p
    });
    // A compression the input does not have: every column is re-encoded with it.
    let zstd = dir.path().join("zstd.parquet");
    let out = score_dir(&input, &zstd, &["--compression", "zstd"]);
    assert!(!stderr(&out).contains(COPIED), "{}", stderr(&out));
    assert!(
        footer(&zstd)
            .row_groups()
            .iter()
            .flat_map(|rg| rg.columns())
            .all(|c| matches!(c.compression(), Compression::ZSTD(_)))
    );
    assert_eq!(read_parquet(&zstd), reference);
    // A row group size: the output has it.
    let small = dir.path().join("small.parquet");
    let out = score_dir(&input, &small, &["--row-group-rows", "250"]);
    assert!(!stderr(&out).contains(COPIED), "{}", stderr(&out));
    assert!(footer(&small).row_groups().iter().all(|rg| rg.num_rows() <= 250));
    assert_eq!(read_parquet(&small), reference);
    // A compression every input column already has: copied.
    let one_file = parquet_files(&input)[0].clone();
    let snappy = dir.path().join("snappy.parquet");
    let out = score_dir(&one_file, &snappy, &["--compression", "snappy"]);
    assert!(stderr(&out).contains(COPIED), "{}", stderr(&out));
    // Files whose schemas differ (one lacks a column the model does not read): the engine's
    // merged table, re-encoded.
    let uneven = dir.path().join("uneven");
    std::fs::create_dir(&uneven).unwrap();
    for (i, f) in parquet_files(&input).iter().enumerate() {
        let mut batch = read_parquet(f);
        if i == 1 {
            batch = without(batch, "note");
        }
        write_parquet(&uneven.join(format!("part-{i}.parquet")), &batch);
    }
    let merged = dir.path().join("merged.parquet");
    let out = score_dir(&uneven, &merged, &[]);
    assert!(!stderr(&out).contains(COPIED), "{}", stderr(&out));
    assert_eq!(read_parquet(&merged).num_rows(), 1000);
    // CSV in or out.
    let csv = dir.path().join("o.csv");
    let out = score_dir(&sample(), &csv, &["--result-type", "bigint"]);
    assert!(!stderr(&out).contains(COPIED), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&csv).unwrap().lines().count(), 1001);
}

#[test]
fn a_failure_in_a_late_row_group_leaves_no_output_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample_with(dir.path(), "late_null.parquet", |b| {
        let income = column(&b, "income");
        let mut values: Vec<Option<f64>> = income.as_any().downcast_ref::<Float64Array>().unwrap().iter().collect();
        values[990] = None;
        replace(b, "income", Arc::new(Float64Array::from(values)))
    });
    // Small row groups, so that the failure comes after earlier ones were written.
    let input = dir.path().join("in.parquet");
    let batch = read_parquet(&path);
    let props = WriterProperties::builder().set_max_row_group_row_count(Some(100)).build();
    let mut w = ArrowWriter::try_new(File::create(&input).unwrap(), batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let outputs = dir.path().join("out");
    std::fs::create_dir(&outputs).unwrap();
    for target in ["o.parquet", "dir/"] {
        let mut cmd = mlscore();
        cmd.args(["score", "--model", "models/churn", "--input"]).arg(&input).arg("--output").arg(outputs.join(target));
        let out = run(&mut cmd, false);
        let err = stderr(&out);
        assert!(err.contains("income") && err.contains("null"), "{err}");
        let left: Vec<String> =
            std::fs::read_dir(&outputs).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert!(left.is_empty(), "{target}: left behind {left:?}");
    }
    // With nulls allowed, the same job writes every row.
    let ok = outputs.join("ok.parquet");
    score_dir(&input, &ok, &["--on-null", "null"]);
    let got = read_parquet(&ok);
    assert_eq!(got.num_rows(), 1000);
    assert!(column(&got, "prediction").is_null(990));
}

#[test]
fn pyarrow_duckdb_and_spark_read_copied_outputs_like_reencoded_ones() {
    if !servers_installed("pyarrow_duckdb_and_spark_read_copied_outputs_like_reencoded_ones") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = mixed_table(dir.path());
    let copied = dir.path().join("copied.parquet");
    let reencoded = dir.path().join("reencoded.parquet");
    let parts = dir.path().join("parts/");
    score_dir(&input, &copied, &[]);
    score_dir(&input, &reencoded, &["--reencode"]);
    score_dir(&input, &parts, &[]);
    let out = Command::new(repo().join("scripts/python-env"))
        .arg(repo().join("tests/python/read_check.py"))
        .args([&copied, &reencoded, &parts])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tests/python/read_check.py failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    for reader in ["pyarrow", "duckdb", "spark"] {
        assert!(said.contains(&format!("{reader}: 1000 rows")), "{said}");
    }
}

fn sql(query: &str, output: &Path, extra: &[&str]) -> std::process::Output {
    let mut cmd = mlscore();
    cmd.args(["sql", "--model", "churn=models/churn", "--model", "again=models/churn", "--output"])
        .arg(output)
        .args(extra)
        .arg(query);
    run(&mut cmd, true)
}

#[test]
fn sql_queries_that_pass_columns_through_copy_them() {
    let dir = tempfile::tempdir().unwrap();
    let input = mixed_table(dir.path());
    let from = format!("FROM '{}/'", input.display());
    let cases = [
        // (query, columns copied; 0: re-encoded)
        (format!("SELECT *, churn() AS p {from}"), 14),
        (format!("SELECT region, churn() AS p, customer_id, again() AS q, tags {from}"), 3),
        (format!("SELECT churn() AS p {from}"), 0),
        (format!("SELECT customer_id AS id, churn() AS p {from}"), 0),
        (format!("SELECT customer_id, age + 1 AS older, churn() AS p {from}"), 0),
        (format!("SELECT customer_id, churn() AS p {from} WHERE age > 40"), 0),
        (format!("SELECT customer_id, churn() AS p {from} ORDER BY customer_id DESC"), 0),
        (format!("SELECT customer_id, churn() AS p {from} LIMIT 10"), 0),
        (format!("SELECT * {from}"), 0),
    ];
    for (i, (query, copied)) in cases.iter().enumerate() {
        let got = dir.path().join(format!("{i}.parquet"));
        let want = dir.path().join(format!("{i}-reencoded.parquet"));
        let out = sql(query, &got, &[]);
        let said = stderr(&out);
        if *copied > 0 {
            assert!(said.contains(&format!("{copied} input column")) && said.contains(COPIED), "{query}: {said}");
        } else {
            assert!(!said.contains(COPIED), "{query}: {said}");
        }
        sql(query, &want, &["--reencode"]);
        assert_eq!(read_parquet(&got), read_parquet(&want), "{query}");
    }
    // A query that copies no column still decodes only what its model reads.
    let alone = read_parquet(&dir.path().join("2.parquet"));
    assert_eq!(alone.num_columns(), 1);
    let full = read_parquet(&dir.path().join("0.parquet"));
    assert_eq!(column(&alone, "p").as_ref(), column(&full, "p").as_ref());
    assert_matches_golden(&full, "p", "churn_v2");
}

#[test]
fn a_footer_claiming_more_rows_than_stored_is_refused_naming_the_file() {
    use parquet::file::metadata::ParquetMetaDataWriter;
    let dir = tempfile::tempdir().unwrap();
    let honest = dir.path().join("honest.parquet");
    write_parquet(&honest, &read_parquet(&sample()));
    // The same pages under a footer whose row group claims a trillion rows.
    let bytes = std::fs::read(&honest).unwrap();
    let footer_len = u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap()) as usize;
    let mut builder = footer(&honest).into_builder();
    let groups = builder.take_row_groups();
    let claimed = groups.into_iter().map(|rg| rg.into_builder().set_num_rows(1_000_000_000_000).build().unwrap());
    let meta = builder.set_row_groups(claimed.collect()).set_column_index(None).set_offset_index(None).build();
    let mut lying = bytes[..bytes.len() - 8 - footer_len].to_vec();
    ParquetMetaDataWriter::new(&mut lying, &meta).finish().unwrap();
    let input = dir.path().join("lying.parquet");
    std::fs::write(&input, lying).unwrap();
    let outputs = dir.path().join("out");
    std::fs::create_dir(&outputs).unwrap();
    // Copying columns takes the footer's row counts for the copied chunks, so a footer that
    // disagrees with the pages is refused, naming the file; nothing is allocated for the rows
    // it claims, and nothing is left behind.
    let target = outputs.join("o.parquet");
    let mut cmd = mlscore();
    cmd.args(["score", "--model", "models/churn", "--input"]).arg(&input).arg("--output").arg(&target);
    let out = run(&mut cmd, false);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("lying.parquet") && err.contains("footer says 1000000000000"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&outputs).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "{left:?}");
    // The engine's reader (the re-encoding route) reads the rows the pages hold.
    let mut cmd = mlscore();
    cmd.args(["score", "--reencode", "--model", "models/churn", "--input"]).arg(&input).arg("--output").arg(&target);
    run(&mut cmd, true);
    assert_eq!(read_parquet(&target).num_rows(), 1000);
}
