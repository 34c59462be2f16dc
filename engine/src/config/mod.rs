//! The desired-state file: TOML parsed with spans into blocks whose attribute values are
//! expressions. References are checked where the graph is built ([`crate::graph`]), since only
//! there is the whole file known.
//!
//! This module holds the model ([`Config`] and its blocks); the work is done by its children:
//! `parse` (a file's TOML → [`Config`], keeping spans), `blocks` (a block's body and its
//! meta-arguments), `sections` (`[state]`, `[variables]`, `[outputs]`, `[[checks]]`), `schema`
//! (blocks against their type's schema) and `duration` (`"90s"`, `"20m"`, `"1h"`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::addr::{Addr, BlockAddr};
use crate::diag::{Diagnostic, FileId, Sources, Span};
use crate::expr::Expr;
use crate::value::Value;

mod blocks;
pub mod duration;
mod parse;
pub mod refactor;
mod schema;
mod sections;

pub use parse::{literal, load, parse, read};
pub use schema::schema_of;

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
    /// `[[moved]]`.
    pub moved: Vec<refactor::Moved>,
    /// `[[removed]]`.
    pub removed: Vec<refactor::Removed>,
    /// `[[import]]`.
    pub imports: Vec<refactor::Import>,
    /// Files read by `templatefile()`: path (relative) → SHA-256 of the text.
    pub templates: BTreeMap<String, String>,
}

/// `[state]`: where state lives. The engine reads `backend` and keeps every other key as a
/// string with its span: each store checks its own settings (and reports unknown ones) where it
/// is built, so the engine names no store but the local one.
#[derive(Clone, Debug, Default)]
pub struct StateSettings {
    /// `backend` (`None`: the local file) and where it is written.
    pub backend: Option<(String, Span)>,
    /// Every other key: its value and the spans of the value and of the key.
    pub settings: BTreeMap<String, Setting>,
    /// The `[state]` table's header, when there is one.
    pub span: Option<Span>,
}

/// One `[state]` setting.
#[derive(Clone, Debug)]
pub struct Setting {
    /// Its value (a string, or a number or boolean written as text).
    pub value: String,
    /// Where the value is.
    pub span: Span,
    /// Where the key is.
    pub key_span: Span,
}

impl StateSettings {
    /// The backend's name (`local` when none is set).
    pub fn backend_name(&self) -> &str {
        self.backend.as_ref().map_or("local", |(b, _)| b.as_str())
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&Setting> {
        self.settings.get(key)
    }

    /// An error for every setting not in `valid` (for backend `backend`).
    pub fn unknown(&self, backend: &str, valid: &[&str]) -> Vec<Diagnostic> {
        self.settings
            .iter()
            .filter(|(k, _)| !valid.contains(&k.as_str()))
            .map(|(k, s)| {
                Diagnostic::error(format!("unknown setting `{k}` for the {backend} state backend"), s.key_span)
                    .maybe_help(suggest(k, valid.iter().copied()))
                    .help_default(format!("expected one of: {}", valid.join(", ")))
            })
            .collect()
    }

    /// `lock_ttl` (a duration above zero; `default` when unset); a bad value is reported into
    /// `errors`.
    pub fn lock_ttl(&self, default: std::time::Duration, errors: &mut Vec<Diagnostic>) -> std::time::Duration {
        let Some(t) = self.get("lock_ttl") else { return default };
        match duration::parse_duration(&t.value) {
            Some(s) if s > 0 => std::time::Duration::from_secs(s),
            _ => {
                errors.push(
                    Diagnostic::error("`lock_ttl` must be a duration above zero", t.span).label("e.g. \"5m\", \"90s\""),
                );
                default
            }
        }
    }

    /// An error that `key` is required by backend `backend`, at the `[state]` header or `backend`.
    pub fn missing(&self, backend: &str, key: &str, what: &str) -> Diagnostic {
        let span = self.backend.as_ref().map(|(_, s)| *s).or(self.span).unwrap_or_default();
        Diagnostic::error(format!("the {backend} state backend needs `{key}`"), span)
            .label(format!("add `{key} = {what}`"))
    }
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
    /// `depends_on`: the addresses it names.
    pub depends_on: Vec<(Addr, Span)>,
    /// `depends_on` entries that are references indexed by `each.key`
    /// (`"${gke_control_plane_access.mesh[split(\",\", each.key)[0]]}"`): each instance depends
    /// on the one instance its key names, not on the whole block.
    pub depends_on_refs: Vec<Expr>,
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

/// The closest candidate to a misspelt name, if one is close enough.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|(d, c)| *d <= (c.len().max(name.len()) / 3).max(1) && *d > 0)
        .min()
        .map(|(_, c)| format!("did you mean `{c}`?"))
}

/// Sets a diagnostic's help unless a more specific one (a suggestion) is already there.
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
