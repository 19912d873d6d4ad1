//! An in-memory IAM: users with tags, at most two access keys each, secrets, last-used dates and
//! eventual consistency.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::clock::SimClock;
use super::faults::{FaultKind, FaultPlan, InjectedFault, op};
use crate::model::{
    AccessKey, AccessKeyId, Credentials, KeyStatus, LastUsed, NewKey, SecretAccessKey, Timestamp,
    UserName, whole_seconds,
};
use crate::policy::Selection;
use crate::ports::{Iam, IamError};
use crate::survey::{CredentialReport, ReportedKey};

/// The most access keys IAM allows a user.
const KEY_LIMIT: usize = 2;

/// A change made through the [`Iam`] port (setup helpers are not logged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IamAction {
    /// `CreateAccessKey` created this key.
    Created(AccessKeyId),
    /// `UpdateAccessKey` set this key's status.
    SetStatus(AccessKeyId, KeyStatus),
    /// `DeleteAccessKey` deleted this key.
    Deleted(AccessKeyId),
    /// `CreateAccessKey` was asked for a user who already had two keys (IAM refused it).
    ThirdKeyRequested,
}

/// One entry of [`FakeIam::history`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamEvent {
    /// Virtual time of the call.
    pub at: Timestamp,
    /// Whose keys.
    pub user: UserName,
    /// What happened.
    pub action: IamAction,
}

/// Why a request signed with a key would not authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// No such key (never created, or deleted): `InvalidClientTokenId`.
    #[error("no such access key")]
    UnknownKey,
    /// IAM has not propagated the new key yet: also `InvalidClientTokenId`.
    #[error("the access key has not propagated yet")]
    NotPropagated,
    /// The key is inactive.
    #[error("the access key is inactive")]
    Inactive,
    /// The secret does not match: `SignatureDoesNotMatch`.
    #[error("the signature does not match")]
    WrongSecret,
}

/// An in-memory IAM that behaves like AWS's. Clones share state.
///
/// - A user has at most two keys: a third `create_key` is answered with
///   [`IamError::LimitExceeded`] and changes nothing (and is counted, see
///   [`FakeIam::third_key_requests`]).
/// - Unknown users and keys (and keys of another user) are [`IamError::NoSuchEntity`].
/// - A key authenticates only [`FakeIam::propagation_delay`] after its creation or
///   re-activation, and goes on authenticating for as long after it was deactivated or deleted.
/// - `last_used` answers from recorded uses, seen after an optional lag as in AWS; any failure
///   is [`LastUsed::Unknown`].
/// - Key ids are `AKIA` and 16 upper-case letters and digits, and secrets 40 characters, both
///   drawn from the seed.
#[derive(Clone)]
pub struct FakeIam {
    inner: Arc<Inner>,
}

struct Inner {
    clock: SimClock,
    plan: FaultPlan,
    state: Mutex<State>,
}

struct State {
    rng: ChaCha8Rng,
    users: BTreeMap<UserName, User>,
    owners: BTreeMap<AccessKeyId, UserName>,
    /// Deleted keys, with their owner and when: they authenticate while the deletion propagates.
    deleted: BTreeMap<AccessKeyId, (UserName, Key, Timestamp)>,
    issued: BTreeSet<AccessKeyId>,
    history: Vec<IamEvent>,
    third_key_requests: u64,
    propagation_delay: Duration,
    last_used_lag: Duration,
    /// The last credential report: a snapshot, handed out until it is four hours old.
    report: Option<CredentialReport>,
}

/// How long IAM hands out the same credential report before it makes a new one ("If a
/// credential report was generated in the last four hours, GenerateCredentialReport does not
/// generate a new one", IAM User Guide, "Getting credential reports").
const REPORT_REUSED_FOR: Duration = Duration::from_secs(4 * 3600);

#[derive(Default)]
struct User {
    tags: BTreeMap<String, String>,
    keys: Vec<Key>,
}

struct Key {
    key: AccessKey,
    secret: SecretAccessKey,
    /// Recorded uses, ascending; only the latest one old enough to be visible is kept.
    uses: Vec<Timestamp>,
    /// When the status last changed (the creation time until then): propagation runs from here.
    status_changed: Timestamp,
    /// Whether the key was active before its last change (an inactive key authenticates only
    /// while its deactivation propagates).
    was_active: bool,
}

fn iam_error(fault: InjectedFault) -> IamError {
    match fault.kind {
        FaultKind::Throttle => IamError::Throttled(Box::new(fault)),
        _ => IamError::Other(Box::new(fault)),
    }
}

