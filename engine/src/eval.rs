//! Evaluation of expressions against a scope: variables, `each`, and the values of other
//! objects (which the caller provides, so the same code evaluates statically, at plan time and
//! at apply time). Sensitivity is tracked: a result that read a sensitive variable or attribute is
//! sensitive.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::addr::{Addr, BlockAddr, CLUSTER_TYPE, Mode};
use crate::diag::Diagnostic;
use crate::expr::{BinOp, Expr, ExprKind, Step, TemplatePart, UnOp};
use crate::functions;
use crate::value::{Map, Value};

/// An object's value and which of its attributes are sensitive.
#[derive(Clone, Debug, Default)]
pub struct ObjectValue {
    /// Attributes.
    pub attrs: Map,
    /// Names of sensitive attributes.
    pub sensitive: Arc<BTreeSet<String>>,
}

/// Where references to other blocks get their values.
pub trait Objects: Sync {
    /// One instance's value; `None` when it has none yet (unknown).
    fn instance(&self, addr: &Addr) -> Option<ObjectValue>;
    /// The `for_each` keys of a block, `None` for a block without `for_each`.
    fn keys(&self, block: &BlockAddr) -> Option<Vec<String>>;
    /// The names of the declared clusters.
    fn cluster_names(&self) -> Vec<String>;
}

/// Everything an expression can see.
pub struct Scope<'a> {
    /// Variable values.
    pub vars: &'a Map,
    /// Names of sensitive variables.
    pub sensitive_vars: &'a BTreeSet<String>,
    /// `each.key` and `each.value`, inside a `for_each` block.
    pub each: Option<(&'a Value, &'a Value)>,
    /// Other objects.
    pub objects: &'a dyn Objects,
    /// Directory `file()` paths are relative to.
    pub dir: &'a Path,
    /// Files read by `file()`: path → SHA-256, so saved plans can pin them.
    pub files: Option<&'a Mutex<BTreeMap<String, String>>>,
}

/// A result and whether it is sensitive.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluated {
    /// The value.
    pub value: Value,
    /// Whether it came from something sensitive.
    pub sensitive: bool,
}

/// Evaluates an expression.
pub fn eval(e: &Expr, scope: &Scope<'_>) -> Result<Evaluated, Diagnostic> {
    let ev = Evaluator { scope, sensitive: Cell::new(false) };
    let value = ev.eval(e)?;
    Ok(Evaluated { value, sensitive: ev.sensitive.get() })
}

struct Evaluator<'a, 'b> {
    scope: &'a Scope<'b>,
    sensitive: Cell<bool>,
}

