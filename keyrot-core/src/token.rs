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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use jsonwebtoken::errors::ErrorKind as JwtErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::model::{NameError, Timestamp, UserName};

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

const MAX_KID_LEN: usize = 64;
const MAX_ISSUER_LEN: usize = 256;

// ---------------------------------------------------------------------------------------------
// Signing keys and configuration
// ---------------------------------------------------------------------------------------------

/// A token configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenConfigError {
    /// Key ids are 1 to 64 characters from `A-Z a-z 0-9 . _ -`, so they are safe to log and to
    /// put in a JWT header.
    #[error("signing key id {0:?} must be 1 to 64 characters from A-Z a-z 0-9 . _ -")]
    InvalidKeyId(String),
    /// HS256 secrets must be at least 32 bytes (256 bits) long.
    #[error("signing key {kid:?} is {len} bytes; the secret must be at least 32 bytes (256 bits)")]
    SecretTooShort {
        /// The key's id.
        kid: String,
        /// The length of the secret that was given, in bytes.
        len: usize,
    },
    /// The issuer (`iss`) must be 1 to 256 characters without control characters.
    #[error("token issuer must be 1 to 256 characters without control characters")]
    InvalidIssuer,
    /// The audience (`aud`) must be 1 to 256 characters without control characters.
    #[error("token audience must be 1 to 256 characters without control characters")]
    InvalidAudience,
    /// The token lifetime must be a whole number of seconds from 1 s to 3600 s.
    #[error("token lifetime must be a whole number of seconds from 1 s to 3600 s, got {0:?}")]
    InvalidLifetime(Duration),
    /// The clock-skew leeway must be a whole number of seconds, at most 30 s.
    #[error("token leeway must be a whole number of seconds from 0 s to 30 s, got {0:?}")]
    InvalidLeeway(Duration),
    /// Two configured keys (active or retired) have the same id, so a token's `kid` would be
    /// ambiguous.
    #[error("signing key id {0:?} is configured more than once; every key needs its own id")]
    DuplicateKeyId(String),
}

/// An HS256 signing secret and the id (`kid`) that names it in token headers.
///
/// The secret is at least 32 bytes, is zeroized on drop, and never appears in `Debug` output.
pub struct SigningKey {
    kid: String,
    secret: SecretSlice<u8>,
}

impl SigningKey {
    /// Checks the key id and the secret's length.
    ///
    /// `secret` should be at least 32 random bytes (for example generated once and kept in
    /// Secrets Manager). Anything that converts into a [`SecretSlice<u8>`] works, such as a
    /// `Vec<u8>`; the bytes are zeroized when the key is dropped.
    pub fn new(
        kid: impl Into<String>,
        secret: impl Into<SecretSlice<u8>>,
    ) -> Result<Self, TokenConfigError> {
        let kid = kid.into();
        let secret = secret.into();
        if !is_valid_kid(&kid) {
            return Err(TokenConfigError::InvalidKeyId(kid));
        }
        let len = secret.expose_secret().len();
        if len < MIN_SECRET_LEN {
            return Err(TokenConfigError::SecretTooShort { kid, len });
        }
        Ok(Self { kid, secret })
    }

    /// The key's id, as written in the `kid` header of the tokens it signs. Not secret.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    fn encoding_key(&self) -> EncodingKey {
        // jsonwebtoken copies the secret into a key that is itself zeroized on drop.
        EncodingKey::from_secret(self.secret.expose_secret())
    }

    fn decoding_key(&self) -> DecodingKey {
        DecodingKey::from_secret(self.secret.expose_secret())
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("secret", &"[redacted]")
            .finish()
    }
}

fn is_valid_kid(kid: &str) -> bool {
    (1..=MAX_KID_LEN).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn is_valid_name(s: &str) -> bool {
    !s.is_empty() && s.chars().count() <= MAX_ISSUER_LEN && !s.chars().any(char::is_control)
}

/// What a [`TokenPolicy`] is made from. Start with [`TokenConfig::new`], adjust the public
/// fields, then build the policy with [`TokenPolicy::new`], which checks everything.
#[derive(Debug)]
pub struct TokenConfig {
    /// The `iss` claim written into and required of every token.
    pub issuer: String,
    /// The `aud` claim written into and required of every token.
    pub audience: String,
    /// How long an issued token lives: 1 s to 3600 s, whole seconds. Default 120 s.
    pub lifetime: Duration,
    /// Allowance for clock skew when checking `exp`, `nbf` and `iat`: at most 30 s, whole
    /// seconds. Default 5 s.
    pub leeway: Duration,
    /// The key new tokens are signed with; tokens it signed verify too.
    pub signing_key: SigningKey,
    /// Keys that no longer sign but whose tokens still verify, so the signing key can rotate
    /// without failing tokens already handed out. Drop a retired key once its last token has
    /// expired (one lifetime plus leeway after it stopped signing).
    pub retired_keys: Vec<SigningKey>,
}

impl TokenConfig {
    /// A configuration with the default lifetime (120 s) and leeway (5 s) and no retired keys.
    pub fn new(
        issuer: impl Into<String>,
        audience: impl Into<String>,
        signing_key: SigningKey,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            lifetime: DEFAULT_LIFETIME,
            leeway: DEFAULT_LEEWAY,
            signing_key,
            retired_keys: Vec::new(),
        }
    }
}

/// Issues and verifies the API's tokens. Built from a [`TokenConfig`] by [`TokenPolicy::new`].
#[derive(Debug)]
pub struct TokenPolicy {
    issuer: String,
    audience: String,
    lifetime_secs: i64,
    leeway_secs: i64,
    signing_key: SigningKey,
    retired_keys: BTreeMap<String, SigningKey>,
    validation: Validation,
}

