//! `[state] backend = "kubernetes"`: the state in Secrets of one namespace, the lock a
//! `coordination.k8s.io/v1` Lease. Every change is a resourceVersion compare-and-swap.
//!
//! - State: gzip'd, cut into chunks under 1 MiB, each an immutable Secret
//!   `meshform-state-NAME-gGEN-I`; then the manifest Secret `meshform-state-NAME` (chunk names,
//!   content digest, size, the last few versions) is updated **last**, conditional on the
//!   resourceVersion read. A write killed half-way leaves chunks no manifest names: the previous
//!   version stays readable, and the next write removes the orphans. A reader checks the digest,
//!   so a torn or edited chunk is an error, never a wrong state.
//! - Lock: Lease `meshform-lock-NAME` (holderIdentity = the lock id, leaseDurationSeconds = the
//!   TTL, renewTime renewed while the run lives, the lock record in an annotation). Created if
//!   absent; released by a delete with a resourceVersion precondition.
//! - Journal: one Secret per group commit, `meshform-journal-NAME-SERIAL-SEQ`, labelled with the
//!   state name, never rewritten.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::ByteString;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use meshform_engine::state::lock::{LockError, LockInfo};
use meshform_engine::state::store::{Blob, JournalSink, Revision, StateLock, StateStore, StoreError};
use serde::{Deserialize, Serialize};

/// The settings `[state]` takes for this backend.
pub const SETTINGS: [&str; 6] = ["cluster", "context", "namespace", "name", "lock_ttl", "encryption_key_file"];

/// Raw bytes per chunk: a Secret holds at most 1 MiB of data.
pub const CHUNK: usize = 768 * 1024;

/// Versions the manifest keeps (the current one included) for `state history`.
pub const KEEP: usize = 5;

const LABEL_STATE: &str = "meshform.dev/state";
const LABEL_PART: &str = "meshform.dev/part";
const LOCK_ANNOTATION: &str = "meshform.dev/lock";

/// One stored version, as the manifest lists it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Version {
    /// The chunks' generation (part of their names).
    generation: u64,
    /// A random part of their names, so two writers never share a chunk.
    #[serde(default)]
    nonce: String,
    /// How many chunks.
    chunks: usize,
    /// SHA-256 of the gzip'd bytes.
    sha256: String,
    /// Size before gzip.
    size: u64,
    /// When written.
    written: String,
}

/// The manifest: the current version first, then earlier ones.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Manifest {
    versions: Vec<Version>,
}

/// A state in a namespace.
#[derive(Clone)]
pub struct KubeStore {
    client: kube::Client,
    namespace: String,
    name: String,
    ttl: Duration,
    /// Where it is, for messages (`kubernetes://CONTEXT/NAMESPACE/NAME`).
    location: String,
}

fn err(what: &str, e: kube::Error) -> StoreError {
    match &e {
        kube::Error::Api(s) if s.code == 404 => StoreError::not_found(format!("{what}: not found")),
        kube::Error::Api(s) if s.code == 409 => StoreError::conflict(format!("{what}: {}", s.message)),
        _ => StoreError::other(format!("{what}: {e}")),
    }
}

fn is_code(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// A state name as Kubernetes object names take it (lowercase, `.` and `-`).
pub fn object_name(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c.to_ascii_lowercase() } else { '-' })
        .collect()
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).and_then(|_| e.finish()).map_err(|e| StoreError::other(format!("gzip: {e}")))
}

fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).map_err(|e| StoreError::other(format!("gunzip: {e}")))?;
    Ok(out)
}

/// A random hex string for chunk names.
fn nonce() -> String {
    use std::hash::BuildHasher;
    let h = std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now());
    format!("{:08x}", h as u32)
}

fn sha256(bytes: &[u8]) -> String {
    meshform_engine::value::sha256_hex(bytes)
}

