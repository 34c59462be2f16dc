//! Terminal habits: colour only when it can be seen and is wanted (NO_COLOR, `--no-color`,
//! non-terminals), progress bars only on a terminal outside CI, results on stdout.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use meshform_engine::apply::{NodeResult, Observer};
use meshform_engine::plan::{Action, Change};

/// Whether to colour stdout.
pub fn color_stdout(no_color: bool) -> bool {
    !no_color && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
}

/// Whether to colour stderr.
pub fn color_stderr(no_color: bool) -> bool {
    !no_color && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// Whether to draw progress: stderr is a terminal and this is not CI.
pub fn show_progress() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("CI").is_none()
}

/// A progress bar on stderr, or a hidden one.
pub fn progress(total: u64, msg: &str) -> ProgressBar {
    if !show_progress() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

/// Runs `work` (a plan or a drift check) with a spinner on stderr saying what is being read, so a
/// long refresh of a large fleet shows it is alive. Hidden where progress is not drawn.
pub async fn while_reading<T>(
    work: impl std::future::Future<Output = T>,
    s: &meshform_engine::session::Session,
    state: &meshform_engine::state::State,
    refresh: bool,
) -> T {
    if !show_progress() {
        return work.await;
    }
    let lookups =
        s.graph.instances.iter().filter(|i| i.addr.block.mode != meshform_engine::addr::Mode::Managed).count();
    let msg = if refresh {
        format!("reading {} objects and {lookups} lookups live", state.objects.len())
    } else {
        format!("reading {lookups} lookups live")
    };
    let sp = ProgressBar::new_spinner();
    sp.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    sp.set_message(msg);
    sp.enable_steady_tick(Duration::from_millis(120));
    let out = work.await;
    sp.finish_and_clear();
    out
}

/// The present participle of an action, for "still creating" and the bar.
fn doing(a: Action) -> &'static str {
    match a {
        Action::Create => "creating",
        Action::Adopt => "adopting",
        Action::Update => "updating",
        Action::Replace => "replacing",
        Action::Delete => "destroying",
        Action::Forget => "forgetting",
        Action::Read => "reading",
        Action::NoOp => "checking",
    }
}

/// How often a running operation says it is still running (`MESHFORM_HEARTBEAT_INTERVAL`, a
/// duration such as `10s`; default 10 seconds).
pub fn heartbeat_interval() -> Duration {
    std::env::var("MESHFORM_HEARTBEAT_INTERVAL")
        .ok()
        .and_then(|v| meshform_engine::config::duration::parse_duration(&v))
        .filter(|&s| s > 0)
        .map_or(Duration::from_secs(10), Duration::from_secs)
}

/// Reports an apply as it runs: one line per finished operation on stdout, written and flushed
/// when it finishes; on a terminal, printed above a bar that names what it waits on and is
/// redrawn (never left in the scrollback); elsewhere, a heartbeat line per operation still
/// running; with `--json`, events instead of lines.
pub struct ApplyProgress {
    /// The bar (hidden off a terminal, in CI and with `--json`).
    pub bar: ProgressBar,
    /// Colour on stdout.
    pub color: bool,
    events: Option<std::sync::Arc<crate::events::Events>>,
    running: Mutex<BTreeMap<String, (Action, Instant)>>,
}

impl ApplyProgress {
    /// Progress over `total` operations of an apply (or a destroy).
    pub fn new(
        total: u64,
        color: bool,
        destroy: bool,
        events: Option<std::sync::Arc<crate::events::Events>>,
    ) -> ApplyProgress {
        let bar = if events.is_some() {
            ProgressBar::hidden()
        } else {
            progress(total, if destroy { "destroying" } else { "applying" })
        };
        ApplyProgress { bar, color, events, running: Mutex::new(BTreeMap::new()) }
    }

    /// Flushes buffered lines (every line is flushed as it is written; kept for callers).
    pub fn flush(&self) {
        let _ = std::io::stdout().flush();
    }

    /// Writes a result line on stdout: above the bar on a terminal (the bar is cleared, the line
    /// printed, the bar drawn again), else as is; flushed at once.
    fn line(&self, text: &str) {
        let print = || {
            let mut o = std::io::stdout().lock();
            let _ = writeln!(o, "{text}");
            let _ = o.flush();
        };
        if self.bar.is_hidden() { print() } else { self.bar.suspend(print) }
    }

