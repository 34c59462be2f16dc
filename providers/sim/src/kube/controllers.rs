//! What the real cluster's controllers do around a write, run in the same request: the token
//! controller (service-account token Secrets, TokenRequest, revocation), the namespace
//! controller (a new namespace's default ServiceAccount and `kube-root-ca.crt`; termination and
//! finalization), the CRD controller (a CRD's kind served at once, and its objects deleted with
//! it) and the cascades of a delete. They write through `state::persist` only, and say what to
//! create rather than create it, so that they sit below `objects`.

use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Value, json};

use super::resources::{ResourceDef, from_crd};
use super::state::{Inner, Key, KubeServer, persist};
use super::status::{KResult, KubeError};
use crate::support::now_rfc3339 as now;

/// Fills a service-account token Secret (or refuses it when its account is missing).
pub fn token_controller(s: &KubeServer, inner: &mut Inner, obj: &mut Value) -> KResult<()> {
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

/// A new token of a service account, accepted by this server from now on.
fn mint_token(inner: &mut Inner, ns: &str, sa: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"RS256","kid":"meshform-sim"}"#);
    let claims = b64.encode(json!({"iss": "kubernetes/serviceaccount", "sub": format!("system:serviceaccount:{ns}:{sa}"), "jti": uuid::Uuid::new_v4().to_string()}).to_string());
    let sig = b64.encode(uuid::Uuid::new_v4().as_bytes());
    let t = format!("{header}.{claims}.{sig}");
    inner.tokens.insert(t.clone(), (ns.to_string(), sa.to_string()));
    t
}

/// The user a bearer token authenticates as, with its groups: a service account's token, the
/// admin token, or a Google access token (GKE maps it to the Google account).
pub fn user_of(s: &KubeServer, token: &str) -> Option<(String, Vec<String>)> {
    let authenticated = "system:authenticated".to_string();
    if token == s.admin_token {
        return Some(("admin".into(), vec!["system:masters".into(), authenticated]));
    }
    if let Some((ns, sa)) = s.lock().tokens.get(token).cloned() {
        let groups = vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{ns}"), authenticated];
        return Some((format!("system:serviceaccount:{ns}:{sa}"), groups));
    }
    s.google_tokens
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(token)
        .then(|| ("meshform-sim-user@example.com".into(), vec![authenticated]))
}

/// `POST /apis/authentication.k8s.io/v1/tokenreviews`: whether `spec.token` authenticates here,
/// and as whom.
pub fn token_review(s: &KubeServer, mut req: Value) -> KResult<Value> {
    let Some(token) = req["spec"]["token"].as_str().map(String::from) else {
        return Err(KubeError::invalid("TokenReview", "", "spec.token", "Required value"));
    };
    req["status"] = match user_of(s, &token) {
        Some((user, groups)) => json!({"authenticated": true, "user": {"username": user, "groups": groups}}),
        None => json!({"authenticated": false, "error": "invalid bearer token"}),
    };
    req["apiVersion"] = json!("authentication.k8s.io/v1");
    req["kind"] = json!("TokenReview");
    req["metadata"] = json!({"creationTimestamp": null});
    Ok(req)
}

