//! How many users a run reconciles at once: a fixed number, or a limit that follows what the
//! calls meet (additive increase, multiplicative decrease on throttling).
//!
//! Each user's calls go one after another, so a run keeps about `limit` calls in flight. What
//! keeps the services busy is `rate × latency` calls in flight, and neither is known ahead:
//! AWS publishes no request rate for IAM, and latency differs between a Lambda next to the
//! service and a laptop far from it. The adaptive limit starts small and doubles each round of
//! users (slow start) until the services first ask keyrot to slow down, then grows by one user
//! a round and drops by a tenth when throttled again, at most once a round. The scale run
//! (`benches`) holds it to the rate-limit bound at 50 ms to 1 s a call.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

use crate::ports::Pressure;

/// How many users a run reconciles at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concurrency {
    /// Always this many (at least one).
    Fixed(usize),
    /// From `start`, following throttling, never above `max` (both at least one).
    Adaptive {
        /// The first limit.
        start: usize,
        /// The highest limit.
        max: usize,
    },
}

impl Concurrency {
    /// The rotator's default: from 4 users at once up to 64, enough for 1 s calls at 60 calls
    /// a second.
    pub const DEFAULT: Self = Self::Adaptive { start: 4, max: 64 };

    /// The most users ever reconciled at once.
    pub fn max(self) -> usize {
        match self {
            Self::Fixed(n) => n.max(1),
            Self::Adaptive { start, max } => max.max(start).max(1),
        }
    }
}

/// What a limit drops to when throttled: nine tenths, so that the limit stays near what the
/// services take. A half, as TCP does, idles them a quarter of the time; in the scale run a
/// quarter off took 13% longer than the bound at 1 s a call, a tenth off 6%.
const DECREASE: f64 = 0.9;

/// The gate a run's users pass through.
pub(super) struct Gate {
    concurrency: Concurrency,
    pressure: Option<Arc<dyn Pressure>>,
    state: Mutex<State>,
}

struct State {
    limit: usize,
    in_flight: usize,
    /// Still doubling: no throttling seen yet.
    slow_start: bool,
    /// Users finished since the limit last grew by one.
    credit: usize,
    /// Users to finish before throttling may lower the limit again: the users in flight when
    /// it was lowered met the same congestion.
    cooldown: usize,
    /// The pressure count last seen.
    seen: u64,
    waiting: Vec<Waker>,
}

