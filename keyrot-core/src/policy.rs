//! The rotation policy: periods, and which users keyrot manages.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use crate::duration::format_duration;
use crate::model::UserName;

/// Which users keyrot manages. Management is opt-in: nobody is managed by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Users carrying the IAM tag `key` with value `value` (e.g. `keyrot:managed=true`).
    Tagged {
        /// The tag key.
        key: String,
        /// The tag value.
        value: String,
    },
    /// Exactly these users.
    Listed(BTreeSet<UserName>),
}

impl Default for Selection {
    fn default() -> Self {
        Self::Tagged {
            key: "keyrot:managed".into(),
            value: "true".into(),
        }
    }
}

impl fmt::Display for Selection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tagged { key, value } => write!(f, "users tagged {key}={value}"),
            Self::Listed(users) => {
                f.write_str("users ")?;
                for (i, user) in users.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{user}")?;
                }
                Ok(())
            }
        }
    }
}

/// One setting of a policy, named as [`PolicyError`] and the settings' errors name it, so a
/// configuration can map every error to the setting the user wrote without a catch-all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PolicyField {
    /// [`Policy::rotation_period`].
    RotationPeriod,
    /// [`Policy::grace`].
    Grace,
    /// [`Policy::max_grace`].
    MaxGrace,
    /// [`Policy::recovery_window`].
    RecoveryWindow,
    /// [`Policy::quiet_period`].
    QuietPeriod,
    /// [`Policy::last_used_lag`].
    LastUsedLag,
    /// [`Policy::verify_timeout`].
    VerifyTimeout,
    /// [`Policy::schedule_interval`].
    ScheduleInterval,
    /// The tag that selects managed users ([`Selection::Tagged`]).
    ManagedTag,
    /// The listed users ([`Selection::Listed`]).
    Users,
    /// [`Policy::exempt`].
    Exempt,
}

impl PolicyField {
    /// The field's name, as the settings spell it (`max_grace`).
    pub fn name(self) -> &'static str {
        match self {
            Self::RotationPeriod => "rotation_period",
            Self::Grace => "grace",
            Self::MaxGrace => "max_grace",
            Self::RecoveryWindow => "recovery_window",
            Self::QuietPeriod => "quiet_period",
            Self::LastUsedLag => "last_used_lag",
            Self::VerifyTimeout => "verify_timeout",
            Self::ScheduleInterval => "schedule_interval",
            Self::ManagedTag => "managed_tag",
            Self::Users => "users",
            Self::Exempt => "exempt",
        }
    }
}

impl fmt::Display for PolicyField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A policy that cannot work, with what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A period was zero.
    #[error("{0} must be longer than zero")]
    Zero(PolicyField),
    /// The maximum grace was shorter than the grace.
    #[error(
        "max_grace ({}) must be at least grace ({})",
        format_duration(*.max_grace),
        format_duration(*.grace)
    )]
    MaxGraceBelowGrace {
        /// The grace period.
        grace: Duration,
        /// The maximum grace period.
        max_grace: Duration,
    },
    /// A key could never count as idle before the maximum grace forces it off.
    #[error(
        "quiet_period ({}) must be at most max_grace ({})",
        format_duration(*.quiet_period),
        format_duration(*.max_grace)
    )]
    QuietAboveMaxGrace {
        /// The quiet period.
        quiet_period: Duration,
        /// The maximum grace period.
        max_grace: Duration,
    },
    /// A key could count as idle on last-used answers that IAM has not caught up with yet.
    #[error(
        "quiet_period ({}) must be at least last_used_lag ({}): IAM reports uses that late",
        format_duration(*.quiet_period),
        format_duration(*.last_used_lag)
    )]
    QuietBelowLag {
        /// The quiet period.
        quiet_period: Duration,
        /// IAM's last-used reporting lag.
        last_used_lag: Duration,
    },
    /// The old key's lifecycle would not end before the next rotation is due.
    #[error(
        "rotation_period ({}) must be at least verify_timeout + max_grace + recovery_window \
         ({}), so that the old key is gone before the next rotation",
        format_duration(*.rotation_period),
        format_duration(*.needed)
    )]
    PeriodTooShort {
        /// The rotation period.
        rotation_period: Duration,
        /// The shortest period that works with the other settings.
        needed: Duration,
    },
    /// A period was too long to compute with.
    #[error("{0} is too long (more than 100 years)")]
    TooLong(PolicyField),
    /// An explicit user list was empty.
    #[error("the list of managed users is empty; name at least one user or select by tag")]
    NoUsers,
    /// A tag selector had an empty key.
    #[error("the tag key that selects managed users is empty")]
    EmptyTagKey,
}

