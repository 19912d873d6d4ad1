//! The seeded simulation: many simulated days over many seeds, against fakes as hostile as AWS,
//! with consumers that fetch the current key and keep using it. Every invariant of DESIGN.md is
//! checked after every call keyrot makes; a failure names the seed that reproduces it.
//!
//! What makes it hostile, all on by default:
//! - faults at every call: fail before the effect, fail after it (the reply is lost, and the
//!   simulated SDK retries every call but CreateAccessKey, as keyrot's adapters do), crashes
//!   before and after the effect, throttling, failed last-used lookups;
//! - IAM's propagation both ways: a new or re-activated key fails to authenticate for up to two
//!   minutes, a deactivated or deleted one goes on authenticating as long;
//! - IAM's last-used lag: a use shows in `GetAccessKeyLastUsed` up to four hours late;
//! - two rotator processes started together (sharing the lease table), and duplicate runs;
//! - users with no key, operators who make keys of their own at random times (and a job that
//!   uses them), administrators who deactivate every key of a user during an "incident" and
//!   re-activate them later, and people who roll a user back at random times.
//!
//! `KEYROT_SIM_SEEDS` (default 500) and `KEYROT_SIM_DAYS` (default 200) scale the run;
//! `KEYROT_SIM_SEED=N` runs one seed; `KEYROT_SIM_TRACE=1` prints every run's report.

// A test: a panic is how it reports a failure, helpers included.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// It prints its totals, and a trace on request.
#![allow(clippy::print_stdout)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures::executor::block_on;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use keyrot_core::driver::RollbackError;
use keyrot_core::fake::{FakeAws, FaultKind, FaultRates, IamAction, SdkRetries, op};
use keyrot_core::survey::CredentialReport;
use keyrot_core::{
    AccessKey, AccessKeyId, Blocked, Claim, Credentials, Iam, IamError, Intent, KeyStatus,
    LastUsed, Lease, LeaseError, LeaseToken, Marks, NewKey, Outcome, Policy, Ports, Rotator,
    RunOptions, RunReport, SecretStore, Selection, SentNotice, Step, StoreError, StoredUser,
    Timestamp, UserName, UserReport,
};

mod checked;
mod delivery;
mod notices;
mod sim;
mod totals;
mod world;

use checked::*;
use notices::*;
use sim::*;
use totals::*;
use world::*;

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// The worst last-used lag the fake IAM shows, and the lag the policy assumes.
const LAST_USED_LAG: Duration = Duration::from_secs(4 * 3600);

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}"))
        })
        .unwrap_or(default)
}

