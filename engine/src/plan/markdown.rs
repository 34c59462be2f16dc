//! The Markdown rendering of a plan, for a pull-request comment: a summary table, then one
//! collapsible diff per object.

use std::fmt::Write;

use super::render::{attr_lines, headline, summary_line};
use super::{Action, Plan};

/// Renders a plan as GitHub-flavoured Markdown.
pub fn render_markdown(p: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### meshform plan\n");
    if !p.drift.is_empty() {
        let _ = writeln!(out, "**{} object(s) changed outside meshform since the last apply:**\n", p.drift.len());
        for d in &p.drift {
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
    if p.visible_changes().next().is_none() {
        let _ = writeln!(out, "**No changes.** Live objects match the desired state.");
        return out;
    }
    let _ = writeln!(out, "**{}**\n", summary_line(p));
    let _ = writeln!(out, "| | Object | Action |\n|---|---|---|");
    for c in p.visible_changes() {
        let _ = writeln!(out, "| `{}` | `{}` | {} |", c.action.symbol(), c.address, headline(c).replace('|', "\\|"));
    }
    out.push('\n');
    for c in p.visible_changes() {
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
        out.push_str("```\n\n</details>\n\n");
    }
    out
}
