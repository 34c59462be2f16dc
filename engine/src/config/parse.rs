//! A desired-state file's TOML → [`Config`]: reading the file, the top-level tables, and the
//! helpers every table reader shares (spans, type errors, unknown keys, names, expressions).
//! What each table holds is read in [`super::blocks`] and [`super::sections`].

use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::{Config, HelpDefault, schema, suggest};
use crate::diag::{Diagnostic, Diagnostics, FileId, Sources, Span};
use crate::expr::{Expr, ExprKind, StrSpans, parse_template};
use crate::provider::Registry;
use crate::value::Value;

/// The top-level tables a desired-state file may have.
const TOP_LEVEL: [&str; 11] = [
    "state",
    "variables",
    "providers",
    "clusters",
    "resources",
    "data",
    "outputs",
    "checks",
    "moved",
    "removed",
    "import",
];

/// Reads and parses a desired-state file, checking it against the registry's schemas.
/// Fails on the first kind of problem it finds; [`parse`] gives more.
pub fn load(path: &Path, registry: &Registry) -> Result<Config, (Sources, Diagnostics)> {
    let (cfg, diags) = read(path, registry)?;
    if diags.has_errors() {
        return Err((cfg.sources, diags));
    }
    Ok(cfg)
}

/// Reads and parses a desired-state file. TOML syntax errors fail at once; other problems come
/// back with the config (with what could be understood of it) so later checks can add theirs.
pub fn read(path: &Path, registry: &Registry) -> Result<(Config, Diagnostics), (Sources, Diagnostics)> {
    let mut sources = Sources::default();
    let text = match crate::files::read_text(path) {
        Ok(t) => t,
        Err(e) => {
            return Err((sources, Diagnostic::global(format!("cannot read {}: {e}", path.display())).into()));
        }
    };
    let file = sources.add(path.display().to_string(), text);
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
    parse(sources, file, path.to_path_buf(), dir, registry)
}

/// Parses the file `file` of `sources` (see [`read`] for what comes back): its TOML, each
/// top-level table, the `templatefile()` expansion, then the schema checks.
pub fn parse(
    sources: Sources,
    file: FileId,
    path: PathBuf,
    dir: PathBuf,
    registry: &Registry,
) -> Result<(Config, Diagnostics), (Sources, Diagnostics)> {
    let text = sources.text(file).to_string();
    let root = match toml_root(&text, file) {
        Ok(root) => root,
        Err(diags) => return Err((sources, diags)),
    };
    let mut diags = Diagnostics::default();
    let mut cfg = Config { file, path, dir, ..Config::default() };
    let mut p = Parse { text: &text, file, diags: &mut diags };
    for (key, value) in root.get_ref() {
        p.top_level(key.get_ref().as_ref(), key.span(), value, &mut cfg);
    }
    cfg.sources = sources;
    crate::templatefile::expand(&mut cfg, registry, &mut diags);
    schema::check_schemas(&cfg, registry, &mut diags);
    Ok((cfg, diags))
}

/// The file's TOML with spans, or every syntax error in it (sorted).
fn toml_root(text: &str, file: FileId) -> Result<Spanned<DeTable<'_>>, Diagnostics> {
    let (root, errors) = DeTable::parse_recoverable(text);
    if errors.is_empty() {
        return Ok(root);
    }
    let mut diags = Diagnostics::default();
    for e in &errors {
        let span = e.span().map_or(Span::new(file, 0..0), |r| Span::new(file, r));
        diags.push(Diagnostic::error("invalid TOML", span).label(e.message().trim().to_string()));
    }
    diags.sort();
    Err(diags)
}

/// The state of reading one file: its text (for the exact spans of strings), its id, and the
/// diagnostics found so far. Each table kind is read by a method of its own.
pub(super) struct Parse<'a> {
    /// The file's text.
    pub(super) text: &'a str,
    /// Its id, for spans.
    pub(super) file: FileId,
    /// Where problems go.
    pub(super) diags: &'a mut Diagnostics,
}

/// A TOML table with spans.
pub(super) type Table<'a> = DeTable<'a>;

