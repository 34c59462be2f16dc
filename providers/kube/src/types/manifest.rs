//! `k8s_manifest`: any objects, given inline (`manifest`, a table or a list of tables), as YAML
//! text (`yaml`, multi-document) or as a file (`file`, relative to the desired-state file), with
//! an optional label `selector` taking only matching documents (like `kubectl create -l`).
//! Applied with server-side apply; planned with a server-side dry-run; `objects` holds each
//! object reduced to the fields meshform applied, which is all that is compared for drift.
//! `force` (default true) takes fields another manager changed back; `force = false` refuses
//! with the conflict instead.

use std::time::Duration;

use async_trait::async_trait;
use meshform_engine::provider::{
    AttrSchema, AttrType, ErrorKind, Planned, Poll, Presence, ProviderError, ProviderResult, TypeKind, TypeSchema,
};
use meshform_engine::value::{Map, Value};
use serde_json::Value as J;

use super::{KubeType, req, s};
use crate::conn::Kube;
use crate::objects::{self, ObjRef, clean, project, ref_of};

/// The type.
pub struct Manifest;

/// The documents a manifest describes; `None` while some value is known only after apply.
pub fn documents(m: &Map, dir: &std::path::Path) -> ProviderResult<Option<Vec<J>>> {
    let mut docs: Vec<J> = Vec::new();
    if let Some(v) = m.get("manifest") {
        if v.has_unknown() {
            return Ok(None);
        }
        match v.to_plain_json() {
            J::Array(items) => docs.extend(items),
            J::Null => {}
            one => docs.push(one),
        }
    }
    let mut texts = Vec::new();
    match m.get("yaml") {
        Some(Value::Unknown) => return Ok(None),
        Some(v) => texts.extend(v.to_interpolated()),
        None => {}
    }
    // `file_text` is the file rendered by meshform (a literal `file` path); a computed path is read
    // as it is.
    match (m.get("file_text"), s(m, "file")) {
        (Some(Value::Unknown), _) => return Ok(None),
        (Some(Value::String(t)), _) => texts.push(t.clone()),
        (_, Some(f)) => {
            let path = dir.join(&f);
            texts.push(
                meshform_engine::files::read_text(&path).map_err(|e| {
                    ProviderError::new(ErrorKind::Invalid, format!("cannot read {}: {e}", path.display()))
                })?,
            );
        }
        _ => {}
    }
    for text in texts {
        let parsed: Vec<J> = serde_saphyr::from_multiple(&text).map_err(|e| {
            let e = e.to_string();
            let first = e.lines().next().unwrap_or_default().trim_start_matches("error: ").to_string();
            ProviderError::new(ErrorKind::Invalid, format!("invalid YAML: {first}"))
        })?;
        for v in parsed {
            match v {
                J::Null => {}
                J::Object(ref o) if o.get("kind").and_then(J::as_str) == Some("List") => {
                    docs.extend(o.get("items").and_then(J::as_array).cloned().unwrap_or_default())
                }
                other => docs.push(other),
            }
        }
    }
    if let Some(sel) = s(m, "selector") {
        let reqs = parse_selector(&sel)?;
        docs.retain(|d| reqs.iter().all(|r| r.matches(&d["metadata"]["labels"])));
    }
    for d in &docs {
        ref_of(d)?;
    }
    Ok(Some(docs))
}

/// One requirement of a label selector, as `kubectl -l` takes them.
#[derive(Debug, PartialEq)]
enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    Absent(String),
}

