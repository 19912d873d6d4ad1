//! The ports as one process sees them: the shared fakes, checked around every call.

use super::*;

/// IAM as one process sees it: the fake, checked around every call, with a yield per call so
/// that concurrent runs interleave.
pub(crate) struct CheckedIam(pub(crate) Arc<World>, pub(crate) Proc);

#[async_trait]
impl Iam for CheckedIam {
    async fn managed_users(&self, selection: &Selection) -> Result<Vec<UserName>, IamError> {
        futures_yield().await;
        let r = self.0.aws.iam.managed_users(selection).await;
        self.0.check();
        r
    }

    async fn list_keys(&self, user: &UserName) -> Result<Vec<AccessKey>, IamError> {
        futures_yield().await;
        let r = self.0.aws.iam.list_keys(user).await;
        self.0.check();
        r
    }

    async fn create_key(&self, user: &UserName) -> Result<NewKey, IamError> {
        futures_yield().await;
        self.0.before_touch(self.1, user, "create a key");
        if self.0.seen().disabled.contains(user) {
            self.0.violation(format!(
                "keyrot created a key for {user}, whose access an administrator took away"
            ));
        }
        let r = self.0.aws.iam.create_key(user).await;
        self.0.after_create();
        self.0.check();
        r
    }

    async fn set_status(
        &self,
        user: &UserName,
        key: &AccessKeyId,
        status: KeyStatus,
    ) -> Result<(), IamError> {
        futures_yield().await;
        match status {
            KeyStatus::Inactive => self.0.before_retire(self.1, user, key, "deactivate"),
            KeyStatus::Active => {
                self.0.before_touch(self.1, user, "activate a key");
                if self.1 != PROC_PERSON {
                    self.0.violation(format!(
                        "{user}: keyrot re-activated {key} without a rollback asked for"
                    ));
                }
            }
        }
        let r = self.0.aws.iam.set_status(user, key, status).await;
        self.0.check();
        r
    }

    async fn delete_key(&self, user: &UserName, key: &AccessKeyId) -> Result<(), IamError> {
        futures_yield().await;
        self.0.before_retire(self.1, user, key, "delete");
        let r = self.0.aws.iam.delete_key(user, key).await;
        self.0.check();
        r
    }

    async fn last_used(&self, key: &AccessKeyId) -> LastUsed {
        futures_yield().await;
        let r = self.0.aws.iam.last_used(key).await;
        self.0.check();
        r
    }

    async fn credential_report(&self) -> Result<Option<CredentialReport>, IamError> {
        futures_yield().await;
        let r = self.0.aws.iam.credential_report().await;
        self.0.check();
        r
    }
}

/// The secret store as one process sees it, checked around every call.
pub(crate) struct CheckedStore(pub(crate) Arc<World>, pub(crate) Proc);

#[async_trait]
impl SecretStore for CheckedStore {
    async fn load(&self, user: &UserName) -> Result<StoredUser, StoreError> {
        futures_yield().await;
        let r = self.0.aws.store.load(user).await;
        self.0.check();
        r
    }

    async fn put_pending(
        &self,
        user: &UserName,
        credentials: &Credentials,
        created: Timestamp,
    ) -> Result<(), StoreError> {
        futures_yield().await;
        self.0.before_touch(self.1, user, "store a key");
        let r = self
            .0
            .aws
            .store
            .put_pending(user, credentials, created)
            .await;
        self.0.check();
        r
    }

    async fn load_for(
        &self,
        user: &UserName,
        keys: &[AccessKeyId],
    ) -> Result<StoredUser, StoreError> {
        futures_yield().await;
        let r = self.0.aws.store.load_for(user, keys).await;
        self.0.check();
        r
    }

    async fn promote(
        &self,
        user: &UserName,
        key: &AccessKeyId,
        seen_current: Option<AccessKeyId>,
    ) -> Result<(), StoreError> {
        futures_yield().await;
        self.0.before_touch(self.1, user, "publish a key");
        let r = self.0.aws.store.promote(user, key, seen_current).await;
        self.0.check();
        r
    }

    async fn record_marks(
        &self,
        user: &UserName,
        key: &AccessKeyId,
        marks: &Marks,
    ) -> Result<(), StoreError> {
        futures_yield().await;
        self.0.before_touch(self.1, user, "mark a key");
        let r = self.0.aws.store.record_marks(user, key, marks).await;
        self.0.check();
        r
    }

