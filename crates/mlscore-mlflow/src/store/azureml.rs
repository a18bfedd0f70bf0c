//! An Azure Machine Learning workspace as MLflow's client reaches it (the `azureml-mlflow`
//! plugin): the tracking URI `ws.get_mlflow_tracking_uri()` gives,
//! `azureml://<region>.api.azureml.ms/mlflow/v1.0/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.MachineLearningServices/workspaces/<ws>`,
//! is the workspace's MLflow REST server at `https://<region>.api.azureml.ms/mlflow/v2.0/…`
//! (the plugin rewrites the version for MLflow 2 and later), serving tracking and the model
//! registry alike.
//!
//! **Credentials** (a bearer token for `https://management.azure.com/.default`):
//! `MLFLOW_TRACKING_TOKEN` (what an Azure ML job sets), else a service principal
//! (`AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`, `AZURE_TENANT_ID`), else workload identity
//! (`AZURE_CLIENT_ID`, `AZURE_TENANT_ID`, `AZURE_FEDERATED_TOKEN_FILE`); the authority is
//! `AZURE_AUTHORITY_HOST` (default `https://login.microsoftonline.com`); else the host's managed
//! identity, where it sets `IDENTITY_ENDPOINT` (Azure ML compute, App Service) or `MSI_ENDPOINT`.
//!
//! **Files.** Run artifacts (`azureml://…/experiments/<exp>/runs/<run>/artifacts/…`) are listed
//! through the run history service and read from the SAS URL its `contentinfo` gives.

use std::path::Path;

use serde_json::Value;

use super::rest::{Auth, ClientCredentials, RestStore, TokenEndpoint, http_backoff, http_timeout, safe_join};
use super::{ArtifactFetcher, LoggedModelInfo, ModelVersion, RegisteredModel, RemoteFile, RunInfo, TrackingStore};
use crate::error::{Error, Result};

const WORKSPACE_PROVIDER: &str = "providers/Microsoft.MachineLearningServices/workspaces/";

/// An Azure ML workspace's MLflow server.
#[derive(Debug)]
pub struct AzureMlStore {
    uri: String,
    /// `https://<host>`: the run history service lives there.
    host: RestStore,
    /// The workspace's MLflow server.
    rest: RestStore,
    /// `subscriptions/<sub>/resourceGroups/<rg>/providers/…/workspaces/<ws>`.
    workspace: String,
}

/// `(https://host, subscriptions/…/workspaces/<ws>)` of an `azureml://` workspace URI.
fn parse_uri(uri: &str) -> Result<(String, String)> {
    let refuse = |reason: &str| Error::UnsupportedTrackingUri { uri: uri.to_string(), reason: reason.to_string() };
    let rest = uri.trim().strip_prefix("azureml://").ok_or_else(|| refuse("not an azureml:// URI"))?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    if path.contains("/registries/") && !path.contains("/workspaces/") {
        return Err(refuse(
            "Azure ML registries are not supported yet: use the workspace's tracking URI, or pass the model as a \
             job input (a local path)",
        ));
    }
    let start = path.find("subscriptions/").ok_or_else(|| refuse("expected …/subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.MachineLearningServices/workspaces/<name>"))?;
    let ws = &path[start..];
    let at = ws.find(WORKSPACE_PROVIDER).ok_or_else(|| refuse("no /workspaces/<name> in the URI"))?;
    let name_start = at + WORKSPACE_PROVIDER.len();
    let name = ws[name_start..].split('/').next().unwrap_or_default();
    if name.is_empty() || host.is_empty() {
        return Err(refuse("no host or no workspace name in the URI"));
    }
    // No Azure endpoint is a loopback address: there, plain HTTP is a local test double.
    let loopback = ["127.0.0.1", "localhost", "[::1]"].iter().any(|h| host == *h || host.starts_with(&format!("{h}:")));
    let scheme = if loopback { "http" } else { "https" };
    Ok((format!("{scheme}://{host}"), ws[..name_start + name.len()].to_string()))
}

