//! The driver's errors: a step's, a run's, a rollback's.

use crate::delivery::DeliveryError;
use crate::model::{AccessKeyId, Timestamp, UserName};
use crate::plan::Blocked;
use crate::ports::{IamError, LeaseError, StoreError, VerifyError};

/// Why a step failed for one user.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// An IAM call failed (its error says how).
    #[error(transparent)]
    Iam(#[from] IamError),
    /// A secret store call failed (its error says how).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The verification call failed (its error says how).
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The user's delivery destinations could not be learned (its error says how): without
    /// them no step is taken, as a deactivation could leave a destination behind.
    #[error("could not learn the user's delivery destinations")]
    Destinations(#[from] DeliveryError),
    /// The pending key's secret is not in the store.
    #[error("the secret of {0} is not stored")]
    MissingSecret(AccessKeyId),
    /// The planner kept asking for steps; a bug or an interfering writer.
    #[error("gave up after {0} steps in one run")]
    TooManySteps(usize),
    /// The run ended before the step it was asked for (the outcome says how).
    #[error("the run ended without finishing: {0}")]
    Unfinished(String),
    /// The lease call failed (its error says how): without the lease no step is taken.
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// Our lease expired and another run took the user: this run stops acting on it.
    #[error("the lease on the user expired and another run took it")]
    LeaseLost,
}

impl StepError {
    /// Whether the failed call may have had its effect all the same (a lost reply, a timeout,
    /// a 5xx): what keyrot believed about the user may be stale, so it observes again before
    /// it acts again.
    pub fn is_ambiguous(&self) -> bool {
        matches!(
            self,
            Self::Iam(IamError::Other(_))
                | Self::Store(StoreError::Other(_))
                | Self::Verify(VerifyError::Other(_))
                | Self::Lease(LeaseError::Other(_))
        )
    }
}

impl StepError {
    /// Whether a service asked keyrot to slow down (after the adapter's own retries).
    pub fn is_throttled(&self) -> bool {
        matches!(
            self,
            Self::Iam(IamError::Throttled(_))
                | Self::Store(StoreError::Throttled(_))
                | Self::Lease(LeaseError::Throttled(_))
        )
    }
}

/// Why a whole run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Listing the managed users failed.
    #[error("could not list managed users")]
    ListUsers(#[source] IamError),
}

/// Why a rollback was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    /// The user is not managed by keyrot, or is exempt.
    #[error("{0} is not managed by keyrot")]
    NotManaged(UserName),
    /// There is no previous key with a stored secret to go back to.
    #[error("no previous key to roll back to")]
    NoPreviousKey,
    /// The previous key did not authenticate again within the verify timeout.
    #[error("{0} did not authenticate after re-activation")]
    DidNotAuthenticate(AccessKeyId),
    /// Another run holds the user; try again after `until`.
    #[error("another run holds the user until {until}")]
    Busy {
        /// When the other run's lease expires unless renewed.
        until: Timestamp,
    },
    /// The user is blocked for another reason a person must see to first.
    #[error("blocked: {0}")]
    Blocked(Blocked),
    /// A call failed.
    #[error("rollback step failed")]
    Step(#[from] StepError),
}
