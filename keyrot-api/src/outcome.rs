//! What became of a request, for metrics.

use std::fmt;

use http::StatusCode;

use crate::ErrorCode;

/// What became of a request, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiOutcome {
    /// `POST /generate-token` issued a token.
    TokenIssued,
    /// `GET /active-key` served a key.
    KeyServed,
    /// `GET /health` answered.
    Healthy,
    /// A route the adapter added ([`AdapterRoute`](crate::AdapterRoute)) answered.
    AdapterAnswered,
    /// `GET /admin/status` answered an admin client.
    StatusServed,
    /// `GET /admin/page` answered an admin client.
    PageServed,
    /// The request was refused or failed, with this code.
    Failed(ErrorCode),
}

impl ApiOutcome {
    /// A stable name for a metric dimension: `token_issued`, `key_served`, `healthy`, or the
    /// error code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TokenIssued => "token_issued",
            Self::KeyServed => "key_served",
            Self::Healthy => "healthy",
            Self::AdapterAnswered => "adapter_answered",
            Self::StatusServed => "status_served",
            Self::PageServed => "page_served",
            Self::Failed(code) => code.as_str(),
        }
    }

    /// The HTTP status of the response.
    pub fn status(self) -> StatusCode {
        match self {
            Self::TokenIssued
            | Self::KeyServed
            | Self::Healthy
            | Self::AdapterAnswered
            | Self::StatusServed
            | Self::PageServed => StatusCode::OK,
            Self::Failed(code) => code.status(),
        }
    }

    /// The error code, if the request failed.
    pub fn error(self) -> Option<ErrorCode> {
        match self {
            Self::Failed(code) => Some(code),
            _ => None,
        }
    }
}

impl fmt::Display for ApiOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
