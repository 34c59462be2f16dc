//! gkehub v1 (fleet memberships and features, google.longrunning operations) and the
//! serviceusage calls `gcloud container fleet ingress enable` makes.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::errors::{ApiError, ApiResult, Style};
use crate::state::Shared;
use crate::store::{OpApi, Store, now};
use crate::world::short_hash;

type S = State<Arc<Shared>>;
type Q = Query<HashMap<String, String>>;
const R: Style = Style::Rpc;

/// Feature ids the simulator knows.
const FEATURES: [&str; 4] =
    ["multiclusteringress", "multiclusterservicediscovery", "servicemesh", "fleetobservability"];

/// The gkehub and serviceusage routes.
pub fn routes() -> Router<Arc<Shared>> {
    let p = "/gkehub/v1/projects/{project}/locations/{location}";
    Router::new()
        .route(&format!("{p}/memberships"), get(list_memberships).post(create_membership))
        .route(
            &format!("{p}/memberships/{{id}}"),
            get(get_membership).patch(patch_membership).delete(delete_membership),
        )
        .route(&format!("{p}/features"), get(list_features).post(create_feature))
        .route(&format!("{p}/features/{{id}}"), get(get_feature).patch(patch_feature).delete(delete_feature))
        .route(&format!("{p}/operations/{{op}}"), get(get_op))
        .route("/serviceusage/v1/projects/{project}/services/{service}", get(get_service))
}

fn project<'a>(s: &'a Shared, project: &str) -> ApiResult<std::sync::MutexGuard<'a, Store>> {
    let Some(store) = s.store_of(project) else {
        return Err(ApiError::forbidden(
            R,
            format!("Permission 'gkehub.memberships.list' denied on 'projects/{project}'"),
        ));
    };
    Ok(store.lock().unwrap_or_else(|e| e.into_inner()))
}

fn valid_id(id: &str) -> bool {
    let ok = regex::Regex::new("^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$").map(|r| r.is_match(id)).unwrap_or(false);
    ok && id.len() <= 63
}

/// Starts a gkehub v1 LRO whose `response` is `resource` with `type_name`.
fn lro(
    st: &mut Store,
    at: (&str, &str),
    verb: &str,
    target: &str,
    type_name: &str,
    resource: Value,
    failure: Option<String>,
) -> Value {
    lro_of("v1", st, at, (verb, target), type_name, resource, failure)
}

/// Starts a gkehub LRO of API `version` (`v1`, `v2`) in project and location `(p, l)` for
/// `(verb, target)`, whose `response` is `resource` with `type_name`.
pub fn lro_of(
    version: &str,
    st: &mut Store,
    (p, l): (&str, &str),
    (verb, target): (&str, &str),
    type_name: &str,
    resource: Value,
    failure: Option<String>,
) -> Value {
    let id = format!("operation-{}-{}", crate::support::unix_millis(), short_hash(&format!("{target}{}", st.id())));
    let mut response = resource;
    if let Some(m) = response.as_object_mut() {
        m.insert("@type".into(), json!(format!("type.googleapis.com/{type_name}")));
    }
    let body = json!({
        "name": format!("projects/{p}/locations/{l}/operations/{id}"), "done": false,
        "metadata": {"@type": format!("type.googleapis.com/google.cloud.gkehub.{version}.OperationMetadata"),
                     "createTime": now(), "target": target, "verb": verb, "cancelRequested": false, "apiVersion": version},
    });
    st.start_lro(OpApi::Hub, body, failure, Some(response))
}

async fn get_op(State(s): S, Path((p, l, op)): Path<(String, String, String)>) -> ApiResult<Json<Value>> {
    let mut st = project(&s, &p)?;
    let full = format!("projects/{p}/locations/{l}/operations/{op}");
    st.poll_op(&full).map(Json).ok_or_else(|| ApiError::not_found(R, format!("Operation {full} not found.")))
}

