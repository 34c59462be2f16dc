//! Applying a plan: exactly its changes, each as soon as everything it waits for has finished,
//! at most `parallelism` provider operations at once. Every finished operation is journaled
//! (durable) before its dependents start; the journal is folded into the state document at the
//! end. A failure skips its dependents and lets independent branches go on. Cancellation starts
//! nothing new and lets operations in flight finish.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::addr::Addr;
use crate::checks::{CheckResult, run_checks};
use crate::diag::{Diagnostic, Diagnostics};
use crate::eval::{ObjectValue, eval};
use crate::plan::decide::{DecideInput, carries_out, decide};
use crate::plan::planner::{Reads, read_data};
use crate::plan::saved::check_fresh;
use crate::plan::{Action, Change, Plan, conforms};
use crate::provider::{CallContext, ErrorKind, Object, Presence, Provider, ProviderError};
use crate::session::{Session, Values};
use crate::state::handle::Locked;
use crate::state::journal::Journal;
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
    /// What the plan read, when it was made in this process (the clusters and data sources are
    /// then not read again); None for a saved plan.
    pub reads: Option<Arc<Reads>>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions { parallelism: 10, cancel: Arc::new(AtomicBool::new(false)), reads: None }
    }
}

/// Why an operation failed: the kind of failure the provider reported (None when the engine
/// refused: a value or action that contradicts the plan), what happened, and what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpError {
    /// The provider's error kind.
    pub kind: Option<ErrorKind>,
    /// What happened.
    pub message: String,
    /// What the user can do about it.
    pub hint: Option<String>,
}

impl OpError {
    /// The engine's own refusal.
    pub fn engine(message: impl Into<String>) -> OpError {
        OpError { kind: None, message: message.into(), hint: None }
    }

