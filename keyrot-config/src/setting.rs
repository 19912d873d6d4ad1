//! Every setting and its names: the key in the file, the environment variable, the flag.

use std::fmt;
use std::path::PathBuf;

use keyrot_core::PolicyField;
use keyrot_core::token::TokenConfigError;

/// One setting of keyrot, whatever source it is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Setting {
    /// The command's TOML file.
    Config,
    /// `embedded` (in-memory demo) or `aws`.
    Backend,
    /// Where `keyrot serve` listens.
    Listen,
    /// The command's log filter.
    Log,
    /// The API `keyrot token`/`get-key`/`credential-process` call.
    ApiEndpoint,
    /// The AWS region.
    Region,
    /// One endpoint for every AWS service (an emulator).
    EndpointUrl,
    /// The shared config files' profile.
    Profile,
    /// Per-user secrets are `<prefix><UserName>`.
    SecretPrefix,
    /// The DynamoDB table of the runs' claims on users.
    LeaseTable,
    /// A customer KMS key for new secrets.
    KmsKeyId,
    /// The SES sender of alerts (with `alert_to`).
    AlertFrom,
    /// Administrators' addresses (a list; commas in the variable).
    AlertTo,
    /// A standing condition is mailed again after this long.
    AlertRepeatAfter,
    /// The secret holding a Slack-compatible incoming webhook's URL (notices posted there).
    AlertWebhookSecret,
    /// The SDK's retry mode: `standard` or `adaptive`.
    RetryMode,
    /// Attempts per AWS call, 1 to 20, the first included.
    MaxAttempts,
    /// Time allowed to open a connection.
    ConnectTimeout,
    /// Time allowed for one call, retries included.
    OperationTimeout,
    /// The secret holding the API's JWT signing keys.
    SigningKeySecret,
    /// The secret holding the API's client registry.
    ClientsSecret,
    /// The tokens' `iss`.
    TokenIssuer,
    /// The tokens' `aud`.
    TokenAudience,
    /// How long a token lives, at most `1h`.
    TokenTtl,
    /// How long a fetched key is served from memory; below `grace`; `0s`: off.
    KeyCacheTtl,
    /// How long the API function uses the signing keys and registry it read.
    ApiSecretsTtl,
    /// Requests per authenticated client (`60/1m`; `off`).
    ClientRateLimit,
    /// Requests per source address (`300/1m`; `off`).
    SourceRateLimit,
    /// `keyrot serve`'s TLS certificate chain (PEM), reloaded when it changes.
    TlsCert,
    /// `keyrot serve`'s TLS private key (PEM), reloaded when it changes.
    TlsKey,
    /// Time a client has to send a request's head, from its first byte (or the connection).
    HeaderTimeout,
    /// Time a client has to send a request's body, and `serve` to answer.
    RequestTimeout,
    /// Time an idle keep-alive connection stays open.
    IdleTimeout,
    /// The most connections `serve` holds open at once.
    MaxConnections,
    /// Time `serve` gives open requests to finish once told to stop.
    ShutdownTimeout,
    /// The Lambda functions' CloudWatch namespace.
    MetricsNamespace,
    /// A key is replaced after this long.
    RotationPeriod,
    /// A superseded key stays active at least this long.
    Grace,
    /// ... and at most this long, even while in use.
    MaxGrace,
    /// A deactivated key can be rolled back to this long.
    RecoveryWindow,
    /// A key unused this long counts as idle.
    QuietPeriod,
    /// How late IAM reports a key's last use.
    LastUsedLag,
    /// How long a new key may take to authenticate.
    VerifyTimeout,
    /// How often `keyrot serve` runs a pass.
    ScheduleInterval,
    /// Users carrying this `key=value` IAM tag are managed.
    ManagedTag,
    /// Exactly these users are managed instead (a list).
    Users,
    /// Users never touched (a list).
    ExemptUsers,
    /// Accounts and OUs in scope (a list; unset: the whole organization).
    OrgInclude,
    /// Accounts and OUs out of scope (a list).
    OrgExclude,
    /// Accounts never touched (a list).
    OrgExempt,
    /// The role keyrot assumes in each member account.
    MemberRole,
    /// A management-account role that can only list the organization (an ARN).
    OrgListRole,
    /// At most this many accounts run at once.
    MaxParallelAccounts,
    // Delivery (issue 14): kept together.
    /// Each user's delivery destinations (a table of users in the file).
    DeliveryUsers,
    /// Whether destinations are also read from each user's `keyrot:deliver` tag.
    DeliveryUserTags,
    /// The secret holding the GitHub credential that GitHub destinations are written with.
    GitHubCredentialSecret,
    /// GitHub's REST API base URL (GitHub Enterprise Server's).
    GitHubApiUrl,
    /// The deployed functions' S3 bucket for reports: the rotator writes, the API reads.
    ReportBucket,
}

