//! Cloud Storage's JSON API (v1), as gcloud 528 and meshform's GCS state backend call it:
//! buckets.get; objects.insert by media, multipart and resumable upload (on both the
//! `/upload/storage/v1/…?uploadType=resumable` and the `/resumable/upload/storage/v1/…` path)
//! and metadata only; objects.get (metadata, or the bytes with `alt=media` or on the
//! `/download/…` mediaLink path, with `Range`); objects.patch; objects.delete; objects.list. The
//! rules (preconditions, generations, versioning, pages) are `buckets`'; this module is the
//! HTTP: paths (an object name is split from the raw path at `/o/`, then percent-decoded),
//! queries, headers, the lenient multipart parser, and replies.

use std::collections::HashMap;
use std::sync::{Arc, MutexGuard};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::buckets::{Chunk, Conditions, ListQuery, MAX_RESULTS, NewObject, UploadState, Version, metadata_of};
use crate::errors::{ApiError, ApiResult, Style};
use crate::state::Shared;
use crate::store::Store;
use crate::support::{now_rfc3339_millis, percent_decode};

type S = State<Arc<Shared>>;
type Q = Query<HashMap<String, String>>;
const ST: Style = Style::Storage;
/// The largest request body the storage routes take (an upload in one request, or one chunk).
const BODY_LIMIT: usize = 256 << 20;

/// The Cloud Storage routes (`/storage/v1`, `/upload/storage/v1`, `/resumable/upload/storage/v1`
/// and `/download/storage/v1`).
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/storage/v1/b/{bucket}", get(get_bucket))
        .route("/storage/v1/b/{bucket}/o", get(list_objects).post(insert_metadata_only))
        .route("/storage/v1/b/{bucket}/o/{*object}", get(get_object).patch(patch_object).delete(delete_object))
        .route("/download/storage/v1/b/{bucket}/o/{*object}", get(get_object))
        .route("/upload/storage/v1/b/{bucket}/o", post(upload).put(upload_chunk).delete(cancel_upload))
        .route("/resumable/upload/storage/v1/b/{bucket}/o", post(upload).put(upload_chunk).delete(cancel_upload))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}

