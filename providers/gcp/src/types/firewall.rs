//! `gcp_firewall`: a VPC firewall rule (Terraform's google_compute_firewall attribute names).
//! Mutable fields are patched in place; name, network, direction and allow-versus-deny replace.

use async_trait::async_trait;
use meshform_engine::provider::{
    AttrSchema, AttrType, ErrorKind, Object, Planned, Presence, ProviderResult, TypeKind, TypeSchema,
};
use meshform_engine::value::{Map, Value};
use reqwest::Method;
use serde_json::{Value as J, json};

use super::{GcpType, adopt};
use crate::client::{Api, Client};
use crate::convert::{network_path, normalize_set, req, s, short_network, string_set, strings};

/// The type.
pub struct Firewall;

/// Our set attributes and the API's fields.
const SET_FIELDS: [(&str, &str); 6] = [
    ("source_ranges", "sourceRanges"),
    ("destination_ranges", "destinationRanges"),
    ("source_tags", "sourceTags"),
    ("target_tags", "targetTags"),
    ("source_service_accounts", "sourceServiceAccounts"),
    ("target_service_accounts", "targetServiceAccounts"),
];

/// Logging metadata when `log_config` leaves it out (the API's default).
const DEFAULT_LOG_METADATA: &str = "INCLUDE_ALL_METADATA";

fn rule_type() -> AttrType {
    AttrType::List(Box::new(AttrType::Object(vec![
        AttrSchema::new("protocol", AttrType::String, Presence::Required),
        AttrSchema::new("ports", AttrType::List(Box::new(AttrType::String)), Presence::Optional),
    ])))
}

/// The API body of a desired rule.
fn body(project: &str, m: &Map) -> J {
    let mut b = json!({
        "name": s(m, "name"), "network": network_path(&s(m, "network").unwrap_or_else(|| "default".into()), project),
        "direction": s(m, "direction").unwrap_or_else(|| "INGRESS".into()),
    });
    if let Some(Value::Int(p)) = m.get("priority") {
        b["priority"] = json!(p);
    }
    for (ours, theirs) in [("allow", "allowed"), ("deny", "denied")] {
        if let Some(Value::List(rules)) = m.get(ours) {
            let rs: Vec<J> = rules
                .iter()
                .map(|r| {
                    let r = r.as_map().cloned().unwrap_or_default();
                    let mut x = json!({"IPProtocol": s(&r, "protocol")});
                    let ports = strings(&r, "ports");
                    if !ports.is_empty() {
                        x["ports"] = json!(ports);
                    }
                    x
                })
                .collect();
            b[theirs] = json!(rs);
        }
    }
    for (ours, theirs) in SET_FIELDS {
        b[theirs] = json!(strings(m, ours));
    }
    if let Some(Value::Bool(d)) = m.get("disabled") {
        b["disabled"] = json!(d);
    }
    b["description"] = json!(s(m, "description").unwrap_or_default());
    // Terraform's `log_config { metadata }`: present means logging on.
    b["logConfig"] = match m.get("log_config") {
        Some(Value::Map(l)) => {
            json!({"enable": true, "metadata": s(l, "metadata").unwrap_or_else(|| DEFAULT_LOG_METADATA.into())})
        }
        _ => json!({"enable": false}),
    };
    b
}

/// The attributes of a live rule.
fn from_api(project: &str, j: &J) -> Map {
    let rules = |k: &str| -> Option<Value> {
        let a = j.get(k)?.as_array()?;
        Some(Value::List(
            a.iter()
                .map(|r| {
                    let mut m =
                        Map::from([("protocol".to_string(), Value::str(r["IPProtocol"].as_str().unwrap_or("")))]);
                    if let Some(p) = r.get("ports").and_then(J::as_array).filter(|p| !p.is_empty()) {
                        m.insert(
                            "ports".into(),
                            Value::List(p.iter().filter_map(|x| x.as_str().map(Value::str)).collect()),
                        );
                    }
                    Value::Map(m)
                })
                .collect(),
        ))
    };
    let name = j["name"].as_str().unwrap_or_default();
    let mut m = Map::from([
        ("project".into(), Value::str(project)),
        ("name".into(), Value::str(name)),
        ("id".into(), Value::str(format!("projects/{project}/global/firewalls/{name}"))),
        ("network".into(), Value::str(short_network(j["network"].as_str().unwrap_or(""), project))),
        ("direction".into(), Value::str(j["direction"].as_str().unwrap_or("INGRESS"))),
        ("priority".into(), Value::Int(j["priority"].as_i64().unwrap_or(1000))),
        ("disabled".into(), Value::Bool(j["disabled"].as_bool().unwrap_or(false))),
        ("self_link".into(), Value::str(j["selfLink"].as_str().unwrap_or(""))),
        ("description".into(), Value::str(j["description"].as_str().unwrap_or(""))),
    ]);
    if let Some(a) = rules("allowed") {
        m.insert("allow".into(), a);
    }
    if let Some(d) = rules("denied") {
        m.insert("deny".into(), d);
    }
    for (ours, theirs) in SET_FIELDS {
        m.insert(ours.into(), string_set(&j[theirs]));
    }
    if j["logConfig"]["enable"] == true {
        let metadata = j["logConfig"]["metadata"].as_str().unwrap_or(DEFAULT_LOG_METADATA);
        m.insert("log_config".into(), Value::Map(Map::from([("metadata".into(), Value::str(metadata))])));
    }
    m
}

