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
    Ok(DriftReport { drift: refreshed.plan.drift, pending, checks, findings: refreshed.plan.findings })
}
