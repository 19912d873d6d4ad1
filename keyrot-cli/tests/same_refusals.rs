//! The acceptance test of the one configuration model: the same bad value, given to the
//! command line's configuration and to the Lambda functions', is refused with the same
//! message, for every setting they share; written in the file instead, it is refused for the
//! same reason under the file's name for it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: helpers panic on what cannot happen

use std::path::PathBuf;

use keyrot_cli::config::{Config, Flags};
use keyrot_config::{ConfigError, Setting, lookup_in};
use keyrot_lambda::config::{ApiFunctionConfig, RotateConfig};

/// Which Lambda function reads a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reader {
    Rotator,
    Api,
    Both,
}

/// (setting, bad value, other variables it needs, which function reads it, the variable the
/// refusal names if another than the setting's own).
type Case = (
    Setting,
    &'static str,
    &'static [(&'static str, &'static str)],
    Reader,
    Option<&'static str>,
);

const ALERT_TO: &[(&str, &str)] = &[("KEYROT_ALERT_TO", "ops@example.com")];
const ALERT_FROM: &[(&str, &str)] = &[("KEYROT_ALERT_FROM", "keyrot@example.com")];

const CASES: &[Case] = &[
    (
        Setting::AlertFrom,
        "not-an-address",
        ALERT_TO,
        Reader::Rotator,
        None,
    ),
    (
        Setting::AlertFrom,
        "k@example",
        ALERT_TO,
        Reader::Rotator,
        None,
    ),
    (
        Setting::AlertTo,
        "ops@.example.com",
        ALERT_FROM,
        Reader::Rotator,
        None,
    ),
    (
        Setting::AlertTo,
        "a@b.c, @b.c",
        ALERT_FROM,
        Reader::Rotator,
        None,
    ),
    (Setting::AlertTo, "ops", ALERT_FROM, Reader::Rotator, None),
    (
        Setting::AlertRepeatAfter,
        "1 day",
        &[],
        Reader::Rotator,
        None,
    ),
    (
        Setting::AlertWebhookSecret,
        "keyrot/alerts/slack webhook",
        &[],
        Reader::Rotator,
        None,
    ),
    (
        Setting::KmsKeyId,
        "alias/my key",
        &[],
        Reader::Rotator,
        None,
    ),
    (
        Setting::SecretPrefix,
        "keyrot users/",
        &[],
        Reader::Both,
        None,
    ),
    (Setting::SecretPrefix, "a*", &[], Reader::Both, None),
    (Setting::LeaseTable, "my leases", &[], Reader::Rotator, None),
    (
        Setting::LeaseTable,
        "arn:aws:s3:::bucket",
        &[],
        Reader::Rotator,
        None,
    ),
    (Setting::TokenTtl, "two minutes", &[], Reader::Api, None),
    (Setting::TokenTtl, "2h", &[], Reader::Api, None),
    (Setting::TokenTtl, "0s", &[], Reader::Api, None),
    (
        Setting::TokenIssuer,
        "bad\u{7}issuer",
        &[],
        Reader::Api,
        None,
    ),
    (Setting::TokenAudience, "a\u{0}b", &[], Reader::Api, None),
    (Setting::KeyCacheTtl, "30", &[], Reader::Api, None),
    (Setting::KeyCacheTtl, "7d", &[], Reader::Api, None),
    (
        Setting::SigningKeySecret,
        "bad name",
        &[],
        Reader::Api,
        None,
    ),
    (Setting::ClientsSecret, "clients?", &[], Reader::Api, None),
    (Setting::RetryMode, "eager", &[], Reader::Rotator, None),
    (Setting::MaxAttempts, "0", &[], Reader::Rotator, None),
    (Setting::MaxAttempts, "21", &[], Reader::Rotator, None),
    (Setting::MaxAttempts, "many", &[], Reader::Rotator, None),
    (Setting::ConnectTimeout, "3 s", &[], Reader::Rotator, None),
    (
        Setting::OperationTimeout,
        "1 minute",
        &[],
        Reader::Rotator,
        None,
    ),
    (Setting::RotationPeriod, "90 days", &[], Reader::Both, None),
    (Setting::RotationPeriod, "20d", &[], Reader::Both, None),
    (Setting::Grace, "0s", &[], Reader::Both, None),
    (Setting::Grace, "nope", &[], Reader::Both, None),
    (
        Setting::Grace,
        "20d",
        &[],
        Reader::Both,
        Some("KEYROT_MAX_GRACE_PERIOD"),
    ),
    (Setting::MaxGrace, "x", &[], Reader::Both, None),
    (Setting::MaxGrace, "1d", &[], Reader::Both, None),
    (Setting::RecoveryWindow, "7", &[], Reader::Both, None),
    (Setting::QuietPeriod, "30d", &[], Reader::Both, None),
    (Setting::QuietPeriod, "1h", &[], Reader::Both, None),
    (Setting::LastUsedLag, "4 hours", &[], Reader::Both, None),
    (
        Setting::LastUsedLag,
        "2d",
        &[],
        Reader::Both,
        Some("KEYROT_QUIET_PERIOD"),
    ),
    (Setting::VerifyTimeout, "-1m", &[], Reader::Both, None),
    (Setting::ScheduleInterval, "1h1h", &[], Reader::Both, None),
    (Setting::ScheduleInterval, "0s", &[], Reader::Both, None),
    (
        Setting::ManagedTag,
        "keyrot-managed",
        &[],
        Reader::Both,
        None,
    ),
    (Setting::ManagedTag, "=true", &[], Reader::Both, None),
    (Setting::Users, "ci,../etc", &[], Reader::Both, None),
    (Setting::ExemptUsers, "a b", &[], Reader::Both, None),
    (
        Setting::DeliveryUsers,
        "ci: x=ftp:somewhere",
        &[],
        Reader::Rotator,
        None,
    ),
    (
        Setting::DeliveryUsers,
        "ci: gh=gh-repo:acme/app:AWS",
        &[],
        Reader::Rotator,
        None,
    ),
    (Setting::DeliveryUserTags, "yes", &[], Reader::Rotator, None),
    (
        Setting::GitHubCredentialSecret,
        "github token",
        &[],
        Reader::Rotator,
        None,
    ),
    (
        Setting::GitHubApiUrl,
        "http://github.example.com",
        &[],
        Reader::Rotator,
        None,
    ),
];

