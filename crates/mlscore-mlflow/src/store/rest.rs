//! An MLflow tracking server, over its REST API (`http://` and `https://` tracking URIs).
//!
//! The calls are the ones MLflow's own client makes (`/api/2.0/mlflow/...`), with its
//! authentication (`MLFLOW_TRACKING_TOKEN` as a bearer token, or `MLFLOW_TRACKING_USERNAME` and
//! `MLFLOW_TRACKING_PASSWORD` as basic auth), retries with exponential backoff on connection
//! failures, 408, 429 and 5xx replies, and a timeout per request. Credentials never appear in
//! messages: errors name the server and the endpoint only.
//!
//! Artifacts behind the server's proxy (`mlflow-artifacts:/…`) are listed and downloaded with
//! [`RestStore::download_artifacts`].

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Component, Path};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

use super::{LoggedModelInfo, ModelVersion, RegisteredModel, RunInfo, TrackingStore};
use crate::error::{Error, Result};

/// Requests tried at most this many times.
/// Attempts of a request when `MLFLOW_HTTP_REQUEST_MAX_RETRIES` is not set (4 retries; MLflow's
/// client makes 7 with longer waits).
const ATTEMPTS: u32 = 5;

/// Most entries one model's artifact listings may hold, and how deep they may nest.
pub(crate) const MAX_ARTIFACTS: usize = 100_000;
pub(crate) const MAX_ARTIFACT_DEPTH: usize = 64;

/// Most pages one paginated answer may take.
const MAX_PAGES: usize = 10_000;

/// An MLflow tracking server.
#[derive(Clone)]
pub struct RestStore {
    /// The tracking URI without a trailing slash (and without credentials).
    base: String,
    /// How requests are authorized (never printed); shared by clones, with its cached token.
    auth: std::sync::Arc<Auth>,
    /// Where the credentials came from and what to set instead, for 401 and 403 answers.
    auth_hint: String,
    agent: ureq::Agent,
    /// First retry delay; doubled every attempt.
    backoff: Duration,
    /// Attempts of a request (or a download) that fails in a way worth retrying.
    attempts: u32,
}

impl std::fmt::Debug for RestStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestStore").field("base", &self.base).field("auth", &self.auth).finish_non_exhaustive()
    }
}

/// How requests to a server are authorized.
pub(crate) enum Auth {
    /// No `Authorization` header.
    None,
    /// A fixed `Authorization` header value: a bearer token, basic credentials.
    Header(String),
    /// An OAuth 2.0 client-credentials grant: a token fetched when first needed and fetched
    /// again shortly before it expires or when the server refuses it.
    ClientCredentials(ClientCredentials),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Header(_) => "<redacted header>",
            Self::ClientCredentials(_) => "<OAuth client credentials>",
        })
    }
}

/// An OAuth 2.0 client-credentials grant (Databricks OAuth M2M, Microsoft Entra service principals).
pub(crate) struct ClientCredentials {
    /// The token endpoint, or where to discover it (an OAuth authorization server metadata document).
    pub(crate) endpoint: TokenEndpoint,
    /// The client id.
    pub(crate) client_id: String,
    /// The client secret (never printed).
    pub(crate) client_secret: String,
    /// `scope` of the request.
    pub(crate) scope: String,
    /// Whether the client authenticates with HTTP basic auth (Databricks) or form fields (Entra).
    pub(crate) basic_auth: bool,
    /// A federated token file (workload identity) whose contents are sent as the client
    /// assertion instead of the secret, read anew for every token.
    pub(crate) assertion_file: Option<std::path::PathBuf>,
    /// The last token and when to stop using it.
    /// Shared by every client of the same identity in the process (a tracking and a registry
    /// store ask for one token, not two).
    pub(crate) cached: std::sync::Arc<std::sync::Mutex<Option<(String, std::time::Instant)>>>,
}

/// Where an OAuth token comes from.
pub(crate) enum TokenEndpoint {
    /// This URL.
    Url(String),
    /// The `token_endpoint` of this metadata document (`/.well-known/oauth-authorization-server`).
    Discover(String),
    /// A managed identity's local token endpoint (a GET with the resource in the URL, and the
    /// secret header it requires); the client id and secret are not used.
    ManagedIdentity {
        /// The endpoint with its query.
        url: String,
        /// The header proving the caller runs on the host (`X-IDENTITY-HEADER`, `secret`).
        header: Option<(String, String)>,
    },
}

impl TokenEndpoint {
    /// Where tokens come from (a URL, never a secret).
    fn describe(&self) -> &str {
        match self {
            Self::Url(u) | Self::Discover(u) | Self::ManagedIdentity { url: u, .. } => u,
        }
    }
}

