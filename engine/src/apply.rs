//! Applying a plan: exactly its changes, each as soon as everything it waits for has finished,
//! at most `parallelism` provider operations at once. Every finished operation is journaled
//! (durable) before its dependents start; the journal is folded into the state document at the
//! end. A failure skips its dependents and lets independent branches go on. Cancellation starts
//! nothing new and lets operations in flight finish.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::addr::Addr;
use crate::checks::{CheckResult, run_checks};
use crate::diag::{Diagnostic, Diagnostics};
use crate::eval::{ObjectValue, eval};
use crate::plan::saved::check_fresh;
use crate::plan::{Action, Change, Plan, conforms};
use crate::provider::{CallContext, Provider};
use crate::session::{Session, Values, propose};
use crate::state::journal::Journal;
use crate::state::local::LocalBackend;
use crate::state::lock::LockGuard;
use crate::state::{Change as StateChange, ObjectRecord, State};
use crate::value::{Map, Value};
use crate::walk::{Outcome, walk};

/// How to apply.
#[derive(Clone, Debug)]
pub struct ApplyOptions {
    /// At most this many provider operations at once.
    pub parallelism: usize,
    /// Set to stop starting new operations (Ctrl-C).
    pub cancel: Arc<AtomicBool>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions { parallelism: 10, cancel: Arc::new(AtomicBool::new(false)) }
    }
}

/// Receives progress; the CLI draws it.
pub trait Observer: Sync {
    /// An operation starts.
    fn started(&self, _c: &Change) {}
    /// An operation ended.
    fn finished(&self, _c: &Change, _result: &NodeResult, _elapsed: Duration) {}
}

/// An observer that ignores everything.
pub struct Quiet;
impl Observer for Quiet {}

/// How one change ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeResult {
    /// Done; `id` of the object, when there is one.
    Done {
        /// The object's id.
        id: Option<String>,
    },
    /// Failed.
    Failed(String),
    /// Not run because an upstream change failed.
    Skipped {
        /// The failed upstream change.
        because: Addr,
    },
    /// Not run because apply was interrupted.
    Cancelled,
}

/// What apply did.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// Each change that does something, with how it ended, in address order.
    pub results: Vec<(Addr, Action, NodeResult)>,
    /// The outputs after apply (sensitive ones redacted).
    pub outputs: Map,
    /// Checks evaluated after a complete apply.
    pub checks: Vec<CheckResult>,
    /// Apply was interrupted.
    pub cancelled: bool,
    /// The state serial written.
    pub serial: u64,
}

impl ApplyReport {
    /// Count of results matching a predicate.
    pub fn count(&self, f: impl Fn(&NodeResult) -> bool) -> usize {
        self.results.iter().filter(|(_, _, r)| f(r)).count()
    }

    /// Whether everything that was planned succeeded.
    pub fn success(&self) -> bool {
        !self.cancelled && self.results.iter().all(|(_, _, r)| matches!(r, NodeResult::Done { .. }))
    }
}

const CANCELLED: &str = "\u{0}cancelled";

