//! An in-memory Secrets Manager: one secret per user, one version per key, staging labels.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use super::clock::SimClock;
use super::faults::{FaultKind, FaultPlan, InjectedFault, op};
use super::request_token;
use crate::delivery::{Delivered, DestinationId};
use crate::model::{
    AccessKeyId, Credentials, Intent, Marks, SecretAccessKey, SentNotice, Stages, StoredUser,
    StoredVersion, Timestamp, UserName,
};
use crate::ports::{SecretStore, StoreError};

/// Secrets Manager keeps at most this many versions; beyond it, it removes deprecated ones.
const MAX_VERSIONS: usize = 100;

/// ... but never a version created less than this long ago.
const MIN_VERSION_AGE: Duration = Duration::from_secs(24 * 3600);

/// One stored version, as [`FakeSecretStore::versions`] shows it (no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// The version id (the `ClientRequestToken`, see [`request_token`]).
    pub token: String,
    /// The key whose secret it holds.
    pub key_id: AccessKeyId,
    /// Its staging labels.
    pub stages: Stages,
    /// The key's creation time, as stored with the secret.
    pub key_created: Timestamp,
    /// When the version was stored.
    pub stored_at: Timestamp,
}

/// An in-memory Secrets Manager with AWS's semantics. Clones share state.
///
/// - `put_pending` is `PutSecretValue` with `VersionStages=[AWSPENDING]` and the token
///   [`request_token`]: `AWSPENDING` moves to this version; the same token with the same
///   contents is ignored (success, nothing changes, not even the labels), with different
///   contents it is [`StoreError::Conflict`] and nothing changes.
/// - `promote` is `UpdateSecretVersionStage(AWSCURRENT, MoveToVersionId, RemoveFromVersionId)`:
///   `AWSCURRENT` moves, the version that lost it gets `AWSPREVIOUS` (taken from any other),
///   `AWSPENDING` stays where it was; promoting the current version is a no-op; promoting a
///   key with no version is [`StoreError::NoSuchVersion`].
/// - Versions left without labels are kept (listed as by `IncludeDeprecated=true`) until the
///   secret has more than 100 versions, as in AWS.
/// - Marks are kept per key (the AWS adapter keeps them as tags of the secret), and so are the
///   intent recorded before a key is created and the deliveries (a tag per destination;
///   `record_delivered` is a TagResource, counted as [`op::STORE_MARK`]).
/// - With the simulated SDK retrying (see [`SdkRetries`](super::SdkRetries)), a promotion whose
///   reply was lost is repeated as the SDK repeats it, and refused because `AWSCURRENT` has
///   moved already.
/// - `list_stored` is `ListSecrets`, which "might not reflect changes from the last five
///   minutes" (Secrets Manager API Reference): it shows each secret as it was
///   [`LISTING_LAG`] ago, only its labelled versions, and not at all a secret younger than
///   that.
#[derive(Clone)]
pub struct FakeSecretStore {
    inner: Arc<Inner>,
}

struct Inner {
    clock: SimClock,
    plan: FaultPlan,
    secrets: Mutex<BTreeMap<UserName, Secret>>,
}

/// How far behind the secrets the fake's listing is: the whole five minutes ListSecrets may
/// lag, always.
pub const LISTING_LAG: Duration = Duration::from_secs(5 * 60);

#[derive(Default)]
struct Secret {
    /// Oldest first.
    versions: Vec<Version>,
    marks: BTreeMap<AccessKeyId, Marks>,
    intent: Option<Intent>,
    /// What a listing shows of the secret after each change, oldest first: the last one at
    /// least [`LISTING_LAG`] old and every later one.
    listed: Vec<(Timestamp, StoredUser)>,
    last_notice: Option<SentNotice>,
    delivered: crate::delivery::DeliveryRecords,
}

struct Version {
    token: String,
    key_id: AccessKeyId,
    secret: SecretAccessKey,
    key_created: Timestamp,
    stored_at: Timestamp,
    stages: Stages,
}

impl Version {
    fn credentials(&self) -> Credentials {
        Credentials {
            access_key_id: self.key_id.clone(),
            secret_access_key: self.secret.clone(),
        }
    }

    fn info(&self) -> VersionInfo {
        VersionInfo {
            token: self.token.clone(),
            key_id: self.key_id.clone(),
            stages: self.stages,
            key_created: self.key_created,
            stored_at: self.stored_at,
        }
    }
}

