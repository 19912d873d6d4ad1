//! The network between keyrot and AWS, in virtual time: every call waits for its turn in a
//! token bucket, then takes a fixed latency, then reaches the fake.
//!
//! This is the same model as [`FaultPlan`](keyrot_core::fake::FaultPlan)'s latency and rate
//! limit (one GCRA bucket shared by IAM, the store and the verifier), but it sleeps on a
//! [`VirtualClock`], so calls in flight at the same time overlap.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use keyrot_core::fake::{FakeIam, FakeLease, FakeSecretStore, FakeVerifier, RateLimit};
use keyrot_core::survey::CredentialReport;
use keyrot_core::{
    AccessKey, AccessKeyId, Claim, Credentials, Iam, IamError, Intent, KeyStatus, LastUsed, Lease,
    LeaseError, LeaseToken, Marks, NewKey, SecretStore, Selection, SentNotice, StoreError,
    StoredUser, Timestamp, UserName, Verifier, VerifyError,
};

use crate::vclock::VirtualClock;

/// Latency and a shared token bucket.
#[derive(Debug)]
pub(crate) struct Network {
    clock: VirtualClock,
    latency: Duration,
    limit: RateLimit,
    /// The bucket's theoretical arrival time (GCRA).
    tat: Mutex<Option<Timestamp>>,
}

impl Network {
    pub(crate) fn new(clock: VirtualClock, latency: Duration, limit: RateLimit) -> Arc<Self> {
        Arc::new(Self {
            clock,
            latency,
            limit,
            tat: Mutex::new(None),
        })
    }

    /// Waits for the call's turn in the bucket, then for the round trip.
    async fn round_trip(&self) {
        let now = self.clock.now();
        let turn = {
            let mut tat = self.tat.lock().unwrap_or_else(PoisonError::into_inner);
            let at = tat.map_or(now, |t| t.max(now));
            let tolerance = self.limit.interval() * (self.limit.burst() - 1);
            *tat = Some(
                at.saturating_add(self.limit.interval())
                    .unwrap_or(Timestamp::MAX),
            );
            at.saturating_sub(tolerance).unwrap_or(Timestamp::MIN)
        };
        let wait = Duration::try_from(turn.duration_since(now)).unwrap_or(Duration::ZERO);
        self.clock.sleep(wait + self.latency).await;
    }
}

/// [`FakeIam`] behind the network.
#[derive(Debug)]
pub(crate) struct RemoteIam(pub(crate) FakeIam, pub(crate) Arc<Network>);

#[async_trait]
impl Iam for RemoteIam {
    async fn managed_users(&self, selection: &Selection) -> Result<Vec<UserName>, IamError> {
        self.1.round_trip().await;
        self.0.managed_users(selection).await
    }

    async fn list_keys(&self, user: &UserName) -> Result<Vec<AccessKey>, IamError> {
        self.1.round_trip().await;
        self.0.list_keys(user).await
    }

    async fn create_key(&self, user: &UserName) -> Result<NewKey, IamError> {
        self.1.round_trip().await;
        self.0.create_key(user).await
    }

    async fn set_status(
        &self,
        user: &UserName,
        key: &AccessKeyId,
        status: KeyStatus,
    ) -> Result<(), IamError> {
        self.1.round_trip().await;
        self.0.set_status(user, key, status).await
    }

    async fn delete_key(&self, user: &UserName, key: &AccessKeyId) -> Result<(), IamError> {
        self.1.round_trip().await;
        self.0.delete_key(user, key).await
    }

    async fn last_used(&self, key: &AccessKeyId) -> LastUsed {
        self.1.round_trip().await;
        self.0.last_used(key).await
    }

    async fn credential_report(&self) -> Result<Option<CredentialReport>, IamError> {
        // GenerateCredentialReport, then GetCredentialReport.
        self.1.round_trip().await;
        self.1.round_trip().await;
        self.0.credential_report().await
    }
}

/// [`FakeSecretStore`] behind the network.
#[derive(Debug)]
pub(crate) struct RemoteStore(pub(crate) FakeSecretStore, pub(crate) Arc<Network>);

#[async_trait]
impl SecretStore for RemoteStore {
    async fn load(&self, user: &UserName) -> Result<StoredUser, StoreError> {
        self.1.round_trip().await;
        self.0.load(user).await
    }

    async fn put_pending(
        &self,
        user: &UserName,
        credentials: &Credentials,
        created: Timestamp,
    ) -> Result<(), StoreError> {
        self.1.round_trip().await;
        self.0.put_pending(user, credentials, created).await
    }

    async fn load_for(
        &self,
        user: &UserName,
        keys: &[AccessKeyId],
    ) -> Result<StoredUser, StoreError> {
        self.1.round_trip().await;
        self.0.load_for(user, keys).await
    }

    async fn promote(
        &self,
        user: &UserName,
        key: &AccessKeyId,
        seen_current: Option<AccessKeyId>,
    ) -> Result<(), StoreError> {
        self.1.round_trip().await;
        self.0.promote(user, key, seen_current).await
    }

    async fn record_marks(
        &self,
        user: &UserName,
        key: &AccessKeyId,
        marks: &Marks,
    ) -> Result<(), StoreError> {
        self.1.round_trip().await;
        self.0.record_marks(user, key, marks).await
    }

    async fn clear_marks(&self, user: &UserName, key: &AccessKeyId) -> Result<(), StoreError> {
        self.1.round_trip().await;
        self.0.clear_marks(user, key).await
    }

    async fn record_intent(&self, user: &UserName, intent: &Intent) -> Result<(), StoreError> {
        self.1.round_trip().await;
        self.0.record_intent(user, intent).await
    }

    async fn record_notice(&self, user: &UserName, sent: &SentNotice) -> Result<(), StoreError> {
        self.1.round_trip().await;
        self.0.record_notice(user, sent).await
    }

    async fn credentials(
        &self,
        user: &UserName,
        key: &AccessKeyId,
    ) -> Result<Option<Credentials>, StoreError> {
        self.1.round_trip().await;
        self.0.credentials(user, key).await
    }

    async fn current(&self, user: &UserName) -> Result<Option<Credentials>, StoreError> {
        self.1.round_trip().await;
        self.0.current(user).await
    }

    async fn list_stored(&self) -> Result<Option<BTreeMap<UserName, StoredUser>>, StoreError> {
        let listed = self.0.list_stored().await?;
        // ListSecrets pages of 100.
        let pages = listed.as_ref().map_or(1, |l| l.len().div_ceil(100).max(1));
        for _ in 0..pages {
            self.1.round_trip().await;
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
        self.1.round_trip().await;
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
        self.1.round_trip().await;
        self.0.acquire(user, now, until).await
    }

    async fn renew(
        &self,
        user: &UserName,
        token: &LeaseToken,
        until: Timestamp,
    ) -> Result<bool, LeaseError> {
        self.1.round_trip().await;
        self.0.renew(user, token, until).await
    }

    async fn release(&self, user: &UserName, token: &LeaseToken) -> Result<(), LeaseError> {
        self.1.round_trip().await;
        self.0.release(user, token).await
    }

    async fn acquire_all(
        &self,
        users: &[UserName],
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<Claim>, LeaseError> {
        self.1.round_trip().await;
        self.0.acquire_all(users, now, until).await
    }

    async fn release_all(&self, held: &[(UserName, LeaseToken)]) -> Result<(), LeaseError> {
        self.1.round_trip().await;
        self.0.release_all(held).await
    }
}
