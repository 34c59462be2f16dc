//! Discovery, as kubectl and client libraries read it: the aggregated form
//! (`apidiscovery.k8s.io/v2`) and the legacy one (`/api`, `/apis`, `/apis/G/V`), and a minimal
//! OpenAPI v3 (the index, and per group-version the paths kubectl's server-side apply looks up).

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::resources::ResourceDef;
use super::state::{KubeServer, VERSION};
use super::status::{KResult, KubeError};
use super::wire::{accepts, json_response, ok};
use crate::world::short_hash;

/// The verbs every kind serves.
fn verbs() -> Value {
    json!(["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"])
}

/// The API groups served (not core), each with its versions, sorted.
fn groups(s: &KubeServer) -> Vec<(String, Vec<String>)> {
    let inner = s.lock();
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for d in inner.defs.iter().filter(|d| !d.group.is_empty()) {
        match out.iter_mut().find(|(g, _)| *g == d.group) {
            Some((_, vs)) => {
                for v in &d.versions {
                    if !vs.contains(v) {
                        vs.push(v.clone());
                    }
                }
            }
            None => out.push((d.group.clone(), d.versions.clone())),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The kinds served in a group-version.
fn defs_in(s: &KubeServer, group: &str, version: &str) -> Vec<ResourceDef> {
    s.lock().defs.iter().filter(|d| d.group == group && d.versions.iter().any(|v| v == version)).cloned().collect()
}

/// One resource of the aggregated discovery document.
fn aggregated_resource(d: &ResourceDef, v: &str) -> Value {
    let mut r = json!({"resource": d.plural, "responseKind": {"group": d.group, "version": v, "kind": d.kind},
                       "scope": if d.namespaced { "Namespaced" } else { "Cluster" }, "singularResource": d.singular, "verbs": verbs()});
    if !d.short_names.is_empty() {
        r["shortNames"] = json!(d.short_names);
    }
    if !d.categories.is_empty() {
        r["categories"] = json!(d.categories);
    }
    let mut subs = Vec::new();
    if d.status {
        subs.push(json!({"subresource": "status", "responseKind": {"group": d.group, "version": v, "kind": d.kind}, "verbs": ["get", "patch", "update"]}));
    }
    if d.plural == "serviceaccounts" {
        subs.push(json!({"subresource": "token", "responseKind": {"group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest"}, "verbs": ["create"]}));
    }
    if !subs.is_empty() {
        r["subresources"] = json!(subs);
    }
    r
}

/// `/api` or `/apis`, aggregated when the client asks for it.
pub fn discovery_root(s: &KubeServer, core: bool, h: &HeaderMap) -> Response {
    if accepts(h, "as=APIGroupDiscoveryList") {
        let items: Vec<Value> = if core {
            let res: Vec<Value> = defs_in(s, "", "v1").iter().map(|d| aggregated_resource(d, "v1")).collect();
            vec![
                json!({"metadata": {"name": ""}, "versions": [{"version": "v1", "resources": res, "freshness": "Current"}]}),
            ]
        } else {
            groups(s)
                .iter()
                .map(|(g, vs)| {
                    let versions: Vec<Value> = vs
                        .iter()
                        .map(|v| json!({"version": v, "freshness": "Current", "resources": defs_in(s, g, v).iter().map(|d| aggregated_resource(d, v)).collect::<Vec<_>>()}))
                        .collect();
                    json!({"metadata": {"name": g}, "versions": versions})
                })
                .collect()
        };
        let body = json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items});
        return json_response(
            StatusCode::OK,
            &body,
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
        );
    }
    if core {
        ok(
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:443"}]}),
        )
    } else {
        let gs: Vec<Value> = groups(s)
            .iter()
            .map(|(g, vs)| {
                let versions: Vec<Value> =
                    vs.iter().map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v})).collect();
                json!({"name": g, "versions": versions, "preferredVersion": versions[0]})
            })
            .collect();
        ok(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": gs}))
    }
}

/// `/api/v1` or `/apis/G/V`: an APIResourceList.
pub fn resource_list(s: &KubeServer, group: &str, version: &str) -> KResult<Response> {
    let defs = defs_in(s, group, version);
    if defs.is_empty() {
        return Err(KubeError::no_resource());
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    let mut res = Vec::new();
    for d in &defs {
        let mut r = json!({"name": d.plural, "singularName": d.singular, "namespaced": d.namespaced, "kind": d.kind, "verbs": verbs()});
        if !d.short_names.is_empty() {
            r["shortNames"] = json!(d.short_names);
        }
        res.push(r);
        if d.status {
            res.push(json!({"name": format!("{}/status", d.plural), "singularName": "", "namespaced": d.namespaced, "kind": d.kind, "verbs": ["get", "patch", "update"]}));
        }
        if d.plural == "serviceaccounts" {
            res.push(json!({"name": "serviceaccounts/token", "singularName": "", "namespaced": true, "group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest", "verbs": ["create"]}));
        }
    }
    Ok(ok(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": res})))
}

/// `/openapi/v3`.
pub fn openapi_index(s: &KubeServer) -> Response {
    let mut paths = Map::new();
    paths.insert("api/v1".into(), json!({"serverRelativeURL": "/openapi/v3/api/v1?hash=core"}));
    for (g, vs) in groups(s) {
        for v in vs {
            paths.insert(format!("apis/{g}/{v}"), json!({"serverRelativeURL": format!("/openapi/v3/apis/{g}/{v}?hash={}", short_hash(&format!("{g}{v}")))}));
        }
    }
    ok(json!({"paths": paths}))
}

/// `/openapi/v3/api/v1` or `/openapi/v3/apis/G/V`.
pub fn openapi_doc(s: &KubeServer, group: &str, version: &str) -> Response {
    let mut paths = Map::new();
    for d in defs_in(s, group, version) {
        let prefix = if group.is_empty() { "/api/v1".to_string() } else { format!("/apis/{group}/{version}") };
        let p = if d.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", d.plural)
        } else {
            format!("{prefix}/{}/{{name}}", d.plural)
        };
        paths.insert(
            p,
            json!({"patch": {"x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": d.kind},
                             "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}, {"name": "fieldManager", "in": "query", "schema": {"type": "string"}}],
                             "responses": {"200": {"description": "OK"}}}}),
        );
    }
    ok(
        json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": VERSION.2}, "components": {"schemas": {}}, "paths": paths}),
    )
}