impl Requirement {
    fn matches(&self, labels: &J) -> bool {
        let get = |k: &str| labels.get(k).and_then(J::as_str);
        match self {
            Requirement::In(k, vs) => get(k).is_some_and(|v| vs.iter().any(|x| x == v)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|v| vs.iter().all(|x| x != v)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::Absent(k) => get(k).is_none(),
        }
    }
}

/// Parses `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x,y)`, `a` and `!a`, comma-separated.
fn parse_selector(sel: &str) -> ProviderResult<Vec<Requirement>> {
    let bad = |part: &str| {
        ProviderError::new(
            ErrorKind::Invalid,
            format!(
                "selector `{sel}`: cannot read `{part}`; expected KEY=VALUE, KEY!=VALUE, KEY in (A,B), KEY notin (A,B), KEY or !KEY"
            ),
        )
    };
    let valid = |k: &str| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in sel.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&sel[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&sel[start..]);
    let mut out = Vec::new();
    for part in parts {
        let p = part.trim();
        let set = |rest: &str| -> Option<Vec<String>> {
            let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
            Some(inner.split(',').map(|v| v.trim().to_string()).collect())
        };
        let r = if let Some((k, v)) = p.split_once("!=") {
            Requirement::NotIn(k.trim().into(), vec![v.trim().into()])
        } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
            Requirement::In(k.trim().into(), vec![v.trim().into()])
        } else if let Some((k, rest)) = p.split_once(" notin ") {
            Requirement::NotIn(k.trim().into(), set(rest).ok_or_else(|| bad(p))?)
        } else if let Some((k, rest)) = p.split_once(" in ") {
            Requirement::In(k.trim().into(), set(rest).ok_or_else(|| bad(p))?)
        } else if let Some(k) = p.strip_prefix('!') {
            Requirement::Absent(k.trim().into())
        } else {
            Requirement::Exists(p.into())
        };
        let key = match &r {
            Requirement::In(k, _) | Requirement::NotIn(k, _) | Requirement::Exists(k) | Requirement::Absent(k) => k,
        };
        if !valid(key) {
            return Err(bad(p));
        }
        out.push(r);
    }
    Ok(out)
}

/// The objects meshform applied: `objects`, or, when that is recorded only as a hash (a Secret),
/// their outline in `applied`.
fn objects_of(m: &Map) -> Vec<J> {
    ["objects", "applied"]
        .iter()
        .find_map(|a| m.get(*a).map(Value::to_plain_json).and_then(|j| j.as_array().cloned()))
        .unwrap_or_default()
}

/// A document's outline: its field names, with no values but those naming the object and the
/// keys of list items (`name`, `port`, ...). Enough to find the object again and to project the
/// live object onto the fields meshform applied, as `objects` is projected.
fn outline(doc: &J) -> J {
    // `item`: this object is an item of a list, whose merge-key value is kept (never a value of
    // a map such as a Secret's `data`).
    fn keys(v: &J, item: bool) -> J {
        match v {
            J::Object(o) => J::Object(
                o.iter()
                    .map(|(k, v)| {
                        let keep =
                            item && crate::objects::MERGE_KEYS.contains(&k.as_str()) && !v.is_object() && !v.is_array();
                        (k.clone(), if keep { v.clone() } else { keys(v, false) })
                    })
                    .collect(),
            ),
            J::Array(items) => J::Array(items.iter().map(|i| keys(i, true)).collect()),
            _ => J::Null,
        }
    }
    let mut out = keys(doc, false);
    for k in ["apiVersion", "kind"] {
        out[k] = doc[k].clone();
    }
    for k in ["name", "namespace"] {
        if !doc["metadata"][k].is_null() {
            out["metadata"][k] = doc["metadata"][k].clone();
        }
    }
    out
}

/// Records the outline of Secret documents, whose `objects` only a hash stands for in state.
fn record_outline(m: &mut Map, docs: &[J]) {
    if has_secret(docs) {
        m.insert("applied".into(), Value::from_json(&J::Array(docs.iter().map(outline).collect())));
    } else {
        m.remove("applied");
    }
}

/// Records the health gates apply waits on (`waits`: "Deployment sample/helloworld-v1:
/// Available"), so that the plan shows them; none with `wait_for` set.
fn record_waits(m: &mut Map, docs: &[J]) {
    let waits: Vec<Value> = match m.get("wait_for") {
        Some(Value::Map(_) | Value::Bool(false)) => Vec::new(),
        _ => docs
            .iter()
            .flat_map(crate::health::gates_of)
            .map(|(r, gate)| Value::str(format!("{r}: {}", gate.what)))
            .collect(),
    };
    if waits.is_empty() {
        m.remove("waits");
    } else {
        m.insert("waits".into(), Value::List(waits));
    }
}

/// The documents of an inline `manifest` whose values are partly unknown, when everything its
/// health gates depend on is known (each document's kind and name, and an IstioOperator's
/// `components`): the plan then shows the waits apply will make. None otherwise.
fn known_gates(m: &Map) -> Option<Vec<J>> {
    if m.contains_key("yaml") || m.contains_key("file") {
        return None;
    }
    let docs: Vec<&Value> = match m.get("manifest")? {
        Value::List(items) => items.iter().collect(),
        one => vec![one],
    };
    let mut out = Vec::new();
    for d in docs {
        let Value::Map(doc) = d else { return None };
        let meta = doc.get("metadata").and_then(Value::as_map);
        let known = |v: Option<&Value>| v.is_none_or(|v| !v.has_unknown());
        let spec_components = doc.get("spec").and_then(Value::as_map).and_then(|s| s.get("components"));
        if !known(doc.get("apiVersion"))
            || !known(doc.get("kind"))
            || !known(meta.and_then(|m| m.get("name")))
            || !known(meta.and_then(|m| m.get("namespace")))
            || !known(spec_components)
        {
            return None;
        }
        out.push(d.to_plain_json());
    }
    Some(out)
}

