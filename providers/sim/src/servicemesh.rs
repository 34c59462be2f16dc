//! The fleet's service mesh: gkehub v2 MembershipFeatures (`projects/P/locations/L/memberships/
//! M/features/F`: get, list, create, patch, delete, and v2 operations) and GKE's mesh controller
//! playing what a managed control plane does on a membership's cluster.
//!
//! What gcloud 528 sends (captured against a logging server; ARCHITECTURE.md "Simulator notes:
//! the fleet's service mesh", judged by `tests/gcloud.rs`):
//!
//! - `container fleet mesh enable`: `GET serviceusage v1/projects/P/services/meshconfig.googleapis.com`,
//!   then the v1 `POST …/locations/global/features?featureId=servicemesh` with body `{}`, the
//!   operation polled, the feature read (`returnPartialSuccess=True`), the operation once more.
//! - `container fleet mesh update --management automatic --memberships M1,M2 --location L`:
//!   per membership a v1 `GET …/memberships/M`, then **v2**: `GET
//!   v2/projects/P/locations/L/memberships/M/features/servicemesh` (404 is fine), `PATCH` the
//!   same name with `allowMissing=True&updateMask=spec` and body `{"spec": {"servicemesh":
//!   {"management": "MANAGEMENT_AUTOMATIC"}}}` (the spec read first, changed), the v2 operation
//!   polled (`v2/projects/P/locations/L/operations/ID`), the membership feature read. It does not
//!   wait for ACTIVE. (Only `--origin fleet` uses the v1 feature's `membershipSpecs`.)
//! - `container fleet mesh describe`: the v1 feature GET; the membership specs and states it
//!   prints are the v1 maps, keyed by project **number**.
//!
//! The controller: a membership feature with management (or control plane) automatic reports
//! `controlPlaneManagement.state` PROVISIONING for `controller_polls` reads, then ACTIVE
//! (implementation TRAFFIC_DIRECTOR, details REVISION_READY); at that read the cluster gets the
//! managed control plane: Istio's CRDs and the ControlPlaneRevision CRD, `asm-managed` in `istio-system` with its
//! Reconciled condition, and the `istiod-asm-managed` Service labelled `istio.io/rev:
//! asm-managed`. Manual management reports DISABLED; deleting the membership feature removes
//! what was installed. A test may force a membership's state (`Store::mesh_stalls`): STALLED,
//! FAILED_PRECONDITION, with Google's details. Choices where the reference is silent: a
//! membership feature of a feature not enabled on the fleet, or of a missing membership, is 400
//! FAILED_PRECONDITION / 404; names in replies carry the project number.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::errors::{ApiError, ApiResult, Style};
use crate::kube::KubeServer;
use crate::state::Shared;
use crate::store::{Store, now};

const R: Style = Style::Rpc;

/// The managed control plane's revision.
pub const MANAGED_REVISION: &str = "asm-managed";

/// What the routes share: the API state and the clusters' API servers (the controller writes
/// to them).
#[derive(Clone)]
pub struct Mesh {
    shared: Arc<Shared>,
    kube: Arc<Vec<Arc<KubeServer>>>,
}

type S = State<Mesh>;
type Q = Query<HashMap<String, String>>;

/// The v2 routes, with their state.
pub fn routes<T: Clone + Send + Sync + 'static>(shared: Arc<Shared>, kube: Arc<Vec<Arc<KubeServer>>>) -> Router<T> {
    let p = "/gkehub/v2/projects/{project}/locations/{location}";
    Router::new()
        .route(&format!("{p}/memberships/{{m}}/features"), get(list).post(create))
        .route(&format!("{p}/memberships/{{m}}/features/{{f}}"), get(read).patch(patch).delete(delete))
        .route(&format!("{p}/operations/{{op}}"), get(get_op))
        .with_state(Mesh { shared, kube })
}

fn store<'a>(m: &'a Mesh, project: &str) -> ApiResult<std::sync::MutexGuard<'a, Store>> {
    let st = m.shared.store.lock().unwrap_or_else(|e| e.into_inner());
    if project != st.project && project != st.project_number {
        return Err(ApiError::forbidden(R, format!("Permission 'gkehub.features.get' denied on 'projects/{project}'")));
    }
    Ok(st)
}

fn not_found(name: &str) -> ApiError {
    ApiError::not_found(R, format!("Resource '{name}' was not found"))
}

async fn get_op(State(m): S, Path((p, l, op)): Path<(String, String, String)>) -> ApiResult<Json<Value>> {
    let mut st = store(&m, &p)?;
    let full = format!("projects/{p}/locations/{l}/operations/{op}");
    st.poll_op(&full).map(Json).ok_or_else(|| ApiError::not_found(R, format!("Operation {full} not found.")))
}

