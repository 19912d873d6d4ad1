//! The command's configuration: a TOML file, then `KEYROT_*` environment variables, then
//! flags, each layer overriding the one before; checked once, with errors that name the
//! setting.
//!
//! ```toml
//! backend = "aws"                  # or "embedded"; default: aws when an endpoint or AWS
//!                                  # credentials are configured, embedded otherwise
//! listen = "127.0.0.1:8080"
//!
//! [policy]                         # keyrot_core::settings::PolicySettings
//! rotation_period = "90d"
//! grace = "7d"
//! exempt = ["breakglass"]
//!
//! [aws]
//! region = "eu-west-1"
//! endpoint_url = "http://127.0.0.1:5000"
//! secret_prefix = "keyrot/users/"
//! lease_table = "keyrot-leases"   # the runs' claims on users (DynamoDB); also KEYROT_LEASE_TABLE
//! alert_from = "keyrot@example.com"
//! alert_to = ["ops@example.com"]
//! alert_repeat_after = "1d"       # a standing condition is mailed again after this long
//! retry_mode = "standard"         # or "adaptive"; max_attempts = 5
//! operation_timeout = "60s"       # and connect_timeout = "3s"
//! signing_key_secret = "keyrot/api/signing-key"
//! clients_secret = "keyrot/api/clients"
//!
//! [api]
//! issuer = "keyrot"
//! audience = "keyrot-api"
//! token_ttl = "2m"
//! key_cache_ttl = "30s"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use keyrot_aws::{AwsSettings, BackendSettings, RetryMode, check_table_name};
use keyrot_core::Policy;
use keyrot_core::settings::{PolicySettings, SettingsError, parse_duration};
use serde::Deserialize;

/// Where `keyrot serve` listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Which backend the service runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// In-memory IAM and Secrets Manager seeded with demo users: no AWS account needed.
    Embedded,
    /// AWS, or any AWS-compatible endpoint.
    Aws,
}

