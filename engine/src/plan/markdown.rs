//! The Markdown rendering of a plan, for a pull-request comment: a summary table, then one
//! collapsible diff per object.

use std::fmt::Write;

use super::render::{attr_lines, headline, summary_line};
use super::{Action, Change, Drift, Plan};
use crate::drift::DriftReport;

/// Renders a plan as GitHub-flavoured Markdown.
pub fn render_markdown(p: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### meshform plan\n");
    if !p.drift.is_empty() {
        let _ = writeln!(out, "**{} object(s) changed outside meshform since the last apply:**\n", p.drift.len());
        drift_list(&p.drift, &mut out);
    }
    findings_list(&p.findings, &mut out);
    if p.visible_changes().next().is_none() {
        let _ = writeln!(out, "**No changes.** Live objects match the desired state.");
        return out;
    }
    let _ = writeln!(out, "**{}**\n", summary_line(p));
    changes(&p.visible_changes().collect::<Vec<_>>(), &mut out);
    out
}

/// Renders a drift report (`meshform drift --format markdown`), for an issue or a chat alert.
pub fn render_drift_markdown(r: &DriftReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### meshform drift\n");
    let failed: Vec<_> = r.checks.iter().filter(|c| !c.passed).collect();
    if !r.found() {
        let _ = writeln!(
            out,
            "**No drift.** Live objects match the state and the desired state ({} checks passed).",
            r.checks.len()
        );
        return out;
    }
    let _ = writeln!(
        out,
        "**Drift found:** {} object(s) changed outside meshform, {} desired change(s) not applied, {} failed check(s).\n",
        r.drift.len(),
        r.pending.len(),
        failed.len()
    );
    findings_list(&r.findings, &mut out);
    if !r.drift.is_empty() {
        let _ = writeln!(out, "#### Changed outside meshform\n");
        drift_list(&r.drift, &mut out);
        for d in r.drift.iter().filter(|d| !d.deleted) {
            let _ = writeln!(out, "<details><summary><code>{}</code></summary>\n", d.address);
            out.push_str("```diff\n");
            for a in &d.attributes {
                let show =
                    |v: &Option<crate::value::Value>| v.as_ref().map_or("(absent)".to_string(), |v| v.to_string());
                let _ = writeln!(out, "- {} = {}", a.name, show(&a.recorded));
                let _ = writeln!(out, "+ {} = {}", a.name, show(&a.live));
            }
            out.push_str("```\n\n</details>\n\n");
        }
    }
    if !r.pending.is_empty() {
        let _ = writeln!(out, "#### Desired-state changes not applied yet\n");
        changes(&r.pending.iter().collect::<Vec<_>>(), &mut out);
    }
    if !failed.is_empty() {
        let _ = writeln!(out, "#### Failed checks\n");
        for c in failed {
            let _ = writeln!(out, "- `{}`: {}", c.name, c.message.replace('\n', " "));
        }
    }
    out
}

fn drift_list(drift: &[Drift], out: &mut String) {
    for d in drift {
        let what = if d.deleted {
            "deleted".to_string()
        } else {
            let names: Vec<String> = d.attributes.iter().map(|a| format!("`{}`", a.name)).collect();
            format!("changed: {}", names.join(", "))
        };
        let _ = writeln!(out, "- `{}` {what}", d.address);
    }
    out.push('\n');
}

/// A summary table, then one collapsible diff per change.
fn changes(cs: &[&Change], out: &mut String) {
    let _ = writeln!(out, "| | Object | Action |\n|---|---|---|");
    for c in cs {
        let _ = writeln!(out, "| `{}` | `{}` | {} |", c.action.symbol(), c.address, headline(c).replace('|', "\\|"));
    }
    out.push('\n');
    for c in cs {
        let (lines, hidden) = attr_lines(c);
        let _ = writeln!(out, "<details><summary><code>{} {}</code></summary>\n", c.action.symbol(), c.address);
        out.push_str("```diff\n");
        for l in &lines {
            let sym = match (c.action, l.symbol) {
                (_, "~") => "!",
                (_, s) => s,
            };
            let forces = if l.forces { "  # forces replacement" } else { "" };
            if l.text.contains('\n') {
                let _ = writeln!(out, "{sym} {} ={forces}", l.name);
                for line in l.text.lines().filter(|x| *x != "<<EOT" && *x != "EOT") {
                    let _ = writeln!(out, "{line}");
                }
            } else {
                let _ = writeln!(out, "{sym} {} = {}{forces}", l.name, l.text);
            }
        }
        if hidden > 0 {
            let _ = writeln!(out, "# ({hidden} unchanged attributes hidden)");
        }
        if lines.is_empty() && c.action == Action::Delete {
            let _ = writeln!(out, "- (object)");
        }
        for o in &c.object_changes {
            let sym = if o.action == "delete" { "-" } else { "+" };
            let why = o.reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default();
            let _ = writeln!(out, "{sym} {} ({}{why})", o.object, o.action);
        }
        out.push_str("```\n\n</details>\n\n");
    }
}

fn findings_list(findings: &[crate::provider::Finding], out: &mut String) {
    if findings.is_empty() {
        return;
    }
    let _ = writeln!(out, "**Found, and not changed by this plan:**\n");
    for f in findings {
        let _ = writeln!(out, "- :warning: {}", f.message);
    }
    out.push('\n');
}
