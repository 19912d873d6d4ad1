//! Rotation settings as people write them (durations such as `90d`, user lists, a tag), read
//! from a TOML table or from environment variables, and turned into a checked [`Policy`].
//!
//! The Lambda functions read the environment, the `keyrot` command line reads a file, the
//! environment and its flags; both go through [`PolicySettings`], so a setting means the same
//! everywhere and a bad one is refused with the same message.
//!
//! | setting             | environment variable         | default               |
//! |---------------------|------------------------------|-----------------------|
//! | `rotation_period`   | `KEYROT_ROTATION_PERIOD`     | `90d`                 |
//! | `grace`             | `KEYROT_GRACE_PERIOD`        | `7d`                  |
//! | `max_grace`         | `KEYROT_MAX_GRACE_PERIOD`    | `14d`                 |
//! | `recovery_window`   | `KEYROT_RECOVERY_WINDOW`     | `7d`                  |
//! | `quiet_period`      | `KEYROT_QUIET_PERIOD`        | `1d`                  |
//! | `last_used_lag`     | `KEYROT_LAST_USED_LAG`       | `4h` (`0s` for moto)  |
//! | `verify_timeout`    | `KEYROT_VERIFY_TIMEOUT`      | `5m`                  |
//! | `schedule_interval` | `KEYROT_SCHEDULE_INTERVAL`   | `1h`                  |
//! | `managed_tag`       | `KEYROT_MANAGED_TAG`         | `keyrot:managed=true` |
//! | `users`             | `KEYROT_USERS` (commas)      | none: select by tag   |
//! | `exempt`            | `KEYROT_EXEMPT_USERS`        | none                  |
//!
//! ```
//! use keyrot_core::settings::PolicySettings;
//! use std::time::Duration;
//!
//! let env = [("KEYROT_ROTATION_PERIOD", "30d"), ("KEYROT_EXEMPT_USERS", "breakglass, root-ci")];
//! let settings = PolicySettings::from_env(|name| {
//!     env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
//! })?;
//! let policy = settings.policy()?;
//! assert_eq!(policy.rotation_period(), Duration::from_secs(30 * 24 * 3600));
//! assert_eq!(policy.exempt().len(), 2);
//! # Ok::<(), keyrot_core::settings::SettingsError>(())
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::model::{NameError, UserName};
use crate::policy::{Policy, PolicyError, Selection};

/// Reads a duration written as whole numbers with units, largest first: `90d`, `12h`,
/// `1h30m`, `45s`, `2w`. Units: `w`, `d`, `h`, `m`, `s`.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let err = || DurationError(text.to_owned());
    let text = text.trim();
    if text.is_empty() {
        return Err(err());
    }
    let mut total: u64 = 0;
    let mut rest = text;
    let mut last_unit = u64::MAX;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
        if digits == 0 {
            return Err(err());
        }
        let value: u64 = rest[..digits].parse().map_err(|_| err())?;
        let unit = rest[digits..].chars().next().ok_or_else(err)?;
        let seconds = match unit {
            'w' => 7 * 24 * 3600,
            'd' => 24 * 3600,
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(err()),
        };
        if seconds >= last_unit {
            return Err(err());
        }
        last_unit = seconds;
        total = value
            .checked_mul(seconds)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(err)?;
        rest = &rest[digits + unit.len_utf8()..];
    }
    Ok(Duration::from_secs(total))
}