    async fn clear_marks(&self, user: &UserName, key: &AccessKeyId) -> Result<(), StoreError> {
        futures_yield().await;
        self.0.before_touch(self.1, user, "forget marks");
        let r = self.0.aws.store.clear_marks(user, key).await;
        self.0.check();
        r
    }

    async fn record_intent(&self, user: &UserName, intent: &Intent) -> Result<(), StoreError> {
        futures_yield().await;
        self.0.before_touch(self.1, user, "record an intent");
        let r = self.0.aws.store.record_intent(user, intent).await;
        self.0.check();
        r
    }

    async fn record_delivered(
        &self,
        user: &UserName,
        destination: &keyrot_core::delivery::DestinationId,
        delivered: &keyrot_core::delivery::Delivered,
    ) -> Result<(), StoreError> {
        futures_yield().await;
        self.0.before_touch(self.1, user, "record a delivery");
        let r = self
            .0
            .aws
            .store
            .record_delivered(user, destination, delivered)
            .await;
        self.0.check();
        r
    }

    async fn record_notice(&self, user: &UserName, sent: &SentNotice) -> Result<(), StoreError> {
        // Bookkeeping of alerts, not of keys: no lease needed (a blocked user is never leased).
        futures_yield().await;
        let r = self.0.aws.store.record_notice(user, sent).await;
        self.0.check();
        r
    }

    async fn credentials(
        &self,
        user: &UserName,
        key: &AccessKeyId,
    ) -> Result<Option<Credentials>, StoreError> {
        futures_yield().await;
        let r = self.0.aws.store.credentials(user, key).await;
        self.0.check();
        r
    }

    async fn current(&self, user: &UserName) -> Result<Option<Credentials>, StoreError> {
        futures_yield().await;
        let r = self.0.aws.store.current(user).await;
        self.0.check();
        r
    }

    async fn list_stored(&self) -> Result<Option<BTreeMap<UserName, StoredUser>>, StoreError> {
        futures_yield().await;
        let r = self.0.aws.store.list_stored().await;
        self.0.check();
        r
    }
}

/// The lease table as one process sees it: records which process holds which user. With
/// `always_granted` it grants every claim (a broken lease, for the test that shows the checker
/// notices).
pub(crate) struct CheckedLease {
    pub(crate) world: Arc<World>,
    pub(crate) proc: Proc,
    pub(crate) always_granted: bool,
}

impl CheckedLease {
    /// Records a granted claim as this process's (with `always_granted`, a refused one too:
    /// the broken lease of a mutation check).
    fn record(&self, user: &UserName, claim: Claim) -> Claim {
        let granted = match &claim {
            Claim::Granted(token) => Some(token.clone()),
            Claim::Taken { holder, .. } if self.always_granted => Some(holder.clone()),
            Claim::Taken { .. } => None,
        };
        let Some(token) = granted else {
            return claim;
        };
        self.world
            .seen()
            .tokens
            .insert((self.proc, user.clone()), token.clone());
        Claim::Granted(token)
    }
}

#[async_trait]
impl Lease for CheckedLease {
    async fn acquire(
        &self,
        user: &UserName,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Claim, LeaseError> {
        futures_yield().await;
        let r = self.world.aws.lease.acquire(user, now, until).await;
        Ok(self.record(user, r?))
    }

    async fn acquire_all(
        &self,
        users: &[UserName],
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<Claim>, LeaseError> {
        futures_yield().await;
        let r = self.world.aws.lease.acquire_all(users, now, until).await;
        Ok(users
            .iter()
            .zip(r?)
            .map(|(u, c)| self.record(u, c))
            .collect())
    }

    async fn release_all(&self, held: &[(UserName, LeaseToken)]) -> Result<(), LeaseError> {
        futures_yield().await;
        let r = self.world.aws.lease.release_all(held).await;
        let mut seen = self.world.seen();
        for (user, _) in held {
            seen.tokens.remove(&(self.proc, user.clone()));
        }
        r
    }

    async fn renew(
        &self,
        user: &UserName,
        token: &LeaseToken,
        until: Timestamp,
    ) -> Result<bool, LeaseError> {
        futures_yield().await;
        self.world.aws.lease.renew(user, token, until).await
    }

    async fn release(&self, user: &UserName, token: &LeaseToken) -> Result<(), LeaseError> {
        futures_yield().await;
        let r = self.world.aws.lease.release(user, token).await;
        self.world.seen().tokens.remove(&(self.proc, user.clone()));
        r
    }
}
