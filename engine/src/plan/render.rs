//! The human rendering of a plan: attribute-level diffs with `+ ~ -/+ -` symbols that read
//! without colour, multi-line values as unified diffs, sensitive values as `(sensitive)`.

use std::collections::BTreeSet;
use std::fmt::Write;

use similar::TextDiff;

use super::{Action, Change, Drift, Plan, attr_diff, same};
use crate::value::{Value, render_key};

/// ANSI styles, or nothing when colour is off.
#[derive(Clone, Copy, Debug)]
pub struct Style {
    on: bool,
}

impl Style {
    /// Colour on or off.
    pub fn new(color: bool) -> Style {
        Style { on: color }
    }

    fn wrap(&self, code: &str, s: &str) -> String {
        if self.on { format!("\x1b[{code}m{s}\x1b[0m") } else { s.to_string() }
    }

    /// Green.
    pub fn green(&self, s: &str) -> String {
        self.wrap("32", s)
    }
    /// Yellow.
    pub fn yellow(&self, s: &str) -> String {
        self.wrap("33", s)
    }
    /// Red.
    pub fn red(&self, s: &str) -> String {
        self.wrap("31", s)
    }
    /// Cyan.
    pub fn cyan(&self, s: &str) -> String {
        self.wrap("36", s)
    }
    /// Bold.
    pub fn bold(&self, s: &str) -> String {
        self.wrap("1", s)
    }
    /// Dim.
    pub fn dim(&self, s: &str) -> String {
        self.wrap("2", s)
    }

    /// A symbol in its action's colour.
    pub fn action(&self, a: Action, s: &str) -> String {
        match a {
            Action::Create | Action::Adopt => self.green(s),
            Action::Update => self.yellow(s),
            Action::Replace | Action::Delete => self.red(s),
            Action::Read | Action::Forget => self.cyan(s),
            Action::NoOp => s.to_string(),
        }
    }
}

/// One line of an attribute diff, before colouring: a symbol, the name, and the text.
#[derive(Clone, Debug, PartialEq)]
pub struct AttrLine {
    /// `+`, `-`, `~`.
    pub symbol: &'static str,
    /// Attribute name.
    pub name: String,
    /// What follows `name =`; may span several lines.
    pub text: String,
    /// This attribute forces replacement.
    pub forces: bool,
}

fn shown(c: &Change, name: &str, v: &Value) -> String {
    if c.sensitive.contains(name) && !matches!(v, Value::Unknown | Value::Null) {
        return "(sensitive)".into();
    }
    v.to_string()
}

/// How a change of a sensitive value is shown: that it changed, and for a map (a Secret's data)
/// which keys were added, removed or changed; never a value.
pub fn sensitive_change(before: &Value, after: &Value) -> String {
    let (Value::Map(b), Value::Map(a)) = (before, after) else {
        return "(sensitive value changed)".into();
    };
    let keys: BTreeSet<&String> = b.keys().chain(a.keys()).collect();
    let parts: Vec<String> = keys
        .into_iter()
        .filter_map(|k| match (b.get(k), a.get(k)) {
            (Some(_), None) => Some(format!("{} removed", render_key(k))),
            (None, Some(_)) => Some(format!("{} added", render_key(k))),
            (Some(x), Some(y)) if !x.same_as(y) => Some(format!("{} changed", render_key(k))),
            _ => None,
        })
        .collect();
    if parts.is_empty() {
        return "(sensitive value changed)".into();
    }
    format!("(sensitive value changed: {})", parts.join(", "))
}

fn multiline(v: Option<&Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) if s.contains('\n') => Some(s.clone()),
        Some(v @ (Value::Map(_) | Value::List(_))) if v.to_string().len() > 70 => Some(pretty(v, 0)),
        _ => None,
    }
}

