//! Cluster lookups: `[clusters.NAME]` (data type `cluster`) and the `gke_cluster` data source.
//! One container `clusters.get`, plus one compute list for the node tag.

use async_trait::async_trait;
use meshform_engine::provider::{
    AttrSchema, AttrType, ErrorKind, Presence, ProviderError, ProviderResult, TypeKind, TypeSchema,
};
use meshform_engine::value::{Map, Value};
use serde_json::Value as J;

use super::GcpType;
use crate::client::{Api, Client};
use crate::convert::{req, string_set};

/// A cluster lookup under a type name.
pub struct ClusterLookup {
    /// `cluster` or `gke_cluster`.
    pub name: &'static str,
}

/// The region of a zone or region.
pub fn region_of(location: &str) -> String {
    let parts: Vec<&str> = location.split('-').collect();
    if parts.len() == 3 { format!("{}-{}", parts[0], parts[1]) } else { location.to_string() }
}

/// The first network tag of the cluster's nodes, or for Autopilot the target tag of its
/// GKE-made firewall rules (as the setup guide finds them).
async fn node_tag(c: &Client, project: &str, cluster: &str, autopilot: bool) -> ProviderResult<Option<String>> {
    let filter = format!("name eq \"gke-{}-.*\"", regex_escape(cluster));
    if autopilot {
        let rules =
            c.list_all(Api::Compute, &format!("projects/{project}/global/firewalls"), Some(&filter), "items").await?;
        let mut tags: Vec<String> =
            rules.iter().filter_map(|r| r["targetTags"][0].as_str().map(String::from)).collect();
        tags.sort();
        return Ok(tags.into_iter().next());
    }
    let instances =
        c.aggregated_all(&format!("projects/{project}/aggregated/instances"), Some(&filter), "instances").await?;
    let mut nodes: Vec<(String, String)> = instances
        .iter()
        .filter_map(|i| Some((i["name"].as_str()?.to_string(), i["tags"]["items"][0].as_str()?.to_string())))
        .collect();
    nodes.sort();
    Ok(nodes.into_iter().next().map(|(_, t)| t))
}

fn regex_escape(s: &str) -> String {
    s.chars().flat_map(|c| if c.is_ascii_alphanumeric() { vec![c] } else { vec!['\\', c] }).collect()
}

fn attrs(project: &str, location: &str, j: &J, tag: Option<String>) -> Map {
    let name = j["name"].as_str().unwrap_or_default();
    let private = j["privateClusterConfig"]["enablePrivateNodes"].as_bool().unwrap_or(false);
    let ip = &j["controlPlaneEndpointsConfig"]["ipEndpointsConfig"];
    let anc = if ip["authorizedNetworksConfig"].is_object() {
        &ip["authorizedNetworksConfig"]
    } else {
        &j["masterAuthorizedNetworksConfig"]
    };
    let cidrs: Vec<J> =
        anc["cidrBlocks"].as_array().map(|b| b.iter().map(|x| x["cidrBlock"].clone()).collect()).unwrap_or_default();
    let pod = j["clusterIpv4Cidr"]
        .as_str()
        .or_else(|| j["ipAllocationPolicy"]["clusterIpv4CidrBlock"].as_str())
        .unwrap_or("");
    let private_endpoint =
        j["privateClusterConfig"]["privateEndpoint"].as_str().or_else(|| ip["privateEndpoint"].as_str()).unwrap_or("");
    let ca = j["masterAuth"]["clusterCaCertificate"].as_str().unwrap_or("");
    let ca_pem = base64_decode(ca).unwrap_or_default();
    let region = region_of(location);
    Map::from([
        ("project".into(), Value::str(project)),
        ("location".into(), Value::str(location)),
        ("name".into(), Value::str(name)),
        ("id".into(), Value::str(format!("projects/{project}/locations/{location}/clusters/{name}"))),
        ("endpoint".into(), Value::str(j["endpoint"].as_str().unwrap_or(""))),
        ("private_endpoint".into(), Value::str(private_endpoint)),
        ("private".into(), Value::Bool(private)),
        ("ca_certificate".into(), Value::str(ca_pem)),
        ("pod_cidr".into(), Value::str(pod)),
        ("network".into(), Value::str(j["network"].as_str().unwrap_or(""))),
        ("subnetwork".into(), Value::str(j["subnetwork"].as_str().unwrap_or(""))),
        ("region".into(), Value::str(&region)),
        ("autopilot".into(), Value::Bool(j["autopilot"]["enabled"].as_bool().unwrap_or(false))),
        ("node_tag".into(), tag.map_or(Value::Null, Value::String)),
        ("authorized_networks".into(), string_set(&J::Array(cidrs))),
        ("global_access".into(), Value::Bool(ip["globalAccess"].as_bool().unwrap_or(false))),
        ("membership_name".into(), Value::str(format!("projects/{project}/locations/{region}/memberships/{name}"))),
        ("workload_pool".into(), Value::str(j["workloadIdentityConfig"]["workloadPool"].as_str().unwrap_or(""))),
    ])
}

