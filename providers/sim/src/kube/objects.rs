//! Object CRUD: create (with generated names, namespace checks, defaults, managedFields, the
//! controllers' admission and follow-ups), update (the shared path of PUT, patches and apply:
//! preconditions, immutable fields, subresources, no-op detection), and delete.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::controllers;
use super::defaults::default_object;
use super::resources::ResourceDef;
use super::ssa;
use super::state::{Inner, KubeServer, key_of, persist, served};
use super::status::{KResult, KubeError};
use super::wire::ok;
use crate::support::now_rfc3339 as now;
use crate::world::short_hash;

/// A lowercase RFC 1123 subdomain.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Whether a write of `def`'s kind makes the workload controllers run (see
/// `controllers::workloads`).
fn runs_workloads(def: &ResourceDef) -> bool {
    matches!((def.group.as_str(), def.plural.as_str()), ("apps", "deployments") | ("", "services" | "pods"))
}

/// What the controllers do after an update: a namespace that finished terminating goes, a
/// workload's Pods and EndpointSlices follow.
fn after_update(s: &KubeServer, inner: &mut Inner, def: &ResourceDef, ns: &str, name: &str) {
    if def.plural == "namespaces" {
        controllers::maybe_remove_namespace(s, inner, name);
    }
    if runs_workloads(def) {
        controllers::workloads(s, inner, ns);
    }
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
        obj["metadata"]["name"] = json!(format!("{g}{}", &short_hash(&format!("{g}{}", inner.rv))[..5]));
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
    default_object(inner, def, &mut obj)?;
    let uid = uuid::Uuid::new_v4().to_string();
    obj["metadata"]["uid"] = json!(uid);
    obj["metadata"]["creationTimestamp"] = json!(now());
    if def.generation {
        obj["metadata"]["generation"] = json!(1);
    }
    if def.group == "apps" && def.plural == "deployments" {
        controllers::rollout(inner, &mut obj);
    }
    if obj["metadata"].get("managedFields").is_none() {
        let av = obj["apiVersion"].as_str().unwrap_or("v1").to_string();
        ssa::record_update(None, &mut obj, manager, &av, &now(), def.status);
    }
    if def.group.is_empty() && def.plural == "secrets" {
        controllers::token_controller(s, inner, &mut obj)?;
    }
    if dry_run {
        obj["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
        return Ok(obj);
    }
    let stored = persist(s, inner, key, obj, "ADDED");
    if runs_workloads(def) {
        controllers::workloads(s, inner, &ns);
    }
    for (plural, made) in controllers::after_create(s, def, &stored) {
        let made_def = inner.defs.iter().find(|d| d.group.is_empty() && d.plural == plural).cloned();
        if let Some(d) = made_def {
            let _ = create_object(s, inner, &d, made, "kube-controller-manager", false);
        }
    }
    Ok(stored)
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
    controllers::establish_crd(inner, &mut obj)?;
    create_object(s, inner, &def, obj, "kube-apiserver", false)
}

/// Checks a request body against its URL (kind, name, namespace), filling in what it omits.
pub fn check_body(
    def: &ResourceDef,
    version: &str,
    mut obj: Value,
    url_name: Option<&str>,
    ns: &str,
) -> KResult<Value> {
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
pub fn shaped(obj: &Value) -> KResult<()> {
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

/// Whether anything but metadata (and status, for kinds with a status subresource) changed.
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
pub fn update(
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
    default_object(&inner, def, &mut new)?;
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
    if def.group == "apps" && def.plural == "deployments" && sub.is_none() {
        controllers::rollout_update(&inner, &old, &mut new);
    }
    if def.plural == "customresourcedefinitions" {
        controllers::establish_crd(&mut inner, &mut new)?;
    }
    new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
    if essence(&new) == essence(&old) {
        return Ok((StatusCode::OK, served(def, version, old)));
    }
    if dry {
        return Ok((StatusCode::OK, served(def, version, new)));
    }
    let stored = persist(s, &mut inner, key.clone(), new, "MODIFIED");
    release(s, &mut inner, def, key, &stored);
    after_update(s, &mut inner, def, ns, name);
    Ok((StatusCode::OK, served(def, version, stored)))
}

/// An object being deleted whose last finalizer is gone goes (namespaces have their own
/// finalization).
fn release(s: &KubeServer, inner: &mut Inner, def: &ResourceDef, key: super::state::Key, stored: &Value) {
    let released = !stored["metadata"]["deletionTimestamp"].is_null()
        && stored["metadata"]["finalizers"].as_array().is_none_or(Vec::is_empty)
        && def.plural != "namespaces";
    if released {
        let ns = key.2.clone();
        persist(s, inner, key, stored.clone(), "DELETED");
        controllers::after_delete(s, inner, def, &ns, stored);
    }
}

/// Deletes an object (a namespace: marks it Terminating, see `controllers::terminate_namespace`),
/// honouring `DeleteOptions` (dry run, UID and resourceVersion preconditions), and what follows
/// from it.
pub fn delete(
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
    if let Some(rv) = opts["preconditions"]["resourceVersion"].as_str()
        && old["metadata"]["resourceVersion"].as_str() != Some(rv)
    {
        return Err(KubeError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                def.plural,
                old["metadata"]["resourceVersion"].as_str().unwrap_or("")
            ),
        ));
    }
    if dry {
        return Ok(ok(served(def, version, old)));
    }
    if def.group.is_empty() && def.plural == "namespaces" {
        if old["status"]["phase"] != "Terminating" {
            let stored = controllers::terminate_namespace(s, inner, &old);
            return Ok(ok(served(def, version, stored)));
        }
        return Ok(ok(served(def, version, old)));
    }
    if old["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty()) {
        // Finalizers hold it: marked for deletion, gone when the last one is removed.
        if old["metadata"]["deletionTimestamp"].is_null() {
            let mut marked = old.clone();
            marked["metadata"]["deletionTimestamp"] = json!(now());
            marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            let stored = persist(s, &mut inner, key, marked, "MODIFIED");
            return Ok(ok(served(def, version, stored)));
        }
        return Ok(ok(served(def, version, old)));
    }
    let gone = persist(s, &mut inner, key, old.clone(), "DELETED");
    controllers::after_delete(s, &mut inner, def, ns, &old);
    if runs_workloads(def) {
        controllers::workloads(s, &mut inner, ns);
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

/// A controller's write of `obj` (of `def`) while holding the state: created when absent, else
/// each label, annotation and `spec` field it sets laid over the stored object (what it does
/// not set is kept); nothing is written when nothing differs. Whether it was written.
pub fn controller_merge(
    s: &KubeServer,
    inner: &mut Inner,
    def: &ResourceDef,
    obj: Value,
    manager: &str,
) -> KResult<bool> {
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or("").to_string();
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    let key = key_of(def, &ns, &name);
    let Some(old) = inner.objects.get(&key).cloned() else {
        return create_object(s, inner, def, obj, manager, false).map(|_| true);
    };
    let mut new = old.clone();
    for field in ["labels", "annotations"] {
        for (k, v) in obj["metadata"][field].as_object().into_iter().flatten() {
            new["metadata"][field][k] = v.clone();
        }
    }
    for (k, v) in obj["spec"].as_object().into_iter().flatten() {
        new["spec"][k] = v.clone();
    }
    default_object(inner, def, &mut new)?;
    if new == old {
        return Ok(false);
    }
    if def.generation && new["spec"] != old["spec"] {
        new["metadata"]["generation"] = json!(old["metadata"]["generation"].as_i64().unwrap_or(1) + 1);
    }
    if def.group == "apps" && def.plural == "deployments" {
        controllers::rollout_update(inner, &old, &mut new);
    }
    persist(s, inner, key, new, "MODIFIED");
    if runs_workloads(def) {
        controllers::workloads(s, inner, &ns);
    }
    Ok(true)
}

/// A controller's change of the object at `key` (its status, an annotation) by `f`, written
/// when it changed anything.
pub fn controller_edit(s: &KubeServer, inner: &mut Inner, key: super::state::Key, f: impl FnOnce(&mut Value)) {
    let Some(old) = inner.objects.get(&key).cloned() else { return };
    let mut new = old.clone();
    f(&mut new);
    if new != old {
        persist(s, inner, key, new, "MODIFIED");
    }
}
