//! Opening the state: the one sequence every command that reads or writes the state goes
//! through (the backend of the desired state, its lock, the state with an interrupted run's
//! journal recovered).

use std::path::Path;

use meshform_engine::config::Config;
use meshform_engine::state::State;
use meshform_engine::state::local::LocalBackend;
use meshform_engine::state::lock::{LockError, LockGuard};

use super::Out;

/// An opened state: where it lives, the lock held on it, and its content.
pub(crate) struct Opened {
    /// Where the state lives.
    pub backend: LocalBackend,
    /// The lock, held until this is dropped.
    pub guard: LockGuard,
    /// The state, journal recovered.
    pub state: State,
}

/// Opens the state of desired state `cfg` (`file`) for operation `op`: lock, then read.
pub(crate) fn open(out: &Out, cfg: &Config, op: &str, file: &Path) -> Result<Opened, u8> {
    let backend = LocalBackend::for_config(cfg);
    let guard = take_lock(out, &backend, op, file)?;
    let (state, recovered) = backend.load(&guard).map_err(|m| out.error(&m))?;
    if recovered > 0 {
        eprintln!("note: recovered {recovered} finished operation(s) from an interrupted run's journal into the state");
    }
    Ok(Opened { backend, guard, state })
}

fn take_lock(out: &Out, backend: &LocalBackend, op: &str, file: &Path) -> Result<LockGuard, u8> {
    backend.lock(op).map_err(|e| {
        let hint = match &e {
            LockError::Held { info, stale: true } => {
                format!("\n  run `meshform force-unlock {} {}` to remove it", info.id, file.display())
            }
            LockError::Held { info, .. } => format!(
                "\n  wait for that run to finish; if it is gone, run `meshform force-unlock {} {}`",
                info.id,
                file.display()
            ),
            LockError::Broken { id, .. } => format!(
                "\n  if no other meshform run is using this state, remove it with `meshform force-unlock {id} {}`",
                file.display()
            ),
            LockError::Io(_) => String::new(),
        };
        out.error(&format!("{e}{hint}"))
    })
    .inspect(|g| {
        if let Some(b) = &g.broke {
            eprintln!(
                "note: removed a stale lock of pid {} on this host (operation `{}`, since {}): that process is gone",
                b.pid, b.operation, b.created
            );
        }
    })
}
