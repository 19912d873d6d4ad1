//! The fault plan: seeded or scripted failures, crashes, latency, a rate limit and call counters,
//! shared by every fake of a simulation.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::clock::SimClock;
use crate::model::Timestamp;
use crate::ports::Clock;

/// Names of the operations the fakes count and fault, one per port method.
pub mod op {
    /// [`Iam::managed_users`](crate::Iam::managed_users).
    pub const IAM_MANAGED_USERS: &str = "iam.managed_users";
    /// [`Iam::list_keys`](crate::Iam::list_keys).
    pub const IAM_LIST_KEYS: &str = "iam.list_keys";
    /// [`Iam::create_key`](crate::Iam::create_key).
    pub const IAM_CREATE_KEY: &str = "iam.create_key";
    /// [`Iam::set_status`](crate::Iam::set_status).
    pub const IAM_SET_STATUS: &str = "iam.set_status";
    /// [`Iam::delete_key`](crate::Iam::delete_key).
    pub const IAM_DELETE_KEY: &str = "iam.delete_key";
    /// [`Iam::last_used`](crate::Iam::last_used).
    pub const IAM_LAST_USED: &str = "iam.last_used";
    /// [`SecretStore::load`](crate::SecretStore::load).
    pub const STORE_LOAD: &str = "store.load";
    /// [`SecretStore::put_pending`](crate::SecretStore::put_pending).
    pub const STORE_PUT_PENDING: &str = "store.put_pending";
    /// [`SecretStore::promote`](crate::SecretStore::promote).
    pub const STORE_PROMOTE: &str = "store.promote";
    /// [`SecretStore::record_marks`](crate::SecretStore::record_marks).
    pub const STORE_MARK: &str = "store.mark";
    /// [`SecretStore::clear_marks`](crate::SecretStore::clear_marks).
    pub const STORE_CLEAR_MARKS: &str = "store.clear_marks";
    /// [`SecretStore::credentials`](crate::SecretStore::credentials).
    pub const STORE_CREDENTIALS: &str = "store.credentials";
    /// [`SecretStore::current`](crate::SecretStore::current).
    pub const STORE_CURRENT: &str = "store.current";
    /// [`Verifier::authenticates`](crate::Verifier::authenticates).
    pub const VERIFY: &str = "verifier.authenticates";
    /// [`Notifier::notify`](crate::Notifier::notify) (only the recording notifier's own
    /// switch fails it; the plan does not).
    pub const NOTIFY: &str = "notifier.notify";
    /// [`SecretStore::record_intent`](crate::SecretStore::record_intent).
    pub const STORE_RECORD_INTENT: &str = "store.record_intent";
    /// [`SecretStore::record_notice`](crate::SecretStore::record_notice).
    pub const STORE_RECORD_NOTICE: &str = "store.record_notice";
    /// [`Lease::acquire`](crate::Lease::acquire).
    pub const LEASE_ACQUIRE: &str = "lease.acquire";
    /// [`Lease::renew`](crate::Lease::renew).
    pub const LEASE_RENEW: &str = "lease.renew";
    /// [`Lease::release`](crate::Lease::release).
    pub const LEASE_RELEASE: &str = "lease.release";
    /// [`Lease::acquire_all`](crate::Lease::acquire_all).
    pub const LEASE_ACQUIRE_ALL: &str = "lease.acquire_all";
    /// [`Lease::release_all`](crate::Lease::release_all).
    pub const LEASE_RELEASE_ALL: &str = "lease.release_all";
    /// [`Iam::credential_report`](crate::Iam::credential_report).
    pub const IAM_CREDENTIAL_REPORT: &str = "iam.credential_report";
    /// [`SecretStore::list_stored`](crate::SecretStore::list_stored).
    pub const STORE_LIST: &str = "store.list_stored";
}

/// Which calls the simulated SDK retries after a reply was lost ([`FaultKind::FailAfter`]):
/// the effect has happened, and the retry performs the call again, as the AWS SDK's standard
/// retry does for a 5xx or a timeout (up to `max_attempts`, 5 in keyrot's defaults). A call
/// that is not idempotent shows its hazard here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SdkRetries {
    /// No retries: a lost reply is an error to the caller (the fakes' plain behaviour).
    #[default]
    Off,
    /// As keyrot's AWS adapters are configured: every call but `CreateAccessKey`
    /// ([`op::IAM_CREATE_KEY`]), whose retries are turned off, is retried.
    AsAdapters,
    /// Every call, `CreateAccessKey` too: what an adapter with the SDK's defaults would do.
    All,
}