    /// A provider's failure, with what was being done.
    pub fn provider(doing: impl std::fmt::Display, e: &ProviderError) -> OpError {
        // An error of no particular kind (a timeout) is said as it is.
        let message =
            if e.kind == ErrorKind::Other { format!("{doing}: {}", e.message) } else { format!("{doing}: {e}") };
        OpError { kind: Some(e.kind), message, hint: e.hint().map(str::to_string) }
    }
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
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
    Failed(OpError),
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
    /// What providers said the user should hear about (an object adopted instead of created).
    pub notes: Vec<String>,
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

/// How a node of the walk failed.
#[derive(Clone, Debug)]
enum NodeError {
    Cancelled,
    Op(OpError),
}

impl From<OpError> for NodeError {
    fn from(e: OpError) -> NodeError {
        NodeError::Op(e)
    }
}

/// Applies `plan` to `state`, journaling and writing through `locked` (its lock held).
pub async fn apply(
    s: &Session,
    plan: &Plan,
    locked: &mut Locked,
    state: &mut State,
    opts: &ApplyOptions,
    observer: &dyn Observer,
) -> Result<ApplyReport, Diagnostics> {
    check_fresh(plan, state).map_err(|m| Diagnostics::from(Diagnostic::global(m)))?;
    if plan.mode == crate::plan::Mode::RefreshOnly {
        return record_refresh_only(plan, locked, state).await;
    }
    // Moves first, durable before anything they might be confused with runs.
    if !plan.moves.is_empty() {
        for (from, to) in &plan.moves {
            crate::refactor::move_records(state, from, to).map_err(|m| Diagnostics::from(Diagnostic::global(m)))?;
        }
        locked.write(state).await.map_err(|m| Diagnostics::from(Diagnostic::global(m)))?;
    }
    s.configure().await?;
    let values = Values::for_session(s);
    let reads = match &opts.reads {
        Some(r) => {
            s.set_clusters(&values, &r.clusters);
            r.clone()
        }
        None => Arc::new(Reads::for_session(s, s.read_clusters(&values, state).await?)),
    };
    // How to reach every declared cluster is durable before anything is made in it, so that its
    // objects can still be removed after it leaves [clusters].
    let mut recorded = state.clusters.clone();
    recorded.extend(s.cluster_configs(&values)?);
    if recorded != state.clusters {
        state.clusters = recorded;
        locked.write(state).await.map_err(|m| Diagnostics::from(Diagnostic::global(m)))?;
    }
    // Objects referenced but outside a targeted plan resolve to their recorded values.
    for r in state.objects.values() {
        values.set(
            r.address.clone(),
            ObjectValue { attrs: r.attributes.clone(), sensitive: Arc::new(r.sensitive_set()) },
        );
    }
    let deps = edges(plan, state);
    let journal = locked.journal(state).await.map_err(|m| Diagnostics::from(Diagnostic::global(m)))?;
    let objects = Mutex::new(std::mem::take(&mut state.objects));
    let run = Run {
        s,
        values: &values,
        reads: &reads,
        journal: &journal,
        objects: &objects,
        sem: Semaphore::new(opts.parallelism.max(1)),
        cancel: &opts.cancel,
        observer,
        notes: Mutex::default(),
    };
    let outcomes = walk(&deps, Some(&opts.cancel), |i| run.node(&plan.changes[i])).await;
    let notes = run.notes.into_inner().unwrap_or_else(|e| e.into_inner());
    journal.close().await;
    state.objects = objects.into_inner().unwrap_or_else(|e| e.into_inner());

    let mut report = ApplyReport {
        cancelled: opts.cancel.load(Ordering::SeqCst),
        notes,
        results: results_of(plan, &outcomes, &values),
        ..ApplyReport::default()
    };
    let complete = report.success();
    let lives = s.clusters_in(state);
    state.clusters.retain(|n, _| lives.contains(n));
    if complete && plan.mode == crate::plan::Mode::Normal {
        let outputs = outputs_of(s, &values);
        state.outputs = outputs.clone();
        report.outputs = outputs;
    } else if plan.mode == crate::plan::Mode::Destroy && complete {
        state.outputs.clear();
    }
    locked.write(state).await.map_err(|m| Diagnostics::from(Diagnostic::global(m)))?;
    report.serial = state.serial;
    if complete && plan.mode == crate::plan::Mode::Normal {
        report.checks = run_checks(s, &values, &reads.clusters, opts.parallelism).await;
    }
    Ok(report)
}

/// Applies a refresh-only plan: the refreshed records written, the ones whose objects are gone
/// removed; nothing live is called.
async fn record_refresh_only(plan: &Plan, locked: &mut Locked, state: &mut State) -> Result<ApplyReport, Diagnostics> {
    record_refreshed(plan, state);
    let mut results = Vec::new();
    for c in &plan.changes {
        if c.action == Action::Forget {
            state.objects.remove(&c.address);
            results.push((c.address.clone(), c.action, NodeResult::Done { id: None }));
        }
    }
    locked.write(state).await.map_err(|m| Diagnostics::from(Diagnostic::global(m)))?;
    Ok(ApplyReport { results, serial: state.serial, ..ApplyReport::default() })
}

/// How each change that does something ended, in the plan's order.
fn results_of(plan: &Plan, outcomes: &[Outcome<NodeError>], values: &Values) -> Vec<(Addr, Action, NodeResult)> {
    let mut out = Vec::new();
    for (c, o) in plan.changes.iter().zip(outcomes) {
        let r = match o {
            Outcome::Done => NodeResult::Done {
                id: values.get(&c.address).and_then(|v| v.attrs.get("id").and_then(Value::to_interpolated)),
            },
            Outcome::Failed(NodeError::Cancelled) | Outcome::Cancelled => NodeResult::Cancelled,
            Outcome::Failed(NodeError::Op(e)) => NodeResult::Failed(e.clone()),
            Outcome::Skipped(i) => NodeResult::Skipped { because: plan.changes[*i].address.clone() },
        };
        if c.action != Action::NoOp {
            out.push((c.address.clone(), c.action, r));
        }
    }
    out
}

/// The outputs after a complete apply (sensitive ones redacted). An output that cannot be
/// evaluated is left out (the plan evaluated each already).
fn outputs_of(s: &Session, values: &Values) -> Map {
    let mut outputs = Map::new();
    for (name, o) in &s.cfg.outputs {
        if let Ok(r) = eval(&o.value, &s.scope(None, values)) {
            let v = if o.sensitive || r.sensitive { r.value.redact() } else { r.value };
            outputs.insert(name.clone(), v);
        }
    }
    outputs
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
    reads: &'a Reads,
    journal: &'a Journal,
    objects: &'a Mutex<BTreeMap<Addr, ObjectRecord>>,
    sem: Semaphore,
    cancel: &'a AtomicBool,
    observer: &'a dyn Observer,
    notes: Mutex<Vec<String>>,
}

/// The planned attributes of a create or update, and which of them are sensitive.
type Final = (Map, BTreeSet<String>);

impl Run<'_> {
    async fn node(&self, c: &Change) -> Result<(), NodeError> {
        if c.address.block.mode == crate::addr::Mode::Data {
            return self.read(c).await.map_err(NodeError::from);
        }
        match c.action {
            Action::NoOp => self.no_op(c).await.map_err(NodeError::from),
            Action::Read => self.read(c).await.map_err(NodeError::from),
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
                    Err(NodeError::Cancelled) => NodeResult::Cancelled,
                    Err(NodeError::Op(e)) => NodeResult::Failed(self.with_import_command(c, e.clone())),
                };
                self.observer.finished(c, &r, started.elapsed());
                match (result, &r) {
                    (Err(NodeError::Op(_)), NodeResult::Failed(e)) => Err(NodeError::Op(e.clone())),
                    (result, _) => result,
                }
            }
        }
    }

    /// An error's import advice as a command to paste: this desired-state file and address
    /// (and the id, when the provider named it).
    fn with_import_command(&self, c: &Change, mut e: OpError) -> OpError {
        let cmd = format!("meshform import {} '{}'", self.s.cfg.path.display(), c.address);
        let generic = format!("`{cmd} ID` (the id's form: `meshform schema {}`)", c.ty);
        e.message = fill_import(&e.message, &cmd, &generic);
        e.hint = e.hint.as_deref().map(|h| fill_import(h, &cmd, &generic));
        e
    }

    async fn no_op(&self, c: &Change) -> Result<(), OpError> {
        let (desired, tainted) = self.s.eval_instance(&c.address, self.values).map_err(|d| self.render(d))?;
        let mut attrs = c.before.clone().unwrap_or_default();
        if let Some(after) = &c.after {
            crate::plan::unredact(&mut attrs, after);
        }
        // A saved plan holds only hashes of sensitive values: the object is decided again (no
        // change is made) so that dependents see the plaintext.
        if crate::plan::has_redacted(&attrs)
            && let Some((p, _)) = self.s.provider_of(&c.address)
        {
            let input = DecideInput {
                addr: &c.address,
                prior: c.before.as_ref(),
                recorded: true,
                desired: &desired,
                sensitive: c.sensitive.clone(),
            };
            if let Ok(d) = decide(self.s, input, &self.ctx(p.as_ref())).await {
                crate::plan::unredact(&mut attrs, &d.planned.attrs);
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

    async fn read(&self, c: &Change) -> Result<(), OpError> {
        let (config, sensitive) = self.s.eval_instance(&c.address, self.values).map_err(|d| self.render(d))?;
        let (p, schema) = self.s.provider_of(&c.address).ok_or_else(|| OpError::engine("no provider"))?;
        let _permit = self.sem.acquire().await.map_err(|e| OpError::engine(e.to_string()))?;
        let obj = read_data(self.s, self.reads, &c.address, &config, &self.ctx(p.as_ref()))
            .await
            .map_err(|e| OpError::provider(format!("cannot read {}", c.address), &e))?;
        // Sensitive as the plan saw it: by the schema, by what it read, and as the plan marked it.
        let mut sensitive = sensitive;
        sensitive.extend(schema.attrs.iter().filter(|a| a.sensitive).map(|a| a.name.clone()));
        sensitive.extend(c.sensitive.iter().cloned());
        sensitive.extend(obj.sensitive);
        self.values.set(c.address.clone(), ObjectValue { attrs: obj.attrs, sensitive: Arc::new(sensitive) });
        Ok(())
    }

    fn ctx(&self, p: &dyn Provider) -> CallContext {
        self.s.ctx(p, &self.reads.clusters)
    }

    fn render(&self, d: Diagnostics) -> OpError {
        OpError::engine(d.render(&self.s.cfg.sources, false).trim_end())
    }

    /// The final attributes of a create, update or replacement. When everything the change sets
    /// was known at plan time, they are the plan's, as it showed them. Otherwise (a value known
    /// only after apply, or a sensitive value a saved plan holds only as a hash) the change is
    /// decided again now that everything it references exists, by the planner's own steps, and
    /// refused when the action or a value the plan showed would differ.
    async fn final_planned(&self, c: &Change, p: &dyn Provider) -> Result<Final, OpError> {
        // The desired state evaluated now that everything it references exists (cheap: no
        // provider call), to see whether it is still what the plan was made from.
        let (desired, tainted) = self.s.eval_instance(&c.address, self.values).map_err(|d| self.render(d))?;
        if let Some(after) = &c.after
            && c.action != Action::Replace
            && !needs_deciding(after, &desired)
        {
            return Ok((after.clone(), c.sensitive.clone()));
        }
        // The new object of a replacement is decided as the create it is (what the plan showed as
        // chosen by the server is then the provider's default, as for any create).
        let imports = c.action == Action::Adopt && c.import_id.is_some();
        let prior = if c.action == Action::Update || imports { c.before.as_ref() } else { None };
        let mut sensitive = c.sensitive.clone();
        sensitive.extend(tainted);
        let input = DecideInput { addr: &c.address, prior, recorded: false, desired: &desired, sensitive };
        let ctx = CallContext { create_before_destroy: c.create_before_destroy, ..self.ctx(p) };
        let mut d = decide(self.s, input, &ctx)
            .await
            .map_err(|e| OpError::provider(format!("cannot plan {}", c.address), &e))?;
        if c.action == Action::Replace
            && let (Some(block), Some(before)) = (self.s.cfg.blocks.get(&c.address.block), c.before.as_ref())
        {
            // As the plan did: an ignored attribute keeps what the replaced object had.
            crate::plan::decide::keep_ignored(block, before, &mut d.planned);
        }
        // An import is an adoption whatever it then changes in place.
        let now = if imports && matches!(d.action, Action::NoOp | Action::Update) { Action::Adopt } else { d.action };
        if !carries_out(c.action, now) {
            let because = match d.planned.replace_because.is_empty() {
                true => String::new(),
                false => format!(" because {} changed", d.planned.replace_because.join(", ")),
            };
            return Err(OpError::engine(format!(
                "the plan shows {} as {}, but now it would be {}{because}; the desired state or its inputs changed since the plan was made: plan again",
                c.address,
                c.action.verb(),
                d.action.verb()
            )));
        }
        if let Some(after) = &c.after {
            contradiction(c, after, &d.planned.attrs, &d.sensitive).map_or(Ok(()), Err)?;
        }
        Ok((d.planned.attrs, d.sensitive))
    }

    async fn change(&self, c: &Change) -> Result<(), NodeError> {
        let p = match self.s.managed_type(&c.ty) {
            Some((p, _)) => p.clone(),
            None => return Err(OpError::engine(format!("no provider for type `{}`", c.ty)).into()),
        };
        let p = p.as_ref();
        let planned = match c.action {
            Action::Create | Action::Adopt | Action::Update | Action::Replace => Some(self.final_planned(c, p).await?),
            _ => None,
        };
        let _permit = self.sem.acquire().await.map_err(|e| OpError::engine(e.to_string()))?;
        if self.cancel.load(Ordering::SeqCst) {
            return Err(NodeError::Cancelled);
        }
        self.observer.started(c);
        // The object as the plan saw it (refreshed from live), so that an update also undoes what
        // changed outside meshform; the recorded object when the plan has none.
        let recorded =
            || self.objects.lock().unwrap_or_else(|e| e.into_inner()).get(&c.address).map(|r| r.attributes.clone());
        let mut prior = c.before.clone().or_else(recorded).unwrap_or_default();
        let op = Op { run: self, c, p, timeouts: self.timeouts(c) };
        if let Some(id) = &c.import_id {
            prior = op.import(id).await?;
        }
        match (c.action, planned) {
            (Action::Forget, _) => self.commit(StateChange::Remove { address: c.address.clone() }).await,
            (Action::Adopt, Some(fin)) if c.import_id.is_some() => op.after_import(&prior, fin).await,
            (Action::Delete, _) => op.delete(&prior, "destroying").await,
            (Action::Create | Action::Adopt, Some(fin)) => op.create(fin, "creating").await,
            (Action::Update, Some(fin)) => op.update(&prior, fin).await,
            (Action::Replace, Some(fin)) if c.create_before_destroy => op.replace_create_first(&prior, fin).await,
            (Action::Replace, Some(fin)) => {
                op.delete(&prior, "destroying for replacement").await?;
                op.create(fin, "creating the replacement of").await
            }
            _ => Err(OpError::engine(format!("nothing to do for {}", c.address))),
        }
        .map_err(NodeError::from)
    }

    fn timeouts(&self, c: &Change) -> crate::config::Timeouts {
        self.s.cfg.blocks.get(&c.address.block).map(|b| b.timeouts.clone()).unwrap_or_default()
    }

    /// Records a provider's result for `c`; fails when the result contradicts a value the plan
    /// showed (the object is recorded as it is first, so nothing is lost).
    async fn put(
        &self,
        c: &Change,
        planned: &Map,
        obj: Object,
        mut sensitive: BTreeSet<String>,
    ) -> Result<(), OpError> {
        sensitive.extend(obj.sensitive);
        self.notes.lock().unwrap_or_else(|e| e.into_inner()).extend(obj.notes);
        let inconsistent = self
            .s
            .managed_type(&c.ty)
            .and_then(|(_, schema)| inconsistency(c, schema, planned, &obj.attrs, &sensitive));
        let record = ObjectRecord::new(c.address.clone(), &c.ty, obj.attrs.clone(), &sensitive, c.depends_on.clone());
        self.values.set(c.address.clone(), ObjectValue { attrs: obj.attrs, sensitive: Arc::new(sensitive) });
        self.commit(StateChange::Put { record }).await?;
        inconsistent.map_or(Ok(()), Err)
    }

    async fn record_refresh(&self, c: &Change) -> Result<(), OpError> {
        let record = self.objects.lock().unwrap_or_else(|e| e.into_inner()).get(&c.address).cloned();
        match record.and_then(|r| refreshed_record(c, &r)) {
            Some(record) => self.commit(StateChange::Put { record }).await,
            None => Ok(()),
        }
    }

    /// Journals a finished change and records it in memory. The change happened live whether or
    /// not the journal took it, so it is recorded either way (the final write keeps it); a
    /// journal that failed stops the apply: nothing new starts without durability.
    async fn commit(&self, change: StateChange) -> Result<(), OpError> {
        let journaled = self.journal.append(change.clone()).await;
        change.apply_to(&mut self.objects.lock().unwrap_or_else(|e| e.into_inner()));
        if journaled.is_err() {
            self.cancel.store(true, Ordering::SeqCst);
        }
        journaled.map_err(OpError::engine)
    }
}

/// One create, update or delete of a change, with the resource's timeouts.
struct Op<'a> {
    run: &'a Run<'a>,
    c: &'a Change,
    p: &'a dyn Provider,
    timeouts: crate::config::Timeouts,
}

impl Op<'_> {
    /// Reads the object an `[[import]]` names and records it (the record is durable before
    /// anything changes it); returns it as the prior object of what follows.
    async fn import(&self, id: &str) -> Result<Map, OpError> {
        let c = self.c;
        let ctx = self.ctx(None);
        let obj = crate::provider::retry_read(|| self.p.import(&c.ty, id, &ctx))
            .await
            .map_err(|e| OpError::provider(format!("importing {id} as {} failed", c.address), &e))?;
        let mut sensitive = c.sensitive.clone();
        sensitive.extend(obj.sensitive.iter().cloned());
        let record = ObjectRecord::new(c.address.clone(), &c.ty, obj.attrs.clone(), &sensitive, c.depends_on.clone());
        self.run.commit(StateChange::Put { record }).await?;
        Ok(obj.attrs)
    }

    /// An imported object: updated in place when the desired state differs from it, else only
    /// recorded (as it already is).
    async fn after_import(&self, prior: &Map, fin: Final) -> Result<(), OpError> {
        let differs = crate::plan::attr_diff(Some(prior), Some(&fin.0))
            .iter()
            .any(|(_, a, b)| !crate::plan::same(*a, *b) && !matches!(b, Some(Value::Unknown)));
        if differs {
            return self.update(prior, fin).await;
        }
        let sensitive = Arc::new(fin.1);
        self.run.values.set(self.c.address.clone(), ObjectValue { attrs: prior.clone(), sensitive });
        Ok(())
    }

    fn ctx(&self, limit: Option<Duration>) -> CallContext {
        CallContext { timeout: limit, create_before_destroy: self.c.create_before_destroy, ..self.run.ctx(self.p) }
    }

    /// Deletes the object (already gone counts as deleted) and removes its record.
    async fn delete(&self, prior: &Map, doing: &str) -> Result<(), OpError> {
        let limit = self.timeouts.delete;
        match timed(limit, self.p.delete(&self.c.ty, prior, &self.ctx(limit))).await {
            Ok(()) => {}
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) => return Err(OpError::provider(format!("{doing} {} failed", self.c.address), &e)),
        }
        self.run.commit(StateChange::Remove { address: self.c.address.clone() }).await
    }

    /// Creates the object and records the result.
    async fn create(&self, (attrs, sensitive): Final, doing: &str) -> Result<(), OpError> {
        let obj = self.make(attrs.clone(), &sensitive, doing).await?;
        self.run.put(self.c, &attrs, obj, sensitive).await
    }

    /// The provider's create. Its [`Provider::prepare_create`] record is journaled first, except
    /// for a `create_before_destroy` replacement, whose old record must stay until the new
    /// object exists.
    async fn make(&self, attrs: Map, sensitive: &BTreeSet<String>, doing: &str) -> Result<Object, OpError> {
        let (c, limit) = (self.c, self.timeouts.create);
        let ctx = self.ctx(limit);
        if c.action == Action::Replace && c.create_before_destroy {
            return timed(limit, self.p.create(&c.ty, &attrs, &ctx))
                .await
                .map_err(|e| OpError::provider(format!("{doing} {} failed", c.address), &e));
        }
        let prepared = timed(limit, self.p.prepare_create(&c.ty, &attrs, &ctx))
            .await
            .map_err(|e| OpError::provider(format!("preparing to create {} failed", c.address), &e))?;
        let attrs = match prepared {
            Some(prepared) => {
                let record =
                    ObjectRecord::new(c.address.clone(), &c.ty, prepared.clone(), sensitive, c.depends_on.clone());
                self.run.commit(StateChange::Put { record }).await?;
                prepared
            }
            None => attrs,
        };
        timed(limit, self.p.create(&c.ty, &attrs, &ctx))
            .await
            .map_err(|e| OpError::provider(format!("{doing} {} failed", c.address), &e))
    }

    async fn update(&self, prior: &Map, (attrs, sensitive): Final) -> Result<(), OpError> {
        let limit = self.timeouts.update;
        let obj = timed(limit, self.p.update(&self.c.ty, prior, &attrs, &self.ctx(limit)))
            .await
            .map_err(|e| OpError::provider(format!("updating {} failed", self.c.address), &e))?;
        self.run.put(self.c, &attrs, obj, sensitive).await
    }

    /// `create_before_destroy`: the new object first (recorded, so that if the old one cannot be
    /// deleted nothing new is lost), then the old one deleted.
    async fn replace_create_first(&self, prior: &Map, (attrs, sensitive): Final) -> Result<(), OpError> {
        let c = self.c;
        let new = self.make(attrs.clone(), &sensitive, "creating the replacement of").await?;
        let old_id = prior.get("id").and_then(Value::to_interpolated);
        if old_id.is_some() && new.attrs.get("id").and_then(Value::to_interpolated) == old_id {
            return Err(OpError::engine(format!(
                "the replacement of {} has the same id as the object it replaces; create_before_destroy needs a new name",
                c.address
            )));
        }
        self.run.put(c, &attrs, new, sensitive).await?;
        let limit = self.timeouts.delete;
        match timed(limit, self.p.delete(&c.ty, prior, &self.ctx(limit))).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(OpError::provider(
                format!(
                    "destroying the old {} (id {}) failed; it is no longer tracked and must be deleted by hand",
                    c.address,
                    old_id.unwrap_or_default()
                ),
                &e,
            )),
        }
    }
}

