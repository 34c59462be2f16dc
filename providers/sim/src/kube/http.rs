//! The HTTP surface of a simulated API server: authentication, latency, injected faults and the
//! request log around every request, and the routing of each path to its concern (discovery,
//! objects, lists and watches, patches, the token controller).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::controllers::{access_review, establish_crd, token_request, token_review, user_of};
use super::discovery::{discovery_root, openapi_doc, openapi_index, resource_list};
use super::istio;
use super::lists::{list, to_table, watch};
use super::objects::{check_body, create_object, delete, update};
use super::patch::patch;
use super::resources::ResourceDef;
use super::state::{KubeServer, VERSION, Via, find_def, key_of, served};
use super::status::{KResult, KubeError};
use super::wire::{accepts, decode_body, json_response, ok, query_map};
use crate::faults::Fault;

type S = State<Arc<KubeServer>>;

/// The router of one API server.
pub fn router(s: Arc<KubeServer>) -> Router {
    Router::new().fallback(handle).with_state(s)
}

async fn handle(
    State(s): S,
    via: Option<axum::Extension<Via>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let token = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let user = if path == "/version" { None } else { token.and_then(|t| user_of(&s, t)) };
    let r = if path == "/version" {
        ok(
            json!({"major": VERSION.0, "minor": VERSION.1, "gitVersion": VERSION.2, "gitCommit": "meshform-sim", "gitTreeState": "clean",
                  "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23", "compiler": "gc", "platform": "linux/amd64"}),
        )
    } else if let Some(user) = &user {
        if !s.latency.is_zero() {
            tokio::time::sleep(s.latency).await;
        }
        let target = uri.path_and_query().map_or(path.as_str(), |pq| pq.as_str());
        // A Multi Cluster Ingress read finds what the controller made of the fleet and the
        // addresses as they are now (it watches Google Cloud too, not only this cluster).
        if path.contains("/multiclusteringresses")
            && let Some(hook) = s.outside.get()
        {
            hook(&s);
        }
        match s.faults.draw(method.as_str(), target) {
            Some(Fault::RateLimited) => {
                KubeError::too_many_requests(s.retry_after_secs).retry_after(s.retry_after_secs)
            }
            Some(Fault::Unavailable | Fault::UnavailableAfter) => {
                KubeError::unavailable().retry_after(s.retry_after_secs)
            }
            None => route(&s, user, &method, &uri, &headers, body).await.unwrap_or_else(IntoResponse::into_response),
        }
    } else {
        json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "Unauthorized", "reason": "Unauthorized", "code": 401}),
            "application/json",
        )
    };
    // Controllers outside the cluster follow what changed.
    let dirty = std::mem::take(&mut s.lock().outside_dirty);
    if dirty && let Some(hook) = s.outside.get() {
        hook(&s);
    }
    let q = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    s.log.lock().unwrap_or_else(|e| e.into_inner()).push((
        method.to_string(),
        format!("{path}{q}"),
        r.status().as_u16(),
        std::time::Instant::now(),
        via.map_or(Via::Ip, |v| v.0),
    ));
    r
}

/// A request of `user` (name and groups, as its token authenticated), authorized, then routed.
async fn route(
    s: &Arc<KubeServer>,
    user: &(String, Vec<String>),
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> KResult<Response> {
    let path = uri.path().trim_end_matches('/');
    let segs: Vec<&str> = path.split('/').filter(|x| !x.is_empty()).collect();
    let q = query_map(uri);
    let call = |group, version, rest| Call { group, version, rest, method, q: &q, h: headers, body: &body };
    let watch = q.get("watch").is_some_and(|w| w == "true" || w == "1");
    if let Some(attributes) = super::rbac::attributes(method.as_str(), &segs, watch) {
        super::rbac::decide(&s.lock(), &user.0, &user.1, &attributes)
            .map_err(|why| KubeError::new(403, "Forbidden", why))?;
    }
    match segs.as_slice() {
        ["api"] => Ok(discovery_root(s, true, headers)),
        ["apis"] => Ok(discovery_root(s, false, headers)),
        ["api", "v1"] => resource_list(s, "", "v1"),
        ["apis", g, v] => resource_list(s, g, v),
        ["apis", "authentication.k8s.io", "v1", "tokenreviews"] if *method == Method::POST => {
            Ok(json_response(StatusCode::CREATED, &token_review(s, decode_body(headers, &body)?)?, "application/json"))
        }
        ["apis", "authorization.k8s.io", "v1", "subjectaccessreviews"] if *method == Method::POST => {
            Ok(json_response(StatusCode::CREATED, &access_review(s, decode_body(headers, &body)?)?, "application/json"))
        }
        ["openapi", "v3"] => Ok(openapi_index(s)),
        ["openapi", "v3", "api", "v1"] => Ok(openapi_doc(s, "", "v1")),
        ["openapi", "v3", "apis", g, v] => Ok(openapi_doc(s, g, v)),
        ["api", "v1", rest @ ..] => resource(s, &call("", "v1", rest)),
        ["apis", g, v, rest @ ..] => resource(s, &call(g, v, rest)),
        _ => Err(KubeError::no_resource()),
    }
}

/// A request to a kind's URL: `/api/v1/...` or `/apis/G/V/...`, `rest` after the version.
struct Call<'a> {
    group: &'a str,
    version: &'a str,
    rest: &'a [&'a str],
    method: &'a Method,
    q: &'a BTreeMap<String, String>,
    h: &'a HeaderMap,
    body: &'a [u8],
}

