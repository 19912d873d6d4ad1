//! The scenarios both backends run: the secret store, IAM and the verifier, and rotation end to
//! end through the ports.

use super::*;

// ---- the secret store ----

pub(crate) async fn store_records_the_last_notice(w: World) {
    let user = w.managed_user("notices").await;
    assert_eq!(w.store.load(&user).await.unwrap().last_notice, None);
    // Recorded before the user has a secret (blocked before adoption): the secret is created.
    let first = SentNotice {
        fingerprint: "0123456789abcdef".to_owned(),
        at: w.clock.now(),
    };
    w.store.record_notice(&user, &first).await.unwrap();
    assert_eq!(w.store.load(&user).await.unwrap().last_notice, Some(first));
    // A later one replaces it; a retry writes the same again.
    let later = SentNotice {
        fingerprint: "fedcba9876543210".to_owned(),
        at: w.clock.now() + DAY,
    };
    w.store.record_notice(&user, &later).await.unwrap();
    w.store.record_notice(&user, &later).await.unwrap();
    let stored = w.store.load(&user).await.unwrap();
    assert_eq!(stored.last_notice, Some(later));
    assert!(stored.versions.is_empty() && stored.current().is_none());
}

pub(crate) async fn store_pending_never_becomes_current(w: World) {
    let user = w.managed_user("u").await;
    let key = w.legacy_key(&user).await;
    let created = w.clock.now();

    assert_eq!(w.store.load(&user).await.unwrap(), Default::default());
    w.store.put_pending(&user, &key, created).await.unwrap();
    let stored = w.store.load(&user).await.unwrap();
    assert_eq!(stored.versions.len(), 1, "{stored:?}");
    assert_eq!(stored.pending(), Some(&key.access_key_id));
    assert_eq!(
        stored.current(),
        None,
        "the first version must not become current on its own"
    );
    assert_eq!(w.current(&user).await, None);

    // A retry with the same contents is idempotent.
    w.store.put_pending(&user, &key, created).await.unwrap();
    assert_eq!(w.store.load(&user).await.unwrap(), stored);

    // Different contents under the same key's version are refused, and change nothing.
    let other = creds(&key.access_key_id, "not-the-same-secret");
    let result = w.store.put_pending(&user, &other, created).await;
    let kept = w
        .store
        .credentials(&user, &key.access_key_id)
        .await
        .unwrap()
        .unwrap();
    match w.backend {
        Backend::Fake => {
            assert!(matches!(result, Err(StoreError::Conflict)), "{result:?}");
            assert_eq!(kept, key);
        }
        // moto differs from AWS: a reused ClientRequestToken with another value overwrites
        // the version instead of failing with ResourceExistsException.
        Backend::Moto => {
            assert!(result.is_ok(), "{result:?}");
            assert_eq!(kept, other);
        }
    }
}

