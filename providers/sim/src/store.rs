//! The simulator's in-memory state: every resource as the JSON the API returns, keyed by its
//! location and name, plus operations that finish after a set number of polls, Cloud
//! Storage's buckets (`buckets`, whose objects carry bytes), and Secret Manager's secrets
//! (each with its versions and their payloads).

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::buckets::Buckets;
use crate::certs::ClusterCa;
use crate::world::{World, is_zone, region_of, short_hash};

/// Where compute links point (real compute links use this host).
pub const COMPUTE_BASE: &str = "https://www.googleapis.com/compute/v1";
/// Where container links point.
pub const CONTAINER_BASE: &str = "https://container.googleapis.com/v1";

/// A pending or finished operation.
#[derive(Clone, Debug)]
pub struct Op {
    /// The operation as returned.
    pub body: Value,
    /// Polls still needed before it is done.
    pub polls_left: u32,
    /// Which API's operation this is.
    pub api: OpApi,
    /// When it is done whether polled or not (GKE finishes operations by time; see
    /// `Store::lro_time`).
    pub deadline: Option<std::time::Instant>,
    /// Set on the result when it finishes with an error.
    pub failure: Option<String>,
    /// The LRO `response`, shown once it is done.
    pub response: Option<Value>,
}

/// The three operation flavours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpApi {
    /// compute#operation (`status: PENDING|RUNNING|DONE`).
    Compute,
    /// container Operation (`status`, failure in `statusMessage` + `error`).
    Container,
    /// google.longrunning.Operation (`done`, `response` | `error`).
    Hub,
}

/// Endpoints and CA of a cluster's API server.
#[derive(Clone, Debug)]
pub struct ClusterAccess {
    /// Cluster name.
    pub name: String,
    /// Location.
    pub location: String,
    /// `host:port` of the public endpoint.
    pub endpoint: String,
    /// `host:port` of the private endpoint (private clusters).
    pub private_endpoint: Option<String>,
    /// `host:port` of the DNS-based endpoint (`localhost:PORT`; served when the world allows
    /// external traffic to it).
    pub dns_endpoint: String,
    /// The cluster CA.
    pub ca: ClusterCa,
    /// A token with full access (written to the kubeconfig).
    pub admin_token: String,
}

/// All simulated resources of the world's project.
pub struct Store {
    /// Project id.
    pub project: String,
    /// Project number.
    pub project_number: String,
    /// compute: `name` → address.
    pub addresses: BTreeMap<String, Value>,
    /// compute: `name` → firewall.
    pub firewalls: BTreeMap<String, Value>,
    /// compute: `zone/name` → NEG.
    pub negs: BTreeMap<String, Value>,
    /// compute: `zone/name` → instance.
    pub instances: BTreeMap<String, Value>,
    /// compute: `name` → network.
    pub networks: BTreeMap<String, Value>,
    /// compute: `region/name` → subnetwork.
    pub subnetworks: BTreeMap<String, Value>,
    /// container: `location/name` → cluster.
    pub clusters: BTreeMap<String, Value>,
    /// gkehub: `location/id` → membership.
    pub memberships: BTreeMap<String, Value>,
    /// gkehub: `location/id` → feature.
    pub features: BTreeMap<String, Value>,
    /// Feature GETs left before a new feature reports state OK.
    pub feature_pending: BTreeMap<String, u32>,
    /// gkehub v2: `location/membership/feature` → membership feature (see `servicemesh`).
    pub membership_features: BTreeMap<String, MembershipFeature>,
    /// Reads of a membership feature that still report PROVISIONING (the mesh controller's
    /// delay, counted in reads so that tests are decided by requests alone).
    pub controller_polls: u32,
    /// A membership's control-plane state forced by a test (`membership id` →
    /// `controlPlaneManagement`, e.g. STALLED with Google's details): the controller stops there.
    pub mesh_stalls: BTreeMap<String, Value>,
    /// Operations by their short (compute, container) or full (hub) name.
    pub ops: BTreeMap<String, Op>,
    /// Access details of every cluster, by `location/name`.
    pub access: BTreeMap<String, ClusterAccess>,
    /// Polls an operation takes.
    pub lro_polls: u32,
    /// When set, an operation is also done this long after it started, polled or not (as GKE's
    /// are: an operation a killed client never polls still ends). Set from
    /// `SimOptions::clock`; off when it is pinned, so that tests finish operations by polls
    /// alone, deterministically.
    pub lro_time: Option<std::time::Duration>,
    /// Cloud Storage: buckets, objects and resumable uploads.
    pub storage: Buckets,
    /// Secret Manager: secret id → the secret and its versions.
    pub secrets: BTreeMap<String, SecretEntry>,
    next_id: u64,
}

