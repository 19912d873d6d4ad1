//! The scale run over many accounts: [`org_scale_run`].

use std::sync::Arc;
use std::time::Duration;

use keyrot_core::accounts::{AccountId, for_each_account};
use keyrot_core::fake::{
    FakeIam, FakeLease, FakeSecretStore, FakeVerifier, FaultPlan, FaultRates, NullNotifier,
    RateLimit, SdkRetries, SimClock,
};
use keyrot_core::{Ports, Rotator, RunOptions};

use crate::network::{Network, RemoteIam, RemoteLease, RemoteStore, RemoteVerifier};
use crate::{SEED, START, VirtualClock, synthetic};

/// What an [`org_scale_run`] measured.
#[derive(Debug, Clone)]
pub struct OrgScaleReport {
    /// Accounts, each with its own fakes and its own token bucket.
    pub accounts: usize,
    /// Managed users per account, all due.
    pub users_per_account: usize,
    /// At most this many accounts ran at once.
    pub max_parallel: usize,
    /// Each account's token bucket.
    pub rate: RateLimit,
    /// Virtual latency of every call.
    pub latency: Duration,
    /// Users given a new key, over every account.
    pub rotated: usize,
    /// Accounts that failed, wholly or for some user (zero unless something is wrong).
    pub failed_accounts: usize,
    /// Every port call, over every account.
    pub total_calls: u64,
    /// The busiest account's calls.
    pub busiest_account_calls: u64,
    /// From the start of the run to its end, in virtual time.
    pub virtual_time: Duration,
}

impl OrgScaleReport {
    /// The shortest time the run could take: every call at `max_parallel` buckets' rate, or the
    /// busiest account's calls at its own bucket's rate, whichever is longer.
    pub fn lower_bound(&self) -> Duration {
        let per_second = 1.0 / self.rate.interval().as_secs_f64();
        let all = self.total_calls as f64 / (self.max_parallel as f64 * per_second);
        let busiest = self.busiest_account_calls as f64 / per_second;
        Duration::from_secs_f64(all.max(busiest))
    }

    /// Virtual run time / [`OrgScaleReport::lower_bound`].
    pub fn ratio(&self) -> f64 {
        self.virtual_time.as_secs_f64() / self.lower_bound().as_secs_f64()
    }
}

impl std::fmt::Display for OrgScaleReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "accounts:          {} x {} users due, at most {} accounts at once",
            self.accounts, self.users_per_account, self.max_parallel
        )?;
        writeln!(
            f,
            "network:           {} ms per call, {:.0} calls/s per account",
            self.latency.as_millis(),
            1.0 / self.rate.interval().as_secs_f64()
        )?;
        writeln!(
            f,
            "result:            {} rotated, {} accounts failed",
            self.rotated, self.failed_accounts
        )?;
        writeln!(
            f,
            "virtual run time:  {:.2} s",
            self.virtual_time.as_secs_f64()
        )?;
        writeln!(
            f,
            "lower bound:       {:.2} s ({} calls; busiest account {})",
            self.lower_bound().as_secs_f64(),
            self.total_calls,
            self.busiest_account_calls
        )?;
        write!(f, "ratio:             {:.4}x", self.ratio())
    }
}

/// One account's fakes on the shared clock: `users` managed users, each with one stored,
/// active key [`crate::KEY_AGE`] old.
fn account_fakes(
    clock: &SimClock,
    n: usize,
    users: usize,
) -> (FakeIam, FakeSecretStore, FakeVerifier, FakeLease, FaultPlan) {
    let seed = SEED ^ (n as u64) << 20;
    let plan = FaultPlan::seeded(seed, FaultRates::none()).with_sdk_retries(SdkRetries::AsAdapters);
    let iam = FakeIam::new(clock.clone(), plan.clone(), seed ^ 0x6b65_7972_6f74);
    let store = FakeSecretStore::new(clock.clone(), plan.clone());
    let verifier = FakeVerifier::new(iam.clone(), plan.clone());
    let lease = FakeLease::new(clock.clone(), plan.clone());
    crate::add_due_users(&iam, &store, users);
    (iam, store, verifier, lease, plan)
}

