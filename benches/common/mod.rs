//! What the benchmarks share: running a command and measuring it.

use std::process::Command;
use std::time::Instant;

/// Runs a command (its standard streams as the caller set them); returns (seconds, peak resident
/// set in MiB, exit code, or minus the signal that ended it).
pub fn measure(cmd: &mut Command) -> (f64, f64, i32) {
    let start = Instant::now();
    // wait4 below reaps the child and reports its peak memory.
    #[allow(clippy::zombie_processes)]
    let child = cmd.spawn().expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data filled by wait4 for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for the child we just spawned.
    unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let secs = start.elapsed().as_secs_f64();
    // A signal that ended it is told as its negative number.
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -libc::WTERMSIG(status) };
    (secs, usage.ru_maxrss as f64 / 1024.0, code)
}
