//! container v1: clusters get/list/update (the `desiredControlPlaneEndpointsConfig` shape gcloud
//! 528 sends, and the deprecated forms), `:setResourceLabels` (what `gcloud container clusters
//! update --update-labels / --remove-labels` sends: every label the cluster is to have, with the
//! `labelFingerprint` of the cluster it read), delete, and operations.
//!
//! What gcloud 528 sends for labels (its api_adapter, judged in tests/gcloud.rs): both flags GET
//! the cluster first, then `POST .../clusters/NAME:setResourceLabels` with `resourceLabels` and
//! that `labelFingerprint`; `--remove-labels` sends the labels left, but `--update-labels K=V`
//! sends only the labels given, so the cluster's other labels go (the API replaces the set).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::errors::{ApiError, ApiResult, Style};
use crate::state::Shared;
use crate::store::{CONTAINER_BASE, OpApi, Store, now};
use crate::world::short_hash;

type S = State<Arc<Shared>>;
const R: Style = Style::Rpc;

/// The container routes, under `/container/v1`.
pub fn routes() -> Router<Arc<Shared>> {
    let p = "/container/v1/projects/{project}/locations/{location}";
    Router::new()
        .route(&format!("{p}/clusters"), get(list_clusters))
        .route(
            &format!("{p}/clusters/{{cluster}}"),
            get(get_cluster).put(update_cluster).post(cluster_method).delete(delete_cluster),
        )
        .route(&format!("{p}/operations"), get(list_ops))
        .route(&format!("{p}/operations/{{op}}"), get(get_op))
}

async fn list_ops(State(s): S, Path((p, l)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    let mut st = project(&s, &p)?;
    Ok(Json(json!({ "operations": st.container_ops(&l) })))
}

fn project<'a>(s: &'a Shared, project: &str) -> ApiResult<std::sync::MutexGuard<'a, Store>> {
    let Some(store) = s.store_of(project) else {
        return Err(ApiError::forbidden(R, format!("Permission denied on resource project {project}.")));
    };
    Ok(store.lock().unwrap_or_else(|e| e.into_inner()))
}

