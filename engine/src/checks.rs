//! `[[checks]]`: assertions evaluated against live objects after apply and during drift.
//! A check has a `condition` (an expression that must be true) or a provider `kind` with
//! arguments; `for_each` makes one check per key.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::config::Check;
use crate::eval::{Objects, eval, for_each_instances};
use crate::session::{Session, Values};
use crate::value::{Map, Value};

/// The outcome of one check (instance).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    /// `name`, with `[key]` for `for_each` instances.
    pub name: String,
    /// Whether it held.
    pub passed: bool,
    /// Why it failed, or what was found.
    pub message: String,
}

/// Evaluates every check against `values` (the instances as they are now: after apply, or as
/// the refresh read them). Checks run concurrently, at most `parallelism` at once (a provider's
/// own per-host budgets bound them further); results come in declaration order.
pub async fn run_checks(
    s: &Session,
    values: &Values,
    clusters: &Arc<BTreeMap<String, Map>>,
    parallelism: usize,
) -> Vec<CheckResult> {
    use futures::StreamExt as _;
    let mut out: Vec<Option<CheckResult>> = Vec::new();
    let mut runs = Vec::new();
    for c in &s.cfg.checks {
        let instances: Vec<(Option<String>, Value)> = match &c.for_each {
            None => vec![(None, Value::Null)],
            Some(fe) => {
                match eval(fe, &s.scope(None, values)).map_err(|d| d.summary).and_then(|r| for_each_instances(&r.value))
                {
                    Ok(list) => list.into_iter().map(|(k, v)| (Some(k), v)).collect(),
                    Err(m) => {
                        out.push(Some(CheckResult {
                            name: c.name.clone(),
                            passed: false,
                            message: format!("invalid for_each: {m}"),
                        }));
                        continue;
                    }
                }
            }
        };
        for (key, each_value) in instances {
            let name = match &key {
                Some(k) => format!("{}[{k:?}]", c.name),
                None => c.name.clone(),
            };
            runs.push((out.len(), c, name, key.map(Value::String), each_value));
            out.push(None);
        }
    }
    let results: Vec<(usize, CheckResult)> = futures::stream::iter(runs)
        .map(|(slot, c, name, key, each_value)| async move {
            let each = key.as_ref().map(|k| (k, &each_value));
            (slot, run_one(s, c, name, each, values, clusters).await)
        })
        .buffer_unordered(parallelism.max(1))
        .collect()
        .await;
    for (slot, r) in results {
        out[slot] = Some(r);
    }
    out.into_iter().flatten().collect()
}

async fn run_one(
    s: &Session,
    c: &Check,
    name: String,
    each: Option<(&Value, &Value)>,
    values: &dyn Objects,
    clusters: &Arc<BTreeMap<String, Map>>,
) -> CheckResult {
    let scope = s.scope(each, values);
    let fail = |message: String| CheckResult { name: name.clone(), passed: false, message };
    if let Some((kind, _)) = &c.kind {
        let mut args = Map::new();
        for (k, a) in &c.args {
            match eval(&a.expr, &scope) {
                Ok(r) => {
                    args.insert(k.clone(), r.value);
                }
                Err(d) => return fail(d.summary),
            }
        }
        let Some(p) = s.registry.check_provider(kind) else {
            return fail(format!("no provider runs checks of kind `{kind}`"));
        };
        return match p.check(kind, &args, &s.ctx(p.as_ref(), clusters)).await {
            Ok(o) => CheckResult { name, passed: o.passed, message: o.detail },
            Err(e) => fail(e.to_string()),
        };
    }
    let Some(cond) = &c.condition else { return fail("no condition".into()) };
    let message = || match &c.error_message {
        Some(e) => match eval(e, &scope) {
            Ok(r) if r.sensitive => "(sensitive)".to_string(),
            Ok(r) => r.value.to_interpolated().unwrap_or_default(),
            Err(d) => d.summary,
        },
        None => "condition is false".into(),
    };
    match eval(cond, &scope) {
        Ok(r) => match r.value {
            Value::Bool(true) => CheckResult { name, passed: true, message: "ok".into() },
            Value::Bool(false) => fail(message()),
            Value::Unknown => fail("condition depends on values not known".into()),
            other => fail(format!("condition is a {}, not true or false", other.type_name())),
        },
        Err(d) => fail(d.summary),
    }
}
