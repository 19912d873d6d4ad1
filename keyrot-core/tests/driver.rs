//! The driver's own promises, one scenario each on the in-memory fakes: a dry run changes
//! nothing, every notice goes out when it should, the run deadline, the lease, what a run does
//! after an ambiguous failure, the verify pacing, rollback's result, and the report's counts.

// A test: a panic is how it reports a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::executor::block_on;

use keyrot_core::driver::{RollbackError, StepError};
use keyrot_core::fake::{FakeAws, FaultKind, FaultRates, IamAction, op};
use keyrot_core::{
    AccessKeyId, Blocked, Claim, IamError, KeyStatus, Lease, LeaseError, Notice, Outcome, Policy,
    Rotator, RunOptions, RunReport, SecretStore, Step, StoreError, Timestamp, UserName,
    VerifyError, Wait,
};

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
    block_on(aws.store.mark(
        &crowded,
        &aws.iam.keys(&crowded)[1].id,
        keyrot_core::Mark::Adopted,
        start(),
    ))
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

#[test]
fn a_lost_create_reply_is_observed_not_retried() {
    let (aws, rotator) = world();
    let (alice, legacy) = with_legacy_key(&aws, "alice");
    // CreateAccessKey takes effect, its reply is lost; the adapters do not retry it.
    aws.plan.fail_at(op::IAM_CREATE_KEY, FaultKind::FailAfter);
    let report = run(&rotator, &RunOptions::default());
    assert_eq!(
        steps(&report, "alice"),
        [
            "adopt",
            "delete-orphan",
            "create-and-stage",
            "verify",
            "publish",
            "record-superseded"
        ],
        "{report}"
    );
    assert_eq!(aws.iam.third_key_requests(), 0);
    assert!(matches!(outcome(&report, "alice"), Outcome::Waiting(_)));
    let created: Vec<_> = aws
        .iam
        .history()
        .into_iter()
        .filter(|e| matches!(e.action, IamAction::Created(_)))
        .collect();
    assert_eq!(created.len(), 2, "one orphan and its replacement");
    let keys = aws.iam.keys(&alice);
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().any(|k| k.id == legacy));
    assert!(keys.iter().all(|k| aws.store.snapshot(&alice).knows(&k.id)));
}

#[test]
fn a_lost_publish_reply_counts_as_published() {
    let (aws, rotator) = world();
    with_legacy_key(&aws, "alice");
    // The promotion happens, the reply is lost, the SDK's retry is refused.
    aws.plan.fail_at(op::STORE_PROMOTE, FaultKind::FailAfter);
    let report = run(&rotator, &RunOptions::default());
    assert!(report.users[0].rotated(), "{report}");
    assert!(
        matches!(outcome(&report, "alice"), Outcome::Waiting(_)),
        "{report}"
    );
    let rotated = aws
        .notifier
        .notices()
        .into_iter()
        .filter(|n| matches!(n, Notice::Rotated { .. }))
        .count();
    assert_eq!(rotated, 1);
    assert_eq!(aws.plan.sdk_retried(op::STORE_PROMOTE), 1);
}

#[test]
fn an_ambiguous_failure_is_observed_again_only_so_often() {
    let (aws, rotator) = world();
    with_legacy_key(&aws, "alice");
    for _ in 0..3 {
        aws.plan
            .fail_at(op::STORE_RECORD_INTENT, FaultKind::FailBefore);
    }
    let report = run(&rotator, &RunOptions::default());
    assert!(
        matches!(
            outcome(&report, "alice"),
            Outcome::Failed {
                step: Some(Step::CreateAndStage),
                ..
            }
        ),
        "{report}"
    );
    assert_eq!(
        aws.plan.calls(op::STORE_RECORD_INTENT),
        3,
        "two looks again, then it gives up"
    );
    assert_eq!(aws.plan.calls(op::IAM_CREATE_KEY), 0);
    // A failure that cannot have had an effect is not observed again.
    aws.plan
        .fail_at(op::STORE_RECORD_INTENT, FaultKind::Throttle);
    let lists = aws.plan.calls(op::IAM_LIST_KEYS);
    let report = run(&rotator, &RunOptions::default());
    assert!(
        matches!(outcome(&report, "alice"), Outcome::Failed { .. }),
        "{report}"
    );
    assert_eq!(
        aws.plan.calls(op::IAM_LIST_KEYS),
        lists + 2,
        "the first look and the lease's"
    );
}