fn has_secret(docs: &[J]) -> bool {
    docs.iter().any(|d| d["kind"] == "Secret")
}

impl Manifest {
    async fn wait_for(&self, k: &Kube, cluster: &str, doc: &J, spec: &Map) -> ProviderResult<()> {
        let r = ref_of(doc)?;
        let timeout = match spec.get("timeout_seconds") {
            Some(Value::Int(t)) if *t > 0 => Duration::from_secs(*t as u64),
            _ => k.conns.settings.wait_timeout,
        };
        let condition = s(spec, "condition");
        let field = s(spec, "field");
        let want = s(spec, "value");
        let holds = |live: &J| match (&condition, &field) {
            (Some(c), _) => live["status"]["conditions"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|x| x["type"] == c.as_str() && x["status"] == "True")),
            (None, Some(f)) => {
                let v = f.split('.').fold(live, |cur, p| &cur[p]);
                match &want {
                    Some(w) => {
                        v.as_str().map(String::from).or_else(|| (!v.is_null()).then(|| v.to_string())).as_deref()
                            == Some(w.as_str())
                    }
                    None => !v.is_null(),
                }
            }
            (None, None) => true,
        };
        let check = || async { Ok(objects::get(k, cluster, &r).await?.filter(|l| holds(l)).map(|_| ())) };
        let timed_out = || {
            ProviderError::new(
                ErrorKind::Transient,
                format!("{r} in cluster `{cluster}` did not satisfy wait_for within {timeout:?}"),
            )
        };
        Poll::new(timeout, Duration::from_millis(200), Duration::from_millis(200)).until(check, timed_out).await
    }

    async fn converge(&self, k: &Kube, prior: Option<&Map>, planned: &Map) -> ProviderResult<Map> {
        let cluster = req(planned, "cluster")?;
        let docs = documents(planned, &k.dir)?
            .ok_or_else(|| ProviderError::new(ErrorKind::Invalid, "manifest still has unknown values at apply"))?;
        let force = !matches!(planned.get("force"), Some(Value::Bool(false)));
        // Objects no longer described are deleted: after the new ones exist with
        // create_before_destroy (a canary revision), else first, as the plan said.
        // The same object under another apiVersion of its group is kept, not deleted.
        let gone: Vec<ObjRef> = match prior {
            Some(prior) => {
                let keep: Vec<_> = docs.iter().filter_map(|d| ref_of(d).ok()).collect();
                objects_of(prior)
                    .iter()
                    .rev()
                    .filter_map(|o| ref_of(o).ok())
                    .filter(|r| !keep.iter().any(|k| same_object(k, r)))
                    .collect()
            }
            None => Vec::new(),
        };
        if !k.create_before_destroy {
            for r in &gone {
                objects::delete(k, &cluster, r).await?;
            }
        }
        let mut out = Vec::new();
        for d in &docs {
            let live = objects::apply(k, &cluster, d, force, false).await?;
            match planned.get("wait_for") {
                Some(Value::Map(w)) => self.wait_for(k, &cluster, d, w).await?,
                Some(Value::Bool(false)) => {}
                _ => {
                    let timeout = k.timeout.unwrap_or(k.conns.settings.wait_timeout);
                    for (r, gate) in crate::health::gates_of(d) {
                        crate::health::wait(k, &cluster, &r, gate, timeout).await?;
                    }
                }
            }
            out.push(clean(project(&live, d)));
        }
        if k.create_before_destroy {
            for r in &gone {
                objects::delete(k, &cluster, r).await?;
            }
        }
        let mut m = planned.clone();
        m.insert("objects".into(), Value::from_json(&J::Array(out)));
        record_outline(&mut m, &docs);
        let ids: Vec<String> = docs.iter().filter_map(|d| ref_of(d).ok()).map(|r| r.to_string()).collect();
        m.insert("id".into(), Value::str(format!("{cluster}: {}", ids.join(", "))));
        Ok(m)
    }
}

