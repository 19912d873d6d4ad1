//! The driver's own promises, one scenario each on the in-memory fakes: a dry run changes
//! nothing, every notice goes out when it should, the run deadline, the lease, what a run does
//! after an ambiguous failure, the verify pacing, rollback's result, and the report's counts.

// A test: a panic is how it reports a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::executor::block_on;

use keyrot_core::driver::RollbackError;
use keyrot_core::fake::{FakeAws, FaultKind, FaultRates, IamAction, op};
use keyrot_core::{
    AccessKeyId, Blocked, Claim, KeyStatus, Lease, Notice, Outcome, Policy, Rotator, RunOptions,
    RunReport, SecretStore, Step, StoreError, Timestamp, UserName, Wait,
};

mod replies;

const MIN: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(24 * 3600);

fn start() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

fn user(name: &str) -> UserName {
    UserName::new(name).unwrap()
}

/// A policy on the scale of days, with IAM's answers taken at once (the fakes' lag is zero).
fn policy() -> Policy {
    policy_verifying_within(5 * MIN)
}

/// [`policy`] with another verify timeout.
fn policy_verifying_within(verify_timeout: Duration) -> Policy {
    Policy::builder()
        .rotation_period(30 * DAY)
        .grace(DAY)
        .max_grace(2 * DAY)
        .recovery_window(DAY)
        .quiet_period(6 * 60 * MIN)
        .last_used_lag(Duration::ZERO)
        .verify_timeout(verify_timeout)
        .schedule_interval(60 * MIN)
        .build()
        .unwrap()
}

fn world() -> (FakeAws, Rotator) {
    let aws = FakeAws::new(start(), 7, FaultRates::none());
    let rotator = Rotator::new(aws.ports(), policy());
    (aws, rotator)
}

fn run(rotator: &Rotator, options: &RunOptions) -> RunReport {
    block_on(rotator.run(options)).unwrap()
}

fn outcome<'a>(report: &'a RunReport, name: &str) -> &'a Outcome {
    &report
        .users
        .iter()
        .find(|u| u.user.as_str() == name)
        .unwrap()
        .outcome
}

fn steps(report: &RunReport, name: &str) -> Vec<String> {
    let u = report
        .users
        .iter()
        .find(|u| u.user.as_str() == name)
        .unwrap();
    u.steps.iter().map(Step::name).map(str::to_owned).collect()
}

/// A managed user with a legacy key 100 days old that keyrot has not seen yet.
fn with_legacy_key(aws: &FakeAws, name: &str) -> (UserName, AccessKeyId) {
    let u = user(name);
    aws.iam.add_managed_user(u.clone());
    let legacy = aws
        .iam
        .add_key(&u, KeyStatus::Active, start() - 100 * DAY)
        .unwrap();
    (u, legacy.key.id)
}

/// A user with a legacy key 100 days old, stored as the current version, rotated once by a
/// first run: the new key, and the one it superseded.
fn rotated(aws: &FakeAws, rotator: &Rotator, name: &str) -> (AccessKeyId, AccessKeyId) {
    let (u, old) = with_stored_legacy_key(aws, name);
    let report = block_on(rotator.run(&RunOptions {
        users: vec![u.clone()],
        ..RunOptions::default()
    }))
    .unwrap();
    assert!(report.users[0].rotated(), "{report}");
    (aws.store.current_key(&u).unwrap(), old)
}

/// A managed user with a legacy key 100 days old, stored before keyrot came as the current
/// version, with its secret.
fn with_stored_legacy_key(aws: &FakeAws, name: &str) -> (UserName, AccessKeyId) {
    let (u, old) = with_legacy_key(aws, name);
    let key = aws.iam.key(&old).unwrap();
    let credentials = aws.iam.credentials_of(&old).unwrap();
    aws.store.create_secret(&u, &credentials, key.created);
    (u, old)
}

/// Everything IAM and the store hold, user by user, secrets aside.
type State = Vec<(
    Vec<keyrot_core::AccessKey>,
    Vec<keyrot_core::fake::VersionInfo>,
    keyrot_core::StoredUser,
)>;

fn state(aws: &FakeAws) -> State {
    aws.iam
        .users()
        .iter()
        .map(|u| {
            (
                aws.iam.keys(u),
                aws.store.versions(u),
                aws.store.snapshot(u),
            )
        })
        .collect()
}

