//! What keyrot knows about each selected user, read-only: its keys with their status, age,
//! last use and lifecycle [`Stage`], the last rotation, what keyrot does next and when; and
//! whether the user passes the rule "no active key older than N days" (AWS Config's
//! `access-keys-rotated`, Security Hub's IAM.3) and since when ([`compliance`]).
//!
//! [`gather`] reads through the [`Rotator`]'s ports and plans each managed user as a dry run;
//! it changes nothing. `keyrot status`, `keyrot report` and the API's admin route all show
//! what it returns.
//!
//! # Since when a user passes or fails
//!
//! keyrot keeps no history of the rule, so the date is derived from what IAM and the store
//! still say:
//! - A user **fails** from the moment its oldest active key turned N days old (its creation
//!   plus N days).
//! - A user **passes** since the latest moment a key stopped being active after it had turned
//!   N days old (its recorded deactivation); failing that, since its newest rotation (a key was
//!   published in place of another: the newest `superseded` mark); failing that, since its
//!   oldest key was created (nothing shows it ever failed). A key removed outside keyrot
//!   leaves no trace, so the date is the latest one keyrot can prove, never a guess.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::driver::{Outcome, Rotator, Unobserved};
use crate::model::{AccessKey, AccessKeyId, KeyStatus, LastUsed, StoredUser, Timestamp, UserName};
use crate::policy::Policy;
use crate::ports::IamError;

/// Where a key is in keyrot's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Staged in the store, not yet verified and published.
    Pending,
    /// The key in service (published by keyrot, or adopted from before it).
    Current,
    /// Superseded, still active, within the grace period.
    Grace,
    /// Superseded, past the grace period, still active until IAM proves it idle (or the
    /// maximum grace ends).
    AwaitingDisuse,
    /// Deactivated by keyrot, kept for the recovery window before it is deleted.
    RecoveryWindow,
    /// Gone from IAM; the store still holds a version of it.
    Deleted,
    /// Not keyrot's: neither stored nor adopted.
    Unknown,
}

impl Stage {
    /// The stage in words: `pending`, `current`, `grace`, `awaiting disuse`,
    /// `recovery window`, `deleted`, `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Current => "current",
            Self::Grace => "grace",
            Self::AwaitingDisuse => "awaiting disuse",
            Self::RecoveryWindow => "recovery window",
            Self::Deleted => "deleted",
            Self::Unknown => "unknown",
        }
    }
}

/// What IAM said about a key's last use, if it was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LastUse {
    /// Not asked (`keyrot status` does not ask).
    NotAsked,
    /// Never used.
    Never,
    /// Last used then.
    At(Timestamp),
    /// IAM gave no answer.
    Unknown,
}

impl From<LastUsed> for LastUse {
    fn from(answer: LastUsed) -> Self {
        match answer {
            LastUsed::Never => Self::Never,
            LastUsed::At(at) => Self::At(at),
            LastUsed::Unknown => Self::Unknown,
        }
    }
}

/// One key of a user, without any secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyState {
    /// The access key id.
    pub id: AccessKeyId,
    /// Active or inactive; `None` for a deleted key.
    pub status: Option<KeyStatus>,
    /// When IAM created it; `None` for a deleted key.
    pub created: Option<Timestamp>,
    /// The store's label: `current`, `pending`, `previous`, `stored` (a version without a
    /// label), `adopted` or `unknown`.
    pub label: String,
    /// Where it is in the lifecycle.
    pub stage: Stage,
    /// When IAM says it was last used.
    pub last_used: LastUse,
    /// When keyrot adopted it.
    pub adopted: Option<Timestamp>,
    /// When another key was published in its place.
    pub superseded: Option<Timestamp>,
    /// When keyrot deactivated it.
    pub deactivated: Option<Timestamp>,
}

/// One selected user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserState {
    /// The user.
    pub user: UserName,
    /// Whether keyrot manages it (`false`: exempt, or named but not selected).
    pub managed: bool,
    /// Its keys: IAM's, then the deleted ones the store remembers.
    pub keys: Vec<KeyState>,
    /// The newest rotation keyrot recorded (a key superseded by a published one).
    pub last_rotation: Option<Timestamp>,
    /// What keyrot does next, in words.
    pub next: String,
    /// When, if keyrot waits for a time.
    pub at: Option<Timestamp>,
    /// Whether a person must act or the last observation failed.
    pub attention: bool,
}

