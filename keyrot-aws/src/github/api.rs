//! GitHub's REST API for Actions secrets as keyrot uses it: the errors and their mapping to
//! [`DeliveryError`], the answers' bodies, the paths and names, and the sealed box.

use crypto_box::aead::OsRng;
use keyrot_core::delivery::{DeliveryError, GitHubScope};
use keyrot_core::ports::BoxError;
use reqwest::header::HeaderMap;
use reqwest::{StatusCode, Url};
use serde::Deserialize;

/// What failed in a call to GitHub, or in making the adapter. The error's source carries
/// GitHub's own `message`; no secret value is ever part of one.
#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    /// The base URL is not one of GitHub's REST API.
    #[error(
        "{0:?} is not a GitHub API base URL (https://api.github.com, or https://HOST/api/v3 for \
         GitHub Enterprise Server; plain http only to a loopback address)"
    )]
    BaseUrl(String),
    /// The HTTP client could not be made.
    #[error("the HTTP client for GitHub could not be made")]
    Client(#[source] reqwest::Error),
    /// Reading keyrot's GitHub credential from Secrets Manager failed.
    #[error("reading the GitHub credential from Secrets Manager secret {secret} failed")]
    Credential {
        /// The credential's secret id.
        secret: String,
        /// What Secrets Manager answered.
        #[source]
        source: BoxError,
    },
    /// The credential's secret holds no token (an empty or binary value).
    #[error("Secrets Manager secret {0} holds no GitHub token")]
    NoCredential(String),
    /// The credential's secret holds JSON that is not a GitHub App's credential.
    #[error(
        "Secrets Manager secret {0} holds JSON that is no GitHub App credential (app_id, \
         installation_id, private_key)"
    )]
    AppCredential(String),
    /// The GitHub App's private key could not sign a JWT.
    #[error(
        "the GitHub App private key in Secrets Manager secret {0} is not an RSA key in PEM \
         (BEGIN RSA PRIVATE KEY)"
    )]
    AppKey(String),
    /// A call got no answer (connection refused, timeout, reset).
    #[error("GitHub {call} failed")]
    Http {
        /// `METHOD PATH`.
        call: String,
        /// The transport's error.
        #[source]
        source: reqwest::Error,
    },
    /// GitHub answered with an error status.
    #[error("GitHub {call} answered {status}")]
    Status {
        /// `METHOD PATH`.
        call: String,
        /// The status.
        status: StatusCode,
        /// Whether the answer says to slow down (`x-ratelimit-remaining: 0`, `retry-after`).
        throttled: bool,
        /// GitHub's message.
        #[source]
        source: GitHubMessage,
    },
    /// GitHub's answer is not what its API documents.
    #[error("GitHub {call} answered what its API does not document")]
    Reply {
        /// `METHOD PATH`.
        call: String,
        /// What is wrong with it.
        #[source]
        source: BoxError,
    },
    /// The destination is not a GitHub one (a wiring mistake).
    #[error("destination {0} is not a GitHub destination")]
    NotGitHub(String),
    /// The public key could not seal a value.
    #[error("sealing a value with the public key of {0} failed")]
    Seal(String),
}

impl GitHubError {
    /// The delivery error this is, by GitHub's status (see the module docs).
    pub fn into_delivery(self) -> DeliveryError {
        let status = match &self {
            Self::Status {
                status, throttled, ..
            } => Some((*status, *throttled)),
            _ => None,
        };
        let boxed: BoxError = Box::new(self);
        match status {
            Some((_, true)) | Some((StatusCode::TOO_MANY_REQUESTS, _)) => {
                DeliveryError::Throttled(boxed)
            }
            Some((StatusCode::UNAUTHORIZED, _)) => DeliveryError::Unauthorized(boxed),
            Some((StatusCode::FORBIDDEN, _)) => DeliveryError::AccessDenied(boxed),
            Some((StatusCode::NOT_FOUND, _)) => DeliveryError::NotFound(boxed),
            Some((StatusCode::UNPROCESSABLE_ENTITY, _)) => DeliveryError::Rejected(boxed),
            _ => DeliveryError::Other(boxed),
        }
    }
}

/// GitHub's error body: `{"message": ..., "documentation_url": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct GitHubMessage {
    /// What GitHub says.
    pub message: String,
    /// Where GitHub's documentation explains it.
    #[serde(default)]
    pub documentation_url: Option<String>,
}

