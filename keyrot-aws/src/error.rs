//! What an AWS SDK error means for keyrot: one classification for every service.

use aws_sdk_iam::config::http::HttpResponse;
use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use keyrot_core::{BoxError, IamError, StoreError};

/// The kinds of failure the adapters tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    NotFound,
    Exists,
    LimitExceeded,
    Throttled,
    /// The caller's credentials were not accepted (unknown, deleted or malformed key).
    NotAuthenticated,
    AccessDenied,
    Other,
}

/// Classifies an SDK error by its error code, falling back on the HTTP status: an emulator (or
/// a proxy in between) may answer with a body the SDK cannot parse, so `code()` is empty.
pub(crate) fn kind<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Kind {
    let status = err.raw_response().map(|r| r.status().as_u16());
    kind_of(err.code(), status)
}

pub(crate) fn kind_of(code: Option<&str>, status: Option<u16>) -> Kind {
    match code.unwrap_or_default() {
        "NoSuchEntity" | "ResourceNotFoundException" => Kind::NotFound,
        "ResourceExistsException" | "EntityAlreadyExists" => Kind::Exists,
        "LimitExceeded" | "LimitExceededException" => Kind::LimitExceeded,
        "Throttling"
        | "ThrottlingException"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "SlowDown" => Kind::Throttled,
        "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "UnrecognizedClientException"
        | "InvalidAccessKeyId"
        | "AuthFailure"
        | "IncompleteSignature" => Kind::NotAuthenticated,
        "AccessDenied" | "AccessDeniedException" => Kind::AccessDenied,
        "" => match status {
            Some(404) => Kind::NotFound,
            Some(429) => Kind::Throttled,
            Some(401 | 403) => Kind::NotAuthenticated,
            _ => Kind::Other,
        },
        _ => Kind::Other,
    }
}

pub(crate) fn iam_error<E>(err: SdkError<E, HttpResponse>) -> IamError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match kind(&err) {
        Kind::NotFound => IamError::NoSuchEntity,
        Kind::LimitExceeded => IamError::LimitExceeded,
        Kind::Throttled => IamError::Throttled(boxed(err)),
        Kind::AccessDenied | Kind::NotAuthenticated => IamError::AccessDenied(boxed(err)),
        Kind::Exists | Kind::Other => IamError::Other(boxed(err)),
    }
}

pub(crate) fn store_error<E>(err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match kind(&err) {
        Kind::NotFound => StoreError::NoSuchVersion,
        Kind::Exists => StoreError::Conflict,
        Kind::Throttled => StoreError::Throttled(boxed(err)),
        Kind::AccessDenied | Kind::NotAuthenticated => StoreError::AccessDenied(boxed(err)),
        Kind::LimitExceeded | Kind::Other => StoreError::Other(boxed(err)),
    }
}

/// An SDK error as a boxed error that says what went wrong once. The SDK's own chain of a
/// service error reads "service error: unhandled error (Code): Error { code: .., message: .. }";
/// its code and message are all it says, so they alone stand for it. Any other SDK error (no
/// reply, a timeout, a reply that could not be read) is kept as it is, with its sources.
pub(crate) fn boxed<E>(err: SdkError<E, HttpResponse>) -> BoxError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let Some(code) = err.code() {
        return Box::new(AwsError::Service {
            code: code.to_owned(),
            message: err.message().map(str::to_owned),
        });
    }
    if matches!(err, SdkError::ServiceError(_)) {
        let status = err.raw_response().map(|r| r.status().as_u16());
        return Box::new(AwsError::NoCode {
            status,
            source: Box::new(err),
        });
    }
    Box::new(err)
}

/// What an AWS service answered, when it answered with an error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AwsError {
    /// The service's error code and message.
    #[error("{code}: {}", message.as_deref().unwrap_or("no message"))]
    Service {
        /// The error code (`Throttling`, `AccessDenied`, ...).
        code: String,
        /// The service's message, if it sent one.
        message: Option<String>,
    },
    /// An error reply without an error code (an emulator or a proxy in between): the HTTP
    /// status, and the SDK's error.
    #[error("the service answered HTTP {} without an error code", status.map_or_else(|| "?".to_owned(), |s| s.to_string()))]
    NoCode {
        /// The HTTP status of the reply.
        status: Option<u16>,
        /// The SDK's error.
        #[source]
        source: BoxError,
    },
}

