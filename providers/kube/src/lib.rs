//! meshform's Kubernetes and mesh provider, over kube-rs: connections to the clusters of
//! `[clusters]` (from a kubeconfig context, or from the live GKE lookup), built lazily in the
//! same run that may change those clusters; namespaces, secrets and arbitrary manifests applied
//! with server-side apply.
//!
//! Key types: [`KubeProvider`] (the engine's `Provider`), [`conn::Connections`] (one client per
//! cluster), [`types::KubeType`] (one implementation per type, registered in [`types::all`]).
//! Design decision: meshform compares only the fields it applied (its server-side-apply field
//! set), read back after a server-side dry-run, so server defaults and other managers' fields are
//! never drift. Reads of a run come from one list per cluster, kind and namespace (the run's
//! snapshot, see [`conn::Kube::listed`]), so a cluster costs O(kinds) calls however many objects
//! it holds, and each cluster's API server has its own request budget.

pub mod conn;
pub mod discovery;
pub mod health;
pub mod objects;
pub mod snapshot;
pub mod state;
pub mod types;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use meshform_engine::provider::{
    CallContext, CheckOutcome, ErrorKind, Finding, Object, Planned, Provider, ProviderError, ProviderResult, TypeSchema,
};
use meshform_engine::value::{Map, Value};

use conn::{Connections, Settings};
use types::KubeType;

/// The provider's name (`[providers.kubernetes]`).
pub const NAME: &str = "kubernetes";

/// Requests in flight at once to one cluster's API server, by default: client-go's default burst
/// (its QPS limiter allows bursts of 10), well under the API server's own in-flight limits
/// (`--max-requests-inflight` 400, `--max-mutating-requests-inflight` 200 by default).
pub const DEFAULT_REQUESTS_PER_CLUSTER: usize = 10;

/// The Kubernetes provider.
pub struct KubeProvider {
    types: BTreeMap<String, Arc<dyn KubeType>>,
    env: HashMap<String, String>,
    conns: OnceLock<Arc<Connections>>,
}

impl KubeProvider {
    /// A provider reading KUBECONFIG and tokens from the process environment.
    pub fn from_env() -> KubeProvider {
        KubeProvider::with_env(std::env::vars().collect())
    }

    /// A provider with an explicit environment (tests).
    pub fn with_env(env: HashMap<String, String>) -> KubeProvider {
        KubeProvider {
            types: types::all().into_iter().map(|t| (t.schema().name.clone(), t)).collect(),
            env,
            conns: OnceLock::new(),
        }
    }

    fn conns(&self) -> ProviderResult<Arc<Connections>> {
        self.conns
            .get()
            .cloned()
            .ok_or_else(|| ProviderError::new(ErrorKind::Other, "the kubernetes provider was not configured"))
    }

    fn ty(&self, ty: &str) -> ProviderResult<&Arc<dyn KubeType>> {
        self.types
            .get(ty)
            .ok_or_else(|| ProviderError::new(ErrorKind::Invalid, format!("kubernetes has no type `{ty}`")))
    }
}

#[async_trait]
impl Provider for KubeProvider {
    fn name(&self) -> &str {
        NAME
    }

    fn schemas(&self) -> Vec<TypeSchema> {
        self.types.values().map(|t| t.schema()).collect()
    }