impl GitHubMessage {
    /// The message of an error answer's body; a body that is not GitHub's JSON is not quoted
    /// (it could be anything), only said to be missing.
    fn of(body: &[u8]) -> Self {
        serde_json::from_slice::<Self>(body)
            .map(|mut m| {
                if m.message.len() > 300 {
                    let cut = (0..=300).rev().find(|&i| m.message.is_char_boundary(i));
                    m.message.truncate(cut.unwrap_or(0));
                }
                m
            })
            .unwrap_or_else(|_| Self {
                message: "no message from GitHub".to_owned(),
                documentation_url: None,
            })
    }
}

/// An answer: status, the server's `Date` and the body.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Vec<u8>,
}

impl Answer {
    /// The answer if its status is a success, else the error it is.
    pub(super) fn ok(self, call: &str) -> Result<Self, GitHubError> {
        if self.status.is_success() {
            return Ok(self);
        }
        let header = |name: &str| self.headers.get(name).and_then(|v| v.to_str().ok());
        let throttled = matches!(
            self.status,
            StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS
        ) && (header("x-ratelimit-remaining") == Some("0")
            || header("retry-after").is_some());
        Err(GitHubError::Status {
            call: call.to_owned(),
            status: self.status,
            throttled,
            source: GitHubMessage::of(&self.body),
        })
    }

    /// The server's clock when it answered (the `Date` header), if it said.
    pub(super) fn date(&self) -> Option<jiff::Timestamp> {
        let date = self.headers.get(http_date())?.to_str().ok()?;
        jiff::fmt::rfc2822::DateTimeParser::new()
            .parse_timestamp(date)
            .ok()
    }

    pub(super) fn json<T: for<'de> Deserialize<'de>>(&self, call: &str) -> Result<T, GitHubError> {
        serde_json::from_slice(&self.body).map_err(|e| GitHubError::Reply {
            call: call.to_owned(),
            source: Box::new(e),
        })
    }
}

fn http_date() -> reqwest::header::HeaderName {
    reqwest::header::DATE
}

/// `GET .../secrets/public-key`.
#[derive(Deserialize)]
pub(super) struct PublicKey {
    pub(super) key_id: String,
    pub(super) key: String,
}

/// `GET .../secrets/{secret_name}`.
#[derive(Deserialize)]
pub(super) struct SecretMeta {
    pub(super) updated_at: jiff::Timestamp,
    #[serde(default)]
    pub(super) visibility: Option<String>,
}

/// Seals `value` for the holder of `public_key` (32 bytes): libsodium's
/// `crypto_box_seal`, as GitHub requires.
pub(super) fn seal(
    public_key: &[u8; 32],
    value: &[u8],
) -> Result<Vec<u8>, crypto_box::aead::Error> {
    crypto_box::PublicKey::from(*public_key).seal(&mut OsRng, value)
}

/// The REST path of a scope's secrets.
pub(super) fn secrets_path(scope: &GitHubScope) -> String {
    match scope {
        GitHubScope::Repository { owner, repo } => format!("/repos/{owner}/{repo}/actions/secrets"),
        GitHubScope::Environment {
            owner,
            repo,
            environment,
        } => format!("/repos/{owner}/{repo}/environments/{environment}/secrets"),
        GitHubScope::Organization { org } => format!("/orgs/{org}/actions/secrets"),
    }
}

/// The two secrets' names: `PREFIX_ACCESS_KEY_ID` and `PREFIX_SECRET_ACCESS_KEY` (upper case,
/// as GitHub stores them).
pub fn secret_names(prefix: &str) -> [String; 2] {
    let prefix = prefix.to_ascii_uppercase();
    [
        format!("{prefix}_ACCESS_KEY_ID"),
        format!("{prefix}_SECRET_ACCESS_KEY"),
    ]
}

