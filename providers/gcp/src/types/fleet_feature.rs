//! `gke_fleet_feature`: a fleet feature, at least `multiclusteringress` with its config
//! membership (a full membership name, never the bare id gcloud resolves to `global`). Create and
//! update wait until the feature reports state OK.

use std::time::Duration;

use async_trait::async_trait;
use meshform_engine::provider::{
    AttrSchema, AttrType, ErrorKind, Object, Planned, Poll, Presence, ProviderError, ProviderResult, TypeKind,
    TypeSchema,
};
use meshform_engine::value::{Map, Value};
use reqwest::Method;
use serde_json::{Value as J, json};

use super::{GcpType, adopt};
use crate::client::{Api, Client};
use crate::convert::{req, s};

/// The type.
pub struct FleetFeature;

fn path(p: &str, l: &str, name: &str) -> String {
    format!("projects/{p}/locations/{l}/features/{name}")
}

fn from_api(p: &str, j: &J) -> Map {
    let full = j["name"].as_str().unwrap_or_default();
    let parts: Vec<&str> = full.split('/').collect();
    let mut m = Map::from([
        ("project".into(), Value::str(p)),
        ("location".into(), Value::str(*parts.get(3).unwrap_or(&"global"))),
        ("name".into(), Value::str(*parts.get(5).unwrap_or(&""))),
        ("id".into(), Value::str(full)),
        ("state".into(), Value::str(j["state"]["state"]["code"].as_str().unwrap_or(""))),
    ]);
    if let Some(cm) = j["spec"]["multiclusteringress"]["configMembership"].as_str() {
        m.insert("config_membership".into(), Value::str(cm));
    }
    m
}

fn spec(m: &Map) -> J {
    match s(m, "config_membership") {
        Some(cm) => json!({"multiclusteringress": {"configMembership": cm}}),
        None => json!({}),
    }
}

impl FleetFeature {
    /// Polls the feature until its state is OK.
    async fn wait_ok(&self, c: &Client, p: &str, l: &str, name: &str) -> ProviderResult<Map> {
        let poll = Poll::new(c.settings.operation_timeout, Duration::from_millis(50), Duration::from_secs(5));
        let check = || async {
            let j = c
                .call(Api::Hub, Method::GET, &path(p, l, name), &[("returnPartialSuccess", "true".into())], None)
                .await?;
            match j["state"]["state"]["code"].as_str() {
                Some("OK") => Ok(Some(from_api(p, &j))),
                Some("ERROR") => {
                    let d = j["state"]["state"]["description"].as_str().unwrap_or("");
                    Err(ProviderError::new(ErrorKind::Invalid, format!("feature {name} is in state ERROR: {d}")))
                }
                _ => Ok(None),
            }
        };
        poll.until(check, || ProviderError::new(ErrorKind::Transient, format!("feature {name} did not reach state OK")))
            .await
    }
}

#[async_trait]
impl GcpType for FleetFeature {
    fn schema(&self) -> TypeSchema {
        let st = |n: &str, pr: Presence| AttrSchema::new(n, AttrType::String, pr);
        TypeSchema::new("gke_fleet_feature", TypeKind::Managed, "A fleet feature such as multiclusteringress.")
            .import_id("NAME or projects/P/locations/global/features/NAME")
            .attr(st("project", Presence::OptionalComputed).force_new())
            .attr(st("location", Presence::OptionalComputed).force_new())
            .attr(st("name", Presence::Required).force_new().describe("feature id, e.g. multiclusteringress"))
            .attr(st("config_membership", Presence::Optional).describe("full membership name of the config cluster"))
            .attr(st("id", Presence::Computed))
            .attr(st("state", Presence::Computed))
    }

