//! `mesh_remote_secret`: what `istioctl create-remote-secret --context=A --name=A | kubectl apply
//! --context=B` does, declaratively. A token Secret for `istio-reader-service-account` in A's
//! `istio-system` (one per target, so rotating one pair never revokes another's token), and in
//! B the Secret `istio-remote-secret-A` laid out as istioctl lays it out. The server is A's
//! private endpoint when A is private, its public endpoint otherwise, or `server`.
//!
//! Rotation (`rotation` changes, or `rotate = true`, which rotates at every apply it is set for,
//! e.g. `--var rotate=true` once): a new token Secret, then the remote secret updated to it, then
//! the old token Secret deleted, in that order, so the remote secret never holds a revoked token.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use meshform_engine::provider::{
    AttrSchema, AttrType, ErrorKind, Planned, Poll, Presence, ProviderError, ProviderResult, TypeKind, TypeSchema,
};
use meshform_engine::value::{Map, Value, sha256_hex};
use serde_json::json;

use super::{KubeType, req, s};
use crate::conn::Kube;
use crate::objects::{self, ObjRef};

/// The type.
pub struct RemoteSecret;

const READER: &str = "istio-reader-service-account";

fn secret_ref(ns: &str, name: &str) -> ObjRef {
    ObjRef { api_version: "v1".into(), kind: "Secret".into(), namespace: Some(ns.into()), name: name.into() }
}

/// The kubeconfig istioctl writes for cluster `name` (keys in client-go's order).
pub fn kubeconfig(name: &str, server: &str, ca_b64: &str, token: &str) -> String {
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {ca_b64}\n    server: {server}\n  name: {name}\ncontexts:\n- context:\n    cluster: {name}\n    user: {name}\n  name: {name}\ncurrent-context: {name}\nkind: Config\npreferences: {{}}\nusers:\n- name: {name}\n  user:\n    token: {token}\n"
    )
}

struct Settings {
    source: String,
    target: String,
    namespace: String,
    account: String,
    token_secret: String,
    secret_name: String,
}

/// The token Secret's name for the `rotation` trigger of `m`.
fn derived_token_secret(m: &Map, account: &str, target: &str) -> String {
    let rotation = s(m, "rotation").map(|r| format!("-{}", &sha256_hex(r.as_bytes())[..8])).unwrap_or_default();
    format!("{account}-istio-remote-secret-token-{target}{rotation}")
}

/// The settings of `m`; its token Secret is the one recorded (or planned) when there is one.
fn settings(m: &Map) -> ProviderResult<Settings> {
    let source = req(m, "source")?;
    let target = req(m, "target")?;
    let account = s(m, "service_account").unwrap_or_else(|| READER.into());
    let token_secret =
        s(m, "token_secret").filter(|t| !t.is_empty()).unwrap_or_else(|| derived_token_secret(m, &account, &target));
    Ok(Settings {
        namespace: s(m, "namespace").unwrap_or_else(|| "istio-system".into()),
        token_secret,
        secret_name: format!("istio-remote-secret-{source}"),
        source,
        target,
        account,
    })
}

/// The server a remote secret points at: the override, else the private endpoint of a private
/// cluster, else its public endpoint.
fn server_of(k: &Kube, m: &Map, source: &str) -> ProviderResult<String> {
    if let Some(sv) = s(m, "server") {
        return Ok(sv);
    }
    let c = k.cluster(source)?;
    let private = matches!(c.get("private"), Some(Value::Bool(true)));
    let ep = if private { s(c, "private_endpoint") } else { None }.or_else(|| s(c, "endpoint"));
    ep.map(|e| if e.starts_with("https://") { e } else { format!("https://{e}") })
        .ok_or_else(|| ProviderError::new(ErrorKind::Invalid, format!("cluster `{source}` has no endpoint")))
}

