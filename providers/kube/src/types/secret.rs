//! `k8s_secret`: a Secret. `data` and `string_data` are plain text in the desired state (both
//! sent base64-encoded as `data`, never `stringData`, so removals work under server-side apply);
//! every value is sensitive: never printed, kept in state only as a salted hash.

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

fn view(prior: &Map, live: &serde_json::Value) -> Map {
    let mut m = prior.clone();
    for attr in ["data", "string_data"] {
        if let Some(Value::Map(want)) = prior.get(attr) {
            let sub: Map =
                want.keys().filter_map(|k| decoded(live, k).map(|v| (k.clone(), Value::String(v)))).collect();
            m.insert(attr.into(), Value::Map(sub));
        }
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
        doc["data"] = serde_json::Value::Object(data);
        doc["metadata"]["labels"] = json!(string_map(planned, "labels"));
        doc["metadata"]["annotations"] = json!(string_map(planned, "annotations"));
        let live = objects::apply(k, &cluster, &doc, true, false).await?;
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
            .attr(AttrSchema::new("cluster", AttrType::String, Presence::Required).force_new())
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
        let live = objects::get(k, &req(prior, "cluster")?, &oref(prior)?).await?;
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
