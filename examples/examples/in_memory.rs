//! The `embed` tool's logic on keyrot-core's in-memory fakes: no AWS, no network, no wall
//! clock. A user with a 100-day-old key goes through a whole rotation cycle in simulated days:
//! the key is adopted and replaced, the new key is published, a consumer moves to it, and the
//! old key is kept through the grace period, deactivated once idle and deleted after the
//! recovery window.
//!
//! ```sh
//! cargo run -p examples --example in_memory
//! KEYROT_GRACE_PERIOD=3d cargo run -p examples --example in_memory   # any KEYROT_* setting
//! ```
#![allow(clippy::print_stdout)] // a demonstration: stdout is its output

use std::error::Error;
use std::time::Duration;

use examples::{Mode, publish_check, rotate_once};
use keyrot_config::Sources;
use keyrot_core::fake::{FakeAws, FaultRates};
use keyrot_core::settings::PolicySettings;
use keyrot_core::{KeyStatus, Timestamp, UserName};

const DAY: Duration = Duration::from_secs(24 * 3600);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    // A fixed start: the simulated clock is the only clock here.
    let start: Timestamp = "2026-01-01T00:00:00Z".parse()?;
    let aws = FakeAws::new(start, 7, FaultRates::none());
    let user = UserName::new("ci-deployer")?;
    aws.iam.add_managed_user(user.clone());
    let legacy = aws
        .iam
        .add_key(&user, KeyStatus::Active, start - 100 * DAY)?;
    let policy = Sources::new()
        .env(|name| std::env::var(name).ok())
        .policy(&PolicySettings::default())?;
    let ports = aws.ports();
    let users = [user.clone()];
    println!("{}\n", keyrot_core::settings::Summary(&policy));

    let plan = rotate_once(ports.clone(), policy.clone(), &users, Mode::DryRun).await?;
    println!("day 0, dry run:\n{plan}\n");

    // One pass a day (the schedule), until the key that predates keyrot is gone.
    let mut day = 0;
    while aws.iam.key(&legacy.key.id).is_some() {
        if day > 400 {
            return Err("the old key was not deleted within 400 simulated days".into());
        }
        // The consumer signs its requests with whatever key is published (the old one until
        // the first rotation); IAM records the use, which keeps a superseded key "in use".
        let in_use = aws
            .store
            .current_key(&user)
            .unwrap_or_else(|| legacy.key.id.clone());
        aws.iam.record_use(&in_use, aws.clock.now());

        let report = rotate_once(ports.clone(), policy.clone(), &users, Mode::Apply).await?;
        if report.users.iter().any(|u| !u.steps.is_empty()) {
            println!("day {day}:\n{report}");
            for notice in aws.notifier.take() {
                println!("  notice: {notice}");
            }
            for key in aws.iam.keys(&user) {
                println!("  IAM: {} {}", key.id, key.status);
            }
            let health = publish_check(&*ports.store, &*ports.verifier, &user).await?;
            println!("  check: {health}\n");
        }
        aws.clock.advance(DAY);
        day += 1;
    }

    let keys = aws.iam.keys(&user);
    let current = aws.store.current_key(&user);
    match keys.as_slice() {
        [only] if Some(&only.id) == current.as_ref() => {
            println!(
                "done: {} is the user's only key, and it is published",
                only.id
            );
            Ok(())
        }
        _ => Err(
            format!("expected only the published key {current:?} in IAM, found {keys:?}").into(),
        ),
    }
}
