//! The contract suite: one set of scenarios, written once, run against keyrot-core's in-memory
//! fakes and against the AWS adapters talking to moto's server on 127.0.0.1.
//!
//! Where moto differs from AWS the scenario says so, asserts what moto does (so a fixed moto
//! shows up as a failing test), and the fake stays faithful to AWS:
//!
//! - moto accepts requests signed with an Inactive key (AWS refuses them);
//! - moto overwrites a version when a `ClientRequestToken` is reused with another value (AWS
//!   answers `ResourceExistsException`);
//! - moto answers `ListSecretVersionIds` on a missing secret with a 500 (AWS:
//!   `ResourceNotFoundException`); the adapter describes the secret first, so it never asks;
//! - moto's ListUsers ignores MaxItems and never truncates, so the 250-user scenario proves the
//!   adapter sees every user, but only the fakes' own tests page;
//! - moto lets DeleteUser succeed while the user still has keys (AWS answers DeleteConflict);
//!   the scenarios delete keys first, as AWS requires;
//! - moto cannot throttle, so throttling is proven against a loopback proxy in front of moto
//!   that answers `Throttling` before forwarding (those scenarios are moto-only: retrying is
//!   the SDK's job, which the fakes do not have).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use keyrot_aws::moto::{Call, Fault, FaultProxy, Moto, Rule};
use keyrot_aws::{AwsIam, AwsSecretStore, AwsSettings, AwsVerifier, DynamoLease};
use keyrot_core::fake::{FakeAws, FaultRates, RecordingNotifier, SimClock};
use keyrot_core::{
    AccessKey, AccessKeyId, Blocked, Credentials, Iam, IamError, Intent, KeyStatus, LastUsed,
    Lease, Mark, NewKey, Outcome, Policy, Ports, Rotator, RunOptions, RunReport, SecretAccessKey,
    SecretStore, Selection, StoreError, Timestamp, UserName, Verifier, VerifyError,
};

mod calls;

use calls::Calls;

const DAY: Duration = Duration::from_secs(24 * 3600);

/// A backend and what a test needs around keyrot's ports: an administrator who creates and
/// deletes users and keys the way people do outside keyrot.
struct World {
    backend: Backend,
    /// Unique per test: prefixes user names, the selection tag and secret names, so tests
    /// sharing one moto server never see each other.
    id: String,
    iam: Arc<dyn Iam>,
    store: Arc<dyn SecretStore>,
    verifier: Arc<dyn Verifier>,
    /// The runs' claims on users: the fake's, or DynamoDB's in a table of the test's own.
    lease: Arc<dyn Lease>,
    clock: SimClock,
    admin: Arc<Admin>,
    /// Every AWS action the adapters called (moto only).
    calls: Calls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Fake,
    Moto,
}

enum Admin {
    Fake(FakeAws),
    Moto(aws_sdk_iam::Client),
}

impl World {
    async fn new(backend: Backend, test: &str) -> Self {
        let id = test.replace('_', "-");
        match backend {
            Backend::Fake => {
                let aws = FakeAws::new(real_now(), 7, FaultRates::none());
                Self {
                    backend,
                    id,
                    iam: Arc::new(aws.iam.clone()),
                    store: Arc::new(aws.store.clone()),
                    verifier: Arc::new(aws.verifier.clone()),
                    lease: Arc::new(aws.lease.clone()),
                    clock: aws.clock.clone(),
                    admin: Arc::new(Admin::Fake(aws)),
                    calls: Calls::default(),
                }
            }
            Backend::Moto => Self::on_moto(test, &shared_moto().await.settings()).await,
        }
    }

    /// A world whose adapters reach moto with `settings` (through a proxy, say); its
    /// administrator talks to moto directly.
    async fn on_moto(test: &str, settings: &AwsSettings) -> Self {
        let id = test.replace('_', "-");
        let moto = shared_moto().await;
        let config = moto.admin_config_with(settings).await;
        let calls = Calls::default();
        let secrets = calls.secrets(&config);
        let table = format!("keyrot-test-{id}-leases");
        moto.create_lease_table(&table).await.unwrap();
        Self {
            backend: Backend::Moto,
            iam: Arc::new(AwsIam::new(calls.iam(&config))),
            store: Arc::new(AwsSecretStore::new(secrets).with_prefix(format!("keyrot-test/{id}/"))),
            verifier: Arc::new(AwsVerifier::new(config.clone())),
            lease: Arc::new(DynamoLease::new(calls.dynamodb(&config), table)),
            // moto stamps keys with the real time; the rotator's clock starts there and then
            // runs ahead, virtually.
            clock: SimClock::new(real_now()),
            admin: Arc::new(Admin::Moto(aws_sdk_iam::Client::new(
                &moto.admin_config().await,
            ))),
            calls,
            id,
        }
    }

    fn user(&self, name: &str) -> UserName {
        UserName::new(format!("{}-{name}", self.id)).unwrap()
    }

    fn tag_key(&self) -> String {
        format!("keyrot:managed:{}", self.id)
    }

    fn selection(&self) -> Selection {
        Selection::Tagged {
            key: self.tag_key(),
            value: "true".into(),
        }
    }

    /// A user managed by this test's selection.
    async fn managed_user(&self, name: &str) -> UserName {
        let user = self.user(name);
        self.admin
            .add_user(&user, Some((&self.tag_key(), "true")))
            .await;
        user
    }

    /// A user nobody asked keyrot to manage.
    async fn unmanaged_user(&self, name: &str) -> UserName {
        let user = self.user(name);
        self.admin.add_user(&user, None).await;
        user
    }

    /// A key someone created outside keyrot.
    async fn legacy_key(&self, user: &UserName) -> Credentials {
        self.admin
            .add_key(user, self.clock.now())
            .await
            .credentials()
    }

    async fn keys(&self, user: &UserName) -> Vec<AccessKey> {
        let mut keys = self.iam.list_keys(user).await.unwrap();
        keys.sort_by(|a, b| a.id.cmp(&b.id));
        keys
    }

    async fn key(&self, user: &UserName, key: &AccessKeyId) -> Option<AccessKey> {
        self.keys(user).await.into_iter().find(|k| &k.id == key)
    }

