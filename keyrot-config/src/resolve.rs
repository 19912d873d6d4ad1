//! Every setting parsed and checked, once: the typed settings the command line and the Lambda
//! functions run with.

use std::net::SocketAddr;
use std::time::Duration;

use keyrot_aws::{AwsSettings, BackendSettings, DEFAULT_LEASE_TABLE, DEFAULT_PREFIX, RetryMode};
use keyrot_core::Policy;
use keyrot_core::duration::parse_duration;
use keyrot_core::settings::PolicySettings;
use keyrot_core::token::{DEFAULT_LIFETIME, SigningKey, TokenConfig, TokenPolicy};

use crate::error::{ConfigError, Reason};
use crate::setting::{Name, Setting};
use crate::sources::Sources;

/// The default `iss` of the API's tokens.
pub const DEFAULT_ISSUER: &str = "keyrot";
/// The default `aud` of the API's tokens.
pub const DEFAULT_AUDIENCE: &str = "keyrot-api";
/// The default CloudWatch namespace of the Lambda functions' metrics.
pub const DEFAULT_NAMESPACE: &str = "keyrot";
/// The default time the API function serves a fetched key from its cache.
pub const DEFAULT_KEY_CACHE_TTL: Duration = keyrot_api::DEFAULT_CACHE_TTL;
/// The default time the API function answers with the signing keys and client registry it
/// read before it reads them again.
pub const DEFAULT_API_SECRETS_TTL: Duration = Duration::from_secs(60);
/// Where `keyrot serve` listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The command line's log filter unless told otherwise.
pub const DEFAULT_LOG: &str = "info";
/// The variable `keyrot token`, `get-key` and `credential-process` read the API key from,
/// unless `--api-key-env` names another.
pub const API_KEY_VAR: &str = "KEYROT_API_KEY";

/// The variable `keyrot serve` suggests for its demo admin client's API key, to pass to
/// `keyrot status --endpoint URL --api-key-env`.
pub const ADMIN_API_KEY_VAR: &str = "KEYROT_ADMIN_API_KEY";

/// Which backend the command runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// In-memory IAM and Secrets Manager seeded with demo users: no AWS account needed.
    Embedded,
    /// AWS, or any AWS-compatible endpoint.
    Aws,
}

/// The API's settings (the command's server and the API function).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSettings {
    /// The tokens' `iss`.
    pub issuer: String,
    /// The tokens' `aud`.
    pub audience: String,
    /// How long a token lives.
    pub token_ttl: Duration,
    /// How long a fetched key is served from memory (shorter than the grace period); `None`:
    /// the caller's default.
    pub key_cache_ttl: Option<Duration>,
    /// How long the API function uses the signing keys and client registry it read.
    pub api_secrets_ttl: Duration,
    /// The secret holding the signing keys.
    pub signing_key_secret: Option<String>,
    /// The secret holding the client registry.
    pub clients_secret: Option<String>,
    /// The rate limits per client and per source address.
    pub rate_limits: keyrot_api::RateLimits,
}

impl ApiSettings {
    /// The token policy these settings describe, with the signing keys loaded from
    /// [`ApiSettings::signing_key_secret`]; an error names the setting as its variable.
    pub fn token_policy(
        &self,
        signing_key: SigningKey,
        retired_keys: Vec<SigningKey>,
    ) -> Result<TokenPolicy, ConfigError> {
        self.token_policy_named(signing_key, retired_keys, Name::unwritten)
    }

    fn token_policy_named(
        &self,
        signing_key: SigningKey,
        retired_keys: Vec<SigningKey>,
        name: impl Fn(Setting) -> Name,
    ) -> Result<TokenPolicy, ConfigError> {
        let mut config = TokenConfig::new(&self.issuer, &self.audience, signing_key);
        config.lifetime = self.token_ttl;
        config.retired_keys = retired_keys;
        TokenPolicy::new(config).map_err(|e| ConfigError::Invalid {
            name: name(Setting::of_token_error(&e)),
            reason: e.into(),
        })
    }
}

impl Sources {
    pub(crate) fn duration(&self, setting: Setting) -> Result<Option<Duration>, ConfigError> {
        self.text(setting)?
            .map(|text| parse_duration(&text).map_err(|e| self.invalid(setting, e)))
            .transpose()
    }

