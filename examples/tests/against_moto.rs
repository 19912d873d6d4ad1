//! The service against moto (keyrot_aws::moto: an AWS emulator on 127.0.0.1 that checks every
//! request's signature): the `embed` example's logic in process, and the built `embed` binary
//! as a process, rotate a tagged user's key in moto's IAM and Secrets Manager. Each test checks
//! from outside keyrot, with the administrator's own clients, that the published secret holds a
//! key that authenticates and that the old key is still active (grace).
//!
//! The binary is `target/<profile>/examples/embed`, found from this test's own path and built
//! on demand (see [`embed_binary`]).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Output;

use aws_config::SdkConfig;
use examples::{Health, Mode, publish_check, rotate_once};
use keyrot_aws::moto::Moto;
use keyrot_aws::{AwsClients, AwsSecretStore, AwsVerifier, BackendSettings};
use keyrot_config::{Sources, lookup_in};
use keyrot_core::settings::PolicySettings;
use keyrot_core::{
    AccessKeyId, Credentials, Outcome, SecretAccessKey, SecretStore, UserName, Verifier,
};
use tokio::process::Command;

/// One test's corner of the shared moto server: its own user, selection tag, secret prefix and
/// lease table.
struct Scene {
    moto: &'static Moto,
    admin: SdkConfig,
    iam: aws_sdk_iam::Client,
    user: UserName,
    tag: String,
    prefix: String,
    lease_table: String,
}

impl Scene {
    async fn new(name: &str) -> Self {
        let moto = tokio::task::spawn_blocking(Moto::shared)
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}"));
        let admin = moto.admin_config().await;
        let id = format!("examples-{}-{name}", std::process::id());
        let lease_table = format!("{id}-leases");
        moto.create_lease_table(&lease_table).await.unwrap();
        Self {
            moto,
            iam: aws_sdk_iam::Client::new(&admin),
            admin,
            user: UserName::new(format!("{id}-ci")).unwrap(),
            tag: format!("keyrot:managed:{id}=true"),
            prefix: format!("{id}/"),
            lease_table,
        }
    }

    /// The user, tagged for this test's selection, with a key created outside keyrot.
    async fn tagged_user_with_legacy_key(&self) -> AccessKeyId {
        let (key, value) = self.tag.split_once('=').unwrap();
        self.moto
            .create_user(self.user.as_str(), &[(key, value)])
            .await
            .unwrap();
        let out = self
            .iam
            .create_access_key()
            .user_name(self.user.as_str())
            .send()
            .await
            .unwrap();
        AccessKeyId::new(out.access_key().unwrap().access_key_id()).unwrap()
    }

    /// The user's keys in IAM, as `(id, status)`.
    async fn iam_keys(&self) -> Vec<(String, String)> {
        let out = self
            .iam
            .list_access_keys()
            .user_name(self.user.as_str())
            .send()
            .await
            .unwrap();
        out.access_key_metadata()
            .iter()
            .map(|k| {
                let status = k.status().map(|s| s.as_str().to_owned());
                (k.access_key_id().unwrap().to_owned(), status.unwrap())
            })
            .collect()
    }

    /// What a consumer reading Secrets Manager directly gets (`AWSCURRENT`), if anything.
    async fn published(&self) -> Option<Credentials> {
        let secrets = aws_sdk_secretsmanager::Client::new(&self.admin);
        let result = secrets
            .get_secret_value()
            .secret_id(format!("{}{}", self.prefix, self.user))
            .version_stage("AWSCURRENT")
            .send()
            .await;
        let out = match result {
            Ok(out) => out,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                return None;
            }
            Err(e) => panic!("GetSecretValue: {e:?}"),
        };
        let payload: serde_json::Value = serde_json::from_str(out.secret_string()?).unwrap();
        // Before the first publication the secret holds a placeholder without a key.
        let id = payload.get("AccessKeyId")?.as_str().unwrap();
        let secret = payload["SecretAccessKey"].as_str().unwrap();
        assert_eq!(payload["UserName"], self.user.as_str());
        Some(Credentials {
            access_key_id: AccessKeyId::new(id).unwrap(),
            secret_access_key: SecretAccessKey::new(secret),
        })
    }

    /// Checks that the published key is new, authenticates as the user (STS, signed with it),
    /// and that the legacy key is still active beside it.
    async fn check_rotated(&self, legacy: &AccessKeyId) {
        let published = self.published().await.expect("a key is published");
        assert_ne!(&published.access_key_id, legacy);
        let verifier = AwsVerifier::new(self.admin.clone());
        assert!(
            verifier
                .authenticates(&self.user, &published)
                .await
                .unwrap(),
            "the published key {} does not authenticate",
            published.access_key_id
        );
        let mut keys = self.iam_keys().await;
        keys.sort();
        let mut expected = vec![
            (legacy.to_string(), "Active".to_owned()),
            (published.access_key_id.to_string(), "Active".to_owned()),
        ];
        expected.sort();
        assert_eq!(keys, expected, "the old key stays active through the grace");
    }

    /// The built `embed` example, with nothing from the developer's environment and exactly
    /// the settings that point it at moto as the administrator.
    fn embed(&self) -> Command {
        let (key_id, secret) = self.moto.admin_credentials();
        let mut cmd = embed_command();
        cmd.env("AWS_ENDPOINT_URL", self.moto.endpoint())
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", key_id)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("KEYROT_MANAGED_TAG", &self.tag)
            .env("KEYROT_SECRET_PREFIX", &self.prefix)
            .env("KEYROT_LEASE_TABLE", &self.lease_table);
        cmd
    }
}