impl PolicyError {
    /// The setting to change: the one the error is about, or for a contradiction the one the
    /// message asks to change.
    pub fn field(&self) -> PolicyField {
        match self {
            Self::Zero(field) | Self::TooLong(field) => *field,
            Self::MaxGraceBelowGrace { .. } => PolicyField::MaxGrace,
            Self::QuietAboveMaxGrace { .. } | Self::QuietBelowLag { .. } => {
                PolicyField::QuietPeriod
            }
            Self::PeriodTooShort { .. } => PolicyField::RotationPeriod,
            Self::NoUsers => PolicyField::Users,
            Self::EmptyTagKey => PolicyField::ManagedTag,
        }
    }
}

/// How and when keys are rotated. Build one with [`Policy::builder`]; it is valid by construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    rotation_period: Duration,
    grace: Duration,
    max_grace: Duration,
    recovery_window: Duration,
    quiet_period: Duration,
    last_used_lag: Duration,
    verify_timeout: Duration,
    schedule_interval: Duration,
    selection: Selection,
    exempt: BTreeSet<UserName>,
}

/// How long IAM may take to report a use of a key in `GetAccessKeyLastUsed`, by default. AWS
/// documents last-accessed information as eventually consistent, with recent activity
/// "usually" appearing within four hours (IAM User Guide, "Refining permissions in AWS using
/// last accessed information"); keyrot takes that as the lag unless told otherwise.
pub const DEFAULT_LAST_USED_LAG: Duration = Duration::from_secs(4 * 3600);

const DAY: Duration = Duration::from_secs(24 * 3600);
const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

impl Policy {
    /// A builder with the usual production values: rotate every 90 days, 7 days of grace (at
    /// most 14), a key counts as idle after 1 day without use, a 7-day recovery window,
    /// 5 minutes to verify, runs every hour, users tagged `keyrot:managed=true`.
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder {
            policy: Self {
                rotation_period: 90 * DAY,
                grace: 7 * DAY,
                max_grace: 14 * DAY,
                recovery_window: 7 * DAY,
                quiet_period: DAY,
                last_used_lag: DEFAULT_LAST_USED_LAG,
                verify_timeout: Duration::from_secs(300),
                schedule_interval: Duration::from_secs(3600),
                selection: Selection::default(),
                exempt: BTreeSet::new(),
            },
        }
    }

    /// A current key older than this is due for rotation.
    pub fn rotation_period(&self) -> Duration {
        self.rotation_period
    }

    /// How long a superseded key stays active at least.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// After this long a superseded key is deactivated even if still in use, with an alert.
    pub fn max_grace(&self) -> Duration {
        self.max_grace
    }

    /// How long a deactivated key is kept (and can be rolled back to) before deletion.
    pub fn recovery_window(&self) -> Duration {
        self.recovery_window
    }

    /// A superseded key counts as no longer in use once IAM answers that it was never used or
    /// last used at least this long ago. Consumers that refetch the key keep using the old one
    /// briefly after a rotation; this is how long keyrot waits for them to have moved. It
    /// should exceed IAM's last-used reporting lag (hours).
    pub fn quiet_period(&self) -> Duration {
        self.quiet_period
    }

    /// How long IAM may take to report a use: a last-used answer proves nothing about the last
    /// `last_used_lag` before it. Zero only for an emulator or the demo, whose answers are
    /// immediate.
    pub fn last_used_lag(&self) -> Duration {
        self.last_used_lag
    }

    /// How long a new key may take to authenticate before keyrot gives up on it.
    pub fn verify_timeout(&self) -> Duration {
        self.verify_timeout
    }

    /// How often the rotation runs; used for warnings ahead of action.
    pub fn schedule_interval(&self) -> Duration {
        self.schedule_interval
    }

    /// Which users are managed.
    pub fn selection(&self) -> &Selection {
        &self.selection
    }

    /// Users never touched, whatever the selection says.
    pub fn exempt(&self) -> &BTreeSet<UserName> {
        &self.exempt
    }

    /// Whether `user` is exempt.
    pub fn is_exempt(&self, user: &UserName) -> bool {
        self.exempt.contains(user)
    }
}

/// Builds a [`Policy`]; [`PolicyBuilder::build`] checks that it can work.
#[derive(Debug, Clone)]
#[must_use]
pub struct PolicyBuilder {
    policy: Policy,
}

impl PolicyBuilder {
    /// Sets [`Policy::rotation_period`].
    pub fn rotation_period(mut self, period: Duration) -> Self {
        self.policy.rotation_period = period;
        self
    }

    /// Sets [`Policy::grace`].
    pub fn grace(mut self, grace: Duration) -> Self {
        self.policy.grace = grace;
        self
    }

    /// Sets [`Policy::max_grace`].
    pub fn max_grace(mut self, max_grace: Duration) -> Self {
        self.policy.max_grace = max_grace;
        self
    }

    /// Sets [`Policy::recovery_window`].
    pub fn recovery_window(mut self, window: Duration) -> Self {
        self.policy.recovery_window = window;
        self
    }

    /// Sets [`Policy::quiet_period`].
    pub fn quiet_period(mut self, quiet: Duration) -> Self {
        self.policy.quiet_period = quiet;
        self
    }