/// A setting's names. `section` is the file's table (`None`: the top level).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spelling {
    /// The file's table and key, if the file can set it.
    pub file: Option<(Option<&'static str>, &'static str)>,
    /// The environment variable, if the environment can set it.
    pub var: Option<&'static str>,
    /// The command line's flag, if any.
    pub flag: Option<&'static str>,
    /// Whether a value is a list (commas in a variable, an array in the file).
    pub list: bool,
}

const fn s(
    file: Option<(Option<&'static str>, &'static str)>,
    var: Option<&'static str>,
    flag: Option<&'static str>,
) -> Spelling {
    Spelling {
        file,
        var,
        flag,
        list: false,
    }
}

const fn top(key: &'static str) -> Option<(Option<&'static str>, &'static str)> {
    Some((None, key))
}
const fn aws(key: &'static str) -> Option<(Option<&'static str>, &'static str)> {
    Some((Some("aws"), key))
}
const fn api(key: &'static str) -> Option<(Option<&'static str>, &'static str)> {
    Some((Some("api"), key))
}
const fn serve(key: &'static str) -> Option<(Option<&'static str>, &'static str)> {
    Some((Some("serve"), key))
}
const fn policy(key: &'static str) -> Option<(Option<&'static str>, &'static str)> {
    Some((Some("policy"), key))
}
const fn org(key: &'static str) -> Option<(Option<&'static str>, &'static str)> {
    Some((Some("org"), key))
}
const fn delivery(key: &'static str) -> Option<(Option<&'static str>, &'static str)> {
    Some((Some("delivery"), key))
}
const fn list(spelling: Spelling) -> Spelling {
    Spelling {
        list: true,
        ..spelling
    }
}

impl Setting {
    /// Every setting, in the order of the crate's table.
    pub const ALL: [Self; 58] = [
        Self::Config,
        Self::Backend,
        Self::Listen,
        Self::Log,
        Self::ApiEndpoint,
        Self::Region,
        Self::EndpointUrl,
        Self::Profile,
        Self::SecretPrefix,
        Self::LeaseTable,
        Self::KmsKeyId,
        Self::AlertFrom,
        Self::AlertTo,
        Self::AlertRepeatAfter,
        Self::AlertWebhookSecret,
        Self::RetryMode,
        Self::MaxAttempts,
        Self::ConnectTimeout,
        Self::OperationTimeout,
        Self::SigningKeySecret,
        Self::ClientsSecret,
        Self::TokenIssuer,
        Self::TokenAudience,
        Self::TokenTtl,
        Self::KeyCacheTtl,
        Self::ApiSecretsTtl,
        Self::ClientRateLimit,
        Self::SourceRateLimit,
        Self::TlsCert,
        Self::TlsKey,
        Self::HeaderTimeout,
        Self::RequestTimeout,
        Self::IdleTimeout,
        Self::MaxConnections,
        Self::ShutdownTimeout,
        Self::MetricsNamespace,
        Self::RotationPeriod,
        Self::Grace,
        Self::MaxGrace,
        Self::RecoveryWindow,
        Self::QuietPeriod,
        Self::LastUsedLag,
        Self::VerifyTimeout,
        Self::ScheduleInterval,
        Self::ManagedTag,
        Self::Users,
        Self::ExemptUsers,
        Self::OrgInclude,
        Self::OrgExclude,
        Self::OrgExempt,
        Self::MemberRole,
        Self::OrgListRole,
        Self::MaxParallelAccounts,
        Self::DeliveryUsers,
        Self::DeliveryUserTags,
        Self::GitHubCredentialSecret,
        Self::GitHubApiUrl,
        Self::ReportBucket,
    ];

