//! Data sources `gcp_instances` and `gcp_firewalls`: a filtered list, reduced to names and tags.
//! Every lookup of a run answers from one list per project (the client's, shared with the
//! cluster lookups and the firewall refresh), its filter evaluated here ([`crate::filter`]); a
//! filter outside the understood subset is sent to the server instead.

use async_trait::async_trait;
use meshform_engine::provider::{AttrSchema, AttrType, Presence, ProviderResult, TypeKind, TypeSchema};
use meshform_engine::value::{Map, Value};

use super::GcpType;
use crate::client::{Api, Client};
use crate::convert::s;
use crate::filter::Filter;

/// `gcp_instances`: `filter` (compute filter syntax), optional `zone` → `names`, `tags`.
pub struct Instances;
/// `gcp_firewalls`: `filter` → `names`, `target_tags`.
pub struct Firewalls;

fn strings(v: Vec<String>) -> Value {
    let mut v = v;
    v.sort();
    v.dedup();
    Value::List(v.into_iter().map(Value::String).collect())
}

fn schema(name: &str, what: &str, outs: &[&str]) -> TypeSchema {
    let mut s = TypeSchema::new(name, TypeKind::Data, what)
        .attr(AttrSchema::new("project", AttrType::String, Presence::OptionalComputed))
        .attr(AttrSchema::new("filter", AttrType::String, Presence::Optional));
    for o in outs {
        s = s.attr(AttrSchema::new(o, AttrType::List(Box::new(AttrType::String)), Presence::Computed));
    }
    s
}

#[async_trait]
impl GcpType for Instances {
    fn schema(&self) -> TypeSchema {
        schema("gcp_instances", "Compute instances matching a filter.", &["names", "tags"]).attr(AttrSchema::new(
            "zone",
            AttrType::String,
            Presence::Optional,
        ))
    }

    async fn read_data(&self, c: &Client, config: &Map) -> ProviderResult<Map> {
        let p = c.project(config)?;
        let filter = s(config, "filter");
        let zone = s(config, "zone");
        let items: Vec<serde_json::Value> = match (filter.as_deref().map(Filter::parse), &zone) {
            (Some(None), Some(z)) => {
                c.list_all(Api::Compute, &format!("projects/{p}/zones/{z}/instances"), filter.as_deref(), "items")
                    .await?
            }
            (Some(None), None) => {
                c.aggregated_all(&format!("projects/{p}/aggregated/instances"), filter.as_deref(), "instances").await?
            }
            (parsed, _) => {
                let in_zone = |i: &&serde_json::Value| {
                    zone.as_ref().is_none_or(|z| i["zone"].as_str().is_some_and(|u| u.rsplit('/').next() == Some(z)))
                };
                let all: Vec<serde_json::Value> = c.instances_of(&p).await?.iter().filter(in_zone).cloned().collect();
                match parsed.flatten().map(|f| f.select(&all)) {
                    None => all,
                    Some(Some(selected)) => selected,
                    // A field only the server can judge: ask it.
                    Some(None) => c
                        .aggregated_all(&format!("projects/{p}/aggregated/instances"), filter.as_deref(), "instances")
                        .await?
                        .into_iter()
                        .filter(|i| in_zone(&i))
                        .collect(),
                }
            }
        };
        let names = items.iter().filter_map(|i| i["name"].as_str().map(String::from)).collect();
        let tags = items
            .iter()
            .flat_map(|i| i["tags"]["items"].as_array().cloned().unwrap_or_default())
            .filter_map(|t| t.as_str().map(String::from))
            .collect();
        let mut m = config.clone();
        m.insert("project".into(), Value::str(p));
        m.insert("names".into(), strings(names));
        m.insert("tags".into(), strings(tags));
        Ok(m)
    }
}

#[async_trait]
impl GcpType for Firewalls {
    fn schema(&self) -> TypeSchema {
        schema("gcp_firewalls", "Firewall rules matching a filter.", &["names", "target_tags"])
    }

    async fn read_data(&self, c: &Client, config: &Map) -> ProviderResult<Map> {
        let p = c.project(config)?;
        let filter = s(config, "filter");
        let items: Vec<serde_json::Value> = match filter.as_deref().map(Filter::parse) {
            Some(None) => {
                c.list_all(Api::Compute, &format!("projects/{p}/global/firewalls"), filter.as_deref(), "items").await?
            }
            parsed => {
                let all = c.firewalls_of(&p).await?;
                match parsed.flatten().map(|f| f.select(&all)) {
                    None => all.to_vec(),
                    Some(Some(selected)) => selected,
                    // A field only the server can judge (`targetTags`): ask it.
                    Some(None) => {
                        let path = format!("projects/{p}/global/firewalls");
                        c.list_all(Api::Compute, &path, filter.as_deref(), "items").await?
                    }
                }
            }
        };
        let names = items.iter().filter_map(|i| i["name"].as_str().map(String::from)).collect();
        let tags = items
            .iter()
            .flat_map(|i| i["targetTags"].as_array().cloned().unwrap_or_default())
            .filter_map(|t| t.as_str().map(String::from))
            .collect();
        let mut m = config.clone();
        m.insert("project".into(), Value::str(p));
        m.insert("names".into(), strings(names));
        m.insert("target_tags".into(), strings(tags));
        Ok(m)
    }
}