/// Writes a duration the way [`parse_duration`] reads it, in whole seconds: `90d`, `1h30m`.
pub fn format_duration(duration: Duration) -> String {
    let mut secs = duration.as_secs();
    if secs == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in [('d', 24 * 3600), ('h', 3600), ('m', 60), ('s', 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

/// A duration [`parse_duration`] could not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a duration: write whole numbers with units, largest first, e.g. 90d, 12h, 1h30m, 45s"
)]
pub struct DurationError(String);

/// The rotation settings; every field is optional and falls back on [`Policy::builder`]'s
/// defaults. Deserializes from a TOML table (or any serde format) with the field names below;
/// unknown fields are refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    /// See [`Policy::rotation_period`].
    #[serde(default, deserialize_with = "duration")]
    pub rotation_period: Option<Duration>,
    /// See [`Policy::grace`].
    #[serde(default, deserialize_with = "duration")]
    pub grace: Option<Duration>,
    /// See [`Policy::max_grace`].
    #[serde(default, deserialize_with = "duration")]
    pub max_grace: Option<Duration>,
    /// See [`Policy::recovery_window`].
    #[serde(default, deserialize_with = "duration")]
    pub recovery_window: Option<Duration>,
    /// See [`Policy::quiet_period`].
    #[serde(default, deserialize_with = "duration")]
    pub quiet_period: Option<Duration>,
    /// See [`Policy::last_used_lag`].
    #[serde(default, deserialize_with = "duration")]
    pub last_used_lag: Option<Duration>,
    /// See [`Policy::verify_timeout`].
    #[serde(default, deserialize_with = "duration")]
    pub verify_timeout: Option<Duration>,
    /// See [`Policy::schedule_interval`].
    #[serde(default, deserialize_with = "duration")]
    pub schedule_interval: Option<Duration>,
    /// `key=value`: users carrying this IAM tag are managed (unless `users` is set).
    pub managed_tag: Option<String>,
    /// Exactly these users are managed, instead of selecting by tag.
    pub users: Option<Vec<String>>,
    /// Users never touched, even if selected.
    pub exempt: Option<Vec<String>>,
}

fn duration<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(de)?;
    parse_duration(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// A setting that could not be used; the message names the setting and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A duration did not parse.
    #[error("{setting}: {reason}")]
    Duration {
        /// The setting (or environment variable).
        setting: String,
        /// What is wrong.
        reason: DurationError,
    },
    /// The managed tag is not `key=value`.
    #[error("{setting}: {value:?} is not a tag: write key=value, e.g. keyrot:managed=true")]
    Tag {
        /// The setting (or environment variable).
        setting: String,
        /// The value given.
        value: String,
    },
    /// A user name is not a valid IAM user name.
    #[error("{setting}: {value:?} is not an IAM user name")]
    User {
        /// The setting (or environment variable).
        setting: String,
        /// The value given.
        value: String,
        /// Why not.
        source: NameError,
    },
    /// The settings do not make a valid policy.
    #[error("invalid rotation policy")]
    Policy(#[from] PolicyError),
}

/// The environment variable of each duration setting, in [`PolicySettings`] field order.
const DURATION_VARS: [&str; 8] = [
    "KEYROT_ROTATION_PERIOD",
    "KEYROT_GRACE_PERIOD",
    "KEYROT_MAX_GRACE_PERIOD",
    "KEYROT_RECOVERY_WINDOW",
    "KEYROT_QUIET_PERIOD",
    "KEYROT_LAST_USED_LAG",
    "KEYROT_VERIFY_TIMEOUT",
    "KEYROT_SCHEDULE_INTERVAL",
];

impl PolicySettings {
    /// Reads the `KEYROT_*` variables (see the module docs) through `lookup`, which is
    /// usually `|name| std::env::var(name).ok()`. Empty variables count as unset.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut durations = [None; DURATION_VARS.len()];
        for (slot, name) in durations.iter_mut().zip(DURATION_VARS) {
            if let Some(value) = get(name) {
                *slot = Some(
                    parse_duration(&value).map_err(|reason| SettingsError::Duration {
                        setting: name.to_owned(),
                        reason,
                    })?,
                );
            }
        }
        let list = |name: &str| {
            get(name).map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
        };
        let [
            rotation_period,
            grace,
            max_grace,
            recovery_window,
            quiet_period,
            last_used_lag,
            verify_timeout,
            schedule_interval,
        ] = durations;
        Ok(Self {
            rotation_period,
            grace,
            max_grace,
            recovery_window,
            quiet_period,
            last_used_lag,
            verify_timeout,
            schedule_interval,
            managed_tag: get("KEYROT_MANAGED_TAG"),
            users: list("KEYROT_USERS"),
            exempt: list("KEYROT_EXEMPT_USERS"),
        })
    }

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
            builder = builder.selection(Selection::Listed(users_of("users", users)?));
        } else if let Some(tag) = &self.managed_tag {
            let (key, value) = tag
                .split_once('=')
                .filter(|(k, _)| !k.trim().is_empty())
                .ok_or_else(|| SettingsError::Tag {
                    setting: "managed_tag".to_owned(),
                    value: tag.clone(),
                })?;
            builder = builder.selection(Selection::Tagged {
                key: key.trim().to_owned(),
                value: value.trim().to_owned(),
            });
        }
        if let Some(exempt) = &self.exempt {
            builder = builder.exempt(users_of("exempt", exempt)?);
        }
        Ok(builder.build()?)
    }
}

