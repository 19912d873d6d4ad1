//! keyrot's API, once, without a transport: `POST /generate-token`, `GET /active-key` and
//! `GET /health` as a function from an [`http::Request`] to an [`http::Response`].
//!
//! It never listens on a socket, reads the clock or draws random numbers, and performs no IO of
//! its own beyond the [`SecretStore`] it is given; the token rules themselves are
//! [`keyrot_core::token`]'s. The adapter (the
//! Lambda function behind API Gateway, the local hyper server) passes the true source address,
//! the request id, `now` and a fresh token id in a [`RequestContext`], strips any API Gateway
//! stage prefix from the path, and turns the [`ApiResponse`] back into its own response type
//! and its [`ApiOutcome`] into metrics.
//!
//! The key types: [`Api`] (built by [`Api::new`] from an [`ApiConfig`], the
//! [`TokenPolicy`], the [`ClientRegistry`] and the store), [`RequestContext`], [`ApiResponse`],
//! [`ApiOutcome`] and [`ErrorCode`].
//!
//! # The rules
//!
//! - **Routes.** `POST /generate-token` takes the API key in `x-api-key` and answers
//!   `{"token", "token_type": "Bearer", "expires_in", "expires_at"}`. `GET /active-key?username=U`
//!   takes the API key in `x-api-key` *and* a token in `Authorization: Bearer <jwt>`, always;
//!   the token must have been issued to the API key's client, and it answers
//!   `{"UserName", "AccessKeyId", "SecretAccessKey", "RetrievedAt"}`. `GET /health` needs no
//!   credentials and answers `{"status": "ok"}`. `GET /admin/status` (when the API has a
//!   [`StatusSource`], see [`Api::with_status_source`]) takes the API key and a token like
//!   `/active-key`, and needs the admin right (`keyrot:admin`, never implied by `*`) in both
//!   the token's and the client's scope, else `403`; it answers `{"generated_at", "users"}`,
//!   every managed user's keys, stages and next action, and never a secret. Paths match exactly (no trailing slash, case
//!   sensitive); another path is `404 not_found`, another method `405 method_not_allowed`.
//! - **Order of checks.** Size limits first (`414`, `431`, `413`), then the source address's
//!   rate limit (`429`), then the route and method, then authentication, then the client's rate
//!   limit (`429`), then the request's own input (`400`), then the scope (`403`), then the
//!   store. So a caller without valid credentials learns nothing beyond `401`, whatever else
//!   is wrong with the request.
//! - **Rate limits** ([`RateLimits`]) per source address and per authenticated client: over
//!   one is `429 rate_limited` with `Retry-After`; their clock is [`RequestContext::now`].
//! - **`WWW-Authenticate: Bearer realm="keyrot"`** on every `401`, with RFC 6750's `error`
//!   read from the request's own `Authorization` header, never from which check failed.
//! - **Authentication** is one answer, `401 unauthorized`, whichever check failed: the API key
//!   missing, repeated, not visible ASCII, too long or unknown; the source address outside the
//!   client's allowlist (so a stolen key is not even confirmed from elsewhere); the
//!   `Authorization` header missing, repeated, not visible ASCII or not `Bearer <token>`; the
//!   token refused by [`TokenPolicy::verify_for_client`] for any reason (`alg`, `kid`,
//!   signature, issuer, audience, times, another client's token). The audit log records which.
//! - **The `Bearer` scheme is matched case-insensitively** (`bearer`, `BEARER`), as RFC 9110
//!   §11.1 says authentication schemes are; it is followed by one or more spaces and a token of
//!   the RFC 6750 `b64token` characters. Accepting the lower-case spelling weakens nothing: the
//!   token itself is checked in full.
//! - **The source address** is [`RequestContext::source_ip`] alone: the API Gateway request
//!   context's `sourceIp` or the socket peer. `X-Forwarded-For` and similar headers are never
//!   read.
//! - **Scope.** A client may read a user only if both the token's scope and the client's scope
//!   in the registry (which may have been narrowed since the token was issued) allow it;
//!   otherwise `403 forbidden`, the same answer whether or not the user exists, because the
//!   store is not asked. An allowed user with no stored key is `404 key_not_found`.
//! - **The query** of `/active-key` must be exactly one `username` parameter. It is
//!   percent-decoded as RFC 3986 says (a `+` stays a `+`, as API Gateway leaves it, so
//!   `username=a+b` names the IAM user `a+b`), and must then be a valid IAM user name. A
//!   missing, empty, repeated, undecodable or invalid name, or any other parameter, is `400`.
//!   The other routes ignore their query.
//! - **Every response** carries `Content-Type: application/json`, `Cache-Control: no-store` and
//!   `X-Content-Type-Options: nosniff`; errors are `{"error": {"code", "message"}}` with a code
//!   from [`ErrorCode`].
//! - **Audit.** One event per request on the target `keyrot::audit` (`INFO`, `WARN` for a
//!   `5xx`), with the request id, source address, method, route, client id and user name (each
//!   only once validated), token id, outcome, status and the precise reason. Never an API
//!   key, a token or a secret access key.
//! - **Cache.** Current keys are cached per user for [`ApiConfig::cache_ttl`], which must be
//!   shorter than the rotation policy's grace period: a superseded key stays active for at
//!   least the grace period, so a cached key is never one the rotator has deactivated. Only
//!   found keys are cached, and for as long the fact that the store has no key for a user
//!   (negative caching: unknown names asked for again and again do not reach the store); a
//!   store failure is never papered over with a stale entry.
//! - **No `5xx` from input.** Nothing a caller sends leads to a `5xx` or a panic; only a
//!   failing store (`503 store_unavailable`) or an unusable token configuration
//!   (`500 internal_error`) does.
//!
//! ```
//! use std::net::IpAddr;
//! use std::sync::Arc;
//!
//! use futures::executor::block_on;
//! use keyrot_api::{Api, ApiConfig, ApiOutcome, RequestContext};
//! use keyrot_core::fake::{FakeAws, FaultRates};
//! use keyrot_core::token::{ApiKey, ApiKeyDigest, ClientRegistry, SigningKey, TokenConfig, TokenPolicy};
//! use keyrot_core::{Policy, Timestamp};
//!
//! let now: Timestamp = "2025-06-01T12:00:00Z".parse()?;
//! let api_key = ApiKey::generate_from([7; 32]);
//! let clients = ClientRegistry::from_json(&format!(
//!     r#"{{"clients": [{{"id": "ci", "api_key_sha256": "{}",
//!         "scope": ["deployer"], "allowed_cidrs": ["10.0.0.0/8"]}}]}}"#,
//!     ApiKeyDigest::of(&api_key),
//! ))?;
//! let tokens = TokenPolicy::new(TokenConfig::new(
//!     "keyrot",
//!     "keyrot-api",
//!     SigningKey::new("2025-06", vec![42u8; 32])?,
//! ))?;
//! let store = FakeAws::new(now, 1, FaultRates::none()).store;
//! let api = Api::new(ApiConfig::new(&Policy::builder().build()?), tokens, clients, Arc::new(store))?;
//!
//! let ip: IpAddr = "10.1.2.3".parse()?;
//! let request = http::Request::post("/generate-token")
//!     .header("x-api-key", &api_key)
//!     .body(Vec::new())?;
//! let response = block_on(api.handle(request, RequestContext::new(ip, "req-1", now, "jti-1")));
//! assert_eq!(response.outcome(), ApiOutcome::TokenIssued);
//! assert_eq!(response.response().headers()["cache-control"], "no-store");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use http::header::{ALLOW, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Method, StatusCode};

