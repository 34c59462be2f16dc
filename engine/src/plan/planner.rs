//! Making a plan: read the clusters, refresh every object in state (concurrently, bounded),
//! then walk the graph deciding one action per instance, and delete what is no longer desired.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use super::decide::{DecideInput, decide, propose};
use super::{Action, AttrDrift, Change, Drift, Inputs, Mode, Plan, PlannedOutput, attr_diff, same};
use crate::addr::{Addr, Mode as AddrMode};
use crate::diag::{Diagnostic, Diagnostics};
use crate::eval::{ObjectValue, eval};
use crate::provider::{CallContext, Object, Presence, ProviderResult};
use crate::session::{Session, Values};
use crate::state::State;
use crate::value::{Map, Value, sha256_hex};
use crate::walk::{Outcome, walk};

/// How to plan.
#[derive(Clone, Debug)]
pub struct PlanOptions {
    /// Normal or destroy.
    pub mode: Mode,
    /// Only these (with what they depend on; with what depends on them for destroy).
    pub targets: Vec<Addr>,
    /// Read live objects first (off: trust state).
    pub refresh: bool,
    /// At most this many provider calls at once.
    pub parallelism: usize,
    /// Replace these instances even when nothing forces it (`--replace`).
    pub replace: Vec<Addr>,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions { mode: Mode::Normal, targets: Vec::new(), refresh: true, parallelism: 10, replace: Vec::new() }
    }
}

/// A plan and what was learned making it.
pub struct PlanOutcome {
    /// The plan.
    pub plan: Plan,
    /// Live objects read by the refresh (None: gone).
    pub live: BTreeMap<Addr, Option<Map>>,
    /// The values of every instance as planned.
    pub values: Values,
    /// What was read from live (clusters, data sources), for a later pass of the same run.
    pub reads: Arc<Reads>,
}

/// What a run read from live besides the refresh: the clusters and the data sources. A second
/// planning pass of the same run (drift's comparison against the recorded state) and an apply in
/// the same process answer from it instead of reading again.
#[derive(Debug, Default)]
pub struct Reads {
    /// The clusters as looked up.
    pub clusters: Arc<BTreeMap<String, Map>>,
    data: Mutex<HashMap<Addr, (Map, Object)>>,
}

impl Reads {
    /// Reads with these clusters and no data source yet.
    pub fn with_clusters(clusters: Arc<BTreeMap<String, Map>>) -> Reads {
        Reads { clusters, data: Mutex::default() }
    }

    /// Reads of session `s` with these clusters, holding what discovery read before expansion (a
    /// read of this run).
    pub fn for_session(s: &Session, clusters: Arc<BTreeMap<String, Map>>) -> Reads {
        let r = Reads::with_clusters(clusters);
        r.data.lock().unwrap_or_else(|e| e.into_inner()).extend(s.discovered.clone());
        r
    }

