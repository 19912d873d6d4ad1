//! The functions' configuration, read from environment variables through a lookup closure (so
//! tests never touch the process environment), checked in full at cold start.
//!
//! Both functions read:
//!
//! | variable                   | meaning                                         | default         |
//! |----------------------------|-------------------------------------------------|-----------------|
//! | `KEYROT_SECRET_PREFIX`     | per-user secrets are `<prefix><UserName>`       | `keyrot/users/` |
//! | `KEYROT_METRICS_NAMESPACE` | CloudWatch namespace of the EMF metrics         | `keyrot`        |
//! | the policy's variables     | see [`keyrot_core::settings`]                   | its defaults    |
//!
//! The rotator (`keyrot-rotate`) also reads `KEYROT_LEASE_TABLE` (required: the DynamoDB
//! table of the runs' claims on users, which keeps it apart from `keyrot rotate` and `keyrot
//! serve`; the template passes its `LeaseTable`), `KEYROT_KMS_KEY_ID` (a customer KMS key for new
//! secrets), `KEYROT_ALERT_FROM` (the SES sender) and `KEYROT_ALERT_TO` (administrators,
//! commas); without both alert variables, alerts are only logged.
//!
//! The API (`keyrot-api`) also reads `KEYROT_SIGNING_KEY_SECRET` and `KEYROT_CLIENTS_SECRET`
//! (required: the secrets holding the JWT signing keys and the client registry),
//! `KEYROT_TOKEN_ISSUER` (default `keyrot`), `KEYROT_TOKEN_AUDIENCE` (default `keyrot-api`),
//! `KEYROT_TOKEN_TTL` (default `2m`, at most `1h`) and `KEYROT_KEY_CACHE_TTL` (default `30s`,
//! `0s` turns the cache off; it must be shorter than the policy's grace period, which the API
//! reads from `KEYROT_GRACE_PERIOD` like the rotator) and `KEYROT_API_SECRETS_TTL` (default
//! `60s`: how long a warm function answers with the signing keys and client registry it read
//! before it reads them again; `0s` reads them for every request).
//!
//! Empty variables count as unset, as in [`PolicySettings::from_env`]. Every refusal is a
//! [`ConfigError`] whose message starts with the variable's name.

use std::fmt;
use std::time::Duration;

use keyrot_aws::{AwsSettings, BackendSettings, DEFAULT_PREFIX, RetryMode, check_table_name};
use keyrot_core::settings::{PolicySettings, SettingsError, parse_duration};
use keyrot_core::token::{
    DEFAULT_LIFETIME, SigningKey, TokenConfig, TokenConfigError, TokenPolicy,
};
use keyrot_core::{Policy, PolicyError};

/// The default CloudWatch namespace of the metrics (the template's `MetricsNamespace` default).
pub const DEFAULT_NAMESPACE: &str = "keyrot";
/// The default `iss` of the API's tokens.
pub const DEFAULT_ISSUER: &str = "keyrot";
/// The default `aud` of the API's tokens.
pub const DEFAULT_AUDIENCE: &str = "keyrot-api";
/// The default time the API serves a fetched key from its cache.
pub const DEFAULT_KEY_CACHE_TTL: Duration = keyrot_api::DEFAULT_CACHE_TTL;
/// The default time the API answers with the signing keys and client registry it read before
/// it reads them again.
pub const DEFAULT_API_SECRETS_TTL: Duration = Duration::from_secs(60);

/// A variable the functions could not use. The message names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is unset or empty.
    #[error("{0} is required but not set")]
    Missing(&'static str),
    /// A variable's value cannot be used.
    #[error("{var}: {reason}")]
    Invalid {
        /// The variable (or variables, for a policy whose settings contradict each other).
        var: String,
        /// What is wrong, and how to write it.
        reason: String,
    },
}

impl ConfigError {
    fn invalid(var: impl Into<String>, reason: impl fmt::Display) -> Self {
        Self::Invalid {
            var: var.into(),
            reason: reason.to_string(),
        }
    }

