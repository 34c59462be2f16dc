//! The desired-state file: TOML parsed with spans into blocks whose attribute values are
//! expressions. This module checks structure and schemas; references are checked where the graph
//! is built ([`crate::graph`]), since only there is the whole file known.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::addr::{Addr, BlockAddr, CLUSTER_TYPE, Mode};
use crate::diag::{Diagnostic, Diagnostics, FileId, Sources, Span};
use crate::expr::{Expr, ExprKind, StrSpans, parse_template};
use crate::provider::{AttrSchema, AttrType, Presence, Registry, TypeSchema, type_fits};
use crate::value::Value;

/// A parsed desired-state file.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Every file diagnostics may point into.
    pub sources: Sources,
    /// The desired-state file's id in `sources`.
    pub file: FileId,
    /// Its path as given.
    pub path: PathBuf,
    /// The directory relative paths (`file()`, `[state] path`) resolve against.
    pub dir: PathBuf,
    /// `[state]`.
    pub state: StateSettings,
    /// `[variables.NAME]`.
    pub variables: BTreeMap<String, Variable>,
    /// `[providers.NAME]`.
    pub providers: BTreeMap<String, Block>,
    /// `[clusters.NAME]`, `[resources.TYPE.NAME]`, `[data.TYPE.NAME]`.
    pub blocks: BTreeMap<BlockAddr, Block>,
    /// `[outputs.NAME]`.
    pub outputs: BTreeMap<String, Output>,
    /// `[[checks]]`.
    pub checks: Vec<Check>,
    /// Files read by `templatefile()`: path (relative) → SHA-256 of the text.
    pub templates: BTreeMap<String, String>,
}

/// `[state]`: where state lives.
#[derive(Clone, Debug, Default)]
pub struct StateSettings {
    /// `path`, relative to the desired-state file's directory.
    pub path: Option<String>,
}

/// The declared type of a variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VarType {
    /// Text.
    String,
    /// A number.
    Number,
    /// true/false.
    Bool,
    /// A list.
    List,
    /// A map.
    Map,
    /// Anything.
    Any,
}

