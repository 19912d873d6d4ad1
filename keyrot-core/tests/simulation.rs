//! The seeded simulation: many simulated days over many seeds, with injected faults and
//! crashes, duplicate and concurrent runs, and consumers that fetch the current key and keep
//! using it. Every invariant of DESIGN.md is checked after every call keyrot makes; a failure
//! names the seed that reproduces it.
//!
//! `KEYROT_SIM_SEEDS` (default 500) and `KEYROT_SIM_DAYS` (default 200) scale the run;
//! `KEYROT_SIM_SEED=N` runs one seed.

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

use keyrot_core::fake::{FakeAws, FaultRates};
use keyrot_core::{
    AccessKey, AccessKeyId, Credentials, Iam, IamError, KeyStatus, LastUsed, Mark, NewKey, Outcome,
    Policy, Ports, Rotator, RunOptions, SecretStore, Selection, StoreError, StoredUser, Timestamp,
    UserName,
};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}"))
        })
        .unwrap_or(default)
}

#[test]
fn simulation_keeps_every_invariant() {
    let days = env("KEYROT_SIM_DAYS", 200);
    let seeds: Vec<u64> = match std::env::var("KEYROT_SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("KEYROT_SIM_SEED must be a number")],
        Err(_) => (0..env("KEYROT_SIM_SEEDS", 500)).collect(),
    };
    // Seeds are independent: spread them over the cores.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let results: Vec<(u64, Result<Totals, String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let seeds = &seeds;
                scope.spawn(move || {
                    seeds
                        .iter()
                        .skip(w)
                        .step_by(workers)
                        .map(|&seed| (seed, Sim::new(seed).run(days)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut totals = Totals::default();
    let mut failures: Vec<(u64, String)> = Vec::new();
    for (seed, result) in results {
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
    println!("{} seeds x {days} days: {totals:?}", seeds.len());
    // The simulation must really exercise the lifecycle and the faults, not idle through.
    assert!(
        totals.rotations >= seeds.len() as u64 * days / 10,
        "{totals:?}"
    );
    assert!(
        totals.deletions > 0 && totals.orphans_deleted > 0,
        "{totals:?}"
    );
    assert!(
        totals.faults > 0 && totals.crashes > 0 && totals.concurrent_runs > 0,
        "{totals:?}"
    );
    assert!(totals.consumer_uses > 0, "{totals:?}");
}

#[derive(Debug, Default)]
struct Totals {
    rotations: u64,
    deletions: u64,
    orphans_deleted: u64,
    forced: u64,
    faults: u64,
    crashes: u64,
    runs: u64,
    concurrent_runs: u64,
    consumer_uses: u64,
}

impl Totals {
    fn add(&mut self, t: &Self) {
        self.rotations += t.rotations;
        self.deletions += t.deletions;
        self.orphans_deleted += t.orphans_deleted;
        self.forced += t.forced;
        self.faults += t.faults;
        self.crashes += t.crashes;
        self.runs += t.runs;
        self.concurrent_runs += t.concurrent_runs;
        self.consumer_uses += t.consumer_uses;
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

struct Sim {
    seed: u64,
    rng: ChaCha8Rng,
    aws: FakeAws,
    policy: Policy,
    world: Arc<World>,
    consumers: Vec<Consumer>,
    /// Users keyrot must never touch, with their keys at the start.
    untouchable: BTreeMap<UserName, Vec<AccessKey>>,
}

/// What the checker knows, shared by the wrappers that check after every call.
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
    /// Each user's current key, and how many of the user's runs failed since it became
    /// current: liveness can only hold while AWS answers, so each failed run excuses one
    /// schedule interval.
    excused: BTreeMap<UserName, (Option<AccessKeyId>, u32)>,
    violations: Vec<String>,
}

impl World {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn violation(&self, what: String) {
        self.seen().violations.push(what);
    }

    /// Before a call that deactivates or deletes `key`: never the current key, never a key of
    /// an unmanaged or exempt user.
    fn before_retire(&self, user: &UserName, key: &AccessKeyId, what: &str) {
        if self.aws.store.current_key(user).as_ref() == Some(key) {
            self.violation(format!(
                "{user}: keyrot asked to {what} the current key {key}"
            ));
        }
        self.before_touch(user, what);
    }

    fn before_touch(&self, user: &UserName, what: &str) {
        if !self.managed.contains(user) {
            self.violation(format!(
                "keyrot asked to {what} for unmanaged or exempt {user}"
            ));
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
            let current = self.aws.store.current_key(&user);
            let current_key = current
                .as_ref()
                .and_then(|c| keys.iter().find(|k| &k.id == c));
            if let Some(id) = &current {
                match current_key {
                    // Zero downtime: what callers are given authenticates at once.
                    Some(k) if now < k.created + self.aws.iam.propagation_delay() => {
                        seen.violations.push(format!(
                            "{user}: current key {id} does not authenticate yet"
                        ));
                    }
                    Some(k) if k.status == KeyStatus::Active => {}
                    Some(_) => seen
                        .violations
                        .push(format!("{user}: current key {id} inactive")),
                    None => seen
                        .violations
                        .push(format!("{user}: current key {id} missing")),
                }
                seen.served.entry(id.clone()).or_insert(None);
                // Every other served key of the user is superseded from now on.
                for (key, superseded) in &mut seen.served {
                    if key != id && superseded.is_none() && seen.owner.get(key) == Some(&user) {
                        *superseded = Some(now);
                    }
                }
            }
            // A served key stays active for at least the grace period after it was superseded.
            let retired: Vec<(AccessKeyId, Option<Timestamp>)> = seen
                .served
                .iter()
                .filter(|(id, _)| seen.owner.get(*id) == Some(&user) && !seen.retired.contains(*id))
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
                .filter(|(id, _)| seen.owner.get(*id) == Some(&user) && !seen.deleted.contains(*id))
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
            // Liveness: the key in service is replaced within period + grace + one interval.
            let in_service_since = current_key.map_or(self.start, |k| k.created.max(self.start));
            let excused = seen.excused.entry(user.clone()).or_default();
            if excused.0 != current {
                *excused = (current.clone(), 0);
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

/// IAM as keyrot sees it in the simulation: the fake, checked before and after every call, with
/// a yield per call so that concurrent runs interleave.
struct CheckedIam(Arc<World>);

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
        self.0.before_touch(user, "create a key");
        let r = self.0.aws.iam.create_key(user).await;
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
        if status == KeyStatus::Inactive {
            self.0.before_retire(user, key, "deactivate");
        } else {
            self.0.before_touch(user, "activate a key");
        }
        let r = self.0.aws.iam.set_status(user, key, status).await;
        self.0.check();
        r
    }

    async fn delete_key(&self, user: &UserName, key: &AccessKeyId) -> Result<(), IamError> {
        futures_yield().await;
        self.0.before_retire(user, key, "delete");
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
}

/// The secret store, checked after every call.
struct CheckedStore(Arc<World>);

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
        self.0.before_touch(user, "store a key");
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
        self.0.before_touch(user, "publish a key");
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
        self.0.before_touch(user, "mark a key");
        let r = self.0.aws.store.mark(user, key, mark, at).await;
        self.0.check();
        r
    }

    async fn clear_marks(&self, user: &UserName, key: &AccessKeyId) -> Result<(), StoreError> {
        futures_yield().await;
        let r = self.0.aws.store.clear_marks(user, key).await;
        self.0.check();
        r
    }

    async fn record_intent(&self, user: &UserName, at: Timestamp) -> Result<(), StoreError> {
        futures_yield().await;
        self.0.before_touch(user, "record an intent");
        let r = self.0.aws.store.record_intent(user, at).await;
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
}

fn futures_yield() -> keyrot_core::fake::YieldNow {
    keyrot_core::fake::yield_now()
}

fn user(name: &str) -> UserName {
    UserName::new(name).unwrap()
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
        let policy = Policy::builder()
            .rotation_period(7 * DAY)
            .grace(DAY)
            .max_grace(2 * DAY)
            .recovery_window(DAY)
            .quiet_period(12 * HOUR + HOUR)
            .verify_timeout(Duration::from_secs(300))
            .schedule_interval(6 * HOUR)
            .exempt([user("dave")])
            .build()
            .unwrap();

        // alice: an old legacy key, due at once; bob: no key; carol: a young legacy key;
        // frank: an inactive and an active legacy key; dave: tagged but exempt; erin: not
        // managed at all.
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
        legacy.push(add("frank", KeyStatus::Active, 20 * DAY));
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
            seed,
            rng,
            aws,
            policy,
            world,
            consumers,
            untouchable,
        }
    }

    fn rotator(&self) -> Rotator {
        let ports = Ports {
            iam: Arc::new(CheckedIam(self.world.clone())),
            store: Arc::new(CheckedStore(self.world.clone())),
            ..self.aws.ports()
        };
        Rotator::new(ports, self.policy.clone()).with_concurrency(2)
    }

    fn run(mut self, days: u64) -> Result<Totals, String> {
        let rotator = self.rotator();
        let mut totals = Totals::default();
        let hours = days * 24;
        let every = self.policy.schedule_interval().as_secs() / 3600;
        for hour in 0..hours {
            self.consume(&mut totals)?;
            if hour % every == 0 {
                let concurrent = self.rng.random_bool(0.05);
                let duplicate = self.rng.random_bool(0.1);
                let force = self.rng.random_bool(0.01);
                if self.rng.random_bool(0.2) {
                    // IAM's last-used answers fail often enough to matter: "unknown" must
                    // always mean "maybe in use".
                    self.aws
                        .plan
                        .fail_at("iam.last_used", keyrot_core::fake::FaultKind::FailBefore);
                }
                let options = RunOptions {
                    force,
                    ..RunOptions::default()
                };
                if concurrent {
                    totals.concurrent_runs += 1;
                    let (a, b) = block_on(futures::future::join(
                        rotator.run(&options),
                        rotator.run(&RunOptions::default()),
                    ));
                    for report in [a, b].into_iter().flatten() {
                        self.after_run(&report, false, &mut totals);
                    }
                } else {
                    let third_keys = self.aws.iam.third_key_requests();
                    let report = block_on(rotator.run(&options));
                    if let Ok(report) = &report {
                        self.after_run(report, true, &mut totals);
                    }
                    if self.aws.iam.third_key_requests() != third_keys {
                        self.world
                            .violation("keyrot asked IAM for a third key".into());
                    }
                    if duplicate {
                        totals.runs += 1;
                        if let Ok(report) = block_on(rotator.run(&RunOptions::default())) {
                            self.after_run(&report, true, &mut totals);
                        }
                    }
                }
                totals.runs += 1;
                if self.aws.plan.is_crashed() {
                    totals.crashes += 1;
                    self.aws.plan.restart();
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
        totals.faults = self.aws.plan.total_calls().min(
            keyrot_core::fake::FaultKind::ALL
                .iter()
                .map(|k| self.aws.plan.injected(*k))
                .sum(),
        );
        let _ = self.seed;
        Ok(totals)
    }

    /// After a run: every managed user got an outcome, and (for a single writer) no orphan
    /// survived a user's successful run.
    fn after_run(&self, report: &keyrot_core::RunReport, single: bool, totals: &mut Totals) {
        if std::env::var_os("KEYROT_SIM_TRACE").is_some() {
            println!("{} (single: {single})\n{report}", self.aws.clock.now());
        }
        let reported: BTreeSet<&UserName> = report.users.iter().map(|u| &u.user).collect();
        if reported != self.world.managed.iter().collect() {
            self.world
                .violation(format!("run reported {reported:?}, not every managed user"));
        }
        for user in &report.users {
            if user.outcome.is_failure() {
                self.world
                    .seen()
                    .excused
                    .entry(user.user.clone())
                    .or_default()
                    .1 += 1;
            }
            totals.rotations += u64::from(user.rotated());
            for step in &user.steps {
                match step {
                    keyrot_core::Step::Delete(_) => totals.deletions += 1,
                    keyrot_core::Step::DeleteOrphan(_) => totals.orphans_deleted += 1,
                    keyrot_core::Step::Deactivate { forced: true, .. } => totals.forced += 1,
                    _ => {}
                }
            }
            if single && matches!(user.outcome, Outcome::Waiting(_)) {
                let stored = self.aws.store.snapshot(&user.user);
                for key in self.aws.iam.keys(&user.user) {
                    if !stored.knows(&key.id) {
                        self.world.violation(format!(
                            "{}: orphan {} survived a successful run",
                            user.user, key.id
                        ));
                    }
                }
            }
        }
    }

    /// Every consumer uses its key; those due refetch the current key first.
    fn consume(&mut self, totals: &mut Totals) -> Result<(), String> {
        let now = self.aws.clock.now();
        for consumer in &mut self.consumers {
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
                        "{}'s consumer was refused with {}: {failure}",
                        consumer.user, credentials.access_key_id
                    ));
                }
            }
        }
        Ok(())
    }
}