fn path(project: &str, name: &str) -> String {
    format!("projects/{project}/global/firewalls/{name}")
}

#[async_trait]
impl GcpType for Firewall {
    fn schema(&self) -> TypeSchema {
        let list = || AttrType::List(Box::new(AttrType::String));
        TypeSchema::new("gcp_firewall", TypeKind::Managed, "A VPC firewall rule.")
            .import_id("NAME (of the rule, in the provider's project)")
            .attr(AttrSchema::new("project", AttrType::String, Presence::OptionalComputed).force_new())
            .attr(AttrSchema::new("name", AttrType::String, Presence::Required).force_new())
            .attr(AttrSchema::new("network", AttrType::String, Presence::OptionalComputed).force_new())
            .attr(AttrSchema::new("direction", AttrType::String, Presence::OptionalComputed).force_new())
            .attr(AttrSchema::new("priority", AttrType::Number, Presence::OptionalComputed))
            .attr(AttrSchema::new("allow", rule_type(), Presence::Optional))
            .attr(AttrSchema::new("deny", rule_type(), Presence::Optional))
            .attr(AttrSchema::new("source_ranges", list(), Presence::Optional))
            .attr(AttrSchema::new("destination_ranges", list(), Presence::Optional))
            .attr(AttrSchema::new("source_tags", list(), Presence::Optional))
            .attr(AttrSchema::new("target_tags", list(), Presence::Optional))
            .attr(AttrSchema::new("disabled", AttrType::Bool, Presence::OptionalComputed))
            .attr(AttrSchema::new("source_service_accounts", list(), Presence::Optional))
            .attr(AttrSchema::new("target_service_accounts", list(), Presence::Optional))
            .attr(
                AttrSchema::new(
                    "log_config",
                    AttrType::Object(vec![AttrSchema::new("metadata", AttrType::String, Presence::Optional)]),
                    Presence::Optional,
                )
                .describe("logging on, with `metadata` INCLUDE_ALL_METADATA (default) or EXCLUDE_ALL_METADATA"),
            )
            .attr(AttrSchema::new("description", AttrType::String, Presence::OptionalComputed))
            .attr(AttrSchema::new("id", AttrType::String, Presence::Computed))
            .attr(AttrSchema::new("self_link", AttrType::String, Presence::Computed))
    }

    fn list_scope(&self, c: &Client, prior: &Map) -> Option<String> {
        c.project(prior).ok()
    }

    async fn list(&self, c: &Client, prior: &Map) -> ProviderResult<Vec<Map>> {
        let p = c.project(prior)?;
        Ok(c.firewalls_of(&p).await?.iter().map(|j| from_api(&p, j)).collect())
    }