impl RemoteSecret {
    /// The token Secret's `token` and `ca.crt` (base64), once the token controller filled them.
    async fn token(&self, k: &Kube, st: &Settings, wait: bool) -> ProviderResult<Option<(String, String)>> {
        // Waiting for the token controller needs the server's latest; a plan or a refresh reads
        // the run's snapshot.
        let read = || async {
            let r = secret_ref(&st.namespace, &st.token_secret);
            let sec = if wait {
                objects::get(k, &st.source, &r).await?.map(std::sync::Arc::new)
            } else {
                objects::read(k, &st.source, &r).await?
            };
            let Some((t, ca)) =
                sec.as_ref().and_then(|s| Some((s["data"]["token"].as_str()?, s["data"]["ca.crt"].as_str()?)))
            else {
                return Ok(None);
            };
            let token = base64::engine::general_purpose::STANDARD
                .decode(t)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            Ok(Some((token, ca.to_string())))
        };
        if !wait {
            return read().await;
        }
        let poll = Poll::new(k.conns.settings.wait_timeout, Duration::from_millis(100), Duration::from_millis(100));
        let timed_out = || {
            ProviderError::new(
                ErrorKind::Transient,
                format!("the token Secret {} in cluster `{}` was not filled in", st.token_secret, st.source),
            )
        };
        poll.until(read, timed_out).await.map(Some)
    }

    async fn ensure_token_secret(&self, k: &Kube, st: &Settings) -> ProviderResult<(String, String)> {
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": st.account, "namespace": st.namespace}});
        objects::apply(k, &st.source, &sa, false, false).await?;
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
            "metadata": {"name": st.token_secret, "namespace": st.namespace, "annotations": {"kubernetes.io/service-account.name": st.account}}});
        objects::apply(k, &st.source, &secret, true, false).await?;
        self.token(k, st, true).await?.ok_or_else(|| ProviderError::new(ErrorKind::Transient, "no token"))
    }

    async fn write_remote(
        &self,
        k: &Kube,
        st: &Settings,
        server: &str,
        token: &str,
        ca: &str,
    ) -> ProviderResult<String> {
        let kc = kubeconfig(&st.source, server, ca, token);
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {
            "name": st.secret_name, "namespace": st.namespace,
            "labels": {"istio/multiCluster": "true"}, "annotations": {"networking.istio.io/cluster": st.source}},
            "data": {st.source.clone(): base64::engine::general_purpose::STANDARD.encode(kc.as_bytes())}});
        let live = objects::apply(k, &st.target, &secret, true, false).await?;
        // istiod reads every key as a cluster's kubeconfig: a key added out of band goes.
        let extra: serde_json::Map<String, serde_json::Value> = live["data"]
            .as_object()
            .map(|o| o.keys().filter(|k| **k != st.source).map(|k| (k.clone(), serde_json::Value::Null)).collect())
            .unwrap_or_default();
        if !extra.is_empty() {
            let r = secret_ref(&st.namespace, &st.secret_name);
            objects::merge_patch(k, &st.target, &r, &json!({ "data": extra })).await?;
        }
        Ok(kc)
    }

    fn attrs(&self, planned: &Map, st: &Settings, server: &str, kc: Option<String>) -> Map {
        let mut m = planned.clone();
        m.insert("namespace".into(), Value::str(&st.namespace));
        m.insert("service_account".into(), Value::str(&st.account));
        m.insert("server".into(), Value::str(server));
        m.insert("cluster_name".into(), Value::str(&st.source));
        m.insert("secret_name".into(), Value::str(&st.secret_name));
        m.insert("token_secret".into(), Value::str(&st.token_secret));
        m.insert("token_valid".into(), Value::Bool(true));
        m.insert("discoverable".into(), Value::Bool(true));
        m.insert("data_keys".into(), Value::List(vec![Value::str(&st.source)]));
        m.insert("kubeconfig".into(), kc.map_or(Value::Unknown, Value::String));
        m.insert("id".into(), Value::str(format!("{}/{}", st.source, st.target)));
        m
    }
}

