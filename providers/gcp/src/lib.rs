//! meshform's Google Cloud provider, over reqwest: global addresses, firewall rules, zonal NEGs,
//! GKE control-plane access, fleet memberships and features, the cluster lookups behind
//! `[clusters.NAME]`, and Secret Manager secret versions (data source `gcp_secret_version`). The same code talks to Google and to the simulator; only the endpoint and the
//! credentials differ.
//!
//! Key types: [`GcpProvider`] (the engine's `Provider`), [`client::Client`] (HTTP, retries, rate
//! limits, operations), [`types::GcpType`] (one implementation per resource type, registered in
//! [`types::all`]). Design decision: refresh lists each type once per project (and zone) instead
//! of one GET per object, so a drift check costs O(types), not O(objects).

pub mod client;
pub mod convert;
pub mod filter;
pub mod state;
pub mod storage;
pub mod types;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use meshform_engine::provider::{
    CallContext, ErrorKind, Object, Planned, Provider, ProviderError, ProviderResult, TypeSchema,
};
use meshform_engine::value::{Map, Value};

use client::{Client, Credentials, Endpoints, Settings};
use types::GcpType;

/// The provider's name (`[providers.gcp]`).
pub const NAME: &str = "gcp";

/// The Google Cloud provider.
pub struct GcpProvider {
    types: BTreeMap<String, Arc<dyn GcpType>>,
    env: HashMap<String, String>,
    client: OnceLock<Arc<Client>>,
    /// Objects read by list during this run's refresh: `type/scope` → id → object.
    listed: tokio::sync::Mutex<HashMap<String, HashMap<String, Map>>>,
}

impl GcpProvider {
    /// A provider reading its defaults from the process environment.
    pub fn from_env() -> GcpProvider {
        GcpProvider::with_env(std::env::vars().collect())
    }

    /// A provider with an explicit environment (tests).
    pub fn with_env(env: HashMap<String, String>) -> GcpProvider {
        GcpProvider {
            types: types::all().into_iter().map(|t| (t.schema().name.clone(), t)).collect(),
            env,
            client: OnceLock::new(),
            listed: Default::default(),
        }
    }

    fn var(&self, names: &[&str]) -> Option<String> {
        names.iter().find_map(|n| self.env.get(*n).filter(|v| !v.is_empty()).cloned())
    }

    fn client(&self) -> ProviderResult<Arc<Client>> {
        self.client
            .get()
            .cloned()
            .ok_or_else(|| ProviderError::new(ErrorKind::Other, "the gcp provider was not configured"))
    }

    fn ty(&self, ty: &str) -> ProviderResult<&Arc<dyn GcpType>> {
        self.types.get(ty).ok_or_else(|| ProviderError::new(ErrorKind::Invalid, format!("gcp has no type `{ty}`")))
    }
}

fn setting_f64(config: &Map, key: &str, default: f64) -> ProviderResult<f64> {
    match config.get(key) {
        None => Ok(default),
        Some(Value::Int(i)) if *i > 0 => Ok(*i as f64),
        Some(Value::Float(f)) if *f > 0.0 && f.is_finite() => Ok(*f),
        Some(other) => {
            Err(ProviderError::new(ErrorKind::Invalid, format!("`{key}` must be a positive number, not {other}")))
        }
    }
}

#[async_trait]
impl Provider for GcpProvider {
    fn name(&self) -> &str {
        NAME
    }

    fn schemas(&self) -> Vec<TypeSchema> {
        self.types.values().map(|t| t.schema()).collect()
    }