impl SdkRetries {
    /// Whether the SDK retries `op` after a lost reply.
    pub fn retries(self, op: &str) -> bool {
        match self {
            Self::Off => false,
            Self::AsAdapters => op != op::IAM_CREATE_KEY,
            Self::All => true,
        }
    }
}

/// The SDK's attempts per call (the standard retry mode's default in keyrot).
const SDK_MAX_ATTEMPTS: u32 = 5;

/// What goes wrong with one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// The call fails and has no effect (a connection refused, a 5xx before any change).
    FailBefore,
    /// The call has its effect, but the response is lost: the caller sees an error.
    FailAfter,
    /// The process dies during the call, before the effect: this call and every later one on
    /// every fake sharing the plan fail, with no effect, until [`FaultPlan::restart`].
    Crash,
    /// As [`FaultKind::Crash`], but the call's effect happened before the process died.
    CrashAfter,
    /// The service throttles the call: no effect, the port's `Throttled` error.
    Throttle,
}

impl FaultKind {
    /// Every kind, in the order [`FaultRates`] draws them.
    pub const ALL: [Self; 5] = [
        Self::FailBefore,
        Self::FailAfter,
        Self::Crash,
        Self::CrashAfter,
        Self::Throttle,
    ];

    /// A stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FailBefore => "fail-before",
            Self::FailAfter => "fail-after",
            Self::Crash => "crash",
            Self::CrashAfter => "crash-after",
            Self::Throttle => "throttle",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error a fake returns, as the `#[source]` of the port's error, when the plan injects a
/// fault (or the process is down after a crash).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("injected {kind} in {op}")]
pub struct InjectedFault {
    /// What was injected; [`FaultKind::Crash`] also for every call while the process is down.
    pub kind: FaultKind,
    /// The operation (see [`op`]).
    pub op: &'static str,
}

/// The probability, per call, of each kind of fault. Each is clamped to `0.0..=1.0`; they
/// should add up to at most 1 (kinds earlier in [`FaultKind::ALL`] win otherwise).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultRates {
    /// Probability of [`FaultKind::FailBefore`].
    pub fail_before: f64,
    /// Probability of [`FaultKind::FailAfter`].
    pub fail_after: f64,
    /// Probability of [`FaultKind::Crash`].
    pub crash: f64,
    /// Probability of [`FaultKind::CrashAfter`].
    pub crash_after: f64,
    /// Probability of [`FaultKind::Throttle`].
    pub throttle: f64,
}

impl FaultRates {
    /// No faults.
    pub fn none() -> Self {
        Self::default()
    }

    /// Every kind of fault with probability `p` each.
    pub fn uniform(p: f64) -> Self {
        Self {
            fail_before: p,
            fail_after: p,
            crash: p,
            crash_after: p,
            throttle: p,
        }
    }

    fn get(&self, kind: FaultKind) -> f64 {
        let p = match kind {
            FaultKind::FailBefore => self.fail_before,
            FaultKind::FailAfter => self.fail_after,
            FaultKind::Crash => self.crash,
            FaultKind::CrashAfter => self.crash_after,
            FaultKind::Throttle => self.throttle,
        };
        if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) }
    }

    /// The kind a uniform draw `u` in `0.0..1.0` selects.
    fn pick(&self, u: f64) -> Option<FaultKind> {
        let mut edge = 0.0;
        for kind in FaultKind::ALL {
            edge += self.get(kind);
            if u < edge {
                return Some(kind);
            }
        }
        None
    }
}

/// A client-side token bucket over virtual time: `burst` calls may go at once, then one per
/// `1 / per_second`; a call beyond the rate sleeps on the [`SimClock`] until its turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    interval: Duration,
    burst: u32,
}

impl RateLimit {
    /// `calls` per second (at least 1), with a burst of 1.
    pub fn per_second(calls: u32) -> Self {
        Self {
            interval: Duration::from_secs(1) / calls.max(1),
            burst: 1,
        }
    }

    /// The same rate, allowing `burst` calls (at least 1) at once.
    pub fn with_burst(self, burst: u32) -> Self {
        Self {
            burst: burst.max(1),
            ..self
        }
    }

    /// The time between two calls at the sustained rate.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// How many calls may go at once.
    pub fn burst(&self) -> u32 {
        self.burst
    }
}

