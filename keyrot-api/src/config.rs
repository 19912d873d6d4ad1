//! What an [`Api`](crate::Api) is configured with besides its secrets: the key cache's TTL, the
//! request size limits and the rate limits, checked against the rotation policy and the token policy's limits.

use std::time::Duration;

use keyrot_core::policy::Policy;
use keyrot_core::token::MAX_TOKEN_LEN;

use crate::RateLimits;

/// How long a fetched key is served from the cache by default.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(30);

/// Size limits on requests. Anything over a limit is refused before it is looked at.
///
/// The defaults fit API Gateway's own limits (10 KiB of headers) with room to spare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest path plus query, in bytes; longer is `414 uri_too_long`. Default 2048.
    pub max_uri_len: usize,
    /// The most header fields (each repetition counts); more is `431 headers_too_large`.
    /// Default 100.
    pub max_header_count: usize,
    /// The longest single header field (name plus value), in bytes; longer is
    /// `431 headers_too_large`. Default 8192.
    pub max_header_len: usize,
    /// The most header bytes in all (names plus values); more is `431 headers_too_large`.
    /// Default 16384.
    pub max_headers_len: usize,
    /// The largest body, in bytes; larger is `413 body_too_large`. No route reads a body.
    /// Default 1024.
    pub max_body_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_uri_len: 2048,
            max_header_count: 100,
            max_header_len: 8192,
            max_headers_len: 16384,
            max_body_len: 1024,
        }
    }
}

/// The smallest [`Limits::max_uri_len`]: `/active-key?username=` and the longest user name,
/// every character percent-encoded.
const MIN_URI_LEN: usize = "/active-key?username=".len() + 64 * 3;

/// The smallest [`Limits::max_header_len`]: an `Authorization` header carrying the longest
/// token [`TokenPolicy::verify`](keyrot_core::token::TokenPolicy::verify) accepts.
const MIN_HEADER_LEN: usize = "authorization".len() + "Bearer ".len() + MAX_TOKEN_LEN;

/// The smallest [`Limits::max_header_count`]: `x-api-key`, `Authorization` and a few that
/// every client and proxy adds.
const MIN_HEADER_COUNT: usize = 8;

/// What an [`Api`](crate::Api) is made from besides its token policy, registry and store.
/// Start with [`ApiConfig::new`], adjust the public fields, then build the API with
/// [`Api::new`](crate::Api::new), which checks everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// How long a key fetched from the store is served without asking the store again. Must be
    /// shorter than the rotation policy's grace period. Zero turns the cache off. Default 30 s.
    pub cache_ttl: Duration,
    /// Request size limits.
    pub limits: Limits,
    /// Rate limits per client and per source address.
    pub rate_limits: RateLimits,
    rotation_grace: Duration,
}

impl ApiConfig {
    /// The default cache TTL and limits, for keys rotated under `rotation` (the policy the
    /// rotator runs with; only its grace period matters here).
    pub fn new(rotation: &Policy) -> Self {
        Self {
            cache_ttl: DEFAULT_CACHE_TTL,
            limits: Limits::default(),
            rate_limits: RateLimits::default(),
            rotation_grace: rotation.grace(),
        }
    }

    /// The grace period of the rotation policy this configuration was made for.
    pub fn rotation_grace(&self) -> Duration {
        self.rotation_grace
    }

    pub(crate) fn validate(&self) -> Result<(), ApiConfigError> {
        if self.cache_ttl >= self.rotation_grace {
            return Err(ApiConfigError::CacheTtlNotBelowGrace {
                cache_ttl: self.cache_ttl,
                grace: self.rotation_grace,
            });
        }
        let limits = &self.limits;
        let checks = [
            ("max_uri_len", limits.max_uri_len, MIN_URI_LEN),
            (
                "max_header_count",
                limits.max_header_count,
                MIN_HEADER_COUNT,
            ),
            ("max_header_len", limits.max_header_len, MIN_HEADER_LEN),
            (
                "max_headers_len",
                limits.max_headers_len,
                limits.max_header_len,
            ),
        ];
        for (limit, value, min) in checks {
            if value < min {
                return Err(ApiConfigError::LimitTooSmall { limit, value, min });
            }
        }
        Ok(())
    }
}

/// An API configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiConfigError {
    /// The cache could serve a key after the rotator deactivated it: a superseded key is only
    /// guaranteed to stay active for the grace period.
    #[error(
        "cache_ttl ({cache_ttl:?}) must be shorter than the rotation grace period ({grace:?}), \
         or the api could serve a key the rotator has deactivated"
    )]
    CacheTtlNotBelowGrace {
        /// The configured cache TTL.
        cache_ttl: Duration,
        /// The rotation policy's grace period.
        grace: Duration,
    },
    /// A size limit is too small for requests the API must accept.
    #[error("limits.{limit} is {value}; it must be at least {min} for valid requests to fit")]
    LimitTooSmall {
        /// The limit's field name in [`Limits`].
        limit: &'static str,
        /// The configured value.
        value: usize,
        /// The smallest value that works.
        min: usize,
    },
}
