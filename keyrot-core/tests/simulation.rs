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
    AccessKey, AccessKeyId, Claim, Credentials, Iam, IamError, Intent, KeyStatus, LastUsed, Lease,
    LeaseError, LeaseToken, Mark, NewKey, Outcome, Policy, Ports, Rotator, RunOptions, RunReport,
    SecretStore, Selection, Step, StoreError, StoredUser, Timestamp, UserName,
};

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

#[derive(Debug, Default)]
struct Totals {
    rotations: u64,
    deletions: u64,
    orphans_deleted: u64,
    forced: u64,
    injected: BTreeMap<FaultKind, u64>,
    sdk_retries: u64,
    crashes: u64,
    runs: u64,
    concurrent_runs: u64,
    busy: u64,
    operator_keys: u64,
    disabled: u64,
    rollbacks: u64,
    rollbacks_refused: u64,
    consumer_uses: u64,
    job_uses: u64,
}

impl Totals {
    fn add(&mut self, t: &Self) {
        self.rotations += t.rotations;
        self.deletions += t.deletions;
        self.orphans_deleted += t.orphans_deleted;
        self.forced += t.forced;
        for (kind, n) in &t.injected {
            *self.injected.entry(*kind).or_insert(0) += n;
        }
        self.sdk_retries += t.sdk_retries;
        self.crashes += t.crashes;
        self.runs += t.runs;
        self.concurrent_runs += t.concurrent_runs;
        self.busy += t.busy;
        self.operator_keys += t.operator_keys;
        self.disabled += t.disabled;
        self.rollbacks += t.rollbacks;
        self.rollbacks_refused += t.rollbacks_refused;
        self.consumer_uses += t.consumer_uses;
        self.job_uses += t.job_uses;
    }
}

impl std::fmt::Display for Totals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "  runs {} ({} of two processes at once, {} users found busy), crashes {}",
            self.runs, self.concurrent_runs, self.busy, self.crashes
        )?;
        writeln!(
            f,
            "  rotations {}, deletions {}, orphans deleted {}, forced deactivations {}",
            self.rotations, self.deletions, self.orphans_deleted, self.forced
        )?;
        write!(f, "  faults injected:")?;
        for kind in FaultKind::ALL {
            write!(
                f,
                " {kind} {}",
                self.injected.get(&kind).copied().unwrap_or(0)
            )?;
        }
        writeln!(f, "; SDK retries of lost replies {}", self.sdk_retries)?;
        writeln!(
            f,
            "  operator keys {}, users disabled by an admin {}, rollbacks {} ({} refused)",
            self.operator_keys, self.disabled, self.rollbacks, self.rollbacks_refused
        )?;
        write!(
            f,
            "  consumer uses {}, uses of operators' keys {}",
            self.consumer_uses, self.job_uses
        )
    }
}

/// A program using one user's key: it refetches the current key every `refresh` and uses the
/// key it holds every hour. Zero downtime means its key always authenticates.
struct Consumer {
    user: UserName,
    refresh: Duration,
    fetched: Timestamp,
    credentials: Option<Credentials>,
}

/// A key an operator made by hand, a job that uses it every hour, and when the operator
/// deletes it again.
struct OperatorKey {
    user: UserName,
    credentials: Credentials,
    remove_at: Timestamp,
}

/// An administrator's incident: every key of `user` deactivated, re-activated at `until`
/// (and the user handed back an hour later).
struct Incident {
    user: UserName,
    keys: Vec<AccessKeyId>,
    until: Timestamp,
    restored: Option<Timestamp>,
}

/// Who calls the ports: each rotator process has its own wrappers, so the checker knows whose
/// lease a call must be made under.
type Proc = u8;
const PROC_A: Proc = 0;
const PROC_B: Proc = 1;
/// A person running `keyrot rollback`.
const PROC_PERSON: Proc = 2;

struct Sim {
    rng: ChaCha8Rng,
    aws: FakeAws,
    policy: Policy,
    world: Arc<World>,
    consumers: Vec<Consumer>,
    operator_keys: Vec<OperatorKey>,
    incidents: Vec<Incident>,
    /// Users keyrot must never touch, with their keys at the start.
    untouchable: BTreeMap<UserName, Vec<AccessKey>>,
    /// The probability that a scheduled run is two processes at once.
    concurrency: f64,
    /// Weakens the lease (for the test that shows the checker notices).
    lease_always_granted: bool,
}