pub(crate) async fn store_promote_moves_current_and_previous(w: World) {
    let user = w.managed_user("u").await;
    let a = w.legacy_key(&user).await;
    let b = w.legacy_key(&user).await;
    let now = w.clock.now();

    let missing = AccessKeyId::new("AKIAMISSINGMISSING00").unwrap();
    let err = w.store.promote(&user, &missing, None).await.unwrap_err();
    assert!(matches!(err, StoreError::NoSuchVersion), "{err:?}");

    w.store.put_pending(&user, &a, now).await.unwrap();
    w.store
        .promote(&user, &a.access_key_id, None)
        .await
        .unwrap();
    assert_eq!(w.current(&user).await, Some(a.clone()));
    // Promoting the current version again changes nothing.
    let seen = Some(a.access_key_id.clone());
    w.store
        .promote(&user, &a.access_key_id, seen)
        .await
        .unwrap();
    assert_eq!(w.current(&user).await, Some(a.clone()));

    w.store.put_pending(&user, &b, now).await.unwrap();
    let stored = w.store.load(&user).await.unwrap();
    assert_eq!(stored.current(), Some(&a.access_key_id));
    assert_eq!(stored.pending(), Some(&b.access_key_id));
    assert_eq!(
        w.current(&user).await,
        Some(a.clone()),
        "pending is not served"
    );

    let seen = Some(a.access_key_id.clone());
    w.store
        .promote(&user, &b.access_key_id, seen)
        .await
        .unwrap();
    let stored = w.store.load(&user).await.unwrap();
    assert_eq!(stored.current(), Some(&b.access_key_id));
    let previous: Vec<_> = stored
        .versions
        .iter()
        .filter(|v| v.stages.previous)
        .collect();
    assert_eq!(previous.len(), 1);
    assert_eq!(previous[0].key_id, a.access_key_id);
    assert_eq!(w.current(&user).await, Some(b.clone()));

    // Both versions stay readable by key.
    assert_eq!(
        w.store.credentials(&user, &a.access_key_id).await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        w.store.credentials(&user, &b.access_key_id).await.unwrap(),
        Some(b.clone())
    );
    assert_eq!(w.store.credentials(&user, &missing).await.unwrap(), None);

    // Back again (a rollback), told that nothing was current: a stale hint costs a look, and
    // the label still moves from where it is.
    w.store
        .promote(&user, &a.access_key_id, None)
        .await
        .unwrap();
    assert_eq!(w.current(&user).await, Some(a.clone()));
    let stored = w.store.load(&user).await.unwrap();
    assert_eq!(stored.current(), Some(&a.access_key_id));
    let previous: Vec<_> = stored
        .versions
        .iter()
        .filter(|v| v.stages.previous)
        .collect();
    assert_eq!(previous.len(), 1, "{stored:?}");
    assert_eq!(previous[0].key_id, b.access_key_id);
    // And told of a key that was never current.
    let seen = Some(missing.clone());
    w.store
        .promote(&user, &b.access_key_id, seen)
        .await
        .unwrap();
    assert_eq!(w.current(&user).await, Some(b));
}

pub(crate) async fn store_load_for_sees_unlabelled_keys_in_iam(w: World) {
    let user = w.managed_user("u").await;
    let a = w.legacy_key(&user).await;
    let b = w.legacy_key(&user).await;
    let now = w.clock.now();
    // Staging b takes AWSPENDING from a: a's version keeps no label.
    w.store.put_pending(&user, &a, now).await.unwrap();
    w.store.put_pending(&user, &b, now).await.unwrap();
    let (a_id, b_id) = (a.access_key_id.clone(), b.access_key_id.clone());

    // IAM has both keys: a's version must be seen, or a would look like someone else's.
    let seen = w.store.load_for(&user, &[a_id.clone(), b_id.clone()]).await;
    let seen = seen.unwrap();
    assert!(seen.has_version(&a_id), "{seen:?}");
    assert_eq!(seen.pending(), Some(&b_id));
    // IAM has only b: a's version may be left out, b's may not.
    let seen = w.store.load_for(&user, std::slice::from_ref(&b_id)).await;
    let seen = seen.unwrap();
    assert!(seen.has_version(&b_id), "{seen:?}");
    // Nothing stored, nothing seen.
    let nobody = w.managed_user("nobody").await;
    let seen = w.store.load_for(&nobody, &[a_id]).await.unwrap();
    assert_eq!(seen, Default::default());
}

