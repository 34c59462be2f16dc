//! compute v1: global addresses, firewalls, zonal network endpoint groups, instances, networks,
//! subnetworks and operations, with list filters, pagination and aggregated lists.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::errors::{ApiError, ApiResult, Style};
use crate::filter::Filter;
use crate::state::Shared;
use crate::store::{COMPUTE_BASE, Store, fingerprint, now};
use crate::world::region_of;

type S = State<Arc<Shared>>;
type Q = Query<HashMap<String, String>>;
const C: Style = Style::Compute;

/// The compute routes, under `/compute/v1`.
pub fn routes() -> Router<Arc<Shared>> {
    let p = "/compute/v1/projects/{project}";
    Router::new()
        .route(&format!("{p}/global/addresses"), get(list_addresses).post(insert_address))
        .route(&format!("{p}/global/addresses/{{name}}"), get(get_address).delete(delete_address))
        .route(&format!("{p}/global/addresses/{{name}}/setLabels"), post(set_labels))
        .route(&format!("{p}/global/firewalls"), get(list_firewalls).post(insert_firewall))
        .route(
            &format!("{p}/global/firewalls/{{name}}"),
            get(get_firewall).patch(patch_firewall).put(update_firewall).delete(delete_firewall),
        )
        .route(&format!("{p}/zones/{{zone}}/networkEndpointGroups"), get(list_negs).post(insert_neg))
        .route(&format!("{p}/zones/{{zone}}/networkEndpointGroups/{{name}}"), get(get_neg).delete(delete_neg))
        .route(&format!("{p}/aggregated/networkEndpointGroups"), get(aggregated_negs))
        .route(&format!("{p}/zones/{{zone}}/instances"), get(list_instances))
        .route(&format!("{p}/zones/{{zone}}/instances/{{name}}"), get(get_instance))
        .route(&format!("{p}/aggregated/instances"), get(aggregated_instances))
        .route(&format!("{p}/global/networks/{{name}}"), get(get_network))
        .route(&format!("{p}/regions/{{region}}/subnetworks/{{name}}"), get(get_subnetwork))
        .route(&format!("{p}/global/operations/{{op}}"), get(get_op))
        .route(&format!("{p}/global/operations/{{op}}/wait"), post(get_op))
        .route(&format!("{p}/zones/{{zone}}/operations/{{op}}"), get(get_zone_op))
        .route(&format!("{p}/zones/{{zone}}/operations/{{op}}/wait"), post(get_zone_op))
}

fn project<'a>(s: &'a Shared, project: &str) -> ApiResult<std::sync::MutexGuard<'a, Store>> {
    let Some(store) = s.store_of(project) else {
        return Err(ApiError::not_found(C, format!("The resource 'projects/{project}' was not found")));
    };
    Ok(store.lock().unwrap_or_else(|e| e.into_inner()))
}

fn not_found(p: &str, path: &str) -> ApiError {
    ApiError::not_found(C, format!("The resource 'projects/{p}/{path}' was not found"))
}

fn check_name(name: Option<&str>) -> ApiResult<String> {
    let name = name.ok_or_else(|| ApiError::invalid(C, "Required field 'resource.name' not specified"))?;
    let ok = regex::Regex::new("^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$").map(|r| r.is_match(name)).unwrap_or(false);
    if !ok {
        return Err(ApiError::invalid(
            C,
            format!(
                "Invalid value for field 'resource.name': '{name}'. Must be a match of regex '(?:[a-z](?:[-a-z0-9]{{0,61}}[a-z0-9])?)'"
            ),
        ));
    }
    Ok(name.to_string())
}

/// Canonical URL of a network given as a URL on any host, a partial path or a bare name.
fn canonical_link(p: &str, v: Option<&Value>, kind: &str, default: &str) -> String {
    let raw = v.and_then(Value::as_str).unwrap_or(default);
    let tail = match raw.find("projects/") {
        Some(i) => raw[i..].to_string(),
        None if raw.contains('/') => format!("projects/{p}/{}", raw.trim_start_matches('/')),
        None => format!("projects/{p}/{kind}/{raw}"),
    };
    format!("{COMPUTE_BASE}/{tail}")
}

fn valid_cidr(c: &str) -> bool {
    let Some((ip, len)) = c.split_once('/') else { return ip_ok(c) };
    ip_ok(ip) && len.parse::<u8>().is_ok_and(|l| l <= if ip.contains(':') { 128 } else { 32 })
}

