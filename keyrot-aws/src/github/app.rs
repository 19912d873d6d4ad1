//! A GitHub App's credential: the JSON a Secrets Manager secret may hold instead of a token,
//! `{"app_id": ..., "installation_id": ..., "private_key": "-----BEGIN RSA PRIVATE KEY-----..."}`,
//! and the JWT (RS256) that GitHub exchanges for an installation token
//! (`POST /app/installations/{installation_id}/access_tokens`).

use keyrot_core::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::GitHubError;

/// The DER inside a PEM `RSA PRIVATE KEY` (PKCS #1, the form GitHub issues App keys in).
fn pkcs1_der(pem: &str) -> Option<zeroize::Zeroizing<Vec<u8>>> {
    use base64::Engine as _;
    let body = pem
        .trim()
        .strip_prefix("-----BEGIN RSA PRIVATE KEY-----")?
        .strip_suffix("-----END RSA PRIVATE KEY-----")?;
    let text: zeroize::Zeroizing<String> =
        zeroize::Zeroizing::new(body.chars().filter(|c| !c.is_whitespace()).collect());
    base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .ok()
        .map(zeroize::Zeroizing::new)
}

/// An id written as a number or a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum Id {
    Number(u64),
    Text(String),
}

impl Id {
    fn text(self) -> String {
        match self {
            Self::Number(n) => n.to_string(),
            Self::Text(t) => t,
        }
    }
}

#[derive(Deserialize)]
struct Raw {
    app_id: Id,
    installation_id: u64,
    private_key: String,
}

/// A GitHub App's credential.
pub(super) struct AppCredential {
    /// The App's id (the JWT's `iss`).
    app_id: String,
    /// The installation whose token is asked for.
    pub(super) installation_id: u64,
    /// The App's private key, PEM.
    private_key: SecretString,
}

#[derive(Serialize)]
struct Claims<'a> {
    iat: i64,
    exp: i64,
    iss: &'a str,
}

/// `POST /app/installations/{id}/access_tokens`'s answer.
#[derive(Deserialize)]
pub(super) struct InstallationToken {
    /// The token (moved into a `SecretString` at once).
    pub(super) token: String,
}

impl AppCredential {
    /// Reads the secret's JSON (`secret` names it in errors).
    pub(super) fn parse(value: &str, secret: &str) -> Result<Self, GitHubError> {
        let raw: Raw = serde_json::from_str(value)
            .map_err(|_| GitHubError::AppCredential(secret.to_owned()))?;
        Ok(Self {
            app_id: raw.app_id.text(),
            installation_id: raw.installation_id,
            private_key: SecretString::from(raw.private_key),
        })
    }

    /// The JWT that authenticates as the App: issued a minute before `now` (GitHub's advice
    /// against clock drift), valid for nine minutes (GitHub allows ten).
    pub(super) fn jwt(&self, now: Timestamp, secret: &str) -> Result<SecretString, GitHubError> {
        let bad = || GitHubError::AppKey(secret.to_owned());
        let key = pkcs1_der(self.private_key.expose_secret()).ok_or_else(bad)?;
        let key = jsonwebtoken::EncodingKey::from_rsa_der(&key);
        let now = now.as_second();
        let claims = Claims {
            iat: now - 60,
            exp: now + 9 * 60,
            iss: &self.app_id,
        };
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        jsonwebtoken::encode(&header, &claims, &key)
            .map(SecretString::from)
            .map_err(|_| bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_app_credential_takes_ids_as_numbers_or_strings_and_only_a_pkcs1_pem_key() {
        let app = AppCredential::parse(
            r#"{"app_id": "1234", "installation_id": 42, "private_key": "x"}"#,
            "gh",
        )
        .unwrap();
        assert_eq!((app.app_id.as_str(), app.installation_id), ("1234", 42));
        let app = AppCredential::parse(
            r#"{"app_id": 1234, "installation_id": 42, "private_key": "not a key"}"#,
            "gh",
        )
        .unwrap();
        assert_eq!(app.app_id, "1234");
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            app.jwt(now, "gh").err().unwrap().to_string(),
            "the GitHub App private key in Secrets Manager secret gh is not an RSA key in PEM \
             (BEGIN RSA PRIVATE KEY)"
        );
        assert!(
            pkcs1_der("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----")
                .is_some()
        );
        assert!(
            pkcs1_der("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----").is_none()
        );
        for bad in [r#"{"app_id": 1}"#, r#"{"token": "x"}"#] {
            assert_eq!(
                AppCredential::parse(bad, "gh").err().unwrap().to_string(),
                "Secrets Manager secret gh holds JSON that is no GitHub App credential (app_id, \
                 installation_id, private_key)"
            );
        }
    }
}