    /// The variable the error is about.
    pub fn var(&self) -> &str {
        match self {
            Self::Missing(var) => var,
            Self::Invalid { var, .. } => var,
        }
    }
}

/// The environment, seen through a lookup closure; empty values count as unset.
struct Env<F>(F);

impl<F: Fn(&str) -> Option<String>> Env<F> {
    fn get(&self, var: &str) -> Option<String> {
        (self.0)(var).filter(|v| !v.trim().is_empty())
    }

    fn get_or(&self, var: &str, default: &str) -> String {
        self.get(var).unwrap_or_else(|| default.to_owned())
    }

    fn required(&self, var: &'static str) -> Result<String, ConfigError> {
        self.get(var).ok_or(ConfigError::Missing(var))
    }

    fn duration(&self, var: &'static str, default: Duration) -> Result<Duration, ConfigError> {
        match self.get(var) {
            Some(text) => parse_duration(&text).map_err(|e| ConfigError::invalid(var, e)),
            None => Ok(default),
        }
    }
}

/// What the rotator function runs with.
#[derive(Debug, Clone)]
pub struct RotateConfig {
    /// How the rotator reaches AWS: retries and timeouts from `KEYROT_AWS_RETRY_MODE`
    /// (`standard` or `adaptive`), `KEYROT_AWS_MAX_ATTEMPTS`, `KEYROT_AWS_CONNECT_TIMEOUT` and
    /// `KEYROT_AWS_OPERATION_TIMEOUT`; the rest from aws-config's standard chain.
    pub aws: AwsSettings,
    /// Where secrets go and alerts are sent.
    pub backend: BackendSettings,
    /// The rotation policy.
    pub policy: Policy,
    /// The metrics' CloudWatch namespace.
    pub metrics_namespace: String,
}

impl RotateConfig {
    /// Reads and checks the rotator's variables through `lookup` (usually
    /// `|name| std::env::var(name).ok()`).
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(lookup);
        let alert_from = env.get("KEYROT_ALERT_FROM");
        if let Some(from) = &alert_from {
            check_address("KEYROT_ALERT_FROM", from)?;
        }
        let alert_to: Vec<String> = env
            .get("KEYROT_ALERT_TO")
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        for to in &alert_to {
            check_address("KEYROT_ALERT_TO", to)?;
        }
        match (&alert_from, alert_to.is_empty()) {
            (None, false) => return Err(ConfigError::Missing("KEYROT_ALERT_FROM")),
            (Some(_), true) => return Err(ConfigError::Missing("KEYROT_ALERT_TO")),
            _ => {}
        }
        let lease_table = env.required("KEYROT_LEASE_TABLE")?;
        check_table_name(&lease_table)
            .map_err(|reason| ConfigError::invalid("KEYROT_LEASE_TABLE", reason))?;
        let kms_key_id = env.get("KEYROT_KMS_KEY_ID");
        if let Some(key) = &kms_key_id
            && (key.len() > 2048 || key.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(ConfigError::invalid(
                "KEYROT_KMS_KEY_ID",
                "write a KMS key id, ARN or alias, without spaces",
            ));
        }
        let retry_mode = env
            .get("KEYROT_AWS_RETRY_MODE")
            .map(|text| {
                text.parse::<RetryMode>().map_err(|_| {
                    ConfigError::invalid("KEYROT_AWS_RETRY_MODE", "write standard or adaptive")
                })
            })
            .transpose()?;
        let max_attempts = match env.get("KEYROT_AWS_MAX_ATTEMPTS") {
            None => None,
            Some(text) => match text.trim().parse::<u32>() {
                Ok(n @ 1..=20) => Some(n),
                _ => {
                    return Err(ConfigError::invalid(
                        "KEYROT_AWS_MAX_ATTEMPTS",
                        "write a whole number of attempts from 1 to 20 (the first counts)",
                    ));
                }
            },
        };
        let optional = |var: &'static str| -> Result<Option<Duration>, ConfigError> {
            env.get(var)
                .map(|text| parse_duration(&text).map_err(|e| ConfigError::invalid(var, e)))
                .transpose()
        };
        let aws = AwsSettings {
            retry_mode,
            max_attempts,
            connect_timeout: optional("KEYROT_AWS_CONNECT_TIMEOUT")?,
            operation_timeout: optional("KEYROT_AWS_OPERATION_TIMEOUT")?,
            ..AwsSettings::default()
        };
        Ok(Self {
            aws,
            backend: BackendSettings {
                secret_prefix: secret_prefix(&env)?,
                lease_table,
                kms_key_id,
                alert_from,
                alert_to,
                alert_repeat_after: env.duration(
                    "KEYROT_ALERT_REPEAT_AFTER",
                    BackendSettings::default().alert_repeat_after,
                )?,
            },
            policy: policy(&env)?,
            metrics_namespace: namespace(&env)?,
        })
    }
}

