//! An in-memory lease table: one claim per user, taken with a conditional write, expiring by
//! the caller's clock, as keyrot's DynamoDB adapter does it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use super::clock::SimClock;
use super::faults::{FaultKind, FaultPlan, InjectedFault, op};
use crate::model::{Timestamp, UserName};
use crate::ports::{Claim, Lease, LeaseError, LeaseToken};

/// A lease table with DynamoDB's conditional-write semantics. Clones share state.
///
/// - `acquire` is `PutItem` with the condition "no claim, or an expired one, or our own": a
///   fresh token per call, so a retry after a lost reply (same token) finds its own claim and
///   succeeds, while a second caller is refused ([`Claim::Taken`]).
/// - `renew` is `UpdateItem` conditioned on our token; `release` is `DeleteItem` conditioned on
///   our token, and releasing a claim that is gone or someone else's changes nothing.
/// - Claims expire by the time the caller passes in, never by a clock of the table's own; a
///   crashed holder's claim just stays until a later caller's `now` passes its `until`.
/// - Faults from the plan apply, with the simulated SDK's retries.
#[derive(Clone)]
pub struct FakeLease {
    inner: Arc<Inner>,
}

struct Inner {
    clock: SimClock,
    plan: FaultPlan,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    claims: BTreeMap<UserName, (LeaseToken, Timestamp)>,
    issued: u64,
    refused: u64,
}

impl State {
    /// The conditional put: granted unless another claim is live at `now`. `token` is drawn
    /// once per call, as the adapter does before its first attempt, so a retry after a lost
    /// reply finds its own claim.
    fn claim(
        &mut self,
        user: &UserName,
        token: &LeaseToken,
        now: Timestamp,
        until: Timestamp,
    ) -> Claim {
        match self.claims.get(user) {
            Some((holder, expires)) if holder != token && *expires > now => {
                self.refused += 1;
                Claim::Taken {
                    holder: holder.clone(),
                    until: *expires,
                }
            }
            _ => {
                self.claims.insert(user.clone(), (token.clone(), until));
                Claim::Granted(token.clone())
            }
        }
    }

    /// The conditional delete: only our own claim.
    fn release(&mut self, user: &UserName, token: &LeaseToken) {
        if self
            .claims
            .get(user)
            .is_some_and(|(holder, _)| holder == token)
        {
            self.claims.remove(user);
        }
    }
}

fn lease_error(fault: InjectedFault) -> LeaseError {
    match fault.kind {
        FaultKind::Throttle => LeaseError::Throttled(Box::new(fault)),
        _ => LeaseError::Other(Box::new(fault)),
    }
}

