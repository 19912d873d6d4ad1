//! GitHub Actions destinations against a loopback server that follows GitHub's documented REST
//! API for Actions secrets (`github/server.rs`): a user with a repository and an organization
//! destination, and one with an environment on GitHub Enterprise Server, rotated by the
//! `Rotator`; the server opens each sealed box with its private key and finds the new key. A
//! 401, a 404 and a 422 each give a clear error and keep the old key active past its grace,
//! until a later run after the server recovers delivers (or the maximum grace forces it, with
//! an alert naming the GitHub destination).
//!
//! IAM, STS and the lease are the in-memory fakes on a virtual clock (so that a grace period
//! passes in a test); keyrot's secret and the GitHub credential (a token, or a GitHub App's key)
//! are moto's Secrets Manager.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "github/server.rs"]
mod server;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use keyrot_aws::moto::Moto;
use keyrot_aws::{AwsDelivery, AwsSecretStore, GitHubDelivery};
use keyrot_core::delivery::{Destination, parse_destinations};
use keyrot_core::fake::{FakeAws, FaultRates};
use keyrot_core::{
    AccessKeyId, KeyStatus, Notice, Outcome, Policy, Ports, Rotator, RunOptions, RunReport,
    SecretStore, Timestamp, UserName, Wait,
};
use server::{Calls, GitHubServer};

/// A GitHub App's RSA key, made for these tests only (`openssl genrsa -traditional 2048`).
const APP_KEY: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEArzSzYkjiPsz1zS6akwcraE9MuqKjEYuPFt8vJCLUXQHig988\nrdpGfizHmlNpqeItDOC/adrqMaUcGwr4jWoiPrbhvvRvxeEe3i2Ss99uHBWp7MSq\ni7ZCA5ez1OIbCL1kZAkuDc7ubLBB5fIEDF7ZIWdMwMQzkWyFaFZQ3ds5Lxva6Tg/\nwPxBRb8G5i9mgshgpZukV8r63r1s58zBm0FpJPveUxGP9QyMoXjmb+Hbn2tWjd16\nyRXGUgbBrAfZVBDDVnYPf6TM8WQYAYK1ZGbaflYtjxZiUm+3YBVbh2Nqk5uTgDDz\n5KHpaeyio7HjSGNmsxqh6FSAIAgnnLwS+klaAwIDAQABAoIBABA4aCXAlaGMHB2D\neQVaSTx+SvOPEbBoI+Em3G2+A7xwljtF3uTsK6aMGBaY2P7EqmMM05ZwkUnzUpIh\nBo3LtkvpZnuP6bZ/dvoewfwrwpKQYYuX/CoJv5F8PpvbgEvjgiMjbm4SKvnzqht9\nt746xw3+oEPLEPMfrDd9S5NJM8Fr7TCtTvcskt3Z1CmOkvWMvJl5EA/Xy7gl7qyF\nlb8j9ejUWjcwDDPTGw8eNQ4bMsYxlr6c0oh85TApTIXzGHluh7CXnNJe+KU550xL\nBiNnm8E2CKsUUeeZthalL2+RaMbyaOoXc8DzBkXSiklSumaC/bJIeeU1OzfxQ9l1\nmV5P07ECgYEA8kQGoFYiB/SJENAALnUiF5YyljuIDAvzZHZJAHvL3lvaKZSPrsMP\nRbDHxOLByGLsr/vrBRsRhAEp/o0VjGNTyM7niYduQXr28qpkbtktgPp2DtIDf/OB\nmsliP02+lR1OeAV/miXNMmrUTRsdEity9bkRzlXDlsItHYCP5108/Q0CgYEAuSNx\nYKt70m6wQ799FfS9g3JagQjUmih78OFmZ51ZCBDnvqo3I5zaBcjWFcCItIY0dq+5\nwo6CJiR7k5Y6hHHAKoavoKLoP2ThA6lwBxhpvQ5yXd5rwf96LZA7iAoDq2UCF/+O\nwjoWJaXAe7z4dexqJVASuGKksj2vHHKUS9pRj08CgYEAwJzXC9kPO3XvF7/XtRgJ\nn+kZlRoFo1ZJD6F/jvPd9Y7fl9l2lwKcfNL9MQr7+J62AYDvrOKFfYcTZT+0VyaN\ncYUWzuAvB76E4hAYw4zFwdrfzA6rG6p1a6QbCat9D776KTBt8BeH2kLXQeqBpXWH\n89dNUdgcJhuBlQgm4VLe720CgYAF8k589WUXwDhnJKpm3yKLK0we4uK5RN2eQg8g\n+tvWN3zKEfuNaEdUcjv2HOYHLlxXB5Pm3N7vTLKvbd7ZTDII66SOe00MZDgZ/wI7\nKByVVvZzb2Z0p7kL55sR5ohxo9/qV2oFcQovEWDaWJp+ZyaNpkHDrF9v3i1Ws5Nx\n0ERYXwKBgQCsSbKUibPNd2lBD4Lsk2jwMRsK9c0Qp+/6PxFsDTbmrMOF6m+Snnhk\nrG9Ms0xaHuF/vrYCD06UOzKFBirSny9a5MI+Tw2cSM83G2bQ0KPxkK9DVCG6ykOw\n1OihNCmIJtEnlIiFkxPNqDYtjw9DWpXc0gRdERmz6h8vXQutvKBNRg==\n-----END RSA PRIVATE KEY-----";
/// Its public half, PKCS #1 DER in base64 (`openssl rsa -RSAPublicKey_out -outform DER`).
const APP_PUBLIC_KEY: &str = "MIIBCgKCAQEArzSzYkjiPsz1zS6akwcraE9MuqKjEYuPFt8vJCLUXQHig988rdpGfizHmlNpqeItDOC/adrqMaUcGwr4jWoiPrbhvvRvxeEe3i2Ss99uHBWp7MSqi7ZCA5ez1OIbCL1kZAkuDc7ubLBB5fIEDF7ZIWdMwMQzkWyFaFZQ3ds5Lxva6Tg/wPxBRb8G5i9mgshgpZukV8r63r1s58zBm0FpJPveUxGP9QyMoXjmb+Hbn2tWjd16yRXGUgbBrAfZVBDDVnYPf6TM8WQYAYK1ZGbaflYtjxZiUm+3YBVbh2Nqk5uTgDDz5KHpaeyio7HjSGNmsxqh6FSAIAgnnLwS+klaAwIDAQAB";