/// When a scripted fault strikes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// The call with this number, counting from 1 every call the plan admitted (calls refused
    /// while crashed are not counted); see [`FaultPlan::next_call`].
    Call(u64),
    /// The next call of this operation (see [`op`]).
    Next(String),
    /// The `n`th call of this operation (from 1, counted since the plan was made).
    Nth(String, u64),
}

impl From<u64> for Trigger {
    fn from(call: u64) -> Self {
        Self::Call(call)
    }
}

impl From<&str> for Trigger {
    fn from(op: &str) -> Self {
        Self::Next(op.to_owned())
    }
}

impl From<(&str, u64)> for Trigger {
    fn from((op, n): (&str, u64)) -> Self {
        Self::Nth(op.to_owned(), n)
    }
}

/// Decides, deterministically, which calls fail and how; shared (clones share state) by the
/// fakes of one simulation, so that a crash stops all of them. See the [module](super) docs.
#[derive(Clone)]
pub struct FaultPlan {
    state: Arc<Mutex<PlanState>>,
}

struct PlanState {
    rng: ChaCha8Rng,
    rates: FaultRates,
    scripted: Vec<(Trigger, FaultKind)>,
    crashed: bool,
    /// Bumped at every crash: a call admitted before a crash has no effect after it.
    epoch: u64,
    calls: u64,
    per_op: BTreeMap<&'static str, u64>,
    injected: BTreeMap<FaultKind, u64>,
    refused_while_down: u64,
    latency: Duration,
    rate_limit: Option<RateLimit>,
    /// The token bucket's theoretical arrival time (GCRA).
    tat: Option<Timestamp>,
    sdk_retries: SdkRetries,
    /// Calls repeated by the simulated SDK after a lost reply, per operation.
    retried: BTreeMap<&'static str, u64>,
}

/// One admitted call, between [`FaultPlan::enter`] and [`FaultPlan::finish`].
#[derive(Debug)]
pub(crate) struct Call {
    op: &'static str,
    epoch: u64,
    fault: Option<FaultKind>,
}

impl FaultPlan {
    /// A plan that never injects a fault (scripted faults can still be added).
    pub fn none() -> Self {
        Self::seeded(0, FaultRates::none())
    }

    /// A plan drawing faults at `rates` from a generator seeded with `seed`.
    pub fn seeded(seed: u64, rates: FaultRates) -> Self {
        Self {
            state: Arc::new(Mutex::new(PlanState {
                rng: ChaCha8Rng::seed_from_u64(seed),
                rates,
                scripted: Vec::new(),
                crashed: false,
                epoch: 0,
                calls: 0,
                per_op: BTreeMap::new(),
                injected: BTreeMap::new(),
                refused_while_down: 0,
                latency: Duration::ZERO,
                rate_limit: None,
                tat: None,
                sdk_retries: SdkRetries::Off,
                retried: BTreeMap::new(),
            })),
        }
    }

    /// This plan with every call taking `latency` of virtual time.
    pub fn with_latency(self, latency: Duration) -> Self {
        self.set_latency(latency);
        self
    }

    /// This plan with a client-side rate limit.
    pub fn with_rate_limit(self, limit: RateLimit) -> Self {
        self.set_rate_limit(Some(limit));
        self
    }

    fn lock(&self) -> MutexGuard<'_, PlanState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the fault probabilities from now on (e.g. [`FaultRates::none`] to let a
    /// simulation settle).
    pub fn set_rates(&self, rates: FaultRates) {
        self.lock().rates = rates;
    }

    /// Every call takes `latency` of virtual time from now on.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// Which calls the simulated SDK retries after a lost reply (see [`SdkRetries`]).
    pub fn set_sdk_retries(&self, retries: SdkRetries) {
        self.lock().sdk_retries = retries;
    }

    /// This plan with the simulated SDK retrying as `retries` says.
    pub fn with_sdk_retries(self, retries: SdkRetries) -> Self {
        self.set_sdk_retries(retries);
        self
    }

    /// How many times the simulated SDK repeated a call of `op` after a lost reply.
    pub fn sdk_retried(&self, op: &str) -> u64 {
        self.lock().retried.get(op).copied().unwrap_or(0)
    }

    /// Calls repeated by the simulated SDK, in all.
    pub fn total_sdk_retries(&self) -> u64 {
        self.lock().retried.values().sum()
    }