impl FakeIam {
    /// An empty IAM reading time from `clock`, failing as `plan` says, drawing ids from `seed`.
    pub fn new(clock: SimClock, plan: FaultPlan, seed: u64) -> Self {
        Self {
            inner: Arc::new(Inner {
                clock,
                plan,
                state: Mutex::new(State {
                    rng: ChaCha8Rng::seed_from_u64(seed),
                    users: BTreeMap::new(),
                    owners: BTreeMap::new(),
                    deleted: BTreeMap::new(),
                    issued: BTreeSet::new(),
                    history: Vec::new(),
                    third_key_requests: 0,
                    propagation_delay: Duration::ZERO,
                    last_used_lag: Duration::ZERO,
                    report: None,
                }),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The clock this IAM reads.
    pub fn clock(&self) -> &SimClock {
        &self.inner.clock
    }

    /// The fault plan this IAM obeys.
    pub fn plan(&self) -> &FaultPlan {
        &self.inner.plan
    }

    /// How long after its creation a key starts to authenticate (default zero).
    pub fn propagation_delay(&self) -> Duration {
        self.state().propagation_delay
    }

    /// Sets the propagation delay: IAM's eventual consistency.
    pub fn set_propagation_delay(&self, delay: Duration) {
        self.state().propagation_delay = delay;
    }

    /// Uses show in `last_used` only this long after they happen (default zero; AWS documents
    /// up to hours).
    pub fn set_last_used_lag(&self, lag: Duration) {
        self.state().last_used_lag = lag;
    }

    // ---- setup and inspection: no faults, no counters, no history ----

    /// Adds a user with `tags`; returns false (and merges the tags) if the user existed.
    pub fn add_user<K, V>(&self, user: UserName, tags: impl IntoIterator<Item = (K, V)>) -> bool
    where
        K: Into<String>,
        V: Into<String>,
    {
        let mut state = self.state();
        let added = !state.users.contains_key(&user);
        let entry = state.users.entry(user).or_default();
        entry
            .tags
            .extend(tags.into_iter().map(|(k, v)| (k.into(), v.into())));
        added
    }

    /// Adds a user tagged as [`Selection::default`] selects (`keyrot:managed=true`).
    pub fn add_managed_user(&self, user: UserName) -> bool {
        match Selection::default() {
            Selection::Tagged { key, value } => self.add_user(user, [(key, value)]),
            Selection::Listed(_) => self.add_user(user, Vec::<(String, String)>::new()),
        }
    }

    /// Sets a tag on a user; false if there is no such user.
    pub fn set_tag(
        &self,
        user: &UserName,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> bool {
        match self.state().users.get_mut(user) {
            Some(u) => {
                u.tags.insert(key.into(), value.into());
                true
            }
            None => false,
        }
    }

    /// Removes a tag from a user; false if there was no such user or tag.
    pub fn remove_tag(&self, user: &UserName, key: &str) -> bool {
        self.state()
            .users
            .get_mut(user)
            .is_some_and(|u| u.tags.remove(key).is_some())
    }

    /// Deletes a user and its keys; false if there was no such user.
    pub fn delete_user(&self, user: &UserName) -> bool {
        let mut state = self.state();
        let Some(removed) = state.users.remove(user) else {
            return false;
        };
        for key in &removed.keys {
            state.owners.remove(&key.key.id);
        }
        true
    }

    /// Adds a key as if created at `created` with `status` (to seed legacy keys), bypassing
    /// faults; the two-key limit still holds.
    pub fn add_key(
        &self,
        user: &UserName,
        status: KeyStatus,
        created: Timestamp,
    ) -> Result<NewKey, IamError> {
        self.state().create(user, status, created)
    }

    /// Deletes a key as an operator would (not keyrot): no faults, no history. The deletion
    /// propagates like one made through the port. False if there is no such key.
    pub fn remove_key(&self, user: &UserName, key: &AccessKeyId) -> bool {
        let now = self.inner.clock.now();
        let mut state = self.state();
        let removed = state.users.get_mut(user).and_then(|u| {
            let at = u.keys.iter().position(|k| &k.key.id == key)?;
            Some(u.keys.remove(at))
        });
        match removed {
            Some(removed) => {
                state.owners.remove(key);
                state
                    .deleted
                    .insert(key.clone(), (user.clone(), removed, now));
                true
            }
            None => false,
        }
    }

    /// Sets a key's status as an administrator would (not keyrot): no faults, no history. The
    /// change propagates like one made through the port. False if there is no such key.
    pub fn set_key_status(&self, key: &AccessKeyId, status: KeyStatus) -> bool {
        let now = self.inner.clock.now();
        match self.state().find_mut(key) {
            Some(k) => {
                k.set_status(status, now);
                true
            }
            None => false,
        }
    }

    /// Every user, by name.
    pub fn users(&self) -> Vec<UserName> {
        self.state().users.keys().cloned().collect()
    }

    /// A user's tags (empty if there is no such user).
    pub fn tags(&self, user: &UserName) -> BTreeMap<String, String> {
        self.state()
            .users
            .get(user)
            .map(|u| u.tags.clone())
            .unwrap_or_default()
    }

    /// A user's keys now, oldest first (empty if there is no such user).
    pub fn keys(&self, user: &UserName) -> Vec<AccessKey> {
        self.state()
            .users
            .get(user)
            .map(|u| u.keys.iter().map(|k| k.key.clone()).collect())
            .unwrap_or_default()
    }

    /// The key with this id, if it exists.
    pub fn key(&self, key: &AccessKeyId) -> Option<AccessKey> {
        self.state().find(key).map(|k| k.key.clone())
    }

    /// Who owns the key, if it exists.
    pub fn owner_of(&self, key: &AccessKeyId) -> Option<UserName> {
        self.state().owners.get(key).cloned()
    }

    /// The key's secret, if the key exists.
    pub fn secret_of(&self, key: &AccessKeyId) -> Option<SecretAccessKey> {
        self.state().find(key).map(|k| k.secret.clone())
    }

    /// The key's credentials, if the key exists.
    pub fn credentials_of(&self, key: &AccessKeyId) -> Option<Credentials> {
        self.secret_of(key).map(|secret| Credentials {
            access_key_id: key.clone(),
            secret_access_key: secret,
        })
    }

    /// Records that the key was used at `at` (a consumer's request); false if there is no such
    /// key. Status and secret are not checked: see [`FakeIam::authenticate`] for that.
    pub fn record_use(&self, key: &AccessKeyId, at: Timestamp) -> bool {
        let now = self.inner.clock.now();
        let mut state = self.state();
        let lag = state.last_used_lag;
        match state.find_mut(key) {
            Some(k) => {
                k.record_use(at, now, lag);
                true
            }
            None => false,
        }
    }

    /// What `last_used` answers now, without faults or counting.
    pub fn peek_last_used(&self, key: &AccessKeyId) -> LastUsed {
        let now = self.inner.clock.now();
        let state = self.state();
        state
            .find(key)
            .map_or(LastUsed::Unknown, |k| k.last_used(now, state.last_used_lag))
    }

    /// Authenticates a request signed with `credentials` at `at`, as IAM would, and on success
    /// records the use (as STS and every AWS API do) and returns the key's owner. No faults.
    pub fn authenticate(
        &self,
        credentials: &Credentials,
        at: Timestamp,
    ) -> Result<UserName, AuthFailure> {
        let now = self.inner.clock.now();
        let mut state = self.state();
        let owner = state.check_auth(credentials, at)?;
        let lag = state.last_used_lag;
        if let Some(key) = state.find_mut(&credentials.access_key_id) {
            key.record_use(at, now, lag);
        }
        Ok(owner)
    }

    /// Whether `credentials` would authenticate at `at`, without recording a use.
    pub fn would_authenticate(&self, credentials: &Credentials, at: Timestamp) -> bool {
        self.state().check_auth(credentials, at).is_ok()
    }

    /// Every change made through the port, oldest first.
    pub fn history(&self) -> Vec<IamEvent> {
        self.state().history.clone()
    }

    /// Returns and forgets the history.
    pub fn take_history(&self) -> Vec<IamEvent> {
        std::mem::take(&mut self.state().history)
    }

    /// How many times `create_key` was called for a user who already had two keys.
    pub fn third_key_requests(&self) -> u64 {
        self.state().third_key_requests
    }

    /// One call through the fault plan (see `FaultPlan::call`); `effect` gets the attempt.
    async fn call<T>(
        &self,
        op: &'static str,
        effect: impl FnMut(u32) -> Result<T, IamError>,
    ) -> Result<T, IamError> {
        self.inner
            .plan
            .call(op, &self.inner.clock, iam_error, effect)
            .await
    }
}

impl State {
    fn note_third_key_request(&mut self, user: &UserName, now: Timestamp) {
        if self
            .users
            .get(user)
            .is_some_and(|u| u.keys.len() >= KEY_LIMIT)
        {
            self.third_key_requests += 1;
            self.history.push(IamEvent {
                at: now,
                user: user.clone(),
                action: IamAction::ThirdKeyRequested,
            });
        }
    }

    /// Whether a request signed with `credentials` at `at` authenticates, and as whom, with
    /// IAM's propagation delay both ways: a key authenticates only `delay` after it was
    /// created or re-activated, and goes on authenticating for `delay` after it was deactivated
    /// or deleted (IAM User Guide, "Changes that I make are not always immediately visible":
    /// IAM is eventually consistent, and changes take time to reach every endpoint).
    fn check_auth(
        &self,
        credentials: &Credentials,
        at: Timestamp,
    ) -> Result<UserName, AuthFailure> {
        let id = &credentials.access_key_id;
        let (owner, key) = match (self.owners.get(id), self.find(id)) {
            (Some(owner), Some(key)) => (owner, key),
            _ => match self.deleted.get(id) {
                // Deleted, but the deletion has not reached every endpoint yet.
                Some((owner, key, deleted))
                    if at < super::add(*deleted, self.propagation_delay) =>
                {
                    (owner, key)
                }
                _ => return Err(AuthFailure::UnknownKey),
            },
        };
        let delay = self.propagation_delay;
        let active = match key.key.status {
            KeyStatus::Active if at < super::add(key.status_changed, delay) => {
                // Not propagated yet: a new key fails, a re-activated one is still refused.
                return Err(if key.status_changed == key.key.created {
                    AuthFailure::NotPropagated
                } else {
                    AuthFailure::Inactive
                });
            }
            KeyStatus::Active => true,
            KeyStatus::Inactive => key.was_active && at < super::add(key.status_changed, delay),
        };
        if !active {
            return Err(AuthFailure::Inactive);
        }
        if key.secret != credentials.secret_access_key {
            return Err(AuthFailure::WrongSecret);
        }
        Ok(owner.clone())
    }

    fn find(&self, id: &AccessKeyId) -> Option<&Key> {
        let owner = self.owners.get(id)?;
        self.users.get(owner)?.keys.iter().find(|k| &k.key.id == id)
    }

    fn find_mut(&mut self, id: &AccessKeyId) -> Option<&mut Key> {
        let owner = self.owners.get(id)?;
        self.users
            .get_mut(owner)?
            .keys
            .iter_mut()
            .find(|k| &k.key.id == id)
    }

    /// The key `id` of `user`, which must be the owner.
    fn key_of_mut(&mut self, user: &UserName, id: &AccessKeyId) -> Result<&mut Key, IamError> {
        self.users
            .get_mut(user)
            .and_then(|u| u.keys.iter_mut().find(|k| &k.key.id == id))
            .ok_or(IamError::NoSuchEntity)
    }

    fn draw(&mut self, alphabet: &[u8], len: usize) -> String {
        (0..len)
            .map(|_| char::from(alphabet[self.rng.random_range(0..alphabet.len())]))
            .collect()
    }

    fn new_id(&mut self) -> AccessKeyId {
        const ID_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        loop {
            let id = format!("AKIA{}", self.draw(ID_CHARS, 16));
            if let Ok(id) = AccessKeyId::new(id)
                && self.issued.insert(id.clone())
            {
                return id;
            }
        }
    }

    fn create(
        &mut self,
        user: &UserName,
        status: KeyStatus,
        created: Timestamp,
    ) -> Result<NewKey, IamError> {
        let count = self
            .users
            .get(user)
            .ok_or(IamError::NoSuchEntity)?
            .keys
            .len();
        if count >= KEY_LIMIT {
            return Err(IamError::LimitExceeded);
        }
        const SECRET_CHARS: &[u8] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let id = self.new_id();
        let secret = SecretAccessKey::new(self.draw(SECRET_CHARS, 40));
        let key = AccessKey {
            id: id.clone(),
            status,
            created,
        };
        self.owners.insert(id, user.clone());
        if let Some(u) = self.users.get_mut(user) {
            u.keys.push(Key {
                key: key.clone(),
                secret: secret.clone(),
                uses: Vec::new(),
                status_changed: created,
                was_active: status == KeyStatus::Active,
            });
        }
        Ok(NewKey { key, secret })
    }
}

impl Key {
    fn set_status(&mut self, status: KeyStatus, now: Timestamp) {
        if status != self.key.status {
            self.was_active = self.key.status == KeyStatus::Active;
            self.key.status = status;
            self.status_changed = now;
        }
    }

    fn record_use(&mut self, at: Timestamp, now: Timestamp, lag: Duration) {
        let pos = self.uses.partition_point(|t| *t <= at);
        self.uses.insert(pos, at);
        // Keep the latest visible use and every use not yet visible.
        let horizon = super::sub(now, lag);
        let visible = self.uses.partition_point(|t| *t <= horizon);
        if visible > 1 {
            self.uses.drain(..visible - 1);
        }
    }

    fn last_used(&self, now: Timestamp, lag: Duration) -> LastUsed {
        let horizon = super::sub(now, lag);
        self.uses
            .iter()
            .rev()
            .find(|t| **t <= horizon)
            .map_or(LastUsed::Never, |t| LastUsed::At(*t))
    }
}

#[async_trait]
impl Iam for FakeIam {
    async fn managed_users(&self, selection: &Selection) -> Result<Vec<UserName>, IamError> {
        self.call(op::IAM_MANAGED_USERS, |_| {
            let state = self.state();
            Ok(match selection {
                Selection::Tagged { key, value } => state
                    .users
                    .iter()
                    .filter(|(_, u)| u.tags.get(key) == Some(value))
                    .map(|(name, _)| name.clone())
                    .collect(),
                Selection::Listed(listed) => listed
                    .iter()
                    .filter(|name| state.users.contains_key(*name))
                    .cloned()
                    .collect(),
            })
        })
        .await
    }

    /// A snapshot as IAM makes it: every user's keys with their status and creation time to
    /// the second, no ids, and the same snapshot again until it is four hours old, whatever
    /// changed since.
    async fn credential_report(&self) -> Result<Option<CredentialReport>, IamError> {
        self.call(op::IAM_CREDENTIAL_REPORT, |_| {
            let now = self.inner.clock.now();
            let mut state = self.state();
            let fresh = state.report.as_ref().is_some_and(|r| {
                now.duration_since(r.generated).unsigned_abs() < REPORT_REUSED_FOR
            });
            if !fresh {
                let users = state
                    .users
                    .iter()
                    .map(|(name, user)| {
                        let keys = user
                            .keys
                            .iter()
                            .map(|k| ReportedKey {
                                active: k.key.status == KeyStatus::Active,
                                created: whole_seconds(k.key.created),
                            })
                            .collect();
                        (name.clone(), keys)
                    })
                    .collect();
                state.report = Some(CredentialReport {
                    generated: whole_seconds(now),
                    users,
                });
            }
            Ok(state.report.clone())
        })
        .await
    }

    async fn list_keys(&self, user: &UserName) -> Result<Vec<AccessKey>, IamError> {
        self.call(op::IAM_LIST_KEYS, |_| {
            self.state()
                .users
                .get(user)
                .map(|u| u.keys.iter().map(|k| k.key.clone()).collect())
                .ok_or(IamError::NoSuchEntity)
        })
        .await
    }

    async fn create_key(&self, user: &UserName) -> Result<NewKey, IamError> {
        // Asking counts, whether or not the request reaches IAM.
        if !self.inner.plan.is_crashed() {
            self.state()
                .note_third_key_request(user, self.inner.clock.now());
        }
        self.call(op::IAM_CREATE_KEY, |attempt| {
            let now = self.inner.clock.now();
            let mut state = self.state();
            if attempt > 1 {
                // A retry of a call whose reply was lost asks again.
                state.note_third_key_request(user, now);
            }
            let created = state.create(user, KeyStatus::Active, now);
            if let Ok(new) = &created {
                state.history.push(IamEvent {
                    at: now,
                    user: user.clone(),
                    action: IamAction::Created(new.key.id.clone()),
                });
            }
            created
        })
        .await
    }

    async fn set_status(
        &self,
        user: &UserName,
        key: &AccessKeyId,
        status: KeyStatus,
    ) -> Result<(), IamError> {
        self.call(op::IAM_SET_STATUS, |_| {
            let now = self.inner.clock.now();
            let mut state = self.state();
            state.key_of_mut(user, key)?.set_status(status, now);
            state.history.push(IamEvent {
                at: now,
                user: user.clone(),
                action: IamAction::SetStatus(key.clone(), status),
            });
            Ok(())
        })
        .await
    }

    async fn delete_key(&self, user: &UserName, key: &AccessKeyId) -> Result<(), IamError> {
        self.call(op::IAM_DELETE_KEY, |_| {
            let now = self.inner.clock.now();
            let mut state = self.state();
            let removed = state.users.get_mut(user).and_then(|u| {
                let at = u.keys.iter().position(|k| &k.key.id == key)?;
                Some(u.keys.remove(at))
            });
            let Some(removed) = removed else {
                return Err(IamError::NoSuchEntity);
            };
            state.owners.remove(key);
            state
                .deleted
                .insert(key.clone(), (user.clone(), removed, now));
            state.history.push(IamEvent {
                at: now,
                user: user.clone(),
                action: IamAction::Deleted(key.clone()),
            });
            Ok(())
        })
        .await
    }

    async fn last_used(&self, key: &AccessKeyId) -> LastUsed {
        self.call(op::IAM_LAST_USED, |_| Ok(self.peek_last_used(key)))
            .await
            .unwrap_or(LastUsed::Unknown)
    }
}

impl fmt::Debug for FakeIam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("FakeIam")
            .field("users", &state.users.len())
            .field("keys", &state.owners.len())
            .field("third_key_requests", &state.third_key_requests)
            .field("propagation_delay", &state.propagation_delay)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use futures::executor::block_on;

    use super::*;

    fn t0() -> Timestamp {
        Timestamp::from_second(1_700_000_000).unwrap()
    }

    fn user(name: &str) -> UserName {
        UserName::new(name).unwrap()
    }

    fn iam(seed: u64) -> FakeIam {
        FakeIam::new(SimClock::new(t0()), FaultPlan::none(), seed)
    }

    #[test]
    fn a_third_key_is_refused_with_no_effect_and_counted() {
        let iam = iam(1);
        let alice = user("alice");
        iam.add_user(alice.clone(), [("team", "ci")]);
        let a = block_on(iam.create_key(&alice)).unwrap();
        let b = block_on(iam.create_key(&alice)).unwrap();
        assert_eq!(iam.third_key_requests(), 0);
        let third = block_on(iam.create_key(&alice));
        assert!(matches!(third, Err(IamError::LimitExceeded)), "{third:?}");
        assert_eq!(
            block_on(iam.list_keys(&alice)).unwrap(),
            [a.key.clone(), b.key.clone()]
        );
        assert_eq!(iam.third_key_requests(), 1);
        let actions: Vec<_> = iam.history().into_iter().map(|e| e.action).collect();
        assert_eq!(
            actions,
            [
                IamAction::Created(a.key.id),
                IamAction::Created(b.key.id),
                IamAction::ThirdKeyRequested
            ]
        );
        // Seeding respects the limit too, but is not keyrot asking.
        assert!(matches!(
            iam.add_key(&alice, KeyStatus::Active, t0()),
            Err(IamError::LimitExceeded)
        ));
        assert_eq!(iam.third_key_requests(), 1);
    }

    #[test]
    fn unknown_users_and_keys_are_no_such_entity() {
        let iam = iam(1);
        let (alice, bob) = (user("alice"), user("bob"));
        iam.add_user(alice.clone(), [("a", "b")]);
        iam.add_user(bob.clone(), [("a", "b")]);
        let key = iam.add_key(&alice, KeyStatus::Active, t0()).unwrap().key.id;
        let ghost = user("ghost");
        assert!(matches!(
            block_on(iam.list_keys(&ghost)),
            Err(IamError::NoSuchEntity)
        ));
        assert!(matches!(
            block_on(iam.create_key(&ghost)),
            Err(IamError::NoSuchEntity)
        ));
        // Bob cannot touch Alice's key.
        assert!(matches!(
            block_on(iam.set_status(&bob, &key, KeyStatus::Inactive)),
            Err(IamError::NoSuchEntity)
        ));
        assert!(matches!(
            block_on(iam.delete_key(&bob, &key)),
            Err(IamError::NoSuchEntity)
        ));
        assert_eq!(iam.keys(&alice)[0].status, KeyStatus::Active);
        block_on(iam.set_status(&alice, &key, KeyStatus::Inactive)).unwrap();
        assert_eq!(iam.keys(&alice)[0].status, KeyStatus::Inactive);
        block_on(iam.delete_key(&alice, &key)).unwrap();
        assert!(iam.keys(&alice).is_empty());
        assert!(matches!(
            block_on(iam.delete_key(&alice, &key)),
            Err(IamError::NoSuchEntity)
        ));
        assert_eq!(block_on(iam.last_used(&key)), LastUsed::Unknown);
        assert!(iam.secret_of(&key).is_none());
    }

    #[test]
    fn selection_by_tag_and_by_list() {
        let iam = iam(1);
        iam.add_managed_user(user("alice"));
        iam.add_user(user("bob"), [("keyrot:managed", "false")]);
        iam.add_user(user("carol"), [("keyrot:managed", "true"), ("x", "y")]);
        let tagged = block_on(iam.managed_users(&Selection::default())).unwrap();
        assert_eq!(tagged, [user("alice"), user("carol")]);
        let listed = Selection::Listed(BTreeSet::from([user("bob"), user("ghost")]));
        assert_eq!(block_on(iam.managed_users(&listed)).unwrap(), [user("bob")]);
        iam.remove_tag(&user("carol"), "keyrot:managed");
        assert!(iam.delete_user(&user("alice")));
        assert!(
            block_on(iam.managed_users(&Selection::default()))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn ids_are_realistic_and_deterministic_per_seed() {
        let ids = |seed| {
            let iam = iam(seed);
            let alice = user("alice");
            iam.add_user(alice.clone(), [("a", "b")]);
            let a = block_on(iam.create_key(&alice)).unwrap();
            let b = block_on(iam.create_key(&alice)).unwrap();
            (a.key.id, b.key.id, a.secret, b.secret)
        };
        let (a, b, sa, sb) = ids(7);
        assert_eq!(ids(7), (a.clone(), b.clone(), sa.clone(), sb.clone()));
        assert_ne!(ids(8).0, a);
        assert_ne!(a, b);
        assert_ne!(sa, sb);
        for id in [&a, &b] {
            assert_eq!(id.as_str().len(), 20);
            assert!(id.as_str().starts_with("AKIA"));
        }
        assert_eq!(sa.expose().len(), 40);
    }

    #[test]
    fn created_keys_take_the_virtual_time() {
        let iam = iam(1);
        let alice = user("alice");
        iam.add_user(alice.clone(), [("a", "b")]);
        iam.clock().advance(Duration::from_secs(90));
        let key = block_on(iam.create_key(&alice)).unwrap();
        assert_eq!(key.key.created, iam.clock().now());
        assert_eq!(key.key.status, KeyStatus::Active);
        assert_eq!(iam.secret_of(&key.key.id), Some(key.secret.clone()));
    }

    #[test]
    fn fail_after_applies_the_effect() {
        let iam = iam(1);
        let alice = user("alice");
        iam.add_user(alice.clone(), [("a", "b")]);
        iam.plan().fail_at(op::IAM_CREATE_KEY, FaultKind::FailAfter);
        assert!(matches!(
            block_on(iam.create_key(&alice)),
            Err(IamError::Other(_))
        ));
        assert_eq!(iam.keys(&alice).len(), 1, "the key exists: an orphan");
        iam.plan()
            .fail_at(op::IAM_CREATE_KEY, FaultKind::FailBefore);
        assert!(block_on(iam.create_key(&alice)).is_err());
        assert_eq!(iam.keys(&alice).len(), 1, "fail-before has no effect");
        iam.plan().fail_at(op::IAM_CREATE_KEY, FaultKind::Throttle);
        assert!(matches!(
            block_on(iam.create_key(&alice)),
            Err(IamError::Throttled(_))
        ));
        assert_eq!(iam.keys(&alice).len(), 1);
    }

    #[test]
    fn crash_stops_calls_until_restart() {
        let iam = iam(1);
        let alice = user("alice");
        iam.add_user(alice.clone(), [("a", "b")]);
        iam.plan()
            .fail_at(op::IAM_CREATE_KEY, FaultKind::CrashAfter);
        assert!(block_on(iam.create_key(&alice)).is_err());
        assert_eq!(
            iam.keys(&alice).len(),
            1,
            "the effect happened before the crash"
        );
        assert!(block_on(iam.create_key(&alice)).is_err());
        assert!(block_on(iam.list_keys(&alice)).is_err());
        assert_eq!(iam.keys(&alice).len(), 1, "no effect while crashed");
        iam.plan().restart();
        assert_eq!(block_on(iam.list_keys(&alice)).unwrap().len(), 1);
    }

    #[test]
    fn last_used_is_never_then_at_and_unknown_on_fault() {
        let iam = iam(1);
        let alice = user("alice");
        iam.add_user(alice.clone(), [("a", "b")]);
        let key = iam.add_key(&alice, KeyStatus::Active, t0()).unwrap().key.id;
        assert_eq!(block_on(iam.last_used(&key)), LastUsed::Never);
        let later = iam.clock().advance(Duration::from_secs(60));
        assert!(iam.record_use(&key, later));
        assert_eq!(block_on(iam.last_used(&key)), LastUsed::At(later));
        for kind in FaultKind::ALL {
            iam.plan().fail_at(op::IAM_LAST_USED, kind);
            assert_eq!(block_on(iam.last_used(&key)), LastUsed::Unknown, "{kind}");
            iam.plan().restart();
        }
        assert_eq!(block_on(iam.last_used(&key)), LastUsed::At(later));
    }

    #[test]
    fn last_used_shows_after_the_lag() {
        let iam = iam(1);
        let alice = user("alice");
        iam.add_user(alice.clone(), [("a", "b")]);
        let key = iam.add_key(&alice, KeyStatus::Active, t0()).unwrap().key.id;
        iam.set_last_used_lag(Duration::from_secs(3600));
        let first = iam.clock().now();
        iam.record_use(&key, first);
        assert_eq!(iam.peek_last_used(&key), LastUsed::Never);
        iam.clock().advance(Duration::from_secs(3600));
        let second = iam.clock().now();
        iam.record_use(&key, second);
        assert_eq!(iam.peek_last_used(&key), LastUsed::At(first));
        iam.clock().advance(Duration::from_secs(3600));
        assert_eq!(iam.peek_last_used(&key), LastUsed::At(second));
    }

    #[test]
    fn authentication_waits_for_propagation_and_checks_everything() {
        let iam = iam(1);
        let alice = user("alice");
        iam.add_user(alice.clone(), [("a", "b")]);
        iam.set_propagation_delay(Duration::from_secs(10));
        let new = block_on(iam.create_key(&alice)).unwrap();
        let creds = new.credentials();
        let now = iam.clock().now();
        assert_eq!(
            iam.authenticate(&creds, now),
            Err(AuthFailure::NotPropagated)
        );
        let later = iam.clock().advance(Duration::from_secs(10));
        let wrong = Credentials {
            secret_access_key: SecretAccessKey::new("nope"),
            ..creds.clone()
        };
        assert_eq!(
            iam.authenticate(&wrong, later),
            Err(AuthFailure::WrongSecret)
        );
        assert_eq!(iam.peek_last_used(&new.key.id), LastUsed::Never);
        assert_eq!(iam.authenticate(&creds, later), Ok(alice.clone()));
        assert_eq!(iam.peek_last_used(&new.key.id), LastUsed::At(later));
        // Deactivation propagates as slowly: the key goes on working for the delay.
        block_on(iam.set_status(&alice, &new.key.id, KeyStatus::Inactive)).unwrap();
        assert_eq!(iam.authenticate(&creds, later), Ok(alice.clone()));
        let off = iam.clock().advance(Duration::from_secs(10));
        assert_eq!(iam.authenticate(&creds, off), Err(AuthFailure::Inactive));
        // Re-activated, it is refused until the change has propagated.
        block_on(iam.set_status(&alice, &new.key.id, KeyStatus::Active)).unwrap();
        assert_eq!(iam.authenticate(&creds, off), Err(AuthFailure::Inactive));
        let on = iam.clock().advance(Duration::from_secs(10));
        assert!(iam.would_authenticate(&creds, on));
        // Deleted, it still authenticates until the deletion has propagated.
        block_on(iam.delete_key(&alice, &new.key.id)).unwrap();
        assert_eq!(iam.authenticate(&creds, on), Ok(alice));
        let gone = iam.clock().advance(Duration::from_secs(10));
        assert_eq!(iam.authenticate(&creds, gone), Err(AuthFailure::UnknownKey));
    }

    #[test]
    fn the_sdk_retry_of_a_lost_create_reply_asks_for_another_key() {
        // What CreateAccessKey with the SDK's default retries does: the reply of the first
        // attempt is lost, the retry makes a second key, nobody has the first one's secret.
        let iam = iam(1);
        let alice = user("alice");
        iam.add_user(alice.clone(), [("a", "b")]);
        iam.plan().set_sdk_retries(crate::fake::SdkRetries::All);
        iam.plan().fail_at(op::IAM_CREATE_KEY, FaultKind::FailAfter);
        let second = block_on(iam.create_key(&alice)).unwrap();
        assert_eq!(iam.keys(&alice).len(), 2);
        assert_eq!(iam.plan().sdk_retried(op::IAM_CREATE_KEY), 1);
        // With a key already there, the retry is a third-key request.
        let carol = user("carol");
        iam.add_user(carol.clone(), [("a", "b")]);
        iam.add_key(&carol, KeyStatus::Active, t0()).unwrap();
        iam.plan().fail_at(op::IAM_CREATE_KEY, FaultKind::FailAfter);
        assert!(matches!(
            block_on(iam.create_key(&carol)),
            Err(IamError::LimitExceeded)
        ));
        assert_eq!(iam.keys(&carol).len(), 2);
        assert_eq!(iam.third_key_requests(), 1);
        drop(second);
        // As the adapters are configured, CreateAccessKey is not retried: the lost reply is an
        // error, and exactly one key was made.
        let bob = user("bob");
        iam.add_user(bob.clone(), [("a", "b")]);
        iam.plan()
            .set_sdk_retries(crate::fake::SdkRetries::AsAdapters);
        iam.plan().fail_at(op::IAM_CREATE_KEY, FaultKind::FailAfter);
        assert!(matches!(
            block_on(iam.create_key(&bob)),
            Err(IamError::Other(_))
        ));
        assert_eq!(iam.keys(&bob).len(), 1);
        assert_eq!(iam.third_key_requests(), 1);
    }

    #[test]
    fn calls_are_counted_per_operation() {
        let iam = iam(1);
        let alice = user("alice");
        iam.add_user(alice.clone(), [("a", "b")]);
        block_on(iam.list_keys(&alice)).unwrap();
        block_on(iam.list_keys(&alice)).unwrap();
        let key = block_on(iam.create_key(&alice)).unwrap().key.id;
        block_on(iam.last_used(&key));
        let counts = iam.plan().call_counts();
        assert_eq!(counts.get(op::IAM_LIST_KEYS), Some(&2));
        assert_eq!(counts.get(op::IAM_CREATE_KEY), Some(&1));
        assert_eq!(counts.get(op::IAM_LAST_USED), Some(&1));
        assert_eq!(iam.plan().total_calls(), 4);
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let iam = iam(1);
        let alice = user("alice");
        iam.add_user(alice.clone(), [("a", "b")]);
        let new = block_on(iam.create_key(&alice)).unwrap();
        let shown = format!("{iam:?} {:?} {new:?}", iam.history());
        assert!(!shown.contains(new.secret.expose()), "{shown}");
    }
}