fn store(s: &Shared) -> MutexGuard<'_, Store> {
    s.store.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where links point: the host the request came to (gcloud keeps only a link's path and query).
fn base(h: &HeaderMap) -> String {
    match h.get("host").and_then(|v| v.to_str().ok()) {
        Some(host) => format!("http://{host}"),
        None => "https://storage.googleapis.com".into(),
    }
}

/// The bucket and object name of `…/b/{bucket}/o/{object}`: the raw path split at `/o/`, the
/// name percent-decoded after (so `%2F` is a `/` of the name, and a name may hold `/o/`).
fn object_of(uri: &Uri) -> ApiResult<(String, String)> {
    let raw = uri.path();
    let after_b = raw.split_once("/b/").map(|(_, r)| r).unwrap_or("");
    let (bucket, name) = after_b.split_once("/o/").ok_or_else(|| ApiError::not_found(ST, "Not Found"))?;
    let name = percent_decode(name).ok_or_else(|| ApiError::invalid(ST, "The object name is not valid UTF-8."))?;
    Ok((bucket.to_string(), name))
}

fn truthy(q: &HashMap<String, String>, k: &str) -> bool {
    q.get(k).is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

fn generation(q: &HashMap<String, String>) -> ApiResult<Option<u64>> {
    q.get("generation")
        .filter(|g| !g.is_empty())
        .map(|g| g.parse().map_err(|_| ApiError::invalid(ST, format!("Invalid argument for generation: '{g}'."))))
        .transpose()
}

async fn get_bucket(State(s): S, Path(bucket): Path<String>, h: HeaderMap) -> ApiResult<Json<Value>> {
    let st = store(&s);
    Ok(Json(st.storage.bucket(&bucket)?.resource(&st.project_number, &base(&h))))
}

fn list_query(q: &HashMap<String, String>) -> ApiResult<ListQuery> {
    let max_results = match q.get("maxResults") {
        None => MAX_RESULTS,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n > 0 => n.min(MAX_RESULTS),
            _ => return Err(ApiError::invalid(ST, format!("Invalid argument for maxResults: '{v}'."))),
        },
    };
    Ok(ListQuery {
        prefix: q.get("prefix").cloned().unwrap_or_default(),
        delimiter: q.get("delimiter").cloned(),
        max_results,
        page_token: q.get("pageToken").cloned(),
        start_offset: q.get("startOffset").cloned(),
        end_offset: q.get("endOffset").cloned(),
        versions: truthy(q, "versions"),
        include_trailing_delimiter: truthy(q, "includeTrailingDelimiter"),
    })
}

async fn list_objects(State(s): S, Path(bucket): Path<String>, Query(q): Q, h: HeaderMap) -> ApiResult<Json<Value>> {
    let lq = list_query(&q)?;
    let page = store(&s).storage.list(&bucket, &lq)?;
    let base = base(&h);
    let mut out = json!({"kind": "storage#objects"});
    if !page.items.is_empty() {
        out["items"] = page.items.iter().map(|v| v.resource(&bucket, &base)).collect();
    }
    if !page.prefixes.is_empty() {
        out["prefixes"] = json!(page.prefixes);
    }
    if let Some(t) = page.next_page_token {
        out["nextPageToken"] = json!(t);
    }
    Ok(Json(out))
}

async fn get_object(State(s): S, uri: Uri, Query(q): Q, h: HeaderMap) -> ApiResult<Response> {
    let (bucket, name) = object_of(&uri)?;
    let cond = Conditions::from_query(&q)?;
    let v = store(&s).storage.get(&bucket, &name, generation(&q)?, &cond)?;
    if uri.path().starts_with("/download/") || q.get("alt").is_some_and(|a| a == "media") {
        return Ok(media(&v, &h));
    }
    Ok(Json(v.resource(&bucket, &base(&h))).into_response())
}

async fn patch_object(State(s): S, uri: Uri, Query(q): Q, h: HeaderMap, body: Bytes) -> ApiResult<Json<Value>> {
    let (bucket, name) = object_of(&uri)?;
    let cond = Conditions::from_query(&q)?;
    let patch: Value = serde_json::from_slice(&body).map_err(|e| ApiError::invalid(ST, format!("Parse Error: {e}")))?;
    let v = store(&s).storage.patch((&bucket, &name), generation(&q)?, &cond, &patch, &now_rfc3339_millis())?;
    Ok(Json(v.resource(&bucket, &base(&h))))
}

async fn delete_object(State(s): S, uri: Uri, Query(q): Q) -> ApiResult<StatusCode> {
    let (bucket, name) = object_of(&uri)?;
    let cond = Conditions::from_query(&q)?;
    store(&s).storage.delete((&bucket, &name), generation(&q)?, &cond, &now_rfc3339_millis())?;
    Ok(StatusCode::NO_CONTENT)
}

/// `Range: bytes=a-b` (or `a-`, or `-n`) against `size`: `None` for no (or an unusable) range,
/// `Some(None)` when it is past the end.
fn byte_range(h: &HeaderMap, size: u64) -> Option<Option<(u64, u64)>> {
    let spec = h.get("range")?.to_str().ok()?.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || size == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (first, last) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (size.saturating_sub(n), size - 1)
        }
        (a, "") => (a.parse().ok()?, size - 1),
        (a, b) => (a.parse().ok()?, b.parse::<u64>().ok()?.min(size - 1)),
    };
    if first >= size {
        return Some(None);
    }
    (first <= last).then_some(Some((first, last)))
}

fn header(r: &mut Response, k: &'static str, v: &str) {
    if let Ok(v) = HeaderValue::from_str(v) {
        r.headers_mut().insert(k, v);
    }
}

/// The bytes of a generation with the headers Cloud Storage sends, whole or the `Range` asked.
fn media(v: &Version, h: &HeaderMap) -> Response {
    let size = v.data.len() as u64;
    let mut r = match byte_range(h, size) {
        None => (StatusCode::OK, v.data.clone()).into_response(),
        Some(None) => {
            let mut r = ApiError::range_not_satisfiable(ST).into_response();
            header(&mut r, "content-range", &format!("bytes */{size}"));
            return r;
        }
        Some(Some((a, b))) => {
            let mut r = (StatusCode::PARTIAL_CONTENT, v.data.slice(a as usize..=b as usize)).into_response();
            header(&mut r, "content-range", &format!("bytes {a}-{b}/{size}"));
            r
        }
    };
    header(&mut r, "content-type", &v.content_type);
    header(&mut r, "etag", &v.etag());
    header(&mut r, "x-goog-generation", &v.generation.to_string());
    header(&mut r, "x-goog-metageneration", &v.metageneration.to_string());
    header(&mut r, "x-goog-hash", &format!("crc32c={},md5={}", v.crc32c, v.md5));
    header(&mut r, "x-goog-stored-content-length", &size.to_string());
    header(&mut r, "x-goog-stored-content-encoding", "identity");
    header(&mut r, "x-goog-storage-class", "STANDARD");
    header(&mut r, "accept-ranges", "bytes");
    r
}