#[test]
fn a_failed_observation_fails_the_user_and_not_the_run() {
    let (aws, rotator) = world();
    for name in ["a", "b"] {
        aws.iam.add_managed_user(user(name));
    }
    aws.plan.fail_at(op::IAM_LIST_KEYS, FaultKind::Throttle);
    let report = run(&rotator, &RunOptions::default());
    let failed: Vec<_> = report
        .users
        .iter()
        .filter(|u| matches!(u.outcome, Outcome::Failed { step: None, .. }))
        .collect();
    assert_eq!(failed.len(), 1, "{report}");
    assert_eq!(report.failures(), 1);
    assert_eq!(report.rotations(), 1);
    assert!(
        report
            .to_string()
            .ends_with("2 users, 1 rotated, 1 failed or blocked"),
        "{report}"
    );
    assert!(
        failed[0]
            .outcome
            .to_string()
            .starts_with("failed to observe: throttled by IAM")
    );
}

#[test]
fn a_rollback_goes_back_to_the_previous_key_and_says_so() {
    let (aws, rotator) = world();
    let (new, old) = rotated(&aws, &rotator, "alice");
    let alice = user("alice");
    // Past grace and idle: the old key is deactivated; a rollback re-activates it.
    aws.clock.advance(DAY + MIN);
    run(&rotator, &RunOptions::default());
    assert_eq!(aws.iam.key(&old).unwrap().status, KeyStatus::Inactive);
    aws.iam
        .set_propagation_delay(30 * 1000 * Duration::from_millis(1));
    let back = block_on(rotator.rollback(&alice)).unwrap();
    assert_eq!(back, old);
    assert_eq!(aws.store.current_key(&alice), Some(old.clone()));
    assert_eq!(aws.iam.key(&old).unwrap().status, KeyStatus::Active);
    // The key rolled back from is superseded now, and waits out its grace.
    let report = run(&rotator, &RunOptions::default());
    assert!(
        matches!(outcome(&report, "alice"), Outcome::Waiting(Wait::AwaitingGrace { key, .. }) if key == &new),
        "{report}"
    );
    // Nothing more to go back to than the key rolled back from, which is no longer previous...
    // until it is: a second rollback returns to it.
    assert_eq!(block_on(rotator.rollback(&alice)).unwrap(), new);
    // A user with a single key has nothing to roll back to; a user keyrot does not manage is
    // refused before anything is read.
    let bob = user("bob");
    aws.iam.add_managed_user(bob.clone());
    run(&rotator, &RunOptions::default());
    assert!(matches!(
        block_on(rotator.rollback(&bob)),
        Err(RollbackError::NoPreviousKey)
    ));
    aws.iam.add_user(user("erin"), [("team", "web")]);
    assert!(matches!(
        block_on(rotator.rollback(&user("erin"))),
        Err(RollbackError::NotManaged(_))
    ));
    // No rollback alerts as a blocked user.
    assert!(
        !aws.notifier
            .notices()
            .iter()
            .any(|n| matches!(n, Notice::Blocked { .. }))
    );
}

#[test]
fn verify_waits_back_off_and_end_one_second_past_the_deadline() {
    let (aws, rotator) = world();
    with_legacy_key(&aws, "alice");
    aws.iam.set_propagation_delay(DAY);
    let before = aws.clock.now();
    let report = run(&rotator, &RunOptions::default());
    assert!(
        matches!(outcome(&report, "alice"), Outcome::Discarded(_)),
        "{report}"
    );
    // 2 s, 4 s, then 8 s each until the 5 minute timeout, one attempt at the deadline, and
    // the discard one second after it.
    let verifies = aws.plan.calls(op::VERIFY);
    let took = aws.clock.now().duration_since(before);
    assert_eq!(verifies, 40, "{took}");
    assert_eq!(
        took,
        jiff::SignedDuration::from_secs(301),
        "{verifies} attempts"
    );
}

