//! The state lock: a file created exclusively next to the state, naming its holder, held for a
//! whole command. A second run fails at once naming the holder; a holder process that is gone
//! from this host is reported as stale.

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
}

/// A held lock; released when dropped.
#[derive(Debug)]
pub struct LockGuard {
    path: PathBuf,
    /// The lock's details.
    pub info: LockInfo,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Remove only our own lock (a force-unlock may have replaced it).
        if read(&self.path).is_ok_and(|i| i.id == self.info.id) {
            let _ = fs::remove_file(&self.path);
        }
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
    /// The file system failed.
    Io(std::io::Error),
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
            LockError::Io(e) => write!(f, "cannot take the state lock: {e}"),
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

fn read(path: &Path) -> Result<LockInfo, std::io::Error> {
    let text = fs::read_to_string(path)?;
    serde_json::from_str(&text).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Takes the lock at `path` for `operation`, failing at once if it is held.
pub fn acquire(path: &Path, operation: &str) -> Result<LockGuard, LockError> {
    let host = host();
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let info = LockInfo {
        id: uuid::Uuid::new_v4().to_string(),
        operation: operation.into(),
        who: format!("{user}@{host}"),
        pid: std::process::id(),
        host: host.clone(),
        created: crate::clock::now_rfc3339(),
    };
    match OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(mut f) => {
            let body = serde_json::to_string_pretty(&info).map_err(|e| LockError::Io(e.into()))?;
            f.write_all(body.as_bytes()).and_then(|_| f.sync_all()).map_err(LockError::Io)?;
            Ok(LockGuard { path: path.to_path_buf(), info })
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let holder = read(path).map_err(LockError::Io)?;
            let stale = holder.host == host && !pid_alive(holder.pid);
            Err(LockError::Held { info: Box::new(holder), stale })
        }
        Err(e) => Err(LockError::Io(e)),
    }
}

/// Removes the lock at `path` if its id is `id`.
pub fn force_unlock(path: &Path, id: &str) -> Result<LockInfo, String> {
    let info = read(path).map_err(|e| format!("no lock at {}: {e}", path.display()))?;
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
        let g = acquire(&p, "apply").unwrap();
        match acquire(&p, "plan") {
            Err(LockError::Held { info, stale }) => {
                assert_eq!(info.id, g.info.id);
                assert_eq!(info.operation, "apply");
                assert!(!stale);
            }
            other => panic!("expected held, got {other:?}"),
        }
        drop(g);
        assert!(!p.exists());
        assert!(acquire(&p, "plan").is_ok());
    }

    #[test]
    fn dead_holder_is_stale_and_force_unlock_needs_the_id() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.lock");
        let g = acquire(&p, "apply").unwrap();
        let mut info = g.info.clone();
        std::mem::forget(g);
        // A pid that cannot be running.
        info.pid = 0x7fff_fff0;
        fs::write(&p, serde_json::to_string(&info).unwrap()).unwrap();
        match acquire(&p, "plan") {
            Err(LockError::Held { stale, .. }) => assert!(stale),
            other => panic!("expected stale, got {other:?}"),
        }
        assert!(force_unlock(&p, "wrong").is_err());
        force_unlock(&p, &info.id).unwrap();
        assert!(!p.exists());
    }
}
