//! The survey's promises on the in-memory fakes, which behave as AWS does where it matters here
//! (a credential report reused for four hours, a listing of secrets five minutes behind): a run
//! with nothing due costs a few calls for the whole account, a survey never stands in for the
//! observation a step needs, what changes outside keyrot is seen by the first run after IAM's
//! next report, and a survey that fails costs nothing but calls.

// A test: a panic is how it reports a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use futures::executor::block_on;

use keyrot_core::fake::{FakeAws, FaultKind, FaultRates, op};
use keyrot_core::survey::{FULL_LOOK_EVERY, full_look_due};
use keyrot_core::{
    AccessKeyId, Blocked, KeyStatus, Outcome, Policy, Rotator, RunOptions, RunReport, Timestamp,
    UserName, Wait,
};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

fn start() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

fn policy() -> Policy {
    Policy::builder()
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

/// `n` managed users, each with a legacy key 100 days old, and a rotator over them.
fn world(n: usize) -> (FakeAws, Rotator, Vec<UserName>) {
    let aws = FakeAws::new(start(), 11, FaultRates::none());
    let users: Vec<UserName> = (0..n)
        .map(|i| UserName::new(format!("svc-{i:03}")).unwrap())
        .collect();
    for u in &users {
        aws.iam.add_managed_user(u.clone());
        aws.iam
            .add_key(u, KeyStatus::Active, start() - 100 * DAY)
            .unwrap();
    }
    let rotator = Rotator::new(aws.ports(), policy()).with_concurrency(8);
    (aws, rotator, users)
}

fn run(rotator: &Rotator) -> RunReport {
    block_on(rotator.run(&RunOptions::default())).unwrap()
}

/// Port calls made since `before`, by operation.
fn calls_since(aws: &FakeAws, before: &BTreeMap<&'static str, u64>) -> BTreeMap<&'static str, u64> {
    aws.plan
        .call_counts()
        .into_iter()
        .map(|(op, n)| (op, n - before.get(op).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// The calls that observe one user (everything but the run-wide reads).
fn per_user(calls: &BTreeMap<&'static str, u64>) -> u64 {
    calls
        .iter()
        .filter(|(op, _)| {
            ![
                op::IAM_MANAGED_USERS,
                op::IAM_CREDENTIAL_REPORT,
                op::STORE_LIST,
            ]
            .contains(op)
        })
        .map(|(_, n)| n)
        .sum()
}

fn outcome<'a>(report: &'a RunReport, user: &UserName) -> &'a Outcome {
    &report
        .users
        .iter()
        .find(|u| &u.user == user)
        .unwrap()
        .outcome
}

#[test]
fn a_run_with_nothing_due_costs_a_few_calls_for_the_whole_account() {
    let (aws, rotator, users) = world(150);
    let first = run(&rotator);
    assert_eq!(first.rotations(), 150, "{first}");

    // The next scheduled run, an hour later: every user is in its grace period.
    aws.clock.advance(HOUR);
    let before = aws.plan.call_counts();
    let second = run(&rotator);
    let calls = calls_since(&aws, &before);
    let due_for_a_look = users
        .iter()
        .filter(|u| full_look_due(u, HOUR, aws.clock.now()))
        .count();
    // A full look is a list_keys and a load, and nothing else for a user in grace.
    assert_eq!(
        per_user(&calls),
        2 * due_for_a_look as u64,
        "{calls:?} ({due_for_a_look} due for a full look)"
    );
    let total: u64 = calls.values().sum();
    assert!(total <= 15, "{total} calls for 150 users: {calls:?}");
    for u in &users {
        assert!(
            matches!(
                outcome(&second, u),
                Outcome::Waiting(Wait::AwaitingGrace { .. })
            ),
            "{u}: {}",
            outcome(&second, u)
        );
    }
}

#[test]
fn a_survey_never_stands_in_for_the_observation_a_step_needs() {
    let (aws, rotator, users) = world(20);
    run(&rotator);
    // Hourly runs through grace, deactivation, the recovery window and deletion.
    let mut retired = 0;
    for _ in 0..(6 * 24) {
        aws.clock.advance(HOUR);
        let report = run(&rotator);
        for u in &report.users {
            // Every change was planned from a fresh observation: the user's report lists its
            // steps, which only a reconcile (list_keys and load first) takes.
            if !u.steps.is_empty() {
                assert!(!matches!(u.outcome, Outcome::Failed { .. }), "{report}");
            }
            retired += u.steps.iter().filter(|s| s.name() == "delete").count();
        }
    }
    assert_eq!(
        retired,
        users.len(),
        "every superseded key was deleted in the end"
    );
    for u in &users {
        assert_eq!(aws.iam.keys(u).len(), 1, "{u}");
    }
}

#[test]
fn what_changes_outside_keyrot_is_seen_after_the_next_report() {
    let (aws, rotator, users) = world(3);
    run(&rotator);
    let victim = &users[0];
    // Past grace, deactivation and deletion of the old keys: each user has its one key.
    for _ in 0..(6 * 24) {
        aws.clock.advance(HOUR);
        run(&rotator);
    }
    assert_eq!(aws.iam.keys(victim).len(), 1);
    // Let the report be renewed now, then an administrator deactivates the user's only key.
    aws.clock.advance(5 * HOUR);
    let idle = run(&rotator);
    assert!(
        matches!(
            outcome(&idle, victim),
            Outcome::Waiting(Wait::AwaitingRotation { .. })
        ),
        "{idle}"
    );
    let key: AccessKeyId = aws.iam.keys(victim)[0].id.clone();
    assert!(aws.iam.set_key_status(&key, KeyStatus::Inactive));

    // The report IAM hands out for four hours still shows the key active...
    let mut noticed_after = None;
    for hour in 1..=6u32 {
        aws.clock.advance(HOUR);
        let report = run(&rotator);
        if matches!(
            outcome(&report, victim),
            Outcome::Blocked(Blocked::AccessRemoved)
        ) {
            noticed_after = Some(hour);
            break;
        }
    }
    // ...so the block comes with the first run after the next report (or the user's periodic
    // full look, if that comes first), never later.
    let noticed_after = noticed_after.expect("the deactivation was never noticed");
    assert!(noticed_after <= 5, "noticed after {noticed_after} h");
    assert!(FULL_LOOK_EVERY > 5 * HOUR);
}

#[test]
fn a_survey_that_fails_costs_calls_not_safety() {
    let (aws, rotator, users) = world(10);
    run(&rotator);
    aws.clock.advance(HOUR);
    aws.plan
        .fail_at(op::IAM_CREDENTIAL_REPORT, FaultKind::FailBefore);
    let before = aws.plan.call_counts();
    let report = run(&rotator);
    let calls = calls_since(&aws, &before);
    // Every user is observed, as without a survey, and still only waits.
    assert_eq!(
        calls.get(op::IAM_LIST_KEYS),
        Some(&(users.len() as u64)),
        "{calls:?}"
    );
    for u in &users {
        assert!(
            matches!(outcome(&report, u), Outcome::Waiting(_)),
            "{report}"
        );
    }
}

#[test]
fn a_rotation_the_survey_foresees_claims_the_user_before_it_looks() {
    let (aws, rotator, users) = world(12);
    run(&rotator);
    // Hourly runs until the keys made by the first run are due, and one more; a minute off the
    // hour, so that the due run is past the second the report's times may hide.
    aws.clock.advance(Duration::from_secs(60));
    let due = start() + policy().rotation_period();
    let mut rotated = None;
    while aws.clock.now() < due + 2 * HOUR {
        aws.clock.advance(HOUR);
        let before = aws.plan.call_counts();
        let report = run(&rotator);
        if report.rotations() > 0 {
            rotated = Some((report, calls_since(&aws, &before)));
            break;
        }
    }
    let (report, calls) = rotated.expect("no rotation came due");
    assert_eq!(report.rotations(), users.len(), "{report}");
    let n = users.len() as u64;
    // Claimed first, together, and given back together; observed once: one list_keys and one
    // load a user, no second look.
    assert_eq!(calls.get(op::LEASE_ACQUIRE_ALL), Some(&1), "{calls:?}");
    assert_eq!(calls.get(op::LEASE_RELEASE_ALL), Some(&1), "{calls:?}");
    assert_eq!(calls.get(op::LEASE_ACQUIRE), None, "{calls:?}");
    assert_eq!(calls.get(op::IAM_LIST_KEYS), Some(&n), "{calls:?}");
    assert_eq!(calls.get(op::STORE_LOAD), Some(&n), "{calls:?}");
    // The whole steady rotation: look (2), intent, create, stage, verify, publish, mark the
    // old key superseded; and the run's two lease calls.
    assert_eq!(per_user(&calls), 8 * n + 2, "{calls:?}");
}
