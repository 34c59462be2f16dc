//! The running simulator: one HTTP listener on loopback for the Google Cloud APIs (path
//! prefixes `/compute/v1`, `/container/v1`, `/gkehub/v1`, `/serviceusage/v1`,
//! `/secretmanager/v1`, `/cloudresourcemanager/v1`, `/connectgateway/v1`, and Cloud Storage's
//! `/storage/v1`, `/upload`, `/resumable/upload` and `/download`), an OAuth2 token
//! endpoint, the compute batch endpoint, and the knobs: bearer tokens, latency, deterministic
//! faults (429 with Retry-After, or 503), operation polls, and a request log. It wires the
//! handlers' routes (`compute`, `container`, `hub`, `storage`, `secrets`, `gateway`) and starts the
//! clusters' API servers (`kube`: IP endpoints, DNS-based endpoints) and the Connect Gateway's own
//! TLS listener; they, in turn, know only `state` and the modules below it.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::certs::ClusterCa;
use crate::errors::{ApiError, Style};
use crate::faults::{Fault, Faults};
use crate::state::{LogEntry, Shared, SimOptions};
use crate::store::{ClusterAccess, Store};
use crate::world::{World, short_hash};

/// A running simulator.
pub struct Sim {
    /// Shared state (tests may inspect or change it).
    pub shared: Arc<Shared>,
    /// The API listener's address.
    pub addr: SocketAddr,
    /// The access token gcloud and meshform use.
    pub token: String,
    /// The seeded world.
    pub world: World,
    /// Each cluster's endpoints, CA and admin token.
    pub clusters: Vec<ClusterAccess>,
    /// Each cluster's Kubernetes API server, in world order.
    pub kube: Vec<Arc<crate::kube::KubeServer>>,
    /// The simulator's stand-in for the public web PKI: it signs the Connect Gateway's and the
    /// DNS-based endpoints' certificates (clients trust it through `SSL_CERT_FILE`).
    pub public_root: ClusterCa,
    /// The Connect Gateway's base URL, `https://localhost:PORT`.
    pub gateway_url: String,
    /// Closed endpoints' sockets, bound and not listening: their ports refuse connections.
    _closed: Vec<tokio::net::TcpSocket>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Sim {
    /// Starts a simulator on ephemeral loopback ports.
    pub async fn start(opts: SimOptions) -> Result<Sim, String> {
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("cannot listen: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let token = format!("sim-token-{}", short_hash(&format!("{addr}{:?}", std::time::SystemTime::now())));
        let tokens = Arc::new(Mutex::new(HashSet::from([token.clone()])));
        let public_root = ClusterCa::public_root()?;
        let (clusters, kube, closed) = start_clusters(&opts, &token, &tokens, &public_root)?;
        let (gateway, gateway_addr) = bind("127.0.0.1")?;
        let gateway_url = format!("https://localhost:{}", gateway_addr.port());
        let mut store = Store::seed(&opts.world, clusters.clone(), opts.lro_polls);
        store.lro_time = opts.clock.lro_time();
        store.controller_polls = opts.controller_polls;
        let shared = Arc::new(Shared {
            store: Mutex::new(store),
            service_stores: service_stores(&opts, &clusters),
            tokens,
            log: Mutex::new(Vec::new()),
            lose_replies: Default::default(),
            faults: Faults::new(opts.fault_rate, opts.seed, "gcp"),
            opts: opts.clone(),
            router: OnceLock::new(),
            on_mesh_active: OnceLock::new(),
        });
        let clusters_for_mesh = Arc::new(kube.clone());
        let _ = shared.on_mesh_active.set(Box::new(move |st, l, m| {
            crate::servicemesh::install(&clusters_for_mesh, st, l, m);
        }));
        for k in &kube {
            let _ = k.outside.set(crate::gke::hook(&shared, &kube));
        }
        let router = app(shared.clone(), kube.clone(), gateway_url.clone());
        let acceptor = crate::kube::tls_acceptor(&public_root, &[], &["localhost".into()])?;
        crate::gateway::serve(gateway, acceptor, shared.clone(), kube.clone());
        let _ = shared.router.set(router.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Sim {
            shared,
            addr,
            token,
            world: opts.world,
            clusters,
            kube,
            public_root,
            gateway_url,
            _closed: closed,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The OAuth2 token endpoint (a service-account key's `token_uri`).
    pub fn token_uri(&self) -> String {
        format!("{}/token", self.base_url())
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<LogEntry> {
        self.shared.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Forgets the request log.
    pub fn clear_log(&self) {
        self.shared.log.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Stops the listener.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A socket bound to an ephemeral port of `ip` (not listening yet: a closed endpoint keeps its
/// port, refusing connections, so that no later listener takes it), and its address.
fn bind_socket(ip: &str) -> Result<(tokio::net::TcpSocket, SocketAddr), String> {
    let addr: SocketAddr = format!("{ip}:0").parse().map_err(|e| format!("{ip}: {e}"))?;
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket.bind(addr).map_err(|e| format!("cannot listen on {ip}: {e}"))?;
    let a = socket.local_addr().map_err(|e| e.to_string())?;
    Ok((socket, a))
}

/// A listener on an ephemeral port of `ip`, and its address.
fn bind(ip: &str) -> Result<(TcpListener, SocketAddr), String> {
    let (socket, a) = bind_socket(ip)?;
    Ok((socket.listen(1024).map_err(|e| format!("cannot listen on {ip}: {e}"))?, a))
}

/// Each cluster's endpoints and API server, served: its public endpoint (unless disabled), its
/// private one (private clusters; closed to a runner outside the VPC) and its DNS-based one
/// (closed when it refuses outside traffic). Closed endpoints' sockets come back too: bound and
/// not listening, they hold their ports (refusing connections) for the simulator's life.
#[allow(clippy::type_complexity)]
fn start_clusters(
    opts: &SimOptions,
    token: &str,
    tokens: &Arc<Mutex<HashSet<String>>>,
    public_root: &ClusterCa,
) -> Result<(Vec<ClusterAccess>, Vec<Arc<crate::kube::KubeServer>>, Vec<tokio::net::TcpSocket>), String> {
    let mut clusters = Vec::new();
    let mut cluster_listeners = Vec::new();
    let mut closed = Vec::new();
    for c in &opts.world.clusters {
        let public = if c.public_endpoint { Some(bind_socket("127.0.0.1")?) } else { None };
        let private = if c.private { Some(bind_socket("127.0.0.2")?) } else { None };
        let dns = bind_socket("127.0.0.1")?;
        // Without a public endpoint, GKE reports the private one as the cluster's endpoint.
        let endpoint = public.as_ref().or(private.as_ref()).map(|(_, a)| a.to_string()).unwrap_or_default();
        clusters.push(ClusterAccess {
            name: c.name.clone(),
            location: c.location.clone(),
            endpoint,
            private_endpoint: private.as_ref().map(|(_, a)| a.to_string()),
            dns_endpoint: format!("localhost:{}", dns.1.port()),
            ca: ClusterCa::generate(&c.name)?,
            admin_token: format!("sim-admin-{}-{}", c.name, short_hash(token)),
        });
        let mut open = |socket: Option<(tokio::net::TcpSocket, SocketAddr)>, served: bool| match socket {
            Some((socket, _)) if served => socket.listen(1024).map(Some).map_err(|e| format!("cannot listen: {e}")),
            Some((socket, _)) => {
                closed.push(socket);
                Ok(None)
            }
            None => Ok(None),
        };
        let listeners = (open(public, true)?, open(private, opts.world.runner_in_vpc)?, open(Some(dns), c.dns_access)?);
        cluster_listeners.push(listeners);
    }
    let mut kube = Vec::new();
    for (i, ((public, private, dns), (access, spec))) in
        cluster_listeners.into_iter().zip(clusters.iter().zip(&opts.world.clusters)).enumerate()
    {
        let server = crate::kube::KubeServer::new(
            spec,
            access.ca.clone(),
            access.admin_token.clone(),
            tokens.clone(),
            opts,
            i as u64,
        );
        for l in public.into_iter().chain(private) {
            server.serve(l)?;
        }
        if let Some(l) = dns {
            server.serve_dns(l, public_root)?;
        }
        kube.push(server);
    }
    Ok((clusters, kube, closed))
}

/// The stores of the world's service projects, by project id.
fn service_stores(opts: &SimOptions, clusters: &[ClusterAccess]) -> std::collections::BTreeMap<String, Mutex<Store>> {
    let seed = |sp: &crate::world::ProjectSpec| {
        let mut st = Store::seed_service(&opts.world, &sp.id, &sp.number, clusters.to_vec(), opts.lro_polls);
        st.lro_time = opts.clock.lro_time();
        st.controller_polls = opts.controller_polls;
        (sp.id.clone(), Mutex::new(st))
    };
    opts.world.service_projects.iter().map(seed).collect()
}

fn app(shared: Arc<Shared>, kube: Vec<Arc<crate::kube::KubeServer>>, gateway_url: String) -> Router {
    let clusters = Arc::new(kube);
    let cleared = clusters.clone();
    Router::new()
        .merge(crate::compute::routes())
        .merge(crate::container::routes())
        .merge(crate::hub::routes())
        .merge(crate::servicemesh::routes(shared.clone(), clusters.clone()))
        .merge(crate::storage::routes())
        .merge(crate::secrets::routes())
        .merge(crate::gateway::routes(gateway_url))
        .route("/token", post(token))
        .route("/batch/compute/v1", post(batch))
        .route("/__sim/requests", get(requests).delete(clear_requests))
        .route(
            "/__sim/kube/requests",
            get(move || async move { Json(kube_requests(&clusters)) }).delete(move || async move {
                for k in cleared.iter() {
                    k.log.lock().unwrap_or_else(|e| e.into_inner()).clear();
                }
                StatusCode::NO_CONTENT
            }),
        )
        .fallback(fallback)
        .layer(middleware::from_fn_with_state(shared.clone(), gate))
        .with_state(shared)
}

fn style_of(path: &str) -> Style {
    const STORAGE: [&str; 4] = ["/storage/", "/upload/", "/resumable/", "/download/"];
    if path.starts_with("/compute") || path.starts_with("/batch") {
        Style::Compute
    } else if STORAGE.iter().any(|p| path.starts_with(p)) {
        Style::Storage
    } else {
        Style::Rpc
    }
}

async fn fallback(req: Request) -> Response {
    let path = req.uri().path().to_string();
    let style = style_of(&path);
    let e = match style {
        Style::Compute => ApiError::not_found(style, format!("The requested URL {path} was not found on this server.")),
        Style::Rpc => ApiError::not_found(style, format!("Method not found: {} {path}", req.method())),
        Style::Storage => ApiError::not_found(style, "Not Found"),
    };
    e.into_response()
}

fn bearer(h: &HeaderMap) -> Option<&str> {
    h.get("authorization")?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

/// Authentication, latency, injected faults and the request log, around every request.
async fn gate(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let exempt = path.starts_with("/__sim") || path == "/token";
    let style = style_of(&path);
    let (resp, injected) = if exempt {
        (next.run(req).await, false)
    } else if !bearer(req.headers()).is_some_and(|t| s.tokens.lock().unwrap_or_else(|e| e.into_inner()).contains(t)) {
        (ApiError::unauthenticated(style).into_response(), false)
    } else {
        if !s.opts.latency.is_zero() {
            tokio::time::sleep(s.opts.latency).await;
        }
        let target = if query.is_empty() { path.clone() } else { format!("{path}?{query}") };
        with_faults(&s, style, &method, &target, req, next).await
    };
    let status = resp.status().as_u16();
    s.log.lock().unwrap_or_else(|e| e.into_inner()).push(LogEntry { method, path, query, status, injected });
    resp
}

/// Runs an authenticated request unless a fault is injected; whether one was. A lost reply (set
/// by a test through `Shared::lose_replies`, or drawn) comes after a change is carried out.
async fn with_faults(
    s: &Shared,
    style: Style,
    method: &str,
    target: &str,
    req: Request,
    next: Next,
) -> (Response, bool) {
    let mutating = matches!(method, "POST" | "PUT" | "PATCH" | "DELETE");
    let lose = mutating
        && s.lose_replies
            .fetch_update(std::sync::atomic::Ordering::SeqCst, std::sync::atomic::Ordering::SeqCst, |n| {
                n.checked_sub(1)
            })
            .is_ok();
    let fault = if lose { Some(Fault::UnavailableAfter) } else { s.faults.draw(method, target) };
    match fault {
        None => (next.run(req).await, false),
        Some(Fault::RateLimited) => (ApiError::rate_limited(style, s.opts.retry_after_secs).into_response(), true),
        Some(Fault::UnavailableAfter) if mutating => {
            // The change is made, and the reply is lost: what a client sees when a request
            // times out after the server committed it. A retry then finds the change made.
            let _ = next.run(req).await;
            (ApiError::unavailable(style).into_response(), true)
        }
        Some(Fault::Unavailable | Fault::UnavailableAfter) => (ApiError::unavailable(style).into_response(), true),
    }
}

async fn requests(State(s): State<Arc<Shared>>) -> Json<Value> {
    Json(json!(*s.log.lock().unwrap_or_else(|e| e.into_inner())))
}

/// Every cluster API server's request log, in order per cluster: `cluster`, `method`, `path`
/// (with its query), `status`, `via` (`ip`, `dns` or `gateway`).
fn kube_requests(clusters: &[Arc<crate::kube::KubeServer>]) -> Value {
    let mut out = Vec::new();
    for k in clusters {
        for (method, path, status, _, via) in k.log.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            out.push(
                json!({"cluster": k.cluster, "method": method, "path": path, "status": status, "via": via.name()}),
            );
        }
    }
    Value::Array(out)
}

async fn clear_requests(State(s): State<Arc<Shared>>) -> StatusCode {
    s.log.lock().unwrap_or_else(|e| e.into_inner()).clear();
    StatusCode::NO_CONTENT
}

/// OAuth2 token endpoint: exchanges a service-account JWT assertion for an access token.
async fn token(State(s): State<Arc<Shared>>, body: String) -> Response {
    let bad = |m: &str| {
        (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_grant", "error_description": m}))).into_response()
    };
    let form: std::collections::HashMap<String, String> = serde_urlencoded::from_str(&body).unwrap_or_default();
    if form.get("grant_type").map(String::as_str) != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "unsupported_grant_type", "error_description": "Invalid grant_type."})),
        )
            .into_response();
    }
    let Some(assertion) = form.get("assertion") else { return bad("Missing assertion.") };
    let parts: Vec<&str> = assertion.split('.').collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let decode =
        |p: &str| b64.decode(p.trim_end_matches('=')).ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    let (Some(header), Some(claims)) = (parts.first().and_then(|p| decode(p)), parts.get(1).and_then(|p| decode(p)))
    else {
        return bad("Invalid JWT: not three base64url parts.");
    };
    if parts.len() != 3 || parts[2].is_empty() || header["alg"] != "RS256" {
        return bad("Invalid JWT Signature.");
    }
    let now = crate::support::unix_secs();
    let exp = claims["exp"].as_i64().unwrap_or(0);
    if claims["iss"].as_str().is_none_or(str::is_empty) || exp < now - 60 || exp > now + 3700 {
        return bad("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.");
    }
    if claims["scope"].as_str().is_none() && claims["target_audience"].as_str().is_none() {
        return bad("Invalid JWT: no scope.");
    }
    let t = format!("sim-sa-{}", short_hash(&format!("{assertion}{now}")));
    s.tokens.lock().unwrap_or_else(|e| e.into_inner()).insert(t.clone());
    Json(json!({"access_token": t, "expires_in": 3599, "token_type": "Bearer"})).into_response()
}

/// compute's batch endpoint: a multipart/mixed body of HTTP requests, answered in kind.
async fn batch(State(s): State<Arc<Shared>>, headers: HeaderMap, body: String) -> Response {
    use tower::ServiceExt;
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(boundary) =
        ct.split(';').find_map(|p| p.trim().strip_prefix("boundary=")).map(|b| b.trim_matches('"').to_string())
    else {
        return ApiError::invalid(Style::Compute, "Batch requests must be multipart/mixed with a boundary.")
            .into_response();
    };
    let Some(router) = s.router.get().cloned() else { return StatusCode::INTERNAL_SERVER_ERROR.into_response() };
    let auth = headers.get("authorization").cloned();
    let mut out = String::new();
    let reply_boundary = format!("batch_{}", short_hash(&body));
    for part in body
        .split(&format!("--{boundary}"))
        .map(|p| p.trim_start_matches("\r\n"))
        .filter(|p| !p.trim().is_empty() && !p.starts_with("--"))
    {
        let norm = part.replace("\r\n", "\n");
        let (part_head, inner) = norm.split_once("\n\n").unwrap_or((&norm, ""));
        let content_id = part_head
            .lines()
            .find_map(|l| l.strip_prefix("Content-ID:").or_else(|| l.strip_prefix("content-id:")))
            .map(|v| v.trim().to_string())
            .unwrap_or_default();
        let (inner_head, inner_body) = inner.split_once("\n\n").unwrap_or((inner, ""));
        let mut lines = inner_head.lines();
        let request_line = lines.next().unwrap_or("");
        let mut words = request_line.split_whitespace();
        let (method, uri) = (words.next().unwrap_or("GET"), words.next().unwrap_or("/"));
        let uri = match uri.find("/compute/") {
            Some(i) if uri.starts_with("http") => uri[i..].to_string(),
            _ => uri.to_string(),
        };
        let mut rb = Request::builder().method(method).uri(&uri);
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                rb = rb.header(k.trim(), v.trim());
            }
        }
        if let Some(a) = &auth {
            rb = rb.header("authorization", a.clone());
        }
        let req =
            rb.body(Body::from(inner_body.trim_end().to_string())).unwrap_or_else(|_| Request::new(Body::empty()));
        let resp = router.clone().oneshot(req).await.unwrap_or_else(|e| match e {});
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20).await.unwrap_or_default();
        let reply_id = content_id.replacen('<', "<response-", 1);
        out.push_str(&format!(
            "--{reply_boundary}\r\nContent-Type: application/http\r\nContent-ID: {reply_id}\r\n\r\nHTTP/1.1 {} {}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            String::from_utf8_lossy(&bytes)
        ));
    }
    out.push_str(&format!("--{reply_boundary}--\r\n"));
    let mut r = out.into_response();
    if let Ok(v) = format!("multipart/mixed; boundary={reply_boundary}").parse() {
        r.headers_mut().insert("content-type", v);
    }
    r
}
