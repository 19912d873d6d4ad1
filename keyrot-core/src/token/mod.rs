//! The API's token policy: who may ask for a key, and the short-lived JWTs that say so.
//!
//! Like the rest of keyrot-core this module performs no IO, never reads the clock and has no
//! randomness of its own: `now`, the token id (`jti`) and the bytes of a new API key all come from
//! the caller.
//!
//! The policy, in short:
//!
//! - A client proves who it is with an API key. The registry ([`ClientRegistry`]) stores only the
//!   SHA-256 of each key ([`ApiKeyDigest`]) and [`ClientRegistry::authenticate`] compares the
//!   digest of the presented key with every registered digest in constant time.
//! - Each client has a [`Scope`] (the IAM users whose current key it may fetch, or `*` for every
//!   managed user) and an allowlist of CIDR blocks ([`Client::allows_ip`]).
//! - [`TokenPolicy::issue`] signs a JWT (HS256 only, with a `kid` header so the signing key can
//!   rotate) carrying `iss`, `aud`, `sub` (the client id), `iat`, `nbf`, `exp`, `jti` and
//!   `scope`; tokens live 120 s by default and never more than an hour.
//! - [`TokenPolicy::verify`] refuses oversized input before parsing it, accepts only `HS256` (never
//!   `none`, never another algorithm), requires a known `kid` (the active key or a retired one still
//!   configured), checks the signature before it looks at any claim, then checks issuer, audience,
//!   `exp`, `nbf` and `iat` against the caller's `now` with a small leeway, and refuses a token
//!   whose lifetime is longer than the policy allows. Every reason is its own [`TokenRejection`]
//!   variant; none of them carries secret material.
//!
//! The module's parts: `jwt` (signing keys, the policy, claims and why a token is refused),
//! `jws` (the strict look at a token's header before jsonwebtoken sees it), `scope` (client ids
//! and scopes), `api_key` (API keys and their digests) and `registry` (the clients).
//!
//! ```
//! use keyrot_core::token::{ClientId, Scope, SigningKey, TokenConfig, TokenPolicy};
//! use keyrot_core::{Timestamp, UserName};
//!
//! let key = SigningKey::new("2025-01", vec![7u8; 32])?;
//! let policy = TokenPolicy::new(TokenConfig::new("keyrot", "keyrot-api", key))?;
//! let client = ClientId::new("ci")?;
//! let scope: Scope = "deployer".parse()?;
//! let now: Timestamp = "2025-06-01T12:00:00Z".parse()?;
//!
//! let issued = policy.issue(&client, &scope, now, "b7f1c2d4")?;
//! let verified = policy.verify(issued.expose_token(), now)?;
//! assert_eq!(verified.client(), &client);
//! assert!(verified.scope().allows(&UserName::new("deployer")?));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::time::Duration;

mod api_key;
mod jws;
mod jwt;
mod registry;
mod scope;

pub use api_key::{ApiKey, ApiKeyDigest, DigestParseError};
pub use jwt::{
    Claims, IssuedToken, SigningKey, TokenConfig, TokenConfigError, TokenError, TokenPolicy,
    TokenRejection, VerifiedToken,
};
pub use registry::{AuthError, Client, ClientRegistry, RegistryError};
pub use scope::{ADMIN, ClientId, ClientIdError, Scope, ScopeError};

/// The longest token [`TokenPolicy::verify`] will look at, in bytes. Longer input is refused
/// before any parsing.
pub const MAX_TOKEN_LEN: usize = 4096;

/// The longest API key [`ClientRegistry::authenticate`] will hash, in bytes. Keys made by
/// [`ApiKey::generate_from`] are 68 bytes.
pub const MAX_API_KEY_LEN: usize = 256;

/// The longest a [`Scope`] may be when written out as a space-separated string, in bytes. This
/// keeps every token well under [`MAX_TOKEN_LEN`].
pub const MAX_SCOPE_LEN: usize = 2048;

/// The longest `jti` (token id) accepted, in bytes.
pub const MAX_JTI_LEN: usize = 128;

/// The default token lifetime.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(120);

/// The longest token lifetime a policy may be configured with.
pub const MAX_LIFETIME: Duration = Duration::from_secs(3600);

/// The default allowance for clock skew between issuer and verifier.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(5);

/// The largest allowance for clock skew a policy may be configured with.
pub const MAX_LEEWAY: Duration = Duration::from_secs(30);

/// The shortest signing secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 32;