impl KubeStore {
    /// The store `[state]` describes for state `name`: `namespace` (default `meshform`) of the
    /// cluster the kubeconfig's `context` reaches (the current context when `None`). Reads only
    /// the kubeconfig; contacts nothing.
    pub async fn configure(
        st: &meshform_engine::config::StateSettings,
        name: &str,
        kubeconfig: Option<std::path::PathBuf>,
        context: Option<String>,
    ) -> Result<KubeStore, Vec<meshform_engine::diag::Diagnostic>> {
        use meshform_engine::diag::Diagnostic;
        let mut errors = st.unknown("kubernetes", &SETTINGS);
        let ttl = st.lock_ttl(Duration::from_secs(300), &mut errors);
        let namespace = st.get("namespace").map_or("meshform".to_string(), |n| n.value.clone());
        if !errors.is_empty() {
            return Err(errors);
        }
        let path = kubeconfig.ok_or_else(|| {
            vec![Diagnostic::global(
                "the kubernetes state backend needs a kubeconfig: set KUBECONFIG (or ~/.kube/config)",
            )]
        })?;
        let kc = kube::config::Kubeconfig::read_from(&path)
            .map_err(|e| vec![Diagnostic::global(format!("cannot read kubeconfig {}: {e}", path.display()))])?;
        let context = context.or_else(|| kc.current_context.clone()).unwrap_or_default();
        let opts = kube::config::KubeConfigOptions { context: Some(context.clone()), ..Default::default() };
        let config = kube::Config::from_custom_kubeconfig(kc, &opts)
            .await
            .map_err(|e| vec![Diagnostic::global(format!("state backend: kubeconfig context `{context}`: {e}"))])?;
        if config.accept_invalid_certs {
            return Err(vec![Diagnostic::global(format!(
                "state backend: kubeconfig context `{context}` sets insecure-skip-tls-verify; meshform always verifies the cluster's certificate"
            ))]);
        }
        let client =
            kube::Client::try_from(config).map_err(|e| vec![Diagnostic::global(format!("state backend: {e}"))])?;
        Ok(KubeStore::new(client, &namespace, name, ttl, &context))
    }

    /// A store in `namespace` of the cluster `client` talks to, for state `name`.
    pub fn new(client: kube::Client, namespace: &str, name: &str, ttl: Duration, context: &str) -> KubeStore {
        let name = object_name(name);
        KubeStore {
            location: format!("kubernetes://{context}/{namespace}/{name}"),
            client,
            namespace: namespace.to_string(),
            name,
            ttl,
        }
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn leases(&self) -> Api<Lease> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn manifest_name(&self) -> String {
        format!("meshform-state-{}", self.name)
    }

    fn chunk_name(&self, v: &Version, i: usize) -> String {
        format!("meshform-state-{}-g{}{}-{i}", self.name, v.generation, v.nonce)
    }

    fn lease_name(&self) -> String {
        format!("meshform-lock-{}", self.name)
    }

    fn labels(&self, part: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(LABEL_STATE.into(), self.name.clone()), (LABEL_PART.into(), part.into())])
    }

    /// The manifest and its resourceVersion (`None`: no state yet).
    async fn manifest(&self) -> Result<Option<(Manifest, String)>, StoreError> {
        let name = self.manifest_name();
        match self.secrets().get_opt(&name).await.map_err(|e| err(&self.location, e))? {
            None => Ok(None),
            Some(s) => {
                let raw = s.data.as_ref().and_then(|d| d.get("manifest")).map(|b| b.0.clone()).unwrap_or_default();
                let m: Manifest = serde_json::from_slice(&raw).map_err(|e| {
                    StoreError::other(format!("{}: the manifest Secret {name} is not valid: {e}", self.location))
                })?;
                Ok(Some((m, s.metadata.resource_version.unwrap_or_default())))
            }
        }
    }

    /// The bytes of one stored version, digest checked.
    async fn read_version(&self, v: &Version) -> Result<Vec<u8>, StoreError> {
        let api = self.secrets();
        let reads = (0..v.chunks).map(|i| {
            let api = api.clone();
            let name = self.chunk_name(v, i);
            async move { (api.get(&name).await, name) }
        });
        let mut gz = Vec::new();
        for (r, name) in futures::future::join_all(reads).await {
            let s = r.map_err(|e| err(&format!("{}: chunk {name}", self.location), e))?;
            gz.extend(s.data.and_then(|mut d| d.remove("chunk")).map(|b| b.0).unwrap_or_default());
        }
        if sha256(&gz) != v.sha256 {
            return Err(StoreError::other(format!(
                "{}: the chunks of generation {} do not match the manifest's digest (edited or torn)",
                self.location, v.generation
            )));
        }
        gunzip(&gz)
    }

    /// Removes every chunk Secret of this state that `keep` does not name (earlier versions
    /// dropped from the manifest, and a killed write's orphans).
    async fn collect_garbage(&self, keep: &Manifest) {
        let wanted: std::collections::BTreeSet<String> =
            keep.versions.iter().flat_map(|v| (0..v.chunks).map(move |i| self.chunk_name(v, i))).collect();
        let lp = ListParams::default().labels(&format!("{LABEL_STATE}={},{LABEL_PART}=chunk", self.name));
        let Ok(list) = self.secrets().list_metadata(&lp).await else { return };
        for s in list.items {
            let n = s.metadata.name.unwrap_or_default();
            if !wanted.contains(&n) {
                let _ = self.secrets().delete(&n, &DeleteParams::default()).await;
            }
        }
    }

    async fn delete_chunks(&self, names: &[String]) {
        for n in names {
            let _ = self.secrets().delete(n, &DeleteParams::default()).await;
        }
    }

    fn lease_info(&self, lease: &Lease) -> Option<LockInfo> {
        let holder = lease.spec.as_ref()?.holder_identity.clone().filter(|h| !h.is_empty())?;
        let mut info = lease
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(LOCK_ANNOTATION))
            .and_then(|j| serde_json::from_str::<LockInfo>(j).ok())
            .unwrap_or_else(|| LockInfo::unrecorded("(a Lease without a meshform lock record)", &holder, ""));
        info.id = holder;
        Some(info)
    }

    /// Deletes the Lease if it is still held by `id` (at `revision`, when given).
    async fn delete_lease(&self, id: &str, revision: Option<&str>) -> Result<bool, StoreError> {
        let name = self.lease_name();
        let Some(lease) = self.leases().get_opt(&name).await.map_err(|e| err(&self.location, e))? else {
            return Ok(false);
        };
        let rv = lease.metadata.resource_version.clone().unwrap_or_default();
        if self.lease_info(&lease).is_none_or(|i| i.id != id) || revision.is_some_and(|r| r != rv) {
            return Ok(false);
        }
        let dp = DeleteParams {
            preconditions: Some(Preconditions { resource_version: Some(rv), uid: None }),
            ..Default::default()
        };
        match self.leases().delete(&name, &dp).await {
            Ok(_) => Ok(true),
            Err(e) if is_code(&e, 404) || is_code(&e, 409) => Ok(false),
            Err(e) => Err(err(&self.location, e)),
        }
    }
}

