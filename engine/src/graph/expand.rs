//! Instance expansion: every `for_each` evaluated statically (its keys must be known without
//! reading anything live, or from data sources read before expansion), then one [`Instance`] per
//! block or per key.
//!
//! The rule for data: a `for_each` whose value is unknown only because it reads data sources
//! that can be read before anything is applied (no `depends_on`, every attribute known from
//! variables and literals) is *deferred*: it has no instances yet, and `Session::discover` reads
//! those data sources and builds the graph again with their values (`Graph::deferred` names
//! them). Any other unknown `for_each` is an error: its keys would be known only after apply.

use std::collections::{BTreeMap, BTreeSet};

use super::{Graph, Instance};
use crate::addr::Addr;
use crate::addr::{BlockAddr, CLUSTER_TYPE, Mode};
use crate::config::{Block, Config};
use crate::diag::{Diagnostic, Diagnostics, Span};
use crate::eval::{NoObjects, ObjectValue, Scope, eval, for_each_instances};
use crate::value::Value;
use crate::vars::Vars;

/// `for_each` keys by block.
type Keys = BTreeMap<BlockAddr, Vec<String>>;

/// The graph's instances, sorted and indexed, with the `for_each` keys and cluster names (edges
/// come later).
pub(super) fn instances(
    cfg: &Config,
    vars: &Vars,
    data: &BTreeMap<Addr, ObjectValue>,
    diags: &mut Diagnostics,
) -> Graph {
    let mut deferred = BTreeMap::new();
    let keys = for_each_keys(cfg, vars, data, &mut deferred, diags);
    let mut g =
        Graph { cluster_names: cluster_names(cfg, &keys), keys, deferred, data: data.clone(), ..Graph::default() };
    check_unique_clusters(cfg, &g.cluster_names, diags);
    for (addr, b) in &cfg.blocks {
        add_instances(&mut g, addr, b);
    }
    g.keys.retain(|b, _| b.mode != Mode::Cluster);
    g.instances.sort_by(|a, b| a.addr.cmp(&b.addr));
    g.index = g.instances.iter().enumerate().map(|(i, n)| (n.addr.clone(), i)).collect();
    g
}

/// Reports a cluster name declared twice (one by one and by a `for_each`, or by two of them).
fn check_unique_clusters(cfg: &Config, names: &[String], diags: &mut Diagnostics) {
    let mut seen = BTreeSet::new();
    for name in names {
        if !seen.insert(name.clone()) {
            let span = cfg.blocks.values().find(|b| b.addr.mode == Mode::Cluster).map_or(Span::default(), |b| b.span);
            diags.push(Diagnostic::error(format!("cluster `{name}` is declared twice"), span));
        }
    }
}

