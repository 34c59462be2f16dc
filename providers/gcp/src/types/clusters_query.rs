//! The `gke_clusters` data source: the GKE clusters of one or more projects (or the members of a
//! fleet) that match optional filters, as a map by cluster name. Its `clusters` attribute is
//! meant for `[clusters.NAME] for_each`: the engine reads it before expanding the graph, so the
//! mesh follows what is live. Each project's clusters come from the run's one `clusters.list`
//! (`locations/-`), which the cluster lookups then answer from.

use std::collections::BTreeMap;

use async_trait::async_trait;
use meshform_engine::provider::{
    AttrSchema, AttrType, ErrorKind, Presence, ProviderError, ProviderResult, TypeKind, TypeSchema,
};
use meshform_engine::value::{Map, Value};
use serde_json::Value as J;

use super::GcpType;
use super::cluster::region_of;
use crate::client::{Api, Client};
use crate::convert::s;

/// `gke_clusters`.
pub struct ClustersQuery;

/// What a query keeps: a location (a zone, or a region and its zones), labels that must all be
/// equal, and a name pattern.
struct Filters {
    location: Option<String>,
    labels: BTreeMap<String, String>,
    name: Option<regex::Regex>,
}

impl Filters {
    fn from(config: &Map) -> ProviderResult<Filters> {
        let labels = match config.get("labels") {
            Some(Value::Map(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(v) => Ok((k.clone(), v.clone())),
                    other => Err(invalid(format!("labels.{k}: expected a string, got a {}", other.type_name()))),
                })
                .collect::<ProviderResult<_>>()?,
            _ => BTreeMap::new(),
        };
        let name = match s(config, "name_regex") {
            Some(r) => Some(regex::Regex::new(&r).map_err(|e| invalid(format!("name_regex: {e}")))?),
            None => None,
        };
        Ok(Filters { location: s(config, "location").filter(|l| l != "-"), labels, name })
    }

    fn keeps(&self, j: &J) -> bool {
        let location = j["location"].as_str().unwrap_or_default();
        let name = j["name"].as_str().unwrap_or_default();
        self.location.as_ref().is_none_or(|l| l == location || *l == region_of(location))
            && self.labels.iter().all(|(k, v)| j["resourceLabels"][k].as_str() == Some(v))
            && self.name.as_ref().is_none_or(|r| r.is_match(name))
    }
}

fn invalid(msg: String) -> ProviderError {
    ProviderError::new(ErrorKind::Invalid, msg)
}

/// The projects to list: `projects` (an empty list lists none), else the provider's project.
fn projects(c: &Client, config: &Map) -> ProviderResult<Vec<String>> {
    match config.get("projects") {
        Some(Value::List(l)) => Ok(l.iter().filter_map(|p| p.as_str().map(String::from)).collect::<Vec<_>>()),
        _ => Ok(vec![c.project(config)?]),
    }
}

/// The clusters of a fleet's members: `(project, location, name)` from each GKE membership's
/// resource link (`//container.googleapis.com/projects/P/locations/L/clusters/C`).
async fn fleet_members(c: &Client, fleet: &str) -> ProviderResult<Vec<(String, String, String)>> {
    let ms = c.list_all(Api::Hub, &format!("projects/{fleet}/locations/-/memberships"), None, "resources").await?;
    let mut out = Vec::new();
    for m in &ms {
        let link = m["endpoint"]["gkeCluster"]["resourceLink"].as_str().unwrap_or_default();
        let parts: Vec<&str> = link.split('/').collect();
        let after = |k: &str| parts.iter().position(|p| *p == k).and_then(|i| parts.get(i + 1)).map(|s| s.to_string());
        if let (Some(p), Some(l), Some(n)) =
            (after("projects"), after("locations").or(after("zones")), after("clusters"))
        {
            out.push((p, l, n));
        }
    }
    Ok(out)
}

