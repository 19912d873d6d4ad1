//! Delivery switched on by configuration, through the `keyrot` binary against moto: a user
//! with an SSM destination and a Secrets Manager destination in another region, declared in
//! the configuration file, holds the new key in both after `keyrot rotate`; a bad destination
//! in the file is refused, by name, before any AWS call.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use keyrot_aws::moto::{FaultProxy, Moto};
use keyrot_aws::{AwsIam, AwsSecretStore};
use keyrot_core::delivery::{Destination, parse_destinations};
use keyrot_core::{Iam, KeyStatus, SecretStore, UserName};
use tokio::process::Command;

const KEYROT: &str = env!("CARGO_BIN_EXE_keyrot");
const LEASE_TABLE: &str = "keyrot-cli-delivery-leases";

async fn moto() -> &'static Moto {
    let moto = tokio::task::spawn_blocking(Moto::shared)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    moto.create_lease_table(LEASE_TABLE).await.unwrap();
    moto
}

/// A configuration file named `name` holding `text`.
fn config_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keyrot-cli-delivery-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// `keyrot` as moto's administrator, through `endpoint`, with the configuration file `config`.
fn keyrot(moto: &Moto, endpoint: &str, config: &PathBuf, tag: &str) -> Command {
    let mut cmd = Command::from(moto.admin_process(KEYROT, endpoint));
    cmd.env("KEYROT_CONFIG", config)
        .env("KEYROT_MANAGED_TAG", format!("{tag}=true"))
        .env("KEYROT_SECRET_PREFIX", "keyrot-cli-delivery/")
        .env("KEYROT_LEASE_TABLE", LEASE_TABLE)
        .env("KEYROT_LOG", "warn")
        .kill_on_drop(true);
    cmd
}

/// The key id in keyrot's JSON that `destination` holds.
async fn held(moto: &Moto, destination: &Destination, user: &str) -> Option<String> {
    let value = moto.held(&destination.target).await?;
    let json: serde_json::Value = serde_json::from_str(&value).unwrap();
    assert_eq!(json["UserName"], user, "{json}");
    Some(json["AccessKeyId"].as_str()?.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_delivers_the_new_key_to_the_configured_ssm_parameter_and_secret() {
    let moto = moto().await;
    let (name, tag) = ("cli-delivery-ci", "keyrot:cli-delivery");
    moto.create_user(name, &[(tag, "true")]).await.unwrap();
    let iam = AwsIam::new(aws_sdk_iam::Client::new(&moto.admin_config().await));
    let user = UserName::new(name).unwrap();
    let legacy = iam.create_key(&user).await.unwrap().key.id;
    let text = "ci=ssm:eu-west-1:/keyrot-cli-delivery/ci app=sm:us-west-2:keyrot-cli-delivery/ci";
    let config = config_file(
        "delivers",
        &format!("[delivery.users]\n{name} = \"{text}\"\n"),
    );
    let [ssm, sm]: [Destination; 2] = parse_destinations(text).unwrap().try_into().unwrap();

    let out = keyrot(moto, moto.endpoint(), &config, tag)
        .args(["rotate", "--force", "--user", name])
        .output()
        .await
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{table} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.contains("1 rotated"), "{table}");

    let store = AwsSecretStore::new(aws_sdk_secretsmanager::Client::new(
        &moto.admin_config().await,
    ))
    .with_prefix("keyrot-cli-delivery/");
    let stored = store.load(&user).await.unwrap();
    let current = stored.current().unwrap().to_string();
    assert_ne!(current, legacy.to_string());
    assert_eq!(
        held(moto, &ssm, name).await.as_deref(),
        Some(current.as_str())
    );
    assert_eq!(
        held(moto, &sm, name).await.as_deref(),
        Some(current.as_str())
    );
    // Both delivered and recorded: the old key waits for its grace, still active.
    for destination in [&ssm, &sm] {
        assert!(
            destination.holds(&stored, stored.current().unwrap()),
            "{destination}: {stored:?}"
        );
    }
    let keys = iam.list_keys(&user).await.unwrap();
    assert!(
        keys.iter()
            .all(|k| k.status == KeyStatus::Active && keys.len() == 2),
        "{keys:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_destination_in_the_file_is_refused_before_any_aws_call() {
    let moto = moto().await;
    let proxy = FaultProxy::start(moto.endpoint()).unwrap();
    let config = config_file(
        "bad",
        "[delivery.users]\ncli-delivery-bad = \"ci=ssm:eu-west-1:/ok app=sm:mars-1:x\"\n",
    );
    for command in [&["rotate"][..], &["rotate", "--org"], &["serve"]] {
        let out = keyrot(moto, proxy.endpoint(), &config, "keyrot:cli-delivery-bad")
            .args(command)
            .output()
            .await
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command:?}: {err}");
        let expected = format!(
            "[delivery] users in {}: user cli-delivery-bad: destination app: \"mars-1\" is not \
             an AWS region",
            config.display()
        );
        assert!(err.contains(&expected), "{command:?}: {err}");
    }
    assert!(proxy.calls().is_empty(), "{:?}", proxy.calls());
}