/// The configuration file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    backend: Option<BackendKind>,
    listen: Option<String>,
    #[serde(default)]
    policy: PolicySettings,
    #[serde(default)]
    aws: AwsSection,
    #[serde(default)]
    api: ApiSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AwsSection {
    region: Option<String>,
    endpoint_url: Option<String>,
    profile: Option<String>,
    secret_prefix: Option<String>,
    lease_table: Option<String>,
    kms_key_id: Option<String>,
    alert_from: Option<String>,
    alert_to: Option<Vec<String>>,
    alert_repeat_after: Option<String>,
    retry_mode: Option<String>,
    max_attempts: Option<u32>,
    connect_timeout: Option<String>,
    operation_timeout: Option<String>,
    signing_key_secret: Option<String>,
    clients_secret: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiSection {
    issuer: Option<String>,
    audience: Option<String>,
    token_ttl: Option<String>,
    key_cache_ttl: Option<String>,
}

/// What the flags say (every field optional: unset flags leave the lower layers alone).
#[derive(Debug, Default, Clone)]
pub struct Flags {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--backend`.
    pub backend: Option<BackendKind>,
    /// `--endpoint-url`.
    pub endpoint_url: Option<String>,
    /// `--region`.
    pub region: Option<String>,
    /// `--listen`.
    pub listen: Option<String>,
}

/// The API's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSettings {
    /// The tokens' `iss`.
    pub issuer: String,
    /// The tokens' `aud`.
    pub audience: String,
    /// How long a token lives.
    pub token_ttl: Duration,
    /// How long a fetched key is served from memory (shorter than the grace period).
    pub key_cache_ttl: Option<Duration>,
    /// The secret holding the signing keys (AWS backend).
    pub signing_key_secret: Option<String>,
    /// The secret holding the client registry (AWS backend).
    pub clients_secret: Option<String>,
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The backend.
    pub backend: BackendKind,
    /// Whether the backend was chosen because AWS settings were found, not asked for.
    pub backend_detected: bool,
    /// Where `serve` listens.
    pub listen: SocketAddr,
    /// The policy settings as given (the embedded backend lays them over its demo policy).
    pub policy: PolicySettings,
    /// How to reach AWS.
    pub aws: AwsSettings,
    /// Where secrets live and alerts go.
    pub backend_settings: BackendSettings,
    /// The API.
    pub api: ApiSettings,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped settings.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line.
        message: String,
    },
    /// A setting has a bad value.
    #[error("{setting}: {message}")]
    Invalid {
        /// The setting (file key, variable or flag).
        setting: String,
        /// What is wrong.
        message: String,
    },
    /// The policy settings are not usable.
    #[error(transparent)]
    Policy(#[from] SettingsError),
}

impl Config {
    /// Reads the file (`--config`, else `KEYROT_CONFIG`, else none), the environment through
    /// `env`, and `flags`, in that order of precedence (flags win).
    pub fn load(flags: &Flags, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let path = flags
            .config
            .clone()
            .or_else(|| get("KEYROT_CONFIG").map(PathBuf::from));
        let file = match &path {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let policy = file.policy.overlay(PolicySettings::from_env(get)?);

        let backend = match flags.backend {
            Some(kind) => Some(kind),
            None => match get("KEYROT_BACKEND") {
                Some(v) => Some(parse_backend("KEYROT_BACKEND", &v)?),
                None => file.backend,
            },
        };
        let endpoint_url = flags
            .endpoint_url
            .clone()
            .or_else(|| get("AWS_ENDPOINT_URL"))
            .or(file.aws.endpoint_url);
        let aws_configured = endpoint_url.is_some()
            || file.aws.profile.is_some()
            || aws_credentials_configured(&get);
        let backend_detected = backend.is_none() && aws_configured;
        let backend = backend.unwrap_or(if aws_configured {
            BackendKind::Aws
        } else {
            BackendKind::Embedded
        });

        let listen_text = flags
            .listen
            .clone()
            .or_else(|| get("KEYROT_LISTEN"))
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = listen_text.parse().map_err(|_| ConfigError::Invalid {
            setting: "listen".into(),
            message: format!("{listen_text:?} is not an address and port, e.g. 127.0.0.1:8080"),
        })?;

        let retry_mode = file
            .aws
            .retry_mode
            .as_deref()
            .map(|text| {
                text.parse::<RetryMode>().map_err(|_| ConfigError::Invalid {
                    setting: "aws.retry_mode".into(),
                    message: format!("{text:?} is not a retry mode: use standard or adaptive"),
                })
            })
            .transpose()?;
        if file.aws.max_attempts == Some(0) {
            return Err(ConfigError::Invalid {
                setting: "aws.max_attempts".into(),
                message: "must be at least 1 (the first attempt counts)".into(),
            });
        }
        let aws = AwsSettings {
            region: flags
                .region
                .clone()
                .or_else(|| get("AWS_REGION"))
                .or(file.aws.region),
            endpoint_url,
            profile: file.aws.profile,
            max_attempts: file.aws.max_attempts,
            retry_mode,
            initial_backoff: None,
            connect_timeout: duration("aws.connect_timeout", file.aws.connect_timeout)?,
            operation_timeout: duration("aws.operation_timeout", file.aws.operation_timeout)?,
        };
        let defaults = BackendSettings::default();
        let alert_to = get("KEYROT_ALERT_TO")
            .map(|v| split_list(&v))
            .or(file.aws.alert_to)
            .unwrap_or_default();
        let backend_settings = BackendSettings {
            secret_prefix: get("KEYROT_SECRET_PREFIX")
                .or(file.aws.secret_prefix)
                .unwrap_or(defaults.secret_prefix),
            lease_table: get("KEYROT_LEASE_TABLE")
                .or(file.aws.lease_table)
                .unwrap_or(defaults.lease_table),
            kms_key_id: get("KEYROT_KMS_KEY_ID").or(file.aws.kms_key_id),
            alert_from: get("KEYROT_ALERT_FROM").or(file.aws.alert_from),
            alert_to,
            alert_repeat_after: duration(
                "aws.alert_repeat_after",
                get("KEYROT_ALERT_REPEAT_AFTER").or(file.aws.alert_repeat_after),
            )?
            .unwrap_or(defaults.alert_repeat_after),
        };
        if backend_settings.alert_from.is_some() == backend_settings.alert_to.is_empty() {
            return Err(ConfigError::Invalid {
                setting: "aws.alert_from and aws.alert_to".into(),
                message: "set both (an SES sender and the administrators' addresses) or neither"
                    .into(),
            });
        }
        if let Some(bad) = backend_settings
            .alert_from
            .iter()
            .chain(&backend_settings.alert_to)
            .find(|a| !looks_like_address(a))
        {
            return Err(ConfigError::Invalid {
                setting: "aws.alert_from / aws.alert_to".into(),
                message: format!("{bad:?} is not an e-mail address"),
            });
        }
        if let Err(message) = check_table_name(&backend_settings.lease_table) {
            return Err(ConfigError::Invalid {
                setting: "aws.lease_table".into(),
                message: format!("{:?}: {message}", backend_settings.lease_table),
            });
        }
        if backend_settings.secret_prefix.is_empty() {
            return Err(ConfigError::Invalid {
                setting: "secret_prefix".into(),
                message: "must not be empty: keyrot's secrets need a prefix of their own".into(),
            });
        }

        let token_ttl = duration(
            "api.token_ttl",
            get("KEYROT_TOKEN_TTL").or(file.api.token_ttl),
        )?
        .unwrap_or(Duration::from_secs(120));
        let key_cache_ttl = duration(
            "api.key_cache_ttl",
            get("KEYROT_KEY_CACHE_TTL").or(file.api.key_cache_ttl),
        )?;
        let api = ApiSettings {
            issuer: get("KEYROT_TOKEN_ISSUER")
                .or(file.api.issuer)
                .unwrap_or_else(|| "keyrot".into()),
            audience: get("KEYROT_TOKEN_AUDIENCE")
                .or(file.api.audience)
                .unwrap_or_else(|| "keyrot-api".into()),
            token_ttl,
            key_cache_ttl,
            signing_key_secret: get("KEYROT_SIGNING_KEY_SECRET").or(file.aws.signing_key_secret),
            clients_secret: get("KEYROT_CLIENTS_SECRET").or(file.aws.clients_secret),
        };

        let config = Self {
            backend,
            backend_detected,
            listen,
            policy,
            aws,
            backend_settings,
            api,
        };
        // Check the policy now, so every command fails early on a bad one.
        config.policy_for(backend)?;
        Ok(config)
    }

    /// The rotation policy: the settings laid over the demo policy for the embedded
    /// backend, over the production defaults for AWS.
    pub fn policy_for(&self, backend: BackendKind) -> Result<Policy, ConfigError> {
        let base = match backend {
            BackendKind::Embedded => crate::embedded::demo_policy_settings(),
            BackendKind::Aws => PolicySettings::default(),
        };
        Ok(base.overlay(self.policy.clone()).policy()?)
    }
}

/// Whether the environment points aws-config's credential chain somewhere: keys, a profile, a
/// container or web-identity role, or shared config files. (An EC2 instance role cannot be
/// seen without asking the instance metadata service: pass `--backend aws` there.)
fn aws_credentials_configured(get: &dyn Fn(&str) -> Option<String>) -> bool {
    const VARS: [&str; 6] = [
        "AWS_ACCESS_KEY_ID",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
    ];
    if VARS.iter().any(|v| get(v).is_some()) {
        return true;
    }
    let home = get("HOME").map(PathBuf::from);
    let file = |var: &str, default: &str| {
        get(var)
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws").join(default)))
    };
    [
        file("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
        file("AWS_CONFIG_FILE", "config"),
    ]
    .into_iter()
    .flatten()
    .any(|path| path.is_file())
}

/// `value` read as a duration, if set; an error names `setting`.
fn duration(setting: &str, value: Option<String>) -> Result<Option<Duration>, ConfigError> {
    value
        .map(|v| {
            parse_duration(&v).map_err(|e| ConfigError::Invalid {
                setting: setting.to_owned(),
                message: e.to_string(),
            })
        })
        .transpose()
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })
}

fn parse_backend(setting: &str, value: &str) -> Result<BackendKind, ConfigError> {
    match value.trim() {
        "embedded" => Ok(BackendKind::Embedded),
        "aws" => Ok(BackendKind::Aws),
        other => Err(ConfigError::Invalid {
            setting: setting.into(),
            message: format!("{other:?} is not a backend: use embedded or aws"),
        }),
    }
}

fn looks_like_address(address: &str) -> bool {
    address
        .split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !address.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use keyrot_core::settings::lookup_in as env;

    use super::*;

    /// A configuration file holding `text`, one file per call.
    fn file(text: &str) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!("keyrot-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join(format!("{n}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn nothing_configured_means_the_embedded_backend_on_loopback() {
        let config = Config::load(&Flags::default(), &env(&[])).unwrap();
        assert_eq!(config.backend, BackendKind::Embedded);
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        let policy = config.policy_for(config.backend).unwrap();
        assert!(
            policy.rotation_period() <= Duration::from_secs(600),
            "a fast demo policy"
        );
    }

    #[test]
    fn an_endpoint_or_credentials_mean_aws() {
        let flags = Flags {
            endpoint_url: Some("http://127.0.0.1:5000".into()),
            ..Flags::default()
        };
        assert_eq!(
            Config::load(&flags, &env(&[])).unwrap().backend,
            BackendKind::Aws
        );
        for var in [
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
        ] {
            let config = Config::load(&Flags::default(), &env(&[(var, "x")])).unwrap();
            assert_eq!(config.backend, BackendKind::Aws, "{var}");
        }
        // A shared credentials file counts (the default profile).
        let home = std::env::temp_dir().join(format!("keyrot-home-{}", std::process::id()));
        std::fs::create_dir_all(home.join(".aws")).unwrap();
        std::fs::write(home.join(".aws/credentials"), "[default]\n").unwrap();
        let home = home.to_str().unwrap();
        let config = Config::load(&Flags::default(), &env(&[("HOME", home)])).unwrap();
        assert_eq!(config.backend, BackendKind::Aws);
        let config = Config::load(&Flags::default(), &env(&[("AWS_PROFILE", "ops")])).unwrap();
        assert_eq!(config.backend, BackendKind::Aws);
        assert_eq!(
            config.policy_for(config.backend).unwrap().rotation_period(),
            Duration::from_secs(90 * 24 * 3600)
        );
        // An explicit choice wins.
        let config = Config::load(
            &Flags::default(),
            &env(&[("AWS_PROFILE", "ops"), ("KEYROT_BACKEND", "embedded")]),
        )
        .unwrap();
        assert_eq!(config.backend, BackendKind::Embedded);
    }

    #[test]
    fn aws_retries_and_timeouts_come_from_the_file() {
        let flags = Flags {
            config: Some(file(
                "[aws]\nretry_mode = \"adaptive\"\nmax_attempts = 8\noperation_timeout = \"2m\"\nconnect_timeout = \"2s\"\n",
            )),
            backend: Some(BackendKind::Aws),
            ..Flags::default()
        };
        let aws = Config::load(&flags, &env(&[])).unwrap().aws;
        assert_eq!(aws.retry_mode, Some(RetryMode::Adaptive));
        assert_eq!(aws.max_attempts, Some(8));
        assert_eq!(aws.operation_timeout, Some(Duration::from_secs(120)));
        assert_eq!(aws.connect_timeout, Some(Duration::from_secs(2)));
    }

    #[test]
    fn flags_win_over_environment_over_file() {
        let path = file(
            "listen = \"127.0.0.1:1111\"\n[policy]\ngrace = \"2d\"\nquiet_period = \"1h\"\nlast_used_lag = \"1h\"\n[aws]\nsecret_prefix = \"file/\"\n",
        );
        let flags = Flags {
            config: Some(path),
            listen: Some("127.0.0.1:3333".into()),
            backend: Some(BackendKind::Aws),
            ..Flags::default()
        };
        let config = Config::load(
            &flags,
            &env(&[
                ("KEYROT_LISTEN", "127.0.0.1:2222"),
                ("KEYROT_GRACE_PERIOD", "3d"),
                ("KEYROT_SECRET_PREFIX", "env/"),
            ]),
        )
        .unwrap();
        assert_eq!(config.listen.port(), 3333);
        assert_eq!(config.backend_settings.secret_prefix, "env/");
        let policy = config.policy_for(BackendKind::Aws).unwrap();
        assert_eq!(policy.grace(), Duration::from_secs(3 * 24 * 3600));
        assert_eq!(policy.quiet_period(), Duration::from_secs(3600));
    }

    #[test]
    fn the_lease_table_is_the_default_stacks_unless_named() {
        let aws = Flags {
            backend: Some(BackendKind::Aws),
            ..Flags::default()
        };
        let table = |flags: &Flags, vars: &[(&str, &str)]| {
            Config::load(flags, &env(vars))
                .unwrap()
                .backend_settings
                .lease_table
        };
        assert_eq!(table(&aws, &[]), keyrot_aws::DEFAULT_LEASE_TABLE);
        let in_file = Flags {
            config: Some(file("[aws]\nlease_table = \"prod-keyrot-leases\"\n")),
            ..aws
        };
        assert_eq!(table(&in_file, &[]), "prod-keyrot-leases");
        let arn = "arn:aws:dynamodb:eu-west-1:123456789012:table/other-leases";
        assert_eq!(table(&in_file, &[("KEYROT_LEASE_TABLE", arn)]), arn);
    }

    #[test]
    fn bad_settings_name_themselves() {
        type Case = (Flags, Vec<(&'static str, &'static str)>, &'static str);
        let cases: Vec<Case> = vec![
            (
                Flags {
                    listen: Some("localhost".into()),
                    ..Flags::default()
                },
                vec![],
                "listen: ",
            ),
            (
                Flags::default(),
                vec![("KEYROT_BACKEND", "gcp")],
                "KEYROT_BACKEND: ",
            ),
            (
                Flags::default(),
                vec![("KEYROT_TOKEN_TTL", "soon")],
                "api.token_ttl: ",
            ),
            (
                Flags::default(),
                vec![("KEYROT_ROTATION_PERIOD", "1x")],
                "KEYROT_ROTATION_PERIOD: ",
            ),
            (Flags::default(), vec![("KEYROT_SECRET_PREFIX", "")], ""),
            (
                Flags::default(),
                vec![("KEYROT_ALERT_FROM", "keyrot@example.com")],
                "set both",
            ),
            (
                Flags::default(),
                vec![("KEYROT_ALERT_TO", "ops@example.com")],
                "set both",
            ),
            (
                Flags::default(),
                vec![
                    ("KEYROT_ALERT_FROM", "keyrot@example.com"),
                    ("KEYROT_ALERT_TO", "ops, sec@example.com"),
                ],
                "\"ops\" is not an e-mail address",
            ),
            (
                Flags {
                    config: Some(file("nonsense = 1\n")),
                    ..Flags::default()
                },
                vec![],
                "unknown field",
            ),
            (
                Flags {
                    config: Some(file("[policy]\ngrace = 7\n")),
                    ..Flags::default()
                },
                vec![],
                "grace",
            ),
            (
                Flags {
                    config: Some(PathBuf::from("/nonexistent/keyrot.toml")),
                    ..Flags::default()
                },
                vec![],
                "cannot read /nonexistent/keyrot.toml",
            ),
        ];
        let in_file = |text: &str| Flags {
            config: Some(file(text)),
            ..Flags::default()
        };
        let cases = cases.into_iter().chain([
            (
                in_file("[aws]\nretry_mode = \"eager\"\n"),
                vec![],
                "aws.retry_mode: ",
            ),
            (
                in_file("[aws]\nlease_table = \"my leases\"\n"),
                vec![],
                "aws.lease_table: \"my leases\": ",
            ),
            (
                in_file("[aws]\nmax_attempts = 0\n"),
                vec![],
                "aws.max_attempts: ",
            ),
            (
                in_file("[aws]\noperation_timeout = \"1 min\"\n"),
                vec![],
                "aws.operation_timeout: ",
            ),
        ]);
        for (flags, vars, expected) in cases {
            match Config::load(&flags, &env(&vars)) {
                Ok(_) if expected.is_empty() => {}
                Ok(_) => panic!("{vars:?} {flags:?}: accepted"),
                Err(e) => assert!(e.to_string().contains(expected), "{vars:?}: {e}"),
            }
        }
    }
}