    fn rotator(&self, exempt: impl IntoIterator<Item = UserName>) -> Rotator {
        let policy = Policy::builder()
            .rotation_period(30 * DAY)
            .grace(7 * DAY)
            .max_grace(14 * DAY)
            .recovery_window(7 * DAY)
            .quiet_period(DAY)
            .selection(self.selection())
            .exempt(exempt)
            .build()
            .unwrap();
        self.rotator_with(policy, self.iam.clone())
    }

    fn rotator_with(&self, policy: Policy, iam: Arc<dyn Iam>) -> Rotator {
        let ports = Ports {
            iam,
            store: self.store.clone(),
            verifier: self.verifier.clone(),
            lease: self.lease.clone(),
            notifier: Arc::new(RecordingNotifier::new()),
            clock: Arc::new(self.clock.clone()),
        };
        Rotator::new(ports, policy)
    }

    async fn run(&self, rotator: &Rotator) -> RunReport {
        self.run_with(rotator, &RunOptions::default()).await
    }

    /// A run that rotates whatever the keys' ages (`keyrot rotate --force`). The scenarios
    /// start rotations this way: moto stamps keys with the real time, while the rotator's
    /// clock runs days ahead, so key ages cannot drive rotation against moto. Grace and the
    /// recovery window run on keyrot's own marks, which the rotator's clock stamps.
    async fn run_forced(&self, rotator: &Rotator) -> RunReport {
        let options = RunOptions {
            force: true,
            ..RunOptions::default()
        };
        self.run_with(rotator, &options).await
    }

    async fn run_with(&self, rotator: &Rotator, options: &RunOptions) -> RunReport {
        let report = rotator.run(options).await.unwrap();
        self.check_invariants(&report).await;
        report
    }

    /// DESIGN's invariants that can be read off the backend after a run.
    async fn check_invariants(&self, report: &RunReport) {
        for user in &report.users {
            let keys = match self.iam.list_keys(&user.user).await {
                Ok(keys) => keys,
                // Deleted during the run (user_deleted_in_the_middle_of_a_run).
                Err(IamError::NoSuchEntity) => continue,
                Err(e) => panic!("{}: cannot check the invariants: {e:?}", user.user),
            };
            assert!(keys.len() <= 2, "{}: {} keys", user.user, keys.len());
            if let Some(current) = self.store.current(&user.user).await.unwrap() {
                let key = keys
                    .iter()
                    .find(|k| k.id == current.access_key_id)
                    .unwrap_or_else(|| panic!("{}: current key missing from IAM", user.user));
                assert_eq!(
                    key.status,
                    KeyStatus::Active,
                    "{}: current key inactive",
                    user.user
                );
            }
        }
    }

    async fn current(&self, user: &UserName) -> Option<Credentials> {
        self.store.current(user).await.unwrap()
    }

    /// Whether a request signed with `credentials` gets through, as STS sees it.
    async fn authenticates(&self, user: &UserName, credentials: &Credentials) -> bool {
        self.verifier
            .authenticates(user, credentials)
            .await
            .unwrap()
    }
}

impl Admin {
    async fn add_user(&self, user: &UserName, tag: Option<(&str, &str)>) {
        match self {
            Self::Fake(aws) => {
                aws.iam.add_user(user.clone(), tag);
            }
            Self::Moto(_) => {
                let tags: Vec<(&str, &str)> = tag.into_iter().collect();
                shared_moto()
                    .await
                    .create_user(user.as_str(), &tags)
                    .await
                    .unwrap();
            }
        }
    }

    async fn add_key(&self, user: &UserName, now: Timestamp) -> NewKey {
        match self {
            Self::Fake(aws) => aws.iam.add_key(user, KeyStatus::Active, now).unwrap(),
            Self::Moto(iam) => AwsIam::new(iam.clone()).create_key(user).await.unwrap(),
        }
    }

    /// Deletes the user, keys first (as AWS requires).
    async fn delete_user(&self, user: &UserName) {
        match self {
            Self::Fake(aws) => {
                assert!(aws.iam.delete_user(user));
            }
            Self::Moto(iam) => {
                let adapter = AwsIam::new(iam.clone());
                for key in adapter.list_keys(user).await.unwrap() {
                    adapter.delete_key(user, &key.id).await.unwrap();
                }
                iam.delete_user()
                    .user_name(user.as_str())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
}

/// The process's moto server (started on first use).
async fn shared_moto() -> &'static Moto {
    tokio::task::spawn_blocking(Moto::shared)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"))
}

#[allow(clippy::disallowed_methods)] // moto stamps keys with the real time: start from it
fn real_now() -> Timestamp {
    Timestamp::now()
}

fn creds(id: &AccessKeyId, secret: &str) -> Credentials {
    Credentials {
        access_key_id: id.clone(),
        secret_access_key: SecretAccessKey::new(secret),
    }
}

fn outcome<'a>(report: &'a RunReport, user: &UserName) -> &'a Outcome {
    &report
        .users
        .iter()
        .find(|u| &u.user == user)
        .unwrap()
        .outcome
}

/// Every scenario, once per backend.
macro_rules! contract {
    ($($scenario:ident),* $(,)?) => {
        mod fake {
            $(
                #[tokio::test]
                async fn $scenario() {
                    let world = super::World::new(super::Backend::Fake, stringify!($scenario)).await;
                    super::$scenario(world).await;
                }
            )*
        }
        mod moto {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let world = super::World::new(super::Backend::Moto, stringify!($scenario)).await;
                    let calls = world.calls.clone();
                    super::$scenario(world).await;
                    assert!(!calls.seen().is_empty(), "the recorder saw no call");
                    calls.assert_within(keyrot_aws::permissions::ROTATOR_ACTIONS, "rotator");
                }
            )*
        }
    };
}

contract!(
    store_pending_never_becomes_current,
    store_promote_moves_current_and_previous,
    store_marks_round_trip,
    iam_key_lifecycle,
    iam_selects_tagged_users,
    verifier_checks_the_key_and_its_owner,
    rotation_lifecycle_for_several_users,
    orphan_from_a_crash_is_cleaned_next_run,
    someone_elses_key_is_never_deleted,
    user_with_two_keys_is_blocked_and_untouched,
    user_deleted_in_the_middle_of_a_run,
    every_one_of_250_users_is_selected,
);