#[async_trait]
impl KubeType for RemoteSecret {
    fn schema(&self) -> TypeSchema {
        let st = |n: &str, p: Presence| AttrSchema::new(n, AttrType::String, p);
        TypeSchema::new(
            "mesh_remote_secret",
            TypeKind::Managed,
            "An istioctl-compatible remote secret from one cluster into another.",
        )
        .import_id("SOURCE/TARGET (cluster names)")
        .attr(
            st("source", Presence::Required)
                .force_new()
                .names_cluster()
                .describe("the cluster whose credentials are exported"),
        )
        .attr(st("target", Presence::Required).force_new().names_cluster().describe("the cluster that receives them"))
        .attr(st("namespace", Presence::OptionalComputed).force_new())
        .attr(st("service_account", Presence::OptionalComputed).force_new())
        .attr(st("server", Presence::OptionalComputed))
        .attr(st("rotation", Presence::Optional).describe("change it to rotate the token"))
        .attr(
            AttrSchema::new("rotate", AttrType::Bool, Presence::Optional)
                .describe("rotate the token at this apply (e.g. `--var rotate=true` for one run)"),
        )
        .attr(st("cluster_name", Presence::Computed))
        .attr(st("secret_name", Presence::Computed))
        .attr(st("token_secret", Presence::Computed))
        .attr(
            AttrSchema::new("token_valid", AttrType::Bool, Presence::Computed)
                .describe("false when the token Secret was deleted (the token is revoked)"),
        )
        .attr(AttrSchema::new("discoverable", AttrType::Bool, Presence::Computed).describe(
            "labelled istio/multiCluster=true and annotated networking.istio.io/cluster with the source's name: what istiod looks for",
        ))
        .attr(
            AttrSchema::new("data_keys", AttrType::List(Box::new(AttrType::String)), Presence::Computed)
                .describe("the remote secret's data keys: the source cluster's name only (istiod reads each)"),
        )
        .attr(st("kubeconfig", Presence::Computed).sensitive())
        .attr(st("id", Presence::Computed))
    }

    async fn plan(&self, k: &Kube, prior: Option<&Map>, mut p: Planned) -> ProviderResult<Planned> {
        // The server is the source cluster's endpoint unless the desired state names one: a
        // server edited in the live kubeconfig is planned back, never kept.
        if !p.configured.contains("server") {
            p.attrs.remove("server");
        }
        let mut st = settings(&p.attrs)?;
        // Which token Secret: a fresh one when rotating now; the recorded one while the
        // rotation trigger is unchanged; else the one the trigger names.
        let derived = derived_token_secret(&p.attrs, &st.account, &st.target);
        let recorded = prior.and_then(|pr| {
            let same_trigger = s(pr, "rotation") == s(&p.attrs, "rotation");
            s(pr, "token_secret").filter(|t| same_trigger && !t.is_empty())
        });
        // A request for this run, not a setting: never recorded, so turning it off changes nothing.
        let rotate = matches!(p.attrs.remove("rotate"), Some(Value::Bool(true)));
        st.token_secret = match (rotate, prior) {
            // Named after the one it replaces: the same at plan and at apply, new at every run.
            (true, Some(pr)) => {
                let old = s(pr, "token_secret").unwrap_or_default();
                format!("{derived}-r{}", &sha256_hex(old.as_bytes())[..8])
            }
            _ => recorded.unwrap_or(derived),
        };
        let server = server_of(k, &p.attrs, &st.source)?;
        // The kubeconfig it should hold, when the token exists already.
        let kc = self.token(k, &st, false).await.ok().flatten().map(|(t, ca)| kubeconfig(&st.source, &server, &ca, &t));
        let attrs = self.attrs(&p.attrs, &st, &server, kc);
        p.attrs = attrs;
        p.sensitive.insert("kubeconfig".into());
        Ok(p)
    }

