//! The conformance suite every [`StateStore`] runs: the contract of [`super::store`] and the
//! rules of [`super::handle`] over it. A store's tests call [`run_all`] with a function that
//! makes a fresh, empty store for a state name (each case uses its own name); it panics naming
//! the case and the failed expectation.

use std::sync::Arc;
use std::time::Duration;

use super::codec::Codec;
use super::handle::{Backend, OpenError};
use super::lock::{LockError, LockInfo};
use super::store::{StateStore, StoreErrorKind};
use super::{Change, ObjectRecord};
use crate::value::{Map, Value};

/// Makes a fresh store for a state name.
pub type MakeStore<'a> = &'a (dyn Fn(&str) -> Arc<dyn StateStore> + Sync);

/// Runs every case. `expiring`: the store's locks have a TTL (short: the expiry cases wait for
/// it), so the expiry cases run too.
pub async fn run_all(make: MakeStore<'_>, expiring: bool) {
    lock_contention_names_the_holder(make).await;
    unlock_leaves_a_lock_someone_else_took(make).await;
    force_unlock_needs_the_id(make).await;
    conditional_writes_catch_a_writer_without_the_lock(make).await;
    serial_and_lineage_rules(make).await;
    journal_replays_after_a_crash(make).await;
    reads_do_not_wait_for_the_lock(make).await;
    a_large_state_round_trips(make).await;
    if expiring {
        an_unrenewed_lock_expires_a_renewed_one_does_not(make).await;
    }
}

fn record(name: &str, payload: usize) -> ObjectRecord {
    let attrs = Map::from([
        ("id".into(), Value::str(name)),
        ("blob".into(), Value::str("x".repeat(payload))),
        ("secret".into(), Value::str("p4ss")),
    ]);
    let addr = format!("meshform_data.{name}").parse().expect("address");
    ObjectRecord::new(addr, "meshform_data", attrs, &["secret".to_string()].into(), vec![])
}

fn backend(store: Arc<dyn StateStore>) -> Backend {
    Backend::new(store, Codec::plain())
}

fn held(r: Result<impl Sized, OpenError>, case: &str) -> Box<LockInfo> {
    match r {
        Err(OpenError::Lock(LockError::Held { info, .. })) => info,
        Err(e) => panic!("{case}: expected the lock to be held, got: {e}"),
        Ok(_) => panic!("{case}: expected the lock to be held, but it was taken"),
    }
}

async fn lock_contention_names_the_holder(make: MakeStore<'_>) {
    let case = "lock contention";
    let b = backend(make("contention"));
    let (a, _) = b.open("apply", Duration::ZERO).await.unwrap_or_else(|e| panic!("{case}: {e}"));
    let holder = held(b.open("plan", Duration::ZERO).await, case);
    assert_eq!(holder.id, a.lock_info().id, "{case}: the error names the holder's lock id");
    assert_eq!(holder.operation, "apply", "{case}");
    assert!(!holder.who.is_empty(), "{case}: who holds it");
    a.release().await.unwrap_or_else(|e| panic!("{case}: release: {e}"));
    let (again, _) = b.open("plan", Duration::ZERO).await.unwrap_or_else(|e| panic!("{case}: after release: {e}"));
    again.release().await.unwrap_or_else(|e| panic!("{case}: {e}"));
}

async fn unlock_leaves_a_lock_someone_else_took(make: MakeStore<'_>) {
    let case = "unlock is verified";
    let store = make("verified");
    let b = backend(store.clone());
    let (a, _) = b.open("apply", Duration::ZERO).await.unwrap_or_else(|e| panic!("{case}: {e}"));
    let a_id = a.lock_info().id.clone();
    store.force_unlock(&a_id).await.unwrap_or_else(|e| panic!("{case}: force-unlock: {e}"));
    let (c, _) = b.open("apply", Duration::ZERO).await.unwrap_or_else(|e| panic!("{case}: after force-unlock: {e}"));
    // The first run ends and releases "its" lock: the new holder's lock must stay.
    let _ = a.release().await;
    let holder = held(b.open("plan", Duration::ZERO).await, case);
    assert_eq!(holder.id, c.lock_info().id, "{case}: the new holder keeps the lock");
    c.release().await.unwrap_or_else(|e| panic!("{case}: {e}"));
}

async fn force_unlock_needs_the_id(make: MakeStore<'_>) {
    let case = "force-unlock";
    let store = make("force");
    let b = backend(store.clone());
    let (a, _) = b.open("apply", Duration::ZERO).await.unwrap_or_else(|e| panic!("{case}: {e}"));
    assert!(store.force_unlock("not-the-id").await.is_err(), "{case}: a wrong id is refused");
    held(b.open("plan", Duration::ZERO).await, case);
    let info = store.force_unlock(&a.lock_info().id).await.unwrap_or_else(|e| panic!("{case}: {e}"));
    assert_eq!(info.operation, "apply", "{case}: says whose lock it removed");
    let (c, _) = b.open("plan", Duration::ZERO).await.unwrap_or_else(|e| panic!("{case}: after: {e}"));
    c.release().await.unwrap_or_else(|e| panic!("{case}: {e}"));
    drop(a);
}