fn base64_decode(s: &str) -> Option<String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(s.trim()).ok()?;
    String::from_utf8(bytes).ok()
}

/// Looks a cluster up.
pub async fn lookup(c: &Client, config: &Map) -> ProviderResult<Map> {
    let project = c.project(config)?;
    let location = req(config, "location")?;
    let name = req(config, "name")?;
    let j = c
        .get_opt(Api::Container, &format!("projects/{project}/locations/{location}/clusters/{name}"))
        .await?
        .ok_or_else(|| {
            ProviderError::new(
                ErrorKind::NotFound,
                format!("GKE cluster `{name}` does not exist in project {project}, location {location}"),
            )
        })?;
    let autopilot = j["autopilot"]["enabled"].as_bool().unwrap_or(false);
    let tag = node_tag(c, &project, &name, autopilot).await?;
    let mut m = attrs(&project, &location, &j, tag);
    for k in ["connect", "context"] {
        if let Some(v) = config.get(k) {
            m.insert(k.into(), v.clone());
        }
    }
    Ok(m)
}

#[async_trait]
impl GcpType for ClusterLookup {
    fn schema(&self) -> TypeSchema {
        let out = |n: &str| AttrSchema::new(n, AttrType::String, Presence::Computed);
        let mut s = TypeSchema::new(self.name, TypeKind::Data, "A GKE cluster, looked up live.")
            .attr(AttrSchema::new("project", AttrType::String, Presence::OptionalComputed))
            .attr(AttrSchema::new("location", AttrType::String, Presence::Required))
            .attr(AttrSchema::new(
                "name",
                AttrType::String,
                if self.name == "cluster" { Presence::Optional } else { Presence::Required },
            ));
        if self.name == "cluster" {
            s = s
                .attr(
                    AttrSchema::new("connect", AttrType::String, Presence::Optional).describe("`kubeconfig` or `gke`"),
                )
                .attr(AttrSchema::new("context", AttrType::String, Presence::Optional).describe("kubeconfig context"));
        }
        for n in [
            "id",
            "endpoint",
            "private_endpoint",
            "ca_certificate",
            "pod_cidr",
            "network",
            "subnetwork",
            "region",
            "node_tag",
            "membership_name",
            "workload_pool",
        ] {
            s = s.attr(out(n));
        }
        s.attr(AttrSchema::new("private", AttrType::Bool, Presence::Computed))
            .attr(AttrSchema::new("autopilot", AttrType::Bool, Presence::Computed))
            .attr(AttrSchema::new("global_access", AttrType::Bool, Presence::Computed))
            .attr(AttrSchema::new(
                "authorized_networks",
                AttrType::List(Box::new(AttrType::String)),
                Presence::Computed,
            ))
    }

    async fn read_data(&self, c: &Client, config: &Map) -> ProviderResult<Map> {
        lookup(c, config).await
    }
}