    async fn read(&self, k: &Kube, prior: &Map) -> ProviderResult<Option<Map>> {
        let st = settings(prior)?;
        // Its target cluster is gone, and this copy with it; its token in the source is still
        // there to delete: as recorded.
        if k.cluster(&st.target).is_err() && k.cluster(&st.source).is_ok() {
            return Ok(Some(prior.clone()));
        }
        let Some(remote) = objects::read(k, &st.target, &secret_ref(&st.namespace, &st.secret_name)).await? else {
            return Ok(None);
        };
        let kc = remote["data"][st.source.as_str()]
            .as_str()
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let server = kc.lines().find_map(|l| l.trim().strip_prefix("server: ")).unwrap_or("").to_string();
        let mut m = self.attrs(prior, &st, &server, Some(kc));
        let keys = remote["data"].as_object().map(|o| o.keys().map(Value::str).collect()).unwrap_or_default();
        m.insert("data_keys".into(), Value::List(keys));
        // A label or annotation removed out of band hides the cluster from istiod: a
        // difference, not a deletion (the snapshot lists the namespace unselected).
        let meta = &remote["metadata"];
        let discoverable = meta["labels"]["istio/multiCluster"] == "true"
            && meta["annotations"]["networking.istio.io/cluster"].as_str() == Some(st.source.as_str());
        m.insert("discoverable".into(), Value::Bool(discoverable));
        // A revoked token (its Secret gone) is a difference too; the apply makes it again. (A
        // source cluster that is gone took its token with it: only this copy is left to delete.)
        if k.cluster(&st.source).is_ok() && self.token(k, &st, false).await?.is_none() {
            m.insert("token_valid".into(), Value::Bool(false));
        }
        Ok(Some(m))
    }

    async fn create(&self, k: &Kube, planned: &Map) -> ProviderResult<Map> {
        let st = settings(planned)?;
        let server = server_of(k, planned, &st.source)?;
        let (token, ca) = self.ensure_token_secret(k, &st).await?;
        let kc = self.write_remote(k, &st, &server, &token, &ca).await?;
        Ok(self.attrs(planned, &st, &server, Some(kc)))
    }

    async fn update(&self, k: &Kube, prior: &Map, planned: &Map) -> ProviderResult<Map> {
        let st = settings(planned)?;
        let server = server_of(k, planned, &st.source)?;
        let (token, ca) = self.ensure_token_secret(k, &st).await?;
        let kc = self.write_remote(k, &st, &server, &token, &ca).await?;
        // Only now that the remote secret holds the new token may the old one go.
        if let Some(old) = s(prior, "token_secret").filter(|o| !o.is_empty() && *o != st.token_secret) {
            objects::delete(k, &st.source, &secret_ref(&st.namespace, &old)).await?;
        }
        Ok(self.attrs(planned, &st, &server, Some(kc)))
    }

    async fn delete(&self, k: &Kube, prior: &Map) -> ProviderResult<()> {
        let st = settings(prior)?;
        // A cluster that is gone took its part with it (the copy in the target, the token in the
        // source); the other part is deleted.
        if k.cluster(&st.target).is_ok() {
            objects::delete(k, &st.target, &secret_ref(&st.namespace, &st.secret_name)).await?;
        }
        let token_secret = s(prior, "token_secret").filter(|t| !t.is_empty()).unwrap_or(st.token_secret);
        if k.cluster(&st.source).is_err() {
            return Ok(());
        }
        objects::delete(k, &st.source, &secret_ref(&st.namespace, &token_secret)).await
    }

    async fn import(&self, k: &Kube, id: &str) -> ProviderResult<Map> {
        let (source, target) = id.split_once('/').ok_or_else(|| {
            ProviderError::new(ErrorKind::Invalid, format!("import id `{id}`: expected SOURCE/TARGET"))
        })?;
        let m = Map::from([("source".into(), Value::str(source)), ("target".into(), Value::str(target))]);
        self.read(k, &m).await?.ok_or_else(|| {
            ProviderError::new(ErrorKind::NotFound, format!("no remote secret of `{source}` in `{target}`"))
        })
    }
}

/// Whether the kubeconfig of a remote secret authenticates against its source cluster and can
/// list services there (what istiod does with it). A kubeconfig with a bearer token (what
/// meshform and istioctl write) is checked over one connection per source endpoint and CA, shared
/// by every check of the run, with the token as the request's credentials; any other kubeconfig
/// gets a client of its own.
pub async fn check_auth(k: &Kube, source: &str, target: &str, namespace: &str) -> ProviderResult<(bool, String)> {
    let name = format!("istio-remote-secret-{source}");
    let remote = match remote_client(k, source, target, namespace).await? {
        Ok(r) => r,
        Err(why) => return Ok((false, why)),
    };
    match remote.get("/api/v1/services").await {
        Ok(list) => {
            let n = list["items"].as_array().map_or(0, Vec::len);
            Ok((true, format!("the kubeconfig in {target}/{namespace}/{name} lists {n} services in `{source}`")))
        }
        Err(e) => Ok((
            false,
            format!("the kubeconfig in {target}/{namespace}/{name} cannot list services in `{source}`: {}", brief(&e)),
        )),
    }
}