impl VarType {
    const NAMES: [&'static str; 6] = ["string", "number", "bool", "list", "map", "any"];

    fn parse(s: &str) -> Option<VarType> {
        Some(match s {
            "string" => VarType::String,
            "number" => VarType::Number,
            "bool" => VarType::Bool,
            "list" => VarType::List,
            "map" => VarType::Map,
            "any" => VarType::Any,
            _ => return None,
        })
    }

    /// Whether a value fits this type.
    pub fn fits(self, v: &Value) -> bool {
        match self {
            VarType::String => matches!(v, Value::String(_)),
            VarType::Number => matches!(v, Value::Int(_) | Value::Float(_)),
            VarType::Bool => matches!(v, Value::Bool(_)),
            VarType::List => matches!(v, Value::List(_)),
            VarType::Map => matches!(v, Value::Map(_)),
            VarType::Any => true,
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// `[variables.NAME]`.
#[derive(Clone, Debug)]
pub struct Variable {
    /// Where it is declared.
    pub span: Span,
    /// `type`, default `any`.
    pub ty: VarType,
    /// `default`.
    pub default: Option<Value>,
    /// `description`.
    pub description: String,
    /// `sensitive`: never shown, and whatever it flows into is sensitive too.
    pub sensitive: bool,
}

/// An attribute: its name's location and its expression.
#[derive(Clone, Debug)]
pub struct Attr {
    /// Where the key is.
    pub name_span: Span,
    /// The value.
    pub expr: Expr,
}

/// `lifecycle = { ... }`.
#[derive(Clone, Debug, Default)]
pub struct Lifecycle {
    /// Refuse any plan that destroys this object.
    pub prevent_destroy: bool,
    /// Attributes whose differences are not changes.
    pub ignore_changes: Vec<(String, Span)>,
    /// On replacement, create the new object before deleting the old one.
    pub create_before_destroy: bool,
}

/// `timeouts = { create, update, delete }`: how long one operation on the object may take
/// (`"90s"`, `"20m"`, `"1h"` or seconds); unset means the provider's own limits.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timeouts {
    /// Creating (also the create half of a replacement).
    pub create: Option<std::time::Duration>,
    /// Updating in place.
    pub update: Option<std::time::Duration>,
    /// Deleting.
    pub delete: Option<std::time::Duration>,
}

/// A block: a cluster, a resource, a data source or a provider's settings.
#[derive(Clone, Debug)]
pub struct Block {
    /// Its address.
    pub addr: BlockAddr,
    /// Where its name is.
    pub span: Span,
    /// Where its type is (its name for clusters and providers).
    pub type_span: Span,
    /// Its attributes (meta-arguments removed).
    pub attrs: BTreeMap<String, Attr>,
    /// `for_each`.
    pub for_each: Option<Expr>,
    /// `depends_on`.
    pub depends_on: Vec<(Addr, Span)>,
    /// `lifecycle`.
    pub lifecycle: Lifecycle,
    /// `timeouts`.
    pub timeouts: Timeouts,
}

/// `[outputs.NAME]`.
#[derive(Clone, Debug)]
pub struct Output {
    /// Where it is declared.
    pub span: Span,
    /// `value`.
    pub value: Expr,
    /// `sensitive`.
    pub sensitive: bool,
    /// `description`.
    pub description: String,
}

/// One `[[checks]]` entry.
#[derive(Clone, Debug)]
pub struct Check {
    /// `name`.
    pub name: String,
    /// Where the entry is.
    pub span: Span,
    /// `condition`: an expression that must be true.
    pub condition: Option<Expr>,
    /// `error_message`: shown when it fails.
    pub error_message: Option<Expr>,
    /// `kind`: a provider check, with the other keys as its arguments.
    pub kind: Option<(String, Span)>,
    /// `for_each` over the check.
    pub for_each: Option<Expr>,
    /// The arguments of a provider check.
    pub args: BTreeMap<String, Attr>,
}

const TOP_LEVEL: [&str; 8] = ["state", "variables", "providers", "clusters", "resources", "data", "outputs", "checks"];

/// The closest candidate to a misspelt name, if one is close enough.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|(d, c)| *d <= (c.len().max(name.len()) / 3).max(1) && *d > 0)
        .min()
        .map(|(_, c)| format!("did you mean `{c}`?"))
}

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

/// Parses the file `file` of `sources` (see [`read`] for what comes back).
pub fn parse(
    sources: Sources,
    file: FileId,
    path: PathBuf,
    dir: PathBuf,
    registry: &Registry,
) -> Result<(Config, Diagnostics), (Sources, Diagnostics)> {
    let text = sources.text(file).to_string();
    let mut diags = Diagnostics::default();
    let (root, errors) = DeTable::parse_recoverable(&text);
    for e in &errors {
        let span = e.span().map_or(Span::new(file, 0..0), |r| Span::new(file, r));
        diags.push(Diagnostic::error("invalid TOML", span).label(e.message().trim().to_string()));
    }
    if !errors.is_empty() {
        diags.sort();
        return Err((sources, diags));
    }
    let mut cfg = Config { file, path, dir, ..Config::default() };
    let mut p = Parse { text: &text, file, diags: &mut diags };
    for (key, value) in root.get_ref() {
        let name = key.get_ref().as_ref();
        let kspan = p.span(key.span());
        match name {
            "state" => p.state(value, &mut cfg.state),
            "variables" => p.each_table(value, "variable", |p, n, s, t| {
                if let Some(v) = p.variable(s, t) {
                    cfg.variables.insert(n.to_string(), v);
                }
            }),
            "providers" => p.each_table(value, "provider", |p, n, s, t| {
                let addr = BlockAddr { mode: Mode::Data, ty: "provider".into(), name: n.into() };
                if let Some(b) = p.block(addr, s, t, &[]) {
                    cfg.providers.insert(n.to_string(), b);
                }
            }),
            "clusters" => p.each_table(value, "cluster", |p, n, s, t| {
                let addr = BlockAddr { mode: Mode::Cluster, ty: CLUSTER_TYPE.into(), name: n.into() };
                if let Some(b) = p.block(addr, s, t, &["for_each", "depends_on"]) {
                    cfg.blocks.insert(b.addr.clone(), b);
                }
            }),
            "resources" | "data" => {
                let mode = if name == "data" { Mode::Data } else { Mode::Managed };
                let meta: &[&str] = if mode == Mode::Data {
                    &["for_each", "depends_on"]
                } else {
                    &["for_each", "depends_on", "lifecycle", "timeouts"]
                };
                p.each_table(value, "resource type", |p, ty, ty_span, t| {
                    p.each_table_in(t, "resource", |p, n, s, body| {
                        let addr = BlockAddr { mode, ty: ty.into(), name: n.into() };
                        if let Some(mut b) = p.block(addr, s, body, meta) {
                            b.type_span = ty_span;
                            cfg.blocks.insert(b.addr.clone(), b);
                        }
                    });
                });
            }
            "outputs" => p.each_table(value, "output", |p, n, s, t| {
                if let Some(o) = p.output(s, t) {
                    cfg.outputs.insert(n.to_string(), o);
                }
            }),
            "checks" => p.checks(value, &mut cfg.checks),
            other => p.diags.push(
                Diagnostic::error(format!("unknown table `{other}`"), kspan)
                    .label("not a meshform table")
                    .maybe_help(suggest(other, TOP_LEVEL))
                    .help_default(format!("the top-level tables are: {}", TOP_LEVEL.join(", "))),
            ),
        }
    }
    cfg.sources = sources;
    crate::templatefile::expand(&mut cfg, registry, &mut diags);
    check_schemas(&cfg, registry, &mut diags);
    Ok((cfg, diags))
}

trait HelpDefault {
    fn help_default(self, h: String) -> Self;
}

impl HelpDefault for Diagnostic {
    fn help_default(mut self, h: String) -> Self {
        if self.help.is_none() {
            self.help = Some(h);
        }
        self
    }
}

struct Parse<'a> {
    text: &'a str,
    file: FileId,
    diags: &'a mut Diagnostics,
}

type Table<'a> = DeTable<'a>;

impl<'t> Parse<'t> {
    fn span(&self, r: std::ops::Range<usize>) -> Span {
        Span::new(self.file, r)
    }