fn ip_ok(ip: &str) -> bool {
    ip.parse::<std::net::IpAddr>().is_ok()
}

/// A list response with `filter`, `maxResults` and `pageToken` applied.
pub fn list_page(kind: &str, self_link: String, items: Vec<Value>, q: &HashMap<String, String>) -> ApiResult<Value> {
    let filter = Filter::parse(q.get("filter").map_or("", String::as_str)).map_err(|m| ApiError::invalid(C, m))?;
    let mut items: Vec<Value> = items.into_iter().filter(|i| filter.matches(i)).collect();
    if q.get("orderBy").is_some_and(|o| o == "creationTimestamp desc") {
        items.reverse();
    }
    let max: usize = q.get("maxResults").and_then(|m| m.parse().ok()).filter(|m| *m > 0).unwrap_or(500).min(500);
    let start: usize =
        q.get("pageToken").and_then(|t| t.strip_prefix("page-")).and_then(|t| t.parse().ok()).unwrap_or(0);
    let page: Vec<Value> = items.iter().skip(start).take(max).cloned().collect();
    let mut out = json!({"kind": kind, "id": self_link.clone(), "selfLink": self_link});
    if !page.is_empty() {
        out["items"] = Value::Array(page);
    }
    if start + max < items.len() {
        out["nextPageToken"] = json!(format!("page-{}", start + max));
    }
    Ok(out)
}

// ---- addresses ----

async fn list_addresses(State(s): S, Path(p): Path<String>, Query(q): Q) -> ApiResult<Json<Value>> {
    let st = project(&s, &p)?;
    let items = st.addresses.values().cloned().collect();
    Ok(Json(list_page("compute#addressList", format!("{COMPUTE_BASE}/projects/{p}/global/addresses"), items, &q)?))
}

