//! `[state] backend = "gcs"`: the state in a Cloud Storage bucket. Objects, under `prefix`:
//! `NAME.state.json` (written with `ifGenerationMatch` = the generation read, so a writer that
//! bypassed the lock is caught), `NAME.lock` (created with `ifGenerationMatch=0`; its generation
//! is the lock id; renewed by metadata patches, which move its metageneration and keep the
//! generation), and `NAME.journal/SERIAL/SEQ` (one new object per group commit, never rewritten,
//! so the one-mutation-per-second limit on one object name never applies).
//!
//! Some emulators ignore delete preconditions, so an unlock reads the lock first and deletes only
//! its own generation, then checks it is gone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use meshform_engine::config::StateSettings;
use meshform_engine::diag::Diagnostic;
use meshform_engine::state::lock::{LockError, LockInfo};
use meshform_engine::state::store::{Blob, JournalSink, Revision, StateLock, StateStore, StoreError};
use serde_json::{Value, json};

use crate::client::Credentials;
use crate::storage::{Conditions, Gcs, GcsError, Meta};

/// The settings `[state]` takes for this backend.
pub const SETTINGS: [&str; 7] =
    ["bucket", "prefix", "kms_key_name", "name", "lock_ttl", "endpoint", "encryption_key_file"];

/// A lock lives this long without a renewal, unless `lock_ttl` says otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// A state in a bucket.
#[derive(Clone)]
pub struct GcsStore {
    gcs: Arc<Gcs>,
    prefix: String,
    name: String,
    ttl: Duration,
}

fn store_error(what: &str, e: GcsError) -> StoreError {
    match e {
        GcsError::NotFound => StoreError::not_found(format!("{what}: not found")),
        GcsError::Precondition => StoreError::conflict(format!("{what}: changed since it was read")),
        GcsError::Failed(m) => StoreError::other(format!("{what}: {m}")),
    }
}

/// `prefix` as objects are named under it: no leading `/`, a trailing `/` unless empty.
pub fn normalize_prefix(p: &str) -> String {
    let p = p.trim_start_matches('/');
    if p.is_empty() || p.ends_with('/') { p.to_string() } else { format!("{p}/") }
}