// ---- memberships ----

/// A gkehub list page: `pageSize` (default and at most 100) and an opaque `pageToken`.
fn hub_page(items: Vec<Value>, q: &HashMap<String, String>) -> ApiResult<Value> {
    let size: usize = match q.get("pageSize").map(|v| v.parse::<i64>()) {
        None => 100,
        Some(Ok(n)) if n >= 0 => (n as usize).clamp(1, 100),
        Some(_) => return Err(ApiError::invalid(R, "page_size must be a non-negative integer")),
    };
    let start: usize = match q.get("pageToken").filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => t
            .strip_prefix("next-")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| ApiError::invalid(R, format!("invalid page token {t:?}")))?,
    };
    let page: Vec<Value> = items.iter().skip(start).take(size).cloned().collect();
    let mut out = json!({});
    if !page.is_empty() {
        out["resources"] = Value::Array(page);
    }
    if start + size < items.len() {
        out["nextPageToken"] = json!(format!("next-{}", start + size));
    }
    Ok(out)
}

async fn list_memberships(State(s): S, Path((p, l)): Path<(String, String)>, Query(q): Q) -> ApiResult<Json<Value>> {
    let st = project(&s, &p)?;
    let items: Vec<Value> = st
        .memberships
        .iter()
        .filter(|(k, _)| l == "-" || k.starts_with(&format!("{l}/")))
        .map(|(_, v)| v.clone())
        .collect();
    hub_page(items, &q).map(Json)
}

fn membership_not_found(p: &str, l: &str, id: &str) -> ApiError {
    ApiError::not_found(R, format!("Resource 'projects/{p}/locations/{l}/memberships/{id}' was not found"))
}

async fn get_membership(State(s): S, Path((p, l, id)): Path<(String, String, String)>) -> ApiResult<Json<Value>> {
    let st = project(&s, &p)?;
    st.memberships.get(&format!("{l}/{id}")).cloned().map(Json).ok_or_else(|| membership_not_found(&p, &l, &id))
}

fn authority(p: &str, body: &Value) -> Value {
    match body["authority"]["issuer"].as_str() {
        Some(issuer) if !issuer.is_empty() => json!({
            "issuer": issuer, "workloadIdentityPool": format!("{p}.svc.id.goog"),
            "identityProvider": format!("https://iam.googleapis.com/projects/{p}/locations/global/workloadIdentityPools/{p}.svc.id.goog/providers/{}", short_hash(issuer)),
        }),
        _ => json!({}),
    }
}

async fn create_membership(
    State(s): S,
    Path((p, l)): Path<(String, String)>,
    Query(q): Q,
    Json(body): Json<Value>,
) -> ApiResult<Json<Value>> {
    let mut st = project(&s, &p)?;
    let id = q.get("membershipId").cloned().ok_or_else(|| ApiError::invalid(R, "membership_id must be specified."))?;
    if !valid_id(&id) {
        return Err(ApiError::invalid(
            R,
            format!("Invalid membership id \"{id}\": must be an RFC 1123 label of at most 63 characters."),
        ));
    }
    let key = format!("{l}/{id}");
    let name = format!("projects/{p}/locations/{l}/memberships/{id}");
    if st.memberships.contains_key(&key) {
        return Err(ApiError::already_exists(R, format!("Membership {name} already exists")));
    }
    let link = body["endpoint"]["gkeCluster"]["resourceLink"].as_str().unwrap_or_default().to_string();
    if link.is_empty() {
        return Err(ApiError::invalid(R, "endpoint.gkeCluster.resourceLink must be set for a GKE membership."));
    }
    // A fleet may hold clusters of other projects (a shared VPC's service projects).
    let cluster_exists = match (cluster_key(&link), project_of_link(&link)) {
        (Some(k), Some(lp)) if lp != p && lp != st.project && lp != st.project_number => {
            s.store_of(lp).is_some_and(|o| o.lock().unwrap_or_else(|e| e.into_inner()).clusters.contains_key(&k))
        }
        (Some(k), _) => st.clusters.contains_key(&k),
        (None, _) => false,
    };
    let m = st.membership(
        &l,
        &id,
        &link,
        cluster_exists,
        authority(&p, &body),
        body.get("labels").cloned().unwrap_or_else(|| json!({})),
    );
    st.memberships.insert(key, m.clone());
    Ok(Json(lro(&mut st, (&p, &l), "create", &name, "google.cloud.gkehub.v1.Membership", m, None)))
}

