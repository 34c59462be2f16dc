//! The state's rules, the same in every store: reading one consistent version without the lock
//! ([`Backend::read`], for plan and drift), or taking the lock (waiting for it up to a timeout,
//! breaking an expired one only when it was seen unrenewed for its whole TTL), renewing it while
//! the run lives, replaying an interrupted run's journal, and writing each new serial
//! conditionally on the version read ([`Locked`]).
//!
//! A lock is released by [`Locked::release`]; one dropped unreleased (an early return) is
//! released in the background and [`settle`] waits for that, and [`release_all`] releases every
//! lock this process holds when a signal ends it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

use super::State;
use super::codec::Codec;
use super::journal::{self, Journal};
use super::lock::{LockError, LockInfo};
use super::store::{StateLock, StateStore, StoreErrorKind};

/// A state's store and how its bytes are encoded.
#[derive(Clone)]
pub struct Backend {
    store: Arc<dyn StateStore>,
    codec: Codec,
}

/// A state read without the lock.
#[derive(Debug)]
pub struct Snapshot {
    /// The state, with an interrupted run's journaled changes folded in (in memory).
    pub state: State,
    /// The version read (`None`: there is no state yet).
    pub version: Option<String>,
    /// How many journaled changes of an interrupted run it includes.
    pub journaled: usize,
}

/// Why a state could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// The lock is held (or broken).
    Lock(LockError),
    /// Anything else.
    Other(String),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Lock(e) => e.fmt(f),
            OpenError::Other(m) => f.write_str(m),
        }
    }
}

/// Locks this process holds, so that a signal handler can release them before exiting.
static HELD: Mutex<Vec<Arc<dyn StateLock>>> = Mutex::new(Vec::new());
/// Releases of locks dropped without [`Locked::release`], still under way.
static PENDING: Mutex<Vec<JoinHandle<()>>> = Mutex::new(Vec::new());

fn forget_held(lock: &Arc<dyn StateLock>) {
    HELD.lock().unwrap_or_else(|e| e.into_inner()).retain(|l| !Arc::ptr_eq(l, lock));
}

/// Releases every lock this process holds (for a process about to exit on a signal), each
/// within `timeout`.
pub async fn release_all(timeout: Duration) {
    let held: Vec<_> = HELD.lock().unwrap_or_else(|e| e.into_inner()).drain(..).collect();
    for l in held {
        let _ = tokio::time::timeout(timeout, l.unlock()).await;
    }
}

/// Waits for the releases of locks dropped without [`Locked::release`].
pub async fn settle() {
    let pending: Vec<_> = PENDING.lock().unwrap_or_else(|e| e.into_inner()).drain(..).collect();
    for p in pending {
        let _ = p.await;
    }
}

