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
//!
//! The module by concern: [`ApiFunction`] answers one event at a time (`function`), with an
//! `Api` whose secrets it reads on its first request and again a TTL later (`secrets`), from
//! the event it reads itself (`event`, see [`RestEvent`]), into the response and metrics of
//! [`Handled`] (`response`).

use std::time::Duration;

use keyrot_aws::AwsSettings;

use crate::config::ConfigError;
use crate::runtime::CONFIG_ERROR_TYPE;

mod event;
#[cfg(test)]
mod fixtures;
mod function;
mod response;
mod secrets;

pub use event::{RestEvent, UnreadableEvent};
pub use function::{ApiFunction, fresh_jti, serve};
pub use response::{Handled, INVALID_EVENT_CODE, Outcome, SECRETS_UNAVAILABLE, gateway_response};
pub use secrets::SecretsError;

/// Why the API function could not start. It reads no secret at cold start (see
/// [`ApiFunction::from_env`]), so only its configuration can stop it.
#[derive(Debug, thiserror::Error)]
pub enum ApiInitError {
    /// An environment variable is bad.
    #[error("invalid configuration")]
    Config(#[from] ConfigError),
}

impl ApiInitError {
    /// The `errorType` reported to Lambda.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Config(_) => CONFIG_ERROR_TYPE,
        }
    }
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

/// The longest a request waits for the signing keys and the client registry to be read (on
/// the first request, and again once they are a TTL old: two calls, each bounded by
/// [`AWS_OPERATION_TIMEOUT`]). With the request's own call, a request takes at most
/// `SECRETS_RELOAD_TIMEOUT + AWS_OPERATION_TIMEOUT`, 8 s of the 10.
pub const SECRETS_RELOAD_TIMEOUT: Duration = Duration::from_secs(4);

#[cfg(test)]
mod tests {
    use super::*;

    /// The function's timeout in cfn/template.yaml.
    fn template_timeout() -> Duration {
        let template = include_str!("../../../cfn/template.yaml");
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
}
