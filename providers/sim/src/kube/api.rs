//! The HTTP surface of a simulated API server: discovery, OpenAPI, and the generic handlers for
//! every served kind.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::resources::{ResourceDef, from_crd};
use super::selectors::{FieldSelector, LabelSelector};
use super::ssa;
use super::status::{KResult, KubeError};
use super::{Event, HISTORY, Inner, Key, KubeServer, VERSION};
use crate::faults::Fault;
use crate::support::now_rfc3339 as now;

type S = State<Arc<KubeServer>>;

/// The router of one API server.
pub fn router(s: Arc<KubeServer>) -> Router {
    Router::new().fallback(handle).with_state(s)
}

fn json_response(code: StatusCode, v: &Value, content_type: &str) -> Response {
    let mut r = (code, v.to_string()).into_response();
    if let Ok(ct) = content_type.parse() {
        r.headers_mut().insert("content-type", ct);
    }
    r
}

fn ok(v: Value) -> Response {
    json_response(StatusCode::OK, &v, "application/json")
}

fn query_map(uri: &Uri) -> BTreeMap<String, String> {
    serde_urlencoded::from_str(uri.query().unwrap_or("")).unwrap_or_default()
}

async fn handle(State(s): S, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let r = if path == "/version" {
        ok(
            json!({"major": VERSION.0, "minor": VERSION.1, "gitVersion": VERSION.2, "gitCommit": "meshform-sim", "gitTreeState": "clean",
                  "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23", "compiler": "gc", "platform": "linux/amd64"}),
        )
    } else if !authorized(&s, &headers) {
        json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "Unauthorized", "reason": "Unauthorized", "code": 401}),
            "application/json",
        )
    } else {
        if !s.latency.is_zero() {
            tokio::time::sleep(s.latency).await;
        }
        let target = uri.path_and_query().map_or(path.as_str(), |pq| pq.as_str());
        match s.faults.draw(method.as_str(), target) {
            Some(Fault::RateLimited) => KubeError::too_many_requests(s.retry_after_secs).into_response(),
            Some(Fault::Unavailable | Fault::UnavailableAfter) => {
                KubeError::unavailable(s.retry_after_secs).into_response()
            }
            None => route(&s, &method, &uri, &headers, body).await.unwrap_or_else(IntoResponse::into_response),
        }
    };
    let q = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    s.log.lock().unwrap_or_else(|e| e.into_inner()).push((
        method.to_string(),
        format!("{path}{q}"),
        r.status().as_u16(),
        std::time::Instant::now(),
    ));
    r
}

fn authorized(s: &KubeServer, h: &HeaderMap) -> bool {
    let Some(t) = h.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")) else {
        return false;
    };
    t == s.admin_token
        || s.lock().tokens.contains_key(t)
        || s.google_tokens.lock().unwrap_or_else(|e| e.into_inner()).contains(t)
}

fn accepts(h: &HeaderMap, what: &str) -> bool {
    h.get("accept").and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains(what))
}

async fn route(s: &Arc<KubeServer>, method: &Method, uri: &Uri, headers: &HeaderMap, body: Bytes) -> KResult<Response> {
    let path = uri.path().trim_end_matches('/');
    let segs: Vec<&str> = path.split('/').filter(|x| !x.is_empty()).collect();
    let q = query_map(uri);
    match segs.as_slice() {
        ["api"] => Ok(discovery_root(s, true, headers)),
        ["apis"] => Ok(discovery_root(s, false, headers)),
        ["api", "v1"] => resource_list(s, "", "v1"),
        ["apis", g, v] => resource_list(s, g, v),
        ["openapi", "v3"] => Ok(openapi_index(s)),
        ["openapi", "v3", "api", "v1"] => Ok(openapi_doc(s, "", "v1")),
        ["openapi", "v3", "apis", g, v] => Ok(openapi_doc(s, g, v)),
        ["api", "v1", rest @ ..] => resource(s, "", "v1", rest, method, &q, headers, body).await,
        ["apis", g, v, rest @ ..] => resource(s, g, v, rest, method, &q, headers, body).await,
        _ => Err(KubeError::no_resource()),
    }
}

// ---------- discovery ----------

fn verbs() -> Value {
    json!(["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"])
}

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

fn defs_in(s: &KubeServer, group: &str, version: &str) -> Vec<ResourceDef> {
    s.lock().defs.iter().filter(|d| d.group == group && d.versions.iter().any(|v| v == version)).cloned().collect()
}

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