/// Adds the instances of one block: one per key of its `for_each`, else one. Each key of a cluster
/// block is a cluster of its own (`clusters.KEY`), mapped back to the block in `g.sources`.
fn add_instances(g: &mut Graph, addr: &BlockAddr, b: &Block) {
    match g.keys.get(addr) {
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

/// Cluster names: each `[clusters.NAME]`, or each key of one with `for_each`.
fn cluster_names(cfg: &Config, keys: &Keys) -> Vec<String> {
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

/// The static scope: variables, the cluster names known and the data sources read before
/// expansion, nothing else live.
pub(super) fn static_objects(cfg: &Config, keys: &Keys, data: &BTreeMap<Addr, ObjectValue>) -> NoObjects {
    let mut cluster_blocks = keys.clone();
    cluster_blocks.retain(|b, _| b.mode != Mode::Cluster);
    NoObjects { clusters: cluster_names(cfg, keys), keys: cluster_blocks, data: data.clone() }
}

/// A scope of variables and `objects`, without `each`.
fn static_scope<'a>(cfg: &'a Config, vars: &'a Vars, objects: &'a NoObjects) -> Scope<'a> {
    Scope { vars: &vars.values, sensitive_vars: &vars.sensitive, each: None, objects, dir: &cfg.dir, files: None }
}

/// Evaluates every `for_each` statically: its keys must be known now. Clusters come first
/// (other blocks may iterate over the cluster set); a `for_each` may use another block's keys, so
/// this goes in rounds until a round resolves nothing more.
fn for_each_keys(
    cfg: &Config,
    vars: &Vars,
    data: &BTreeMap<Addr, ObjectValue>,
    deferred: &mut BTreeMap<BlockAddr, Vec<BlockAddr>>,
    diags: &mut Diagnostics,
) -> Keys {
    let mut keys = BTreeMap::new();
    let mut pending: Vec<&Block> = cfg.blocks.values().filter(|b| b.for_each.is_some()).collect();
    pending.sort_by_key(|b| b.addr.mode != Mode::Cluster);
    loop {
        let before = pending.len();
        let failed = expand_round(cfg, vars, data, pending, &mut keys, diags);
        if failed.is_empty() || failed.len() == before {
            let failed = defer(cfg, vars, data, failed, &keys, deferred);
            report_unresolved(cfg, vars, data, &failed, &keys, diags);
            return keys;
        }
        pending = failed;
    }
}

/// The data blocks an expression reads (`data.TYPE.NAME...`).
pub fn data_blocks(e: &crate::expr::Expr) -> Vec<BlockAddr> {
    let mut out = Vec::new();
    e.walk(&mut |x| {
        if let Some(("data", _, steps)) = x.as_reference()
            && let [crate::expr::Step::Attr(ty, _), crate::expr::Step::Attr(name, _), ..] = steps
        {
            let b = BlockAddr { mode: Mode::Data, ty: ty.clone(), name: name.clone() };
            if !out.contains(&b) {
                out.push(b);
            }
        }
    });
    out
}

/// Sets aside the unresolved blocks whose `for_each` waits only on data sources that can be read
/// before expansion and are not read yet (`deferred`: block → those data blocks); returns the rest.
fn defer<'c>(
    cfg: &Config,
    vars: &Vars,
    data: &BTreeMap<Addr, ObjectValue>,
    failed: Vec<&'c Block>,
    keys: &Keys,
    deferred: &mut BTreeMap<BlockAddr, Vec<BlockAddr>>,
) -> Vec<&'c Block> {
    let objects = static_objects(cfg, keys, data);
    let readable = |d: &BlockAddr| {
        let Some(b) = cfg.blocks.get(d) else { return false };
        b.for_each.is_none()
            && b.depends_on.is_empty()
            && b.depends_on_refs.is_empty()
            && !data.contains_key(&d.instance(None))
            && b.attrs
                .values()
                .all(|a| eval(&a.expr, &static_scope(cfg, vars, &objects)).is_ok_and(|r| !r.value.has_unknown()))
    };
    let mut rest = Vec::new();
    for b in failed {
        let needs = b.for_each.as_ref().map(data_blocks).unwrap_or_default();
        let unread: Vec<BlockAddr> = needs.into_iter().filter(|d| !data.contains_key(&d.instance(None))).collect();
        if !unread.is_empty() && unread.iter().all(readable) {
            deferred.insert(b.addr.clone(), unread);
        } else {
            rest.push(b);
        }
    }
    rest
}

/// One round: the keys of each pending block whose `for_each` is known now (each sees the keys
/// found before it); returns the blocks still unknown.
fn expand_round<'c>(
    cfg: &Config,
    vars: &Vars,
    data: &BTreeMap<Addr, ObjectValue>,
    pending: Vec<&'c Block>,
    keys: &mut Keys,
    diags: &mut Diagnostics,
) -> Vec<&'c Block> {
    let mut failed = Vec::new();
    for b in pending {
        let objects = static_objects(cfg, keys, data);
        let Some(fe) = &b.for_each else { continue };
        match eval(fe, &static_scope(cfg, vars, &objects)).map(|r| r.value) {
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
    failed
}

/// Reports each `for_each` that stayed unknown (one that does not evaluate at all is reported by
/// reference checking instead).
fn report_unresolved(
    cfg: &Config,
    vars: &Vars,
    data: &BTreeMap<Addr, ObjectValue>,
    failed: &[&Block],
    keys: &Keys,
    diags: &mut Diagnostics,
) {
    for b in failed {
        if let Some(fe) = &b.for_each {
            let objects = static_objects(cfg, keys, data);
            if let Ok(r) = eval(fe, &static_scope(cfg, vars, &objects)) {
                let msg = for_each_instances(&r.value).err().unwrap_or_default();
                diags.push(Diagnostic::error("invalid `for_each`", fe.span).label(msg));
            }
        }
    }
}