/// What the checker knows, shared by the wrappers that check around every call.
struct World {
    aws: FakeAws,
    policy: Policy,
    start: Timestamp,
    managed: BTreeSet<UserName>,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    /// Who owns each key ever seen (IAM forgets deleted keys).
    owner: BTreeMap<AccessKeyId, UserName>,
    /// Keys that were ever served (current, or in service before keyrot adopted them), with
    /// when they stopped being current.
    served: BTreeMap<AccessKeyId, Option<Timestamp>>,
    /// Served keys seen inactive or deleted, so each is judged once.
    retired: BTreeSet<AccessKeyId>,
    /// When each served key was first seen inactive.
    inactive_since: BTreeMap<AccessKeyId, Timestamp>,
    /// Served keys seen deleted, so each is judged once.
    deleted: BTreeSet<AccessKeyId>,
    /// Each user's current key and since when it has been current.
    current_since: BTreeMap<UserName, (AccessKeyId, Timestamp)>,
    /// Each user's current key, and how many of the user's runs failed excusably since it
    /// became current: liveness can only hold while AWS answers, so each such run excuses one
    /// schedule interval.
    excused: BTreeMap<UserName, (Option<AccessKeyId>, u32)>,
    /// Operators' keys: keyrot must never deactivate or delete them.
    foreign: BTreeSet<AccessKeyId>,
    /// Users whose every key an administrator deactivated: keyrot must not give access back.
    disabled: BTreeSet<UserName>,
    /// Users whose keys an administrator has just re-activated: the change is propagating.
    settling: BTreeSet<UserName>,
    /// The lease token each process holds for each user, as the lease granted it.
    tokens: BTreeMap<(Proc, UserName), LeaseToken>,
    /// Third-key requests seen so far.
    third_keys: u64,
    violations: Vec<String>,
}

impl World {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn violation(&self, what: String) {
        self.seen().violations.push(what);
    }

    /// Before a call that changes anything for `user`: the user is managed, and `proc` holds
    /// the user's lease, live now.
    fn before_touch(&self, proc: Proc, user: &UserName, what: &str) {
        if !self.managed.contains(user) {
            self.violation(format!(
                "keyrot asked to {what} for unmanaged or exempt {user}"
            ));
        }
        let now = self.aws.clock.now();
        let (held, others): (Option<LeaseToken>, Vec<Proc>) = {
            let seen = self.seen();
            let held = seen.tokens.get(&(proc, user.clone())).cloned();
            let others = seen
                .tokens
                .keys()
                .filter(|(p, u)| *p != proc && u == user)
                .map(|(p, _)| *p)
                .collect();
            (held, others)
        };
        let live = match (self.aws.lease.claim(user), held) {
            (Some((token, until)), Some(mine)) => token == mine && until > now,
            _ => false,
        };
        if !live {
            self.violation(format!(
                "process {proc} asked to {what} for {user} without holding its lease"
            ));
        }
        if let Some(other) = others.first() {
            self.violation(format!(
                "process {proc} asked to {what} for {user} while process {other} holds its lease"
            ));
        }
    }

    /// Before a call that deactivates or deletes `key`: never the current key, never an
    /// operator's key, never a key of an unmanaged or exempt user.
    fn before_retire(&self, proc: Proc, user: &UserName, key: &AccessKeyId, what: &str) {
        if self.aws.store.current_key(user).as_ref() == Some(key) {
            self.violation(format!(
                "{user}: keyrot asked to {what} the current key {key}"
            ));
        }
        if self.seen().foreign.contains(key) {
            self.violation(format!(
                "{user}: keyrot asked to {what} {key}, an operator's key in use"
            ));
        }
        self.before_touch(proc, user, what);
    }

    /// After a CreateAccessKey: it was not a third-key request.
    fn after_create(&self) {
        let asked = self.aws.iam.third_key_requests();
        let mut seen = self.seen();
        if asked != seen.third_keys {
            seen.third_keys = asked;
            seen.violations
                .push("keyrot asked IAM for a third key".to_owned());
        }
    }

