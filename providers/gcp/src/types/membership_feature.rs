//! `gke_fleet_membership_feature`: one membership's spec of a fleet feature (gkehub v2
//! `projects/P/locations/L/memberships/M/features/F`), first of all the managed Cloud Service
//! Mesh: `management = "MANAGEMENT_AUTOMATIC"` on `servicemesh`.
//!
//! Why a resource per membership, not a `membership_specs` map on `gke_fleet_feature`: the v1
//! feature holds every membership's spec in one map, so two applies (two teams' states, or one
//! plan's parallel instances) that each patch their memberships would read-modify-write the same
//! map and one would undo the other; each v2 membership feature is its own object, patched on its
//! own, in parallel, by exactly the instance that owns it. It is also what gcloud 528 does for
//! `container fleet mesh update --management … --memberships …` (captured; see
//! `meshform_sim::servicemesh`): `PATCH v2/…/memberships/M/features/servicemesh?allowMissing=
//! True&updateMask=spec`. The fleet-level feature (`gke_fleet_feature` named `servicemesh`)
//! must be enabled first; reference it so the plan orders them.
//!
//! Membership names: `membership` is the full name as `gke_fleet_membership.X.name` gives it
//! (project id); Google answers with the project number. Reads keep the configured spelling, so
//! the two never differ in a plan.
//!
//! Create and update wait, within the resource's `timeouts`, until the control plane's
//! `controlPlaneManagement.state` is ACTIVE (management automatic); FAILED_PRECONDITION,
//! STALLED, NEEDS_ATTENTION or DEGRADED fail the change with Google's details. `state` records
//! that state, so a control plane that stalls later is drift.

use std::time::Duration;

use async_trait::async_trait;
use meshform_engine::provider::{
    AttrSchema, AttrType, ErrorKind, Object, Planned, Poll, Presence, ProviderError, ProviderResult, TypeKind,
    TypeSchema,
};
use meshform_engine::value::{Map, Value};
use reqwest::Method;
use serde_json::{Value as J, json};

use super::GcpType;
use crate::client::{Api, Client};
use crate::convert::{req, s};

/// The type.
pub struct MembershipFeature;

/// The spec fields of `servicemesh` (attribute, API field, allowed values).
const MESH_FIELDS: [(&str, &str, &[&str]); 3] = [
    ("management", "management", &["MANAGEMENT_AUTOMATIC", "MANAGEMENT_MANUAL"]),
    ("control_plane", "controlPlane", &["AUTOMATIC", "MANUAL"]),
    ("config_api", "configApi", &["CONFIG_API_ISTIO", "CONFIG_API_GATEWAY"]),
];

/// Control-plane states that end a wait with an error.
const FAILED: [&str; 4] = ["FAILED_PRECONDITION", "STALLED", "NEEDS_ATTENTION", "DEGRADED"];

fn path(m: &Map) -> ProviderResult<String> {
    Ok(format!("{}/features/{}", req(m, "membership")?, feature(m)))
}

fn feature(m: &Map) -> String {
    s(m, "feature").unwrap_or_else(|| "servicemesh".into())
}

fn automatic(m: &Map) -> bool {
    s(m, "management").as_deref() == Some("MANAGEMENT_AUTOMATIC")
        || s(m, "control_plane").as_deref() == Some("AUTOMATIC")
}

/// What the plan expects the control plane's state to be once the change is done.
fn expected_state(m: &Map) -> &'static str {
    if automatic(m) { "ACTIVE" } else { "DISABLED" }
}

fn spec(m: &Map) -> J {
    let mut mesh = serde_json::Map::new();
    for (attr, field, _) in MESH_FIELDS {
        if let Some(v) = s(m, attr) {
            mesh.insert(field.into(), json!(v));
        }
    }
    json!({ feature(m): mesh })
}

/// The live object in attributes; `configured` supplies the spelling of the membership name.
fn from_api(configured: &Map, j: &J) -> Map {
    let mut m = Map::new();
    for k in ["project", "membership", "feature"] {
        if let Some(v) = configured.get(k) {
            m.insert(k.into(), v.clone());
        }
    }
    m.insert("feature".into(), Value::str(feature(configured)));
    let mesh = &j["spec"][feature(configured)];
    for (attr, field, _) in MESH_FIELDS {
        if let Some(v) = mesh[field].as_str() {
            m.insert(attr.into(), Value::str(v));
        }
    }
    m.insert("id".into(), Value::str(j["name"].as_str().unwrap_or_default()));
    let control = &j["state"]["servicemesh"]["controlPlaneManagement"];
    m.insert("state".into(), Value::str(control["state"].as_str().unwrap_or("DISABLED")));
    m.insert("implementation".into(), Value::str(control["implementation"].as_str().unwrap_or("")));
    m
}

/// `code: details` of each of Google's status details, for an error.
fn details(control: &J) -> String {
    let ds: Vec<String> = control["details"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| format!("{}: {}", d["code"].as_str().unwrap_or("?"), d["details"].as_str().unwrap_or("")))
        .collect();
    if ds.is_empty() { "no details given".into() } else { ds.join("; ") }
}

