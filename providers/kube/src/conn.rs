//! Connections to the clusters of `[clusters]`: a kube client per cluster, built on first use
//! from a kubeconfig context (`connect = "kubeconfig"`, the default; context defaults to the
//! name gcloud gives it) or from the live GKE lookup (`connect = "gke"`: endpoint, cluster CA and
//! a Google access token; `"gke-internal"` uses the private endpoint). TLS is always verified
//! against the cluster CA.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::GroupVersionKind;
use meshform_engine::provider::{CallContext, ErrorKind, ProviderError, ProviderResult};
use meshform_engine::value::{Map, Value};
use tokio::sync::Mutex;

/// Cluster, apiVersion, kind.
type KindKey = (String, String, String);

/// Provider settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The kubeconfig file.
    pub kubeconfig: Option<PathBuf>,
    /// Field manager of every apply.
    pub field_manager: String,
    /// Google credentials for `connect = "gke"` (a token from the environment, or Application
    /// Default Credentials), resolved once and shared.
    pub google: Arc<meshform_google_auth::Credentials>,
    /// How long to wait for a kind to appear, a token to be filled, a condition to hold.
    pub wait_timeout: Duration,
}

/// Clients by cluster, shared by every call of a run.
pub struct Connections {
    /// Settings.
    pub settings: Settings,
    clients: Mutex<HashMap<String, kube::Client>>,
    kinds: Mutex<HashMap<KindKey, (ApiResource, bool)>>,
}

/// What one call sees: the connections and the looked-up clusters.
pub struct Kube {
    /// The connections.
    pub conns: Arc<Connections>,
    /// The clusters of `[clusters]`, as looked up.
    pub clusters: Arc<BTreeMap<String, Map>>,
    /// The desired-state file's directory.
    pub dir: PathBuf,
    /// The resource's `create_before_destroy` (see `CallContext`).
    pub create_before_destroy: bool,
}

impl Connections {
    /// Connections with settings; nothing is contacted yet.
    pub fn new(settings: Settings) -> Connections {
        Connections { settings, clients: Mutex::new(HashMap::new()), kinds: Mutex::new(HashMap::new()) }
    }

    /// The view of one call.
    pub fn with(self: &Arc<Self>, ctx: &CallContext) -> Kube {
        Kube {
            conns: self.clone(),
            clusters: ctx.clusters.clone(),
            dir: ctx.dir.clone(),
            create_before_destroy: ctx.create_before_destroy,
        }
    }
}

/// Maps a kube error to a provider error (never with credentials in it).
pub fn kube_err(what: &str, e: kube::Error) -> ProviderError {
    match e {
        kube::Error::Api(s) => {
            let kind = match s.code {
                404 => ErrorKind::NotFound,
                409 => ErrorKind::Conflict,
                401 | 403 => ErrorKind::Permission,
                400 | 415 | 422 => ErrorKind::Invalid,
                429 | 500..=599 => ErrorKind::Transient,
                _ => ErrorKind::Other,
            };
            ProviderError::new(kind, format!("{what}: {} ({})", s.message, s.code))
        }
        other => ProviderError::new(ErrorKind::Transient, format!("{what}: {other}")),
    }
}

fn s(m: &Map, k: &str) -> Option<String> {
    m.get(k).and_then(Value::to_interpolated).filter(|x| !x.is_empty())
}

impl Kube {
    /// The field manager.
    pub fn manager(&self) -> &str {
        &self.conns.settings.field_manager
    }

    /// The looked-up attributes of a cluster.
    pub fn cluster(&self, name: &str) -> ProviderResult<&Map> {
        self.clusters.get(name).ok_or_else(|| {
            ProviderError::new(ErrorKind::Invalid, format!("cluster `{name}` is not declared under [clusters]"))
        })
    }

