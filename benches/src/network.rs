//! The network between keyrot and AWS, in virtual time: every call takes a fixed latency and
//! needs a token from one bucket shared by IAM, the store, the verifier and the lease. A call
//! that finds the bucket empty is refused, as AWS throttles (`Throttling`, 400/429): the
//! refusal costs its round trip, and the simulated SDK retries it after a backoff, as the AWS
//! SDK's standard retry mode does (exponential with full jitter from a one-second base, at
//! most five attempts in all, as keyrot configures it). A call still refused after its last
//! attempt fails the port call as throttled. Every refusal counts as [`Pressure`], which is
//! what the adapters' SDK interceptor counts in the deployed rotator.
//!
//! It sleeps on a [`VirtualClock`], so calls in flight at the same time overlap.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use keyrot_core::fake::{FakeIam, FakeLease, FakeSecretStore, FakeVerifier, RateLimit};
use keyrot_core::survey::CredentialReport;
use keyrot_core::{
    AccessKey, AccessKeyId, BoxError, Claim, Credentials, Iam, IamError, Intent, KeyStatus,
    LastUsed, Lease, LeaseError, LeaseToken, Marks, NewKey, Pressure, SecretStore, Selection,
    SentNotice, StoreError, StoredUser, Timestamp, UserName, Verifier, VerifyError,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::vclock::VirtualClock;

/// Attempts per call, the first included (keyrot's `max_attempts`).
const MAX_ATTEMPTS: u32 = 5;
/// The standard retry mode's base backoff.
const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// The standard retry mode's longest backoff.
const MAX_BACKOFF: Duration = Duration::from_secs(20);

/// Latency, a shared token bucket that throttles, and the SDK's retries.
#[derive(Debug)]
pub(crate) struct Network {
    clock: VirtualClock,
    latency: Duration,
    limit: RateLimit,
    /// The bucket's theoretical arrival time (GCRA).
    tat: Mutex<Option<Timestamp>>,
    jitter: Mutex<ChaCha8Rng>,
    throttled: AtomicU64,
}

/// A call the bucket refused on every attempt.
#[derive(Debug, thiserror::Error)]
#[error("Rate exceeded (throttled on each of {MAX_ATTEMPTS} attempts)")]
pub(crate) struct Throttled;

impl Network {
    pub(crate) fn new(
        clock: VirtualClock,
        latency: Duration,
        limit: RateLimit,
        seed: u64,
    ) -> Arc<Self> {
        Arc::new(Self {
            clock,
            latency,
            limit,
            tat: Mutex::new(None),
            jitter: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
            throttled: AtomicU64::new(0),
        })
    }

    /// One call: its attempts, each a round trip, until the bucket lets one through.
    async fn round_trip(&self) -> Result<(), Throttled> {
        for attempt in 0..MAX_ATTEMPTS {
            let admitted = self.take_token();
            self.clock.sleep(self.latency).await;
            if admitted {
                return Ok(());
            }
            self.throttled.fetch_add(1, Ordering::Relaxed);
            if attempt + 1 < MAX_ATTEMPTS {
                self.clock.sleep(self.backoff(attempt)).await;
            }
        }
        Err(Throttled)
    }

    /// Takes a token if the bucket has one now (GCRA: a call conforms unless it comes more than
    /// the burst's tolerance ahead of the theoretical arrival time).
    fn take_token(&self) -> bool {
        let now = self.clock.now();
        let mut tat = self.tat.lock().unwrap_or_else(PoisonError::into_inner);
        let at = tat.map_or(now, |t| t.max(now));
        let tolerance = self.limit.interval() * (self.limit.burst() - 1);
        if at.saturating_sub(tolerance).unwrap_or(Timestamp::MIN) > now {
            return false;
        }
        *tat = Some(
            at.saturating_add(self.limit.interval())
                .unwrap_or(Timestamp::MAX),
        );
        true
    }

    /// The wait before attempt `attempt + 1`: full jitter over `base × 2^attempt`, capped.
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = INITIAL_BACKOFF
            .saturating_mul(1 << attempt.min(16))
            .min(MAX_BACKOFF);
        let share: f64 = self
            .jitter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .random();
        ceiling.mul_f64(share)
    }
}

