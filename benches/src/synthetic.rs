//! Synthetic observations of users in every lifecycle state, for the planner benchmark.

use std::collections::BTreeMap;
use std::time::Duration;

use keyrot_core::{
    AccessKey, AccessKeyId, KeyStatus, LastUsed, Marks, NameError, Observation, Policy, Stages,
    StoredUser, StoredVersion, Timestamp, UserName,
};

/// Where a synthetic user stands in the rotation lifecycle (under [`Policy::builder`]'s
/// production defaults: rotate every 90 days, 7 days of grace, at most 14, 7 days of recovery).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// One current key, 10 days old: waits for rotation.
    Idle,
    /// One current key, 100 days old: a new key is due.
    Due,
    /// A new key created a minute ago is staged: it is verified next.
    Pending,
    /// The old key was superseded 2 days ago: waits out the grace period.
    Grace,
    /// The old key was superseded 10 days ago and used an hour ago: waits for disuse.
    Disuse,
    /// The old key was deactivated 3 days ago: waits out the recovery window.
    Deletion,
}

impl Lifecycle {
    /// Every state, in the order [`observations`] cycles through them.
    pub const ALL: [Self; 6] = [
        Self::Idle,
        Self::Due,
        Self::Pending,
        Self::Grace,
        Self::Disuse,
        Self::Deletion,
    ];
}

const DAY: Duration = Duration::from_secs(24 * 3600);

/// `count` observations at `now`, cycling through [`Lifecycle::ALL`]: user `i` is in state
/// `ALL[i % 6]`, named `user-{i}` with keys numbered from `2 * i`.
pub fn observations(count: usize, now: Timestamp) -> Result<Vec<Observation>, NameError> {
    (0..count)
        .map(|i| observation(i, Lifecycle::ALL[i % Lifecycle::ALL.len()], now))
        .collect()
}

/// One observation of user `i` in `state` at `now`.
pub fn observation(i: usize, state: Lifecycle, now: Timestamp) -> Result<Observation, NameError> {
    let ago = |d: Duration| now.saturating_sub(d).unwrap_or(Timestamp::MIN);
    let user = UserName::new(format!("user-{i}"))?;
    let old = AccessKeyId::new(format!("AKIA{:016}", 2 * i))?;
    let new = AccessKeyId::new(format!("AKIA{:016}", 2 * i + 1))?;
    let key = |id: &AccessKeyId, status, age| AccessKey {
        id: id.clone(),
        status,
        created: ago(age),
    };
    let version = |id: &AccessKeyId, current, pending, previous| StoredVersion {
        key_id: id.clone(),
        stages: Stages {
            current,
            pending,
            previous,
        },
    };
    let only = |age| {
        (
            vec![key(&old, KeyStatus::Active, age)],
            vec![version(&old, true, false, false)],
        )
    };
    // After a rotation: `new` (current, `age` old) and `old` (previous, with `status`).
    let rotated = |age, status| {
        (
            vec![
                key(&old, status, age + 90 * DAY),
                key(&new, KeyStatus::Active, age),
            ],
            vec![
                version(&new, true, true, false),
                version(&old, false, false, true),
            ],
        )
    };
    let mut marks = BTreeMap::new();
    let mut last_used = BTreeMap::new();
    let (keys, versions) = match state {
        Lifecycle::Idle => only(10 * DAY),
        Lifecycle::Due => only(100 * DAY),
        Lifecycle::Pending => (
            vec![
                key(&old, KeyStatus::Active, 100 * DAY),
                key(&new, KeyStatus::Active, Duration::from_secs(60)),
            ],
            vec![
                version(&new, false, true, false),
                version(&old, true, false, false),
            ],
        ),
        Lifecycle::Grace => {
            marks.insert(old.clone(), superseded(ago(2 * DAY)));
            rotated(2 * DAY, KeyStatus::Active)
        }
        Lifecycle::Disuse => {
            marks.insert(old.clone(), superseded(ago(10 * DAY)));
            last_used.insert(old.clone(), LastUsed::At(ago(Duration::from_secs(3600))));
            rotated(10 * DAY, KeyStatus::Active)
        }
        Lifecycle::Deletion => {
            let mut m = superseded(ago(20 * DAY));
            m.deactivated = Some(ago(3 * DAY));
            marks.insert(old.clone(), m);
            rotated(20 * DAY, KeyStatus::Inactive)
        }
    };
    let mut obs = Observation::new(
        user,
        keys,
        StoredUser {
            versions,
            marks,
            intent: None,
            last_notice: None,
            delivered: Default::default(),
        },
    );
    obs.last_used = last_used;
    Ok(obs)
}

fn superseded(at: Timestamp) -> Marks {
    Marks {
        superseded: Some(at),
        ..Marks::default()
    }
}

/// The policy the observations are made for: the production defaults.
pub fn policy() -> Policy {
    // The defaults are valid (keyrot-core tests it); a builder error cannot happen here.
    Policy::builder()
        .build()
        .unwrap_or_else(|e| unreachable!("default policy is valid: {e}"))
}

#[cfg(test)]
mod tests {
    use keyrot_core::{Step, Wait, plan};

    use super::*;

    #[test]
    fn each_state_plans_as_named() {
        let now = Timestamp::constant(1_795_651_200, 0);
        let policy = policy();
        let obs = observations(12, now).unwrap();
        for (i, o) in obs.iter().enumerate() {
            let step = plan(o, &policy, now);
            let ok = match Lifecycle::ALL[i % 6] {
                Lifecycle::Idle => matches!(step, Step::Wait(Wait::AwaitingRotation { .. })),
                Lifecycle::Due => step == Step::CreateAndStage,
                Lifecycle::Pending => matches!(step, Step::Verify(_)),
                Lifecycle::Grace => matches!(step, Step::Wait(Wait::AwaitingGrace { .. })),
                Lifecycle::Disuse => matches!(step, Step::Wait(Wait::AwaitingDisuse { .. })),
                Lifecycle::Deletion => matches!(step, Step::Wait(Wait::AwaitingDeletion { .. })),
            };
            assert!(ok, "user {i} ({:?}): {step}", Lifecycle::ALL[i % 6]);
        }
    }
}