/// A v2 LRO whose `response` is `resource` of `type_name`.
fn lro(st: &mut Store, at: (&str, &str), verb: &str, target: &str, type_name: &str, resource: Value) -> Value {
    crate::hub::lro_of("v2", st, at, (verb, target), type_name, resource, None)
}

/// Checks that the membership exists and the fleet has the feature; the stored key.
fn check(st: &Store, l: &str, membership: &str, feature: &str) -> ApiResult<String> {
    if !st.memberships.contains_key(&format!("{l}/{membership}")) {
        return Err(not_found(&format!("projects/{}/locations/{l}/memberships/{membership}", st.project_number)));
    }
    if !st.features.contains_key(&format!("global/{feature}")) {
        return Err(ApiError::precondition(
            R,
            format!(
                "Feature {feature} is not enabled on the fleet of project {}: enable it first (gcloud container fleet mesh enable).",
                st.project
            ),
        ));
    }
    Ok(format!("{l}/{membership}/{feature}"))
}

/// The membership feature as read now (the controller advanced by this read, see
/// `Store::observe_membership_feature`), the managed control plane installed in its cluster
/// once ACTIVE.
fn observe(m: &Mesh, st: &mut Store, key: &str) -> Option<Value> {
    let (out, active) = st.observe_membership_feature(key)?;
    if active {
        let mut parts = key.split('/');
        let (l, mb) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
        install(&m.kube, st, l, mb);
    }
    Some(out)
}

/// The cluster's API server of a membership (by its resource link's cluster name).
fn cluster_of(kube: &[Arc<KubeServer>], st: &Store, location: &str, membership: &str) -> Option<Arc<KubeServer>> {
    let link = st.memberships.get(&format!("{location}/{membership}"))?["endpoint"]["gkeCluster"]["resourceLink"]
        .as_str()?
        .to_string();
    let cluster = link.rsplit('/').next()?;
    kube.iter().find(|k| k.cluster == cluster).cloned()
}

/// What the managed control plane puts in its cluster (once; later reads change nothing). The
/// v1 feature's reads call it too (through `Shared::on_mesh_active`).
pub fn install(kube: &[Arc<KubeServer>], st: &Store, location: &str, membership: &str) {
    let Some(k) = cluster_of(kube, st, location, membership) else { return };
    let manager = "mesh.googleapis.com";
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "controlplanerevisions.mesh.cloud.google.com"},
        "spec": {"group": "mesh.cloud.google.com", "scope": "Namespaced",
                 "names": {"plural": "controlplanerevisions", "singular": "controlplanerevision", "kind": "ControlPlaneRevision", "listKind": "ControlPlaneRevisionList", "shortNames": ["cpr"]},
                 "versions": [{"name": "v1beta1", "served": true, "storage": true, "subresources": {"status": {}},
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}});
    let _ = k.controller_put("apiextensions.k8s.io", "customresourcedefinitions", crd, manager);
    for istio in crate::kube::resources::istio_crds() {
        let _ = k.controller_put("apiextensions.k8s.io", "customresourcedefinitions", istio, manager);
    }
    let exists = k.lock().objects.keys().any(|key| key.1 == "controlplanerevisions" && key.3 == MANAGED_REVISION);
    if exists {
        return;
    }
    let t = now();
    let cpr = json!({"apiVersion": "mesh.cloud.google.com/v1beta1", "kind": "ControlPlaneRevision",
        "metadata": {"name": MANAGED_REVISION, "namespace": "istio-system",
                     "labels": {"istio.io/rev": MANAGED_REVISION, "mesh.cloud.google.com/managed-cni-enabled": "true", "app.kubernetes.io/created-by": manager}},
        "spec": {"type": "managed_service", "channel": "regular"},
        "status": {"conditions": [
            {"type": "Reconciled", "status": "True", "reason": "Ok", "message": "Ready", "lastTransitionTime": t},
            {"type": "Stalled", "status": "False", "reason": "NotStalled", "message": "Processing without errors", "lastTransitionTime": t},
            {"type": "ProvisioningFinished", "status": "True", "reason": "Ok", "message": "Provisioning finished", "lastTransitionTime": t}]}});
    let _ = k.controller_put("mesh.cloud.google.com", "controlplanerevisions", cpr, manager);
    let svc = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("istiod-{MANAGED_REVISION}"), "namespace": "istio-system",
                     "labels": {"app": "istiod", "istio.io/rev": MANAGED_REVISION}},
        "spec": {"type": "ClusterIP", "ports": [{"name": "https-webhook", "port": 443, "targetPort": 15017}]}});
    let _ = k.controller_put("", "services", svc, manager);
}

