//! The API's client side: `keyrot token`, `keyrot get-key` and `keyrot credential-process`.

use std::time::Duration;

use jiff::Timestamp;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};

/// How long one call to the API may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A client of one keyrot API.
pub struct ApiClient {
    http: reqwest::Client,
    endpoint: String,
    api_key: String,
}

/// `POST /generate-token`'s answer.
#[derive(Deserialize, Serialize)]
pub struct Token {
    /// The JWT.
    pub token: String,
    /// When it expires (RFC 3339).
    pub expires_at: String,
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
    pub secret_access_key: String,
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
    pub fn new(endpoint: &str, api_key: String) -> Result<Self, ClientError> {
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
            api_key,
        })
    }

    /// A fresh token.
    pub async fn token(&self) -> Result<Token, ClientError> {
        let request = self
            .http
            .post(format!("{}/generate-token", self.endpoint))
            .header("x-api-key", &self.api_key);
        self.call(request).await
    }

    /// `user`'s current key, with a fresh token.
    pub async fn active_key(&self, user: &str) -> Result<ActiveKey, ClientError> {
        let token = self.token().await?;
        let request = self
            .http
            .get(format!(
                "{}/active-key?username={}",
                self.endpoint,
                encode(user)
            ))
            .header("x-api-key", &self.api_key)
            .bearer_auth(&token.token);
        self.call(request).await
    }

    /// Every managed user's status, from the admin route (the client needs the admin right),
    /// with a fresh token.
    pub async fn admin_status(&self) -> Result<AdminStatus, ClientError> {
        let token = self.token().await?;
        let request = self
            .http
            .get(format!("{}/admin/status", self.endpoint))
            .header("x-api-key", &self.api_key)
            .bearer_auth(&token.token);
        self.call(request).await
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
        let body = response
            .bytes()
            .await
            .map_err(|e| ClientError::Unreachable {
                endpoint: self.endpoint.clone(),
                source: e.without_url(),
            })?;
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
pub fn process_credentials(key: &ActiveKey, now: Timestamp, refresh: Duration) -> String {
    let expiration = now
        .checked_add(jiff::SignedDuration::try_from(refresh).unwrap_or(jiff::SignedDuration::ZERO))
        .unwrap_or(now);
    let credentials = ProcessCredentials {
        version: 1,
        access_key_id: &key.access_key_id,
        secret_access_key: &key.secret_access_key,
        expiration: expiration
            .round(jiff::Unit::Second)
            .unwrap_or(expiration)
            .to_string(),
    };
    serde_json::to_string(&credentials).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_process_json_is_what_aws_sdks_read() {
        let key = ActiveKey {
            user_name: "ci".into(),
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG".into(),
        };
        let now: Timestamp = "2025-06-01T12:00:00.4Z".parse().unwrap();
        let json = process_credentials(&key, now, Duration::from_secs(300));
        assert_eq!(
            json,
            r#"{"Version":1,"AccessKeyId":"AKIAIOSFODNN7EXAMPLE","SecretAccessKey":"wJalrXUtnFEMI/K7MDENG","Expiration":"2025-06-01T12:05:00Z"}"#
        );
        assert!(!format!("{key:?}").contains("wJalr"));
    }

    #[test]
    fn the_api_key_goes_only_over_tls_or_loopback() {
        for ok in [
            "https://abc.execute-api.eu-west-1.amazonaws.com/v1",
            "http://127.0.0.1:8080",
            "http://localhost:8080/",
            "http://[::1]:8080",
        ] {
            assert!(ApiClient::new(ok, "krk_x".into()).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.5:8080",
            "http://example.com",
            "ftp://127.0.0.1",
            "127.0.0.1:8080",
            "",
        ] {
            let err = ApiClient::new(bad, "krk_x".into()).unwrap_err();
            assert!(err.to_string().contains("https://"), "{bad}: {err}");
        }
        let client = ApiClient::new("http://127.0.0.1:1", "krk_secret".into()).unwrap();
        assert!(!format!("{client:?}").contains("krk_secret"));
        let token = Token {
            token: "eyJ.secret.sig".into(),
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