/// The Entra credentials in the environment, where they came from, and what to set instead.
fn credentials(env: &dyn Fn(&str) -> Option<String>) -> Result<(Auth, String)> {
    if let Some(token) = env("MLFLOW_TRACKING_TOKEN") {
        return Ok((
            Auth::Header(format!("Bearer {token}")),
            "the workspace refused the token in MLFLOW_TRACKING_TOKEN (an Azure ML job's token lasts as long as the \
             job); unset it to use AZURE_CLIENT_ID / AZURE_CLIENT_SECRET / AZURE_TENANT_ID"
                .into(),
        ));
    }
    let authority = env("AZURE_AUTHORITY_HOST").unwrap_or_else(|| "https://login.microsoftonline.com".into());
    let scope = "https://management.azure.com/.default";
    if let (Some(id), Some(tenant)) = (env("AZURE_CLIENT_ID"), env("AZURE_TENANT_ID")) {
        let endpoint = TokenEndpoint::Url(format!("{}/{tenant}/oauth2/v2.0/token", authority.trim_end_matches('/')));
        if let Some(secret) = env("AZURE_CLIENT_SECRET") {
            return Ok((
                Auth::ClientCredentials(ClientCredentials::new(endpoint, id, secret, scope)),
                "the service principal in AZURE_CLIENT_ID / AZURE_CLIENT_SECRET / AZURE_TENANT_ID was refused; check \
                 them and that it has a role on the workspace (AzureML Data Scientist or Reader)"
                    .into(),
            ));
        }
        if let Some(file) = env("AZURE_FEDERATED_TOKEN_FILE") {
            let mut c = ClientCredentials::new(endpoint, id, String::new(), scope);
            c.assertion_file = Some(file.into());
            return Ok((
                Auth::ClientCredentials(c),
                "the workload identity in AZURE_CLIENT_ID / AZURE_TENANT_ID / AZURE_FEDERATED_TOKEN_FILE was refused"
                    .into(),
            ));
        }
    }
    // A managed identity through the host's local endpoint: App Service and Azure ML compute
    // (IDENTITY_ENDPOINT + IDENTITY_HEADER), or the older MSI_ENDPOINT (+ MSI_SECRET).
    let resource = "https://management.azure.com/";
    let client = env("AZURE_CLIENT_ID").map(|id| format!("&client_id={id}")).unwrap_or_default();
    let identity = match (env("IDENTITY_ENDPOINT"), env("IDENTITY_HEADER"), env("MSI_ENDPOINT")) {
        (Some(endpoint), Some(header), _) => Some(TokenEndpoint::ManagedIdentity {
            url: format!("{endpoint}?resource={resource}&api-version=2019-08-01{client}"),
            header: Some(("X-IDENTITY-HEADER".into(), header)),
        }),
        (_, _, Some(endpoint)) => Some(TokenEndpoint::ManagedIdentity {
            url: format!("{endpoint}?resource={resource}&api-version=2017-09-01{client}"),
            header: env("MSI_SECRET").map(|s| ("secret".to_string(), s)),
        }),
        _ => None,
    };
    if let Some(endpoint) = identity {
        return Ok((
            Auth::ClientCredentials(ClientCredentials::new(endpoint, String::new(), String::new(), scope)),
            "the managed identity of this host (IDENTITY_ENDPOINT / MSI_ENDPOINT) was refused: give it a role on the \
             workspace, or set AZURE_CLIENT_ID to the user-assigned identity to use"
                .into(),
        ));
    }
    Err(Error::Store {
        store: "Azure ML".into(),
        reason: "no Azure credentials found: set MLFLOW_TRACKING_TOKEN (an Azure ML job sets it), or AZURE_CLIENT_ID, \
                 AZURE_CLIENT_SECRET and AZURE_TENANT_ID for a service principal, or AZURE_CLIENT_ID, AZURE_TENANT_ID \
                 and AZURE_FEDERATED_TOKEN_FILE for workload identity; a managed identity is used where the host \
                 sets IDENTITY_ENDPOINT or MSI_ENDPOINT (the instance metadata service and the Azure CLI are not \
                 read yet)"
            .into(),
    })
}

impl AzureMlStore {
    /// The workspace an `azureml://` tracking URI names, with the environment's credentials.
    pub fn open(uri: &str) -> Result<Self> {
        let (host_url, workspace) = parse_uri(uri)?;
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let (auth, hint) = credentials(&env).map_err(|e| match e {
            Error::Store { reason, .. } => Error::UnsupportedTrackingUri { uri: uri.to_string(), reason },
            other => other,
        })?;
        let host = RestStore::with_options(&host_url, None, http_timeout(), http_backoff())?.with_auth(auth, hint);
        let rest = host.with_base(&format!("{host_url}/mlflow/v2.0/{workspace}"));
        Ok(Self { uri: uri.trim().to_string(), host, rest, workspace })
    }
}

impl TrackingStore for AzureMlStore {
    fn location(&self) -> String {
        format!("Azure ML workspace {} ({})", self.workspace.rsplit('/').next().unwrap_or_default(), self.uri)
    }

    fn registered_model(&self, name: &str) -> Result<Option<RegisteredModel>> {
        self.rest.registered_model(name)
    }

    fn registered_model_names(&self) -> Result<Vec<String>> {
        self.rest.registered_model_names()
    }

    fn model_version(&self, name: &str, version: u64) -> Result<Option<ModelVersion>> {
        TrackingStore::model_version(&self.rest, name, version)
    }

    fn version_by_alias(&self, name: &str, alias: &str) -> Result<Option<ModelVersion>> {
        self.rest.version_by_alias(name, alias)
    }

    fn logged_model(&self, model_id: &str) -> Result<Option<LoggedModelInfo>> {
        self.rest.logged_model(model_id)
    }

    fn run(&self, run_id: &str) -> Result<Option<RunInfo>> {
        self.rest.run(run_id)
    }

    fn logged_models_of_run(&self, run: &RunInfo) -> Result<Vec<LoggedModelInfo>> {
        self.rest.logged_models_of_run(run)
    }

