//! Moto-only scenarios: the SDK's retries under throttling, secrets keyrot did not write, and
//! lost replies through a fault proxy.

use super::*;

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
    assert!(matches!(err, IamError::Throttled(_)), "{err:?}");
    assert_eq!(proxy.faulted(), 2);

    let store = AwsSecretStore::new(aws_sdk_secretsmanager::Client::new(&config));
    let err = store
        .load(&UserName::new("anyone").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Throttled(_)), "{err:?}");
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
        // A transient failure, which the Lambda edge classifies as retryable.
        assert!(
            matches!(err, IamError::Other(_) | IamError::Throttled(_)),
            "{fault}: {err:?}"
        );
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
    w.store
        .promote(&user, &a.access_key_id, None)
        .await
        .unwrap();
    assert_eq!(w.current(&user).await, Some(a.clone()));

    w.store.put_pending(&user, &b, now).await.unwrap();
    proxy.inject_next(OP, Fault::DropAfter);
    let seen = Some(a.access_key_id.clone());
    w.store
        .promote(&user, &b.access_key_id, seen)
        .await
        .unwrap();
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
    let adopted = Marks {
        adopted: Some(at),
        ..Marks::default()
    };
    w.store.record_marks(&user, &key, &adopted).await.unwrap();
    let tagged = proxy.forwarded("secretsmanager:TagResource");
    proxy.inject_next("secretsmanager:TagResource", Fault::FailAfter);
    let both = Marks {
        superseded: Some(at),
        ..adopted
    };
    w.store.record_marks(&user, &key, &both).await.unwrap();
    assert_eq!(proxy.forwarded("secretsmanager:TagResource"), tagged + 2);
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