pub(crate) async fn store_marks_round_trip(w: World) {
    let user = w.managed_user("u").await;
    let a = AccessKeyId::new("AKIAAAAAAAAAAAAAAAAA").unwrap();
    let b = AccessKeyId::new("AKIABBBBBBBBBBBBBBBB").unwrap();
    let t1: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
    let t2: Timestamp = "2025-02-03T04:05:06.789Z".parse().unwrap();

    // Marking before anything is stored creates the user's secret, with no current key.
    let adopted = Marks {
        adopted: Some(t1),
        ..Marks::default()
    };
    w.store.record_marks(&user, &a, &adopted).await.unwrap();
    let stored = w.store.load(&user).await.unwrap();
    assert!(stored.versions.is_empty(), "{stored:?}");
    assert_eq!(stored.marks_of(&a), adopted);
    assert!(stored.knows(&a));
    assert_eq!(w.current(&user).await, None);

    // What is recorded for a key is replaced whole (the caller merges); other keys' marks
    // are their own. Times keep their fractions.
    let a_marks = Marks {
        adopted: Some(t2),
        superseded: Some(t2),
        deactivated: None,
    };
    let b_marks = Marks {
        deactivated: Some(t2),
        ..Marks::default()
    };
    w.store.record_marks(&user, &b, &b_marks).await.unwrap();
    w.store.record_marks(&user, &a, &a_marks).await.unwrap();
    let stored = w.store.load(&user).await.unwrap();
    assert_eq!(stored.marks_of(&a), a_marks);
    assert_eq!(stored.marks_of(&b), b_marks);

    w.store.clear_marks(&user, &a).await.unwrap();
    let stored = w.store.load(&user).await.unwrap();
    assert!(stored.marks_of(&a).is_empty());
    assert!(!stored.knows(&a));
    assert_eq!(stored.marks_of(&b).deactivated, Some(t2));

    // Clearing what is not there is fine.
    w.store.clear_marks(&user, &a).await.unwrap();
    w.store.clear_marks(&w.user("nobody"), &a).await.unwrap();
}

// ---- IAM ----

pub(crate) async fn iam_key_lifecycle(w: World) {
    let user = w.managed_user("u").await;
    let first = w.iam.create_key(&user).await.unwrap();
    let second = w.iam.create_key(&user).await.unwrap();
    assert_ne!(first.key.id, second.key.id);
    assert_eq!(first.key.status, KeyStatus::Active);
    let listed = w.keys(&user).await;
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|k| k.status == KeyStatus::Active));
    assert!(listed.contains(&first.key) || listed.iter().any(|k| k.id == first.key.id));

    let err = w.iam.create_key(&user).await.unwrap_err();
    assert!(matches!(err, IamError::LimitExceeded), "{err:?}");
    assert_eq!(
        w.keys(&user).await.len(),
        2,
        "a refused third key leaves nothing behind"
    );

    assert_eq!(w.iam.last_used(&first.key.id).await, LastUsed::Never);

    w.iam
        .set_status(&user, &first.key.id, KeyStatus::Inactive)
        .await
        .unwrap();
    assert_eq!(
        w.key(&user, &first.key.id).await.unwrap().status,
        KeyStatus::Inactive
    );
    w.iam
        .set_status(&user, &first.key.id, KeyStatus::Active)
        .await
        .unwrap();
    assert_eq!(
        w.key(&user, &first.key.id).await.unwrap().status,
        KeyStatus::Active
    );

    w.iam.delete_key(&user, &first.key.id).await.unwrap();
    assert_eq!(w.key(&user, &first.key.id).await, None);
    let err = w.iam.delete_key(&user, &first.key.id).await.unwrap_err();
    assert!(matches!(err, IamError::NoSuchEntity), "{err:?}");

    let ghost = w.user("ghost");
    let err = w.iam.create_key(&ghost).await.unwrap_err();
    assert!(matches!(err, IamError::NoSuchEntity), "{err:?}");
    let err = w.iam.list_keys(&ghost).await.unwrap_err();
    assert!(matches!(err, IamError::NoSuchEntity), "{err:?}");
}

