//! The in-cluster Istio operator (1.14's `operator server`), as a controller of the simulated
//! API server. Facts from Istio 1.14.1's source (`operator/pkg/controller/istiocontrolplane`,
//! `manifests/charts/istio-operator`, `operator/pkg/helmreconciler/prune.go`):
//!
//! - The operator is a Deployment (`istioctl operator init --revision R` names it
//!   `istio-operator-R`) whose pod template carries `name: istio-operator` and whose container's
//!   env has `REVISION` (R, or empty) and `WATCH_NAMESPACE` (default `istio-system`). It acts only
//!   when it is available, only on IstioOperators in the namespaces it watches, and only on those
//!   whose `spec.revision` is its own (an operator without a revision takes every one). With no
//!   such operator an IstioOperator just sits there, with no status.
//! - It reconciles the profile (`default`: base, pilot and the `istio-ingressgateway`;
//!   `minimal`: base and pilot; `demo`: those plus the egress gateway; `empty`: nothing) and
//!   `components` into objects: the Istio CRDs (Base), `istiod-R` Deployment and Service (Pilot;
//!   `istiod` with no revision), and one Deployment and Service per enabled gateway, named as
//!   declared (gateways are not revisioned: a later IstioOperator naming the same gateway takes
//!   it over and relabels it). Each object is labelled `istio.io/rev`,
//!   `operator.istio.io/component`, `install.operator.istio.io/owning-resource(-namespace)`,
//!   `operator.istio.io/managed: Reconcile`, `operator.istio.io/version`.
//! - `status.status` is RECONCILING until every Deployment it made is available, then HEALTHY;
//!   `componentStatus` per component, `message` naming what it waits for. It adds the finalizer
//!   `istio-finalizer.install.istio.io`; deleting the IstioOperator prunes the objects labelled
//!   with its revision whose component is Pilot or a gateway (whoever owns them: a gateway
//!   relabelled by another revision's IstioOperator survives), then lets it go. With the
//!   operator gone, the finalizer keeps the IstioOperator Terminating.
//!
//! The simulator's delay: the operator reconciles a generation after `controller_polls` reads
//! of the IstioOperator (RECONCILING before), so tests are decided by requests alone. A test
//! stalls it by stalling a Deployment it makes (`KubeServer::stall_rollout`): the IstioOperator
//! then stays RECONCILING, waiting for it.

use serde_json::{Value, json};

use super::controllers::workloads;
use super::objects::controller_merge;
use super::resources::{ResourceDef, istio_crds};
use super::state::{Inner, Key, KubeServer, persist};

/// The finalizer the operator puts on an IstioOperator.
pub const FINALIZER: &str = "istio-finalizer.install.istio.io";
const MANAGER: &str = "istio-operator";

fn is_iop(key: &Key) -> bool {
    key.0 == "install.istio.io" && key.1 == "istiooperators"
}

/// An IstioOperator's revision (empty: none).
fn revision(iop: &Value) -> String {
    iop["spec"]["revision"].as_str().unwrap_or("").to_string()
}

/// Whether an available operator Deployment acts on `iop` (in namespace `ns`).
fn operator_present(inner: &Inner, iop: &Value, ns: &str) -> bool {
    let rev = revision(iop);
    inner.objects.iter().filter(|(k, _)| k.0 == "apps" && k.1 == "deployments").any(|(_, d)| {
        let template = &d["spec"]["template"];
        let env = |name: &str| {
            template["spec"]["containers"][0]["env"]
                .as_array()
                .and_then(|e| e.iter().find(|v| v["name"] == name))
                .and_then(|v| v["value"].as_str())
                .map(String::from)
        };
        let watched = env("WATCH_NAMESPACE").unwrap_or_else(|| "istio-system".into());
        let available = d["status"]["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Available" && c["status"] == "True"));
        template["metadata"]["labels"]["name"] == "istio-operator"
            && available
            && watched.split(',').any(|w| w.trim() == ns)
            && env("REVISION").is_none_or(|r| r.is_empty() || r == rev)
    })
}

