//! GitHub Actions secrets as a delivery destination (see [`keyrot_core::delivery`]): the two
//! secrets `PREFIX_ACCESS_KEY_ID` and `PREFIX_SECRET_ACCESS_KEY` of a repository, an
//! environment or an organization, written through GitHub's REST API (version `2022-11-28`),
//! each value a libsodium sealed box made with the scope's public key.
//!
//! GitHub never shows a secret's value again, so [`GitHubDelivery::holds`] answers from this
//! adapter's own accepted write of the key and each secret's `updated_at`; what survives a new
//! process is the [`Delivered`](keyrot_core::delivery::Delivered) record that the driver keeps
//! in the secret store once `holds` said yes (a later run does not ask again, and a run that
//! finds only a "writing" record writes again: a write of the same key is idempotent).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use keyrot_core::delivery::{DeliveryError, Destination, GitHubScope, Target};
use keyrot_core::{AccessKeyId, Clock, Credentials};
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};

mod api;
mod app;

use api::{Answer, PublicKey, SecretMeta, check_base_url, seal, secrets_path};
pub use api::{GitHubError, GitHubMessage, secret_names};
use app::{AppCredential, InstallationToken};

/// GitHub.com's REST API; GitHub Enterprise Server's is `https://HOST/api/v3`.
pub const GITHUB_API: &str = "https://api.github.com";

/// The REST API version keyrot speaks (the `X-GitHub-Api-Version` header).
pub const GITHUB_API_VERSION: &str = "2022-11-28";

/// The visibility of an organization secret that keyrot creates: the organization's private
/// (and internal) repositories, GitHub's own default for a new organization secret. A secret
/// that exists already keeps the visibility it has (and, for `selected`, its repositories).
pub const NEW_ORG_SECRET_VISIBILITY: &str = "private";

/// A write of a key that GitHub accepted: for which key, and the server's clock before it
/// (a secret updated before then does not hold it).
#[derive(Debug, Clone)]
struct Accepted {
    key: AccessKeyId,
    since: Option<jiff::Timestamp>,
}

/// GitHub Actions secrets as delivery destinations, reached with a token (given, or a GitHub
/// App's installation token) from a credential read from Secrets Manager (read once, kept for
/// the adapter's life, read again once when GitHub answers 401).
///
/// - [`GitHubDelivery::write`] reads the scope's public key, then `PUT`s each secret with
///   `encrypted_value` (a sealed box, base64) and `key_id`; an organization secret also takes
///   `visibility`: the one it has, or [`NEW_ORG_SECRET_VISIBILITY`] for a new secret. The
///   secret access key is written first, then the key id: a consumer that reads between the
///   two sees a pair that does not match, for the length of one call (the old key stays
///   active meanwhile).
/// - [`GitHubDelivery::holds`] answers yes only after this adapter's own accepted write of
///   that key, and only while both secrets exist with an `updated_at` no earlier than the
///   server's clock (its `Date`) when the write began.
/// - GitHub's answers map to [`DeliveryError`]: 401 Unauthorized, 403 AccessDenied (a 403 or
///   429 with `x-ratelimit-remaining: 0` or `retry-after`: Throttled), 404 NotFound, 422
///   Rejected, anything else (5xx, no answer) Other. A call is not retried here: the next run
///   tries again.
pub struct GitHubDelivery {
    http: reqwest::Client,
    base: String,
    secrets: aws_sdk_secretsmanager::Client,
    credential: String,
    clock: Arc<dyn Clock>,
    token: Mutex<Option<Arc<SecretString>>>,
    accepted: Mutex<BTreeMap<String, Accepted>>,
}

impl fmt::Debug for GitHubDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHubDelivery")
            .field("base", &self.base)
            .field("credential", &self.credential)
            .finish_non_exhaustive()
    }
}

