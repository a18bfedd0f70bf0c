//! Object stores: Azure Blob Storage and ADLS Gen2, S3, Google Cloud Storage, HTTP(S) and local
//! files, through the `object_store` crate and configured the way the rest of the ecosystem
//! configures it: from its standard environment variables (`AZURE_STORAGE_ACCOUNT_NAME`,
//! `AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_CLIENT_ID`, …, `AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL`, …,
//! `GOOGLE_SERVICE_ACCOUNT`, …), with managed identities and instance metadata as fallbacks.
//!
//! URLs are object_store's, plus the two it does not parse: `wasbs://` and `wasb://` name the
//! same container as `abfss://` and `abfs://` (Blob and ADLS Gen2 endpoints serve the same data).
//! Azure `https://<account>.blob.core.windows.net/<container>/…` URLs are read as `abfss://` too.
//!
//! ```
//! use mlscore_mlflow::objects::{parse_url, store_key};
//! let url = parse_url("wasbs://data@acct.blob.core.windows.net/customers/")?;
//! assert_eq!(url.as_str(), "abfss://data@acct.dfs.core.windows.net/customers/");
//! // One store per container: two containers of one account never share a client.
//! assert_ne!(store_key(&url), store_key(&parse_url("abfss://other@acct.dfs.core.windows.net/")?));
//! # Ok::<(), mlscore_mlflow::Error>(())
//! ```

use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use object_store::path::Path;
use object_store::{BackoffConfig, ObjectStore, ObjectStoreExt, ObjectStoreScheme, RetryConfig};
use url::Url;

use crate::error::{Error, Result};

/// URL schemes read and written through object stores.
pub const SCHEMES: &[&str] =
    &["s3", "s3a", "abfss", "abfs", "az", "azure", "adl", "wasbs", "wasb", "gs", "http", "https", "file"];

/// Whether `s` is a URL with one of [`SCHEMES`] (`file://` included, a plain path not).
pub fn is_object_url(s: &str) -> bool {
    s.split_once("://").is_some_and(|(scheme, _)| SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()))
}

fn invalid(url: &str, reason: impl std::fmt::Display) -> Error {
    Error::ObjectStore { url: url.to_string(), reason: reason.to_string() }
}

/// Parses an object store URL, mapping `wasbs://c@a.blob.core.windows.net/p` (which
/// object_store rejects) to `abfss://c@a.dfs.core.windows.net/p`, the same data.
pub fn parse_url(s: &str) -> Result<Url> {
    let mut url = Url::parse(s).map_err(|e| invalid(s, format!("not a URL: {e}")))?;
    let abfs = match url.scheme() {
        "wasbs" => Some("abfss"),
        "wasb" => Some("abfs"),
        _ => None,
    };
    if let Some(scheme) = abfs {
        let host = url.host_str().unwrap_or_default().to_string();
        let host =
            host.strip_suffix(".blob.core.windows.net").map_or(host.clone(), |a| format!("{a}.dfs.core.windows.net"));
        // `Url::set_scheme` refuses to turn a special scheme into another; these are not special.
        let rest = &url.as_str()[url.scheme().len()..];
        url = Url::parse(&format!("{scheme}{rest}")).map_err(|e| invalid(s, e))?;
        url.set_host(Some(&host)).map_err(|e| invalid(s, e))?;
    }
    // An Azure HTTPS URL names the container in its path; as abfss:// it is the same data, and
    // DataFusion (which keys stores by authority) keeps one store per container.
    let host = url.host_str().unwrap_or_default().to_string();
    if url.scheme() == "https"
        && let Some(account) =
            host.strip_suffix(".blob.core.windows.net").or(host.strip_suffix(".dfs.core.windows.net"))
        && let Some((container, path)) = url.path().trim_start_matches('/').split_once('/')
    {
        url = Url::parse(&format!("abfss://{container}@{account}.dfs.core.windows.net/{path}"))
            .map_err(|e| invalid(s, e))?;
    }
    if !SCHEMES.contains(&url.scheme()) {
        return Err(invalid(s, format!("unknown scheme; use one of {}", SCHEMES.join("://, "))));
    }
    Ok(url)
}

