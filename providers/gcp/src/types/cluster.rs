//! Cluster lookups: `[clusters.NAME]` (data type `cluster`) and the `gke_cluster` data source.
//! Every lookup of a run answers from one `clusters.list` (`locations/-`) and one aggregated
//! instances list (for the node tag) per project, shared by all of them; a cluster the list does
//! not hold is read with its own `clusters.get` (so a missing one is reported as before).

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
/// GKE-made firewall rules (as the setup guide finds them). The guide's name filter also matches
/// clusters whose names extend this one (`cluster` vs `cluster-1`), so what it returns is kept
/// only when its GKE name (`gke-CLUSTER-HASH-...`) or its `goog-k8s-cluster-name` label is this
/// cluster's.
async fn node_tag(c: &Client, project: &str, cluster: &str, autopilot: bool) -> ProviderResult<Option<String>> {
    // The guide's `name eq "gke-CLUSTER-.*"`, over the run's one list.
    let prefix = format!("gke-{cluster}-");
    let named = |j: &&J| j["name"].as_str().is_some_and(|n| n.starts_with(&prefix));
    if autopilot {
        let rules = c.firewalls_of(project).await?;
        let mut tags: Vec<String> = rules
            .iter()
            .filter(named)
            .filter(|r| r["name"].as_str().is_some_and(|n| gke_name_of(n, cluster)))
            .filter_map(|r| r["targetTags"][0].as_str().map(String::from))
            .collect();
        tags.sort();
        return Ok(tags.into_iter().next());
    }
    let instances = c.instances_of(project).await?;
    let mut nodes: Vec<(String, String)> = instances
        .iter()
        .filter(named)
        .filter(|i| i["labels"]["goog-k8s-cluster-name"].as_str().is_none_or(|n| n == cluster))
        .filter_map(|i| {
            let tags = i["tags"]["items"].as_array()?;
            let tag = tags.iter().filter_map(J::as_str).find(|t| t.ends_with("-node") && gke_name_of(t, cluster))?;
            Some((i["name"].as_str()?.to_string(), tag.to_string()))
        })
        .collect();
    nodes.sort();
    Ok(nodes.into_iter().next().map(|(_, t)| t))
}

/// Whether `name` is a GKE-made name of `cluster`: `gke-CLUSTER-HASH-...`, HASH 8 hex digits.
fn gke_name_of(name: &str, cluster: &str) -> bool {
    let Some(rest) = name.strip_prefix("gke-").and_then(|r| r.strip_prefix(cluster)).and_then(|r| r.strip_prefix('-'))
    else {
        return false;
    };
    rest.len() > 9 && rest.as_bytes()[..8].iter().all(u8::is_ascii_hexdigit) && rest.as_bytes()[8] == b'-'
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
    let dns = &j["controlPlaneEndpointsConfig"]["dnsEndpointConfig"];
    let membership = j["fleet"]["membership"].as_str().unwrap_or("");
    let ca_pem = base64_decode(ca).unwrap_or_default();
    let region = region_of(location);
    Map::from([
        ("project".into(), Value::str(project)),
        ("location".into(), Value::str(location)),
        ("name".into(), Value::str(name)),
        ("id".into(), Value::str(format!("projects/{project}/locations/{location}/clusters/{name}"))),
        ("endpoint".into(), Value::str(j["endpoint"].as_str().unwrap_or(""))),
        ("private_endpoint".into(), Value::str(private_endpoint)),
        ("dns_endpoint".into(), Value::str(dns["endpoint"].as_str().unwrap_or(""))),
        ("dns_external_traffic".into(), Value::Bool(dns["allowExternalTraffic"].as_bool().unwrap_or(false))),
        // GKE reports `//gkehub.googleapis.com/projects/P/locations/L/memberships/M`.
        ("fleet_membership".into(), Value::str(membership.trim_start_matches("//gkehub.googleapis.com/"))),
        ("private".into(), Value::Bool(private)),
        ("ca_certificate".into(), Value::str(ca_pem)),
        ("pod_cidr".into(), Value::str(pod)),
        ("network".into(), Value::str(j["network"].as_str().unwrap_or(""))),
        ("subnetwork".into(), Value::str(j["subnetwork"].as_str().unwrap_or(""))),
        ("region".into(), Value::str(&region)),
        ("node_zones".into(), node_zones(location, j)),
        ("autopilot".into(), Value::Bool(j["autopilot"]["enabled"].as_bool().unwrap_or(false))),
        ("node_tag".into(), tag.map_or(Value::Null, Value::String)),
        ("authorized_networks".into(), string_set(&J::Array(cidrs))),
        ("global_access".into(), Value::Bool(ip["globalAccess"].as_bool().unwrap_or(false))),
        ("membership_name".into(), Value::str(format!("projects/{project}/locations/{region}/memberships/{name}"))),
        ("workload_pool".into(), Value::str(j["workloadIdentityConfig"]["workloadPool"].as_str().unwrap_or(""))),
    ])
}