/// The process's token cache for one identity (token endpoint, client id, scope).
fn token_cache(identity: &str) -> std::sync::Arc<std::sync::Mutex<Option<(String, std::time::Instant)>>> {
    type Caches =
        std::collections::HashMap<String, std::sync::Arc<std::sync::Mutex<Option<(String, std::time::Instant)>>>>;
    static CACHES: std::sync::OnceLock<std::sync::Mutex<Caches>> = std::sync::OnceLock::new();
    let mut caches = CACHES.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    caches.entry(identity.to_string()).or_default().clone()
}

impl ClientCredentials {
    pub(crate) fn new(endpoint: TokenEndpoint, client_id: String, client_secret: String, scope: &str) -> Self {
        let cached = token_cache(&format!("{}\n{client_id}\n{scope}", endpoint.describe()));
        Self {
            endpoint,
            client_id,
            client_secret,
            scope: scope.to_string(),
            basic_auth: false,
            assertion_file: None,
            cached,
        }
    }
}

impl RestStore {
    /// A client for the server at `uri`, authenticated from MLflow's environment variables.
    pub fn open(uri: &str) -> Result<Self> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let auth = match (env("MLFLOW_TRACKING_TOKEN"), env("MLFLOW_TRACKING_USERNAME")) {
            (_, Some(user)) => {
                let password = env("MLFLOW_TRACKING_PASSWORD").unwrap_or_default();
                Some(basic_auth(&user, &password))
            }
            (Some(token), None) => Some(format!("Bearer {token}")),
            (None, None) => None,
        };
        Self::with_options(uri, auth, http_timeout(), http_backoff())
    }

    /// A client with explicit options: an `Authorization` header value, the timeout of one
    /// request, and the first retry delay (doubled at each retry). The number of attempts is
    /// `MLFLOW_HTTP_REQUEST_MAX_RETRIES` + 1 (default 5).
    pub fn with_options(uri: &str, auth: Option<String>, timeout: Duration, backoff: Duration) -> Result<Self> {
        let parsed = url::Url::parse(uri).map_err(|e| Error::UnsupportedTrackingUri {
            uri: uri.to_string(),
            reason: format!("not a valid URL: {e}"),
        })?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(Error::UnsupportedTrackingUri {
                uri: redact(&parsed),
                reason: "credentials in the tracking URI are not used; set MLFLOW_TRACKING_USERNAME and \
                         MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN"
                    .into(),
            });
        }
        let agent: ureq::Agent =
            ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(false).build().into();
        let auth_hint = match auth {
            Some(_) => "the credentials in MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD were refused; check them".into(),
            None => "set MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD".into(),
        };
        let auth = std::sync::Arc::new(auth.map_or(Auth::None, Auth::Header));
        Ok(Self {
            base: uri.trim_end_matches('/').to_string(),
            auth,
            auth_hint,
            agent,
            backoff,
            attempts: http_attempts(),
        })
    }

    /// This client with other credentials; `hint` says where they came from and what to set
    /// when the server refuses them.
    pub(crate) fn with_auth(mut self, auth: Auth, hint: String) -> Self {
        self.auth = std::sync::Arc::new(auth);
        self.auth_hint = hint;
        self
    }

    /// The server's base URL.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// The same client and credentials (one token cache) for another base URL of the service.
    pub(crate) fn with_base(&self, base: &str) -> Self {
        Self { base: base.trim_end_matches('/').to_string(), ..self.clone() }
    }

    /// GET `<base><path>` with query parameters (a JSON reply); `None` on 404 and
    /// `RESOURCE_DOES_NOT_EXIST`.
    pub(crate) fn api_get(&self, path: &str, query: &[(&str, &str)]) -> Result<Option<Value>> {
        self.get_json(&format!("{}{path}", self.base), query)
    }

    /// GET a lookup by name (a model version, an alias): `None` when the server says there is no
    /// such thing, which MLflow's server does with 400 as well as 404 (`INVALID_PARAMETER_VALUE`,
    /// "alias … not found"); the caller then says what there is.
    pub(crate) fn lookup(&self, path: &str, query: &[(&str, &str)]) -> Result<Option<Value>> {
        match self.api_get(path, query) {
            Err(Error::Remote { reason, .. }) if reason.starts_with("HTTP 400") => Ok(None),
            other => other,
        }
    }

    /// POST a JSON body to `<base><path>`.
    pub(crate) fn api_post(&self, path: &str, body: &Value) -> Result<Option<Value>> {
        let url = format!("{}{path}", self.base);
        let body = body.to_string();
        self.call(&url, |agent| {
            self.authorized(agent.post(&url)).header("Content-Type", "application/json").send(body.as_str())
        })
    }

    /// GET `/api/2.0/mlflow/<endpoint>` with query parameters; `None` on 404 and on MLflow's
    /// `RESOURCE_DOES_NOT_EXIST`.
    fn get(&self, endpoint: &str, query: &[(&str, &str)]) -> Result<Option<Value>> {
        self.get_json(&format!("{}/api/2.0/mlflow/{endpoint}", self.base), query)
    }

    /// GET a JSON document from `url` with query parameters.
    fn get_json(&self, url: &str, query: &[(&str, &str)]) -> Result<Option<Value>> {
        self.call(url, |agent| {
            let mut req = self.authorized(agent.get(url));
            for (k, v) in query {
                req = req.query(*k, *v);
            }
            req.call()
        })
    }

    /// POST a JSON body to `/api/2.0/mlflow/<endpoint>`.
    fn post(&self, endpoint: &str, body: &Value) -> Result<Option<Value>> {
        self.api_post(&format!("/api/2.0/mlflow/{endpoint}"), body)
    }

    /// The request with the credentials' `Authorization` header, if there are credentials. A
    /// token that cannot be obtained leaves the header out; the server's 401 then says so, and
    /// [`Self::call`] reports the token endpoint's own error.
    fn authorized<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match self.auth.as_ref() {
            Auth::None => req,
            Auth::Header(a) => req.header("Authorization", a),
            Auth::ClientCredentials(c) => match self.oauth_token(c) {
                Ok(token) => req.header("Authorization", format!("Bearer {token}")),
                Err(_) => req,
            },
        }
    }

    /// The client-credentials token: the cached one while it has more than a minute left, else
    /// a new one from the token endpoint.
    fn oauth_token(&self, c: &ClientCredentials) -> Result<String> {
        let mut cached = c.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((token, until)) = cached.as_ref()
            && std::time::Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let token_url = match &c.endpoint {
            TokenEndpoint::ManagedIdentity { url, header } => {
                let reply = self.fetch_json(url, |a| {
                    let req = a.get(url);
                    match header {
                        Some((k, v)) => req.header(k.as_str(), v.as_str()).call(),
                        None => req.call(),
                    }
                })?;
                return self.keep_token(&mut cached, url, &reply);
            }
            TokenEndpoint::Url(u) => u.clone(),
            TokenEndpoint::Discover(doc) => {
                let meta = self.fetch_json(doc, |a| a.get(doc).call())?;
                meta["token_endpoint"]
                    .as_str()
                    .ok_or_else(|| self.remote(doc, "the OAuth metadata has no token_endpoint".into()))?
                    .to_string()
            }
        };
        let assertion = match &c.assertion_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| Error::io("cannot read the federated token file", path, e))?
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        let mut form = vec![("grant_type", "client_credentials"), ("scope", c.scope.as_str())];
        if !c.basic_auth {
            form.push(("client_id", c.client_id.as_str()));
            match &assertion {
                Some(a) => {
                    form.push(("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"));
                    form.push(("client_assertion", a.as_str()));
                }
                None => form.push(("client_secret", c.client_secret.as_str())),
            }
        }
        let reply = self.fetch_json(&token_url, |a| {
            let req = a.post(&token_url);
            let req = if c.basic_auth {
                req.header("Authorization", basic_auth(&c.client_id, &c.client_secret))
            } else {
                req
            };
            req.send_form(form.iter().copied())
        })?;
        self.keep_token(&mut cached, &token_url, &reply)
    }

    /// The token of a token endpoint's answer, cached until a minute before it expires
    /// (`expires_in` seconds, or `expires_on` as a Unix time, as managed identities say it).
    fn keep_token(
        &self,
        cached: &mut Option<(String, std::time::Instant)>,
        url: &str,
        reply: &Value,
    ) -> Result<String> {
        let token = reply["access_token"]
            .as_str()
            .ok_or_else(|| self.remote(url, "the token endpoint's answer has no access_token".into()))?
            .to_string();
        let number = |v: &Value| v.as_u64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()));
        let now_unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let lifetime = number(&reply["expires_in"])
            .or_else(|| number(&reply["expires_on"]).map(|on| on.saturating_sub(now_unix)))
            .unwrap_or(3600);
        let until = std::time::Instant::now() + Duration::from_secs(lifetime.saturating_sub(60).max(1));
        *cached = Some((token.clone(), until));
        Ok(token)
    }

    /// A JSON document from an OAuth endpoint; its errors name the endpoint and never the secret.
    fn fetch_json(
        &self,
        url: &str,
        send: impl Fn(&ureq::Agent) -> std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value> {
        let mut resp = self.with_retries(url, || send(&self.agent))?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().map_err(|e| self.remote(url, format!("reading the reply: {e}")))?;
        let json: Value = serde_json::from_str(&text).unwrap_or_default();
        if status != 200 {
            let said = json["error_description"].as_str().or(json["error"].as_str()).unwrap_or("");
            return Err(self.remote(url, format!("HTTP {status} from the token endpoint {said}; {}", self.auth_hint)));
        }
        Ok(json)
    }

    /// Forgets a client-credentials token the server refused; whether there was one to forget.
    fn forget_token(&self) -> bool {
        match self.auth.as_ref() {
            Auth::ClientCredentials(c) => c.cached.lock().unwrap_or_else(|e| e.into_inner()).take().is_some(),
            _ => false,
        }
    }

    /// Sends a request, retrying transient failures; parses a JSON reply.
    fn call(
        &self,
        url: &str,
        send: impl Fn(&ureq::Agent) -> std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Option<Value>> {
        if let Auth::ClientCredentials(c) = self.auth.as_ref() {
            self.oauth_token(c)?;
        }
        let mut resp = self.with_retries(url, || send(&self.agent))?;
        if resp.status().as_u16() == 401 && self.forget_token() {
            // An OAuth token revoked or expired early: one more try with a fresh one.
            if let Auth::ClientCredentials(c) = self.auth.as_ref() {
                self.oauth_token(c)?;
            }
            resp = self.with_retries(url, || send(&self.agent))?;
        }
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().map_err(|e| self.remote(url, format!("reading the reply: {e}")))?;
        let json: Value = if text.trim().is_empty() {
            Value::Object(Default::default())
        } else {
            serde_json::from_str(&text).map_err(|e| self.remote(url, format!("the reply is not JSON ({e})")))?
        };
        match status {
            200..=299 => Ok(Some(json)),
            404 => Ok(None),
            _ if json["error_code"] == "RESOURCE_DOES_NOT_EXIST" => Ok(None),
            401 | 403 => {
                let said = json["message"].as_str().map(|m| format!(" ({m})")).unwrap_or_default();
                Err(self.remote(url, format!("HTTP {status}: not authorized{said}; {}", self.auth_hint)))
            }
            _ => Err(self.remote(url, format!("HTTP {status}: {}", json["message"].as_str().unwrap_or(text.trim())))),
        }
    }

    /// Runs `send` up to `attempts` times while it fails in a way worth retrying.
    fn with_retries(
        &self,
        url: &str,
        send: impl Fn() -> std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let mut delay = self.backoff;
        let mut attempt = 1;
        loop {
            let outcome = send();
            let retry = match &outcome {
                Ok(r) => matches!(r.status().as_u16(), 408 | 429 | 500 | 502 | 503 | 504),
                Err(e) => transient(e),
            };
            if !retry || attempt >= self.attempts {
                return match outcome {
                    Ok(r) if retry => Err(self.remote(
                        url,
                        format!(
                            "HTTP {} after {attempt} attempts; is the server overloaded or down?",
                            r.status().as_u16()
                        ),
                    )),
                    Ok(r) => Ok(r),
                    Err(e) => Err(self.remote(
                        url,
                        if retry {
                            format!("{e} (after {attempt} attempts); is the server running?")
                        } else {
                            e.to_string()
                        },
                    )),
                };
            }
            std::thread::sleep(delay);
            delay *= 2;
            attempt += 1;
        }
    }

    fn remote(&self, url: &str, reason: String) -> Error {
        Error::Remote { url: url.to_string(), reason }
    }

    /// Whether anything is stored under `mlflow-artifacts:/<path>`.
    pub fn has_artifacts(&self, artifact_uri: &str) -> Result<bool> {
        Ok(!self.list(&artifact_path(artifact_uri)?)?.is_empty())
    }

    /// One level of the artifact proxy's listing of `dir`: `{path, is_dir, file_size}` entries
    /// named relative to `dir`.
    fn list(&self, dir: &str) -> Result<Vec<Value>> {
        let listing = self.get_json(&format!("{}/api/2.0/mlflow-artifacts/artifacts", self.base), &[("path", dir)])?;
        Ok(listing.unwrap_or_default()["files"].as_array().cloned().unwrap_or_default())
    }

    /// Downloads every file under `mlflow-artifacts:/<path>` (recursively) into `dest`, through
    /// the server's artifact proxy. Entry names that would leave `dest` are refused.
    pub fn download_artifacts(&self, artifact_uri: &str, dest: &Path) -> Result<u64> {
        let path = artifact_path(artifact_uri)?;
        let (mut bytes, mut entries) = (0, 0usize);
        let mut todo = vec![String::new()];
        while let Some(rel) = todo.pop() {
            let dir = join_rel(&path, &rel);
            let files = self.list(&dir)?;
            if files.is_empty() && rel.is_empty() {
                return Err(Error::NotFound {
                    uri: artifact_uri.to_string(),
                    what: format!("no artifacts under {artifact_uri} on {}", self.base),
                    hint: Some("the model's files were deleted, or the server does not proxy artifacts".into()),
                });
            }
            for f in files {
                let name = f["path"].as_str().unwrap_or_default();
                let listing = || format!("{}/api/2.0/mlflow-artifacts/artifacts?path={dir}", self.base);
                // A listing that names its own directory, or nests without end, would never finish.
                entries += 1;
                let refuse = |reason: String| Error::Remote { url: listing(), reason };
                if name.is_empty() || name == "." {
                    return Err(refuse("an entry of the listing has no name; refused".into()));
                }
                if entries > MAX_ARTIFACTS {
                    return Err(refuse(format!("more than {MAX_ARTIFACTS} artifacts listed; refused")));
                }
                let child = join_rel(&rel, name);
                if child.split('/').count() > MAX_ARTIFACT_DEPTH {
                    return Err(refuse(format!(
                        "artifacts nested deeper than {MAX_ARTIFACT_DEPTH} directories; refused"
                    )));
                }
                let target = safe_join(dest, &child).ok_or_else(|| Error::Remote {
                    url: format!("{}/api/2.0/mlflow-artifacts/artifacts?path={dir}", self.base),
                    reason: format!("the artifact name '{name}' would be written outside {}; refused", dest.display()),
                })?;
                if f["is_dir"].as_bool().unwrap_or(false) {
                    std::fs::create_dir_all(&target).map_err(|e| Error::io("cannot create", &target, e))?;
                    todo.push(child);
                } else {
                    bytes += self.download_file(&join_rel(&path, &child), &target, f["file_size"].as_u64())?;
                }
            }
        }
        Ok(bytes)
    }

    /// Downloads one artifact; `size` is what the listing said it holds, checked on arrival so
    /// that a connection that ends early never leaves a cut file behind as if complete.
    fn download_file(&self, path: &str, target: &Path, size: Option<u64>) -> Result<u64> {
        let url = format!("{}/api/2.0/mlflow-artifacts/artifacts/{}", self.base, encode_path(path));
        self.download(&url, &[], true, target, size)
    }

    /// Downloads `url` into `target` with extra `headers`, authorized with this client's
    /// credentials or (for signed URLs, whose query is the credential) not at all. Errors name
    /// the URL without its query. `size`, when known, is checked on arrival so that a connection
    /// that ends early never leaves a cut file behind as if complete.
    pub(crate) fn download(
        &self,
        url: &str,
        headers: &[(String, String)],
        authorized: bool,
        target: &Path,
        size: Option<u64>,
    ) -> Result<u64> {
        let shown = without_query(url);
        // A body that breaks off or ends short is fetched again from its start, like a failed request.
        let mut delay = self.backoff;
        let mut attempt = 1;
        loop {
            match self.download_once(url, &shown, headers, authorized, target, size)? {
                Ok(n) => return Ok(n),
                Err(_) if attempt < self.attempts => {
                    std::thread::sleep(delay);
                    delay *= 2;
                    attempt += 1;
                }
                Err(cut) => {
                    return Err(self.remote(&shown, format!("{cut} (after {attempt} attempts); run again to retry")));
                }
            }
        }
    }

    /// One download of `url`: the bytes written, or why the body arrived incomplete.
    fn download_once(
        &self,
        url: &str,
        shown: &str,
        headers: &[(String, String)],
        authorized: bool,
        target: &Path,
        size: Option<u64>,
    ) -> Result<std::result::Result<u64, String>> {
        let send = || {
            let mut req = self.agent.get(url);
            for (k, v) in headers {
                req = req.header(k.as_str(), v.as_str());
            }
            if authorized { self.authorized(req).call() } else { req.call() }
        };
        let mut resp = self.with_retries(shown, send).map_err(|e| redact_error(e, url, shown))?;
        let status = resp.status().as_u16();
        if status != 200 {
            let hint = match status {
                401 | 403 if !authorized => "; the signed URL was refused (expired?): run again for a new one",
                401 | 403 => "; not authorized",
                _ => "",
            };
            return Err(self.remote(shown, format!("HTTP {status} while downloading{hint}")));
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io("cannot create", parent, e))?;
        }
        let mut file = std::fs::File::create(target).map_err(|e| Error::io("cannot create", target, e))?;
        // Read errors are the connection's (worth another attempt); write errors the disk's.
        let mut body = resp.body_mut().as_reader();
        let mut buf = vec![0u8; 64 * 1024];
        let mut n = 0u64;
        loop {
            let got = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(got) => got,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Ok(Err(format!("download interrupted: {}", e.to_string().replace(url, shown)))),
            };
            file.write_all(&buf[..got]).map_err(|e| Error::io("cannot write", target, e))?;
            n += got as u64;
        }
        if let Some(size) = size.filter(|s| *s != n) {
            return Ok(Err(format!("download cut short: {n} of {size} bytes arrived")));
        }
        file.flush().map_err(|e| Error::io("cannot write", target, e))?;
        Ok(Ok(n))
    }

    /// A registered model with its aliases and every version, from the registry API under `api`
    /// (`/api/2.0/mlflow/`, or Unity Catalog's `/api/2.0/mlflow/unity-catalog/`); `search` is
    /// added to each version search's query.
    pub(crate) fn registered_model_at(
        &self,
        api: &str,
        name: &str,
        search: &[(&str, &str)],
    ) -> Result<Option<RegisteredModel>> {
        let Some(model) = self.api_get(&format!("{api}registered-models/get"), &[("name", name)])? else {
            return Ok(None);
        };
        let aliases: BTreeMap<String, u64> = model["registered_model"]["aliases"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| Some((a["alias"].as_str()?.to_string(), a["version"].as_str()?.parse().ok()?)))
            .collect();
        let mut versions = Vec::new();
        let filter = format!("name='{}'", name.replace('\'', "\\'"));
        let endpoint = format!("{api}model-versions/search");
        paged(
            &endpoint,
            |token| {
                let mut query = vec![("filter", filter.as_str())];
                query.extend_from_slice(search);
                query.extend(token.map(|t| ("page_token", t)));
                Ok(self.api_get(&endpoint, &query)?.unwrap_or_default())
            },
            |page| versions.extend(page["model_versions"].as_array().into_iter().flatten().filter_map(version_from)),
        )?;
        versions.sort_by_key(|v| v.version);
        Ok(Some(RegisteredModel { name: name.to_string(), versions, aliases }))
    }

    /// The names in the registry under `api` (the first `max_results`, for hints).
    pub(crate) fn registered_model_names_at(&self, api: &str, max_results: &str) -> Result<Vec<String>> {
        let page = self
            .api_get(&format!("{api}registered-models/search"), &[("max_results", max_results)])?
            .unwrap_or_default();
        Ok(page["registered_models"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["name"].as_str().map(str::to_string))
            .collect())
    }
}

