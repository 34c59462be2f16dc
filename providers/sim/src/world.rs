//! The simulated world: a project (the host project of its network), its network and subnets,
//! service projects sharing that network (a shared VPC), and GKE clusters in any of them with
//! their node instances, endpoints, certificate authorities and resource labels, Cloud Storage
//! buckets, and Secret Manager secrets. Read from a TOML file (`--world`) or the default, which
//! mirrors the setup guides: two private clusters in two regions of one project, a versioned
//! bucket for remote state, and no secret.

use serde::{Deserialize, Serialize};

/// A world description.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct World {
    /// Project id.
    #[serde(default = "default_project")]
    pub project: String,
    /// Project number (Google returns it in some names).
    #[serde(default = "default_project_number")]
    pub project_number: String,
    /// The VPC network.
    #[serde(default = "default_network")]
    pub network: String,
    /// Subnets of the network.
    #[serde(default)]
    pub subnets: Vec<Subnet>,
    /// Service projects attached to `project`'s network (a shared VPC): their clusters use its
    /// subnets, their nodes and GKE-made resources live in them.
    #[serde(default)]
    pub service_projects: Vec<ProjectSpec>,
    /// GKE clusters.
    #[serde(default)]
    pub clusters: Vec<ClusterSpec>,
    /// Whoever runs meshform, gcloud and kubectl is inside the VPC (or on a VPN into it), so
    /// private endpoints answer them. false: a hosted CI runner, outside: private endpoints
    /// refuse its connections, and a cluster without a public endpoint is reachable only through
    /// its DNS-based endpoint or the Connect Gateway.
    #[serde(default = "yes")]
    pub runner_in_vpc: bool,
    /// Cloud Storage buckets (a world that names none gets [`DEMO_BUCKET`]; `buckets = []` gives
    /// none).
    #[serde(default = "default_buckets")]
    pub buckets: Vec<BucketSpec>,
    /// Secret Manager secrets (a world that names none gets [`DEMO_TLS_SECRET`], the key the
    /// mci-istio plan's ingress reads; `secrets = []` gives none).
    #[serde(default = "default_secrets")]
    pub secrets: Vec<SecretSpec>,
}

/// A Secret Manager secret of the world, with its versions' data:
///
/// ```toml
/// [[secrets]]
/// name = "ingress-tls-key"
/// data = "-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----\n"
///
/// [[secrets]]
/// name = "api-token"
/// versions = ["old-token", "new-token"]   # versions 1 and 2; `latest` is 2
/// ```
///
/// Every version is enabled, created without a client checksum; the secret's replication is
/// automatic.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSpec {
    /// Secret id (1 to 255 of `A-Z`, `a-z`, `0-9`, `-`, `_`).
    pub name: String,
    /// The data of its one version (text); or give `versions`.
    #[serde(default)]
    pub data: Option<String>,
    /// The data of each version in order (version 1 first); or give `data`.
    #[serde(default)]
    pub versions: Vec<String>,
}

impl SecretSpec {
    /// The data of each version, version 1 first.
    pub fn version_data(&self) -> Vec<&str> {
        self.data.iter().chain(&self.versions).map(String::as_str).collect()
    }
}

/// The bucket every world has unless it lists its own: versioned, for meshform's remote state.
pub const DEMO_BUCKET: &str = "meshform-demo-state";

/// A Cloud Storage bucket of the world.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BucketSpec {
    /// Bucket name.
    pub name: String,
    /// Object versioning: an overwritten or deleted object's generation is kept, noncurrent.
    #[serde(default)]
    pub versioning: bool,
    /// Location (default `US`).
    #[serde(default = "default_bucket_location")]
    pub location: String,
}

/// A subnet.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Subnet {
    /// Region.
    pub region: String,
    /// Name (default `default`).
    #[serde(default = "default_network")]
    pub name: String,
    /// Primary range.
    pub cidr: String,
}

/// A service project of a shared VPC.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectSpec {
    /// Project id.
    pub id: String,
    /// Project number.
    pub number: String,
}

