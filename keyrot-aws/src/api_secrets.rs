//! The API's own secrets, kept in Secrets Manager: the JWT signing keys and the client registry.

use keyrot_core::token::{ClientRegistry, RegistryError, SigningKey, TokenConfigError};
use serde::Deserialize;

use crate::error::boxed;

/// The signing key secret's JSON: the active key and, while their tokens may still be alive,
/// retired ones.
///
/// ```json
/// {"kid": "2025-06", "secret": "<at least 32 characters>",
///  "retired": [{"kid": "2025-05", "secret": "..."}]}
/// ```
///
/// The secret's UTF-8 bytes are the HMAC key. CloudFormation's `GenerateSecretString` with
/// `SecretStringTemplate: '{"kid": "k1"}'` and `GenerateStringKey: secret` writes exactly this.
#[derive(Debug)]
pub struct SigningKeys {
    /// Signs new tokens.
    pub active: SigningKey,
    /// Still verify tokens they signed.
    pub retired: Vec<SigningKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSigningKeys {
    kid: String,
    secret: String,
    #[serde(default)]
    retired: Vec<RawKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    kid: String,
    secret: String,
}

impl SigningKeys {
    /// Reads the signing key secret's JSON. Errors never quote it.
    pub fn from_json(json: &str) -> Result<Self, ApiSecretsError> {
        let raw: RawSigningKeys = serde_json::from_str(json).map_err(|e| {
            ApiSecretsError::Malformed(format!(
                "not the signing key JSON ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        let key = |kid: String, secret: String| {
            SigningKey::new(kid, secret.into_bytes()).map_err(ApiSecretsError::SigningKey)
        };
        Ok(Self {
            active: key(raw.kid, raw.secret)?,
            retired: raw
                .retired
                .into_iter()
                .map(|k| key(k.kid, k.secret))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// Why the API's secrets could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ApiSecretsError {
    /// Secrets Manager did not give the secret.
    #[error("could not read secret {id}")]
    Read {
        /// The secret's id.
        id: String,
        /// What went wrong.
        #[source]
        source: keyrot_core::BoxError,
    },
    /// The secret holds binary data or no value.
    #[error("secret {0} holds no string value")]
    NoString(String),
    /// The signing key JSON is malformed.
    #[error("{0}")]
    Malformed(String),
    /// A signing key is unusable (bad kid, too short).
    #[error("bad signing key")]
    SigningKey(#[source] TokenConfigError),
    /// The client registry is unusable.
    #[error("bad client registry")]
    Registry(#[source] RegistryError),
}

/// Reads the secrets the API needs with `client`: signing keys from `signing_key_secret` and
/// the client registry from `clients_secret` (see [`ClientRegistry::from_json`]).
pub async fn load_api_secrets(
    client: &aws_sdk_secretsmanager::Client,
    signing_key_secret: &str,
    clients_secret: &str,
) -> Result<(SigningKeys, ClientRegistry), ApiSecretsError> {
    let keys = SigningKeys::from_json(&read(client, signing_key_secret).await?)?;
    let registry = ClientRegistry::from_json(&read(client, clients_secret).await?)
        .map_err(ApiSecretsError::Registry)?;
    Ok((keys, registry))
}

async fn read(
    client: &aws_sdk_secretsmanager::Client,
    id: &str,
) -> Result<String, ApiSecretsError> {
    let out = client
        .get_secret_value()
        .secret_id(id)
        .version_stage("AWSCURRENT")
        .send()
        .await
        .map_err(|e| ApiSecretsError::Read {
            id: id.to_owned(),
            source: boxed(e),
        })?;
    out.secret_string()
        .map(str::to_owned)
        .ok_or_else(|| ApiSecretsError::NoString(id.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_generate_secret_string_writes() {
        let keys = SigningKeys::from_json(
            r#"{"kid":"k1","secret":"aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"}"#,
        )
        .unwrap();
        assert_eq!(keys.active.kid(), "k1");
        assert!(keys.retired.is_empty());
    }

    #[test]
    fn reads_retired_keys() {
        let keys = SigningKeys::from_json(
            r#"{"kid":"k2","secret":"0123456789abcdef0123456789abcdef",
                "retired":[{"kid":"k1","secret":"fedcba9876543210fedcba9876543210"}]}"#,
        )
        .unwrap();
        assert_eq!(keys.retired.len(), 1);
        assert_eq!(keys.retired[0].kid(), "k1");
    }

    #[test]
    fn refuses_short_secrets_and_never_quotes_them() {
        let err =
            SigningKeys::from_json(r#"{"kid":"k1","secret":"tooshort-hunter2"}"#).unwrap_err();
        assert!(matches!(err, ApiSecretsError::SigningKey(_)));
        let chain = keyrot_core::driver::error_chain(&err);
        assert!(!chain.contains("hunter2"), "{chain}");

        let err =
            SigningKeys::from_json(r#"{"kid":"k1","secret":12345678901234567890123456789012345}"#)
                .unwrap_err();
        let chain = keyrot_core::driver::error_chain(&err);
        assert!(!chain.contains("1234567890"), "{chain}");
    }
}
