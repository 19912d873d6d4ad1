//! Ports: the narrow traits behind which keyrot meets IAM, the secret store, the verifier, the
//! notifier and time. Adapters implement them (keyrot-aws for AWS, the `fake` module in memory);
//! no AWS SDK type crosses them.
//!
//! With the `mock` feature every port also has a mockall mock (`MockIam`, `MockSecretStore`,
//! ...) for unit-testing code that uses keyrot.
//!
//! # Retries
//!
//! An adapter may retry a call after a failure (the AWS SDK does, up to `max_attempts`), and a
//! failure can be ambiguous: the call took effect but its reply was lost. A retry then repeats
//! the effect. Every port method is therefore idempotent when retried with the same arguments,
//! except [`Iam::create_key`]: a second CreateAccessKey makes a second key, or asks IAM for a
//! third. Adapters must never retry `create_key` after a failure that may have had an effect;
//! the driver observes again instead (the key, if IAM made it, is an orphan the next step or
//! run deletes, recognised by the intent recorded before the call).
//!
//! # Errors
//!
//! The port errors say what happened (throttled, denied, a failure that may have had its
//! effect), with the adapter's error as their [`source`](std::error::Error::source). Whether
//! to try again later (a Lambda invocation, a CLI exit code) is decided by the edge that meets
//! the error, not here.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use sha2::{Digest, Sha256};

use crate::delivery::{Delivered, DestinationId};
use crate::model::{
    AccessKey, AccessKeyId, Credentials, Intent, KeyStatus, LastUsed, Marks, NewKey, SentNotice,
    StoredUser, Timestamp, UserName,
};
use crate::policy::Selection;
use crate::survey::CredentialReport;

