//! Secret Manager v1, under `/secretmanager/v1`: secrets create (`?secretId=`), get, list and
//! delete; `SECRET:addVersion`; versions get, list, `VERSION:access`, `:disable`, `:enable` and
//! `:destroy`. Errors are google.rpc.Status bodies.
//!
//! What gcloud 528 sends (captured against a logging server, then judged by
//! `tests/gcloud.rs`), with `CLOUDSDK_API_ENDPOINT_OVERRIDES_SECRETMANAGER=BASE/secretmanager/`
//! (gcloud appends `v1/`); every request also has `?alt=json`:
//!
//! - `secrets create S`: `POST …/projects/P/secrets?secretId=S`, body
//!   `{"annotations": {}, "replication": {"automatic": {}}}`; with `--data-file` it then adds a
//!   version as `versions add` does.
//! - `secrets versions add S --data-file F`: `POST …/secrets/S:addVersion`, body
//!   `{"payload": {"data": "<URL-safe base64>", "dataCrc32c": "<decimal, as a string>"}}`;
//!   gcloud fails the command unless the reply says `clientSpecifiedPayloadChecksum: true`.
//! - `secrets versions access latest --secret S`: `GET …/secrets/S/versions/latest:access`;
//!   gcloud checks `payload.dataCrc32c` when present and prints the data with no terminator.
//! - `secrets describe S`: `GET …/secrets/S`; `secrets list`: `GET …/secrets?pageSize=100`;
//!   `secrets versions list S`: `GET …/secrets/S/versions?pageSize=0` (0: the server's page
//!   size). A 404 is printed `ERROR: (gcloud.secrets.describe) NOT_FOUND: <message>`, exit 1.
//!
//! As Google's: names carry the project number (`projects/NUMBER/secrets/S/versions/N`); `latest`
//! is the most recently created version whatever its state (so accessing it when it is disabled
//! or destroyed is FAILED_PRECONDITION, even if an older version is enabled — what clients report
//! of the real service); versions are listed newest first; `data` is accepted in either base64
//! alphabet, padded or not, and answered in the standard one. Not modelled: etags as
//! preconditions (accepted, not checked), version aliases, regional secrets, IAM, updates.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::errors::{ApiError, ApiResult, Style};
use crate::state::Shared;
use crate::store::{SecretEntry, Store};
use crate::world::{SECRET_PAYLOAD_MAX, valid_secret_id};

type S = State<Arc<Shared>>;
type Q = Query<HashMap<String, String>>;
const R: Style = Style::Rpc;

/// The Secret Manager routes, under `/secretmanager/v1`. A custom method (`NAME:verb`) arrives in
/// the last segment with its resource's id.
pub fn routes() -> Router<Arc<Shared>> {
    let p = "/secretmanager/v1/projects/{project}/secrets";
    Router::new()
        .route(p, get(list_secrets).post(create_secret))
        .route(&format!("{p}/{{secret}}"), get(get_secret).delete(delete_secret).post(secret_method))
        .route(&format!("{p}/{{secret}}/versions"), get(list_versions))
        .route(&format!("{p}/{{secret}}/versions/{{version}}"), get(get_version).post(version_method))
}

fn project<'a>(s: &'a Shared, project: &str) -> ApiResult<std::sync::MutexGuard<'a, Store>> {
    let st = s.store.lock().unwrap_or_else(|e| e.into_inner());
    if project != st.project && project != st.project_number {
        return Err(ApiError::forbidden(R, format!("Permission denied on resource project {project}.")));
    }
    Ok(st)
}

/// A segment split at its custom method: `s1:addVersion` → (`s1`, `Some("addVersion")`).
fn split_method(segment: &str) -> (&str, Option<&str>) {
    match segment.split_once(':') {
        Some((id, verb)) => (id, Some(verb)),
        None => (segment, None),
    }
}

/// What Google answers for a method it does not have.
fn no_method(method: &Method, p: &str, rest: &str) -> ApiError {
    ApiError::not_found(R, format!("Method not found: {method} /secretmanager/v1/projects/{p}/secrets/{rest}"))
}

fn secret_not_found(st: &Store, id: &str) -> ApiError {
    ApiError::not_found(R, format!("Secret [{}] not found.", st.secret_name(id)))
}

fn secret_of<'a>(st: &'a Store, id: &str) -> ApiResult<&'a SecretEntry> {
    st.secrets.get(id).ok_or_else(|| secret_not_found(st, id))
}

/// A request body as JSON (an empty body is `{}`), refused in Google's words when it is not.
fn json_body(body: &[u8]) -> ApiResult<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if v.is_object() => Ok(v),
        _ => Err(ApiError::invalid(R, "Invalid JSON payload received.")),
    }
}