use keyrot_core::accounts::AccountId;
use keyrot_core::model::{Credentials, Timestamp, UserName};
use keyrot_core::ports::SecretStore;
use keyrot_core::token::{Client, ClientId, ClientRegistry, IssuedToken, TokenPolicy};

mod adapter;
mod admin;
mod cache;
mod config;
mod limit;
mod outcome;
mod page;
mod request;
mod response;
mod route;

pub use adapter::{AdapterAnswer, AdapterRoute};
pub use admin::{Status, StatusSource};
use cache::KeyCache;
pub use config::{ApiConfig, ApiConfigError, DEFAULT_CACHE_TTL, Limits};
use limit::Limiter;
pub use limit::{Rate, RateError, RateLimits};
pub use outcome::ApiOutcome;
use request::{Credential, Rejection};
use route::Route;

// ---------------------------------------------------------------------------------------------
// Requests, responses and outcomes
// ---------------------------------------------------------------------------------------------

/// The response to a request the transport could not even hand to [`Api::handle`] (such as
/// [`ErrorCode::InvalidRequest`]): the API's uniform error body and the headers of its every
/// response. The adapter writes its own audit line for it.
pub fn error_response(code: ErrorCode) -> http::Response<String> {
    response::error(code)
}

/// What the adapter knows about a request besides the request itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    /// The true source address: API Gateway's `requestContext.identity.sourceIp`, or the
    /// socket peer. Never taken from a header.
    pub source_ip: IpAddr,
    /// The request's id for the audit log (API Gateway's `requestContext.requestId`).
    pub request_id: String,
    /// Now, read once by the adapter.
    pub now: Timestamp,
    /// A fresh, unpredictable id for a token issued by this request (for example 16 random
    /// bytes in hex): 1 to 128 printable ASCII characters without spaces.
    pub jti: String,
}