impl Evaluator<'_, '_> {
    fn eval(&self, e: &Expr) -> Result<Value, Diagnostic> {
        match &e.kind {
            ExprKind::Lit(v) => Ok(v.clone()),
            ExprKind::Template(parts) => {
                let mut out = String::new();
                let mut unknown = false;
                for p in parts {
                    match p {
                        TemplatePart::Text(t) => out.push_str(t),
                        TemplatePart::Interp(x) => {
                            let v = self.eval(x)?;
                            if v.has_unknown() {
                                unknown = true;
                                continue;
                            }
                            match v.to_interpolated() {
                                Some(s) => out.push_str(&s),
                                None => {
                                    return Err(Diagnostic::error(
                                        format!("cannot put a {} inside text", v.type_name()),
                                        x.span,
                                    )
                                    .help("make the whole string a single `${...}`, or use join() or format()"));
                                }
                            }
                        }
                    }
                }
                Ok(if unknown { Value::Unknown } else { Value::String(out) })
            }
            ExprKind::Ident(_) | ExprKind::Traverse(..) => self.reference(e),
            ExprKind::Call(name, args) => {
                let mut vals = Vec::with_capacity(args.len());
                for a in args {
                    vals.push(self.eval(a)?);
                }
                let ctx = functions::CallCtx { dir: self.scope.dir, files: self.scope.files };
                functions::call(name, vals, &ctx)
                    .map_err(|msg| Diagnostic::error(format!("call to {name}() failed"), e.span).label(msg))
            }
            ExprKind::List(items) => items.iter().map(|i| self.eval(i)).collect::<Result<_, _>>().map(Value::List),
            ExprKind::Map(entries) => {
                let mut m = Map::new();
                for (k, _, v) in entries {
                    m.insert(k.clone(), self.eval(v)?);
                }
                Ok(Value::Map(m))
            }
            ExprKind::Unary(op, x) => {
                let v = self.eval(x)?;
                match (op, v) {
                    (_, Value::Unknown) => Ok(Value::Unknown),
                    (UnOp::Not, Value::Bool(b)) => Ok(Value::Bool(!b)),
                    (UnOp::Neg, Value::Int(i)) => Ok(Value::Int(-i)),
                    (UnOp::Neg, Value::Float(f)) => Ok(Value::Float(-f)),
                    (_, v) => Err(Diagnostic::error(format!("operator cannot apply to a {}", v.type_name()), e.span)),
                }
            }
            ExprKind::Binary(op, a, b) => self.binary(*op, a, b, e),
            ExprKind::Cond(c, a, b) => match self.eval(c)? {
                Value::Bool(true) => self.eval(a),
                Value::Bool(false) => self.eval(b),
                Value::Unknown => Ok(Value::Unknown),
                v => Err(Diagnostic::error("condition must be true or false", c.span)
                    .label(format!("this is a {}", v.type_name()))),
            },
        }
    }

