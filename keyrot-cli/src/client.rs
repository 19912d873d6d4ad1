//! The API's client side: `keyrot token`, `keyrot get-key` and `keyrot credential-process`.
//!
//! Secrets stay in zeroizing types end to end: the API key and the token in [`SecretString`],
//! marked sensitive in their headers (so HTTP logging and debug output leave them out); the
//! answer's bytes in [`Zeroizing`]; the fetched secret key in keyrot's [`SecretAccessKey`];
//! the JSON printed for the caller in [`Zeroizing`] again.

use std::time::Duration;

use http::HeaderValue;
use jiff::Timestamp;
use keyrot_core::SecretAccessKey;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize};
use zeroize::Zeroizing;

/// How long one call to the API may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A client of one keyrot API.
pub struct ApiClient {
    http: reqwest::Client,
    endpoint: String,
    api_key: SecretString,
}

/// `POST /generate-token`'s answer.
#[derive(Deserialize)]
pub struct Token {
    /// The JWT.
    #[serde(deserialize_with = "secret_string")]
    pub token: SecretString,
    /// When it expires (RFC 3339).
    pub expires_at: String,
}

impl Token {
    /// The token as `keyrot token` prints it: `{"token", "expires_at"}`.
    pub fn to_json(&self) -> Zeroizing<String> {
        Zeroizing::new(
            serde_json::json!({
                "token": self.token.expose_secret(),
                "expires_at": self.expires_at,
            })
            .to_string(),
        )
    }
}

/// `GET /active-key`'s answer.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ActiveKey {
    /// The user.
    pub user_name: String,
    /// The access key id.
    pub access_key_id: String,
    /// The secret.
    #[serde(deserialize_with = "secret_access_key")]
    pub secret_access_key: SecretAccessKey,
}

impl ActiveKey {
    /// The key as `keyrot get-key` prints it: `{"UserName", "AccessKeyId", "SecretAccessKey"}`.
    pub fn to_json(&self) -> Zeroizing<String> {
        Zeroizing::new(
            serde_json::json!({
                "UserName": self.user_name,
                "AccessKeyId": self.access_key_id,
                "SecretAccessKey": self.secret_access_key.expose(),
            })
            .to_string(),
        )
    }
}

/// A string read straight into a zeroizing [`SecretString`].
fn secret_string<'de, D: Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
    String::deserialize(d).map(SecretString::from)
}

/// A string read straight into keyrot's [`SecretAccessKey`].
fn secret_access_key<'de, D: Deserializer<'de>>(d: D) -> Result<SecretAccessKey, D::Error> {
    String::deserialize(d).map(SecretAccessKey::new)
}

/// A header value for a secret: marked sensitive, so that it is left out of HTTP logs and
/// `Debug` output (and HPACK-indexed nowhere).
fn sensitive(value: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(value).ok()?;
    value.set_sensitive(true);
    Some(value)
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ActiveKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActiveKey")
            .field("user_name", &self.user_name)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// What a `credential_process` prints (version 1 of the AWS format).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ProcessCredentials<'a> {
    version: u8,
    access_key_id: &'a str,
    secret_access_key: &'a str,
    /// When the SDK should ask again: soon, so that consumers follow rotations.
    expiration: String,
}

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The endpoint is not a URL the API key may be sent to.
    #[error(
        "{endpoint:?} is not an endpoint the API key may be sent to: use https://, or http:// only \
         for a server on this machine (127.0.0.1, ::1 or localhost)"
    )]
    Endpoint {
        /// The endpoint.
        endpoint: String,
    },
    /// The endpoint could not be reached.
    #[error("cannot reach {endpoint}")]
    Unreachable {
        /// The endpoint.
        endpoint: String,
        /// Why (without the URL, which the message names already).
        #[source]
        source: reqwest::Error,
    },
    /// The API refused; its error code and message.
    #[error("{endpoint} answered {status}: {code}: {message}")]
    Refused {
        /// The endpoint.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// The API's error code.
        code: String,
        /// The API's message.
        message: String,
    },
    /// The answer was not what the API sends.
    #[error("{endpoint} sent an unexpected answer")]
    Unexpected {
        /// The endpoint.
        endpoint: String,
        /// What was wrong.
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    #[serde(default)]
    message: String,
}