#[async_trait]
impl KubeType for Manifest {
    fn schema(&self) -> TypeSchema {
        TypeSchema::new("k8s_manifest", TypeKind::Managed, "Kubernetes objects applied with server-side apply.")
            .import_id("CLUSTER;APIVERSION;KIND;NAMESPACE;NAME")
            .attr(AttrSchema::new("cluster", AttrType::String, Presence::Required).force_new().lives_in())
            .attr(AttrSchema::new("manifest", AttrType::Any, Presence::Optional).shown_by("objects"))
            .attr(AttrSchema::new("yaml", AttrType::String, Presence::Optional).shown_by("objects"))
            .attr(
                AttrSchema::new("file", AttrType::String, Presence::Optional)
                    .template_file()
                    .describe("a YAML file, relative to the desired-state file; its ${...} references are rendered"),
            )
            .attr(
                AttrSchema::new("file_text", AttrType::String, Presence::Optional)
                    .shown_by("objects")
                    .describe("the rendered text of `file` (meshform sets it)"),
            )
            .attr(AttrSchema::new("selector", AttrType::String, Presence::Optional))
            .attr(AttrSchema::new("force", AttrType::Bool, Presence::Optional))
            .attr(AttrSchema::new("wait_for", AttrType::Any, Presence::Optional).describe(
                "a table { condition | field [+ value], timeout_seconds } to wait for after each apply; false: not even the kind's health gate",
            ))
            .attr(AttrSchema::new("waits", AttrType::List(Box::new(AttrType::String)), Presence::Computed).describe(
                "the health gates apply waits on after a create or update (a Deployment Available, a CRD Established, a ControlPlaneRevision Reconciled, an IstioOperator HEALTHY, a MultiClusterIngress with its VIP)",
            ))
            .attr(AttrSchema::new("objects", AttrType::Any, Presence::Computed))
            .attr(AttrSchema::new("applied", AttrType::Any, Presence::Computed).describe(
                "For Secrets: the outline (field names) of what was applied, since `objects` is stored as a hash.",
            ))
            .attr(AttrSchema::new("id", AttrType::String, Presence::Computed))
    }

    fn sensitive_in(&self, attrs: &Map) -> Vec<String> {
        let inline = match attrs.get("manifest").map(Value::to_plain_json) {
            Some(J::Array(items)) => items,
            Some(one) => vec![one],
            None => vec![],
        };
        // YAML text, even while parts of it are unknown: any document whose kind is Secret.
        let yaml = [attrs.get("yaml"), attrs.get("file_text")]
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("\n---\n");
        let yaml = yaml.as_str();
        // Any document that parses as a Secret (the others may not parse: the text is checked).
        let yaml_secret = yaml
            .split("\n---")
            .any(|doc| serde_saphyr::from_multiple::<J>(doc).is_ok_and(|ds| ds.iter().any(|d| d["kind"] == "Secret")));
        let secret = has_secret(&objects_of(attrs))
            || has_secret(&inline)
            || yaml_secret
            || yaml
                .lines()
                .any(|l| l.split('#').next().unwrap_or("").trim().trim_matches(['"', '\'']) == "kind: Secret");
        if secret { vec!["manifest".into(), "yaml".into(), "file_text".into(), "objects".into()] } else { Vec::new() }
    }

