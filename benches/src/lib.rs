//! Benchmarks and the scale simulation of keyrot.
//!
//! It measures; it changes nothing in keyrot-core and reaches no network. The criterion
//! benchmarks live in `benches/` (planning, tokens, scale); this library holds what they share:
//!
//! - [`scale_run`]: one [`Rotator::run`] over thousands of users who are all due, against the
//!   in-memory fakes behind a simulated network (a fixed latency per call and one token bucket
//!   that throttles, as AWS does, with the SDK's retries), in virtual time. Its [`ScaleReport`] says how close the run comes to the rate limit's
//!   lower bound and how many port calls a rotation costs. `cargo run -p benches --release
//!   --bin scale` prints one.
//! - [`VirtualClock`]: virtual time in which concurrent sleeps overlap (the fakes' own
//!   [`SimClock`](keyrot_core::fake::SimClock) adds them up).
//! - [`synthetic::observations`]: users in every lifecycle state, for the planner benchmark.
//!
//! ```
//! use std::time::Duration;
//! use keyrot_core::fake::RateLimit;
//!
//! let rate = RateLimit::per_second(20).with_burst(20);
//! let report = benches::scale_run(50, Duration::from_millis(50), rate);
//! assert_eq!(report.rotated, 50);
//! assert!(report.calls_per_rotated_user() <= 8.2);
//! assert!(report.ratio() <= 1.2);
//! ```
#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use keyrot_core::fake::{FakeAws, FaultRates, NullNotifier, RateLimit, op};
use keyrot_core::{
    Concurrency, KeyStatus, Ports, Rotator, RunOptions, RunReport, Timestamp, UserName,
};

mod network;
pub mod synthetic;
pub mod vclock;

pub use vclock::VirtualClock;

use network::{Network, RemoteIam, RemoteLease, RemoteStore, RemoteVerifier};

/// When every simulated run starts: 2026-11-26T00:00:00Z.
pub const START: Timestamp = Timestamp::constant(1_795_651_200, 0);

/// How old each user's key is at the start of a scale run: past the 90-day rotation period.
pub const KEY_AGE: Duration = Duration::from_secs(100 * 24 * 3600);

/// The seed of the fakes' key ids and secrets (no faults are drawn).
const SEED: u64 = 2026;

/// How virtual time passes while calls wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeModel {
    /// [`VirtualClock`]: calls in flight together overlap, as on a real network.
    Overlapping,
    /// The fakes' own [`FaultPlan`](keyrot_core::fake::FaultPlan) latency and rate limit on
    /// their [`SimClock`](keyrot_core::fake::SimClock), whose `sleep` moves the time at once:
    /// every wait adds to the run time, whatever runs beside it.
    SimClockSummed,
}

/// What a [`scale_run`] measured.
#[derive(Debug, Clone)]
pub struct ScaleReport {
    /// How waits were turned into virtual time.
    pub model: TimeModel,
    /// Managed users, all due for rotation.
    pub users: usize,
    /// Users reconciled at once ([`Rotator::with_concurrency_limit`]).
    pub concurrency: Concurrency,
    /// Attempts the bucket refused (each one retried by the simulated SDK, or failing its call
    /// after the last attempt).
    pub throttled: u64,
    /// Virtual latency of every port call.
    pub latency: Duration,
    /// The token bucket every call goes through.
    pub rate: RateLimit,
    /// Users who got a new key.
    pub rotated: usize,
    /// Users who failed or are blocked (zero unless something is wrong).
    pub failed: usize,
    /// Port calls by operation (see [`op`]), from the fakes' fault plan counters.
    pub calls: BTreeMap<&'static str, u64>,
    /// From the start of the run to its report, in virtual time.
    pub virtual_time: Duration,
}

impl ScaleReport {
    /// Every port call of the run, the run-wide `managed_users` included.
    pub fn total_calls(&self) -> u64 {
        self.calls.values().sum()
    }

    /// Calls made once per run rather than per user: `managed_users`.
    pub fn run_wide_calls(&self) -> u64 {
        [
            op::IAM_MANAGED_USERS,
            op::IAM_CREDENTIAL_REPORT,
            op::STORE_LIST,
        ]
        .iter()
        .filter_map(|op| self.calls.get(op))
        .sum()
    }

    /// The calls the rate allows per second.
    pub fn calls_per_second(&self) -> f64 {
        1.0 / self.rate.interval().as_secs_f64()
    }

    /// The shortest time the run could take at the rate limit: total calls / rate.
    pub fn lower_bound(&self) -> Duration {
        Duration::from_secs_f64(self.total_calls() as f64 / self.calls_per_second())
    }

    /// Virtual run time / [`ScaleReport::lower_bound`].
    pub fn ratio(&self) -> f64 {
        self.virtual_time.as_secs_f64() / self.lower_bound().as_secs_f64()
    }

    /// Port calls per rotated user, the run-wide `managed_users` call included (shared out).
    pub fn calls_per_rotated_user(&self) -> f64 {
        self.total_calls() as f64 / self.rotated.max(1) as f64
    }