    /// Checks every state invariant of DESIGN.md against the fakes as they are now.
    fn check(&self) {
        let now = self.aws.clock.now();
        let mut guard = self.seen();
        let seen = &mut *guard;
        for user in self.aws.iam.users() {
            let keys = self.aws.iam.keys(&user);
            if keys.len() > 2 {
                seen.violations
                    .push(format!("{user} has {} keys", keys.len()));
            }
            for key in &keys {
                seen.owner
                    .entry(key.id.clone())
                    .or_insert_with(|| user.clone());
            }
            if !self.managed.contains(&user) {
                continue;
            }
            // An administrator took the user's access away (or has just given it back, and the
            // change is propagating): what the keys do is the administrator's doing then.
            let disabled = seen.disabled.contains(&user);
            let hands_off = disabled || seen.settling.contains(&user);
            let current = self.aws.store.current_credentials(&user);
            let current_id = current.as_ref().map(|c| c.access_key_id.clone());
            if let Some(credentials) = &current {
                let id = &credentials.access_key_id;
                // Zero downtime: what callers are given authenticates at once.
                if !hands_off && !self.aws.iam.would_authenticate(credentials, now) {
                    seen.violations
                        .push(format!("{user}: current key {id} does not authenticate"));
                }
                // Current again after a rollback: superseded from scratch next time.
                seen.served.insert(id.clone(), None);
                seen.retired.remove(id);
                seen.inactive_since.remove(id);
                if seen.current_since.get(&user).is_none_or(|(k, _)| k != id) {
                    seen.current_since.insert(user.clone(), (id.clone(), now));
                }
                // Every other served key of the user is superseded from now on.
                for (key, superseded) in &mut seen.served {
                    if key != id && superseded.is_none() && seen.owner.get(key) == Some(&user) {
                        *superseded = Some(now);
                    }
                }
            }
            if !disabled {
                // A served key stays active for at least the grace period after it was superseded.
                let retired: Vec<(AccessKeyId, Option<Timestamp>)> = seen
                    .served
                    .iter()
                    .filter(|(id, _)| {
                        seen.owner.get(*id) == Some(&user) && !seen.retired.contains(*id)
                    })
                    .filter(|(id, _)| {
                        keys.iter()
                            .find(|k| &k.id == *id)
                            .is_none_or(|k| k.status == KeyStatus::Inactive)
                    })
                    .map(|(id, at)| (id.clone(), *at))
                    .collect();
                for (id, superseded) in retired {
                    seen.retired.insert(id.clone());
                    match superseded {
                        None => seen.violations.push(format!(
                            "{user}: served key {id} retired but never superseded"
                        )),
                        Some(at) if now < at + self.policy.grace() => seen.violations.push(format!(
                            "{user}: served key {id} retired {} after it was superseded, within the \
                             grace period",
                            now.duration_since(at)
                        )),
                        Some(_) => {}
                    }
                }
                // A deactivated key is kept, and can be rolled back to, for the recovery window.
                for key in keys.iter().filter(|k| k.status == KeyStatus::Inactive) {
                    if seen.served.contains_key(&key.id) {
                        seen.inactive_since.entry(key.id.clone()).or_insert(now);
                    }
                }
                let deleted: Vec<(AccessKeyId, Timestamp)> = seen
                    .inactive_since
                    .iter()
                    .filter(|(id, _)| {
                        seen.owner.get(*id) == Some(&user) && !seen.deleted.contains(*id)
                    })
                    .filter(|(id, _)| !keys.iter().any(|k| &k.id == *id))
                    .map(|(id, at)| (id.clone(), *at))
                    .collect();
                for (id, since) in deleted {
                    seen.deleted.insert(id.clone());
                    if now < since + self.policy.recovery_window() {
                        seen.violations.push(format!(
                            "{user}: {id} deleted {} after it was deactivated, within the recovery \
                             window",
                            now.duration_since(since)
                        ));
                    }
                }
            }
            // Liveness: the key in service is replaced within period + grace + one interval of
            // the time it went into service (its publication, or a rollback).
            let in_service_since = match (&current_id, seen.current_since.get(&user)) {
                (Some(id), Some((key, since))) if key == id => *since,
                _ => self.start,
            };
            let excused = seen.excused.entry(user.clone()).or_default();
            if excused.0 != current_id {
                *excused = (current_id.clone(), 0);
            }
            let limit = self.policy.rotation_period()
                + self.policy.grace()
                + self.policy.schedule_interval() * (1 + excused.1);
            if now > in_service_since + limit {
                seen.violations.push(format!(
                    "{user}: key in service since {in_service_since} still not rotated at {now}"
                ));
            }
        }
    }
}

/// IAM as one process sees it: the fake, checked around every call, with a yield per call so
/// that concurrent runs interleave.
struct CheckedIam(Arc<World>, Proc);

#[async_trait]
impl Iam for CheckedIam {
    async fn managed_users(&self, selection: &Selection) -> Result<Vec<UserName>, IamError> {
        futures_yield().await;
        let r = self.0.aws.iam.managed_users(selection).await;
        self.0.check();
        r
    }

    async fn list_keys(&self, user: &UserName) -> Result<Vec<AccessKey>, IamError> {
        futures_yield().await;
        let r = self.0.aws.iam.list_keys(user).await;
        self.0.check();
        r
    }

    async fn create_key(&self, user: &UserName) -> Result<NewKey, IamError> {
        futures_yield().await;
        self.0.before_touch(self.1, user, "create a key");
        if self.0.seen().disabled.contains(user) {
            self.0.violation(format!(
                "keyrot created a key for {user}, whose access an administrator took away"
            ));
        }
        let r = self.0.aws.iam.create_key(user).await;
        self.0.after_create();
        self.0.check();
        r
    }

    async fn set_status(
        &self,
        user: &UserName,
        key: &AccessKeyId,
        status: KeyStatus,
    ) -> Result<(), IamError> {
        futures_yield().await;
        match status {
            KeyStatus::Inactive => self.0.before_retire(self.1, user, key, "deactivate"),
            KeyStatus::Active => {
                self.0.before_touch(self.1, user, "activate a key");
                if self.1 != PROC_PERSON {
                    self.0.violation(format!(
                        "{user}: keyrot re-activated {key} without a rollback asked for"
                    ));
                }
            }
        }
        let r = self.0.aws.iam.set_status(user, key, status).await;
        self.0.check();
        r
    }