/// Whether a planned object must be decided again at apply: a value the plan holds only as the
/// hash of a sensitive one (a saved plan), or an attribute the desired state sets (evaluated
/// now) that the plan had unknown or that now reads differently (an input changed since the
/// plan, or a value the provider normalises). What the desired state leaves out is the
/// provider's to choose and stays as planned.
fn needs_deciding(after: &Map, desired: &Map) -> bool {
    fn redacted(v: &Value) -> bool {
        match v {
            Value::Redacted(_) => true,
            Value::List(l) => l.iter().any(redacted),
            Value::Map(m) => m.values().any(redacted),
            _ => false,
        }
    }
    after.values().any(redacted)
        || desired.iter().filter(|(_, v)| !matches!(v, Value::Null)).any(|(name, v)| match after.get(name) {
            Some(planned) => planned.has_unknown() || !crate::plan::same(Some(planned), Some(v)),
            None => true,
        })
}

/// A value decided at apply that differs from what the plan showed (an attribute the plan did
/// not have counts as null).
fn contradiction(c: &Change, promised: &Map, now: &Map, sensitive: &BTreeSet<String>) -> Option<OpError> {
    crate::plan::attr_diff(Some(promised), Some(now)).into_iter().find_map(|(name, promised, v)| {
        let ok = match (promised, v) {
            (Some(Value::Unknown), _) | (None, Some(Value::Unknown)) => true,
            (Some(p), Some(v)) => conforms(p, v),
            (p, v) => crate::plan::same(p, v),
        };
        (!ok).then(|| {
            OpError::engine(format!(
                "`{name}` of {} was planned as {} but is now {}; the desired state or its inputs changed since the plan was made: plan again",
                c.address,
                shown(sensitive, name, promised),
                shown(sensitive, name, v)
            ))
        })
    })
}

