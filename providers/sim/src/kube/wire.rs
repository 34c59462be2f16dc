//! What goes over the wire: query strings, request bodies (JSON, or protobuf as kubectl may send
//! them), the Accept header, and JSON replies with their content type.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::status::{KResult, KubeError};

/// A JSON reply with `content_type`.
pub fn json_response(code: StatusCode, v: &Value, content_type: &str) -> Response {
    let mut r = (code, v.to_string()).into_response();
    if let Ok(ct) = content_type.parse() {
        r.headers_mut().insert("content-type", ct);
    }
    r
}

/// 200 with a JSON body.
pub fn ok(v: Value) -> Response {
    json_response(StatusCode::OK, &v, "application/json")
}

/// The query string as a map (a repeated key: its last value).
pub fn query_map(uri: &Uri) -> BTreeMap<String, String> {
    serde_urlencoded::from_str(uri.query().unwrap_or("")).unwrap_or_default()
}

/// Whether the Accept header names `what`.
pub fn accepts(h: &HeaderMap, what: &str) -> bool {
    h.get("accept").and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains(what))
}

/// The request body as JSON (sent as JSON or as protobuf).
pub fn decode_body(h: &HeaderMap, body: &[u8]) -> KResult<Value> {
    let ct = h.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    if ct.starts_with("application/vnd.kubernetes.protobuf") {
        return super::proto::decode(body)
            .map_err(|m| KubeError::bad_request(format!("the body of the request could not be decoded: {m}")));
    }
    serde_json::from_slice(body)
        .map_err(|e| KubeError::bad_request(format!("the body of the request could not be decoded as JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_decode() {
        let uri: Uri =
            "/api/v1/pods?labelSelector=app%3Dx%2Cb+in+(c)&watch&fieldManager=a&fieldManager=b".parse().unwrap();
        let q = query_map(&uri);
        assert_eq!(q["labelSelector"], "app=x,b in (c)");
        assert_eq!(q["watch"], "", "a key without a value is empty");
        assert_eq!(q["fieldManager"], "b", "a repeated key: its last value");
        assert!(query_map(&"/api".parse().unwrap()).is_empty());
    }
}