/// `POST /apis/authorization.k8s.io/v1/subjectaccessreviews`: whether the user and groups of the
/// spec may do what its `resourceAttributes` say, as `rbac` decides the requests themselves.
pub fn access_review(s: &KubeServer, mut req: Value) -> KResult<Value> {
    if !req["spec"]["user"].is_string() && !req["spec"]["groups"].is_array() {
        return Err(KubeError::invalid(
            "SubjectAccessReview",
            "",
            "spec.user",
            "Invalid value: \"\": at least one of user or group must be specified",
        ));
    }
    let spec = &req["spec"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let groups: Vec<String> = spec["groups"].as_array().into_iter().flatten().map(text).collect();
    let ra = &spec["resourceAttributes"];
    let resource = match ra["subresource"].as_str().filter(|s| !s.is_empty()) {
        Some(sub) => format!("{}/{sub}", text(&ra["resource"])),
        None => text(&ra["resource"]),
    };
    let attributes = super::rbac::Attributes {
        verb: text(&ra["verb"]),
        group: text(&ra["group"]),
        resource,
        namespace: text(&ra["namespace"]),
    };
    req["status"] = match super::rbac::decide(&s.lock(), &text(&spec["user"]), &groups, &attributes) {
        Ok(()) => json!({"allowed": true, "reason": "allowed by the cluster's RBAC"}),
        Err(why) => json!({"allowed": false, "reason": why}),
    };
    req["apiVersion"] = json!("authorization.k8s.io/v1");
    req["kind"] = json!("SubjectAccessReview");
    req["metadata"] = json!({"creationTimestamp": null});
    Ok(req)
}

/// `POST .../serviceaccounts/NAME/token`: the TokenRequest `req` answered with a new token.
pub fn token_request(s: &KubeServer, ns: &str, sa: &str, req: Value) -> KResult<Value> {
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
    let mut out = req;
    out["apiVersion"] = json!("authentication.k8s.io/v1");
    out["kind"] = json!("TokenRequest");
    out["metadata"] = json!({"name": sa, "namespace": ns, "creationTimestamp": null});
    out["spec"]["expirationSeconds"] = json!(secs);
    out["status"] = json!({"token": token, "expirationTimestamp": crate::support::rfc3339(exp)});
    Ok(out)
}

/// What the controllers create after `obj` of `def` is created, as (core plural, object): a
/// namespace's `default` ServiceAccount and `kube-root-ca.crt` ConfigMap.
pub fn after_create(s: &KubeServer, def: &ResourceDef, obj: &Value) -> Vec<(&'static str, Value)> {
    if !(def.group.is_empty() && def.plural == "namespaces") {
        return Vec::new();
    }
    let ns = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    vec![
        (
            "serviceaccounts",
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}}),
        ),
        (
            "configmaps",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt", "namespace": ns}, "data": {"ca.crt": s.ca.cert_pem}}),
        ),
    ]
}

/// Registers (or re-registers) the kind a CRD object defines and fills its status.
pub fn establish_crd(inner: &mut Inner, obj: &mut Value) -> KResult<()> {
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

/// Deletes a namespace as the real server does: marks it Terminating (the object returned), then
/// the namespace controller finalizes it: within this request when the clock is pinned, else
/// `KubeServer::namespace_finalize` later.
pub fn terminate_namespace(s: &Arc<KubeServer>, mut inner: std::sync::MutexGuard<'_, Inner>, old: &Value) -> Value {
    let name = old["metadata"]["name"].as_str().unwrap_or("").to_string();
    let key = (String::new(), "namespaces".to_string(), String::new(), name.clone());
    let mut t = old.clone();
    t["metadata"]["deletionTimestamp"] = json!(now());
    t["status"]["phase"] = json!("Terminating");
    let stored = persist(s, &mut inner, key, t, "MODIFIED");
    match s.namespace_finalize {
        None => finalize_namespace(s, &mut inner, &name),
        Some(after) => {
            drop(inner);
            let server = s.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                finalize_namespace(&server, &mut server.lock(), &name);
            });
        }
    }
    stored
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

/// Removes a Terminating namespace whose finalizers a client emptied (`.../finalize`).
pub fn maybe_remove_namespace(s: &KubeServer, inner: &mut Inner, ns: &str) {
    let key = (String::new(), "namespaces".to_string(), String::new(), ns.to_string());
    if let Some(o) = inner.objects.get(&key).cloned() {
        let finalizers_empty = o["spec"]["finalizers"].as_array().is_none_or(Vec::is_empty);
        if o["status"]["phase"] == "Terminating" && finalizers_empty {
            persist(s, inner, key, o, "DELETED");
        }
    }
}

/// Deletes every object whose key `pred` selects.
fn delete_where(s: &KubeServer, inner: &mut Inner, pred: impl Fn(&Key, &Value) -> bool) {
    let keys: Vec<Key> = inner.objects.iter().filter(|(k, v)| pred(k, v)).map(|(k, _)| k.clone()).collect();
    for k in keys {
        if let Some(o) = inner.objects.get(&k).cloned() {
            persist(s, inner, k, o, "DELETED");
        }
    }
}