// ---- the secret store ----

async fn store_pending_never_becomes_current(w: World) {
    let user = w.managed_user("u").await;
    let key = w.legacy_key(&user).await;
    let created = w.clock.now();

    assert_eq!(w.store.load(&user).await.unwrap(), Default::default());
    w.store.put_pending(&user, &key, created).await.unwrap();
    let stored = w.store.load(&user).await.unwrap();
    assert_eq!(stored.versions.len(), 1, "{stored:?}");
    assert_eq!(stored.pending(), Some(&key.access_key_id));
    assert_eq!(
        stored.current(),
        None,
        "the first version must not become current on its own"
    );
    assert_eq!(w.current(&user).await, None);

    // A retry with the same contents is idempotent.
    w.store.put_pending(&user, &key, created).await.unwrap();
    assert_eq!(w.store.load(&user).await.unwrap(), stored);

    // Different contents under the same key's version are refused, and change nothing.
    let other = creds(&key.access_key_id, "not-the-same-secret");
    let result = w.store.put_pending(&user, &other, created).await;
    let kept = w
        .store
        .credentials(&user, &key.access_key_id)
        .await
        .unwrap()
        .unwrap();
    match w.backend {
        Backend::Fake => {
            assert!(matches!(result, Err(StoreError::Conflict)), "{result:?}");
            assert_eq!(kept, key);
        }
        // moto differs from AWS: a reused ClientRequestToken with another value overwrites
        // the version instead of failing with ResourceExistsException.
        Backend::Moto => {
            assert!(result.is_ok(), "{result:?}");
            assert_eq!(kept, other);
        }
    }
}

async fn store_promote_moves_current_and_previous(w: World) {
    let user = w.managed_user("u").await;
    let a = w.legacy_key(&user).await;
    let b = w.legacy_key(&user).await;
    let now = w.clock.now();

    let missing = AccessKeyId::new("AKIAMISSINGMISSING00").unwrap();
    let err = w.store.promote(&user, &missing).await.unwrap_err();
    assert!(matches!(err, StoreError::NoSuchVersion), "{err:?}");

    w.store.put_pending(&user, &a, now).await.unwrap();
    w.store.promote(&user, &a.access_key_id).await.unwrap();
    assert_eq!(w.current(&user).await, Some(a.clone()));
    // Promoting the current version again changes nothing.
    w.store.promote(&user, &a.access_key_id).await.unwrap();
    assert_eq!(w.current(&user).await, Some(a.clone()));

    w.store.put_pending(&user, &b, now).await.unwrap();
    let stored = w.store.load(&user).await.unwrap();
    assert_eq!(stored.current(), Some(&a.access_key_id));
    assert_eq!(stored.pending(), Some(&b.access_key_id));
    assert_eq!(
        w.current(&user).await,
        Some(a.clone()),
        "pending is not served"
    );

    w.store.promote(&user, &b.access_key_id).await.unwrap();
    let stored = w.store.load(&user).await.unwrap();
    assert_eq!(stored.current(), Some(&b.access_key_id));
    let previous: Vec<_> = stored
        .versions
        .iter()
        .filter(|v| v.stages.previous)
        .collect();
    assert_eq!(previous.len(), 1);
    assert_eq!(previous[0].key_id, a.access_key_id);
    assert_eq!(w.current(&user).await, Some(b.clone()));

    // Both versions stay readable by key.
    assert_eq!(
        w.store.credentials(&user, &a.access_key_id).await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        w.store.credentials(&user, &b.access_key_id).await.unwrap(),
        Some(b.clone())
    );
    assert_eq!(w.store.credentials(&user, &missing).await.unwrap(), None);

    // Back again (a rollback).
    w.store.promote(&user, &a.access_key_id).await.unwrap();
    assert_eq!(w.current(&user).await, Some(a));
}

async fn store_marks_round_trip(w: World) {
    let user = w.managed_user("u").await;
    let a = AccessKeyId::new("AKIAAAAAAAAAAAAAAAAA").unwrap();
    let b = AccessKeyId::new("AKIABBBBBBBBBBBBBBBB").unwrap();
    let t1: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
    let t2: Timestamp = "2025-02-03T04:05:06.789Z".parse().unwrap();

    // Marking before anything is stored creates the user's secret, with no current key.
    w.store.mark(&user, &a, Mark::Adopted, t1).await.unwrap();
    let stored = w.store.load(&user).await.unwrap();
    assert!(stored.versions.is_empty(), "{stored:?}");
    assert_eq!(stored.marks_of(&a).adopted, Some(t1));
    assert!(stored.knows(&a));
    assert_eq!(w.current(&user).await, None);

    w.store.mark(&user, &a, Mark::Superseded, t2).await.unwrap();
    w.store
        .mark(&user, &b, Mark::Deactivated, t2)
        .await
        .unwrap();
    // A later time for the same mark replaces the earlier one.
    w.store.mark(&user, &a, Mark::Adopted, t2).await.unwrap();
    let stored = w.store.load(&user).await.unwrap();
    assert_eq!(stored.marks_of(&a).adopted, Some(t2));
    assert_eq!(stored.marks_of(&a).superseded, Some(t2));
    assert_eq!(stored.marks_of(&a).deactivated, None);
    assert_eq!(stored.marks_of(&b).deactivated, Some(t2));

    w.store.clear_marks(&user, &a).await.unwrap();
    let stored = w.store.load(&user).await.unwrap();
    assert!(stored.marks_of(&a).is_empty());
    assert!(!stored.knows(&a));
    assert_eq!(stored.marks_of(&b).deactivated, Some(t2));

    // Clearing what is not there is fine.
    w.store.clear_marks(&user, &a).await.unwrap();
    w.store.clear_marks(&w.user("nobody"), &a).await.unwrap();
}

// ---- IAM ----