impl TokenPolicy {
    /// Checks `config` and builds the policy.
    pub fn new(config: TokenConfig) -> Result<Self, TokenConfigError> {
        let TokenConfig {
            issuer,
            audience,
            lifetime,
            leeway,
            signing_key,
            retired_keys,
        } = config;
        if !is_valid_name(&issuer) {
            return Err(TokenConfigError::InvalidIssuer);
        }
        if !is_valid_name(&audience) {
            return Err(TokenConfigError::InvalidAudience);
        }
        if lifetime.subsec_nanos() != 0
            || lifetime < Duration::from_secs(1)
            || lifetime > MAX_LIFETIME
        {
            return Err(TokenConfigError::InvalidLifetime(lifetime));
        }
        if leeway.subsec_nanos() != 0 || leeway > MAX_LEEWAY {
            return Err(TokenConfigError::InvalidLeeway(leeway));
        }
        let mut retired = BTreeMap::new();
        for key in retired_keys {
            if key.kid == signing_key.kid || retired.contains_key(&key.kid) {
                return Err(TokenConfigError::DuplicateKeyId(key.kid));
            }
            retired.insert(key.kid.clone(), key);
        }

        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        // jsonwebtoken would check exp and nbf against the system clock; time is an argument
        // here, so `verify` checks them itself against the caller's `now`.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        validation.validate_aud = true;
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.set_issuer(&[issuer.as_str()]);
        validation.set_audience(&[audience.as_str()]);

        Ok(Self {
            issuer,
            audience,
            // Both are whole seconds of at most an hour, checked above.
            lifetime_secs: i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX),
            leeway_secs: i64::try_from(leeway.as_secs()).unwrap_or(i64::MAX),
            signing_key,
            retired_keys: retired,
            validation,
        })
    }

    /// The id of the key new tokens are signed with.
    pub fn active_kid(&self) -> &str {
        self.signing_key.kid()
    }

    /// How long issued tokens live.
    pub fn lifetime(&self) -> Duration {
        Duration::from_secs(self.lifetime_secs.unsigned_abs())
    }

    /// Signs a token for `client` with `scope`, valid from `now` for the configured lifetime.
    ///
    /// `jti` is the token's unique id, chosen by the caller (for example 16 random bytes in hex):
    /// 1 to 128 printable ASCII characters without spaces. Sub-second parts of `now` are dropped.
    pub fn issue(
        &self,
        client: &ClientId,
        scope: &Scope,
        now: Timestamp,
        jti: &str,
    ) -> Result<IssuedToken, TokenError> {
        if !is_valid_jti(jti) {
            return Err(TokenError::InvalidJti);
        }
        let iat = now.as_second();
        if iat < 0 {
            // jsonwebtoken reads registered time claims as non-negative integers.
            return Err(TokenError::TimeOutOfRange);
        }
        let exp = iat
            .checked_add(self.lifetime_secs)
            .ok_or(TokenError::TimeOutOfRange)?;
        let issued_at = Timestamp::from_second(iat).map_err(|_| TokenError::TimeOutOfRange)?;
        let expires_at = Timestamp::from_second(exp).map_err(|_| TokenError::TimeOutOfRange)?;
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: client.as_str().to_owned(),
            iat,
            nbf: iat,
            exp,
            jti: jti.to_owned(),
            scope: scope.to_string(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.signing_key.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.signing_key.encoding_key())
            .map_err(TokenError::Signing)?;
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLarge {
                len: token.len(),
                max: MAX_TOKEN_LEN,
            });
        }
        Ok(IssuedToken {
            token: SecretString::from(token),
            issued_at,
            expires_at,
        })
    }

    /// Checks a bearer token against this policy at time `now`.
    ///
    /// Checks, in order: length, shape, header (`alg` must be `HS256`, `kid` must name a
    /// configured key, no `crit`), signature, issuer, audience, then the times (`exp`, `nbf` and
    /// `iat` with the configured leeway, and `exp - iat` no longer than the configured lifetime),
    /// then the `sub`, `scope` and `jti` claims. No claim is trusted before the signature checks
    /// out.
    ///
    /// The caller must still check that the token's client is the one that presented the API
    /// key (see [`TokenPolicy::verify_for_client`]).
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<VerifiedToken, TokenRejection> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenRejection::TooLarge {
                len: token.len(),
                max: MAX_TOKEN_LEN,
            });
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenRejection::Malformed {
                reason: "not three dot-separated parts",
            });
        };
        let header = RawHeader::decode(header_b64)?;
        if header.alg != "HS256" {
            return Err(TokenRejection::UnsupportedAlgorithm(truncated(&header.alg)));
        }
        if header.crit.is_some() {
            return Err(TokenRejection::CriticalHeader);
        }
        if let Some(typ) = &header.typ
            && !typ.eq_ignore_ascii_case("JWT")
        {
            return Err(TokenRejection::Malformed {
                reason: "header typ is not JWT",
            });
        }
        let kid = match header.kid.as_deref() {
            None | Some("") => return Err(TokenRejection::MissingKeyId),
            Some(kid) => kid,
        };
        let key = if kid == self.signing_key.kid {
            &self.signing_key
        } else {
            self.retired_keys
                .get(kid)
                .ok_or_else(|| TokenRejection::UnknownKeyId(truncated(kid)))?
        };

        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding_key(), &self.validation)
            .map_err(|e| map_jwt_error(e.kind()))?;
        let claims = data.claims;

        let now_s = now.as_second();
        if claims.exp <= claims.iat || claims.nbf > claims.exp {
            return Err(TokenRejection::Malformed {
                reason: "exp is not after iat and nbf",
            });
        }
        if now_s > claims.exp.saturating_add(self.leeway_secs) {
            return Err(TokenRejection::Expired);
        }
        if claims.nbf > now_s.saturating_add(self.leeway_secs) {
            return Err(TokenRejection::NotYetValid);
        }
        if claims.iat > now_s.saturating_add(self.leeway_secs) {
            return Err(TokenRejection::IssuedInFuture);
        }
        if claims.exp.saturating_sub(claims.iat) > self.lifetime_secs {
            return Err(TokenRejection::LifetimeTooLong);
        }
        let client = ClientId::new(claims.sub).map_err(|_| TokenRejection::InvalidClaim("sub"))?;
        let scope: Scope = claims
            .scope
            .parse()
            .map_err(|_| TokenRejection::InvalidClaim("scope"))?;
        if !is_valid_jti(&claims.jti) {
            return Err(TokenRejection::InvalidClaim("jti"));
        }
        let issued_at =
            Timestamp::from_second(claims.iat).map_err(|_| TokenRejection::InvalidClaim("iat"))?;
        let expires_at =
            Timestamp::from_second(claims.exp).map_err(|_| TokenRejection::InvalidClaim("exp"))?;
        Ok(VerifiedToken {
            client,
            scope,
            issued_at,
            expires_at,
            jti: claims.jti,
            kid: key.kid.clone(),
        })
    }

    /// [`TokenPolicy::verify`], then also requires the token to have been issued to `client`
    /// (the client that presented the API key alongside it).
    pub fn verify_for_client(
        &self,
        token: &str,
        client: &ClientId,
        now: Timestamp,
    ) -> Result<VerifiedToken, TokenRejection> {
        let verified = self.verify(token, now)?;
        if verified.client != *client {
            return Err(TokenRejection::WrongClient);
        }
        Ok(verified)
    }
}

fn is_valid_jti(jti: &str) -> bool {
    (1..=MAX_JTI_LEN).contains(&jti.len()) && jti.bytes().all(|b| b.is_ascii_graphic())
}

/// Keeps attacker-chosen header values short before they go into an error (and a log line).
fn truncated(s: &str) -> String {
    s.chars().take(32).collect()
}

/// The claims of an API token. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer: who signed the token.
    pub iss: String,
    /// Audience: who the token is for.
    pub aud: String,
    /// Subject: the id of the client the token was issued to.
    pub sub: String,
    /// Issued at.
    pub iat: i64,
    /// Not valid before.
    pub nbf: i64,
    /// Expires at.
    pub exp: i64,
    /// The token's unique id, chosen by the issuer's caller.
    pub jti: String,
    /// The IAM users the client may fetch keys for, space separated (as in RFC 8693), or `*` for
    /// every managed user.
    pub scope: String,
}

/// A freshly signed token.
pub struct IssuedToken {
    token: SecretString,
    issued_at: Timestamp,
    expires_at: Timestamp,
}

impl IssuedToken {
    /// The compact JWT. It is a bearer credential until it expires: hand it to the client and
    /// do not log it. `Debug` does not print it.
    pub fn expose_token(&self) -> &str {
        self.token.expose_secret()
    }

    /// When the token was issued (whole seconds).
    pub fn issued_at(&self) -> Timestamp {
        self.issued_at
    }

    /// When the token expires.
    pub fn expires_at(&self) -> Timestamp {
        self.expires_at
    }
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &"[redacted]")
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A token that passed every check of [`TokenPolicy::verify`]. Only `verify` makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    client: ClientId,
    scope: Scope,
    issued_at: Timestamp,
    expires_at: Timestamp,
    jti: String,
    kid: String,
}

impl VerifiedToken {
    /// The client the token was issued to (`sub`).
    pub fn client(&self) -> &ClientId {
        &self.client
    }

    /// The users the token allows (`scope`).
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// When the token was issued (`iat`).
    pub fn issued_at(&self) -> Timestamp {
        self.issued_at
    }

    /// When the token expires (`exp`, without leeway).
    pub fn expires_at(&self) -> Timestamp {
        self.expires_at
    }

    /// The token's unique id (`jti`), for the audit log.
    pub fn jti(&self) -> &str {
        &self.jti
    }

