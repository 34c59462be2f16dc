//! The apply journal: every finished operation is appended and made durable in the state's
//! store before its dependents start. Appends that arrive while a commit is in flight are
//! committed together (group commit), so N operations cost far fewer than N commits and never a
//! rewrite of the whole state. Where a commit goes is the store's ([`JournalSink`]: an fsync'd
//! append to a local file, a new object in a bucket, a new Secret). At the end of apply the journal
//! is folded into the state document; after a crash the next run, on any machine, replays it.
//!
//! The format, the same in every store: entries of newline-separated JSON, each beginning with
//! a header line (journal format, lineage, serial), then one [`Change`] per line (each sealed by
//! the state's [`Codec`] when the state is encrypted). A torn last line ends an entry.

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::Change;
use super::codec::Codec;
use super::store::JournalSink;

#[derive(Serialize, Deserialize)]
struct Header {
    journal: u32,
    lineage: String,
    serial: u64,
}

/// The header line of a journal against the state at `lineage`/`serial`.
pub fn header(lineage: &str, serial: u64) -> Vec<u8> {
    let h = Header { journal: 1, lineage: lineage.into(), serial };
    let mut line = serde_json::to_vec(&h).unwrap_or_default();
    line.push(b'\n');
    line
}

type Request = (Change, oneshot::Sender<Result<(), String>>);

/// An open journal with its writer task (a task of the runtime, committing one batch at a time).
pub struct Journal {
    tx: Option<mpsc::UnboundedSender<Request>>,
    writer: Option<JoinHandle<()>>,
}

impl Journal {
    /// Starts the writer over `sink`, sealing each line with `codec`. Must be called within a
    /// tokio runtime (the writer is one of its tasks).
    pub fn start(sink: Box<dyn JournalSink>, codec: Codec) -> Journal {
        let (tx, rx) = mpsc::unbounded_channel::<Request>();
        let writer = tokio::spawn(write_loop(sink, codec, rx));
        Journal { tx: Some(tx), writer: Some(writer) }
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

async fn write_loop(mut sink: Box<dyn JournalSink>, codec: Codec, mut rx: mpsc::UnboundedReceiver<Request>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let mut buf = Vec::with_capacity(batch.len() * 512);
        // A change that cannot be serialised is not written, and its caller is told so: it is
        // never reported durable.
        let mut written = Vec::with_capacity(batch.len());
        for (change, done) in batch {
            match serde_json::to_vec(&change).map_err(|e| e.to_string()).and_then(|l| codec.seal_line(&l)) {
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
        let result = sink.commit(buf).await.map_err(|e| format!("journal write failed: {e}"));
        for done in written {
            let _ = done.send(result.clone());
        }
    }
}

/// What a journal left behind holds.
#[derive(Debug)]
pub struct Recovered {
    /// The state lineage it was written against.
    pub lineage: String,
    /// The state serial it was written against.
    pub serial: u64,
    /// The durable changes, in order (a torn last line is dropped).
    pub changes: Vec<Change>,
}

/// The changes that `entries` (as [`super::store::StateStore::journal_entries`] returns them)
/// hold against the state at `lineage`/`serial`, in order; entries of another state or serial (a
/// journal already folded in, whose removal did not finish) are left out. A torn line ends its
/// entry; a line that does not open with `codec` is an error (a wrong key, or tampering).
pub fn recover(entries: &[Vec<u8>], lineage: &str, serial: u64, codec: &Codec) -> Result<Recovered, String> {
    let mut changes = Vec::new();
    for (n, entry) in entries.iter().enumerate() {
        let mut lines = entry.split(|b| *b == b'\n');
        let Some(first) = lines.next() else { continue };
        let Ok(h) = serde_json::from_slice::<Header>(first) else { continue };
        if h.lineage != lineage || h.serial != serial {
            continue;
        }
        let lines: Vec<&[u8]> = lines.filter(|l| !l.is_empty()).collect();
        for (i, line) in lines.iter().enumerate() {
            // Only the very end of the journal can be torn (a crash mid-append); anything else
            // that does not read is an error, never silently dropped.
            let torn_ok = n + 1 == entries.len() && i + 1 == lines.len() && !entry.ends_with(b"\n");
            let change = codec
                .open_line(line)
                .and_then(|p| serde_json::from_slice::<Change>(&p).map_err(|e| format!("not a journal change: {e}")));
            match change {
                Ok(c) => changes.push(c),
                Err(_) if torn_ok => break,
                Err(e) => return Err(format!("journal entry {} of serial {serial}, line {}: {e}", n + 1, i + 2)),
            }
        }
    }
    Ok(Recovered { lineage: lineage.into(), serial, changes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::codec::StateKey;

    fn put_line(codec: &Codec, name: &str) -> Vec<u8> {
        let attrs = crate::value::Map::from([("id".into(), crate::value::Value::str(name))]);
        let addr = format!("meshform_data.{name}").parse().unwrap();
        let record = crate::state::ObjectRecord::new(addr, "meshform_data", attrs, &Default::default(), vec![]);
        let mut l = codec.seal_line(&serde_json::to_vec(&Change::Put { record }).unwrap()).unwrap();
        l.push(b'\n');
        l
    }

    #[test]
    fn only_the_very_end_may_be_torn_and_nothing_unreadable_is_dropped() {
        let plain = Codec::plain();
        let mut one = header("L", 3);
        one.extend(put_line(&plain, "a"));
        let mut two = header("L", 3);
        two.extend(put_line(&plain, "b"));
        // A torn tail of the last entry is the crash point: dropped.
        let mut torn = two.clone();
        torn.extend_from_slice(b"{\"op\":\"put\",\"rec");
        let r = recover(&[one.clone(), torn], "L", 3, &plain).unwrap();
        assert_eq!(r.changes.len(), 2);
        // The same bytes in an earlier entry, or a complete bad line, are errors.
        let mut bad = one.clone();
        bad.extend_from_slice(b"{\"op\":\"nonsense\"}\n");
        assert!(recover(&[bad, two.clone()], "L", 3, &plain).is_err());
        // Another serial's entries are left out.
        assert_eq!(recover(&[one.clone()], "L", 4, &plain).unwrap().changes.len(), 0);
        // A line sealed with a key this run does not have is an error, never "torn".
        let sealed = Codec::with_keys(StateKey::from_secret(&[7; 32]), vec![]);
        let mut entry = header("L", 3);
        entry.extend(put_line(&sealed, "c"));
        let other = Codec::with_keys(StateKey::from_secret(&[8; 32]), vec![]);
        assert!(recover(&[entry.clone()], "L", 3, &other).unwrap_err().contains("not among the keys"));
        assert_eq!(recover(&[entry], "L", 3, &sealed).unwrap().changes.len(), 1);
    }
}
