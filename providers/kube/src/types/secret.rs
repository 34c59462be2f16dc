//! `k8s_secret`: a Secret. `data` and `string_data` are plain text in the desired state (both
//! sent base64-encoded as `data`, never `stringData`, so removals work under server-side apply);
//! every value is sensitive: never printed, kept in state only as a salted hash.

use std::collections::BTreeSet;

use async_trait::async_trait;
use base64::Engine as _;
use meshform_engine::provider::{
    AttrSchema, AttrType, ErrorKind, Presence, ProviderError, ProviderResult, TypeKind, TypeSchema,
};
use meshform_engine::value::{Map, Value};
use serde_json::json;

use super::{KubeType, req, s, split_id, string_map};
use crate::conn::Kube;
use crate::objects::{self, ObjRef};

/// The type.
pub struct Secret;

fn oref(m: &Map) -> ProviderResult<ObjRef> {
    Ok(ObjRef {
        api_version: "v1".into(),
        kind: "Secret".into(),
        namespace: Some(req(m, "namespace")?),
        name: req(m, "name")?,
    })
}

fn decoded(live: &serde_json::Value, key: &str) -> Option<String> {
    let b = live["data"][key].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// The live Secret as attributes. Every live data key is read (a key added out of band is a
/// difference too); keys the prior object keeps in `string_data` are shown there, the rest in
/// `data`. An attribute the prior object does not use stays out unless a key would be lost.
fn view(prior: &Map, live: &serde_json::Value) -> Map {
    let mut m = prior.clone();
    let in_string_data: BTreeSet<String> = match prior.get("string_data") {
        Some(Value::Map(sd)) => sd.keys().cloned().collect(),
        _ => BTreeSet::new(),
    };
    let mut data = Map::new();
    let mut string_data = Map::new();
    for key in live["data"].as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
        let Some(v) = decoded(live, &key) else { continue };
        let into = if in_string_data.contains(&key) { &mut string_data } else { &mut data };
        into.insert(key, Value::String(v));
    }
    let uses = |attr: &str| matches!(prior.get(attr), Some(v) if !matches!(v, Value::Null));
    if uses("data") || !data.is_empty() {
        m.insert("data".into(), Value::Map(data));
    }
    if uses("string_data") || !string_data.is_empty() {
        m.insert("string_data".into(), Value::Map(string_data));
    }
    for attr in ["labels", "annotations"] {
        if let Some(Value::Map(want)) = prior.get(attr) {
            let sub: Map = want
                .keys()
                .filter_map(|k| live["metadata"][attr][k].as_str().map(|v| (k.clone(), Value::str(v))))
                .collect();
            m.insert(attr.into(), Value::Map(sub));
        }
    }
    m.insert("type".into(), Value::str(live["type"].as_str().unwrap_or("Opaque")));
    m
}

impl Secret {
    async fn converge(&self, k: &Kube, planned: &Map) -> ProviderResult<Map> {
        let cluster = req(planned, "cluster")?;
        let r = oref(planned)?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut data = serde_json::Map::new();
        for attr in ["data", "string_data"] {
            for (key, v) in string_map(planned, attr) {
                data.insert(key, json!(b64.encode(v.as_str().unwrap_or("").as_bytes())));
            }
        }
        let mut doc = objects::skeleton(&r);
        doc["type"] = json!(s(planned, "type").unwrap_or_else(|| "Opaque".into()));
        doc["data"] = serde_json::Value::Object(data.clone());
        doc["metadata"]["labels"] = json!(string_map(planned, "labels"));
        doc["metadata"]["annotations"] = json!(string_map(planned, "annotations"));
        let mut live = objects::apply(k, &cluster, &doc, true, false).await?;
        // Keys another field manager added (kubectl patch) survive server-side apply: remove them.
        let extra: serde_json::Map<String, serde_json::Value> = live["data"]
            .as_object()
            .map(|o| {
                o.keys().filter(|k| !data.contains_key(*k)).map(|k| (k.clone(), serde_json::Value::Null)).collect()
            })
            .unwrap_or_default();
        if !extra.is_empty() {
            live = objects::merge_patch(k, &cluster, &r, &json!({ "data": extra })).await?;
        }
        let mut m = view(planned, &live);
        m.insert("id".into(), Value::str(format!("{cluster}/{}/{}", r.namespace.unwrap_or_default(), r.name)));
        Ok(m)
    }
}

#[async_trait]
impl KubeType for Secret {
    fn schema(&self) -> TypeSchema {
        let map = || AttrType::Map(Box::new(AttrType::String));
        TypeSchema::new("k8s_secret", TypeKind::Managed, "A Secret; its values are sensitive.")
            .import_id("CLUSTER/NAMESPACE/NAME")
            .attr(AttrSchema::new("cluster", AttrType::String, Presence::Required).force_new().lives_in())
            .attr(AttrSchema::new("namespace", AttrType::String, Presence::Required).force_new())
            .attr(AttrSchema::new("name", AttrType::String, Presence::Required).force_new())
            .attr(AttrSchema::new("type", AttrType::String, Presence::OptionalComputed).force_new())
            .attr(AttrSchema::new("data", map(), Presence::Optional).sensitive())
            .attr(AttrSchema::new("string_data", map(), Presence::Optional).sensitive())
            .attr(AttrSchema::new("labels", map(), Presence::Optional))
            .attr(AttrSchema::new("annotations", map(), Presence::Optional))
            .attr(AttrSchema::new("id", AttrType::String, Presence::Computed))
    }

    async fn read(&self, k: &Kube, prior: &Map) -> ProviderResult<Option<Map>> {
        let live = objects::read(k, &req(prior, "cluster")?, &oref(prior)?).await?;
        Ok(live.map(|l| view(prior, &l)))
    }

    async fn create(&self, k: &Kube, planned: &Map) -> ProviderResult<Map> {
        self.converge(k, planned).await
    }

    async fn update(&self, k: &Kube, _prior: &Map, planned: &Map) -> ProviderResult<Map> {
        self.converge(k, planned).await
    }

    async fn delete(&self, k: &Kube, prior: &Map) -> ProviderResult<()> {
        objects::delete(k, &req(prior, "cluster")?, &oref(prior)?).await
    }

    async fn import(&self, k: &Kube, id: &str) -> ProviderResult<Map> {
        let p = split_id(id, 3)?;
        let mut m = Map::from([
            ("cluster".into(), Value::str(&p[0])),
            ("namespace".into(), Value::str(&p[1])),
            ("name".into(), Value::str(&p[2])),
            ("id".into(), Value::str(id)),
        ]);
        let live = objects::get(k, &p[0], &oref(&m)?)
            .await?
            .ok_or_else(|| ProviderError::new(ErrorKind::NotFound, format!("no secret {id}")))?;
        let keys: Map =
            live["data"].as_object().map(|o| o.keys().map(|k| (k.clone(), Value::Null)).collect()).unwrap_or_default();
        m.insert("data".into(), Value::Map(keys));
        Ok(view(&m, &live))
    }
}
