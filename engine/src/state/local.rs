//! The local state backend: `NAME.state.json` beside the desired-state file (or `[state] path`),
//! with `.backup`, `.lock` and `.journal` siblings. Writes are atomic (temporary file in the same
//! directory, fsync, rename, fsync of the directory) and mode 0600.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::journal::{self, Journal};
use super::lock::{self, LockError, LockGuard};
use super::{FORMAT_VERSION, State};
use crate::config::Config;

/// Where a state lives on disk.
#[derive(Clone, Debug)]
pub struct LocalBackend {
    path: PathBuf,
}

impl LocalBackend {
    /// A backend at an explicit path.
    pub fn new(path: impl Into<PathBuf>) -> LocalBackend {
        LocalBackend { path: path.into() }
    }

    /// The backend for a desired-state file: `[state] path`, else `STEM.state.json` beside it.
    pub fn for_config(cfg: &Config) -> LocalBackend {
        match &cfg.state.path {
            Some(p) => LocalBackend::new(cfg.dir.join(p)),
            None => LocalBackend::for_file(&cfg.path),
        }
    }

    /// The default backend for a desired-state file path.
    pub fn for_file(config_path: &Path) -> LocalBackend {
        let stem = config_path.file_stem().map_or("meshform".into(), |s| s.to_string_lossy().into_owned());
        LocalBackend::new(config_path.with_file_name(format!("{stem}.state.json")))
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sibling(&self, ext: &str) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(ext);
        PathBuf::from(s)
    }

    /// The lock file.
    pub fn lock_path(&self) -> PathBuf {
        self.sibling(".lock")
    }

    /// The journal file.
    pub fn journal_path(&self) -> PathBuf {
        self.sibling(".journal")
    }

    /// The backup of the previous state.
    pub fn backup_path(&self) -> PathBuf {
        self.sibling(".backup")
    }

    /// Takes the lock for a whole command.
    pub fn lock(&self, operation: &str) -> Result<LockGuard, LockError> {
        if let Some(dir) = self.path.parent()
            && !dir.as_os_str().is_empty()
        {
            fs::create_dir_all(dir).map_err(LockError::Io)?;
        }
        lock::acquire(&self.lock_path(), operation)
    }

    /// Reads the state (a new empty one when there is none). If an interrupted apply left a
    /// journal, its changes are folded in and written first; the count is returned. Hold the lock.
    pub fn load(&self, _lock: &LockGuard) -> Result<(State, usize), String> {
        let (mut state, recovered) = self.read_with_journal()?;
        if recovered > 0 {
            self.write(&mut state)?;
        }
        let _ = fs::remove_file(self.journal_path());
        Ok((state, recovered))
    }

    /// Reads the state without the lock, with an interrupted apply's journal folded in (in memory
    /// only: the next command that takes the lock records it); returns how many journaled
    /// operations it holds. For `state list` and `state show`.
    pub fn read_with_journal(&self) -> Result<(State, usize), String> {
        let mut state = self.read()?;
        let n = match journal::read(&self.journal_path()).map_err(|e| format!("cannot read journal: {e}"))? {
            Some(r) if r.lineage == state.lineage && r.serial == state.serial => {
                let n = r.changes.len();
                for c in r.changes {
                    c.apply_to(&mut state.objects);
                }
                n
            }
            _ => 0,
        };
        Ok((state, n))
    }