    /// The id of the key that signed the token.
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

/// Why a token could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token id must be 1 to 128 printable ASCII characters without spaces.
    #[error("jti must be 1 to 128 printable ASCII characters without spaces")]
    InvalidJti,
    /// `now` plus the lifetime is outside the range of Unix times a token can carry.
    #[error("token times fall outside the supported range")]
    TimeOutOfRange,
    /// The signed token would be longer than [`TokenPolicy::verify`] accepts, because the
    /// client's scope lists too many users.
    #[error("token would be {len} bytes, more than the {max} accepted; narrow the client's scope")]
    TooLarge {
        /// The token's length in bytes.
        len: usize,
        /// The longest token accepted.
        max: usize,
    },
    /// The JWT library failed to sign.
    #[error("could not sign token")]
    Signing(#[source] jsonwebtoken::errors::Error),
}

/// Why a token was refused. Messages say which check failed and never contain key material.
///
/// The API answers every one of these with the same 401 so a caller learns nothing from the
/// difference; the variant is for the audit log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    /// The token is longer than [`MAX_TOKEN_LEN`]; it was not parsed.
    #[error("token is {len} bytes, more than the {max} accepted")]
    TooLarge {
        /// The token's length in bytes.
        len: usize,
        /// The longest token accepted.
        max: usize,
    },
    /// The token is not a well-formed JWT of the expected shape.
    #[error("token is malformed: {reason}")]
    Malformed {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The header names an algorithm other than `HS256` (including `none`). Holds the first
    /// 32 characters of the header's `alg`.
    #[error("token algorithm {0:?} is not accepted, only HS256")]
    UnsupportedAlgorithm(String),
    /// The header has no `kid`.
    #[error("token header has no key id")]
    MissingKeyId,
    /// The header's `kid` names no configured key. Holds the first 32 characters of the `kid`.
    #[error("token key id {0:?} is not a configured signing key")]
    UnknownKeyId(String),
    /// The header has a `crit` parameter; this policy understands no JWS extensions.
    #[error("token header lists critical extensions, which are not supported")]
    CriticalHeader,
    /// The signature does not match the named key.
    #[error("token signature is invalid")]
    BadSignature,
    /// The `iss` claim is not this policy's issuer.
    #[error("token issuer is wrong")]
    WrongIssuer,
    /// The `aud` claim is not this policy's audience.
    #[error("token audience is wrong")]
    WrongAudience,
    /// `exp` (plus leeway) is in the past.
    #[error("token has expired")]
    Expired,
    /// `nbf` is in the future by more than the leeway.
    #[error("token is not valid yet")]
    NotYetValid,
    /// `iat` is in the future by more than the leeway.
    #[error("token was issued in the future")]
    IssuedInFuture,
    /// `exp - iat` is longer than the configured lifetime.
    #[error("token lifetime is longer than the configured maximum")]
    LifetimeTooLong,
    /// A claim is present but not valid (`sub` is not a client id, `scope` is not a scope, ...).
    /// Holds the claim's name.
    #[error("token claim {0} is invalid")]
    InvalidClaim(&'static str),
    /// The token was issued to a different client than the one that presented the API key.
    #[error("token was issued to a different client")]
    WrongClient,
}

impl TokenRejection {
    /// A stable, machine-readable code for the audit log and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "token_too_large",
            Self::Malformed { .. } => "token_malformed",
            Self::UnsupportedAlgorithm(_) => "token_unsupported_algorithm",
            Self::MissingKeyId => "token_missing_kid",
            Self::UnknownKeyId(_) => "token_unknown_kid",
            Self::CriticalHeader => "token_critical_header",
            Self::BadSignature => "token_bad_signature",
            Self::WrongIssuer => "token_wrong_issuer",
            Self::WrongAudience => "token_wrong_audience",
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
            Self::IssuedInFuture => "token_issued_in_future",
            Self::LifetimeTooLong => "token_lifetime_too_long",
            Self::InvalidClaim(_) => "token_invalid_claim",
            Self::WrongClient => "token_wrong_client",
        }
    }
}

fn map_jwt_error(kind: &JwtErrorKind) -> TokenRejection {
    match kind {
        JwtErrorKind::InvalidSignature => TokenRejection::BadSignature,
        JwtErrorKind::InvalidIssuer => TokenRejection::WrongIssuer,
        JwtErrorKind::InvalidAudience => TokenRejection::WrongAudience,
        // Not produced while exp/nbf validation is off, but mapped faithfully all the same.
        JwtErrorKind::ExpiredSignature => TokenRejection::Expired,
        JwtErrorKind::ImmatureSignature => TokenRejection::NotYetValid,
        JwtErrorKind::InvalidAlgorithm | JwtErrorKind::UnsupportedAlgorithm => {
            TokenRejection::UnsupportedAlgorithm("HS256".to_owned())
        }
        JwtErrorKind::MissingRequiredClaim(_) | JwtErrorKind::InvalidClaimFormat(_) => {
            TokenRejection::Malformed {
                reason: "a registered claim is missing or not a non-negative integer or string",
            }
        }
        JwtErrorKind::Json(_) => TokenRejection::Malformed {
            reason: "claims are not the expected JSON",
        },
        _ => TokenRejection::Malformed {
            reason: "not a decodable JWT",
        },
    }
}

/// The header fields `verify` looks at before it lets jsonwebtoken near the token. Parsed here
/// because jsonwebtoken cannot represent `alg: none` and would only say "malformed".
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

impl RawHeader {
    fn decode(b64: &str) -> Result<Self, TokenRejection> {
        let json = base64url_decode(b64).ok_or(TokenRejection::Malformed {
            reason: "header is not base64url",
        })?;
        serde_json::from_slice(&json).map_err(|_| TokenRejection::Malformed {
            reason: "header is not a JSON object with an alg",
        })
    }
}

/// Strict unpadded base64url (RFC 4648 §5) decoding, as JWS uses it: no padding, no other
/// alphabet, no stray bits in the last character.
fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'-' => Some(62),
            b'_' => Some(63),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    if bytes.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3 + 2);
    for chunk in bytes.chunks(4) {
        let mut acc: u32 = 0;
        for &c in chunk {
            acc = (acc << 6) | value(c)?;
        }
        match chunk.len() {
            4 => out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]),
            3 => {
                if acc & 0b11 != 0 {
                    return None;
                }
                out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]);
            }
            2 => {
                if acc & 0b1111 != 0 {
                    return None;
                }
                out.push((acc >> 4) as u8);
            }
            _ => return None,
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// Clients, scopes and API keys
// ---------------------------------------------------------------------------------------------

/// An input that is not a valid client id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientIdError {
    /// Client ids are 1 to 64 characters.
    #[error("client id must be 1 to 64 characters, got {0}")]
    Length(usize),
    /// Client ids use lower-case letters, digits and `._-` only.
    #[error("client id may contain only a-z, 0-9 and . _ - (found {0:?})")]
    Character(char),
}

/// The id of an API client, such as `ci` or `billing-batch`: 1 to 64 characters from
/// `a-z 0-9 . _ -`. Not secret: it is the token's `sub` and safe to log.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClientId(String);

impl ClientId {
    /// Validates `id` as a client id.
    pub fn new(id: impl Into<String>) -> Result<Self, ClientIdError> {
        let id = id.into();
        let len = id.chars().count();
        if !(1..=64).contains(&len) {
            return Err(ClientIdError::Length(len));
        }
        if let Some(bad) = id
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(*c)))
        {
            return Err(ClientIdError::Character(bad));
        }
        Ok(Self(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ClientId {
    type Err = ClientIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for ClientId {
    type Error = ClientIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<ClientId> for String {
    fn from(id: ClientId) -> Self {
        id.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// An input that is not a valid scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// A scope names at least one user, or is `*`.
    #[error("scope is empty; list IAM user names, or * for every managed user")]
    Empty,
    /// An entry is empty: a doubled, leading or trailing space.
    #[error("scope has an empty entry (check for doubled, leading or trailing spaces)")]
    EmptyEntry,
    /// `*` already means every managed user; it cannot be combined with names.
    #[error("scope * cannot be combined with user names")]
    WildcardWithNames,
    /// An entry is not a valid IAM user name.
    #[error("scope entry {name:?} is not a valid IAM user name")]
    UserName {
        /// The entry, cut to 64 characters.
        name: String,
        /// Why it is not a user name.
        #[source]
        source: NameError,
    },
    /// Written out, the scope would be longer than [`MAX_SCOPE_LEN`] bytes.
    #[error("scope is {0} bytes when written out, more than 2048; list fewer users or use *")]
    TooLong(usize),
}

/// The IAM users a client may fetch the current key of: a set of user names, or every managed
/// user (`*`).
///
/// Written as a space-separated string in tokens (`"deployer ci-bot"`, `"*"`) and as a list of
/// strings in the client registry (`["deployer", "ci-bot"]`, `["*"]`). Never empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope(ScopeInner);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ScopeInner {
    All,
    Users(BTreeSet<UserName>),
}

impl Scope {
    /// Every managed user. Whether a user is managed is for the caller to check.
    pub fn all() -> Self {
        Self(ScopeInner::All)
    }

    /// Exactly these users (duplicates are merged). Fails if there are none or the scope would
    /// be too long.
    pub fn users(users: impl IntoIterator<Item = UserName>) -> Result<Self, ScopeError> {
        let users: BTreeSet<UserName> = users.into_iter().collect();
        if users.is_empty() {
            return Err(ScopeError::Empty);
        }
        let len = users.iter().map(|u| u.as_str().len() + 1).sum::<usize>() - 1;
        if len > MAX_SCOPE_LEN {
            return Err(ScopeError::TooLong(len));
        }
        Ok(Self(ScopeInner::Users(users)))
    }

    /// Parses a list of entries: either the single entry `*` or IAM user names.
    pub fn from_entries<S: AsRef<str>>(
        entries: impl IntoIterator<Item = S>,
    ) -> Result<Self, ScopeError> {
        let mut wildcard = false;
        let mut users = Vec::new();
        for entry in entries {
            let entry = entry.as_ref();
            if entry.is_empty() {
                return Err(ScopeError::EmptyEntry);
            }
            if entry == "*" {
                wildcard = true;
            } else {
                let user = UserName::new(entry).map_err(|source| ScopeError::UserName {
                    name: entry.chars().take(64).collect(),
                    source,
                })?;
                users.push(user);
            }
        }
        match (wildcard, users.is_empty()) {
            (true, true) => Ok(Self::all()),
            (true, false) => Err(ScopeError::WildcardWithNames),
            (false, _) => Self::users(users),
        }
    }

    /// Whether the scope allows fetching `user`'s key.
    pub fn allows(&self, user: &UserName) -> bool {
        match &self.0 {
            ScopeInner::All => true,
            ScopeInner::Users(users) => users.contains(user),
        }
    }

    /// Whether the scope is `*`.
    pub fn is_all(&self) -> bool {
        matches!(self.0, ScopeInner::All)
    }

    /// The users listed, or `None` for `*`.
    pub fn user_names(&self) -> Option<&BTreeSet<UserName>> {
        match &self.0 {
            ScopeInner::All => None,
            ScopeInner::Users(users) => Some(users),
        }
    }

    fn entries(&self) -> Vec<String> {
        match &self.0 {
            ScopeInner::All => vec!["*".to_owned()],
            ScopeInner::Users(users) => users.iter().map(|u| u.as_str().to_owned()).collect(),
        }
    }
}

impl FromStr for Scope {
    type Err = ScopeError;
    /// Parses the space-separated form, such as `"deployer ci-bot"` or `"*"`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(ScopeError::Empty);
        }
        if s.len() > MAX_SCOPE_LEN {
            return Err(ScopeError::TooLong(s.len()));
        }
        Self::from_entries(s.split(' '))
    }
}

impl fmt::Display for Scope {
    /// Writes the space-separated form, users in sorted order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            ScopeInner::All => f.write_str("*"),
            ScopeInner::Users(users) => {
                for (i, user) in users.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    f.write_str(user.as_str())?;
                }
                Ok(())
            }
        }
    }
}

impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.entries().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries = Vec::<String>::deserialize(deserializer)?;
        Self::from_entries(entries).map_err(serde::de::Error::custom)
    }
}

/// Making API keys. An API key is a bearer secret: show it to its owner once and store only its
/// [`ApiKeyDigest`].
#[derive(Debug)]
pub enum ApiKey {}

impl ApiKey {
    /// The prefix of every generated key, so leaked keys are easy to recognise in scanners.
    pub const PREFIX: &'static str = "krk_";

    /// Formats 32 random bytes from the caller (a CSPRNG at the edge) as an API key:
    /// `krk_` followed by 64 lower-case hex digits.
    pub fn generate_from(random: [u8; 32]) -> String {
        let mut key = String::with_capacity(Self::PREFIX.len() + 64);
        key.push_str(Self::PREFIX);
        key.push_str(&hex_encode(&random));
        key
    }
}

/// An input that is not a hex SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestParseError {
    /// A SHA-256 digest is 64 hex digits.
    #[error("expected 64 hex digits, got {0} characters")]
    Length(usize),
    /// Only `0-9 a-f A-F` are hex digits.
    #[error("{0:?} is not a hex digit")]
    Character(char),
}

/// The SHA-256 of an API key: what the registry stores instead of the key.
///
/// Comparisons (`==` included) take the same time whatever the contents. Serialised as 64
/// lower-case hex digits.
#[derive(Clone, Copy, Eq)]
pub struct ApiKeyDigest([u8; 32]);

impl ApiKeyDigest {
    /// The digest of `key`.
    pub fn of(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }

    /// The digest as 64 lower-case hex digits.
    pub fn to_hex(&self) -> String {
        hex_encode(&self.0)
    }
}

impl ConstantTimeEq for ApiKeyDigest {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.0.ct_eq(&other.0)
    }
}

impl PartialEq for ApiKeyDigest {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl FromStr for ApiKeyDigest {
    type Err = DigestParseError;
    /// Parses 64 hex digits (either case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let len = s.chars().count();
        if let Some(bad) = s.chars().find(|c| !c.is_ascii_hexdigit()) {
            return Err(DigestParseError::Character(bad));
        }
        if len != 64 {
            return Err(DigestParseError::Length(len));
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(s.as_bytes().chunks(2)) {
            *byte = (hex_value(pair[0]) << 4) | hex_value(pair[1]);
        }
        Ok(Self(out))
    }
}

impl fmt::Display for ApiKeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ApiKeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The digest of a 256-bit random key reveals nothing, but a prefix is enough to tell
        // digests apart in a log.
        write!(f, "ApiKeyDigest({}…)", &self.to_hex()[..8])
    }
}

impl Serialize for ApiKeyDigest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ApiKeyDigest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// The value of an ASCII hex digit; callers check `is_ascii_hexdigit` first.
fn hex_value(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

/// A registered API client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    id: ClientId,
    api_key_digest: ApiKeyDigest,
    scope: Scope,
    allowed_cidrs: Vec<IpNet>,
}

impl Client {
    /// The client's id.
    pub fn id(&self) -> &ClientId {
        &self.id
    }

    /// The SHA-256 of the client's API key.
    pub fn api_key_digest(&self) -> &ApiKeyDigest {
        &self.api_key_digest
    }

    /// The users whose key the client may fetch.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The networks the client may call from. Never empty.
    pub fn allowed_cidrs(&self) -> &[IpNet] {
        &self.allowed_cidrs
    }

    /// Whether `ip` (the true source address, from the API Gateway request context) is in one
    /// of the client's networks. An IPv4-mapped IPv6 address such as `::ffff:10.0.0.1` matches
    /// IPv4 blocks as the IPv4 address it stands for.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let canonical = ip.to_canonical();
        self.allowed_cidrs
            .iter()
            .any(|net| net.contains(&canonical) || net.contains(&ip))
    }
}

/// Why an API key was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No API key was presented.
    #[error("no api key was presented")]
    Missing,
    /// The presented key is longer than [`MAX_API_KEY_LEN`]; it was not hashed.
    #[error("api key is too long")]
    TooLong,
    /// The presented key belongs to no registered client.
    #[error("api key is not recognised")]
    Unknown,
}

/// A client registry that cannot be loaded. Each message names the client (by its position in
/// `clients` and its id) and says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The document is not JSON of the shape
    /// `{"clients": [{"id", "api_key_sha256", "scope", "allowed_cidrs"}]}`.
    #[error(
        "client registry is not JSON of the form {{\"clients\": [{{\"id\", \"api_key_sha256\", \"scope\", \"allowed_cidrs\"}}]}}"
    )]
    Json(#[source] serde_json::Error),
    /// A client's id is not valid.
    #[error("clients[{index}]: id {id:?} is not valid; use 1 to 64 of a-z 0-9 . _ -")]
    InvalidId {
        /// The client's position in `clients`.
        index: usize,
        /// The id as given, cut to 64 characters.
        id: String,
        /// What is wrong with it.
        #[source]
        source: ClientIdError,
    },
    /// Two clients share an id.
    #[error("clients[{index}]: id {id:?} is already used by an earlier client; ids must be unique")]
    DuplicateId {
        /// The later client's position in `clients`.
        index: usize,
        /// The shared id.
        id: ClientId,
    },
    /// A client's `api_key_sha256` is not a hex SHA-256 digest.
    #[error(
        "clients[{index}] ({id}): api_key_sha256 must be the SHA-256 of the client's api key as 64 hex digits"
    )]
    InvalidDigest {
        /// The client's position in `clients`.
        index: usize,
        /// The client's id.
        id: ClientId,
        /// What is wrong with it.
        #[source]
        source: DigestParseError,
    },
    /// Two clients have the same API key digest, so one key would authenticate as both.
    #[error(
        "clients[{index}] ({id}): api_key_sha256 is the same as client {other}'s; give each client its own api key"
    )]
    DuplicateDigest {
        /// The later client's position in `clients`.
        index: usize,
        /// The later client's id.
        id: ClientId,
        /// The earlier client with the same digest.
        other: ClientId,
    },
    /// A client's scope is not valid (empty, a bad user name, `*` mixed with names, too long).
    #[error(
        "clients[{index}] ({id}): scope is not valid; list IAM user names, or [\"*\"] for every managed user"
    )]
    InvalidScope {
        /// The client's position in `clients`.
        index: usize,
        /// The client's id.
        id: ClientId,
        /// What is wrong with it.
        #[source]
        source: ScopeError,
    },
    /// A client's `allowed_cidrs` is empty, so it could never call the API.
    #[error(
        "clients[{index}] ({id}): allowed_cidrs is empty; list the client's networks (0.0.0.0/0 and ::/0 allow any address)"
    )]
    NoCidrs {
        /// The client's position in `clients`.
        index: usize,
        /// The client's id.
        id: ClientId,
    },
    /// An `allowed_cidrs` entry is not a CIDR block.
    #[error(
        "clients[{index}] ({id}): allowed_cidrs entry {value:?} is not a CIDR block such as 10.0.0.0/8 or 2001:db8::/32 (write 10.0.0.1/32 for one address)"
    )]
    InvalidCidr {
        /// The client's position in `clients`.
        index: usize,
        /// The client's id.
        id: ClientId,
        /// The entry, cut to 64 characters.
        value: String,
        /// Why it does not parse.
        #[source]
        source: ipnet::AddrParseError,
    },
    /// An `allowed_cidrs` entry has bits set after the prefix, which is usually a typo.
    #[error(
        "clients[{index}] ({id}): allowed_cidrs entry {value} has host bits set; did you mean {suggestion}?"
    )]
    HostBitsSet {
        /// The client's position in `clients`.
        index: usize,
        /// The client's id.
        id: ClientId,
        /// The entry as given.
        value: IpNet,
        /// The block with the host bits cleared.
        suggestion: IpNet,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    clients: Vec<RawClient>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    id: String,
    api_key_sha256: String,
    scope: Vec<String>,
    allowed_cidrs: Vec<String>,
}