    /// Sets or removes the client-side rate limit.
    pub fn set_rate_limit(&self, limit: Option<RateLimit>) {
        let mut state = self.lock();
        state.rate_limit = limit;
        state.tat = None;
    }

    /// Scripts a fault: the call `trigger` names fails with `kind` (once). Scripted faults take
    /// precedence over drawn ones.
    ///
    /// `plan.fail_at(3, FaultKind::FailAfter)`, `plan.fail_at(op::IAM_CREATE_KEY,
    /// FaultKind::Crash)`, `plan.fail_at((op::STORE_PROMOTE, 2), FaultKind::Throttle)`.
    pub fn fail_at(&self, trigger: impl Into<Trigger>, kind: FaultKind) {
        self.lock().scripted.push((trigger.into(), kind));
    }

    /// Scripts a crash: `fail_at(trigger, FaultKind::Crash)`.
    pub fn crash_at(&self, trigger: impl Into<Trigger>) {
        self.fail_at(trigger, FaultKind::Crash);
    }

    /// Crashes the process now, as if a call had crashed.
    pub fn crash(&self) {
        let mut state = self.lock();
        state.crashed = true;
        state.epoch += 1;
    }

    /// Whether the process is down after a crash.
    pub fn is_crashed(&self) -> bool {
        self.lock().crashed
    }

    /// Brings the process back after a crash; calls work again.
    pub fn restart(&self) {
        self.lock().crashed = false;
    }

    /// The number the next admitted call will have (for [`Trigger::Call`]).
    pub fn next_call(&self) -> u64 {
        self.lock().calls + 1
    }

    /// How many calls of `op` were admitted (calls refused while crashed are not counted; calls
    /// that failed by injection are).
    pub fn calls(&self, op: &str) -> u64 {
        self.lock().per_op.get(op).copied().unwrap_or(0)
    }

    /// Admitted calls of every operation.
    pub fn call_counts(&self) -> BTreeMap<&'static str, u64> {
        self.lock().per_op.clone()
    }

    /// Admitted calls in all.
    pub fn total_calls(&self) -> u64 {
        self.lock().calls
    }

    /// How many faults of `kind` were injected.
    pub fn injected(&self, kind: FaultKind) -> u64 {
        self.lock().injected.get(&kind).copied().unwrap_or(0)
    }

    /// How many calls were refused because the process was down.
    pub fn refused_while_crashed(&self) -> u64 {
        self.lock().refused_while_down
    }

    /// Zeroes every counter (call numbers for [`Trigger::Call`] start again at 1).
    pub fn reset_counters(&self) {
        let mut state = self.lock();
        state.calls = 0;
        state.per_op.clear();
        state.injected.clear();
        state.refused_while_down = 0;
        state.retried.clear();
    }

    /// Admits a call of `op` at `now`: counts it, decides its fault and how long it must wait.
    fn admit(&self, op: &'static str, now: Timestamp) -> Result<(Call, Duration), InjectedFault> {
        let mut state = self.lock();
        if state.crashed {
            state.refused_while_down += 1;
            return Err(InjectedFault {
                kind: FaultKind::Crash,
                op,
            });
        }
        state.calls += 1;
        let number = state.calls;
        let nth = {
            let n = state.per_op.entry(op).or_insert(0);
            *n += 1;
            *n
        };
        // Always draw, so that scripting a fault does not shift the faults drawn after it.
        let u: f64 = state.rng.random();
        let scripted = state
            .scripted
            .iter()
            .position(|(trigger, _)| match trigger {
                Trigger::Call(n) => *n == number,
                Trigger::Next(name) => name == op,
                Trigger::Nth(name, n) => name == op && *n == nth,
            });
        let fault = match scripted {
            Some(i) => Some(state.scripted.remove(i).1),
            None => state.rates.pick(u),
        };
        if let Some(kind) = fault {
            *state.injected.entry(kind).or_insert(0) += 1;
            tracing::debug!(op, %kind, call = number, "fake: injecting fault");
        }
        let mut delay = state.latency;
        if let Some(limit) = state.rate_limit {
            // GCRA: a call may go at `tat - (burst - 1) * interval`.
            let tat = state.tat.map_or(now, |tat| tat.max(now));
            let tolerance = limit.interval * (limit.burst - 1);
            delay += super::since(super::sub(tat, tolerance), now);
            state.tat = Some(super::add(tat, limit.interval));
        }
        let epoch = state.epoch;
        Ok((Call { op, epoch, fault }, delay))
    }

    /// Starts a call of `op`: admits it, sleeps its latency and rate-limit delay on `clock`,
    /// then fails it if its fault strikes before the effect. On `Ok` the caller applies the
    /// effect (without awaiting) and then calls [`FaultPlan::finish`].
    pub(crate) async fn enter(
        &self,
        op: &'static str,
        clock: &SimClock,
    ) -> Result<Call, InjectedFault> {
        let (call, delay) = self.admit(op, clock.now())?;
        if !delay.is_zero() {
            Clock::sleep(clock, delay).await;
        }
        let mut state = self.lock();
        if state.crashed || state.epoch != call.epoch {
            // The process died while this call was in flight.
            return Err(InjectedFault {
                kind: FaultKind::Crash,
                op,
            });
        }
        match call.fault {
            Some(kind @ (FaultKind::FailBefore | FaultKind::Throttle)) => {
                Err(InjectedFault { kind, op })
            }
            Some(FaultKind::Crash) => {
                state.crashed = true;
                state.epoch += 1;
                Err(InjectedFault {
                    kind: FaultKind::Crash,
                    op,
                })
            }
            Some(FaultKind::FailAfter | FaultKind::CrashAfter) | None => Ok(call),
        }
    }

    /// Ends a call whose effect was applied: fails it if its fault strikes after the effect.
    pub(crate) fn finish(&self, call: &Call) -> Result<(), InjectedFault> {
        match call.fault {
            Some(kind @ FaultKind::FailAfter) => Err(InjectedFault { kind, op: call.op }),
            Some(kind @ FaultKind::CrashAfter) => {
                let mut state = self.lock();
                state.crashed = true;
                state.epoch += 1;
                Err(InjectedFault { kind, op: call.op })
            }
            _ => Ok(()),
        }
    }
}

