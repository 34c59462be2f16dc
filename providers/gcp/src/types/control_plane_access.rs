//! `gke_control_plane_access`: master authorized networks (a set of CIDRs) and control-plane
//! global access of an existing cluster. With `keep_existing`, the networks present before
//! meshform first touched the cluster are kept (the guide's EXISTING_CIDR step). Updates send
//! the shape gcloud 528 sends, one setting per request. Destroy restores what was recorded at
//! first apply.

use async_trait::async_trait;
use meshform_engine::provider::{
    AttrSchema, AttrType, ErrorKind, Object, Planned, Presence, ProviderError, ProviderResult, TypeKind, TypeSchema,
};
use meshform_engine::value::{Map, Value};
use reqwest::Method;
use serde_json::{Value as J, json};

use super::GcpType;
use crate::client::{Api, Client};
use crate::convert::{normalize_set, req, strings};

/// The type.
pub struct ControlPlaneAccess;

struct Live {
    enabled: bool,
    cidrs: Vec<String>,
    /// Display names of the blocks that have one, by CIDR.
    names: Map,
    global_access: bool,
}

fn cluster_path(p: &str, l: &str, c: &str) -> String {
    format!("projects/{p}/locations/{l}/clusters/{c}")
}

/// GKE's limit on a cluster's master authorized networks: "cidr_blocks define up to 50 external
/// networks that could access Kubernetes master through HTTPS" (`MasterAuthorizedNetworksConfig`,
/// container API v1 reference; v1beta1's text still says 10, an old limit). An update over it is
/// accepted and its operation fails (`Master authorized networks can have at most 50 CIDR
/// blocks, 51 given.`), so meshform refuses it at plan. `[providers.gcp]
/// max_authorized_networks` changes the number for clusters Google allows more.
pub const MAX_AUTHORIZED_NETWORKS: usize = 50;

/// The cluster now, from the server.
async fn live(c: &Client, p: &str, l: &str, name: &str) -> ProviderResult<Option<Live>> {
    Ok(c.get_opt(Api::Container, &cluster_path(p, l, name)).await?.as_ref().map(parse))
}

/// The cluster as this run's one cluster list has it (what a refresh and a plan read; a
/// cluster the list lacks is read by itself).
async fn listed(c: &Client, p: &str, l: &str, name: &str) -> ProviderResult<Option<Live>> {
    if let Ok(all) = c.clusters_of(p).await
        && let Some(j) = all.iter().find(|j| j["name"].as_str() == Some(name) && j["location"].as_str() == Some(l))
    {
        return Ok(Some(parse(j)));
    }
    live(c, p, l, name).await
}