/// What the path after the version names: the kind, the namespace (empty: none or all), the
/// object and a subresource.
struct Target<'a> {
    def: ResourceDef,
    ns: &'a str,
    name: Option<&'a str>,
    sub: Option<&'a str>,
}

fn target<'a>(s: &KubeServer, c: &Call<'a>) -> KResult<Target<'a>> {
    let (ns, plural, name, sub) = match c.rest {
        ["namespaces", ns, plural, tail @ ..] if !matches!(*plural, "finalize" | "status") => {
            (Some(*ns), *plural, tail.first().copied(), tail.get(1).copied())
        }
        [plural, tail @ ..] => (None, *plural, tail.first().copied(), tail.get(1).copied()),
        [] => return Err(KubeError::no_resource()),
    };
    let def = find_def(s, c.group, c.version, plural)?;
    if def.namespaced != ns.is_some() && name.is_some() {
        return Err(KubeError::no_resource());
    }
    Ok(Target { def, ns: ns.unwrap_or(""), name, sub })
}

/// The field manager of a write: `fieldManager`, else the client's name from its User-Agent.
fn manager(c: &Call<'_>) -> String {
    c.q.get("fieldManager").cloned().unwrap_or_else(|| {
        c.h.get("user-agent")
            .and_then(|v| v.to_str().ok())
            .and_then(|u| u.split('/').next())
            .filter(|u| !u.is_empty())
            .unwrap_or("unknown")
            .to_string()
    })
}

fn resource(s: &Arc<KubeServer>, c: &Call<'_>) -> KResult<Response> {
    let t = target(s, c)?;
    let (def, ns, version) = (&t.def, t.ns, c.version);
    let dry = c.q.get("dryRun").is_some_and(|d| d == "All");
    let table = accepts(c.h, "as=Table");
    match (c.method.clone(), t.name, t.sub) {
        (Method::GET, None, _) if c.q.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            watch(s, def, version, ns, c.q, table)
        }
        (Method::GET, None, _) => {
            if istio::watches(def) {
                istio::observe_all(s, &mut s.lock(), ns);
            }
            list(s, def, version, ns, c.q, table)
        }
        (Method::POST, None, _) => post(s, c, &t, dry),
        (Method::GET, Some(n), sub @ (None | Some("status"))) => {
            let mut inner = s.lock();
            if istio::watches(def) {
                istio::observe(s, &mut inner, &key_of(def, ns, n));
            }
            let obj = inner
                .objects
                .get(&key_of(def, ns, n))
                .cloned()
                .ok_or_else(|| KubeError::not_found(&def.group, &def.plural, n))?;
            let obj = served(def, version, obj);
            Ok(if table && sub.is_none() { ok(to_table(def, &[obj], true)) } else { ok(obj) })
        }
        (Method::POST, Some(sa), Some("token")) if def.plural == "serviceaccounts" => {
            let out = token_request(s, ns, sa, decode_body(c.h, c.body)?)?;
            Ok(json_response(StatusCode::CREATED, &out, "application/json"))
        }
        (Method::PUT, Some(n), sub) => {
            let obj = check_body(def, version, decode_body(c.h, c.body)?, Some(n), ns)?;
            update(s, def, version, ns, n, sub, dry, &manager(c), |_old| Ok(obj))
                .map(|(code, v)| json_response(code, &v, "application/json"))
        }
        (Method::PATCH, Some(n), sub) => patch(s, def, version, ns, n, sub, c.q, c.h, c.body, dry, &manager(c)),
        (Method::DELETE, Some(n), None) => {
            let r = delete(s, def, version, ns, n, c.body, dry)?;
            if istio::watches(def) && !dry {
                istio::after_delete(s, &mut s.lock(), &key_of(def, ns, n));
            }
            Ok(r)
        }
        _ => Err(KubeError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource".to_string(),
        )),
    }
}

/// POST to a collection: a create (a CRD's kind is served from this request on).
fn post(s: &KubeServer, c: &Call<'_>, t: &Target<'_>, dry: bool) -> KResult<Response> {
    let def = &t.def;
    let mut obj = check_body(def, c.version, decode_body(c.h, c.body)?, None, t.ns)?;
    if def.namespaced {
        obj["metadata"]["namespace"] = json!(t.ns);
    }
    let mut inner = s.lock();
    if def.plural == "customresourcedefinitions" {
        establish_crd(&mut inner, &mut obj)?;
    }
    let created = create_object(s, &mut inner, def, obj, &manager(c), dry)?;
    Ok(json_response(StatusCode::CREATED, &served(def, c.version, created), "application/json"))
}
