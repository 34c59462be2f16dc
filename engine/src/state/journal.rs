//! The apply journal: an append-only file of [`Change`]s next to the state. Every finished
//! operation is appended and made durable (fsync) before its dependents start; appends that
//! arrive while a write is in flight are committed together (group commit), so N operations cost
//! far fewer than N fsyncs and never a rewrite of the whole state. At the end of apply the journal
//! is folded into the state document; after a crash the next command replays it.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::Change;

#[derive(Serialize, Deserialize)]
struct Header {
    journal: u32,
    lineage: String,
    serial: u64,
}

type Request = (Change, oneshot::Sender<Result<(), String>>);

/// An open journal with its writer task. The writer is a task of the runtime whose writes run
/// on tokio's blocking pool (one trip per batch), so a test on a paused clock does not see the
/// runtime idle (and time jump) while a write is under way.
pub struct Journal {
    tx: Option<mpsc::UnboundedSender<Request>>,
    writer: Option<JoinHandle<()>>,
}

impl Journal {
    /// Creates (truncating) the journal for a state at `lineage`/`serial`. Must be called within
    /// a tokio runtime (the writer is one of its tasks).
    pub fn create(path: &Path, lineage: &str, serial: u64) -> io::Result<Journal> {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
        let header = Header { journal: 1, lineage: lineage.into(), serial };
        writeln!(f, "{}", serde_json::to_string(&header).map_err(io::Error::other)?)?;
        f.sync_all()?;
        if let Some(dir) = path.parent() {
            // Make the new directory entry durable too.
            if let Ok(d) = File::open(if dir.as_os_str().is_empty() { Path::new(".") } else { dir }) {
                let _ = d.sync_all();
            }
        }
        let (tx, rx) = mpsc::unbounded_channel::<Request>();
        let writer = tokio::spawn(write_loop(f, rx));
        Ok(Journal { tx: Some(tx), writer: Some(writer) })
    }

    /// Appends a change; resolves once it is on disk.
    pub async fn append(&self, change: Change) -> Result<(), String> {
        let (done_tx, done_rx) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or("journal closed")?;
        tx.send((change, done_tx)).map_err(|_| "journal writer stopped".to_string())?;
        done_rx.await.map_err(|_| "journal writer stopped".to_string())?
    }

    /// Stops the writer after everything appended so far is written. (Dropping a journal also
    /// lets its writer finish what was appended, in the background.)
    pub async fn close(mut self) {
        self.tx.take();
        if let Some(w) = self.writer.take() {
            let _ = w.await;
        }
    }
}

async fn write_loop(mut f: File, mut rx: mpsc::UnboundedReceiver<Request>) {
    let mut buf = Vec::with_capacity(64 * 1024);
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        buf.clear();
        // A change that cannot be serialised is not written, and its caller is told so: it is
        // never reported durable.
        let mut written = Vec::with_capacity(batch.len());
        for (change, done) in batch {
            let line = serde_json::to_vec(&change);
            match line {
                Ok(line) => {
                    buf.extend_from_slice(&line);
                    buf.push(b'\n');
                    written.push(done);
                }
                Err(e) => {
                    let _ = done.send(Err(format!("journal: cannot serialise a change: {e}")));
                }
            }
        }
        // One trip to the blocking pool per batch: the write and the fsync together.
        let job = tokio::task::spawn_blocking(move || {
            let r = f.write_all(&buf).and_then(|_| f.sync_data());
            (f, buf, r)
        });
        let result = match job.await {
            Ok((file, b, r)) => {
                f = file;
                buf = b;
                r.map_err(|e| format!("journal write failed: {e}"))
            }
            Err(e) => {
                let m = format!("journal writer failed: {e}");
                for done in written {
                    let _ = done.send(Err(m.clone()));
                }
                return;
            }
        };
        for done in written {
            let _ = done.send(result.clone());
        }
    }
}

/// What a journal left behind holds.
pub struct Recovered {
    /// The state lineage it was written against.
    pub lineage: String,
    /// The state serial it was written against.
    pub serial: u64,
    /// The durable changes, in order (a torn last line is dropped).
    pub changes: Vec<Change>,
}

/// Reads a journal, if there is one.
pub fn read(path: &Path) -> io::Result<Option<Recovered>> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut lines = BufReader::new(f).lines();
    let Some(first) = lines.next().transpose()? else { return Ok(None) };
    let Ok(header) = serde_json::from_str::<Header>(&first) else { return Ok(None) };
    let mut changes = Vec::new();
    for line in lines {
        let line = line?;
        match serde_json::from_str::<Change>(&line) {
            Ok(c) => changes.push(c),
            Err(_) => break, // torn write at the crash point
        }
    }
    Ok(Some(Recovered { lineage: header.lineage, serial: header.serial, changes }))
}
