//! The webhook notifier against a receiver on 127.0.0.1 that answers as Slack documents its
//! incoming webhooks, its URL read from a secret in moto's Secrets Manager: what it posts, its
//! retries, its refusals (each a clear error that never stops a rotation), and that the URL
//! is in no error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyrot_aws::moto::Moto;
use keyrot_aws::{WebhookError, WebhookNotifier};
use keyrot_core::driver::error_chain;
use keyrot_core::fake::{FakeAws, FaultRates};
use keyrot_core::{
    KeyStatus, Notice, Notifier, Outcome, Policy, Ports, Rotator, RunOptions, Timestamp, UserName,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The webhook's path: `/services/<team>/<bot>/<token>`, as Slack makes them.
const TEAM_AND_BOT: &str = "/services/T0KEYROT1/B0NOTICE1/";
const TOKEN: &str = "sEcReTwEbHoOkToKeN0123456";

async fn moto() -> &'static Moto {
    tokio::task::spawn_blocking(Moto::shared)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"))
}

#[allow(clippy::disallowed_methods)] // the fakes' virtual clock starts at the real time
fn real_now() -> Timestamp {
    Timestamp::now()
}

/// The channel's state, as the receiver answers for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    /// Posts are accepted.
    Open,
    /// The channel was archived: `410 channel_is_archived`.
    Archived,
    /// The next `n` posts are rate limited: `429` with `Retry-After: 0`.
    RateLimited(u32),
    /// The next `n` posts meet a server error: `500 rollup_error`.
    Failing(u32),
    /// Every post is rate limited, asking for a minute.
    Throttled,
}

/// What the receiver was sent.
#[derive(Debug, Clone)]
struct Post {
    path: String,
    content_type: String,
    body: String,
}

/// A receiver that follows Slack's documented incoming-webhook API ("Sending messages using
/// incoming webhooks"; the error codes of Slack's 2016-05-17 changelog): a `POST` of JSON with
/// a non-empty `text` to `/services/T…/B…/<token>`. It answers `200 ok`; `400
/// invalid_payload` for a body that is not such JSON; `403 invalid_token` for a known webhook
/// with another token; `404 no_service` for a path that names no webhook; `410
/// channel_is_archived` once the channel is archived; `429` with `Retry-After` while rate
/// limiting; `500 rollup_error` while failing.
#[derive(Clone)]
struct Slack {
    url_base: String,
    state: Arc<Mutex<(Channel, Vec<Post>)>>,
}

impl Slack {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let slack = Self {
            url_base: format!("http://{}", listener.local_addr().unwrap()),
            state: Arc::new(Mutex::new((Channel::Open, Vec::new()))),
        };
        let serving = slack.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let slack = serving.clone();
                tokio::spawn(async move { slack.serve(stream).await });
            }
        });
        slack
    }

    /// The webhook's URL (`token`: the right one, or another).
    fn url(&self, token: &str) -> String {
        format!("{}{TEAM_AND_BOT}{token}", self.url_base)
    }

    fn set(&self, channel: Channel) {
        self.state.lock().unwrap().0 = channel;
    }

    fn take(&self) -> Vec<Post> {
        std::mem::take(&mut self.state.lock().unwrap().1)
    }

    async fn serve(&self, mut stream: tokio::net::TcpStream) {
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        let (head, body) = loop {
            let n = stream.read(&mut buf).await.unwrap();
            if n == 0 {
                return;
            }
            data.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&data).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = header(head, "content-length").map_or(0, |v| v.parse().unwrap());
                if body.len() >= length {
                    break (head.to_owned(), body[..length].to_owned());
                }
            }
        };
        let request_line = head.lines().next().unwrap().to_owned();
        let mut parts = request_line.split(' ');
        let (method, path) = (parts.next().unwrap(), parts.next().unwrap().to_owned());
        let post = Post {
            path: path.clone(),
            content_type: header(&head, "content-type").unwrap_or_default(),
            body: body.clone(),
        };
        let (status, text, retry_after) = self.answer(method, &post);
        self.state.lock().unwrap().1.push(post);
        let retry_after = retry_after.map_or(String::new(), |s| format!("Retry-After: {s}\r\n"));
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\n{retry_after}\
             Connection: close\r\n\r\n{text}",
            text.len()
        );
        stream.write_all(response.as_bytes()).await.unwrap();
        stream.shutdown().await.ok();
    }

    fn answer(&self, method: &str, post: &Post) -> (&'static str, &'static str, Option<u32>) {
        let Some(token) = post.path.strip_prefix(TEAM_AND_BOT) else {
            return ("404 Not Found", "no_service", None);
        };
        if method != "POST" {
            return ("404 Not Found", "no_service", None);
        }
        if token != TOKEN {
            return ("403 Forbidden", "invalid_token", None);
        }
        let text = serde_json::from_str::<serde_json::Value>(&post.body)
            .ok()
            .and_then(|v| v["text"].as_str().map(str::to_owned));
        if !post.content_type.starts_with("application/json") || text.is_none_or(|t| t.is_empty()) {
            return ("400 Bad Request", "invalid_payload", None);
        }
        let mut state = self.state.lock().unwrap();
        match state.0 {
            Channel::Open => ("200 OK", "ok", None),
            Channel::Archived => ("410 Gone", "channel_is_archived", None),
            Channel::Throttled => ("429 Too Many Requests", "rate_limited", Some(60)),
            Channel::RateLimited(n) => {
                state.0 = if n > 1 {
                    Channel::RateLimited(n - 1)
                } else {
                    Channel::Open
                };
                ("429 Too Many Requests", "rate_limited", Some(0))
            }
            Channel::Failing(n) => {
                state.0 = if n > 1 {
                    Channel::Failing(n - 1)
                } else {
                    Channel::Open
                };
                ("500 Internal Server Error", "rollup_error", None)
            }
        }
    }
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

