//! The planner: from what was observed about one user, the policy and `now`, the next safe step.
//!
//! [`plan`] is a pure function. The [driver](crate::driver) observes, asks it, performs the one
//! step, records the effect in the [`Observation`] and asks again, until the answer is a
//! [`Step::Wait`] or a [`Step::Blocked`]. A crash between two steps is just another state the
//! next run's observation shows and the planner knows how to finish.
//!
//! The rules, in the order they are applied:
//! 1. More than two keys: blocked (IAM never allows it; someone is interfering).
//! 2. A key keyrot created and never stored (IAM made it close to the intent keyrot recorded
//!    before calling CreateAccessKey, see [`StoredUser::intended`], and no stored key was made
//!    under that intent) is an orphan: nobody has its secret, so it is deleted, whatever IAM
//!    says about its use. It is never adopted.
//! 3. A rollback a person asked for: a key staged by a rotation in progress is deleted (it was
//!    never served), and the previous key is re-activated, verified and published (the only
//!    way keyrot ever activates a key).
//! 4. Access taken away outside keyrot: a user none of whose keys is active is blocked until a
//!    person acts, `--force` or not; keyrot never gives back access someone removed.
//! 5. Keys keyrot does not know (no stored version, not adopted, not its own orphan) are
//!    someone's: an active one is the key in service if keyrot knows no other (adopted), blocks
//!    the user if keyrot knows another (it may be in use, keyrot never deletes it); an inactive
//!    one is left alone until a rotation needs its slot.
//! 6. A pending key (staged, not current) is verified, then published. One that still does not
//!    authenticate when the verify timeout has passed since its creation is discarded
//!    (deleted); a run that crashed before verifying leaves it to be verified by the next.
//! 7. A superseded key stays active for the grace period, and after it until IAM's answers
//!    prove it idle: not used since it was superseded, by an answer that covers that time (IAM
//!    reports uses up to [`Policy::last_used_lag`] late), or not used for the policy's quiet
//!    period (consumers refetch on their own schedule, so a key is still used briefly after a
//!    rotation). An unknown answer means "maybe in use". At the maximum grace it is deactivated
//!    anyway, with an alert. After the recovery window an inactive superseded key is deleted.
//!    With delivery destinations, the current key is first written to each destination that
//!    is not recorded to hold it (once per run: a failed delivery waits for the next run), and
//!    a superseded key is deactivated only once every destination holds its successor; at the
//!    maximum grace it is deactivated anyway, and the alert names the destinations that failed
//!    (see [`crate::delivery`]). A destination no longer configured is left alone.
//! 8. Rotation is due when the key in service is older than the rotation period (or forced):
//!    a new key is created and staged, never while the user already has two keys; only then is
//!    an inactive key keyrot does not know removed to make room.
//!
//! Time marks (superseded at, deactivated at) are recorded right after the step that makes them
//! true; when a crash loses one, the planner records "now", which only ever lengthens a grace
//! period or a recovery window.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::delivery::{Destination, DestinationId, missing};
use crate::model::{AccessKey, AccessKeyId, KeyStatus, LastUsed, StoredUser, Timestamp, UserName};
use crate::policy::Policy;

/// What was observed about one user, plus what this run learned since.
#[derive(Debug, Clone)]
pub struct Observation {
    /// Whose keys.
    pub user: UserName,
    /// The user's keys, as IAM lists them.
    pub keys: Vec<AccessKey>,
    /// What the secret store holds for the user.
    pub stored: StoredUser,
    /// IAM's last-used answers gathered during this run.
    pub last_used: BTreeMap<AccessKeyId, LastUsed>,
    /// Keys proven to authenticate during this run.
    pub verified: BTreeSet<AccessKeyId>,
    /// Keys that did not authenticate when tried during this run.
    pub unverified: BTreeSet<AccessKeyId>,
    /// Rotate now, whatever the key's age.
    pub force: bool,
    /// A person asked to go back to the previous key.
    pub rollback: bool,
    /// When this run re-activated a key for a rollback: its verification deadline runs from
    /// here.
    pub reactivated: Option<Timestamp>,
    /// The user's delivery destinations (see [`crate::delivery`]), as observed.
    pub destinations: Vec<Destination>,
    /// Destinations whose delivery failed during this run, with what failed: tried again by
    /// the next run.
    pub undelivered: BTreeMap<DestinationId, String>,
}

