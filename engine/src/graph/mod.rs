//! The dependency graph: every block expanded into its instances (`for_each` keys must be known
//! without reading anything live), edges from references and `depends_on`, references checked,
//! cycles reported with their full path.
//!
//! This module holds the model ([`Graph`], [`Instance`]) and [`build`], which runs the steps kept
//! in its children: `expand` (the `for_each` keys and the instances), `refs` (reference checking
//! and the edges it finds) and `dag` (the petgraph DAG, cycles, DOT).

use std::collections::{BTreeMap, HashMap};

use petgraph::graph::DiGraph;

use crate::addr::{Addr, BlockAddr};
use crate::config::{Block, Config};
use crate::diag::Diagnostics;
use crate::provider::Registry;
use crate::value::Value;
use crate::vars::Vars;

mod dag;
mod expand;

pub use expand::data_blocks;
mod refs;

pub use dag::to_dot;

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
    /// Blocks whose `for_each` waits on data sources read before expansion (block → those data
    /// blocks): they have no instances until `Session::discover` reads them and builds again.
    pub deferred: BTreeMap<BlockAddr, Vec<BlockAddr>>,
    /// The data sources read before expansion, by instance, as the graph was built with them.
    pub data: BTreeMap<Addr, crate::eval::ObjectValue>,
}

impl Graph {
    /// The block that declares an instance.
    pub fn block_of<'c>(&self, cfg: &'c Config, addr: &Addr) -> Option<&'c Block> {
        cfg.blocks.get(self.sources.get(addr).unwrap_or(&addr.block))
    }
}

/// Builds the graph, reporting every unknown reference, bad call and cycle: the instances first
/// (`for_each` evaluated statically), then each one's references and `depends_on` (its edges),
/// then the DAG and its cycles.
pub fn build(cfg: &Config, vars: &Vars, registry: &Registry) -> Result<Graph, Diagnostics> {
    build_with(cfg, vars, registry, &BTreeMap::new())
}

/// [`build`] with the values of data sources read before expansion (see `expand`'s rule).
pub fn build_with(
    cfg: &Config,
    vars: &Vars,
    registry: &Registry,
    data: &BTreeMap<Addr, crate::eval::ObjectValue>,
) -> Result<Graph, Diagnostics> {
    let mut diags = Diagnostics::default();
    let mut g = expand::instances(cfg, vars, data, &mut diags);
    let edge_spans = refs::link(cfg, vars, registry, &mut g, &mut diags);
    g.dag = dag::dag(&g.instances);
    dag::report_cycles(&g, &edge_spans, &mut diags);
    if diags.has_errors() {
        diags.sort();
        Err(diags)
    } else {
        Ok(g)
    }
}
