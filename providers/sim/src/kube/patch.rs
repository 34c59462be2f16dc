//! PATCH: server-side apply (field ownership and conflicts in `ssa`), JSON merge patch (RFC 7386;
//! strategic merge patch of built-in kinds is treated as one) and JSON patch (RFC 6902), both
//! from the `json-patch` crate, each run under the lock of the write it makes.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::objects::{check_body, create_object, shaped, update};
use super::resources::ResourceDef;
use super::ssa;
use super::state::{KubeServer, key_of, served};
use super::status::{KResult, KubeError};
use super::wire::json_response;
use crate::support::now_rfc3339 as now;

/// The non-apply patch formats.
enum Format {
    /// RFC 7386 (and strategic merge patch, for built-in kinds).
    Merge,
    /// RFC 6902.
    Json,
}

/// The patch format a content type names, or the 415 the real server answers.
fn format_of(def: &ResourceDef, ct: &str) -> KResult<Format> {
    if ct.starts_with("application/merge-patch+json") {
        Ok(Format::Merge)
    } else if ct.starts_with("application/strategic-merge-patch+json") {
        if !def.builtin {
            return Err(KubeError::new(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
            ));
        }
        Ok(Format::Merge)
    } else if ct.starts_with("application/json-patch+json") {
        Ok(Format::Json)
    } else {
        Err(KubeError::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format: {ct}"),
        ))
    }
}

/// Applies an RFC 6902 patch to `doc` (all of it or, on an error, none of it).
fn json_patch(doc: &mut Value, ops: &Value) -> KResult<()> {
    if !ops.is_array() {
        return Err(KubeError::bad_request("a JSON patch must be a list of operations"));
    }
    let ops: json_patch::Patch = serde_json::from_value(ops.clone())
        .map_err(|e| KubeError::bad_request(format!("the JSON patch could not be decoded: {e}")))?;
    json_patch::patch(doc, &ops).map_err(|e| KubeError::new(422, "Invalid", e.to_string()))
}

/// PATCH of an object (or its `status` / `finalize` subresource) in any format.
#[allow(clippy::too_many_arguments)]
pub fn patch(
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
    let format = format_of(def, &ct)?;
    let (code, v) = update(s, def, version, ns, name, sub, dry, manager, |old| {
        let mut new = old.clone();
        match format {
            Format::Json => json_patch(&mut new, &p)?,
            Format::Merge => {
                json_patch::merge(&mut new, &p);
                shaped(&new)?;
                if p["metadata"]["resourceVersion"].is_null() {
                    new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
                }
            }
        }
        if let Some(m) = new["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
        Ok(new)
    })?;
    Ok(json_response(code, &v, "application/json"))
}

/// Server-side apply: creates the object, or merges the applied configuration into it, with
/// conflicts between field managers unless forced.
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
            super::controllers::establish_crd(&mut inner, &mut obj)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_patch_operations_and_errors() {
        let mut doc = json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "data": {"k": "v"}, "list": [1, 2]});
        let ops = json!([
            {"op": "add", "path": "/metadata/labels/y", "value": "2"},
            {"op": "remove", "path": "/data/k"},
            {"op": "replace", "path": "/list/0", "value": 0},
            {"op": "add", "path": "/list/-", "value": 3},
            {"op": "test", "path": "/metadata/name", "value": "a"},
            {"op": "copy", "from": "/metadata/name", "path": "/copied"},
            {"op": "move", "from": "/copied", "path": "/moved"},
            {"op": "add", "path": "/metadata/labels/a~1b", "value": "slash"},
        ]);
        json_patch(&mut doc, &ops).unwrap();
        assert_eq!(
            doc,
            json!({"metadata": {"name": "a", "labels": {"x": "1", "y": "2", "a/b": "slash"}}, "data": {}, "list": [0, 2, 3], "moved": "a"})
        );
        let before = doc.clone();
        // A failing operation leaves the document as it was (earlier operations undone).
        let e = json_patch(
            &mut doc,
            &json!([{"op": "add", "path": "/z", "value": 1}, {"op": "test", "path": "/moved", "value": "b"}]),
        )
        .unwrap_err();
        assert_eq!((e.code, e.reason), (422, "Invalid"));
        assert_eq!(doc, before);
        assert_eq!(json_patch(&mut doc, &json!({"op": "add"})).unwrap_err().code, 400);
        assert_eq!(json_patch(&mut doc, &json!([{"op": "frobnicate", "path": "/a"}])).unwrap_err().code, 400);
        assert_eq!(json_patch(&mut doc, &json!([{"op": "remove", "path": "/nope"}])).unwrap_err().code, 422);
    }

    #[test]
    fn merge_patch_is_rfc_7386() {
        let mut doc = json!({"a": {"b": 1, "c": 2}, "l": [1, 2], "s": "x"});
        json_patch::merge(&mut doc, &json!({"a": {"b": null, "d": 3}, "l": [3], "s": {"t": 1}}));
        assert_eq!(doc, json!({"a": {"c": 2, "d": 3}, "l": [3], "s": {"t": 1}}));
    }
}