/// What [`gather`] reads besides the keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GatherOptions {
    /// Ask IAM when each key was last used (one call per key).
    pub last_used: bool,
    /// Include the exempt users (selected, but never touched), with their keys.
    pub exempt: bool,
}

/// Told of [`gather`]'s progress, for a progress bar: how many users, then each as it is done.
/// Every method does nothing by default.
pub trait GatherObserver: Send + Sync {
    /// `users` users will be gathered.
    fn started(&self, users: usize) {
        let _ = users;
    }

    /// One user's state is gathered.
    fn user_done(&self, state: &UserState) {
        let _ = state;
    }
}

impl GatherObserver for Unobserved {}

/// The state of every managed user (and, with [`GatherOptions::exempt`], every exempt one),
/// or of `only` if it is not empty, at `now`, sorted by user, telling `observer` of each.
/// Read-only: each managed user is planned as a dry run.
pub async fn gather(
    rotator: &Rotator,
    only: &[UserName],
    options: GatherOptions,
    now: Timestamp,
    observer: &dyn GatherObserver,
) -> Result<Vec<UserState>, IamError> {
    let policy = rotator.policy();
    let mut selected = rotator
        .ports()
        .iam
        .managed_users(policy.selection())
        .await?;
    selected.sort();
    selected.dedup();
    let managed = rotator.managed_users().await?;
    let users: Vec<UserName> = if only.is_empty() {
        selected
            .into_iter()
            .filter(|u| options.exempt || !policy.is_exempt(u))
            .collect()
    } else {
        only.to_vec()
    };
    observer.started(users.len());
    let mut states = Vec::with_capacity(users.len());
    for user in users {
        let managed = managed.iter().find(|m| m.name() == &user);
        let (next, at, attention) = match managed {
            Some(managed) => {
                let report = rotator.plan_user(managed).await;
                let at = match &report.outcome {
                    Outcome::Waiting(wait) => Some(wait.until()),
                    _ => None,
                };
                let next = match &report.outcome {
                    // A dry run's outcome says "next: <step>" itself.
                    Outcome::Planned(step) => step.to_string(),
                    other => other.to_string(),
                };
                (next, at, report.outcome.is_failure())
            }
            None if policy.is_exempt(&user) => ("exempt: untouched".to_owned(), None, false),
            // keyrot never plans, let alone touches, a user it does not manage.
            None => (Outcome::NotManaged.to_string(), None, true),
        };
        let mut state = UserState {
            user: user.clone(),
            managed: managed.is_some(),
            keys: Vec::new(),
            last_rotation: None,
            next,
            at,
            attention,
        };
        if managed.is_some() || policy.is_exempt(&user) {
            if let Ok(obs) = rotator.observe(&user).await {
                state.keys = key_states(&obs.keys, &obs.stored, policy, now);
                state.last_rotation = last_rotation(&obs.stored, &state.keys);
                if options.last_used {
                    for key in state.keys.iter_mut().filter(|k| k.created.is_some()) {
                        key.last_used = rotator.ports().iam.last_used(&key.id).await.into();
                    }
                }
            } else {
                state.attention = true;
            }
        }
        observer.user_done(&state);
        states.push(state);
    }
    states.sort_by(|a, b| a.user.cmp(&b.user));
    Ok(states)
}

/// The keys IAM lists, with what the store knows of them, then the stored keys IAM no longer
/// has.
pub fn key_states(
    keys: &[AccessKey],
    stored: &StoredUser,
    policy: &Policy,
    now: Timestamp,
) -> Vec<KeyState> {
    let mut states: Vec<KeyState> = keys
        .iter()
        .map(|key| {
            let label = label(&key.id, stored);
            let marks = stored.marks_of(&key.id);
            let stage = match label {
                "current" => Stage::Current,
                "pending" => Stage::Pending,
                _ if key.status == KeyStatus::Inactive => match marks.deactivated {
                    Some(_) => Stage::RecoveryWindow,
                    None => Stage::Unknown,
                },
                _ => match marks.superseded {
                    Some(since) if now < since + policy.grace() => Stage::Grace,
                    Some(_) => Stage::AwaitingDisuse,
                    None if marks.adopted.is_some() => Stage::Current,
                    None => Stage::Unknown,
                },
            };
            KeyState {
                id: key.id.clone(),
                status: Some(key.status),
                created: Some(key.created),
                label: label.to_owned(),
                stage,
                last_used: LastUse::NotAsked,
                adopted: marks.adopted,
                superseded: marks.superseded,
                deactivated: marks.deactivated,
            }
        })
        .collect();
    for version in &stored.versions {
        if states.iter().any(|k| k.id == version.key_id) {
            continue;
        }
        let marks = stored.marks_of(&version.key_id);
        states.push(KeyState {
            id: version.key_id.clone(),
            status: None,
            created: None,
            label: label(&version.key_id, stored).to_owned(),
            stage: Stage::Deleted,
            last_used: LastUse::NotAsked,
            adopted: marks.adopted,
            superseded: marks.superseded,
            deactivated: marks.deactivated,
        });
    }
    states
}