/// A GKE cluster of the world.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// Cluster name.
    pub name: String,
    /// Its project: the world's `project` (default) or one of its `service_projects`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Zone (zonal cluster) or region (regional cluster).
    pub location: String,
    /// GKE resource labels (`resourceLabels`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Private nodes and a private endpoint.
    #[serde(default = "yes")]
    pub private: bool,
    /// Autopilot cluster.
    #[serde(default)]
    pub autopilot: bool,
    /// Pod range.
    pub pod_cidr: String,
    /// Service range.
    #[serde(default = "default_services")]
    pub services_cidr: String,
    /// Node count.
    #[serde(default = "three")]
    pub nodes: u32,
    /// Master authorized networks present before anyone touches the cluster.
    #[serde(default)]
    pub authorized_networks: Vec<String>,
    /// Control-plane global access at the start.
    #[serde(default)]
    pub global_access: bool,
    /// The public IP endpoint is enabled (false: a private cluster reachable only on its private
    /// endpoint, `enablePrivateEndpoint`; its public listener is not served).
    #[serde(default = "yes")]
    pub public_endpoint: bool,
    /// The DNS-based control-plane endpoint accepts traffic from outside Google Cloud
    /// (`dnsEndpointConfig.allowExternalTraffic`; false: its listener is not served).
    #[serde(default = "yes")]
    pub dns_access: bool,
    /// Registered to the fleet of the world's project when it was made (`--fleet-project`): a
    /// membership named after the cluster, in the cluster's region.
    #[serde(default)]
    pub fleet: bool,
    /// The istiod revision label of the pre-installed control plane; empty: none is installed
    /// (the fleet's managed mesh installs `asm-managed`).
    #[serde(default = "default_revision")]
    pub istio_revision: String,
}

fn default_project() -> String {
    "meshform-demo".into()
}
fn default_project_number() -> String {
    "469301857210".into()
}
fn default_network() -> String {
    "default".into()
}
fn default_services() -> String {
    "10.96.0.0/20".into()
}
fn default_revision() -> String {
    "asm-173-3".into()
}
/// The Secret Manager secret every world has unless it lists its own: the ingress TLS key of
/// `plans/mci-istio.toml` (a stand-in text, not a key).
pub const DEMO_TLS_SECRET: &str = "ingress-tls-key";

fn default_secrets() -> Vec<SecretSpec> {
    vec![SecretSpec {
        name: DEMO_TLS_SECRET.into(),
        data: Some(
            "-----BEGIN PRIVATE KEY-----\nsimulated ingress key of the demo world\n-----END PRIVATE KEY-----\n".into(),
        ),
        versions: Vec::new(),
    }]
}

fn default_buckets() -> Vec<BucketSpec> {
    vec![BucketSpec { name: DEMO_BUCKET.into(), versioning: true, location: default_bucket_location() }]
}
fn default_bucket_location() -> String {
    "US".into()
}
fn yes() -> bool {
    true
}
fn three() -> u32 {
    3
}

impl Default for World {
    fn default() -> Self {
        World {
            project: default_project(),
            project_number: default_project_number(),
            network: default_network(),
            service_projects: Vec::new(),
            subnets: vec![
                Subnet { region: "us-central1".into(), name: "default".into(), cidr: "10.128.0.0/20".into() },
                Subnet { region: "europe-west1".into(), name: "default".into(), cidr: "10.132.0.0/20".into() },
            ],
            clusters: vec![
                ClusterSpec {
                    name: "cluster-1".into(),
                    project: None,
                    labels: Default::default(),
                    location: "us-central1-a".into(),
                    private: true,
                    autopilot: false,
                    pod_cidr: "10.0.0.0/14".into(),
                    services_cidr: "10.96.0.0/20".into(),
                    nodes: 3,
                    authorized_networks: vec!["203.0.113.0/24".into()],
                    global_access: false,
                    public_endpoint: true,
                    dns_access: true,
                    fleet: false,
                    istio_revision: default_revision(),
                },
                ClusterSpec {
                    name: "cluster-2".into(),
                    project: None,
                    labels: Default::default(),
                    location: "europe-west1-b".into(),
                    private: true,
                    autopilot: false,
                    pod_cidr: "10.4.0.0/14".into(),
                    services_cidr: "10.96.16.0/20".into(),
                    nodes: 3,
                    authorized_networks: vec!["203.0.113.0/24".into()],
                    global_access: false,
                    public_endpoint: true,
                    dns_access: true,
                    fleet: false,
                    istio_revision: default_revision(),
                },
            ],
            runner_in_vpc: true,
            buckets: default_buckets(),
            secrets: default_secrets(),
        }
    }
}