/// A list or map laid out one item per line, for diffing (short items stay on one line).
fn pretty(v: &Value, indent: usize) -> String {
    if indent > 0 && v.to_string().len() <= 60 {
        return v.to_string();
    }
    let pad = "  ".repeat(indent + 1);
    let end = "  ".repeat(indent);
    match v {
        Value::Map(m) if !m.is_empty() => {
            let mut s = String::from("{\n");
            for (k, x) in m {
                let _ = writeln!(s, "{pad}{} = {}", render_key(k), pretty(x, indent + 1));
            }
            s.push_str(&end);
            s.push('}');
            s
        }
        Value::List(l) if !l.is_empty() => {
            let mut s = String::from("[\n");
            for x in l {
                let _ = writeln!(s, "{pad}{},", pretty(x, indent + 1));
            }
            s.push_str(&end);
            s.push(']');
            s
        }
        other => other.to_string(),
    }
}

/// The attribute lines of a change: every attribute for create and delete, the changed ones
/// for update and replace. Also returns how many unchanged attributes were hidden.
pub fn attr_lines(c: &Change) -> (Vec<AttrLine>, usize) {
    let mut lines = Vec::new();
    let mut hidden = 0;
    for (name, before, after) in attr_diff(c.before.as_ref(), c.after.as_ref()) {
        if shown_elsewhere(c, name) {
            continue;
        }
        let forces = c.replace_because.iter().any(|r| r == name);
        let sens = c.sensitive.contains(name);
        let (symbol, text) = match c.action {
            Action::Forget => continue,
            Action::Create | Action::Read => match after {
                None | Some(Value::Null) => continue,
                Some(v) => (
                    "+",
                    multiline(Some(v))
                        .filter(|_| !sens)
                        .map_or_else(|| shown(c, name, v), |m| block(&add_prefix(&m, "+ "))),
                ),
            },
            Action::Adopt if c.before.is_none() => match after {
                None | Some(Value::Null) => continue,
                Some(v) => (
                    "+",
                    multiline(Some(v))
                        .filter(|_| !sens)
                        .map_or_else(|| shown(c, name, v), |m| block(&add_prefix(&m, "+ "))),
                ),
            },
            Action::Delete => match before {
                None | Some(Value::Null) => continue,
                Some(v) => (
                    "-",
                    multiline(Some(v))
                        .filter(|_| !sens)
                        .map_or_else(|| shown(c, name, v), |m| block(&add_prefix(&m, "- "))),
                ),
            },
            Action::Update | Action::Replace | Action::NoOp | Action::Adopt => {
                if same(before, after) {
                    hidden += 1;
                    continue;
                }
                match (before, after) {
                    (None | Some(Value::Null), Some(a)) => ("+", shown(c, name, a)),
                    (Some(b), None | Some(Value::Null)) => ("-", format!("{} -> null", shown(c, name, b))),
                    (Some(b), Some(a)) => {
                        let text = match (multiline(Some(b)), multiline(Some(a))) {
                            _ if sens => sensitive_change(b, a),
                            (Some(x), Some(y)) => block(&unified(&x, &y)),
                            _ => format!("{} -> {}", shown(c, name, b), shown(c, name, a)),
                        };
                        ("~", text)
                    }
                    (None, None) => continue,
                }
            }
        };
        lines.push(AttrLine { symbol, name: name.to_string(), text, forces });
    }
    (lines, hidden)
}

/// Whether attribute `name` is shown through another one that this change knows (a manifest's
/// source through its objects), so printing it would say the same thing twice.
fn shown_elsewhere(c: &Change, name: &str) -> bool {
    let Some(other) = c.shown_by.get(name) else { return false };
    let known = |m: Option<&crate::value::Map>| {
        m.and_then(|m| m.get(other)).is_some_and(|v| !v.has_unknown() && !matches!(v, Value::Null | Value::Redacted(_)))
    };
    !c.sensitive.contains(other)
        && (if c.action == Action::Delete { known(c.before.as_ref()) } else { known(c.after.as_ref()) })
}

