//! Health gates: the kinds whose health is well known, what "healthy" means for each, and the
//! wait after a create or update until an object is (within the resource's `timeouts`, else
//! `wait_timeout_seconds`). A manifest's `wait_for = false` opts out; a `wait_for` table replaces
//! the gate with its own condition.
//!
//! - `apps/Deployment`: Available — the current generation observed, the `Available` condition
//!   True and every replica available; `Progressing` False (ProgressDeadlineExceeded) fails.
//! - `apiextensions.k8s.io/CustomResourceDefinition`: Established.
//! - `mesh.cloud.google.com/ControlPlaneRevision`: Reconciled; `Stalled` True fails.
//! - `install.istio.io/IstioOperator`: HEALTHY (`status.status`, written by the Istio operator
//!   of its revision; with no status at all, the operator is missing or not watching).
//! - `networking.gke.io/MultiClusterIngress`: VIP assigned (`status.VIP`, written by GKE's Multi
//!   Cluster Ingress controller in the fleet's config cluster).
//!
//! An object may also make others that apply waits on ([`gates_of`]): the Service of each
//! gateway an IstioOperator declares with a `cloud.google.com/neg` annotation asking for
//! standalone NEGs (`exposed_ports`) is waited on until GKE's NEG controller reports every port
//! synced in `cloud.google.com/neg-status` — the NEG is the controller's to make; a NEG of that
//! name someone else made is never synced, and the wait says so.

use std::time::Duration;

use meshform_engine::provider::{ErrorKind, Poll, ProviderError, ProviderResult};
use serde_json::Value as J;

use crate::conn::Kube;
use crate::objects::{self, ObjRef};

/// A kind's health gate.
#[derive(Clone, Copy, Debug)]
pub struct Gate {
    /// What is waited for, as the plan shows it (`Available`).
    pub what: &'static str,
    check: fn(&J) -> Health,
}

/// An object's health now.
#[derive(Debug, PartialEq)]
pub enum Health {
    /// Healthy.
    Ready,
    /// Not yet; why.
    Pending(String),
    /// Will not become healthy without a change; why.
    Failed(String),
}

impl Gate {
    /// The health of `live` by this gate.
    pub fn health(&self, live: &J) -> Health {
        (self.check)(live)
    }
}

/// The gate of a document's kind, if its health is well known.
pub fn gate_of(doc: &J) -> Option<Gate> {
    let group = doc["apiVersion"].as_str().unwrap_or("").rsplit_once('/').map_or("", |(g, _)| g);
    match (group, doc["kind"].as_str().unwrap_or("")) {
        ("apps", "Deployment") => Some(Gate { what: "Available", check: deployment }),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => Some(Gate { what: "Established", check: crd }),
        ("mesh.cloud.google.com", "ControlPlaneRevision") => Some(Gate { what: "Reconciled", check: revision }),
        ("install.istio.io", "IstioOperator") => Some(Gate { what: "HEALTHY", check: istio_operator }),
        ("networking.gke.io", "MultiClusterIngress") => Some(Gate { what: "VIP assigned", check: ingress_vip }),
        _ => None,
    }
}

/// Every gate apply waits on for the document `doc`: its own kind's, then those of objects it
/// makes (see the module doc), each with the object it judges.
pub fn gates_of(doc: &J) -> Vec<(ObjRef, Gate)> {
    let mut out = Vec::new();
    if let (Some(gate), Ok(r)) = (gate_of(doc), objects::ref_of(doc)) {
        out.push((r, gate));
    }
    let is_iop = doc["apiVersion"].as_str().is_some_and(|v| v.starts_with("install.istio.io/"))
        && doc["kind"] == "IstioOperator";
    if is_iop {
        let ns = doc["metadata"]["namespace"].as_str().unwrap_or("istio-system");
        for g in doc["spec"]["components"]["ingressGateways"].as_array().into_iter().flatten() {
            let note = g["k8s"]["serviceAnnotations"]["cloud.google.com/neg"].as_str().unwrap_or("");
            let exposed = serde_json::from_str::<J>(note).ok().is_some_and(|n| n["exposed_ports"].is_object());
            if g["enabled"] == false || !exposed {
                continue;
            }
            let name = g["name"].as_str().unwrap_or("istio-ingressgateway");
            let r = ObjRef {
                api_version: "v1".into(),
                kind: "Service".into(),
                namespace: Some(g["namespace"].as_str().unwrap_or(ns).to_string()),
                name: name.into(),
            };
            out.push((r, Gate { what: "NEGs synced", check: negs_synced }));
        }
    }
    out
}

/// A Service whose `cloud.google.com/neg` asks for standalone NEGs: synced when the NEG
/// controller's `cloud.google.com/neg-status` names one for every exposed port.
fn negs_synced(live: &J) -> Health {
    let notes = &live["metadata"]["annotations"];
    let wanted: Vec<String> = notes["cloud.google.com/neg"]
        .as_str()
        .and_then(|n| serde_json::from_str::<J>(n).ok())
        .and_then(|n| n["exposed_ports"].as_object().map(|p| p.keys().cloned().collect()))
        .unwrap_or_default();
    let status = notes["cloud.google.com/neg-status"].as_str().and_then(|n| serde_json::from_str::<J>(n).ok());
    let synced = |port: &String| status.as_ref().is_some_and(|s| s["network_endpoint_groups"][port].is_string());
    let missing: Vec<&String> = wanted.iter().filter(|p| !synced(p)).collect();
    if missing.is_empty() {
        return Health::Ready;
    }
    let names: Vec<String> = missing.iter().map(|p| format!("port {p}")).collect();
    Health::Pending(format!(
        "GKE's NEG controller has not synced the NEG of {} (cloud.google.com/neg-status); a NEG of that name in the cluster's zones that another cluster, Service or tool made is never taken over: delete it, or name this one differently",
        names.join(", ")
    ))
}