/// Whether a membership feature's spec asks for the managed control plane.
pub fn mesh_automatic(spec: &Value) -> bool {
    let sm = &spec["servicemesh"];
    sm["management"] == "MANAGEMENT_AUTOMATIC" || sm["controlPlane"] == "AUTOMATIC"
}

/// A gkehub v2 MembershipFeature as stored: the resource (names with the project number), and
/// reads left before its controller reports it ACTIVE.
#[derive(Clone, Debug)]
pub struct MembershipFeature {
    /// The `MembershipFeature` resource.
    pub resource: Value,
    /// Reads left in PROVISIONING.
    pub reads_left: u32,
}

/// A Secret Manager secret: the resource as the API returns it, and its versions in order of
/// creation (version N at index N - 1; versions are never removed, only destroyed).
#[derive(Clone, Debug)]
pub struct SecretEntry {
    /// The `Secret` resource.
    pub secret: Value,
    /// Its versions, version 1 first.
    pub versions: Vec<VersionEntry>,
}

/// A secret version: the `SecretVersion` resource (`state` ENABLED, DISABLED or DESTROYED) and
/// its payload, gone once the version is destroyed.
#[derive(Clone, Debug)]
pub struct VersionEntry {
    /// The `SecretVersion` resource.
    pub version: Value,
    /// The payload's bytes (`None` once destroyed).
    pub data: Option<Vec<u8>>,
}

impl Store {
    /// The v1 feature's `membershipSpecs` and `membershipStates` of `feature`, as the v2
    /// membership features make them (keys with the project number; specs under `mesh`).
    pub fn v1_membership_maps(
        &self,
        feature: &str,
    ) -> (serde_json::Map<String, Value>, serde_json::Map<String, Value>) {
        let (mut specs, mut states) = (serde_json::Map::new(), serde_json::Map::new());
        for (k, f) in &self.membership_features {
            let parts: Vec<&str> = k.split('/').collect();
            if parts.get(2) != Some(&feature) {
                continue;
            }
            let key = format!("projects/{}/locations/{}/memberships/{}", self.project_number, parts[0], parts[1]);
            specs.insert(key.clone(), json!({"mesh": f.resource["spec"]["servicemesh"].clone()}));
            if let Some(s) = f.resource.get("state") {
                states.insert(key, json!({"servicemesh": s["servicemesh"].clone(), "state": s["state"].clone()}));
            }
        }
        (specs, states)
    }

    /// Stores a membership feature with `spec` (gkehub v2), its controller starting over.
    pub fn put_membership_feature(&mut self, key: &str, name: &str, spec: Value, labels: Option<Value>) -> Value {
        let prior = self.membership_features.get(key).map(|f| f.resource.clone());
        let created = prior.as_ref().and_then(|r| r["createTime"].as_str().map(String::from)).unwrap_or_else(now);
        let labels = labels.or_else(|| prior.as_ref().map(|r| r["labels"].clone())).unwrap_or_else(|| json!({}));
        let resource = json!({
            "name": name, "spec": spec, "labels": labels, "createTime": created, "updateTime": now(),
            "lifecycleState": {"state": "ACTIVE"},
        });
        let reads_left = if mesh_automatic(&resource["spec"]) { self.controller_polls } else { 0 };
        self.membership_features.insert(key.to_string(), MembershipFeature { resource: resource.clone(), reads_left });
        resource
    }

