//! Between the SDK's timestamps and keyrot's.

use aws_sdk_iam::primitives::DateTime;
use keyrot_core::Timestamp;

/// `at` as a keyrot timestamp; `None` if it is outside jiff's range (years -9999 to 9999).
pub(crate) fn from_aws(at: &DateTime) -> Option<Timestamp> {
    Timestamp::new(at.secs(), at.subsec_nanos().try_into().ok()?).ok()
}