/// The store's most telling label for `key`. Secrets Manager leaves AWSPENDING on a version it
/// promotes: current wins over pending, pending over previous.
fn label(key: &AccessKeyId, stored: &StoredUser) -> &'static str {
    let labelled = stored
        .versions
        .iter()
        .filter(|v| &v.key_id == key)
        .find_map(|v| {
            [
                (v.stages.current, "current"),
                (v.stages.pending, "pending"),
                (v.stages.previous, "previous"),
            ]
            .into_iter()
            .find_map(|(set, name)| set.then_some(name))
        });
    match labelled {
        Some(label) => label,
        None if stored.has_version(key) => "stored",
        None if stored.knows(key) => "adopted",
        None => "unknown",
    }
}

/// The newest rotation: the newest `superseded` mark the store holds (of a key IAM still
/// lists or not), or else the creation of the current key if keyrot made it.
pub fn last_rotation(stored: &StoredUser, keys: &[KeyState]) -> Option<Timestamp> {
    stored
        .marks
        .values()
        .filter_map(|m| m.superseded)
        .max()
        .or_else(|| {
            keys.iter()
                .find(|k| k.label == "current" && k.adopted.is_none())
                .and_then(|k| k.created)
        })
}

/// Whether a user passes "no active key older than `max_age`", and since when (see the
/// [module docs](self) for how the date is derived).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compliance {
    /// Whether every active key is at most `max_age` old.
    pub passes: bool,
    /// Since when it passes or fails, as far as keyrot can tell; `None` for a user with no
    /// keys at all and nothing recorded.
    pub since: Option<Timestamp>,
}

/// Whether `user` passes "no active key older than `max_age`" at `now`, and since when.
pub fn compliance(user: &UserState, max_age: Duration, now: Timestamp) -> Compliance {
    let overdue = user
        .keys
        .iter()
        .filter(|k| k.status == Some(KeyStatus::Active))
        .filter_map(|k| k.created)
        .map(|created| created + max_age)
        .filter(|due| *due < now)
        .min();
    if let Some(since) = overdue {
        return Compliance {
            passes: false,
            since: Some(since),
        };
    }
    let ended = user
        .keys
        .iter()
        .filter_map(|k| match (k.created, k.deactivated) {
            (Some(created), Some(off)) if off > created + max_age => Some(off),
            _ => None,
        })
        .max();
    let oldest = user.keys.iter().filter_map(|k| k.created).min();
    Compliance {
        passes: true,
        since: ended.or(user.last_rotation).or(oldest),
    }
}

/// A report as a document: every user's state at `generated_at` with its compliance under
/// "no active key older than `max_age_days` days". The deployed rotator writes one after its
/// runs (to S3, `reports/latest.json`), and the deployed API's admin routes show it: the API
/// needs no IAM permission, and an admin's page costs no IAM call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// When the users' states were gathered.
    pub generated_at: Timestamp,
    /// The rule's N.
    pub max_age_days: u64,
    /// Every user, with its compliance.
    pub users: Vec<SnapshotUser>,
}

/// One user of a [`Snapshot`]: its state and whether it passes the rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotUser {
    /// The user's state.
    #[serde(flatten)]
    pub state: UserState,
    /// Whether it passes, and since when.
    pub compliance: Compliance,
}

impl Snapshot {
    /// `users` at `now`, each judged by the rule "no active key older than `max_age_days`".
    pub fn new(users: Vec<UserState>, max_age_days: u64, now: Timestamp) -> Self {
        let max_age = Duration::from_secs(86_400)
            .saturating_mul(u32::try_from(max_age_days).unwrap_or(u32::MAX));
        let users = users
            .into_iter()
            .map(|state| SnapshotUser {
                compliance: compliance(&state, max_age, now),
                state,
            })
            .collect();
        Self {
            generated_at: now,
            max_age_days,
            users,
        }
    }