impl GitHubDelivery {
    /// GitHub's REST API at `base_url` ([`GITHUB_API`], or `https://HOST/api/v3` for GitHub
    /// Enterprise Server), with the credential that the Secrets Manager secret `credential`
    /// holds (its `SecretString`, read through `secrets` on the first call): a token, or a
    /// GitHub App's JSON `{"app_id", "installation_id", "private_key"}`, exchanged for an
    /// installation token with a JWT whose times come from `clock`. Each connection is made
    /// within `connect_timeout` and each call answered within `request_timeout`.
    pub fn new(
        secrets: aws_sdk_secretsmanager::Client,
        credential: impl Into<String>,
        clock: Arc<dyn Clock>,
        base_url: &str,
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Result<Self, GitHubError> {
        let base = check_base_url(base_url)?;
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/vnd.github+json"),
        );
        headers.insert(
            "x-github-api-version",
            HeaderValue::from_static(GITHUB_API_VERSION),
        );
        let http = reqwest::Client::builder()
            .user_agent(concat!("keyrot/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .connect_timeout(connect_timeout)
            .timeout(request_timeout)
            // The token goes to the base URL's host only.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(GitHubError::Client)?;
        Ok(Self {
            http,
            base,
            secrets,
            credential: credential.into(),
            clock,
            token: Mutex::new(None),
            accepted: Mutex::new(BTreeMap::new()),
        })
    }

    /// The token: the cached one, or read from Secrets Manager (and cached).
    async fn token(
        &self,
        stale: Option<&Arc<SecretString>>,
    ) -> Result<Arc<SecretString>, GitHubError> {
        {
            let cached = self.token.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(token) = cached
                .as_ref()
                .filter(|t| stale.is_none_or(|s| !Arc::ptr_eq(t, s)))
            {
                return Ok(Arc::clone(token));
            }
        }
        let out = self
            .secrets
            .get_secret_value()
            .secret_id(&self.credential)
            .send()
            .await
            .map_err(|e| GitHubError::Credential {
                secret: self.credential.clone(),
                source: crate::error::boxed(e),
            })?;
        let value = out.secret_string().map(str::trim).unwrap_or_default();
        if value.is_empty() {
            return Err(GitHubError::NoCredential(self.credential.clone()));
        }
        let token = if value.starts_with('{') {
            Arc::new(self.installation_token(value).await?)
        } else {
            Arc::new(SecretString::from(value.to_owned()))
        };
        *self.token.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&token));
        Ok(token)
    }

    /// Exchanges a GitHub App's credential (`value`) for an installation token.
    async fn installation_token(&self, value: &str) -> Result<SecretString, GitHubError> {
        let app = AppCredential::parse(value, &self.credential)?;
        let jwt = app.jwt(self.clock.now(), &self.credential)?;
        let path = format!("/app/installations/{}/access_tokens", app.installation_id);
        let call = format!("POST {path}");
        let answer = self
            .send(&Method::POST, &path, None, &jwt)
            .await?
            .ok(&call)?;
        Ok(SecretString::from(
            answer.json::<InstallationToken>(&call)?.token,
        ))
    }