impl Parse<'_> {
    /// Reads one top-level table into `cfg`.
    fn top_level(
        &mut self,
        name: &str,
        key_span: std::ops::Range<usize>,
        value: &Spanned<DeValue<'_>>,
        cfg: &mut Config,
    ) {
        match name {
            "state" => self.state(value, &mut cfg.state),
            "variables" => self.variables(value, &mut cfg.variables),
            "providers" => self.providers(value, &mut cfg.providers),
            "clusters" => self.clusters(value, &mut cfg.blocks),
            "resources" => self.resources(crate::addr::Mode::Managed, value, &mut cfg.blocks),
            "data" => self.resources(crate::addr::Mode::Data, value, &mut cfg.blocks),
            "outputs" => self.outputs(value, &mut cfg.outputs),
            "checks" => self.checks(value, &mut cfg.checks),
            "moved" => self.moved(value, &mut cfg.moved),
            "removed" => self.removed(value, &mut cfg.removed),
            "import" => self.imports(value, &mut cfg.imports),
            other => {
                let span = self.span(key_span);
                self.diags.push(
                    Diagnostic::error(format!("unknown table `{other}`"), span)
                        .label("not a meshform table")
                        .maybe_help(suggest(other, TOP_LEVEL))
                        .help_default(format!("the top-level tables are: {}", TOP_LEVEL.join(", "))),
                );
            }
        }
    }

    /// A byte range of this file as a span.
    pub(super) fn span(&self, r: std::ops::Range<usize>) -> Span {
        Span::new(self.file, r)
    }

    /// Reports that `what` must be `expected`, naming the TOML type it is.
    pub(super) fn wrong_type(&mut self, what: &str, expected: &str, v: &Spanned<DeValue<'_>>) {
        let span = self.span(v.span());
        self.diags.push(
            Diagnostic::error(format!("{what} must be {expected}"), span)
                .label(format!("this is a {}", toml_type(v.get_ref()))),
        );
    }

    /// Calls `f` with each named table of the table `v` (a table of `what`s).
    pub(super) fn each_table<'v>(
        &mut self,
        v: &'v Spanned<DeValue<'v>>,
        what: &str,
        mut f: impl FnMut(&mut Self, &str, Span, &'v Table<'v>),
    ) {
        match v.get_ref() {
            DeValue::Table(t) => self.each_table_in(t, what, &mut f),
            _ => self.wrong_type("this", &format!("a table of {what}s"), v),
        }
    }

    /// Calls `f` with each entry of `t` that has a valid name and is a table; reports the others.
    pub(super) fn each_table_in<'v>(
        &mut self,
        t: &'v Table<'v>,
        what: &str,
        mut f: impl FnMut(&mut Self, &str, Span, &'v Table<'v>),
    ) {
        for (k, v) in t {
            let name = k.get_ref().as_ref();
            let span = self.span(k.span());
            if !valid_name(name) {
                self.diags.push(
                    Diagnostic::error(format!("invalid {what} name `{name}`"), span)
                        .label("names are letters, digits, `_` and `-`, starting with a letter or `_`"),
                );
                continue;
            }
            match v.get_ref() {
                DeValue::Table(body) => f(self, name, span, body),
                _ => self.wrong_type(&format!("{what} `{name}`"), "a table", v),
            }
        }
    }

    /// Reports a key `owner` does not have, with the closest valid one or the list of them.
    pub(super) fn unknown_key(&mut self, name: &str, span: std::ops::Range<usize>, valid: &[&str], owner: &str) {
        let span = self.span(span);
        self.diags.push(
            Diagnostic::error(format!("unknown attribute `{name}` in {owner}"), span)
                .maybe_help(suggest(name, valid.iter().copied()))
                .help_default(format!("expected one of: {}", valid.join(", "))),
        );
    }

    /// A TOML value as an expression: strings are templates (spans pointing into the string),
    /// arrays and tables are lists and maps of expressions, other scalars are literals. `None`
    /// (reported) when a template does not parse.
    pub(super) fn expr(&mut self, v: &Spanned<DeValue<'_>>) -> Option<Expr> {
        let span = self.span(v.span());
        match v.get_ref() {
            DeValue::String(s) => {
                let content = self.string_content(v.span(), s);
                match parse_template(s, StrSpans { whole: span, content }) {
                    Ok(e) => Some(e),
                    Err(d) => {
                        self.diags.push(d);
                        None
                    }
                }
            }
            DeValue::Array(items) => {
                let mut out = Vec::new();
                for i in items.iter() {
                    out.push(self.expr(i)?);
                }
                Some(Expr { kind: ExprKind::List(out), span })
            }
            DeValue::Table(t) => {
                let mut out = Vec::new();
                for (k, v) in t {
                    out.push((k.get_ref().to_string(), self.span(k.span()), self.expr(v)?));
                }
                Some(Expr { kind: ExprKind::Map(out), span })
            }
            other => Some(Expr::lit(literal(other), span)),
        }
    }

    /// Where the text of the string written at `range` starts, when its source holds the value
    /// verbatim (no escapes), so template diagnostics can point at exact characters.
    fn string_content(&self, range: std::ops::Range<usize>, value: &str) -> Option<u32> {
        let start = self.span(range.clone()).start;
        let raw = &self.text[range];
        [("\"\"\"", 3), ("'''", 3), ("\"", 1), ("'", 1)].iter().find_map(|(q, n)| {
            let inner = raw.strip_prefix(q)?.strip_suffix(q)?;
            let (inner, skip) = match inner.strip_prefix('\n') {
                Some(rest) if *n == 3 => (rest, 1),
                _ => (inner, 0),
            };
            (inner == value).then_some(start + *n as u32 + skip)
        })
    }
}

/// Whether `n` is a valid block name: letters, digits, `_` and `-`, starting with a letter or `_`.
fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The name of a TOML value's type, as diagnostics say it.
fn toml_type(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "string",
        DeValue::Integer(_) | DeValue::Float(_) => "number",
        DeValue::Boolean(_) => "bool",
        DeValue::Datetime(_) => "datetime",
        DeValue::Array(_) => "list",
        DeValue::Table(_) => "table",
    }
}

/// Converts a TOML value to a [`Value`] without interpreting `${}`.
pub fn literal(v: &DeValue<'_>) -> Value {
    match v {
        DeValue::String(s) => Value::str(s.as_ref()),
        DeValue::Integer(i) => i64::from_str_radix(
            &i.as_str().replace('_', "").replace("0x", "").replace("0o", "").replace("0b", ""),
            i.radix(),
        )
        .map_or(Value::Null, Value::Int),
        DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().map_or(Value::Null, Value::Float),
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(d) => Value::str(d.to_string()),
        DeValue::Array(a) => Value::List(a.iter().map(|i| literal(i.get_ref())).collect()),
        DeValue::Table(t) => {
            Value::Map(t.iter().map(|(k, v)| (k.get_ref().to_string(), literal(v.get_ref()))).collect())
        }
    }
}