    fn plan(&self, c: &Client, prior: Option<&Map>, mut p: Planned) -> ProviderResult<Planned> {
        let project = c.project(&p.attrs)?;
        p.attrs.insert("project".into(), Value::str(&project));
        // Compute Engine's defaults for what the desired state leaves out, so a change made out
        // of band (`--disabled`, `--priority`) is planned back instead of kept from live.
        for (k, v) in
            [("priority", Value::Int(1000)), ("disabled", Value::Bool(false)), ("direction", Value::str("INGRESS"))]
        {
            if !p.configured.contains(k) {
                p.attrs.insert(k.into(), v);
            }
        }
        if let Some(n) = s(&p.attrs, "network") {
            p.attrs.insert("network".into(), Value::str(short_network(&n, &project)));
        }
        for (k, _) in SET_FIELDS {
            normalize_set(&mut p.attrs, k);
            if !p.attrs.contains_key(k) {
                p.attrs.insert(k.into(), Value::List(vec![]));
            }
        }
        if let Some(Value::Map(l)) = p.attrs.get_mut("log_config") {
            l.entry("metadata".into()).or_insert_with(|| Value::str(DEFAULT_LOG_METADATA));
        }
        if matches!(p.attrs.get("direction"), Some(Value::String(d)) if d == "INGRESS")
            && strings(&p.attrs, "source_ranges").is_empty()
            && strings(&p.attrs, "source_tags").is_empty()
            && strings(&p.attrs, "source_service_accounts").is_empty()
        {
            // The API fills this default; plan it so no perpetual diff follows.
            p.attrs.insert("source_ranges".into(), Value::List(vec![Value::str("0.0.0.0/0")]));
        }
        if matches!(p.attrs.get("direction"), Some(Value::String(d)) if d == "EGRESS")
            && strings(&p.attrs, "destination_ranges").is_empty()
        {
            p.attrs.insert("destination_ranges".into(), Value::List(vec![Value::str("0.0.0.0/0")]));
        }
        if let Some(prior) = prior {
            let action =
                |m: &Map| if m.get("deny").is_some_and(|d| !matches!(d, Value::Null)) { "deny" } else { "allow" };
            if action(prior) != action(&p.attrs) && !p.replace_because.iter().any(|r| r == "allow" || r == "deny") {
                p.replace_because.push(action(&p.attrs).to_string());
            }
        }
        Ok(p)
    }

    async fn read(&self, c: &Client, prior: &Map) -> ProviderResult<Option<Map>> {
        let p = c.project(prior)?;
        let name = req(prior, "name")?;
        Ok(c.get_opt(Api::Compute, &path(&p, &name)).await?.map(|j| from_api(&p, &j)))
    }

    async fn create(&self, c: &Client, planned: &Map) -> ProviderResult<Object> {
        let p = c.project(planned)?;
        let name = req(planned, "name")?;
        match c
            .call(Api::Compute, Method::POST, &format!("projects/{p}/global/firewalls"), &[], Some(&body(&p, planned)))
            .await
        {
            Ok(op) => {
                c.wait_compute(op).await?;
            }
            Err(e) if e.kind == ErrorKind::Conflict => {
                let live = self.read(c, planned).await?;
                let mut keys = vec!["network", "direction", "priority", "allow", "deny", "log_config"];
                keys.extend(SET_FIELDS.map(|(ours, _)| ours));
                return adopt("firewall rule", &name, planned, live, &keys);
            }
            Err(e) => return Err(e),
        }
        self.read(c, planned).await?.map(Object::from).ok_or_else(|| {
            meshform_engine::provider::ProviderError::new(
                ErrorKind::NotFound,
                format!("firewall rule {name} vanished after creation"),
            )
        })
    }

    async fn update(&self, c: &Client, prior: &Map, planned: &Map) -> ProviderResult<Map> {
        let p = c.project(prior)?;
        let name = req(prior, "name")?;
        let op = c.call(Api::Compute, Method::PATCH, &path(&p, &name), &[], Some(&body(&p, planned))).await?;
        c.wait_compute(op).await?;
        self.read(c, planned).await?.ok_or_else(|| {
            meshform_engine::provider::ProviderError::new(ErrorKind::NotFound, format!("firewall rule {name} vanished"))
        })
    }

    async fn delete(&self, c: &Client, prior: &Map) -> ProviderResult<()> {
        let p = c.project(prior)?;
        let op = c.call(Api::Compute, Method::DELETE, &path(&p, &req(prior, "name")?), &[], None).await?;
        c.wait_compute(op).await.map(|_| ())
    }

    async fn import(&self, c: &Client, id: &str) -> ProviderResult<Map> {
        let m = id_map(id);
        self.read(c, &m).await?.ok_or_else(|| {
            meshform_engine::provider::ProviderError::new(ErrorKind::NotFound, format!("no firewall rule {id}"))
        })
    }
}

/// `{name}` and, when the id is a path, `{project}` of an import id (`NAME` or
/// `projects/P/global/KIND/NAME`).
pub fn id_map(id: &str) -> Map {
    let name = id.rsplit('/').next().unwrap_or(id);
    let mut m = Map::from([("name".to_string(), Value::str(name))]);
    if let Some(p) = id.strip_prefix("projects/").and_then(|r| r.split('/').next()) {
        m.insert("project".into(), Value::str(p));
    }
    m
}