impl World {
    /// Parses a world file.
    pub fn from_toml(text: &str) -> Result<World, String> {
        let w: World = toml::from_str(text).map_err(|e| e.to_string())?;
        w.check()?;
        Ok(w)
    }

    /// A fleet of `n` clusters (1 to 250) for scale tests and the fleet benchmark: private zonal
    /// clusters `c001`… round-robin over 10 regions (zones a, b, c), each with one node, /17 pod
    /// ranges from 10.0.0.0 (250 fit in 10.0.0.0/9, and contiguous ranges merge into few blocks),
    /// /20 service ranges from 172.16.0.0, and one authorized network each (`203.0.113.0/24`, as
    /// the default world has).
    pub fn fleet(n: usize) -> World {
        World::from_toml(&World::fleet_toml(n)).unwrap_or_else(|e| panic!("the fleet world of {n}: {e}"))
    }

    /// [`World::fleet`] as a world file, for `meshform sim --world`.
    pub fn fleet_toml(n: usize) -> String {
        const REGIONS: [&str; 10] = [
            "us-central1",
            "europe-west1",
            "us-east1",
            "us-west1",
            "asia-east1",
            "europe-west4",
            "us-east4",
            "asia-northeast1",
            "australia-southeast1",
            "southamerica-east1",
        ];
        let ip = |v: u32| std::net::Ipv4Addr::from(v).to_string();
        let mut w = String::from("project = \"meshform-demo\"\nnetwork = \"default\"\n\n");
        for (r, region) in REGIONS.iter().enumerate() {
            w.push_str(&format!("[[subnets]]\nregion = \"{region}\"\ncidr = \"10.{}.0.0/20\"\n\n", 128 + 4 * r));
        }
        for i in 0..n.clamp(1, 250) {
            let zone = format!("{}-{}", REGIONS[i % 10], ["a", "b", "c"][(i / 10) % 3]);
            let pod = ip((10 << 24) + (i as u32) * (1 << 15));
            let svc = ip((172 << 24) + (16 << 16) + (i as u32) * (1 << 12));
            w.push_str(&format!(
                "[[clusters]]\nname = \"c{:03}\"\nlocation = \"{zone}\"\npod_cidr = \"{pod}/17\"\nservices_cidr = \"{svc}/20\"\nnodes = 1\nauthorized_networks = [\"203.0.113.0/24\"]\n\n",
                i + 1
            ));
        }
        w
    }

    /// The project of cluster `c`.
    pub fn project_of<'a>(&'a self, c: &'a ClusterSpec) -> &'a str {
        c.project.as_deref().unwrap_or(&self.project)
    }

    /// The cluster (its index) a resource link names, as fleet memberships name theirs:
    /// `//container.googleapis.com/projects/P/locations/L/clusters/C`, P the project's id or
    /// number, `zones/` in older links.
    pub fn cluster_of_link(&self, link: &str) -> Option<usize> {
        let parts: Vec<&str> = link.split('/').collect();
        let after = |k: &[&str]| parts.iter().position(|p| k.contains(p)).and_then(|i| parts.get(i + 1)).copied();
        let (p, l, n) = (after(&["projects"])?, after(&["locations", "zones"])?, after(&["clusters"])?);
        self.clusters.iter().position(|c| {
            let cp = self.project_of(c);
            let number = if cp == self.project {
                Some(self.project_number.as_str())
            } else {
                self.service_projects.iter().find(|s| s.id == cp).map(|s| s.number.as_str())
            };
            c.name == n && c.location == l && (cp == p || number == Some(p))
        })
    }