/// Any error an adapter met underneath (an SDK error, a broken connection).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why an IAM call failed.
#[derive(Debug, thiserror::Error)]
pub enum IamError {
    /// The user already has the most access keys IAM allows (two).
    #[error("the user already has two access keys")]
    LimitExceeded,
    /// The user or key does not exist.
    #[error("no such user or access key")]
    NoSuchEntity,
    /// IAM asked us to slow down (after the adapter's own retries).
    #[error("throttled by IAM")]
    Throttled(#[source] BoxError),
    /// IAM refused: keyrot's role lacks a permission.
    #[error("access denied by IAM")]
    AccessDenied(#[source] BoxError),
    /// Any other failure: a network error, a 5xx, a reply that could not be read.
    #[error("IAM call failed")]
    Other(#[source] BoxError),
}

/// Why a secret store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A version with this key's request token already exists with different contents.
    #[error("a different secret is already stored for this key")]
    Conflict,
    /// The version to promote does not exist.
    #[error("no stored version for this key")]
    NoSuchVersion,
    /// The store asked us to slow down (after the adapter's own retries).
    #[error("throttled by the secret store")]
    Throttled(#[source] BoxError),
    /// The store refused: keyrot's role lacks a permission.
    #[error("access denied by the secret store")]
    AccessDenied(#[source] BoxError),
    /// A stored value could not be read as keyrot's payload.
    #[error("stored secret is malformed")]
    Malformed(#[source] BoxError),
    /// Any other failure.
    #[error("secret store call failed")]
    Other(#[source] BoxError),
}

/// Why a key could not be verified (as opposed to "does not authenticate yet").
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The key authenticated, but as someone else: it must not be published.
    #[error("the key authenticates as {actual}, not as the user")]
    WrongIdentity {
        /// The identity (ARN) the key authenticated as.
        actual: String,
    },
    /// The verification call itself failed.
    #[error("verification call failed")]
    Other(#[source] BoxError),
}

/// Why a notification could not be sent. Never stops a rotation.
#[derive(Debug, thiserror::Error)]
#[error("notification failed")]
pub struct NotifyError(#[source] pub BoxError);

/// IAM, in keyrot's words.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Iam: Send + Sync {
    /// The users `selection` picks (exemptions are applied by the caller).
    async fn managed_users(&self, selection: &Selection) -> Result<Vec<UserName>, IamError>;

    /// A user's access keys (at most two).
    async fn list_keys(&self, user: &UserName) -> Result<Vec<AccessKey>, IamError>;

    /// Creates a new access key; the secret is returned only here.
    ///
    /// Not idempotent: an adapter must not retry it after a failure that may have had an
    /// effect (a timeout, a 5xx, a lost connection); see the [module docs](self#retries).
    async fn create_key(&self, user: &UserName) -> Result<NewKey, IamError>;

    /// Activates or deactivates a key.
    async fn set_status(
        &self,
        user: &UserName,
        key: &AccessKeyId,
        status: KeyStatus,
    ) -> Result<(), IamError>;

    /// Deletes a key for good.
    async fn delete_key(&self, user: &UserName, key: &AccessKeyId) -> Result<(), IamError>;

    /// When the key was last used. Any failure is [`LastUsed::Unknown`], never "never used".
    async fn last_used(&self, key: &AccessKeyId) -> LastUsed;

    /// IAM's credential report, for a [survey](crate::survey): every user's keys in one read,
    /// up to four hours old. `Ok(None)` when the adapter offers none; a run then observes every
    /// user one by one.
    async fn credential_report(&self) -> Result<Option<CredentialReport>, IamError> {
        Ok(None)
    }
}

/// The secret store (Secrets Manager), one secret per user, one version per key.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// What is stored for `user`: versions with their labels, and recorded marks. Empty when
    /// nothing is stored yet.
    async fn load(&self, user: &UserName) -> Result<StoredUser, StoreError>;

    /// [`SecretStore::load`] for an observation that found `keys` in IAM: a version that has
    /// lost its labels may be left out unless it holds one of `keys` (such a version says only
    /// that a key now gone was keyrot's). Secrets Manager describes labelled versions in the
    /// call that gives the tags and needs a second call for the rest, which this spares when
    /// every one of `keys` is labelled.
    async fn load_for(
        &self,
        user: &UserName,
        keys: &[AccessKeyId],
    ) -> Result<StoredUser, StoreError> {
        let _ = keys;
        self.load(user).await
    }

    /// Stores `credentials` as the pending version, with a request token derived from the key
    /// id so that a retry is idempotent. `created` is the key's creation time.
    async fn put_pending(
        &self,
        user: &UserName,
        credentials: &Credentials,
        created: Timestamp,
    ) -> Result<(), StoreError>;

    /// Makes the version holding `key` current; the version that was current becomes previous.
    /// `seen_current` is the key the caller last saw current (`None`: none was), a hint that
    /// lets Secrets Manager's adapter move the label in one call. A stale hint costs a second
    /// look, never a wrong move: the label is moved only from where it is.
    async fn promote(
        &self,
        user: &UserName,
        key: &AccessKeyId,
        seen_current: Option<AccessKeyId>,
    ) -> Result<(), StoreError>;

    /// Records `marks` as everything recorded about `key`, replacing what was recorded before
    /// (the caller merges: it holds the user's lease and has just observed the marks); creates
    /// the user's secret if need be. One write, no read.
    async fn record_marks(
        &self,
        user: &UserName,
        key: &AccessKeyId,
        marks: &Marks,
    ) -> Result<(), StoreError>;

    /// Forgets every mark of `key` (after it is deleted, or when it is current again).
    async fn clear_marks(&self, user: &UserName, key: &AccessKeyId) -> Result<(), StoreError>;

    /// Records that keyrot is about to create a key for `user` (see [`StoredUser::intent`]),
    /// replacing an earlier intent; creates the user's secret if need be. Called before every
    /// `create_key`.
    async fn record_intent(&self, user: &UserName, intent: &Intent) -> Result<(), StoreError>;

    /// Records that a notice of a standing condition went out about `user` (see
    /// [`StoredUser::last_notice`]), replacing the earlier record; creates the user's secret if
    /// need be.
    async fn record_notice(&self, user: &UserName, sent: &SentNotice) -> Result<(), StoreError>;

    /// Records that the delivery destination `destination` holds the key `delivered` names
    /// (see [`StoredUser::delivered`]), replacing the earlier record; creates the user's secret
    /// if need be. A store that keeps no such records refuses (the default): keyrot then
    /// delivers nothing for good and deactivates a key with destinations only when the
    /// maximum grace forces it.
    async fn record_delivered(
        &self,
        user: &UserName,
        destination: &DestinationId,
        delivered: &Delivered,
    ) -> Result<(), StoreError> {
        let _ = (user, destination, delivered);
        Err(StoreError::Other(
            "this secret store keeps no delivery records".into(),
        ))
    }

    /// The credentials stored for `key`, if any.
    async fn credentials(
        &self,
        user: &UserName,
        key: &AccessKeyId,
    ) -> Result<Option<Credentials>, StoreError>;

    /// The current credentials, if any: what callers of the API are given.
    async fn current(&self, user: &UserName) -> Result<Option<Credentials>, StoreError>;

    /// Every user's secret as a listing gives it, for a [survey](crate::survey): the labelled
    /// versions, the marks and the intent, up to a few minutes stale (Secrets Manager's
    /// ListSecrets "might not reflect changes from the last five minutes"). A user whose
    /// secret the listing cannot describe in full is left out. `Ok(None)` when the store offers
    /// no listing; a run then observes every user one by one.
    async fn list_stored(&self) -> Result<Option<BTreeMap<UserName, StoredUser>>, StoreError> {
        Ok(None)
    }
}

/// Does a key authenticate yet?
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Verifier: Send + Sync {
    /// `Ok(true)` once requests signed with `credentials` authenticate as `user`; `Ok(false)`
    /// while IAM has not propagated the key yet.
    async fn authenticates(
        &self,
        user: &UserName,
        credentials: &Credentials,
    ) -> Result<bool, VerifyError>;
}

/// Something an administrator should hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A new key was published.
    Rotated {
        /// Whose key.
        user: UserName,
        /// The key now current.
        new: AccessKeyId,
        /// The key it replaced, if keyrot knew one.
        old: Option<AccessKeyId>,
    },
    /// A superseded key is still used and will be deactivated anyway at `at`.
    WillForceDeactivate {
        /// Whose key.
        user: UserName,
        /// The key.
        key: AccessKeyId,
        /// When.
        at: Timestamp,
    },
    /// A superseded key was deactivated although it may still be in use.
    ForcedDeactivation {
        /// Whose key.
        user: UserName,
        /// The key.
        key: AccessKeyId,
    },
    /// Delivery destinations do not hold the current key: their write or read-back failed in
    /// this run. The old key stays active (up to the maximum grace); the next run tries again.
    Undelivered {
        /// Whose key.
        user: UserName,
        /// The key that was to be delivered.
        key: AccessKeyId,
        /// Each destination (as [`crate::delivery::Destination`] prints it) and what failed,
        /// without secrets: `DESTINATION: ERROR`.
        failures: Vec<String>,
    },
    /// A superseded key was deactivated at the end of the maximum grace although these
    /// delivery destinations do not hold its successor.
    ForcedUndelivered {
        /// Whose key.
        user: UserName,
        /// The key deactivated.
        key: AccessKeyId,
        /// The destinations that failed, as [`crate::delivery::Destination`] prints them.
        destinations: Vec<String>,
    },
    /// A new key never authenticated and was deleted.
    Discarded {
        /// Whose key.
        user: UserName,
        /// The key.
        key: AccessKeyId,
    },
    /// keyrot cannot proceed for a user without a person.
    Blocked {
        /// Whose keys.
        user: UserName,
        /// Why, in words.
        reason: String,
    },
    /// A step failed.
    Failed {
        /// Whose keys.
        user: UserName,
        /// What failed, without secrets.
        error: String,
    },
    /// `notice`, about a user of member account `account` (see
    /// [`crate::accounts::AccountNotifier`]): its text and subject name the account.
    InAccount {
        /// The member account.
        account: crate::accounts::AccountId,
        /// What happened there.
        notice: Box<Self>,
    },
}

impl Notice {
    /// The user the notice is about.
    pub fn user(&self) -> &UserName {
        match self {
            Self::Rotated { user, .. }
            | Self::WillForceDeactivate { user, .. }
            | Self::ForcedDeactivation { user, .. }
            | Self::Discarded { user, .. }
            | Self::Undelivered { user, .. }
            | Self::ForcedUndelivered { user, .. }
            | Self::Blocked { user, .. }
            | Self::Failed { user, .. } => user,
            Self::InAccount { notice, .. } => notice.user(),
        }
    }

    /// The member account the notice is about (`None`: the hub's, or a single account's).
    pub fn account(&self) -> Option<&crate::accounts::AccountId> {
        match self {
            Self::InAccount { account, .. } => Some(account),
            _ => None,
        }
    }

    /// What happened, whichever account it happened in.
    pub fn event(&self) -> &Self {
        match self {
            Self::InAccount { notice, .. } => notice.event(),
            _ => self,
        }
    }

    /// Whether the notice reports a standing condition that every run would report again
    /// until someone acts (a block, a failure, an old key still in use), as opposed to an
    /// event (rotated, deactivated, discarded), which happens once.
    pub fn is_standing(&self) -> bool {
        matches!(
            self.event(),
            Self::Blocked { .. }
                | Self::Failed { .. }
                | Self::WillForceDeactivate { .. }
                | Self::Undelivered { .. }
        )
    }

    /// A short digest of the notice's text (16 hex digits): the same condition gives the same
    /// fingerprint, another condition or another user a different one.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.to_string().as_bytes());
        hex::encode(&digest[..8])
    }
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rotated { user, new, old } => match old {
                Some(old) => write!(f, "{user}: rotated {old} -> {new}"),
                None => write!(f, "{user}: published {new}"),
            },
            Self::WillForceDeactivate { user, key, at } => write!(
                f,
                "{user}: {key} is still in use and will be deactivated at {at}"
            ),
            Self::ForcedDeactivation { user, key } => write!(
                f,
                "{user}: deactivated {key} at the end of the maximum grace although it may still \
                 be in use"
            ),
            Self::Discarded { user, key } => write!(
                f,
                "{user}: deleted new key {key}: it did not authenticate within the verify timeout"
            ),
            Self::Undelivered {
                user,
                key,
                failures,
            } => write!(
                f,
                "{user}: {key} was not delivered to {}; the old key stays active",
                failures.join("; ")
            ),
            Self::ForcedUndelivered {
                user,
                key,
                destinations,
            } => write!(
                f,
                "{user}: deactivated {key} at the end of the maximum grace although {} {} not \
                 hold its successor",
                destinations.join(", "),
                if destinations.len() == 1 {
                    "does"
                } else {
                    "do"
                }
            ),
            Self::Blocked { user, reason } => write!(f, "{user}: blocked: {reason}"),
            Self::Failed { user, error } => write!(f, "{user}: failed: {error}"),
            Self::InAccount { account, notice } => write!(f, "account {account}: {notice}"),
        }
    }
}

/// Tells an administrator. An adapter only sends: which notices go out, and whether a repeat of
/// a standing condition is held back, the driver decides ([`crate::driver::held_back`]).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Sends `notice`. A failure is logged by the caller and never stops a rotation.
    async fn notify(&self, notice: &Notice) -> Result<(), NotifyError>;
}

