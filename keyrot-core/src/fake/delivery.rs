//! In-memory delivery destinations (SSM parameters, Secrets Manager secrets, GitHub Actions
//! secrets) that are as hostile as the real ones, with a seeded fault plan of their own.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::clock::SimClock;
use crate::delivery::{Delivery, DeliveryError, Destination, Target};
use crate::model::{AccessKeyId, Credentials, Timestamp, UserName};

/// How the fake destinations misbehave, each a probability per call.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DeliveryFaults {
    /// The call fails before it has any effect (a 5xx, a broken connection).
    pub fail: f64,
    /// A write lands but its reply is lost: the caller sees an error.
    pub lost_reply: f64,
    /// The call is throttled, with no effect.
    pub throttle: f64,
}

/// In-memory destinations shared by clones. Each user's destinations are set by the test
/// ([`FakeDestinations::set_destinations`]); what each target holds is kept by target, so a
/// destination dropped from a user's list keeps what it held (keyrot leaves it alone).
///
/// The rules, and which real behaviour each follows:
/// - SSM and Secrets Manager are read back (GetParameter with decryption, GetSecretValue), but
///   a read may show the value from before a write for [`FakeDestinations::set_read_lag`]:
///   AWS documents no read-after-write guarantee for either, so the fake assumes the worst
///   (and the driver must not take "not seen yet" for "delivered").
/// - GitHub Actions secrets cannot be read back (GitHub's REST API returns a secret's name,
///   `created_at` and `updated_at`, never its value): `holds` is true only for a key whose
///   write this fake answered with success, as the real adapter can know only its own accepted
///   writes. A write whose reply was lost has landed, but `holds` says no until it is
///   written again.
/// - Any call may fail before its effect, be throttled, or (a write) land and lose its reply,
///   as an HTTP call to any of them can; and a target can be made to refuse every call
///   ([`FakeDestinations::set_down`]), as a missing parameter, a revoked token or a denied
///   role does, until it is repaired.
#[derive(Clone)]
pub struct FakeDestinations {
    inner: Arc<Inner>,
}

struct Inner {
    clock: SimClock,
    state: Mutex<State>,
}

struct State {
    rng: ChaCha8Rng,
    faults: DeliveryFaults,
    read_lag: Duration,
    configured: BTreeMap<UserName, Vec<Destination>>,
    /// By target (as printed): every write that landed, oldest first.
    writes: BTreeMap<String, Vec<(Timestamp, Credentials)>>,
    /// By target: the keys whose write was answered with success (GitHub's `holds`).
    acknowledged: BTreeMap<String, AccessKeyId>,
    down: BTreeMap<String, bool>,
    calls: u64,
}

impl FakeDestinations {
    /// Destinations on `clock`, faults drawn from `seed`, none until set.
    pub fn new(clock: SimClock, seed: u64) -> Self {
        Self {
            inner: Arc::new(Inner {
                clock,
                state: Mutex::new(State {
                    rng: ChaCha8Rng::seed_from_u64(seed ^ 0x6465_6c69_7665_7279),
                    faults: DeliveryFaults::default(),
                    read_lag: Duration::ZERO,
                    configured: BTreeMap::new(),
                    writes: BTreeMap::new(),
                    acknowledged: BTreeMap::new(),
                    down: BTreeMap::new(),
                    calls: 0,
                }),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets `user`'s destinations (as configuration or the user's tag would declare them).
    pub fn set_destinations(&self, user: &UserName, destinations: Vec<Destination>) {
        self.state().configured.insert(user.clone(), destinations);
    }

    /// `user`'s destinations, as set (the test's view; no fault, no count).
    pub fn configured(&self, user: &UserName) -> Vec<Destination> {
        self.state()
            .configured
            .get(user)
            .cloned()
            .unwrap_or_default()
    }

    /// Sets the fault probabilities.
    pub fn set_faults(&self, faults: DeliveryFaults) {
        self.state().faults = faults;
    }

    /// How long a read-back may show the value from before a write (SSM, Secrets Manager).
    pub fn set_read_lag(&self, lag: Duration) {
        self.state().read_lag = lag;
    }

    /// Makes `destination` refuse every call (with a not-found error), or serve again.
    pub fn set_down(&self, destination: &Destination, down: bool) {
        self.state()
            .down
            .insert(destination.target.to_string(), down);
    }

    /// What `destination` truly holds now (what its consumer reads once any lag is over).
    pub fn held(&self, destination: &Destination) -> Option<Credentials> {
        self.state()
            .writes
            .get(&destination.target.to_string())
            .and_then(|w| w.last().map(|(_, c)| c.clone()))
    }

    /// How many calls keyrot made.
    pub fn calls(&self) -> u64 {
        self.state().calls
    }

    /// Decides a call's fault: `Err` before any effect, `Ok(true)` when a write's reply is to
    /// be lost.
    fn enter(&self, destination: &Destination) -> Result<bool, DeliveryError> {
        let mut state = self.state();
        state.calls += 1;
        if state
            .down
            .get(&destination.target.to_string())
            .copied()
            .unwrap_or(false)
        {
            return Err(DeliveryError::NotFound(
                format!("{} refuses every call", destination.target.kind()).into(),
            ));
        }
        let faults = state.faults;
        let roll: f64 = state.rng.random();
        if roll < faults.fail {
            return Err(DeliveryError::Other(
                "injected failure before the call".into(),
            ));
        }
        if roll < faults.fail + faults.throttle {
            return Err(DeliveryError::Throttled("injected throttle".into()));
        }
        Ok(roll < faults.fail + faults.throttle + faults.lost_reply)
    }
}

#[async_trait]
impl Delivery for FakeDestinations {
    async fn destinations(&self, user: &UserName) -> Result<Vec<Destination>, DeliveryError> {
        Ok(self.configured(user))
    }

    async fn holds(
        &self,
        _user: &UserName,
        destination: &Destination,
        key: &AccessKeyId,
    ) -> Result<bool, DeliveryError> {
        self.enter(destination)?;
        let now = self.inner.clock.now();
        let target = destination.target.to_string();
        let state = self.state();
        if let Target::GitHub { .. } = destination.target {
            return Ok(state.acknowledged.get(&target) == Some(key));
        }
        let lag = state.read_lag;
        // The newest write a read at `now` is sure to see, or a later one if lucky: the fake
        // shows the newest write older than the lag.
        let seen = state.writes.get(&target).and_then(|writes| {
            writes
                .iter()
                .rev()
                .find(|(at, _)| super::add(*at, lag) <= now)
                .map(|(_, c)| c.access_key_id.clone())
        });
        Ok(seen.as_ref() == Some(key))
    }

    async fn write(
        &self,
        _user: &UserName,
        destination: &Destination,
        credentials: &Credentials,
        _created: Timestamp,
    ) -> Result<(), DeliveryError> {
        let lose_reply = self.enter(destination)?;
        let now = self.inner.clock.now();
        let target = destination.target.to_string();
        let mut state = self.state();
        state
            .writes
            .entry(target.clone())
            .or_default()
            .push((now, credentials.clone()));
        if lose_reply {
            state.acknowledged.remove(&target);
            return Err(DeliveryError::Other(
                "injected: the write landed, its reply was lost".into(),
            ));
        }
        state
            .acknowledged
            .insert(target, credentials.access_key_id.clone());
        Ok(())
    }
}

impl std::fmt::Debug for FakeDestinations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeDestinations")
            .field("calls", &self.calls())
            .finish_non_exhaustive()
    }
}