/// A model version in MLflow's REST shape (`version` a string, as MLflow sends it, or a number).
pub(crate) fn version_from(v: &Value) -> Option<ModelVersion> {
    let s = |k: &str| v[k].as_str().map(str::to_string);
    Some(ModelVersion {
        name: s("name")?,
        version: v["version"].as_str().and_then(|s| s.parse().ok()).or_else(|| v["version"].as_u64())?,
        source: s("source"),
        storage_location: s("storage_location"),
        run_id: s("run_id").filter(|r| !r.is_empty()),
        status: s("status"),
        current_stage: s("current_stage"),
    })
}

/// Calls `page` with each page token in turn (none first) until a reply has no
/// `next_page_token`, handing every reply to `each`: MLflow's pagination.
/// `url` names the endpoint in errors.
pub(crate) fn paged(
    url: &str,
    mut page: impl FnMut(Option<&str>) -> Result<Value>,
    mut each: impl FnMut(&Value),
) -> Result<()> {
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let reply = page(token.as_deref())?;
        each(&reply);
        match reply["next_page_token"].as_str() {
            // A server that hands back the token it was given would page forever.
            Some(t) if token.as_deref() == Some(t) => {
                return Err(Error::Remote {
                    url: url.to_string(),
                    reason: format!("the server answered page token '{t}' with the same token; stopped paging"),
                });
            }
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => return Ok(()),
        }
    }
    Err(Error::Remote { url: url.to_string(), reason: format!("more than {MAX_PAGES} pages; stopped paging") })
}

