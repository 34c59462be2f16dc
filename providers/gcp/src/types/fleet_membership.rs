//! `gke_fleet_membership`: a regional fleet membership of a GKE cluster, with workload identity.

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
pub struct FleetMembership;

fn cluster_rel(p: &str, raw: &str) -> String {
    match raw.find("projects/") {
        Some(i) => raw[i..].to_string(),
        None => {
            let (l, c) = raw.split_once('/').unwrap_or(("", raw));
            format!("projects/{p}/locations/{l}/clusters/{c}")
        }
    }
}

fn from_api(p: &str, j: &J) -> Map {
    let name = j["name"].as_str().unwrap_or_default();
    let parts: Vec<&str> = name.split('/').collect();
    let link = j["endpoint"]["gkeCluster"]["resourceLink"].as_str().unwrap_or("");
    let issuer = j["authority"]["issuer"].as_str().unwrap_or("");
    Map::from([
        ("project".into(), Value::str(p)),
        ("location".into(), Value::str(*parts.get(3).unwrap_or(&""))),
        ("membership_id".into(), Value::str(*parts.get(5).unwrap_or(&""))),
        ("gke_cluster".into(), Value::str(link.find("projects/").map_or(link, |i| &link[i..]))),
        ("workload_identity".into(), Value::Bool(!issuer.is_empty())),
        (
            "labels".into(),
            j.get("labels").map(val).filter(|v| matches!(v, Value::Map(_))).unwrap_or(Value::Map(Map::new())),
        ),
        ("name".into(), Value::str(name)),
        ("id".into(), Value::str(name)),
        ("unique_id".into(), Value::str(j["uniqueId"].as_str().unwrap_or(""))),
        ("issuer".into(), Value::str(issuer)),
        ("workload_identity_pool".into(), Value::str(j["authority"]["workloadIdentityPool"].as_str().unwrap_or(""))),
    ])
}

fn path(p: &str, l: &str, id: &str) -> String {
    format!("projects/{p}/locations/{l}/memberships/{id}")
}

fn authority(m: &Map, cluster: &str) -> J {
    if matches!(m.get("workload_identity"), Some(Value::Bool(false))) {
        json!({})
    } else {
        json!({"issuer": format!("https://container.googleapis.com/v1/{cluster}")})
    }
}

#[async_trait]
impl GcpType for FleetMembership {
    fn schema(&self) -> TypeSchema {
        let st = |n: &str, pr: Presence| AttrSchema::new(n, AttrType::String, pr);
        TypeSchema::new("gke_fleet_membership", TypeKind::Managed, "A fleet membership of a GKE cluster.")
            .import_id("LOCATION/MEMBERSHIP_ID or projects/P/locations/L/memberships/ID")
            .attr(st("project", Presence::OptionalComputed).force_new())
            .attr(st("location", Presence::Required).force_new().describe("the cluster's region"))
            .attr(st("membership_id", Presence::Required).force_new())
            .attr(
                st("gke_cluster", Presence::Required)
                    .force_new()
                    .describe("LOCATION/NAME or projects/P/locations/L/clusters/C"),
            )
            .attr(AttrSchema::new("workload_identity", AttrType::Bool, Presence::OptionalComputed))
            .attr(AttrSchema::new("labels", AttrType::Map(Box::new(AttrType::String)), Presence::OptionalComputed))
            .attr(st("name", Presence::Computed))
            .attr(st("id", Presence::Computed))
            .attr(st("unique_id", Presence::Computed))
            .attr(st("issuer", Presence::Computed))
            .attr(st("workload_identity_pool", Presence::Computed))
    }

    fn plan(&self, c: &Client, prior: Option<&Map>, mut p: Planned) -> ProviderResult<Planned> {
        let project = c.project(&p.attrs)?;
        p.attrs.insert("project".into(), Value::str(&project));
        if let Some(gc) = s(&p.attrs, "gke_cluster") {
            p.attrs.insert("gke_cluster".into(), Value::str(cluster_rel(&project, &gc)));
        }
        if !matches!(p.attrs.get("workload_identity"), Some(Value::Bool(_))) && prior.is_none() {
            p.attrs.insert("workload_identity".into(), Value::Bool(true));
        }
        if let (Some(l), Some(id)) = (s(&p.attrs, "location"), s(&p.attrs, "membership_id")) {
            p.attrs.insert("name".into(), Value::str(path(&project, &l, &id)));
            p.attrs.insert("id".into(), Value::str(path(&project, &l, &id)));
        }
        Ok(p)
    }

    fn list_scope(&self, c: &Client, prior: &Map) -> Option<String> {
        c.project(prior).ok()
    }