    /// A membership feature as a read sees it: GKE's mesh controller advanced by the read
    /// (PROVISIONING for `controller_polls` reads, then ACTIVE; DISABLED when management is
    /// manual; a state of `mesh_stalls` when a test forces one). Also whether it is ACTIVE.
    pub fn observe_membership_feature(&mut self, key: &str) -> Option<(Value, bool)> {
        let membership_id = key.split('/').nth(1).unwrap_or_default().to_string();
        let stall = self.mesh_stalls.get(&membership_id).cloned();
        let f = self.membership_features.get_mut(key)?;
        let provisioning = f.reads_left > 0;
        if stall.is_none() && provisioning {
            f.reads_left -= 1;
        }
        let revision = "asm-managed";
        let control = match (&stall, mesh_automatic(&f.resource["spec"])) {
            (Some(forced), _) => forced.clone(),
            (None, false) => {
                json!({"state": "DISABLED", "details": [{"code": "DISABLED", "details": "Control plane management is not enabled."}]})
            }
            (None, true) if provisioning => json!({
                "state": "PROVISIONING", "implementation": "TRAFFIC_DIRECTOR",
                "details": [{"code": "PROVISIONING", "details": "Service is provisioning."}]}),
            (None, true) => json!({
                "state": "ACTIVE", "implementation": "TRAFFIC_DIRECTOR",
                "details": [{"code": "REVISION_READY", "details": format!("Ready: {revision}")}]}),
        };
        let active = control["state"] == "ACTIVE";
        let code = match control["state"].as_str() {
            Some("ACTIVE" | "DISABLED") => "OK",
            Some("PROVISIONING") => "WARNING",
            _ => "ERROR",
        };
        let description = control["details"][0]["details"].as_str().unwrap_or("").to_string();
        let data = if active {
            json!({"state": "ACTIVE", "details": [{"code": "OK", "details": "Service is running."}]})
        } else {
            json!({"state": "DISABLED"})
        };
        f.resource["state"] = json!({
            "servicemesh": {"controlPlaneManagement": control, "dataPlaneManagement": data},
            "state": {"code": code, "description": description, "updateTime": now()},
        });
        Some((f.resource.clone(), active))
    }

    /// Seeds the store of the world's project (the host project of its network) from a world;
    /// `access` gives each cluster's endpoints and CA. Its service projects' stores are
    /// [`Store::seed_service`]'s.
    pub fn seed(world: &World, access: Vec<ClusterAccess>, lro_polls: u32) -> Store {
        let mut s = Store::empty(&world.project, &world.project_number, access, lro_polls);
        s.storage = Buckets::seed(&world.buckets, &crate::support::now_rfc3339_millis());
        for secret in &world.secrets {
            s.insert_secret(&secret.name, &json!({"replication": {"automatic": {}}}));
            for data in secret.version_data() {
                s.add_secret_version(&secret.name, data.as_bytes().to_vec(), false);
            }
        }
        let p = world.project.clone();
        let net_link = format!("{COMPUTE_BASE}/projects/{p}/global/networks/{}", world.network);
        let mut subnet_links = Vec::new();
        for sn in &world.subnets {
            let link = format!("{COMPUTE_BASE}/projects/{p}/regions/{}/subnetworks/{}", sn.region, sn.name);
            subnet_links.push(link.clone());
            let id = s.id();
            s.subnetworks.insert(
                format!("{}/{}", sn.region, sn.name),
                json!({"kind": "compute#subnetwork", "id": id, "name": sn.name, "network": net_link,
                       "ipCidrRange": sn.cidr, "region": format!("{COMPUTE_BASE}/projects/{p}/regions/{}", sn.region),
                       "selfLink": link, "creationTimestamp": now()}),
            );
        }
        let id = s.id();
        s.networks.insert(
            world.network.clone(),
            json!({"kind": "compute#network", "id": id, "name": world.network, "autoCreateSubnetworks": false,
                   "subnetworks": subnet_links, "selfLink": net_link, "creationTimestamp": now(),
                   "routingConfig": {"routingMode": "REGIONAL"}}),
        );
        for c in world.clusters.iter().filter(|c| world.project_of(c) == world.project) {
            s.seed_cluster(world, c);
        }
        // Clusters made with `--fleet-project`: members of the world project's fleet.
        for c in world.clusters.iter().filter(|c| c.fleet) {
            let (l, link) = (region_of(&c.location), cluster_link(world.project_of(c), &c.location, &c.name));
            let m = s.membership(&l, &c.name, &link, true, json!({}), json!({}));
            s.memberships.insert(format!("{l}/{}", c.name), m);
        }
        s
    }

