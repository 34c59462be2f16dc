//! One file per type; [`all`] registers them.

pub mod manifest;
pub mod namespace;
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
    /// Normalises a proposal; may read the cluster (server-side dry-run).
    async fn plan(&self, _k: &Kube, _prior: Option<&Map>, proposed: Planned) -> ProviderResult<Planned> {
        Ok(proposed)
    }
    /// Reads the live object; `None` when it is gone.
    async fn read(&self, k: &Kube, prior: &Map) -> ProviderResult<Option<Map>>;
    /// Creates it.
    async fn create(&self, k: &Kube, planned: &Map) -> ProviderResult<Map>;
    /// Updates it.
    async fn update(&self, k: &Kube, prior: &Map, planned: &Map) -> ProviderResult<Map>;
    /// Deletes it.
    async fn delete(&self, k: &Kube, prior: &Map) -> ProviderResult<()>;
    /// Reads an existing object by id.
    async fn import(&self, k: &Kube, id: &str) -> ProviderResult<Map>;
    /// Evaluates a data source.
    async fn read_data(&self, _k: &Kube, _config: &Map) -> ProviderResult<Map> {
        Err(ProviderError::new(ErrorKind::Invalid, format!("{} is not a data source", self.schema().name)))
    }
}

/// Every type of the provider.
pub fn all() -> Vec<Arc<dyn KubeType>> {
    vec![Arc::new(namespace::Namespace), Arc::new(secret::Secret), Arc::new(manifest::Manifest)]
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