impl Observation {
    /// An observation of `user` with nothing learned yet.
    pub fn new(user: UserName, keys: Vec<AccessKey>, stored: StoredUser) -> Self {
        Self {
            user,
            keys,
            stored,
            last_used: BTreeMap::new(),
            verified: BTreeSet::new(),
            unverified: BTreeSet::new(),
            force: false,
            rollback: false,
            reactivated: None,
            destinations: Vec::new(),
            undelivered: BTreeMap::new(),
        }
    }

    /// Takes what IAM and the store say now from `seen`, a new observation of the same user,
    /// keeping what this run learned and was asked.
    pub fn refresh(&mut self, seen: Self) {
        self.keys = seen.keys;
        self.stored = seen.stored;
        self.destinations = seen.destinations;
    }

    /// The IAM key with `id`.
    pub fn key(&self, id: &AccessKeyId) -> Option<&AccessKey> {
        self.keys.iter().find(|k| &k.id == id)
    }

    /// The key the store names current, if it exists in IAM.
    pub fn current_key(&self) -> Option<&AccessKey> {
        self.stored.current().and_then(|id| self.key(id))
    }
}

/// The next step for one user. Steps are data: a dry run prints them, the driver performs them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Step {
    /// Record a key that predates keyrot as the user's key in service.
    Adopt(AccessKeyId),
    /// Ask IAM when the key was last used (an observation; changes nothing).
    CheckLastUsed(AccessKeyId),
    /// Delete a key that keyrot created but never stored (nobody has its secret).
    DeleteOrphan(AccessKeyId),
    /// Re-activate the previous key, for a rollback a person asked for.
    Reactivate(AccessKeyId),
    /// Delete a staged key that was never published, for a rollback that goes back past it
    /// (nobody was ever given it).
    Unstage(AccessKeyId),
    /// Delete an inactive, unmanaged key to make room for a new one.
    MakeRoom(AccessKeyId),
    /// Create a new key and store it as the pending version at once.
    CreateAndStage,
    /// Check that the pending key authenticates yet.
    Verify(AccessKeyId),
    /// Make the verified pending key current.
    Publish(AccessKeyId),
    /// Delete a pending key that did not authenticate within the verify timeout.
    Discard(AccessKeyId),
    /// Write the current key to a delivery destination and check that it landed.
    Deliver(DestinationId),
    /// Record that the key stopped being current (now).
    RecordSuperseded(AccessKeyId),
    /// Deactivate a superseded key.
    Deactivate {
        /// The key.
        key: AccessKeyId,
        /// Deactivated at the maximum grace although it may still be in use.
        forced: bool,
    },
    /// Record that the key was deactivated (now).
    RecordDeactivated(AccessKeyId),
    /// Delete an inactive superseded key after its recovery window.
    Delete(AccessKeyId),
    /// Forget the recorded marks of a key that no longer needs them.
    Forget(AccessKeyId),
    /// Nothing to do until something happens.
    Wait(Wait),
    /// A person must act.
    Blocked(Blocked),
}

impl Step {
    /// Whether performing the step changes nothing in IAM or the store.
    pub fn is_read_only(&self) -> bool {
        matches!(
            self,
            Self::CheckLastUsed(_) | Self::Verify(_) | Self::Wait(_) | Self::Blocked(_)
        )
    }

