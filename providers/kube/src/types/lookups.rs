//! Data sources `k8s_objects` (a kind, namespace and label selector → names, labels,
//! annotations; e.g. the istiod revision label the guide reads with `kubectl get pods -l
//! app=istiod --show-labels`) and `k8s_object` (one object's fields).

use async_trait::async_trait;
use kube::api::ListParams;
use meshform_engine::provider::{
    AttrSchema, AttrType, ErrorKind, Presence, ProviderError, ProviderResult, TypeKind, TypeSchema,
};
use meshform_engine::value::{Map, Value};

use super::{KubeType, req, s};
use crate::conn::{Kube, kube_err};
use crate::objects::{self, ObjRef};

/// `k8s_objects`.
pub struct Objects;
/// `k8s_object`.
pub struct Object;

fn inputs(name: &str, what: &str, single: bool) -> TypeSchema {
    let st = |n: &str, p: Presence| AttrSchema::new(n, AttrType::String, p);
    let mut t = TypeSchema::new(name, TypeKind::Data, what)
        .attr(st("cluster", Presence::Required).names_cluster())
        .attr(st("api_version", Presence::OptionalComputed))
        .attr(st("kind", Presence::Required))
        .attr(st("namespace", Presence::Optional));
    t = if single { t.attr(st("name", Presence::Required)) } else { t.attr(st("label_selector", Presence::Optional)) };
    t
}

#[async_trait]
impl KubeType for Objects {
    fn schema(&self) -> TypeSchema {
        inputs("k8s_objects", "Objects of a kind matching a label selector.", false)
            .attr(AttrSchema::new("names", AttrType::List(Box::new(AttrType::String)), Presence::Computed))
            .attr(AttrSchema::new("labels", AttrType::Any, Presence::Computed))
            .attr(AttrSchema::new("annotations", AttrType::Any, Presence::Computed))
    }

    /// A Secret's annotations may hold its data (`last-applied-configuration`).
    fn sensitive_in(&self, attrs: &Map) -> Vec<String> {
        if s(attrs, "kind").as_deref() == Some("Secret") { vec!["annotations".into()] } else { Vec::new() }
    }

    async fn read_data(&self, k: &Kube, config: &Map) -> ProviderResult<Map> {
        let cluster = req(config, "cluster")?;
        let api_version = s(config, "api_version").unwrap_or_else(|| "v1".into());
        let kind = req(config, "kind")?;
        let api = k.api(&cluster, &api_version, &kind, s(config, "namespace").as_deref(), false).await?;
        let mut lp = ListParams::default();
        if let Some(sel) = s(config, "label_selector") {
            lp = lp.labels(&sel);
        }
        let list = api.list(&lp).await.map_err(|e| kube_err(&format!("listing {kind} in cluster `{cluster}`"), e))?;
        let mut names = Vec::new();
        let mut labels = Map::new();
        let mut annotations = Map::new();
        for o in list.items {
            let name = o.metadata.name.clone().unwrap_or_default();
            let to_map = |m: Option<std::collections::BTreeMap<String, String>>| {
                Value::Map(m.unwrap_or_default().into_iter().map(|(a, b)| (a, Value::String(b))).collect())
            };
            labels.insert(name.clone(), to_map(o.metadata.labels.clone()));
            annotations.insert(name.clone(), to_map(o.metadata.annotations.clone()));
            names.push(Value::String(name));
        }
        let mut m = config.clone();
        m.insert("api_version".into(), Value::str(api_version));
        m.insert("names".into(), Value::List(names));
        m.insert("labels".into(), Value::Map(labels));
        m.insert("annotations".into(), Value::Map(annotations));
        Ok(m)
    }
}

#[async_trait]
impl KubeType for Object {
    fn schema(&self) -> TypeSchema {
        inputs("k8s_object", "One object, read live.", true).attr(AttrSchema::new(
            "object",
            AttrType::Any,
            Presence::Computed,
        ))
    }

    fn sensitive_in(&self, attrs: &Map) -> Vec<String> {
        if s(attrs, "kind").as_deref() == Some("Secret") { vec!["object".into()] } else { Vec::new() }
    }

    async fn read_data(&self, k: &Kube, config: &Map) -> ProviderResult<Map> {
        let cluster = req(config, "cluster")?;
        let r = ObjRef {
            api_version: s(config, "api_version").unwrap_or_else(|| "v1".into()),
            kind: req(config, "kind")?,
            namespace: s(config, "namespace"),
            name: req(config, "name")?,
        };
        let obj = objects::read(k, &cluster, &r)
            .await?
            .ok_or_else(|| ProviderError::new(ErrorKind::NotFound, format!("no {r} in cluster `{cluster}`")))?;
        let mut m = config.clone();
        m.insert("object".into(), Value::from_json(&objects::clean(serde_json::Value::clone(&obj))));
        Ok(m)
    }
}
