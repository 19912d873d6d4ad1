//! Delivery against moto: a user with an SSM destination (eu-west-1) and a Secrets Manager
//! destination in another region (us-west-2). After a rotation both hold the new key, in the
//! JSON of keyrot's own secret; with the SSM write failing (injected by a `FaultProxy` in front
//! of moto), the old key stays active past its grace until a later run's write succeeds, and
//! the alert names SSM.
//!
//! IAM, STS and the lease are the in-memory fakes on a virtual clock (so that a grace period
//! passes in a test); keyrot's secret and the destinations are moto's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use keyrot_aws::moto::{Fault, FaultProxy, Moto, Rule};
use keyrot_aws::{AwsDelivery, AwsSecretStore, AwsSettings};
use keyrot_core::delivery::{Destination, parse_destinations};
use keyrot_core::fake::{FakeAws, FaultRates};
use keyrot_core::{
    AccessKeyId, KeyStatus, Notice, Outcome, Policy, Ports, Rotator, RunOptions, RunReport,
    Timestamp, UserName, Wait,
};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

async fn shared_moto() -> &'static Moto {
    tokio::task::spawn_blocking(Moto::shared)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"))
}

#[allow(clippy::disallowed_methods)] // the virtual clock starts at the real time
fn real_now() -> Timestamp {
    Timestamp::now()
}

struct World {
    moto: &'static Moto,
    aws: FakeAws,
    proxy: FaultProxy,
    rotator: Rotator,
    user: UserName,
    legacy: AccessKeyId,
    ssm: Destination,
    sm: Destination,
}

/// `name` with a 100-day-old key that keyrot adopts, and its two destinations; the
/// destinations are reached through a fault proxy, one attempt per call (no SDK retries, so
/// that an injected failure is one failed write).
async fn world(name: &str) -> World {
    let moto = shared_moto().await;
    let admin = moto.admin_config().await;
    let proxy = FaultProxy::start(moto.endpoint()).unwrap();
    let through_proxy = moto
        .admin_config_with(&AwsSettings {
            endpoint_url: Some(proxy.endpoint().to_owned()),
            max_attempts: Some(1),
            ..moto.settings()
        })
        .await;
    let aws = FakeAws::new(real_now(), 5, FaultRates::none());
    let user = UserName::new(name).unwrap();
    aws.iam.add_managed_user(user.clone());
    let legacy = aws
        .iam
        .add_key(&user, KeyStatus::Active, aws.clock.now() - 100 * DAY)
        .unwrap()
        .key
        .id;
    let text = format!(
        "ssm=ssm:eu-west-1:/keyrot-test/{name}@alias/aws/ssm sm=sm:us-west-2:consumers/{name}"
    );
    let [ssm, sm]: [Destination; 2] = parse_destinations(&text).unwrap().try_into().unwrap();
    let delivery = AwsDelivery::new(
        &through_proxy,
        BTreeMap::from([(user.clone(), vec![ssm.clone(), sm.clone()])]),
    );
    let store = AwsSecretStore::new(aws_sdk_secretsmanager::Client::new(&admin))
        .with_prefix("keyrot-test/delivery/");
    let ports = Ports {
        store: Arc::new(store),
        ..aws.ports()
    };
    let policy = Policy::builder()
        .rotation_period(30 * DAY)
        .grace(DAY)
        .max_grace(3 * DAY)
        .recovery_window(DAY)
        .quiet_period(6 * HOUR)
        .last_used_lag(Duration::ZERO)
        .schedule_interval(HOUR)
        .build()
        .unwrap();
    let rotator = Rotator::new(ports, policy).with_delivery(Arc::new(delivery));
    World {
        moto,
        aws,
        proxy,
        rotator,
        user,
        legacy,
        ssm,
        sm,
    }
}

impl World {
    async fn run(&self) -> RunReport {
        self.rotator.run(&RunOptions::default()).await.unwrap()
    }

