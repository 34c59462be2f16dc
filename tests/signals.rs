//! Signals, crashes and locks through the real binary: SIGTERM mid-apply (exit 143, lock
//! released, every finished operation in state), kill -9 mid-apply (the journal shows in `state
//! list`, the provably stale lock is taken over, the rerun converges), Ctrl-C or EOF at the
//! confirmation prompt (no lock left; the prompt runs in a pseudo-terminal made by python3's pty
//! module), and a broken lock file (named with the exact command that removes it).
//!
//! Needs gcloud (and python3) on PATH (a missing tool fails the test saying so; see .ci/run).

mod common;

use std::time::Duration;

use common::{Cloud, code, text};
use meshform_sim::SimOptions;

fn firewalls(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "[resources.gcp_firewall.fw{i}]\nname = \"sig-{i}\"\nallow = [{{ protocol = \"tcp\", ports = [\"{}\"] }}]\nsource_ranges = [\"10.{i}.0.0/16\"]\n\n",
                8000 + i
            )
        })
        .collect()
}

/// Starts `meshform apply` and returns it once its journal holds at least one finished
/// operation (polling the journal file: the condition, not a fixed wait).
async fn apply_until_journaled(c: &Cloud) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_meshform"));
    cmd.args(["apply", "main.toml", "--auto-approve", "--parallelism=1"])
        .current_dir(c.dir.path())
        .env_clear()
        .envs(c.env.iter().cloned())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let journal = c.dir.path().join("main.state.json.journal");
    for _ in 0..3000 {
        let lines = std::fs::read_to_string(&journal).map(|t| t.lines().count()).unwrap_or(0);
        if lines >= 2 {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the apply journaled nothing within 30 s");
}

async fn live_firewalls(c: &Cloud) -> Vec<String> {
    let o = c.gcloud(&["compute", "firewall-rules", "list", "--filter=name~^sig-", "--format=value(name)"]).await;
    let mut v: Vec<String> = String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect();
    v.sort();
    v
}

fn state_names(c: &Cloud) -> Vec<String> {
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(c.dir.path().join("main.state.json")).unwrap()).unwrap();
    let mut v: Vec<String> = s["objects"]
        .as_array()
        .map(|a| a.iter().map(|o| o["attributes"]["name"].as_str().unwrap_or("").to_string()).collect())
        .or_else(|| {
            s["objects"]
                .as_object()
                .map(|o| o.values().map(|o| o["attributes"]["name"].as_str().unwrap_or("").to_string()).collect())
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_apply_exits_143_releases_the_lock_and_keeps_every_finished_operation() {
    let c =
        Cloud::start(SimOptions { latency: Duration::from_millis(150), lro_polls: 1, ..SimOptions::default() }).await;
    c.write(&firewalls(8));
    let child = apply_until_journaled(&c).await;
    let pid = child.id().unwrap() as i32;
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let o = child.wait_with_output().await.unwrap();
    let t = text(&o);
    assert_eq!(code(&o), 143, "{t}");
    assert!(t.contains("SIGTERM: starting no new operations") && t.contains("interrupted"), "{t}");
    assert!(!c.dir.path().join("main.state.json.lock").exists(), "the lock must be released");
    assert!(!c.dir.path().join("main.state.json.journal").exists(), "the journal is folded into the state");
    let live = live_firewalls(&c).await;
    assert!(!live.is_empty() && live.len() < 8, "interrupted part-way: {live:?}");
    assert_eq!(state_names(&c), live, "state holds exactly what was made");
    // The rerun makes the rest; then nothing is left to do.
    c.apply().await;
    assert_eq!(live_firewalls(&c).await.len(), 8);
    c.assert_no_changes().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_apply_leaves_a_journal_that_state_list_shows_and_the_rerun_takes_over() {
    let c =
        Cloud::start(SimOptions { latency: Duration::from_millis(150), lro_polls: 1, ..SimOptions::default() }).await;
    c.write(&firewalls(8));
    let mut child = apply_until_journaled(&c).await;
    child.start_kill().unwrap();
    let status = child.wait().await.unwrap();
    assert!(!status.success());
    assert!(c.dir.path().join("main.state.json.lock").exists(), "kill -9 leaves the lock");
    let o = c.mf(&["state", "list", "main.toml"]).await;
    let t = text(&o);
    assert_eq!(code(&o), 0, "{t}");
    assert!(t.contains("gcp_firewall.fw") && t.contains("of an interrupted run, still in its journal"), "{t}");
    // The holder is provably gone from this host: the next run takes the lock over by itself.
    let o = c.mf(&["apply", "main.toml", "--auto-approve"]).await;
    let t = text(&o);
    assert_eq!(code(&o), 0, "{t}");
    assert!(t.contains("removed a stale lock of pid") && t.contains("recovered"), "{t}");
    let live = live_firewalls(&c).await;
    assert_eq!(live.len(), 8, "no duplicate, no orphan: {live:?}");
    assert_eq!(state_names(&c), live);
    c.assert_no_changes().await;
}

/// Runs `meshform apply` in a pseudo-terminal, answers the prompt with `keys`, and returns the
/// exit code and what the terminal showed.
fn at_the_prompt(dir: &std::path::Path, keys: &str) -> (i32, String) {
    let script = r#"
import os, pty, sys, select
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], "apply", "main.toml"])
seen = b""
def read_some(timeout):
    global seen
    r, _, _ = select.select([fd], [], [], timeout)
    if r:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return False
        if not chunk:
            return False
        seen += chunk
        return True
    return True
while b"Only 'yes' is accepted" not in seen:
    if not read_some(30):
        break
os.write(fd, sys.argv[2].encode().decode("unicode_escape").encode())
while read_some(30):
    pass
_, status = os.waitpid(pid, 0)
sys.stdout.write(seen.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status) if os.waitstatus_to_exitcode(status) >= 0 else 128 - os.waitstatus_to_exitcode(status))
"#;
    // python3 makes the pseudo-terminal.
    let o = std::process::Command::new(meshform_sim::tools::need("python3"))
        .args(["-c", script, env!("CARGO_BIN_EXE_meshform"), keys])
        .current_dir(dir)
        .env("HOME", dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("python3 runs");
    (code(&o), text(&o))
}

#[test]
fn ctrl_c_or_eof_at_the_prompt_leaves_no_lock() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("main.toml"), "[resources.meshform_data.a]\ninput = \"x\"\n").unwrap();
    let (rc, t) = at_the_prompt(dir.path(), "\\x03");
    assert_eq!(rc, 130, "{t}");
    assert!(!dir.path().join("main.state.json.lock").exists(), "Ctrl-C at the prompt left the lock:\n{t}");
    let (rc, t) = at_the_prompt(dir.path(), "\\x04");
    assert_eq!(rc, 1, "{t}");
    assert!(t.contains("Cancelled: nothing was changed"), "{t}");
    assert!(!dir.path().join("main.state.json.lock").exists(), "EOF at the prompt left the lock:\n{t}");
    assert!(!dir.path().join("main.state.json").exists(), "nothing was applied");
}

#[test]
fn a_broken_lock_names_the_command_that_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("main.toml"), "[resources.meshform_data.a]\ninput = \"x\"\n").unwrap();
    std::fs::write(dir.path().join("main.state.json.lock"), "").unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_meshform"))
            .args(args)
            .current_dir(dir.path())
            .env("HOME", dir.path())
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let o = run(&["apply", "main.toml", "--auto-approve"]);
    let t = text(&o);
    assert_eq!(code(&o), 1, "{t}");
    assert!(t.contains("the state lock file is broken (it is empty)"), "{t}");
    let cmd = t.split('`').find(|s| s.starts_with("meshform force-unlock broken-")).expect("the command to paste");
    let args: Vec<&str> = cmd.split_whitespace().skip(1).collect();
    let o = run(&args);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let o = run(&["apply", "main.toml", "--auto-approve"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
}
