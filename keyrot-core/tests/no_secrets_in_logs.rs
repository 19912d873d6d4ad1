//! Secret key material never appears in logs, errors, Debug output, reports or notices: every
//! line of TRACE-level tracing output from a whole lifecycle (with faults and a rollback) is
//! captured and searched for every secret IAM issued.

// A test: a panic is how it reports a failure, helpers included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::executor::block_on;
use keyrot_core::fake::{FakeAws, FaultKind, FaultRates, IamAction};
use keyrot_core::{KeyStatus, Policy, Rotator, RunOptions, Timestamp, UserName};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_full_rotation_logs_no_secret() {
    const MIN: Duration = Duration::from_secs(60);
    let start: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let aws = FakeAws::new(start, 42, FaultRates::none());
    let user = UserName::new("deployer").unwrap();
    aws.iam.add_managed_user(user.clone());
    let legacy = aws
        .iam
        .add_key(&user, KeyStatus::Active, start - 100 * 24 * 60 * MIN)
        .unwrap();
    let policy = Policy::builder()
        .rotation_period(30 * MIN)
        .grace(5 * MIN)
        .max_grace(10 * MIN)
        .quiet_period(5 * MIN)
        .last_used_lag(Duration::ZERO)
        .recovery_window(5 * MIN)
        .verify_timeout(2 * MIN)
        .schedule_interval(MIN)
        .build()
        .unwrap();
    let rotator = Rotator::new(aws.ports(), policy);

    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let mut printed = String::new();
    tracing::subscriber::with_default(subscriber, || {
        // Errors on the way: a lost response when storing, a failed verification.
        aws.plan.fail_at("store.put_pending", FaultKind::FailAfter);
        aws.plan
            .fail_at("verifier.authenticates", FaultKind::FailBefore);
        for _ in 0..90 {
            let report = block_on(rotator.run(&RunOptions::default())).unwrap();
            printed.push_str(&format!("{report}\n{report:?}\n"));
            aws.clock.advance(MIN);
        }
        let rollback = block_on(rotator.rollback(&user));
        printed.push_str(&format!("{rollback:?}\n"));
        let report = block_on(rotator.run(&RunOptions {
            dry_run: true,
            ..RunOptions::default()
        }))
        .unwrap();
        printed.push_str(&format!("{report}\n{report:?}\n"));
    });
    for notice in aws.notifier.notices() {
        printed.push_str(&format!("{notice}\n{notice:?}\n"));
    }

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let created: Vec<_> = aws
        .iam
        .history()
        .into_iter()
        .filter_map(|e| match e.action {
            IamAction::Created(id) => Some(id),
            _ => None,
        })
        .collect();
    assert!(
        created.len() >= 3,
        "the run must really rotate: {created:?}"
    );
    assert!(
        logs.contains("published"),
        "the capture must hold the rotation's logs"
    );
    let mut secrets = vec![legacy.secret.expose().to_owned()];
    for id in &created {
        // Deleted keys are gone from IAM, but the store still has their versions.
        if let Some(secret) = aws.iam.secret_of(id) {
            secrets.push(secret.expose().to_owned());
        } else if let Some(v) = aws.store.versions(&user).iter().find(|v| &v.key_id == id) {
            let creds = block_on(keyrot_core::SecretStore::credentials(
                &aws.store, &user, &v.key_id,
            ));
            if let Ok(Some(c)) = creds {
                secrets.push(c.secret_access_key.expose().to_owned());
            }
        }
    }
    assert!(secrets.len() >= 3, "secrets to look for: {}", secrets.len());
    for secret in &secrets {
        assert!(secret.len() >= 20);
        assert!(
            !logs.contains(secret.as_str()),
            "a secret leaked into the logs"
        );
        assert!(
            !printed.contains(secret.as_str()),
            "a secret leaked into reports or notices"
        );
        // Nor a recognisable piece of one.
        assert!(
            !logs.contains(&secret[..16]),
            "part of a secret leaked into the logs"
        );
    }
}
