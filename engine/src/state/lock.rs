//! The state lock: a file created exclusively next to the state, naming its holder, held for a
//! whole command. A second run fails at once naming the holder. A lock is *provably stale* when
//! it was taken on this host and its process is gone: no process has its pid, or the process with
//! that pid started at another time (the pid was reused). Such a lock is broken automatically
//! (under a short-lived breaker file, so two runs never both break it); a lock from another host
//! is never broken without `force-unlock`. An empty or garbled lock file is a broken lock,
//! reported with the exact `force-unlock` command that removes it.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Who holds a lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Id to give `force-unlock`.
    pub id: String,
    /// The command holding it (`apply`, `plan`, ...).
    pub operation: String,
    /// `user@host`.
    pub who: String,
    /// Holder's process id.
    pub pid: u32,
    /// Holder's host name.
    pub host: String,
    /// When it was taken, RFC 3339 UTC.
    pub created: String,
    /// When the holder process started (clock ticks since boot, from /proc; 0 when unknown), so
    /// that a reused pid is not mistaken for the holder.
    #[serde(default)]
    pub pid_start: u64,
    /// Which boot of which pid namespace the pid belongs to (`/proc/sys/kernel/random/boot_id`
    /// and the `/proc/self/ns/pid` link): a container with the host's name but its own pids is
    /// not "this host" for staleness. Empty when unknown (then never taken over by itself).
    #[serde(default)]
    pub pid_space: String,
    /// Seconds the lock lives without a renewal (0: it does not expire; see
    /// [`super::store::StateStore::lock_ttl`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ttl_seconds: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl LockInfo {
    /// A lock whose record cannot be read (a broken lock file, a foreign Lease): what is known
    /// of it, no process details.
    pub fn unrecorded(operation: &str, who: &str, created: &str) -> LockInfo {
        LockInfo {
            id: String::new(),
            operation: operation.into(),
            who: who.into(),
            pid: 0,
            host: String::new(),
            created: created.into(),
            pid_start: 0,
            pid_space: String::new(),
            ttl_seconds: 0,
        }
    }

    /// The lock record of this process for `operation`, with a fresh id.
    pub fn for_this_process(operation: &str, ttl: std::time::Duration) -> LockInfo {
        let host = host();
        let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
        LockInfo {
            id: uuid::Uuid::new_v4().to_string(),
            operation: operation.into(),
            who: format!("{user}@{host}"),
            pid: std::process::id(),
            host,
            created: crate::clock::now_rfc3339(),
            pid_start: start_time(std::process::id()).unwrap_or(0),
            pid_space: pid_space(),
            ttl_seconds: ttl.as_secs(),
        }
    }
}

/// A held lock; released when dropped (or by [`release_held`] when a signal ends the process).
#[derive(Debug)]
pub struct LockGuard {
    path: PathBuf,
    /// The lock's details.
    pub info: LockInfo,
    /// The provably stale lock this one replaced, if any.
    pub broke: Option<LockInfo>,
}

/// Locks this process holds, so that a signal handler can release them before exiting.
static HELD: std::sync::Mutex<Vec<(PathBuf, String)>> = std::sync::Mutex::new(Vec::new());

fn remove_own(path: &Path, id: &str) {
    // Remove only our own lock (a force-unlock may have replaced it).
    if read(path).is_ok_and(|i| i.id == id) {
        let _ = fs::remove_file(path);
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        remove_own(&self.path, &self.info.id);
        HELD.lock().unwrap_or_else(|e| e.into_inner()).retain(|(_, id)| *id != self.info.id);
    }
}

/// Releases every lock this process holds (for a process about to exit on a signal).
pub fn release_held() {
    for (path, id) in HELD.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
        remove_own(&path, &id);
    }
}

/// Why a lock could not be taken.
#[derive(Debug)]
pub enum LockError {
    /// Someone holds it.
    Held {
        /// The holder.
        info: Box<LockInfo>,
        /// The holder is gone from this host.
        stale: bool,
    },
    /// The lock file is empty or garbled (a crash while it was written, or an edit).
    Broken {
        /// The id `force-unlock` takes to remove exactly this file.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The store failed (the file system, the network).
    Failed(String),
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Held { info, stale } => {
                write!(
                    f,
                    "state is locked by {} (pid {}, operation `{}`, since {}, lock id {})",
                    info.who, info.pid, info.operation, info.created, info.id
                )?;
                if *stale {
                    write!(f, "; that process is no longer running on this host, so the lock is stale")?;
                }
                Ok(())
            }
            LockError::Broken { reason, .. } => write!(f, "the state lock file is broken ({reason})"),
            LockError::Failed(e) => write!(f, "cannot take the state lock: {e}"),
        }
    }
}