    /// Seeds the store of service project `id` of a world: its clusters (on the host project's
    /// network, as GKE reports shared-VPC clusters) and their nodes; no network, bucket or secret
    /// of its own.
    pub fn seed_service(world: &World, id: &str, number: &str, access: Vec<ClusterAccess>, lro_polls: u32) -> Store {
        let mut s = Store::empty(id, number, access, lro_polls);
        for c in world.clusters.iter().filter(|c| world.project_of(c) == id) {
            s.seed_cluster(world, c);
        }
        s
    }

    fn empty(project: &str, number: &str, access: Vec<ClusterAccess>, lro_polls: u32) -> Store {
        Store {
            project: project.to_string(),
            project_number: number.to_string(),
            addresses: BTreeMap::new(),
            firewalls: BTreeMap::new(),
            negs: BTreeMap::new(),
            instances: BTreeMap::new(),
            networks: BTreeMap::new(),
            subnetworks: BTreeMap::new(),
            clusters: BTreeMap::new(),
            memberships: BTreeMap::new(),
            features: BTreeMap::new(),
            feature_pending: BTreeMap::new(),
            ops: BTreeMap::new(),
            access: access.into_iter().map(|a| (format!("{}/{}", a.location, a.name), a)).collect(),
            lro_polls,
            membership_features: BTreeMap::new(),
            controller_polls: 2,
            mesh_stalls: BTreeMap::new(),
            lro_time: None,
            storage: Buckets::seed(&[], &crate::support::now_rfc3339_millis()),
            secrets: BTreeMap::new(),
            next_id: 1_000_000_000_000,
        }
    }

