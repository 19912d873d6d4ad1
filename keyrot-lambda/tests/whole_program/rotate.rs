//! `keyrot-rotate` as Lambda runs it.

use super::*;

#[test]
fn keyrot_rotate_rotates_a_tagged_user_in_moto_and_returns_the_report() {
    let moto = moto();
    let rt = tokio();
    let config = rt.block_on(moto.admin_config());
    let iam = aws_sdk_iam::Client::new(&config);
    let tag = "keyrot:managed:lambda-rotate";
    let (fresh, legacy, other) = ("lambda-rot-fresh", "lambda-rot-legacy", "lambda-rot-other");
    let legacy_key = rt.block_on(async {
        for (user, tags) in [
            (fresh, &[(tag, "true")][..]),
            (legacy, &[(tag, "true")]),
            (other, &[]),
        ] {
            moto.create_user(user, tags).await.unwrap();
        }
        iam.create_access_key()
            .user_name(other)
            .send()
            .await
            .unwrap();
        let key = iam
            .create_access_key()
            .user_name(legacy)
            .send()
            .await
            .unwrap();
        key.access_key().unwrap().access_key_id().to_owned()
    });
    let prefix = "keyrot-lambda-test/rotate/";

    let runtime = RuntimeApi::start();
    let mut env = aws_env(moto);
    env.extend([
        ("KEYROT_SECRET_PREFIX", prefix.to_owned()),
        ("KEYROT_MANAGED_TAG", format!("{tag}=true")),
        ("KEYROT_METRICS_NAMESPACE", "keyrot-test".to_owned()),
    ]);
    let mut function = Function::start(env!("CARGO_BIN_EXE_keyrot-rotate"), &runtime, &env);
    let scheduled = event(SCHEDULED, &[("{{TIME}}", "2025-06-01T12:00:00Z")], |_| {});
    let report = runtime.invoke(&mut function, "rotate-1", &scheduled);

    assert_eq!(report.kind, "response", "{report:?}\n{}", function.output());
    let out = report.json();
    assert_eq!(out["now"], "2025-06-01T12:00:00Z");
    assert!(out["deadline"].is_string(), "{out}");
    assert_eq!(out["counts"]["users"], 2, "{out}");
    assert_eq!(out["counts"]["rotated"], 1, "{out}");
    let users = out["users"].as_array().unwrap();
    assert_eq!(users[0]["user"], fresh);
    assert_eq!(users[0]["status"], "waiting");
    let steps: Vec<&str> = users[0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(steps.iter().any(|s| s.starts_with("publish")), "{steps:?}");
    assert_eq!(users[1]["user"], legacy);
    assert!(
        users[1]["steps"][0].as_str().unwrap().starts_with("adopt"),
        "{out}"
    );

    // What the report says is what moto holds: the fresh user's one key is the stored current
    // one; the legacy key is untouched; the untagged user was not touched at all.
    let store =
        AwsSecretStore::new(aws_sdk_secretsmanager::Client::new(&config)).with_prefix(prefix);
    rt.block_on(async {
        let keys = iam
            .list_access_keys()
            .user_name(fresh)
            .send()
            .await
            .unwrap();
        let ids: Vec<&str> = keys
            .access_key_metadata()
            .iter()
            .filter_map(|k| k.access_key_id())
            .collect();
        let current = store
            .current(&UserName::new(fresh).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ids, [current.access_key_id.as_str()]);
        let keys = iam
            .list_access_keys()
            .user_name(legacy)
            .send()
            .await
            .unwrap();
        assert_eq!(
            keys.access_key_metadata()[0].access_key_id(),
            Some(legacy_key.as_str())
        );
        let keys = iam
            .list_access_keys()
            .user_name(other)
            .send()
            .await
            .unwrap();
        assert_eq!(keys.access_key_metadata().len(), 1);
        assert!(
            store
                .load(&UserName::new(other).unwrap())
                .await
                .unwrap()
                .versions
                .is_empty()
        );
    });

    let line = function.wait_line(|l| l.contains("\"RotationsSucceeded\""));
    let metrics: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(metrics["RotationsSucceeded"], 1);
    assert_eq!(metrics["RotationFailures"], 0);
    assert_eq!(metrics["Service"], "keyrot-rotate");
    assert_eq!(
        metrics["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "keyrot-test"
    );
    assert_eq!(
        metrics["_aws"]["Timestamp"],
        "2025-06-01T12:00:00Z"
            .parse::<Timestamp>()
            .unwrap()
            .as_millisecond()
    );

    // The second run finds nothing to do, in the same process.
    let report = runtime.invoke(&mut function, "rotate-2", &scheduled);
    assert_eq!(report.json()["counts"]["rotated"], 0, "{}", report.body);
}

#[test]
fn keyrot_rotate_fails_an_invocation_it_cannot_start_as_not_retryable() {
    let moto = moto();
    let runtime = RuntimeApi::start();
    let mut env = aws_env(moto);
    env.retain(|(name, _)| !name.starts_with("AWS_SECRET") && !name.starts_with("AWS_ACCESS"));
    // A key moto does not know: IAM refuses the listing.
    env.push(("AWS_SECRET_ACCESS_KEY", "not-the-secret".to_owned()));
    env.push(("AWS_ACCESS_KEY_ID", "AKIAUNKNOWN000000000".to_owned()));
    env.push((
        "KEYROT_MANAGED_TAG",
        "keyrot:managed:lambda-denied=true".to_owned(),
    ));
    let mut function = Function::start(env!("CARGO_BIN_EXE_keyrot-rotate"), &runtime, &env);
    let scheduled = event(SCHEDULED, &[("{{TIME}}", "2025-06-01T12:00:00Z")], |_| {});
    let report = runtime.invoke(&mut function, "denied-1", &scheduled);
    assert_eq!(report.kind, "error", "{report:?}");
    let body = report.json();
    assert_eq!(
        body["errorType"], "keyrot.NotRetryable.AccessDenied",
        "{body}"
    );
    assert!(
        body["errorMessage"]
            .as_str()
            .unwrap()
            .starts_with("could not list the managed users"),
        "{body}"
    );
    assert!(function.metric_lines().is_empty());
}