/// The condition `kind` of `live`: its status and message.
fn condition<'a>(live: &'a J, kind: &str) -> Option<(&'a str, &'a str)> {
    live["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .map(|c| (c["status"].as_str().unwrap_or(""), c["message"].as_str().or(c["reason"].as_str()).unwrap_or("")))
}

fn deployment(live: &J) -> Health {
    let generation = live["metadata"]["generation"].as_i64().unwrap_or(0);
    let observed = live["status"]["observedGeneration"].as_i64().unwrap_or(0);
    if observed < generation {
        return Health::Pending(format!("generation {generation} not observed yet (observed {observed})"));
    }
    if let Some(("False", msg)) = condition(live, "Progressing") {
        return Health::Failed(format!("its rollout is not progressing: {msg}"));
    }
    let want = live["spec"]["replicas"].as_i64().unwrap_or(1);
    let available = live["status"]["availableReplicas"].as_i64().unwrap_or(0);
    match condition(live, "Available") {
        Some(("True", _)) if available >= want => Health::Ready,
        _ => Health::Pending(format!("{available} of {want} replicas available")),
    }
}

fn crd(live: &J) -> Health {
    match condition(live, "Established") {
        Some(("True", _)) => Health::Ready,
        _ => Health::Pending("not established yet".into()),
    }
}

fn revision(live: &J) -> Health {
    if let Some(("True", msg)) = condition(live, "Stalled") {
        return Health::Failed(format!("the control plane revision is stalled: {msg}"));
    }
    match condition(live, "Reconciled") {
        Some(("True", _)) => Health::Ready,
        Some((_, msg)) => Health::Pending(format!("not reconciled yet: {msg}")),
        None => Health::Pending("not reconciled yet".into()),
    }
}

fn istio_operator(live: &J) -> Health {
    let message = live["status"]["message"].as_str().unwrap_or("");
    match live["status"]["status"].as_str() {
        Some("HEALTHY") => Health::Ready,
        Some(state) if message.is_empty() => Health::Pending(format!("status {state}")),
        Some(state) => Health::Pending(format!("status {state}: {message}")),
        None => {
            let rev = live["spec"]["revision"].as_str().filter(|r| !r.is_empty());
            Health::Pending(format!(
                "no status: no Istio operator{} is reconciling it (is it installed, available, and watching namespace {}?)",
                rev.map(|r| format!(" of revision {r}")).unwrap_or_default(),
                live["metadata"]["namespace"].as_str().unwrap_or("istio-system")
            ))
        }
    }
}

fn ingress_vip(live: &J) -> Health {
    match live["status"]["VIP"].as_str() {
        Some(vip) if !vip.is_empty() => Health::Ready,
        _ => Health::Pending(
            "no VIP yet (the Multi Cluster Ingress controller runs in the fleet's config cluster; a `networking.gke.io/static-ip` address must exist)"
                .into(),
        ),
    }
}

/// Waits until the object of `r` in `cluster` passes `gate`, at most `timeout`.
pub async fn wait(k: &Kube, cluster: &str, r: &ObjRef, gate: Gate, timeout: Duration) -> ProviderResult<()> {
    let last = std::sync::Mutex::new(String::from("not read yet"));
    let check = || async {
        let Some(live) = objects::get(k, cluster, r).await? else {
            *last.lock().unwrap_or_else(|e| e.into_inner()) = "it does not exist".into();
            return Ok(None);
        };
        match (gate.check)(&live) {
            Health::Ready => Ok(Some(())),
            Health::Pending(why) => {
                *last.lock().unwrap_or_else(|e| e.into_inner()) = why;
                Ok(None)
            }
            Health::Failed(why) => Err(ProviderError::new(
                ErrorKind::Invalid,
                format!("{r} in cluster `{cluster}` will not become {}: {why}", gate.what),
            )),
        }
    };
    let timed_out = || {
        ProviderError::new(
            ErrorKind::Transient,
            format!(
                "{r} in cluster `{cluster}` did not become {} within {timeout:?}: {}; set a longer `timeouts`, or `wait_for = false` not to wait",
                gate.what,
                last.lock().unwrap_or_else(|e| e.into_inner())
            ),
        )
    };
    Poll::new(timeout, Duration::from_millis(100), Duration::from_secs(2)).until(check, timed_out).await
}

#[cfg(test)]
mod tests {
    use super::{Health, gate_of};
    use serde_json::json;

    #[test]
    fn a_deployment_is_available_when_its_generation_is_rolled_out() {
        let gate = gate_of(&json!({"apiVersion": "apps/v1", "kind": "Deployment"})).unwrap();
        let mut d = json!({"metadata": {"generation": 2}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 1, "availableReplicas": 2, "conditions": [{"type": "Available", "status": "True"}]}});
        assert!(matches!((gate.check)(&d), Health::Pending(_)), "an old generation's status");
        d["status"]["observedGeneration"] = json!(2);
        assert_eq!((gate.check)(&d), Health::Ready);
        d["status"]["availableReplicas"] = json!(1);
        assert!(matches!((gate.check)(&d), Health::Pending(_)));
        d["status"]["conditions"] = json!([{"type": "Progressing", "status": "False", "message": "timed out"}]);
        assert!(matches!((gate.check)(&d), Health::Failed(m) if m.contains("timed out")));
        assert!(gate_of(&json!({"apiVersion": "v1", "kind": "ConfigMap"})).is_none());
    }
}
