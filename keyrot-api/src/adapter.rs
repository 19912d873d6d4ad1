//! A route the adapter adds to the API (the local demo's), answered under the API's rules.

use std::fmt;

use keyrot_core::token::ClientId;

use crate::ErrorCode;

/// A route the adapter adds to the API, answered under the API's rules: size and rate limits,
/// `POST` only, the API key and the allowlist (no token), uniform errors, one audit line. The
/// local demo's `POST /demo/authenticate` is one.
pub struct AdapterRoute<'a> {
    /// The path, matched exactly.
    pub path: &'static str,
    /// The route's name in the audit log.
    pub name: &'static str,
    /// The answer to an authenticated client's request with this body: a JSON value (`200`),
    /// or an error code (a `4xx` whose reason in the audit log is `adapter_refused`).
    pub answer: &'a AdapterAnswer<'a>,
}

/// How an [`AdapterRoute`] answers an authenticated client's request body.
pub type AdapterAnswer<'a> =
    dyn Fn(&ClientId, &[u8]) -> Result<serde_json::Value, ErrorCode> + Sync + 'a;

impl fmt::Debug for AdapterRoute<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdapterRoute")
            .field("path", &self.path)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