impl Backend {
    /// A backend over `store`, encoding with `codec`.
    pub fn new(store: Arc<dyn StateStore>, codec: Codec) -> Backend {
        Backend { store, codec }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn StateStore> {
        &self.store
    }

    /// The codec.
    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    /// Where the state is, for messages.
    pub fn location(&self) -> String {
        self.store.location()
    }

    /// The stored state and its version, without the journal.
    pub async fn read_stored(&self) -> Result<(State, Option<String>), String> {
        match self.store.get().await.map_err(|e| e.message)? {
            Some(b) => Ok((self.codec.decode_state(&b.bytes, &self.location())?, Some(b.version))),
            None => Ok((State::new(), None)),
        }
    }

    /// One consistent version of the state, without the lock, with an interrupted run's journal
    /// folded in (in memory only: the next run that takes the lock records it).
    pub async fn read(&self) -> Result<Snapshot, String> {
        let (mut state, version) = self.read_stored().await?;
        let entries = self.store.journal_entries().await.map_err(|e| e.message)?;
        let r = journal::recover(&entries, &state.lineage, state.serial, &self.codec)?;
        let journaled = r.changes.len();
        for c in r.changes {
            c.apply_to(&mut state.objects);
        }
        Ok(Snapshot { state, version, journaled })
    }

    /// Takes the lock for `operation` (waiting up to `wait` while it is held), then reads the
    /// state with an interrupted run's journal replayed and recorded.
    pub async fn open(&self, operation: &str, wait: Duration) -> Result<(Locked, State), OpenError> {
        let info = LockInfo::for_this_process(operation, self.store.lock_ttl());
        let (lock, expired) = acquire(self.store.as_ref(), &info, wait).await.map_err(OpenError::Lock)?;
        let lock: Arc<dyn StateLock> = Arc::from(lock);
        HELD.lock().unwrap_or_else(|e| e.into_inner()).push(lock.clone());
        let lost = Arc::new(Mutex::new(None));
        let renewer = renew_while_held(lock.clone(), self.store.lock_ttl(), lost.clone());
        let mut locked = Locked {
            backend: self.clone(),
            broke: lock.broke().cloned().or(expired),
            lock,
            version: None,
            recovered: 0,
            renewer,
            lost,
            released: false,
        };
        let mut state = match locked.load().await {
            Ok(s) => s,
            Err(m) => {
                let _ = locked.release().await;
                return Err(OpenError::Other(m));
            }
        };
        if locked.recovered > 0
            && let Err(m) = locked.write(&mut state).await
        {
            let _ = locked.release().await;
            return Err(OpenError::Other(m));
        }
        Ok((locked, state))
    }
}

/// Takes the lock, waiting up to `wait` with backoff while it is held. A held lock with a TTL is
/// broken only when this run saw it at one revision (not renewed) for longer than its TTL:
/// decided by this run's own clock, so clock skew between machines cannot break a live lock.
/// Returns the lock and the expired lock it broke, if any.
async fn acquire(
    store: &dyn StateStore,
    info: &LockInfo,
    wait: Duration,
) -> Result<(Box<dyn StateLock>, Option<LockInfo>), LockError> {
    let start = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(250);
    let mut seen: Option<(String, String, tokio::time::Instant)> = None;
    let mut broke = None;
    loop {
        let err = match store.lock(info).await {
            Ok(l) => return Ok((l, broke)),
            Err(LockError::Held { info: h, .. })
                if broke.is_none() && !store.lock_ttl().is_zero() && super::lock::provably_stale_here(&h) =>
            {
                // Taken on this machine by a process that is gone: break it at once, as the
                // local store does.
                if let Ok(Some((now, revision))) = store.lock_holder().await
                    && now.id == h.id
                    && store.break_lock(&now.id, &revision).await.unwrap_or(false)
                {
                    broke = Some(now);
                    continue;
                }
                LockError::Held { info: h, stale: true }
            }
            Err(e @ LockError::Held { .. }) if start.elapsed() < wait => e,
            Err(e) => return Err(e),
        };
        if start.elapsed() >= wait {
            return Err(err);
        }
        if let Ok(Some((holder, revision))) = store.lock_holder().await {
            let unchanged = seen.as_ref().filter(|(id, rev, _)| *id == holder.id && *rev == revision);
            match unchanged {
                Some((_, _, since))
                    if holder.ttl_seconds > 0 && since.elapsed() > Duration::from_secs(holder.ttl_seconds) =>
                {
                    if store.break_lock(&holder.id, &revision).await.unwrap_or(false) {
                        broke = Some(holder);
                        seen = None;
                        continue;
                    }
                }
                Some(_) => {}
                None => seen = Some((holder.id.clone(), revision, tokio::time::Instant::now())),
            }
        }
        let left = wait.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(err);
        }
        tokio::time::sleep(delay.min(left)).await;
        delay = (delay * 2).min(Duration::from_secs(8));
    }
}

/// Renews `lock` every third of `ttl` while it is held (none when the lock does not expire). A
/// renewal that keeps failing for a whole TTL marks the lock lost.
fn renew_while_held(
    lock: Arc<dyn StateLock>,
    ttl: Duration,
    lost: Arc<Mutex<Option<String>>>,
) -> Option<JoinHandle<()>> {
    if ttl.is_zero() {
        return None;
    }
    let every = ttl / 3;
    Some(tokio::spawn(async move {
        let mut failing_since: Option<tokio::time::Instant> = None;
        loop {
            tokio::time::sleep(if failing_since.is_some() { every / 4 } else { every }).await;
            let renewed = tokio::time::timeout(every, lock.renew()).await;
            match renewed.unwrap_or_else(|_| Err(super::store::StoreError::other("the renewal timed out"))) {
                Ok(()) => failing_since = None,
                Err(e) => {
                    let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
                    if since.elapsed() + every >= ttl {
                        *lost.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.message);
                        return;
                    }
                }
            }
        }
    }))
}

/// A state opened with its lock held.
pub struct Locked {
    backend: Backend,
    lock: Arc<dyn StateLock>,
    version: Option<String>,
    /// How many journaled operations of an interrupted run were recovered into the state.
    pub recovered: usize,
    /// The stale or expired lock this run broke to take the lock, if any.
    pub broke: Option<LockInfo>,
    renewer: Option<JoinHandle<()>>,
    lost: Arc<Mutex<Option<String>>>,
    released: bool,
}

impl Locked {
    /// The lock's record (its id is what `force-unlock` takes).
    pub fn lock_info(&self) -> &LockInfo {
        self.lock.info()
    }