async fn iam_key_lifecycle(w: World) {
    let user = w.managed_user("u").await;
    let first = w.iam.create_key(&user).await.unwrap();
    let second = w.iam.create_key(&user).await.unwrap();
    assert_ne!(first.key.id, second.key.id);
    assert_eq!(first.key.status, KeyStatus::Active);
    let listed = w.keys(&user).await;
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|k| k.status == KeyStatus::Active));
    assert!(listed.contains(&first.key) || listed.iter().any(|k| k.id == first.key.id));

    let err = w.iam.create_key(&user).await.unwrap_err();
    assert!(matches!(err, IamError::LimitExceeded), "{err:?}");
    assert_eq!(
        w.keys(&user).await.len(),
        2,
        "a refused third key leaves nothing behind"
    );

    assert_eq!(w.iam.last_used(&first.key.id).await, LastUsed::Never);

    w.iam
        .set_status(&user, &first.key.id, KeyStatus::Inactive)
        .await
        .unwrap();
    assert_eq!(
        w.key(&user, &first.key.id).await.unwrap().status,
        KeyStatus::Inactive
    );
    w.iam
        .set_status(&user, &first.key.id, KeyStatus::Active)
        .await
        .unwrap();
    assert_eq!(
        w.key(&user, &first.key.id).await.unwrap().status,
        KeyStatus::Active
    );

    w.iam.delete_key(&user, &first.key.id).await.unwrap();
    assert_eq!(w.key(&user, &first.key.id).await, None);
    let err = w.iam.delete_key(&user, &first.key.id).await.unwrap_err();
    assert!(matches!(err, IamError::NoSuchEntity), "{err:?}");

    let ghost = w.user("ghost");
    let err = w.iam.create_key(&ghost).await.unwrap_err();
    assert!(matches!(err, IamError::NoSuchEntity), "{err:?}");
    let err = w.iam.list_keys(&ghost).await.unwrap_err();
    assert!(matches!(err, IamError::NoSuchEntity), "{err:?}");
}

async fn iam_selects_tagged_users(w: World) {
    let a = w.managed_user("a").await;
    let b = w.managed_user("b").await;
    let _plain = w.unmanaged_user("plain").await;
    let other_value = w.user("false");
    w.admin
        .add_user(&other_value, Some((&w.tag_key(), "false")))
        .await;

    let managed = w.iam.managed_users(&w.selection()).await.unwrap();
    assert_eq!(managed, vec![a.clone(), b.clone()]);

    let listed = Selection::Listed(BTreeSet::from([b.clone()]));
    assert_eq!(w.iam.managed_users(&listed).await.unwrap(), vec![b]);
}

async fn verifier_checks_the_key_and_its_owner(w: World) {
    let alice = w.managed_user("alice").await;
    let bob = w.managed_user("bob").await;
    let key = w.iam.create_key(&alice).await.unwrap().credentials();
    // New keys take a moment to propagate in AWS (and in the fake).
    w.clock.advance(Duration::from_secs(60));
    assert!(w.authenticates(&alice, &key).await);

    // The key works, but it is not Bob's.
    let err = w.verifier.authenticates(&bob, &key).await.unwrap_err();
    match err {
        VerifyError::WrongIdentity { actual } => {
            assert!(actual.ends_with(&format!("user/{alice}")), "{actual}");
        }
        other => panic!("{other:?}"),
    }

    // A wrong secret does not authenticate.
    let forged = creds(
        &key.access_key_id,
        "forged-forged-forged-forged-forged-forged",
    );
    assert!(!w.authenticates(&alice, &forged).await);

    w.iam
        .set_status(&alice, &key.access_key_id, KeyStatus::Inactive)
        .await
        .unwrap();
    match w.backend {
        Backend::Fake => assert!(!w.authenticates(&alice, &key).await),
        // moto differs from AWS: it accepts requests signed with an Inactive key.
        Backend::Moto => assert!(w.authenticates(&alice, &key).await),
    }

    w.iam.delete_key(&alice, &key.access_key_id).await.unwrap();
    assert!(!w.authenticates(&alice, &key).await);
}

// ---- rotation, end to end through the ports ----

async fn rotation_lifecycle_for_several_users(w: World) {
    let users = [
        w.managed_user("a").await,
        w.managed_user("b").await,
        w.managed_user("c").await,
    ];
    let exempt = w.managed_user("exempt").await;
    let plain = w.unmanaged_user("plain").await;
    let mut legacy = Vec::new();
    for user in &users {
        legacy.push(w.legacy_key(user).await);
    }
    let exempt_key = w.legacy_key(&exempt).await;
    let plain_key = w.legacy_key(&plain).await;
    let untouched = [
        (exempt.clone(), w.keys(&exempt).await),
        (plain.clone(), w.keys(&plain).await),
    ];
    let rotator = w.rotator([exempt.clone()]);

    // Run 1: every managed user gets a new, verified, published key; the old one stays active.
    let report = w.run_forced(&rotator).await;
    assert_eq!(report.users.len(), 3, "{report}");
    assert_eq!(report.rotations(), 3, "{report}");
    let mut first = Vec::new();
    for (user, old) in users.iter().zip(&legacy) {
        let current = w.current(user).await.expect("a published key");
        assert_ne!(current.access_key_id, old.access_key_id);
        assert!(w.authenticates(user, &current).await);
        let old_key = w.key(user, &old.access_key_id).await.unwrap();
        assert_eq!(
            old_key.status,
            KeyStatus::Active,
            "still in its grace period"
        );
        first.push(current);
    }

    // Within grace nothing changes.
    w.clock.advance(3 * DAY);
    let report = w.run(&rotator).await;
    assert_eq!(report.rotations(), 0, "{report}");
    for (user, old) in users.iter().zip(&legacy) {
        assert_eq!(
            w.key(user, &old.access_key_id).await.unwrap().status,
            KeyStatus::Active
        );
    }

    // Past grace (the old keys are idle): deactivated, not deleted.
    w.clock.advance(5 * DAY);
    w.run(&rotator).await;
    for (user, old) in users.iter().zip(&legacy) {
        assert_eq!(
            w.key(user, &old.access_key_id).await.unwrap().status,
            KeyStatus::Inactive
        );
        match w.backend {
            Backend::Fake => assert!(!w.authenticates(user, old).await),
            // moto differs from AWS: an Inactive key still signs requests.
            Backend::Moto => assert!(w.authenticates(user, old).await),
        }
    }

    // Past the recovery window: deleted, and refused everywhere.
    w.clock.advance(8 * DAY);
    w.run(&rotator).await;
    for ((user, old), current) in users.iter().zip(&legacy).zip(&first) {
        assert_eq!(w.keys(user).await.len(), 1, "{user}");
        assert!(!w.authenticates(user, old).await);
        assert_eq!(w.current(user).await.as_ref(), Some(current));
    }

    // The next rotation.
    w.clock.advance(15 * DAY);
    let report = w.run_forced(&rotator).await;
    assert_eq!(report.rotations(), 3, "{report}");
    for (user, previous) in users.iter().zip(&first) {
        let current = w.current(user).await.unwrap();
        assert_ne!(&current, previous);
        let stored = w.store.load(user).await.unwrap();
        assert!(
            stored
                .versions
                .iter()
                .any(|v| v.stages.previous && v.key_id == previous.access_key_id)
        );
    }

    // Keys of unmanaged and exempt users were never touched.
    for (user, keys) in &untouched {
        assert_eq!(&w.keys(user).await, keys, "{user}");
        assert_eq!(w.current(user).await, None);
    }
    assert!(w.authenticates(&exempt, &exempt_key).await);
    assert!(w.authenticates(&plain, &plain_key).await);
}

