//! The checker: what it knows of the world, and every state invariant of DESIGN.md.

use super::*;

/// What the checker knows, shared by the wrappers that check around every call.
pub(crate) struct World {
    pub(crate) aws: FakeAws,
    pub(crate) policy: Policy,
    pub(crate) start: Timestamp,
    pub(crate) managed: BTreeSet<UserName>,
    /// The users' delivery destinations.
    pub(crate) destinations: keyrot_core::fake::FakeDestinations,
    pub(crate) seen: Mutex<Seen>,
}

#[derive(Default)]
pub(crate) struct Seen {
    /// Who owns each key ever seen (IAM forgets deleted keys).
    pub(crate) owner: BTreeMap<AccessKeyId, UserName>,
    /// Keys that were ever served (current, or in service before keyrot adopted them), with
    /// when they stopped being current.
    pub(crate) served: BTreeMap<AccessKeyId, Option<Timestamp>>,
    /// Served keys seen inactive or deleted, so each is judged once.
    pub(crate) retired: BTreeSet<AccessKeyId>,
    /// When each served key was first seen inactive.
    pub(crate) inactive_since: BTreeMap<AccessKeyId, Timestamp>,
    /// Served keys seen deleted, so each is judged once.
    pub(crate) deleted: BTreeSet<AccessKeyId>,
    /// Each user's current key and since when it has been current.
    pub(crate) current_since: BTreeMap<UserName, (AccessKeyId, Timestamp)>,
    /// Each user's current key, and how many of the user's runs failed excusably since it
    /// became current: liveness can only hold while AWS answers, so each such run excuses one
    /// schedule interval.
    pub(crate) excused: BTreeMap<UserName, (Option<AccessKeyId>, u32)>,
    /// Operators' keys: keyrot must never deactivate or delete them.
    pub(crate) foreign: BTreeSet<AccessKeyId>,
    /// Users whose every key an administrator deactivated: keyrot must not give access back.
    pub(crate) disabled: BTreeSet<UserName>,
    /// Users whose keys an administrator has just re-activated: the change is propagating.
    pub(crate) settling: BTreeSet<UserName>,
    /// The lease token each process holds for each user, as the lease granted it.
    pub(crate) tokens: BTreeMap<(Proc, UserName), LeaseToken>,
    /// Third-key requests seen so far.
    pub(crate) third_keys: u64,
    /// The last standing condition notified about each user.
    pub(crate) last_delivered: BTreeMap<UserName, Delivered>,
    /// When each standing notice (user, fingerprint) last went out.
    pub(crate) delivered_at: BTreeMap<(UserName, String), Timestamp>,
    /// Whether two processes are running at once.
    pub(crate) concurrent: bool,
    /// Standing notices sent again once the repeat period had passed.
    pub(crate) repeats_sent: u64,
    /// Keys deactivated at the maximum grace while a destination lacked their successor:
    /// that destination's consumer is excused.
    pub(crate) forced_off: BTreeSet<AccessKeyId>,
    /// How many such deactivations, destination outages, writes to destinations and uses of
    /// a key read from a destination there were.
    pub(crate) forced_past_delivery: u64,
    pub(crate) outages: u64,
    pub(crate) deliveries: u64,
    pub(crate) destination_uses: u64,
    pub(crate) violations: Vec<String>,
}

impl World {
    pub(crate) fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn violation(&self, what: String) {
        self.seen().violations.push(what);
    }

    /// Before a call that changes anything for `user`: the user is managed, and `proc` holds
    /// the user's lease, live now.
    pub(crate) fn before_touch(&self, proc: Proc, user: &UserName, what: &str) {
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
    pub(crate) fn before_retire(&self, proc: Proc, user: &UserName, key: &AccessKeyId, what: &str) {
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
        if what == "deactivate" {
            self.before_deactivate(user, key);
        }
        self.before_touch(proc, user, what);
    }

    /// After a CreateAccessKey: it was not a third-key request.
    pub(crate) fn after_create(&self) {
        let asked = self.aws.iam.third_key_requests();
        let mut seen = self.seen();
        if asked != seen.third_keys {
            seen.third_keys = asked;
            seen.violations
                .push("keyrot asked IAM for a third key".to_owned());
        }
    }

    /// Checks every state invariant of DESIGN.md against the fakes as they are now.
    pub(crate) fn check(&self) {
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
