//! The command's configuration: keyrot-config's model read from a TOML file, then the
//! environment, then flags, each layer overriding the one before, setting by setting; checked
//! once, with errors that name the setting as it was written. keyrot-config's setting table
//! lists every file key, variable and flag.
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
//! lease_table = "keyrot-leases"   # the runs' claims on users (DynamoDB)
//! alert_from = "keyrot@example.com"
//! alert_to = ["ops@example.com"]
//! alert_repeat_after = "1d"       # a standing condition is mailed again after this long
//! retry_mode = "standard"         # or "adaptive"; max_attempts = 5
//! operation_timeout = "60s"       # and connect_timeout = "3s"
//! signing_key_secret = "keyrot/api/signing-key"
//! clients_secret = "keyrot/api/clients"
//!
//! [serve]                          # keyrot serve's edge
//! tls_cert = "/etc/keyrot/cert.pem" # with tls_key; required off loopback, reloaded on change
//! tls_key = "/etc/keyrot/key.pem"
//! header_timeout = "10s"           # request_timeout = "30s", idle_timeout = "60s"
//! max_connections = 256
//! shutdown_timeout = "10s"
//!
//! [api]
//! client_rate_limit = "60/1m"      # source_rate_limit = "300/1m"; "off" turns one off
//! issuer = "keyrot"
//! audience = "keyrot-api"
//! token_ttl = "2m"
//! key_cache_ttl = "30s"
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use keyrot_aws::{AwsSettings, BackendSettings};
pub use keyrot_config::{ApiSettings, BackendKind, ConfigError, DEFAULT_LISTEN, ServeSettings};
use keyrot_config::{Setting, Sources};
use keyrot_core::Policy;
use keyrot_core::settings::PolicySettings;

/// What the flags say (every field optional: unset flags leave the lower layers alone).
#[derive(Debug, Default, Clone)]
pub struct Flags {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--backend`.
    pub backend: Option<String>,
    /// `--endpoint-url`.
    pub endpoint_url: Option<String>,
    /// `--region`.
    pub region: Option<String>,
    /// `--listen`.
    pub listen: Option<String>,
    /// `serve`'s other flags (TLS, timeouts, limits), by the setting each sets.
    pub serve: Vec<(Setting, Option<String>)>,
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
    /// How `serve` holds its connections (TLS, timeouts, limits).
    pub serve: ServeSettings,
    /// The policy settings as given (the embedded backend lays them over its demo policy).
    pub policy: PolicySettings,
    /// How to reach AWS.
    pub aws: AwsSettings,
    /// Where secrets live and alerts go.
    pub backend_settings: BackendSettings,
    /// The API.
    pub api: ApiSettings,
    /// The organization's accounts (`--account`, `--org`).
    pub org: keyrot_aws::org::OrgSettings,
    /// The values and where each came from, to name a setting in an error.
    sources: Sources,
}

impl Config {
    /// Reads the file (`--config`, else `KEYROT_CONFIG`, else none), the environment through
    /// `env`, and `flags`, in that order of precedence (flags win).
    pub fn load(flags: &Flags, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut flag_values = vec![
            (
                Setting::Config,
                flags
                    .config
                    .as_ref()
                    .map(|p| p.to_string_lossy().into_owned()),
            ),
            (Setting::Backend, flags.backend.clone()),
            (Setting::EndpointUrl, flags.endpoint_url.clone()),
            (Setting::Region, flags.region.clone()),
            (Setting::Listen, flags.listen.clone()),
        ];
        flag_values.extend(flags.serve.iter().cloned());
        let sources = Sources::command_line(&flag_values, env)?;
        let aws = sources.aws()?;
        let asked = sources.backend_kind()?;
        let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let aws_configured =
            aws.endpoint_url.is_some() || aws.profile.is_some() || aws_credentials_configured(&get);
        let backend = asked.unwrap_or(if aws_configured {
            BackendKind::Aws
        } else {
            BackendKind::Embedded
        });
        let listen = sources.listen()?;
        let serve = sources.serve()?;
        let backend_settings = sources.backend()?;
        let policy = sources.policy_settings()?;
        // Check the policy now, so every command fails early on a bad one; the API's settings
        // are checked against it.
        let api = sources.api(&sources.policy(&policy_base(backend))?, None)?;
        Ok(Self {
            backend,
            backend_detected: asked.is_none() && aws_configured,
            listen,
            serve,
            policy,
            aws,
            backend_settings,
            api,
            org: sources.org()?,
            sources,
        })
    }

    /// Refuses plain HTTP off loopback (`keyrot serve` hands out keys); the other commands do
    /// not listen.
    pub fn check_listen(&self) -> Result<(), ConfigError> {
        self.sources.check_listen(self.listen, &self.serve)
    }

    /// The rotation policy: the settings laid over the demo policy for the embedded
    /// backend, over the production defaults for AWS.
    pub fn policy_for(&self, backend: BackendKind) -> Result<Policy, ConfigError> {
        self.sources.policy(&policy_base(backend))
    }
}

/// The policy the settings are laid over: the demo's for the embedded backend, the
/// production defaults for AWS.
fn policy_base(backend: BackendKind) -> PolicySettings {
    match backend {
        BackendKind::Embedded => crate::embedded::demo_policy_settings(),
        BackendKind::Aws => PolicySettings::default(),
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

#[cfg(test)]
mod tests {
    use keyrot_aws::RetryMode;
    use keyrot_config::lookup_in as env;
    use std::time::Duration;

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
            backend: Some("aws".into()),
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
            backend: Some("aws".into()),
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
            backend: Some("aws".into()),
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
                "KEYROT_TOKEN_TTL: \"soon\" is not a duration",
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
                "KEYROT_ALERT_TO is required when KEYROT_ALERT_FROM is set",
            ),
            (
                Flags::default(),
                vec![("KEYROT_ALERT_TO", "ops@example.com")],
                "KEYROT_ALERT_FROM is required when KEYROT_ALERT_TO is set",
            ),
            (
                Flags::default(),
                vec![
                    ("KEYROT_ALERT_FROM", "keyrot@example.com"),
                    ("KEYROT_ALERT_TO", "ops, sec@example.com"),
                ],
                "KEYROT_ALERT_TO: \"ops\" is not an email address",
            ),
            (
                Flags {
                    config: Some(file("nonsense = 1\n")),
                    ..Flags::default()
                },
                vec![],
                "has no setting nonsense",
            ),
            (
                Flags {
                    config: Some(file("[policy]\ngrace = 7\n")),
                    ..Flags::default()
                },
                vec![],
                "[policy] grace in ",
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
                "[aws] retry_mode in ",
            ),
            (
                in_file("[aws]\nlease_table = \"my leases\"\n"),
                vec![],
                ".toml: \"my leases\" is not a lease table: ",
            ),
            (
                in_file("[aws]\nmax_attempts = 0\n"),
                vec![],
                "[aws] max_attempts in ",
            ),
            (
                in_file("[aws]\noperation_timeout = \"1 min\"\n"),
                vec![],
                "[aws] operation_timeout in ",
            ),
        ]);
        for (flags, vars, expected) in cases {
            match Config::load(&flags, &env(&vars)) {
                Ok(_) if expected.is_empty() => {}
                Ok(_) => panic!("{vars:?} {flags:?}: accepted"),
                Err(e) => assert!(e.chain().contains(expected), "{vars:?}: {}", e.chain()),
            }
        }
    }
}
