//! Lost replies, ambiguous failures and failed observations; rollback, verify pacing and the
//! lease's length.

use super::*;

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
    // The survey shows the key due, so the user is claimed first and looked at once.
    assert_eq!(
        aws.plan.calls(op::IAM_LIST_KEYS),
        lists + 1,
        "one look, once the user is claimed"
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
        // A run gives its claims back together at its end.
        aws.plan.fail_at(op::LEASE_RELEASE_ALL, FaultKind::Throttle);
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
    async fn load_for(
        &self,
        user: &UserName,
        keys: &[AccessKeyId],
    ) -> Result<keyrot_core::StoredUser, StoreError> {
        self.store.load_for(user, keys).await
    }
    async fn promote(
        &self,
        user: &UserName,
        key: &AccessKeyId,
        seen_current: Option<AccessKeyId>,
    ) -> Result<(), StoreError> {
        self.iam
            .add_key(user, KeyStatus::Inactive, start())
            .unwrap();
        self.store.promote(user, key, seen_current).await
    }
    async fn record_marks(
        &self,
        user: &UserName,
        key: &AccessKeyId,
        marks: &keyrot_core::Marks,
    ) -> Result<(), StoreError> {
        self.store.record_marks(user, key, marks).await
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
    async fn record_notice(
        &self,
        user: &UserName,
        sent: &keyrot_core::SentNotice,
    ) -> Result<(), StoreError> {
        self.store.record_notice(user, sent).await
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
fn ports_print_nothing_of_themselves_and_a_managed_user_prints_its_name() {
    let (aws, rotator) = world();
    assert_eq!(format!("{:?}", aws.ports()), "Ports { .. }");
    let alice = user("alice");
    aws.iam.add_managed_user(alice.clone());
    let managed = block_on(rotator.managed(&alice)).unwrap().unwrap();
    assert_eq!(managed.name(), &alice);
    assert_eq!(managed.to_string(), "alice");
}