pub(crate) async fn iam_selects_tagged_users(w: World) {
    let a = w.managed_user("a").await;
    let b = w.managed_user("b").await;
    let _plain = w.unmanaged_user("plain").await;
    let other_value = w.user("false");
    w.admin
        .add_user(&other_value, Some((&w.tag_key(), "false")))
        .await;

    let managed = w.iam.managed_users(&w.selection()).await.unwrap();
    assert_eq!(managed, vec![a.clone(), b.clone()]);

    let listed = Selection::Listed(BTreeSet::from([b.clone()]));
    assert_eq!(w.iam.managed_users(&listed).await.unwrap(), vec![b]);
}

pub(crate) async fn verifier_checks_the_key_and_its_owner(w: World) {
    let alice = w.managed_user("alice").await;
    let bob = w.managed_user("bob").await;
    let key = w.iam.create_key(&alice).await.unwrap().credentials();
    // New keys take a moment to propagate in AWS (and in the fake).
    w.clock.advance(Duration::from_secs(60));
    assert!(w.authenticates(&alice, &key).await);

    // The key works, but it is not Bob's.
    let err = w.verifier.authenticates(&bob, &key).await.unwrap_err();
    match err {
        VerifyError::WrongIdentity { actual } => {
            assert!(actual.ends_with(&format!("user/{alice}")), "{actual}");
        }
        other => panic!("{other:?}"),
    }

    // A wrong secret does not authenticate.
    let forged = creds(
        &key.access_key_id,
        "forged-forged-forged-forged-forged-forged",
    );
    assert!(!w.authenticates(&alice, &forged).await);

    w.iam
        .set_status(&alice, &key.access_key_id, KeyStatus::Inactive)
        .await
        .unwrap();
    match w.backend {
        Backend::Fake => assert!(!w.authenticates(&alice, &key).await),
        // moto differs from AWS: it accepts requests signed with an Inactive key.
        Backend::Moto => assert!(w.authenticates(&alice, &key).await),
    }

    w.iam.delete_key(&alice, &key.access_key_id).await.unwrap();
    assert!(!w.authenticates(&alice, &key).await);
}

// ---- rotation, end to end through the ports ----

pub(crate) async fn rotation_lifecycle_for_several_users(w: World) {
    let users = [
        w.managed_user("a").await,
        w.managed_user("b").await,
        w.managed_user("c").await,
    ];
    let exempt = w.managed_user("exempt").await;
    let plain = w.unmanaged_user("plain").await;
    let mut legacy = Vec::new();
    for user in &users {
        legacy.push(w.legacy_key(user).await);
    }
    let exempt_key = w.legacy_key(&exempt).await;
    let plain_key = w.legacy_key(&plain).await;
    let untouched = [
        (exempt.clone(), w.keys(&exempt).await),
        (plain.clone(), w.keys(&plain).await),
    ];
    let rotator = w.rotator([exempt.clone()]);

    // Run 1: every managed user gets a new, verified, published key; the old one stays active.
    let report = w.run_forced(&rotator).await;
    assert_eq!(report.users.len(), 3, "{report}");
    assert_eq!(report.rotations(), 3, "{report}");
    let mut first = Vec::new();
    for (user, old) in users.iter().zip(&legacy) {
        let current = w.current(user).await.expect("a published key");
        assert_ne!(current.access_key_id, old.access_key_id);
        assert!(w.authenticates(user, &current).await);
        let old_key = w.key(user, &old.access_key_id).await.unwrap();
        assert_eq!(
            old_key.status,
            KeyStatus::Active,
            "still in its grace period"
        );
        first.push(current);
    }

    // Within grace nothing changes.
    w.clock.advance(3 * DAY);
    let report = w.run(&rotator).await;
    assert_eq!(report.rotations(), 0, "{report}");
    for (user, old) in users.iter().zip(&legacy) {
        assert_eq!(
            w.key(user, &old.access_key_id).await.unwrap().status,
            KeyStatus::Active
        );
    }

    // Past grace (the old keys are idle): deactivated, not deleted.
    w.clock.advance(5 * DAY);
    w.run(&rotator).await;
    for (user, old) in users.iter().zip(&legacy) {
        assert_eq!(
            w.key(user, &old.access_key_id).await.unwrap().status,
            KeyStatus::Inactive
        );
        match w.backend {
            Backend::Fake => assert!(!w.authenticates(user, old).await),
            // moto differs from AWS: an Inactive key still signs requests.
            Backend::Moto => assert!(w.authenticates(user, old).await),
        }
    }

    // Past the recovery window: deleted, and refused everywhere.
    w.clock.advance(8 * DAY);
    w.run(&rotator).await;
    for ((user, old), current) in users.iter().zip(&legacy).zip(&first) {
        assert_eq!(w.keys(user).await.len(), 1, "{user}");
        assert!(!w.authenticates(user, old).await);
        assert_eq!(w.current(user).await.as_ref(), Some(current));
    }

    // The next rotation.
    w.clock.advance(15 * DAY);
    let report = w.run_forced(&rotator).await;
    assert_eq!(report.rotations(), 3, "{report}");
    for (user, previous) in users.iter().zip(&first) {
        let current = w.current(user).await.unwrap();
        assert_ne!(&current, previous);
        let stored = w.store.load(user).await.unwrap();
        assert!(
            stored
                .versions
                .iter()
                .any(|v| v.stages.previous && v.key_id == previous.access_key_id)
        );
    }

    // Keys of unmanaged and exempt users were never touched.
    for (user, keys) in &untouched {
        assert_eq!(&w.keys(user).await, keys, "{user}");
        assert_eq!(w.current(user).await, None);
    }
    assert!(w.authenticates(&exempt, &exempt_key).await);
    assert!(w.authenticates(&plain, &plain_key).await);
}