impl RequestContext {
    /// A context from its parts.
    pub fn new(
        source_ip: IpAddr,
        request_id: impl Into<String>,
        now: Timestamp,
        jti: impl Into<String>,
    ) -> Self {
        Self {
            source_ip,
            request_id: request_id.into(),
            now,
            jti: jti.into(),
        }
    }
}

/// A stable, machine-readable error code: the `error.code` of every error response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// `400`: the transport could not read the request at all (for the Lambda adapter: an
    /// event API Gateway would not send); the API itself was not asked.
    InvalidRequest,
    /// `400`: the query of `/active-key` is not exactly one `username` parameter (another
    /// parameter, a repeated `username`, bad percent-encoding).
    InvalidQuery,
    /// `400`: `/active-key` was called without a `username` parameter.
    MissingUsername,
    /// `400`: the `username` parameter is not a valid IAM user name.
    InvalidUsername,
    /// `401`: authentication failed (API key, source address, bearer token); which check
    /// failed is only in the audit log.
    Unauthorized,
    /// `403`: the client may not read this user's key.
    Forbidden,
    /// `404`: no such route.
    NotFound,
    /// `404`: the client may read this user's key, but no key is stored for the user.
    KeyNotFound,
    /// `405`: the route exists but not with this method; the `Allow` header names the method.
    MethodNotAllowed,
    /// `413`: the body is larger than [`Limits::max_body_len`].
    BodyTooLarge,
    /// `414`: the path and query are longer than [`Limits::max_uri_len`].
    UriTooLong,
    /// `431`: too many headers, or a header or all of them too large.
    HeadersTooLarge,
    /// `408`: the request (its head or its body) did not arrive in time; written by the
    /// transport.
    RequestTimeout,
    /// `429`: over a rate limit ([`RateLimits`]); `Retry-After` says when to try again.
    RateLimited,
    /// `503`: the secret store failed; retrying later may work.
    StoreUnavailable,
    /// `500`: the API could not sign a token (its configuration cannot work).
    InternalError,
}