async fn conditional_writes_catch_a_writer_without_the_lock(make: MakeStore<'_>) {
    let case = "conditional write";
    let store = make("cas");
    assert!(store.get().await.unwrap_or_else(|e| panic!("{case}: {e}")).is_none(), "{case}: empty at first");
    let v1 = store.put(b"one", None).await.unwrap_or_else(|e| panic!("{case}: first write: {e}"));
    let e = store.put(b"two", None).await.expect_err("a create-only write over a state");
    assert_eq!(e.kind, StoreErrorKind::Conflict, "{case}: {e}");
    let v2 = store.put(b"two", Some(&v1)).await.unwrap_or_else(|e| panic!("{case}: write at v1: {e}"));
    assert_ne!(v1, v2, "{case}: a write makes a new version");
    let e = store.put(b"three", Some(&v1)).await.expect_err("a write at a stale version");
    assert_eq!(e.kind, StoreErrorKind::Conflict, "{case}: {e}");
    let got = store.get().await.unwrap_or_else(|e| panic!("{case}: {e}")).expect("state");
    assert_eq!((got.bytes.as_slice(), got.version.as_str()), (b"two".as_slice(), v2.as_str()), "{case}");

    // Through the rules: a run whose read version is overtaken is refused, nothing overwritten.
    let b = backend(make("cas-run"));
    let (mut run, mut state) = b.open("apply", Duration::ZERO).await.unwrap_or_else(|e| panic!("{case}: {e}"));
    run.write(&mut state).await.unwrap_or_else(|e| panic!("{case}: {e}"));
    let current = b.store().get().await.ok().flatten().expect("state");
    let mut other = state.clone();
    other.serial += 1;
    other.objects.insert(record("by-hand", 8).address.clone(), record("by-hand", 8));
    let other_bytes = Codec::plain().encode_state(&other).expect("encode");
    b.store().put(&other_bytes, Some(&current.version)).await.unwrap_or_else(|e| panic!("{case}: {e}"));
    let err = run.write(&mut state).await.expect_err("the overtaken write is refused");
    assert!(err.contains("nothing was overwritten"), "{case}: {err}");
    let _ = std::fs::remove_file(format!("meshform-conflict-{}.state.json", state.serial + 1));
    assert_eq!(b.store().get().await.ok().flatten().map(|b| b.bytes), Some(other_bytes), "{case}: kept");
    run.release().await.unwrap_or_else(|e| panic!("{case}: {e}"));
}

async fn serial_and_lineage_rules(make: MakeStore<'_>) {
    let case = "serial and lineage";
    let b = backend(make("serial"));
    let (mut run, mut state) = b.open("apply", Duration::ZERO).await.unwrap_or_else(|e| panic!("{case}: {e}"));
    assert_eq!((state.serial, state.lineage.as_str()), (0, ""), "{case}: a new state");
    run.write(&mut state).await.unwrap_or_else(|e| panic!("{case}: {e}"));
    let lineage = state.lineage.clone();
    assert!(!lineage.is_empty() && state.serial == 1, "{case}: the first write assigns lineage, serial 1");
    state.objects.insert(record("a", 8).address.clone(), record("a", 8));
    run.write(&mut state).await.unwrap_or_else(|e| panic!("{case}: {e}"));
    run.release().await.unwrap_or_else(|e| panic!("{case}: {e}"));
    let snap = b.read().await.unwrap_or_else(|e| panic!("{case}: {e}"));
    assert_eq!((snap.state.serial, snap.state.lineage.as_str()), (2, lineage.as_str()), "{case}");
    let stored = b.store().get().await.ok().flatten().expect("state");
    assert!(!String::from_utf8_lossy(&stored.bytes).contains("p4ss"), "{case}: a secret in plaintext");
}

