//! The signing keys and the client registry: read on the first request rather than at cold
//! start, and again on the first request [`ApiFunctionConfig::api_secrets_ttl`] after they
//! were last read.
//!
//! A cold start reads nothing: the function is ready as soon as its configuration is checked
//! and its SDK clients built, and the first request, which Lambda hands over at once, pays
//! the two reads. Should that first reading fail (Secrets Manager down or slower than
//! [`SECRETS_RELOAD_TIMEOUT`], a secret missing or malformed), the request is a
//! `503 store_unavailable` (see [`Outcome::SecretsUnavailable`](super::Outcome)) and the next
//! request tries again; once the secrets have been read, a failed reading again keeps the last
//! good ones for another TTL.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use keyrot_api::{Api, ApiConfig, ApiConfigError};
use keyrot_aws::{ApiSecretsError, AwsClients, load_api_secrets};
use keyrot_core::driver::error_chain;
use keyrot_core::token::{ClientRegistry, TokenPolicy};
use keyrot_core::{SecretStore, Timestamp};
use tracing::{info, warn};

use super::SECRETS_RELOAD_TIMEOUT;
use crate::config::{ApiFunctionConfig, ConfigError};

/// Why the API's secrets could not be read, or the API not built with them.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The signing keys or the client registry could not be read or parsed.
    #[error("could not load the api's secrets")]
    Load(#[from] ApiSecretsError),
    /// The signing keys do not make a token policy with the configured token settings.
    #[error("the signing keys do not fit the token settings")]
    Policy(#[source] ConfigError),
    /// The API refused its configuration.
    #[error("invalid api configuration")]
    Api(#[from] ApiConfigError),
    /// Reading the secrets took longer than [`SECRETS_RELOAD_TIMEOUT`].
    #[error("reading the api's secrets took longer than {0:?}")]
    TimedOut(Duration),
}

/// The `Api` a function answers with: one for good, or one built from secrets it reads.
pub(super) enum LiveApi {
    /// Built by the caller; never read again.
    Fixed(Arc<Api>),
    /// Built from the secrets read on the first request, rebuilt a TTL later.
    Read(Box<Reading>),
}

/// What reading the secrets and building the `Api` take, and the `Api` built last.
pub(super) struct Reading {
    current: Mutex<Option<Current>>,
    config: ApiFunctionConfig,
    aws: AwsClients,
    store: Arc<dyn SecretStore>,
}

/// The `Api` answering now, and when its secrets were last read (or a reading failed).
struct Current {
    api: Arc<Api>,
    read_at: Timestamp,
}

impl fmt::Debug for LiveApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed(api) => f.debug_tuple("Fixed").field(api).finish(),
            Self::Read(reading) => {
                let current = reading.lock();
                f.debug_struct("Read")
                    .field("api", &current.as_ref().map(|c| &c.api))
                    .field("read_at", &current.as_ref().map(|c| c.read_at))
                    .field("config", &reading.config)
                    .finish_non_exhaustive()
            }
        }
    }
}

impl LiveApi {
    /// An `Api` built from `config`'s secrets, read through `aws` on the first request (not
    /// now), the users' keys read from `store`.
    pub(super) fn reading(
        config: ApiFunctionConfig,
        aws: AwsClients,
        store: Arc<dyn SecretStore>,
    ) -> Self {
        Self::Read(Box::new(Reading {
            current: Mutex::new(None),
            config,
            aws,
            store,
        }))
    }

    /// The `Api` to answer with at `now`: built with the secrets read now if none has been
    /// yet, rebuilt with fresh secrets if those it has were read a TTL ago or more (or, the
    /// clock having gone back, after `now`). Only the first reading's failure is an error;
    /// later ones keep the last good `Api` (see the module docs).
    pub(super) async fn at(&self, now: Timestamp) -> Result<Arc<Api>, SecretsError> {
        let reading = match self {
            Self::Fixed(api) => return Ok(Arc::clone(api)),
            Self::Read(reading) => reading,
        };
        let current = reading
            .lock()
            .as_ref()
            .map(|current| (Arc::clone(&current.api), current.read_at));
        // Boxed: the SDK calls' futures are large and deep, and only a reading needs them; a
        // request's future stays small (and within the compiler's type depth limit).
        match current {
            None => Box::pin(reading.first(now)).await,
            Some((api, read_at)) => {
                let fresh = Duration::try_from(now.duration_since(read_at))
                    .is_ok_and(|age| age < reading.config.api_secrets_ttl);
                if fresh {
                    Ok(api)
                } else {
                    Ok(Box::pin(reading.again(api, now)).await)
                }
            }
        }
    }
}

