//! Rotation settings as people write them (durations, user lists, a tag), turned into a
//! checked [`Policy`].
//!
//! Where the settings come from (a file's `[policy]` table, `KEYROT_*` variables, flags) and
//! what each one is called there is keyrot-config's business, not the engine's: see its
//! setting table. Every error here names the [`PolicyField`] it is about, so that keyrot-config
//! can blame the setting as the user wrote it.
//!
//! ```
//! use keyrot_core::settings::PolicySettings;
//! use std::time::Duration;
//!
//! let settings = PolicySettings {
//!     rotation_period: Some(Duration::from_secs(30 * 24 * 3600)),
//!     exempt: Some(vec!["breakglass".into(), "root-ci".into()]),
//!     ..PolicySettings::default()
//! };
//! let policy = settings.policy()?;
//! assert_eq!(policy.rotation_period(), Duration::from_secs(30 * 24 * 3600));
//! assert_eq!(policy.exempt().len(), 2);
//! # Ok::<(), keyrot_core::settings::SettingsError>(())
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use crate::duration::format_duration;
use crate::model::{NameError, UserName};
use crate::policy::{Policy, PolicyError, PolicyField, Selection};

/// The rotation settings; every field is optional and falls back on [`Policy::builder`]'s
/// defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySettings {
    /// See [`Policy::rotation_period`].
    pub rotation_period: Option<Duration>,
    /// See [`Policy::grace`].
    pub grace: Option<Duration>,
    /// See [`Policy::max_grace`].
    pub max_grace: Option<Duration>,
    /// See [`Policy::recovery_window`].
    pub recovery_window: Option<Duration>,
    /// See [`Policy::quiet_period`].
    pub quiet_period: Option<Duration>,
    /// See [`Policy::last_used_lag`].
    pub last_used_lag: Option<Duration>,
    /// See [`Policy::verify_timeout`].
    pub verify_timeout: Option<Duration>,
    /// See [`Policy::schedule_interval`].
    pub schedule_interval: Option<Duration>,
    /// `key=value`: users carrying this IAM tag are managed (unless `users` is set).
    pub managed_tag: Option<String>,
    /// Exactly these users are managed, instead of selecting by tag.
    pub users: Option<Vec<String>>,
    /// Users never touched, even if selected.
    pub exempt: Option<Vec<String>>,
}

/// Policy settings that do not make a policy; the message names the setting and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// The managed tag is not `key=value`.
    #[error("{value:?} is not a tag: write key=value, e.g. keyrot:managed=true")]
    Tag {
        /// The value given.
        value: String,
    },
    /// A user name is not a valid IAM user name.
    #[error("{value:?} is not an IAM user name")]
    User {
        /// The list it is in: [`PolicyField::Users`] or [`PolicyField::Exempt`].
        field: PolicyField,
        /// The value given.
        value: String,
        /// Why not.
        #[source]
        source: NameError,
    },
    /// The settings do not make a valid policy.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

impl SettingsError {
    /// The setting to change.
    pub fn field(&self) -> PolicyField {
        match self {
            Self::Tag { .. } => PolicyField::ManagedTag,
            Self::User { field, .. } => *field,
            Self::Policy(e) => e.field(),
        }
    }
}

impl PolicySettings {
    /// These settings, with every field `other` sets taking its place.
    pub fn overlay(self, other: Self) -> Self {
        Self {
            rotation_period: other.rotation_period.or(self.rotation_period),
            grace: other.grace.or(self.grace),
            max_grace: other.max_grace.or(self.max_grace),
            recovery_window: other.recovery_window.or(self.recovery_window),
            quiet_period: other.quiet_period.or(self.quiet_period),
            last_used_lag: other.last_used_lag.or(self.last_used_lag),
            verify_timeout: other.verify_timeout.or(self.verify_timeout),
            schedule_interval: other.schedule_interval.or(self.schedule_interval),
            managed_tag: other.managed_tag.or(self.managed_tag),
            users: other.users.or(self.users),
            exempt: other.exempt.or(self.exempt),
        }
    }