impl ApiClient {
    /// A client of the API at `endpoint` (e.g. `http://127.0.0.1:8080` or the deployed stage
    /// URL), presenting `api_key`.
    ///
    /// The API key travels in a header, so the endpoint must be `https://`, or `http://` on
    /// loopback; redirects are not followed (one would carry the key to another host).
    pub fn new(endpoint: &str, api_key: impl Into<SecretString>) -> Result<Self, ClientError> {
        if !endpoint_is_safe(endpoint) {
            return Err(ClientError::Endpoint {
                endpoint: endpoint.to_owned(),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ClientError::Unreachable {
                endpoint: endpoint.to_owned(),
                source: e.without_url(),
            })?;
        Ok(Self {
            http,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            api_key: api_key.into(),
        })
    }

    /// `request` with the API key and, if given, the token, both marked sensitive. A value
    /// that cannot be a header is left out (the API then refuses the request as it should).
    fn credentials(
        &self,
        mut request: reqwest::RequestBuilder,
        token: Option<&Token>,
    ) -> reqwest::RequestBuilder {
        if let Some(key) = sensitive(self.api_key.expose_secret()) {
            request = request.header("x-api-key", key);
        }
        let bearer = token.and_then(|t| {
            let value = Zeroizing::new(format!("Bearer {}", t.token.expose_secret()));
            sensitive(&value)
        });
        if let Some(bearer) = bearer {
            request = request.header(http::header::AUTHORIZATION, bearer);
        }
        request
    }

    fn token_request(&self) -> reqwest::RequestBuilder {
        let request = self.http.post(format!("{}/generate-token", self.endpoint));
        self.credentials(request, None)
    }

    fn key_request(&self, user: &str, token: &Token) -> reqwest::RequestBuilder {
        let url = format!("{}/active-key?username={}", self.endpoint, encode(user));
        self.credentials(self.http.get(url), Some(token))
    }

    /// A fresh token.
    pub async fn token(&self) -> Result<Token, ClientError> {
        self.call(self.token_request()).await
    }

    /// `user`'s current key, with a fresh token.
    pub async fn active_key(&self, user: &str) -> Result<ActiveKey, ClientError> {
        let token = self.token().await?;
        self.call(self.key_request(user, &token)).await
    }

    /// Every managed user's status, from the admin route (the client needs the admin right),
    /// with a fresh token.
    pub async fn admin_status(&self) -> Result<AdminStatus, ClientError> {
        let token = self.token().await?;
        let url = format!("{}/admin/status", self.endpoint);
        self.call(self.credentials(self.http.get(url), Some(&token)))
            .await
    }

    async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let response = request.send().await.map_err(|e| ClientError::Unreachable {
            endpoint: self.endpoint.clone(),
            source: e.without_url(),
        })?;
        let status = response.status();
        // The answer may be a credential: its bytes are wiped once read (the allocation is the
        // response's own when reqwest hands over the only reference).
        let body = Zeroizing::new(Vec::from(response.bytes().await.map_err(|e| {
            ClientError::Unreachable {
                endpoint: self.endpoint.clone(),
                source: e.without_url(),
            }
        })?));
        if !status.is_success() {
            let (code, message) = match serde_json::from_slice::<ErrorBody>(&body) {
                Ok(b) => (b.error.code, b.error.message),
                Err(_) => (
                    "unknown".to_owned(),
                    String::from_utf8_lossy(&body).chars().take(200).collect(),
                ),
            };
            return Err(ClientError::Refused {
                endpoint: self.endpoint.clone(),
                status: status.as_u16(),
                code,
                message,
            });
        }
        serde_json::from_slice(&body).map_err(|source| ClientError::Unexpected {
            endpoint: self.endpoint.clone(),
            source,
        })
    }
}

/// The answer of `GET /admin/status`: no secret in it.
#[derive(Debug, Deserialize)]
pub struct AdminStatus {
    /// When the server gathered it.
    pub generated_at: keyrot_core::Timestamp,
    /// Every managed user.
    pub users: Vec<keyrot_core::report::UserState>,
}

/// Whether `endpoint` is `https://…`, or `http://` to a loopback host.
fn endpoint_is_safe(endpoint: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(endpoint) else {
        return false;
    };
    let Some(host) = url.host_str() else {
        return false;
    };
    match url.scheme() {
        "https" => true,
        "http" => {
            let ip = host.trim_start_matches('[').trim_end_matches(']');
            host.eq_ignore_ascii_case("localhost")
                || ip
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        _ => false,
    }
}

/// RFC 3986's unreserved characters, the only ones a query value may carry unencoded.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes everything but unreserved characters.
fn encode(text: &str) -> String {
    utf8_percent_encode(text, UNRESERVED).to_string()
}

/// The `credential_process` JSON for `key`, expiring `refresh` after `now`.
pub fn process_credentials(
    key: &ActiveKey,
    now: Timestamp,
    refresh: Duration,
) -> Zeroizing<String> {
    let expiration = now
        .checked_add(jiff::SignedDuration::try_from(refresh).unwrap_or(jiff::SignedDuration::ZERO))
        .unwrap_or(now);
    let credentials = ProcessCredentials {
        version: 1,
        access_key_id: &key.access_key_id,
        secret_access_key: key.secret_access_key.expose(),
        expiration: expiration
            .round(jiff::Unit::Second)
            .unwrap_or(expiration)
            .to_string(),
    };
    Zeroizing::new(serde_json::to_string(&credentials).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_process_json_is_what_aws_sdks_read() {
        let key = ActiveKey {
            user_name: "ci".into(),
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: SecretAccessKey::new("wJalrXUtnFEMI/K7MDENG"),
        };
        let now: Timestamp = "2025-06-01T12:00:00.4Z".parse().unwrap();
        let json = process_credentials(&key, now, Duration::from_secs(300));
        assert_eq!(
            *json,
            r#"{"Version":1,"AccessKeyId":"AKIAIOSFODNN7EXAMPLE","SecretAccessKey":"wJalrXUtnFEMI/K7MDENG","Expiration":"2025-06-01T12:05:00Z"}"#
        );
        assert!(!format!("{key:?}").contains("wJalr"));
        assert!(
            key.to_json()
                .contains("\"SecretAccessKey\":\"wJalrXUtnFEMI/K7MDENG\"")
        );
    }

    #[test]
    fn secrets_travel_in_sensitive_headers_and_zeroizing_types() {
        let client = ApiClient::new("http://127.0.0.1:1", "krk_secret".to_owned()).unwrap();
        let token: Token = serde_json::from_str(
            r#"{"token":"eyJ.secret.sig","expires_at":"2025-06-01T12:02:00Z"}"#,
        )
        .unwrap();
        let request = client.token_request().build().unwrap();
        assert!(request.headers()["x-api-key"].is_sensitive());
        assert!(!request.headers().contains_key("authorization"));
        let request = client.key_request("ci", &token).build().unwrap();
        assert!(request.headers()["x-api-key"].is_sensitive());
        assert!(request.headers()["authorization"].is_sensitive());
        assert_eq!(request.headers()["authorization"], "Bearer eyJ.secret.sig");
        assert!(!format!("{request:?}").contains("krk_secret"));
        assert!(!format!("{request:?}").contains("secret.sig"));
        let key: ActiveKey = serde_json::from_str(
            r#"{"UserName":"ci","AccessKeyId":"AKIAIOSFODNN7EXAMPLE","SecretAccessKey":"wJalrXUtnFEMI/K7MDENG","RetrievedAt":"x"}"#,
        )
        .unwrap();
        assert_eq!(key.secret_access_key.expose(), "wJalrXUtnFEMI/K7MDENG");
        assert_eq!(format!("{:?}", key.secret_access_key), "[redacted]");
        assert!(token.to_json().contains("eyJ.secret.sig"));
    }

    #[test]
    fn the_api_key_goes_only_over_tls_or_loopback() {
        for ok in [
            "https://abc.execute-api.eu-west-1.amazonaws.com/v1",
            "http://127.0.0.1:8080",
            "http://localhost:8080/",
            "http://[::1]:8080",
        ] {
            assert!(ApiClient::new(ok, "krk_x".to_owned()).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.5:8080",
            "http://example.com",
            "ftp://127.0.0.1",
            "127.0.0.1:8080",
            "",
        ] {
            let err = ApiClient::new(bad, "krk_x".to_owned()).unwrap_err();
            assert!(err.to_string().contains("https://"), "{bad}: {err}");
        }
        let client = ApiClient::new("http://127.0.0.1:1", "krk_secret".to_owned()).unwrap();
        assert!(!format!("{client:?}").contains("krk_secret"));
        let token = Token {
            token: SecretString::from("eyJ.secret.sig"),
            expires_at: "2025-06-01T12:02:00Z".into(),
        };
        assert!(!format!("{token:?}").contains("secret"));
    }

    #[test]
    fn user_names_are_encoded_for_the_query() {
        assert_eq!(
            encode("ci+deploy=x,y@z.w_v-u"),
            "ci%2Bdeploy%3Dx%2Cy%40z.w_v-u"
        );
    }

    #[test]
    fn everything_but_unreserved_characters_is_encoded_in_upper_case() {
        assert_eq!(encode("a~b c/d?e&f#g%h"), "a~b%20c%2Fd%3Fe%26f%23g%25h");
        assert_eq!(encode("\u{e9}"), "%C3%A9");
        assert_eq!(encode(""), "");
    }
}