fn now_micro() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// A held Lease.
struct KubeLock {
    store: KubeStore,
    info: LockInfo,
}

#[async_trait]
impl StateLock for KubeLock {
    fn info(&self) -> &LockInfo {
        &self.info
    }

    async fn renew(&self) -> Result<(), StoreError> {
        let s = &self.store;
        let name = s.lease_name();
        let lease = s.leases().get_opt(&name).await.map_err(|e| err(&s.location, e))?;
        let Some(mut lease) = lease.filter(|l| s.lease_info(l).is_some_and(|i| i.id == self.info.id)) else {
            return Err(StoreError::conflict(format!("the lock {} was removed or taken over", self.info.id)));
        };
        if let Some(spec) = lease.spec.as_mut() {
            spec.renew_time = Some(now_micro());
        }
        s.leases().replace(&name, &PostParams::default(), &lease).await.map_err(|e| err(&s.location, e))?;
        Ok(())
    }

    async fn unlock(&self) -> Result<(), StoreError> {
        self.store.delete_lease(&self.info.id, None).await.map(|_| ())
    }
}

/// Journal entries as new Secrets.
struct KubeSink {
    store: KubeStore,
    serial: u64,
    seq: u64,
    header: Vec<u8>,
}

#[async_trait]
impl JournalSink for KubeSink {
    async fn commit(&mut self, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.seq += 1;
        let s = &self.store;
        let name = format!("meshform-journal-{}-{:020}-{:010}", s.name, self.serial, self.seq);
        let mut body = self.header.clone();
        body.extend_from_slice(&bytes);
        let secret = Secret {
            metadata: ObjectMeta { name: Some(name.clone()), labels: Some(s.labels("journal")), ..Default::default() },
            data: Some(BTreeMap::from([("entry".into(), ByteString(body.clone()))])),
            type_: Some("meshform.dev/journal".into()),
            ..Default::default()
        };
        match s.secrets().create(&PostParams::default(), &secret).await {
            Ok(_) => Ok(()),
            // A retry of this very commit, whose reply was lost: the same bytes count as written.
            Err(e) if is_code(&e, 409) => match s.secrets().get(&name).await {
                Ok(x) if x.data.as_ref().and_then(|d| d.get("entry")).is_some_and(|b| b.0 == body) => Ok(()),
                _ => {
                    Err(StoreError::conflict(format!("{}: journal entry {name} exists with other content", s.location)))
                }
            },
            Err(e) => Err(err(&s.location, e)),
        }
    }
}

#[async_trait]
impl StateStore for KubeStore {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn lock_ttl(&self) -> Duration {
        self.ttl
    }

