//! The dependency graph: every block expanded into its instances (`for_each` keys must be known
//! without reading anything live), edges from references and `depends_on`, references checked,
//! cycles reported with their full path.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use petgraph::graph::{DiGraph, NodeIndex};

use crate::addr::{Addr, BlockAddr, CLUSTER_TYPE, Mode};
use crate::config::{Block, Config, schema_of, suggest};
use crate::diag::{Diagnostic, Diagnostics, Span};
use crate::eval::{NoObjects, Scope, eval, for_each_instances};
use crate::expr::{Expr, ExprKind, Step};
use crate::functions;
use crate::provider::Registry;
use crate::value::Value;
use crate::vars::Vars;

/// One instance of a block.
#[derive(Clone, Debug)]
pub struct Instance {
    /// Its address.
    pub addr: Addr,
    /// `each.key` (as a value) for `for_each` instances.
    pub each_key: Option<Value>,
    /// Instances this one depends on (indices into [`Graph::instances`]), sorted.
    pub deps: Vec<usize>,
}

/// The instance graph of a desired-state file.
#[derive(Debug, Default)]
pub struct Graph {
    /// Instances, sorted by address.
    pub instances: Vec<Instance>,
    /// Address → index.
    pub index: HashMap<Addr, usize>,
    /// The keys of every `for_each` block.
    pub keys: BTreeMap<BlockAddr, Vec<String>>,
    /// The same edges as a petgraph DAG (node weight = instance index; edge from dependency to
    /// dependent).
    pub dag: DiGraph<usize, ()>,
    /// Clusters made by a `[clusters.X]` block with `for_each`: each key is a cluster of its own
    /// (`clusters.KEY`); this maps it back to the block that declares it.
    pub sources: HashMap<Addr, BlockAddr>,
    /// Every cluster name, declared one by one or by `for_each`.
    pub cluster_names: Vec<String>,
}

impl Graph {
    /// The block that declares an instance.
    pub fn block_of<'c>(&self, cfg: &'c Config, addr: &Addr) -> Option<&'c Block> {
        cfg.blocks.get(self.sources.get(addr).unwrap_or(&addr.block))
    }
}

/// Cluster names: each `[clusters.NAME]`, or each key of one with `for_each`.
fn cluster_names(cfg: &Config, keys: &BTreeMap<BlockAddr, Vec<String>>) -> Vec<String> {
    let mut names = Vec::new();
    for (addr, b) in cfg.blocks.iter().filter(|(a, _)| a.mode == Mode::Cluster) {
        match (&b.for_each, keys.get(addr)) {
            (None, _) => names.push(addr.name.clone()),
            (Some(_), Some(ks)) => names.extend(ks.iter().cloned()),
            (Some(_), None) => {}
        }
    }
    names.sort();
    names
}

/// The static scope: variables and the cluster names known, nothing live.
fn static_objects(cfg: &Config, keys: &BTreeMap<BlockAddr, Vec<String>>) -> NoObjects {
    let mut cluster_blocks = keys.clone();
    cluster_blocks.retain(|b, _| b.mode != Mode::Cluster);
    NoObjects { clusters: cluster_names(cfg, keys), keys: cluster_blocks }
}

