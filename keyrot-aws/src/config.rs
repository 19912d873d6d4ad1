//! Where the adapters' SDK clients come from: aws-config's standard chain, plus the overrides
//! keyrot's users need (an emulator's endpoint, retry and timeouts).

use std::time::Duration;

use aws_config::retry::{RetryConfig, RetryMode};

use crate::pressure::ThrottleCounter;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, Region, SdkConfig};

/// How to reach AWS. Every field is optional: what is left unset comes from aws-config's
/// standard chain (environment, shared config and credentials files, container and instance
/// metadata), including `AWS_REGION` and `AWS_ENDPOINT_URL`. Retries and timeouts always come
/// from here (with the defaults below), not from `AWS_RETRY_MODE` or `AWS_MAX_ATTEMPTS`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsSettings {
    /// The region, e.g. `eu-west-1`.
    pub region: Option<String>,
    /// One endpoint for every service, e.g. an emulator on `http://127.0.0.1:5000`.
    pub endpoint_url: Option<String>,
    /// The named profile of the shared config files.
    pub profile: Option<String>,
    /// Attempts per call, the first included; retries back off exponentially with jitter, so
    /// throttling is answered by waiting. Default 5.
    pub max_attempts: Option<u32>,
    /// The SDK's retry mode: `Standard` (default), or `Adaptive`, which also slows the client
    /// down on its own once it is throttled (useful for very many users in one run).
    pub retry_mode: Option<RetryMode>,
    /// The first retry's backoff; later ones grow exponentially. Default 1 s.
    pub initial_backoff: Option<Duration>,
    /// Time allowed to open a connection. Default 3.1 s.
    pub connect_timeout: Option<Duration>,
    /// Time allowed for one call, retries included. Default 60 s.
    pub operation_timeout: Option<Duration>,
}

impl AwsSettings {
    /// Settings that point every service at `endpoint_url`.
    pub fn with_endpoint(endpoint_url: impl Into<String>) -> Self {
        Self {
            endpoint_url: Some(endpoint_url.into()),
            ..Self::default()
        }
    }

    /// Resolves the settings through aws-config into one shared [`SdkConfig`].
    pub async fn load(&self) -> SdkConfig {
        self.loader().load().await
    }

    /// As [`AwsSettings::load`], but signing with this access key instead of the standard
    /// credential chain (an emulator's, or a key handed over by the caller).
    pub async fn load_with_key(&self, access_key_id: &str, secret_access_key: &str) -> SdkConfig {
        let key = aws_sdk_iam::config::Credentials::new(
            access_key_id,
            secret_access_key,
            None,
            None,
            "keyrot-static",
        );
        self.loader().credentials_provider(key).load().await
    }

    fn loader(&self) -> ConfigLoader {
        let retry = RetryConfig::standard()
            .with_retry_mode(self.retry_mode.unwrap_or(RetryMode::Standard))
            .with_max_attempts(self.max_attempts.unwrap_or(5))
            .with_initial_backoff(self.initial_backoff.unwrap_or(Duration::from_secs(1)));
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(self.connect_timeout.unwrap_or(Duration::from_millis(3100)))
            .operation_timeout(self.operation_timeout.unwrap_or(Duration::from_secs(60)))
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(retry)
            .timeout_config(timeouts);
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(profile) = &self.profile {
            loader = loader.profile_name(profile);
        }
        loader
    }
}

/// The SDK clients, built once from one [`SdkConfig`] and shared (cloning is cheap: the
/// clients share their connection pool).
#[derive(Debug, Clone)]
pub struct AwsClients {
    /// The configuration the clients were built from.
    pub config: SdkConfig,
    /// IAM.
    pub iam: aws_sdk_iam::Client,
    /// Secrets Manager.
    pub secrets: aws_sdk_secretsmanager::Client,
    /// SES v2.
    pub ses: aws_sdk_sesv2::Client,
    /// DynamoDB (the lease table).
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// S3 (reports and summaries, see [`Objects`](crate::Objects)).
    pub s3: aws_sdk_s3::Client,
    /// The throttling answers the clients met, retried attempts included: the rotator's
    /// adaptive concurrency follows it.
    pub pressure: ThrottleCounter,
}

impl AwsClients {
    /// Clients for every service keyrot calls, from `config`, each counting its throttling
    /// answers in [`AwsClients::pressure`].
    pub fn new(config: SdkConfig) -> Self {
        let pressure = ThrottleCounter::default();
        let iam = aws_sdk_iam::config::Builder::from(&config)
            .interceptor(pressure.clone())
            .build();
        let secrets = aws_sdk_secretsmanager::config::Builder::from(&config)
            .interceptor(pressure.clone())
            .build();
        let ses = aws_sdk_sesv2::config::Builder::from(&config)
            .interceptor(pressure.clone())
            .build();
        let dynamodb = aws_sdk_dynamodb::config::Builder::from(&config)
            .interceptor(pressure.clone())
            .build();
        // An emulator on an address (`http://127.0.0.1:5000`) has no bucket subdomains.
        let s3 = aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(config.endpoint_url().is_some())
            .interceptor(pressure.clone())
            .build();
        Self {
            iam: aws_sdk_iam::Client::from_conf(iam),
            s3: aws_sdk_s3::Client::from_conf(s3),
            secrets: aws_sdk_secretsmanager::Client::from_conf(secrets),
            ses: aws_sdk_sesv2::Client::from_conf(ses),
            dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb),
            pressure,
            config,
        }
    }

    /// Loads `settings` and builds the clients.
    pub async fn from_settings(settings: &AwsSettings) -> Self {
        Self::new(settings.load().await)
    }
}
