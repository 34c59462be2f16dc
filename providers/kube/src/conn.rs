//! Connections to the clusters of `[clusters]`: a kube client per cluster, built on first use
//! from a kubeconfig context (`connect = "kubeconfig"`, the default; context defaults to the
//! name gcloud gives it) or from the live GKE lookup (`connect = "gke"`: endpoint, cluster CA and
//! a Google access token; `"gke-internal"` uses the private endpoint). Two more reach a private
//! control plane from outside its network, with a Google access token and the system's roots:
//! `"gke-dns"` (the cluster's DNS-based endpoint, when it allows external traffic) and
//! `"connect-gateway"` (the fleet's Connect Gateway, through the membership GKE reports for the
//! cluster). TLS is always verified.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use kube::api::{Api, ApiResource, DynamicObject};
use meshform_engine::provider::{CallContext, ErrorKind, ProviderError, ProviderResult};
use meshform_engine::value::{Map, Value};
use serde_json::Value as J;
use tokio::sync::OnceCell;

use crate::objects::ObjRef;
use crate::snapshot;

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
    /// The Connect Gateway's base URL for `connect = "connect-gateway"` (None: Google's, regional
    /// by the membership's location).
    pub connect_gateway: Option<String>,
    /// Requests in flight at once to one cluster's API server (each cluster its own budget).
    pub max_requests_per_cluster: usize,
    /// A plugin CA certificate expiring within this many days is a finding.
    pub ca_expiry_warning_days: u64,
}

/// Clients by cluster, shared by every call of a run.
pub struct Connections {
    /// Settings.
    pub settings: Settings,
    /// One client per cluster, built once (concurrent first uses wait for the one being built).
    clients: PerKey<String, kube::Client>,
    /// The kubeconfig file, read once.
    kubeconfig: OnceCell<kube::config::Kubeconfig>,
    /// Discovered kinds, each discovered once per cluster.
    kinds: PerKey<KindKey, (ApiResource, bool)>,
    /// Each group version's resources, discovered once per cluster (cluster, apiVersion).
    groups: PerKey<(String, String), Vec<(ApiResource, bool)>>,
    /// This run's snapshot of the objects read: see [`Kube::listed`].
    snapshot: snapshot::Snapshot,
    /// Clients without credentials of their own, by endpoint and CA (checks send each request
    /// with the credentials under test).
    endpoints: PerKey<(String, String), kube::Client>,
}

/// Values made once per key, however many calls ask at once (the others wait for the first).
type PerKey<K, V> = std::sync::Mutex<HashMap<K, Arc<OnceCell<V>>>>;

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
    /// The resource's `timeouts` entry for the operation under way (see `CallContext`).
    pub timeout: Option<Duration>,
}

impl Connections {
    /// Connections with settings; nothing is contacted yet.
    pub fn new(settings: Settings) -> Connections {
        Connections {
            settings,
            clients: Default::default(),
            kubeconfig: OnceCell::new(),
            kinds: Default::default(),
            groups: Default::default(),
            snapshot: Default::default(),
            endpoints: Default::default(),
        }
    }

