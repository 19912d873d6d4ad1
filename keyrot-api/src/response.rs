//! Writing responses: JSON bodies and the headers every response carries.

use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderValue, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use http::{Response, StatusCode};
use serde::Serialize;

use super::{ApiOutcome, ErrorCode, Success};
use keyrot_core::model::Timestamp;

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
struct TokenBody<'a> {
    token: &'a str,
    token_type: &'static str,
    expires_in: u64,
    expires_at: String,
}

/// The names follow the AWS SDKs' credential fields.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct KeyBody<'a> {
    user_name: &'a str,
    access_key_id: &'a str,
    secret_access_key: &'a str,
    /// When the API read the key from the store (it may have served it from its cache since).
    retrieved_at: String,
}

#[derive(Serialize)]
struct HealthBody {
    status: &'static str,
}

/// A JSON response with the headers every response carries.
fn json(status: StatusCode, body: String) -> Response<String> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// An HTML page with the headers every response carries, the page's strict
/// Content-Security-Policy, and no framing or referrer.
fn html(body: String) -> Response<String> {
    let mut response = json(StatusCode::OK, body);
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(crate::page::CSP),
    );
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// The error response for `code`: `{"error": {"code", "message"}}`.
pub(super) fn error(code: ErrorCode) -> Response<String> {
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.as_str(),
            message: code.message(),
        },
    };
    let text = serde_json::to_string(&body).unwrap_or_else(|_| {
        // Serialising two plain strings does not fail; this keeps the response JSON anyway.
        format!(r#"{{"error":{{"code":"{}"}}}}"#, code.as_str())
    });
    json(code.status(), text)
}

/// The response for a successful request at `now`.
pub(super) fn success(success: &Success, now: Timestamp) -> (Response<String>, ApiOutcome) {
    let (text, outcome) = match success {
        Success::Token(issued) => {
            let body = TokenBody {
                token: issued.expose_token(),
                token_type: "Bearer",
                expires_in: issued
                    .expires_at()
                    .as_second()
                    .saturating_sub(now.as_second())
                    .max(0)
                    .unsigned_abs(),
                expires_at: issued.expires_at().to_string(),
            };
            (serde_json::to_string(&body), ApiOutcome::TokenIssued)
        }
        Success::Key {
            user,
            credentials,
            retrieved_at,
        } => {
            let body = KeyBody {
                user_name: user.as_str(),
                access_key_id: credentials.access_key_id.as_str(),
                secret_access_key: credentials.secret_access_key.expose(),
                retrieved_at: retrieved_at.to_string(),
            };
            (serde_json::to_string(&body), ApiOutcome::KeyServed)
        }
        Success::Health => (
            serde_json::to_string(&HealthBody { status: "ok" }),
            ApiOutcome::Healthy,
        ),
        Success::Status(body) => (Ok(body.clone()), ApiOutcome::StatusServed),
        Success::Page(page) => return (html(page.clone()), ApiOutcome::PageServed),
        Success::Adapter(value) => (serde_json::to_string(value), ApiOutcome::AdapterAnswered),
    };
    match text {
        Ok(text) => (json(StatusCode::OK, text), outcome),
        Err(_) => (
            error(ErrorCode::InternalError),
            ApiOutcome::Failed(ErrorCode::InternalError),
        ),
    }
}
