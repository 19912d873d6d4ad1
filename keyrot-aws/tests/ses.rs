//! The SES notifier against moto: what it sends, to the administrators and to each user's
//! owner (the `keyrot:owner` tag); and the rotator's repeat rule, remembered in Secrets
//! Manager, that keeps a standing condition from mailing the administrators every run.
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
use keyrot_aws::permissions::{OWNER_ACTIONS, ROTATOR_ACTIONS};
use keyrot_aws::{
    AwsIam, AwsSecretStore, AwsSettings, AwsVerifier, DynamoLease, OWNER_TAG, OWNER_TTL, Owners,
    SesNotifier,
};
use keyrot_core::fake::{FakeAws, FaultKind, FaultRates, SimClock, op};
use keyrot_core::{
    Iam, KeyStatus, Notice, Notifier, Outcome, Policy, Ports, Rotator, RunOptions, SecretStore,
    Selection, Timestamp, UserName,
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

/// Makes `sender` a verified SES identity, as the deployment guide asks.
async fn verify_sender(config: &aws_config::SdkConfig, sender: &str) {
    aws_sdk_sesv2::Client::new(config)
        .create_email_identity()
        .email_identity(sender)
        .send()
        .await
        .unwrap();
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
    verify_sender(&config, sender).await;
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
    verify_sender(&moto.admin_config().await, sender).await;
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

/// The mails from `sender` about `user`: (recipients, body).
async fn mails_about(moto: &Moto, sender: &str, user: &str) -> Vec<(serde_json::Value, String)> {
    mails_from(moto, sender)
        .await
        .into_iter()
        .filter(|m| {
            m["subject"]
                .as_str()
                .unwrap()
                .starts_with(&format!("[keyrot] {user}: "))
        })
        .map(|m| {
            let body = m["body"].as_str().unwrap().to_owned();
            (m["destinations"]["ToAddresses"].clone(), body)
        })
        .collect()
}

/// A forced rotation on moto (IAM, Secrets Manager, STS, DynamoDB and SES) of three users: one
/// whose `keyrot:owner` tag names an address, one without the tag, one whose tag is no
/// address. The owner is mailed besides the administrators, who are told of the owner, of
/// nobody, or of the bad tag; the tag is read once per user, and again only after
/// [`OWNER_TTL`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_is_mailed_to_the_users_owner_as_well_as_the_administrators() {
    let moto = shared_moto().await;
    let config = moto.admin_config().await;
    let sender = "keyrot-owners@example.com";
    verify_sender(&config, sender).await;
    // The owners' reads go through a proxy that counts them.
    let proxy = FaultProxy::start(moto.endpoint()).unwrap();
    let counted = moto
        .admin_config_with(&AwsSettings {
            endpoint_url: Some(proxy.endpoint().to_owned()),
            ..moto.settings()
        })
        .await;
    let calls = Calls::default();
    let managed = "keyrot:managed:owners-test";
    let owner = "ana.owner+keys@example.com";
    let users = [
        ("owned-deployer", Some(owner)),
        ("unowned-deployer", None),
        ("misowned-deployer", Some("ana@example")),
    ];
    let iam = AwsIam::new(calls.iam(&config));
    for (name, tag) in users {
        let mut tags = vec![(managed, "true")];
        tags.extend(tag.map(|t| (OWNER_TAG, t)));
        moto.create_user(name, &tags).await.unwrap();
        iam.create_key(&UserName::new(name).unwrap()).await.unwrap();
    }
    let table = "keyrot-owners-test";
    moto.create_lease_table(table).await.unwrap();
    let clock = SimClock::new(real_now());
    let owners = Owners::new(calls.iam(&counted), Arc::new(clock.clone()));
    let notifier = SesNotifier::new(calls.ses(&config), sender, vec!["ops@example.com".into()])
        .with_owners(owners);
    let ports = Ports {
        iam: Arc::new(iam),
        store: Arc::new(
            AwsSecretStore::new(calls.secrets(&config)).with_prefix("keyrot-test/owners/"),
        ),
        verifier: Arc::new(AwsVerifier::new(config.clone())),
        lease: Arc::new(DynamoLease::new(calls.dynamodb(&config), table)),
        notifier: Arc::new(notifier.clone()),
        clock: Arc::new(clock.clone()),
    };
    let policy = Policy::builder()
        .selection(Selection::Tagged {
            key: managed.into(),
            value: "true".into(),
        })
        .build()
        .unwrap();
    let options = RunOptions {
        force: true,
        ..RunOptions::default()
    };
    let report = Rotator::new(ports, policy).run(&options).await.unwrap();
    assert_eq!(report.users.len(), 3, "{report:?}");
    for user in &report.users {
        assert!(matches!(user.outcome, Outcome::Waiting(_)), "{user:?}");
    }

    let ops = serde_json::json!(["ops@example.com"]);
    let owned = mails_about(moto, sender, "owned-deployer").await;
    assert_eq!(owned.len(), 2, "{owned:?}");
    assert_eq!(owned[0].0, serde_json::json!([owner]), "the owner first");
    assert!(owned[0].1.contains("owned-deployer: rotated "), "{owned:?}");
    assert_eq!(owned[1].0, ops);
    assert!(owned[1].1.starts_with(&owned[0].1), "{owned:?}");
    assert!(
        owned[1].1.ends_with(&format!(
            "Also sent to the user's owner (keyrot:owner), {owner}.\n"
        )),
        "{owned:?}"
    );

    let unowned = mails_about(moto, sender, "unowned-deployer").await;
    assert_eq!(unowned.len(), 1, "{unowned:?}");
    assert_eq!(unowned[0].0, ops);
    assert!(!unowned[0].1.contains("owner"), "{unowned:?}");

    let misowned = mails_about(moto, sender, "misowned-deployer").await;
    assert_eq!(misowned.len(), 1, "only the administrators: {misowned:?}");
    assert_eq!(misowned[0].0, ops);
    assert!(
        misowned[0]
            .1
            .contains("keyrot:owner tag (\"ana@example\") is not an email address"),
        "{misowned:?}"
    );
    assert_eq!(mails_from(moto, sender).await.len(), 4);
    assert_eq!(proxy.forwarded("iam:ListUserTags"), 3, "once a user");

    // More notices about the owned user in the same run read the tag no more; one that is no
    // business of the owner's reads it not at all; after OWNER_TTL it is read again.
    let user = UserName::new("owned-deployer").unwrap();
    let blocked = Notice::Blocked {
        user: user.clone(),
        reason: "two keys in service".into(),
    };
    notifier.notify(&blocked).await.unwrap();
    let failed = Notice::Failed {
        user: user.clone(),
        error: "throttled by IAM".into(),
    };
    notifier.notify(&failed).await.unwrap();
    assert_eq!(proxy.forwarded("iam:ListUserTags"), 3);
    let owned = mails_about(moto, sender, "owned-deployer").await;
    assert_eq!(
        owned.len(),
        5,
        "the owner hears of the block, not of the failure"
    );
    assert_eq!(owned[2].0, serde_json::json!([owner]));
    assert!(owned[2].1.contains("blocked: two keys in service"));
    assert_eq!(owned[4].0, ops);
    assert!(!owned[4].1.contains("owner"), "{owned:?}");
    clock.advance(OWNER_TTL);
    notifier.notify(&blocked).await.unwrap();
    assert_eq!(proxy.forwarded("iam:ListUserTags"), 4);

    let allowed: Vec<&str> = ROTATOR_ACTIONS
        .iter()
        .chain(OWNER_ACTIONS)
        .copied()
        .collect();
    calls.assert_within(&allowed, "rotator");
}

/// The owner's mail refused (a recipient SES will not take) costs the administrators nothing:
/// they get theirs, saying the owner could not be told; a tag that cannot be read is said too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_ses_refuses_or_an_unreadable_tag_is_told_to_the_administrators() {
    let moto = shared_moto().await;
    let config = moto.admin_config().await;
    let sender = "keyrot-owner-refused@example.com";
    verify_sender(&config, sender).await;
    let clock = SimClock::new(real_now());
    let notifier = |iam: aws_sdk_iam::Client| {
        SesNotifier::new(
            aws_sdk_sesv2::Client::new(&config),
            sender,
            vec!["ops@example.com".into()],
        )
        .with_owners(Owners::new(iam, Arc::new(clock.clone())))
    };

    // No such user in IAM: the tag cannot be read.
    let nobody = Notice::Blocked {
        user: UserName::new("nobody-at-all").unwrap(),
        reason: "two keys in service".into(),
    };
    notifier(aws_sdk_iam::Client::new(&config))
        .notify(&nobody)
        .await
        .unwrap();
    let mails = mails_about(moto, sender, "nobody-at-all").await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(
        mails[0]
            .1
            .contains("The user's keyrot:owner tag could not be read (no such user or access key)"),
        "{mails:?}"
    );

    // SES refuses the owner's mail (through a proxy that fails its first SendEmail).
    let proxy = FaultProxy::start(moto.endpoint()).unwrap();
    proxy.inject(Rule::nth("ses:SendEmail", 1, Fault::FailBefore));
    let settings = AwsSettings {
        endpoint_url: Some(proxy.endpoint().to_owned()),
        max_attempts: Some(1),
        ..moto.settings()
    };
    let proxied = moto.admin_config_with(&settings).await;
    moto.create_user("refused-deployer", &[(OWNER_TAG, "owner@example.com")])
        .await
        .unwrap();
    let refused = SesNotifier::new(
        aws_sdk_sesv2::Client::new(&proxied),
        sender,
        vec!["ops@example.com".into()],
    )
    .with_owners(Owners::new(
        aws_sdk_iam::Client::new(&config),
        Arc::new(clock.clone()),
    ));
    let notice = Notice::Rotated {
        user: UserName::new("refused-deployer").unwrap(),
        new: keyrot_core::AccessKeyId::new("AKIANEW0000000000009").unwrap(),
        old: None,
    };
    refused.notify(&notice).await.unwrap();
    let mails = mails_about(moto, sender, "refused-deployer").await;
    assert_eq!(mails.len(), 1, "the administrators' only: {mails:?}");
    assert_eq!(mails[0].0, serde_json::json!(["ops@example.com"]));
    assert!(
        mails[0]
            .1
            .contains("Could not be sent to the user's owner (keyrot:owner), owner@example.com: "),
        "{mails:?}"
    );
}