fn parse(j: &J) -> Live {
    let ip = &j["controlPlaneEndpointsConfig"]["ipEndpointsConfig"];
    let anc = if ip["authorizedNetworksConfig"].is_object() {
        &ip["authorizedNetworksConfig"]
    } else {
        &j["masterAuthorizedNetworksConfig"]
    };
    let mut cidrs: Vec<String> = anc["cidrBlocks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["cidrBlock"].as_str().map(String::from))
        .collect();
    cidrs.sort();
    cidrs.dedup();
    let names = anc["cidrBlocks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| Some((b["cidrBlock"].as_str()?.to_string(), Value::str(b["displayName"].as_str()?))))
        .collect();
    Live {
        enabled: anc["enabled"].as_bool().unwrap_or(false),
        cidrs,
        names,
        global_access: ip["globalAccess"].as_bool().unwrap_or(false),
    }
}

fn set(v: &[String]) -> Value {
    Value::List(v.iter().map(|s| Value::str(s.as_str())).collect())
}

/// The attributes meshform sees, given the live cluster and what was recorded at first apply.
fn view(prior: &Map, l: &Live) -> Map {
    let mut m = prior.clone();
    let keep = matches!(prior.get("keep_existing"), Some(Value::Bool(true)));
    let originals = strings(prior, "original_authorized_networks");
    // With keep_existing, the originals are not ours, unless the desired list names them too.
    let wanted = strings(prior, "authorized_networks");
    let managed: Vec<String> = if keep {
        l.cidrs.iter().filter(|c| !originals.contains(c) || wanted.contains(c)).cloned().collect()
    } else {
        l.cidrs.clone()
    };
    m.insert("authorized_networks".into(), set(&managed));
    m.insert("effective_authorized_networks".into(), set(&l.cidrs));
    m.insert("global_access".into(), Value::Bool(l.global_access));
    m
}

/// The full list to send: the desired networks, plus the originals when keeping them.
fn target(m: &Map) -> Vec<String> {
    let mut t = strings(m, "authorized_networks");
    if matches!(m.get("keep_existing"), Some(Value::Bool(true))) {
        t.extend(strings(m, "original_authorized_networks"));
    }
    t.sort();
    t.dedup();
    t
}

async fn put(c: &Client, p: &str, l: &str, name: &str, ip_endpoints: J) -> ProviderResult<()> {
    let body = json!({"name": cluster_path(p, l, name), "update": {"desiredControlPlaneEndpointsConfig": {"ipEndpointsConfig": ip_endpoints}}});
    let started = std::time::Instant::now();
    let mut waits = 0;
    loop {
        match c.call(Api::Container, Method::PUT, &cluster_path(p, l, name), &[], Some(&body)).await {
            Ok(op) => return c.wait_container(p, l, op).await.map(|_| ()),
            // Another operation runs on the cluster (one of ours a crashed run left, or someone
            // else's, a node pool's say): wait for it, then try again, within the object's timeout.
            Err(e) if busy(&e) && started.elapsed() < c.operation_timeout() => {
                c.wait_cluster_idle(p, l, name, waits).await?;
                waits += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// GKE's answer while another operation runs on the cluster (400 FAILED_PRECONDITION).
fn busy(e: &ProviderError) -> bool {
    e.kind == ErrorKind::Invalid
        && (e.message.contains("incompatible operation") || e.message.contains("operation in progress"))
}

/// Display names to keep on the blocks written: the live ones, else those recorded at first apply.
fn names(m: &Map, cur: &Live) -> Map {
    let mut n = match m.get("original_display_names") {
        Some(Value::Map(o)) => o.clone(),
        _ => Map::new(),
    };
    n.extend(cur.names.clone());
    n
}

async fn set_networks(
    c: &Client,
    p: &str,
    l: &str,
    name: &str,
    enabled: bool,
    cidrs: &[String],
    names: &Map,
) -> ProviderResult<()> {
    let blocks: Vec<J> = cidrs
        .iter()
        .map(|b| match names.get(b).and_then(Value::as_str) {
            Some(n) => json!({"displayName": n, "cidrBlock": b}),
            None => json!({"cidrBlock": b}),
        })
        .collect();
    put(c, p, l, name, json!({"authorizedNetworksConfig": {"enabled": enabled, "cidrBlocks": blocks}})).await
}

/// Brings the cluster to the settings in `m` (one request per setting that differs).
async fn converge(c: &Client, p: &str, l: &str, name: &str, m: &Map, cur: &Live) -> ProviderResult<()> {
    if m.get("authorized_networks").is_some_and(|v| matches!(v, Value::List(_))) {
        let want = target(m);
        if want != cur.cidrs || !cur.enabled {
            set_networks(c, p, l, name, true, &want, &names(m, cur)).await?;
        }
    }
    if let Some(Value::Bool(g)) = m.get("global_access")
        && *g != cur.global_access
    {
        put(c, p, l, name, json!({"globalAccess": g})).await?;
    }
    Ok(())
}

fn missing(name: &str) -> ProviderError {
    ProviderError::new(ErrorKind::NotFound, format!("GKE cluster {name} does not exist"))
}

#[async_trait]
impl GcpType for ControlPlaneAccess {
    fn schema(&self) -> TypeSchema {
        let cidrs = || AttrType::List(Box::new(AttrType::String));
        TypeSchema::new(
            "gke_control_plane_access",
            TypeKind::Managed,
            "Master authorized networks and global access of a GKE cluster.",
        )
        .import_id("LOCATION/CLUSTER or projects/P/locations/L/clusters/CLUSTER")
        .attr(AttrSchema::new("project", AttrType::String, Presence::OptionalComputed).force_new())
        .attr(AttrSchema::new("location", AttrType::String, Presence::Required).force_new())
        .attr(AttrSchema::new("cluster", AttrType::String, Presence::Required).force_new())
        .attr(
            AttrSchema::new("authorized_networks", cidrs(), Presence::OptionalComputed)
                .describe("CIDRs allowed to reach the control plane"),
        )
        .attr(
            AttrSchema::new("keep_existing", AttrType::Bool, Presence::OptionalComputed)
                .describe("also keep the networks present before meshform"),
        )
        .attr(AttrSchema::new("global_access", AttrType::Bool, Presence::OptionalComputed))
        .attr(AttrSchema::new("original_authorized_networks", cidrs(), Presence::Computed))
        .attr(AttrSchema::new("original_enabled", AttrType::Bool, Presence::Computed))
        .attr(AttrSchema::new("original_global_access", AttrType::Bool, Presence::Computed))
        .attr(
            AttrSchema::new("original_display_names", AttrType::Any, Presence::Computed)
                .describe("display names of the networks present before meshform, by CIDR"),
        )
        .attr(AttrSchema::new("effective_authorized_networks", cidrs(), Presence::Computed))
        .attr(AttrSchema::new("id", AttrType::String, Presence::Computed))
    }

    fn plan(&self, c: &Client, prior: Option<&Map>, mut p: Planned) -> ProviderResult<Planned> {
        p.attrs.insert("project".into(), Value::str(c.project(&p.attrs)?));
        normalize_set(&mut p.attrs, "authorized_networks");
        if !matches!(p.attrs.get("keep_existing"), Some(Value::Bool(_))) {
            p.attrs.insert("keep_existing".into(), Value::Bool(false));
        }
        match prior {
            Some(_) if !p.attrs.get("authorized_networks").is_some_and(Value::has_unknown) => {
                let t = target(&p.attrs);
                p.attrs.insert("effective_authorized_networks".into(), set(&t));
            }
            _ => {
                p.attrs.insert("effective_authorized_networks".into(), Value::Unknown);
            }
        }
        Ok(p)
    }

    async fn check_plan(&self, c: &Client, prior: Option<&Map>, planned: &Map) -> ProviderResult<()> {
        let Some(Value::List(_)) = planned.get("authorized_networks") else { return Ok(()) };
        if planned.get("authorized_networks").is_some_and(Value::has_unknown) {
            return Ok(());
        }
        let (p, l, name) = (c.project(planned)?, req(planned, "location")?, req(planned, "cluster")?);
        let added = target(&Map::from([("authorized_networks".into(), planned["authorized_networks"].clone())]));
        let mut all = added.clone();
        if matches!(planned.get("keep_existing"), Some(Value::Bool(true))) {
            let before = match prior {
                Some(pr) => strings(pr, "original_authorized_networks"),
                None => listed(c, &p, &l, &name).await?.map(|x| x.cidrs).unwrap_or_default(),
            };
            all.extend(before);
            all.sort();
            all.dedup();
        }
        let limit = c.settings.max_authorized_networks;
        if all.len() <= limit {
            return Ok(());
        }
        Err(ProviderError::new(
            ErrorKind::Invalid,
            format!(
                "cluster `{name}` ({l}) would have {} master authorized networks ({} from the desired state, {} kept from before); GKE allows at most {limit}. Authorize fewer, wider blocks: merge the ranges with `cidrmerge(...)`, or give the clusters' pod ranges a supernet (a variable) and authorize that; if Google allows this cluster more, set `[providers.gcp] max_authorized_networks`",
                all.len(),
                added.len(),
                all.len() - added.len(),
            ),
        ))
    }

    async fn read(&self, c: &Client, prior: &Map) -> ProviderResult<Option<Map>> {
        let p = c.project(prior)?;
        let l = listed(c, &p, &req(prior, "location")?, &req(prior, "cluster")?).await?;
        Ok(l.map(|l| view(prior, &l)))
    }

    /// The cluster's settings before meshform touches them, recorded (journaled) before the first
    /// mutation: a crash after it, and a rerun, must not take the widened list for the original.
    async fn prepare_create(&self, c: &Client, planned: &Map) -> ProviderResult<Option<Map>> {
        let p = c.project(planned)?;
        let (l, name) = (req(planned, "location")?, req(planned, "cluster")?);
        let before = live(c, &p, &l, &name).await?.ok_or_else(|| missing(&name))?;
        let mut m = planned.clone();
        m.insert("project".into(), Value::str(&p));
        m.insert("id".into(), Value::str(cluster_path(&p, &l, &name)));
        m.insert("original_authorized_networks".into(), set(&before.cidrs));
        m.insert("original_enabled".into(), Value::Bool(before.enabled));
        m.insert("original_global_access".into(), Value::Bool(before.global_access));
        m.insert("original_display_names".into(), Value::Map(before.names.clone()));
        m.insert("effective_authorized_networks".into(), set(&before.cidrs));
        Ok(Some(m))
    }

    async fn create(&self, c: &Client, planned: &Map) -> ProviderResult<Object> {
        let prepared;
        // Prepared (journaled) by `prepare_create` when the engine called it; else read now.
        let m = if matches!(planned.get("original_authorized_networks"), Some(Value::List(_))) {
            planned
        } else {
            prepared = self.prepare_create(c, planned).await?.unwrap_or_default();
            &prepared
        };
        let p = c.project(m)?;
        let (l, name) = (req(m, "location")?, req(m, "cluster")?);
        let lock = c.cluster_lock(&cluster_path(&p, &l, &name));
        let _g = lock.lock().await;
        let before = live(c, &p, &l, &name).await?.ok_or_else(|| missing(&name))?;
        converge(c, &p, &l, &name, m, &before).await?;
        let after = live(c, &p, &l, &name).await?.ok_or_else(|| missing(&name))?;
        Ok(view(m, &after).into())
    }

    async fn update(&self, c: &Client, prior: &Map, planned: &Map) -> ProviderResult<Map> {
        let p = c.project(prior)?;
        let (l, name) = (req(prior, "location")?, req(prior, "cluster")?);
        let lock = c.cluster_lock(&cluster_path(&p, &l, &name));
        let _g = lock.lock().await;
        let mut m = planned.clone();
        for k in [
            "original_authorized_networks",
            "original_enabled",
            "original_global_access",
            "original_display_names",
            "id",
        ] {
            if let Some(v) = prior.get(k) {
                m.insert(k.into(), v.clone());
            }
        }
        let cur = live(c, &p, &l, &name).await?.ok_or_else(|| missing(&name))?;
        converge(c, &p, &l, &name, &m, &cur).await?;
        let after = live(c, &p, &l, &name).await?.ok_or_else(|| missing(&name))?;
        Ok(view(&m, &after))
    }

    async fn delete(&self, c: &Client, prior: &Map) -> ProviderResult<()> {
        let p = c.project(prior)?;
        let (l, name) = (req(prior, "location")?, req(prior, "cluster")?);
        let lock = c.cluster_lock(&cluster_path(&p, &l, &name));
        let _g = lock.lock().await;
        let Some(cur) = live(c, &p, &l, &name).await? else { return Ok(()) };
        let originals = strings(prior, "original_authorized_networks");
        let enabled = matches!(prior.get("original_enabled"), Some(Value::Bool(true)));
        if cur.cidrs != originals || cur.enabled != enabled {
            set_networks(c, &p, &l, &name, enabled, &originals, &names(prior, &cur)).await?;
        }
        if let Some(Value::Bool(g)) = prior.get("original_global_access")
            && *g != cur.global_access
        {
            put(c, &p, &l, &name, json!({"globalAccess": g})).await?;
        }
        Ok(())
    }

    async fn import(&self, c: &Client, id: &str) -> ProviderResult<Map> {
        let parts: Vec<&str> = id.split('/').collect();
        let (project, l, name) = match parts.as_slice() {
            [l, n] => (c.project(&Map::new())?, l.to_string(), n.to_string()),
            ["projects", p, "locations", l, "clusters", n] => (p.to_string(), l.to_string(), n.to_string()),
            _ => {
                return Err(ProviderError::new(
                    ErrorKind::Invalid,
                    format!("import id `{id}`: expected LOCATION/CLUSTER"),
                ));
            }
        };
        let cur = live(c, &project, &l, &name).await?.ok_or_else(|| missing(&name))?;
        let m = Map::from([
            ("project".into(), Value::str(&project)),
            ("location".into(), Value::str(&l)),
            ("cluster".into(), Value::str(&name)),
            ("id".into(), Value::str(cluster_path(&project, &l, &name))),
            ("keep_existing".into(), Value::Bool(false)),
            ("original_authorized_networks".into(), set(&cur.cidrs)),
            ("original_enabled".into(), Value::Bool(cur.enabled)),
            ("original_global_access".into(), Value::Bool(cur.global_access)),
            ("original_display_names".into(), Value::Map(cur.names.clone())),
        ]);
        Ok(view(&m, &cur))
    }
}