impl Pressure for Network {
    fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }
}

fn boxed(e: Throttled) -> BoxError {
    Box::new(e)
}

/// [`FakeIam`] behind the network.
#[derive(Debug)]
pub(crate) struct RemoteIam(pub(crate) FakeIam, pub(crate) Arc<Network>);

#[async_trait]
impl Iam for RemoteIam {
    async fn managed_users(&self, selection: &Selection) -> Result<Vec<UserName>, IamError> {
        self.1
            .round_trip()
            .await
            .map_err(|e| IamError::Throttled(boxed(e)))?;
        self.0.managed_users(selection).await
    }

    async fn list_keys(&self, user: &UserName) -> Result<Vec<AccessKey>, IamError> {
        self.1
            .round_trip()
            .await
            .map_err(|e| IamError::Throttled(boxed(e)))?;
        self.0.list_keys(user).await
    }

    async fn create_key(&self, user: &UserName) -> Result<NewKey, IamError> {
        self.1
            .round_trip()
            .await
            .map_err(|e| IamError::Throttled(boxed(e)))?;
        self.0.create_key(user).await
    }

    async fn set_status(
        &self,
        user: &UserName,
        key: &AccessKeyId,
        status: KeyStatus,
    ) -> Result<(), IamError> {
        self.1
            .round_trip()
            .await
            .map_err(|e| IamError::Throttled(boxed(e)))?;
        self.0.set_status(user, key, status).await
    }

    async fn delete_key(&self, user: &UserName, key: &AccessKeyId) -> Result<(), IamError> {
        self.1
            .round_trip()
            .await
            .map_err(|e| IamError::Throttled(boxed(e)))?;
        self.0.delete_key(user, key).await
    }

    async fn last_used(&self, key: &AccessKeyId) -> LastUsed {
        if self.1.round_trip().await.is_err() {
            return LastUsed::Unknown;
        }
        self.0.last_used(key).await
    }

    async fn credential_report(&self) -> Result<Option<CredentialReport>, IamError> {
        // GenerateCredentialReport, then GetCredentialReport.
        self.1
            .round_trip()
            .await
            .map_err(|e| IamError::Throttled(boxed(e)))?;
        self.1
            .round_trip()
            .await
            .map_err(|e| IamError::Throttled(boxed(e)))?;
        self.0.credential_report().await
    }
}

/// [`FakeSecretStore`] behind the network.
#[derive(Debug)]
pub(crate) struct RemoteStore(pub(crate) FakeSecretStore, pub(crate) Arc<Network>);

#[async_trait]
impl SecretStore for RemoteStore {
    async fn load(&self, user: &UserName) -> Result<StoredUser, StoreError> {
        self.1
            .round_trip()
            .await
            .map_err(|e| StoreError::Throttled(boxed(e)))?;
        self.0.load(user).await
    }

    async fn put_pending(
        &self,
        user: &UserName,
        credentials: &Credentials,
        created: Timestamp,
    ) -> Result<(), StoreError> {
        self.1
            .round_trip()
            .await
            .map_err(|e| StoreError::Throttled(boxed(e)))?;
        self.0.put_pending(user, credentials, created).await
    }

    async fn load_for(
        &self,
        user: &UserName,
        keys: &[AccessKeyId],
    ) -> Result<StoredUser, StoreError> {
        self.1
            .round_trip()
            .await
            .map_err(|e| StoreError::Throttled(boxed(e)))?;
        self.0.load_for(user, keys).await
    }

    async fn promote(
        &self,
        user: &UserName,
        key: &AccessKeyId,
        seen_current: Option<AccessKeyId>,
    ) -> Result<(), StoreError> {
        self.1
            .round_trip()
            .await
            .map_err(|e| StoreError::Throttled(boxed(e)))?;
        self.0.promote(user, key, seen_current).await
    }

    async fn record_marks(
        &self,
        user: &UserName,
        key: &AccessKeyId,
        marks: &Marks,
    ) -> Result<(), StoreError> {
        self.1
            .round_trip()
            .await
            .map_err(|e| StoreError::Throttled(boxed(e)))?;
        self.0.record_marks(user, key, marks).await
    }