    /// The setting's names in the file, the environment and the flags: the one place that
    /// knows them.
    pub const fn spelling(self) -> Spelling {
        match self {
            Self::Config => s(None, Some("KEYROT_CONFIG"), Some("--config")),
            Self::Backend => s(top("backend"), Some("KEYROT_BACKEND"), Some("--backend")),
            Self::Listen => s(top("listen"), Some("KEYROT_LISTEN"), Some("--listen")),
            Self::Log => s(None, Some("KEYROT_LOG"), Some("--log")),
            Self::ApiEndpoint => s(None, Some("KEYROT_ENDPOINT"), Some("--endpoint")),
            Self::Region => s(aws("region"), Some("AWS_REGION"), Some("--region")),
            Self::EndpointUrl => s(
                aws("endpoint_url"),
                Some("AWS_ENDPOINT_URL"),
                Some("--endpoint-url"),
            ),
            Self::Profile => s(aws("profile"), None, None),
            Self::SecretPrefix => s(aws("secret_prefix"), Some("KEYROT_SECRET_PREFIX"), None),
            Self::LeaseTable => s(aws("lease_table"), Some("KEYROT_LEASE_TABLE"), None),
            Self::KmsKeyId => s(aws("kms_key_id"), Some("KEYROT_KMS_KEY_ID"), None),
            Self::AlertFrom => s(aws("alert_from"), Some("KEYROT_ALERT_FROM"), None),
            Self::AlertTo => list(s(aws("alert_to"), Some("KEYROT_ALERT_TO"), None)),
            Self::AlertRepeatAfter => s(
                aws("alert_repeat_after"),
                Some("KEYROT_ALERT_REPEAT_AFTER"),
                None,
            ),
            Self::AlertWebhookSecret => s(
                aws("alert_webhook_secret"),
                Some("KEYROT_ALERT_WEBHOOK_SECRET"),
                None,
            ),
            Self::RetryMode => s(aws("retry_mode"), Some("KEYROT_AWS_RETRY_MODE"), None),
            Self::MaxAttempts => s(aws("max_attempts"), Some("KEYROT_AWS_MAX_ATTEMPTS"), None),
            Self::ConnectTimeout => s(
                aws("connect_timeout"),
                Some("KEYROT_AWS_CONNECT_TIMEOUT"),
                None,
            ),
            Self::OperationTimeout => s(
                aws("operation_timeout"),
                Some("KEYROT_AWS_OPERATION_TIMEOUT"),
                None,
            ),
            Self::SigningKeySecret => s(
                aws("signing_key_secret"),
                Some("KEYROT_SIGNING_KEY_SECRET"),
                None,
            ),
            Self::ClientsSecret => s(aws("clients_secret"), Some("KEYROT_CLIENTS_SECRET"), None),
            Self::TokenIssuer => s(api("issuer"), Some("KEYROT_TOKEN_ISSUER"), None),
            Self::TokenAudience => s(api("audience"), Some("KEYROT_TOKEN_AUDIENCE"), None),
            Self::TokenTtl => s(api("token_ttl"), Some("KEYROT_TOKEN_TTL"), None),
            Self::KeyCacheTtl => s(api("key_cache_ttl"), Some("KEYROT_KEY_CACHE_TTL"), None),
            Self::ApiSecretsTtl => s(None, Some("KEYROT_API_SECRETS_TTL"), None),
            Self::ClientRateLimit => s(
                api("client_rate_limit"),
                Some("KEYROT_CLIENT_RATE_LIMIT"),
                Some("--client-rate-limit"),
            ),
            Self::SourceRateLimit => s(
                api("source_rate_limit"),
                Some("KEYROT_SOURCE_RATE_LIMIT"),
                Some("--source-rate-limit"),
            ),
            Self::TlsCert => s(
                serve("tls_cert"),
                Some("KEYROT_TLS_CERT"),
                Some("--tls-cert"),
            ),
            Self::TlsKey => s(serve("tls_key"), Some("KEYROT_TLS_KEY"), Some("--tls-key")),
            Self::HeaderTimeout => s(
                serve("header_timeout"),
                Some("KEYROT_HEADER_TIMEOUT"),
                Some("--header-timeout"),
            ),
            Self::RequestTimeout => s(
                serve("request_timeout"),
                Some("KEYROT_REQUEST_TIMEOUT"),
                Some("--request-timeout"),
            ),
            Self::IdleTimeout => s(
                serve("idle_timeout"),
                Some("KEYROT_IDLE_TIMEOUT"),
                Some("--idle-timeout"),
            ),
            Self::MaxConnections => s(
                serve("max_connections"),
                Some("KEYROT_MAX_CONNECTIONS"),
                Some("--max-connections"),
            ),
            Self::ShutdownTimeout => s(
                serve("shutdown_timeout"),
                Some("KEYROT_SHUTDOWN_TIMEOUT"),
                Some("--shutdown-timeout"),
            ),
            Self::MetricsNamespace => s(None, Some("KEYROT_METRICS_NAMESPACE"), None),
            Self::RotationPeriod => s(
                policy("rotation_period"),
                Some("KEYROT_ROTATION_PERIOD"),
                None,
            ),
            Self::Grace => s(policy("grace"), Some("KEYROT_GRACE_PERIOD"), None),
            Self::MaxGrace => s(policy("max_grace"), Some("KEYROT_MAX_GRACE_PERIOD"), None),
            Self::RecoveryWindow => s(
                policy("recovery_window"),
                Some("KEYROT_RECOVERY_WINDOW"),
                None,
            ),
            Self::QuietPeriod => s(policy("quiet_period"), Some("KEYROT_QUIET_PERIOD"), None),
            Self::LastUsedLag => s(policy("last_used_lag"), Some("KEYROT_LAST_USED_LAG"), None),
            Self::VerifyTimeout => s(
                policy("verify_timeout"),
                Some("KEYROT_VERIFY_TIMEOUT"),
                None,
            ),
            Self::ScheduleInterval => s(
                policy("schedule_interval"),
                Some("KEYROT_SCHEDULE_INTERVAL"),
                None,
            ),
            Self::ManagedTag => s(policy("managed_tag"), Some("KEYROT_MANAGED_TAG"), None),
            Self::Users => list(s(policy("users"), Some("KEYROT_USERS"), None)),
            Self::ExemptUsers => list(s(policy("exempt"), Some("KEYROT_EXEMPT_USERS"), None)),
            Self::OrgInclude => list(s(org("include"), Some("KEYROT_ORG_INCLUDE"), None)),
            Self::OrgExclude => list(s(org("exclude"), Some("KEYROT_ORG_EXCLUDE"), None)),
            Self::OrgExempt => list(s(org("exempt"), Some("KEYROT_ORG_EXEMPT"), None)),
            Self::MemberRole => s(org("member_role"), Some("KEYROT_MEMBER_ROLE"), None),
            Self::OrgListRole => s(org("list_role"), Some("KEYROT_ORG_LIST_ROLE"), None),
            Self::MaxParallelAccounts => s(
                org("max_parallel_accounts"),
                Some("KEYROT_MAX_PARALLEL_ACCOUNTS"),
                None,
            ),
            Self::DeliveryUsers => s(delivery("users"), Some("KEYROT_DELIVERY_USERS"), None),
            Self::DeliveryUserTags => s(
                delivery("user_tags"),
                Some("KEYROT_DELIVERY_USER_TAGS"),
                None,
            ),
            Self::GitHubCredentialSecret => s(
                delivery("github_credential_secret"),
                Some("KEYROT_GITHUB_CREDENTIAL_SECRET"),
                None,
            ),
            Self::GitHubApiUrl => s(
                delivery("github_api_url"),
                Some("KEYROT_GITHUB_API_URL"),
                None,
            ),
            Self::ReportBucket => s(None, Some("KEYROT_REPORT_BUCKET"), None),
        }
    }