impl FaultPlan {
    /// One call of `op` as the adapters make it: admitted, faulted, its `effect` applied (given
    /// the attempt, from 1; with
    /// the lock of the fake's state held by `effect` itself, never across an await) and, if
    /// its reply is lost and the simulated SDK retries `op`, performed again: the caller sees
    /// the last attempt's answer. `error` turns an injected fault into the port's error.
    pub(crate) async fn call<T, E>(
        &self,
        op: &'static str,
        clock: &SimClock,
        error: impl Fn(InjectedFault) -> E,
        mut effect: impl FnMut(u32) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut attempt = 1;
        loop {
            let call = self.enter(op, clock).await.map_err(&error)?;
            let result = effect(attempt);
            match self.finish(&call) {
                Ok(()) => return result,
                Err(fault)
                    if fault.kind == FaultKind::FailAfter
                        && attempt < SDK_MAX_ATTEMPTS
                        && self.lock().sdk_retries.retries(op) =>
                {
                    attempt += 1;
                    *self.lock().retried.entry(op).or_insert(0) += 1;
                    tracing::debug!(op, attempt, "fake: the SDK retries after a lost reply");
                }
                Err(fault) => return Err(error(fault)),
            }
        }
    }
}

impl Default for FaultPlan {
    fn default() -> Self {
        Self::none()
    }
}

