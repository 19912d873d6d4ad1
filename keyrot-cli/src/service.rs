//! The service assembled from the configuration: the rotator on a backend, and the API.

use std::sync::Arc;

use keyrot_api::{Api, ApiConfig};
use keyrot_aws::{AwsClients, SystemClock, load_api_secrets};
use keyrot_core::token::{ADMIN, ApiKey, ApiKeyDigest, ClientRegistry, SigningKey};
use keyrot_core::{BoxError, Clock, Policy, Ports, Rotator};

use keyrot_config::Setting;

use crate::config::{BackendKind, Config, ConfigError};
use crate::embedded::Embedded;
use crate::random_bytes;

/// A backend and the rotator running on it.
#[derive(Debug)]
pub struct Backend {
    /// Which kind.
    pub kind: BackendKind,
    /// The rotation policy.
    pub policy: Policy,
    /// The ports.
    pub ports: Ports,
    /// The rotator.
    pub rotator: Arc<Rotator>,
    /// The in-memory services, for the embedded backend.
    pub embedded: Option<Embedded>,
    /// The SDK clients, for the AWS backend.
    pub clients: Option<AwsClients>,
}

/// The API keys of the embedded backend's demo clients.
#[derive(Debug)]
pub struct DemoKeys {
    /// Client `demo`: every user's current key.
    pub client: String,
    /// Client `demo-admin`: the admin right (`keyrot status --endpoint`), no user's key.
    pub admin: String,
}

/// Why the service could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The configuration is not usable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The operating system's random source failed (its source says how).
    #[error(transparent)]
    Random(#[from] crate::RandomError),
    /// A setting the API on AWS needs is not set.
    #[error(
        "the API on AWS needs {what}: set {variable} or {key} in the config file{}",
        if *.detected {
            " (the AWS backend was chosen because AWS credentials or an endpoint are \
             configured; for the local demo run `keyrot serve --backend embedded`)"
        } else {
            ""
        }
    )]
    Missing {
        /// What is missing, in words.
        what: &'static str,
        /// The variable that sets it.
        variable: &'static str,
        /// The config file key that sets it.
        key: String,
        /// Whether the AWS backend was detected rather than chosen.
        detected: bool,
    },
    /// Part of the API could not be set up.
    #[error("could not set up the API's {what}")]
    Api {
        /// Which part.
        what: &'static str,
        /// Why.
        #[source]
        source: BoxError,
    },
}

/// `error` as the [`ServiceError::Api`] of setting up `what`.
fn api_error<E: std::error::Error + Send + Sync + 'static>(
    what: &'static str,
) -> impl FnOnce(E) -> ServiceError {
    move |e| ServiceError::Api {
        what,
        source: Box::new(e),
    }
}

impl Backend {
    /// Opens the configured backend.
    pub async fn open(config: &Config) -> Result<Self, ServiceError> {
        let policy = config.policy_for(config.backend)?;
        let (ports, embedded, clients) = match config.backend {
            BackendKind::Embedded => {
                let seed = u64::from_le_bytes(random_bytes()?);
                let embedded = Embedded::start(SystemClock.now(), seed);
                (embedded.ports(), Some(embedded), None)
            }
            BackendKind::Aws => {
                let clients = AwsClients::from_settings(&config.aws).await;
                (config.backend_settings.ports(&clients), None, Some(clients))
            }
        };
        let rotator = config
            .backend_settings
            .with_alert_settings(Rotator::new(ports.clone(), policy.clone()));
        let rotator = match &clients {
            Some(clients) => config.backend_settings.with_delivery(rotator, clients),
            None => rotator,
        };
        let rotator = Arc::new(rotator);
        Ok(Self {
            kind: config.backend,
            policy,
            ports,
            rotator,
            embedded,
            clients,
        })
    }

    /// The API on this backend, its admin route answered by this backend's rotator. For the
    /// embedded backend it makes a signing key and two clients, loopback only, whose API keys
    /// are returned: show them once (`demo`: every user's key; `demo-admin`: the admin right
    /// alone). For AWS it loads the signing keys and the client registry from Secrets Manager.
    pub async fn api(&self, config: &Config) -> Result<(Api, Option<DemoKeys>), ServiceError> {
        let (signing, retired, registry, demo_key) = match &self.clients {
            None => {
                let signing = SigningKey::new("demo", random_bytes::<32>()?.to_vec())
                    .map_err(api_error("demo signing key"))?;
                let api_key = ApiKey::generate_from(random_bytes()?);
                let admin_key = ApiKey::generate_from(random_bytes()?);
                let registry = serde_json::json!({"clients": [{
                    "id": "demo",
                    "api_key_sha256": ApiKeyDigest::of(&api_key).to_hex(),
                    "scope": ["*"],
                    "allowed_cidrs": ["127.0.0.0/8", "::1/128"],
                }, {
                    "id": "demo-admin",
                    "api_key_sha256": ApiKeyDigest::of(&admin_key).to_hex(),
                    "scope": [ADMIN],
                    "allowed_cidrs": ["127.0.0.0/8", "::1/128"],
                }]});
                let registry = ClientRegistry::from_json(&registry.to_string())
                    .map_err(api_error("demo client registry"))?;
                let keys = DemoKeys {
                    client: api_key,
                    admin: admin_key,
                };
                (signing, Vec::new(), registry, Some(keys))
            }
            Some(clients) => {
                let missing = |what, setting: Setting| ServiceError::Missing {
                    what,
                    variable: setting.spelling().var.unwrap_or_default(),
                    key: setting.file_key().unwrap_or_default(),
                    detected: config.backend_detected,
                };
                let signing_secret =
                    config.api.signing_key_secret.as_deref().ok_or_else(|| {
                        missing("the signing key secret", Setting::SigningKeySecret)
                    })?;
                let clients_secret =
                    config.api.clients_secret.as_deref().ok_or_else(|| {
                        missing("the client registry secret", Setting::ClientsSecret)
                    })?;
                let (keys, registry) =
                    load_api_secrets(&clients.secrets, signing_secret, clients_secret)
                        .await
                        .map_err(api_error("signing keys and client registry"))?;
                (keys.active, keys.retired, registry, None)
            }
        };
        // The settings' rules are keyrot-config's, checked at load with a stand-in key.
        let tokens = config
            .api
            .token_policy(signing, retired)
            .map_err(api_error("token policy"))?;
        let mut api_config = ApiConfig::new(&self.policy);
        api_config.rate_limits = config.api.rate_limits;
        if let Some(ttl) = config.api.key_cache_ttl {
            api_config.cache_ttl = ttl;
        } else if api_config.cache_ttl >= self.policy.grace() {
            // The default TTL is for production grace periods; a demo's may be shorter.
            api_config.cache_ttl = self.policy.grace() / 4;
        }
        let mut api = Api::new(api_config, tokens, registry, self.ports.store.clone())
            .map_err(api_error("configuration"))?
            .with_status_source(self.rotator.clone());
        if let Some(clients) = &self.clients {
            // A member account's users (`account=ID`): the hub's secrets under the account's id.
            let (backend, hub) = (config.backend_settings.clone(), clients.clone());
            api = api.with_account_stores(Arc::new(move |account| {
                Arc::new(backend.account_store(&hub, account)) as Arc<dyn keyrot_core::SecretStore>
            }));
        }
        Ok((api, demo_key))
    }
}