    /// A client of `server` trusting the CA `ca_base64` (base64 of PEM), with no credentials: each
    /// request carries its own. One per endpoint and CA for the run, so a thousand checks of
    /// remote secrets into one cluster share its connections (and its request budget).
    pub async fn endpoint_client(&self, server: &str, ca_base64: &str) -> ProviderResult<kube::Client> {
        let key = (server.to_string(), ca_base64.to_string());
        let cell = self.endpoints.lock().unwrap_or_else(|e| e.into_inner()).entry(key).or_default().clone();
        let limit = self.settings.max_requests_per_cluster;
        cell.get_or_try_init(|| async move {
            let kc = endpoint_kubeconfig(server, Some(ca_base64.to_string()), None);
            let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| ProviderError::new(ErrorKind::Invalid, format!("endpoint {server}: {e}")))?;
            limited_client(config, limit, server)
        })
        .await
        .cloned()
    }

    /// Starts a new run: what the last run read is forgotten (clients and discovery are kept).
    pub fn new_run(&self) {
        self.snapshot.clear();
    }

    /// The view of one call.
    pub fn with(self: &Arc<Self>, ctx: &CallContext) -> Kube {
        Kube {
            conns: self.clone(),
            clusters: ctx.clusters.clone(),
            dir: ctx.dir.clone(),
            create_before_destroy: ctx.create_before_destroy,
            timeout: ctx.timeout,
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
        other => {
            // The causes say what went wrong (a refused connection, an untrusted certificate).
            let mut text = other.to_string();
            let mut cause = std::error::Error::source(&other);
            while let Some(c) = cause {
                let c_text = c.to_string();
                if !text.contains(&c_text) {
                    text = format!("{text}: {c_text}");
                }
                cause = c.source();
            }
            // A certificate that is not trusted stays so: no retry helps.
            let kind =
                if text.contains("invalid peer certificate") { ErrorKind::Invalid } else { ErrorKind::Transient };
            ProviderError::new(kind, format!("{what}: {text}"))
        }
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

    /// The client of a cluster, built on first use; every request it sends waits for one of the
    /// cluster's `max_requests_per_cluster` slots.
    pub async fn client(&self, name: &str) -> ProviderResult<kube::Client> {
        let cell =
            self.conns.clients.lock().unwrap_or_else(|e| e.into_inner()).entry(name.to_string()).or_default().clone();
        cell.get_or_try_init(|| self.build_client(name)).await.cloned()
    }

    async fn build_client(&self, name: &str) -> ProviderResult<kube::Client> {
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
                let kc = self
                    .conns
                    .kubeconfig
                    .get_or_try_init(|| async {
                        kube::config::Kubeconfig::read_from(&path).map_err(|e| {
                            ProviderError::new(
                                ErrorKind::Invalid,
                                format!("cannot read kubeconfig {}: {e}", path.display()),
                            )
                        })
                    })
                    .await?
                    .clone();
                let opts = kube::config::KubeConfigOptions { context: Some(context.clone()), ..Default::default() };
                kube::Config::from_custom_kubeconfig(kc, &opts).await.map_err(|e| {
                    ProviderError::new(
                        ErrorKind::Invalid,
                        format!("cluster `{name}`: kubeconfig context `{context}`: {e}"),
                    )
                })?
            }
            "gke" | "gke-internal" | "gke-dns" | "connect-gateway" => {
                let (server, ca) = self.google_endpoint(name, &connect, &attrs)?;
                let token = self.conns.settings.google.token().await.map_err(|e| {
                    ProviderError::new(
                        ErrorKind::Permission,
                        format!("cluster `{name}` (connect = \"{connect}\"): {e}"),
                    )
                })?;
                let kc = endpoint_kubeconfig(&server, ca, Some(token));
                kube::Config::from_custom_kubeconfig(kc, &Default::default())
                    .await
                    .map_err(|e| ProviderError::new(ErrorKind::Invalid, format!("cluster `{name}`: {e}")))?
            }
            other => {
                return Err(ProviderError::new(
                    ErrorKind::Invalid,
                    format!(
                        "cluster `{name}`: connect must be \"kubeconfig\", \"gke\", \"gke-internal\", \"gke-dns\" or \"connect-gateway\", not \"{other}\""
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
        limited_client(config, self.conns.settings.max_requests_per_cluster, &format!("cluster `{name}`"))
    }

    /// The URL of a cluster's API server for a Google-authenticated `connect` mode, and the CA
    /// to trust it with (base64 of the PEM; None: the system's roots, for the names Google serves
    /// with publicly trusted certificates).
    fn google_endpoint(&self, name: &str, connect: &str, attrs: &Map) -> ProviderResult<(String, Option<String>)> {
        let invalid = |m: String| ProviderError::new(ErrorKind::Invalid, format!("cluster `{name}`: {m}"));
        let ca = || base64::engine::general_purpose::STANDARD.encode(s(attrs, "ca_certificate").unwrap_or_default());
        let given = |k: &str| s(attrs, k).filter(|v| !v.is_empty());
        match connect {
            "gke" | "gke-internal" => {
                let endpoint = if connect == "gke" { given("endpoint") } else { given("private_endpoint") }
                    .ok_or_else(|| invalid(format!("it has no {connect} endpoint")))?;
                Ok((format!("https://{endpoint}"), Some(ca())))
            }
            "gke-dns" => {
                let endpoint = given("dns_endpoint").ok_or_else(|| invalid("it has no DNS-based endpoint".into()))?;
                if attrs.get("dns_external_traffic") != Some(&Value::Bool(true)) {
                    return Err(invalid(format!(
                        "its DNS-based endpoint does not accept traffic from outside Google Cloud (controlPlaneEndpointsConfig.dnsEndpointConfig.allowExternalTraffic); allow it with `gcloud container clusters update {} --enable-dns-access`",
                        s(attrs, "name").unwrap_or_else(|| name.to_string())
                    )));
                }
                Ok((format!("https://{endpoint}"), None))
            }
            _ => {
                // projects/NUMBER/locations/L/memberships/M, as GKE reports a registered cluster's.
                let membership = given("fleet_membership").ok_or_else(|| {
                    invalid(
                        "it is not a fleet member, and connect = \"connect-gateway\" reaches a cluster through its fleet membership; register it first (`gcloud container fleet memberships register`, or `--fleet-project` when it is made)".into(),
                    )
                })?;
                let parts: Vec<&str> = membership.trim_start_matches("//gkehub.googleapis.com/").split('/').collect();
                let ["projects", project, "locations", location, "memberships", m] = parts.as_slice() else {
                    return Err(invalid(format!("unexpected fleet membership name `{membership}`")));
                };
                let base = match &self.conns.settings.connect_gateway {
                    Some(b) => b.trim_end_matches('/').to_string(),
                    None if *location == "global" => "https://connectgateway.googleapis.com".into(),
                    None => format!("https://{location}-connectgateway.googleapis.com"),
                };
                Ok((format!("{base}/v1/projects/{project}/locations/{location}/gkeMemberships/{m}"), None))
            }
        }
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
        let cell = self.conns.kinds.lock().unwrap_or_else(|e| e.into_inner()).entry(key).or_default().clone();
        let discover = || async {
            let started = Instant::now();
            loop {
                let found = self
                    .group(&client, cluster, api_version)
                    .await
                    .map(|resources| resources.iter().find(|(ar, _)| ar.kind == kind).cloned());
                match found {
                    Ok(Some(x)) => return Ok(x),
                    // Not served (yet): a CRD just created is waited for, its group asked again.
                    _ if wait && started.elapsed() < self.conns.settings.wait_timeout => {
                        self.conns
                            .groups
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&group_key(cluster, api_version));
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Ok(None) => {
                        return Err(ProviderError::new(
                            ErrorKind::NotFound,
                            format!("kind {kind} ({api_version}) in cluster `{cluster}`: the server does not serve it"),
                        ));
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        let (ar, namespaced) = cell.get_or_try_init(discover).await?.clone();
        Ok(match (namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(client, ns, &ar),
            (true, None) => Api::default_namespaced_with(client, &ar),
            (false, _) => Api::all_with(client, &ar),
        })
    }

    /// The resources of a group version in a cluster (one discovery call per cluster and group
    /// version, however many kinds of it are used).
    async fn group(
        &self,
        client: &kube::Client,
        cluster: &str,
        api_version: &str,
    ) -> ProviderResult<Vec<(ApiResource, bool)>> {
        let cell = self
            .conns
            .groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(group_key(cluster, api_version))
            .or_default()
            .clone();
        cell.get_or_try_init(|| async {
            let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
            let gv = kube::core::GroupVersion::gv(group, version);
            let g = kube::discovery::pinned_group(client, &gv)
                .await
                .map_err(|e| kube_err(&format!("kinds of {api_version} in cluster `{cluster}`"), e))?;
            Ok(g.versioned_resources(version)
                .into_iter()
                .map(|(ar, caps)| (ar, caps.scope == kube::discovery::Scope::Namespaced))
                .collect())
        })
        .await
        .cloned()
    }

    /// Forgets a cached kind (after a failure that suggests discovery changed).
    pub async fn forget_kind(&self, cluster: &str, api_version: &str, kind: &str) {
        let key = (cluster.to_string(), api_version.to_string(), kind.to_string());
        self.conns.kinds.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
        self.conns.groups.lock().unwrap_or_else(|e| e.into_inner()).remove(&group_key(cluster, api_version));
    }

    /// This run's snapshot of the objects of `r`'s kind in `r`'s namespace of `cluster`
    /// ([`crate::snapshot`]): listed the first time one of them is read (one list per cluster,
    /// kind and namespace, however many objects are read from it; concurrent first reads wait for
    /// the one list), then kept as this run's writes change it ([`Kube::noted`]). Lists are not
    /// label-selected, so an object missing from one does not exist. `None` when the kind is not
    /// served or the list was refused (credentials that may only get): read the object by itself.
    pub async fn listed(&self, cluster: &str, r: &ObjRef) -> ProviderResult<Option<Arc<snapshot::Kind>>> {
        let kind = self.conns.snapshot.kind(list_key(cluster, r));
        let listed = kind.load(|| self.list_all(cluster, r)).await?;
        Ok(listed.then_some(kind))
    }

    async fn list_all(&self, cluster: &str, r: &ObjRef) -> ProviderResult<Option<HashMap<String, J>>> {
        let api = match self.api(cluster, &r.api_version, &r.kind, r.namespace.as_deref(), false).await {
            Ok(a) => a,
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut out = HashMap::new();
        let mut lp = kube::api::ListParams::default().limit(500);
        loop {
            let page = match api.list(&lp).await {
                Ok(p) => p,
                Err(kube::Error::Api(s)) if matches!(s.code, 401 | 403 | 404 | 405) => return Ok(None),
                Err(e) => return Err(kube_err(&format!("listing {} in cluster `{cluster}`", r.kind), e)),
            };
            for o in page.items {
                let Some(name) = o.metadata.name.clone() else { continue };
                let mut j = serde_json::to_value(o).map_err(|e| ProviderError::new(ErrorKind::Other, e.to_string()))?;
                // What a list item lacks and a GET has.
                j["apiVersion"] = J::String(r.api_version.clone());
                j["kind"] = J::String(r.kind.clone());
                out.insert(name, j);
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(c) => lp = lp.continue_token(&c),
                None => break,
            }
        }
        Ok(Some(out))
    }

    /// Records in this run's snapshot what a write of this run left (`None`: deleted), so later
    /// reads of the run see it.
    pub fn noted(&self, cluster: &str, r: &ObjRef, live: Option<&J>) {
        self.conns.snapshot.note(&list_key(cluster, r), &r.name, live);
    }
}

fn group_key(cluster: &str, api_version: &str) -> (String, String) {
    (cluster.to_string(), api_version.to_string())
}

fn list_key(cluster: &str, r: &ObjRef) -> snapshot::Key {
    (cluster.to_string(), r.api_version.clone(), r.kind.clone(), r.namespace.clone().unwrap_or_default())
}
/// A client for `config` whose requests wait for one of `limit` slots (a cluster's budget).
fn limited_client(config: kube::Config, limit: usize, what: &str) -> ProviderResult<kube::Client> {
    let limit = tower::limit::ConcurrencyLimitLayer::new(limit.max(1));
    Ok(kube::client::ClientBuilder::try_from(config)
        .map_err(|e| ProviderError::new(ErrorKind::Other, format!("{what}: {e}")))?
        .with_layer(&limit)
        .build())
}

/// A kubeconfig (in memory, as kube's own types: the token never passes through text) for an
/// API server URL, its CA (base64 of the PEM) and, when given, a bearer token.
fn endpoint_kubeconfig(server: &str, ca_base64: Option<String>, token: Option<String>) -> kube::config::Kubeconfig {
    use kube::config::{AuthInfo, Cluster, Context, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext};
    Kubeconfig {
        clusters: vec![NamedCluster {
            name: "c".into(),
            cluster: Some(Cluster {
                server: Some(server.to_string()),
                certificate_authority_data: ca_base64,
                ..Default::default()
            }),
            ..Default::default()
        }],
        auth_infos: vec![NamedAuthInfo {
            name: "u".into(),
            auth_info: Some(AuthInfo { token: token.map(Into::into), ..Default::default() }),
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