/// The zones of the cluster's nodes (`locations`); a zonal cluster's own zone when absent.
fn node_zones(location: &str, j: &J) -> Value {
    let zones: Vec<Value> =
        j["locations"].as_array().into_iter().flatten().filter_map(J::as_str).map(Value::str).collect();
    if zones.is_empty() { Value::List(vec![Value::str(location)]) } else { Value::List(zones) }
}

fn base64_decode(s: &str) -> Option<String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(s.trim()).ok()?;
    String::from_utf8(bytes).ok()
}

/// How the Kubernetes provider may reach a cluster (its `conn` module acts on each).
const CONNECT_MODES: [&str; 5] = ["kubeconfig", "gke", "gke-internal", "gke-dns", "connect-gateway"];

/// Looks a cluster up.
pub async fn lookup(c: &Client, config: &Map) -> ProviderResult<Map> {
    let connect = config.get("connect").and_then(Value::as_str);
    if let Some(mode) = connect.filter(|m| !CONNECT_MODES.contains(m)) {
        return Err(ProviderError::new(
            ErrorKind::Invalid,
            format!(
                "`connect` must be one of {}, not \"{mode}\"",
                CONNECT_MODES.map(|m| format!("\"{m}\"")).join(", ")
            ),
        ));
    }
    let project = c.project(config)?;
    let location = req(config, "location")?;
    let name = req(config, "name")?;
    let listed = c.clusters_of(&project).await.ok().and_then(|all| {
        all.iter()
            .find(|j| j["name"].as_str() == Some(name.as_str()) && j["location"].as_str() == Some(location.as_str()))
            .cloned()
    });
    let j = match listed {
        Some(j) => Some(j),
        None => c.get_opt(Api::Container, &format!("projects/{project}/locations/{location}/clusters/{name}")).await?,
    };
    let j = j.ok_or_else(|| {
        ProviderError::new(
            ErrorKind::NotFound,
            format!("GKE cluster `{name}` does not exist in project {project}, location {location}"),
        )
    })?;
    let autopilot = j["autopilot"]["enabled"].as_bool().unwrap_or(false);
    let tag = node_tag(c, &project, &name, autopilot).await?;
    let mut m = attrs(&project, &location, &j, tag);
    // The Connect Gateway's URLs name the fleet project by number.
    if connect == Some("connect-gateway")
        && let Some(Value::String(membership)) = m.get_mut("fleet_membership")
        && let Some(("projects", rest)) = membership.split_once('/')
        && let Some((fleet, rest)) = rest.split_once('/')
        && !fleet.bytes().all(|b| b.is_ascii_digit())
    {
        let number = c.project_number(fleet).await?;
        *membership = format!("projects/{number}/{rest}");
    }
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
                .attr(AttrSchema::new("connect", AttrType::String, Presence::Optional).describe(
                    "how meshform reaches the cluster's API server: `kubeconfig` (default), `gke`, `gke-internal`, `gke-dns` or `connect-gateway`",
                ))
                .attr(AttrSchema::new("context", AttrType::String, Presence::Optional).describe("kubeconfig context"));
        }
        for n in [
            "id",
            "endpoint",
            "private_endpoint",
            "dns_endpoint",
            "fleet_membership",
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
            .attr(
                AttrSchema::new("dns_external_traffic", AttrType::Bool, Presence::Computed)
                    .describe("the DNS-based endpoint accepts traffic from outside Google Cloud"),
            )
            .attr(
                AttrSchema::new("node_zones", AttrType::List(Box::new(AttrType::String)), Presence::Computed)
                    .describe("zones of the cluster's nodes"),
            )
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

#[cfg(test)]
mod tests {
    use super::gke_name_of;

    #[test]
    fn gke_names_belong_to_one_cluster_only() {
        assert!(gke_name_of("gke-cluster-1-0a1b2c3d-node", "cluster-1"));
        assert!(gke_name_of("gke-cluster-0a1b2c3d-vms", "cluster"));
        assert!(!gke_name_of("gke-cluster-1-0a1b2c3d-node", "cluster"), "cluster-1 is not cluster");
        assert!(!gke_name_of("gke-cluster-10-0a1b2c3d-node", "cluster-1"));
        assert!(!gke_name_of("gke-cluster-1-default-pool-0a1b2c3d-0011", "cluster-1"));
    }
}
