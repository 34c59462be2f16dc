//! `k8s_namespace`: a namespace, managing only the label and annotation keys it declares, and
//! making sure the keys in `remove_labels` are absent (the guide's `istio-injection-` step).

use async_trait::async_trait;
use meshform_engine::provider::{AttrSchema, AttrType, Planned, Presence, ProviderResult, TypeKind, TypeSchema};
use meshform_engine::value::{Map, Value};
use serde_json::json;

use super::{KubeType, req, s, split_id, string_map};
use crate::conn::Kube;
use crate::objects::{self, ObjRef};

/// The type.
pub struct Namespace;

fn oref(name: &str) -> ObjRef {
    ObjRef { api_version: "v1".into(), kind: "Namespace".into(), namespace: None, name: name.into() }
}

fn declared(prior: &Map, k: &str) -> Vec<String> {
    prior.get(k).and_then(Value::as_map).map(|m| m.keys().cloned().collect()).unwrap_or_default()
}

/// The attributes meshform sees: declared keys only; `remove_labels` lists the keys that are absent.
fn view(prior: &Map, live: &serde_json::Value) -> Map {
    let mut m = prior.clone();
    for k in ["labels", "annotations"] {
        let keys = declared(prior, k);
        let live_map = &live["metadata"][k];
        let sub: Map =
            keys.iter().filter_map(|key| live_map[key].as_str().map(|v| (key.clone(), Value::str(v)))).collect();
        if prior.contains_key(k) {
            m.insert(k.into(), Value::Map(sub));
        }
    }
    if let Some(Value::List(rm)) = prior.get("remove_labels") {
        let absent: Vec<Value> = rm
            .iter()
            .filter(|k| k.as_str().is_some_and(|k| live["metadata"]["labels"][k].is_null()))
            .cloned()
            .collect();
        m.insert("remove_labels".into(), Value::List(absent));
    }
    m.insert("uid".into(), Value::str(live["metadata"]["uid"].as_str().unwrap_or("")));
    m
}

impl Namespace {
    async fn converge(&self, k: &Kube, planned: &Map) -> ProviderResult<Map> {
        let cluster = req(planned, "cluster")?;
        let name = req(planned, "name")?;
        let doc = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": name, "labels": string_map(planned, "labels"), "annotations": string_map(planned, "annotations")}});
        let mut live = objects::apply(k, &cluster, &doc, true, false).await?;
        let remove: Vec<String> = planned
            .get("remove_labels")
            .and_then(Value::as_list)
            .map(|l| l.iter().filter_map(Value::to_interpolated).collect())
            .unwrap_or_default();
        let present: Vec<&String> =
            remove.iter().filter(|r| !live["metadata"]["labels"][r.as_str()].is_null()).collect();
        if !present.is_empty() {
            let labels: serde_json::Map<String, serde_json::Value> =
                present.iter().map(|r| (r.to_string(), serde_json::Value::Null)).collect();
            live = objects::merge_patch(k, &cluster, &oref(&name), &json!({"metadata": {"labels": labels}})).await?;
        }
        let mut m = view(planned, &live);
        m.insert("id".into(), Value::str(format!("{cluster}/{name}")));
        Ok(m)
    }
}

#[async_trait]
impl KubeType for Namespace {
    fn schema(&self) -> TypeSchema {
        let map = || AttrType::Map(Box::new(AttrType::String));
        TypeSchema::new("k8s_namespace", TypeKind::Managed, "A namespace and the labels it must (not) have.")
            .import_id("CLUSTER/NAME")
            .attr(AttrSchema::new("cluster", AttrType::String, Presence::Required).force_new().lives_in())
            .attr(AttrSchema::new("name", AttrType::String, Presence::Required).force_new())
            .attr(AttrSchema::new("labels", map(), Presence::Optional))
            .attr(AttrSchema::new("annotations", map(), Presence::Optional))
            .attr(AttrSchema::new("remove_labels", AttrType::List(Box::new(AttrType::String)), Presence::Optional))
            .attr(AttrSchema::new("id", AttrType::String, Presence::Computed))
            .attr(AttrSchema::new("uid", AttrType::String, Presence::Computed))
            .attr(
                AttrSchema::new("adopted", AttrType::Bool, Presence::Computed)
                    .describe("existed before meshform: destroy unlabels it instead of deleting it"),
            )
    }

