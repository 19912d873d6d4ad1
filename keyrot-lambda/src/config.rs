//! The functions' configuration: the environment, read through a lookup closure (so tests
//! never touch the process environment) by keyrot-config's model, checked in full at cold
//! start. keyrot-config's setting table lists every variable; both functions read the secret
//! prefix, the metrics namespace and the policy's variables.
//!
//! The rotator (`keyrot-rotate`) also needs `KEYROT_LEASE_TABLE` (the template passes its
//! `LeaseTable`) and reads the alert (the webhook's secret among them), KMS and AWS retry and
//! timeout variables; the API (`keyrot-api`) also needs `KEYROT_SIGNING_KEY_SECRET` and
//! `KEYROT_CLIENTS_SECRET` and reads the token and cache variables. Every refusal is a [`ConfigError`] naming the variable.

use std::time::Duration;

use keyrot_aws::{AwsSettings, BackendSettings};
use keyrot_config::{ApiSettings, Setting, Sources};
pub use keyrot_config::{
    ConfigError, DEFAULT_API_SECRETS_TTL, DEFAULT_AUDIENCE, DEFAULT_ISSUER, DEFAULT_KEY_CACHE_TTL,
    DEFAULT_NAMESPACE,
};
use keyrot_core::Policy;
use keyrot_core::settings::PolicySettings;
use keyrot_core::token::{SigningKey, TokenPolicy};

/// What the rotator function runs with.
#[derive(Debug, Clone)]
pub struct RotateConfig {
    /// How the rotator reaches AWS: retries and timeouts from `KEYROT_AWS_RETRY_MODE`,
    /// `KEYROT_AWS_MAX_ATTEMPTS`, `KEYROT_AWS_CONNECT_TIMEOUT` and
    /// `KEYROT_AWS_OPERATION_TIMEOUT`; the rest from aws-config's standard chain.
    pub aws: AwsSettings,
    /// Where secrets go and alerts are sent.
    pub backend: BackendSettings,
    /// The rotation policy.
    pub policy: Policy,
    /// The metrics' CloudWatch namespace.
    pub metrics_namespace: String,
    /// The organization's accounts, for the fan-out's requests (`KEYROT_ORG_*`,
    /// `KEYROT_MEMBER_ROLE`, `KEYROT_MAX_PARALLEL_ACCOUNTS`).
    pub org: keyrot_aws::org::OrgSettings,
    /// Where the report goes after a run (`KEYROT_REPORT_BUCKET`; none: no report).
    pub report_bucket: Option<String>,
}

impl RotateConfig {
    /// Reads and checks the rotator's variables through `lookup` (usually
    /// `|name| std::env::var(name).ok()`).
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Sources::lambda(lookup);
        let backend = env.backend()?;
        // The template always names the stack's table: a missing one is a broken deployment.
        env.require(Setting::LeaseTable)?;
        Ok(Self {
            aws: env.aws()?,
            backend,
            policy: env.policy(&PolicySettings::default())?,
            metrics_namespace: env.metrics_namespace()?,
            org: env.org()?,
            report_bucket: env.report_bucket()?,
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
    /// The API's own rate limits (inside API Gateway's usage plan): per client and per source
    /// address, per warm function instance.
    pub rate_limits: keyrot_api::RateLimits,
    /// The bucket whose latest report the admin routes show (`KEYROT_REPORT_BUCKET`; none:
    /// no admin routes).
    pub report_bucket: Option<String>,
}

impl ApiFunctionConfig {
    /// Reads and checks the API's variables through `lookup`.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Sources::lambda(lookup);
        let secret_prefix = env.secret_prefix()?;
        let signing_key_secret = env.require(Setting::SigningKeySecret)?;
        let clients_secret = env.require(Setting::ClientsSecret)?;
        let rotation = env.policy(&PolicySettings::default())?;
        let api = env.api(&rotation, Some(DEFAULT_KEY_CACHE_TTL))?;
        Ok(Self {
            secret_prefix,
            // (`api` checked them.)
            signing_key_secret,
            clients_secret,
            issuer: api.issuer,
            audience: api.audience,
            token_ttl: api.token_ttl,
            key_cache_ttl: api.key_cache_ttl.unwrap_or(DEFAULT_KEY_CACHE_TTL),
            api_secrets_ttl: api.api_secrets_ttl,
            rotation,
            metrics_namespace: env.metrics_namespace()?,
            rate_limits: api.rate_limits,
            report_bucket: env.report_bucket()?,
        })
    }

    /// The token policy these settings describe, with the signing keys loaded at cold start.
    pub fn token_policy(
        &self,
        signing_key: SigningKey,
        retired_keys: Vec<SigningKey>,
    ) -> Result<TokenPolicy, ConfigError> {
        ApiSettings {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            token_ttl: self.token_ttl,
            key_cache_ttl: Some(self.key_cache_ttl),
            api_secrets_ttl: self.api_secrets_ttl,
            signing_key_secret: Some(self.signing_key_secret.clone()),
            clients_secret: Some(self.clients_secret.clone()),
            rate_limits: self.rate_limits,
        }
        .token_policy(signing_key, retired_keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use keyrot_config::lookup_in as env;

    /// The variable an error names.
    fn var(err: &ConfigError) -> &'static str {
        err.setting().and_then(|s| s.spelling().var).unwrap()
    }

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
        for (expected, value) in [
            ("KEYROT_AWS_RETRY_MODE", "eager"),
            ("KEYROT_AWS_MAX_ATTEMPTS", "0"),
            ("KEYROT_AWS_MAX_ATTEMPTS", "many"),
            ("KEYROT_AWS_OPERATION_TIMEOUT", "1 minute"),
        ] {
            let err = rotate_with(&[(expected, value)]).unwrap_err();
            assert_eq!(var(&err), expected, "{err}");
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
            (
                "KEYROT_ALERT_WEBHOOK_SECRET",
                "arn:aws:secretsmanager:eu-west-1:123456789012:secret:keyrot/alerts/hook-AbCdEf",
            ),
            ("KEYROT_METRICS_NAMESPACE", "Team/keyrot"),
            (
                "KEYROT_KMS_KEY_ID",
                "arn:aws:kms:eu-west-1:123456789012:key/0f3c",
            ),
            (
                "KEYROT_REPORT_BUCKET",
                "prod-reports-123456789012-eu-west-1",
            ),
        ]))
        .unwrap();
        assert_eq!(c.backend.lease_table, "prod-keyrot-leases");
        assert_eq!(
            c.report_bucket.as_deref(),
            Some("prod-reports-123456789012-eu-west-1")
        );
        assert_eq!(c.backend.alert_to, ["admin@example.com", "ops@example.org"]);
        assert_eq!(c.backend.alert_from.as_deref(), Some("keyrot@example.com"));
        assert!(c.backend.kms_key_id.is_some());
        assert!(
            c.backend
                .alert_webhook_secret
                .as_deref()
                .is_some_and(|id| id.ends_with(":secret:keyrot/alerts/hook-AbCdEf"))
        );
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