impl ErrorCode {
    /// The code as it appears in responses, metrics and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidQuery => "invalid_query",
            Self::MissingUsername => "missing_username",
            Self::InvalidUsername => "invalid_username",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::KeyNotFound => "key_not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::BodyTooLarge => "body_too_large",
            Self::UriTooLong => "uri_too_long",
            Self::HeadersTooLarge => "headers_too_large",
            Self::RequestTimeout => "request_timeout",
            Self::RateLimited => "rate_limited",
            Self::StoreUnavailable => "store_unavailable",
            Self::InternalError => "internal_error",
        }
    }

    /// The HTTP status that goes with the code.
    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidRequest
            | Self::InvalidQuery
            | Self::MissingUsername
            | Self::InvalidUsername => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound | Self::KeyNotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the response says to a person. The same for every failure behind one code.
    fn message(self) -> &'static str {
        match self {
            Self::InvalidRequest => "the request could not be read",
            Self::InvalidQuery => "the query must be exactly one username parameter",
            Self::MissingUsername => "the username query parameter is required",
            Self::InvalidUsername => {
                "username must be an IAM user name: 1 to 64 of A-Z a-z 0-9 + = , . @ _ -"
            }
            Self::Unauthorized => {
                "authentication failed: present a valid api key in x-api-key and, for \
                 /active-key, a bearer token issued to that api key's client, from an allowed \
                 network"
            }
            Self::Forbidden => "this client may not read that user's key",
            Self::NotFound => {
                "no such route; the routes are POST /generate-token, GET /active-key, GET /health"
            }
            Self::KeyNotFound => "no key is stored for that user",
            Self::MethodNotAllowed => "method not allowed on this route; see the Allow header",
            Self::BodyTooLarge => "the request body is too large",
            Self::UriTooLong => "the path and query are too long",
            Self::HeadersTooLarge => "the request headers are too large or too many",
            Self::RequestTimeout => "the request did not arrive in time",
            Self::RateLimited => "too many requests; try again after Retry-After seconds",
            Self::StoreUnavailable => "the secret store is unavailable; try again later",
            Self::InternalError => "internal error",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer to one request: the HTTP response, and what the adapter needs for metrics.
///
/// The body of a successful `/generate-token` or `/active-key` response is a credential;
/// `Debug` does not print it.
pub struct ApiResponse {
    response: http::Response<String>,
    outcome: ApiOutcome,
    client: Option<ClientId>,
    reason: &'static str,
}

impl ApiResponse {
    /// The HTTP response.
    pub fn response(&self) -> &http::Response<String> {
        &self.response
    }

    /// The HTTP response, to send.
    pub fn into_response(self) -> http::Response<String> {
        self.response
    }

    /// The response's status.
    pub fn status(&self) -> StatusCode {
        self.response.status()
    }

    /// What became of the request.
    pub fn outcome(&self) -> ApiOutcome {
        self.outcome
    }

    /// The authenticated client, if authentication got that far.
    pub fn client(&self) -> Option<&ClientId> {
        self.client.as_ref()
    }

    /// The precise reason recorded in the audit log, such as `ip_not_allowed` or
    /// `token_expired` (`ok` on success). Not sent to the caller.
    pub fn audit_reason(&self) -> &'static str {
        self.reason
    }
}

impl fmt::Debug for ApiResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body: &dyn fmt::Debug = match self.outcome {
            ApiOutcome::Failed(_)
            | ApiOutcome::Healthy
            | ApiOutcome::StatusServed
            | ApiOutcome::PageServed => self.response.body(),
            ApiOutcome::TokenIssued | ApiOutcome::KeyServed | ApiOutcome::AdapterAnswered => {
                &"[redacted]"
            }
        };
        f.debug_struct("ApiResponse")
            .field("status", &self.response.status())
            .field("outcome", &self.outcome)
            .field("client", &self.client)
            .field("reason", &self.reason)
            .field("body", body)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// The API
// ---------------------------------------------------------------------------------------------

/// What a successful request produced.
enum Success {
    Token(IssuedToken),
    Key {
        user: UserName,
        credentials: Credentials,
        retrieved_at: Timestamp,
    },
    Health,
    /// The admin status, as its JSON body (no secret in it).
    Status(String),
    /// The status page, as HTML (no secret in it).
    Page(String),
    Adapter(serde_json::Value),
}

/// What the audit line says about a request beyond its context and outcome. Only validated
/// values go in.
#[derive(Default)]
struct Audit {
    route: Option<Route>,
    client: Option<ClientId>,
    account: Option<AccountId>,
    user: Option<UserName>,
    jti: Option<String>,
}

/// The API: routes, authentication, scopes, the key cache and the audit log. Cheap to share
/// behind an `Arc`; [`Api::handle`] takes `&self`.
pub struct Api {
    config: ApiConfig,
    tokens: TokenPolicy,
    clients: ClientRegistry,
    store: Arc<dyn SecretStore>,
    cache: Arc<KeyCache>,
    accounts: Option<AccountStores>,
    status: Option<Arc<dyn StatusSource>>,
    limiter: Arc<Limiter>,
}

