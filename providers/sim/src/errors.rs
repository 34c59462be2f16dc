//! Google's error bodies: compute's `{code, message, errors[{reason, domain, message}]}` and the
//! `google.rpc.Status` form (`status` carries the canonical code) used by container, gkehub and
//! serviceusage, and Cloud Storage's JSON API form (compute's, with the `usageLimits` domain for
//! rate limits and `locationType`/`location` naming the header a 412 or 401 is about).

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Which error format an API uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// compute v1.
    Compute,
    /// google.rpc.Status (container, gkehub, serviceusage, oauth).
    Rpc,
    /// Cloud Storage's JSON API.
    Storage,
}

/// An API error.
#[derive(Clone, Debug)]
pub struct ApiError {
    /// HTTP status.
    pub code: u16,
    /// Compute `errors[].reason`.
    pub reason: &'static str,
    /// google.rpc canonical code.
    pub status: &'static str,
    /// Message.
    pub message: String,
    /// Format.
    pub style: Style,
    /// Seconds for a Retry-After header.
    pub retry_after: Option<u32>,
}

/// Results of handlers.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    fn new(
        style: Style,
        code: u16,
        reason: &'static str,
        status: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError { code, reason, status, message: message.into(), style, retry_after: None }
    }

    /// 404.
    pub fn not_found(style: Style, message: impl Into<String>) -> ApiError {
        Self::new(style, 404, "notFound", "NOT_FOUND", message)
    }
    /// 409.
    pub fn already_exists(style: Style, message: impl Into<String>) -> ApiError {
        Self::new(style, 409, "alreadyExists", "ALREADY_EXISTS", message)
    }
    /// 400.
    pub fn invalid(style: Style, message: impl Into<String>) -> ApiError {
        Self::new(style, 400, "invalid", "INVALID_ARGUMENT", message)
    }
    /// 400 FAILED_PRECONDITION.
    pub fn precondition(style: Style, message: impl Into<String>) -> ApiError {
        Self::new(style, 400, "failedPrecondition", "FAILED_PRECONDITION", message)
    }
    /// 412.
    pub fn condition_not_met(message: impl Into<String>) -> ApiError {
        Self::new(Style::Compute, 412, "conditionNotMet", "FAILED_PRECONDITION", message)
    }
    /// 412 of Cloud Storage: a precondition (`ifGenerationMatch`, ...) did not hold.
    pub fn storage_condition_not_met() -> ApiError {
        Self::new(
            Style::Storage,
            412,
            "conditionNotMet",
            "FAILED_PRECONDITION",
            "At least one of the pre-conditions you specified did not hold.",
        )
    }
    /// 304 of Cloud Storage: a read's `…NotMatch` precondition did not hold (no body).
    pub fn storage_not_modified() -> ApiError {
        Self::new(Style::Storage, 304, "notModified", "FAILED_PRECONDITION", "Not Modified")
    }
    /// 416: a `Range` past the end of the data.
    pub fn range_not_satisfiable(style: Style) -> ApiError {
        Self::new(style, 416, "requestedRangeNotSatisfiable", "OUT_OF_RANGE", "Request range not satisfiable")
    }
    /// 401.
    pub fn unauthenticated(style: Style) -> ApiError {
        if style == Style::Storage {
            return Self::new(style, 401, "authError", "UNAUTHENTICATED", "Invalid Credentials");
        }
        Self::new(
            style,
            401,
            "required",
            "UNAUTHENTICATED",
            "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        )
    }
    /// 403.
    pub fn forbidden(style: Style, message: impl Into<String>) -> ApiError {
        Self::new(style, 403, "forbidden", "PERMISSION_DENIED", message)
    }
    /// 429 with Retry-After (seconds).
    pub fn rate_limited(style: Style, retry_after: u32) -> ApiError {
        let message = match style {
            Style::Storage => STORAGE_RATE_LIMIT,
            Style::Compute | Style::Rpc => "Rate Limit Exceeded",
        };
        let mut e = Self::new(style, 429, "rateLimitExceeded", "RESOURCE_EXHAUSTED", message);
        e.retry_after = Some(retry_after);
        e
    }
    /// 503.
    pub fn unavailable(style: Style) -> ApiError {
        let message = match style {
            Style::Storage => "Backend Error",
            Style::Compute | Style::Rpc => "The service is currently unavailable.",
        };
        Self::new(style, 503, "backendError", "UNAVAILABLE", message)
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        match self.style {
            Style::Compute => json!({"error": {
                "code": self.code, "message": self.message,
                "errors": [{"message": self.message, "domain": "global", "reason": self.reason}]}}),
            Style::Rpc => json!({"error": {"code": self.code, "message": self.message, "status": self.status,
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": self.status,
                             "domain": "googleapis.com", "metadata": {}}]}}),
            Style::Storage => {
                let domain = if self.reason == "rateLimitExceeded" { "usageLimits" } else { "global" };
                let mut detail = json!({"message": self.message, "domain": domain, "reason": self.reason});
                let location = match self.code {
                    412 => Some("If-Match"),
                    401 => Some("Authorization"),
                    _ => None,
                };
                if let Some(l) = location {
                    detail["locationType"] = json!("header");
                    detail["location"] = json!(l);
                }
                json!({"error": {"code": self.code, "message": self.message, "errors": [detail]}})
            }
        }
    }
}

/// Cloud Storage's 429 text (the per-object mutation rate limit).
const STORAGE_RATE_LIMIT: &str = "The object exceeded the rate limit for object mutation operations (create, update, and delete). Please reduce your request rate. See https://cloud.google.com/storage/docs/gcs429.";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if code == StatusCode::NOT_MODIFIED {
            return code.into_response();
        }
        let mut r = (code, Json(self.body())).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut().insert("retry-after", HeaderValue::from(s));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_the_given_seconds() {
        for secs in [0, 1, 7] {
            let r = ApiError::rate_limited(Style::Compute, secs).into_response();
            assert_eq!(r.status(), 429);
            assert_eq!(r.headers()["retry-after"], secs.to_string().as_str());
        }
        assert!(ApiError::unavailable(Style::Rpc).into_response().headers().get("retry-after").is_none());
    }

    #[test]
    fn storage_bodies_are_cloud_storages() {
        let e = ApiError::storage_condition_not_met().body();
        let m = "At least one of the pre-conditions you specified did not hold.";
        assert_eq!(
            e,
            json!({"error": {"code": 412, "message": m, "errors": [{"domain": "global", "reason": "conditionNotMet",
                   "message": m, "locationType": "header", "location": "If-Match"}]}})
        );
        let r = ApiError::rate_limited(Style::Storage, 0).body();
        assert_eq!(r["error"]["errors"][0]["domain"], "usageLimits");
        assert_eq!(r["error"]["errors"][0]["reason"], "rateLimitExceeded");
        let u = ApiError::unavailable(Style::Storage).body();
        assert_eq!(
            u["error"]["errors"][0],
            json!({"domain": "global", "reason": "backendError", "message": "Backend Error"})
        );
        assert_eq!(ApiError::storage_not_modified().into_response().status(), 304);
    }
}