impl Reading {
    fn lock(&self) -> MutexGuard<'_, Option<Current>> {
        // A panic elsewhere cannot leave `Current` half written: it is set at once.
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the signing keys and the client registry, within [`SECRETS_RELOAD_TIMEOUT`].
    async fn secrets(&self) -> Result<(TokenPolicy, ClientRegistry), SecretsError> {
        let config = &self.config;
        let read = load_api_secrets(
            &self.aws.secrets,
            &config.signing_key_secret,
            &config.clients_secret,
        );
        let (keys, clients) = tokio::time::timeout(SECRETS_RELOAD_TIMEOUT, read)
            .await
            .map_err(|_| SecretsError::TimedOut(SECRETS_RELOAD_TIMEOUT))??;
        let tokens = config
            .token_policy(keys.active, keys.retired)
            .map_err(SecretsError::Policy)?;
        Ok((tokens, clients))
    }

    /// The first reading: the secrets read at `now` and the `Api` built with them.
    async fn first(&self, now: Timestamp) -> Result<Arc<Api>, SecretsError> {
        let (tokens, clients) = self.secrets().await?;
        let mut api_config = ApiConfig::new(&self.config.rotation);
        api_config.cache_ttl = self.config.key_cache_ttl;
        let backend = keyrot_aws::BackendSettings {
            secret_prefix: self.config.secret_prefix.clone(),
            ..keyrot_aws::BackendSettings::default()
        };
        let hub = self.aws.clone();
        // A member account's users (`account=ID`): the hub's secrets under the account's id.
        let accounts: keyrot_api::AccountStores = Arc::new(move |account| {
            Arc::new(backend.account_store(&hub, account)) as Arc<dyn SecretStore>
        });
        api_config.rate_limits = self.config.rate_limits;
        let mut api = Api::new(api_config, tokens, clients, Arc::clone(&self.store))?
            .with_account_stores(accounts);
        if let Some(bucket) = &self.config.report_bucket {
            let objects = keyrot_aws::Objects::new(self.aws.s3.clone(), bucket.clone());
            api = api.with_status_source(Arc::new(crate::report::LatestReport::new(objects)));
        }
        let api = Arc::new(api);
        let mut current = self.lock();
        // Another request may have read them meanwhile: the first to finish is kept.
        let current = current.get_or_insert_with(|| Current { api, read_at: now });
        info!("api secrets read");
        Ok(Arc::clone(&current.api))
    }

    /// Reads the secrets again at `now` for `api`, whose secrets are a TTL old: the `Api` with
    /// the new secrets, or, should that fail, `api` for another TTL.
    async fn again(&self, api: Arc<Api>, now: Timestamp) -> Arc<Api> {
        // The new secrets join the current Api's key cache: reading them again costs no key
        // reads.
        let rebuilt = match self.secrets().await {
            Ok((tokens, clients)) => Some(Arc::new(api.with_secrets(tokens, clients))),
            Err(e) => {
                warn!(
                    error = %error_chain(&e),
                    "could not read the api's secrets again; answering with those read before"
                );
                None
            }
        };
        let mut guard = self.lock();
        // Never `None` again once the first reading has set it.
        let Some(current) = guard.as_mut() else {
            return rebuilt.unwrap_or(api);
        };
        current.read_at = now;
        if let Some(rebuilt) = rebuilt {
            info!("api secrets read again");
            current.api = rebuilt;
        }
        Arc::clone(&current.api)
    }
}

#[cfg(test)]
mod tests {
    use keyrot_core::fake::{FakeAws, FaultRates};
    use keyrot_core::token::{ApiKey, ApiKeyDigest};
    use lambda_http::Body;
    use serde_json::{Value, json};

    use super::*;
    use crate::api::fixtures::{GENERATE_TOKEN, from_allowed_address, now};
    use crate::api::{ApiFunction, Handled, Outcome};