/// The secret store of each member account's users (with many accounts, the hub keeps them
/// under a prefix per account).
pub type AccountStores = Arc<dyn Fn(&AccountId) -> Arc<dyn SecretStore> + Send + Sync>;

impl fmt::Debug for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Api")
            .field("config", &self.config)
            .field("tokens", &self.tokens)
            .field("clients", &self.clients.clients().len())
            .field("cache", &self.cache)
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl Api {
    /// Checks `config` and builds the API.
    pub fn new(
        config: ApiConfig,
        tokens: TokenPolicy,
        clients: ClientRegistry,
        store: Arc<dyn SecretStore>,
    ) -> Result<Self, ApiConfigError> {
        config.validate()?;
        let cache = Arc::new(KeyCache::new(config.cache_ttl));
        let limiter = Arc::new(Limiter::new(config.rate_limits));
        Ok(Self {
            config,
            tokens,
            clients,
            store,
            cache,
            accounts: None,
            status: None,
            limiter,
        })
    }

    /// The API serving member accounts' users too (`GET /active-key?account=ID&username=X`),
    /// their keys read from `stores(account)`. Without it such a request is `404`. (Member
    /// accounts' keys are read from the store on each request, not cached.)
    #[must_use]
    pub fn with_account_stores(mut self, stores: AccountStores) -> Self {
        self.accounts = Some(stores);
        self
    }

    /// The same API with the admin route `GET /admin/status` answered from `source` (without
    /// one, that route is `404`).
    #[must_use]
    pub fn with_status_source(mut self, source: Arc<dyn StatusSource>) -> Self {
        self.status = Some(source);
        self
    }

    /// The same API with signing keys and a client registry read again, sharing this one's
    /// configuration, store, key cache and rate limiters (so reloading them costs no extra
    /// store reads and forgives no caller).
    pub fn with_secrets(&self, tokens: TokenPolicy, clients: ClientRegistry) -> Self {
        Self {
            config: self.config.clone(),
            tokens,
            clients,
            store: Arc::clone(&self.store),
            cache: Arc::clone(&self.cache),
            accounts: self.accounts.clone(),
            status: self.status.clone(),
            limiter: Arc::clone(&self.limiter),
        }
    }

    /// The configuration the API was built with. Adapters that read the body themselves (the
    /// local server) should refuse a declared length over [`Limits::max_body_len`] before
    /// reading, and stop reading at [`Limits::max_body_len`] + 1 bytes.
    pub fn config(&self) -> &ApiConfig {
        &self.config
    }

    /// Answers one request. The path must be the route's path without any API Gateway stage
    /// prefix; only the path and query of the URI are read. Never panics, and answers `5xx`
    /// only when the store fails or the token configuration cannot work.
    pub async fn handle<B: AsRef<[u8]>>(
        &self,
        request: http::Request<B>,
        ctx: RequestContext,
    ) -> ApiResponse {
        self.handle_with(request, ctx, None).await
    }

    /// [`Api::handle`], with one more route the adapter adds (see [`AdapterRoute`]).
    pub async fn handle_with<B: AsRef<[u8]>>(
        &self,
        request: http::Request<B>,
        ctx: RequestContext,
        adapter: Option<&AdapterRoute<'_>>,
    ) -> ApiResponse {
        let (parts, body) = request.into_parts();
        let mut audit = Audit::default();
        let result = self
            .dispatch(&parts, body.as_ref(), &ctx, &mut audit, adapter)
            .await;
        let (mut response, outcome, reason) = match &result {
            Ok(success) => {
                let (response, outcome) = response::success(success, ctx.now);
                let reason = match outcome {
                    ApiOutcome::Failed(_) => "response_not_serialisable",
                    _ => "ok",
                };
                (response, outcome, reason)
            }
            Err(rejection) => (
                response::error(rejection.code),
                ApiOutcome::Failed(rejection.code),
                rejection.reason,
            ),
        };
        let headers = response.headers_mut();
        match (outcome, audit.route, &result) {
            (ApiOutcome::Failed(ErrorCode::MethodNotAllowed), Some(route), _) => {
                headers.insert(ALLOW, route.allow());
            }
            (ApiOutcome::Failed(ErrorCode::Unauthorized), route, _) => {
                let reads_token = route == Some(Route::ActiveKey);
                let challenge = request::www_authenticate(&parts.headers, reads_token);
                headers.insert(WWW_AUTHENTICATE, challenge);
            }
            (
                _,
                _,
                Err(Rejection {
                    retry_after: Some(wait),
                    ..
                }),
            ) => {
                headers.insert(RETRY_AFTER, request::retry_after(*wait));
            }
            _ => {}
        }
        emit_audit(
            &ctx,
            &parts.method,
            &audit,
            outcome,
            reason,
            detail_of(&result),
        );
        ApiResponse {
            response,
            outcome,
            client: audit.client,
            reason,
        }
    }

    async fn dispatch(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
        ctx: &RequestContext,
        audit: &mut Audit,
        adapter: Option<&AdapterRoute<'_>>,
    ) -> Result<Success, Rejection> {
        request::check_limits(parts, body, &self.config.limits)?;
        self.limiter
            .source(ctx.source_ip, ctx.now)
            .map_err(|over| Rejection::rate_limited("source_rate_limited", over.0))?;
        let adapter = adapter.filter(|a| a.path == parts.uri.path());
        let route = match adapter {
            Some(adapter) => Route::Adapter(adapter.name),
            None => Route::find(parts.uri.path())
                .ok_or(Rejection::new(ErrorCode::NotFound, "no_route"))?,
        };
        audit.route = Some(route);
        if parts.method != route.method() {
            return Err(Rejection::new(
                ErrorCode::MethodNotAllowed,
                "method_not_allowed",
            ));
        }
        match route {
            Route::Health => Ok(Success::Health),
            Route::AdminStatus => self.admin_status(parts, ctx, audit, false).await,
            Route::AdminPage => self.admin_status(parts, ctx, audit, true).await,
            Route::Adapter(_) => {
                let client = self.authenticate(parts, ctx, audit)?;
                let answer = adapter.map(|a| a.answer).ok_or(Rejection::new(
                    ErrorCode::InternalError,
                    "adapter_route_lost",
                ))?;
                answer(client.id(), body)
                    .map(Success::Adapter)
                    .map_err(|code| Rejection::new(code, "adapter_refused"))
            }
            Route::GenerateToken => {
                let client = self.authenticate(parts, ctx, audit)?;
                self.tokens
                    .issue(client.id(), client.scope(), ctx.now, &ctx.jti)
                    .map(|issued| {
                        audit.jti = Some(ctx.jti.clone());
                        Success::Token(issued)
                    })
                    .map_err(|err| Rejection::from_issue_error(&err))
            }
            Route::ActiveKey => {
                // Parsed now so the audit line can name a valid user, refused only once the
                // caller has authenticated.
                let query = request::key_query(parts.uri.query());
                if let Ok((account, user)) = &query {
                    audit.account.clone_from(account);
                    audit.user = Some(user.clone());
                }
                let (client, verified) = self.authenticate_bearer(parts, ctx, audit)?;
                let (account, user) = query?;
                let allows = |scope: &keyrot_core::token::Scope| match &account {
                    None => scope.allows(&user),
                    Some(account) => scope.allows_in(account, &user),
                };
                if !allows(verified.scope()) {
                    return Err(Rejection::new(
                        ErrorCode::Forbidden,
                        "token_scope_denies_user",
                    ));
                }
                if !allows(client.scope()) {
                    return Err(Rejection::new(
                        ErrorCode::Forbidden,
                        "client_scope_denies_user",
                    ));
                }
                match account {
                    None => self.current_key(user, ctx.now).await,
                    Some(account) => self.member_key(&account, user, ctx.now).await,
                }
            }
        }
    }

    /// The client whose API key the request carries, if it calls from an allowed network.
    fn authenticate(
        &self,
        parts: &http::request::Parts,
        ctx: &RequestContext,
        audit: &mut Audit,
    ) -> Result<&Client, Rejection> {
        let key = request::credential(&parts.headers, Credential::ApiKey)?;
        let client = self
            .clients
            .authenticate(key)
            .map_err(Rejection::from_auth)?;
        audit.client = Some(client.id().clone());
        if !client.allows_ip(ctx.source_ip) {
            return Err(Rejection::new(ErrorCode::Unauthorized, "ip_not_allowed"));
        }
        self.limiter
            .client(client.id(), ctx.now)
            .map_err(|over| Rejection::rate_limited("client_rate_limited", over.0))?;
        Ok(client)
    }

    async fn current_key(&self, user: UserName, now: Timestamp) -> Result<Success, Rejection> {
        match self.cache.get(&user, now) {
            Some((Some(credentials), retrieved_at)) => {
                return Ok(Success::Key {
                    user,
                    credentials,
                    retrieved_at,
                });
            }
            Some((None, _)) => {
                return Err(Rejection::new(
                    ErrorCode::KeyNotFound,
                    "no_stored_key_cached",
                ));
            }
            None => {}
        }
        let found = self.store.current(&user).await;
        match &found {
            Ok(Some(credentials)) => self.cache.put(&user, Some(credentials), now),
            Ok(None) => self.cache.put(&user, None, now),
            Err(_) => {}
        }
        key_found(found, user, now)
    }

    /// A member account's user's current key, from that account's store (not cached).
    async fn member_key(
        &self,
        account: &AccountId,
        user: UserName,
        now: Timestamp,
    ) -> Result<Success, Rejection> {
        let stores = self.accounts.as_ref().ok_or(Rejection::new(
            ErrorCode::KeyNotFound,
            "accounts_not_served",
        ))?;
        key_found(stores(account).current(&user).await, user, now)
    }
}