/// Checks a base URL: `https`, or `http` to a loopback address; no query; a trailing `/`
/// dropped.
pub(super) fn check_base_url(text: &str) -> Result<String, GitHubError> {
    let bad = || GitHubError::BaseUrl(text.to_owned());
    let url = Url::parse(text).map_err(|_| bad())?;
    let host = url.host_str().ok_or_else(bad)?;
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
    if !scheme_ok || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty()
    {
        return Err(bad());
    }
    Ok(text.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::GITHUB_API;
    use reqwest::header::HeaderValue;

    fn status(code: u16, headers: &[(&'static str, &'static str)]) -> DeliveryError {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_static(value));
        }
        let answer = Answer {
            status: StatusCode::from_u16(code).unwrap(),
            headers: map,
            body: Vec::from(
                br#"{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest"}"#,
            ),
        };
        answer
            .ok("GET /repos/acme/app/actions/secrets/public-key")
            .err()
            .unwrap()
            .into_delivery()
    }

    #[test]
    fn github_statuses_map_to_delivery_errors_with_githubs_message_as_the_source() {
        let chain = |e: &DeliveryError| keyrot_core::driver::error_chain(e);
        let e = status(401, &[]);
        assert!(matches!(e, DeliveryError::Unauthorized(_)), "{e:?}");
        assert_eq!(
            chain(&e),
            "the destination refused keyrot's credentials: GitHub GET \
             /repos/acme/app/actions/secrets/public-key answered 401 Unauthorized: Bad credentials"
        );
        assert!(matches!(status(403, &[]), DeliveryError::AccessDenied(_)));
        assert!(matches!(
            status(403, &[("x-ratelimit-remaining", "0")]),
            DeliveryError::Throttled(_)
        ));
        assert!(matches!(
            status(403, &[("x-ratelimit-remaining", "12")]),
            DeliveryError::AccessDenied(_)
        ));
        assert!(matches!(
            status(403, &[("retry-after", "60")]),
            DeliveryError::Throttled(_)
        ));
        assert!(matches!(status(429, &[]), DeliveryError::Throttled(_)));
        assert!(matches!(status(404, &[]), DeliveryError::NotFound(_)));
        assert!(matches!(status(422, &[]), DeliveryError::Rejected(_)));
        assert!(matches!(status(500, &[]), DeliveryError::Other(_)));
        assert!(matches!(status(502, &[]), DeliveryError::Other(_)));
        assert!(matches!(status(400, &[]), DeliveryError::Other(_)));
    }

    #[test]
    fn a_body_that_is_not_githubs_json_is_not_quoted() {
        assert_eq!(
            GitHubMessage::of(b"<html>secret</html>").message,
            "no message from GitHub"
        );
        let long = format!(r#"{{"message":"{}"}}"#, "é".repeat(400));
        assert!(GitHubMessage::of(long.as_bytes()).message.len() <= 300);
    }

    #[test]
    fn a_sealed_box_opens_with_the_private_key_only() {
        let secret = crypto_box::SecretKey::generate(&mut OsRng);
        let public = *secret.public_key().as_bytes();
        let sealed = seal(&public, b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY").unwrap();
        assert_eq!(
            sealed.len(),
            40 + 48,
            "ephemeral key (32) and tag (16) added"
        );
        assert_eq!(
            secret.unseal(&sealed).unwrap(),
            b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
        );
        let other = crypto_box::SecretKey::generate(&mut OsRng);
        assert!(other.unseal(&sealed).is_err());
        // A fresh ephemeral key each time: the same value never seals the same.
        assert_ne!(seal(&public, b"x").unwrap(), seal(&public, b"x").unwrap());
    }

    #[test]
    fn base_urls_are_githubs_or_loopback() {
        assert_eq!(
            check_base_url("https://api.github.com/").unwrap(),
            GITHUB_API
        );
        assert_eq!(
            check_base_url("https://ghe.example.com/api/v3").unwrap(),
            "https://ghe.example.com/api/v3"
        );
        assert!(check_base_url("http://127.0.0.1:8080/api/v3").is_ok());
        for bad in [
            "http://ghe.example.com/api/v3",
            "api.github.com",
            "https://api.github.com/?x=1",
            "https://user@api.github.com",
            "ftp://api.github.com",
        ] {
            assert!(check_base_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_and_names_follow_githubs_rest_api() {
        let repo = GitHubScope::Repository {
            owner: "acme".into(),
            repo: "app".into(),
        };
        let env = GitHubScope::Environment {
            owner: "acme".into(),
            repo: "app".into(),
            environment: "prod".into(),
        };
        let org = GitHubScope::Organization { org: "acme".into() };
        assert_eq!(secrets_path(&repo), "/repos/acme/app/actions/secrets");
        assert_eq!(
            secrets_path(&env),
            "/repos/acme/app/environments/prod/secrets"
        );
        assert_eq!(secrets_path(&org), "/orgs/acme/actions/secrets");
        assert_eq!(
            secret_names("ci_aws"),
            ["CI_AWS_ACCESS_KEY_ID", "CI_AWS_SECRET_ACCESS_KEY"]
        );
    }
}