/// A client of `source` as istiod in `target` makes it: from the kubeconfig in `target`'s remote
/// secret for `source` (its server, CA and token, nothing of meshform's own credentials). When
/// meshform itself reaches `source` only through its DNS-based endpoint or the Connect Gateway
/// (a runner outside the VPC, which cannot dial the endpoint the secret names), the secret is
/// checked from there instead: its server and CA are `source`'s own, its token authenticates
/// (a TokenReview), and each read is one its user may make (a SubjectAccessReview) before
/// meshform makes it with its own client.
pub enum RemoteClient {
    /// Requests to the secret's server with the secret's token.
    Direct {
        /// One client per server and CA, shared by the run's checks.
        client: kube::Client,
        /// The secret's token, as the request's credentials (None: the kubeconfig's own auth).
        auth: Option<http::HeaderValue>,
    },
    /// Requests through meshform's own connection, each allowed for the token's user first.
    Reviewed {
        /// meshform's client of the source cluster.
        client: kube::Client,
        /// The user and groups the secret's token authenticates as.
        user: (String, Vec<String>),
    },
}

impl RemoteClient {
    /// GETs `path` (with its query) as JSON.
    pub async fn get(&self, path: &str) -> Result<serde_json::Value, kube::Error> {
        let mut req = http::Request::get(path).body(Vec::new()).map_err(kube::Error::HttpError)?;
        match self {
            RemoteClient::Direct { client, auth } => {
                if let Some(v) = auth {
                    req.headers_mut().insert("authorization", v.clone());
                }
                client.request::<serde_json::Value>(req).await
            }
            RemoteClient::Reviewed { client, user } => {
                let review = access_review(user, path);
                let asked = http::Request::post("/apis/authorization.k8s.io/v1/subjectaccessreviews")
                    .header("content-type", "application/json")
                    .body(review.to_string().into_bytes())
                    .map_err(kube::Error::HttpError)?;
                let answer = client.request::<serde_json::Value>(asked).await?;
                if answer["status"]["allowed"] != true {
                    let why = answer["status"]["reason"].as_str().unwrap_or("no reason given");
                    return Err(kube::Error::Api(Box::new(
                        kube::core::Status::failure(&format!("{} may not list {path}: {why}", user.0), "Forbidden")
                            .with_code(403),
                    )));
                }
                client.request::<serde_json::Value>(req).await
            }
        }
    }
}

/// A read's error in a check's words: the server's message and code, or the transport's error.
pub fn brief(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
        other => other.to_string(),
    }
}

/// The SubjectAccessReview of `user` listing what `path` lists (`/api/v1/services`,
/// `/apis/G/V/namespaces/NS/RESOURCE?...`).
fn access_review(user: &(String, Vec<String>), path: &str) -> serde_json::Value {
    let segs: Vec<&str> = path.split('?').next().unwrap_or_default().split('/').filter(|x| !x.is_empty()).collect();
    let (group, rest) = match segs.as_slice() {
        ["api", _, rest @ ..] => ("", rest),
        ["apis", g, _, rest @ ..] => (*g, rest),
        _ => ("", &[][..]),
    };
    let (namespace, resource) = match rest {
        ["namespaces", ns, r, ..] => (*ns, *r),
        [r, ..] => ("", *r),
        [] => ("", ""),
    };
    serde_json::json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": user.0, "groups": user.1,
                 "resourceAttributes": {"verb": "list", "group": group, "resource": resource, "namespace": namespace}}})
}