/// One page of `items` under `key`: `pageSize` (absent or 0: 25; at most 25000), `pageToken`
/// (an offset, as this simulator writes them), `totalSize`, `nextPageToken`; empty fields left
/// out, as proto3 JSON leaves them out.
fn page(items: Vec<Value>, key: &str, q: &HashMap<String, String>) -> ApiResult<Value> {
    let size = match q.get("pageSize").map(|v| v.parse::<i64>()) {
        None | Some(Ok(0)) => 25,
        Some(Ok(n)) if n > 0 => (n as usize).min(25_000),
        Some(_) => return Err(ApiError::invalid(R, "page_size must be a non-negative integer.")),
    };
    let start: usize = match q.get("pageToken").filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => t
            .strip_prefix("next-")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| ApiError::invalid(R, format!("Invalid page token {t:?}.")))?,
    };
    let total = items.len();
    let shown: Vec<Value> = items.into_iter().skip(start).take(size).collect();
    let mut out = json!({});
    if !shown.is_empty() {
        out[key] = Value::Array(shown);
    }
    if total > 0 {
        out["totalSize"] = json!(total);
    }
    if start.saturating_add(size) < total {
        out["nextPageToken"] = json!(format!("next-{}", start + size));
    }
    Ok(out)
}

// ---- secrets ----

async fn list_secrets(State(s): S, Path(p): Path<String>, Query(q): Q) -> ApiResult<Json<Value>> {
    let st = project(&s, &p)?;
    let items = st.secrets.values().map(|e| e.secret.clone()).collect();
    page(items, "secrets", &q).map(Json)
}

/// `secrets.create`: `?secretId=` (1-255 of letters, digits, `-`, `_`) and a body with a
/// replication policy (`automatic` or `userManaged`).
async fn create_secret(State(s): S, Path(p): Path<String>, Query(q): Q, body: Bytes) -> ApiResult<Json<Value>> {
    let mut st = project(&s, &p)?;
    let id = q
        .get("secretId")
        .filter(|i| !i.is_empty())
        .ok_or_else(|| ApiError::invalid(R, "secret_id must be specified."))?;
    if !valid_secret_id(id) {
        return Err(ApiError::invalid(
            R,
            format!("Invalid secret_id \"{id}\": it must be 1 to 255 of the characters [a-zA-Z0-9_-]."),
        ));
    }
    let body = json_body(&body)?;
    let replication = &body["replication"];
    if !(replication["automatic"].is_object() || replication["userManaged"].is_object()) {
        return Err(ApiError::invalid(R, "Secret.replication must be specified: automatic or userManaged."));
    }
    if st.secrets.contains_key(id.as_str()) {
        return Err(ApiError::already_exists(R, format!("Secret [{}] already exists.", st.secret_name(id))));
    }
    Ok(Json(st.insert_secret(id, &body)))
}