    fn binary(&self, op: BinOp, a: &Expr, b: &Expr, e: &Expr) -> Result<Value, Diagnostic> {
        let x = self.eval(a)?;
        // && and || short-circuit so `cond && x.y` works when cond guards x.
        if let (BinOp::And, Value::Bool(false)) | (BinOp::Or, Value::Bool(true)) = (op, &x) {
            return Ok(x);
        }
        // Nor is the right side evaluated while the guard is unknown (it may be what guards it).
        if matches!(op, BinOp::And | BinOp::Or) && matches!(x, Value::Unknown) {
            return Ok(Value::Unknown);
        }
        let y = self.eval(b)?;
        if matches!(x, Value::Unknown) || matches!(y, Value::Unknown) {
            return Ok(Value::Unknown);
        }
        let num = |v: &Value| match v {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        };
        let bad = || {
            Diagnostic::error(format!("operator cannot apply to a {} and a {}", x.type_name(), y.type_name()), e.span)
        };
        Ok(match op {
            BinOp::Eq => Value::Bool(x.same_as(&y)),
            BinOp::Ne => Value::Bool(!x.same_as(&y)),
            BinOp::And | BinOp::Or => match (&x, &y) {
                (Value::Bool(_), Value::Bool(q)) => Value::Bool(*q),
                _ => return Err(bad()),
            },
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                let (Some(p), Some(q)) = (num(&x), num(&y)) else { return Err(bad()) };
                Value::Bool(match op {
                    BinOp::Lt => p < q,
                    BinOp::Le => p <= q,
                    BinOp::Gt => p > q,
                    _ => p >= q,
                })
            }
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Rem => {
                if let (Value::Int(p), Value::Int(q)) = (&x, &y) {
                    let r = match op {
                        BinOp::Add => p.checked_add(*q),
                        BinOp::Sub => p.checked_sub(*q),
                        BinOp::Mul => p.checked_mul(*q),
                        BinOp::Div => p.checked_div(*q),
                        _ => p.checked_rem(*q),
                    };
                    return r
                        .map(Value::Int)
                        .ok_or_else(|| Diagnostic::error("arithmetic overflow or division by zero", e.span));
                }
                let (Some(p), Some(q)) = (num(&x), num(&y)) else { return Err(bad()) };
                let r = match op {
                    BinOp::Add => p + q,
                    BinOp::Sub => p - q,
                    BinOp::Mul => p * q,
                    BinOp::Div => p / q,
                    _ => p % q,
                };
                // No value meshform stores or sends can be infinite or NaN (JSON has neither).
                if !r.is_finite() {
                    return Err(Diagnostic::error("arithmetic result is not a finite number", e.span)
                        .label("division by zero or overflow")
                        .help("infinite and NaN values are not allowed"));
                }
                Value::Float(r)
            }
        })
    }

    fn reference(&self, e: &Expr) -> Result<Value, Diagnostic> {
        let Some((root, root_span, steps)) = e.as_reference() else {
            // A traversal from a non-name base, e.g. `keys(x)[0]`.
            let ExprKind::Traverse(base, steps) = &e.kind else { unreachable!("reference on a non-traversal") };
            let v = self.eval(base)?;
            return self.steps(v, steps, None);
        };
        let unknown_ref = |what: &str| Diagnostic::error(format!("unknown reference `{what}`"), e.span);
        let attr = |i: usize| match steps.get(i) {
            Some(Step::Attr(n, _)) => Some(n.as_str()),
            _ => None,
        };
        match root {
            "var" => {
                let name = attr(0).ok_or_else(|| unknown_ref("var").help("write `var.NAME`"))?;
                let v = self.scope.vars.get(name).ok_or_else(|| unknown_ref(&format!("var.{name}")))?;
                if self.scope.sensitive_vars.contains(name) {
                    self.sensitive.set(true);
                }
                self.steps(v.clone(), &steps[1..], None)
            }
            "each" => {
                let Some((k, v)) = self.scope.each else {
                    return Err(Diagnostic::error(
                        "`each` is only available inside a block with `for_each`",
                        root_span,
                    ));
                };
                match attr(0) {
                    Some("key") => self.steps(k.clone(), &steps[1..], None),
                    Some("value") => self.steps(v.clone(), &steps[1..], None),
                    _ => Err(unknown_ref("each").help("use `each.key` or `each.value`")),
                }
            }
            "clusters" => {
                let mut m = Map::new();
                let mut sens = BTreeSet::new();
                for name in self.scope.objects.cluster_names() {
                    let addr = BlockAddr { mode: Mode::Cluster, ty: CLUSTER_TYPE.into(), name: name.clone() };
                    let ov = self.scope.objects.instance(&addr.instance(None));
                    if let Some(o) = &ov {
                        sens.extend(o.sensitive.iter().cloned());
                    }
                    m.insert(name, ov.map_or(Value::Unknown, |o| Value::Map(o.attrs)));
                }
                self.steps(Value::Map(m), steps, Some(&sens))
            }
            "data" => {
                let (Some(ty), Some(name)) = (attr(0), attr(1)) else {
                    return Err(unknown_ref("data").help("write `data.TYPE.NAME.ATTRIBUTE`"));
                };
                let block = BlockAddr { mode: Mode::Data, ty: ty.into(), name: name.into() };
                self.block(&block, &steps[2..])
            }
            ty => {
                let name = attr(0).ok_or_else(|| unknown_ref(ty).help("write `TYPE.NAME.ATTRIBUTE`"))?;
                self.block(&BlockAddr::managed(ty, name), &steps[1..])
            }
        }
    }

    /// Resolves `block` followed by `steps`, fetching one instance directly when indexed by key.
    fn block(&self, block: &BlockAddr, steps: &[Step]) -> Result<Value, Diagnostic> {
        let objs = self.scope.objects;
        match objs.keys(block) {
            None => {
                let o = objs.instance(&block.instance(None));
                self.object(o, steps)
            }
            Some(keys) => {
                if let Some(Step::Index(idx, _)) = steps.first() {
                    let k = self.eval(idx)?;
                    if matches!(k, Value::Unknown) {
                        return Ok(Value::Unknown);
                    }
                    let Some(k) = k.to_interpolated() else {
                        return Err(Diagnostic::error("instance key must be a string", idx.span));
                    };
                    if !keys.contains(&k) {
                        return Err(Diagnostic::error(format!("{block} has no instance with key {k:?}"), idx.span)
                            .help(format!("its keys are: {}", keys.join(", "))));
                    }
                    return self.object(objs.instance(&block.instance(Some(k))), &steps[1..]);
                }
                let mut m = Map::new();
                let mut sens = BTreeSet::new();
                for k in keys {
                    let o = objs.instance(&block.instance(Some(k.clone())));
                    if let Some(o) = &o {
                        sens.extend(o.sensitive.iter().cloned());
                    }
                    m.insert(k, o.map_or(Value::Unknown, |o| Value::Map(o.attrs)));
                }
                self.steps(Value::Map(m), steps, Some(&sens))
            }
        }
    }

    fn object(&self, o: Option<ObjectValue>, steps: &[Step]) -> Result<Value, Diagnostic> {
        match o {
            None => Ok(Value::Unknown),
            Some(o) => self.steps(Value::Map(o.attrs), steps, Some(&o.sensitive)),
        }
    }

    /// Applies traversal steps. `sensitive` names attributes of the object at the base that
    /// make the result sensitive when read (all of them when the whole object is taken).
    fn steps(&self, mut v: Value, steps: &[Step], sensitive: Option<&BTreeSet<String>>) -> Result<Value, Diagnostic> {
        if let Some(s) = sensitive {
            self.note_sensitive_read(s, steps);
        }
        for (i, step) in steps.iter().enumerate() {
            if let Value::Redacted(_) = v {
                self.sensitive.set(true);
                return Ok(Value::Unknown);
            }
            v = match (step, v) {
                (_, Value::Unknown) => return Ok(Value::Unknown),
                (Step::Splat(_), Value::List(items)) => return self.splat(items, &steps[i + 1..]),
                (Step::Splat(_), Value::Map(m)) => {
                    return self.splat(m.into_values(), &steps[i + 1..]);
                }
                (Step::Attr(n, span), Value::Map(m)) => attribute(m, n, *span)?,
                (Step::Index(idx, span), base) => match self.index(base, idx, *span)? {
                    Some(x) => x,
                    None => return Ok(Value::Unknown),
                },
                (st, other) => {
                    let what = match st {
                        Step::Attr(n, _) => format!("attribute `{n}`"),
                        _ => "`*`".to_string(),
                    };
                    return Err(Diagnostic::error(
                        format!("cannot take {what} of a {}", other.type_name()),
                        step_span(st),
                    ));
                }
            };
        }
        if let Value::Redacted(_) = v {
            self.sensitive.set(true);
            return Ok(Value::Unknown);
        }
        Ok(v)
    }

    /// Marks the result sensitive when `steps` read one of the `sensitive` attributes of the
    /// object at the base: `.attr` names the attribute; an index or splat may reach any of them.
    fn note_sensitive_read(&self, sensitive: &BTreeSet<String>, steps: &[Step]) {
        let reads_sensitive = match steps.first() {
            None => !sensitive.is_empty(),
            Some(Step::Attr(n, _)) => sensitive.contains(n),
            Some(_) => !sensitive.is_empty(),
        };
        let through_instances = steps.iter().any(|st| matches!(st, Step::Attr(n, _) if sensitive.contains(n)));
        if reads_sensitive || through_instances {
            self.sensitive.set(true);
        }
    }

    /// `.*` / `[*]`: the remaining steps applied to each item, as a list.
    fn splat(&self, items: impl IntoIterator<Item = Value>, rest: &[Step]) -> Result<Value, Diagnostic> {
        let mut out = Vec::new();
        for item in items {
            out.push(self.steps(item, rest, None)?);
        }
        Ok(Value::List(out))
    }

    /// `base[idx]`: an item of a list by position or of a map by key; `None` when the index is
    /// unknown.
    fn index(&self, base: Value, idx: &Expr, span: crate::diag::Span) -> Result<Option<Value>, Diagnostic> {
        let k = self.eval(idx)?;
        match (base, k) {
            (_, Value::Unknown) => Ok(None),
            (Value::List(mut l), Value::Int(i)) => {
                let len = l.len();
                if i < 0 || i as usize >= len {
                    return Err(Diagnostic::error(format!("index {i} is out of range"), span)
                        .label(format!("the list has {len} items")));
                }
                Ok(Some(l.swap_remove(i as usize)))
            }
            (Value::Map(mut m), k) if k.to_interpolated().is_some() => {
                let key = k.to_interpolated().unwrap_or_default();
                match m.remove(&key) {
                    Some(x) => Ok(Some(x)),
                    None => Err(Diagnostic::error(format!("no key {key:?}"), span)),
                }
            }
            (b, k) => {
                Err(Diagnostic::error(format!("cannot index a {} with a {}", b.type_name(), k.type_name()), span))
            }
        }
    }
}

