//! MLflow model URIs: every form `mlflow.pyfunc.load_model` accepts.
//!
//! ```
//! use mlscore_mlflow::{ModelUri, VersionSelector};
//! let uri: ModelUri = "models:/churn@champion".parse()?;
//! assert_eq!(uri, ModelUri::Registered {
//!     name: "churn".into(),
//!     selector: VersionSelector::Alias("champion".into()),
//!     sub_path: String::new(),
//! });
//! assert!(matches!("runs:/0221f3f1e0984d2d9317479a2f4e1c7e/model".parse()?, ModelUri::Run { .. }));
//! assert!(matches!("./models/churn".parse()?, ModelUri::Local(_)));
//! assert!("ftp://host/model".parse::<ModelUri>().is_err());
//! # Ok::<(), mlscore_mlflow::Error>(())
//! ```

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::{Error, Result};

/// Which version of a registered model a `models:/` URI names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VersionSelector {
    /// `models:/<name>/<digits>`
    Version(u64),
    /// `models:/<name>/latest` (any case): the highest version.
    Latest,
    /// `models:/<name>/<stage>`: the highest version in that stage (matched case-insensitively).
    Stage(String),
    /// `models:/<name>@<alias>`
    Alias(String),
}

impl fmt::Display for VersionSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Version(v) => write!(f, "version {v}"),
            Self::Latest => f.write_str("the latest version"),
            Self::Stage(s) => write!(f, "the latest version in stage '{s}'"),
            Self::Alias(a) => write!(f, "alias '{a}'"),
        }
    }
}

/// A parsed model URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModelUri {
    /// A local directory holding an `MLmodel` file (a plain path or a `file:` URI), or a bare `.onnx` file.
    Local(PathBuf),
    /// `runs:/<run_id>/<path>`: an artifact path of a run.
    Run {
        /// The run id.
        run_id: String,
        /// Artifact path inside the run (may be empty).
        path: String,
    },
    /// `models:/<name>/<version|latest|stage>` or `models:/<name>@<alias>`.
    Registered {
        /// Registered model name.
        name: String,
        /// Which version.
        selector: VersionSelector,
        /// Path below the model version's artifacts (usually empty).
        sub_path: String,
    },
    /// `models:/<model_id>`: an MLflow 3 logged model.
    LoggedModel {
        /// The model id, `m-<32 hex>`.
        model_id: String,
        /// Path below the logged model's artifacts (usually empty).
        sub_path: String,
    },
    /// `mlflow-artifacts:/<path>` (optionally with a host), served by a tracking server's artifact proxy.
    MlflowArtifacts(String),
    /// An object store or web URL: `s3://`, `abfss://`, `abfs://`, `az://`, `wasbs://`, `wasb://`,
    /// `adl://`, `azure://`, `gs://`, `http(s)://`.
    Remote(String),
}

/// Object store and web schemes a model (or artifact location) can live under.
pub const REMOTE_SCHEMES: &[&str] =
    &["s3", "s3a", "abfss", "abfs", "az", "azure", "adl", "wasbs", "wasb", "gs", "http", "https"];

impl ModelUri {
    /// Parses a model URI.
    pub fn parse(uri: &str) -> Result<Self> {
        let trimmed = uri.trim();
        if trimmed.is_empty() {
            return Err(Error::invalid_uri(uri, "the URI is empty"));
        }
        let Some(scheme) = scheme_of(trimmed) else {
            return Ok(Self::Local(PathBuf::from(trimmed)));
        };
        let rest = &trimmed[scheme.len() + 1..];
        match scheme.to_ascii_lowercase().as_str() {
            "file" => Ok(Self::Local(file_uri_path(uri, rest)?)),
            "runs" => parse_runs(uri, rest),
            "models" => parse_models(uri, rest),
            "mlflow-artifacts" => Ok(Self::MlflowArtifacts(trimmed.to_string())),
            s if REMOTE_SCHEMES.contains(&s) => Ok(Self::Remote(trimmed.to_string())),
            _ => Err(Error::UnsupportedScheme { uri: uri.to_string(), scheme: scheme.to_string() }),
        }
    }

    /// Whether resolving this URI needs a tracking store (`runs:/` and `models:/`).
    pub fn needs_store(&self) -> bool {
        matches!(self, Self::Run { .. } | Self::Registered { .. } | Self::LoggedModel { .. })
    }
}

