//! The survey's bulk reads against moto's server on loopback, through a proxy that counts the
//! calls: users selected by tag in one call, IAM's credential report read and matched to the
//! keys IAM lists, keyrot's secrets listed as `load` describes them, and a run with nothing due
//! that costs a few calls for all its users.
//!
//! Where moto differs from AWS: its credential report is made afresh for every
//! GetCredentialReport (AWS hands out the same one for four hours), its ListSecrets is never
//! behind, and GetAccountAuthorizationDetails never truncates. The in-memory fakes model AWS's
//! side of each (keyrot-core's `tests/survey.rs` and the simulation run on them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use keyrot_aws::moto::{Fault, FaultProxy, Moto, Rule};
use keyrot_aws::{AwsIam, AwsSecretStore, AwsSettings, AwsVerifier, DynamoLease};
use keyrot_core::fake::{RecordingNotifier, SimClock};
use keyrot_core::{
    Iam, KeyStatus, Outcome, Policy, Ports, Rotator, RunOptions, SecretStore, Selection, Timestamp,
    UserName, Wait,
};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

async fn moto() -> &'static Moto {
    tokio::task::spawn_blocking(Moto::shared)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"))
}

#[allow(clippy::disallowed_methods)] // moto stamps keys with the real time: start from it
fn real_now() -> Timestamp {
    Timestamp::now()
}

/// Adapters for the test `id` through a counting proxy in front of moto, with the SDK's
/// default retries.
struct World {
    proxy: FaultProxy,
    iam: AwsIam,
    store: AwsSecretStore,
    ports: Ports,
    clock: SimClock,
    tag: String,
}

impl World {
    async fn new(id: &str) -> Self {
        let moto = moto().await;
        let proxy = FaultProxy::start(moto.endpoint()).unwrap();
        let settings = AwsSettings {
            endpoint_url: Some(proxy.endpoint().to_owned()),
            ..moto.settings()
        };
        let config = moto.admin_config_with(&settings).await;
        let table = format!("keyrot-survey-{id}");
        moto.create_lease_table(&table).await.unwrap();
        let iam = AwsIam::new(aws_sdk_iam::Client::new(&config));
        let store = AwsSecretStore::new(aws_sdk_secretsmanager::Client::new(&config))
            .with_prefix(format!("keyrot-survey/{id}/"));
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
        Self {
            proxy,
            iam,
            store,
            ports,
            clock,
            tag: format!("keyrot:managed:survey-{id}"),
        }
    }

    fn policy(&self) -> Policy {
        self.policy_for(&self.tag)
    }