pub(crate) async fn orphan_from_a_crash_is_cleaned_next_run(w: World) {
    let user = w.managed_user("u").await;
    w.legacy_key(&user).await;
    let rotator = w.rotator([]);
    w.run_forced(&rotator).await;
    let published = w.current(&user).await.unwrap();

    // Past grace and recovery the legacy key is gone; then a run "crashes" right after
    // CreateAccessKey, before storing the secret: the key exists, nobody knows its secret.
    for _ in 0..3 {
        w.clock.advance(8 * DAY);
        w.run(&rotator).await;
    }
    assert_eq!(w.keys(&user).await.len(), 1);
    // As the driver does it: the intent first, then CreateAccessKey. moto stamps keys with the
    // real time while the rotator's clock runs days ahead, so the intent takes IAM's time, as
    // a rotator whose clock agrees with IAM's would.
    let existing = w.keys(&user).await.into_iter().map(|k| k.id).collect();
    let orphan = w.iam.create_key(&user).await.unwrap();
    let intent = Intent {
        at: orphan.key.created,
        existing,
        ..Default::default()
    };
    w.store.record_intent(&user, &intent).await.unwrap();
    assert_eq!(w.keys(&user).await.len(), 2);

    let report = w.run(&rotator).await;
    assert!(!outcome(&report, &user).is_failure(), "{report}");
    assert_eq!(
        w.key(&user, &orphan.key.id).await,
        None,
        "the orphan survived: {report}"
    );
    assert_eq!(w.current(&user).await, Some(published));
}

pub(crate) async fn someone_elses_key_is_never_deleted(w: World) {
    let user = w.managed_user("u").await;
    w.legacy_key(&user).await;
    let rotator = w.rotator([]);
    w.run_forced(&rotator).await;
    for _ in 0..3 {
        w.clock.advance(8 * DAY);
        w.run(&rotator).await;
    }
    // An operator makes a key of their own: keyrot recorded no intent for it.
    let theirs = w.iam.create_key(&user).await.unwrap();
    for _ in 0..2 {
        let report = w.run_forced(&rotator).await;
        assert!(
            matches!(
                outcome(&report, &user),
                Outcome::Blocked(Blocked::UnknownKeyMaybeInUse(k)) if k == &theirs.key.id
            ),
            "{report}"
        );
        w.clock.advance(8 * DAY);
    }
    let still = w.key(&user, &theirs.key.id).await;
    assert_eq!(still.map(|k| k.status), Some(KeyStatus::Active));
}