    /// Port calls per rotated user, without the run-wide calls.
    pub fn user_calls_per_rotated_user(&self) -> f64 {
        (self.total_calls() - self.run_wide_calls()) as f64 / self.rotated.max(1) as f64
    }
}

impl fmt::Display for ScaleReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let model = match self.model {
            TimeModel::Overlapping => "overlapping waits (VirtualClock)",
            TimeModel::SimClockSummed => "fakes' SimClock (waits add up)",
        };
        writeln!(f, "time model:        {model}")?;
        writeln!(
            f,
            "users:             {} due, {} rotated, {} failed or blocked",
            self.users, self.rotated, self.failed
        )?;
        writeln!(
            f,
            "network:           {} ms per call, {:.0} calls/s (burst {}), concurrency {:?}, {} attempts throttled",
            self.latency.as_millis(),
            self.calls_per_second(),
            self.rate.burst(),
            self.concurrency,
            self.throttled
        )?;
        writeln!(
            f,
            "virtual run time:  {:.2} s",
            self.virtual_time.as_secs_f64()
        )?;
        writeln!(
            f,
            "rate lower bound:  {:.2} s ({} calls / {:.0} per s)",
            self.lower_bound().as_secs_f64(),
            self.total_calls(),
            self.calls_per_second()
        )?;
        writeln!(f, "ratio:             {:.4}x", self.ratio())?;
        writeln!(
            f,
            "calls per rotated user: {:.4} with the run-wide calls ({}: users, credential report, listing), {:.4} without",
            self.calls_per_rotated_user(),
            self.run_wide_calls(),
            self.user_calls_per_rotated_user()
        )?;
        let per_op: Vec<String> = self
            .calls
            .iter()
            .map(|(op, n)| format!("{op}={n}"))
            .collect();
        write!(f, "calls by op:       {}", per_op.join(" "))
    }
}

/// How many users to reconcile at once so that the bucket never idles: each user has one call
/// in flight at a time, so `rate x latency` users keep the network busy; four times that (at
/// least 16) keeps calls queued at the bucket. More only makes each user wait longer in the
/// queue.
pub fn concurrency_for(latency: Duration, rate: RateLimit) -> usize {
    let in_flight = (latency.as_secs_f64() / rate.interval().as_secs_f64()).ceil();
    // A small positive number of calls (latency is far below a day): the cast cannot truncate.
    let in_flight = in_flight.clamp(1.0, 1e6) as usize;
    (4 * in_flight).max(16)
}

/// Rotates `users` users, all due, with one [`Rotator::run`] against the in-memory fakes behind
/// a network where every port call (IAM, Secrets Manager, STS alike) first waits its turn in
/// one token bucket (`rate`) and then takes `latency`, in virtual time on a [`VirtualClock`]
/// (so a run of thousands of users takes well under a second of real time).
///
/// Every user starts with one active key, 100 days old ([`KEY_AGE`]), stored as current, under
/// the default policy (90-day rotation); IAM propagates new keys at once (the fakes' default)
/// and no faults are injected. Each user's rotation is then: observe (`list_keys`, `load`),
/// `create_key` + `put_pending`, `authenticates`, `promote`, and `mark` superseded.
/// Concurrency is the rotator's default, [`Concurrency::DEFAULT`], adapting as deployed; calls
/// over the rate are throttled and retried as the SDK retries them.
pub fn scale_run(users: usize, latency: Duration, rate: RateLimit) -> ScaleReport {
    let aws = populated(users);
    let clock = VirtualClock::new(aws.clock.clone());
    let net = Network::new(clock.clone(), latency, rate, SEED);
    let ports = Ports {
        iam: Arc::new(RemoteIam(aws.iam.clone(), Arc::clone(&net))),
        store: Arc::new(RemoteStore(aws.store.clone(), Arc::clone(&net))),
        verifier: Arc::new(RemoteVerifier(aws.verifier.clone(), Arc::clone(&net))),
        lease: Arc::new(RemoteLease(aws.lease.clone(), net.clone())),
        notifier: Arc::new(NullNotifier),
        clock: Arc::new(clock.clone()),
    };
    // As deployed: the rotator's default, adaptive concurrency, told of every throttle.
    let rotator = Rotator::new(ports, synthetic::policy()).with_pressure(net.clone());
    let concurrency = Concurrency::DEFAULT;
    let run = clock.block_on(rotator.run(&RunOptions::default()));
    let mut report = report(
        TimeModel::Overlapping,
        &aws,
        users,
        concurrency,
        latency,
        rate,
        &run,
    );
    report.throttled = keyrot_core::Pressure::throttled(net.as_ref());
    report
}

