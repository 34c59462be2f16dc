//! `gcp_network_endpoint_group`: a zonal NEG. Immutable: any change replaces it.

use async_trait::async_trait;
use meshform_engine::provider::{
    AttrSchema, AttrType, ErrorKind, Object, Planned, Presence, ProviderError, ProviderResult, TypeKind, TypeSchema,
};
use meshform_engine::value::{Map, Value};
use reqwest::Method;
use serde_json::{Value as J, json};

use super::{GcpType, adopt};
use crate::client::{Api, Client};
use crate::convert::{network_path, req, s, short_link, short_network};

/// The type.
pub struct NetworkEndpointGroup;

fn path(p: &str, zone: &str, name: &str) -> String {
    format!("projects/{p}/zones/{zone}/networkEndpointGroups/{name}")
}

fn region(zone: &str) -> String {
    zone.rsplit_once('-').map_or(zone.to_string(), |(r, _)| r.to_string())
}

fn from_api(p: &str, zone: &str, j: &J) -> Map {
    let name = j["name"].as_str().unwrap_or_default();
    let mut m = Map::from([
        ("project".into(), Value::str(p)),
        ("zone".into(), Value::str(zone)),
        ("name".into(), Value::str(name)),
        ("id".into(), Value::str(path(p, zone, name))),
        ("network".into(), Value::str(short_network(j["network"].as_str().unwrap_or(""), p))),
        ("network_endpoint_type".into(), Value::str(j["networkEndpointType"].as_str().unwrap_or("GCE_VM_IP_PORT"))),
        ("description".into(), Value::str(j["description"].as_str().unwrap_or(""))),
        ("self_link".into(), Value::str(j["selfLink"].as_str().unwrap_or(""))),
        ("size".into(), Value::Int(j["size"].as_i64().unwrap_or(0))),
    ]);
    if let Some(sn) = j["subnetwork"].as_str() {
        m.insert("subnetwork".into(), Value::str(short_link(sn, p, &format!("regions/{}/subnetworks", region(zone)))));
    }
    if let Some(dp) = j["defaultPort"].as_i64() {
        m.insert("default_port".into(), Value::Int(dp));
    }
    m
}

#[async_trait]
impl GcpType for NetworkEndpointGroup {
    fn schema(&self) -> TypeSchema {
        let s = |n: &str, pr: Presence| AttrSchema::new(n, AttrType::String, pr).force_new();
        TypeSchema::new("gcp_network_endpoint_group", TypeKind::Managed, "A zonal network endpoint group.")
            .import_id("ZONE/NAME or projects/P/zones/ZONE/networkEndpointGroups/NAME")
            .attr(s("project", Presence::OptionalComputed))
            .attr(s("zone", Presence::Required))
            .attr(s("name", Presence::Required))
            .attr(s("network", Presence::OptionalComputed))
            .attr(s("subnetwork", Presence::Optional))
            .attr(s("network_endpoint_type", Presence::OptionalComputed))
            .attr(AttrSchema::new("default_port", AttrType::Number, Presence::Optional).force_new())
            .attr(s("description", Presence::OptionalComputed))
            .attr(AttrSchema::new("id", AttrType::String, Presence::Computed))
            .attr(AttrSchema::new("self_link", AttrType::String, Presence::Computed))
            .attr(AttrSchema::new("size", AttrType::Number, Presence::Computed))
    }

    fn list_scope(&self, c: &Client, prior: &Map) -> Option<String> {
        Some(format!("{}/{}", c.project(prior).ok()?, s(prior, "zone")?))
    }

    async fn list(&self, c: &Client, prior: &Map) -> ProviderResult<Vec<Map>> {
        let p = c.project(prior)?;
        let zone = req(prior, "zone")?;
        let items = c
            .list_all(Api::Compute, &format!("projects/{p}/zones/{zone}/networkEndpointGroups"), None, "items")
            .await?;
        Ok(items.iter().map(|j| from_api(&p, &zone, j)).collect())
    }