async fn get_address(State(s): S, Path((p, name)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    let st = project(&s, &p)?;
    st.addresses.get(&name).cloned().map(Json).ok_or_else(|| not_found(&p, &format!("global/addresses/{name}")))
}

async fn insert_address(State(s): S, Path(p): Path<String>, Json(body): Json<Value>) -> ApiResult<Json<Value>> {
    let mut st = project(&s, &p)?;
    let name = check_name(body["name"].as_str())?;
    if st.addresses.contains_key(&name) {
        return Err(ApiError::already_exists(
            C,
            format!("The resource 'projects/{p}/global/addresses/{name}' already exists"),
        ));
    }
    let ip_version = body["ipVersion"].as_str().unwrap_or("IPV4").to_string();
    let id = st.id();
    let n = st.addresses.len() as u64 + u64::from(id.len() as u32);
    let ip = match body["address"].as_str() {
        Some(a) => a.to_string(),
        None if ip_version == "IPV6" => format!("2600:1901:0:{:x}::", 0x1000 + n),
        None => format!("34.{}.{}.{}", 96 + (n / 65536) % 32, (n / 256) % 256, 10 + n % 240),
    };
    let labels = body.get("labels").cloned().unwrap_or_else(|| json!({}));
    let mut a = json!({
        "kind": "compute#address", "id": id, "name": name, "address": ip,
        "addressType": body["addressType"].as_str().unwrap_or("EXTERNAL"), "ipVersion": ip_version,
        "networkTier": "PREMIUM", "status": "RESERVED", "labels": labels, "labelFingerprint": fingerprint(&labels),
        "creationTimestamp": now(), "selfLink": format!("{COMPUTE_BASE}/projects/{p}/global/addresses/{name}"),
    });
    for k in ["description", "purpose", "prefixLength"] {
        if let Some(v) = body.get(k) {
            a[k] = v.clone();
        }
    }
    if let Some(n) = body.get("network") {
        a["network"] = json!(canonical_link(&p, Some(n), "global/networks", "default"));
    }
    st.addresses.insert(name.clone(), a);
    Ok(Json(st.compute_op("insert", &format!("global/addresses/{name}"), &id, None)))
}

async fn delete_address(State(s): S, Path((p, name)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    let mut st = project(&s, &p)?;
    let a = st.addresses.remove(&name).ok_or_else(|| not_found(&p, &format!("global/addresses/{name}")))?;
    let id = a["id"].as_str().unwrap_or_default().to_string();
    Ok(Json(st.compute_op("delete", &format!("global/addresses/{name}"), &id, None)))
}

async fn set_labels(
    State(s): S,
    Path((p, name)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> ApiResult<Json<Value>> {
    let mut st = project(&s, &p)?;
    let a = st.addresses.get_mut(&name).ok_or_else(|| not_found(&p, &format!("global/addresses/{name}")))?;
    // A fingerprint is bytes: clients may send it in either base64 alphabet (gcloud re-encodes
    // it URL-safe), so compare what it decodes to.
    let bytes = |f: &str| f.replace('-', "+").replace('_', "/");
    let current = bytes(a["labelFingerprint"].as_str().unwrap_or_default());
    if body["labelFingerprint"].as_str().map(bytes) != Some(current) {
        return Err(ApiError::condition_not_met(format!(
            "Labels fingerprint either invalid or resource labels have changed for 'projects/{p}/global/addresses/{name}'"
        )));
    }
    let labels = body.get("labels").cloned().unwrap_or_else(|| json!({}));
    a["labelFingerprint"] = json!(fingerprint(&labels));
    a["labels"] = labels;
    let id = a["id"].as_str().unwrap_or_default().to_string();
    Ok(Json(st.compute_op("setLabels", &format!("global/addresses/{name}"), &id, None)))
}

// ---- firewalls ----

async fn list_firewalls(State(s): S, Path(p): Path<String>, Query(q): Q) -> ApiResult<Json<Value>> {
    let st = project(&s, &p)?;
    let items = st.firewalls.values().cloned().collect();
    Ok(Json(list_page("compute#firewallList", format!("{COMPUTE_BASE}/projects/{p}/global/firewalls"), items, &q)?))
}

async fn get_firewall(State(s): S, Path((p, name)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    let st = project(&s, &p)?;
    st.firewalls.get(&name).cloned().map(Json).ok_or_else(|| not_found(&p, &format!("global/firewalls/{name}")))
}

/// Validates a firewall's settable fields and fills in defaults.
fn normalize_firewall(p: &str, body: &Value) -> ApiResult<Value> {
    let name = check_name(body["name"].as_str())?;
    let allowed = body.get("allowed").and_then(Value::as_array).filter(|a| !a.is_empty());
    let denied = body.get("denied").and_then(Value::as_array).filter(|a| !a.is_empty());
    if allowed.is_some() == denied.is_some() {
        return Err(ApiError::invalid(
            C,
            "Invalid value for field 'resource': exactly one of 'allowed' or 'denied' must be set.",
        ));
    }
    for rule in allowed.or(denied).into_iter().flatten() {
        let proto = rule["IPProtocol"].as_str().unwrap_or_default();
        let known =
            ["tcp", "udp", "icmp", "esp", "ah", "ipip", "sctp", "all"].contains(&proto) || proto.parse::<u8>().is_ok();
        if !known {
            return Err(ApiError::invalid(
                C,
                format!("Invalid value for field 'resource.allowed[0].IPProtocol': '{proto}'."),
            ));
        }
    }
    let direction = body["direction"].as_str().unwrap_or("INGRESS");
    if !["INGRESS", "EGRESS"].contains(&direction) {
        return Err(ApiError::invalid(C, format!("Invalid value for field 'resource.direction': '{direction}'.")));
    }
    for field in ["sourceRanges", "destinationRanges"] {
        for r in body.get(field).and_then(Value::as_array).into_iter().flatten() {
            if !r.as_str().is_some_and(valid_cidr) {
                return Err(ApiError::invalid(
                    C,
                    format!(
                        "Invalid value for field 'resource.{field}[0]': '{}'. Must be a CIDR address range.",
                        r.as_str().unwrap_or("")
                    ),
                ));
            }
        }
    }
    let priority = body.get("priority").and_then(Value::as_i64).unwrap_or(1000);
    if !(0..=65535).contains(&priority) {
        return Err(ApiError::invalid(C, format!("Invalid value for field 'resource.priority': '{priority}'.")));
    }
    let mut fw = json!({
        "kind": "compute#firewall", "name": name, "network": canonical_link(p, body.get("network"), "global/networks", "default"),
        "direction": direction, "priority": priority, "disabled": body["disabled"].as_bool().unwrap_or(false),
        "selfLink": format!("{COMPUTE_BASE}/projects/{p}/global/firewalls/{name}"),
        "logConfig": body.get("logConfig").cloned().unwrap_or_else(|| json!({"enable": false})),
    });
    for k in [
        "allowed",
        "denied",
        "sourceRanges",
        "destinationRanges",
        "sourceTags",
        "targetTags",
        "sourceServiceAccounts",
        "targetServiceAccounts",
        "description",
    ] {
        match body.get(k) {
            Some(Value::Array(a)) if a.is_empty() => {}
            Some(Value::Null) | None => {}
            Some(v) => fw[k] = v.clone(),
        }
    }
    if direction == "INGRESS"
        && fw.get("sourceRanges").is_none()
        && fw.get("sourceTags").is_none()
        && fw.get("sourceServiceAccounts").is_none()
    {
        fw["sourceRanges"] = json!(["0.0.0.0/0"]);
    }
    if direction == "EGRESS" && fw.get("destinationRanges").is_none() {
        fw["destinationRanges"] = json!(["0.0.0.0/0"]);
    }
    Ok(fw)
}

async fn insert_firewall(State(s): S, Path(p): Path<String>, Json(body): Json<Value>) -> ApiResult<Json<Value>> {
    let mut st = project(&s, &p)?;
    let mut fw = normalize_firewall(&p, &body)?;
    let name = fw["name"].as_str().unwrap_or_default().to_string();
    if st.firewalls.contains_key(&name) {
        return Err(ApiError::already_exists(
            C,
            format!("The resource 'projects/{p}/global/firewalls/{name}' already exists"),
        ));
    }
    let id = st.id();
    fw["id"] = json!(id);
    fw["creationTimestamp"] = json!(now());
    st.firewalls.insert(name.clone(), fw);
    Ok(Json(st.compute_op("insert", &format!("global/firewalls/{name}"), &id, None)))
}

fn replace_firewall(st: &mut Store, p: &str, name: &str, merged: Value, op_type: &str) -> ApiResult<Value> {
    let old = st.firewalls.get(name).cloned().ok_or_else(|| not_found(p, &format!("global/firewalls/{name}")))?;
    let mut fw = normalize_firewall(p, &merged)?;
    for (k, what) in [("name", "name"), ("network", "network"), ("direction", "direction")] {
        if fw[k] != old[k] {
            return Err(ApiError::invalid(
                C,
                format!(
                    "Invalid value for field 'resource.{what}': '{}'. The {what} of a firewall cannot be changed.",
                    fw[k].as_str().unwrap_or("")
                ),
            ));
        }
    }
    if old.get("allowed").is_some() != fw.get("allowed").is_some() {
        return Err(ApiError::invalid(
            C,
            "Invalid value for field 'resource': the action (allowed or denied) of a firewall cannot be changed.",
        ));
    }
    fw["id"] = old["id"].clone();
    fw["creationTimestamp"] = old["creationTimestamp"].clone();
    let id = fw["id"].as_str().unwrap_or_default().to_string();
    st.firewalls.insert(name.to_string(), fw);
    Ok(st.compute_op(op_type, &format!("global/firewalls/{name}"), &id, None))
}

async fn patch_firewall(
    State(s): S,
    Path((p, name)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> ApiResult<Json<Value>> {
    let mut st = project(&s, &p)?;
    let mut merged =
        st.firewalls.get(&name).cloned().ok_or_else(|| not_found(&p, &format!("global/firewalls/{name}")))?;
    if let (Some(m), Some(b)) = (merged.as_object_mut(), body.as_object()) {
        for (k, v) in b {
            m.insert(k.clone(), v.clone());
        }
        // allowed and denied are one choice: sending one replaces the other.
        if b.contains_key("denied")
            && !b.contains_key("allowed")
            && b["denied"].as_array().is_some_and(|a| !a.is_empty())
        {
            m.remove("allowed");
        }
    }
    Ok(Json(replace_firewall(&mut st, &p, &name, merged, "patch")?))
}

async fn update_firewall(
    State(s): S,
    Path((p, name)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> ApiResult<Json<Value>> {
    let mut st = project(&s, &p)?;
    Ok(Json(replace_firewall(&mut st, &p, &name, body, "update")?))
}

async fn delete_firewall(State(s): S, Path((p, name)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    let mut st = project(&s, &p)?;
    let fw = st.firewalls.remove(&name).ok_or_else(|| not_found(&p, &format!("global/firewalls/{name}")))?;
    let id = fw["id"].as_str().unwrap_or_default().to_string();
    Ok(Json(st.compute_op("delete", &format!("global/firewalls/{name}"), &id, None)))
}

// ---- network endpoint groups ----

fn zone_ok(zone: &str) -> ApiResult<()> {
    if zone.split('-').count() == 3 {
        Ok(())
    } else {
        Err(ApiError::invalid(C, format!("Invalid value for field 'zone': '{zone}'. Unknown zone.")))
    }
}

async fn list_negs(State(s): S, Path((p, zone)): Path<(String, String)>, Query(q): Q) -> ApiResult<Json<Value>> {
    let st = project(&s, &p)?;
    zone_ok(&zone)?;
    let prefix = format!("{zone}/");
    let items = st.negs.iter().filter(|(k, _)| k.starts_with(&prefix)).map(|(_, v)| v.clone()).collect();
    let link = format!("{COMPUTE_BASE}/projects/{p}/zones/{zone}/networkEndpointGroups");
    Ok(Json(list_page("compute#networkEndpointGroupList", link, items, &q)?))
}

async fn get_neg(State(s): S, Path((p, zone, name)): Path<(String, String, String)>) -> ApiResult<Json<Value>> {
    let st = project(&s, &p)?;
    st.negs
        .get(&format!("{zone}/{name}"))
        .cloned()
        .map(Json)
        .ok_or_else(|| not_found(&p, &format!("zones/{zone}/networkEndpointGroups/{name}")))
}

async fn insert_neg(
    State(s): S,
    Path((p, zone)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> ApiResult<Json<Value>> {
    let mut st = project(&s, &p)?;
    zone_ok(&zone)?;
    let name = check_name(body["name"].as_str())?;
    let key = format!("{zone}/{name}");
    if st.negs.contains_key(&key) {
        return Err(ApiError::already_exists(
            C,
            format!("The resource 'projects/{p}/zones/{zone}/networkEndpointGroups/{name}' already exists"),
        ));
    }
    let ty = body["networkEndpointType"].as_str().unwrap_or("GCE_VM_IP_PORT");
    if body.get("defaultPort").is_some() && ["GCE_VM_IP", "SERVERLESS", "PRIVATE_SERVICE_CONNECT"].contains(&ty) {
        return Err(ApiError::invalid(
            C,
            format!("Invalid value for field 'resource.defaultPort': not allowed for {ty}."),
        ));
    }
    let id = st.id();
    let region = region_of(&zone);
    let mut neg = json!({
        "kind": "compute#networkEndpointGroup", "id": id, "name": name, "networkEndpointType": ty,
        "network": canonical_link(&p, body.get("network"), "global/networks", "default"),
        "zone": format!("{COMPUTE_BASE}/projects/{p}/zones/{zone}"), "size": 0, "creationTimestamp": now(),
        "selfLink": format!("{COMPUTE_BASE}/projects/{p}/zones/{zone}/networkEndpointGroups/{name}"),
    });
    if let Some(sn) = body.get("subnetwork") {
        neg["subnetwork"] = json!(canonical_link(&p, Some(sn), &format!("regions/{region}/subnetworks"), "default"));
    }
    for k in ["defaultPort", "description", "annotations"] {
        if let Some(v) = body.get(k) {
            neg[k] = v.clone();
        }
    }
    st.negs.insert(key, neg);
    Ok(Json(st.compute_op("insert", &format!("zones/{zone}/networkEndpointGroups/{name}"), &id, Some(&zone))))
}

async fn delete_neg(State(s): S, Path((p, zone, name)): Path<(String, String, String)>) -> ApiResult<Json<Value>> {
    let mut st = project(&s, &p)?;
    let neg = st
        .negs
        .remove(&format!("{zone}/{name}"))
        .ok_or_else(|| not_found(&p, &format!("zones/{zone}/networkEndpointGroups/{name}")))?;
    let id = neg["id"].as_str().unwrap_or_default().to_string();
    Ok(Json(st.compute_op("delete", &format!("zones/{zone}/networkEndpointGroups/{name}"), &id, Some(&zone))))
}

/// An aggregated list: items by `zones/Z`, with a warning for zones that have none.
fn aggregated(
    kind: &str,
    collection: &str,
    p: &str,
    entries: Vec<(String, Value)>,
    zones: &[String],
    q: &HashMap<String, String>,
) -> ApiResult<Value> {
    let filter = Filter::parse(q.get("filter").map_or("", String::as_str)).map_err(|m| ApiError::invalid(C, m))?;
    let mut items = serde_json::Map::new();
    for z in zones {
        let list: Vec<Value> =
            entries.iter().filter(|(zz, v)| zz == z && filter.matches(v)).map(|(_, v)| v.clone()).collect();
        let scope = format!("zones/{z}");
        let entry = if list.is_empty() {
            json!({"warning": {"code": "NO_RESULTS_ON_PAGE", "message": format!("There are no results for scope '{scope}' on this page."),
                               "data": [{"key": "scope", "value": scope}]}})
        } else {
            json!({ collection: list })
        };
        items.insert(scope, entry);
    }
    let link = format!("{COMPUTE_BASE}/projects/{p}/aggregated/{collection}");
    Ok(json!({"kind": kind, "id": link, "items": items, "selfLink": link}))
}

fn zones_of(st: &Store) -> Vec<String> {
    let mut z: std::collections::BTreeSet<String> =
        st.instances.keys().chain(st.negs.keys()).filter_map(|k| k.split('/').next().map(String::from)).collect();
    for r in st.subnetworks.keys().filter_map(|k| k.split('/').next()) {
        for suffix in ["a", "b", "c"] {
            z.insert(format!("{r}-{suffix}"));
        }
    }
    z.into_iter().collect()
}

async fn aggregated_negs(State(s): S, Path(p): Path<String>, Query(q): Q) -> ApiResult<Json<Value>> {
    let st = project(&s, &p)?;
    let entries = st.negs.iter().map(|(k, v)| (k.split('/').next().unwrap_or("").to_string(), v.clone())).collect();
    Ok(Json(aggregated(
        "compute#networkEndpointGroupAggregatedList",
        "networkEndpointGroups",
        &p,
        entries,
        &zones_of(&st),
        &q,
    )?))
}

async fn list_instances(State(s): S, Path((p, zone)): Path<(String, String)>, Query(q): Q) -> ApiResult<Json<Value>> {
    let st = project(&s, &p)?;
    zone_ok(&zone)?;
    let prefix = format!("{zone}/");
    let items = st.instances.iter().filter(|(k, _)| k.starts_with(&prefix)).map(|(_, v)| v.clone()).collect();
    Ok(Json(list_page(
        "compute#instanceList",
        format!("{COMPUTE_BASE}/projects/{p}/zones/{zone}/instances"),
        items,
        &q,
    )?))
}

async fn get_instance(State(s): S, Path((p, zone, name)): Path<(String, String, String)>) -> ApiResult<Json<Value>> {
    let st = project(&s, &p)?;
    st.instances
        .get(&format!("{zone}/{name}"))
        .cloned()
        .map(Json)
        .ok_or_else(|| not_found(&p, &format!("zones/{zone}/instances/{name}")))
}

async fn aggregated_instances(State(s): S, Path(p): Path<String>, Query(q): Q) -> ApiResult<Json<Value>> {
    let st = project(&s, &p)?;
    let entries =
        st.instances.iter().map(|(k, v)| (k.split('/').next().unwrap_or("").to_string(), v.clone())).collect();
    Ok(Json(aggregated("compute#instanceAggregatedList", "instances", &p, entries, &zones_of(&st), &q)?))
}

async fn get_network(State(s): S, Path((p, name)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    let st = project(&s, &p)?;
    st.networks.get(&name).cloned().map(Json).ok_or_else(|| not_found(&p, &format!("global/networks/{name}")))
}

async fn get_subnetwork(
    State(s): S,
    Path((p, region, name)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let st = project(&s, &p)?;
    st.subnetworks
        .get(&format!("{region}/{name}"))
        .cloned()
        .map(Json)
        .ok_or_else(|| not_found(&p, &format!("regions/{region}/subnetworks/{name}")))
}

async fn get_op(State(s): S, Path((p, op)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    let mut st = project(&s, &p)?;
    st.poll_op(&op).map(Json).ok_or_else(|| not_found(&p, &format!("global/operations/{op}")))
}

async fn get_zone_op(State(s): S, Path((p, zone, op)): Path<(String, String, String)>) -> ApiResult<Json<Value>> {
    let mut st = project(&s, &p)?;
    st.poll_op(&op).map(Json).ok_or_else(|| not_found(&p, &format!("zones/{zone}/operations/{op}")))
}