    /// Whether the run for this user ends here.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Wait(_) | Self::Blocked(_))
    }

    /// A short stable name, for metrics and tables.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Adopt(_) => "adopt",
            Self::CheckLastUsed(_) => "check-last-used",
            Self::DeleteOrphan(_) => "delete-orphan",
            Self::Reactivate(_) => "reactivate",
            Self::Unstage(_) => "unstage",
            Self::MakeRoom(_) => "make-room",
            Self::CreateAndStage => "create-and-stage",
            Self::Verify(_) => "verify",
            Self::Publish(_) => "publish",
            Self::Discard(_) => "discard",
            Self::Deliver(_) => "deliver",
            Self::RecordSuperseded(_) => "record-superseded",
            Self::Deactivate { .. } => "deactivate",
            Self::RecordDeactivated(_) => "record-deactivated",
            Self::Delete(_) => "delete",
            Self::Forget(_) => "forget",
            Self::Wait(_) => "wait",
            Self::Blocked(_) => "blocked",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Adopt(k) => write!(f, "adopt {k}"),
            Self::CheckLastUsed(k) => write!(f, "check last use of {k}"),
            Self::DeleteOrphan(k) => write!(f, "delete orphan {k}"),
            Self::Reactivate(k) => write!(f, "re-activate {k}"),
            Self::Unstage(k) => write!(f, "unstage {k}: the rollback goes back past it"),
            Self::MakeRoom(k) => write!(f, "make room: delete inactive {k}"),
            Self::CreateAndStage => f.write_str("create and stage a new key"),
            Self::Verify(k) => write!(f, "verify {k}"),
            Self::Publish(k) => write!(f, "publish {k}"),
            Self::Discard(k) => write!(f, "discard {k}"),
            Self::Deliver(d) => write!(f, "deliver the current key to {d}"),
            Self::RecordSuperseded(k) => write!(f, "record {k} superseded"),
            Self::Deactivate { key, forced: false } => write!(f, "deactivate {key}"),
            Self::Deactivate { key, forced: true } => write!(f, "force deactivate {key}"),
            Self::RecordDeactivated(k) => write!(f, "record {k} deactivated"),
            Self::Delete(k) => write!(f, "delete {k}"),
            Self::Forget(k) => write!(f, "forget marks of {k}"),
            Self::Wait(w) => write!(f, "{w}"),
            Self::Blocked(b) => write!(f, "blocked: {b}"),
        }
    }
}

/// What a settled user waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// The key in service is young enough.
    AwaitingRotation {
        /// When it becomes due.
        due: Timestamp,
    },
    /// A superseded key is within its grace period.
    AwaitingGrace {
        /// The key.
        key: AccessKeyId,
        /// When the grace period ends.
        until: Timestamp,
    },
    /// A superseded key may still be in use.
    AwaitingDisuse {
        /// The key.
        key: AccessKeyId,
        /// When it will be deactivated anyway.
        forced_at: Timestamp,
    },
    /// A superseded key stays active until a delivery destination holds its successor.
    AwaitingDelivery {
        /// The key.
        key: AccessKeyId,
        /// The first destination that does not hold its successor.
        destination: DestinationId,
        /// When it will be deactivated anyway.
        forced_at: Timestamp,
    },
    /// An inactive key is within its recovery window.
    AwaitingDeletion {
        /// The key.
        key: AccessKeyId,
        /// When it will be deleted.
        at: Timestamp,
    },
}

impl Wait {
    /// When waiting ends by itself.
    pub fn until(&self) -> Timestamp {
        match self {
            Self::AwaitingRotation { due } => *due,
            Self::AwaitingGrace { until, .. } => *until,
            Self::AwaitingDisuse { forced_at, .. } | Self::AwaitingDelivery { forced_at, .. } => {
                *forced_at
            }
            Self::AwaitingDeletion { at, .. } => *at,
        }
    }
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AwaitingRotation { due } => write!(f, "idle until rotation at {due}"),
            Self::AwaitingGrace { key, until } => write!(f, "grace of {key} until {until}"),
            Self::AwaitingDisuse { key, forced_at } => {
                write!(f, "{key} still in use; forced off at {forced_at}")
            }
            Self::AwaitingDelivery {
                key,
                destination,
                forced_at,
            } => write!(
                f,
                "{key} kept until {destination} holds its successor; forced off at {forced_at}"
            ),
            Self::AwaitingDeletion { key, at } => write!(f, "{key} inactive; deleted at {at}"),
        }
    }
}