/// Applies `plan` to `state`, writing through `backend` (whose lock the caller holds).
pub async fn apply(
    s: &Session,
    plan: &Plan,
    backend: &LocalBackend,
    _lock: &LockGuard,
    state: &mut State,
    opts: &ApplyOptions,
    observer: &dyn Observer,
) -> Result<ApplyReport, Diagnostics> {
    check_fresh(plan, state).map_err(|m| Diagnostics::from(Diagnostic::global(m)))?;
    s.configure().await?;
    let values = Values::for_session(s);
    let clusters = s.read_clusters(&values).await?;
    // Objects referenced but outside a targeted plan resolve to their recorded values.
    for r in state.objects.values() {
        values.set(
            r.address.clone(),
            ObjectValue { attrs: r.attributes.clone(), sensitive: Arc::new(r.sensitive_set()) },
        );
    }
    let deps = edges(plan, state);
    let journal = backend.journal(state).map_err(|m| Diagnostics::from(Diagnostic::global(m)))?;
    let objects = Mutex::new(std::mem::take(&mut state.objects));
    let run = Run {
        s,
        values: &values,
        clusters,
        journal: &journal,
        objects: &objects,
        sem: Semaphore::new(opts.parallelism.max(1)),
        cancel: &opts.cancel,
        observer,
    };
    let outcomes = walk(&deps, Some(&opts.cancel), |i| run.node(&plan.changes[i])).await;
    let clusters = run.clusters.clone();
    drop(run);
    journal.close();
    state.objects = objects.into_inner().unwrap_or_else(|e| e.into_inner());

    let mut report = ApplyReport { cancelled: opts.cancel.load(Ordering::SeqCst), ..ApplyReport::default() };
    for (c, o) in plan.changes.iter().zip(&outcomes) {
        let r = match o {
            Outcome::Done => NodeResult::Done {
                id: values.get(&c.address).and_then(|v| v.attrs.get("id").and_then(Value::to_interpolated)),
            },
            Outcome::Failed(m) if m == CANCELLED => NodeResult::Cancelled,
            Outcome::Failed(m) => NodeResult::Failed(m.clone()),
            Outcome::Skipped(i) => NodeResult::Skipped { because: plan.changes[*i].address.clone() },
            Outcome::Cancelled => NodeResult::Cancelled,
        };
        if c.action != Action::NoOp {
            report.results.push((c.address.clone(), c.action, r));
        }
    }
    let complete = report.success();
    if complete && plan.mode == crate::plan::Mode::Normal {
        let mut diags = Diagnostics::default();
        let mut outputs = Map::new();
        for (name, o) in &s.cfg.outputs {
            match eval(&o.value, &s.scope(None, &values)) {
                Ok(r) => {
                    let v = if o.sensitive || r.sensitive { r.value.redact() } else { r.value };
                    outputs.insert(name.clone(), v);
                }
                Err(d) => diags.push(d),
            }
        }
        state.outputs = outputs.clone();
        report.outputs = outputs;
    } else if plan.mode == crate::plan::Mode::Destroy && complete {
        state.outputs.clear();
    }
    backend.write(state).map_err(|m| Diagnostics::from(Diagnostic::global(m)))?;
    backend.clear_journal();
    report.serial = state.serial;
    if complete && plan.mode == crate::plan::Mode::Normal {
        let live = |a: &Addr| values.get(a);
        report.checks = run_checks(s, &values, &clusters, &live).await;
    }
    Ok(report)
}

/// The order of changes: create/update after what they reference; a deletion after every change
/// of an object that depended on the deleted one.
fn edges(plan: &Plan, state: &State) -> Vec<Vec<usize>> {
    let index: HashMap<&Addr, usize> = plan.changes.iter().enumerate().map(|(i, c)| (&c.address, i)).collect();
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); plan.changes.len()];
    for (i, c) in plan.changes.iter().enumerate() {
        if c.action != Action::Delete {
            deps[i].extend(c.depends_on.iter().filter_map(|d| index.get(d).copied()));
        }
    }
    for r in state.objects.values() {
        let Some(&dependent) = index.get(&r.address) else { continue };
        for d in &r.dependencies {
            if let Some(&del) = index.get(d)
                && plan.changes[del].action == Action::Delete
                && del != dependent
            {
                deps[del].push(dependent);
            }
        }
    }
    for d in &mut deps {
        d.sort_unstable();
        d.dedup();
    }
    deps
}

struct Run<'a> {
    s: &'a Session,
    values: &'a Values,
    clusters: Arc<BTreeMap<String, Map>>,
    journal: &'a Journal,
    objects: &'a Mutex<BTreeMap<Addr, ObjectRecord>>,
    sem: Semaphore,
    cancel: &'a AtomicBool,
    observer: &'a dyn Observer,
}