#[test]
fn a_clean_run_reports_no_failure_and_reads_no_new_secret_back() {
    let (aws, rotator) = world();
    for name in ["a", "b"] {
        aws.iam.add_managed_user(user(name));
    }
    let report = run(&rotator, &RunOptions::default());
    assert_eq!(report.failures(), 0, "{report}");
    assert!(
        report
            .to_string()
            .ends_with("2 users, 2 rotated, 0 failed or blocked"),
        "{report}"
    );
    // The new secret is verified from memory, where it came from; the store is not asked
    // for it again.
    assert_eq!(aws.plan.calls(op::STORE_CREDENTIALS), 0);
}

#[test]
fn a_verification_that_waits_for_propagation_is_reported_at_its_first_attempt_and_its_success() {
    let (aws, rotator) = world();
    aws.iam.add_managed_user(user("alice"));
    aws.iam.set_propagation_delay(30 * Duration::from_secs(1));
    let report = run(&rotator, &RunOptions::default());
    assert!(aws.plan.calls(op::VERIFY) > 2, "{report}");
    assert_eq!(
        steps(&report, "alice"),
        ["create-and-stage", "verify", "verify", "publish"],
        "{report}"
    );
}

#[test]
fn a_claim_lasts_15_minutes_and_at_least_two_verify_timeouts() {
    // The claim this run leaves behind (its release fails) shows how long it was taken for.
    let claimed_for = |rotator: &Rotator, aws: &FakeAws, name: &str| {
        let u = user(name);
        aws.iam.add_managed_user(u.clone());
        aws.plan.fail_at(op::LEASE_RELEASE, FaultKind::Throttle);
        let report = block_on(rotator.run(&RunOptions {
            users: vec![u.clone()],
            ..RunOptions::default()
        }))
        .unwrap();
        assert!(report.users[0].rotated(), "{report}");
        let (_, until) = aws.lease.claim(&u).expect("the claim stays");
        until.duration_since(aws.clock.now())
    };
    let aws = FakeAws::new(start(), 7, FaultRates::none());
    // Three verify timeouts are less than the shortest lease.
    let short = Rotator::new(aws.ports(), policy_verifying_within(MIN));
    assert_eq!(
        claimed_for(&short, &aws, "a"),
        jiff::SignedDuration::from_secs(15 * 60)
    );
    // Asked for less than two verify timeouts: two.
    let asked = Rotator::new(aws.ports(), policy()).with_lease_duration(MIN);
    assert_eq!(
        claimed_for(&asked, &aws, "b"),
        jiff::SignedDuration::from_secs(10 * 60)
    );
}

/// The fake store, and an operator who adds an inactive key for the user in IAM just as a
/// publication reaches the store.
struct OperatorAddsAKeyAtPublication {
    store: keyrot_core::fake::FakeSecretStore,
    iam: keyrot_core::fake::FakeIam,
}

#[async_trait::async_trait]
impl SecretStore for OperatorAddsAKeyAtPublication {
    async fn load(&self, user: &UserName) -> Result<keyrot_core::StoredUser, StoreError> {
        self.store.load(user).await
    }
    async fn put_pending(
        &self,
        user: &UserName,
        credentials: &keyrot_core::Credentials,
        created: Timestamp,
    ) -> Result<(), StoreError> {
        self.store.put_pending(user, credentials, created).await
    }
    async fn promote(&self, user: &UserName, key: &AccessKeyId) -> Result<(), StoreError> {
        self.iam
            .add_key(user, KeyStatus::Inactive, start())
            .unwrap();
        self.store.promote(user, key).await
    }
    async fn mark(
        &self,
        user: &UserName,
        key: &AccessKeyId,
        mark: keyrot_core::Mark,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.store.mark(user, key, mark, at).await
    }
    async fn clear_marks(&self, user: &UserName, key: &AccessKeyId) -> Result<(), StoreError> {
        self.store.clear_marks(user, key).await
    }
    async fn record_intent(
        &self,
        user: &UserName,
        intent: &keyrot_core::Intent,
    ) -> Result<(), StoreError> {
        self.store.record_intent(user, intent).await
    }
    async fn credentials(
        &self,
        user: &UserName,
        key: &AccessKeyId,
    ) -> Result<Option<keyrot_core::Credentials>, StoreError> {
        self.store.credentials(user, key).await
    }
    async fn current(
        &self,
        user: &UserName,
    ) -> Result<Option<keyrot_core::Credentials>, StoreError> {
        self.store.current(user).await
    }
}