/// The API's clients: who they are, the digest of their API key, what they may fetch and where
/// they may call from.
///
/// Loaded from JSON such as
///
/// ```json
/// {"clients": [{"id": "ci",
///               "api_key_sha256": "<64 hex digits>",
///               "scope": ["deployer"],
///               "allowed_cidrs": ["10.0.0.0/8", "::1/128"]}]}
/// ```
///
/// with [`ClientRegistry::from_json`] (or serde). Ids and digests are unique, every scope and
/// every allowlist is non-empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRegistry {
    clients: Vec<Client>,
}

impl ClientRegistry {
    /// Parses and checks a registry document.
    pub fn from_json(json: &str) -> Result<Self, RegistryError> {
        let raw: RawRegistry = serde_json::from_str(json).map_err(RegistryError::Json)?;
        Self::try_from(raw)
    }

    /// The client whose API key is `presented_api_key`.
    ///
    /// The key's SHA-256 is compared with every registered digest in constant time, without
    /// stopping at a match, so timing reveals neither whether nor which client matched.
    pub fn authenticate(&self, presented_api_key: &str) -> Result<&Client, AuthError> {
        if presented_api_key.is_empty() {
            return Err(AuthError::Missing);
        }
        if presented_api_key.len() > MAX_API_KEY_LEN {
            return Err(AuthError::TooLong);
        }
        let presented = ApiKeyDigest::of(presented_api_key);
        let mut found = u64::MAX;
        for (index, client) in self.clients.iter().enumerate() {
            let index = u64::try_from(index).unwrap_or(u64::MAX);
            found.conditional_assign(&index, client.api_key_digest.ct_eq(&presented));
        }
        usize::try_from(found)
            .ok()
            .and_then(|index| self.clients.get(index))
            .ok_or(AuthError::Unknown)
    }

    /// The client with id `id`.
    pub fn get(&self, id: &ClientId) -> Option<&Client> {
        self.clients.iter().find(|c| c.id == *id)
    }

    /// Every client, in document order.
    pub fn clients(&self) -> &[Client] {
        &self.clients
    }
}

impl TryFrom<RawRegistry> for ClientRegistry {
    type Error = RegistryError;

    fn try_from(raw: RawRegistry) -> Result<Self, Self::Error> {
        let mut clients: Vec<Client> = Vec::with_capacity(raw.clients.len());
        for (index, rc) in raw.clients.into_iter().enumerate() {
            let id = ClientId::new(rc.id.as_str()).map_err(|source| RegistryError::InvalidId {
                index,
                id: rc.id.chars().take(64).collect(),
                source,
            })?;
            if clients.iter().any(|c| c.id == id) {
                return Err(RegistryError::DuplicateId { index, id });
            }
            let api_key_digest: ApiKeyDigest = match rc.api_key_sha256.parse() {
                Ok(digest) => digest,
                Err(source) => return Err(RegistryError::InvalidDigest { index, id, source }),
            };
            if let Some(other) = clients.iter().find(|c| c.api_key_digest == api_key_digest) {
                return Err(RegistryError::DuplicateDigest {
                    index,
                    id,
                    other: other.id.clone(),
                });
            }
            let scope = match Scope::from_entries(&rc.scope) {
                Ok(scope) => scope,
                Err(source) => return Err(RegistryError::InvalidScope { index, id, source }),
            };
            if rc.allowed_cidrs.is_empty() {
                return Err(RegistryError::NoCidrs { index, id });
            }
            let mut allowed_cidrs = Vec::with_capacity(rc.allowed_cidrs.len());
            for value in &rc.allowed_cidrs {
                let net: IpNet = match value.trim().parse() {
                    Ok(net) => net,
                    Err(source) => {
                        return Err(RegistryError::InvalidCidr {
                            index,
                            id,
                            value: value.chars().take(64).collect(),
                            source,
                        });
                    }
                };
                if net.trunc() != net {
                    return Err(RegistryError::HostBitsSet {
                        index,
                        id,
                        value: net,
                        suggestion: net.trunc(),
                    });
                }
                allowed_cidrs.push(net);
            }
            clients.push(Client {
                id,
                api_key_digest,
                scope,
                allowed_cidrs,
            });
        }
        Ok(Self { clients })
    }
}