/// Runs `seeds` for `days` each, spread over the cores, with `setup` applied to every sim.
fn run_seeds(seeds: &[u64], days: u64, setup: fn(&mut Sim)) -> Vec<(u64, Result<Totals, String>)> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                scope.spawn(move || {
                    seeds
                        .iter()
                        .skip(w)
                        .step_by(workers)
                        .map(|&seed| {
                            let mut sim = Sim::new(seed);
                            setup(&mut sim);
                            (seed, sim.run(days))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

#[test]
fn simulation_keeps_every_invariant() {
    let days = env("KEYROT_SIM_DAYS", 200);
    let seeds: Vec<u64> = match std::env::var("KEYROT_SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("KEYROT_SIM_SEED must be a number")],
        Err(_) => (0..env("KEYROT_SIM_SEEDS", 500)).collect(),
    };
    let mut totals = Totals::default();
    let mut failures: Vec<(u64, String)> = Vec::new();
    for (seed, result) in run_seeds(&seeds, days, |_| {}) {
        match result {
            Ok(t) => totals.add(&t),
            Err(violation) => failures.push((seed, violation)),
        }
    }
    failures.sort();
    if let Some((seed, violation)) = failures.first() {
        panic!(
            "invariant broken with {} of {} seeds; first, seed {seed}: {violation}\n\
             reproduce with: KEYROT_SIM_SEED={seed} KEYROT_SIM_DAYS={days} \
             cargo test -p keyrot-core --test simulation",
            failures.len(),
            seeds.len()
        );
    }
    println!("{} seeds x {days} days:\n{totals}", seeds.len());
    // The simulation must really exercise the lifecycle and every hostile behaviour.
    let n = seeds.len() as u64;
    assert!(totals.rotations >= n * days / 10, "{totals}");
    assert!(
        totals.deletions > 0 && totals.orphans_deleted > 0,
        "{totals}"
    );
    assert!(totals.crashes > 0 && totals.concurrent_runs > 0, "{totals}");
    for kind in FaultKind::ALL {
        assert!(
            totals.injected.get(&kind).copied().unwrap_or(0) > 0,
            "no {kind}: {totals}"
        );
    }
    assert!(totals.sdk_retries > 0 && totals.busy > 0, "{totals}");
    assert!(totals.operator_keys > 0 && totals.disabled > 0, "{totals}");
    assert!(
        totals.rollbacks > 0 && totals.rollbacks_refused > 0,
        "{totals}"
    );
    assert!(totals.consumer_uses > 0 && totals.job_uses > 0, "{totals}");
    assert!(
        totals.notices_held_back > 0 && totals.notices_repeated > 0,
        "{totals}"
    );
    assert!(
        totals.deliveries > 0 && totals.destination_uses > 0 && totals.outages > 0,
        "{totals}"
    );
    assert!(totals.forced_past_delivery > 0, "{totals}");
}

/// A weakened rule must make the simulation fail: with the SDK's default retries on
/// CreateAccessKey too, a lost reply turns into a key nobody holds and a third-key request.
#[test]
fn the_simulation_catches_a_blind_retry_of_create_access_key() {
    let seeds: Vec<u64> = (0..8).collect();
    let results = run_seeds(&seeds, 60, |sim| {
        sim.aws.plan.set_sdk_retries(SdkRetries::All);
        sim.aws.plan.set_rates(FaultRates {
            fail_after: 0.02,
            ..FaultRates::none()
        });
    });
    let caught = results
        .iter()
        .filter(|(_, r)| r.as_ref().is_err_and(|e| e.contains("third key")))
        .count();
    assert!(caught > 0, "no seed caught the blind retry: {results:?}");
}

/// A weakened rule must make the simulation fail: with a lease that grants every claim, two
/// rotators act on the same user at once and the checker sees it.
#[test]
fn the_simulation_catches_runs_that_act_without_the_lease() {
    let seeds: Vec<u64> = (0..8).collect();
    let results = run_seeds(&seeds, 60, |sim| {
        sim.lease_always_granted = true;
        sim.concurrency = 0.5;
    });
    let caught = results
        .iter()
        .filter(|(_, r)| r.as_ref().is_err_and(|e| e.contains("lease")))
        .count();
    assert!(caught > 0, "no seed caught the missing lease: {results:?}");
}

/// A weakened rule must make the simulation fail: a rotator that takes every destination for
/// holding the new key without reading it back deactivates old keys that a destination's
/// consumer still holds, and the checker sees it.
#[test]
fn the_simulation_catches_a_deactivation_before_delivery() {
    let seeds: Vec<u64> = (0..8).collect();
    let results = run_seeds(&seeds, 60, |sim| sim.trust_deliveries = true);
    let caught = results
        .iter()
        .filter(|(_, r)| r.as_ref().is_err_and(|e| e.contains("lack its successor")))
        .count();
    assert!(
        caught > 0,
        "no seed caught the missing read-back: {results:?}"
    );
}

pub(crate) fn futures_yield() -> keyrot_core::fake::YieldNow {
    keyrot_core::fake::yield_now()
}

pub(crate) fn user(name: &str) -> UserName {
    UserName::new(name).unwrap()
}

/// A snapshot of what counts as a fault, to tell a fault-free run.
pub(crate) fn faults(aws: &FakeAws) -> (u64, u64, bool) {
    let injected = FaultKind::ALL.iter().map(|k| aws.plan.injected(*k)).sum();
    (
        injected,
        aws.plan.total_sdk_retries(),
        aws.plan.is_crashed(),
    )
}