impl TrackingStore for RestStore {
    fn location(&self) -> String {
        self.base.clone()
    }

    fn registered_model(&self, name: &str) -> Result<Option<RegisteredModel>> {
        self.registered_model_at("/api/2.0/mlflow/", name, &[("max_results", "1000")])
    }

    fn model_version(&self, name: &str, version: u64) -> Result<Option<ModelVersion>> {
        let v = version.to_string();
        let reply = self.lookup("/api/2.0/mlflow/model-versions/get", &[("name", name), ("version", &v)])?;
        Ok(reply.and_then(|r| version_from(&r["model_version"])))
    }

    fn version_by_alias(&self, name: &str, alias: &str) -> Result<Option<ModelVersion>> {
        let reply = self.lookup("/api/2.0/mlflow/registered-models/alias", &[("name", name), ("alias", alias)])?;
        Ok(reply.and_then(|r| version_from(&r["model_version"])))
    }

    fn registered_model_names(&self) -> Result<Vec<String>> {
        self.registered_model_names_at("/api/2.0/mlflow/", "1000")
    }

    fn logged_model(&self, model_id: &str) -> Result<Option<LoggedModelInfo>> {
        let Some(reply) = self.get(&format!("logged-models/{model_id}"), &[])? else {
            return Ok(None);
        };
        Ok(logged_model_info(&reply["model"]["info"]))
    }

