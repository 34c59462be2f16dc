//! An in-memory provider for tests and benchmarks: it records every call, keeps its "live"
//! objects where a test can change them behind meshform's back, and injects latency and failures.
//!
//! Types: `test_object` (`name` forces replacement, `value`, `tags`, `secret` is sensitive,
//! computed `id` and `version`), the data source `test_lookup` (`input` → `output`), the cluster
//! lookup `cluster` (`project`, `location`, `name` → `pod_cidr`, `endpoint`, ...), and the check
//! kind `test_equal` (`a` == `b`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;

use crate::provider::{
    AttrSchema, AttrType, CallContext, CheckOutcome, ErrorKind, Object, Planned, Presence, Provider, ProviderError,
    ProviderResult, TypeKind, TypeSchema,
};
use crate::value::{Map, Value};

/// One recorded call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// `read`, `create`, `update`, `delete`, `import`, `read_data`, `check`.
    pub op: String,
    /// The object's `name` (or id), when it has one.
    pub name: String,
    /// When it started, from the provider's first call (tokio's clock: virtual in tests on a
    /// paused clock).
    pub at: Duration,
    /// How long it took.
    pub took: Duration,
}

/// The test provider. Clone the `Arc` to keep a handle for assertions.
#[derive(Default)]
pub struct TestProvider {
    /// Live objects by id.
    pub live: Mutex<BTreeMap<String, Map>>,
    /// Every call, in order of completion.
    pub calls: Mutex<Vec<Call>>,
    /// Delay of every create/update/delete.
    pub latency: Mutex<Duration>,
    /// Extra delay of operations on objects with these names.
    pub delays: Mutex<BTreeMap<String, Duration>>,
    /// Names whose create or update fails.
    pub fail_names: Mutex<BTreeSet<String>>,
    /// Names whose create, when an object of that name already exists, takes it over: the plan
    /// says so (adopt) and the create returns the existing object.
    pub adopt_names: Mutex<BTreeSet<String>>,
    /// Attributes the provider's plan sets on the object with that name (to make an apply-time
    /// plan contradict the plan shown).
    pub plan_sets: Mutex<BTreeMap<String, Map>>,
    /// Names whose plan asks for replacement (because of `value`) whenever it has a prior.
    pub replace_names: Mutex<BTreeSet<String>>,
    /// Attributes a create or update of the object with that name returns instead of what it
    /// was given (a provider bug).
    pub result_sets: Mutex<BTreeMap<String, Map>>,
    /// The names of every `plan` call, in order.
    pub plan_calls: Mutex<Vec<String>>,
    in_flight: AtomicUsize,
    /// The most operations that were in flight at once.
    pub max_in_flight: AtomicUsize,
    next_id: AtomicUsize,
    epoch: Mutex<Option<Instant>>,
}

impl TestProvider {
    /// A new provider behind an `Arc`.
    pub fn new() -> Arc<TestProvider> {
        Arc::new(TestProvider::default())
    }

    /// The ops of recorded calls with their names, e.g. `("create", "a")`.
    pub fn ops(&self) -> Vec<(String, String)> {
        self.calls.lock().unwrap().iter().map(|c| (c.op.clone(), c.name.clone())).collect()
    }

    /// Forgets recorded calls.
    pub fn clear_calls(&self) {
        self.calls.lock().unwrap().clear();
        self.max_in_flight.store(0, Ordering::SeqCst);
    }

    /// The live object with `name`, if any.
    pub fn live_by_name(&self, name: &str) -> Option<Map> {
        self.live.lock().unwrap().values().find(|m| m.get("name").and_then(Value::as_str) == Some(name)).cloned()
    }

    /// Changes a live object's attribute behind meshform's back.
    pub fn tamper(&self, name: &str, attr: &str, v: Value) {
        for m in self.live.lock().unwrap().values_mut() {
            if m.get("name").and_then(Value::as_str) == Some(name) {
                m.insert(attr.into(), v.clone());
            }
        }
    }

    /// Deletes a live object behind meshform's back.
    pub fn remove_live(&self, name: &str) {
        self.live.lock().unwrap().retain(|_, m| m.get("name").and_then(Value::as_str) != Some(name));
    }

