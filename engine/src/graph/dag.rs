//! The instances' edges as a petgraph DAG, dependency cycles (each reported once, with its full
//! path), and the Graphviz DOT rendering.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use petgraph::graph::{DiGraph, NodeIndex};

use super::{Graph, Instance};
use crate::diag::{Diagnostic, Diagnostics, Span};

/// The span that makes each edge: (dependent, dependency) → the reference or `depends_on` entry.
pub(super) type EdgeSpans = HashMap<(usize, usize), Span>;

/// One node per instance (weight = its index), one edge from each dependency to its dependent.
pub(super) fn dag(instances: &[Instance]) -> DiGraph<usize, ()> {
    let mut dag = DiGraph::with_capacity(instances.len(), instances.len());
    for i in 0..instances.len() {
        dag.add_node(i);
    }
    for (i, n) in instances.iter().enumerate() {
        for &d in &n.deps {
            dag.add_edge(NodeIndex::new(d), NodeIndex::new(i), ());
        }
    }
    dag
}

/// Reports each dependency cycle once, as a path rotated to start at its smallest address.
pub(super) fn report_cycles(g: &Graph, edge_spans: &EdgeSpans, diags: &mut Diagnostics) {
    for scc in petgraph::algo::tarjan_scc(&g.dag) {
        let self_loop = scc.len() == 1 && g.instances[scc[0].index()].deps.contains(&scc[0].index());
        if scc.len() < 2 && !self_loop {
            continue;
        }
        let members: BTreeSet<usize> = scc.iter().map(|n| n.index()).collect();
        let Some(&start) = members.iter().min_by_key(|&&i| &g.instances[i].addr) else { continue };
        let path = cycle_path(g, &members, start);
        let names: Vec<String> = path.iter().chain([&start]).map(|&i| g.instances[i].addr.to_string()).collect();
        let span = edge_spans.get(&(start, *path.get(1).unwrap_or(&start))).copied().unwrap_or_default();
        diags.push(
            Diagnostic::error(format!("dependency cycle: {}", names.join(" → ")), span)
                .label(format!("{} depends on {} here", names[0], names[1]))
                .help("break the cycle by removing one of these references or depends_on entries"),
        );
    }
}

/// The shortest way round the strongly connected component `members` from `start` back to it,
/// following "depends on" edges inside the component and visiting dependencies in address order
/// so the message is stable; the path starts at `start` (which is not repeated at its end).
fn cycle_path(g: &Graph, members: &BTreeSet<usize>, start: usize) -> Vec<usize> {
    let mut prev: BTreeMap<usize, usize> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
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
    path
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
