//! `k8s_manifest`: any objects, given inline (`manifest`, a table or a list of tables), as YAML
//! text (`yaml`, multi-document) or as a file (`file`, relative to the desired-state file), with
//! an optional label `selector` taking only matching documents (like `kubectl create -l`).
//! Applied with server-side apply; planned with a server-side dry-run; `objects` holds each
//! object reduced to the fields meshform applied, which is all that is compared for drift.
//! `force` (default true) takes fields another manager changed back; `force = false` refuses
//! with the conflict instead.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use meshform_engine::provider::{
    AttrSchema, AttrType, ErrorKind, Planned, Presence, ProviderError, ProviderResult, TypeKind, TypeSchema,
};
use meshform_engine::value::{Map, Value};
use serde_json::Value as J;

use super::{KubeType, req, s};
use crate::conn::Kube;
use crate::objects::{self, clean, project, ref_of};

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
    if let Some(f) = s(m, "file") {
        let path = dir.join(&f);
        texts.push(
            std::fs::read_to_string(&path)
                .map_err(|e| ProviderError::new(ErrorKind::Invalid, format!("cannot read {}: {e}", path.display())))?,
        );
    }
    for text in texts {
        for d in serde_yaml_ng::Deserializer::from_str(&text) {
            let v: J = serde::Deserialize::deserialize(d)
                .map_err(|e| ProviderError::new(ErrorKind::Invalid, format!("invalid YAML: {e}")))?;
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
        let reqs: Vec<(String, String)> = sel
            .split(',')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim().trim_end_matches('=').into(), v.trim().into()))
            .collect();
        docs.retain(|d| reqs.iter().all(|(k, v)| d["metadata"]["labels"][k.as_str()].as_str() == Some(v.as_str())));
    }
    for d in &docs {
        ref_of(d)?;
    }
    Ok(Some(docs))
}

fn objects_of(m: &Map) -> Vec<J> {
    m.get("objects").map(Value::to_plain_json).and_then(|j| j.as_array().cloned()).unwrap_or_default()
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
        let started = Instant::now();
        loop {
            if let Some(live) = objects::get(k, cluster, &r).await? {
                let ok = match (&condition, &field) {
                    (Some(c), _) => live["status"]["conditions"]
                        .as_array()
                        .is_some_and(|cs| cs.iter().any(|x| x["type"] == c.as_str() && x["status"] == "True")),
                    (None, Some(f)) => {
                        let v = f.split('.').fold(&live, |cur, p| &cur[p]);
                        match &want {
                            Some(w) => {
                                v.as_str()
                                    .map(String::from)
                                    .or_else(|| (!v.is_null()).then(|| v.to_string()))
                                    .as_deref()
                                    == Some(w.as_str())
                            }
                            None => !v.is_null(),
                        }
                    }
                    (None, None) => true,
                };
                if ok {
                    return Ok(());
                }
            }
            if started.elapsed() > timeout {
                return Err(ProviderError::new(
                    ErrorKind::Transient,
                    format!("{r} in cluster `{cluster}` did not satisfy wait_for within {timeout:?}"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn converge(&self, k: &Kube, prior: Option<&Map>, planned: &Map) -> ProviderResult<Map> {
        let cluster = req(planned, "cluster")?;
        let docs = documents(planned, &k.dir)?
            .ok_or_else(|| ProviderError::new(ErrorKind::Invalid, "manifest still has unknown values at apply"))?;
        let force = !matches!(planned.get("force"), Some(Value::Bool(false)));
        let mut out = Vec::new();
        for d in &docs {
            let live = objects::apply(k, &cluster, d, force, false).await?;
            if let Some(Value::Map(w)) = planned.get("wait_for") {
                self.wait_for(k, &cluster, d, w).await?;
            }
            out.push(clean(project(&live, d)));
        }
        // Objects no longer described are deleted.
        if let Some(prior) = prior {
            let keep: Vec<_> = docs.iter().filter_map(|d| ref_of(d).ok()).collect();
            for old in objects_of(prior).iter().rev() {
                if let Ok(r) = ref_of(old)
                    && !keep.contains(&r)
                {
                    objects::delete(k, &cluster, &r).await?;
                }
            }
        }
        let mut m = planned.clone();
        m.insert("objects".into(), Value::from_json(&J::Array(out)));
        let ids: Vec<String> = docs.iter().filter_map(|d| ref_of(d).ok()).map(|r| r.to_string()).collect();
        m.insert("id".into(), Value::str(format!("{cluster}: {}", ids.join(", "))));
        Ok(m)
    }
}

#[async_trait]
impl KubeType for Manifest {
    fn schema(&self) -> TypeSchema {
        TypeSchema::new("k8s_manifest", TypeKind::Managed, "Kubernetes objects applied with server-side apply.")
            .attr(AttrSchema::new("cluster", AttrType::String, Presence::Required).force_new())
            .attr(AttrSchema::new("manifest", AttrType::Any, Presence::Optional))
            .attr(AttrSchema::new("yaml", AttrType::String, Presence::Optional))
            .attr(AttrSchema::new("file", AttrType::String, Presence::Optional))
            .attr(AttrSchema::new("selector", AttrType::String, Presence::Optional))
            .attr(AttrSchema::new("force", AttrType::Bool, Presence::Optional))
            .attr(AttrSchema::new("wait_for", AttrType::Any, Presence::Optional))
            .attr(AttrSchema::new("objects", AttrType::Any, Presence::Computed))
            .attr(AttrSchema::new("id", AttrType::String, Presence::Computed))
    }

    async fn plan(&self, k: &Kube, _prior: Option<&Map>, mut p: Planned) -> ProviderResult<Planned> {
        let Some(docs) = documents(&p.attrs, &k.dir)? else {
            p.attrs.insert("objects".into(), Value::Unknown);
            return Ok(p);
        };
        if has_secret(&docs) {
            p.sensitive.extend(["manifest".to_string(), "yaml".into(), "objects".into()]);
        }
        let cluster = req(&p.attrs, "cluster")?;
        let force = !matches!(p.attrs.get("force"), Some(Value::Bool(false)));
        let mut out = Vec::new();
        for d in &docs {
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
        for applied in objects_of(prior) {
            let r = ref_of(&applied)?;
            match objects::get(k, &cluster, &r).await? {
                Some(live) => out.push(clean(project(&live, &applied))),
                None => return Ok(None),
            }
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
        Ok(Map::from([
            ("cluster".into(), Value::str(*cluster)),
            ("objects".into(), Value::from_json(&J::Array(vec![obj]))),
            ("id".into(), Value::str(format!("{cluster}: {r}"))),
        ]))
    }
}
