//! `keyrot rotate|status|rollback --org` and `--account` against an organization in moto:
//! member accounts in nested OUs, keyrot's member role in each, users in each; a member
//! account whose role is missing and one whose role denies; an exempt account; an account
//! added between runs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::BTreeMap;

use keyrot_aws::moto::Moto;
use keyrot_aws::{AwsIam, AwsSecretStore};
use keyrot_core::accounts::AccountId;
use keyrot_core::{Iam, KeyStatus, SecretStore, UserName};
use tokio::process::Command;

const KEYROT: &str = env!("CARGO_BIN_EXE_keyrot");
const LEASE_TABLE: &str = "keyrot-org-test-leases";
const PREFIX: &str = "keyrot-org-test/";
const MEMBER_ROLE: &str = "keyrot-member";
const TAG: &str = "keyrot:managed";

async fn moto() -> &'static Moto {
    let moto = tokio::task::spawn_blocking(Moto::shared)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    moto.create_lease_table(LEASE_TABLE).await.unwrap();
    moto
}

/// `keyrot` in the hub (moto's administrator), secrets under [`PREFIX`], with `vars`.
fn keyrot(moto: &Moto, vars: &[(&str, &str)]) -> Command {
    let mut cmd = Command::from(moto.admin_process(KEYROT, moto.endpoint()));
    cmd.env_remove("KEYROT_CONFIG")
        .env("KEYROT_SECRET_PREFIX", PREFIX)
        .env("KEYROT_LEASE_TABLE", LEASE_TABLE)
        .env("KEYROT_LOG", "warn")
        .kill_on_drop(true);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd
}

async fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn user(name: &str) -> UserName {
    UserName::new(name).unwrap()
}

/// IAM of `account`, as its administrator.
async fn iam_in(moto: &Moto, account: &AccountId) -> AwsIam {
    AwsIam::new(aws_sdk_iam::Client::new(
        &moto.account_admin_config(account).await.unwrap(),
    ))
}

/// A user in `account` with a key made outside keyrot, tagged managed or not; the key's id.
async fn user_with_key(moto: &Moto, account: &AccountId, name: &str, managed: bool) -> String {
    let tags: &[(&str, &str)] = if managed { &[(TAG, "true")] } else { &[] };
    moto.create_user_in(account, name, tags).await.unwrap();
    let key = iam_in(moto, account)
        .await
        .create_key(&user(name))
        .await
        .unwrap();
    key.key.id.to_string()
}

/// The hub's store of `account`'s secrets.
async fn store_of(moto: &Moto, account: &AccountId) -> AwsSecretStore {
    AwsSecretStore::new(aws_sdk_secretsmanager::Client::new(
        &moto.admin_config().await,
    ))
    .with_prefix(format!("{PREFIX}{account}/"))
}

/// The invariants of DESIGN.md a forced rotation must leave in `account` for `name`, whose
/// key before the run was `old`: at most two keys; the stored current version names a key
/// that exists and is active and is not `old`; `old` still active (its grace has begun).
async fn check_rotated(moto: &Moto, account: &AccountId, name: &str, old: &str) {
    let keys = iam_in(moto, account)
        .await
        .list_keys(&user(name))
        .await
        .unwrap();
    assert_eq!(keys.len(), 2, "{account}/{name}: {keys:?}");
    let stored = store_of(moto, account)
        .await
        .load(&user(name))
        .await
        .unwrap();
    let current = stored.current().expect("a current version").to_string();
    assert_ne!(current, old, "{account}/{name}");
    for key in &keys {
        assert_eq!(key.status, KeyStatus::Active, "{account}/{name}: {keys:?}");
    }
    assert!(keys.iter().any(|k| k.id.to_string() == current));
}

/// `name` in `account` still has exactly `key`, and the hub stores nothing for it.
async fn check_untouched(moto: &Moto, account: &AccountId, name: &str, key: &str) {
    let keys = iam_in(moto, account)
        .await
        .list_keys(&user(name))
        .await
        .unwrap();
    let ids: Vec<String> = keys.iter().map(|k| k.id.to_string()).collect();
    assert_eq!(ids, [key], "{account}/{name}");
    let stored = store_of(moto, account)
        .await
        .load(&user(name))
        .await
        .unwrap();
    assert!(stored.versions.is_empty(), "{account}/{name}: {stored:?}");
}