/// `.name` of a map: the attribute, or an error suggesting the closest one.
fn attribute(mut m: Map, n: &str, span: crate::diag::Span) -> Result<Value, Diagnostic> {
    match m.remove(n) {
        Some(x) => Ok(x),
        None => {
            let keys: Vec<&str> = m.keys().map(String::as_str).collect();
            Err(Diagnostic::error(format!("no attribute `{n}`"), span)
                .maybe_help(crate::config::suggest(n, keys.iter().copied()))
                .help_default_keys(&keys))
        }
    }
}

fn step_span(s: &Step) -> crate::diag::Span {
    match s {
        Step::Attr(_, sp) | Step::Index(_, sp) | Step::Splat(sp) => *sp,
    }
}

trait HelpKeys {
    fn help_default_keys(self, keys: &[&str]) -> Self;
}

impl HelpKeys for Diagnostic {
    fn help_default_keys(mut self, keys: &[&str]) -> Self {
        if self.help.is_none() && !keys.is_empty() {
            self.help = Some(format!("available: {}", keys.join(", ")));
        }
        self
    }
}

/// An [`Objects`] with nothing known: every object is unknown. Used to evaluate statically.
pub struct NoObjects {
    /// The declared cluster names (known statically).
    pub clusters: Vec<String>,
    /// `for_each` keys of blocks, when known.
    pub keys: BTreeMap<BlockAddr, Vec<String>>,
    /// Data sources read before expansion (`Session::discover`).
    pub data: BTreeMap<Addr, ObjectValue>,
}