    /// How many data sources were read.
    pub fn data_sources_read(&self) -> usize {
        self.data.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Reads data source `addr` with its evaluated `config`, or answers from what this run already
/// read with the same configuration.
pub async fn read_data(
    s: &Session,
    reads: &Reads,
    addr: &Addr,
    config: &Map,
    ctx: &CallContext,
) -> ProviderResult<Object> {
    let cached = reads.data.lock().unwrap_or_else(|e| e.into_inner()).get(addr).cloned();
    if let Some((read_with, obj)) = cached
        && crate::value::Value::Map(read_with).same_as(&Value::Map(config.clone()))
    {
        return Ok(obj);
    }
    let Some((p, _)) = s.provider_of(addr) else {
        return Err(crate::provider::ProviderError::new(crate::provider::ErrorKind::Invalid, "no provider"));
    };
    let obj = crate::provider::retry_read(|| p.read_data(&addr.block.ty, config, ctx)).await?;
    reads.data.lock().unwrap_or_else(|e| e.into_inner()).insert(addr.clone(), (config.clone(), obj.clone()));
    Ok(obj)
}

/// Makes a plan.
pub async fn plan(s: &Session, state: &State, opts: &PlanOptions) -> Result<PlanOutcome, Diagnostics> {
    plan_reusing(s, state, opts, None).await
}

/// Makes a plan, answering cluster and data-source reads from `reuse` (read earlier in this run)
/// when given.
pub async fn plan_reusing(
    s: &Session,
    state: &State,
    opts: &PlanOptions,
    reuse: Option<Arc<Reads>>,
) -> Result<PlanOutcome, Diagnostics> {
    // A pass that reuses a run's reads is part of that run: providers keep what they read.
    if reuse.is_none() {
        s.configure().await?;
    }
    let values = Values::for_session(s);
    let reads = match reuse {
        Some(r) => {
            s.set_clusters(&values, &r.clusters);
            r
        }
        None => Arc::new(Reads::for_session(s, s.read_clusters(&values, state).await?)),
    };
    let clusters = reads.clusters.clone();
    let sem = Semaphore::new(opts.parallelism.max(1));
    // `[[moved]]` entries are laid over the state first: everything else plans the moved records.
    let (moved_state, moves) = match opts.mode {
        Mode::Normal => crate::refactor::planned_moves(s, state)?,
        _ => (State::default(), Vec::new()),
    };
    let state = if moves.is_empty() { state } else { &moved_state };
    let Refreshed { live, live_sensitive, drift, findings } = refresh(s, state, opts, &clusters, &sem).await?;

    let mut changes = Vec::new();
    let mut diags = Diagnostics::default();
    match opts.mode {
        Mode::RefreshOnly => changes.extend(refresh_only_changes(state, &live, &live_sensitive)),
        Mode::Destroy => changes.extend(destroy_changes(s, state, &live, &live_sensitive, &opts.targets)),
        Mode::Normal => {
            let selected = selection(s, &opts.targets);
            let ctx = Planning {
                s,
                state,
                live: &live,
                live_sensitive: &live_sensitive,
                values: &values,
                reads: &reads,
                sem: &sem,
                replace: &opts.replace,
            };
            plan_instances(&ctx, &selected, &mut changes, &mut diags).await;
            changes.extend(undeclared_changes(&ctx, &opts.targets));
            if !diags.has_errors() {
                unmet_replacements(s, state, &opts.replace, &selected, &changes, &mut diags);
            }
            for (from, to) in &moves {
                if let Some(c) = changes.iter_mut().find(|c| &c.address == to) {
                    c.moved_from = Some(from.clone());
                }
            }
        }
    }
    check_prevent_destroy(s, &changes, &mut diags);
    if diags.has_errors() {
        diags.sort();
        return Err(diags);
    }
    changes.sort_by(|a, b| a.address.cmp(&b.address));
    let outputs = if opts.mode == Mode::Normal { plan_outputs(s, &values, &mut diags) } else { BTreeMap::new() };
    if diags.has_errors() {
        return Err(diags);
    }
    let plan = Plan {
        mode: opts.mode,
        lineage: state.lineage.clone(),
        serial: state.serial,
        changes,
        drift,
        findings,
        outputs,
        inputs: inputs_of(s, &opts.targets),
        moves,
        timestamp: crate::clock::now_rfc3339(),
    };
    Ok(PlanOutcome { plan, live, values, reads })
}

/// A destroy plan: each selected record deleted, or forgotten when its cluster is gone.
fn destroy_changes(
    s: &Session,
    state: &State,
    live: &BTreeMap<Addr, Option<Map>>,
    live_sensitive: &BTreeMap<Addr, BTreeSet<String>>,
    targets: &[Addr],
) -> Vec<Change> {
    let change = |addr: Addr| {
        let r = &state.objects[&addr];
        match s.gone_home(r) {
            Some(c) => {
                forget_change(s, live, live_sensitive, r, &format!("cluster gone (`{c}`), and the object with it"))
            }
            None => delete_change(s, live, live_sensitive, r, None),
        }
    };
    destroy_selection(state, targets).into_iter().map(change).collect()
}

/// An error for each `--replace` address that no planned replacement answers, naming why: a
/// silently ignored `--replace` would make the plan lie about what the user asked for.
fn unmet_replacements(
    s: &Session,
    state: &State,
    replace: &[Addr],
    selected: &[bool],
    changes: &[Change],
    diags: &mut Diagnostics,
) {
    for t in replace {
        let hit = |c: &&Change| matches_target(t, &c.address);
        if changes.iter().filter(hit).any(|c| c.action == Action::Replace) {
            continue;
        }
        let why = if !s.graph.instances.iter().enumerate().any(|(i, inst)| selected[i] && matches_target(t, &inst.addr))
        {
            "it is outside the --target selection".to_string()
        } else if let Some(c) = changes.iter().find(hit) {
            match c.action {
                Action::Create => "it does not exist yet: this plan creates it".to_string(),
                Action::Adopt if c.import_id.is_some() => {
                    "this plan imports it ([[import]]): replace it in a later plan, once it is in state".to_string()
                }
                Action::Adopt => "this plan adopts the existing object: replace it in a later plan".to_string(),
                Action::Delete => "this plan deletes it".to_string(),
                a => format!("this plan would {} it", a.verb()),
            }
        } else if !state.objects.keys().any(|a| matches_target(t, a)) {
            "it is not in state yet".to_string()
        } else {
            "no change of it is planned".to_string()
        };
        diags.push(Diagnostic::global(format!("--replace {t}: cannot replace it: {why}")));
    }
}

/// What happens to the recorded objects the desired state no longer declares (of the targets):
/// deleted, or forgotten by a `[[removed]]` entry with `destroy = false`.
fn undeclared_changes(ctx: &Planning<'_>, targets: &[Addr]) -> Vec<Change> {
    let (s, live, sensitive) = (ctx.s, ctx.live, ctx.live_sensitive);
    let targeted = |a: &Addr| targets.is_empty() || targets.iter().any(|t| matches_target(t, a));
    let undeclared = ctx.state.objects.iter().filter(|(a, _)| !s.graph.index.contains_key(*a) && targeted(a));
    undeclared
        .map(|(addr, r)| match (s.gone_home(r), crate::refactor::removal(s, addr)) {
            (Some(c), _) => {
                forget_change(s, live, sensitive, r, &format!("cluster gone (`{c}`), and the object with it"))
            }
            (None, Some(false)) => {
                forget_change(s, live, sensitive, r, "[[removed]] with destroy = false: the object is kept")
            }
            (None, Some(true)) => delete_change(s, live, sensitive, r, Some("removed by [[removed]]")),
            (None, None) => delete_change(s, live, sensitive, r, Some("not in the desired state")),
        })
        .collect()
}

/// The deletion of a recorded object.
fn delete_change(
    s: &Session,
    live: &BTreeMap<Addr, Option<Map>>,
    live_sensitive: &BTreeMap<Addr, BTreeSet<String>>,
    r: &crate::state::ObjectRecord,
    why: Option<&str>,
) -> Change {
    let (before, reason) = before_delete(s, live, &r.address, r, why);
    let mut sensitive = r.sensitive_set();
    if let Some((_, schema)) = s.managed_type(&r.ty) {
        sensitive.extend(schema.attrs.iter().filter(|a| a.sensitive).map(|a| a.name.clone()));
    }
    sensitive.extend(live_sensitive.get(&r.address).into_iter().flatten().cloned());
    Change {
        address: r.address.clone(),
        ty: r.ty.clone(),
        action: Action::Delete,
        reason,
        sensitive,
        before: Some(before),
        after: None,
        replace_because: vec![],
        depends_on: vec![],
        create_before_destroy: false,
        object_changes: vec![],
        delete_effect: delete_effect(s, r),
        moved_from: None,
        import_id: None,
        shown_by: s.managed_type(&r.ty).map(|(_, schema)| shown_by(schema)).unwrap_or_default(),
    }
}

/// The attributes a type's plans show through another one.
fn shown_by(schema: &crate::provider::TypeSchema) -> BTreeMap<String, String> {
    schema.attrs.iter().filter_map(|a| Some((a.name.clone(), a.shown_by.clone()?))).collect()
}

/// A record forgotten, the object left alone (a `[[removed]]` record with `destroy = false`), or
/// gone with its cluster.
fn forget_change(
    s: &Session,
    live: &BTreeMap<Addr, Option<Map>>,
    live_sensitive: &BTreeMap<Addr, BTreeSet<String>>,
    r: &crate::state::ObjectRecord,
    why: &str,
) -> Change {
    Change {
        action: Action::Forget,
        reason: Some(why.into()),
        delete_effect: None,
        ..delete_change(s, live, live_sensitive, r, None)
    }
}

/// A refresh-only plan: each refreshed record as it is live (a no-op that apply records), and a
/// record whose object is gone forgotten.
fn refresh_only_changes(
    state: &State,
    live: &BTreeMap<Addr, Option<Map>>,
    live_sensitive: &BTreeMap<Addr, BTreeSet<String>>,
) -> Vec<Change> {
    let mut out = Vec::new();
    for (addr, l) in live {
        let Some(r) = state.objects.get(addr) else { continue };
        let mut sensitive = r.sensitive_set();
        sensitive.extend(live_sensitive.get(addr).into_iter().flatten().cloned());
        let (action, reason, before) = match l {
            Some(l) => (Action::NoOp, None, l.clone()),
            None => (
                Action::Forget,
                Some("deleted outside meshform: its record is removed".to_string()),
                r.attributes.clone(),
            ),
        };
        out.push(Change {
            address: addr.clone(),
            ty: r.ty.clone(),
            action,
            reason,
            before: Some(before),
            after: None,
            sensitive,
            replace_because: vec![],
            depends_on: vec![],
            create_before_destroy: false,
            object_changes: vec![],
            delete_effect: None,
            moved_from: None,
            import_id: None,
            shown_by: BTreeMap::new(),
        });
    }
    out
}

/// What destroying a recorded object does, when that is not plain deletion (an adopted
/// namespace is unlabelled and kept), as its provider describes it.
fn delete_effect(s: &Session, r: &crate::state::ObjectRecord) -> Option<String> {
    s.managed_type(&r.ty).and_then(|(p, _)| p.describe_delete(&r.ty, &r.attributes))
}

/// The object a deletion starts from, and why it is deleted.
fn before_delete(
    s: &Session,
    live: &BTreeMap<Addr, Option<Map>>,
    addr: &Addr,
    r: &crate::state::ObjectRecord,
    why: Option<&str>,
) -> (Map, Option<String>) {
    let effect = delete_effect(s, r);
    let why = match (why, &effect) {
        (Some(w), Some(e)) => Some(format!("{w}; {e}")),
        (w, e) => w.map(str::to_string).or_else(|| e.clone()),
    };
    let why = why.as_deref();
    match live.get(addr) {
        Some(None) => {
            let gone = "already deleted outside meshform; only its state entry is removed";
            (r.attributes.clone(), Some(why.map_or(gone.to_string(), |w| format!("{w}; {gone}"))))
        }
        Some(Some(l)) => (l.clone(), why.map(str::to_string)),
        None => (r.attributes.clone(), why.map(str::to_string)),
    }
}

/// What a plan was made from.
pub fn inputs_of(s: &Session, targets: &[Addr]) -> Inputs {
    let mut variables = Map::new();
    for (k, v) in &s.vars.values {
        let v = if s.vars.sensitive.contains(k) { v.redact() } else { v.clone() };
        variables.insert(k.clone(), v);
    }
    Inputs {
        config_path: s.cfg.path.display().to_string(),
        config_sha256: sha256_hex(s.cfg.sources.text(s.cfg.file).as_bytes()),
        files: {
            let mut f = s.files_read.lock().map(|f| f.clone()).unwrap_or_default();
            f.extend(s.cfg.templates.iter().map(|(k, v)| (k.clone(), v.clone())));
            f
        },
        variables,
        targets: targets.iter().map(ToString::to_string).collect(),
        discovered_keys: discovered_keys(s),
    }
}

/// The `for_each` keys of every block, when discovery read anything (else none).
pub fn discovered_keys(s: &Session) -> BTreeMap<String, Vec<String>> {
    if s.discovered.is_empty() {
        return BTreeMap::new();
    }
    let mut keys: BTreeMap<String, Vec<String>> =
        s.graph.keys.iter().map(|(b, k)| (b.to_string(), k.clone())).collect();
    keys.insert("clusters".into(), s.graph.cluster_names.clone());
    keys
}

/// Whether `addr` is selected by `target` (a block address selects all its instances).
pub fn matches_target(target: &Addr, addr: &Addr) -> bool {
    target == addr || (target.key.is_none() && target.block == addr.block)
}

/// The instances a normal plan covers: all, or the targets and everything they depend on.
pub fn selection(s: &Session, targets: &[Addr]) -> Vec<bool> {
    let n = s.graph.instances.len();
    if targets.is_empty() {
        return vec![true; n];
    }
    let mut sel = vec![false; n];
    let mut stack: Vec<usize> =
        (0..n).filter(|&i| targets.iter().any(|t| matches_target(t, &s.graph.instances[i].addr))).collect();
    while let Some(i) = stack.pop() {
        if !sel[i] {
            sel[i] = true;
            stack.extend(s.graph.instances[i].deps.iter().copied());
        }
    }
    sel
}

/// The objects a destroy covers: all in state, or the targets and everything depending on them.
fn destroy_selection(state: &State, targets: &[Addr]) -> Vec<Addr> {
    if targets.is_empty() {
        return state.objects.keys().cloned().collect();
    }
    let mut dependents: HashMap<&Addr, Vec<&Addr>> = HashMap::new();
    for r in state.objects.values() {
        for d in &r.dependencies {
            dependents.entry(d).or_default().push(&r.address);
        }
    }
    let mut out = BTreeSet::new();
    let mut stack: Vec<&Addr> = state.objects.keys().filter(|a| targets.iter().any(|t| matches_target(t, a))).collect();
    while let Some(a) = stack.pop() {
        if out.insert(a.clone()) {
            stack.extend(dependents.get(a).into_iter().flatten().copied());
        }
    }
    out.into_iter().collect()
}

/// What a refresh learned.
struct Refreshed {
    live: BTreeMap<Addr, Option<Map>>,
    /// Attributes of live objects that hold secrets by what the object is (a Secret's data).
    live_sensitive: BTreeMap<Addr, BTreeSet<String>>,
    drift: Vec<Drift>,
    findings: Vec<crate::provider::Finding>,
}

/// Reads every object in state that the plan covers; notes what changed outside meshform.
async fn refresh(
    s: &Session,
    state: &State,
    opts: &PlanOptions,
    clusters: &Arc<BTreeMap<String, Map>>,
    sem: &Semaphore,
) -> Result<Refreshed, Diagnostics> {
    let mut live = BTreeMap::new();
    if !opts.refresh {
        for (a, r) in &state.objects {
            live.insert(a.clone(), Some(r.attributes.clone()));
        }
        return Ok(Refreshed { live, live_sensitive: BTreeMap::new(), drift: Vec::new(), findings: Vec::new() });
    }
    // An object whose cluster is gone went with it: nothing to read (the plan forgets it).
    let (wanted, in_gone): (Vec<_>, Vec<_>) =
        refresh_selection(s, state, opts).into_iter().partition(|r| s.gone_home(r).is_none());
    for r in in_gone {
        live.insert(r.address.clone(), Some(r.attributes.clone()));
    }
    // Let each provider read in bulk first (one list per type instead of one GET per object).
    let mut by_provider: BTreeMap<String, Vec<(String, Map)>> = BTreeMap::new();
    for r in wanted.iter().filter(|r| !s.names_gone(r)) {
        if let Some((p, _)) = s.managed_type(&r.ty) {
            by_provider.entry(p.name().to_string()).or_default().push((r.ty.clone(), r.attributes.clone()));
        }
    }
    for (name, objs) in &by_provider {
        if let Some(p) = s.registry.providers().iter().find(|p| p.name() == name) {
            p.prepare_refresh(objs)
                .await
                .map_err(|e| Diagnostics::from(Diagnostic::global(format!("refresh ({name}): {e}"))))?;
        }
    }
    let reads = wanted.into_iter().map(|r| async move {
        let Some((p, _)) = s.managed_type(&r.ty) else {
            return Err(Diagnostic::global(format!(
                "{}: no provider for type `{}` recorded in state",
                r.address, r.ty
            )));
        };
        let _permit = sem.acquire().await.map_err(|_| Diagnostic::global("refresh cancelled"))?;
        let ctx = s.ctx(p.as_ref(), clusters);
        crate::provider::retry_read(|| p.read(&r.ty, &r.attributes, &ctx))
            .await
            .map(|l| (r, l))
            .map_err(|e| Diagnostic::global(format!("cannot read {}: {e}", r.address)))
    });
    let mut diags = Diagnostics::default();
    let mut drift = Vec::new();
    let mut live_sensitive = BTreeMap::new();
    for res in futures::future::join_all(reads).await {
        match res {
            Ok((r, obj)) => {
                let l = obj.map(|o| {
                    if !o.sensitive.is_empty() {
                        live_sensitive.insert(r.address.clone(), o.sensitive);
                    }
                    o.attrs
                });
                let computed = |a: &str| {
                    s.managed_type(&r.ty)
                        .and_then(|(_, sc)| sc.get(a))
                        .is_some_and(|x| x.presence == Presence::Computed)
                };
                if let Some(d) = drift_of(r, l.as_ref(), &computed) {
                    drift.push(d);
                }
                live.insert(r.address.clone(), l);
            }
            Err(d) => diags.push(d),
        }
    }
    if diags.has_errors() {
        return Err(diags);
    }
    let findings = if opts.mode == Mode::Normal { findings(s, &by_provider, clusters).await? } else { Vec::new() };
    Ok(Refreshed { live, live_sensitive, drift, findings })
}

/// The recorded objects a refresh reads: all, or those the targets select.
fn refresh_selection<'a>(s: &Session, state: &'a State, opts: &PlanOptions) -> Vec<&'a crate::state::ObjectRecord> {
    match (opts.mode, opts.targets.is_empty()) {
        (_, true) => state.objects.values().collect(),
        (Mode::RefreshOnly, false) => {
            state.objects.values().filter(|r| opts.targets.iter().any(|t| matches_target(t, &r.address))).collect()
        }
        (Mode::Destroy, false) => {
            destroy_selection(state, &opts.targets).iter().filter_map(|a| state.objects.get(a)).collect()
        }
        (Mode::Normal, false) => {
            let sel = selection(s, &opts.targets);
            state
                .objects
                .values()
                .filter(|r| match s.graph.index.get(&r.address) {
                    Some(&i) => sel[i],
                    None => opts.targets.iter().any(|t| matches_target(t, &r.address)),
                })
                .collect()
        }
    }
}