    async fn configure(&self, config: &Map) -> ProviderResult<()> {
        let known = [
            "kubeconfig",
            "field_manager",
            "wait_timeout_seconds",
            "max_requests_per_cluster",
            "ca_expiry_warning_days",
            "connect_gateway_endpoint",
        ];
        if let Some(k) = config.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(ProviderError::new(
                ErrorKind::Invalid,
                format!("unknown setting `{k}`; expected one of: {}", known.join(", ")),
            ));
        }
        let s = |k: &str| config.get(k).and_then(Value::as_str).map(String::from);
        let env = |k: &str| self.env.get(k).filter(|v| !v.is_empty()).cloned();
        let kubeconfig =
            s("kubeconfig").or_else(|| env("KUBECONFIG")).or_else(|| env("HOME").map(|h| format!("{h}/.kube/config")));
        let settings = Settings {
            kubeconfig: kubeconfig.map(Into::into),
            field_manager: s("field_manager").unwrap_or_else(|| "meshform".into()),
            connect_gateway: s("connect_gateway_endpoint").or_else(|| env("MESHFORM_CONNECT_GATEWAY_ENDPOINT")),
            google: Arc::new(meshform_google_auth::Credentials::new(
                env("MESHFORM_GCP_ACCESS_TOKEN").or_else(|| env("CLOUDSDK_AUTH_ACCESS_TOKEN")),
                env("GOOGLE_APPLICATION_CREDENTIALS").map(Into::into),
            )),
            wait_timeout: std::time::Duration::from_secs(match config.get("wait_timeout_seconds") {
                Some(Value::Int(i)) if *i > 0 => *i as u64,
                _ => 120,
            }),
            max_requests_per_cluster: match config.get("max_requests_per_cluster") {
                None => DEFAULT_REQUESTS_PER_CLUSTER,
                Some(Value::Int(i)) if (1..=1000).contains(i) => *i as usize,
                Some(other) => {
                    return Err(ProviderError::new(
                        ErrorKind::Invalid,
                        format!("`max_requests_per_cluster` must be a whole number from 1 to 1000, not {other}"),
                    ));
                }
            },
            ca_expiry_warning_days: match config.get("ca_expiry_warning_days") {
                None => 30,
                Some(Value::Int(i)) if (0..=36_500).contains(i) => *i as u64,
                Some(other) => {
                    return Err(ProviderError::new(
                        ErrorKind::Invalid,
                        format!("`ca_expiry_warning_days` must be a whole number of days from 0 to 36500, not {other}"),
                    ));
                }
            },
        };
        match self.conns.get() {
            // Configured once per process; each run after the first starts a new snapshot.
            Some(c) => c.new_run(),
            None => {
                let _ = self.conns.set(Arc::new(Connections::new(settings)));
            }
        }
        Ok(())
    }

    async fn read(&self, ty: &str, prior: &Map, ctx: &CallContext) -> ProviderResult<Option<Object>> {
        let t = self.ty(ty)?;
        Ok(t.read(&self.conns()?.with(ctx), prior).await?.map(|m| object(t.as_ref(), m)))
    }

    async fn plan(
        &self,
        ty: &str,
        prior: Option<&Map>,
        proposed: Planned,
        ctx: &CallContext,
    ) -> ProviderResult<Planned> {
        let k = self.conns()?.with(ctx);
        // Every cluster the object lives in or reads must be reachable by its connection settings
        // (a kubeconfig context that does not exist fails here, at plan, not at apply).
        for name in named_clusters(&proposed.attrs) {
            k.client(&name).await?;
        }
        self.ty(ty)?.plan(&k, prior, proposed).await
    }

    async fn create(&self, ty: &str, planned: &Map, ctx: &CallContext) -> ProviderResult<Object> {
        let t = self.ty(ty)?;
        Ok(object(t.as_ref(), t.create(&self.conns()?.with(ctx), planned).await?))
    }

    async fn update(&self, ty: &str, prior: &Map, planned: &Map, ctx: &CallContext) -> ProviderResult<Object> {
        let t = self.ty(ty)?;
        Ok(object(t.as_ref(), t.update(&self.conns()?.with(ctx), prior, planned).await?))
    }

    async fn delete(&self, ty: &str, prior: &Map, ctx: &CallContext) -> ProviderResult<()> {
        self.ty(ty)?.delete(&self.conns()?.with(ctx), prior).await
    }

    async fn import(&self, ty: &str, id: &str, ctx: &CallContext) -> ProviderResult<Object> {
        let t = self.ty(ty)?;
        Ok(object(t.as_ref(), t.import(&self.conns()?.with(ctx), id).await?))
    }

    async fn read_data(&self, ty: &str, config: &Map, ctx: &CallContext) -> ProviderResult<Object> {
        let t = self.ty(ty)?;
        Ok(object(t.as_ref(), t.read_data(&self.conns()?.with(ctx), config).await?))
    }

    async fn findings(&self, objects: &[(String, Map)], ctx: &CallContext) -> ProviderResult<Vec<Finding>> {
        let k = self.conns()?.with(ctx);
        let mut found = types::remote_secret::unmanaged(&k, objects).await?;
        found.extend(types::manifest::unhealthy(&k, objects).await?);
        found.extend(types::ca::expiring(&k, objects).await?);
        Ok(found)
    }

    fn describe_delete(&self, ty: &str, prior: &Map) -> Option<String> {
        self.ty(ty).ok()?.describe_delete(prior)
    }

    fn check_kinds(&self) -> Vec<String> {
        vec!["remote_secret_auth".into(), "mesh_endpoint_discovery".into()]
    }

    async fn check(&self, kind: &str, args: &Map, ctx: &CallContext) -> ProviderResult<CheckOutcome> {
        if kind == "mesh_endpoint_discovery" {
            let (passed, detail) = discovery::check(&self.conns()?.with(ctx), args).await?;
            return Ok(CheckOutcome { passed, detail });
        }
        if kind != "remote_secret_auth" {
            return Err(ProviderError::new(ErrorKind::Invalid, format!("no check kind `{kind}`")));
        }
        let arg = |k: &str| {
            args.get(k)
                .and_then(Value::to_interpolated)
                .ok_or_else(|| ProviderError::new(ErrorKind::Invalid, format!("check needs `{k}`")))
        };
        let ns = args.get("namespace").and_then(Value::to_interpolated).unwrap_or_else(|| "istio-system".into());
        let (passed, detail) =
            types::remote_secret::check_auth(&self.conns()?.with(ctx), &arg("source")?, &arg("target")?, &ns).await?;
        Ok(CheckOutcome { passed, detail })
    }
}

/// A type's result, with the attributes that hold secrets by what the object is (a Secret).
fn object(t: &dyn KubeType, attrs: Map) -> Object {
    let sensitive = t.sensitive_in(&attrs);
    Object::from(attrs).sensitive(sensitive)
}

/// The clusters an object's attributes name (`cluster`, `source`, `target`, `clusters`), where known.
fn named_clusters(attrs: &Map) -> Vec<String> {
    let mut out = Vec::new();
    for key in ["cluster", "source", "target", "clusters"] {
        match attrs.get(key) {
            Some(Value::String(s)) => out.push(s.clone()),
            Some(Value::List(l)) => out.extend(l.iter().filter_map(|v| v.as_str().map(String::from))),
            _ => {}
        }
    }
    out.sort();
    out.dedup();
    out
}