    fn location_artifacts(&self, location: &str) -> Result<Option<Box<dyn ArtifactFetcher>>> {
        if !location.starts_with("azureml://") {
            return Ok(None);
        }
        let unsupported = || Error::Unsupported {
            location: location.to_string(),
            reason: "only run artifacts (azureml://…/experiments/<experiment>/runs/<run>/artifacts/…) are read from \
                     Azure ML; download the model (`az ml model download`) and pass its path"
                .into(),
        };
        let path = location.split_once("/experiments/").map(|(_, p)| p).ok_or_else(unsupported)?;
        let (experiment, rest) = path.split_once("/runs/").ok_or_else(unsupported)?;
        let (run, rest) = rest.split_once('/').unwrap_or((rest, ""));
        let root = match rest.strip_prefix("artifacts") {
            Some(r) => r.trim_matches('/').to_string(),
            None => return Err(unsupported()),
        };
        Ok(Some(Box::new(RunHistoryFiles {
            rest: self.host.clone(),
            artifacts: format!("/history/v1.0/{}/experiments/{experiment}/runs/{run}/artifacts", self.workspace),
            run_id: run.to_string(),
            root,
        })))
    }
}

/// A run's artifacts in Azure ML's run history: a flat listing, and a SAS URL per file.
#[derive(Debug)]
struct RunHistoryFiles {
    rest: RestStore,
    /// `/history/v1.0/…/runs/<run>/artifacts`.
    artifacts: String,
    run_id: String,
    /// The directory below the run's artifacts.
    root: String,
}

impl ArtifactFetcher for RunHistoryFiles {
    fn describe(&self) -> String {
        format!("run {} of {}, through the run history's SAS URLs", self.run_id, self.rest.base())
    }

    fn list(&self) -> Result<Vec<RemoteFile>> {
        let mut files = Vec::new();
        let mut token = String::new();
        loop {
            let q: Vec<(&str, &str)> =
                if token.is_empty() { Vec::new() } else { vec![("continuationToken", token.as_str())] };
            let page = self.rest.api_get(&self.artifacts, &q)?.unwrap_or_default();
            for a in page["value"].as_array().into_iter().flatten() {
                let path = a["path"].as_str().unwrap_or_default();
                let rel = if self.root.is_empty() {
                    Some(path)
                } else {
                    path.strip_prefix(&self.root).and_then(|r| r.strip_prefix('/'))
                };
                if let Some(rel) = rel.filter(|r| !r.is_empty()) {
                    files.push(RemoteFile { path: rel.to_string(), size: None });
                }
            }
            match page["continuationToken"].as_str() {
                Some(t) if !t.is_empty() => token = t.to_string(),
                _ => break,
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    fn download(&self, files: &[RemoteFile], dest: &Path) -> Result<u64> {
        let endpoint = format!("{}/contentinfo", self.artifacts);
        let from = format!("{}{endpoint}", self.rest.base());
        let mut bytes = 0;
        for f in files {
            let full = if self.root.is_empty() { f.path.clone() } else { format!("{}/{}", self.root, f.path) };
            let info: Value = self.rest.api_get(&endpoint, &[("path", full.as_str())])?.unwrap_or_default();
            let uri = info["contentUri"].as_str().ok_or_else(|| Error::Remote {
                url: from.clone(),
                reason: format!("no content URL for {full} of run {}", self.run_id),
            })?;
            let target = safe_join(dest, &f.path).ok_or_else(|| Error::Remote {
                url: from.clone(),
                reason: format!("the artifact name '{}' would be written outside {}; refused", f.path, dest.display()),
            })?;
            bytes += self.rest.download(uri, &[], false, &target, f.size)?;
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_uris_become_the_v2_mlflow_endpoint() {
        let uri = "azureml://eastus.api.azureml.ms/mlflow/v1.0/subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices/workspaces/w";
        let (host, ws) = parse_uri(uri).unwrap();
        assert_eq!(host, "https://eastus.api.azureml.ms");
        assert_eq!(ws, "subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices/workspaces/w");
        let err = parse_uri("azureml://eastus.api.azureml.ms/mlflow/v2.0/subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices/registries/shared")
            .unwrap_err()
            .to_string();
        assert!(err.contains("registries are not supported"), "{err}");
        assert!(parse_uri("azureml://host/nothing").is_err());
    }

    #[test]
    fn the_job_token_comes_first_and_missing_credentials_say_what_to_set() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let (auth, _) = credentials(&env(&[("MLFLOW_TRACKING_TOKEN", "t"), ("AZURE_CLIENT_ID", "c")])).unwrap();
        assert!(matches!(auth, Auth::Header(ref h) if h == "Bearer t"));
        let (auth, _) = credentials(&env(&[
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_SECRET", "s"),
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_AUTHORITY_HOST", "https://login.example/"),
        ]))
        .unwrap();
        assert!(
            matches!(auth, Auth::ClientCredentials(ref c) if matches!(c.endpoint, TokenEndpoint::Url(ref u) if u == "https://login.example/t/oauth2/v2.0/token"))
        );
        let err = credentials(&env(&[])).err().unwrap().to_string();
        assert!(err.contains("MLFLOW_TRACKING_TOKEN") && err.contains("AZURE_FEDERATED_TOKEN_FILE"), "{err}");
    }
}
