//! Kubernetes `Status` errors, worded as the real API server words them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A failed request.
#[derive(Clone, Debug)]
pub struct KubeError {
    /// HTTP code.
    pub code: u16,
    /// `reason`.
    pub reason: &'static str,
    /// `message`.
    pub message: String,
    /// `details`.
    pub details: Value,
}

/// Handler results.
pub type KResult<T> = Result<T, KubeError>;

impl KubeError {
    /// Any error.
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> KubeError {
        KubeError { code, reason, message: message.into(), details: json!({}) }
    }

    /// With details.
    pub fn details(mut self, d: Value) -> KubeError {
        self.details = d;
        self
    }

    /// `<plural>[.<group>] "<name>" not found`.
    pub fn not_found(group: &str, plural: &str, name: &str) -> KubeError {
        let what = if group.is_empty() { plural.to_string() } else { format!("{plural}.{group}") };
        let mut d = json!({"name": name, "kind": plural});
        if !group.is_empty() {
            d["group"] = json!(group);
        }
        KubeError::new(404, "NotFound", format!("{what} \"{name}\" not found")).details(d)
    }

    /// An unknown path or type.
    pub fn no_resource() -> KubeError {
        KubeError::new(404, "NotFound", "the server could not find the requested resource")
    }

    /// Create of an existing object.
    pub fn already_exists(group: &str, plural: &str, name: &str) -> KubeError {
        let what = if group.is_empty() { plural.to_string() } else { format!("{plural}.{group}") };
        let mut d = json!({"name": name, "kind": plural});
        if !group.is_empty() {
            d["group"] = json!(group);
        }
        KubeError::new(409, "AlreadyExists", format!("{what} \"{name}\" already exists")).details(d)
    }

    /// Stale resourceVersion.
    pub fn conflict(group: &str, plural: &str, name: &str) -> KubeError {
        let what = if group.is_empty() { plural.to_string() } else { format!("{plural}.{group}") };
        KubeError::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {what} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"),
        )
        .details(json!({"name": name, "kind": plural}))
    }

    /// 429, asking the client to retry after `secs` seconds (send it with
    /// [`KubeError::retry_after`], which sets the header too).
    pub fn too_many_requests(secs: u32) -> KubeError {
        KubeError::new(
            429,
            "TooManyRequests",
            "the server has received too many requests and has asked us to try again later",
        )
        .details(json!({"retryAfterSeconds": secs}))
    }

    /// 503.
    pub fn unavailable() -> KubeError {
        KubeError::new(503, "ServiceUnavailable", "the server is currently unable to handle the request")
    }

    /// The response, with a `Retry-After: secs` header.
    pub fn retry_after(self, secs: u32) -> Response {
        let mut r = self.into_response();
        r.headers_mut().insert("retry-after", axum::http::HeaderValue::from(secs));
        r
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> KubeError {
        KubeError::new(400, "BadRequest", message)
    }

    /// 422 with one cause.
    pub fn invalid(kind: &str, name: &str, field: &str, message: &str) -> KubeError {
        KubeError::new(422, "Invalid", format!("{kind} \"{name}\" is invalid: {field}: {message}")).details(json!({
            "name": name, "kind": kind, "causes": [{"reason": "FieldValueInvalid", "message": message, "field": field}]
        }))
    }

    /// The Status body.
    pub fn body(&self) -> Value {
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": self.message,
               "reason": self.reason, "details": self.details, "code": self.code})
    }
}

impl IntoResponse for KubeError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, axum::Json(self.body())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_the_given_seconds() {
        for secs in [0, 1, 7] {
            let e = KubeError::too_many_requests(secs);
            assert_eq!(e.body()["details"]["retryAfterSeconds"], secs);
            let r = e.retry_after(secs);
            assert_eq!(r.status(), 429);
            assert_eq!(r.headers()["retry-after"], secs.to_string().as_str());
            let r = KubeError::unavailable().retry_after(secs);
            assert_eq!(r.status(), 503);
            assert_eq!(r.headers()["retry-after"], secs.to_string().as_str());
        }
        assert!(KubeError::no_resource().into_response().headers().get("retry-after").is_none());
    }
}