/// Why keyrot cannot proceed for a user without a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocked {
    /// IAM lists more than two keys.
    TooManyKeys(usize),
    /// A key keyrot does not know may be in use; keyrot will not delete it.
    UnknownKeyMaybeInUse(AccessKeyId),
    /// Before keyrot manages the user it has two active keys; which one is in service?
    TwoKeysInService,
    /// The stored current key is missing from IAM or inactive.
    CurrentKeyUnusable(AccessKeyId),
    /// Rotation is due, but the other key slot is held by a key keyrot must keep.
    NoRoom(AccessKeyId),
    /// None of the user's keys is active, and keyrot did not make them so: access was taken
    /// away outside keyrot, and keyrot will not give it back.
    AccessRemoved,
    /// A rollback was asked for, but there is no previous key with a stored secret.
    NothingToRollBackTo,
    /// The re-activated previous key did not authenticate within the verify timeout.
    RollbackDidNotAuthenticate(AccessKeyId),
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyKeys(n) => write!(f, "IAM lists {n} keys; at most two are possible"),
            Self::UnknownKeyMaybeInUse(k) => write!(
                f,
                "{k} is not managed by keyrot and may be in use; delete it or deactivate it"
            ),
            Self::TwoKeysInService => f.write_str(
                "the user has two active keys keyrot did not create; deactivate the one not \
                 in service",
            ),
            Self::CurrentKeyUnusable(k) => write!(
                f,
                "the current key {k} was deleted or deactivated outside keyrot; roll back, or \
                 rotate with --force if it was deleted"
            ),
            Self::NoRoom(k) => write!(
                f,
                "rotation is due but {k} must be kept for now; wait or delete it by hand"
            ),
            Self::AccessRemoved => f.write_str(
                "every key of the user was made inactive outside keyrot; keyrot gives no access \
                 back, with --force or not: re-activate the key in service (or delete the keys) \
                 to let keyrot rotate again",
            ),
            Self::NothingToRollBackTo => f.write_str("no previous key to roll back to"),
            Self::RollbackDidNotAuthenticate(k) => write!(
                f,
                "{k} was re-activated for a rollback but did not authenticate within the verify \
                 timeout; the current key stays current"
            ),
        }
    }
}

/// Decides the next step for one user.
pub fn plan(obs: &Observation, policy: &Policy, now: Timestamp) -> Step {
    if obs.keys.len() > 2 {
        return Step::Blocked(Blocked::TooManyKeys(obs.keys.len()));
    }
    let stored = &obs.stored;

    // 2. keyrot's own orphan: created, never stored.
    let unknown: Vec<&AccessKey> = obs.keys.iter().filter(|k| !stored.knows(&k.id)).collect();
    if let Some(orphan) = own_orphan(obs) {
        return Step::DeleteOrphan(orphan.id.clone());
    }

    // 3. A rollback a person asked for.
    if obs.rollback {
        return rollback(obs, policy, now);
    }

    // 4. Access taken away outside keyrot.
    if !obs.keys.is_empty() && obs.keys.iter().all(|k| k.status == KeyStatus::Inactive) {
        return Step::Blocked(Blocked::AccessRemoved);
    }

    // 5. Someone else's keys.
    let foreign_active: Vec<&AccessKey> = unknown
        .iter()
        .copied()
        .filter(|k| k.status == KeyStatus::Active)
        .collect();
    let known_in_iam = obs.keys.iter().any(|k| stored.knows(&k.id));
    match (known_in_iam, foreign_active.as_slice()) {
        (_, []) => {}
        (false, [only]) => return Step::Adopt(only.id.clone()),
        (false, [_, _, ..]) => return Step::Blocked(Blocked::TwoKeysInService),
        (true, [foreign, ..]) => {
            return Step::Blocked(Blocked::UnknownKeyMaybeInUse(foreign.id.clone()));
        }
    }

    // The current key must exist and be active; keyrot never made it otherwise. `--force` can
    // replace a deleted current key, never one someone deactivated.
    let current = match stored.current() {
        Some(id) => match obs.key(id) {
            Some(key) if key.status == KeyStatus::Active => Some(key),
            None if obs.force => None,
            _ => return Step::Blocked(Blocked::CurrentKeyUnusable(id.clone())),
        },
        None => None,
    };
    if let Some(current) = current
        && !stored.marks_of(&current.id).is_empty()
    {
        // Left over from before a rollback made this key current again.
        return Step::Forget(current.id.clone());
    }

    // 6. A staged key: verify, publish, or give up on it.
    let pending = stored
        .pending()
        .and_then(|id| obs.key(id))
        .filter(|k| Some(&k.id) != current.map(|c| &c.id));
    if let Some(pending) = pending {
        let timed_out = now > pending.created + policy.verify_timeout();
        return if pending.status == KeyStatus::Inactive {
            Step::Discard(pending.id.clone())
        } else if obs.verified.contains(&pending.id) {
            Step::Publish(pending.id.clone())
        } else if obs.unverified.contains(&pending.id) && timed_out {
            Step::Discard(pending.id.clone())
        } else {
            Step::Verify(pending.id.clone())
        };
    }

    // 7a. Delivery of the current key, once per run to each destination that lacks it.
    if let Some(current) = current
        && let Some(due) = missing(&obs.destinations, stored, &current.id)
            .into_iter()
            .find(|d| !obs.undelivered.contains_key(&d.id))
    {
        return Step::Deliver(due.id.clone());
    }

    // 7. Superseded keys: grace, deactivation, recovery window, deletion.
    let mut waits = Vec::new();
    if let Some(current) = current {
        let others = obs
            .keys
            .iter()
            .filter(|k| k.id != current.id && stored.knows(&k.id));
        for key in others {
            match superseded(obs, policy, now, key) {
                Step::Wait(wait) => waits.push(wait),
                step => return step,
            }
        }
    }

    // Marks of keys that are gone.
    if let Some(gone) = stored.marks.keys().find(|id| obs.key(id).is_none()) {
        return Step::Forget(gone.clone());
    }

    // 8. Rotation. The key in service is the current one or, before the first publication,
    // the adopted one.
    let in_service = current.or_else(|| obs.keys.iter().find(|k| stored.knows(&k.id)));
    let due_at = in_service.map(|k| k.created + policy.rotation_period());
    let due = obs.force || due_at.is_none_or(|at| now >= at);
    if !due {
        waits.push(Wait::AwaitingRotation {
            due: due_at.unwrap_or(now),
        });
        return Step::Wait(earliest(waits));
    }
    if obs.keys.len() < 2 {
        return Step::CreateAndStage;
    }
    // The other slot: an inactive key keyrot does not know makes room now; a superseded key
    // frees it once its wait ends.
    if let Some(spare) = unknown.first() {
        return Step::MakeRoom(spare.id.clone());
    }
    match waits.into_iter().next() {
        Some(wait) => Step::Wait(wait),
        None => {
            let other = obs
                .keys
                .iter()
                .find(|k| Some(&k.id) != in_service.map(|s| &s.id))
                .map_or_else(|| obs.keys[0].id.clone(), |k| k.id.clone());
            Step::Blocked(Blocked::NoRoom(other))
        }
    }
}