/// One matching cluster, as the map's value.
fn entry(project: &str, j: &J) -> Value {
    let name = j["name"].as_str().unwrap_or_default();
    let location = j["location"].as_str().unwrap_or_default();
    let labels: Map = j["resourceLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), Value::str(v.as_str()?))))
        .collect();
    Value::Map(Map::from([
        ("project".into(), Value::str(project)),
        ("location".into(), Value::str(location)),
        ("name".into(), Value::str(name)),
        ("region".into(), Value::str(region_of(location))),
        ("labels".into(), Value::Map(labels)),
        ("id".into(), Value::str(format!("projects/{project}/locations/{location}/clusters/{name}"))),
    ]))
}

#[async_trait]
impl GcpType for ClustersQuery {
    fn schema(&self) -> TypeSchema {
        let list = |n: &str| AttrSchema::new(n, AttrType::List(Box::new(AttrType::String)), Presence::Optional);
        TypeSchema::new(
            "gke_clusters",
            TypeKind::Data,
            "GKE clusters found live: every cluster of `projects` (or of the fleet `fleet_project`'s members) matching the filters, by name. Feed `clusters` to a [clusters] table's for_each: it is read before the graph is expanded.",
        )
        .attr(AttrSchema::new("project", AttrType::String, Presence::OptionalComputed))
        .attr(list("projects").describe("projects to list (unset: the provider's project; empty: none)"))
        .attr(
            AttrSchema::new("fleet_project", AttrType::String, Presence::Optional)
                .describe("instead of projects: the clusters registered to this project's fleet"),
        )
        .attr(
            AttrSchema::new("location", AttrType::String, Presence::Optional)
                .describe("a zone, or a region (its zones included)"),
        )
        .attr(
            AttrSchema::new("labels", AttrType::Map(Box::new(AttrType::String)), Presence::Optional)
                .describe("GKE resource labels every match has, with these values"),
        )
        .attr(
            AttrSchema::new("name_regex", AttrType::String, Presence::Optional)
                .describe("a regular expression searched in the name (anchor it with ^ and $)"),
        )
        .attr(
            AttrSchema::new("clusters", AttrType::Map(Box::new(AttrType::Any)), Presence::Computed)
                .describe("name → { project, location, region, name, labels, id }"),
        )
        .attr(AttrSchema::new("names", AttrType::List(Box::new(AttrType::String)), Presence::Computed))
    }

    async fn read_data(&self, c: &Client, config: &Map) -> ProviderResult<Map> {
        let filters = Filters::from(config)?;
        let mut found: BTreeMap<String, (String, J)> = BTreeMap::new();
        let mut keep = |project: &str, j: &J| -> ProviderResult<()> {
            let name = j["name"].as_str().unwrap_or_default().to_string();
            if let Some((other, _)) = found.get(&name) {
                return Err(invalid(format!(
                    "two matching clusters are named `{name}` (in {other} and {project}): cluster names are the keys of the mesh; narrow the query (projects, location, labels, name_regex)"
                )));
            }
            found.insert(name, (project.to_string(), j.clone()));
            Ok(())
        };
        match s(config, "fleet_project") {
            Some(fleet) => {
                for (p, l, n) in fleet_members(c, &fleet).await? {
                    let all = c.clusters_of(&p).await?;
                    let hit = all.iter().find(|j| j["name"] == n.as_str() && j["location"] == l.as_str());
                    if let Some(j) = hit.filter(|j| filters.keeps(j)) {
                        keep(&p, j)?;
                    }
                }
            }
            None => {
                let ps = projects(c, config)?;
                let lists = futures::future::join_all(ps.iter().map(|p| c.clusters_of(p))).await;
                for (p, all) in ps.iter().zip(lists) {
                    for j in all?.iter().filter(|j| filters.keeps(j)) {
                        keep(p, j)?;
                    }
                }
            }
        }
        let mut m = config.clone();
        m.insert("names".into(), Value::List(found.keys().map(Value::str).collect()));
        m.insert("clusters".into(), Value::Map(found.iter().map(|(n, (p, j))| (n.clone(), entry(p, j))).collect()));
        Ok(m)
    }
}
