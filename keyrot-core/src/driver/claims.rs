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
