//! The HTTP side of the Google Cloud provider: endpoints (real Google or the simulator, the only
//! difference), credentials, retries with jittered exponential backoff honouring Retry-After, a
//! per-API request rate limit shared by all operations, per-cluster mutation locks, and waiting
//! for the three kinds of long-running operation. Tokens never appear in errors.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshform_engine::provider::{ErrorKind, ProviderError, ProviderResult};
use reqwest::Method;
use serde_json::Value;
use tokio::sync::Mutex;

/// The APIs the provider calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Api {
    /// compute v1.
    Compute,
    /// container v1.
    Container,
    /// gkehub v1.
    Hub,
    /// gkehub v2 (membership features): the v1 base with `v2` for its last segment.
    HubV2,
    /// Secret Manager v1.
    SecretManager,
    /// Resource Manager v1 (a project's number).
    ResourceManager,
}

/// Base URLs of each API (ending without a slash).
#[derive(Clone, Debug)]
pub struct Endpoints {
    /// e.g. `https://compute.googleapis.com/compute/v1`.
    pub compute: String,
    /// e.g. `https://container.googleapis.com/v1`.
    pub container: String,
    /// e.g. `https://gkehub.googleapis.com/v1`.
    pub hub: String,
    /// e.g. `https://secretmanager.googleapis.com/v1`.
    pub secretmanager: String,
    /// e.g. `https://cloudresourcemanager.googleapis.com/v1`.
    pub resourcemanager: String,
}

impl Endpoints {
    /// Google's production endpoints.
    pub fn google() -> Endpoints {
        Endpoints {
            compute: "https://compute.googleapis.com/compute/v1".into(),
            container: "https://container.googleapis.com/v1".into(),
            hub: "https://gkehub.googleapis.com/v1".into(),
            secretmanager: "https://secretmanager.googleapis.com/v1".into(),
            resourcemanager: "https://cloudresourcemanager.googleapis.com/v1".into(),
        }
    }

    /// One base for all (the simulator's layout: `/compute/v1`, `/container/v1`, `/gkehub/v1`,
    /// `/secretmanager/v1`).
    pub fn under(base: &str) -> Endpoints {
        let b = base.trim_end_matches('/');
        Endpoints {
            compute: format!("{b}/compute/v1"),
            container: format!("{b}/container/v1"),
            hub: format!("{b}/gkehub/v1"),
            secretmanager: format!("{b}/secretmanager/v1"),
            resourcemanager: format!("{b}/cloudresourcemanager/v1"),
        }
    }

    /// The base of an API.
    pub fn of(&self, api: Api) -> std::borrow::Cow<'_, str> {
        match api {
            Api::Compute => self.compute.as_str().into(),
            Api::Container => self.container.as_str().into(),
            Api::Hub => self.hub.as_str().into(),
            Api::HubV2 => match self.hub.strip_suffix("/v1") {
                Some(base) => format!("{base}/v2").into(),
                None => format!("{}/../v2", self.hub).into(),
            },
            Api::SecretManager => self.secretmanager.as_str().into(),
            Api::ResourceManager => self.resourcemanager.as_str().into(),
        }
    }
}

tokio::task_local! {
    /// How long operations of the resource being changed may take (its `timeouts` entry).
    pub static OPERATION_TIMEOUT: Option<Duration>;
}

pub use meshform_google_auth::Credentials;

/// A token bucket: `rate` requests per second, bursts of `burst`.
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64) -> Bucket {
        let rate = rate.clamp(0.01, 1_000_000.0);
        let burst = rate.max(1.0);
        Bucket { rate, burst, tokens: burst, last: Instant::now() }
    }

    /// How long to wait before a request may go.
    fn take(&mut self) -> Duration {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        self.tokens -= 1.0;
        if self.tokens >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-self.tokens / self.rate) }
    }
}

/// Settings from `[providers.gcp]` and the environment.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Default project.
    pub project: Option<String>,
    /// Endpoints.
    pub endpoints: Endpoints,
    /// Requests per second per API.
    pub requests_per_second: f64,
    /// How long to wait for one operation.
    pub operation_timeout: Duration,
    /// Attempts per request on transient failures.
    pub max_attempts: u32,
    /// The most master authorized networks a cluster may have (checked at plan).
    pub max_authorized_networks: usize,
}

