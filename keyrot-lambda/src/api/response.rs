//! What a request produced: the response for API Gateway, the outcome in metrics, and the
//! audit line of the requests the API itself never saw.

use std::fmt;

use http::StatusCode;
use keyrot_api::{ApiOutcome, ErrorCode};
use lambda_http::Body;
use lambda_http::aws_lambda_events::apigw::ApiGatewayProxyResponse;
use tracing::info;

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
    /// `400 invalid_request`: the event is not one API Gateway sends (see [`RestEvent`](super::RestEvent)); the
    /// API was not asked.
    InvalidEvent,
    /// `503 store_unavailable`: the signing keys and the client registry, read on the first
    /// request (see [`crate::api::ApiFunction`]), could not be read yet; the API was not asked.
    SecretsUnavailable,
}

impl Outcome {
    /// The name in metrics: the API's (see [`ApiOutcome::as_str`]), [`INVALID_EVENT_CODE`],
    /// or [`SECRETS_UNAVAILABLE`].
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api(outcome) => outcome.as_str(),
            Self::InvalidEvent => INVALID_EVENT_CODE,
            Self::SecretsUnavailable => SECRETS_UNAVAILABLE,
        }
    }

    /// The response's status.
    pub fn status(self) -> StatusCode {
        match self {
            Self::Api(outcome) => outcome.status(),
            Self::InvalidEvent => StatusCode::BAD_REQUEST,
            Self::SecretsUnavailable => ErrorCode::StoreUnavailable.status(),
        }
    }
}

/// The error code of an event the adapter cannot read. The API's own codes are
/// [`keyrot_api::ErrorCode`]'s; API Gateway never sends such an event, only a direct
/// invocation can.
pub const INVALID_EVENT_CODE: &str = "invalid_request";

/// The outcome in metrics of a request answered `503 store_unavailable` because the API's
/// secrets could not be read yet (see [`Outcome::SecretsUnavailable`]): apart from the API's
/// own `store_unavailable` (a user's key that could not be read), so an alarm tells them apart.
pub const SECRETS_UNAVAILABLE: &str = "secrets_unavailable";

/// The audit line of a request the API was not asked about, like the API's own (target
/// `keyrot::audit`): its outcome, the `reason` and a `detail` that names what is at fault
/// (the event's field, the secret), never a value the caller sent.
pub(super) fn audit(
    lambda_request_id: &str,
    outcome: Outcome,
    reason: &str,
    detail: &dyn fmt::Display,
) {
    info!(
        target: "keyrot::audit",
        request_id = ?lambda_request_id,
        route = "unknown",
        outcome = outcome.as_str(),
        status = outcome.status().as_u16(),
        reason,
        detail = %detail,
        "api request"
    );
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
    use super::*;

    #[test]
    fn the_invalid_event_code_is_the_apis() {
        assert_eq!(INVALID_EVENT_CODE, ErrorCode::InvalidRequest.as_str());
    }

    #[test]
    fn unavailable_secrets_are_a_503_of_their_own_in_metrics() {
        let outcome = Outcome::SecretsUnavailable;
        assert_eq!(outcome.status(), StatusCode::SERVICE_UNAVAILABLE);
        let api_names = [
            ApiOutcome::Failed(ErrorCode::StoreUnavailable).as_str(),
            INVALID_EVENT_CODE,
        ];
        assert!(!api_names.contains(&outcome.as_str()));
    }
}