/// What an insert's metadata (a JSON object, possibly empty) and query ask for.
fn new_object(meta: &Value, q: &HashMap<String, String>) -> NewObject {
    let text = |k: &str| meta.get(k).and_then(Value::as_str).map(String::from);
    NewObject {
        name: text("name").or_else(|| q.get("name").cloned()).unwrap_or_default(),
        content_type: text("contentType"),
        metadata: metadata_of(&meta["metadata"]),
        kms_key_name: text("kmsKeyName").or_else(|| q.get("kmsKeyName").cloned()),
        md5: text("md5Hash"),
        crc32c: text("crc32c"),
    }
}

fn parse_json(body: &[u8]) -> ApiResult<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(ST, format!("Parse Error: {e}")))
}

/// Writes an object (any upload kind) and answers with its resource.
fn insert(
    s: &Shared,
    bucket: &str,
    obj: NewObject,
    data: Bytes,
    q: &HashMap<String, String>,
    h: &HeaderMap,
) -> ApiResult<Json<Value>> {
    let cond = Conditions::from_query(q)?;
    let v = store(s).storage.insert(bucket, &obj, data, &cond, &now_rfc3339_millis())?;
    Ok(Json(v.resource(bucket, &base(h))))
}

async fn insert_metadata_only(
    State(s): S,
    Path(bucket): Path<String>,
    Query(q): Q,
    h: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let obj = new_object(&parse_json(&body)?, &q);
    insert(&s, &bucket, obj, Bytes::new(), &q, &h)
}

/// `POST` of an upload: `uploadType` media, multipart or resumable (the start of a session).
async fn upload(
    State(s): S,
    Path(bucket): Path<String>,
    uri: Uri,
    Query(q): Q,
    h: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let ct = h.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    let kind = q.get("uploadType").map(String::as_str);
    let kind = kind.or(uri.path().starts_with("/resumable/").then_some("resumable"));
    match kind {
        Some("media") => {
            let mut obj = new_object(&json!({}), &q);
            obj.content_type = (!ct.is_empty()).then(|| ct.to_string());
            Ok(insert(&s, &bucket, obj, body, &q, &h)?.into_response())
        }
        Some("multipart") => {
            let (meta, media_type, data) = multipart(ct, &body)?;
            let mut obj = new_object(&meta, &q);
            obj.content_type = obj.content_type.or(media_type);
            Ok(insert(&s, &bucket, obj, data, &q, &h)?.into_response())
        }
        Some("resumable") => start_resumable(&s, &bucket, &uri, &q, &h, &body),
        _ => Err(ApiError::invalid(
            ST,
            "Upload requests must include an uploadType URL parameter and a URL-encoded object name.",
        )),
    }
}

/// Starts a resumable session: 200 with the session URI (`upload_id=`) in `Location`.
fn start_resumable(
    s: &Shared,
    bucket: &str,
    uri: &Uri,
    q: &HashMap<String, String>,
    h: &HeaderMap,
    body: &[u8],
) -> ApiResult<Response> {
    let mut obj = new_object(&parse_json(body)?, q);
    if obj.content_type.is_none() {
        obj.content_type = h.get("x-upload-content-type").and_then(|v| v.to_str().ok()).map(String::from);
    }
    let cond = Conditions::from_query(q)?;
    let id = store(s).storage.start_upload(bucket, obj, cond)?;
    let location = format!("{}{}?uploadType=resumable&upload_id={id}", base(h), uri.path());
    let mut r = StatusCode::OK.into_response();
    header(&mut r, "location", &location);
    header(&mut r, "x-guploader-uploadid", &id);
    Ok(r)
}