/// A secret in moto holding `value`, and a notifier reading it.
async fn notifier_for(
    name: &str,
    value: &str,
) -> (WebhookNotifier, aws_sdk_secretsmanager::Client) {
    let secrets = aws_sdk_secretsmanager::Client::new(&moto().await.admin_config().await);
    let id = format!("keyrot-test/webhook/{name}");
    secrets
        .create_secret()
        .name(&id)
        .secret_string(value)
        .send()
        .await
        .unwrap();
    let notifier =
        WebhookNotifier::new(secrets.clone(), &id).with_backoff(Duration::from_millis(10));
    (notifier, secrets)
}

fn rotated(user: &str) -> Notice {
    Notice::Rotated {
        user: UserName::new(user).unwrap(),
        new: keyrot_core::AccessKeyId::new("AKIANEW0000000000001").unwrap(),
        old: Some(keyrot_core::AccessKeyId::new("AKIAOLD0000000000001").unwrap()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_notice_is_posted_as_slack_text() {
    let slack = Slack::start().await;
    let (notifier, _) = notifier_for("posted", &slack.url(TOKEN)).await;
    let notice = Notice::Blocked {
        user: UserName::new("deployer").unwrap(),
        reason: "two keys <in service> & no room".into(),
    };
    notifier.notify(&notice).await.unwrap();
    notifier.notify(&rotated("deployer")).await.unwrap();

    let posts = slack.take();
    assert_eq!(posts.len(), 2, "{posts:?}");
    assert_eq!(posts[0].path, format!("{TEAM_AND_BOT}{TOKEN}"));
    assert_eq!(posts[0].content_type, "application/json");
    let body: serde_json::Value = serde_json::from_str(&posts[0].body).unwrap();
    assert_eq!(body.as_object().unwrap().len(), 1, "only text: {body}");
    assert_eq!(
        body["text"],
        "[keyrot] deployer: rotation blocked, action needed\n\
         deployer: blocked: two keys &lt;in service&gt; &amp; no room"
    );
    let body: serde_json::Value = serde_json::from_str(&posts[1].body).unwrap();
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            // Slack shows `&gt;` as `>`.
            .ends_with("deployer: rotated AKIAOLD0000000000001 -&gt; AKIANEW0000000000001"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_may_hold_json_with_the_url() {
    let slack = Slack::start().await;
    let secret = serde_json::json!({ "url": slack.url(TOKEN) }).to_string();
    let (notifier, _) = notifier_for("json", &secret).await;
    notifier.notify(&rotated("json-user")).await.unwrap();
    assert_eq!(slack.take().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_retried_after_its_retry_after_and_a_5xx_after_a_backoff() {
    let slack = Slack::start().await;
    let (notifier, _) = notifier_for("retries", &slack.url(TOKEN)).await;

    slack.set(Channel::RateLimited(1));
    notifier.notify(&rotated("retried")).await.unwrap();
    assert_eq!(slack.take().len(), 2, "a 429, then the post");

    slack.set(Channel::Failing(2));
    notifier.notify(&rotated("retried")).await.unwrap();
    assert_eq!(slack.take().len(), 3, "two 500s, then the post");

    // Bounded: three attempts, then a clear error.
    slack.set(Channel::RateLimited(5));
    let err = notifier.post(&rotated("retried")).await.unwrap_err();
    assert!(matches!(err, WebhookError::RateLimited { .. }), "{err:?}");
    assert_eq!(slack.take().len(), 3);
    slack.set(Channel::Failing(5));
    let err = notifier.post(&rotated("retried")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the webhook refused the notice: 500 rollup_error"
    );
    assert_eq!(slack.take().len(), 3);

    // A wait longer than keyrot takes is not waited for.
    slack.set(Channel::Throttled);
    let err = notifier.post(&rotated("retried")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the webhook is rate limiting keyrot (retry after Some(60s))"
    );
    assert_eq!(slack.take().len(), 1);
}

/// A forced rotation on the fakes whose notices go to the webhook only: the run's outcome,
/// and whether a new key is current.
async fn rotate_with(notifier: WebhookNotifier) -> (Outcome, bool) {
    let aws = FakeAws::new(real_now(), 5, FaultRates::none());
    let user = UserName::new("hooked-deployer").unwrap();
    aws.iam.add_managed_user(user.clone());
    let old = aws
        .iam
        .add_key(&user, KeyStatus::Active, aws.clock.now())
        .unwrap();
    let ports = Ports {
        notifier: Arc::new(notifier),
        ..aws.ports()
    };
    let rotator = Rotator::new(ports, Policy::builder().build().unwrap());
    let options = RunOptions {
        force: true,
        ..RunOptions::default()
    };
    let mut report = rotator.run(&options).await.unwrap();
    assert_eq!(report.users.len(), 1);
    let current = aws.store.current_key(&user);
    let rotated = current.is_some_and(|key| key != old.key.id && aws.iam.key(&key).is_some());
    (report.users.remove(0).outcome, rotated)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_webhook_is_a_clear_error_and_never_stops_a_rotation() {
    let slack = Slack::start().await;
    for (name, url, archived, expected) in [
        (
            "no-service",
            format!("{}/services/T0GONE/B0GONE/{TOKEN}", slack.url_base),
            false,
            "the webhook refused the notice: 404 no_service",
        ),
        (
            "archived",
            slack.url(TOKEN),
            true,
            "the webhook refused the notice: 410 channel_is_archived",
        ),
        (
            "revoked",
            slack.url("aRevokedToken"),
            false,
            "the webhook refused the notice: 403 invalid_token",
        ),
    ] {
        slack.set(if archived {
            Channel::Archived
        } else {
            Channel::Open
        });
        let (notifier, _) = notifier_for(name, &url).await;
        let err = notifier.notify(&rotated("refused")).await.unwrap_err();
        assert_eq!(
            error_chain(&err),
            format!("notification failed: {expected}")
        );
        assert_eq!(slack.take().len(), 1, "{name}: refusals are not retried");

        let (outcome, rotated) = rotate_with(notifier).await;
        assert!(
            matches!(outcome, Outcome::Waiting(_)),
            "{name}: {outcome:?}"
        );
        assert!(rotated, "{name}: the new key is current");
        assert!(
            !slack.take().is_empty(),
            "{name}: the rotation's notice was posted"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_webhooks_secret_is_read_again() {
    let slack = Slack::start().await;
    let (notifier, secrets) = notifier_for("replaced", &slack.url("anOldToken")).await;
    let err = notifier.post(&rotated("replaced")).await.unwrap_err();
    assert!(err.to_string().ends_with("403 invalid_token"), "{err}");
    secrets
        .put_secret_value()
        .secret_id("keyrot-test/webhook/replaced")
        .secret_string(slack.url(TOKEN))
        .send()
        .await
        .unwrap();
    notifier.post(&rotated("replaced")).await.unwrap();
    assert_eq!(slack.take().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_url_is_in_no_error() {
    let slack = Slack::start().await;
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!(
            "http://{}{TEAM_AND_BOT}{TOKEN}",
            listener.local_addr().unwrap()
        )
    };
    let not_loopback = format!("http://hooks.example.com{TEAM_AND_BOT}{TOKEN}");
    let mut errors = Vec::new();
    for (name, url, channel) in [
        ("closed", closed.as_str(), Channel::Open),
        ("plain-http", not_loopback.as_str(), Channel::Open),
        ("refused", &slack.url(TOKEN), Channel::Archived),
        ("limited", &slack.url(TOKEN), Channel::RateLimited(9)),
        ("failing", &slack.url(TOKEN), Channel::Failing(9)),
        (
            "wrong-token",
            &slack.url(&format!("{TOKEN}x")),
            Channel::Open,
        ),
    ] {
        slack.set(channel);
        let (notifier, _) = notifier_for(&format!("no-url-{name}"), url).await;
        let err = notifier.notify(&rotated("secretive")).await.unwrap_err();
        errors.push((name, url.to_owned(), err, format!("{notifier:?}")));
    }
    // A secret that cannot be read at all.
    let secrets = aws_sdk_secretsmanager::Client::new(&moto().await.admin_config().await);
    let missing = WebhookNotifier::new(secrets, "keyrot-test/webhook/none");
    let err = missing.notify(&rotated("secretive")).await.unwrap_err();
    assert!(
        error_chain(&err).contains("could not read the webhook's secret"),
        "{err}"
    );

    let kinds: Vec<String> = errors.iter().map(|(_, _, e, _)| error_chain(e)).collect();
    assert!(
        kinds[0].contains("could not reach the webhook"),
        "{}",
        kinds[0]
    );
    assert!(
        kinds[1].contains("does not hold an https URL"),
        "{}",
        kinds[1]
    );
    assert!(
        kinds[2].ends_with("410 channel_is_archived"),
        "{}",
        kinds[2]
    );
    assert!(kinds[3].contains("rate limiting"), "{}", kinds[3]);
    assert!(kinds[4].ends_with("500 rollup_error"), "{}", kinds[4]);
    assert!(kinds[5].ends_with("403 invalid_token"), "{}", kinds[5]);
    for (name, url, err, debug) in &errors {
        for text in [error_chain(err), format!("{err:?}"), debug.clone()] {
            assert!(!text.contains(url.as_str()), "{name}: {text}");
            assert!(!text.contains(TOKEN), "{name}: {text}");
            assert!(!text.contains(TEAM_AND_BOT), "{name}: {text}");
        }
    }
}