/// The project a resource link (`//host/projects/P/...`) names.
fn project_of_link(link: &str) -> Option<&str> {
    let mut parts = link.split('/');
    parts.by_ref().find(|p| *p == "projects")?;
    parts.next()
}

/// `location/name` of the cluster a resource link (`//host/projects/P/locations/L/clusters/C`) names.
fn cluster_key(link: &str) -> Option<String> {
    let parts: Vec<&str> = link.split('/').collect();
    let l = parts.iter().position(|p| *p == "locations" || *p == "zones")?;
    let c = parts.iter().position(|p| *p == "clusters")?;
    Some(format!("{}/{}", parts.get(l + 1)?, parts.get(c + 1)?))
}

fn mask_fields(q: &HashMap<String, String>) -> ApiResult<Vec<String>> {
    let mask = q.get("updateMask").ok_or_else(|| ApiError::invalid(R, "update_mask must be specified."))?;
    Ok(mask.split(',').map(|f| snake_to_camel(f.trim())).collect())
}

fn snake_to_camel(path: &str) -> String {
    path.split('.')
        .map(|seg| {
            let mut out = String::new();
            let mut up = false;
            for c in seg.chars() {
                if c == '_' {
                    up = true;
                } else if up {
                    out.extend(c.to_uppercase());
                    up = false;
                } else {
                    out.push(c);
                }
            }
            out
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn set_path(target: &mut Value, path: &str, from: &Value) {
    let parts: Vec<&str> = path.split('.').collect();
    let mut src = from;
    for p in &parts {
        src = src.get(*p).unwrap_or(&Value::Null);
    }
    let mut dst = target;
    for p in &parts[..parts.len() - 1] {
        if !dst.get(*p).is_some_and(Value::is_object) {
            dst[*p] = json!({});
        }
        dst = &mut dst[*p];
    }
    dst[parts[parts.len() - 1]] = src.clone();
}

async fn patch_membership(
    State(s): S,
    Path((p, l, id)): Path<(String, String, String)>,
    Query(q): Q,
    Json(body): Json<Value>,
) -> ApiResult<Json<Value>> {
    let mut st = project(&s, &p)?;
    let fields = mask_fields(&q)?;
    let key = format!("{l}/{id}");
    let mut m = st.memberships.get(&key).cloned().ok_or_else(|| membership_not_found(&p, &l, &id))?;
    for f in &fields {
        match f.as_str() {
            "authority" | "authority.issuer" => {
                let old = m["authority"]["issuer"].as_str().unwrap_or_default().to_string();
                let new = body["authority"]["issuer"].as_str().unwrap_or_default().to_string();
                if !old.is_empty() && !new.is_empty() && old != new {
                    return Err(ApiError::invalid(
                        R,
                        "authority.issuer cannot be changed in place; clear it first, then set the new issuer.",
                    ));
                }
                m["authority"] = authority(&p, &body);
            }
            "endpoint.gkeCluster.resourceLink" | "endpoint" => {
                return Err(ApiError::invalid(R, "endpoint.gkeCluster.resourceLink is immutable."));
            }
            other => set_path(&mut m, other, &body),
        }
    }
    m["updateTime"] = json!(now());
    st.memberships.insert(key, m.clone());
    let name = m["name"].as_str().unwrap_or_default().to_string();
    Ok(Json(lro(&mut st, (&p, &l), "update", &name, "google.cloud.gkehub.v1.Membership", m, None)))
}

async fn delete_membership(State(s): S, Path((p, l, id)): Path<(String, String, String)>) -> ApiResult<Json<Value>> {
    let mut st = project(&s, &p)?;
    let m = st.memberships.remove(&format!("{l}/{id}")).ok_or_else(|| membership_not_found(&p, &l, &id))?;
    let name = m["name"].as_str().unwrap_or_default().to_string();
    Ok(Json(lro(&mut st, (&p, &l), "delete", &name, "google.protobuf.Empty", json!({}), None)))
}

// ---- features ----

fn feature_not_found(p: &str, l: &str, id: &str) -> ApiError {
    ApiError::not_found(R, format!("Resource 'projects/{p}/locations/{l}/features/{id}' was not found"))
}

/// A feature as read: its state turns OK after the configured number of reads; its membership
/// features (gkehub v2) are read too, and their controller advanced (GKE's mesh controller
/// installs what an ACTIVE one brings, through `Shared::on_mesh_active`).
fn read_feature(s: &Shared, st: &mut Store, key: &str) -> Option<Value> {
    let suffix = format!("/{}", key.rsplit('/').next().unwrap_or_default());
    let members: Vec<String> = st.membership_features.keys().filter(|k| k.ends_with(&suffix)).cloned().collect();
    for k in members {
        if let Some((_, true)) = st.observe_membership_feature(&k)
            && let Some(hook) = s.on_mesh_active.get()
        {
            let mut parts = k.split('/');
            hook(st, parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
        }
    }
    let pending = st.feature_pending.get(key).copied().unwrap_or(0);
    if pending > 0 {
        st.feature_pending.insert(key.to_string(), pending - 1);
    }
    let feature = key.rsplit('/').next().unwrap_or_default().to_string();
    let (specs, states) = st.v1_membership_maps(&feature);
    let f = st.features.get_mut(key)?;
    if pending <= 1 {
        f["state"] = json!({"state": {"code": "OK", "description": "Ready to use", "updateTime": now()}});
        f["resourceState"] = json!({"state": "ACTIVE"});
    }
    let mut out = f.clone();
    // Membership features (gkehub v2) show in the v1 feature's maps, keyed by project number.
    if !specs.is_empty() {
        out["membershipSpecs"] = Value::Object(specs);
        let mut all = out["membershipStates"].as_object().cloned().unwrap_or_default();
        all.extend(states);
        out["membershipStates"] = Value::Object(all);
    }
    Some(out)
}

async fn list_features(State(s): S, Path((p, l)): Path<(String, String)>, Query(q): Q) -> ApiResult<Json<Value>> {
    let mut st = project(&s, &p)?;
    let keys: Vec<String> =
        st.features.keys().filter(|k| l == "-" || k.starts_with(&format!("{l}/"))).cloned().collect();
    let items: Vec<Value> = keys.iter().filter_map(|k| read_feature(&s, &mut st, k)).collect();
    hub_page(items, &q).map(Json)
}

async fn get_feature(State(s): S, Path((p, l, id)): Path<(String, String, String)>) -> ApiResult<Json<Value>> {
    let mut st = project(&s, &p)?;
    read_feature(&s, &mut st, &format!("{l}/{id}")).map(Json).ok_or_else(|| feature_not_found(&p, &l, &id))
}

/// Checks a multiclusteringress config membership: a full name of an existing membership.
fn config_membership_problem(st: &Store, spec: &Value) -> Option<String> {
    let cm = spec["multiclusteringress"]["configMembership"].as_str()?;
    let parts: Vec<&str> = cm.split('/').collect();
    if parts.len() != 6 || parts[0] != "projects" || parts[2] != "locations" || parts[4] != "memberships" {
        return Some(format!(
            "configMembership \"{cm}\" is not a full membership name (projects/P/locations/L/memberships/M)."
        ));
    }
    if !st.memberships.contains_key(&format!("{}/{}", parts[3], parts[5])) {
        return Some(format!("configMembership {cm} does not exist."));
    }
    None
}

fn membership_states(st: &Store) -> Value {
    let mut m = serde_json::Map::new();
    for k in st.memberships.keys() {
        let (l, id) = k.split_once('/').unwrap_or(("", k));
        m.insert(
            format!("projects/{}/locations/{l}/memberships/{id}", st.project_number),
            json!({"state": {"code": "OK"}}),
        );
    }
    Value::Object(m)
}

async fn create_feature(
    State(s): S,
    Path((p, l)): Path<(String, String)>,
    Query(q): Q,
    Json(body): Json<Value>,
) -> ApiResult<Json<Value>> {
    let mut st = project(&s, &p)?;
    let id = q.get("featureId").cloned().ok_or_else(|| ApiError::invalid(R, "feature_id must be specified."))?;
    if !FEATURES.contains(&id.as_str()) {
        return Err(ApiError::invalid(R, format!("Unknown feature \"{id}\".")));
    }
    if l != "global" {
        return Err(ApiError::invalid(R, format!("Feature {id} is only available in location global.")));
    }
    let key = format!("{l}/{id}");
    let name = format!("projects/{p}/locations/{l}/features/{id}");
    if st.features.contains_key(&key) {
        return Err(ApiError::already_exists(R, format!("Feature {name} already exists")));
    }
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let failure = config_membership_problem(&st, &spec);
    let f = json!({
        "name": name, "spec": spec, "resourceState": {"state": "ENABLING"},
        "membershipStates": membership_states(&st), "createTime": now(), "updateTime": now(),
        "labels": body.get("labels").cloned().unwrap_or_else(|| json!({})),
    });
    if failure.is_none() {
        st.features.insert(key.clone(), f.clone());
        let polls = st.lro_polls;
        st.feature_pending.insert(key, polls);
    }
    Ok(Json(lro(&mut st, (&p, &l), "create", &name, "google.cloud.gkehub.v1.Feature", f, failure)))
}

async fn patch_feature(
    State(s): S,
    Path((p, l, id)): Path<(String, String, String)>,
    Query(q): Q,
    Json(body): Json<Value>,
) -> ApiResult<Json<Value>> {
    let mut st = project(&s, &p)?;
    let fields = mask_fields(&q)?;
    let key = format!("{l}/{id}");
    let mut f = st.features.get(&key).cloned().ok_or_else(|| feature_not_found(&p, &l, &id))?;
    for field in &fields {
        set_path(&mut f, field, &body);
    }
    let failure = config_membership_problem(&st, &f["spec"]);
    f["updateTime"] = json!(now());
    if failure.is_none() {
        st.features.insert(key, f.clone());
    }
    let name = f["name"].as_str().unwrap_or_default().to_string();
    Ok(Json(lro(&mut st, (&p, &l), "update", &name, "google.cloud.gkehub.v1.Feature", f, failure)))
}

async fn delete_feature(State(s): S, Path((p, l, id)): Path<(String, String, String)>) -> ApiResult<Json<Value>> {
    let mut st = project(&s, &p)?;
    let key = format!("{l}/{id}");
    let f = st.features.remove(&key).ok_or_else(|| feature_not_found(&p, &l, &id))?;
    st.feature_pending.remove(&key);
    let name = f["name"].as_str().unwrap_or_default().to_string();
    Ok(Json(lro(&mut st, (&p, &l), "delete", &name, "google.protobuf.Empty", json!({}), None)))
}

async fn get_service(State(s): S, Path((p, service)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    let st = project(&s, &p)?;
    Ok(Json(json!({
        "name": format!("projects/{}/services/{service}", st.project_number),
        "parent": format!("projects/{}", st.project_number),
        "state": "ENABLED", "config": {"name": service},
    })))
}
