//! [`Notifier`] on a Slack-compatible incoming webhook: each notice POSTed as `{"text": ...}`
//! to a URL kept in Secrets Manager.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use keyrot_core::{Notice, Notifier, NotifyError};
use secrecy::{ExposeSecret, SecretString};

use crate::error::store_error;
use crate::notifier::subject;

/// Attempts per notice: the first and two retries, for a 429 or a 5xx only.
const ATTEMPTS: u32 = 3;
/// The longest wait keyrot takes for a 429's `Retry-After` (a longer one fails the notice,
/// saying how long was asked): a notice holds up its user's run while it waits, and a run has
/// a deadline.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);
/// The wait before retrying a 5xx, doubled for the next one.
const BACKOFF: Duration = Duration::from_secs(1);
/// Time for one request, connection included.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Why a webhook notice was not accepted. No variant, message or source holds the webhook's
/// URL: it is a secret (whoever has it can post to the channel).
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The secret naming the URL could not be read.
    #[error("could not read the webhook's secret")]
    Secret(#[source] keyrot_core::StoreError),
    /// The secret holds no https URL (nor an http one on loopback).
    #[error("the webhook's secret does not hold an https URL")]
    NotAUrl,
    /// The webhook answered with an error: `status` and the code in its body (Slack's
    /// `invalid_payload`, `invalid_token`, `no_service`, `channel_is_archived`, ...).
    #[error("the webhook refused the notice: {status} {code}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The body's error code, printable ASCII, cut to 64 characters.
        code: String,
    },
    /// Still rate limited (429) after the retries, or asked to wait longer than keyrot waits.
    #[error("the webhook is rate limiting keyrot (retry after {retry_after:?})")]
    RateLimited {
        /// The last wait asked for, if the answer said.
        retry_after: Option<Duration>,
    },
    /// The request could not be made or its answer read (after the retries for a 5xx).
    #[error("could not reach the webhook")]
    Http(#[source] reqwest::Error),
}

/// The webhook's URL, redacted in `Debug`.
#[derive(Clone)]
struct Url(Arc<SecretString>);

impl fmt::Debug for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Url([redacted])")
    }
}

/// Posts each notice to a Slack-compatible incoming webhook (Slack, Mattermost, ...): one
/// `POST` of `{"text": "<subject>\n<notice>"}` as JSON, the text escaped as Slack's message
/// formatting asks (`&`, `<`, `>`), no redirect followed.
///
/// The URL is read from the Secrets Manager secret `secret_id` on the first notice (the
/// secret's string: the URL itself, or JSON with a `url` field) and kept until the webhook
/// answers 403, 404 or 410 (a revoked or moved webhook: the secret is read again for the next
/// notice). It appears in no error, log or `Debug` output.
///
/// As Slack documents incoming webhooks: `200` (body `ok`) is success; a `429` is retried
/// after its `Retry-After` (at most 5 s) and a 5xx after a second, then two, up to three
/// attempts; any other answer (`400 invalid_payload`, `403 invalid_token`,
/// `403 action_prohibited`, `404 no_service`, `404 channel_not_found`,
/// `410 channel_is_archived`, ...) is a [`WebhookError::Refused`] naming the status and code
/// at once. Like every notifier's, its failure never stops a rotation.
#[derive(Clone)]
pub struct WebhookNotifier {
    secrets: aws_sdk_secretsmanager::Client,
    secret_id: String,
    http: Option<reqwest::Client>,
    url: Arc<Mutex<Option<Url>>>,
    backoff: Duration,
}

impl fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookNotifier")
            .field("secret_id", &self.secret_id)
            .finish_non_exhaustive()
    }
}

impl WebhookNotifier {
    /// A notifier posting to the URL in the secret `secret_id` (a name or an ARN).
    pub fn new(secrets: aws_sdk_secretsmanager::Client, secret_id: impl Into<String>) -> Self {
        Self {
            secrets,
            secret_id: secret_id.into(),
            // Fails only when the TLS backend cannot start: each post tries again, and says so.
            http: http_client().ok(),
            url: Arc::default(),
            backoff: BACKOFF,
        }
    }

