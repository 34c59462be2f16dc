//! Object plumbing shared by the types: references, server-side apply (real and dry-run), reads,
//! deletes, and the projection of a live object onto the fields meshform applied.

use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams};
use meshform_engine::provider::{ErrorKind, Poll, ProviderError, ProviderResult};
use serde_json::{Value as J, json};

use crate::conn::{Kube, kube_err};

/// Which object a document names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjRef {
    /// apiVersion.
    pub api_version: String,
    /// kind.
    pub kind: String,
    /// namespace, for namespaced kinds.
    pub namespace: Option<String>,
    /// name.
    pub name: String,
}

impl std::fmt::Display for ObjRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// The reference of a document (apiVersion, kind and metadata.name are required).
pub fn ref_of(doc: &J) -> ProviderResult<ObjRef> {
    let need = |v: &J, what: &str| {
        v.as_str()
            .filter(|s| !s.is_empty())
            .map(String::from)
            .ok_or_else(|| ProviderError::new(ErrorKind::Invalid, format!("manifest has no {what}")))
    };
    Ok(ObjRef {
        api_version: need(&doc["apiVersion"], "apiVersion")?,
        kind: need(&doc["kind"], "kind")?,
        namespace: doc["metadata"]["namespace"].as_str().map(String::from),
        name: need(&doc["metadata"]["name"], "metadata.name")?,
    })
}

/// The live object reduced to the fields `applied` sets (maps granular, lists whole): what
/// meshform owns, so server defaults and other managers' fields never show as differences.
pub fn project(live: &J, applied: &J) -> J {
    match (live, applied) {
        (J::Object(l), J::Object(a)) => {
            let mut out = serde_json::Map::new();
            for (k, av) in a {
                if let Some(lv) = l.get(k) {
                    out.insert(k.clone(), project(lv, av));
                }
            }
            J::Object(out)
        }
        // A list of keyed items (containers, env, ports, volumes, ...): each applied item is
        // matched with the live item of the same key and projected onto it; items others added
        // are not meshform's. A list without such keys is an atomic value, taken whole.
        (J::Array(l), J::Array(a)) => match merge_key(a) {
            Some(key) => J::Array(
                a.iter()
                    .filter_map(|ai| l.iter().find(|li| li.get(key) == ai.get(key)).map(|li| project(li, ai)))
                    .collect(),
            ),
            None => live.clone(),
        },
        (l, _) => l.clone(),
    }
}

/// Fields that identify the items of a list, in order of preference, as Kubernetes' strategic
/// merge keys do: `name` (containers, env, volumes, ...), `containerPort`, `port`, `mountPath`.
pub const MERGE_KEYS: [&str; 5] = ["name", "containerPort", "port", "mountPath", "ip"];

/// The merge key of a list: the first of [`MERGE_KEYS`] that every item has, no two items sharing
/// a value.
fn merge_key(items: &[J]) -> Option<&'static str> {
    MERGE_KEYS.into_iter().find(|k| {
        let keys: Vec<&J> = items.iter().filter_map(|i| i.get(*k)).collect();
        !items.is_empty()
            && keys.len() == items.len()
            && keys.iter().enumerate().all(|(n, x)| keys[..n].iter().all(|y| y != x))
    })
}

/// Removes bookkeeping the server adds to what comes back from an apply.
pub fn clean(mut v: J) -> J {
    if let Some(m) = v["metadata"].as_object_mut() {
        for k in ["managedFields", "resourceVersion", "uid", "creationTimestamp", "generation"] {
            m.remove(k);
        }
    }
    v
}

/// Server-side apply of a document (dry-run when `dry`); returns the object as the server has it.
pub async fn apply(k: &Kube, cluster: &str, doc: &J, force: bool, dry: bool) -> ProviderResult<J> {
    let r = ref_of(doc)?;
    let api = k.api(cluster, &r.api_version, &r.kind, r.namespace.as_deref(), !dry).await?;
    let mut pp = PatchParams::apply(k.manager());
    pp.force = force;
    pp.dry_run = dry;
    let obj: DynamicObject =
        serde_json::from_value(doc.clone()).map_err(|e| ProviderError::new(ErrorKind::Invalid, format!("{r}: {e}")))?;
    let out = api
        .patch(&r.name, &pp, &Patch::Apply(&obj))
        .await
        .map_err(|e| kube_err(&format!("applying {r} in cluster `{cluster}`"), e))?;
    let out = serde_json::to_value(out).map_err(|e| ProviderError::new(ErrorKind::Other, e.to_string()))?;
    if !dry {
        k.noted(cluster, &r, Some(&out));
    }
    Ok(out)
}

