//! Input tables: local files, directories and globs of Parquet, CSV or Arrow IPC, and Delta
//! tables (see [`crate::delta`]).

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;

use futures::FutureExt;

use datafusion::dataframe::DataFrame;
use datafusion::datasource::file_format::options::ArrowReadOptions;
use datafusion::prelude::{CsvReadOptions, ParquetReadOptions, SessionContext};

use mlscore_mlflow::objects;

use crate::delta::{self, TimeTravel};
use crate::error::{Error, Result};

/// File formats mlscore reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Apache Parquet.
    Parquet,
    /// CSV with a header row.
    Csv,
    /// Arrow IPC files (`.arrow`, `.ipc`, `.feather`).
    Arrow,
    /// A Delta Lake table (a directory or prefix holding `_delta_log/`); inputs only.
    Delta,
}

impl Format {
    /// The format a file name's extension says, if any.
    pub fn from_extension(path: &str) -> Option<Self> {
        let ext = Path::new(path.trim_end_matches('/')).extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "parquet" | "pq" => Self::Parquet,
            "csv" => Self::Csv,
            "arrow" | "ipc" | "feather" | "arrows" => Self::Arrow,
            _ => return None,
        })
    }

    /// The extension files of this format carry.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Parquet => ".parquet",
            Self::Csv => ".csv",
            Self::Arrow => ".arrow",
            Self::Delta => "/_delta_log",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "parquet" => Ok(Self::Parquet),
            "csv" => Ok(Self::Csv),
            "arrow" | "ipc" | "feather" => Ok(Self::Arrow),
            "delta" => Ok(Self::Delta),
            _ => Err(Error::Input {
                input: s.to_string(),
                reason: "unknown format: use parquet, csv, arrow or delta".into(),
            }),
        }
    }
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Checks each input exists (or, for a glob, matches something) and decides the format:
/// the one given, else the inputs' extension, else what a directory holds, else Parquet.
pub fn check_inputs(inputs: &[String], format: Option<Format>) -> Result<(Vec<String>, Format)> {
    if inputs.is_empty() {
        return Err(Error::Input { input: String::new(), reason: "no input given".into() });
    }
    let mut detected = format;
    let mut normalized = Vec::with_capacity(inputs.len());
    for input in inputs {
        let remote = input.contains("://");
        if remote || is_glob(input) {
            detected = detected.or_else(|| Format::from_extension(input));
            normalized.push(input.clone());
            continue;
        }
        let path = Path::new(input);
        if path.is_dir() {
            let fmt = match detected {
                Some(f) => f,
                None => dir_format(path).ok_or_else(|| Error::Input {
                    input: input.clone(),
                    reason: "the directory holds no .parquet, .csv or .arrow files".into(),
                })?,
            };
            if !dir_has(path, fmt) {
                return Err(Error::Input {
                    input: input.clone(),
                    reason: format!("the directory holds no {} files", fmt.extension()),
                });
            }
            detected = Some(fmt);
            normalized.push(format!("{}/", input.trim_end_matches('/')));
        } else if path.is_file() {
            detected = detected.or_else(|| Format::from_extension(input));
            normalized.push(input.clone());
        } else {
            return Err(Error::Input { input: input.clone(), reason: "no such file or directory".into() });
        }
    }
    Ok((normalized, detected.unwrap_or(Format::Parquet)))
}

fn dir_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.file_name().and_then(|n| n.to_str()).is_some_and(hidden) {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if let Some(s) = p.to_str() {
                out.push(s.to_string());
            }
        }
    }
    out
}

fn dir_format(dir: &Path) -> Option<Format> {
    let files = dir_files(dir);
    [Format::Parquet, Format::Csv, Format::Arrow]
        .into_iter()
        .find(|f| files.iter().any(|p| Format::from_extension(p) == Some(*f)))
}

fn dir_has(dir: &Path, fmt: Format) -> bool {
    dir_files(dir).iter().any(|p| Format::from_extension(p) == Some(fmt))
}

fn hidden(name: &str) -> bool {
    name.starts_with(['.', '_'])
}