    /// The users' states, without their compliance.
    pub fn states(&self) -> Vec<UserState> {
        self.users.iter().map(|u| u.state.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn key(id: &str, status: KeyStatus, created: &str) -> KeyState {
        KeyState {
            id: AccessKeyId::new(id).unwrap(),
            status: Some(status),
            created: Some(at(created)),
            label: "current".to_owned(),
            stage: Stage::Current,
            last_used: LastUse::NotAsked,
            adopted: None,
            superseded: None,
            deactivated: None,
        }
    }

    fn user(keys: Vec<KeyState>, last_rotation: Option<&str>) -> UserState {
        UserState {
            user: UserName::new("ci").unwrap(),
            managed: true,
            keys,
            last_rotation: last_rotation.map(at),
            next: String::new(),
            at: None,
            attention: false,
        }
    }

    #[test]
    fn a_user_fails_from_the_day_its_oldest_active_key_turned_n_days_old() {
        let u = user(
            vec![
                key(
                    "AKIAOLDEST0000000001",
                    KeyStatus::Active,
                    "2025-01-01T00:00:00Z",
                ),
                key(
                    "AKIAOLDER00000000002",
                    KeyStatus::Active,
                    "2025-02-01T00:00:00Z",
                ),
            ],
            None,
        );
        let c = compliance(&u, 90 * DAY, at("2025-06-01T00:00:00Z"));
        assert_eq!(
            c,
            Compliance {
                passes: false,
                since: Some(at("2025-04-01T00:00:00Z")),
            }
        );
        // Exactly N days old is not older than N days.
        let c = compliance(&u, 90 * DAY, at("2025-04-01T00:00:00Z"));
        assert!(c.passes, "{c:?}");
    }

    #[test]
    fn an_old_inactive_key_does_not_fail_and_its_deactivation_dates_the_pass() {
        let mut old = key(
            "AKIAOLD0000000000001",
            KeyStatus::Inactive,
            "2025-01-01T00:00:00Z",
        );
        old.superseded = Some(at("2025-05-01T00:00:00Z"));
        old.deactivated = Some(at("2025-05-03T00:00:00Z"));
        let new = key(
            "AKIANEW0000000000002",
            KeyStatus::Active,
            "2025-05-01T00:00:00Z",
        );
        let u = user(vec![old, new], Some("2025-05-01T00:00:00Z"));
        let c = compliance(&u, 90 * DAY, at("2025-06-01T00:00:00Z"));
        assert_eq!(
            c,
            Compliance {
                passes: true,
                since: Some(at("2025-05-03T00:00:00Z")),
            }
        );
    }

    #[test]
    fn a_pass_is_dated_by_the_newest_rotation_then_by_the_oldest_key() {
        let new = key(
            "AKIANEW0000000000002",
            KeyStatus::Active,
            "2025-05-01T00:00:00Z",
        );
        let rotated = user(vec![new.clone()], Some("2025-05-01T00:00:10Z"));
        let c = compliance(&rotated, 90 * DAY, at("2025-06-01T00:00:00Z"));
        assert_eq!(c.since, Some(at("2025-05-01T00:00:10Z")));
        let never = user(vec![new], None);
        let c = compliance(&never, 90 * DAY, at("2025-06-01T00:00:00Z"));
        assert_eq!(c.since, Some(at("2025-05-01T00:00:00Z")));
        let none = user(Vec::new(), None);
        assert_eq!(
            compliance(&none, 90 * DAY, at("2025-06-01T00:00:00Z")),
            Compliance {
                passes: true,
                since: None,
            }
        );
    }

    #[test]
    fn a_snapshot_judges_each_user_and_reads_back_as_written() {
        let now = at("2026-06-01T00:00:00Z");
        let old = user(
            vec![key(
                "AKIAOLD0000000000001",
                KeyStatus::Active,
                "2026-01-01T00:00:00Z",
            )],
            None,
        );
        let fresh = user(
            vec![key(
                "AKIANEW0000000000001",
                KeyStatus::Active,
                "2026-05-20T00:00:00Z",
            )],
            None,
        );
        let snapshot = Snapshot::new(vec![old.clone(), fresh.clone()], 90, now);
        assert_eq!(snapshot.generated_at, now);
        assert!(!snapshot.users[0].compliance.passes);
        assert_eq!(
            snapshot.users[0].compliance.since,
            Some(at("2026-04-01T00:00:00Z"))
        );
        assert!(snapshot.users[1].compliance.passes);
        assert_eq!(snapshot.states(), [old, fresh]);

        let json = serde_json::to_string(&snapshot).unwrap();
        assert!(json.contains(r#""user":"ci","managed":true"#), "{json}");
        let back: Snapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, snapshot);
    }
}