/// The summary's line for each account: (outcome, users, rotated).
fn summary(stdout: &str) -> BTreeMap<String, (String, usize, usize)> {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("ACCOUNT "))
        .skip(1)
        .filter_map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            AccountId::new(cells.first()?).ok()?;
            Some((
                cells[0].to_owned(),
                (
                    cells[1].to_owned(),
                    cells[2].parse().ok()?,
                    cells[3].parse().ok()?,
                ),
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_org_rotates_every_account_in_scope_and_reports_the_failed_ones() {
    let moto = moto().await;
    let root = moto.organization_root().await.unwrap();
    let ou = moto.create_ou(&root, "org-test").await.unwrap();
    let nested = moto.create_ou(&ou, "org-test-nested").await.unwrap();

    // Three members with keyrot's role (one in the nested OU), users in each; one account
    // whose role is missing, one whose role denies, one exempt; and an account outside the OU.
    let mut members = Vec::new();
    for (n, parent) in [(1, &ou), (2, &ou), (3, &nested)] {
        let account = moto
            .create_account(&format!("member-{n}"), parent)
            .await
            .unwrap();
        moto.create_member_role(&account, MEMBER_ROLE)
            .await
            .unwrap();
        let old = user_with_key(moto, &account, "ci", true).await;
        let old2 = user_with_key(moto, &account, "deploy", true).await;
        let person = user_with_key(moto, &account, "alice", false).await;
        // A managed user with no key yet: keyrot makes its first.
        moto.create_user_in(&account, "fresh", &[(TAG, "true")])
            .await
            .unwrap();
        members.push((account, old, old2, person));
    }
    let missing = moto.create_account("no-role", &ou).await.unwrap();
    user_with_key(moto, &missing, "ci", true).await;
    let denying = moto.create_account("denying", &nested).await.unwrap();
    let deny = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"iam:*","Resource":"*"}]}"#;
    moto.create_role_in(&denying, MEMBER_ROLE, deny)
        .await
        .unwrap();
    user_with_key(moto, &denying, "ci", true).await;
    let exempt = moto.create_account("exempt", &ou).await.unwrap();
    moto.create_member_role(&exempt, MEMBER_ROLE).await.unwrap();
    let exempt_key = user_with_key(moto, &exempt, "ci", true).await;
    let outside = moto.create_account("outside", &root).await.unwrap();
    moto.create_member_role(&outside, MEMBER_ROLE)
        .await
        .unwrap();
    let outside_key = user_with_key(moto, &outside, "ci", true).await;

    let org_vars = [
        ("KEYROT_ORG_INCLUDE", ou.as_str()),
        ("KEYROT_ORG_EXEMPT", exempt.as_str()),
        ("KEYROT_MAX_PARALLEL_ACCOUNTS", "2"),
    ];
    // The first run mails its notices from the hub (this test's own sender).
    let sender = "keyrot-org-test@example.com";
    moto.verify_sender(sender).await.unwrap();
    let alerts = [
        ("KEYROT_ALERT_FROM", sender),
        ("KEYROT_ALERT_TO", "ops@example.com"),
    ];
    let (code, out, err) =
        run(keyrot(moto, &[&org_vars[..], &alerts].concat()).args(["rotate", "--org", "--force"]))
            .await;
    assert_eq!(code, 1, "two accounts failed: {out}\n{err}");
    let lines = summary(&out);
    for (account, old, old2, person) in &members {
        assert_eq!(lines[account.as_str()], ("ok".to_owned(), 3, 3), "{out}");
        check_rotated(moto, account, "ci", old).await;
        check_rotated(moto, account, "deploy", old2).await;
        check_untouched(moto, account, "alice", person).await;
    }
    // moto lets the missing role be assumed (AWS would refuse AssumeRole): the account fails
    // at its first call instead. Either way: failed, reported, and the others rotated.
    assert_eq!(lines[missing.as_str()].0, "unreachable", "{out}");
    assert_eq!(lines[denying.as_str()].0, "unreachable", "{out}");
    assert!(!lines.contains_key(exempt.as_str()), "exempt: {out}");
    assert!(
        !lines.contains_key(outside.as_str()),
        "outside the OU: {out}"
    );
    assert_eq!(lines.len(), 5, "{out}");
    assert!(
        out.contains("5 accounts, 2 failed, 9 users rotated"),
        "{out}"
    );
    check_untouched(moto, &exempt, "ci", &exempt_key).await;
    check_untouched(moto, &outside, "ci", &outside_key).await;
    // Each notice names its account, as the deployed worker's do.
    let mails = moto.sent_mails(sender).unwrap();
    for (account, old, _, _) in &members {
        let mail = mails
            .iter()
            .find(|m| m["subject"] == format!("[keyrot] {account}/ci: access key rotated"))
            .unwrap_or_else(|| panic!("no mail for {account}/ci: {mails:?}"));
        let body = mail["body"].as_str().unwrap();
        assert!(
            body.starts_with(&format!("account {account}: ci: rotated {old} -> ")),
            "{body}"
        );
    }
    assert_eq!(mails.len(), 9, "a mail per rotated user: {mails:?}");

    // An account added to a unit in scope between runs is covered by the next run.
    let added = moto.create_account("added", &nested).await.unwrap();
    moto.create_member_role(&added, MEMBER_ROLE).await.unwrap();
    let added_key = user_with_key(moto, &added, "ci", true).await;
    let (_, out, err) = run(keyrot(moto, &org_vars).args(["rotate", "--org"])).await;
    let lines = summary(&out);
    assert_eq!(
        lines[added.as_str()],
        ("ok".to_owned(), 1, 0),
        "{out}\n{err}"
    );
    let stored = store_of(moto, &added)
        .await
        .load(&user("ci"))
        .await
        .unwrap();
    assert!(
        stored.knows(&keyrot_core::AccessKeyId::new(&added_key).unwrap()),
        "adopted: {stored:?}"
    );

    // The auditors' report over the organization: every row begins with its account; the
    // accounts that could not be read are said on stderr and fail the command.
    let (code, out, err) = run(keyrot(moto, &org_vars).args(["report", "--org"])).await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.starts_with("account,user,managed,"), "{out}");
    for account in members.iter().map(|m| &m.0).chain([&added]) {
        assert!(
            out.contains(&format!("\n{account},ci,true,AKIA")),
            "{account}: {out}"
        );
    }
    for account in [&missing, &denying] {
        assert!(!out.contains(account.as_str()), "{out}");
        assert!(err.contains(&format!("account {account}: ")), "{err}");
    }
    let (code, out, err) = run(keyrot(moto, &[]).args([
        "report",
        "--format",
        "json",
        "--account",
        members[0].0.as_str(),
        "--user",
        "ci",
    ]))
    .await;
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report[0]["account"], members[0].0.as_str(), "{report}");
    assert_eq!(report[0]["user"], "ci", "{report}");

    // One account by its id: status, a second rotation, then a rollback to the key before.
    let (account, old, _, _) = &members[0];
    let (code, out, err) = run(keyrot(moto, &[]).args([
        "status",
        "--json",
        "--account",
        account.as_str(),
        "--user",
        "ci",
        "--user",
        "fresh",
    ]))
    .await;
    assert_eq!(code, 0, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    let stages = |status: &serde_json::Value| -> BTreeMap<String, String> {
        status["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    k["id"].as_str().unwrap().to_owned(),
                    k["stage"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(stages(&status[0])[old.as_str()], "adopted", "{status}");
    let first = stages(&status[1]);
    assert_eq!(first.len(), 1, "{status}");
    let first = first.keys().next().unwrap().clone();
    let one = |args: &[&str]| {
        let mut cmd = keyrot(moto, &[]);
        cmd.args(args).args(["--account", account.as_str()]);
        cmd
    };
    let (code, out, err) = run(&mut one(&["rotate", "--force", "--user", "fresh"])).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("1 rotated"), "{out}");
    let (code, out, err) = run(&mut one(&["rollback", "--user", "fresh"])).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains(&format!("{first} is current again")), "{out}");
    let stored = store_of(moto, account)
        .await
        .load(&user("fresh"))
        .await
        .unwrap();
    assert_eq!(stored.current().unwrap().to_string(), first);

    // An exempt account is refused by name, even alone.
    let (code, _, err) = run(
        keyrot(moto, &[("KEYROT_ORG_EXEMPT", exempt.as_str())]).args([
            "rotate",
            "--account",
            exempt.as_str(),
        ]),
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("account {exempt} is exempt")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_of_accounts_is_read_from_list_accounts_and_an_unknown_one_is_reported() {
    let moto = moto().await;
    let root = moto.organization_root().await.unwrap();
    let ou = moto.create_ou(&root, "list-test").await.unwrap();
    let account = moto.create_account("listed", &ou).await.unwrap();
    moto.create_member_role(&account, MEMBER_ROLE)
        .await
        .unwrap();
    user_with_key(moto, &account, "ci", true).await;
    let include = format!("{account},999999999999");
    let (code, out, err) = run(keyrot(moto, &[("KEYROT_ORG_INCLUDE", include.as_str())])
        .args(["status", "--org", "--json"]))
    .await;
    assert_eq!(
        code, 1,
        "the unknown account fails the command: {out}\n{err}"
    );
    let accounts: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(accounts[0]["account"], account.as_str(), "{accounts}");
    assert_eq!(accounts[0]["users"][0]["user"], "ci", "{accounts}");
    assert_eq!(accounts[1]["account"], "999999999999");
    assert_eq!(
        accounts[1]["error"],
        "account 999999999999 is not an active account of the organization"
    );
}