    fn seed_cluster(&mut self, world: &World, c: &crate::world::ClusterSpec) {
        let p = world.project_of(c);
        let key = format!("{}/{}", c.location, c.name);
        let access = self.access.get(&key).cloned();
        let tag = format!("gke-{}-{}-node", c.name, &short_hash(&c.name)[..8]);
        let region = region_of(&c.location);
        let zones: Vec<String> =
            if is_zone(&c.location) { vec![c.location.clone()] } else { vec![format!("{region}-b")] };
        let (subnet_name, net_link, subnet) = network_links(world, &region);
        if !c.autopilot {
            for i in 0..c.nodes {
                let zone = &zones[i as usize % zones.len()];
                let name = format!("gke-{}-default-pool-{}-{:04x}", c.name, &short_hash(&c.name)[..8], i * 4099 + 17);
                let id = self.id();
                self.instances.insert(
                    format!("{zone}/{name}"),
                    json!({"kind": "compute#instance", "id": id, "name": name, "status": "RUNNING",
                           "zone": format!("{COMPUTE_BASE}/projects/{p}/zones/{zone}"),
                           "machineType": format!("{COMPUTE_BASE}/projects/{p}/zones/{zone}/machineTypes/e2-standard-4"),
                           "tags": {"items": [tag], "fingerprint": fingerprint(&json!([tag]))},
                           "labels": {"goog-gke-node": "", "goog-k8s-cluster-name": c.name,
                                      "goog-k8s-cluster-location": c.location, "goog-k8s-node-pool-name": "default-pool"},
                           "networkInterfaces": [{"network": net_link, "subnetwork": subnet, "networkIP": format!("10.128.0.{}", 10 + i)}],
                           "selfLink": format!("{COMPUTE_BASE}/projects/{p}/zones/{zone}/instances/{name}"),
                           "creationTimestamp": now()}),
                );
            }
        } else {
            // Autopilot: GKE-made firewall rules carry the node target tag.
            let id = self.id();
            let fw = format!("gke-{}-{}-vms", c.name, &short_hash(&c.name)[..8]);
            self.firewalls.insert(
                fw.clone(),
                json!({"kind": "compute#firewall", "id": id, "name": fw, "network": net_link, "direction": "INGRESS",
                       "priority": 1000, "allowed": [{"IPProtocol": "tcp", "ports": ["1-65535"]}],
                       "sourceRanges": [c.pod_cidr], "targetTags": [tag], "disabled": false,
                       "selfLink": format!("{COMPUTE_BASE}/projects/{p}/global/firewalls/{fw}"), "creationTimestamp": now()}),
            );
        }
        let (endpoint, private_endpoint, dns_endpoint, ca_b64) = match &access {
            Some(a) => (
                a.endpoint.clone(),
                a.private_endpoint.clone(),
                a.dns_endpoint.clone(),
                base64::engine::general_purpose::STANDARD.encode(a.ca.cert_pem.as_bytes()),
            ),
            None => ("127.0.0.1".into(), None, String::new(), String::new()),
        };
        let (private_config, endpoints_config) =
            endpoint_configs(c, &endpoint, private_endpoint.as_deref(), &dns_endpoint);
        let id = short_hash(&format!("{key}-id")) + &short_hash(&key) + &short_hash(&format!("{key}-x"));
        let cluster = json!({
            "name": c.name, "id": id, "location": c.location, "zone": c.location,
            "locations": zones, "status": "RUNNING", "currentMasterVersion": "1.30.5-gke.1014000",
            "currentNodeVersion": "1.30.5-gke.1014000", "initialClusterVersion": "1.30.5-gke.1014000",
            "currentNodeCount": if c.autopilot { 0 } else { c.nodes },
            "selfLink": format!("{CONTAINER_BASE}/projects/{p}/locations/{}/clusters/{}", c.location, c.name),
            "endpoint": endpoint, "network": world.network, "subnetwork": subnet_name,
            "networkConfig": {"network": format!("projects/{}/global/networks/{}", world.project, world.network),
                              "subnetwork": format!("projects/{}/regions/{region}/subnetworks/{subnet_name}", world.project)},
            "clusterIpv4Cidr": c.pod_cidr, "servicesIpv4Cidr": c.services_cidr,
            "ipAllocationPolicy": {"useIpAliases": true, "clusterIpv4Cidr": c.pod_cidr, "clusterIpv4CidrBlock": c.pod_cidr,
                                   "servicesIpv4Cidr": c.services_cidr, "servicesIpv4CidrBlock": c.services_cidr, "stackType": "IPV4"},
            "masterAuth": {"clusterCaCertificate": ca_b64},
            "autopilot": {"enabled": c.autopilot},
            "privateClusterConfig": private_config,
            "masterAuthorizedNetworksConfig": endpoints_config["ipEndpointsConfig"]["authorizedNetworksConfig"],
            "controlPlaneEndpointsConfig": endpoints_config,
            "nodePools": if c.autopilot { json!([]) } else { json!([{"name": "default-pool", "status": "RUNNING", "version": "1.30.5-gke.1014000",
                "config": {"machineType": "e2-standard-4", "tags": []}, "initialNodeCount": c.nodes}]) },
            "workloadIdentityConfig": {"workloadPool": format!("{p}.svc.id.goog")},
            "resourceLabels": c.labels, "labelFingerprint": label_fingerprint(&json!(c.labels)),
            "etag": short_hash(&format!("{key}-etag")), "createTime": now()
        });
        self.clusters.insert(key, cluster);
    }

