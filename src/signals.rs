//! SIGINT, SIGTERM and SIGHUP, handled alike for every command (CI cancellation, `docker stop`
//! and Kubernetes send SIGTERM). While an apply or destroy runs, the first signal starts no new
//! operation: those in flight finish, finished ones are saved, the lock is released. A second
//! signal stops at once (the journal keeps what finished; the next run replays it). Outside an
//! apply nothing live is being changed, so a signal releases the lock and exits at once. Either
//! way the exit code is 128 + the signal (130 SIGINT, 143 SIGTERM, 129 SIGHUP), never 0.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use tokio::signal::unix::{SignalKind, signal};

/// The first signal received (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);
/// Whether an apply is running (then a first signal cancels instead of exiting).
static APPLYING: AtomicBool = AtomicBool::new(false);
/// Held while deciding between cancelling and exiting, and while an apply starts, so that a
/// signal never exits once the first operation may have begun.
static DECIDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
/// A command that waits for signals itself (`meshform sim` stops its servers and exits 0).
static OWN_HANDLING: AtomicBool = AtomicBool::new(false);

/// The running command handles signals itself (a server that stops cleanly on them).
pub fn handled_by_command() {
    OWN_HANDLING.store(true, Ordering::SeqCst);
}

fn cancel() -> &'static Arc<AtomicBool> {
    static CANCEL: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    CANCEL.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

fn name(sig: i32) -> &'static str {
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "Interrupted (SIGINT)",
    }
}

/// Installs the handlers; call once, inside the runtime, before any command runs.
pub fn install() {
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) =
        (signal(SignalKind::interrupt()), signal(SignalKind::terminate()), signal(SignalKind::hangup()))
    else {
        return;
    };
    tokio::spawn(async move {
        loop {
            let sig = tokio::select! {
                _ = int.recv() => libc::SIGINT,
                _ = term.recv() => libc::SIGTERM,
                _ = hup.recv() => libc::SIGHUP,
            };
            on_signal(sig).await;
        }
    });
}

async fn on_signal(sig: i32) {
    if OWN_HANDLING.load(Ordering::SeqCst) {
        return;
    }
    let decide = DECIDING.lock().unwrap_or_else(|e| e.into_inner());
    let first = RECEIVED.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst).is_ok();
    let code = 128 + RECEIVED.load(Ordering::SeqCst);
    if first && APPLYING.load(Ordering::SeqCst) {
        eprintln!(
            "\n{}: starting no new operations; waiting for those in flight, then saving state. Signal again to stop at once.",
            name(sig)
        );
        cancel().store(true, Ordering::SeqCst);
        return;
    }
    if first {
        eprintln!("\n{}: nothing was being changed; stopping.", name(sig));
    } else {
        eprintln!("Stopped. Finished operations are in the state journal and will be recovered by the next run.");
    }
    drop(decide);
    // A remote lock is released over the network: a few seconds at most, then the process
    // exits anyway (the lock then expires by its TTL, or `force-unlock` removes it).
    meshform_engine::state::handle::release_all(std::time::Duration::from_secs(5)).await;
    meshform_engine::state::lock::release_held();
    std::process::exit(code);
}

/// The cancellation flag an apply watches; marks the apply as running until [`applied`].
pub fn applying() -> Arc<AtomicBool> {
    let _decide = DECIDING.lock().unwrap_or_else(|e| e.into_inner());
    APPLYING.store(true, Ordering::SeqCst);
    let c = cancel().clone();
    if RECEIVED.load(Ordering::SeqCst) != 0 {
        c.store(true, Ordering::SeqCst);
    }
    c
}

/// The apply has finished and saved its state.
pub fn applied() {
    APPLYING.store(false, Ordering::SeqCst);
}

/// The exit code for a command that returned `code`: 128 + the signal when one was received.
pub fn exit_code(code: u8) -> u8 {
    if OWN_HANDLING.load(Ordering::SeqCst) {
        return code;
    }
    match RECEIVED.load(Ordering::SeqCst) {
        0 => code,
        sig => (128 + sig) as u8,
    }
}