#[cfg(test)]
mod tests {
    use aws_sdk_iam::error::ErrorMetadata;
    use aws_sdk_iam::operation::create_access_key::CreateAccessKeyError;

    use super::*;

    #[test]
    fn codes_win_over_statuses() {
        assert_eq!(kind_of(Some("NoSuchEntity"), Some(404)), Kind::NotFound);
        assert_eq!(kind_of(Some("Throttling"), Some(400)), Kind::Throttled);
        assert_eq!(
            kind_of(Some("ThrottlingException"), Some(400)),
            Kind::Throttled
        );
        assert_eq!(
            kind_of(Some("LimitExceeded"), Some(409)),
            Kind::LimitExceeded
        );
        assert_eq!(
            kind_of(Some("ResourceExistsException"), Some(400)),
            Kind::Exists
        );
        assert_eq!(
            kind_of(Some("InvalidClientTokenId"), Some(403)),
            Kind::NotAuthenticated
        );
        assert_eq!(kind_of(Some("AccessDenied"), Some(403)), Kind::AccessDenied);
        assert_eq!(kind_of(Some("ValidationError"), Some(404)), Kind::Other);
    }

    #[test]
    fn without_a_code_the_status_decides() {
        assert_eq!(kind_of(None, Some(404)), Kind::NotFound);
        assert_eq!(kind_of(Some(""), Some(429)), Kind::Throttled);
        assert_eq!(kind_of(None, Some(403)), Kind::NotAuthenticated);
        assert_eq!(kind_of(None, Some(500)), Kind::Other);
        assert_eq!(kind_of(None, None), Kind::Other);
    }

    fn service_error(
        code: &str,
        message: &str,
        status: u16,
    ) -> SdkError<CreateAccessKeyError, HttpResponse> {
        let meta = ErrorMetadata::builder().code(code).message(message).build();
        let response = HttpResponse::new(status.try_into().unwrap(), "".into());
        SdkError::service_error(CreateAccessKeyError::generic(meta), response)
    }

    /// Each error of the chain, outermost first.
    fn chain(error: &dyn std::error::Error) -> Vec<String> {
        std::iter::successors(Some(error), |e| e.source())
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn an_iam_failure_says_each_thing_once_with_its_cause_as_the_source() {
        let err = iam_error(service_error(
            "ServiceFailure",
            "the service is unavailable",
            500,
        ));
        assert!(matches!(err, IamError::Other(_)), "{err:?}");
        assert_eq!(err.to_string(), "IAM call failed");
        assert_eq!(
            chain(&err),
            [
                "IAM call failed",
                "ServiceFailure: the service is unavailable"
            ]
        );
        // As the driver reports it: the step error adds no prefix of its own.
        let step = keyrot_core::StepError::from(err);
        assert_eq!(
            keyrot_core::driver::error_chain(&step),
            "IAM call failed: ServiceFailure: the service is unavailable"
        );
    }

    #[test]
    fn throttling_keeps_its_cause() {
        let err = iam_error(service_error("Throttling", "Rate exceeded", 400));
        assert!(matches!(err, IamError::Throttled(_)), "{err:?}");
        assert_eq!(
            chain(&err),
            ["throttled by IAM", "Throttling: Rate exceeded"]
        );
        let err = store_error(service_error("ThrottlingException", "slow down", 400));
        assert!(matches!(err, StoreError::Throttled(_)), "{err:?}");
        assert_eq!(
            chain(&err),
            [
                "throttled by the secret store",
                "ThrottlingException: slow down"
            ]
        );
    }

    #[test]
    fn a_reply_without_a_code_names_its_status_and_keeps_the_sdk_error() {
        let response = HttpResponse::new(502.try_into().unwrap(), "".into());
        let unreadable = CreateAccessKeyError::generic(ErrorMetadata::builder().build());
        let err = iam_error(SdkError::service_error(unreadable, response));
        let chain = chain(&err);
        assert_eq!(
            chain[..2],
            [
                "IAM call failed",
                "the service answered HTTP 502 without an error code"
            ]
        );
        assert_eq!(chain[2], "service error");
    }
}