impl FromStr for ModelUri {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for ModelUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sub = |p: &str| {
            if p.is_empty() { String::new() } else { format!("/{p}") }
        };
        match self {
            Self::Local(p) => write!(f, "{}", p.display()),
            Self::Run { run_id, path } => write!(f, "runs:/{run_id}{}", sub(path)),
            Self::Registered { name, selector, sub_path } => match selector {
                VersionSelector::Version(v) => write!(f, "models:/{name}/{v}{}", sub(sub_path)),
                VersionSelector::Latest => write!(f, "models:/{name}/latest{}", sub(sub_path)),
                VersionSelector::Stage(s) => write!(f, "models:/{name}/{s}{}", sub(sub_path)),
                VersionSelector::Alias(a) => write!(f, "models:/{name}@{a}{}", sub(sub_path)),
            },
            Self::LoggedModel { model_id, sub_path } => {
                write!(f, "models:/{model_id}{}", sub(sub_path))
            }
            Self::MlflowArtifacts(u) | Self::Remote(u) => f.write_str(u),
        }
    }
}

/// The scheme of `s`, if it starts with one (`[A-Za-z][A-Za-z0-9+.-]*:`). A one-letter scheme is
/// not taken as one, so that Windows drive letters stay paths.
pub(crate) fn scheme_of(s: &str) -> Option<&str> {
    let end = s.find(':')?;
    let scheme = &s[..end];
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (scheme.len() > 1
        && first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(scheme)
}

/// `file:///abs`, `file:/abs`, `file://localhost/abs` and `file:relative` to a path.
pub(crate) fn file_uri_path(uri: &str, rest: &str) -> Result<PathBuf> {
    let path = if let Some(after) = rest.strip_prefix("//") {
        let (host, path) = after.split_at(after.find('/').unwrap_or(after.len()));
        if !(host.is_empty() || host == "localhost") {
            return Err(Error::invalid_uri(uri, format!("file URIs on another host ('{host}') cannot be read")));
        }
        path
    } else {
        rest
    };
    if path.is_empty() {
        return Err(Error::invalid_uri(uri, "the file URI has no path"));
    }
    Ok(PathBuf::from(percent_decode(path)))
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(s.replace('+', "%2B").as_bytes()).map(|(k, v)| k.into_owned() + &v).collect()
}

fn parse_runs(uri: &str, rest: &str) -> Result<ModelUri> {
    let body =
        rest.strip_prefix('/').ok_or_else(|| Error::invalid_uri(uri, "expected runs:/<run_id>/<artifact path>"))?;
    if body.starts_with('/') {
        return Err(Error::invalid_uri(uri, "runs:// URIs with a host are not supported; use runs:/<run_id>/<path>"));
    }
    let (run_id, path) = body.split_once('/').unwrap_or((body, ""));
    if run_id.is_empty() {
        return Err(Error::invalid_uri(uri, "the run id is missing: expected runs:/<run_id>/<artifact path>"));
    }
    Ok(ModelUri::Run { run_id: run_id.to_string(), path: path.trim_matches('/').to_string() })
}

fn parse_models(uri: &str, rest: &str) -> Result<ModelUri> {
    let usage = "expected models:/<name>/<version>, models:/<name>/latest, models:/<name>/<stage>, \
                 models:/<name>@<alias> or models:/<model_id>";
    let body = rest.strip_prefix('/').ok_or_else(|| Error::invalid_uri(uri, usage))?;
    if body.starts_with('/') {
        return Err(Error::invalid_uri(
            uri,
            "models:// URIs with a registry profile (e.g. Databricks) are not supported; set MLFLOW_REGISTRY_URI instead",
        ));
    }
    let body = body.trim_end_matches('/');
    let mut segments = body.splitn(2, '/');
    let first = segments.next().unwrap_or_default();
    let after = segments.next().unwrap_or_default();
    if first.is_empty() {
        return Err(Error::invalid_uri(uri, usage));
    }
    if let Some((name, alias)) = first.split_once('@') {
        if name.is_empty() || alias.is_empty() {
            return Err(Error::invalid_uri(uri, usage));
        }
        return Ok(ModelUri::Registered {
            name: name.to_string(),
            selector: VersionSelector::Alias(alias.to_string()),
            sub_path: after.to_string(),
        });
    }
    if after.is_empty() {
        return Ok(ModelUri::LoggedModel { model_id: first.to_string(), sub_path: String::new() });
    }
    let (second, sub_path) = after.split_once('/').unwrap_or((after, ""));
    let selector = if !second.is_empty() && second.bytes().all(|b| b.is_ascii_digit()) {
        VersionSelector::Version(second.parse().map_err(|_| Error::invalid_uri(uri, "version number too large"))?)
    } else if second.eq_ignore_ascii_case("latest") {
        VersionSelector::Latest
    } else if is_model_id(first) {
        // models:/m-<id>/<sub path>: a logged model with a path inside it.
        return Ok(ModelUri::LoggedModel { model_id: first.to_string(), sub_path: after.to_string() });
    } else {
        VersionSelector::Stage(second.to_string())
    };
    Ok(ModelUri::Registered { name: first.to_string(), selector, sub_path: sub_path.to_string() })
}

/// Whether `s` looks like an MLflow 3 logged model id (`m-` and 32 hex digits).
pub fn is_model_id(s: &str) -> bool {
    s.strip_prefix("m-").is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(name: &str, selector: VersionSelector, sub: &str) -> ModelUri {
        ModelUri::Registered { name: name.into(), selector, sub_path: sub.into() }
    }

    #[test]
    fn every_mlflow_form_parses() {
        let id = "m-a0fd365bbbf94eec91ddcc513bf4ba58";
        let cases = [
            ("models/churn", ModelUri::Local("models/churn".into())),
            ("/abs/model", ModelUri::Local("/abs/model".into())),
            ("file:///abs/model", ModelUri::Local("/abs/model".into())),
            ("file:/abs/model", ModelUri::Local("/abs/model".into())),
            ("file://localhost/abs/my%20model", ModelUri::Local("/abs/my model".into())),
            ("file:rel/model", ModelUri::Local("rel/model".into())),
            ("runs:/abc123/model", ModelUri::Run { run_id: "abc123".into(), path: "model".into() }),
            ("runs:/abc123/nested/model/", ModelUri::Run { run_id: "abc123".into(), path: "nested/model".into() }),
            ("runs:/abc123", ModelUri::Run { run_id: "abc123".into(), path: String::new() }),
            ("models:/churn/3", reg("churn", VersionSelector::Version(3), "")),
            ("models:/churn/latest", reg("churn", VersionSelector::Latest, "")),
            ("models:/churn/LATEST", reg("churn", VersionSelector::Latest, "")),
            ("models:/churn/Production", reg("churn", VersionSelector::Stage("Production".into()), "")),
            ("models:/churn@champion", reg("churn", VersionSelector::Alias("champion".into()), "")),
            ("models:/churn@champion/sub/dir", reg("churn", VersionSelector::Alias("champion".into()), "sub/dir")),
            ("models:/churn/2/sub", reg("churn", VersionSelector::Version(2), "sub")),
            ("models:/my.model-x/1", reg("my.model-x", VersionSelector::Version(1), "")),
            (&format!("models:/{id}"), ModelUri::LoggedModel { model_id: id.into(), sub_path: String::new() }),
            (&format!("models:/{id}/onnx"), ModelUri::LoggedModel { model_id: id.into(), sub_path: "onnx".into() }),
            (
                "mlflow-artifacts:/1/models/m-x/artifacts",
                ModelUri::MlflowArtifacts("mlflow-artifacts:/1/models/m-x/artifacts".into()),
            ),
            ("s3://bucket/models/churn", ModelUri::Remote("s3://bucket/models/churn".into())),
            ("abfss://c@acct.dfs.core.windows.net/m", ModelUri::Remote("abfss://c@acct.dfs.core.windows.net/m".into())),
            (
                "wasbs://c@acct.blob.core.windows.net/m",
                ModelUri::Remote("wasbs://c@acct.blob.core.windows.net/m".into()),
            ),
            ("gs://b/m", ModelUri::Remote("gs://b/m".into())),
            ("https://host/m", ModelUri::Remote("https://host/m".into())),
        ];
        for (text, expected) in cases {
            assert_eq!(ModelUri::parse(text).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in
            ["runs:/abc/model", "models:/churn/3", "models:/churn/latest", "models:/churn@champion/sub", "s3://b/k"]
        {
            assert_eq!(ModelUri::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn malformed_uris_are_refused_with_the_reason() {
        for (text, expected) in [
            ("", "empty"),
            ("runs:", "expected runs:/"),
            ("runs://host/x", "with a host"),
            ("runs://", "with a host"),
            ("runs:/", "run id is missing"),
            ("models:", "expected models:/"),
            ("models:/", "expected models:/"),
            ("models:/@alias", "expected models:/"),
            ("models:/name@", "expected models:/"),
            ("models://profile@databricks/churn/1", "registry profile"),
            ("file://otherhost/x", "another host"),
            ("ftp://host/model", "unsupported model URI scheme 'ftp'"),
            ("dbfs:/models/x", "unsupported model URI scheme 'dbfs'"),
        ] {
            let err = ModelUri::parse(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn windows_drive_letters_are_paths() {
        assert_eq!(ModelUri::parse("C:/models/x").unwrap(), ModelUri::Local("C:/models/x".into()));
    }
}