fn add_prefix(text: &str, prefix: &str) -> String {
    text.lines().map(|l| format!("{prefix}{l}\n")).collect()
}

fn block(body: &str) -> String {
    let mut s = String::from("<<EOT\n");
    s.push_str(body);
    if !body.ends_with('\n') {
        s.push('\n');
    }
    s.push_str("EOT");
    s
}

/// A unified diff of two texts, without file headers.
pub fn unified(a: &str, b: &str) -> String {
    let diff = TextDiff::from_lines(a, b);
    let mut out = String::new();
    let mut unified = diff.unified_diff();
    let hunks: Vec<_> = unified.context_radius(3).iter_hunks().collect();
    let separate = hunks.len() > 1;
    for hunk in hunks {
        if separate {
            // Where each part is, as `diff -u` says it: lines left out in between are unchanged.
            let _ = writeln!(out, "{}", hunk.header());
        }
        for change in hunk.iter_changes() {
            let sign = match change.tag() {
                similar::ChangeTag::Delete => "- ",
                similar::ChangeTag::Insert => "+ ",
                similar::ChangeTag::Equal => "  ",
            };
            let line = change.value();
            out.push_str(sign);
            out.push_str(line.strip_suffix('\n').unwrap_or(line));
            out.push('\n');
        }
    }
    out
}

/// Why a change happens, as shown after its address.
pub fn headline(c: &Change) -> String {
    let what = match c.action {
        Action::NoOp => "no changes".to_string(),
        Action::Read => "read during apply".to_string(),
        Action::Create => "create".to_string(),
        Action::Update => "update in place".to_string(),
        Action::Replace => {
            let order = if c.create_before_destroy { "create before destroy" } else { "destroy, then create" };
            match c.replace_because.is_empty() {
                true => format!("replace ({order})"),
                false => format!("replace ({order}): {} forces replacement", c.replace_because.join(", ")),
            }
        }
        Action::Delete if c.delete_effect.is_some() => "release (the object is kept)".to_string(),
        Action::Delete => "destroy".to_string(),
        Action::Adopt => "adopt an existing object".to_string(),
        Action::Forget => "forget: removed from state".to_string(),
    };
    let what = match &c.moved_from {
        Some(from) => format!("{what}; moved from {from}"),
        None => what,
    };
    match &c.reason {
        Some(r) if c.action != Action::Read => format!("{what}: {r}"),
        _ => what,
    }
}

/// Renders one change with its attribute lines.
pub fn render_change(c: &Change, st: Style, out: &mut String) {
    let sym = format!("{:>3}", c.action.symbol());
    let _ = writeln!(
        out,
        "{} {}  {}",
        st.action(c.action, &sym),
        st.bold(&c.address.to_string()),
        st.dim(&format!("({})", headline(c)))
    );
    let (lines, hidden) = attr_lines(c);
    let width = lines.iter().map(|l| l.name.len()).max().unwrap_or(0);
    for l in &lines {
        let sym = st.action(
            match l.symbol {
                "+" => Action::Create,
                "-" => Action::Delete,
                _ => Action::Update,
            },
            l.symbol,
        );
        let forces = if l.forces { st.red("  # forces replacement") } else { String::new() };
        if l.text.contains('\n') {
            let _ = writeln!(out, "      {sym} {:<width$} = {}{forces}", l.name, indent_rest(&l.text, "          "));
        } else {
            let _ = writeln!(out, "      {sym} {:<width$} = {}{forces}", l.name, l.text);
        }
    }
    if hidden > 0 {
        let s = if hidden == 1 { "" } else { "s" };
        let _ = writeln!(out, "        {}", st.dim(&format!("({hidden} unchanged attribute{s} hidden)")));
    }
    for o in &c.object_changes {
        let (a, sym) = if o.action == "delete" { (Action::Delete, "-") } else { (Action::Create, "+") };
        let why = o.reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default();
        let _ = writeln!(out, "      {} {}  {}", st.action(a, sym), o.object, st.dim(&format!("({}{why})", o.action)));
    }
    out.push('\n');
}