/// What follows the delete of `old` (of `def`, in `ns`): a CRD takes its objects and its kind
/// with it; a service account its token Secrets and tokens; a token Secret its token.
pub fn after_delete(s: &KubeServer, inner: &mut Inner, def: &ResourceDef, ns: &str, old: &Value) {
    let name = old["metadata"]["name"].as_str().unwrap_or("");
    if def.plural == "customresourcedefinitions" {
        let group = old["spec"]["group"].as_str().unwrap_or("").to_string();
        let plural = old["spec"]["names"]["plural"].as_str().unwrap_or("").to_string();
        delete_where(s, inner, |k, _| k.0 == group && k.1 == plural);
        inner.defs.retain(|d| !(d.group == group && d.plural == plural));
    }
    if def.group.is_empty() && def.plural == "serviceaccounts" {
        // Deleting an account deletes its token Secrets and revokes its tokens.
        delete_where(s, inner, |k, v| {
            k.1 == "secrets"
                && k.2 == ns
                && v["type"] == "kubernetes.io/service-account-token"
                && v["metadata"]["annotations"]["kubernetes.io/service-account.name"] == name
        });
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
}

/// The deployment controller and the kubelets, at once: a Deployment's status as its pods make
/// it once the rollout of the current generation is done (all replicas available, `Available`
/// and `Progressing` True), or, for a rollout a test stalled, never available.
pub fn rollout(inner: &Inner, obj: &mut Value) {
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or("").to_string();
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    let replicas = obj["spec"]["replicas"].as_i64().unwrap_or(1);
    let generation = obj["metadata"]["generation"].clone();
    let t = now();
    let rs = format!("{name}-{}", crate::world::short_hash(&obj["spec"]["template"].to_string()));
    obj["status"] = if inner.stalled_rollouts.contains(&(ns, name)) {
        json!({"observedGeneration": generation, "replicas": replicas, "updatedReplicas": replicas,
               "unavailableReplicas": replicas, "conditions": [
            {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable", "message": "Deployment does not have minimum availability.", "lastUpdateTime": t, "lastTransitionTime": t},
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": format!("ReplicaSet \"{rs}\" has timed out progressing."), "lastUpdateTime": t, "lastTransitionTime": t}]})
    } else {
        json!({"observedGeneration": generation, "replicas": replicas, "updatedReplicas": replicas,
               "readyReplicas": replicas, "availableReplicas": replicas, "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability.", "lastUpdateTime": t, "lastTransitionTime": t},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "message": format!("ReplicaSet \"{rs}\" has successfully progressed."), "lastUpdateTime": t, "lastTransitionTime": t}]})
    };
}

/// [`rollout`] after an update from `old`: nothing new for the rollout keeps the status as it
/// was (so a no-op keeps the RV).
pub fn rollout_update(inner: &Inner, old: &Value, new: &mut Value) {
    rollout(inner, new);
    if same_rollout(&old["status"], &new["status"]) {
        new["status"] = old["status"].clone();
    }
}

/// Whether two rollout statuses say the same but for their times.
fn same_rollout(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        for c in v["conditions"].as_array_mut().into_iter().flatten() {
            if let Some(m) = c.as_object_mut() {
                m.remove("lastUpdateTime");
                m.remove("lastTransitionTime");
            }
        }
        v
    };
    strip(a) == strip(b)
}