    fn wrong_type(&mut self, what: &str, expected: &str, v: &Spanned<DeValue<'_>>) {
        let span = self.span(v.span());
        self.diags.push(
            Diagnostic::error(format!("{what} must be {expected}"), span)
                .label(format!("this is a {}", toml_type(v.get_ref()))),
        );
    }

    fn each_table<'v>(
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

    fn each_table_in<'v>(
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

    fn state(&mut self, v: &Spanned<DeValue<'_>>, out: &mut StateSettings) {
        let DeValue::Table(t) = v.get_ref() else { return self.wrong_type("[state]", "a table", v) };
        for (k, v) in t {
            match k.get_ref().as_ref() {
                "path" => match v.get_ref() {
                    DeValue::String(s) => out.path = Some(s.to_string()),
                    _ => self.wrong_type("`path`", "a string", v),
                },
                "backend" => match v.get_ref().as_str() {
                    Some("local") => {}
                    _ => {
                        let span = self.span(v.span());
                        self.diags
                            .push(Diagnostic::error("unsupported state backend", span).label("expected \"local\""));
                    }
                },
                other => self.unknown_key(other, k.span(), &["path", "backend"], "[state]"),
            }
        }
    }

    fn unknown_key(&mut self, name: &str, span: std::ops::Range<usize>, valid: &[&str], owner: &str) {
        let span = self.span(span);
        self.diags.push(
            Diagnostic::error(format!("unknown attribute `{name}` in {owner}"), span)
                .maybe_help(suggest(name, valid.iter().copied()))
                .help_default(format!("expected one of: {}", valid.join(", "))),
        );
    }