/// The key of the store that serves `url`: scheme, credentials-free authority (container and
/// account for Azure, bucket for S3 and GCS) and, for path-style HTTPS endpoints, the bucket.
/// DataFusion's default registry drops the `container@` part, so that two containers of one
/// account would share (and overwrite) one store.
pub fn store_key(url: &Url) -> String {
    let mut key = format!("{}://", url.scheme());
    if !url.username().is_empty() {
        key.push_str(url.username());
        key.push('@');
    }
    key.push_str(url.host_str().unwrap_or_default());
    if let Some(port) = url.port() {
        key.push_str(&format!(":{port}"));
    }
    let host = url.host_str().unwrap_or_default();
    let bucket_in_path = url.scheme() == "https"
        && (host.ends_with(".core.windows.net")
            || host.ends_with(".fabric.microsoft.com")
            || host.ends_with("r2.cloudflarestorage.com")
            || (host.ends_with("amazonaws.com") && host.starts_with("s3")));
    if bucket_in_path && let Some(bucket) = url.path().trim_start_matches('/').split('/').next() {
        key.push('/');
        key.push_str(bucket);
    }
    key
}

/// Short-lived credentials that a service hands out for one storage location (Unity Catalog's
/// temporary credentials), used instead of the environment's.
#[derive(Clone)]
pub enum TemporaryCredentials {
    /// An AWS session: key, secret and session token.
    Aws {
        /// `access_key_id`.
        access_key_id: String,
        /// `secret_access_key`.
        secret_access_key: String,
        /// `session_token`.
        session_token: String,
    },
    /// An Azure shared access signature (a query string).
    AzureSas(String),
    /// A Google Cloud OAuth access token.
    GcpBearer(String),
}

impl std::fmt::Debug for TemporaryCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Aws { .. } => "TemporaryCredentials::Aws(<redacted>)",
            Self::AzureSas(_) => "TemporaryCredentials::AzureSas(<redacted>)",
            Self::GcpBearer(_) => "TemporaryCredentials::GcpBearer(<redacted>)",
        })
    }
}

/// Opens the store that serves `url` with `credentials` and nothing else of the environment's
/// credentials; endpoints still come from the environment (`AWS_ENDPOINT_URL`, `AWS_REGION`,
/// `AZURE_STORAGE_USE_EMULATOR`), so that S3-compatible servers and the Azure emulator work.
pub fn open_with(url: &Url, credentials: &TemporaryCredentials) -> Result<(Arc<dyn ObjectStore>, Path)> {
    use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
    use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
    use object_store::gcp::{GcpCredential, GoogleCloudStorageBuilder};
    let fail = |e: object_store::Error| invalid(url.as_str(), configuration_hint(url, &e));
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let truthy = |k: &str| env(k).is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"));
    let (scheme, path) = ObjectStoreScheme::parse(url).map_err(|e| invalid(url.as_str(), e))?;
    let store: Arc<dyn ObjectStore> = match (scheme, credentials) {
        (ObjectStoreScheme::MicrosoftAzure, TemporaryCredentials::AzureSas(sas)) => Arc::new(
            MicrosoftAzureBuilder::new()
                .with_url(url.as_str())
                .with_use_emulator(truthy("AZURE_STORAGE_USE_EMULATOR"))
                .with_config(AzureConfigKey::SasKey, sas.trim_start_matches('?'))
                .with_retry(retry_config())
                .build()
                .map_err(fail)?,
        ),
        (
            ObjectStoreScheme::AmazonS3,
            TemporaryCredentials::Aws { access_key_id, secret_access_key, session_token },
        ) => {
            let mut builder = AmazonS3Builder::new()
                .with_url(url.as_str())
                .with_access_key_id(access_key_id)
                .with_secret_access_key(secret_access_key)
                .with_token(session_token)
                .with_retry(retry_config());
            for (var, key) in [
                ("AWS_REGION", AmazonS3ConfigKey::Region),
                ("AWS_DEFAULT_REGION", AmazonS3ConfigKey::Region),
                ("AWS_ENDPOINT_URL", AmazonS3ConfigKey::Endpoint),
                ("AWS_ENDPOINT_URL_S3", AmazonS3ConfigKey::Endpoint),
                ("AWS_ALLOW_HTTP", AmazonS3ConfigKey::Client(object_store::ClientConfigKey::AllowHttp)),
            ] {
                if let Some(v) = env(var) {
                    builder = builder.with_config(key, v);
                }
            }
            Arc::new(builder.build().map_err(fail)?)
        }
        (ObjectStoreScheme::GoogleCloudStorage, TemporaryCredentials::GcpBearer(token)) => Arc::new(
            GoogleCloudStorageBuilder::new()
                .with_url(url.as_str())
                .with_credentials(Arc::new(object_store::StaticCredentialProvider::new(GcpCredential {
                    bearer: token.clone(),
                })))
                .with_retry(retry_config())
                .build()
                .map_err(fail)?,
        ),
        (scheme, credentials) => {
            return Err(invalid(
                url.as_str(),
                format!(
                    "{credentials:?} cannot open a {scheme:?} location; the service handed out credentials of another cloud"
                ),
            ));
        }
    };
    Ok((Arc::new(crate::resilient::Resilient::new(store)), path))
}