    async fn clear_marks(&self, user: &UserName, key: &AccessKeyId) -> Result<(), StoreError> {
        self.1
            .round_trip()
            .await
            .map_err(|e| StoreError::Throttled(boxed(e)))?;
        self.0.clear_marks(user, key).await
    }

    async fn record_intent(&self, user: &UserName, intent: &Intent) -> Result<(), StoreError> {
        self.1
            .round_trip()
            .await
            .map_err(|e| StoreError::Throttled(boxed(e)))?;
        self.0.record_intent(user, intent).await
    }

    async fn record_notice(&self, user: &UserName, sent: &SentNotice) -> Result<(), StoreError> {
        self.1
            .round_trip()
            .await
            .map_err(|e| StoreError::Throttled(boxed(e)))?;
        self.0.record_notice(user, sent).await
    }

    async fn credentials(
        &self,
        user: &UserName,
        key: &AccessKeyId,
    ) -> Result<Option<Credentials>, StoreError> {
        self.1
            .round_trip()
            .await
            .map_err(|e| StoreError::Throttled(boxed(e)))?;
        self.0.credentials(user, key).await
    }

    async fn current(&self, user: &UserName) -> Result<Option<Credentials>, StoreError> {
        self.1
            .round_trip()
            .await
            .map_err(|e| StoreError::Throttled(boxed(e)))?;
        self.0.current(user).await
    }

    async fn list_stored(&self) -> Result<Option<BTreeMap<UserName, StoredUser>>, StoreError> {
        let listed = self.0.list_stored().await?;
        // ListSecrets pages of 100.
        let pages = listed.as_ref().map_or(1, |l| l.len().div_ceil(100).max(1));
        for _ in 0..pages {
            self.1
                .round_trip()
                .await
                .map_err(|e| StoreError::Throttled(boxed(e)))?;
        }
        Ok(listed)
    }
}

/// [`FakeVerifier`] behind the network.
#[derive(Debug)]
pub(crate) struct RemoteVerifier(pub(crate) FakeVerifier, pub(crate) Arc<Network>);

#[async_trait]
impl Verifier for RemoteVerifier {
    async fn authenticates(
        &self,
        user: &UserName,
        credentials: &Credentials,
    ) -> Result<bool, VerifyError> {
        self.1
            .round_trip()
            .await
            .map_err(|e| VerifyError::Other(boxed(e)))?;
        self.0.authenticates(user, credentials).await
    }
}

/// [`FakeLease`] behind the network (DynamoDB is one more round trip per call).
#[derive(Debug)]
pub(crate) struct RemoteLease(pub(crate) FakeLease, pub(crate) Arc<Network>);

#[async_trait]
impl Lease for RemoteLease {
    async fn acquire(
        &self,
        user: &UserName,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Claim, LeaseError> {
        self.1
            .round_trip()
            .await
            .map_err(|e| LeaseError::Throttled(boxed(e)))?;
        self.0.acquire(user, now, until).await
    }

    async fn renew(
        &self,
        user: &UserName,
        token: &LeaseToken,
        until: Timestamp,
    ) -> Result<bool, LeaseError> {
        self.1
            .round_trip()
            .await
            .map_err(|e| LeaseError::Throttled(boxed(e)))?;
        self.0.renew(user, token, until).await
    }

    async fn release(&self, user: &UserName, token: &LeaseToken) -> Result<(), LeaseError> {
        self.1
            .round_trip()
            .await
            .map_err(|e| LeaseError::Throttled(boxed(e)))?;
        self.0.release(user, token).await
    }

    async fn acquire_all(
        &self,
        users: &[UserName],
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<Claim>, LeaseError> {
        self.1
            .round_trip()
            .await
            .map_err(|e| LeaseError::Throttled(boxed(e)))?;
        self.0.acquire_all(users, now, until).await
    }

    async fn release_all(&self, held: &[(UserName, LeaseToken)]) -> Result<(), LeaseError> {
        self.1
            .round_trip()
            .await
            .map_err(|e| LeaseError::Throttled(boxed(e)))?;
        self.0.release_all(held).await
    }
}