    async fn plan(&self, k: &Kube, prior: Option<&Map>, mut p: Planned) -> ProviderResult<Planned> {
        let Some(docs) = documents(&p.attrs, &k.dir)? else {
            // Not all known yet: what is known of a Secret is still hidden.
            p.sensitive.extend(self.sensitive_in(&p.attrs));
            p.attrs.insert("objects".into(), Value::Unknown);
            p.attrs.insert("applied".into(), Value::Unknown);
            if !matches!(p.attrs.get("wait_for"), Some(Value::Map(_) | Value::Bool(false))) {
                match known_gates(&p.attrs) {
                    Some(docs) => record_waits(&mut p.attrs, &docs),
                    None => {
                        p.attrs.insert("waits".into(), Value::Unknown);
                    }
                }
            }
            return Ok(p);
        };
        if has_secret(&docs) {
            p.sensitive.extend(["manifest".to_string(), "yaml".into(), "file_text".into(), "objects".into()]);
        }
        record_outline(&mut p.attrs, &docs);
        record_waits(&mut p.attrs, &docs);
        if let Some(prior) = prior {
            p.object_changes = identity_changes(&objects_of(prior), &docs, k.create_before_destroy);
        }
        let cluster = req(&p.attrs, "cluster")?;
        let force = !matches!(p.attrs.get("force"), Some(Value::Bool(false)));
        let mut out = Vec::new();
        for d in &docs {
            // A live object (the run's snapshot) that already holds every field as the document
            // sets it is what a forced server-side apply would leave: no dry-run needed (a
            // fleet's no-change plan costs no call per object). Anything else, a Secret, or
            // `force = false` (whose conflicts only the server can tell) is dry-run. An admission
            // webhook that would now refuse the unchanged object is seen at apply, not here.
            if force
                && d["kind"] != "Secret"
                && let Some(live) = objects::read(k, &cluster, &ref_of(d)?).await?
                && project(&live, d) == *d
            {
                out.push(clean(project(&live, d)));
                continue;
            }
            match objects::apply(k, &cluster, d, force, true).await {
                Ok(would_be) => out.push(clean(project(&would_be, d))),
                // Its kind or namespace comes with this apply: known only then.
                Err(e) if e.kind == ErrorKind::NotFound => {
                    p.attrs.insert("objects".into(), Value::Unknown);
                    return Ok(p);
                }
                Err(e) => return Err(e),
            }
        }
        p.attrs.insert("objects".into(), Value::from_json(&J::Array(out)));
        Ok(p)
    }

    async fn read(&self, k: &Kube, prior: &Map) -> ProviderResult<Option<Map>> {
        let cluster = req(prior, "cluster")?;
        let mut out = Vec::new();
        let applied = objects_of(prior);
        for a in &applied {
            // One object deleted out of band is missing from `objects` (drift names it, apply
            // makes it again); the manifest is gone only when all of its objects are.
            if let Some(live) = objects::read(k, &cluster, &ref_of(a)?).await? {
                out.push(clean(project(&live, a)));
            }
        }
        if out.is_empty() && !applied.is_empty() {
            return Ok(None);
        }
        let mut m = prior.clone();
        m.insert("objects".into(), Value::from_json(&J::Array(out)));
        Ok(Some(m))
    }

    async fn create(&self, k: &Kube, planned: &Map) -> ProviderResult<Map> {
        self.converge(k, None, planned).await
    }

    async fn update(&self, k: &Kube, prior: &Map, planned: &Map) -> ProviderResult<Map> {
        self.converge(k, Some(prior), planned).await
    }

    async fn delete(&self, k: &Kube, prior: &Map) -> ProviderResult<()> {
        let cluster = req(prior, "cluster")?;
        for applied in objects_of(prior).iter().rev() {
            objects::delete(k, &cluster, &ref_of(applied)?).await?;
        }
        Ok(())
    }

    async fn import(&self, k: &Kube, id: &str) -> ProviderResult<Map> {
        // CLUSTER;APIVERSION;KIND;NAMESPACE;NAME (NAMESPACE empty for cluster-scoped kinds).
        let p: Vec<&str> = id.split(';').collect();
        let [cluster, api_version, kind, ns, name] = p.as_slice() else {
            return Err(ProviderError::new(
                ErrorKind::Invalid,
                format!("import id `{id}`: expected CLUSTER;APIVERSION;KIND;NAMESPACE;NAME"),
            ));
        };
        let r = objects::ObjRef {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            namespace: (!ns.is_empty()).then(|| ns.to_string()),
            name: name.to_string(),
        };
        let live = objects::get(k, cluster, &r)
            .await?
            .ok_or_else(|| ProviderError::new(ErrorKind::NotFound, format!("no {r} in cluster `{cluster}`")))?;
        let mut obj = clean(live);
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
        }
        let mut m =
            Map::from([("cluster".into(), Value::str(*cluster)), ("id".into(), Value::str(format!("{cluster}: {r}")))]);
        record_outline(&mut m, std::slice::from_ref(&obj));
        m.insert("objects".into(), Value::from_json(&J::Array(vec![obj])));
        Ok(m)
    }
}

/// Whether two references name one object: the same API group (any version), kind, namespace
/// and name.
fn same_object(a: &ObjRef, b: &ObjRef) -> bool {
    let group = |r: &ObjRef| r.api_version.rsplit_once('/').map_or(String::new(), |(g, _)| g.to_string());
    group(a) == group(b) && a.kind == b.kind && a.namespace == b.namespace && a.name == b.name
}