    fn variable(&mut self, span: Span, t: &Table<'_>) -> Option<Variable> {
        let mut var = Variable { span, ty: VarType::Any, default: None, description: String::new(), sensitive: false };
        let mut default_span = None;
        let ok_before = self.diags.0.len();
        for (k, v) in t {
            match k.get_ref().as_ref() {
                "type" => match v.get_ref().as_str().map(|s| (s, VarType::parse(s))) {
                    Some((_, Some(ty))) => var.ty = ty,
                    Some((s, None)) => {
                        let sp = self.span(v.span());
                        self.diags.push(
                            Diagnostic::error(format!("unknown variable type `{s}`"), sp)
                                .maybe_help(suggest(s, VarType::NAMES))
                                .help_default(format!("expected one of: {}", VarType::NAMES.join(", "))),
                        );
                    }
                    None => self.wrong_type("`type`", "a string", v),
                },
                "default" => {
                    default_span = Some(self.span(v.span()));
                    var.default = Some(literal(v.get_ref()));
                }
                "description" => match v.get_ref() {
                    DeValue::String(s) => var.description = s.to_string(),
                    _ => self.wrong_type("`description`", "a string", v),
                },
                "sensitive" => match v.get_ref().as_bool() {
                    Some(b) => var.sensitive = b,
                    None => self.wrong_type("`sensitive`", "true or false", v),
                },
                other => {
                    self.unknown_key(other, k.span(), &["type", "default", "description", "sensitive"], "a variable")
                }
            }
        }
        if let (Some(d), Some(sp)) = (&var.default, default_span)
            && !var.ty.fits(d)
        {
            self.diags.push(
                Diagnostic::error(format!("default value does not match the variable's type `{}`", var.ty.name()), sp)
                    .label(format!("this is a {}", d.type_name())),
            );
        }
        let _ = ok_before;
        Some(var)
    }

