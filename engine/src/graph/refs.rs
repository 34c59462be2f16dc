//! Reference checking: every reference of every block, output and check names something
//! declared (with a suggestion when it is misspelt), calls name known functions with the right
//! number of arguments, and the instances a block refers to (or names in `depends_on`) become its
//! dependencies.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::Graph;
use super::dag::EdgeSpans;
use super::expand::static_objects;
use crate::addr::{Addr, BlockAddr, CLUSTER_TYPE, Mode};
use crate::config::{Block, Config, schema_of, suggest};
use crate::diag::{Diagnostic, Diagnostics, Span};
use crate::eval::{NoObjects, Scope, eval};
use crate::expr::{Expr, ExprKind, Step, TemplatePart};
use crate::functions;
use crate::provider::{Registry, TypeSchema};
use crate::value::Value;
use crate::vars::Vars;

/// Dependencies found so far: instance index → the span of the first reference to it.
type Deps = BTreeMap<usize, Span>;

/// Checks every reference and sets each instance's dependencies; returns the span that makes
/// each edge (dependent, dependency), for cycle messages.
pub(super) fn link(
    cfg: &Config,
    vars: &Vars,
    registry: &Registry,
    g: &mut Graph,
    diags: &mut Diagnostics,
) -> EdgeSpans {
    let objects = static_objects(cfg, &g.keys, &g.data);
    let base = RefCtx { cfg, vars, registry, g, objects: &objects, each_key: None, block: None };
    let deps: Vec<Option<Deps>> = (0..g.instances.len()).map(|i| base.instance_deps(i, diags)).collect();
    // Outputs and checks are not nodes, but their references are checked the same way.
    base.outputs_and_checks(diags);
    let mut edge_spans = HashMap::new();
    for (i, deps) in deps.into_iter().enumerate() {
        let Some(deps) = deps else { continue };
        for (&d, &span) in &deps {
            edge_spans.insert((i, d), span);
        }
        g.instances[i].deps = deps.into_keys().collect();
    }
    edge_spans
}

/// The expressions of a block whose references are its dependencies.
fn block_exprs(b: &Block) -> impl Iterator<Item = &Expr> {
    b.attrs.values().map(|a| &a.expr).chain(b.for_each.iter())
}

/// What reference checking sees: the file, the variables, the schemas, the instances, the static
/// objects, and the block (and `each.key`) being checked, if any.
#[derive(Clone, Copy)]
struct RefCtx<'a> {
    cfg: &'a Config,
    vars: &'a Vars,
    registry: &'a Registry,
    g: &'a Graph,
    objects: &'a NoObjects,
    each_key: Option<&'a Value>,
    block: Option<&'a Block>,
}

/// One reference: the whole expression, its root name (`var`, `each`, `clusters`, `data` or a
/// resource type) with its span, and the steps after the root.
struct RefSite<'e> {
    expr: &'e Expr,
    root: &'e str,
    root_span: Span,
    steps: &'e [Step],
}

impl RefSite<'_> {
    /// The name of step `i` when it is `.name`.
    fn attr(&self, i: usize) -> Option<(&str, Span)> {
        match self.steps.get(i) {
            Some(Step::Attr(n, s)) => Some((n.as_str(), *s)),
            _ => None,
        }
    }
}