    /// A GKE cluster's fleet membership `id` in location `l` of this project, as gkehub returns
    /// it (`link`: the cluster's `//container.googleapis.com/...` resource link).
    pub fn membership(
        &self,
        l: &str,
        id: &str,
        link: &str,
        cluster_exists: bool,
        authority: Value,
        labels: Value,
    ) -> Value {
        let p = &self.project;
        let name = format!("projects/{p}/locations/{l}/memberships/{id}");
        json!({
            "name": name,
            "endpoint": {"gkeCluster": {"resourceLink": link, "clusterMissing": !cluster_exists}, "kubernetesMetadata": {}},
            "authority": authority,
            "state": {"code": "READY"}, "uniqueId": short_hash(&name) + &short_hash(&format!("{name}-u")),
            "createTime": now(), "updateTime": now(), "labels": labels,
            "monitoringConfig": {"project": p, "location": l, "cluster": link.rsplit('/').next().unwrap_or("")},
        })
    }

    /// A new numeric id, as compute returns them (a decimal string).
    pub fn id(&mut self) -> String {
        self.next_id += 7_919;
        self.next_id.to_string()
    }

    /// Starts an operation; returns its current body (already done when `lro_polls` is 0).
    pub fn start_op(&mut self, api: OpApi, body: Value, failure: Option<String>) -> Value {
        self.start_lro(api, body, failure, None)
    }

    /// Starts an operation with an LRO `response`.
    pub fn start_lro(&mut self, api: OpApi, body: Value, failure: Option<String>, response: Option<Value>) -> Value {
        let name = body["name"].as_str().unwrap_or_default().to_string();
        let deadline = self.lro_time.map(|t| std::time::Instant::now() + t);
        let mut op = Op { body, polls_left: self.lro_polls, api, deadline, failure, response };
        op.advance(false);
        let out = op.body.clone();
        self.ops.insert(name, op);
        out
    }

    /// Polls an operation: each poll brings it one step closer to done.
    pub fn poll_op(&mut self, name: &str) -> Option<Value> {
        let op = self.ops.get_mut(name)?;
        op.advance(true);
        Some(op.body.clone())
    }

    /// Whether an unfinished operation is running on a cluster.
    pub fn cluster_busy(&mut self, target: &str) -> bool {
        self.ops.values_mut().any(|o| {
            o.advance(false);
            o.api == OpApi::Container
                && o.polls_left > 0
                && o.body["targetLink"].as_str().is_some_and(|t| t.ends_with(target))
        })
    }

    /// The container operations of a location (`projects.locations.operations.list`), in
    /// their current state; `-` is every location.
    pub fn container_ops(&mut self, location: &str) -> Vec<Value> {
        self.ops
            .values_mut()
            .filter(|o| o.api == OpApi::Container && (location == "-" || o.body["location"] == location))
            .map(|o| {
                o.advance(false);
                o.body.clone()
            })
            .collect()
    }

    /// A compute operation for `target` (`global/firewalls/x` or `zones/z/...`).
    pub fn compute_op(&mut self, op_type: &str, target_path: &str, target_id: &str, zone: Option<&str>) -> Value {
        let p = self.project.clone();
        let id = self.id();
        let name = format!("operation-{}-{}", crate::support::unix_millis(), short_hash(&format!("{target_path}{id}")));
        let scope = match zone {
            Some(z) => format!("zones/{z}"),
            None => "global".into(),
        };
        let mut body = json!({
            "kind": "compute#operation", "id": id, "name": name, "operationType": op_type,
            "targetLink": format!("{COMPUTE_BASE}/projects/{p}/{target_path}"), "targetId": target_id,
            "status": "PENDING", "progress": 0, "user": "meshform-sim@example.iam.gserviceaccount.com",
            "insertTime": now(), "startTime": now(),
            "selfLink": format!("{COMPUTE_BASE}/projects/{p}/{scope}/operations/{name}"),
        });
        if let Some(z) = zone {
            body["zone"] = json!(format!("{COMPUTE_BASE}/projects/{p}/zones/{z}"));
        }
        self.start_op(OpApi::Compute, body, None)
    }
}

