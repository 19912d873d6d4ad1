//! keyrot-config: keyrot's one configuration model. Every setting is named, parsed and checked
//! here, once, for the `keyrot` command line and for the two Lambda functions; they differ only
//! in where values come from.
//!
//! It performs no IO but reading the configuration file it is given, never reads the process
//! environment itself (callers pass a lookup), and decides nothing about rotation: the checked
//! values are keyrot-core's, keyrot-aws' and keyrot-api's settings types.
//!
//! - The command line ([`Sources::command_line`]): a TOML file (`--config`, else
//!   `KEYROT_CONFIG`), then the environment, then flags; a later source wins, setting by
//!   setting.
//! - The Lambda functions ([`Sources::lambda`]): the environment only.
//!
//! Empty values count as unset, whatever the source. Every refusal is a [`ConfigError`] that
//! names the setting as the user wrote it (see [`Name`]): `[aws] alert_to in keyrot.toml`,
//! `KEYROT_ALERT_TO`, `--region`; a setting nobody wrote (a default another setting
//! contradicts) by its variable. The same bad value in the same variable is refused with the
//! same message by the command line and the Lambda functions.
//!
//! The key types are [`Setting`] (with its names, [`Setting::spelling`]), [`Sources`] (the
//! values, with where each came from) and its typed readers ([`Sources::aws`],
//! [`Sources::backend`], [`Sources::policy`], [`Sources::api`], ...).
//!
//! # Settings
//!
//! | file key                     | variable                       | flag             | meaning                                                           | default                     |
//! |------------------------------|--------------------------------|------------------|-------------------------------------------------------------------|-----------------------------|
//! |                              | `KEYROT_CONFIG`                | `--config`       | the command's TOML file                                           | none                        |
//! | `backend`                    | `KEYROT_BACKEND`               | `--backend`      | `embedded` (in-memory demo) or `aws`                              | aws if AWS is configured    |
//! | `listen`                     | `KEYROT_LISTEN`                | `--listen`       | where `keyrot serve` listens                                      | `127.0.0.1:8080`            |
//! |                              | `KEYROT_LOG`                   | `--log`          | the command's log filter                                          | `info`                      |
//! |                              | `KEYROT_ENDPOINT`              | `--endpoint`     | the API `keyrot token`/`get-key`/`credential-process` call        | required by them            |
//! | `[aws] region`               | `AWS_REGION`                   | `--region`       | the AWS region                                                    | aws-config's chain          |
//! | `[aws] endpoint_url`         | `AWS_ENDPOINT_URL`             | `--endpoint-url` | one endpoint for every AWS service (an emulator)                  | AWS's                       |
//! | `[aws] profile`              |                                |                  | the shared config files' profile                                  | aws-config's chain          |
//! | `[aws] secret_prefix`        | `KEYROT_SECRET_PREFIX`         |                  | per-user secrets are `<prefix><UserName>`                         | `keyrot/users/`             |
//! | `[aws] lease_table`          | `KEYROT_LEASE_TABLE`           |                  | the DynamoDB table of the runs' claims on users                   | `keyrot-leases` (rotator: required) |
//! | `[aws] kms_key_id`           | `KEYROT_KMS_KEY_ID`            |                  | a customer KMS key for new secrets                                | the account's key           |
//! | `[aws] alert_from`           | `KEYROT_ALERT_FROM`            |                  | the SES sender of alerts (with `alert_to`)                        | alerts are logged           |
//! | `[aws] alert_to`             | `KEYROT_ALERT_TO`              |                  | administrators' addresses (a list; commas in the variable)        | alerts are logged           |
//! | `[aws] alert_repeat_after`   | `KEYROT_ALERT_REPEAT_AFTER`    |                  | a standing condition is mailed again after this long              | `1d`                        |
//! | `[aws] alert_webhook_secret` | `KEYROT_ALERT_WEBHOOK_SECRET`  |                  | the secret holding a Slack-compatible incoming webhook's URL (notices posted there too) | no webhook |
//! | `[aws] retry_mode`           | `KEYROT_AWS_RETRY_MODE`        |                  | the SDK's retry mode: `standard` or `adaptive`                    | `standard`                  |
//! | `[aws] max_attempts`         | `KEYROT_AWS_MAX_ATTEMPTS`      |                  | attempts per AWS call, 1 to 20, the first included                | `5`                         |
//! | `[aws] connect_timeout`      | `KEYROT_AWS_CONNECT_TIMEOUT`   |                  | time allowed to open a connection                                 | 3.1 s                       |
//! | `[aws] operation_timeout`    | `KEYROT_AWS_OPERATION_TIMEOUT` |                  | time allowed for one call, retries included                       | `60s`                       |
//! | `[aws] signing_key_secret`   | `KEYROT_SIGNING_KEY_SECRET`    |                  | the secret holding the API's JWT signing keys                     | API function: required      |
//! | `[aws] clients_secret`       | `KEYROT_CLIENTS_SECRET`        |                  | the secret holding the API's client registry                      | API function: required      |
//! | `[api] issuer`               | `KEYROT_TOKEN_ISSUER`          |                  | the tokens' `iss`                                                 | `keyrot`                    |
//! | `[api] audience`             | `KEYROT_TOKEN_AUDIENCE`        |                  | the tokens' `aud`                                                 | `keyrot-api`                |
//! | `[api] token_ttl`            | `KEYROT_TOKEN_TTL`             |                  | how long a token lives, at most `1h`                              | `2m`                        |
//! | `[api] key_cache_ttl`        | `KEYROT_KEY_CACHE_TTL`         |                  | how long a fetched key is served from memory; below `grace`; `0s`: off | `30s` (serve: a quarter of a shorter grace) |
//! |                              | `KEYROT_API_SECRETS_TTL`       |                  | how long the API function uses the signing keys and registry it read | `60s`                    |
//! | `[api] client_rate_limit`    | `KEYROT_CLIENT_RATE_LIMIT`     | `--client-rate-limit` | requests per authenticated client (`N/duration`; `off`)      | `60/1m`                     |
//! | `[api] source_rate_limit`    | `KEYROT_SOURCE_RATE_LIMIT`     | `--source-rate-limit` | requests per source address, IPv6 by /64 (`N/duration`; `off`) | `300/1m`                 |
//! | `[serve] tls_cert`           | `KEYROT_TLS_CERT`              | `--tls-cert`     | `serve`'s TLS certificate chain (PEM), reloaded when it changes   | none: plain HTTP, loopback only |
//! | `[serve] tls_key`            | `KEYROT_TLS_KEY`               | `--tls-key`      | `serve`'s TLS private key (PEM), reloaded when it changes         | none (with `tls_cert`)      |
//! | `[serve] header_timeout`     | `KEYROT_HEADER_TIMEOUT`        | `--header-timeout` | time to send a request's head (and the TLS handshake)           | `10s`                       |
//! | `[serve] request_timeout`    | `KEYROT_REQUEST_TIMEOUT`       | `--request-timeout` | time to send a request's body and be answered                  | `30s`                       |
//! | `[serve] idle_timeout`       | `KEYROT_IDLE_TIMEOUT`          | `--idle-timeout` | time an idle keep-alive connection stays open                     | `60s`                       |
//! | `[serve] max_connections`    | `KEYROT_MAX_CONNECTIONS`       | `--max-connections` | connections held open at once (more wait to be accepted)       | `256`                       |
//! | `[serve] shutdown_timeout`   | `KEYROT_SHUTDOWN_TIMEOUT`      | `--shutdown-timeout` | time open requests get to finish after SIGTERM or Ctrl-C      | `10s`                       |
//! |                              | `KEYROT_METRICS_NAMESPACE`     |                  | the Lambda functions' CloudWatch namespace                        | `keyrot`                    |
//! | `[policy] rotation_period`   | `KEYROT_ROTATION_PERIOD`       |                  | a key is replaced after this long                                 | `90d`                       |
//! | `[policy] grace`             | `KEYROT_GRACE_PERIOD`          |                  | a superseded key stays active at least this long                  | `7d`                        |
//! | `[policy] max_grace`         | `KEYROT_MAX_GRACE_PERIOD`      |                  | ... and at most this long, even while in use                      | `14d`                       |
//! | `[policy] recovery_window`   | `KEYROT_RECOVERY_WINDOW`       |                  | a deactivated key can be rolled back to this long                 | `7d`                        |
//! | `[policy] quiet_period`      | `KEYROT_QUIET_PERIOD`          |                  | a key unused this long counts as idle                             | `1d`                        |
//! | `[policy] last_used_lag`     | `KEYROT_LAST_USED_LAG`         |                  | how late IAM reports a key's last use                             | `4h`                        |
//! | `[policy] verify_timeout`    | `KEYROT_VERIFY_TIMEOUT`        |                  | how long a new key may take to authenticate                       | `5m`                        |
//! | `[policy] schedule_interval` | `KEYROT_SCHEDULE_INTERVAL`     |                  | how often `keyrot serve` runs a pass                              | `1h`                        |
//! | `[policy] managed_tag`       | `KEYROT_MANAGED_TAG`           |                  | users carrying this `key=value` IAM tag are managed               | `keyrot:managed=true`       |
//! | `[policy] users`             | `KEYROT_USERS`                 |                  | exactly these users are managed instead (a list)                  | select by tag               |
//! | `[policy] exempt`            | `KEYROT_EXEMPT_USERS`          |                  | users never touched (a list)                                      | none                        |
//! | `[org] include`              | `KEYROT_ORG_INCLUDE`           |                  | accounts and OUs in scope (a list of ids; nested OUs included)    | the whole organization      |
//! | `[org] exclude`              | `KEYROT_ORG_EXCLUDE`           |                  | accounts and OUs out of scope, whatever `include` says (a list)   | none                        |
//! | `[org] exempt`               | `KEYROT_ORG_EXEMPT`            |                  | accounts never touched, not even with `--account` (a list)        | none                        |
//! | `[org] member_role`          | `KEYROT_MEMBER_ROLE`           |                  | the role assumed in each member account (a name, with its path)   | `keyrot-member`             |
//! | `[org] list_role`            | `KEYROT_ORG_LIST_ROLE`         |                  | a management-account role that can only list the organization (an ARN) | keyrot's own credentials |
//! | `[org] max_parallel_accounts` | `KEYROT_MAX_PARALLEL_ACCOUNTS` |                 | at most this many accounts run at once, 1 to 1000                 | `10`                        |
//! | `[delivery] users`           | `KEYROT_DELIVERY_USERS`        |                  | each user's destinations: a table `alice = "ci=ssm:REGION:NAME"` (`alice: ...; bob: ...` in the variable) | none |
//! | `[delivery] user_tags`       | `KEYROT_DELIVERY_USER_TAGS`    |                  | also read destinations from each user's `keyrot:deliver` tag (`true`/`false`) | `false`     |
//! | `[delivery] github_credential_secret` | `KEYROT_GITHUB_CREDENTIAL_SECRET` |     | the secret (name or ARN) with the GitHub App or token for GitHub destinations | none        |
//! | `[delivery] github_api_url`  | `KEYROT_GITHUB_API_URL`        |                  | GitHub's REST API (a GitHub Enterprise Server's `https://HOST/api/v3`) | `https://api.github.com` |
//! |                              | `KEYROT_REPORT_BUCKET`         |                  | the Lambda functions' reports bucket (the rotator writes, the API's admin routes read) | none |
//!
//! Durations are whole numbers with units, largest first (`90d`, `1h30m`, `45s`; see
//! [`keyrot_core::duration`]).
//!
//! ```
//! use keyrot_config::{Setting, Sources, lookup_in};
//! use keyrot_core::settings::PolicySettings;
//!
//! let lambda = Sources::lambda(lookup_in(&[("KEYROT_GRACE_PERIOD", "1 week")]));
//! let err = lambda.policy(&PolicySettings::default()).unwrap_err();
//! assert_eq!(err.setting(), Some(Setting::Grace));
//! assert!(err.chain().starts_with("KEYROT_GRACE_PERIOD: \"1 week\" is not a duration"));
//!
//! let cli = Sources::command_line(
//!     &[(Setting::Region, Some("eu-west-1".into()))],
//!     lookup_in(&[("KEYROT_GRACE_PERIOD", "1 week")]),
//! )?;
//! assert_eq!(cli.aws()?.region.as_deref(), Some("eu-west-1"));
//! assert_eq!(cli.policy(&PolicySettings::default()).unwrap_err().chain(), err.chain());
//! # Ok::<(), keyrot_config::ConfigError>(())
//! ```

mod delivery;
mod error;
mod org;
mod resolve;
mod serve;
mod setting;
mod sources;

pub use error::{ConfigError, Reason};
pub use resolve::{
    ADMIN_API_KEY_VAR, API_KEY_VAR, ApiSettings, BackendKind, DEFAULT_API_SECRETS_TTL,
    DEFAULT_AUDIENCE, DEFAULT_ISSUER, DEFAULT_KEY_CACHE_TTL, DEFAULT_LISTEN, DEFAULT_LOG,
    DEFAULT_NAMESPACE,
};
pub use serve::{
    DEFAULT_HEADER_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_SHUTDOWN_TIMEOUT, ServeSettings, Tls,
};
pub use setting::{Name, Setting, Source, Spelling};
pub use sources::{Sources, Value, lookup_in};

#[cfg(test)]
mod tests;