    async fn delete_key(&self, user: &UserName, key: &AccessKeyId) -> Result<(), IamError> {
        futures_yield().await;
        self.0.before_retire(self.1, user, key, "delete");
        let r = self.0.aws.iam.delete_key(user, key).await;
        self.0.check();
        r
    }

    async fn last_used(&self, key: &AccessKeyId) -> LastUsed {
        futures_yield().await;
        let r = self.0.aws.iam.last_used(key).await;
        self.0.check();
        r
    }

    async fn credential_report(&self) -> Result<Option<CredentialReport>, IamError> {
        futures_yield().await;
        let r = self.0.aws.iam.credential_report().await;
        self.0.check();
        r
    }
}

/// The secret store as one process sees it, checked around every call.
struct CheckedStore(Arc<World>, Proc);

#[async_trait]
impl SecretStore for CheckedStore {
    async fn load(&self, user: &UserName) -> Result<StoredUser, StoreError> {
        futures_yield().await;
        let r = self.0.aws.store.load(user).await;
        self.0.check();
        r
    }

    async fn put_pending(
        &self,
        user: &UserName,
        credentials: &Credentials,
        created: Timestamp,
    ) -> Result<(), StoreError> {
        futures_yield().await;
        self.0.before_touch(self.1, user, "store a key");
        let r = self
            .0
            .aws
            .store
            .put_pending(user, credentials, created)
            .await;
        self.0.check();
        r
    }

    async fn promote(&self, user: &UserName, key: &AccessKeyId) -> Result<(), StoreError> {
        futures_yield().await;
        self.0.before_touch(self.1, user, "publish a key");
        let r = self.0.aws.store.promote(user, key).await;
        self.0.check();
        r
    }

    async fn mark(
        &self,
        user: &UserName,
        key: &AccessKeyId,
        mark: Mark,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        futures_yield().await;
        self.0.before_touch(self.1, user, "mark a key");
        let r = self.0.aws.store.mark(user, key, mark, at).await;
        self.0.check();
        r
    }

    async fn clear_marks(&self, user: &UserName, key: &AccessKeyId) -> Result<(), StoreError> {
        futures_yield().await;
        self.0.before_touch(self.1, user, "forget marks");
        let r = self.0.aws.store.clear_marks(user, key).await;
        self.0.check();
        r
    }

    async fn record_intent(&self, user: &UserName, intent: &Intent) -> Result<(), StoreError> {
        futures_yield().await;
        self.0.before_touch(self.1, user, "record an intent");
        let r = self.0.aws.store.record_intent(user, intent).await;
        self.0.check();
        r
    }

    async fn credentials(
        &self,
        user: &UserName,
        key: &AccessKeyId,
    ) -> Result<Option<Credentials>, StoreError> {
        futures_yield().await;
        let r = self.0.aws.store.credentials(user, key).await;
        self.0.check();
        r
    }

    async fn current(&self, user: &UserName) -> Result<Option<Credentials>, StoreError> {
        futures_yield().await;
        let r = self.0.aws.store.current(user).await;
        self.0.check();
        r
    }

    async fn list_stored(&self) -> Result<Option<BTreeMap<UserName, StoredUser>>, StoreError> {
        futures_yield().await;
        let r = self.0.aws.store.list_stored().await;
        self.0.check();
        r
    }
}

/// The lease table as one process sees it: records which process holds which user. With
/// `always_granted` it grants every claim (a broken lease, for the test that shows the checker
/// notices).
struct CheckedLease {
    world: Arc<World>,
    proc: Proc,
    always_granted: bool,
}