/// Every setting both the command line and a Lambda function read.
const SHARED: [Setting; 31] = [
    Setting::AlertFrom,
    Setting::AlertTo,
    Setting::AlertRepeatAfter,
    Setting::KmsKeyId,
    Setting::SecretPrefix,
    Setting::LeaseTable,
    Setting::TokenTtl,
    Setting::TokenIssuer,
    Setting::TokenAudience,
    Setting::KeyCacheTtl,
    Setting::SigningKeySecret,
    Setting::ClientsSecret,
    Setting::RetryMode,
    Setting::MaxAttempts,
    Setting::ConnectTimeout,
    Setting::OperationTimeout,
    Setting::RotationPeriod,
    Setting::Grace,
    Setting::MaxGrace,
    Setting::RecoveryWindow,
    Setting::QuietPeriod,
    Setting::LastUsedLag,
    Setting::VerifyTimeout,
    Setting::ScheduleInterval,
    Setting::ManagedTag,
    Setting::Users,
    Setting::ExemptUsers,
    Setting::DeliveryUsers,
    Setting::DeliveryUserTags,
    Setting::GitHubCredentialSecret,
    Setting::GitHubApiUrl,
];

fn var(setting: Setting) -> &'static str {
    setting.spelling().var.unwrap()
}

/// The command line's refusal (on the AWS backend, whose policy defaults are the functions').
fn cli(vars: &[(&str, &str)], config: Option<PathBuf>) -> Result<Config, ConfigError> {
    let flags = Flags {
        backend: Some("aws".into()),
        config,
        ..Flags::default()
    };
    Config::load(&flags, &lookup_in(vars))
}

fn rotator(vars: &[(&str, &str)]) -> Result<RotateConfig, ConfigError> {
    let mut vars = vars.to_vec();
    vars.push(("KEYROT_LEASE_TABLE", "keyrot-leases"));
    RotateConfig::from_env(lookup_in(&vars))
}

fn api(vars: &[(&str, &str)]) -> Result<ApiFunctionConfig, ConfigError> {
    let mut vars = vars.to_vec();
    vars.push(("KEYROT_SIGNING_KEY_SECRET", "keyrot/api/signing-key"));
    vars.push(("KEYROT_CLIENTS_SECRET", "keyrot/api/clients"));
    ApiFunctionConfig::from_env(lookup_in(&vars))
}

/// A configuration file setting `setting` to `value` (one per call).
fn file_with(setting: Setting, value: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let (section, key) = setting.spelling().file.unwrap();
    let text = format!("[{}]\n{key} = {}\n", section.unwrap(), toml_string(value));
    let dir = std::env::temp_dir().join(format!("keyrot-same-refusals-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!("{n}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// `value` as a TOML basic string.
fn toml_string(value: &str) -> String {
    let mut out = String::from('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[test]
fn the_same_bad_value_is_refused_alike_by_the_command_line_and_the_functions() {
    for &(setting, value, others, reader, blamed) in CASES {
        let name = var(setting);
        let mut vars = vec![(name, value)];
        vars.extend_from_slice(others);
        let expected = blamed.unwrap_or(name);

        let cli = cli(&vars, None).expect_err(name).chain();
        assert!(
            cli.starts_with(&format!("{expected}: ")),
            "{name}={value:?}: {cli}"
        );
        if matches!(reader, Reader::Rotator | Reader::Both) {
            let lambda = rotator(&vars).expect_err(name).chain();
            assert_eq!(
                cli, lambda,
                "{name}={value:?}: the command line and the rotator"
            );
        }
        if matches!(reader, Reader::Api | Reader::Both) {
            let lambda = api(&vars).expect_err(name).chain();
            assert_eq!(
                cli, lambda,
                "{name}={value:?}: the command line and the api"
            );
        }

        // In the file, the same value is refused for the same reason, named as the file's key.
        if blamed.is_none() {
            let path = file_with(setting, value);
            let from_file = self::cli(others, Some(path.clone()))
                .expect_err(name)
                .chain();
            let (section, key) = setting.spelling().file.unwrap();
            let written = format!("[{}] {key} in {}", section.unwrap(), path.display());
            assert_eq!(
                from_file.strip_prefix(&written),
                cli.strip_prefix(name),
                "{name}={value:?} in the file"
            );
        }
    }
}

#[test]
fn every_shared_setting_has_a_case() {
    for setting in SHARED {
        assert!(
            CASES.iter().any(|case| case.0 == setting),
            "{setting:?} has no case"
        );
    }
}

#[test]
fn a_lone_alert_setting_is_refused_alike() {
    for (set, missing) in [
        (Setting::AlertFrom, Setting::AlertTo),
        (Setting::AlertTo, Setting::AlertFrom),
    ] {
        let vars = [(var(set), "keyrot@example.com")];
        let cli = cli(&vars, None).unwrap_err().chain();
        assert_eq!(
            cli,
            format!("{} is required when {} is set", var(missing), var(set))
        );
        assert_eq!(rotator(&vars).unwrap_err().chain(), cli);
    }
}