impl fmt::Debug for FaultPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("FaultPlan")
            .field("rates", &state.rates)
            .field("scripted", &state.scripted)
            .field("crashed", &state.crashed)
            .field("calls", &state.calls)
            .field("latency", &state.latency)
            .field("rate_limit", &state.rate_limit)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;

    use super::*;

    fn t0() -> Timestamp {
        Timestamp::from_second(1_700_000_000).unwrap()
    }

    /// Runs one call of `op` through the plan; `Ok` when it succeeded.
    fn call(plan: &FaultPlan, clock: &SimClock, op: &'static str) -> Result<(), FaultKind> {
        block_on(async {
            let call = plan.enter(op, clock).await.map_err(|f| f.kind)?;
            plan.finish(&call).map_err(|f| f.kind)
        })
    }

    #[test]
    fn scripted_faults_strike_once_where_told() {
        let plan = FaultPlan::none();
        let clock = SimClock::new(t0());
        plan.fail_at(2, FaultKind::FailBefore);
        plan.fail_at(op::IAM_DELETE_KEY, FaultKind::Throttle);
        plan.fail_at((op::IAM_LIST_KEYS, 3), FaultKind::FailAfter);
        let results: Vec<_> = [
            op::IAM_LIST_KEYS,
            op::IAM_LIST_KEYS,
            op::IAM_DELETE_KEY,
            op::IAM_DELETE_KEY,
            op::IAM_LIST_KEYS,
            op::IAM_LIST_KEYS,
        ]
        .into_iter()
        .map(|op| call(&plan, &clock, op))
        .collect();
        assert_eq!(
            results,
            [
                Ok(()),
                Err(FaultKind::FailBefore),
                Err(FaultKind::Throttle),
                Ok(()),
                Err(FaultKind::FailAfter),
                Ok(()),
            ]
        );
        assert_eq!(plan.calls(op::IAM_LIST_KEYS), 4);
        assert_eq!(plan.calls(op::IAM_DELETE_KEY), 2);
        assert_eq!(plan.total_calls(), 6);
        assert_eq!(plan.injected(FaultKind::Throttle), 1);
    }

    #[test]
    fn a_crash_stops_every_call_until_restart() {
        let plan = FaultPlan::none();
        let clock = SimClock::new(t0());
        plan.crash_at(op::STORE_PROMOTE);
        assert_eq!(call(&plan, &clock, op::IAM_LIST_KEYS), Ok(()));
        assert_eq!(
            call(&plan, &clock, op::STORE_PROMOTE),
            Err(FaultKind::Crash)
        );
        assert!(plan.is_crashed());
        assert_eq!(call(&plan, &clock, op::VERIFY), Err(FaultKind::Crash));
        assert_eq!(plan.refused_while_crashed(), 1);
        assert_eq!(plan.total_calls(), 2, "refused calls never reach AWS");
        plan.restart();
        assert_eq!(call(&plan, &clock, op::VERIFY), Ok(()));
    }

    #[test]
    fn a_call_in_flight_during_a_crash_has_no_effect() {
        let plan = FaultPlan::none().with_latency(Duration::from_millis(50));
        let clock = SimClock::new(t0());
        plan.crash_at(op::STORE_PROMOTE);
        let (crashing, in_flight) = block_on(futures::future::join(
            async { plan.enter(op::STORE_PROMOTE, &clock).await.map(drop) },
            async { plan.enter(op::IAM_DELETE_KEY, &clock).await.map(drop) },
        ));
        assert_eq!(crashing.unwrap_err().kind, FaultKind::Crash);
        assert_eq!(in_flight.unwrap_err().kind, FaultKind::Crash);
        plan.restart();
        assert_eq!(call(&plan, &clock, op::IAM_DELETE_KEY), Ok(()));
    }

    #[test]
    fn seeded_plans_are_deterministic() {
        let run = |seed| {
            let plan = FaultPlan::seeded(seed, FaultRates::uniform(0.1));
            let clock = SimClock::new(t0());
            (0..200)
                .map(|_| {
                    let r = call(&plan, &clock, op::IAM_LIST_KEYS);
                    plan.restart();
                    r
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
        let faults = run(1).iter().filter(|r| r.is_err()).count();
        assert!((50..=150).contains(&faults), "{faults} faults at 50%");
    }

    #[test]
    fn rate_limit_delays_virtual_time() {
        let clock = SimClock::new(t0());
        let plan = FaultPlan::none().with_rate_limit(RateLimit::per_second(10).with_burst(3));
        for _ in 0..5 {
            call(&plan, &clock, op::IAM_LIST_KEYS).unwrap();
        }
        // Three calls go at once, then one every 100 ms.
        assert_eq!(
            super::super::since(clock.now(), t0()),
            Duration::from_millis(200)
        );
        // After a pause the bucket is full again.
        clock.advance(Duration::from_secs(10));
        let before = clock.now();
        for _ in 0..3 {
            call(&plan, &clock, op::IAM_LIST_KEYS).unwrap();
        }
        assert_eq!(clock.now(), before);
    }

    #[test]
    fn latency_adds_to_every_call() {
        let clock = SimClock::new(t0());
        let plan = FaultPlan::none().with_latency(Duration::from_millis(50));
        for _ in 0..4 {
            call(&plan, &clock, op::STORE_LOAD).unwrap();
        }
        assert_eq!(
            super::super::since(clock.now(), t0()),
            Duration::from_millis(200)
        );
        assert_eq!(plan.call_counts().get(op::STORE_LOAD), Some(&4));
        plan.reset_counters();
        assert_eq!(plan.total_calls(), 0);
    }
}