    async fn lock(&self, info: &LockInfo) -> Result<Box<dyn StateLock>, LockError> {
        let record = serde_json::to_string(info).map_err(|e| LockError::Failed(e.to_string()))?;
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.lease_name()),
                labels: Some(self.labels("lock")),
                annotations: Some(BTreeMap::from([(LOCK_ANNOTATION.into(), record)])),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(info.id.clone()),
                lease_duration_seconds: Some(self.ttl.as_secs().clamp(1, i32::MAX as u64) as i32),
                acquire_time: Some(now_micro()),
                renew_time: Some(now_micro()),
                ..Default::default()
            }),
        };
        for _ in 0..4 {
            match self.leases().create(&PostParams::default(), &lease).await {
                Ok(_) => return Ok(Box::new(KubeLock { store: self.clone(), info: info.clone() })),
                Err(e) if is_code(&e, 409) => {}
                Err(e) => return Err(LockError::Failed(err(&self.location, e).message)),
            }
            let held = self.leases().get_opt(&self.lease_name()).await;
            match held.map_err(|e| LockError::Failed(err(&self.location, e).message))? {
                Some(l) => match self.lease_info(&l) {
                    // Our own create, whose reply was lost before a retry.
                    Some(h) if h.id == info.id => {
                        return Ok(Box::new(KubeLock { store: self.clone(), info: info.clone() }));
                    }
                    Some(h) => return Err(LockError::Held { info: Box::new(h), stale: false }),
                    // A Lease without a holder (released by another tool): ours to replace.
                    None => {
                        let dp = DeleteParams {
                            preconditions: Some(Preconditions {
                                resource_version: l.metadata.resource_version.clone(),
                                uid: None,
                            }),
                            ..Default::default()
                        };
                        let _ = self.leases().delete(&self.lease_name(), &dp).await;
                    }
                },
                None => continue,
            }
        }
        Err(LockError::Failed(format!("{}: the lock kept changing while it was taken", self.location)))
    }

    async fn get(&self) -> Result<Option<Blob>, StoreError> {
        let Some((m, rv)) = self.manifest().await? else { return Ok(None) };
        let Some(current) = m.versions.first() else { return Ok(None) };
        Ok(Some(Blob { bytes: self.read_version(current).await?, version: rv }))
    }

    async fn put(&self, bytes: &[u8], expected: Option<&str>) -> Result<String, StoreError> {
        let loc = &self.location;
        let read = self.manifest().await?;
        let current_rv = read.as_ref().map(|(_, rv)| rv.as_str());
        if current_rv != expected {
            return Err(StoreError::conflict(format!(
                "{loc} changed since this run read it (written by a run that did not hold the lock?)"
            )));
        }
        let mut manifest = read.as_ref().map(|(m, _)| m.clone()).unwrap_or_default();
        let generation = manifest.versions.iter().map(|v| v.generation).max().unwrap_or(0) + 1;
        let gz = gzip(bytes)?;
        let chunks: Vec<&[u8]> = gz.chunks(CHUNK).collect();
        let version = Version {
            generation,
            nonce: format!("x{}", nonce()),
            chunks: chunks.len(),
            sha256: sha256(&gz),
            size: bytes.len() as u64,
            written: meshform_engine::clock::now_rfc3339(),
        };
        let mut created = Vec::new();
        for (i, part) in chunks.iter().enumerate() {
            let name = self.chunk_name(&version, i);
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    labels: Some(self.labels("chunk")),
                    ..Default::default()
                },
                data: Some(BTreeMap::from([("chunk".into(), ByteString(part.to_vec()))])),
                type_: Some("meshform.dev/state-chunk".into()),
                ..Default::default()
            };
            if let Err(e) = self.secrets().create(&PostParams::default(), &secret).await {
                self.delete_chunks(&created).await;
                return Err(err(loc, e));
            }
            created.push(name);
        }
        manifest.versions.insert(0, version);
        manifest.versions.truncate(KEEP);
        let body = serde_json::to_vec(&manifest).map_err(|e| StoreError::other(e.to_string()))?;
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(self.manifest_name()),
                labels: Some(self.labels("manifest")),
                resource_version: expected.map(String::from),
                ..Default::default()
            },
            data: Some(BTreeMap::from([("manifest".into(), ByteString(body))])),
            type_: Some("meshform.dev/state".into()),
            ..Default::default()
        };
        let written = match expected {
            None => self.secrets().create(&PostParams::default(), &secret).await,
            Some(_) => self.secrets().replace(&self.manifest_name(), &PostParams::default(), &secret).await,
        };
        let rv = match written {
            Ok(s) => s.metadata.resource_version.unwrap_or_default(),
            Err(e) if is_code(&e, 409) => {
                // Only what this call made: the winner's chunks are the winner's.
                self.delete_chunks(&created).await;
                return Err(StoreError::conflict(format!(
                    "{loc} changed since this run read it (written by a run that did not hold the lock?)"
                )));
            }
            Err(e) => {
                self.delete_chunks(&created).await;
                return Err(err(loc, e));
            }
        };
        self.collect_garbage(&manifest).await;
        Ok(rv)
    }

    async fn journal(&self, serial: u64, header: &[u8]) -> Result<Box<dyn JournalSink>, StoreError> {
        Ok(Box::new(KubeSink { store: self.clone(), serial, seq: 0, header: header.to_vec() }))
    }

    async fn journal_entries(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        let lp = ListParams::default().labels(&format!("{LABEL_STATE}={},{LABEL_PART}=journal", self.name));
        let mut items = self.secrets().list(&lp).await.map_err(|e| err(&self.location, e))?.items;
        items.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        Ok(items.into_iter().filter_map(|s| s.data.and_then(|mut d| d.remove("entry")).map(|b| b.0)).collect())
    }

    async fn clear_journal(&self) -> Result<(), StoreError> {
        let lp = ListParams::default().labels(&format!("{LABEL_STATE}={},{LABEL_PART}=journal", self.name));
        let items = self.secrets().list_metadata(&lp).await.map_err(|e| err(&self.location, e))?.items;
        for s in items {
            match self.secrets().delete(&s.metadata.name.unwrap_or_default(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if is_code(&e, 404) => {}
                Err(e) => return Err(err(&self.location, e)),
            }
        }
        Ok(())
    }

    async fn force_unlock(&self, id: &str) -> Result<LockInfo, StoreError> {
        let name = self.lease_name();
        let lease = self.leases().get_opt(&name).await.map_err(|e| err(&self.location, e))?;
        let Some(info) = lease.as_ref().and_then(|l| self.lease_info(l)) else {
            return Err(StoreError::not_found(format!("{} is not locked", self.location)));
        };
        if info.id != id {
            return Err(StoreError::other(format!("the lock of {} has id {}, not {id}", self.location, info.id)));
        }
        if self.delete_lease(id, None).await? {
            Ok(info)
        } else {
            Err(StoreError::conflict(format!("the lock {id} of {} changed while it was removed", self.location)))
        }
    }

    async fn lock_holder(&self) -> Result<Option<(LockInfo, String)>, StoreError> {
        let lease = self.leases().get_opt(&self.lease_name()).await.map_err(|e| err(&self.location, e))?;
        Ok(lease.and_then(|l| {
            let rv = l.metadata.resource_version.clone().unwrap_or_default();
            self.lease_info(&l).map(|i| (i, rv))
        }))
    }

    async fn break_lock(&self, id: &str, revision: &str) -> Result<bool, StoreError> {
        self.delete_lease(id, Some(revision)).await
    }

    async fn history(&self) -> Result<Vec<Revision>, StoreError> {
        let Some((m, _)) = self.manifest().await? else { return Ok(Vec::new()) };
        Ok(m.versions
            .iter()
            .enumerate()
            .map(|(i, v)| Revision {
                version: v.generation.to_string(),
                written: v.written.clone(),
                size: v.size,
                current: i == 0,
            })
            .collect())
    }

    async fn get_version(&self, version: &str) -> Result<Vec<u8>, StoreError> {
        let Some((m, _)) = self.manifest().await? else {
            return Err(StoreError::not_found(format!("{} has no state", self.location)));
        };
        match m.versions.iter().find(|v| v.generation.to_string() == version) {
            Some(v) => self.read_version(v).await,
            None => Err(StoreError::not_found(format!(
                "{} keeps no version {version} (it keeps the last {KEEP})",
                self.location
            ))),
        }
    }

    async fn names(&self) -> Result<Vec<String>, StoreError> {
        let lp = ListParams::default().labels(&format!("{LABEL_PART}=manifest"));
        let items = self.secrets().list_metadata(&lp).await.map_err(|e| err(&self.location, e))?.items;
        let mut names: Vec<String> =
            items.into_iter().filter_map(|s| s.metadata.labels.and_then(|mut l| l.remove(LABEL_STATE))).collect();
        names.sort();
        Ok(names)
    }
}