    async fn plan(&self, k: &Kube, prior: Option<&Map>, mut p: Planned) -> ProviderResult<Planned> {
        // A namespace that exists already (istio-system) is adopted, not created: say so.
        if prior.is_none()
            && let (Some(cluster), Some(name)) = (s(&p.attrs, "cluster"), s(&p.attrs, "name"))
            && objects::read(k, &cluster, &oref(&name)).await?.is_some()
        {
            p.adopts = Some(format!(
                "namespace `{name}` exists in cluster `{cluster}`: meshform sets what it declares; destroy removes only that and keeps the namespace"
            ));
        }
        Ok(p)
    }

    fn describe_delete(&self, prior: &Map) -> Option<String> {
        matches!(prior.get("adopted"), Some(Value::Bool(true))).then(|| {
            "adopted: only the labels and annotations meshform set are removed; the namespace is kept".to_string()
        })
    }

    async fn read(&self, k: &Kube, prior: &Map) -> ProviderResult<Option<Map>> {
        let live = objects::read(k, &req(prior, "cluster")?, &oref(&req(prior, "name")?)).await?;
        Ok(live.filter(|l| l["status"]["phase"] != "Terminating").map(|l| view(prior, &l)))
    }

    async fn create(&self, k: &Kube, planned: &Map) -> ProviderResult<Map> {
        // A namespace that was there before meshform (istio-system, say) is only labelled, and
        // destroy gives it back as it was instead of deleting it.
        let existed = objects::get(k, &req(planned, "cluster")?, &oref(&req(planned, "name")?)).await?.is_some();
        let mut m = self.converge(k, planned).await?;
        m.insert("adopted".into(), Value::Bool(existed));
        Ok(m)
    }

    async fn update(&self, k: &Kube, prior: &Map, planned: &Map) -> ProviderResult<Map> {
        let mut m = self.converge(k, planned).await?;
        m.insert("adopted".into(), prior.get("adopted").cloned().unwrap_or(Value::Bool(false)));
        Ok(m)
    }

    async fn delete(&self, k: &Kube, prior: &Map) -> ProviderResult<()> {
        let cluster = req(prior, "cluster")?;
        let r = oref(&req(prior, "name")?);
        if matches!(prior.get("adopted"), Some(Value::Bool(true))) {
            // Drop only what meshform put there.
            let nulls = |k: &str| -> serde_json::Map<String, serde_json::Value> {
                declared(prior, k).into_iter().map(|key| (key, serde_json::Value::Null)).collect()
            };
            let patch = json!({"metadata": {"labels": nulls("labels"), "annotations": nulls("annotations")}});
            return objects::merge_patch(k, &cluster, &r, &patch).await.map(|_| ());
        }
        objects::delete(k, &cluster, &r).await?;
        objects::wait_gone(k, &cluster, &r).await
    }

    async fn import(&self, k: &Kube, id: &str) -> ProviderResult<Map> {
        let p = split_id(id, 2)?;
        let live = objects::get(k, &p[0], &oref(&p[1])).await?.ok_or_else(|| {
            meshform_engine::provider::ProviderError::new(
                meshform_engine::provider::ErrorKind::NotFound,
                format!("no namespace {id}"),
            )
        })?;
        let m = Map::from([
            ("cluster".into(), Value::str(&p[0])),
            ("name".into(), Value::str(&p[1])),
            ("id".into(), Value::str(id)),
        ]);
        Ok(view(&m, &live))
    }
}