/// What a read of the object at `key` lets the operator do first: reconcile an IstioOperator
/// whose generation has had its reads, or finish deleting one.
pub fn observe(s: &KubeServer, inner: &mut Inner, key: &Key) {
    if !is_iop(key) {
        return;
    }
    let Some(iop) = inner.objects.get(key).cloned() else { return };
    if !operator_present(inner, &iop, &key.2) {
        return;
    }
    if !iop["metadata"]["deletionTimestamp"].is_null() {
        finalize(s, inner, key, &iop);
        return;
    }
    let generation = iop["metadata"]["generation"].as_i64().unwrap_or(1);
    let left = match inner.iop_reads.get(key) {
        Some((g, left)) if *g == generation => left.saturating_sub(1),
        _ => s.controller_polls,
    };
    inner.iop_reads.insert(key.clone(), (generation, left));
    if left > 0 {
        let status = json!({"status": "RECONCILING", "message": "reconciling the installation"});
        set_status(s, inner, key, &iop, status, false);
        return;
    }
    reconcile(s, inner, key, &iop);
}

/// [`observe`] of every IstioOperator a list reads (of namespace `ns`; all for "").
pub fn observe_all(s: &KubeServer, inner: &mut Inner, ns: &str) {
    let keys: Vec<Key> = inner.objects.keys().filter(|k| is_iop(k) && (ns.is_empty() || k.2 == ns)).cloned().collect();
    for key in keys {
        observe(s, inner, &key);
    }
}

/// After a DELETE of `key`: an IstioOperator held by the finalizer goes at once when its
/// operator is there.
pub fn after_delete(s: &KubeServer, inner: &mut Inner, key: &Key) {
    observe(s, inner, key);
}

fn set_status(s: &KubeServer, inner: &mut Inner, key: &Key, iop: &Value, status: Value, finalizer: bool) {
    let mut new = iop.clone();
    new["status"] = status;
    if finalizer {
        let f = new["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
        if !f.iter().any(|x| x == FINALIZER) {
            let mut f = f;
            f.push(json!(FINALIZER));
            new["metadata"]["finalizers"] = json!(f);
        }
    }
    if new != *iop {
        persist(s, inner, key.clone(), new, "MODIFIED");
    }
}

/// The components the profile and `components` enable: pilot, and the gateways (name,
/// namespace, entry).
fn components(iop: &Value, ns: &str) -> (bool, bool, Vec<(String, String, Value)>) {
    let spec = &iop["spec"];
    let profile = spec["profile"].as_str().unwrap_or("default");
    let base = profile != "empty" && spec["components"]["base"]["enabled"] != false;
    let pilot = profile != "empty" && spec["components"]["pilot"]["enabled"] != false;
    let mut gateways: Vec<(String, String, Value)> = Vec::new();
    if matches!(profile, "default" | "demo") {
        gateways.push(("istio-ingressgateway".into(), ns.into(), json!({"name": "istio-ingressgateway"})));
    }
    for g in spec["components"]["ingressGateways"].as_array().into_iter().flatten() {
        let name = g["name"].as_str().unwrap_or("istio-ingressgateway").to_string();
        let gns = g["namespace"].as_str().unwrap_or(ns).to_string();
        gateways.retain(|(n, _, _)| *n != name);
        if g["enabled"] != false {
            gateways.push((name, gns, g.clone()));
        }
    }
    (base, pilot, gateways)
}

/// The labels the operator puts on what it makes for `iop`.
fn owner_labels(iop: &Value, ns: &str, component: &str) -> Value {
    let rev = revision(iop);
    json!({"istio.io/rev": if rev.is_empty() { "default" } else { rev.as_str() },
           "operator.istio.io/component": component,
           "install.operator.istio.io/owning-resource": iop["metadata"]["name"],
           "install.operator.istio.io/owning-resource-namespace": ns,
           "operator.istio.io/managed": "Reconcile",
           "operator.istio.io/version": tag(iop)})
}

fn tag(iop: &Value) -> String {
    iop["spec"]["tag"].as_str().map_or_else(|| "1.14.1".to_string(), String::from)
}

fn hub(iop: &Value) -> String {
    iop["spec"]["hub"].as_str().map_or_else(|| "docker.io/istio".to_string(), String::from)
}

fn merged(mut a: Value, b: &Value) -> Value {
    for (k, v) in b.as_object().into_iter().flatten() {
        a[k] = v.clone();
    }
    a
}

/// istiod's Deployment and Service for `iop`.
fn pilot_objects(iop: &Value, ns: &str) -> Vec<(&'static str, &'static str, Value)> {
    let rev = revision(iop);
    let name = if rev.is_empty() { "istiod".to_string() } else { format!("istiod-{rev}") };
    let rev_label = if rev.is_empty() { "default".to_string() } else { rev.clone() };
    let labels = merged(json!({"app": "istiod", "istio": "pilot"}), &owner_labels(iop, ns, "Pilot"));
    let selector = json!({"app": "istiod", "istio.io/rev": rev_label});
    let cluster = iop["spec"]["values"]["global"]["multiCluster"]["clusterName"].as_str().unwrap_or("Kubernetes");
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"replicas": 1, "selector": {"matchLabels": selector},
                 "template": {"metadata": {"labels": {"app": "istiod", "istio": "pilot", "istio.io/rev": rev_label, "sidecar.istio.io/inject": "false"}},
                              "spec": {"serviceAccountName": format!("istiod-{rev_label}"), "containers": [{"name": "discovery", "image": format!("{}/pilot:{}", hub(iop), tag(iop)),
                                  "env": [{"name": "REVISION", "value": rev_label}, {"name": "CLUSTER_ID", "value": cluster}]}]}}}});
    let service = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"selector": selector, "ports": [{"name": "grpc-xds", "port": 15010}, {"name": "https-dns", "port": 15012},
                                                 {"name": "https-webhook", "port": 443, "targetPort": 15017}, {"name": "http-monitoring", "port": 15014}]}});
    vec![("apps", "deployments", deployment), ("", "services", service)]
}