/// An object store input (`abfss://`, `s3://`, `gs://`, `https://`, `file://`): its URL as
/// DataFusion should read it (`wasbs://` as `abfss://`, a prefix ending in `/`), checked to name
/// at least one object, and the format its files' extensions say.
async fn check_remote(ctx: &SessionContext, input: &str) -> Result<(String, Option<Format>)> {
    let err = |reason: String| Error::Input { input: input.to_string(), reason };
    let url = objects::parse_url(input).map_err(|e| err(e.to_string()))?;
    if is_glob(url.path()) {
        return Ok((url.to_string(), Format::from_extension(url.path())));
    }
    let store =
        ctx.runtime_env().object_store_registry.get_store(&url).map_err(|e| err(Error::DataFusion(e).to_string()))?;
    let path = objects::path_in_store(&url).map_err(|e| err(e.to_string()))?;
    let files = objects::list(store.as_ref(), &url, &path).await.map_err(|e| err(e.to_string()))?;
    if files.len() == 1 && files[0].location == path {
        return Ok((url.to_string(), Format::from_extension(url.path())));
    }
    let visible: Vec<&str> =
        files.iter().map(|f| f.relative.as_str()).filter(|rel| !rel.split('/').any(hidden)).collect();
    let format = [Format::Parquet, Format::Csv, Format::Arrow]
        .into_iter()
        .find(|f| visible.iter().any(|p| Format::from_extension(p) == Some(*f)));
    if format.is_none() {
        return Err(err(if files.is_empty() {
            "no such object or prefix (check the URL, and that the credentials in the environment can list it)".into()
        } else {
            "the prefix holds no .parquet, .csv or .arrow files".into()
        }));
    }
    let mut dir = url.to_string();
    if !dir.ends_with('/') {
        dir.push('/');
    }
    Ok((dir, format))
}

/// Reads the inputs as one table (the latest version of a Delta table).
pub async fn read_inputs(ctx: &SessionContext, inputs: &[String], format: Option<Format>) -> Result<DataFrame> {
    read_inputs_at(ctx, inputs, format, &TimeTravel::Latest).await
}

/// Reads the inputs as one table; `at` picks the version of a Delta table.
pub async fn read_inputs_at(
    ctx: &SessionContext,
    inputs: &[String],
    format: Option<Format>,
    at: &TimeTravel,
) -> Result<DataFrame> {
    let state = ctx.state();
    let mut delta = Vec::new();
    for input in inputs {
        if format == Some(Format::Delta) || delta::is_delta_table(&state, input).await {
            delta.push(input);
        }
    }
    if let Some(table) = delta.first() {
        if inputs.len() > 1 {
            return Err(Error::Input {
                input: inputs.join(", "),
                reason: format!(
                    "{table} is a Delta table: score one Delta table at a time (or union them in `mlscore sql`)"
                ),
            });
        }
        if let Some(f @ (Format::Parquet | Format::Csv | Format::Arrow)) = format {
            return Err(Error::Input {
                input: table.to_string(),
                reason: format!(
                    "this is a Delta table; reading its files as {f:?} would include rows it deleted and files it \
                     removed: drop --input-format (or use --input-format delta)"
                ),
            });
        }
        let provider = delta::open_table(&state, table, at).await?;
        return ctx
            .read_table(provider)
            .map_err(|e| Error::Input { input: table.to_string(), reason: Error::DataFusion(e).to_string() });
    }
    if *at != TimeTravel::Latest {
        return Err(Error::Input {
            input: inputs.join(", "),
            reason: "--version-as-of and --timestamp-as-of select a version of a Delta table; this input is not one \
                     (no _delta_log/ in it)"
                .into(),
        });
    }
    let mut checked = Vec::with_capacity(inputs.len());
    let mut detected = format;
    for input in inputs {
        if objects::is_object_url(input) {
            let (url, f) = check_remote(ctx, input).await?;
            detected = detected.or(f);
            checked.push(url);
        } else {
            checked.push(input.clone());
        }
    }
    let (paths, format) = check_inputs(&checked, detected)?;
    if format == Format::Parquet {
        check_local_footers(&paths)?;
    }
    let read = async {
        match format {
            Format::Parquet => ctx.read_parquet(paths.clone(), ParquetReadOptions::default()).await,
            Format::Csv => ctx.read_csv(paths.clone(), CsvReadOptions::new().has_header(true)).await,
            Format::Arrow => ctx.read_arrow(paths.clone(), ArrowReadOptions::default()).await,
            Format::Delta => {
                Err(datafusion::error::DataFusionError::Plan("no _delta_log/ here: not a Delta table".into()))
            }
        }
    };
    // Reading the schema reads every file's footer; a reader that panics on a damaged one (arrow's
    // IPC decoder on a damaged embedded schema) says nothing of which file it was reading.
    let df = match AssertUnwindSafe(read).catch_unwind().await {
        Ok(df) => df,
        Err(panic) => {
            let said = mlscore_core::panic_message(panic.as_ref());
            return Err(match damaged_file(ctx, &paths, format).await {
                Some(file) => Error::Input {
                    input: file,
                    reason: format!(
                        "reading its schema failed inside a reader ({said}); the file is damaged: rewrite it, or \
                         leave it out of the input"
                    ),
                },
                None => Error::Input {
                    input: paths.join(", "),
                    reason: format!("reading the schema failed inside a reader ({said}); an input file is damaged"),
                },
            });
        }
    };
    df.map_err(|e| Error::Input { input: paths.join(", "), reason: crate::error::Error::DataFusion(e).to_string() })
}

