//! `keyrot-rotate` as the fan-out's worker: the state machine's requests (the inventory, then
//! one run per account, again while the account has users left) under the fake Runtime API,
//! against an organization in moto.

use super::*;

const MEMBER_ROLE: &str = "keyrot-member";
/// The hub's SES sender of the fan-out's notices (this test's own).
const SENDER: &str = "keyrot-fanout@example.com";

#[test]
fn the_worker_lists_the_scope_and_rotates_each_account_and_a_denying_one_fails_alone() {
    let moto = moto();
    let rt = tokio();
    let prefix = "keyrot-lambda-test/fanout/";
    let (ou, members, denying) = rt.block_on(async {
        let root = moto.organization_root().await.unwrap();
        let ou = moto.create_ou(&root, "lambda-fanout").await.unwrap();
        let mut members = Vec::new();
        for n in 1..=3 {
            let account = moto
                .create_account(&format!("lambda-member-{n}"), &ou)
                .await
                .unwrap();
            moto.create_member_role(&account, MEMBER_ROLE).await.unwrap();
            for user in ["ci", "deploy"] {
                moto.create_user_in(&account, user, &[("keyrot:managed", "true")])
                    .await
                    .unwrap();
            }
            members.push(account);
        }
        let denying = moto.create_account("lambda-denying", &ou).await.unwrap();
        let deny = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"iam:*","Resource":"*"}]}"#;
        moto.create_role_in(&denying, MEMBER_ROLE, deny).await.unwrap();
        moto.verify_sender(SENDER).await.unwrap();
        (ou, members, denying)
    });

    let runtime = RuntimeApi::start();
    let mut env = aws_env(moto);
    env.extend([
        ("KEYROT_SECRET_PREFIX", prefix.to_owned()),
        ("KEYROT_ORG_INCLUDE", ou.to_string()),
        ("KEYROT_METRICS_NAMESPACE", "keyrot-test".to_owned()),
        ("KEYROT_ALERT_FROM", SENDER.to_owned()),
        ("KEYROT_ALERT_TO", "ops@example.com".to_owned()),
    ]);
    let mut function = Function::start(env!("CARGO_BIN_EXE_keyrot-rotate"), &runtime, &env);

    // The inventory: the map's items.
    let report = runtime.invoke(&mut function, "inventory", &json!({"keyrot": "inventory"}));
    assert_eq!(report.kind, "response", "{report:?}\n{}", function.output());
    let items = report.json()["accounts"].as_array().unwrap().clone();
    let mut expected: Vec<String> = members.iter().map(ToString::to_string).collect();
    expected.push(denying.to_string());
    expected.sort();
    let listed: Vec<&str> = items
        .iter()
        .map(|i| i["account"].as_str().unwrap())
        .collect();
    assert_eq!(listed, expected);

    // Each item as the map's iteration runs it: invoke, and again while `more`.
    let mut lines = Vec::new();
    for item in &items {
        let account = item["account"].as_str().unwrap();
        let event = json!({"keyrot": "account", "account": account});
        let mut invocation = 0;
        loop {
            invocation += 1;
            let report = runtime.invoke(&mut function, &format!("{account}-{invocation}"), &event);
            if account == denying.as_str() {
                assert_eq!(report.kind, "error", "{report:?}");
                let body = report.json();
                assert_eq!(
                    body["errorType"], "keyrot.NotRetryable.AccessDenied",
                    "{body}"
                );
                assert!(
                    body["errorMessage"].as_str().unwrap().starts_with(&format!(
                        "could not list the managed users of account {denying}"
                    )),
                    "{body}"
                );
                break;
            }
            assert_eq!(report.kind, "response", "{report:?}\n{}", function.output());
            let out = report.json();
            assert_eq!(out["account"], account, "{out}");
            if !out["more"].as_bool().unwrap() {
                assert_eq!(out["outcome"], "ok", "{out}");
                assert_eq!(out["users"], 2, "{out}");
                assert_eq!(out["rotated"], 2, "{out}");
                lines.push(out);
                break;
            }
            assert!(invocation < 5, "an account's run must end: {out}");
        }
    }
    assert_eq!(lines.len(), 3);

    // What the outputs say is what moto holds: each user's one key is its stored current
    // version, in the hub, under the account's id.
    rt.block_on(async {
        for account in &members {
            let iam = aws_sdk_iam::Client::new(&moto.account_admin_config(account).await.unwrap());
            let store = AwsSecretStore::new(aws_sdk_secretsmanager::Client::new(
                &moto.admin_config().await,
            ))
            .with_prefix(format!("{prefix}{account}/"));
            for user in ["ci", "deploy"] {
                let keys = iam.list_access_keys().user_name(user).send().await.unwrap();
                let ids: Vec<&str> = keys
                    .access_key_metadata()
                    .iter()
                    .filter_map(|k| k.access_key_id())
                    .collect();
                let current = store
                    .current(&UserName::new(user).unwrap())
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(ids, [current.access_key_id.as_str()], "{account}/{user}");
            }
        }
    });

    // Each account's notices are mailed from the hub and name the account: the subject as
    // `<account>/<user>`, the text as `account <account>: ...`.
    let mails = moto.sent_mails(SENDER).unwrap();
    for account in &members {
        for user in ["ci", "deploy"] {
            let subject = format!("[keyrot] {account}/{user}: access key rotated");
            let mail = mails
                .iter()
                .find(|m| m["subject"] == subject.as_str())
                .unwrap_or_else(|| panic!("no mail {subject:?}: {mails:?}"));
            let body = mail["body"].as_str().unwrap();
            assert!(
                body.starts_with(&format!("account {account}: {user}: published AKIA")),
                "{body}"
            );
        }
    }
    assert_eq!(mails.len(), 6, "{mails:?}");

    // Per-account metrics: the dimension Account beside Service.
    let metrics = function.metric_lines();
    for account in &members {
        let line = metrics
            .iter()
            .find(|m| m["Account"] == account.as_str())
            .unwrap_or_else(|| panic!("no metrics for {account}: {metrics:?}"));
        assert_eq!(line["RotationsSucceeded"], 2);
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Service", "Account"], ["Service"]])
        );
    }

    // A request the worker does not know fails as not retryable.
    let report = runtime.invoke(
        &mut function,
        "bad",
        &json!({"keyrot": "account", "account": "12"}),
    );
    assert_eq!(report.json()["errorType"], "keyrot.NotRetryable.BadEvent");
}