/// What each provider finds around the refreshed objects (see [`crate::provider::Finding`]).
async fn findings(
    s: &Session,
    by_provider: &BTreeMap<String, Vec<(String, Map)>>,
    clusters: &Arc<BTreeMap<String, Map>>,
) -> Result<Vec<crate::provider::Finding>, Diagnostics> {
    let mut findings = Vec::new();
    for (name, objs) in by_provider {
        let Some(p) = s.registry.providers().iter().find(|p| p.name() == name) else { continue };
        let found = p
            .findings(objs, &s.ctx(p.as_ref(), clusters))
            .await
            .map_err(|e| Diagnostics::from(Diagnostic::global(format!("refresh ({name}): {e}"))))?;
        findings.extend(found);
    }
    findings.sort_by(|a, b| a.message.cmp(&b.message));
    Ok(findings)
}

/// The attribute-level difference between a state record and the live object.
/// A computed attribute the record does not have at all (a newer provider reads more) is no
/// change made outside meshform.
pub fn drift_of(r: &crate::state::ObjectRecord, live: Option<&Map>, computed: &dyn Fn(&str) -> bool) -> Option<Drift> {
    let sensitive = r.sensitive_set();
    let Some(live) = live else {
        return Some(Drift {
            address: r.address.clone(),
            ty: r.ty.clone(),
            deleted: true,
            attributes: vec![],
            sensitive,
        });
    };
    let attributes: Vec<AttrDrift> = attr_diff(Some(&r.attributes), Some(live))
        .into_iter()
        .filter(|(n, a, b)| !(same(*a, *b) || matches!(b, Some(Value::Unknown)) || (a.is_none() && computed(n))))
        .map(|(n, a, b)| {
            let hidden = sensitive.contains(n);
            let live = b.map(|v| if hidden { v.redact_like(a) } else { v.clone() });
            let recorded = a.map(|v| if hidden { v.redact_keys() } else { v.clone() });
            AttrDrift { name: n.to_string(), recorded, live }
        })
        .collect();
    (!attributes.is_empty()).then(|| Drift {
        address: r.address.clone(),
        ty: r.ty.clone(),
        deleted: false,
        attributes,
        sensitive,
    })
}