/// Builds the graph, reporting every unknown reference, bad call and cycle.
pub fn build(cfg: &Config, vars: &Vars, registry: &Registry) -> Result<Graph, Diagnostics> {
    let mut diags = Diagnostics::default();
    let keys = expand(cfg, vars, &mut diags);
    let mut g = Graph { cluster_names: cluster_names(cfg, &keys), keys, ..Graph::default() };
    let mut seen = BTreeSet::new();
    for name in &g.cluster_names {
        if !seen.insert(name.clone()) {
            let span = cfg.blocks.values().find(|b| b.addr.mode == Mode::Cluster).map_or(Span::default(), |b| b.span);
            diags.push(Diagnostic::error(format!("cluster `{name}` is declared twice"), span));
        }
    }
    for (addr, b) in &cfg.blocks {
        match g.keys.get(addr) {
            // Each key of a cluster block is a cluster of its own: clusters.KEY.
            Some(ks) if addr.mode == Mode::Cluster => {
                for k in ks {
                    let a = BlockAddr { mode: Mode::Cluster, ty: CLUSTER_TYPE.into(), name: k.clone() }.instance(None);
                    g.sources.insert(a.clone(), addr.clone());
                    g.instances.push(Instance { addr: a, each_key: Some(Value::str(k.clone())), deps: Vec::new() });
                }
            }
            Some(ks) => {
                for k in ks {
                    g.instances.push(Instance {
                        addr: addr.instance(Some(k.clone())),
                        each_key: Some(Value::str(k.clone())),
                        deps: Vec::new(),
                    });
                }
            }
            None if b.for_each.is_some() => {} // expansion failed; already reported
            None => g.instances.push(Instance { addr: addr.instance(None), each_key: None, deps: Vec::new() }),
        }
    }
    g.keys.retain(|b, _| b.mode != Mode::Cluster);
    g.instances.sort_by(|a, b| a.addr.cmp(&b.addr));
    g.index = g.instances.iter().enumerate().map(|(i, n)| (n.addr.clone(), i)).collect();

    let objects = static_objects(cfg, &g.keys);
    let mut edge_spans: HashMap<(usize, usize), Span> = HashMap::new();
    for i in 0..g.instances.len() {
        let addr = g.instances[i].addr.clone();
        let Some(block) = g.block_of(cfg, &addr) else { continue };
        let each_key = g.instances[i].each_key.clone();
        let mut deps: BTreeMap<usize, Span> = BTreeMap::new();
        let ctx =
            RefCtx { cfg, vars, registry, g: &g, objects: &objects, each_key: each_key.as_ref(), block: Some(block) };
        for e in block_exprs(block) {
            ctx.collect(e, &mut deps, &mut diags);
        }
        for (target, span) in &block.depends_on {
            let found = ctx.targets(target);
            // A block whose for_each has no keys (no pairs in a one-cluster fleet) is declared,
            // with zero instances: depending on it depends on nothing.
            let declared_empty = target.key.is_none() && g.keys.get(&target.block).is_some_and(Vec::is_empty);
            if found.is_empty() && !declared_empty {
                diags.push(
                    Diagnostic::error(format!("`depends_on` names `{target}`, which is not declared"), *span)
                        .maybe_help(suggest(
                            &target.block.to_string(),
                            cfg.blocks.keys().map(|b| b.to_string()).collect::<Vec<_>>().iter().map(String::as_str),
                        )),
                );
            }
            for t in found {
                deps.entry(t).or_insert(*span);
            }
        }
        for (&d, &span) in &deps {
            edge_spans.insert((i, d), span);
        }
        g.instances[i].deps = deps.into_keys().collect();
    }
    // Outputs and checks are not nodes, but their references are checked the same way.
    let ctx = RefCtx { cfg, vars, registry, g: &g, objects: &objects, each_key: None, block: None };
    let mut sink = BTreeMap::new();
    for o in cfg.outputs.values() {
        ctx.collect(&o.value, &mut sink, &mut diags);
    }
    for c in &cfg.checks {
        let ctx = RefCtx { each_key: c.for_each.as_ref().map(|_| &Value::Unknown), ..ctx };
        for e in c.condition.iter().chain(&c.error_message).chain(&c.for_each).chain(c.args.values().map(|a| &a.expr)) {
            ctx.collect(e, &mut sink, &mut diags);
        }
    }

    let mut dag = DiGraph::with_capacity(g.instances.len(), g.instances.len());
    for i in 0..g.instances.len() {
        dag.add_node(i);
    }
    for (i, n) in g.instances.iter().enumerate() {
        for &d in &n.deps {
            dag.add_edge(NodeIndex::new(d), NodeIndex::new(i), ());
        }
    }
    g.dag = dag;
    report_cycles(&g, &edge_spans, &mut diags);
    if diags.has_errors() {
        diags.sort();
        Err(diags)
    } else {
        Ok(g)
    }
}

fn block_exprs(b: &Block) -> impl Iterator<Item = &Expr> {
    b.attrs.values().map(|a| &a.expr).chain(b.for_each.iter())
}