    /// The file's key as errors write it (`[aws] alert_to`, `listen` at the top level), if the
    /// file can set it.
    pub fn file_key(self) -> Option<String> {
        self.spelling().file.map(|key| match key {
            (Some(section), key) => format!("[{section}] {key}"),
            (None, key) => key.to_owned(),
        })
    }

    /// The setting of a policy field.
    pub const fn of_policy(field: PolicyField) -> Self {
        match field {
            PolicyField::RotationPeriod => Self::RotationPeriod,
            PolicyField::Grace => Self::Grace,
            PolicyField::MaxGrace => Self::MaxGrace,
            PolicyField::RecoveryWindow => Self::RecoveryWindow,
            PolicyField::QuietPeriod => Self::QuietPeriod,
            PolicyField::LastUsedLag => Self::LastUsedLag,
            PolicyField::VerifyTimeout => Self::VerifyTimeout,
            PolicyField::ScheduleInterval => Self::ScheduleInterval,
            PolicyField::ManagedTag => Self::ManagedTag,
            PolicyField::Users => Self::Users,
            PolicyField::Exempt => Self::ExemptUsers,
        }
    }

    /// The setting a token configuration error is about. The signing keys are not settings
    /// but the contents of the secret the signing-key setting names, so their errors blame it.
    pub const fn of_token_error(error: &TokenConfigError) -> Self {
        match error {
            TokenConfigError::InvalidIssuer => Self::TokenIssuer,
            TokenConfigError::InvalidAudience => Self::TokenAudience,
            // The leeway is not a setting: keyrot uses the token policy's default, which is
            // valid, so only the lifetime can be wrong. A leeway setting would get its own
            // `Setting` here.
            TokenConfigError::InvalidLifetime(_) | TokenConfigError::InvalidLeeway(_) => {
                Self::TokenTtl
            }
            TokenConfigError::InvalidKeyId(_)
            | TokenConfigError::SecretTooShort { .. }
            | TokenConfigError::DuplicateKeyId(_) => Self::SigningKeySecret,
        }
    }
}

