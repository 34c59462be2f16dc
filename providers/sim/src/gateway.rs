//! The fleet's Connect Gateway (`connectgateway.googleapis.com`): kubeconfigs generated for a
//! membership, and the gateway itself, which forwards Kubernetes API requests with a Google
//! access token to the member cluster's API server (as the real one does through GKE, however
//! private the cluster). Also the two Resource Manager calls gcloud makes first.
//!
//! What gcloud 528 sends for `gcloud container fleet memberships get-credentials M --location L`
//! (server-side generation, its default; captured against the simulator's request log):
//! 1. `GET cloudresourcemanager v1/projects/P` — the project number;
//! 2. `POST cloudresourcemanager v1/projects/P:testIamPermissions` with
//!    `{"permissions": ["gkehub.gateway.get"]}`, refusing to go on unless all are granted;
//! 3. `GET connectgateway v1/projects/NUMBER/locations/L/memberships/M:generateCredentials`
//!    (`forceUseAgent`, `version`, `kubernetesNamespace`, `operatingSystem` in the query), whose
//!    `kubeconfig` (bytes, base64) it merges as it is and makes current.
//!
//! The gateway listens on its own TLS listener (`https://localhost:PORT`, under the simulator's
//! public root), at `/v1/projects/NUMBER/locations/L/gkeMemberships/M/...` (`memberships/` for
//! attached clusters, accepted too).

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::errors::{ApiError, ApiResult, Style};
use crate::kube::{KubeServer, Via};
use crate::state::Shared;

type S = State<Arc<Shared>>;
const R: Style = Style::Rpc;

/// Resource Manager's project get and testIamPermissions, and the gateway's
/// generateCredentials, under `/cloudresourcemanager/v1` and `/connectgateway/v1`; `gateway` is
/// the gateway's base URL (`https://localhost:PORT`).
pub fn routes(gateway: String) -> Router<Arc<Shared>> {
    Router::new().route("/cloudresourcemanager/v1/projects/{project}", get(get_project).post(project_method)).route(
        "/connectgateway/v1/projects/{project}/locations/{location}/memberships/{membership}",
        get(move |s: S, p: Path<(String, String, String)>, q: Query<std::collections::HashMap<String, String>>| {
            generate_credentials(s, p, q, gateway.clone())
        }),
    )
}

fn unknown_project(p: &str) -> ApiError {
    // Resource Manager answers a project the caller cannot see with 403, existing or not.
    ApiError::forbidden(R, format!("The caller does not have permission (or project {p} does not exist)"))
}

/// The project id and number of `p` (either), if the world holds it.
fn project_ids(s: &Shared, p: &str) -> Option<(String, String)> {
    let st = s.store_of(p)?.lock().unwrap_or_else(|e| e.into_inner());
    Some((st.project.clone(), st.project_number.clone()))
}

async fn get_project(State(s): S, Path(p): Path<String>) -> ApiResult<Json<Value>> {
    let (id, number) = project_ids(&s, &p).ok_or_else(|| unknown_project(&p))?;
    Ok(Json(json!({"projectNumber": number, "projectId": id, "lifecycleState": "ACTIVE", "name": id,
                   "createTime": "2024-01-01T00:00:00.000Z"})))
}

/// `POST projects/P:testIamPermissions`: the simulator's token holds every permission.
async fn project_method(State(s): S, Path(p): Path<String>, Json(body): Json<Value>) -> ApiResult<Json<Value>> {
    let Some((p, "testIamPermissions")) = p.split_once(':') else {
        return Err(ApiError::not_found(R, format!("Method not found: POST /cloudresourcemanager/v1/projects/{p}")));
    };
    project_ids(&s, p).ok_or_else(|| unknown_project(p))?;
    let asked = body["permissions"].as_array().cloned().unwrap_or_default();
    Ok(Json(if asked.is_empty() { json!({}) } else { json!({"permissions": asked}) }))
}

fn membership_not_found(p: &str, l: &str, m: &str) -> ApiError {
    ApiError::not_found(R, format!("Membership projects/{p}/locations/{l}/memberships/{m} not found"))
}

