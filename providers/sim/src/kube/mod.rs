//! One Kubernetes API server per simulated cluster, over TLS from the cluster's CA, on the
//! cluster's public endpoint and (private clusters) its private endpoint, and over TLS from the
//! simulator's public root on its DNS-based endpoint; RBAC for service accounts (`rbac`). Generic storage for
//! every served kind with resourceVersions, managedFields and server-side apply, discovery
//! (aggregated and legacy), a minimal OpenAPI v3, Tables, watch, namespaces that terminate, a
//! token controller and TokenRequest, and CRDs that make new kinds servable at once.

//!
//! Modules, in dependency order (each imports only those of the groups before it; the crate's
//! `layering` test checks it): `status` (Status errors), `resources` (served kinds, CRDs),
//! `proto` (protobuf bodies), `ssa` (field ownership) → `selectors`, `state` (the server's state
//! and storage primitives), `wire` (bodies, replies) → `rbac` (authorization of service
//! accounts) → `defaults` (per kind), `controllers` → `objects` (CRUD) → `lists` (lists, Tables,
//! watch), `patch`, `discovery` (and OpenAPI) →
//! `http` (auth, faults, log, routing) → this file (building, seeding and serving a server).

mod controllers;
mod defaults;
mod discovery;
mod http;
pub mod istio;
mod lists;
mod objects;
mod patch;
pub mod proto;
pub mod rbac;
pub mod resources;
pub mod selectors;
pub mod ssa;
mod state;
pub mod status;
mod wire;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

