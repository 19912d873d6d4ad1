//! In-memory fakes of every port that behave like AWS, for the seeded simulation, the examples
//! and the CLI's local backend.
//!
//! The fakes are faithful to AWS as documented, not to an emulator such as moto: IAM refuses a
//! third access key with `LimitExceeded` and changes nothing; a new key authenticates only after
//! a propagation delay (IAM is eventually consistent); `GetAccessKeyLastUsed` answers "never" or
//! a time, and any failure is [`LastUsed::Unknown`](crate::LastUsed::Unknown); Secrets Manager
//! moves `AWSPENDING` on `PutSecretValue`, moves `AWSCURRENT` and attaches `AWSPREVIOUS` on
//! `UpdateSecretVersionStage`, leaves `AWSPENDING` on a promoted version, ignores a repeated
//! `ClientRequestToken` with the same contents and refuses it with different contents.
//!
//! Like keyrot-core itself the fakes perform no IO and never read the system clock: they take
//! time from a shared virtual [`SimClock`], and every random choice (key ids, secrets, faults)
//! comes from a seeded ChaCha generator, so a seed reproduces a run exactly.
//!
//! # Faults
//!
//! [`FakeIam`], [`FakeSecretStore`] and [`FakeVerifier`] share one [`FaultPlan`] (clones of a
//! plan share its state). Before each call the plan decides, from its seeded generator or from
//! faults scripted with [`FaultPlan::fail_at`], whether the call
//! - fails before it has any effect ([`FaultKind::FailBefore`], or [`FaultKind::Throttle`],
//!   which answers with the port's `Throttled` error),
//! - has its effect but loses the response, so the caller sees an error
//!   ([`FaultKind::FailAfter`]),
//! - kills the process ([`FaultKind::Crash`] before the effect, [`FaultKind::CrashAfter`]
//!   after it): that call and every later call on every fake sharing the plan fail, with no
//!   effect, until [`FaultPlan::restart`].
//!
//! The plan also counts calls per operation (see [`op`]), and can add a virtual latency and a
//! client-side token-bucket rate limit: a call then sleeps on the [`SimClock`].
//!
//! Setup and inspection helpers (`add_user`, `add_key`, `snapshot`, ...) bypass faults,
//! counters and the event log: they are the test's hand, not keyrot's.
//!
//! ```
//! use keyrot_core::fake::{FakeAws, FaultRates};
//! use keyrot_core::{Iam, Selection, Timestamp, UserName};
//!
//! let aws = FakeAws::new(Timestamp::UNIX_EPOCH, 7, FaultRates::none());
//! let alice = UserName::new("alice")?;
//! aws.iam.add_managed_user(alice.clone());
//! let users = futures::executor::block_on(aws.iam.managed_users(&Selection::default()))?;
//! assert_eq!(users, [alice]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::Arc;
use std::time::Duration;

use crate::driver::Ports;
use crate::model::Timestamp;

pub mod clock;
pub mod delivery;
pub mod faults;
pub mod iam;
pub mod lease;
pub mod notifier;
pub mod store;
pub mod verifier;

pub use clock::{SimClock, YieldNow, yield_now};
pub use delivery::{DeliveryFaults, FakeDestinations};
pub use faults::{
    FaultKind, FaultPlan, FaultRates, InjectedFault, RateLimit, SdkRetries, Trigger, op,
};
pub use iam::{AuthFailure, FakeIam, IamAction, IamEvent};
pub use lease::FakeLease;
pub use notifier::{NullNotifier, RecordingNotifier};
pub use store::{FakeSecretStore, VersionInfo};
pub use verifier::{FAKE_ACCOUNT_ID, FakeVerifier};

pub use crate::model::request_token;

