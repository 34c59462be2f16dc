//! Drift detection: a refresh only (every live object, cluster and data source read once). Reports objects changed or deleted outside meshform
//! (attribute level), separately the desired-state changes not yet applied, and the checks.

use std::sync::Arc;

use serde::Serialize;

use crate::addr::{Addr, Mode as AddrMode};
use crate::checks::{CheckResult, run_checks};
use crate::diag::Diagnostics;
use crate::eval::ObjectValue;
use crate::plan::planner::{PlanOptions, plan, plan_reusing};
use crate::plan::{Change, Drift, Mode};
use crate::session::{Session, Values};
use crate::state::State;

/// What a drift run found.
#[derive(Debug, Serialize)]
pub struct DriftReport {
    /// Objects changed or deleted outside meshform since the last apply.
    pub drift: Vec<Drift>,
    /// Desired-state changes not applied yet (planned against the recorded state).
    pub pending: Vec<Change>,
    /// Check outcomes against the live objects.
    pub checks: Vec<CheckResult>,
    /// Unmanaged objects the mesh trusts, and other findings of the refresh.
    pub findings: Vec<crate::provider::Finding>,
}

impl DriftReport {
    /// Whether anything differs: drift, pending changes, or a failed check.
    pub fn found(&self) -> bool {
        !self.drift.is_empty()
            || !self.pending.is_empty()
            || !self.findings.is_empty()
            || self.checks.iter().any(|c| !c.passed)
    }
}

/// Refreshes and compares.
pub async fn detect_drift(
    s: &Session,
    state: &State,
    targets: &[Addr],
    parallelism: usize,
) -> Result<DriftReport, Diagnostics> {
    let opts =
        PlanOptions { mode: Mode::Normal, targets: targets.to_vec(), refresh: true, parallelism, replace: Vec::new() };
    let refreshed = plan(s, state, &opts).await?;
    // The desired state against the recorded objects, with the clusters and data sources the
    // refresh read (read once per run).
    let recorded =
        plan_reusing(s, state, &PlanOptions { refresh: false, ..opts }, Some(refreshed.reads.clone())).await?;
    let pending: Vec<Change> = recorded.plan.changes.into_iter().filter(|c| c.action.is_change()).collect();
    // Checks see live objects: managed ones as read, data sources and clusters as looked up.
    let live = Values::for_session(s);
    for inst in &s.graph.instances {
        let a = &inst.addr;
        let v = match a.block.mode {
            AddrMode::Managed => refreshed.live.get(a).cloned().flatten().map(|attrs| ObjectValue {
                attrs,
                sensitive: Arc::new(state.objects.get(a).map(|r| r.sensitive_set()).unwrap_or_default()),
            }),
            _ => refreshed.values.get(a),
        };
        if let Some(v) = v {
            live.set(a.clone(), v);
        }
    }
    let checks = run_checks(s, &live, &refreshed.reads.clusters, parallelism).await;
    let mut findings = refreshed.plan.findings;
    findings.extend(membership_findings(s, state));
    Ok(DriftReport { drift: refreshed.plan.drift, pending, checks, findings })
}

/// The fleet against the mesh the state records: a cluster of the desired set (declared, or
/// found live by a query) that nothing has been applied in yet, and a cluster that left the set
/// while objects still live in it. Nothing is said of a state with no cluster yet (a first apply).
pub fn membership_findings(s: &Session, state: &State) -> Vec<crate::provider::Finding> {
    let meshed = s.clusters_in(state);
    if meshed.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for name in s.graph.cluster_names.iter().filter(|n| !meshed.contains(*n)) {
        let block = crate::addr::BlockAddr {
            mode: AddrMode::Cluster,
            ty: crate::addr::CLUSTER_TYPE.into(),
            name: name.clone(),
        };
        let addr = Addr { block, key: None };
        let query = s
            .graph
            .block_of(&s.cfg, &addr)
            .and_then(|b| b.for_each.as_ref())
            .map(crate::graph::data_blocks)
            .unwrap_or_default()
            .into_iter()
            .find(|d| s.discovered.contains_key(&d.instance(None)));
        let message = match query {
            Some(q) => format!("cluster `{name}` matches {q} but is not in the mesh: the next apply adds it"),
            None => format!("cluster `{name}` is declared but is not in the mesh: the next apply adds it"),
        };
        out.push(crate::provider::Finding { kind: "cluster_not_in_mesh".into(), message });
    }
    let gone = s.gone_clusters();
    for name in meshed.iter().filter(|n| !s.graph.cluster_names.contains(*n)) {
        let message = if gone.contains(name) {
            format!(
                "cluster `{name}` is gone, with the objects in state that lived in it: the next apply forgets them and removes what refers to it"
            )
        } else {
            format!(
                "cluster `{name}` is no longer in the desired set but objects in state live in it: the next apply removes them"
            )
        };
        out.push(crate::provider::Finding { kind: "cluster_left_mesh".into(), message });
    }
    out
}