async fn orphan_from_a_crash_is_cleaned_next_run(w: World) {
    let user = w.managed_user("u").await;
    w.legacy_key(&user).await;
    let rotator = w.rotator([]);
    w.run_forced(&rotator).await;
    let published = w.current(&user).await.unwrap();

    // Past grace and recovery the legacy key is gone; then a run "crashes" right after
    // CreateAccessKey, before storing the secret: the key exists, nobody knows its secret.
    for _ in 0..3 {
        w.clock.advance(8 * DAY);
        w.run(&rotator).await;
    }
    assert_eq!(w.keys(&user).await.len(), 1);
    // As the driver does it: the intent first, then CreateAccessKey. moto stamps keys with the
    // real time while the rotator's clock runs days ahead, so the intent takes IAM's time, as
    // a rotator whose clock agrees with IAM's would.
    let existing = w.keys(&user).await.into_iter().map(|k| k.id).collect();
    let orphan = w.iam.create_key(&user).await.unwrap();
    let intent = Intent {
        at: orphan.key.created,
        existing,
        ..Default::default()
    };
    w.store.record_intent(&user, &intent).await.unwrap();
    assert_eq!(w.keys(&user).await.len(), 2);

    let report = w.run(&rotator).await;
    assert!(!outcome(&report, &user).is_failure(), "{report}");
    assert_eq!(
        w.key(&user, &orphan.key.id).await,
        None,
        "the orphan survived: {report}"
    );
    assert_eq!(w.current(&user).await, Some(published));
}

async fn someone_elses_key_is_never_deleted(w: World) {
    let user = w.managed_user("u").await;
    w.legacy_key(&user).await;
    let rotator = w.rotator([]);
    w.run_forced(&rotator).await;
    for _ in 0..3 {
        w.clock.advance(8 * DAY);
        w.run(&rotator).await;
    }
    // An operator makes a key of their own: keyrot recorded no intent for it.
    let theirs = w.iam.create_key(&user).await.unwrap();
    for _ in 0..2 {
        let report = w.run_forced(&rotator).await;
        assert!(
            matches!(
                outcome(&report, &user),
                Outcome::Blocked(Blocked::UnknownKeyMaybeInUse(k)) if k == &theirs.key.id
            ),
            "{report}"
        );
        w.clock.advance(8 * DAY);
    }
    let still = w.key(&user, &theirs.key.id).await;
    assert_eq!(still.map(|k| k.status), Some(KeyStatus::Active));
}

async fn user_with_two_keys_is_blocked_and_untouched(w: World) {
    let user = w.managed_user("u").await;
    w.legacy_key(&user).await;
    w.legacy_key(&user).await;
    let before = w.keys(&user).await;
    let rotator = w.rotator([]);

    let report = w.run_forced(&rotator).await;
    assert!(
        matches!(
            outcome(&report, &user),
            Outcome::Blocked(Blocked::TwoKeysInService)
        ),
        "{report}"
    );
    assert_eq!(w.keys(&user).await, before);
    assert_eq!(w.current(&user).await, None);
}

async fn user_deleted_in_the_middle_of_a_run(w: World) {
    let doomed = w.managed_user("doomed").await;
    let fine = w.managed_user("fine").await;
    w.legacy_key(&doomed).await;
    w.legacy_key(&fine).await;
    let iam = Arc::new(DeletesUser {
        inner: w.iam.clone(),
        admin: w.admin.clone(),
        victim: doomed.clone(),
        done: AtomicBool::new(false),
    });
    let policy = Policy::builder().selection(w.selection()).build().unwrap();
    let rotator = w.rotator_with(policy, iam);

    let report = w.run_forced(&rotator).await;
    assert_eq!(report.users.len(), 2, "{report}");
    assert!(outcome(&report, &doomed).is_failure(), "{report}");
    assert!(
        w.current(&fine).await.is_some(),
        "the others carry on: {report}"
    );

    // The next run no longer sees the user.
    let report = w.run(&rotator).await;
    assert_eq!(report.users.len(), 1, "{report}");
}

/// IAM as seen while an administrator deletes `victim` right after keyrot listed the users.
struct DeletesUser {
    inner: Arc<dyn Iam>,
    admin: Arc<Admin>,
    victim: UserName,
    done: AtomicBool,
}

#[async_trait]
impl Iam for DeletesUser {
    async fn managed_users(&self, selection: &Selection) -> Result<Vec<UserName>, IamError> {
        let users = self.inner.managed_users(selection).await?;
        if users.contains(&self.victim) && !self.done.swap(true, Ordering::SeqCst) {
            self.admin.delete_user(&self.victim).await;
        }
        Ok(users)
    }
    async fn list_keys(&self, user: &UserName) -> Result<Vec<AccessKey>, IamError> {
        self.inner.list_keys(user).await
    }
    async fn create_key(&self, user: &UserName) -> Result<NewKey, IamError> {
        self.inner.create_key(user).await
    }
    async fn set_status(
        &self,
        user: &UserName,
        key: &AccessKeyId,
        status: KeyStatus,
    ) -> Result<(), IamError> {
        self.inner.set_status(user, key, status).await
    }
    async fn delete_key(&self, user: &UserName, key: &AccessKeyId) -> Result<(), IamError> {
        self.inner.delete_key(user, key).await
    }
    async fn last_used(&self, key: &AccessKeyId) -> LastUsed {
        self.inner.last_used(key).await
    }
}