/// The client shared by every resource type.
pub struct Client {
    http: reqwest::Client,
    creds: Credentials,
    /// Settings.
    pub settings: Settings,
    buckets: std::sync::Mutex<HashMap<Api, Bucket>>,
    cluster_locks: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
    listed: std::sync::Mutex<HashMap<String, Listed>>,
}

/// A whole list read once and shared by every lookup that needs it (concurrent ones wait for the
/// one call in flight); an error is not kept, so the next lookup tries again.
type Listed = Arc<tokio::sync::OnceCell<Arc<Vec<Value>>>>;

impl Client {
    /// A client; contacts nothing until the first request.
    pub fn new(settings: Settings, creds: Credentials) -> Result<Client, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("meshform/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Client {
            http,
            creds,
            settings,
            buckets: Default::default(),
            cluster_locks: Default::default(),
            listed: Default::default(),
        })
    }

    /// The project for an object: its own `project`, else the provider's.
    pub fn project(&self, attrs: &meshform_engine::value::Map) -> ProviderResult<String> {
        if let Some(p) = attrs.get("project").and_then(|v| v.as_str()).filter(|p| !p.is_empty()) {
            return Ok(p.to_string());
        }
        self.settings.project.clone().ok_or_else(|| {
            ProviderError::new(
                ErrorKind::Invalid,
                "no project: set `project`, `[providers.gcp] project`, MESHFORM_GCP_PROJECT or CLOUDSDK_CORE_PROJECT",
            )
        })
    }

    /// The lock serialising mutations of one cluster (GKE runs one operation at a time).
    pub fn cluster_lock(&self, cluster: &str) -> Arc<Mutex<()>> {
        self.cluster_locks.lock().unwrap_or_else(|e| e.into_inner()).entry(cluster.to_string()).or_default().clone()
    }

    async fn token(&self) -> ProviderResult<String> {
        self.creds.token().await.map_err(|e| ProviderError::new(ErrorKind::Permission, e.to_string()))
    }

    async fn throttle(&self, api: Api) {
        let wait = {
            let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
            b.entry(api).or_insert_with(|| Bucket::new(self.settings.requests_per_second)).take()
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Sends a request to `path` under the API's base (or a full URL), retrying transient
    /// failures; returns the JSON body.
    pub async fn call(
        &self,
        api: Api,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> ProviderResult<Value> {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}/{}", self.settings.endpoints.of(api), path.trim_start_matches('/'))
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.throttle(api).await;
            let token = self.token().await?;
            let mut req = self.http.request(method.clone(), &url).bearer_auth(&token).query(&[("alt", "json")]);
            if !query.is_empty() {
                req = req.query(query);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let (retry, err) = match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<f64>().ok())
                        .filter(|s| s.is_finite())
                        .map(|s| Duration::from_secs_f64(s.clamp(0.0, 30.0)));
                    let text = resp.text().await.unwrap_or_default();
                    if (200..300).contains(&status) {
                        return Ok(if text.trim().is_empty() {
                            Value::Null
                        } else {
                            serde_json::from_str(&text).unwrap_or(Value::Null)
                        });
                    }
                    let err = api_error(status, &text, &method, &url);
                    (if status == 429 || status >= 500 { Some(retry_after) } else { None }, err)
                }
                Err(e) => {
                    let (err, hard) = transport_error(&e, &method, &url);
                    // A refused connection, a name that does not resolve or a failed TLS
                    // handshake is tried three times, not the full count: it rarely heals.
                    if hard && attempt >= HARD_FAILURE_ATTEMPTS {
                        return Err(ProviderError { message: format!("{} ({attempt} attempts)", err.message), ..err });
                    }
                    (Some(None), err)
                }
            };
            match retry {
                Some(after) if attempt < self.settings.max_attempts => {
                    tokio::time::sleep(after.unwrap_or_else(|| backoff(attempt))).await;
                }
                // Out of attempts: pass the server's advice on, so the engine may try a
                // read-only call once more after it.
                Some(Some(after)) => return Err(err.retry_after(after)),
                Some(None) => {
                    return Err(ProviderError { message: format!("{} ({attempt} attempts)", err.message), ..err });
                }
                None => return Err(err),
            }
        }
    }

    /// GET.
    pub async fn get(&self, api: Api, path: &str) -> ProviderResult<Value> {
        self.call(api, Method::GET, path, &[], None).await
    }

    /// GET, `None` on 404.
    pub async fn get_opt(&self, api: Api, path: &str) -> ProviderResult<Option<Value>> {
        match self.get(api, path).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every item of a paginated list: compute's (`maxResults`, `items`) or gkehub's
    /// (`pageSize`, `resources`), following `nextPageToken`.
    pub async fn list_all(
        &self,
        api: Api,
        path: &str,
        filter: Option<&str>,
        items_key: &str,
    ) -> ProviderResult<Vec<Value>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q: Vec<(&str, String)> = match api {
                Api::Hub | Api::HubV2 => vec![("pageSize", "100".into())],
                _ => vec![("maxResults", "500".into())],
            };
            if let Some(f) = filter {
                q.push(("filter", f.to_string()));
            }
            if let Some(t) = &token {
                q.push(("pageToken", t.clone()));
            }
            let page = self.call(api, Method::GET, path, &q, None).await?;
            out.extend(page[items_key].as_array().cloned().unwrap_or_default());
            match page["nextPageToken"].as_str() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    /// Every item of a paginated aggregated list (`items` by scope, each holding `collection`).
    pub async fn aggregated_all(
        &self,
        path: &str,
        filter: Option<&str>,
        collection: &str,
    ) -> ProviderResult<Vec<Value>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q: Vec<(&str, String)> = vec![("maxResults", "500".into())];
            if let Some(f) = filter {
                q.push(("filter", f.to_string()));
            }
            if let Some(t) = &token {
                q.push(("pageToken", t.clone()));
            }
            let page = self.call(Api::Compute, Method::GET, path, &q, None).await?;
            // A zone that could not be read makes the list incomplete: an error, never a
            // shorter answer (nor one kept for the run's other lookups).
            let unreachable = page["unreachables"].as_array().is_some_and(|u| !u.is_empty())
                || page["items"]
                    .as_object()
                    .is_some_and(|s| s.values().any(|scope| scope["warning"]["code"] == "UNREACHABLE"));
            if unreachable {
                return Err(ProviderError::new(
                    ErrorKind::Transient,
                    format!("{path}: some locations could not be read (UNREACHABLE); try again"),
                ));
            }
            if let Some(scopes) = page["items"].as_object() {
                for scope in scopes.values() {
                    out.extend(scope[collection].as_array().cloned().unwrap_or_default());
                }
            }
            match page["nextPageToken"].as_str() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    /// A list read once per run under `key`, by `load`: what every lookup of the run answers from
    /// (N clusters' lookups cost one `clusters.list` and one aggregated instances list, not 2N
    /// calls). [`Client::forget_lists`] drops them when this run changes something.
    pub async fn listed<F>(&self, key: &str, load: F) -> ProviderResult<Arc<Vec<Value>>>
    where
        F: std::future::Future<Output = ProviderResult<Vec<Value>>>,
    {
        let cell = self.listed.lock().unwrap_or_else(|e| e.into_inner()).entry(key.to_string()).or_default().clone();
        cell.get_or_try_init(|| async { load.await.map(Arc::new) }).await.cloned()
    }

    /// Every GKE cluster of a project (`locations/-`), read once per run. A list that says some
    /// locations could not be read (`missingZones`) is not kept: lookups then read one by one.
    pub async fn clusters_of(&self, project: &str) -> ProviderResult<Arc<Vec<Value>>> {
        self.listed(&format!("clusters/{project}"), async {
            let page = self.get(Api::Container, &format!("projects/{project}/locations/-/clusters")).await?;
            if page["missingZones"].as_array().is_some_and(|z| !z.is_empty()) {
                return Err(ProviderError::new(ErrorKind::Transient, "the cluster list is incomplete"));
            }
            Ok(page["clusters"].as_array().cloned().unwrap_or_default())
        })
        .await
    }

    /// A project's number (Resource Manager `projects.get`), read once per run.
    pub async fn project_number(&self, project: &str) -> ProviderResult<String> {
        let found = self
            .listed(&format!("project/{project}"), async {
                Ok(vec![self.get(Api::ResourceManager, &format!("projects/{project}")).await?])
            })
            .await?;
        found.first().and_then(|p| p["projectNumber"].as_str()).map(String::from).ok_or_else(|| {
            ProviderError::new(ErrorKind::Other, format!("Resource Manager gave no number for project {project}"))
        })
    }

    /// Every compute instance of a project (one aggregated list), read once per run.
    pub async fn instances_of(&self, project: &str) -> ProviderResult<Arc<Vec<Value>>> {
        self.listed(
            &format!("instances/{project}"),
            self.aggregated_all(&format!("projects/{project}/aggregated/instances"), None, "instances"),
        )
        .await
    }

    /// Every firewall rule of a project, read once per run.
    pub async fn firewalls_of(&self, project: &str) -> ProviderResult<Arc<Vec<Value>>> {
        self.listed(
            &format!("firewalls/{project}"),
            self.list_all(Api::Compute, &format!("projects/{project}/global/firewalls"), None, "items"),
        )
        .await
    }

    /// Forgets the lists read so far (after a change this run made).
    pub fn forget_lists(&self) {
        self.listed.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Waits for a compute operation (by its `selfLink`) to finish; fails with its error.
    pub async fn wait_compute(&self, op: Value) -> ProviderResult<Value> {
        let started = Instant::now();
        let mut op = op;
        while op["status"] != "DONE" {
            self.check_timeout(started, &op)?;
            let link = op["selfLink"].as_str().unwrap_or_default();
            let path = link.find("/projects/").map(|i| link[i..].to_string()).unwrap_or_default();
            op = self.call(Api::Compute, Method::POST, &format!("{path}/wait"), &[], None).await?;
        }
        if let Some(errs) = op["error"]["errors"].as_array() {
            let msg: Vec<&str> = errs.iter().filter_map(|e| e["message"].as_str()).collect();
            return Err(ProviderError::new(
                ErrorKind::Invalid,
                format!("operation {} failed: {}", op["name"].as_str().unwrap_or(""), msg.join("; ")),
            ));
        }
        Ok(op)
    }

    /// Waits for a container operation in `location`.
    pub async fn wait_container(&self, project: &str, location: &str, op: Value) -> ProviderResult<Value> {
        let started = Instant::now();
        let mut op = op;
        let mut n = 0;
        while op["status"] != "DONE" {
            self.check_timeout(started, &op)?;
            tokio::time::sleep(poll_delay(n)).await;
            n += 1;
            let name = op["name"].as_str().unwrap_or_default().to_string();
            op =
                self.get(Api::Container, &format!("projects/{project}/locations/{location}/operations/{name}")).await?;
        }
        let msg = op["statusMessage"].as_str().filter(|m| !m.is_empty()).or_else(|| op["error"]["message"].as_str());
        if let Some(m) = msg {
            return Err(ProviderError::new(ErrorKind::Invalid, format!("cluster operation failed: {m}")));
        }
        Ok(op)
    }

    /// Waits until no operation runs on cluster `name` (lists the location's operations and
    /// waits for each unfinished one that targets it; their outcome is theirs, not ours).
    pub async fn wait_cluster_idle(&self, project: &str, location: &str, name: &str, waits: u32) -> ProviderResult<()> {
        let list = self.get(Api::Container, &format!("projects/{project}/locations/{location}/operations")).await?;
        // The cluster's own operations and its node pools' (`…/clusters/NAME/nodePools/…`).
        let target = format!("/clusters/{name}");
        let running: Vec<Value> = list["operations"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|o| {
                o["status"] != "DONE"
                    && o["targetLink"]
                        .as_str()
                        .is_some_and(|t| t.ends_with(&target) || t.contains(&format!("{target}/")))
            })
            .cloned()
            .collect();
        if running.is_empty() {
            // Nothing listed (yet): back off before trying again, longer each time.
            tokio::time::sleep(backoff(waits)).await;
        }
        for op in running {
            let _ = self.wait_container(project, location, op).await;
        }
        Ok(())
    }

    /// How long operations may take: the object's `timeouts` entry, else the provider setting.
    pub fn operation_timeout(&self) -> Duration {
        OPERATION_TIMEOUT.try_with(|t| *t).ok().flatten().unwrap_or(self.settings.operation_timeout)
    }

    /// Waits for a google.longrunning operation; returns its `response`.
    pub async fn wait_lro(&self, op: Value) -> ProviderResult<Value> {
        self.wait_lro_on(Api::Hub, op).await
    }

    /// How long one operation of the resource being changed may take: its `timeouts` entry
    /// when it has one, else the provider's setting.
    pub fn operation_limit(&self) -> Duration {
        OPERATION_TIMEOUT.try_with(|t| *t).ok().flatten().unwrap_or(self.settings.operation_timeout)
    }

    /// Waits for a google.longrunning operation of `api` (gkehub v1 or v2); returns its `response`.
    pub async fn wait_lro_on(&self, api: Api, op: Value) -> ProviderResult<Value> {
        let started = Instant::now();
        let mut op = op;
        let mut n = 0;
        while op["done"] != true {
            self.check_timeout(started, &op)?;
            tokio::time::sleep(poll_delay(n)).await;
            n += 1;
            let name = op["name"].as_str().unwrap_or_default().to_string();
            op = self.get(api, &name).await?;
        }
        if let Some(m) = op["error"]["message"].as_str() {
            return Err(ProviderError::new(ErrorKind::Invalid, format!("operation failed: {m}")));
        }
        Ok(op["response"].clone())
    }

    fn check_timeout(&self, started: Instant, op: &Value) -> ProviderResult<()> {
        let limit = self.operation_limit();
        if started.elapsed() > limit {
            return Err(ProviderError::new(
                ErrorKind::Transient,
                format!("operation {} did not finish within {limit:?}", op["name"].as_str().unwrap_or("")),
            ));
        }
        Ok(())
    }
}

fn poll_delay(n: u32) -> Duration {
    Duration::from_millis((50u64 << n.min(7)).min(5_000))
}

/// Jittered exponential backoff: between half and all of 0.2 s · 2^attempt, at most 20 s. The
/// jitter comes from a randomly keyed hash (fresh keys per call), so concurrent retries spread out.
pub(crate) fn backoff(attempt: u32) -> Duration {
    use std::hash::BuildHasher;
    let cap = (200u64 << attempt.min(7)).min(20_000);
    let random = std::collections::hash_map::RandomState::new().hash_one(attempt);
    Duration::from_millis(cap / 2 + random % (cap / 2 + 1))
}

fn strip_query(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// A request that got no response, named for what went wrong (connection refused, the name not
/// resolving, TLS, a timeout) with the endpoint and where its setting comes from.
fn transport_error(e: &reqwest::Error, method: &Method, url: &str) -> (ProviderError, bool) {
    // Classify by the causes only: reqwest's own message names the URL, and a URL such as
    // `.../secrets/ingress-tls-key` must not read as a TLS failure.
    let mut chain = String::new();
    let (mut refused, mut tls) = (false, false);
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(x) = src {
        // rustls reports through (possibly nested) I/O errors.
        let mut inner: Option<&(dyn std::error::Error + 'static)> = Some(x);
        while let Some(i) = inner {
            tls |= i.is::<rustls::Error>();
            inner = match i.downcast_ref::<std::io::Error>() {
                Some(io) => {
                    refused |= io.kind() == std::io::ErrorKind::ConnectionRefused;
                    io.get_ref().map(|r| r as &(dyn std::error::Error + 'static))
                }
                None => None,
            };
        }
        chain.push_str(&x.to_string().to_lowercase());
        chain.push(' ');
        src = x.source();
    }
    refused |= chain.contains("connection refused");
    let dns = chain.contains("dns error") || chain.contains("failed to lookup address");
    tls |= ["invalid peer certificate", "tls handshake", "received fatal alert"].iter().any(|w| chain.contains(w));
    let what = if e.is_timeout() {
        "timed out"
    } else if refused {
        "connection refused"
    } else if dns {
        "the host name does not resolve (DNS)"
    } else if tls {
        "TLS failed (certificate or handshake)"
    } else if chain.contains("timed out") {
        "timed out"
    } else if chain.contains("reset") || chain.contains("closed") {
        "the connection was closed"
    } else {
        "no response"
    };
    let hard = !e.is_timeout() && (refused || dns || tls);
    let host = url.split("://").nth(1).and_then(|r| r.split('/').next()).unwrap_or(url);
    let origin = if host.ends_with("googleapis.com") {
        "Google's default endpoint".to_string()
    } else {
        "an endpoint override (MESHFORM_GCP_ENDPOINT, MESHFORM_GCP_<API>_ENDPOINT or `[providers.gcp]`; unset them for Google's)".to_string()
    };
    // A hard failure is not the engine's to retry again (it is no temporary condition).
    let kind = if hard { ErrorKind::Other } else { ErrorKind::Transient };
    (
        ProviderError::new(
            kind,
            format!("cannot reach {host} ({what}) for {method} {}; {host} is {origin}", strip_query(url)),
        ),
        hard,
    )
}

/// How many times a hard transport failure (see [`transport_error`]) is tried.
const HARD_FAILURE_ATTEMPTS: u32 = 3;

pub(crate) fn redact_error(e: &reqwest::Error) -> String {
    // reqwest errors name the URL; strip its query (never a token, but keep messages short).
    let s = e.to_string();
    match s.find('?') {
        Some(i) => format!("{}{}", &s[..i], s[i..].find(')').map_or("", |j| &s[i + j..])),
        None => s,
    }
}

/// Maps an HTTP error to a provider error with Google's message.
fn api_error(status: u16, body: &str, method: &Method, url: &str) -> ProviderError {
    let j: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let msg = j["error"]["message"].as_str().map(String::from).unwrap_or_else(|| format!("HTTP {status}"));
    let kind = match status {
        404 => ErrorKind::NotFound,
        409 | 412 => ErrorKind::Conflict,
        429 | 500..=599 => ErrorKind::Transient,
        401 | 403 => ErrorKind::Permission,
        400 => ErrorKind::Invalid,
        _ => ErrorKind::Other,
    };
    ProviderError::new(kind, format!("{msg} ({method} {}: {status})", strip_query(url)))
}

#[cfg(test)]
mod tests {
    use super::{backoff, transport_error};
    use reqwest::Method;

    async fn failure(url: &str) -> reqwest::Error {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder().build().unwrap();
        client.get(url).send().await.expect_err("the request must fail")
    }

    // A URL naming a TLS key (or DNS, a lookup, a handshake) says nothing about the failure:
    // only the causes classify it.
    #[tokio::test]
    async fn a_refused_connection_is_named_so_whatever_the_url_says() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}/v1/projects/p/secrets/ingress-tls-key/versions/dns-lookup");
        let (err, hard) = transport_error(&failure(&url).await, &Method::GET, &url);
        assert!(err.message.contains("(connection refused)"), "{}", err.message);
        assert!(hard);
    }

    #[tokio::test]
    async fn a_server_closing_the_connection_is_not_a_tls_failure() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            drop(sock);
        });
        let url = format!("http://127.0.0.1:{port}/v1/secrets/tls-certificate");
        let (err, hard) = transport_error(&failure(&url).await, &Method::GET, &url);
        server.await.unwrap();
        assert!(!err.message.contains("TLS"), "{}", err.message);
        assert!(!hard, "a dropped connection is worth the full retries: {}", err.message);
    }

    #[tokio::test]
    async fn https_to_a_plain_http_server_is_a_tls_failure() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 512];
            let _ = sock.read(&mut buf).await;
            let _ = sock.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n").await;
        });
        let url = format!("https://127.0.0.1:{port}/v1/projects/p/clusters");
        let e = failure(&url).await;
        let (err, hard) = transport_error(&e, &Method::GET, &url);
        server.await.unwrap();
        assert!(err.message.contains("(TLS failed"), "{}", err.message);
        assert!(hard);
    }

    #[test]
    fn backoff_grows_and_spreads_concurrent_retries() {
        for attempt in 0..10 {
            let cap = (200u64 << attempt.min(7)).min(20_000);
            let waits: Vec<u64> = (0..64).map(|_| backoff(attempt).as_millis() as u64).collect();
            assert!(waits.iter().all(|w| (cap / 2..=cap).contains(w)), "{attempt}: {waits:?}");
            let distinct: std::collections::BTreeSet<_> = waits.iter().collect();
            assert!(distinct.len() > 16, "attempt {attempt}: retries at once would not spread: {waits:?}");
        }
    }
}