    fn run(&self, run_id: &str) -> Result<Option<RunInfo>> {
        let Some(reply) = self.get("runs/get", &[("run_id", run_id)])? else {
            return Ok(None);
        };
        let info = &reply["run"]["info"];
        Ok(Some(RunInfo {
            run_id: run_id.to_string(),
            experiment_id: info["experiment_id"].as_str().unwrap_or_default().to_string(),
            artifact_uri: info["artifact_uri"].as_str().unwrap_or_default().to_string(),
        }))
    }

    fn logged_models_of_run(&self, run: &RunInfo) -> Result<Vec<LoggedModelInfo>> {
        let mut found = Vec::new();
        paged(
            "/api/2.0/mlflow/logged-models/search",
            |token| {
                let mut body = serde_json::json!({ "experiment_ids": [run.experiment_id], "max_results": 100 });
                if let Some(t) = token {
                    body["page_token"] = Value::String(t.to_string());
                }
                Ok(self.post("logged-models/search", &body)?.unwrap_or_default())
            },
            |page| {
                found.extend(
                    page["models"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|m| logged_model_info(&m["info"]))
                        .filter(|m| m.source_run_id.as_deref() == Some(run.run_id.as_str())),
                )
            },
        )?;
        Ok(found)
    }

    fn remote_artifacts(&self) -> Option<&RestStore> {
        Some(self)
    }
}