/// Removes what [`install`] put in the cluster.
fn uninstall(m: &Mesh, st: &Store, location: &str, membership: &str) {
    let Some(k) = cluster_of(&m.kube, st, location, membership) else { return };
    k.controller_delete("mesh.cloud.google.com", "controlplanerevisions", "istio-system", MANAGED_REVISION);
    k.controller_delete("", "services", "istio-system", &format!("istiod-{MANAGED_REVISION}"));
}

fn name_of(st: &Store, l: &str, membership: &str, feature: &str) -> String {
    format!("projects/{}/locations/{l}/memberships/{membership}/features/{feature}", st.project_number)
}

async fn read(State(m): S, Path((p, l, mb, f)): Path<(String, String, String, String)>) -> ApiResult<Json<Value>> {
    let mut st = store(&m, &p)?;
    let key = format!("{l}/{mb}/{f}");
    let name = name_of(&st, &l, &mb, &f);
    observe(&m, &mut st, &key).map(Json).ok_or_else(|| not_found(&name))
}

async fn list(State(m): S, Path((p, l, mb)): Path<(String, String, String)>) -> ApiResult<Json<Value>> {
    let mut st = store(&m, &p)?;
    let prefix = format!("{l}/{mb}/");
    let keys: Vec<String> = st.membership_features.keys().filter(|k| k.starts_with(&prefix)).cloned().collect();
    let items: Vec<Value> = keys.iter().filter_map(|k| observe(&m, &mut st, k)).collect();
    Ok(Json(if items.is_empty() { json!({}) } else { json!({"membershipFeatures": items}) }))
}

async fn create(
    State(m): S,
    Path((p, l, mb)): Path<(String, String, String)>,
    Query(q): Q,
    Json(body): Json<Value>,
) -> ApiResult<Json<Value>> {
    let mut st = store(&m, &p)?;
    let f = q.get("featureId").cloned().ok_or_else(|| ApiError::invalid(R, "feature_id must be specified."))?;
    let key = check(&st, &l, &mb, &f)?;
    let name = name_of(&st, &l, &mb, &f);
    if st.membership_features.contains_key(&key) {
        return Err(ApiError::already_exists(R, format!("MembershipFeature {name} already exists")));
    }
    let r = st.put_membership_feature(&key, &name, body["spec"].clone(), body.get("labels").cloned());
    Ok(Json(lro(&mut st, (&p, &l), "create", &name, "google.cloud.gkehub.v2.MembershipFeature", r)))
}

async fn patch(
    State(m): S,
    Path((p, l, mb, f)): Path<(String, String, String, String)>,
    Query(q): Q,
    Json(body): Json<Value>,
) -> ApiResult<Json<Value>> {
    let mut st = store(&m, &p)?;
    let key = check(&st, &l, &mb, &f)?;
    let name = name_of(&st, &l, &mb, &f);
    let allow_missing = q.get("allowMissing").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let prior = st.membership_features.get(&key).map(|x| x.resource.clone());
    if prior.is_none() && !allow_missing {
        return Err(not_found(&name));
    }
    let mask = q.get("updateMask").ok_or_else(|| ApiError::invalid(R, "update_mask must be specified."))?;
    let mut spec = prior.as_ref().map_or(json!({}), |r| r["spec"].clone());
    let mut labels = prior.as_ref().map(|r| r["labels"].clone());
    for field in mask.split(',').map(str::trim) {
        match field {
            "spec" | "*" => spec = body["spec"].clone(),
            "labels" => labels = Some(body["labels"].clone()),
            f if f.starts_with("spec.") => {
                let path: Vec<&str> = f["spec.".len()..].split('.').collect();
                let mut src = &body["spec"];
                for seg in &path {
                    src = &src[*seg];
                }
                let mut dst = &mut spec;
                for seg in &path[..path.len() - 1] {
                    dst = &mut dst[*seg];
                }
                dst[path[path.len() - 1]] = src.clone();
            }
            other => return Err(ApiError::invalid(R, format!("Invalid update mask path \"{other}\"."))),
        }
    }
    let r = st.put_membership_feature(&key, &name, spec, labels);
    if !crate::store::mesh_automatic(&r["spec"]) {
        uninstall(&m, &st, &l, &mb);
    }
    Ok(Json(lro(&mut st, (&p, &l), "update", &name, "google.cloud.gkehub.v2.MembershipFeature", r)))
}

async fn delete(State(m): S, Path((p, l, mb, f)): Path<(String, String, String, String)>) -> ApiResult<Json<Value>> {
    let mut st = store(&m, &p)?;
    let key = format!("{l}/{mb}/{f}");
    let name = name_of(&st, &l, &mb, &f);
    st.membership_features.remove(&key).ok_or_else(|| not_found(&name))?;
    uninstall(&m, &st, &l, &mb);
    Ok(Json(lro(&mut st, (&p, &l), "delete", &name, "google.protobuf.Empty", json!({}))))
}