/// A session `PUT`'s `Content-Range` (none: the whole object in this request).
fn chunk_of(h: &HeaderMap, len: usize) -> ApiResult<Chunk> {
    let Some(cr) = h.get("content-range").and_then(|v| v.to_str().ok()) else {
        return Ok(Chunk::Data { first: 0, total: Some(len as u64) });
    };
    let bad = || ApiError::invalid(ST, format!("Invalid Content-Range: {cr}"));
    let spec = cr.trim().strip_prefix("bytes").map(str::trim).ok_or_else(bad)?;
    let (range, total) = spec.split_once('/').ok_or_else(bad)?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse::<u64>().map_err(|_| bad())?),
    };
    if range.trim() == "*" {
        return Ok(Chunk::Status { total });
    }
    let (a, b) = range.trim().split_once('-').ok_or_else(bad)?;
    let (first, last): (u64, u64) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
    if last < first || last - first + 1 != len as u64 {
        return Err(ApiError::invalid(
            ST,
            format!("Invalid request: Content-Range {cr} does not match the {len} bytes sent."),
        ));
    }
    Ok(Chunk::Data { first, total })
}

fn upload_id(q: &HashMap<String, String>) -> ApiResult<&str> {
    q.get("upload_id").map(String::as_str).ok_or_else(|| ApiError::invalid(ST, "Missing upload_id."))
}

/// A session `PUT`: a chunk or a status query; 308 (with `Range` once bytes are persisted) until
/// the upload is complete, then 200 with the object (also for any `PUT` after).
async fn upload_chunk(
    State(s): S,
    Path(bucket): Path<String>,
    Query(q): Q,
    h: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let id = upload_id(&q)?;
    let chunk = chunk_of(&h, body.len())?;
    let state = store(&s).storage.put_chunk(id, &chunk, &body, &now_rfc3339_millis())?;
    match state {
        UploadState::Done(v) => Ok(Json(v.resource(&bucket, &base(&h))).into_response()),
        UploadState::Partial(n) => {
            let mut r = StatusCode::PERMANENT_REDIRECT.into_response();
            if n > 0 {
                header(&mut r, "range", &format!("bytes=0-{}", n - 1));
            }
            header(&mut r, "x-guploader-uploadid", id);
            Ok(r)
        }
    }
}

/// `DELETE` of a session: cancels it (499, as Cloud Storage answers).
async fn cancel_upload(State(s): S, Query(q): Q) -> ApiResult<Response> {
    store(&s).storage.cancel_upload(upload_id(&q)?)?;
    Ok(StatusCode::from_u16(499).unwrap_or(StatusCode::NO_CONTENT).into_response())
}

/// The `boundary` parameter of a Content-Type, bare or in single or double quotes.
fn boundary(ct: &str) -> Option<String> {
    ct.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("boundary").then(|| v.trim().trim_matches(['\'', '"']).to_string())
    })
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|i| i + from)
}

/// The parts of a multipart body between `--boundary` lines, LF or CRLF.
fn parts<'a>(body: &'a [u8], boundary: &str) -> Vec<&'a [u8]> {
    let delim = format!("--{boundary}");
    let mut out = Vec::new();
    let Some(mut pos) = find(body, delim.as_bytes(), 0) else { return out };
    loop {
        let mut start = pos + delim.len();
        if body[start..].starts_with(b"--") {
            break;
        }
        start += if body[start..].starts_with(b"\r\n") { 2 } else { usize::from(body[start..].starts_with(b"\n")) };
        let Some(next) = find(body, delim.as_bytes(), start) else { break };
        let mut end = next;
        if end > start && body[end - 1] == b'\n' {
            end -= 1;
            if end > start && body[end - 1] == b'\r' {
                end -= 1;
            }
        }
        out.push(&body[start..end]);
        pos = next;
    }
    out
}

/// A part's headers (names lowercased) and content.
fn part_of(part: &[u8]) -> (HashMap<String, String>, &[u8]) {
    let (head, content) = match (find(part, b"\r\n\r\n", 0), find(part, b"\n\n", 0)) {
        _ if part.starts_with(b"\r\n") => (&part[..0], &part[2..]),
        _ if part.starts_with(b"\n") => (&part[..0], &part[1..]),
        (Some(c), Some(l)) if c < l => (&part[..c], &part[c + 4..]),
        (_, Some(l)) => (&part[..l], &part[l + 2..]),
        (Some(c), None) => (&part[..c], &part[c + 4..]),
        (None, None) => (part, &part[part.len()..]),
    };
    let headers = String::from_utf8_lossy(head)
        .lines()
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())))
        .collect();
    (headers, content)
}

