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
    Lease, Marks, NewKey, Outcome, Policy, Ports, Rotator, RunOptions, RunReport, SecretAccessKey,
    SecretStore, Selection, SentNotice, StoreError, Timestamp, UserName, Verifier, VerifyError,
};

#[path = "../calls/mod.rs"]
mod calls;
mod moto_only;
mod scenarios;

use calls::Calls;
use scenarios::*;

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
    store_load_for_sees_unlabelled_keys_in_iam,
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
    store_records_the_last_notice,
);