/// A variable lookup over fixed pairs, for [`PolicySettings::from_env`] and its kin when the
/// settings come from somewhere other than the process environment (a map, a test).
pub fn lookup_in(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

fn users_of(setting: &str, names: &[String]) -> Result<BTreeSet<UserName>, SettingsError> {
    names
        .iter()
        .map(|name| {
            UserName::new(name.as_str()).map_err(|source| SettingsError::User {
                setting: setting.to_owned(),
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

    #[test]
    fn durations_read_and_write() {
        for (text, secs) in [
            ("90d", 90 * DAY),
            ("2w", 14 * DAY),
            ("1h30m", 5400),
            ("45s", 45),
            (" 5m ", 300),
            ("1d12h", DAY + 12 * 3600),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        for secs in [1, 59, 60, 3600, 5400, DAY, 90 * DAY, DAY + 1] {
            let d = Duration::from_secs(secs);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{secs}");
        }
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
    }

    #[test]
    fn bad_durations_are_refused() {
        for text in [
            "",
            "d",
            "90",
            "7x",
            "1m1h",
            "1d1d",
            "-5m",
            "1.5h",
            "h5",
            "99999999999999999999d",
        ] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.to_string().contains("e.g. 90d"), "{text}: {err}");
        }
    }

    #[test]
    fn environment_sets_every_field() {
        let s = PolicySettings::from_env(lookup_in(&[
            ("KEYROT_ROTATION_PERIOD", "30d"),
            ("KEYROT_GRACE_PERIOD", "2d"),
            ("KEYROT_MAX_GRACE_PERIOD", "3d"),
            ("KEYROT_RECOVERY_WINDOW", "1d"),
            ("KEYROT_QUIET_PERIOD", "12h"),
            ("KEYROT_VERIFY_TIMEOUT", "2m"),
            ("KEYROT_SCHEDULE_INTERVAL", "15m"),
            ("KEYROT_MANAGED_TAG", "team=platform"),
            ("KEYROT_EXEMPT_USERS", "a, b,,"),
            ("KEYROT_USERS", ""),
        ]))
        .unwrap();
        let p = s.policy().unwrap();
        assert_eq!(p.rotation_period(), Duration::from_secs(30 * DAY));
        assert_eq!(p.grace(), Duration::from_secs(2 * DAY));
        assert_eq!(p.max_grace(), Duration::from_secs(3 * DAY));
        assert_eq!(p.recovery_window(), Duration::from_secs(DAY));
        assert_eq!(p.quiet_period(), Duration::from_secs(12 * 3600));
        assert_eq!(p.verify_timeout(), Duration::from_secs(120));
        assert_eq!(p.schedule_interval(), Duration::from_secs(900));
        assert_eq!(
            p.selection(),
            &Selection::Tagged {
                key: "team".into(),
                value: "platform".into()
            }
        );
        assert_eq!(p.exempt().len(), 2);
    }

    #[test]
    fn errors_name_the_setting() {
        let err =
            PolicySettings::from_env(lookup_in(&[("KEYROT_GRACE_PERIOD", "7 days")])).unwrap_err();
        assert!(
            err.to_string().starts_with("KEYROT_GRACE_PERIOD: "),
            "{err}"
        );

        let s = PolicySettings {
            managed_tag: Some("no-equals-sign".into()),
            ..PolicySettings::default()
        };
        assert!(
            s.policy()
                .unwrap_err()
                .to_string()
                .starts_with("managed_tag: ")
        );

        let s = PolicySettings {
            exempt: Some(vec!["../etc".into()]),
            ..PolicySettings::default()
        };
        assert!(s.policy().unwrap_err().to_string().starts_with("exempt: "));

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
