//! The local state store: `NAME.state.json` beside the desired-state file (or `[state] path`),
//! with `.backup`, `.lock` and `.journal` siblings. Writes are atomic (temporary file in the same
//! directory, fsync, rename, fsync of the directory) and mode 0600.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;

use super::lock::{self, LockError, LockGuard, LockInfo};
use super::store::{Blob, JournalSink, Revision, StateLock, StateStore, StoreError};

/// A state in a local file.
#[derive(Clone, Debug)]
pub struct LocalStore {
    path: PathBuf,
}

impl LocalStore {
    /// A store at an explicit path.
    pub fn new(path: impl Into<PathBuf>) -> LocalStore {
        LocalStore { path: path.into() }
    }

    /// The store of state `name` beside the desired-state file at `config_path`:
    /// `NAME.state.json` in its directory.
    pub fn beside(config_path: &Path, name: &str) -> LocalStore {
        LocalStore::new(config_path.with_file_name(format!("{name}.state.json")))
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

    fn err(&self, what: &str, e: io::Error) -> StoreError {
        StoreError::other(format!("cannot {what} {}: {e}", self.path.display()))
    }
}

/// The version of local state bytes: a digest of them.
fn version_of(bytes: &[u8]) -> String {
    crate::value::sha256_hex(bytes)[..16].to_string()
}

fn read_opt(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// A held local lock (the lock file, removed when released or dropped).
struct LocalLock {
    guard: Mutex<Option<LockGuard>>,
    info: LockInfo,
    broke: Option<LockInfo>,
}

#[async_trait]
impl StateLock for LocalLock {
    fn info(&self) -> &LockInfo {
        &self.info
    }

    fn broke(&self) -> Option<&LockInfo> {
        self.broke.as_ref()
    }

    async fn renew(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn unlock(&self) -> Result<(), StoreError> {
        drop(self.guard.lock().unwrap_or_else(|e| e.into_inner()).take());
        Ok(())
    }
}

/// Appends to the journal file, each batch fsync'd in one trip to the blocking pool (so a test on
/// a paused clock does not see the runtime idle, and time jump, while a write is under way).
struct LocalSink {
    file: Option<File>,
}

#[async_trait]
impl JournalSink for LocalSink {
    async fn commit(&mut self, bytes: Vec<u8>) -> Result<(), StoreError> {
        let Some(mut f) = self.file.take() else { return Err(StoreError::other("journal closed after a failure")) };
        let job = tokio::task::spawn_blocking(move || {
            let r = f.write_all(&bytes).and_then(|_| f.sync_data());
            (f, r)
        });
        match job.await {
            Ok((f, r)) => {
                // After a failed write the file may end in a torn batch: nothing more is
                // appended behind it.
                if r.is_ok() {
                    self.file = Some(f);
                }
                r.map_err(|e| StoreError::other(e.to_string()))
            }
            Err(e) => Err(StoreError::other(e.to_string())),
        }
    }
}

#[async_trait]
impl StateStore for LocalStore {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    async fn lock(&self, info: &LockInfo) -> Result<Box<dyn StateLock>, LockError> {
        if let Some(dir) = self.path.parent()
            && !dir.as_os_str().is_empty()
        {
            fs::create_dir_all(dir).map_err(|e| LockError::Failed(e.to_string()))?;
        }
        let mut guard = lock::acquire(&self.lock_path(), info)?;
        let broke = guard.broke.take();
        Ok(Box::new(LocalLock { info: guard.info.clone(), guard: Mutex::new(Some(guard)), broke }))
    }

    async fn get(&self) -> Result<Option<Blob>, StoreError> {
        let bytes = read_opt(&self.path).map_err(|e| self.err("read state", e))?;
        Ok(bytes.map(|bytes| Blob { version: version_of(&bytes), bytes }))
    }

    async fn put(&self, bytes: &[u8], expected: Option<&str>) -> Result<String, StoreError> {
        let current = read_opt(&self.path).map_err(|e| self.err("read state", e))?;
        if current.as_deref().map(version_of).as_deref() != expected {
            return Err(StoreError::conflict(format!(
                "{} changed since this run read it (written by a run that did not hold the lock?)",
                self.path.display()
            )));
        }
        if let Some(old) = current {
            atomic_write(&self.backup_path(), &old).map_err(|e| self.err("write the backup of", e))?;
        }
        atomic_write(&self.path, bytes).map_err(|e| self.err("write state", e))?;
        Ok(version_of(bytes))
    }

    async fn journal(&self, _serial: u64, header: &[u8]) -> Result<Box<dyn JournalSink>, StoreError> {
        let path = self.journal_path();
        let create = || -> io::Result<File> {
            let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path)?;
            f.write_all(header)?;
            f.sync_all()?;
            if let Some(dir) = path.parent() {
                // Make the new directory entry durable too.
                if let Ok(d) = File::open(if dir.as_os_str().is_empty() { Path::new(".") } else { dir }) {
                    let _ = d.sync_all();
                }
            }
            Ok(f)
        };
        let f = create().map_err(|e| StoreError::other(format!("cannot create journal {}: {e}", path.display())))?;
        Ok(Box::new(LocalSink { file: Some(f) }))
    }

    async fn journal_entries(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        let path = self.journal_path();
        let bytes =
            read_opt(&path).map_err(|e| StoreError::other(format!("cannot read journal {}: {e}", path.display())))?;
        Ok(bytes.into_iter().collect())
    }

    async fn clear_journal(&self) -> Result<(), StoreError> {
        match fs::remove_file(self.journal_path()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::other(format!("cannot remove {}: {e}", self.journal_path().display()))),
        }
    }

    async fn force_unlock(&self, id: &str) -> Result<LockInfo, StoreError> {
        lock::force_unlock(&self.lock_path(), id).map_err(StoreError::other)
    }

    async fn history(&self) -> Result<Vec<Revision>, StoreError> {
        let mut out = Vec::new();
        for (path, current) in [(self.path.clone(), true), (self.backup_path(), false)] {
            if let Some(b) = read_opt(&path).map_err(|e| self.err("read", e))? {
                let written =
                    fs::metadata(&path).and_then(|m| m.modified()).map(crate::clock::rfc3339_of).unwrap_or_default();
                out.push(Revision { version: version_of(&b), written, size: b.len() as u64, current });
            }
        }
        Ok(out)
    }

    async fn get_version(&self, version: &str) -> Result<Vec<u8>, StoreError> {
        for path in [self.path.clone(), self.backup_path()] {
            if let Some(b) = read_opt(&path).map_err(|e| self.err("read", e))?
                && version_of(&b) == version
            {
                return Ok(b);
            }
        }
        Err(StoreError::not_found(format!(
            "{} has no version {version} (the local backend keeps the current state and its backup)",
            self.path.display()
        )))
    }

    async fn names(&self) -> Result<Vec<String>, StoreError> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut names: Vec<String> = fs::read_dir(&dir)
            .map_err(|e| StoreError::other(format!("cannot list {}: {e}", dir.display())))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok()?.strip_suffix(".state.json").map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
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
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    #[tokio::test]
    async fn the_local_store_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let make = move |name: &str| -> Arc<dyn StateStore> {
            Arc::new(LocalStore::new(root.join(format!("{name}.state.json"))))
        };
        crate::state::conformance::run_all(&make, false).await;
    }

    #[tokio::test]
    async fn writes_are_private_and_backed_up() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().join("x.state.json"));
        let v1 = store.put(b"one", None).await.unwrap();
        store.put(b"two", Some(&v1)).await.unwrap();
        assert_eq!(fs::metadata(store.path()).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read(store.backup_path()).unwrap(), b"one");
        let h = store.history().await.unwrap();
        assert_eq!(h.iter().map(|r| r.current).collect::<Vec<_>>(), [true, false]);
        assert_eq!(store.get_version(&h[1].version).await.unwrap(), b"one");
    }
}