#[async_trait]
impl Lease for CheckedLease {
    async fn acquire(
        &self,
        user: &UserName,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Claim, LeaseError> {
        futures_yield().await;
        let r = self.world.aws.lease.acquire(user, now, until).await;
        let granted = match &r {
            Ok(Claim::Granted(token)) => Some(token.clone()),
            Ok(Claim::Taken { holder, .. }) if self.always_granted => Some(holder.clone()),
            _ => None,
        };
        if let Some(token) = granted {
            self.world
                .seen()
                .tokens
                .insert((self.proc, user.clone()), token.clone());
            return Ok(Claim::Granted(token));
        }
        r
    }

    async fn renew(
        &self,
        user: &UserName,
        token: &LeaseToken,
        until: Timestamp,
    ) -> Result<bool, LeaseError> {
        futures_yield().await;
        self.world.aws.lease.renew(user, token, until).await
    }

    async fn release(&self, user: &UserName, token: &LeaseToken) -> Result<(), LeaseError> {
        futures_yield().await;
        let r = self.world.aws.lease.release(user, token).await;
        self.world.seen().tokens.remove(&(self.proc, user.clone()));
        r
    }
}

fn futures_yield() -> keyrot_core::fake::YieldNow {
    keyrot_core::fake::yield_now()
}

fn user(name: &str) -> UserName {
    UserName::new(name).unwrap()
}

/// A snapshot of what counts as a fault, to tell a fault-free run.
fn faults(aws: &FakeAws) -> (u64, u64, bool) {
    let injected = FaultKind::ALL.iter().map(|k| aws.plan.injected(*k)).sum();
    (
        injected,
        aws.plan.total_sdk_retries(),
        aws.plan.is_crashed(),
    )
}

impl Sim {
    fn new(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let start: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        // Low enough that a run mostly gets through, high enough that every seed meets many
        // faults and crashes over its days.
        let rate = 0.002 + rng.random::<f64>() * 0.004;
        let aws = FakeAws::new(start, seed, FaultRates::uniform(rate));
        aws.iam
            .set_propagation_delay(Duration::from_secs(rng.random_range(0..=120)));
        aws.iam.set_last_used_lag(Duration::from_secs(
            rng.random_range(0..=LAST_USED_LAG.as_secs()),
        ));
        let policy = Policy::builder()
            .rotation_period(7 * DAY)
            .grace(DAY)
            .max_grace(2 * DAY)
            .recovery_window(DAY)
            .quiet_period(12 * HOUR + HOUR)
            .last_used_lag(LAST_USED_LAG)
            .verify_timeout(Duration::from_secs(300))
            .schedule_interval(6 * HOUR)
            .exempt([user("dave")])
            .build()
            .unwrap();

        // alice: an old legacy key, due at once; bob: no key; carol: a young legacy key;
        // frank: an inactive and an active legacy key (the inactive one a fallback the
        // operator kept); dave: tagged but exempt; erin: not managed at all.
        let mut legacy = Vec::new();
        for name in ["alice", "bob", "carol", "frank", "dave"] {
            aws.iam.add_managed_user(user(name));
        }
        aws.iam.add_user(user("erin"), [("team", "web")]);
        let add = |name: &str, status, age: Duration| {
            let key = aws.iam.add_key(&user(name), status, start - age).unwrap();
            (user(name), key.credentials())
        };
        legacy.push(add("alice", KeyStatus::Active, 200 * DAY));
        legacy.push(add("carol", KeyStatus::Active, 3 * DAY));
        add("frank", KeyStatus::Inactive, 40 * DAY);
        legacy.push(add("frank", KeyStatus::Active, 2 * DAY));
        add("dave", KeyStatus::Active, 300 * DAY);
        add("erin", KeyStatus::Active, 300 * DAY);

        let managed: BTreeSet<UserName> = ["alice", "bob", "carol", "frank"]
            .into_iter()
            .map(user)
            .collect();
        let untouchable = ["dave", "erin"]
            .into_iter()
            .map(|n| (user(n), aws.iam.keys(&user(n))))
            .collect();
        let world = Arc::new(World {
            aws: aws.clone(),
            policy: policy.clone(),
            start,
            managed: managed.clone(),
            seen: Mutex::new(Seen::default()),
        });
        {
            // Keys in service before keyrot count as served.
            let mut seen = world.seen();
            for (_, creds) in &legacy {
                seen.served.insert(creds.access_key_id.clone(), None);
            }
        }
        world.check();
        let consumers = managed
            .iter()
            .map(|u| Consumer {
                user: u.clone(),
                // Most consumers refetch within the quiet period, on their own schedule; some
                // are slow and still use the old key when its grace ends (but refetch before
                // the maximum grace forces it off).
                refresh: if rng.random_bool(0.3) {
                    HOUR * rng.random_range(25..=36)
                } else {
                    HOUR * rng.random_range(1..=12)
                },
                fetched: start,
                credentials: legacy.iter().find(|(l, _)| l == u).map(|(_, c)| c.clone()),
            })
            .collect();
        Self {
            rng,
            aws,
            policy,
            world,
            consumers,
            operator_keys: Vec::new(),
            incidents: Vec::new(),
            untouchable,
            concurrency: 0.05,
            lease_always_granted: false,
        }
    }

    /// A rotator process: its own checked wrappers around the shared fakes.
    fn rotator(&self, proc: Proc) -> Rotator {
        let ports = Ports {
            iam: Arc::new(CheckedIam(self.world.clone(), proc)),
            store: Arc::new(CheckedStore(self.world.clone(), proc)),
            lease: Arc::new(CheckedLease {
                world: self.world.clone(),
                proc,
                always_granted: self.lease_always_granted,
            }),
            ..self.aws.ports()
        };
        Rotator::new(ports, self.policy.clone()).with_concurrency(2)
    }