/// A gateway's Deployment and Service, from its `ingressGateways` entry.
fn gateway_objects(iop: &Value, name: &str, ns: &str, entry: &Value) -> Vec<(&'static str, &'static str, Value)> {
    let short = name.strip_prefix("istio-").unwrap_or(name);
    let own = merged(json!({"app": name, "istio": short}), &entry["label"]);
    let labels = merged(own.clone(), &owner_labels(iop, &iop_ns(iop), "IngressGateways"));
    let k8s = &entry["k8s"];
    let ports = k8s["service"]["ports"].as_array().cloned().unwrap_or_else(|| {
        vec![
            json!({"name": "status-port", "port": 15021, "targetPort": 15021}),
            json!({"name": "http2", "port": 80, "targetPort": 8080}),
            json!({"name": "https", "port": 443, "targetPort": 8443}),
        ]
    });
    let mut meta = json!({"name": name, "namespace": ns, "labels": labels});
    if let Some(a) = k8s["serviceAnnotations"].as_object().filter(|a| !a.is_empty()) {
        meta["annotations"] = json!(a);
    }
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": meta,
        "spec": {"type": k8s["service"]["type"].as_str().unwrap_or("LoadBalancer"), "selector": own, "ports": ports}});
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"replicas": k8s["replicaCount"].as_i64().unwrap_or(1), "selector": {"matchLabels": own},
                 "template": {"metadata": {"labels": merged(own.clone(), &json!({"istio.io/rev": labels["istio.io/rev"], "sidecar.istio.io/inject": "false"}))},
                              "spec": {"containers": [{"name": "istio-proxy", "image": format!("{}/proxyv2:{}", hub(iop), tag(iop)),
                                  "env": k8s["env"].as_array().cloned().unwrap_or_default()}]}}}});
    vec![("apps", "deployments", deployment), ("", "services", service)]
}

fn iop_ns(iop: &Value) -> String {
    iop["metadata"]["namespace"].as_str().unwrap_or("istio-system").to_string()
}

/// Creates or updates `obj` of `group`/`plural` as the operator.
fn put(s: &KubeServer, inner: &mut Inner, group: &str, plural: &str, obj: Value) {
    let Some(def) = inner.defs.iter().find(|d| d.group == group && d.plural == plural).cloned() else { return };
    let _ = controller_merge(s, inner, &def, obj, MANAGER);
}