/// Retries of object store requests: `MLSCORE_STORE_MAX_RETRIES` (default 10) within
/// `MLSCORE_STORE_RETRY_TIMEOUT` seconds (default 120), exponential backoff from 100 ms.
fn retry_config() -> RetryConfig {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.trim().parse::<f64>().ok()).filter(|v| *v >= 0.0);
    RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: env("MLSCORE_STORE_MAX_RETRIES").map_or(10, |v| v as usize),
        retry_timeout: Duration::from_secs_f64(env("MLSCORE_STORE_RETRY_TIMEOUT").unwrap_or(120.0)),
    }
}

/// The path of `url` inside its store.
pub fn path_in_store(url: &Url) -> Result<Path> {
    ObjectStoreScheme::parse(url).map(|(_, path)| path).map_err(|e| invalid(url.as_str(), e))
}

/// Opens the store that serves `url` (configured from the environment) and the path in it.
pub fn open(url: &Url) -> Result<(Arc<dyn ObjectStore>, Path)> {
    use object_store::aws::AmazonS3Builder;
    use object_store::azure::MicrosoftAzureBuilder;
    use object_store::gcp::GoogleCloudStorageBuilder;
    use object_store::http::HttpBuilder;
    let fail = |e: object_store::Error| invalid(url.as_str(), configuration_hint(url, &e));
    let (scheme, path) = ObjectStoreScheme::parse(url).map_err(|e| invalid(url.as_str(), e))?;
    let store: Arc<dyn ObjectStore> = match scheme {
        ObjectStoreScheme::Local => Arc::new(object_store::local::LocalFileSystem::new()),
        ObjectStoreScheme::MicrosoftAzure => Arc::new(
            MicrosoftAzureBuilder::from_env()
                .with_url(url.as_str())
                .with_retry(retry_config())
                .build()
                .map_err(fail)?,
        ),
        ObjectStoreScheme::AmazonS3 => Arc::new(
            AmazonS3Builder::from_env().with_url(url.as_str()).with_retry(retry_config()).build().map_err(fail)?,
        ),
        ObjectStoreScheme::GoogleCloudStorage => Arc::new(
            GoogleCloudStorageBuilder::from_env()
                .with_url(url.as_str())
                .with_retry(retry_config())
                .build()
                .map_err(fail)?,
        ),
        ObjectStoreScheme::Http => Arc::new(
            HttpBuilder::new()
                .with_url(&url[..url::Position::BeforePath])
                .with_retry(retry_config())
                .build()
                .map_err(fail)?,
        ),
        other => return Err(invalid(url.as_str(), format!("{other:?} URLs are not supported"))),
    };
    if scheme == ObjectStoreScheme::Local {
        return Ok((store, path));
    }
    Ok((Arc::new(crate::resilient::Resilient::new(store)), path))
}