fn host() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn pid_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// When process `pid` started (field 22 of /proc/PID/stat), if it is running and this host has /proc.
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

/// This boot and pid namespace (see [`LockInfo::pid_space`]); empty when /proc cannot say.
fn pid_space() -> String {
    let boot = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let ns = fs::read_link("/proc/self/ns/pid").map(|p| p.display().to_string()).unwrap_or_default();
    if boot.trim().is_empty() || ns.is_empty() { String::new() } else { format!("{}/{ns}", boot.trim()) }
}

/// Whether `info`'s process is provably gone from this host (see [`provably_stale`]): a remote
/// store's lock taken on this very machine by a process that died is broken at once.
pub fn provably_stale_here(info: &LockInfo) -> bool {
    provably_stale(info, &host())
}

/// Whether a lock taken on `host` by `info`'s process is provably stale from here: same host
/// name, same boot and pid namespace, and that pid is gone or reused.
fn provably_stale(info: &LockInfo, host: &str) -> bool {
    if info.host != host || info.pid_space.is_empty() || info.pid_space != pid_space() {
        return false;
    }
    if !pid_alive(info.pid) {
        return true;
    }
    info.pid_start != 0 && start_time(info.pid).is_some_and(|t| t != info.pid_start)
}

fn read(path: &Path) -> Result<LockInfo, std::io::Error> {
    let text = fs::read_to_string(path)?;
    serde_json::from_str(&text).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// The id of a broken lock file: a digest of its bytes, so `force-unlock` removes that one only.
fn broken_id(bytes: &[u8]) -> String {
    format!("broken-{}", &crate::value::sha256_hex(bytes)[..12])
}

fn broken(path: &Path) -> LockError {
    let bytes = fs::read(path).unwrap_or_default();
    let reason = if bytes.iter().all(u8::is_ascii_whitespace) {
        "it is empty".to_string()
    } else {
        "it is not a lock record".to_string()
    };
    LockError::Broken { id: broken_id(&bytes), reason }
}

/// Creates `path` holding `body`, atomically: written and synced under a temporary name, then
/// hard-linked into place, which fails when `path` exists. Nobody ever sees it empty.
fn create_with(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let tmp = PathBuf::from(format!("{}.{}.tmp", path.display(), uuid::Uuid::new_v4()));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(body).and_then(|_| f.sync_all()));
    let linked = written.and_then(|_| fs::hard_link(&tmp, path));
    let _ = fs::remove_file(&tmp);
    linked
}

/// Removes `stale` at `path` if it is still what is there, under an exclusive breaker file
/// (created whole, holding our pid and a nonce) so that of several runs that found the same
/// stale lock only one breaks it.
fn break_stale(path: &Path, stale: &LockInfo) -> bool {
    let breaker = PathBuf::from(format!("{}.break", path.display()));
    let mine = format!("{} {}", std::process::id(), uuid::Uuid::new_v4());
    if create_with(&breaker, mine.as_bytes()).is_err() {
        // A breaker left by a run that died while breaking: remove it; the next run breaks.
        let held = fs::read_to_string(&breaker).unwrap_or_default();
        let pid = held.split_whitespace().next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| !pid_alive(p)) && fs::read_to_string(&breaker).is_ok_and(|t| t == held) {
            let _ = fs::remove_file(&breaker);
        }
        return false;
    }
    let still = read(path).is_ok_and(|i| i == *stale);
    if still {
        let _ = fs::remove_file(path);
    }
    // Ours only (it is, unless someone removed it believing us dead).
    if fs::read_to_string(&breaker).is_ok_and(|t| t == mine) {
        let _ = fs::remove_file(&breaker);
    }
    still
}