    /// The key id in the JSON the destination holds, read with moto's admin credentials.
    async fn held(&self, destination: &Destination) -> Option<String> {
        let value = self.moto.held(&destination.target).await?;
        let json: serde_json::Value = serde_json::from_str(&value).unwrap();
        assert_eq!(json["UserName"], self.user.as_str(), "{json}");
        assert!(
            json["SecretAccessKey"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        );
        Some(json["AccessKeyId"].as_str().unwrap().to_owned())
    }

    fn current(&self, report: &RunReport) -> String {
        report.users[0]
            .steps
            .iter()
            .rev()
            .find_map(|s| match s {
                keyrot_core::Step::Publish(k) => Some(k.to_string()),
                _ => None,
            })
            .unwrap()
    }

    /// The operations the proxy saw, in order (never the bodies: they hold secrets).
    fn ops(&self) -> Vec<String> {
        self.proxy.calls().into_iter().map(|c| c.op).collect()
    }

    fn status(&self, key: &AccessKeyId) -> KeyStatus {
        self.aws.iam.key(key).unwrap().status
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_rotation_the_ssm_parameter_and_the_other_regions_secret_hold_the_new_key() {
    let w = world("delivered-ci").await;
    let report = w.run().await;
    let new = w.current(&report);
    assert_eq!(w.held(&w.ssm).await.as_deref(), Some(new.as_str()));
    assert_eq!(w.held(&w.sm).await.as_deref(), Some(new.as_str()));
    // Not in the default region: the destinations are where they were declared.
    assert_eq!(w.proxy.forwarded("ssm:PutParameter"), 1, "{:?}", w.ops());
    assert_eq!(
        w.proxy.forwarded("secretsmanager:CreateSecret"),
        1,
        "{:?}",
        w.ops()
    );
    // The old key goes after its grace, once both hold its successor.
    w.aws.clock.advance(DAY + HOUR);
    w.run().await;
    assert_eq!(w.status(&w.legacy), KeyStatus::Inactive);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_ssm_write_failing_the_old_key_stays_past_grace_until_a_later_run_writes_it() {
    let w = world("undelivered-ci").await;
    w.proxy
        .inject(Rule::first_of("ssm:PutParameter", 1000, Fault::FailBefore));
    let report = w.run().await;
    let new = w.current(&report);
    assert_eq!(w.held(&w.sm).await.as_deref(), Some(new.as_str()));
    assert_eq!(w.held(&w.ssm).await, None);
    let notices = w.aws.notifier.take();
    let alert = notices
        .iter()
        .find(|n| matches!(n, Notice::Undelivered { .. }))
        .unwrap_or_else(|| panic!("{notices:?}"));
    assert!(
        alert.to_string().contains("ssm (SSM ssm:eu-west-1:"),
        "{alert}"
    );

    // Past the grace period: every run tries again, the old key stays active.
    for _ in 0..3 {
        w.aws.clock.advance(12 * HOUR);
        let report = w.run().await;
        assert!(
            matches!(
                report.users[0].outcome,
                Outcome::Waiting(Wait::AwaitingDelivery { .. })
                    | Outcome::Waiting(Wait::AwaitingGrace { .. })
            ),
            "{report}"
        );
    }
    assert_eq!(w.status(&w.legacy), KeyStatus::Active);
    let failed = w
        .proxy
        .calls()
        .iter()
        .filter(|c| c.op == "ssm:PutParameter" && c.fault.is_some())
        .count();
    assert_eq!(failed, 4, "one failed write a run: {:?}", w.ops());

    // The write succeeds on a later run: SSM holds the new key, and the old one goes.
    w.proxy.clear();
    w.aws.clock.advance(HOUR);
    w.run().await;
    assert_eq!(w.held(&w.ssm).await.as_deref(), Some(new.as_str()));
    assert_eq!(w.status(&w.legacy), KeyStatus::Inactive);
    assert!(
        w.aws
            .notifier
            .notices()
            .iter()
            .all(|n| !matches!(n, Notice::ForcedUndelivered { .. }))
    );
}