/// Secret Manager's resources: names carry the project number, as Google's do.
impl Store {
    /// `projects/NUMBER/secrets/ID`.
    pub fn secret_name(&self, id: &str) -> String {
        format!("projects/{}/secrets/{id}", self.project_number)
    }

    /// A new etag (Secret Manager's are quoted strings).
    fn etag(&mut self) -> String {
        format!("\"{}\"", self.id())
    }

    /// Creates secret `id` from a create request's body (its `replication`, `labels` and
    /// `annotations`, empty maps left out as Google leaves them out); returns the secret. The
    /// caller has checked the id and that no such secret exists.
    pub fn insert_secret(&mut self, id: &str, body: &Value) -> Value {
        let mut secret = json!({
            "name": self.secret_name(id),
            "replication": body.get("replication").cloned().unwrap_or_else(|| json!({"automatic": {}})),
            "createTime": crate::support::now_rfc3339_millis(),
            "etag": self.etag(),
        });
        for key in ["labels", "annotations"] {
            if let Some(m) = body.get(key).filter(|m| m.as_object().is_some_and(|m| !m.is_empty())) {
                secret[key] = m.clone();
            }
        }
        self.secrets.insert(id.to_string(), SecretEntry { secret: secret.clone(), versions: Vec::new() });
        secret
    }

    /// Adds an enabled version holding `data` to secret `id` (`checksum`: the client gave the
    /// payload's CRC32C, which the caller checked); returns it, or `None` when there is no such
    /// secret.
    pub fn add_secret_version(&mut self, id: &str, data: Vec<u8>, checksum: bool) -> Option<Value> {
        let etag = self.etag();
        let name = self.secret_name(id);
        let entry = self.secrets.get_mut(id)?;
        let mut version = json!({
            "name": format!("{name}/versions/{}", entry.versions.len() + 1),
            "createTime": crate::support::now_rfc3339_millis(),
            "state": "ENABLED",
            "replicationStatus": {"automatic": {}},
            "etag": etag,
        });
        if checksum {
            version["clientSpecifiedPayloadChecksum"] = json!(true);
        }
        entry.versions.push(VersionEntry { version: version.clone(), data: Some(data) });
        Some(version)
    }

    /// Sets a version's state (`DESTROYED` drops its payload and records `destroyTime`); returns
    /// it. The caller has resolved the version (index into the secret's versions).
    pub fn set_version_state(&mut self, id: &str, index: usize, state: &str) -> Option<Value> {
        let etag = self.etag();
        let v = self.secrets.get_mut(id)?.versions.get_mut(index)?;
        v.version["state"] = json!(state);
        v.version["etag"] = json!(etag);
        if state == "DESTROYED" {
            v.data = None;
            v.version["destroyTime"] = json!(crate::support::now_rfc3339_millis());
        }
        Some(v.version.clone())
    }
}

impl Op {
    fn advance(&mut self, poll: bool) {
        if poll && self.polls_left > 0 {
            self.polls_left -= 1;
        }
        if self.deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            self.polls_left = 0;
        }
        let done = self.polls_left == 0;
        match self.api {
            OpApi::Compute => {
                self.body["status"] = json!(if done {
                    "DONE"
                } else if poll {
                    "RUNNING"
                } else {
                    "PENDING"
                });
                self.body["progress"] = json!(if done { 100 } else { 50 });
                if done {
                    self.body["endTime"] = json!(now());
                    if let Some(f) = &self.failure {
                        self.body["error"] = json!({"errors": [{"code": "INVALID_FIELD_VALUE", "message": f}]});
                        self.body["httpErrorStatusCode"] = json!(400);
                        self.body["httpErrorMessage"] = json!("BAD REQUEST");
                    }
                }
            }
            OpApi::Container => {
                self.body["status"] = json!(if done {
                    "DONE"
                } else if poll {
                    "RUNNING"
                } else {
                    "PENDING"
                });
                if done {
                    self.body["endTime"] = json!(now());
                    if let Some(f) = &self.failure {
                        self.body["statusMessage"] = json!(f);
                        self.body["error"] = json!({"code": 3, "message": f});
                    }
                }
            }
            OpApi::Hub => {
                self.body["done"] = json!(done);
                if done {
                    self.body["metadata"]["endTime"] = json!(now());
                    match (&self.failure, self.response.take()) {
                        (Some(f), _) => self.body["error"] = json!({"code": 9, "message": f}),
                        (None, Some(r)) => self.body["response"] = r,
                        (None, None) => {}
                    }
                }
            }
        }
    }
}

