//! [`Pressure`] from the SDK: an interceptor on every client that counts the throttling
//! answers, the attempts the SDK retries included, so that the rotator's adaptive concurrency
//! backs off before a call runs out of retries.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_iam::config::interceptors::AfterDeserializationInterceptorContextRef;
use aws_sdk_iam::config::{ConfigBag, Intercept, RuntimeComponents};
use keyrot_core::{BoxError, Pressure};

/// The error codes AWS throttles with, as they appear in an answer's body (the query
/// protocol's `<Code>`, the JSON protocols' `__type`): IAM and STS `Throttling`, Secrets
/// Manager `ThrottlingException`, DynamoDB `ThrottlingException` and
/// `ProvisionedThroughputExceededException`, SES `TooManyRequestsException`, and the
/// `RequestLimitExceeded` and `SlowDown` of other services. `Throttling` is a prefix of
/// `ThrottlingException`.
const THROTTLING_CODES: [&str; 5] = [
    "Throttling",
    "ProvisionedThroughputExceeded",
    "TooManyRequests",
    "RequestLimitExceeded",
    "SlowDown",
];

/// Counts throttling answers across the clients it is added to ([`crate::AwsClients`] adds it
/// to each). Clones share the count.
#[derive(Debug, Clone, Default)]
pub struct ThrottleCounter(Arc<AtomicU64>);

impl ThrottleCounter {
    fn count(&self, status: u16, body: Option<&[u8]>) {
        if is_throttling(status, body) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Whether an answer is a throttle: a 429, or a 400 or 503 whose body names a throttling code.
fn is_throttling(status: u16, body: Option<&[u8]>) -> bool {
    if status == 429 {
        return true;
    }
    if !matches!(status, 400 | 503) {
        return false;
    }
    let Some(body) = body else {
        return false;
    };
    let text = String::from_utf8_lossy(body);
    THROTTLING_CODES.iter().any(|code| text.contains(code))
}

impl Pressure for ThrottleCounter {
    fn throttled(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Intercept for ThrottleCounter {
    fn name(&self) -> &'static str {
        "ThrottleCounter"
    }

    // After deserialization the answer's body has been read into memory; every attempt,
    // retried or not, passes here.
    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let response = context.response();
        self.count(response.status().as_u16(), response.body().bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttles_are_told_from_other_refusals() {
        let query = br#"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>"#;
        let json = br#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"slow down"}"#;
        let secrets = br#"{"__type":"ThrottlingException","Message":"Rate exceeded"}"#;
        let denied = br#"<ErrorResponse><Error><Code>AccessDenied</Code></Error></ErrorResponse>"#;
        assert!(is_throttling(400, Some(query)));
        assert!(is_throttling(400, Some(json)));
        assert!(is_throttling(400, Some(secrets)));
        assert!(is_throttling(429, None));
        assert!(!is_throttling(403, Some(denied)));
        assert!(!is_throttling(400, Some(denied)));
        assert!(!is_throttling(
            200,
            Some(b"Throttling is a word in this secret's name")
        ));
        assert!(!is_throttling(400, None));
    }

    #[test]
    fn clones_share_one_count() {
        let counter = ThrottleCounter::default();
        let clone = counter.clone();
        clone.count(400, Some(b"<Code>Throttling</Code>"));
        clone.count(500, Some(b"<Code>InternalFailure</Code>"));
        counter.count(429, None);
        assert_eq!(counter.throttled(), 2);
    }
}