    /// The subnet of the network in `region`, if the world has one.
    pub fn subnet_in(&self, region: &str) -> Option<&Subnet> {
        self.subnets.iter().find(|s| s.region == region)
    }

    fn check(&self) -> Result<(), String> {
        let mut projects = std::collections::BTreeSet::from([self.project.as_str(), self.project_number.as_str()]);
        for p in &self.service_projects {
            if !projects.insert(&p.id) || !projects.insert(&p.number) {
                return Err(format!("project {} ({}) is declared twice", p.id, p.number));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for c in &self.clusters {
            // Kubernetes API servers are kept by location and name: unique across the world.
            if !names.insert((&c.location, &c.name)) {
                return Err(format!("cluster {} in {} is declared twice", c.name, c.location));
            }
            let p = self.project_of(c);
            if p != self.project && !self.service_projects.iter().any(|s| s.id == p) {
                return Err(format!(
                    "cluster {}: project `{p}` is neither the world's project nor one of its service_projects",
                    c.name
                ));
            }
            if region_of(&c.location).is_empty() {
                return Err(format!("cluster {}: `{}` is not a zone or region", c.name, c.location));
            }
            if c.fleet
                && self.clusters.iter().any(|o| {
                    o.fleet
                        && o.name == c.name
                        && !std::ptr::eq(o, c)
                        && region_of(&o.location) == region_of(&c.location)
                })
            {
                return Err(format!(
                    "cluster {}: two fleet members of one name in one region would be one membership",
                    c.name
                ));
            }
            if !c.public_endpoint && !c.private {
                return Err(format!("cluster {}: a cluster without a public endpoint must be private", c.name));
            }
        }
        let mut buckets = std::collections::BTreeSet::new();
        for b in &self.buckets {
            if !buckets.insert(&b.name) {
                return Err(format!("bucket {} is declared twice", b.name));
            }
            if !valid_bucket_name(&b.name) {
                return Err(format!("bucket {}: not a valid bucket name (3-63 of a-z, 0-9, `-`, `_`, `.`)", b.name));
            }
        }
        let mut secrets = std::collections::BTreeSet::new();
        for s in &self.secrets {
            if !secrets.insert(&s.name) {
                return Err(format!("secret {} is declared twice", s.name));
            }
            if !valid_secret_id(&s.name) {
                return Err(format!("secret {}: not a valid secret id (1-255 of A-Z, a-z, 0-9, `-`, `_`)", s.name));
            }
            if s.data.is_some() && !s.versions.is_empty() {
                return Err(format!("secret {}: give `data` (one version) or `versions`, not both", s.name));
            }
            if s.version_data().iter().any(|d| d.len() > SECRET_PAYLOAD_MAX) {
                return Err(format!("secret {}: a version's data is over 64 KiB", s.name));
            }
        }
        Ok(())
    }
}

/// The largest payload a secret version may hold (64 KiB).
pub const SECRET_PAYLOAD_MAX: usize = 65_536;

/// Whether `id` is a valid Secret Manager secret id: 1 to 255 ASCII letters, digits, `-`, `_`.
pub fn valid_secret_id(id: &str) -> bool {
    (1..=255).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `name` is a valid Cloud Storage bucket name (without dots' longer form): 3 to 63
/// lowercase letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit.
pub fn valid_bucket_name(name: &str) -> bool {
    let ends = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=63).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
        && ends(name.chars().next())
        && ends(name.chars().last())
}

/// The region of a zone (`us-central1-a` → `us-central1`), or the region itself.
pub fn region_of(location: &str) -> String {
    let parts: Vec<&str> = location.split('-').collect();
    match parts.len() {
        3 => format!("{}-{}", parts[0], parts[1]),
        2 => location.to_string(),
        _ => String::new(),
    }
}

/// Whether a location is a zone (`us-central1-a`) rather than a region.
pub fn is_zone(location: &str) -> bool {
    location.split('-').count() == 3
}

/// A short stable hash used in GKE-made names (`gke-NAME-HASH-node`).
pub fn short_hash(s: &str) -> String {
    let mut h: u32 = 2166136261;
    for b in s.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(16777619);
    }
    format!("{h:08x}")
}