#[test]
fn a_dry_run_changes_nothing_in_iam_or_the_store() {
    let (aws, rotator) = world();
    // Every kind of pending action: a user due for rotation, a superseded key past grace and
    // idle, an inactive key past its recovery window, keyrot's own orphan, an operator's
    // inactive key in the slot a due rotation needs, and a user with no key.
    rotated(&aws, &rotator, "past-grace");
    rotated(&aws, &rotator, "past-recovery");
    aws.clock.advance(DAY + MIN);
    block_on(rotator.run(&RunOptions {
        users: vec![user("past-recovery")],
        ..RunOptions::default()
    }))
    .unwrap();
    aws.clock.advance(DAY + MIN);
    let due = with_legacy_key(&aws, "due").0;
    let orphaned = user("orphaned");
    aws.iam.add_managed_user(orphaned.clone());
    let intent = keyrot_core::Intent {
        at: aws.clock.now(),
        ..Default::default()
    };
    block_on(aws.store.record_intent(&orphaned, &intent)).unwrap();
    aws.iam
        .add_key(&orphaned, KeyStatus::Active, aws.clock.now())
        .unwrap();
    aws.iam.add_managed_user(user("keyless"));
    let crowded = user("crowded");
    aws.iam.add_managed_user(crowded.clone());
    aws.iam
        .add_key(&crowded, KeyStatus::Inactive, start() - 50 * DAY)
        .unwrap();
    aws.iam
        .add_key(&crowded, KeyStatus::Active, start() - 100 * DAY)
        .unwrap();
    let adopted = keyrot_core::Marks {
        adopted: Some(start()),
        ..Default::default()
    };
    block_on(
        aws.store
            .record_marks(&crowded, &aws.iam.keys(&crowded)[1].id, &adopted),
    )
    .unwrap();

    aws.iam.take_history();
    let before = state(&aws);
    let calls = aws.plan.call_counts();

    let report = run(
        &rotator,
        &RunOptions {
            dry_run: true,
            ..RunOptions::default()
        },
    );
    let planned = |name: &str| match outcome(&report, name) {
        Outcome::Planned(step) => step.to_string(),
        other => panic!("{name}: {other}"),
    };
    assert!(planned("due").starts_with("adopt "), "{report}");
    assert!(planned("past-grace").starts_with("deactivate "), "{report}");
    assert!(planned("past-recovery").starts_with("delete "), "{report}");
    assert!(
        planned("orphaned").starts_with("delete orphan "),
        "{report}"
    );
    assert_eq!(planned("keyless"), "create and stage a new key");
    assert!(planned("crowded").starts_with("make room"), "{report}");

    assert_eq!(aws.iam.history(), [], "a dry run made IAM changes");
    assert!(state(&aws) == before, "a dry run changed IAM or the store");
    let users = aws.iam.users();
    for u in &users {
        assert_eq!(aws.lease.claim(u), None, "a dry run took {u}'s lease");
    }
    // Only reads were made, and the observation a plan needs (last use of the old key).
    let after = aws.plan.call_counts();
    for (op, n) in &after {
        let before = calls.get(op).copied().unwrap_or(0);
        let read = [
            op::IAM_MANAGED_USERS,
            op::IAM_LIST_KEYS,
            op::IAM_LAST_USED,
            op::STORE_LOAD,
            op::IAM_CREDENTIAL_REPORT,
            op::STORE_LIST,
        ]
        .contains(op);
        assert!(read || *n == before, "a dry run called {op}");
    }
    assert!(after.get(op::IAM_LAST_USED) > calls.get(op::IAM_LAST_USED));
    // The same for one user's status.
    let managed = block_on(rotator.managed(&due)).unwrap().unwrap();
    let status = block_on(rotator.plan_user(&managed));
    assert!(
        matches!(status.outcome, Outcome::Planned(Step::Adopt(_))),
        "{:?}",
        status.outcome
    );
    assert_eq!(aws.iam.history(), []);
    assert!(
        aws.notifier.notices().is_empty()
            || !aws
                .notifier
                .notices()
                .iter()
                .any(|n| matches!(n, Notice::Rotated { .. } if n.user() == &due))
    );
}

#[test]
fn every_notice_goes_out_when_it_should() {
    let (aws, rotator) = world();
    let (new, old) = rotated(&aws, &rotator, "alice");
    let alice = user("alice");
    assert_eq!(
        aws.notifier.take(),
        [Notice::Rotated {
            user: alice.clone(),
            new,
            old: Some(old.clone()),
        }]
    );
    // A consumer keeps using the old key every hour, with hourly runs: one warning in the last
    // run before the maximum grace, then the forced deactivation, and nothing else.
    let creds = aws.iam.credentials_of(&old).unwrap();
    let forced_at = start() + 2 * DAY;
    let mut notices = Vec::new();
    for _ in 0..(2 * 24) {
        aws.clock.advance(60 * MIN);
        aws.iam.authenticate(&creds, aws.clock.now()).unwrap();
        run(&rotator, &RunOptions::default());
        notices.extend(
            aws.notifier
                .take()
                .into_iter()
                .map(|n| (aws.clock.now(), n)),
        );
    }
    assert_eq!(
        notices,
        [
            (
                forced_at - 60 * MIN,
                Notice::WillForceDeactivate {
                    user: alice.clone(),
                    key: old.clone(),
                    at: forced_at,
                }
            ),
            (
                forced_at,
                Notice::ForcedDeactivation {
                    user: alice,
                    key: old.clone(),
                }
            ),
        ]
    );
    assert_eq!(aws.iam.key(&old).unwrap().status, KeyStatus::Inactive);
}