impl FakeLease {
    /// An empty lease table, failing as `plan` says.
    pub fn new(clock: SimClock, plan: FaultPlan) -> Self {
        Self {
            inner: Arc::new(Inner {
                clock,
                plan,
                state: Mutex::new(State::default()),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A fresh claim token.
    fn token(&self) -> LeaseToken {
        let mut state = self.state();
        state.issued += 1;
        LeaseToken::new(format!("fake-lease-{}", state.issued))
    }

    /// The claim on `user` now recorded (expired or not), without faults.
    pub fn claim(&self, user: &UserName) -> Option<(LeaseToken, Timestamp)> {
        self.state().claims.get(user).cloned()
    }

    /// How many acquisitions were refused because another claim was live.
    pub fn refused(&self) -> u64 {
        self.state().refused
    }
}

#[async_trait]
impl Lease for FakeLease {
    async fn acquire(
        &self,
        user: &UserName,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Claim, LeaseError> {
        let token = self.token();
        self.inner
            .plan
            .call(op::LEASE_ACQUIRE, &self.inner.clock, lease_error, |_| {
                Ok(self.state().claim(user, &token, now, until))
            })
            .await
    }

    /// One `TransactWriteItems` of conditional puts as far as the caller sees it: the
    /// adapter's rounds (a refused condition cancels the whole transaction, and the refused
    /// users are left out of the next) end in one answer per user, and a fault (the reply of
    /// a transaction that took effect lost, say) fails them all.
    async fn acquire_all(
        &self,
        users: &[UserName],
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<Claim>, LeaseError> {
        let tokens: Vec<LeaseToken> = users.iter().map(|_| self.token()).collect();
        self.inner
            .plan
            .call(
                op::LEASE_ACQUIRE_ALL,
                &self.inner.clock,
                lease_error,
                |_| {
                    let mut state = self.state();
                    Ok(users
                        .iter()
                        .zip(&tokens)
                        .map(|(user, token)| state.claim(user, token, now, until))
                        .collect())
                },
            )
            .await
    }

    async fn release_all(&self, held: &[(UserName, LeaseToken)]) -> Result<(), LeaseError> {
        self.inner
            .plan
            .call(
                op::LEASE_RELEASE_ALL,
                &self.inner.clock,
                lease_error,
                |_| {
                    let mut state = self.state();
                    for (user, token) in held {
                        state.release(user, token);
                    }
                    Ok(())
                },
            )
            .await
    }

    async fn renew(
        &self,
        user: &UserName,
        token: &LeaseToken,
        until: Timestamp,
    ) -> Result<bool, LeaseError> {
        self.inner
            .plan
            .call(op::LEASE_RENEW, &self.inner.clock, lease_error, |_| {
                let mut state = self.state();
                match state.claims.get_mut(user) {
                    Some((holder, expires)) if holder == token => {
                        *expires = until;
                        Ok(true)
                    }
                    _ => Ok(false),
                }
            })
            .await
    }

    async fn release(&self, user: &UserName, token: &LeaseToken) -> Result<(), LeaseError> {
        self.inner
            .plan
            .call(op::LEASE_RELEASE, &self.inner.clock, lease_error, |_| {
                self.state().release(user, token);
                Ok(())
            })
            .await
    }
}

impl fmt::Debug for FakeLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeLease")
            .field("claims", &self.state().claims.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::executor::block_on;

    use super::*;
    use crate::fake::SdkRetries;

    fn t0() -> Timestamp {
        Timestamp::from_second(1_700_000_000).unwrap()
    }

    fn alice() -> UserName {
        UserName::new("alice").unwrap()
    }

    #[test]
    fn one_holder_at_a_time_until_expiry() {
        let clock = SimClock::new(t0());
        let lease = FakeLease::new(clock, FaultPlan::none());
        let until = t0() + Duration::from_secs(600);
        let Claim::Granted(first) = block_on(lease.acquire(&alice(), t0(), until)).unwrap() else {
            panic!("the first claim is granted");
        };
        let second = block_on(lease.acquire(&alice(), t0(), until)).unwrap();
        assert_eq!(
            second,
            Claim::Taken {
                holder: first.clone(),
                until
            }
        );
        assert_eq!(lease.refused(), 1);
        // Expired by the caller's clock: anyone may take it, and the old holder cannot renew.
        let later = until + Duration::from_secs(1);
        let Claim::Granted(third) =
            block_on(lease.acquire(&alice(), later, later + Duration::from_secs(600))).unwrap()
        else {
            panic!("an expired claim is taken over");
        };
        assert!(!block_on(lease.renew(&alice(), &first, later)).unwrap());
        // Releasing someone else's claim changes nothing; releasing ours frees the user.
        block_on(lease.release(&alice(), &first)).unwrap();
        assert_eq!(lease.claim(&alice()).map(|c| c.0), Some(third.clone()));
        block_on(lease.release(&alice(), &third)).unwrap();
        assert!(lease.claim(&alice()).is_none());
    }

    #[test]
    fn a_retried_acquire_after_a_lost_reply_finds_its_own_claim() {
        let clock = SimClock::new(t0());
        let plan = FaultPlan::none().with_sdk_retries(SdkRetries::AsAdapters);
        let lease = FakeLease::new(clock, plan.clone());
        plan.fail_at(op::LEASE_ACQUIRE, FaultKind::FailAfter);
        let until = t0() + Duration::from_secs(600);
        let claim = block_on(lease.acquire(&alice(), t0(), until)).unwrap();
        assert!(matches!(claim, Claim::Granted(_)), "{claim:?}");
        assert_eq!(plan.sdk_retried(op::LEASE_ACQUIRE), 1);
    }
}