/// The key keyrot created under its last intent and never stored, if IAM lists one. One intent
/// makes at most one key (CreateAccessKey is never retried), so once a stored key was created
/// within the intent's window the intent is spent, and any other key is someone else's.
fn own_orphan(obs: &Observation) -> Option<&AccessKey> {
    let stored = &obs.stored;
    let spent = obs
        .keys
        .iter()
        .any(|k| stored.has_version(&k.id) && stored.intended(k));
    if spent {
        return None;
    }
    obs.keys
        .iter()
        .find(|k| !stored.knows(&k.id) && stored.intended(k))
}

/// The steps of a rollback: re-activate the previous key, prove it authenticates again, and
/// make it current. The key it replaces then goes through grace like any superseded key.
fn rollback(obs: &Observation, policy: &Policy, now: Timestamp) -> Step {
    let current = obs.stored.current();
    let target = obs
        .stored
        .versions
        .iter()
        .filter(|v| v.stages.previous && Some(&v.key_id) != current)
        .find_map(|v| obs.key(&v.key_id));
    let Some(target) = target else {
        return Step::Blocked(Blocked::NothingToRollBackTo);
    };
    // A rotation in progress is abandoned: its staged key would otherwise be published right
    // after the rollback, undoing it.
    if let Some(staged) = obs.stored.pending().and_then(|id| obs.key(id)) {
        return Step::Unstage(staged.id.clone());
    }
    if target.status == KeyStatus::Inactive {
        return Step::Reactivate(target.id.clone());
    }
    if obs.verified.contains(&target.id) {
        return Step::Publish(target.id.clone());
    }
    // A key re-activated by this run may take IAM's propagation delay to authenticate; one
    // that was active all along should authenticate at once.
    let since = obs.reactivated.unwrap_or(target.created);
    if obs.unverified.contains(&target.id) && now > since + policy.verify_timeout() {
        return Step::Blocked(Blocked::RollbackDidNotAuthenticate(target.id.clone()));
    }
    Step::Verify(target.id.clone())
}