impl Secret {
    fn stored_user(&self) -> StoredUser {
        StoredUser {
            versions: self
                .versions
                .iter()
                .rev()
                .map(|v| StoredVersion {
                    key_id: v.key_id.clone(),
                    stages: v.stages,
                })
                .collect(),
            marks: self
                .marks
                .iter()
                .filter(|(_, m)| !m.is_empty())
                .map(|(k, m)| (k.clone(), *m))
                .collect(),
            intent: self.intent.clone(),
            last_notice: self.last_notice.clone(),
            delivered: self.delivered.clone(),
        }
    }

    /// Records what a listing will show of the secret from `now` on, once the lag has passed.
    fn changed(&mut self, now: Timestamp) {
        let mut seen = self.stored_user();
        seen.versions.retain(|v| v.stages != Stages::default());
        self.listed.push((now, seen));
        let visible = super::sub(now, LISTING_LAG);
        let settled = self.listed.iter().rposition(|(at, _)| *at <= visible);
        if let Some(settled) = settled {
            self.listed.drain(..settled);
        }
    }

    /// The secret as a listing at `now` shows it, if it shows it at all.
    fn as_listed(&self, now: Timestamp) -> Option<StoredUser> {
        let visible = super::sub(now, LISTING_LAG);
        self.listed
            .iter()
            .rev()
            .find(|(at, _)| *at <= visible)
            .map(|(_, seen)| seen.clone())
    }

    fn version(&self, key: &AccessKeyId) -> Option<&Version> {
        let token = request_token(key);
        self.versions.iter().find(|v| v.token == token)
    }

    fn current(&self) -> Option<&Version> {
        self.versions.iter().find(|v| v.stages.current)
    }

    /// `PutSecretValue(ClientRequestToken, SecretString, VersionStages=[AWSPENDING])`.
    fn put_pending(
        &mut self,
        credentials: &Credentials,
        created: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let token = request_token(&credentials.access_key_id);
        if let Some(existing) = self.versions.iter().find(|v| v.token == token) {
            let same = existing.key_id == credentials.access_key_id
                && existing.secret == credentials.secret_access_key
                && existing.key_created == created;
            // AWS: the same contents are ignored; different ones cannot replace a version.
            return if same {
                Ok(())
            } else {
                Err(StoreError::Conflict)
            };
        }
        for v in &mut self.versions {
            v.stages.pending = false;
        }
        self.versions.push(Version {
            token,
            key_id: credentials.access_key_id.clone(),
            secret: credentials.secret_access_key.clone(),
            key_created: created,
            stored_at: now,
            stages: Stages {
                pending: true,
                ..Stages::default()
            },
        });
        self.prune(now);
        Ok(())
    }

    /// Removes the oldest deprecated versions beyond [`MAX_VERSIONS`], as AWS does.
    fn prune(&mut self, now: Timestamp) {
        while self.versions.len() > MAX_VERSIONS {
            let old_enough = super::sub(now, MIN_VERSION_AGE);
            let Some(i) = self
                .versions
                .iter()
                .position(|v| v.stages == Stages::default() && v.stored_at <= old_enough)
            else {
                return;
            };
            self.versions.remove(i);
        }
    }

    /// `UpdateSecretVersionStage(AWSCURRENT, MoveToVersionId, RemoveFromVersionId=current)`.
    fn promote(&mut self, key: &AccessKeyId) -> Result<(), StoreError> {
        let token = request_token(key);
        let target = self
            .versions
            .iter()
            .position(|v| v.token == token)
            .ok_or(StoreError::NoSuchVersion)?;
        if self.versions[target].stages.current {
            return Ok(());
        }
        let old = self.versions.iter().position(|v| v.stages.current);
        if let Some(old) = old {
            for v in &mut self.versions {
                v.stages.previous = false;
            }
            self.versions[old].stages.current = false;
            self.versions[old].stages.previous = true;
        }
        self.versions[target].stages.current = true;
        Ok(())
    }
}

fn store_error(fault: InjectedFault) -> StoreError {
    match fault.kind {
        FaultKind::Throttle => StoreError::Throttled(Box::new(fault)),
        _ => StoreError::Other(Box::new(fault)),
    }
}

