//! Small conversions between meshform values and the APIs' JSON.

use meshform_engine::provider::{ErrorKind, ProviderError};
use meshform_engine::value::{Map, Value};
use serde_json::Value as J;

/// A value as API JSON (unknowns and redactions become null).
pub fn to_api(v: &Value) -> J {
    v.to_plain_json()
}

/// API JSON as a value.
pub fn from_api(j: &J) -> Value {
    Value::from_json(j)
}

/// A string attribute.
pub fn s(m: &Map, key: &str) -> Option<String> {
    m.get(key).and_then(Value::to_interpolated).filter(|x| !x.is_empty())
}

/// A required string attribute.
pub fn req(m: &Map, key: &str) -> Result<String, ProviderError> {
    s(m, key).ok_or_else(|| ProviderError::new(ErrorKind::Invalid, format!("`{key}` is required")))
}

/// A list of strings (absent → empty).
pub fn strings(m: &Map, key: &str) -> Vec<String> {
    m.get(key)
        .and_then(Value::as_list)
        .map(|l| l.iter().filter_map(Value::to_interpolated).collect())
        .unwrap_or_default()
}

/// A JSON array of strings as a sorted value list (these lists are sets).
pub fn string_set(j: &J) -> Value {
    let mut v: Vec<String> =
        j.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default();
    v.sort();
    v.dedup();
    Value::List(v.into_iter().map(Value::String).collect())
}

/// Sorts and dedups a list attribute in place (set semantics), if present.
pub fn normalize_set(m: &mut Map, key: &str) {
    if let Some(Value::List(l)) = m.get_mut(key) {
        if l.iter().any(Value::has_unknown) {
            return;
        }
        l.sort_by_key(|a| a.to_string());
        l.dedup_by(|a, b| a.same_as(b));
    }
}

/// The `id` attribute of an object.
pub fn id_of(m: &Map) -> String {
    s(m, "id").unwrap_or_default()
}

/// A network reference in the short form meshform keeps: `NAME` for the project's own network,
/// `projects/P/global/networks/NAME` otherwise. Accepts full URLs on any host.
pub fn short_network(raw: &str, project: &str) -> String {
    short_link(raw, project, "global/networks")
}

/// Like [`short_network`] for any `projects/P/<kind>/NAME` link.
pub fn short_link(raw: &str, project: &str, kind: &str) -> String {
    let tail = match raw.find("projects/") {
        Some(i) => &raw[i..],
        None => return raw.rsplit('/').next().unwrap_or(raw).to_string(),
    };
    let own = format!("projects/{project}/{kind}/");
    match tail.strip_prefix(&own) {
        Some(name) if !name.contains('/') => name.to_string(),
        _ => tail.to_string(),
    }
}

/// The relative path of a network reference.
pub fn network_path(short: &str, project: &str) -> String {
    if short.starts_with("projects/") {
        short.to_string()
    } else {
        format!("projects/{project}/global/networks/{short}")
    }
}

/// Attributes present in `desired` that differ from `live` (for adoption checks).
pub fn differing(desired: &Map, live: &Map, keys: &[&str]) -> Vec<String> {
    keys.iter()
        .filter(|k| desired.get(**k).is_some_and(|d| !matches!(d, Value::Null | Value::Unknown)))
        .filter(|k| !meshform_engine::plan::same(desired.get(**k), live.get(**k)))
        .map(|k| k.to_string())
        .collect()
}