/// The step for a known key that is not current, while another key is.
fn superseded(obs: &Observation, policy: &Policy, now: Timestamp, key: &AccessKey) -> Step {
    let marks = obs.stored.marks_of(&key.id);
    match key.status {
        KeyStatus::Active => {
            let Some(since) = marks.superseded else {
                return Step::RecordSuperseded(key.id.clone());
            };
            let until = since + policy.grace();
            if now < until {
                return Step::Wait(Wait::AwaitingGrace {
                    key: key.id.clone(),
                    until,
                });
            }
            let forced_at = since + policy.max_grace();
            // Every destination must hold the successor first (or the maximum grace force it).
            let successor = obs.stored.current();
            let undelivered = successor
                .map(|c| missing(&obs.destinations, &obs.stored, c))
                .unwrap_or_default();
            if let Some(first) = undelivered.first() {
                return if now >= forced_at {
                    Step::Deactivate {
                        key: key.id.clone(),
                        forced: true,
                    }
                } else {
                    Step::Wait(Wait::AwaitingDelivery {
                        key: key.id.clone(),
                        destination: first.id.clone(),
                        forced_at,
                    })
                };
            }
            let Some(answer) = obs.last_used.get(&key.id) else {
                return Step::CheckLastUsed(key.id.clone());
            };
            let idle = idle(*answer, since, policy, now);
            if idle || now >= forced_at {
                Step::Deactivate {
                    key: key.id.clone(),
                    forced: !idle,
                }
            } else {
                Step::Wait(Wait::AwaitingDisuse {
                    key: key.id.clone(),
                    forced_at,
                })
            }
        }
        KeyStatus::Inactive => {
            let Some(since) = marks.deactivated else {
                return Step::RecordDeactivated(key.id.clone());
            };
            let at = since + policy.recovery_window();
            if now >= at {
                Step::Delete(key.id.clone())
            } else {
                Step::Wait(Wait::AwaitingDeletion {
                    key: key.id.clone(),
                    at,
                })
            }
        }
    }
}

/// Whether IAM's `answer`, given at `now`, proves that a key superseded at `since` is no longer
/// used. IAM reports a use up to [`Policy::last_used_lag`] late, so an answer says nothing of
/// the last lag before `now`: "not used since `since`" holds only once `now` is a lag past
/// `since`, and "not used for the quiet period" only because the quiet period is at least the
/// lag (the policy refuses a shorter one). No answer means "maybe in use", never "unused".
fn idle(answer: LastUsed, since: Timestamp, policy: &Policy, now: Timestamp) -> bool {
    match answer {
        LastUsed::Never => now >= since + policy.last_used_lag(),
        LastUsed::At(at) if at < since => now >= since + policy.last_used_lag(),
        LastUsed::At(at) => at + policy.quiet_period() <= now,
        LastUsed::Unknown => false,
    }
}

fn earliest(waits: Vec<Wait>) -> Wait {
    // Waits for the old key come before the rotation wait, and win ties: they are what an
    // operator looks at first.
    let mut best: Option<Wait> = None;
    for wait in waits {
        if best.as_ref().is_none_or(|b| wait.until() < b.until()) {
            best = Some(wait);
        }
    }
    best.unwrap_or(Wait::AwaitingRotation {
        due: Timestamp::UNIX_EPOCH,
    })
}

/// A warning ahead of action: the notice to send when the step is the last wait before keyrot
/// acts against a key that may still be in use. Stateless: with runs every
/// [`Policy::schedule_interval`], exactly one run falls in the window.
pub fn warning_ahead(
    step: &Step,
    policy: &Policy,
    now: Timestamp,
) -> Option<(AccessKeyId, Timestamp)> {
    match step {
        Step::Wait(
            Wait::AwaitingDisuse { key, forced_at } | Wait::AwaitingDelivery { key, forced_at, .. },
        ) => {
            let window_start = *forced_at - policy.schedule_interval();
            (now >= window_start && now < *forced_at).then(|| (key.clone(), *forced_at))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