    /// The checked policy.
    pub fn policy(&self) -> Result<Policy, SettingsError> {
        let mut builder = Policy::builder();
        if let Some(d) = self.rotation_period {
            builder = builder.rotation_period(d);
        }
        if let Some(d) = self.grace {
            builder = builder.grace(d);
        }
        if let Some(d) = self.max_grace {
            builder = builder.max_grace(d);
        }
        if let Some(d) = self.recovery_window {
            builder = builder.recovery_window(d);
        }
        if let Some(d) = self.quiet_period {
            builder = builder.quiet_period(d);
        }
        if let Some(d) = self.last_used_lag {
            builder = builder.last_used_lag(d);
        }
        if let Some(d) = self.verify_timeout {
            builder = builder.verify_timeout(d);
        }
        if let Some(d) = self.schedule_interval {
            builder = builder.schedule_interval(d);
        }
        if let Some(users) = &self.users {
            builder = builder.selection(Selection::Listed(users_of(PolicyField::Users, users)?));
        } else if let Some(tag) = &self.managed_tag {
            let (key, value) = tag
                .split_once('=')
                .filter(|(k, _)| !k.trim().is_empty())
                .ok_or_else(|| SettingsError::Tag { value: tag.clone() })?;
            builder = builder.selection(Selection::Tagged {
                key: key.trim().to_owned(),
                value: value.trim().to_owned(),
            });
        }
        if let Some(exempt) = &self.exempt {
            builder = builder.exempt(users_of(PolicyField::Exempt, exempt)?);
        }
        Ok(builder.build()?)
    }
}

fn users_of(field: PolicyField, names: &[String]) -> Result<BTreeSet<UserName>, SettingsError> {
    names
        .iter()
        .map(|name| {
            UserName::new(name.as_str()).map_err(|source| SettingsError::User {
                field,
                value: name.clone(),
                source,
            })
        })
        .collect()
}

/// A policy's settings, written back in [`PolicySettings`]' terms (for `keyrot status` and
/// the logs).
#[derive(Debug)]
pub struct Summary<'a>(pub &'a Policy);

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.0;
        write!(
            f,
            "rotate every {}, grace {} (at most {}), idle after {} (IAM's lag {}), recovery \
             window {}; {}",
            format_duration(p.rotation_period()),
            format_duration(p.grace()),
            format_duration(p.max_grace()),
            format_duration(p.quiet_period()),
            format_duration(p.last_used_lag()),
            format_duration(p.recovery_window()),
            p.selection(),
        )?;
        if !p.exempt().is_empty() {
            let names: Vec<&str> = p.exempt().iter().map(UserName::as_str).collect();
            write!(f, "; exempt: {}", names.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 24 * 3600;

    // (That a bad duration in a variable is refused by the variable's name is keyrot-config's
    // test now: the names live there.)
    #[test]
    fn errors_name_the_setting() {
        let s = PolicySettings {
            managed_tag: Some("no-equals-sign".into()),
            ..PolicySettings::default()
        };
        let err = s.policy().unwrap_err();
        assert_eq!(err.field(), PolicyField::ManagedTag);
        assert!(
            err.to_string()
                .starts_with("\"no-equals-sign\" is not a tag"),
            "{err}"
        );

        let s = PolicySettings {
            exempt: Some(vec!["../etc".into()]),
            ..PolicySettings::default()
        };
        let err = s.policy().unwrap_err();
        assert_eq!(err.field(), PolicyField::Exempt);
        assert_eq!(err.to_string(), "\"../etc\" is not an IAM user name");

        let s = PolicySettings {
            grace: Some(Duration::ZERO),
            ..PolicySettings::default()
        };
        assert_eq!(s.policy().unwrap_err().field(), PolicyField::Grace);
        let s = PolicySettings {
            grace: Some(Duration::from_secs(20 * DAY)),
            ..PolicySettings::default()
        };
        let err = s.policy().unwrap_err();
        assert_eq!(err.field(), PolicyField::MaxGrace);
        assert_eq!(
            err.to_string(),
            "max_grace (14d) must be at least grace (20d)"
        );

        let s = PolicySettings {
            rotation_period: Some(Duration::from_secs(DAY)),
            ..PolicySettings::default()
        };
        assert!(matches!(
            s.policy(),
            Err(SettingsError::Policy(PolicyError::PeriodTooShort { .. }))
        ));
    }

    #[test]
    fn a_listed_selection_wins_over_the_tag() {
        let s = PolicySettings {
            users: Some(vec!["ci".into()]),
            managed_tag: Some("a=b".into()),
            ..PolicySettings::default()
        };
        assert!(matches!(s.policy().unwrap().selection(), Selection::Listed(u) if u.len() == 1));
    }

    #[test]
    fn later_layers_win() {
        let file = PolicySettings {
            grace: Some(Duration::from_secs(DAY)),
            quiet_period: Some(Duration::from_secs(60)),
            ..PolicySettings::default()
        };
        let flags = PolicySettings {
            grace: Some(Duration::from_secs(2 * DAY)),
            ..PolicySettings::default()
        };
        let merged = file.overlay(flags);
        assert_eq!(merged.grace, Some(Duration::from_secs(2 * DAY)));
        assert_eq!(merged.quiet_period, Some(Duration::from_secs(60)));
    }
}
