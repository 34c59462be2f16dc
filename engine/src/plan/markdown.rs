//! The Markdown rendering of a plan, for a pull-request comment: a summary table, then one
//! collapsible diff per object.

use std::fmt::Write;

use super::render::{attr_lines, headline, summary_line};
use super::{Action, Change, Drift, Plan};
use crate::drift::DriftReport;

/// GitHub's limit on the length of a pull-request comment, in characters.
pub const COMMENT_LIMIT: usize = 65_536;

/// Renders a plan as GitHub-flavoured Markdown for a pull-request comment: at most
/// [`COMMENT_LIMIT`] characters, every changed address named (identical changes of a block's
/// instances grouped), details collapsed and left out past the limit with a note pointing at
/// the full rendering (`meshform show PLANFILE --format markdown`, [`render_markdown_full`]).
pub fn render_markdown(p: &Plan) -> String {
    render_markdown_within(p, Some(COMMENT_LIMIT))
}

/// Renders a plan as Markdown with every detail, whatever its length.
pub fn render_markdown_full(p: &Plan) -> String {
    render_markdown_within(p, None)
}

fn render_markdown_within(p: &Plan, limit: Option<usize>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### meshform plan\n");
    if !p.drift.is_empty() {
        let _ = writeln!(out, "**{} object(s) changed outside meshform since the last apply:**\n", p.drift.len());
        let mut list = String::new();
        drift_list(&p.drift, &mut list);
        // A fleet's drift takes at most a quarter of the comment.
        match limit.map(|l| l / 4).filter(|room| list.len() > *room) {
            Some(room) => {
                let mut shown = 0;
                for line in list.lines().take_while(|l| !l.is_empty()) {
                    if out.len() + line.len() > room {
                        break;
                    }
                    let _ = writeln!(out, "{line}");
                    shown += 1;
                }
                let _ = writeln!(
                    out,
                    "- _and {} more; `meshform show PLANFILE --format markdown` lists them all_\n",
                    p.drift.len() - shown
                );
            }
            None => out.push_str(&list),
        }
    }
    findings_list(&p.findings, &mut out);
    for (from, to) in &p.moves {
        let _ = writeln!(out, "- `{from}` moves to `{to}` (the object is not touched)");
    }
    if !p.moves.is_empty() {
        out.push('\n');
    }
    if p.mode == super::Mode::RefreshOnly {
        if p.drift.is_empty() {
            let _ = writeln!(out, "**No changes.** The state matches what is live.");
        } else {
            let _ = writeln!(
                out,
                "This is a refresh-only plan: applying it records the changes above in state and changes nothing live.\n\n**{}**",
                summary_line(p)
            );
        }
        return out;
    }
    if p.visible_changes().next().is_none() {
        if p.moves.is_empty() {
            let _ = writeln!(out, "**No changes.** Live objects match the desired state.");
        } else {
            let _ = writeln!(out, "**{}**", summary_line(p));
        }
        return out;
    }
    let _ = writeln!(out, "**{}**\n", summary_line(p));
    changes(&p.visible_changes().collect::<Vec<_>>(), limit, &mut out);
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
        changes(&r.pending.iter().collect::<Vec<_>>(), Some(COMMENT_LIMIT), &mut out);
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

/// Counts by type and action.
fn type_table(cs: &[&Change], out: &mut String) {
    const COLUMNS: [Action; 7] =
        [Action::Create, Action::Update, Action::Replace, Action::Delete, Action::Adopt, Action::Forget, Action::Read];
    let mut by_type: std::collections::BTreeMap<&str, [usize; 7]> = std::collections::BTreeMap::new();
    for c in cs {
        if let Some(i) = COLUMNS.iter().position(|a| *a == c.action) {
            by_type.entry(c.ty.as_str()).or_default()[i] += 1;
        }
    }
    let _ = writeln!(
        out,
        "| Type | `+` create | `~` update | `-/+` replace | `-` destroy | `<+` adopt | `.` forget | `<=` read |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for (ty, n) in by_type {
        let cells: Vec<String> = n.iter().map(|&x| if x == 0 { String::new() } else { x.to_string() }).collect();
        let _ = writeln!(out, "| `{ty}` | {} |", cells.join(" | "));
    }
    out.push('\n');
}

/// The summary by type, a table naming every change (identical instances grouped), then one
/// collapsible diff per group, as many as `limit` leaves room for.
fn changes(cs: &[&Change], limit: Option<usize>, out: &mut String) {
    type_table(cs, out);
    let groups = super::group::group(cs);
    // The table names every change; when it alone would not fit, key lists are shortened
    // ("and N more") and, past that, rows are left out, each time with a note saying so.
    let note_room = 400;
    let fits = |table: &str, out: &str| limit.is_none_or(|l| out.len() + table.len() + note_room <= l);
    let mut table = object_table(&groups, None);
    let mut shortened = false;
    for max in [400, 160, 60, 0] {
        if fits(&table, out) {
            break;
        }
        table = object_table(&groups, Some(max));
        shortened = true;
    }
    let mut rows_left_out = 0;
    if !fits(&table, out) {
        let room = limit.unwrap_or(usize::MAX).saturating_sub(out.len() + 2 * note_room);
        let mut kept = String::new();
        for (i, line) in table.lines().enumerate() {
            if kept.len() + line.len() + 1 > room && i > 1 {
                rows_left_out = table.lines().count().saturating_sub(i + 1);
                break;
            }
            kept.push_str(line);
            kept.push('\n');
        }
        table = kept + "\n";
    }
    out.push_str(&table);
    if rows_left_out > 0 {
        let _ = writeln!(
            out,
            "_{rows_left_out} more group(s) of changes left out to fit a pull-request comment; `meshform show PLANFILE --format markdown` prints them all._\n"
        );
    } else if shortened {
        let _ = writeln!(
            out,
            "_Key lists shortened to fit a pull-request comment; `meshform show PLANFILE --format markdown` names every instance._\n"
        );
    }
    let mut left_out = 0;
    for g in &groups {
        let first = g.members[0];
        let mut d = String::new();
        let title = if g.members.len() == 1 {
            format!("{} {}", first.action.symbol(), first.address)
        } else {
            format!("{} {}[*] × {}", first.action.symbol(), g.block(), g.members.len())
        };
        let _ = writeln!(d, "<details><summary><code>{title}</code></summary>\n");
        if g.members.len() > 1 {
            let _ = writeln!(d, "Each of the {} instances, with `${{each.key}}` its key:\n", g.members.len());
        }
        d.push_str(&super::group::without_key(first, &diff_block(first)));
        d.push_str("\n</details>\n\n");
        match limit {
            Some(l) if out.len() + d.len() + note_room > l => left_out += 1,
            _ => out.push_str(&d),
        }
    }
    if left_out > 0 {
        let _ = writeln!(
            out,
            "_{left_out} of {} change details left out to fit a pull-request comment ({} characters). Every change is named above; `meshform show PLANFILE --format markdown` of the saved plan (`meshform plan --out PLANFILE`) prints them all._",
            groups.len(),
            COMMENT_LIMIT
        );
    }
}

/// The table naming every group of changes; `max_keys`: the length key lists are shortened to.
fn object_table(groups: &[super::group::Group], max_keys: Option<usize>) -> String {
    let mut out = String::from("| | Object | Action |\n|---|---|---|\n");
    for g in groups {
        let first = g.members[0];
        let what = super::group::without_key(first, &headline(first)).replace('|', "\\|");
        let object = if g.members.len() == 1 {
            format!("`{}`", first.address)
        } else {
            let keys: Vec<String> = g.keys().iter().map(|k| format!("`{k}`")).collect();
            let keys = match max_keys {
                Some(max) => super::group::key_list(&keys, max),
                None => keys.join(", "),
            };
            format!("`{}[*]` × {}: {keys}", g.block(), g.members.len())
        };
        let _ = writeln!(out, "| `{}` | {object} | {what} |", first.action.symbol());
    }
    out.push('\n');
    out
}

/// One change's attribute diff as a fenced `diff` block.
fn diff_block(c: &Change) -> String {
    let mut out = String::from("```diff\n");
    let (lines, hidden) = attr_lines(c);
    for l in &lines {
        let sym = if l.symbol == "~" { "!" } else { l.symbol };
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
    if lines.is_empty() && matches!(c.action, Action::Delete | Action::Forget) {
        let _ = writeln!(out, "{} (object)", if c.action == Action::Delete { "-" } else { "#" });
    }
    for o in &c.object_changes {
        let sym = if o.action == "delete" { "-" } else { "+" };
        let why = o.reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default();
        let _ = writeln!(out, "{sym} {} ({}{why})", o.object, o.action);
    }
    out.push_str("```\n");
    out
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