    /// The client of a cluster, built on first use.
    pub async fn client(&self, name: &str) -> ProviderResult<kube::Client> {
        let mut clients = self.conns.clients.lock().await;
        if let Some(c) = clients.get(name) {
            return Ok(c.clone());
        }
        let attrs = self.cluster(name)?.clone();
        let connect = s(&attrs, "connect").unwrap_or_else(|| "kubeconfig".into());
        let config = match connect.as_str() {
            "kubeconfig" => {
                let path = self.conns.settings.kubeconfig.clone().ok_or_else(|| {
                    ProviderError::new(
                        ErrorKind::Invalid,
                        "no kubeconfig: set KUBECONFIG or [providers.kubernetes] kubeconfig",
                    )
                })?;
                let context = s(&attrs, "context").unwrap_or_else(|| {
                    format!(
                        "gke_{}_{}_{}",
                        s(&attrs, "project").unwrap_or_default(),
                        s(&attrs, "location").unwrap_or_default(),
                        s(&attrs, "name").unwrap_or_default()
                    )
                });
                let kc = kube::config::Kubeconfig::read_from(&path).map_err(|e| {
                    ProviderError::new(ErrorKind::Invalid, format!("cannot read kubeconfig {}: {e}", path.display()))
                })?;
                let opts = kube::config::KubeConfigOptions { context: Some(context.clone()), ..Default::default() };
                kube::Config::from_custom_kubeconfig(kc, &opts).await.map_err(|e| {
                    ProviderError::new(
                        ErrorKind::Invalid,
                        format!("cluster `{name}`: kubeconfig context `{context}`: {e}"),
                    )
                })?
            }
            "gke" | "gke-internal" => {
                let endpoint = if connect == "gke" { s(&attrs, "endpoint") } else { s(&attrs, "private_endpoint") }
                    .ok_or_else(|| {
                        ProviderError::new(ErrorKind::Invalid, format!("cluster `{name}` has no {connect} endpoint"))
                    })?;
                let token = self.conns.settings.google.token().await.map_err(|e| {
                    ProviderError::new(ErrorKind::Permission, format!("cluster `{name}` (connect = \"gke\"): {e}"))
                })?;
                let ca =
                    base64::engine::general_purpose::STANDARD.encode(s(&attrs, "ca_certificate").unwrap_or_default());
                let kc = gke_kubeconfig(&endpoint, ca, token);
                kube::Config::from_custom_kubeconfig(kc, &Default::default())
                    .await
                    .map_err(|e| ProviderError::new(ErrorKind::Invalid, format!("cluster `{name}`: {e}")))?
            }
            other => {
                return Err(ProviderError::new(
                    ErrorKind::Invalid,
                    format!(
                        "cluster `{name}`: connect must be \"kubeconfig\", \"gke\" or \"gke-internal\", not \"{other}\""
                    ),
                ));
            }
        };
        if config.accept_invalid_certs {
            return Err(ProviderError::new(
                ErrorKind::Invalid,
                format!(
                    "cluster `{name}`: the kubeconfig sets insecure-skip-tls-verify; meshform always verifies the cluster's certificate (give certificate-authority-data instead)"
                ),
            ));
        }
        let client = kube::Client::try_from(config)
            .map_err(|e| ProviderError::new(ErrorKind::Other, format!("cluster `{name}`: {e}")))?;
        clients.insert(name.to_string(), client.clone());
        Ok(client)
    }

    /// The API of a kind in a cluster (`namespace` for namespaced kinds). With `wait`, a kind
    /// not served yet (its CRD just created) is waited for.
    pub async fn api(
        &self,
        cluster: &str,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        wait: bool,
    ) -> ProviderResult<Api<DynamicObject>> {
        let client = self.client(cluster).await?;
        let key = (cluster.to_string(), api_version.to_string(), kind.to_string());
        let cached = self.conns.kinds.lock().await.get(&key).cloned();
        let (ar, namespaced) = match cached {
            Some(x) => x,
            None => {
                let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
                let gvk = GroupVersionKind::gvk(group, version, kind);
                let started = Instant::now();
                let found = loop {
                    match kube::discovery::pinned_kind(&client, &gvk).await {
                        Ok((ar, caps)) => break (ar, caps.scope == kube::discovery::Scope::Namespaced),
                        Err(e) if wait && started.elapsed() < self.conns.settings.wait_timeout => {
                            let _ = e;
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Err(e) => {
                            return Err(kube_err(&format!("kind {kind} ({api_version}) in cluster `{cluster}`"), e));
                        }
                    }
                };
                self.conns.kinds.lock().await.insert(key, found.clone());
                found
            }
        };
        Ok(match (namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(client, ns, &ar),
            (true, None) => Api::default_namespaced_with(client, &ar),
            (false, _) => Api::all_with(client, &ar),
        })
    }

    /// Forgets a cached kind (after a failure that suggests discovery changed).
    pub async fn forget_kind(&self, cluster: &str, api_version: &str, kind: &str) {
        self.conns.kinds.lock().await.remove(&(cluster.to_string(), api_version.to_string(), kind.to_string()));
    }
}

/// A kubeconfig (in memory, as kube's own types: the token never passes through text) for a
/// GKE cluster's endpoint, its CA (base64 of the PEM) and a Google access token.
fn gke_kubeconfig(endpoint: &str, ca_base64: String, token: String) -> kube::config::Kubeconfig {
    use kube::config::{AuthInfo, Cluster, Context, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext};
    Kubeconfig {
        clusters: vec![NamedCluster {
            name: "c".into(),
            cluster: Some(Cluster {
                server: Some(format!("https://{endpoint}")),
                certificate_authority_data: Some(ca_base64),
                ..Default::default()
            }),
            ..Default::default()
        }],
        auth_infos: vec![NamedAuthInfo {
            name: "u".into(),
            auth_info: Some(AuthInfo { token: Some(token.into()), ..Default::default() }),
            ..Default::default()
        }],
        contexts: vec![NamedContext {
            name: "c".into(),
            context: Some(Context { cluster: "c".into(), user: Some("u".into()), ..Default::default() }),
            ..Default::default()
        }],
        current_context: Some("c".into()),
        ..Default::default()
    }
}