    fn plan(&self, c: &Client, _prior: Option<&Map>, mut p: Planned) -> ProviderResult<Planned> {
        p.attrs.insert("project".into(), Value::str(c.project(&p.attrs)?));
        if s(&p.attrs, "location").is_none() {
            p.attrs.insert("location".into(), Value::str("global"));
        }
        if let Some(cm) = s(&p.attrs, "config_membership")
            && (cm.split('/').count() != 6 || !cm.starts_with("projects/"))
        {
            return Err(ProviderError::new(
                ErrorKind::Invalid,
                format!(
                    "config_membership `{cm}` must be a full membership name projects/P/locations/L/memberships/M (reference the membership's `name`)"
                ),
            ));
        }
        p.attrs.insert("state".into(), Value::str("OK"));
        Ok(p)
    }

    async fn read(&self, c: &Client, prior: &Map) -> ProviderResult<Option<Map>> {
        let p = c.project(prior)?;
        let l = s(prior, "location").unwrap_or_else(|| "global".into());
        match c
            .call(
                Api::Hub,
                Method::GET,
                &path(&p, &l, &req(prior, "name")?),
                &[("returnPartialSuccess", "true".into())],
                None,
            )
            .await
        {
            Ok(j) => Ok(Some(from_api(&p, &j))),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn create(&self, c: &Client, planned: &Map) -> ProviderResult<Object> {
        let p = c.project(planned)?;
        let l = s(planned, "location").unwrap_or_else(|| "global".into());
        let name = req(planned, "name")?;
        let body = json!({"spec": spec(planned)});
        match c
            .call(
                Api::Hub,
                Method::POST,
                &format!("projects/{p}/locations/{l}/features"),
                &[("featureId", name.clone())],
                Some(&body),
            )
            .await
        {
            Ok(op) => {
                c.wait_lro(op).await?;
                self.wait_ok(c, &p, &l, &name).await.map(Object::from)
            }
            // Made already (a reply lost after the change): adopt it when it matches, and wait
            // for it to be ready as a create does.
            Err(e) if e.kind == ErrorKind::Conflict => {
                let live = self.read(c, planned).await?;
                let adopted = adopt("fleet feature", &path(&p, &l, &name), planned, live, &["config_membership"])?;
                Ok(Object { attrs: self.wait_ok(c, &p, &l, &name).await?, ..adopted })
            }
            Err(e) => Err(e),
        }
    }

    async fn update(&self, c: &Client, prior: &Map, planned: &Map) -> ProviderResult<Map> {
        let p = c.project(prior)?;
        let l = s(prior, "location").unwrap_or_else(|| "global".into());
        let name = req(prior, "name")?;
        let body = json!({"spec": spec(planned)});
        let mask = ("updateMask", "spec.multiclusteringress.config_membership".to_string());
        let op = c.call(Api::Hub, Method::PATCH, &path(&p, &l, &name), &[mask], Some(&body)).await?;
        c.wait_lro(op).await?;
        self.wait_ok(c, &p, &l, &name).await
    }

    async fn delete(&self, c: &Client, prior: &Map) -> ProviderResult<()> {
        let p = c.project(prior)?;
        let l = s(prior, "location").unwrap_or_else(|| "global".into());
        let op = c
            .call(Api::Hub, Method::DELETE, &path(&p, &l, &req(prior, "name")?), &[("force", "false".into())], None)
            .await?;
        c.wait_lro(op).await.map(|_| ())
    }

    async fn import(&self, c: &Client, id: &str) -> ProviderResult<Map> {
        let parts: Vec<&str> = id.split('/').collect();
        let m = match parts.as_slice() {
            [name] => Map::from([("name".into(), Value::str(*name))]),
            ["projects", p, "locations", l, "features", name] => Map::from([
                ("project".into(), Value::str(*p)),
                ("location".into(), Value::str(*l)),
                ("name".into(), Value::str(*name)),
            ]),
            _ => {
                return Err(ProviderError::new(
                    ErrorKind::Invalid,
                    format!("import id `{id}`: expected FEATURE or a full name"),
                ));
            }
        };
        self.read(c, &m).await?.ok_or_else(|| ProviderError::new(ErrorKind::NotFound, format!("no fleet feature {id}")))
    }
}