    /// What the bar says it waits on: the longest-running operation and how many more.
    fn waiting_message(&self) {
        if self.bar.is_hidden() {
            return;
        }
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let oldest = running.iter().min_by_key(|(_, (_, t))| *t);
        let msg = match oldest {
            None => "finishing".to_string(),
            Some((addr, (a, t))) => {
                let more = running.len() - 1;
                let more = if more > 0 { format!(" and {more} more") } else { String::new() };
                format!("{} {addr} ({}s){more}", doing(*a), t.elapsed().as_secs())
            }
        };
        self.bar.set_message(msg);
    }

    /// Every `interval`: a heartbeat for each operation running that long (a line, or an
    /// `apply_progress` event), and the bar's message refreshed. Runs until aborted.
    pub fn heartbeats(self: &std::sync::Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval.min(Duration::from_secs(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_beat = Instant::now();
            loop {
                tick.tick().await;
                me.waiting_message();
                if last_beat.elapsed() < interval {
                    continue;
                }
                last_beat = Instant::now();
                me.beat(interval);
            }
        })
    }

    fn beat(&self, interval: Duration) {
        let due: Vec<(String, Action, u64)> = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, (_, t))| t.elapsed() >= interval)
            .map(|(a, (act, t))| (a.clone(), *act, t.elapsed().as_secs()))
            .collect();
        for (addr, action, secs) in due {
            let text = format!("{addr}: still {}... [{secs}s elapsed]", doing(action));
            match &self.events {
                Some(ev) => ev.emit(
                    "info",
                    "apply_progress",
                    &text,
                    serde_json::json!({ "hook": { "address": addr, "action": action, "elapsed_seconds": secs } }),
                ),
                None if self.bar.is_hidden() => self.line(&text),
                None => {}
            }
        }
    }
}

impl Observer for ApplyProgress {
    fn started(&self, c: &Change) {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(c.address.to_string(), (c.action, Instant::now()));
        if let Some(ev) = &self.events {
            let text = format!("{}: {}...", c.address, doing(c.action));
            ev.emit(
                "info",
                "apply_start",
                &text,
                serde_json::json!({ "hook": { "address": c.address.to_string(), "action": c.action } }),
            );
        }
        self.waiting_message();
    }

    fn finished(&self, c: &Change, r: &NodeResult, elapsed: Duration) {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).remove(&c.address.to_string());
        let st = meshform_engine::plan::render::Style::new(self.color);
        let secs = elapsed.as_secs_f64();
        let (line, event) = match r {
            NodeResult::Done { id } => {
                let verb = match c.action {
                    Action::Create => "created",
                    Action::Adopt => "adopted",
                    Action::Update => "updated",
                    Action::Replace => "replaced",
                    Action::Delete if c.delete_effect.is_some() => "released (kept, what meshform set removed)",
                    Action::Delete => "destroyed",
                    Action::Forget => "forgotten (removed from state, the object kept)",
                    Action::Read => "read",
                    Action::NoOp => "unchanged",
                };
                let shown_id = id.as_ref().filter(|_| c.action != Action::Delete);
                let id_text = shown_id.map(|i| format!(" [id={i}]")).unwrap_or_default();
                let plain = format!("{}: {verb}{id_text} ({secs:.1}s)", c.address);
                let ev = serde_json::json!({ "hook": { "address": c.address.to_string(), "action": c.action, "id": shown_id, "elapsed_seconds": secs } });
                (
                    format!("{} {}: {verb}{id_text} ({secs:.1}s)", st.action(c.action, c.action.symbol()), c.address),
                    Some(("apply_complete", plain, ev, "info")),
                )
            }
            NodeResult::Failed(m) => {
                let plain = format!("{}: {} failed: {m}", c.address, c.action.verb());
                let ev = serde_json::json!({ "hook": { "address": c.address.to_string(), "action": c.action, "error": m.to_string(), "hint": m.hint, "elapsed_seconds": secs } });
                (
                    format!("{} {}: {} failed: {m}", st.red("!"), c.address, c.action.verb()),
                    Some(("apply_errored", plain, ev, "error")),
                )
            }
            NodeResult::Cancelled | NodeResult::Skipped { .. } => return,
        };
        self.bar.inc(1);
        match (&self.events, event) {
            (Some(evs), Some((kind, plain, fields, level))) => evs.emit(level, kind, &plain, fields),
            _ => self.line(&line),
        }
        self.waiting_message();
    }
}

/// Asks for confirmation on a terminal; `Ok(false)` when the answer is not "yes".
pub fn confirm(question: &str) -> Result<bool, String> {
    if !std::io::stdin().is_terminal() {
        return Err("refusing to apply without --auto-approve: standard input is not a terminal".into());
    }
    print!("{question}\n  Only 'yes' is accepted: ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).map_err(|e| e.to_string())?;
    Ok(answer.trim() == "yes")
}