/// What the API function runs with, besides the secrets it loads at cold start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiFunctionConfig {
    /// Per-user secrets are `<prefix><UserName>`.
    pub secret_prefix: String,
    /// The secret holding the JWT signing keys (name or ARN).
    pub signing_key_secret: String,
    /// The secret holding the client registry (name or ARN).
    pub clients_secret: String,
    /// The tokens' `iss`.
    pub issuer: String,
    /// The tokens' `aud`.
    pub audience: String,
    /// How long issued tokens live.
    pub token_ttl: Duration,
    /// How long a fetched key is served from the cache; shorter than the rotation's grace
    /// period.
    pub key_cache_ttl: Duration,
    /// How long the signing keys and the client registry are used before they are read again
    /// (so an added, removed or narrowed client counts in warm functions too).
    pub api_secrets_ttl: Duration,
    /// The rotation policy the rotator runs with; the API needs its grace period (a superseded
    /// key stays active at least that long).
    pub rotation: Policy,
    /// The metrics' CloudWatch namespace.
    pub metrics_namespace: String,
}

impl ApiFunctionConfig {
    /// Reads and checks the API's variables through `lookup`.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(lookup);
        let config = Self {
            secret_prefix: secret_prefix(&env)?,
            signing_key_secret: secret_id(&env, "KEYROT_SIGNING_KEY_SECRET")?,
            clients_secret: secret_id(&env, "KEYROT_CLIENTS_SECRET")?,
            issuer: env.get_or("KEYROT_TOKEN_ISSUER", DEFAULT_ISSUER),
            audience: env.get_or("KEYROT_TOKEN_AUDIENCE", DEFAULT_AUDIENCE),
            token_ttl: env.duration("KEYROT_TOKEN_TTL", DEFAULT_LIFETIME)?,
            key_cache_ttl: env.duration("KEYROT_KEY_CACHE_TTL", DEFAULT_KEY_CACHE_TTL)?,
            api_secrets_ttl: env.duration("KEYROT_API_SECRETS_TTL", DEFAULT_API_SECRETS_TTL)?,
            rotation: policy(&env)?,
            metrics_namespace: namespace(&env)?,
        };
        // The token settings are checked by the rules the API will apply, with a stand-in key,
        // so a bad value is refused here, by name, before any secret is read.
        let stand_in = SigningKey::new("config-check", vec![0; 32])
            .map_err(|e| ConfigError::invalid("KEYROT_SIGNING_KEY_SECRET", e))?;
        config.token_policy(stand_in, Vec::new())?;
        if config.key_cache_ttl >= config.rotation.grace() {
            return Err(ConfigError::invalid(
                "KEYROT_KEY_CACHE_TTL",
                format_args!(
                    "{} must be shorter than the grace period ({}, KEYROT_GRACE_PERIOD), or the \
                     api could serve a key the rotator has deactivated",
                    keyrot_core::settings::format_duration(config.key_cache_ttl),
                    keyrot_core::settings::format_duration(config.rotation.grace()),
                ),
            ));
        }
        Ok(config)
    }

    /// The token policy these settings describe, with the signing keys loaded at cold start.
    pub fn token_policy(
        &self,
        signing_key: SigningKey,
        retired_keys: Vec<SigningKey>,
    ) -> Result<TokenPolicy, ConfigError> {
        let mut config = TokenConfig::new(&self.issuer, &self.audience, signing_key);
        config.lifetime = self.token_ttl;
        config.retired_keys = retired_keys;
        TokenPolicy::new(config).map_err(|e| {
            let var = match &e {
                TokenConfigError::InvalidIssuer => "KEYROT_TOKEN_ISSUER",
                TokenConfigError::InvalidAudience => "KEYROT_TOKEN_AUDIENCE",
                TokenConfigError::InvalidLifetime(_) => "KEYROT_TOKEN_TTL",
                _ => "KEYROT_SIGNING_KEY_SECRET",
            };
            ConfigError::invalid(var, e)
        })
    }
}