/// Everything a simulation needs, wired together: one clock, one fault plan shared by IAM, the
/// store and the verifier, and a recording notifier.
#[derive(Debug, Clone)]
pub struct FakeAws {
    /// The virtual clock every fake reads.
    pub clock: SimClock,
    /// The fault plan shared by `iam`, `store` and `verifier`.
    pub plan: FaultPlan,
    /// IAM.
    pub iam: FakeIam,
    /// Secrets Manager.
    pub store: FakeSecretStore,
    /// STS `GetCallerIdentity`, against `iam`.
    pub verifier: FakeVerifier,
    /// The lease table (DynamoDB).
    pub lease: FakeLease,
    /// Notices sent, for inspection.
    pub notifier: RecordingNotifier,
}

impl FakeAws {
    /// Fakes starting at `start`, with faults drawn at `rates` and key ids drawn from `seed`,
    /// and the simulated SDK retrying lost replies as keyrot's AWS adapters do
    /// ([`SdkRetries::AsAdapters`]).
    pub fn new(start: Timestamp, seed: u64, rates: FaultRates) -> Self {
        let clock = SimClock::new(start);
        // The AWS SDK retries a call whose reply was lost; so do the fakes' callers here.
        let plan = FaultPlan::seeded(seed, rates).with_sdk_retries(SdkRetries::AsAdapters);
        // A different stream for ids and secrets than for faults.
        let iam = FakeIam::new(clock.clone(), plan.clone(), seed ^ 0x6b65_7972_6f74);
        let store = FakeSecretStore::new(clock.clone(), plan.clone());
        let verifier = FakeVerifier::new(iam.clone(), plan.clone());
        let lease = FakeLease::new(clock.clone(), plan.clone());
        Self {
            clock,
            plan,
            iam,
            store,
            verifier,
            lease,
            notifier: RecordingNotifier::new(),
        }
    }

    /// The fakes as a rotator's [`Ports`], sharing this state: IAM, Secrets Manager, STS, the
    /// recording notifier and the virtual clock. Replace a field with struct update syntax to
    /// wrap one (`Ports { iam: Arc::new(MyIam(..)), ..aws.ports() }`).
    pub fn ports(&self) -> Ports {
        Ports {
            iam: Arc::new(self.iam.clone()),
            store: Arc::new(self.store.clone()),
            verifier: Arc::new(self.verifier.clone()),
            lease: Arc::new(self.lease.clone()),
            notifier: Arc::new(self.notifier.clone()),
            clock: Arc::new(self.clock.clone()),
        }
    }
}

/// `at + d`, saturating at the end of time.
pub(crate) fn add(at: Timestamp, d: Duration) -> Timestamp {
    at.saturating_add(d).unwrap_or(Timestamp::MAX)
}

/// `at - d`, saturating at the beginning of time.
pub(crate) fn sub(at: Timestamp, d: Duration) -> Timestamp {
    at.saturating_sub(d).unwrap_or(Timestamp::MIN)
}

/// How long from `earlier` to `later`; zero if `later` is not later.
pub(crate) fn since(later: Timestamp, earlier: Timestamp) -> Duration {
    Duration::try_from(later.duration_since(earlier)).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AccessKeyId;

    #[test]
    fn request_tokens_are_32_to_64_chars_and_distinct() {
        let short = AccessKeyId::new("AKIAIOSFODNN7EXAMPLE").unwrap();
        let mid = AccessKeyId::new("A".repeat(54)).unwrap();
        let long = AccessKeyId::new("A".repeat(55)).unwrap();
        let longer = AccessKeyId::new("A".repeat(128)).unwrap();
        let tokens: Vec<_> = [&short, &mid, &long, &longer]
            .into_iter()
            .map(request_token)
            .collect();
        for token in &tokens {
            assert!((32..=64).contains(&token.len()), "{token}");
        }
        assert_eq!(tokens[1], format!("keyrot-v1-{}", "A".repeat(54)));
        assert!(tokens[2].starts_with("keyrot-v1h-"));
        assert_ne!(tokens[2], tokens[3]);
        assert_eq!(request_token(&short), request_token(&short.clone()));
    }
}