/// The client of [`RemoteClient`], or why there is none (the secret or its key missing).
pub async fn remote_client(
    k: &Kube,
    source: &str,
    target: &str,
    namespace: &str,
) -> ProviderResult<Result<RemoteClient, String>> {
    let name = format!("istio-remote-secret-{source}");
    let Some(remote) = objects::read(k, target, &secret_ref(namespace, &name)).await? else {
        return Ok(Err(format!("{namespace}/{name} is missing in cluster `{target}`")));
    };
    let Some(kc) =
        remote["data"][source].as_str().and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
    else {
        return Ok(Err(format!("{name} has no key `{source}`")));
    };
    let kc = kube::config::Kubeconfig::from_yaml(&String::from_utf8_lossy(&kc))
        .map_err(|e| ProviderError::new(ErrorKind::Invalid, format!("{name}: {e}")))?;
    let connect = k.cluster(source)?.get("connect").and_then(Value::as_str).unwrap_or_default();
    if matches!(connect, "gke-dns" | "connect-gateway") {
        return reviewed(k, source, &name, &kc, connect).await;
    }
    Ok(Ok(match bearer_of(&kc) {
        Some((server, ca, token)) => {
            let client = k.conns.endpoint_client(&server, &ca).await?;
            let mut value: http::HeaderValue = format!("Bearer {token}").parse().map_err(|_| {
                ProviderError::new(ErrorKind::Invalid, format!("{name}: the token is not a header value"))
            })?;
            value.set_sensitive(true);
            RemoteClient::Direct { client, auth: Some(value) }
        }
        None => {
            let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| ProviderError::new(ErrorKind::Invalid, format!("{name}: {e}")))?;
            let client =
                kube::Client::try_from(config).map_err(|e| ProviderError::new(ErrorKind::Other, e.to_string()))?;
            RemoteClient::Direct { client, auth: None }
        }
    }))
}

/// The [`RemoteClient::Reviewed`] of a remote secret's kubeconfig `kc` for `source`, or why the
/// secret fails: a server or CA that is not `source`'s, a user that is not a bearer token, a
/// token that does not authenticate.
async fn reviewed(
    k: &Kube,
    source: &str,
    name: &str,
    kc: &kube::config::Kubeconfig,
    connect: &str,
) -> ProviderResult<Result<RemoteClient, String>> {
    let Some((server, ca, token)) = bearer_of(kc) else {
        return Ok(Err(format!(
            "{name}: its user is not a bearer token, which meshform cannot check through connect = \"{connect}\""
        )));
    };
    let attrs = k.cluster(source)?;
    let own = |key: &str| s(attrs, key).filter(|v| !v.is_empty()).map(|e| format!("https://{e}"));
    let mut servers: Vec<String> = ["private_endpoint", "endpoint"].iter().filter_map(|key| own(key)).collect();
    servers.dedup();
    // `https://HOST` is `https://HOST:443`.
    let with_port = |u: &str| {
        let host = u.trim_end_matches('/').trim_start_matches("https://");
        if host.rsplit_once(':').is_some_and(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()) && !host.ends_with(']')) {
            host.to_string()
        } else {
            format!("{host}:443")
        }
    };
    if !servers.iter().any(|e| with_port(e) == with_port(&server)) {
        return Ok(Err(format!(
            "{name} points at {server}, which is not an endpoint of `{source}` ({}); through connect = \"{connect}\" meshform cannot dial it to check it",
            servers.join(", ")
        )));
    }
    let pem = base64::engine::general_purpose::STANDARD.decode(ca.trim()).unwrap_or_default();
    if String::from_utf8_lossy(&pem).trim() != s(attrs, "ca_certificate").unwrap_or_default().trim() {
        return Ok(Err(format!("{name}: its certificate-authority-data is not `{source}`'s cluster CA")));
    }
    let client = k.client(source).await?;
    let body =
        serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}});
    let req = http::Request::post("/apis/authentication.k8s.io/v1/tokenreviews")
        .header("content-type", "application/json")
        .body(body.to_string().into_bytes())
        .map_err(|e| ProviderError::new(ErrorKind::Other, e.to_string()))?;
    let answer = client
        .request::<serde_json::Value>(req)
        .await
        .map_err(|e| crate::conn::kube_err(&format!("TokenReview in cluster `{source}`"), e))?;
    let status = &answer["status"];
    if status["authenticated"] != true {
        let why = status["error"].as_str().unwrap_or("not authenticated");
        return Ok(Err(format!("{name}: its token does not authenticate in `{source}`: {why}")));
    }
    let user = status["user"]["username"].as_str().unwrap_or_default().to_string();
    let groups = status["user"]["groups"]
        .as_array()
        .map(|g| g.iter().filter_map(|x| x.as_str().map(String::from)).collect())
        .unwrap_or_default();
    Ok(Ok(RemoteClient::Reviewed { client, user: (user, groups) }))
}

