//! Terminal habits: colour only when it can be seen and is wanted (NO_COLOR, `--no-color`,
//! non-terminals), progress bars only on a terminal outside CI, results on stdout.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

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

/// Prints one line per finished operation on stdout and advances the bar.
pub struct ApplyProgress {
    /// The bar.
    pub bar: ProgressBar,
    /// Colour on stdout.
    pub color: bool,
    out: Mutex<std::io::BufWriter<std::io::Stdout>>,
}

impl ApplyProgress {
    /// Progress over `total` operations.
    pub fn new(total: u64, color: bool) -> ApplyProgress {
        ApplyProgress {
            bar: progress(total, "applying"),
            color,
            out: Mutex::new(std::io::BufWriter::new(std::io::stdout())),
        }
    }

    /// Flushes buffered lines.
    pub fn flush(&self) {
        if let Ok(mut o) = self.out.lock() {
            let _ = o.flush();
        }
    }
}

impl Observer for ApplyProgress {
    fn finished(&self, c: &Change, r: &NodeResult, elapsed: Duration) {
        let st = meshform_engine::plan::render::Style::new(self.color);
        let line = match r {
            NodeResult::Done { id } => {
                let verb = match c.action {
                    Action::Create => "created",
                    Action::Adopt => "adopted",
                    Action::Update => "updated",
                    Action::Replace => "replaced",
                    Action::Delete if c.delete_effect.is_some() => "released (kept, what meshform set removed)",
                    Action::Delete => "destroyed",
                    Action::Read => "read",
                    Action::NoOp => "unchanged",
                };
                let id = id
                    .as_ref()
                    .filter(|_| c.action != Action::Delete)
                    .map(|i| format!(" [id={i}]"))
                    .unwrap_or_default();
                format!(
                    "{} {}: {verb}{id} ({:.1}s)",
                    st.action(c.action, c.action.symbol()),
                    c.address,
                    elapsed.as_secs_f64()
                )
            }
            NodeResult::Failed(m) => format!("{} {}: {} failed: {m}", st.red("!"), c.address, c.action.verb()),
            NodeResult::Cancelled => return,
            NodeResult::Skipped { .. } => return,
        };
        self.bar.inc(1);
        if let Ok(mut o) = self.out.lock() {
            let _ = writeln!(o, "{line}");
            if self.bar.is_hidden() {
                return;
            }
            let _ = o.flush();
        }
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