    /// How to reach AWS: region, endpoint, profile, retries and timeouts.
    pub fn aws(&self) -> Result<AwsSettings, ConfigError> {
        let retry_mode = self
            .text(Setting::RetryMode)?
            .map(|text| {
                text.parse::<RetryMode>()
                    .map_err(|_| self.invalid(Setting::RetryMode, Reason::RetryMode(text)))
            })
            .transpose()?;
        let max_attempts = self
            .text(Setting::MaxAttempts)?
            .map(|text| match text.parse::<u32>() {
                Ok(n @ 1..=20) => Ok(n),
                _ => Err(self.invalid(Setting::MaxAttempts, Reason::Attempts(text))),
            })
            .transpose()?;
        Ok(AwsSettings {
            region: self.text(Setting::Region)?,
            endpoint_url: self.text(Setting::EndpointUrl)?,
            profile: self.text(Setting::Profile)?,
            max_attempts,
            retry_mode,
            initial_backoff: None,
            connect_timeout: self.duration(Setting::ConnectTimeout)?,
            operation_timeout: self.duration(Setting::OperationTimeout)?,
        })
    }

    /// Where secrets live, the lease table and where alerts go.
    pub fn backend(&self) -> Result<BackendSettings, ConfigError> {
        let alert_from = self.text(Setting::AlertFrom)?;
        if let Some(from) = &alert_from {
            self.check_address(Setting::AlertFrom, from)?;
        }
        let alert_to = self.list(Setting::AlertTo).unwrap_or_default();
        for to in &alert_to {
            self.check_address(Setting::AlertTo, to)?;
        }
        let requires = |missing, by| ConfigError::Requires {
            missing: self.name(missing),
            by: self.name(by),
        };
        match (&alert_from, alert_to.is_empty()) {
            (None, false) => return Err(requires(Setting::AlertFrom, Setting::AlertTo)),
            (Some(_), true) => return Err(requires(Setting::AlertTo, Setting::AlertFrom)),
            _ => {}
        }
        let lease_table = self
            .text(Setting::LeaseTable)?
            .unwrap_or_else(|| DEFAULT_LEASE_TABLE.to_owned());
        keyrot_aws::check_table_name(&lease_table).map_err(|why| {
            self.invalid(
                Setting::LeaseTable,
                Reason::Table {
                    value: lease_table.clone(),
                    why,
                },
            )
        })?;
        let kms_key_id = self.text(Setting::KmsKeyId)?;
        if let Some(key) = &kms_key_id
            && (key.len() > 2048 || key.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(self.invalid(Setting::KmsKeyId, Reason::KmsKey(key.clone())));
        }
        Ok(BackendSettings {
            secret_prefix: self.secret_prefix()?,
            lease_table,
            kms_key_id,
            alert_from,
            alert_to,
            alert_webhook_secret: self.secret_id(Setting::AlertWebhookSecret)?,
            alert_repeat_after: self
                .duration(Setting::AlertRepeatAfter)?
                .unwrap_or(BackendSettings::default().alert_repeat_after),
            delivery: self.delivery()?,
        })
    }

    /// Per-user secrets are `<prefix><UserName>`.
    pub fn secret_prefix(&self) -> Result<String, ConfigError> {
        let prefix = self
            .text(Setting::SecretPrefix)?
            .unwrap_or_else(|| DEFAULT_PREFIX.to_owned());
        // Secrets Manager's name characters; a user name (up to 64) must still fit in 512.
        if prefix.len() > 512 - 64 || !prefix.chars().all(is_secret_name_char) {
            return Err(self.invalid(Setting::SecretPrefix, Reason::SecretPrefix(prefix)));
        }
        Ok(prefix)
    }