    /// Every membership of the project, in every location (`locations/-`), in one paginated list.
    /// When a location cannot be reached the list is incomplete: memberships are then read one by
    /// one rather than taken for deleted.
    async fn list(&self, c: &Client, prior: &Map) -> ProviderResult<Vec<Map>> {
        let p = c.project(prior)?;
        let path = format!("projects/{p}/locations/-/memberships");
        let (mut out, mut token) = (Vec::new(), None::<String>);
        loop {
            let mut q = vec![("pageSize", "100".to_string())];
            if let Some(t) = &token {
                q.push(("pageToken", t.clone()));
            }
            let page = c.call(Api::Hub, Method::GET, &path, &q, None).await?;
            if page["unreachable"].as_array().is_some_and(|u| !u.is_empty()) {
                return Err(ProviderError::new(
                    ErrorKind::Transient,
                    format!("memberships list: unreachable locations {}", page["unreachable"]),
                ));
            }
            out.extend(page["resources"].as_array().into_iter().flatten().map(|j| from_api(&p, j)));
            match page["nextPageToken"].as_str() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    async fn read(&self, c: &Client, prior: &Map) -> ProviderResult<Option<Map>> {
        let p = c.project(prior)?;
        Ok(c.get_opt(Api::Hub, &path(&p, &req(prior, "location")?, &req(prior, "membership_id")?))
            .await?
            .map(|j| from_api(&p, &j)))
    }

    async fn create(&self, c: &Client, planned: &Map) -> ProviderResult<Object> {
        let p = c.project(planned)?;
        let (l, id) = (req(planned, "location")?, req(planned, "membership_id")?);
        let cluster = cluster_rel(&p, &req(planned, "gke_cluster")?);
        let mut body = json!({
            "endpoint": {"gkeCluster": {"resourceLink": format!("//container.googleapis.com/{cluster}")}},
            "authority": authority(planned, &cluster),
        });
        if let Some(l) = planned.get("labels").filter(|l| matches!(l, Value::Map(_))) {
            body["labels"] = to_api(l);
        }
        let q = [("membershipId", id.clone())];
        match c.call(Api::Hub, Method::POST, &format!("projects/{p}/locations/{l}/memberships"), &q, Some(&body)).await
        {
            Ok(op) => {
                let resp = c.wait_lro(op).await?;
                Ok(from_api(&p, &resp).into())
            }
            Err(e) if e.kind == ErrorKind::Conflict => {
                let live = self.read(c, planned).await?;
                let mut want = planned.clone();
                want.insert("gke_cluster".into(), Value::str(&cluster));
                adopt("fleet membership", &path(&p, &l, &id), &want, live, &["gke_cluster", "workload_identity"])
            }
            Err(e) => Err(e),
        }
    }

    async fn update(&self, c: &Client, prior: &Map, planned: &Map) -> ProviderResult<Map> {
        let p = c.project(prior)?;
        let (l, id) = (req(prior, "location")?, req(prior, "membership_id")?);
        let cluster = cluster_rel(&p, &req(prior, "gke_cluster")?);
        let mut masks = Vec::new();
        let mut body = json!({});
        if !meshform_engine::plan::same(prior.get("labels"), planned.get("labels")) {
            masks.push("labels");
            body["labels"] = planned.get("labels").map(to_api).unwrap_or(json!({}));
        }
        if !meshform_engine::plan::same(prior.get("workload_identity"), planned.get("workload_identity")) {
            masks.push("authority");
            body["authority"] = authority(planned, &cluster);
        }
        let mut last = None;
        if !masks.is_empty() {
            let op = c
                .call(Api::Hub, Method::PATCH, &path(&p, &l, &id), &[("updateMask", masks.join(","))], Some(&body))
                .await?;
            last = Some(c.wait_lro(op).await?);
        }
        match last {
            Some(r) if r.get("name").is_some() => Ok(from_api(&p, &r)),
            _ => self
                .read(c, prior)
                .await?
                .ok_or_else(|| ProviderError::new(ErrorKind::NotFound, format!("membership {id} vanished"))),
        }
    }

    async fn delete(&self, c: &Client, prior: &Map) -> ProviderResult<()> {
        let p = c.project(prior)?;
        let op = c
            .call(
                Api::Hub,
                Method::DELETE,
                &path(&p, &req(prior, "location")?, &req(prior, "membership_id")?),
                &[],
                None,
            )
            .await?;
        c.wait_lro(op).await.map(|_| ())
    }

    async fn import(&self, c: &Client, id: &str) -> ProviderResult<Map> {
        let parts: Vec<&str> = id.split('/').collect();
        let m = match parts.as_slice() {
            [l, mid] => Map::from([("location".into(), Value::str(*l)), ("membership_id".into(), Value::str(*mid))]),
            ["projects", p, "locations", l, "memberships", mid] => Map::from([
                ("project".into(), Value::str(*p)),
                ("location".into(), Value::str(*l)),
                ("membership_id".into(), Value::str(*mid)),
            ]),
            _ => {
                return Err(ProviderError::new(
                    ErrorKind::Invalid,
                    format!("import id `{id}`: expected LOCATION/MEMBERSHIP_ID"),
                ));
            }
        };
        self.read(c, &m)
            .await?
            .ok_or_else(|| ProviderError::new(ErrorKind::NotFound, format!("no fleet membership {id}")))
    }
}
