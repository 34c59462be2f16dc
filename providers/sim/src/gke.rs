//! GKE's controllers that act between a cluster's API server and Google Cloud, run after a
//! request to a cluster changed what they watch (`KubeServer::outside`):
//!
//! - **Service controller**: a Service of type LoadBalancer gets `status.loadBalancer.ingress`:
//!   an internal address from the subnet of the cluster's region when annotated
//!   `networking.gke.io/load-balancer-type: Internal` (or the legacy
//!   `cloud.google.com/load-balancer-type`), else an external one.
//! - **NEG controller** (ingress-gce `pkg/neg`): a Service annotated `cloud.google.com/neg` with
//!   `exposed_ports` gets a standalone zonal NEG per port in every zone of the cluster's nodes,
//!   named as the entry says or `k8s1-<cluster uid 8>-<ns>-<svc>-<port>-<hash 8>`, of type
//!   GCE_VM_IP_PORT on the cluster's network and subnet, described
//!   `{"cluster-uid","namespace","service-name","port"}` (the cluster uid being `kube-system`'s);
//!   then `cloud.google.com/neg-status` (`network_endpoint_groups` by port, sorted `zones`). A NEG
//!   of that name that exists already is adopted when its description is this Service's, and
//!   otherwise left alone and the port not synced (an empty description on a custom name, or
//!   another Service's, is a conflict, as ingress-gce reports it). NEGs it made whose Service
//!   or port is gone are deleted, with the annotation. Custom names with `ingress: true` are
//!   refused, as by the annotation's validation.
//! - **Multi Cluster Ingress** (closed source; behaviour from GKE's documentation and samples):
//!   in the fleet's config cluster (the multiclusteringress feature's `configMembership`), a
//!   MultiClusterIngress gets `status.VIP` — the address of the global address its
//!   `networking.gke.io/static-ip` annotation names (a URL, a name or the IP), an ephemeral one
//!   without the annotation, none while the named address does not exist — and
//!   `status.CloudResources`; each MultiClusterService is derived into every member cluster (or
//!   those of `spec.clusters`) as a headless Service `mci-<mcs>-svc-<hash>` with the MCS's
//!   selector and ports, annotated with its parent and an `exposed_ports` NEG of each port;
//!   derived Services of a deleted MCS go. (The exact derived names are unverified.)

use std::sync::{Arc, Weak};

use serde_json::{Value, json};

use crate::kube::KubeServer;
use crate::state::Shared;
use crate::store::{COMPUTE_BASE, Store, now};
use crate::world::{is_zone, region_of, short_hash};

/// The hook a cluster's API server calls (see `KubeServer::outside`), holding the rest of the
/// world weakly (the servers hold the hook).
pub fn hook(shared: &Arc<Shared>, all: &[Arc<KubeServer>]) -> crate::kube::OutsideHook {
    let shared = Arc::downgrade(shared);
    let all: Vec<Weak<KubeServer>> = all.iter().map(Arc::downgrade).collect();
    Box::new(move |k| {
        let (Some(shared), Some(all)) = (shared.upgrade(), all.iter().map(Weak::upgrade).collect::<Option<Vec<_>>>())
        else {
            return;
        };
        run(&shared, &all, k);
    })
}

/// Runs the controllers for cluster `k`.
pub fn run(shared: &Shared, all: &[Arc<KubeServer>], k: &Arc<KubeServer>) {
    services(shared, k);
    for changed in multi_cluster_ingress(shared, all, k) {
        services(shared, &changed);
    }
}

fn store(shared: &Shared) -> std::sync::MutexGuard<'_, Store> {
    shared.store.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where a cluster's nodes are: its location, zones, network and subnet links.
struct Placement {
    zones: Vec<String>,
    network: String,
    subnetwork: String,
    subnet_cidr: String,
}

fn placement(st: &Store, cluster: &str) -> Option<Placement> {
    let access = st.access.values().find(|a| a.name == cluster)?;
    let region = region_of(&access.location);
    let mut zones: Vec<String> = st
        .instances
        .iter()
        .filter(|(_, v)| v["labels"]["goog-k8s-cluster-name"] == cluster)
        .filter_map(|(k, _)| k.split('/').next().map(String::from))
        .collect();
    if zones.is_empty() {
        zones.push(if is_zone(&access.location) { access.location.clone() } else { format!("{region}-b") });
    }
    zones.sort();
    zones.dedup();
    let (sn_key, sn) = st.subnetworks.iter().find(|(k, _)| k.starts_with(&format!("{region}/")))?;
    Some(Placement {
        network: sn["network"].as_str().unwrap_or_default().to_string(),
        subnetwork: sn["selfLink"]
            .as_str()
            .map_or_else(|| format!("{COMPUTE_BASE}/projects/{}/regions/{sn_key}", st.project), String::from),
        subnet_cidr: sn["ipCidrRange"].as_str().unwrap_or("10.128.0.0/20").to_string(),
        zones,
    })
}

