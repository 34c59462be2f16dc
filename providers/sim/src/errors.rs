//! Google's error bodies: compute's `{code, message, errors[{reason, domain, message}]}` and the
//! `google.rpc.Status` form (`status` carries the canonical code) used by container, gkehub and
//! serviceusage.

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
    /// 401.
    pub fn unauthenticated(style: Style) -> ApiError {
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
        let mut e = Self::new(style, 429, "rateLimitExceeded", "RESOURCE_EXHAUSTED", "Rate Limit Exceeded");
        e.retry_after = Some(retry_after);
        e
    }
    /// 503.
    pub fn unavailable(style: Style) -> ApiError {
        Self::new(style, 503, "backendError", "UNAVAILABLE", "The service is currently unavailable.")
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
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
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
}
