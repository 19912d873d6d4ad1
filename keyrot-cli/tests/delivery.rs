//! Delivery switched on by configuration, through the `keyrot` binary against moto: a user
//! with an SSM destination and a Secrets Manager destination in another region, declared in
//! the configuration file, holds the new key in both after `keyrot rotate`; with `--account`,
//! a member account's destination is written there, with its member role; a bad destination
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

/// `keyrot rotate --force --user NAME`, with `extra` arguments, rotates the user.
async fn rotated(moto: &Moto, config: &PathBuf, tag: &str, name: &str, extra: &[&str]) {
    let out = keyrot(moto, moto.endpoint(), config, tag)
        .args(["rotate", "--force", "--user", name])
        .args(extra)
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
}

/// The store of keyrot's secrets under `prefix`.
async fn store(moto: &Moto, prefix: String) -> AwsSecretStore {
    AwsSecretStore::new(aws_sdk_secretsmanager::Client::new(
        &moto.admin_config().await,
    ))
    .with_prefix(prefix)
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

    rotated(moto, &config, tag, name, &[]).await;
    let store = store(moto, "keyrot-cli-delivery/".to_owned()).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_account_writes_the_member_accounts_destination_with_its_member_role() {
    let moto = moto().await;
    let root = moto.organization_root().await.unwrap();
    let account = moto
        .create_account("cli-delivery-member", &root)
        .await
        .unwrap();
    // The member role as cfn/member.yaml makes it when given destinations.
    let actions: Vec<&str> = keyrot_aws::permissions::MEMBER_ACTIONS
        .iter()
        .chain(keyrot_aws::permissions::DELIVERY_ACTIONS)
        .copied()
        .collect();
    let policy = serde_json::json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": actions, "Resource": "*"}]});
    moto.create_role_in(&account, "keyrot-member", &policy.to_string())
        .await
        .unwrap();
    let (name, tag) = ("cli-delivery-member-ci", "keyrot:cli-delivery-member");
    moto.create_user_in(&account, name, &[(tag, "true")])
        .await
        .unwrap();
    let member = moto.account_admin_config(&account).await.unwrap();
    let user = UserName::new(name).unwrap();
    AwsIam::new(aws_sdk_iam::Client::new(&member))
        .create_key(&user)
        .await
        .unwrap();
    let text = "ci=ssm:eu-west-1:/keyrot-cli-delivery/member";
    let config = config_file(
        "member",
        &format!("[delivery.users]\n{name} = \"{text}\"\n"),
    );
    let destination = &parse_destinations(text).unwrap()[0];

    rotated(moto, &config, tag, name, &["--account", account.as_str()]).await;
    let store = store(moto, format!("keyrot-cli-delivery/{account}/")).await;
    let current = store
        .load(&user)
        .await
        .unwrap()
        .current()
        .unwrap()
        .to_string();
    let held = keyrot_aws::moto::held_by(&member, &destination.target)
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&held).unwrap();
    assert_eq!(json["AccessKeyId"], current.as_str(), "{json}");
    // In the member account, not the hub.
    assert_eq!(moto.held(&destination.target).await, None);
}