/// The objects an update creates and deletes: an object whose identity (apiVersion group, kind,
/// namespace, name) is no longer described is deleted, a newly described one created; a deleted
/// object of the same kind and namespace as a created one is said to be replaced by it.
fn identity_changes(before: &[J], after: &[J], create_first: bool) -> Vec<meshform_engine::provider::ObjectChange> {
    use meshform_engine::provider::ObjectChange;
    let same = same_object;
    let old: Vec<ObjRef> = before.iter().filter_map(|d| ref_of(d).ok()).collect();
    let new: Vec<ObjRef> = after.iter().filter_map(|d| ref_of(d).ok()).collect();
    let created: Vec<&ObjRef> = new.iter().filter(|n| !old.iter().any(|o| same(o, n))).collect();
    let mut out = Vec::new();
    for o in old.iter().filter(|o| !new.iter().any(|n| same(o, n))) {
        let by = created.iter().find(|n| n.kind == o.kind && n.namespace == o.namespace);
        let reason = match by {
            Some(n) if create_first => format!("replaced by {n}, which is created first (create_before_destroy)"),
            Some(n) => format!(
                "replaced by {n}; deleted first, then {n} is created (lifecycle.create_before_destroy creates it first)"
            ),
            None => "no longer in the manifest".to_string(),
        };
        out.push(ObjectChange { action: "delete".into(), object: o.to_string(), reason: Some(reason) });
    }
    for n in created {
        out.push(ObjectChange { action: "create".into(), object: n.to_string(), reason: None });
    }
    out
}

/// Findings of `drift` and `plan`: objects of the manifests in state that have a health gate
/// (and did not opt out) and are present but not healthy now: a Deployment whose pods stopped
/// being available, a control plane revision that stalled.
pub async fn unhealthy(k: &Kube, objects: &[(String, Map)]) -> ProviderResult<Vec<meshform_engine::provider::Finding>> {
    let mut out = Vec::new();
    for (_, m) in objects.iter().filter(|(ty, m)| ty == "k8s_manifest" && m.contains_key("waits")) {
        let Some(cluster) = s(m, "cluster") else { continue };
        for (r, gate) in objects_of(m).iter().flat_map(crate::health::gates_of) {
            let Some(live) = objects::read(k, &cluster, &r).await? else { continue };
            if let crate::health::Health::Pending(why) | crate::health::Health::Failed(why) = gate.health(&live) {
                out.push(meshform_engine::provider::Finding {
                    kind: "unhealthy".into(),
                    message: format!("cluster `{cluster}`: {r} is not {}: {why}", gate.what),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> J {
        J::Object(pairs.iter().map(|(k, v)| (k.to_string(), J::String(v.to_string()))).collect())
    }

    #[test]
    fn selectors_take_what_kubectl_takes_and_refuse_the_rest() {
        let l = labels(&[("app", "helloworld"), ("version", "v1")]);
        let ok = |sel: &str| parse_selector(sel).unwrap().iter().all(|r| r.matches(&l));
        assert!(ok("app=helloworld,version=v1"));
        assert!(ok("app==helloworld"));
        assert!(!ok("version!=v1"));
        assert!(ok("version in (v1, v2)") && !ok("version notin (v1,v2)"));
        assert!(ok("app") && !ok("!app") && ok("!tier"));
        assert!(ok("version in (v1,v2),app=helloworld"));
        for bad in ["version in v1", "=v1", "a b=c", ""] {
            assert!(parse_selector(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_outline_keeps_names_and_drops_values() {
        let doc = serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "namespace": "n", "labels": {"a": "b"}},
            "data": {"password": "c2VjcmV0"}
        });
        let o = outline(&doc);
        assert_eq!(ref_of(&o).unwrap(), ref_of(&doc).unwrap());
        assert_eq!(o["data"]["password"], J::Null);
        let with_list = serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": {"name": "c2VjcmV0"}, "x": [{"name": "a", "value": "hidden"}]});
        let o = outline(&with_list);
        assert_eq!(o["data"]["name"], J::Null, "a data key called name keeps no value");
        assert_eq!(o["x"][0]["name"], "a", "list items keep their merge key");
        assert_eq!(o["x"][0]["value"], J::Null);
        assert_eq!(o["metadata"]["labels"]["a"], J::Null);
        assert!(!o.to_string().contains("c2VjcmV0"));
    }
}