const HOUR: Duration = Duration::from_secs(3600);
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

struct World {
    aws: FakeAws,
    server: GitHubServer,
    secrets: aws_sdk_secretsmanager::Client,
    store: Arc<AwsSecretStore>,
    /// The rotator of one long-lived process (its GitHub token cached across runs).
    rotator: Rotator,
    user: UserName,
    legacy: AccessKeyId,
    destinations: Vec<Destination>,
    credential: String,
}

/// `name` with a 100-day-old key that keyrot adopts, its destinations `text`, and a GitHub
/// token in Secrets Manager that the server accepts.
async fn world(name: &str, text: &str, ghes: bool) -> World {
    let moto = shared_moto().await;
    let admin = moto.admin_config().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&admin);
    let token = format!("ghs_{}", name.replace('-', "_"));
    let credential = format!("keyrot-test/github-token/{name}");
    set_secret(&secrets, &credential, &token).await;
    let server = GitHubServer::start(&token, ghes).await;
    let aws = FakeAws::new(real_now(), 5, FaultRates::none());
    let user = UserName::new(name).unwrap();
    aws.iam.add_managed_user(user.clone());
    let legacy = aws
        .iam
        .add_key(&user, KeyStatus::Active, aws.clock.now() - 100 * DAY)
        .unwrap()
        .key
        .id;
    let store = Arc::new(AwsSecretStore::new(secrets.clone()).with_prefix("keyrot-test/github/"));
    let mut w = World {
        rotator: Rotator::new(aws.ports(), policy()),
        aws,
        server,
        secrets,
        store,
        user,
        legacy,
        destinations: parse_destinations(text).unwrap(),
        credential,
    };
    w.rotator = w.fresh_rotator();
    w
}

/// The key a run published, if any.
fn published(report: &RunReport) -> Option<AccessKeyId> {
    report.users[0].steps.iter().rev().find_map(|s| match s {
        keyrot_core::Step::Publish(k) => Some(k.clone()),
        _ => None,
    })
}

async fn set_secret(secrets: &aws_sdk_secretsmanager::Client, id: &str, value: &str) {
    let created = secrets
        .create_secret()
        .name(id)
        .secret_string(value)
        .send()
        .await;
    if created.is_err() {
        secrets
            .put_secret_value()
            .secret_id(id)
            .secret_string(value)
            .send()
            .await
            .unwrap();
    }
}

