//! Virtual time: a [`Clock`] that moves only when told to, so a test runs days in milliseconds.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;

use crate::model::Timestamp;
use crate::ports::Clock;

/// A virtual clock shared by every fake of a simulation. Clones share the same time.
///
/// [`Clock::sleep`] advances the time by the duration and returns at once (after yielding once,
/// so that futures polled together interleave). Concurrent sleeps therefore add up: virtual time
/// measures the work as if done one call after another.
#[derive(Clone)]
pub struct SimClock {
    now: Arc<Mutex<Timestamp>>,
}

impl SimClock {
    /// A clock showing `start`.
    pub fn new(start: Timestamp) -> Self {
        Self {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// The virtual time now.
    pub fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves the time forward by `duration` (saturating at the end of time); returns the new time.
    pub fn advance(&self, duration: Duration) -> Timestamp {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now = super::add(*now, duration);
        *now
    }

    /// Sets the time to `at`, which may be earlier than now (a clock step backwards).
    pub fn set(&self, at: Timestamp) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = at;
    }
}

impl fmt::Debug for SimClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimClock")
            .field("now", &self.now())
            .finish()
    }
}

#[async_trait]
impl Clock for SimClock {
    fn now(&self) -> Timestamp {
        Self::now(self)
    }

    async fn sleep(&self, duration: Duration) {
        self.advance(duration);
        yield_now().await;
    }
}

/// A future that is pending once (waking itself) and then ready: lets other futures polled by
/// the same executor run, without any runtime.
#[derive(Debug, Default)]
#[must_use = "futures do nothing unless awaited"]
pub struct YieldNow {
    yielded: bool,
}

/// Yields once to the executor; see [`YieldNow`].
pub fn yield_now() -> YieldNow {
    YieldNow::default()
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            Poll::Ready(())
        } else {
            self.yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use futures::executor::block_on;
    use futures::future::join;

    use super::*;

    fn t0() -> Timestamp {
        Timestamp::from_second(1_700_000_000).unwrap()
    }

    #[test]
    fn advance_set_and_sleep_move_virtual_time() {
        let clock = SimClock::new(t0());
        let other = clock.clone();
        assert_eq!(clock.now(), t0());
        clock.advance(Duration::from_secs(60));
        assert_eq!(other.now(), t0() + jiff::SignedDuration::from_secs(60));
        block_on(Clock::sleep(&other, Duration::from_secs(3600)));
        assert_eq!(clock.now().as_second(), t0().as_second() + 3660);
        clock.set(t0());
        assert_eq!(other.now(), t0());
        assert_eq!(clock.advance(Duration::MAX), Timestamp::MAX);
    }

    #[test]
    fn sleeping_futures_interleave() {
        let clock = SimClock::new(t0());
        let order = Mutex::new(Vec::new());
        let task = |name: &'static str| {
            let clock = clock.clone();
            let order = &order;
            async move {
                for i in 0..2 {
                    order.lock().unwrap().push((name, i));
                    Clock::sleep(&clock, Duration::from_secs(1)).await;
                }
            }
        };
        block_on(join(task("a"), task("b")));
        assert_eq!(
            order.into_inner().unwrap(),
            [("a", 0), ("b", 0), ("a", 1), ("b", 1)]
        );
        assert_eq!(clock.now().as_second(), t0().as_second() + 4);
    }
}