fn discovery_root(s: &KubeServer, core: bool, h: &HeaderMap) -> Response {
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

fn resource_list(s: &KubeServer, group: &str, version: &str) -> KResult<Response> {
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

fn openapi_index(s: &KubeServer) -> Response {
    let mut paths = Map::new();
    paths.insert("api/v1".into(), json!({"serverRelativeURL": "/openapi/v3/api/v1?hash=core"}));
    for (g, vs) in groups(s) {
        for v in vs {
            paths.insert(format!("apis/{g}/{v}"), json!({"serverRelativeURL": format!("/openapi/v3/apis/{g}/{v}?hash={}", crate::world::short_hash(&format!("{g}{v}")))}));
        }
    }
    ok(json!({"paths": paths}))
}

fn openapi_doc(s: &KubeServer, group: &str, version: &str) -> Response {
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

// ---------- objects ----------

/// Stores an object (bumping the RV) and tells watchers.
fn persist(s: &KubeServer, inner: &mut Inner, key: Key, mut obj: Value, kind: &'static str) -> Value {
    inner.rv += 1;
    obj["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
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

fn key_of(def: &ResourceDef, ns: &str, name: &str) -> Key {
    (
        def.group.clone(),
        def.plural.clone(),
        if def.namespaced { ns.to_string() } else { String::new() },
        name.to_string(),
    )
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Server-side defaults and normalisation of a kind.
fn default_object(s: &KubeServer, inner: &Inner, def: &ResourceDef, obj: &mut Value) -> KResult<()> {
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    match (def.group.as_str(), def.plural.as_str()) {
        ("", "secrets") => {
            if let Some(sd) = obj.as_object_mut().and_then(|m| m.remove("stringData")) {
                let b64 = base64::engine::general_purpose::STANDARD;
                for (k, v) in sd.as_object().into_iter().flatten() {
                    obj["data"][k] = json!(b64.encode(v.as_str().unwrap_or("").as_bytes()));
                }
            }
            if let Some(data) = obj["data"].as_object() {
                for (k, v) in data {
                    let b = v.as_str().unwrap_or("");
                    if base64::engine::general_purpose::STANDARD.decode(b).is_err() {
                        return Err(KubeError::bad_request(format!(
                            "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data at input byte 0 (key {k})"
                        )));
                    }
                }
            }
            if obj["type"].is_null() {
                obj["type"] = json!("Opaque");
            }
            if obj["type"] == "kubernetes.io/service-account-token"
                && obj["metadata"]["annotations"]["kubernetes.io/service-account.name"].as_str().is_none()
            {
                return Err(KubeError::invalid(
                    "Secret",
                    &name,
                    "metadata.annotations[kubernetes.io/service-account.name]",
                    "Required value",
                ));
            }
        }
        ("", "namespaces") => {
            obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
            if obj["spec"]["finalizers"].is_null() {
                obj["spec"]["finalizers"] = json!(["kubernetes"]);
            }
            if obj["status"]["phase"].is_null() {
                obj["status"]["phase"] = json!("Active");
            }
        }
        ("", "services") => {
            if obj["spec"]["type"].is_null() {
                obj["spec"]["type"] = json!("ClusterIP");
            }
            if obj["spec"]["clusterIP"].is_null() {
                let n = inner.objects.keys().filter(|k| k.1 == "services").count() + 10;
                obj["spec"]["clusterIP"] = json!(format!("10.96.{}.{}", n / 250, n % 250 + 1));
                obj["spec"]["clusterIPs"] = json!([obj["spec"]["clusterIP"].clone()]);
            }
            for k in [
                ("sessionAffinity", json!("None")),
                ("ipFamilies", json!(["IPv4"])),
                ("ipFamilyPolicy", json!("SingleStack")),
                ("internalTrafficPolicy", json!("Cluster")),
            ] {
                if obj["spec"][k.0].is_null() {
                    obj["spec"][k.0] = k.1;
                }
            }
            if let Some(ports) = obj["spec"]["ports"].as_array_mut() {
                for p in ports {
                    if p["protocol"].is_null() {
                        p["protocol"] = json!("TCP");
                    }
                    if p["targetPort"].is_null() {
                        p["targetPort"] = p["port"].clone();
                    }
                }
            }
        }
        ("apps", "deployments") => {
            let spec = &mut obj["spec"];
            for (k, v) in [
                ("replicas", json!(1)),
                ("revisionHistoryLimit", json!(10)),
                ("progressDeadlineSeconds", json!(600)),
                (
                    "strategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
                ),
            ] {
                if spec[k].is_null() {
                    spec[k] = v;
                }
            }
            let tspec = &mut spec["template"]["spec"];
            for (k, v) in [
                ("restartPolicy", json!("Always")),
                ("dnsPolicy", json!("ClusterFirst")),
                ("schedulerName", json!("default-scheduler")),
                ("terminationGracePeriodSeconds", json!(30)),
                ("securityContext", json!({})),
            ] {
                if tspec[k].is_null() {
                    tspec[k] = v;
                }
            }
            if let Some(cs) = tspec["containers"].as_array_mut() {
                for c in cs {
                    if c["imagePullPolicy"].is_null() {
                        let latest = c["image"].as_str().is_some_and(|i| i.ends_with(":latest") || !i.contains(':'));
                        c["imagePullPolicy"] = json!(if latest { "Always" } else { "IfNotPresent" });
                    }
                    if c["terminationMessagePath"].is_null() {
                        c["terminationMessagePath"] = json!("/dev/termination-log");
                        c["terminationMessagePolicy"] = json!("File");
                    }
                    if c["resources"].is_null() {
                        c["resources"] = json!({});
                    }
                }
            }
        }
        _ => {}
    }
    let _ = s;
    Ok(())
}

/// Creates an object (the shared path of POST, apply-create and seeding).
pub fn create_object(
    s: &KubeServer,
    inner: &mut Inner,
    def: &ResourceDef,
    mut obj: Value,
    manager: &str,
    dry_run: bool,
) -> KResult<Value> {
    if obj["metadata"]["name"].as_str().is_none_or(str::is_empty)
        && let Some(g) = obj["metadata"]["generateName"].as_str()
    {
        obj["metadata"]["name"] = json!(format!("{g}{}", &crate::world::short_hash(&format!("{g}{}", inner.rv))[..5]));
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    if !valid_name(&name) {
        return Err(KubeError::invalid(
            &def.kind,
            &name,
            "metadata.name",
            &format!(
                "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
            ),
        ));
    }
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or("").to_string();
    if def.namespaced {
        let nskey = (String::new(), "namespaces".to_string(), String::new(), ns.clone());
        match inner.objects.get(&nskey) {
            None => return Err(KubeError::not_found("", "namespaces", &ns)),
            Some(n) if n["status"]["phase"] == "Terminating" => {
                return Err(KubeError::new(403, "Forbidden", format!("{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated", def.plural))
                    .details(json!({"name": name, "kind": def.plural, "causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]})));
            }
            _ => {}
        }
    } else if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("namespace");
    }
    let key = key_of(def, &ns, &name);
    if inner.objects.contains_key(&key) {
        return Err(KubeError::already_exists(&def.group, &def.plural, &name));
    }
    default_object(s, inner, def, &mut obj)?;
    let uid = uuid::Uuid::new_v4().to_string();
    obj["metadata"]["uid"] = json!(uid);
    obj["metadata"]["creationTimestamp"] = json!(now());
    if def.generation {
        obj["metadata"]["generation"] = json!(1);
    }
    if obj["metadata"].get("managedFields").is_none() {
        let av = obj["apiVersion"].as_str().unwrap_or("v1").to_string();
        ssa::record_update(None, &mut obj, manager, &av, &now(), def.status);
    }
    if def.group.is_empty() && def.plural == "secrets" {
        token_controller(s, inner, &mut obj)?;
    }
    if dry_run {
        obj["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
        return Ok(obj);
    }
    let stored = persist(s, inner, key, obj, "ADDED");
    after_create(s, inner, def, &stored);
    Ok(stored)
}

/// Fills a service-account token Secret (or refuses it when its account is missing).
fn token_controller(s: &KubeServer, inner: &mut Inner, obj: &mut Value) -> KResult<()> {
    if obj["type"] != "kubernetes.io/service-account-token" {
        return Ok(());
    }
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or("").to_string();
    let sa = obj["metadata"]["annotations"]["kubernetes.io/service-account.name"].as_str().unwrap_or("").to_string();
    let sa_key = (String::new(), "serviceaccounts".to_string(), ns.clone(), sa.clone());
    let Some(account) = inner.objects.get(&sa_key) else {
        return Err(KubeError::invalid(
            "Secret",
            obj["metadata"]["name"].as_str().unwrap_or(""),
            "metadata.annotations[kubernetes.io/service-account.name]",
            &format!("Invalid value: service account {sa} does not exist"),
        ));
    };
    let uid = account["metadata"]["uid"].clone();
    let token = mint_token(inner, &ns, &sa);
    let b64 = base64::engine::general_purpose::STANDARD;
    obj["metadata"]["annotations"]["kubernetes.io/service-account.uid"] = uid;
    obj["data"]["token"] = json!(b64.encode(token.as_bytes()));
    obj["data"]["ca.crt"] = json!(b64.encode(s.ca.cert_pem.as_bytes()));
    obj["data"]["namespace"] = json!(b64.encode(ns.as_bytes()));
    Ok(())
}

fn mint_token(inner: &mut Inner, ns: &str, sa: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"RS256","kid":"meshform-sim"}"#);
    let claims = b64.encode(json!({"iss": "kubernetes/serviceaccount", "sub": format!("system:serviceaccount:{ns}:{sa}"), "jti": uuid::Uuid::new_v4().to_string()}).to_string());
    let sig = b64.encode(uuid::Uuid::new_v4().as_bytes());
    let t = format!("{header}.{claims}.{sig}");
    inner.tokens.insert(t.clone(), (ns.to_string(), sa.to_string()));
    t
}

fn after_create(s: &KubeServer, inner: &mut Inner, def: &ResourceDef, obj: &Value) {
    if def.group.is_empty() && def.plural == "namespaces" {
        let ns = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        let defs = inner.defs.clone();
        let find = |p: &str| defs.iter().find(|d| d.group.is_empty() && d.plural == p).cloned();
        if let Some(d) = find("serviceaccounts") {
            let _ = create_object(
                s,
                inner,
                &d,
                json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}}),
                "kube-controller-manager",
                false,
            );
        }
        if let Some(d) = find("configmaps") {
            let _ = create_object(
                s,
                inner,
                &d,
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt", "namespace": ns}, "data": {"ca.crt": s.ca.cert_pem}}),
                "kube-controller-manager",
                false,
            );
        }
    }
}

/// Creates a namespace (seeding).
pub fn create_namespace(s: &KubeServer, inner: &mut Inner, obj: Value) -> KResult<Value> {
    let def = inner
        .defs
        .iter()
        .find(|d| d.group.is_empty() && d.plural == "namespaces")
        .cloned()
        .ok_or_else(KubeError::no_resource)?;
    create_object(s, inner, &def, obj, "kube-apiserver", false)
}

/// Creates a CRD and makes its kind servable.
pub fn create_crd(s: &KubeServer, inner: &mut Inner, mut obj: Value) -> KResult<Value> {
    let def = inner
        .defs
        .iter()
        .find(|d| d.plural == "customresourcedefinitions")
        .cloned()
        .ok_or_else(KubeError::no_resource)?;
    establish_crd(inner, &mut obj)?;
    create_object(s, inner, &def, obj, "kube-apiserver", false)
}

/// Registers (or re-registers) the kind a CRD object defines and fills its status.
fn establish_crd(inner: &mut Inner, obj: &mut Value) -> KResult<()> {
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    let def = from_crd(obj).map_err(|m| KubeError::invalid("CustomResourceDefinition", &name, "spec", &m))?;
    let names = &obj["spec"]["names"];
    obj["status"] = json!({
        "acceptedNames": {"plural": def.plural, "singular": def.singular, "kind": def.kind, "listKind": names["listKind"].as_str().map_or_else(|| def.list_kind(), String::from),
                          "shortNames": def.short_names},
        "storedVersions": obj["spec"]["versions"].as_array().map(|v| v.iter().filter(|x| x["storage"] == true).map(|x| x["name"].clone()).collect::<Vec<_>>()).unwrap_or_default(),
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now()},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now()},
        ]
    });
    inner.defs.retain(|d| !(d.group == def.group && d.plural == def.plural));
    inner.defs.push(def);
    Ok(())
}

fn find_def(s: &KubeServer, group: &str, version: &str, plural: &str) -> KResult<ResourceDef> {
    s.lock()
        .defs
        .iter()
        .find(|d| d.group == group && d.plural == plural && d.versions.iter().any(|v| v == version))
        .cloned()
        .ok_or_else(KubeError::no_resource)
}

/// The object as served in `version` (custom kinds share storage across versions).
fn served(def: &ResourceDef, version: &str, mut obj: Value) -> Value {
    obj["apiVersion"] = json!(def.api_version(version));
    obj["kind"] = json!(def.kind);
    obj
}

#[allow(clippy::too_many_arguments)]
async fn resource(
    s: &Arc<KubeServer>,
    group: &str,
    version: &str,
    rest: &[&str],
    method: &Method,
    q: &BTreeMap<String, String>,
    h: &HeaderMap,
    body: Bytes,
) -> KResult<Response> {
    let (ns, plural, name, sub) = match rest {
        ["namespaces", ns, plural, tail @ ..] if !matches!(*plural, "finalize" | "status") => {
            (Some(*ns), *plural, tail.first().copied(), tail.get(1).copied())
        }
        [plural, tail @ ..] => (None, *plural, tail.first().copied(), tail.get(1).copied()),
        [] => return Err(KubeError::no_resource()),
    };
    let def = find_def(s, group, version, plural)?;
    if def.namespaced != ns.is_some() && name.is_some() {
        return Err(KubeError::no_resource());
    }
    let ns = ns.unwrap_or("");
    let dry = q.get("dryRun").is_some_and(|d| d == "All");
    let manager = q.get("fieldManager").cloned().unwrap_or_else(|| {
        h.get("user-agent")
            .and_then(|v| v.to_str().ok())
            .and_then(|u| u.split('/').next())
            .filter(|u| !u.is_empty())
            .unwrap_or("unknown")
            .to_string()
    });
    let table = accepts(h, "as=Table");
    match (method.clone(), name, sub) {
        (Method::GET, None, _) if q.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            watch(s, &def, version, ns, q, table)
        }
        (Method::GET, None, _) => list(s, &def, version, ns, q, table),
        (Method::POST, None, _) => {
            let obj = decode_body(h, &body)?;
            let mut obj = check_body(&def, version, obj, None, ns)?;
            if def.namespaced {
                obj["metadata"]["namespace"] = json!(ns);
            }
            let mut inner = s.lock();
            if def.plural == "customresourcedefinitions" {
                establish_crd(&mut inner, &mut obj)?;
            }
            let created = create_object(s, &mut inner, &def, obj, &manager, dry)?;
            Ok(json_response(StatusCode::CREATED, &served(&def, version, created), "application/json"))
        }
        (Method::GET, Some(n), None) => {
            let obj = s
                .lock()
                .objects
                .get(&key_of(&def, ns, n))
                .cloned()
                .ok_or_else(|| KubeError::not_found(&def.group, &def.plural, n))?;
            let obj = served(&def, version, obj);
            Ok(if table { ok(to_table(&def, &[obj], true)) } else { ok(obj) })
        }
        (Method::GET, Some(n), Some("status")) => {
            let obj = s
                .lock()
                .objects
                .get(&key_of(&def, ns, n))
                .cloned()
                .ok_or_else(|| KubeError::not_found(&def.group, &def.plural, n))?;
            Ok(ok(served(&def, version, obj)))
        }
        (Method::POST, Some(sa), Some("token")) if def.plural == "serviceaccounts" => {
            token_request(s, ns, sa, h, &body)
        }
        (Method::PUT, Some(n), sub) => {
            let obj = decode_body(h, &body)?;
            let obj = check_body(&def, version, obj, Some(n), ns)?;
            update(s, &def, version, ns, n, sub, dry, &manager, |_old| Ok(obj))
                .map(|(c, v)| json_response(c, &v, "application/json"))
        }
        (Method::PATCH, Some(n), sub) => patch(s, &def, version, ns, n, sub, q, h, &body, dry, &manager),
        (Method::DELETE, Some(n), None) => delete(s, &def, version, ns, n, &body, dry),
        _ => Err(KubeError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource".to_string(),
        )),
    }
}

fn decode_body(h: &HeaderMap, body: &[u8]) -> KResult<Value> {
    let ct = h.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    if ct.starts_with("application/vnd.kubernetes.protobuf") {
        return super::proto::decode(body)
            .map_err(|m| KubeError::bad_request(format!("the body of the request could not be decoded: {m}")));
    }
    serde_json::from_slice(body)
        .map_err(|e| KubeError::bad_request(format!("the body of the request could not be decoded as JSON: {e}")))
}

fn check_body(def: &ResourceDef, version: &str, mut obj: Value, url_name: Option<&str>, ns: &str) -> KResult<Value> {
    shaped(&obj)?;
    if obj["apiVersion"].is_null() {
        obj["apiVersion"] = json!(def.api_version(version));
    }
    if obj["kind"].is_null() {
        obj["kind"] = json!(def.kind);
    }
    if obj["kind"] != def.kind.as_str() {
        return Err(KubeError::bad_request(format!(
            "the body kind {} does not match the resource kind {}",
            obj["kind"], def.kind
        )));
    }
    if let Some(n) = url_name {
        match obj["metadata"]["name"].as_str() {
            Some(b) if b != n => {
                return Err(KubeError::bad_request(format!(
                    "the name of the object ({b}) does not match the name on the URL ({n})"
                )));
            }
            None => obj["metadata"]["name"] = json!(n),
            _ => {}
        }
    }
    if def.namespaced {
        match obj["metadata"]["namespace"].as_str() {
            Some(b) if !b.is_empty() && b != ns => {
                return Err(KubeError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => obj["metadata"]["namespace"] = json!(ns),
        }
    }
    Ok(obj)
}

/// Refuses bodies that are not objects or whose metadata is not an object.
fn shaped(obj: &Value) -> KResult<()> {
    if !obj.is_object() {
        return Err(KubeError::bad_request("the body of the request must be an object"));
    }
    if !(obj["metadata"].is_object() || obj["metadata"].is_null()) {
        return Err(KubeError::bad_request("metadata must be an object"));
    }
    Ok(())
}

/// Everything of an object but bookkeeping, for no-op detection.
fn essence(v: &Value) -> Value {
    let mut x = v.clone();
    if let Some(m) = x["metadata"].as_object_mut() {
        m.remove("resourceVersion");
        if let Some(Value::Array(mf)) = m.get_mut("managedFields") {
            for e in mf {
                if let Some(em) = e.as_object_mut() {
                    em.remove("time");
                }
            }
        }
    }
    x
}

fn spec_changed(old: &Value, new: &Value, def: &ResourceDef) -> bool {
    let strip = |v: &Value| {
        let mut x = v.clone();
        if let Some(m) = x.as_object_mut() {
            m.remove("metadata");
            if def.status {
                m.remove("status");
            }
        }
        x
    };
    strip(old) != strip(new)
}

/// Replaces an object with what `f` makes of the current one; no-ops keep the RV.
#[allow(clippy::too_many_arguments)]
fn update(
    s: &KubeServer,
    def: &ResourceDef,
    version: &str,
    ns: &str,
    name: &str,
    sub: Option<&str>,
    dry: bool,
    manager: &str,
    f: impl FnOnce(&Value) -> KResult<Value>,
) -> KResult<(StatusCode, Value)> {
    let mut inner = s.lock();
    let key = key_of(def, ns, name);
    let old = inner.objects.get(&key).cloned().ok_or_else(|| KubeError::not_found(&def.group, &def.plural, name))?;
    let mut new = f(&old)?;
    shaped(&new)?;
    if let Some(rv) = new["metadata"]["resourceVersion"].as_str()
        && rv != old["metadata"]["resourceVersion"].as_str().unwrap_or("")
    {
        return Err(KubeError::conflict(&def.group, &def.plural, name));
    }
    for k in ["uid", "creationTimestamp", "generation", "deletionTimestamp"] {
        match old["metadata"].get(k) {
            Some(v) => new["metadata"][k] = v.clone(),
            None => {
                if let Some(m) = new["metadata"].as_object_mut() {
                    m.remove(k);
                }
            }
        }
    }
    match sub {
        Some("status") => {
            let status = new["status"].clone();
            new = old.clone();
            new["status"] = status;
        }
        Some("finalize") if def.plural == "namespaces" => {
            let fin = new["spec"]["finalizers"].clone();
            new = old.clone();
            new["spec"]["finalizers"] = fin;
        }
        Some(_) => return Err(KubeError::no_resource()),
        None if def.status => match old.get("status") {
            Some(st) => new["status"] = st.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        },
        None => {}
    }
    if def.group.is_empty() && def.plural == "secrets" && old["type"] != new["type"] && !new["type"].is_null() {
        return Err(KubeError::invalid("Secret", name, "type", "Invalid value: field is immutable"));
    }
    default_object(s, &inner, def, &mut new)?;
    if new["metadata"].get("managedFields") == old["metadata"].get("managedFields")
        || new["metadata"].get("managedFields").is_none()
    {
        let mf = old["metadata"]["managedFields"].clone();
        new["metadata"]["managedFields"] = mf;
        if new["metadata"]["managedFields"].is_null()
            && let Some(m) = new["metadata"].as_object_mut()
        {
            m.remove("managedFields");
        }
        ssa::record_update(Some(&old), &mut new, manager, &def.api_version(version), &now(), def.status);
    }
    if def.generation && spec_changed(&old, &new, def) {
        new["metadata"]["generation"] = json!(old["metadata"]["generation"].as_i64().unwrap_or(1) + 1);
    }
    if def.plural == "customresourcedefinitions" {
        establish_crd(&mut inner, &mut new)?;
    }
    new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
    if essence(&new) == essence(&old) {
        return Ok((StatusCode::OK, served(def, version, old)));
    }
    if dry {
        return Ok((StatusCode::OK, served(def, version, new)));
    }
    let stored = persist(s, &mut inner, key, new, "MODIFIED");
    if def.plural == "namespaces" {
        maybe_remove_namespace(s, &mut inner, name);
    }
    Ok((StatusCode::OK, served(def, version, stored)))
}

/// RFC 7386 merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().expect("made an object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn pointer_parts(p: &str) -> Vec<String> {
    p.split('/').skip(1).map(|s| s.replace("~1", "/").replace("~0", "~")).collect()
}

/// RFC 6902 JSON patch (add, remove, replace, test, copy, move).
fn json_patch(doc: &mut Value, ops: &Value) -> KResult<()> {
    let bad = |m: String| KubeError::new(422, "Invalid", m);
    for op in ops.as_array().ok_or_else(|| KubeError::bad_request("a JSON patch must be a list of operations"))? {
        let path = pointer_parts(op["path"].as_str().unwrap_or(""));
        let (parent_path, last) = path.split_at(path.len().saturating_sub(1));
        let last = last.first().cloned().unwrap_or_default();
        let value = op["value"].clone();
        let parent = parent_path.iter().try_fold(&mut *doc, |cur, k| match cur {
            Value::Object(m) => m.get_mut(k),
            Value::Array(a) => k.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        });
        let Some(parent) = parent else { return Err(bad(format!("the path {:?} does not exist", op["path"]))) };
        match op["op"].as_str().unwrap_or("") {
            "add" | "replace" => match parent {
                Value::Object(m) => {
                    m.insert(last, value);
                }
                Value::Array(a) if last == "-" => a.push(value),
                Value::Array(a) => {
                    let i: usize = last.parse().map_err(|_| bad("bad array index".into()))?;
                    if op["op"] == "add" && i <= a.len() {
                        a.insert(i, value);
                    } else if i < a.len() {
                        a[i] = value;
                    } else {
                        return Err(bad("array index out of range".into()));
                    }
                }
                _ => return Err(bad("cannot add to a scalar".into())),
            },
            "remove" => match parent {
                Value::Object(m) => {
                    m.remove(&last).ok_or_else(|| bad(format!("unable to remove nonexistent key: {last}")))?;
                }
                Value::Array(a) => {
                    let i: usize = last.parse().map_err(|_| bad("bad array index".into()))?;
                    if i < a.len() {
                        a.remove(i);
                    }
                }
                _ => {}
            },
            "test" => {
                let cur = match parent {
                    Value::Object(m) => m.get(&last).cloned(),
                    Value::Array(a) => last.parse::<usize>().ok().and_then(|i| a.get(i).cloned()),
                    _ => None,
                };
                if cur.as_ref() != Some(&value) {
                    return Err(bad(format!("testing value {} failed", op["path"])));
                }
            }
            other => {
                return Err(KubeError::bad_request(format!(
                    "the JSON patch operation {other:?} is not supported by the simulator"
                )));
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn patch(
    s: &KubeServer,
    def: &ResourceDef,
    version: &str,
    ns: &str,
    name: &str,
    sub: Option<&str>,
    q: &BTreeMap<String, String>,
    h: &HeaderMap,
    body: &[u8],
    dry: bool,
    manager: &str,
) -> KResult<Response> {
    let ct = h.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let force = q.get("force").is_some_and(|f| f == "true");
    if ct.starts_with("application/apply-patch") {
        let Some(manager) = q.get("fieldManager").filter(|m| !m.is_empty()) else {
            return Err(KubeError::new(422, "Invalid", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch")
                .details(json!({"group": "meta.k8s.io", "kind": "PatchOptions", "causes": [{"reason": "FieldValueRequired", "message": "Required value: is required for apply patch", "field": "fieldManager"}]})));
        };
        let applied: Value = serde_json::from_slice(body).map_err(|_| {
            KubeError::bad_request("the simulator accepts apply bodies in JSON (as kubectl and kube send them)")
        })?;
        return server_side_apply(s, def, version, ns, name, applied, manager, force, dry);
    }
    if force {
        return Err(KubeError::new(
            422,
            "Invalid",
            "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch",
        ));
    }
    let p: Value = serde_json::from_slice(body)
        .map_err(|e| KubeError::bad_request(format!("the body of the request could not be decoded: {e}")))?;
    let kind = if ct.starts_with("application/merge-patch+json") {
        "merge"
    } else if ct.starts_with("application/strategic-merge-patch+json") {
        if !def.builtin {
            return Err(KubeError::new(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
            ));
        }
        "merge"
    } else if ct.starts_with("application/json-patch+json") {
        "json"
    } else {
        return Err(KubeError::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format: {ct}"),
        ));
    };
    let (code, v) = update(s, def, version, ns, name, sub, dry, manager, |old| {
        let mut new = old.clone();
        if kind == "json" {
            json_patch(&mut new, &p)?;
        } else {
            merge_patch(&mut new, &p);
            shaped(&new)?;
            if p["metadata"]["resourceVersion"].is_null() {
                new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
            }
        }
        if let Some(m) = new["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
        Ok(new)
    })?;
    Ok(json_response(code, &v, "application/json"))
}

#[allow(clippy::too_many_arguments)]
fn server_side_apply(
    s: &KubeServer,
    def: &ResourceDef,
    version: &str,
    ns: &str,
    name: &str,
    applied: Value,
    manager: &str,
    force: bool,
    dry: bool,
) -> KResult<Response> {
    if applied["metadata"].get("managedFields").is_some() {
        return Err(KubeError::bad_request("metadata.managedFields must be nil"));
    }
    let applied = check_body(def, version, applied, Some(name), ns)?;
    let api_version = def.api_version(version);
    let exists = s.lock().objects.contains_key(&key_of(def, ns, name));
    if !exists {
        let mut obj = ssa::apply(None, &applied, manager, false, &api_version, &now(), def.status)
            .map_err(|_| KubeError::bad_request("apply failed"))?;
        obj["apiVersion"] = json!(api_version);
        obj["kind"] = json!(def.kind);
        obj["metadata"]["name"] = json!(name);
        if def.namespaced {
            obj["metadata"]["namespace"] = json!(ns);
        }
        let mut inner = s.lock();
        if def.plural == "customresourcedefinitions" {
            establish_crd(&mut inner, &mut obj)?;
        }
        match create_object(s, &mut inner, def, obj, manager, dry) {
            Ok(created) => {
                return Ok(json_response(StatusCode::CREATED, &served(def, version, created), "application/json"));
            }
            // Created by a concurrent request in between: apply over it instead.
            Err(e) if e.reason == "AlreadyExists" => {}
            Err(e) => return Err(e),
        }
    }
    // The merge runs under the same lock as the write, so concurrent applies never see a stale object.
    let merge = |live: &Value| -> KResult<Value> {
        // kubectl upgrading from client-side apply takes over what its annotation lists.
        let force = force
            || (manager == "kubectl"
                && live["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].is_string());
        ssa::apply(Some(live), &applied, manager, force, &api_version, &now(), def.status).map_err(|conflicts| {
            let (message, causes) = ssa::conflict_message(&conflicts);
            KubeError::new(409, "Conflict", message)
                .details(json!({"name": name, "kind": def.plural, "causes": causes}))
        })
    };
    let (code, v) = update(s, def, version, ns, name, None, dry, manager, merge)?;
    Ok(json_response(code, &v, "application/json"))
}

fn delete(
    s: &Arc<KubeServer>,
    def: &ResourceDef,
    version: &str,
    ns: &str,
    name: &str,
    body: &[u8],
    dry: bool,
) -> KResult<Response> {
    let opts: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let dry = dry || opts["dryRun"].as_array().is_some_and(|d| d.iter().any(|x| x == "All"));
    let mut inner = s.lock();
    let key = key_of(def, ns, name);
    let old = inner.objects.get(&key).cloned().ok_or_else(|| KubeError::not_found(&def.group, &def.plural, name))?;
    if let Some(uid) = opts["preconditions"]["uid"].as_str()
        && old["metadata"]["uid"].as_str() != Some(uid)
    {
        return Err(KubeError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                def.plural,
                old["metadata"]["uid"].as_str().unwrap_or("")
            ),
        ));
    }
    if dry {
        return Ok(ok(served(def, version, old)));
    }
    if def.group.is_empty() && def.plural == "namespaces" {
        if old["status"]["phase"] != "Terminating" {
            let mut t = old.clone();
            t["metadata"]["deletionTimestamp"] = json!(now());
            t["status"]["phase"] = json!("Terminating");
            let stored = persist(s, &mut inner, key, t, "MODIFIED");
            match s.namespace_finalize {
                None => finalize_namespace(s, &mut inner, name),
                Some(after) => {
                    drop(inner);
                    let server = s.clone();
                    let ns_name = name.to_string();
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        finalize_namespace(&server, &mut server.lock(), &ns_name);
                    });
                }
            }
            return Ok(ok(served(def, version, stored)));
        }
        return Ok(ok(served(def, version, old)));
    }
    let gone = persist(s, &mut inner, key, old.clone(), "DELETED");
    if def.plural == "customresourcedefinitions" {
        let group = old["spec"]["group"].as_str().unwrap_or("").to_string();
        let plural = old["spec"]["names"]["plural"].as_str().unwrap_or("").to_string();
        let crs: Vec<Key> = inner.objects.keys().filter(|k| k.0 == group && k.1 == plural).cloned().collect();
        for k in crs {
            if let Some(o) = inner.objects.get(&k).cloned() {
                persist(s, &mut inner, k, o, "DELETED");
            }
        }
        inner.defs.retain(|d| !(d.group == group && d.plural == plural));
    }
    if def.group.is_empty() && def.plural == "serviceaccounts" {
        // Deleting an account deletes its token Secrets and revokes its tokens.
        let secrets: Vec<Key> = inner
            .objects
            .iter()
            .filter(|(k, v)| {
                k.1 == "secrets"
                    && k.2 == ns
                    && v["type"] == "kubernetes.io/service-account-token"
                    && v["metadata"]["annotations"]["kubernetes.io/service-account.name"] == name
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in secrets {
            if let Some(o) = inner.objects.get(&k).cloned() {
                persist(s, &mut inner, k, o, "DELETED");
            }
        }
        inner.tokens.retain(|_, (tns, tsa)| !(tns == ns && tsa == name));
    }
    if def.group.is_empty()
        && def.plural == "secrets"
        && old["type"] == "kubernetes.io/service-account-token"
        && let Some(t) =
            old["data"]["token"].as_str().and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok())
    {
        inner.tokens.remove(&String::from_utf8_lossy(&t).into_owned());
    }
    if def.builtin && matches!(def.plural.as_str(), "serviceaccounts" | "pods") {
        return Ok(ok(served(def, version, gone)));
    }
    let mut d = json!({"name": name, "kind": def.plural, "uid": old["metadata"]["uid"]});
    if !def.group.is_empty() {
        d["group"] = json!(def.group);
    }
    Ok(ok(json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": d})))
}

/// The namespace controller: deletes the content of a terminating namespace, then the namespace.
fn finalize_namespace(s: &KubeServer, inner: &mut Inner, ns: &str) {
    let content: Vec<Key> = inner.objects.keys().filter(|k| k.2 == ns).cloned().collect();
    for k in content {
        if let Some(o) = inner.objects.get(&k).cloned() {
            persist(s, inner, k, o, "DELETED");
        }
    }
    inner.tokens.retain(|_, (tns, _)| tns != ns);
    let key = (String::new(), "namespaces".to_string(), String::new(), ns.to_string());
    if let Some(mut o) = inner.objects.get(&key).cloned() {
        o["spec"]["finalizers"] = json!([]);
        let o = persist(s, inner, key.clone(), o, "MODIFIED");
        persist(s, inner, key, o, "DELETED");
    }
}

fn maybe_remove_namespace(s: &KubeServer, inner: &mut Inner, ns: &str) {
    let key = (String::new(), "namespaces".to_string(), String::new(), ns.to_string());
    if let Some(o) = inner.objects.get(&key).cloned() {
        let finalizers_empty = o["spec"]["finalizers"].as_array().is_none_or(Vec::is_empty);
        if o["status"]["phase"] == "Terminating" && finalizers_empty {
            persist(s, inner, key, o, "DELETED");
        }
    }
}

fn token_request(s: &KubeServer, ns: &str, sa: &str, h: &HeaderMap, body: &[u8]) -> KResult<Response> {
    let req = decode_body(h, body)?;
    let mut inner = s.lock();
    if !inner.objects.contains_key(&(String::new(), "serviceaccounts".to_string(), ns.to_string(), sa.to_string())) {
        return Err(KubeError::not_found("", "serviceaccounts", sa));
    }
    let secs = req["spec"]["expirationSeconds"].as_i64().unwrap_or(3600);
    if secs < 600 {
        return Err(KubeError::invalid(
            "TokenRequest",
            sa,
            "spec.expirationSeconds",
            "Invalid value: may not specify a duration less than 10 minutes",
        ));
    }
    let token = mint_token(&mut inner, ns, sa);
    let exp = crate::support::unix_secs() + secs;
    let mut out = req.clone();
    out["apiVersion"] = json!("authentication.k8s.io/v1");
    out["kind"] = json!("TokenRequest");
    out["metadata"] = json!({"name": sa, "namespace": ns, "creationTimestamp": null});
    out["spec"]["expirationSeconds"] = json!(secs);
    out["status"] = json!({"token": token, "expirationTimestamp": crate::support::rfc3339(exp)});
    Ok(json_response(StatusCode::CREATED, &out, "application/json"))
}

// ---------- lists, tables, watch ----------

fn selectors(def: &ResourceDef, q: &BTreeMap<String, String>) -> KResult<(LabelSelector, FieldSelector)> {
    let ls = LabelSelector::parse(q.get("labelSelector").map_or("", String::as_str))?;
    let fs = FieldSelector::parse(q.get("fieldSelector").map_or("", String::as_str), &def.field_selectors)?;
    Ok((ls, fs))
}

fn matches(def: &ResourceDef, ns: &str, k: &Key, v: &Value, ls: &LabelSelector, fs: &FieldSelector) -> bool {
    k.0 == def.group && k.1 == def.plural && (ns.is_empty() || k.2 == ns) && ls.matches(v) && fs.matches(v)
}

fn list(
    s: &KubeServer,
    def: &ResourceDef,
    version: &str,
    ns: &str,
    q: &BTreeMap<String, String>,
    table: bool,
) -> KResult<Response> {
    let (ls, fs) = selectors(def, q)?;
    let inner = s.lock();
    let items: Vec<Value> = inner
        .objects
        .iter()
        .filter(|(k, v)| matches(def, ns, k, v, &ls, &fs))
        .map(|(_, v)| served(def, version, v.clone()))
        .collect();
    let rv = inner.rv.to_string();
    drop(inner);
    if table {
        let mut t = to_table(def, &items, true);
        t["metadata"]["resourceVersion"] = json!(rv);
        return Ok(json_response(StatusCode::OK, &t, "application/json;as=Table;v=v1;g=meta.k8s.io"));
    }
    let items: Vec<Value> = items
        .into_iter()
        .map(|mut i| {
            if def.builtin
                && let Some(m) = i.as_object_mut()
            {
                m.remove("apiVersion");
                m.remove("kind");
            }
            i
        })
        .collect();
    Ok(ok(
        json!({"kind": def.list_kind(), "apiVersion": def.api_version(version), "metadata": {"resourceVersion": rv}, "items": items}),
    ))
}

fn age(ts: &str) -> String {
    let secs = crate::support::parse_rfc3339(ts).map_or(0, |t| (crate::support::unix_secs() - t).max(0));
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn cell(obj: &Value, ty: &str, path: &str) -> Value {
    match path {
        "#data" => json!(obj["data"].as_object().map_or(0, Map::len)),
        "#secrets" => json!(obj["secrets"].as_array().map_or(0, Vec::len)),
        "ready" => {
            let cs = obj["status"]["containerStatuses"].as_array().cloned().unwrap_or_default();
            json!(format!(
                "{}/{}",
                cs.iter().filter(|c| c["ready"] == true).count(),
                obj["spec"]["containers"].as_array().map_or(0, Vec::len)
            ))
        }
        "restarts" => json!(0),
        p => {
            let v = p.trim_start_matches('.').split('.').filter(|x| !x.is_empty()).fold(obj, |cur, k| &cur[k]);
            match (ty, v) {
                ("date", Value::String(t)) => json!(age(t)),
                (_, Value::Null) => json!("<none>"),
                (_, x) => x.clone(),
            }
        }
    }
}

/// A Table of objects, with each row's metadata as a PartialObjectMetadata.
fn to_table(def: &ResourceDef, objs: &[Value], with_columns: bool) -> Value {
    let mut cols = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
    ];
    for (n, t, _) in &def.columns {
        let ty = if t == "date" { "string" } else { t.as_str() };
        cols.push(json!({"name": n, "type": ty, "format": "", "description": n, "priority": 0}));
    }
    cols.push(
        json!({"name": "Age", "type": "string", "format": "", "description": "CreationTimestamp", "priority": 0}),
    );
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let mut cells = vec![o["metadata"]["name"].clone()];
            for (_, t, p) in &def.columns {
                cells.push(cell(o, t, p));
            }
            cells.push(json!(age(o["metadata"]["creationTimestamp"].as_str().unwrap_or(""))));
            let mut meta = o["metadata"].clone();
            if let Some(m) = meta.as_object_mut() {
                m.remove("managedFields");
            }
            json!({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta}})
        })
        .collect();
    let mut t = json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {}, "rows": rows});
    if with_columns {
        t["columnDefinitions"] = json!(cols);
    }
    t
}

fn watch(
    s: &Arc<KubeServer>,
    def: &ResourceDef,
    version: &str,
    ns: &str,
    q: &BTreeMap<String, String>,
    table: bool,
) -> KResult<Response> {
    let (ls, fs) = selectors(def, q)?;
    let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Bytes, std::io::Error>>();
    let mut live = s.events.subscribe();
    let line = |kind: &str, obj: &Value, first: bool| -> Bytes {
        let object = if table { to_table(def, std::slice::from_ref(obj), first) } else { obj.clone() };
        Bytes::from(format!("{}\n", json!({"type": kind, "object": object})))
    };
    let from: Option<u64> = q.get("resourceVersion").and_then(|r| r.parse().ok()).filter(|r| *r > 0);
    let mut last_rv;
    {
        let inner = s.lock();
        last_rv = inner.rv;
        let mut first = true;
        match from {
            None => {
                for (k, v) in inner.objects.iter().filter(|(k, v)| matches(def, ns, k, v, &ls, &fs)) {
                    let _ = k;
                    let _ = tx.unbounded_send(Ok(line("ADDED", &served(def, version, v.clone()), first)));
                    first = false;
                }
            }
            Some(rv) => {
                let oldest = inner.history.front().map_or(inner.rv, |e| e.rv.saturating_sub(1));
                if rv < oldest {
                    let st = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": format!("too old resource version: {rv} ({oldest})"), "reason": "Expired", "code": 410});
                    let _ = tx.unbounded_send(Ok(Bytes::from(format!("{}\n", json!({"type": "ERROR", "object": st})))));
                    return Ok(watch_response(rx, table));
                }
                for e in inner.history.iter().filter(|e| e.rv > rv && matches(def, ns, &e.key, &e.object, &ls, &fs)) {
                    let _ = tx.unbounded_send(Ok(line(e.kind, &served(def, version, e.object.clone()), first)));
                    first = false;
                }
            }
        }
    }
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let def = def.clone();
    let ns = ns.to_string();
    let version = version.to_string();
    tokio::spawn(async move {
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut first = false;
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                ev = live.recv() => match ev {
                    Ok(e) if e.rv > last_rv && matches(&def, &ns, &e.key, &e.object, &ls, &fs) => {
                        last_rv = e.rv;
                        let object = served(&def, &version, e.object.clone());
                        let object = if table { to_table(&def, std::slice::from_ref(&object), first) } else { object };
                        first = false;
                        if tx.unbounded_send(Ok(Bytes::from(format!("{}\n", json!({"type": e.kind, "object": object}))))).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => break,
                },
            }
        }
    });
    Ok(watch_response(rx, table))
}

fn watch_response(
    rx: futures::channel::mpsc::UnboundedReceiver<Result<Bytes, std::io::Error>>,
    table: bool,
) -> Response {
    let mut r = Response::new(Body::from_stream(rx));
    let ct = if table { "application/json;as=Table;v=v1;g=meta.k8s.io" } else { "application/json" };
    if let Ok(v) = ct.parse() {
        r.headers_mut().insert("content-type", v);
    }
    r
}