/// Evaluates every `for_each` statically: its keys must be known now.
fn expand(cfg: &Config, vars: &Vars, diags: &mut Diagnostics) -> BTreeMap<BlockAddr, Vec<String>> {
    let mut keys = BTreeMap::new();
    let mut pending: Vec<&Block> = cfg.blocks.values().filter(|b| b.for_each.is_some()).collect();
    // Clusters first: other blocks may iterate over the cluster set.
    pending.sort_by_key(|b| b.addr.mode != Mode::Cluster);
    // A for_each may use another block's keys; resolve in rounds until nothing changes.
    loop {
        let before = pending.len();
        let mut failed = Vec::new();
        for b in pending {
            let objects = static_objects(cfg, &keys);
            let Some(fe) = &b.for_each else { continue };
            let scope = Scope {
                vars: &vars.values,
                sensitive_vars: &vars.sensitive,
                each: None,
                objects: &objects,
                dir: &cfg.dir,
                files: None,
            };
            match eval(fe, &scope).map(|r| r.value) {
                Ok(v) => match for_each_instances(&v) {
                    Ok(inst) => {
                        keys.insert(b.addr.clone(), inst.into_iter().map(|(k, _)| k).collect());
                    }
                    Err(_) if v.has_unknown() => failed.push(b),
                    Err(msg) => diags.push(Diagnostic::error("invalid `for_each`", fe.span).label(msg)),
                },
                Err(_) => failed.push(b), // reported by reference checking
            }
        }
        if failed.is_empty() || failed.len() == before {
            for b in failed {
                if let Some(fe) = &b.for_each {
                    let objects = static_objects(cfg, &keys);
                    let scope = Scope {
                        vars: &vars.values,
                        sensitive_vars: &vars.sensitive,
                        each: None,
                        objects: &objects,
                        dir: &cfg.dir,
                        files: None,
                    };
                    if let Ok(r) = eval(fe, &scope) {
                        let msg = for_each_instances(&r.value).err().unwrap_or_default();
                        diags.push(Diagnostic::error("invalid `for_each`", fe.span).label(msg));
                    }
                }
            }
            return keys;
        }
        pending = failed;
    }
}

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

