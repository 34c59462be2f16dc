//! The JSON rendering of a plan, for tools. The schema is stable and documented in the README
//! ("Plan JSON"): `format_version` changes only when a field changes meaning or disappears.

use serde_json::{Map as JMap, Value as J, json};

use super::{Action, Change, Drift, Plan};
use crate::drift::DriftReport;
use crate::value::Value;

/// The JSON plan format version.
pub const JSON_FORMAT_VERSION: &str = "1";

fn object(c: &Change, m: Option<&crate::value::Map>, unknown: &mut Vec<String>) -> J {
    let Some(m) = m else { return J::Null };
    let mut o = JMap::new();
    for (k, v) in m {
        let j = if c.sensitive.contains(k) && !matches!(v, Value::Null) {
            J::Null
        } else if matches!(v, Value::Unknown) {
            unknown.push(k.clone());
            J::Null
        } else {
            v.to_plain_json()
        };
        o.insert(k.clone(), j);
    }
    J::Object(o)
}

/// Where a value is unknown, as `terraform show -json` marks it: `true` for an unknown value,
/// a list or object of the same shape for one that holds unknown parts, `None` for none.
fn unknown_tree(v: &Value) -> Option<J> {
    match v {
        Value::Unknown => Some(J::Bool(true)),
        Value::List(l) if v.has_unknown() => {
            Some(J::Array(l.iter().map(|x| unknown_tree(x).unwrap_or(J::Bool(false))).collect()))
        }
        Value::Map(m) if v.has_unknown() => {
            Some(J::Object(m.iter().filter_map(|(k, x)| unknown_tree(x).map(|t| (k.clone(), t))).collect()))
        }
        _ => None,
    }
}

/// `{attribute: true}` for the sensitive attributes `m` has (Terraform's `after_sensitive`).
fn sensitive_tree(c: &Change, m: Option<&crate::value::Map>) -> J {
    let Some(m) = m else { return J::Bool(false) };
    J::Object(m.keys().filter(|k| c.sensitive.contains(*k)).map(|k| (k.clone(), J::Bool(true))).collect())
}

/// Terraform's `actions` for a change: the operations in the order they run.
pub fn actions(c: &Change) -> Vec<&'static str> {
    match c.action {
        Action::NoOp => vec!["no-op"],
        Action::Read => vec!["read"],
        Action::Create => vec!["create"],
        Action::Update => vec!["update"],
        Action::Replace if c.create_before_destroy => vec!["create", "delete"],
        Action::Replace => vec!["delete", "create"],
        Action::Delete => vec!["delete"],
        Action::Forget => vec!["forget"],
        // Taken into state: nothing is created; an import may also update in place.
        Action::Adopt if c.before.is_some() && changes_attributes(c) => vec!["update"],
        Action::Adopt => vec!["no-op"],
    }
}

fn changes_attributes(c: &Change) -> bool {
    super::attr_diff(c.before.as_ref(), c.after.as_ref()).iter().any(|(_, a, b)| !super::same(*a, *b))
}

/// How an object comes into state without being created: `{"id", "how"}`, or null.
fn importing(c: &Change) -> J {
    if c.action != Action::Adopt {
        return J::Null;
    }
    let id = c.import_id.clone().or_else(|| {
        c.after.as_ref().and_then(|a| a.get("id")).filter(|v| !v.has_unknown()).and_then(Value::to_interpolated)
    });
    let how = if c.import_id.is_some() { "import_block" } else { "adopted_on_create" };
    json!({ "id": id, "how": how })
}

/// One change as JSON.
pub fn change_json(c: &Change) -> J {
    let mut unknown = Vec::new();
    let before = object(c, c.before.as_ref(), &mut Vec::new());
    let after = object(c, c.after.as_ref(), &mut unknown);
    let nested: JMap<String, J> = c
        .after
        .iter()
        .flatten()
        .filter(|(k, _)| !c.sensitive.contains(*k))
        .filter_map(|(k, v)| unknown_tree(v).map(|t| (k.clone(), t)))
        .collect();
    json!({
        "address": c.address.to_string(),
        "previous_address": c.moved_from.as_ref().map(ToString::to_string),
        "type": c.ty,
        "action": c.action,
        "actions": actions(c),
        "symbol": c.action.symbol(),
        "importing": importing(c),
        "after_unknown_nested": nested,
        "before_sensitive": sensitive_tree(c, c.before.as_ref()),
        "after_sensitive": sensitive_tree(c, c.after.as_ref()),
        "reason": c.reason,
        "before": before,
        "after": after,
        "after_unknown": unknown,
        "sensitive": c.sensitive,
        "replace_because": c.replace_because,
        "depends_on": c.depends_on.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "object_changes": c.object_changes,
        "delete_effect": c.delete_effect,
    })
}

/// One object's drift as JSON (sensitive values as null).
pub fn drift_json(d: &Drift) -> J {
    let attrs: Vec<J> = d
        .attributes
        .iter()
        .map(|a| {
            let hide = |v: &Option<Value>| match v {
                Some(v) if d.sensitive.contains(&a.name) && !matches!(v, Value::Null) => J::Null,
                Some(v) => v.to_plain_json(),
                None => J::Null,
            };
            json!({ "name": a.name, "recorded": hide(&a.recorded), "live": hide(&a.live), "sensitive": d.sensitive.contains(&a.name) })
        })
        .collect();
    json!({ "address": d.address.to_string(), "type": d.ty, "deleted": d.deleted, "attributes": attrs })
}

/// A drift report as JSON: what changed outside meshform, pending changes, checks, findings.
pub fn render_drift_json(r: &DriftReport) -> String {
    let doc = json!({
        "format_version": JSON_FORMAT_VERSION,
        "found": r.found(),
        "drift": r.drift.iter().map(drift_json).collect::<Vec<_>>(),
        "pending": r.pending.iter().map(change_json).collect::<Vec<_>>(),
        "checks": r.checks,
        "findings": r.findings,
    });
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
    s.push('\n');
    s
}

/// The whole plan as JSON (no-op instances left out).
pub fn render_json(p: &Plan) -> String {
    let drift: Vec<J> = p.drift.iter().map(drift_json).collect();
    let outputs: JMap<String, J> = p
        .outputs
        .iter()
        .map(|(k, o)| {
            let known = !o.value.has_unknown();
            let value = if o.sensitive || !known { J::Null } else { o.value.to_plain_json() };
            (k.clone(), json!({ "value": value, "sensitive": o.sensitive, "known": known }))
        })
        .collect();
    let variables: JMap<String, J> = p
        .inputs
        .variables
        .iter()
        .map(|(k, v)| {
            let sensitive = matches!(v, Value::Redacted(_));
            let value = if sensitive { J::Null } else { v.to_plain_json() };
            (k.clone(), json!({ "value": value, "sensitive": sensitive }))
        })
        .collect();
    let moves: Vec<J> = p.moves.iter().map(|(f, t)| json!({ "from": f.to_string(), "to": t.to_string() })).collect();
    let doc = json!({
        "format_version": JSON_FORMAT_VERSION,
        "meshform_version": env!("CARGO_PKG_VERSION"),
        "timestamp": p.timestamp,
        "mode": p.mode,
        "state": { "lineage": (!p.lineage.is_empty()).then_some(&p.lineage), "serial": p.serial },
        "variables": variables,
        "moves": moves,
        "summary": p.summary(),
        "has_changes": p.has_changes(),
        "changes": p.visible_changes().map(change_json).collect::<Vec<_>>(),
        "drift": drift,
        "findings": p.findings,
        "outputs": outputs,
    });
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
    s.push('\n');
    s
}
