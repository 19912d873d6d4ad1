//! An in-memory STS `GetCallerIdentity`: does a key authenticate yet, and as whom?

use std::fmt;

use async_trait::async_trait;

use super::faults::{FaultPlan, op};
use super::iam::FakeIam;
use crate::model::{Credentials, UserName};
use crate::ports::{Verifier, VerifyError};

/// The account id of the fake AWS account, in the ARNs the verifier reports.
pub const FAKE_ACCOUNT_ID: &str = "123456789012";

/// Verifies keys against a [`FakeIam`], as `sts:GetCallerIdentity` signed with the key would.
///
/// `Ok(true)` iff the key exists, is active, the secret matches and the key has propagated
/// ([`FakeIam::propagation_delay`] after its creation); the successful call counts as a use of
/// the key at the virtual now, as in AWS. A key of another user is
/// [`VerifyError::WrongIdentity`]. Faults from the plan apply (all as [`VerifyError::Other`]).
#[derive(Clone)]
pub struct FakeVerifier {
    iam: FakeIam,
    plan: FaultPlan,
}

impl FakeVerifier {
    /// A verifier against `iam` (and its clock), failing as `plan` says.
    pub fn new(iam: FakeIam, plan: FaultPlan) -> Self {
        Self { iam, plan }
    }
}

#[async_trait]
impl Verifier for FakeVerifier {
    async fn authenticates(
        &self,
        user: &UserName,
        credentials: &Credentials,
    ) -> Result<bool, VerifyError> {
        let fail = |fault| VerifyError::Other(Box::new(fault));
        self.plan
            .call(op::VERIFY, self.iam.clock(), fail, |_| {
                let now = self.iam.clock().now();
                match self.iam.authenticate(credentials, now) {
                    Ok(owner) if &owner == user => Ok(true),
                    Ok(owner) => Err(VerifyError::WrongIdentity {
                        actual: format!("arn:aws:iam::{FAKE_ACCOUNT_ID}:user/{owner}"),
                    }),
                    // InvalidClientTokenId or SignatureDoesNotMatch: not (yet) a working key.
                    Err(_) => Ok(false),
                }
            })
            .await
    }
}

impl fmt::Debug for FakeVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeVerifier")
            .field("iam", &self.iam)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::executor::block_on;

    use super::*;
    use crate::fake::{FaultKind, SimClock};
    use crate::model::{KeyStatus, LastUsed, SecretAccessKey, Timestamp};
    use crate::ports::Iam;

    fn setup() -> (FakeIam, FakeVerifier, UserName) {
        let clock = SimClock::new(Timestamp::from_second(1_700_000_000).unwrap());
        let plan = FaultPlan::none();
        let iam = FakeIam::new(clock, plan.clone(), 3);
        let alice = UserName::new("alice").unwrap();
        iam.add_user(alice.clone(), [("k", "v")]);
        (iam.clone(), FakeVerifier::new(iam, plan), alice)
    }

    #[test]
    fn a_new_key_authenticates_after_the_propagation_delay() {
        let (iam, verifier, alice) = setup();
        iam.set_propagation_delay(Duration::from_secs(8));
        let new = block_on(iam.create_key(&alice)).unwrap();
        let creds = new.credentials();
        assert!(!block_on(verifier.authenticates(&alice, &creds)).unwrap());
        iam.clock().advance(Duration::from_secs(7));
        assert!(!block_on(verifier.authenticates(&alice, &creds)).unwrap());
        assert_eq!(iam.peek_last_used(&new.key.id), LastUsed::Never);
        let at = iam.clock().advance(Duration::from_secs(1));
        assert!(block_on(verifier.authenticates(&alice, &creds)).unwrap());
        assert_eq!(
            iam.peek_last_used(&new.key.id),
            LastUsed::At(at),
            "STS counts as a use"
        );
    }

    #[test]
    fn wrong_secret_inactive_and_unknown_keys_do_not_authenticate() {
        let (iam, verifier, alice) = setup();
        let new = block_on(iam.create_key(&alice)).unwrap();
        let wrong = Credentials {
            access_key_id: new.key.id.clone(),
            secret_access_key: SecretAccessKey::new("wrong"),
        };
        assert!(!block_on(verifier.authenticates(&alice, &wrong)).unwrap());
        block_on(iam.set_status(&alice, &new.key.id, KeyStatus::Inactive)).unwrap();
        assert!(!block_on(verifier.authenticates(&alice, &new.credentials())).unwrap());
        block_on(iam.delete_key(&alice, &new.key.id)).unwrap();
        assert!(!block_on(verifier.authenticates(&alice, &new.credentials())).unwrap());
    }

    #[test]
    fn another_users_key_is_the_wrong_identity() {
        let (iam, verifier, alice) = setup();
        let bob = UserName::new("bob").unwrap();
        iam.add_user(bob.clone(), [("k", "v")]);
        let bobs = block_on(iam.create_key(&bob)).unwrap();
        match block_on(verifier.authenticates(&alice, &bobs.credentials())) {
            Err(VerifyError::WrongIdentity { actual }) => {
                assert_eq!(actual, "arn:aws:iam::123456789012:user/bob");
            }
            other => panic!("expected WrongIdentity, got {other:?}"),
        }
    }

    #[test]
    fn faults_apply() {
        let (iam, verifier, alice) = setup();
        let new = block_on(iam.create_key(&alice)).unwrap();
        iam.plan().fail_at(op::VERIFY, FaultKind::Throttle);
        assert!(matches!(
            block_on(verifier.authenticates(&alice, &new.credentials())),
            Err(VerifyError::Other(_))
        ));
        assert_eq!(iam.peek_last_used(&new.key.id), LastUsed::Never);
        iam.plan().fail_at(op::VERIFY, FaultKind::FailAfter);
        assert!(block_on(verifier.authenticates(&alice, &new.credentials())).is_err());
        assert!(
            matches!(iam.peek_last_used(&new.key.id), LastUsed::At(_)),
            "the request reached STS and used the key"
        );
        assert_eq!(iam.plan().calls(op::VERIFY), 2);
    }
}
