//! `gcp_global_address`: a global static IP. Everything but labels is immutable (replace);
//! labels change with `setLabels` and the label fingerprint, retried once on 412 after a fresh read.

use async_trait::async_trait;
use meshform_engine::provider::{
    AttrSchema, AttrType, ErrorKind, Object, Planned, Presence, ProviderError, ProviderResult, TypeKind, TypeSchema,
};
use meshform_engine::value::{Map, Value};
use reqwest::Method;
use serde_json::{Value as J, json};

use super::{GcpType, adopt};
use crate::client::{Api, Client};
use crate::convert::{from_api as val, req, s, to_api};

/// The type.
pub struct GlobalAddress;

fn path(p: &str, name: &str) -> String {
    format!("projects/{p}/global/addresses/{name}")
}

fn from_api(p: &str, j: &J) -> Map {
    let name = j["name"].as_str().unwrap_or_default();

    Map::from([
        ("project".into(), Value::str(p)),
        ("name".into(), Value::str(name)),
        ("id".into(), Value::str(path(p, name))),
        ("address".into(), Value::str(j["address"].as_str().unwrap_or(""))),
        ("ip_version".into(), Value::str(j["ipVersion"].as_str().unwrap_or("IPV4"))),
        ("address_type".into(), Value::str(j["addressType"].as_str().unwrap_or("EXTERNAL"))),
        ("description".into(), Value::str(j["description"].as_str().unwrap_or(""))),
        (
            "labels".into(),
            j.get("labels").map(val).filter(|v| !matches!(v, Value::Null)).unwrap_or(Value::Map(Map::new())),
        ),
        ("label_fingerprint".into(), Value::str(j["labelFingerprint"].as_str().unwrap_or(""))),
        ("self_link".into(), Value::str(j["selfLink"].as_str().unwrap_or(""))),
        ("status".into(), Value::str(j["status"].as_str().unwrap_or(""))),
    ])
}

impl GlobalAddress {
    async fn set_labels(&self, c: &Client, p: &str, name: &str, labels: &Value) -> ProviderResult<()> {
        for attempt in 0..2 {
            let cur = c.get(Api::Compute, &path(p, name)).await?;
            let body = json!({"labelFingerprint": cur["labelFingerprint"], "labels": to_api(labels)});
            match c.call(Api::Compute, Method::POST, &format!("{}/setLabels", path(p, name)), &[], Some(&body)).await {
                Ok(op) => return c.wait_compute(op).await.map(|_| ()),
                Err(e) if e.kind == ErrorKind::Conflict && attempt == 0 => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl GcpType for GlobalAddress {
    fn schema(&self) -> TypeSchema {
        TypeSchema::new("gcp_global_address", TypeKind::Managed, "A global static IP address.")
            .import_id("NAME")
            .attr(AttrSchema::new("project", AttrType::String, Presence::OptionalComputed).force_new())
            .attr(AttrSchema::new("name", AttrType::String, Presence::Required).force_new())
            .attr(AttrSchema::new("description", AttrType::String, Presence::OptionalComputed).force_new())
            .attr(AttrSchema::new("ip_version", AttrType::String, Presence::OptionalComputed).force_new())
            .attr(AttrSchema::new("address_type", AttrType::String, Presence::OptionalComputed).force_new())
            .attr(AttrSchema::new("address", AttrType::String, Presence::OptionalComputed).force_new())
            .attr(AttrSchema::new("labels", AttrType::Map(Box::new(AttrType::String)), Presence::OptionalComputed))
            .attr(AttrSchema::new("label_fingerprint", AttrType::String, Presence::Computed))
            .attr(AttrSchema::new("id", AttrType::String, Presence::Computed))
            .attr(AttrSchema::new("self_link", AttrType::String, Presence::Computed))
            .attr(AttrSchema::new("status", AttrType::String, Presence::Computed))
    }

    fn list_scope(&self, c: &Client, prior: &Map) -> Option<String> {
        c.project(prior).ok()
    }

    async fn list(&self, c: &Client, prior: &Map) -> ProviderResult<Vec<Map>> {
        let p = c.project(prior)?;
        let items = c.list_all(Api::Compute, &format!("projects/{p}/global/addresses"), None, "items").await?;
        Ok(items.iter().map(|j| from_api(&p, j)).collect())
    }

    fn plan(&self, c: &Client, prior: Option<&Map>, mut p: Planned) -> ProviderResult<Planned> {
        p.attrs.insert("project".into(), Value::str(c.project(&p.attrs)?));
        if prior.is_some() && !p.replace_because.is_empty() {
            p.attrs.insert("label_fingerprint".into(), Value::Unknown);
        } else if let (Some(prior), Some(labels)) = (prior, p.attrs.get("labels"))
            && !meshform_engine::plan::same(prior.get("labels"), Some(labels))
        {
            p.attrs.insert("label_fingerprint".into(), Value::Unknown);
        }
        Ok(p)
    }

    async fn read(&self, c: &Client, prior: &Map) -> ProviderResult<Option<Map>> {
        let p = c.project(prior)?;
        Ok(c.get_opt(Api::Compute, &path(&p, &req(prior, "name")?)).await?.map(|j| from_api(&p, &j)))
    }

    async fn create(&self, c: &Client, planned: &Map) -> ProviderResult<Object> {
        let p = c.project(planned)?;
        let name = req(planned, "name")?;
        let mut body = json!({"name": name, "ipVersion": s(planned, "ip_version").unwrap_or_else(|| "IPV4".into())});
        for (ours, theirs) in [("description", "description"), ("address_type", "addressType"), ("address", "address")]
        {
            if let Some(v) = s(planned, ours) {
                body[theirs] = json!(v);
            }
        }
        if let Some(l) = planned.get("labels").filter(|l| matches!(l, Value::Map(_))) {
            body["labels"] = to_api(l);
        }
        match c.call(Api::Compute, Method::POST, &format!("projects/{p}/global/addresses"), &[], Some(&body)).await {
            Ok(op) => {
                c.wait_compute(op).await?;
            }
            Err(e) if e.kind == ErrorKind::Conflict => {
                let live = self.read(c, planned).await?;
                return adopt(
                    "global address",
                    &name,
                    planned,
                    live,
                    &["ip_version", "address_type", "description", "labels"],
                );
            }
            Err(e) => return Err(e),
        }
        self.read(c, planned)
            .await?
            .map(Object::from)
            .ok_or_else(|| ProviderError::new(ErrorKind::NotFound, format!("global address {name} vanished")))
    }

    async fn update(&self, c: &Client, prior: &Map, planned: &Map) -> ProviderResult<Map> {
        let p = c.project(prior)?;
        let name = req(prior, "name")?;
        if let Some(labels) = planned.get("labels") {
            self.set_labels(c, &p, &name, labels).await?;
        }
        self.read(c, planned)
            .await?
            .ok_or_else(|| ProviderError::new(ErrorKind::NotFound, format!("global address {name} vanished")))
    }

    async fn delete(&self, c: &Client, prior: &Map) -> ProviderResult<()> {
        let p = c.project(prior)?;
        let op = c.call(Api::Compute, Method::DELETE, &path(&p, &req(prior, "name")?), &[], None).await?;
        c.wait_compute(op).await.map(|_| ())
    }

    async fn import(&self, c: &Client, id: &str) -> ProviderResult<Map> {
        let m = super::firewall::id_map(id);
        self.read(c, &m)
            .await?
            .ok_or_else(|| ProviderError::new(ErrorKind::NotFound, format!("no global address {id}")))
    }
}
