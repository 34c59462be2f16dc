//! One simulated API server's state: the served kinds, the objects, the history of changes
//! watchers resume from, service-account tokens; and the storage primitives every concern of
//! `kube/` writes through ([`persist`]) or reads with ([`key_of`], [`find_def`], [`served`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::resources::ResourceDef;
use super::status::{KResult, KubeError};
use crate::certs::ClusterCa;

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
    /// Deployments (`namespace`, `name`) whose rollout a test has stalled: their pods never
    /// become available (see `controllers::rollout`).
    pub stalled_rollouts: std::collections::BTreeSet<(String, String)>,
    /// The Istio operator's progress per IstioOperator: the generation it saw and the reads
    /// left before it reconciles it (see `istio`).
    pub iop_reads: BTreeMap<Key, (i64, u32)>,
    /// Something controllers outside the cluster watch (Services, Multi Cluster Ingress
    /// objects) changed since they last ran (see `KubeServer::outside`).
    pub outside_dirty: bool,
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
    /// Every request: method, path and query, status, when it finished, the way it came in.
    pub log: Mutex<Vec<LogLine>>,
    /// Reads of a changed IstioOperator before the operator reconciles it (`SimOptions::controller_polls`).
    pub controller_polls: u32,
    /// Controllers outside the cluster (GKE's service, NEG and Multi Cluster Ingress
    /// controllers), run after a request that changed what they watch; set by the server that
    /// knows the rest of the world.
    pub outside: std::sync::OnceLock<OutsideHook>,
}

/// A request of [`KubeServer::log`]: method, path and query, status, when it finished, the way
/// it came in.
pub type LogLine = (String, String, u16, std::time::Instant, Via);

/// The way a request reached the API server: its IP endpoints (public or private), its
/// DNS-based endpoint, or the fleet's Connect Gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// The public or private IP endpoint, under the cluster CA.
    Ip,
    /// The DNS-based endpoint, under the simulator's public root.
    Dns,
    /// The Connect Gateway (forwarded by the Google API listener's gateway).
    Gateway,
}

impl Via {
    /// Its name in the request log.
    pub fn name(self) -> &'static str {
        match self {
            Via::Ip => "ip",
            Via::Dns => "dns",
            Via::Gateway => "gateway",
        }
    }
}

/// See [`KubeServer::outside`].
pub type OutsideHook = Box<dyn Fn(&Arc<KubeServer>) + Send + Sync>;

/// Events kept for watches that resume from a resourceVersion.
pub(super) const HISTORY: usize = 20_000;

impl KubeServer {
    /// Locks the state.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A kubeconfig for a service-account token against `server` (`host:port`).
    pub fn kubeconfig_for_token(&self, server: &str, token: &str) -> String {
        let ca = base64::engine::general_purpose::STANDARD.encode(self.ca.cert_pem.as_bytes());
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: https://{server}\n  name: c\ncontexts:\n- context:\n    cluster: c\n    user: u\n  name: c\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: {token}\n"
        )
    }
}

/// Stores an object (bumping the RV) and tells watchers.
pub fn persist(s: &KubeServer, inner: &mut Inner, key: Key, mut obj: Value, kind: &'static str) -> Value {
    inner.rv += 1;
    obj["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
    if matches!(key.1.as_str(), "services" | "multiclusteringresses" | "multiclusterservices") {
        inner.outside_dirty = true;
    }
    if kind == "DELETED" {
        inner.objects.remove(&key);
    } else {
        inner.objects.insert(key.clone(), obj.clone());
    }
    let ev = Event { rv: inner.rv, kind, key, object: obj.clone() };
    inner.history.push_back(ev.clone());
    while inner.history.len() > HISTORY {
        inner.history.pop_front();
    }
    let _ = s.events.send(ev);
    obj
}

pub fn key_of(def: &ResourceDef, ns: &str, name: &str) -> Key {
    (
        def.group.clone(),
        def.plural.clone(),
        if def.namespaced { ns.to_string() } else { String::new() },
        name.to_string(),
    )
}

/// The kind served at `group`/`version`/`plural`.
pub fn find_def(s: &KubeServer, group: &str, version: &str, plural: &str) -> KResult<ResourceDef> {
    s.lock()
        .defs
        .iter()
        .find(|d| d.group == group && d.plural == plural && d.versions.iter().any(|v| v == version))
        .cloned()
        .ok_or_else(KubeError::no_resource)
}

/// The object as served in `version` (custom kinds share storage across versions).
pub fn served(def: &ResourceDef, version: &str, mut obj: Value) -> Value {
    obj["apiVersion"] = json!(def.api_version(version));
    obj["kind"] = json!(def.kind);
    obj
}
