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

/// An SDK error as a boxed error whose message carries the service's code and message (the
/// SDK's own `Display` says only "service error").
pub(crate) fn boxed<E>(err: SdkError<E, HttpResponse>) -> BoxError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    Box::new(AwsError {
        code: err.code().map(str::to_owned),
        message: err.message().map(str::to_owned),
        source: Box::new(err),
    })
}

/// An AWS error with its code and message up front.
#[derive(Debug, thiserror::Error)]
#[error("{}: {}", code.as_deref().unwrap_or("no error code"), message.as_deref().unwrap_or("no message"))]
pub(crate) struct AwsError {
    code: Option<String>,
    message: Option<String>,
    #[source]
    source: BoxError,
}

#[cfg(test)]
mod tests {
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
}