/// Makes what `iop` declares, prunes what it made and no longer declares, and sets its status.
fn reconcile(s: &KubeServer, inner: &mut Inner, key: &Key, iop: &Value) {
    let ns = iop_ns(iop);
    let (base, pilot, gateways) = components(iop, &ns);
    let mut made: Vec<(&'static str, &'static str, Value)> = Vec::new();
    if base {
        for crd in istio_crds() {
            let name = crd["metadata"]["name"].as_str().unwrap_or("").to_string();
            if !inner.objects.keys().any(|k| k.1 == "customresourcedefinitions" && k.3 == name) {
                let _ = super::objects::create_crd(s, inner, crd);
            }
        }
    }
    if pilot {
        made.extend(pilot_objects(iop, &ns));
    }
    for (name, gns, entry) in &gateways {
        made.extend(gateway_objects(iop, name, gns, entry));
    }
    let mut keep: Vec<Key> = Vec::new();
    for (group, plural, obj) in made {
        let (ons, name) = (
            obj["metadata"]["namespace"].as_str().unwrap_or("").to_string(),
            obj["metadata"]["name"].as_str().unwrap_or("").to_string(),
        );
        keep.push((group.into(), plural.into(), ons, name));
        put(s, inner, group, plural, obj);
    }
    let me = iop["metadata"]["name"].clone();
    prune(s, inner, |k, v| {
        let l = &v["metadata"]["labels"];
        l["install.operator.istio.io/owning-resource"] == me
            && l["install.operator.istio.io/owning-resource-namespace"] == ns.as_str()
            && !keep.contains(k)
    });
    let status = health(inner, &keep, base, pilot, !gateways.is_empty());
    set_status(s, inner, key, iop, status, true);
}

/// The status: HEALTHY when every Deployment made is available, else RECONCILING naming the
/// first that is not.
fn health(inner: &Inner, made: &[Key], base: bool, pilot: bool, gateways: bool) -> Value {
    let waiting = made.iter().filter(|k| k.1 == "deployments").find(|k| {
        !inner.objects.get(*k).is_some_and(|d| {
            d["status"]["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Available" && c["status"] == "True"))
        })
    });
    let mut components = serde_json::Map::new();
    let state = |component: &str| {
        let waits = waiting.is_some_and(|k| (k.3.starts_with("istiod")) == (component == "Pilot"));
        if waits { json!({"status": "RECONCILING"}) } else { json!({"status": "HEALTHY"}) }
    };
    for (on, name) in [(base, "Base"), (pilot, "Pilot"), (gateways, "IngressGateways")] {
        if on {
            components.insert(name.into(), state(name));
        }
    }
    match waiting {
        None => json!({"status": "HEALTHY", "componentStatus": components}),
        Some(k) => json!({"status": "RECONCILING", "componentStatus": components,
                          "message": format!("waiting for Deployment {}/{}: its pods are not available", k.2, k.3)}),
    }
}

/// Deletes every operator-made object (Deployments, Services) that `pred` selects.
fn prune(s: &KubeServer, inner: &mut Inner, pred: impl Fn(&Key, &Value) -> bool) {
    let doomed: Vec<(Key, Value)> = inner
        .objects
        .iter()
        .filter(|(k, _)| (k.0 == "apps" && k.1 == "deployments") || (k.0.is_empty() && k.1 == "services"))
        .filter(|(_, v)| v["metadata"]["labels"]["operator.istio.io/managed"] == "Reconcile")
        .filter(|(k, v)| pred(k, v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut namespaces = std::collections::BTreeSet::new();
    for (k, v) in doomed {
        namespaces.insert(k.2.clone());
        persist(s, inner, k, v, "DELETED");
    }
    for ns in namespaces {
        workloads(s, inner, &ns);
    }
}

/// A deleted IstioOperator: its revision's control plane and gateways pruned, its finalizer
/// removed, and it is gone.
fn finalize(s: &KubeServer, inner: &mut Inner, key: &Key, iop: &Value) {
    let rev = revision(iop);
    let rev = if rev.is_empty() { "default".to_string() } else { rev };
    prune(s, inner, |_, v| {
        let l = &v["metadata"]["labels"];
        l["istio.io/rev"] == rev.as_str()
            && matches!(l["operator.istio.io/component"].as_str(), Some("Pilot" | "IngressGateways" | "EgressGateways"))
    });
    inner.iop_reads.remove(key);
    let mut gone = iop.clone();
    gone["metadata"]["finalizers"] = json!([]);
    let gone = persist(s, inner, key.clone(), gone, "MODIFIED");
    persist(s, inner, key.clone(), gone, "DELETED");
}

/// Whether `def` is a kind this controller acts on when read.
pub fn watches(def: &ResourceDef) -> bool {
    def.group == "install.istio.io" && def.plural == "istiooperators"
}