    /// Sets [`Policy::last_used_lag`].
    pub fn last_used_lag(mut self, lag: Duration) -> Self {
        self.policy.last_used_lag = lag;
        self
    }

    /// Sets [`Policy::verify_timeout`].
    pub fn verify_timeout(mut self, timeout: Duration) -> Self {
        self.policy.verify_timeout = timeout;
        self
    }

    /// Sets [`Policy::schedule_interval`].
    pub fn schedule_interval(mut self, interval: Duration) -> Self {
        self.policy.schedule_interval = interval;
        self
    }

    /// Sets [`Policy::selection`].
    pub fn selection(mut self, selection: Selection) -> Self {
        self.policy.selection = selection;
        self
    }

    /// Adds users to [`Policy::exempt`].
    pub fn exempt(mut self, users: impl IntoIterator<Item = UserName>) -> Self {
        self.policy.exempt.extend(users);
        self
    }

    /// Checks the policy and returns it.
    pub fn build(self) -> Result<Policy, PolicyError> {
        let p = self.policy;
        let periods = [
            (PolicyField::RotationPeriod, p.rotation_period),
            (PolicyField::Grace, p.grace),
            (PolicyField::MaxGrace, p.max_grace),
            (PolicyField::RecoveryWindow, p.recovery_window),
            (PolicyField::QuietPeriod, p.quiet_period),
            (PolicyField::VerifyTimeout, p.verify_timeout),
            (PolicyField::ScheduleInterval, p.schedule_interval),
        ];
        for (name, value) in periods {
            if value.is_zero() {
                return Err(PolicyError::Zero(name));
            }
            if value > CENTURY {
                return Err(PolicyError::TooLong(name));
            }
        }
        if p.max_grace < p.grace {
            return Err(PolicyError::MaxGraceBelowGrace {
                grace: p.grace,
                max_grace: p.max_grace,
            });
        }
        if p.last_used_lag > CENTURY {
            return Err(PolicyError::TooLong(PolicyField::LastUsedLag));
        }
        if p.quiet_period < p.last_used_lag {
            return Err(PolicyError::QuietBelowLag {
                quiet_period: p.quiet_period,
                last_used_lag: p.last_used_lag,
            });
        }
        if p.quiet_period > p.max_grace {
            return Err(PolicyError::QuietAboveMaxGrace {
                quiet_period: p.quiet_period,
                max_grace: p.max_grace,
            });
        }
        let needed = p.verify_timeout + p.max_grace + p.recovery_window;
        if p.rotation_period < needed {
            return Err(PolicyError::PeriodTooShort {
                rotation_period: p.rotation_period,
                needed,
            });
        }
        match &p.selection {
            Selection::Listed(users) if users.is_empty() => return Err(PolicyError::NoUsers),
            Selection::Tagged { key, .. } if key.is_empty() => {
                return Err(PolicyError::EmptyTagKey);
            }
            _ => {}
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn defaults_are_valid() {
        let p = Policy::builder().build().unwrap();
        assert_eq!(p.rotation_period(), 90 * DAY);
        assert_eq!(p.grace(), 7 * DAY);
    }

    #[test]
    fn minutes_work_for_demos() {
        let p = Policy::builder()
            .rotation_period(10 * MIN)
            .grace(2 * MIN)
            .max_grace(3 * MIN)
            .recovery_window(2 * MIN)
            .quiet_period(MIN)
            .last_used_lag(Duration::ZERO)
            .verify_timeout(MIN)
            .schedule_interval(MIN)
            .build();
        assert!(p.is_ok(), "{p:?}");
    }

    #[test]
    fn rejects_policies_that_cannot_work() {
        let err = |b: PolicyBuilder| b.build().unwrap_err().to_string();
        assert_eq!(
            err(Policy::builder().grace(Duration::ZERO)),
            "grace must be longer than zero"
        );
        assert!(
            err(Policy::builder().grace(20 * DAY))
                .starts_with("max_grace (14d) must be at least grace (20d)")
        );
        assert!(
            err(Policy::builder().rotation_period(20 * DAY))
                .starts_with("rotation_period (20d) must be at least")
        );
        assert_eq!(
            err(Policy::builder().selection(Selection::Listed(BTreeSet::new()))),
            "the list of managed users is empty; name at least one user or select by tag"
        );
        assert_eq!(
            err(Policy::builder().selection(Selection::Tagged {
                key: String::new(),
                value: "x".into()
            })),
            "the tag key that selects managed users is empty"
        );
        assert_eq!(
            err(Policy::builder().quiet_period(15 * DAY)),
            "quiet_period (15d) must be at most max_grace (14d)"
        );
        assert_eq!(
            err(Policy::builder().quiet_period(3600 * std::time::Duration::from_secs(1))),
            "quiet_period (1h) must be at least last_used_lag (4h): IAM reports uses that \
             late"
        );
        assert_eq!(
            err(Policy::builder().rotation_period(CENTURY * 2)),
            "rotation_period is too long (more than 100 years)"
        );
    }
}