        // The API's own rate limits, as `keyrot serve` reads them.
        assert_eq!(c.rate_limits, keyrot_api::RateLimits::default());
        let c = api_with(&[
            ("KEYROT_CLIENT_RATE_LIMIT", "10/1s"),
            ("KEYROT_SOURCE_RATE_LIMIT", "off"),
        ])
        .unwrap();
        assert_eq!(c.rate_limits.per_client, Some("10/1s".parse().unwrap()));
        assert_eq!(c.rate_limits.per_source, None);
        let err = api_with(&[("KEYROT_SOURCE_RATE_LIMIT", "many")]).unwrap_err();
        assert!(
            err.chain().starts_with("KEYROT_SOURCE_RATE_LIMIT: "),
            "{}",
            err.chain()
        );
    }

    #[test]
    fn every_bad_rotator_value_is_refused_by_name() {
        for (vars, expected) in [
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
            (
                &[("KEYROT_REPORT_BUCKET", "Reports")],
                "KEYROT_REPORT_BUCKET",
            ),
            (&[("KEYROT_REPORT_BUCKET", "ab")], "KEYROT_REPORT_BUCKET"),
            (
                &[("KEYROT_REPORT_BUCKET", "reports-")],
                "KEYROT_REPORT_BUCKET",
            ),
            (
                &[("KEYROT_REPORT_BUCKET", "s3://reports")],
                "KEYROT_REPORT_BUCKET",
            ),
        ] {
            let err = rotate_with(vars).unwrap_err();
            assert_eq!(var(&err), expected, "{vars:?}: {err}");
            assert!(err.to_string().starts_with(expected), "{vars:?}: {err}");
        }
    }

    #[test]
    fn every_bad_api_value_is_refused_by_name() {
        for (vars, expected) in [
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
            assert_eq!(var(&err), expected, "{vars:?}: {err}");
            assert!(err.to_string().starts_with(expected), "{vars:?}: {err}");
        }
    }

    #[test]
    fn the_rotator_needs_its_lease_table() {
        let err = RotateConfig::from_env(env(&[])).unwrap_err();
        assert!(
            matches!(err, ConfigError::Missing(Setting::LeaseTable)),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "KEYROT_LEASE_TABLE is required but not set"
        );
    }

    #[test]
    fn the_api_needs_its_secrets() {
        let err = ApiFunctionConfig::from_env(env(&[API[1]])).unwrap_err();
        assert!(
            matches!(err, ConfigError::Missing(Setting::SigningKeySecret)),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "KEYROT_SIGNING_KEY_SECRET is required but not set"
        );
        let err = ApiFunctionConfig::from_env(env(&[API[0], ("KEYROT_CLIENTS_SECRET", " ")]))
            .unwrap_err();
        assert!(
            matches!(err, ConfigError::Missing(Setting::ClientsSecret)),
            "{err}"
        );
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
            err.chain(),
            "KEYROT_KEY_CACHE_TTL: 2m must be shorter than the grace period (2m, \
             KEYROT_GRACE_PERIOD), or the api could serve a key the rotator has deactivated"
        );
        let ok = api_with(&[&short_grace[..], &[("KEYROT_KEY_CACHE_TTL", "1m59s")]].concat());
        assert_eq!(ok.unwrap().key_cache_ttl, Duration::from_secs(119));
    }
}