fn policy() -> Policy {
    Policy::builder()
        .rotation_period(30 * DAY)
        .grace(DAY)
        .max_grace(3 * DAY)
        .recovery_window(DAY)
        .quiet_period(6 * HOUR)
        .last_used_lag(Duration::ZERO)
        .schedule_interval(HOUR)
        .build()
        .unwrap()
}

impl World {
    /// A rotator as a new process makes it: a new GitHub adapter, nothing cached.
    fn fresh_rotator(&self) -> Rotator {
        let github = GitHubDelivery::new(
            self.secrets.clone(),
            &self.credential,
            self.aws.ports().clock,
            &self.server.base_url(),
            Duration::from_secs(5),
            Duration::from_secs(10),
        )
        .unwrap();
        let delivery = AwsDelivery::new(
            &aws_config::SdkConfig::builder().build(),
            BTreeMap::from([(self.user.clone(), self.destinations.clone())]),
        )
        .with_github(github);
        let ports = Ports {
            store: Arc::clone(&self.store) as Arc<dyn SecretStore>,
            ..self.aws.ports()
        };
        Rotator::new(ports, policy()).with_delivery(Arc::new(delivery))
    }

    async fn run(&self) -> RunReport {
        self.rotator.run(&RunOptions::default()).await.unwrap()
    }

    fn current(&self, report: &RunReport) -> AccessKeyId {
        published(report).unwrap_or_else(|| panic!("no publish: {report}"))
    }

    /// Asserts that the two secrets of `scope` with `prefix` open to `key` and its secret.
    async fn assert_holds(&self, scope: &str, prefix: &str, key: &AccessKeyId) {
        let credentials = self
            .store
            .credentials(&self.user, key)
            .await
            .unwrap()
            .unwrap();
        let id = self
            .server
            .secret(scope, &format!("{prefix}_ACCESS_KEY_ID"));
        let secret = self
            .server
            .secret(scope, &format!("{prefix}_SECRET_ACCESS_KEY"));
        assert_eq!(
            id.map(|s| s.value).as_deref(),
            Some(key.as_str()),
            "{:?}",
            self.server.requests()
        );
        assert_eq!(
            secret.map(|s| s.value).as_deref(),
            Some(credentials.secret_access_key.expose())
        );
    }

    /// Runs every two days until a key other than `first` is published.
    async fn next_rotation(&self, first: &AccessKeyId) -> AccessKeyId {
        for _ in 0..20 {
            self.aws.clock.advance(2 * DAY);
            if let Some(key) = published(&self.run().await).filter(|k| k != first) {
                return key;
            }
        }
        panic!("no second rotation")
    }

    fn status(&self, key: &AccessKeyId) -> KeyStatus {
        self.aws.iam.key(key).unwrap().status
    }

    fn puts(&self) -> usize {
        self.server
            .requests()
            .iter()
            .filter(|r| r.starts_with("PUT "))
            .count()
    }