impl GcsStore {
    /// The store `[state]` describes for state `name`, built without any network call; the
    /// endpoint and credentials come from the environment as for the provider
    /// (`MESHFORM_STORAGE_ENDPOINT`, else `MESHFORM_GCP_ENDPOINT`; `MESHFORM_GCP_ACCESS_TOKEN`,
    /// `CLOUDSDK_AUTH_ACCESS_TOKEN`, `GOOGLE_APPLICATION_CREDENTIALS`, else ADC).
    pub fn configure(
        st: &StateSettings,
        name: &str,
        env: &HashMap<String, String>,
    ) -> Result<GcsStore, Vec<Diagnostic>> {
        let mut errors = st.unknown("gcs", &SETTINGS);
        let var = |names: &[&str]| names.iter().find_map(|n| env.get(*n).filter(|v| !v.is_empty()).cloned());
        let bucket = match st.get("bucket") {
            Some(b) if valid_bucket(&b.value) => b.value.clone(),
            Some(b) => {
                errors.push(
                    Diagnostic::error(format!("`{}` is not a bucket name", b.value), b.span)
                        .label("3 to 63 lowercase letters, digits, `-`, `_` and `.`"),
                );
                String::new()
            }
            None => {
                errors.push(st.missing("gcs", "bucket", "\"my-state-bucket\""));
                String::new()
            }
        };
        let ttl = st.lock_ttl(DEFAULT_TTL, &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        let endpoint = st
            .get("endpoint")
            .map(|e| e.value.clone())
            .or_else(|| var(&["MESHFORM_STORAGE_ENDPOINT", "MESHFORM_GCP_ENDPOINT"]))
            .unwrap_or_else(|| "https://storage.googleapis.com".into());
        let creds = Credentials::new(
            var(&["MESHFORM_GCP_ACCESS_TOKEN", "CLOUDSDK_AUTH_ACCESS_TOKEN"]),
            var(&["GOOGLE_APPLICATION_CREDENTIALS"]).map(Into::into),
        );
        let mut gcs = Gcs::new(&endpoint, &bucket, creds).map_err(|m| vec![Diagnostic::global(m)])?;
        gcs.kms_key_name = st.get("kms_key_name").map(|k| k.value.clone());
        let prefix = normalize_prefix(st.get("prefix").map_or("", |p| p.value.as_str()));
        Ok(GcsStore { gcs: Arc::new(gcs), prefix, name: name.to_string(), ttl })
    }

    /// A store over an existing client (tests).
    pub fn with_client(gcs: Gcs, prefix: &str, name: &str, ttl: Duration) -> GcsStore {
        GcsStore { gcs: Arc::new(gcs), prefix: normalize_prefix(prefix), name: name.to_string(), ttl }
    }

    fn state_object(&self) -> String {
        format!("{}{}.state.json", self.prefix, self.name)
    }

    fn lock_object(&self) -> String {
        format!("{}{}.lock", self.prefix, self.name)
    }

    fn journal_prefix(&self) -> String {
        format!("{}{}.journal/", self.prefix, self.name)
    }

    /// The lock's holder and its metadata, read at one generation (`None`: no lock). A lock
    /// deleted between the metadata and the data reads as no lock.
    async fn holder(&self) -> Result<Option<(LockInfo, Meta)>, StoreError> {
        Ok(self.holder_bytes().await?.map(|(info, meta, _)| (info, meta)))
    }

    /// [`GcsStore::holder`] with the lock object's bytes.
    async fn holder_bytes(&self) -> Result<Option<(LockInfo, Meta, Vec<u8>)>, StoreError> {
        let name = self.lock_object();
        let what = self.gcs.url_of(&name);
        match self.gcs.read(&name).await {
            Ok(Some((meta, bytes))) => {
                let mut info: LockInfo = serde_json::from_slice(&bytes)
                    .unwrap_or_else(|_| LockInfo::unrecorded("(unreadable lock object)", "unknown", &meta.updated));
                info.id = meta.generation.to_string();
                Ok(Some((info, meta, bytes)))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(store_error(&what, e)),
        }
    }

    /// Deletes the lock object if it is still at `generation` (and `metageneration`, when given),
    /// checked before and after: whether it removed it.
    async fn delete_lock(&self, generation: u64, metageneration: Option<u64>) -> Result<bool, StoreError> {
        let name = self.lock_object();
        let what = self.gcs.url_of(&name);
        let now = self.gcs.meta(&name).await.map_err(|e| store_error(&what, e))?;
        match now {
            Some(m) if m.generation == generation && metageneration.is_none_or(|mg| mg == m.metageneration) => {}
            _ => return Ok(false),
        }
        let cond = Conditions { generation: Some(generation), metageneration };
        match self.gcs.delete(&name, cond, None).await {
            Ok(()) | Err(GcsError::NotFound) => {}
            Err(GcsError::Precondition) => return Ok(false),
            Err(e) => return Err(store_error(&what, e)),
        }
        let after = self.gcs.meta(&name).await.map_err(|e| store_error(&what, e))?;
        Ok(after.is_none_or(|m| m.generation != generation))
    }
}

/// What a renewal of the lock object moves: its metageneration and its renewal nonce.
fn revision(m: &Meta) -> String {
    format!("{}:{}:{}", m.generation, m.metageneration, m.renewal)
}

fn uuid_nonce() -> String {
    use std::hash::BuildHasher;
    let h = std::collections::hash_map::RandomState::new();
    format!("{:016x}{:016x}", h.hash_one(std::time::SystemTime::now()), h.hash_one(std::process::id()))
}

fn valid_bucket(b: &str) -> bool {
    (3..=222).contains(&b.len())
        && b.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_' | b'.'))
        && b.bytes().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && b.bytes().last().is_some_and(|c| c.is_ascii_alphanumeric())
}

/// A held lock object.
struct GcsLock {
    store: GcsStore,
    info: LockInfo,
    generation: u64,
    metageneration: Mutex<u64>,
}

#[async_trait]
impl StateLock for GcsLock {
    fn info(&self) -> &LockInfo {
        &self.info
    }

    async fn renew(&self) -> Result<(), StoreError> {
        let name = self.store.lock_object();
        let mg = *self.metageneration.lock().unwrap_or_else(|e| e.into_inner());
        let cond = Conditions { generation: Some(self.generation), metageneration: Some(mg) };
        // A fresh nonce each time, so that a renewal is seen even where the metageneration does
        // not move (emulators).
        let nonce = uuid_nonce();
        let meta = json!({"meshform-renewal": nonce, "meshform-renewed": meshform_engine::clock::now_rfc3339()});
        match self.store.gcs.patch_metadata(&name, cond, &meta).await {
            Ok(m) => {
                *self.metageneration.lock().unwrap_or_else(|e| e.into_inner()) = m.metageneration;
                Ok(())
            }
            Err(GcsError::Precondition | GcsError::NotFound) => {
                // A renewal whose reply was lost moved the metageneration: still ours if the
                // generation is; then the next renewal uses what it is now.
                match self.store.gcs.meta(&name).await {
                    Ok(Some(m)) if m.generation == self.generation => {
                        *self.metageneration.lock().unwrap_or_else(|e| e.into_inner()) = m.metageneration;
                        Ok(())
                    }
                    _ => Err(StoreError::conflict(format!("the lock {} was removed or taken over", self.generation))),
                }
            }
            Err(e) => Err(store_error(&self.store.gcs.url_of(&name), e)),
        }
    }

    async fn unlock(&self) -> Result<(), StoreError> {
        self.store.delete_lock(self.generation, None).await.map(|_| ())
    }
}

/// Journal entries as new objects `NAME.journal/SERIAL/SEQ`.
struct GcsSink {
    store: GcsStore,
    serial: u64,
    seq: u64,
    header: Vec<u8>,
}

#[async_trait]
impl JournalSink for GcsSink {
    async fn commit(&mut self, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.seq += 1;
        let name = format!("{}{:020}/{:010}", self.store.journal_prefix(), self.serial, self.seq);
        let mut body = self.header.clone();
        body.extend_from_slice(&bytes);
        write_once(&self.store.gcs, &name, &body).await
    }
}

/// Creates `name` holding `body` if absent. A 412 after a retry may be this very write whose
/// reply was lost: the object is read back, and the same bytes count as written.
async fn write_once(gcs: &Gcs, name: &str, body: &[u8]) -> Result<(), StoreError> {
    let what = gcs.url_of(name);
    match gcs.upload(name, body, "application/x-ndjson", Conditions::absent(), &Value::Null).await {
        Ok(_) => Ok(()),
        Err(GcsError::Precondition) => match gcs.read(name).await {
            Ok(Some((_, b))) if b == body => Ok(()),
            Ok(_) => Err(StoreError::conflict(format!("{what} exists with other content"))),
            Err(e) => Err(store_error(&what, e)),
        },
        Err(e) => Err(store_error(&what, e)),
    }
}

#[async_trait]
impl StateStore for GcsStore {
    fn location(&self) -> String {
        self.gcs.url_of(&self.state_object())
    }

    fn lock_ttl(&self) -> Duration {
        self.ttl
    }

    async fn lock(&self, info: &LockInfo) -> Result<Box<dyn StateLock>, LockError> {
        let name = self.lock_object();
        let body = serde_json::to_vec_pretty(info).map_err(|e| LockError::Failed(e.to_string()))?;
        for _ in 0..4 {
            match self.gcs.upload(&name, &body, "application/json", Conditions::absent(), &Value::Null).await {
                Ok(meta) => return Ok(Box::new(self.held(info, meta))),
                Err(GcsError::Precondition) => {}
                Err(e) => return Err(LockError::Failed(store_error(&self.gcs.url_of(&name), e).message)),
            }
            match self.holder_bytes().await.map_err(|e| LockError::Failed(e.message))? {
                // Our own create, whose reply was lost before a retry.
                Some((_, meta, bytes)) if bytes == body => return Ok(Box::new(self.held(info, meta))),
                Some((h, _, _)) => return Err(LockError::Held { info: Box::new(h), stale: false }),
                // Released between our create and our read: try again.
                None => continue,
            }
        }
        Err(LockError::Failed(format!("{} kept changing while the lock was taken", self.gcs.url_of(&name))))
    }

    async fn get(&self) -> Result<Option<Blob>, StoreError> {
        let name = self.state_object();
        match self.gcs.read(&name).await {
            Ok(r) => Ok(r.map(|(m, bytes)| Blob { bytes, version: m.generation.to_string() })),
            Err(e) => Err(store_error(&self.gcs.url_of(&name), e)),
        }
    }

    async fn put(&self, bytes: &[u8], expected: Option<&str>) -> Result<String, StoreError> {
        let name = self.state_object();
        let what = self.gcs.url_of(&name);
        let expected = match expected.map(str::parse::<u64>) {
            None => 0,
            Some(Ok(g)) => g,
            Some(Err(_)) => return Err(StoreError::other(format!("{what}: not a generation: {expected:?}"))),
        };
        match self.gcs.upload(&name, bytes, "application/json", Conditions::at(expected), &Value::Null).await {
            Ok(m) => Ok(m.generation.to_string()),
            Err(GcsError::Precondition) => match self.gcs.read(&name).await {
                // A retry of this very write, whose first reply was lost.
                Ok(Some((m, b))) if b == bytes => Ok(m.generation.to_string()),
                _ => Err(StoreError::conflict(format!(
                    "{what} changed since this run read it (generation {expected}; written by a run that did not hold the lock?)"
                ))),
            },
            Err(e) => Err(store_error(&what, e)),
        }
    }

    async fn journal(&self, serial: u64, header: &[u8]) -> Result<Box<dyn JournalSink>, StoreError> {
        Ok(Box::new(GcsSink { store: self.clone(), serial, seq: 0, header: header.to_vec() }))
    }

    async fn journal_entries(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        let prefix = self.journal_prefix();
        let what = self.gcs.url_of(&prefix);
        let (mut items, _) = self.gcs.list(&prefix, None, false).await.map_err(|e| store_error(&what, e))?;
        items.sort_by(|a, b| a.name.cmp(&b.name));
        let reads = items.iter().map(|m| self.gcs.download(&m.name, m.generation));
        let mut out = Vec::with_capacity(items.len());
        for r in futures::future::join_all(reads).await {
            match r {
                Ok(b) => out.push(b),
                Err(GcsError::NotFound) => {}
                Err(e) => return Err(store_error(&what, e)),
            }
        }
        Ok(out)
    }

    async fn clear_journal(&self) -> Result<(), StoreError> {
        let prefix = self.journal_prefix();
        let what = self.gcs.url_of(&prefix);
        let (items, _) = self.gcs.list(&prefix, None, false).await.map_err(|e| store_error(&what, e))?;
        let deletes = items.iter().map(|m| self.gcs.delete(&m.name, Conditions::at(m.generation), None));
        for r in futures::future::join_all(deletes).await {
            match r {
                Ok(()) | Err(GcsError::NotFound | GcsError::Precondition) => {}
                Err(e) => return Err(store_error(&what, e)),
            }
        }
        Ok(())
    }

    async fn force_unlock(&self, id: &str) -> Result<LockInfo, StoreError> {
        let what = self.gcs.url_of(&self.lock_object());
        let Ok(generation) = id.parse::<u64>() else {
            return Err(StoreError::other(format!("a lock id of {what} is its generation, a number; not {id:?}")));
        };
        match self.holder().await? {
            Some((h, m)) if m.generation == generation => {
                if self.delete_lock(generation, None).await? {
                    Ok(h)
                } else {
                    Err(StoreError::conflict(format!("the lock {id} of {what} changed while it was removed")))
                }
            }
            Some((h, _)) => Err(StoreError::other(format!("the lock of {what} has id {}, not {id}", h.id))),
            None => Err(StoreError::not_found(format!("{what} is not locked"))),
        }
    }

    async fn lock_holder(&self) -> Result<Option<(LockInfo, String)>, StoreError> {
        Ok(self.holder().await?.map(|(h, m)| (h, revision(&m))))
    }

    async fn break_lock(&self, id: &str, seen: &str) -> Result<bool, StoreError> {
        let Some((info, meta)) = self.holder().await? else { return Ok(false) };
        if info.id != id || revision(&meta) != seen {
            return Ok(false);
        }
        self.delete_lock(meta.generation, Some(meta.metageneration)).await
    }

    async fn history(&self) -> Result<Vec<Revision>, StoreError> {
        let name = self.state_object();
        let what = self.gcs.url_of(&name);
        let (items, _) = self.gcs.list(&name, None, true).await.map_err(|e| store_error(&what, e))?;
        let mut revs: Vec<Revision> = items
            .into_iter()
            .filter(|m| m.name == name)
            .map(|m| Revision {
                version: m.generation.to_string(),
                written: m.updated,
                size: m.size,
                current: !m.deleted,
            })
            .collect();
        revs.sort_by_key(|r| std::cmp::Reverse(r.version.parse::<u64>().unwrap_or(0)));
        Ok(revs)
    }

    async fn get_version(&self, version: &str) -> Result<Vec<u8>, StoreError> {
        let name = self.state_object();
        let what = format!("{}#{version}", self.gcs.url_of(&name));
        let g = version.parse::<u64>().map_err(|_| StoreError::other(format!("{what}: not a generation")))?;
        self.gcs.download(&name, g).await.map_err(|e| store_error(&what, e))
    }

    async fn names(&self) -> Result<Vec<String>, StoreError> {
        let what = self.gcs.url_of(&self.prefix);
        let (items, _) = self.gcs.list(&self.prefix, Some("/"), false).await.map_err(|e| store_error(&what, e))?;
        let mut names: Vec<String> = items
            .iter()
            .filter_map(|m| m.name.strip_prefix(&self.prefix)?.strip_suffix(".state.json").map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }
}

impl GcsStore {
    fn held(&self, info: &LockInfo, meta: Meta) -> GcsLock {
        let mut info = info.clone();
        info.id = meta.generation.to_string();
        GcsLock {
            store: self.clone(),
            info,
            generation: meta.generation,
            metageneration: Mutex::new(meta.metageneration),
        }
    }
}
