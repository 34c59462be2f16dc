//! One file per type; [`all`] registers them.

pub mod ca;
pub mod lookups;
pub mod manifest;
pub mod namespace;
pub mod remote_secret;
pub mod secret;

use std::sync::Arc;

use async_trait::async_trait;
use meshform_engine::provider::{ErrorKind, Planned, ProviderError, ProviderResult, TypeSchema};
use meshform_engine::value::{Map, Value};

use crate::conn::Kube;

/// A Kubernetes or mesh type.
#[async_trait]
pub trait KubeType: Send + Sync {
    /// Its schema.
    fn schema(&self) -> TypeSchema;

    /// Attributes of this object that hold secrets because of what it is rather than by the
    /// type's schema (a Kubernetes `Secret` given as a generic manifest or read by a lookup);
    /// returned with every result as [`meshform_engine::provider::Object::sensitive`].
    fn sensitive_in(&self, _attrs: &Map) -> Vec<String> {
        Vec::new()
    }
    /// See [`meshform_engine::provider::Provider::describe_delete`].
    fn describe_delete(&self, _prior: &Map) -> Option<String> {
        None
    }
    /// Normalises a proposal; may read the cluster (server-side dry-run).
    async fn plan(&self, _k: &Kube, _prior: Option<&Map>, proposed: Planned) -> ProviderResult<Planned> {
        Ok(proposed)
    }
    /// Reads the live object; `None` when it is gone.
    async fn read(&self, _k: &Kube, _prior: &Map) -> ProviderResult<Option<Map>> {
        Err(not_managed(&self.schema().name))
    }
    /// Creates it.
    async fn create(&self, _k: &Kube, _planned: &Map) -> ProviderResult<Map> {
        Err(not_managed(&self.schema().name))
    }
    /// Updates it.
    async fn update(&self, _k: &Kube, _prior: &Map, _planned: &Map) -> ProviderResult<Map> {
        Err(not_managed(&self.schema().name))
    }
    /// Deletes it.
    async fn delete(&self, _k: &Kube, _prior: &Map) -> ProviderResult<()> {
        Err(not_managed(&self.schema().name))
    }
    /// Reads an existing object by id.
    async fn import(&self, _k: &Kube, _id: &str) -> ProviderResult<Map> {
        Err(not_managed(&self.schema().name))
    }
    /// Evaluates a data source.
    async fn read_data(&self, _k: &Kube, _config: &Map) -> ProviderResult<Map> {
        Err(ProviderError::new(ErrorKind::Invalid, format!("{} is not a data source", self.schema().name)))
    }
}

fn not_managed(ty: &str) -> ProviderError {
    ProviderError::new(ErrorKind::Invalid, format!("{ty} is a data source, not a managed resource"))
}

/// Every type of the provider.
pub fn all() -> Vec<Arc<dyn KubeType>> {
    vec![
        Arc::new(namespace::Namespace),
        Arc::new(secret::Secret),
        Arc::new(manifest::Manifest),
        Arc::new(remote_secret::RemoteSecret),
        Arc::new(ca::MeshCa),
        Arc::new(lookups::Objects),
        Arc::new(lookups::Object),
    ]
}

/// A string attribute.
pub fn s(m: &Map, k: &str) -> Option<String> {
    m.get(k).and_then(Value::to_interpolated).filter(|x| !x.is_empty())
}

/// A required string attribute.
pub fn req(m: &Map, k: &str) -> ProviderResult<String> {
    s(m, k).ok_or_else(|| ProviderError::new(ErrorKind::Invalid, format!("`{k}` is required")))
}

/// A map attribute of strings.
pub fn string_map(m: &Map, k: &str) -> serde_json::Map<String, serde_json::Value> {
    m.get(k)
        .and_then(Value::as_map)
        .map(|x| {
            x.iter()
                .filter_map(|(a, b)| b.to_interpolated().map(|v| (a.clone(), serde_json::Value::String(v))))
                .collect()
        })
        .unwrap_or_default()
}

/// `CLUSTER/NAME` or `CLUSTER/NAMESPACE/NAME` import ids.
pub fn split_id(id: &str, parts: usize) -> ProviderResult<Vec<String>> {
    let v: Vec<String> = id.split('/').map(String::from).collect();
    if v.len() != parts || v.iter().any(String::is_empty) {
        let want = if parts == 2 { "CLUSTER/NAME" } else { "CLUSTER/NAMESPACE/NAME" };
        return Err(ProviderError::new(ErrorKind::Invalid, format!("import id `{id}`: expected {want}")));
    }
    Ok(v)
}