/// Checks the footers of the local Parquet inputs (files, and the `.parquet` files of
/// directories) before DataFusion reads them: a footer holding a few bytes of hostile Thrift
/// would hold the job for hours inside the parquet crate (see
/// [`mlscore_core::check_parquet_footer`]). Object-store inputs and globs are read as they are.
pub(crate) fn check_local_footers(paths: &[String]) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    for path in paths {
        if objects::is_object_url(path) || is_glob(path) {
            continue;
        }
        let dir = Path::new(path);
        if !dir.exists() {
            // Not a local path (in SQL, a table's name asked of the URL-table factory first).
            continue;
        }
        let files = if dir.is_dir() {
            dir_files(dir).into_iter().filter(|f| Format::from_extension(f) == Some(Format::Parquet)).collect()
        } else {
            vec![path.clone()]
        };
        for file in files {
            let damaged = |reason: String| Error::Input { input: file.clone(), reason };
            let footer = (|| -> std::io::Result<Option<Vec<u8>>> {
                let mut f = std::fs::File::open(&file)?;
                let size = f.metadata()?.len();
                if size < 12 {
                    return Ok(None);
                }
                let mut tail = [0u8; 8];
                f.seek(SeekFrom::End(-8))?;
                f.read_exact(&mut tail)?;
                let Some(len) = mlscore_core::parquet_footer_length(size, &tail).filter(|l| *l as u64 <= size - 8)
                else {
                    return Ok(None);
                };
                let mut footer = vec![0u8; len];
                f.seek(SeekFrom::End(-8 - len as i64))?;
                f.read_exact(&mut footer)?;
                Ok(Some(footer))
            })()
            .map_err(|e| damaged(format!("cannot read its footer: {e}")))?;
            // A file without a footer is left for the reader to name.
            if let Some(footer) = footer {
                mlscore_core::check_parquet_footer(&footer).map_err(damaged)?;
            }
        }
    }
    Ok(())
}

/// The first of the inputs' files whose schema a reader panics on, read one file at a time, or
/// `None` when none does alone.
async fn damaged_file(ctx: &SessionContext, paths: &[String], format: Format) -> Option<String> {
    use datafusion::datasource::file_format::FileFormat;
    use datafusion::datasource::file_format::arrow::ArrowFormat;
    use datafusion::datasource::file_format::csv::CsvFormat;
    use datafusion::datasource::file_format::parquet::ParquetFormat;
    use datafusion::datasource::listing::ListingTableUrl;
    use futures::TryStreamExt;

    let (file_format, ext): (Arc<dyn FileFormat>, &str) = match format {
        Format::Parquet => (Arc::new(ParquetFormat::default()), ".parquet"),
        Format::Csv => (Arc::new(CsvFormat::default().with_has_header(true)), ".csv"),
        Format::Arrow => (Arc::new(ArrowFormat), ".arrow"),
        Format::Delta => return None,
    };
    let state = ctx.state();
    for path in paths {
        let url = ListingTableUrl::parse(path).ok()?;
        let store = ctx.runtime_env().object_store(url.object_store()).ok()?;
        // A single file is read whatever its extension; a directory or glob, by extension.
        let ext = if url.is_collection() || is_glob(path) { ext } else { "" };
        let objects: Vec<_> = url.list_all_files(&state, store.as_ref(), ext).await.ok()?.try_collect().await.ok()?;
        for object in objects {
            let probe = file_format.infer_schema(&state, &store, std::slice::from_ref(&object));
            if AssertUnwindSafe(probe).catch_unwind().await.is_err() {
                return Some(if url.scheme() == "file" {
                    format!("/{}", object.location)
                } else {
                    format!("{}{}", url.object_store().as_str(), object.location)
                });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_come_from_extensions() {
        assert_eq!(Format::from_extension("a/b.parquet"), Some(Format::Parquet));
        assert_eq!(Format::from_extension("a/b.CSV"), Some(Format::Csv));
        assert_eq!(Format::from_extension("x.feather"), Some(Format::Arrow));
        assert_eq!(Format::from_extension("dir/"), None);
    }

    #[test]
    fn missing_inputs_and_empty_directories_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.parquet").display().to_string();
        let err = check_inputs(std::slice::from_ref(&missing), None).unwrap_err().to_string();
        assert!(err.contains(&missing) && err.contains("no such file"), "{err}");
        let empty = dir.path().display().to_string();
        let err = check_inputs(&[empty], None).unwrap_err().to_string();
        assert!(err.contains("holds no .parquet"), "{err}");
        std::fs::write(dir.path().join("a.csv"), "x\n1\n").unwrap();
        let (paths, fmt) = check_inputs(&[dir.path().display().to_string()], None).unwrap();
        assert_eq!(fmt, Format::Csv);
        assert!(paths[0].ends_with('/'));
    }
}