/// An address of `cidr` picked by `seed`, away from the network and the first hosts.
fn address_in(cidr: &str, seed: &str) -> String {
    let (ip, len) = cidr.split_once('/').unwrap_or((cidr, "20"));
    let base = ip.parse::<std::net::Ipv4Addr>().map_or(0, u32::from);
    let size = 1u32 << (32 - len.parse::<u32>().unwrap_or(20).min(30));
    let n = u32::from_str_radix(&short_hash(seed)[..8], 16).unwrap_or(0);
    std::net::Ipv4Addr::from(base + 10 + n % (size - 20)).to_string()
}

/// The Service controller and the NEG controller over cluster `k`'s Services.
fn services(shared: &Shared, k: &Arc<KubeServer>) {
    let mut st = store(shared);
    let Some(place) = placement(&st, &k.cluster) else { return };
    let (uid, svcs) = {
        let inner = k.lock();
        let uid = inner
            .objects
            .get(&(String::new(), "namespaces".into(), String::new(), "kube-system".into()))
            .and_then(|n| n["metadata"]["uid"].as_str().map(String::from))
            .unwrap_or_default();
        let svcs: Vec<Value> = inner
            .objects
            .iter()
            .filter(|(key, _)| key.0.is_empty() && key.1 == "services")
            .map(|(_, v)| v.clone())
            .collect();
        (uid, svcs)
    };
    let mut wanted: Vec<(String, String)> = Vec::new();
    for svc in &svcs {
        let ns = svc["metadata"]["namespace"].as_str().unwrap_or("").to_string();
        let name = svc["metadata"]["name"].as_str().unwrap_or("").to_string();
        if svc["spec"]["type"] == "LoadBalancer" && svc["status"]["loadBalancer"]["ingress"].is_null() {
            let note = |key: &str| svc["metadata"]["annotations"][key].as_str().unwrap_or("").to_string();
            let internal = note("networking.gke.io/load-balancer-type").eq_ignore_ascii_case("internal")
                || note("cloud.google.com/load-balancer-type").eq_ignore_ascii_case("internal");
            let seed = format!("{}/{ns}/{name}", k.cluster);
            let ip = if internal { address_in(&place.subnet_cidr, &seed) } else { address_in("34.96.0.0/12", &seed) };
            k.controller_edit("", "services", &ns, &name, |o| {
                o["status"]["loadBalancer"] = json!({"ingress": [{"ip": ip}]});
            });
        }
        let status = negs_of_service(&mut st, &place, &uid, svc, &mut wanted);
        k.controller_edit("", "services", &ns, &name, |o| match &status {
            Some(s) => o["metadata"]["annotations"]["cloud.google.com/neg-status"] = json!(s),
            None => {
                if let Some(a) = o["metadata"]["annotations"].as_object_mut() {
                    a.remove("cloud.google.com/neg-status");
                }
            }
        });
    }
    collect_negs(&mut st, &uid, &wanted);
}

/// The NEGs a Service's `cloud.google.com/neg` annotation asks for, made or adopted; the
/// `neg-status` to write (None: none wanted, or a port could not be synced). Each NEG (name,
/// port) wanted is added to `wanted`.
fn negs_of_service(
    st: &mut Store,
    place: &Placement,
    uid: &str,
    svc: &Value,
    wanted: &mut Vec<(String, String)>,
) -> Option<String> {
    let note: Value = serde_json::from_str(svc["metadata"]["annotations"]["cloud.google.com/neg"].as_str()?).ok()?;
    let ports = note["exposed_ports"].as_object()?;
    let ns = svc["metadata"]["namespace"].as_str().unwrap_or("");
    let name = svc["metadata"]["name"].as_str().unwrap_or("");
    let mut synced = serde_json::Map::new();
    let mut ok = true;
    for (port, entry) in ports {
        let custom = entry["name"].as_str().filter(|n| !n.is_empty());
        if custom.is_some() && note["ingress"] == true {
            ok = false;
            continue;
        }
        let declared = svc["spec"]["ports"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["port"].as_u64().is_some_and(|n| n.to_string() == *port)));
        if !declared {
            ok = false;
            continue;
        }
        let neg = custom.map_or_else(|| default_neg_name(uid, ns, name, port), String::from);
        let description = json!({"cluster-uid": uid, "namespace": ns, "service-name": name, "port": port});
        for zone in &place.zones {
            ok &= ensure_neg(st, place, zone, &neg, &description, custom.is_some());
        }
        wanted.push((neg.clone(), port.clone()));
        synced.insert(port.clone(), json!(neg));
    }
    ok.then(|| json!({"network_endpoint_groups": synced, "zones": place.zones}).to_string())
}