use crate::certs::ClusterCa;
use crate::world::{ClusterSpec, short_hash};
pub use state::{Event, Inner, Key, KubeServer, LogLine, OutsideHook, VERSION, Via};

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
                stalled_rollouts: Default::default(),
                iop_reads: BTreeMap::new(),
                outside_dirty: false,
            }),
            events: tx,
            namespace_finalize: opts.clock.namespace_finalize(),
            latency: opts.latency,
            faults: crate::faults::Faults::new(opts.fault_rate, opts.seed, format!("cluster {index} {}", spec.name)),
            retry_after_secs: opts.retry_after_secs,
            log: Mutex::new(Vec::new()),
            controller_polls: opts.controller_polls,
            outside: std::sync::OnceLock::new(),
        });
        s.seed(spec);
        s
    }

    fn seed(&self, spec: &ClusterSpec) {
        let mut inner = self.lock();
        for crd in resources::guide_crds() {
            let _ = objects::create_crd(self, &mut inner, crd);
        }
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease", "istio-system"] {
            let _ = objects::create_namespace(
                self,
                &mut inner,
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            );
        }
        let put = |inner: &mut Inner, group: &str, plural: &str, obj: Value| {
            let def = inner.defs.iter().find(|d| d.group == group && d.plural == plural).cloned();
            if let Some(def) = def {
                let _ = objects::create_object(self, inner, &def, obj, "kube-controller-manager", false);
            }
        };
        put(
            &mut inner,
            "",
            "serviceaccounts",
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "istio-reader-service-account", "namespace": "istio-system", "labels": {"app": "istio-reader", "release": "istio"}}}),
        );
        // What an Istio installation grants the reader: istiod of other clusters reads with it.
        let rbac = "rbac.authorization.k8s.io";
        let reader = "istio-reader-clusterrole-istio-system";
        put(
            &mut inner,
            rbac,
            "clusterroles",
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": reader, "labels": {"app": "istio-reader", "release": "istio"}},
                   "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]},
                             {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
                             {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]}]}),
        );
        put(
            &mut inner,
            rbac,
            "clusterrolebindings",
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": reader, "labels": {"app": "istio-reader", "release": "istio"}},
                   "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": reader},
                   "subjects": [{"kind": "ServiceAccount", "name": "istio-reader-service-account", "namespace": "istio-system"}]}),
        );
        // A cluster without a pre-installed control plane (`istio_revision = ""`) gets one only
        // when something installs it (the fleet's managed mesh, an Istio operator).
        if spec.istio_revision.is_empty() {
            return;
        }
        for crd in resources::istio_crds() {
            let _ = objects::create_crd(self, &mut inner, crd);
        }
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

    /// What a controller outside the cluster (GKE's mesh controller) installs: `obj` of the kind
    /// `group`/`plural` created, or replaced when it exists (a CRD object makes its kind served).
    /// Errors (an unknown kind, a missing namespace) are returned as messages.
    pub fn controller_put(&self, group: &str, plural: &str, obj: Value, manager: &str) -> Result<(), String> {
        let mut inner = self.lock();
        if group == "apiextensions.k8s.io" && plural == "customresourcedefinitions" {
            let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
            let exists = inner.objects.keys().any(|k| k.1 == plural && k.3 == name);
            return if exists {
                Ok(())
            } else {
                objects::create_crd(self, &mut inner, obj).map(|_| ()).map_err(|e| e.message)
            };
        }
        let def = inner
            .defs
            .iter()
            .find(|d| d.group == group && d.plural == plural)
            .cloned()
            .ok_or_else(|| format!("{plural}.{group} is not served"))?;
        let ns = obj["metadata"]["namespace"].as_str().unwrap_or("").to_string();
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        if !inner.objects.contains_key(&state::key_of(&def, &ns, &name)) {
            return objects::create_object(self, &mut inner, &def, obj, manager, false)
                .map(|_| ())
                .map_err(|e| e.message);
        }
        drop(inner);
        let version = def.versions[0].clone();
        objects::update(self, &def, &version, &ns, &name, None, false, manager, |old| {
            let mut new = obj.clone();
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
            Ok(new)
        })
        .map(|_| ())
        .map_err(|e| e.message)
    }

    /// A controller's write from outside the cluster (see `objects::controller_merge`): created,
    /// or the labels, annotations and spec fields it sets laid over the stored object. Whether
    /// anything was written; an error message for an unknown kind or a missing namespace.
    pub fn controller_merge(&self, group: &str, plural: &str, obj: Value, manager: &str) -> Result<bool, String> {
        let mut inner = self.lock();
        let def = inner
            .defs
            .iter()
            .find(|d| d.group == group && d.plural == plural)
            .cloned()
            .ok_or_else(|| format!("{plural}.{group} is not served"))?;
        objects::controller_merge(self, &mut inner, &def, obj, manager).map_err(|e| e.message)
    }

    /// A controller's change of one object (its status, an annotation) by `f`; nothing when the
    /// object is absent or `f` changes nothing.
    pub fn controller_edit(&self, group: &str, plural: &str, ns: &str, name: &str, f: impl FnOnce(&mut Value)) {
        let mut inner = self.lock();
        let Some(def) = inner.defs.iter().find(|d| d.group == group && d.plural == plural).cloned() else { return };
        let key = state::key_of(&def, ns, name);
        objects::controller_edit(self, &mut inner, key, f);
    }

    /// Stalls (or, `false`, frees) the rollout of a Deployment: its pods never become available
    /// (`Progressing` False, ProgressDeadlineExceeded), as when images cannot be pulled. Freed,
    /// a stalled rollout completes at once (its pods could start after all).
    pub fn stall_rollout(&self, namespace: &str, name: &str, stalled: bool) {
        let key = (namespace.to_string(), name.to_string());
        let mut inner = self.lock();
        if stalled {
            inner.stalled_rollouts.insert(key);
            return;
        }
        if !inner.stalled_rollouts.remove(&key) {
            return;
        }
        let dkey: Key = ("apps".into(), "deployments".into(), namespace.into(), name.into());
        if let Some(old) = inner.objects.get(&dkey).cloned() {
            let mut new = old.clone();
            controllers::rollout_update(&inner, &old, &mut new);
            if new != old {
                state::persist(self, &mut inner, dkey, new, "MODIFIED");
            }
            controllers::workloads(self, &mut inner, namespace);
        }
    }

    /// Deletes what [`KubeServer::controller_put`] installed; absent objects are no error.
    pub fn controller_delete(self: &Arc<Self>, group: &str, plural: &str, ns: &str, name: &str) {
        let def = self.lock().defs.iter().find(|d| d.group == group && d.plural == plural).cloned();
        if let Some(def) = def {
            let version = def.versions[0].clone();
            let _ = objects::delete(self, &def, &version, ns, name, b"", false);
        }
    }

    /// Serves HTTPS on `listener` (an IP endpoint) until the runtime stops, under a certificate
    /// of the cluster CA.
    pub fn serve(self: &Arc<Self>, listener: TcpListener) -> Result<(), String> {
        let ips: Vec<std::net::IpAddr> = ["127.0.0.1", "127.0.0.2"].iter().filter_map(|a| a.parse().ok()).collect();
        let names = ["localhost".into(), "kubernetes.default.svc".into()];
        self.serve_with(listener, &self.ca, &ips, &names, Via::Ip)
    }

    /// Serves the DNS-based endpoint on `listener`: the name `localhost` (as the real one is a
    /// name under `gke.goog`), under a certificate of the simulator's public root.
    pub fn serve_dns(self: &Arc<Self>, listener: TcpListener, public_root: &ClusterCa) -> Result<(), String> {
        self.serve_with(listener, public_root, &[], &["localhost".into()], Via::Dns)
    }

    fn serve_with(
        self: &Arc<Self>,
        listener: TcpListener,
        ca: &ClusterCa,
        ips: &[std::net::IpAddr],
        names: &[String],
        via: Via,
    ) -> Result<(), String> {
        let acceptor = tls_acceptor(ca, ips, names)?;
        let app = http::router(self.clone()).layer(axum::Extension(via));
        serve_tls(listener, acceptor, app);
        Ok(())
    }

    /// Answers a request as this API server does, marked as having come in `via` (the Connect
    /// Gateway forwards through it).
    pub async fn forward(self: &Arc<Self>, req: axum::extract::Request, via: Via) -> axum::response::Response {
        use tower::ServiceExt as _;
        let app = http::router(self.clone()).layer(axum::Extension(via));
        match app.oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        }
    }
}

/// A TLS acceptor with a new serving certificate of `ca` for these addresses and names.
pub fn tls_acceptor(
    ca: &ClusterCa,
    ips: &[std::net::IpAddr],
    names: &[String],
) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    let (cert_pem, key_pem) = ca.issue_server(ips, names)?;
    let certs = vec![
        rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| e.to_string())?,
        rustls::pki_types::CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).map_err(|e| e.to_string())?,
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
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serves `app` over TLS on `listener` until the runtime stops (upgrades included: watches,
/// exec-style streams).
pub fn serve_tls(listener: TcpListener, acceptor: tokio_rustls::TlsAcceptor, app: axum::Router) {
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
}