fn secret_prefix<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<String, ConfigError> {
    let prefix = env.get_or("KEYROT_SECRET_PREFIX", DEFAULT_PREFIX);
    // Secrets Manager's name characters; a user name (up to 64) must still fit in 512.
    if prefix.len() > 512 - 64 || !prefix.chars().all(is_secret_name_char) {
        return Err(ConfigError::invalid(
            "KEYROT_SECRET_PREFIX",
            format_args!(
                "{prefix:?} is not a secret name prefix: use up to 448 of A-Z a-z 0-9 / _ + = . @ -"
            ),
        ));
    }
    Ok(prefix)
}

fn is_secret_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "/_+=.@-".contains(c)
}

fn secret_id<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
    var: &'static str,
) -> Result<String, ConfigError> {
    let id = env.required(var)?;
    // A name (the characters above) or an ARN (which adds ':').
    if id.len() > 2048 || !id.chars().all(|c| is_secret_name_char(c) || c == ':') {
        return Err(ConfigError::invalid(
            var,
            format_args!("{id:?} is not a secret name or ARN"),
        ));
    }
    Ok(id)
}

fn namespace<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<String, ConfigError> {
    let namespace = env.get_or("KEYROT_METRICS_NAMESPACE", DEFAULT_NAMESPACE);
    let allowed = |c: char| c.is_ascii_alphanumeric() || ".-_/#: ".contains(c);
    if namespace.len() > 255
        || !namespace.chars().all(allowed)
        || namespace.starts_with(':')
        || namespace.starts_with("AWS/")
    {
        return Err(ConfigError::invalid(
            "KEYROT_METRICS_NAMESPACE",
            format_args!(
                "{namespace:?} is not a CloudWatch namespace: up to 255 of A-Z a-z 0-9 . - _ / # : \
                 and spaces, not starting with AWS/"
            ),
        ));
    }
    Ok(namespace)
}

fn check_address(var: &'static str, address: &str) -> Result<(), ConfigError> {
    let well_formed = address.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.contains('@')
    }) && !address.chars().any(|c| c.is_whitespace() || c.is_control())
        && address.len() <= 320;
    if well_formed {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            var,
            format_args!("{address:?} is not an email address"),
        ))
    }
}

/// The rotation policy from the `KEYROT_*` policy variables, each error named by its variable.
fn policy<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Policy, ConfigError> {
    PolicySettings::from_env(|name| env.get(name))
        .and_then(|settings| settings.policy())
        .map_err(|e| match e {
            SettingsError::Duration { setting, reason } => ConfigError::invalid(setting, reason),
            SettingsError::Tag { value, .. } => ConfigError::invalid(
                "KEYROT_MANAGED_TAG",
                format_args!("{value:?} is not a tag: write key=value, e.g. keyrot:managed=true"),
            ),
            SettingsError::User {
                setting,
                value,
                source,
            } => ConfigError::invalid(
                if setting == "exempt" {
                    "KEYROT_EXEMPT_USERS"
                } else {
                    "KEYROT_USERS"
                },
                format_args!("{value:?} is not an IAM user name: {source}"),
            ),
            SettingsError::Policy(e) => ConfigError::invalid(policy_var(&e), e),
        })
}