impl Objects for NoObjects {
    fn instance(&self, addr: &Addr) -> Option<ObjectValue> {
        self.data.get(addr).cloned()
    }
    fn keys(&self, block: &BlockAddr) -> Option<Vec<String>> {
        self.keys.get(block).cloned()
    }
    fn cluster_names(&self) -> Vec<String> {
        self.clusters.clone()
    }
}

/// The instances a `for_each` value yields: key → `each.value`.
///
/// A map yields its entries; a list of strings yields each string as key and value; a list of
/// lists (such as `pairs()` gives) yields keys joined with `,`.
pub fn for_each_instances(v: &Value) -> Result<Vec<(String, Value)>, String> {
    match v {
        Value::Map(m) => Ok(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        Value::List(items) => {
            let mut out: Vec<(String, Value)> = Vec::with_capacity(items.len());
            for item in items {
                let key = match item {
                    Value::List(parts) => parts
                        .iter()
                        .map(|p| p.to_interpolated().ok_or("a list item of for_each holds a non-text value"))
                        .collect::<Result<Vec<_>, _>>()?
                        .join(","),
                    Value::Unknown => return Err("for_each holds a value known only after apply".into()),
                    other => other.to_interpolated().ok_or_else(|| {
                        format!("for_each items must be text or lists of text, found a {}", other.type_name())
                    })?,
                };
                if out.iter().any(|(k, _)| *k == key) {
                    return Err(format!("for_each has the key {key:?} twice"));
                }
                out.push((key, item.clone()));
            }
            Ok(out)
        }
        Value::Unknown => {
            Err("for_each depends on values known only after apply; it may use variables, literals and the cluster set"
                .into())
        }
        other => Err(format!("for_each must be a map or a list, found a {}", other.type_name())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Span;
    use crate::expr::{StrSpans, parse_expression};

    /// One object `test_object.o` (its `secret` sensitive) and the variable `m`.
    struct One;

    impl Objects for One {
        fn instance(&self, addr: &Addr) -> Option<ObjectValue> {
            (addr.block.name == "o").then(|| ObjectValue {
                attrs: Map::from([
                    ("list".to_string(), Value::List(vec![Value::Int(1), Value::Int(2)])),
                    ("secret".to_string(), Value::str("s")),
                    ("hidden".to_string(), Value::Redacted("h".into())),
                ]),
                sensitive: Arc::new(BTreeSet::from(["secret".to_string()])),
            })
        }
        fn keys(&self, _: &BlockAddr) -> Option<Vec<String>> {
            None
        }
        fn cluster_names(&self) -> Vec<String> {
            Vec::new()
        }
    }

    fn run(text: &str) -> Result<Evaluated, String> {
        let e = parse_expression(text, StrSpans { whole: Span::new(0, 0..text.len()), content: Some(0) }).unwrap();
        let m = Value::Map(Map::from([
            ("a".to_string(), Value::Map(Map::from([("x".to_string(), Value::Int(1))]))),
            ("b".to_string(), Value::Map(Map::from([("x".to_string(), Value::Int(2))]))),
        ]));
        let vars = Map::from([("m".to_string(), m)]);
        let scope = Scope {
            vars: &vars,
            sensitive_vars: &BTreeSet::new(),
            each: None,
            objects: &One,
            dir: Path::new("."),
            files: None,
        };
        eval(&e, &scope).map_err(|d| format!("{} {:?} {:?}", d.summary, d.label, d.help))
    }

    fn value(text: &str) -> Value {
        run(text).unwrap().value
    }

    #[test]
    fn traversal_steps() {
        assert_eq!(value("var.m.*.x"), Value::List(vec![Value::Int(1), Value::Int(2)]));
        assert_eq!(value("var.m[\"b\"].x"), Value::Int(2));
        assert_eq!(value("test_object.o.list[1]"), Value::Int(2));
        assert_eq!(value("test_object.o.list[*]"), Value::List(vec![Value::Int(1), Value::Int(2)]));
        assert_eq!(value("test_object.p.list[0]"), Value::Unknown);
        assert_eq!(value("var.m[test_object.p.id]"), Value::Unknown);
        let e = run("test_object.o.list[2]").unwrap_err();
        assert_eq!(e, "index 2 is out of range Some(\"the list has 2 items\") None");
        assert_eq!(run("var.m[\"c\"]").unwrap_err(), "no key \"c\" None None");
        assert_eq!(run("var.m[[1]]").unwrap_err(), "cannot index a map with a list None None");
        assert_eq!(run("var.m.zzz").unwrap_err(), "no attribute `zzz` None Some(\"available: a, b\")");
        assert_eq!(run("var.m.aa").unwrap_err(), "no attribute `aa` None Some(\"did you mean `a`?\")");
        assert_eq!(run("test_object.o.list.x").unwrap_err(), "cannot take attribute `x` of a list None None");
        assert_eq!(run("var.m.a.x.*").unwrap_err(), "cannot take `*` of a number None None");
    }

    #[test]
    fn sensitivity_follows_what_is_read() {
        assert!(!run("test_object.o.list").unwrap().sensitive);
        assert!(run("test_object.o.secret").unwrap().sensitive);
        assert!(run("test_object.o").unwrap().sensitive, "the whole object holds the secret");
        assert!(run("test_object.o[\"list\"]").unwrap().sensitive, "an index may reach any attribute");
        let hidden = run("test_object.o.hidden").unwrap();
        assert_eq!((hidden.value, hidden.sensitive), (Value::Unknown, true), "a redacted value is unknown");
    }
}
