//! Schema checks: every block against its type's schema (known type, known and settable
//! attributes, required ones present, literal values of the declared type, `ignore_changes`
//! naming real attributes), and known providers and check kinds.

use std::collections::BTreeMap;

use super::{Attr, Block, Config, HelpDefault, suggest};
use crate::addr::{BlockAddr, Mode};
use crate::diag::{Diagnostic, Diagnostics, Span};
use crate::expr::{Expr, ExprKind};
use crate::provider::{AttrSchema, AttrType, Presence, Registry, TypeSchema, type_fits};

/// Checks every block against its type's schema: known type, known attributes, required ones
/// present, literal values of the right type, `ignore_changes` naming real attributes; and that
/// providers and check kinds exist.
pub(super) fn check_schemas(cfg: &Config, registry: &Registry, diags: &mut Diagnostics) {
    check_providers(cfg, registry, diags);
    for b in cfg.blocks.values() {
        check_block(b, registry, diags);
    }
    check_kinds(cfg, registry, diags);
}

/// Every `[providers.NAME]` names a registered provider.
fn check_providers(cfg: &Config, registry: &Registry, diags: &mut Diagnostics) {
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
}

/// One block: its type is registered, its attributes fit the type's schema, and its
/// `ignore_changes` names attributes the type has.
fn check_block(b: &Block, registry: &Registry, diags: &mut Diagnostics) {
    let data = b.addr.mode != Mode::Managed;
    let Some((_, schema)) = registry.lookup(data, &b.addr.ty) else {
        return unknown_type(b, registry, diags);
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

/// Reports a block whose type no provider registers (for a cluster: that no provider reads
/// clusters).
fn unknown_type(b: &Block, registry: &Registry, diags: &mut Diagnostics) {
    if b.addr.mode == Mode::Cluster {
        diags.push(
            Diagnostic::error("no provider that looks up clusters is available", b.span)
                .help("clusters are read by the Google Cloud provider"),
        );
        return;
    }
    let data = b.addr.mode != Mode::Managed;
    let kind = if data { "data source" } else { "resource" };
    diags.push(
        Diagnostic::error(format!("unknown {kind} type `{}`", b.addr.ty), b.type_span)
            .maybe_help(suggest(&b.addr.ty, registry.type_names(data)))
            .help_default(format!("available {kind} types: {}", registry.type_names(data).join(", "))),
    );
}

/// Every `[[checks]]` `kind` is a registered provider check.
fn check_kinds(cfg: &Config, registry: &Registry, diags: &mut Diagnostics) {
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

/// A block's attributes against its schema: each known and settable, each literal part of the
/// declared type, every required one present.
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