/// The server, CA data and bearer token of a kubeconfig's current context, when its user is a
/// plain token (no client certificate, exec plugin or other auth).
fn bearer_of(kc: &kube::config::Kubeconfig) -> Option<(String, String, String)> {
    let ctx_name = kc.current_context.as_deref()?;
    let ctx = kc.contexts.iter().find(|c| c.name == ctx_name)?.context.as_ref()?;
    let cluster = kc.clusters.iter().find(|c| c.name == ctx.cluster)?.cluster.as_ref()?;
    let user = kc.auth_infos.iter().find(|u| Some(u.name.as_str()) == ctx.user.as_deref())?.auth_info.as_ref()?;
    let plain = user.client_certificate_data.is_none()
        && user.client_key_data.is_none()
        && user.exec.is_none()
        && user.auth_provider.is_none()
        && user.username.is_none()
        && user.token_file.is_none()
        && user.impersonate.is_none()
        && user.impersonate_groups.is_none();
    if !plain
        || cluster.insecure_skip_tls_verify == Some(true)
        || cluster.proxy_url.is_some()
        || cluster.tls_server_name.is_some()
    {
        return None;
    }
    use secrecy::ExposeSecret as _;
    let token = user.token.as_ref()?.expose_secret().to_string();
    Some((cluster.server.clone()?, cluster.certificate_authority_data.clone()?, token))
}

/// Remote secrets meshform does not manage in the clusters that receive the ones it does:
/// istiod trusts every `istio/multiCluster=true` Secret of its namespace, so one that is not in
/// state (a rogue cluster's credentials) is a finding. Never deleted by a plan: to remove one,
/// delete it (`kubectl delete secret`), or import it as a `mesh_remote_secret` and then remove
/// that block.
pub async fn unmanaged(k: &Kube, objects: &[(String, Map)]) -> ProviderResult<Vec<meshform_engine::provider::Finding>> {
    let mut known: std::collections::BTreeMap<(String, String), std::collections::BTreeSet<String>> =
        Default::default();
    for (ty, m) in objects.iter().filter(|(ty, _)| ty == "mesh_remote_secret") {
        let _ = ty;
        if let Ok(st) = settings(m) {
            known.entry((st.target.clone(), st.namespace.clone())).or_default().insert(st.secret_name.clone());
        }
    }
    // Each receiving namespace from the run's snapshot (the list refresh made), all at once.
    let lists = futures::future::join_all(
        known.keys().map(|(cluster, ns)| async move { k.listed(cluster, &secret_ref(ns, "")).await }),
    )
    .await;
    let mut out = Vec::new();
    for (((cluster, ns), managed), listed) in known.iter().zip(lists) {
        // Credentials that may read only the objects meshform manages cannot look: that is no
        // finding, and no failure of the plan.
        let Some(kind) = listed? else { continue };
        let names = kind.names(|o| o["metadata"]["labels"]["istio/multiCluster"] == "true");
        for name in names.into_iter().filter(|n| !managed.contains(n)) {
            out.push(meshform_engine::provider::Finding {
                kind: "unmanaged_remote_secret".into(),
                message: format!(
                    "cluster `{cluster}`: Secret {ns}/{name} is labelled istio/multiCluster=true but is not managed by meshform; istiod trusts the cluster credentials in it (delete it with kubectl, or import it as a mesh_remote_secret)"
                ),
            });
        }
    }
    Ok(out)
}