    async fn configure(&self, config: &Map) -> ProviderResult<()> {
        let known = [
            "project",
            "endpoint",
            "compute_endpoint",
            "container_endpoint",
            "gkehub_endpoint",
            "secretmanager_endpoint",
            "requests_per_second",
            "operation_timeout_seconds",
            "max_attempts",
            "max_authorized_networks",
        ];
        if let Some(k) = config.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(ProviderError::new(
                ErrorKind::Invalid,
                format!("unknown setting `{k}`; expected one of: {}", known.join(", ")),
            ));
        }
        let s = |k: &str| config.get(k).and_then(Value::as_str).map(String::from);
        let base = s("endpoint").or_else(|| self.var(&["MESHFORM_GCP_ENDPOINT"]));
        let mut endpoints = base.as_deref().map_or_else(Endpoints::google, Endpoints::under);
        if let Some(e) = s("compute_endpoint").or_else(|| self.var(&["MESHFORM_GCP_COMPUTE_ENDPOINT"])) {
            endpoints.compute = e.trim_end_matches('/').into();
        }
        if let Some(e) = s("container_endpoint").or_else(|| self.var(&["MESHFORM_GCP_CONTAINER_ENDPOINT"])) {
            endpoints.container = e.trim_end_matches('/').into();
        }
        if let Some(e) = s("gkehub_endpoint").or_else(|| self.var(&["MESHFORM_GCP_GKEHUB_ENDPOINT"])) {
            endpoints.hub = e.trim_end_matches('/').into();
        }
        if let Some(e) = s("secretmanager_endpoint").or_else(|| self.var(&["MESHFORM_GCP_SECRETMANAGER_ENDPOINT"])) {
            endpoints.secretmanager = e.trim_end_matches('/').into();
        }
        let settings = Settings {
            project: s("project").or_else(|| self.var(&["MESHFORM_GCP_PROJECT", "CLOUDSDK_CORE_PROJECT"])),
            endpoints,
            requests_per_second: setting_f64(config, "requests_per_second", 20.0)?,
            operation_timeout: Duration::from_secs_f64(
                setting_f64(config, "operation_timeout_seconds", 1200.0)?.min(31_536_000.0),
            ),
            max_attempts: setting_f64(config, "max_attempts", 8.0)?.clamp(1.0, 100.0) as u32,
            max_authorized_networks: setting_f64(
                config,
                "max_authorized_networks",
                types::control_plane_access::MAX_AUTHORIZED_NETWORKS as f64,
            )?
            .min(10_000.0) as usize,
        };
        let creds = Credentials::new(
            self.var(&["MESHFORM_GCP_ACCESS_TOKEN", "CLOUDSDK_AUTH_ACCESS_TOKEN"]),
            self.var(&["GOOGLE_APPLICATION_CREDENTIALS"]).map(Into::into),
        );
        match self.client.get() {
            // Configured once per process; each run after the first reads its lists afresh.
            Some(c) => c.forget_lists(),
            None => {
                let client = Client::new(settings, creds).map_err(|m| ProviderError::new(ErrorKind::Other, m))?;
                let _ = self.client.set(Arc::new(client));
            }
        }
        Ok(())
    }

    async fn prepare_refresh(&self, objects: &[(String, Map)]) -> ProviderResult<()> {
        let c = self.client()?;
        let mut scopes: BTreeMap<String, (Arc<dyn GcpType>, Map)> = BTreeMap::new();
        for (ty, prior) in objects {
            if let Ok(t) = self.ty(ty)
                && let Some(scope) = t.list_scope(&c, prior)
            {
                scopes.entry(format!("{ty}/{scope}")).or_insert_with(|| (t.clone(), prior.clone()));
            }
        }
        let reads = scopes.into_iter().map(|(key, (t, prior))| {
            let c = c.clone();
            async move { t.list(&c, &prior).await.map(|items| (key, items)) }
        });
        let results = futures::future::join_all(reads).await;
        let mut listed = self.listed.lock().await;
        listed.clear();
        // A scope that cannot be listed (an incomplete list, no list permission) is read object
        // by object instead, where any real error surfaces.
        for (key, items) in results.into_iter().flatten() {
            listed.insert(key, items.into_iter().map(|m| (convert::id_of(&m), m)).collect());
        }
        Ok(())
    }

    async fn read(&self, ty: &str, prior: &Map, _ctx: &CallContext) -> ProviderResult<Option<Object>> {
        let c = self.client()?;
        let t = self.ty(ty)?;
        if let Some(scope) = t.list_scope(&c, prior) {
            let listed = self.listed.lock().await;
            if let Some(items) = listed.get(&format!("{ty}/{scope}")) {
                return Ok(items.get(&convert::id_of(prior)).cloned().map(Object::from));
            }
        }
        Ok(t.read(&c, prior).await?.map(Object::from))
    }

    async fn plan(
        &self,
        ty: &str,
        prior: Option<&Map>,
        proposed: Planned,
        _ctx: &CallContext,
    ) -> ProviderResult<Planned> {
        let c = self.client()?;
        let t = self.ty(ty)?;
        let planned = t.plan(&c, prior, proposed)?;
        t.check_plan(&c, prior, &planned.attrs).await?;
        Ok(planned)
    }

    async fn prepare_create(&self, ty: &str, planned: &Map, _ctx: &CallContext) -> ProviderResult<Option<Map>> {
        self.ty(ty)?.prepare_create(&*self.client()?, planned).await
    }

    async fn create(&self, ty: &str, planned: &Map, ctx: &CallContext) -> ProviderResult<Object> {
        let c = self.client()?;
        // Before (no list read from now on predates it) and after (none read while it ran).
        c.forget_lists();
        let out = client::OPERATION_TIMEOUT.scope(ctx.timeout, self.ty(ty)?.create(&c, planned)).await;
        c.forget_lists();
        out
    }

    async fn update(&self, ty: &str, prior: &Map, planned: &Map, ctx: &CallContext) -> ProviderResult<Object> {
        let c = self.client()?;
        c.forget_lists();
        let out = client::OPERATION_TIMEOUT.scope(ctx.timeout, self.ty(ty)?.update(&c, prior, planned)).await;
        c.forget_lists();
        out.map(Object::from)
    }

    async fn delete(&self, ty: &str, prior: &Map, ctx: &CallContext) -> ProviderResult<()> {
        let c = self.client()?;
        c.forget_lists();
        let out = client::OPERATION_TIMEOUT.scope(ctx.timeout, self.ty(ty)?.delete(&c, prior)).await;
        c.forget_lists();
        match out {
            Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    async fn import(&self, ty: &str, id: &str, _ctx: &CallContext) -> ProviderResult<Object> {
        self.ty(ty)?.import(&*self.client()?, id).await.map(Object::from)
    }

    async fn read_data(&self, ty: &str, config: &Map, _ctx: &CallContext) -> ProviderResult<Object> {
        let t = self.ty(ty)?;
        // The engine marks the schema's sensitive attributes (at plan and at apply).
        t.read_data(&*self.client()?, config).await.map(Object::from)
    }
}