fn indent_rest(text: &str, pad: &str) -> String {
    let mut it = text.lines();
    let mut s = it.next().unwrap_or("").to_string();
    for l in it {
        s.push('\n');
        s.push_str(pad);
        s.push_str(l);
    }
    s
}

/// Renders what the refresh found changed outside meshform.
pub fn render_drift(drift: &[Drift], st: Style, out: &mut String) {
    for d in drift {
        if d.deleted {
            let _ = writeln!(
                out,
                "  {} {}  {}",
                st.red("-"),
                st.bold(&d.address.to_string()),
                st.dim("(deleted outside meshform)")
            );
            continue;
        }
        let _ = writeln!(
            out,
            "  {} {}  {}",
            st.yellow("~"),
            st.bold(&d.address.to_string()),
            st.dim("(changed outside meshform)")
        );
        for a in &d.attributes {
            let show = |v: &Option<Value>| match v {
                None => "null".to_string(),
                Some(v) if d.sensitive.contains(&a.name) => {
                    if matches!(v, Value::Null) {
                        "null".into()
                    } else {
                        "(sensitive)".into()
                    }
                }
                Some(v) => v.to_string(),
            };
            let sensitive = d.sensitive.contains(&a.name);
            match (multiline(a.recorded.as_ref()), multiline(a.live.as_ref())) {
                (Some(x), Some(y)) if !sensitive => {
                    let _ = writeln!(
                        out,
                        "      {} {} = {}",
                        st.yellow("~"),
                        a.name,
                        indent_rest(&block(&unified(&x, &y)), "          ")
                    );
                }
                _ => {
                    let text = match (&a.recorded, &a.live) {
                        (Some(x), Some(y)) if sensitive && !matches!(x, Value::Null) && !matches!(y, Value::Null) => {
                            sensitive_change(x, y)
                        }
                        _ => format!("{} -> {}", show(&a.recorded), show(&a.live)),
                    };
                    let _ = writeln!(out, "      {} {} = {text}", st.yellow("~"), a.name);
                }
            }
        }
    }
    out.push('\n');
}

/// Findings of the refresh that no change covers (see [`crate::provider::Finding`]).
pub fn render_findings(findings: &[crate::provider::Finding], st: Style, out: &mut String) {
    if findings.is_empty() {
        return;
    }
    let _ = writeln!(out, "{}\n", st.bold("Found, and not changed by this plan:"));
    for f in findings {
        let _ = writeln!(out, "  {} {}", st.red("!"), f.message);
    }
    out.push('\n');
}

/// The summary line.
pub fn summary_line(p: &Plan) -> String {
    let s = p.summary();
    let adopt = if s.adopt > 0 { format!("{} to adopt, ", s.adopt) } else { String::new() };
    let mut state_only = String::new();
    if s.moved > 0 {
        let _ = write!(state_only, ", {} to move", s.moved);
    }
    if s.forget > 0 {
        let _ = write!(state_only, ", {} to forget", s.forget);
    }
    let (made, gone) = p
        .changes
        .iter()
        .flat_map(|c| &c.object_changes)
        .fold((0, 0), |(m, g), o| if o.action == "delete" { (m, g + 1) } else { (m + 1, g) });
    let inside = if made + gone > 0 {
        format!(" Inside manifests: {made} object(s) to create, {gone} to delete.")
    } else {
        String::new()
    };
    if p.mode == super::Mode::RefreshOnly {
        return format!(
            "Refresh-only plan: {} object(s) changed outside meshform to record in state, {} deleted outside meshform to forget; nothing live changes.",
            p.drift.iter().filter(|d| !d.deleted).count(),
            s.forget
        );
    }
    format!("Plan: {adopt}{} to add, {} to change, {} to destroy{state_only}.{inside}", s.add, s.change, s.destroy)
}

