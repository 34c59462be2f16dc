//! Field ownership: server-side apply (merge, conflicts, force, removal of dropped fields,
//! shared ownership) and the Update entries other writes record, kept in
//! `metadata.managedFields` as FieldsV1. Maps are granular; lists are atomic (as for custom
//! resources without list-type markers).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// A field path, e.g. `["data", "user"]`.
pub type Path = Vec<String>;
/// A set of owned fields.
pub type FieldSet = BTreeSet<Path>;

const STRIPPED_META: [&str; 8] =
    ["name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "selfLink", "managedFields"];

/// One managedFields entry.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Field manager.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// apiVersion the fields were set with.
    pub api_version: String,
    /// When.
    pub time: String,
    /// Owned fields.
    pub fields: FieldSet,
    /// `status` for the status subresource.
    pub subresource: Option<String>,
}

/// The leaf fields an object sets (apiVersion, kind, identity metadata and, with a status
/// subresource, status excluded).
pub fn leaves(v: &Value, skip_status: bool) -> FieldSet {
    let mut out = FieldSet::new();
    if let Some(m) = v.as_object() {
        for (k, x) in m {
            match k.as_str() {
                "apiVersion" | "kind" => {}
                "status" if skip_status => {}
                "metadata" => {
                    if let Some(meta) = x.as_object() {
                        for (mk, mv) in meta {
                            if !STRIPPED_META.contains(&mk.as_str()) {
                                walk(mv, vec!["metadata".into(), mk.clone()], &mut out);
                            }
                        }
                    }
                }
                _ => walk(x, vec![k.clone()], &mut out),
            }
        }
    }
    out
}

fn walk(v: &Value, path: Path, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                let mut p = path.clone();
                p.push(k.clone());
                walk(x, p, out);
            }
        }
        _ => {
            out.insert(path);
        }
    }
}

/// The value at a path.
pub fn get<'a>(v: &'a Value, p: &[String]) -> Option<&'a Value> {
    p.iter().try_fold(v, |cur, k| cur.get(k))
}