/// object_store's configuration errors, with the environment variables that fix them.
fn configuration_hint(url: &Url, e: &object_store::Error) -> String {
    let text = e.to_string();
    let hint = match url.scheme() {
        "az" | "azure" | "adl" | "abfs" | "abfss" | "wasb" | "wasbs" if text.contains("ccount") => {
            "; set AZURE_STORAGE_ACCOUNT_NAME, or use abfss://<container>@<account>.dfs.core.windows.net/<path>"
        }
        "s3" | "s3a" if text.contains("egion") || text.contains("ucket") => {
            "; set AWS_REGION (and AWS_ENDPOINT_URL for S3-compatible servers)"
        }
        _ => "",
    };
    format!("{text}{hint}")
}

/// Runs `fut` to completion on a runtime of its own, on a thread of its own, so that it can be
/// called from synchronous code whether or not that code already runs inside a tokio runtime.
pub fn block_on<T: Send>(fut: impl std::future::Future<Output = T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::io("cannot start an I/O runtime for", "object store downloads", e))?;
            Ok(rt.block_on(fut))
        })
        .join()
        .unwrap_or_else(|_| Err(invalid("", "an object store download thread panicked")))
    })
}

/// One file of a listed prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The object's path in its store.
    pub location: Path,
    /// Its path relative to the listed prefix (its file name when the URL named one object).
    pub relative: String,
    /// Size in bytes.
    pub size: u64,
    /// Entity tag or, when the store has none, the modification time: changes when it does.
    pub version: String,
}

impl Listed {
    fn new(meta: object_store::ObjectMeta, relative: String) -> Self {
        Self {
            version: meta.e_tag.unwrap_or_else(|| meta.last_modified.to_rfc3339()),
            location: meta.location,
            relative,
            size: meta.size,
        }
    }
}

/// Lists the objects under `url` (recursively), or the single object it names.
pub async fn list(store: &dyn ObjectStore, url: &Url, prefix: &Path) -> Result<Vec<Listed>> {
    let fail = |e: object_store::Error| invalid(url.as_str(), e);
    let mut out = Vec::new();
    let mut stream = store.list(Some(prefix));
    let base = prefix.as_ref().len();
    while let Some(meta) = stream.next().await {
        let meta = meta.map_err(fail)?;
        let relative = meta.location.as_ref()[base..].trim_start_matches('/').to_string();
        out.push(Listed::new(meta, relative));
    }
    if out.is_empty() && !prefix.as_ref().is_empty() {
        match store.head(prefix).await {
            Ok(meta) => out.push(Listed::new(meta, prefix.filename().unwrap_or("file").to_string())),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(fail(e)),
        }
    }
    out.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(out)
}

/// Downloads `files` into `dest` (streaming, a file at a time). Relative names that would leave
/// `dest` are refused.
pub async fn download(store: &dyn ObjectStore, url: &Url, files: &[Listed], dest: &FsPath) -> Result<u64> {
    let mut bytes = 0;
    for f in files {
        let target = crate::store::safe_join(dest, &f.relative).ok_or_else(|| {
            invalid(
                url.as_str(),
                format!("the object name '{}' would be written outside {}; refused", f.location, dest.display()),
            )
        })?;
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io("cannot create", parent, e))?;
        }
        let object_url = format!("{}/{}", url.as_str().trim_end_matches('/'), f.relative);
        // A body that breaks off or ends short is fetched again from its start.
        let mut attempt = 1;
        let mut delay = Duration::from_millis(200);
        bytes += loop {
            match download_once(store, f, &object_url, &target).await? {
                Ok(got) => break got,
                Err(_) if attempt < DOWNLOAD_ATTEMPTS => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                Err(cut) => {
                    return Err(invalid(&object_url, format!("{cut} (after {attempt} attempts); run again to retry")));
                }
            }
        };
    }
    Ok(bytes)
}

/// Attempts at downloading one object whose body breaks off.
const DOWNLOAD_ATTEMPTS: u32 = 4;