/// A provider's result that contradicts a value the user set and the plan showed: a provider
/// bug, reported as a failure of the change (the result is recorded as it came).
fn inconsistency(
    c: &Change,
    schema: &crate::provider::TypeSchema,
    planned: &Map,
    result: &Map,
    sensitive: &BTreeSet<String>,
) -> Option<OpError> {
    schema
        .attrs
        .iter()
        .filter(|a| matches!(a.presence, Presence::Required | Presence::Optional) && !sensitive.contains(&a.name))
        .find_map(|a| {
            let (want, got) = (planned.get(&a.name)?, result.get(&a.name)?);
            if want.has_unknown() || crate::plan::same(Some(want), Some(got)) || conforms(want, got) {
                return None;
            }
            Some(OpError::engine(format!(
                "the provider returned {} with `{}` = {} where the plan showed {}; the object is recorded as returned (a provider bug: please report it), and the next plan shows the difference",
                c.address,
                a.name,
                shown(sensitive, &a.name, Some(got)),
                shown(sensitive, &a.name, Some(want))
            )))
        })
}

fn shown(sensitive: &BTreeSet<String>, name: &str, v: Option<&Value>) -> String {
    if sensitive.contains(name) { "(sensitive)".to_string() } else { v.map_or("null".into(), |v| v.to_string()) }
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

/// `text` with the placeholder import commands providers write replaced by `cmd`.
fn fill_import(text: &str, cmd: &str, generic: &str) -> String {
    text.replace("meshform import FILE ADDRESS", cmd).replace("`meshform import`", generic)
}

/// A provider call under the resource's timeout for the operation, when it has one.
async fn timed<T>(
    limit: Option<Duration>,
    call: impl std::future::Future<Output = crate::provider::ProviderResult<T>>,
) -> crate::provider::ProviderResult<T> {
    match limit {
        None => call.await,
        // A tenth more than the provider is given, so its own, more precise error comes first.
        Some(d) => match tokio::time::timeout(d + d / 10, call).await {
            Ok(r) => r,
            Err(_) => Err(ProviderError::new(
                ErrorKind::Other,
                format!(
                    "timed out after {}s (its `timeouts` setting); the operation may still finish in the background: the next plan reads what it changed, and a create that finished is found again by its name when the next apply makes it",
                    d.as_secs()
                ),
            )),
        },
    }
}