    fn now(&self) -> Duration {
        self.epoch.lock().unwrap().get_or_insert_with(Instant::now).elapsed()
    }

    async fn op<T>(&self, op: &str, name: &str, f: impl FnOnce() -> ProviderResult<T>) -> ProviderResult<T> {
        let at = self.now();
        let n = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(n, Ordering::SeqCst);
        let delay = *self.latency.lock().unwrap() + self.delays.lock().unwrap().get(name).copied().unwrap_or_default();
        if !delay.is_zero() && op != "read" {
            tokio::time::sleep(delay).await;
        }
        let fail = matches!(op, "create" | "update") && self.fail_names.lock().unwrap().contains(name);
        let r = if fail {
            Err(ProviderError::new(ErrorKind::Invalid, format!("injected failure for {name}")))
        } else {
            f()
        };
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let took = self.now() - at;
        self.calls.lock().unwrap().push(Call { op: op.into(), name: name.into(), at, took });
        r
    }
}

fn name_of(m: &Map) -> String {
    m.get("name").and_then(Value::to_interpolated).unwrap_or_default()
}

impl TestProvider {
    /// `m` with the attributes [`TestProvider::result_sets`] gives for its name.
    fn result(&self, mut m: Map) -> Map {
        if let Some(over) = self.result_sets.lock().unwrap().get(&name_of(&m)) {
            m.extend(over.clone());
        }
        m
    }
}

#[async_trait]
impl Provider for TestProvider {
    fn name(&self) -> &str {
        "test"
    }

    fn schemas(&self) -> Vec<TypeSchema> {
        let s = AttrType::String;
        vec![
            TypeSchema::new("test_object", TypeKind::Managed, "An in-memory object.")
                .attr(AttrSchema::new("name", s.clone(), Presence::Required).force_new())
                .attr(AttrSchema::new("value", AttrType::Any, Presence::Optional))
                .attr(AttrSchema::new("tags", AttrType::Map(Box::new(s.clone())), Presence::Optional))
                .attr(AttrSchema::new("secret", s.clone(), Presence::Optional).sensitive())
                .attr(AttrSchema::new("id", s.clone(), Presence::Computed))
                .attr(AttrSchema::new("version", AttrType::Number, Presence::Computed)),
            TypeSchema::new("test_lookup", TypeKind::Data, "Echoes its input.")
                .attr(AttrSchema::new("input", AttrType::Any, Presence::Required))
                .attr(AttrSchema::new("output", AttrType::Any, Presence::Computed)),
            TypeSchema::new("cluster", TypeKind::Data, "A fake cluster lookup.")
                .attr(AttrSchema::new("project", s.clone(), Presence::Required))
                .attr(AttrSchema::new("location", s.clone(), Presence::Required))
                .attr(AttrSchema::new("name", s.clone(), Presence::Optional))
                .attr(AttrSchema::new("pod_cidr", s.clone(), Presence::Computed))
                .attr(AttrSchema::new("endpoint", s.clone(), Presence::Computed))
                .attr(AttrSchema::new("node_tag", s, Presence::Computed)),
        ]
    }

    fn check_kinds(&self) -> Vec<String> {
        vec!["test_equal".into()]
    }

    async fn plan(
        &self,
        ty: &str,
        prior: Option<&Map>,
        mut proposed: Planned,
        _ctx: &CallContext,
    ) -> ProviderResult<Planned> {
        let name = name_of(&proposed.attrs);
        if ty != "test_object" {
            return Ok(proposed);
        }
        self.plan_calls.lock().unwrap().push(name.clone());
        if let Some(over) = self.plan_sets.lock().unwrap().get(&name) {
            proposed.attrs.extend(over.clone());
        }
        if prior.is_some() && self.replace_names.lock().unwrap().contains(&name) {
            proposed.replace_because.push("value".into());
        }
        if prior.is_none() && self.adopt_names.lock().unwrap().contains(&name) && self.live_by_name(&name).is_some() {
            proposed.adopts = Some(format!("{name} exists already and is taken over"));
        }
        Ok(proposed)
    }