    fn run(mut self, days: u64) -> Result<Totals, String> {
        let (a, b, person) = (
            self.rotator(PROC_A),
            self.rotator(PROC_B),
            self.rotator(PROC_PERSON),
        );
        let mut totals = Totals::default();
        let hours = days * 24;
        let every = self.policy.schedule_interval().as_secs() / 3600;
        for hour in 0..hours {
            self.consume(&mut totals)?;
            if hour % every == 0 {
                self.scheduled_run(&a, &b, &mut totals);
            } else {
                // People act between scheduled runs, never within the intent window of one.
                self.operators(&mut totals);
                self.administrators(&mut totals);
                if self.rng.random_bool(0.004) {
                    self.roll_back(&person, &mut totals);
                }
            }
            let violations = std::mem::take(&mut self.world.seen().violations);
            if let Some(first) = violations.first() {
                return Err(format!(
                    "at {}: {first} ({} violations)",
                    self.aws.clock.now(),
                    violations.len()
                ));
            }
            self.aws.clock.advance(HOUR);
            self.world.check();
        }
        // Keys of unmanaged or exempt users are never touched.
        for (name, keys) in &self.untouchable {
            if &self.aws.iam.keys(name) != keys {
                return Err(format!("{name}'s keys changed"));
            }
        }
        for event in self.aws.iam.history() {
            if self.untouchable.contains_key(&event.user) {
                return Err(format!("keyrot touched {}: {:?}", event.user, event.action));
            }
        }
        for kind in FaultKind::ALL {
            totals.injected.insert(kind, self.aws.plan.injected(kind));
        }
        totals.sdk_retries = self.aws.plan.total_sdk_retries();
        Ok(totals)
    }

    /// The schedule's run: one process, sometimes two at once, sometimes run twice.
    fn scheduled_run(&mut self, a: &Rotator, b: &Rotator, totals: &mut Totals) {
        let concurrent = self.rng.random_bool(self.concurrency);
        let duplicate = self.rng.random_bool(0.1);
        let force = self.rng.random_bool(0.01);
        if self.rng.random_bool(0.2) {
            // IAM's last-used answers fail often enough to matter: "unknown" must always mean
            // "maybe in use".
            self.aws
                .plan
                .fail_at(op::IAM_LAST_USED, FaultKind::FailBefore);
        }
        let options = RunOptions {
            force,
            ..RunOptions::default()
        };
        if concurrent {
            totals.concurrent_runs += 1;
            totals.runs += 2;
            let (first, second) = block_on(futures::future::join(
                a.run(&options),
                b.run(&RunOptions::default()),
            ));
            let reports: Vec<RunReport> = [first, second].into_iter().flatten().collect();
            for report in &reports {
                self.after_run(report, None, totals);
            }
            if let [first, second] = reports.as_slice() {
                self.no_orphan_after(first, Some(second));
            }
        } else {
            for i in 0..(1 + u32::from(duplicate)) {
                totals.runs += 1;
                let before = faults(&self.aws);
                // A claim left by an earlier run whose release failed holds its user until it
                // expires.
                let now = self.aws.clock.now();
                let leftover: BTreeSet<UserName> = self
                    .world
                    .managed
                    .iter()
                    .filter(|u| {
                        self.aws
                            .lease
                            .claim(u)
                            .is_some_and(|(_, until)| until > now)
                    })
                    .cloned()
                    .collect();
                let options = if i == 0 {
                    options.clone()
                } else {
                    RunOptions::default()
                };
                if let Ok(report) = block_on(a.run(&options)) {
                    let fault_free = faults(&self.aws) == before && !before.2;
                    self.after_run(&report, Some(&(fault_free, leftover)), totals);
                    self.no_orphan_after(&report, None);
                }
            }
        }
        self.restart_after_crash(totals);
    }

    /// A crashed process comes back: its leases stay in the table until they expire, but it
    /// holds nothing any more.
    fn restart_after_crash(&self, totals: &mut Totals) {
        if self.aws.plan.is_crashed() {
            totals.crashes += 1;
            self.aws.plan.restart();
            self.world.seen().tokens.clear();
        }
    }

