//! The API function: API Gateway REST proxy events in, [`keyrot_api::Api`] answers out.
//!
//! The adapter adds nothing to the API's rules; it only translates, and reads what the core
//! must be told:
//!
//! - **The route is the event's `resource`**, the path of the API Gateway resource the request
//!   matched: exactly `/active-key`, since the template declares no `{proxy+}` or path
//!   parameters. The event's `path` (lambda_http's `RequestExt::raw_http_path`) is only the
//!   fallback should `resource` be missing: behind a custom domain with a base-path mapping it
//!   carries the base path (`/keys/active-key`), and lambda_http's `uri().path()` and the
//!   request context's `path` carry the stage or the base path too.
//! - **The true source address**: `requestContext.identity.sourceIp`, which API Gateway takes
//!   from the connection. `X-Forwarded-For` is only a header among others, which the API
//!   never reads. Without a parseable `sourceIp` (the console's test invocations send
//!   `test-invoke-source-ip`) the address is `0.0.0.0`, which only a client allowed from
//!   `0.0.0.0/0` accepts.
//! - **The request id** of `requestContext.requestId` (else Lambda's), `now` from the system
//!   clock, read once per request, and a token id of 16 bytes from the operating system's
//!   generator. Should that generator fail, the token id is empty, and the API refuses to
//!   issue a token with it (`500 internal_error`, audited) rather than issue a guessable one.
//!
//! The event is read here (see [`RestEvent`]) rather than through lambda_http's `Request`,
//! whose conversion loses or changes what the API must see: it merges `multiValueHeaders` into
//! single values (the API refuses a repeated `x-api-key` or `Authorization`, but would only see
//! the last one), re-encodes the decoded query as a form (a space becomes `+`, so
//! `username=a%20b` would name the user `a+b`), and panics on a `Host` header that is not a
//! valid host or on a body flagged base64 that is not. Nor through aws_lambda_events'
//! `ApiGatewayProxyRequest`: its query map panics on a parameter with an empty list of values,
//! and a header value that is not a string fails the whole invocation (API Gateway answers
//! `502`). Here repeated headers stay repeated, the query is re-encoded as RFC 3986 says (the
//! API decodes it back exactly), an event of another shape is a `400` ([`INVALID_EVENT_CODE`]),
//! and nothing a caller sends can panic. lambda_http's response type is used as it is.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::StatusCode;
use keyrot_api::{Api, ApiConfig, ApiConfigError, ApiOutcome, ErrorCode, error_response};
use keyrot_aws::{
    ApiSecretsError, AwsClients, AwsSettings, BackendSettings, SystemClock, load_api_secrets,
};
use keyrot_core::driver::error_chain;
use keyrot_core::token::{ClientRegistry, TokenPolicy};
use keyrot_core::{Clock, SecretStore, Timestamp};
use lambda_http::Body;
use lambda_http::aws_lambda_events::apigw::ApiGatewayProxyResponse;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use tracing::{info, warn};

use crate::config::{ApiFunctionConfig, ConfigError};
use crate::metrics::{self, api_line};
use crate::runtime::CONFIG_ERROR_TYPE;

mod event;

pub use event::{RestEvent, UnreadableEvent};

/// Why the API function could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiInitError {
    /// An environment variable is bad.
    #[error("invalid configuration")]
    Config(#[from] ConfigError),
    /// The signing keys or the client registry could not be loaded.
    #[error("could not load the api's secrets")]
    Secrets(#[from] ApiSecretsError),
    /// The API refused its configuration.
    #[error("invalid api configuration")]
    Api(#[from] ApiConfigError),
}

impl ApiInitError {
    /// The `errorType` reported to Lambda.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Config(_) | Self::Api(_) => CONFIG_ERROR_TYPE,
            Self::Secrets(ApiSecretsError::Read { .. }) => "keyrot.Retryable.Secrets",
            Self::Secrets(_) => "keyrot.NotRetryable.Secrets",
        }
    }
}

/// What one request produced: the response, what became of the request and the EMF line to
/// print.
///
/// A served key or token is in the response's body, so `Debug` prints the status, the headers
/// and the outcome, never the body.
pub struct Handled {
    /// The response for API Gateway.
    pub response: ApiGatewayProxyResponse,
    /// What became of the request.
    pub outcome: Outcome,
    /// The request's metrics (see [`crate::metrics`]).
    pub metrics: String,
}

impl fmt::Debug for Handled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handled")
            .field("status", &self.response.status_code)
            .field("headers", &self.response.headers)
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

/// What became of a request: the API's outcome, or an event the adapter could not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The API answered.
    Api(ApiOutcome),
    /// `400 invalid_request`: the event is not one API Gateway sends (see [`RestEvent`]); the
    /// API was not asked.
    InvalidEvent,
}

impl Outcome {
    /// The name in metrics: the API's (see [`ApiOutcome::as_str`]), or
    /// [`INVALID_EVENT_CODE`].
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api(outcome) => outcome.as_str(),
            Self::InvalidEvent => INVALID_EVENT_CODE,
        }
    }

    /// The response's status.
    pub fn status(self) -> StatusCode {
        match self {
            Self::Api(outcome) => outcome.status(),
            Self::InvalidEvent => StatusCode::BAD_REQUEST,
        }
    }
}