impl RefCtx<'_> {
    /// The dependencies of instance `i` (references and `depends_on`); `None` for an instance
    /// without a block.
    fn instance_deps(&self, i: usize, diags: &mut Diagnostics) -> Option<Deps> {
        let inst = &self.g.instances[i];
        let block = self.g.block_of(self.cfg, &inst.addr)?;
        let ctx = RefCtx { each_key: inst.each_key.as_ref(), block: Some(block), ..*self };
        let mut deps = BTreeMap::new();
        for e in block_exprs(block) {
            ctx.collect(e, &mut deps, diags);
        }
        ctx.depends_on(block, &mut deps, diags);
        for e in &block.depends_on_refs {
            ctx.collect(e, &mut deps, diags);
        }
        Some(deps)
    }

    /// `depends_on`: each entry names declared instances, which become dependencies.
    fn depends_on(&self, block: &Block, deps: &mut Deps, diags: &mut Diagnostics) {
        for (target, span) in &block.depends_on {
            let found = self.targets(target);
            // A block whose for_each has no keys (no pairs in a one-cluster fleet) is declared,
            // with zero instances: depending on it depends on nothing.
            let declared_empty = target.key.is_none() && self.g.keys.get(&target.block).is_some_and(Vec::is_empty);
            if found.is_empty() && !declared_empty {
                diags.push(
                    Diagnostic::error(format!("`depends_on` names `{target}`, which is not declared"), *span)
                        .maybe_help(suggest(
                            &target.block.to_string(),
                            self.cfg
                                .blocks
                                .keys()
                                .map(|b| b.to_string())
                                .collect::<Vec<_>>()
                                .iter()
                                .map(String::as_str),
                        )),
                );
            }
            for t in found {
                deps.entry(t).or_insert(*span);
            }
        }
    }

    /// Checks the references of outputs and checks (a check with `for_each` has an `each`).
    fn outputs_and_checks(&self, diags: &mut Diagnostics) {
        let mut sink = BTreeMap::new();
        for o in self.cfg.outputs.values() {
            self.collect(&o.value, &mut sink, diags);
        }
        for c in &self.cfg.checks {
            let ctx = RefCtx { each_key: c.for_each.as_ref().map(|_| &Value::Unknown), ..*self };
            for e in
                c.condition.iter().chain(&c.error_message).chain(&c.for_each).chain(c.args.values().map(|a| &a.expr))
            {
                ctx.collect(e, &mut sink, diags);
            }
        }
    }

    /// Instances an address names (all instances for a block address of a for_each block).
    fn targets(&self, a: &Addr) -> Vec<usize> {
        if let Some(&i) = self.g.index.get(a) {
            return vec![i];
        }
        if a.key.is_none()
            && let Some(ks) = self.g.keys.get(&a.block)
        {
            return ks.iter().filter_map(|k| self.g.index.get(&a.block.instance(Some(k.clone())))).copied().collect();
        }
        Vec::new()
    }

    /// Checks every reference and call in `e`, adding what it refers to to `deps`.
    fn collect(&self, e: &Expr, deps: &mut Deps, diags: &mut Diagnostics) {
        if let Some((root, root_span, steps)) = e.as_reference() {
            self.reference(&RefSite { expr: e, root, root_span, steps }, deps, diags);
            self.collect_indices(steps, deps, diags);
            return;
        }
        match &e.kind {
            ExprKind::Call(name, args) => {
                if let Err((msg, help)) = functions::check_call(name, args.len()) {
                    diags.push(Diagnostic::error(msg, e.span).label("in this call").maybe_help(help));
                }
                args.iter().for_each(|a| self.collect(a, deps, diags));
            }
            ExprKind::Lit(_) | ExprKind::Ident(_) => {}
            ExprKind::Template(parts) => {
                for p in parts {
                    if let TemplatePart::Interp(x) = p {
                        self.collect(x, deps, diags);
                    }
                }
            }
            ExprKind::Traverse(base, steps) => {
                self.collect(base, deps, diags);
                self.collect_indices(steps, deps, diags);
            }
            ExprKind::List(items) => items.iter().for_each(|a| self.collect(a, deps, diags)),
            ExprKind::Map(entries) => entries.iter().for_each(|(_, _, v)| self.collect(v, deps, diags)),
            ExprKind::Unary(_, x) => self.collect(x, deps, diags),
            ExprKind::Binary(_, a, b) => {
                self.collect(a, deps, diags);
                self.collect(b, deps, diags);
            }
            ExprKind::Cond(c, a, b) => {
                self.collect(c, deps, diags);
                self.collect(a, deps, diags);
                self.collect(b, deps, diags);
            }
        }
    }

    /// Checks the index expressions among traversal steps.
    fn collect_indices(&self, steps: &[Step], deps: &mut Deps, diags: &mut Diagnostics) {
        for st in steps {
            if let Step::Index(i, _) = st {
                self.collect(i, deps, diags);
            }
        }
    }

    /// An index's value when it is known statically, as an instance key.
    fn static_key(&self, idx: &Expr) -> Option<String> {
        let each_value = Value::Unknown;
        let scope = Scope {
            vars: &self.vars.values,
            sensitive_vars: &self.vars.sensitive,
            each: self.each_key.map(|k| (k, &each_value)),
            objects: self.objects,
            dir: &self.cfg.dir,
            files: None,
        };
        eval(idx, &scope).ok().and_then(|r| if r.value.has_unknown() { None } else { r.value.to_interpolated() })
    }

    /// Checks one reference, by its root.
    fn reference(&self, r: &RefSite<'_>, deps: &mut Deps, diags: &mut Diagnostics) {
        match r.root {
            "var" => self.var_ref(r, diags),
            "each" => self.each_ref(r, diags),
            "clusters" => self.clusters_ref(r, deps, diags),
            "data" => self.data_ref(r, deps, diags),
            ty => self.resource_ref(ty, r, deps, diags),
        }
    }

    /// `var.NAME`: a declared variable.
    fn var_ref(&self, r: &RefSite<'_>, diags: &mut Diagnostics) {
        match r.attr(0) {
            Some((n, s)) if !self.cfg.variables.contains_key(n) => diags.push(
                Diagnostic::error(format!("unknown variable `var.{n}`"), s.sub(0, 0).max_with(r.expr.span))
                    .label("not declared under [variables]")
                    .maybe_help(suggest(n, self.cfg.variables.keys().map(String::as_str))),
            ),
            Some(_) => {}
            None => diags.push(Diagnostic::error("incomplete reference `var`", r.expr.span).help("write `var.NAME`")),
        }
    }

    /// `each.key` or `each.value`, inside a block with `for_each`.
    fn each_ref(&self, r: &RefSite<'_>, diags: &mut Diagnostics) {
        if self.each_key.is_none() {
            diags.push(
                Diagnostic::error("`each` used outside a block with `for_each`", r.root_span)
                    .label("there is no `for_each` here"),
            );
        } else if !matches!(r.attr(0), Some(("key" | "value", _))) {
            diags.push(Diagnostic::error("unknown reference", r.expr.span).help("use `each.key` or `each.value`"));
        }
    }

    /// `clusters.NAME.ATTR` (one declared cluster) or `clusters.*.ATTR` (all of them).
    fn clusters_ref(&self, r: &RefSite<'_>, deps: &mut Deps, diags: &mut Diagnostics) {
        let schema = self.registry.lookup(true, CLUSTER_TYPE).map(|(_, s)| s.clone());
        match r.attr(0) {
            Some((n, s)) => {
                let block = BlockAddr { mode: Mode::Cluster, ty: CLUSTER_TYPE.into(), name: n.into() };
                match self.g.index.get(&block.instance(None)) {
                    Some(&i) => {
                        deps.entry(i).or_insert(r.expr.span);
                    }
                    None => diags.push(
                        Diagnostic::error(format!("unknown cluster `{n}`"), s)
                            .label("not declared under [clusters]")
                            .maybe_help(suggest(n, self.objects.clusters.iter().map(String::as_str))),
                    ),
                }
                if let (Some(schema), Some(Step::Attr(a, sp))) = (&schema, r.steps.get(1)) {
                    check_attr(schema, a, *sp, diags);
                }
            }
            None => {
                for n in &self.objects.clusters {
                    let block = BlockAddr { mode: Mode::Cluster, ty: CLUSTER_TYPE.into(), name: n.clone() };
                    if let Some(&i) = self.g.index.get(&block.instance(None)) {
                        deps.entry(i).or_insert(r.expr.span);
                    }
                }
                if let (Some(schema), Some(Step::Splat(_)), Some(Step::Attr(a, sp))) =
                    (&schema, r.steps.first(), r.steps.get(1))
                {
                    check_attr(schema, a, *sp, diags);
                }
            }
        }
    }

    /// `data.TYPE.NAME...`: a declared data source.
    fn data_ref(&self, r: &RefSite<'_>, deps: &mut Deps, diags: &mut Diagnostics) {
        match (r.attr(0), r.attr(1)) {
            (Some((ty, _)), Some((name, _))) => {
                let block = BlockAddr { mode: Mode::Data, ty: ty.into(), name: name.into() };
                self.block_ref(r.expr, block, &r.steps[2..], deps, diags);
            }
            _ => diags
                .push(Diagnostic::error("incomplete reference", r.expr.span).help("write `data.TYPE.NAME.ATTRIBUTE`")),
        }
    }

    /// `TYPE.NAME...`: a declared resource, of a type the file declares or a provider has.
    fn resource_ref(&self, ty: &str, r: &RefSite<'_>, deps: &mut Deps, diags: &mut Diagnostics) {
        let known_type = self.cfg.blocks.keys().any(|b| b.mode == Mode::Managed && b.ty == ty)
            || self.registry.lookup(false, ty).is_some();
        if !known_type {
            let mut roots: BTreeSet<&str> = ["var", "each", "clusters", "data"].into();
            roots.extend(self.cfg.blocks.keys().filter(|b| b.mode == Mode::Managed).map(|b| b.ty.as_str()));
            diags.push(
                Diagnostic::error(format!("unknown reference `{ty}`"), r.root_span)
                    .label("not a variable, cluster, data source or resource type")
                    .maybe_help(suggest(ty, roots.iter().copied())),
            );
            return;
        }
        match r.attr(0) {
            Some((name, _)) => self.block_ref(r.expr, BlockAddr::managed(ty, name), &r.steps[1..], deps, diags),
            None => diags.push(
                Diagnostic::error(format!("incomplete reference `{ty}`"), r.expr.span)
                    .help("write `TYPE.NAME.ATTRIBUTE`"),
            ),
        }
    }

    /// A reference to `block` followed by `rest`: the block is declared (and is not the one being
    /// checked), its instances (or the one an index names) become dependencies, and the
    /// attribute taken is one its type has.
    fn block_ref(&self, x: &Expr, block: BlockAddr, rest: &[Step], deps: &mut Deps, diags: &mut Diagnostics) {
        if !self.cfg.blocks.contains_key(&block) {
            let same_mode: Vec<String> =
                self.cfg.blocks.keys().filter(|b| b.mode == block.mode).map(|b| b.to_string()).collect();
            diags.push(
                Diagnostic::error(format!("unknown reference `{block}`"), x.span)
                    .label("no such block in this file")
                    .maybe_help(suggest(&block.to_string(), same_mode.iter().map(String::as_str))),
            );
            return;
        }
        if self.block.is_some_and(|b| b.addr == block) && !self.g.keys.contains_key(&block) {
            diags.push(Diagnostic::error(format!("{block} refers to itself"), x.span));
            return;
        }
        let Some((targets, rest)) = self.instances_named(&block, rest, diags) else { return };
        for t in targets {
            deps.entry(t).or_insert(x.span);
        }
        if let (Some(schema), Some(Step::Attr(a, sp))) = (schema_of(self.registry, &block), rest.first()) {
            check_attr(schema, a, *sp, diags);
        }
    }

    /// The instances a reference to `block` reaches, and the steps after the instance key (or
    /// splat) if it has one: the keyed instance when the key is known statically, else all of
    /// them. `None` (reported) when a known key names no instance.
    fn instances_named<'s>(
        &self,
        block: &BlockAddr,
        rest: &'s [Step],
        diags: &mut Diagnostics,
    ) -> Option<(Vec<usize>, &'s [Step])> {
        Some(match (self.g.keys.get(block), rest.first()) {
            (Some(_), Some(Step::Index(idx, _))) => match self.static_key(idx) {
                Some(k) => match self.g.index.get(&block.instance(Some(k.clone()))) {
                    Some(&i) => (vec![i], &rest[1..]),
                    None => {
                        diags.push(Diagnostic::error(format!("{block} has no instance with key {k:?}"), idx.span));
                        return None;
                    }
                },
                None => (self.targets(&block.instance(None)), &rest[1..]),
            },
            (Some(_), Some(Step::Splat(_))) => (self.targets(&block.instance(None)), &rest[1..]),
            _ => (self.targets(&block.instance(None)), rest),
        })
    }
}