    /// After a run: every managed user got an outcome; after a fault-free run of one process
    /// every user no person is interfering with is waiting; failures of other runs excuse one
    /// schedule interval of liveness each.
    fn after_run(
        &self,
        report: &RunReport,
        fault_free: Option<&(bool, BTreeSet<UserName>)>,
        totals: &mut Totals,
    ) {
        if std::env::var_os("KEYROT_SIM_TRACE").is_some() {
            println!(
                "{} (fault-free: {fault_free:?})\n{report}",
                self.aws.clock.now()
            );
        }
        let reported: BTreeSet<&UserName> = report.users.iter().map(|u| &u.user).collect();
        if reported != self.world.managed.iter().collect() {
            self.world
                .violation(format!("run reported {reported:?}, not every managed user"));
        }
        for user in &report.users {
            let strict =
                fault_free.is_some_and(|(free, leftover)| *free && !leftover.contains(&user.user));
            if strict
                && !self.interfered(&user.user)
                && !matches!(user.outcome, Outcome::Waiting(_))
            {
                self.world.violation(format!(
                    "a fault-free run of one process left {} {}",
                    user.user, user.outcome
                ));
            }
            if user.outcome.is_failure() || matches!(user.outcome, Outcome::Busy { .. }) {
                self.world
                    .seen()
                    .excused
                    .entry(user.user.clone())
                    .or_default()
                    .1 += 1;
            }
            totals.busy += u64::from(matches!(user.outcome, Outcome::Busy { .. }));
            totals.rotations += u64::from(user.rotated());
            for step in &user.steps {
                match step {
                    Step::Delete(_) => totals.deletions += 1,
                    Step::DeleteOrphan(_) => totals.orphans_deleted += 1,
                    Step::Deactivate { forced: true, .. } => totals.forced += 1,
                    _ => {}
                }
            }
        }
    }

    /// DESIGN's orphan rule, in its words: a key keyrot created and never stored survives no
    /// successful run. (With two processes, a user's run succeeded if both ended waiting.)
    fn no_orphan_after(&self, report: &RunReport, other: Option<&RunReport>) {
        let created: BTreeSet<AccessKeyId> = self
            .aws
            .iam
            .history()
            .into_iter()
            .filter_map(|e| match e.action {
                IamAction::Created(key) => Some(key),
                _ => None,
            })
            .collect();
        let waiting = |r: &RunReport, u: &UserName| {
            r.users
                .iter()
                .any(|x| &x.user == u && matches!(x.outcome, Outcome::Waiting(_)))
        };
        for user in &report.users {
            if !waiting(report, &user.user) || other.is_some_and(|o| !waiting(o, &user.user)) {
                continue;
            }
            let stored = self.aws.store.snapshot(&user.user);
            for key in self.aws.iam.keys(&user.user) {
                if created.contains(&key.id) && !stored.has_version(&key.id) {
                    self.world.violation(format!(
                        "{}: {} was created by keyrot, never stored, and survived a successful \
                         run",
                        user.user, key.id
                    ));
                }
            }
        }
    }

    /// Whether a person is acting on `user` now: an operator's key, or an incident.
    fn interfered(&self, user: &UserName) -> bool {
        self.operator_keys.iter().any(|o| &o.user == user)
            || self.incidents.iter().any(|i| &i.user == user)
    }

    /// Operators now and then make a key of their own for a managed user (a job starts using
    /// it at once), and delete it again a day or two later.
    fn operators(&mut self, totals: &mut Totals) {
        let now = self.aws.clock.now();
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.operator_keys)
            .into_iter()
            .partition(|o| now >= o.remove_at);
        self.operator_keys = kept;
        for o in gone {
            self.aws
                .iam
                .remove_key(&o.user, &o.credentials.access_key_id);
            self.world
                .seen()
                .foreign
                .remove(&o.credentials.access_key_id);
        }
        if !self.rng.random_bool(0.003) {
            return;
        }
        let managed: Vec<UserName> = self.world.managed.iter().cloned().collect();
        let user = managed[self.rng.random_range(0..managed.len())].clone();
        if self.interfered(&user) || self.aws.iam.keys(&user).len() >= 2 {
            return;
        }
        // Only beside a key keyrot knows: alone, it would be the key in service, and adopted.
        let stored = self.aws.store.snapshot(&user);
        if !self.aws.iam.keys(&user).iter().any(|k| stored.knows(&k.id)) {
            return;
        }
        let Ok(new) = self.aws.iam.add_key(&user, KeyStatus::Active, now) else {
            return;
        };
        totals.operator_keys += 1;
        self.world.seen().foreign.insert(new.key.id.clone());
        let remove_at = now + HOUR * self.rng.random_range(12..=60);
        self.operator_keys.push(OperatorKey {
            user,
            credentials: new.credentials(),
            remove_at,
        });
    }