/// A merge patch (for removing keys other managers own).
pub async fn merge_patch(k: &Kube, cluster: &str, r: &ObjRef, patch: &J) -> ProviderResult<J> {
    let api = k.api(cluster, &r.api_version, &r.kind, r.namespace.as_deref(), false).await?;
    let out = api
        .patch(
            &r.name,
            &PatchParams { field_manager: Some(k.manager().to_string()), ..Default::default() },
            &Patch::Merge(patch),
        )
        .await
        .map_err(|e| kube_err(&format!("patching {r} in cluster `{cluster}`"), e))?;
    let out = serde_json::to_value(out).map_err(|e| ProviderError::new(ErrorKind::Other, e.to_string()))?;
    k.noted(cluster, r, Some(&out));
    Ok(out)
}

/// Reads an object as this run's snapshot has it (see [`Kube::listed`]): what refresh, plan,
/// lookups and checks read, so a cluster costs one list per kind and namespace however many
/// objects it holds. A kind the snapshot cannot list is read with a GET. What must see the
/// server's latest (waits for a controller, the existence check before a create) uses [`get`].
pub async fn read(k: &Kube, cluster: &str, r: &ObjRef) -> ProviderResult<Option<std::sync::Arc<J>>> {
    match k.listed(cluster, r).await? {
        Some(kind) => Ok(kind.get(&r.name)),
        None => Ok(get(k, cluster, r).await?.map(std::sync::Arc::new)),
    }
}

/// Reads an object from the server; `None` when it (or its kind) does not exist. What it finds
/// is the newest the run knows, so it goes into the run's snapshot too (a controller's change a
/// wait saw is what later reads of the run see).
pub async fn get(k: &Kube, cluster: &str, r: &ObjRef) -> ProviderResult<Option<J>> {
    let api = match k.api(cluster, &r.api_version, &r.kind, r.namespace.as_deref(), false).await {
        Ok(a) => a,
        Err(e) if e.kind == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let found = match api.get_opt(&r.name).await {
        Ok(Some(o)) => Some(serde_json::to_value(o).map_err(|e| ProviderError::new(ErrorKind::Other, e.to_string()))?),
        Ok(None) => None,
        Err(e) => return Err(kube_err(&format!("reading {r} in cluster `{cluster}`"), e)),
    };
    k.noted(cluster, r, found.as_ref());
    Ok(found)
}

/// Deletes an object; one already gone is fine.
pub async fn delete(k: &Kube, cluster: &str, r: &ObjRef) -> ProviderResult<()> {
    let api = match k.api(cluster, &r.api_version, &r.kind, r.namespace.as_deref(), false).await {
        Ok(a) => a,
        Err(e) if e.kind == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let done = match api.delete(&r.name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(kube_err(&format!("deleting {r} in cluster `{cluster}`"), e)),
    };
    if done.is_ok() {
        // A namespace terminates after the call returns: it reads as terminating, not as gone.
        match r.kind.as_str() {
            "Namespace" => {
                k.noted(cluster, r, Some(&json!({"metadata": {"name": r.name}, "status": {"phase": "Terminating"}})))
            }
            _ => k.noted(cluster, r, None),
        }
    }
    done
}

/// Waits until `get` returns nothing (namespaces terminate asynchronously).
pub async fn wait_gone(k: &Kube, cluster: &str, r: &ObjRef) -> ProviderResult<()> {
    let pause = std::time::Duration::from_millis(100);
    let check = || async { Ok(get(k, cluster, r).await?.is_none().then_some(())) };
    let timed_out =
        || ProviderError::new(ErrorKind::Transient, format!("{r} in cluster `{cluster}` is still being deleted"));
    Poll::new(k.conns.settings.wait_timeout, pause, pause).until(check, timed_out).await
}

/// `{apiVersion, kind, metadata: {name, namespace?}}`.
pub fn skeleton(r: &ObjRef) -> J {
    let mut j = json!({"apiVersion": r.api_version, "kind": r.kind, "metadata": {"name": r.name}});
    if let Some(ns) = &r.namespace {
        j["metadata"]["namespace"] = json!(ns);
    }
    j
}