impl<'de> Deserialize<'de> for ClientRegistry {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawRegistry::deserialize(deserializer)?;
        Self::try_from(raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET_A: [u8; 32] = [0xA1; 32];
    const SECRET_B: [u8; 32] = [0xB2; 32];

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn now() -> Timestamp {
        ts("2025-06-01T12:00:00Z")
    }

    fn key(kid: &str, secret: [u8; 32]) -> SigningKey {
        SigningKey::new(kid, secret.to_vec()).unwrap()
    }

    fn policy_with(active: SigningKey, retired: Vec<SigningKey>) -> TokenPolicy {
        let mut config = TokenConfig::new("keyrot", "keyrot-api", active);
        config.retired_keys = retired;
        TokenPolicy::new(config).unwrap()
    }

    fn policy() -> TokenPolicy {
        policy_with(key("k1", SECRET_A), vec![])
    }

    fn client() -> ClientId {
        ClientId::new("ci").unwrap()
    }

    fn scope() -> Scope {
        "deployer ci-bot".parse().unwrap()
    }

    fn issue(policy: &TokenPolicy, at: Timestamp) -> String {
        policy
            .issue(&client(), &scope(), at, "jti-1")
            .unwrap()
            .expose_token()
            .to_owned()
    }

    fn claims_at(iat: i64, exp: i64) -> Claims {
        Claims {
            iss: "keyrot".into(),
            aud: "keyrot-api".into(),
            sub: "ci".into(),
            iat,
            nbf: iat,
            exp,
            jti: "jti-x".into(),
            scope: "deployer".into(),
        }
    }

    /// Signs arbitrary claims with any algorithm and key id, as an attacker or a buggy issuer
    /// could.
    fn sign(claims: &Claims, alg: Algorithm, kid: Option<&str>, secret: &[u8]) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    fn b64url(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.len();
            let mut acc = 0u32;
            for (i, b) in chunk.iter().enumerate() {
                acc |= u32::from(*b) << (16 - 8 * i);
            }
            for i in 0..=n {
                out.push(char::from(ALPHABET[((acc >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
    }

    fn verify_err(policy: &TokenPolicy, token: &str, at: Timestamp) -> TokenRejection {
        policy.verify(token, at).unwrap_err()
    }

    #[test]
    fn round_trip() {
        let policy = policy();
        let issued = policy.issue(&client(), &scope(), now(), "jti-1").unwrap();
        assert_eq!(issued.expires_at(), ts("2025-06-01T12:02:00Z"));
        let verified = policy.verify(issued.expose_token(), now()).unwrap();
        assert_eq!(verified.client(), &client());
        assert_eq!(verified.scope(), &scope());
        assert_eq!(verified.jti(), "jti-1");
        assert_eq!(verified.kid(), "k1");
        assert_eq!(verified.issued_at(), now());
        assert_eq!(verified.expires_at(), ts("2025-06-01T12:02:00Z"));
        // The claims are exactly what the design lists.
        let payload = issued.expose_token().split('.').nth(1).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&base64url_decode(payload).unwrap()).unwrap();
        let mut names: Vec<_> = claims.as_object().unwrap().keys().cloned().collect();
        names.sort();
        assert_eq!(
            names,
            ["aud", "exp", "iat", "iss", "jti", "nbf", "scope", "sub"]
        );
        assert_eq!(claims["scope"], "ci-bot deployer");
        let header = RawHeader::decode(issued.expose_token().split('.').next().unwrap()).unwrap();
        assert_eq!(
            (header.alg.as_str(), header.kid.as_deref()),
            ("HS256", Some("k1"))
        );
        assert!(!format!("{issued:?}").contains(issued.expose_token()));
        let verified_for = policy
            .verify_for_client(issued.expose_token(), &client(), now())
            .unwrap();
        assert_eq!(verified_for, verified);
        assert_eq!(
            policy.verify_for_client(
                issued.expose_token(),
                &ClientId::new("other").unwrap(),
                now()
            ),
            Err(TokenRejection::WrongClient)
        );
    }

    #[test]
    fn alg_none_is_rejected() {
        let claims =
            serde_json::to_vec(&claims_at(now().as_second(), now().as_second() + 60)).unwrap();
        for alg in ["none", "None", "NONE", "hs256", ""] {
            let header = format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"k1"}}"#);
            for signature in ["", "AAAA"] {
                let token = format!(
                    "{}.{}.{signature}",
                    b64url(header.as_bytes()),
                    b64url(&claims)
                );
                assert_eq!(
                    verify_err(&policy(), &token, now()),
                    TokenRejection::UnsupportedAlgorithm(alg.to_owned()),
                    "{token}"
                );
            }
        }
    }

    #[test]
    fn other_algorithms_are_rejected() {
        let claims = claims_at(now().as_second(), now().as_second() + 60);
        for (alg, name) in [(Algorithm::HS384, "HS384"), (Algorithm::HS512, "HS512")] {
            let token = sign(&claims, alg, Some("k1"), &SECRET_A);
            assert_eq!(
                verify_err(&policy(), &token, now()),
                TokenRejection::UnsupportedAlgorithm(name.to_owned())
            );
        }
        // An asymmetric algorithm name with an HMAC signature (the key-confusion attack).
        let header = b64url(br#"{"alg":"RS256","kid":"k1"}"#);
        let token = format!(
            "{header}.{}.AAAA",
            b64url(&serde_json::to_vec(&claims).unwrap())
        );
        assert_eq!(
            verify_err(&policy(), &token, now()),
            TokenRejection::UnsupportedAlgorithm("RS256".to_owned())
        );
    }

    #[test]
    fn time_checks_use_callers_clock_with_leeway() {
        let policy = policy();
        let token = issue(&policy, now());
        let at = |secs: i64| Timestamp::from_second(now().as_second() + secs).unwrap();
        // exp is now+120; leeway 5 s.
        assert!(policy.verify(&token, at(125)).is_ok());
        assert_eq!(
            verify_err(&policy, &token, at(126)),
            TokenRejection::Expired
        );
        assert_eq!(
            verify_err(&policy, &token, at(100_000)),
            TokenRejection::Expired
        );
        // Verifier's clock behind the issuer's: nbf (= iat) in the future.
        assert!(policy.verify(&token, at(-5)).is_ok());
        assert_eq!(
            verify_err(&policy, &token, at(-6)),
            TokenRejection::NotYetValid
        );
    }

    #[test]
    fn iat_in_future_is_rejected() {
        let n = now().as_second();
        let mut claims = claims_at(n + 60, n + 120);
        claims.nbf = n; // nbf is fine, only iat lies in the future
        let token = sign(&claims, Algorithm::HS256, Some("k1"), &SECRET_A);
        assert_eq!(
            verify_err(&policy(), &token, now()),
            TokenRejection::IssuedInFuture
        );
    }

    #[test]
    fn lifetime_longer_than_configured_is_rejected() {
        let n = now().as_second();
        let token = sign(
            &claims_at(n, n + 121),
            Algorithm::HS256,
            Some("k1"),
            &SECRET_A,
        );
        assert_eq!(
            verify_err(&policy(), &token, now()),
            TokenRejection::LifetimeTooLong
        );
        let token = sign(
            &claims_at(n, n + 120),
            Algorithm::HS256,
            Some("k1"),
            &SECRET_A,
        );
        assert!(policy().verify(&token, now()).is_ok());
        let token = sign(&claims_at(n, n), Algorithm::HS256, Some("k1"), &SECRET_A);
        assert!(matches!(
            verify_err(&policy(), &token, now()),
            TokenRejection::Malformed { .. }
        ));
    }

    #[test]
    fn wrong_issuer_and_audience_are_rejected() {
        let n = now().as_second();
        let mut claims = claims_at(n, n + 60);
        claims.iss = "someone-else".into();
        let token = sign(&claims, Algorithm::HS256, Some("k1"), &SECRET_A);
        assert_eq!(
            verify_err(&policy(), &token, now()),
            TokenRejection::WrongIssuer
        );

        let mut claims = claims_at(n, n + 60);
        claims.aud = "other-api".into();
        let token = sign(&claims, Algorithm::HS256, Some("k1"), &SECRET_A);
        assert_eq!(
            verify_err(&policy(), &token, now()),
            TokenRejection::WrongAudience
        );
    }

    #[test]
    fn tampered_token_is_rejected() {
        let policy = policy();
        let token = issue(&policy, now());
        let (rest, sig) = token.rsplit_once('.').unwrap();
        // Flip one signature character (not the last, whose low bits are padding).
        let mut sig = sig.to_owned().into_bytes();
        sig[5] = if sig[5] == b'A' { b'B' } else { b'A' };
        let tampered = format!("{rest}.{}", String::from_utf8(sig).unwrap());
        assert_eq!(
            verify_err(&policy, &tampered, now()),
            TokenRejection::BadSignature
        );

        // Re-encode the claims with a wider scope, keeping the original signature.
        let (head, _) = rest.split_once('.').unwrap();
        let (_, sig) = token.rsplit_once('.').unwrap();
        let mut claims = claims_at(now().as_second(), now().as_second() + 60);
        claims.scope = "*".into();
        let forged = format!(
            "{head}.{}.{sig}",
            b64url(&serde_json::to_vec(&claims).unwrap())
        );
        assert_eq!(
            verify_err(&policy, &forged, now()),
            TokenRejection::BadSignature
        );

        // Signed with the right kid but the wrong secret.
        let token = sign(&claims, Algorithm::HS256, Some("k1"), &SECRET_B);
        assert_eq!(
            verify_err(&policy, &token, now()),
            TokenRejection::BadSignature
        );
    }

    #[test]
    fn unknown_and_missing_kid_are_rejected() {
        let n = now().as_second();
        let claims = claims_at(n, n + 60);
        let token = sign(&claims, Algorithm::HS256, Some("k9"), &SECRET_A);
        assert_eq!(
            verify_err(&policy(), &token, now()),
            TokenRejection::UnknownKeyId("k9".into())
        );
        let token = sign(&claims, Algorithm::HS256, None, &SECRET_A);
        assert_eq!(
            verify_err(&policy(), &token, now()),
            TokenRejection::MissingKeyId
        );
        let token = sign(&claims, Algorithm::HS256, Some(""), &SECRET_A);
        assert_eq!(
            verify_err(&policy(), &token, now()),
            TokenRejection::MissingKeyId
        );
    }

    #[test]
    fn retired_key_verifies_until_removed() {
        let old = policy_with(key("k1", SECRET_A), vec![]);
        let token = issue(&old, now());

        let rotated = policy_with(key("k2", SECRET_B), vec![key("k1", SECRET_A)]);
        let verified = rotated.verify(&token, now()).unwrap();
        assert_eq!(verified.kid(), "k1");
        // New tokens are signed with the new key.
        let fresh = issue(&rotated, now());
        assert_eq!(rotated.verify(&fresh, now()).unwrap().kid(), "k2");
        assert_eq!(rotated.active_kid(), "k2");

        let retired_removed = policy_with(key("k2", SECRET_B), vec![]);
        assert_eq!(
            verify_err(&retired_removed, &token, now()),
            TokenRejection::UnknownKeyId("k1".into())
        );
        assert!(retired_removed.verify(&fresh, now()).is_ok());
    }

    #[test]
    fn oversized_and_malformed_tokens_are_rejected() {
        let huge = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(
            verify_err(&policy(), &huge, now()),
            TokenRejection::TooLarge {
                len: MAX_TOKEN_LEN + 1,
                max: MAX_TOKEN_LEN
            }
        );
        let token = issue(&policy(), now());
        for bad in [
            "",
            "abc",
            "a.b",
            "a.b.c.d",
            "!!!.b.c",
            &format!("{token}.x"),
            &format!("{}.e30.", b64url(b"not json")),
            &format!("{}.e30.", b64url(br#"{"kid":"k1"}"#)),
        ] {
            assert!(
                matches!(
                    verify_err(&policy(), bad, now()),
                    TokenRejection::Malformed { .. }
                ),
                "{bad:?}"
            );
        }
        let crit = format!(
            "{}.e30.",
            b64url(br#"{"alg":"HS256","kid":"k1","crit":["exp"]}"#)
        );
        assert_eq!(
            verify_err(&policy(), &crit, now()),
            TokenRejection::CriticalHeader
        );
        // Claims that are signed but of the wrong shape.
        let n = now().as_second();
        let mut claims = claims_at(n, n + 60);
        claims.sub = "Not A Client".into();
        let token = sign(&claims, Algorithm::HS256, Some("k1"), &SECRET_A);
        assert_eq!(
            verify_err(&policy(), &token, now()),
            TokenRejection::InvalidClaim("sub")
        );
        let mut claims = claims_at(n, n + 60);
        claims.scope = "deployer  bad".into();
        let token = sign(&claims, Algorithm::HS256, Some("k1"), &SECRET_A);
        assert_eq!(
            verify_err(&policy(), &token, now()),
            TokenRejection::InvalidClaim("scope")
        );
    }

    #[test]
    fn rejection_messages_carry_no_secrets() {
        let n = now().as_second();
        let claims = claims_at(n, n + 60);
        let token = sign(&claims, Algorithm::HS256, Some("k1"), &SECRET_B);
        let err = verify_err(&policy(), &token, now());
        assert_eq!(err.code(), "token_bad_signature");
        let text = format!("{err} {err:?}");
        assert!(!text.contains(&token));
        let policy_debug = format!("{:?}", policy());
        assert!(policy_debug.contains("[redacted]"));
        assert!(!policy_debug.contains("161")); // 0xA1 as a decimal byte
    }

    #[test]
    fn issue_refuses_bad_jti_and_oversized_tokens() {
        let policy = policy();
        for jti in ["", "has space", &"x".repeat(129)] {
            assert!(matches!(
                policy.issue(&client(), &scope(), now(), jti),
                Err(TokenError::InvalidJti)
            ));
        }
        assert!(matches!(
            policy.issue(&client(), &scope(), ts("1969-12-31T23:59:59Z"), "j"),
            Err(TokenError::TimeOutOfRange)
        ));
        let user = |i: usize| UserName::new(format!("user-{i:02}-{}", "x".repeat(50))).unwrap();
        let many = Scope::users((0..40).map(user));
        assert!(matches!(many, Err(ScopeError::TooLong(_))));

        // The longest scope with a long (multi-byte) issuer and audience would not fit.
        let widest = Scope::users((0..34).map(user)).unwrap();
        assert!(policy.issue(&client(), &widest, now(), "j").is_ok());
        let mut config = TokenConfig::new("𝔨".repeat(256), "𝔞".repeat(256), key("k1", SECRET_A));
        config.lifetime = Duration::from_secs(60);
        let verbose = TokenPolicy::new(config).unwrap();
        assert!(matches!(
            verbose.issue(&client(), &widest, now(), "j"),
            Err(TokenError::TooLarge {
                max: MAX_TOKEN_LEN,
                ..
            })
        ));
    }

    #[test]
    fn signing_key_validation() {
        let err = SigningKey::new("k1", vec![0u8; 31]).unwrap_err();
        assert_eq!(
            err,
            TokenConfigError::SecretTooShort {
                kid: "k1".into(),
                len: 31
            }
        );
        assert!(err.to_string().contains("at least 32 bytes (256 bits)"));
        assert!(SigningKey::new("k1", vec![0u8; 32]).is_ok());
        for kid in ["", "has space", "k/1", &"k".repeat(65)] {
            assert!(matches!(
                SigningKey::new(kid, vec![0u8; 32]),
                Err(TokenConfigError::InvalidKeyId(_))
            ));
        }
        let debug = format!("{:?}", key("k1", SECRET_A));
        assert_eq!(debug, r#"SigningKey { kid: "k1", secret: "[redacted]" }"#);
    }

    #[test]
    fn config_validation() {
        let build = |f: &dyn Fn(&mut TokenConfig)| {
            let mut config = TokenConfig::new("keyrot", "keyrot-api", key("k1", SECRET_A));
            f(&mut config);
            TokenPolicy::new(config).map(|p| p.lifetime())
        };
        assert_eq!(build(&|_| {}).unwrap(), Duration::from_secs(120));
        assert!(build(&|c| c.lifetime = Duration::from_secs(3600)).is_ok());
        for lifetime in [0, 3601] {
            assert_eq!(
                build(&|c| c.lifetime = Duration::from_secs(lifetime)),
                Err(TokenConfigError::InvalidLifetime(Duration::from_secs(
                    lifetime
                )))
            );
        }
        assert!(matches!(
            build(&|c| c.lifetime = Duration::from_millis(1500)),
            Err(TokenConfigError::InvalidLifetime(_))
        ));
        assert!(build(&|c| c.leeway = Duration::ZERO).is_ok());
        assert!(matches!(
            build(&|c| c.leeway = Duration::from_secs(31)),
            Err(TokenConfigError::InvalidLeeway(_))
        ));
        assert_eq!(
            build(&|c| c.issuer = String::new()),
            Err(TokenConfigError::InvalidIssuer)
        );
        assert_eq!(
            build(&|c| c.audience = "a\nb".into()),
            Err(TokenConfigError::InvalidAudience)
        );
        let dup = |kids: &[&str]| {
            let mut config = TokenConfig::new("keyrot", "keyrot-api", key("k1", SECRET_A));
            config.retired_keys = kids.iter().map(|k| key(k, SECRET_B)).collect();
            TokenPolicy::new(config).err()
        };
        assert_eq!(
            dup(&["k1"]),
            Some(TokenConfigError::DuplicateKeyId("k1".into()))
        );
        assert_eq!(
            dup(&["k0", "k0"]),
            Some(TokenConfigError::DuplicateKeyId("k0".into()))
        );
        assert_eq!(dup(&["k0", "k2"]), None);
    }

    fn registry_json(clients: &str) -> String {
        format!(r#"{{"clients":[{clients}]}}"#)
    }

    fn client_json(id: &str, key: &str, scope: &str, cidrs: &str) -> String {
        format!(
            r#"{{"id":"{id}","api_key_sha256":"{}","scope":{scope},"allowed_cidrs":{cidrs}}}"#,
            ApiKeyDigest::of(key)
        )
    }

    fn registry() -> ClientRegistry {
        let clients = [
            client_json(
                "ci",
                "krk_ci",
                r#"["deployer"]"#,
                r#"["10.0.0.0/8","::1/128"]"#,
            ),
            client_json("ops", "krk_ops", r#"["*"]"#, r#"["2001:db8::/32"]"#),
            client_json(
                "batch",
                "krk_batch",
                r#"["a","b"]"#,
                r#"["192.168.1.7/32"]"#,
            ),
        ]
        .join(",");
        ClientRegistry::from_json(&registry_json(&clients)).unwrap()
    }

    #[test]
    fn authenticate_picks_the_right_client() {
        let registry = registry();
        for id in ["ci", "ops", "batch"] {
            let client = registry.authenticate(&format!("krk_{id}")).unwrap();
            assert_eq!(client.id().as_str(), id);
        }
        assert_eq!(
            registry.authenticate("krk_nobody").unwrap_err(),
            AuthError::Unknown
        );
        assert_eq!(
            registry.authenticate("krk_ci ").unwrap_err(),
            AuthError::Unknown
        );
        assert_eq!(registry.authenticate("").unwrap_err(), AuthError::Missing);
        assert_eq!(
            registry
                .authenticate(&"k".repeat(MAX_API_KEY_LEN + 1))
                .unwrap_err(),
            AuthError::TooLong
        );
        // The digest itself is not the key.
        let digest = ApiKeyDigest::of("krk_ci").to_hex();
        assert_eq!(
            registry.authenticate(&digest).unwrap_err(),
            AuthError::Unknown
        );
        let empty = ClientRegistry::from_json(r#"{"clients":[]}"#).unwrap();
        assert_eq!(
            empty.authenticate("krk_ci").unwrap_err(),
            AuthError::Unknown
        );
    }

    #[test]
    fn api_keys_and_digests() {
        let key = ApiKey::generate_from([0xAB; 32]);
        assert_eq!(key, format!("krk_{}", "ab".repeat(32)));
        let digest = ApiKeyDigest::of(&key);
        assert_eq!(digest.to_hex().parse::<ApiKeyDigest>().unwrap(), digest);
        assert_eq!(
            digest
                .to_hex()
                .to_uppercase()
                .parse::<ApiKeyDigest>()
                .unwrap(),
            digest
        );
        // SHA-256("abc"), FIPS 180-2 test vector.
        assert_eq!(
            ApiKeyDigest::of("abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let json = serde_json::to_string(&digest).unwrap();
        assert_eq!(json, format!("\"{}\"", digest.to_hex()));
        assert_eq!(serde_json::from_str::<ApiKeyDigest>(&json).unwrap(), digest);
        assert_eq!(
            "abc".parse::<ApiKeyDigest>(),
            Err(DigestParseError::Length(3))
        );
        assert_eq!(
            "g".repeat(64).parse::<ApiKeyDigest>(),
            Err(DigestParseError::Character('g'))
        );
        assert_ne!(ApiKeyDigest::of("a"), ApiKeyDigest::of("b"));
    }

    #[test]
    fn ip_allowlists() {
        let registry = registry();
        let ci = registry.get(&ClientId::new("ci").unwrap()).unwrap();
        let ops = registry.get(&ClientId::new("ops").unwrap()).unwrap();
        let batch = registry.get(&ClientId::new("batch").unwrap()).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(ci.allows_ip(ip("10.1.2.3")));
        assert!(ci.allows_ip(ip("::ffff:10.0.0.1")));
        assert!(ci.allows_ip(ip("::1")));
        assert!(!ci.allows_ip(ip("11.0.0.1")));
        assert!(!ci.allows_ip(ip("::ffff:11.0.0.1")));
        assert!(!ci.allows_ip(ip("::2")));
        assert!(!ci.allows_ip(ip("127.0.0.1")));
        assert!(ops.allows_ip(ip("2001:db8:1::5")));
        assert!(!ops.allows_ip(ip("2001:db9::1")));
        assert!(!ops.allows_ip(ip("10.0.0.1")));
        assert!(batch.allows_ip(ip("192.168.1.7")));
        assert!(batch.allows_ip(ip("::ffff:192.168.1.7")));
        assert!(!batch.allows_ip(ip("192.168.1.8")));
    }

    #[test]
    fn scopes() {
        let user = |s: &str| UserName::new(s).unwrap();
        let scope: Scope = "deployer ci-bot deployer".parse().unwrap();
        assert!(scope.allows(&user("deployer")));
        assert!(scope.allows(&user("ci-bot")));
        assert!(!scope.allows(&user("admin")));
        assert!(!scope.is_all());
        assert_eq!(scope.to_string(), "ci-bot deployer");
        assert_eq!(scope.to_string().parse::<Scope>().unwrap(), scope);
        let all: Scope = "*".parse().unwrap();
        assert!(all.is_all() && all.allows(&user("anyone")) && all.user_names().is_none());
        assert_eq!(all.to_string(), "*");
        assert_eq!("".parse::<Scope>(), Err(ScopeError::Empty));
        assert_eq!("a  b".parse::<Scope>(), Err(ScopeError::EmptyEntry));
        assert_eq!(" a".parse::<Scope>(), Err(ScopeError::EmptyEntry));
        assert_eq!("* a".parse::<Scope>(), Err(ScopeError::WildcardWithNames));
        assert!(matches!(
            "a ../b".parse::<Scope>(),
            Err(ScopeError::UserName { .. })
        ));
        assert!(matches!(
            "x".repeat(MAX_SCOPE_LEN + 1).parse::<Scope>(),
            Err(ScopeError::TooLong(_))
        ));
        assert_eq!(Scope::users([]), Err(ScopeError::Empty));
        assert_eq!(
            serde_json::to_string(&scope).unwrap(),
            r#"["ci-bot","deployer"]"#
        );
        assert_eq!(
            serde_json::from_str::<Scope>(r#"["*"]"#).unwrap(),
            Scope::all()
        );
    }

    #[test]
    fn registry_validation_errors_name_client_and_fix() {
        let ok_cidrs = r#"["10.0.0.0/8"]"#;
        let err = |clients: &[String]| {
            ClientRegistry::from_json(&registry_json(&clients.join(",")))
                .unwrap_err()
                .to_string()
        };
        let e = err(&[client_json("Bad Id", "k", r#"["a"]"#, ok_cidrs)]);
        assert!(e.contains("clients[0]") && e.contains("\"Bad Id\""), "{e}");

        let e = err(&[
            client_json("ci", "k1", r#"["a"]"#, ok_cidrs),
            client_json("ci", "k2", r#"["a"]"#, ok_cidrs),
        ]);
        assert!(
            e.contains("clients[1]") && e.contains("already used"),
            "{e}"
        );

        let e = err(&[
            client_json("ci", "same", r#"["a"]"#, ok_cidrs),
            client_json("cd", "same", r#"["a"]"#, ok_cidrs),
        ]);
        assert!(e.contains("(cd)") && e.contains("same as client ci"), "{e}");

        let bad_hex =
            r#"{"id":"ci","api_key_sha256":"zz","scope":["a"],"allowed_cidrs":["10.0.0.0/8"]}"#;
        let e = err(&[bad_hex.to_owned()]);
        assert!(e.contains("(ci)") && e.contains("64 hex digits"), "{e}");

        let e = err(&[client_json("ci", "k", "[]", ok_cidrs)]);
        assert!(e.contains("(ci)") && e.contains("scope"), "{e}");
        let e = err(&[client_json("ci", "k", r#"["*","a"]"#, ok_cidrs)]);
        assert!(e.contains("scope"), "{e}");

        let e = err(&[client_json("ci", "k", r#"["a"]"#, r#"["10.0.0.300/8"]"#)]);
        assert!(
            e.contains("\"10.0.0.300/8\"") && e.contains("not a CIDR"),
            "{e}"
        );
        let e = err(&[client_json("ci", "k", r#"["a"]"#, r#"["10.0.0.1"]"#)]);
        assert!(e.contains("10.0.0.1/32 for one address"), "{e}");
        let e = err(&[client_json("ci", "k", r#"["a"]"#, r#"["10.0.0.1/8"]"#)]);
        assert!(e.contains("did you mean 10.0.0.0/8"), "{e}");
        let e = err(&[client_json("ci", "k", r#"["a"]"#, "[]")]);
        assert!(e.contains("allowed_cidrs is empty"), "{e}");

        let e = ClientRegistry::from_json(r#"{"clients":[{"id":"ci"}]}"#).unwrap_err();
        assert!(matches!(e, RegistryError::Json(_)));
        let e = ClientRegistry::from_json(r#"{"clients":[],"extra":1}"#).unwrap_err();
        assert!(matches!(e, RegistryError::Json(_)));

        // Typed errors keep the cause for the error chain.
        let e = ClientRegistry::from_json(&registry_json(&client_json(
            "ci",
            "k",
            r#"["../x"]"#,
            ok_cidrs,
        )))
        .unwrap_err();
        assert!(matches!(
            e,
            RegistryError::InvalidScope {
                index: 0,
                source: ScopeError::UserName { .. },
                ..
            }
        ));

        // serde gives the same validation.
        let json = registry_json(&client_json("ci", "k", r#"["a"]"#, "[]"));
        let e = serde_json::from_str::<ClientRegistry>(&json).unwrap_err();
        assert!(e.to_string().contains("allowed_cidrs is empty"), "{e}");
        let json = registry_json(&client_json("ci", "k", r#"["a"]"#, ok_cidrs));
        assert_eq!(
            serde_json::from_str::<ClientRegistry>(&json)
                .unwrap()
                .clients()
                .len(),
            1
        );
    }

    #[test]
    fn base64url_decoder_is_strict() {
        assert_eq!(base64url_decode("").unwrap(), b"");
        assert_eq!(base64url_decode("YQ").unwrap(), b"a");
        assert_eq!(base64url_decode("YWI").unwrap(), b"ab");
        assert_eq!(base64url_decode("YWJj").unwrap(), b"abc");
        assert_eq!(
            base64url_decode(&b64url(&[0xfb, 0xff])).unwrap(),
            [0xfb, 0xff]
        );
        assert!(base64url_decode("YR").is_none()); // stray low bits
        assert!(base64url_decode("YQ==").is_none()); // padding
        assert!(base64url_decode("Y").is_none());
        assert!(base64url_decode("+/8A").is_none()); // standard alphabet
    }
}
