//! The tables that are not blocks: `[state]`, `[variables.NAME]`, `[outputs.NAME]` and
//! `[[checks]]`.

use std::collections::BTreeMap;

use toml::Spanned;
use toml::de::DeValue;

use super::parse::{Parse, Table, literal};
use super::{Attr, Check, HelpDefault, Output, Setting, StateSettings, VarType, Variable, suggest};
use crate::diag::{Diagnostic, Span};
use crate::expr::Expr;
use crate::value::Value;

/// The keys of a `[[checks]]` entry with a `condition` (a provider check takes any others).
const CHECK_KEYS: [&str; 5] = ["name", "condition", "error_message", "for_each", "kind"];

impl Parse<'_> {
    /// `[state]`: `backend` (a name), and every other key as a setting for that backend (strings,
    /// or numbers and booleans kept as text); the backend checks them where it is built.
    pub(super) fn state(&mut self, v: &Spanned<DeValue<'_>>, out: &mut StateSettings) {
        let DeValue::Table(t) = v.get_ref() else { return self.wrong_type("[state]", "a table", v) };
        out.span = Some(self.span(v.span()));
        for (k, v) in t {
            let value = match v.get_ref() {
                DeValue::String(s) => s.to_string(),
                DeValue::Integer(_) | DeValue::Boolean(_) => literal(v.get_ref()).to_string(),
                _ => {
                    self.wrong_type(&format!("`{}`", k.get_ref()), "a string", v);
                    continue;
                }
            };
            let span = self.span(v.span());
            if k.get_ref().as_ref() == "backend" {
                out.backend = Some((value, span));
            } else {
                let key_span = self.span(k.span());
                out.settings.insert(k.get_ref().to_string(), Setting { value, span, key_span });
            }
        }
    }

    /// `[variables.NAME]`, each.
    pub(super) fn variables(&mut self, v: &Spanned<DeValue<'_>>, out: &mut BTreeMap<String, Variable>) {
        self.each_table(v, "variable", |p, n, s, t| {
            out.insert(n.to_string(), p.variable(s, t));
        });
    }

    /// One variable: `type`, `default` (which must fit the type), `description`, `sensitive`.
    fn variable(&mut self, span: Span, t: &Table<'_>) -> Variable {
        let mut var = Variable { span, ty: VarType::Any, default: None, description: String::new(), sensitive: false };
        let mut default_span = None;
        for (k, v) in t {
            match k.get_ref().as_ref() {
                "type" => self.variable_type(v, &mut var.ty),
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
        var
    }

    /// A variable's `type = "..."`, into `out` when it names a type.
    fn variable_type(&mut self, v: &Spanned<DeValue<'_>>, out: &mut VarType) {
        match v.get_ref().as_str().map(|s| (s, VarType::parse(s))) {
            Some((_, Some(ty))) => *out = ty,
            Some((s, None)) => {
                let sp = self.span(v.span());
                self.diags.push(
                    Diagnostic::error(format!("unknown variable type `{s}`"), sp)
                        .maybe_help(suggest(s, VarType::NAMES))
                        .help_default(format!("expected one of: {}", VarType::NAMES.join(", "))),
                );
            }
            None => self.wrong_type("`type`", "a string", v),
        }
    }

    /// `[outputs.NAME]`, each.
    pub(super) fn outputs(&mut self, v: &Spanned<DeValue<'_>>, out: &mut BTreeMap<String, Output>) {
        self.each_table(v, "output", |p, n, s, t| {
            out.insert(n.to_string(), p.output(s, t));
        });
    }

    /// One output: `value` (required), `sensitive`, `description`.
    fn output(&mut self, span: Span, t: &Table<'_>) -> Output {
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
            // A `value` that did not parse is reported already.
            None if self.diags.0.len() == before => {
                self.diags.push(Diagnostic::error("output has no `value`", span).label("add `value = \"${...}\"`"));
            }
            None => {}
        }
        out
    }

    /// `[[checks]]`: an array of tables, each a check.
    pub(super) fn checks(&mut self, v: &Spanned<DeValue<'_>>, out: &mut Vec<Check>) {
        let DeValue::Array(items) = v.get_ref() else {
            return self.wrong_type("`checks`", "an array of tables (`[[checks]]`)", v);
        };
        for item in items.iter() {
            let span = self.span(item.span());
            let DeValue::Table(t) = item.get_ref() else {
                self.wrong_type("each check", "a table", item);
                continue;
            };
            let c = self.check(span, t);
            self.check_complete(&c);
            out.push(c);
        }
    }

    /// One check's keys; keys it does not know are a provider check's arguments.
    fn check(&mut self, span: Span, t: &Table<'_>) -> Check {
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
        c
    }

    /// A check needs a name and a `condition` or a `kind`; a condition check takes no other keys
    /// (the first one is reported).
    fn check_complete(&mut self, c: &Check) {
        if c.name.is_empty() {
            self.diags.push(Diagnostic::error("check has no `name`", c.span).label("add `name = \"...\"`"));
        }
        match (&c.condition, &c.kind) {
            (None, None) => self.diags.push(
                Diagnostic::error("check has neither `condition` nor `kind`", c.span)
                    .label("add `condition = \"${...}\"` or a provider check `kind`"),
            ),
            (Some(_), None) => {
                if let Some((k, a)) = c.args.iter().next() {
                    self.unknown_key(k, a.name_span.start as usize..a.name_span.end as usize, &CHECK_KEYS, "a check");
                }
            }
            _ => {}
        }
    }
}