    async fn read(&self, _ty: &str, prior: &Map, _ctx: &CallContext) -> ProviderResult<Option<Object>> {
        let id = prior.get("id").and_then(Value::to_interpolated).unwrap_or_default();
        let name = name_of(prior);
        self.op("read", &name, || Ok(self.live.lock().unwrap().get(&id).cloned().map(Object::from))).await
    }

    async fn create(&self, _ty: &str, planned: &Map, _ctx: &CallContext) -> ProviderResult<Object> {
        let name = name_of(planned);
        self.op("create", &name, || {
            let mut live = self.live.lock().unwrap();
            if let Some(existing) = live.values().find(|m| name_of(m) == name) {
                if self.adopt_names.lock().unwrap().contains(&name) {
                    return Ok(Object::from(existing.clone()).note(format!("adopted {name}")));
                }
                return Err(ProviderError::new(ErrorKind::Conflict, format!("{name} already exists")));
            }
            let id = format!("obj-{}", self.next_id.fetch_add(1, Ordering::SeqCst));
            let mut m = planned.clone();
            m.insert("id".into(), Value::str(&id));
            m.insert("version".into(), Value::Int(1));
            let m = self.result(m);
            live.insert(id, m.clone());
            Ok(m.into())
        })
        .await
    }

    async fn update(&self, _ty: &str, prior: &Map, planned: &Map, _ctx: &CallContext) -> ProviderResult<Object> {
        let name = name_of(planned);
        let id = prior.get("id").and_then(Value::to_interpolated).unwrap_or_default();
        self.op("update", &name, || {
            let mut live = self.live.lock().unwrap();
            let Some(cur) = live.get(&id) else {
                return Err(ProviderError::new(ErrorKind::NotFound, format!("{id} is gone")));
            };
            let version = match cur.get("version") {
                Some(Value::Int(v)) => v + 1,
                _ => 1,
            };
            let mut m = planned.clone();
            m.insert("id".into(), Value::str(&id));
            m.insert("version".into(), Value::Int(version));
            let m = self.result(m);
            live.insert(id.clone(), m.clone());
            Ok(m.into())
        })
        .await
    }

    async fn delete(&self, _ty: &str, prior: &Map, _ctx: &CallContext) -> ProviderResult<()> {
        let id = prior.get("id").and_then(Value::to_interpolated).unwrap_or_default();
        self.op("delete", &name_of(prior), || {
            self.live.lock().unwrap().remove(&id);
            Ok(())
        })
        .await
    }

    async fn import(&self, _ty: &str, id: &str, _ctx: &CallContext) -> ProviderResult<Object> {
        self.op("import", id, || {
            self.live
                .lock()
                .unwrap()
                .get(id)
                .cloned()
                .map(Object::from)
                .ok_or_else(|| ProviderError::new(ErrorKind::NotFound, format!("no object {id}")))
        })
        .await
    }

    async fn read_data(&self, ty: &str, config: &Map, _ctx: &CallContext) -> ProviderResult<Object> {
        self.op("read_data", &name_of(config), || {
            let mut m = config.clone();
            match ty {
                "test_lookup" => {
                    m.insert("output".into(), config.get("input").cloned().unwrap_or(Value::Null));
                }
                _ => {
                    let n = name_of(config);
                    let idx = n.bytes().map(u32::from).sum::<u32>() % 200;
                    m.insert("pod_cidr".into(), Value::String(format!("10.{idx}.0.0/14")));
                    m.insert("endpoint".into(), Value::String(format!("https://{n}.example")));
                    m.insert("node_tag".into(), Value::String(format!("gke-{n}-node")));
                }
            }
            Ok(m.into())
        })
        .await
    }

    async fn check(&self, _kind: &str, args: &Map, _ctx: &CallContext) -> ProviderResult<CheckOutcome> {
        let (a, b) = (args.get("a"), args.get("b"));
        Ok(CheckOutcome {
            passed: a.is_some() && a == b,
            detail: format!("a = {}, b = {}", a.unwrap_or(&Value::Null), b.unwrap_or(&Value::Null)),
        })
    }
}