/// `GET .../memberships/M:generateCredentials`: a kubeconfig with one context,
/// `connectgateway_PROJECT_LOCATION_M` (`_ns-NS` with `kubernetesNamespace`), whose server is
/// the gateway's URL of the membership and whose user runs `gke-gcloud-auth-plugin`.
async fn generate_credentials(
    State(s): S,
    Path((p, l, m)): Path<(String, String, String)>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    gateway: String,
) -> ApiResult<Json<Value>> {
    let Some((m, "generateCredentials")) = m.split_once(':') else {
        return Err(ApiError::not_found(R, format!("Method not found: GET {m}")));
    };
    let (id, number) = project_ids(&s, &p).ok_or_else(|| unknown_project(&p))?;
    let member = member_cluster(&s, &p, &l, m)?;
    let collection = if member.is_some() { "gkeMemberships" } else { "memberships" };
    let server = format!("{gateway}/v1/projects/{number}/locations/{l}/{collection}/{m}");
    let mut context = format!("connectgateway_{id}_{l}_{m}");
    let ns = q.get("kubernetesNamespace").filter(|n| !n.is_empty());
    let label = |n: &str| {
        n.len() <= 63
            && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !n.starts_with('-')
            && !n.ends_with('-')
    };
    if let Some(n) = ns.filter(|n| !label(n)) {
        return Err(ApiError::invalid(R, format!("kubernetes_namespace {n:?} is not a valid namespace name")));
    }
    let ns_line = ns.map(|n| format!("    namespace: {n}\n")).unwrap_or_default();
    if let Some(n) = ns {
        context.push_str(&format!("_ns-{n}"));
    }
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: {server}\n  name: {context}\ncontexts:\n- context:\n    cluster: {context}\n{ns_line}    user: {context}\n  name: {context}\ncurrent-context: {context}\nusers:\n- name: {context}\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: gke-gcloud-auth-plugin\n      installHint: Install gke-gcloud-auth-plugin for use with kubectl by following https://cloud.google.com/kubernetes-engine/docs/how-to/cluster-access-for-kubectl#install_plugin\n      provideClusterInfo: true\n      interactiveMode: IfAvailable\n"
    );
    Ok(Json(json!({
        "kubeconfig": base64::engine::general_purpose::STANDARD.encode(kubeconfig),
        "endpoint": server,
    })))
}

/// The GKE cluster (its world index) of membership `l/m` of project `p`; None for a membership
/// of something else. A missing membership is NotFound.
fn member_cluster(s: &Shared, p: &str, l: &str, m: &str) -> ApiResult<Option<usize>> {
    let store = s.store_of(p).ok_or_else(|| unknown_project(p))?;
    let st = store.lock().unwrap_or_else(|e| e.into_inner());
    let membership = st.memberships.get(&format!("{l}/{m}")).ok_or_else(|| membership_not_found(p, l, m))?;
    Ok(s.opts.world.cluster_of_link(membership["endpoint"]["gkeCluster"]["resourceLink"].as_str().unwrap_or_default()))
}

/// Serves the gateway on `listener` (TLS under `acceptor`) until the runtime stops.
pub fn serve(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
    kube: Vec<Arc<KubeServer>>,
) {
    let kube = Arc::new(kube);
    let app = Router::new().fallback(move |req: Request| {
        let (shared, kube) = (shared.clone(), kube.clone());
        async move { forward(&shared, &kube, req).await }
    });
    crate::kube::serve_tls(listener, acceptor, app);
}

/// One request through the gateway: a Google access token, a membership of a GKE cluster that
/// still exists, then the cluster's own answer.
async fn forward(s: &Shared, kube: &[Arc<KubeServer>], mut req: Request) -> Response {
    let path = req.uri().path().to_string();
    let segs: Vec<&str> = path.splitn(9, '/').collect();
    // ["", "v1", "projects", P, "locations", L, "gkeMemberships"|"memberships", M, rest]
    let (p, l, m) = match segs.as_slice() {
        ["", "v1", "projects", p, "locations", l, "gkeMemberships" | "memberships", m, ..] => (*p, *l, *m),
        _ => {
            return ApiError::not_found(R, format!("The requested URL {path} was not found on this server."))
                .into_response();
        }
    };
    let token =
        req.headers().get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if !token.is_some_and(|t| s.tokens.lock().unwrap_or_else(|e| e.into_inner()).contains(t.trim())) {
        return ApiError::unauthenticated(R).into_response();
    }
    let index = match member_cluster(s, p, l, m) {
        Ok(Some(i)) => i,
        Ok(None) => return ApiError::invalid(R, format!("membership {m} is not a GKE cluster's")).into_response(),
        Err(e) => return e.into_response(),
    };
    let spec = &s.opts.world.clusters[index];
    let exists = s.store_of(s.opts.world.project_of(spec)).is_some_and(|st| {
        st.lock().unwrap_or_else(|e| e.into_inner()).clusters.contains_key(&format!("{}/{}", spec.location, spec.name))
    });
    let Some(server) = kube.get(index).filter(|_| exists) else {
        return (StatusCode::BAD_GATEWAY, format!("cluster of membership {m} is not reachable: it no longer exists"))
            .into_response();
    };
    let rest = segs.get(8).map_or_else(|| "/".to_string(), |r| format!("/{r}"));
    let target = match req.uri().query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest,
    };
    match target.parse::<Uri>() {
        Ok(uri) => *req.uri_mut() = uri,
        Err(e) => return ApiError::invalid(R, format!("bad path: {e}")).into_response(),
    }
    server.forward(req, Via::Gateway).await
}