/// One download of `f` into `target`: the bytes written, or why the body arrived incomplete.
async fn download_once(
    store: &dyn ObjectStore,
    f: &Listed,
    object_url: &str,
    target: &FsPath,
) -> Result<std::result::Result<u64, String>> {
    use std::io::Write;
    let mut stream = store.get(&f.location).await.map_err(|e| invalid(object_url, e))?.into_stream();
    let mut file =
        std::io::BufWriter::new(std::fs::File::create(target).map_err(|e| Error::io("cannot create", target, e))?);
    let mut got = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => return Ok(Err(format!("download interrupted: {e}"))),
        };
        file.write_all(&chunk).map_err(|e| Error::io("cannot write", target, e))?;
        got += chunk.len() as u64;
    }
    // A connection that ends early can look like the end of the object: the listing's size
    // decides, so that a cut file never enters the cache.
    if got != f.size {
        return Ok(Err(format!("download cut short: {got} of {} bytes arrived", f.size)));
    }
    file.flush().map_err(|e| Error::io("cannot write", target, e))?;
    Ok(Ok(got))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasbs_names_the_same_container_on_the_dfs_endpoint() {
        let u = parse_url("wasbs://c@acct.blob.core.windows.net/models/churn").unwrap();
        assert_eq!(u.as_str(), "abfss://c@acct.dfs.core.windows.net/models/churn");
        let u = parse_url("wasb://c@acct.blob.core.windows.net/x").unwrap();
        assert_eq!(u.as_str(), "abfs://c@acct.dfs.core.windows.net/x");
        let u = parse_url("https://acct.blob.core.windows.net/c/data/x.parquet").unwrap();
        assert_eq!(u.as_str(), "abfss://c@acct.dfs.core.windows.net/data/x.parquet");
        assert!(parse_url("ftp://host/x").unwrap_err().to_string().contains("unknown scheme"));
    }

    #[test]
    fn store_keys_separate_containers_and_buckets() {
        let key = |s: &str| store_key(&parse_url(s).unwrap());
        assert_eq!(key("abfss://a@acct.dfs.core.windows.net/x/y"), "abfss://a@acct.dfs.core.windows.net");
        assert_ne!(key("abfss://a@acct.dfs.core.windows.net/"), key("abfss://b@acct.dfs.core.windows.net/"));
        assert_eq!(key("s3://bucket/k/e/y"), "s3://bucket");
        let https = Url::parse("https://acct.blob.core.windows.net/c1/p").unwrap();
        assert_eq!(store_key(&https), "https://acct.blob.core.windows.net/c1");
        assert_eq!(key("http://127.0.0.1:8080/data/x.parquet"), "http://127.0.0.1:8080");
        assert!(is_object_url("AZ://c/p") && is_object_url("file:///tmp/x") && !is_object_url("/tmp/x"));
    }

    #[test]
    fn local_files_list_and_download_like_any_store() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("m/sub")).unwrap();
        std::fs::write(src.path().join("m/MLmodel"), "flavors: {}\n").unwrap();
        std::fs::write(src.path().join("m/sub/model.onnx"), b"12345").unwrap();
        let url = Url::from_directory_path(src.path().join("m")).unwrap();
        let (store, prefix) = open(&url).unwrap();
        let dest = tempfile::tempdir().unwrap();
        let (files, bytes) = block_on(async {
            let files = list(store.as_ref(), &url, &prefix).await.unwrap();
            let bytes = download(store.as_ref(), &url, &files, dest.path()).await.unwrap();
            (files, bytes)
        })
        .unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.relative.as_str()).collect();
        assert_eq!(names, ["MLmodel", "sub/model.onnx"]);
        assert_eq!(bytes, 17);
        assert_eq!(std::fs::read(dest.path().join("sub/model.onnx")).unwrap(), b"12345");
        // A URL naming one object lists that object.
        let one = Url::from_file_path(src.path().join("m/sub/model.onnx")).unwrap();
        let (store, path) = open(&one).unwrap();
        let files = block_on(async move { list(store.as_ref(), &one, &path).await.unwrap() }).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].relative, "model.onnx");
    }
}