impl FakeSecretStore {
    /// An empty store reading time from `clock`, failing as `plan` says.
    pub fn new(clock: SimClock, plan: FaultPlan) -> Self {
        Self {
            inner: Arc::new(Inner {
                clock,
                plan,
                secrets: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    fn secrets(&self) -> MutexGuard<'_, BTreeMap<UserName, Secret>> {
        self.inner
            .secrets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The fault plan this store obeys.
    pub fn plan(&self) -> &FaultPlan {
        &self.inner.plan
    }

    /// The clock this store reads.
    pub fn clock(&self) -> &SimClock {
        &self.inner.clock
    }

    /// One call through the fault plan (see `FaultPlan::call`); `effect` gets the attempt.
    async fn call<T>(
        &self,
        op: &'static str,
        effect: impl FnMut(u32) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.inner
            .plan
            .call(op, &self.inner.clock, store_error, effect)
            .await
    }

    // ---- setup and inspection: no faults, no counters ----

    /// `CreateSecret` with a value, as someone did before keyrot: the first version holds
    /// `credentials` and is `AWSCURRENT`. False (and nothing changes) if the user already has
    /// versions.
    pub fn create_secret(
        &self,
        user: &UserName,
        credentials: &Credentials,
        created: Timestamp,
    ) -> bool {
        let now = self.inner.clock.now();
        let mut secrets = self.secrets();
        let secret = secrets.entry(user.clone()).or_default();
        if !secret.versions.is_empty() {
            return false;
        }
        secret.versions.push(Version {
            token: request_token(&credentials.access_key_id),
            key_id: credentials.access_key_id.clone(),
            secret: credentials.secret_access_key.clone(),
            key_created: created,
            stored_at: now,
            stages: Stages {
                current: true,
                ..Stages::default()
            },
        });
        secret.changed(now);
        true
    }

    /// Deletes a user's secret (versions and marks); false if there was none.
    pub fn delete_secret(&self, user: &UserName) -> bool {
        self.secrets().remove(user).is_some()
    }

    /// The users that have a secret.
    pub fn users(&self) -> Vec<UserName> {
        self.secrets().keys().cloned().collect()
    }

    /// What `load` would answer, without faults.
    pub fn snapshot(&self, user: &UserName) -> StoredUser {
        self.secrets()
            .get(user)
            .map(Secret::stored_user)
            .unwrap_or_default()
    }

    /// The user's versions, oldest first, with tokens and times.
    pub fn versions(&self, user: &UserName) -> Vec<VersionInfo> {
        self.secrets()
            .get(user)
            .map(|s| s.versions.iter().map(Version::info).collect())
            .unwrap_or_default()
    }

    /// The key of the current version, without faults.
    pub fn current_key(&self, user: &UserName) -> Option<AccessKeyId> {
        self.secrets()
            .get(user)
            .and_then(|s| s.current().map(|v| v.key_id.clone()))
    }

    /// The current credentials, without faults (what a consumer would fetch).
    pub fn current_credentials(&self, user: &UserName) -> Option<Credentials> {
        self.secrets()
            .get(user)
            .and_then(|s| s.current().map(Version::credentials))
    }
}

#[async_trait]
impl SecretStore for FakeSecretStore {
    async fn load(&self, user: &UserName) -> Result<StoredUser, StoreError> {
        self.call(op::STORE_LOAD, |_| Ok(self.snapshot(user))).await
    }

    async fn load_for(
        &self,
        user: &UserName,
        keys: &[AccessKeyId],
    ) -> Result<StoredUser, StoreError> {
        // As Secrets Manager's adapter: DescribeSecret shows labelled versions only, and the
        // versions that lost their labels are listed only when those do not account for every
        // key IAM has.
        let mut stored = self.load(user).await?;
        let mut labelled = stored.clone();
        labelled.versions.retain(|v| v.stages != Stages::default());
        if labelled.accounts_for(keys) {
            stored = labelled;
        }
        Ok(stored)
    }

    async fn put_pending(
        &self,
        user: &UserName,
        credentials: &Credentials,
        created: Timestamp,
    ) -> Result<(), StoreError> {
        self.call(op::STORE_PUT_PENDING, |_| {
            let now = self.inner.clock.now();
            let mut secrets = self.secrets();
            let secret = secrets.entry(user.clone()).or_default();
            secret.put_pending(credentials, created, now)?;
            secret.changed(now);
            Ok(())
        })
        .await
    }

    async fn promote(
        &self,
        user: &UserName,
        key: &AccessKeyId,
        _seen_current: Option<AccessKeyId>,
    ) -> Result<(), StoreError> {
        // Whatever the hint, the adapter moves the label from where it is (see the port).
        self.call(op::STORE_PROMOTE, |attempt| {
            let mut secrets = self.secrets();
            let secret = secrets.get_mut(user).ok_or(StoreError::NoSuchVersion)?;
            if attempt > 1 && secret.current().is_some_and(|v| &v.key_id == key) {
                // The SDK repeats the request it sent, with `RemoveFromVersionId` naming the
                // version that was current then; Secrets Manager refuses it once the first
                // attempt has moved the label (InvalidParameterException).
                return Err(StoreError::Other(
                    "AWSCURRENT is not attached to the version in RemoveFromVersionId".into(),
                ));
            }
            secret.promote(key)?;
            secret.changed(self.inner.clock.now());
            Ok(())
        })
        .await
    }

    async fn record_marks(
        &self,
        user: &UserName,
        key: &AccessKeyId,
        marks: &Marks,
    ) -> Result<(), StoreError> {
        self.call(op::STORE_MARK, |_| {
            let mut secrets = self.secrets();
            let secret = secrets.entry(user.clone()).or_default();
            secret.marks.insert(key.clone(), *marks);
            secret.changed(self.inner.clock.now());
            Ok(())
        })
        .await
    }

    async fn clear_marks(&self, user: &UserName, key: &AccessKeyId) -> Result<(), StoreError> {
        self.call(op::STORE_CLEAR_MARKS, |_| {
            if let Some(secret) = self.secrets().get_mut(user) {
                secret.marks.remove(key);
                secret.changed(self.inner.clock.now());
            }
            Ok(())
        })
        .await
    }

    async fn record_intent(&self, user: &UserName, intent: &Intent) -> Result<(), StoreError> {
        self.call(op::STORE_RECORD_INTENT, |_| {
            let mut secrets = self.secrets();
            let secret = secrets.entry(user.clone()).or_default();
            secret.intent = Some(intent.clone());
            secret.changed(self.inner.clock.now());
            Ok(())
        })
        .await
    }

    async fn record_notice(&self, user: &UserName, sent: &SentNotice) -> Result<(), StoreError> {
        self.call(op::STORE_RECORD_NOTICE, |_| {
            self.secrets().entry(user.clone()).or_default().last_notice = Some(sent.clone());
            Ok(())
        })
        .await
    }

    async fn record_delivered(
        &self,
        user: &UserName,
        destination: &DestinationId,
        delivered: &Delivered,
    ) -> Result<(), StoreError> {
        self.call(op::STORE_MARK, |_| {
            let mut secrets = self.secrets();
            let secret = secrets.entry(user.clone()).or_default();
            secret
                .delivered
                .insert(destination.clone(), delivered.clone());
            secret.changed(self.inner.clock.now());
            Ok(())
        })
        .await
    }

    async fn credentials(
        &self,
        user: &UserName,
        key: &AccessKeyId,
    ) -> Result<Option<Credentials>, StoreError> {
        self.call(op::STORE_CREDENTIALS, |_| {
            Ok(self
                .secrets()
                .get(user)
                .and_then(|s| s.version(key).map(Version::credentials)))
        })
        .await
    }

    async fn current(&self, user: &UserName) -> Result<Option<Credentials>, StoreError> {
        self.call(op::STORE_CURRENT, |_| Ok(self.current_credentials(user)))
            .await
    }

    async fn list_stored(&self) -> Result<Option<BTreeMap<UserName, StoredUser>>, StoreError> {
        self.call(op::STORE_LIST, |_| {
            let now = self.inner.clock.now();
            let listed = self
                .secrets()
                .iter()
                .filter_map(|(user, secret)| Some((user.clone(), secret.as_listed(now)?)))
                .collect();
            Ok(Some(listed))
        })
        .await
    }
}

impl fmt::Debug for FakeSecretStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secrets = self.secrets();
        f.debug_struct("FakeSecretStore")
            .field("secrets", &secrets.len())
            .field(
                "versions",
                &secrets.values().map(|s| s.versions.len()).sum::<usize>(),
            )
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;

    use super::*;
    use crate::model::Mark;

    fn t0() -> Timestamp {
        Timestamp::from_second(1_700_000_000).unwrap()
    }

    fn user(name: &str) -> UserName {
        UserName::new(name).unwrap()
    }

    fn creds(id: &str, secret: &str) -> Credentials {
        Credentials {
            access_key_id: AccessKeyId::new(id).unwrap(),
            secret_access_key: SecretAccessKey::new(secret),
        }
    }

    fn store() -> FakeSecretStore {
        FakeSecretStore::new(SimClock::new(t0()), FaultPlan::none())
    }

    /// `key:stages` of every version, newest first, as `load` lists them.
    fn labels(store: &FakeSecretStore, user: &UserName) -> Vec<String> {
        store
            .snapshot(user)
            .versions
            .iter()
            .map(|v| format!("{}:{}", &v.key_id.as_str()[16..], v.stages))
            .collect()
    }

    const A: &str = "AKIAAAAAAAAAAAAAAAAA";
    const B: &str = "AKIABBBBBBBBBBBBBBBB";
    const C: &str = "AKIACCCCCCCCCCCCCCCC";

    #[test]
    fn stages_move_like_secrets_manager() {
        let store = store();
        let alice = user("alice");
        assert_eq!(block_on(store.load(&alice)).unwrap(), StoredUser::default());
        block_on(store.put_pending(&alice, &creds(A, "a"), t0())).unwrap();
        assert_eq!(labels(&store, &alice), ["AAAA:pending"]);
        assert_eq!(block_on(store.current(&alice)).unwrap(), None);
        block_on(store.promote(&alice, &creds(A, "a").access_key_id, None)).unwrap();
        assert_eq!(labels(&store, &alice), ["AAAA:current+pending"]);

        block_on(store.put_pending(&alice, &creds(B, "b"), t0())).unwrap();
        assert_eq!(labels(&store, &alice), ["BBBB:pending", "AAAA:current"]);
        block_on(store.promote(&alice, &creds(B, "b").access_key_id, None)).unwrap();
        assert_eq!(
            labels(&store, &alice),
            ["BBBB:current+pending", "AAAA:previous"]
        );
        // Promoting the current version again changes nothing.
        block_on(store.promote(&alice, &creds(B, "b").access_key_id, None)).unwrap();
        assert_eq!(
            labels(&store, &alice),
            ["BBBB:current+pending", "AAAA:previous"]
        );

        block_on(store.put_pending(&alice, &creds(C, "c"), t0())).unwrap();
        block_on(store.promote(&alice, &creds(C, "c").access_key_id, None)).unwrap();
        assert_eq!(
            labels(&store, &alice),
            ["CCCC:current+pending", "BBBB:previous", "AAAA:-"]
        );
        assert_eq!(
            block_on(store.current(&alice)).unwrap(),
            Some(creds(C, "c"))
        );
        assert_eq!(
            block_on(store.credentials(&alice, &creds(A, "a").access_key_id)).unwrap(),
            Some(creds(A, "a"))
        );
        let stored = block_on(store.load(&alice)).unwrap();
        assert_eq!(stored.current(), Some(&creds(C, "c").access_key_id));
        assert_eq!(stored.pending(), None);
    }

    #[test]
    fn a_new_pending_version_takes_the_label_from_the_old_one() {
        let store = store();
        let alice = user("alice");
        block_on(store.put_pending(&alice, &creds(A, "a"), t0())).unwrap();
        block_on(store.put_pending(&alice, &creds(B, "b"), t0())).unwrap();
        assert_eq!(labels(&store, &alice), ["BBBB:pending", "AAAA:-"]);
    }

    #[test]
    fn request_tokens_make_puts_idempotent_and_refuse_conflicts() {
        let store = store();
        let alice = user("alice");
        block_on(store.put_pending(&alice, &creds(A, "a"), t0())).unwrap();
        block_on(store.put_pending(&alice, &creds(A, "a"), t0())).unwrap();
        assert_eq!(store.versions(&alice).len(), 1);
        assert_eq!(
            store.versions(&alice)[0].token,
            request_token(&creds(A, "a").access_key_id)
        );
        let conflict = block_on(store.put_pending(&alice, &creds(A, "other"), t0()));
        assert!(
            matches!(conflict, Err(StoreError::Conflict)),
            "{conflict:?}"
        );
        let later = jiff::Timestamp::from_second(1).unwrap();
        assert!(matches!(
            block_on(store.put_pending(&alice, &creds(A, "a"), later)),
            Err(StoreError::Conflict)
        ));
        assert_eq!(
            block_on(store.credentials(&alice, &creds(A, "a").access_key_id)).unwrap(),
            Some(creds(A, "a")),
            "the conflicting put changed nothing"
        );
        // A repeated put is ignored, labels included (as AWS documents).
        block_on(store.put_pending(&alice, &creds(B, "b"), t0())).unwrap();
        block_on(store.put_pending(&alice, &creds(A, "a"), t0())).unwrap();
        assert_eq!(labels(&store, &alice), ["BBBB:pending", "AAAA:-"]);
    }

    #[test]
    fn promoting_an_unknown_version_fails() {
        let store = store();
        let alice = user("alice");
        let a = creds(A, "a").access_key_id;
        assert!(matches!(
            block_on(store.promote(&alice, &a, None)),
            Err(StoreError::NoSuchVersion)
        ));
        block_on(store.put_pending(&alice, &creds(B, "b"), t0())).unwrap();
        assert!(matches!(
            block_on(store.promote(&alice, &a, None)),
            Err(StoreError::NoSuchVersion)
        ));
        assert_eq!(labels(&store, &alice), ["BBBB:pending"]);
    }

    #[test]
    fn marks_are_kept_per_key_replaced_whole_and_cleared() {
        let store = store();
        let alice = user("alice");
        let a = creds(A, "a").access_key_id;
        let b = creds(B, "b").access_key_id;
        let mut marks = Marks::default();
        marks.set(Mark::Adopted, t0());
        block_on(store.record_marks(&alice, &a, &marks)).unwrap();
        block_on(store.record_marks(&alice, &b, &marks)).unwrap();
        let later = store.clock().advance(Duration::from_secs(5));
        let only_superseded = Marks {
            superseded: Some(later),
            ..Marks::default()
        };
        block_on(store.record_marks(&alice, &a, &only_superseded)).unwrap();
        let stored = block_on(store.load(&alice)).unwrap();
        // What was recorded for a is replaced whole; b's are its own.
        assert_eq!(stored.marks_of(&a), only_superseded);
        assert_eq!(stored.marks_of(&b), marks);
        block_on(store.clear_marks(&alice, &a)).unwrap();
        let stored = block_on(store.load(&alice)).unwrap();
        assert_eq!(stored.marks_of(&a), Marks::default());
        assert_eq!(stored.marks_of(&b), marks);
    }

    #[test]
    fn faults_apply_and_fail_after_keeps_the_effect() {
        let store = store();
        let alice = user("alice");
        store
            .plan()
            .fail_at(op::STORE_PUT_PENDING, FaultKind::FailBefore);
        assert!(block_on(store.put_pending(&alice, &creds(A, "a"), t0())).is_err());
        assert!(store.versions(&alice).is_empty());
        store
            .plan()
            .fail_at(op::STORE_PUT_PENDING, FaultKind::FailAfter);
        assert!(block_on(store.put_pending(&alice, &creds(A, "a"), t0())).is_err());
        assert_eq!(labels(&store, &alice), ["AAAA:pending"]);
        // The retry is idempotent.
        block_on(store.put_pending(&alice, &creds(A, "a"), t0())).unwrap();
        store.plan().fail_at(op::STORE_PROMOTE, FaultKind::Throttle);
        assert!(matches!(
            block_on(store.promote(&alice, &creds(A, "a").access_key_id, None)),
            Err(StoreError::Throttled(_))
        ));
        store.plan().crash_at(op::STORE_PROMOTE);
        assert!(block_on(store.promote(&alice, &creds(A, "a").access_key_id, None)).is_err());
        assert!(block_on(store.load(&alice)).is_err());
        assert_eq!(labels(&store, &alice), ["AAAA:pending"]);
        store.plan().restart();
        block_on(store.promote(&alice, &creds(A, "a").access_key_id, None)).unwrap();
        assert_eq!(store.current_key(&alice), Some(creds(A, "a").access_key_id));
    }

    #[test]
    fn an_existing_secret_starts_current() {
        let store = store();
        let alice = user("alice");
        assert!(store.create_secret(&alice, &creds(A, "a"), t0()));
        assert!(!store.create_secret(&alice, &creds(B, "b"), t0()));
        assert_eq!(labels(&store, &alice), ["AAAA:current"]);
    }

    #[test]
    fn deprecated_versions_are_pruned_beyond_one_hundred() {
        let store = store();
        let alice = user("alice");
        for i in 0..105 {
            let id = format!("AKIA{i:016}");
            block_on(store.put_pending(&alice, &creds(&id, "s"), t0())).unwrap();
            store.clock().advance(Duration::from_secs(24 * 3600));
        }
        let versions = store.versions(&alice);
        assert_eq!(versions.len(), 100);
        assert!(versions.last().unwrap().stages.pending);
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let store = store();
        let alice = user("alice");
        block_on(store.put_pending(&alice, &creds(A, "hunter2hunter2"), t0())).unwrap();
        let shown = format!(
            "{store:?} {:?} {:?}",
            store.versions(&alice),
            store.snapshot(&alice)
        );
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