async fn every_one_of_250_users_is_selected(w: World) {
    // moto's ListUsers never truncates, so against moto this proves the adapter reads every
    // user and every tag; paging itself is covered by the fakes' unit tests.
    let mut expected = Vec::new();
    for i in 0..250 {
        expected.push(w.managed_user(&format!("{i:03}")).await);
    }
    for i in 0..5 {
        w.unmanaged_user(&format!("plain-{i}")).await;
    }
    expected.sort();
    let managed = w.iam.managed_users(&w.selection()).await.unwrap();
    assert_eq!(managed, expected);
}

// ---- moto only: the SDK's retries ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_answered_with_backoff_not_failure() {
    let moto = shared_moto().await;
    let proxy = FaultProxy::start(moto.endpoint()).unwrap();
    proxy.inject(Rule::first(3, Fault::Throttle));
    let settings = AwsSettings {
        endpoint_url: Some(proxy.endpoint().to_owned()),
        max_attempts: Some(5),
        initial_backoff: Some(Duration::from_millis(10)),
        ..moto.settings()
    };
    let config = moto.admin_config_with(&settings).await;
    let iam = AwsIam::new(aws_sdk_iam::Client::new(&config));

    let users = iam
        .managed_users(&Selection::Listed(BTreeSet::new()))
        .await
        .unwrap();
    assert!(users.is_empty());
    let keys = iam
        .list_keys(&UserName::new("keyrot-test-admin").unwrap())
        .await
        .unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        proxy.faulted(),
        3,
        "the first three attempts were throttled"
    );
    assert!(proxy.forwarded("iam:ListAccessKeys") >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_beyond_the_retries_is_its_own_error() {
    let moto = shared_moto().await;
    let proxy = FaultProxy::start(moto.endpoint()).unwrap();
    proxy.inject(Rule::first(u32::MAX, Fault::Throttle));
    let settings = AwsSettings {
        endpoint_url: Some(proxy.endpoint().to_owned()),
        max_attempts: Some(2),
        initial_backoff: Some(Duration::from_millis(10)),
        ..moto.settings()
    };
    let config = moto.admin_config_with(&settings).await;
    let iam = AwsIam::new(aws_sdk_iam::Client::new(&config));
    let err = iam
        .list_keys(&UserName::new("keyrot-test-admin").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, IamError::Throttled), "{err:?}");
    assert_eq!(proxy.faulted(), 2);

    let store = AwsSecretStore::new(aws_sdk_secretsmanager::Client::new(&config));
    let err = store
        .load(&UserName::new("anyone").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Throttled), "{err:?}");
    let key = AccessKeyId::new("AKIAIOSFODNN7EXAMPLE").unwrap();
    assert_eq!(
        iam.last_used(&key).await,
        LastUsed::Unknown,
        "throttled is not 'never used'"
    );
}

// ---- moto only: secrets keyrot did not write ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_and_versions_keyrot_did_not_write() {
    let moto = shared_moto().await;
    let config = moto.admin_config().await;
    let admin = aws_sdk_secretsmanager::Client::new(&config);
    let store = AwsSecretStore::new(admin.clone()).with_prefix("keyrot-test/foreign/");
    let user = UserName::new("foreign-user").unwrap();

    // Someone else's secret under keyrot's name: refused, untouched.
    admin
        .create_secret()
        .name("keyrot-test/foreign/foreign-user")
        .secret_string("not keyrot's")
        .send()
        .await
        .unwrap();
    let err = store.load(&user).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Malformed(e) if e.to_string().contains("did not create it")),
        "{err:?}"
    );

    // In keyrot's own secret, a labelled version that is not keyrot's is an error; once it has
    // no label (history that cannot be deleted) it is ignored.
    let other = UserName::new("foreign-version").unwrap();
    let key = creds(
        &AccessKeyId::new("AKIAFOREIGNFOREIGN01").unwrap(),
        "s3cr3t-value",
    );
    store.put_pending(&other, &key, real_now()).await.unwrap();
    let secret = "keyrot-test/foreign/foreign-version";
    let token = "someone-else-0000000000000000000000";
    admin
        .put_secret_value()
        .secret_id(secret)
        .client_request_token(token)
        .secret_string("{\"password\": \"hunter2\"}")
        .version_stages("MANUAL")
        .send()
        .await
        .unwrap();
    let err = store.load(&other).await.unwrap_err();
    assert!(matches!(err, StoreError::Malformed(_)), "{err:?}");
    assert!(!keyrot_core::driver::error_chain(&err).contains("hunter2"));
    admin
        .update_secret_version_stage()
        .secret_id(secret)
        .version_stage("MANUAL")
        .remove_from_version_id(token)
        .send()
        .await
        .unwrap();
    let stored = store.load(&other).await.unwrap();
    assert_eq!(stored.versions.len(), 1, "{stored:?}");
    assert_eq!(stored.pending(), Some(&key.access_key_id));
}

// ---- moto only: lost replies, with the SDK's default retries ----
//
// `keyrot_aws::retries` lists every call the adapters make, whether the SDK retries it and why
// that is safe. Each claim is proven here against a proxy that lets moto perform the call and
// then loses its reply (a 500, or a connection closed without a reply), with the SDK's default
// retries (five attempts, as the CLI and the Lambda use).

/// A world whose adapters reach moto through a fault proxy, with the SDK's default retries.
async fn lossy(test: &str) -> (World, FaultProxy) {
    lossy_with(test, AwsSettings::default()).await
}