#[test]
fn a_lost_publish_reply_names_the_key_it_replaced() {
    // The one Rotated notice of a run for `name` whose publication's reply is lost.
    let replaced = |aws: &FakeAws, rotator: &Rotator, name: &str| {
        aws.notifier.take();
        aws.plan.fail_at(op::STORE_PROMOTE, FaultKind::FailAfter);
        let report = block_on(rotator.run(&RunOptions {
            users: vec![user(name)],
            ..RunOptions::default()
        }))
        .unwrap();
        assert!(report.users[0].rotated(), "{report}");
        match aws.notifier.take().as_slice() {
            [Notice::Rotated { old, .. }] => old.clone(),
            other => panic!("{other:?}"),
        }
    };
    let (aws, rotator) = world();
    // A legacy key keyrot adopted (no stored secret) is the key replaced at the first
    // publication.
    let (_, legacy) = with_legacy_key(&aws, "alice");
    assert_eq!(replaced(&aws, &rotator, "alice"), Some(legacy));
    // A stored legacy key: the version that lost AWSCURRENT, not a newer one the store still
    // keeps (a key discarded because it never authenticated).
    let (_, first) = with_stored_legacy_key(&aws, "bob");
    aws.iam.set_propagation_delay(10 * MIN);
    let report = run(&rotator, &RunOptions::default());
    assert!(
        matches!(outcome(&report, "bob"), Outcome::Discarded(_)),
        "{report}"
    );
    aws.iam.set_propagation_delay(Duration::ZERO);
    assert_eq!(replaced(&aws, &rotator, "bob"), Some(first));
    // A user's first key replaces none, whatever other key appears meanwhile.
    let ports = keyrot_core::Ports {
        store: std::sync::Arc::new(OperatorAddsAKeyAtPublication {
            store: aws.store.clone(),
            iam: aws.iam.clone(),
        }),
        ..aws.ports()
    };
    let meddled = Rotator::new(ports, policy());
    aws.iam.add_managed_user(user("carol"));
    assert_eq!(replaced(&aws, &meddled, "carol"), None);
}

#[test]
fn step_errors_say_whether_the_next_run_may_succeed() {
    let other = || -> keyrot_core::BoxError { "connection reset".into() };
    let retryable = [
        StepError::Iam(IamError::Throttled),
        StepError::Iam(IamError::Other(other())),
        StepError::Store(StoreError::Throttled),
        StepError::Lease(LeaseError::Other(other())),
        StepError::Verify(VerifyError::Other(other())),
        StepError::TooManySteps(32),
        StepError::LeaseLost,
        StepError::Unfinished("waiting".to_owned()),
    ];
    for error in &retryable {
        assert!(error.is_retryable(), "{error:?}");
    }
    let for_a_person = [
        StepError::Iam(IamError::LimitExceeded),
        StepError::Iam(IamError::AccessDenied(other())),
        StepError::Store(StoreError::Malformed(other())),
        StepError::Lease(LeaseError::AccessDenied(other())),
        StepError::Verify(VerifyError::WrongIdentity {
            actual: "arn:aws:iam::123456789012:user/mallory".to_owned(),
        }),
        StepError::MissingSecret(AccessKeyId::new("AKIAIOSFODNN7EXAMPLE").unwrap()),
    ];
    for error in &for_a_person {
        assert!(!error.is_retryable(), "{error:?}");
    }
}

#[test]
fn ports_print_nothing_of_themselves_and_a_managed_user_prints_its_name() {
    let (aws, rotator) = world();
    assert_eq!(format!("{:?}", aws.ports()), "Ports { .. }");
    let alice = user("alice");
    aws.iam.add_managed_user(alice.clone());
    let managed = block_on(rotator.managed(&alice)).unwrap().unwrap();
    assert_eq!(managed.name(), &alice);
    assert_eq!(managed.to_string(), "alice");
}