/// The error code of an event the adapter cannot read. The API's own codes are
/// [`keyrot_api::ErrorCode`]'s; API Gateway never sends such an event, only a direct
/// invocation can.
pub const INVALID_EVENT_CODE: &str = "invalid_request";

#[cfg(test)]
#[test]
fn the_invalid_event_code_is_the_apis() {
    assert_eq!(INVALID_EVENT_CODE, ErrorCode::InvalidRequest.as_str());
}

/// The audit line of an unreadable event, like the API's own (target `keyrot::audit`): the
/// field at fault, never its value.
fn audit_unreadable(lambda_request_id: &str, unreadable: UnreadableEvent) {
    info!(
        target: "keyrot::audit",
        request_id = ?lambda_request_id,
        route = "unknown",
        outcome = INVALID_EVENT_CODE,
        status = StatusCode::BAD_REQUEST.as_u16(),
        reason = "unreadable_event",
        detail = %unreadable,
        "api request"
    );
}

/// The most one AWS call of the API may take, its retries included. A request makes at most
/// one (the user's current key, unless cached), so a slow Secrets Manager is a
/// `503 store_unavailable` well within the function's timeout (`Timeout: 10` in
/// `cfn/template.yaml`), not a Lambda timeout that API Gateway turns into a bare `502`.
pub const AWS_OPERATION_TIMEOUT: Duration = Duration::from_secs(4);

/// How the API reaches AWS: at most [`AWS_OPERATION_TIMEOUT`] a call, 3 attempts with a first
/// backoff of 100 ms, 1 s to connect. Region, endpoint and credentials come from the standard
/// chain.
pub fn aws_settings() -> AwsSettings {
    AwsSettings {
        max_attempts: Some(3),
        initial_backoff: Some(Duration::from_millis(100)),
        connect_timeout: Some(Duration::from_secs(1)),
        operation_timeout: Some(AWS_OPERATION_TIMEOUT),
        ..AwsSettings::default()
    }
}

/// The longest a request waits for the signing keys and the client registry to be read again
/// (two calls, each bounded by [`AWS_OPERATION_TIMEOUT`]). With the request's own call, a
/// request takes at most `SECRETS_RELOAD_TIMEOUT + AWS_OPERATION_TIMEOUT`, 8 s of the 10.
pub const SECRETS_RELOAD_TIMEOUT: Duration = Duration::from_secs(4);

/// The API function: the [`Api`] it answers with, how to build it again with fresh secrets,
/// and where its metrics go.
///
/// Built by [`ApiFunction::load`] (or [`ApiFunction::from_env`]), it reads the signing keys
/// and the client registry again on the first request [`ApiFunctionConfig::api_secrets_ttl`]
/// after it last read them, and rebuilds the `Api` (whose key cache starts empty). Should
/// that fail (Secrets Manager down or slower than [`SECRETS_RELOAD_TIMEOUT`], a secret
/// malformed), it logs a warning, answers with the last good `Api`, and tries again a TTL
/// later. Built by [`ApiFunction::new`], it keeps its `Api`.
pub struct ApiFunction {
    current: Mutex<Current>,
    reload: Option<Reload>,
    namespace: String,
}

/// The `Api` answering now, and when its secrets were last read (or a reading failed).
struct Current {
    api: Arc<Api>,
    read_at: Timestamp,
}

/// What building the `Api` takes.
struct Reload {
    config: ApiFunctionConfig,
    aws: AwsClients,
    store: Arc<dyn SecretStore>,
}

impl Reload {
    /// Reads the signing keys and the client registry.
    async fn secrets(&self) -> Result<(TokenPolicy, ClientRegistry), ApiInitError> {
        let config = &self.config;
        let (keys, clients) = load_api_secrets(
            &self.aws.secrets,
            &config.signing_key_secret,
            &config.clients_secret,
        )
        .await?;
        Ok((config.token_policy(keys.active, keys.retired)?, clients))
    }

    /// Reads the signing keys and the client registry and builds the `Api` with them.
    async fn build(&self) -> Result<Api, ApiInitError> {
        let config = &self.config;
        let (tokens, clients) = self.secrets().await?;
        let mut api_config = ApiConfig::new(&config.rotation);
        api_config.cache_ttl = config.key_cache_ttl;
        Ok(Api::new(
            api_config,
            tokens,
            clients,
            Arc::clone(&self.store),
        )?)
    }
}