/// A `multipart/related` upload: its metadata (part 1, JSON), the media's Content-Type and the
/// media (part 2). Lenient as gcloud needs: a quoted boundary, LF line endings.
fn multipart(ct: &str, body: &[u8]) -> ApiResult<(Value, Option<String>, Bytes)> {
    let b = boundary(ct).filter(|b| !b.is_empty()).ok_or_else(|| {
        ApiError::invalid(ST, "Multipart uploads need a multipart/related Content-Type with a boundary.")
    })?;
    let ps = parts(body, &b);
    let [meta, media, ..] = ps.as_slice() else {
        return Err(ApiError::invalid(ST, "A multipart upload needs a metadata part and a media part."));
    };
    let (_, meta) = part_of(meta);
    let (media_headers, data) = part_of(media);
    Ok((parse_json(meta)?, media_headers.get("content-type").cloned(), Bytes::copy_from_slice(data)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_as_gcloud_and_as_rfc_2046_send_it() {
        let lf = "--===============86==\nContent-Type: application/json\nMIME-Version: 1.0\n\n{\"name\": \"a/b.json\", \"contentType\": \"application/json\"}\n--===============86==\nContent-Type: application/json\nMIME-Version: 1.0\nContent-Transfer-Encoding: binary\n\n{\"x\":1}\n\n--===============86==--";
        let (meta, ct, data) = multipart("multipart/related; boundary='===============86=='", lf.as_bytes()).unwrap();
        assert_eq!(meta["name"], "a/b.json");
        assert_eq!(ct.as_deref(), Some("application/json"));
        assert_eq!(&data[..], b"{\"x\":1}\n");
        let crlf = "--xyz\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{\"name\":\"n\"}\r\n--xyz\r\nContent-Type: text/plain\r\n\r\nbytes\r\n--xyz--\r\n";
        for ct in ["multipart/related; boundary=xyz", "multipart/related; boundary=\"xyz\""] {
            let (meta, media_ct, data) = multipart(ct, crlf.as_bytes()).unwrap();
            assert_eq!(
                (meta["name"].as_str(), media_ct.as_deref(), &data[..]),
                (Some("n"), Some("text/plain"), &b"bytes"[..])
            );
        }
        assert_eq!(multipart("multipart/related", crlf.as_bytes()).unwrap_err().code, 400);
    }

    #[test]
    fn ranges_and_content_ranges() {
        let h = |k: &'static str, v: &str| {
            let mut m = HeaderMap::new();
            m.insert(k, HeaderValue::from_str(v).unwrap());
            m
        };
        assert_eq!(byte_range(&h("range", "bytes=0-55"), 56), Some(Some((0, 55))));
        assert_eq!(byte_range(&h("range", "bytes=10-"), 56), Some(Some((10, 55))));
        assert_eq!(byte_range(&h("range", "bytes=-6"), 56), Some(Some((50, 55))));
        assert_eq!(byte_range(&h("range", "bytes=0-999"), 56), Some(Some((0, 55))));
        assert_eq!(byte_range(&h("range", "bytes=56-60"), 56), Some(None));
        assert_eq!(byte_range(&HeaderMap::new(), 56), None);
        assert_eq!(
            chunk_of(&h("content-range", "bytes 0-55/56"), 56).unwrap(),
            Chunk::Data { first: 0, total: Some(56) }
        );
        assert_eq!(chunk_of(&h("content-range", "bytes 4-5/*"), 2).unwrap(), Chunk::Data { first: 4, total: None });
        assert_eq!(chunk_of(&h("content-range", "bytes */56"), 0).unwrap(), Chunk::Status { total: Some(56) });
        assert_eq!(chunk_of(&h("content-range", "bytes */*"), 0).unwrap(), Chunk::Status { total: None });
        assert_eq!(chunk_of(&HeaderMap::new(), 3).unwrap(), Chunk::Data { first: 0, total: Some(3) });
        assert_eq!(chunk_of(&h("content-range", "bytes 0-9/56"), 3).unwrap_err().code, 400);
    }

    #[test]
    fn object_names_come_from_the_raw_path() {
        let u: Uri = "/storage/v1/b/bk/o/path%2Fto%2Fstate.json?alt=json".parse().unwrap();
        assert_eq!(object_of(&u).unwrap(), ("bk".into(), "path/to/state.json".into()));
        let u: Uri = "/download/storage/v1/b/bk/o/x/o/y%20z".parse().unwrap();
        assert_eq!(object_of(&u).unwrap(), ("bk".into(), "x/o/y z".into()));
    }
}