/// What deciding each instance sees.
struct Planning<'a> {
    s: &'a Session,
    state: &'a State,
    live: &'a BTreeMap<Addr, Option<Map>>,
    live_sensitive: &'a BTreeMap<Addr, BTreeSet<String>>,
    values: &'a Values,
    reads: &'a Reads,
    sem: &'a Semaphore,
    /// `--replace`.
    replace: &'a [Addr],
}

async fn plan_instances(ctx: &Planning<'_>, selected: &[bool], changes: &mut Vec<Change>, diags: &mut Diagnostics) {
    let s = ctx.s;
    // Walk only selected instances; indices into `nodes`.
    let nodes: Vec<usize> = (0..s.graph.instances.len()).filter(|&i| selected[i]).collect();
    let local: HashMap<usize, usize> = nodes.iter().enumerate().map(|(l, &g)| (g, l)).collect();
    let deps: Vec<Vec<usize>> = nodes
        .iter()
        .map(|&g| s.graph.instances[g].deps.iter().filter_map(|d| local.get(d).copied()).collect())
        .collect();
    let out: Mutex<Vec<Change>> = Mutex::new(Vec::new());
    let errs: Mutex<Diagnostics> = Mutex::new(Diagnostics::default());
    let never = AtomicBool::new(false);
    let outcomes = walk(&deps, Some(&never), |l| {
        let inst = &s.graph.instances[nodes[l]];
        let out = &out;
        let errs = &errs;
        async move {
            let r = match inst.addr.block.mode {
                AddrMode::Cluster => Ok(None), // read before the walk
                AddrMode::Data => {
                    // Planned before it (the walk's order): does a dependency change?
                    let pending = inst.deps.iter().any(|&d| {
                        let dep = &s.graph.instances[d].addr;
                        out.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .iter()
                            .any(|c| &c.address == dep && c.action != Action::NoOp)
                    });
                    plan_data(ctx, inst, pending).await.map(Some)
                }
                AddrMode::Managed => plan_managed(ctx, inst).await.map(Some),
            };
            match r {
                Ok(Some(c)) => {
                    out.lock().unwrap_or_else(|e| e.into_inner()).push(c);
                    Ok(())
                }
                Ok(None) => Ok(()),
                Err(d) => {
                    errs.lock().unwrap_or_else(|e| e.into_inner()).0.extend(d.0);
                    Err(String::new())
                }
            }
        }
    })
    .await;
    debug_assert!(outcomes.iter().all(|o| !matches!(o, Outcome::Cancelled)));
    changes.extend(out.into_inner().unwrap_or_else(|e| e.into_inner()));
    diags.0.extend(errs.into_inner().unwrap_or_else(|e| e.into_inner()).0);
}

