//! `drift`: what changed outside meshform, what is not applied yet, and the checks.

use std::path::Path;

use meshform_engine::drift::{DriftReport, detect_drift};
use meshform_engine::plan::render::{Style, render_change, render_drift};
use meshform_engine::plan::{json, markdown};

use super::open::read;
use super::{Out, load_targeted};
use crate::exit::{CHANGES, OK};
use crate::{Format, VarArgs, ui};
use meshform_engine::plan::Mode;

pub(crate) async fn cmd_drift(
    out: &Out,
    file: &Path,
    vars: &VarArgs,
    targets: &[String],
    parallelism: Option<u32>,
    format: Format,
    events: bool,
) -> u8 {
    let events = events.then(crate::events::Events::new);
    let out = &match (&events, format) {
        (Some(ev), _) => {
            ev.version();
            out.with_json_errors(super::JsonErrors::Events)
        }
        (None, Format::Json) => out.with_json_errors(super::JsonErrors::Document),
        _ => out.clone(),
    };
    let (s, targets) = match load_targeted(out, file, vars, Mode::Normal, targets).await {
        Ok(x) => x,
        Err(c) => return c,
    };
    // One consistent version, read without the lock: drift neither waits for nor blocks an apply.
    let state = match read(out, &s.cfg).await {
        Ok((_, snap)) => snap.state,
        Err(c) => return c,
    };
    let state = &state;
    let report =
        match ui::while_reading(detect_drift(&s, state, &targets, s.parallelism(parallelism)), &s, state, true).await {
            Ok(r) => r,
            Err(d) => return out.diags(&s, d),
        };
    if let Some(ev) = &events {
        drift_events(ev, &report);
        return if report.found() { CHANGES } else { OK };
    }
    match format {
        Format::Json => print!("{}", json::render_drift_json(&report)),
        Format::Markdown => print!("{}", markdown::render_drift_markdown(&report)),
        Format::Human => print!("{}", render_drift_report(&report, out.color)),
    }
    if report.found() { CHANGES } else { OK }
}

/// A drift report as `--json` events: each drifted object, each pending change, each check and
/// finding, then the summary.
fn drift_events(ev: &crate::events::Events, r: &DriftReport) {
    use serde_json::json;
    for d in &r.drift {
        let msg = format!("{}: {} outside meshform", d.address, if d.deleted { "deleted" } else { "changed" });
        ev.emit("info", "resource_drift", &msg, json!({ "change": json::drift_json(d) }));
    }
    for c in &r.pending {
        let msg = format!("{}: not applied yet ({})", c.address, c.action.verb());
        ev.emit("info", "planned_change", &msg, json!({ "change": json::change_json(c) }));
    }
    for f in &r.findings {
        ev.emit("warn", "finding", &f.message, json!({ "finding": f }));
    }
    for c in &r.checks {
        ev.emit(if c.passed { "info" } else { "error" }, "check", &c.name, json!({ "check": c }));
    }
    let failed = r.checks.iter().filter(|c| !c.passed).count();
    let msg = format!(
        "drift: {} changed outside meshform, {} not applied, {failed} failed check(s), {} finding(s)",
        r.drift.len(),
        r.pending.len(),
        r.findings.len()
    );
    ev.emit(
        "info",
        "drift_summary",
        &msg,
        json!({ "found": r.found(), "drifted": r.drift.len(), "pending": r.pending.len(), "failed_checks": failed, "findings": r.findings.len() }),
    );
}

fn render_drift_report(r: &DriftReport, color: bool) -> String {
    let st = Style::new(color);
    let mut s = String::new();
    if !r.drift.is_empty() {
        s.push_str(&st.bold("Changed outside meshform since the last apply:\n\n"));
        render_drift(&r.drift, st, &mut s);
    }
    meshform_engine::plan::render::render_findings(&r.findings, st, &mut s);
    if !r.pending.is_empty() {
        s.push_str(&st.bold("Desired-state changes not applied yet:\n\n"));
        for c in &r.pending {
            render_change(c, st, &mut s);
        }
    }
    if !r.checks.is_empty() {
        s.push_str(&st.bold("Checks:\n"));
        for c in &r.checks {
            if c.passed {
                s.push_str(&format!("    {} {}\n", st.green("ok  "), c.name));
            } else {
                s.push_str(&format!("    {} {}: {}\n", st.red("FAIL"), c.name, c.message));
            }
        }
        s.push('\n');
    }
    let failed = r.checks.iter().filter(|c| !c.passed).count();
    if r.found() {
        s.push_str(&st.bold(&format!(
            "Drift found: {} object(s) changed outside meshform, {} desired change(s) not applied, {} failed check(s), {} finding(s).\n",
            r.drift.len(),
            r.pending.len(),
            failed,
            r.findings.len()
        )));
    } else {
        s.push_str(&st.green(&format!(
            "No drift: live objects match the state and the desired state ({} checks passed).\n",
            r.checks.len()
        )));
    }
    s
}