    /// The AWS clients of moto's shared server.
    async fn moto_aws() -> AwsClients {
        let moto = tokio::task::spawn_blocking(keyrot_aws::moto::Moto::shared)
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}"));
        AwsClients::new(moto.admin_config().await)
    }

    async fn create_secret(aws: &AwsClients, name: &str, value: String) {
        aws.secrets
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .unwrap();
    }

    fn signing_keys() -> String {
        json!({"kid": "k1", "secret": "0123456789abcdefghijABCDEFGHIJ0123456789"}).to_string()
    }

    /// A function of the default configuration with these secrets, read through `aws` (it
    /// reads them on its first request: none is read here).
    fn function_reading(
        aws: &AwsClients,
        signing_key_secret: &str,
        clients_secret: &str,
    ) -> ApiFunction {
        let config = ApiFunctionConfig::from_env(|name| match name {
            "KEYROT_SIGNING_KEY_SECRET" => Some(signing_key_secret.to_owned()),
            "KEYROT_CLIENTS_SECRET" => Some(clients_secret.to_owned()),
            _ => None,
        })
        .unwrap();
        assert_eq!(config.api_secrets_ttl, Duration::from_secs(60));
        let store = FakeAws::new(now(), 1, FaultRates::none()).store;
        ApiFunction::reading_secrets(config, aws.clone(), Arc::new(store))
    }

    /// A registry of `clients` (id and API key), each allowed from 52.255.255.0/24.
    fn registry(clients: &[(&str, &str)]) -> String {
        let clients: Vec<Value> = clients
            .iter()
            .map(|(id, key)| {
                json!({"id": id, "api_key_sha256": ApiKeyDigest::of(key).to_hex(),
                    "scope": ["ci-deployer"], "allowed_cidrs": ["52.255.255.0/24"]})
            })
            .collect();
        json!({ "clients": clients }).to_string()
    }

    /// A token request with `api_key` at `at`.
    async fn token_request(function: &ApiFunction, api_key: &str, at: Timestamp) -> Handled {
        let mut event: Value =
            serde_json::from_str(&GENERATE_TOKEN.replace("{{API_KEY}}", api_key)).unwrap();
        from_allowed_address(&mut event);
        function.handle(event, "lambda-id", at, "jti".into()).await
    }

    /// The status of a token request with `api_key` at `at`.
    async fn token_status(function: &ApiFunction, api_key: &str, at: Timestamp) -> i64 {
        token_request(function, api_key, at)
            .await
            .response
            .status_code
    }

    /// The registry changes in Secrets Manager (moto): a warm function follows a TTL later,
    /// and keeps the last good registry while the new one cannot be read.
    #[tokio::test]
    async fn a_warm_function_reads_its_secrets_again_after_the_ttl() {
        let aws = moto_aws().await;
        let (signing_key_secret, clients_secret) = (
            "keyrot-lambda-unit/reload/signing-key",
            "keyrot-lambda-unit/reload/clients",
        );
        let (old_key, new_key) = (
            ApiKey::generate_from([1; 32]),
            ApiKey::generate_from([2; 32]),
        );
        create_secret(&aws, signing_key_secret, signing_keys()).await;
        create_secret(&aws, clients_secret, registry(&[("old", &old_key)])).await;
        let set_registry = |value: String| {
            aws.secrets
                .put_secret_value()
                .secret_id(clients_secret)
                .secret_string(value)
                .send()
        };
        let function = function_reading(&aws, signing_key_secret, clients_secret);
        // (API key, seconds after the cold start, status of a token request).
        let expect = async |steps: &[(&str, u64, i64)]| {
            for &(key, seconds, status) in steps {
                let at = now() + Duration::from_secs(seconds);
                let name = if key == old_key { "old" } else { "new" };
                assert_eq!(
                    token_status(&function, key, at).await,
                    status,
                    "{name} at {seconds} s"
                );
            }
        };
        let (old, new) = (old_key.as_str(), new_key.as_str());
        expect(&[(old, 0, 200), (new, 0, 401)]).await;

        // The old client is removed, a new one added.
        set_registry(registry(&[("new", new)])).await.unwrap();
        expect(&[
            (new, 59, 401),
            (old, 59, 200),
            (old, 60, 401),
            (new, 60, 200),
        ])
        .await;

        // A registry that cannot be read: the last good one stays, and is read again a TTL
        // after the failed attempt.
        set_registry("{\"clients\": 7}".into()).await.unwrap();
        expect(&[(new, 120, 200), (old, 121, 401)]).await;
        set_registry(registry(&[("old", old)])).await.unwrap();
        expect(&[(old, 179, 401), (old, 180, 200), (new, 180, 401)]).await;
    }

    /// A cold start reads no secret; the first request does. Secrets that cannot be read yet
    /// make a `503 store_unavailable` (`secrets_unavailable` in metrics), and the very next
    /// request tries again, without waiting for the TTL.
    #[tokio::test]
    async fn the_first_request_reads_the_secrets_and_a_failed_first_reading_is_a_503() {
        let aws = moto_aws().await;
        let (signing_key_secret, clients_secret) = (
            "keyrot-lambda-unit/first/signing-key",
            "keyrot-lambda-unit/first/clients",
        );
        let api_key = ApiKey::generate_from([3; 32]);
        // Neither secret exists yet: building the function cannot have read them.
        let function = function_reading(&aws, signing_key_secret, clients_secret);
        let handled = token_request(&function, &api_key, now()).await;
        assert_eq!(handled.outcome, Outcome::SecretsUnavailable);
        assert_eq!(handled.response.status_code, 503);
        let Some(Body::Text(body)) = &handled.response.body else {
            panic!("no body")
        };
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"]["code"], "store_unavailable", "{body}");
        let metrics: Value = serde_json::from_str(&handled.metrics).unwrap();
        assert_eq!(metrics["Outcome"], "secrets_unavailable");
        assert_eq!(metrics["StatusCode"], 503);

        create_secret(&aws, signing_key_secret, signing_keys()).await;
        create_secret(&aws, clients_secret, registry(&[("ci", &api_key)])).await;
        let at = now() + Duration::from_secs(1);
        assert_eq!(token_status(&function, &api_key, at).await, 200);
    }
}