fn remove(v: &mut Value, p: &[String]) {
    if p.is_empty() {
        return;
    }
    let mut cur = v;
    for k in &p[..p.len() - 1] {
        match cur.get_mut(k) {
            Some(x) => cur = x,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(&p[p.len() - 1]);
    }
}

/// Deep-merges `patch` into `base`: maps merge key by key, everything else replaces.
pub fn merge(base: &mut Value, patch: &Value) {
    match (base.as_object_mut(), patch.as_object()) {
        (Some(b), Some(p)) => {
            for (k, v) in p {
                match b.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        _ => *base = patch.clone(),
    }
}

fn related(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Renders a path as the API server does: `.data.user`.
pub fn dotted(p: &Path) -> String {
    p.iter().map(|s| format!(".{s}")).collect()
}

/// FieldsV1 JSON of a set.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for p in set {
        let mut cur = &mut root;
        for k in p {
            let e = cur.entry(format!("f:{k}")).or_insert_with(|| json!({}));
            cur = e.as_object_mut().expect("inserted an object");
        }
    }
    Value::Object(root)
}

/// A set from FieldsV1 JSON (`.` and `k:`/`v:` markers are read as the node itself).
pub fn from_fields_v1(v: &Value) -> FieldSet {
    fn go(v: &Value, path: Path, out: &mut FieldSet) {
        let Some(m) = v.as_object() else { return };
        let children: Vec<(&String, &Value)> = m.iter().filter(|(k, _)| k.starts_with("f:")).collect();
        if children.is_empty() && !path.is_empty() {
            out.insert(path.clone());
        }
        for (k, x) in children {
            let mut p = path.clone();
            p.push(k[2..].to_string());
            go(x, p, out);
        }
    }
    let mut out = FieldSet::new();
    go(v, Vec::new(), &mut out);
    out
}

/// The entries of an object.
pub fn entries(obj: &Value) -> Vec<Entry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| Entry {
                    manager: e["manager"].as_str().unwrap_or("").into(),
                    operation: e["operation"].as_str().unwrap_or("Update").into(),
                    api_version: e["apiVersion"].as_str().unwrap_or("").into(),
                    time: e["time"].as_str().unwrap_or("").into(),
                    fields: from_fields_v1(&e["fieldsV1"]),
                    subresource: e["subresource"].as_str().map(String::from),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Writes entries back into the object (dropping empty ones).
pub fn set_entries(obj: &mut Value, list: &[Entry]) {
    let v: Vec<Value> = list
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut x = json!({"manager": e.manager, "operation": e.operation, "apiVersion": e.api_version, "time": e.time,
                               "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(&e.fields)});
            if let Some(s) = &e.subresource {
                x["subresource"] = json!(s);
            }
            x
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if v.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(v));
        }
    }
}

/// An apply conflict: another owner holds a field with a different value.
#[derive(Clone, Debug)]
pub struct Conflict {
    /// Who owns it, as printed (`"x"` or `"x" using v1`).
    pub owner: String,
    /// The field.
    pub field: String,
}

/// The conflict message and causes, as the API server words them.
pub fn conflict_message(conflicts: &[Conflict]) -> (String, Value) {
    let n = conflicts.len();
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {}", c.owner), "field": c.field}))
        .collect();
    let msg = if n == 1 {
        format!("Apply failed with 1 conflict: conflict with {}: {}", conflicts[0].owner, conflicts[0].field)
    } else {
        let mut owners: Vec<&String> = conflicts.iter().map(|c| &c.owner).collect();
        owners.dedup();
        let mut s = format!("Apply failed with {n} conflicts: ");
        for (i, o) in owners.iter().enumerate() {
            if i > 0 {
                s.push('\n');
            }
            s.push_str(&format!("conflicts with {o}:"));
            for c in conflicts.iter().filter(|c| &c.owner == *o) {
                s.push_str(&format!("\n- {}", c.field));
            }
        }
        s
    };
    (msg, Value::Array(causes))
}

/// Server-side apply of `applied` by `manager` over `live` (None: create). Returns the new
/// object, or the conflicts when `force` is off.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    api_version: &str,
    now: &str,
    skip_status: bool,
) -> Result<Value, Vec<Conflict>> {
    let applied_set = leaves(applied, skip_status);
    let mut obj = live.cloned().unwrap_or_else(|| json!({"metadata": {}}));
    let mut list = entries(&obj);
    let mine = |e: &Entry| e.manager == manager && e.operation == "Apply" && e.subresource.is_none();
    let mut conflicts = Vec::new();
    if live.is_some() {
        for e in list.iter().filter(|e| !mine(e)) {
            for p in &applied_set {
                for owned in e.fields.iter().filter(|o| related(o, p)) {
                    let (a, b) = (get(&obj, owned), get(applied, owned));
                    if b.is_some() && a != b {
                        let owner = if e.operation == "Apply" {
                            format!("\"{}\"", e.manager)
                        } else {
                            format!("\"{}\" using {}", e.manager, e.api_version)
                        };
                        conflicts.push(Conflict { owner, field: dotted(owned) });
                    }
                }
            }
        }
        conflicts.sort_by(|a, b| (&a.owner, &a.field).cmp(&(&b.owner, &b.field)));
        conflicts.dedup_by(|a, b| a.owner == b.owner && a.field == b.field);
        if !conflicts.is_empty() && !force {
            return Err(conflicts);
        }
    }
    if force {
        for e in list.iter_mut().filter(|e| !mine(e)) {
            e.fields.retain(|owned| {
                !applied_set.iter().any(|p| related(owned, p) && get(&obj, owned) != get(applied, owned))
            });
        }
    }
    // Fields this manager applied before but not now go, unless someone else owns them.
    let previous: FieldSet = list.iter().filter(|e| mine(e)).flat_map(|e| e.fields.iter().cloned()).collect();
    for p in previous.difference(&applied_set) {
        let owned_elsewhere = list.iter().filter(|e| !mine(e)).any(|e| e.fields.iter().any(|o| related(o, p)));
        if !owned_elsewhere {
            remove(&mut obj, p);
        }
    }
    let mut patch = applied.clone();
    if let Some(meta) = patch.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    merge(&mut obj, &patch);
    list.retain(|e| !mine(e));
    list.insert(
        0,
        Entry {
            manager: manager.into(),
            operation: "Apply".into(),
            api_version: api_version.into(),
            time: now.into(),
            fields: applied_set,
            subresource: None,
        },
    );
    set_entries(&mut obj, &list);
    Ok(obj)
}

/// Records an Update by `manager` that turned `old` into `new`: it takes the changed fields.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    now: &str,
    skip_status: bool,
) {
    let mut list = old.map(entries).unwrap_or_default();
    let before = old.map(|o| leaves(o, skip_status)).unwrap_or_default();
    let after = leaves(new, skip_status);
    let changed: FieldSet = after
        .iter()
        .filter(|p| old.is_none_or(|o| get(o, p) != get(new, p)) || !before.contains(*p))
        .cloned()
        .collect();
    let removed: FieldSet = before.difference(&after).cloned().collect();
    if changed.is_empty() && removed.is_empty() {
        set_entries(new, &list);
        return;
    }
    for e in list.iter_mut() {
        e.fields.retain(|p| !changed.contains(p) && !removed.contains(p));
    }
    match list.iter_mut().find(|e| e.manager == manager && e.operation == "Update" && e.subresource.is_none()) {
        Some(e) => {
            e.fields.extend(changed);
            e.time = now.into();
        }
        None => list.push(Entry {
            manager: manager.into(),
            operation: "Update".into(),
            api_version: api_version.into(),
            time: now.into(),
            fields: changed,
            subresource: None,
        }),
    }
    set_entries(new, &list);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_conflicts_force_and_removal() {
        let now = "2026-11-22T00:00:00Z";
        let a = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "labels": {"x": "1"}}, "data": {"user": "YQ=="}});
        let o = apply(None, &a, "first", false, "v1", now, false).unwrap();
        assert_eq!(o["data"]["user"], "YQ==");
        // Same value: shared, no conflict.
        let same = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"user": "YQ=="}});
        let o = apply(Some(&o), &same, "second", false, "v1", now, false).unwrap();
        // Different value: conflict, then force.
        let other = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"user": "Yg=="}});
        let c = apply(Some(&o), &other, "third", false, "v1", now, false).unwrap_err();
        let (msg, _) = conflict_message(&c);
        assert!(msg.starts_with("Apply failed with 2 conflicts: conflicts with \"first\":"), "{msg}");
        let o = apply(Some(&o), &other, "third", true, "v1", now, false).unwrap();
        assert_eq!(o["data"]["user"], "Yg==");
        // first drops its label: removed, since nobody else owns it.
        let first_again = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}});
        let o = apply(Some(&o), &first_again, "first", false, "v1", now, false).unwrap();
        assert!(o["metadata"]["labels"].get("x").is_none(), "{o}");
        assert_eq!(from_fields_v1(&to_fields_v1(&leaves(&a, false))), leaves(&a, false));
    }
}
