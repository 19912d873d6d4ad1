//! The SES notifier against moto: what it sends; and the rotator's repeat rule, remembered in
//! Secrets Manager, that keeps a standing condition from mailing the administrators every run.
//!
//! moto keeps every message it "sends", readable at `/moto-api/data.json`. These tests have a
//! moto server of their own (a test binary of their own): moto 5.2.5 cannot render that page
//! once a user has been deleted (its IAM model raises while listing the deleted user's
//! groups), and the contract suite deletes users.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod calls;

use std::sync::Arc;
use std::time::Duration;

use keyrot_aws::moto::{Fault, FaultProxy, Moto, Rule};
use keyrot_aws::permissions::ROTATOR_ACTIONS;
use keyrot_aws::{AwsSecretStore, AwsSettings, SesNotifier};
use keyrot_core::fake::{FakeAws, FaultKind, FaultRates, op};
use keyrot_core::{
    KeyStatus, Notice, Notifier, Policy, Ports, Rotator, RunOptions, SecretStore, Timestamp,
    UserName,
};

use calls::Calls;

const DAY: Duration = Duration::from_secs(24 * 3600);

async fn shared_moto() -> &'static Moto {
    tokio::task::spawn_blocking(Moto::shared)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"))
}

#[allow(clippy::disallowed_methods)] // the virtual clock starts at the real time
fn real_now() -> Timestamp {
    Timestamp::now()
}

/// What moto "sent" from `sender` through SES: it keeps every message, readable at
/// `/moto-api/data.json`.
async fn mails_from(moto: &Moto, sender: &str) -> Vec<serde_json::Value> {
    let state = http_get(moto.endpoint(), "/moto-api/data.json").await;
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    state["ses"]["Message"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["source"] == sender)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ses_notifier_mails_the_administrators_from_the_verified_sender() {
    let moto = shared_moto().await;
    let config = moto.admin_config().await;
    let calls = Calls::default();
    let ses = calls.ses(&config);
    let notice = Notice::Blocked {
        user: UserName::new("ses-deployer").unwrap(),
        reason: "two keys in service".into(),
    };

    // An unverified sender is refused, and the refusal is an error, not a silent loss.
    let unverified = SesNotifier::new(
        ses.clone(),
        "nobody@unverified.example",
        vec!["ops@example.com".into()],
    );
    let err = unverified.notify(&notice).await.unwrap_err();
    assert!(
        keyrot_core::driver::error_chain(&err).contains("MessageRejected"),
        "{err:?}"
    );

    ses.create_email_identity()
        .email_identity("keyrot-ses@example.com")
        .send()
        .await
        .unwrap();
    let notifier = SesNotifier::new(
        ses,
        "keyrot-ses@example.com",
        vec!["ops@example.com".into(), "sec@example.com".into()],
    );
    notifier.notify(&notice).await.unwrap();

    let sent = mails_from(moto, "keyrot-ses@example.com").await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["subject"], keyrot_aws::subject(&notice));
    assert_eq!(
        sent[0]["destinations"]["ToAddresses"],
        serde_json::json!(["ops@example.com", "sec@example.com"])
    );
    assert!(
        sent[0]["body"]
            .as_str()
            .unwrap()
            .contains("two keys in service")
    );
}

/// A GET over a plain TCP connection (moto speaks HTTP/1.1 and closes after each answer).
async fn http_get(endpoint: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = endpoint.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "{head}"
    );
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        panic!("chunked answers are not read here: {head}");
    }
    body.to_owned()
}

/// The rotator holds back a repeated alert within its period, remembering the last one in the
/// user's secret on Secrets Manager, and the notifier only sends: IAM is the fake (a user
/// blocked with two keys of its own), the store and SES are moto.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_alert_is_held_back_within_its_period_through_the_secret_store() {
    let moto = shared_moto().await;
    let config = moto.admin_config().await;
    let sender = "keyrot-repeats@example.com";
    aws_sdk_sesv2::Client::new(&config)
        .create_email_identity()
        .email_identity(sender)
        .send()
        .await
        .unwrap();
    let calls = Calls::default();
    let ses = calls.ses(&config);
    let store = AwsSecretStore::new(calls.secrets(&config)).with_prefix("keyrot-test/repeats/");
    let aws = FakeAws::new(real_now(), 3, FaultRates::none());
    let user = UserName::new("repeats-deployer").unwrap();
    aws.iam.add_managed_user(user.clone());
    for _ in 0..2 {
        aws.iam
            .add_key(&user, KeyStatus::Active, aws.clock.now())
            .unwrap();
    }
    let ports = Ports {
        store: Arc::new(store.clone()),
        notifier: Arc::new(SesNotifier::new(
            ses,
            sender,
            vec!["ops@example.com".into()],
        )),
        ..aws.ports()
    };
    let rotator =
        Rotator::new(ports, Policy::builder().build().unwrap()).with_alert_repeat_after(DAY);
    let run = || async { rotator.run(&RunOptions::default()).await.unwrap() };
    let sent = || mails_from(moto, sender);

    // The user has no secret yet (blocked before adoption): recording the alert creates one.
    run().await;
    assert_eq!(sent().await.len(), 1);
    let last = store.load(&user).await.unwrap().last_notice.unwrap();
    assert_eq!(last.at, aws.clock.now());
    aws.clock.advance(Duration::from_secs(3600));
    run().await;
    assert_eq!(sent().await.len(), 1, "the hourly repeat was held back");

    // After the period the standing condition is mailed again.
    aws.clock.advance(DAY);
    run().await;
    assert_eq!(sent().await.len(), 2);

    // Another condition is news at once.
    aws.plan.fail_at(op::IAM_LIST_KEYS, FaultKind::Throttle);
    run().await;
    assert_eq!(sent().await.len(), 3);
    calls.assert_within(ROTATOR_ACTIONS, "rotator");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_send_email_reply_may_mail_twice_and_is_not_an_error() {
    // keyrot_aws::retries: the SDK retries SendEmail after a lost reply; the administrators may
    // get the mail twice, never not at all.
    let moto = shared_moto().await;
    let sender = "keyrot-lost-reply@example.com";
    aws_sdk_sesv2::Client::new(&moto.admin_config().await)
        .create_email_identity()
        .email_identity(sender)
        .send()
        .await
        .unwrap();
    let proxy = FaultProxy::start(moto.endpoint()).unwrap();
    proxy.inject(Rule::nth("ses:SendEmail", 1, Fault::FailAfter));
    let settings = AwsSettings {
        endpoint_url: Some(proxy.endpoint().to_owned()),
        ..moto.settings()
    };
    let ses = aws_sdk_sesv2::Client::new(&moto.admin_config_with(&settings).await);
    let notifier = SesNotifier::new(ses, sender, vec!["ops@example.com".into()]);
    let notice = Notice::Blocked {
        user: UserName::new("ses-lost-reply").unwrap(),
        reason: "two keys in service".into(),
    };

    notifier.notify(&notice).await.unwrap();
    assert_eq!(proxy.forwarded("ses:SendEmail"), 2, "{:?}", proxy.calls());
    assert_eq!(
        mails_from(moto, sender).await.len(),
        2,
        "the duplicate mail"
    );
}