/// [`scale_run`] with the fakes' own latency and rate limit
/// ([`FaultPlan::set_latency`](keyrot_core::fake::FaultPlan::set_latency),
/// [`FaultPlan::set_rate_limit`](keyrot_core::fake::FaultPlan::set_rate_limit)) on their
/// [`SimClock`](keyrot_core::fake::SimClock), driven by `futures::executor::block_on`. The calls
/// are the same; the virtual time is the sum of every call's wait, as if one call ran at a time.
pub fn scale_run_on_sim_clock(users: usize, latency: Duration, rate: RateLimit) -> ScaleReport {
    let aws = populated(users);
    aws.plan.set_latency(latency);
    aws.plan.set_rate_limit(Some(rate));
    let ports = Ports {
        notifier: Arc::new(NullNotifier),
        ..aws.ports()
    };
    let concurrency = Concurrency::Fixed(concurrency_for(latency, rate));
    let rotator = Rotator::new(ports, synthetic::policy()).with_concurrency_limit(concurrency);
    let run = futures::executor::block_on(rotator.run(&RunOptions::default()));
    report(
        TimeModel::SimClockSummed,
        &aws,
        users,
        concurrency,
        latency,
        rate,
        &run,
    )
}

/// Fakes with `users` managed users, each with one stored, active key [`KEY_AGE`] old.
#[expect(
    clippy::expect_used,
    reason = "generated names and a fresh IAM: setup cannot fail"
)]
fn populated(users: usize) -> FakeAws {
    let aws = FakeAws::new(START, SEED, FaultRates::none());
    let created = START.saturating_sub(KEY_AGE).unwrap_or(Timestamp::MIN);
    for i in 0..users {
        let user = UserName::new(format!("user-{i:05}")).expect("a valid user name");
        aws.iam.add_managed_user(user.clone());
        let key = aws
            .iam
            .add_key(&user, KeyStatus::Active, created)
            .expect("a new user has room for a key");
        aws.store.create_secret(&user, &key.credentials(), created);
    }
    aws
}

fn report(
    model: TimeModel,
    aws: &FakeAws,
    users: usize,
    concurrency: Concurrency,
    latency: Duration,
    rate: RateLimit,
    run: &Result<RunReport, keyrot_core::driver::RunError>,
) -> ScaleReport {
    let (rotated, failed) = match run {
        Ok(run) => (run.rotations(), run.failures()),
        // Listing users failed: nobody was reconciled.
        Err(_) => (0, users),
    };
    let elapsed = aws.clock.now().duration_since(START);
    ScaleReport {
        model,
        users,
        concurrency,
        latency,
        rate,
        rotated,
        failed,
        throttled: 0,
        calls: aws.plan.call_counts(),
        virtual_time: Duration::try_from(elapsed).unwrap_or(Duration::ZERO),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LATENCY: Duration = Duration::from_millis(50);

    #[test]
    fn a_rotation_costs_eight_calls_and_runs_near_the_rate_limit() {
        // The seven of a rotation (list_keys, load, create_key, put_pending, authenticates,
        // promote, mark) and the intent recorded before create_key; the survey (users,
        // credential report, listing) shows every key due, so the users are claimed before
        // they are observed, two hundred in two batches, given back in two.
        let report = scale_run(200, LATENCY, RateLimit::per_second(20).with_burst(20));
        println!("{report}");
        assert_eq!((report.rotated, report.failed), (200, 0));
        assert_eq!(report.run_wide_calls(), 3);
        assert_eq!(report.calls.get(op::LEASE_ACQUIRE_ALL), Some(&2));
        assert_eq!(report.calls.get(op::LEASE_RELEASE_ALL), Some(&2));
        assert!(
            (report.user_calls_per_rotated_user() - 8.02).abs() < 1e-9,
            "{}",
            report.user_calls_per_rotated_user()
        );
        assert!(report.ratio() <= 1.2, "{}", report.ratio());
        // Past its first burst the last call cannot start before (calls - burst) intervals.
        let after_burst = report.total_calls() - u64::from(report.rate.burst());
        let floor = report.rate.interval() * u32::try_from(after_burst).unwrap();
        assert!(report.virtual_time >= floor, "nothing beats the bucket");
        // The limit backed off when the bucket refused calls.
        assert!(report.throttled > 0, "{report}");
    }

    #[test]
    fn a_fast_bucket_is_bound_by_latency_not_summed() {
        // 200 calls/s at 50 ms is 10 calls in flight: only overlapping waits reach the bound,
        // once the limit has grown (a run of 2,000 users, not over before it has).
        let report = scale_run(2000, LATENCY, RateLimit::per_second(200).with_burst(200));
        assert_eq!(report.rotated, 2000);
        assert!(report.ratio() <= 1.2, "{}", report.ratio());
    }

    #[test]
    fn both_time_models_make_the_same_calls() {
        let rate = RateLimit::per_second(20).with_burst(20);
        let overlapping = scale_run(60, LATENCY, rate);
        let summed = scale_run_on_sim_clock(60, LATENCY, rate);
        assert_eq!(summed.rotated, 60);
        assert_eq!(overlapping.calls, summed.calls);
    }
}