/// `accounts` accounts of `users_per_account` due users each, every account with its own fakes
/// behind its own token bucket (`rate`, IAM's limits are per account) and `latency` per call,
/// run as `keyrot rotate --org` and the fan-out run them: one [`Rotator::run`] per account, at
/// most `max_parallel` accounts at once ([`for_each_account`]), in virtual time on one
/// [`VirtualClock`].
#[expect(clippy::expect_used, reason = "generated account ids are valid")]
pub fn org_scale_run(
    accounts: usize,
    users_per_account: usize,
    latency: Duration,
    rate: RateLimit,
    max_parallel: usize,
) -> OrgScaleReport {
    let sim = SimClock::new(START);
    let clock = VirtualClock::new(sim.clone());
    let mut rotators = std::collections::BTreeMap::new();
    let mut plans = Vec::new();
    for n in 0..accounts {
        let (iam, store, verifier, lease, plan) = account_fakes(&sim, n, users_per_account);
        let net = Network::new(clock.clone(), latency, rate, n as u64);
        let ports = Ports {
            iam: Arc::new(RemoteIam(iam, Arc::clone(&net))),
            store: Arc::new(RemoteStore(store, Arc::clone(&net))),
            verifier: Arc::new(RemoteVerifier(verifier, Arc::clone(&net))),
            lease: Arc::new(RemoteLease(lease, net.clone())),
            notifier: Arc::new(NullNotifier),
            clock: Arc::new(clock.clone()),
        };
        // Each account's run with the deployed, adaptive concurrency.
        let rotator = Rotator::new(ports, synthetic::policy()).with_pressure(net);
        let id = AccountId::new(&format!("{:012}", 100_000_000_000 + n)).expect("twelve digits");
        rotators.insert(id, rotator);
        plans.push(plan);
    }
    let ids: Vec<AccountId> = rotators.keys().cloned().collect();
    let rotators = &rotators;
    let reports = clock.block_on(for_each_account(&ids, max_parallel, |account| async move {
        rotators[&account].run(&RunOptions::default()).await
    }));
    let counts: Vec<u64> = plans
        .iter()
        .map(|plan| plan.call_counts().values().sum())
        .collect();
    let elapsed = sim.now().duration_since(START);
    OrgScaleReport {
        accounts,
        users_per_account,
        max_parallel,
        rate,
        latency,
        rotated: reports
            .iter()
            .filter_map(|r| r.outcome.as_ref().ok())
            .map(keyrot_core::RunReport::rotations)
            .sum(),
        failed_accounts: reports
            .iter()
            .filter(|r| r.outcome.as_ref().map_or(true, |run| run.failures() > 0))
            .count(),
        total_calls: counts.iter().sum(),
        busiest_account_calls: counts.iter().copied().max().unwrap_or(0),
        virtual_time: Duration::try_from(elapsed).unwrap_or(Duration::ZERO),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_accounts_run_near_the_bound_of_their_buckets() {
        let report = org_scale_run(
            12,
            20,
            Duration::from_millis(50),
            RateLimit::per_second(20).with_burst(20),
            4,
        );
        println!("{report}");
        assert_eq!((report.rotated, report.failed_accounts), (240, 0));
        assert!(report.ratio() <= 1.2, "{report}");
        // Never faster than the cap allows: at most four buckets at once.
        assert!(report.ratio() >= 1.0, "{report}");
    }

    #[test]
    fn one_busy_account_is_its_own_bound() {
        // One account: the cap does not matter, its bucket does.
        let report = org_scale_run(
            1,
            60,
            Duration::from_millis(50),
            RateLimit::per_second(20).with_burst(20),
            50,
        );
        assert_eq!(report.rotated, 60);
        assert!(report.ratio() <= 1.2, "{report}");
    }
}