/// Where a value was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The configuration file at this path.
    File(PathBuf),
    /// The environment (the Lambda's, or the command's).
    Env,
    /// A command-line flag.
    Flag,
}

/// A setting as the user wrote it: named in the spelling of the source its value came from
/// (`[aws] alert_to in keyrot.toml`, `KEYROT_ALERT_TO`, `--region`). A setting nobody wrote
/// (a default that contradicts another setting) is named by its variable, the one spelling
/// the command line and the Lambda functions share, else by its flag or file key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    /// The setting.
    pub setting: Setting,
    /// Where its value came from; `None` if it was not written anywhere.
    pub source: Option<Source>,
}

impl Name {
    /// `setting`, not written anywhere.
    pub fn unwritten(setting: Setting) -> Self {
        Self {
            setting,
            source: None,
        }
    }
}

fn write_key(f: &mut fmt::Formatter<'_>, file: (Option<&str>, &str)) -> fmt::Result {
    match file {
        (Some(section), key) => write!(f, "[{section}] {key}"),
        (None, key) => f.write_str(key),
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let spelling = self.setting.spelling();
        match (&self.source, spelling.file) {
            (Some(Source::File(path)), Some(key)) => {
                write_key(f, key)?;
                write!(f, " in {}", path.display())
            }
            // From a flag, by its flag; from the environment or nowhere, by its variable.
            _ => match (&self.source, spelling.var, spelling.flag) {
                (Some(Source::Flag), _, Some(flag)) | (_, None, Some(flag)) => f.write_str(flag),
                (_, Some(var), _) => f.write_str(var),
                (_, None, None) => match spelling.file {
                    Some(key) => write_key(f, key),
                    None => write!(f, "{:?}", self.setting),
                },
            },
        }
    }
}
