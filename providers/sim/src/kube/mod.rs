//! One Kubernetes API server per simulated cluster, over TLS from the cluster's CA, on the
//! cluster's public endpoint and (private clusters) its private endpoint. Generic storage for
//! every served kind with resourceVersions, managedFields and server-side apply, discovery
//! (aggregated and legacy), a minimal OpenAPI v3, Tables, watch, namespaces that terminate, a
//! token controller and TokenRequest, and CRDs that make new kinds servable at once.

mod api;
pub mod proto;
pub mod resources;
pub mod selectors;
pub mod ssa;
pub mod status;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

use crate::certs::ClusterCa;
use crate::world::{ClusterSpec, short_hash};
use resources::ResourceDef;

/// The version every simulated API server reports.
pub const VERSION: (&str, &str, &str) = ("1", "32", "v1.32.4");

/// Storage key: group, plural, namespace (empty for cluster-scoped), name.
pub type Key = (String, String, String, String);

/// A change, as watchers see it.
#[derive(Clone, Debug)]
pub struct Event {
    /// The resourceVersion after the change.
    pub rv: u64,
    /// ADDED, MODIFIED or DELETED.
    pub kind: &'static str,
    /// Which object.
    pub key: Key,
    /// The object after the change (before it, for DELETED, with the new RV).
    pub object: Value,
}

/// Mutable state of one API server.
pub struct Inner {
    /// The global resourceVersion.
    pub rv: u64,
    /// Served kinds.
    pub defs: Vec<ResourceDef>,
    /// Objects.
    pub objects: BTreeMap<Key, Value>,
    /// Recent events, for watches that resume from a resourceVersion.
    pub history: VecDeque<Event>,
    /// Service-account tokens: token → (namespace, service account).
    pub tokens: HashMap<String, (String, String)>,
}

/// One simulated API server.
pub struct KubeServer {
    /// Cluster name.
    pub cluster: String,
    /// The cluster CA.
    pub ca: ClusterCa,
    /// A token with full access.
    pub admin_token: String,
    /// Google access tokens, accepted as GKE accepts them.
    pub google_tokens: Arc<Mutex<std::collections::HashSet<String>>>,
    /// State.
    pub inner: Mutex<Inner>,
    /// Live events.
    pub events: broadcast::Sender<Event>,
    /// How long a deleted namespace stays Terminating (None: the deleting request finalizes it;
    /// from `SimOptions::clock`).
    pub namespace_finalize: Option<Duration>,
    /// Delay added to every request.
    pub latency: Duration,
    /// Injected faults (429 or 503), drawn per request identity.
    pub faults: crate::faults::Faults,
    /// Seconds injected faults ask clients to wait (`Retry-After`).
    pub retry_after_secs: u32,
    /// Every request: method, path and query, status, when it finished.
    pub log: Mutex<Vec<(String, String, u16, std::time::Instant)>>,
}

const HISTORY: usize = 20_000;

impl KubeServer {
    /// A server for a cluster of the world, seeded like a fresh GKE cluster with ASM installed.
    pub fn new(
        spec: &ClusterSpec,
        ca: ClusterCa,
        admin_token: String,
        google_tokens: Arc<Mutex<std::collections::HashSet<String>>>,
        opts: &crate::state::SimOptions,
        index: u64,
    ) -> Arc<KubeServer> {
        let (tx, _) = broadcast::channel(4096);
        let s = Arc::new(KubeServer {
            cluster: spec.name.clone(),
            ca,
            admin_token,
            google_tokens,
            inner: Mutex::new(Inner {
                rv: 100,
                defs: resources::builtins(),
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                tokens: HashMap::new(),
            }),
            events: tx,
            namespace_finalize: opts.clock.namespace_finalize(),
            latency: opts.latency,
            faults: crate::faults::Faults::new(opts.fault_rate, opts.seed, format!("cluster {index} {}", spec.name)),
            retry_after_secs: opts.retry_after_secs,
            log: Mutex::new(Vec::new()),
        });
        s.seed(spec);
        s
    }

    fn seed(&self, spec: &ClusterSpec) {
        let mut inner = self.lock();
        for crd in resources::guide_crds() {
            let _ = api::create_crd(self, &mut inner, crd);
        }
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease", "istio-system"] {
            let _ = api::create_namespace(
                self,
                &mut inner,
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            );
        }
        let put = |inner: &mut Inner, group: &str, plural: &str, obj: Value| {
            let def = inner.defs.iter().find(|d| d.group == group && d.plural == plural).cloned();
            if let Some(def) = def {
                let _ = api::create_object(self, inner, &def, obj, "kube-controller-manager", false);
            }
        };
        put(
            &mut inner,
            "",
            "serviceaccounts",
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "istio-reader-service-account", "namespace": "istio-system", "labels": {"app": "istio-reader", "release": "istio"}}}),
        );
        put(
            &mut inner,
            "",
            "services",
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "istiod", "namespace": "istio-system", "labels": {"app": "istiod", "istio.io/rev": spec.istio_revision}},
            "spec": {"selector": {"app": "istiod"}, "ports": [{"name": "grpc-xds", "port": 15010}, {"name": "https-dns", "port": 15012}, {"name": "https-webhook", "port": 443, "targetPort": 15017}]}}),
        );
        for i in 0..2 {
            let name = format!("istiod-{}-{}", spec.istio_revision, &short_hash(&format!("{}{i}", spec.name))[..5]);
            put(
                &mut inner,
                "",
                "pods",
                json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "istio-system", "labels": {"app": "istiod", "istio": "pilot", "istio.io/rev": spec.istio_revision}},
                "spec": {"containers": [{"name": "discovery", "image": "gcr.io/gke-release/asm/pilot:1.17.3-asm.3"}], "nodeName": format!("gke-{}-default-pool-{i}", spec.name)},
                "status": {"phase": "Running", "podIP": format!("10.0.{i}.5"), "containerStatuses": [{"name": "discovery", "ready": true, "restartCount": 0}]}}),
            );
        }
    }

    /// Locks the state.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serves HTTPS on `listener` until the runtime stops.
    pub fn serve(self: &Arc<Self>, listener: TcpListener) -> Result<(), String> {
        let ips: Vec<std::net::IpAddr> = ["127.0.0.1", "127.0.0.2"].iter().filter_map(|a| a.parse().ok()).collect();
        let (cert_pem, key_pem) = self.ca.issue_server(&ips, &["localhost".into(), "kubernetes.default.svc".into()])?;
        use rustls::pki_types::pem::PemObject;
        let certs = vec![
            rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| e.to_string())?,
            rustls::pki_types::CertificateDer::from_pem_slice(self.ca.cert_pem.as_bytes())
                .map_err(|e| e.to_string())?,
        ];
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| e.to_string())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| e.to_string())?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let app = api::router(self.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let acceptor = acceptor.clone();
                let app = app.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let svc = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Ok(())
    }

    /// A kubeconfig for a service-account token against `server` (`host:port`).
    pub fn kubeconfig_for_token(&self, server: &str, token: &str) -> String {
        let ca = base64::engine::general_purpose::STANDARD.encode(self.ca.cert_pem.as_bytes());
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: https://{server}\n  name: c\ncontexts:\n- context:\n    cluster: c\n    user: u\n  name: c\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: {token}\n"
        )
    }
}