    /// One call; on a 401 the token is read again and, if it changed, the call made once more.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, GitHubError> {
        let mut token = self.token(None).await?;
        let mut refreshed = false;
        loop {
            let answer = self.send(&method, path, body, &token).await?;
            if answer.status != StatusCode::UNAUTHORIZED || refreshed {
                return Ok(answer);
            }
            refreshed = true;
            let fresh = self.token(Some(&token)).await?;
            if fresh.expose_secret() == token.expose_secret() {
                return Ok(answer);
            }
            token = fresh;
        }
    }

    async fn send(
        &self,
        method: &Method,
        path: &str,
        body: Option<&serde_json::Value>,
        token: &SecretString,
    ) -> Result<Answer, GitHubError> {
        let call = || format!("{method} {path}");
        let mut bearer = HeaderValue::try_from(format!("Bearer {}", token.expose_secret()))
            .map_err(|_| GitHubError::NoCredential(self.credential.clone()))?;
        bearer.set_sensitive(true);
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header(AUTHORIZATION, bearer);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let http = |source| GitHubError::Http {
            call: call(),
            source,
        };
        let response = request.send().await.map_err(http)?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(http)?.to_vec();
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// A secret's `updated_at` and visibility; `None` when it does not exist.
    async fn secret(&self, path: &str) -> Result<Option<SecretMeta>, GitHubError> {
        let call = format!("GET {path}");
        let answer = self.call(Method::GET, path, None).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        answer.ok(&call)?.json(&call).map(Some)
    }

    fn scope(destination: &Destination) -> Result<(&GitHubScope, &str), GitHubError> {
        match &destination.target {
            Target::GitHub { scope, prefix } => Ok((scope, prefix)),
            other => Err(GitHubError::NotGitHub(other.to_string())),
        }
    }

    /// Writes the two secrets of `destination` (see the type's docs).
    pub async fn write(
        &self,
        destination: &Destination,
        credentials: &Credentials,
    ) -> Result<(), DeliveryError> {
        self.try_write(destination, credentials)
            .await
            .map_err(GitHubError::into_delivery)
    }

    async fn try_write(
        &self,
        destination: &Destination,
        credentials: &Credentials,
    ) -> Result<(), GitHubError> {
        let (scope, prefix) = Self::scope(destination)?;
        let base = secrets_path(scope);
        let key_path = format!("{base}/public-key");
        let call = format!("GET {key_path}");
        let answer = self.call(Method::GET, &key_path, None).await?.ok(&call)?;
        let since = answer.date();
        let public: PublicKey = answer.json(&call)?;
        let key: [u8; 32] = BASE64
            .decode(public.key.as_bytes())
            .ok()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| GitHubError::Reply {
                call: call.clone(),
                source: "the public key is not 32 bytes in base64".into(),
            })?;
        let [id_name, secret_name] = secret_names(prefix);
        for (name, value) in [
            (secret_name, credentials.secret_access_key.expose()),
            (id_name, credentials.access_key_id.as_str()),
        ] {
            let path = format!("{base}/{name}");
            let sealed =
                seal(&key, value.as_bytes()).map_err(|_| GitHubError::Seal(key_path.clone()))?;
            let mut body = serde_json::json!({
                "encrypted_value": BASE64.encode(sealed),
                "key_id": public.key_id,
            });
            if matches!(scope, GitHubScope::Organization { .. }) {
                let visibility = self
                    .secret(&path)
                    .await?
                    .and_then(|s| s.visibility)
                    .unwrap_or_else(|| NEW_ORG_SECRET_VISIBILITY.to_owned());
                body["visibility"] = visibility.into();
            }
            self.call(Method::PUT, &path, Some(&body))
                .await?
                .ok(&format!("PUT {path}"))?;
        }
        self.accepted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                destination.target.to_string(),
                Accepted {
                    key: credentials.access_key_id.clone(),
                    since,
                },
            );
        Ok(())
    }

    /// Whether `destination` holds `key` as far as GitHub lets anyone tell (see the type's
    /// docs): never without this adapter's own accepted write of `key`.
    pub async fn holds(
        &self,
        destination: &Destination,
        key: &AccessKeyId,
    ) -> Result<bool, DeliveryError> {
        self.try_holds(destination, key)
            .await
            .map_err(GitHubError::into_delivery)
    }

    async fn try_holds(
        &self,
        destination: &Destination,
        key: &AccessKeyId,
    ) -> Result<bool, GitHubError> {
        let (scope, prefix) = Self::scope(destination)?;
        let accepted = self
            .accepted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&destination.target.to_string())
            .cloned();
        let Some(accepted) = accepted.filter(|a| &a.key == key) else {
            return Ok(false);
        };
        let base = secrets_path(scope);
        for name in secret_names(prefix) {
            let Some(meta) = self.secret(&format!("{base}/{name}")).await? else {
                return Ok(false);
            };
            if accepted.since.is_some_and(|since| meta.updated_at < since) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