    /// [`World::policy`] for the users tagged `tag`.
    fn policy_for(&self, tag: &str) -> Policy {
        Policy::builder()
            .selection(Selection::Tagged {
                key: tag.to_owned(),
                value: "true".into(),
            })
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

    /// Calls through the proxy since the last `take_calls`, by operation (`iam:ListAccessKeys`).
    fn take_calls(&self, since: &mut usize) -> BTreeMap<String, usize> {
        let calls = self.proxy.calls();
        let mut counts = BTreeMap::new();
        for call in &calls[*since..] {
            *counts.entry(call.op.clone()).or_default() += 1;
        }
        *since = calls.len();
        counts
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_selected_by_tag_in_one_call() {
    let w = World::new("select").await;
    let moto = moto().await;
    for (name, tagged) in [("a", true), ("b", false), ("c", true)] {
        let tags: &[(&str, &str)] = if tagged { &[(&w.tag, "true")] } else { &[] };
        moto.create_user(&format!("survey-select-{name}"), tags)
            .await
            .unwrap();
    }
    let mut since = 0;
    let selection = Selection::Tagged {
        key: w.tag.clone(),
        value: "true".into(),
    };
    let users = w.iam.managed_users(&selection).await.unwrap();
    let names: Vec<&str> = users.iter().map(UserName::as_str).collect();
    assert_eq!(names, ["survey-select-a", "survey-select-c"]);
    let calls = w.take_calls(&mut since);
    assert_eq!(
        calls,
        BTreeMap::from([("iam:GetAccountAuthorizationDetails".to_owned(), 1)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_page_of_users_is_retried_by_the_sdk_and_beyond_fails_the_listing() {
    let w = World::new("throttled").await;
    let moto = moto().await;
    moto.create_user("survey-throttled-a", &[(&w.tag, "true")])
        .await
        .unwrap();
    let selection = Selection::Tagged {
        key: w.tag.clone(),
        value: "true".into(),
    };
    // With the SDK's retries (five attempts), two throttled attempts cost nothing.
    w.proxy.inject(Rule::first_of(
        "iam:GetAccountAuthorizationDetails",
        2,
        Fault::Throttle,
    ));
    let users = w.iam.managed_users(&selection).await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(w.proxy.faulted(), 2);
    // Without them, a throttled page fails the listing: keyrot can neither manage the users
    // on it nor report them as unmanaged.
    let settings = AwsSettings {
        endpoint_url: Some(w.proxy.endpoint().to_owned()),
        max_attempts: Some(1),
        ..moto.settings()
    };
    let once = AwsIam::new(aws_sdk_iam::Client::new(
        &moto.admin_config_with(&settings).await,
    ));
    // The fourth request of the operation: three went out above.
    w.proxy.inject(Rule::nth(
        "iam:GetAccountAuthorizationDetails",
        4,
        Fault::Throttle,
    ));
    let err = once.managed_users(&selection).await.unwrap_err();
    assert!(
        matches!(err, keyrot_core::IamError::Throttled(_)),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_credential_report_shows_the_keys_iam_lists() {
    let w = World::new("report").await;
    let moto = moto().await;
    let user = UserName::new("survey-report-u").unwrap();
    moto.create_user(user.as_str(), &[]).await.unwrap();
    let first = w.iam.create_key(&user).await.unwrap();
    let second = w.iam.create_key(&user).await.unwrap();
    w.iam
        .set_status(&user, &second.key.id, KeyStatus::Inactive)
        .await
        .unwrap();
    let report = w.iam.credential_report().await.unwrap().unwrap();
    let listed = &report.users[&user];
    let mut want: Vec<(bool, i64)> = [(&first, true), (&second, false)]
        .iter()
        .map(|(k, active)| (*active, k.key.created.as_second()))
        .collect();
    let mut got: Vec<(bool, i64)> = listed
        .iter()
        .map(|k| (k.active, k.created.as_second()))
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "{listed:?}");
    assert!(report.generated <= real_now() + Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listing_describes_each_secret_as_load_does() {
    let w = World::new("listing").await;
    let moto = moto().await;
    let policy = w.policy();
    let users: Vec<UserName> = (0..3)
        .map(|i| UserName::new(format!("survey-listing-{i}")).unwrap())
        .collect();
    for u in &users {
        moto.create_user(u.as_str(), &[(&w.tag, "true")])
            .await
            .unwrap();
        w.iam.create_key(u).await.unwrap();
    }
    // One rotation each (adopt, create, stage, verify, publish, mark superseded).
    let rotator = Rotator::new(w.ports.clone(), policy);
    let report = rotator
        .run(&RunOptions {
            force: true,
            ..RunOptions::default()
        })
        .await
        .unwrap();
    assert_eq!(report.rotations(), 3, "{report}");
    let listed = w.store.list_stored().await.unwrap().unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
    for u in &users {
        let loaded = w.store.load(u).await.unwrap();
        let mut labelled = loaded.clone();
        labelled
            .versions
            .retain(|v| v.stages != keyrot_core::Stages::default());
        let mut from_listing = listed[u].clone();
        from_listing
            .versions
            .sort_by(|a, b| a.key_id.cmp(&b.key_id));
        labelled.versions.sort_by(|a, b| a.key_id.cmp(&b.key_id));
        assert_eq!(from_listing, labelled, "{u}");
        assert!(
            labelled.intent.is_some_and(|i| !i.created.is_empty()),
            "{u}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_nothing_due_costs_a_few_calls_for_all_its_users() {
    const USERS: usize = 150;
    let w = World::new("idle").await;
    let moto = moto().await;
    let users: Vec<UserName> = (0..USERS)
        .map(|i| UserName::new(format!("survey-idle-{i:02}")).unwrap())
        .collect();
    for u in &users {
        moto.create_user(u.as_str(), &[(&w.tag, "true")])
            .await
            .unwrap();
        w.iam.create_key(u).await.unwrap();
    }
    // A key made within CLOCK_SKEW before keyrot's intent could be the one made under it, and
    // the survey observes such a user: people's keys are older than that. moto dates keys by
    // the real clock, so the rotator's follows it.
    tokio::time::sleep(keyrot_core::survey::CLOCK_SKEW + Duration::from_secs(1)).await;
    let behind = Duration::try_from(real_now().duration_since(w.clock.now())).unwrap_or_default();
    w.clock.advance(behind);
    let rotator = Rotator::new(w.ports.clone(), w.policy()).with_concurrency(4);
    let first = rotator
        .run(&RunOptions {
            force: true,
            ..RunOptions::default()
        })
        .await
        .unwrap();
    assert_eq!(first.rotations(), USERS, "{first}");

    // The next scheduled run.
    w.clock.advance(HOUR);
    let mut since = w.proxy.calls().len();
    let second = rotator.run(&RunOptions::default()).await.unwrap();
    let calls = w.take_calls(&mut since);
    let full_looks = users
        .iter()
        .filter(|u| keyrot_core::survey::full_look_due(u, HOUR, w.clock.now()))
        .count();
    // Run-wide: the selection, the report (generate, get) and one page of secrets; per user
    // only the periodic full looks (ListAccessKeys, DescribeSecret: the labelled versions
    // account for every key, so the unlabelled ones are not listed).
    let run_wide = [
        "iam:GetAccountAuthorizationDetails",
        "iam:GenerateCredentialReport",
        "iam:GetCredentialReport",
        "secretsmanager:ListSecrets",
    ];
    let per_user: usize = calls
        .iter()
        .filter(|(op, _)| !run_wide.contains(&op.as_str()))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(per_user, 2 * full_looks, "{calls:?}");
    let share = per_user as f64 / USERS as f64;
    println!("a run with nothing due: {share:.3} calls a user, {full_looks} full looks: {calls:?}");
    assert!(share <= 0.1, "{share}: {calls:?}");
    // Run-wide, named: one page of users, the report (generated once, or polled once more
    // while IAM makes it, and read), and a page of secrets per 100.
    let total: usize = calls.values().sum();
    let fixed = 1 + 2 + 1 + USERS.div_ceil(100);
    assert!(total <= fixed + 2 * full_looks, "{total}: {calls:?}");
    for u in &second.users {
        assert!(
            matches!(u.outcome, Outcome::Waiting(Wait::AwaitingGrace { .. })),
            "{second}"
        );
    }
}

/// What a rotation costs, counted by the proxy: `USERS` users rotated in one run, first from a
/// key made by a person (adopted, the secret created), then from a key keyrot stored (a steady
/// rotation). The figures are the README's "What one rotation costs".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_costs_at_most_ten_calls_first_and_eight_after() {
    const USERS: usize = 150;
    let w = World::new("cost").await;
    let moto = moto().await;
    let legacy: Vec<UserName> = (0..USERS)
        .map(|i| UserName::new(format!("survey-cost-first-{i:03}")).unwrap())
        .collect();
    let stored: Vec<UserName> = (0..USERS)
        .map(|i| UserName::new(format!("survey-cost-steady-{i:03}")).unwrap())
        .collect();
    // Each group is selected by its own tag, so that a scheduled run covers it alone.
    let (first_tag, steady_tag) = (format!("{}-first", w.tag), format!("{}-steady", w.tag));
    for (users, tag) in [(&legacy, &first_tag), (&stored, &steady_tag)] {
        for u in users {
            moto.create_user(u.as_str(), &[(tag, "true")])
                .await
                .unwrap();
        }
    }
    for u in &legacy {
        w.iam.create_key(u).await.unwrap();
    }
    // As a finished rotation leaves a user: one key, current in its secret.
    for u in &stored {
        let key = w.iam.create_key(u).await.unwrap();
        let credentials = key.credentials();
        w.store
            .put_pending(u, &credentials, key.key.created)
            .await
            .unwrap();
        w.store.promote(u, &key.key.id, None).await.unwrap();
    }
    // Every key is due (the clock is a rotation period ahead of moto's dates).
    w.clock.advance(31 * DAY);
    let run_wide = [
        "iam:GetAccountAuthorizationDetails",
        "iam:GenerateCredentialReport",
        "iam:GetCredentialReport",
        "secretsmanager:ListSecrets",
    ];
    for (tag, most, what) in [(&first_tag, 10.0, "first"), (&steady_tag, 8.0, "steady")] {
        let rotator = Rotator::new(w.ports.clone(), w.policy_for(tag)).with_concurrency(8);
        let mut since = w.proxy.calls().len();
        let report = rotator.run(&RunOptions::default()).await.unwrap();
        let calls = w.take_calls(&mut since);
        assert_eq!(report.rotations(), USERS, "{report}");
        let total: usize = calls.values().sum();
        // A run's own calls: the survey (a listing page may be read twice while moto and the
        // run race), and the claims, taken and given back a hundred users at a time.
        let survey: usize = run_wide.iter().filter_map(|op| calls.get(*op)).sum();
        let batches = calls
            .get("dynamodb:TransactWriteItems")
            .copied()
            .unwrap_or(0);
        assert!(survey <= 6, "{calls:?}");
        assert_eq!(batches, 2 * USERS.div_ceil(100), "{calls:?}");
        let per_user = (total - survey - batches) as f64 / USERS as f64;
        let all_in = total as f64 / USERS as f64;
        println!(
            "{what} rotation: {per_user:.3} calls a user, {survey} + {batches} a run \
             ({all_in:.3} a user all in): {calls:?}"
        );
        assert!(
            per_user <= most,
            "{what}: {per_user} calls a user: {calls:?}"
        );
    }
}