impl Run<'_> {
    async fn node(&self, c: &Change) -> Result<(), String> {
        if c.address.block.mode == crate::addr::Mode::Data {
            return self.read(c).await;
        }
        match c.action {
            Action::NoOp => self.no_op(c).await,
            Action::Read => self.read(c).await,
            _ => {
                let started = Instant::now();
                let result = self.change(c).await;
                let r = match &result {
                    Ok(()) => NodeResult::Done {
                        id: self
                            .values
                            .get(&c.address)
                            .and_then(|v| v.attrs.get("id").and_then(Value::to_interpolated)),
                    },
                    Err(m) if m == CANCELLED => NodeResult::Cancelled,
                    Err(m) => NodeResult::Failed(m.clone()),
                };
                self.observer.finished(c, &r, started.elapsed());
                result
            }
        }
    }

    async fn no_op(&self, c: &Change) -> Result<(), String> {
        let (desired, tainted) = self.s.eval_instance(&c.address, self.values).map_err(|d| self.render(d))?;
        let mut attrs = c.before.clone().unwrap_or_default();
        if let Some(after) = &c.after {
            crate::plan::unredact(&mut attrs, after);
        }
        // A saved plan holds only hashes of sensitive values: the provider plans the unchanged
        // object again (no change is made) so that dependents see the plaintext.
        if crate::plan::has_redacted(&attrs)
            && let Some((p, schema)) = self.s.provider_of(&c.address)
        {
            let proposed = crate::session::propose(schema, c.before.as_ref(), &desired);
            if let Ok(planned) = p.plan(&c.address.block.ty, c.before.as_ref(), proposed, &self.ctx(p.as_ref())).await {
                crate::plan::unredact(&mut attrs, &planned.attrs);
            }
        }
        self.record_refresh(c).await?;
        // `null` leaves a setting unmanaged: readers see what the object has.
        attrs.extend(desired.into_iter().filter(|(_, v)| !matches!(v, Value::Null)));
        let mut sensitive = c.sensitive.clone();
        sensitive.extend(tainted);
        self.values.set(c.address.clone(), ObjectValue { attrs, sensitive: Arc::new(sensitive) });
        Ok(())
    }

    async fn read(&self, c: &Change) -> Result<(), String> {
        let (config, sensitive) = self.s.eval_instance(&c.address, self.values).map_err(|d| self.render(d))?;
        let (p, _) = self.s.provider_of(&c.address).ok_or("no provider")?;
        let _permit = self.sem.acquire().await.map_err(|e| e.to_string())?;
        let attrs = p
            .read_data(&c.address.block.ty, &config, &self.ctx(p.as_ref()))
            .await
            .map_err(|e| format!("cannot read {}: {e}", c.address))?;
        let mut sensitive = sensitive;
        sensitive.extend(p.sensitive_in(&c.address.block.ty, &attrs));
        self.values.set(c.address.clone(), ObjectValue { attrs, sensitive: Arc::new(sensitive) });
        Ok(())
    }

    fn ctx(&self, p: &dyn Provider) -> CallContext {
        self.s.ctx(p, &self.clusters)
    }

    fn render(&self, d: Diagnostics) -> String {
        d.render(&self.s.cfg.sources, false).trim_end().to_string()
    }

    /// The final attributes of a create or update: the desired state evaluated now that
    /// everything it references exists, checked against what the plan promised.
    async fn final_planned(
        &self,
        c: &Change,
        p: &dyn Provider,
    ) -> Result<(Map, std::collections::BTreeSet<String>), String> {
        let (desired, tainted) = self.s.eval_instance(&c.address, self.values).map_err(|d| self.render(d))?;
        let (_, schema) = self.s.provider_of(&c.address).ok_or("no provider")?;
        let prior = if c.action == Action::Update { c.before.as_ref() } else { None };
        let mut proposed = propose(schema, prior, &desired);
        proposed.sensitive.extend(c.sensitive.iter().cloned());
        proposed.sensitive.extend(tainted.iter().cloned());
        let mut planned =
            p.plan(&c.address.block.ty, prior, proposed, &self.ctx(p)).await.map_err(|e| e.to_string())?;
        if let (Some(block), Some(before)) = (self.s.cfg.blocks.get(&c.address.block), c.before.as_ref()) {
            // The same rule as the planner: an ignored attribute keeps what the object had.
            for (name, _) in &block.lifecycle.ignore_changes {
                match before.get(name) {
                    Some(v) => planned.attrs.insert(name.clone(), v.clone()),
                    None => planned.attrs.remove(name),
                };
            }
        }
        let mut sensitive = c.sensitive.clone();
        sensitive.extend(tainted);
        sensitive.extend(planned.sensitive.iter().cloned());
        if let Some(after) = &c.after {
            for (name, promised) in after {
                if matches!(promised, Value::Unknown) {
                    continue;
                }
                let now = planned.attrs.get(name);
                let ok = match now {
                    Some(v) => conforms(promised, v),
                    None => matches!(promised, Value::Null),
                };
                if !ok {
                    let shown = |v: Option<&Value>| {
                        if sensitive.contains(name) {
                            "(sensitive)".to_string()
                        } else {
                            v.map_or("null".into(), |v| v.to_string())
                        }
                    };
                    return Err(format!(
                        "`{name}` of {} was planned as {} but is now {}; the desired state or its inputs changed since the plan was made: plan again",
                        c.address,
                        shown(Some(promised)),
                        shown(now)
                    ));
                }
            }
        }
        Ok((planned.attrs, sensitive))
    }

    async fn change(&self, c: &Change) -> Result<(), String> {
        let ty = &c.ty;
        let p = match self.s.managed_type(ty) {
            Some((p, _)) => p.clone(),
            None => return Err(format!("no provider for type `{ty}`")),
        };
        let p = p.as_ref();
        let planned = if matches!(c.action, Action::Create | Action::Adopt | Action::Update | Action::Replace) {
            Some(self.final_planned(c, p).await?)
        } else {
            None
        };
        let _permit = self.sem.acquire().await.map_err(|e| e.to_string())?;
        if self.cancel.load(Ordering::SeqCst) {
            return Err(CANCELLED.into());
        }
        self.observer.started(c);
        let timeouts = self.s.cfg.blocks.get(&c.address.block).map(|b| b.timeouts.clone()).unwrap_or_default();
        let ctx_for = |limit: Option<std::time::Duration>| CallContext {
            timeout: limit,
            create_before_destroy: c.create_before_destroy,
            ..self.ctx(p)
        };
        // The object as the plan saw it (refreshed from live), so that an update also undoes what
        // changed outside meshform; the recorded object when the plan has none.
        let recorded =
            || self.objects.lock().unwrap_or_else(|e| e.into_inner()).get(&c.address).map(|r| r.attributes.clone());
        let prior = c.before.clone().or_else(recorded).unwrap_or_default();
        let deps = c.depends_on.clone();
        match (c.action, planned) {
            (Action::Delete, _) => {
                let d = timeouts.delete;
                timed(d, p.delete(ty, &prior, &ctx_for(d)))
                    .await
                    .map_err(|e| format!("destroying {} failed: {e}", c.address))?;
                self.commit(StateChange::Remove { address: c.address.clone() }).await
            }
            (Action::Create | Action::Adopt, Some((attrs, sensitive))) => {
                let d = timeouts.create;
                let attrs = self.prepare(c, p, attrs, &sensitive, &deps, &ctx_for(d)).await?;
                let new = timed(d, p.create(ty, &attrs, &ctx_for(d)))
                    .await
                    .map_err(|e| format!("creating {} failed: {e}", c.address))?;
                self.put(c, new, sensitive, deps).await
            }
            (Action::Update, Some((attrs, sensitive))) => {
                let d = timeouts.update;
                let new = timed(d, p.update(ty, &prior, &attrs, &ctx_for(d)))
                    .await
                    .map_err(|e| format!("updating {} failed: {e}", c.address))?;
                self.put(c, new, sensitive, deps).await
            }
            (Action::Replace, Some((attrs, sensitive))) => {
                let (create_limit, delete_limit) = (timeouts.create, timeouts.delete);
                let create_ctx = ctx_for(create_limit);
                let create = |attrs: Map| {
                    let create_ctx = &create_ctx;
                    async move {
                        timed(create_limit, p.create(ty, &attrs, create_ctx))
                            .await
                            .map_err(|e| format!("creating the replacement of {} failed: {e}", c.address))
                    }
                };
                if c.create_before_destroy {
                    let new = create(attrs).await?;
                    let old_id = prior.get("id").and_then(Value::to_interpolated);
                    if old_id.is_some() && new.get("id").and_then(Value::to_interpolated) == old_id {
                        return Err(format!(
                            "the replacement of {} has the same id as the object it replaces; create_before_destroy needs a new name",
                            c.address
                        ));
                    }
                    // Record the new object first: if the old one cannot be deleted, nothing new is lost.
                    self.put(c, new, sensitive, deps).await?;
                    timed(delete_limit, p.delete(ty, &prior, &ctx_for(delete_limit))).await.map_err(|e| {
                        format!(
                            "destroying the old {} (id {}) failed; it is no longer tracked and must be deleted by hand: {e}",
                            c.address,
                            old_id.unwrap_or_default()
                        )
                    })
                } else {
                    timed(delete_limit, p.delete(ty, &prior, &ctx_for(delete_limit)))
                        .await
                        .map_err(|e| format!("destroying {} for replacement failed: {e}", c.address))?;
                    self.commit(StateChange::Remove { address: c.address.clone() }).await?;
                    let attrs = self.prepare(c, p, attrs, &sensitive, &deps, &create_ctx).await?;
                    let new = create(attrs).await?;
                    self.put(c, new, sensitive, deps).await
                }
            }
            _ => Err(format!("nothing to do for {}", c.address)),
        }
    }

    async fn put(
        &self,
        c: &Change,
        attrs: Map,
        mut sensitive: std::collections::BTreeSet<String>,
        deps: Vec<Addr>,
    ) -> Result<(), String> {
        if let Some((p, _)) = self.s.provider_of(&c.address) {
            sensitive.extend(p.sensitive_in(&c.ty, &attrs));
        }
        let record = ObjectRecord::new(c.address.clone(), &c.ty, attrs.clone(), &sensitive, deps);
        self.values.set(c.address.clone(), ObjectValue { attrs, sensitive: Arc::new(sensitive) });
        self.commit(StateChange::Put { record }).await
    }

    async fn record_refresh(&self, c: &Change) -> Result<(), String> {
        let record = self.objects.lock().unwrap_or_else(|e| e.into_inner()).get(&c.address).cloned();
        match record.and_then(|r| refreshed_record(c, &r)) {
            Some(record) => self.commit(StateChange::Put { record }).await,
            None => Ok(()),
        }
    }

    /// The provider's [`Provider::prepare_create`] record, journaled before the create starts;
    /// the attributes to create with.
    async fn prepare(
        &self,
        c: &Change,
        p: &dyn Provider,
        attrs: Map,
        sensitive: &std::collections::BTreeSet<String>,
        deps: &[Addr],
        ctx: &CallContext,
    ) -> Result<Map, String> {
        let prepared = timed(ctx.timeout, p.prepare_create(&c.ty, &attrs, ctx))
            .await
            .map_err(|e| format!("preparing to create {} failed: {e}", c.address))?;
        let Some(prepared) = prepared else { return Ok(attrs) };
        let record = ObjectRecord::new(c.address.clone(), &c.ty, prepared.clone(), sensitive, deps.to_vec());
        self.commit(StateChange::Put { record }).await?;
        Ok(prepared)
    }

    async fn commit(&self, change: StateChange) -> Result<(), String> {
        self.journal.append(change.clone()).await?;
        change.apply_to(&mut self.objects.lock().unwrap_or_else(|e| e.into_inner()));
        Ok(())
    }
}