impl fmt::Debug for ApiFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let current = self.lock();
        f.debug_struct("ApiFunction")
            .field("api", &current.api)
            .field("read_at", &current.read_at)
            .field("reload", &self.reload.as_ref().map(|r| &r.config))
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl ApiFunction {
    /// A function answering with `api` for good, writing metrics to `namespace`.
    pub fn new(api: Api, namespace: impl Into<String>) -> Self {
        Self {
            current: Mutex::new(Current {
                api: Arc::new(api),
                read_at: Timestamp::MIN,
            }),
            reload: None,
            namespace: namespace.into(),
        }
    }

    /// The function `config` describes, its secrets read from Secrets Manager through `aws`
    /// at `now` and again every [`ApiFunctionConfig::api_secrets_ttl`], the users' keys read
    /// from `store`.
    pub async fn load(
        config: ApiFunctionConfig,
        aws: AwsClients,
        store: Arc<dyn SecretStore>,
        now: Timestamp,
    ) -> Result<Self, ApiInitError> {
        let reload = Reload { config, aws, store };
        let api = reload.build().await?;
        Ok(Self {
            current: Mutex::new(Current {
                api: Arc::new(api),
                read_at: now,
            }),
            namespace: reload.config.metrics_namespace.clone(),
            reload: Some(reload),
        })
    }

    /// The function as deployed: configuration from `lookup` (see [`crate::config`]), AWS from
    /// aws-config's standard chain with the API's [`aws_settings`], the signing keys and the
    /// client registry from Secrets Manager (see [`ApiFunction::load`]), the users' keys read
    /// through [`keyrot_aws::AwsSecretStore`].
    pub async fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ApiInitError> {
        let config = ApiFunctionConfig::from_env(lookup)?;
        let clients = AwsClients::from_settings(&aws_settings()).await;
        let store = BackendSettings {
            secret_prefix: config.secret_prefix.clone(),
            ..BackendSettings::default()
        }
        .store(&clients);
        let (prefix, issuer, audience) = (
            config.secret_prefix.clone(),
            config.issuer.clone(),
            config.audience.clone(),
        );
        let (cache_ttl, secrets_ttl) = (config.key_cache_ttl, config.api_secrets_ttl);
        // The edge reads the clock: the secrets are read now.
        let function = Self::load(config, clients, Arc::new(store), SystemClock.now()).await?;
        info!(%prefix, %issuer, %audience, ?cache_ttl, ?secrets_ttl, "api ready");
        Ok(function)
    }

    fn lock(&self) -> MutexGuard<'_, Current> {
        // A panic elsewhere cannot leave `Current` half written: both fields are set at once.
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The `Api` to answer with at `now`, rebuilt with fresh secrets if those it has were read
    /// a TTL ago or more (or, the clock having gone back, after `now`).
    async fn api_at(&self, now: Timestamp) -> Arc<Api> {
        let (api, read_at) = {
            let current = self.lock();
            (Arc::clone(&current.api), current.read_at)
        };
        let Some(reload) = &self.reload else {
            return api;
        };
        let fresh = Duration::try_from(now.duration_since(read_at))
            .is_ok_and(|age| age < reload.config.api_secrets_ttl);
        if fresh {
            return api;
        }
        // The new secrets join the current Api's key cache: reading them again costs no key
        // reads.
        let rebuilt = match tokio::time::timeout(SECRETS_RELOAD_TIMEOUT, reload.secrets()).await {
            Ok(Ok((tokens, clients))) => Some(Arc::new(api.with_secrets(tokens, clients))),
            Ok(Err(e)) => {
                warn!(
                    error = %error_chain(&e),
                    "could not read the api's secrets again; answering with those read before"
                );
                None
            }
            Err(_) => {
                warn!(
                    timeout = ?SECRETS_RELOAD_TIMEOUT,
                    "reading the api's secrets again took too long; answering with those read \
                     before"
                );
                None
            }
        };
        let mut current = self.lock();
        current.read_at = now;
        if let Some(rebuilt) = rebuilt {
            info!("api secrets read again");
            current.api = rebuilt;
        }
        Arc::clone(&current.api)
    }

    /// Answers one API Gateway event at `now`; `lambda_request_id` stands in for a missing
    /// API Gateway request id, `jti` is the id of a token this request may issue. An event
    /// the adapter cannot read (see [`RestEvent`]) is a `400 invalid_request`, audited.
    pub async fn handle(
        &self,
        event: Value,
        lambda_request_id: &str,
        now: Timestamp,
        jti: String,
    ) -> Handled {
        let (response, outcome) = match RestEvent::from_value(event) {
            Ok(event) => {
                let context = event.context(lambda_request_id, now, jti);
                let api = self.api_at(now).await;
                let answer = api.handle(event.into_request(), context).await;
                let outcome = Outcome::Api(answer.outcome());
                (answer.into_response(), outcome)
            }
            Err(unreadable) => {
                audit_unreadable(lambda_request_id, unreadable);
                (
                    error_response(ErrorCode::InvalidRequest),
                    Outcome::InvalidEvent,
                )
            }
        };
        let metrics = api_line(
            &self.namespace,
            outcome.as_str(),
            outcome.status().as_u16(),
            now,
        );
        Handled {
            response: gateway_response(response),
            outcome,
            metrics,
        }
    }
}

/// Serves API Gateway events until Lambda ends the process, printing each request's EMF line.
pub async fn serve(function: ApiFunction) -> Result<(), lambda_runtime::Error> {
    let function = &function;
    lambda_runtime::run(service_fn(
        // Any JSON: the adapter reads the event itself (see `RestEvent`).
        move |event: LambdaEvent<Value>| async move {
            // The edge reads the clock, once per request.
            let now = SystemClock.now();
            let handled = function
                .handle(event.payload, &event.context.request_id, now, fresh_jti())
                .await;
            metrics::emit(&handled.metrics);
            Ok::<_, lambda_runtime::Error>(handled.response)
        },
    ))
    .await
}