/// ingress-gce's generated NEG name (at most 63 characters).
fn default_neg_name(uid: &str, ns: &str, svc: &str, port: &str) -> String {
    let hash = &short_hash(&format!("{uid};{ns};{svc};{port}"))[..8];
    let clip = |s: &str, n: usize| s.chars().take(n).collect::<String>();
    format!("k8s1-{}-{}-{}-{}-{hash}", clip(uid, 8), clip(ns, 10), clip(svc, 18), clip(port, 5))
}

/// Makes the NEG in `zone` unless it exists; whether it is this Service's (a NEG of that name
/// with another description is a conflict, left alone).
fn ensure_neg(st: &mut Store, place: &Placement, zone: &str, neg: &str, desc: &Value, custom: bool) -> bool {
    let key = format!("{zone}/{neg}");
    if let Some(existing) = st.negs.get(&key) {
        let d = existing["description"].as_str().unwrap_or("");
        return match serde_json::from_str::<Value>(d) {
            Ok(found) if found.is_object() => found == *desc,
            // A description that is not JSON is taken over; an empty one on a custom name is
            // somebody else's NEG.
            _ => !(custom && d.is_empty()),
        };
    }
    let id = st.id();
    let p = st.project.clone();
    st.negs.insert(
        key,
        json!({"kind": "compute#networkEndpointGroup", "id": id, "name": neg, "networkEndpointType": "GCE_VM_IP_PORT",
               "network": place.network, "subnetwork": place.subnetwork, "description": desc.to_string(),
               "zone": format!("{COMPUTE_BASE}/projects/{p}/zones/{zone}"), "size": 0, "creationTimestamp": now(),
               "selfLink": format!("{COMPUTE_BASE}/projects/{p}/zones/{zone}/networkEndpointGroups/{neg}")}),
    );
    true
}

/// Deletes the NEGs this cluster's controller made (its uid in the description) that no
/// Service wants any more.
fn collect_negs(st: &mut Store, uid: &str, wanted: &[(String, String)]) {
    let doomed: Vec<String> = st
        .negs
        .iter()
        .filter(|(_, v)| {
            let d: Value = serde_json::from_str(v["description"].as_str().unwrap_or("")).unwrap_or(Value::Null);
            d["cluster-uid"] == uid && !wanted.iter().any(|(n, p)| v["name"] == n.as_str() && d["port"] == p.as_str())
        })
        .map(|(k, _)| k.clone())
        .collect();
    for k in doomed {
        st.negs.remove(&k);
    }
}

/// The cluster name of the fleet's multiclusteringress config membership.
fn config_cluster(st: &Store) -> Option<String> {
    let cm = st.features.get("global/multiclusteringress")?["spec"]["multiclusteringress"]["configMembership"]
        .as_str()?
        .to_string();
    let (_, rest) = cm.split_once("/locations/")?;
    let (location, id) = rest.split_once("/memberships/")?;
    let link = st.memberships.get(&format!("{location}/{id}"))?["endpoint"]["gkeCluster"]["resourceLink"].as_str()?;
    link.rsplit('/').next().map(String::from)
}

/// Member clusters of the fleet: `location/cluster` of each membership's GKE cluster.
fn members(st: &Store) -> Vec<(String, String)> {
    st.memberships
        .values()
        .filter_map(|m| {
            let link = m["endpoint"]["gkeCluster"]["resourceLink"].as_str()?;
            let (_, rest) = link.split_once("/locations/")?;
            let (location, name) = rest.split_once("/clusters/")?;
            Some((location.to_string(), name.to_string()))
        })
        .collect()
}

/// The global address a static-ip annotation names (URL, name or IP).
fn static_address(st: &Store, note: &str) -> Option<String> {
    let name = note.rsplit("/global/addresses/").next().unwrap_or(note);
    st.addresses
        .get(name)
        .or_else(|| st.addresses.values().find(|a| a["address"] == note))
        .and_then(|a| a["address"].as_str().map(String::from))
}