fn embed_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_embed"));
    cmd.env_clear()
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    cmd
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_logic_rotates_a_tagged_user() {
    let scene = Scene::new("lib").await;
    let legacy = scene.tagged_user_with_legacy_key().await;
    let ports = BackendSettings {
        secret_prefix: scene.prefix.clone(),
        lease_table: scene.lease_table.clone(),
        ..BackendSettings::default()
    }
    .ports(&AwsClients::new(scene.admin.clone()));
    let policy = Sources::new()
        .env(lookup_in(&[("KEYROT_MANAGED_TAG", &scene.tag)]))
        .policy(&PolicySettings::default())
        .unwrap();
    let users: &[UserName] = &[];
    let run = |mode| rotate_once(ports.clone(), policy.clone(), users, mode);
    let check = || publish_check(&*ports.store, &*ports.verifier, &scene.user);

    // Every managed user means exactly this test's user: the selection tag is unique.
    let report = run(Mode::DryRun).await.unwrap();
    assert_eq!(report.users.len(), 1, "{report}");
    assert_eq!(report.users[0].user, scene.user);
    assert!(
        matches!(report.users[0].outcome, Outcome::Planned(_)),
        "{report}"
    );
    assert_eq!(check().await.unwrap(), Health::Unpublished);

    // The legacy key was created just now: adopted, but not due.
    let report = run(Mode::Apply).await.unwrap();
    assert_eq!((report.rotations(), report.failures()), (0, 0), "{report}");
    assert_eq!(check().await.unwrap(), Health::Unpublished);
    assert_eq!(scene.iam_keys().await.len(), 1);

    let report = run(Mode::Force).await.unwrap();
    assert_eq!((report.rotations(), report.failures()), (1, 0), "{report}");
    let Health::Works(current) = check().await.unwrap() else {
        panic!("the published key does not work");
    };
    scene.check_rotated(&legacy).await;
    assert_eq!(scene.published().await.unwrap().access_key_id, current);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embed_binary_rotates_a_tagged_user() {
    let scene = Scene::new("bin").await;
    let legacy = scene.tagged_user_with_legacy_key().await;

    let out = scene
        .embed()
        .arg(scene.user.as_str())
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with("dry run: nothing was changed"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("next: adopt {legacy}")),
        "{stdout}"
    );
    assert!(stdout.contains(": no key published yet"), "{stdout}");
    assert_eq!(scene.published().await, None);

    let out = scene
        .embed()
        .args(["--apply", "--force", scene.user.as_str()])
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 users, 1 rotated, 0 failed"), "{stdout}");
    scene.check_rotated(&legacy).await;
    let current = scene.published().await.unwrap().access_key_id;
    assert!(
        stdout.contains(&format!("published key {current} authenticates")),
        "{stdout}"
    );
    // The secret is in the store, never on the tool's output.
    let secret = AwsSecretStore::new(aws_sdk_secretsmanager::Client::new(&scene.admin))
        .with_prefix(&scene.prefix)
        .current(&scene.user)
        .await
        .unwrap()
        .unwrap();
    let secret = secret.secret_access_key.expose();
    assert!(!stdout.contains(secret) && !stderr.contains(secret));
}

/// Bad input is refused with a message and status 2 before any AWS call (the endpoint, unless
/// it is the bad input, is a closed port, so a call would fail differently).
#[tokio::test]
async fn the_embed_binary_refuses_bad_arguments() {
    let closed_port = ("AWS_ENDPOINT_URL", "http://127.0.0.1:9");
    let cases: [(&[&str], _, &str); 6] = [
        (&["--force", "ci"], closed_port, "--apply"),
        (&["not/a user"], closed_port, "not/a user"),
        (
            &["--endpoint-url", "localhost:5000", "ci"],
            closed_port,
            "\"localhost:5000\" is not an endpoint URL",
        ),
        (
            &["ci"],
            ("AWS_ENDPOINT_URL", "localhost:5000"),
            "AWS_ENDPOINT_URL: \"localhost:5000\" is not an endpoint URL",
        ),
        (&["--bogus"], closed_port, "--bogus"),
        (
            &["ci"],
            ("KEYROT_GRACE_PERIOD", "7 days"),
            "KEYROT_GRACE_PERIOD: \"7 days\" is not a duration",
        ),
    ];
    for (args, env, message) in cases {
        let out = embed_command()
            .env(closed_port.0, closed_port.1)
            .env("AWS_REGION", "us-east-1")
            .env(env.0, env.1)
            .args(args)
            .output()
            .await
            .unwrap();
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stdout}\n{stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
    }
}