/// The variable to blame for a policy the settings do not make.
fn policy_var(error: &PolicyError) -> &'static str {
    let of_setting = |setting: &str| match setting {
        "rotation_period" => "KEYROT_ROTATION_PERIOD",
        "grace" => "KEYROT_GRACE_PERIOD",
        "max_grace" => "KEYROT_MAX_GRACE_PERIOD",
        "recovery_window" => "KEYROT_RECOVERY_WINDOW",
        "quiet_period" => "KEYROT_QUIET_PERIOD",
        "last_used_lag" => "KEYROT_LAST_USED_LAG",
        "verify_timeout" => "KEYROT_VERIFY_TIMEOUT",
        _ => "KEYROT_SCHEDULE_INTERVAL",
    };
    match error {
        PolicyError::Zero(setting) | PolicyError::TooLong(setting) => of_setting(setting),
        PolicyError::MaxGraceBelowGrace { .. } => "KEYROT_MAX_GRACE_PERIOD",
        PolicyError::QuietAboveMaxGrace { .. } | PolicyError::QuietBelowLag { .. } => {
            "KEYROT_QUIET_PERIOD"
        }
        PolicyError::NoUsers => "KEYROT_USERS",
        PolicyError::EmptyTagKey => "KEYROT_MANAGED_TAG",
        // A rotation period too short for the other periods, or anything the policy adds later.
        _ => "KEYROT_ROTATION_PERIOD",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use keyrot_core::settings::lookup_in as env;

    const API: [(&str, &str); 2] = [
        ("KEYROT_SIGNING_KEY_SECRET", "keyrot/api/signing-key"),
        ("KEYROT_CLIENTS_SECRET", "keyrot/api/clients"),
    ];

    /// The rotator's variables: `extra`, and the lease table the template always passes.
    fn rotate_with(extra: &[(&str, &str)]) -> Result<RotateConfig, ConfigError> {
        let mut vars = extra.to_vec();
        vars.push(("KEYROT_LEASE_TABLE", keyrot_aws::DEFAULT_LEASE_TABLE));
        RotateConfig::from_env(env(&vars))
    }

    fn api_with(extra: &[(&str, &str)]) -> Result<ApiFunctionConfig, ConfigError> {
        // The first match wins: the extra variables go first.
        let mut vars = extra.to_vec();
        vars.extend_from_slice(&API);
        ApiFunctionConfig::from_env(env(&vars))
    }

    #[test]
    fn the_rotator_runs_on_defaults() {
        let c = rotate_with(&[]).unwrap();
        assert_eq!(c.backend, BackendSettings::default());
        assert_eq!(c.metrics_namespace, "keyrot");
        assert_eq!(
            c.policy.rotation_period(),
            Duration::from_secs(90 * 24 * 3600)
        );
    }

    #[test]
    fn the_rotators_aws_retries_and_timeouts_are_settable() {
        let c = rotate_with(&[
            ("KEYROT_AWS_RETRY_MODE", "adaptive"),
            ("KEYROT_AWS_MAX_ATTEMPTS", "8"),
            ("KEYROT_AWS_CONNECT_TIMEOUT", "2s"),
            ("KEYROT_AWS_OPERATION_TIMEOUT", "2m"),
        ])
        .unwrap();
        assert_eq!(c.aws.retry_mode, Some(keyrot_aws::RetryMode::Adaptive));
        assert_eq!(c.aws.max_attempts, Some(8));
        assert_eq!(c.aws.connect_timeout, Some(Duration::from_secs(2)));
        assert_eq!(c.aws.operation_timeout, Some(Duration::from_secs(120)));
        assert_eq!(rotate_with(&[]).unwrap().aws, AwsSettings::default());
        for (var, value) in [
            ("KEYROT_AWS_RETRY_MODE", "eager"),
            ("KEYROT_AWS_MAX_ATTEMPTS", "0"),
            ("KEYROT_AWS_MAX_ATTEMPTS", "many"),
            ("KEYROT_AWS_OPERATION_TIMEOUT", "1 minute"),
        ] {
            let err = rotate_with(&[(var, value)]).unwrap_err();
            assert_eq!(err.var(), var, "{err}");
        }
    }

    /// Exactly the variables cfn/template.yaml gives the rotator.
    #[test]
    fn the_rotator_reads_what_the_template_sets() {
        let c = RotateConfig::from_env(env(&[
            ("KEYROT_SECRET_PREFIX", "keyrot/users/"),
            ("KEYROT_LEASE_TABLE", "prod-keyrot-leases"),
            ("KEYROT_USERS", "ci-deployer,backup"),
            ("KEYROT_EXEMPT_USERS", "breakglass"),
            ("KEYROT_ROTATION_PERIOD", "30d"),
            ("KEYROT_GRACE_PERIOD", "2d"),
            ("KEYROT_MAX_GRACE_PERIOD", "4d"),
            ("KEYROT_RECOVERY_WINDOW", "3d"),
            ("KEYROT_ALERT_FROM", "keyrot@example.com"),
            ("KEYROT_ALERT_TO", "admin@example.com, ops@example.org"),
            ("KEYROT_METRICS_NAMESPACE", "Team/keyrot"),
            (
                "KEYROT_KMS_KEY_ID",
                "arn:aws:kms:eu-west-1:123456789012:key/0f3c",
            ),
        ]))
        .unwrap();
        assert_eq!(c.backend.lease_table, "prod-keyrot-leases");
        assert_eq!(c.backend.alert_to, ["admin@example.com", "ops@example.org"]);
        assert_eq!(c.backend.alert_from.as_deref(), Some("keyrot@example.com"));
        assert!(c.backend.kms_key_id.is_some());
        assert_eq!(c.metrics_namespace, "Team/keyrot");
        assert_eq!(c.policy.grace(), Duration::from_secs(2 * 24 * 3600));
        assert_eq!(c.policy.exempt().len(), 1);
    }

    /// Exactly the variables cfn/template.yaml gives the API.
    #[test]
    fn the_api_reads_what_the_template_sets() {
        let c = ApiFunctionConfig::from_env(env(&[
            ("KEYROT_SECRET_PREFIX", "keyrot/users/"),
            (
                "KEYROT_SIGNING_KEY_SECRET",
                "arn:aws:secretsmanager:eu-west-1:123456789012:secret:keyrot/api/signing-key-AbCdEf",
            ),
            ("KEYROT_CLIENTS_SECRET", "keyrot/api/clients"),
            ("KEYROT_TOKEN_ISSUER", "https://keyrot.example.com"),
            ("KEYROT_TOKEN_AUDIENCE", "ci"),
        ]))
        .unwrap();
        assert_eq!(c.issuer, "https://keyrot.example.com");
        assert_eq!(c.audience, "ci");
        assert_eq!(c.token_ttl, Duration::from_secs(120));
        assert_eq!(c.key_cache_ttl, Duration::from_secs(30));
        assert_eq!(c.api_secrets_ttl, Duration::from_secs(60));
        assert_eq!(c.rotation.grace(), Duration::from_secs(7 * 24 * 3600));
        assert_eq!(c.metrics_namespace, "keyrot");

        let c = api_with(&[
            ("KEYROT_TOKEN_TTL", "5m"),
            ("KEYROT_KEY_CACHE_TTL", "0s"),
            ("KEYROT_API_SECRETS_TTL", "5m"),
        ])
        .unwrap();
        assert_eq!(c.token_ttl, Duration::from_secs(300));
        assert_eq!(c.key_cache_ttl, Duration::ZERO);
        assert_eq!(c.api_secrets_ttl, Duration::from_secs(300));
        let c = api_with(&[("KEYROT_API_SECRETS_TTL", "0s")]).unwrap();
        assert_eq!(c.api_secrets_ttl, Duration::ZERO);
    }

    #[test]
    fn every_bad_rotator_value_is_refused_by_name() {
        for (vars, var) in [
            (
                &[("KEYROT_SECRET_PREFIX", "keyrot users/")][..],
                "KEYROT_SECRET_PREFIX",
            ),
            (&[("KEYROT_SECRET_PREFIX", "a*")], "KEYROT_SECRET_PREFIX"),
            (
                &[("KEYROT_KMS_KEY_ID", "alias/my key")],
                "KEYROT_KMS_KEY_ID",
            ),
            (
                &[
                    ("KEYROT_ALERT_FROM", "not-an-address"),
                    ("KEYROT_ALERT_TO", "a@b.c"),
                ],
                "KEYROT_ALERT_FROM",
            ),
            (
                &[
                    ("KEYROT_ALERT_FROM", "k@example.com"),
                    ("KEYROT_ALERT_TO", "a@b.c,@b.c"),
                ],
                "KEYROT_ALERT_TO",
            ),
            (&[("KEYROT_ALERT_TO", "a@b.c")], "KEYROT_ALERT_FROM"),
            (&[("KEYROT_ALERT_FROM", "k@example.com")], "KEYROT_ALERT_TO"),
            (
                &[("KEYROT_METRICS_NAMESPACE", "AWS/Lambda")],
                "KEYROT_METRICS_NAMESPACE",
            ),
            (
                &[("KEYROT_METRICS_NAMESPACE", "key*rot")],
                "KEYROT_METRICS_NAMESPACE",
            ),
            (
                &[("KEYROT_ROTATION_PERIOD", "90 days")],
                "KEYROT_ROTATION_PERIOD",
            ),
            (
                &[("KEYROT_ROTATION_PERIOD", "20d")],
                "KEYROT_ROTATION_PERIOD",
            ),
            (&[("KEYROT_GRACE_PERIOD", "0s")], "KEYROT_GRACE_PERIOD"),
            (&[("KEYROT_GRACE_PERIOD", "20d")], "KEYROT_MAX_GRACE_PERIOD"),
            (
                &[("KEYROT_MAX_GRACE_PERIOD", "x")],
                "KEYROT_MAX_GRACE_PERIOD",
            ),
            (&[("KEYROT_RECOVERY_WINDOW", "7")], "KEYROT_RECOVERY_WINDOW"),
            (&[("KEYROT_QUIET_PERIOD", "30d")], "KEYROT_QUIET_PERIOD"),
            (&[("KEYROT_VERIFY_TIMEOUT", "-1m")], "KEYROT_VERIFY_TIMEOUT"),
            (
                &[("KEYROT_SCHEDULE_INTERVAL", "1h1h")],
                "KEYROT_SCHEDULE_INTERVAL",
            ),
            (
                &[("KEYROT_MANAGED_TAG", "keyrot-managed")],
                "KEYROT_MANAGED_TAG",
            ),
            (&[("KEYROT_MANAGED_TAG", "=true")], "KEYROT_MANAGED_TAG"),
            (&[("KEYROT_USERS", "ci,../etc")], "KEYROT_USERS"),
            (&[("KEYROT_EXEMPT_USERS", "a b")], "KEYROT_EXEMPT_USERS"),
            (&[("KEYROT_LEASE_TABLE", "my leases")], "KEYROT_LEASE_TABLE"),
        ] {
            let err = rotate_with(vars).unwrap_err();
            assert_eq!(err.var(), var, "{vars:?}: {err}");
            assert!(err.to_string().starts_with(var), "{vars:?}: {err}");
        }
    }

    #[test]
    fn every_bad_api_value_is_refused_by_name() {
        for (vars, var) in [
            (
                &[("KEYROT_SECRET_PREFIX", "keyrot users/")][..],
                "KEYROT_SECRET_PREFIX",
            ),
            (
                &[("KEYROT_SIGNING_KEY_SECRET", "bad name")],
                "KEYROT_SIGNING_KEY_SECRET",
            ),
            (
                &[("KEYROT_CLIENTS_SECRET", "clients?")],
                "KEYROT_CLIENTS_SECRET",
            ),
            (
                &[("KEYROT_TOKEN_ISSUER", "bad\u{7}issuer")],
                "KEYROT_TOKEN_ISSUER",
            ),
            (
                &[("KEYROT_TOKEN_AUDIENCE", &"a".repeat(300))],
                "KEYROT_TOKEN_AUDIENCE",
            ),
            (&[("KEYROT_TOKEN_TTL", "two minutes")], "KEYROT_TOKEN_TTL"),
            (&[("KEYROT_TOKEN_TTL", "2h")], "KEYROT_TOKEN_TTL"),
            (&[("KEYROT_TOKEN_TTL", "0s")], "KEYROT_TOKEN_TTL"),
            (&[("KEYROT_KEY_CACHE_TTL", "30")], "KEYROT_KEY_CACHE_TTL"),
            (&[("KEYROT_KEY_CACHE_TTL", "7d")], "KEYROT_KEY_CACHE_TTL"),
            (&[("KEYROT_GRACE_PERIOD", "nope")], "KEYROT_GRACE_PERIOD"),
            (
                &[("KEYROT_API_SECRETS_TTL", "1 minute")],
                "KEYROT_API_SECRETS_TTL",
            ),
            (
                &[("KEYROT_API_SECRETS_TTL", "60")],
                "KEYROT_API_SECRETS_TTL",
            ),
            (
                &[("KEYROT_METRICS_NAMESPACE", ":x")],
                "KEYROT_METRICS_NAMESPACE",
            ),
        ] {
            let err = api_with(vars).unwrap_err();
            assert_eq!(err.var(), var, "{vars:?}: {err}");
            assert!(err.to_string().starts_with(var), "{vars:?}: {err}");
        }
    }

    #[test]
    fn the_rotator_needs_its_lease_table() {
        let err = RotateConfig::from_env(env(&[])).unwrap_err();
        assert_eq!(err, ConfigError::Missing("KEYROT_LEASE_TABLE"));
        assert_eq!(
            err.to_string(),
            "KEYROT_LEASE_TABLE is required but not set"
        );
    }

    #[test]
    fn the_api_needs_its_secrets() {
        let err = ApiFunctionConfig::from_env(env(&[API[1]])).unwrap_err();
        assert_eq!(err, ConfigError::Missing("KEYROT_SIGNING_KEY_SECRET"));
        assert_eq!(
            err.to_string(),
            "KEYROT_SIGNING_KEY_SECRET is required but not set"
        );
        let err = ApiFunctionConfig::from_env(env(&[API[0], ("KEYROT_CLIENTS_SECRET", " ")]))
            .unwrap_err();
        assert_eq!(err, ConfigError::Missing("KEYROT_CLIENTS_SECRET"));
    }

    #[test]
    fn the_cache_must_expire_within_the_grace_period() {
        let short_grace = [
            ("KEYROT_GRACE_PERIOD", "2m"),
            ("KEYROT_MAX_GRACE_PERIOD", "2m"),
            ("KEYROT_QUIET_PERIOD", "1m"),
            ("KEYROT_LAST_USED_LAG", "0s"),
        ];
        let err =
            api_with(&[&short_grace[..], &[("KEYROT_KEY_CACHE_TTL", "2m")]].concat()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "KEYROT_KEY_CACHE_TTL: 2m must be shorter than the grace period (2m, \
             KEYROT_GRACE_PERIOD), or the api could serve a key the rotator has deactivated"
        );
        let ok = api_with(&[&short_grace[..], &[("KEYROT_KEY_CACHE_TTL", "1m59s")]].concat());
        assert_eq!(ok.unwrap().key_cache_ttl, Duration::from_secs(119));
    }
}