#[test]
fn blocked_and_failed_users_alert() {
    let (aws, rotator) = world();
    let bob = user("bob");
    aws.iam.add_managed_user(bob.clone());
    aws.iam.add_key(&bob, KeyStatus::Active, start()).unwrap();
    aws.iam.add_key(&bob, KeyStatus::Active, start()).unwrap();
    let report = run(&rotator, &RunOptions::default());
    assert!(
        matches!(
            outcome(&report, "bob"),
            Outcome::Blocked(Blocked::TwoKeysInService)
        ),
        "{report}"
    );
    assert!(matches!(
        aws.notifier.take().as_slice(),
        [Notice::Blocked { user, reason }] if user == &bob && reason.contains("two active keys")
    ));
    aws.plan.fail_at(op::STORE_LOAD, FaultKind::Throttle);
    let report = run(&rotator, &RunOptions::default());
    assert!(
        matches!(outcome(&report, "bob"), Outcome::Failed { step: None, .. }),
        "{report}"
    );
    assert!(matches!(
        aws.notifier.take().as_slice(),
        [Notice::Failed { user, error }] if user == &bob && error.starts_with("observe: ")
    ));
}

#[test]
fn a_discarded_key_alerts_and_the_next_run_tries_again() {
    let (aws, rotator) = world();
    let carol = with_legacy_key(&aws, "carol").0;
    // New keys take longer than the verify timeout to authenticate.
    aws.iam.set_propagation_delay(10 * MIN);
    let report = run(&rotator, &RunOptions::default());
    let Outcome::Discarded(key) = outcome(&report, "carol") else {
        panic!("{report}");
    };
    assert!(aws.iam.key(key).is_none(), "the discarded key is deleted");
    assert!(
        report.users[0].keys.iter().all(|k| &k.id != key),
        "the report still lists the discarded key"
    );
    assert!(aws.notifier.notices().contains(&Notice::Discarded {
        user: carol,
        key: key.clone(),
    }));
    assert_eq!(report.failures(), 1);
    aws.iam.set_propagation_delay(Duration::ZERO);
    let report = run(&rotator, &RunOptions::default());
    assert!(report.users[0].rotated(), "{report}");
}

#[test]
fn no_user_starts_after_the_deadline() {
    let (aws, rotator) = world();
    for name in ["a", "b"] {
        aws.iam.add_managed_user(user(name));
    }
    let past = RunOptions {
        deadline: Some(aws.clock.now()),
        ..RunOptions::default()
    };
    let report = run(&rotator, &past);
    assert!(
        report
            .users
            .iter()
            .all(|u| matches!(u.outcome, Outcome::Skipped)),
        "{report}"
    );
    assert!(aws.iam.history().is_empty());
    let future = RunOptions {
        deadline: Some(aws.clock.now() + 60 * MIN),
        ..RunOptions::default()
    };
    let report = run(&rotator, &future);
    assert_eq!(report.rotations(), 2, "{report}");
}

#[test]
fn a_user_another_run_holds_is_skipped_and_left_alone() {
    let (aws, rotator) = world();
    let alice = with_legacy_key(&aws, "alice").0;
    let until = aws.clock.now() + 10 * MIN;
    let Claim::Granted(other) =
        block_on(aws.lease.acquire(&alice, aws.clock.now(), until)).unwrap()
    else {
        panic!("the other run's claim");
    };
    let report = run(&rotator, &RunOptions::default());
    assert!(
        matches!(outcome(&report, "alice"), Outcome::Busy { until: u } if *u == until),
        "{report}"
    );
    assert_eq!(
        report.to_string().lines().nth(1).unwrap(),
        format!("alice  -      skipped: another run holds the user until {until}")
    );
    assert!(!outcome(&report, "alice").is_failure());
    assert!(
        aws.iam.history().is_empty(),
        "acted on a user another run holds"
    );
    assert_eq!(aws.lease.claim(&alice).map(|c| c.0), Some(other));
    // Once the claim expires, the next run acts, and gives its own claim back when done.
    aws.clock.advance(11 * MIN);
    let report = run(&rotator, &RunOptions::default());
    assert!(report.users[0].rotated(), "{report}");
    assert_eq!(aws.lease.claim(&alice), None);
}

#[test]
fn a_long_verification_renews_the_lease() {
    let aws = FakeAws::new(start(), 7, FaultRates::none());
    let rotator = Rotator::new(aws.ports(), policy()).with_lease_duration(10 * MIN);
    let alice = with_legacy_key(&aws, "alice").0;
    // Slow calls, and a new key that authenticates only after 4 minutes: the publication
    // comes more than half the lease after it was taken.
    aws.plan.set_latency(Duration::from_secs(10));
    aws.iam.set_propagation_delay(4 * MIN);
    let report = run(&rotator, &RunOptions::default());
    assert!(report.users[0].rotated(), "{report}");
    assert_eq!(aws.plan.calls(op::LEASE_RENEW), 1);
    assert_eq!(aws.lease.claim(&alice), None);
}
