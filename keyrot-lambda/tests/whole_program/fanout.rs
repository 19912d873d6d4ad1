//! `keyrot-rotate` as the fan-out's worker: the state machine's requests (the inventory, then
//! one run per account, again while the account has users left) under the fake Runtime API,
//! against an organization in moto.

use std::collections::BTreeMap;

use keyrot_aws::{AwsClients, Objects};

use super::*;

const MEMBER_ROLE: &str = "keyrot-member";
/// An account the scope names that the organization does not have.
const MISSING: &str = "999999999999";
/// The accounts bucket the summary reads and writes (this test's own).
const BUCKET: &str = "keyrot-lambda-test-accounts";
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
        // The OU, and an account the organization does not have: the inventory's `missing`.
        ("KEYROT_ORG_INCLUDE", format!("{ou},{MISSING}")),
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
    assert_eq!(report.json()["missing"], json!([MISSING]));
    let inventory = report.json();

    // Each item as the map's iteration runs it: invoke, and again while `more`.
    let mut lines = Vec::new();
    let mut denied = Value::Null;
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
                denied = body.clone();
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

    // The summary, as the state machine's last state asks for it. The map's results are
    // written here as Step Functions' ResultWriter writes them (moto's writes an empty
    // manifest), from the worker's own answers above and its error for the denying account.
    let execution = "fanout-run-1";
    let record = |account: &Value, status: &str, rest: Value| {
        let mut record =
            json!({"Input": json!({"account": account}).to_string(), "Status": status});
        record
            .as_object_mut()
            .unwrap()
            .extend(rest.as_object().unwrap().clone());
        record
    };
    let succeeded: Vec<Value> = lines
        .iter()
        .map(|out| {
            record(
                &out["account"],
                "SUCCEEDED",
                json!({"Output": out.to_string()}),
            )
        })
        .collect();
    let failed = [record(
        &json!(denying),
        "FAILED",
        json!({"Error": denied["errorType"], "Cause": denied.to_string()}),
    )];
    let manifest = json!({
        "DestinationBucket": BUCKET,
        "MapRunArn": "arn:aws:states:us-east-1:123456789012:mapRun:keyrot-accounts/map:1",
        "ResultFiles": {
            "SUCCEEDED": [{"Key": "runs/1/SUCCEEDED_0.json", "Size": 1}],
            "FAILED": [{"Key": "runs/1/FAILED_0.json", "Size": 1}],
            "PENDING": [],
        },
    });
    let objects = rt.block_on(async {
        moto.create_bucket(BUCKET).await.unwrap();
        let objects = Objects::new(AwsClients::new(moto.admin_config().await).s3, BUCKET);
        for (key, body) in [
            (format!("inventory/{execution}.json"), json!(items)),
            ("runs/1/SUCCEEDED_0.json".to_owned(), json!(succeeded)),
            ("runs/1/FAILED_0.json".to_owned(), json!(failed)),
            ("runs/1/manifest.json".to_owned(), manifest),
        ] {
            let body = serde_json::to_vec(&body).unwrap();
            objects.put(&key, body, "application/json").await.unwrap();
        }
        objects
    });
    let state = json!({
        "maxConcurrency": 10,
        "inventory": {"accounts": items, "missing": inventory["missing"]},
        "results": {"ResultWriterDetails": {"Bucket": BUCKET, "Key": "runs/1/manifest.json"}},
    });
    let event =
        json!({"keyrot": "summary", "bucket": BUCKET, "execution": execution, "run": state});
    let report = runtime.invoke(&mut function, "summary", &event);
    assert_eq!(report.kind, "response", "{report:?}\n{}", function.output());
    let key = format!("summaries/{execution}.json");
    assert_eq!(
        report.json(),
        json!({"key": key, "total": 5, "failed": 2, "rotated": 6})
    );
    let written = rt.block_on(objects.get(&key)).unwrap().unwrap();
    let summary: Value = serde_json::from_slice(&written).unwrap();
    // Every account is named once, with its outcome: the members', the denying one's with
    // its error, and the missing one.
    let named: BTreeMap<&str, &Value> = summary["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["account"].as_str().unwrap(), a))
        .collect();
    let mut every: Vec<&str> = expected.iter().map(String::as_str).collect();
    every.push(MISSING);
    assert_eq!(
        named.keys().copied().collect::<Vec<_>>(),
        every,
        "{summary}"
    );
    assert_eq!(summary["accounts"].as_array().unwrap().len(), every.len());
    for account in &members {
        let line = named[account.as_str()];
        assert_eq!(
            (&line["outcome"], &line["users"], &line["rotated"]),
            (&json!("ok"), &json!(2), &json!(2)),
            "{summary}"
        );
    }
    let line = named[denying.as_str()];
    assert_eq!(line["outcome"], "unreachable", "{summary}");
    let error = line["error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!(
            "keyrot.NotRetryable.AccessDenied: could not list the managed users of account {denying}"
        )),
        "{error}"
    );
    assert_eq!(named[MISSING]["outcome"], "missing", "{summary}");
    assert_eq!(summary["execution"], execution);

    // An account added to the OU between runs is in the next run's inventory.
    let added = rt.block_on(async {
        let added = moto.create_account("lambda-added", &ou).await.unwrap();
        moto.create_member_role(&added, MEMBER_ROLE).await.unwrap();
        added
    });
    let report = runtime.invoke(
        &mut function,
        "inventory-2",
        &json!({"keyrot": "inventory"}),
    );
    let listed: Vec<Value> = report.json()["accounts"].as_array().unwrap().clone();
    assert!(
        listed.contains(&json!({"account": added.as_str()})),
        "{listed:?}"
    );
    assert_eq!(listed.len(), items.len() + 1, "{listed:?}");

    // A request the worker does not know fails as not retryable.
    let report = runtime.invoke(
        &mut function,
        "bad",
        &json!({"keyrot": "account", "account": "12"}),
    );
    assert_eq!(report.json()["errorType"], "keyrot.NotRetryable.BadEvent");
}