impl Gate {
    pub(super) fn new(concurrency: Concurrency, pressure: Option<Arc<dyn Pressure>>) -> Self {
        let limit = match concurrency {
            Concurrency::Fixed(n) => n.max(1),
            Concurrency::Adaptive { start, max } => start.clamp(1, max.max(1)),
        };
        let seen = pressure.as_ref().map_or(0, |p| p.throttled());
        Self {
            concurrency,
            pressure,
            state: Mutex::new(State {
                limit,
                in_flight: 0,
                slow_start: true,
                credit: 0,
                cooldown: 0,
                seen,
                waiting: Vec::new(),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The limit now.
    pub(super) fn limit(&self) -> usize {
        self.state().limit
    }

    /// Waits for a place under the limit.
    pub(super) async fn enter(&self) -> Pass<'_> {
        std::future::poll_fn(|cx| {
            let mut state = self.state();
            if state.in_flight < state.limit {
                state.in_flight += 1;
                Poll::Ready(())
            } else {
                state.waiting.push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        Pass {
            gate: self,
            throttled: false,
        }
    }

    /// A user is done; `throttled` if it failed on throttling the adapters could not absorb.
    fn leave(&self, throttled: bool) {
        let mut state = self.state();
        state.in_flight = state.in_flight.saturating_sub(1);
        if let Concurrency::Adaptive { max, .. } = self.concurrency {
            let now = self.pressure.as_ref().map_or(0, |p| p.throttled());
            let congested = throttled || now > state.seen;
            state.seen = now;
            adapt(&mut state, congested, max.max(1));
        }
        let waiting = std::mem::take(&mut state.waiting);
        drop(state);
        for waker in waiting {
            waker.wake();
        }
    }
}

/// One step of the limit for a user done: `congested` if it, or any call since the last one,
/// was throttled.
fn adapt(state: &mut State, congested: bool, max: usize) {
    state.cooldown = state.cooldown.saturating_sub(1);
    if congested {
        if state.cooldown == 0 || state.slow_start {
            // The limit is small and positive: the float round trip is exact.
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss,
                reason = "a limit of at most a few thousand users"
            )]
            let lower = (state.limit as f64 * DECREASE).floor() as usize;
            state.limit = lower.max(1);
            state.slow_start = false;
            state.credit = 0;
            state.cooldown = state.in_flight + 1;
        }
        return;
    }
    if state.slow_start {
        state.limit = (state.limit + 1).min(max);
        return;
    }
    state.credit += 1;
    if state.credit >= state.limit {
        state.credit = 0;
        state.limit = (state.limit + 1).min(max);
    }
}

/// A place under the gate's limit, given back when dropped.
pub(super) struct Pass<'g> {
    gate: &'g Gate,
    throttled: bool,
}

impl Pass<'_> {
    /// The user failed on throttling.
    pub(super) fn throttled(&mut self) {
        self.throttled = true;
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        self.gate.leave(self.throttled);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use futures::executor::block_on;

    use super::*;

    #[derive(Debug)]
    struct Counter(AtomicU64);

    impl Pressure for Counter {
        fn throttled(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    fn finish(gate: &Gate, throttled: bool) {
        let mut pass = block_on(gate.enter());
        if throttled {
            pass.throttled();
        }
    }

    #[test]
    fn a_fixed_limit_never_moves() {
        let gate = Gate::new(Concurrency::Fixed(3), None);
        for throttled in [false, true, false, false] {
            finish(&gate, throttled);
        }
        assert_eq!(gate.limit(), 3);
    }

    #[test]
    fn slow_start_doubles_a_round_until_throttled_then_a_round_adds_one() {
        let gate = Gate::new(Concurrency::Adaptive { start: 4, max: 64 }, None);
        // Four users done: one more each.
        for _ in 0..4 {
            finish(&gate, false);
        }
        assert_eq!(gate.limit(), 8);
        finish(&gate, true);
        assert_eq!(gate.limit(), 7, "a tenth off, rounded down");
        // Now a round of seven adds one.
        for _ in 0..6 {
            finish(&gate, false);
        }
        assert_eq!(gate.limit(), 7);
        finish(&gate, false);
        assert_eq!(gate.limit(), 8);
    }

    #[test]
    fn the_limit_stays_within_one_and_max() {
        let gate = Gate::new(Concurrency::Adaptive { start: 4, max: 6 }, None);
        for _ in 0..20 {
            finish(&gate, false);
        }
        assert_eq!(gate.limit(), 6);
        for _ in 0..40 {
            finish(&gate, true);
        }
        assert_eq!(gate.limit(), 1);
    }

    #[test]
    fn throttles_the_adapters_absorbed_count_as_pressure() {
        let counter = Arc::new(Counter(AtomicU64::new(5)));
        let gate = Gate::new(
            Concurrency::Adaptive { start: 8, max: 64 },
            Some(counter.clone()),
        );
        finish(&gate, false);
        assert_eq!(
            gate.limit(),
            9,
            "what was counted before the run does not count"
        );
        counter.0.fetch_add(2, Ordering::SeqCst);
        finish(&gate, false);
        assert_eq!(gate.limit(), 8);
    }

    #[test]
    fn one_congestion_lowers_the_limit_once_per_round() {
        let gate = Gate::new(Concurrency::Adaptive { start: 8, max: 64 }, None);
        // Eight users in flight meet the same throttling.
        let passes: Vec<Pass<'_>> = (0..8).map(|_| block_on(gate.enter())).collect();
        for mut pass in passes {
            pass.throttled();
        }
        assert_eq!(gate.limit(), 7, "lowered once, not eight times");
    }

    #[test]
    fn a_user_waits_for_a_place_under_the_limit() {
        let gate = Gate::new(Concurrency::Fixed(1), None);
        let first = block_on(gate.enter());
        let mut second = std::pin::pin!(gate.enter());
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(second.as_mut().poll(&mut cx).is_pending());
        drop(first);
        assert!(second.as_mut().poll(&mut cx).is_ready());
    }
}
