//! The refactoring tables: `[[moved]]` (an object recorded under one address now lives under
//! another), `[[removed]]` (an object leaves the desired state; `destroy = false` forgets it
//! without deleting it) and `[[import]]` (an existing object is taken into state under a
//! declared address, planned and reviewed like any other change).

use toml::Spanned;
use toml::de::DeValue;

use super::parse::{Parse, Table};
use crate::addr::{Addr, Mode};
use crate::diag::{Diagnostic, Span};
use crate::expr::Expr;

/// One `[[moved]]` entry.
#[derive(Clone, Debug)]
pub struct Moved {
    /// The address state records.
    pub from: Addr,
    /// The address the desired state declares now.
    pub to: Addr,
    /// The entry.
    pub span: Span,
}

/// One `[[removed]]` entry.
#[derive(Clone, Debug)]
pub struct Removed {
    /// The address (a block: every instance of it) that left the desired state.
    pub from: Addr,
    /// Delete the object (true, the default, as leaving the block out does) or only forget it.
    pub destroy: bool,
    /// The entry.
    pub span: Span,
}

/// One `[[import]]` entry.
#[derive(Clone, Debug)]
pub struct Import {
    /// The declared instance the object is taken in as.
    pub to: Addr,
    /// The provider's id of the object (variables may be used).
    pub id: Expr,
    /// The entry.
    pub span: Span,
}

impl Parse<'_> {
    /// The entries of an array of tables `[[what]]`, each read by `one`.
    fn entries<'v>(
        &mut self,
        v: &'v Spanned<DeValue<'v>>,
        what: &str,
        mut one: impl FnMut(&mut Self, Span, &'v Table<'v>),
    ) {
        let DeValue::Array(items) = v.get_ref() else {
            return self.wrong_type(&format!("`{what}`"), &format!("an array of tables (`[[{what}]]`)"), v);
        };
        for item in items.iter() {
            match item.get_ref() {
                DeValue::Table(t) => one(self, self.span(item.span()), t),
                _ => self.wrong_type(&format!("each `{what}` entry"), "a table", item),
            }
        }
    }

    /// An address attribute: a string naming a resource (`TYPE.NAME` or `TYPE.NAME["KEY"]`).
    fn address(&mut self, key: &str, v: &Spanned<DeValue<'_>>) -> Option<Addr> {
        let Some(s) = v.get_ref().as_str() else {
            self.wrong_type(&format!("`{key}`"), "a string naming a resource, e.g. \"gcp_firewall.pods\"", v);
            return None;
        };
        match s.parse::<Addr>() {
            Ok(a) if a.block.mode == Mode::Managed => Some(a),
            Ok(a) => {
                let span = self.span(v.span());
                self.diags.push(
                    Diagnostic::error(format!("`{key}` must name a managed resource, not {a}"), span)
                        .label("data sources and clusters are read, not recorded"),
                );
                None
            }
            Err(e) => {
                let span = self.span(v.span());
                self.diags.push(Diagnostic::error(e, span).label("not an address"));
                None
            }
        }
    }

    fn missing(&mut self, what: &str, key: &str, span: Span) {
        self.diags
            .push(Diagnostic::error(format!("`[[{what}]]` has no `{key}`"), span).label(format!("add `{key} = ...`")));
    }

    /// `[[moved]]`: `from` and `to`.
    pub(super) fn moved(&mut self, v: &Spanned<DeValue<'_>>, out: &mut Vec<Moved>) {
        self.entries(v, "moved", |p, span, t| {
            let (mut from, mut to) = (None, None);
            for (k, v) in t {
                match k.get_ref().as_ref() {
                    "from" => from = p.address("from", v),
                    "to" => to = p.address("to", v),
                    other => p.unknown_key(other, k.span(), &["from", "to"], "a `[[moved]]` entry"),
                }
            }
            let complete = |p: &mut Self, a: &Option<Addr>, key: &str| {
                if a.is_none() && !t.iter().any(|(k, _)| k.get_ref().as_ref() == key) {
                    p.missing("moved", key, span);
                }
            };
            complete(p, &from, "from");
            complete(p, &to, "to");
            if let (Some(from), Some(to)) = (from, to) {
                if from.block.ty != to.block.ty {
                    p.diags.push(
                        Diagnostic::error(format!("cannot move {from} to {to}: the type differs"), span)
                            .label("an object keeps its type; declare the new one and import it instead"),
                    );
                } else {
                    out.push(Moved { from, to, span });
                }
            }
        });
    }

    /// `[[removed]]`: `from`, and `destroy` (default true).
    pub(super) fn removed(&mut self, v: &Spanned<DeValue<'_>>, out: &mut Vec<Removed>) {
        self.entries(v, "removed", |p, span, t| {
            let (mut from, mut destroy) = (None, true);
            for (k, v) in t {
                match k.get_ref().as_ref() {
                    "from" => from = p.address("from", v),
                    "destroy" => match v.get_ref().as_bool() {
                        Some(b) => destroy = b,
                        None => p.wrong_type("`destroy`", "true or false", v),
                    },
                    other => p.unknown_key(other, k.span(), &["from", "destroy"], "a `[[removed]]` entry"),
                }
            }
            match from {
                Some(from) => out.push(Removed { from, destroy, span }),
                None if !t.iter().any(|(k, _)| k.get_ref().as_ref() == "from") => p.missing("removed", "from", span),
                None => {}
            }
        });
    }

    /// `[[import]]`: `to` and `id`.
    pub(super) fn imports(&mut self, v: &Spanned<DeValue<'_>>, out: &mut Vec<Import>) {
        self.entries(v, "import", |p, span, t| {
            let (mut to, mut id) = (None, None);
            for (k, v) in t {
                match k.get_ref().as_ref() {
                    "to" => to = p.address("to", v),
                    "id" => match v.get_ref() {
                        DeValue::String(_) => id = p.expr(v),
                        _ => p.wrong_type("`id`", "a string (the provider's id of the object)", v),
                    },
                    other => p.unknown_key(other, k.span(), &["to", "id"], "an `[[import]]` entry"),
                }
            }
            for (key, have) in [("to", to.is_some()), ("id", id.is_some())] {
                if !have && !t.iter().any(|(k, _)| k.get_ref().as_ref() == key) {
                    p.missing("import", key, span);
                }
            }
            if let (Some(to), Some(id)) = (to, id) {
                out.push(Import { to, id, span });
            }
        });
    }
}