/// 16 bytes from the operating system's generator, in hex; empty if it failed (see the
/// module docs).
pub fn fresh_jti() -> String {
    use rand::TryRng;
    let mut bytes = [0u8; 16];
    match rand::rngs::SysRng.try_fill_bytes(&mut bytes) {
        Ok(()) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
        Err(e) => {
            warn!(error = %e, "the operating system's random generator failed");
            String::new()
        }
    }
}

/// The API's response as API Gateway's proxy integration expects it.
pub fn gateway_response(response: http::Response<String>) -> ApiGatewayProxyResponse {
    let (parts, body) = response.into_parts();
    // The type is non-exhaustive: filled in field by field.
    let mut out = ApiGatewayProxyResponse::default();
    out.status_code = i64::from(parts.status.as_u16());
    out.headers = parts.headers;
    out.body = Some(Body::Text(body));
    out.is_base64_encoded = false;
    out
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use keyrot_core::fake::{FakeAws, FaultRates};
    use keyrot_core::token::{
        ApiKey, ApiKeyDigest, ClientRegistry, SigningKey, TokenConfig, TokenPolicy,
    };
    use keyrot_core::{AccessKeyId, Credentials, Policy, SecretAccessKey, SecretStore, UserName};
    use lambda_http::RequestExt;

    use serde_json::json;

    use super::*;

    const ACTIVE_KEY: &str = include_str!("../tests/fixtures/apigw-rest-active-key.json");
    const BASE_PATH_ACTIVE_KEY: &str =
        include_str!("../tests/fixtures/apigw-rest-base-path-active-key.json");
    const GENERATE_TOKEN: &str = include_str!("../tests/fixtures/apigw-rest-generate-token.json");
    const HEALTH: &str = include_str!("../tests/fixtures/apigw-rest-health.json");
    const KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn now() -> Timestamp {
        "2025-06-01T12:00:00Z".parse().unwrap()
    }

    struct World {
        function: ApiFunction,
        api_key: String,
    }

    async fn world() -> World {
        let aws = FakeAws::new(now(), 1, FaultRates::none());
        let api_key = ApiKey::generate_from([7; 32]);
        let clients = ClientRegistry::from_json(&format!(
            r#"{{"clients": [{{"id": "ci", "api_key_sha256": "{}",
                "scope": ["ci-deployer", "ci+deployer"], "allowed_cidrs": ["52.255.255.0/24"]}}]}}"#,
            ApiKeyDigest::of(&api_key),
        ))
        .unwrap();
        let signing = SigningKey::new("k1", vec![42; 32]).unwrap();
        let tokens = TokenPolicy::new(TokenConfig::new("keyrot", "keyrot-api", signing)).unwrap();
        let user = UserName::new("ci-deployer").unwrap();
        let credentials = Credentials {
            access_key_id: AccessKeyId::new(KEY_ID).unwrap(),
            secret_access_key: SecretAccessKey::new(SECRET),
        };
        aws.store
            .put_pending(&user, &credentials, now())
            .await
            .unwrap();
        aws.store
            .promote(&user, &credentials.access_key_id)
            .await
            .unwrap();
        let api = Api::new(
            ApiConfig::new(&Policy::builder().build().unwrap()),
            tokens,
            clients,
            Arc::new(aws.store.clone()),
        )
        .unwrap();
        World {
            function: ApiFunction::new(api, "keyrot"),
            api_key,
        }
    }

    /// A fixture with its placeholders filled and `edit` applied to its JSON.
    fn event(fixture: &str, w: &World, token: &str, edit: impl FnOnce(&mut Value)) -> Value {
        let text = fixture
            .replace("{{API_KEY}}", &w.api_key)
            .replace("{{TOKEN}}", token);
        let mut value: Value = serde_json::from_str(&text).unwrap();
        edit(&mut value);
        value
    }

    struct Answer {
        status: StatusCode,
        body: Value,
        response: ApiGatewayProxyResponse,
        metrics: Value,
    }

    async fn call(w: &World, event: Value) -> Answer {
        let handled = w
            .function
            .handle(event, "lambda-request-id", now(), "jti-1".into())
            .await;
        let body = match &handled.response.body {
            Some(Body::Text(text)) => serde_json::from_str(text).unwrap(),
            other => panic!("not a text body: {other:?}"),
        };
        Answer {
            status: StatusCode::from_u16(u16::try_from(handled.response.status_code).unwrap())
                .unwrap(),
            body,
            metrics: serde_json::from_str(&handled.metrics).unwrap(),
            response: handled.response,
        }
    }

    fn from_allowed_address(event: &mut Value) {
        event["requestContext"]["identity"]["sourceIp"] = json!("52.255.255.12");
    }

    async fn token(w: &World) -> String {
        let a = call(w, event(GENERATE_TOKEN, w, "", from_allowed_address)).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        a.body["token"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn health_answers_on_the_stage_path() {
        let w = world().await;
        let a = call(&w, event(HEALTH, &w, "", |_| {})).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.body, json!({"status": "ok"}));
        assert_eq!(a.response.headers["cache-control"], "no-store");
        assert_eq!(a.response.headers["content-type"], "application/json");
        assert_eq!(a.metrics["Outcome"], "healthy");
        assert_eq!(a.metrics["StatusCode"], 200);
    }

    /// The route is the resource: lambda_http's URI has the stage, and behind a base-path
    /// mapping its raw HTTP path has the base path, on which no route would match.
    #[test]
    fn routes_see_the_resource() {
        for (fixture, uri_path, raw_path) in [
            (ACTIVE_KEY, "/prod/active-key", "/active-key"),
            (
                BASE_PATH_ACTIVE_KEY,
                "/prod/keys/active-key",
                "/keys/active-key",
            ),
        ] {
            let via_lambda_http = lambda_http::request::from_str(fixture).unwrap();
            assert_eq!(via_lambda_http.uri().path(), uri_path);
            assert_eq!(via_lambda_http.raw_http_path(), raw_path);
            let event = RestEvent::from_value(serde_json::from_str(fixture).unwrap()).unwrap();
            let request = event.into_request();
            assert_eq!(request.uri().path(), "/active-key");
            assert_eq!(request.uri().query(), Some("username=ci-deployer"));
            assert_eq!(request.method(), http::Method::GET);
        }
    }

    /// A custom domain maps the API under `/keys`: `path` is `/keys/active-key`, `resource`
    /// is `/active-key`.
    #[tokio::test]
    async fn a_base_path_mapping_routes_on_the_resource() {
        let w = world().await;
        let a = call(
            &w,
            event(GENERATE_TOKEN, &w, "", |e| {
                from_allowed_address(e);
                e["path"] = json!("/keys/generate-token");
            }),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        let token = a.body["token"].as_str().unwrap().to_owned();
        let a = call(&w, event(BASE_PATH_ACTIVE_KEY, &w, &token, |_| {})).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_eq!(a.body["AccessKeyId"], KEY_ID);
        // Without a resource, the path is the route.
        let a = call(
            &w,
            event(BASE_PATH_ACTIVE_KEY, &w, &token, |e| {
                e["resource"] = json!(null);
            }),
        )
        .await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);
    }

    #[tokio::test]
    async fn a_token_then_the_key_with_lower_and_mixed_case_headers() {
        let w = world().await;
        let token = token(&w).await;
        // The fixture sends `authorization` and `x-api-key` in lower case; the token request
        // sent `X-API-Key`.
        let a = call(&w, event(ACTIVE_KEY, &w, &token, |_| {})).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_eq!(a.body["AccessKeyId"], KEY_ID);
        assert_eq!(a.body["SecretAccessKey"], SECRET);
        assert_eq!(a.response.headers["cache-control"], "no-store");
        assert_eq!(a.metrics["Outcome"], "key_served");
        assert!(!a.metrics.to_string().contains(SECRET));
    }

    #[tokio::test]
    async fn debug_never_prints_a_served_key_or_token() {
        let w = world().await;
        let a = w
            .function
            .handle(
                event(GENERATE_TOKEN, &w, "", from_allowed_address),
                "lambda-request-id",
                now(),
                "jti-1".into(),
            )
            .await;
        assert_eq!(a.outcome, Outcome::Api(ApiOutcome::TokenIssued));
        let Some(Body::Text(body)) = &a.response.body else {
            panic!("no body")
        };
        let token = serde_json::from_str::<Value>(body).unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned();
        let debug = format!("{a:?}");
        assert!(!debug.contains(&token), "{debug}");
        assert!(debug.contains("TokenIssued"), "{debug}");

        let served = w
            .function
            .handle(
                event(ACTIVE_KEY, &w, &token, |_| {}),
                "lambda-request-id",
                now(),
                "jti-2".into(),
            )
            .await;
        assert_eq!(served.outcome, Outcome::Api(ApiOutcome::KeyServed));
        let debug = format!("{served:?}");
        assert!(!debug.contains(SECRET), "{debug}");
        assert!(!debug.contains(KEY_ID), "{debug}");
        assert!(
            debug.contains("200") && debug.contains("no-store"),
            "{debug}"
        );
    }

    #[tokio::test]
    async fn a_spoofed_forwarded_for_is_not_the_source() {
        let w = world().await;
        // The fixture comes from 198.51.100.7 and claims the allowed 52.255.255.12.
        let a = call(&w, event(GENERATE_TOKEN, &w, "", |_| {})).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert_eq!(a.body["error"]["code"], "unauthorized");
        assert_eq!(a.metrics["Outcome"], "unauthorized");
        // And the other way round: an allowed source whose first forwarded entry (10.9.8.7) is
        // not allowed is served.
        let token = token(&w).await;
        let a = call(&w, event(ACTIVE_KEY, &w, &token, |_| {})).await;
        assert_eq!(a.status, StatusCode::OK);
    }

    #[tokio::test]
    async fn without_a_source_address_nothing_authenticates() {
        let w = world().await;
        for source in [json!(null), json!("test-invoke-source-ip")] {
            let a = call(
                &w,
                event(GENERATE_TOKEN, &w, "", |e| {
                    e["requestContext"]["identity"]["sourceIp"] = source.clone();
                }),
            )
            .await;
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{source}");
        }
    }

    /// lambda_http would keep only the last of two `Authorization` headers.
    #[tokio::test]
    async fn a_repeated_authorization_header_stays_repeated() {
        let w = world().await;
        let token = token(&w).await;
        let duplicated = |e: &mut Value| {
            e["multiValueHeaders"]["authorization"] =
                json!(["Bearer not-a-token", format!("Bearer {token}")]);
        };
        let via_lambda_http = {
            let mut value: Value = serde_json::from_str(
                &ACTIVE_KEY
                    .replace("{{API_KEY}}", &w.api_key)
                    .replace("{{TOKEN}}", &token),
            )
            .unwrap();
            duplicated(&mut value);
            lambda_http::request::from_str(&value.to_string()).unwrap()
        };
        assert_eq!(
            via_lambda_http
                .headers()
                .get_all("authorization")
                .iter()
                .count(),
            1
        );

        let a = call(&w, event(ACTIVE_KEY, &w, &token, duplicated)).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    }

    /// API Gateway decodes `username=ci%20deployer` to `ci deployer`; it must stay a space
    /// (an invalid name), not become the `+` of `ci+deployer`, a user this client may read.
    #[tokio::test]
    async fn a_decoded_query_is_encoded_back_exactly() {
        let w = world().await;
        let token = token(&w).await;
        let with_user = |name: &str| {
            let name = name.to_owned();
            move |e: &mut Value| {
                e["queryStringParameters"] = json!({"username": name});
                e["multiValueQueryStringParameters"] = json!({"username": [name]});
            }
        };
        let a = call(&w, event(ACTIVE_KEY, &w, &token, with_user("ci deployer"))).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        assert_eq!(a.body["error"]["code"], "invalid_username");
        let a = call(&w, event(ACTIVE_KEY, &w, &token, with_user("ci+deployer"))).await;
        assert_eq!(a.body["error"]["code"], "key_not_found", "{}", a.body);
        let a = call(
            &w,
            event(ACTIVE_KEY, &w, &token, |e| {
                e["multiValueQueryStringParameters"] = json!({"username": ["ci-deployer", "x"]});
            }),
        )
        .await;
        assert_eq!(a.body["error"]["code"], "invalid_query", "{}", a.body);
    }

    #[tokio::test]
    async fn odd_bodies_and_paths_never_panic() {
        let w = world().await;
        type Edit = Box<dyn FnOnce(&mut Value)>;
        let cases: Vec<(Edit, StatusCode)> = vec![
            (
                Box::new(|e| {
                    e["body"] = json!("not base64 at all!");
                    e["isBase64Encoded"] = json!(true);
                }),
                StatusCode::UNAUTHORIZED,
            ),
            (
                Box::new(|e| {
                    e["body"] = json!("QUFB".repeat(400));
                    e["isBase64Encoded"] = json!(true);
                }),
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (
                Box::new(|e| e["resource"] = json!("/gen erate-token?x#y")),
                StatusCode::NOT_FOUND,
            ),
            (
                Box::new(|e| {
                    e["resource"] = json!(null);
                    e["path"] = json!(null);
                }),
                StatusCode::NOT_FOUND,
            ),
            (
                Box::new(|e| {
                    e["resource"] = json!("");
                    e["path"] = json!("/prod/generate-token");
                }),
                StatusCode::NOT_FOUND,
            ),
            (
                Box::new(|e| e["resource"] = json!("/generate-token/")),
                StatusCode::NOT_FOUND,
            ),
            (
                Box::new(|e| e["headers"]["Host"] = json!("not a host at all")),
                StatusCode::UNAUTHORIZED,
            ),
        ];
        for (edit, status) in cases {
            let a = call(&w, event(GENERATE_TOKEN, &w, "", edit)).await;
            assert_eq!(a.status, status, "{}", a.body);
        }
    }

    #[test]
    fn the_request_id_comes_from_api_gateway_else_lambda() {
        let w_event = |edit: fn(&mut Value)| {
            let mut value: Value = serde_json::from_str(HEALTH).unwrap();
            edit(&mut value);
            RestEvent::from_value(value).unwrap()
        };
        let ctx = w_event(|_| {}).context("lambda-id", now(), "j".into());
        assert_eq!(ctx.request_id, "0a1b2c3d-xmpl-4b79-853a-f982474efe20");
        assert_eq!(ctx.source_ip, "203.0.113.50".parse::<IpAddr>().unwrap());
        for edit in [
            (|e: &mut Value| e["requestContext"]["requestId"] = json!(null)) as fn(&mut Value),
            |e| e["requestContext"]["requestId"] = json!(""),
            |e| e["requestContext"] = json!(null),
            |e| {
                e.as_object_mut().unwrap().remove("requestContext");
            },
        ] {
            let ctx = w_event(edit).context("lambda-id", now(), "j".into());
            assert_eq!(ctx.request_id, "lambda-id");
        }
    }

    /// Events API Gateway never sends, as a direct invocation may: each a 4xx in the API's
    /// error format, none a panic or a function error.
    #[tokio::test]
    async fn malformed_events_are_a_4xx_never_a_panic() {
        let w = world().await;
        let token = token(&w).await;
        type Edit = Box<dyn FnOnce(&mut Value)>;
        let invalid = (StatusCode::BAD_REQUEST, INVALID_EVENT_CODE);
        let cases: Vec<(&str, Edit, (StatusCode, &str))> = vec![
            // query_map's iterator indexes the first value of every list.
            (
                ACTIVE_KEY,
                Box::new(|e| e["multiValueQueryStringParameters"] = json!({"username": []})),
                (StatusCode::BAD_REQUEST, "missing_username"),
            ),
            (
                ACTIVE_KEY,
                Box::new(|e| {
                    e["multiValueQueryStringParameters"] = json!({"username": [], "x": []});
                    e["queryStringParameters"] = json!({"username": []});
                }),
                invalid,
            ),
            (
                ACTIVE_KEY,
                Box::new(|e| e["queryStringParameters"] = json!(["username", "ci-deployer"])),
                invalid,
            ),
            (
                ACTIVE_KEY,
                Box::new(|e| e["multiValueQueryStringParameters"] = json!({"username": [7]})),
                invalid,
            ),
            (
                GENERATE_TOKEN,
                Box::new(|e| e["headers"]["x-api-key"] = json!(7)),
                invalid,
            ),
            (
                GENERATE_TOKEN,
                Box::new(|e| e["multiValueHeaders"]["X-API-Key"] = json!([{"a": 1}])),
                invalid,
            ),
            (
                GENERATE_TOKEN,
                // A string where a list belongs: refused without quoting the key.
                Box::new(|e| {
                    let key = e["headers"]["X-API-Key"].clone();
                    e["multiValueHeaders"]["X-API-Key"] = key;
                }),
                invalid,
            ),
            (
                GENERATE_TOKEN,
                Box::new(|e| e["multiValueHeaders"]["bad header"] = json!(["x"])),
                invalid,
            ),
            (
                GENERATE_TOKEN,
                Box::new(|e| e["headers"]["x-note"] = json!("a\nb")),
                invalid,
            ),
            (
                GENERATE_TOKEN,
                Box::new(|e| e["headers"] = json!("x-api-key: k")),
                invalid,
            ),
            // No requestContext: no source address, so no client authenticates.
            (
                GENERATE_TOKEN,
                Box::new(|e| {
                    e.as_object_mut().unwrap().remove("requestContext");
                }),
                (StatusCode::UNAUTHORIZED, "unauthorized"),
            ),
            (
                GENERATE_TOKEN,
                Box::new(|e| e["requestContext"] = json!("prod")),
                invalid,
            ),
            (
                GENERATE_TOKEN,
                Box::new(|e| e["requestContext"]["identity"]["sourceIp"] = json!([52, 255])),
                invalid,
            ),
            (
                GENERATE_TOKEN,
                Box::new(|e| {
                    e["body"] = json!("%%% not base64");
                    e["isBase64Encoded"] = json!(true);
                }),
                (StatusCode::UNAUTHORIZED, "unauthorized"),
            ),
            (
                GENERATE_TOKEN,
                Box::new(|e| e["isBase64Encoded"] = json!("yes")),
                invalid,
            ),
            (GENERATE_TOKEN, Box::new(|e| e["body"] = json!(12)), invalid),
            (
                GENERATE_TOKEN,
                Box::new(|e| {
                    e.as_object_mut().unwrap().remove("httpMethod");
                }),
                invalid,
            ),
            (
                GENERATE_TOKEN,
                Box::new(|e| e["httpMethod"] = json!("PO ST")),
                invalid,
            ),
            (
                GENERATE_TOKEN,
                Box::new(|e| e["resource"] = json!(7)),
                invalid,
            ),
            (HEALTH, Box::new(|e| *e = json!([1, 2])), invalid),
            (HEALTH, Box::new(|e| *e = json!(null)), invalid),
        ];
        for (i, (fixture, edit, (status, code))) in cases.into_iter().enumerate() {
            let a = call(&w, event(fixture, &w, &token, edit)).await;
            assert_eq!(
                (a.status, a.body["error"]["code"].as_str()),
                (status, Some(code)),
                "case {i}: {}",
                a.body
            );
            assert!(a.body["error"]["message"].is_string(), "case {i}");
            assert_eq!(a.response.headers["content-type"], "application/json");
            assert_eq!(a.response.headers["cache-control"], "no-store");
            assert_eq!(a.response.headers["x-content-type-options"], "nosniff");
            assert_eq!(a.metrics["Outcome"], code, "case {i}");
            assert_eq!(a.metrics["StatusCode"], status.as_u16(), "case {i}");
            assert!(!a.body.to_string().contains(&w.api_key), "case {i}");
        }
        // The function still answers.
        let a = call(&w, event(ACTIVE_KEY, &w, &token, |_| {})).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    }

    /// A registry of `clients` (id and API key), each allowed from 52.255.255.0/24.
    fn registry(clients: &[(&str, &str)]) -> String {
        let clients: Vec<Value> = clients
            .iter()
            .map(|(id, key)| {
                json!({"id": id, "api_key_sha256": ApiKeyDigest::of(key).to_hex(),
                    "scope": ["ci-deployer"], "allowed_cidrs": ["52.255.255.0/24"]})
            })
            .collect();
        json!({ "clients": clients }).to_string()
    }

    /// The status of a token request with `api_key` at `at`.
    async fn token_status(function: &ApiFunction, api_key: &str, at: Timestamp) -> i64 {
        let mut event: Value =
            serde_json::from_str(&GENERATE_TOKEN.replace("{{API_KEY}}", api_key)).unwrap();
        from_allowed_address(&mut event);
        let handled = function.handle(event, "lambda-id", at, "jti".into()).await;
        handled.response.status_code
    }

    /// The registry changes in Secrets Manager (moto): a warm function follows a TTL later,
    /// and keeps the last good registry while the new one cannot be read.
    #[tokio::test]
    async fn a_warm_function_reads_its_secrets_again_after_the_ttl() {
        let moto = tokio::task::spawn_blocking(keyrot_aws::moto::Moto::shared)
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}"));
        let aws = AwsClients::new(moto.admin_config().await);
        let (signing_key_secret, clients_secret) = (
            "keyrot-lambda-unit/reload/signing-key",
            "keyrot-lambda-unit/reload/clients",
        );
        let (old_key, new_key) = (
            ApiKey::generate_from([1; 32]),
            ApiKey::generate_from([2; 32]),
        );
        for (name, value) in [
            (
                signing_key_secret,
                json!({"kid": "k1", "secret": "0123456789abcdefghijABCDEFGHIJ0123456789"})
                    .to_string(),
            ),
            (clients_secret, registry(&[("old", &old_key)])),
        ] {
            aws.secrets
                .create_secret()
                .name(name)
                .secret_string(value)
                .send()
                .await
                .unwrap();
        }
        let set_registry = |value: String| {
            aws.secrets
                .put_secret_value()
                .secret_id(clients_secret)
                .secret_string(value)
                .send()
        };
        let config = ApiFunctionConfig::from_env(|name| match name {
            "KEYROT_SIGNING_KEY_SECRET" => Some(signing_key_secret.to_owned()),
            "KEYROT_CLIENTS_SECRET" => Some(clients_secret.to_owned()),
            _ => None,
        })
        .unwrap();
        assert_eq!(config.api_secrets_ttl, Duration::from_secs(60));
        let store = FakeAws::new(now(), 1, FaultRates::none()).store;
        let function = ApiFunction::load(config, aws.clone(), Arc::new(store), now())
            .await
            .unwrap();
        // (API key, seconds after the cold start, status of a token request).
        let expect = async |steps: &[(&str, u64, i64)]| {
            for &(key, seconds, status) in steps {
                let at = now() + Duration::from_secs(seconds);
                let name = if key == old_key { "old" } else { "new" };
                assert_eq!(
                    token_status(&function, key, at).await,
                    status,
                    "{name} at {seconds} s"
                );
            }
        };
        let (old, new) = (old_key.as_str(), new_key.as_str());
        expect(&[(old, 0, 200), (new, 0, 401)]).await;

        // The old client is removed, a new one added.
        set_registry(registry(&[("new", new)])).await.unwrap();
        expect(&[
            (new, 59, 401),
            (old, 59, 200),
            (old, 60, 401),
            (new, 60, 200),
        ])
        .await;

        // A registry that cannot be read: the last good one stays, and is read again a TTL
        // after the failed attempt.
        set_registry("{\"clients\": 7}".into()).await.unwrap();
        expect(&[(new, 120, 200), (old, 121, 401)]).await;
        set_registry(registry(&[("old", old)])).await.unwrap();
        expect(&[(old, 179, 401), (old, 180, 200), (new, 180, 401)]).await;
    }

    /// The function's timeout in cfn/template.yaml.
    fn template_timeout() -> Duration {
        let template = include_str!("../../cfn/template.yaml");
        let function = template.find("\n  ApiFunction:\n").unwrap();
        let timeout = template[function..]
            .lines()
            .find_map(|line| line.trim().strip_prefix("Timeout: "))
            .unwrap();
        Duration::from_secs(timeout.parse().unwrap())
    }

    #[test]
    fn aws_calls_end_within_the_function_timeout() {
        let settings = aws_settings();
        assert_eq!(settings.max_attempts, Some(3));
        assert_eq!(settings.initial_backoff, Some(Duration::from_millis(100)));
        assert_eq!(settings.connect_timeout, Some(Duration::from_secs(1)));
        assert_eq!(settings.operation_timeout, Some(Duration::from_secs(4)));
        assert_eq!((settings.region, settings.endpoint_url), (None, None));
        // Reading the secrets again, then the request's one call, with time left to answer.
        assert_eq!(template_timeout(), Duration::from_secs(10));
        assert!(
            SECRETS_RELOAD_TIMEOUT + AWS_OPERATION_TIMEOUT + Duration::from_secs(2)
                <= template_timeout()
        );
    }

    #[test]
    fn token_ids_are_fresh_hex() {
        let (a, b) = (fresh_jti(), fresh_jti());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