    /// Waits `backoff` (then twice that) before retrying a 5xx, instead of a second.
    #[must_use]
    pub fn with_backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    fn cached(&self) -> Option<Url> {
        self.url
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn forget(&self) {
        *self.url.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    async fn url(&self) -> Result<Url, WebhookError> {
        if let Some(url) = self.cached() {
            return Ok(url);
        }
        let out = self
            .secrets
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|e| WebhookError::Secret(store_error(e)))?;
        let url = out
            .secret_string()
            .and_then(url_in)
            .ok_or(WebhookError::NotAUrl)?;
        let url = Url(Arc::new(SecretString::from(url)));
        *self.url.lock().unwrap_or_else(PoisonError::into_inner) = Some(url.clone());
        Ok(url)
    }

    /// Posts `notice`, retrying a 429 or a 5xx.
    pub async fn post(&self, notice: &Notice) -> Result<(), WebhookError> {
        let url = self.url().await?;
        let http = match &self.http {
            Some(http) => http.clone(),
            None => http_client().map_err(|e| WebhookError::Http(e.without_url()))?,
        };
        let body = serde_json::json!({ "text": text(notice) }).to_string();
        let mut backoff = self.backoff;
        let mut attempt = 1;
        loop {
            let answer = http
                .post(url.0.expose_secret())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            let failed = match answer {
                Ok(response) => match response.status().as_u16() {
                    200..=299 => return Ok(()),
                    429 => {
                        let wait = retry_after(&response);
                        match wait {
                            Some(wait) if wait <= MAX_RETRY_AFTER && attempt < ATTEMPTS => {
                                Failed::RateLimited(wait)
                            }
                            _ => return Err(WebhookError::RateLimited { retry_after: wait }),
                        }
                    }
                    status @ 500..=599 if attempt < ATTEMPTS => {
                        tracing::debug!(status, attempt, "the webhook failed, retrying");
                        Failed::ServerError
                    }
                    status => {
                        if matches!(status, 403 | 404 | 410) {
                            self.forget();
                        }
                        let body = response.text().await.unwrap_or_default();
                        let code = code_in(&body.replace(url.0.expose_secret(), "[redacted]"));
                        return Err(WebhookError::Refused { status, code });
                    }
                },
                // A connection refused or reset, a timeout: retried like a 5xx.
                Err(e) if attempt < ATTEMPTS && (e.is_connect() || e.is_timeout()) => {
                    Failed::Unreachable
                }
                Err(e) => return Err(WebhookError::Http(e.without_url())),
            };
            let wait = match failed {
                Failed::RateLimited(wait) => wait,
                Failed::ServerError | Failed::Unreachable => {
                    backoff *= 2;
                    backoff / 2
                }
            };
            tracing::debug!(?failed, attempt, ?wait, "webhook failed, retrying");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

/// A failed attempt that is tried again.
#[derive(Debug)]
enum Failed {
    /// 429, with the wait asked for.
    RateLimited(Duration),
    /// A 5xx.
    ServerError,
    /// No answer.
    Unreachable,
}

fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .build()
}

#[async_trait]
impl Notifier for WebhookNotifier {
    async fn notify(&self, notice: &Notice) -> Result<(), NotifyError> {
        self.post(notice)
            .await
            .map_err(|e| NotifyError(Box::new(e)))
    }
}

/// The URL a webhook secret holds: the string itself or a JSON object's `url`; https, or http
/// to a loopback address (a receiver on the same host).
fn url_in(secret: &str) -> Option<String> {
    let secret = secret.trim();
    let url = if secret.starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(secret).ok()?;
        value.get("url")?.as_str()?.trim().to_owned()
    } else {
        secret.to_owned()
    };
    let parsed = reqwest::Url::parse(&url).ok()?;
    let host = parsed.host_str()?;
    let ip = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost"
        || ip
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    (parsed.scheme() == "https" || (parsed.scheme() == "http" && loopback)).then_some(url)
}

/// A 429's `Retry-After` in seconds.
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?;
    value
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
        .map(Duration::from_secs)
}

/// An error body as a short code: printable ASCII, cut to 64 characters.
fn code_in(body: &str) -> String {
    let code: String = body
        .trim()
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(64)
        .collect();
    if code.is_empty() {
        "(no code)".to_owned()
    } else {
        code
    }
}

/// The message's text: the mail's subject, then the notice, escaped as Slack asks (its
/// "control characters" `&`, `<`, `>`).
fn text(notice: &Notice) -> String {
    format!("{}\n{notice}", subject(notice))
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_holds_an_https_url_or_a_loopback_one() {
        let hook = "https://hooks.slack.com/services/T0/B0/XYZ";
        assert_eq!(url_in(hook).as_deref(), Some(hook));
        assert_eq!(
            url_in(&format!(r#"{{"url": "{hook}"}}"#)).as_deref(),
            Some(hook)
        );
        assert!(url_in("http://127.0.0.1:9/hook").is_some());
        assert!(url_in("http://[::1]:9/hook").is_some());
        for bad in [
            "http://hooks.slack.com/services/T0/B0/XYZ",
            "ftp://example.com/",
            "hooks.slack.com/services",
            "",
            "{\"uri\": \"https://example.com\"}",
        ] {
            assert_eq!(url_in(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_text_is_escaped_as_slack_asks() {
        let notice = Notice::Blocked {
            user: keyrot_core::UserName::new("ci").unwrap_or_else(|e| panic!("{e}")),
            reason: "a <b> & c".into(),
        };
        let text = text(&notice);
        assert!(text.starts_with("[keyrot] ci: rotation blocked"), "{text}");
        assert!(text.ends_with("ci: blocked: a &lt;b&gt; &amp; c"), "{text}");
    }

    #[test]
    fn codes_are_short_and_printable() {
        assert_eq!(code_in("no_service\n"), "no_service");
        assert_eq!(code_in(""), "(no code)");
        assert_eq!(code_in(&"x".repeat(100)).len(), 64);
        assert_eq!(code_in("a\u{1b}[31mb"), "a[31mb");
    }
}