impl MembershipFeature {
    /// Polls until the control plane reaches the state the spec asks for.
    async fn wait_state(&self, c: &Client, planned: &Map) -> ProviderResult<Map> {
        let path = path(planned)?;
        let want = expected_state(planned);
        let membership = req(planned, "membership")?;
        let last = std::sync::Mutex::new(String::from("no state yet"));
        let poll = Poll::new(c.operation_limit(), Duration::from_millis(50), Duration::from_secs(5));
        let check = || async {
            let j = c.call(Api::HubV2, Method::GET, &path, &[], None).await?;
            let control = &j["state"]["servicemesh"]["controlPlaneManagement"];
            let state = control["state"].as_str().unwrap_or("DISABLED");
            *last.lock().unwrap_or_else(|e| e.into_inner()) = format!("{state} ({})", details(control));
            if state == want {
                return Ok(Some(from_api(planned, &j)));
            }
            if FAILED.contains(&state) {
                return Err(ProviderError::new(
                    ErrorKind::Invalid,
                    format!("the service mesh of membership {membership} is {state}: {}", details(control)),
                ));
            }
            Ok(None)
        };
        let timed_out = || {
            ProviderError::new(
                ErrorKind::Transient,
                format!(
                    "the service mesh of membership {membership} did not become {want} within {:?}; last seen: {}",
                    c.operation_limit(),
                    last.lock().unwrap_or_else(|e| e.into_inner())
                ),
            )
        };
        poll.until(check, timed_out).await
    }

    /// Creates or replaces the spec (`allowMissing`, as gcloud does) and waits for the state.
    async fn put(&self, c: &Client, planned: &Map) -> ProviderResult<Map> {
        let body = json!({"spec": spec(planned)});
        let q = [("allowMissing", "true".to_string()), ("updateMask", "spec".to_string())];
        let op = c.call(Api::HubV2, Method::PATCH, &path(planned)?, &q, Some(&body)).await?;
        c.wait_lro_on(Api::HubV2, op).await?;
        self.wait_state(c, planned).await
    }
}

#[async_trait]
impl GcpType for MembershipFeature {
    fn schema(&self) -> TypeSchema {
        let st = |n: &str, pr: Presence| AttrSchema::new(n, AttrType::String, pr);
        let mut t = TypeSchema::new(
            "gke_fleet_membership_feature",
            TypeKind::Managed,
            "One fleet membership's spec of a fleet feature, such as the managed Cloud Service Mesh (servicemesh, management = MANAGEMENT_AUTOMATIC).",
        )
        .import_id("projects/P/locations/L/memberships/M/features/F")
        .attr(st("project", Presence::OptionalComputed).force_new())
        .attr(
            st("membership", Presence::Required)
                .force_new()
                .describe("full membership name projects/P/locations/L/memberships/M (gke_fleet_membership.X.name)"),
        )
        .attr(st("feature", Presence::OptionalComputed).force_new().describe("feature id; servicemesh by default"));
        for (attr, _, allowed) in MESH_FIELDS {
            t = t.attr(st(attr, Presence::Optional).describe(&format!("servicemesh: one of {}", allowed.join(", "))));
        }
        t.attr(st("id", Presence::Computed))
            .attr(
                st("state", Presence::Computed).describe("the control plane's management state (ACTIVE when managed)"),
            )
            .attr(st("implementation", Presence::Computed))
    }

    fn plan(&self, c: &Client, prior: Option<&Map>, mut p: Planned) -> ProviderResult<Planned> {
        p.attrs.insert("project".into(), Value::str(c.project(&p.attrs)?));
        p.attrs.insert("feature".into(), Value::str(feature(&p.attrs)));
        if let Some(m) = s(&p.attrs, "membership") {
            let parts: Vec<&str> = m.split('/').collect();
            if parts.len() != 6 || parts[0] != "projects" || parts[2] != "locations" || parts[4] != "memberships" {
                return Err(ProviderError::new(
                    ErrorKind::Invalid,
                    format!(
                        "membership `{m}` must be a full membership name projects/P/locations/L/memberships/M (reference the membership's `name`)"
                    ),
                ));
            }
        }
        for (attr, _, allowed) in MESH_FIELDS {
            if let Some(v) = s(&p.attrs, attr)
                && !allowed.contains(&v.as_str())
            {
                return Err(ProviderError::new(
                    ErrorKind::Invalid,
                    format!("{attr} `{v}` is not one of {}", allowed.join(", ")),
                ));
            }
        }
        p.attrs.insert("state".into(), Value::str(expected_state(&p.attrs)));
        if let Some(id) = prior.and_then(|m| s(m, "id")) {
            p.attrs.insert("id".into(), Value::str(id));
        }
        Ok(p)
    }

    async fn read(&self, c: &Client, prior: &Map) -> ProviderResult<Option<Map>> {
        match c.call(Api::HubV2, Method::GET, &path(prior)?, &[], None).await {
            Ok(j) => Ok(Some(from_api(prior, &j))),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn create(&self, c: &Client, planned: &Map) -> ProviderResult<Object> {
        self.put(c, planned).await.map(Object::from)
    }

    async fn update(&self, c: &Client, _prior: &Map, planned: &Map) -> ProviderResult<Map> {
        self.put(c, planned).await
    }

    async fn delete(&self, c: &Client, prior: &Map) -> ProviderResult<()> {
        match c.call(Api::HubV2, Method::DELETE, &path(prior)?, &[], None).await {
            Ok(op) => c.wait_lro_on(Api::HubV2, op).await.map(|_| ()),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn import(&self, c: &Client, id: &str) -> ProviderResult<Map> {
        let parts: Vec<&str> = id.split('/').collect();
        let m = match parts.as_slice() {
            ["projects", p, "locations", l, "memberships", mb, "features", f] => Map::from([
                ("project".into(), Value::str(*p)),
                ("membership".into(), Value::str(format!("projects/{p}/locations/{l}/memberships/{mb}"))),
                ("feature".into(), Value::str(*f)),
            ]),
            _ => {
                return Err(ProviderError::new(
                    ErrorKind::Invalid,
                    format!("import id `{id}`: expected projects/P/locations/L/memberships/M/features/F"),
                ));
            }
        };
        self.read(c, &m)
            .await?
            .ok_or_else(|| ProviderError::new(ErrorKind::NotFound, format!("no membership feature {id}")))
    }
}