/// A change with nothing filled in but the instance.
fn bare_change(inst: &crate::graph::Instance, s: &Session, action: Action) -> Change {
    Change {
        address: inst.addr.clone(),
        ty: inst.addr.block.ty.clone(),
        action,
        reason: None,
        before: None,
        after: None,
        sensitive: BTreeSet::new(),
        replace_because: vec![],
        depends_on: inst.deps.iter().map(|&d| s.graph.instances[d].addr.clone()).collect(),
        create_before_destroy: false,
        object_changes: vec![],
        delete_effect: None,
        moved_from: None,
        import_id: None,
        shown_by: s.provider_of(&inst.addr).map(|(_, schema)| shown_by(schema)).unwrap_or_default(),
    }
}

/// A data source: read now when its inputs are known and nothing it depends on changes (kept as
/// a no-op change so apply sees its value), else a read at apply, after what it depends on (so
/// it reads what apply made, as `depends_on` promises).
async fn plan_data(
    ctx: &Planning<'_>,
    inst: &crate::graph::Instance,
    dep_changes: bool,
) -> Result<Change, Diagnostics> {
    let (s, addr) = (ctx.s, &inst.addr);
    let (config, sensitive) = s.eval_instance(addr, ctx.values)?;
    let (Some((p, schema)), Some(block)) = (s.provider_of(addr), s.graph.block_of(&s.cfg, addr)) else {
        return Err(Diagnostic::global(format!("{addr}: no provider for its type")).into());
    };
    if config.values().any(Value::has_unknown) || dep_changes {
        let why =
            if dep_changes { "what it depends on changes first" } else { "its inputs are known only after apply" };
        return Ok(Change {
            reason: Some(why.into()),
            after: Some(propose(schema, None, &config).attrs),
            sensitive,
            ..bare_change(inst, s, Action::Read)
        });
    }
    let _permit = ctx.sem.acquire().await.map_err(|_| Diagnostics::default())?;
    let obj = read_data(s, ctx.reads, addr, &config, &s.ctx(p.as_ref(), &ctx.reads.clusters)).await.map_err(|e| {
        Diagnostics::from(Diagnostic::error(format!("cannot read {addr}"), block.span).label(e.to_string()))
    })?;
    let mut sens = sensitive;
    sens.extend(schema.attrs.iter().filter(|a| a.sensitive).map(|a| a.name.clone()));
    sens.extend(obj.sensitive);
    ctx.values.set(addr.clone(), ObjectValue { attrs: obj.attrs.clone(), sensitive: Arc::new(sens.clone()) });
    Ok(Change { after: Some(obj.attrs), sensitive: sens, ..bare_change(inst, s, Action::NoOp) })
}

