//! `templatefile("path")`: a file whose text holds `${...}` references, rendered like a string
//! of the desired-state file (e.g. a Kubernetes manifest that names a live value). The call is
//! replaced at load time by the file's parsed template, so its references are graph edges,
//! `validate` checks them and diagnostics point into the template file itself.

use std::collections::BTreeMap;

use crate::addr::Mode;
use crate::config::Config;
use crate::diag::{Diagnostic, Diagnostics, Span};
use crate::expr::{Expr, ExprKind, StrSpans, parse_template};
use crate::provider::Registry;
use crate::value::{Value, sha256_hex};

/// Expands every `templatefile()` call of `cfg`, recording each file's hash in `cfg.templates`.
/// An attribute a schema marks [`AttrSchema::template_file`] and the desired state sets to a
/// literal path gets its rendered text as `NAME_text` first.
///
/// [`AttrSchema::template_file`]: crate::provider::AttrSchema::template_file
pub fn expand(cfg: &mut Config, registry: &Registry, diags: &mut Diagnostics) {
    for b in cfg.blocks.values_mut() {
        let Some((_, schema)) = registry.lookup(b.addr.mode == Mode::Data, &b.addr.ty) else { continue };
        for a in schema.attrs.iter().filter(|a| a.template_file) {
            let text = format!("{}_text", a.name);
            let Some(attr) = b.attrs.get(&a.name) else { continue };
            if b.attrs.contains_key(&text) || !matches!(attr.expr.kind, ExprKind::Lit(Value::String(_))) {
                continue;
            }
            let call =
                Expr { kind: ExprKind::Call("templatefile".into(), vec![attr.expr.clone()]), span: attr.expr.span };
            let name_span = attr.name_span;
            b.attrs.insert(text, crate::config::Attr { name_span, expr: call });
        }
    }
    // Diagnostics name a template by its path as seen from where the desired-state file was named.
    let shown = cfg.path.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
    let mut x = Expander {
        dir: cfg.dir.clone(),
        shown,
        sources: &mut cfg.sources,
        templates: BTreeMap::new(),
        diags,
        depth: 0,
    };
    for b in cfg.blocks.values_mut().chain(cfg.providers.values_mut()) {
        for a in b.attrs.values_mut() {
            x.walk(&mut a.expr);
        }
        if let Some(fe) = &mut b.for_each {
            x.walk(fe);
        }
    }
    for o in cfg.outputs.values_mut() {
        x.walk(&mut o.value);
    }
    for c in &mut cfg.checks {
        for e in c.condition.iter_mut().chain(c.error_message.iter_mut()).chain(c.for_each.iter_mut()) {
            x.walk(e);
        }
        for a in c.args.values_mut() {
            x.walk(&mut a.expr);
        }
    }
    cfg.templates = x.templates;
}

struct Expander<'a> {
    dir: std::path::PathBuf,
    shown: std::path::PathBuf,
    sources: &'a mut crate::diag::Sources,
    templates: BTreeMap<String, String>,
    diags: &'a mut Diagnostics,
    /// How many templates deep the walk is (a template may use `templatefile()` too).
    depth: u32,
}

impl Expander<'_> {
    fn walk(&mut self, e: &mut Expr) {
        e.walk_mut(&mut |e| {
            let ExprKind::Call(name, args) = &e.kind else { return true };
            if name != "templatefile" {
                return true;
            }
            let rel = match args.as_slice() {
                [Expr { kind: ExprKind::Lit(Value::String(p)), .. }] => p.clone(),
                _ => {
                    self.diags.push(
                        Diagnostic::error("templatefile() takes one literal path", e.span)
                            .label("the path must be written out, so the file is read when the desired state loads"),
                    );
                    return false;
                }
            };
            if self.depth >= 8 {
                self.diags.push(
                    Diagnostic::error("templatefile() nested too deeply", e.span)
                        .label("templates may include templates only 8 levels deep (is one including itself?)"),
                );
                return false;
            }
            if let Some(mut t) = self.load(&rel, e.span) {
                self.depth += 1;
                self.walk(&mut t);
                self.depth -= 1;
                *e = t;
            }
            false
        });
    }

    /// The parsed template of `rel`, registered as a source so diagnostics point into it.
    fn load(&mut self, rel: &str, call: Span) -> Option<Expr> {
        let text = match crate::files::read_text(&self.dir.join(rel)) {
            Ok(t) => t,
            Err(why) => {
                self.diags.push(
                    Diagnostic::error("call to templatefile() failed", call)
                        .label(format!("cannot read {rel:?} (relative to this file's directory): {why}")),
                );
                return None;
            }
        };
        self.templates.insert(rel.to_string(), sha256_hex(text.as_bytes()));
        let file = self.sources.add(self.shown.join(rel).display().to_string(), text.as_str());
        let whole = Span { file, start: 0, end: text.len() as u32 };
        if (rel.ends_with(".yaml") || rel.ends_with(".yml"))
            && let Some(d) = yaml_syntax_error(&text, file)
        {
            self.diags.push(d);
            return None;
        }
        match parse_template(&text, StrSpans { whole, content: Some(0) }) {
            // The value is always text, even when the file is a single `${...}`.
            Ok(e) => Some(match e.kind {
                ExprKind::Template(_) | ExprKind::Lit(Value::String(_)) => e,
                _ => Expr { kind: ExprKind::Template(vec![crate::expr::TemplatePart::Interp(e)]), span: whole },
            }),
            Err(d) => {
                self.diags.push(d);
                None
            }
        }
    }
}