impl RefCtx<'_> {
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

    fn collect(&self, e: &Expr, deps: &mut BTreeMap<usize, Span>, diags: &mut Diagnostics) {
        if let Some((root, rspan, steps)) = e.as_reference() {
            self.reference(e, root, rspan, steps, deps, diags);
            for st in steps {
                if let Step::Index(i, _) = st {
                    self.collect(i, deps, diags);
                }
            }
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
                    if let crate::expr::TemplatePart::Interp(x) = p {
                        self.collect(x, deps, diags);
                    }
                }
            }
            ExprKind::Traverse(base, steps) => {
                self.collect(base, deps, diags);
                for st in steps {
                    if let Step::Index(i, _) = st {
                        self.collect(i, deps, diags);
                    }
                }
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

    #[allow(clippy::too_many_arguments)]
    fn reference(
        &self,
        x: &Expr,
        root: &str,
        rspan: Span,
        steps: &[Step],
        deps: &mut BTreeMap<usize, Span>,
        diags: &mut Diagnostics,
    ) {
        let attr = |i: usize| match steps.get(i) {
            Some(Step::Attr(n, s)) => Some((n.as_str(), *s)),
            _ => None,
        };
        match root {
            "var" => match attr(0) {
                Some((n, s)) if !self.cfg.variables.contains_key(n) => diags.push(
                    Diagnostic::error(format!("unknown variable `var.{n}`"), s.sub(0, 0).max_with(x.span))
                        .label("not declared under [variables]")
                        .maybe_help(suggest(n, self.cfg.variables.keys().map(String::as_str))),
                ),
                Some(_) => {}
                None => diags.push(Diagnostic::error("incomplete reference `var`", x.span).help("write `var.NAME`")),
            },
            "each" => {
                if self.each_key.is_none() {
                    diags.push(
                        Diagnostic::error("`each` used outside a block with `for_each`", rspan)
                            .label("there is no `for_each` here"),
                    );
                } else if !matches!(attr(0), Some(("key" | "value", _))) {
                    diags.push(Diagnostic::error("unknown reference", x.span).help("use `each.key` or `each.value`"));
                }
            }
            "clusters" => {
                let schema = self.registry.lookup(true, CLUSTER_TYPE).map(|(_, s)| s.clone());
                let names: Vec<&str> = self.objects.clusters.iter().map(String::as_str).collect();
                match attr(0) {
                    Some((n, s)) => {
                        let block = BlockAddr { mode: Mode::Cluster, ty: CLUSTER_TYPE.into(), name: n.into() };
                        match self.g.index.get(&block.instance(None)) {
                            Some(&i) => {
                                deps.entry(i).or_insert(x.span);
                            }
                            None => diags.push(
                                Diagnostic::error(format!("unknown cluster `{n}`"), s)
                                    .label("not declared under [clusters]")
                                    .maybe_help(suggest(n, names.iter().copied())),
                            ),
                        }
                        if let (Some(schema), Some(Step::Attr(a, sp))) = (&schema, steps.get(1)) {
                            check_attr(schema, a, *sp, diags);
                        }
                    }
                    None => {
                        for n in &self.objects.clusters {
                            let block = BlockAddr { mode: Mode::Cluster, ty: CLUSTER_TYPE.into(), name: n.clone() };
                            if let Some(&i) = self.g.index.get(&block.instance(None)) {
                                deps.entry(i).or_insert(x.span);
                            }
                        }
                        if let (Some(schema), Some(Step::Splat(_)), Some(Step::Attr(a, sp))) =
                            (&schema, steps.first(), steps.get(1))
                        {
                            check_attr(schema, a, *sp, diags);
                        }
                    }
                }
            }
            "data" => match (attr(0), attr(1)) {
                (Some((ty, _)), Some((name, _))) => {
                    let block = BlockAddr { mode: Mode::Data, ty: ty.into(), name: name.into() };
                    self.block_ref(x, block, &steps[2..], deps, diags);
                }
                _ => diags
                    .push(Diagnostic::error("incomplete reference", x.span).help("write `data.TYPE.NAME.ATTRIBUTE`")),
            },
            ty => {
                let known_type = self.cfg.blocks.keys().any(|b| b.mode == Mode::Managed && b.ty == ty)
                    || self.registry.lookup(false, ty).is_some();
                if !known_type {
                    let mut roots: BTreeSet<&str> = ["var", "each", "clusters", "data"].into();
                    roots.extend(self.cfg.blocks.keys().filter(|b| b.mode == Mode::Managed).map(|b| b.ty.as_str()));
                    diags.push(
                        Diagnostic::error(format!("unknown reference `{ty}`"), rspan)
                            .label("not a variable, cluster, data source or resource type")
                            .maybe_help(suggest(ty, roots.iter().copied())),
                    );
                    return;
                }
                match attr(0) {
                    Some((name, _)) => self.block_ref(x, BlockAddr::managed(ty, name), &steps[1..], deps, diags),
                    None => diags.push(
                        Diagnostic::error(format!("incomplete reference `{ty}`"), x.span)
                            .help("write `TYPE.NAME.ATTRIBUTE`"),
                    ),
                }
            }
        }
    }

    fn block_ref(
        &self,
        x: &Expr,
        block: BlockAddr,
        rest: &[Step],
        deps: &mut BTreeMap<usize, Span>,
        diags: &mut Diagnostics,
    ) {
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
        let mut rest = rest;
        let targets: Vec<usize> = match (self.g.keys.get(&block), rest.first()) {
            (Some(_), Some(Step::Index(idx, _))) => {
                rest = &rest[1..];
                match self.static_key(idx) {
                    Some(k) => match self.g.index.get(&block.instance(Some(k.clone()))) {
                        Some(&i) => vec![i],
                        None => {
                            diags.push(Diagnostic::error(format!("{block} has no instance with key {k:?}"), idx.span));
                            return;
                        }
                    },
                    None => self.targets(&block.instance(None)),
                }
            }
            (Some(_), Some(Step::Splat(_))) => {
                rest = &rest[1..];
                self.targets(&block.instance(None))
            }
            _ => self.targets(&block.instance(None)),
        };
        for t in targets {
            deps.entry(t).or_insert(x.span);
        }
        if let (Some(schema), Some(Step::Attr(a, sp))) = (schema_of(self.registry, &block), rest.first()) {
            check_attr(schema, a, *sp, diags);
        }
    }
}

