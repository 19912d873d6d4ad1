//! One seed's world: the rotator processes, the people around them and the consumers.

use super::*;

/// A program using one user's key: it refetches the current key every `refresh` and uses the
/// key it holds every hour. Zero downtime means its key always authenticates.
pub(crate) struct Consumer {
    pub(crate) user: UserName,
    pub(crate) refresh: Duration,
    pub(crate) fetched: Timestamp,
    pub(crate) credentials: Option<Credentials>,
}

/// A key an operator made by hand, a job that uses it every hour, and when the operator
/// deletes it again.
pub(crate) struct OperatorKey {
    pub(crate) user: UserName,
    pub(crate) credentials: Credentials,
    pub(crate) remove_at: Timestamp,
}

/// An administrator's incident: every key of `user` deactivated, re-activated at `until`
/// (and the user handed back an hour later).
pub(crate) struct Incident {
    pub(crate) user: UserName,
    pub(crate) keys: Vec<AccessKeyId>,
    pub(crate) until: Timestamp,
    pub(crate) restored: Option<Timestamp>,
}

/// Who calls the ports: each rotator process has its own wrappers, so the checker knows whose
/// lease a call must be made under.
pub(crate) type Proc = u8;
pub(crate) const PROC_A: Proc = 0;
pub(crate) const PROC_B: Proc = 1;
/// A person running `keyrot rollback`.
pub(crate) const PROC_PERSON: Proc = 2;

pub(crate) struct Sim {
    pub(crate) rng: ChaCha8Rng,
    pub(crate) aws: FakeAws,
    pub(crate) policy: Policy,
    pub(crate) world: Arc<World>,
    pub(crate) consumers: Vec<Consumer>,
    pub(crate) operator_keys: Vec<OperatorKey>,
    pub(crate) incidents: Vec<Incident>,
    /// Users keyrot must never touch, with their keys at the start.
    pub(crate) untouchable: BTreeMap<UserName, Vec<AccessKey>>,
    /// The probability that a scheduled run is two processes at once.
    pub(crate) concurrency: f64,
    /// Weakens the lease (for the test that shows the checker notices).
    pub(crate) lease_always_granted: bool,
    /// Skips the read-back of deliveries (for the test that shows the checker notices).
    pub(crate) trust_deliveries: bool,
    /// Destinations down now, and until when.
    pub(crate) outages: Vec<(keyrot_core::delivery::Destination, Timestamp)>,
}

impl Sim {
    pub(crate) fn new(seed: u64) -> Self {
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
            destinations: {
                let destinations =
                    keyrot_core::fake::FakeDestinations::new(aws.clock.clone(), seed);
                delivery::configure(&destinations, &mut rng);
                destinations
            },
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
            trust_deliveries: false,
            outages: Vec::new(),
        }
    }

    /// A rotator process: its own checked wrappers around the shared fakes.
    pub(crate) fn rotator(&self, proc: Proc) -> Rotator {
        let ports = Ports {
            iam: Arc::new(CheckedIam(self.world.clone(), proc)),
            store: Arc::new(CheckedStore(self.world.clone(), proc)),
            lease: Arc::new(CheckedLease {
                world: self.world.clone(),
                proc,
                always_granted: self.lease_always_granted,
            }),
            notifier: Arc::new(CheckedNotifier(self.world.clone())),
            ..self.aws.ports()
        };
        Rotator::new(ports, self.policy.clone())
            .with_concurrency(2)
            .with_delivery(Arc::new(delivery::CheckedDelivery(
                self.world.clone(),
                proc,
                self.trust_deliveries,
            )))
    }

    pub(crate) fn run(mut self, days: u64) -> Result<Totals, String> {
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
            self.consume_destinations()?;
            self.destination_outages();
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
        totals.notices_repeated = self.world.seen().repeats_sent;
        {
            let seen = self.world.seen();
            totals.deliveries = seen.deliveries;
            totals.destination_uses = seen.destination_uses;
            totals.outages = seen.outages;
            totals.forced_past_delivery = seen.forced_past_delivery;
        }
        Ok(totals)
    }

    /// The schedule's run: one process, sometimes two at once, sometimes run twice.
    pub(crate) fn scheduled_run(&mut self, a: &Rotator, b: &Rotator, totals: &mut Totals) {
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
            self.world.seen().concurrent = true;
            totals.runs += 2;
            let (first, second) = block_on(futures::future::join(
                a.run(&options),
                b.run(&RunOptions::default()),
            ));
            self.world.seen().concurrent = false;
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
    pub(crate) fn restart_after_crash(&self, totals: &mut Totals) {
        if self.aws.plan.is_crashed() {
            totals.crashes += 1;
            self.aws.plan.restart();
            self.world.seen().tokens.clear();
        }
    }

    /// After a run: every managed user got an outcome; after a fault-free run of one process
    /// every user no person is interfering with is waiting; failures of other runs excuse one
    /// schedule interval of liveness each.
    pub(crate) fn after_run(
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
            if fault_free.is_some() && self.world.notified(report, user) {
                totals.notices_held_back += 1;
            }
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
    pub(crate) fn no_orphan_after(&self, report: &RunReport, other: Option<&RunReport>) {
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
    pub(crate) fn interfered(&self, user: &UserName) -> bool {
        self.operator_keys.iter().any(|o| &o.user == user)
            || self.incidents.iter().any(|i| &i.user == user)
    }

    /// Operators now and then make a key of their own for a managed user (a job starts using
    /// it at once), and delete it again a day or two later.
    pub(crate) fn operators(&mut self, totals: &mut Totals) {
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
    pub(crate) fn administrators(&mut self, totals: &mut Totals) {
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
    pub(crate) fn roll_back(&mut self, person: &Rotator, totals: &mut Totals) {
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
    pub(crate) fn consume(&mut self, totals: &mut Totals) -> Result<(), String> {
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