/// Why a lease call failed. The run does not act on the user: without a lease it cannot know
/// that no other run does.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The lease store asked us to slow down (after the adapter's own retries).
    #[error("throttled by the lease store")]
    Throttled(#[source] BoxError),
    /// The lease store refused: keyrot's role lacks a permission.
    #[error("access denied by the lease store")]
    AccessDenied(#[source] BoxError),
    /// Any other failure.
    #[error("lease call failed")]
    Other(#[source] BoxError),
}

/// Proof of a held lease, made by the [`Lease`] adapter (unique per claim, so that a retried
/// acquire after a lost reply finds its own claim). Not secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseToken(String);

impl LeaseToken {
    /// Wraps an adapter's unique claim id.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The claim id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The answer to [`Lease::acquire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The user is ours until the `until` we asked for.
    Granted(LeaseToken),
    /// Another run holds the user.
    Taken {
        /// The other run's claim.
        holder: LeaseToken,
        /// When its claim expires unless renewed.
        until: Timestamp,
    },
}

/// One run per user at a time: a lease with conditional writes and expiry (DynamoDB's
/// conditional `PutItem` on AWS), so that two runs (the Lambda, `keyrot rotate`, `keyrot serve`)
/// never act on the same user at once and a crashed holder's claim expires.
///
/// Times are the caller's: a claim expires when a caller's `now` passes its `until`.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Lease: Send + Sync {
    /// Claims `user` until `until`, unless another claim is live at `now`.
    async fn acquire(
        &self,
        user: &UserName,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Claim, LeaseError>;

    /// Extends our claim to `until`; `Ok(false)` when it is no longer ours (it expired and
    /// another run took it).
    async fn renew(
        &self,
        user: &UserName,
        token: &LeaseToken,
        until: Timestamp,
    ) -> Result<bool, LeaseError>;

    /// Gives the claim up, if it is still ours.
    async fn release(&self, user: &UserName, token: &LeaseToken) -> Result<(), LeaseError>;

    /// [`Lease::acquire`] for each of `users` (distinct, at most [`LEASE_BATCH`]), in as few
    /// calls as the table allows; the answers in the order of `users`. An error may leave some
    /// of them claimed by tokens nobody knows: those claims expire.
    async fn acquire_all(
        &self,
        users: &[UserName],
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<Claim>, LeaseError> {
        let mut claims = Vec::with_capacity(users.len());
        for user in users {
            claims.push(self.acquire(user, now, until).await?);
        }
        Ok(claims)
    }

    /// [`Lease::release`] for each of `held` (distinct users, at most [`LEASE_BATCH`]), in as
    /// few calls as the table allows.
    async fn release_all(&self, held: &[(UserName, LeaseToken)]) -> Result<(), LeaseError> {
        for (user, token) in held {
            self.release(user, token).await?;
        }
        Ok(())
    }
}

/// The most users [`Lease::acquire_all`] and [`Lease::release_all`] take at once: DynamoDB's
/// limit of actions in one `TransactWriteItems`.
pub const LEASE_BATCH: usize = 100;

/// How often the services have asked keyrot to slow down, counting the throttled attempts the
/// adapters retried themselves: a port call reports throttling only when the retries could not
/// absorb it, by which time the run has been too fast for a while. The driver's adaptive
/// concurrency ([`crate::driver::Concurrency`]) backs off whenever the count grows.
pub trait Pressure: Send + Sync + fmt::Debug {
    /// Throttling answers seen so far (only the increase counts).
    fn throttled(&self) -> u64;
}

/// Time, as the edge provides it. keyrot-core itself never reads the clock: the driver asks
/// this port, which the Lambda adapter and the CLI implement with the system clock and the
/// simulation with a virtual one.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Timestamp;

    /// Waits for `duration`.
    async fn sleep(&self, duration: Duration);
}