/// `text` with every `${...}` replaced by as many `x` (newlines kept), so a YAML parser sees the
/// template's structure at the template's own positions.
fn mask_interpolations(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'$' && b[i + 1] == b'$' {
            i += 2;
            continue;
        }
        if b[i] == b'$' && b[i + 1] == b'{' {
            let (mut depth, mut j, mut quote) = (0usize, i + 1, false);
            while j < b.len() {
                match b[j] {
                    b'"' => quote = !quote,
                    b'\\' if quote => j += 1,
                    b'{' if !quote => depth += 1,
                    b'}' if !quote => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            let end = (j + 1).min(b.len());
            for c in &mut out[i..end] {
                if *c != b'\n' {
                    *c = b'x';
                }
            }
            i = end;
            continue;
        }
        i += 1;
    }
    // Only ASCII bytes were written over whole `${...}` runs, so the result is still UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// A YAML syntax error of a manifest template, at its own line and column.
/// Templates whose structure comes from an interpolation (one that starts a line, as a whole
/// block or a list item would) are checked once rendered, by the provider, not here.
fn yaml_syntax_error(text: &str, file: crate::diag::FileId) -> Option<Diagnostic> {
    let structural = text.lines().any(|l| {
        let l = l.trim_start();
        l.starts_with("${") || l.trim_start_matches("- ").starts_with("${")
    });
    if structural {
        return None;
    }
    let masked = mask_interpolations(text);
    let e = serde_saphyr::from_multiple::<serde_json::Value>(&masked).err()?;
    let mut at = e.location().map_or(0, |l| offset_of(text, l.line(), l.column())).min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let end = text[at..].chars().next().map_or(at, |c| at + c.len_utf8());
    // The parser's own first line, without its rendering of the location (ours points there).
    let msg = e.to_string();
    let msg = msg.lines().next().unwrap_or_default();
    let msg = msg.strip_prefix("error: ").unwrap_or(msg);
    let msg = match msg.strip_prefix("line ").and_then(|m| m.split_once(": ")) {
        Some((_, rest)) => rest.to_string(),
        None => msg.to_string(),
    };
    Some(
        Diagnostic::error("invalid YAML in a manifest file", Span { file, start: at as u32, end: end as u32 })
            .label(msg),
    )
}

/// The byte offset of 1-based `line` and `column` (in characters) in `text`.
fn offset_of(text: &str, line: u64, column: u64) -> usize {
    let mut start = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i as u64 + 1 == line {
            let col = usize::try_from(column.saturating_sub(1)).unwrap_or(usize::MAX);
            return start + l.char_indices().nth(col).map_or(l.len(), |(b, _)| b);
        }
        start += l.len();
    }
    text.len()
}

#[cfg(test)]
mod yaml_tests {
    #[test]
    fn a_yaml_error_points_at_its_line() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  labels: [unclosed\ndata: {}\n";
        let d = super::yaml_syntax_error(text, 0).expect("an error");
        let line = text[..d.span.expect("a span").start as usize].matches('\n').count() + 1;
        assert_eq!(line, 6, "{d:?}");
        assert_eq!(d.label.as_deref(), Some("illegal placement of ':' indicator"));
        assert!(super::yaml_syntax_error("a: 1\n---\nb: [2]\n", 0).is_none());
    }
}