/// Now in RFC 3339.
pub fn now() -> String {
    crate::support::now_rfc3339()
}

/// A label fingerprint: base64 of the first 8 bytes of a hash of the canonical labels.
pub fn fingerprint(v: &Value) -> String {
    if v.as_object().is_some_and(Map::is_empty) || v.is_null() {
        return "42WmSpB8rSM=".into();
    }
    let h = short_hash(&v.to_string()) + &short_hash(&format!("{v}#"));
    let bytes: Vec<u8> = (0..8).map(|i| u8::from_str_radix(&h[i * 2..i * 2 + 2], 16).unwrap_or(0)).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The subnet name in `region` of the world's network, and the links of the network and subnet
/// (in the world's project, which owns them; its service projects' clusters use them too).
fn network_links<'a>(world: &'a World, region: &str) -> (&'a str, String, String) {
    let host = &world.project;
    let name = world.subnet_in(region).map_or("default", |s| s.name.as_str());
    let net = format!("{COMPUTE_BASE}/projects/{host}/global/networks/{}", world.network);
    (name, net, format!("{COMPUTE_BASE}/projects/{host}/regions/{region}/subnetworks/{name}"))
}

/// A GKE cluster's `labelFingerprint`: 8 hex digits of a hash of its labels (GKE's is opaque,
/// changing whenever they change).
pub fn label_fingerprint(labels: &Value) -> String {
    crate::world::short_hash(&labels.to_string())
}

/// A cluster's `privateClusterConfig` and `controlPlaneEndpointsConfig` as GKE reports them at
/// creation (authorized networks in both the deprecated and the current place).
fn endpoint_configs(
    c: &crate::world::ClusterSpec,
    endpoint: &str,
    private_endpoint: Option<&str>,
    dns_endpoint: &str,
) -> (Value, Value) {
    let cidrs: Vec<Value> =
        c.authorized_networks.iter().map(|b| json!({"cidrBlock": b, "displayName": "existing"})).collect();
    let authorized = json!({"enabled": !cidrs.is_empty() || c.private, "cidrBlocks": cidrs});
    let private_ep = private_endpoint.unwrap_or_default();
    let public_endpoint = if c.public_endpoint { endpoint } else { "" };
    let private = if c.private {
        json!({"enablePrivateNodes": true, "enablePrivateEndpoint": !c.public_endpoint, "masterIpv4CidrBlock": "172.16.0.0/28",
               "privateEndpoint": private_ep, "publicEndpoint": public_endpoint,
               "masterGlobalAccessConfig": {"enabled": c.global_access}})
    } else {
        json!({})
    };
    let endpoints = json!({
        "ipEndpointsConfig": {"enabled": true, "enablePublicEndpoint": c.public_endpoint, "globalAccess": c.global_access,
                              "authorizedNetworksConfig": authorized, "publicEndpoint": public_endpoint, "privateEndpoint": private_ep},
        "dnsEndpointConfig": {"endpoint": dns_endpoint, "allowExternalTraffic": c.dns_access}});
    (private, endpoints)
}

/// A cluster's resource link as fleet memberships name it.
pub fn cluster_link(project: &str, location: &str, name: &str) -> String {
    format!("//container.googleapis.com/projects/{project}/locations/{location}/clusters/{name}")
}
