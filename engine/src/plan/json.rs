//! The JSON rendering of a plan, for tools. The schema is stable and documented in the README
//! ("Plan JSON"): `format_version` changes only when a field changes meaning or disappears.

use serde_json::{Map as JMap, Value as J, json};

use super::{Change, Drift, Plan};
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

/// One change as JSON.
pub fn change_json(c: &Change) -> J {
    let mut unknown = Vec::new();
    let before = object(c, c.before.as_ref(), &mut Vec::new());
    let after = object(c, c.after.as_ref(), &mut unknown);
    json!({
        "address": c.address.to_string(),
        "type": c.ty,
        "action": c.action,
        "symbol": c.action.symbol(),
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
    let doc = json!({
        "format_version": JSON_FORMAT_VERSION,
        "mode": p.mode,
        "state": { "lineage": p.lineage, "serial": p.serial },
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
