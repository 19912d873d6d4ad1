//! The one error of the configuration: it names the setting as the user wrote it.

use std::path::PathBuf;

use keyrot_core::duration::DurationError;
use keyrot_core::settings::SettingsError;
use keyrot_core::token::TokenConfigError;

use crate::setting::{Name, Setting};

/// A configuration that cannot be used. Every variant about a setting names it in the
/// spelling of the source its value came from (see [`Name`]); what is wrong with the value is
/// the [`Reason`], this error's source.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required setting is not set anywhere (or only to an empty value).
    #[error("{} is required but not set", required(*.0))]
    Missing(Setting),
    /// A setting that another one needs is not set.
    #[error("{missing} is required when {by} is set")]
    Requires {
        /// The setting that is not set.
        missing: Name,
        /// The setting that needs it.
        by: Name,
    },
    /// A setting's value cannot be used.
    #[error("{name}")]
    Invalid {
        /// The setting.
        name: Name,
        /// What is wrong with its value, and how to write it.
        #[source]
        reason: Reason,
    },
    /// The configuration file could not be read.
    #[error("cannot read {}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The configuration file is not TOML.
    #[error("{} is not a TOML file", .path.display())]
    Toml {
        /// The file.
        path: PathBuf,
        /// Where and why, from the TOML parser.
        #[source]
        source: toml::de::Error,
    },
    /// The configuration file sets something that is not a setting.
    #[error("{} has no setting {key} (see the setting table in keyrot-config's docs)", .path.display())]
    Unknown {
        /// The file.
        path: PathBuf,
        /// The key, with its table (`[aws] regoin`).
        key: String,
    },
}

/// How a required setting is named: its flag with its variable, or its variable.
fn required(setting: Setting) -> String {
    match (setting.spelling().flag, setting.spelling().var) {
        (Some(flag), Some(var)) => format!("{flag} (or {var})"),
        _ => Name::unwritten(setting).to_string(),
    }
}

impl ConfigError {
    /// The setting the error is about (for [`ConfigError::Requires`], the one to set), if any.
    pub fn setting(&self) -> Option<Setting> {
        match self {
            Self::Missing(setting) => Some(*setting),
            Self::Requires { missing, .. } => Some(missing.setting),
            Self::Invalid { name, .. } => Some(name.setting),
            Self::Read { .. } | Self::Toml { .. } | Self::Unknown { .. } => None,
        }
    }

    /// The message with its causes, as a person should see it:
    /// `KEYROT_GRACE_PERIOD: "1 week" is not a duration: ...`.
    pub fn chain(&self) -> String {
        keyrot_core::driver::error_chain(self)
    }
}

/// What is wrong with a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    /// Not a duration.
    #[error(transparent)]
    Duration(#[from] DurationError),
    /// Not an email address.
    #[error("{0:?} is not an email address")]
    Email(String),
    /// Not a prefix of Secrets Manager names.
    #[error("{0:?} is not a secret name prefix: use up to 448 of A-Z a-z 0-9 / _ + = . @ -")]
    SecretPrefix(String),
    /// Not a Secrets Manager name or ARN.
    #[error("{0:?} is not a secret name or ARN")]
    SecretId(String),
    /// Not a KMS key id, ARN or alias.
    #[error("{0:?} is not a KMS key: write a key id, ARN or alias, without spaces")]
    KmsKey(String),
    /// Not a DynamoDB table.
    #[error("{value:?} is not a lease table: {why}")]
    Table {
        /// The value.
        value: String,
        /// What a table name looks like.
        why: &'static str,
    },
    /// Not one of the SDK's retry modes.
    #[error("{0:?} is not a retry mode: write standard or adaptive")]
    RetryMode(String),
    /// Not a number of attempts keyrot allows.
    #[error(
        "{0:?} is not a number of attempts: write a whole number from 1 to 20 (the first counts)"
    )]
    Attempts(String),
    /// Not a CloudWatch namespace.
    #[error(
        "{0:?} is not a CloudWatch namespace: up to 255 of A-Z a-z 0-9 . - _ / # : and spaces, \
         not starting with AWS/"
    )]
    Namespace(String),
    /// Not an S3 bucket name.
    #[error(
        "{0:?} is not an S3 bucket name: 3 to 63 lower-case letters, digits, dots and hyphens, \
         starting and ending with a letter or digit"
    )]
    Bucket(String),
    /// Not a backend.
    #[error("{0:?} is not a backend: write embedded or aws")]
    Backend(String),
    /// Not a rate limit.
    #[error("{0:?} is not a rate limit: write requests/duration (60/1m) or off")]
    Rate(String),
    /// A timeout of zero.
    #[error("must be longer than 0s")]
    ZeroTimeout,
    /// Not a number of connections.
    #[error("{0:?} is not a number of connections: write a whole number from 1 to 65536")]
    Connections(String),
    /// Plain HTTP off loopback.
    #[error(
        "{0} is not a loopback address: keyrot serve answers with keys, so off loopback it          needs TLS (set tls_cert and tls_key) or a loopback address such as 127.0.0.1:8080"
    )]
    PlainOffLoopback(std::net::SocketAddr),
    /// Not an address and port.
    #[error("{0:?} is not an address and port, e.g. 127.0.0.1:8080")]
    Listen(String),
    /// A list where one value is wanted.
    #[error("takes one value, not a list")]
    NotOne,
    /// A TOML value of a kind no setting takes (a table, a nested array).
    #[error("takes a string (or a list of strings), not {0}")]
    Kind(&'static str),
    /// Not an account or OU id.
    #[error(transparent)]
    OrgId(#[from] keyrot_core::accounts::OrgIdError),
    /// Not an IAM role name (with its path).
    #[error(
        "{0:?} is not a role name: write the name, with its path if it has one \
         (keyrot-member, keyrot/keyrot-member), of A-Z a-z 0-9 + = , . @ _ - and /"
    )]
    RoleName(String),
    /// Not an IAM role's ARN.
    #[error("{0:?} is not a role ARN: write arn:aws:iam::<account id>:role/<name>")]
    RoleArn(String),
    /// Not a number of parallel accounts keyrot allows.
    #[error("{0:?} is not a number of accounts: write a whole number from 1 to 1000")]
    Parallel(String),
    /// The policy settings do not make a policy.
    #[error(transparent)]
    Policy(#[from] SettingsError),
    /// The token settings do not make a token policy.
    #[error(transparent)]
    Token(#[from] TokenConfigError),
    /// The API's key cache would outlive the grace period.
    #[error(
        "{} must be shorter than the grace period ({}, {grace_name}), or the api could serve a \
         key the rotator has deactivated",
        keyrot_core::duration::format_duration(*.ttl),
        keyrot_core::duration::format_duration(*.grace)
    )]
    CacheOutlivesGrace {
        /// The cache's TTL.
        ttl: std::time::Duration,
        /// The grace period.
        grace: std::time::Duration,
        /// The grace period's setting.
        grace_name: Name,
    },
}