trait MaxWith {
    fn max_with(self, other: Span) -> Span;
}

impl MaxWith for Span {
    /// The reference's own span when the step span is empty.
    fn max_with(self, other: Span) -> Span {
        if self.start == self.end { other } else { self }
    }
}

fn check_attr(schema: &crate::provider::TypeSchema, a: &str, span: Span, diags: &mut Diagnostics) {
    if schema.get(a).is_none() {
        diags.push(
            Diagnostic::error(format!("`{}` has no attribute `{a}`", schema.name), span)
                .maybe_help(suggest(a, schema.attrs.iter().map(|x| x.name.as_str())))
                .help_default_attrs(schema),
        );
    }
}

trait HelpAttrs {
    fn help_default_attrs(self, schema: &crate::provider::TypeSchema) -> Self;
}

impl HelpAttrs for Diagnostic {
    fn help_default_attrs(mut self, schema: &crate::provider::TypeSchema) -> Self {
        if self.help.is_none() {
            let names: Vec<&str> = schema.attrs.iter().map(|a| a.name.as_str()).collect();
            self.help = Some(format!("its attributes are: {}", names.join(", ")));
        }
        self
    }
}

/// Reports each dependency cycle once, as a path rotated to start at its smallest address.
fn report_cycles(g: &Graph, edge_spans: &HashMap<(usize, usize), Span>, diags: &mut Diagnostics) {
    for scc in petgraph::algo::tarjan_scc(&g.dag) {
        let self_loop = scc.len() == 1 && g.instances[scc[0].index()].deps.contains(&scc[0].index());
        if scc.len() < 2 && !self_loop {
            continue;
        }
        let members: BTreeSet<usize> = scc.iter().map(|n| n.index()).collect();
        let Some(&start) = members.iter().min_by_key(|&&i| &g.instances[i].addr) else { continue };
        // Shortest way round from the start, following "depends on" edges inside the component,
        // visiting dependencies in address order so the message is stable.
        let mut prev: BTreeMap<usize, usize> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        let mut closing = None;
        while let Some(cur) = queue.pop_front() {
            let mut next: Vec<usize> = g.instances[cur].deps.iter().copied().filter(|d| members.contains(d)).collect();
            next.sort_by(|a, b| g.instances[*a].addr.cmp(&g.instances[*b].addr));
            if next.contains(&start) {
                closing = Some(cur);
                break;
            }
            for n in next {
                if n != start && !prev.contains_key(&n) {
                    prev.insert(n, cur);
                    queue.push_back(n);
                }
            }
        }
        let mut path = Vec::new();
        let mut cur = closing.unwrap_or(start);
        while cur != start {
            path.push(cur);
            cur = prev.get(&cur).copied().unwrap_or(start);
        }
        path.push(start);
        path.reverse();
        let names: Vec<String> = path.iter().chain([&start]).map(|&i| g.instances[i].addr.to_string()).collect();
        let span = edge_spans.get(&(start, *path.get(1).unwrap_or(&start))).copied().unwrap_or_default();
        diags.push(
            Diagnostic::error(format!("dependency cycle: {}", names.join(" → ")), span)
                .label(format!("{} depends on {} here", names[0], names[1]))
                .help("break the cycle by removing one of these references or depends_on entries"),
        );
    }
}

/// Renders the graph in Graphviz DOT, one node per instance, edges from dependency to dependent.
pub fn to_dot(g: &Graph) -> String {
    let mut out = String::from("digraph meshform {\n  rankdir = \"LR\";\n  node [shape = box];\n");
    for n in &g.instances {
        out.push_str(&format!("  {:?};\n", n.addr.to_string()));
    }
    for n in &g.instances {
        for &d in &n.deps {
            out.push_str(&format!("  {:?} -> {:?};\n", g.instances[d].addr.to_string(), n.addr.to_string()));
        }
    }
    out.push_str("}\n");
    out
}