    /// The version last read or written.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// The backend.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Why the lock was lost (its renewals failed for a whole TTL), if it was.
    pub fn lost(&self) -> Option<String> {
        self.lost.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn load(&mut self) -> Result<State, String> {
        let (mut state, version) = self.backend.read_stored().await?;
        self.version = version;
        let store = &self.backend.store;
        let entries = store.journal_entries().await.map_err(|e| e.message)?;
        let r = journal::recover(&entries, &state.lineage, state.serial, &self.backend.codec)?;
        self.recovered = r.changes.len();
        for c in r.changes {
            c.apply_to(&mut state.objects);
        }
        if !entries.is_empty() && self.recovered == 0 {
            // Entries of an earlier serial: already in the state.
            store.clear_journal().await.map_err(|e| e.message)?;
        }
        Ok(state)
    }

    /// Writes `state` as the next serial (assigning its lineage on the first write), only if the
    /// stored version is still the one this run read or wrote; then removes the journal it
    /// supersedes.
    pub async fn write(&mut self, state: &mut State) -> Result<(), String> {
        if state.lineage.is_empty() {
            state.lineage = uuid::Uuid::new_v4().to_string();
        }
        state.serial += 1;
        state.meshform_version = env!("CARGO_PKG_VERSION").to_string();
        let bytes = self.backend.codec.encode_state(state)?;
        let store = &self.backend.store;
        if !store.lock_ttl().is_zero() {
            // An expiring lock may have been broken by a run that saw it unrenewed: write only
            // while it is still ours.
            let ours = self.lock.info().id.clone();
            match store.lock_holder().await {
                Ok(Some((h, _))) if h.id == ours => {}
                Ok(other) => {
                    state.serial -= 1;
                    let who = other.map_or("nobody".to_string(), |(h, _)| format!("{} (lock {})", h.who, h.id));
                    return Err(format!(
                        "this run's lock {ours} on {} was lost (now held by {who}); nothing was written. The finished operations are in the journal: run the command again",
                        store.location()
                    ));
                }
                Err(e) => {
                    state.serial -= 1;
                    return Err(e.message);
                }
            }
        }
        match store.put(&bytes, self.version.as_deref()).await {
            Ok(v) => self.version = Some(v),
            Err(e) if e.kind == StoreErrorKind::Conflict => {
                // Someone wrote without the lock. Keep what this run knows, for a person to
                // compare and push; overwrite nothing.
                let rescue = std::path::PathBuf::from(format!("meshform-conflict-{}.state.json", state.serial));
                let kept = match super::local::atomic_write(&rescue, &bytes) {
                    Ok(()) => format!("this run's state (serial {}) is saved as {}", state.serial, rescue.display()),
                    Err(err) => format!("this run's state could not be saved locally either: {err}"),
                };
                state.serial -= 1;
                return Err(format!(
                    "{}: nothing was overwritten; {kept}. Compare it with `meshform state pull`, then `meshform state push` the right one",
                    e.message
                ));
            }
            Err(e) => {
                state.serial -= 1;
                return Err(e.message);
            }
        }
        store.clear_journal().await.map_err(|e| e.message)
    }

    /// Writes `state` as it is (its lineage and serial kept: `state push`, `state migrate`), only
    /// if the stored version is still the one this run read.
    pub async fn write_exact(&mut self, state: &mut State) -> Result<(), String> {
        if state.serial == 0 {
            return Err("a state to write needs a serial above 0".into());
        }
        state.serial -= 1;
        let lineage = state.lineage.clone();
        self.write(state).await?;
        if !lineage.is_empty() && state.lineage != lineage {
            return Err("internal: the lineage changed while writing".into());
        }
        Ok(())
    }

    /// Starts the journal of an apply against `state`.
    pub async fn journal(&self, state: &State) -> Result<Journal, String> {
        let header = journal::header(&state.lineage, state.serial);
        let sink = self.backend.store.journal(state.serial, &header).await.map_err(|e| e.message)?;
        Ok(Journal::start(sink, self.backend.codec.clone()))
    }

    /// Releases the lock (verified by the store: a lock someone else took over is left alone).
    pub async fn release(mut self) -> Result<(), String> {
        self.released = true;
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        forget_held(&self.lock);
        self.lock.unlock().await.map_err(|e| e.message)
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        forget_held(&self.lock);
        let lock = self.lock.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let task = rt.spawn(async move {
                let _ = lock.unlock().await;
            });
            PENDING.lock().unwrap_or_else(|e| e.into_inner()).push(task);
        }
    }
}