    /// The one `Undelivered` notice since the last look.
    fn undelivered(&self) -> String {
        let notices = self.aws.notifier.take();
        notices
            .iter()
            .find(|n| matches!(n, Notice::Undelivered { .. }))
            .unwrap_or_else(|| panic!("{notices:?}"))
            .to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_seals_the_new_key_into_a_repositorys_and_an_organizations_secrets() {
    let w = world(
        "gh-delivered",
        "gh=gh-repo:acme/app:AWS org=gh-org:acme:ci_aws",
        false,
    )
    .await;
    w.server.add_scope("repos/acme/app");
    w.server.add_scope("orgs/acme");
    let report = w.run().await;
    let new = w.current(&report);
    w.assert_holds("repos/acme/app", "AWS", &new).await;
    w.assert_holds("orgs/acme", "CI_AWS", &new).await;
    // A new organization secret is visible to the organization's private repositories.
    assert_eq!(
        w.server
            .secret("orgs/acme", "CI_AWS_ACCESS_KEY_ID")
            .unwrap()
            .visibility
            .as_deref(),
        Some("private")
    );
    assert_eq!(w.puts(), 4, "{:?}", w.server.requests());
    for (accept, version, agent) in w.server.headers_seen() {
        assert_eq!(accept, "application/vnd.github+json");
        assert_eq!(version, "2022-11-28");
        assert!(agent.starts_with("keyrot/"), "{agent}");
    }
    // A later run in a new process: the store's record says both hold the new key (GitHub
    // cannot be read), so the old key goes after its grace without another call to GitHub.
    let calls = w.server.requests().len();
    w.aws.clock.advance(DAY + HOUR);
    w.fresh_rotator().run(&RunOptions::default()).await.unwrap();
    assert_eq!(w.status(&w.legacy), KeyStatus::Inactive);
    assert_eq!(
        w.server.requests().len(),
        calls,
        "{:?}",
        w.server.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_on_github_enterprise_server_gets_the_new_key_and_keeps_its_visibility() {
    let w = world(
        "gh-ghes",
        "env=gh-env:acme/app/prod:DEPLOY org=gh-org:acme:ORG",
        true,
    )
    .await;
    assert!(w.server.base_url().ends_with("/api/v3"));
    w.server.add_scope("repos/acme/app/environments/prod");
    w.server.add_scope("orgs/acme");
    let report = w.run().await;
    let first = w.current(&report);
    w.assert_holds("repos/acme/app/environments/prod", "DEPLOY", &first)
        .await;
    assert!(
        w.server.requests().iter().all(|r| r
            .contains(" /repos/acme/app/environments/prod/secrets/")
            || r.contains(" /orgs/acme/actions/secrets/")),
        "{:?}",
        w.server.requests()
    );
    // The next rotation updates the secrets (created_at kept) and keeps an organization
    // secret's visibility as an administrator set it.
    w.server.set_visibility("orgs/acme", "selected");
    let second = w.next_rotation(&first).await;
    w.assert_holds("repos/acme/app/environments/prod", "DEPLOY", &second)
        .await;
    let org = w
        .server
        .secret("orgs/acme", "ORG_SECRET_ACCESS_KEY")
        .unwrap();
    assert_eq!(org.visibility.as_deref(), Some("selected"));
    assert!(org.created_at < org.updated_at);
}

/// A destination failing with `status` (set up by `break_it`): a clear error, the old key
/// active past its grace; after `recover` a later run delivers and the old key goes.
async fn fails_then_recovers(
    name: &str,
    break_it: impl FnOnce(&World),
    expected: &str,
    recover: impl AsyncFnOnce(&World),
) {
    let w = world(name, "gh=gh-repo:acme/app:AWS", false).await;
    w.server.add_scope("repos/acme/app");
    break_it(&w);
    let report = w.run().await;
    let new = w.current(&report);
    let alert = w.undelivered();
    assert!(
        alert.contains(&format!("gh (GitHub gh-repo:acme/app:AWS): {expected}")),
        "{alert}"
    );
    assert!(alert.ends_with("the old key stays active"), "{alert}");
    let credentials = w.store.credentials(&w.user, &new).await.unwrap().unwrap();
    let secret = credentials.secret_access_key.expose();
    assert!(!alert.contains(secret) && !report.to_string().contains(secret));
    for _ in 0..3 {
        w.aws.clock.advance(12 * HOUR);
        let report = w.run().await;
        assert!(
            matches!(
                report.users[0].outcome,
                Outcome::Waiting(Wait::AwaitingDelivery { .. })
                    | Outcome::Waiting(Wait::AwaitingGrace { .. })
            ),
            "{report}"
        );
    }
    assert_eq!(w.status(&w.legacy), KeyStatus::Active, "past its grace");

    recover(&w).await;
    w.aws.clock.advance(HOUR);
    w.run().await;
    w.assert_holds("repos/acme/app", "AWS", &new).await;
    assert_eq!(w.status(&w.legacy), KeyStatus::Inactive);
    assert!(
        w.aws
            .notifier
            .notices()
            .iter()
            .all(|n| !matches!(n, Notice::ForcedUndelivered { .. }))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_keeps_the_old_key_until_the_token_in_secrets_manager_works_again() {
    fails_then_recovers(
        "gh-unauthorized",
        |w| w.server.set_token("ghs_revoked_and_replaced"),
        "the destination refused keyrot's credentials: GitHub GET \
         /repos/acme/app/actions/secrets/public-key answered 401 Unauthorized: Bad credentials",
        // The same process, its old token cached: a 401 reads the token again, once.
        async |w| set_secret(&w.secrets, &w.credential, "ghs_revoked_and_replaced").await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_keeps_the_old_key_until_the_repository_exists() {
    fails_then_recovers(
        "gh-not-found",
        |w| w.server.fail(404, Calls::All),
        "the destination does not exist: GitHub GET \
         /repos/acme/app/actions/secrets/public-key answered 404 Not Found: Not Found",
        async |w| w.server.recover(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_422_keeps_the_old_key_until_github_takes_the_value() {
    fails_then_recovers(
        "gh-rejected",
        |w| w.server.fail(422, Calls::Put),
        "the destination refused the request: GitHub PUT \
         /repos/acme/app/actions/secrets/AWS_SECRET_ACCESS_KEY answered 422 Unprocessable \
         Entity: Validation Failed",
        async |w| w.server.recover(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_github_accepted_but_lost_is_not_taken_as_delivered() {
    fails_then_recovers(
        "gh-lost",
        |w| w.server.drop_writes(true),
        "written, but not seen there yet",
        async |w| w.server.drop_writes(false),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_update_of_secrets_that_exist_is_not_taken_as_delivered() {
    let w = world("gh-lost-update", "gh=gh-repo:acme/app:AWS", false).await;
    w.server.add_scope("repos/acme/app");
    let first = w.current(&w.run().await);
    w.assert_holds("repos/acme/app", "AWS", &first).await;
    // GitHub accepts the next key's writes and loses them: the secrets exist, but their
    // `updated_at` is older than the write.
    w.server.drop_writes(true);
    w.aws.notifier.take();
    let second = w.next_rotation(&first).await;
    let alert = w.undelivered();
    assert!(
        alert.contains("gh (GitHub gh-repo:acme/app:AWS): written, but not seen there yet"),
        "{alert}"
    );
    w.assert_holds("repos/acme/app", "AWS", &first).await;
    w.server.drop_writes(false);
    w.aws.clock.advance(HOUR);
    w.run().await;
    w.assert_holds("repos/acme/app", "AWS", &second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_app_credential_is_exchanged_for_an_installation_token() {
    use base64::Engine as _;
    let mut w = world("gh-app", "gh=gh-repo:acme/app:AWS", false).await;
    w.server.add_scope("repos/acme/app");
    let public = base64::engine::general_purpose::STANDARD
        .decode(APP_PUBLIC_KEY)
        .unwrap();
    w.server.set_app("1234", 42, public.clone());
    w.server.set_token("ghs_installation_token");
    let app = serde_json::json!({"app_id": 1234, "installation_id": 42, "private_key": APP_KEY});
    set_secret(&w.secrets, &w.credential, &app.to_string()).await;
    let new = w.current(&w.run().await);
    w.assert_holds("repos/acme/app", "AWS", &new).await;
    assert_eq!(
        w.server.requests()[0],
        "POST /app/installations/42/access_tokens",
        "{:?}",
        w.server.requests()
    );
    let exchanges = w
        .server
        .requests()
        .iter()
        .filter(|r| r.starts_with("POST "))
        .count();
    assert_eq!(
        exchanges, 1,
        "the installation token is kept for the adapter's life"
    );

    // Another installation: the exchange's 404 is the delivery's error.
    w.server.set_app("1234", 7, public);
    w.aws.notifier.take();
    w.rotator = w.fresh_rotator();
    w.next_rotation(&new).await;
    let alert = w.undelivered();
    assert!(
        alert.contains(
            "gh (GitHub gh-repo:acme/app:AWS): the destination does not exist: GitHub POST \
             /app/installations/42/access_tokens answered 404 Not Found: Not Found"
        ),
        "{alert}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_maximum_grace_forces_the_old_key_off_with_an_alert_naming_the_github_destination() {
    let w = world("gh-forced", "gh=gh-repo:acme/app:AWS", false).await;
    w.server.add_scope("repos/acme/app");
    w.server.fail(422, Calls::Put);
    w.run().await;
    for _ in 0..7 {
        w.aws.clock.advance(12 * HOUR);
        w.run().await;
    }
    assert_eq!(w.status(&w.legacy), KeyStatus::Inactive);
    let notices = w.aws.notifier.notices();
    let forced = notices
        .iter()
        .find(|n| matches!(n, Notice::ForcedUndelivered { .. }))
        .unwrap_or_else(|| panic!("{notices:?}"));
    assert!(
        forced
            .to_string()
            .contains("although gh (GitHub gh-repo:acme/app:AWS) does not hold its successor"),
        "{forced}"
    );
}