    fn expr(&mut self, v: &Spanned<DeValue<'_>>) -> Option<Expr> {
        let span = self.span(v.span());
        match v.get_ref() {
            DeValue::String(s) => {
                let raw = &self.text[v.span()];
                let content = [("\"\"\"", 3), ("'''", 3), ("\"", 1), ("'", 1)].iter().find_map(|(q, n)| {
                    let inner = raw.strip_prefix(q)?.strip_suffix(q)?;
                    let (inner, skip) = match inner.strip_prefix('\n') {
                        Some(rest) if *n == 3 => (rest, 1),
                        _ => (inner, 0),
                    };
                    (inner == s.as_ref()).then_some(span.start + *n as u32 + skip)
                });
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

    fn block(&mut self, addr: BlockAddr, span: Span, t: &Table<'_>, meta: &[&str]) -> Option<Block> {
        let before = self.diags.0.len();
        let mut b = Block {
            addr,
            span,
            type_span: span,
            attrs: BTreeMap::new(),
            for_each: None,
            depends_on: Vec::new(),
            lifecycle: Lifecycle::default(),
            timeouts: Timeouts::default(),
        };
        for (k, v) in t {
            let name = k.get_ref().as_ref();
            let kspan = self.span(k.span());
            let is_meta = meta.contains(&name);
            match name {
                "for_each" if is_meta => b.for_each = self.expr(v),
                "depends_on" if is_meta => self.depends_on(v, &mut b.depends_on),
                "lifecycle" if is_meta => self.lifecycle(v, &mut b.lifecycle),
                "timeouts" if is_meta => self.timeouts(v, &mut b.timeouts),
                _ => {
                    if let Some(expr) = self.expr(v) {
                        b.attrs.insert(name.to_string(), Attr { name_span: kspan, expr });
                    }
                }
            }
        }
        let _ = before;
        Some(b)
    }

    fn depends_on(&mut self, v: &Spanned<DeValue<'_>>, out: &mut Vec<(Addr, Span)>) {
        let DeValue::Array(items) = v.get_ref() else {
            return self.wrong_type("`depends_on`", "a list of addresses", v);
        };
        for i in items.iter() {
            let span = self.span(i.span());
            let Some(s) = i.get_ref().as_str() else {
                self.wrong_type("each `depends_on` entry", "an address string", i);
                continue;
            };
            let s = s.trim().trim_start_matches("${").trim_end_matches('}');
            match s.parse::<Addr>() {
                Ok(a) => out.push((a, span)),
                Err(e) => self.diags.push(Diagnostic::error("invalid address in `depends_on`", span).label(e)),
            }
        }
    }

    fn timeouts(&mut self, v: &Spanned<DeValue<'_>>, out: &mut Timeouts) {
        let DeValue::Table(t) = v.get_ref() else { return self.wrong_type("`timeouts`", "a table", v) };
        const KEYS: [&str; 3] = ["create", "update", "delete"];
        for (k, v) in t {
            let slot = match k.get_ref().as_ref() {
                "create" => &mut out.create,
                "update" => &mut out.update,
                "delete" => &mut out.delete,
                other => {
                    self.unknown_key(other, k.span(), &KEYS, "`timeouts`");
                    continue;
                }
            };
            let secs = match v.get_ref() {
                DeValue::Integer(_) => v.get_ref().as_integer().and_then(|i| i.as_str().parse::<u64>().ok()),
                DeValue::String(s) => parse_duration(s),
                _ => None,
            };
            match secs.filter(|s| *s > 0) {
                Some(s) => *slot = Some(std::time::Duration::from_secs(s)),
                None => self.wrong_type(
                    &format!("`timeouts.{}`", k.get_ref().as_ref()),
                    "a duration like \"90s\", \"20m\", \"1h\" or a number of seconds",
                    v,
                ),
            }
        }
    }

    fn lifecycle(&mut self, v: &Spanned<DeValue<'_>>, out: &mut Lifecycle) {
        let DeValue::Table(t) = v.get_ref() else { return self.wrong_type("`lifecycle`", "a table", v) };
        const KEYS: [&str; 3] = ["prevent_destroy", "ignore_changes", "create_before_destroy"];
        for (k, v) in t {
            match k.get_ref().as_ref() {
                "prevent_destroy" => match v.get_ref().as_bool() {
                    Some(b) => out.prevent_destroy = b,
                    None => self.wrong_type("`prevent_destroy`", "true or false", v),
                },
                "create_before_destroy" => match v.get_ref().as_bool() {
                    Some(b) => out.create_before_destroy = b,
                    None => self.wrong_type("`create_before_destroy`", "true or false", v),
                },
                "ignore_changes" => match v.get_ref() {
                    DeValue::Array(items) => {
                        for i in items.iter() {
                            match i.get_ref().as_str() {
                                Some(s) => out.ignore_changes.push((s.to_string(), self.span(i.span()))),
                                None => self.wrong_type("each `ignore_changes` entry", "an attribute name", i),
                            }
                        }
                    }
                    _ => self.wrong_type("`ignore_changes`", "a list of attribute names", v),
                },
                other => self.unknown_key(other, k.span(), &KEYS, "`lifecycle`"),
            }
        }
    }

    fn output(&mut self, span: Span, t: &Table<'_>) -> Option<Output> {
        let before = self.diags.0.len();
        let mut value = None;
        let mut out =
            Output { span, value: Expr::lit(Value::Null, span), sensitive: false, description: String::new() };
        for (k, v) in t {
            match k.get_ref().as_ref() {
                "value" => value = self.expr(v),
                "sensitive" => match v.get_ref().as_bool() {
                    Some(b) => out.sensitive = b,
                    None => self.wrong_type("`sensitive`", "true or false", v),
                },
                "description" => match v.get_ref() {
                    DeValue::String(s) => out.description = s.to_string(),
                    _ => self.wrong_type("`description`", "a string", v),
                },
                other => self.unknown_key(other, k.span(), &["value", "sensitive", "description"], "an output"),
            }
        }
        match value {
            Some(v) => out.value = v,
            None if self.diags.0.len() == before => {
                self.diags.push(Diagnostic::error("output has no `value`", span).label("add `value = \"${...}\"`"));
            }
            None => {}
        }
        Some(out)
    }

    fn checks(&mut self, v: &Spanned<DeValue<'_>>, out: &mut Vec<Check>) {
        let DeValue::Array(items) = v.get_ref() else {
            return self.wrong_type("`checks`", "an array of tables (`[[checks]]`)", v);
        };
        for item in items.iter() {
            let span = self.span(item.span());
            let DeValue::Table(t) = item.get_ref() else {
                self.wrong_type("each check", "a table", item);
                continue;
            };
            let mut c = Check {
                name: String::new(),
                span,
                condition: None,
                error_message: None,
                kind: None,
                for_each: None,
                args: BTreeMap::new(),
            };
            for (k, v) in t {
                let kspan = self.span(k.span());
                match k.get_ref().as_ref() {
                    "name" => match v.get_ref().as_str() {
                        Some(s) => c.name = s.to_string(),
                        None => self.wrong_type("`name`", "a string", v),
                    },
                    "condition" => c.condition = self.expr(v),
                    "error_message" => c.error_message = self.expr(v),
                    "for_each" => c.for_each = self.expr(v),
                    "kind" => match v.get_ref().as_str() {
                        Some(s) => c.kind = Some((s.to_string(), self.span(v.span()))),
                        None => self.wrong_type("`kind`", "a string", v),
                    },
                    other => {
                        if let Some(expr) = self.expr(v) {
                            c.args.insert(other.to_string(), Attr { name_span: kspan, expr });
                        }
                    }
                }
            }
            if c.name.is_empty() {
                self.diags.push(Diagnostic::error("check has no `name`", span).label("add `name = \"...\"`"));
            }
            match (&c.condition, &c.kind) {
                (None, None) => self.diags.push(
                    Diagnostic::error("check has neither `condition` nor `kind`", span)
                        .label("add `condition = \"${...}\"` or a provider check `kind`"),
                ),
                (Some(_), None) => {
                    if let Some((k, a)) = c.args.iter().next() {
                        self.unknown_key(
                            k,
                            a.name_span.start as usize..a.name_span.end as usize,
                            &["name", "condition", "error_message", "for_each", "kind"],
                            "a check",
                        );
                    }
                }
                _ => {}
            }
            out.push(c);
        }
    }
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

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

/// Checks every block against its type's schema: known type, known attributes, required ones
/// present, literal values of the right type, `ignore_changes` naming real attributes.
fn check_schemas(cfg: &Config, registry: &Registry, diags: &mut Diagnostics) {
    for (name, p) in &cfg.providers {
        if !registry.providers().iter().any(|x| x.name() == name) {
            let names: Vec<&str> = registry.providers().iter().map(|p| p.name()).collect();
            diags.push(
                Diagnostic::error(format!("unknown provider `{name}`"), p.span)
                    .maybe_help(suggest(name, names.iter().copied()))
                    .help_default(format!("available providers: {}", names.join(", "))),
            );
        }
    }
    for b in cfg.blocks.values() {
        let data = b.addr.mode != Mode::Managed;
        let Some((_, schema)) = registry.lookup(data, &b.addr.ty) else {
            if b.addr.mode == Mode::Cluster {
                diags.push(
                    Diagnostic::error("no provider that looks up clusters is available", b.span)
                        .help("clusters are read by the Google Cloud provider"),
                );
                continue;
            }
            let kind = if data { "data source" } else { "resource" };
            diags.push(
                Diagnostic::error(format!("unknown {kind} type `{}`", b.addr.ty), b.type_span)
                    .maybe_help(suggest(&b.addr.ty, registry.type_names(data)))
                    .help_default(format!("available {kind} types: {}", registry.type_names(data).join(", "))),
            );
            continue;
        };
        check_attrs(&b.attrs, &schema.attrs, &format!("{}", b.addr), b.span, diags);
        for (name, span) in &b.lifecycle.ignore_changes {
            if schema.get(name).is_none() {
                diags.push(
                    Diagnostic::error(format!("`ignore_changes` names unknown attribute `{name}`"), *span)
                        .maybe_help(suggest(name, schema.attrs.iter().map(|a| a.name.as_str()))),
                );
            }
        }
    }
    for c in &cfg.checks {
        if let Some((kind, span)) = &c.kind
            && registry.check_provider(kind).is_none()
        {
            diags.push(
                Diagnostic::error(format!("unknown check kind `{kind}`"), *span)
                    .maybe_help(suggest(kind, registry.check_kinds()))
                    .help_default(format!("available check kinds: {}", registry.check_kinds().join(", "))),
            );
        }
    }
}

fn check_attrs(
    attrs: &BTreeMap<String, Attr>,
    schema: &[AttrSchema],
    owner: &str,
    owner_span: Span,
    diags: &mut Diagnostics,
) {
    for (name, a) in attrs {
        match schema.iter().find(|s| &s.name == name) {
            None => diags.push(
                Diagnostic::error(format!("unknown attribute `{name}` in {owner}"), a.name_span)
                    .maybe_help(suggest(name, schema.iter().filter(|s| s.settable()).map(|s| s.name.as_str())))
                    .help_default(format!(
                        "expected one of: {}",
                        schema.iter().filter(|s| s.settable()).map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
                    )),
            ),
            Some(s) if s.presence == Presence::Computed => diags.push(
                Diagnostic::error(format!("`{name}` of {owner} is computed and cannot be set"), a.name_span)
                    .label("set by the provider"),
            ),
            Some(s) => check_literal_type(&a.expr, &s.ty, name, diags),
        }
    }
    for s in schema.iter().filter(|s| s.presence == Presence::Required) {
        if !attrs.contains_key(&s.name) {
            diags.push(
                Diagnostic::error(format!("{owner} is missing required attribute `{}`", s.name), owner_span)
                    .label(format!("add `{} = ...` ({})", s.name, s.ty)),
            );
        }
    }
}

/// Checks the parts of an expression that are literals against the declared type.
fn check_literal_type(e: &Expr, ty: &AttrType, name: &str, diags: &mut Diagnostics) {
    let mismatch = |found: &str| {
        Diagnostic::error(format!("wrong type for `{name}`: expected {ty}"), e.span).label(format!("this is a {found}"))
    };
    match (&e.kind, ty) {
        (ExprKind::Lit(v), _) if !type_fits(ty, v) => diags.push(mismatch(v.type_name())),
        (
            ExprKind::Template(_),
            AttrType::Number | AttrType::Bool | AttrType::List(_) | AttrType::Map(_) | AttrType::Object(_),
        ) => diags.push(mismatch("string")),
        (
            ExprKind::List(_),
            AttrType::String | AttrType::Number | AttrType::Bool | AttrType::Map(_) | AttrType::Object(_),
        ) => diags.push(mismatch("list")),
        (ExprKind::Map(_), AttrType::String | AttrType::Number | AttrType::Bool | AttrType::List(_)) => {
            diags.push(mismatch("table"))
        }
        (ExprKind::List(items), AttrType::List(inner)) => {
            items.iter().for_each(|i| check_literal_type(i, inner, name, diags))
        }
        (ExprKind::Map(entries), AttrType::Map(inner)) => {
            entries.iter().for_each(|(_, _, v)| check_literal_type(v, inner, name, diags))
        }
        (ExprKind::Map(entries), AttrType::Object(fields)) => {
            for (k, kspan, v) in entries {
                match fields.iter().find(|f| &f.name == k) {
                    Some(f) => check_literal_type(v, &f.ty, k, diags),
                    None => diags.push(
                        Diagnostic::error(format!("unknown attribute `{k}` in `{name}`"), *kspan)
                            .maybe_help(suggest(k, fields.iter().map(|f| f.name.as_str()))),
                    ),
                }
            }
        }
        _ => {}
    }
}

/// The schema of a block's type, if registered.
pub fn schema_of<'r>(registry: &'r Registry, addr: &BlockAddr) -> Option<&'r TypeSchema> {
    registry.lookup(addr.mode != Mode::Managed, &addr.ty).map(|(_, s)| s.as_ref())
}

/// `"90s"`, `"20m"`, `"1h"`, `"1h30m"` or `"120"` → seconds.
fn parse_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Some(n);
    }
    let (mut total, mut num) = (0u64, String::new());
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return None,
        };
        total = total.checked_add(num.parse::<u64>().ok()?.checked_mul(unit)?)?;
        num.clear();
    }
    num.is_empty().then_some(total)
}