async fn list_clusters(State(s): S, Path((p, l)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    let (id, clusters): (String, Vec<Value>) = {
        let st = project(&s, &p)?;
        let listed = st.clusters.iter().filter(|(k, _)| l == "-" || k.starts_with(&format!("{l}/")));
        (st.project.clone(), listed.map(|(_, v)| v.clone()).collect())
    };
    let fleets = fleets(&s);
    let clusters: Vec<Value> = clusters.into_iter().map(|c| with_fleet(&s, &fleets, &id, c)).collect();
    Ok(Json(json!({ "clusters": clusters })))
}

/// The `fleet` GKE reports for each registered cluster (by world index): `project` by number,
/// `membership` as `//gkehub.googleapis.com/` and the membership's name, `preRegistered` unless it
/// was registered at creation (`--fleet-project`, the world's `fleet`: in the world project's
/// fleet). Read once per request from the memberships of every project, each store locked on its
/// own.
fn fleets(s: &Shared) -> std::collections::HashMap<usize, Value> {
    let w = &s.opts.world;
    let mut out = std::collections::HashMap::new();
    for store in std::iter::once(&s.store).chain(s.service_stores.values()) {
        let st = store.lock().unwrap_or_else(|e| e.into_inner());
        for m in st.memberships.values() {
            let Some(i) = w.cluster_of_link(m["endpoint"]["gkeCluster"]["resourceLink"].as_str().unwrap_or_default())
            else {
                continue;
            };
            let at_creation = w.clusters[i].fleet && st.project == w.project;
            out.entry(i).or_insert_with(|| {
                json!({"project": format!("projects/{}", st.project_number),
                       "membership": format!("//gkehub.googleapis.com/{}", m["name"].as_str().unwrap_or_default()),
                       "preRegistered": !at_creation})
            });
        }
    }
    out
}

/// A cluster of `project` as GKE reports it: with its `fleet` (see [`fleets`]) when it has one.
fn with_fleet(
    s: &Shared,
    fleets: &std::collections::HashMap<usize, Value>,
    project: &str,
    mut cluster: Value,
) -> Value {
    let (l, c) = (cluster["location"].as_str().unwrap_or_default(), cluster["name"].as_str().unwrap_or_default());
    let link = format!("//container.googleapis.com/projects/{project}/locations/{l}/clusters/{c}");
    if let Some(f) = s.opts.world.cluster_of_link(&link).and_then(|i| fleets.get(&i)) {
        cluster["fleet"] = f.clone();
    }
    cluster
}

fn not_found(p: &str, l: &str, c: &str) -> ApiError {
    ApiError::not_found(R, format!("Not found: projects/{p}/locations/{l}/clusters/{c}."))
}

async fn get_cluster(State(s): S, Path((p, l, c)): Path<(String, String, String)>) -> ApiResult<Json<Value>> {
    let (id, found) = {
        let st = project(&s, &p)?;
        (st.project.clone(), st.clusters.get(&format!("{l}/{c}")).cloned())
    };
    found.map(|j| Json(with_fleet(&s, &fleets(&s), &id, j))).ok_or_else(|| not_found(&p, &l, &c))
}

fn valid_cidr(c: &str) -> bool {
    c.split_once('/')
        .is_some_and(|(ip, len)| ip.parse::<std::net::Ipv4Addr>().is_ok() && len.parse::<u8>().is_ok_and(|l| l <= 32))
}

/// `projects.locations.clusters.update`: exactly one `desired*` field, as gcloud 528 sends them
/// (and the deprecated forms); refused while another operation runs on the cluster. An invalid
/// CIDR is refused at once; more than 50 blocks make an operation that fails.
async fn update_cluster(
    State(s): S,
    Path((p, l, c)): Path<(String, String, String)>,
    Json(body): Json<Value>,
) -> ApiResult<Json<Value>> {
    let mut st = project(&s, &p)?;
    let key = format!("{l}/{c}");
    if !st.clusters.contains_key(&key) {
        return Err(not_found(&p, &l, &c));
    }
    let update =
        body.get("update").and_then(Value::as_object).ok_or_else(|| ApiError::invalid(R, "Update must be set."))?;
    let desired: Vec<&String> = update.keys().filter(|k| k.starts_with("desired")).collect();
    if desired.len() != 1 {
        return Err(ApiError::invalid(
            R,
            format!("Exactly one update can be applied to a cluster with each request; {} were given.", desired.len()),
        ));
    }
    if st.cluster_busy(&format!("/clusters/{c}")) {
        return Err(ApiError::precondition(
            R,
            format!(
                "Cluster is running incompatible operation on projects/{p}/locations/{l}/clusters/{c}. Please wait and try again."
            ),
        ));
    }
    let (authorized, global_access) = requested(update, desired[0])?;
    let failure = match &authorized {
        Some(a) => check_networks(a)?,
        None => None,
    };
    if failure.is_none() {
        let cl = st.clusters.get_mut(&key).ok_or_else(|| not_found(&p, &l, &c))?;
        change(cl, authorized, global_access);
    }
    Ok(Json(cluster_op(&mut st, &l, &c, "UPDATE_CLUSTER", failure)))
}

/// `projects.locations.clusters.delete`: the cluster and its nodes go (its API server stops
/// answering for it in Google's view: a lookup finds nothing).
async fn delete_cluster(State(s): S, Path((p, l, c)): Path<(String, String, String)>) -> ApiResult<Json<Value>> {
    let mut st = project(&s, &p)?;
    let key = format!("{l}/{c}");
    if st.clusters.remove(&key).is_none() {
        return Err(not_found(&p, &l, &c));
    }
    let prefix = format!("gke-{c}-");
    st.instances.retain(|_, i| !i["name"].as_str().is_some_and(|n| n.starts_with(&prefix)));
    Ok(Json(cluster_op(&mut st, &l, &c, "DELETE_CLUSTER", None)))
}

/// `POST .../clusters/NAME:VERB`: `setResourceLabels` replaces the cluster's resource labels
/// when `labelFingerprint` (if given) is the cluster's current one.
async fn cluster_method(
    State(s): S,
    Path((p, l, c)): Path<(String, String, String)>,
    Json(body): Json<Value>,
) -> ApiResult<Json<Value>> {
    let Some((c, "setResourceLabels")) = c.split_once(':') else {
        return Err(ApiError::not_found(R, format!("Method not found: {c}.")));
    };
    let mut st = project(&s, &p)?;
    let key = format!("{l}/{c}");
    let cl = st.clusters.get_mut(&key).ok_or_else(|| not_found(&p, &l, c))?;
    let labels = body.get("resourceLabels").cloned().unwrap_or_else(|| json!({}));
    if !labels.is_object() || labels.as_object().is_some_and(|m| m.values().any(|v| !v.is_string())) {
        return Err(ApiError::invalid(R, "resource_labels must map label keys to string values."));
    }
    if let Some(f) = body.get("labelFingerprint").and_then(Value::as_str).filter(|f| !f.is_empty())
        && Some(f) != cl["labelFingerprint"].as_str()
    {
        return Err(ApiError::precondition(
            R,
            format!("Labels could not be set due to fingerprint mismatch for projects/{p}/locations/{l}/clusters/{c}."),
        ));
    }
    cl["labelFingerprint"] = json!(crate::store::label_fingerprint(&labels));
    cl["resourceLabels"] = labels;
    Ok(Json(cluster_op(&mut st, &l, c, "SET_LABELS", None)))
}

/// Starts a container operation of `kind` on cluster `c` in location `l` (failing with `failure`
/// when given), named and linked as GKE names them (with the project number).
fn cluster_op(st: &mut Store, l: &str, c: &str, kind: &str, failure: Option<String>) -> Value {
    let number = st.project_number.clone();
    let name = format!("operation-{}-{}", crate::support::unix_millis(), short_hash(&format!("{l}/{c}-{kind}")));
    let op = json!({
        "name": name, "zone": l, "location": l, "operationType": kind, "status": "PENDING",
        "selfLink": format!("{CONTAINER_BASE}/projects/{number}/zones/{l}/operations/{name}"),
        "targetLink": format!("{CONTAINER_BASE}/projects/{number}/zones/{l}/clusters/{c}"),
        "startTime": now(),
    });
    st.start_op(OpApi::Container, op, failure)
}

/// What the `desired` field of an update asks for: authorized networks, global access.
fn requested(update: &serde_json::Map<String, Value>, desired: &str) -> ApiResult<(Option<Value>, Option<bool>)> {
    let (authorized, global_access) = match desired {
        "desiredControlPlaneEndpointsConfig" => {
            let ip = &update["desiredControlPlaneEndpointsConfig"]["ipEndpointsConfig"];
            (ip.get("authorizedNetworksConfig").cloned(), ip.get("globalAccess").and_then(Value::as_bool))
        }
        "desiredMasterAuthorizedNetworksConfig" => (update.get("desiredMasterAuthorizedNetworksConfig").cloned(), None),
        "desiredPrivateClusterConfig" => {
            (None, update["desiredPrivateClusterConfig"]["masterGlobalAccessConfig"]["enabled"].as_bool())
        }
        other => return Err(ApiError::invalid(R, format!("The simulator does not support `{other}` updates."))),
    };
    if authorized.is_none() && global_access.is_none() {
        return Err(ApiError::invalid(R, "Update must change a setting."));
    }
    Ok((authorized, global_access))
}

/// Refuses an invalid CIDR block; the failure of the operation when there are more than 50.
fn check_networks(authorized: &Value) -> ApiResult<Option<String>> {
    let blocks = authorized.get("cidrBlocks").and_then(Value::as_array).cloned().unwrap_or_default();
    for b in &blocks {
        let cidr = b["cidrBlock"].as_str().unwrap_or_default();
        if !valid_cidr(cidr) {
            return Err(ApiError::invalid(
                R,
                format!("Invalid master authorized networks: invalid CIDR block \"{cidr}\"."),
            ));
        }
    }
    Ok((blocks.len() > 50)
        .then(|| format!("Master authorized networks can have at most 50 CIDR blocks, {} given.", blocks.len())))
}

/// Makes the change on the cluster (both the current and the deprecated fields) and a new etag.
fn change(cl: &mut Value, authorized: Option<Value>, global_access: Option<bool>) {
    if let Some(mut a) = authorized {
        if a.get("cidrBlocks").is_none() {
            a["cidrBlocks"] = json!([]);
        }
        cl["controlPlaneEndpointsConfig"]["ipEndpointsConfig"]["authorizedNetworksConfig"] = a.clone();
        cl["masterAuthorizedNetworksConfig"] = a;
    }
    if let Some(g) = global_access {
        cl["controlPlaneEndpointsConfig"]["ipEndpointsConfig"]["globalAccess"] = json!(g);
        if cl["privateClusterConfig"].as_object().is_some_and(|m| !m.is_empty()) {
            cl["privateClusterConfig"]["masterGlobalAccessConfig"] = json!({"enabled": g});
        }
    }
    cl["etag"] = json!(short_hash(&format!("{}{}", cl["etag"], now())));
}

async fn get_op(State(s): S, Path((p, l, op)): Path<(String, String, String)>) -> ApiResult<Json<Value>> {
    let mut st = project(&s, &p)?;
    st.poll_op(&op)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(R, format!("Not found: projects/{p}/locations/{l}/operations/{op}.")))
}
