//! JWTs: signing keys, the policy that issues and verifies tokens, their claims, and every
//! reason a token is refused.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind as JwtErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde::{Deserialize, Serialize};

use super::jws::RawHeader;
use super::{
    ClientId, DEFAULT_LEEWAY, DEFAULT_LIFETIME, MAX_JTI_LEN, MAX_LEEWAY, MAX_LIFETIME,
    MAX_TOKEN_LEN, MIN_SECRET_LEN, Scope,
};
use crate::model::Timestamp;

const MAX_KID_LEN: usize = 64;
const MAX_ISSUER_LEN: usize = 256;

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

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;
    use crate::model::UserName;
    use crate::token::ScopeError;
    use crate::token::jws::{BASE64URL, base64url_decode};

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
        BASE64URL.encode(bytes)
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
}