/// A managed object: decided by [`decide`] against the refreshed object.
async fn plan_managed(ctx: &Planning<'_>, inst: &crate::graph::Instance) -> Result<Change, Diagnostics> {
    let (s, addr) = (ctx.s, &inst.addr);
    let (desired, tainted) = s.eval_instance(addr, ctx.values)?;
    let (Some((p, _)), Some(block)) = (s.provider_of(addr), s.graph.block_of(&s.cfg, addr)) else {
        return Err(Diagnostic::global(format!("{addr}: no provider for its type")).into());
    };
    let recorded = ctx.state.objects.get(addr);
    let call = CallContext {
        create_before_destroy: block.lifecycle.create_before_destroy,
        ..s.ctx(p.as_ref(), &ctx.reads.clusters)
    };
    let mut sensitive = tainted;
    // An `[[import]]` of an address state does not hold yet: the object is read by its id now
    // and planned from as it is.
    let imported = match crate::refactor::import_id(s, addr).filter(|_| recorded.is_none()) {
        Some(id) => {
            let id = id?;
            let _permit = ctx.sem.acquire().await.map_err(|_| Diagnostics::default())?;
            let obj = crate::provider::retry_read(|| p.import(&addr.block.ty, &id, &call)).await.map_err(|e| {
                Diagnostics::from(
                    Diagnostic::error(format!("cannot import {id} as {addr}"), block.span).label(e.to_string()),
                )
            })?;
            sensitive.extend(obj.sensitive);
            Some((id, obj.attrs))
        }
        None => None,
    };
    let prior: Option<&Map> = match (&imported, ctx.live.get(addr)) {
        (Some((_, attrs)), _) => Some(attrs),
        (None, Some(l)) => l.as_ref(),
        (None, None) => recorded.map(|r| &r.attributes),
    };
    sensitive.extend(recorded.map(|r| r.sensitive_set()).unwrap_or_default());
    sensitive.extend(ctx.live_sensitive.get(addr).into_iter().flatten().cloned());
    let input = DecideInput { addr, prior, recorded: recorded.is_some(), desired: &desired, sensitive };
    let mut d = decide(s, input, &call).await.map_err(|e| {
        Diagnostics::from(Diagnostic::error(format!("cannot plan {addr}"), block.span).label(e.to_string()))
    })?;
    if let Some((id, _)) = &imported {
        d.reason = Some(match d.action {
            Action::Replace => format!("imported by [[import]] from id {id}, then replaced"),
            _ => format!("imported by [[import]] from id {id}"),
        });
        if matches!(d.action, Action::NoOp | Action::Update) {
            d.action = Action::Adopt;
        }
    }
    if prior.is_some()
        && matches!(d.action, Action::NoOp | Action::Update)
        && ctx.replace.iter().any(|t| matches_target(t, addr))
        && let Some((_, schema)) = s.provider_of(addr)
    {
        d.action = Action::Replace;
        d.reason = Some("asked for with --replace".into());
        super::decide::server_chosen_unknown(schema, &desired, &mut d.planned);
    }
    // Downstream references see the planned object, plaintext included (in memory only).
    let mut value = if d.action == Action::NoOp { prior.cloned().unwrap_or_default() } else { d.planned.attrs.clone() };
    if d.action == Action::NoOp {
        super::unredact(&mut value, &d.planned.attrs);
        value.extend(desired.into_iter().filter(|(_, v)| !matches!(v, Value::Null)));
    }
    ctx.values.set(addr.clone(), ObjectValue { attrs: value, sensitive: Arc::new(d.sensitive.clone()) });
    Ok(Change {
        reason: d.reason,
        before: prior.cloned(),
        after: Some(d.planned.attrs),
        sensitive: d.sensitive,
        replace_because: d.planned.replace_because,
        create_before_destroy: block.lifecycle.create_before_destroy,
        object_changes: d.planned.object_changes,
        import_id: imported.map(|(id, _)| id),
        ..bare_change(inst, s, d.action)
    })
}

