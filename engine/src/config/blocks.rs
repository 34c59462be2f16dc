//! Blocks: `[providers.NAME]`, `[clusters.NAME]`, `[resources.TYPE.NAME]` and
//! `[data.TYPE.NAME]`, each a body of attributes (expressions) and meta-arguments (`for_each`,
//! `depends_on`, `lifecycle`, `timeouts`).

use std::collections::BTreeMap;

use toml::Spanned;
use toml::de::DeValue;

use super::duration::parse_duration;
use super::parse::{Parse, Table};
use super::{Attr, Block, Lifecycle, Timeouts};
use crate::addr::{Addr, BlockAddr, CLUSTER_TYPE, Mode};
use crate::diag::{Diagnostic, Span};
use crate::expr::Expr;

impl Parse<'_> {
    /// `[providers.NAME]`: a provider's settings, a block without meta-arguments.
    pub(super) fn providers(&mut self, v: &Spanned<DeValue<'_>>, out: &mut BTreeMap<String, Block>) {
        self.each_table(v, "provider", |p, n, s, t| {
            let addr = BlockAddr { mode: Mode::Data, ty: "provider".into(), name: n.into() };
            out.insert(n.to_string(), p.block(addr, s, t, &[]));
        });
    }

    /// `[clusters.NAME]`.
    pub(super) fn clusters(&mut self, v: &Spanned<DeValue<'_>>, out: &mut BTreeMap<BlockAddr, Block>) {
        self.each_table(v, "cluster", |p, n, s, t| {
            let addr = BlockAddr { mode: Mode::Cluster, ty: CLUSTER_TYPE.into(), name: n.into() };
            let b = p.block(addr, s, t, &["for_each", "depends_on"]);
            out.insert(b.addr.clone(), b);
        });
    }

    /// `[resources.TYPE.NAME]` (`mode` managed) or `[data.TYPE.NAME]` (`mode` data); data sources
    /// have no `lifecycle` or `timeouts`.
    pub(super) fn resources(&mut self, mode: Mode, v: &Spanned<DeValue<'_>>, out: &mut BTreeMap<BlockAddr, Block>) {
        let meta: &[&str] = if mode == Mode::Data {
            &["for_each", "depends_on"]
        } else {
            &["for_each", "depends_on", "lifecycle", "timeouts"]
        };
        self.each_table(v, "resource type", |p, ty, ty_span, t| {
            p.each_table_in(t, "resource", |p, n, s, body| {
                let addr = BlockAddr { mode, ty: ty.into(), name: n.into() };
                let mut b = p.block(addr, s, body, meta);
                b.type_span = ty_span;
                out.insert(b.addr.clone(), b);
            });
        });
    }

    /// A block's body: its meta-arguments (those of `meta` only) and its attributes.
    fn block(&mut self, addr: BlockAddr, span: Span, t: &Table<'_>, meta: &[&str]) -> Block {
        let mut b = Block {
            addr,
            span,
            type_span: span,
            attrs: BTreeMap::new(),
            for_each: None,
            depends_on: Vec::new(),
            depends_on_refs: Vec::new(),
            lifecycle: Lifecycle::default(),
            timeouts: Timeouts::default(),
        };
        for (k, v) in t {
            let name = k.get_ref().as_ref();
            let kspan = self.span(k.span());
            let is_meta = meta.contains(&name);
            match name {
                "for_each" if is_meta => b.for_each = self.expr(v),
                "depends_on" if is_meta => self.depends_on(v, &mut b.depends_on, &mut b.depends_on_refs),
                "lifecycle" if is_meta => self.lifecycle(v, &mut b.lifecycle),
                "timeouts" if is_meta => self.timeouts(v, &mut b.timeouts),
                _ => {
                    if let Some(expr) = self.expr(v) {
                        b.attrs.insert(name.to_string(), Attr { name_span: kspan, expr });
                    }
                }
            }
        }
        b
    }

    /// `depends_on = ["TYPE.NAME", ...]` (a `${}` around an address is allowed), or an entry
    /// `"${TYPE.NAME[EXPR]}"` whose index is known from `each.key` alone: a reference.
    fn depends_on(&mut self, v: &Spanned<DeValue<'_>>, out: &mut Vec<(Addr, Span)>, refs: &mut Vec<Expr>) {
        let DeValue::Array(items) = v.get_ref() else {
            return self.wrong_type("`depends_on`", "a list of addresses", v);
        };
        for i in items.iter() {
            let span = self.span(i.span());
            let Some(s) = i.get_ref().as_str() else {
                self.wrong_type("each `depends_on` entry", "an address string", i);
                continue;
            };
            let text = s.trim().trim_start_matches("${").trim_end_matches('}');
            // `${TYPE.NAME[EXPR]}` with an index that is not a quoted key is a reference.
            let indexed_by_expr =
                s.trim().starts_with("${") && text.find('[').is_some_and(|i| !text[i + 1..].starts_with('"'));
            let parsed =
                if indexed_by_expr { Err(String::new()) } else { text.parse::<Addr>().map_err(|e| e.to_string()) };
            match parsed {
                Ok(a) => out.push((a, span)),
                Err(e) => match self.expr(i) {
                    Some(x) if s.trim().starts_with("${") && x.as_reference().is_some() => refs.push(x),
                    Some(_) => self.diags.push(
                        Diagnostic::error("invalid address in `depends_on`", span)
                            .label(if e.is_empty() { "not an address, nor one reference".to_string() } else { e })
                            .help("an entry is an address (`TYPE.NAME`, `TYPE.NAME[\"key\"]`) or one reference, `${TYPE.NAME[each.key]}`"),
                    ),
                    None => {}
                },
            }
        }
    }

    /// `timeouts = { create, update, delete }`: durations, or a positive number of seconds.
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

    /// `lifecycle = { prevent_destroy, ignore_changes, create_before_destroy }`.
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
}