/// Multi Cluster Ingress, when `k` is the config cluster: each MCI's status, each MCS's derived
/// Services. The member clusters whose Services changed.
fn multi_cluster_ingress(shared: &Shared, all: &[Arc<KubeServer>], k: &Arc<KubeServer>) -> Vec<Arc<KubeServer>> {
    let st = store(shared);
    if config_cluster(&st).as_deref() != Some(k.cluster.as_str()) {
        return Vec::new();
    }
    let (mcis, mcss) = {
        let inner = k.lock();
        let of = |plural: &str| -> Vec<Value> {
            inner
                .objects
                .iter()
                .filter(|(key, _)| key.0 == "networking.gke.io" && key.1 == plural)
                .map(|(_, v)| v.clone())
                .collect()
        };
        (of("multiclusteringresses"), of("multiclusterservices"))
    };
    for mci in &mcis {
        let ns = mci["metadata"]["namespace"].as_str().unwrap_or("");
        let name = mci["metadata"]["name"].as_str().unwrap_or("");
        let prefix = format!("mci-{}", &short_hash(&format!("{ns}/{name}"))[..6]);
        let vip = match mci["metadata"]["annotations"]["networking.gke.io/static-ip"].as_str() {
            Some(note) => static_address(&st, note),
            None => Some(address_in("34.160.0.0/12", &prefix)),
        };
        let backends: Vec<String> =
            mcss.iter().filter_map(|m| m["metadata"]["name"].as_str()).map(|m| format!("{prefix}-{ns}-{m}")).collect();
        let mut status = json!({"CloudResources": {"BackendServices": backends, "Firewalls": [format!("{prefix}-default-l7")],
            "ForwardingRules": [format!("{prefix}-fw-{ns}-{name}")], "HealthChecks": backends,
            "TargetProxies": [format!("{prefix}-tp-{ns}-{name}")], "UrlMap": format!("{prefix}-um-{ns}-{name}")}});
        if let Some(vip) = vip {
            status["VIP"] = json!(vip);
        }
        k.controller_edit("networking.gke.io", "multiclusteringresses", ns, name, |o| o["status"] = status);
    }
    let clusters = members(&st);
    drop(st);
    derive_services(all, &clusters, &mcss)
}

/// Each MCS's headless Service in each member cluster it names; derived Services of MCSs gone
/// removed. The clusters changed.
fn derive_services(all: &[Arc<KubeServer>], members: &[(String, String)], mcss: &[Value]) -> Vec<Arc<KubeServer>> {
    let mut changed = Vec::new();
    for member in all {
        // A cluster that left the fleet keeps none.
        let Some(location) = members.iter().find(|(_, n)| *n == member.cluster).map(|(l, _)| l.clone()) else {
            changed.extend(remove_derived(member, &[]));
            continue;
        };
        let mut keep: Vec<(String, String)> = Vec::new();
        for mcs in mcss {
            let links: Vec<&str> =
                mcs["spec"]["clusters"].as_array().into_iter().flatten().filter_map(|c| c["link"].as_str()).collect();
            if !links.is_empty() && !links.contains(&format!("{location}/{}", member.cluster).as_str()) {
                continue;
            }
            let ns = mcs["metadata"]["namespace"].as_str().unwrap_or("").to_string();
            let parent = mcs["metadata"]["name"].as_str().unwrap_or("").to_string();
            let name = format!(
                "mci-{parent}-svc-{}{}",
                short_hash(&format!("{ns}/{parent}")),
                short_hash(&format!("{parent}/{ns}"))
            );
            let ports: Vec<Value> = mcs["spec"]["template"]["spec"]["ports"].as_array().cloned().unwrap_or_default();
            let exposed: serde_json::Map<String, Value> =
                ports.iter().map(|p| (p["port"].to_string(), json!({}))).collect();
            let svc = json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": ns,
                             "annotations": {"networking.gke.io/multiclusterservice-parent": format!("{ns}/{parent}"),
                                             "cloud.google.com/neg": json!({"exposed_ports": exposed}).to_string()}},
                "spec": {"clusterIP": "None", "selector": mcs["spec"]["template"]["spec"]["selector"], "ports": ports}});
            keep.push((ns, name));
            if member.controller_merge("", "services", svc, "multicluster-ingress") == Ok(true) {
                changed.push(member.clone());
            }
        }
        changed.extend(remove_derived(member, &keep));
    }
    changed.dedup_by(|a, b| Arc::ptr_eq(a, b));
    changed
}

/// Deletes the derived Services of `member` but those in `keep`; the member, when it deleted any.
fn remove_derived(member: &Arc<KubeServer>, keep: &[(String, String)]) -> Option<Arc<KubeServer>> {
    let stale: Vec<(String, String)> = member
        .lock()
        .objects
        .iter()
        .filter(|(key, v)| {
            key.1 == "services"
                && !v["metadata"]["annotations"]["networking.gke.io/multiclusterservice-parent"].is_null()
                && !keep.contains(&(key.2.clone(), key.3.clone()))
        })
        .map(|(key, _)| (key.2.clone(), key.3.clone()))
        .collect();
    for (ns, name) in &stale {
        member.controller_delete("", "services", ns, name);
    }
    (!stale.is_empty()).then(|| member.clone())
}