/// The answer to a key request, from the store's.
fn key_found(
    found: Result<Option<Credentials>, keyrot_core::StoreError>,
    user: UserName,
    now: Timestamp,
) -> Result<Success, Rejection> {
    match found {
        Ok(Some(credentials)) => Ok(Success::Key {
            user,
            credentials,
            retrieved_at: now,
        }),
        Ok(None) => Err(Rejection::new(ErrorCode::KeyNotFound, "no_stored_key")),
        Err(err) => {
            Err(Rejection::new(ErrorCode::StoreUnavailable, "store_error")
                .with_detail(err.to_string()))
        }
    }
}

fn detail_of(result: &Result<Success, Rejection>) -> Option<&str> {
    result.as_ref().err().and_then(|r| r.detail.as_deref())
}

/// The longest request id written to the audit log, in characters.
const MAX_LOGGED_REQUEST_ID: usize = 128;

/// Writes the request's one audit line.
fn emit_audit(
    ctx: &RequestContext,
    method: &Method,
    audit: &Audit,
    outcome: ApiOutcome,
    reason: &'static str,
    detail: Option<&str>,
) {
    // Methods are HTTP tokens (no spaces or control characters), but may be long.
    let method = if method.as_str().len() <= 16 {
        method.as_str()
    } else {
        "other"
    };
    let request_id: String = ctx.request_id.chars().take(MAX_LOGGED_REQUEST_ID).collect();
    macro_rules! audit_event {
        ($level:expr) => {
            tracing::event!(
                target: "keyrot::audit",
                $level,
                request_id = ?request_id,
                source_ip = %ctx.source_ip,
                method,
                route = audit.route.map_or("unknown", Route::name),
                client = audit.client.as_ref().map(ClientId::as_str),
                account = audit.account.as_ref().map(AccountId::as_str),
                user = audit.user.as_ref().map(UserName::as_str),
                jti = audit.jti.as_deref(),
                outcome = outcome.as_str(),
                status = outcome.status().as_u16(),
                reason,
                detail,
                "api request"
            )
        };
    }
    if outcome.status().is_server_error() {
        audit_event!(tracing::Level::WARN);
    } else {
        audit_event!(tracing::Level::INFO);
    }
}
