//! What delivery costs, counted by a proxy in front of moto: users selected by tag, each with
//! an SSM destination in its `keyrot:deliver` tag, rotated in one run. The tags come with the
//! run's listing of users (GetAccountAuthorizationDetails), so reading them costs no call of
//! its own; users selected by name cost one ListUserTags each per run, however often they are
//! observed. The figures are the README's "What one rotation costs".
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use keyrot_aws::moto::{FaultProxy, Moto};
use keyrot_aws::{
    AwsDelivery, AwsIam, AwsSecretStore, AwsSettings, AwsVerifier, DynamoLease, UserTags,
};
use keyrot_core::delivery::{DELIVER_TAG, parse_destinations};
use keyrot_core::fake::{RecordingNotifier, SimClock};
use keyrot_core::{
    Iam, Policy, Ports, Rotator, RunOptions, SecretStore, Selection, Timestamp, UserName,
};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);
const USERS: usize = 50;

#[allow(clippy::disallowed_methods)] // moto stamps keys with the real time: start from it
fn real_now() -> Timestamp {
    Timestamp::now()
}

fn policy(selection: Selection) -> Policy {
    Policy::builder()
        .selection(selection)
        .rotation_period(30 * DAY)
        .grace(2 * DAY)
        .max_grace(4 * DAY)
        .recovery_window(DAY)
        .quiet_period(6 * HOUR)
        .last_used_lag(Duration::ZERO)
        .schedule_interval(HOUR)
        .build()
        .unwrap()
}

/// Calls through `proxy` since `since`, by operation.
fn calls_since(proxy: &FaultProxy, since: &mut usize) -> BTreeMap<String, usize> {
    let calls = proxy.calls();
    let mut counts = BTreeMap::new();
    for call in &calls[*since..] {
        *counts.entry(call.op.clone()).or_default() += 1;
    }
    *since = calls.len();
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tags_cost_no_call_by_tag_and_one_per_user_and_run_by_name() {
    let moto = tokio::task::spawn_blocking(Moto::shared)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let proxy = FaultProxy::start(moto.endpoint()).unwrap();
    let config = moto
        .admin_config_with(&AwsSettings {
            endpoint_url: Some(proxy.endpoint().to_owned()),
            ..moto.settings()
        })
        .await;
    let table = "keyrot-delivery-cost";
    moto.create_lease_table(table).await.unwrap();
    let iam_client = aws_sdk_iam::Client::new(&config);
    let tags = UserTags::default();
    let iam = AwsIam::new(iam_client.clone()).with_user_tags(tags.clone());
    let store = AwsSecretStore::new(aws_sdk_secretsmanager::Client::new(&config))
        .with_prefix("keyrot-delivery-cost/");
    let clock = SimClock::new(real_now());
    let ports = Ports {
        iam: Arc::new(iam.clone()),
        store: Arc::new(store.clone()),
        verifier: Arc::new(AwsVerifier::new(config.clone())),
        lease: Arc::new(DynamoLease::new(
            aws_sdk_dynamodb::Client::new(&config),
            table,
        )),
        notifier: Arc::new(RecordingNotifier::default()),
        clock: Arc::new(clock.clone()),
    };
    let tag = "keyrot:managed:delivery-cost";
    let users: Vec<UserName> = (0..USERS)
        .map(|i| UserName::new(format!("delivery-cost-{i:03}")).unwrap())
        .collect();
    for u in &users {
        let deliver = format!("ci=ssm:eu-west-1:/keyrot-delivery-cost/{u}");
        moto.create_user(u.as_str(), &[(tag, "true"), (DELIVER_TAG, &deliver)])
            .await
            .unwrap();
        // As a finished rotation leaves a user: one key, current in its secret.
        let key = iam.create_key(u).await.unwrap();
        store
            .put_pending(u, &key.credentials(), key.key.created)
            .await
            .unwrap();
        store.promote(u, &key.key.id, None).await.unwrap();
    }
    let delivery = AwsDelivery::new(&config, BTreeMap::new())
        .with_user_tags(iam_client)
        .with_tags_seen(tags.clone());
    let by_tag = Rotator::new(
        ports.clone(),
        policy(Selection::Tagged {
            key: tag.into(),
            value: "true".into(),
        }),
    )
    .with_concurrency(8)
    .with_delivery(Arc::new(delivery));

    // A first run delivers the current keys (nothing is due yet); then every key is due.
    let first = by_tag.run(&RunOptions::default()).await.unwrap();
    assert_eq!(first.rotations(), 0, "{first}");
    clock.advance(31 * DAY);
    let mut since = proxy.calls().len();
    let report = by_tag.run(&RunOptions::default()).await.unwrap();
    let calls = calls_since(&proxy, &mut since);
    assert_eq!(report.rotations(), USERS, "{report}");
    for u in &users {
        let stored = store.load(u).await.unwrap();
        let destination =
            &parse_destinations(&format!("ci=ssm:eu-west-1:/keyrot-delivery-cost/{u}")).unwrap()[0];
        assert!(destination.holds(&stored, stored.current().unwrap()), "{u}");
    }
    assert_eq!(calls.get("iam:ListUserTags"), None, "{calls:?}");
    // Per destination: a read (does it hold the key already?), the record that the key is being
    // written, the write, the read back, the record that it landed.
    let delivering = ["ssm:GetParameter", "ssm:PutParameter"];
    let ssm: usize = delivering.iter().filter_map(|op| calls.get(*op)).sum();
    assert_eq!(ssm, 3 * USERS, "{calls:?}");
    let total: usize = calls.values().sum();
    let run_wide: usize = [
        "iam:GetAccountAuthorizationDetails",
        "iam:GenerateCredentialReport",
        "iam:GetCredentialReport",
        "secretsmanager:ListSecrets",
        "dynamodb:TransactWriteItems",
    ]
    .iter()
    .filter_map(|op| calls.get(*op))
    .sum();
    let per_user = (total - run_wide) as f64 / USERS as f64;
    println!(
        "a steady rotation with one SSM destination, users by tag: {per_user:.3} calls a user \
         + {run_wide} a run ({:.3} all in; {ssm} SSM calls, no ListUserTags): {calls:?}",
        total as f64 / USERS as f64
    );
    // The rotation's 8, and 5 for the destination.
    assert!(per_user <= 13.0, "{per_user}: {calls:?}");

    // The same users by name, in the next scheduled run (nothing due): one ListUserTags each,
    // once, whatever the survey and the observations ask.
    clock.advance(HOUR);
    let by_name = Rotator::new(
        ports.clone(),
        policy(Selection::Listed(users.iter().cloned().collect())),
    )
    .with_concurrency(8)
    .with_delivery(Arc::new(
        AwsDelivery::new(&config, BTreeMap::new())
            .with_user_tags(aws_sdk_iam::Client::new(&config))
            .with_tags_seen(tags),
    ));
    let _ = by_name.run(&RunOptions::default()).await.unwrap();
    let calls = calls_since(&proxy, &mut since);
    assert_eq!(calls.get("iam:ListUserTags"), Some(&USERS), "{calls:?}");
    println!("a run by name with nothing due: {calls:?}");
    // A second run reads them again (a changed tag is seen by the next run).
    clock.advance(HOUR);
    let _ = by_name.run(&RunOptions::default()).await.unwrap();
    let calls = calls_since(&proxy, &mut since);
    assert_eq!(calls.get("iam:ListUserTags"), Some(&USERS), "{calls:?}");
}