async fn get_secret(State(s): S, method: Method, Path((p, segment)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    let st = project(&s, &p)?;
    match split_method(&segment) {
        (id, None) => secret_of(&st, id).map(|e| Json(e.secret.clone())),
        (_, Some(_)) => Err(no_method(&method, &p, &segment)),
    }
}

/// `secrets.delete`: the secret and every version; answers `{}`.
async fn delete_secret(
    State(s): S,
    method: Method,
    Path((p, segment)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let mut st = project(&s, &p)?;
    let (id, None) = split_method(&segment) else { return Err(no_method(&method, &p, &segment)) };
    match st.secrets.remove(id) {
        Some(_) => Ok(Json(json!({}))),
        None => Err(secret_not_found(&st, id)),
    }
}

/// `POST …/secrets/S:addVersion` (the one custom method of a secret served).
async fn secret_method(
    State(s): S,
    method: Method,
    Path((p, segment)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let mut st = project(&s, &p)?;
    let (id, Some("addVersion")) = split_method(&segment) else { return Err(no_method(&method, &p, &segment)) };
    secret_of(&st, id)?;
    let (data, checksum) = payload(&json_body(&body)?)?;
    st.add_secret_version(id, data, checksum).map(Json).ok_or_else(|| secret_not_found(&st, id))
}

/// The bytes of an `addVersion` body's `payload.data` (either base64 alphabet, padding optional)
/// and whether the client gave their CRC32C (`payload.dataCrc32c`, an int64: a decimal string
/// or a number), which must match. No error message quotes the data.
fn payload(body: &Value) -> ApiResult<(Vec<u8>, bool)> {
    let Some(payload) = body.get("payload").filter(|p| p.is_object()) else {
        return Err(ApiError::invalid(R, "Secret Payload must be specified."));
    };
    let text = match &payload["data"] {
        Value::Null => "",
        Value::String(t) => t.as_str(),
        _ => return Err(ApiError::invalid(R, "Invalid value at 'payload.data' (TYPE_BYTES), not a string.")),
    };
    let data = decode_bytes(text)
        .ok_or_else(|| ApiError::invalid(R, "Invalid value at 'payload.data' (TYPE_BYTES), Base64 decoding failed."))?;
    if data.len() > SECRET_PAYLOAD_MAX {
        return Err(ApiError::invalid(R, "Secret Payload cannot be larger than 64KiB."));
    }
    let given = match &payload["dataCrc32c"] {
        Value::Null => None,
        Value::String(t) => Some(t.parse::<i64>().ok()),
        Value::Number(n) => Some(n.as_i64()),
        _ => Some(None),
    };
    match given {
        None => Ok((data, false)),
        Some(None) => Err(ApiError::invalid(R, "Invalid value at 'payload.data_crc32c' (TYPE_INT64).")),
        Some(Some(crc)) if crc == i64::from(crate::hashes::crc32c(&data)) => Ok((data, true)),
        Some(Some(_)) => Err(ApiError::invalid(
            R,
            "The provided data_crc32c does not match the CRC32C of the payload data: the data was corrupted in transit.",
        )),
    }
}

/// Base64 in the standard or the URL-safe alphabet, padded or not (what protobuf JSON accepts).
fn decode_bytes(text: &str) -> Option<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let engine = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    engine.decode(text.replace('+', "-").replace('/', "_")).ok()
}

// ---- versions ----

async fn list_versions(State(s): S, Path((p, id)): Path<(String, String)>, Query(q): Q) -> ApiResult<Json<Value>> {
    let st = project(&s, &p)?;
    let entry = secret_of(&st, &id)?;
    let items = entry.versions.iter().rev().map(|v| v.version.clone()).collect();
    page(items, "versions", &q).map(Json)
}

/// The index of version `v` of secret `id` (`latest`: the most recently created one, whatever
/// its state), or Google's NOT_FOUND.
fn resolve(st: &Store, id: &str, v: &str) -> ApiResult<usize> {
    let versions = st.secrets.get(id).map_or(0, |e| e.versions.len());
    let index = match v {
        "latest" => versions.checked_sub(1),
        n => n.parse::<usize>().ok().filter(|n| (1..=versions).contains(n)).map(|n| n - 1),
    };
    index.ok_or_else(|| match (v, st.secrets.contains_key(id)) {
        ("latest", _) | (_, false) => {
            ApiError::not_found(R, format!("Secret [{}] not found or has no versions.", st.secret_name(id)))
        }
        _ => ApiError::not_found(R, format!("Secret Version [{}/versions/{v}] not found.", st.secret_name(id))),
    })
}

/// `GET …/versions/V` (the version) and `GET …/versions/V:access` (its payload, when enabled).
async fn get_version(
    State(s): S,
    method: Method,
    Path((p, id, segment)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let st = project(&s, &p)?;
    let (v, verb) = split_method(&segment);
    if !matches!(verb, None | Some("access")) {
        return Err(no_method(&method, &p, &format!("{id}/versions/{segment}")));
    }
    let index = resolve(&st, &id, v)?;
    let Some(entry) = st.secrets.get(&id).and_then(|e| e.versions.get(index)) else {
        return Err(secret_not_found(&st, &id));
    };
    if verb.is_none() {
        return Ok(Json(entry.version.clone()));
    }
    let name = entry.version["name"].as_str().unwrap_or_default();
    match (&entry.data, entry.version["state"].as_str()) {
        (Some(data), Some("ENABLED")) => Ok(Json(json!({
            "name": name,
            "payload": {
                "data": base64::engine::general_purpose::STANDARD.encode(data),
                "dataCrc32c": crate::hashes::crc32c(data).to_string(),
            },
        }))),
        (_, state) => Err(not_in_state(name, state)),
    }
}

fn not_in_state(name: &str, state: Option<&str>) -> ApiError {
    ApiError::precondition(R, format!("Secret Version [{name}] is in {} state.", state.unwrap_or("DESTROYED")))
}

/// `POST …/versions/V:disable`, `:enable`, `:destroy` (a body with an `etag` is accepted, not
/// checked); a destroyed version changes no more.
async fn version_method(
    State(s): S,
    method: Method,
    Path((p, id, segment)): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let mut st = project(&s, &p)?;
    let (v, verb) = split_method(&segment);
    let state = match verb {
        Some("disable") => "DISABLED",
        Some("enable") => "ENABLED",
        Some("destroy") => "DESTROYED",
        _ => return Err(no_method(&method, &p, &format!("{id}/versions/{segment}"))),
    };
    json_body(&body)?;
    let index = resolve(&st, &id, v)?;
    let version = st.secrets.get(&id).and_then(|e| e.versions.get(index)).map(|e| e.version.clone());
    let Some(version) = version else { return Err(secret_not_found(&st, &id)) };
    if version["state"] == "DESTROYED" {
        return Err(not_in_state(version["name"].as_str().unwrap_or_default(), Some("DESTROYED")));
    }
    st.set_version_state(&id, index, state).map(Json).ok_or_else(|| secret_not_found(&st, &id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_decode_in_both_alphabets_and_checksums_are_checked() {
        let data = [0xfb_u8, 0xff, 0xbf, b'\n'];
        let crc = crate::hashes::crc32c(&data).to_string();
        for text in ["+/+/Cg==", "-_-_Cg==", "-_-_Cg"] {
            let body = json!({"payload": {"data": text, "dataCrc32c": crc}});
            assert_eq!(payload(&body).unwrap(), (data.to_vec(), true), "{text}");
        }
        let unchecked = payload(&json!({"payload": {"data": "aGk="}})).unwrap();
        assert_eq!(unchecked, (b"hi".to_vec(), false));
        let number = json!({"payload": {"data": "aGk=", "dataCrc32c": crate::hashes::crc32c(b"hi")}});
        assert!(payload(&number).unwrap().1);
        for bad in [
            json!({}),
            json!({"payload": {"data": "not base64!"}}),
            json!({"payload": {"data": "aGk=", "dataCrc32c": "12"}}),
            json!({"payload": {"data": "aGk=", "dataCrc32c": "twelve"}}),
            json!({"payload": {"data": 7}}),
        ] {
            let e = payload(&bad).unwrap_err();
            assert_eq!((e.code, e.status), (400, "INVALID_ARGUMENT"), "{bad}");
        }
        let big = base64::engine::general_purpose::STANDARD.encode(vec![0u8; SECRET_PAYLOAD_MAX + 1]);
        assert_eq!(payload(&json!({"payload": {"data": big}})).unwrap_err().code, 400);
    }

    #[test]
    fn worlds_seed_secrets_and_refuse_bad_ones() {
        let world = crate::world::World::from_toml(
            "[[secrets]]\nname = \"a\"\ndata = \"x\"\n\n[[secrets]]\nname = \"b\"\nversions = [\"1\", \"2\"]\n",
        )
        .unwrap();
        let st = Store::seed(&world, Vec::new(), 0);
        let b = &st.secrets["b"];
        assert_eq!(b.secret["name"], "projects/469301857210/secrets/b");
        assert_eq!(b.versions.iter().map(|v| v.data.clone().unwrap()).collect::<Vec<_>>(), [b"1", b"2"]);
        assert_eq!(b.versions[1].version["name"], "projects/469301857210/secrets/b/versions/2");
        assert_eq!(resolve(&st, "b", "latest").unwrap(), 1);
        assert_eq!(resolve(&st, "a", "1").unwrap(), 0);
        assert_eq!(resolve(&st, "a", "2").unwrap_err().code, 404);
        assert!(resolve(&st, "nope", "latest").unwrap_err().message.contains("not found or has no versions"));
        for bad in [
            "[[secrets]]\nname = \"a\"\n\n[[secrets]]\nname = \"a\"\n",
            "[[secrets]]\nname = \"a/b\"\n",
            "[[secrets]]\nname = \"a\"\ndata = \"x\"\nversions = [\"y\"]\n",
            "[[secrets]]\nname = \"a\"\nvalue = \"x\"\n",
        ] {
            assert!(crate::world::World::from_toml(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pages_follow_tokens_and_leave_empty_fields_out() {
        let items: Vec<Value> = (0..30).map(|i| json!(i)).collect();
        let q = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let first = page(items.clone(), "versions", &q(&[("pageSize", "0")])).unwrap();
        assert_eq!(first["versions"].as_array().unwrap().len(), 25);
        assert_eq!(first["totalSize"], 30);
        let token = first["nextPageToken"].as_str().unwrap();
        let rest = page(items, "versions", &q(&[("pageToken", token)])).unwrap();
        assert_eq!(rest["versions"].as_array().unwrap().len(), 5);
        assert!(rest.get("nextPageToken").is_none());
        assert_eq!(page(Vec::new(), "secrets", &HashMap::new()).unwrap(), json!({}));
        assert!(page(Vec::new(), "secrets", &q(&[("pageSize", "-1")])).is_err());
    }
}