    fn plan(&self, c: &Client, _prior: Option<&Map>, mut p: Planned) -> ProviderResult<Planned> {
        let project = c.project(&p.attrs)?;
        p.attrs.insert("project".into(), Value::str(&project));
        if let Some(n) = s(&p.attrs, "network") {
            p.attrs.insert("network".into(), Value::str(short_network(&n, &project)));
        }
        if let (Some(sn), Some(zone)) = (s(&p.attrs, "subnetwork"), s(&p.attrs, "zone")) {
            p.attrs.insert(
                "subnetwork".into(),
                Value::str(short_link(&sn, &project, &format!("regions/{}/subnetworks", region(&zone)))),
            );
        }
        Ok(p)
    }

    async fn read(&self, c: &Client, prior: &Map) -> ProviderResult<Option<Map>> {
        let p = c.project(prior)?;
        let zone = req(prior, "zone")?;
        Ok(c.get_opt(Api::Compute, &path(&p, &zone, &req(prior, "name")?)).await?.map(|j| from_api(&p, &zone, &j)))
    }

    async fn create(&self, c: &Client, planned: &Map) -> ProviderResult<Object> {
        let p = c.project(planned)?;
        let zone = req(planned, "zone")?;
        let name = req(planned, "name")?;
        let mut body = json!({
            "name": name, "networkEndpointType": s(planned, "network_endpoint_type").unwrap_or_else(|| "GCE_VM_IP_PORT".into()),
            "network": network_path(&s(planned, "network").unwrap_or_else(|| "default".into()), &p),
        });
        if let Some(sn) = s(planned, "subnetwork") {
            body["subnetwork"] = json!(if sn.starts_with("projects/") {
                sn
            } else {
                format!("projects/{p}/regions/{}/subnetworks/{sn}", region(&zone))
            });
        }
        if let Some(Value::Int(port)) = planned.get("default_port") {
            body["defaultPort"] = json!(port);
        }
        if let Some(d) = s(planned, "description") {
            body["description"] = json!(d);
        }
        match c
            .call(
                Api::Compute,
                Method::POST,
                &format!("projects/{p}/zones/{zone}/networkEndpointGroups"),
                &[],
                Some(&body),
            )
            .await
        {
            Ok(op) => {
                c.wait_compute(op).await?;
            }
            Err(e) if e.kind == ErrorKind::Conflict => {
                let live = self.read(c, planned).await?;
                return adopt(
                    "network endpoint group",
                    &name,
                    planned,
                    live,
                    &["network", "subnetwork", "network_endpoint_type", "default_port"],
                );
            }
            Err(e) => return Err(e),
        }
        self.read(c, planned)
            .await?
            .map(Object::from)
            .ok_or_else(|| ProviderError::new(ErrorKind::NotFound, format!("NEG {name} vanished")))
    }

    async fn update(&self, _c: &Client, _prior: &Map, _planned: &Map) -> ProviderResult<Map> {
        Err(ProviderError::new(ErrorKind::Invalid, "network endpoint groups cannot be changed in place"))
    }

    async fn delete(&self, c: &Client, prior: &Map) -> ProviderResult<()> {
        let p = c.project(prior)?;
        let op = c
            .call(Api::Compute, Method::DELETE, &path(&p, &req(prior, "zone")?, &req(prior, "name")?), &[], None)
            .await?;
        c.wait_compute(op).await.map(|_| ())
    }

    async fn import(&self, c: &Client, id: &str) -> ProviderResult<Map> {
        // `ZONE/NAME` or `projects/P/zones/ZONE/networkEndpointGroups/NAME`.
        let parts: Vec<&str> = id.split('/').collect();
        let mut m = Map::new();
        match parts.as_slice() {
            [zone, name] => {
                m.insert("zone".into(), Value::str(*zone));
                m.insert("name".into(), Value::str(*name));
            }
            ["projects", p, "zones", zone, _, name] => {
                m.insert("project".into(), Value::str(*p));
                m.insert("zone".into(), Value::str(*zone));
                m.insert("name".into(), Value::str(*name));
            }
            _ => return Err(ProviderError::new(ErrorKind::Invalid, format!("import id `{id}`: expected ZONE/NAME"))),
        }
        self.read(c, &m).await?.ok_or_else(|| ProviderError::new(ErrorKind::NotFound, format!("no NEG {id}")))
    }
}
