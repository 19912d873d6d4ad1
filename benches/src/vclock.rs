//! Event-driven virtual time: sleeps wait for the clock, and the clock jumps to the next
//! deadline only when every future is waiting.
//!
//! [`SimClock`]'s own `sleep` advances the time by its duration at once, so concurrent sleeps
//! add up (see its docs): 16 users each waiting 50 ms for an IAM answer take 800 ms of virtual
//! time instead of 50 ms. That is right for a sequential simulation, wrong for a throughput
//! measurement. [`VirtualClock`] is the same virtual time done as tokio's paused clock does it:
//! a sleep registers a timer and stays pending, and [`VirtualClock::block_on`] moves the time
//! to the earliest timer whenever the future it drives has nothing left to do.
//!
//! It drives a [`SimClock`] (the fakes read their time from it), so the fakes and the
//! [`Rotator`](keyrot_core::Rotator) see one time.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use async_trait::async_trait;
use keyrot_core::fake::SimClock;
use keyrot_core::{Clock, Timestamp};

/// A virtual clock whose sleeps run concurrently. Clones share the time and the timers.
#[derive(Clone)]
pub struct VirtualClock {
    sim: SimClock,
    timers: Arc<Mutex<Timers>>,
}

#[derive(Default)]
struct Timers {
    /// Pending sleeps by (deadline, registration order), with the waker of their last poll.
    queue: BTreeMap<(Timestamp, u64), Waker>,
    next_id: u64,
}

impl VirtualClock {
    /// A clock driving `sim`, starting at its current time.
    pub fn new(sim: SimClock) -> Self {
        Self {
            sim,
            timers: Arc::default(),
        }
    }

    /// The [`SimClock`] this clock moves.
    pub fn sim(&self) -> &SimClock {
        &self.sim
    }

    /// The virtual time now.
    pub fn now(&self) -> Timestamp {
        self.sim.now()
    }

    /// A future that is ready `duration` of virtual time after its first poll.
    pub fn sleep(&self, duration: Duration) -> Sleep {
        Sleep {
            clock: self.clone(),
            duration,
            timer: None,
        }
    }

    /// Runs `future` to completion on [`futures::executor::block_on`], moving the virtual time
    /// to the next deadline whenever `future` is waiting for nothing but timers.
    ///
    /// A future waiting for something else (a channel fed from another thread) makes the call
    /// block as `block_on` does; nothing in the fakes does that.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        futures::executor::block_on(Drive {
            clock: self.clone(),
            future: Box::pin(future),
            flag: Arc::new(Flag::default()),
        })
    }

    fn timers(&self) -> MutexGuard<'_, Timers> {
        self.timers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves the time to the earliest deadline and wakes every sleep due then. False when no
    /// sleep is pending.
    fn fire_next(&self) -> bool {
        let due = {
            let mut timers = self.timers();
            let Some(&(deadline, _)) = timers.queue.keys().next() else {
                return false;
            };
            if deadline > self.sim.now() {
                self.sim.set(deadline);
            }
            let later = timers.queue.split_off(&(deadline, u64::MAX));
            std::mem::replace(&mut timers.queue, later)
        };
        // Wake outside the lock: a waker may poll (and so register) at once.
        for waker in due.into_values() {
            waker.wake();
        }
        true
    }
}

impl fmt::Debug for VirtualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtualClock")
            .field("now", &self.now())
            .field("pending_sleeps", &self.timers().queue.len())
            .finish()
    }
}

#[async_trait]
impl Clock for VirtualClock {
    fn now(&self) -> Timestamp {
        Self::now(self)
    }

    async fn sleep(&self, duration: Duration) {
        Self::sleep(self, duration).await;
    }
}

/// The future [`VirtualClock::sleep`] returns.
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Sleep {
    clock: VirtualClock,
    duration: Duration,
    /// The timer's key once registered.
    timer: Option<(Timestamp, u64)>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let now = self.clock.now();
        let key = match self.timer {
            Some(key) => key,
            None if self.duration.is_zero() => return Poll::Ready(()),
            None => {
                let deadline = now.saturating_add(self.duration).unwrap_or(Timestamp::MAX);
                let mut timers = self.clock.timers();
                let id = timers.next_id;
                timers.next_id += 1;
                drop(timers);
                self.timer = Some((deadline, id));
                (deadline, id)
            }
        };
        let mut timers = self.clock.timers();
        if now >= key.0 {
            timers.queue.remove(&key);
            drop(timers);
            self.timer = None;
            self.duration = Duration::ZERO;
            return Poll::Ready(());
        }
        timers.queue.insert(key, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.timer.take() {
            self.clock.timers().queue.remove(&key);
        }
    }
}

/// Records that the driven future was woken, and passes the wake on to `block_on`.
#[derive(Default)]
struct Flag {
    woken: AtomicBool,
    outer: Mutex<Option<Waker>>,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        let outer = self.outer.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(waker) = outer.as_ref() {
            waker.wake_by_ref();
        }
    }
}

struct Drive<F: Future> {
    clock: VirtualClock,
    future: Pin<Box<F>>,
    flag: Arc<Flag>,
}

impl<F: Future> Future for Drive<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        *self
            .flag
            .outer
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(cx.waker().clone());
        let waker = Waker::from(Arc::clone(&self.flag));
        let mut inner = Context::from_waker(&waker);
        loop {
            self.flag.woken.store(false, Ordering::SeqCst);
            if let Poll::Ready(out) = self.future.as_mut().poll(&mut inner) {
                return Poll::Ready(out);
            }
            if self.flag.woken.load(Ordering::SeqCst) {
                // Something is runnable at this instant: no time passes.
                continue;
            }
            if !self.clock.fire_next() {
                // Waiting for something other than time; its wake reaches `block_on`.
                return Poll::Pending;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::future::join_all;

    use super::*;

    fn t0() -> Timestamp {
        Timestamp::from_second(1_700_000_000).unwrap()
    }

    #[test]
    fn concurrent_sleeps_overlap_and_sequential_ones_add_up() {
        let clock = VirtualClock::new(SimClock::new(t0()));
        let ms = Duration::from_millis;
        clock.block_on(join_all((0..16).map(|_| clock.sleep(ms(50)))));
        assert_eq!(clock.now(), t0() + ms(50), "16 concurrent sleeps of 50 ms");
        clock.block_on(async {
            for _ in 0..4 {
                clock.sleep(ms(50)).await;
            }
        });
        assert_eq!(clock.now(), t0() + ms(250));
    }

    #[test]
    fn sleeps_end_in_deadline_order() {
        let clock = VirtualClock::new(SimClock::new(t0()));
        let order = Mutex::new(Vec::new());
        let task = |n: u64| {
            let (clock, order) = (&clock, &order);
            async move {
                clock.sleep(Duration::from_secs(n)).await;
                order.lock().unwrap().push((n, clock.now()));
            }
        };
        clock.block_on(join_all([3, 1, 2, 0].map(task)));
        let order = order.into_inner().unwrap();
        let expected: Vec<_> = (0..4).map(|n| (n, t0() + Duration::from_secs(n))).collect();
        assert_eq!(order, expected);
    }
}