/// Past this many changes, a plan groups identical changes of a block's instances (`--verbose`
/// shows each).
pub const GROUP_PAST: usize = 20;

/// Renders a whole plan for a terminal or a log, grouping identical instance changes past
/// [`GROUP_PAST`] changes.
pub fn render_plan(p: &Plan, color: bool) -> String {
    render_plan_with(p, color, false)
}

/// Renders one change per group of identical instance changes (see [`super::group`]).
fn render_groups(p: &Plan, st: Style, out: &mut String) {
    let cs: Vec<&Change> = p.visible_changes().collect();
    for g in super::group::group(&cs) {
        if g.members.len() == 1 {
            render_change(g.members[0], st, out);
            continue;
        }
        let first = g.members[0];
        let sym = format!("{:>3}", first.action.symbol());
        let title = format!("{}[*] × {}", g.block(), g.members.len());
        let mut lines = g.body.lines();
        let head = lines.next().unwrap_or("");
        let _ = writeln!(out, "{} {}  {}", st.action(first.action, &sym), st.bold(&title), st.dim(head));
        let keys: Vec<String> = g.keys().iter().map(|k| format!("{k:?}")).collect();
        let _ = writeln!(out, "      {}", st.dim(&format!("keys: {}", keys.join(", "))));
        for l in lines {
            let _ = writeln!(out, "{l}");
        }
    }
}

/// Renders a whole plan; `verbose`: every change on its own, however many.
pub fn render_plan_with(p: &Plan, color: bool, verbose: bool) -> String {
    let st = Style::new(color);
    let mut out = String::new();
    if !p.drift.is_empty() {
        let _ = writeln!(out, "{}\n", st.bold("Objects changed outside meshform since the last apply:"));
        render_drift(&p.drift, st, &mut out);
    }
    render_findings(&p.findings, st, &mut out);
    if p.mode == super::Mode::RefreshOnly {
        if p.drift.is_empty() {
            let _ = writeln!(out, "{}", st.green("No changes. The state matches what is live."));
        } else {
            let _ = writeln!(
                out,
                "This is a refresh-only plan: applying it records the changes above in state and changes nothing live.\n"
            );
            let _ = writeln!(out, "{}", st.bold(&summary_line(p)));
        }
        return out;
    }
    if !p.has_changes() && p.visible_changes().next().is_none() {
        let _ = writeln!(out, "{}", st.green("No changes. Live objects match the desired state."));
        return out;
    }
    let _ = writeln!(
        out,
        "meshform will perform these actions ({} create, {} update, {} replace, {} destroy, {} read, {} adopt, {} forget, {} move):\n",
        st.green("+"),
        st.yellow("~"),
        st.red("-/+"),
        st.red("-"),
        st.cyan("<="),
        st.green("<+"),
        st.cyan("."),
        st.cyan(">")
    );
    for (from, to) in &p.moves {
        let _ = writeln!(
            out,
            "{} {}  {}",
            st.cyan("  >"),
            st.bold(&from.to_string()),
            st.dim(&format!("(moves to {to}; the object is not touched)"))
        );
    }
    if !p.moves.is_empty() {
        out.push('\n');
    }
    if !verbose && p.visible_changes().count() > GROUP_PAST {
        render_groups(p, st, &mut out);
    } else {
        for c in p.visible_changes() {
            render_change(c, st, &mut out);
        }
    }
    let changed_outputs: Vec<_> = p.outputs.iter().filter(|(_, o)| !matches!(o.value, Value::Null)).collect();
    if !changed_outputs.is_empty() && p.has_changes() {
        let _ = writeln!(out, "Outputs after apply:");
        for (name, o) in changed_outputs {
            let v = if o.sensitive { "(sensitive)".to_string() } else { o.value.to_string() };
            let _ = writeln!(out, "    {name} = {v}");
        }
        out.push('\n');
    }
    let _ = writeln!(out, "{}", st.bold(&summary_line(p)));
    out
}