/// As [`lossy`], with the retries of `retries` (its retry fields only).
async fn lossy_with(test: &str, retries: AwsSettings) -> (World, FaultProxy) {
    let moto = shared_moto().await;
    let proxy = FaultProxy::start(moto.endpoint()).unwrap();
    let settings = AwsSettings {
        endpoint_url: Some(proxy.endpoint().to_owned()),
        max_attempts: retries.max_attempts,
        retry_mode: retries.retry_mode,
        ..moto.settings()
    };
    (World::on_moto(test, &settings).await, proxy)
}

/// Every key IAM holds for `user` that the store does not hold.
async fn unstored_keys(w: &World, user: &UserName) -> Vec<AccessKeyId> {
    let stored = w.store.load(user).await.unwrap();
    w.keys(user)
        .await
        .into_iter()
        .map(|k| k.id)
        .filter(|id| stored.versions.iter().all(|v| &v.key_id != id))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_create_access_key_reply_is_never_resent() {
    // The SDK's defaults (five attempts, as the CLI and the Lambda run), and more retries in
    // adaptive mode: CreateAccessKey is sent once whatever the client's settings.
    let eager = AwsSettings {
        max_attempts: Some(10),
        retry_mode: Some(keyrot_aws::RetryMode::Adaptive),
        ..AwsSettings::default()
    };
    for (fault, retries) in [
        (Fault::FailAfter, AwsSettings::default()),
        (Fault::DropAfter, AwsSettings::default()),
        (Fault::FailAfter, eager),
    ] {
        let attempts = retries.max_attempts.unwrap_or(5);
        let (w, proxy) = lossy_with(&format!("lost-create-{fault}-{attempts}"), retries).await;
        let user = w.managed_user("u").await;
        w.legacy_key(&user).await;
        proxy.inject(Rule::nth("iam:CreateAccessKey", 1, fault));

        let err = w.iam.create_key(&user).await.unwrap_err();
        assert!(err.is_retryable(), "{fault}: {err:?}");
        assert_eq!(
            proxy.forwarded("iam:CreateAccessKey"),
            1,
            "{fault}: CreateAccessKey was sent again after its reply was lost"
        );
        assert_eq!(
            proxy.answered("iam:CreateAccessKey", "LimitExceeded"),
            0,
            "{fault}: keyrot asked IAM for a third key"
        );
        assert_eq!(
            w.keys(&user).await.len(),
            2,
            "{fault}: moto made the key whose reply was lost"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_put_secret_value_reply_is_retried_and_stores_one_version() {
    let (w, proxy) = lossy("lost-put").await;
    let user = w.managed_user("u").await;
    let key = w.legacy_key(&user).await;
    // The driver records its intent before it creates a key, which creates the secret.
    let intent = Intent {
        at: w.clock.now(),
        existing: [key.access_key_id.clone()].into(),
        ..Default::default()
    };
    w.store.record_intent(&user, &intent).await.unwrap();
    proxy.inject(Rule::nth(
        "secretsmanager:PutSecretValue",
        1,
        Fault::FailAfter,
    ));

    w.store
        .put_pending(&user, &key, w.clock.now())
        .await
        .unwrap();
    assert_eq!(
        proxy.forwarded("secretsmanager:PutSecretValue"),
        2,
        "the SDK retried the call whose reply was lost"
    );
    // Same ClientRequestToken, same value: Secrets Manager ignores the retry (moto writes the
    // same version again, which leaves the same state).
    let stored = w.store.load(&user).await.unwrap();
    assert_eq!(stored.versions.len(), 1, "{stored:?}");
    assert_eq!(stored.pending(), Some(&key.access_key_id));
    assert_eq!(
        w.store
            .credentials(&user, &key.access_key_id)
            .await
            .unwrap(),
        Some(key)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_update_secret_version_stage_reply_still_promotes() {
    const OP: &str = "secretsmanager:UpdateSecretVersionStage";
    let (w, proxy) = lossy("lost-promote").await;
    let user = w.managed_user("u").await;
    let a = w.legacy_key(&user).await;
    let b = w.legacy_key(&user).await;
    let now = w.clock.now();

    // The first promotion moves AWSCURRENT off the placeholder, the second off `a`; each loses
    // its first reply, once as a 500 and once as a closed connection.
    w.store.put_pending(&user, &a, now).await.unwrap();
    proxy.inject_next(OP, Fault::FailAfter);
    w.store.promote(&user, &a.access_key_id).await.unwrap();
    assert_eq!(w.current(&user).await, Some(a.clone()));

    w.store.put_pending(&user, &b, now).await.unwrap();
    proxy.inject_next(OP, Fault::DropAfter);
    w.store.promote(&user, &b.access_key_id).await.unwrap();
    let stored = w.store.load(&user).await.unwrap();
    assert_eq!(stored.current(), Some(&b.access_key_id), "{stored:?}");
    let previous: Vec<_> = stored
        .versions
        .iter()
        .filter(|v| v.stages.previous)
        .collect();
    assert_eq!(previous.len(), 1, "{stored:?}");
    assert_eq!(previous[0].key_id, a.access_key_id);
    assert_eq!(w.current(&user).await, Some(b));

    // The SDK retried each lost reply, and the retry was refused: its RemoveFromVersionId names
    // a version that lost AWSCURRENT to the first attempt. Secrets Manager documents that
    // refusal ("if the version ID does not match, then the operation fails"); moto answers it
    // with InvalidParameterException, as the proxy saw.
    assert_eq!(proxy.forwarded(OP), 4);
    assert_eq!(proxy.answered(OP, "InvalidParameterException"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_other_call_is_safe_to_retry_after_a_lost_reply() {
    // TagResource (marks, intent): replaces the tag's value with the same value.
    let (w, proxy) = lossy("lost-tag").await;
    let user = w.managed_user("u").await;
    let key = w.legacy_key(&user).await.access_key_id;
    let at: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
    w.store.mark(&user, &key, Mark::Adopted, at).await.unwrap();
    proxy.inject_next("secretsmanager:TagResource", Fault::FailAfter);
    w.store
        .mark(&user, &key, Mark::Superseded, at)
        .await
        .unwrap();
    assert_eq!(proxy.forwarded("secretsmanager:TagResource"), 3);
    let marks = w.store.load(&user).await.unwrap().marks_of(&key);
    assert_eq!((marks.adopted, marks.superseded), (Some(at), Some(at)));

    // UntagResource: removing a tag that is gone is no error.
    proxy.inject_next("secretsmanager:UntagResource", Fault::FailAfter);
    w.store.clear_marks(&user, &key).await.unwrap();
    assert_eq!(proxy.forwarded("secretsmanager:UntagResource"), 2);
    assert!(w.store.load(&user).await.unwrap().marks_of(&key).is_empty());

    // CreateSecret (on first use, here through the intent): the retry carries the placeholder's
    // ClientRequestToken and value, which Secrets Manager (and moto) answer as the first
    // attempt did; a ResourceExistsException would do too (the adapter takes it as "there").
    let fresh = w.managed_user("fresh").await;
    let before = proxy.calls().len();
    proxy.inject_next("secretsmanager:CreateSecret", Fault::FailAfter);
    let intent = Intent {
        at,
        ..Default::default()
    };
    w.store.record_intent(&fresh, &intent).await.unwrap();
    let created: Vec<_> = proxy.calls()[before..]
        .iter()
        .filter(|c| c.op == "secretsmanager:CreateSecret")
        .map(Call::succeeded)
        .collect();
    assert_eq!(created, [true, true], "moto performed both attempts");
    assert_eq!(w.store.load(&fresh).await.unwrap().intent, Some(intent));

    // UpdateAccessKey: setting a status twice is setting it once.
    proxy.inject_next("iam:UpdateAccessKey", Fault::FailAfter);
    w.iam
        .set_status(&user, &key, KeyStatus::Inactive)
        .await
        .unwrap();
    assert_eq!(proxy.forwarded("iam:UpdateAccessKey"), 2);
    assert_eq!(
        w.key(&user, &key).await.unwrap().status,
        KeyStatus::Inactive
    );

    // DeleteAccessKey: the retry is answered NoSuchEntity, which the driver takes as done.
    proxy.inject_next("iam:DeleteAccessKey", Fault::FailAfter);
    let err = w.iam.delete_key(&user, &key).await.unwrap_err();
    assert!(matches!(err, IamError::NoSuchEntity), "{err:?}");
    assert_eq!(proxy.forwarded("iam:DeleteAccessKey"), 2);
    assert_eq!(w.key(&user, &key).await, None);

    // Reads repeat nothing: a retried read answers as the first attempt would have.
    let created = w.iam.create_key(&user).await.unwrap();
    proxy.inject_next("iam:ListAccessKeys", Fault::FailAfter);
    proxy.inject_next("iam:GetAccessKeyLastUsed", Fault::DropAfter);
    proxy.inject_next("sts:GetCallerIdentity", Fault::FailAfter);
    proxy.inject_next("secretsmanager:DescribeSecret", Fault::FailAfter);
    assert_eq!(w.keys(&user).await, vec![created.key.clone()]);
    assert_eq!(w.iam.last_used(&created.key.id).await, LastUsed::Never);
    assert!(w.authenticates(&user, &created.credentials()).await);
    assert!(w.store.load(&user).await.unwrap().versions.is_empty());
    for op in [
        "iam:ListAccessKeys",
        "iam:GetAccessKeyLastUsed",
        "sts:GetCallerIdentity",
        "secretsmanager:DescribeSecret",
    ] {
        let faulted = proxy
            .calls()
            .into_iter()
            .filter(|c| c.op == op && c.fault.is_some())
            .count();
        assert_eq!(faulted, 1, "{op}: the rule picked no call");
    }
}

/// One rotation, through deactivation and deletion, with the first reply of `op` lost.
async fn lifecycle_with_a_lost_reply(op: &str, fault: Fault) {
    let (w, proxy) = lossy(&format!("lost-run-{}-{fault}", op.replace(':', "-"))).await;
    let user = w.managed_user("u").await;
    let legacy = w.legacy_key(&user).await;
    proxy.inject(Rule::nth(op, 1, fault));
    let rotator = w.rotator([]);

    let report = w.run_forced(&rotator).await;
    assert!(
        !outcome(&report, &user).is_failure(),
        "{op} {fault}: {report}"
    );
    assert_eq!(report.rotations(), 1, "{op} {fault}: {report}");
    for _ in 0..2 {
        w.clock.advance(8 * DAY);
        let report = w.run(&rotator).await;
        assert!(
            !outcome(&report, &user).is_failure(),
            "{op} {fault}: {report}"
        );
    }

    assert_eq!(
        proxy.faulted(),
        1,
        "{op} {fault}: the lifecycle never called it"
    );
    assert_eq!(
        proxy.answered("iam:CreateAccessKey", "LimitExceeded"),
        0,
        "{op} {fault}: keyrot asked IAM for a third key"
    );
    let current = w.current(&user).await.expect("a published key");
    let keys = w.keys(&user).await;
    assert_eq!(keys.len(), 1, "{op} {fault}: {keys:?}");
    assert_eq!(keys[0].id, current.access_key_id);
    assert_eq!(keys[0].status, KeyStatus::Active);
    assert_ne!(current.access_key_id, legacy.access_key_id);
    assert_eq!(unstored_keys(&w, &user).await, vec![], "{op} {fault}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lifecycle_survives_a_lost_reply_at_each_mutating_call() {
    for (op, fault) in [
        ("secretsmanager:CreateSecret", Fault::FailAfter),
        ("secretsmanager:TagResource", Fault::FailAfter),
        ("secretsmanager:PutSecretValue", Fault::FailAfter),
        ("secretsmanager:UpdateSecretVersionStage", Fault::FailAfter),
        ("secretsmanager:UpdateSecretVersionStage", Fault::DropAfter),
        ("iam:UpdateAccessKey", Fault::FailAfter),
        ("iam:DeleteAccessKey", Fault::FailAfter),
        ("secretsmanager:UntagResource", Fault::FailAfter),
    ] {
        lifecycle_with_a_lost_reply(op, fault).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lifecycle_survives_a_lost_create_access_key_reply() {
    // The reply is lost, CreateAccessKey is not sent again; the driver observes, deletes the
    // orphan it recognises by its intent, and creates the key it stores, in the same run.
    for fault in [Fault::FailAfter, Fault::DropAfter] {
        lifecycle_with_a_lost_reply("iam:CreateAccessKey", fault).await;
    }
}
