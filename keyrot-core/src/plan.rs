//! The planner: from what was observed about one user, the policy and `now`, the next safe step.
//!
//! [`plan`] is a pure function. The [driver](crate::driver) observes, asks it, performs the one
//! step, records the effect in the [`Observation`] and asks again, until the answer is a
//! [`Step::Wait`] or a [`Step::Blocked`]. A crash between two steps is just another state the
//! next run's observation shows and the planner knows how to finish.
//!
//! The rules, in the order they are applied:
//! 1. More than two keys: blocked (IAM never allows it; someone is interfering).
//! 2. Keys keyrot does not know (no stored version, not adopted):
//!    - if keyrot knows another key of the user, an unknown key is an orphan left by a crash
//!      between CreateAccessKey and storing its secret. It is deleted once IAM answers that it
//!      was never used; any other answer blocks (it may be someone's key in use).
//!    - if keyrot knows no key yet, the user's one existing key is adopted as the key in
//!      service; of two, an inactive one is removed to make room, two active ones block.
//! 3. A pending key (staged, not current) is verified, then published. One that still does not
//!    authenticate when the verify timeout has passed since its creation is discarded
//!    (deleted); a run that crashed before verifying leaves it to be verified by the next.
//! 4. A superseded key stays active for the grace period, and after it until IAM answers that it
//!    is idle: never used, used only before it was superseded, or not used for the policy's
//!    quiet period (consumers refetch on their own schedule, so a key is still used briefly
//!    after a rotation). An unknown answer means "maybe in use". At the maximum grace it is
//!    deactivated anyway, with an alert. After the recovery window an
//!    inactive superseded key is deleted.
//! 5. Rotation is due when the key in service is older than the rotation period (or forced):
//!    a new key is created and staged, never while the user already has two keys.
//!
//! Time marks (superseded at, deactivated at) are recorded right after the step that makes them
//! true; when a crash loses one, the planner records "now", which only ever lengthens a grace
//! period or a recovery window.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

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
        }
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
            Self::MakeRoom(_) => "make-room",
            Self::CreateAndStage => "create-and-stage",
            Self::Verify(_) => "verify",
            Self::Publish(_) => "publish",
            Self::Discard(_) => "discard",
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
            Self::MakeRoom(k) => write!(f, "make room: delete inactive {k}"),
            Self::CreateAndStage => f.write_str("create and stage a new key"),
            Self::Verify(k) => write!(f, "verify {k}"),
            Self::Publish(k) => write!(f, "publish {k}"),
            Self::Discard(k) => write!(f, "discard {k}"),
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
            Self::AwaitingDisuse { forced_at, .. } => *forced_at,
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
                "the current key {k} was deleted or deactivated outside keyrot; rotate with \
                 --force or roll back"
            ),
            Self::NoRoom(k) => write!(
                f,
                "rotation is due but {k} must be kept for now; wait or delete it by hand"
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
    let known_in_iam = obs.keys.iter().any(|k| stored.knows(&k.id));

    // 2. Keys keyrot does not know.
    let unknown: Vec<&AccessKey> = obs.keys.iter().filter(|k| !stored.knows(&k.id)).collect();
    if known_in_iam {
        if let Some(orphan) = unknown.first() {
            return match obs.last_used.get(&orphan.id) {
                None => Step::CheckLastUsed(orphan.id.clone()),
                Some(LastUsed::Never) => Step::DeleteOrphan(orphan.id.clone()),
                Some(LastUsed::At(_) | LastUsed::Unknown) => {
                    Step::Blocked(Blocked::UnknownKeyMaybeInUse(orphan.id.clone()))
                }
            };
        }
    } else {
        match unknown.as_slice() {
            [] => {}
            [only] => return Step::Adopt(only.id.clone()),
            [a, b, ..] => {
                return match (a.status, b.status) {
                    (KeyStatus::Active, KeyStatus::Active) => {
                        Step::Blocked(Blocked::TwoKeysInService)
                    }
                    (KeyStatus::Inactive, KeyStatus::Active) => Step::MakeRoom(a.id.clone()),
                    (KeyStatus::Active, KeyStatus::Inactive) => Step::MakeRoom(b.id.clone()),
                    (KeyStatus::Inactive, KeyStatus::Inactive) => {
                        Step::MakeRoom(oldest(a, b).id.clone())
                    }
                };
            }
        }
    }

    // The current key must exist and be active; keyrot never made it otherwise.
    let current = match stored.current() {
        Some(id) => match obs.key(id) {
            Some(key) if key.status == KeyStatus::Active => Some(key),
            _ if obs.force => None,
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

    // 3. A staged key: verify, publish, or give up on it.
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

    // 4. Superseded keys: grace, deactivation, recovery window, deletion.
    let mut waits = Vec::new();
    if let Some(current) = current {
        for key in obs.keys.iter().filter(|k| k.id != current.id) {
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

    // 5. Rotation. The key in service is the current one or, before the first publication,
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
    match waits.into_iter().next() {
        // The other slot frees itself once its wait ends.
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
            let idle = match obs.last_used.get(&key.id) {
                None => return Step::CheckLastUsed(key.id.clone()),
                Some(LastUsed::Never) => true,
                Some(LastUsed::At(at)) => *at < since || *at + policy.quiet_period() <= now,
                // No answer means "maybe in use", never "unused".
                Some(LastUsed::Unknown) => false,
            };
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

fn oldest<'a>(a: &'a AccessKey, b: &'a AccessKey) -> &'a AccessKey {
    if b.created < a.created { b } else { a }
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
        Step::Wait(Wait::AwaitingDisuse { key, forced_at }) => {
            let window_start = *forced_at - policy.schedule_interval();
            (now >= window_start && now < *forced_at).then(|| (key.clone(), *forced_at))
        }
        _ => None,
    }
}

/// A duration in whole days, hours or minutes, for tables.
pub fn human(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        s if s >= 86_400 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s >= 86_400 => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests;