/// The record of an unchanged object whose refreshed attributes differ from `r` (an ignored
/// attribute changed, or a newer provider reads more): recorded as refreshed, as Terraform's apply
/// does, so drift compares against what was last seen. None when the record is current.
fn refreshed_record(c: &Change, r: &ObjectRecord) -> Option<ObjectRecord> {
    let before = c.before.as_ref().filter(|_| c.action == Action::NoOp)?;
    let moved = crate::plan::attr_diff(Some(&r.attributes), Some(before))
        .iter()
        .any(|(_, a, b)| !crate::plan::same(*a, *b) && !matches!(b, Some(Value::Unknown)));
    if !moved {
        return None;
    }
    let mut sensitive = r.sensitive_set();
    sensitive.extend(c.sensitive.iter().cloned());
    Some(ObjectRecord::new(c.address.clone(), &r.ty, before.clone(), &sensitive, r.dependencies.clone()))
}

/// Records the refreshed attributes of a plan's unchanged objects (see [`refreshed_record`]) when
/// the plan has nothing to apply; returns how many records moved (0: nothing to write).
pub fn record_refreshed(plan: &Plan, state: &mut State) -> usize {
    let mut n = 0;
    for c in &plan.changes {
        if let Some(new) = state.objects.get(&c.address).and_then(|r| refreshed_record(c, r)) {
            state.objects.insert(c.address.clone(), new);
            n += 1;
        }
    }
    n
}

/// A provider call under the resource's timeout for the operation, when it has one.
async fn timed<T>(
    limit: Option<std::time::Duration>,
    call: impl std::future::Future<Output = crate::provider::ProviderResult<T>>,
) -> Result<T, String> {
    match limit {
        None => call.await.map_err(|e| e.to_string()),
        // A tenth more than the provider is given, so its own, more precise error comes first.
        Some(d) => match tokio::time::timeout(d + d / 10, call).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!(
                "timed out after {}s (its `timeouts` setting); the operation may still finish in the background: the next plan reads what it changed, and a create that finished is found again by its name when the next apply makes it",
                d.as_secs()
            )),
        },
    }
}
