//! A run's claims, taken and given back in batches: the users a run expects to change are
//! claimed [`LEASE_BATCH`] at a time, just before their turn, and every claim the run is done
//! with is given back in batches too, so that the lease costs a run a few calls rather than two
//! a user.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::lock::Mutex;
use tracing::warn;

use super::report::error_chain;
use super::{Rotator, StepError, UserRun};
use crate::model::{Timestamp, UserName};
use crate::ports::{Claim, Clock, LEASE_BATCH, Lease, LeaseToken};

/// The claims of one run. A claim taken ahead of its user's turn keeps other runs off that user
/// until the turn comes: at most a batch of users, each a rotation's worth of calls, which is
/// far shorter than a lease. A claim the run is done with is given back once a batch has
/// gathered, or when the run ends; one never given back (the process ended) expires.
pub(super) struct RunClaims {
    lease: Arc<dyn Lease>,
    clock: Arc<dyn Clock>,
    duration: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Users to claim ahead, in the order the run takes them up.
    ahead: VecDeque<UserName>,
    /// The same, to look up.
    planned: HashSet<UserName>,
    /// Claimed ahead, not yet taken up: the claim and until when.
    ready: HashMap<UserName, (Claim, Timestamp)>,
    /// Claims the run is done with.
    done: Vec<(UserName, LeaseToken)>,
}

impl RunClaims {
    /// Claims for a run that will take up `ahead` in this order, each claim lasting `duration`.
    pub(super) fn new(
        lease: Arc<dyn Lease>,
        clock: Arc<dyn Clock>,
        duration: Duration,
        ahead: Vec<UserName>,
    ) -> Self {
        let state = State {
            planned: ahead.iter().cloned().collect(),
            ahead: ahead.into(),
            ..State::default()
        };
        Self {
            lease,
            clock,
            duration,
            state: Mutex::new(state),
        }
    }

    /// The claim on `user` made ahead for this run, with until when it lasts; `None` if the run
    /// did not plan to claim `user`, or its batch failed (the caller then claims it alone).
    pub(super) async fn take(&self, user: &UserName) -> Option<(Claim, Timestamp)> {
        let mut state = self.state.lock().await;
        if let Some(claimed) = state.ready.remove(user) {
            return Some(claimed);
        }
        if !state.planned.remove(user) {
            return None;
        }
        // `user` and the next ones in the run's order.
        state.ahead.retain(|u| u != user);
        let mut batch = vec![user.clone()];
        while batch.len() < LEASE_BATCH
            && let Some(next) = state.ahead.pop_front()
        {
            state.planned.remove(&next);
            batch.push(next);
        }
        let now = self.clock.now();
        let until = now + self.duration;
        match self.lease.acquire_all(&batch, now, until).await {
            Ok(claims) if claims.len() == batch.len() => {
                state.ready.extend(
                    batch
                        .into_iter()
                        .zip(claims)
                        .map(|(user, claim)| (user, (claim, until))),
                );
                state.ready.remove(user)
            }
            Ok(claims) => {
                warn!(
                    asked = batch.len(),
                    answered = claims.len(),
                    "a batch claim answered for more or fewer users than asked: claiming each alone"
                );
                None
            }
            Err(error) => {
                // Some of them may be claimed under tokens nobody knows: those expire.
                warn!(error = %error_chain(&error), users = batch.len(), "batch claim failed: claiming each alone");
                None
            }
        }
    }

    /// `user`'s claim `token` is no longer needed.
    pub(super) async fn give_back(&self, user: UserName, token: LeaseToken) {
        let mut state = self.state.lock().await;
        state.done.push((user, token));
        if state.done.len() >= LEASE_BATCH {
            let done = std::mem::take(&mut state.done);
            drop(state);
            self.release(&done).await;
        }
    }

    /// Gives back every claim left: those the run is done with, and those made ahead for users
    /// it never took up (past its deadline).
    pub(super) async fn finish(&self) {
        let mut state = self.state.lock().await;
        let mut left = std::mem::take(&mut state.done);
        left.extend(
            state
                .ready
                .drain()
                .filter_map(|(user, (claim, _))| match claim {
                    Claim::Granted(token) => Some((user, token)),
                    Claim::Taken { .. } => None,
                }),
        );
        drop(state);
        for batch in left.chunks(LEASE_BATCH) {
            self.release(batch).await;
        }
    }

    async fn release(&self, held: &[(UserName, LeaseToken)]) {
        if let Err(error) = self.lease.release_all(held).await {
            // They expire by themselves.
            warn!(error = %error_chain(&error), users = held.len(), "could not give claims back");
        }
    }
}

impl Rotator {
    /// Makes sure this run holds `run.user`'s lease for long enough to take a step.
    pub(super) async fn hold(
        &self,
        run: &mut UserRun<'_>,
        now: Timestamp,
    ) -> Result<Hold, StepError> {
        let until = now + self.lease_duration;
        let lease = &self.ports.lease;
        match &mut run.lease {
            Some(held) => {
                let left = Duration::try_from(held.until.duration_since(now)).unwrap_or_default();
                if left >= self.lease_duration / 2 {
                    return Ok(Hold::Kept);
                }
                if lease.renew(&run.user, &held.token, until).await? {
                    held.until = until;
                    Ok(Hold::Kept)
                } else {
                    run.lease = None;
                    Err(StepError::LeaseLost)
                }
            }
            None => {
                if let Some(hold) = self.hold_claimed_ahead(run, now).await? {
                    return Ok(hold);
                }
                self.acquire(run, now).await
            }
        }
    }

    /// The claim on `run.user` its run made ahead, renewed if less than half of it is left;
    /// `None` if there is none to be had (the caller claims the user alone).
    async fn hold_claimed_ahead(
        &self,
        run: &mut UserRun<'_>,
        now: Timestamp,
    ) -> Result<Option<Hold>, StepError> {
        let Some((claim, mut until)) = (match run.claims {
            Some(claims) => claims.take(&run.user).await,
            None => None,
        }) else {
            return Ok(None);
        };
        let token = match claim {
            Claim::Granted(token) => token,
            Claim::Taken { until, .. } => return Ok(Some(Hold::Taken { until })),
        };
        let left = Duration::try_from(until.duration_since(now)).unwrap_or_default();
        if left < self.lease_duration / 2 {
            until = now + self.lease_duration;
            if !self.ports.lease.renew(&run.user, &token, until).await? {
                // It ran out before the user's turn, and another run took it.
                return Ok(None);
            }
        }
        run.lease = Some(Held { token, until });
        Ok(Some(Hold::Acquired))
    }

    /// Claims `run.user` alone.
    async fn acquire(&self, run: &mut UserRun<'_>, now: Timestamp) -> Result<Hold, StepError> {
        let until = now + self.lease_duration;
        match self.ports.lease.acquire(&run.user, now, until).await? {
            Claim::Granted(token) => {
                run.lease = Some(Held { token, until });
                Ok(Hold::Acquired)
            }
            Claim::Taken { until, .. } => Ok(Hold::Taken { until }),
        }
    }
}

/// A lease this run holds.
pub(super) struct Held {
    pub(super) token: LeaseToken,
    pub(super) until: Timestamp,
}

pub(super) enum Hold {
    /// Held already, for long enough.
    Kept,
    /// Just claimed.
    Acquired,
    /// Another run holds the user.
    Taken { until: Timestamp },
}