async fn journal_replays_after_a_crash(make: MakeStore<'_>) {
    let case = "journal replay";
    let b = backend(make("journal"));
    let (mut run, mut state) = b.open("apply", Duration::ZERO).await.unwrap_or_else(|e| panic!("{case}: {e}"));
    run.write(&mut state).await.unwrap_or_else(|e| panic!("{case}: {e}"));
    let j = run.journal(&state).await.unwrap_or_else(|e| panic!("{case}: {e}"));
    for c in [
        Change::Put { record: record("a", 8) },
        Change::Put { record: record("b", 8) },
        Change::Remove { address: "meshform_data.a".parse().expect("address") },
    ] {
        j.append(c).await.unwrap_or_else(|e| panic!("{case}: append: {e}"));
    }
    // The crash: the journal is durable, the state document was never rewritten, the lock is
    // left behind (a dead runner's) and removed by hand.
    drop(j);
    let lock_id = run.lock_info().id.clone();
    std::mem::forget(run);
    b.store().force_unlock(&lock_id).await.unwrap_or_else(|e| panic!("{case}: {e}"));
    // A reader sees the journaled changes without recording them.
    let snap = b.read().await.unwrap_or_else(|e| panic!("{case}: {e}"));
    assert_eq!((snap.journaled, snap.state.serial), (3, 1), "{case}: the reader's view");
    let (next, replayed) = b.open("apply", Duration::ZERO).await.unwrap_or_else(|e| panic!("{case}: {e}"));
    assert_eq!(next.recovered, 3, "{case}: every journaled change recovered");
    assert_eq!(replayed.serial, 2, "{case}: recorded as the next serial");
    let addrs: Vec<String> = replayed.objects.keys().map(ToString::to_string).collect();
    assert_eq!(addrs, ["meshform_data.b"], "{case}");
    let left = b.store().journal_entries().await.unwrap_or_else(|e| panic!("{case}: {e}"));
    assert!(left.is_empty(), "{case}: the journal is removed once recorded");
    next.release().await.unwrap_or_else(|e| panic!("{case}: {e}"));
}

async fn reads_do_not_wait_for_the_lock(make: MakeStore<'_>) {
    let case = "reads without the lock";
    let b = backend(make("reads"));
    let (mut run, mut state) = b.open("apply", Duration::ZERO).await.unwrap_or_else(|e| panic!("{case}: {e}"));
    run.write(&mut state).await.unwrap_or_else(|e| panic!("{case}: {e}"));
    let snap = b.read().await.unwrap_or_else(|e| panic!("{case}: a read while locked: {e}"));
    assert_eq!(snap.state.serial, 1, "{case}");
    assert_eq!(snap.version.as_deref(), run.version(), "{case}: the version read");
    run.release().await.unwrap_or_else(|e| panic!("{case}: {e}"));
}

async fn a_large_state_round_trips(make: MakeStore<'_>) {
    let case = "a state over 3 MiB";
    let b = backend(make("large"));
    let (mut run, mut state) = b.open("apply", Duration::ZERO).await.unwrap_or_else(|e| panic!("{case}: {e}"));
    for i in 0..40 {
        let r = record(&format!("o{i}"), 100 * 1024);
        state.objects.insert(r.address.clone(), r);
    }
    run.write(&mut state).await.unwrap_or_else(|e| panic!("{case}: {e}"));
    run.release().await.unwrap_or_else(|e| panic!("{case}: {e}"));
    let stored = b.store().get().await.ok().flatten().expect("state");
    assert!(stored.bytes.len() > 3 << 20, "{case}: {} bytes", stored.bytes.len());
    let snap = b.read().await.unwrap_or_else(|e| panic!("{case}: {e}"));
    assert_eq!(snap.state.objects, state.objects, "{case}");
}

async fn an_unrenewed_lock_expires_a_renewed_one_does_not(make: MakeStore<'_>) {
    let case = "lock expiry";
    let store = make("expiry");
    let ttl = store.lock_ttl();
    assert!(!ttl.is_zero() && ttl <= Duration::from_secs(10), "{case}: give the test store a short TTL");
    let b = backend(store.clone());
    // A live run renews its lock: a waiter for twice the TTL does not get it.
    let (live, _) = b.open("apply", Duration::ZERO).await.unwrap_or_else(|e| panic!("{case}: {e}"));
    let holder = held(b.open("plan", ttl * 2).await, case);
    assert_eq!(holder.id, live.lock_info().id, "{case}: a renewed lock is never broken");
    live.release().await.unwrap_or_else(|e| panic!("{case}: {e}"));
    // A dead run's lock (taken, never renewed) is broken by a waiter once unrenewed for its TTL.
    let dead = store.lock(&LockInfo::for_this_process("apply", ttl)).await.unwrap_or_else(|e| panic!("{case}: {e}"));
    let dead_id = dead.info().id.clone();
    std::mem::forget(dead);
    held(b.open("plan", Duration::ZERO).await, case);
    let (next, _) = b.open("plan", ttl * 3).await.unwrap_or_else(|e| panic!("{case}: the expired lock: {e}"));
    assert_eq!(next.broke.as_ref().map(|i| i.id.clone()), Some(dead_id), "{case}: says which lock it broke");
    next.release().await.unwrap_or_else(|e| panic!("{case}: {e}"));
}