/// The ReplicaSet, kubelet and EndpointSlice controllers of a namespace, run after a write of a
/// Deployment, Service or Pod in it: each Deployment has `replicas` Pods of its current template
/// (named `DEPLOY-HASH-I`, labelled with the template's labels and `pod-template-hash`, Running
/// and Ready unless its rollout is stalled), Pods of a gone Deployment or an old template go, and
/// each Service with a selector has one EndpointSlice (`SERVICE-sim`, labelled
/// `kubernetes.io/service-name`) of the Pods it selects.
pub fn workloads(s: &KubeServer, inner: &mut Inner, ns: &str) {
    let in_ns = |inner: &Inner, plural: &str| -> Vec<(Key, Value)> {
        inner.objects.iter().filter(|(k, _)| k.1 == plural && k.2 == ns).map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    let mut want: std::collections::BTreeMap<String, Value> = Default::default();
    for (_, d) in in_ns(inner, "deployments").into_iter().filter(|(k, _)| k.0 == "apps") {
        let name = d["metadata"]["name"].as_str().unwrap_or("").to_string();
        let hash = crate::world::short_hash(&d["spec"]["template"].to_string());
        let ready = !inner.stalled_rollouts.contains(&(ns.to_string(), name.clone()));
        for i in 0..d["spec"]["replicas"].as_i64().unwrap_or(1).max(0) {
            let pod_name = format!("{name}-{hash}-{i}");
            let mut labels = d["spec"]["template"]["metadata"]["labels"].clone();
            labels["pod-template-hash"] = json!(hash);
            let ip =
                format!("10.{}.{}.{}", 96 + (short_u8(&pod_name) % 32), short_u8(&format!("{pod_name}b")), 2 + i % 250);
            want.insert(pod_name.clone(), json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod_name, "namespace": ns, "labels": labels,
                             "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{name}-{hash}"), "controller": true}]},
                "spec": d["spec"]["template"]["spec"].clone(),
                "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                           "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}}));
        }
    }
    for (k, p) in in_ns(inner, "pods") {
        let owned = p["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet";
        let name = k.3.clone();
        match want.remove(&name) {
            Some(w) if w["status"] == p["status"] => {}
            Some(mut w) => {
                w["metadata"]["uid"] = p["metadata"]["uid"].clone();
                w["metadata"]["creationTimestamp"] = p["metadata"]["creationTimestamp"].clone();
                persist(s, inner, k, w, "MODIFIED");
            }
            None if owned => {
                persist(s, inner, k, p, "DELETED");
            }
            None => {}
        }
    }
    for (name, mut p) in want {
        p["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
        p["metadata"]["creationTimestamp"] = json!(now());
        persist(s, inner, (String::new(), "pods".into(), ns.to_string(), name), p, "ADDED");
    }
    endpoint_slices(s, inner, ns);
}

fn short_u8(text: &str) -> u32 {
    u32::from_str_radix(&crate::world::short_hash(text)[..2], 16).unwrap_or(0)
}

/// One EndpointSlice per selecting Service of the namespace, of the Pods it selects.
fn endpoint_slices(s: &KubeServer, inner: &mut Inner, ns: &str) {
    let pods: Vec<Value> =
        inner.objects.iter().filter(|(k, _)| k.1 == "pods" && k.2 == ns).map(|(_, v)| v.clone()).collect();
    let mut want: std::collections::BTreeMap<String, Value> = Default::default();
    for svc in inner.objects.iter().filter(|(k, _)| k.0.is_empty() && k.1 == "services" && k.2 == ns).map(|(_, v)| v) {
        let Some(sel) = svc["spec"]["selector"].as_object().filter(|m| !m.is_empty()) else { continue };
        let name = svc["metadata"]["name"].as_str().unwrap_or("").to_string();
        let endpoints: Vec<Value> = pods
            .iter()
            .filter(|p| sel.iter().all(|(k, v)| p["metadata"]["labels"][k] == *v))
            .map(|p| json!({"addresses": [p["status"]["podIP"].clone()],
                "conditions": {"ready": p["status"]["conditions"][0]["status"] == "True"},
                "targetRef": {"kind": "Pod", "namespace": ns, "name": p["metadata"]["name"].clone(), "uid": p["metadata"]["uid"].clone()}}))
            .collect();
        let ports: Vec<Value> = svc["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| json!({"name": p["name"].as_str().unwrap_or(""), "port": p["targetPort"].as_i64().or(p["port"].as_i64()), "protocol": p["protocol"].as_str().unwrap_or("TCP")}))
            .collect();
        want.insert(format!("{name}-sim"), json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{name}-sim"), "namespace": ns,
                         "labels": {"kubernetes.io/service-name": name, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
            "addressType": "IPv4", "endpoints": endpoints, "ports": ports}));
    }
    let existing: Vec<(Key, Value)> = inner
        .objects
        .iter()
        .filter(|(k, _)| k.0 == "discovery.k8s.io" && k.1 == "endpointslices" && k.2 == ns)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, old) in existing {
        match want.remove(&k.3) {
            Some(w) if w["endpoints"] == old["endpoints"] && w["ports"] == old["ports"] => {}
            Some(mut w) => {
                w["metadata"]["uid"] = old["metadata"]["uid"].clone();
                w["metadata"]["creationTimestamp"] = old["metadata"]["creationTimestamp"].clone();
                persist(s, inner, k, w, "MODIFIED");
            }
            None if old["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"]
                == "endpointslice-controller.k8s.io" =>
            {
                persist(s, inner, k, old, "DELETED");
            }
            None => {}
        }
    }
    for (name, mut w) in want {
        w["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
        w["metadata"]["creationTimestamp"] = json!(now());
        persist(s, inner, ("discovery.k8s.io".into(), "endpointslices".into(), ns.to_string(), name), w, "ADDED");
    }
}