fn logged_model_info(info: &Value) -> Option<LoggedModelInfo> {
    let s = |k: &str| info[k].as_str().map(str::to_string);
    Some(LoggedModelInfo {
        model_id: s("model_id")?,
        experiment_id: s("experiment_id").unwrap_or_default(),
        name: s("name").unwrap_or_default(),
        artifact_location: s("artifact_uri")?,
        source_run_id: s("source_run_id"),
    })
}

/// `Basic <base64(user:password)>`.
pub(crate) fn basic_auth(user: &str, password: &str) -> String {
    format!("Basic {}", BASE64.encode(format!("{user}:{password}")))
}

/// `MLFLOW_HTTP_REQUEST_MAX_RETRIES` + 1 attempts, as MLflow's client reads it (default 5).
pub(crate) fn http_attempts() -> u32 {
    std::env::var("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .map_or(ATTEMPTS, |r| r.saturating_add(1))
}

/// The first retry delay: a quarter of `MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR` seconds (MLflow's
/// default factor, 2, gives 0.5 s, then 1, 2, 4 s).
pub(crate) fn http_backoff() -> Duration {
    let factor = std::env::var("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|f| f.is_finite() && *f >= 0.0)
        .unwrap_or(2.0);
    Duration::from_secs_f64((factor / 4.0).min(60.0))
}

/// `MLFLOW_HTTP_REQUEST_TIMEOUT` (seconds, default 120), as MLflow's client reads it.
pub(crate) fn http_timeout() -> Duration {
    let secs = std::env::var("MLFLOW_HTTP_REQUEST_TIMEOUT").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(120);
    Duration::from_secs(secs)
}

/// A URL without its query string and fragment: what a signed URL may show of itself.
pub(crate) fn without_query(url: &str) -> String {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    url[..end].to_string()
}

/// An error whose text may quote a signed URL, with the URL's secret part removed.
fn redact_error(e: Error, url: &str, shown: &str) -> Error {
    match e {
        Error::Remote { url: u, reason } => {
            Error::Remote { url: u.replace(url, shown), reason: reason.replace(url, shown) }
        }
        other => other,
    }
}

/// Failures worth another attempt: the server not answering (yet, or for a moment).
fn transient(e: &ureq::Error) -> bool {
    matches!(
        e,
        ureq::Error::Io(_) | ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed | ureq::Error::HostNotFound
    )
}

/// The path of `mlflow-artifacts:/<path>` (a host in the URI, `mlflow-artifacts://h/<path>`,
/// is the tracking server's, which this client already talks to).
fn artifact_path(uri: &str) -> Result<String> {
    let rest = uri.strip_prefix("mlflow-artifacts:").ok_or_else(|| Error::InvalidUri {
        uri: uri.to_string(),
        reason: "expected an mlflow-artifacts: URI".into(),
    })?;
    let path = match rest.strip_prefix("//") {
        Some(with_host) => with_host.split_once('/').map_or("", |(_, p)| p),
        None => rest,
    };
    Ok(path.trim_matches('/').to_string())
}

fn join_rel(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

/// `dest/rel`, or `None` when `rel` is absolute or climbs out of `dest`.
pub(crate) fn safe_join(dest: &Path, rel: &str) -> Option<std::path::PathBuf> {
    let rel = Path::new(rel);
    if rel.components().all(|c| matches!(c, Component::Normal(_))) { Some(dest.join(rel)) } else { None }
}

/// Percent-encodes a path for a URL, keeping its slashes.
fn encode_path(path: &str) -> String {
    path.split('/')
        .map(|seg| url::form_urlencoded::byte_serialize(seg.as_bytes()).collect::<String>().replace('+', "%20"))
        .collect::<Vec<_>>()
        .join("/")
}

fn redact(url: &url::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_is_standard_base64() {
        assert_eq!(BASE64.encode(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(BASE64.encode(b"a"), "YQ==");
        assert_eq!(BASE64.encode(b"ab"), "YWI=");
    }

    #[test]
    fn artifact_names_cannot_leave_the_destination() {
        let d = Path::new("/cache/x");
        assert_eq!(safe_join(d, "model/MLmodel"), Some(d.join("model/MLmodel")));
        assert_eq!(safe_join(d, "../escape"), None);
        assert_eq!(safe_join(d, "a/../../b"), None);
        assert_eq!(safe_join(d, "/etc/passwd"), None);
    }

    #[test]
    fn artifact_uris_give_their_path() {
        assert_eq!(artifact_path("mlflow-artifacts:/1/models/m-1/artifacts").unwrap(), "1/models/m-1/artifacts");
        assert_eq!(artifact_path("mlflow-artifacts://host:5000/1/x/").unwrap(), "1/x");
        assert!(artifact_path("s3://b/k").is_err());
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let s = RestStore::with_options(
            "http://127.0.0.1:1",
            Some("Bearer secret-token".into()),
            Duration::from_secs(1),
            Duration::ZERO,
        )
        .unwrap();
        assert!(!format!("{s:?}").contains("secret"));
        let err = RestStore::with_options("http://u:pw@127.0.0.1:1", None, Duration::from_secs(1), Duration::ZERO)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("pw"), "{err}");
    }

    #[test]
    fn a_server_that_is_down_is_retried_then_named() {
        // Port 9 (discard) on the loopback interface: nothing listens there.
        let s = RestStore::with_options("http://127.0.0.1:9", None, Duration::from_secs(2), Duration::from_millis(1))
            .unwrap();
        let err = s.registered_model("churn").unwrap_err().to_string();
        assert!(err.contains("http://127.0.0.1:9/api/2.0/mlflow/registered-models/get"), "{err}");
        assert!(err.contains("after 5 attempts"), "{err}");
    }
}

#[cfg(test)]
mod paging_tests {
    use super::*;

    #[test]
    fn a_server_that_repeats_its_page_token_is_stopped() {
        let mut pages = 0;
        let err = paged("http://h/api/x", |_| Ok(serde_json::json!({"next_page_token": "t"})), |_| pages += 1)
            .expect_err("paging forever");
        assert_eq!(pages, 2);
        assert!(err.to_string().contains("same token") && err.to_string().contains("http://h/api/x"), "{err}");
    }

    #[test]
    fn paging_ends_after_the_last_page_or_at_the_cap() {
        let mut n = 0u64;
        paged("u", |_| Ok(serde_json::json!({})), |_| n += 1).unwrap();
        assert_eq!(n, 1);
        let mut i = 0u64;
        let err = paged(
            "u",
            |_| {
                i += 1;
                Ok(serde_json::json!({ "next_page_token": i.to_string() }))
            },
            |_| {},
        )
        .expect_err("a new token every page, forever");
        assert!(err.to_string().contains("more than 10000 pages"), "{err}");
    }
}