fn check_prevent_destroy(s: &Session, changes: &[Change], diags: &mut Diagnostics) {
    for c in changes.iter().filter(|c| matches!(c.action, Action::Delete | Action::Replace)) {
        if let Some(b) = s.cfg.blocks.get(&c.address.block)
            && b.lifecycle.prevent_destroy
        {
            let why = if c.action == Action::Replace {
                format!("the plan replaces it because {} changed", c.replace_because.join(", "))
            } else {
                "the plan destroys it".to_string()
            };
            diags.push(
                Diagnostic::error(format!("{} has lifecycle.prevent_destroy set, but {why}", c.address), b.span)
                    .label("prevent_destroy = true")
                    .help("remove prevent_destroy to allow it, or change the plan so the object is kept"),
            );
        }
    }
}

/// Evaluates outputs against the planned values.
pub fn plan_outputs(s: &Session, values: &Values, diags: &mut Diagnostics) -> BTreeMap<String, PlannedOutput> {
    let mut out = BTreeMap::new();
    for (name, o) in &s.cfg.outputs {
        match eval(&o.value, &s.scope(None, values)) {
            Ok(r) => {
                out.insert(name.clone(), PlannedOutput { value: r.value, sensitive: o.sensitive || r.sensitive });
            }
            Err(d) => diags.push(d),
        }
    }
    out
}