pub(crate) async fn user_with_two_keys_is_blocked_and_untouched(w: World) {
    let user = w.managed_user("u").await;
    w.legacy_key(&user).await;
    w.legacy_key(&user).await;
    let before = w.keys(&user).await;
    let rotator = w.rotator([]);

    let report = w.run_forced(&rotator).await;
    assert!(
        matches!(
            outcome(&report, &user),
            Outcome::Blocked(Blocked::TwoKeysInService)
        ),
        "{report}"
    );
    assert_eq!(w.keys(&user).await, before);
    assert_eq!(w.current(&user).await, None);
}

pub(crate) async fn user_deleted_in_the_middle_of_a_run(w: World) {
    let doomed = w.managed_user("doomed").await;
    let fine = w.managed_user("fine").await;
    w.legacy_key(&doomed).await;
    w.legacy_key(&fine).await;
    let iam = Arc::new(DeletesUser {
        inner: w.iam.clone(),
        admin: w.admin.clone(),
        victim: doomed.clone(),
        done: AtomicBool::new(false),
    });
    let policy = Policy::builder().selection(w.selection()).build().unwrap();
    let rotator = w.rotator_with(policy, iam);

    let report = w.run_forced(&rotator).await;
    assert_eq!(report.users.len(), 2, "{report}");
    assert!(outcome(&report, &doomed).is_failure(), "{report}");
    assert!(
        w.current(&fine).await.is_some(),
        "the others carry on: {report}"
    );

    // The next run no longer sees the user.
    let report = w.run(&rotator).await;
    assert_eq!(report.users.len(), 1, "{report}");
}

/// IAM as seen while an administrator deletes `victim` right after keyrot listed the users.
struct DeletesUser {
    inner: Arc<dyn Iam>,
    admin: Arc<Admin>,
    victim: UserName,
    done: AtomicBool,
}

#[async_trait]
impl Iam for DeletesUser {
    async fn managed_users(&self, selection: &Selection) -> Result<Vec<UserName>, IamError> {
        let users = self.inner.managed_users(selection).await?;
        if users.contains(&self.victim) && !self.done.swap(true, Ordering::SeqCst) {
            self.admin.delete_user(&self.victim).await;
        }
        Ok(users)
    }
    async fn list_keys(&self, user: &UserName) -> Result<Vec<AccessKey>, IamError> {
        self.inner.list_keys(user).await
    }
    async fn create_key(&self, user: &UserName) -> Result<NewKey, IamError> {
        self.inner.create_key(user).await
    }
    async fn set_status(
        &self,
        user: &UserName,
        key: &AccessKeyId,
        status: KeyStatus,
    ) -> Result<(), IamError> {
        self.inner.set_status(user, key, status).await
    }
    async fn delete_key(&self, user: &UserName, key: &AccessKeyId) -> Result<(), IamError> {
        self.inner.delete_key(user, key).await
    }
    async fn last_used(&self, key: &AccessKeyId) -> LastUsed {
        self.inner.last_used(key).await
    }
}

pub(crate) async fn every_one_of_250_users_is_selected(w: World) {
    // moto's ListUsers never truncates, so against moto this proves the adapter reads every
    // user and every tag; paging itself is covered by the fakes' unit tests.
    let mut expected = Vec::new();
    for i in 0..250 {
        expected.push(w.managed_user(&format!("{i:03}")).await);
    }
    for i in 0..5 {
        w.unmanaged_user(&format!("plain-{i}")).await;
    }
    expected.sort();
    let managed = w.iam.managed_users(&w.selection()).await.unwrap();
    assert_eq!(managed, expected);
}