    /// Reads the state without the lock (for `state list/show` and read-only inspection).
    pub fn read(&self) -> Result<State, String> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(State::new()),
            Err(e) => return Err(format!("cannot read state {}: {e}", self.path.display())),
        };
        let state: State =
            serde_json::from_str(&text).map_err(|e| format!("state {} is not valid: {e}", self.path.display()))?;
        if state.format_version > FORMAT_VERSION {
            return Err(format!(
                "state {} has format version {}, newer than this meshform understands ({FORMAT_VERSION})",
                self.path.display(),
                state.format_version
            ));
        }
        Ok(state)
    }

    /// Writes the state atomically with the serial incremented, keeping the previous version as
    /// the backup.
    pub fn write(&self, state: &mut State) -> Result<(), String> {
        if state.lineage.is_empty() {
            state.lineage = uuid::Uuid::new_v4().to_string();
        }
        state.serial += 1;
        state.meshform_version = env!("CARGO_PKG_VERSION").to_string();
        let mut body = serde_json::to_vec_pretty(state).map_err(|e| e.to_string())?;
        body.push(b'\n');
        let err = |e: io::Error| format!("cannot write state {}: {e}", self.path.display());
        if self.path.exists() {
            atomic_write(&self.backup_path(), &fs::read(&self.path).map_err(err)?).map_err(err)?;
        }
        atomic_write(&self.path, &body).map_err(err)
    }

    /// Starts a journal against the current state's lineage and serial.
    pub fn journal(&self, state: &State) -> Result<Journal, String> {
        Journal::create(&self.journal_path(), &state.lineage, state.serial)
            .map_err(|e| format!("cannot create journal {}: {e}", self.journal_path().display()))
    }

    /// Removes the journal once its changes are in the state document.
    pub fn clear_journal(&self) {
        let _ = fs::remove_file(self.journal_path());
    }
}

/// Writes `bytes` to `path` via a temporary file in the same directory, fsync and rename.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map_or("state".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })?;
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Addr;
    use crate::state::{Change, ObjectRecord};
    use crate::value::{Map, Value};
    use std::os::unix::fs::PermissionsExt;

    fn rec(a: &str) -> ObjectRecord {
        let attrs = Map::from([("id".into(), Value::str(a)), ("secret".into(), Value::str("p4ss"))]);
        ObjectRecord::new(a.parse::<Addr>().unwrap(), "meshform_data", attrs, &["secret".to_string()].into(), vec![])
    }

    #[test]
    fn write_is_private_versioned_and_backed_up() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path().join("x.state.json"));
        let lock = b.lock("test").unwrap();
        let (mut s, n) = b.load(&lock).unwrap();
        assert_eq!((s.serial, n), (0, 0));
        s.objects.insert("meshform_data.a".parse().unwrap(), rec("meshform_data.a"));
        b.write(&mut s).unwrap();
        b.write(&mut s).unwrap();
        let text = fs::read_to_string(b.path()).unwrap();
        assert!(!text.contains("p4ss"), "plaintext secret in state");
        assert_eq!(fs::metadata(b.path()).unwrap().permissions().mode() & 0o777, 0o600);
        let backup: State = serde_json::from_str(&fs::read_to_string(b.backup_path()).unwrap()).unwrap();
        assert_eq!(backup.serial, 1);
        assert_eq!(b.read().unwrap().serial, 2);
    }

    #[tokio::test]
    async fn journal_replays_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path().join("x.state.json"));
        let lock = b.lock("apply").unwrap();
        let (mut s, _) = b.load(&lock).unwrap();
        b.write(&mut s).unwrap();
        let j = b.journal(&s).unwrap();
        j.append(Change::Put { record: rec("meshform_data.a") }).await.unwrap();
        j.append(Change::Put { record: rec("meshform_data.b") }).await.unwrap();
        j.append(Change::Remove { address: "meshform_data.a".parse().unwrap() }).await.unwrap();
        drop(j); // crash: the state document was never rewritten
        // A torn final line, as a crash mid-write leaves it.
        let mut f = OpenOptions::new().append(true).open(b.journal_path()).unwrap();
        f.write_all(b"{\"op\":\"put\",\"rec").unwrap();
        drop(lock);
        let lock = b.lock("plan").unwrap();
        let (s2, n) = b.load(&lock).unwrap();
        assert_eq!(n, 3);
        assert_eq!(s2.serial, s.serial + 1);
        let addrs: Vec<String> = s2.objects.keys().map(|a| a.to_string()).collect();
        assert_eq!(addrs, ["meshform_data.b"]);
        assert!(!b.journal_path().exists());
    }
}