/// Takes the lock at `path` holding `info`, failing at once if it is held (a provably stale
/// lock is broken and taken over; see the module docs).
pub fn acquire(path: &Path, info: &LockInfo) -> Result<LockGuard, LockError> {
    let host = host();
    let info = info.clone();
    let body = serde_json::to_string_pretty(&info).map_err(|e| LockError::Failed(e.to_string()))?;
    let mut broke = None;
    for _ in 0..2 {
        match create_with(path, body.as_bytes()) {
            Ok(()) => {
                HELD.lock().unwrap_or_else(|e| e.into_inner()).push((path.to_path_buf(), info.id.clone()));
                return Ok(LockGuard { path: path.to_path_buf(), info, broke });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let holder = match read(path) {
                    Ok(h) => h,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::InvalidData => return Err(broken(path)),
                    Err(e) => return Err(LockError::Failed(e.to_string())),
                };
                let stale = provably_stale(&holder, &host);
                if stale && broke.is_none() && break_stale(path, &holder) {
                    broke = Some(holder);
                    continue;
                }
                return Err(LockError::Held { info: Box::new(holder), stale });
            }
            Err(e) => return Err(LockError::Failed(e.to_string())),
        }
    }
    match read(path) {
        Ok(holder) => Err(LockError::Held { info: Box::new(holder), stale: false }),
        Err(e) => Err(LockError::Failed(e.to_string())),
    }
}

/// Removes the lock at `path` if its id is `id` (for a broken lock file, the id its error named).
pub fn force_unlock(path: &Path, id: &str) -> Result<LockInfo, String> {
    let info = match read(path) {
        Ok(info) => info,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            let bytes = fs::read(path).unwrap_or_default();
            if broken_id(&bytes) != id {
                return Err(format!(
                    "the lock at {} is broken and its id is {}, not {id}",
                    path.display(),
                    broken_id(&bytes)
                ));
            }
            fs::remove_file(path).map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
            let mut info = LockInfo::unrecorded("(broken lock file)", "", "");
            info.id = id.into();
            return Ok(info);
        }
        Err(e) => return Err(format!("no lock at {}: {e}", path.display())),
    };
    if info.id != id {
        return Err(format!("the lock at {} has id {}, not {id}", path.display(), info.id));
    }
    fs::remove_file(path).map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_fails_and_names_holder() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.lock");
        let g = acquire(&p, &LockInfo::for_this_process("apply", Default::default())).unwrap();
        match acquire(&p, &LockInfo::for_this_process("plan", Default::default())) {
            Err(LockError::Held { info, stale }) => {
                assert_eq!(info.id, g.info.id);
                assert_eq!(info.operation, "apply");
                assert!(!stale);
            }
            other => panic!("expected held, got {other:?}"),
        }
        drop(g);
        assert!(!p.exists());
        assert!(acquire(&p, &LockInfo::for_this_process("plan", Default::default())).is_ok());
    }

    #[test]
    fn dead_holder_is_stale_and_force_unlock_needs_the_id() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.lock");
        let g = acquire(&p, &LockInfo::for_this_process("apply", Default::default())).unwrap();
        let mut info = g.info.clone();
        std::mem::forget(g);
        // A pid that cannot be running.
        info.pid = 0x7fff_fff0;
        fs::write(&p, serde_json::to_string(&info).unwrap()).unwrap();
        assert!(force_unlock(&p, "wrong").is_err());
        // Provably stale on this host: broken and taken over, naming what it replaced.
        let g = acquire(&p, &LockInfo::for_this_process("plan", Default::default())).unwrap();
        assert_eq!(g.broke.as_ref().map(|b| b.id.clone()), Some(info.id.clone()));
        drop(g);
        assert!(!p.exists());
    }

    #[test]
    fn a_reused_pid_is_stale_another_host_never_is() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.lock");
        let g = acquire(&p, &LockInfo::for_this_process("apply", Default::default())).unwrap();
        let mut info = g.info.clone();
        std::mem::forget(g);
        // Our own pid, alive, but "started" at another time: a reused pid.
        info.pid_start += 1;
        assert!(provably_stale(&info, &info.host.clone()));
        info.host = "elsewhere".into();
        fs::write(&p, serde_json::to_string(&info).unwrap()).unwrap();
        match acquire(&p, &LockInfo::for_this_process("plan", Default::default())) {
            Err(LockError::Held { stale, .. }) => assert!(!stale),
            other => panic!("expected held, got {other:?}"),
        }
        force_unlock(&p, &info.id).unwrap();
    }

    #[test]
    fn an_empty_or_garbled_lock_is_broken_and_force_unlock_removes_exactly_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.lock");
        for body in ["", "{not json"] {
            fs::write(&p, body).unwrap();
            let id = match acquire(&p, &LockInfo::for_this_process("apply", Default::default())) {
                Err(LockError::Broken { id, .. }) => id,
                other => panic!("expected broken, got {other:?}"),
            };
            assert!(force_unlock(&p, "broken-000000000000").is_err());
            force_unlock(&p, &id).unwrap();
            assert!(!p.exists());
        }
    }
}
