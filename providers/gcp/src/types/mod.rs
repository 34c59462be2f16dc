//! One file per resource or data type; [`all`] registers them.

pub mod cluster;
pub mod clusters_query;
pub mod control_plane_access;
pub mod firewall;
pub mod fleet_feature;
pub mod fleet_membership;
pub mod global_address;
pub mod lookups;
pub mod membership_feature;
pub mod neg;
pub mod secret_version;

use std::sync::Arc;

use async_trait::async_trait;
use meshform_engine::provider::{ErrorKind, Object, Planned, ProviderError, ProviderResult, TypeSchema};
use meshform_engine::value::Map;

use crate::client::Client;

/// A Google Cloud resource or data type.
#[async_trait]
pub trait GcpType: Send + Sync {
    /// Its schema (Terraform's attribute names where Terraform has the resource).
    fn schema(&self) -> TypeSchema;

    /// For list-based refresh: the scope (project, or project and zone) whose list holds this
    /// object; `None` when objects of this type are read one by one.
    fn list_scope(&self, _c: &Client, _prior: &Map) -> Option<String> {
        None
    }

    /// Every object of the scope of `prior`, converted as [`GcpType::read`] converts one.
    async fn list(&self, _c: &Client, _prior: &Map) -> ProviderResult<Vec<Map>> {
        Ok(Vec::new())
    }

    /// Normalises a proposal (canonical forms, defaults) so equal things compare equal.
    fn plan(&self, _c: &Client, _prior: Option<&Map>, proposed: Planned) -> ProviderResult<Planned> {
        Ok(proposed)
    }

    /// Checks a plan against limits the API enforces only when the change runs (a cluster's
    /// authorized networks), so the plan fails instead of the apply.
    async fn check_plan(&self, _c: &Client, _prior: Option<&Map>, _planned: &Map) -> ProviderResult<()> {
        Ok(())
    }

    /// Reads the live object; `None` when it is gone.
    async fn read(&self, _c: &Client, _prior: &Map) -> ProviderResult<Option<Map>> {
        Err(not_managed(&self.schema().name))
    }
    /// What to record before the create's first mutation (see `Provider::prepare_create`).
    async fn prepare_create(&self, _c: &Client, _planned: &Map) -> ProviderResult<Option<Map>> {
        Ok(None)
    }
    /// Creates it.
    async fn create(&self, _c: &Client, _planned: &Map) -> ProviderResult<Object> {
        Err(not_managed(&self.schema().name))
    }
    /// Updates it in place.
    async fn update(&self, _c: &Client, _prior: &Map, _planned: &Map) -> ProviderResult<Map> {
        Err(not_managed(&self.schema().name))
    }
    /// Deletes it.
    async fn delete(&self, _c: &Client, _prior: &Map) -> ProviderResult<()> {
        Err(not_managed(&self.schema().name))
    }
    /// Reads an existing object by id.
    async fn import(&self, _c: &Client, _id: &str) -> ProviderResult<Map> {
        Err(not_managed(&self.schema().name))
    }

    /// Evaluates a data source.
    async fn read_data(&self, _c: &Client, _config: &Map) -> ProviderResult<Map> {
        Err(ProviderError::new(ErrorKind::Invalid, format!("{} is not a data source", self.schema().name)))
    }
}

fn not_managed(ty: &str) -> ProviderError {
    ProviderError::new(ErrorKind::Invalid, format!("{ty} is a data source, not a managed resource"))
}

/// Every type of the provider.
pub fn all() -> Vec<Arc<dyn GcpType>> {
    vec![
        Arc::new(global_address::GlobalAddress),
        Arc::new(firewall::Firewall),
        Arc::new(neg::NetworkEndpointGroup),
        Arc::new(control_plane_access::ControlPlaneAccess),
        Arc::new(fleet_membership::FleetMembership),
        Arc::new(fleet_feature::FleetFeature),
        Arc::new(membership_feature::MembershipFeature),
        Arc::new(cluster::ClusterLookup { name: "cluster" }),
        Arc::new(cluster::ClusterLookup { name: "gke_cluster" }),
        Arc::new(clusters_query::ClustersQuery),
        Arc::new(lookups::Instances),
        Arc::new(lookups::Firewalls),
        Arc::new(secret_version::SecretVersion),
    ]
}

/// After a 409 on create: adopt the existing object when it matches what was desired, else fail
/// with a hint to import it.
pub fn adopt(what: &str, id: &str, desired: &Map, live: Option<Map>, keys: &[&str]) -> ProviderResult<Object> {
    let Some(live) = live else {
        return Err(ProviderError::new(ErrorKind::Conflict, format!("{what} {id} already exists but cannot be read")));
    };
    let diff = crate::convert::differing(desired, &live, keys);
    if diff.is_empty() {
        Ok(Object::from(live)
            .note(format!("{what} {id} already existed and matches the desired state; adopted it into state")))
    } else {
        Err(ProviderError::new(
            ErrorKind::Conflict,
            format!(
                "{what} {id} already exists and differs from the desired state in {}; adopt it with `meshform import FILE ADDRESS {id}` and plan again",
                diff.join(", ")
            ),
        ))
    }
}