/// Choosing a span for a diagnostic.
trait MaxWith {
    /// `other` when this span is empty, else this one.
    fn max_with(self, other: Span) -> Span;
}

impl MaxWith for Span {
    fn max_with(self, other: Span) -> Span {
        if self.start == self.end { other } else { self }
    }
}

/// Reports `a` when the type of `schema` has no such attribute.
fn check_attr(schema: &TypeSchema, a: &str, span: Span, diags: &mut Diagnostics) {
    if schema.get(a).is_none() {
        diags.push(
            Diagnostic::error(format!("`{}` has no attribute `{a}`", schema.name), span)
                .maybe_help(suggest(a, schema.attrs.iter().map(|x| x.name.as_str())))
                .help_default_attrs(schema),
        );
    }
}

/// A diagnostic's help listing a type's attributes.
trait HelpAttrs {
    /// Sets the help to the list of the type's attributes unless a suggestion is there.
    fn help_default_attrs(self, schema: &TypeSchema) -> Self;
}

impl HelpAttrs for Diagnostic {
    fn help_default_attrs(mut self, schema: &TypeSchema) -> Self {
        if self.help.is_none() {
            let names: Vec<&str> = schema.attrs.iter().map(|a| a.name.as_str()).collect();
            self.help = Some(format!("its attributes are: {}", names.join(", ")));
        }
        self
    }
}
