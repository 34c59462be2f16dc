//! Reads of collections: lists (label and field selectors), Tables as `kubectl get` asks for
//! them, and watches (from now, or resumed from a resourceVersion still in the history).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::resources::ResourceDef;
use super::selectors::{FieldSelector, LabelSelector};
use super::state::{Key, KubeServer, served};
use super::status::KResult;
use super::wire::{json_response, ok};

/// The label and field selectors of a list or watch.
fn selectors(def: &ResourceDef, q: &BTreeMap<String, String>) -> KResult<(LabelSelector, FieldSelector)> {
    let ls = LabelSelector::parse(q.get("labelSelector").map_or("", String::as_str))?;
    let fs = FieldSelector::parse(q.get("fieldSelector").map_or("", String::as_str), &def.field_selectors)?;
    Ok((ls, fs))
}

/// Whether an object of `def` in `ns` (any, when empty) passes the selectors.
fn matches(def: &ResourceDef, ns: &str, k: &Key, v: &Value, ls: &LabelSelector, fs: &FieldSelector) -> bool {
    k.0 == def.group && k.1 == def.plural && (ns.is_empty() || k.2 == ns) && ls.matches(v) && fs.matches(v)
}

/// A list, or a Table when asked for.
pub fn list(
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

/// How long ago an RFC 3339 time was, as kubectl prints ages.
fn age(ts: &str) -> String {
    let secs = crate::support::parse_rfc3339(ts).map_or(0, |t| (crate::support::unix_secs() - t).max(0));
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// One cell of a Table row.
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
        "external-ip" => match obj["status"]["loadBalancer"]["ingress"].as_array() {
            Some(ips) if !ips.is_empty() => {
                json!(ips.iter().filter_map(|i| i["ip"].as_str()).collect::<Vec<_>>().join(","))
            }
            _ if obj["spec"]["type"] == "LoadBalancer" => json!("<pending>"),
            _ => json!("<none>"),
        },
        "ports" => {
            let ports: Vec<String> = obj["spec"]["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| format!("{}/{}", p["port"], p["protocol"].as_str().unwrap_or("TCP")))
                .collect();
            json!(if ports.is_empty() { "<none>".to_string() } else { ports.join(",") })
        }
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
pub fn to_table(def: &ResourceDef, objs: &[Value], with_columns: bool) -> Value {
    let mut cols = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
    ];
    for (n, t, _) in &def.columns {
        let ty = if t == "date" { "string" } else { t.as_str() };
        cols.push(json!({"name": n, "type": ty, "format": "", "description": n, "priority": 0}));
    }
    // A kind that names its own Age column (a CRD's printer columns) gets no second one.
    let own_age = def.columns.iter().any(|(n, _, _)| n == "Age");
    if !own_age {
        cols.push(
            json!({"name": "Age", "type": "string", "format": "", "description": "CreationTimestamp", "priority": 0}),
        );
    }
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let mut cells = vec![o["metadata"]["name"].clone()];
            for (_, t, p) in &def.columns {
                cells.push(cell(o, t, p));
            }
            if !own_age {
                cells.push(json!(age(o["metadata"]["creationTimestamp"].as_str().unwrap_or(""))));
            }
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

/// A watch: the current objects (or the changes since `resourceVersion`), then live changes
/// until `timeoutSeconds` (the client's, 30 minutes by default).
pub fn watch(
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

/// The streaming reply of a watch.
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