    /// Administrators now and then deactivate every key of a managed user (an incident), and
    /// re-activate them a day or two later.
    fn administrators(&mut self, totals: &mut Totals) {
        let now = self.aws.clock.now();
        // An incident ends in two steps: the keys are re-activated, and an hour later (the
        // change has propagated by then) the user is no longer the administrator's.
        for incident in &mut self.incidents {
            if now >= incident.until && incident.restored.is_none() {
                for key in &incident.keys {
                    self.aws.iam.set_key_status(key, KeyStatus::Active);
                }
                incident.restored = Some(now);
                let mut seen = self.world.seen();
                seen.disabled.remove(&incident.user);
                seen.settling.insert(incident.user.clone());
            }
        }
        let (over, going): (Vec<_>, Vec<_>) = std::mem::take(&mut self.incidents)
            .into_iter()
            .partition(|i| i.restored.is_some_and(|at| now >= at + HOUR));
        self.incidents = going;
        for incident in over {
            self.world.seen().settling.remove(&incident.user);
            for c in self
                .consumers
                .iter_mut()
                .filter(|c| c.user == incident.user)
            {
                c.fetched = now - c.refresh;
            }
        }
        if !self.rng.random_bool(0.001) {
            return;
        }
        let managed: Vec<UserName> = self.world.managed.iter().cloned().collect();
        let user = managed[self.rng.random_range(0..managed.len())].clone();
        let keys: Vec<AccessKeyId> = self
            .aws
            .iam
            .keys(&user)
            .into_iter()
            .filter(|k| k.status == KeyStatus::Active)
            .map(|k| k.id)
            .collect();
        if self.interfered(&user) || keys.is_empty() {
            return;
        }
        totals.disabled += 1;
        if std::env::var_os("KEYROT_SIM_TRACE").is_some() {
            println!("{now} incident: {user} {keys:?}");
        }
        for key in &keys {
            self.aws.iam.set_key_status(key, KeyStatus::Inactive);
        }
        self.world.seen().disabled.insert(user.clone());
        let until = now + HOUR * self.rng.random_range(12..=48);
        self.incidents.push(Incident {
            user,
            keys,
            until,
            restored: None,
        });
    }

    /// A person rolls a random managed user back; the result must match what was there.
    fn roll_back(&mut self, person: &Rotator, totals: &mut Totals) {
        let managed: Vec<UserName> = self.world.managed.iter().cloned().collect();
        let user = managed[self.rng.random_range(0..managed.len())].clone();
        if self.interfered(&user) {
            return;
        }
        let stored = self.aws.store.snapshot(&user);
        let keys = self.aws.iam.keys(&user);
        let current = stored.current().cloned();
        let previous = stored
            .versions
            .iter()
            .filter(|v| v.stages.previous && Some(&v.key_id) != current.as_ref())
            .find_map(|v| keys.iter().find(|k| k.id == v.key_id))
            .cloned();
        let before = faults(&self.aws);
        let result = block_on(person.rollback(&user));
        if std::env::var_os("KEYROT_SIM_TRACE").is_some() {
            println!("{} rollback of {user}: {result:?}", self.aws.clock.now());
        }
        let fault_free = faults(&self.aws) == before && !before.2;
        totals.rollbacks += 1;
        match (&result, &previous) {
            (Ok(key), Some(expected)) if key == &expected.id => {
                if self.aws.store.current_key(&user).as_ref() != Some(key) {
                    self.world.violation(format!(
                        "{user}: rolled back to {key}, which is not current: {:?}",
                        self.aws.store.versions(&user)
                    ));
                }
            }
            (Ok(key), _) => self.world.violation(format!(
                "{user}: rolled back to {key}, expected {:?}",
                previous.map(|p| p.id)
            )),
            (Err(RollbackError::NoPreviousKey), None) => totals.rollbacks_refused += 1,
            (Err(error), _) if !fault_free => {
                totals.rollbacks_refused += 1;
                let _ = error;
            }
            (Err(error), _) => self.world.violation(format!(
                "{user}: a fault-free rollback with previous key {:?} failed: {error}",
                previous.map(|p| p.id)
            )),
        }
        self.restart_after_crash(totals);
    }

    /// Every consumer uses its key; those due refetch the current key first. The jobs on
    /// operators' keys use theirs. Users an administrator disabled are left alone.
    fn consume(&mut self, totals: &mut Totals) -> Result<(), String> {
        let now = self.aws.clock.now();
        let disabled: BTreeSet<UserName> = {
            let seen = self.world.seen();
            seen.disabled.union(&seen.settling).cloned().collect()
        };
        for consumer in &mut self.consumers {
            if disabled.contains(&consumer.user) {
                continue;
            }
            let due = now >= consumer.fetched + consumer.refresh;
            if (due || consumer.credentials.is_none())
                && let Some(current) = self.aws.store.current_credentials(&consumer.user)
            {
                consumer.credentials = Some(current);
                consumer.fetched = now;
            }
            if let Some(credentials) = &consumer.credentials {
                totals.consumer_uses += 1;
                if let Err(failure) = self.aws.iam.authenticate(credentials, now) {
                    return Err(format!(
                        "{}'s consumer was refused with {}: {failure} (keys {:?}, current {:?})",
                        consumer.user,
                        credentials.access_key_id,
                        self.aws.iam.keys(&consumer.user),
                        self.aws.store.current_key(&consumer.user),
                    ));
                }
            }
        }
        for job in &self.operator_keys {
            if disabled.contains(&job.user) {
                continue;
            }
            totals.job_uses += 1;
            if let Err(failure) = self.aws.iam.authenticate(&job.credentials, now) {
                return Err(format!(
                    "{}: the job on the operator's key {} was refused: {failure}",
                    job.user, job.credentials.access_key_id
                ));
            }
        }
        Ok(())
    }
}
