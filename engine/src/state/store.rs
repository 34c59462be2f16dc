//! The state-store seam: what a place that keeps state must do. A store moves bytes; it does not
//! know the state's format, its encryption or its rules (lineage, serial, journal replay): those
//! are the engine's, in [`super::handle`], the same for every store. Implementations live with
//! their families: the local file here ([`super::local::LocalStore`]), a Cloud Storage bucket in
//! the Google Cloud provider, a Kubernetes namespace in the Kubernetes provider.
//!
//! The contract, checked by the conformance suite every store runs (`conformance` in
//! [`crate::testing`]):
//! - [`StateStore::lock`] creates the lock only if there is none (an atomic create-if-absent),
//!   and fails with [`LockError::Held`] naming the holder otherwise.
//! - [`StateStore::get`] returns one consistent version and its [`Blob::version`];
//!   [`StateStore::put`] writes only if the stored version is still the one given (`None`: only
//!   if there is no state), else [`StoreErrorKind::Conflict`]: a writer that bypassed the lock is
//!   caught, never overwritten.
//! - A journal entry is durable in the store when [`JournalSink::commit`] returns; entries are
//!   never rewritten, and [`StateStore::journal_entries`] returns them in commit order.

use std::time::Duration;

use async_trait::async_trait;

use super::lock::{LockError, LockInfo};

/// Why a store operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreError {
    /// What kind of failure.
    pub kind: StoreErrorKind,
    /// What happened, for the user (names the store's object, never a secret).
    pub message: String,
}

/// The kinds of [`StoreError`] the engine acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// A conditional write lost: the stored version is not the one expected.
    Conflict,
    /// What was asked for does not exist.
    NotFound,
    /// Anything else (the store is unreachable, refused, or answered nonsense).
    Other,
}

impl StoreError {
    /// A conflict (a conditional write lost).
    pub fn conflict(message: impl Into<String>) -> StoreError {
        StoreError { kind: StoreErrorKind::Conflict, message: message.into() }
    }

    /// Not found.
    pub fn not_found(message: impl Into<String>) -> StoreError {
        StoreError { kind: StoreErrorKind::NotFound, message: message.into() }
    }

    /// Any other failure.
    pub fn other(message: impl Into<String>) -> StoreError {
        StoreError { kind: StoreErrorKind::Other, message: message.into() }
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Stored bytes and the version they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// The store's version of them (a GCS generation, a resourceVersion, a digest): opaque.
    pub version: String,
}

/// One earlier version of a state, as [`StateStore::history`] lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revision {
    /// The version, as [`StateStore::get_version`] takes it.
    pub version: String,
    /// When it was written (RFC 3339), when the store knows.
    pub written: String,
    /// Its size in bytes as stored.
    pub size: u64,
    /// Whether it is the current version.
    pub current: bool,
}

/// A held lock.
#[async_trait]
pub trait StateLock: Send + Sync {
    /// Who holds it (this run) and the id `force-unlock` takes.
    fn info(&self) -> &LockInfo;
    /// The provably stale lock this one replaced, if any (the local store breaks such locks).
    fn broke(&self) -> Option<&LockInfo> {
        None
    }
    /// Tells the store this run still lives (a GCS metadata update, a Lease's renewTime). A lock
    /// that is not renewed for its TTL may be broken by a waiting run.
    async fn renew(&self) -> Result<(), StoreError>;
    /// Releases it, if it is still ours (a `force-unlock` may have removed it): verified, not
    /// assumed.
    async fn unlock(&self) -> Result<(), StoreError>;
}

/// Where a journal's entries go.
#[async_trait]
pub trait JournalSink: Send {
    /// Makes `bytes` (one batch of entry lines) durable in the store, after every earlier batch.
    async fn commit(&mut self, bytes: Vec<u8>) -> Result<(), StoreError>;
}

/// A place that keeps one state, its lock and its journal.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Where the state is, for messages (`gs://bucket/prefix/name.state.json`, a path).
    fn location(&self) -> String;

    /// The TTL a lock of this store is given (renewed at a third of it); zero: the lock never
    /// expires (the local store, whose stale locks are found by their process).
    fn lock_ttl(&self) -> Duration {
        Duration::ZERO
    }

    /// Takes the lock, holding `info` (its `id` may be replaced by the store's own: a GCS lock's
    /// id is its generation). Fails at once when it is held.
    async fn lock(&self, info: &LockInfo) -> Result<Box<dyn StateLock>, LockError>;

    /// The stored state's bytes and version; `None` when there is no state yet.
    async fn get(&self) -> Result<Option<Blob>, StoreError>;

    /// Writes the state's bytes if the stored version is still `expected` (`None`: only if there
    /// is none); returns the new version.
    async fn put(&self, bytes: &[u8], expected: Option<&str>) -> Result<String, StoreError>;

    /// Starts a journal for the state at `serial`; `header` is the line every entry starts with.
    async fn journal(&self, serial: u64, header: &[u8]) -> Result<Box<dyn JournalSink>, StoreError>;

    /// Every journal entry left behind, in commit order (each begins with its header line).
    async fn journal_entries(&self) -> Result<Vec<Vec<u8>>, StoreError>;

    /// Removes the journal once its changes are in the state.
    async fn clear_journal(&self) -> Result<(), StoreError>;

    /// Removes the lock whose id is `id`, whoever holds it; returns who held it.
    async fn force_unlock(&self, id: &str) -> Result<LockInfo, StoreError>;

    /// The lock's holder and its revision (what a renewal moves: a generation and
    /// metageneration, a resourceVersion), when it is held.
    async fn lock_holder(&self) -> Result<Option<(LockInfo, String)>, StoreError> {
        Ok(None)
    }

    /// Removes the lock if it is still held by `id` at `revision` (it was not renewed since);
    /// whether it did. Stores whose locks do not expire never break one this way.
    async fn break_lock(&self, id: &str, revision: &str) -> Result<bool, StoreError> {
        let _ = (id, revision);
        Ok(false)
    }

    /// Earlier versions of the state, newest first (empty when the store keeps none).
    async fn history(&self) -> Result<Vec<Revision>, StoreError> {
        Ok(Vec::new())
    }

    /// The bytes of one version [`StateStore::history`] listed.
    async fn get_version(&self, version: &str) -> Result<Vec<u8>, StoreError> {
        Err(StoreError::not_found(format!("{} keeps no earlier versions (asked for {version})", self.location())))
    }

    /// The names of the states kept beside this one (workspaces), sorted.
    async fn names(&self) -> Result<Vec<String>, StoreError>;
}