    fn check_address(&self, setting: Setting, address: &str) -> Result<(), ConfigError> {
        let well_formed = address.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
        }) && !address.chars().any(|c| c.is_whitespace() || c.is_control())
            && address.len() <= 320;
        if well_formed {
            Ok(())
        } else {
            Err(self.invalid(setting, Reason::Email(address.to_owned())))
        }
    }

    /// The policy settings as written (durations read, lists split; not yet checked
    /// together).
    pub fn policy_settings(&self) -> Result<PolicySettings, ConfigError> {
        Ok(PolicySettings {
            rotation_period: self.duration(Setting::RotationPeriod)?,
            grace: self.duration(Setting::Grace)?,
            max_grace: self.duration(Setting::MaxGrace)?,
            recovery_window: self.duration(Setting::RecoveryWindow)?,
            quiet_period: self.duration(Setting::QuietPeriod)?,
            last_used_lag: self.duration(Setting::LastUsedLag)?,
            verify_timeout: self.duration(Setting::VerifyTimeout)?,
            schedule_interval: self.duration(Setting::ScheduleInterval)?,
            managed_tag: self.text(Setting::ManagedTag)?,
            users: self.list(Setting::Users),
            exempt: self.list(Setting::ExemptUsers),
        })
    }

    /// The checked rotation policy: the settings as written laid over `base` (the
    /// production defaults are `PolicySettings::default()`); an error blames the setting the
    /// policy's rule names.
    pub fn policy(&self, base: &PolicySettings) -> Result<Policy, ConfigError> {
        base.clone()
            .overlay(self.policy_settings()?)
            .policy()
            .map_err(|e| self.invalid(Setting::of_policy(e.field()), e))
    }

    /// The API's settings, checked against `policy` (the key cache must expire within its
    /// grace period) and by the token policy's rules (with a stand-in key, so a bad value is
    /// refused by name before any secret is read). `default_cache_ttl` is the caller's key
    /// cache TTL when none is set; it is checked too.
    pub fn api(
        &self,
        policy: &Policy,
        default_cache_ttl: Option<Duration>,
    ) -> Result<ApiSettings, ConfigError> {
        let api = ApiSettings {
            signing_key_secret: self.secret_id(Setting::SigningKeySecret)?,
            clients_secret: self.secret_id(Setting::ClientsSecret)?,
            issuer: self
                .text(Setting::TokenIssuer)?
                .unwrap_or_else(|| DEFAULT_ISSUER.to_owned()),
            audience: self
                .text(Setting::TokenAudience)?
                .unwrap_or_else(|| DEFAULT_AUDIENCE.to_owned()),
            token_ttl: self
                .duration(Setting::TokenTtl)?
                .unwrap_or(DEFAULT_LIFETIME),
            key_cache_ttl: self.duration(Setting::KeyCacheTtl)?.or(default_cache_ttl),
            api_secrets_ttl: self
                .duration(Setting::ApiSecretsTtl)?
                .unwrap_or(DEFAULT_API_SECRETS_TTL),
            rate_limits: self.rate_limits()?,
        };
        let stand_in = SigningKey::new("config-check", vec![0; 32])
            .map_err(|e| self.invalid(Setting::SigningKeySecret, e))?;
        api.token_policy_named(stand_in, Vec::new(), |setting| self.name(setting))?;
        if let Some(ttl) = api.key_cache_ttl
            && ttl >= policy.grace()
        {
            return Err(self.invalid(
                Setting::KeyCacheTtl,
                Reason::CacheOutlivesGrace {
                    ttl,
                    grace: policy.grace(),
                    grace_name: self.name(Setting::Grace),
                },
            ));
        }
        Ok(api)
    }

    /// The secret `setting` names, if set: a name (the prefix's characters) or an ARN (which
    /// adds `:`).
    pub(crate) fn secret_id(&self, setting: Setting) -> Result<Option<String>, ConfigError> {
        let Some(id) = self.text(setting)? else {
            return Ok(None);
        };
        if id.len() > 2048 || !id.chars().all(|c| is_secret_name_char(c) || c == ':') {
            return Err(self.invalid(setting, Reason::SecretId(id)));
        }
        Ok(Some(id))
    }

    /// The Lambda functions' CloudWatch namespace.
    pub fn metrics_namespace(&self) -> Result<String, ConfigError> {
        let namespace = self
            .text(Setting::MetricsNamespace)?
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
        let allowed = |c: char| c.is_ascii_alphanumeric() || ".-_/#: ".contains(c);
        if namespace.len() > 255
            || !namespace.chars().all(allowed)
            || namespace.starts_with(':')
            || namespace.starts_with("AWS/")
        {
            return Err(self.invalid(Setting::MetricsNamespace, Reason::Namespace(namespace)));
        }
        Ok(namespace)
    }

    /// The deployed functions' reports bucket, if the stack has one.
    pub fn report_bucket(&self) -> Result<Option<String>, ConfigError> {
        let Some(bucket) = self.text(Setting::ReportBucket)? else {
            return Ok(None);
        };
        let edge =
            |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let inner = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-".contains(c);
        if !(3..=63).contains(&bucket.len())
            || !bucket.chars().all(inner)
            || !edge(bucket.chars().next())
            || !edge(bucket.chars().last())
        {
            return Err(self.invalid(Setting::ReportBucket, Reason::Bucket(bucket)));
        }
        Ok(Some(bucket))
    }

    /// The backend asked for, if any.
    pub fn backend_kind(&self) -> Result<Option<BackendKind>, ConfigError> {
        self.text(Setting::Backend)?
            .map(|text| match text.as_str() {
                "embedded" => Ok(BackendKind::Embedded),
                "aws" => Ok(BackendKind::Aws),
                _ => Err(self.invalid(Setting::Backend, Reason::Backend(text))),
            })
            .transpose()
    }

    /// Where `keyrot serve` listens.
    pub fn listen(&self) -> Result<SocketAddr, ConfigError> {
        let text = self
            .text(Setting::Listen)?
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        text.parse()
            .map_err(|_| self.invalid(Setting::Listen, Reason::Listen(text)))
    }

    /// The command line's log filter (checked by the log subscriber, which falls back on
    /// `info`).
    pub fn log_filter(&self) -> String {
        self.text(Setting::Log)
            .ok()
            .flatten()
            .unwrap_or_else(|| DEFAULT_LOG.to_owned())
    }
}

fn is_secret_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "/_+=.@-".contains(c)
}
